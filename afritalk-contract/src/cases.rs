//! The contract cases. Each takes a fresh store's [`Ports`] and panics on the
//! first broken obligation; the names say what is promised.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;

use afritalk_ports::{
    AuditAction, AuditCursor, AuditEntry, AuditFilter, AuditId, ChangeCursor, Conversation,
    ConversationCursor, DeliveryOutcome, DirectoryCursor, DirectoryQuery, DirectoryUser, Message,
    MessageContent, NameKey, NewMessage, Notification, NotificationCursor, NotificationKind,
    NotificationStatus, PageSize, PurgeReceipt, RelatedEntity, Role, SearchText, SendOutcome,
    StoreError, TenantId, UserId,
};
use chrono::{Duration, SubsecRound};
use uuid::Uuid;

use crate::Ports;
use crate::fixtures::*;

fn page(n: u32) -> PageSize {
    PageSize::new(n).unwrap()
}

async fn send_ok(p: &Ports, new: NewMessage) -> (Message, Conversation, bool) {
    match p.messages.send(new).await.unwrap() {
        SendOutcome::Stored {
            message,
            conversation,
            conversation_created,
        } => (message, conversation, conversation_created),
        SendOutcome::Duplicate { message } => panic!("unexpected duplicate {message:?}"),
    }
}

async fn audits(p: &Ports, tenant: &TenantId, action: AuditAction) -> Vec<AuditEntry> {
    p.audit
        .query(
            tenant,
            AuditFilter {
                action: Some(action),
                ..AuditFilter::default()
            },
            page(100),
        )
        .await
        .unwrap()
}

/// Every message of a conversation, oldest first, through history pages.
async fn all_history(p: &Ports, tenant: &TenantId, conv: &Conversation) -> Vec<Message> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let batch = p
            .messages
            .history(tenant, conv.id, before, page(100))
            .await
            .unwrap();
        let Some(last) = batch.last() else { break };
        before = Some(last.seq);
        out.extend(batch);
    }
    out.reverse();
    out
}

pub async fn send_stores_message_conversation_notification_and_audit(p: Ports) {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    let new = with_related(
        new_message(&t, &a, &b, "  Bonjour Bakary  ", at(0)),
        "order",
        "O-17",
    );
    let notif_id = new.notification.id;
    let (m1, c1, created) = send_ok(&p, new.clone()).await;
    assert!(created);
    assert_eq!(m1.id, new.message_id);
    assert_eq!(m1.seq, 1);
    assert_eq!(m1.content, "Bonjour Bakary");
    assert_eq!(m1.conversation_id, new.new_conversation_id);
    assert_eq!(m1.related, new.related);
    assert!(!m1.read && m1.read_at.is_none() && m1.delivered_at.is_none());
    assert_eq!((m1.created_at, m1.updated_at), (at(0), at(0)));
    assert_eq!(c1.id, new.new_conversation_id);
    assert_eq!((&c1.user_one_id, &c1.user_two_id), (&a, &b));
    assert_eq!(
        (c1.last_seq, c1.last_message_at, c1.created_at),
        (1, at(0), at(0))
    );
    assert_eq!(
        p.messages.message(&t, m1.id).await.unwrap(),
        Some(m1.clone())
    );
    assert_eq!(
        p.messages.conversation(&t, c1.id).await.unwrap(),
        Some(c1.clone())
    );
    assert_eq!(
        p.messages
            .conversation_between(&t, &pair(&b, &a))
            .await
            .unwrap(),
        Some(c1.clone())
    );
    let stored_notif = p
        .notifications
        .notification(&t, notif_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored_notif, new.notification);
    assert_eq!(
        audits(&p, &t, AuditAction::ConversationCreate).await,
        vec![new.conversation_audit]
    );
    assert_eq!(
        audits(&p, &t, AuditAction::MessageSend).await,
        vec![new.send_audit]
    );

    // The reply goes into the same conversation, next seq; no second creation.
    let reply = new_message(&t, &b, &a, "Bonjour Awa", at(5));
    let (m2, c2, created) = send_ok(&p, reply).await;
    assert!(!created);
    assert_eq!((m2.seq, m2.conversation_id), (2, c1.id));
    assert_eq!(
        (c2.id, c2.last_seq, c2.last_message_at, c2.updated_at),
        (c1.id, 2, at(5), at(5))
    );
    assert_eq!(c2.created_at, at(0));
    assert_eq!(
        audits(&p, &t, AuditAction::ConversationCreate).await.len(),
        1
    );
    assert_eq!(audits(&p, &t, AuditAction::MessageSend).await.len(), 2);
    assert!(p.messages.has_written(&t, c1.id, &a).await.unwrap());
    assert!(p.messages.has_written(&t, c1.id, &b).await.unwrap());
    assert!(
        !p.messages
            .has_written(&t, c1.id, &user("chris"))
            .await
            .unwrap()
    );
}

pub async fn send_between_the_same_user_is_refused(p: Ports) {
    let t = tenant("acme");
    let a = user("awa");
    let err = p
        .messages
        .send(new_message(&t, &a, &a, "moi", at(0)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(audits(&p, &t, AuditAction::MessageSend).await.is_empty());
}

pub async fn retry_with_same_client_message_id_returns_the_stored_message_and_writes_nothing(
    p: Ports,
) {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    let first = with_client_id(new_message(&t, &a, &b, "une fois", at(0)), "c-1");
    let (stored, conv, _) = send_ok(&p, first).await;
    // A retry carries new server-side ids but the same client id.
    let retry = with_client_id(new_message(&t, &a, &b, "une fois", at(10)), "c-1");
    let retry_notif = retry.notification.id;
    match p.messages.send(retry.clone()).await.unwrap() {
        SendOutcome::Duplicate { message } => assert_eq!(message, stored),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(
        p.messages.message(&t, retry.message_id).await.unwrap(),
        None
    );
    assert_eq!(
        p.notifications.notification(&t, retry_notif).await.unwrap(),
        None
    );
    assert_eq!(p.notifications.unread_count(&t, &b).await.unwrap(), 1);
    assert_eq!(audits(&p, &t, AuditAction::MessageSend).await.len(), 1);
    let conv_now = p.messages.conversation(&t, conv.id).await.unwrap().unwrap();
    assert_eq!((conv_now.last_seq, conv_now.last_message_at), (1, at(0)));

    // The key is per sender: the other participant may use the same client id.
    let (other, _, _) = send_ok(
        &p,
        with_client_id(new_message(&t, &b, &a, "moi aussi", at(20)), "c-1"),
    )
    .await;
    assert_eq!(other.seq, 2);
}

pub async fn concurrent_retries_store_exactly_one_message(p: Ports) {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    // A pair with no conversation yet: the racers also race to create it.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let p = p.clone();
            let new = with_client_id(new_message(&t, &a, &b, "course", at(i)), "race-1");
            tokio::spawn(async move { p.messages.send(new).await.unwrap() })
        })
        .collect();
    let mut stored = Vec::new();
    let mut duplicates = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            SendOutcome::Stored { message, .. } => stored.push(message),
            SendOutcome::Duplicate { message } => duplicates.push(message),
        }
    }
    assert_eq!(stored.len(), 1, "exactly one send stores");
    assert_eq!(duplicates.len(), 7);
    assert!(duplicates.iter().all(|d| d == &stored[0]));
    let conv = p
        .messages
        .conversation_between(&t, &pair(&a, &b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conv.last_seq, 1);
    assert_eq!(all_history(&p, &t, &conv).await, stored);
    assert_eq!(p.notifications.unread_count(&t, &b).await.unwrap(), 1);
    assert_eq!(audits(&p, &t, AuditAction::MessageSend).await.len(), 1);
    assert_eq!(
        audits(&p, &t, AuditAction::ConversationCreate).await.len(),
        1
    );
}

pub async fn concurrent_sends_get_gapless_unique_seqs(p: Ports) {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let (p, t, a, b) = (p.clone(), t.clone(), a.clone(), b.clone());
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..25 {
                    // Both directions, so both ends of the pair hit the same row.
                    let (from, to) = if (task + i) % 2 == 0 {
                        (&a, &b)
                    } else {
                        (&b, &a)
                    };
                    let content = format!("t{task} m{i}");
                    let (m, _, _) =
                        send_ok(&p, new_message(&t, from, to, &content, at(i64::from(i)))).await;
                    seqs.push(m.seq);
                }
                seqs
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.extend(task.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<i64>>());
    let conv = p
        .messages
        .conversation_between(&t, &pair(&a, &b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conv.last_seq, 200);
    let history: Vec<i64> = all_history(&p, &t, &conv)
        .await
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(history, (1..=200).collect::<Vec<i64>>());
    assert_eq!(
        audits(&p, &t, AuditAction::ConversationCreate).await.len(),
        1
    );
}

/// Sends of many conversations at once (the Postgres store writes them in
/// shared statements): retries, an already stored client id and a send that
/// fails among them, and each send still gets the answer it would get alone.
pub async fn concurrent_sends_across_conversations_each_get_their_own_answer(p: Ports) {
    let t = tenant("acme");
    const PAIRS: usize = 20;
    let senders: Vec<UserId> = (0..PAIRS).map(|i| user(&format!("s{i:02}"))).collect();
    let recipients: Vec<UserId> = (0..PAIRS).map(|i| user(&format!("r{i:02}"))).collect();
    // Pair 0 already has a message, whose client id one of the sends reuses.
    let (earlier, _, _) = send_ok(
        &p,
        with_client_id(
            new_message(&t, &senders[0], &recipients[0], "avant", at(0)),
            "earlier",
        ),
    )
    .await;
    // A send that fails midway: its notification id is taken.
    let taken = notification(&t, &recipients[1], NotificationKind::Alert, at(0));
    p.notifications
        .create(taken.clone(), created(&taken))
        .await
        .unwrap();
    let mut doomed = new_message(&t, &senders[1], &recipients[1], "perdu", at(1));
    doomed.notification.id = taken.id;

    // Three sends per pair (both directions), five of them retried at once.
    let mut sends = Vec::new();
    for (i, (s, r)) in senders.iter().zip(&recipients).enumerate() {
        for n in 0..3 {
            let (from, to) = if n == 1 { (r, s) } else { (s, r) };
            let client_id = format!("c{i}-{n}");
            let content = format!("p{i} m{n}");
            sends.push(with_client_id(
                new_message(&t, from, to, &content, at(10)),
                &client_id,
            ));
            if n == 0 && i % 4 == 0 {
                let retry = new_message(&t, from, to, &content, at(10));
                sends.push(with_client_id(retry, &client_id));
            }
        }
    }
    let replay = with_client_id(
        new_message(&t, &senders[0], &recipients[0], "avant", at(11)),
        "earlier",
    );
    sends.push(replay);
    let doomed_id = doomed.message_id;
    sends.push(doomed);
    let client_ids: Vec<Option<String>> = sends
        .iter()
        .map(|n| n.client_message_id.as_ref().map(|c| c.as_str().to_owned()))
        .collect();
    // Polled together from one task, so every send is queued before the first
    // is written.
    let outcomes = futures::future::join_all(sends.into_iter().map(|n| p.messages.send(n))).await;

    let mut stored: std::collections::BTreeMap<String, Vec<Message>> = Default::default();
    let mut duplicates: std::collections::BTreeMap<String, Vec<Message>> = Default::default();
    let mut created = 0;
    let mut failures = 0;
    for (outcome, client_id) in outcomes.into_iter().zip(client_ids) {
        match (outcome, client_id) {
            (
                Ok(SendOutcome::Stored {
                    message,
                    conversation_created,
                    ..
                }),
                Some(id),
            ) => {
                created += usize::from(conversation_created);
                stored.entry(id).or_default().push(message);
            }
            (Ok(SendOutcome::Duplicate { message }), Some(id)) => {
                duplicates.entry(id).or_default().push(message);
            }
            (Err(err), None) => {
                assert!(
                    matches!(err, StoreError::Conflict(_) | StoreError::Unavailable(_)),
                    "{err:?}"
                );
                failures += 1;
            }
            (other, id) => panic!("unexpected answer {other:?} for client id {id:?}"),
        }
    }
    assert_eq!(failures, 1, "only the doomed send fails");
    assert_eq!(p.messages.message(&t, doomed_id).await.unwrap(), None);
    assert_eq!(
        p.notifications.notification(&t, taken.id).await.unwrap(),
        Some(taken)
    );
    assert_eq!(duplicates.remove("earlier"), Some(vec![earlier.clone()]));
    assert_eq!(stored.len(), PAIRS * 3, "one stored message per client id");
    for (id, messages) in &stored {
        assert_eq!(messages.len(), 1, "{id} stored once");
    }
    for (id, found) in &duplicates {
        assert_eq!(
            found, &stored[id],
            "the retry of {id} gets the stored message"
        );
    }
    assert_eq!(duplicates.len(), PAIRS / 4);
    assert_eq!(created, PAIRS - 1, "pair 0 existed");

    // Every conversation holds its messages once, with gapless seqs.
    for (i, (s, r)) in senders.iter().zip(&recipients).enumerate() {
        let conv = p
            .messages
            .conversation_between(&t, &pair(s, r))
            .await
            .unwrap()
            .unwrap();
        let history = all_history(&p, &t, &conv).await;
        let expected = if i == 0 { 4 } else { 3 };
        let seqs: Vec<i64> = history.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=expected).collect::<Vec<i64>>(), "pair {i}");
        assert_eq!(conv.last_seq, expected);
        for n in 0..3 {
            let message = &stored[&format!("c{i}-{n}")][0];
            assert!(history.contains(message), "pair {i} holds its message {n}");
        }
    }
    let sent = PAIRS * 3 + 1;
    assert_eq!(audits(&p, &t, AuditAction::MessageSend).await.len(), sent);
    assert_eq!(
        audits(&p, &t, AuditAction::ConversationCreate).await.len(),
        PAIRS
    );
    // Each recipient got one notification per message sent to them (two per
    // pair), plus pair 0's earlier one and pair 1's injected one.
    assert_eq!(
        p.notifications
            .unread_count(&t, &recipients[0])
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        p.notifications
            .unread_count(&t, &recipients[1])
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        p.notifications
            .unread_count(&t, &recipients[2])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        p.notifications.unread_count(&t, &senders[2]).await.unwrap(),
        1
    );
}

pub async fn failed_send_leaves_nothing_half_written(p: Ports) {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    // Inject a failure after the conversation and message inserts: the
    // notification's id already exists.
    let taken = notification(&t, &b, NotificationKind::Alert, at(0));
    let alert_row = created(&taken);
    p.notifications
        .create(taken.clone(), alert_row.clone())
        .await
        .unwrap();

    let mut doomed = with_client_id(new_message(&t, &a, &b, "perdu", at(1)), "c-doomed");
    doomed.notification.id = taken.id;
    let err = p.messages.send(doomed.clone()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_) | StoreError::Unavailable(_)),
        "{err:?}"
    );
    assert_eq!(
        p.messages
            .conversation_between(&t, &pair(&a, &b))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        p.messages
            .conversation(&t, doomed.new_conversation_id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        p.messages.message(&t, doomed.message_id).await.unwrap(),
        None
    );
    assert_eq!(
        p.audit
            .query(&t, AuditFilter::default(), page(100))
            .await
            .unwrap(),
        vec![alert_row],
        "only the alert's row"
    );
    assert_eq!(
        p.notifications.notification(&t, taken.id).await.unwrap(),
        Some(taken.clone())
    );

    // Into an existing conversation: its seq and time do not move either.
    let (m1, conv, _) = send_ok(&p, new_message(&t, &a, &b, "un", at(2))).await;
    let mut doomed2 = new_message(&t, &a, &b, "perdu aussi", at(3));
    doomed2.notification.id = taken.id;
    assert!(p.messages.send(doomed2.clone()).await.is_err());
    let after = p.messages.conversation(&t, conv.id).await.unwrap().unwrap();
    assert_eq!(after, conv);
    assert_eq!(
        p.messages.message(&t, doomed2.message_id).await.unwrap(),
        None
    );
    assert_eq!(all_history(&p, &t, &conv).await, vec![m1]);
    assert_eq!(audits(&p, &t, AuditAction::MessageSend).await.len(), 1);

    // The failed client id was not consumed, and the next seq has no gap.
    let (m2, _, _) = send_ok(
        &p,
        with_client_id(new_message(&t, &a, &b, "deux", at(4)), "c-doomed"),
    )
    .await;
    assert_eq!(m2.seq, 2);
}

pub async fn history_and_catch_up_are_stable_while_messages_arrive(p: Ports) {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    let mut clock = 0;
    let mut send = async |p: &Ports, n: usize| {
        let mut conv = None;
        for _ in 0..n {
            clock += 1;
            let (_, c, _) =
                send_ok(p, new_message(&t, &a, &b, &format!("m{clock}"), at(clock))).await;
            conv = Some(c);
        }
        conv.unwrap()
    };
    let conv = send(&p, 30).await;

    // Newest first, page by page, while three new messages land between pages.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let batch = p
            .messages
            .history(&t, conv.id, before, page(7))
            .await
            .unwrap();
        assert!(batch.len() <= 7);
        let Some(last) = batch.last() else { break };
        before = Some(last.seq);
        seen.extend(batch.iter().map(|m| m.seq));
        send(&p, 3).await;
    }
    assert_eq!(seen, (1..=30).rev().collect::<Vec<i64>>());

    // Catch-up after a seq, oldest first, while more keep arriving.
    let mut caught = Vec::new();
    let mut after = 0;
    loop {
        let batch = p
            .messages
            .messages_after(&t, conv.id, after, page(10))
            .await
            .unwrap();
        let Some(last) = batch.last() else { break };
        after = last.seq;
        caught.extend(batch.iter().map(|m| m.seq));
        if caught.len() < 60 {
            send(&p, 2).await;
        }
    }
    let total = p
        .messages
        .conversation(&t, conv.id)
        .await
        .unwrap()
        .unwrap()
        .last_seq;
    assert_eq!(caught, (1..=total).collect::<Vec<i64>>());
    assert!(
        p.messages
            .history(&t, conv.id, Some(1), page(10))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn conversation_list_orders_latest_first_with_last_message_and_unread_count(p: Ports) {
    let t = tenant("acme");
    let me = user("moussa");
    let partners: Vec<UserId> = ["p1", "p2", "p3", "p4", "p5"]
        .iter()
        .map(|u| user(u))
        .collect();
    // pN sends N messages to me; p1..p5 at increasing times, then p2 gets my reply last.
    let mut last_by_partner = Vec::new();
    let mut clock = 0;
    for (i, partner) in partners.iter().enumerate() {
        let mut last = None;
        for _ in 0..=i {
            clock += 10;
            last = Some(send_ok(&p, new_message(&t, partner, &me, "salut", at(clock))).await);
        }
        last_by_partner.push(last.unwrap());
    }
    clock += 10;
    let (reply, reply_conv, _) =
        send_ok(&p, new_message(&t, &me, &partners[1], "réponse", at(clock))).await;
    // I read all of p4's messages but the last; a deleted unread one does not count.
    let conv4 = &last_by_partner[3].1;
    let read_audit = audit(&t, &me, AuditAction::MessageRead, at(clock));
    p.messages
        .mark_read(&t, conv4.id, &me, 1, 3, at(clock), read_audit)
        .await
        .unwrap();
    let (m5, conv5, _) = &last_by_partner[4];
    p.messages
        .delete(
            &t,
            m5.id,
            at(clock),
            audit(&t, &partners[4], AuditAction::MessageDelete, at(clock)),
        )
        .await
        .unwrap();

    let list = p
        .messages
        .conversations(&t, &me, None, page(50))
        .await
        .unwrap();
    let order: Vec<_> = list.iter().map(|s| s.conversation.id).collect();
    let expected = vec![
        reply_conv.id,
        conv5.id,
        conv4.id,
        last_by_partner[2].1.id,
        last_by_partner[0].1.id,
    ];
    assert_eq!(order, expected);
    let unread: Vec<u64> = list.iter().map(|s| s.unread_count).collect();
    assert_eq!(unread, vec![2, 4, 1, 3, 1]);
    assert_eq!(list[0].last_message.as_ref(), Some(&reply));
    let tomb = list[1].last_message.as_ref().unwrap();
    assert!(tomb.is_deleted() && tomb.content.is_empty());
    // The partner sees the same conversation from the other side, with their own count.
    let theirs = p
        .messages
        .conversations(&t, &partners[1], None, page(50))
        .await
        .unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(
        (theirs[0].conversation.id, theirs[0].unread_count),
        (reply_conv.id, 1)
    );

    // Keyset pages of 2 give the same rows, each once; ties on time go by id desc.
    let tie_a = send_ok(
        &p,
        new_message(&t, &user("q1"), &me, "même instant", at(99_000)),
    )
    .await
    .1;
    let tie_b = send_ok(
        &p,
        new_message(&t, &user("q2"), &me, "même instant", at(99_000)),
    )
    .await
    .1;
    let full = p
        .messages
        .conversations(&t, &me, None, page(50))
        .await
        .unwrap();
    let (hi, lo) = if tie_a.id > tie_b.id {
        (tie_a.id, tie_b.id)
    } else {
        (tie_b.id, tie_a.id)
    };
    assert_eq!((full[0].conversation.id, full[1].conversation.id), (hi, lo));
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let batch = p
            .messages
            .conversations(&t, &me, cursor, page(2))
            .await
            .unwrap();
        let Some(last) = batch.last() else { break };
        cursor = Some(ConversationCursor {
            last_message_at: last.conversation.last_message_at,
            id: last.conversation.id,
        });
        paged.extend(batch);
    }
    assert_eq!(paged, full);
    assert!(
        p.messages
            .conversations(&t, &user("nobody"), None, page(50))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn conversation_partners_follow_the_conversation_list_order(p: Ports) {
    let t = tenant("acme");
    let me = user("moussa");
    // p1..p4 write to me in turn, then I answer p2: p2, p4, p3, p1.
    for (i, name) in ["p1", "p2", "p3", "p4"].iter().enumerate() {
        send_ok(
            &p,
            new_message(&t, &user(name), &me, "salut", at(10 * i as i64 + 10)),
        )
        .await;
    }
    send_ok(&p, new_message(&t, &me, &user("p2"), "réponse", at(100))).await;
    // Another tenant's conversation of a user with the same id stays out.
    send_ok(
        &p,
        new_message(&tenant("globex"), &user("x9"), &me, "autre", at(200)),
    )
    .await;

    let partners = p
        .messages
        .conversation_partners(&t, &me, page(50))
        .await
        .unwrap();
    let names: Vec<&str> = partners.iter().map(UserId::as_str).collect();
    assert_eq!(names, ["p2", "p4", "p3", "p1"]);
    let listed: Vec<UserId> = p
        .messages
        .conversations(&t, &me, None, page(50))
        .await
        .unwrap()
        .iter()
        .filter_map(|s| s.conversation.other_participant(&me).cloned())
        .collect();
    assert_eq!(partners, listed);
    let first_two = p
        .messages
        .conversation_partners(&t, &me, page(2))
        .await
        .unwrap();
    assert_eq!(first_two, partners[..2]);
    // Seen from the other side, the partner is me.
    assert_eq!(
        p.messages
            .conversation_partners(&t, &user("p3"), page(50))
            .await
            .unwrap(),
        vec![me.clone()]
    );
    assert!(
        p.messages
            .conversation_partners(&t, &user("nobody"), page(50))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn unicode_and_emoji_round_trip(p: Ports) {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    let texts = [
        "Salut 👋🏾 ça va ? — مرحبا — 你好 — Dɛmɛ — e\u{301} — 🇸🇳🇨🇮 — 👩🏾‍💻",
        "'; DROP TABLE messages; -- \\ \" % _ ?",
        &"🙂".repeat(4_000),
        &"ߒ߬".repeat(2_000),
    ];
    for (i, text) in texts.iter().enumerate() {
        let mut new = new_message(&t, &a, &b, text, at(i as i64));
        new.notification.title = format!("Nouveau 💬 {i}");
        new.notification.message = MessageContent::parse(text).unwrap().preview(80);
        new.send_audit.details = serde_json::json!({ "aperçu": text, "emoji": "🎉" });
        let (m, _, _) = send_ok(&p, new.clone()).await;
        assert_eq!(m.content, *text);
        assert_eq!(
            p.messages.message(&t, m.id).await.unwrap().unwrap().content,
            *text
        );
        let n = p
            .notifications
            .notification(&t, new.notification.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, new.notification);
        let rows = p
            .audit
            .query(
                &t,
                AuditFilter {
                    action: Some(AuditAction::MessageSend),
                    ..Default::default()
                },
                page(1),
            )
            .await
            .unwrap();
        assert_eq!(rows[0].details, new.send_audit.details);
    }
    let edited = p
        .messages
        .edit(
            &t,
            p.messages
                .conversations(&t, &a, None, page(1))
                .await
                .unwrap()[0]
                .last_message
                .as_ref()
                .unwrap()
                .id,
            MessageContent::parse("édité ✍🏿").unwrap(),
            at(100),
            audit(&t, &a, AuditAction::MessageEdit, at(100)),
        )
        .await
        .unwrap();
    assert_eq!(edited.content, "édité ✍🏿");
    let name = directory_user(&t, "fatou", "Fatoumata Ndiaye-Diop 🌍 فاطمة", Role::Dg);
    p.directory.upsert(name.clone()).await.unwrap();
    assert_eq!(
        p.directory.user(&t, &user("fatou")).await.unwrap(),
        Some(name)
    );
}

pub async fn timestamps_are_utc_to_the_microsecond(p: Ports) {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    let sent = at(0); // …:53.589793 UTC
    let (m, c, _) = send_ok(&p, new_message(&t, &a, &b, "heure", sent)).await;
    assert_eq!(m.created_at, sent);
    assert_eq!(m.created_at.timestamp_subsec_micros(), 589_793);
    assert_eq!(c.last_message_at, sent);
    let back = p.messages.message(&t, m.id).await.unwrap().unwrap();
    assert_eq!(back.created_at, sent);
    assert_eq!(
        back.created_at.to_rfc3339(),
        "2025-03-14T09:26:53.589793+00:00"
    );

    // Sub-microsecond input is kept to the microsecond, never rounded up.
    let precise = sent + Duration::nanoseconds(1_000_999);
    let delivered = p
        .messages
        .mark_delivered(&t, m.id, &b, precise)
        .await
        .unwrap()
        .into_message();
    assert_eq!(delivered.delivered_at, Some(precise.trunc_subsecs(6)));
    let read = p
        .messages
        .mark_read(
            &t,
            c.id,
            &b,
            1,
            1,
            sent + Duration::microseconds(1),
            audit(&t, &b, AuditAction::MessageRead, sent),
        )
        .await
        .unwrap();
    assert_eq!(read[0].read_at, Some(sent + Duration::microseconds(1)));
    let rows = p
        .audit
        .query(&t, AuditFilter::default(), page(10))
        .await
        .unwrap();
    assert!(rows.iter().all(|r| r.created_at == sent));
    let n = notification(
        &t,
        &a,
        NotificationKind::System,
        sent + Duration::microseconds(7),
    );
    p.notifications
        .create(n.clone(), created(&n))
        .await
        .unwrap();
    assert_eq!(
        p.notifications
            .notification(&t, n.id)
            .await
            .unwrap()
            .unwrap()
            .created_at,
        n.created_at
    );
}

pub async fn mark_delivered_keeps_the_first_time(p: Ports) {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    let (m, _, _) = send_ok(&p, new_message(&t, &a, &b, "reçu ?", at(0))).await;
    let DeliveryOutcome::Delivered(first) = p
        .messages
        .mark_delivered(&t, m.id, &b, at(5))
        .await
        .unwrap()
    else {
        panic!("the recipient's first ack delivers");
    };
    assert_eq!((first.delivered_at, first.updated_at), (Some(at(5)), at(5)));
    assert_eq!(
        p.messages.message(&t, m.id).await.unwrap(),
        Some(first.clone())
    );
    let second = p
        .messages
        .mark_delivered(&t, m.id, &b, at(9))
        .await
        .unwrap();
    assert_eq!(second, DeliveryOutcome::AlreadyDelivered(first.clone()));
    assert_eq!(p.messages.message(&t, m.id).await.unwrap(), Some(first));
    let err = p
        .messages
        .mark_delivered(&t, message_id(), &b, at(9))
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
}

pub async fn mark_delivered_by_a_non_recipient_changes_nothing(p: Ports) {
    let t = tenant("acme");
    let (a, b, c) = (user("awa"), user("bakary"), user("chris"));
    let (m, _, _) = send_ok(&p, new_message(&t, &a, &b, "pour b", at(0))).await;
    // The sender and a stranger, before any delivery.
    for who in [&a, &c] {
        let outcome = p
            .messages
            .mark_delivered(&t, m.id, who, at(5))
            .await
            .unwrap();
        assert_eq!(outcome, DeliveryOutcome::NotRecipient(m.clone()));
    }
    assert_eq!(p.messages.message(&t, m.id).await.unwrap(), Some(m.clone()));
    // After the delivery the recipient check still comes first.
    let delivered = p
        .messages
        .mark_delivered(&t, m.id, &b, at(6))
        .await
        .unwrap()
        .into_message();
    assert_eq!(delivered.delivered_at, Some(at(6)));
    let outcome = p
        .messages
        .mark_delivered(&t, m.id, &a, at(7))
        .await
        .unwrap();
    assert_eq!(outcome, DeliveryOutcome::NotRecipient(delivered.clone()));
    assert_eq!(p.messages.message(&t, m.id).await.unwrap(), Some(delivered));
}

pub async fn concurrent_delivery_acks_deliver_exactly_once(p: Ports) {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    let (m, _, _) = send_ok(&p, new_message(&t, &a, &b, "8 appareils", at(0))).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (p, t, b) = (p.clone(), t.clone(), b.clone());
            tokio::spawn(async move {
                p.messages
                    .mark_delivered(&t, m.id, &b, at(10 + i))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut delivered = Vec::new();
    let mut already = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            DeliveryOutcome::Delivered(message) => delivered.push(message),
            DeliveryOutcome::AlreadyDelivered(message) => already.push(message),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(delivered.len(), 1, "exactly one ack delivers");
    assert!(already.iter().all(|m| m == &delivered[0]));
    assert_eq!(
        p.messages.message(&t, m.id).await.unwrap(),
        Some(delivered[0].clone())
    );
}

/// Acknowledgements of many messages at once (the Postgres store writes them
/// in shared statements): each gets the answer it would get alone.
pub async fn concurrent_acks_of_many_messages_each_get_their_own_answer(p: Ports) {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    let mut messages = Vec::new();
    for i in 0..30 {
        let (m, _, _) = send_ok(&p, new_message(&t, &a, &b, &format!("m{i}"), at(i))).await;
        messages.push(m);
    }
    // Message 0 was delivered before; message 1 is acknowledged twice.
    let first = p
        .messages
        .mark_delivered(&t, messages[0].id, &b, at(100))
        .await
        .unwrap();
    assert!(matches!(first, DeliveryOutcome::Delivered(_)));
    let unknown = message_id();
    let mut acks = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        // Every fifth ack comes from the sender, who cannot deliver.
        let by = if i % 5 == 4 { &a } else { &b };
        acks.push((m.id, by.clone(), at(200 + i64::try_from(i).unwrap())));
    }
    acks.push((messages[1].id, b.clone(), at(300)));
    acks.push((unknown, b.clone(), at(301)));
    // Polled together from one task, so every ack is queued before the first
    // is written.
    let outcomes = futures::future::join_all(
        acks.iter()
            .map(|(id, by, when)| p.messages.mark_delivered(&t, *id, by, *when)),
    )
    .await;

    let mut delivered_1 = 0;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let Some(m) = messages.get(i) else {
            if i == 30 {
                match outcome.unwrap() {
                    DeliveryOutcome::Delivered(found) => {
                        assert_eq!(found.delivered_at, Some(at(300)));
                        delivered_1 += 1;
                    }
                    DeliveryOutcome::AlreadyDelivered(found) => {
                        assert_eq!(found.delivered_at, Some(at(201)));
                    }
                    other => panic!("second ack of message 1: {other:?}"),
                }
            } else {
                assert_eq!(
                    outcome.unwrap_err(),
                    StoreError::NotFound,
                    "unknown message"
                );
            }
            continue;
        };
        let outcome = outcome.unwrap();
        let stored = p.messages.message(&t, m.id).await.unwrap().unwrap();
        assert_eq!(
            outcome.message(),
            &stored,
            "ack {i} returns the stored message"
        );
        match outcome {
            DeliveryOutcome::AlreadyDelivered(found) if i == 1 => {
                // Message 1's other ack came first.
                assert_eq!(found.delivered_at, Some(at(300)));
            }
            DeliveryOutcome::AlreadyDelivered(found) => {
                assert_eq!(i, 0, "only message 0 was delivered before, got {found:?}");
                assert_eq!(found.delivered_at, Some(at(100)), "it keeps its first time");
            }
            DeliveryOutcome::NotRecipient(found) => {
                assert_eq!(i % 5, 4, "ack {i}");
                assert_eq!(found.delivered_at, None, "a sender's ack changes nothing");
            }
            DeliveryOutcome::Delivered(found) => {
                assert!(i != 0 && i % 5 != 4, "ack {i}");
                let expected = at(200 + i64::try_from(i).unwrap());
                assert_eq!(found.delivered_at, Some(expected), "ack {i}");
                assert_eq!(found.updated_at, expected);
                delivered_1 += usize::from(i == 1);
            }
        }
    }
    assert_eq!(delivered_1, 1, "one of message 1's two acks delivers it");
}

pub async fn mark_read_keeps_first_read_at_and_returns_only_newly_read(p: Ports) {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(
            send_ok(&p, new_message(&t, &a, &b, &format!("m{i}"), at(i)))
                .await
                .0,
        );
    }
    // One from the reader (never marked by their own read) and one deleted.
    let (own, conv, _) = send_ok(&p, new_message(&t, &b, &a, "à moi", at(10))).await;
    p.messages
        .mark_delivered(&t, sent[1].id, &b, at(11))
        .await
        .unwrap();
    p.messages
        .delete(
            &t,
            sent[4].id,
            at(12),
            audit(&t, &a, AuditAction::MessageDelete, at(12)),
        )
        .await
        .unwrap();

    let read_audit = |ms| audit(&t, &b, AuditAction::MessageRead, at(ms));
    let first = p
        .messages
        .mark_read(&t, conv.id, &b, 1, 3, at(20), read_audit(20))
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(
        first
            .iter()
            .all(|m| m.read && m.read_at == Some(at(20)) && m.updated_at == at(20))
    );
    assert_eq!(
        first[0].delivered_at,
        Some(at(20)),
        "read implies delivered"
    );
    assert_eq!(
        first[1].delivered_at,
        Some(at(11)),
        "the first delivery time stays"
    );

    let second = p
        .messages
        .mark_read(&t, conv.id, &b, 1, 100, at(30), read_audit(30))
        .await
        .unwrap();
    assert_eq!(second.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4]);
    assert_eq!(
        p.messages
            .message(&t, sent[0].id)
            .await
            .unwrap()
            .unwrap()
            .read_at,
        Some(at(20))
    );
    assert!(
        p.messages
            .message(&t, sent[4].id)
            .await
            .unwrap()
            .unwrap()
            .read_at
            .is_none()
    );
    assert!(
        p.messages
            .message(&t, own.id)
            .await
            .unwrap()
            .unwrap()
            .read_at
            .is_none()
    );

    let third = p
        .messages
        .mark_read(&t, conv.id, &b, 1, 100, at(40), read_audit(40))
        .await
        .unwrap();
    assert!(third.is_empty());
    assert_eq!(
        audits(&p, &t, AuditAction::MessageRead).await.len(),
        2,
        "audit only when something changed"
    );
}

pub async fn edit_and_delete_follow_their_not_found_and_conflict_rules(p: Ports) {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    let (m, conv, _) = send_ok(&p, new_message(&t, &a, &b, "brouillon", at(0))).await;
    let content = |s: &str| MessageContent::parse(s).unwrap();

    let edited = p
        .messages
        .edit(
            &t,
            m.id,
            content("version finale"),
            at(60),
            audit(&t, &a, AuditAction::MessageEdit, at(60)),
        )
        .await
        .unwrap();
    assert_eq!(edited.content, "version finale");
    assert_eq!(
        (edited.edited_at, edited.updated_at, edited.created_at),
        (Some(at(60)), at(60), at(0))
    );
    assert_eq!((edited.seq, edited.id), (m.seq, m.id));
    assert_eq!(audits(&p, &t, AuditAction::MessageEdit).await.len(), 1);

    let deleted = p
        .messages
        .delete(
            &t,
            m.id,
            at(70),
            audit(&t, &a, AuditAction::MessageDelete, at(70)),
        )
        .await
        .unwrap();
    assert!(deleted.is_deleted() && deleted.content.is_empty());
    assert_eq!(
        (deleted.deleted_at, deleted.updated_at),
        (Some(at(70)), at(70))
    );
    assert!(
        p.messages.has_written(&t, conv.id, &a).await.unwrap(),
        "deleted messages count"
    );

    let err = p
        .messages
        .edit(
            &t,
            m.id,
            content("trop tard"),
            at(80),
            audit(&t, &a, AuditAction::MessageEdit, at(80)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = p
        .messages
        .delete(
            &t,
            m.id,
            at(90),
            audit(&t, &a, AuditAction::MessageDelete, at(90)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(p.messages.message(&t, m.id).await.unwrap(), Some(deleted));
    assert_eq!(
        audits(&p, &t, AuditAction::MessageEdit).await.len(),
        1,
        "conflicts change nothing"
    );
    assert_eq!(audits(&p, &t, AuditAction::MessageDelete).await.len(), 1);

    let missing = message_id();
    let err = p
        .messages
        .edit(
            &t,
            missing,
            content("x"),
            at(1),
            audit(&t, &a, AuditAction::MessageEdit, at(1)),
        )
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
    let err = p
        .messages
        .delete(
            &t,
            missing,
            at(1),
            audit(&t, &a, AuditAction::MessageDelete, at(1)),
        )
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
}

pub async fn edit_and_delete_keep_the_message_notification_text_in_step(p: Ports) {
    let t = tenant("acme");
    let (a, b, c) = (user("awa"), user("bakary"), user("chris"));
    let (m, _, _) = send_ok(&p, new_message(&t, &a, &b, "le code est 4471", at(0))).await;
    // Sent at the same instant to the same recipient: must keep its own text.
    let (other, _, _) = send_ok(&p, new_message(&t, &c, &b, "autre sujet", at(0))).await;
    let text_of = async |message: &Message| {
        let mine = p
            .notifications
            .list(&t, &b, None, true, page(100))
            .await
            .unwrap();
        let id = message.id.to_string();
        let found: Vec<Notification> = mine
            .into_iter()
            .filter(|n| n.related.as_ref().is_some_and(|r| r.entity_id() == id))
            .collect();
        assert_eq!(found.len(), 1, "one notification per message");
        found.into_iter().next().unwrap()
    };
    assert_eq!(text_of(&m).await.message, "le code est 4471");

    let long = "x".repeat(500);
    let content = MessageContent::parse(&long).unwrap();
    let audit_row = audit(&t, &a, AuditAction::MessageEdit, at(30));
    p.messages
        .edit(&t, m.id, content.clone(), at(30), audit_row)
        .await
        .unwrap();
    let edited = text_of(&m).await;
    assert_eq!(edited.message, content.notification_preview());
    assert!(edited.message.ends_with('…'));

    // Whatever its status, the deleted message's text leaves the notification.
    let read = p
        .notifications
        .set_status(&t, &b, edited.id, NotificationStatus::Archived)
        .await
        .unwrap();
    let audit_row = audit(&t, &a, AuditAction::MessageDelete, at(40));
    p.messages
        .delete(&t, m.id, at(40), audit_row)
        .await
        .unwrap();
    let erased = text_of(&m).await;
    assert_eq!(erased.message, "");
    assert_eq!(
        (erased.title, erased.status, erased.created_at),
        (read.title, NotificationStatus::Archived, read.created_at)
    );
    assert_eq!(text_of(&other).await.message, "autre sujet");
}

pub async fn notification_status_only_moves_forward(p: Ports) {
    let t = tenant("acme");
    let u = user("awa");
    let n = notification(&t, &u, NotificationKind::Alert, at(0));
    p.notifications
        .create(n.clone(), created(&n))
        .await
        .unwrap();
    let set = async |status| {
        p.notifications
            .set_status(&t, &u, n.id, status)
            .await
            .unwrap()
            .status
    };
    assert_eq!(
        set(NotificationStatus::Read).await,
        NotificationStatus::Read
    );
    assert_eq!(
        set(NotificationStatus::Read).await,
        NotificationStatus::Read
    );
    assert_eq!(
        set(NotificationStatus::Archived).await,
        NotificationStatus::Archived
    );
    // A device that still shows it unread asks for `read`: archived stays.
    assert_eq!(
        set(NotificationStatus::Read).await,
        NotificationStatus::Archived
    );
    assert_eq!(
        set(NotificationStatus::Unread).await,
        NotificationStatus::Archived
    );
    let stored = p.notifications.notification(&t, n.id).await.unwrap();
    assert_eq!(stored.map(|n| n.status), Some(NotificationStatus::Archived));
    let err = p
        .notifications
        .set_status(&t, &user("intruder"), n.id, NotificationStatus::Archived)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
}

pub async fn conversation_times_never_go_back(p: Ports) {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    send_ok(&p, new_message(&t, &a, &b, "stamped at 10 s", at(10))).await;
    // Stamped earlier, stored later (it waited for the write lock or a queue).
    let (late, conv, _) = send_ok(&p, new_message(&t, &b, &a, "stamped at 5 s", at(5))).await;
    assert_eq!(late.seq, 2);
    assert_eq!(
        (conv.last_message_at, conv.updated_at, conv.last_seq),
        (at(10), at(10), 2)
    );
    let stored = p.messages.conversation(&t, conv.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.last_message_at, stored.updated_at),
        (at(10), at(10))
    );
}

pub async fn message_times_never_go_back(p: Ports) {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    let (m, conv, _) = send_ok(&p, new_message(&t, &a, &b, "bonjour", at(0))).await;
    let content = MessageContent::parse("bonjour !").unwrap();
    let edit = audit(&t, &a, AuditAction::MessageEdit, at(20));
    let edited = p
        .messages
        .edit(&t, m.id, content, at(20), edit)
        .await
        .unwrap();
    assert_eq!(edited.updated_at, at(20));
    // Each receipt below was stamped before the edit and stored after it (it
    // waited in a queue or for a lock): it is kept with its own time, and the
    // message's `updatedAt` stays the edit's, so that a client keeping the
    // latest version of each message does not keep the edit's instead.
    let delivered = p
        .messages
        .mark_delivered(&t, m.id, &b, at(10))
        .await
        .unwrap()
        .into_message();
    assert_eq!(
        (delivered.delivered_at, delivered.updated_at),
        (Some(at(10)), at(20))
    );
    let read = audit(&t, &b, AuditAction::MessageRead, at(15));
    let read = p
        .messages
        .mark_read(&t, conv.id, &b, 1, 1, at(15), read)
        .await
        .unwrap();
    assert_eq!(
        (read[0].read_at, read[0].updated_at),
        (Some(at(15)), at(20))
    );
    let delete = audit(&t, &a, AuditAction::MessageDelete, at(12));
    let deleted = p.messages.delete(&t, m.id, at(12), delete).await.unwrap();
    assert_eq!(
        (deleted.deleted_at, deleted.updated_at),
        (Some(at(12)), at(20))
    );
    let stored = p.messages.message(&t, m.id).await.unwrap().unwrap();
    assert_eq!(stored, deleted);
    // Another message delivered late, with no later change: its own time.
    let (n, _, _) = send_ok(&p, new_message(&t, &a, &b, "encore", at(30))).await;
    let late = p
        .messages
        .mark_delivered(&t, n.id, &b, at(25))
        .await
        .unwrap()
        .into_message();
    assert_eq!((late.delivered_at, late.updated_at), (Some(at(25)), at(30)));
}

pub async fn changes_since_follows_updated_at_then_id(p: Ports) {
    let t = tenant("acme");
    let (a, b, c) = (user("awa"), user("bakary"), user("chris"));
    let (m1, _, _) = send_ok(&p, new_message(&t, &a, &b, "1", at(0))).await;
    let (m2, _, _) = send_ok(&p, new_message(&t, &b, &a, "2", at(10))).await;
    let (m3, _, _) = send_ok(&p, new_message(&t, &c, &a, "3", at(10))).await;
    let (_other, _, _) = send_ok(&p, new_message(&t, &b, &c, "not for awa", at(15))).await;
    // m1 changes later than everything else: it moves to the end of the stream.
    p.messages
        .mark_delivered(&t, m1.id, &b, at(20))
        .await
        .unwrap();

    let since = |updated_at, id| ChangeCursor { updated_at, id };
    let all = p
        .messages
        .changes_since(&t, &a, since(at(0), None), page(50))
        .await
        .unwrap();
    let (lo, hi) = if m2.id < m3.id {
        (m2.id, m3.id)
    } else {
        (m3.id, m2.id)
    };
    assert_eq!(
        all.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![lo, hi, m1.id]
    );
    // Resuming after the first of the two messages of the same instant.
    let rest = p
        .messages
        .changes_since(&t, &a, since(at(10), Some(lo)), page(50))
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![hi, m1.id]
    );
    let tail = p
        .messages
        .changes_since(&t, &a, since(at(20), Some(m1.id)), page(50))
        .await
        .unwrap();
    assert!(tail.is_empty());
    let limited = p
        .messages
        .changes_since(&t, &a, since(at(0), None), page(1))
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
}

pub async fn mark_all_read_changes_only_the_user_s_unread_notifications(p: Ports) {
    let (t, elsewhere) = (tenant("acme"), tenant("other"));
    let (u, colleague) = (user("awa"), user("bakary"));
    let mut mine = Vec::new();
    for i in 0..4 {
        let n = notification(&t, &u, NotificationKind::Alert, at(i));
        p.notifications
            .create(n.clone(), created(&n))
            .await
            .unwrap();
        mine.push(n);
    }
    p.notifications
        .set_status(&t, &u, mine[0].id, NotificationStatus::Archived)
        .await
        .unwrap();
    p.notifications
        .set_status(&t, &u, mine[1].id, NotificationStatus::Read)
        .await
        .unwrap();
    let theirs = notification(&t, &colleague, NotificationKind::Alert, at(9));
    p.notifications
        .create(theirs.clone(), created(&theirs))
        .await
        .unwrap();
    let hers_elsewhere = notification(&elsewhere, &u, NotificationKind::Alert, at(9));
    p.notifications
        .create(hers_elsewhere.clone(), created(&hers_elsewhere))
        .await
        .unwrap();

    assert_eq!(p.notifications.mark_all_read(&t, &u).await.unwrap(), 2);
    let status = async |tenant: &TenantId, n: &Notification| {
        p.notifications
            .notification(tenant, n.id)
            .await
            .unwrap()
            .unwrap()
            .status
    };
    assert_eq!(status(&t, &mine[0]).await, NotificationStatus::Archived);
    for n in &mine[1..] {
        assert_eq!(status(&t, n).await, NotificationStatus::Read);
    }
    assert_eq!(status(&t, &theirs).await, NotificationStatus::Unread);
    assert_eq!(
        status(&elsewhere, &hers_elsewhere).await,
        NotificationStatus::Unread
    );
    assert_eq!(p.notifications.unread_count(&t, &u).await.unwrap(), 0);
    assert_eq!(p.notifications.mark_all_read(&t, &u).await.unwrap(), 0);
}

pub async fn reading_messages_reads_only_their_unread_notifications(p: Ports) {
    let t = tenant("acme");
    let (a, b, c) = (user("awa"), user("bakary"), user("chris"));
    let mut sent = Vec::new();
    for i in 0..3 {
        let (m, _, _) = send_ok(&p, new_message(&t, &a, &b, &format!("m{i}"), at(i))).await;
        sent.push(m);
    }
    // An alert about the first message (a compliance alert, say): it is
    // not that message's notification, and reading the message leaves it.
    let mut alert = notification(&t, &b, NotificationKind::Alert, at(5));
    alert.related = Some(RelatedEntity::new("message", sent[0].id.to_string()).unwrap());
    p.notifications
        .create(alert.clone(), created(&alert))
        .await
        .unwrap();
    let mine = p
        .notifications
        .list(&t, &b, None, true, page(100))
        .await
        .unwrap();
    let of = |m: &Message| {
        let id = m.id.to_string();
        mine.iter()
            .find(|n| {
                n.kind == NotificationKind::Message
                    && n.related.as_ref().is_some_and(|r| r.entity_id() == id)
            })
            .unwrap()
            .id
    };
    let archived = of(&sent[1]);
    p.notifications
        .set_status(&t, &b, archived, NotificationStatus::Archived)
        .await
        .unwrap();

    // A whole conversation read at once: ids past SQLite's list limits,
    // the two that matter last.
    let mut ids: Vec<_> = (0..33_000).map(|_| message_id()).collect();
    ids.extend([sent[0].id, sent[1].id]);
    // Another user, or nothing asked: nothing changes.
    assert_eq!(
        p.notifications
            .mark_read_for_messages(&t, &c, &ids)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        p.notifications
            .mark_read_for_messages(&t, &b, &[])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        p.notifications
            .mark_read_for_messages(&t, &b, &ids)
            .await
            .unwrap(),
        1,
        "the archived one stays archived"
    );
    let status = async |id| {
        p.notifications
            .notification(&t, id)
            .await
            .unwrap()
            .unwrap()
            .status
    };
    assert_eq!(status(of(&sent[0])).await, NotificationStatus::Read);
    assert_eq!(status(archived).await, NotificationStatus::Archived);
    assert_eq!(status(of(&sent[2])).await, NotificationStatus::Unread);
    assert_eq!(status(alert.id).await, NotificationStatus::Unread);
    assert_eq!(p.notifications.unread_count(&t, &b).await.unwrap(), 2);
}

pub async fn an_alert_and_its_audit_row_are_stored_together_or_not_at_all(p: Ports) {
    let t = tenant("acme");
    let u = user("awa");
    let first = notification(&t, &u, NotificationKind::Alert, at(0));
    let row = created(&first);
    p.notifications
        .create(first.clone(), row.clone())
        .await
        .unwrap();
    let trail = async || audits(&p, &t, AuditAction::NotificationCreate).await;
    assert_eq!(trail().await, vec![row.clone()]);

    // An alert whose audit row's id is taken is not stored…
    let second = notification(&t, &u, NotificationKind::Alert, at(10));
    let mut reused = created(&second);
    reused.id = row.id;
    let err = p
        .notifications
        .create(second.clone(), reused)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        p.notifications.notification(&t, second.id).await.unwrap(),
        None
    );
    // …and the audit row of an alert whose id is taken is not either.
    let err = p
        .notifications
        .create(first.clone(), created(&first))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(trail().await, vec![row]);
    assert_eq!(p.notifications.unread_count(&t, &u).await.unwrap(), 1);
}

pub async fn notifications_list_unread_first_then_newest(p: Ports) {
    let t = tenant("acme");
    let (u, other) = (user("awa"), user("bakary"));
    let mut made = Vec::new();
    for i in 0..6 {
        let n = notification(&t, &u, NotificationKind::Alert, at(i * 10));
        p.notifications
            .create(n.clone(), created(&n))
            .await
            .unwrap();
        made.push(n);
    }
    let err = p
        .notifications
        .create(made[0].clone(), created(&made[0]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // 0 and 3 read, 1 archived; 2, 4, 5 stay unread.
    let set = async |i: usize, s| {
        p.notifications
            .set_status(&t, &u, made[i].id, s)
            .await
            .unwrap()
    };
    assert_eq!(
        set(0, NotificationStatus::Read).await.status,
        NotificationStatus::Read
    );
    set(3, NotificationStatus::Read).await;
    set(1, NotificationStatus::Archived).await;
    let err = p
        .notifications
        .set_status(&t, &other, made[2].id, NotificationStatus::Read)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
    let err = p
        .notifications
        .set_status(&t, &u, notification_id(), NotificationStatus::Read)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
    assert_eq!(p.notifications.unread_count(&t, &u).await.unwrap(), 3);
    assert_eq!(p.notifications.unread_count(&t, &other).await.unwrap(), 0);

    let ids = |v: &[afritalk_ports::Notification]| v.iter().map(|n| n.id).collect::<Vec<_>>();
    let visible = p
        .notifications
        .list(&t, &u, None, false, page(50))
        .await
        .unwrap();
    let expected = vec![made[5].id, made[4].id, made[2].id, made[3].id, made[0].id];
    assert_eq!(ids(&visible), expected);
    let everything = p
        .notifications
        .list(&t, &u, None, true, page(50))
        .await
        .unwrap();
    let mut with_archived = expected.clone();
    with_archived.push(made[1].id);
    assert_eq!(ids(&everything), with_archived);

    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let batch = p
            .notifications
            .list(&t, &u, cursor, true, page(2))
            .await
            .unwrap();
        let Some(last) = batch.last() else { break };
        cursor = Some(NotificationCursor {
            status: last.status,
            created_at: last.created_at,
            id: last.id,
        });
        paged.extend(batch);
    }
    assert_eq!(paged, everything);
    assert!(
        p.notifications
            .list(&t, &other, None, true, page(50))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Audit rows appended concurrently (a burst of connects) are each stored
/// exactly as given, whichever way the backend groups them; a row whose id is
/// already stored, or is appended twice at once, is refused once with a
/// conflict and costs the others nothing.
pub async fn concurrent_audit_appends_each_get_their_own_answer(p: Ports) {
    let t = tenant("acme");
    let mut rows: Vec<AuditEntry> = (0..40)
        .map(|i| {
            // Microseconds too: the time must round-trip to the microsecond.
            let when = at(i) + Duration::microseconds(i * 7 + 1);
            let mut row = audit(&t, &user(&format!("u{i}")), AuditAction::WsConnect, when);
            row.details = serde_json::json!({ "i": i, "note": "déconnexion \"propre\" ✓" });
            if i % 3 == 0 {
                row.ip_address = None;
                row.entity_type = None;
                row.entity_id = None;
            }
            row
        })
        .collect();
    // Each round is polled together from one task, so every append is queued
    // before the first is written.
    let append_all = async |batch: &[AuditEntry]| {
        futures::future::join_all(batch.iter().map(|row| p.audit.append(row.clone()))).await
    };
    for (i, outcome) in append_all(&rows[..20]).await.into_iter().enumerate() {
        assert_eq!(outcome, Ok(()), "row {i}");
    }
    // The second round repeats a stored id, and holds one new id twice.
    let stored_before = rows[3].clone();
    let twice = rows[27].clone();
    let second: Vec<AuditEntry> = rows[20..]
        .iter()
        .cloned()
        .chain([stored_before, twice])
        .collect();
    let outcomes = append_all(&second).await;
    let (firsts, repeats) = outcomes.split_at(20);
    for (i, outcome) in firsts.iter().enumerate() {
        if i != 7 {
            assert_eq!(outcome, &Ok(()), "row {}", i + 20);
        }
    }
    assert!(
        matches!(repeats[0], Err(StoreError::Conflict(_))),
        "an id stored before: {:?}",
        repeats[0]
    );
    let answers_for_twice = [&firsts[7], &repeats[1]];
    assert_eq!(
        answers_for_twice.iter().filter(|o| o.is_ok()).count(),
        1,
        "one of the two appends of one id is stored: {answers_for_twice:?}"
    );
    assert!(
        answers_for_twice
            .iter()
            .any(|o| matches!(o, Err(StoreError::Conflict(_)))),
        "the other is a conflict: {answers_for_twice:?}"
    );

    let mut stored = p
        .audit
        .query(&t, AuditFilter::default(), page(100))
        .await
        .unwrap();
    let by_id = |a: &AuditEntry, b: &AuditEntry| a.id.cmp(&b.id);
    stored.sort_by(by_id);
    rows.sort_by(by_id);
    assert_eq!(stored, rows, "every row once, exactly as appended");
}

pub async fn audit_query_filters_newest_first_and_purge_removes_only_older_rows(p: Ports) {
    let (t1, t2) = (tenant("acme"), tenant("globex"));
    let (a, b) = (user("awa"), user("bakary"));
    let rows = vec![
        audit(&t1, &a, AuditAction::WsConnect, at(0)),
        audit(&t1, &b, AuditAction::ForbiddenAttempt, at(10)),
        audit(&t1, &a, AuditAction::MessageSend, at(20)),
        audit(&t1, &a, AuditAction::WsDisconnect, at(30)),
        audit(&t2, &a, AuditAction::WsConnect, at(5)),
    ];
    for r in &rows {
        p.audit.append(r.clone()).await.unwrap();
    }
    let q = async |t: &TenantId, filter: AuditFilter, n| {
        p.audit.query(t, filter, page(n)).await.unwrap()
    };
    let all = q(&t1, AuditFilter::default(), 50).await;
    assert_eq!(
        all,
        vec![
            rows[3].clone(),
            rows[2].clone(),
            rows[1].clone(),
            rows[0].clone()
        ]
    );
    assert_eq!(q(&t1, AuditFilter::default(), 2).await.len(), 2);
    let by_user = q(
        &t1,
        AuditFilter {
            user_id: Some(b.clone()),
            ..Default::default()
        },
        50,
    )
    .await;
    assert_eq!(by_user, vec![rows[1].clone()]);
    let by_action = q(
        &t1,
        AuditFilter {
            action: Some(AuditAction::WsConnect),
            ..Default::default()
        },
        50,
    )
    .await;
    assert_eq!(by_action, vec![rows[0].clone()]);
    let window = q(
        &t1,
        AuditFilter {
            since: Some(at(10)),
            before: Some(AuditCursor {
                created_at: rows[3].created_at,
                id: rows[3].id,
            }),
            ..Default::default()
        },
        50,
    )
    .await;
    assert_eq!(window, vec![rows[2].clone(), rows[1].clone()]);

    // Purge is across tenants and strictly before the cutoff, and leaves its
    // receipt in each trail that lost rows, in the same write. Each tenant's
    // count, in tenant id order (the receipts' positions).
    let receipt = PurgeReceipt {
        id: AuditId::from_uuid(Uuid::new_v4()),
        cutoff: at(10),
        at: at(1_000),
    };
    assert_eq!(
        p.audit.purge_before(&receipt).await.unwrap(),
        vec![(t1.clone(), 1), (t2.clone(), 1)]
    );
    let kept = q(&t1, AuditFilter::default(), 50).await;
    assert_eq!(kept.len(), 4);
    assert_eq!(kept[0], receipt.entry(0, &t1, 1), "newest first");
    assert_eq!(
        q(&t2, AuditFilter::default(), 50).await,
        vec![receipt.entry(1, &t2, 1)]
    );
    assert!(p.audit.purge_before(&receipt).await.unwrap().is_empty());
    assert_eq!(
        q(&t1, AuditFilter::default(), 50).await,
        kept,
        "a purge that removes nothing writes no receipt"
    );

    // Rows sharing a timestamp (a send and the conversation it created) are never
    // skipped when paging one row at a time with the cursor.
    let t3 = tenant("initech");
    let mut same_instant: Vec<AuditEntry> = (0..3)
        .map(|_| audit(&t3, &a, AuditAction::MessageSend, at(40)))
        .collect();
    for r in &same_instant {
        p.audit.append(r.clone()).await.unwrap();
    }
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let rows = q(
            &t3,
            AuditFilter {
                before,
                ..Default::default()
            },
            1,
        )
        .await;
        let Some(last) = rows.last() else { break };
        before = Some(AuditCursor {
            created_at: last.created_at,
            id: last.id,
        });
        paged.extend(rows);
    }
    same_instant.sort_by_key(|e| std::cmp::Reverse(e.id));
    assert_eq!(paged, same_instant);
}

pub async fn a_purge_whose_receipt_id_is_taken_fails_whole(p: Ports) {
    let (t1, t2) = (tenant("acme"), tenant("globex"));
    let a = user("awa");
    let receipt = PurgeReceipt {
        id: AuditId::from_uuid(Uuid::new_v4()),
        cutoff: at(10),
        at: at(1_000),
    };
    // The second tenant's receipt id is already the id of one of its rows
    // that the purge keeps.
    let mut taken = audit(&t2, &a, AuditAction::WsConnect, at(20));
    taken.id = receipt.entry(1, &t2, 1).id;
    let rows = vec![
        audit(&t1, &a, AuditAction::WsConnect, at(0)),
        audit(&t2, &a, AuditAction::WsConnect, at(5)),
        taken,
    ];
    for r in &rows {
        p.audit.append(r.clone()).await.unwrap();
    }
    let err = p.audit.purge_before(&receipt).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let q = async |t: &TenantId| {
        p.audit
            .query(t, AuditFilter::default(), page(50))
            .await
            .unwrap()
    };
    assert_eq!(q(&t1).await, vec![rows[0].clone()], "nothing removed");
    assert_eq!(q(&t2).await, vec![rows[2].clone(), rows[1].clone()]);
}

pub async fn directory_upserts_and_reads_users(p: Ports) {
    let t = tenant("acme");
    let awa = directory_user(&t, "awa", "Awa Diallo", Role::Pdg);
    assert_eq!(p.directory.upsert(awa.clone()).await.unwrap(), awa);
    let bakary = directory_user(&t, "bakary", "Bakary Traoré", Role::Employe);
    p.directory.upsert(bakary.clone()).await.unwrap();
    assert_eq!(
        p.directory.user(&t, &user("awa")).await.unwrap(),
        Some(awa.clone())
    );
    assert_eq!(p.directory.user(&t, &user("zoe")).await.unwrap(), None);

    let mut promoted = bakary.clone();
    promoted.role = Role::Dg;
    promoted.active = false;
    assert_eq!(
        p.directory.upsert(promoted.clone()).await.unwrap(),
        promoted
    );
    assert_eq!(
        p.directory.user(&t, &user("bakary")).await.unwrap(),
        Some(promoted.clone())
    );

    let mut found = p
        .directory
        .users(&t, &[user("bakary"), user("zoe"), user("awa")])
        .await
        .unwrap();
    found.sort_by(|x, y| x.user_id.cmp(&y.user_id));
    assert_eq!(found, vec![awa, promoted]);
    assert!(p.directory.users(&t, &[]).await.unwrap().is_empty());
}

pub async fn recording_an_identity_never_switches_a_user_back_on(p: Ports) {
    let t = tenant("acme");
    let mut off = directory_user(&t, "bakary", "Bakary Traoré", Role::Employe);
    off.active = false;
    p.directory.upsert(off.clone()).await.unwrap();

    // A token says "Bakary T., DG" (and, as every token refresh, active).
    let mut token_says = directory_user(&t, "bakary", "Bakary T.", Role::Dg);
    token_says.active = true;
    let stored = p
        .directory
        .record_identity(token_says.clone())
        .await
        .unwrap();
    let expected = DirectoryUser {
        active: false,
        ..token_says.clone()
    };
    assert_eq!(stored, expected);
    assert_eq!(
        p.directory.user(&t, &user("bakary")).await.unwrap(),
        Some(expected)
    );
    // The new name is searchable (its folded key moved with it).
    let query = DirectoryQuery {
        text: Some(SearchText::parse("t.").unwrap()),
        after: None,
        include_inactive: true,
        limit: page(10),
    };
    let found = p.directory.search(&t, &query).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].display_name.as_str(), "Bakary T.");

    // An unknown user is created as the token states it.
    let new = directory_user(&t, "chris", "Chris", Role::Employe);
    assert_eq!(p.directory.record_identity(new.clone()).await.unwrap(), new);
    assert_eq!(
        p.directory.user(&t, &user("chris")).await.unwrap(),
        Some(new)
    );
}

pub async fn directory_search_pages_by_folded_name_and_matches_without_accents(p: Ports) {
    let (t, other) = (tenant("acme"), tenant("other"));
    for (id, name, role, active) in [
        ("u-elodie", "Élodie KONÉ", Role::Dg, true),
        ("u-awa2", "Awa Diallo", Role::Employe, true),
        ("u-awa1", "awa diallo", Role::Pdg, true),
        ("u-bakary", "Bakary Traoré", Role::Employe, false),
        ("u-pct", "100% Sûr_e", Role::Employe, true),
        ("u-emile", "Émile  Zola", Role::Employe, true),
    ] {
        let mut entry = directory_user(&t, id, name, role);
        entry.active = active;
        p.directory.upsert(entry).await.unwrap();
    }
    p.directory
        .upsert(directory_user(&other, "x-elodie", "Elodie", Role::Dg))
        .await
        .unwrap();
    let ids = |users: Vec<DirectoryUser>| -> Vec<String> {
        users
            .iter()
            .map(|u| u.user_id.as_str().to_owned())
            .collect()
    };
    let query = |text: Option<&str>, include_inactive: bool, limit: u32| DirectoryQuery {
        text: text.map(|t| SearchText::parse(t).unwrap()),
        after: None,
        include_inactive,
        limit: page(limit),
    };

    // Active users only, by folded name then id; pages follow their cursor.
    let mut seen = Vec::new();
    let mut q = query(None, false, 2);
    loop {
        let rows = p.directory.search(&t, &q).await.unwrap();
        let Some(last) = rows.last() else { break };
        q.after = Some(DirectoryCursor {
            key: NameKey::of(&last.display_name),
            user_id: last.user_id.clone(),
        });
        assert!(rows.len() <= 2);
        seen.extend(ids(rows));
    }
    assert_eq!(seen, ["u-pct", "u-awa1", "u-awa2", "u-elodie", "u-emile"]);

    let everyone = p
        .directory
        .search(&t, &query(None, true, 100))
        .await
        .unwrap();
    assert_eq!(
        ids(everyone),
        [
            "u-pct", "u-awa1", "u-awa2", "u-bakary", "u-elodie", "u-emile"
        ]
    );

    // Matching ignores accents, case and repeated spaces; the found rows are whole.
    let found = p
        .directory
        .search(&t, &query(Some("ELODIE kone"), false, 10))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].display_name.as_str(), "Élodie KONÉ");
    assert_eq!(found[0].role, Role::Dg);
    let matching = async |text: &str, include_inactive: bool| {
        let q = query(Some(text), include_inactive, 10);
        ids(p.directory.search(&t, &q).await.unwrap())
    };
    assert_eq!(matching("emile zola", false).await, ["u-emile"]);
    assert!(matching("trao", false).await.is_empty());
    assert_eq!(matching("trao", true).await, ["u-bakary"]);
    // LIKE's wildcards are plain characters in a search.
    for literal in ["%", "_", "0% s"] {
        assert_eq!(matching(literal, false).await, ["u-pct"], "{literal}");
    }
    assert!(matching("a_a", false).await.is_empty());

    // Another tenant's users never show.
    assert!(
        p.directory
            .search(&tenant("nobody"), &query(None, true, 10))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(p
            .directory
            .search(&other, &query(Some("elo"), true, 10))
            .await
            .unwrap()),
        ["x-elodie"]
    );
}

pub async fn feature_flags_default_on_and_switch_per_tenant(p: Ports) {
    let (t1, t2) = (tenant("acme"), tenant("globex"));
    assert!(
        p.flags.messaging_enabled(&t1).await.unwrap(),
        "default is on"
    );
    p.flags.set_messaging_enabled(&t1, false).await.unwrap();
    assert!(!p.flags.messaging_enabled(&t1).await.unwrap());
    assert!(p.flags.messaging_enabled(&t2).await.unwrap());
    p.flags.set_messaging_enabled(&t1, false).await.unwrap();
    p.flags.set_messaging_enabled(&t1, true).await.unwrap();
    assert!(p.flags.messaging_enabled(&t1).await.unwrap());
}

pub async fn tenant_isolation_holds_through_every_port_method(p: Ports) {
    let (ta, tb) = (tenant("acme"), tenant("globex"));
    let (a, b) = (user("awa"), user("bakary"));
    // Tenant A has everything: a conversation, read and unread messages,
    // notifications, audit rows, directory entries and a flag.
    let new = with_client_id(
        new_message(&ta, &a, &b, "secret A", at(0)),
        "shared-client-id",
    );
    let notif = new.notification.clone();
    let (m, conv, _) = send_ok(&p, new).await;
    send_ok(&p, new_message(&ta, &b, &a, "réponse A", at(1))).await;
    p.directory
        .upsert(directory_user(&ta, "awa", "Awa", Role::Pdg))
        .await
        .unwrap();
    p.flags.set_messaging_enabled(&ta, false).await.unwrap();
    let snapshot = async |p: &Ports| {
        (
            p.messages.message(&ta, m.id).await.unwrap(),
            p.messages.conversation(&ta, conv.id).await.unwrap(),
            p.notifications.notification(&ta, notif.id).await.unwrap(),
            p.audit
                .query(&ta, AuditFilter::default(), page(100))
                .await
                .unwrap(),
        )
    };
    let before = snapshot(&p).await;

    // Tenant B, with the same user ids, learns nothing and changes nothing.
    let mp = &p.messages;
    assert_eq!(
        mp.conversation_between(&tb, &pair(&a, &b)).await.unwrap(),
        None
    );
    assert_eq!(mp.conversation(&tb, conv.id).await.unwrap(), None);
    assert!(!mp.has_written(&tb, conv.id, &a).await.unwrap());
    assert_eq!(mp.message(&tb, m.id).await.unwrap(), None);
    let content = MessageContent::parse("piraté").unwrap();
    let edit = mp
        .edit(
            &tb,
            m.id,
            content,
            at(5),
            audit(&tb, &a, AuditAction::MessageEdit, at(5)),
        )
        .await;
    assert_eq!(edit.unwrap_err(), StoreError::NotFound);
    let delete = mp
        .delete(
            &tb,
            m.id,
            at(5),
            audit(&tb, &a, AuditAction::MessageDelete, at(5)),
        )
        .await;
    assert_eq!(delete.unwrap_err(), StoreError::NotFound);
    assert_eq!(
        mp.mark_delivered(&tb, m.id, &b, at(5)).await.unwrap_err(),
        StoreError::NotFound
    );
    let read = mp.mark_read(
        &tb,
        conv.id,
        &b,
        1,
        100,
        at(5),
        audit(&tb, &b, AuditAction::MessageRead, at(5)),
    );
    assert!(read.await.unwrap().is_empty());
    assert!(
        mp.conversations(&tb, &a, None, page(50))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        mp.conversations(&tb, &b, None, page(50))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        mp.history(&tb, conv.id, None, page(50))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        mp.messages_after(&tb, conv.id, 0, page(50))
            .await
            .unwrap()
            .is_empty()
    );
    let since = ChangeCursor {
        updated_at: at(-1000),
        id: None,
    };
    assert!(
        mp.changes_since(&tb, &a, since, page(50))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        p.notifications.notification(&tb, notif.id).await.unwrap(),
        None
    );
    assert!(
        p.notifications
            .list(&tb, &b, None, true, page(50))
            .await
            .unwrap()
            .is_empty()
    );
    let status = p
        .notifications
        .set_status(&tb, &b, notif.id, NotificationStatus::Archived)
        .await;
    assert_eq!(status.unwrap_err(), StoreError::NotFound);
    let read = p
        .notifications
        .mark_read_for_messages(&tb, &b, &[m.id])
        .await
        .unwrap();
    assert_eq!(read, 0, "A's message notification is not B's to read");
    assert_eq!(p.notifications.unread_count(&tb, &b).await.unwrap(), 0);
    assert!(
        p.audit
            .query(&tb, AuditFilter::default(), page(100))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(p.directory.user(&tb, &a).await.unwrap(), None);
    assert!(
        p.directory
            .users(&tb, &[a.clone(), b.clone()])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(p.flags.messaging_enabled(&tb).await.unwrap());
    // A token of B naming the same user creates B's entry; A's stays.
    let b_awa = directory_user(&tb, "awa", "Awa of B", Role::Employe);
    p.directory.record_identity(b_awa.clone()).await.unwrap();
    assert_eq!(p.directory.user(&tb, &a).await.unwrap(), Some(b_awa));
    let a_awa = p.directory.user(&ta, &a).await.unwrap().unwrap();
    assert_eq!(
        (a_awa.display_name.as_str(), a_awa.role),
        ("Awa", Role::Pdg)
    );

    // B's own traffic with the same ids and client id is B's alone.
    let b_new = with_client_id(
        new_message(&tb, &a, &b, "bonjour B", at(2)),
        "shared-client-id",
    );
    let (bm, bconv, created) = send_ok(&p, b_new).await;
    assert!(created, "B gets its own conversation");
    assert_ne!(bconv.id, conv.id);
    assert_eq!(bm.seq, 1);
    let b_list = mp.conversations(&tb, &a, None, page(50)).await.unwrap();
    assert_eq!(b_list.len(), 1);
    assert_eq!(b_list[0].last_message.as_ref().map(|x| x.id), Some(bm.id));
    assert_eq!(
        mp.history(&tb, bconv.id, None, page(50)).await.unwrap(),
        vec![bm.clone()]
    );
    assert!(
        mp.history(&ta, bconv.id, None, page(50))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        mp.mark_read(
            &tb,
            bconv.id,
            &b,
            1,
            100,
            at(3),
            audit(&tb, &b, AuditAction::MessageRead, at(3))
        )
        .await
        .unwrap()
        .len(),
        1
    );

    // And A is exactly as it was.
    assert_eq!(snapshot(&p).await, before);
    assert!(!p.flags.messaging_enabled(&ta).await.unwrap());
    let a_list = mp.conversations(&ta, &b, None, page(50)).await.unwrap();
    assert_eq!((a_list.len(), a_list[0].unread_count), (1, 1));
    let b_ids: BTreeSet<_> = [bm.id].into_iter().collect();
    let a_changes = mp.changes_since(&ta, &a, since, page(50)).await.unwrap();
    assert!(
        a_changes
            .iter()
            .all(|x| !b_ids.contains(&x.id) && x.tenant_id == ta)
    );
}
