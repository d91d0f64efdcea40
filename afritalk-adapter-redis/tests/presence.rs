//! `RedisPresence` against the machine's Redis: the in-process tracker's
//! behaviours, plus what only a shared tracker needs (several nodes, expiry of a
//! dead node's connections, rebuilding after Redis lost its data).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use afritalk_adapter_redis::{PresenceOptions, RedisPresence, connect_pool};
use afritalk_ports::{ConnectionId, PresenceTracker, StoreError};
use chrono::{DateTime, TimeDelta, Utc};
use common::{Namespace, PrivateRedis, tenant, user};

fn conn(id: &str) -> ConnectionId {
    ConnectionId::new(id)
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 250_000).unwrap()
}

fn node(ns: &Namespace) -> RedisPresence {
    RedisPresence::new(ns.pool.clone(), &ns.prefix, PresenceOptions::default())
}

fn node_with_ttl(ns: &Namespace, ttl: Duration) -> RedisPresence {
    let options = PresenceOptions {
        connection_ttl: ttl,
        ..PresenceOptions::default()
    };
    RedisPresence::new(ns.pool.clone(), &ns.prefix, options)
}

#[tokio::test]
async fn first_connect_reports_a_user_never_seen_before() {
    let ns = Namespace::new().await;
    let presence = node(&ns);
    let change = presence
        .connect(&tenant("t"), &user("u"), &conn("c1"), t0())
        .await
        .unwrap();
    assert_eq!(change.before, None);
    assert_eq!(change.after.connections, 1);
    assert_eq!(change.after.last_seen, t0());
    assert_eq!(change.after.user_id, user("u"));
}

#[tokio::test]
async fn connecting_the_same_connection_twice_counts_it_once() {
    let ns = Namespace::new().await;
    let presence = node(&ns);
    let (t, u) = (tenant("t"), user("u"));
    presence.connect(&t, &u, &conn("c1"), t0()).await.unwrap();
    let again = presence.connect(&t, &u, &conn("c1"), t0()).await.unwrap();
    assert_eq!(again.before.unwrap().connections, 1);
    assert_eq!(again.after.connections, 1);
    let second = presence.connect(&t, &u, &conn("c2"), t0()).await.unwrap();
    assert_eq!(second.after.connections, 2);
}

#[tokio::test]
async fn disconnect_forgets_the_connection_and_the_last_one_sets_last_seen() {
    let ns = Namespace::new().await;
    let presence = node(&ns);
    let (t, u) = (tenant("t"), user("u"));
    presence.connect(&t, &u, &conn("c1"), t0()).await.unwrap();
    presence.connect(&t, &u, &conn("c2"), t0()).await.unwrap();
    let later = t0() + TimeDelta::seconds(30);
    let change = presence
        .disconnect(&t, &u, &conn("c1"), later)
        .await
        .unwrap();
    assert_eq!(change.before.unwrap().connections, 2);
    assert_eq!(change.after.connections, 1);
    assert_eq!(
        change.after.last_seen,
        t0(),
        "closing one device is not activity"
    );
    let last = presence
        .disconnect(&t, &u, &conn("c2"), later)
        .await
        .unwrap();
    assert_eq!(last.after.connections, 0);
    assert_eq!(last.after.last_seen, later);
    // The user stays known (offline with a last_seen), not forgotten.
    assert_eq!(presence.snapshot(&t).await.unwrap(), vec![last.after]);
}

#[tokio::test]
async fn disconnecting_an_unknown_connection_is_ignored() {
    let ns = Namespace::new().await;
    let presence = node(&ns);
    let (t, u) = (tenant("t"), user("u"));
    presence.connect(&t, &u, &conn("c1"), t0()).await.unwrap();
    let later = t0() + TimeDelta::seconds(30);
    let change = presence
        .disconnect(&t, &u, &conn("nope"), later)
        .await
        .unwrap();
    assert_eq!(change.before.as_ref(), Some(&change.after));
    assert_eq!(change.after.connections, 1);
    assert_eq!(change.after.last_seen, t0());

    // A user never seen is not made up by a stray disconnect.
    let stray = presence
        .disconnect(&t, &user("ghost"), &conn("c9"), later)
        .await
        .unwrap();
    assert_eq!(stray.before, None);
    assert_eq!(stray.after.connections, 0);
    assert_eq!(presence.snapshot(&t).await.unwrap().len(), 1);
}

#[tokio::test]
async fn touch_records_activity_without_changing_connections() {
    let ns = Namespace::new().await;
    let presence = node(&ns);
    let (t, u) = (tenant("t"), user("u"));
    presence.connect(&t, &u, &conn("c1"), t0()).await.unwrap();
    let later = t0() + TimeDelta::seconds(45);
    let change = presence.touch(&t, &u, later).await.unwrap();
    assert_eq!(change.before.unwrap().last_seen, t0());
    assert_eq!(change.after.last_seen, later);
    assert_eq!(change.after.connections, 1);

    // last_seen never goes back for a late event.
    let late = presence.touch(&t, &u, t0()).await.unwrap();
    assert_eq!(late.after.last_seen, later);

    let fresh = presence.touch(&t, &user("v"), later).await.unwrap();
    assert_eq!(fresh.before, None);
    assert_eq!(fresh.after.connections, 0);
}

#[tokio::test]
async fn tenants_are_isolated_even_for_the_same_user_id() {
    let ns = Namespace::new().await;
    let presence = node(&ns);
    let (a, b, u) = (tenant("a"), tenant("b"), user("u"));
    presence.connect(&a, &u, &conn("c1"), t0()).await.unwrap();
    presence
        .connect(&a, &user("w"), &conn("c2"), t0())
        .await
        .unwrap();

    // The same user id in tenant b is someone else: never seen there.
    let in_b = presence.connect(&b, &u, &conn("c3"), t0()).await.unwrap();
    assert_eq!(in_b.before, None);
    assert_eq!(in_b.after.connections, 1);
    // A disconnect in b does not touch a's connection with the same id.
    presence
        .disconnect(&b, &u, &conn("c1"), t0())
        .await
        .unwrap();

    let snap_a = presence.snapshot(&a).await.unwrap();
    assert_eq!(
        snap_a
            .iter()
            .map(|r| (r.user_id.as_str(), r.connections))
            .collect::<Vec<_>>(),
        vec![("u", 1), ("w", 1)]
    );
    let snap_b = presence.snapshot(&b).await.unwrap();
    assert_eq!(snap_b.len(), 1);
    assert_eq!(snap_b[0].connections, 1);
    assert!(presence.snapshot(&tenant("c")).await.unwrap().is_empty());
}

#[tokio::test]
async fn nodes_share_one_view_of_each_user() {
    let ns = Namespace::new().await;
    let (node1, node2) = (node(&ns), node(&ns));
    let (t, u) = (tenant("t"), user("u"));
    node1.connect(&t, &u, &conn("n1-c1"), t0()).await.unwrap();
    let on_2 = node2.connect(&t, &u, &conn("n2-c1"), t0()).await.unwrap();
    assert_eq!(on_2.before.unwrap().connections, 1);
    assert_eq!(on_2.after.connections, 2);
    let later = t0() + TimeDelta::seconds(5);
    let off_1 = node1
        .disconnect(&t, &u, &conn("n1-c1"), later)
        .await
        .unwrap();
    assert_eq!(off_1.after.connections, 1);
    let snap = node2.snapshot(&t).await.unwrap();
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0].connections, 1);
    assert_eq!(snap[0].last_seen, t0(), "still connected on node 2");
    let last = later + TimeDelta::seconds(5);
    node2
        .disconnect(&t, &u, &conn("n2-c1"), last)
        .await
        .unwrap();
    let snap = node1.snapshot(&t).await.unwrap();
    assert_eq!((snap[0].connections, snap[0].last_seen), (0, last));
}

#[tokio::test]
async fn a_dead_nodes_connections_expire_after_the_ttl_while_live_ones_are_renewed() {
    let ns = Namespace::new().await;
    // Long against a stalled runner's pauses between heartbeats (a live
    // socket must not expire between two), short enough to wait through.
    let ttl = Duration::from_secs(3);
    let (live_node, dead_node) = (node_with_ttl(&ns, ttl), node_with_ttl(&ns, ttl));
    let t = tenant("t");
    live_node
        .connect(&t, &user("u"), &conn("live"), t0())
        .await
        .unwrap();
    dead_node
        .connect(&t, &user("u"), &conn("dead"), t0())
        .await
        .unwrap();
    dead_node
        .connect(&t, &user("v"), &conn("dead-v"), t0())
        .await
        .unwrap();
    assert_eq!(live_node.heartbeat_interval(), ttl / 3);

    // The live node keeps announcing its socket; the dead node says nothing more.
    let live = [(t.clone(), user("u"), conn("live"))];
    for _ in 0..5 {
        tokio::time::sleep(ttl / 3).await;
        live_node.reannounce(&live, Utc::now()).await.unwrap();
    }

    let snap = live_node.snapshot(&t).await.unwrap();
    let counts: Vec<_> = snap
        .iter()
        .map(|r| (r.user_id.as_str(), r.connections))
        .collect();
    assert_eq!(counts, vec![("u", 1), ("v", 0)]);
    // lastSeen survives the expiry, and a heartbeat is not activity.
    assert!(snap.iter().all(|r| r.last_seen == t0()));
    // The dead node's keys are gone by themselves, not just hidden.
    let keys = ns.keys();
    assert!(keys.iter().all(|k| !k.ends_with(":conns:v")), "{keys:?}");
    // The next write sees the expired connection gone too.
    let change = live_node.touch(&t, &user("u"), t0()).await.unwrap();
    assert_eq!(change.after.connections, 1);
}

#[tokio::test]
async fn a_stopped_nodes_users_are_adopted_once_and_a_live_nodes_never() {
    let ns = Namespace::new().await;
    // As above: long against a stalled runner's pauses between heartbeats.
    let ttl = Duration::from_secs(3);
    let (live_node, dead_node) = (node_with_ttl(&ns, ttl), node_with_ttl(&ns, ttl));
    let (t, t2) = (tenant("t"), tenant("t2"));
    live_node
        .connect(&t, &user("u"), &conn("live"), t0())
        .await
        .unwrap();
    for (tenant, user_id, id) in [
        (&t, "u", "dead-u"),
        (&t, "v", "dead-v"),
        (&t, "w", "dead-w"),
        (&t2, "x", "dead-x"),
    ] {
        dead_node
            .connect(tenant, &user(user_id), &conn(id), t0())
            .await
            .unwrap();
    }
    // Closed properly before the crash: nothing to adopt for w.
    dead_node
        .disconnect(&t, &user("w"), &conn("dead-w"), t0())
        .await
        .unwrap();
    // A node whose sockets all closed is idle, not dead: it is never adopted.
    let idle_node = node_with_ttl(&ns, ttl);
    idle_node
        .connect(&t, &user("i"), &conn("idle-i"), t0())
        .await
        .unwrap();
    idle_node
        .disconnect(&t, &user("i"), &conn("idle-i"), t0())
        .await
        .unwrap();
    // Alive, both of them, until a connection TTL passes unrenewed.
    assert_eq!(live_node.adopt_orphans().await.unwrap().nodes, 0);

    let live = [(t.clone(), user("u"), conn("live"))];
    for _ in 0..4 {
        tokio::time::sleep(ttl / 3).await;
        live_node.reannounce(&live, Utc::now()).await.unwrap();
        idle_node.reannounce(&[], Utc::now()).await.unwrap();
    }
    tokio::time::sleep(ttl / 3).await;
    let adopted = live_node.adopt_orphans().await.unwrap();
    assert_eq!(adopted.nodes, 1, "only the dead node: {adopted:?}");
    assert_eq!(
        adopted.users,
        vec![
            (t.clone(), user("u")),
            (t.clone(), user("v")),
            (t2, user("x"))
        ]
    );
    // By then the dead node's connections no longer count.
    let counts: Vec<_> = live_node
        .records(&t, &[user("u"), user("v")])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.user_id.as_str().to_owned(), r.connections))
        .collect();
    assert_eq!(counts, vec![("u".to_owned(), 1), ("v".to_owned(), 0)]);
    // Adopted once: another node asking next finds nothing.
    let again = node_with_ttl(&ns, ttl).adopt_orphans().await.unwrap();
    assert_eq!(again, afritalk_adapter_redis::Orphans::default());
}

#[tokio::test]
async fn a_node_stopping_hands_its_users_over_to_the_next_adopter_at_once() {
    let ns = Namespace::new().await;
    let (stopping, other) = (node(&ns), node(&ns));
    let (t, u) = (tenant("t"), user("u"));
    stopping.connect(&t, &u, &conn("c1"), t0()).await.unwrap();
    stopping
        .disconnect(&t, &u, &conn("c1"), t0())
        .await
        .unwrap();
    other.reannounce(&[], t0()).await.unwrap();
    assert_eq!(other.adopt_orphans().await.unwrap().nodes, 0);
    // Its default TTL is 90 s: only the hand-over makes it due now.
    stopping
        .hand_over(&[(t.clone(), u.clone()), (t.clone(), user("v"))])
        .await
        .unwrap();
    let adopted = other.adopt_orphans().await.unwrap();
    assert_eq!(adopted.nodes, 1);
    assert_eq!(adopted.users, vec![(t.clone(), u), (t, user("v"))]);
    assert_eq!(other.adopt_orphans().await.unwrap().nodes, 0);
}

#[tokio::test]
async fn a_node_registers_again_at_its_first_heartbeat_after_redis_lost_its_data() {
    let ns = Namespace::new().await;
    let ttl = Duration::from_secs(1);
    let crashed = node_with_ttl(&ns, ttl);
    let (t, u) = (tenant("t"), user("u"));
    crashed.connect(&t, &u, &conn("c1"), t0()).await.unwrap();
    ns.wipe();
    let live = [(t.clone(), u.clone(), conn("c1"))];
    crashed.reannounce(&live, t0()).await.unwrap();
    // ...and then crashes: its re-registered connection is adopted.
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    let adopted = node_with_ttl(&ns, ttl).adopt_orphans().await.unwrap();
    assert_eq!(adopted.users, vec![(t, u)]);
}

#[tokio::test]
async fn a_heartbeat_that_listed_a_connection_before_it_closed_does_not_bring_it_back() {
    let ns = Namespace::new().await;
    // Long against a stalled runner's pauses: c2 must still count below.
    let ttl = Duration::from_secs(3);
    let presence = node_with_ttl(&ns, ttl);
    let (t, u) = (tenant("t"), user("u"));
    presence.connect(&t, &u, &conn("c1"), t0()).await.unwrap();
    presence.connect(&t, &u, &conn("c2"), t0()).await.unwrap();
    // The heartbeat lists the node's sockets; c1 closes before it writes.
    let listed = [
        (t.clone(), u.clone(), conn("c1")),
        (t.clone(), u.clone(), conn("c2")),
    ];
    presence
        .disconnect(&t, &u, &conn("c1"), t0())
        .await
        .unwrap();
    presence.reannounce(&listed, t0()).await.unwrap();
    let records = presence
        .records(&t, std::slice::from_ref(&u))
        .await
        .unwrap();
    let counts: Vec<u32> = records.iter().map(|r| r.connections).collect();
    assert_eq!(counts, vec![1]);
    // Nor is it left in the node's own set, for an adopter to find.
    presence
        .disconnect(&t, &u, &conn("c2"), t0())
        .await
        .unwrap();
    assert!(
        ns.keys().iter().all(|k| !k.contains(":node:")),
        "{:?}",
        ns.keys()
    );
    // The record of the closes goes with the connection TTL.
    assert!(ns.keys().iter().any(|k| k.contains(":closed:")));
    tokio::time::sleep(ttl + Duration::from_millis(500)).await;
    assert!(
        ns.keys().iter().all(|k| !k.contains(":closed:")),
        "{:?}",
        ns.keys()
    );
}

#[tokio::test]
async fn reannouncing_rebuilds_presence_after_redis_lost_its_data() {
    let ns = Namespace::new().await;
    let presence = node(&ns);
    let t = tenant("t");
    presence
        .connect(&t, &user("u"), &conn("c1"), t0())
        .await
        .unwrap();
    presence
        .connect(&t, &user("u"), &conn("c2"), t0())
        .await
        .unwrap();
    presence
        .connect(&t, &user("w"), &conn("c3"), t0())
        .await
        .unwrap();
    let before = presence.snapshot(&t).await.unwrap();

    ns.wipe();
    assert!(presence.snapshot(&t).await.unwrap().is_empty());

    let heartbeat = t0() + TimeDelta::seconds(20);
    let live = [
        (t.clone(), user("u"), conn("c1")),
        (t.clone(), user("u"), conn("c2")),
        (t.clone(), user("w"), conn("c3")),
    ];
    presence.reannounce(&live, heartbeat).await.unwrap();
    let after = presence.snapshot(&t).await.unwrap();
    let counts: Vec<_> = after
        .iter()
        .map(|r| (r.user_id.as_str(), r.connections))
        .collect();
    assert_eq!(counts, vec![("u", 2), ("w", 1)]);
    // Lost users come back seen at the heartbeat; known ones keep their lastSeen.
    assert!(after.iter().all(|r| r.last_seen == heartbeat));
    presence
        .reannounce(&live, heartbeat + TimeDelta::seconds(20))
        .await
        .unwrap();
    assert_eq!(presence.snapshot(&t).await.unwrap(), after);
    assert_eq!(before.len(), after.len());
}

#[tokio::test]
async fn an_unreachable_redis_is_reported_as_unavailable() {
    // Port 1 (tcpmux): nothing listens there, and no test's Redis can take it.
    let pool = connect_pool("redis://127.0.0.1:1", 2).unwrap();
    let presence = RedisPresence::new(pool, "x:", PresenceOptions::default());
    let error = presence
        .connect(&tenant("t"), &user("u"), &conn("c"), t0())
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Unavailable(ref m) if m.contains("presence connect")),
        "{error:?}"
    );
    assert!(matches!(
        presence.snapshot(&tenant("t")).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        presence
            .reannounce(&[(tenant("t"), user("u"), conn("c"))], t0())
            .await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn the_first_reannounce_after_a_restart_works_though_its_connection_died() {
    let mut redis = PrivateRedis::start();
    let pool = connect_pool(&redis.url(), 4).unwrap();
    let presence = RedisPresence::new(pool, "afritalk:", PresenceOptions::default());
    let (t, u) = (tenant("t"), user("u"));
    presence.connect(&t, &u, &conn("c1"), t0()).await.unwrap();

    // Restarted empty right after a use: the shared connection is dead, and
    // recent enough not to be checked first.
    redis.restart();
    let live = [(t.clone(), u.clone(), conn("c1"))];
    presence.reannounce(&live, t0()).await.unwrap();
    let after = presence.snapshot(&t).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].connections, 1);
}

#[tokio::test]
async fn records_reads_the_asked_users_as_the_snapshot_shows_them() {
    let ns = Namespace::new().await;
    let presence = node(&ns);
    let (t, a, b) = (tenant("t"), user("a"), user("b"));
    presence.connect(&t, &a, &conn("c1"), t0()).await.unwrap();
    presence.connect(&t, &b, &conn("c2"), t0()).await.unwrap();
    let later = t0() + TimeDelta::seconds(3);
    presence
        .disconnect(&t, &b, &conn("c2"), later)
        .await
        .unwrap();
    presence
        .connect(&tenant("other"), &user("c"), &conn("c3"), t0())
        .await
        .unwrap();

    let mut asked = presence
        .records(
            &t,
            &[b.clone(), user("never"), a.clone(), b.clone(), user("c")],
        )
        .await
        .unwrap();
    asked.sort_by(|x, y| x.user_id.cmp(&y.user_id));
    assert_eq!(asked, presence.snapshot(&t).await.unwrap());
    assert_eq!((asked[0].connections, asked[1].connections), (1, 0));
    assert_eq!(asked[1].last_seen, later);
    assert!(presence.records(&t, &[]).await.unwrap().is_empty());
    assert!(
        presence
            .records(&tenant("nobody"), &[a])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_server_version_is_read_and_this_redis_is_supported() {
    let ns = Namespace::new().await;
    let version = afritalk_adapter_redis::server_version(&ns.pool)
        .await
        .unwrap();
    assert!(version.0 >= 6, "{version:?}");
    assert!(afritalk_adapter_redis::supported(version), "{version:?}");
    let pool = connect_pool("redis://127.0.0.1:1", 1).unwrap();
    assert!(matches!(
        afritalk_adapter_redis::server_version(&pool).await,
        Err(StoreError::Unavailable(_))
    ));
}
