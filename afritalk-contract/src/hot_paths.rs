//! One round of the storage calls a busy server makes, for the adapters'
//! statement-cache tests (not a contract case: it asserts only that each call
//! succeeds).
//!
//! An adapter test runs [`exercise`] twice on a store with a single pooled
//! connection and checks that the second round prepared no new statement.
//! Round `n` uses its own users and flips every `Option` field between `Some`
//! and `None`, so a statement whose SQL text depends on the values (an insert
//! leaving `None` to `DEFAULT`, say) shows up as new in the second round.
//!
//! Covered: the per-connect path (feature flag, directory, `ws.connect` and
//! `ws.disconnect` audit rows, both conversation-list variants: first page and
//! keyset page), the per-message path (send, duplicate retry, the delivery ack
//! in all three outcomes, the read receipt, history and catch-up reads), edit,
//! delete, notifications (create, list, status, counts), the audit query, and
//! the two upserts. Not covered: `Directory::users` (its `IN` list has one
//! bind per id, so SQLite cannot keep it) and the audit retention purge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use afritalk_ports::{
    AuditAction, AuditFilter, ChangeCursor, ConversationCursor, DeliveryOutcome, MessageContent,
    NotificationKind, NotificationStatus, PageSize, ParticipantPair, Role, SendOutcome,
};
use chrono::Duration;

use crate::Ports;
use crate::fixtures::*;

/// Runs round `round` of the hot calls against `p` (sequentially: one
/// connection is enough). Panics if any call fails or answers unexpectedly.
pub async fn exercise(p: &Ports, round: u32) {
    let t = tenant("acme");
    let a = user(&format!("awa{round}"));
    let b = user(&format!("bakary{round}"));
    let c = user(&format!("chris{round}"));
    let odd = round % 2 == 1;
    let when = |ms: i64| at(i64::from(round) * 100_000 + ms);

    // Writes of the admin side.
    p.flags.set_messaging_enabled(&t, true).await.unwrap();
    for (u, role) in [(&a, Role::Pdg), (&b, Role::Dg), (&c, Role::Employe)] {
        let entry = directory_user(&t, u.as_str(), u.as_str(), role);
        p.directory.upsert(entry).await.unwrap();
    }

    // A socket connects: flag, directory entry, audit row, conversation list.
    assert!(p.flags.messaging_enabled(&t).await.unwrap());
    assert!(p.directory.user(&t, &a).await.unwrap().is_some());
    let mut connect = audit(&t, &a, AuditAction::WsConnect, when(0));
    if !odd {
        connect.user_id = None;
        connect.entity_type = None;
        connect.entity_id = None;
        connect.ip_address = None;
    }
    p.audit.append(connect).await.unwrap();

    // Messages: one per conversation, one with a client id and (odd rounds) a
    // related entity, then its retry.
    let mut first = with_client_id(
        new_message(&t, &a, &b, "bonjour", when(1)),
        &format!("c-{round}"),
    );
    if odd {
        first = with_related(first, "order", "o-1");
        first.notification.push_sent = true;
        first.notification.push_sent_at = Some(when(1));
    }
    let retry = first.clone();
    let SendOutcome::Stored {
        message: m1,
        conversation: ab,
        ..
    } = p.messages.send(first).await.unwrap()
    else {
        panic!("the first send stores");
    };
    let SendOutcome::Stored { message: m2, .. } = p
        .messages
        .send(new_message(&t, &a, &c, "salut", when(2)))
        .await
        .unwrap()
    else {
        panic!("the second send stores");
    };
    assert!(matches!(
        p.messages.send(retry).await.unwrap(),
        SendOutcome::Duplicate { .. }
    ));
    let pair = ParticipantPair::new(a.clone(), b.clone()).unwrap();
    assert!(
        p.messages
            .conversation_between(&t, &pair)
            .await
            .unwrap()
            .is_some()
    );
    assert!(p.messages.conversation(&t, ab.id).await.unwrap().is_some());
    assert!(p.messages.has_written(&t, ab.id, &a).await.unwrap());
    assert!(p.messages.message(&t, m1.id).await.unwrap().is_some());

    // Receipts: the delivery ack in its three outcomes, then the read receipt.
    let deliver = |who| p.messages.mark_delivered(&t, m1.id, who, when(3));
    assert!(matches!(
        deliver(&b).await.unwrap(),
        DeliveryOutcome::Delivered(_)
    ));
    assert!(matches!(
        deliver(&b).await.unwrap(),
        DeliveryOutcome::AlreadyDelivered(_)
    ));
    assert!(matches!(
        deliver(&a).await.unwrap(),
        DeliveryOutcome::NotRecipient(_)
    ));
    let read = p
        .messages
        .mark_read(
            &t,
            ab.id,
            &b,
            1,
            1,
            when(4),
            audit(&t, &b, AuditAction::MessageRead, when(4)),
        )
        .await
        .unwrap();
    assert_eq!(read.len(), 1);

    // Lists and catch-up: the first page and a keyset page of each.
    let one = PageSize::new(1).unwrap();
    let page = PageSize::new(50).unwrap();
    let latest = p.messages.conversations(&t, &a, None, one).await.unwrap();
    let cursor = ConversationCursor {
        last_message_at: latest[0].conversation.last_message_at,
        id: latest[0].conversation.id,
    };
    let next = p
        .messages
        .conversations(&t, &a, Some(cursor), one)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    p.messages
        .conversation_partners(&t, &a, page)
        .await
        .unwrap();
    p.messages.history(&t, ab.id, None, page).await.unwrap();
    p.messages.history(&t, ab.id, Some(2), page).await.unwrap();
    p.messages.messages_after(&t, ab.id, 0, page).await.unwrap();
    let since = ChangeCursor {
        updated_at: when(0),
        id: None,
    };
    let changes = p.messages.changes_since(&t, &a, since, page).await.unwrap();
    let since = ChangeCursor {
        updated_at: changes[0].updated_at,
        id: Some(changes[0].id),
    };
    p.messages.changes_since(&t, &a, since, page).await.unwrap();

    // Edit and delete.
    let content = MessageContent::parse("bonjour !").unwrap();
    let edit = audit(&t, &a, AuditAction::MessageEdit, when(5));
    p.messages
        .edit(&t, m1.id, content, when(5), edit)
        .await
        .unwrap();
    let delete = audit(&t, &a, AuditAction::MessageDelete, when(6));
    p.messages.delete(&t, m2.id, when(6), delete).await.unwrap();

    // Notifications.
    let mut alert = notification(&t, &b, NotificationKind::Alert, when(7));
    if odd {
        alert.related = m1.related.clone();
        alert.push_sent_at = Some(when(7) + Duration::seconds(1));
    }
    p.notifications
        .create(alert.clone(), created(&alert))
        .await
        .unwrap();
    assert!(
        p.notifications
            .notification(&t, alert.id)
            .await
            .unwrap()
            .is_some()
    );
    p.notifications
        .list(&t, &b, None, false, page)
        .await
        .unwrap();
    p.notifications
        .set_status(&t, &b, alert.id, NotificationStatus::Read)
        .await
        .unwrap();
    p.notifications.unread_count(&t, &b).await.unwrap();

    // The audit listing, and the socket goes away.
    p.audit
        .query(&t, AuditFilter::default(), page)
        .await
        .unwrap();
    let mut disconnect = audit(&t, &a, AuditAction::WsDisconnect, when(8));
    if odd {
        disconnect.ip_address = None;
    }
    p.audit.append(disconnect).await.unwrap();
}

/// What a delivery-ack scenario ran: the statements of a recipient's first ack
/// and of a second ack of the same message.
pub struct DeliveryAckStatements {
    /// The first ack (which delivers).
    pub first: Vec<String>,
    /// The second ack (already delivered).
    pub second: Vec<String>,
}

/// Sends one message on `store`, then acks it twice as its recipient, and
/// returns the statements each ack ran, as `statements` reports them (it
/// returns what ran since its previous call). Panics if an ack answers
/// anything but `Delivered` then `AlreadyDelivered`.
pub async fn delivery_acks(
    store: &dyn afritalk_ports::MessageStore,
    mut statements: impl FnMut() -> Vec<String>,
) -> DeliveryAckStatements {
    let t = tenant("acme");
    let (a, b) = (user("awa"), user("bakary"));
    let SendOutcome::Stored { message, .. } = store
        .send(new_message(&t, &a, &b, "hi", at(0)))
        .await
        .unwrap()
    else {
        panic!("stored");
    };
    statements();
    let outcome = store
        .mark_delivered(&t, message.id, &b, at(1))
        .await
        .unwrap();
    assert!(matches!(outcome, DeliveryOutcome::Delivered(_)));
    let first = statements();
    let outcome = store
        .mark_delivered(&t, message.id, &b, at(2))
        .await
        .unwrap();
    assert!(matches!(outcome, DeliveryOutcome::AlreadyDelivered(_)));
    DeliveryAckStatements {
        first,
        second: statements(),
    }
}
