//! The audit retention job of `afritalk serve`: once a day it removes the
//! audit rows past their retention (12 months, or `AFRITALK_AUDIT_KEEP_DAYS`
//! when longer), as `afritalk audit purge` does, so that a deployment keeps
//! its trails to the policy without a cron job. Every node runs it; a purge's
//! cutoff is the start of a UTC day, so the nodes purging after the first on
//! the same day find nothing, and a purge that removes nothing writes nothing.

use std::time::Duration;

use afritalk_core::MessagingService;
use chrono::TimeDelta;

use crate::config::AuditRetention;

/// When the job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeSchedule {
    /// The first run, after the server started (not at once: a node starting
    /// has enough to do, and one restarting in a loop would purge in a loop).
    pub first_after: Duration,
    /// Between runs.
    pub every: Duration,
}

impl PurgeSchedule {
    /// Ten minutes after start, then every 24 hours.
    pub const DAILY: Self = Self {
        first_after: Duration::from_secs(10 * 60),
        every: Duration::from_secs(24 * 60 * 60),
    };
}

/// Runs until the task is aborted (at shutdown). A failed purge is logged and
/// tried again at the next run; it removed nothing (one transaction).
pub async fn run(service: MessagingService, retention: AuditRetention, schedule: PurgeSchedule) {
    let start = tokio::time::Instant::now() + schedule.first_after;
    let mut tick = tokio::time::interval_at(start, schedule.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let older_than = retention.keep_days.map(TimeDelta::days);
    let mut told_kept_longer = false;
    loop {
        tick.tick().await;
        match service.purge_audit(older_than).await {
            Ok(purge) => {
                if purge.kept_longer && !told_kept_longer {
                    told_kept_longer = true;
                    tracing::warn!(
                        "AFRITALK_AUDIT_KEEP_DAYS is below 12 months: audit rows are kept 12 months"
                    );
                }
                tracing::info!(
                    removed = purge.removed,
                    tenants = purge.tenants,
                    created_before = %purge.cutoff,
                    "audit rows past their retention purged"
                );
            }
            Err(err) => tracing::warn!(%err, "audit purge failed; the next run tries again"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use afritalk_adapter_memory::{
        LocalEventBus, LocalPresence, LocalRateLimiter, MemoryStore, SystemClock, UuidV7Ids,
    };
    use afritalk_core::Ports;
    use afritalk_ports::{
        AuditAction, AuditEntry, AuditFilter, AuditId, AuditLog, PageSize, RateLimits, TenantId,
    };
    use chrono::Utc;

    use super::*;

    fn service(store: &MemoryStore) -> MessagingService {
        let clock = Arc::new(SystemClock::new());
        MessagingService::new(Ports {
            messages: Arc::new(store.clone()),
            notifications: Arc::new(store.clone()),
            audit: Arc::new(store.clone()),
            directory: Arc::new(store.clone()),
            presence: Arc::new(LocalPresence::new()),
            events: Arc::new(LocalEventBus::new()),
            rate_limiter: Arc::new(LocalRateLimiter::new(clock.clone(), RateLimits::default())),
            features: Arc::new(store.clone()),
            clock,
            ids: Arc::new(UuidV7Ids::new()),
        })
    }

    fn row(tenant: &TenantId, days_ago: i64) -> AuditEntry {
        AuditEntry {
            id: AuditId::from_uuid(uuid::Uuid::new_v4()),
            tenant_id: tenant.clone(),
            user_id: None,
            action: AuditAction::WsConnect,
            entity_type: None,
            entity_id: None,
            details: serde_json::json!({}),
            ip_address: None,
            created_at: Utc::now() - TimeDelta::days(days_ago),
        }
    }

    async fn actions(store: &MemoryStore, tenant: &TenantId) -> Vec<(AuditAction, i64)> {
        let rows = store
            .query(tenant, AuditFilter::default(), PageSize::new(100).unwrap())
            .await
            .unwrap();
        rows.iter()
            .map(|r| (r.action, (Utc::now() - r.created_at).num_days()))
            .collect()
    }

    fn retention(keep_days: Option<i64>) -> AuditRetention {
        AuditRetention {
            keep_days,
            purge_daily: true,
        }
    }

    /// Runs the job on `store` until its first run is over.
    async fn first_run(store: &MemoryStore, retention: AuditRetention) {
        let schedule = PurgeSchedule {
            first_after: Duration::from_millis(10),
            every: Duration::from_secs(3600),
        };
        let job = tokio::spawn(run(service(store), retention, schedule));
        // The test's runtime has one thread: the job runs while this sleeps,
        // and its purge takes microseconds on the in-process store.
        tokio::time::sleep(Duration::from_secs(1)).await;
        job.abort();
    }

    #[tokio::test]
    async fn the_job_removes_rows_past_12_months_and_leaves_its_receipt() {
        let store = MemoryStore::new();
        let t = TenantId::parse("acme").unwrap();
        for days_ago in [400, 370, 300, 1] {
            store.append(row(&t, days_ago)).await.unwrap();
        }
        first_run(&store, retention(None)).await;
        assert_eq!(
            actions(&store, &t).await,
            vec![
                (AuditAction::AuditPurge, 0),
                (AuditAction::WsConnect, 1),
                (AuditAction::WsConnect, 300),
            ]
        );
    }

    #[tokio::test]
    async fn the_job_keeps_rows_longer_when_told_never_shorter() {
        let store = MemoryStore::new();
        let t = TenantId::parse("acme").unwrap();
        for days_ago in [800, 700, 400] {
            store.append(row(&t, days_ago)).await.unwrap();
        }
        first_run(&store, retention(Some(730))).await;
        assert_eq!(
            actions(&store, &t).await,
            vec![
                (AuditAction::AuditPurge, 0),
                (AuditAction::WsConnect, 400),
                (AuditAction::WsConnect, 700),
            ]
        );
        // Ten days asked: 12 months kept all the same.
        let recent = MemoryStore::new();
        recent.append(row(&t, 30)).await.unwrap();
        first_run(&recent, retention(Some(10))).await;
        assert_eq!(
            actions(&recent, &t).await,
            vec![(AuditAction::WsConnect, 30)]
        );
    }
}
