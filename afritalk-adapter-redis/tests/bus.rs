//! `RedisEventBus` against real Redis: two buses stand for two nodes. Every
//! event reaches every node's sink exactly once with its exact audience, and the
//! subscriber comes back by itself after a Redis restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use afritalk_adapter_redis::deadpool_redis::redis;
use afritalk_adapter_redis::{BusOptions, RedisEventBus, connect_pool};
use afritalk_ports::{
    Audience, ConversationId, EventPublisher, PresenceEvent, PresenceStatus, RealtimeEvent,
    StoreError, TypingEvent,
};
use chrono::DateTime;
use common::{Namespace, PrivateRedis, RecordingSink, eventually, tenant, user};
use futures::StreamExt;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(5);

fn presence_event(u: &str) -> RealtimeEvent {
    RealtimeEvent::PresenceUpdate(PresenceEvent {
        user_id: user(u),
        status: PresenceStatus::Online,
        last_seen: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
    })
}

fn typing_event(u: &str) -> RealtimeEvent {
    RealtimeEvent::TypingStart(TypingEvent {
        conversation_id: ConversationId::from_uuid(Uuid::from_u128(7)),
        user_id: user(u),
    })
}

fn fast_options() -> BusOptions {
    BusOptions {
        ping_interval: Duration::from_millis(200),
        // Not shorter: one slow ping of the shared Redis on a loaded runner
        // would count as a reconnect.
        timeout: Duration::from_secs(2),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
    }
}

/// Waits up to `WAIT` for `bus` to notice it lost its subscription; panics
/// with `failure` if it does not.
async fn assert_unsubscribed_within_wait(bus: &RedisEventBus, failure: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while bus.metrics().is_subscribed() {
        assert!(tokio::time::Instant::now() < deadline, "{failure}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node: a bus with its own recording sink, subscribed.
async fn node(url: &str, ns: &Namespace) -> (RedisEventBus, Arc<RecordingSink>) {
    let bus = RedisEventBus::new(url, ns.pool.clone(), &ns.prefix, fast_options()).unwrap();
    let sink = Arc::new(RecordingSink::default());
    bus.attach(sink.clone()).unwrap();
    assert!(
        bus.wait_subscribed(WAIT).await,
        "the subscriber did not subscribe"
    );
    (bus, sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_on_one_node_reaches_every_node_once_with_its_audience() {
    let ns = Namespace::new().await;
    let (node1, sink1) = node(&ns.url, &ns).await;
    let (node2, sink2) = node(&ns.url, &ns).await;

    let conversation = ConversationId::from_uuid(Uuid::from_u128(7));
    let sent = [
        (
            Audience::User(tenant("acme"), user("kofi")),
            presence_event("awa"),
        ),
        (
            Audience::Conversation(tenant("acme"), conversation),
            typing_event("awa"),
        ),
        (
            Audience::PresenceWatchers(tenant("acme"), user("awa")),
            presence_event("awa"),
        ),
        (Audience::Tenant(tenant("globex")), presence_event("zed")),
        // Same user id in another tenant: a different audience, kept apart.
        (
            Audience::User(tenant("globex"), user("kofi")),
            typing_event("zed"),
        ),
    ];
    for (audience, event) in &sent[..3] {
        node1
            .publish(audience.clone(), event.clone())
            .await
            .unwrap();
    }
    for (audience, event) in &sent[3..] {
        node2
            .publish(audience.clone(), event.clone())
            .await
            .unwrap();
    }

    assert_eq!(sink1.wait_for(sent.len(), WAIT).await.len(), sent.len());
    assert_eq!(sink2.wait_for(sent.len(), WAIT).await.len(), sent.len());
    // Nothing more arrives later: exactly once per node, in publishing order per node.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for sink in [&sink1, &sink2] {
        let got = sink.delivered();
        assert_eq!(got.len(), sent.len(), "{got:?}");
        let from_1: Vec<_> = got
            .iter()
            .filter(|(a, _)| a.tenant() == &tenant("acme"))
            .cloned()
            .collect();
        let from_2: Vec<_> = got
            .iter()
            .filter(|(a, _)| a.tenant() == &tenant("globex"))
            .cloned()
            .collect();
        assert_eq!(from_1, sent[..3].to_vec());
        assert_eq!(from_2, sent[3..].to_vec());
    }
    for bus in [&node1, &node2] {
        let metrics = bus.metrics();
        assert_eq!(metrics.received(), 5);
        assert_eq!(metrics.delivered(), 5);
        assert_eq!(metrics.malformed(), 0);
        assert_eq!(metrics.reconnects(), 0);
        assert!(metrics.is_subscribed());
    }
    assert_eq!(node1.metrics().published(), 3);
    assert_eq!(node2.metrics().published(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_no_socket_in_the_audience_leaves_the_event_unparsed() {
    let ns = Namespace::new().await;
    let (everyone, all_sink) = node(&ns.url, &ns).await;
    // The second node has sockets of acme only.
    let acme_only =
        RedisEventBus::new(&ns.url, ns.pool.clone(), &ns.prefix, fast_options()).unwrap();
    let acme_sink = Arc::new(RecordingSink::only(tenant("acme")));
    acme_only.attach(acme_sink.clone()).unwrap();
    assert!(acme_only.wait_subscribed(WAIT).await);

    let for_globex = (
        Audience::User(tenant("globex"), user("kofi")),
        typing_event("zed"),
    );
    let for_acme = (Audience::Tenant(tenant("acme")), presence_event("awa"));
    everyone
        .publish(for_globex.0.clone(), for_globex.1.clone())
        .await
        .unwrap();
    // A payload no node could parse, for an audience the second node does
    // not have: it is left alone there, not counted as malformed.
    let mut conn = ns.pool.get().await.unwrap();
    let unparsable = r#"{"audience":{"kind":"tenant","tenant":"globex"},"name":"typing:start","payload":{"x":1}}"#;
    let _: i64 = redis::cmd("PUBLISH")
        .arg(everyone.channel())
        .arg(unparsable)
        .query_async(&mut conn)
        .await
        .unwrap();
    everyone
        .publish(for_acme.0.clone(), for_acme.1.clone())
        .await
        .unwrap();

    assert_eq!(all_sink.wait_for(2, WAIT).await.len(), 2);
    assert_eq!(acme_sink.wait_for(1, WAIT).await, vec![for_acme.clone()]);
    assert!(eventually(async || acme_only.metrics().received() == 3).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(acme_sink.delivered(), vec![for_acme.clone()]);
    let here = acme_only.metrics();
    assert_eq!(
        (here.delivered(), here.not_here(), here.malformed()),
        (1, 2, 0)
    );
    let all = everyone.metrics();
    assert_eq!(all_sink.delivered(), vec![for_globex, for_acme]);
    assert_eq!(
        (all.delivered(), all.not_here(), all.malformed()),
        (2, 0, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_handed_over_together_travel_as_one_message_and_arrive_in_order() {
    let ns = Namespace::new().await;
    let (node1, sink1) = node(&ns.url, &ns).await;
    let acme_only =
        RedisEventBus::new(&ns.url, ns.pool.clone(), &ns.prefix, fast_options()).unwrap();
    let acme_sink = Arc::new(RecordingSink::only(tenant("acme")));
    acme_only.attach(acme_sink.clone()).unwrap();
    assert!(acme_only.wait_subscribed(WAIT).await);
    // A raw subscriber counts the channel's messages.
    let client = redis::Client::open(ns.url.as_str()).unwrap();
    let (mut raw_sink, mut raw) = client.get_async_pubsub().await.unwrap().split();
    raw_sink.subscribe(node1.channel()).await.unwrap();

    let together = vec![
        (
            Audience::User(tenant("acme"), user("kofi")),
            typing_event("awa"),
        ),
        (
            Audience::User(tenant("globex"), user("zed")),
            presence_event("zed"),
        ),
        (
            Audience::User(tenant("acme"), user("awa")),
            presence_event("awa"),
        ),
    ];
    node1.publish_all(together.clone()).await.unwrap();

    assert_eq!(sink1.wait_for(3, WAIT).await, together);
    let acme: Vec<_> = vec![together[0].clone(), together[2].clone()];
    assert_eq!(acme_sink.wait_for(2, WAIT).await, acme);
    let message = tokio::time::timeout(WAIT, raw.next())
        .await
        .unwrap()
        .unwrap();
    assert!(message.get_payload_bytes().starts_with(b"["));
    let another = tokio::time::timeout(Duration::from_millis(300), raw.next()).await;
    assert!(another.is_err(), "a second channel message: {another:?}");
    assert_eq!(node1.metrics().published(), 3);
    assert_eq!(node1.metrics().delivered(), 3);
    let here = acme_only.metrics();
    assert_eq!(
        (here.received(), here.delivered(), here.not_here()),
        (3, 2, 1)
    );
    assert_eq!(acme_sink.delivered(), acme);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_under_different_prefixes_do_not_see_each_other() {
    let (ns_a, ns_b) = (Namespace::new().await, Namespace::new().await);
    let (bus_a, sink_a) = node(&ns_a.url, &ns_a).await;
    let (_bus_b, sink_b) = node(&ns_b.url, &ns_b).await;
    bus_a
        .publish(Audience::Tenant(tenant("acme")), presence_event("u"))
        .await
        .unwrap();
    assert_eq!(sink_a.wait_for(1, WAIT).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sink_b.delivered().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_needs_no_subscriber_and_attaching_again_replaces_the_sink() {
    let ns = Namespace::new().await;
    let bus = RedisEventBus::new(&ns.url, ns.pool.clone(), &ns.prefix, fast_options()).unwrap();
    bus.publish(Audience::Tenant(tenant("t")), presence_event("u"))
        .await
        .unwrap();
    assert!(!bus.wait_subscribed(Duration::from_millis(50)).await);

    let (first, second) = (
        Arc::new(RecordingSink::default()),
        Arc::new(RecordingSink::default()),
    );
    bus.attach(first.clone()).unwrap();
    assert!(bus.wait_subscribed(WAIT).await);
    bus.attach(second.clone()).unwrap();
    bus.publish(Audience::Tenant(tenant("t")), presence_event("u"))
        .await
        .unwrap();
    assert_eq!(second.wait_for(1, WAIT).await.len(), 1);
    assert!(first.delivered().is_empty());
    // Still one subscription: the second attach did not start a second subscriber.
    assert_eq!(*bus.subscriptions().borrow(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_reconnects_by_itself_after_redis_restarts() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let pool = connect_pool(&url, 4).unwrap();
    let bus = Arc::new(RedisEventBus::new(&url, pool, "afritalk:", fast_options()).unwrap());
    let sink = Arc::new(RecordingSink::default());
    bus.attach(sink.clone()).unwrap();
    assert!(bus.wait_subscribed(WAIT).await);
    let mut subscriptions = bus.subscriptions();
    assert_eq!(*subscriptions.borrow_and_update(), 1);

    let audience = Audience::User(tenant("acme"), user("kofi"));
    bus.publish(audience.clone(), presence_event("before"))
        .await
        .unwrap();
    assert_eq!(sink.wait_for(1, WAIT).await.len(), 1);

    redis.kill();
    // While Redis is down, handing an event over fails loudly rather than vanishing.
    let down = bus.publish(audience.clone(), presence_event("lost")).await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    assert_unsubscribed_within_wait(&bus, "the lost connection was not noticed").await;

    redis.restart();
    tokio::time::timeout(WAIT, subscriptions.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*subscriptions.borrow(), 2);
    assert!(bus.wait_subscribed(WAIT).await);

    // Same bus, same sink: delivery resumes. The pool may need a try to drop its
    // dead connection.
    let published = eventually(async || {
        bus.publish(audience.clone(), presence_event("after"))
            .await
            .is_ok()
    })
    .await;
    assert!(published, "publishing did not recover after the restart");
    let got = sink.wait_for(2, WAIT).await;
    assert_eq!(
        got,
        vec![
            (audience.clone(), presence_event("before")),
            (audience, presence_event("after")),
        ]
    );
    let metrics = bus.metrics();
    assert_eq!(metrics.reconnects(), 1);
    assert!(metrics.gap_seconds_total() > 0.0);
    assert!(metrics.is_subscribed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_keeps_retrying_until_redis_first_comes_up() {
    let mut redis = PrivateRedis::start();
    redis.kill();
    let url = redis.url();
    let bus = RedisEventBus::new(
        &url,
        connect_pool(&url, 2).unwrap(),
        "afritalk:",
        fast_options(),
    )
    .unwrap();
    let sink = Arc::new(RecordingSink::default());
    bus.attach(sink.clone()).unwrap();
    assert!(!bus.wait_subscribed(Duration::from_millis(300)).await);
    redis.restart();
    assert!(bus.wait_subscribed(WAIT).await);
    // Coming up late is a start, not a gap.
    assert_eq!(bus.metrics().reconnects(), 0);
    bus.publish(Audience::Tenant(tenant("t")), presence_event("u"))
        .await
        .unwrap();
    assert_eq!(sink.wait_for(1, WAIT).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_is_noticed_by_the_ping_and_the_subscriber_reconnects() {
    let redis = PrivateRedis::start();
    let url = redis.url();
    let bus = RedisEventBus::new(
        &url,
        connect_pool(&url, 2).unwrap(),
        "afritalk:",
        fast_options(),
    )
    .unwrap();
    let sink = Arc::new(RecordingSink::default());
    bus.attach(sink.clone()).unwrap();
    assert!(bus.wait_subscribed(WAIT).await);

    // The connection stays open but silent: only the ping can tell it is dead.
    redis.freeze(true);
    assert_unsubscribed_within_wait(&bus, "the hung connection was not noticed").await;
    redis.freeze(false);
    assert!(bus.wait_subscribed(WAIT).await);
    assert_eq!(bus.metrics().reconnects(), 1);
    let audience = Audience::Tenant(tenant("t"));
    bus.publish(audience.clone(), presence_event("u"))
        .await
        .unwrap();
    assert_eq!(
        sink.wait_for(1, WAIT).await,
        vec![(audience, presence_event("u"))]
    );
}
