//! Conversation list, history, catch-up.

use afritalk_ports::*;
use chrono::TimeDelta;

use super::*;
use crate::views::CatchUpCursor;

fn users() -> Vec<DirectoryUser> {
    vec![
        dir_user("dg", Role::Dg, true),
        dir_user("emp", Role::Employe, true),
    ]
}

#[test]
fn the_conversation_list_names_the_other_participant_and_pages_on() {
    let mut h = Harness::new(users());
    h.messages
        .expect_conversations()
        .returning(|_, _, _, limit| {
            assert_eq!(limit.get(), 1);
            Ok(vec![ConversationSummary {
                conversation: conversation("dg", "emp", 3),
                last_message: Some(message("dg", "emp", 3, TimeDelta::seconds(1))),
                unread_count: 2,
            }])
        });
    let f = h.build();
    let page =
        run(f
            .service
            .conversations(&staff("dg", Role::Dg), None, PageSize::new(1).unwrap()))
        .unwrap();
    let item = &page.conversations[0];
    assert_eq!(item.participant.user_id, uid("emp"));
    assert_eq!(item.participant.display_name.as_deref(), Some("User emp"));
    assert_eq!(item.unread_count, 2);
    // A full page gives a cursor for the next one.
    assert_eq!(page.next_cursor.unwrap().id, conversation_id());
}

#[test]
fn the_conversation_list_marks_the_last_messages_to_the_caller_delivered() {
    let mut h = Harness::new(users());
    let to_me = message("dg", "emp", 3, TimeDelta::seconds(1));
    let mut received = message("dg", "emp", 2, TimeDelta::seconds(2));
    received.delivered_at = Some(now() - TimeDelta::seconds(2));
    let mine = message("emp", "dg", 1, TimeDelta::seconds(3));
    let lasts = vec![to_me.clone(), received.clone(), mine.clone()];
    let summaries: Vec<ConversationSummary> = lasts
        .iter()
        .map(|m| ConversationSummary {
            conversation: conversation("dg", "emp", m.seq),
            last_message: Some(m.clone()),
            unread_count: 1,
        })
        .collect();
    h.messages
        .expect_conversations()
        .returning(move |_, _, _, _| Ok(summaries.clone()));
    let marked = h.store_deliveries(lasts);
    let f = h.build();
    let page = run(f
        .service
        .conversations(&staff("emp", Role::Employe), None, PageSize::DEFAULT))
    .unwrap();
    assert_eq!(*marked.lock().unwrap(), vec![to_me.id]);
    let lasts: Vec<_> = page
        .conversations
        .iter()
        .map(|c| c.last_message.clone().unwrap())
        .collect();
    assert_eq!(lasts[0].delivered_at, Some(now()), "returned as stored now");
    assert_eq!(lasts[1], received, "the first delivery stays");
    assert_eq!(
        lasts[2], mine,
        "the caller's own message is not theirs to receive"
    );
    assert_eq!(
        f.deliveries(),
        vec![("acme/user:dg".to_string(), "messaging:delivered")]
    );
}

#[test]
fn history_with_a_known_user_never_written_to_is_empty_and_an_unknown_user_is_404() {
    let mut h = Harness::new(users());
    h.messages
        .expect_conversation_between()
        .returning(|_, _| Ok(None));
    let f = h.build();
    let dg = staff("dg", Role::Dg);
    let page = run(f.service.history(&dg, &uid("emp"), None, PageSize::DEFAULT)).unwrap();
    assert!(page.messages.is_empty());
    assert_eq!(page.conversation_id, None);
    let err = run(f
        .service
        .history(&dg, &uid("ghost"), None, PageSize::DEFAULT))
    .unwrap_err();
    assert_eq!(err, MessagingError::NotFound(Missing::User));
}

#[test]
fn history_pages_backwards_by_seq() {
    let mut h = Harness::new(users());
    h.messages
        .expect_conversation_between()
        .returning(|_, _| Ok(Some(conversation("dg", "emp", 10))));
    h.messages
        .expect_history()
        .withf(|_, _, before, limit| *before == Some(9) && limit.get() == 2)
        .returning(|_, _, _, _| {
            Ok(vec![
                message("dg", "emp", 8, TimeDelta::seconds(2)),
                message("emp", "dg", 7, TimeDelta::seconds(3)),
            ])
        });
    h.store_deliveries(vec![message("emp", "dg", 7, TimeDelta::seconds(3))]);
    let f = h.build();
    let page = run(f.service.history(
        &staff("dg", Role::Dg),
        &uid("emp"),
        Some(9),
        PageSize::new(2).unwrap(),
    ))
    .unwrap();
    assert_eq!(page.next_before_seq, Some(7));
}

#[test]
fn catch_up_in_a_conversation_is_for_participants_only() {
    let mut h = Harness::new(users());
    h.messages
        .expect_conversation()
        .returning(|_, _| Ok(Some(conversation("dg", "emp", 5))));
    h.messages
        .expect_messages_after()
        .withf(|_, _, after, _| *after == 3)
        .returning(|_, _, _, _| {
            Ok(vec![
                message("dg", "emp", 4, TimeDelta::seconds(2)),
                message("dg", "emp", 5, TimeDelta::seconds(1)),
            ])
        });
    h.store_deliveries(vec![
        message("dg", "emp", 4, TimeDelta::seconds(2)),
        message("dg", "emp", 5, TimeDelta::seconds(1)),
    ]);
    let f = h.build();
    let got = run(f.service.catch_up_conversation(
        &staff("emp", Role::Employe),
        conversation_id(),
        3,
        PageSize::DEFAULT,
    ))
    .unwrap();
    assert_eq!(got.messages.len(), 2);
    assert!(!got.has_more);
    let err = run(f.service.catch_up_conversation(
        &staff("outsider", Role::Pdg),
        conversation_id(),
        0,
        PageSize::DEFAULT,
    ))
    .unwrap_err();
    assert_eq!(err, MessagingError::NotFound(Missing::Conversation));
}

#[test]
fn one_catch_up_call_returns_changes_unread_counts_and_notifications() {
    let mut h = Harness::new(users());
    let since = now() - TimeDelta::minutes(5);
    h.messages
        .expect_changes_since()
        .withf(move |_, user, cursor, _| user.as_str() == "emp" && cursor.updated_at == since)
        .returning(|_, _, _, _| Ok(vec![message("dg", "emp", 5, TimeDelta::seconds(1))]));
    h.store_deliveries(vec![message("dg", "emp", 5, TimeDelta::seconds(1))]);
    h.messages.expect_conversations().returning(|_, _, _, _| {
        Ok(vec![ConversationSummary {
            conversation: conversation("dg", "emp", 5),
            last_message: None,
            unread_count: 4,
        }])
    });
    h.notifications
        .expect_unread_count()
        .returning(|_, _| Ok(7));
    // The bell's first page: unread first, then read ones, which the
    // catch-up leaves out (no archived ones asked).
    let bell = |kind, status, n: u128| Notification {
        id: NotificationId::from_uuid(uuid::Uuid::from_u128(n)),
        tenant_id: tenant(),
        user_id: uid("emp"),
        title: "t".into(),
        message: "m".into(),
        kind,
        status,
        related: None,
        push_sent: false,
        push_sent_at: None,
        created_at: now(),
    };
    let unread = bell(NotificationKind::Alert, NotificationStatus::Unread, 1);
    let read = bell(NotificationKind::Message, NotificationStatus::Read, 2);
    let page = vec![unread.clone(), read];
    h.notifications
        .expect_list()
        .withf(|_, user, after, archived, _| user.as_str() == "emp" && after.is_none() && !archived)
        .returning(move |_, _, _, _, _| Ok(page.clone()));
    let f = h.build();
    let got = run(f.service.catch_up(
        &staff("emp", Role::Employe),
        CatchUpCursor::at(since, None),
        PageSize::DEFAULT,
    ))
    .unwrap();
    assert_eq!(got.changes.len(), 1);
    assert_eq!(got.next, None);
    // The change is a second old: one stamped just before it may not be
    // stored yet, so the resume point stays thirty seconds behind now.
    assert_eq!(
        got.cursor,
        CatchUpCursor::at(now() - TimeDelta::seconds(30), None),
    );
    assert_eq!(got.unread_messages, 4);
    assert_eq!(got.unread_notifications, 7);
    assert_eq!(got.notifications, vec![unread]);
}

#[test]
fn a_history_page_marks_what_no_device_of_the_reader_had_received_delivered() {
    let mut h = Harness::new(users());
    let mine = message("emp", "dg", 4, TimeDelta::seconds(2));
    let to_me = message("dg", "emp", 3, TimeDelta::seconds(3));
    let mut received = message("dg", "emp", 2, TimeDelta::seconds(4));
    received.delivered_at = Some(now() - TimeDelta::seconds(4));
    let mut erased = message("dg", "emp", 1, TimeDelta::seconds(5));
    erased.deleted_at = Some(now() - TimeDelta::seconds(1));
    let page = vec![
        mine.clone(),
        to_me.clone(),
        received.clone(),
        erased.clone(),
    ];
    h.messages
        .expect_conversation_between()
        .returning(|_, _| Ok(Some(conversation("dg", "emp", 4))));
    let stored = page.clone();
    h.messages
        .expect_history()
        .returning(move |_, _, _, _| Ok(stored.clone()));
    let marked = h.store_deliveries(page);
    let f = h.build();
    let emp = staff("emp", Role::Employe);
    let got = run(f.service.history(&emp, &uid("dg"), None, PageSize::DEFAULT)).unwrap();
    assert_eq!(*marked.lock().unwrap(), vec![to_me.id]);
    assert_eq!(
        got.messages[1].delivered_at,
        Some(now()),
        "returned as stored now"
    );
    assert_eq!(
        got.messages[0], mine,
        "the reader's own message is not theirs to receive"
    );
    assert_eq!(got.messages[2], received, "the first delivery stays");
    assert_eq!(got.messages[3], erased, "a tombstone is not delivered");
    assert_eq!(
        f.deliveries(),
        vec![("acme/user:dg".to_string(), "messaging:delivered")]
    );
    // Fetched again: the store says it is delivered already; nobody is told twice.
    run(f.service.history(&emp, &uid("dg"), None, PageSize::DEFAULT)).unwrap();
    assert_eq!(marked.lock().unwrap().len(), 1);
    assert_eq!(f.deliveries().len(), 1);
}

#[test]
fn a_finished_catch_up_resumes_after_its_last_change_once_that_has_settled() {
    let mut old = message("dg", "emp", 5, TimeDelta::seconds(31));
    old.delivered_at = Some(old.created_at);
    let mut h = catching_up(vec![old.clone()]);
    h.store_deliveries(vec![old.clone()]);
    let f = h.build();
    let since = CatchUpCursor::at(now() - TimeDelta::minutes(5), None);
    let got = run(f
        .service
        .catch_up(&staff("emp", Role::Employe), since, PageSize::DEFAULT))
    .unwrap();
    assert_eq!(got.cursor, CatchUpCursor::at(old.updated_at, Some(old.id)));
    // Exactly at the settled point: resumed there, inclusively, since a
    // change stamped at that instant with a smaller id may still be stored.
    let mut edge = message("dg", "emp", 6, TimeDelta::seconds(30));
    edge.delivered_at = Some(edge.created_at);
    let mut h = catching_up(vec![edge.clone()]);
    h.store_deliveries(vec![edge.clone()]);
    let got =
        run(h
            .build()
            .service
            .catch_up(&staff("emp", Role::Employe), since, PageSize::DEFAULT))
        .unwrap();
    assert_eq!(got.cursor, CatchUpCursor::at(edge.updated_at, None));
    // Nothing new, asked from a point in the unsettled window: pulled back too.
    let f = catching_up(Vec::new()).build();
    let recent = CatchUpCursor::at(now() - TimeDelta::seconds(3), None);
    let got = run(f
        .service
        .catch_up(&staff("emp", Role::Employe), recent, PageSize::DEFAULT))
    .unwrap();
    assert_eq!(got.cursor.since, now() - TimeDelta::seconds(30));
}

#[test]
fn a_run_of_pages_resumes_no_later_than_its_first_page_had_settled() {
    // The run's first page was read two minutes ago. A change stamped just
    // before that page's last one, but stored after it was read, was skipped
    // by the later pages: the final cursor must stay before it, however long
    // the client paused between pages.
    let run_settled = now() - TimeDelta::seconds(150);
    let mut last = message("dg", "emp", 5, TimeDelta::seconds(60));
    last.delivered_at = Some(last.created_at);
    let page = |settled_up_to| CatchUpCursor {
        settled_up_to,
        ..CatchUpCursor::at(now() - TimeDelta::seconds(125), None)
    };
    let catch_up = |cursor, limit| {
        let mut h = catching_up(vec![last.clone()]);
        h.store_deliveries(vec![last.clone()]);
        let f = h.build();
        run(f
            .service
            .catch_up(&staff("emp", Role::Employe), cursor, limit))
        .unwrap()
    };
    let found = CatchUpCursor::at(last.updated_at, Some(last.id));
    // A full page passes the run's settled point on…
    let got = catch_up(page(Some(run_settled)), PageSize::new(1).unwrap());
    assert_eq!(
        got.next,
        Some(CatchUpCursor {
            settled_up_to: Some(run_settled),
            ..found
        })
    );
    assert_eq!(got.cursor, found);
    // …and the last page resumes from it, not from its last change.
    let got = catch_up(page(Some(run_settled)), PageSize::DEFAULT);
    assert_eq!(
        (got.next, got.cursor),
        (None, CatchUpCursor::at(run_settled, None))
    );
    // Without a run's point, the page is a run of its own, settled 30 s ago.
    let got = catch_up(page(None), PageSize::DEFAULT);
    assert_eq!(got.cursor, found);
    // A settled point later than the server's own is not believed.
    let got = catch_up(page(Some(now() + TimeDelta::hours(1))), PageSize::DEFAULT);
    assert_eq!(got.cursor, found);
    let got = catch_up(
        page(Some(now() + TimeDelta::hours(1))),
        PageSize::new(1).unwrap(),
    );
    assert_eq!(
        got.next.and_then(|next| next.settled_up_to),
        Some(now() - TimeDelta::seconds(30))
    );
}

/// A harness whose store answers a catch-up with `changes`, no conversations
/// and no unread notifications.
fn catching_up(changes: Vec<Message>) -> Harness {
    let mut h = Harness::new(users());
    h.messages
        .expect_changes_since()
        .returning(move |_, _, _, _| Ok(changes.clone()));
    h.messages
        .expect_conversations()
        .returning(|_, _, _, _| Ok(Vec::new()));
    h.notifications
        .expect_unread_count()
        .returning(|_, _| Ok(0));
    h.notifications
        .expect_list()
        .returning(|_, _, _, _, _| Ok(Vec::new()));
    h
}

#[test]
fn a_catch_up_marks_the_changes_to_the_caller_delivered_after_taking_its_cursor() {
    let first = message("dg", "emp", 4, TimeDelta::seconds(3));
    let last = message("dg", "emp", 5, TimeDelta::seconds(2));
    let mut h = catching_up(vec![first.clone(), last.clone()]);
    let marked = h.store_deliveries(vec![first.clone(), last.clone()]);
    let f = h.build();
    let got = run(f.service.catch_up(
        &staff("emp", Role::Employe),
        CatchUpCursor::at(now() - TimeDelta::minutes(5), None),
        PageSize::new(2).unwrap(),
    ))
    .unwrap();
    assert_eq!(*marked.lock().unwrap(), vec![first.id, last.id]);
    assert!(got.changes.iter().all(|m| m.delivered_at == Some(now())));
    // The next page starts after the last change as it was found, not at the
    // delivery time, which would skip whatever changed in between.
    let next = got.next.unwrap();
    assert_eq!(next.since, last.updated_at);
    assert_eq!(next.after_id, Some(last.id));
    // The run's first page: its settled point is 30 s before now.
    assert_eq!(next.settled_up_to, Some(now() - TimeDelta::seconds(30)));
    assert_eq!(got.cursor, CatchUpCursor::at(next.since, next.after_id));
    assert_eq!(
        f.deliveries(),
        vec![("acme/user:dg".to_string(), "messaging:delivered"); 2]
    );
}

#[test]
fn a_catch_up_with_nothing_new_resumes_where_it_was_asked() {
    let f = catching_up(Vec::new()).build();
    let asked = CatchUpCursor::at(
        now() - TimeDelta::minutes(5),
        Some(message("dg", "emp", 1, TimeDelta::seconds(1)).id),
    );
    let got = run(f
        .service
        .catch_up(&staff("emp", Role::Employe), asked, PageSize::DEFAULT))
    .unwrap();
    assert_eq!((got.next, got.cursor), (None, asked));
}

#[test]
fn a_receipt_that_cannot_be_stored_does_not_fail_the_fetch() {
    let mut h = Harness::new(users());
    h.messages
        .expect_conversation()
        .returning(|_, _| Ok(Some(conversation("dg", "emp", 1))));
    h.messages
        .expect_messages_after()
        .returning(|_, _, _, _| Ok(vec![message("dg", "emp", 1, TimeDelta::seconds(1))]));
    h.messages
        .expect_mark_delivered()
        .returning(|_, _, _, _| Err(StoreError::Unavailable("down".into())));
    let f = h.build();
    let got = run(f.service.catch_up_conversation(
        &staff("emp", Role::Employe),
        conversation_id(),
        0,
        PageSize::DEFAULT,
    ))
    .unwrap();
    assert_eq!(
        got.messages,
        vec![message("dg", "emp", 1, TimeDelta::seconds(1))]
    );
    assert!(f.published.lock().unwrap().is_empty());
}

#[test]
fn typing_goes_to_the_conversation_subscribers() {
    let mut h = Harness::new(users());
    h.messages
        .expect_conversation()
        .returning(|_, _| Ok(Some(conversation("dg", "emp", 5))));
    let f = h.build();
    run(f
        .service
        .typing(&staff("dg", Role::Dg), conversation_id(), true))
    .unwrap();
    let room = format!("acme/conv:{}", conversation_id());
    assert_eq!(f.deliveries(), vec![(room, "typing:start")]);
}

#[test]
fn a_deactivated_caller_reads_nothing_and_each_try_is_on_the_trail() {
    // No store or presence expectation: reaching one would panic.
    let f = Harness::new(vec![
        dir_user("dg", Role::Dg, false),
        dir_user("emp", Role::Employe, true),
    ])
    .build();
    let dg = staff("dg", Role::Dg);
    let s = &f.service;
    let since = CatchUpCursor::at(now() - TimeDelta::minutes(5), None);
    let page = PageSize::DEFAULT;
    let message = MessageId::from_uuid(uuid::Uuid::from_u128(0xABC1));
    let notification = NotificationId::from_uuid(uuid::Uuid::from_u128(0xF1));
    let tries: Vec<(&str, Result<(), MessagingError>)> = vec![
        (
            "conversation.list",
            run(s.conversations(&dg, None, page)).map(drop),
        ),
        (
            "message.history",
            run(s.history(&dg, &uid("emp"), None, page)).map(drop),
        ),
        (
            "conversation.read",
            run(s.conversation(&dg, conversation_id())).map(drop),
        ),
        (
            "catch_up",
            run(s.catch_up_conversation(&dg, conversation_id(), 0, page)).map(drop),
        ),
        ("catch_up", run(s.catch_up(&dg, since, page)).map(drop)),
        ("message.read", run(s.mark_read(&dg, message)).map(drop)),
        (
            "message.read",
            run(s.mark_conversation_read(&dg, conversation_id(), None)).map(drop),
        ),
        (
            "notification.list",
            run(s.notifications(&dg, None, false, page)).map(drop),
        ),
        (
            "notification.status",
            run(s.mark_notification_read(&dg, notification)).map(drop),
        ),
        (
            "notification.status",
            run(s.archive_notification(&dg, notification)).map(drop),
        ),
        (
            "notification.read_all",
            run(s.mark_all_notifications_read(&dg)).map(drop),
        ),
        ("presence.list", run(s.presence(&dg)).map(drop)),
        (
            "presence.read",
            run(s.presence_of_users(&dg, &[uid("emp")])).map(drop),
        ),
        ("presence.ping", run(s.ping(&dg)).map(drop)),
        (
            "ws.connect",
            run(s.connect(&dg, &ConnectionId::new("c1"))).map(drop),
        ),
    ];
    let refused = MessagingError::Forbidden("your account is deactivated".into());
    for (operation, result) in &tries {
        assert_eq!(result, &Err(refused.clone()), "{operation}");
    }
    let expected: Vec<_> = tries
        .iter()
        .map(|(operation, _)| (AuditAction::ForbiddenAttempt, (*operation).into()))
        .collect();
    assert_eq!(f.audited_operations(), expected);
    assert!(f.published.lock().unwrap().is_empty());
}
