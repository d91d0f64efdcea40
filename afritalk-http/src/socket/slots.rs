//! A cap on the sockets one user holds open on this node. A socket costs the
//! node memory for as long as it stays open (about 27 KiB idle, see
//! `docs/benchmarks.md`), and the connect rate limit only slows a client that
//! opens sockets without closing them: one valid token could otherwise grow a
//! node's memory without bound. The cap is per node because memory is; a user's
//! devices spread over several nodes get the cap on each.
//!
//! A slot is taken at the handshake, before anything is recorded, and given
//! back when the socket is dropped, however it ends (closed, refused later in
//! the handshake, or abandoned by the client before its connect packet).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use afritalk_ports::{TenantId, UserId};

/// The open sockets of each user of this node, against the cap.
#[derive(Debug)]
pub(crate) struct SocketSlots {
    max: usize,
    open: Mutex<HashMap<(TenantId, UserId), usize>>,
}

/// One open socket's place under its user's cap; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct SocketSlot {
    slots: Arc<SocketSlots>,
    key: (TenantId, UserId),
}

impl SocketSlots {
    /// Slots for at most `max` sockets per user (at least one).
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more socket of `user`, or `None` when they hold `max`.
    pub(crate) fn take(self: &Arc<Self>, tenant: &TenantId, user: &UserId) -> Option<SocketSlot> {
        let key = (tenant.clone(), user.clone());
        let mut open = self.lock();
        let count = open.entry(key.clone()).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(SocketSlot {
            slots: Arc::clone(self),
            key,
        })
    }

    /// The most sockets one user may hold open on this node.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// How many sockets `user` holds open on this node.
    #[cfg(test)]
    fn open_of(&self, tenant: &TenantId, user: &UserId) -> usize {
        let key = (tenant.clone(), user.clone());
        self.lock().get(&key).copied().unwrap_or(0)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(TenantId, UserId), usize>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            // Users who left take no memory here.
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ids(tenant: &str, user: &str) -> (TenantId, UserId) {
        (
            TenantId::parse(tenant).unwrap(),
            UserId::parse(user).unwrap(),
        )
    }

    #[test]
    fn a_user_gets_at_most_max_slots_and_a_dropped_one_frees_its_place() {
        let slots = SocketSlots::new(2);
        let (t, awa) = ids("t1", "awa");
        let first = slots.take(&t, &awa).unwrap();
        let _second = slots.take(&t, &awa).unwrap();
        assert!(slots.take(&t, &awa).is_none(), "a third is refused");
        drop(first);
        assert_eq!(slots.open_of(&t, &awa), 1);
        assert!(
            slots.take(&t, &awa).is_some(),
            "the freed place is taken again"
        );
    }

    #[test]
    fn each_user_of_each_tenant_has_their_own_cap() {
        let slots = SocketSlots::new(1);
        let (t1, awa) = ids("t1", "awa");
        let (t2, bakary) = ids("t2", "bakary");
        let _held = slots.take(&t1, &awa).unwrap();
        assert!(slots.take(&t1, &awa).is_none());
        assert!(slots.take(&t1, &bakary).is_some(), "another user");
        assert!(
            slots.take(&t2, &awa).is_some(),
            "the same id in another tenant"
        );
    }

    #[test]
    fn users_without_sockets_leave_no_entry() {
        let slots = SocketSlots::new(3);
        let (t, awa) = ids("t1", "awa");
        let held: Vec<SocketSlot> = (0..3).map(|_| slots.take(&t, &awa).unwrap()).collect();
        assert_eq!(slots.open_of(&t, &awa), 3);
        drop(held);
        assert!(slots.lock().is_empty());
    }
}
