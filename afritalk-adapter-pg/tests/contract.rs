//! The storage contract against a real Postgres. Each case gets its own fresh
//! database (dropped afterwards); leftovers of crashed runs older than an hour
//! are swept first. Postgres must be reachable: an unreachable server FAILS
//! these tests, it never skips them.
//!
//! Server: `AFRITALK_TEST_DATABASE_URL` (a URL without database name), default
//! `postgres://postgres@127.0.0.1:5432`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use afritalk_adapter_pg::PgStore;
use afritalk_contract::{Fixture, Ports};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

const PREFIX: &str = "afritalk_test_";

fn server_url() -> String {
    std::env::var("AFRITALK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

async fn admin() -> AsyncPgConnection {
    let url = format!("{}/postgres", server_url());
    AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|e| {
            panic!("Postgres is required for the contract tests and is unreachable at {url}: {e}")
        })
}

#[derive(QueryableByName)]
struct DbName {
    #[diesel(sql_type = Text)]
    datname: String,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Drops test databases whose name says they were created over an hour ago.
async fn sweep_leftovers(conn: &mut AsyncPgConnection) {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::SeqCst) {
        return;
    }
    let names: Vec<DbName> = diesel::sql_query(format!(
        "SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%'"
    ))
    .load(conn)
    .await
    .unwrap();
    for DbName { datname } in names {
        let created = datname[PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|c| c + 3600 < now_secs()) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS \"{datname}\" WITH (FORCE)"
            ))
            .execute(conn)
            .await;
        }
    }
}

async fn fresh() -> Fixture {
    let mut conn = admin().await;
    sweep_leftovers(&mut conn).await;
    let name = format!("{PREFIX}{}_{}", now_secs(), uuid::Uuid::new_v4().simple());
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .unwrap();
    let store = PgStore::connect(&format!("{}/{name}", server_url()), 8)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Fixture::new(Ports::from_store(store)).with_teardown(async move {
        diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
    })
}

afritalk_contract::storage_contract!(fresh);

#[tokio::test(flavor = "multi_thread")]
async fn migrate_is_idempotent_and_the_default_flag_is_configurable() {
    afritalk_contract::run(fresh, |_ports| async {}).await;
    let mut conn = admin().await;
    let name = format!("{PREFIX}{}_{}", now_secs(), uuid::Uuid::new_v4().simple());
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = format!("{}/{name}", server_url());
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
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
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
