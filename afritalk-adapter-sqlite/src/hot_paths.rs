//! `SqliteStore`'s writes of the hot paths: sends, first deliveries (✓✓) and
//! audit rows, queued and written in groups, each group as one transaction.
//!
//! Two costs decided how many messages the embedded default carried:
//! - diesel-async runs a SQLite connection's every statement on a blocking
//!   thread of its own, so the portable async code paid a thread hand-off
//!   and a task wake-up per statement (about eight for one send);
//! - SQLite has one writer, and every commit waits for an `fsync` (WAL mode,
//!   `synchronous = FULL`, so an acknowledged send is durable). With a send
//!   and a delivery per message, the writer spent most of its time waiting
//!   for the disk, one commit at a time, and stopped keeping up near 900
//!   messages/s while the CPU was half idle.
//!
//! So each write here is plain synchronous diesel code, and the writes wait in
//! one queue. A writer task holds the store's write lock, takes every queued
//! write (up to [`MAX_GROUP`]) and runs them on one connection's blocking
//! thread, in one hand-off, as one `BEGIN IMMEDIATE` transaction and one
//! commit. A lone write is written at once, alone; writes that arrive while a
//! group commits form the next group. Each write runs inside a savepoint, so
//! one that fails (a unique violation, say) leaves no trace and the others
//! still commit; and no caller hears back before its group committed, so an
//! acknowledged send is always durable. A caller that gives up (a closed
//! socket) does not cancel its write: the writer task owns the queue.

use std::sync::{Arc, Mutex, PoisonError};

use afritalk_adapter_sql::TxError;
use afritalk_adapter_sql::cached::CachedDsl;
use afritalk_adapter_sql::hot_paths::{DeliveryInput, HotPaths, SendInput, WriteLock};
use afritalk_adapter_sql::rows::{AuditRow, ConversationRow, MessageRow, SendRows};
use afritalk_adapter_sql::schema::{conversations, messages, messaging_audit_log, notifications};
use afritalk_ports::StoreError;
use diesel::SqliteConnection;
use diesel::prelude::*;
use diesel_async::pooled_connection::deadpool::Pool;
use tokio::sync::oneshot;

use crate::AsyncSqliteConnection;

diesel::define_sql_function! {
    /// SQLite's two-argument `MAX(x, y)`: the later of two timestamps (stored
    /// as fixed-format text, so text order is time order).
    #[sql_name = "MAX"]
    fn later_of(x: diesel::sql_types::Timestamp, y: diesel::sql_types::Timestamp) -> diesel::sql_types::Timestamp;
}

/// The most writes one transaction takes (bounds how long the writer holds
/// the lock that the store's other writes wait for).
pub const MAX_GROUP: usize = 64;

/// A queued write: it writes on the connection, inside the group's
/// transaction (or, given why there is no connection, writes nothing).
type Job = Box<dyn FnOnce(Result<&mut SqliteConnection, &str>) -> Written + Send>;

/// A write done inside a group, waiting for the group's commit.
struct Written {
    /// Whether the write failed (and was rolled back to its savepoint).
    failed: bool,
    /// How to answer its caller.
    answer: Answer,
}

/// Answers one caller, given the outcome of its group's commit (`Err` says
/// why it failed).
type Answer = Box<dyn FnOnce(Result<(), &str>) + Send>;

/// How the hot paths' writes were committed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStatistics {
    /// Transactions that committed several writes together.
    pub groups: u64,
    /// Writes in those transactions.
    pub grouped: u64,
    /// Writes of those transactions that failed alone (rolled back to their
    /// savepoint) while the rest of their group went on.
    pub failed_in_groups: u64,
}

/// The hot paths of `SqliteStore` (its `hot_paths` in `sql_store!`).
#[derive(Clone)]
pub struct SqliteHotPaths {
    pool: Pool<AsyncSqliteConnection>,
    writer: Option<WriteLock>,
    queue: Arc<Mutex<Queue>>,
    statistics: Arc<Mutex<WriteStatistics>>,
}

/// The writes waiting for the writer task, and whether it runs.
#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    writing: bool,
}

/// The writer on duty. Dropped before the queue was empty (a panic), it
/// starts another writer for the writes still queued, whose callers would
/// otherwise wait for good (`writing` stays set, so no write starts one).
struct OnDuty {
    paths: SqliteHotPaths,
    relieved: bool,
}

impl Drop for OnDuty {
    fn drop(&mut self) {
        if self.relieved {
            return;
        }
        let runtime = tokio::runtime::Handle::try_current();
        let mut queue = self.paths.queue();
        match runtime {
            Ok(runtime) if !queue.jobs.is_empty() => {
                drop(queue);
                runtime.spawn(self.paths.clone().write_queued());
            }
            _ => queue.writing = false,
        }
    }
}

impl SqliteHotPaths {
    /// Queues `write` and returns its result once its group committed.
    async fn write<R: Send + 'static>(
        &self,
        write: impl FnOnce(&mut SqliteConnection) -> Result<R, TxError> + Send + 'static,
    ) -> Result<R, TxError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                // A savepoint: a failed write leaves nothing in the group.
                Ok(conn) => conn.transaction(write),
                Err(reason) => Err(unavailable(reason).into()),
            };
            Written {
                failed: result.is_err(),
                answer: Box::new(move |commit: Result<(), &str>| {
                    let result = match commit {
                        Ok(()) => result,
                        Err(reason) => Err(unavailable(reason).into()),
                    };
                    // The caller may have given up; its write stands.
                    let _ = reply.send(result);
                }),
            }
        });
        let start_writer = {
            let mut queue = self.queue();
            queue.jobs.push(job);
            !std::mem::replace(&mut queue.writing, true)
        };
        if start_writer {
            tokio::spawn(self.clone().write_queued());
        }
        answer
            .await
            .map_err(|_| unavailable("the write was interrupted").into())
            .and_then(|result| result)
    }

    /// The writer task: writes queued groups until the queue is empty.
    async fn write_queued(self) {
        let mut on_duty = OnDuty {
            paths: self.clone(),
            relieved: false,
        };
        loop {
            let _writer = match &self.writer {
                Some(lock) => Some(lock.lock().await),
                None => None,
            };
            let jobs = {
                let mut queue = self.queue();
                if queue.jobs.is_empty() {
                    queue.writing = false;
                    on_duty.relieved = true;
                    return;
                }
                let take = queue.jobs.len().min(MAX_GROUP);
                queue.jobs.drain(..take).collect::<Vec<_>>()
            };
            self.write_group(jobs).await;
        }
    }

    /// Writes `jobs` as one transaction and answers each caller after its commit.
    async fn write_group(&self, jobs: Vec<Job>) {
        let mut conn = match self.pool.get().await {
            Ok(conn) => conn,
            Err(e) => {
                let reason = format!("no database connection available: {e}");
                for job in jobs {
                    (job(Err(&reason)).answer)(Err(&reason));
                }
                return;
            }
        };
        let done = conn
            .spawn_blocking(move |conn| {
                let mut written = Vec::with_capacity(jobs.len());
                let commit = conn.immediate_transaction(|tx| {
                    written.extend(jobs.into_iter().map(|job| job(Ok(&mut *tx))));
                    QueryResult::Ok(())
                });
                let commit = commit.map_err(|e| format!("database error while committing: {e}"));
                Ok((written, commit))
            })
            .await;
        // A failed hand-off dropped the answers: their callers see the write interrupted.
        let Ok((written, commit)) = done else {
            return;
        };
        if written.len() > 1 && commit.is_ok() {
            let mut statistics = self.statistics();
            statistics.groups += 1;
            statistics.grouped += written.len() as u64;
            statistics.failed_in_groups += written.iter().filter(|w| w.failed).count() as u64;
        }
        let commit = commit.as_ref().map(|_| ()).map_err(String::as_str);
        for write in written {
            (write.answer)(commit);
        }
    }

    /// How the writes were committed so far.
    pub fn write_statistics(&self) -> WriteStatistics {
        *self.statistics()
    }

    /// The statistics, locked (each update is one step: poisoning is ignored).
    fn statistics(&self) -> std::sync::MutexGuard<'_, WriteStatistics> {
        self.statistics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The queue, locked.
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Every change to the queue is one step: a panic leaves it consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The port error of a write that could not be done or committed.
fn unavailable(reason: &str) -> StoreError {
    StoreError::Unavailable(reason.to_owned())
}

#[async_trait::async_trait]
impl HotPaths<Pool<AsyncSqliteConnection>> for SqliteHotPaths {
    fn new(pool: Pool<AsyncSqliteConnection>, writer: Option<WriteLock>) -> Self {
        Self {
            pool,
            writer,
            queue: Arc::default(),
            statistics: Arc::default(),
        }
    }

    async fn send(&self, input: SendInput) -> Result<SendRows, TxError> {
        self.write(move |conn| send(conn, &input)).await
    }

    async fn first_delivery(&self, input: DeliveryInput) -> Result<Option<MessageRow>, TxError> {
        self.write(move |conn| first_delivery(conn, &input)).await
    }

    async fn audit(&self, row: AuditRow) -> Result<(), TxError> {
        self.write(move |conn| {
            diesel::insert_into(messaging_audit_log::table)
                .values(&row)
                .execute(conn)?;
            Ok(())
        })
        .await
    }
}

/// The message stored earlier under the client message id of `message`, if any.
fn message_by_client_id(
    conn: &mut SqliteConnection,
    message: &MessageRow,
) -> QueryResult<Option<MessageRow>> {
    let Some(client_id) = &message.client_message_id else {
        return Ok(None);
    };
    messages::table
        .filter(messages::tenant_id.eq(&message.tenant_id))
        .filter(messages::sender_id.eq(&message.sender_id))
        .filter(messages::client_message_id.eq(client_id))
        .select(MessageRow::as_select())
        .first(conn)
        .optional()
}

/// A send (inside its group's transaction): a lookup for retries, then the
/// conversation, the message, the notification and the audit rows.
fn send(conn: &mut SqliteConnection, input: &SendInput) -> Result<SendRows, TxError> {
    if let Some(message) = message_by_client_id(conn, &input.message)? {
        return Ok(SendRows::Duplicate(message));
    }
    let first = &input.first;
    // Creates the conversation or bumps its `last_seq`; the single writer
    // serialises `seq`.
    let conversation: ConversationRow = diesel::insert_into(conversations::table)
        .values(first)
        .on_conflict((
            conversations::tenant_id,
            conversations::user_one_id,
            conversations::user_two_id,
        ))
        .do_update()
        .set((
            conversations::last_seq.eq(conversations::last_seq + 1),
            // Times are taken before the write lock, so a send stamped earlier
            // can commit later: the conversation's times never go back.
            conversations::last_message_at.eq(later_of(
                conversations::last_message_at,
                first.last_message_at,
            )),
            conversations::updated_at.eq(later_of(conversations::updated_at, first.updated_at)),
        ))
        .returning(ConversationRow::as_returning())
        // Fixed shape: the same SET columns every call.
        .cached()
        .get_result(conn)?;
    let created = conversation.id == first.id;
    let message = MessageRow {
        conversation_id: conversation.id.clone(),
        seq: conversation.last_seq,
        ..input.message.clone()
    };
    diesel::insert_into(messages::table)
        .values(&message)
        .execute(conn)?;
    diesel::insert_into(notifications::table)
        .values(&input.notification)
        .execute(conn)?;
    if created {
        diesel::insert_into(messaging_audit_log::table)
            .values(&input.conversation_audit)
            .execute(conn)?;
    }
    diesel::insert_into(messaging_audit_log::table)
        .values(&input.send_audit)
        .execute(conn)?;
    Ok(SendRows::Stored {
        conversation,
        message,
        created,
    })
}

/// A first delivery as one guarded update: only the recipient delivers, once.
fn first_delivery(
    conn: &mut SqliteConnection,
    input: &DeliveryInput,
) -> Result<Option<MessageRow>, TxError> {
    Ok(diesel::update(
        messages::table
            .filter(messages::tenant_id.eq(&input.tenant_id))
            .filter(messages::id.eq(&input.id))
            .filter(messages::recipient_id.eq(&input.recipient_id))
            .filter(messages::delivered_at.is_null()),
    )
    .set((
        messages::delivered_at.eq(Some(input.at)),
        // Never back (see afritalk-adapter-sql's store).
        messages::updated_at.eq(later_of(messages::updated_at, input.at)),
    ))
    .returning(MessageRow::as_returning())
    // Fixed shape: the same filters and SET columns every call.
    .cached()
    .get_result(conn)
    .optional()?)
}
