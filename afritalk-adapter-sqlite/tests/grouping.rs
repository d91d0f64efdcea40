//! The SQLite store commits concurrent hot-path writes (sends, first
//! deliveries, connect audit rows) in shared transactions, and each call
//! still gets the answer it would get alone (the contract cases these run
//! assert that, including the writes that fail among them); these tests check
//! that grouping did happen, and that a write which failed inside a group
//! was rolled back alone while the rest of its group committed.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::future::Future;

use afritalk_adapter_sqlite::SqliteStore;
use afritalk_adapter_sqlite::hot_paths::WriteStatistics;
use afritalk_contract::Ports;
use common::TempDb;

/// Runs `case` on a fresh store and returns its write statistics before and after.
async fn statistics_around<F, Fut>(case: F) -> (WriteStatistics, WriteStatistics)
where
    F: FnOnce(Ports) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TempDb::new();
    let store = SqliteStore::open(&db.0, 4).await.unwrap();
    store.migrate().await.unwrap();
    let before = store.write_statistics();
    case(Ports::from_store(store.clone())).await;
    (before, store.write_statistics())
}

/// Checks that writes were grouped, and how many failed alone inside groups.
fn assert_grouped(before: WriteStatistics, after: WriteStatistics, failed_alone: u64) {
    assert_eq!(before, WriteStatistics::default());
    assert!(after.groups >= 1, "{after:?}");
    assert!(
        after.grouped >= 2 * after.groups,
        "a group holds several writes: {after:?}"
    );
    assert_eq!(after.failed_in_groups, failed_alone, "{after:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sends_share_commits_and_a_failed_send_is_rolled_back_alone() {
    let (before, after) = statistics_around(
        afritalk_contract::cases::concurrent_sends_across_conversations_each_get_their_own_answer,
    )
    .await;
    // The doomed send (its notification id taken) failed; its group committed.
    assert_grouped(before, after, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_delivery_acks_share_commits() {
    let (before, after) = statistics_around(
        afritalk_contract::cases::concurrent_acks_of_many_messages_each_get_their_own_answer,
    )
    .await;
    assert_grouped(before, after, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_audit_rows_share_commits_and_a_duplicate_is_rolled_back_alone() {
    let (before, after) = statistics_around(
        afritalk_contract::cases::concurrent_audit_appends_each_get_their_own_answer,
    )
    .await;
    // The row whose id was stored before, and one of the two appends of one
    // new id, failed; their group committed.
    assert_grouped(before, after, 2);
}
