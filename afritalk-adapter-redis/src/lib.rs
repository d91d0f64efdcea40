//! # afritalk-adapter-redis
//!
//! The adapters that let several identical AfriTalk nodes behave as one:
//! presence, realtime event fan-out and rate limiting shared through Redis.
//! Commands go through a [`deadpool_redis::Pool`], from which each adapter
//! takes one multiplexed connection that all its calls share (`commands.rs`
//! says why); the event bus's subscriber
//! holds its own dedicated pub/sub connection and re-subscribes by itself
//! after Redis restarts.
//!
//! Redis here is a shared cache, not a store: it keeps nothing on disk. Each
//! piece is built so that losing its data is repaired without a restart —
//! presence by the nodes' periodic [`RedisPresence::reannounce`], the bus by
//! its reconnect loop (clients catch up from the store), the limiter by
//! starting fresh windows.
//!
//! Every key and channel lives under a configurable prefix (`afritalk:` by
//! default, see [`DEFAULT_PREFIX`]), so several deployments or parallel tests
//! can share one Redis without seeing each other.
//!
//! ## Layout
//! - [`presence`]: live connections per user as a sorted set scored by expiry,
//!   `lastSeen` per tenant, all updates in Lua scripts ([`RedisPresence`],
//!   configured by [`PresenceOptions`]); each node's connections, so that the
//!   users of a node that crashed are adopted by another ([`Orphans`]).
//! - [`bus`]: publishes `(audience, event name, payload)` to one channel and runs
//!   the node's reconnecting subscriber that hands each event to the attached
//!   [`EventSink`](afritalk_ports::EventSink) ([`RedisEventBus`], [`BusOptions`],
//!   counters in [`BusMetrics`]).
//! - [`rate_limit`]: a sliding-window log per tenant, user and action, checked
//!   and recorded atomically in Lua ([`RedisRateLimiter`], configured by
//!   [`RateLimits`](afritalk_ports::RateLimits)).
//!
//! ## Wiring
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use afritalk_adapter_redis::{
//!     BusOptions, PresenceOptions, RedisEventBus, RedisPresence, RedisRateLimiter,
//!     connect_pool, DEFAULT_PREFIX,
//! };
//! use afritalk_ports::{EventPublisher, PresenceTracker, RateLimiter, RateLimits};
//!
//! # async fn wire() -> Result<(), afritalk_ports::StoreError> {
//! let url = "redis://127.0.0.1:6379";
//! let pool = connect_pool(url, 16)?;
//! let presence = Arc::new(RedisPresence::new(pool.clone(), DEFAULT_PREFIX, PresenceOptions::default()));
//! let bus = Arc::new(RedisEventBus::new(url, pool.clone(), DEFAULT_PREFIX, BusOptions::default())?);
//! let limiter = Arc::new(RedisRateLimiter::new(pool, DEFAULT_PREFIX, RateLimits::default()));
//! // ...build the service with them, then the realtime gateway, then:
//! // bus.attach(gateway_sink);
//! # let _: (Arc<dyn PresenceTracker>, Arc<dyn EventPublisher>, Arc<dyn RateLimiter>) = (presence, bus, limiter);
//! # Ok(())
//! # }
//! ```

pub mod bus;
mod commands;
pub mod presence;
pub mod rate_limit;

use std::fmt::Display;
use std::time::Duration;

use afritalk_ports::{StoreError, StoreResult};
use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};

pub use bus::{BusMetrics, BusOptions, RedisEventBus};
pub use deadpool_redis;
pub use presence::{Orphans, PresenceOptions, RedisPresence};
pub use rate_limit::RedisRateLimiter;

/// The key and channel prefix used when the operator configures none.
pub const DEFAULT_PREFIX: &str = "afritalk:";

/// How long pool operations (waiting for a slot, connecting, recycling) may take
/// before a call fails as `Unavailable` instead of hanging on a dead Redis.
const POOL_TIMEOUT: Duration = Duration::from_secs(2);

/// Builds a pool of at most `max_size` multiplexed connections to `url`, with
/// short timeouts so a dead Redis fails calls quickly. Connects lazily.
pub fn connect_pool(url: &str, max_size: usize) -> StoreResult<Pool> {
    let mut config = Config::from_url(url);
    let mut pool = PoolConfig::new(max_size.max(1));
    pool.timeouts = Timeouts {
        wait: Some(POOL_TIMEOUT),
        create: Some(POOL_TIMEOUT),
        recycle: Some(POOL_TIMEOUT),
    };
    config.pool = Some(pool);
    config
        .create_pool(Some(Runtime::Tokio1))
        .map_err(|e| unavailable("creating the Redis pool", e))
}

/// The oldest Redis these adapters work with: their scripts use `ZADD … GT`
/// and `ZMSCORE`, both new in 6.2. An older server would fail every presence
/// write with a script error, so a node refuses to start on one.
pub const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// The version the Redis behind `pool` reports (`redis_version` of `INFO
/// server`; Redis-compatible servers such as Valkey report the Redis version
/// they match), as major, minor and patch numbers.
pub async fn server_version(pool: &Pool) -> StoreResult<(u32, u32, u32)> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| unavailable("checking the server version", e))?;
    let info: String = deadpool_redis::redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .map_err(|e| unavailable("checking the server version", e))?;
    parse_version(&info).ok_or_else(|| {
        StoreError::Unavailable("redis: INFO server reports no redis_version".into())
    })
}

/// Whether `version` is at least [`MIN_REDIS_VERSION`].
pub fn supported(version: (u32, u32, u32)) -> bool {
    (version.0, version.1) >= MIN_REDIS_VERSION
}

/// The `redis_version` line of an `INFO` answer.
fn parse_version(info: &str) -> Option<(u32, u32, u32)> {
    let raw = info
        .lines()
        .find_map(|line| line.trim().strip_prefix("redis_version:"))?;
    let mut parts = raw.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// Wraps a Redis failure as `Unavailable`, saying what was being done.
pub(crate) fn unavailable(context: &str, error: impl Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {context}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_info_and_6_2_is_the_oldest_supported() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(parse_version(info), Some((7, 0, 15)));
        assert_eq!(parse_version("redis_version:6.2\r\n"), Some((6, 2, 0)));
        assert_eq!(parse_version("# Server\r\nuptime:3\r\n"), None);
        assert_eq!(parse_version("redis_version:seven\r\n"), None);
        assert!(supported((6, 2, 0)));
        assert!(supported((7, 0, 15)));
        assert!(!supported((6, 0, 16)));
        assert!(!supported((5, 9, 9)));
    }
}
