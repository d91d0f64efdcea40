//! Builders for the values the cases store: fresh ids, a fixed UTC time line,
//! and complete `NewMessage`s with their notification and audit rows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use afritalk_ports::{
    AuditAction, AuditEntry, AuditId, ClientMessageId, ConversationId, DirectoryUser, DisplayName,
    MessageContent, MessageId, NewMessage, Notification, NotificationId, NotificationKind,
    NotificationStatus, ParticipantPair, RelatedEntity, Role, TenantId, UserId,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

/// A tenant id.
pub fn tenant(raw: &str) -> TenantId {
    TenantId::parse(raw).unwrap()
}

/// A user id.
pub fn user(raw: &str) -> UserId {
    UserId::parse(raw).unwrap()
}

/// The canonical pair of two users.
pub fn pair(a: &UserId, b: &UserId) -> ParticipantPair {
    ParticipantPair::new(a.clone(), b.clone()).unwrap()
}

/// A fixed instant with microseconds, so round trips are checked to the microsecond.
pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 14, 9, 26, 53).unwrap() + Duration::microseconds(589_793)
}

/// `base_time()` plus `ms` milliseconds.
pub fn at(ms: i64) -> DateTime<Utc> {
    base_time() + Duration::milliseconds(ms)
}

/// A fresh message id.
pub fn message_id() -> MessageId {
    MessageId::from_uuid(Uuid::new_v4())
}

/// A fresh notification id.
pub fn notification_id() -> NotificationId {
    NotificationId::from_uuid(Uuid::new_v4())
}

/// An audit row of `action` by `user` at `when`.
pub fn audit(
    tenant: &TenantId,
    user: &UserId,
    action: AuditAction,
    when: DateTime<Utc>,
) -> AuditEntry {
    AuditEntry {
        id: AuditId::from_uuid(Uuid::new_v4()),
        tenant_id: tenant.clone(),
        user_id: Some(user.clone()),
        action,
        entity_type: Some("message".into()),
        entity_id: Some(Uuid::new_v4().to_string()),
        details: serde_json::json!({ "k": "v" }),
        ip_address: Some("203.0.113.7".into()),
        created_at: when,
    }
}

/// The `notification.create` audit row stored with `n`.
pub fn created(n: &Notification) -> AuditEntry {
    AuditEntry {
        entity_type: Some("notification".into()),
        entity_id: Some(n.id.to_string()),
        ..audit(
            &n.tenant_id,
            &n.user_id,
            AuditAction::NotificationCreate,
            n.created_at,
        )
    }
}

/// An unread notification for `user` created at `when`.
pub fn notification(
    tenant: &TenantId,
    user: &UserId,
    kind: NotificationKind,
    when: DateTime<Utc>,
) -> Notification {
    Notification {
        id: notification_id(),
        tenant_id: tenant.clone(),
        user_id: user.clone(),
        title: "Nouveau message".into(),
        message: "Bonjour".into(),
        kind,
        status: NotificationStatus::Unread,
        related: None,
        push_sent: false,
        push_sent_at: None,
        created_at: when,
    }
}

/// A complete send of `content` from `from` to `to` at `when`, with fresh ids
/// and the message's notification as the service makes it.
pub fn new_message(
    tenant: &TenantId,
    from: &UserId,
    to: &UserId,
    content: &str,
    when: DateTime<Utc>,
) -> NewMessage {
    let message_id = message_id();
    let mut send_audit = audit(tenant, from, AuditAction::MessageSend, when);
    send_audit.entity_id = Some(message_id.to_string());
    let mut conversation_audit = audit(tenant, from, AuditAction::ConversationCreate, when);
    conversation_audit.entity_type = Some("conversation".into());
    NewMessage {
        tenant_id: tenant.clone(),
        message_id,
        new_conversation_id: ConversationId::from_uuid(Uuid::new_v4()),
        sender_id: from.clone(),
        recipient_id: to.clone(),
        content: MessageContent::parse(content).unwrap(),
        related: None,
        client_message_id: None,
        created_at: when,
        notification: Notification {
            message: MessageContent::parse(content)
                .unwrap()
                .notification_preview(),
            related: Some(RelatedEntity::new("message", message_id.to_string()).unwrap()),
            ..notification(tenant, to, NotificationKind::Message, when)
        },
        send_audit,
        conversation_audit,
    }
}

/// The same send with a client message id.
pub fn with_client_id(mut new: NewMessage, client_id: &str) -> NewMessage {
    new.client_message_id = Some(ClientMessageId::parse(client_id).unwrap());
    new
}

/// The same send referencing a business entity.
pub fn with_related(mut new: NewMessage, kind: &str, id: &str) -> NewMessage {
    new.related = Some(RelatedEntity::new(kind, id).unwrap());
    new
}

/// A directory entry.
pub fn directory_user(tenant: &TenantId, id: &str, name: &str, role: Role) -> DirectoryUser {
    DirectoryUser {
        tenant_id: tenant.clone(),
        user_id: user(id),
        display_name: DisplayName::parse(name).unwrap(),
        role,
        active: true,
    }
}
