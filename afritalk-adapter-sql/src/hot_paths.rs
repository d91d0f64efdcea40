//! Each backend's own way of writing the two writes every message makes, plugged
//! into [`sql_store!`](crate::sql_store): the send and the first delivery (✓✓),
//! and the audit row every realtime connect and disconnect appends.
//!
//! These are the writes whose cost decides how many messages a node carries,
//! and each backend has its own cheapest way to do them: the Postgres adapter
//! writes a send as one statement and groups concurrent sends, concurrent
//! deliveries, or concurrent audit rows into one statement each; the SQLite
//! adapter runs each write whole on its connection's blocking thread instead
//! of handing every statement over separately. The macro calls them while the
//! rest of those port methods (the self-send refusal, the settlement of a
//! unique violation, the explanation of an ack that changed nothing, the
//! conversions) stays shared.

use afritalk_ports::NewMessage;
use chrono::NaiveDateTime;

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

/// One first delivery (✓✓) to write: the message, its recipient, and when.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryInput {
    /// The message's tenant.
    pub tenant_id: String,
    /// The message.
    pub id: String,
    /// Who acknowledged it: only its recipient delivers it.
    pub recipient_id: String,
    /// When it was delivered (stored as is).
    pub at: NaiveDateTime,
}

/// The in-process lock a store's every write holds where the backend has a
/// single writer (SQLite); `None` where writes may run concurrently.
pub type WriteLock = std::sync::Arc<tokio::sync::Mutex<()>>;

/// A backend's writes of the hot paths (the `hot_paths` of
/// [`sql_store!`](crate::sql_store)).
#[async_trait::async_trait]
pub trait HotPaths<Pool>: Clone + Send + Sync + Sized + 'static {
    /// The hot paths of a store over `pool` (the store's connection pool).
    /// Where the store serializes its writes, `writer` is its lock: the port
    /// methods do not hold it around these writes, so each of them MUST hold
    /// it while it writes (which lets a backend write several queued writes
    /// under one hold of it).
    fn new(pool: Pool, writer: Option<WriteLock>) -> Self;

    /// Writes one send (idempotency lookup included), atomically. It MUST
    /// write nothing when it returns `SendRows::Duplicate` or an error, and
    /// report a unique violation as `TxError::Db(UniqueViolation)`: the shared
    /// code then looks the client message id up again, which settles racing
    /// retries.
    async fn send(&self, input: SendInput) -> Result<SendRows, TxError>;

    /// Sets `delivered_at` (and `updated_at`) of the message if `recipient_id`
    /// is its recipient and it was not delivered yet, and returns the updated
    /// row; `None` when that changed nothing (the shared code then reads the
    /// row to say why).
    async fn first_delivery(&self, input: DeliveryInput) -> Result<Option<MessageRow>, TxError>;

    /// Appends one audit row, durably (committed before it returns), and
    /// reports a row whose id is already stored as
    /// `TxError::Db(UniqueViolation)`, having written nothing.
    async fn audit(&self, row: AuditRow) -> Result<(), TxError>;
}
