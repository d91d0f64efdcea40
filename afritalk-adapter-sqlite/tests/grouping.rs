//! The SQLite store commits concurrent hot-path writes (sends, first
//! deliveries, connect audit rows) in shared transactions.
//!
//! Two kinds of tests. The first ones hold the writer's lock while writes
//! queue, so which writes share a group is fixed, and check exactly that a
//! send which fails midway inside a group is rolled back alone while the rest of
//! its group commits, and that a long queue is split at `MAX_GROUP`. The
//! others run the contract's concurrency cases (which assert that every call
//! gets the answer it would get alone) and check that grouping did happen
//! under real concurrency; which writes land together there depends on the
//! scheduler, so they bound the failures seen in groups rather than count them.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::future::Future;
use std::pin::Pin;

use afritalk_adapter_sql::TxError;
use afritalk_adapter_sql::hot_paths::{HotPaths, SendInput, WriteLock};
use afritalk_adapter_sql::rows::{AuditRow, ConversationRow};
use afritalk_adapter_sql::schema::{conversations, messages, messaging_audit_log, notifications};
use afritalk_adapter_sqlite::SqliteStore;
use afritalk_adapter_sqlite::hot_paths::{MAX_GROUP, SqliteHotPaths, WriteStatistics};
use afritalk_contract::Ports;
use afritalk_contract::fixtures::{at, new_message, tenant, user};
use afritalk_ports::NewMessage;
use common::TempDb;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

/// A fresh migrated store in a temporary file (kept alive by the `TempDb`).
async fn migrated_store() -> (TempDb, SqliteStore) {
    let db = TempDb::new();
    let store = SqliteStore::open(&db.0, 4).await.unwrap();
    store.migrate().await.unwrap();
    (db, store)
}

/// An audit row with the given id.
fn audit_row(id: &str) -> AuditRow {
    AuditRow {
        id: id.to_owned(),
        tenant_id: "t-grouping".to_owned(),
        user_id: Some("u-1".to_owned()),
        action: "socket.connect".to_owned(),
        entity_type: None,
        entity_id: None,
        details: "{}".to_owned(),
        ip_address: None,
        created_at: chrono::Utc::now().naive_utc(),
    }
}

/// A write's answer, boxed (the hot paths' methods are `async_trait` ones).
type Pending<'a, R> = Pin<Box<dyn Future<Output = Result<R, TxError>> + Send + 'a>>;

/// Awaits `writes` after polling each once while the writer's `lock` is
/// held, so they are all queued before the writer may take any.
async fn queued_together<R>(
    lock: &WriteLock,
    mut writes: Vec<Pending<'_, R>>,
) -> Vec<Result<R, TxError>> {
    let held = lock.lock().await;
    for write in &mut writes {
        // The first poll queues the write; it cannot finish while the lock is held.
        assert!(futures::poll!(write.as_mut()).is_pending());
    }
    drop(held);
    futures::future::join_all(writes).await
}

/// How many conversations, messages, notifications and audit rows are stored.
async fn stored_rows(store: &SqliteStore) -> [i64; 4] {
    let mut conn = store.pool().get().await.unwrap();
    [
        conversations::table
            .count()
            .get_result(&mut conn)
            .await
            .unwrap(),
        messages::table.count().get_result(&mut conn).await.unwrap(),
        notifications::table
            .count()
            .get_result(&mut conn)
            .await
            .unwrap(),
        messaging_audit_log::table
            .count()
            .get_result(&mut conn)
            .await
            .unwrap(),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_that_fails_midway_inside_a_group_is_rolled_back_alone_and_the_group_commits() {
    let (_db, store) = migrated_store().await;
    let lock = WriteLock::default();
    let paths = SqliteHotPaths::new(store.pool().clone(), Some(lock.clone()));
    let t = tenant("acme");
    let mut sends: Vec<NewMessage> = (0..10)
        .map(|i| {
            let (from, to) = (user(&format!("s{i}")), user(&format!("r{i}")));
            new_message(&t, &from, &to, "bonjour", at(i))
        })
        .collect();
    // The sixth send reuses the third one's notification id: it creates its
    // conversation and stores its message, then fails on the notification.
    sends[5].notification.id = sends[2].notification.id;
    let writes = sends
        .iter()
        .map(|new| {
            let first = ConversationRow::first_for(new).unwrap();
            paths.send(SendInput::new(new, first))
        })
        .collect();

    let answers = queued_together(&lock, writes).await;

    let failed: Vec<usize> = (0..answers.len())
        .filter(|&i| answers[i].is_err())
        .collect();
    assert_eq!(failed, vec![5]);
    assert_eq!(
        paths.write_statistics(),
        WriteStatistics {
            groups: 1,
            grouped: 10,
            failed_in_groups: 1
        }
    );
    // Nothing of the failed send stayed; everything of the others did.
    // (Each stored send wrote a conversation.create and a message.send audit row.)
    assert_eq!(stored_rows(&store).await, [9, 9, 9, 18]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_longer_than_a_group_commits_in_several_groups() {
    let (_db, store) = migrated_store().await;
    let lock = WriteLock::default();
    let paths = SqliteHotPaths::new(store.pool().clone(), Some(lock.clone()));
    let queued = MAX_GROUP + 6;
    let writes = (0..queued)
        .map(|i| paths.audit(audit_row(&format!("row-{i}"))))
        .collect();

    let answers = queued_together(&lock, writes).await;

    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(
        paths.write_statistics(),
        WriteStatistics {
            groups: 2,
            grouped: queued as u64,
            failed_in_groups: 0
        }
    );
    assert_eq!(stored_rows(&store).await, [0, 0, 0, queued as i64]);
}

/// Runs `case` on a fresh store and returns its write statistics before and after.
async fn statistics_around<F, Fut>(case: F) -> (WriteStatistics, WriteStatistics)
where
    F: FnOnce(Ports) -> Fut,
    Fut: Future<Output = ()>,
{
    let (_db, store) = migrated_store().await;
    let before = store.write_statistics();
    case(Ports::from_store(store.clone())).await;
    (before, store.write_statistics())
}

/// Checks that writes were grouped, and that no more than `failing` writes
/// (those the case makes fail) failed inside groups.
fn assert_grouped(before: WriteStatistics, after: WriteStatistics, failing: u64) {
    assert_eq!(before, WriteStatistics::default());
    assert!(after.groups >= 1, "{after:?}");
    assert!(
        after.grouped >= 2 * after.groups,
        "a group holds several writes: {after:?}"
    );
    assert!(after.failed_in_groups <= failing, "{after:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sends_share_commits() {
    let (before, after) = statistics_around(
        afritalk_contract::cases::concurrent_sends_across_conversations_each_get_their_own_answer,
    )
    .await;
    // One send (its notification id taken) fails, in a group or alone.
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
async fn concurrent_audit_rows_share_commits() {
    let (before, after) = statistics_around(
        afritalk_contract::cases::concurrent_audit_appends_each_get_their_own_answer,
    )
    .await;
    // The row whose id was stored before, and one of the two appends of one
    // new id, fail, in groups or alone.
    assert_grouped(before, after, 2);
}
