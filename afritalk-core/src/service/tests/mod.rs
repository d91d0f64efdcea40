//! Service tests against mockall mocks of every port. A mock with no expectation
//! panics when called, so each test also proves what the service did NOT touch.

mod admin;
mod directory;
mod messages;
mod presence;
mod reading;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use afritalk_ports::*;
use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::{MessagingService, Ports};
use crate::actor::Actor;

/// The fixed "now" of every test.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_763_700_000_000).unwrap()
}

pub fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

pub fn uid(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

pub fn staff(id: &str, role: Role) -> Actor {
    Actor::staff(tenant(), uid(id), role).with_ip("10.0.0.7")
}

pub fn dir_user(id: &str, role: Role, active: bool) -> DirectoryUser {
    DirectoryUser {
        tenant_id: tenant(),
        user_id: uid(id),
        display_name: DisplayName::parse(format!("User {id}")).unwrap(),
        role,
        active,
    }
}

/// A stored message from `from` to `to`, created `age` before now.
pub fn message(from: &str, to: &str, seq: i64, age: TimeDelta) -> Message {
    let created = now() - age;
    Message {
        id: MessageId::from_uuid(Uuid::from_u128(0xABC0 + seq as u128)),
        tenant_id: tenant(),
        conversation_id: conversation_id(),
        seq,
        sender_id: uid(from),
        recipient_id: uid(to),
        content: "bonjour".into(),
        related: None,
        client_message_id: None,
        read: false,
        read_at: None,
        delivered_at: None,
        edited_at: None,
        deleted_at: None,
        created_at: created,
        updated_at: created,
    }
}

pub fn conversation_id() -> ConversationId {
    ConversationId::from_uuid(Uuid::from_u128(0xC0))
}

pub fn conversation(a: &str, b: &str, last_seq: i64) -> Conversation {
    let pair = ParticipantPair::new(uid(a), uid(b)).unwrap();
    Conversation {
        id: conversation_id(),
        tenant_id: tenant(),
        user_one_id: pair.low().clone(),
        user_two_id: pair.high().clone(),
        created_at: now() - TimeDelta::hours(1),
        updated_at: now(),
        last_message_at: now(),
        last_seq,
    }
}

/// Mocks with the common defaults (messaging enabled, rates allowed, fixed clock,
/// counting ids, a directory from `users`, recording audit log and publisher);
/// each test adds the expectations of its own use case.
pub struct Harness {
    pub messages: MockMessageStore,
    pub notifications: MockNotificationStore,
    pub audit: MockAuditLog,
    pub directory: MockDirectory,
    pub presence: MockPresenceTracker,
    pub events: MockEventPublisher,
    pub rate_limiter: MockRateLimiter,
    pub features: MockFeatureFlags,
    pub audit_rows: Arc<Mutex<Vec<AuditEntry>>>,
    pub published: Arc<Mutex<Vec<(Audience, RealtimeEvent)>>>,
}

/// A touch of a connected user who stays online.
pub fn still_online(user: &UserId, at: DateTime<Utc>) -> PresenceChange {
    let record = PresenceRecord {
        user_id: user.clone(),
        connections: 1,
        last_seen: at,
    };
    PresenceChange {
        before: Some(record.clone()),
        after: record,
    }
}

impl Harness {
    pub fn new(users: Vec<DirectoryUser>) -> Self {
        let mut h = Harness {
            messages: MockMessageStore::new(),
            notifications: MockNotificationStore::new(),
            audit: MockAuditLog::new(),
            directory: MockDirectory::new(),
            presence: MockPresenceTracker::new(),
            events: MockEventPublisher::new(),
            rate_limiter: MockRateLimiter::new(),
            features: MockFeatureFlags::new(),
            audit_rows: Arc::default(),
            published: Arc::default(),
        };
        h.features
            .expect_messaging_enabled()
            .returning(|_| Ok(true));
        h.rate_limiter
            .expect_check()
            .returning(|_, _, _| Ok(RateDecision::Allowed));
        let rows = h.audit_rows.clone();
        h.audit.expect_append().returning(move |entry| {
            rows.lock().unwrap().push(entry);
            Ok(())
        });
        let published = h.published.clone();
        let published_all = published.clone();
        h.events.expect_publish().returning(move |audience, event| {
            published.lock().unwrap().push((audience, event));
            Ok(())
        });
        h.events.expect_publish_all().returning(move |events| {
            published_all.lock().unwrap().extend(events);
            Ok(())
        });
        let by_id: HashMap<(TenantId, UserId), DirectoryUser> = users
            .into_iter()
            .map(|u| ((u.tenant_id.clone(), u.user_id.clone()), u))
            .collect();
        let lookup = by_id.clone();
        h.directory
            .expect_user()
            .returning(move |t, u| Ok(lookup.get(&(t.clone(), u.clone())).cloned()));
        h.directory.expect_users().returning(move |t, ids| {
            Ok(ids
                .iter()
                .filter_map(|u| by_id.get(&(t.clone(), u.clone())).cloned())
                .collect())
        });
        h
    }

    /// Expects `user`'s notification of message `id`, and only it, to be
    /// marked read once (one changed), after which `unread` are left.
    pub fn expect_notification_read(&mut self, user: &'static str, id: MessageId, unread: u64) {
        self.notifications
            .expect_mark_read_for_messages()
            .withf(move |_, u, ids| u.as_str() == user && ids == [id])
            .times(1)
            .returning(|_, _, _| Ok(1));
        self.notifications
            .expect_unread_count()
            .withf(move |_, u| u.as_str() == user)
            .returning(move |_, _| Ok(unread));
    }

    /// The store answers `mark_delivered` for `stored` as a store would:
    /// `NotRecipient` for anyone but the recipient, `Delivered` the first time
    /// (moving `updatedAt`) and `AlreadyDelivered` after; `NotFound` for other
    /// ids. Returns the ids marked, in call order.
    pub fn store_deliveries(&mut self, stored: Vec<Message>) -> Arc<Mutex<Vec<MessageId>>> {
        let state = Arc::new(Mutex::new(stored));
        let marked = Arc::new(Mutex::new(Vec::new()));
        let record = marked.clone();
        self.messages
            .expect_mark_delivered()
            .returning(move |_, id, recipient, at| {
                let mut state = state.lock().unwrap();
                let m = state
                    .iter_mut()
                    .find(|m| m.id == id)
                    .ok_or(StoreError::NotFound)?;
                if &m.recipient_id != recipient {
                    return Ok(DeliveryOutcome::NotRecipient(m.clone()));
                }
                if m.delivered_at.is_some() {
                    return Ok(DeliveryOutcome::AlreadyDelivered(m.clone()));
                }
                m.delivered_at = Some(at);
                m.updated_at = at;
                record.lock().unwrap().push(id);
                Ok(DeliveryOutcome::Delivered(m.clone()))
            });
        marked
    }

    /// Presence accepts activity (sends touch presence); no status change.
    pub fn quiet_presence(mut self) -> Self {
        self.presence
            .expect_touch()
            .returning(|_, u, at| Ok(still_online(u, at)));
        self
    }

    pub fn build(mut self) -> Fixture {
        // Last, so that a test's own expectations match first (mockall tries
        // them in the order set): the confirmation read after a presence
        // publish finds nothing unless a test says otherwise.
        self.presence.expect_records().returning(|_, _| Ok(vec![]));
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        let counter = Arc::new(Mutex::new(0u128));
        let mut ids = MockIdGenerator::new();
        ids.expect_new_id().returning(move || {
            let mut n = counter.lock().unwrap();
            *n += 1;
            Uuid::from_u128(*n)
        });
        let service = MessagingService::new(Ports {
            messages: Arc::new(self.messages),
            notifications: Arc::new(self.notifications),
            audit: Arc::new(self.audit),
            directory: Arc::new(self.directory),
            presence: Arc::new(self.presence),
            events: Arc::new(self.events),
            rate_limiter: Arc::new(self.rate_limiter),
            features: Arc::new(self.features),
            clock: Arc::new(clock),
            ids: Arc::new(ids),
        });
        Fixture {
            service,
            audit_rows: self.audit_rows,
            published: self.published,
        }
    }
}

/// A built service plus what it recorded.
pub struct Fixture {
    pub service: MessagingService,
    pub audit_rows: Arc<Mutex<Vec<AuditEntry>>>,
    pub published: Arc<Mutex<Vec<(Audience, RealtimeEvent)>>>,
}

impl Fixture {
    pub fn actions(&self) -> Vec<AuditAction> {
        self.audit_rows
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.action)
            .collect()
    }

    /// `(room, event name)` of everything published, in order.
    /// Each audit row's action and `details.operation`, in order.
    pub fn audited_operations(&self) -> Vec<(AuditAction, serde_json::Value)> {
        self.audit_rows
            .lock()
            .unwrap()
            .iter()
            .map(|row| (row.action, row.details["operation"].clone()))
            .collect()
    }

    pub fn deliveries(&self) -> Vec<(String, &'static str)> {
        self.published
            .lock()
            .unwrap()
            .iter()
            .map(|(a, e)| (a.room(), e.name()))
            .collect()
    }
}

/// Runs a future to completion (the core has no runtime of its own).
pub fn run<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}
