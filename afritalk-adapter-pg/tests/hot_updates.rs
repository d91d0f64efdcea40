//! A send updates its conversation in place: no column of the update is
//! indexed, so Postgres writes a heap-only (HOT) version on the same page
//! instead of a new row version with an entry in every index of the table.
//!
//! Server: as for the contract tests (`AFRITALK_TEST_DATABASE_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use afritalk_adapter_pg::PgStore;
use afritalk_contract::fixtures::{at, new_message, tenant, user};
use afritalk_ports::MessageStore;
use common::{admin, drop_database, new_database};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// The conversations table's update counters, as the sessions reported them.
#[derive(QueryableByName, Debug)]
struct Updates {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    updated: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    hot: i64,
}

async fn conversation_updates(conn: &mut AsyncPgConnection) -> Updates {
    diesel::sql_query(
        "SELECT n_tup_upd AS updated, n_tup_hot_upd AS hot FROM pg_stat_user_tables \
         WHERE relname = 'conversations'",
    )
    .get_result(conn)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_update_their_conversation_in_place() {
    let mut admin_conn = admin().await;
    let (name, url) = new_database(&mut admin_conn).await;
    let store = PgStore::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();

    // The first send creates the conversation; the next 20 update it.
    let (t, a, b) = (tenant("acme"), user("awa"), user("bakary"));
    for i in 0..21 {
        store
            .send(new_message(&t, &a, &b, "bonjour", at(i)))
            .await
            .unwrap();
    }

    // A session reports its counts when it ends (or up to ten seconds after
    // its transactions while it idles): closing the pool makes that prompt.
    drop(store);
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut updates = conversation_updates(&mut conn).await;
    while updates.updated < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        updates = conversation_updates(&mut conn).await;
    }
    assert_eq!(updates.updated, 20, "{updates:?}");
    assert_eq!(updates.hot, 20, "every update in place: {updates:?}");

    drop(conn);
    drop_database(&mut admin_conn, &name).await;
}
