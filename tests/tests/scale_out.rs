//! Scale-out: two server nodes sharing Postgres and Redis behave as one, and
//! survive a Redis restart without restarting the nodes or losing a message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use afritalk_bin::config::{Config, Database, Secret};
use afritalk_ports::Role;
use serde_json::json;
use support::clients::Clients;
use support::services::{PrivateRedis, RedisPrefix, TestDatabase, shared_redis};
use support::{TestApp, fresh_config, start, start_crashable, status_of};

const T: &str = "acme";

/// A config for a node of a cluster: shared database, Redis and keys.
fn node_config(base: &Config, database: &TestDatabase, redis_url: &str, prefix: &str) -> Config {
    let mut config = base.clone();
    config.database = Database::Postgres(Secret::new(database.url.clone()));
    config.redis_url = Some(Secret::new(redis_url));
    config.redis_prefix = prefix.to_owned();
    config.db_pool_size = 4;
    config
}

async fn company(app: &TestApp) {
    for (user, role) in [("dg", "DG"), ("emp", "EMPLOYE"), ("pdg", "PDG")] {
        app.add_user(T, user, role).await;
    }
    app.add_user("globex", "emp", "EMPLOYE").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_sharing_postgres_and_redis_behave_as_one() {
    let database = TestDatabase::create().await;
    let (base, _dir) = fresh_config();
    let prefix = RedisPrefix::new();
    let config = node_config(&base, &database, &shared_redis(), &prefix.0);
    let node1 = start(config.clone()).await;
    let node2 = start(config).await;
    company(&node1).await;

    let dg = node1.token(T, "dg", Role::Dg);
    let emp = node1.token(T, "emp", Role::Employe);
    let spy = node1.token("globex", "emp", Role::Employe);
    let mut c = Clients::start().await;
    c.connect(&node1, "dg@1", T, &dg, "websocket")
        .await
        .unwrap();
    c.connect(&node1, "emp@1", T, &emp, "websocket")
        .await
        .unwrap();
    c.connect(&node2, "emp@2", T, &emp, "websocket")
        .await
        .unwrap();
    c.connect(&node1, "spy@1", "globex", &spy, "websocket")
        .await
        .unwrap();
    c.connect(&node2, "spy@2", "globex", &spy, "websocket")
        .await
        .unwrap();

    // A message sent on node 1 arrives live on the recipient's sockets on both nodes.
    let ack = c
        .emit(
            "dg@1",
            "messaging:send",
            json!({ "toUserId": "emp", "content": "Stock à recompter" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let id = ack["message"]["id"].as_str().unwrap().to_owned();
    for socket in ["emp@1", "emp@2"] {
        let new = c.next_event(socket, "messaging:new").await;
        assert_eq!(new["message"]["id"], id.as_str());
    }
    // Delivered and read receipts cross nodes back to the sender on node 1.
    let delivered = c.next_event("dg@1", "messaging:delivered").await;
    assert_eq!(delivered["messageId"], id.as_str());
    let read = c
        .emit("emp@2", "messaging:read", json!({ "messageId": id }))
        .await;
    assert_eq!(read["ok"], true, "{read}");
    let read = c.next_event("dg@1", "messaging:read").await;
    assert_eq!(read["messageId"], id.as_str());
    // Node 2 has no socket of the DG: it left those receipts unparsed.
    let mut not_here = 0;
    for _ in 0..200 {
        let res = node2.http.get(node2.url("/metrics")).send().await.unwrap();
        let text = res.text().await.unwrap();
        not_here = text
            .lines()
            .find_map(|l| l.strip_prefix("afritalk_bus_events_total{stage=\"not_here\"} "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if not_here >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(not_here >= 2, "node 2 parsed the DG's receipts: {not_here}");

    // Exactly once per socket: no second copy arrives.
    assert!(
        !c.receives_within("emp@2", "messaging:new", Duration::from_millis(300))
            .await
    );

    // Presence is shared: node 2 sees the DG (connected to node 1) online.
    let (status, list) = node2.get(&format!("/api/tenants/{T}/presence"), &emp).await;
    assert_eq!(status, 200);
    assert_eq!(status_of(&list, "dg"), "online");

    // Another tenant's sockets on either node saw nothing.
    for spy in ["spy@1", "spy@2"] {
        assert!(
            !c.receives_within(spy, "messaging:new", Duration::from_millis(200))
                .await
        );
        assert!(
            !c.receives_within(spy, "notify:new", Duration::from_millis(50))
                .await
        );
        assert!(
            !c.receives_within(spy, "messaging:read", Duration::from_millis(50))
                .await
        );
    }

    drop(c);
    node1.stop().await;
    node2.stop().await;
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_resumes_after_redis_restarts_and_no_stored_message_is_lost() {
    let database = TestDatabase::create().await;
    let mut redis = PrivateRedis::start();
    let (base, _dir) = fresh_config();
    // A private Redis, gone with the test: no prefix to clean.
    let config = node_config(&base, &database, &redis.url(), "afritalk:");
    let node1 = start(config.clone()).await;
    let node2 = start(config).await;
    company(&node1).await;
    let dg = node1.token(T, "dg", Role::Dg);
    let emp = node1.token(T, "emp", Role::Employe);
    let mut c = Clients::start().await;
    c.connect(&node2, "emp@2", T, &emp, "websocket")
        .await
        .unwrap();

    assert_eq!(node1.send(T, &dg, "emp", "avant").await.0, 201);
    assert_eq!(
        c.next_event("emp@2", "messaging:new").await["message"]["content"],
        "avant"
    );

    // Redis goes away: sends are still stored (and acknowledged only once stored).
    redis.kill();
    let (status, body) = node1.send(T, &dg, "emp", "pendant").await;
    assert_eq!(status, 201, "stored even without Redis: {body}");

    // Redis comes back empty; both nodes resubscribe without a restart.
    redis.restart();
    for node in [&node1, &node2] {
        let mut subscribed = false;
        for _ in 0..100 {
            let res = node.http.get(node.url("/metrics")).send().await.unwrap();
            let text = res.text().await.unwrap();
            if text.contains("afritalk_bus_subscribed 1")
                && !text.contains("afritalk_bus_reconnects_total 0\n")
            {
                subscribed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(subscribed, "node on port {} did not resubscribe", node.port);
    }
    assert_eq!(node1.send(T, &dg, "emp", "après").await.0, 201);
    let mut live = Vec::new();
    for _ in 0..3 {
        let new = c.next_event("emp@2", "messaging:new").await;
        let content = new["message"]["content"].as_str().unwrap().to_owned();
        live.push(content.clone());
        if content == "après" {
            break;
        }
    }
    assert_eq!(
        live.last().map(String::as_str),
        Some("après"),
        "live delivery resumed: {live:?}"
    );

    // Everything is stored: the client recovers what it missed through the catch-up call.
    let (status, history) = node2
        .get(&format!("/api/tenants/{T}/messaging/conversation/dg"), &emp)
        .await;
    assert_eq!(status, 200);
    let contents: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, vec!["après", "pendant", "avant"]);

    // Presence is right again after the re-announce (Redis lost it all).
    let mut status = String::new();
    for _ in 0..100 {
        let (_, list) = node1.get(&format!("/api/tenants/{T}/presence"), &dg).await;
        status = status_of(&list, "emp");
        if status == "online" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        status, "online",
        "presence re-announced after the Redis restart"
    );

    drop(c);
    node1.stop().await;
    node2.stop().await;
    database.drop_database().await;
}

/// A cluster's config whose nodes renew their sockets every second, so that
/// a node's sockets expire 3 s after it stopped renewing them.
fn fast_presence_config(base: &Config, database: &TestDatabase, prefix: &RedisPrefix) -> Config {
    let mut config = node_config(base, database, &shared_redis(), &prefix.0);
    config.presence_ttl = Duration::from_secs(3);
    config
}

/// Whether report `r` tells the DG's socket on node 1 that the employee is `status`.
fn dg_told_emp_is(r: &serde_json::Value, status: &str) -> bool {
    r["client"] == "dg@1"
        && r["event"] == "presence:update"
        && r["data"]["userId"] == "emp"
        && r["data"]["status"] == status
}

/// The DG, on node 1, watches the employee, connected on node 2 (socket
/// `emp@2`): returns the clients once the DG was told the employee is online.
async fn employee_on_node2_watched_from_node1(node1: &TestApp, node2: &TestApp) -> Clients {
    company(node1).await;
    let dg = node1.token(T, "dg", Role::Dg);
    let emp = node1.token(T, "emp", Role::Employe);
    // A conversation makes the DG one of the employee's presence watchers.
    assert_eq!(node1.send(T, &dg, "emp", "Inventaire ce soir").await.0, 201);
    let mut c = Clients::start().await;
    c.connect(node1, "dg@1", T, &dg, "websocket").await.unwrap();
    // The DG's socket looks its partners up just after connecting: the
    // employee connects again until the DG is told.
    for _ in 0..10 {
        c.connect(node2, "emp@2", T, &emp, "websocket")
            .await
            .unwrap();
        if c.arrives_within(Duration::from_secs(1), |r| dg_told_emp_is(r, "online"))
            .await
        {
            // Updates of the attempts before are not those awaited next.
            c.forget(Duration::from_secs(1), |r| dg_told_emp_is(r, "idle"))
                .await;
            return c;
        }
        c.disconnect("emp@2").await;
    }
    panic!("the DG was never told that the employee came online");
}

#[tokio::test(flavor = "multi_thread")]
async fn watchers_learn_that_a_crashed_nodes_users_left() {
    let database = TestDatabase::create().await;
    let (base, _dir) = fresh_config();
    let prefix = RedisPrefix::new();
    let config = fast_presence_config(&base, &database, &prefix);
    let node1 = start(config.clone()).await;
    let (node2, node2_runtime) = start_crashable(config).await;
    let mut c = employee_on_node2_watched_from_node1(&node1, &node2).await;

    // Node 2 dies without closing anything; its socket is simply gone.
    node2_runtime.shutdown_background();
    let told = c
        .arrives_within(Duration::from_secs(15), |r| dg_told_emp_is(r, "idle"))
        .await;
    assert!(
        told,
        "the DG still sees the employee of a crashed node online"
    );
    let dg = node1.token(T, "dg", Role::Dg);
    let (_, list) = node1.get(&format!("/api/tenants/{T}/presence"), &dg).await;
    assert_eq!(status_of(&list, "emp"), "idle");

    drop(c);
    drop(node2);
    node1.stop().await;
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_stopping_hands_its_users_offline_to_come_to_another() {
    let database = TestDatabase::create().await;
    let (base, _dir) = fresh_config();
    let prefix = RedisPrefix::new();
    let config = fast_presence_config(&base, &database, &prefix);
    let node1 = start(config.clone()).await;
    let node2 = start(config).await;
    let mut c = employee_on_node2_watched_from_node1(&node1, &node2).await;

    // Node 2 stops normally: it closes the socket and announces it...
    node2.stop().await;
    assert!(
        c.wait_for(|r| dg_told_emp_is(r, "idle")).await.is_some(),
        "the closing node did not announce the disconnect"
    );
    // ...and hands the employee over: node 1 takes them in (it announces their
    // status again, then follows them to offline, ten minutes on).
    assert!(
        c.wait_for(|r| dg_told_emp_is(r, "idle")).await.is_some(),
        "no node took over the employee of the stopped node"
    );

    drop(c);
    node1.stop().await;
    database.drop_database().await;
}
