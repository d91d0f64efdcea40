//! `Application::run_until` runs the audit retention job when the
//! configuration leaves it on (`AFRITALK_AUDIT_PURGE=daily`, the default) and
//! never when it is off, on the embedded default's SQLite store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use afritalk_bin::app::Application;
use afritalk_bin::config::{Config, Database};
use afritalk_bin::retention::PurgeSchedule;
use afritalk_bin::wiring;
use afritalk_ports::{AuditAction, AuditEntry, AuditFilter, AuditId, AuditLog, PageSize, TenantId};
use chrono::{TimeDelta, Utc};

/// An audit row of `tenant`, `days_ago` days old.
fn row(tenant: &TenantId, days_ago: i64) -> AuditEntry {
    AuditEntry {
        id: AuditId::from_uuid(uuid::Uuid::now_v7()),
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

/// The actions of `tenant`'s trail, newest first.
async fn actions(audit: &dyn AuditLog, tenant: &TenantId) -> Vec<AuditAction> {
    audit
        .query(tenant, AuditFilter::default(), PageSize::new(100).unwrap())
        .await
        .unwrap()
        .iter()
        .map(|r| r.action)
        .collect()
}

/// Serves with the purge `on` or off, its first run at once, with a trail of
/// one row past 12 months and one within; returns the trail after `wait`.
async fn trail_after_serving(on: bool, wait: Duration) -> Vec<AuditAction> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_lookup(|_| None).unwrap();
    config.data_dir = dir.path().join("data");
    config.database = Database::Sqlite(config.data_dir.join("afritalk.db"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.audit.purge_daily = on;
    let storage = wiring::open_storage(&config).await.unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    storage.audit.append(row(&tenant, 400)).await.unwrap();
    storage.audit.append(row(&tenant, 30)).await.unwrap();
    let schedule = PurgeSchedule {
        first_after: Duration::ZERO,
        every: Duration::from_secs(3600),
    };
    let app = Application::build(config)
        .await
        .unwrap()
        .with_audit_purge_schedule(schedule);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let deadline = tokio::time::Instant::now() + wait;
    let mut trail = actions(storage.audit.as_ref(), &tenant).await;
    // With the purge on, done as soon as the receipt is there.
    while !trail.contains(&AuditAction::AuditPurge) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        trail = actions(storage.audit.as_ref(), &tenant).await;
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    trail
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_purges_the_trail_past_its_retention_on_schedule() {
    let trail = trail_after_serving(true, Duration::from_secs(20)).await;
    assert_eq!(trail, vec![AuditAction::AuditPurge, AuditAction::WsConnect]);
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_with_the_purge_off_keeps_the_whole_trail() {
    // A purge of this trail takes milliseconds: two seconds would have seen it.
    let trail = trail_after_serving(false, Duration::from_secs(2)).await;
    assert_eq!(trail, vec![AuditAction::WsConnect, AuditAction::WsConnect]);
}
