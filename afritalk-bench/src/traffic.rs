//! `latency` and `throughput`: an open-loop sender at a fixed rate.
//!
//! Message `k` is due at `start + k / rate`, whatever happened to the earlier
//! ones (a dedicated thread keeps the timetable and never waits for an ack), and
//! carries its due time in its content: `afb {run} {k} {due_ns}`. The recipient
//! socket takes the time the `messaging:new` frame was read and records
//! `receive − due` in an HDR histogram: every delivery counts, and a server that
//! falls behind shows its queueing in the figures (no coordinated omission).
//!
//! Users: socket `i` belongs to user `i`; a sender `s` always writes to its
//! partner `s + users/2 (mod users)`, so each pair has one conversation, created
//! during the warm-up. On one node every user sends (both directions of each
//! conversation); with `--recv-url` the first half sends from the first server
//! and the second half receives on the second one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::cli::TrafficArgs;
use crate::client::{Endpoint, EventHandler, SocketHandle};
use crate::cpu::{CpuSnapshot, CpuUse};
use crate::setup::{self, Planned, SetupError, Tokens};
use crate::stats::{self, Progress, percentiles};
use crate::sys;

const SENT: u8 = 1;
const ACKED: u8 = 2;
const FAILED: u8 = 4;
const RECEIVED: u8 = 8;
const UNSENT: u8 = 16;

/// The shared state of a run, updated by the socket tasks.
struct Run {
    id: u32,
    /// Time zero of every `_ns` value.
    epoch: Instant,
    /// `epoch` as Unix time in ns (for the latencies CSV).
    epoch_unix_ns: u64,
    /// Due time of message 0, in ns after `epoch` (set when the timetable starts).
    start_ns: AtomicU64,
    rate: f64,
    warmup: u64,
    users: Vec<String>,
    flags: Vec<AtomicU8>,
    /// Each message's send → receive latency in µs (0: not received).
    latencies_us: Vec<AtomicU32>,
    latency: Mutex<Histogram<u64>>,
    ack_latency: Mutex<Histogram<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    acked: AtomicU64,
    failed: AtomicU64,
    received: AtomicU64,
    duplicates: AtomicU64,
    strays: AtomicU64,
    closed: AtomicUsize,
    last_receive_ns: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Run {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn due_ns(&self, seq: u64) -> u64 {
        self.start_ns.load(Ordering::Relaxed) + (seq as f64 * 1e9 / self.rate) as u64
    }

    fn flag(&self, seq: u64) -> Option<&AtomicU8> {
        self.flags.get(usize::try_from(seq).ok()?)
    }

    fn on_message(&self, socket: usize, data: &Value) {
        let message = &data["message"];
        let mut parts = message["content"].as_str().unwrap_or("").split(' ');
        let (Some("afb"), Some(run), Some(seq), Some(due)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            self.strays.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (Ok(run), Ok(seq), Ok(due)) = (run.parse::<u32>(), seq.parse::<u64>(), due.parse())
        else {
            self.strays.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // Only the recipient's socket counts (a sender's other devices may be told too).
        let mine = self.users.get(socket).map(String::as_str);
        if run != self.id || message["recipientId"].as_str() != mine {
            self.strays.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = self.now_ns();
        let Some(flag) = self.flag(seq) else {
            self.strays.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if flag.fetch_or(RECEIVED, Ordering::AcqRel) & RECEIVED != 0 {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        self.last_receive_ns.fetch_max(now, Ordering::Relaxed);
        let us = (now.saturating_sub(due) / 1000).max(1);
        if let Some(slot) = self
            .latencies_us
            .get(usize::try_from(seq).unwrap_or(usize::MAX))
        {
            slot.store(u32::try_from(us).unwrap_or(u32::MAX), Ordering::Relaxed);
        }
        if seq >= self.warmup {
            let _ = lock(&self.latency).record(us);
        }
    }
}

impl EventHandler for Run {
    fn on_event(&self, socket: usize, name: &str, data: &Value) -> Value {
        if name == "messaging:new" {
            self.on_message(socket, data);
        }
        json!({ "ok": true })
    }

    fn on_ack(&self, _socket: usize, seq: u64, data: &Value) {
        let now = self.now_ns();
        let Some(flag) = self.flag(seq) else {
            return;
        };
        if data["ok"].as_bool() == Some(true) {
            flag.fetch_or(ACKED, Ordering::AcqRel);
            self.acked.fetch_add(1, Ordering::Relaxed);
            if seq >= self.warmup {
                let us = now.saturating_sub(self.due_ns(seq)) / 1000;
                let _ = lock(&self.ack_latency).record(us.max(1));
            }
        } else {
            flag.fetch_or(FAILED, Ordering::AcqRel);
            self.failed.fetch_add(1, Ordering::Relaxed);
            let code = data["error"]["code"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| data.to_string());
            *lock(&self.errors).entry(code).or_insert(0) += 1;
        }
    }

    fn on_close(&self, _socket: usize, _reason: &str) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the scheduler thread did.
struct Schedule {
    sent: u64,
    unsent: u64,
    max_lag: Duration,
    /// Due time of the last message, ns after the epoch.
    last_due_ns: u64,
}

fn schedule(
    run: &Run,
    handles: &[Option<SocketHandle>],
    senders: &[usize],
    padding: &str,
) -> Schedule {
    sys::precise_timers();
    let total = run.flags.len() as u64;
    let half = run.users.len() / 2;
    let mut report = Schedule {
        sent: 0,
        unsent: 0,
        max_lag: Duration::ZERO,
        last_due_ns: run.due_ns(0),
    };
    for seq in 0..total {
        let due = run.due_ns(seq);
        let now = run.now_ns();
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        } else {
            report.max_lag = report.max_lag.max(Duration::from_nanos(now - due));
        }
        report.last_due_ns = due;
        let sender = senders[(seq as usize) % senders.len()];
        let recipient = (sender + half) % run.users.len();
        let data = json!({
            "toUserId": run.users[recipient],
            "content": format!("afb {} {seq} {due}{padding}", run.id),
            "clientMessageId": format!("afb-{}-{seq}", run.id),
        });
        let emitted = handles
            .get(sender)
            .and_then(Option::as_ref)
            .is_some_and(|h| h.emit("messaging:send", data, seq));
        if let Some(flag) = run.flag(seq) {
            flag.fetch_or(if emitted { SENT } else { UNSENT }, Ordering::AcqRel);
        }
        if emitted {
            report.sent += 1;
        } else {
            report.unsent += 1;
        }
    }
    report
}

/// Runs `latency` (`throughput` = true judges the sustained rate instead) and
/// prints the summary.
pub async fn run(args: TrafficArgs, throughput: bool) -> Result<(), SetupError> {
    let c = &args.common;
    if args.users < 2 || !args.users.is_multiple_of(2) {
        return Err(SetupError(
            "--users must be an even number, at least 2".into(),
        ));
    }
    if !args.rate.is_finite() || args.rate <= 0.0 {
        return Err(SetupError("--rate must be positive".into()));
    }
    let load_before = sys::load_average();
    let endpoint = Arc::new(
        Endpoint::new(&c.url, &c.tenant, c.ca_file.as_deref())
            .map_err(|e| SetupError(e.to_string()))?,
    );
    let recv_endpoint = match &args.recv_url {
        Some(url) => Arc::new(
            Endpoint::new(url, &c.tenant, c.ca_file.as_deref())
                .map_err(|e| SetupError(e.to_string()))?,
        ),
        None => endpoint.clone(),
    };
    let two_nodes = args.recv_url.is_some();
    let half = args.users / 2;
    let senders: Vec<usize> = if two_nodes {
        (0..half).collect()
    } else {
        (0..args.users).collect()
    };
    let per_user = args.rate / senders.len() as f64;
    let per_window = per_user * 10.0;
    eprintln!(
        "{} senders at {:.2} msg/s each ({:.1} per 10 s; the server allows {} by default)",
        senders.len(),
        per_user,
        per_window,
        args.send_limit
    );
    if per_window > f64::from(args.send_limit) {
        eprintln!(
            "warning: the per-user rate exceeds the send limit; sends will be refused with `rate_limited`. \
             Use at least {} users.",
            ((args.rate * 10.0 / f64::from(args.send_limit)).ceil() as usize
                * if two_nodes { 2 } else { 1 })
            .next_multiple_of(2)
        );
    }

    let tokens = Tokens::new(
        setup::root_key(c.root_key.as_deref(), c.data_dir.as_deref())?,
        &c.tenant,
        Duration::from_secs(6 * 3600),
    )?;
    let users: Vec<String> = (0..args.users)
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
    let mut plan = Vec::with_capacity(users.len());
    for (index, user) in users.iter().enumerate() {
        let on_recv = two_nodes && index >= half;
        plan.push(Planned {
            index,
            endpoint: if on_recv {
                recv_endpoint.clone()
            } else {
                endpoint.clone()
            },
            token: tokens.user(user)?,
        });
    }

    let warmup = (args.warmup.as_secs_f64() * args.rate).round() as u64;
    let measured = (args.duration.as_secs_f64() * args.rate).round() as u64;
    let total =
        usize::try_from(warmup + measured).map_err(|_| SetupError("too many messages".into()))?;
    let run = Arc::new(Run {
        id: seconds_now().wrapping_mul(2_654_435_761) ^ std::process::id(),
        epoch: Instant::now(),
        epoch_unix_ns: unix_now_ns(),
        start_ns: AtomicU64::new(0),
        rate: args.rate,
        warmup,
        users: users.clone(),
        flags: (0..total).map(|_| AtomicU8::new(0)).collect(),
        latencies_us: (0..total).map(|_| AtomicU32::new(0)).collect(),
        latency: Mutex::new(stats::histogram().map_err(|e| SetupError(e.to_string()))?),
        ack_latency: Mutex::new(stats::histogram().map_err(|e| SetupError(e.to_string()))?),
        errors: Mutex::new(BTreeMap::new()),
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        received: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        strays: AtomicU64::new(0),
        closed: AtomicUsize::new(0),
        last_receive_ns: AtomicU64::new(0),
    });
    let fleet = setup::open_fleet(
        plan,
        run.clone(),
        c.connect_rate,
        c.connect_concurrency,
        c.connect_timeout,
    )
    .await?;
    eprintln!(
        "sockets: {} connected, {} failed in {:.2} s; handshake {}",
        fleet.connected,
        fleet.failed,
        fleet.elapsed.as_secs_f64(),
        percentiles(&fleet.handshake_us)
    );
    if let Some(err) = &fleet.first_error {
        eprintln!("first connect error: {err}");
    }
    if fleet.connected == 0 {
        return Err(SetupError("no socket connected".into()));
    }
    // Let the connect-time work (presence, rooms) settle before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The timetable starts 100 ms from now, on the run's clock.
    run.start_ns
        .store(run.now_ns() + 100_000_000, Ordering::Relaxed);
    eprintln!(
        "sending {} messages at {} msg/s ({} warm-up, {} measured)…",
        total, args.rate, warmup, measured
    );
    let progress = Progress::start(if throughput { "throughput" } else { "latency" }, total, {
        let run = run.clone();
        move || {
            let h = lock(&run.latency);
            format!(
                "acked {} failed {} received {} | so far p50 {} p99 {}",
                run.acked.load(Ordering::Relaxed),
                run.failed.load(Ordering::Relaxed),
                run.received.load(Ordering::Relaxed),
                stats::ms(h.value_at_quantile(0.5)),
                stats::ms(h.value_at_quantile(0.99)),
            )
        }
    });
    let handles = Arc::new(fleet.sockets);
    let cpu_meter = {
        let run = run.clone();
        let servers = args.server_pid.clone();
        let last = warmup + measured.saturating_sub(1);
        tokio::task::spawn_blocking(move || measure_cpu(&run, &servers, warmup, last, measured))
    };
    let sched = {
        let run = run.clone();
        let handles = handles.clone();
        let padding = " ".to_owned() + &"x".repeat(args.padding);
        let padding = if args.padding == 0 {
            String::new()
        } else {
            padding
        };
        tokio::task::spawn_blocking(move || schedule(&run, &handles, &senders, &padding))
            .await
            .map_err(|e| SetupError(format!("scheduler: {e}")))?
    };
    // Wait for the stragglers, at most the grace period.
    let deadline = Instant::now() + args.grace;
    while Instant::now() < deadline {
        let acked = run.acked.load(Ordering::Relaxed);
        let failed = run.failed.load(Ordering::Relaxed);
        let received = run.received.load(Ordering::Relaxed);
        if acked + failed >= sched.sent && received >= acked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    progress.stop();
    let load_after = sys::load_average();
    let cpu = cpu_meter.await.ok();

    // Account for every message.
    let (mut lost, mut unacked, mut received_unacked) = (0u64, 0u64, 0u64);
    for flag in run.flags.iter() {
        let f = flag.load(Ordering::Acquire);
        if f & SENT == 0 {
            continue;
        }
        let acked = f & ACKED != 0;
        let received = f & RECEIVED != 0;
        if acked && !received {
            lost += 1;
        }
        if f & (ACKED | FAILED) == 0 {
            unacked += 1;
        }
        if received && !acked {
            received_unacked += 1;
        }
    }
    if let Some(path) = &args.latencies_csv {
        write_latencies(&run, path).map_err(|e| SetupError(format!("{}: {e}", path.display())))?;
    }
    let measured_received = lock(&run.latency).len();
    let first_measured_due = run.due_ns(warmup);
    let last_receive = run.last_receive_ns.load(Ordering::Relaxed);
    let window = Duration::from_nanos(last_receive.saturating_sub(first_measured_due));
    let delivery_rate = measured_received as f64 / window.as_secs_f64().max(1e-9);
    let tail = Duration::from_nanos(last_receive.saturating_sub(sched.last_due_ns));
    let failed = run.failed.load(Ordering::Relaxed);
    let sustained = lost == 0
        && failed == 0
        && unacked == 0
        && sched.unsent == 0
        && tail < Duration::from_secs(1);

    let closed_during_run = run.closed.load(Ordering::Relaxed);
    for h in handles.iter().flatten() {
        h.close();
    }

    let name = if throughput { "throughput" } else { "latency" };
    println!();
    println!("== afritalk-bench {name} ==");
    println!(
        "server             {}{}",
        c.url,
        args.recv_url
            .as_ref()
            .map(|u| format!("  (recipients on {u})"))
            .unwrap_or_default()
    );
    println!(
        "machine            {} CPUs; load average {load_before} before, {load_after} after",
        sys::cpus()
    );
    if let Some(cpu) = &cpu {
        println!("cpu (measured)     {}", cpu.machine_line());
        println!("cpu per message    {}", cpu.per_message_line());
    }
    println!(
        "users              {} ({} senders, each writing to user i+{half}; {} connected)",
        args.users,
        senders_len(two_nodes, args.users),
        fleet.connected
    );
    println!(
        "offered            {} msg/s for {:.1} s (+{:.1} s warm-up not counted): {} measured messages",
        args.rate,
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64(),
        measured
    );
    println!(
        "scheduler          max lag behind the timetable {}",
        stats::ms(stats::micros(sched.max_lag))
    );
    println!(
        "sent               {} (+{} not sent: sender socket gone)",
        sched.sent, sched.unsent
    );
    println!("acked ok           {}", run.acked.load(Ordering::Relaxed));
    let errors = lock(&run.errors);
    println!(
        "acked with error   {failed}{}",
        if errors.is_empty() {
            String::new()
        } else {
            format!(" {:?}", *errors)
        }
    );
    drop(errors);
    println!("never acked        {unacked}");
    println!(
        "received           {} (duplicates {}, received but not acked {received_unacked}, echoes to senders and strays {})",
        run.received.load(Ordering::Relaxed),
        run.duplicates.load(Ordering::Relaxed),
        run.strays.load(Ordering::Relaxed)
    );
    println!(
        "lost               {lost} (acked, not received within {:.1} s of the last send)",
        args.grace.as_secs_f64()
    );
    println!("sockets closed     {} during the run", closed_during_run);
    println!("send → receive     {}", percentiles(&lock(&run.latency)));
    println!(
        "send → ack         {}",
        percentiles(&lock(&run.ack_latency))
    );
    let all_window = Duration::from_nanos(last_receive.saturating_sub(run.due_ns(0)));
    println!(
        "all deliveries     {:.0} msg/s ({} received, warm-up included, from the first due send to the last delivery)",
        run.received.load(Ordering::Relaxed) as f64 / all_window.as_secs_f64().max(1e-9),
        run.received.load(Ordering::Relaxed)
    );
    println!(
        "delivered          {:.0} msg/s over the measured window; last delivery {} after the last due send",
        delivery_rate,
        stats::ms(stats::micros(tail))
    );
    println!(
        "verdict            {}",
        if sustained {
            format!("SUSTAINED {} msg/s, nothing lost", args.rate)
        } else {
            format!(
                "NOT sustained at {} msg/s (see lost / errors / tail above)",
                args.rate
            )
        }
    );
    Ok(())
}

/// Snapshots the CPU counters when message `first` is due and again when
/// message `last` is, and returns what was spent per message in between.
fn measure_cpu(run: &Run, servers: &[u32], first: u64, last: u64, messages: u64) -> CpuUse {
    let sleep_until = |seq: u64| {
        let due = run.due_ns(seq);
        let now = run.now_ns();
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
    };
    sleep_until(first);
    let before = CpuSnapshot::take(servers);
    sleep_until(last);
    before.until(&CpuSnapshot::take(servers), messages)
}

fn senders_len(two_nodes: bool, users: usize) -> usize {
    if two_nodes { users / 2 } else { users }
}

/// Writes `seq,due_unix_s,latency_us,measured` for every message of the run
/// (latency empty when it was not received).
fn write_latencies(run: &Run, path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "seq,due_unix_s,latency_us,measured")?;
    for (seq, slot) in (0u64..).zip(&run.latencies_us) {
        let due = (run.epoch_unix_ns + run.due_ns(seq)) as f64 / 1e9;
        let latency = match slot.load(Ordering::Relaxed) {
            0 => String::new(),
            us => us.to_string(),
        };
        writeln!(out, "{seq},{due:.6},{latency},{}", seq >= run.warmup)?;
    }
    out.flush()
}

/// The wall clock as Unix time in ns.
fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn seconds_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}
