//! Audit rows on Postgres, grouped like sends.
//!
//! Every realtime connect and disconnect appends an audit row of its own
//! (`ws.connect`, `ws.disconnect`), and the handshake waits for it: the row
//! must be stored before the socket is accepted. Alone, each row is a commit
//! and a WAL flush (an `fdatasync`), which is most of what a connect costs
//! Postgres: with 10,000 clients connecting at once, `perf` put a third of
//! the machine in Postgres, half of it in the kernel under `fdatasync`.
//! Through the batcher (`batcher.rs`) the rows that queue up while another
//! statement is being written share one:
//!
//! ```sql
//! INSERT INTO messaging_audit_log (<columns>)
//! SELECT <columns> FROM jsonb_populate_recordset(NULL::messaging_audit_log, $1::jsonb)
//! ```
//!
//! A lone row goes at once, by the same statement with a batch of one, so a
//! quiet server's connect waits for nothing but its own commit. A batch never
//! holds one id twice (its key); a batch that fails as a whole (a duplicate id
//! already stored) wrote nothing, and its rows are then written one by one,
//! so only the duplicate gets the unique violation.
//!
//! The rows travel as one JSON array bound as text, as the batched sends do:
//! the statement text is the same for any batch size, so diesel prepares it
//! once per connection.

use std::sync::LazyLock;

use afritalk_adapter_sql::TxError;
use afritalk_adapter_sql::rows::AuditRow;
use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::batcher::BatchWrite;
use crate::send::{AUDIT_COLUMNS, prefixed};

/// The statement's text, around its one parameter (the JSON array of rows).
static AUDIT_SQL: LazyLock<(String, String)> = LazyLock::new(|| {
    (
        format!(
            "INSERT INTO messaging_audit_log ({AUDIT_COLUMNS}) SELECT {} \
             FROM jsonb_populate_recordset(NULL::messaging_audit_log, ",
            prefixed("r", AUDIT_COLUMNS)
        ),
        "::jsonb) AS r".to_owned(),
    )
});

/// Audit rows, as the batcher groups them.
pub(crate) struct AuditWrite;

#[async_trait::async_trait]
impl BatchWrite for AuditWrite {
    type Input = AuditRow;
    type Output = ();
    /// The row's id: one row per id in a batch.
    type Key = String;
    /// One writer: a lone row goes at once, and the rows that arrive while it
    /// waits for its commit share the next statement. With 10,000 clients
    /// connecting, Postgres's CPU per connect fell from 265–348 µs (a commit
    /// per row) to 138–173 µs.
    const WRITERS: usize = 1;

    fn keys(row: &AuditRow) -> Vec<String> {
        vec![row.id.clone()]
    }

    async fn write_one(&self, conn: &mut AsyncPgConnection, row: &AuditRow) -> Result<(), TxError> {
        append(conn, std::slice::from_ref(row)).await
    }

    async fn write_many(
        &self,
        conn: &mut AsyncPgConnection,
        rows: &[AuditRow],
    ) -> Result<Vec<()>, TxError> {
        append(conn, rows).await?;
        Ok(vec![(); rows.len()])
    }
}

/// Inserts `rows` (no id twice) in one statement, all or nothing.
async fn append(conn: &mut AsyncPgConnection, rows: &[AuditRow]) -> Result<(), TxError> {
    let rows = serde_json::to_string(rows).map_err(|e| {
        TxError::Store(afritalk_ports::StoreError::Unavailable(format!(
            "could not encode a batch of audit rows: {e}"
        )))
    })?;
    AuditStatement { rows }.execute(conn).await?;
    Ok(())
}

/// The insert of a batch of audit rows (see the module documentation).
struct AuditStatement {
    /// The JSON array of [`AuditRow`]s.
    rows: String,
}

/// The static identity under which diesel caches the prepared statement.
struct AuditStatementId;

impl QueryId for AuditStatement {
    type QueryId = AuditStatementId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Pg> for AuditStatement {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let (head, tail) = &*AUDIT_SQL;
        out.push_sql(head);
        out.push_bind_param::<Text, _>(&self.rows)?;
        out.push_sql(tail);
        Ok(())
    }
}
