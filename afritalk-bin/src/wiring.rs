//! Picks and connects the adapters named by the configuration and assembles the
//! core's [`MessagingService`]. The only place that names concrete adapters.

use std::sync::Arc;
use std::time::Duration;

use afritalk_adapter_memory::{
    CachedDirectory, CachedFeatureFlags, LocalEventBus, LocalPresence, LocalRateLimiter,
    SystemClock, UuidV7Ids,
};
use afritalk_adapter_pg::{PgStore, StatisticsKeeping};
use afritalk_adapter_redis::{
    BusOptions, PresenceOptions, RedisEventBus, RedisPresence, RedisRateLimiter,
};
use afritalk_adapter_sqlite::SqliteStore;
use afritalk_core::{MessagingService, Ports};
use afritalk_ports::{
    AuditLog, Clock, Directory, EventPublisher, EventSink, FeatureFlags, MessageStore,
    NotificationStore, PresenceTracker, RateLimiter, StoreError, TenantId,
};

use crate::config::{Config, Database};

/// How often the Postgres store checks whether its tables need analyzing
/// (one small catalog query while autovacuum is off, a settings read otherwise).
const STATISTICS_CHECK_INTERVAL: Duration = Duration::from_secs(1);

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
    /// The read caches in front of the directory and the flags.
    pub read_caches: ReadCaches,
}

/// The read caches in front of the directory and the flags, kept concrete so
/// the server can refresh them in the background.
#[derive(Clone)]
pub struct ReadCaches {
    directory: Arc<CachedDirectory>,
    features: Arc<CachedFeatureFlags>,
}

impl ReadCaches {
    /// Reads again, every fifth of [`READ_CACHE_TTL`], the entries in use that
    /// are past half their life (see afritalk-adapter-memory's cache.rs), until
    /// the task is aborted.
    pub async fn keep_fresh(self) {
        let mut tick = tokio::time::interval(READ_CACHE_TTL / 5);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = self.directory.refresh().await {
                tracing::warn!(%err, "directory cache not refreshed; entries expire as usual");
            }
            if let Err(err) = self.features.refresh().await {
                tracing::warn!(%err, "flag cache not refreshed; entries expire as usual");
            }
        }
    }
}

/// How long a tenant's messaging flag and a directory entry are trusted before
/// being read again. They are read on every send and receipt; a change made on
/// another node (a deactivation, a role change, a tenant switched off) is seen
/// within this time, a change made through this node at once.
pub const READ_CACHE_TTL: Duration = Duration::from_secs(5);

impl Storage {
    fn from_store<S>(backend: &'static str, store: S) -> Self
    where
        S: MessageStore + NotificationStore + AuditLog + Directory + FeatureFlags + Clone + 'static,
    {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let read_caches = ReadCaches {
            directory: Arc::new(CachedDirectory::new(
                Arc::new(store.clone()),
                clock.clone(),
                READ_CACHE_TTL,
            )),
            features: Arc::new(CachedFeatureFlags::new(
                Arc::new(store.clone()),
                clock,
                READ_CACHE_TTL,
            )),
        };
        Self {
            backend,
            messages: Arc::new(store.clone()),
            notifications: Arc::new(store.clone()),
            audit: Arc::new(store),
            directory: read_caches.directory.clone(),
            features: read_caches.features.clone(),
            read_caches,
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
            if config.pg_analyze {
                // Ends with the store's pool; see afritalk-adapter-pg's statistics.rs.
                store.keep_statistics(
                    StatisticsKeeping::WhenAutovacuumIsOff,
                    STATISTICS_CHECK_INTERVAL,
                );
            }
            tracing::info!(analyze = config.pg_analyze, "storage: PostgreSQL");
            Ok(Storage::from_store("postgres", store))
        }
    }
}

/// The node's event bus, kept concrete so the gateway's sink can be attached.
pub enum Bus {
    /// Events stay in this process.
    Local(Arc<LocalEventBus>),
    /// Events cross nodes over Redis pub/sub.
    Redis(Arc<RedisEventBus>),
}

impl Bus {
    /// Connects the bus's receiving end to this node's sockets.
    pub fn attach(&self, sink: Arc<dyn EventSink>) -> Result<(), StoreError> {
        match self {
            Bus::Local(bus) => {
                bus.attach(sink);
                Ok(())
            }
            Bus::Redis(bus) => bus.attach(sink),
        }
    }

    fn publisher(&self) -> Arc<dyn EventPublisher> {
        match self {
            Bus::Local(bus) => bus.clone(),
            Bus::Redis(bus) => bus.clone(),
        }
    }
}

/// The realtime adapters: presence, event bus and rate limiter.
pub struct Realtime {
    /// Which adapters: `in-process` or `redis`.
    pub backend: &'static str,
    /// The event bus.
    pub bus: Bus,
    /// Presence.
    pub presence: Arc<dyn PresenceTracker>,
    /// The Redis presence, when presence is shared (for the heartbeat).
    pub shared_presence: Option<Arc<RedisPresence>>,
    /// The Redis command pool, when Redis is configured (for the start-up check).
    pub redis: Option<afritalk_adapter_redis::deadpool_redis::Pool>,
    /// Rate limiter.
    pub rate_limiter: Arc<dyn RateLimiter>,
}

/// A realtime backend could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("realtime (redis): {0}")]
pub struct RealtimeError(pub String);

/// Builds the realtime adapters: Redis when `REDIS_URL` is set, else in-process.
pub fn realtime(config: &Config, clock: Arc<SystemClock>) -> Result<Realtime, RealtimeError> {
    let limits = config.rate_limits;
    let Some(url) = &config.redis_url else {
        return Ok(Realtime {
            backend: "in-process",
            bus: Bus::Local(Arc::new(LocalEventBus::new())),
            presence: Arc::new(LocalPresence::new()),
            shared_presence: None,
            redis: None,
            rate_limiter: Arc::new(LocalRateLimiter::new(clock, limits)),
        });
    };
    let fail = |e: StoreError| RealtimeError(e.to_string());
    let pool =
        afritalk_adapter_redis::connect_pool(url.expose(), config.redis_pool_size).map_err(fail)?;
    let prefix = config.redis_prefix.clone();
    let presence = Arc::new(RedisPresence::new(
        pool.clone(),
        prefix.clone(),
        PresenceOptions {
            connection_ttl: config.presence_ttl,
            ..PresenceOptions::default()
        },
    ));
    let bus = RedisEventBus::new(
        url.expose(),
        pool.clone(),
        prefix.clone(),
        BusOptions::default(),
    )
    .map_err(fail)?;
    Ok(Realtime {
        backend: "redis",
        bus: Bus::Redis(Arc::new(bus)),
        presence: presence.clone(),
        shared_presence: Some(presence),
        redis: Some(pool.clone()),
        rate_limiter: Arc::new(RedisRateLimiter::new(pool, prefix, limits)),
    })
}

/// Refuses a Redis too old for the adapters' scripts, before serving. A Redis
/// that cannot be reached yet is only logged: the node starts, and its
/// adapters reconnect by themselves (it is not ready until they do).
pub async fn check_redis(realtime: &Realtime) -> Result<(), RealtimeError> {
    let Some(pool) = &realtime.redis else {
        return Ok(());
    };
    match afritalk_adapter_redis::server_version(pool).await {
        Ok(version) if afritalk_adapter_redis::supported(version) => {
            tracing::info!(version = ?version, "Redis version supported");
            Ok(())
        }
        Ok((major, minor, patch)) => {
            let (least_major, least_minor) = afritalk_adapter_redis::MIN_REDIS_VERSION;
            Err(RealtimeError(format!(
                "Redis {major}.{minor}.{patch} is too old: AfriTalk needs \
                 {least_major}.{least_minor} or later"
            )))
        }
        Err(err) => {
            tracing::warn!(%err, "Redis unreachable at start; its version is not checked");
            Ok(())
        }
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
        events: realtime.bus.publisher(),
        rate_limiter: realtime.rate_limiter.clone(),
        clock,
        ids: Arc::new(UuidV7Ids::new()),
    })
}
