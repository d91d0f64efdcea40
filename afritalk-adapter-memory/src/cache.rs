//! Short-lived read-through caches for the two ports read on every message: the
//! tenant's messaging flag and directory entries. Each wraps any adapter of its
//! port; writes through this node go to the adapter and refresh the cache at
//! once, while a change made elsewhere (another node, an embedding service's own
//! directory) is seen within the time-to-live.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use afritalk_ports::{
    Clock, Directory, DirectoryUser, FeatureFlags, StoreResult, TenantId, UserId,
};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

/// Entries older than the time-to-live are read again from the adapter.
struct TtlMap<K, V> {
    ttl: TimeDelta,
    entries: Mutex<HashMap<K, (DateTime<Utc>, V)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> TtlMap<K, V> {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl: TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, (DateTime<Utc>, V)>> {
        // A poisoned cache only loses freshness, never correctness: keep using it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &K, now: DateTime<Utc>) -> Option<V> {
        let entries = self.lock();
        let (at, value) = entries.get(key)?;
        (now - *at < self.ttl).then(|| value.clone())
    }

    fn put(&self, key: K, value: V, now: DateTime<Utc>) {
        let mut entries = self.lock();
        // Bound memory: expired entries go whenever the map grows large.
        if entries.len() >= 100_000 {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| now - *at < ttl);
        }
        entries.insert(key, (now, value));
    }
}

/// [`FeatureFlags`] with each tenant's flag kept for a short time.
pub struct CachedFeatureFlags {
    inner: Arc<dyn FeatureFlags>,
    clock: Arc<dyn Clock>,
    cache: TtlMap<TenantId, bool>,
}

impl CachedFeatureFlags {
    /// Caches `inner`'s answers for `ttl`.
    pub fn new(inner: Arc<dyn FeatureFlags>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self {
            inner,
            clock,
            cache: TtlMap::new(ttl),
        }
    }
}

#[async_trait]
impl FeatureFlags for CachedFeatureFlags {
    async fn messaging_enabled(&self, tenant: &TenantId) -> StoreResult<bool> {
        let now = self.clock.now();
        if let Some(enabled) = self.cache.get(tenant, now) {
            return Ok(enabled);
        }
        let enabled = self.inner.messaging_enabled(tenant).await?;
        self.cache.put(tenant.clone(), enabled, now);
        Ok(enabled)
    }

    async fn set_messaging_enabled(&self, tenant: &TenantId, enabled: bool) -> StoreResult<()> {
        self.inner.set_messaging_enabled(tenant, enabled).await?;
        self.cache.put(tenant.clone(), enabled, self.clock.now());
        Ok(())
    }
}

/// [`Directory`] with found single-user lookups kept for a short time (absence is
/// not cached: a user just added on another node is found at once).
pub struct CachedDirectory {
    inner: Arc<dyn Directory>,
    clock: Arc<dyn Clock>,
    cache: TtlMap<(TenantId, UserId), DirectoryUser>,
}

impl CachedDirectory {
    /// Caches `inner`'s single-user answers for `ttl`.
    pub fn new(inner: Arc<dyn Directory>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self {
            inner,
            clock,
            cache: TtlMap::new(ttl),
        }
    }
}

#[async_trait]
impl Directory for CachedDirectory {
    async fn user(&self, tenant: &TenantId, user: &UserId) -> StoreResult<Option<DirectoryUser>> {
        let key = (tenant.clone(), user.clone());
        let now = self.clock.now();
        if let Some(found) = self.cache.get(&key, now) {
            return Ok(Some(found));
        }
        let found = self.inner.user(tenant, user).await?;
        if let Some(entry) = &found {
            self.cache.put(key, entry.clone(), now);
        }
        Ok(found)
    }

    async fn users(&self, tenant: &TenantId, users: &[UserId]) -> StoreResult<Vec<DirectoryUser>> {
        // Lists are one query already; they stay fresh.
        self.inner.users(tenant, users).await
    }

    async fn upsert(&self, user: DirectoryUser) -> StoreResult<DirectoryUser> {
        let stored = self.inner.upsert(user).await?;
        let key = (stored.tenant_id.clone(), stored.user_id.clone());
        self.cache.put(key, stored.clone(), self.clock.now());
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use afritalk_ports::{DisplayName, Role};
    use futures::executor::block_on;

    use super::*;
    use crate::MemoryStore;

    /// A clock the test moves by hand.
    struct ManualClock(StdMutex<DateTime<Utc>>);

    impl Clock for ManualClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    fn setup() -> (MemoryStore, Arc<ManualClock>) {
        let start = DateTime::from_timestamp(1_763_700_000, 0).unwrap();
        (
            MemoryStore::new(),
            Arc::new(ManualClock(StdMutex::new(start))),
        )
    }

    fn advance(clock: &ManualClock, by: TimeDelta) {
        *clock.0.lock().unwrap() += by;
    }

    fn entry(role: Role, active: bool) -> DirectoryUser {
        DirectoryUser {
            tenant_id: TenantId::parse("acme").unwrap(),
            user_id: UserId::parse("awa").unwrap(),
            display_name: DisplayName::parse("Awa").unwrap(),
            role,
            active,
        }
    }

    #[test]
    fn a_change_made_elsewhere_is_seen_after_the_ttl() {
        let (store, clock) = setup();
        let cached = CachedDirectory::new(
            Arc::new(store.clone()),
            clock.clone(),
            Duration::from_secs(5),
        );
        let (t, u) = (
            TenantId::parse("acme").unwrap(),
            UserId::parse("awa").unwrap(),
        );
        // Absence is not cached: a user added elsewhere is found at once.
        assert_eq!(block_on(cached.user(&t, &u)).unwrap(), None);
        block_on(Directory::upsert(&store, entry(Role::Dg, true))).unwrap();
        assert_eq!(
            block_on(cached.user(&t, &u)).unwrap(),
            Some(entry(Role::Dg, true))
        );
        // A change made elsewhere is seen once the entry is older than the ttl.
        block_on(Directory::upsert(&store, entry(Role::Pdg, true))).unwrap();
        assert_eq!(
            block_on(cached.user(&t, &u)).unwrap().unwrap().role,
            Role::Dg
        );
        advance(&clock, TimeDelta::seconds(5));
        assert_eq!(
            block_on(cached.user(&t, &u)).unwrap().unwrap().role,
            Role::Pdg
        );
    }

    #[test]
    fn a_change_made_through_the_cache_is_seen_at_once() {
        let (store, clock) = setup();
        let cached = CachedDirectory::new(Arc::new(store), clock, Duration::from_secs(60));
        let (t, u) = (
            TenantId::parse("acme").unwrap(),
            UserId::parse("awa").unwrap(),
        );
        block_on(cached.upsert(entry(Role::Dg, true))).unwrap();
        assert_eq!(
            block_on(cached.user(&t, &u)).unwrap().unwrap().role,
            Role::Dg
        );
        block_on(cached.upsert(entry(Role::Dg, false))).unwrap();
        assert!(!block_on(cached.user(&t, &u)).unwrap().unwrap().active);
    }

    #[test]
    fn the_flag_is_cached_and_refreshed_by_a_local_switch() {
        let (store, clock) = setup();
        let flags = CachedFeatureFlags::new(
            Arc::new(store.clone()),
            clock.clone(),
            Duration::from_secs(5),
        );
        let t = TenantId::parse("acme").unwrap();
        assert!(block_on(flags.messaging_enabled(&t)).unwrap());
        block_on(FeatureFlags::set_messaging_enabled(&store, &t, false)).unwrap();
        assert!(block_on(flags.messaging_enabled(&t)).unwrap(), "cached");
        advance(&clock, TimeDelta::seconds(6));
        assert!(
            !block_on(flags.messaging_enabled(&t)).unwrap(),
            "refreshed after the ttl"
        );
        block_on(flags.set_messaging_enabled(&t, true)).unwrap();
        assert!(
            block_on(flags.messaging_enabled(&t)).unwrap(),
            "local switch seen at once"
        );
    }
}
