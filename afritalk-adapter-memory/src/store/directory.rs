//! The directory and feature-flag side of [`MemoryStore`].

use std::collections::HashSet;

use afritalk_ports::{
    Directory, DirectoryQuery, DirectoryUser, FeatureFlags, NameKey, StoreResult, TenantId, UserId,
};
use async_trait::async_trait;

use super::MemoryStore;

#[async_trait]
impl Directory for MemoryStore {
    async fn user(&self, tenant: &TenantId, user: &UserId) -> StoreResult<Option<DirectoryUser>> {
        let state = self.lock();
        Ok(state
            .tenants
            .get(tenant)
            .and_then(|data| data.users.get(user))
            .cloned())
    }

    async fn users(&self, tenant: &TenantId, users: &[UserId]) -> StoreResult<Vec<DirectoryUser>> {
        let state = self.lock();
        let Some(data) = state.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        // Each user once, even if asked for twice.
        let mut seen = HashSet::new();
        Ok(users
            .iter()
            .filter(|user| seen.insert(*user))
            .filter_map(|user| data.users.get(user).cloned())
            .collect())
    }

    async fn upsert(&self, user: DirectoryUser) -> StoreResult<DirectoryUser> {
        let mut state = self.lock();
        state
            .tenants
            .entry(user.tenant_id.clone())
            .or_default()
            .users
            .insert(user.user_id.clone(), user.clone());
        Ok(user)
    }

    async fn record_identity(&self, user: DirectoryUser) -> StoreResult<DirectoryUser> {
        let mut state = self.lock();
        let users = &mut state
            .tenants
            .entry(user.tenant_id.clone())
            .or_default()
            .users;
        let stored = users
            .entry(user.user_id.clone())
            .and_modify(|existing| {
                existing.display_name = user.display_name.clone();
                existing.role = user.role;
            })
            .or_insert(user);
        Ok(stored.clone())
    }

    async fn search(
        &self,
        tenant: &TenantId,
        query: &DirectoryQuery,
    ) -> StoreResult<Vec<DirectoryUser>> {
        let state = self.lock();
        let Some(data) = state.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        let after = query.after.as_ref().map(|c| (&c.key, &c.user_id));
        let mut found: Vec<(NameKey, &DirectoryUser)> = data
            .users
            .values()
            .filter(|u| u.active || query.include_inactive)
            .map(|u| (NameKey::of(&u.display_name), u))
            .filter(|(key, _)| query.text.as_ref().is_none_or(|t| t.matches(key)))
            .filter(|(key, u)| after.is_none_or(|after| (key, &u.user_id) > after))
            .collect();
        found.sort_by(|(a, x), (b, y)| (a, &x.user_id).cmp(&(b, &y.user_id)));
        Ok(found
            .into_iter()
            .take(query.limit.get() as usize)
            .map(|(_, u)| u.clone())
            .collect())
    }
}

#[async_trait]
impl FeatureFlags for MemoryStore {
    async fn messaging_enabled(&self, tenant: &TenantId) -> StoreResult<bool> {
        let state = self.lock();
        Ok(state
            .messaging
            .get(tenant)
            .copied()
            .unwrap_or(state.messaging_default))
    }

    async fn set_messaging_enabled(&self, tenant: &TenantId, enabled: bool) -> StoreResult<()> {
        self.lock().messaging.insert(tenant.clone(), enabled);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use afritalk_ports::{DisplayName, Role};
    use futures::executor::block_on;

    use super::super::fixtures::*;
    use super::*;

    fn person(t: &TenantId, id: &str, name: &str, role: Role) -> DirectoryUser {
        DirectoryUser {
            tenant_id: t.clone(),
            user_id: user(id),
            display_name: DisplayName::parse(name).unwrap(),
            role,
            active: true,
        }
    }

    #[test]
    fn upsert_creates_then_replaces_within_the_tenant() {
        let store = MemoryStore::new();
        let (t, o) = (tenant("t"), tenant("o"));
        let awa = person(&t, "awa", "Awa", Role::Employe);
        assert_eq!(block_on(store.upsert(awa.clone())).unwrap(), awa);
        let other_awa = person(&o, "awa", "Awa Diop", Role::Pdg);
        block_on(store.upsert(other_awa.clone())).unwrap();

        let promoted = DirectoryUser {
            role: Role::Dg,
            active: false,
            ..awa.clone()
        };
        block_on(store.upsert(promoted.clone())).unwrap();
        assert_eq!(
            block_on(store.user(&t, &user("awa"))).unwrap(),
            Some(promoted)
        );
        assert_eq!(
            block_on(store.user(&o, &user("awa"))).unwrap(),
            Some(other_awa)
        );
        assert_eq!(
            block_on(store.user(&tenant("x"), &user("awa"))).unwrap(),
            None
        );
    }

    #[test]
    fn users_skips_absent_and_other_tenants() {
        let store = MemoryStore::new();
        let (t, o) = (tenant("t"), tenant("o"));
        let a = person(&t, "a", "A", Role::Pdg);
        let b = person(&t, "b", "B", Role::Dg);
        block_on(store.upsert(a.clone())).unwrap();
        block_on(store.upsert(b.clone())).unwrap();
        block_on(store.upsert(person(&o, "c", "C", Role::Dg))).unwrap();
        let mut found =
            block_on(store.users(&t, &[user("b"), user("c"), user("a"), user("b")])).unwrap();
        found.sort_by(|x, y| x.user_id.cmp(&y.user_id));
        assert_eq!(found, vec![a, b]);
        assert!(
            block_on(store.users(&tenant("x"), &[user("a")]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn messaging_flag_defaults_then_follows_each_tenant() {
        let store = MemoryStore::new();
        let (t, o) = (tenant("t"), tenant("o"));
        assert!(block_on(store.messaging_enabled(&t)).unwrap());
        block_on(store.set_messaging_enabled(&t, false)).unwrap();
        assert!(!block_on(store.messaging_enabled(&t)).unwrap());
        assert!(block_on(store.messaging_enabled(&o)).unwrap());

        let closed = MemoryStore::with_messaging_default(false);
        assert!(!block_on(closed.messaging_enabled(&t)).unwrap());
        block_on(closed.set_messaging_enabled(&t, true)).unwrap();
        assert!(block_on(closed.messaging_enabled(&t)).unwrap());
        assert!(!block_on(closed.messaging_enabled(&o)).unwrap());
    }

    #[test]
    fn clones_share_the_same_data() {
        let store = MemoryStore::default();
        let clone = store.clone();
        let t = tenant("t");
        block_on(clone.upsert(person(&t, "a", "A", Role::Pdg))).unwrap();
        assert!(block_on(store.user(&t, &user("a"))).unwrap().is_some());
    }
}
