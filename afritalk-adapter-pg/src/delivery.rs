//! First deliveries (✓✓) on Postgres, grouped like sends.
//!
//! Every message is acknowledged by its recipient's socket, so under load
//! there are as many ✓✓ updates as sends, each with its own commit. Through
//! the batcher (`batcher.rs`) the acknowledgements that arrive within a few
//! milliseconds of each other, or queue up while others are written, share
//! one statement:
//!
//! ```sql
//! WITH acks AS MATERIALIZED (
//!   SELECT v.at, x.ctid AS tid
//!   FROM jsonb_to_recordset($1::jsonb) AS v(tenant_id text, id text, recipient_id text, at timestamp)
//!   CROSS JOIN LATERAL (SELECT ctid, tenant_id, recipient_id, delivered_at
//!                       FROM messages WHERE id = v.id LIMIT 1) x
//!   WHERE x.tenant_id = v.tenant_id AND x.recipient_id = v.recipient_id
//!     AND x.delivered_at IS NULL)
//! UPDATE messages AS m SET delivered_at = acks.at,
//!   updated_at = GREATEST(m.updated_at, acks.at)
//! FROM acks WHERE m.ctid = acks.tid AND m.delivered_at IS NULL
//! RETURNING <message>
//! ```
//!
//! which is, per acknowledgement, the portable guarded update: only the
//! recipient delivers, and only the first time. A lone acknowledgement runs
//! the same statement with a batch of one. A batch never holds one message
//! twice (its key), so each returned row answers exactly one acknowledgement;
//! an acknowledgement without a row changed nothing, and the shared code reads
//! the message to say why.
//!
//! The shape is chosen so that no plan of it can scan `messages`, whatever
//! the planner believes about the table. The statement is prepared once per
//! connection and Postgres soon settles on one generic plan for it, made with
//! what it knows then; where autovacuum is off (as on the benchmark machine),
//! or before its first analyze, that is a table of a few pages and default
//! selectivities, and the plan is kept as the table grows. A plain
//! `UPDATE … FROM unnest(…) WHERE m.id = v.id` then became a sequential scan
//! per batch (10 million rows read in a 20 s run), and a guarded
//! `WHERE id = … AND tenant_id = … AND recipient_id = …` picked the recipient's
//! index (`messages_recipient_changes`, whose trailing `id` makes it look as
//! selective as the key) and walked all of the recipient's messages. Here each
//! acknowledgement is a probe of the primary key alone (`LIMIT 1` keeps it a
//! per-row probe, and `id` leads no other index), its guards are filters on
//! the row found, and the update reaches that row by its tuple id, the same
//! version the probe saw under the statement's snapshot. The probes are a
//! materialized CTE so that their cost (the planner guesses 100 rows for the
//! batch) stays out of the update's own join: inside it, that cost made a
//! sequential scan of `messages` look as cheap as the tuple-id lookup, within
//! the planner's 1% tolerance, and the scan was preferred. If a concurrent
//! write (a read receipt, an edit) updated the row since, Postgres follows it
//! to the newest version and checks `delivered_at IS NULL` again there, so
//! the first delivery still wins exactly once.
//!
//! The acknowledgements are written in message id order, so two batches that
//! share messages (two sockets of one recipient acknowledging together) lock
//! them in the same order and cannot deadlock.
//!
//! The acknowledgements travel as one JSON array bound as text, like the
//! batched sends: the text is the same for any batch size, so diesel prepares
//! it once per connection, and Postgres cannot see how many rows the batch
//! holds. Bound as arrays, it could: each call's custom plan then looked
//! cheaper than the generic one, and Postgres planned every acknowledgement
//! afresh (`pg_prepared_statements`: 0 generic plans for 60 custom).

use std::collections::HashMap;

use afritalk_adapter_sql::TxError;
use afritalk_adapter_sql::hot_paths::DeliveryInput;
use afritalk_adapter_sql::rows::MessageRow;
use afritalk_adapter_sql::schema::messages;
use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::batcher::BatchWrite;
use crate::send::M_COLUMNS;

/// First deliveries, as the batcher groups them.
pub(crate) struct DeliveryWrite;

#[async_trait::async_trait]
impl BatchWrite for DeliveryWrite {
    type Input = DeliveryInput;
    type Output = Option<MessageRow>;
    /// The message id: one acknowledgement per message in a batch.
    type Key = String;
    /// One writer that lingers: nobody waits on a ✓✓ but the sender's tick,
    /// and a few milliseconds there let the acknowledgements of a busy node
    /// share statements (at 1,000 messages/s without lingering nearly every
    /// one went alone; lingering 5 ms cut Postgres's CPU per message by about
    /// 10 % and the server's by 6 %).
    const WRITERS: usize = 1;
    const LINGER: std::time::Duration = std::time::Duration::from_millis(5);
    /// A ✓✓ is stamped when acknowledged, so one stored long after would fall
    /// behind a catch-up's settled point (30 s) and never be listed to a
    /// client that caught up meanwhile. Once the oldest queued ✓✓ has waited
    /// 10 s the database is overloaded: a new one is refused (logged; the
    /// message stays undelivered until its recipient's next fetch marks it)
    /// instead of joining the queue, and a queued one a writer takes after
    /// 10 s is refused the same way rather than stored late.
    const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
    const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

    fn keys(input: &DeliveryInput) -> Vec<String> {
        vec![input.id.clone()]
    }

    async fn write_one(
        &self,
        conn: &mut AsyncPgConnection,
        input: &DeliveryInput,
    ) -> Result<Option<MessageRow>, TxError> {
        let mut rows = deliver(conn, std::slice::from_ref(input)).await?;
        Ok(rows.pop().flatten())
    }

    async fn write_many(
        &self,
        conn: &mut AsyncPgConnection,
        inputs: &[DeliveryInput],
    ) -> Result<Vec<Option<MessageRow>>, TxError> {
        deliver(conn, inputs).await
    }
}

/// Marks the messages of `inputs` (no message twice) delivered where the
/// acknowledging user is the recipient and it was not delivered yet; the
/// updated rows, in the order of `inputs`, `None` where nothing changed.
async fn deliver(
    conn: &mut AsyncPgConnection,
    inputs: &[DeliveryInput],
) -> Result<Vec<Option<MessageRow>>, TxError> {
    let mut in_id_order: Vec<&DeliveryInput> = inputs.iter().collect();
    in_id_order.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    let acks = serde_json::to_string(&in_id_order).map_err(|e| {
        TxError::Store(afritalk_ports::StoreError::Unavailable(format!(
            "could not encode a batch of acknowledgements: {e}"
        )))
    })?;
    let statement = DeliveryStatement { acks };
    let updated: Vec<MessageRow> = statement.load(conn).await?;
    let mut by_id: HashMap<String, MessageRow> = updated
        .into_iter()
        .map(|row| (row.id.clone(), row))
        .collect();
    Ok(inputs.iter().map(|input| by_id.remove(&input.id)).collect())
}

/// The guarded update of a batch of first deliveries (see the module documentation).
struct DeliveryStatement {
    /// The JSON array of [`DeliveryInput`]s, in message id order.
    acks: String,
}

/// The static identity under which diesel caches the prepared statement.
struct DeliveryStatementId;

impl QueryId for DeliveryStatement {
    type QueryId = DeliveryStatementId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for DeliveryStatement {
    /// The updated messages.
    type SqlType = messages::SqlType;
}

impl QueryFragment<Pg> for DeliveryStatement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "WITH acks AS MATERIALIZED (SELECT v.at, x.ctid AS tid FROM jsonb_to_recordset(",
        );
        out.push_bind_param::<Text, _>(&self.acks)?;
        out.push_sql(
            "::jsonb) AS v(tenant_id text, id text, recipient_id text, at timestamp) \
             CROSS JOIN LATERAL (SELECT ctid, tenant_id, recipient_id, delivered_at \
             FROM messages WHERE id = v.id LIMIT 1) x \
             WHERE x.tenant_id = v.tenant_id AND x.recipient_id = v.recipient_id \
             AND x.delivered_at IS NULL) \
             UPDATE messages AS m SET delivered_at = acks.at, \
             updated_at = GREATEST(m.updated_at, acks.at) \
             FROM acks WHERE m.ctid = acks.tid AND m.delivered_at IS NULL RETURNING ",
        );
        out.push_sql(&M_COLUMNS);
        Ok(())
    }
}
