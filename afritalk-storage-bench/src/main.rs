//! # afritalk-storage-bench
//!
//! The storage benchmark AfriTalk ships (figures in `docs/storage.md`). For each
//! backend it seeds a dedicated database with bulk SQL (not the send path), then
//! measures through the storage ports exactly as the service calls them:
//!
//! 1. history: a page of 100 from one conversation among 1,000,000 messages;
//! 2. conversation list: 50 per page with unread counts, for a user with 1,000
//!    conversations;
//! 3. sends: the full transactional send path (conversation upsert, seq,
//!    message, notification, audit; durable commit) from 32 concurrent senders.
//!
//! ```text
//! cargo run --release -p afritalk-storage-bench -- [pg|sqlite|both]
//! ```
//! Environment: `AFRITALK_BENCH_PG` (server URL without database, default
//! `postgres://postgres@127.0.0.1:5432`; the database `afritalk_bench` is
//! dropped and recreated), `AFRITALK_BENCH_SQLITE` (file, default
//! `target/afritalk-bench.db`, recreated), `AFRITALK_BENCH_KEEP` (keep the
//! Postgres database afterwards, to inspect plans), `AFRITALK_BENCH_MESSAGES`
//! (default 1000000), `AFRITALK_BENCH_SENDS` (per sender, default 400),
//! `AFRITALK_BENCH_PG_POOL` (Postgres pool size, default 32: one connection per
//! sender).
//!
//! ## Layout
//! - [`main`]: argument parsing and the run per backend.
//! - `seed_*`: per-backend bulk seeding SQL.
//! - [`measure`] and [`Stats`]: timing loops and the p50/p99/max summary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use afritalk_adapter_pg::PgStore;
use afritalk_adapter_sqlite::SqliteStore;
use afritalk_ports::{
    AuditAction, AuditEntry, AuditId, ClientMessageId, ConversationCursor, ConversationId,
    MessageContent, MessageId, MessageStore, NewMessage, Notification, NotificationId,
    NotificationKind, NotificationStatus, PageSize, TenantId, UserId,
};
use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use uuid::Uuid;

/// Conversations of the seeded user (`hub`), each with an equal share of the messages.
const CONVERSATIONS: i64 = 1_000;
/// Concurrent senders in the send benchmark.
const SENDERS: usize = 32;

/// What can stop a benchmark run.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("setup: {0}")]
    Setup(#[from] afritalk_adapter_sql::SetupError),
    #[error("database: {0}")]
    Db(#[from] diesel::result::Error),
    #[error("connection: {0}")]
    Conn(#[from] diesel::ConnectionError),
    #[error("store: {0}")]
    Store(#[from] afritalk_ports::StoreError),
    #[error("{0}")]
    Other(String),
}

type Result<T> = std::result::Result<T, BenchError>;

/// Latency samples and their summary.
struct Stats {
    name: String,
    samples: Vec<Duration>,
    wall: Duration,
}

impl Stats {
    fn pct(&self, p: f64) -> Duration {
        let mut s = self.samples.clone();
        s.sort_unstable();
        let idx = ((s.len() as f64 * p).ceil() as usize).clamp(1, s.len().max(1)) - 1;
        s.get(idx).copied().unwrap_or_default()
    }

    fn line(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "{:<28} n={:<6} p50={:>7.3} ms  p99={:>7.3} ms  max={:>8.3} ms  {:>9.0} ops/s",
            self.name,
            self.samples.len(),
            ms(self.pct(0.50)),
            ms(self.pct(0.99)),
            ms(self.samples.iter().max().copied().unwrap_or_default()),
            self.samples.len() as f64 / self.wall.as_secs_f64(),
        )
    }
}

/// A tiny deterministic PRNG (xorshift64*), enough to pick pages.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

fn uid(raw: &str) -> Result<UserId> {
    UserId::parse(raw).map_err(|e| BenchError::Other(e.to_string()))
}

fn tid(raw: &str) -> Result<TenantId> {
    TenantId::parse(raw).map_err(|e| BenchError::Other(e.to_string()))
}

/// The id the seed SQL gives conversation `i` (hex, zero-padded, valid UUID text).
fn conversation_id(i: i64) -> ConversationId {
    ConversationId::from_uuid(Uuid::from_u128(
        0x0000_0000_0000_4000_8000_0000_0000_0000 | (i as u128),
    ))
}

/// Times `ops` sequential calls of `f(i)`.
async fn measure<F, Fut>(name: &str, ops: usize, mut f: F) -> Result<Stats>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    // Warm-up: caches and prepared statements, as in a running server.
    for i in 0..(ops / 10).max(1) {
        f(i).await?;
    }
    let mut samples = Vec::with_capacity(ops);
    let start = Instant::now();
    for i in 0..ops {
        let t = Instant::now();
        f(i).await?;
        samples.push(t.elapsed());
    }
    Ok(Stats {
        name: name.to_owned(),
        samples,
        wall: start.elapsed(),
    })
}

/// History pages of 100 at random depths of random conversations.
async fn bench_history(store: &dyn MessageStore, per_conv: i64) -> Result<Stats> {
    let tenant = tid("bench")?;
    let page = PageSize::new(100).map_err(|e| BenchError::Other(e.to_string()))?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    measure("history page of 100", 2_000, |_| {
        let conv = conversation_id(rng.below(CONVERSATIONS as u64) as i64);
        let before = per_conv - rng.below((per_conv - 100).max(1) as u64) as i64 + 1;
        let tenant = tenant.clone();
        async move {
            let rows = store.history(&tenant, conv, Some(before), page).await?;
            if rows.len() != 100 {
                return Err(BenchError::Other(format!(
                    "history gave {} rows",
                    rows.len()
                )));
            }
            Ok(())
        }
    })
    .await
}

/// Conversation list pages of 50 (first page and keyset pages deep in the list).
async fn bench_conversation_list(store: &dyn MessageStore) -> Result<Stats> {
    let tenant = tid("bench")?;
    let hub = uid("hub")?;
    let page = PageSize::new(50).map_err(|e| BenchError::Other(e.to_string()))?;
    // Collect every page's cursor once, then hit random pages.
    let mut cursors: Vec<Option<ConversationCursor>> = vec![None];
    loop {
        let last = cursors.last().copied().flatten();
        let rows = store.conversations(&tenant, &hub, last, page).await?;
        match rows.last() {
            Some(row) if rows.len() == 50 => cursors.push(Some(ConversationCursor {
                last_message_at: row.conversation.last_message_at,
                id: row.conversation.id,
            })),
            _ => break,
        }
    }
    if cursors.len() < 20 {
        return Err(BenchError::Other(format!("only {} pages", cursors.len())));
    }
    let cursors = Arc::new(cursors);
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    measure("conversation list of 50", 1_000, |_| {
        let cursor = cursors[rng.below(cursors.len() as u64 - 1) as usize];
        let (tenant, hub) = (tenant.clone(), hub.clone());
        async move {
            let rows = store.conversations(&tenant, &hub, cursor, page).await?;
            if rows.len() != 50 || rows.iter().all(|r| r.last_message.is_none()) {
                return Err(BenchError::Other("bad conversation page".into()));
            }
            Ok(())
        }
    })
    .await
}

fn send_of(tenant: &TenantId, from: &UserId, to: &UserId, n: usize) -> Result<NewMessage> {
    let now = Utc::now();
    let message_id = MessageId::from_uuid(Uuid::new_v4());
    let audit = |action| AuditEntry {
        id: AuditId::from_uuid(Uuid::new_v4()),
        tenant_id: tenant.clone(),
        user_id: Some(from.clone()),
        action,
        entity_type: Some("message".into()),
        entity_id: Some(message_id.to_string()),
        details: serde_json::json!({}),
        ip_address: Some("203.0.113.9".into()),
        created_at: now,
    };
    let content = MessageContent::parse(format!("Bonjour, commande n°{n} prête ✅"))
        .map_err(|e| BenchError::Other(e.to_string()))?;
    Ok(NewMessage {
        tenant_id: tenant.clone(),
        message_id,
        new_conversation_id: ConversationId::from_uuid(Uuid::new_v4()),
        sender_id: from.clone(),
        recipient_id: to.clone(),
        notification: Notification {
            id: NotificationId::from_uuid(Uuid::new_v4()),
            tenant_id: tenant.clone(),
            user_id: to.clone(),
            title: format!("Message de {from}"),
            message: content.preview(80),
            kind: NotificationKind::Message,
            status: NotificationStatus::Unread,
            related: None,
            push_sent: false,
            push_sent_at: None,
            created_at: now,
        },
        content,
        related: None,
        client_message_id: Some(
            ClientMessageId::parse(format!("{from}-{n}"))
                .map_err(|e| BenchError::Other(e.to_string()))?,
        ),
        created_at: now,
        send_audit: audit(AuditAction::MessageSend),
        conversation_audit: audit(AuditAction::ConversationCreate),
    })
}

/// 32 senders, each sending `per_sender` messages to random colleagues.
async fn bench_sends(store: Arc<dyn MessageStore>, per_sender: usize) -> Result<Stats> {
    let tenant = tid("bench_send")?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let (store, tenant) = (store.clone(), tenant.clone());
        tasks.push(tokio::spawn(async move {
            let me = uid(&format!("s{s:02}"))?;
            let mut rng = Rng(0x1234_5678 + s as u64 * 7919);
            let mut samples = Vec::with_capacity(per_sender);
            for n in 0..per_sender {
                let to = uid(&format!("r{:03}", rng.below(200)))?;
                let new = send_of(&tenant, &me, &to, n)?;
                let t = Instant::now();
                store.send(new).await?;
                samples.push(t.elapsed());
            }
            Ok::<_, BenchError>(samples)
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(
            task.await
                .map_err(|e| BenchError::Other(format!("sender task: {e}")))??,
        );
    }
    Ok(Stats {
        name: format!("send ({SENDERS} senders)"),
        samples,
        wall: start.elapsed(),
    })
}

/// Seeds `bench`: `hub` with 1,000 partners, `total / 1000` messages each, all read
/// but the last five of each conversation addressed to `hub`.
const PG_SEED: &str = r#"
INSERT INTO conversations (id, tenant_id, user_one_id, user_two_id, created_at, updated_at, last_message_at, last_seq)
SELECT '00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'), 'bench', 'hub', 'p' || lpad(i::text, 4, '0'),
       TIMESTAMP '2025-01-01', TIMESTAMP '2025-01-01' + i * INTERVAL '1 minute',
       TIMESTAMP '2025-01-01' + i * INTERVAL '1 minute', {per_conv}
FROM generate_series(0, {convs} - 1) AS i;
"#;

const PG_SEED_MESSAGES: &str = r#"
INSERT INTO messages (id, tenant_id, conversation_id, seq, sender_id, recipient_id, content,
                      read_at, delivered_at, created_at, updated_at)
SELECT lpad(to_hex(i), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(s), 12, '0'), 'bench',
       '00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'), s,
       CASE WHEN s % 2 = 0 THEN 'hub' ELSE 'p' || lpad(i::text, 4, '0') END,
       CASE WHEN s % 2 = 0 THEN 'p' || lpad(i::text, 4, '0') ELSE 'hub' END,
       'Message ' || s || ' à propos de la commande O-' || i,
       CASE WHEN s <= {per_conv} - 10 THEN TIMESTAMP '2024-12-01' + s * INTERVAL '1 second' END,
       TIMESTAMP '2024-12-01' + s * INTERVAL '1 second',
       TIMESTAMP '2024-12-01' + s * INTERVAL '1 second',
       TIMESTAMP '2024-12-01' + s * INTERVAL '1 second'
FROM generate_series({from}, {to}) AS i, generate_series(1, {per_conv}) AS s;
"#;

const SQLITE_SEED: &str = r#"
WITH RECURSIVE i(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM i WHERE x < {convs} - 1)
INSERT INTO conversations (id, tenant_id, user_one_id, user_two_id, created_at, updated_at, last_message_at, last_seq)
SELECT printf('00000000-0000-4000-8000-%012x', x), 'bench', 'hub', printf('p%04d', x),
       '2025-01-01 00:00:00', datetime('2025-01-01', '+' || x || ' minutes'),
       datetime('2025-01-01', '+' || x || ' minutes'), {per_conv}
FROM i;
"#;

const SQLITE_SEED_MESSAGES: &str = r#"
WITH RECURSIVE i(x) AS (SELECT {from} UNION ALL SELECT x + 1 FROM i WHERE x < {to}),
               s(y) AS (SELECT 1 UNION ALL SELECT y + 1 FROM s WHERE y < {per_conv})
INSERT INTO messages (id, tenant_id, conversation_id, seq, sender_id, recipient_id, content,
                      read_at, delivered_at, created_at, updated_at)
SELECT printf('%08x-0000-4000-8000-%012x', x, y), 'bench', printf('00000000-0000-4000-8000-%012x', x), y,
       CASE WHEN y % 2 = 0 THEN 'hub' ELSE printf('p%04d', x) END,
       CASE WHEN y % 2 = 0 THEN printf('p%04d', x) ELSE 'hub' END,
       'Message ' || y || ' à propos de la commande O-' || x,
       CASE WHEN y <= {per_conv} - 10 THEN datetime('2024-12-01', '+' || y || ' seconds') END,
       datetime('2024-12-01', '+' || y || ' seconds'),
       datetime('2024-12-01', '+' || y || ' seconds'),
       datetime('2024-12-01', '+' || y || ' seconds')
FROM i, s;
"#;

fn fill(sql: &str, per_conv: i64, from: i64, to: i64) -> String {
    sql.replace("{convs}", &CONVERSATIONS.to_string())
        .replace("{per_conv}", &per_conv.to_string())
        .replace("{from}", &from.to_string())
        .replace("{to}", &to.to_string())
}

/// Runs the seed in chunks of 50 conversations, printing progress.
async fn seed<C>(conn: &mut C, first: &str, messages: &str, per_conv: i64) -> Result<()>
where
    C: SimpleAsyncConnection + Send,
{
    let started = Instant::now();
    conn.batch_execute(&fill(first, per_conv, 0, 0)).await?;
    let chunk = 50;
    for from in (0..CONVERSATIONS).step_by(chunk as usize) {
        let to = (from + chunk - 1).min(CONVERSATIONS - 1);
        conn.batch_execute(&fill(messages, per_conv, from, to))
            .await?;
        println!(
            "  seeded {:>9} messages ({:>5.1} s)",
            (to + 1) * per_conv,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

async fn run_all(
    name: &str,
    store: Arc<dyn MessageStore>,
    per_conv: i64,
    sends: usize,
) -> Result<Vec<Stats>> {
    println!("[{name}] history …");
    let history = bench_history(store.as_ref(), per_conv).await?;
    println!("  {}", history.line());
    println!("[{name}] conversation list …");
    let list = bench_conversation_list(store.as_ref()).await?;
    println!("  {}", list.line());
    println!("[{name}] sends: {SENDERS} senders x {sends} …");
    let send = bench_sends(store, sends).await?;
    println!("  {}", send.line());
    Ok(vec![history, list, send])
}

async fn bench_pg(total: i64, sends: usize) -> Result<Vec<Stats>> {
    let server = std::env::var("AFRITALK_BENCH_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let mut admin = AsyncPgConnection::establish(&format!("{server}/postgres")).await?;
    admin
        .batch_execute("DROP DATABASE IF EXISTS afritalk_bench WITH (FORCE)")
        .await?;
    admin
        .batch_execute("CREATE DATABASE afritalk_bench")
        .await?;
    let pool = std::env::var("AFRITALK_BENCH_PG_POOL")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(SENDERS);
    let store = PgStore::connect(&format!("{server}/afritalk_bench"), pool).await?;
    store.migrate().await?;
    let per_conv = total / CONVERSATIONS;
    println!("[postgres] seeding {total} messages in {CONVERSATIONS} conversations …");
    {
        let mut conn = store
            .pool()
            .get()
            .await
            .map_err(|e| BenchError::Other(e.to_string()))?;
        seed(&mut *conn, PG_SEED, PG_SEED_MESSAGES, per_conv).await?;
        println!("  VACUUM ANALYZE …");
        conn.batch_execute("VACUUM ANALYZE").await?;
    }
    let stats = run_all("postgres", Arc::new(store.clone()), per_conv, sends).await?;
    drop(store);
    if std::env::var_os("AFRITALK_BENCH_KEEP").is_none() {
        admin
            .batch_execute("DROP DATABASE IF EXISTS afritalk_bench WITH (FORCE)")
            .await?;
    }
    Ok(stats)
}

async fn bench_sqlite(total: i64, sends: usize) -> Result<Vec<Stats>> {
    let path = std::env::var("AFRITALK_BENCH_SQLITE")
        .unwrap_or_else(|_| "target/afritalk-bench.db".into());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    let store = SqliteStore::open(&path, 4).await?;
    store.migrate().await?;
    let per_conv = total / CONVERSATIONS;
    println!("[sqlite] seeding {total} messages in {CONVERSATIONS} conversations ({path}) …");
    {
        let mut conn = store
            .pool()
            .get()
            .await
            .map_err(|e| BenchError::Other(e.to_string()))?;
        seed(&mut *conn, SQLITE_SEED, SQLITE_SEED_MESSAGES, per_conv).await?;
        println!("  ANALYZE …");
        conn.batch_execute("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")
            .await?;
    }
    let stats = run_all("sqlite", Arc::new(store.clone()), per_conv, sends).await?;
    drop(store);
    Ok(stats)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let which = std::env::args().nth(1).unwrap_or_else(|| "both".into());
    let env_num = |key: &str, default: i64| {
        std::env::var(key)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(default)
    };
    let total = env_num("AFRITALK_BENCH_MESSAGES", 1_000_000).max(CONVERSATIONS * 110);
    let sends = usize::try_from(env_num("AFRITALK_BENCH_SENDS", 400)).unwrap_or(400);
    let mut report = Vec::new();
    if which == "pg" || which == "both" {
        match bench_pg(total, sends).await {
            Ok(s) => report.push(("postgres", s)),
            Err(e) => {
                eprintln!("postgres benchmark failed: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    if which == "sqlite" || which == "both" {
        match bench_sqlite(total, sends).await {
            Ok(s) => report.push(("sqlite", s)),
            Err(e) => {
                eprintln!("sqlite benchmark failed: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    println!(
        "\n== summary ({total} stored messages, {} cores) ==",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    for (backend, stats) in &report {
        for s in stats {
            println!("{backend:<9} {}", s.line());
        }
    }
    std::process::ExitCode::SUCCESS
}
