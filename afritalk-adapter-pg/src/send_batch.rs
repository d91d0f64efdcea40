//! Many concurrent sends as one Postgres statement.
//!
//! Under load, what a send costs Postgres is mostly per statement and per
//! commit (executor start, snapshot, WAL flush wait, two context switches),
//! not per row. [`SendWrite`] therefore has the sends that queued up while
//! others were being written (see `batcher.rs`) written by this statement, all
//! in one implicit transaction:
//!
//! ```sql
//! WITH i AS (SELECT ord, jsonb_populate_record(NULL::conversations, …) AS c,     -- one row per send,
//!                   jsonb_populate_record(NULL::messages, …) AS m, …             -- from one JSON bind
//!            FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY),
//!      existing AS (SELECT i.ord, e.* FROM i, LATERAL (SELECT <message> …) e), -- the retry lookups
//!      c AS (INSERT INTO conversations … SELECT (i.c).* FROM i WHERE <not existing>
//!            ORDER BY <pair> ON CONFLICT … DO UPDATE SET last_seq = cv.last_seq + 1 …
//!            RETURNING <conversation>),
//!      ci AS (SELECT i.*, c.id, c.last_seq, c.id = (i.c).id AS created FROM i JOIN c ON <pair>),
//!      m AS (INSERT INTO messages … FROM ci RETURNING <message>),
//!      n AS (INSERT INTO notifications … FROM ci),
//!      a AS (INSERT INTO messaging_audit_log … FROM ci WHERE created UNION ALL … FROM ci)
//! SELECT ord, <c>, <m>, created FROM ci JOIN c … JOIN m …
//! UNION ALL SELECT ord, NULL, …, <existing>, FALSE FROM existing
//! ```
//!
//! It is the single-send statement of `send.rs` over a set of rows, with the
//! same guarantees per send, under two conditions the batcher ensures (they are
//! the sends' keys): no two
//! sends of a batch share a conversation pair (one `ON CONFLICT DO UPDATE`
//! cannot touch a row twice, and each send must see its own `seq`), nor a
//! client message id. The upsert takes the conversations' row locks in pair
//! order, so two batches cannot deadlock on each other. Any error fails the
//! whole batch, which then writes nothing; the batcher retries its sends one
//! by one, so each gets the answer it would have had alone (a unique
//! violation of a racing retry, for instance).
//!
//! Each retry lookup is a `LATERAL` subquery with `LIMIT 1` (the index is
//! unique anyway) so that the planner cannot flatten it into a join: it
//! believes the batch has 100 rows (its guess for any set-returning
//! function), and would then hash-join against a sequential scan of
//! `messages` while that table is young, and keep that plan as it grows.
//!
//! The rows travel as one JSON array bound as text: the statement text is the
//! same whatever the batch size, so diesel prepares it once per connection.

use std::sync::LazyLock;

use afritalk_adapter_sql::TxError;
use afritalk_adapter_sql::hot_paths::SendInput;
use afritalk_adapter_sql::rows::{ConversationRow, MessageRow, SendRows};
use afritalk_adapter_sql::schema::{conversations, messages};
use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::batcher::BatchWrite;
use crate::send::{
    AUDIT_COLUMNS, C_COLUMNS, CONVERSATION_COLUMNS, CV_COLUMNS, DUPLICATE_COLUMNS, M_COLUMNS,
    MESSAGE_COLUMNS, NOTIFICATION_COLUMNS, prefixed, send_in_one_statement,
};

/// The statement's text (it binds one parameter, the JSON array of sends).
static BATCH_SQL: LazyLock<String> = LazyLock::new(|| {
    // The message columns as inserted: the conversation and seq come from the upsert.
    let message_values = MESSAGE_COLUMNS
        .split(',')
        .map(|column| match column.trim() {
            "conversation_id" => "ci.conversation_id".to_owned(),
            "seq" => "ci.seq".to_owned(),
            other => format!("(ci.m).{other}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let pair = "(i.c).tenant_id, (i.c).user_one_id, (i.c).user_two_id";
    format!(
        "WITH i AS (SELECT e.ord, \
           jsonb_populate_record(NULL::conversations, e.x->'first') AS c, \
           jsonb_populate_record(NULL::messages, e.x->'message') AS m, \
           jsonb_populate_record(NULL::notifications, e.x->'notification') AS n, \
           jsonb_populate_record(NULL::messaging_audit_log, e.x->'send_audit') AS s, \
           jsonb_populate_record(NULL::messaging_audit_log, e.x->'conversation_audit') AS ca \
         FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(x, ord)), \
         existing AS (SELECT i.ord, e.* FROM i CROSS JOIN LATERAL (SELECT {existing} \
           FROM messages e WHERE e.tenant_id = (i.m).tenant_id \
           AND e.sender_id = (i.m).sender_id \
           AND e.client_message_id = (i.m).client_message_id LIMIT 1) e), \
         c AS (INSERT INTO conversations AS cv ({conversation_columns}) \
           SELECT {first_values} FROM i \
           WHERE NOT EXISTS (SELECT 1 FROM existing x WHERE x.ord = i.ord) \
           ORDER BY {pair} \
           ON CONFLICT (tenant_id, user_one_id, user_two_id) DO UPDATE SET \
           last_seq = cv.last_seq + 1, \
           last_message_at = GREATEST(cv.last_message_at, EXCLUDED.last_message_at), \
           updated_at = GREATEST(cv.updated_at, EXCLUDED.updated_at) \
           RETURNING {cv}), \
         ci AS (SELECT i.*, c.id AS conversation_id, c.last_seq AS seq, c.id = (i.c).id AS created \
           FROM i JOIN c ON c.tenant_id = (i.c).tenant_id AND c.user_one_id = (i.c).user_one_id \
           AND c.user_two_id = (i.c).user_two_id), \
         m AS (INSERT INTO messages ({message_columns}) SELECT {message_values} FROM ci \
           RETURNING {message_columns}), \
         n AS (INSERT INTO notifications ({notification_columns}) \
           SELECT {notification_values} FROM ci), \
         a AS (INSERT INTO messaging_audit_log ({audit_columns}) \
           SELECT {conversation_audit_values} FROM ci WHERE ci.created \
           UNION ALL SELECT {send_audit_values} FROM ci) \
         SELECT ci.ord, {c}, {m}, ci.created FROM ci \
           JOIN c ON c.id = ci.conversation_id JOIN m ON m.id = (ci.m).id \
         UNION ALL SELECT e.ord, {duplicate}, FALSE FROM existing e",
        existing = prefixed("e", MESSAGE_COLUMNS),
        conversation_columns = CONVERSATION_COLUMNS,
        first_values = prefixed("(i.c)", CONVERSATION_COLUMNS),
        cv = *CV_COLUMNS,
        message_columns = MESSAGE_COLUMNS,
        notification_columns = NOTIFICATION_COLUMNS,
        notification_values = prefixed("(ci.n)", NOTIFICATION_COLUMNS),
        audit_columns = AUDIT_COLUMNS,
        conversation_audit_values = prefixed("(ci.ca)", AUDIT_COLUMNS),
        send_audit_values = prefixed("(ci.s)", AUDIT_COLUMNS),
        c = *C_COLUMNS,
        m = *M_COLUMNS,
        duplicate = *DUPLICATE_COLUMNS,
    )
});

/// The sends of a batch as one statement (see the module documentation).
struct BatchStatement {
    /// The JSON array of [`SendInput`]s, in batch order.
    sends: String,
}

/// The static identity under which diesel caches the prepared statement.
struct BatchStatementId;

impl QueryId for BatchStatement {
    type QueryId = BatchStatementId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for BatchStatement {
    /// The send's position in the batch (from 1), the conversation (NULL for
    /// a duplicate), the message, and whether the conversation was created.
    type SqlType = (
        BigInt,
        Nullable<conversations::SqlType>,
        messages::SqlType,
        Bool,
    );
}

impl QueryFragment<Pg> for BatchStatement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let sql: &str = &BATCH_SQL;
        let Some((head, tail)) = sql.split_once("$1") else {
            return Err(diesel::result::Error::QueryBuilderError(
                "the batch statement has no parameter".into(),
            ));
        };
        out.push_sql(head);
        out.push_bind_param::<Text, _>(&self.sends)?;
        out.push_sql(tail);
        Ok(())
    }
}

/// Sends, as the batcher groups them.
pub(crate) struct SendWrite;

/// What two sends of one batch must not share.
#[derive(PartialEq, Eq, Hash)]
pub(crate) enum SendKey {
    /// The conversation pair: tenant, lower user id, higher user id.
    Pair(String, String, String),
    /// The client message id: tenant, sender, client id.
    ClientId(String, String, String),
}

#[async_trait::async_trait]
impl BatchWrite for SendWrite {
    type Input = SendInput;
    type Output = SendRows;
    type Key = SendKey;
    /// A send is acknowledged once stored, so one queued behind sends that
    /// have waited two seconds would be acknowledged seconds late, and later
    /// still as the queue grows: the machine is overloaded, and refusing it
    /// at once (the client retries with its client message id) is better. A
    /// stall shorter than that (a checkpoint's flush) is absorbed. At 5,000
    /// sends/s on a machine that wrote 4,000, the queue grew by 1,000 a
    /// second and the median send waited 3.6 s for its acknowledgement.
    const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

    fn keys(input: &SendInput) -> Vec<SendKey> {
        let (first, message) = (&input.first, &input.message);
        let pair = SendKey::Pair(
            first.tenant_id.clone(),
            first.user_one_id.clone(),
            first.user_two_id.clone(),
        );
        let client_id = message.client_message_id.as_ref().map(|client_id| {
            SendKey::ClientId(
                message.tenant_id.clone(),
                message.sender_id.clone(),
                client_id.clone(),
            )
        });
        std::iter::once(pair).chain(client_id).collect()
    }

    async fn write_one(
        &self,
        conn: &mut AsyncPgConnection,
        input: &SendInput,
    ) -> Result<SendRows, TxError> {
        send_in_one_statement(conn, input).await
    }

    async fn write_many(
        &self,
        conn: &mut AsyncPgConnection,
        inputs: &[SendInput],
    ) -> Result<Vec<SendRows>, TxError> {
        send_batch(conn, inputs).await
    }
}

/// Writes `sends` (no two sharing a conversation pair or a client message id)
/// in one statement; the results are in the order of `sends`. On error nothing
/// was written.
async fn send_batch(
    conn: &mut AsyncPgConnection,
    sends: &[SendInput],
) -> Result<Vec<SendRows>, TxError> {
    let json = serde_json::to_string(sends).map_err(|e| {
        TxError::Store(afritalk_ports::StoreError::Unavailable(format!(
            "could not encode a batch of sends: {e}"
        )))
    })?;
    let found: Vec<(i64, Option<ConversationRow>, MessageRow, bool)> =
        BatchStatement { sends: json }.load(conn).await?;
    let mut results: Vec<Option<SendRows>> = vec![None; sends.len()];
    for (ord, conversation, message, created) in found {
        let slot = usize::try_from(ord - 1)
            .ok()
            .and_then(|index| results.get_mut(index));
        let Some(slot) = slot else {
            return Err(lost("an unknown position"));
        };
        *slot = Some(match conversation {
            Some(conversation) => SendRows::Stored {
                conversation,
                message,
                created,
            },
            None => SendRows::Duplicate(message),
        });
    }
    results
        .into_iter()
        .map(|result| result.ok_or_else(|| lost("no row for a send")))
        .collect()
}

/// A batch whose answer does not match its sends (a bug, never expected):
/// reported as an error so that the batcher retries the sends one by one.
fn lost(what: &str) -> TxError {
    TxError::Store(afritalk_ports::StoreError::Unavailable(format!(
        "the batched send statement returned {what}"
    )))
}
