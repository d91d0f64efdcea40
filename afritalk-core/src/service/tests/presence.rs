//! Presence: changes published to watchers only when the status moves.

use afritalk_ports::*;
use chrono::TimeDelta;

use super::*;

fn connection() -> ConnectionId {
    ConnectionId::new("sock-1")
}

#[test]
fn connecting_from_offline_publishes_online_and_audits_ws_connect() {
    let mut h = Harness::new(vec![]);
    h.presence.expect_connect().returning(|_, u, _, at| {
        Ok(PresenceChange {
            before: None,
            after: PresenceRecord {
                user_id: u.clone(),
                connections: 1,
                last_seen: at,
            },
        })
    });
    let f = h.build();
    let p = run(f
        .service
        .connect(&staff("emp", Role::Employe), &connection()))
    .unwrap();
    assert_eq!(p.status, PresenceStatus::Online);
    assert_eq!(f.actions(), vec![AuditAction::WsConnect]);
    assert_eq!(
        f.deliveries(),
        vec![("acme/presence:emp".to_string(), "presence:update")]
    );
}

#[test]
fn a_connection_whose_audit_row_fails_is_refused_and_not_left_counted() {
    let mut h = Harness::new(vec![]);
    h.audit = MockAuditLog::new();
    h.audit
        .expect_append()
        .returning(|_| Err(StoreError::Unavailable("disk full".into())));
    h.presence
        .expect_connect()
        .times(1)
        .returning(|_, u, _, at| Ok(still_online(u, at)));
    h.presence
        .expect_disconnect()
        .withf(|_, u, c, _| u.as_str() == "emp" && *c == connection())
        .times(1)
        .returning(|_, u, _, at| Ok(still_online(u, at)));
    let f = h.build();
    let err = run(f
        .service
        .connect(&staff("emp", Role::Employe), &connection()))
    .unwrap_err();
    assert_eq!(err.code(), "unavailable");
    assert!(f.published.lock().unwrap().is_empty());
}

#[test]
fn a_ping_while_online_publishes_nothing() {
    let f = Harness::new(vec![]).quiet_presence().build();
    let p = run(f.service.ping(&staff("emp", Role::Employe))).unwrap();
    assert_eq!(p.status, PresenceStatus::Online);
    assert!(f.published.lock().unwrap().is_empty());
}

#[test]
fn the_last_disconnect_turns_online_into_idle() {
    let mut h = Harness::new(vec![]);
    h.presence.expect_disconnect().returning(|_, u, _, at| {
        Ok(PresenceChange {
            before: Some(PresenceRecord {
                user_id: u.clone(),
                connections: 1,
                last_seen: at - TimeDelta::seconds(5),
            }),
            after: PresenceRecord {
                user_id: u.clone(),
                connections: 0,
                last_seen: at,
            },
        })
    });
    let f = h.build();
    let p = run(f
        .service
        .disconnect(&staff("emp", Role::Employe), &connection()))
    .unwrap();
    assert_eq!(p.status, PresenceStatus::Idle);
    assert_eq!(f.actions(), vec![AuditAction::WsDisconnect]);
    assert_eq!(f.deliveries().len(), 1);
}

#[test]
fn the_snapshot_computes_statuses_from_the_facts() {
    let mut h = Harness::new(vec![]);
    h.presence.expect_snapshot().returning(|_| {
        Ok(vec![
            PresenceRecord {
                user_id: uid("a"),
                connections: 1,
                last_seen: now(),
            },
            PresenceRecord {
                user_id: uid("b"),
                connections: 0,
                last_seen: now() - TimeDelta::hours(1),
            },
        ])
    });
    let f = h.build();
    let all = run(f.service.presence(&staff("emp", Role::Employe))).unwrap();
    let statuses: Vec<_> = all.iter().map(|p| p.status).collect();
    assert_eq!(
        statuses,
        vec![PresenceStatus::Online, PresenceStatus::Offline]
    );
}

#[test]
fn services_cannot_open_realtime_connections() {
    let f = Harness::new(vec![]).build();
    let svc = Actor::service(tenant(), uid("stock-service"));
    let err = run(f.service.connect(&svc, &connection())).unwrap_err();
    assert_eq!(err.code(), "forbidden");
}

#[test]
fn the_sweep_publishes_what_time_alone_changed_and_nothing_else() {
    let mut h = Harness::new(vec![]);
    h.presence.expect_snapshot().returning(|_| {
        Ok(vec![
            // Connected but quiet for two minutes: was online, now idle.
            PresenceRecord {
                user_id: uid("quiet"),
                connections: 1,
                last_seen: now() - TimeDelta::minutes(2),
            },
            // Active: still online, nothing to say.
            PresenceRecord {
                user_id: uid("busy"),
                connections: 1,
                last_seen: now(),
            },
            // Gone for eleven minutes: was idle, now offline.
            PresenceRecord {
                user_id: uid("gone"),
                connections: 0,
                last_seen: now() - TimeDelta::minutes(11),
            },
        ])
    });
    let f = h.build();
    let watched = std::collections::HashMap::from([
        (uid("quiet"), PresenceStatus::Online),
        (uid("busy"), PresenceStatus::Online),
        (uid("gone"), PresenceStatus::Idle),
    ]);
    let now_status = run(f.service.sweep_presence(&tenant(), &watched)).unwrap();
    assert_eq!(now_status[&uid("quiet")], PresenceStatus::Idle);
    assert_eq!(now_status[&uid("gone")], PresenceStatus::Offline);
    let mut rooms: Vec<String> = f.deliveries().into_iter().map(|(room, _)| room).collect();
    rooms.sort();
    assert_eq!(
        rooms,
        vec![
            "acme/presence:gone".to_string(),
            "acme/presence:quiet".to_string()
        ]
    );
}
