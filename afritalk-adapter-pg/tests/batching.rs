//! The Postgres store groups concurrent sends, concurrent first deliveries,
//! and concurrent audit rows into shared statements, and each call still gets
//! the answer it would get alone (the contract cases these run assert that);
//! these tests check that grouping did happen, including batches that failed
//! and were written again one write at a time, and acknowledgements that
//! arrived one after the other but within the deliveries' linger.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::future::Future;
use std::time::Duration;

use afritalk_adapter_pg::{BatchStatistics, PgStore};
use afritalk_contract::Ports;
use afritalk_contract::fixtures::{at, new_message, tenant, user};
use afritalk_ports::{DeliveryOutcome, SendOutcome};
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

/// Checks that writes were grouped: none before, at least one statement of
/// several writes after, and whether some batch failed and fell back.
fn assert_grouped(before: BatchStatistics, after: BatchStatistics, a_batch_failed: bool) {
    assert_eq!(before, BatchStatistics::default());
    assert!(after.batches >= 1, "{after:?}");
    assert!(
        after.batched >= 2 * after.batches,
        "a batch holds several writes: {after:?}"
    );
    assert_eq!(
        after.failed_batches >= 1,
        a_batch_failed,
        "failed batches: {after:?}"
    );
}

// One thread: every write of the case is queued before a writer runs, so
// which writes share a batch does not depend on the scheduler.
#[tokio::test]
async fn concurrent_sends_share_statements_and_a_failed_batch_falls_back() {
    let (before, after) = statistics_around(
        afritalk_contract::cases::concurrent_sends_across_conversations_each_get_their_own_answer,
        PgStore::send_statistics,
    )
    .await;
    // The doomed send failed its batch.
    assert_grouped(before, after, true);
}

// One thread: every write of the case is queued before a writer runs, so
// which writes share a batch does not depend on the scheduler.
#[tokio::test]
async fn concurrent_delivery_acks_share_statements() {
    let (before, after) = statistics_around(
        afritalk_contract::cases::concurrent_acks_of_many_messages_each_get_their_own_answer,
        PgStore::delivery_statistics,
    )
    .await;
    assert_grouped(before, after, false);
}

// One thread: every write of the case is queued before a writer runs, so
// which writes share a batch does not depend on the scheduler.
#[tokio::test]
async fn concurrent_audit_rows_share_statements_and_a_failed_batch_falls_back() {
    let (before, after) = statistics_around(
        afritalk_contract::cases::concurrent_audit_appends_each_get_their_own_answer,
        PgStore::audit_statistics,
    )
    .await;
    // The id stored before failed its batch.
    assert_grouped(before, after, true);
}

/// How many times the lingering test may try before it concludes that acks a
/// millisecond apart do not share a statement.
const ATTEMPTS: usize = 5;

#[tokio::test(flavor = "multi_thread")]
async fn acks_a_millisecond_apart_share_one_statement() {
    let mut admin_conn = admin().await;
    let (name, url) = new_database(&mut admin_conn).await;
    let store = PgStore::connect(&url, 8).await.unwrap();
    store.migrate().await.unwrap();
    let p = Ports::from_store(store.clone());
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    // The first ack's writer lingers, so the second, made a millisecond
    // later, joins its statement. A stalled test runner can still separate
    // them, so each attempt starts from fresh messages and one attempt of a
    // few must show the sharing; without lingering, none can.
    let mut seen = Vec::new();
    for attempt in 0..ATTEMPTS {
        let before = store.delivery_statistics();
        let mut ids = Vec::new();
        for i in 0..2 {
            let new = new_message(&t, &a, &b, &format!("a{attempt} m{i}"), at(i));
            match p.messages.send(new).await.unwrap() {
                SendOutcome::Stored { message, .. } => ids.push(message.id),
                other => panic!("{other:?}"),
            }
        }
        // Not polled together: the second ack is made a millisecond after
        // the first has started its writer.
        let first = tokio::spawn({
            let (p, t, b, id) = (p.clone(), t.clone(), b.clone(), ids[0]);
            async move { p.messages.mark_delivered(&t, id, &b, at(100)).await }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        let second = p.messages.mark_delivered(&t, ids[1], &b, at(101)).await;
        for outcome in [first.await.unwrap(), second] {
            assert!(
                matches!(outcome, Ok(DeliveryOutcome::Delivered(_))),
                "{outcome:?}"
            );
        }
        let after = store.delivery_statistics();
        let shared = (
            after.batches - before.batches,
            after.batched - before.batched,
        );
        if shared == (1, 2) {
            break;
        }
        seen.push(shared);
    }
    drop((p, store));
    drop_database(&mut admin_conn, &name).await;
    assert!(
        seen.len() < ATTEMPTS,
        "no attempt shared one statement (batches, batched): {seen:?}"
    );
}
