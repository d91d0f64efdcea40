//! The command line: `serve`, `migrate`, `token`, `user upsert`, `user list`,
//! `audit purge`.
//! Everything else is configured by environment variables (see `--help`).

use std::time::Duration;

use afritalk_auth::{Identity, TokenMinter};
use afritalk_core::{Actor, ActorKind, DirectorySearch};
use afritalk_ports::{DisplayName, MAX_PAGE_SIZE, PageSize, Role, SearchText, TenantId, UserId};
use chrono::TimeDelta;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::{keys, wiring};

const ENV_HELP: &str = "\
Environment:
  AFRITALK_DATA_DIR              data directory (default ./afritalk-data): SQLite file, dev key pair
  AFRITALK_LISTEN                listen address (default 127.0.0.1:8080)
  AFRITALK_TLS_CERT              PEM certificate chain: serve TLS 1.3 (reloaded on SIGHUP)
  AFRITALK_TLS_KEY               PEM private key of that certificate
  DATABASE_URL                   postgres://… for PostgreSQL (default: SQLite in the data directory)
  REDIS_URL                      redis://… to share presence, events and rate limits across nodes
  AFRITALK_REDIS_PREFIX          prefix of every Redis key and channel (default afritalk:)
  AFRITALK_PRESENCE_TTL          with REDIS_URL: how long a crashed node's users show connected (default 90s)
  AFRITALK_DB_POOL_SIZE          storage connections (default 16)
  AFRITALK_REDIS_POOL_SIZE       Redis command connections, with REDIS_URL (default 64)
  AFRITALK_PG_ANALYZE            auto|off: analyze the Postgres tables while autovacuum is off (default auto)
  AFRITALK_ROOT_PUBLIC_KEY       root public key (hex) to verify tokens with; no private key needed
  AFRITALK_ROOT_PRIVATE_KEY      root private key (hex) for `token` (default: the data directory's)
  AFRITALK_ALLOWED_ORIGINS       comma-separated Origin allowlist (socket handshakes, CORS)
  AFRITALK_TRUSTED_PROXY_HEADER  header with the client IP set by your proxy (e.g. X-Forwarded-For)
  AFRITALK_MESSAGING_DEFAULT     enabled|disabled for tenants never configured (default enabled)
  AFRITALK_RATE_LIMITS           per-user limits, e.g. send=30/10,modify=20/60 (max per seconds)
  AFRITALK_MAX_BODY_BYTES        largest REST body (default 64KiB; bytes, KiB or MiB)
  AFRITALK_MAX_SOCKET_MESSAGE_BYTES  largest Socket.IO message (default 64KiB)
  AFRITALK_MAX_SOCKETS_PER_USER  sockets one user may hold open on a node (default 32)
  AFRITALK_FIRST_REQUEST_TIMEOUT a new connection's first request, TLS included (default 10s)
  AFRITALK_KEEP_ALIVE_TIMEOUT    a connection with no request in flight is closed (default 75s)
  AFRITALK_REQUEST_BODY_TIMEOUT  a REST body must arrive whole within it, else 408 (default 30s)
  AFRITALK_SHUTDOWN_GRACE        how long shutdown waits for in-flight requests (default 10s)
  AFRITALK_AUDIT_PURGE           daily (or on)|off: serve removes audit rows past their retention (default daily)
  AFRITALK_AUDIT_KEEP_DAYS       keep audit rows this many days (default and least: 12 months)
  RUST_LOG                       log filter (default info)";

/// AfriTalk: in-app business messaging for AfriGest.
#[derive(Debug, Parser)]
#[command(name = "afritalk", version, about = "AfriTalk: in-app business messaging for AfriGest", after_help = ENV_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (REST + Socket.IO on one port) until SIGTERM or Ctrl-C.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print a token signed with the root private key (for development and services).
    Token(TokenArgs),
    /// Print the public half of the root key pair (`AFRITALK_ROOT_PRIVATE_KEY` or
    /// the data directory's), for the `AFRITALK_ROOT_PUBLIC_KEY` of other nodes.
    PublicKey,
    /// Manage the directory of the configured store.
    #[command(subcommand)]
    User(UserCommand),
    /// Maintain the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// Arguments of `token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Tenant id.
    #[arg(long)]
    pub tenant: String,
    /// User id (or service name with --service).
    #[arg(long)]
    pub user: String,
    /// PDG, DG or EMPLOYE (Employé accepted); omit with --service.
    #[arg(long, required_unless_present = "service")]
    pub role: Option<String>,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Mint a service token (alerts, directory admin, audit export) instead of a staff token.
    #[arg(long, conflicts_with = "role")]
    pub service: bool,
    /// Lifetime in seconds (1 to 31,536,000: a year at most).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub ttl: u64,
}

/// Directory subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create or update a user of a tenant.
    Upsert {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// User id.
        #[arg(long)]
        user: String,
        /// PDG, DG or EMPLOYE (Employé accepted).
        #[arg(long)]
        role: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Mark the user deactivated (they can no longer send or receive).
        #[arg(long)]
        inactive: bool,
    },
    /// List the users of a tenant by name, one per line: id, role, status, name.
    List {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Only names containing this text (accents and case ignored).
        #[arg(long)]
        search: Option<String>,
        /// Also list deactivated users.
        #[arg(long)]
        include_inactive: bool,
    },
}

/// Audit subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Delete audit rows older than 12 months, or than --older-than days when
    /// that is longer (rows younger than 12 months are always kept). Each tenant
    /// that lost rows gets an `audit.purge` row saying how many.
    Purge {
        /// Age in days; under 12 months, rows of the last 12 months are kept anyway.
        #[arg(long)]
        older_than: Option<i64>,
    },
}

/// A command failed; the message is for a person.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

fn fail(e: impl std::fmt::Display) -> CommandError {
    CommandError(e.to_string())
}

/// `afritalk token`: prints a signed token.
pub fn token(config: &Config, args: &TokenArgs) -> Result<String, CommandError> {
    let tenant = TenantId::parse(&args.tenant).map_err(fail)?;
    let user = UserId::parse(&args.user).map_err(fail)?;
    let kind = match &args.role {
        Some(role) => ActorKind::Staff(Role::parse(role).map_err(fail)?),
        None => ActorKind::Service,
    };
    let name = args
        .name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()
        .map_err(fail)?;
    let pair = keys::root_key_pair(config).map_err(fail)?;
    let identity = Identity {
        tenant,
        user,
        kind,
        name,
    };
    TokenMinter::new(pair)
        .mint(&identity, Duration::from_secs(args.ttl))
        .map_err(fail)
}

/// `afritalk public-key`: the hex of the key that verifies this key pair's tokens.
pub fn public_key(config: &Config) -> Result<String, CommandError> {
    let pair = keys::root_key_pair(config).map_err(fail)?;
    Ok(pair.public().to_hex())
}

/// `afritalk migrate`: opening the storage applies pending migrations.
pub async fn migrate(config: &Config) -> Result<String, CommandError> {
    let storage = wiring::open_storage(config).await.map_err(fail)?;
    Ok(format!("{} schema is up to date", storage.backend))
}

/// The service as the command line uses it (in-process realtime adapters; the
/// CLI acts as the `afritalk-cli` service, so its actions are audited).
async fn cli_service(
    config: &Config,
    tenant: &str,
) -> Result<(afritalk_core::MessagingService, Actor), CommandError> {
    let storage = wiring::open_storage(config).await.map_err(fail)?;
    let clock = std::sync::Arc::new(afritalk_adapter_memory::SystemClock::new());
    let realtime = wiring::realtime(config, clock.clone()).map_err(fail)?;
    let service = wiring::service(&storage, &realtime, clock);
    let tenant = TenantId::parse(tenant).map_err(fail)?;
    let actor = Actor::service(tenant, UserId::parse("afritalk-cli").map_err(fail)?);
    Ok((service, actor))
}

/// `afritalk user upsert` and `afritalk user list`.
pub async fn user(config: &Config, command: &UserCommand) -> Result<String, CommandError> {
    let (tenant, user, role, name, inactive) = match command {
        UserCommand::Upsert {
            tenant,
            user,
            role,
            name,
            inactive,
        } => (tenant, user, role, name, inactive),
        UserCommand::List {
            tenant,
            search,
            include_inactive,
        } => return list_users(config, tenant, search.as_deref(), *include_inactive).await,
    };
    let (service, actor) = cli_service(config, tenant).await?;
    let stored = service
        .upsert_user(
            &actor,
            UserId::parse(user).map_err(fail)?,
            DisplayName::parse(name).map_err(fail)?,
            Role::parse(role).map_err(fail)?,
            !inactive,
        )
        .await
        .map_err(fail)?;
    Ok(format!(
        "{}/{}: {} ({}, {})",
        stored.tenant_id,
        stored.user_id,
        stored.display_name.as_str(),
        stored.role,
        if stored.active { "active" } else { "inactive" }
    ))
}

/// `afritalk user list`: every page of the directory search, one user a line.
async fn list_users(
    config: &Config,
    tenant: &str,
    search: Option<&str>,
    include_inactive: bool,
) -> Result<String, CommandError> {
    let (service, actor) = cli_service(config, tenant).await?;
    let text = search
        .filter(|s| !s.trim().is_empty())
        .map(SearchText::parse)
        .transpose()
        .map_err(|e| CommandError(format!("--search {}", e.reason)))?;
    let mut lines = Vec::new();
    let mut after = None;
    loop {
        let page = service
            .search_directory(
                &actor,
                DirectorySearch {
                    text: text.clone(),
                    after,
                    include_inactive,
                    limit: PageSize::new(MAX_PAGE_SIZE).map_err(fail)?,
                },
            )
            .await
            .map_err(fail)?;
        for u in &page.users {
            let status = if u.active { "active" } else { "inactive" };
            lines.push(format!(
                "{}\t{}\t{status}\t{}",
                u.user_id, u.role, u.display_name
            ));
        }
        match page.next_cursor {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if lines.is_empty() {
        return Ok(format!("no users in {tenant}"));
    }
    Ok(lines.join("\n"))
}

/// `afritalk audit purge`.
pub async fn audit(config: &Config, command: &AuditCommand) -> Result<String, CommandError> {
    let AuditCommand::Purge { older_than } = command;
    if let Some(days) = older_than
        && !(1..=36_500).contains(days)
    {
        return Err(CommandError(
            "--older-than must be 1 to 36,500 days (100 years)".into(),
        ));
    }
    // Without --older-than, the retention `serve` keeps to.
    let days = older_than.or(config.audit.keep_days);
    let (service, _) = cli_service(config, "afritalk").await?;
    let purge = service
        .purge_audit(days.map(TimeDelta::days))
        .await
        .map_err(fail)?;
    let kept = if purge.kept_longer {
        "; rows are kept 12 months, so only those older than that went\n"
    } else {
        "\n"
    };
    Ok(format!(
        "removed {} audit rows created before {} ({} tenants; each has an audit.purge row){kept}",
        purge.removed, purge.cutoff, purge.tenants
    )
    .trim_end()
    .to_owned())
}
