//! Builders shared by the store's unit tests.

use afritalk_ports::{
    AuditAction, AuditEntry, AuditId, ClientMessageId, Conversation, ConversationId, Message,
    MessageContent, MessageId, MessageStore, NewMessage, Notification, NotificationId,
    NotificationKind, NotificationStatus, SendOutcome, TenantId, UserId,
};
use chrono::{DateTime, TimeDelta, Utc};
use futures::executor::block_on;
use uuid::Uuid;

use super::MemoryStore;

pub fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

pub fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

/// A fixed instant plus `secs` seconds.
pub fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap() + TimeDelta::seconds(secs)
}

pub fn audit(tenant_id: &TenantId, action: AuditAction, when: DateTime<Utc>) -> AuditEntry {
    AuditEntry {
        id: AuditId::from_uuid(Uuid::now_v7()),
        tenant_id: tenant_id.clone(),
        user_id: None,
        action,
        entity_type: None,
        entity_id: None,
        details: serde_json::json!({}),
        ip_address: None,
        created_at: when,
    }
}

pub fn notification(tenant_id: &TenantId, user_id: &UserId, when: DateTime<Utc>) -> Notification {
    Notification {
        id: NotificationId::from_uuid(Uuid::now_v7()),
        tenant_id: tenant_id.clone(),
        user_id: user_id.clone(),
        title: "New message".into(),
        message: "hello".into(),
        kind: NotificationKind::Message,
        status: NotificationStatus::Unread,
        related: None,
        push_sent: false,
        push_sent_at: None,
        created_at: when,
    }
}

pub fn new_message(
    tenant_id: &TenantId,
    from: &str,
    to: &str,
    text: &str,
    when: DateTime<Utc>,
) -> NewMessage {
    // The conversation row is minted first, as the core does, so that the
    // newest-first audit order (ties by id desc) lists it before the send row.
    let conversation_audit = audit(tenant_id, AuditAction::ConversationCreate, when);
    NewMessage {
        tenant_id: tenant_id.clone(),
        message_id: MessageId::from_uuid(Uuid::now_v7()),
        new_conversation_id: ConversationId::from_uuid(Uuid::now_v7()),
        sender_id: user(from),
        recipient_id: user(to),
        content: MessageContent::parse(text).unwrap(),
        related: None,
        client_message_id: None,
        created_at: when,
        notification: notification(tenant_id, &user(to), when),
        send_audit: audit(tenant_id, AuditAction::MessageSend, when),
        conversation_audit,
    }
}

pub fn with_client_id(mut new: NewMessage, client_id: &str) -> NewMessage {
    new.client_message_id = Some(ClientMessageId::parse(client_id).unwrap());
    new
}

/// Sends and unwraps a `Stored` outcome.
pub fn send(store: &MemoryStore, new: NewMessage) -> (Message, Conversation, bool) {
    match block_on(store.send(new)).unwrap() {
        SendOutcome::Stored {
            message,
            conversation,
            conversation_created,
        } => (message, conversation, conversation_created),
        SendOutcome::Duplicate { message } => panic!("unexpected duplicate {message:?}"),
    }
}
