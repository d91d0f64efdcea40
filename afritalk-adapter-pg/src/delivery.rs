//! First deliveries (✓✓) on Postgres, grouped like sends.
//!
//! Every message is acknowledged by its recipient's socket, so under load
//! there are as many ✓✓ updates as sends, each with its own commit. Through
//! the batcher (`batcher.rs`) the acknowledgements that queue up while others
//! are written share one statement:
//!
//! ```sql
//! UPDATE messages AS m SET delivered_at = v.at, updated_at = v.at
//! FROM unnest($tenants, $ids, $recipients, $times) AS v(tenant_id, id, recipient_id, at)
//! WHERE m.id = ANY($ids) AND m.id = v.id AND m.tenant_id = v.tenant_id
//!   AND m.recipient_id = v.recipient_id AND m.delivered_at IS NULL
//! RETURNING <message>
//! ```
//!
//! which is, per acknowledgement, the portable guarded update: only the
//! recipient delivers, and only the first time. A lone acknowledgement runs
//! the same statement with arrays of one. `m.id = ANY($ids)` states the
//! primary-key lookup outright, so the planner probes the index rather than
//! joining the batch (which it guesses at 100 rows) against a scan of
//! `messages`. A batch never holds one message twice (its key), so each
//! returned row answers exactly one acknowledgement; an acknowledgement
//! without a row changed nothing, and the shared code reads the message to say
//! why.
//!
//! The arrays are bound as arrays: the text is the same for any batch size, so
//! diesel prepares it once per connection.

use std::collections::HashMap;

use afritalk_adapter_sql::TxError;
use afritalk_adapter_sql::hot_paths::DeliveryInput;
use afritalk_adapter_sql::rows::MessageRow;
use afritalk_adapter_sql::schema::messages;
use chrono::NaiveDateTime;
use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, Text, Timestamp};
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
    let statement = DeliveryStatement {
        tenants: inputs.iter().map(|i| i.tenant_id.clone()).collect(),
        ids: inputs.iter().map(|i| i.id.clone()).collect(),
        recipients: inputs.iter().map(|i| i.recipient_id.clone()).collect(),
        times: inputs.iter().map(|i| i.at).collect(),
    };
    let updated: Vec<MessageRow> = statement.load(conn).await?;
    let mut by_id: HashMap<String, MessageRow> = updated
        .into_iter()
        .map(|row| (row.id.clone(), row))
        .collect();
    Ok(inputs.iter().map(|input| by_id.remove(&input.id)).collect())
}

/// The guarded update of a batch of first deliveries (see the module documentation).
struct DeliveryStatement {
    tenants: Vec<String>,
    ids: Vec<String>,
    recipients: Vec<String>,
    times: Vec<NaiveDateTime>,
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
            "UPDATE messages AS m SET delivered_at = v.at, updated_at = v.at FROM unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.tenants)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.recipients)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Timestamp>, _>(&self.times)?;
        out.push_sql(") AS v(tenant_id, id, recipient_id, at) WHERE m.id = ANY(");
        out.push_bind_param::<Array<Text>, _>(&self.ids)?;
        out.push_sql(
            ") AND m.id = v.id AND m.tenant_id = v.tenant_id \
             AND m.recipient_id = v.recipient_id AND m.delivered_at IS NULL RETURNING ",
        );
        out.push_sql(&M_COLUMNS);
        Ok(())
    }
}
