//! Presence: changes published to watchers only when the status moves.

use afritalk_ports::*;
use chrono::TimeDelta;

use super::*;

fn connection() -> ConnectionId {
    ConnectionId::new("sock-1")
}

/// The presence store answers a connect as a user's first connection.
fn connects_from_offline(h: &mut Harness) {
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
}

#[test]
fn connecting_from_offline_publishes_online_and_audits_ws_connect() {
    let mut h = Harness::new(vec![]);
    connects_from_offline(&mut h);
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

/// A last disconnect of a user connected and quiet for `quiet`.
fn last_disconnect_after(quiet: TimeDelta) -> Fixture {
    let mut h = Harness::new(vec![]);
    h.presence
        .expect_disconnect()
        .returning(move |_, u, _, at| {
            Ok(PresenceChange {
                before: Some(PresenceRecord {
                    user_id: u.clone(),
                    connections: 1,
                    last_seen: at - quiet,
                }),
                after: PresenceRecord {
                    user_id: u.clone(),
                    connections: 0,
                    last_seen: at,
                },
            })
        });
    h.build()
}

#[test]
fn a_user_gone_idle_since_the_last_sweep_is_told_idle_at_their_last_disconnect() {
    // Quiet for 70 s: idle by time 10 s ago, which no sweep may have told yet;
    // the disconnect tells it (idle before and after, by the facts alone).
    let f = last_disconnect_after(TimeDelta::seconds(70));
    run(f
        .service
        .disconnect(&staff("emp", Role::Employe), &connection()))
    .unwrap();
    assert_eq!(
        f.deliveries(),
        vec![("acme/presence:emp".to_string(), "presence:update")]
    );
    // Idle for ten minutes already: every sweep since said so; nothing new.
    let f = last_disconnect_after(TimeDelta::minutes(10));
    run(f
        .service
        .disconnect(&staff("emp", Role::Employe), &connection()))
    .unwrap();
    assert!(f.deliveries().is_empty());
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
    assert_eq!(f.actions(), vec![AuditAction::ForbiddenAttempt]);
}

/// The facts of user `id`: `connections` live, last seen `seen_ago` before now.
fn record(id: &str, connections: u32, seen_ago: TimeDelta) -> PresenceRecord {
    PresenceRecord {
        user_id: uid(id),
        connections,
        last_seen: now() - seen_ago,
    }
}

#[test]
fn the_sweep_publishes_what_time_alone_changed_and_nothing_else() {
    let mut h = Harness::new(vec![]);
    h.presence
        .expect_records()
        .withf(|_, users| users.len() == 5)
        .returning(|_, _| {
            Ok(vec![
                // Connected, quiet for 70 s: went idle within the last 15 s.
                record("quiet", 1, TimeDelta::seconds(70)),
                // Active: still online, nothing to say.
                record("busy", 1, TimeDelta::seconds(1)),
                // Left 10 min 5 s ago: went offline within the last 15 s.
                record("gone", 0, TimeDelta::seconds(605)),
                // Left 5 s ago: its disconnect announced idle; nothing again.
                record("left", 0, TimeDelta::seconds(5)),
                // Idle for an hour, still connected: nothing changes with time.
                record("away", 1, TimeDelta::hours(1)),
            ])
        });
    let f = h.build();
    let users: Vec<UserId> = ["quiet", "busy", "gone", "left", "away"]
        .into_iter()
        .map(uid)
        .collect();
    let since = Some(now() - TimeDelta::seconds(15));
    let swept = run(f.service.sweep_presence(&tenant(), &users, since)).unwrap();
    assert_eq!(swept.swept_to, now());
    let mut still = swept.still_changing.clone();
    still.sort();
    assert_eq!(
        still,
        vec![uid("away"), uid("busy"), uid("left"), uid("quiet")]
    );
    let published = f.published.lock().unwrap().clone();
    let mut updates: Vec<(String, String)> = published
        .into_iter()
        .map(|(_, event)| match event {
            RealtimeEvent::PresenceUpdate(e) => (e.user_id.to_string(), format!("{:?}", e.status)),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    updates.sort();
    assert_eq!(
        updates,
        vec![
            ("gone".to_string(), "Offline".to_string()),
            ("quiet".to_string(), "Idle".to_string())
        ]
    );
    // Users just taken in (no window yet): nothing is published.
    let f2 = {
        let mut h = Harness::new(vec![]);
        h.presence.expect_records().returning(|_, _| {
            Ok(vec![PresenceRecord {
                user_id: uid("quiet"),
                connections: 1,
                last_seen: now() - TimeDelta::seconds(70),
            }])
        });
        h.build()
    };
    run(f2.service.sweep_presence(&tenant(), &[uid("quiet")], None)).unwrap();
    assert!(f2.published.lock().unwrap().is_empty());
}

#[test]
fn users_of_a_crashed_node_are_announced_as_they_are_now_unless_connected_elsewhere() {
    let mut h = Harness::new(vec![]);
    h.presence
        .expect_records()
        .withf(|_, users| users.len() == 3)
        .returning(|_, _| {
            Ok(vec![
                // Active 20 s ago on the crashed node: idle now, though the
                // time alone never crossed a threshold.
                record("crashed", 0, TimeDelta::seconds(20)),
                // Still connected on another node: its status did not change.
                record("elsewhere", 1, TimeDelta::seconds(20)),
                // Quiet for an hour on the crashed node: offline.
                record("long-gone", 0, TimeDelta::hours(1)),
            ])
        });
    let f = h.build();
    let users: Vec<UserId> = ["crashed", "elsewhere", "long-gone"]
        .into_iter()
        .map(uid)
        .collect();
    let follow = run(f.service.announce_orphaned_presence(&tenant(), &users)).unwrap();
    assert_eq!(
        follow,
        vec![uid("crashed")],
        "offline users need no sweeping"
    );
    let published = f.published.lock().unwrap().clone();
    let updates: Vec<(String, String, String)> = published
        .into_iter()
        .map(|(audience, event)| match event {
            RealtimeEvent::PresenceUpdate(e) => (
                format!("{audience:?}"),
                e.user_id.to_string(),
                format!("{:?}", e.status),
            ),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let watchers = |user: &str| format!("{:?}", Audience::PresenceWatchers(tenant(), uid(user)));
    assert_eq!(
        updates,
        vec![
            (watchers("crashed"), "crashed".into(), "Idle".into()),
            (watchers("long-gone"), "long-gone".into(), "Offline".into()),
        ]
    );
}

/// The published `presence:update`s as (user, status), in order.
fn statuses(f: &Fixture) -> Vec<(String, PresenceStatus)> {
    f.published
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, event)| match event {
            RealtimeEvent::PresenceUpdate(p) => Some((p.user_id.to_string(), p.status)),
            _ => None,
        })
        .collect()
}

/// A harness whose presence store reads the facts in `facts`, and whose
/// publisher is left for the test to set (it stands in for another node).
fn facts_read_from(facts: &Arc<Mutex<PresenceRecord>>) -> Harness {
    let mut h = Harness::new(vec![]);
    let read = facts.clone();
    h.presence
        .expect_records()
        .returning(move |_, _| Ok(vec![read.lock().unwrap().clone()]));
    h.events = MockEventPublisher::new();
    h
}

/// A harness whose presence facts for "emp" live in `facts`, and whose
/// publisher lets another node change them (its last socket closed there,
/// and it announced `idle`) at the moment this node's first publish goes
/// out: the later change is stored after this node's and published before.
fn raced_by_a_later_disconnect(facts: Arc<Mutex<PresenceRecord>>) -> Harness {
    let mut h = facts_read_from(&facts);
    let published = h.published.clone();
    let mut raced = false;
    h.events.expect_publish().returning(move |audience, event| {
        let mut published = published.lock().unwrap();
        if !raced {
            raced = true;
            let mut facts = facts.lock().unwrap();
            facts.connections = 0;
            facts.last_seen = now();
            let other_node = RealtimeEvent::PresenceUpdate(PresenceEvent {
                user_id: facts.user_id.clone(),
                status: PresenceStatus::Idle,
                last_seen: now(),
            });
            published.push((audience.clone(), other_node));
        }
        published.push((audience, event));
        Ok(())
    });
    h
}

#[test]
fn a_status_published_after_a_later_change_is_corrected_at_once() {
    let facts = Arc::new(Mutex::new(PresenceRecord {
        user_id: uid("emp"),
        connections: 1,
        last_seen: now(),
    }));
    let mut h = raced_by_a_later_disconnect(facts.clone());
    let stored = facts.clone();
    h.presence.expect_connect().returning(move |_, u, _, at| {
        let after = PresenceRecord {
            user_id: u.clone(),
            connections: 1,
            last_seen: at,
        };
        *stored.lock().unwrap() = after.clone();
        Ok(PresenceChange {
            before: None,
            after,
        })
    });
    let f = h.build();
    let p = run(f
        .service
        .connect(&staff("emp", Role::Employe), &connection()))
    .unwrap();
    assert_eq!(p.status, PresenceStatus::Online);
    // The other node's idle overtook this node's online; watchers must end
    // on the facts as they are now (no socket left: idle), not on online.
    assert_eq!(
        statuses(&f),
        vec![
            ("emp".to_string(), PresenceStatus::Idle),
            ("emp".to_string(), PresenceStatus::Online),
            ("emp".to_string(), PresenceStatus::Idle),
        ]
    );
}

#[test]
fn a_status_still_true_after_its_publish_is_not_repeated() {
    let mut h = Harness::new(vec![]);
    connects_from_offline(&mut h);
    h.presence.expect_records().returning(|_, users| {
        Ok(vec![PresenceRecord {
            user_id: users[0].clone(),
            connections: 2,
            last_seen: now(),
        }])
    });
    let f = h.build();
    run(f
        .service
        .connect(&staff("emp", Role::Employe), &connection()))
    .unwrap();
    assert_eq!(
        statuses(&f),
        vec![("emp".to_string(), PresenceStatus::Online)]
    );
}

#[test]
fn a_swept_status_overtaken_by_a_change_is_corrected_too() {
    // Quiet for 70 s: the sweep publishes idle, and as it goes out the user
    // is active again (a send through another node, announced online there
    // before the sweep's idle lands).
    let facts = Arc::new(Mutex::new(PresenceRecord {
        user_id: uid("emp"),
        connections: 1,
        last_seen: now() - TimeDelta::seconds(70),
    }));
    let mut h = facts_read_from(&facts);
    let published = h.published.clone();
    h.events.expect_publish().returning(move |audience, event| {
        // The change lands as the sweep publishes: active again.
        let mut facts = facts.lock().unwrap();
        facts.last_seen = now();
        published.lock().unwrap().push((audience, event));
        Ok(())
    });
    let f = h.build();
    let since = now() - TimeDelta::seconds(15);
    run(f
        .service
        .sweep_presence(&tenant(), &[uid("emp")], Some(since)))
    .unwrap();
    assert_eq!(
        statuses(&f),
        vec![
            ("emp".to_string(), PresenceStatus::Idle),
            ("emp".to_string(), PresenceStatus::Online),
        ]
    );
}
