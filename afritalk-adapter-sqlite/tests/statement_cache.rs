//! The hot statements are prepared once per connection and then reused: seen
//! through diesel's statement cache (its instrumentation). The store has one
//! pooled connection, so every call below runs on the same connection.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use afritalk_adapter_sql::statement_log::{StatementLog, assert_prepared_once};
use afritalk_adapter_sqlite::SqliteStore;
use afritalk_contract::{Ports, hot_paths};
use common::TempDb;
use diesel_async::AsyncConnection;

/// A migrated store with ONE pooled connection, whose statements `log` records.
async fn one_connection_store(db: &TempDb, log: &StatementLog) -> SqliteStore {
    let store = SqliteStore::open(&db.0, 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut pooled = store.pool().get().await.unwrap();
    pooled.set_instrumentation(log.recorder());
    drop(pooled);
    store
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hot_paths_are_prepared_once_per_connection() {
    let db = TempDb::new();
    let log = StatementLog::new();
    let store = one_connection_store(&db, &log).await;
    let ports = Ports::from_store(store.clone());

    hot_paths::exercise(&ports, 1).await;
    let first = log.take();
    hot_paths::exercise(&ports, 2).await;
    let second = log.take();

    let ran = assert_prepared_once(&first, &second);
    // The workload did reach the statements this test is about (the portable
    // send: conversation upsert, message, notification, audit rows).
    for hot in [
        "INSERT INTO `conversations`",
        "INSERT INTO `messages`",
        "UPDATE `messages` SET `delivered_at`",
        "UPDATE `messages` SET `read_at`",
        "UPDATE `messages` SET `content`",
        "INSERT INTO `messaging_audit_log`",
        "INSERT INTO `notifications`",
        "INSERT INTO `directory_users`",
        "INSERT INTO `tenant_settings`",
        "UPDATE `notifications` SET `status_rank`",
    ] {
        assert!(
            ran.iter().any(|sql| sql.starts_with(hot)),
            "no statement starting {hot} ran: {ran:#?}"
        );
    }
    let lists = ran.iter().filter(|sql| sql.contains("`unread`")).count();
    assert_eq!(
        lists, 2,
        "the conversation list: first page and keyset page"
    );
}

/// The statements run since the last call (the pool recycles connections
/// without a check query, so each is one of the store's).
fn store_statements(log: &StatementLog) -> Vec<String> {
    log.take().sequence
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_delivery_ack_is_one_statement() {
    let db = TempDb::new();
    let log = StatementLog::new();
    let store = one_connection_store(&db, &log).await;
    let acks = hot_paths::delivery_acks(&store, || store_statements(&log)).await;
    let ran = &acks.first;
    assert_eq!(ran.len(), 1, "check and write in one statement: {ran:#?}");
    assert!(ran[0].starts_with("UPDATE `messages` SET `delivered_at`"));
    // Telling the other outcomes apart costs one read more.
    assert_eq!(acks.second.len(), 2, "{:#?}", acks.second);
}
