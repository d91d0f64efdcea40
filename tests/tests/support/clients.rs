//! Real `socket.io-client` sockets, driven through `tests/js/driver.js`: one node
//! process per test, any number of named sockets in it.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::Once;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::{TestApp, js_dir};

static NPM_INSTALL: Once = Once::new();

/// Installs the pinned client from the lockfile once per test run.
fn ensure_node_modules() {
    NPM_INSTALL.call_once(|| {
        let dir = js_dir();
        if dir.join("node_modules/socket.io-client").exists() {
            return;
        }
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm must be installed to run the black-box tests");
        assert!(status.success(), "npm ci failed in {}", dir.display());
    });
}

/// A node process holding real socket.io-client sockets.
pub struct Clients {
    child: Child,
    stdin: ChildStdin,
    reports: mpsc::UnboundedReceiver<Value>,
    /// Reports read but not yet consumed by a wait.
    backlog: VecDeque<Value>,
    next_ref: u64,
}

/// How long any wait for the server lasts before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

impl Clients {
    /// Starts the driver.
    pub async fn start() -> Self {
        ensure_node_modules();
        let mut child = Command::new("node")
            .arg(js_dir().join("driver.js"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node must be installed to run the black-box tests");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && tx.send(value).is_err()
                {
                    break;
                }
            }
        });
        let mut clients = Self {
            child,
            stdin,
            reports: rx,
            backlog: VecDeque::new(),
            next_ref: 0,
        };
        clients
            .wait_for(|r| r["kind"] == "ready")
            .await
            .expect("driver ready");
        clients
    }

    async fn command(&mut self, command: Value) {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("driver stdin");
    }

    /// Waits for the first report matching `pred` (earlier unmatched ones are kept).
    pub async fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(report)) if pred(&report) => return Some(report),
                Ok(Some(report)) => self.backlog.push_back(report),
                _ => return None,
            }
        }
    }

    /// Reads the reports that arrive within `window`, then forgets every one
    /// matching `pred` (stale ones a later wait must not take for new).
    pub async fn forget(&mut self, window: Duration, pred: impl Fn(&Value) -> bool) {
        let _ = self.arrives_within(window, |_| false).await;
        self.backlog.retain(|r| !pred(r));
    }

    /// Whether a matching report arrives within `window` (for "never receives" checks).
    pub async fn arrives_within(
        &mut self,
        window: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> bool {
        if self.backlog.iter().any(&pred) {
            return true;
        }
        let deadline = tokio::time::Instant::now() + window;
        loop {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(report)) if pred(&report) => return true,
                Ok(Some(report)) => self.backlog.push_back(report),
                _ => return false,
            }
        }
    }

    /// Connects socket `name` with `token`; `Ok(socket id)` or `Err(connect_error message)`.
    pub async fn connect(
        &mut self,
        app: &TestApp,
        name: &str,
        tenant: &str,
        token: &str,
        transport: &str,
    ) -> Result<String, String> {
        let command = connect_command(app, name, tenant, token, transport);
        self.connect_with(name, command).await
    }

    /// Connects socket `name` over websocket, answering every event that asks
    /// for an ack with an empty ack (`ack()`, no argument), as many clients do.
    pub async fn connect_acking_empty(
        &mut self,
        app: &TestApp,
        name: &str,
        tenant: &str,
        token: &str,
    ) -> Result<String, String> {
        let mut command = connect_command(app, name, tenant, token, "websocket");
        command["autoAck"] = json!("empty");
        self.connect_with(name, command).await
    }

    /// Sends a connect `command` for socket `name` and waits for its outcome.
    async fn connect_with(&mut self, name: &str, command: Value) -> Result<String, String> {
        self.command(command).await;
        let report = self
            .wait_for(|r| {
                r["client"] == name && (r["kind"] == "connected" || r["kind"] == "connect_error")
            })
            .await
            .expect("connect or connect_error");
        if report["kind"] == "connected" {
            Ok(report["id"].as_str().unwrap_or_default().to_owned())
        } else {
            Err(report["message"].as_str().unwrap_or_default().to_owned())
        }
    }

    /// Emits `event` with `data` from socket `name` and returns the server's ack.
    pub async fn emit(&mut self, name: &str, event: &str, data: Value) -> Value {
        self.next_ref += 1;
        let reference = format!("r{}", self.next_ref);
        self.command(
            json!({ "op": "emit", "client": name, "event": event, "data": data, "ref": reference }),
        )
        .await;
        let report = self
            .wait_for(|r| r["ref"] == reference.as_str())
            .await
            .expect("ack report");
        assert_eq!(report["kind"], "ack", "{event}: no ack from the server");
        report["data"].clone()
    }

    /// Connects socket `name` and, without waiting for the connection, emits
    /// `event`: socket.io-client buffers it and sends it right after the
    /// server's connect packet. Returns the server's ack.
    pub async fn emit_while_connecting(
        &mut self,
        app: &TestApp,
        name: &str,
        tenant: &str,
        token: &str,
        event: &str,
        data: Value,
    ) -> Value {
        self.command(connect_command(app, name, tenant, token, "websocket"))
            .await;
        self.emit(name, event, data).await
    }

    /// Emits `event` without asking for an ack.
    pub async fn emit_raw(&mut self, name: &str, event: &str, data: Value) {
        self.command(json!({ "op": "emitRaw", "client": name, "event": event, "data": data }))
            .await;
    }

    /// Waits for the server to send `event` to socket `name`; returns its payload.
    pub async fn next_event(&mut self, name: &str, event: &str) -> Value {
        let report = self
            .wait_for(|r| r["client"] == name && r["kind"] == "event" && r["event"] == event)
            .await
            .unwrap_or_else(|| panic!("{name} never received {event}"));
        report["data"].clone()
    }

    /// Whether socket `name` receives `event` within `window`.
    pub async fn receives_within(&mut self, name: &str, event: &str, window: Duration) -> bool {
        self.arrives_within(window, |r| {
            r["client"] == name && r["kind"] == "event" && r["event"] == event
        })
        .await
    }

    /// Disconnects socket `name` and waits until the client saw it.
    pub async fn disconnect(&mut self, name: &str) {
        self.command(json!({ "op": "disconnect", "client": name }))
            .await;
        self.wait_for(|r| r["client"] == name && r["kind"] == "disconnected")
            .await
            .expect("disconnected");
    }
}

/// The driver command that connects socket `name` to `tenant`'s endpoint.
fn connect_command(app: &TestApp, name: &str, tenant: &str, token: &str, transport: &str) -> Value {
    json!({
        "op": "connect", "client": name, "url": app.address,
        "path": app.socket_path(tenant), "token": token, "transports": [transport],
        "ca": app.ca_pem,
    })
}

impl Drop for Clients {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
