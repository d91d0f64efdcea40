//! Short-lived read-through caches for the two ports read on every message: the
//! tenant's messaging flag and directory entries. Each wraps any adapter of its
//! port; writes through this node go to the adapter and refresh the cache at
//! once, while a change made elsewhere (another node, an embedding service's own
//! directory) is seen within the time-to-live.
//!
//! Entries in use are read again before they expire, in the background and in
//! bulk: `refresh` (which the server calls a few times per time-to-live) reads
//! every entry served since it was stored and now past half its life, the
//! directory's in one query per tenant. Without it every entry expired on the
//! hot path: entries stored together (a tenant's users connecting at the start
//! of a shift) expired together, and at 5,000 messages/s each expiry meant
//! thousands of single-row reads within a second, queued with the sends (p99
//! 56–241 ms against 32 ms with no expiry). An entry never served older than the
//! time-to-live either way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use afritalk_ports::{
    Clock, Directory, DirectoryQuery, DirectoryUser, FeatureFlags, StoreResult, TenantId, UserId,
};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

/// The most users one refresh query asks the directory for.
const REFRESH_BATCH: usize = 500;

/// A cached value, when it was read from the adapter, and whether it was served
/// since (only entries in use are worth reading again).
struct Entry<V> {
    read_at: DateTime<Utc>,
    value: V,
    served: bool,
}

/// Entries older than the time-to-live are read again from the adapter.
struct TtlMap<K, V> {
    ttl: TimeDelta,
    entries: Mutex<HashMap<K, Entry<V>>>,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> TtlMap<K, V> {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl: TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Entry<V>>> {
        // A poisoned cache only loses freshness, never correctness: keep using it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &K, now: DateTime<Utc>) -> Option<V> {
        let mut entries = self.lock();
        let entry = entries.get_mut(key)?;
        if now - entry.read_at >= self.ttl {
            return None;
        }
        entry.served = true;
        Some(entry.value.clone())
    }

    fn put(&self, key: K, value: V, read_at: DateTime<Utc>) {
        self.insert(&mut self.lock(), key, value, read_at);
    }

    /// Stores a value just read, not yet served.
    fn insert(&self, entries: &mut HashMap<K, Entry<V>>, key: K, value: V, read_at: DateTime<Utc>) {
        // Bound memory: expired entries go whenever the map grows large.
        if entries.len() >= 100_000 {
            let ttl = self.ttl;
            entries.retain(|_, e| read_at - e.read_at < ttl);
        }
        let entry = Entry {
            read_at,
            value,
            served: false,
        };
        entries.insert(key, entry);
    }

    /// Drops the expired entries and returns the keys of those served since
    /// they were read and now past half their life: what a refresh reads again.
    fn aging(&self, now: DateTime<Utc>) -> Vec<K> {
        let mut entries = self.lock();
        let ttl = self.ttl;
        entries.retain(|_, e| now - e.read_at < ttl);
        entries
            .iter()
            .filter(|(_, e)| e.served && now - e.read_at >= ttl / 2)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Stores what a refresh read at `read_at` (`None`: gone from the adapter),
    /// unless this node wrote the entry since: its own write is newer.
    fn refreshed(&self, key: K, value: Option<V>, read_at: DateTime<Utc>) {
        let mut entries = self.lock();
        if entries.get(&key).is_some_and(|e| e.read_at > read_at) {
            return;
        }
        match value {
            Some(value) => self.insert(&mut entries, key, value, read_at),
            None => {
                entries.remove(&key);
            }
        }
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

    /// Reads again the flags served since they were read and now past half
    /// their life (see the module documentation); returns how many.
    pub async fn refresh(&self) -> StoreResult<usize> {
        let now = self.clock.now();
        let due = self.cache.aging(now);
        for tenant in &due {
            let enabled = self.inner.messaging_enabled(tenant).await?;
            self.cache.refreshed(tenant.clone(), Some(enabled), now);
        }
        Ok(due.len())
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

    /// Reads again, in one query per tenant (of up to 500 users), the entries
    /// served since they were read and now past half their life (see the
    /// module documentation); a user gone from the directory leaves the cache.
    /// Returns how many entries were read.
    pub async fn refresh(&self) -> StoreResult<usize> {
        let now = self.clock.now();
        let mut due: HashMap<TenantId, Vec<UserId>> = HashMap::new();
        for (tenant, user) in self.cache.aging(now) {
            due.entry(tenant).or_default().push(user);
        }
        let mut read = 0;
        for (tenant, users) in due {
            for batch in users.chunks(REFRESH_BATCH) {
                let mut found: HashMap<UserId, DirectoryUser> = self
                    .inner
                    .users(&tenant, batch)
                    .await?
                    .into_iter()
                    .map(|u| (u.user_id.clone(), u))
                    .collect();
                for user in batch {
                    let entry = found.remove(user);
                    self.cache
                        .refreshed((tenant.clone(), user.clone()), entry, now);
                }
                read += batch.len();
            }
        }
        Ok(read)
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

    async fn record_identity(&self, user: DirectoryUser) -> StoreResult<DirectoryUser> {
        let stored = self.inner.record_identity(user).await?;
        let key = (stored.tenant_id.clone(), stored.user_id.clone());
        self.cache.put(key, stored.clone(), self.clock.now());
        Ok(stored)
    }

    async fn search(
        &self,
        tenant: &TenantId,
        query: &DirectoryQuery,
    ) -> StoreResult<Vec<DirectoryUser>> {
        // A person looking for a colleague expects today's directory: never cached.
        self.inner.search(tenant, query).await
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

    /// A directory cache with a 5 s ttl over `inner`.
    fn cached_over(inner: Arc<dyn Directory>, clock: &Arc<ManualClock>) -> CachedDirectory {
        CachedDirectory::new(inner, clock.clone(), Duration::from_secs(5))
    }

    /// The user the tests look up.
    fn awa() -> (TenantId, UserId) {
        (
            TenantId::parse("acme").unwrap(),
            UserId::parse("awa").unwrap(),
        )
    }

    /// The role the cache answers for `awa`.
    fn role_of(cached: &CachedDirectory) -> Role {
        let (t, u) = awa();
        block_on(cached.user(&t, &u)).unwrap().unwrap().role
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
        let cached = cached_over(Arc::new(store.clone()), &clock);
        let (t, u) = awa();
        // Absence is not cached: a user added elsewhere is found at once.
        assert_eq!(block_on(cached.user(&t, &u)).unwrap(), None);
        block_on(Directory::upsert(&store, entry(Role::Dg, true))).unwrap();
        assert_eq!(
            block_on(cached.user(&t, &u)).unwrap(),
            Some(entry(Role::Dg, true))
        );
        // A change made elsewhere is seen once the entry is older than the ttl.
        block_on(Directory::upsert(&store, entry(Role::Pdg, true))).unwrap();
        assert_eq!(role_of(&cached), Role::Dg);
        advance(&clock, TimeDelta::seconds(5));
        assert_eq!(role_of(&cached), Role::Pdg);
    }

    #[test]
    fn a_change_made_through_the_cache_is_seen_at_once() {
        let (store, clock) = setup();
        let cached = CachedDirectory::new(Arc::new(store), clock, Duration::from_secs(60));
        let (t, u) = awa();
        block_on(cached.upsert(entry(Role::Dg, true))).unwrap();
        assert_eq!(role_of(&cached), Role::Dg);
        block_on(cached.upsert(entry(Role::Dg, false))).unwrap();
        assert!(!block_on(cached.user(&t, &u)).unwrap().unwrap().active);
    }

    #[test]
    fn an_entry_in_use_is_read_again_in_bulk_before_it_expires() {
        let (store, clock) = setup();
        let cached = cached_over(Arc::new(store.clone()), &clock);
        let (t, u) = awa();
        block_on(Directory::upsert(&store, entry(Role::Dg, true))).unwrap();
        block_on(cached.user(&t, &u)).unwrap();
        block_on(cached.user(&t, &u)).unwrap();
        block_on(Directory::upsert(&store, entry(Role::Pdg, true))).unwrap();
        // Younger than half the ttl: nothing to read yet.
        advance(&clock, TimeDelta::milliseconds(2_400));
        assert_eq!(block_on(cached.refresh()).unwrap(), 0);
        advance(&clock, TimeDelta::milliseconds(100));
        assert_eq!(block_on(cached.refresh()).unwrap(), 1);
        // Served from the refreshed entry, without a read: a later change
        // elsewhere is not seen until the next refresh or expiry.
        block_on(Directory::upsert(&store, entry(Role::Employe, true))).unwrap();
        assert_eq!(role_of(&cached), Role::Pdg);
        // Refreshed at 2.5 s, so still fresh at 7 s, past the first read's ttl.
        advance(&clock, TimeDelta::milliseconds(4_500));
        assert_eq!(role_of(&cached), Role::Pdg);
    }

    #[test]
    fn an_entry_not_served_since_it_was_read_is_left_to_expire() {
        let (store, clock) = setup();
        let cached = cached_over(Arc::new(store.clone()), &clock);
        let (t, u) = awa();
        block_on(Directory::upsert(&store, entry(Role::Dg, true))).unwrap();
        block_on(cached.user(&t, &u)).unwrap();
        advance(&clock, TimeDelta::seconds(4));
        assert_eq!(block_on(cached.refresh()).unwrap(), 0);
        block_on(Directory::upsert(&store, entry(Role::Pdg, true))).unwrap();
        advance(&clock, TimeDelta::seconds(1));
        assert_eq!(role_of(&cached), Role::Pdg);
    }

    /// A directory whose users have all been removed since they were cached.
    struct Emptied(DirectoryUser);

    #[async_trait]
    impl Directory for Emptied {
        async fn user(&self, _: &TenantId, _: &UserId) -> StoreResult<Option<DirectoryUser>> {
            Ok(Some(self.0.clone()))
        }
        async fn users(&self, _: &TenantId, _: &[UserId]) -> StoreResult<Vec<DirectoryUser>> {
            Ok(Vec::new())
        }
        async fn upsert(&self, user: DirectoryUser) -> StoreResult<DirectoryUser> {
            Ok(user)
        }
        async fn record_identity(&self, user: DirectoryUser) -> StoreResult<DirectoryUser> {
            Ok(user)
        }
        async fn search(
            &self,
            _: &TenantId,
            _: &DirectoryQuery,
        ) -> StoreResult<Vec<DirectoryUser>> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_user_gone_from_the_directory_leaves_the_cache_at_the_refresh() {
        let (_, clock) = setup();
        let cached = cached_over(Arc::new(Emptied(entry(Role::Dg, true))), &clock);
        let (t, u) = awa();
        block_on(cached.user(&t, &u)).unwrap();
        block_on(cached.user(&t, &u)).unwrap();
        advance(&clock, TimeDelta::seconds(3));
        assert_eq!(block_on(cached.refresh()).unwrap(), 1);
        assert!(cached.cache.lock().is_empty());
    }

    #[test]
    fn a_refresh_does_not_undo_a_newer_write_of_this_node() {
        let start = DateTime::from_timestamp(1_763_700_000, 0).unwrap();
        let map: TtlMap<&str, u8> = TtlMap::new(Duration::from_secs(5));
        map.put("k", 2, start + TimeDelta::seconds(1));
        map.refreshed("k", Some(1), start);
        map.refreshed("k", None, start);
        assert_eq!(map.get(&"k", start + TimeDelta::seconds(2)), Some(2));
        map.refreshed("k", Some(3), start + TimeDelta::seconds(2));
        assert_eq!(map.get(&"k", start + TimeDelta::seconds(2)), Some(3));
    }

    #[test]
    fn a_flag_in_use_is_read_again_before_it_expires() {
        let (store, clock) = setup();
        let flags = CachedFeatureFlags::new(
            Arc::new(store.clone()),
            clock.clone(),
            Duration::from_secs(5),
        );
        let t = TenantId::parse("acme").unwrap();
        assert!(block_on(flags.messaging_enabled(&t)).unwrap());
        assert!(block_on(flags.messaging_enabled(&t)).unwrap());
        block_on(FeatureFlags::set_messaging_enabled(&store, &t, false)).unwrap();
        advance(&clock, TimeDelta::seconds(3));
        assert_eq!(block_on(flags.refresh()).unwrap(), 1);
        assert!(!block_on(flags.messaging_enabled(&t)).unwrap());
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
