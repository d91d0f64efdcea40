//! The Postgres store groups concurrent sends, and concurrent first
//! deliveries, into shared statements, and each call still gets the answer it
//! would get alone (the contract cases these run assert that); these tests
//! check that grouping did happen, including a batch of sends that failed and
//! was written again one send at a time.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::future::Future;

use afritalk_adapter_pg::{BatchStatistics, PgStore};
use afritalk_contract::Ports;
use common::{admin, drop_database, new_database};

/// Runs `case` on a store over a fresh database and returns what `statistics`
/// counted before and after it.
async fn statistics_around<F, Fut>(
    case: F,
    statistics: fn(&PgStore) -> BatchStatistics,
) -> (BatchStatistics, BatchStatistics)
where
    F: FnOnce(Ports) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut conn = admin().await;
    let (name, url) = new_database(&mut conn).await;
    let store = PgStore::connect(&url, 8).await.unwrap();
    store.migrate().await.unwrap();
    let before = statistics(&store);
    case(Ports::from_store(store.clone())).await;
    let after = statistics(&store);
    drop(store);
    drop_database(&mut conn, &name).await;
    (before, after)
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sends_share_statements_and_a_failed_batch_falls_back() {
    let (before, after) = statistics_around(
        afritalk_contract::cases::concurrent_sends_across_conversations_each_get_their_own_answer,
        PgStore::send_statistics,
    )
    .await;
    assert_eq!(before, BatchStatistics::default());
    assert!(after.batches >= 1, "{after:?}");
    assert!(
        after.batched >= 2 * after.batches,
        "a batch holds several sends: {after:?}"
    );
    assert!(
        after.failed_batches >= 1,
        "the doomed send failed its batch: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_delivery_acks_share_statements() {
    let (before, after) = statistics_around(
        afritalk_contract::cases::concurrent_acks_of_many_messages_each_get_their_own_answer,
        PgStore::delivery_statistics,
    )
    .await;
    assert_eq!(before, BatchStatistics::default());
    assert!(after.batches >= 1, "{after:?}");
    assert!(
        after.batched >= 2 * after.batches,
        "a batch holds several acks: {after:?}"
    );
    assert_eq!(after.failed_batches, 0, "{after:?}");
}
