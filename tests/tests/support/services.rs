//! The real services the scale-out tests share: a fresh Postgres database per
//! test (named so the storage contract tests sweep leftovers), the machine's
//! Redis under a random key prefix, and private `redis-server` processes a test
//! may kill and restart.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// The Postgres server (trust auth); override with `AFRITALK_TEST_DATABASE_URL`.
pub fn postgres_server() -> String {
    std::env::var("AFRITALK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// The machine's Redis; override with `AFRITALK_TEST_REDIS_URL`.
pub fn shared_redis() -> String {
    std::env::var("AFRITALK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A database created for one test; call [`TestDatabase::drop_database`] at the end.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

async fn admin() -> AsyncPgConnection {
    let url = format!("{}/postgres", postgres_server());
    AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|e| {
            panic!("Postgres is required by the scale-out tests and is unreachable at {url}: {e}")
        })
}

impl TestDatabase {
    /// Creates an empty database (the application migrates it on start).
    pub async fn create() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let name = format!("afritalk_test_{secs}_{}", uuid::Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin().await)
            .await
            .expect("create test database");
        let url = format!("{}/{name}", postgres_server());
        Self { name, url }
    }

    /// Drops the database (after every connection to it is closed).
    pub async fn drop_database(self) {
        diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin().await)
        .await
        .expect("drop test database");
    }
}

/// A key prefix no other test uses on the shared Redis; its keys are deleted when
/// the guard drops (also when the test fails).
pub struct RedisPrefix(pub String);

impl RedisPrefix {
    /// A fresh prefix.
    pub fn new() -> Self {
        Self(format!("afritalk-test:{}:", uuid::Uuid::new_v4().simple()))
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let url = shared_redis();
        let keys = Command::new("redis-cli")
            .args(["-u", &url, "--scan", "--pattern", &format!("{}*", self.0)])
            .output();
        if let Ok(out) = keys {
            let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .filter(|k| !k.is_empty())
                .collect();
            if !keys.is_empty() {
                let _ = Command::new("redis-cli")
                    .args(["-u", &url, "del"])
                    .args(&keys)
                    .stdout(Stdio::null())
                    .status();
            }
        }
    }
}

/// A `redis-server` owned by the test, on a free port, keeping nothing on disk.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (it loses everything: nothing is on disk).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for the scale-out tests");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private redis-server did not start on port {}", self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
