//! TLS 1.3 served by the server itself: REST and Socket.IO (websocket and
//! polling, with the real socket.io-client) over TLS; plain HTTP and TLS 1.2
//! refused on the TLS port; a renewed certificate served to new connections
//! without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use afritalk_http::TlsFiles;
use reqwest::tls::Version;
use serde_json::json;
use support::clients::Clients;
use support::{TestApp, fresh_config, start_tls, tls_client};

/// A self-signed certificate for 127.0.0.1 and its key, as PEM.
fn self_signed() -> (String, String) {
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    (pair.cert.pem(), pair.signing_key.serialize_pem())
}

/// Writes `cert` and `key` where `files` says.
fn write(files: &TlsFiles, cert: &str, key: &str) {
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
}

/// Starts the embedded default serving TLS with `cert` and `key` from files in `dir`.
async fn tls_app(dir: &Path, cert: &str, key: &str) -> (TestApp, TlsFiles) {
    let (mut config, data) = fresh_config();
    let files = TlsFiles {
        cert: dir.join("chain.pem"),
        key: dir.join("key.pem"),
    };
    write(&files, cert, key);
    config.tls = Some(files.clone());
    let mut app = start_tls(config, cert).await;
    app.keep_data_dir(data);
    (app, files)
}

/// The request failed because the server's certificate is not the one trusted.
fn assert_untrusted(outcome: reqwest::Result<reqwest::Response>) {
    let err = format!(
        "{:?}",
        outcome.expect_err("an untrusted certificate was accepted")
    );
    assert!(err.contains("InvalidCertificate"), "{err}");
}

#[tokio::test]
async fn rest_and_both_socket_transports_work_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let (app, _) = tls_app(dir.path(), &cert, &key).await;
    app.add_user("acme", "alice", "DG").await;
    app.add_user("acme", "bob", "EMPLOYE").await;
    let alice = app.token("acme", "alice", afritalk_ports::Role::Dg);
    let bob = app.token("acme", "bob", afritalk_ports::Role::Employe);

    let mut clients = Clients::start().await;
    for (name, transport) in [("bob-ws", "websocket"), ("bob-poll", "polling")] {
        clients
            .connect(&app, name, "acme", &bob, transport)
            .await
            .unwrap_or_else(|e| panic!("{name} connects over TLS: {e}"));
    }
    clients
        .connect(&app, "alice", "acme", &alice, "websocket")
        .await
        .expect("alice connects over TLS");

    let (status, body) = app.send("acme", &alice, "bob", "over REST and TLS").await;
    assert_eq!(status, 201, "{body}");
    for name in ["bob-ws", "bob-poll"] {
        let event = clients.next_event(name, "messaging:new").await;
        assert_eq!(event["message"]["content"], "over REST and TLS", "{name}");
    }
    // ✓✓ reaches the sender's TLS socket.
    let delivered = clients.next_event("alice", "messaging:delivered").await;
    assert_eq!(delivered["messageId"], body["message"]["id"], "{delivered}");

    let ack = clients
        .emit(
            "alice",
            "messaging:send",
            json!({ "toUserId": "bob", "content": "over a secure socket" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    for name in ["bob-ws", "bob-poll"] {
        let event = clients.next_event(name, "messaging:new").await;
        assert_eq!(
            event["message"]["content"], "over a secure socket",
            "{name}"
        );
    }
    let delivered = clients.next_event("alice", "messaging:delivered").await;
    assert_eq!(delivered["messageId"], ack["message"]["id"], "{delivered}");
}

#[tokio::test]
async fn plain_http_and_tls_1_2_are_refused_on_the_tls_port() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let (app, _) = tls_app(dir.path(), &cert, &key).await;
    let healthz = app.url("/healthz");

    let ok = app.http.get(&healthz).send().await.expect("TLS 1.3 works");
    assert_eq!(ok.status(), 200);
    // ALPN: a client that speaks HTTP/2 gets it (the REST calls of the other
    // tests go over HTTP/2 too; socket.io-client's over HTTP/1.1).
    assert_eq!(ok.version(), reqwest::Version::HTTP_2);

    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", app.port))
        .send()
        .await;
    // The server answers with a TLS alert, which no HTTP parser reads.
    let plain = format!("{:?}", plain.expect_err("plain HTTP answered"));
    assert!(plain.contains("Parse(Version)"), "{plain}");

    let old = tls_client(&cert, Version::TLS_1_2)
        .get(&healthz)
        .send()
        .await;
    let old = format!("{:?}", old.expect_err("TLS 1.2 answered"));
    assert!(old.contains("AlertReceived(ProtocolVersion)"), "{old}");

    // The server outlives the refused clients.
    let again = app.http.get(&healthz).send().await.expect("still serving");
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn a_reloaded_certificate_is_served_to_new_connections_and_a_bad_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (old_cert, old_key) = self_signed();
    let (app, files) = tls_app(dir.path(), &old_cert, &old_key).await;
    let healthz = app.url("/healthz");
    let tls = app.tls.clone().expect("the app speaks TLS");
    let (new_cert, new_key) = self_signed();
    let trusts_old = || tls_client(&old_cert, Version::TLS_1_3);
    let trusts_new = || tls_client(&new_cert, Version::TLS_1_3);

    assert_untrusted(trusts_new().get(&healthz).send().await);

    write(&files, &new_cert, &new_key);
    tls.reload().expect("the renewed pair loads");
    let renewed = trusts_new().get(&healthz).send().await.expect("renewed");
    assert_eq!(renewed.status(), 200);
    assert_untrusted(trusts_old().get(&healthz).send().await);

    // A half-done renewal (a chain without its key) keeps the working pair.
    let (next_cert, _) = self_signed();
    write(&files, &next_cert, &new_key);
    assert!(tls.reload().is_err());
    let still = trusts_new().get(&healthz).send().await.expect("kept");
    assert_eq!(still.status(), 200);
}
