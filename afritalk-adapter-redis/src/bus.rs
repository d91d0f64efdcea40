//! Cross-node event fan-out over Redis pub/sub.
//!
//! Publishing serializes `(audience, event name, payload)` as JSON and publishes
//! it on one channel, `P events` under the prefix `P`, through a pooled
//! connection; events handed over together (a send's three) go as one channel
//! message, a JSON array of their envelopes, delivered in order. Each node runs
//! one subscriber on a dedicated connection (pub/sub cannot share a pooled one)
//! that hands every event to the node's attached
//! [`EventSink`] — including the events this node published itself, so a
//! publishing node delivers locally exactly once, through the same path as the
//! others. The sink alone decides which local sockets are in the audience; an
//! event whose audience has none here ([`EventSink::has_audience`]) is dropped
//! with its payload unparsed, which is most events once there are many nodes.
//!
//! The subscriber reconnects by itself: when its connection closes or stops
//! answering pings, it retries with exponential backoff and re-subscribes. Events
//! published during the gap are not replayed (Redis pub/sub keeps nothing);
//! clients recover them from the store through their catch-up call. Each gap is
//! logged and counted in [`BusMetrics`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use afritalk_ports::{
    Audience, ConversationId, EventPublisher, EventSink, RealtimeEvent, StoreError, StoreResult,
    TenantId, UserId,
};
use async_trait::async_trait;
use deadpool_redis::Pool;
use deadpool_redis::redis::{self, Client, Msg, aio::PubSubSink};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::commands::SharedCommands;
use crate::unavailable;

/// How the subscriber watches and re-establishes its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusOptions {
    /// How often the subscriber pings Redis to detect a silently dead connection (default 5 s).
    pub ping_interval: Duration,
    /// How long a ping, a connection attempt or a subscription may take (default 2 s).
    pub timeout: Duration,
    /// First wait between reconnection attempts (default 50 ms); doubles each failure.
    pub min_backoff: Duration,
    /// Longest wait between reconnection attempts (default 2 s).
    pub max_backoff: Duration,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Counters of one node's bus, for `/metrics` and readiness.
#[derive(Debug, Default)]
pub struct BusMetrics {
    published: AtomicU64,
    received: AtomicU64,
    delivered: AtomicU64,
    not_here: AtomicU64,
    malformed: AtomicU64,
    reconnects: AtomicU64,
    gap_micros: AtomicU64,
    subscribed: AtomicBool,
}

impl BusMetrics {
    /// Events this node handed to Redis.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Events this node's subscriber received from Redis.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Received events handed to the attached sink.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Received events left alone because no socket of this node was in
    /// their audience (the sink said so).
    pub fn not_here(&self) -> u64 {
        self.not_here.load(Ordering::Relaxed)
    }

    /// Received messages that could not be decoded (and were dropped).
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    /// Times the subscriber lost its subscription and got it back (one per gap).
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Total time, in seconds, the subscriber spent without a subscription after
    /// having had one (events published then did not reach this node live).
    pub fn gap_seconds_total(&self) -> f64 {
        self.gap_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Whether the subscriber is subscribed right now.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }
}

/// The channel's wire form of an [`Audience`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum WireAudience {
    User {
        tenant: TenantId,
        user: UserId,
    },
    Conversation {
        tenant: TenantId,
        conversation: ConversationId,
    },
    PresenceWatchers {
        tenant: TenantId,
        user: UserId,
    },
    Tenant {
        tenant: TenantId,
    },
}

impl From<&Audience> for WireAudience {
    fn from(audience: &Audience) -> Self {
        match audience.clone() {
            Audience::User(tenant, user) => Self::User { tenant, user },
            Audience::Conversation(tenant, conversation) => Self::Conversation {
                tenant,
                conversation,
            },
            Audience::PresenceWatchers(tenant, user) => Self::PresenceWatchers { tenant, user },
            Audience::Tenant(tenant) => Self::Tenant { tenant },
        }
    }
}

impl From<WireAudience> for Audience {
    fn from(wire: WireAudience) -> Self {
        match wire {
            WireAudience::User { tenant, user } => Audience::User(tenant, user),
            WireAudience::Conversation {
                tenant,
                conversation,
            } => Audience::Conversation(tenant, conversation),
            WireAudience::PresenceWatchers { tenant, user } => {
                Audience::PresenceWatchers(tenant, user)
            }
            WireAudience::Tenant { tenant } => Audience::Tenant(tenant),
        }
    }
}

/// One published event on the channel: written with the event's
/// [`WirePayload`](afritalk_ports::WirePayload) (no intermediate tree), read
/// back with the payload as raw JSON (see [`Received`]).
#[derive(Debug, Serialize, Deserialize)]
struct Envelope<P> {
    audience: WireAudience,
    name: String,
    payload: P,
}

/// The channel message for an event.
fn encode(audience: &Audience, event: &RealtimeEvent) -> StoreResult<String> {
    serde_json::to_string(&Envelope {
        audience: audience.into(),
        name: event.name().to_owned(),
        payload: event.wire_payload(),
    })
    .map_err(|e| StoreError::Unavailable(format!("redis: encoding {}: {e}", event.name())))
}

/// One channel message for several events: the JSON array of their
/// envelopes, in order.
fn encode_batch(events: &[(Audience, RealtimeEvent)]) -> StoreResult<String> {
    let mut body = String::from("[");
    for (i, (audience, event)) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&encode(audience, event)?);
    }
    body.push(']');
    Ok(body)
}

/// A channel message whose audience is read and whose payload is not parsed
/// yet: a node with no socket in the audience drops it without parsing it.
struct Received<'a> {
    audience: Audience,
    name: String,
    payload: &'a RawValue,
}

impl Received<'_> {
    /// Reads the envelope of a channel message.
    fn open(raw: &[u8]) -> Result<Received<'_>, String> {
        let envelope: Envelope<&RawValue> =
            serde_json::from_slice(raw).map_err(|e| e.to_string())?;
        Ok(envelope.into())
    }

    /// Reads the envelopes of a channel message: one event, or several in
    /// order, each opened on its own, so that one this node cannot read (an
    /// audience kind of a newer release, during a rolling upgrade) does not
    /// take the others of its message with it.
    fn open_all(raw: &[u8]) -> Result<Vec<Result<Received<'_>, String>>, String> {
        if raw.trim_ascii_start().first() != Some(&b'[') {
            return Self::open(raw).map(|one| vec![Ok(one)]);
        }
        let envelopes: Vec<&RawValue> = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
        Ok(envelopes
            .into_iter()
            .map(|one| Self::open(one.get().as_bytes()))
            .collect())
    }

    /// Parses the payload into the event its name says.
    fn event(&self) -> Result<RealtimeEvent, String> {
        rebuild(&self.name, self.payload.get()).map_err(|e| format!("{}: {e}", self.name))
    }
}

impl<'a> From<Envelope<&'a RawValue>> for Received<'a> {
    fn from(envelope: Envelope<&'a RawValue>) -> Self {
        Received {
            audience: envelope.audience.into(),
            name: envelope.name,
            payload: envelope.payload,
        }
    }
}

/// Rebuilds the audience and event from a channel message.
#[cfg(test)]
fn decode(raw: &[u8]) -> Result<(Audience, RealtimeEvent), String> {
    let received = Received::open(raw)?;
    let event = received.event()?;
    Ok((received.audience, event))
}

/// The event named `name` with `payload` as its wire JSON. Must know every name
/// that [`RealtimeEvent::name`] gives (the round-trip test holds it to that).
fn rebuild(name: &str, payload: &str) -> Result<RealtimeEvent, String> {
    use serde_json::from_str as parse;
    let err = |e: serde_json::Error| e.to_string();
    Ok(match name {
        "messaging:new" => RealtimeEvent::MessageNew(parse(payload).map_err(err)?),
        "messaging:read" => RealtimeEvent::MessageRead(parse(payload).map_err(err)?),
        "messaging:delivered" => RealtimeEvent::MessageDelivered(parse(payload).map_err(err)?),
        "message:edited" => RealtimeEvent::MessageEdited(parse(payload).map_err(err)?),
        "message:deleted" => RealtimeEvent::MessageDeleted(parse(payload).map_err(err)?),
        "presence:update" => RealtimeEvent::PresenceUpdate(parse(payload).map_err(err)?),
        "notify:new" => RealtimeEvent::NotifyNew(parse(payload).map_err(err)?),
        "notify:updated" => RealtimeEvent::NotifyUpdated(parse(payload).map_err(err)?),
        "typing:start" => RealtimeEvent::TypingStart(parse(payload).map_err(err)?),
        "typing:stop" => RealtimeEvent::TypingStop(parse(payload).map_err(err)?),
        other => return Err(format!("unknown event {other:?}")),
    })
}

/// The node's sink, attached after construction and replaceable.
type SinkSlot = Arc<RwLock<Option<Arc<dyn EventSink>>>>;

/// Publishes events to every node through Redis pub/sub and, once a sink is
/// attached, delivers every event published by any node (this one included) to
/// it, exactly once per event per node.
///
/// Publishing succeeds when Redis accepted the event, whether or not any node is
/// subscribed; it returns `Unavailable` when Redis cannot be reached.
pub struct RedisEventBus {
    commands: SharedCommands,
    client: Client,
    channel: String,
    options: BusOptions,
    metrics: Arc<BusMetrics>,
    sink: SinkSlot,
    subscriptions: watch::Sender<u64>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl RedisEventBus {
    /// A bus publishing through `pool` and subscribing on its own connection to
    /// `url`, on the channel `{prefix}events`. Nothing is subscribed until
    /// [`attach`](Self::attach). Fails only if `url` is not a Redis URL.
    pub fn new(
        url: &str,
        pool: Pool,
        prefix: impl Into<String>,
        options: BusOptions,
    ) -> StoreResult<Self> {
        let client = Client::open(url).map_err(|e| unavailable("event bus URL", e))?;
        Ok(Self {
            commands: SharedCommands::new(pool),
            client,
            channel: format!("{}events", prefix.into()),
            options,
            metrics: Arc::new(BusMetrics::default()),
            sink: Arc::new(RwLock::new(None)),
            subscriptions: watch::Sender::new(0),
            task: Mutex::new(None),
        })
    }

    /// Attaches the node's sink (replacing any sink attached before) and, the first
    /// time, starts the subscriber task, which runs until the bus is dropped or
    /// [`shutdown`](Self::shutdown). Must be called inside a tokio runtime; returns
    /// `Unavailable` otherwise. Returns at once: see
    /// [`wait_subscribed`](Self::wait_subscribed).
    pub fn attach(&self, sink: Arc<dyn EventSink>) -> StoreResult<()> {
        *self.sink.write().unwrap_or_else(PoisonError::into_inner) = Some(sink);
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if task.is_none() {
            let runtime = tokio::runtime::Handle::try_current()
                .map_err(|e| unavailable("starting the event bus subscriber", e))?;
            let subscriber = Subscriber {
                client: self.client.clone(),
                channel: self.channel.clone(),
                options: self.options,
                metrics: self.metrics.clone(),
                sink: self.sink.clone(),
                subscriptions: self.subscriptions.clone(),
            };
            *task = Some(runtime.spawn(subscriber.run()));
        }
        Ok(())
    }

    /// Waits until the subscriber is subscribed, at most `timeout`; says whether it is.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let metrics = self.metrics.clone();
        let mut changes = self.subscriptions.subscribe();
        let wait = changes.wait_for(move |_| metrics.is_subscribed());
        matches!(tokio::time::timeout(timeout, wait).await, Ok(Ok(_)))
    }

    /// A receiver whose value is how many times the subscriber has subscribed; it
    /// changes on every re-subscription, when a node should re-announce its presence
    /// at once (Redis may have restarted empty).
    pub fn subscriptions(&self) -> watch::Receiver<u64> {
        self.subscriptions.subscribe()
    }

    /// The bus's counters (shared: read them at every scrape).
    pub fn metrics(&self) -> Arc<BusMetrics> {
        self.metrics.clone()
    }

    /// The channel every node publishes and subscribes on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Stops the subscriber task; publishing still works. A later `attach` starts a new one.
    pub fn shutdown(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
        }
        self.metrics.subscribed.store(false, Ordering::Relaxed);
    }
}

impl Drop for RedisEventBus {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for RedisEventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEventBus")
            .field("channel", &self.channel)
            .field("options", &self.options)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl EventPublisher for RedisEventBus {
    async fn publish(&self, audience: Audience, event: RealtimeEvent) -> StoreResult<()> {
        self.send(encode(&audience, &event)?, 1).await
    }

    async fn publish_all(&self, events: Vec<(Audience, RealtimeEvent)>) -> StoreResult<()> {
        match events.as_slice() {
            [] => Ok(()),
            [(audience, event)] => self.send(encode(audience, event)?, 1).await,
            many => self.send(encode_batch(many)?, many.len()).await,
        }
    }
}

impl RedisEventBus {
    /// Publishes one channel message carrying `events` events.
    async fn send(&self, body: String, events: usize) -> StoreResult<()> {
        let mut conn = self.commands.get("publishing an event").await?;
        let _receivers: i64 = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(body)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable("publishing an event", e))?;
        self.metrics
            .published
            .fetch_add(events as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// The node's subscriber loop and what it needs.
struct Subscriber {
    client: Client,
    channel: String,
    options: BusOptions,
    metrics: Arc<BusMetrics>,
    sink: SinkSlot,
    subscriptions: watch::Sender<u64>,
}

/// How long a subscription must last for the reconnect backoff to start
/// over; one lost sooner waits as a failed attempt does.
const STABLE_SUBSCRIPTION: Duration = Duration::from_secs(10);

impl Subscriber {
    /// Subscribes, pumps, and on any loss reconnects with backoff, forever.
    async fn run(self) {
        let mut backoff = self.options.min_backoff;
        // When the current gap began; `None` before the first subscription, which
        // is a start, not a gap.
        let mut lost_at: Option<Instant> = None;
        let mut failures: u32 = 0;
        loop {
            match self.subscribe().await {
                Ok((sink, stream)) => {
                    failures = 0;
                    let subscribed_at = Instant::now();
                    self.metrics.subscribed.store(true, Ordering::Relaxed);
                    if let Some(since) = lost_at.take() {
                        let gap = since.elapsed();
                        self.metrics.reconnects.fetch_add(1, Ordering::Relaxed);
                        self.metrics.gap_micros.fetch_add(
                            u64::try_from(gap.as_micros()).unwrap_or(u64::MAX),
                            Ordering::Relaxed,
                        );
                        tracing::warn!(
                            channel = %self.channel,
                            gap_ms = gap.as_millis() as u64,
                            "event bus re-subscribed; events published during the gap did not reach this node live"
                        );
                    } else {
                        tracing::info!(channel = %self.channel, "event bus subscribed");
                    }
                    self.subscriptions.send_modify(|n| *n += 1);
                    let reason = self.pump(sink, stream).await;
                    self.metrics.subscribed.store(false, Ordering::Relaxed);
                    lost_at = Some(Instant::now());
                    tracing::warn!(channel = %self.channel, %reason, "event bus subscription lost; reconnecting");
                    // A subscription that keeps dropping right after it is made
                    // (a proxy, an ACL) would otherwise loop at full speed, each
                    // turn re-announcing every socket of the node.
                    if subscribed_at.elapsed() < STABLE_SUBSCRIPTION {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(self.options.max_backoff);
                    } else {
                        backoff = self.options.min_backoff;
                    }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(channel = %self.channel, %error, "event bus cannot subscribe; retrying");
                    } else {
                        tracing::debug!(channel = %self.channel, %error, failures, "event bus still cannot subscribe");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
            }
        }
    }

    /// A fresh dedicated connection subscribed to the channel.
    async fn subscribe(&self) -> Result<(PubSubSink, redis::aio::PubSubStream), String> {
        let timeout = self.options.timeout;
        let pubsub = tokio::time::timeout(timeout, self.client.get_async_pubsub())
            .await
            .map_err(|_| "connecting timed out".to_owned())?
            .map_err(|e| format!("connecting: {e}"))?;
        let (mut sink, stream) = pubsub.split();
        tokio::time::timeout(timeout, sink.subscribe(&self.channel))
            .await
            .map_err(|_| "subscribing timed out".to_owned())?
            .map_err(|e| format!("subscribing: {e}"))?;
        Ok((sink, stream))
    }

    /// Delivers messages until the connection is lost; returns why.
    async fn pump(&self, mut sink: PubSubSink, mut stream: redis::aio::PubSubStream) -> String {
        let mut ping = tokio::time::interval(self.options.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => self.handle(&message).await,
                    None => return "connection closed".to_owned(),
                },
                _ = ping.tick() => {
                    match tokio::time::timeout(self.options.timeout, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return format!("ping failed: {e}"),
                        Err(_) => return "ping timed out".to_owned(),
                    }
                }
            }
        }
    }

    /// Decodes one message and hands it to the sink, in arrival order, unless
    /// the sink has no socket in its audience (most events of a many-node
    /// cluster are for sockets on other nodes: their payload is not parsed).
    async fn handle(&self, message: &Msg) {
        let all = match Received::open_all(message.get_payload_bytes()) {
            Ok(all) => all,
            Err(error) => {
                self.metrics.received.fetch_add(1, Ordering::Relaxed);
                return self.drop_malformed(&error);
            }
        };
        self.metrics
            .received
            .fetch_add(all.len() as u64, Ordering::Relaxed);
        // Clone the Arc and release the lock before awaiting the sink.
        let sink = self
            .sink
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for received in all {
            match received {
                Ok(received) => self.hand_over(sink.as_ref(), received).await,
                Err(error) => self.drop_malformed(&error),
            }
        }
    }

    /// Hands one event of a channel message to the sink, unless the sink has no
    /// socket in its audience.
    async fn hand_over(&self, sink: Option<&Arc<dyn EventSink>>, received: Received<'_>) {
        if sink.is_some_and(|s| !s.has_audience(&received.audience)) {
            self.metrics.not_here.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let event = match received.event() {
            Ok(event) => event,
            Err(error) => return self.drop_malformed(&error),
        };
        let audience = received.audience;
        if let Some(sink) = sink {
            sink.deliver(&audience, &event).await;
            self.metrics.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts and logs a channel message that could not be decoded.
    fn drop_malformed(&self, error: &str) {
        self.metrics.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(channel = %self.channel, %error, "event bus dropped an undecodable message");
    }
}

#[cfg(test)]
mod tests {
    use afritalk_ports::{
        DeliveredEvent, Message, MessageId, NewMessageEvent, Notification, NotificationId,
        NotificationKind, NotificationStatus, NotifyEvent, NotifyUpdatedEvent, PresenceEvent,
        PresenceStatus, ReadEvent, RelatedEntity, TypingEvent,
    };
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 123_456_000).unwrap()
    }

    fn message(deleted: bool) -> Message {
        Message {
            id: MessageId::from_uuid(Uuid::from_u128(1)),
            tenant_id: TenantId::parse("acme").unwrap(),
            conversation_id: ConversationId::from_uuid(Uuid::from_u128(2)),
            seq: 7,
            sender_id: UserId::parse("awa").unwrap(),
            recipient_id: UserId::parse("kofi").unwrap(),
            content: if deleted {
                String::new()
            } else {
                "Bonjour".into()
            },
            related: (!deleted).then(|| RelatedEntity::new("order", "o-42").unwrap()),
            client_message_id: None,
            read: true,
            read_at: Some(at(3)),
            delivered_at: Some(at(2)),
            edited_at: Some(at(1)),
            deleted_at: deleted.then(|| at(4)),
            created_at: at(0),
            updated_at: at(4),
        }
    }

    fn every_event() -> Vec<RealtimeEvent> {
        let conversation_id = ConversationId::from_uuid(Uuid::from_u128(2));
        let typing = TypingEvent {
            conversation_id,
            user_id: UserId::parse("awa").unwrap(),
        };
        vec![
            RealtimeEvent::MessageNew(NewMessageEvent {
                conversation_id,
                message: message(false),
            }),
            RealtimeEvent::MessageRead(ReadEvent {
                message_id: MessageId::from_uuid(Uuid::from_u128(1)),
                conversation_id,
                read_at: at(3),
            }),
            RealtimeEvent::MessageDelivered(DeliveredEvent {
                message_id: MessageId::from_uuid(Uuid::from_u128(1)),
                conversation_id,
                delivered_at: at(2),
            }),
            RealtimeEvent::MessageEdited(message(false)),
            RealtimeEvent::MessageDeleted(message(true)),
            RealtimeEvent::PresenceUpdate(PresenceEvent {
                user_id: UserId::parse("kofi").unwrap(),
                status: PresenceStatus::Idle,
                last_seen: at(5),
            }),
            RealtimeEvent::NotifyNew(NotifyEvent {
                kind: NotificationKind::Alert,
                payload: Notification {
                    id: NotificationId::from_uuid(Uuid::from_u128(3)),
                    tenant_id: TenantId::parse("acme").unwrap(),
                    user_id: UserId::parse("kofi").unwrap(),
                    title: "Stock".into(),
                    message: "Low stock".into(),
                    kind: NotificationKind::Alert,
                    status: NotificationStatus::Unread,
                    related: Some(RelatedEntity::new("product", "p-1").unwrap()),
                    push_sent: false,
                    push_sent_at: None,
                    created_at: at(6),
                },
            }),
            RealtimeEvent::NotifyUpdated(NotifyUpdatedEvent {
                notification_id: Some(NotificationId::from_uuid(Uuid::from_u128(3))),
                status: NotificationStatus::Archived,
                unread_count: 2,
            }),
            RealtimeEvent::NotifyUpdated(NotifyUpdatedEvent {
                notification_id: None,
                status: NotificationStatus::Read,
                unread_count: 0,
            }),
            RealtimeEvent::TypingStart(typing.clone()),
            RealtimeEvent::TypingStop(typing),
        ]
    }

    #[test]
    fn every_event_and_audience_survives_the_channel_unchanged() {
        let tenant = TenantId::parse("acme").unwrap();
        let user = UserId::parse("kofi").unwrap();
        let audiences = [
            Audience::User(tenant.clone(), user.clone()),
            Audience::Conversation(
                tenant.clone(),
                ConversationId::from_uuid(Uuid::from_u128(9)),
            ),
            Audience::PresenceWatchers(tenant.clone(), user),
            Audience::Tenant(tenant),
        ];
        let events = every_event();
        let names: std::collections::HashSet<_> = events.iter().map(|e| e.name()).collect();
        assert_eq!(names.len(), 10, "one sample per RealtimeEvent variant");
        for audience in &audiences {
            for event in &events {
                let wire = encode(audience, event).unwrap();
                let (back_audience, back_event) = decode(wire.as_bytes()).unwrap();
                assert_eq!(&back_audience, audience);
                assert_eq!(&back_event, event);
            }
        }
    }

    #[test]
    fn a_batch_opens_as_its_events_in_order_and_a_broken_envelope_only_itself() {
        let tenant = TenantId::parse("acme").unwrap();
        let batch: Vec<_> = every_event()
            .into_iter()
            .map(|e| (Audience::Tenant(tenant.clone()), e))
            .collect();
        let wire = encode_batch(&batch).unwrap();
        let opened = Received::open_all(wire.as_bytes()).unwrap();
        let back: Vec<_> = opened
            .iter()
            .map(|r| {
                let r = r.as_ref().unwrap();
                (r.audience.clone(), r.event().unwrap())
            })
            .collect();
        assert_eq!(back, batch);
        let single = encode(&batch[0].0, &batch[0].1).unwrap();
        assert_eq!(Received::open_all(single.as_bytes()).unwrap().len(), 1);
        // An audience this node does not know (a newer release's) costs only
        // its own envelope: the event beside it still opens.
        let newer = r#"{"audience":{"kind":"group","tenant":"acme","group":"g1"},"name":"group:updated","payload":{}}"#;
        let mixed = format!("[{newer},{single}]");
        let opened = Received::open_all(mixed.as_bytes()).unwrap();
        assert!(opened[0].is_err());
        assert_eq!(opened[1].as_ref().unwrap().event().unwrap(), batch[0].1);
        assert!(Received::open_all(b"[").is_err());
    }

    #[test]
    fn malformed_messages_are_refused() {
        assert!(decode(b"not json").is_err());
        let unknown = r#"{"audience":{"kind":"tenant","tenant":"acme"},"name":"x:y","payload":{}}"#;
        assert!(
            decode(unknown.as_bytes())
                .unwrap_err()
                .contains("unknown event")
        );
        let bad_tenant =
            r#"{"audience":{"kind":"tenant","tenant":"a b"},"name":"typing:stop","payload":{}}"#;
        assert!(decode(bad_tenant.as_bytes()).is_err());
    }
}
