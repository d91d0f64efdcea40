//! # afritalk-adapter-sqlite
//!
//! AfriTalk's embedded default storage: one SQLite file (bundled SQLite, no
//! system library), through diesel's SQLite backend wrapped for async use.
//! [`SqliteStore`] implements `MessageStore`, `NotificationStore`, `AuditLog`,
//! `Directory` and `FeatureFlags` with the very queries of the Postgres adapter
//! (both come from `afritalk_adapter_sql::sql_store!`); it is cheap to clone.
//!
//! ```no_run
//! # async fn start() -> Result<(), afritalk_adapter_sql::SetupError> {
//! let store = afritalk_adapter_sqlite::SqliteStore::open("data/afritalk.db", 4).await?;
//! store.migrate().await?; // on start, or from `afritalk migrate`
//! # Ok(()) }
//! ```
//!
//! Every connection runs in WAL mode with `synchronous=FULL` (a send is
//! acknowledged only once durable), a busy timeout and foreign keys on. SQLite
//! has one writer at a time: writes queue on an in-process lock and open
//! `BEGIN IMMEDIATE` transactions, so they never fail with `SQLITE_BUSY`
//! between this process's connections; reads run in parallel. The writes every
//! message makes (send, ✓✓) wait in one queue and commit in groups, so under
//! load many of them share one commit's `fsync` (see `hot_paths.rs`).
//!
//! ## Layout
//! - this file: [`SqliteStore`] (defined by `afritalk_adapter_sql::sql_store!`,
//!   which holds every query), its constructor, connection setup and
//!   [`SqliteStore::migrate`].
//! - `hot_paths.rs`: [`SqliteHotPaths`](hot_paths::SqliteHotPaths), the
//!   writes of sends, first deliveries (✓✓) and audit rows: queued, and
//!   written in groups, one transaction and one `fsync` per group, each group
//!   in one hand-off to a blocking thread.
//! - `migrations/`: the SQLite flavour of the portable schema, embedded in the
//!   binary ([`MIGRATIONS`]).

pub mod hot_paths;

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use afritalk_adapter_sql::SetupError;
use diesel::SqliteConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// The SQLite migrations, embedded at build time.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The async-wrapped SQLite connection the store pools.
pub type AsyncSqliteConnection = SyncConnectionWrapper<SqliteConnection>;

/// Pragmas set on every new connection; the busy timeout first, so that the
/// others wait for a lock held by another connection too.
const CONNECTION_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; \
     PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = FULL; \
     PRAGMA foreign_keys = ON;";

afritalk_adapter_sql::sql_store! {
    /// AfriTalk storage in one SQLite file: every storage port over one connection pool.
    pub struct SqliteStore {
        connection: AsyncSqliteConnection,
        backend: diesel::sqlite::Sqlite,
        write_transaction: immediate_transaction,
        hot_paths: crate::hot_paths::SqliteHotPaths,
    }
}

impl SqliteStore {
    /// Opens (creating if needed, with its parent directories) the database file at
    /// `path` with a pool of at most `pool_size` connections, and checks that one
    /// connection works. Does not migrate: call [`SqliteStore::migrate`].
    pub async fn open(path: impl AsRef<Path>, pool_size: usize) -> Result<Self, SetupError> {
        let path = path.as_ref();
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| SetupError::Io { path, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir))?;
        }
        // Owner-only from the start, wherever it is (SQLite would create it
        // readable by everyone, and its -wal and -shm files copy its mode).
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(io(path)(err)),
        }
        let target = path.display().to_string();
        let mut config = ManagerConfig::<AsyncSqliteConnection>::default();
        // `Fast` recycling: a checked-out connection is not pinged (the
        // default, `Verified`, runs `SELECT 1` on every checkout, which here
        // is one more blocking-thread hand-off per port call, and a local
        // file cannot drop the connection). A connection whose transaction
        // state is broken is still discarded on return (`is_broken`).
        config.recycling_method = RecyclingMethod::Fast;
        config.custom_setup = Box::new(|url| {
            let url = url.to_owned();
            Box::pin(async move {
                let mut conn = AsyncSqliteConnection::establish(&url).await?;
                conn.batch_execute(CONNECTION_PRAGMAS)
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            })
        });
        let manager =
            AsyncDieselConnectionManager::<AsyncSqliteConnection>::new_with_config(&target, config);
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            // A call waits at most this for a connection, rather than for good.
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(5)))
            .build()
            .map_err(|e| SetupError::Pool {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        drop(pool.get().await.map_err(|e| SetupError::Pool {
            target,
            reason: e.to_string(),
        })?);
        Ok(Self::from_pool(pool, true))
    }

    /// How the hot paths' writes (sends, first deliveries, connect audit
    /// rows) were grouped into shared transactions so far.
    pub fn write_statistics(&self) -> hot_paths::WriteStatistics {
        self.hot_paths.write_statistics()
    }

    /// Applies the pending embedded migrations (idempotent; safe to run on every start).
    pub async fn migrate(&self) -> Result<(), SetupError> {
        let writer = self.write_lock().await;
        let conn = self
            .pool()
            .get()
            .await
            .map_err(|e| SetupError::Migration(format!("no connection: {e}")))?;
        let conn = diesel_async::pooled_connection::deadpool::Object::take(conn);
        tokio::task::spawn_blocking(move || {
            let mut wrapper: AsyncConnectionWrapper<AsyncSqliteConnection> =
                AsyncConnectionWrapper::from(conn);
            wrapper
                .run_pending_migrations(MIGRATIONS)
                .map(|_| ())
                .map_err(|e| SetupError::Migration(e.to_string()))
        })
        .await
        .map_err(|e| SetupError::Migration(format!("migration task failed: {e}")))??;
        // The fill takes the writer lock itself, a batch at a time.
        drop(writer);
        self.fill_search_keys()
            .await
            .map_err(|e| SetupError::Migration(format!("folding directory names: {e}")))?;
        Ok(())
    }
}
