//! Concurrent writes of one kind grouped into shared statements.
//!
//! Each write joins a queue. While fewer than [`BatchWrite::WRITERS`] writers
//! are busy, a write starts a writer at once, so a lone write is done
//! immediately, alone, by the kind's single statement: no waiting for company.
//! When every writer is busy, the writes that arrive queue up, and the next
//! free writer takes them all (up to [`BatchWrite::MAX_BATCH`]) as one
//! statement: one round trip, one commit and one WAL flush for the lot instead
//! of one each, which is what a write costs Postgres under load.
//!
//! A kind of write whose caller does not wait on it for anything a user sees
//! at once may instead *linger*: a writer that starts waits
//! [`BatchWrite::LINGER`] for company before its first statement. First
//! deliveries do (the ✓✓ reaches the sender a few milliseconds later): at
//! 1,000 messages/s nearly every acknowledgement arrived alone, so each cost
//! Postgres a statement and a commit of its own.
//!
//! A batch never holds two writes that share a key (for sends: a conversation
//! pair or a client message id; for deliveries: a message): such a write waits
//! for a later batch, as one statement could not do both. Writes with a key in
//! common that end up in statements of different writers serialize on the
//! database's row locks, exactly as concurrent single writes would (which of
//! two concurrent writes goes first was never defined). If a batch fails as a
//! whole it wrote nothing,
//! and its writes are done again one by one on the same connection, so each
//! gets exactly the answer it would have had alone.
//!
//! Writers are tokio tasks holding the queue's jobs, not the callers' futures:
//! a caller that gives up (a closed socket) cannot strand the writes queued
//! behind it, and its own write is still done (a client retry then finds it).

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use afritalk_adapter_sql::TxError;
use afritalk_ports::StoreError;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::Pool;
use tokio::sync::oneshot;

/// A kind of write whose concurrent calls may share one statement.
#[async_trait::async_trait]
pub(crate) trait BatchWrite: Send + Sync + 'static {
    /// What one call writes.
    type Input: Send + Sync + 'static;
    /// What one call gets back.
    type Output: Send + 'static;
    /// What two writes of one batch must not share.
    type Key: Eq + Hash + Send;

    /// Statements of this kind in flight at once: enough to keep Postgres busy
    /// while some wait for their commit's WAL flush, few enough that writes
    /// arriving under load queue up and share statements.
    const WRITERS: usize = 4;
    /// The most writes one statement does (bounds its size, and how long the
    /// rows it locks stay locked).
    const MAX_BATCH: usize = 64;
    /// How long a writer that starts waits for more writes before its first
    /// statement: zero where the caller waits on the write (a send is acked
    /// only once stored), so a lone write goes at once.
    const LINGER: Duration = Duration::ZERO;

    /// The keys of `input`.
    fn keys(input: &Self::Input) -> Vec<Self::Key>;

    /// Does one write alone.
    async fn write_one(
        &self,
        conn: &mut AsyncPgConnection,
        input: &Self::Input,
    ) -> Result<Self::Output, TxError>;

    /// Does several writes (no two sharing a key) in one statement, all or
    /// nothing; the outputs are in the order of `inputs`.
    async fn write_many(
        &self,
        conn: &mut AsyncPgConnection,
        inputs: &[Self::Input],
    ) -> Result<Vec<Self::Output>, TxError>;
}

/// How the writes of one kind were done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStatistics {
    /// Statements that did several writes together.
    pub batches: u64,
    /// Writes done by those statements.
    pub batched: u64,
    /// Batches that failed as a whole, whose writes were then done one by one.
    pub failed_batches: u64,
}

/// The queue of one kind of write, and its writers.
pub(crate) struct Batcher<W: BatchWrite> {
    shared: Arc<Shared<W>>,
}

impl<W: BatchWrite> Clone for Batcher<W> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// What the writers of one kind share.
struct Shared<W: BatchWrite> {
    kind: W,
    pool: Pool<AsyncPgConnection>,
    state: Mutex<State<W>>,
    batches: AtomicU64,
    batched: AtomicU64,
    failed_batches: AtomicU64,
}

impl<W: BatchWrite> Shared<W> {
    /// The queue and writer count. A writer that panicked holding the lock
    /// left them consistent (every change is a single step), so poisoning is
    /// ignored.
    fn state(&self) -> MutexGuard<'_, State<W>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes waiting for a writer, and how many writers are busy.
struct State<W: BatchWrite> {
    queue: VecDeque<Job<W>>,
    writers: usize,
}

/// One queued write and where its answer goes.
struct Job<W: BatchWrite> {
    input: W::Input,
    reply: oneshot::Sender<Result<W::Output, TxError>>,
}

impl<W: BatchWrite> Batcher<W> {
    /// The writes of `kind` over `pool`.
    pub(crate) fn new(kind: W, pool: Pool<AsyncPgConnection>) -> Self {
        Self {
            shared: Arc::new(Shared {
                kind,
                pool,
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    writers: 0,
                }),
                batches: AtomicU64::new(0),
                batched: AtomicU64::new(0),
                failed_batches: AtomicU64::new(0),
            }),
        }
    }

    /// How the writes were done so far.
    pub(crate) fn statistics(&self) -> BatchStatistics {
        let shared = &self.shared;
        BatchStatistics {
            batches: shared.batches.load(Ordering::Relaxed),
            batched: shared.batched.load(Ordering::Relaxed),
            failed_batches: shared.failed_batches.load(Ordering::Relaxed),
        }
    }

    /// Does `input`, alone or with others, and returns its own answer.
    pub(crate) async fn write(&self, input: W::Input) -> Result<W::Output, TxError> {
        let (reply, answer) = oneshot::channel();
        let start_writer = {
            let mut state = self.shared.state();
            state.queue.push_back(Job { input, reply });
            let start = state.writers < W::WRITERS;
            if start {
                state.writers += 1;
            }
            start
        };
        if start_writer {
            tokio::spawn(write_until_empty(Writer {
                shared: self.shared.clone(),
                counted_out: false,
            }));
        }
        answer.await.unwrap_or_else(|_| {
            Err(TxError::Store(StoreError::Unavailable(
                "the write was dropped by a failed writer".into(),
            )))
        })
    }
}

/// A busy writer. It counts itself out when the queue is empty, under the
/// queue's lock (a write queued after that starts a writer of its own), or
/// when dropped otherwise (a panic), so a writer slot is never lost.
struct Writer<W: BatchWrite> {
    shared: Arc<Shared<W>>,
    counted_out: bool,
}

impl<W: BatchWrite> Drop for Writer<W> {
    fn drop(&mut self) {
        if !self.counted_out {
            self.shared.state().writers -= 1;
        }
    }
}

/// Does batches from the queue until it is empty, after lingering if its
/// kind does.
async fn write_until_empty<W: BatchWrite>(mut writer: Writer<W>) {
    if !W::LINGER.is_zero() {
        tokio::time::sleep(W::LINGER).await;
    }
    loop {
        let batch = {
            let mut state = writer.shared.state();
            let batch = next_batch::<W>(&mut state.queue);
            if batch.is_empty() {
                state.writers -= 1;
                writer.counted_out = true;
                return;
            }
            batch
        };
        write_batch(&writer.shared, batch).await;
    }
}

/// Takes the next batch off the queue: queued writes in order, skipping (and
/// leaving queued, in order) any that shares a key with one already taken.
fn next_batch<W: BatchWrite>(queue: &mut VecDeque<Job<W>>) -> Vec<Job<W>> {
    let mut batch = Vec::new();
    let mut taken = HashSet::new();
    let mut later = VecDeque::new();
    for job in queue.drain(..) {
        let keys = W::keys(&job.input);
        let fits = batch.len() < W::MAX_BATCH && keys.iter().all(|key| !taken.contains(key));
        if fits {
            taken.extend(keys);
            batch.push(job);
        } else {
            later.push_back(job);
        }
    }
    *queue = later;
    batch
}

/// Does one batch and answers each of its writes.
async fn write_batch<W: BatchWrite>(shared: &Shared<W>, batch: Vec<Job<W>>) {
    let (inputs, replies): (Vec<W::Input>, Vec<_>) =
        batch.into_iter().map(|job| (job.input, job.reply)).unzip();
    let mut conn = match shared.pool.get().await {
        Ok(conn) => conn,
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(TxError::Store(StoreError::Unavailable(format!(
                    "no database connection available: {e}"
                )))));
            }
            return;
        }
    };
    let conn: &mut AsyncPgConnection = &mut conn;
    if inputs.len() > 1 {
        if let Ok(outputs) = shared.kind.write_many(conn, &inputs).await {
            shared.batches.fetch_add(1, Ordering::Relaxed);
            let count = u64::try_from(inputs.len()).unwrap_or(u64::MAX);
            shared.batched.fetch_add(count, Ordering::Relaxed);
            for (reply, output) in replies.into_iter().zip(outputs) {
                // A caller that gave up no longer listens; its write is done.
                let _ = reply.send(Ok(output));
            }
            return;
        }
        // The batch wrote nothing: each write alone gets its own answer.
        shared.failed_batches.fetch_add(1, Ordering::Relaxed);
    }
    for (input, reply) in inputs.iter().zip(replies) {
        let _ = reply.send(shared.kind.write_one(conn, input).await);
    }
}
