//! The Postgres send: one statement, one round trip.
//!
//! `MessageStore::send` on Postgres runs as a single writable-CTE statement in
//! autocommit, i.e. one implicit transaction that is all or nothing and is
//! acknowledged only once its commit is durable (`synchronous_commit` is left
//! as the server has it, `on` by default):
//!
//! ```sql
//! WITH existing AS (SELECT <message> FROM messages            -- the retry lookup
//!                   WHERE tenant_id = $ AND sender_id = $ AND client_message_id = $),
//!      c AS (INSERT INTO conversations AS cv (…) SELECT $, … WHERE NOT EXISTS (SELECT 1 FROM existing)
//!            ON CONFLICT (tenant_id, user_one_id, user_two_id)
//!            DO UPDATE SET last_seq = cv.last_seq + 1, last_message_at = …, updated_at = …
//!            RETURNING <conversation>, cv.id = $new_id AS created),
//!      m AS (INSERT INTO messages (…) SELECT $, $, c.id, c.last_seq, … FROM c RETURNING <message>),
//!      n AS (INSERT INTO notifications (…) SELECT $, … FROM c),
//!      a AS (INSERT INTO messaging_audit_log (…) SELECT $, … FROM c WHERE c.created   -- conversation.create
//!            UNION ALL SELECT $, … FROM c)                                           -- message.send
//! SELECT <c>, <m>, c.created FROM c CROSS JOIN m
//! UNION ALL SELECT NULL, …, <existing>, FALSE FROM existing
//! ```
//!
//! Every write hangs off `c`: when the client message id is already stored,
//! `c` inserts nothing and so does everything else, and the statement returns
//! the stored message (`SendRows::Duplicate`). Otherwise the upsert creates or
//! bumps the conversation and holds its row lock until commit, which makes
//! `seq = last_seq + 1` gapless and unique per conversation. `created` compares
//! the returned id with the id a creation would use (the fresh
//! `new_conversation_id`), exactly as the portable path does. When two retries
//! race past `existing` (same snapshot), the loser's message insert meets the
//! winner's row in the unique `(tenant_id, sender_id, client_message_id)` index,
//! the statement fails as a whole, and the shared code answers `Duplicate`
//! from a fresh lookup. The foreign key from the message to a conversation
//! created by the same statement is checked at the end of the statement, so it
//! holds.
//!
//! The statement is a diesel [`QueryFragment`] with a static [`QueryId`], so
//! diesel-async prepares it once per connection and reuses it (a plain
//! `sql_query` is never cached: every send would pay a separate prepare round
//! trip and a fresh parse and plan).

use std::sync::LazyLock;

use afritalk_adapter_sql::TxError;
use afritalk_adapter_sql::hot_paths::SendInput;
use afritalk_adapter_sql::rows::{
    AuditRow, ConversationRow, MessageRow, NotificationRow, SendRows,
};
use afritalk_adapter_sql::schema::{conversations, messages};
use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Timestamp};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// The columns of `messages`, in schema order (the order `MessageRow` loads).
pub(crate) const MESSAGE_COLUMNS: &str = "id, tenant_id, conversation_id, seq, sender_id, recipient_id, \
     content, related_entity_type, related_entity_id, client_message_id, read_at, delivered_at, \
     edited_at, deleted_at, created_at, updated_at";

/// The columns of `conversations`, in schema order (the order `ConversationRow` loads).
pub(crate) const CONVERSATION_COLUMNS: &str =
    "id, tenant_id, user_one_id, user_two_id, created_at, updated_at, last_message_at, last_seq";

/// The columns of `notifications`, in the order [`push_notification`] binds them.
pub(crate) const NOTIFICATION_COLUMNS: &str = "id, tenant_id, user_id, title, message, kind, status_rank, \
     related_entity_type, related_entity_id, push_sent, push_sent_at, created_at";

/// The columns of `messaging_audit_log`, in the order [`push_audit`] binds them.
pub(crate) const AUDIT_COLUMNS: &str =
    "id, tenant_id, user_id, action, entity_type, entity_id, details, ip_address, created_at";

/// `prefix.col, prefix.col, …` for a column list.
pub(crate) fn prefixed(prefix: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|column| format!("{prefix}.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The conversation columns as the upsert returns them.
pub(crate) static CV_COLUMNS: LazyLock<String> =
    LazyLock::new(|| prefixed("cv", CONVERSATION_COLUMNS));
/// The conversation columns in the final select.
pub(crate) static C_COLUMNS: LazyLock<String> =
    LazyLock::new(|| prefixed("c", CONVERSATION_COLUMNS));
/// The message columns of the stored message in the final select.
pub(crate) static M_COLUMNS: LazyLock<String> = LazyLock::new(|| prefixed("m", MESSAGE_COLUMNS));
/// A NULL per conversation column, then the found message's columns, in the final select.
pub(crate) static DUPLICATE_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    let nulls = CONVERSATION_COLUMNS
        .split(',')
        .map(|_| "NULL, ")
        .collect::<String>();
    format!("{nulls}{}", prefixed("e", MESSAGE_COLUMNS))
});

/// The whole send as one statement (see the module documentation). The
/// message's `conversation_id` and `seq` are not bound: the statement takes
/// them from the upsert.
struct SendStatement<'a>(&'a SendInput);

/// The static identity under which diesel caches the prepared statement.
struct SendStatementId;

impl QueryId for SendStatement<'_> {
    type QueryId = SendStatementId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for SendStatement<'_> {
    /// The conversation (NULL for a duplicate), the message, and whether the
    /// conversation was created.
    type SqlType = (Nullable<conversations::SqlType>, messages::SqlType, Bool);
}

/// Writes a comma-separated list of bind parameters and SQL snippets.
struct List<'p, 'a, 'b> {
    out: &'p mut AstPass<'a, 'b, Pg>,
    empty: bool,
}

impl<'p, 'a, 'b> List<'p, 'a, 'b> {
    /// A list written to `out`.
    fn new(out: &'p mut AstPass<'a, 'b, Pg>) -> Self {
        Self { out, empty: true }
    }

    fn comma(&mut self) {
        if !self.empty {
            self.out.push_sql(", ");
        }
        self.empty = false;
    }

    /// Appends a bind parameter of SQL type `ST`.
    fn bind<ST, U>(&mut self, value: &'b U) -> QueryResult<&mut Self>
    where
        Pg: HasSqlType<ST>,
        U: ToSql<ST, Pg> + ?Sized,
    {
        self.comma();
        self.out.push_bind_param::<ST, U>(value)?;
        Ok(self)
    }

    /// Appends an SQL expression (a column reference, a literal).
    fn sql(&mut self, sql: &str) -> &mut Self {
        self.comma();
        self.out.push_sql(sql);
        self
    }
}

/// Binds the values of one notification row, in [`NOTIFICATION_COLUMNS`] order.
fn push_notification<'b>(out: &mut AstPass<'_, 'b, Pg>, n: &'b NotificationRow) -> QueryResult<()> {
    List::new(out)
        .bind::<Text, _>(&n.id)?
        .bind::<Text, _>(&n.tenant_id)?
        .bind::<Text, _>(&n.user_id)?
        .bind::<Text, _>(&n.title)?
        .bind::<Text, _>(&n.message)?
        .bind::<Text, _>(&n.kind)?
        .bind::<Integer, _>(&n.status_rank)?
        .bind::<Nullable<Text>, _>(&n.related_entity_type)?
        .bind::<Nullable<Text>, _>(&n.related_entity_id)?
        .bind::<Bool, _>(&n.push_sent)?
        .bind::<Nullable<Timestamp>, _>(&n.push_sent_at)?
        .bind::<Timestamp, _>(&n.created_at)?;
    Ok(())
}

/// Binds the values of one audit row, in [`AUDIT_COLUMNS`] order.
fn push_audit<'b>(out: &mut AstPass<'_, 'b, Pg>, a: &'b AuditRow) -> QueryResult<()> {
    List::new(out)
        .bind::<Text, _>(&a.id)?
        .bind::<Text, _>(&a.tenant_id)?
        .bind::<Nullable<Text>, _>(&a.user_id)?
        .bind::<Text, _>(&a.action)?
        .bind::<Nullable<Text>, _>(&a.entity_type)?
        .bind::<Nullable<Text>, _>(&a.entity_id)?
        .bind::<Text, _>(&a.details)?
        .bind::<Nullable<Text>, _>(&a.ip_address)?
        .bind::<Timestamp, _>(&a.created_at)?;
    Ok(())
}

impl QueryFragment<Pg> for SendStatement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let (c, m) = (&self.0.first, &self.0.message);

        // The retry lookup, on the unique (tenant_id, sender_id, client_message_id)
        // index; a NULL client id matches nothing.
        out.push_sql("WITH existing AS (SELECT ");
        out.push_sql(MESSAGE_COLUMNS);
        out.push_sql(" FROM messages WHERE tenant_id = ");
        out.push_bind_param::<Text, _>(&m.tenant_id)?;
        out.push_sql(" AND sender_id = ");
        out.push_bind_param::<Text, _>(&m.sender_id)?;
        out.push_sql(" AND client_message_id = ");
        out.push_bind_param::<Nullable<Text>, _>(&m.client_message_id)?;

        // Create or bump the conversation (row lock until commit).
        out.push_sql("), c AS (INSERT INTO conversations AS cv (");
        out.push_sql(CONVERSATION_COLUMNS);
        out.push_sql(") SELECT ");
        List::new(&mut out)
            .bind::<Text, _>(&c.id)?
            .bind::<Text, _>(&c.tenant_id)?
            .bind::<Text, _>(&c.user_one_id)?
            .bind::<Text, _>(&c.user_two_id)?
            .bind::<Timestamp, _>(&c.created_at)?
            .bind::<Timestamp, _>(&c.updated_at)?
            .bind::<Timestamp, _>(&c.last_message_at)?
            .bind::<BigInt, _>(&c.last_seq)?;
        out.push_sql(
            " WHERE NOT EXISTS (SELECT 1 FROM existing) \
             ON CONFLICT (tenant_id, user_one_id, user_two_id) DO UPDATE SET \
             last_seq = cv.last_seq + 1, \
             last_message_at = GREATEST(cv.last_message_at, EXCLUDED.last_message_at), \
             updated_at = GREATEST(cv.updated_at, EXCLUDED.updated_at) \
             RETURNING ",
        );
        out.push_sql(&CV_COLUMNS);
        out.push_sql(", cv.id = ");
        out.push_bind_param::<Text, _>(&c.id)?;
        out.push_sql(" AS created");

        // The message at the conversation's new seq.
        out.push_sql("), m AS (INSERT INTO messages (");
        out.push_sql(MESSAGE_COLUMNS);
        out.push_sql(") SELECT ");
        List::new(&mut out)
            .bind::<Text, _>(&m.id)?
            .bind::<Text, _>(&m.tenant_id)?
            .sql("c.id")
            .sql("c.last_seq")
            .bind::<Text, _>(&m.sender_id)?
            .bind::<Text, _>(&m.recipient_id)?
            .bind::<Text, _>(&m.content)?
            .bind::<Nullable<Text>, _>(&m.related_entity_type)?
            .bind::<Nullable<Text>, _>(&m.related_entity_id)?
            .bind::<Nullable<Text>, _>(&m.client_message_id)?
            .bind::<Nullable<Timestamp>, _>(&m.read_at)?
            .bind::<Nullable<Timestamp>, _>(&m.delivered_at)?
            .bind::<Nullable<Timestamp>, _>(&m.edited_at)?
            .bind::<Nullable<Timestamp>, _>(&m.deleted_at)?
            .bind::<Timestamp, _>(&m.created_at)?
            .bind::<Timestamp, _>(&m.updated_at)?;
        out.push_sql(" FROM c RETURNING ");
        out.push_sql(MESSAGE_COLUMNS);

        // The recipient's notification.
        out.push_sql("), n AS (INSERT INTO notifications (");
        out.push_sql(NOTIFICATION_COLUMNS);
        out.push_sql(") SELECT ");
        push_notification(&mut out, &self.0.notification)?;
        out.push_sql(" FROM c");

        // conversation.create (only when created), then message.send.
        out.push_sql("), a AS (INSERT INTO messaging_audit_log (");
        out.push_sql(AUDIT_COLUMNS);
        out.push_sql(") SELECT ");
        push_audit(&mut out, &self.0.conversation_audit)?;
        out.push_sql(" FROM c WHERE c.created UNION ALL SELECT ");
        push_audit(&mut out, &self.0.send_audit)?;
        out.push_sql(" FROM c");

        // One row: what was stored, or what was found.
        out.push_sql(") SELECT ");
        out.push_sql(&C_COLUMNS);
        out.push_sql(", ");
        out.push_sql(&M_COLUMNS);
        out.push_sql(", c.created FROM c CROSS JOIN m UNION ALL SELECT ");
        out.push_sql(&DUPLICATE_COLUMNS);
        out.push_sql(", FALSE FROM existing e");
        Ok(())
    }
}

/// One send as one statement: one round trip, all or nothing (see the module
/// documentation).
pub(crate) async fn send_in_one_statement(
    conn: &mut AsyncPgConnection,
    input: &SendInput,
) -> Result<SendRows, TxError> {
    let (conversation, message, created): (Option<ConversationRow>, MessageRow, bool) =
        SendStatement(input).get_result(conn).await?;
    Ok(match conversation {
        Some(conversation) => SendRows::Stored {
            conversation,
            message,
            created,
        },
        None => SendRows::Duplicate(message),
    })
}
