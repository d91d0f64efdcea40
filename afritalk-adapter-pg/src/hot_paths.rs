//! `PgStore`'s writes of the hot paths: sends, first deliveries and audit
//! rows, each through its own batcher (see `batcher.rs`).

use afritalk_adapter_sql::TxError;
use afritalk_adapter_sql::hot_paths::{DeliveryInput, HotPaths, SendInput, WriteLock};
use afritalk_adapter_sql::rows::{AuditRow, MessageRow, SendRows};
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::Pool;

use crate::audit::AuditWrite;
use crate::batcher::{BatchStatistics, Batcher};
use crate::delivery::DeliveryWrite;
use crate::send_batch::SendWrite;

/// The hot paths of `PgStore` (its `hot_paths` in `sql_store!`).
#[derive(Clone)]
pub struct PgHotPaths {
    sends: Batcher<SendWrite>,
    deliveries: Batcher<DeliveryWrite>,
    audit: Batcher<AuditWrite>,
}

impl std::fmt::Debug for PgHotPaths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgHotPaths")
            .field("sends", &self.sends.statistics())
            .field("deliveries", &self.deliveries.statistics())
            .field("audit", &self.audit.statistics())
            .finish()
    }
}

impl PgHotPaths {
    /// How sends were written so far.
    pub(crate) fn send_statistics(&self) -> BatchStatistics {
        self.sends.statistics()
    }

    /// How first deliveries were written so far.
    pub(crate) fn delivery_statistics(&self) -> BatchStatistics {
        self.deliveries.statistics()
    }

    /// How audit rows were written so far.
    pub(crate) fn audit_statistics(&self) -> BatchStatistics {
        self.audit.statistics()
    }
}

#[async_trait::async_trait]
impl HotPaths<Pool<AsyncPgConnection>> for PgHotPaths {
    // Postgres takes concurrent writes: its store has no write lock.
    fn new(pool: Pool<AsyncPgConnection>, _writer: Option<WriteLock>) -> Self {
        Self {
            sends: Batcher::new(SendWrite, pool.clone()),
            deliveries: Batcher::new(DeliveryWrite, pool.clone()),
            audit: Batcher::new(AuditWrite, pool),
        }
    }

    async fn send(&self, input: SendInput) -> Result<SendRows, TxError> {
        self.sends.write(input).await
    }

    async fn first_delivery(&self, input: DeliveryInput) -> Result<Option<MessageRow>, TxError> {
        self.deliveries.write(input).await
    }

    async fn audit(&self, row: AuditRow) -> Result<(), TxError> {
        self.audit.write(row).await
    }
}
