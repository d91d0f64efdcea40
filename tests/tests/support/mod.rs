//! Test support: start the real application on a free port with a fresh data
//! directory, mint tokens for it, call its REST API, and drive real
//! socket.io-client sockets through the node driver in `tests/js`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod clients;
pub mod services;

use std::path::PathBuf;
use std::time::Duration;

use afritalk_auth::{Identity, TokenMinter};
use afritalk_bin::app::Application;
use afritalk_bin::config::Config;
use afritalk_bin::keys;
use afritalk_core::ActorKind;
use afritalk_ports::{DisplayName, Role, TenantId, UserId};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server with its own data directory.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub config: Config,
    pub http: reqwest::Client,
    /// The PEM certificate clients trust, when the server speaks TLS.
    pub ca_pem: Option<String>,
    /// The server's TLS acceptor (to reload its certificate), when it speaks TLS.
    pub tls: Option<afritalk_http::Tls>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _data: Option<tempfile::TempDir>,
}

/// A fresh data directory for one test.
pub fn fresh_config() -> (Config, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = Config::from_lookup(|_| None).expect("default config");
    config.data_dir = data.path().join("data");
    config.database = afritalk_bin::config::Database::Sqlite(config.data_dir.join("afritalk.db"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    (config, data)
}

/// Starts the application on the embedded default (SQLite in a temp dir).
pub async fn spawn_app() -> TestApp {
    let (config, dir) = fresh_config();
    let mut app = start(config).await;
    app.keep_data_dir(dir);
    app
}

/// Starts the application with `config` on a free port.
pub async fn start(config: Config) -> TestApp {
    start_with(config, None).await
}

/// Starts the application with `config` (which names a certificate for
/// `127.0.0.1`) on a free port, with clients that trust `ca_pem` only.
pub async fn start_tls(config: Config, ca_pem: &str) -> TestApp {
    start_with(config, Some(ca_pem)).await
}

/// Starts the application with `config` on a runtime of its own. Shutting
/// that runtime down (`shutdown_background`) is a crash: the server stops
/// at once, with no graceful shutdown and no socket's disconnect handled.
pub async fn start_crashable(config: Config) -> (TestApp, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime
        .spawn(Application::build(config.clone()))
        .await
        .unwrap()
        .expect("application starts");
    let port = app.port();
    runtime.spawn(app.run_until(std::future::pending()));
    let app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        config,
        http: reqwest::Client::new(),
        ca_pem: None,
        tls: None,
        stop: None,
        task: None,
        _data: None,
    };
    (app, runtime)
}

/// A client that trusts `ca_pem` only, over TLS 1.3 or 1.2 up to `max`.
pub fn tls_client(ca_pem: &str, max: reqwest::tls::Version) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .max_tls_version(max)
        .build()
        .unwrap()
}

async fn start_with(config: Config, ca_pem: Option<&str>) -> TestApp {
    let app = Application::build(config.clone())
        .await
        .expect("application starts");
    let port = app.port();
    let tls = app.tls().cloned();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let (address, http) = match ca_pem {
        None => (format!("http://127.0.0.1:{port}"), reqwest::Client::new()),
        Some(ca) => (
            format!("https://127.0.0.1:{port}"),
            tls_client(ca, reqwest::tls::Version::TLS_1_3),
        ),
    };
    TestApp {
        address,
        port,
        config,
        http,
        ca_pem: ca_pem.map(str::to_owned),
        tls,
        stop: Some(tx),
        task: Some(task),
        _data: None,
    }
}

impl TestApp {
    /// Stops the server gracefully and waits for it; returns the data directory
    /// so a restart can reuse it.
    pub async fn stop(mut self) -> (Config, Option<tempfile::TempDir>) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            // Beyond the server's own 10 s grace for in-flight requests.
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server stops within 30 s")
                .expect("server task")
                .expect("server ran cleanly");
        }
        (self.config.clone(), self._data.take())
    }

    /// Keeps `dir` (the data directory) until the app is dropped.
    pub fn keep_data_dir(&mut self, dir: tempfile::TempDir) {
        self._data = Some(dir);
    }

    /// A token for a staff member of `tenant`.
    pub fn token(&self, tenant: &str, user: &str, role: Role) -> String {
        self.mint(
            tenant,
            user,
            ActorKind::Staff(role),
            Duration::from_secs(600),
        )
    }

    /// A service token.
    pub fn service_token(&self, tenant: &str, name: &str) -> String {
        self.mint(tenant, name, ActorKind::Service, Duration::from_secs(600))
    }

    pub fn mint(&self, tenant: &str, user: &str, kind: ActorKind, ttl: Duration) -> String {
        let pair = keys::root_key_pair(&self.config).expect("key pair");
        let identity = Identity {
            tenant: TenantId::parse(tenant).unwrap(),
            user: UserId::parse(user).unwrap(),
            kind,
            name: Some(DisplayName::parse(format!("{user} name")).unwrap()),
        };
        TokenMinter::new(pair).mint(&identity, ttl).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn socket_path(&self, tenant: &str) -> String {
        format!("/api/tenants/{tenant}/messaging/socket")
    }

    /// Registers a user in the directory through the admin API.
    pub async fn add_user(&self, tenant: &str, user: &str, role: &str) {
        let token = self.service_token(tenant, "directory-sync");
        let (status, body) = self
            .put(
                &format!("/api/tenants/{tenant}/directory/users/{user}"),
                &token,
                json!({ "displayName": format!("{user} name"), "role": role, "active": true }),
            )
            .await;
        assert_eq!(status, 200, "directory upsert: {body}");
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let res = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        split(res).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        split(res).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .put(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        split(res).await
    }

    /// Sends a message over REST.
    pub async fn send(&self, tenant: &str, token: &str, to: &str, content: &str) -> (u16, Value) {
        self.post(
            &format!("/api/tenants/{tenant}/messaging/message"),
            token,
            json!({ "toUserId": to, "content": content }),
        )
        .await
    }
}

/// The status of `user` in a presence snapshot, or `"absent"`.
pub fn status_of(list: &Value, user: &str) -> String {
    list.as_array()
        .into_iter()
        .flatten()
        .find(|p| p["userId"] == user)
        .and_then(|p| p["status"].as_str())
        .unwrap_or("absent")
        .to_owned()
}

pub async fn split(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The directory of the node driver and its pinned `socket.io-client`.
pub fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// What any token holder can do without the private key: append a block that
/// allows writes only until `deadline` (reads as long as the token lives).
pub fn attenuate_writes_until(token: &str, deadline: std::time::SystemTime) -> String {
    attenuate(
        token,
        biscuit_auth::macros::block!(
            r#"check if operation("read") or time($t), $t <= {deadline};"#,
            deadline = deadline,
        ),
    )
}

/// What any token holder can do without the private key: append a block that
/// restricts the token to reading.
pub fn attenuate_read_only(token: &str) -> String {
    attenuate(
        token,
        biscuit_auth::macros::block!(r#"check if operation("read");"#),
    )
}

/// `token` with `block` appended, as any holder can do without the private key.
fn attenuate(token: &str, block: biscuit_auth::builder::BlockBuilder) -> String {
    biscuit_auth::UnverifiedBiscuit::from_base64(token)
        .expect("token parses")
        .append(block)
        .expect("append")
        .to_base64()
        .expect("encode")
}
