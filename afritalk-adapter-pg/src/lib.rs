//! # afritalk-adapter-pg
//!
//! AfriTalk's production storage: PostgreSQL through diesel-async
//! (tokio-postgres underneath, no libpq) with a deadpool connection pool.
//! [`PgStore`] implements `MessageStore`, `NotificationStore`, `AuditLog`,
//! `Directory` and `FeatureFlags`; it is cheap to clone, so one store can back
//! every storage port (`Arc<dyn MessageStore>`, `Arc<dyn AuditLog>`, …).
//!
//! ```no_run
//! # async fn start() -> Result<(), afritalk_adapter_sql::SetupError> {
//! let store = afritalk_adapter_pg::PgStore::connect("postgres://afritalk@db/afritalk", 16).await?;
//! store.migrate().await?; // on start, or from `afritalk migrate`
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! - this file: [`PgStore`] (defined by `afritalk_adapter_sql::sql_store!`, which
//!   holds every query), its constructor and [`PgStore::migrate`].
//! - `hot_paths.rs`: [`PgHotPaths`], the writes of sends, first deliveries
//!   (✓✓) and audit rows, each through a `batcher.rs` queue: a lone write is
//!   done at once, concurrent ones are grouped into one statement.
//! - `send.rs`: one send as a single writable-CTE statement (one round trip
//!   instead of seven or eight); `send_batch.rs`: many sends as one statement
//!   of the same shape.
//! - `delivery.rs`: first deliveries as one guarded `UPDATE`: a primary-key
//!   probe per acknowledgement, from one JSON array.
//! - `audit.rs`: audit rows (every realtime connect and disconnect appends
//!   one) as one `INSERT` from one JSON array.
//! - `statistics.rs`: [`PgStore::keep_statistics`], which analyzes the tables
//!   itself where the server's autovacuum is off (generic plans made without
//!   statistics are kept for good).
//! - `migrations/`: the Postgres flavour of the portable schema, embedded in
//!   the binary ([`MIGRATIONS`]).

mod audit;
mod batcher;
mod delivery;
mod hot_paths;
mod send;
mod send_batch;
mod statistics;

pub use batcher::BatchStatistics;
pub use hot_paths::PgHotPaths;
pub use statistics::{StatisticsKeeping, YOUNG_ROWS};

use afritalk_adapter_sql::SetupError;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// The Postgres migrations, embedded at build time.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

afritalk_adapter_sql::sql_store! {
    /// AfriTalk storage on PostgreSQL: every storage port over one connection pool.
    pub struct PgStore {
        connection: AsyncPgConnection,
        backend: diesel::pg::Pg,
        write_transaction: transaction,
        hot_paths: crate::hot_paths::PgHotPaths,
    }
}

/// The longest a call waits for a free pooled connection.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest opening (or checking) a connection may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl PgStore {
    /// Opens a pool of at most `pool_size` connections to `url`
    /// (`postgres://user:pass@host:port/db`) and checks that one connection works.
    /// Does not migrate: call [`PgStore::migrate`].
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, SetupError> {
        let target = redact(url);
        // `Fast` recycling: a checked-out connection is not pinged (the default,
        // `Verified`, runs `SELECT 1` on every checkout: one more round trip per
        // port call). A connection whose socket closed, or whose transaction
        // state is broken, is still discarded on return (`is_broken`); a server
        // that died unnoticed fails the first query, which reports `Unavailable`.
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        config.recycling_method = RecyclingMethod::Fast;
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
        // Bounded waits: a database that does not answer (a host that drops
        // packets, a pool exhausted by an overload) fails calls as unavailable
        // instead of holding them, and the catch-up's settle window then covers
        // the longest a write can wait before it is stored.
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| SetupError::Pool {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        // Fail now, with a clear message, rather than on the first request.
        drop(pool.get().await.map_err(|e| SetupError::Pool {
            target,
            reason: e.to_string(),
        })?);
        Ok(Self::from_pool(pool, false))
    }

    /// How sends were written so far: how many were grouped into shared
    /// statements (for tests and benchmarks).
    pub fn send_statistics(&self) -> BatchStatistics {
        self.hot_paths.send_statistics()
    }

    /// How first deliveries (✓✓) were written so far.
    pub fn delivery_statistics(&self) -> BatchStatistics {
        self.hot_paths.delivery_statistics()
    }

    /// How audit rows were written so far.
    pub fn audit_statistics(&self) -> BatchStatistics {
        self.hot_paths.audit_statistics()
    }

    /// Applies the pending embedded migrations (idempotent; safe to run on every start).
    pub async fn migrate(&self) -> Result<(), SetupError> {
        let conn = self
            .pool()
            .get()
            .await
            .map_err(|e| SetupError::Migration(format!("no connection: {e}")))?;
        let mut conn = deadpool_object_into_inner(conn);
        // Nodes of one deployment start together and each migrates: without
        // this lock all but one failed on a fresh database (two `CREATE
        // TABLE`s racing). Session-level: released below, and in any case
        // when this connection (owned by the harness, never back in the pool)
        // closes. Behind a pooler, use session mode (see the README).
        let lock =
            |sql| diesel::sql_query(sql).bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK);
        let failed =
            |e| SetupError::Migration(format!("waiting for another node's migrations: {e}"));
        let got: Vec<LockTaken> = diesel_async::RunQueryDsl::load(
            lock("SELECT pg_try_advisory_lock($1) AS taken"),
            &mut conn,
        )
        .await
        .map_err(failed)?;
        if !got.first().is_some_and(|row| row.taken) {
            tracing::info!("another node is migrating the database; waiting for it");
            diesel_async::RunQueryDsl::execute(lock("SELECT pg_advisory_lock($1)"), &mut conn)
                .await
                .map_err(failed)?;
        }
        // The migration harness is synchronous: run it on a blocking thread that
        // drives the async connection through the runtime handle.
        tokio::task::spawn_blocking(move || {
            let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> =
                AsyncConnectionWrapper::from(conn);
            let migrated = wrapper
                .run_pending_migrations(MIGRATIONS)
                .map(|_| ())
                .map_err(|e| SetupError::Migration(e.to_string()));
            let unlock = diesel::sql_query("SELECT pg_advisory_unlock($1)")
                .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK);
            if let Err(err) = diesel::RunQueryDsl::execute(unlock, &mut wrapper) {
                // The session's end releases it anyway: the wrapper drops here.
                tracing::warn!(%err, "migration lock not released explicitly");
            }
            migrated
        })
        .await
        .map_err(|e| SetupError::Migration(format!("migration task failed: {e}")))??;
        self.fill_search_keys()
            .await
            .map_err(|e| SetupError::Migration(format!("folding directory names: {e}")))?;
        Ok(())
    }
}

/// The answer of `pg_try_advisory_lock`.
#[derive(diesel::QueryableByName)]
struct LockTaken {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    taken: bool,
}

/// The advisory lock key under which one node at a time migrates ("afritalk"
/// in ASCII, so it is recognisable in `pg_locks`).
const MIGRATION_LOCK: i64 = 0x6166_7269_7461_6c6b;

/// Takes a connection out of the pool for good (the migration keeps it).
fn deadpool_object_into_inner(
    conn: diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>,
) -> AsyncPgConnection {
    diesel_async::pooled_connection::deadpool::Object::take(conn)
}

/// The URL without its passwords, for error messages: the one of the user
/// part, and `password` / `sslpassword` in the query string (which the driver
/// accepts too).
fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &base[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}@{}", &base[..scheme + 3], user, &base[at + 1..])
        }
        _ => base.to_owned(),
    };
    let Some(query) = query else {
        return base;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if matches!(key, "password" | "sslpassword") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=disable&password=hunter2&sslpassword=x"),
            "postgres://u@h/db?sslmode=disable&password=***&sslpassword=***"
        );
    }
}
