//! Realtime events and their audiences. The core decides *what* happened and
//! *who* may learn it; a publisher adapter decides how it reaches their sockets.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::entities::{
    Message, Notification, NotificationKind, NotificationStatus, PresenceStatus,
};
use crate::ids::{ConversationId, MessageId, NotificationId, TenantId, UserId};

/// Who receives an event. Every audience names its tenant, so that no event can
/// be routed across tenants by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Every live socket of one user (room `user:{id}`).
    User(TenantId, UserId),
    /// Sockets that subscribed to one conversation (room `conv:{id}`).
    Conversation(TenantId, ConversationId),
    /// Sockets watching one user's presence (room `presence:{id}`), rather than the
    /// whole tenant, so a 10,000-user tenant does not fan every change out to everyone.
    PresenceWatchers(TenantId, UserId),
    /// Every socket of the tenant (room `tenant:{id}`); for tenant-wide announcements.
    Tenant(TenantId),
}

impl Audience {
    /// The tenant the audience lives in.
    pub fn tenant(&self) -> &TenantId {
        match self {
            Audience::User(t, _)
            | Audience::Conversation(t, _)
            | Audience::PresenceWatchers(t, _)
            | Audience::Tenant(t) => t,
        }
    }

    /// The Socket.IO room name inside the tenant's namespace of rooms.
    pub fn room(&self) -> String {
        match self {
            Audience::User(t, u) => format!("{t}/user:{u}"),
            Audience::Conversation(t, c) => format!("{t}/conv:{c}"),
            Audience::PresenceWatchers(t, u) => format!("{t}/presence:{u}"),
            Audience::Tenant(t) => format!("{t}/tenant:{t}"),
        }
    }

    /// Whether `room` is the room of a [`Audience::PresenceWatchers`] audience.
    /// Ids hold no `/` or `:`, so the marker appears in no other room name.
    pub fn is_presence_watchers_room(room: &str) -> bool {
        room.contains("/presence:")
    }
}

/// Payload of `messaging:new`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewMessageEvent {
    /// The conversation the message belongs to.
    pub conversation_id: ConversationId,
    /// The stored message.
    pub message: Message,
}

/// Payload of `messaging:read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadEvent {
    /// The message now read.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// When it was first read.
    pub read_at: DateTime<Utc>,
}

/// Payload of `messaging:delivered` (✓✓).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveredEvent {
    /// The message now delivered.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// When a recipient device first acknowledged it.
    pub delivered_at: DateTime<Utc>,
}

/// Payload of `presence:update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEvent {
    /// Whose presence changed.
    pub user_id: UserId,
    /// The new status.
    pub status: PresenceStatus,
    /// Last activity.
    pub last_seen: DateTime<Utc>,
}

/// Payload of `notify:new`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyEvent {
    /// Message, alert or system.
    #[serde(rename = "type")]
    pub kind: NotificationKind,
    /// The notification.
    pub payload: Notification,
}

/// Payload of `notify:updated`: notifications of the user changed status on
/// one of their devices, so the others update their list and badge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyUpdatedEvent {
    /// The one notification that changed, or `None` when all unread ones
    /// were marked read at once.
    pub notification_id: Option<NotificationId>,
    /// Its new status (`read` for all of them at once).
    pub status: NotificationStatus,
    /// How many of the user's notifications are still unread.
    pub unread_count: u64,
}

/// Payload of `typing:start` / `typing:stop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingEvent {
    /// The conversation being typed in.
    pub conversation_id: ConversationId,
    /// Who is typing.
    pub user_id: UserId,
}

/// A realtime event, named as on the wire (MISSION §4, seed 004).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealtimeEvent {
    /// `messaging:new`
    MessageNew(NewMessageEvent),
    /// `messaging:read`
    MessageRead(ReadEvent),
    /// `messaging:delivered`
    MessageDelivered(DeliveredEvent),
    /// `message:edited` (payload: the edited message)
    MessageEdited(Message),
    /// `message:deleted` (payload: the tombstone)
    MessageDeleted(Message),
    /// `presence:update`
    PresenceUpdate(PresenceEvent),
    /// `notify:new`
    NotifyNew(NotifyEvent),
    /// `notify:updated`
    NotifyUpdated(NotifyUpdatedEvent),
    /// `typing:start`
    TypingStart(TypingEvent),
    /// `typing:stop`
    TypingStop(TypingEvent),
}

impl RealtimeEvent {
    /// The Socket.IO event name.
    pub fn name(&self) -> &'static str {
        match self {
            RealtimeEvent::MessageNew(_) => "messaging:new",
            RealtimeEvent::MessageRead(_) => "messaging:read",
            RealtimeEvent::MessageDelivered(_) => "messaging:delivered",
            RealtimeEvent::MessageEdited(_) => "message:edited",
            RealtimeEvent::MessageDeleted(_) => "message:deleted",
            RealtimeEvent::PresenceUpdate(_) => "presence:update",
            RealtimeEvent::NotifyNew(_) => "notify:new",
            RealtimeEvent::NotifyUpdated(_) => "notify:updated",
            RealtimeEvent::TypingStart(_) => "typing:start",
            RealtimeEvent::TypingStop(_) => "typing:stop",
        }
    }

    /// The JSON payload as sent to clients.
    pub fn payload(&self) -> serde_json::Value {
        // These types only hold strings, numbers, timestamps and ids, which
        // always serialize; a failure would be a programming error.
        serde_json::to_value(self.wire_payload()).unwrap_or(serde_json::Value::Null)
    }

    /// The payload as it serializes on the wire, without building a
    /// [`serde_json::Value`] first: for writers that serialize it straight
    /// into a frame (every delivery does, so the tree would be garbage at once).
    pub fn wire_payload(&self) -> WirePayload<'_> {
        WirePayload(self)
    }
}

/// A [`RealtimeEvent`]'s payload, serialized as clients receive it (see
/// [`RealtimeEvent::wire_payload`]).
#[derive(Debug, Clone, Copy)]
pub struct WirePayload<'a>(&'a RealtimeEvent);

impl Serialize for WirePayload<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            RealtimeEvent::MessageNew(e) => e.serialize(serializer),
            RealtimeEvent::MessageRead(e) => e.serialize(serializer),
            RealtimeEvent::MessageDelivered(e) => e.serialize(serializer),
            RealtimeEvent::MessageEdited(m) | RealtimeEvent::MessageDeleted(m) => {
                m.serialize(serializer)
            }
            RealtimeEvent::PresenceUpdate(e) => e.serialize(serializer),
            RealtimeEvent::NotifyNew(e) => e.serialize(serializer),
            RealtimeEvent::NotifyUpdated(e) => e.serialize(serializer),
            RealtimeEvent::TypingStart(e) | RealtimeEvent::TypingStop(e) => e.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_presence_watcher_rooms_are_recognised_as_such() {
        let t = TenantId::parse("acme").unwrap();
        let u = UserId::parse("presence").unwrap();
        assert!(Audience::is_presence_watchers_room(
            &Audience::PresenceWatchers(t.clone(), u.clone()).room()
        ));
        for other in [Audience::User(t.clone(), u), Audience::Tenant(t)] {
            assert!(!Audience::is_presence_watchers_room(&other.room()));
        }
    }

    #[test]
    fn the_wire_payload_is_the_inner_event_untagged_in_camel_case() {
        let typing = TypingEvent {
            conversation_id: ConversationId::parse("0192f0c4-2d8e-7c3a-9b1e-5f2a6d7e8f90").unwrap(),
            user_id: UserId::parse("awa").unwrap(),
        };
        let expected = serde_json::json!({
            "conversationId": "0192f0c4-2d8e-7c3a-9b1e-5f2a6d7e8f90",
            "userId": "awa",
        });
        for event in [
            RealtimeEvent::TypingStart(typing.clone()),
            RealtimeEvent::TypingStop(typing),
        ] {
            let written = serde_json::to_string(&event.wire_payload()).unwrap();
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&written).unwrap(),
                expected
            );
            assert_eq!(event.payload(), expected);
        }
    }
}
