//! The audit side of [`MemoryStore`]: an append-only list per tenant.

use std::cmp::Reverse;

use afritalk_ports::{
    AuditEntry, AuditFilter, AuditLog, PageSize, PurgeReceipt, StoreError, StoreResult, TenantId,
};
use async_trait::async_trait;

use super::messages::page;
use super::{MemoryStore, stored_audit};

#[async_trait]
impl AuditLog for MemoryStore {
    async fn append(&self, entry: AuditEntry) -> StoreResult<()> {
        let mut state = self.lock();
        if state.audit_id_taken(entry.id) {
            return Err(StoreError::Conflict(format!(
                "audit row {} already exists",
                entry.id
            )));
        }
        state
            .tenants
            .entry(entry.tenant_id.clone())
            .or_default()
            .audit
            .push(stored_audit(entry));
        Ok(())
    }

    async fn query(
        &self,
        tenant: &TenantId,
        filter: AuditFilter,
        limit: PageSize,
    ) -> StoreResult<Vec<AuditEntry>> {
        let state = self.lock();
        let Some(data) = state.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        let matching: Vec<&AuditEntry> = data
            .audit
            .iter()
            .filter(|e| filter.action.is_none_or(|action| e.action == action))
            .filter(|e| {
                filter
                    .user_id
                    .as_ref()
                    .is_none_or(|user| e.user_id.as_ref() == Some(user))
            })
            .filter(|e| filter.since.is_none_or(|since| e.created_at >= since))
            .filter(|e| {
                filter
                    .before
                    .is_none_or(|before| (e.created_at, e.id) < (before.created_at, before.id))
            })
            .collect();
        // Newest first; ties by id desc, as a database index on (created_at, id) would give.
        let key = |e: &&AuditEntry| (Reverse(e.created_at), Reverse(e.id));
        Ok(page(matching, key, None, limit)
            .into_iter()
            .cloned()
            .collect())
    }

    async fn purge_before(&self, receipt: &PurgeReceipt) -> StoreResult<Vec<(TenantId, u64)>> {
        let mut state = self.lock();
        let mut removed: Vec<(TenantId, u64)> = state
            .tenants
            .iter()
            .map(|(tenant, data)| {
                let older = data.audit.iter().filter(|e| e.created_at < receipt.cutoff);
                (tenant.clone(), older.count() as u64)
            })
            .filter(|(_, rows)| *rows > 0)
            .collect();
        removed.sort();
        let receipts: Vec<AuditEntry> = (0u32..)
            .zip(&removed)
            .map(|(position, (tenant, rows))| receipt.entry(position, tenant, *rows))
            .collect();
        // Checked before anything is removed: a purge fails whole, as the SQL
        // backends' transaction does on their primary key.
        // Against the rows that stay, as the SQL backends insert the receipts
        // after their deletes.
        let kept_taken = |id| {
            state
                .tenants
                .values()
                .flat_map(|data| &data.audit)
                .any(|row| row.id == id && row.created_at >= receipt.cutoff)
        };
        if receipts.iter().any(|r| kept_taken(r.id)) {
            return Err(StoreError::Conflict(
                "a purge receipt's id is already taken".into(),
            ));
        }
        // Under the same lock: no reader sees the rows gone without their receipt.
        for row in receipts {
            if let Some(data) = state.tenants.get_mut(&row.tenant_id) {
                data.audit.retain(|e| e.created_at >= receipt.cutoff);
                data.audit.push(stored_audit(row));
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use afritalk_ports::{AuditAction, AuditCursor, AuditId};
    use futures::executor::block_on;

    use super::super::fixtures::*;
    use super::*;

    fn all() -> PageSize {
        PageSize::new(100).unwrap()
    }

    fn entry(t: &TenantId, action: AuditAction, secs: i64, by: Option<&str>) -> AuditEntry {
        let mut e = audit(t, action, at(secs));
        e.user_id = by.map(user);
        e
    }

    #[test]
    fn query_filters_and_returns_newest_first() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let rows = [
            entry(&t, AuditAction::WsConnect, 0, Some("a")),
            entry(&t, AuditAction::MessageSend, 10, Some("a")),
            entry(&t, AuditAction::MessageSend, 20, Some("b")),
            entry(&t, AuditAction::ForbiddenAttempt, 30, Some("a")),
            entry(&t, AuditAction::MessageSend, 40, None),
        ];
        for row in &rows {
            block_on(store.append(row.clone())).unwrap();
        }
        block_on(store.append(entry(&tenant("o"), AuditAction::MessageSend, 50, Some("a"))))
            .unwrap();

        let query = |filter| block_on(store.query(&t, filter, all())).unwrap();
        let everything = query(AuditFilter::default());
        assert_eq!(everything, rows.iter().rev().cloned().collect::<Vec<_>>());

        let sends = query(AuditFilter {
            action: Some(AuditAction::MessageSend),
            ..AuditFilter::default()
        });
        assert_eq!(
            sends,
            vec![rows[4].clone(), rows[2].clone(), rows[1].clone()]
        );

        let by_a_in_window = query(AuditFilter {
            user_id: Some(user("a")),
            since: Some(at(10)),
            // The smallest id at 30 s: strictly before every row of that instant.
            before: Some(AuditCursor {
                created_at: at(30),
                id: AuditId::from_uuid(uuid::Uuid::nil()),
            }),
            ..AuditFilter::default()
        });
        assert_eq!(by_a_in_window, vec![rows[1].clone()]);

        let two =
            block_on(store.query(&t, AuditFilter::default(), PageSize::new(2).unwrap())).unwrap();
        assert_eq!(two, vec![rows[4].clone(), rows[3].clone()]);
        assert!(
            block_on(store.query(&tenant("nobody"), AuditFilter::default(), all()))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn purge_removes_older_rows_of_every_tenant_only() {
        let store = MemoryStore::new();
        let (t, o) = (tenant("t"), tenant("o"));
        for (tenant_id, secs) in [(&t, 0), (&t, 10), (&t, 20), (&o, 5), (&o, 25)] {
            block_on(store.append(entry(tenant_id, AuditAction::WsConnect, secs, None))).unwrap();
        }
        let receipt = PurgeReceipt {
            id: AuditId::from_uuid(uuid::Uuid::from_u128(0xAB)),
            cutoff: at(20),
            at: at(30),
        };
        assert_eq!(
            block_on(store.purge_before(&receipt)).unwrap(),
            vec![(o.clone(), 1), (t.clone(), 2)]
        );
        let left = |tenant_id| {
            block_on(store.query(tenant_id, AuditFilter::default(), all()))
                .unwrap()
                .into_iter()
                .map(|e| (e.created_at, e.action))
                .collect::<Vec<_>>()
        };
        // Newest first: the receipt, then what was kept.
        let purged = (at(30), AuditAction::AuditPurge);
        assert_eq!(left(&t), vec![purged, (at(20), AuditAction::WsConnect)]);
        assert_eq!(left(&o), vec![purged, (at(25), AuditAction::WsConnect)]);
        assert!(block_on(store.purge_before(&receipt)).unwrap().is_empty());
    }
}
