//! In-process presence: which users of a tenant have live connections on this
//! node, and when each was last active. Statuses (online, idle, offline) are
//! derived from these facts by the core, not here.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use afritalk_ports::{
    ConnectionId, PresenceChange, PresenceRecord, PresenceTracker, StoreResult, TenantId, UserId,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Presence facts kept in process memory, for a single-node deployment.
///
/// Users are keyed by tenant first, so the same user id in two tenants names two
/// different people and a snapshot never reads another tenant's entries.
/// `last_seen` never moves backwards, so a late-arriving event cannot make a
/// user look less recently active than they were.
#[derive(Debug, Default)]
pub struct LocalPresence {
    tenants: Mutex<HashMap<TenantId, HashMap<UserId, Entry>>>,
}

/// One user's live connections and last activity.
#[derive(Debug)]
struct Entry {
    connections: HashSet<ConnectionId>,
    last_seen: DateTime<Utc>,
}

impl Entry {
    fn record(&self, user: &UserId) -> PresenceRecord {
        PresenceRecord {
            user_id: user.clone(),
            connections: u32::try_from(self.connections.len()).unwrap_or(u32::MAX),
            last_seen: self.last_seen,
        }
    }

    fn seen(&mut self, at: DateTime<Utc>) {
        self.last_seen = self.last_seen.max(at);
    }
}

impl LocalPresence {
    /// An empty tracker: nobody seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TenantId, HashMap<UserId, Entry>>> {
        // Every update below is a single infallible step, so a poisoned map is consistent.
        self.tenants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` to the user's entry (created on first sight) and reports before/after.
    fn update(
        &self,
        tenant: &TenantId,
        user: &UserId,
        at: DateTime<Utc>,
        change: impl FnOnce(&mut Entry),
    ) -> PresenceChange {
        let mut tenants = self.lock();
        let users = tenants.entry(tenant.clone()).or_default();
        let before = users.get(user).map(|entry| entry.record(user));
        let entry = users.entry(user.clone()).or_insert_with(|| Entry {
            connections: HashSet::new(),
            last_seen: at,
        });
        change(entry);
        PresenceChange {
            before,
            after: entry.record(user),
        }
    }
}

#[async_trait]
impl PresenceTracker for LocalPresence {
    async fn connect(
        &self,
        tenant: &TenantId,
        user: &UserId,
        connection: &ConnectionId,
        at: DateTime<Utc>,
    ) -> StoreResult<PresenceChange> {
        Ok(self.update(tenant, user, at, |entry| {
            entry.connections.insert(connection.clone());
            entry.seen(at);
        }))
    }

    async fn disconnect(
        &self,
        tenant: &TenantId,
        user: &UserId,
        connection: &ConnectionId,
        at: DateTime<Utc>,
    ) -> StoreResult<PresenceChange> {
        let mut tenants = self.lock();
        let entry = tenants
            .get_mut(tenant)
            .and_then(|users| users.get_mut(user));
        let Some(entry) = entry else {
            // Never seen: ignored, and not recorded (a stray disconnect must not
            // make up a user). The answer says what is known: no connection.
            return Ok(PresenceChange {
                before: None,
                after: PresenceRecord {
                    user_id: user.clone(),
                    connections: 0,
                    last_seen: at,
                },
            });
        };
        let before = entry.record(user);
        // Only the last connection's close is when the user was last seen:
        // closing one of several devices is not activity, and would make an
        // idle user show online again.
        if entry.connections.remove(connection) && entry.connections.is_empty() {
            entry.seen(at);
        }
        Ok(PresenceChange {
            before: Some(before),
            after: entry.record(user),
        })
    }

    async fn touch(
        &self,
        tenant: &TenantId,
        user: &UserId,
        at: DateTime<Utc>,
    ) -> StoreResult<PresenceChange> {
        Ok(self.update(tenant, user, at, |entry| entry.seen(at)))
    }

    async fn snapshot(&self, tenant: &TenantId) -> StoreResult<Vec<PresenceRecord>> {
        let tenants = self.lock();
        let mut records: Vec<PresenceRecord> = tenants
            .get(tenant)
            .map(|users| {
                users
                    .iter()
                    .map(|(user, entry)| entry.record(user))
                    .collect()
            })
            .unwrap_or_default();
        records.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        Ok(records)
    }

    async fn records(
        &self,
        tenant: &TenantId,
        users: &[UserId],
    ) -> StoreResult<Vec<PresenceRecord>> {
        let tenants = self.lock();
        let Some(known) = tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        let mut seen = std::collections::HashSet::new();
        Ok(users
            .iter()
            .filter(|user| seen.insert(*user))
            .filter_map(|user| known.get(user).map(|entry| entry.record(user)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use futures::executor::block_on;

    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn conn(id: &str) -> ConnectionId {
        ConnectionId::new(id)
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn records_reads_the_asked_users_once_each_and_skips_the_unseen() {
        let presence = LocalPresence::new();
        let (t, a, b) = (tenant("t"), user("a"), user("b"));
        block_on(presence.connect(&t, &a, &conn("c1"), t0())).unwrap();
        block_on(presence.touch(&t, &b, t0())).unwrap();
        let mut asked =
            block_on(presence.records(&t, &[b.clone(), user("x"), a.clone(), b.clone()])).unwrap();
        asked.sort_by(|x, y| x.user_id.cmp(&y.user_id));
        assert_eq!(asked, block_on(presence.snapshot(&t)).unwrap());
        assert!(
            block_on(presence.records(&tenant("o"), &[a]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn first_connect_reports_a_user_never_seen_before() {
        let presence = LocalPresence::new();
        let change =
            block_on(presence.connect(&tenant("t"), &user("u"), &conn("c1"), t0())).unwrap();
        assert_eq!(change.before, None);
        assert_eq!(change.after.connections, 1);
        assert_eq!(change.after.last_seen, t0());
        assert_eq!(change.after.user_id, user("u"));
    }

    #[test]
    fn connecting_the_same_connection_twice_counts_it_once() {
        let presence = LocalPresence::new();
        let (t, u) = (tenant("t"), user("u"));
        block_on(presence.connect(&t, &u, &conn("c1"), t0())).unwrap();
        let again = block_on(presence.connect(&t, &u, &conn("c1"), t0())).unwrap();
        assert_eq!(again.before.unwrap().connections, 1);
        assert_eq!(again.after.connections, 1);
        let second = block_on(presence.connect(&t, &u, &conn("c2"), t0())).unwrap();
        assert_eq!(second.after.connections, 2);
    }

    #[test]
    fn disconnect_forgets_the_connection_and_the_last_one_sets_last_seen() {
        let presence = LocalPresence::new();
        let (t, u) = (tenant("t"), user("u"));
        block_on(presence.connect(&t, &u, &conn("c1"), t0())).unwrap();
        block_on(presence.connect(&t, &u, &conn("c2"), t0())).unwrap();
        let later = t0() + TimeDelta::seconds(30);
        let change = block_on(presence.disconnect(&t, &u, &conn("c1"), later)).unwrap();
        assert_eq!(change.before.unwrap().connections, 2);
        assert_eq!(change.after.connections, 1);
        assert_eq!(
            change.after.last_seen,
            t0(),
            "closing one device is not activity"
        );
        let last = block_on(presence.disconnect(&t, &u, &conn("c2"), later)).unwrap();
        assert_eq!(last.after.connections, 0);
        assert_eq!(last.after.last_seen, later);
        // The user stays known (offline with a last_seen), not forgotten.
        let snapshot = block_on(presence.snapshot(&t)).unwrap();
        assert_eq!(snapshot, vec![last.after]);
    }

    #[test]
    fn disconnecting_an_unknown_connection_is_ignored() {
        let presence = LocalPresence::new();
        let (t, u) = (tenant("t"), user("u"));
        block_on(presence.connect(&t, &u, &conn("c1"), t0())).unwrap();
        let later = t0() + TimeDelta::seconds(30);
        let change = block_on(presence.disconnect(&t, &u, &conn("nope"), later)).unwrap();
        assert_eq!(change.before.as_ref(), Some(&change.after));
        assert_eq!(change.after.connections, 1);
        assert_eq!(change.after.last_seen, t0());

        // A user never seen is not made up by a stray disconnect.
        let stray = block_on(presence.disconnect(&t, &user("ghost"), &conn("c9"), later)).unwrap();
        assert_eq!(stray.before, None);
        assert_eq!(stray.after.connections, 0);
        assert_eq!(block_on(presence.snapshot(&t)).unwrap().len(), 1);
    }

    #[test]
    fn touch_records_activity_without_changing_connections() {
        let presence = LocalPresence::new();
        let (t, u) = (tenant("t"), user("u"));
        block_on(presence.connect(&t, &u, &conn("c1"), t0())).unwrap();
        let later = t0() + TimeDelta::seconds(45);
        let change = block_on(presence.touch(&t, &u, later)).unwrap();
        assert_eq!(change.before.unwrap().last_seen, t0());
        assert_eq!(change.after.last_seen, later);
        assert_eq!(change.after.connections, 1);

        // last_seen never goes back for a late event.
        let late = block_on(presence.touch(&t, &u, t0())).unwrap();
        assert_eq!(late.after.last_seen, later);

        let fresh = block_on(presence.touch(&t, &user("v"), later)).unwrap();
        assert_eq!(fresh.before, None);
        assert_eq!(fresh.after.connections, 0);
    }

    #[test]
    fn tenants_are_isolated_even_for_the_same_user_id() {
        let presence = LocalPresence::new();
        let (a, b, u) = (tenant("a"), tenant("b"), user("u"));
        block_on(presence.connect(&a, &u, &conn("c1"), t0())).unwrap();
        block_on(presence.connect(&a, &user("w"), &conn("c2"), t0())).unwrap();

        // The same user id in tenant b is someone else: never seen there.
        let in_b = block_on(presence.connect(&b, &u, &conn("c3"), t0())).unwrap();
        assert_eq!(in_b.before, None);
        assert_eq!(in_b.after.connections, 1);
        // A disconnect in b does not touch a's connection with the same id.
        block_on(presence.disconnect(&b, &u, &conn("c1"), t0())).unwrap();

        let snap_a = block_on(presence.snapshot(&a)).unwrap();
        assert_eq!(
            snap_a
                .iter()
                .map(|r| (r.user_id.as_str(), r.connections))
                .collect::<Vec<_>>(),
            vec![("u", 1), ("w", 1)]
        );
        let snap_b = block_on(presence.snapshot(&b)).unwrap();
        assert_eq!(snap_b.len(), 1);
        assert_eq!(snap_b[0].connections, 1);
        assert!(
            block_on(presence.snapshot(&tenant("c")))
                .unwrap()
                .is_empty()
        );
    }
}
