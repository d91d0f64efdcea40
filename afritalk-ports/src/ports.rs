//! The driven ports: what the core needs from the outside world. Each method's
//! doc states what an adapter MUST do; the contract suites hold adapters to
//! exactly those sentences. Every method that takes a `TenantId` MUST act only
//! on that tenant's rows and treat another tenant's ids as absent.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::entities::{
    AuditAction, AuditEntry, Conversation, ConversationSummary, DirectoryUser, Message,
    Notification, NotificationStatus, ParticipantPair, PresenceRecord, PurgeReceipt,
};
use crate::error::StoreError;
use crate::events::{Audience, RealtimeEvent};
use crate::ids::{
    AuditId, ClientMessageId, ConnectionId, ConversationId, MessageId, NotificationId, TenantId,
    UserId,
};
use crate::search::DirectoryQuery;
use crate::values::{MessageContent, PageSize, RelatedEntity};

/// Short alias for port results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the store records, in one transaction, when a message is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Id for the new message.
    pub message_id: MessageId,
    /// Id for the conversation, used only if the pair has none yet.
    pub new_conversation_id: ConversationId,
    /// The writer.
    pub sender_id: UserId,
    /// The reader.
    pub recipient_id: UserId,
    /// The validated text.
    pub content: MessageContent,
    /// The business object referenced, if any.
    pub related: Option<RelatedEntity>,
    /// The sender's idempotency key, if any.
    pub client_message_id: Option<ClientMessageId>,
    /// Creation time (server clock).
    pub created_at: DateTime<Utc>,
    /// The recipient's `message` notification, stored with the message: created at
    /// `created_at`, related to (`message`, `message_id`). Edits and deletes find
    /// it by those facts to keep its text in step with the message.
    pub notification: Notification,
    /// The `message.send` audit row.
    pub send_audit: AuditEntry,
    /// The `conversation.create` audit row, stored only if the conversation is created.
    pub conversation_audit: AuditEntry,
}

/// What the store did with a [`NewMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The message was stored now.
    Stored {
        /// The stored message, with its `seq`.
        message: Message,
        /// Its conversation after the send.
        conversation: Conversation,
        /// Whether this send created the conversation.
        conversation_created: bool,
    },
    /// An earlier send with the same sender and `clientMessageId` exists; nothing was written.
    Duplicate {
        /// The message stored by the earlier send.
        message: Message,
    },
}

/// What [`MessageStore::mark_delivered`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// `delivered_at` was set now; the message as stored.
    Delivered(Message),
    /// The message was delivered before: nothing changed, it keeps its first time.
    AlreadyDelivered(Message),
    /// The message is addressed to someone else: nothing changed.
    NotRecipient(Message),
}

impl DeliveryOutcome {
    /// The message as stored after the call.
    pub fn message(&self) -> &Message {
        match self {
            Self::Delivered(m) | Self::AlreadyDelivered(m) | Self::NotRecipient(m) => m,
        }
    }

    /// Takes the message as stored after the call.
    pub fn into_message(self) -> Message {
        match self {
            Self::Delivered(m) | Self::AlreadyDelivered(m) | Self::NotRecipient(m) => m,
        }
    }
}

/// Position in a conversation list (ordered by `lastMessageAt` desc, then id desc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationCursor {
    /// `lastMessageAt` of the last row of the previous page.
    pub last_message_at: DateTime<Utc>,
    /// Id of the last row of the previous page.
    pub id: ConversationId,
}

/// Position in the stream of message changes (ordered by `updatedAt`, then id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeCursor {
    /// `updatedAt` of the last change already seen.
    pub updated_at: DateTime<Utc>,
    /// Id of the last message already seen at that instant (`None`: none yet).
    pub id: Option<MessageId>,
}

/// Messages and conversations, with the atomic send path.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Records a message in one transaction: creates the pair's conversation if
    /// absent (then also stores `conversation_audit`), assigns `seq = last_seq + 1`,
    /// inserts the message, `notification` and `send_audit`, and updates the
    /// conversation's `last_seq`, `last_message_at` and `updated_at` (the two times
    /// MUST NOT go back: a send stamped earlier may be stored after a later one).
    ///
    /// MUST be all or nothing. MUST return `Duplicate` with the stored message and write
    /// nothing when the same tenant + sender + `client_message_id` was stored before,
    /// also when two such sends race. MUST give `seq` values without gaps or
    /// duplicates under concurrent sends to one conversation. MUST return
    /// `Unavailable` when the backend fails.
    async fn send(&self, new: NewMessage) -> StoreResult<SendOutcome>;

    /// The conversation of a pair, or `None` if they never exchanged a message.
    async fn conversation_between(
        &self,
        tenant: &TenantId,
        pair: &ParticipantPair,
    ) -> StoreResult<Option<Conversation>>;

    /// A conversation by id, or `None` if absent in this tenant.
    async fn conversation(
        &self,
        tenant: &TenantId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>>;

    /// Whether `user` has written at least one message (deleted ones count) in the conversation.
    async fn has_written(
        &self,
        tenant: &TenantId,
        conversation: ConversationId,
        user: &UserId,
    ) -> StoreResult<bool>;

    /// A message by id, or `None` if absent in this tenant.
    async fn message(&self, tenant: &TenantId, id: MessageId) -> StoreResult<Option<Message>>;

    /// Replaces a message's content and sets `edited_at` and `updated_at`, storing
    /// `audit` and setting the text of the message's notification (see
    /// [`NewMessage::notification`]) to `content.notification_preview()` in the same
    /// transaction. MUST return `NotFound` if the message is absent and `Conflict`
    /// (changing nothing) if it is deleted.
    async fn edit(
        &self,
        tenant: &TenantId,
        id: MessageId,
        content: MessageContent,
        edited_at: DateTime<Utc>,
        audit: AuditEntry,
    ) -> StoreResult<Message>;

    /// Turns a message into a tombstone: content erased, `deleted_at` and `updated_at`
    /// set, the text of the message's notification erased too (its title and status
    /// stay), `audit` stored, all in one transaction. MUST return `NotFound` if absent
    /// and `Conflict` (changing nothing) if already deleted.
    async fn delete(
        &self,
        tenant: &TenantId,
        id: MessageId,
        deleted_at: DateTime<Utc>,
        audit: AuditEntry,
    ) -> StoreResult<Message>;

    /// Records the first delivery of a message to `recipient`: when the message is
    /// addressed to `recipient` and has no `delivered_at`, sets `delivered_at` and
    /// `updated_at` to `at` and returns `Delivered` with the stored message. This is
    /// the per-message hot path: that common case SHOULD cost one statement (the
    /// recipient check and the write together).
    ///
    /// MUST return `NotFound` if the message is absent, `NotRecipient` (changing
    /// nothing) if `recipient` is not its recipient (checked first), and
    /// `AlreadyDelivered` (changing nothing: the first time stays) if it was
    /// delivered before. Of concurrent calls for one message, exactly one MUST
    /// return `Delivered`.
    async fn mark_delivered(
        &self,
        tenant: &TenantId,
        id: MessageId,
        recipient: &UserId,
        at: DateTime<Utc>,
    ) -> StoreResult<DeliveryOutcome>;

    /// Marks unread, non-deleted messages addressed to `reader` in the conversation with
    /// `from_seq <= seq <= to_seq` as read at `at` (also setting `delivered_at` where
    /// unset, since a read message was delivered), stores `audit` if any message changed,
    /// and returns the messages changed now, by `seq`. Already-read messages MUST keep
    /// their first `read_at` and MUST NOT be returned.
    #[allow(clippy::too_many_arguments)]
    async fn mark_read(
        &self,
        tenant: &TenantId,
        conversation: ConversationId,
        reader: &UserId,
        from_seq: i64,
        to_seq: i64,
        at: DateTime<Utc>,
        audit: AuditEntry,
    ) -> StoreResult<Vec<Message>>;

    /// One page of `user`'s conversations, latest message first (ties by id desc),
    /// strictly after `after`, each with its latest message and the user's unread count,
    /// computed by the backend in one round trip.
    async fn conversations(
        &self,
        tenant: &TenantId,
        user: &UserId,
        after: Option<ConversationCursor>,
        limit: PageSize,
    ) -> StoreResult<Vec<ConversationSummary>>;

    /// The other participants of `user`'s latest conversations (latest message
    /// first, at most `limit`): whose presence a connecting socket watches. The
    /// same order as [`conversations`](Self::conversations), without its last
    /// messages and unread counts, so a reconnect storm stays cheap.
    async fn conversation_partners(
        &self,
        tenant: &TenantId,
        user: &UserId,
        limit: PageSize,
    ) -> StoreResult<Vec<UserId>>;

    /// One page of history, newest first: messages with `seq < before_seq` (all if `None`).
    async fn history(
        &self,
        tenant: &TenantId,
        conversation: ConversationId,
        before_seq: Option<i64>,
        limit: PageSize,
    ) -> StoreResult<Vec<Message>>;

    /// Catch-up in one conversation, oldest first: messages with `seq > after_seq`.
    async fn messages_after(
        &self,
        tenant: &TenantId,
        conversation: ConversationId,
        after_seq: i64,
        limit: PageSize,
    ) -> StoreResult<Vec<Message>>;

    /// Catch-up across all of `user`'s conversations: messages sent or received by
    /// `user` whose `(updated_at, id)` is after the cursor, in that order.
    async fn changes_since(
        &self,
        tenant: &TenantId,
        user: &UserId,
        since: ChangeCursor,
        limit: PageSize,
    ) -> StoreResult<Vec<Message>>;
}

/// Position in a notification list (unread first, then newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationCursor {
    /// Status of the last row of the previous page.
    pub status: NotificationStatus,
    /// Creation time of the last row of the previous page.
    pub created_at: DateTime<Utc>,
    /// Id of the last row of the previous page.
    pub id: NotificationId,
}

/// In-app notifications.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Stores a new notification (an alert or a system one: a message's comes
    /// with its send) and its `audit` row in one transaction, so that neither
    /// is ever stored without the other. MUST return `Conflict`, storing
    /// nothing, if the notification's id or the audit row's exists.
    async fn create(&self, notification: Notification, audit: AuditEntry) -> StoreResult<()>;

    /// A notification of this tenant by id, or `None`.
    async fn notification(
        &self,
        tenant: &TenantId,
        id: NotificationId,
    ) -> StoreResult<Option<Notification>>;

    /// One page of `user`'s notifications ordered unread, read, archived, each group
    /// newest first (ties by id desc), strictly after `after`. Archived ones only
    /// when `include_archived`.
    async fn list(
        &self,
        tenant: &TenantId,
        user: &UserId,
        after: Option<NotificationCursor>,
        include_archived: bool,
        limit: PageSize,
    ) -> StoreResult<Vec<Notification>>;

    /// Moves `user`'s notification forward to `status` and returns it. The status
    /// MUST only move forward (`unread` → `read` → `archived`), checked in the write
    /// itself: when two devices race, an archived notification stays archived and
    /// is returned as it is. MUST return `NotFound` if it is absent or belongs to
    /// another user.
    async fn set_status(
        &self,
        tenant: &TenantId,
        user: &UserId,
        id: NotificationId,
        status: NotificationStatus,
    ) -> StoreResult<Notification>;

    /// How many of `user`'s notifications are unread.
    async fn unread_count(&self, tenant: &TenantId, user: &UserId) -> StoreResult<u64>;

    /// Marks every unread notification of `user` read, in one write, and says
    /// how many changed. Read and archived ones MUST stay as they are.
    async fn mark_all_read(&self, tenant: &TenantId, user: &UserId) -> StoreResult<u64>;

    /// Marks read, in one write, `user`'s unread notifications of these
    /// messages (related to (`message`, id), see `NewMessage::notification`),
    /// once the messages themselves were read; says how many changed. Read and
    /// archived ones, other users' and other kinds MUST stay as they are.
    async fn mark_read_for_messages(
        &self,
        tenant: &TenantId,
        user: &UserId,
        messages: &[MessageId],
    ) -> StoreResult<u64>;
}

/// Which audit rows a query wants (all conditions must hold).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditFilter {
    /// Only this action.
    pub action: Option<AuditAction>,
    /// Only rows of this user.
    pub user_id: Option<UserId>,
    /// Only rows at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only rows after this one in newest-first order (the previous page's last row),
    /// so rows sharing a timestamp are never skipped at a page boundary.
    pub before: Option<AuditCursor>,
}

/// Position in the newest-first audit listing: `(createdAt, id)` of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor {
    /// `createdAt` of the last row of the previous page.
    pub created_at: DateTime<Utc>,
    /// Id of the last row of the previous page.
    pub id: AuditId,
}

/// The append-only compliance trail.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends a row. MUST NOT change or remove any other row.
    async fn append(&self, entry: AuditEntry) -> StoreResult<()>;

    /// Rows of the tenant matching `filter`, newest first (ties by id desc), at most `limit`.
    async fn query(
        &self,
        tenant: &TenantId,
        filter: AuditFilter,
        limit: PageSize,
    ) -> StoreResult<Vec<AuditEntry>>;

    /// Removes rows of every tenant created strictly before `receipt.cutoff`
    /// and, in the same write, appends to each tenant that lost rows its
    /// [`PurgeReceipt::entry`] (positions in tenant id order, by bytes), so
    /// that no trail is ever shortened without saying so. Returns how many
    /// each tenant lost, in that order (tenants that lost none are left out).
    /// MUST return `Conflict`, removing nothing, if a receipt's id is taken by
    /// a row that stays.
    async fn purge_before(&self, receipt: &PurgeReceipt) -> StoreResult<Vec<(TenantId, u64)>>;
}

/// Who exists in a tenant, with their role and whether they are active.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Directory: Send + Sync {
    /// A user of this tenant, or `None`.
    async fn user(&self, tenant: &TenantId, user: &UserId) -> StoreResult<Option<DirectoryUser>>;

    /// The users of this tenant among `users` (absent ones are skipped), in any order.
    async fn users(&self, tenant: &TenantId, users: &[UserId]) -> StoreResult<Vec<DirectoryUser>>;

    /// Creates or replaces a user (keyed by tenant + user id) and returns it.
    async fn upsert(&self, user: DirectoryUser) -> StoreResult<DirectoryUser>;

    /// Records the identity a verified token states: creates `user` as given if
    /// absent, otherwise sets only its display name and role and returns the
    /// stored entry. MUST never change `active` of an existing user, in the
    /// write itself: only an administrator switches a user on or off, and a
    /// token refresh racing with a deactivation must not undo it.
    async fn record_identity(&self, user: DirectoryUser) -> StoreResult<DirectoryUser>;

    /// One page of this tenant's users, ordered by [`NameKey`](crate::NameKey) then user id:
    /// those after `query.after`, whose key contains `query.text` when given,
    /// active ones only unless `query.include_inactive`; at most `query.limit`.
    async fn search(
        &self,
        tenant: &TenantId,
        query: &DirectoryQuery,
    ) -> StoreResult<Vec<DirectoryUser>>;
}

/// The presence facts before and after a change, so the caller can tell whether
/// the visible status moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    /// The facts before the change (`None`: never seen).
    pub before: Option<PresenceRecord>,
    /// The facts after the change.
    pub after: PresenceRecord,
}

/// Live connections and last activity per user.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PresenceTracker: Send + Sync {
    /// Records a new live connection and activity at `at`. Connecting the same
    /// connection id twice MUST count it once.
    async fn connect(
        &self,
        tenant: &TenantId,
        user: &UserId,
        connection: &ConnectionId,
        at: DateTime<Utc>,
    ) -> StoreResult<PresenceChange>;

    /// Forgets a connection; when it was the user's last, `last_seen` becomes `at`
    /// (closing one of several devices is not activity). Unknown connections MUST
    /// be ignored.
    async fn disconnect(
        &self,
        tenant: &TenantId,
        user: &UserId,
        connection: &ConnectionId,
        at: DateTime<Utc>,
    ) -> StoreResult<PresenceChange>;

    /// Records activity at `at` (a ping, a send) without changing connections.
    async fn touch(
        &self,
        tenant: &TenantId,
        user: &UserId,
        at: DateTime<Utc>,
    ) -> StoreResult<PresenceChange>;

    /// The facts of every user of the tenant seen so far.
    async fn snapshot(&self, tenant: &TenantId) -> StoreResult<Vec<PresenceRecord>>;

    /// The facts of the users among `users` seen so far, in any order (users
    /// never seen are left out): what a page of the directory shows.
    async fn records(
        &self,
        tenant: &TenantId,
        users: &[UserId],
    ) -> StoreResult<Vec<PresenceRecord>>;
}

/// Delivers realtime events to the sockets of an audience, wherever they are connected.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Hands the event over for delivery to every socket of `audience` and no other.
    /// Delivery is best effort (clients catch up from the store); MUST return
    /// `Unavailable` if the event could not even be handed over.
    async fn publish(&self, audience: Audience, event: RealtimeEvent) -> StoreResult<()>;

    /// Hands several events over at once, in this order, with `publish`'s
    /// obligations for each; an adapter MAY send them together (one round trip
    /// to a broker instead of one per event). The default publishes them one by
    /// one, tries them all, and returns the first failure.
    async fn publish_all(&self, events: Vec<(Audience, RealtimeEvent)>) -> StoreResult<()> {
        let mut result = Ok(());
        for (audience, event) in events {
            let published = self.publish(audience, event).await;
            if result.is_ok() {
                result = published;
            }
        }
        result
    }
}

/// The receiving end of event delivery on one node: the realtime gateway implements
/// it to emit an event to its local sockets; publisher adapters (in-process bus,
/// Redis pub/sub) call it for every event whose audience may have sockets here.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Emits the event to this node's sockets in `audience`'s room, and to no other socket.
    async fn deliver(&self, audience: &Audience, event: &RealtimeEvent);

    /// Whether any of this node's sockets is in `audience`'s room now. A bus that
    /// hands every node every event MAY skip (and not even decode) the events
    /// this says no to; it MUST NOT skip one it says yes to. The default says yes
    /// to all.
    fn has_audience(&self, _audience: &Audience) -> bool {
        true
    }
}

/// An action counted by the rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateAction {
    /// Sending a message.
    Send,
    /// Editing or deleting a message.
    Modify,
    /// Marking messages read or delivered.
    Receipt,
    /// Presence pings and connections.
    Presence,
}

impl RateAction {
    /// Short name used in keys, metrics and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            RateAction::Send => "send",
            RateAction::Modify => "modify",
            RateAction::Receipt => "receipt",
            RateAction::Presence => "presence",
        }
    }
}

/// The limiter's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Go ahead (the attempt was counted).
    Allowed,
    /// Over the limit; the next attempt may pass after this long.
    Limited {
        /// Time until the next attempt may pass.
        retry_after: Duration,
    },
}

/// How many attempts of one action a user may make per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Attempts allowed in any window (0 refuses every attempt).
    pub max: u32,
    /// The length of the sliding window.
    pub per: Duration,
}

impl RateLimit {
    /// `max` attempts per `per`.
    pub const fn new(max: u32, per: Duration) -> Self {
        Self { max, per }
    }
}

/// The limit of each [`RateAction`], as rate-limiter adapters are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Sending messages (default 30 per 10 s).
    pub send: RateLimit,
    /// Editing or deleting messages (default 20 per 60 s).
    pub modify: RateLimit,
    /// Read and delivery receipts (default 120 per 10 s).
    pub receipt: RateLimit,
    /// Presence pings and connections (default 30 per 10 s).
    pub presence: RateLimit,
}

impl RateLimits {
    /// The limit configured for `action`.
    pub fn get(&self, action: RateAction) -> RateLimit {
        match action {
            RateAction::Send => self.send,
            RateAction::Modify => self.modify,
            RateAction::Receipt => self.receipt,
            RateAction::Presence => self.presence,
        }
    }

    /// These limits with `action`'s limit replaced.
    pub fn with(mut self, action: RateAction, limit: RateLimit) -> Self {
        match action {
            RateAction::Send => self.send = limit,
            RateAction::Modify => self.modify = limit,
            RateAction::Receipt => self.receipt = limit,
            RateAction::Presence => self.presence = limit,
        }
        self
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            send: RateLimit::new(30, Duration::from_secs(10)),
            modify: RateLimit::new(20, Duration::from_secs(60)),
            receipt: RateLimit::new(120, Duration::from_secs(10)),
            presence: RateLimit::new(30, Duration::from_secs(10)),
        }
    }
}

/// Per-user, per-action rate limiting.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one attempt of `action` by `user` and says whether it may proceed.
    /// Refused attempts MUST NOT consume the allowance.
    async fn check(
        &self,
        tenant: &TenantId,
        user: &UserId,
        action: RateAction,
    ) -> StoreResult<RateDecision>;
}

/// Per-tenant feature switches (progressive rollout).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait FeatureFlags: Send + Sync {
    /// Whether messaging is on for the tenant (the adapter's configured default when
    /// the tenant was never set).
    async fn messaging_enabled(&self, tenant: &TenantId) -> StoreResult<bool>;

    /// Switches messaging on or off for the tenant.
    async fn set_messaging_enabled(&self, tenant: &TenantId, enabled: bool) -> StoreResult<()>;
}

/// The time source; tests pin it.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait Clock: Send + Sync {
    /// Now, in UTC, at microsecond precision (what every store keeps).
    fn now(&self) -> DateTime<Utc>;
}

/// The id source; tests make it predictable.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait IdGenerator: Send + Sync {
    /// A fresh, never-repeated UUID.
    fn new_id(&self) -> Uuid;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::entities::PresenceStatus;
    use crate::events::PresenceEvent;
    use crate::ids::{TenantId, UserId};

    /// Records what it is handed; refuses events for the user `down`.
    #[derive(Default)]
    struct Recording(Mutex<Vec<UserId>>);

    #[async_trait]
    impl EventPublisher for Recording {
        async fn publish(&self, audience: Audience, _: RealtimeEvent) -> StoreResult<()> {
            let Audience::User(_, user) = audience else {
                return Ok(());
            };
            let refused = user.as_str() == "down";
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(user);
            if refused {
                return Err(StoreError::Unavailable("down".into()));
            }
            Ok(())
        }
    }

    fn for_user(u: &str) -> (Audience, RealtimeEvent) {
        let user = UserId::parse(u).unwrap_or_else(|e| panic!("{e}"));
        let event = RealtimeEvent::PresenceUpdate(PresenceEvent {
            user_id: user.clone(),
            status: PresenceStatus::Online,
            last_seen: DateTime::<Utc>::UNIX_EPOCH,
        });
        let tenant = TenantId::parse("acme").unwrap_or_else(|e| panic!("{e}"));
        (Audience::User(tenant, user), event)
    }

    #[test]
    fn publish_all_by_default_tries_every_event_in_order_and_reports_the_first_failure() {
        let publisher = Recording::default();
        let events = vec![for_user("a"), for_user("down"), for_user("b")];
        let result = futures::executor::block_on(publisher.publish_all(events));
        assert_eq!(result, Err(StoreError::Unavailable("down".into())));
        let handed: Vec<_> = publisher
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|u| u.as_str().to_owned())
            .collect();
        assert_eq!(handed, ["a", "down", "b"]);
    }
}
