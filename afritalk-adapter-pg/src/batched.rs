//! The Postgres send path: concurrent sends grouped into one statement.
//!
//! Each send joins a queue. While fewer than [`WRITERS`] writers are busy, a
//! send starts a writer at once, so a lone send is written immediately, alone,
//! by the single-send statement (`send.rs`): no waiting for company. When
//! every writer is busy, the sends that arrive queue up, and the next free
//! writer takes them all (up to [`MAX_BATCH`]) as one statement
//! (`send_batch.rs`): one round trip, one commit and one WAL flush for the lot
//! instead of one each, which is what a send costs Postgres under load.
//!
//! A batch never holds two sends of one conversation pair, nor two sends with
//! the same client message id: such a send waits for the next batch, so sends
//! of one conversation are still written in arrival order, each with its own
//! `seq`. If a batch fails as a whole, its sends are written again one by one
//! on the same connection, so each gets exactly the answer it would have had
//! alone (the racing retry's unique violation, the self-send's check…).
//!
//! Writers are tokio tasks holding the queue's jobs, not the callers' futures:
//! a caller that gives up (a closed socket) cannot strand the sends queued
//! behind it, and its own send is still written (a client retry with the same
//! client message id then finds it).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use afritalk_adapter_sql::TxError;
use afritalk_adapter_sql::rows::SendRows;
use afritalk_adapter_sql::send_path::{SendInput, SendPath};
use afritalk_ports::StoreError;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::Pool;
use tokio::sync::oneshot;

use crate::send::send_in_one_statement;
use crate::send_batch::send_batch;

/// Statements of sends in flight at once. Enough to keep Postgres busy while
/// some wait for their commit's WAL flush, few enough that sends arriving
/// under load queue up and share statements.
pub(crate) const WRITERS: usize = 4;

/// The most sends one statement writes (bounds the statement's size and the
/// time the conversations it locks stay locked).
pub(crate) const MAX_BATCH: usize = 64;

/// `MessageStore::send`'s write on Postgres (the `send_path` of `PgStore`).
#[derive(Clone)]
pub struct BatchedSend {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BatchedSend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.state();
        f.debug_struct("BatchedSend")
            .field("queued", &state.queue.len())
            .field("writers", &state.writers)
            .finish()
    }
}

/// How the sends were written so far (see [`crate::PgStore::send_statistics`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStatistics {
    /// Statements that wrote several sends together.
    pub batches: u64,
    /// Sends written by those statements.
    pub batched_sends: u64,
    /// Batches that failed as a whole, whose sends were then written one by one.
    pub failed_batches: u64,
}

/// What the writers share.
struct Shared {
    pool: Pool<AsyncPgConnection>,
    state: Mutex<State>,
    batches: AtomicU64,
    batched_sends: AtomicU64,
    failed_batches: AtomicU64,
}

impl Shared {
    /// The queue and writer count. A writer that panicked holding the lock
    /// left them consistent (every change is a single step), so poisoning is
    /// ignored.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sends waiting for a writer, and how many writers are busy.
#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    writers: usize,
}

/// One queued send and where its answer goes.
struct Job {
    input: SendInput,
    reply: oneshot::Sender<Result<SendRows, TxError>>,
}

impl BatchedSend {
    /// How the sends were written so far.
    pub fn statistics(&self) -> SendStatistics {
        let shared = &self.shared;
        SendStatistics {
            batches: shared.batches.load(Ordering::Relaxed),
            batched_sends: shared.batched_sends.load(Ordering::Relaxed),
            failed_batches: shared.failed_batches.load(Ordering::Relaxed),
        }
    }
}

#[async_trait::async_trait]
impl SendPath<Pool<AsyncPgConnection>> for BatchedSend {
    fn new(pool: Pool<AsyncPgConnection>) -> Self {
        Self {
            shared: Arc::new(Shared {
                pool,
                state: Mutex::new(State::default()),
                batches: AtomicU64::new(0),
                batched_sends: AtomicU64::new(0),
                failed_batches: AtomicU64::new(0),
            }),
        }
    }

    async fn send(&self, input: SendInput) -> Result<SendRows, TxError> {
        let (reply, answer) = oneshot::channel();
        let start_writer = {
            let mut state = self.shared.state();
            state.queue.push_back(Job { input, reply });
            let start = state.writers < WRITERS;
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
                "the send was dropped by a failed writer".into(),
            )))
        })
    }
}

/// A busy writer. It counts itself out when the queue is empty, under the
/// queue's lock (a send queued after that starts a writer of its own), or
/// when dropped otherwise (a panic), so a writer slot is never lost.
struct Writer {
    shared: Arc<Shared>,
    counted_out: bool,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.counted_out {
            self.shared.state().writers -= 1;
        }
    }
}

/// Writes batches from the queue until it is empty.
async fn write_until_empty(mut writer: Writer) {
    loop {
        let batch = {
            let mut state = writer.shared.state();
            let batch = next_batch(&mut state.queue);
            if batch.is_empty() {
                state.writers -= 1;
                writer.counted_out = true;
                return;
            }
            batch
        };
        write(&writer.shared, batch).await;
    }
}

/// Takes the next batch off the queue: queued sends in order, skipping (and
/// leaving queued, in order) any whose conversation pair or client message id
/// is already in the batch.
fn next_batch(queue: &mut VecDeque<Job>) -> Vec<Job> {
    let mut batch = Vec::new();
    let mut pairs = HashSet::new();
    let mut client_ids = HashSet::new();
    let mut later = VecDeque::new();
    for job in queue.drain(..) {
        let first = &job.input.first;
        let pair = (
            first.tenant_id.clone(),
            first.user_one_id.clone(),
            first.user_two_id.clone(),
        );
        let message = &job.input.message;
        let client_id = message.client_message_id.clone().map(|client_id| {
            (
                message.tenant_id.clone(),
                message.sender_id.clone(),
                client_id,
            )
        });
        let fits = batch.len() < MAX_BATCH
            && !pairs.contains(&pair)
            && client_id.as_ref().is_none_or(|id| !client_ids.contains(id));
        if fits {
            pairs.insert(pair);
            client_ids.extend(client_id);
            batch.push(job);
        } else {
            later.push_back(job);
        }
    }
    *queue = later;
    batch
}

/// Writes one batch and answers each of its sends.
async fn write(shared: &Shared, batch: Vec<Job>) {
    let (inputs, replies): (Vec<SendInput>, Vec<_>) =
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
        if let Ok(results) = send_batch(conn, &inputs).await {
            shared.batches.fetch_add(1, Ordering::Relaxed);
            let count = u64::try_from(inputs.len()).unwrap_or(u64::MAX);
            shared.batched_sends.fetch_add(count, Ordering::Relaxed);
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that gave up no longer listens; its send is stored.
                let _ = reply.send(Ok(result));
            }
            return;
        }
        // The batch wrote nothing: each send alone gets its own answer.
        shared.failed_batches.fetch_add(1, Ordering::Relaxed);
    }
    for (input, reply) in inputs.iter().zip(replies) {
        let _ = reply.send(send_in_one_statement(conn, input).await);
    }
}
