//! Test databases on the real Postgres, shared by this crate's test binaries.
//! Each test gets its own fresh database (dropped afterwards); leftovers of
//! crashed runs older than an hour are swept first.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

pub const PREFIX: &str = "afritalk_test_";

pub fn server_url() -> String {
    std::env::var("AFRITALK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

pub async fn admin() -> AsyncPgConnection {
    let url = format!("{}/postgres", server_url());
    AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|e| {
            panic!("Postgres is required for these tests and is unreachable at {url}: {e}")
        })
}

#[derive(QueryableByName)]
struct DbName {
    #[diesel(sql_type = Text)]
    datname: String,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Drops test databases whose name says they were created over an hour ago.
pub async fn sweep_leftovers(conn: &mut AsyncPgConnection) {
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

/// Creates a fresh, empty database and returns its name and URL.
pub async fn new_database(conn: &mut AsyncPgConnection) -> (String, String) {
    sweep_leftovers(conn).await;
    let name = format!("{PREFIX}{}_{}", now_secs(), uuid::Uuid::new_v4().simple());
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(conn)
        .await
        .unwrap();
    let url = format!("{}/{name}", server_url());
    (name, url)
}

/// Drops a database made by [`new_database`].
pub async fn drop_database(conn: &mut AsyncPgConnection, name: &str) {
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(conn)
        .await
        .unwrap();
}
