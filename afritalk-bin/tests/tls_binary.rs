//! `afritalk serve` with TLS, as an operator runs it: a certificate it cannot
//! read stops it before it listens, and SIGHUP makes it serve a renewed
//! certificate without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

/// A self-signed certificate for 127.0.0.1 and its key, as PEM.
fn self_signed() -> (String, String) {
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    (pair.cert.pem(), pair.signing_key.serialize_pem())
}

/// `afritalk serve` on the embedded default in `dir`, on a free port, with TLS
/// from `dir/chain.pem` and `dir/key.pem`.
fn serve(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_afritalk"));
    command
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("AFRITALK_DATA_DIR", dir.join("data"))
        .env("AFRITALK_LISTEN", "127.0.0.1:0")
        .env("AFRITALK_TLS_CERT", dir.join("chain.pem"))
        .env("AFRITALK_TLS_KEY", dir.join("key.pem"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A client that trusts `ca_pem` only.
fn trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

/// Reads the server's log until a line contains `needle`; returns that line.
async fn log_line(log: &mut Lines<BufReader<ChildStderr>>, needle: &str) -> String {
    let wait = async {
        while let Some(line) = log.next_line().await.unwrap() {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("the server exited before logging `{needle}`");
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("no `{needle}` in the log within 30 s"))
}

/// The port in the `AfriTalk listening` line (`address=127.0.0.1:PORT`).
fn port_of(line: &str) -> u16 {
    let address = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("address="))
        .unwrap_or_else(|| panic!("no address in `{line}`"));
    address.rsplit(':').next().unwrap().parse().unwrap()
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([name, &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill {name} {pid}");
}

#[tokio::test]
async fn sighup_serves_the_renewed_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (old_cert, old_key) = self_signed();
    std::fs::write(dir.path().join("chain.pem"), &old_cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &old_key).unwrap();
    let mut child = serve(dir.path()).spawn().unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = log_line(&mut log, "AfriTalk listening").await;
    assert!(listening.contains("TLS 1.3"), "{listening}");
    let healthz = format!("https://127.0.0.1:{}/healthz", port_of(&listening));

    let before = trusting(&old_cert).get(&healthz).send().await.unwrap();
    assert_eq!(before.status(), 200);

    let (new_cert, new_key) = self_signed();
    std::fs::write(dir.path().join("chain.pem"), &new_cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &new_key).unwrap();
    signal(&child, "-HUP");
    log_line(&mut log, "TLS certificate reloaded").await;

    let after = trusting(&new_cert).get(&healthz).send().await.unwrap();
    assert_eq!(after.status(), 200);
    assert!(trusting(&old_cert).get(&healthz).send().await.is_err());

    signal(&child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn an_unreadable_certificate_stops_serve_before_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let output = serve(dir.path()).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("TLS: cannot read"), "{stderr}");
    assert!(stderr.contains("chain.pem"), "{stderr}");
    assert!(!stderr.contains("AfriTalk listening"), "{stderr}");
    // Nothing was created: the certificate is checked before the data directory.
    assert!(!dir.path().join("data").exists());
}
