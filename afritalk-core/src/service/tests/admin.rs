//! Alerts, directory, feature flag, audit query, purge, notification ownership.

use afritalk_ports::*;
use chrono::TimeDelta;
use uuid::Uuid;

use super::*;
use crate::service::{AUDIT_RETENTION, AuditPurge, NewAlert, audit_kept_since, start_of_utc_day};

fn users() -> Vec<DirectoryUser> {
    vec![
        dir_user("pdg", Role::Pdg, true),
        dir_user("emp", Role::Employe, true),
        dir_user("off", Role::Dg, false),
    ]
}

fn svc() -> Actor {
    Actor::service(tenant(), uid("stock-service"))
}

#[test]
fn a_service_raises_an_alert_that_is_stored_audited_and_pushed() {
    let mut h = Harness::new(users());
    h.notifications
        .expect_create()
        .withf(|n, audit| {
            n.kind == NotificationKind::Alert
                && n.user_id.as_str() == "emp"
                && audit.action == AuditAction::NotificationCreate
                && audit.entity_id.as_deref() == Some(n.id.to_string().as_str())
        })
        .times(1)
        .returning(|_, _| Ok(()));
    let f = h.build();
    let related = RelatedEntity::new("alert", "stock-17").unwrap();
    let alert = NewAlert::new(
        uid("emp"),
        NotificationKind::Alert,
        "Stock bas",
        "Le produit P-9 est sous le seuil",
        Some(related),
    )
    .unwrap();
    let n = run(f.service.create_notification(&svc(), alert)).unwrap();
    assert_eq!(n.status, NotificationStatus::Unread);
    assert!(f.actions().is_empty(), "the audit row goes with the alert");
    assert_eq!(
        f.deliveries(),
        vec![("acme/user:emp".to_string(), "notify:new")]
    );
}

#[test]
fn alerts_are_validated_and_employees_cannot_raise_them() {
    assert!(NewAlert::new(uid("emp"), NotificationKind::Message, "t", "m", None).is_err());
    assert!(NewAlert::new(uid("emp"), NotificationKind::System, " ", "m", None).is_err());
    assert!(NewAlert::new(uid("emp"), NotificationKind::System, "t", " ", None).is_err());
    let f = Harness::new(users()).build();
    let alert = NewAlert::new(uid("pdg"), NotificationKind::System, "t", "m", None).unwrap();
    let err = run(f
        .service
        .create_notification(&staff("emp", Role::Employe), alert))
    .unwrap_err();
    assert_eq!(err.code(), "forbidden");
    assert_eq!(f.actions(), vec![AuditAction::ForbiddenAttempt]);
}

#[test]
fn someone_elses_notification_does_not_exist() {
    let mut h = Harness::new(users());
    let id = NotificationId::from_uuid(Uuid::from_u128(9));
    h.notifications
        .expect_notification()
        .returning(move |t, id| {
            Ok(Some(Notification {
                id,
                tenant_id: t.clone(),
                user_id: uid("pdg"),
                title: "t".into(),
                message: "m".into(),
                kind: NotificationKind::System,
                status: NotificationStatus::Unread,
                related: None,
                push_sent: false,
                push_sent_at: None,
                created_at: now(),
            }))
        });
    h.notifications
        .expect_set_status()
        .withf(|_, u, _, s| u.as_str() == "pdg" && *s == NotificationStatus::Read)
        .times(1)
        .returning(|t, u, id, status| {
            Ok(Notification {
                id,
                tenant_id: t.clone(),
                user_id: u.clone(),
                title: "t".into(),
                message: "m".into(),
                kind: NotificationKind::System,
                status,
                related: None,
                push_sent: false,
                push_sent_at: None,
                created_at: now(),
            })
        });
    h.notifications
        .expect_unread_count()
        .withf(|_, u| u.as_str() == "pdg")
        .times(1)
        .returning(|_, _| Ok(4));
    let f = h.build();
    let err = run(f
        .service
        .mark_notification_read(&staff("emp", Role::Employe), id))
    .unwrap_err();
    assert_eq!(err, MessagingError::NotFound(Missing::Notification));
    assert!(f.deliveries().is_empty());
    let n = run(f
        .service
        .mark_notification_read(&staff("pdg", Role::Pdg), id))
    .unwrap();
    assert_eq!(n.status, NotificationStatus::Read);
    // The owner's other devices are told, with their badge's count.
    let published = f.published.lock().unwrap().clone();
    assert_eq!(
        published,
        vec![(
            Audience::User(tenant(), uid("pdg")),
            RealtimeEvent::NotifyUpdated(NotifyUpdatedEvent {
                notification_id: Some(id),
                status: NotificationStatus::Read,
                unread_count: 4,
            })
        )]
    );
}

#[test]
fn only_the_pdg_or_a_service_reads_the_audit_log() {
    let mut h = Harness::new(users());
    h.audit
        .expect_query()
        .times(2)
        .returning(|_, _, _| Ok(vec![]));
    let f = h.build();
    let err = run(f.service.audit_log(
        &staff("emp", Role::Employe),
        AuditFilter::default(),
        PageSize::DEFAULT,
    ))
    .unwrap_err();
    assert_eq!(err.code(), "forbidden");
    run(f.service.audit_log(
        &staff("pdg", Role::Pdg),
        AuditFilter::default(),
        PageSize::DEFAULT,
    ))
    .unwrap();
    run(f
        .service
        .audit_log(&svc(), AuditFilter::default(), PageSize::DEFAULT))
    .unwrap();
}

#[test]
fn a_deactivated_pdg_administers_nothing_not_even_their_own_reactivation() {
    // No upsert, query or create expectation: reaching a store would panic.
    let f = Harness::new(vec![dir_user("boss", Role::Pdg, false)]).build();
    let boss = staff("boss", Role::Pdg);
    let name = DisplayName::parse("Boss").unwrap();
    let errors = [
        run(f
            .service
            .upsert_user(&boss, uid("boss"), name, Role::Pdg, true))
        .unwrap_err(),
        run(f
            .service
            .audit_log(&boss, AuditFilter::default(), PageSize::DEFAULT))
        .unwrap_err(),
    ];
    for err in errors {
        assert_eq!(
            err,
            MessagingError::Forbidden("your account is deactivated".into())
        );
    }
    assert_eq!(f.actions(), vec![AuditAction::ForbiddenAttempt; 2]);
}

#[test]
fn an_admin_upsert_that_changes_nothing_writes_nothing_and_leaves_no_row() {
    let mut h = Harness::new(users());
    h.directory
        .expect_upsert()
        .withf(|u| u.user_id.as_str() == "emp" && u.role == Role::Dg)
        .times(1)
        .returning(Ok);
    let f = h.build();
    let pdg = staff("pdg", Role::Pdg);
    let same = dir_user("emp", Role::Employe, true);
    let stored = run(f.service.upsert_user(
        &pdg,
        uid("emp"),
        same.display_name.clone(),
        Role::Employe,
        true,
    ))
    .unwrap();
    assert_eq!(stored, same);
    assert!(f.actions().is_empty(), "nothing changed, nothing audited");
    // A promotion is a change: written and audited.
    let promoted =
        run(f
            .service
            .upsert_user(&pdg, uid("emp"), same.display_name.clone(), Role::Dg, true))
        .unwrap();
    assert_eq!(promoted.role, Role::Dg);
    assert_eq!(f.actions(), vec![AuditAction::DirectoryUpsert]);
}

#[test]
fn the_token_refreshes_the_directory_but_never_reactivates_a_user() {
    let mut h = Harness::new(users());
    h.directory
        .expect_record_identity()
        .withf(|u| u.user_id.as_str() == "off" && u.role == Role::Pdg)
        .times(1)
        .returning(Ok);
    let f = h.build();
    // Role changed (DG -> PDG) so the identity is recorded; the store keeps
    // `active` as it is (the directory contract case checks that).
    run(f.service.remember_identity(&staff("off", Role::Pdg), None)).unwrap();
    // On the trail, as an administrator's change would be.
    assert_eq!(f.actions(), vec![AuditAction::DirectoryUpsert]);
    let rows = f.audit_rows.lock().unwrap().clone();
    assert_eq!(rows[0].details["source"], "token");
    assert_eq!(rows[0].details["previousRole"], "DG");
    assert_eq!(rows[0].details["role"], "PDG");
}

/// Every refusal from now on is past the caller's `modify` budget; other
/// actions are allowed.
fn out_of_the_modify_budget(h: &mut Harness) {
    h.rate_limiter = MockRateLimiter::new();
    h.rate_limiter
        .expect_check()
        .returning(|_, _, action| match action {
            RateAction::Modify => Ok(RateDecision::Limited {
                retry_after: std::time::Duration::from_secs(30),
            }),
            _ => Ok(RateDecision::Allowed),
        });
}

#[test]
fn refusals_past_the_modify_budget_are_rate_limited_and_leave_no_row() {
    let mut h = Harness::new(users());
    out_of_the_modify_budget(&mut h);
    let f = h.build();
    let err = run(f.service.audit_log(
        &staff("emp", Role::Employe),
        AuditFilter::default(),
        PageSize::DEFAULT,
    ))
    .unwrap_err();
    assert_eq!(err.code(), "rate_limited");
    assert!(f.actions().is_empty());
}

#[test]
fn a_deactivated_caller_past_the_budget_is_still_told_so_without_a_row() {
    let mut h = Harness::new(vec![dir_user("emp", Role::Employe, false)]);
    out_of_the_modify_budget(&mut h);
    let f = h.build();
    let err = run(f
        .service
        .conversations(&staff("emp", Role::Employe), None, PageSize::DEFAULT))
    .unwrap_err();
    assert!(err.is_account_deactivated(), "{err:?}");
    assert!(f.actions().is_empty());
}

#[test]
fn a_role_outside_the_matrix_is_refused_on_the_trail() {
    let f = Harness::new(users()).build();
    let err = run(f.service.refuse_unknown_role(
        &tenant(),
        &uid("compta"),
        Some("203.0.113.7"),
        "COMPTABLE",
        "ws.connect",
    ));
    assert_eq!(err.code(), "forbidden");
    assert!(err.to_string().contains("COMPTABLE"), "{err}");
    assert_eq!(f.actions(), vec![AuditAction::ForbiddenAttempt]);
    let row = f.audit_rows.lock().unwrap()[0].clone();
    assert_eq!(row.user_id, Some(uid("compta")));
    assert_eq!(row.ip_address.as_deref(), Some("203.0.113.7"));
    assert_eq!(row.details["role"], "COMPTABLE");
    assert_eq!(row.details["operation"], "ws.connect");
}

#[test]
fn a_role_outside_the_matrix_past_the_budget_is_still_forbidden_without_a_row() {
    let mut h = Harness::new(users());
    out_of_the_modify_budget(&mut h);
    let f = h.build();
    let err = run(f.service.refuse_unknown_role(
        &tenant(),
        &uid("compta"),
        None,
        "COMPTABLE",
        "ws.connect",
    ));
    assert_eq!(err.code(), "forbidden");
    assert!(f.actions().is_empty());
}

#[test]
fn a_rest_call_leaves_a_known_user_as_the_directory_has_them() {
    // A token saying DG for a known Employé: no record expectation, so a
    // write would panic the mock (connects and sends take such changes).
    let f = Harness::new(users()).build();
    run(f.service.introduce_identity(&staff("emp", Role::Dg), None)).unwrap();
    assert!(f.actions().is_empty());
}

#[test]
fn an_unchanged_identity_writes_nothing() {
    let f = Harness::new(users()).build();
    // No upsert expectation: writing would panic the mock.
    let name = DisplayName::parse("User emp").unwrap();
    run(f
        .service
        .remember_identity(&staff("emp", Role::Employe), Some(name)))
    .unwrap();
}

#[test]
fn only_services_switch_messaging_and_the_switch_is_audited() {
    let mut h = Harness::new(users());
    h.features
        .expect_set_messaging_enabled()
        .withf(|_, enabled| !*enabled)
        .times(1)
        .returning(|_, _| Ok(()));
    let f = h.build();
    let err = run(f
        .service
        .set_messaging_enabled(&staff("pdg", Role::Pdg), false))
    .unwrap_err();
    assert_eq!(err.code(), "forbidden");
    run(f.service.set_messaging_enabled(&svc(), false)).unwrap();
    assert_eq!(
        f.actions(),
        vec![
            AuditAction::ForbiddenAttempt,
            AuditAction::FeatureFlagChange
        ]
    );
}

#[test]
fn purge_removes_rows_older_than_twelve_months_and_has_each_tenant_s_trail_say_so() {
    let mut h = Harness::new(users());
    // From the start of that day: purges of one day agree on their cutoff.
    let twelve_months_ago = start_of_utc_day(now().checked_sub_months(AUDIT_RETENTION).unwrap());
    assert_eq!(twelve_months_ago.time(), chrono::NaiveTime::MIN);
    assert!(
        now().checked_sub_months(AUDIT_RETENTION).unwrap() - twelve_months_ago < TimeDelta::days(1)
    );
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    h.audit
        .expect_purge_before()
        .times(1)
        .returning(move |receipt| {
            seen.lock().unwrap().push(receipt.clone());
            Ok(vec![
                (tenant(), 12),
                (TenantId::parse("globex").unwrap(), 3),
            ])
        });
    let f = h.build();
    let purge = run(f.service.purge_audit(None)).unwrap();
    assert_eq!(
        purge,
        AuditPurge {
            cutoff: twelve_months_ago,
            removed: 15,
            tenants: 2,
            kept_longer: false
        }
    );
    // The receipts are the store's to write, with the removal.
    let receipt = asked.lock().unwrap()[0].clone();
    assert_eq!((receipt.cutoff, receipt.at), (twelve_months_ago, now()));
    assert_eq!(
        receipt.id,
        AuditId::from_uuid(Uuid::from_u128(1)),
        "a fresh id"
    );
    assert!(f.audit_rows.lock().unwrap().is_empty());
}

#[test]
fn purge_never_removes_rows_younger_than_twelve_months() {
    // 12 months are 365 days, or 366 when they hold a 29 February.
    let kept = (now() - audit_kept_since(now())).num_days();
    // Cutoffs are the start of their UTC day.
    let twelve_months_ago = start_of_utc_day(audit_kept_since(now()));
    let mut h = Harness::new(users());
    let cutoffs = Arc::new(Mutex::new(Vec::new()));
    let seen = cutoffs.clone();
    h.audit
        .expect_purge_before()
        .times(3)
        .returning(move |receipt| {
            seen.lock().unwrap().push(receipt.cutoff);
            Ok(vec![])
        });
    let f = h.build();
    // Asked for less than 12 months: 12 months it is, and the answer says so.
    let purge = run(f.service.purge_audit(Some(TimeDelta::days(kept - 1)))).unwrap();
    assert_eq!((purge.cutoff, purge.kept_longer), (twelve_months_ago, true));
    let purge = run(f.service.purge_audit(Some(TimeDelta::days(kept)))).unwrap();
    assert!(!purge.kept_longer);
    let purge = run(f.service.purge_audit(Some(TimeDelta::days(800)))).unwrap();
    assert_eq!(purge.cutoff, start_of_utc_day(now() - TimeDelta::days(800)));
    assert_eq!(
        *cutoffs.lock().unwrap(),
        vec![
            twelve_months_ago,
            start_of_utc_day(now() - TimeDelta::days(kept)),
            start_of_utc_day(now() - TimeDelta::days(800))
        ]
    );
    // Nothing purged writes no row.
    assert!(f.audit_rows.lock().unwrap().is_empty());
}

/// Marks all read as `emp` over a store that changes `unread` notifications;
/// returns the answer and what was pushed.
fn mark_all_read_over(unread: u64) -> (u64, Vec<(String, &'static str)>) {
    let mut h = Harness::new(users());
    h.notifications
        .expect_mark_all_read()
        .withf(|t, u| t == &tenant() && u.as_str() == "emp")
        .times(1)
        .returning(move |_, _| Ok(unread));
    h.notifications
        .expect_unread_count()
        .returning(|_, _| Ok(0));
    let f = h.build();
    let changed = run(f
        .service
        .mark_all_notifications_read(&staff("emp", Role::Employe)))
    .unwrap();
    (changed, f.deliveries())
}

#[test]
fn mark_all_read_reports_the_count_and_tells_the_user_s_devices_only_of_a_change() {
    assert_eq!(
        mark_all_read_over(3),
        (3, vec![("acme/user:emp".to_string(), "notify:updated")])
    );
    assert_eq!(mark_all_read_over(0), (0, vec![]));
}
