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
//! for a later batch, as one statement could not do both. A writer looks for
//! a batch's writes among the first few queued ones only, so taking a batch
//! costs the same however long the queue grows under overload. Writes with a
//! key in common that end up in statements of different writers serialize on the
//! database's row locks, exactly as concurrent single writes would (which of
//! two concurrent writes goes first was never defined). If a batch fails as a
//! whole it wrote nothing,
//! and its writes are done again one by one on the same connection, so each
//! gets exactly the answer it would have had alone.
//!
//! A kind may bound how long its writes queue ([`BatchWrite::MAX_WAIT`]; sends
//! do): a write arriving while the oldest waiting one has waited longer is
//! refused at once as unavailable, so an overloaded server answers quickly
//! instead of queueing without end. A kind whose writes carry the time they
//! were asked may also refuse, unwritten, a write that a writer takes after
//! it waited too long ([`BatchWrite::STALE_AFTER`]; first deliveries do).
//!
//! Writers are tokio tasks holding the queue's jobs, not the callers' futures:
//! a caller that gives up (a closed socket) cannot strand the writes queued
//! behind it, and its own write is still done (a client retry then finds it).

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

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
    /// How long the oldest waiting write of this kind may have waited for a
    /// new one to be queued behind it: past that the database is not keeping
    /// up, and a new write is refused at once as unavailable, having written
    /// nothing. Unbounded unless a kind sets it: a kind that must never be
    /// refused (an audit row) relies on its callers' own pace.
    const MAX_WAIT: Duration = Duration::MAX;
    /// How long a write may have waited in the queue when a writer takes it:
    /// past that it is refused as unavailable, unwritten. For a kind whose
    /// writes carry the time they were asked (a ✓✓), so that none is stored
    /// long after that time. Unbounded unless a kind sets it.
    const STALE_AFTER: Duration = Duration::MAX;

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
    /// Writes refused because the oldest waiting one had waited more than
    /// [`BatchWrite::MAX_WAIT`], or because they had themselves waited more
    /// than [`BatchWrite::STALE_AFTER`] when a writer took them.
    pub refused: u64,
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
    refused: AtomicU64,
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
    queued_at: Instant,
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
                refused: AtomicU64::new(0),
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
            refused: shared.refused.load(Ordering::Relaxed),
        }
    }

    /// Does `input`, alone or with others, and returns its own answer.
    pub(crate) async fn write(&self, input: W::Input) -> Result<W::Output, TxError> {
        let (reply, answer) = oneshot::channel();
        let start_writer = {
            let mut state = self.shared.state();
            let oldest_wait = state.queue.front().map(|job| job.queued_at.elapsed());
            if let Some(waited) = oldest_wait.filter(|waited| *waited > W::MAX_WAIT) {
                let waiting = state.queue.len();
                drop(state);
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                return Err(TxError::Store(StoreError::Unavailable(format!(
                    "the database is not keeping up: {waiting} writes are waiting, \
                     the oldest for {} ms",
                    waited.as_millis()
                ))));
            }
            state.queue.push_back(Job {
                input,
                reply,
                queued_at: Instant::now(),
            });
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
/// when dropped otherwise (a panic), so a writer slot is never lost; dropped
/// with writes still queued, it hands its slot to a new writer, since those
/// writes' callers would otherwise wait for one that may never come (and the
/// queue's age would refuse every new write).
struct Writer<W: BatchWrite> {
    shared: Arc<Shared<W>>,
    counted_out: bool,
}

impl<W: BatchWrite> Drop for Writer<W> {
    fn drop(&mut self) {
        if self.counted_out {
            return;
        }
        let queued = !self.shared.state().queue.is_empty();
        let runtime = tokio::runtime::Handle::try_current();
        match runtime {
            Ok(runtime) if queued => {
                tracing::warn!("a database writer stopped with writes queued; starting another");
                runtime.spawn(write_until_empty(Writer {
                    shared: self.shared.clone(),
                    counted_out: false,
                }));
            }
            _ => self.shared.state().writers -= 1,
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
        let batch = refuse_stale(&writer.shared, batch);
        if !batch.is_empty() {
            write_batch(&writer.shared, batch).await;
        }
    }
}

/// Answers the writes of `batch` that waited longer than their kind's
/// [`BatchWrite::STALE_AFTER`] as unavailable, unwritten; returns the others.
fn refuse_stale<W: BatchWrite>(shared: &Shared<W>, batch: Vec<Job<W>>) -> Vec<Job<W>> {
    let (fresh, stale): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .partition(|job| job.queued_at.elapsed() <= W::STALE_AFTER);
    for job in stale {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        let waited = job.queued_at.elapsed().as_millis();
        let _ = job
            .reply
            .send(Err(TxError::Store(StoreError::Unavailable(format!(
                "the database is not keeping up: this write waited {waited} ms and was not done"
            )))));
    }
    fresh
}

/// How many queued writes a writer looks at for one batch, at most: enough
/// to fill a batch past a few writes that must wait (they share a key with
/// one taken), and bounded so that taking a batch costs the same however
/// long the queue has grown. Scanning the whole queue made every batch cost
/// more as the queue grew under overload: at 5,000 sends/s on a machine that
/// writes about 4,000, sends acknowledged per second fell from 2,000 to 500,
/// the server's time going into copying the queue.
fn scan_limit<W: BatchWrite>() -> usize {
    4 * W::MAX_BATCH
}

/// Takes the next batch off the front of the queue: queued writes in order,
/// skipping (and leaving at the front, in order) any that shares a key with
/// one already taken, looking at no more than [`scan_limit`] writes.
fn next_batch<W: BatchWrite>(queue: &mut VecDeque<Job<W>>) -> Vec<Job<W>> {
    let mut batch = Vec::new();
    let mut taken = HashSet::new();
    let mut skipped = Vec::new();
    let mut looked = 0;
    while batch.len() < W::MAX_BATCH && looked < scan_limit::<W>() {
        let Some(job) = queue.pop_front() else {
            break;
        };
        looked += 1;
        let keys = W::keys(&job.input);
        if keys.iter().all(|key| !taken.contains(key)) {
            taken.extend(keys);
            batch.push(job);
        } else {
            skipped.push(job);
        }
    }
    for job in skipped.into_iter().rev() {
        queue.push_front(job);
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Writes of a number, keyed by the number modulo 10 (never written),
    /// refused behind one that waited more than `MAX_WAIT_MS`, and when
    /// taken after waiting more than `STALE_MS`.
    struct Numbers<const MAX_WAIT_MS: u64 = { u64::MAX }, const STALE_MS: u64 = { u64::MAX }>;

    #[async_trait::async_trait]
    impl<const MAX_WAIT_MS: u64, const STALE_MS: u64> BatchWrite for Numbers<MAX_WAIT_MS, STALE_MS> {
        type Input = u32;
        type Output = ();
        type Key = u32;
        const MAX_BATCH: usize = 8;
        const MAX_WAIT: Duration = Duration::from_millis(MAX_WAIT_MS);
        const STALE_AFTER: Duration = Duration::from_millis(STALE_MS);

        fn keys(input: &u32) -> Vec<u32> {
            vec![input % 10]
        }

        async fn write_one(&self, _: &mut AsyncPgConnection, _: &u32) -> Result<(), TxError> {
            unreachable!("not written in these tests")
        }

        async fn write_many(
            &self,
            _: &mut AsyncPgConnection,
            _: &[u32],
        ) -> Result<Vec<()>, TxError> {
            unreachable!("not written in these tests")
        }
    }

    fn queue_of(inputs: impl IntoIterator<Item = u32>) -> VecDeque<Job<Numbers>> {
        inputs
            .into_iter()
            .map(|input| Job {
                input,
                reply: oneshot::channel().0,
                queued_at: Instant::now(),
            })
            .collect()
    }

    fn inputs(jobs: impl IntoIterator<Item = Job<Numbers>>) -> Vec<u32> {
        jobs.into_iter().map(|job| job.input).collect()
    }

    #[tokio::test]
    async fn a_write_behind_one_waiting_too_long_is_refused_at_once() {
        use diesel_async::pooled_connection::AsyncDieselConnectionManager;
        // Never connected: the refused write must not reach the database.
        let manager = AsyncDieselConnectionManager::new("postgres://127.0.0.1:1/unused");
        // A limit long against a stalled runner's pauses, so the write made
        // just after a recent one is never refused because of one.
        let batcher = Batcher::new(Numbers::<10_000>, Pool::builder(manager).build().unwrap());
        {
            let mut state = batcher.shared.state();
            // Every writer busy, and a write queued 11 s ago.
            state.writers = Numbers::<10_000>::WRITERS;
            state.queue.push_back(Job {
                input: 1,
                reply: oneshot::channel().0,
                queued_at: Instant::now() - Duration::from_secs(11),
            });
        }
        // No writer runs: without the refusal this would wait for good.
        let refused = tokio::time::timeout(Duration::from_secs(5), batcher.write(7))
            .await
            .expect("answered at once");
        assert!(
            matches!(refused, Err(TxError::Store(StoreError::Unavailable(_)))),
            "{refused:?}"
        );
        assert_eq!(batcher.statistics().refused, 1);
        {
            let mut state = batcher.shared.state();
            assert_eq!(state.queue.len(), 1, "nothing was queued");
            // A queue whose oldest write is recent takes new writes.
            state.queue.front_mut().unwrap().queued_at = Instant::now();
        }
        let queued = tokio::time::timeout(Duration::from_millis(20), batcher.write(8)).await;
        assert!(queued.is_err(), "queued, waiting for a writer: {queued:?}");
        assert_eq!(batcher.statistics().refused, 1);
    }

    #[tokio::test]
    async fn a_write_taken_after_waiting_past_its_kind_s_limit_is_refused_unwritten() {
        use diesel_async::pooled_connection::AsyncDieselConnectionManager;
        let manager = AsyncDieselConnectionManager::new("postgres://127.0.0.1:1/unused");
        let batcher = Batcher::new(
            Numbers::<{ u64::MAX }, 10_000>,
            Pool::builder(manager).build().unwrap(),
        );
        let job = |input, waited| {
            let (reply, answer) = oneshot::channel();
            let queued_at = Instant::now() - Duration::from_secs(waited);
            (
                Job {
                    input,
                    reply,
                    queued_at,
                },
                answer,
            )
        };
        let (old, old_answer) = job(1, 11);
        let (recent, mut recent_answer) = job(2, 1);
        let fresh = refuse_stale(&batcher.shared, vec![old, recent]);
        assert_eq!(fresh.iter().map(|j| j.input).collect::<Vec<_>>(), [2]);
        let refused = old_answer.await.unwrap();
        assert!(
            matches!(refused, Err(TxError::Store(StoreError::Unavailable(_)))),
            "{refused:?}"
        );
        assert!(
            recent_answer.try_recv().is_err(),
            "the recent one waits for its write"
        );
        assert_eq!(batcher.statistics().refused, 1);
    }

    #[test]
    fn a_batch_skips_shared_keys_and_leaves_them_first_in_order() {
        // Keys 1, 1, 2, 11 % 10 = 1, 3.
        let mut queue = queue_of([1, 21, 2, 11, 3]);
        let batch = next_batch::<Numbers>(&mut queue);
        assert_eq!(inputs(batch), [1, 2, 3]);
        assert_eq!(inputs(queue.drain(..)), [21, 11]);
    }

    #[test]
    fn a_batch_is_at_most_max_batch_and_the_rest_stays_in_order() {
        let mut queue = queue_of(0..20);
        let batch = next_batch::<Numbers>(&mut queue);
        assert_eq!(inputs(batch), (0..8).collect::<Vec<_>>());
        assert_eq!(inputs(queue.drain(..)), (8..20).collect::<Vec<_>>());
    }

    #[test]
    fn a_batch_looks_no_further_than_the_scan_limit() {
        // Ten keys only: after 0..9 every write shares a key until far down
        // the queue, where nothing is looked for any more.
        let mut queue = queue_of((0..10).chain(std::iter::repeat_n(5, 100)).chain([7]));
        let mut batch = next_batch::<Numbers>(&mut queue);
        assert_eq!(inputs(batch.drain(..)), (0..8).collect::<Vec<_>>());
        let second = next_batch::<Numbers>(&mut queue);
        // 8 and 9 fit, one 5 fits; the other 5s are skipped until the limit.
        assert_eq!(inputs(second), [8, 9, 5]);
        assert_eq!(queue.len(), 100);
        assert_eq!(queue.back().map(|job| job.input), Some(7));
        assert!(queue.iter().take(99).all(|job| job.input == 5));
    }
}
