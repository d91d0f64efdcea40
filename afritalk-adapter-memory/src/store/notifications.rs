//! The notification side of [`MemoryStore`].

use std::cmp::Reverse;
use std::collections::HashSet;

use afritalk_ports::{
    AuditEntry, MessageId, Notification, NotificationCursor, NotificationId, NotificationKind,
    NotificationStatus, NotificationStore, PageSize, StoreError, StoreResult, TenantId, UserId,
};
use async_trait::async_trait;

use super::messages::page;
use super::{MemoryStore, same_tenant, stored_audit, stored_notification};

#[async_trait]
impl NotificationStore for MemoryStore {
    async fn create(&self, notification: Notification, audit: AuditEntry) -> StoreResult<()> {
        same_tenant(&notification.tenant_id, &audit.tenant_id, "the audit row")?;
        let notification = stored_notification(notification);
        let mut state = self.lock();
        if state.audit_id_taken(audit.id) {
            return Err(StoreError::Conflict(format!(
                "audit row {} already exists",
                audit.id
            )));
        }
        let data = state
            .tenants
            .entry(notification.tenant_id.clone())
            .or_default();
        if data.notifications.contains_key(&notification.id) {
            return Err(StoreError::Conflict(format!(
                "notification {} already exists",
                notification.id
            )));
        }
        data.notifications.insert(notification.id, notification);
        data.audit.push(stored_audit(audit));
        Ok(())
    }

    async fn notification(
        &self,
        tenant: &TenantId,
        id: NotificationId,
    ) -> StoreResult<Option<Notification>> {
        let state = self.lock();
        Ok(state
            .tenants
            .get(tenant)
            .and_then(|data| data.notifications.get(&id))
            .cloned())
    }

    async fn list(
        &self,
        tenant: &TenantId,
        user: &UserId,
        after: Option<NotificationCursor>,
        include_archived: bool,
        limit: PageSize,
    ) -> StoreResult<Vec<Notification>> {
        let state = self.lock();
        let Some(data) = state.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        let mine: Vec<&Notification> = data
            .notifications
            .values()
            .filter(|n| &n.user_id == user)
            .filter(|n| include_archived || n.status != NotificationStatus::Archived)
            .collect();
        // Unread, read, archived (the enum's order), each newest first, ties by id desc.
        let key = |n: &&Notification| (n.status, Reverse(n.created_at), Reverse(n.id));
        let cursor = after.map(|c| (c.status, Reverse(c.created_at), Reverse(c.id)));
        Ok(page(mine, key, cursor, limit)
            .into_iter()
            .cloned()
            .collect())
    }

    async fn set_status(
        &self,
        tenant: &TenantId,
        user: &UserId,
        id: NotificationId,
        status: NotificationStatus,
    ) -> StoreResult<Notification> {
        let mut state = self.lock();
        let notification = state
            .tenants
            .get_mut(tenant)
            .and_then(|data| data.notifications.get_mut(&id))
            .filter(|n| &n.user_id == user)
            .ok_or(StoreError::NotFound)?;
        notification.status = notification.status.max(status);
        Ok(notification.clone())
    }

    async fn unread_count(&self, tenant: &TenantId, user: &UserId) -> StoreResult<u64> {
        let state = self.lock();
        Ok(state.tenants.get(tenant).map_or(0, |data| {
            data.notifications
                .values()
                .filter(|n| &n.user_id == user && n.status == NotificationStatus::Unread)
                .count() as u64
        }))
    }

    async fn mark_all_read(&self, tenant: &TenantId, user: &UserId) -> StoreResult<u64> {
        let mut state = self.lock();
        let Some(data) = state.tenants.get_mut(tenant) else {
            return Ok(0);
        };
        let mut changed = 0;
        for n in data.notifications.values_mut() {
            if &n.user_id == user && n.status == NotificationStatus::Unread {
                n.status = NotificationStatus::Read;
                changed += 1;
            }
        }
        Ok(changed)
    }

    async fn mark_read_for_messages(
        &self,
        tenant: &TenantId,
        user: &UserId,
        messages: &[MessageId],
    ) -> StoreResult<u64> {
        let mut state = self.lock();
        let Some(data) = state.tenants.get_mut(tenant) else {
            return Ok(0);
        };
        let ids: HashSet<String> = messages.iter().map(MessageId::to_string).collect();
        let mut changed = 0;
        for n in data.notifications.values_mut() {
            // The message's own notification: an alert about it stays.
            let of_message = n.kind == NotificationKind::Message
                && n.related
                    .as_ref()
                    .is_some_and(|r| r.entity_type() == "message" && ids.contains(r.entity_id()));
            if &n.user_id == user && n.status == NotificationStatus::Unread && of_message {
                n.status = NotificationStatus::Read;
                changed += 1;
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use afritalk_ports::{AuditAction, NotificationKind};
    use chrono::{DateTime, Utc};
    use futures::executor::block_on;

    use super::super::fixtures::*;
    use super::*;

    fn all() -> PageSize {
        PageSize::new(100).unwrap()
    }

    /// Stores `n` with its `notification.create` audit row.
    fn add(store: &MemoryStore, n: Notification) -> StoreResult<()> {
        let row = audit(&n.tenant_id, AuditAction::NotificationCreate, n.created_at);
        block_on(store.create(n, row))
    }

    fn create(store: &MemoryStore, t: &TenantId, u: &str, secs: i64) -> Notification {
        let n = notification(t, &user(u), at(secs));
        add(store, n.clone()).unwrap();
        n
    }

    fn with_time(mut n: Notification, when: DateTime<Utc>) -> Notification {
        n.created_at = when;
        n
    }

    #[test]
    fn create_refuses_an_existing_id() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let n = create(&store, &t, "u", 0);
        let mut again = n.clone();
        again.title = "changed".into();
        assert!(matches!(add(&store, again), Err(StoreError::Conflict(_))));
        assert_eq!(block_on(store.notification(&t, n.id)).unwrap(), Some(n));
    }

    #[test]
    fn list_is_unread_then_read_then_archived_each_newest_first() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let u = user("u");
        let old_unread = create(&store, &t, "u", 0);
        let read = create(&store, &t, "u", 10);
        let new_unread = create(&store, &t, "u", 5);
        let archived = create(&store, &t, "u", 20);
        let mut alert = notification(&t, &u, at(3));
        alert.kind = NotificationKind::Alert;
        add(&store, alert.clone()).unwrap();
        create(&store, &t, "someone-else", 30);
        add(&store, notification(&tenant("o"), &u, at(30))).unwrap();
        block_on(store.set_status(&t, &u, read.id, NotificationStatus::Read)).unwrap();
        block_on(store.set_status(&t, &u, archived.id, NotificationStatus::Archived)).unwrap();

        let ids = |ns: Vec<Notification>| ns.into_iter().map(|n| n.id).collect::<Vec<_>>();
        let listed = block_on(store.list(&t, &u, None, false, all())).unwrap();
        assert_eq!(
            ids(listed),
            vec![new_unread.id, alert.id, old_unread.id, read.id]
        );
        let everything = block_on(store.list(&t, &u, None, true, all())).unwrap();
        let expected = vec![new_unread.id, alert.id, old_unread.id, read.id, archived.id];
        assert_eq!(ids(everything.clone()), expected);

        // Paging two at a time with the cursor of each page's last row.
        let mut paged = Vec::new();
        let mut cursor = None;
        loop {
            let page =
                block_on(store.list(&t, &u, cursor, true, PageSize::new(2).unwrap())).unwrap();
            let Some(last) = page.last() else { break };
            cursor = Some(NotificationCursor {
                status: last.status,
                created_at: last.created_at,
                id: last.id,
            });
            paged.extend(ids(page));
        }
        assert_eq!(paged, expected);
    }

    #[test]
    fn list_ties_are_broken_by_id_descending() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let u = user("u");
        let mut ns: Vec<Notification> = (0..4)
            .map(|_| with_time(notification(&t, &u, at(0)), at(7)))
            .collect();
        for n in &ns {
            add(&store, n.clone()).unwrap();
        }
        ns.sort_by_key(|n| std::cmp::Reverse(n.id));
        let listed = block_on(store.list(&t, &u, None, false, all())).unwrap();
        assert_eq!(listed, ns);
        let cursor = NotificationCursor {
            status: NotificationStatus::Unread,
            created_at: at(7),
            id: ns[1].id,
        };
        let rest = block_on(store.list(&t, &u, Some(cursor), false, all())).unwrap();
        assert_eq!(rest, ns[2..].to_vec());
    }

    #[test]
    fn set_status_is_for_the_owner_only_and_unread_count_follows() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let u = user("u");
        let n = create(&store, &t, "u", 0);
        create(&store, &t, "u", 1);
        assert_eq!(block_on(store.unread_count(&t, &u)).unwrap(), 2);

        assert_eq!(
            block_on(store.set_status(&t, &user("intruder"), n.id, NotificationStatus::Read)),
            Err(StoreError::NotFound)
        );
        assert_eq!(
            block_on(store.set_status(&tenant("o"), &u, n.id, NotificationStatus::Read)),
            Err(StoreError::NotFound)
        );
        let absent = NotificationId::from_uuid(uuid::Uuid::now_v7());
        assert_eq!(
            block_on(store.set_status(&t, &u, absent, NotificationStatus::Read)),
            Err(StoreError::NotFound)
        );

        let read = block_on(store.set_status(&t, &u, n.id, NotificationStatus::Read)).unwrap();
        assert_eq!(read.status, NotificationStatus::Read);
        assert_eq!(block_on(store.notification(&t, n.id)).unwrap(), Some(read));
        assert_eq!(block_on(store.unread_count(&t, &u)).unwrap(), 1);
        assert_eq!(block_on(store.unread_count(&tenant("o"), &u)).unwrap(), 0);
        assert_eq!(
            block_on(store.notification(&tenant("o"), n.id)).unwrap(),
            None
        );
    }
}
