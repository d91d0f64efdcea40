//! `idle`: opens N authenticated sockets that then do nothing, at a paced
//! connect rate, and reports the connects per second achieved and the server's
//! resident memory per socket (`VmRSS` of `/proc/{pid}/status`, read before the
//! first connect and after the last one has settled).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::IdleArgs;
use crate::client::{Endpoint, EventHandler};
use crate::setup::{self, Planned, SetupError, Tokens};
use crate::stats::percentiles;
use crate::sys;

/// Idle sockets ignore events (acking those that ask) and count closes.
#[derive(Default)]
struct Idle {
    events: AtomicUsize,
    closed: AtomicUsize,
}

impl EventHandler for Idle {
    fn on_event(&self, _socket: usize, _name: &str, _data: &Value) -> Value {
        self.events.fetch_add(1, Ordering::Relaxed);
        json!({ "ok": true })
    }

    fn on_ack(&self, _socket: usize, _tag: u64, _data: &Value) {}

    fn on_close(&self, _socket: usize, _reason: &str) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }
}

fn rss(pid: Option<u32>) -> Option<u64> {
    sys::status_kib(&pid?.to_string(), "VmRSS")
}

/// Runs the scenario and prints the summary.
pub async fn run(args: IdleArgs) -> Result<(), SetupError> {
    let c = &args.common;
    let load_before = sys::load_average();
    let endpoint = Arc::new(
        Endpoint::new(&c.url, &c.tenant, c.ca_file.as_deref())
            .map_err(|e| SetupError(e.to_string()))?,
    );
    let tokens = Tokens::new(
        setup::root_key(c.root_key.as_deref(), c.data_dir.as_deref())?,
        &c.tenant,
        Duration::from_secs(6 * 3600),
    )?;
    let users: Vec<String> = (0..args.sockets)
        .map(|i| setup::user_id(&c.user_prefix, i))
        .collect();
    if !c.skip_directory {
        let took = setup::upsert_users(
            &endpoint,
            &c.tenant,
            &tokens.service()?,
            &users,
            c.setup_concurrency,
        )
        .await?;
        eprintln!(
            "directory: {} users written in {:.1} s",
            users.len(),
            took.as_secs_f64()
        );
    }
    if args.conversations > 0 {
        let took = setup::seed_conversations(
            &endpoint,
            &c.tenant,
            &tokens,
            &users,
            usize::from(args.conversations),
            c.setup_concurrency,
        )
        .await?;
        eprintln!(
            "conversations: {} messages sent in {:.1} s",
            users.len() * usize::from(args.conversations),
            took.as_secs_f64()
        );
    }
    let mut plan = Vec::with_capacity(users.len());
    for (index, user) in users.iter().enumerate() {
        plan.push(Planned {
            index,
            endpoint: endpoint.clone(),
            token: tokens.user(user)?,
        });
    }
    let bench_before = sys::status_kib("self", "VmRSS");
    let server_before = rss(args.server_pid);
    let handler = Arc::new(Idle::default());
    let fleet = setup::open_fleet(
        plan,
        handler.clone(),
        c.connect_rate,
        c.connect_concurrency,
        c.connect_timeout,
    )
    .await?;
    eprintln!("settling for {:.1} s…", args.settle.as_secs_f64());
    tokio::time::sleep(args.settle).await;
    let server_after = rss(args.server_pid);
    let server_hwm = args
        .server_pid
        .and_then(|pid| sys::status_kib(&pid.to_string(), "VmHWM"));
    let bench_after = sys::status_kib("self", "VmRSS");
    let load_after = sys::load_average();
    let still_open = fleet
        .connected
        .saturating_sub(handler.closed.load(Ordering::Relaxed));
    if !args.hold.is_zero() {
        eprintln!("holding the sockets for {:.1} s…", args.hold.as_secs_f64());
        tokio::time::sleep(args.hold).await;
    }
    for h in fleet.sockets.iter().flatten() {
        h.close();
    }

    let per_socket = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) if still_open > 0 => format!(
            "{b} KiB → {a} KiB: {:.2} KiB per socket",
            a.saturating_sub(b) as f64 / still_open as f64
        ),
        _ => "not measured (give --server-pid)".to_owned(),
    };
    println!();
    println!("== afritalk-bench idle ==");
    println!("server             {}", c.url);
    println!(
        "machine            {} CPUs; load average {load_before} before, {load_after} after",
        sys::cpus()
    );
    println!(
        "sockets            {} asked, {} connected, {} failed{}, {} still open after {:.1} s",
        args.sockets,
        fleet.connected,
        fleet.failed,
        fleet
            .first_error
            .as_ref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default(),
        still_open,
        args.settle.as_secs_f64()
    );
    if args.conversations > 0 {
        println!(
            "conversations      each user wrote to {} others before connecting",
            args.conversations
        );
    }
    println!(
        "connect rate       {:.0} connects/s ({} in {:.2} s; attempts paced at {}/s, {} in flight at most)",
        fleet.connected as f64 / fleet.elapsed.as_secs_f64().max(1e-9),
        fleet.connected,
        fleet.elapsed.as_secs_f64(),
        c.connect_rate,
        c.connect_concurrency
    );
    println!("handshake          {}", percentiles(&fleet.handshake_us));
    println!(
        "server RSS         {}",
        per_socket(server_before, server_after)
    );
    if let Some(hwm) = server_hwm {
        println!("server peak RSS    {hwm} KiB (VmHWM)");
    }
    println!(
        "bench RSS          {}",
        per_socket(bench_before, bench_after)
    );
    println!(
        "events received    {} (presence and the like)",
        handler.events.load(Ordering::Relaxed)
    );
    Ok(())
}
