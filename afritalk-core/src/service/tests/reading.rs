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
                last_message: Some(message("emp", "dg", 3, TimeDelta::seconds(1))),
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
    let f = h.build();
    let got = run(f.service.catch_up(
        &staff("emp", Role::Employe),
        CatchUpCursor {
            since,
            after_id: None,
        },
        PageSize::DEFAULT,
    ))
    .unwrap();
    assert_eq!(got.changes.len(), 1);
    assert_eq!(got.next, None);
    assert_eq!(got.unread_messages, 4);
    assert_eq!(got.unread_notifications, 7);
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
