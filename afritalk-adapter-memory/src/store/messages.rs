//! The message side of [`MemoryStore`]: the atomic send, receipts, edit and
//! delete, conversation lists and the three catch-up reads.

use std::cmp::Reverse;

use afritalk_ports::{
    AuditEntry, ChangeCursor, Conversation, ConversationCursor, ConversationId,
    ConversationSummary, DeliveryOutcome, Message, MessageContent, MessageId, MessageStore,
    NewMessage, Notification, NotificationKind, PageSize, ParticipantPair, SendOutcome, StoreError,
    StoreResult, TenantId, UserId,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    ConversationRow, MemoryStore, TenantData, inconsistent, same_tenant, stored_audit,
    stored_notification, to_micros,
};

impl TenantData {
    /// The send transaction: every check first, then the writes, none of which can fail.
    fn send(&mut self, new: NewMessage) -> StoreResult<SendOutcome> {
        if let Some(client_id) = &new.client_message_id {
            let key = (new.sender_id.clone(), client_id.clone());
            if let Some(id) = self.client_ids.get(&key) {
                let message = self.messages.get(id).cloned().ok_or_else(inconsistent)?;
                return Ok(SendOutcome::Duplicate { message });
            }
        }
        let pair = ParticipantPair::new(new.sender_id.clone(), new.recipient_id.clone())
            .ok_or_else(|| StoreError::Conflict("sender and recipient are the same user".into()))?;
        same_tenant(
            &new.tenant_id,
            &new.notification.tenant_id,
            "the notification",
        )?;
        same_tenant(
            &new.tenant_id,
            &new.send_audit.tenant_id,
            "the send audit row",
        )?;
        same_tenant(
            &new.tenant_id,
            &new.conversation_audit.tenant_id,
            "the conversation audit row",
        )?;
        if self.messages.contains_key(&new.message_id) {
            return Err(StoreError::Conflict(format!(
                "message {} already exists",
                new.message_id
            )));
        }
        if self.notifications.contains_key(&new.notification.id) {
            return Err(StoreError::Conflict(format!(
                "notification {} already exists",
                new.notification.id
            )));
        }
        let (mut conversation, created) = match self.pairs.get(&pair) {
            Some(id) => {
                let row = self.conversations.get(id).ok_or_else(inconsistent)?;
                (row.conversation.clone(), false)
            }
            None => {
                if self.conversations.contains_key(&new.new_conversation_id) {
                    return Err(StoreError::Conflict(format!(
                        "conversation {} already exists",
                        new.new_conversation_id
                    )));
                }
                let conversation = Conversation {
                    id: new.new_conversation_id,
                    tenant_id: new.tenant_id.clone(),
                    user_one_id: pair.low().clone(),
                    user_two_id: pair.high().clone(),
                    created_at: new.created_at,
                    updated_at: new.created_at,
                    last_message_at: new.created_at,
                    last_seq: 0,
                };
                (conversation, true)
            }
        };
        conversation.last_seq += 1;
        // The time is taken before the lock: a send stamped earlier can land
        // later, and the conversation's times never go back.
        conversation.last_message_at = conversation.last_message_at.max(new.created_at);
        conversation.updated_at = conversation.updated_at.max(new.created_at);
        let message = Message {
            id: new.message_id,
            tenant_id: new.tenant_id,
            conversation_id: conversation.id,
            seq: conversation.last_seq,
            sender_id: new.sender_id,
            recipient_id: new.recipient_id,
            content: String::from(new.content),
            related: new.related,
            client_message_id: new.client_message_id,
            read: false,
            read_at: None,
            delivered_at: None,
            edited_at: None,
            deleted_at: None,
            created_at: new.created_at,
            updated_at: new.created_at,
        };

        // Writes: nothing below can fail.
        let row = self
            .conversations
            .entry(conversation.id)
            .or_insert_with(|| ConversationRow {
                conversation: conversation.clone(),
                messages: Vec::new(),
            });
        row.conversation = conversation.clone();
        row.messages.push(message.id);
        if created {
            self.pairs.insert(pair, conversation.id);
            self.audit.push(new.conversation_audit);
        }
        if let Some(client_id) = &message.client_message_id {
            self.client_ids
                .insert((message.sender_id.clone(), client_id.clone()), message.id);
        }
        self.messages.insert(message.id, message.clone());
        self.notifications
            .insert(new.notification.id, new.notification);
        self.audit.push(new.send_audit);
        Ok(SendOutcome::Stored {
            message,
            conversation,
            conversation_created: created,
        })
    }

    /// The conversation's messages in `seq` order.
    fn conversation_messages(
        &self,
        conversation: ConversationId,
    ) -> impl DoubleEndedIterator<Item = &Message> {
        self.conversations
            .get(&conversation)
            .map(|row| row.messages.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|id| self.messages.get(id))
    }

    /// Applies `change` to a live (not deleted) message, gives its notification
    /// `notification_text` and stores `audit`, or changes nothing.
    fn modify_live(
        &mut self,
        tenant: &TenantId,
        id: MessageId,
        audit: AuditEntry,
        notification_text: String,
        change: impl FnOnce(&mut Message),
    ) -> StoreResult<Message> {
        same_tenant(tenant, &audit.tenant_id, "the audit row")?;
        let audit = stored_audit(audit);
        let message = self.messages.get_mut(&id).ok_or(StoreError::NotFound)?;
        if message.is_deleted() {
            return Err(StoreError::Conflict(format!("message {id} is deleted")));
        }
        change(message);
        let message = message.clone();
        let message_id = id.to_string();
        let of_message = |n: &&mut Notification| {
            n.user_id == message.recipient_id
                && n.kind == NotificationKind::Message
                && n.created_at == message.created_at
                && n.related
                    .as_ref()
                    .is_some_and(|r| r.entity_type() == "message" && r.entity_id() == message_id)
        };
        for notification in self.notifications.values_mut().filter(of_message) {
            notification.message.clone_from(&notification_text);
        }
        self.audit.push(audit);
        Ok(message)
    }
}

/// One page of `rows`: sorted ascending by `key`, only those strictly after
/// `cursor`, at most `limit`. Descending orders use `Reverse` in the key.
pub(super) fn page<T, K: Ord>(
    mut rows: Vec<T>,
    key: impl Fn(&T) -> K,
    cursor: Option<K>,
    limit: PageSize,
) -> Vec<T> {
    rows.sort_by_key(|row| key(row));
    rows.into_iter()
        .filter(|row| cursor.as_ref().is_none_or(|c| key(row) > *c))
        .take(limit.get() as usize)
        .collect()
}

#[async_trait]
impl MessageStore for MemoryStore {
    async fn send(&self, new: NewMessage) -> StoreResult<SendOutcome> {
        let new = NewMessage {
            created_at: to_micros(new.created_at),
            notification: stored_notification(new.notification),
            send_audit: stored_audit(new.send_audit),
            conversation_audit: stored_audit(new.conversation_audit),
            ..new
        };
        let mut state = self.lock();
        state
            .tenants
            .entry(new.tenant_id.clone())
            .or_default()
            .send(new)
    }

    async fn conversation_between(
        &self,
        tenant: &TenantId,
        pair: &ParticipantPair,
    ) -> StoreResult<Option<Conversation>> {
        let state = self.lock();
        let Some(data) = state.tenants.get(tenant) else {
            return Ok(None);
        };
        Ok(data
            .pairs
            .get(pair)
            .and_then(|id| data.conversations.get(id))
            .map(|row| row.conversation.clone()))
    }

    async fn conversation(
        &self,
        tenant: &TenantId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        let state = self.lock();
        Ok(state
            .tenants
            .get(tenant)
            .and_then(|data| data.conversations.get(&id))
            .map(|row| row.conversation.clone()))
    }

    async fn has_written(
        &self,
        tenant: &TenantId,
        conversation: ConversationId,
        user: &UserId,
    ) -> StoreResult<bool> {
        let state = self.lock();
        Ok(state.tenants.get(tenant).is_some_and(|data| {
            data.conversation_messages(conversation)
                .any(|m| &m.sender_id == user)
        }))
    }

    async fn message(&self, tenant: &TenantId, id: MessageId) -> StoreResult<Option<Message>> {
        let state = self.lock();
        Ok(state
            .tenants
            .get(tenant)
            .and_then(|data| data.messages.get(&id))
            .cloned())
    }

    async fn edit(
        &self,
        tenant: &TenantId,
        id: MessageId,
        content: MessageContent,
        edited_at: DateTime<Utc>,
        audit: AuditEntry,
    ) -> StoreResult<Message> {
        let edited_at = to_micros(edited_at);
        let mut state = self.lock();
        let data = state.tenants.get_mut(tenant).ok_or(StoreError::NotFound)?;
        let preview = content.notification_preview();
        data.modify_live(tenant, id, audit, preview, |message| {
            message.content = String::from(content);
            message.edited_at = Some(edited_at);
            message.updated_at = message.updated_at.max(edited_at);
        })
    }

    async fn delete(
        &self,
        tenant: &TenantId,
        id: MessageId,
        deleted_at: DateTime<Utc>,
        audit: AuditEntry,
    ) -> StoreResult<Message> {
        let deleted_at = to_micros(deleted_at);
        let mut state = self.lock();
        let data = state.tenants.get_mut(tenant).ok_or(StoreError::NotFound)?;
        data.modify_live(tenant, id, audit, String::new(), |message| {
            message.content = String::new();
            message.deleted_at = Some(deleted_at);
            message.updated_at = message.updated_at.max(deleted_at);
        })
    }

    async fn mark_delivered(
        &self,
        tenant: &TenantId,
        id: MessageId,
        recipient: &UserId,
        at: DateTime<Utc>,
    ) -> StoreResult<DeliveryOutcome> {
        let at = to_micros(at);
        let mut state = self.lock();
        let message = state
            .tenants
            .get_mut(tenant)
            .and_then(|data| data.messages.get_mut(&id))
            .ok_or(StoreError::NotFound)?;
        if &message.recipient_id != recipient {
            return Ok(DeliveryOutcome::NotRecipient(message.clone()));
        }
        if message.delivered_at.is_some() {
            return Ok(DeliveryOutcome::AlreadyDelivered(message.clone()));
        }
        message.delivered_at = Some(at);
        message.updated_at = message.updated_at.max(at);
        Ok(DeliveryOutcome::Delivered(message.clone()))
    }

    async fn mark_read(
        &self,
        tenant: &TenantId,
        conversation: ConversationId,
        reader: &UserId,
        from_seq: i64,
        to_seq: i64,
        at: DateTime<Utc>,
        audit: AuditEntry,
    ) -> StoreResult<Vec<Message>> {
        same_tenant(tenant, &audit.tenant_id, "the audit row")?;
        let (at, audit) = (to_micros(at), stored_audit(audit));
        let mut state = self.lock();
        let Some(data) = state.tenants.get_mut(tenant) else {
            return Ok(Vec::new());
        };
        let to_mark: Vec<MessageId> = data
            .conversation_messages(conversation)
            .filter(|m| {
                (from_seq..=to_seq).contains(&m.seq)
                    && &m.recipient_id == reader
                    && m.read_at.is_none()
                    && !m.is_deleted()
            })
            .map(|m| m.id)
            .collect();
        let mut changed = Vec::with_capacity(to_mark.len());
        for id in to_mark {
            if let Some(message) = data.messages.get_mut(&id) {
                message.read = true;
                message.read_at = Some(at);
                message.delivered_at.get_or_insert(at);
                message.updated_at = message.updated_at.max(at);
                changed.push(message.clone());
            }
        }
        if !changed.is_empty() {
            data.audit.push(audit);
        }
        Ok(changed)
    }

    async fn conversations(
        &self,
        tenant: &TenantId,
        user: &UserId,
        after: Option<ConversationCursor>,
        limit: PageSize,
    ) -> StoreResult<Vec<ConversationSummary>> {
        let state = self.lock();
        let Some(data) = state.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        let mine: Vec<&ConversationRow> = data
            .conversations
            .values()
            .filter(|row| row.conversation.has_participant(user))
            .collect();
        // Latest first, ties by id desc: ascending order of the reversed key.
        let key = |row: &&ConversationRow| {
            (
                Reverse(row.conversation.last_message_at),
                Reverse(row.conversation.id),
            )
        };
        let cursor = after.map(|c| (Reverse(c.last_message_at), Reverse(c.id)));
        Ok(page(mine, key, cursor, limit)
            .into_iter()
            .map(|row| {
                let id = row.conversation.id;
                ConversationSummary {
                    conversation: row.conversation.clone(),
                    last_message: data.conversation_messages(id).next_back().cloned(),
                    unread_count: data
                        .conversation_messages(id)
                        .filter(|m| &m.recipient_id == user && !m.read && !m.is_deleted())
                        .count() as u64,
                }
            })
            .collect())
    }

    async fn conversation_partners(
        &self,
        tenant: &TenantId,
        user: &UserId,
        limit: PageSize,
    ) -> StoreResult<Vec<UserId>> {
        let page = self.conversations(tenant, user, None, limit).await?;
        Ok(page
            .into_iter()
            .filter_map(|s| s.conversation.other_participant(user).cloned())
            .collect())
    }

    async fn history(
        &self,
        tenant: &TenantId,
        conversation: ConversationId,
        before_seq: Option<i64>,
        limit: PageSize,
    ) -> StoreResult<Vec<Message>> {
        let state = self.lock();
        let Some(data) = state.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        Ok(data
            .conversation_messages(conversation)
            .rev()
            .filter(|m| before_seq.is_none_or(|before| m.seq < before))
            .take(limit.get() as usize)
            .cloned()
            .collect())
    }

    async fn messages_after(
        &self,
        tenant: &TenantId,
        conversation: ConversationId,
        after_seq: i64,
        limit: PageSize,
    ) -> StoreResult<Vec<Message>> {
        let state = self.lock();
        let Some(data) = state.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        Ok(data
            .conversation_messages(conversation)
            .filter(|m| m.seq > after_seq)
            .take(limit.get() as usize)
            .cloned()
            .collect())
    }

    async fn changes_since(
        &self,
        tenant: &TenantId,
        user: &UserId,
        since: ChangeCursor,
        limit: PageSize,
    ) -> StoreResult<Vec<Message>> {
        let state = self.lock();
        let Some(data) = state.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        let is_after = |m: &Message| match since.id {
            None => m.updated_at >= since.updated_at,
            Some(id) => (m.updated_at, m.id) > (since.updated_at, id),
        };
        let mine: Vec<&Message> = data
            .messages
            .values()
            .filter(|m| (&m.sender_id == user || &m.recipient_id == user) && is_after(m))
            .collect();
        Ok(page(mine, |m| (m.updated_at, m.id), None, limit)
            .into_iter()
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use afritalk_ports::{
        AuditAction, AuditFilter, AuditLog, MessageId, NotificationStore, PageSize,
    };
    use futures::executor::block_on;

    use super::super::fixtures::*;
    use super::*;

    fn all() -> PageSize {
        PageSize::new(100).unwrap()
    }

    fn audit_actions(store: &MemoryStore, t: &TenantId) -> Vec<AuditAction> {
        let mut rows = block_on(store.query(t, AuditFilter::default(), all())).unwrap();
        rows.reverse();
        rows.into_iter().map(|e| e.action).collect()
    }

    fn seqs(messages: &[Message]) -> Vec<i64> {
        messages.iter().map(|m| m.seq).collect()
    }

    fn read_audit(t: &TenantId) -> AuditEntry {
        audit(t, AuditAction::MessageRead, at(100))
    }

    #[test]
    fn the_first_send_creates_the_conversation_and_later_ones_reuse_it() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let first = new_message(&t, "bob", "alice", "salut", at(0));
        let notification_id = first.notification.id;
        let (m1, c1, created) = send(&store, first);
        assert!(created);
        assert_eq!(m1.seq, 1);
        assert_eq!(m1.content, "salut");
        assert!(!m1.read && m1.read_at.is_none() && m1.delivered_at.is_none());
        assert_eq!((m1.created_at, m1.updated_at), (at(0), at(0)));
        // Participants in canonical order whoever wrote first.
        assert_eq!(
            (c1.user_one_id.as_str(), c1.user_two_id.as_str()),
            ("alice", "bob")
        );
        assert_eq!(
            (c1.last_seq, c1.last_message_at, c1.created_at),
            (1, at(0), at(0))
        );

        let (m2, c2, created) = send(&store, new_message(&t, "alice", "bob", "ça va ?", at(5)));
        assert!(!created);
        assert_eq!(c2.id, c1.id);
        assert_eq!(m2.conversation_id, c1.id);
        assert_eq!(m2.seq, 2);
        assert_eq!(
            (c2.last_seq, c2.last_message_at, c2.updated_at),
            (2, at(5), at(5))
        );
        assert_eq!(c2.created_at, at(0));

        assert_eq!(
            audit_actions(&store, &t),
            vec![
                AuditAction::ConversationCreate,
                AuditAction::MessageSend,
                AuditAction::MessageSend
            ]
        );
        let stored = block_on(store.notification(&t, notification_id))
            .unwrap()
            .unwrap();
        assert_eq!(stored.user_id, user("alice"));
        let pair = ParticipantPair::new(user("alice"), user("bob")).unwrap();
        let between = block_on(store.conversation_between(&t, &pair)).unwrap();
        assert_eq!(between, Some(c2.clone()));
        assert_eq!(block_on(store.conversation(&t, c1.id)).unwrap(), Some(c2));
        assert_eq!(block_on(store.message(&t, m1.id)).unwrap(), Some(m1));
    }

    #[test]
    fn a_retried_client_message_id_returns_the_original_and_writes_nothing() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let (original, conversation, _) = send(
            &store,
            with_client_id(new_message(&t, "bob", "alice", "one", at(0)), "c-1"),
        );
        let retry = with_client_id(new_message(&t, "bob", "alice", "one again", at(3)), "c-1");
        let retry_notification = retry.notification.id;
        let outcome = block_on(store.send(retry)).unwrap();
        assert_eq!(
            outcome,
            SendOutcome::Duplicate {
                message: original.clone()
            }
        );
        assert_eq!(
            block_on(store.history(&t, conversation.id, None, all())).unwrap(),
            vec![original]
        );
        assert_eq!(
            block_on(store.notification(&t, retry_notification)).unwrap(),
            None
        );
        assert_eq!(audit_actions(&store, &t).len(), 2);
        assert_eq!(block_on(store.unread_count(&t, &user("alice"))).unwrap(), 1);

        // The key is tenant + sender + client id: other senders and tenants are new sends.
        let (other_sender, _, _) = send(
            &store,
            with_client_id(new_message(&t, "alice", "bob", "mine", at(4)), "c-1"),
        );
        assert_eq!(other_sender.seq, 2);
        let (other_tenant, _, created) = send(
            &store,
            with_client_id(new_message(&tenant("u"), "bob", "alice", "x", at(4)), "c-1"),
        );
        assert!(created);
        assert_eq!(other_tenant.seq, 1);
    }

    #[test]
    fn racing_retries_store_one_message() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let outcomes: Vec<SendOutcome> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (store, t) = (store.clone(), t.clone());
                    scope.spawn(move || {
                        let new = with_client_id(new_message(&t, "bob", "alice", "hi", at(0)), "c");
                        block_on(store.send(new)).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let stored: Vec<&Message> = outcomes
            .iter()
            .filter_map(|o| match o {
                SendOutcome::Stored { message, .. } => Some(message),
                SendOutcome::Duplicate { .. } => None,
            })
            .collect();
        assert_eq!(stored.len(), 1);
        for outcome in &outcomes {
            if let SendOutcome::Duplicate { message } = outcome {
                assert_eq!(message, stored[0]);
            }
        }
    }

    #[test]
    fn concurrent_sends_get_seq_without_gaps_or_duplicates() {
        let store = MemoryStore::new();
        let t = tenant("t");
        std::thread::scope(|scope| {
            for i in 0..8 {
                let (store, t) = (store.clone(), t.clone());
                scope.spawn(move || {
                    let (from, to) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
                    for _ in 0..25 {
                        send(&store, new_message(&t, from, to, "hi", at(0)));
                    }
                });
            }
        });
        let pair = ParticipantPair::new(user("a"), user("b")).unwrap();
        let conversation = block_on(store.conversation_between(&t, &pair))
            .unwrap()
            .unwrap();
        assert_eq!(conversation.last_seq, 200);
        let mut all_seqs = Vec::new();
        let mut after = 0;
        loop {
            let page = block_on(store.messages_after(&t, conversation.id, after, all())).unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            all_seqs.extend(seqs(&page));
        }
        assert_eq!(all_seqs, (1..=200).collect::<Vec<i64>>());
    }

    #[test]
    fn a_send_that_fails_validation_writes_nothing() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let (m1, _, _) = send(&store, new_message(&t, "a", "b", "first", at(0)));

        // Notification id already taken: refused before the conversation a↔c exists.
        let mut clash = new_message(&t, "a", "c", "second", at(1));
        clash.notification.id =
            block_on(store.list(&t, &user("b"), None, true, all())).unwrap()[0].id;
        assert!(matches!(
            block_on(store.send(clash.clone())),
            Err(StoreError::Conflict(_))
        ));
        let pair = ParticipantPair::new(user("a"), user("c")).unwrap();
        assert_eq!(
            block_on(store.conversation_between(&t, &pair)).unwrap(),
            None
        );
        assert_eq!(block_on(store.message(&t, clash.message_id)).unwrap(), None);
        assert_eq!(audit_actions(&store, &t).len(), 2);

        // Message id already taken.
        let mut clash = new_message(&t, "a", "b", "again", at(1));
        clash.message_id = m1.id;
        assert!(matches!(
            block_on(store.send(clash)),
            Err(StoreError::Conflict(_))
        ));

        // Writing to oneself has no conversation.
        let selfish = new_message(&t, "a", "a", "me", at(1));
        assert!(matches!(
            block_on(store.send(selfish)),
            Err(StoreError::Conflict(_))
        ));

        // A row of another tenant is refused.
        let mut stray = new_message(&t, "a", "b", "x", at(1));
        stray.notification.tenant_id = tenant("other");
        assert!(matches!(
            block_on(store.send(stray)),
            Err(StoreError::Conflict(_))
        ));

        let pair = ParticipantPair::new(user("a"), user("b")).unwrap();
        let conversation = block_on(store.conversation_between(&t, &pair))
            .unwrap()
            .unwrap();
        assert_eq!(conversation.last_seq, 1);
        assert_eq!(audit_actions(&store, &t).len(), 2);
        assert_eq!(block_on(store.unread_count(&t, &user("b"))).unwrap(), 1);
        assert!(
            block_on(store.list(&t, &user("c"), None, true, all()))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn has_written_counts_deleted_messages_and_only_the_sender() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let (m, c, _) = send(&store, new_message(&t, "a", "b", "hi", at(0)));
        block_on(store.delete(
            &t,
            m.id,
            at(1),
            audit(&t, AuditAction::MessageDelete, at(1)),
        ))
        .unwrap();
        assert!(block_on(store.has_written(&t, c.id, &user("a"))).unwrap());
        assert!(!block_on(store.has_written(&t, c.id, &user("b"))).unwrap());
        assert!(!block_on(store.has_written(&tenant("x"), c.id, &user("a"))).unwrap());
    }

    #[test]
    fn edit_replaces_content_keeps_creation_and_refuses_deleted_or_absent() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let (m, _, _) = send(&store, new_message(&t, "a", "b", "helo", at(0)));
        let content = MessageContent::parse("hello").unwrap();
        let edited = block_on(store.edit(
            &t,
            m.id,
            content.clone(),
            at(30),
            audit(&t, AuditAction::MessageEdit, at(30)),
        ))
        .unwrap();
        assert_eq!(edited.content, "hello");
        assert_eq!(edited.edited_at, Some(at(30)));
        assert_eq!(edited.updated_at, at(30));
        assert_eq!(edited.created_at, at(0));
        assert_eq!(
            block_on(store.message(&t, m.id)).unwrap(),
            Some(edited.clone())
        );

        let edit_audit = || audit(&t, AuditAction::MessageEdit, at(40));
        let absent = MessageId::from_uuid(uuid::Uuid::now_v7());
        assert_eq!(
            block_on(store.edit(&t, absent, content.clone(), at(40), edit_audit())),
            Err(StoreError::NotFound)
        );
        let other = tenant("other");
        assert_eq!(
            block_on(store.edit(
                &other,
                m.id,
                content.clone(),
                at(40),
                audit(&other, AuditAction::MessageEdit, at(40))
            )),
            Err(StoreError::NotFound)
        );

        let deleted = block_on(store.delete(
            &t,
            m.id,
            at(50),
            audit(&t, AuditAction::MessageDelete, at(50)),
        ))
        .unwrap();
        let rows_before = audit_actions(&store, &t).len();
        assert!(matches!(
            block_on(store.edit(&t, m.id, content, at(60), edit_audit())),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(block_on(store.message(&t, m.id)).unwrap(), Some(deleted));
        assert_eq!(audit_actions(&store, &t).len(), rows_before);
    }

    #[test]
    fn delete_leaves_a_tombstone_once() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let (m, c, _) = send(&store, new_message(&t, "a", "b", "oops", at(0)));
        let deleted = block_on(store.delete(
            &t,
            m.id,
            at(10),
            audit(&t, AuditAction::MessageDelete, at(10)),
        ))
        .unwrap();
        assert_eq!(deleted.content, "");
        assert_eq!(deleted.deleted_at, Some(at(10)));
        assert_eq!(deleted.updated_at, at(10));
        assert_eq!((deleted.seq, deleted.created_at), (1, at(0)));
        assert_eq!(
            block_on(store.history(&t, c.id, None, all())).unwrap(),
            vec![deleted.clone()]
        );
        assert!(matches!(
            block_on(store.delete(
                &t,
                m.id,
                at(20),
                audit(&t, AuditAction::MessageDelete, at(20))
            )),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(block_on(store.message(&t, m.id)).unwrap(), Some(deleted));
        assert_eq!(
            audit_actions(&store, &t),
            vec![
                AuditAction::ConversationCreate,
                AuditAction::MessageSend,
                AuditAction::MessageDelete
            ]
        );
        let absent = MessageId::from_uuid(uuid::Uuid::now_v7());
        assert_eq!(
            block_on(store.delete(
                &t,
                absent,
                at(20),
                audit(&t, AuditAction::MessageDelete, at(20))
            )),
            Err(StoreError::NotFound)
        );
    }

    #[test]
    fn mark_delivered_keeps_the_first_time() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let (m, _, _) = send(&store, new_message(&t, "a", "b", "hi", at(0)));
        let b = UserId::parse("b").unwrap();
        let a = UserId::parse("a").unwrap();
        assert_eq!(
            block_on(store.mark_delivered(&t, m.id, &a, at(1))).unwrap(),
            DeliveryOutcome::NotRecipient(m.clone())
        );
        let DeliveryOutcome::Delivered(first) =
            block_on(store.mark_delivered(&t, m.id, &b, at(2))).unwrap()
        else {
            panic!("the first call delivers");
        };
        assert_eq!((first.delivered_at, first.updated_at), (Some(at(2)), at(2)));
        let second = block_on(store.mark_delivered(&t, m.id, &b, at(9))).unwrap();
        assert_eq!(second, DeliveryOutcome::AlreadyDelivered(first));
        assert_eq!(
            block_on(store.mark_delivered(&tenant("x"), m.id, &b, at(9))),
            Err(StoreError::NotFound)
        );
    }

    #[test]
    fn mark_read_marks_the_readers_unread_messages_in_range_once() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let (m1, c, _) = send(&store, new_message(&t, "a", "b", "1", at(0)));
        let (_m2, _, _) = send(&store, new_message(&t, "b", "a", "2", at(1)));
        let (m3, _, _) = send(&store, new_message(&t, "a", "b", "3", at(2)));
        let (m4, _, _) = send(&store, new_message(&t, "a", "b", "4", at(3)));
        let (m5, _, _) = send(&store, new_message(&t, "a", "b", "5", at(4)));
        block_on(store.mark_delivered(&t, m3.id, &UserId::parse("b").unwrap(), at(5))).unwrap();
        block_on(store.delete(
            &t,
            m4.id,
            at(6),
            audit(&t, AuditAction::MessageDelete, at(6)),
        ))
        .unwrap();
        let audits = audit_actions(&store, &t).len();

        // Seq 1..=4 for b: m1 and m3 (m2 is b's own, m4 deleted, m5 out of range).
        let read =
            block_on(store.mark_read(&t, c.id, &user("b"), 1, 4, at(10), read_audit(&t))).unwrap();
        assert_eq!(seqs(&read), vec![1, 3]);
        for m in &read {
            assert!(m.read);
            assert_eq!((m.read_at, m.updated_at), (Some(at(10)), at(10)));
        }
        assert_eq!(read[0].delivered_at, Some(at(10)), "read implies delivered");
        assert_eq!(
            read[1].delivered_at,
            Some(at(5)),
            "the first delivery is kept"
        );
        assert_eq!(audit_actions(&store, &t).len(), audits + 1);
        let still_unread = block_on(store.message(&t, m5.id)).unwrap().unwrap();
        assert!(!still_unread.read && still_unread.read_at.is_none());
        let tombstone = block_on(store.message(&t, m4.id)).unwrap().unwrap();
        assert!(tombstone.read_at.is_none());

        // Again, wider: only m5 is new; m1 keeps its first read_at and is not returned.
        let again =
            block_on(store.mark_read(&t, c.id, &user("b"), 1, 5, at(20), read_audit(&t))).unwrap();
        assert_eq!(seqs(&again), vec![5]);
        let m1_now = block_on(store.message(&t, m1.id)).unwrap().unwrap();
        assert_eq!(m1_now.read_at, Some(at(10)));
        assert_eq!(audit_actions(&store, &t).len(), audits + 2);

        // Nothing left: no change, no audit row.
        let none =
            block_on(store.mark_read(&t, c.id, &user("b"), 1, 5, at(30), read_audit(&t))).unwrap();
        assert!(none.is_empty());
        assert_eq!(audit_actions(&store, &t).len(), audits + 2);

        // The sender cannot read on the recipient's behalf; another tenant sees nothing.
        let other = tenant("o");
        assert!(
            block_on(store.mark_read(&other, c.id, &user("a"), 1, 5, at(30), read_audit(&other)))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn conversations_come_latest_first_with_unread_counts_and_a_strict_cursor() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let (_, ab, _) = send(&store, new_message(&t, "b", "a", "1", at(0)));
        let (_, ac, _) = send(&store, new_message(&t, "c", "a", "2", at(5)));
        let (_, ad, _) = send(&store, new_message(&t, "a", "d", "3", at(5)));
        let (last_ab, _, _) = send(&store, new_message(&t, "b", "a", "4", at(9)));
        let (gone, _, _) = send(&store, new_message(&t, "c", "a", "5", at(6)));
        block_on(store.delete(
            &t,
            gone.id,
            at(7),
            audit(&t, AuditAction::MessageDelete, at(7)),
        ))
        .unwrap();
        send(&store, new_message(&t, "b", "c", "not a's", at(20)));
        send(
            &store,
            new_message(&tenant("o"), "b", "a", "other tenant", at(30)),
        );

        // Deleting does not move a conversation: it sorts by its last send.
        let list = block_on(store.conversations(&t, &user("a"), None, all())).unwrap();
        let ids: Vec<ConversationId> = list.iter().map(|s| s.conversation.id).collect();
        assert_eq!(ids, vec![ab.id, ac.id, ad.id]);

        assert_eq!(list[0].last_message.as_ref(), Some(&last_ab));
        assert_eq!(list[0].unread_count, 2);
        assert_eq!(
            list[1].unread_count, 1,
            "the deleted message does not count"
        );
        assert!(list[1].last_message.as_ref().unwrap().is_deleted());
        assert_eq!(list[2].unread_count, 0, "a wrote the only message to d");

        // Paging one by one gives the same order, each page strictly after the cursor.
        let mut paged = Vec::new();
        let mut cursor = None;
        loop {
            let page =
                block_on(store.conversations(&t, &user("a"), cursor, PageSize::new(1).unwrap()))
                    .unwrap();
            let Some(row) = page.first() else { break };
            cursor = Some(ConversationCursor {
                last_message_at: row.conversation.last_message_at,
                id: row.conversation.id,
            });
            paged.push(row.conversation.id);
        }
        assert_eq!(paged, ids);
    }

    #[test]
    fn conversation_ties_are_broken_by_id_descending() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let mut ids: Vec<ConversationId> = ["b", "c", "d", "e"]
            .iter()
            .map(|other| send(&store, new_message(&t, other, "a", "hi", at(7))).1.id)
            .collect();
        ids.sort_by(|x, y| y.cmp(x));
        let list = block_on(store.conversations(&t, &user("a"), None, all())).unwrap();
        assert_eq!(
            list.iter().map(|s| s.conversation.id).collect::<Vec<_>>(),
            ids
        );
        let after_second = ConversationCursor {
            last_message_at: at(7),
            id: ids[1],
        };
        let rest =
            block_on(store.conversations(&t, &user("a"), Some(after_second), all())).unwrap();
        assert_eq!(
            rest.iter().map(|s| s.conversation.id).collect::<Vec<_>>(),
            ids[2..].to_vec()
        );
    }

    #[test]
    fn history_is_newest_first_and_catch_up_oldest_first() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let mut c = None;
        for i in 0..10 {
            c = Some(send(&store, new_message(&t, "a", "b", "m", at(i))).1.id);
        }
        let c = c.unwrap();
        let three = PageSize::new(3).unwrap();
        let newest = block_on(store.history(&t, c, None, three)).unwrap();
        assert_eq!(seqs(&newest), vec![10, 9, 8]);
        let older = block_on(store.history(&t, c, Some(8), three)).unwrap();
        assert_eq!(seqs(&older), vec![7, 6, 5]);
        let oldest = block_on(store.history(&t, c, Some(2), three)).unwrap();
        assert_eq!(seqs(&oldest), vec![1]);

        let after = block_on(store.messages_after(&t, c, 4, three)).unwrap();
        assert_eq!(seqs(&after), vec![5, 6, 7]);
        assert!(
            block_on(store.messages_after(&t, c, 10, three))
                .unwrap()
                .is_empty()
        );

        let other = tenant("o");
        assert!(
            block_on(store.history(&other, c, None, three))
                .unwrap()
                .is_empty()
        );
        assert!(
            block_on(store.messages_after(&other, c, 0, three))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn changes_since_follows_updated_at_then_id_for_the_users_messages() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let (m1, _, _) = send(&store, new_message(&t, "a", "b", "1", at(0)));
        let (m2, _, _) = send(&store, new_message(&t, "c", "a", "2", at(5)));
        let (m3, _, _) = send(&store, new_message(&t, "a", "d", "3", at(5)));
        send(&store, new_message(&t, "b", "c", "not a's", at(5)));
        send(
            &store,
            new_message(&tenant("o"), "a", "b", "other tenant", at(5)),
        );
        // Editing m1 moves it to the end of the stream.
        block_on(store.edit(
            &t,
            m1.id,
            MessageContent::parse("1 bis").unwrap(),
            at(8),
            audit(&t, AuditAction::MessageEdit, at(8)),
        ))
        .unwrap();

        let (tie_low, tie_high) = if m2.id < m3.id {
            (m2.id, m3.id)
        } else {
            (m3.id, m2.id)
        };
        let ids = |ms: Vec<Message>| ms.into_iter().map(|m| m.id).collect::<Vec<_>>();
        let since = |updated_at, id| ChangeCursor { updated_at, id };
        let all_changes =
            block_on(store.changes_since(&t, &user("a"), since(at(0), None), all())).unwrap();
        assert_eq!(ids(all_changes), vec![tie_low, tie_high, m1.id]);

        // `None` starts at the instant inclusive; an id starts strictly after it.
        let from_five =
            block_on(store.changes_since(&t, &user("a"), since(at(5), None), all())).unwrap();
        assert_eq!(ids(from_five), vec![tie_low, tie_high, m1.id]);
        let after_low =
            block_on(store.changes_since(&t, &user("a"), since(at(5), Some(tie_low)), all()))
                .unwrap();
        assert_eq!(ids(after_low), vec![tie_high, m1.id]);
        let one = block_on(store.changes_since(
            &t,
            &user("a"),
            since(at(0), None),
            PageSize::new(1).unwrap(),
        ))
        .unwrap();
        assert_eq!(ids(one), vec![tie_low]);
        let after_edit =
            block_on(store.changes_since(&t, &user("a"), since(at(8), Some(m1.id)), all()))
                .unwrap();
        assert!(after_edit.is_empty());
    }

    #[test]
    fn another_tenants_ids_are_absent() {
        let store = MemoryStore::new();
        let t = tenant("t");
        let other = tenant("o");
        let (m, c, _) = send(&store, new_message(&t, "a", "b", "secret", at(0)));
        let pair = ParticipantPair::new(user("a"), user("b")).unwrap();
        assert_eq!(block_on(store.message(&other, m.id)).unwrap(), None);
        assert_eq!(block_on(store.conversation(&other, c.id)).unwrap(), None);
        assert_eq!(
            block_on(store.conversation_between(&other, &pair)).unwrap(),
            None
        );
        assert!(
            block_on(store.conversations(&other, &user("a"), None, all()))
                .unwrap()
                .is_empty()
        );
        assert!(
            block_on(store.changes_since(
                &other,
                &user("a"),
                ChangeCursor {
                    updated_at: at(0),
                    id: None
                },
                all()
            ))
            .unwrap()
            .is_empty()
        );
        assert_eq!(
            block_on(store.delete(
                &other,
                m.id,
                at(1),
                audit(&other, AuditAction::MessageDelete, at(1))
            )),
            Err(StoreError::NotFound)
        );
        // The same pair in the other tenant gets its own conversation.
        let (_, c2, created) = send(&store, new_message(&other, "a", "b", "hi", at(1)));
        assert!(created);
        assert_ne!(c2.id, c.id);
    }
}
