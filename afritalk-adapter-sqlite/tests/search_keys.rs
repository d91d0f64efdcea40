//! Directory rows written before the search key existed are folded when the
//! store migrates, so an upgraded deployment's directory search finds them.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use afritalk_adapter_sql::schema::directory_users;
use afritalk_adapter_sqlite::SqliteStore;
use afritalk_contract::fixtures::{directory_user, tenant};
use afritalk_ports::{Directory, DirectoryQuery, PageSize, Role, SearchText};
use common::TempDb;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

#[tokio::test]
async fn rows_older_than_the_search_key_are_folded_at_the_next_migration() {
    let db = TempDb::new();
    let store = SqliteStore::open(&db.0, 2).await.unwrap();
    store.migrate().await.unwrap();
    let t = tenant("acme");
    for (id, name) in [("u-1", "Élodie Koné"), ("u-2", "Awa"), ("u-3", "\u{301}")] {
        store
            .upsert(directory_user(&t, id, name, Role::Dg))
            .await
            .unwrap();
    }
    // As a release before the column left them.
    let mut conn = store.pool().get().await.unwrap();
    diesel::update(directory_users::table)
        .set(directory_users::search_key.eq(None::<String>))
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let query = DirectoryQuery {
        text: Some(SearchText::parse("elodie").unwrap()),
        after: None,
        include_inactive: false,
        limit: PageSize::DEFAULT,
    };
    assert!(store.search(&t, &query).await.unwrap().is_empty());

    store.migrate().await.unwrap();
    let found = store.search(&t, &query).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].user_id.as_str(), "u-1");
    let all = DirectoryQuery {
        text: None,
        ..query
    };
    assert_eq!(store.search(&t, &all).await.unwrap().len(), 3);
    // A name that folds to nothing is filled too, so the fill ends.
    assert_eq!(store.fill_search_keys().await.unwrap(), 0);
}
