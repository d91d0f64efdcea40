//! [`MemoryStore`]: a complete storage backend in process memory, for embedding
//! services' tests and doc examples. One mutex guards everything, so every call
//! is one transaction; each write validates all its inputs before changing
//! anything, which makes it all or nothing.
//!
//! Data is kept per tenant (`TenantData`), so every lookup starts from the
//! caller's tenant and another tenant's ids are simply absent.
//!
//! - `messages`: the `MessageStore` port: the send path, receipts, edit and
//!   delete, conversation lists and catch-up.
//! - `notifications`: the `NotificationStore` port.
//! - `audit`: the `AuditLog` port.
//! - `directory`: the `Directory` and `FeatureFlags` ports.

mod audit;
mod directory;
mod messages;
mod notifications;

#[cfg(test)]
mod fixtures;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, SubsecRound, Utc};

use afritalk_ports::{
    AuditEntry, AuditId, ClientMessageId, Conversation, ConversationId, DirectoryUser, Message,
    MessageId, Notification, NotificationId, ParticipantPair, StoreError, StoreResult, TenantId,
    UserId,
};

/// In-memory implementation of the storage ports (`MessageStore`,
/// `NotificationStore`, `AuditLog`, `Directory`, `FeatureFlags`).
///
/// Cloning is cheap and every clone shares the same data, so one store can be
/// handed to the service as each of its ports.
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

/// Everything the store holds.
#[derive(Debug)]
struct State {
    tenants: HashMap<TenantId, TenantData>,
    /// Messaging switch of tenants that were set explicitly.
    messaging: HashMap<TenantId, bool>,
    /// Messaging switch of tenants never set.
    messaging_default: bool,
}

/// One tenant's rows.
#[derive(Debug, Default)]
struct TenantData {
    conversations: HashMap<ConversationId, ConversationRow>,
    /// The conversation of each pair of users.
    pairs: HashMap<ParticipantPair, ConversationId>,
    messages: HashMap<MessageId, Message>,
    /// Idempotency keys: (sender, client message id) → the message it stored.
    client_ids: HashMap<(UserId, ClientMessageId), MessageId>,
    notifications: HashMap<NotificationId, Notification>,
    users: HashMap<UserId, DirectoryUser>,
    /// Append-only, in insertion order.
    audit: Vec<AuditEntry>,
}

/// A conversation and its messages in `seq` order (message `i` has `seq == i + 1`).
#[derive(Debug)]
struct ConversationRow {
    conversation: Conversation,
    messages: Vec<MessageId>,
}

impl MemoryStore {
    /// An empty store where messaging is enabled for tenants never set.
    pub fn new() -> Self {
        Self::with_messaging_default(true)
    }

    /// An empty store where messaging is `enabled` for tenants never set.
    pub fn with_messaging_default(enabled: bool) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                tenants: HashMap::new(),
                messaging: HashMap::new(),
                messaging_default: enabled,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Writes validate before they mutate and mutations cannot fail, so a
        // thread that panicked while holding the lock left consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryStore")
            .field("tenants", &state.tenants.len())
            .field("messaging_default", &state.messaging_default)
            .finish_non_exhaustive()
    }
}

impl State {
    /// Whether an audit row of any tenant has this id (unique across tenants,
    /// as the SQL backends' primary key).
    fn audit_id_taken(&self, id: AuditId) -> bool {
        self.tenants
            .values()
            .any(|data| data.audit.iter().any(|row| row.id == id))
    }
}

/// Refuses a row that names another tenant than the call it came with: storing it
/// would put it where the caller's tenant cannot see it, or leak it elsewhere.
fn same_tenant(expected: &TenantId, actual: &TenantId, what: &str) -> StoreResult<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "{what} belongs to another tenant than the operation"
        )))
    }
}

/// An index pointed at a row that does not exist: a bug in this module.
/// `at` to the microsecond, as the SQL backends keep it, so that an embedder's
/// tests see the times production would store.
fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// `entry` as stored: its time to the microsecond.
fn stored_audit(entry: AuditEntry) -> AuditEntry {
    AuditEntry {
        created_at: to_micros(entry.created_at),
        ..entry
    }
}

/// `notification` as stored: its times to the microsecond.
fn stored_notification(notification: Notification) -> Notification {
    Notification {
        created_at: to_micros(notification.created_at),
        push_sent_at: notification.push_sent_at.map(to_micros),
        ..notification
    }
}

fn inconsistent() -> StoreError {
    StoreError::Unavailable("memory store indexes are inconsistent".into())
}
