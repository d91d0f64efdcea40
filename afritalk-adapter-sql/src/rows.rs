//! Row types of the portable schema and their conversions to and from the
//! domain entities of `afritalk-ports`. Rows hold plain text, integers and
//! naive UTC timestamps; conversions to the domain re-validate every value.
//!
//! Rows with `Option` fields insert `None` as a bound NULL
//! (`treat_none_as_default_value = false`), not as `DEFAULT`: no column of
//! either backend's migrations has a default, so the stored value is the same
//! NULL, and the insert's SQL text no longer depends on which fields are
//! `None`, so diesel keeps it prepared (with `DEFAULT` it re-prepares every
//! insert on Postgres, and on SQLite keeps one statement per pattern of `None`s).

use afritalk_ports::{
    AuditAction, AuditEntry, AuditId, ClientMessageId, Conversation, ConversationId, DirectoryUser,
    DisplayName, Message, MessageId, NameKey, NewMessage, Notification, NotificationId,
    NotificationKind, NotificationStatus, RelatedEntity, Role, StoreError, TenantId, UserId,
};
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::error::corrupt;
use crate::schema::{
    conversations, directory_users, messages, messaging_audit_log, notifications, tenant_settings,
};

/// A UTC time as stored: naive UTC, truncated to the microsecond (what both backends keep).
pub fn to_db(at: DateTime<Utc>) -> NaiveDateTime {
    at.trunc_subsecs(6).naive_utc()
}

/// A stored naive UTC time back as a `DateTime<Utc>`.
pub fn from_db(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

fn uuid_of(what: &str, raw: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(raw).map_err(|e| corrupt(what, e))
}

fn tenant_of(raw: String) -> Result<TenantId, StoreError> {
    TenantId::parse(raw).map_err(|e| corrupt("tenant id", e))
}

fn user_of(raw: String) -> Result<UserId, StoreError> {
    UserId::parse(raw).map_err(|e| corrupt("user id", e))
}

fn related_of(
    entity_type: Option<String>,
    entity_id: Option<String>,
) -> Result<Option<RelatedEntity>, StoreError> {
    RelatedEntity::from_parts(entity_type, entity_id).map_err(|e| corrupt("related entity", e))
}

/// Splits an optional related entity into its two nullable columns.
fn related_cols(related: Option<&RelatedEntity>) -> (Option<String>, Option<String>) {
    match related {
        Some(r) => (
            Some(r.entity_type().to_owned()),
            Some(r.entity_id().to_owned()),
        ),
        None => (None, None),
    }
}

/// A row of `conversations`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = conversations)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct ConversationRow {
    /// UUID text.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Smaller user id.
    pub user_one_id: String,
    /// Larger user id.
    pub user_two_id: String,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Last change.
    pub updated_at: NaiveDateTime,
    /// Time of the latest message.
    pub last_message_at: NaiveDateTime,
    /// `seq` of the latest message.
    pub last_seq: i64,
}

impl ConversationRow {
    /// The row a first message creates (with `last_seq = 1`); `None` if sender and
    /// recipient are the same user.
    pub fn first_for(new: &NewMessage) -> Option<Self> {
        let pair =
            afritalk_ports::ParticipantPair::new(new.sender_id.clone(), new.recipient_id.clone())?;
        let at = to_db(new.created_at);
        Some(Self {
            id: new.new_conversation_id.to_string(),
            tenant_id: new.tenant_id.as_str().to_owned(),
            user_one_id: pair.low().as_str().to_owned(),
            user_two_id: pair.high().as_str().to_owned(),
            created_at: at,
            updated_at: at,
            last_message_at: at,
            last_seq: 1,
        })
    }
}

impl TryFrom<ConversationRow> for Conversation {
    type Error = StoreError;
    fn try_from(row: ConversationRow) -> Result<Self, StoreError> {
        Ok(Conversation {
            id: ConversationId::from_uuid(uuid_of("conversation id", &row.id)?),
            tenant_id: tenant_of(row.tenant_id)?,
            user_one_id: user_of(row.user_one_id)?,
            user_two_id: user_of(row.user_two_id)?,
            created_at: from_db(row.created_at),
            updated_at: from_db(row.updated_at),
            last_message_at: from_db(row.last_message_at),
            last_seq: row.last_seq,
        })
    }
}

/// A row of `messages`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = messages)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct MessageRow {
    /// UUID text.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Conversation UUID text.
    pub conversation_id: String,
    /// Position in the conversation.
    pub seq: i64,
    /// Writer.
    pub sender_id: String,
    /// Reader.
    pub recipient_id: String,
    /// Text (empty for a tombstone).
    pub content: String,
    /// Related entity kind.
    pub related_entity_type: Option<String>,
    /// Related entity id.
    pub related_entity_id: Option<String>,
    /// Sender's idempotency key.
    pub client_message_id: Option<String>,
    /// First read time.
    pub read_at: Option<NaiveDateTime>,
    /// First delivery time.
    pub delivered_at: Option<NaiveDateTime>,
    /// Last edit time.
    pub edited_at: Option<NaiveDateTime>,
    /// Deletion time.
    pub deleted_at: Option<NaiveDateTime>,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Last change.
    pub updated_at: NaiveDateTime,
}

impl MessageRow {
    /// The row for a new message placed at `seq` in `conversation_id`.
    pub fn new_at(new: &NewMessage, conversation_id: &str, seq: i64) -> Self {
        let (related_entity_type, related_entity_id) = related_cols(new.related.as_ref());
        let at = to_db(new.created_at);
        Self {
            id: new.message_id.to_string(),
            tenant_id: new.tenant_id.as_str().to_owned(),
            conversation_id: conversation_id.to_owned(),
            seq,
            sender_id: new.sender_id.as_str().to_owned(),
            recipient_id: new.recipient_id.as_str().to_owned(),
            content: new.content.as_str().to_owned(),
            related_entity_type,
            related_entity_id,
            client_message_id: new
                .client_message_id
                .as_ref()
                .map(|c| c.as_str().to_owned()),
            read_at: None,
            delivered_at: None,
            edited_at: None,
            deleted_at: None,
            created_at: at,
            updated_at: at,
        }
    }
}

impl TryFrom<MessageRow> for Message {
    type Error = StoreError;
    fn try_from(row: MessageRow) -> Result<Self, StoreError> {
        let client_message_id = row
            .client_message_id
            .map(ClientMessageId::parse)
            .transpose()
            .map_err(|e| corrupt("client message id", e))?;
        Ok(Message {
            id: MessageId::from_uuid(uuid_of("message id", &row.id)?),
            tenant_id: tenant_of(row.tenant_id)?,
            conversation_id: ConversationId::from_uuid(uuid_of(
                "conversation id",
                &row.conversation_id,
            )?),
            seq: row.seq,
            sender_id: user_of(row.sender_id)?,
            recipient_id: user_of(row.recipient_id)?,
            content: row.content,
            related: related_of(row.related_entity_type, row.related_entity_id)?,
            client_message_id,
            read: row.read_at.is_some(),
            read_at: row.read_at.map(from_db),
            delivered_at: row.delivered_at.map(from_db),
            edited_at: row.edited_at.map(from_db),
            deleted_at: row.deleted_at.map(from_db),
            created_at: from_db(row.created_at),
            updated_at: from_db(row.updated_at),
        })
    }
}

/// What one send found or wrote, as rows (before conversion to the domain).
///
/// A backend's send statement (see the `send_statement` hook of
/// [`sql_store!`](crate::sql_store)) returns this; the shared code turns it into
/// a `SendOutcome`.
#[derive(Debug, Clone)]
pub enum SendRows {
    /// The message was stored now.
    Stored {
        /// The conversation after the send (created or bumped).
        conversation: ConversationRow,
        /// The stored message.
        message: MessageRow,
        /// Whether this send created the conversation.
        created: bool,
    },
    /// A message with the same tenant, sender and client message id was stored
    /// before; nothing was written.
    Duplicate(MessageRow),
}

/// The sort rank stored for a notification status (unread first).
pub fn status_rank(status: NotificationStatus) -> i32 {
    match status {
        NotificationStatus::Unread => 0,
        NotificationStatus::Read => 1,
        NotificationStatus::Archived => 2,
    }
}

fn status_of(rank: i32) -> Result<NotificationStatus, StoreError> {
    match rank {
        0 => Ok(NotificationStatus::Unread),
        1 => Ok(NotificationStatus::Read),
        2 => Ok(NotificationStatus::Archived),
        other => Err(corrupt("notification status", other)),
    }
}

/// A row of `notifications`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = notifications)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct NotificationRow {
    /// UUID text.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Addressee.
    pub user_id: String,
    /// Headline.
    pub title: String,
    /// Body.
    pub message: String,
    /// `message`, `alert` or `system`.
    pub kind: String,
    /// 0 unread, 1 read, 2 archived.
    pub status_rank: i32,
    /// Related entity kind.
    pub related_entity_type: Option<String>,
    /// Related entity id.
    pub related_entity_id: Option<String>,
    /// Whether a push was sent.
    pub push_sent: bool,
    /// When the push was sent.
    pub push_sent_at: Option<NaiveDateTime>,
    /// Creation time.
    pub created_at: NaiveDateTime,
}

impl From<&Notification> for NotificationRow {
    fn from(n: &Notification) -> Self {
        let (related_entity_type, related_entity_id) = related_cols(n.related.as_ref());
        Self {
            id: n.id.to_string(),
            tenant_id: n.tenant_id.as_str().to_owned(),
            user_id: n.user_id.as_str().to_owned(),
            title: n.title.clone(),
            message: n.message.clone(),
            kind: n.kind.as_str().to_owned(),
            status_rank: status_rank(n.status),
            related_entity_type,
            related_entity_id,
            push_sent: n.push_sent,
            push_sent_at: n.push_sent_at.map(to_db),
            created_at: to_db(n.created_at),
        }
    }
}

impl TryFrom<NotificationRow> for Notification {
    type Error = StoreError;
    fn try_from(row: NotificationRow) -> Result<Self, StoreError> {
        Ok(Notification {
            id: NotificationId::from_uuid(uuid_of("notification id", &row.id)?),
            tenant_id: tenant_of(row.tenant_id)?,
            user_id: user_of(row.user_id)?,
            title: row.title,
            message: row.message,
            kind: NotificationKind::parse(&row.kind)
                .map_err(|e| corrupt("notification type", e))?,
            status: status_of(row.status_rank)?,
            related: related_of(row.related_entity_type, row.related_entity_id)?,
            push_sent: row.push_sent,
            push_sent_at: row.push_sent_at.map(from_db),
            created_at: from_db(row.created_at),
        })
    }
}

/// A row of `messaging_audit_log`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = messaging_audit_log)]
#[diesel(treat_none_as_default_value = false)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct AuditRow {
    /// UUID text.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Actor, when known.
    pub user_id: Option<String>,
    /// Seed action name.
    pub action: String,
    /// Kind of object acted on.
    pub entity_type: Option<String>,
    /// Id of object acted on.
    pub entity_id: Option<String>,
    /// JSON text.
    pub details: String,
    /// Client IP.
    pub ip_address: Option<String>,
    /// When it happened.
    pub created_at: NaiveDateTime,
}

impl From<&AuditEntry> for AuditRow {
    fn from(a: &AuditEntry) -> Self {
        Self {
            id: a.id.to_string(),
            tenant_id: a.tenant_id.as_str().to_owned(),
            user_id: a.user_id.as_ref().map(|u| u.as_str().to_owned()),
            action: a.action.as_str().to_owned(),
            entity_type: a.entity_type.clone(),
            entity_id: a.entity_id.clone(),
            details: a.details.to_string(),
            ip_address: a.ip_address.clone(),
            created_at: to_db(a.created_at),
        }
    }
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = StoreError;
    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        Ok(AuditEntry {
            id: AuditId::from_uuid(uuid_of("audit id", &row.id)?),
            tenant_id: tenant_of(row.tenant_id)?,
            user_id: row.user_id.map(user_of).transpose()?,
            action: AuditAction::parse(&row.action).map_err(|e| corrupt("audit action", e))?,
            entity_type: row.entity_type,
            entity_id: row.entity_id,
            details: serde_json::from_str(&row.details).map_err(|e| corrupt("audit details", e))?,
            ip_address: row.ip_address,
            created_at: from_db(row.created_at),
        })
    }
}

/// A row of `directory_users`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = directory_users)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct DirectoryUserRow {
    /// Tenant.
    pub tenant_id: String,
    /// User id.
    pub user_id: String,
    /// Shown name.
    pub display_name: String,
    /// `PDG`, `DG` or `EMPLOYE`.
    pub role: String,
    /// Whether active.
    pub active: bool,
    /// Last change.
    pub updated_at: NaiveDateTime,
    /// The folded name (always set by `new`, so upserts keep a fixed shape).
    pub search_key: Option<String>,
}

impl DirectoryUserRow {
    /// The row for `user`, stamped `at`.
    pub fn new(user: &DirectoryUser, at: DateTime<Utc>) -> Self {
        Self {
            tenant_id: user.tenant_id.as_str().to_owned(),
            user_id: user.user_id.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
            role: user.role.as_str().to_owned(),
            active: user.active,
            updated_at: to_db(at),
            search_key: Some(NameKey::of(&user.display_name).as_str().to_owned()),
        }
    }
}

/// The columns a token refresh may change in `directory_users`: all but
/// `active`.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = directory_users)]
pub struct DirectoryIdentity {
    /// Shown name.
    pub display_name: String,
    /// `PDG`, `DG` or `EMPLOYE`.
    pub role: String,
    /// Last change.
    pub updated_at: NaiveDateTime,
    /// The folded name.
    pub search_key: Option<String>,
}

impl From<&DirectoryUserRow> for DirectoryIdentity {
    fn from(row: &DirectoryUserRow) -> Self {
        Self {
            display_name: row.display_name.clone(),
            role: row.role.clone(),
            updated_at: row.updated_at,
            search_key: row.search_key.clone(),
        }
    }
}

impl TryFrom<DirectoryUserRow> for DirectoryUser {
    type Error = StoreError;
    fn try_from(row: DirectoryUserRow) -> Result<Self, StoreError> {
        Ok(DirectoryUser {
            tenant_id: tenant_of(row.tenant_id)?,
            user_id: user_of(row.user_id)?,
            display_name: DisplayName::parse(&row.display_name)
                .map_err(|e| corrupt("display name", e))?,
            role: Role::parse(&row.role).map_err(|e| corrupt("role", e))?,
            active: row.active,
        })
    }
}

/// A row of `tenant_settings`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tenant_settings)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct TenantSettingRow {
    /// Tenant.
    pub tenant_id: String,
    /// Whether messaging is on.
    pub messaging_enabled: bool,
    /// Last change.
    pub updated_at: NaiveDateTime,
}

/// Converts a list of rows, failing on the first invalid one.
pub fn convert_all<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}
