//! Preparing a run: tokens signed with the server's root private key, the
//! benchmark users written to the directory through the REST admin API (with a
//! service token), and a fleet of connected sockets opened at a paced rate.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use afritalk_auth::{Identity, RootKeyPair, TokenMinter};
use afritalk_core::ActorKind;
use afritalk_ports::{DisplayName, Role, TenantId, UserId};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::client::{self, Endpoint, EventHandler, SocketHandle};
use crate::stats::Progress;

/// A setup step failed; the message is for a person.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

fn fail(context: &str, e: impl std::error::Error) -> SetupError {
    // The whole chain: reqwest's own message ("error sending request") hides
    // whether TCP, TLS or HTTP failed.
    let mut message = format!("{context}: {e}");
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    SetupError(message)
}

/// The root key pair: `--root-key` hex, else the server's data directory file
/// (`root-private-key.hex`, as `afritalk serve` creates it).
pub fn root_key(hex: Option<&str>, data_dir: Option<&Path>) -> Result<RootKeyPair, SetupError> {
    let hex = match (hex, data_dir) {
        (Some(hex), _) => hex.to_owned(),
        (None, Some(dir)) => {
            let path = dir.join("root-private-key.hex");
            std::fs::read_to_string(&path).map_err(|e| fail(&path.display().to_string(), e))?
        }
        (None, None) => {
            return Err(SetupError(
                "give --root-key (or AFRITALK_ROOT_PRIVATE_KEY) or --data-dir (or AFRITALK_DATA_DIR)"
                    .into(),
            ));
        }
    };
    RootKeyPair::from_hex(hex.trim()).map_err(|e| fail("root private key", e))
}

/// Mints the tokens of one run.
pub struct Tokens {
    minter: TokenMinter,
    tenant: TenantId,
    ttl: Duration,
}

impl Tokens {
    /// Tokens for `tenant`, valid for `ttl`.
    pub fn new(root: RootKeyPair, tenant: &str, ttl: Duration) -> Result<Self, SetupError> {
        Ok(Self {
            minter: TokenMinter::new(root),
            tenant: TenantId::parse(tenant).map_err(|e| fail("--tenant", e))?,
            ttl,
        })
    }

    fn mint(&self, user: &str, kind: ActorKind, name: &str) -> Result<String, SetupError> {
        let identity = Identity {
            tenant: self.tenant.clone(),
            user: UserId::parse(user).map_err(|e| fail("user id", e))?,
            kind,
            name: Some(DisplayName::parse(name).map_err(|e| fail("display name", e))?),
        };
        self.minter
            .mint(&identity, self.ttl)
            .map_err(|e| fail("minting", e))
    }

    /// A staff token (role Employé) for a benchmark user.
    pub fn user(&self, user: &str) -> Result<String, SetupError> {
        self.mint(user, ActorKind::Staff(Role::Employe), user)
    }

    /// The service token that writes the directory.
    pub fn service(&self) -> Result<String, SetupError> {
        self.mint("afritalk-bench", ActorKind::Service, "afritalk-bench")
    }
}

/// The id of benchmark user `i`.
pub fn user_id(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:05}")
}

/// Writes `users` into the directory as Employés (PUT, with the service token),
/// `concurrency` requests at a time; returns how long it took.
pub async fn upsert_users(
    endpoint: &Endpoint,
    tenant: &str,
    service_token: &str,
    users: &[String],
    concurrency: usize,
) -> Result<Duration, SetupError> {
    let base = &endpoint.http_base;
    let requests = users.iter().map(|user| {
        let url = format!("{base}/api/tenants/{tenant}/directory/users/{user}");
        let request = endpoint
            .http
            .put(&url)
            .bearer_auth(service_token)
            .json(&json!({ "displayName": user, "role": "EMPLOYE", "active": true }));
        (url, request)
    });
    send_all(
        "directory",
        "users written",
        requests.collect(),
        concurrency,
    )
    .await
}

/// Gives every user `per_user` conversations: user i writes one message (POST,
/// with their own token) to each of users i+1 … i+per_user (mod the count), so
/// each has about twice that many partners. Returns how long it took.
pub async fn seed_conversations(
    endpoint: &Endpoint,
    tenant: &str,
    tokens: &Tokens,
    users: &[String],
    per_user: usize,
    concurrency: usize,
) -> Result<Duration, SetupError> {
    let url = format!(
        "{}/api/tenants/{tenant}/messaging/message",
        endpoint.http_base
    );
    let mut requests = Vec::with_capacity(users.len() * per_user);
    for (i, user) in users.iter().enumerate() {
        let token = tokens.user(user)?;
        for k in 1..=per_user.min(users.len().saturating_sub(1)) {
            let to = &users[(i + k) % users.len()];
            let request = endpoint
                .http
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({ "toUserId": to, "content": "bonjour" }));
            requests.push((url.clone(), request));
        }
    }
    send_all("conversations", "messages sent", requests, concurrency).await
}

/// Sends every request, `concurrency` at a time, each retried twice (a loaded
/// server may refuse one now and then, e.g. its token verification hitting the
/// authorizer's time limit), with a progress line for `stage`.
async fn send_all(
    stage: &'static str,
    done_label: &'static str,
    requests: Vec<(String, reqwest::RequestBuilder)>,
    concurrency: usize,
) -> Result<Duration, SetupError> {
    let started = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let progress = Progress::start(stage, requests.len(), {
        let done = done.clone();
        move || format!("{} {done_label}", done.load(Ordering::Relaxed))
    });
    let results = futures::stream::iter(requests.into_iter().map(|(url, request)| {
        let done = done.clone();
        async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let sent = request
                    .try_clone()
                    .ok_or_else(|| SetupError(format!("{url}: request cannot be repeated")))?
                    .send()
                    .await;
                let outcome = match sent {
                    Err(e) => Err(fail(&url, e)),
                    Ok(response) if response.status().is_success() => Ok(()),
                    Ok(response) => {
                        let status = response.status();
                        let body = response.text().await.unwrap_or_default();
                        Err(SetupError(format!("{url}: {status} {body}")))
                    }
                };
                match outcome {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    Err(e) if attempt >= 3 => return Err(e),
                    Err(e) => {
                        eprintln!("retrying after: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    }))
    .buffer_unordered(concurrency.max(1))
    .collect::<Vec<Result<(), SetupError>>>()
    .await;
    progress.stop();
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(started.elapsed())
}

/// One socket to open: which user index, where, with which token.
pub struct Planned {
    /// The socket's index (the handler's `socket` argument).
    pub index: usize,
    /// The server it connects to.
    pub endpoint: Arc<Endpoint>,
    /// Its token.
    pub token: String,
}

/// What opening a fleet achieved.
#[derive(Debug)]
pub struct FleetReport {
    /// Connected sockets, by planned index (`None`: failed).
    pub sockets: Vec<Option<SocketHandle>>,
    /// How many connected.
    pub connected: usize,
    /// Failures, with the first error text.
    pub failed: usize,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// From the first attempt to the last socket connected (or failed).
    pub elapsed: Duration,
    /// Handshake times (TCP connect to `40{"sid"}`), microseconds.
    pub handshake_us: hdrhistogram::Histogram<u64>,
}

/// Opens every planned socket, starting at most `rate` attempts per second and
/// keeping at most `concurrency` handshakes in flight, with progress output.
pub async fn open_fleet<H: EventHandler>(
    plan: Vec<Planned>,
    handler: Arc<H>,
    rate: f64,
    concurrency: usize,
    timeout: Duration,
) -> Result<FleetReport, SetupError> {
    let mut handshake_us = crate::stats::histogram().map_err(|e| fail("histogram", e))?;
    let total = plan.len();
    let connected = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let progress = Progress::start("connect", total, {
        let connected = connected.clone();
        let failed = failed.clone();
        move || {
            format!(
                "{} connected, {} failed",
                connected.load(Ordering::Relaxed),
                failed.load(Ordering::Relaxed)
            )
        }
    });
    let semaphore = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let interval = if rate > 0.0 {
        Duration::from_secs_f64(1.0 / rate)
    } else {
        Duration::ZERO
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (k, planned) in plan.into_iter().enumerate() {
        let due = started + interval.mul_f64(k as f64);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = semaphore.clone().acquire_owned().await else {
            break;
        };
        let handler = handler.clone();
        let connected = connected.clone();
        let failed = failed.clone();
        tasks.spawn(async move {
            let t0 = Instant::now();
            let result = client::connect(
                &planned.endpoint,
                &planned.token,
                planned.index,
                handler,
                timeout,
            )
            .await;
            drop(permit);
            match &result {
                Ok(_) => connected.fetch_add(1, Ordering::Relaxed),
                Err(_) => failed.fetch_add(1, Ordering::Relaxed),
            };
            (planned.index, t0.elapsed(), result)
        });
    }
    let mut sockets: Vec<Option<SocketHandle>> = (0..total).map(|_| None).collect();
    let mut first_error = None;
    let mut last_done = started;
    while let Some(joined) = tasks.join_next().await {
        let Ok((index, took, result)) = joined else {
            continue;
        };
        last_done = Instant::now();
        match result {
            Ok(handle) => {
                let _ = handshake_us.record(crate::stats::micros(took));
                if let Some(slot) = sockets.get_mut(index) {
                    *slot = Some(handle);
                }
            }
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    progress.stop();
    Ok(FleetReport {
        sockets,
        connected: connected.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        first_error,
        elapsed: last_done.duration_since(started),
        handshake_us,
    })
}
