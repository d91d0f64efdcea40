//! Picks and connects the adapters named by the configuration and assembles the
//! core's [`MessagingService`]. The only place that names concrete adapters.

use std::sync::Arc;

use afritalk_adapter_memory::{
    LocalEventBus, LocalPresence, LocalRateLimiter, SystemClock, UuidV7Ids,
};
use afritalk_adapter_pg::PgStore;
use afritalk_adapter_sqlite::SqliteStore;
use afritalk_core::{MessagingService, Ports};
use afritalk_ports::{
    AuditLog, Directory, FeatureFlags, MessageStore, NotificationStore, StoreError, TenantId,
};

use crate::config::{Config, Database};

/// A storage backend could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
#[error("storage ({backend}): {reason}")]
pub struct StorageError {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// What went wrong.
    pub reason: String,
}

/// The storage ports, all served by one backend.
#[derive(Clone)]
pub struct Storage {
    /// Which backend: `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Messages and conversations.
    pub messages: Arc<dyn MessageStore>,
    /// Notifications.
    pub notifications: Arc<dyn NotificationStore>,
    /// Audit log.
    pub audit: Arc<dyn AuditLog>,
    /// Directory.
    pub directory: Arc<dyn Directory>,
    /// Feature flags.
    pub features: Arc<dyn FeatureFlags>,
}

impl Storage {
    fn from_store<S>(backend: &'static str, store: S) -> Self
    where
        S: MessageStore + NotificationStore + AuditLog + Directory + FeatureFlags + Clone + 'static,
    {
        Self {
            backend,
            messages: Arc::new(store.clone()),
            notifications: Arc::new(store.clone()),
            audit: Arc::new(store.clone()),
            directory: Arc::new(store.clone()),
            features: Arc::new(store),
        }
    }

    /// Whether the backend answers a query (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        // A flag lookup is the cheapest real query every backend supports.
        let probe =
            TenantId::parse("__readyz").map_err(|e| StoreError::Unavailable(e.to_string()))?;
        self.features.messaging_enabled(&probe).await.map(|_| ())
    }
}

/// Opens the configured backend and applies its pending migrations.
pub async fn open_storage(config: &Config) -> Result<Storage, StorageError> {
    match &config.database {
        Database::Sqlite(path) => {
            crate::keys::ensure_data_dir(&config.data_dir).map_err(|e| StorageError {
                backend: "sqlite",
                reason: e.to_string(),
            })?;
            let fail = |e: afritalk_adapter_sql::SetupError| StorageError {
                backend: "sqlite",
                reason: e.to_string(),
            };
            let store = SqliteStore::open(path, config.db_pool_size)
                .await
                .map_err(fail)?
                .with_messaging_default(config.messaging_default_enabled);
            store.migrate().await.map_err(fail)?;
            tracing::info!(path = %path.display(), "storage: SQLite (embedded default)");
            Ok(Storage::from_store("sqlite", store))
        }
        Database::Postgres(url) => {
            let fail = |e: afritalk_adapter_sql::SetupError| StorageError {
                backend: "postgres",
                reason: e.to_string(),
            };
            let store = PgStore::connect(url.expose(), config.db_pool_size)
                .await
                .map_err(fail)?
                .with_messaging_default(config.messaging_default_enabled);
            store.migrate().await.map_err(fail)?;
            tracing::info!("storage: PostgreSQL");
            Ok(Storage::from_store("postgres", store))
        }
    }
}

/// The node-local realtime adapters (presence, event bus, rate limiter).
pub struct Realtime {
    /// Which adapters: `in-process` (later: `redis`).
    pub backend: &'static str,
    /// The bus, kept concrete so the gateway's sink can be attached.
    pub bus: Arc<LocalEventBus>,
    /// Presence.
    pub presence: Arc<LocalPresence>,
    /// Rate limiter.
    pub rate_limiter: Arc<LocalRateLimiter>,
}

/// Builds the in-process realtime adapters.
pub fn in_process_realtime(clock: Arc<SystemClock>) -> Realtime {
    Realtime {
        backend: "in-process",
        bus: Arc::new(LocalEventBus::new()),
        presence: Arc::new(LocalPresence::new()),
        rate_limiter: Arc::new(LocalRateLimiter::with_defaults(clock)),
    }
}

/// Assembles the core service over storage and realtime adapters.
pub fn service(
    storage: &Storage,
    realtime: &Realtime,
    clock: Arc<SystemClock>,
) -> MessagingService {
    MessagingService::new(Ports {
        messages: storage.messages.clone(),
        notifications: storage.notifications.clone(),
        audit: storage.audit.clone(),
        directory: storage.directory.clone(),
        features: storage.features.clone(),
        presence: realtime.presence.clone(),
        events: realtime.bus.clone(),
        rate_limiter: realtime.rate_limiter.clone(),
        clock,
        ids: Arc::new(UuidV7Ids::new()),
    })
}
