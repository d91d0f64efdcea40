//! The benchmark's client and setup against the real server (embedded default,
//! in process, on a free port): directory writes, socket handshakes, a send
//! acked `{ok:true}`, the recipient's `messaging:new`, and a refused token;
//! the latency scenario's CSV, over plain HTTP and over TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use afritalk_bench::cli::{Cli, Scenario};
use afritalk_bench::client::{self, Endpoint, EventHandler};
use afritalk_bench::setup::{self, Planned, Tokens};
use afritalk_bench::traffic;
use afritalk_bin::app::Application;
use afritalk_bin::config::{Config, Database};
use afritalk_http::TlsFiles;
use clap::Parser;
use serde_json::{Value, json};

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(usize, String, Value)>>,
    acks: Mutex<Vec<(u64, Value)>>,
}

impl EventHandler for Recorder {
    fn on_event(&self, socket: usize, name: &str, data: &Value) -> Value {
        self.events
            .lock()
            .unwrap()
            .push((socket, name.to_owned(), data.clone()));
        json!({ "ok": true })
    }
    fn on_ack(&self, _socket: usize, tag: u64, data: &Value) {
        self.acks.lock().unwrap().push((tag, data.clone()));
    }
    fn on_close(&self, _socket: usize, _reason: &str) {}
}

/// The real server on the embedded default, in process, on a free port.
struct Server {
    url: String,
    config: Config,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(dir: &std::path::Path) -> Self {
        Self::start_with(dir, None).await
    }

    /// The server speaking TLS with a fresh self-signed certificate for
    /// 127.0.0.1, whose PEM is written to the returned path.
    async fn start_tls(dir: &std::path::Path) -> (Self, PathBuf) {
        let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let files = TlsFiles {
            cert: dir.join("chain.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, pair.cert.pem()).unwrap();
        std::fs::write(&files.key, pair.signing_key.serialize_pem()).unwrap();
        let ca = files.cert.clone();
        (Self::start_with(dir, Some(files)).await, ca)
    }

    async fn start_with(dir: &std::path::Path, tls: Option<TlsFiles>) -> Self {
        let mut config = Config::from_lookup(|_| None).unwrap();
        config.data_dir = dir.join("data");
        config.database = Database::Sqlite(config.data_dir.join("afritalk.db"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        config.tls = tls;
        let app = Application::build(config.clone()).await.unwrap();
        let url = format!("{scheme}://127.0.0.1:{}", app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            url,
            config,
            stop,
            task,
        }
    }

    /// Shuts the server down and waits (a while) for it to finish.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_sends_receives_and_acks_through_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (url, config) = (server.url.clone(), server.config.clone());

    let root = setup::root_key(None, Some(&config.data_dir)).unwrap();
    let tokens = Tokens::new(root, "bench", Duration::from_secs(600)).unwrap();
    let endpoint = Arc::new(Endpoint::new(&url, "bench", None).unwrap());
    let users: Vec<String> = (0..2).map(|i| setup::user_id("t", i)).collect();
    setup::upsert_users(&endpoint, "bench", &tokens.service().unwrap(), &users, 2)
        .await
        .unwrap();
    let plan = users
        .iter()
        .enumerate()
        .map(|(index, user)| Planned {
            index,
            endpoint: endpoint.clone(),
            token: tokens.user(user).unwrap(),
        })
        .collect();
    let recorder = Arc::new(Recorder::default());
    let fleet = setup::open_fleet(plan, recorder.clone(), 100.0, 2, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        (fleet.connected, fleet.failed),
        (2, 0),
        "{:?}",
        fleet.first_error
    );

    let sender = fleet.sockets[0].as_ref().unwrap();
    assert!(sender.emit(
        "messaging:send",
        json!({ "toUserId": users[1], "content": "afb 1 0 0", "clientMessageId": "afb-1-0" }),
        7,
    ));
    eventually("the ack", || !recorder.acks.lock().unwrap().is_empty()).await;
    let (tag, ack) = recorder.acks.lock().unwrap()[0].clone();
    assert_eq!(tag, 7);
    assert_eq!(ack["ok"], json!(true), "{ack}");
    assert!(ack["conversationId"].is_string(), "{ack}");
    eventually("messaging:new on the recipient", || {
        recorder
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|(socket, name, data)| {
                *socket == 1
                    && name == "messaging:new"
                    && data["message"]["content"] == json!("afb 1 0 0")
            })
    })
    .await;
    // The recipient acked `messaging:new`, so the sender hears ✓✓.
    eventually("messaging:delivered on the sender", || {
        recorder
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|(socket, name, _)| *socket == 0 && name == "messaging:delivered")
    })
    .await;

    // A token from another key is refused at the handshake.
    let stranger = Tokens::new(
        afritalk_auth::RootKeyPair::generate(),
        "bench",
        Duration::from_secs(60),
    )
    .unwrap();
    let refused = client::connect(
        &endpoint,
        &stranger.user(&users[0]).unwrap(),
        9,
        recorder.clone(),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        matches!(refused, Err(client::ClientError::Refused(_))),
        "{refused:?}"
    );

    for s in fleet.sockets.iter().flatten() {
        s.close();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_latency_scenario_writes_every_message_to_its_csv() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    latency_scenario_delivers_every_message(&server, dir.path(), &[]).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_latency_scenario_runs_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (server, ca) = Server::start_tls(dir.path()).await;
    let ca = ca.display().to_string();
    latency_scenario_delivers_every_message(&server, dir.path(), &["--ca-file", &ca]).await;
    server.stop().await;
}

/// Runs `latency` against `server` with `extra` options and checks its CSV:
/// every message arrived, on the timetable.
async fn latency_scenario_delivers_every_message(server: &Server, dir: &Path, extra: &[&str]) {
    let (url, config) = (server.url.clone(), server.config.clone());

    // 20 msg/s for 1 s after 0.5 s of warm-up: 30 messages, 10 of them warm-up.
    let csv = dir.join("latencies.csv");
    let data_dir = config.data_dir.display().to_string();
    let csv_arg = csv.display().to_string();
    let mut argv = vec![
        "afritalk-bench",
        "latency",
        "--url",
        &url,
        "--data-dir",
        &data_dir,
        "--rate",
        "20",
        "--users",
        "4",
        "--duration",
        "1s",
        "--warmup",
        "500ms",
        "--latencies-csv",
        &csv_arg,
    ];
    argv.extend_from_slice(extra);
    let cli = Cli::try_parse_from(argv).unwrap();
    let Scenario::Latency(args) = cli.scenario else {
        panic!("not the latency scenario");
    };
    traffic::run(args, false).await.unwrap();

    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("seq,due_unix_s,latency_us,measured"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 30, "{text}");
    for (seq, row) in rows.iter().enumerate() {
        assert_eq!(row[0], seq.to_string());
        // Every message arrived, after its due time and within seconds.
        let latency: u64 = row[2].parse().unwrap_or_else(|_| panic!("{text}"));
        assert!((1..5_000_000).contains(&latency), "{text}");
        assert_eq!(row[3], if seq >= 10 { "true" } else { "false" });
    }
    // Due times follow the timetable: 50 ms apart, in today's Unix time.
    let due = |i: usize| rows[i][1].parse::<f64>().unwrap();
    assert!((due(29) - due(0) - 1.45).abs() < 1e-3, "{text}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - 60.0..now).contains(&due(29)), "{text}");
}
