//! Planner statistics for AfriTalk's tables where autovacuum does not keep them.
//!
//! Every statement runs prepared, once per connection, and after a few runs
//! Postgres settles on one generic plan for it, made from what it then
//! believes about the tables, and keeps that plan until their statistics
//! change. Autovacuum's analyze is what changes them: within a minute of a
//! new deployment, and again as each table grows by a tenth. Where autovacuum
//! is off (some managed test servers, the benchmark machine), tables never
//! get statistics, and a plan made in the first seconds, on tables of a few
//! rows with default selectivities, is kept for good. Measured on such a
//! server at 1,000 messages/s: a lookup settled on the recipient's index and
//! read 6 million of its entries in 20 s, the retry lookup of every send
//! walked the sender's messages instead of probing the unique client id, and
//! the median delivery latency was 7–11 ms in most runs, against 1.3–1.5 ms
//! once the tables had statistics.
//!
//! [`PgStore::keep_statistics`] does what autoanalyze would, only while
//! autovacuum is off: every second (`afritalk serve`) it reads how many rows of each of
//! the schema's tables changed since their last analyze
//! (`pg_stat_user_tables`), and analyzes those past autovacuum's default
//! threshold (50 rows plus a tenth of the table) that were last analyzed a
//! minute ago or more (autovacuum's default pace), or never, or are still
//! young (analyzed at fewer than [`YOUNG_ROWS`] rows) and have more than
//! doubled since. A young table is also analyzed as soon as its file has
//! more than doubled in pages since its last analyze (or, never analyzed,
//! holds more than two pages): the row counters of `pg_stat_user_tables`
//! reach the view only when busy sessions flush them, seconds late under
//! load, and a new deployment's first plans, made on empty tables, were kept
//! that long (the send's retry lookup then walked the whole tenant through
//! the recipient's index: 1.1–2.8 million index entries read in a 20 s run at
//! 1,000 messages/s); a file's size is never late. Analyzing a table
//! makes every connection plan its statements on that table again, now with
//! statistics, which is why a changed table is not analyzed at every check:
//! `conversations`, one row per pair updated by every send in it, once
//! counted as "changed more rows than it held" and was analyzed every five
//! seconds, and the replanning that followed showed as bursts of slow
//! deliveries. For the same reason a grown table waits its minute: doubling
//! from 5,000 to 10,000 to 20,000 rows in a new deployment's first half
//! minute at 1,000 messages/s once meant nine analyzes, each followed by a
//! burst of 10–30 slow deliveries, for plans that no longer change past a
//! thousand rows (the planner scales what it knows to the table's current
//! size on disk).
//! With autovacuum on, it only reads the setting.

use std::time::Duration;

use afritalk_adapter_sql::error::db_error;
use afritalk_ports::{StoreError, StoreResult};
use diesel::QueryableByName;
use diesel::sql_types::{Bool, Text};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::PgStore;

/// A table of the schema that changed enough since its last analyze.
#[derive(QueryableByName)]
struct Stale {
    #[diesel(sql_type = Text)]
    relname: String,
}

/// Whether the server's autovacuum is on.
#[derive(QueryableByName)]
struct Autovacuum {
    #[diesel(sql_type = Bool)]
    on: bool,
}

/// Who keeps the statistics: [`PgStore::keep_statistics`]'s choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatisticsKeeping {
    /// Analyze stale tables only while the server's autovacuum is off.
    WhenAutovacuumIsOff,
    /// Analyze stale tables whatever autovacuum does (tests).
    Always,
}

impl PgStore {
    /// Analyzes, once, the schema's tables due for it (see the module
    /// documentation; none if `keeping` leaves it to autovacuum); returns the
    /// tables analyzed. A database that cannot be reached or refuses the
    /// catalog queries is `Unavailable`, as for every port call.
    pub async fn refresh_statistics(&self, keeping: StatisticsKeeping) -> StoreResult<Vec<String>> {
        refresh(self.pool(), keeping).await
    }

    /// Spawns the task that calls [`PgStore::refresh_statistics`] every
    /// `every` for as long as the store's pool exists (see the module
    /// documentation for why).
    pub fn keep_statistics(
        &self,
        keeping: StatisticsKeeping,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let pool = self.pool().weak();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                match refresh(&pool, keeping).await {
                    Ok(tables) if !tables.is_empty() => {
                        tracing::debug!(?tables, "planner statistics refreshed");
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(%err, "planner statistics not refreshed"),
                }
            }
        })
    }
}

/// The sample the keeper's analyzes read: 3,000 rows (300 × the target)
/// rather than the default 30,000. What the hot statements' plans need is
/// the tables' size and whether a key is selective, which a small sample
/// tells as well; the default sample took 130 ms of a core per analyze of a
/// 25,000-row `messages`, against 20 ms, and on a two-core server that pause
/// showed in the deliveries of the moment.
const SAMPLE: &str = "SET LOCAL default_statistics_target = 10";

/// The analyzed size under which a table counts as young and is analyzed
/// again as soon as it doubles, without waiting its minute: below it the
/// first plans, made on a handful of rows, may be wrong for the table a
/// moment later; above it what the plans need (which keys are selective) is
/// known, and the planner scales row counts to the table's current size.
pub const YOUNG_ROWS: u32 = 1_000;

/// One pass of the keeper, on a connection of `pool`.
async fn refresh(
    pool: &Pool<AsyncPgConnection>,
    keeping: StatisticsKeeping,
) -> StoreResult<Vec<String>> {
    const CONTEXT: &str = "refreshing planner statistics";
    let mut conn = pool
        .get()
        .await
        .map_err(|e| StoreError::Unavailable(format!("no connection for {CONTEXT}: {e}")))?;
    if keeping == StatisticsKeeping::WhenAutovacuumIsOff {
        let autovacuum: Autovacuum =
            diesel::sql_query("SELECT current_setting('autovacuum')::bool AS on")
                .get_result(&mut *conn)
                .await
                .map_err(|e| db_error(CONTEXT, e))?;
        if autovacuum.on {
            return Ok(Vec::new());
        }
    }
    let stale: Vec<Stale> = diesel::sql_query(
        "SELECT s.relname::text AS relname FROM pg_stat_user_tables s \
         JOIN pg_class c ON c.oid = s.relid \
         WHERE s.schemaname = current_schema() \
         AND ((s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0) \
           AND (greatest(s.last_analyze, s.last_autoanalyze) IS NULL \
             OR greatest(s.last_analyze, s.last_autoanalyze) < now() - interval '60 seconds' \
             OR (c.reltuples < $1 AND s.n_live_tup > 2 * greatest(c.reltuples, 0)))) \
         OR CASE WHEN c.reltuples < $1 \
           THEN pg_relation_size(c.oid) \
             > 2::bigint * greatest(c.relpages, 1) * current_setting('block_size')::bigint \
           ELSE false END)",
    )
    .bind::<diesel::sql_types::Float, _>(YOUNG_ROWS as f32)
    .load(&mut *conn)
    .await
    .map_err(|e| db_error(CONTEXT, e))?;
    let mut analyzed = Vec::with_capacity(stale.len());
    for Stale { relname } in stale {
        let analyze = format!("ANALYZE \"{}\"", relname.replace('"', "\"\""));
        conn.transaction(async |tx| {
            diesel::sql_query(SAMPLE).execute(tx).await?;
            diesel::sql_query(&analyze).execute(tx).await
        })
        .await
        .map_err(|e| db_error(CONTEXT, e))?;
        analyzed.push(relname);
    }
    Ok(analyzed)
}
