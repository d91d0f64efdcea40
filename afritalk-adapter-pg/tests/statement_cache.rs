//! The hot statements are prepared once per connection and then reused, seen
//! from both ends: diesel's statement cache (through its instrumentation) and
//! the Postgres session itself (`pg_prepared_statements`). The store has one
//! pooled connection, so every call below runs on the same session.
//!
//! Server: as for the contract tests (`AFRITALK_TEST_DATABASE_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;

use afritalk_adapter_pg::PgStore;
use afritalk_adapter_sql::statement_log::{StatementLog, assert_prepared_once};
use afritalk_contract::{Ports, hot_paths};
use common::{admin, drop_database, new_database};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, RunQueryDsl};

#[derive(QueryableByName)]
struct Prepared {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    statement: String,
}

/// A migrated store on a fresh database with ONE pooled connection, whose
/// statements `log` records; returns the database name for the teardown.
async fn one_connection_store(log: &StatementLog) -> (PgStore, String) {
    let mut conn = admin().await;
    let (name, url) = new_database(&mut conn).await;
    let store = PgStore::connect(&url, 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut pooled = store.pool().get().await.unwrap();
    pooled.set_instrumentation(log.recorder());
    drop(pooled);
    (store, name)
}

/// The statements prepared in the store's session (name → SQL), read on that
/// very session.
async fn server_side_statements(store: &PgStore) -> BTreeMap<String, String> {
    let mut conn = store.pool().get().await.unwrap();
    // This query is itself prepared while it runs: leave it out.
    let rows: Vec<Prepared> = diesel::sql_query(
        "SELECT name, statement FROM pg_prepared_statements \
         WHERE statement NOT LIKE '%pg_prepared_statements%'",
    )
    .load(&mut *conn)
    .await
    .unwrap();
    rows.into_iter().map(|p| (p.name, p.statement)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hot_paths_are_prepared_once_per_connection() {
    let log = StatementLog::new();
    let (store, name) = one_connection_store(&log).await;
    let ports = Ports::from_store(store.clone());

    hot_paths::exercise(&ports, 1).await;
    let first = log.take();
    let server_first = server_side_statements(&store).await;
    log.take(); // the pg_prepared_statements query
    hot_paths::exercise(&ports, 2).await;
    let second = log.take();
    let server_second = server_side_statements(&store).await;

    // The server's view first: every statement the workload ran is still
    // prepared in the session afterwards (an uncached one is closed after use),
    // and the repeat added or closed none.
    let on_server: Vec<&String> = server_first.values().collect();
    let gone: Vec<&String> = first
        .run
        .iter()
        .filter(|sql| !on_server.contains(sql))
        .collect();
    assert!(
        gone.is_empty(),
        "not kept prepared on the server: {gone:#?}"
    );
    assert_eq!(
        server_second, server_first,
        "the repeat made the server prepare (or close) statements"
    );
    // diesel's view: the same, from its statement cache.
    let ran = assert_prepared_once(&first, &second);
    // The workload did reach the statements this test is about.
    for hot in [
        "WITH existing AS (SELECT",
        "WITH acks AS MATERIALIZED",
        "UPDATE \"messages\" SET \"read_at\"",
        "UPDATE \"messages\" SET \"content\"",
        "INSERT INTO \"messaging_audit_log\"",
        "INSERT INTO \"notifications\"",
        "INSERT INTO \"directory_users\"",
        "INSERT INTO \"tenant_settings\"",
        "UPDATE \"notifications\" SET \"status_rank\"",
    ] {
        assert!(
            ran.iter().any(|sql| sql.starts_with(hot)),
            "no statement starting {hot} ran"
        );
    }
    let lists = ran.iter().filter(|sql| sql.contains("\"unread\"")).count();
    assert_eq!(
        lists, 2,
        "the conversation list: first page and keyset page"
    );

    drop((ports, store));
    drop_database(&mut admin().await, &name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_delivery_ack_is_one_statement() {
    let log = StatementLog::new();
    let (store, name) = one_connection_store(&log).await;
    let acks = hot_paths::delivery_acks(&store, || log.take().sequence).await;
    let ran = &acks.first;
    assert_eq!(ran.len(), 1, "check and write in one statement: {ran:#?}");
    assert!(ran[0].starts_with("WITH acks AS MATERIALIZED"));
    // Telling the other outcomes apart costs one read more.
    assert_eq!(acks.second.len(), 2, "{:#?}", acks.second);

    drop(store);
    drop_database(&mut admin().await, &name).await;
}
