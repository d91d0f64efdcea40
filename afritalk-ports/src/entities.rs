//! Entities: what is stored and what clients see, following the seed's data
//! model. They serialize in camelCase, which is also the wire format of the
//! REST API and of Socket.IO payloads.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{
    AuditId, ClientMessageId, ConversationId, MessageId, NotificationId, TenantId, UserId,
};
use crate::values::{DisplayName, RelatedEntity, Role};

/// The two users of a 1-to-1 conversation in canonical order (`low < high`),
/// so that A↔B and B↔A name the same conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParticipantPair {
    low: UserId,
    high: UserId,
}

impl ParticipantPair {
    /// Orders two distinct users; `None` when they are the same user.
    pub fn new(a: UserId, b: UserId) -> Option<Self> {
        match a.cmp(&b) {
            std::cmp::Ordering::Less => Some(Self { low: a, high: b }),
            std::cmp::Ordering::Greater => Some(Self { low: b, high: a }),
            std::cmp::Ordering::Equal => None,
        }
    }

    /// The smaller user id (the seed's `userOneId`).
    pub fn low(&self) -> &UserId {
        &self.low
    }

    /// The larger user id (the seed's `userTwoId`).
    pub fn high(&self) -> &UserId {
        &self.high
    }
}

/// A 1-to-1 conversation, unique per tenant and unordered pair of users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    /// Its id.
    pub id: ConversationId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The participant with the smaller id.
    pub user_one_id: UserId,
    /// The participant with the larger id.
    pub user_two_id: UserId,
    /// When the first message created it.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When its latest message was sent (sorts conversation lists).
    pub last_message_at: DateTime<Utc>,
    /// The `seq` of its latest message; the next message gets `last_seq + 1`.
    pub last_seq: i64,
}

impl Conversation {
    /// Whether `user` is one of the two participants.
    pub fn has_participant(&self, user: &UserId) -> bool {
        &self.user_one_id == user || &self.user_two_id == user
    }

    /// The participant who is not `user` (`None` if `user` is not a participant).
    pub fn other_participant(&self, user: &UserId) -> Option<&UserId> {
        if &self.user_one_id == user {
            Some(&self.user_two_id)
        } else if &self.user_two_id == user {
            Some(&self.user_one_id)
        } else {
            None
        }
    }
}

/// A stored message, with its receipts and edit/delete marks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Its id.
    pub id: MessageId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Position in its conversation: 1, 2, 3… without gaps; clients catch up after a `seq`.
    pub seq: i64,
    /// Who wrote it.
    pub sender_id: UserId,
    /// Who it is for.
    pub recipient_id: UserId,
    /// The text; empty once the message is deleted (a tombstone).
    pub content: String,
    /// The business object it points at, if any.
    #[serde(flatten, default)]
    pub related: Option<RelatedEntity>,
    /// The sender's idempotency key, if the client gave one.
    pub client_message_id: Option<ClientMessageId>,
    /// Whether the recipient has read it (`readAt` is set).
    pub read: bool,
    /// When the recipient first read it.
    pub read_at: Option<DateTime<Utc>>,
    /// When a recipient device first received it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the sender last edited it.
    pub edited_at: Option<DateTime<Utc>>,
    /// When the sender deleted it.
    pub deleted_at: Option<DateTime<Utc>>,
    /// When it was stored (server clock); never changes.
    pub created_at: DateTime<Utc>,
    /// When anything about it last changed (receipt, edit, delete); drives catch-up.
    pub updated_at: DateTime<Utc>,
}

impl Message {
    /// Whether the message is a tombstone.
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

/// The kind of an in-app notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    /// A new message.
    Message,
    /// A business alert raised by another AfriGest service.
    Alert,
    /// A system announcement.
    System,
}

impl NotificationKind {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Message => "message",
            NotificationKind::Alert => "alert",
            NotificationKind::System => "system",
        }
    }

    /// Parses the wire and storage name.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw {
            "message" => Ok(NotificationKind::Message),
            "alert" => Ok(NotificationKind::Alert),
            "system" => Ok(NotificationKind::System),
            _ => Err(ValidationError::new(
                "type",
                "must be message, alert or system",
            )),
        }
    }
}

/// Where a notification is in its life: `unread` → `read` → `archived`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationStatus {
    /// Not yet seen.
    Unread,
    /// Seen.
    Read,
    /// Put away by the user.
    Archived,
}

impl NotificationStatus {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Unread => "unread",
            NotificationStatus::Read => "read",
            NotificationStatus::Archived => "archived",
        }
    }

    /// Parses the wire and storage name.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw {
            "unread" => Ok(NotificationStatus::Unread),
            "read" => Ok(NotificationStatus::Read),
            "archived" => Ok(NotificationStatus::Archived),
            _ => Err(ValidationError::new(
                "status",
                "must be unread, read or archived",
            )),
        }
    }
}

/// An in-app notification for one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Its id.
    pub id: NotificationId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Who it is for.
    pub user_id: UserId,
    /// Short headline.
    pub title: String,
    /// Body text.
    pub message: String,
    /// Message, alert or system.
    #[serde(rename = "type")]
    pub kind: NotificationKind,
    /// Unread, read or archived.
    pub status: NotificationStatus,
    /// The business object it points at, if any.
    #[serde(flatten, default)]
    pub related: Option<RelatedEntity>,
    /// Whether a mobile push was sent (always false until the push phase).
    pub push_sent: bool,
    /// When the push was sent.
    pub push_sent_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// What an audit row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AuditAction {
    /// A realtime connection was authenticated.
    WsConnect,
    /// A realtime connection closed.
    WsDisconnect,
    /// A message was stored.
    MessageSend,
    /// A message (or a run of messages) was marked read.
    MessageRead,
    /// A message was edited.
    MessageEdit,
    /// A message was deleted.
    MessageDelete,
    /// A conversation was created by its first message.
    ConversationCreate,
    /// The permission matrix (or another access rule) refused an action.
    ForbiddenAttempt,
    /// A service created an alert or system notification.
    NotificationCreate,
    /// The directory entry of a user was created or changed.
    DirectoryUpsert,
    /// A tenant's messaging feature flag changed.
    FeatureFlagChange,
    /// An operator removed the tenant's audit rows past the retention period.
    AuditPurge,
}

impl AuditAction {
    /// Every action, for listings and parsing.
    pub const ALL: [AuditAction; 12] = [
        AuditAction::WsConnect,
        AuditAction::WsDisconnect,
        AuditAction::MessageSend,
        AuditAction::MessageRead,
        AuditAction::MessageEdit,
        AuditAction::MessageDelete,
        AuditAction::ConversationCreate,
        AuditAction::ForbiddenAttempt,
        AuditAction::NotificationCreate,
        AuditAction::DirectoryUpsert,
        AuditAction::FeatureFlagChange,
        AuditAction::AuditPurge,
    ];

    /// The seed's action name (`ws.connect`, `message.send`, `forbidden_attempt`…).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::WsConnect => "ws.connect",
            AuditAction::WsDisconnect => "ws.disconnect",
            AuditAction::MessageSend => "message.send",
            AuditAction::MessageRead => "message.read",
            AuditAction::MessageEdit => "message.edit",
            AuditAction::MessageDelete => "message.delete",
            AuditAction::ConversationCreate => "conversation.create",
            AuditAction::ForbiddenAttempt => "forbidden_attempt",
            AuditAction::NotificationCreate => "notification.create",
            AuditAction::DirectoryUpsert => "directory.upsert",
            AuditAction::FeatureFlagChange => "tenant.feature",
            AuditAction::AuditPurge => "audit.purge",
        }
    }

    /// Parses an action name.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == raw)
            .ok_or_else(|| ValidationError::new("action", "unknown audit action"))
    }
}

impl TryFrom<String> for AuditAction {
    type Error = ValidationError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<AuditAction> for String {
    fn from(action: AuditAction) -> String {
        action.as_str().to_owned()
    }
}

/// One append-only row of the `MessagingAuditLog`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Its id.
    pub id: AuditId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Who acted, when known.
    pub user_id: Option<UserId>,
    /// What happened.
    pub action: AuditAction,
    /// The kind of object acted on (`message`, `conversation`, `user`…).
    pub entity_type: Option<String>,
    /// The id of the object acted on.
    pub entity_id: Option<String>,
    /// Free-form details (JSON object).
    pub details: serde_json::Value,
    /// The client's IP address, when the action came over the network.
    pub ip_address: Option<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// A purge of the audit trail, as each tenant's trail records it: the rows
/// [`AuditLog::purge_before`](crate::AuditLog::purge_before) removes and the
/// `audit.purge` rows it leaves in their place are one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeReceipt {
    /// The purge's id; each tenant's row takes it with its last four bytes
    /// mixed with the tenant's position among those that lost rows, so one
    /// fresh id serves a purge of any number of tenants. Those bytes must be
    /// random (as in UUID v4 and v7, what [`IdGenerator`](crate::IdGenerator)s
    /// give here): with sequential ids a receipt could take another row's id,
    /// and the purge would then fail whole (`Conflict`), removing nothing.
    pub id: AuditId,
    /// Rows created strictly before this go.
    pub cutoff: DateTime<Utc>,
    /// When the purge ran (the receipts' time).
    pub at: DateTime<Utc>,
}

impl PurgeReceipt {
    /// The `audit.purge` row of the tenant at `position` (from 0, in tenant id
    /// order, among the tenants that lost rows), which lost `rows` rows.
    pub fn entry(&self, position: u32, tenant: &TenantId, rows: u64) -> AuditEntry {
        let mut bytes = *self.id.as_uuid().as_bytes();
        for (byte, mix) in bytes[12..].iter_mut().zip(position.to_be_bytes()) {
            *byte ^= mix;
        }
        AuditEntry {
            id: AuditId::from_uuid(uuid::Uuid::from_bytes(bytes)),
            tenant_id: tenant.clone(),
            user_id: None,
            action: AuditAction::AuditPurge,
            entity_type: None,
            entity_id: None,
            details: serde_json::json!({
                "removedRows": rows,
                "createdBefore": self.cutoff.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            }),
            ip_address: None,
            created_at: self.at,
        }
    }
}

/// A user as AfriTalk knows them inside a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryUser {
    /// Their tenant.
    pub tenant_id: TenantId,
    /// Their id.
    pub user_id: UserId,
    /// Their name as shown to colleagues.
    pub display_name: DisplayName,
    /// Their place in the hierarchy.
    pub role: Role,
    /// Whether they may still send and receive messages.
    pub active: bool,
}

/// The raw presence facts of a user, as kept by the presence port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceRecord {
    /// Whose facts these are.
    pub user_id: UserId,
    /// How many live realtime connections the user has (on all nodes).
    pub connections: u32,
    /// The last moment the user showed activity (connect, ping, send…).
    pub last_seen: DateTime<Utc>,
}

/// A user's presence as shown to others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    /// Connected and active in the last minute.
    Online,
    /// Connected but inactive, or disconnected less than 10 minutes ago.
    Idle,
    /// Not connected and not seen for 10 minutes.
    Offline,
}

/// The answer of the presence snapshot: `{ userId, status, lastSeen }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    /// Whose presence this is.
    pub user_id: UserId,
    /// Online, idle or offline.
    pub status: PresenceStatus,
    /// The last moment the user showed activity.
    pub last_seen: DateTime<Utc>,
}

/// One row of a conversation list: the conversation, its latest message and the
/// caller's unread count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSummary {
    /// The conversation.
    pub conversation: Conversation,
    /// Its latest message (a tombstone if that one was deleted).
    pub last_message: Option<Message>,
    /// How many messages addressed to the caller are unread (deleted ones excluded).
    pub unread_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    #[test]
    fn each_tenant_s_purge_row_has_its_own_id_and_says_what_went() {
        let receipt = PurgeReceipt {
            id: AuditId::from_uuid(uuid::Uuid::from_u128(
                0x0190_0000_0000_7000_8000_0000_0000_0001,
            )),
            cutoff: DateTime::from_timestamp(1_700_000_000, 250_000_000).unwrap(),
            at: DateTime::from_timestamp(1_731_000_000, 0).unwrap(),
        };
        let t = TenantId::parse("acme").unwrap();
        let rows: Vec<AuditEntry> = (0..3).map(|n| receipt.entry(n, &t, 7)).collect();
        assert_eq!(rows[0].id, receipt.id);
        assert_ne!(rows[1].id, rows[0].id);
        assert_ne!(rows[2].id, rows[1].id);
        // Version and variant stay those of the purge's id.
        let uuid = rows[2].id.as_uuid();
        assert_eq!(
            (uuid.get_version_num(), uuid.get_variant()),
            (7, uuid::Variant::RFC4122)
        );
        assert_eq!(
            (
                rows[1].action,
                &rows[1].tenant_id,
                rows[1].user_id.as_ref(),
                rows[1].created_at
            ),
            (AuditAction::AuditPurge, &t, None, receipt.at)
        );
        assert_eq!(
            rows[1].details,
            serde_json::json!({
                "removedRows": 7,
                "createdBefore": "2023-11-14T22:13:20.250000Z",
            })
        );
    }

    #[test]
    fn pair_is_unordered_and_refuses_self() {
        let ab = ParticipantPair::new(user("a"), user("b")).unwrap();
        let ba = ParticipantPair::new(user("b"), user("a")).unwrap();
        assert_eq!(ab, ba);
        assert_eq!(ab.low().as_str(), "a");
        assert!(ParticipantPair::new(user("a"), user("a")).is_none());
    }

    #[test]
    fn audit_actions_round_trip_their_seed_names() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()).unwrap(), action);
        }
        assert_eq!(AuditAction::ForbiddenAttempt.as_str(), "forbidden_attempt");
        assert!(AuditAction::parse("message.sent").is_err());
    }
}
