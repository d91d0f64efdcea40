//! Send (matrix, reply rule, idempotency, publishing), edit window, delete, receipts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use afritalk_ports::*;
use chrono::TimeDelta;
use mockall::predicate::eq;

use super::*;
use crate::views::SendMessage;

fn request(to: &str, text: &str) -> SendMessage {
    SendMessage {
        to: uid(to),
        content: MessageContent::parse(text).unwrap(),
        related: None,
        client_message_id: None,
    }
}

/// Expects one `send` to the store; answers `Stored` and keeps the request.
fn expect_stored_send(h: &mut Harness) -> Arc<Mutex<Option<NewMessage>>> {
    expect_stored_sends(h, 1)
}

/// As [`expect_stored_send`], for `times` sends; the last one is kept.
fn expect_stored_sends(h: &mut Harness, times: usize) -> Arc<Mutex<Option<NewMessage>>> {
    let seen = Arc::new(Mutex::new(None));
    let keep = seen.clone();
    h.messages.expect_send().times(times).returning(move |new| {
        let message = Message {
            id: new.message_id,
            tenant_id: new.tenant_id.clone(),
            conversation_id: new.new_conversation_id,
            seq: 1,
            sender_id: new.sender_id.clone(),
            recipient_id: new.recipient_id.clone(),
            content: new.content.as_str().to_owned(),
            related: new.related.clone(),
            client_message_id: new.client_message_id.clone(),
            read: false,
            read_at: None,
            delivered_at: None,
            edited_at: None,
            deleted_at: None,
            created_at: new.created_at,
            updated_at: new.created_at,
        };
        let pair = ParticipantPair::new(new.sender_id.clone(), new.recipient_id.clone()).unwrap();
        let conversation = Conversation {
            id: new.new_conversation_id,
            tenant_id: new.tenant_id.clone(),
            user_one_id: pair.low().clone(),
            user_two_id: pair.high().clone(),
            created_at: new.created_at,
            updated_at: new.created_at,
            last_message_at: new.created_at,
            last_seq: 1,
        };
        *keep.lock().unwrap() = Some(new);
        Ok(SendOutcome::Stored {
            message,
            conversation,
            conversation_created: true,
        })
    });
    seen
}

fn no_conversation_yet(h: &mut Harness) {
    h.messages
        .expect_conversation_between()
        .returning(|_, _| Ok(None));
}

const ROLES: [(Role, &str); 3] = [(Role::Pdg, "pdg"), (Role::Dg, "dg"), (Role::Employe, "emp")];

fn everyone() -> Vec<DirectoryUser> {
    ROLES
        .iter()
        .map(|(role, id)| dir_user(id, *role, true))
        .chain([
            dir_user("emp2", Role::Employe, true),
            dir_user("pdg2", Role::Pdg, true),
        ])
        .collect()
}

/// A second user with the same role as `id`, so every cell has a distinct pair.
fn peer(id: &str) -> &'static str {
    match id {
        "pdg" => "pdg2",
        "emp" => "emp2",
        _ => "dg2",
    }
}

#[test]
fn every_allowed_cell_of_the_matrix_stores_and_audits_the_send() {
    let allowed = [
        (Role::Pdg, Role::Pdg),
        (Role::Pdg, Role::Dg),
        (Role::Pdg, Role::Employe),
        (Role::Dg, Role::Pdg),
        (Role::Dg, Role::Dg),
        (Role::Dg, Role::Employe),
        (Role::Employe, Role::Dg),
        (Role::Employe, Role::Employe),
    ];
    for (from_role, to_role) in allowed {
        let from = ROLES.iter().find(|r| r.0 == from_role).unwrap().1;
        let mut to = ROLES.iter().find(|r| r.0 == to_role).unwrap().1;
        if from == to {
            to = peer(from);
        }
        let mut users = everyone();
        users.push(dir_user("dg2", Role::Dg, true));
        // No conversation_between expectation: an allowed send never needs the
        // lookup (the mock would panic if it were called).
        let mut h = Harness::new(users).quiet_presence();
        let seen = expect_stored_send(&mut h);
        let f = h.build();
        let sent = run(f
            .service
            .send(&staff(from, from_role), request(to, "salut")))
        .unwrap_or_else(|e| panic!("{from_role} -> {to_role}: {e}"));
        assert!(!sent.duplicate);
        let new = seen.lock().unwrap().clone().unwrap();
        assert_eq!(new.send_audit.action, AuditAction::MessageSend);
        assert_eq!(
            new.conversation_audit.action,
            AuditAction::ConversationCreate
        );
        assert_eq!(new.send_audit.ip_address.as_deref(), Some("10.0.0.7"));
        assert!(
            f.actions().is_empty(),
            "no forbidden_attempt for an allowed cell"
        );
    }
}

#[test]
fn employe_to_pdg_is_refused_with_a_forbidden_attempt_row() {
    let mut h = Harness::new(everyone());
    no_conversation_yet(&mut h);
    // No `send` expectation: storing would panic the mock.
    let f = h.build();
    let err = run(f
        .service
        .send(&staff("emp", Role::Employe), request("pdg", "hi")))
    .unwrap_err();
    assert_eq!(err.code(), "forbidden");
    let rows = f.audit_rows.lock().unwrap().clone();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].action, AuditAction::ForbiddenAttempt);
    assert_eq!(rows[0].user_id, Some(uid("emp")));
    assert_eq!(rows[0].entity_id.as_deref(), Some("pdg"));
    assert_eq!(rows[0].details["senderRole"], "EMPLOYE");
    assert_eq!(rows[0].details["recipientRole"], "PDG");
    assert!(f.published.lock().unwrap().is_empty());
}

#[test]
fn employe_may_reply_once_the_pdg_has_written() {
    let mut h = Harness::new(everyone()).quiet_presence();
    h.messages
        .expect_conversation_between()
        .returning(|_, _| Ok(Some(conversation("emp", "pdg", 1))));
    h.messages
        .expect_has_written()
        .with(eq(tenant()), eq(conversation_id()), eq(uid("pdg")))
        .times(1)
        .returning(|_, _, _| Ok(true));
    let seen = expect_stored_send(&mut h);
    let f = h.build();
    run(f
        .service
        .send(&staff("emp", Role::Employe), request("pdg", "merci")))
    .unwrap();
    let new = seen.lock().unwrap().clone().unwrap();
    assert_eq!(new.recipient_id, uid("pdg"));
    assert!(f.actions().is_empty(), "no forbidden_attempt for a reply");
}

#[test]
fn employe_may_not_write_in_a_conversation_where_the_pdg_never_wrote() {
    let mut h = Harness::new(everyone());
    h.messages
        .expect_conversation_between()
        .returning(|_, _| Ok(Some(conversation("emp", "pdg", 3))));
    h.messages
        .expect_has_written()
        .returning(|_, _, _| Ok(false));
    let f = h.build();
    let err = run(f
        .service
        .send(&staff("emp", Role::Employe), request("pdg", "re")))
    .unwrap_err();
    assert_eq!(err.code(), "forbidden");
    assert_eq!(f.actions(), vec![AuditAction::ForbiddenAttempt]);
}

#[test]
fn a_send_publishes_new_message_to_both_users_and_a_notification_to_the_recipient() {
    let mut h = Harness::new(everyone()).quiet_presence();
    no_conversation_yet(&mut h);
    let seen = expect_stored_send(&mut h);
    let f = h.build();
    let sent = run(f
        .service
        .send(&staff("dg", Role::Dg), request("emp", "  la commande 17  ")))
    .unwrap();
    assert_eq!(sent.message.content, "la commande 17");
    assert_eq!(
        f.deliveries(),
        vec![
            ("acme/user:emp".to_string(), "messaging:new"),
            ("acme/user:dg".to_string(), "messaging:new"),
            ("acme/user:emp".to_string(), "notify:new"),
        ]
    );
    let new = seen.lock().unwrap().clone().unwrap();
    assert_eq!(new.notification.user_id, uid("emp"));
    assert_eq!(new.notification.kind, NotificationKind::Message);
    assert_eq!(new.notification.title, "New message from User dg");
    assert_eq!(new.created_at, now());
}

#[test]
fn a_send_soon_after_another_does_not_record_the_online_senders_activity_again() {
    let mut h = Harness::new(everyone()).quiet_presence();
    h.presence.checkpoint();
    h.presence
        .expect_touch()
        .times(1)
        .returning(|_, u, at| Ok(still_online(u, at)));
    no_conversation_yet(&mut h);
    expect_stored_sends(&mut h, 2);
    let f = h.build();
    // The harness's clock stands still: the second send is within ten seconds.
    for text in ["un", "deux"] {
        run(f.service.send(&staff("dg", Role::Dg), request("emp", text))).unwrap();
    }
}

#[test]
fn a_retry_with_the_same_client_message_id_returns_the_original_and_publishes_nothing() {
    let mut h = Harness::new(everyone());
    no_conversation_yet(&mut h);
    let original = message("dg", "emp", 1, TimeDelta::seconds(5));
    let stored = original.clone();
    h.messages.expect_send().times(1).returning(move |_| {
        Ok(SendOutcome::Duplicate {
            message: stored.clone(),
        })
    });
    let f = h.build();
    let mut req = request("emp", "salut");
    req.client_message_id = Some(ClientMessageId::parse("c-1").unwrap());
    let sent = run(f.service.send(&staff("dg", Role::Dg), req)).unwrap();
    assert!(sent.duplicate);
    assert_eq!(sent.message, original);
    assert!(f.published.lock().unwrap().is_empty());
}

#[test]
fn messaging_oneself_an_unknown_or_an_inactive_user_is_refused_before_storing() {
    let mut users = everyone();
    users.push(dir_user("gone", Role::Employe, false));
    let f = Harness::new(users).build();
    let dg = staff("dg", Role::Dg);
    let err = run(f.service.send(&dg, request("dg", "moi"))).unwrap_err();
    assert_eq!(err.code(), "self_message");
    let err = run(f.service.send(&dg, request("nobody", "hi"))).unwrap_err();
    assert_eq!(err, MessagingError::NotFound(Missing::User));
    let err = run(f.service.send(&dg, request("gone", "hi"))).unwrap_err();
    assert_eq!(err.code(), "recipient_inactive");
}

#[test]
fn a_user_of_another_tenant_is_unknown() {
    // Same user id, other tenant: the directory lookup is scoped, so it is absent.
    let mut other = dir_user("emp", Role::Employe, true);
    other.tenant_id = TenantId::parse("globex").unwrap();
    let f = Harness::new(vec![dir_user("dg", Role::Dg, true), other]).build();
    let err = run(f.service.send(&staff("dg", Role::Dg), request("emp", "hi"))).unwrap_err();
    assert_eq!(err, MessagingError::NotFound(Missing::User));
}

#[test]
fn a_disabled_tenant_is_refused_before_anything_else() {
    let mut h = Harness::new(everyone());
    h.features = MockFeatureFlags::new();
    h.features
        .expect_messaging_enabled()
        .returning(|_| Ok(false));
    let f = h.build();
    let err = run(f.service.send(&staff("dg", Role::Dg), request("emp", "hi"))).unwrap_err();
    assert_eq!(err, MessagingError::FeatureDisabled);
}

#[test]
fn a_rate_limited_send_says_when_to_retry() {
    let mut h = Harness::new(everyone());
    h.rate_limiter = MockRateLimiter::new();
    h.rate_limiter
        .expect_check()
        .with(eq(tenant()), eq(uid("dg")), eq(RateAction::Send))
        .returning(|_, _, _| {
            Ok(RateDecision::Limited {
                retry_after: Duration::from_millis(1500),
            })
        });
    let f = h.build();
    let err = run(f.service.send(&staff("dg", Role::Dg), request("emp", "hi"))).unwrap_err();
    assert_eq!(
        err,
        MessagingError::RateLimited {
            retry_after: Duration::from_millis(1500)
        }
    );
}

#[test]
fn a_limiter_that_is_down_lets_the_send_through() {
    let mut h = Harness::new(everyone()).quiet_presence();
    h.rate_limiter = MockRateLimiter::new();
    h.rate_limiter
        .expect_check()
        .returning(|_, _, _| Err(StoreError::Unavailable("redis restarting".into())));
    no_conversation_yet(&mut h);
    let _seen = expect_stored_send(&mut h);
    let f = h.build();
    run(f.service.send(&staff("dg", Role::Dg), request("emp", "hi"))).unwrap();
}

#[test]
fn a_backend_failure_is_unavailable() {
    let mut h = Harness::new(everyone());
    h.messages
        .expect_send()
        .returning(|_| Err(StoreError::Unavailable("db down".into())));
    let f = h.build();
    let err = run(f.service.send(&staff("dg", Role::Dg), request("emp", "hi"))).unwrap_err();
    assert_eq!(err.code(), "unavailable");
    // Nothing is published for a message that was not stored.
    assert!(f.published.lock().unwrap().is_empty());
}

/// A harness whose store finds `stored` by id (any id: tests ask for that one).
fn holding(stored: &Message) -> Harness {
    let mut h = Harness::new(everyone());
    let found = stored.clone();
    h.messages
        .expect_message()
        .returning(move |_, _| Ok(Some(found.clone())));
    h
}

/// A harness whose store holds `stored` and accepts an edit of it.
fn edit_fixture(stored: Message) -> Fixture {
    let mut h = holding(&stored);
    h.messages
        .expect_edit()
        .returning(move |_, _, content, at, audit| {
            assert_eq!(audit.action, AuditAction::MessageEdit);
            let mut edited = stored.clone();
            edited.content = content.as_str().to_owned();
            edited.edited_at = Some(at);
            edited.updated_at = at;
            Ok(edited)
        });
    h.build()
}

fn new_text() -> MessageContent {
    MessageContent::parse("corrigé").unwrap()
}

#[test]
fn an_edit_at_one_minute_59_999_is_accepted_and_keeps_the_creation_time() {
    let original = message("dg", "emp", 1, TimeDelta::milliseconds(119_999));
    let f = edit_fixture(original.clone());
    let edited = run(f
        .service
        .edit(&staff("dg", Role::Dg), original.id, new_text()))
    .unwrap();
    assert_eq!(edited.content, "corrigé");
    assert_eq!(edited.created_at, original.created_at);
    assert_eq!(edited.edited_at, Some(now()));
    assert_eq!(
        f.deliveries(),
        vec![
            ("acme/user:dg".to_string(), "message:edited"),
            ("acme/user:emp".to_string(), "message:edited"),
        ]
    );
}

#[test]
fn an_edit_at_two_minutes_exactly_is_refused() {
    let original = message("dg", "emp", 1, TimeDelta::milliseconds(120_000));
    let f = holding(&original).build();
    let err = run(f
        .service
        .edit(&staff("dg", Role::Dg), original.id, new_text()))
    .unwrap_err();
    assert_eq!(err.code(), "edit_window_closed");
    assert!(f.published.lock().unwrap().is_empty());
}

#[test]
fn only_the_sender_edits_and_a_stranger_sees_nothing() {
    let original = message("dg", "emp", 1, TimeDelta::seconds(1));
    let f = holding(&original).build();
    let err = run(f
        .service
        .edit(&staff("emp", Role::Employe), original.id, new_text()))
    .unwrap_err();
    assert_eq!(err.code(), "forbidden");
    assert_eq!(f.actions(), vec![AuditAction::ForbiddenAttempt]);
    let err = run(f
        .service
        .edit(&staff("pdg", Role::Pdg), original.id, new_text()))
    .unwrap_err();
    assert_eq!(err, MessagingError::NotFound(Missing::Message));
}

#[test]
fn a_deleted_message_cannot_be_edited() {
    let mut original = message("dg", "emp", 1, TimeDelta::seconds(1));
    original.deleted_at = Some(now());
    original.content.clear();
    let f = holding(&original).build();
    let err = run(f
        .service
        .edit(&staff("dg", Role::Dg), original.id, new_text()))
    .unwrap_err();
    assert_eq!(err.code(), "message_deleted");
}

#[test]
fn a_message_id_of_another_tenant_is_not_found() {
    let mut h = Harness::new(everyone());
    h.messages
        .expect_message()
        .withf(|t, _| t.as_str() == "acme")
        .returning(|_, _| Ok(None));
    let f = h.build();
    let id = MessageId::from_uuid(Uuid::from_u128(42));
    let dg = staff("dg", Role::Dg);
    assert_eq!(
        run(f.service.edit(&dg, id, new_text())).unwrap_err(),
        MessagingError::NotFound(Missing::Message)
    );
    assert_eq!(
        run(f.service.mark_read(&dg, id)).unwrap_err(),
        MessagingError::NotFound(Missing::Message)
    );
    assert_eq!(
        run(f.service.delete(&dg, id)).unwrap_err(),
        MessagingError::NotFound(Missing::Message)
    );
}

#[test]
fn delete_leaves_a_tombstone_and_tells_both_sides() {
    let original = message("dg", "emp", 2, TimeDelta::hours(3));
    let mut h = holding(&original);
    let tomb = original.clone();
    h.messages
        .expect_delete()
        .times(1)
        .returning(move |_, _, at, audit| {
            assert_eq!(audit.action, AuditAction::MessageDelete);
            let mut t = tomb.clone();
            t.content.clear();
            t.deleted_at = Some(at);
            Ok(t)
        });
    // The recipient's notification of it has nothing left to read: marked
    // read, and the recipient's devices get their badge's new count.
    h.expect_notification_read("emp", original.id, 0);
    let f = h.build();
    let tombstone = run(f.service.delete(&staff("dg", Role::Dg), original.id)).unwrap();
    assert!(tombstone.content.is_empty());
    assert_eq!(tombstone.deleted_at, Some(now()));
    assert_eq!(
        f.deliveries(),
        vec![
            ("acme/user:dg".to_string(), "message:deleted"),
            ("acme/user:emp".to_string(), "message:deleted"),
            ("acme/user:emp".to_string(), "notify:updated"),
        ]
    );
}

#[test]
fn a_deactivated_sender_can_neither_edit_nor_delete_nor_type() {
    // The store holds a message of "dg", whom an administrator then deactivated;
    // no edit, delete or typing expectation: reaching the store would panic.
    let original = message("dg", "emp", 1, TimeDelta::seconds(5));
    let mut h = Harness::new(vec![
        dir_user("dg", Role::Dg, false),
        dir_user("emp", Role::Employe, true),
    ]);
    let found = original.clone();
    h.messages
        .expect_message()
        .returning(move |_, _| Ok(Some(found.clone())));
    h.messages
        .expect_conversation()
        .returning(|_, _| Ok(Some(conversation("dg", "emp", 1))));
    let f = h.build();
    let dg = staff("dg", Role::Dg);
    for err in [
        run(f.service.edit(&dg, original.id, new_text())).unwrap_err(),
        run(f.service.delete(&dg, original.id)).unwrap_err(),
        run(f.service.typing(&dg, conversation_id(), true)).unwrap_err(),
    ] {
        assert_eq!(
            err,
            MessagingError::Forbidden("your account is deactivated".into())
        );
    }
    assert_eq!(f.actions(), vec![AuditAction::ForbiddenAttempt; 3]);
    assert!(f.published.lock().unwrap().is_empty());
}

#[test]
fn a_delete_that_lost_a_race_with_another_device_tells_no_one_again() {
    let original = message("dg", "emp", 2, TimeDelta::seconds(30));
    let mut tomb = original.clone();
    tomb.content.clear();
    tomb.deleted_at = Some(now());
    let mut h = Harness::new(everyone());
    // Live when loaded, deleted by the other device before this write.
    let mut reads = vec![original.clone(), tomb.clone()].into_iter();
    h.messages
        .expect_message()
        .times(2)
        .returning(move |_, _| Ok(reads.next()));
    h.messages
        .expect_delete()
        .times(1)
        .returning(|_, _, _, _| Err(StoreError::Conflict("already deleted".into())));
    let f = h.build();
    let got = run(f.service.delete(&staff("dg", Role::Dg), original.id)).unwrap();
    assert_eq!(got, tomb);
    assert!(f.published.lock().unwrap().is_empty());
}

#[test]
fn the_recipient_cannot_delete() {
    let original = message("dg", "emp", 2, TimeDelta::seconds(3));
    let f = holding(&original).build();
    let id = MessageId::from_uuid(Uuid::from_u128(0xABC2));
    let err = run(f.service.delete(&staff("emp", Role::Employe), id)).unwrap_err();
    assert_eq!(err.code(), "forbidden");
    assert_eq!(f.actions(), vec![AuditAction::ForbiddenAttempt]);
}

#[test]
fn the_recipient_marks_read_and_both_sides_are_told() {
    let original = message("dg", "emp", 4, TimeDelta::seconds(30));
    let mut h = holding(&original);
    let read = original.clone();
    // The audit row names the message read, not only its conversation.
    let named = original.id.to_string();
    h.messages
        .expect_mark_read()
        .withf(move |_, _, reader, from, to, _, audit| {
            reader.as_str() == "emp"
                && *from == 4
                && *to == 4
                && audit.action == AuditAction::MessageRead
                && audit.entity_type.as_deref() == Some("message")
                && audit.entity_id.as_deref() == Some(named.as_str())
        })
        .times(1)
        .returning(move |_, _, _, _, _, at, _| {
            let mut m = read.clone();
            m.read = true;
            m.read_at = Some(at);
            m.delivered_at = Some(at);
            Ok(vec![m])
        });
    // The message's notification is read with it, and the reader's devices
    // get their badge's new count.
    h.expect_notification_read("emp", original.id, 2);
    let f = h.build();
    let read = run(f
        .service
        .mark_read(&staff("emp", Role::Employe), original.id))
    .unwrap();
    assert_eq!(read.read_at, Some(now()));
    assert_eq!(
        f.deliveries(),
        vec![
            ("acme/user:dg".to_string(), "messaging:read"),
            ("acme/user:emp".to_string(), "messaging:read"),
            ("acme/user:emp".to_string(), "notify:updated"),
        ]
    );
    let published = f.published.lock().unwrap().clone();
    assert!(matches!(
        &published[2].1,
        RealtimeEvent::NotifyUpdated(e) if e.unread_count == 2 && e.notification_id.is_none()
    ));
}

#[test]
fn marking_an_already_read_message_keeps_the_first_read_at() {
    let mut original = message("dg", "emp", 4, TimeDelta::seconds(30));
    let first = now() - TimeDelta::seconds(10);
    original.read = true;
    original.read_at = Some(first);
    // No mark_read expectation: the store is not touched again.
    let f = holding(&original).build();
    let read = run(f
        .service
        .mark_read(&staff("emp", Role::Employe), original.id))
    .unwrap();
    assert_eq!(read.read_at, Some(first));
    assert!(f.published.lock().unwrap().is_empty());
}

#[test]
fn the_sender_cannot_mark_their_own_message_read() {
    let original = message("dg", "emp", 4, TimeDelta::seconds(30));
    let f = holding(&original).build();
    let err = run(f.service.mark_read(&staff("dg", Role::Dg), original.id)).unwrap_err();
    assert_eq!(err.code(), "forbidden");
    assert_eq!(f.actions(), vec![AuditAction::ForbiddenAttempt]);
}

/// A harness whose store delivers `stored` as a store would (see
/// [`Harness::store_deliveries`]). No `message` read is expected: the store
/// call decides alone.
fn delivering(stored: &Message) -> Harness {
    let mut h = Harness::new(everyone());
    h.store_deliveries(vec![stored.clone()]);
    h
}

#[test]
fn delivery_is_told_to_the_sender_only_and_only_the_first_time() {
    let original = message("dg", "emp", 4, TimeDelta::seconds(1));
    let f = delivering(&original).build();
    let emp = staff("emp", Role::Employe);
    let m = run(f.service.mark_delivered(&emp, original.id)).unwrap();
    assert_eq!(m.delivered_at, Some(now()));
    let again = run(f.service.mark_delivered(&emp, original.id)).unwrap();
    assert_eq!(again, m, "the first time stays");
    assert_eq!(
        f.deliveries(),
        vec![("acme/user:dg".to_string(), "messaging:delivered")],
        "one event, to the sender, for the first delivery only"
    );
}

#[test]
fn only_the_recipient_acknowledges_delivery_and_strangers_see_nothing() {
    let original = message("dg", "emp", 4, TimeDelta::seconds(1));
    let f = delivering(&original).build();
    let err = run(f
        .service
        .mark_delivered(&staff("dg", Role::Dg), original.id))
    .unwrap_err();
    assert_eq!(err.code(), "forbidden");
    let err = run(f
        .service
        .mark_delivered(&staff("pdg", Role::Pdg), original.id))
    .unwrap_err();
    assert_eq!(err, MessagingError::NotFound(Missing::Message));
    assert!(f.published.lock().unwrap().is_empty());
}

#[test]
fn delivering_an_absent_message_is_not_found() {
    let mut h = Harness::new(everyone());
    h.messages
        .expect_mark_delivered()
        .returning(|_, _, _, _| Err(StoreError::NotFound));
    let f = h.build();
    let err = run(f.service.mark_delivered(
        &staff("emp", Role::Employe),
        message("dg", "emp", 9, TimeDelta::seconds(1)).id,
    ))
    .unwrap_err();
    assert_eq!(err, MessagingError::NotFound(Missing::Message));
    assert!(f.published.lock().unwrap().is_empty());
}

#[test]
fn a_disabled_tenant_cannot_acknowledge_delivery() {
    let mut h = Harness::new(everyone());
    h.features = MockFeatureFlags::new();
    h.features
        .expect_messaging_enabled()
        .returning(|_| Ok(false));
    // No mark_delivered expectation: the store is never asked.
    let f = h.build();
    let err = run(f.service.mark_delivered(
        &staff("emp", Role::Employe),
        message("dg", "emp", 4, TimeDelta::seconds(1)).id,
    ))
    .unwrap_err();
    assert_eq!(err, MessagingError::FeatureDisabled);
}

#[test]
fn reading_a_conversation_marks_up_to_the_given_seq() {
    let mut h = Harness::new(everyone());
    h.messages
        .expect_conversation()
        .returning(|_, _| Ok(Some(conversation("dg", "emp", 9))));
    h.messages
        .expect_mark_read()
        .withf(|_, _, reader, from, to, _, _| reader.as_str() == "emp" && *from == 1 && *to == 9)
        .times(1)
        .returning(|_, _, _, _, _, _, _| Ok(vec![]));
    let f = h.build();
    // Asking beyond the last seq is capped at it.
    let changed = run(f.service.mark_conversation_read(
        &staff("emp", Role::Employe),
        conversation_id(),
        Some(50),
    ))
    .unwrap();
    assert!(changed.is_empty());
    let err =
        run(f
            .service
            .mark_conversation_read(&staff("pdg", Role::Pdg), conversation_id(), None))
        .unwrap_err();
    assert_eq!(err, MessagingError::NotFound(Missing::Conversation));
}

#[test]
fn a_service_token_sends_edits_and_deletes_nothing_and_each_refusal_is_audited() {
    // No store expectation: reaching the store would panic.
    let f = Harness::new(everyone()).build();
    let svc = Actor::service(tenant(), uid("stock-service"));
    let id = MessageId::from_uuid(Uuid::nil());
    for err in [
        run(f.service.send(&svc, request("emp", "Stock bas"))).unwrap_err(),
        run(f.service.edit(&svc, id, new_text())).unwrap_err(),
        run(f.service.delete(&svc, id)).unwrap_err(),
    ] {
        assert_eq!(
            err,
            MessagingError::Forbidden("only staff members can use messaging".into())
        );
    }
    assert_eq!(f.actions(), vec![AuditAction::ForbiddenAttempt; 3]);
    let operations: Vec<_> = f
        .audit_rows
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.details["operation"].clone())
        .collect();
    assert_eq!(
        operations,
        vec![
            serde_json::json!("message.send"),
            serde_json::json!("message.edit"),
            serde_json::json!("message.delete")
        ]
    );
}
