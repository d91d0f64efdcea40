//! The storage contract against SQLite, each case on its own temporary file.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;

use afritalk_adapter_sqlite::SqliteStore;
use afritalk_contract::{Fixture, Ports};

fn temp_path() -> PathBuf {
    std::env::temp_dir()
        .join("afritalk-sqlite-tests")
        .join(format!("{}.db", uuid::Uuid::new_v4().simple()))
}

async fn fresh() -> Fixture {
    let path = temp_path();
    let store = SqliteStore::open(&path, 4).await.unwrap();
    store.migrate().await.unwrap();
    Fixture::new(Ports::from_store(store)).with_teardown(async move {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    })
}

afritalk_contract::storage_contract!(fresh);

#[tokio::test(flavor = "multi_thread")]
async fn reopening_a_file_keeps_its_data_and_migrate_is_idempotent() {
    use afritalk_ports::FeatureFlags;
    let path = temp_path();
    let tenant = afritalk_ports::TenantId::parse("acme").unwrap();
    {
        let store = SqliteStore::open(&path, 2).await.unwrap();
        store.migrate().await.unwrap();
        store.set_messaging_enabled(&tenant, false).await.unwrap();
    }
    let store = SqliteStore::open(&path, 2).await.unwrap();
    store.migrate().await.unwrap();
    assert!(!store.messaging_enabled(&tenant).await.unwrap());
    let other = afritalk_ports::TenantId::parse("globex").unwrap();
    let off_by_default = store.clone().with_messaging_default(false);
    assert!(!off_by_default.messaging_enabled(&other).await.unwrap());
    assert!(store.messaging_enabled(&other).await.unwrap());
    drop((store, off_by_default));
    let _ = std::fs::remove_file(&path);
}
