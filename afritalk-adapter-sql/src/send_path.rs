//! A backend's own way of writing a send, plugged into [`sql_store!`](crate::sql_store).
//!
//! The portable send is a lookup followed by one transaction of portable
//! statements, on a connection of its own. A backend may do better (the
//! Postgres adapter writes a send as one statement, and many concurrent sends
//! as one statement too), so the macro lets it replace that write while the
//! rest of `MessageStore::send` (the self-send refusal, the settlement of a
//! unique violation, the conversion to `SendOutcome`) stays shared.

use afritalk_ports::NewMessage;

use crate::TxError;
use crate::rows::{AuditRow, ConversationRow, MessageRow, NotificationRow, SendRows};

/// The rows one send writes, owned, as a backend's send path receives them
/// (serializable: a backend may ship several to the database as JSON, field
/// names being column names).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SendInput {
    /// The conversation a first message creates (`last_seq = 1`); a later
    /// message bumps the stored one instead.
    pub first: ConversationRow,
    /// The message; its `conversation_id` and `seq` are the stored
    /// conversation's, decided by the write.
    pub message: MessageRow,
    /// The recipient's notification.
    pub notification: NotificationRow,
    /// The `message.send` audit row.
    pub send_audit: AuditRow,
    /// The `conversation.create` audit row, written only when the send
    /// creates the conversation.
    pub conversation_audit: AuditRow,
}

impl SendInput {
    /// The rows of `new`, given the conversation a first message would create.
    pub fn new(new: &NewMessage, first: ConversationRow) -> Self {
        let message = MessageRow::new_at(new, &first.id, first.last_seq);
        Self {
            message,
            notification: NotificationRow::from(&new.notification),
            send_audit: AuditRow::from(&new.send_audit),
            conversation_audit: AuditRow::from(&new.conversation_audit),
            first,
        }
    }
}

/// A backend's write of `MessageStore::send` (the `send_path` of
/// [`sql_store!`](crate::sql_store)).
///
/// It performs the whole send (idempotency lookup included) atomically. It
/// MUST write nothing when it returns `SendRows::Duplicate` or an error, and
/// report a unique violation as `TxError::Db(UniqueViolation)`: the shared code
/// then looks the client message id up again, which settles racing retries.
#[async_trait::async_trait]
pub trait SendPath<Pool>: Clone + Send + Sync + Sized + 'static {
    /// The send path of a store over `pool` (the store's connection pool).
    fn new(pool: Pool) -> Self;

    /// Writes one send.
    async fn send(&self, input: SendInput) -> Result<SendRows, TxError>;
}
