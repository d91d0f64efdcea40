//! Helpers shared by the Redis adapter's tests: the machine's Redis (a failure,
//! never a skip, when it is unreachable), a random key prefix per test that is
//! swept when the test ends, and a private `redis-server` for restart tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use afritalk_adapter_redis::deadpool_redis::Pool;
use afritalk_adapter_redis::{connect_pool, deadpool_redis::redis};
use afritalk_ports::{Audience, EventSink, RealtimeEvent, TenantId, UserId};
use async_trait::async_trait;
use tokio::sync::Notify;

/// The shared Redis the tests use (`AFRITALK_TEST_REDIS_URL` overrides it).
pub fn redis_url() -> String {
    std::env::var("AFRITALK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// One test's corner of the shared Redis: a random prefix, swept on drop.
pub struct Namespace {
    pub url: String,
    pub prefix: String,
    pub pool: Pool,
}

impl Namespace {
    /// A fresh namespace; panics (fails the test) when Redis is unreachable.
    pub async fn new() -> Self {
        let url = redis_url();
        let prefix = format!("afritalk-test:{}:", uuid::Uuid::new_v4().simple());
        let pool = connect_pool(&url, 4).unwrap();
        let mut conn = pool
            .get()
            .await
            .unwrap_or_else(|e| panic!("Redis at {url} is unreachable (tests need it): {e}"));
        let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
        assert_eq!(pong, "PONG");
        Self { url, prefix, pool }
    }

    /// Deletes every key of this namespace, as if Redis had restarted empty.
    pub fn wipe(&self) {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut conn = client.get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(keys).query(&mut conn).unwrap();
        }
    }

    /// The keys of this namespace.
    pub fn keys(&self) -> Vec<String> {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut conn = client.get_connection().unwrap();
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap();
        keys.sort();
        keys
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Best effort: a sweep that fails must not hide the test's own result.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.wipe()));
    }
}

/// A `redis-server` of the test's own on a free port, never the shared one.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one on a free port and waits until it answers.
    pub fn start() -> Self {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it abruptly (SIGKILL: no goodbye to clients) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen process would not die of SIGKILL until thawed on some systems.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (`true`, SIGSTOP) or thaws (`false`, SIGCONT) it: its sockets stay
    /// open but nothing answers, like a hung server or a dropped network path.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }

    /// Starts it again, empty, on the same port, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for the restart tests");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A sink that records what it is given, in order.
#[derive(Default)]
pub struct RecordingSink {
    delivered: Mutex<Vec<(Audience, RealtimeEvent)>>,
    changed: Notify,
    /// The only tenant with sockets on this node, if it is not every tenant.
    only: Option<TenantId>,
}

impl RecordingSink {
    /// A sink of a node whose sockets all belong to `tenant`.
    pub fn only(tenant: TenantId) -> Self {
        Self {
            only: Some(tenant),
            ..Self::default()
        }
    }

    /// What was delivered so far.
    pub fn delivered(&self) -> Vec<(Audience, RealtimeEvent)> {
        self.delivered.lock().unwrap().clone()
    }

    /// Waits until at least `n` events arrived (at most `timeout`), then returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<(Audience, RealtimeEvent)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let delivered = self.delivered();
            if delivered.len() >= n {
                return delivered;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.delivered();
            }
        }
    }
}

#[async_trait]
impl EventSink for RecordingSink {
    async fn deliver(&self, audience: &Audience, event: &RealtimeEvent) {
        self.delivered
            .lock()
            .unwrap()
            .push((audience.clone(), event.clone()));
        self.changed.notify_waiters();
    }

    fn has_audience(&self, audience: &Audience) -> bool {
        self.only.as_ref().is_none_or(|t| audience.tenant() == t)
    }
}

pub fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

pub fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

/// Tries `attempt` up to 20 times, 50 ms apart, until it succeeds; whether it
/// did (for calls that may fail once while a connection is replaced).
pub async fn eventually(mut attempt: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..20 {
        if attempt().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
