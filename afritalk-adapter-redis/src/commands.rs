//! The command connection an adapter's calls share.
//!
//! A connection checked out of a `deadpool_redis::Pool` is the caller's alone
//! until it is returned, and every checkout first proves the connection alive
//! with an `UNWATCH` + `PING` round trip. So each command cost two round
//! trips and held a slot through both: at 3,000 messages/s across two nodes
//! (five or so commands per message) the slots ran out, calls waited past the
//! pool's timeout, and 31,000 realtime events were never published. Yet the
//! connections are redis' multiplexed ones, which pipeline any number of
//! concurrent commands over one socket by themselves.
//!
//! [`SharedCommands`] therefore takes one connection out of the pool and lets
//! every call of its adapter use it at once, with no checkout. A call that
//! finds it broken (Redis restarted, the socket closed) drops it, and the
//! next call takes a fresh one from the pool, with the pool's timeouts (one
//! call at a time: a burst that finds no connection opens one, and if that
//! attempt fails the calls that waited for it fail with it). A
//! connection left unused for a second is first checked with a `PING`: a
//! busy node never pays for it, and a quiet adapter does not fail its first
//! call on a connection that died while nobody used it. A connection used
//! just before Redis restarted still fails one call (as a call in flight
//! during the restart would); the presence re-announce, which is the repair
//! after a restart, tries once more on a fresh connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use afritalk_ports::StoreResult;
use deadpool_redis::Pool;
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::{self, Cmd, Pipeline, RedisError, RedisFuture, Value};

use crate::unavailable;

/// How long the shared connection may go unused before it is checked first.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The shared connection, when a call last took it, and which connection of
/// the adapter it is (so that a call forgets only the one it found broken,
/// never a fresh one another call has put in its place meanwhile).
struct Slot {
    conn: MultiplexedConnection,
    taken: Instant,
    generation: u64,
}

/// One adapter's Redis command connection, shared by all its calls.
#[derive(Clone)]
pub(crate) struct SharedCommands {
    pool: Pool,
    current: Arc<Mutex<Option<Slot>>>,
    /// Held while connecting, so that a burst of calls finding no connection
    /// (the first ones, or those after a failure) opens one, not one each;
    /// it holds when the last attempt failed, so that the calls that waited
    /// for that attempt fail with it instead of each waiting out an attempt
    /// of its own, one after the other, while Redis does not answer.
    connecting: Arc<tokio::sync::Mutex<Option<Instant>>>,
    /// The generation of the last connection opened.
    opened: Arc<AtomicU64>,
}

impl SharedCommands {
    /// Commands over connections taken from `pool` (one at a time).
    pub(crate) fn new(pool: Pool) -> Self {
        Self {
            pool,
            current: Arc::new(Mutex::new(None)),
            connecting: Arc::default(),
            opened: Arc::default(),
        }
    }

    /// A handle on the shared connection, connecting first if there is none;
    /// `Unavailable`, saying what it was for (`context`), if Redis cannot be
    /// reached.
    pub(crate) async fn get(&self, context: &str) -> StoreResult<Command> {
        if let Some((mut command, idle)) = self.current() {
            let alive = idle < IDLE_CHECK
                || redis::cmd("PING")
                    .query_async::<String>(&mut command.conn)
                    .await
                    .is_ok();
            if alive {
                return Ok(command);
            }
            self.forget(command.generation);
        }
        let asked = Instant::now();
        let mut last_failure = self.connecting.lock().await;
        // A call that connected while this one waited left its connection shared.
        if let Some((command, _)) = self.current() {
            return Ok(command);
        }
        if last_failure.is_some_and(|failed| failed >= asked) {
            return Err(unavailable(
                context,
                "Redis could not be reached (a connection attempt made meanwhile failed)",
            ));
        }
        let pooled = match self.pool.get().await {
            Ok(pooled) => pooled,
            Err(e) => {
                *last_failure = Some(Instant::now());
                return Err(unavailable(context, e));
            }
        };
        *last_failure = None;
        let conn = deadpool_redis::Connection::take(pooled);
        let generation = self.opened.fetch_add(1, Ordering::Relaxed) + 1;
        *self.slot() = Some(Slot {
            conn: conn.clone(),
            taken: Instant::now(),
            generation,
        });
        Ok(Command {
            conn,
            shared: self.clone(),
            generation,
        })
    }

    /// A handle on the current connection, if any, and how long it had been
    /// unused (it counts as used from now on).
    fn current(&self) -> Option<(Command, Duration)> {
        self.slot().as_mut().map(|slot| {
            let idle = slot.taken.elapsed();
            slot.taken = Instant::now();
            let command = Command {
                conn: slot.conn.clone(),
                shared: self.clone(),
                generation: slot.generation,
            };
            (command, idle)
        })
    }

    /// Forgets the current connection if it is still the one of `generation`.
    fn forget(&self, generation: u64) {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|s| s.generation == generation) {
            *slot = None;
        }
    }

    /// The current connection (a poisoned lock only means a call panicked
    /// while swapping it: the slot is still a valid `Option`).
    fn slot(&self) -> MutexGuard<'_, Option<Slot>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One call's handle on the shared connection: it forgets the connection when
/// a command finds it broken, so that the next call connects again.
pub(crate) struct Command {
    conn: MultiplexedConnection,
    shared: SharedCommands,
    generation: u64,
}

impl Command {
    /// Forgets the shared connection if `error` says it may no longer be
    /// usable (a script error leaves it in place; a timeout does not, as a
    /// connection whose network path died silently would time out forever).
    fn after(&self, error: &RedisError) {
        if error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error() {
            self.shared.forget(self.generation);
        }
    }
}

impl ConnectionLike for Command {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.conn.req_packed_command(cmd).await;
            if let Err(error) = &result {
                self.after(error);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self.conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(error) = &result {
                self.after(error);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}
