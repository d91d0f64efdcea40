//! The storage contract against the in-memory store, which embedders use in
//! their own tests and which must keep the promises the SQL backends keep.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use afritalk_adapter_memory::MemoryStore;
use afritalk_contract::{Fixture, Ports};

async fn fresh() -> Fixture {
    Fixture::new(Ports::from_store(MemoryStore::new()))
}

afritalk_contract::storage_contract!(fresh);
