//! The storage contract against a real Postgres. Each case gets its own fresh
//! database (dropped afterwards); leftovers of crashed runs older than an hour
//! are swept first. Postgres must be reachable: an unreachable server FAILS
//! these tests, it never skips them.
//!
//! Server: `AFRITALK_TEST_DATABASE_URL` (a URL without database name), default
//! `postgres://postgres@127.0.0.1:5432`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use afritalk_adapter_pg::PgStore;
use afritalk_contract::{Fixture, Ports};
use common::{admin, drop_database, new_database};

async fn fresh() -> Fixture {
    let mut conn = admin().await;
    let (name, url) = new_database(&mut conn).await;
    let store = PgStore::connect(&url, 8).await.unwrap();
    store.migrate().await.unwrap();
    Fixture::new(Ports::from_store(store)).with_teardown(async move {
        drop_database(&mut conn, &name).await;
    })
}

afritalk_contract::storage_contract!(fresh);

#[tokio::test(flavor = "multi_thread")]
async fn migrate_is_idempotent_and_the_default_flag_is_configurable() {
    afritalk_contract::run(fresh, |_ports| async {}).await;
    let mut conn = admin().await;
    let (name, url) = new_database(&mut conn).await;
    let store = PgStore::connect(&url, 2)
        .await
        .unwrap()
        .with_messaging_default(false);
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let tenant = afritalk_ports::TenantId::parse("acme").unwrap();
    use afritalk_ports::FeatureFlags;
    assert!(!store.messaging_enabled(&tenant).await.unwrap());
    drop(store);
    drop_database(&mut conn, &name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_starting_together_on_a_fresh_database_all_migrate() {
    // A deployment of several nodes starts them at once: each runs the
    // migrations on start, and none may fail for racing the others.
    let mut conn = admin().await;
    let (name, url) = new_database(&mut conn).await;
    let mut nodes = Vec::new();
    for _ in 0..4 {
        nodes.push(PgStore::connect(&url, 2).await.unwrap());
    }
    let results = futures::future::join_all(nodes.iter().map(|store| store.migrate())).await;
    for result in &results {
        assert!(result.is_ok(), "{results:?}");
    }
    drop(nodes);
    drop_database(&mut conn, &name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_a_setup_error_not_a_panic() {
    let err = PgStore::connect("postgres://nobody:secret@127.0.0.1:1/none", 1)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("secret"), "the password never shows: {text}");
}
