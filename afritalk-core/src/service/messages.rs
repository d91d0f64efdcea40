//! Writing use cases: send, edit, delete, and the ✓✓ receipts (delivered, read).

use afritalk_ports::{
    Audience, AuditAction, ConflictKind, ConversationId, DeliveredEvent, DeliveryOutcome, Message,
    MessageId, MessagingError, Missing, NewMessage, NewMessageEvent, Notification, NotificationId,
    NotificationKind, NotificationStatus, NotifyEvent, RateAction, ReadEvent, RealtimeEvent,
    SendOutcome, StoreError, TenantId, UserId,
};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::MessagingService;
use crate::actor::Actor;
use crate::rules::conversation::{Side, pair_for, side_of};
use crate::rules::edit_window::EditWindow;
use crate::rules::permissions::PermissionMatrix;
use crate::views::{SendMessage, SentMessage};

impl MessagingService {
    /// Sends a 1-to-1 message: checks the matrix (or the reply rule), stores the
    /// message, its notification and audit rows atomically, then publishes
    /// `messaging:new` to both users and `notify:new` to the recipient. A retry with
    /// the same `clientMessageId` returns the original message and publishes nothing.
    pub async fn send(
        &self,
        actor: &Actor,
        request: SendMessage,
    ) -> Result<SentMessage, MessagingError> {
        self.ensure_enabled(&actor.tenant).await?;
        let sender_role = self.ensure_staff(actor, "message.send").await?;
        let pair = pair_for(&actor.user, &request.to)?;
        self.check_rate(actor, RateAction::Send).await?;

        let directory = &self.ports.directory;
        // The caller first: a deactivated sender is refused (and audited)
        // whoever they write to, an unknown or inactive recipient included.
        let me = self
            .ensure_active(actor, json!({ "recipientId": request.to }))
            .await?;
        let recipient = directory
            .user(&actor.tenant, &request.to)
            .await?
            .ok_or(MessagingError::NotFound(Missing::User))?;
        if !recipient.active {
            return Err(MessagingError::conflict(
                ConflictKind::RecipientInactive,
                "the recipient is deactivated",
            ));
        }

        if !PermissionMatrix::allows(sender_role, recipient.role) {
            // Only the cells the matrix refuses need the reply rule, and so the
            // conversation: allowed sends (nearly all) skip this round trip.
            let existing = self
                .ports
                .messages
                .conversation_between(&actor.tenant, &pair)
                .await?;
            let recipient_has_written = match &existing {
                Some(conv) => {
                    self.ports
                        .messages
                        .has_written(&actor.tenant, conv.id, &request.to)
                        .await?
                }
                None => false,
            };
            let decision =
                PermissionMatrix::decide(sender_role, recipient.role, recipient_has_written);
            if !decision.is_allowed() {
                let details = json!({
                    "recipientId": request.to,
                    "senderRole": sender_role,
                    "recipientRole": recipient.role,
                });
                let entity = Some(("user", request.to.to_string()));
                return Err(self
                    .refuse(
                        actor,
                        "your role may not start a conversation with this user",
                        entity,
                        details,
                    )
                    .await);
            }
        }

        let now = self.ports.clock.now();
        let message_id = MessageId::from_uuid(self.ports.ids.new_id());
        // The store reuses the pair's conversation when there is one; this id (and
        // its conversation.create audit row) is used only if the send creates it.
        let new_conversation_id = ConversationId::from_uuid(self.ports.ids.new_id());
        let sender_name = me
            .map(|u| u.display_name.as_str().to_owned())
            .unwrap_or_else(|| actor.user.to_string());
        let notification = Notification {
            id: NotificationId::from_uuid(self.ports.ids.new_id()),
            tenant_id: actor.tenant.clone(),
            user_id: request.to.clone(),
            title: format!("New message from {sender_name}"),
            message: request.content.notification_preview(),
            kind: NotificationKind::Message,
            status: NotificationStatus::Unread,
            related: afritalk_ports::RelatedEntity::new("message", message_id.to_string()).ok(),
            push_sent: false,
            push_sent_at: None,
            created_at: now,
        };
        let send_audit = self.audit_entry(
            actor,
            AuditAction::MessageSend,
            Some(("message", message_id.to_string())),
            json!({
                "recipientId": request.to,
                "clientMessageId": request.client_message_id,
                "relatedEntityType": request.related.as_ref().map(|r| r.entity_type()),
                "relatedEntityId": request.related.as_ref().map(|r| r.entity_id()),
            }),
            now,
        );
        let conversation_audit = self.audit_entry(
            actor,
            AuditAction::ConversationCreate,
            Some(("conversation", new_conversation_id.to_string())),
            json!({ "participants": [pair.low(), pair.high()] }),
            now,
        );

        let outcome = self
            .ports
            .messages
            .send(NewMessage {
                tenant_id: actor.tenant.clone(),
                message_id,
                new_conversation_id,
                sender_id: actor.user.clone(),
                recipient_id: request.to.clone(),
                content: request.content,
                related: request.related,
                client_message_id: request.client_message_id,
                created_at: now,
                notification: notification.clone(),
                send_audit,
                conversation_audit,
            })
            .await?;

        match outcome {
            SendOutcome::Duplicate { message } => Ok(SentMessage {
                conversation_id: message.conversation_id,
                message,
                duplicate: true,
            }),
            SendOutcome::Stored { message, .. } => {
                let event = RealtimeEvent::MessageNew(NewMessageEvent {
                    conversation_id: message.conversation_id,
                    message: message.clone(),
                });
                let tenant = &actor.tenant;
                let notify = RealtimeEvent::NotifyNew(NotifyEvent {
                    kind: NotificationKind::Message,
                    payload: notification,
                });
                // One hand-over for the three: across nodes, one broker round
                // trip and one channel message per send instead of three.
                self.publish_all(vec![
                    (
                        Audience::User(tenant.clone(), request.to.clone()),
                        event.clone(),
                    ),
                    (Audience::User(tenant.clone(), actor.user.clone()), event),
                    (Audience::User(tenant.clone(), request.to), notify),
                ])
                .await;
                self.note_activity(actor, now).await;
                Ok(SentMessage {
                    conversation_id: message.conversation_id,
                    message,
                    duplicate: false,
                })
            }
        }
    }

    /// Loads a message of the caller's tenant, or `NotFound`.
    async fn load_message(&self, actor: &Actor, id: MessageId) -> Result<Message, MessagingError> {
        self.ports
            .messages
            .message(&actor.tenant, id)
            .await?
            .ok_or(MessagingError::NotFound(Missing::Message))
    }

    /// One message by id, for a link to it (a notification's
    /// `relatedEntityId`): participants only, anyone else is told it does not
    /// exist. Fetched by its recipient, it is marked delivered, as by every
    /// fetch.
    pub async fn message(&self, actor: &Actor, id: MessageId) -> Result<Message, MessagingError> {
        self.ensure_may_use(actor, "message.get").await?;
        let mut message = self.load_message(actor, id).await?;
        side_of(&message, &actor.user)?;
        self.receive(actor, std::iter::once(&mut message)).await;
        Ok(message)
    }

    /// Checks the caller wrote `message`; the recipient is refused (and audited),
    /// strangers are told it does not exist.
    async fn ensure_sender(
        &self,
        actor: &Actor,
        message: &Message,
        verb: &str,
    ) -> Result<(), MessagingError> {
        match side_of(message, &actor.user)? {
            Side::Sender => Ok(()),
            Side::Recipient => Err(self
                .refuse(
                    actor,
                    &format!("only the sender may {verb} a message"),
                    Some(("message", message.id.to_string())),
                    json!({ "operation": verb }),
                )
                .await),
        }
    }

    /// Edits a message: sender only, not deleted, within the 2-minute window.
    /// Publishes `message:edited` to both participants.
    pub async fn edit(
        &self,
        actor: &Actor,
        id: MessageId,
        content: afritalk_ports::MessageContent,
    ) -> Result<Message, MessagingError> {
        self.ensure_enabled(&actor.tenant).await?;
        self.ensure_staff(actor, "message.edit").await?;
        let message = self.load_message(actor, id).await?;
        self.ensure_sender(actor, &message, "edit").await?;
        self.ensure_active(actor, json!({ "operation": "edit" }))
            .await?;
        self.check_rate(actor, RateAction::Modify).await?;
        if message.is_deleted() {
            return Err(deleted_conflict());
        }
        let now = self.ports.clock.now();
        if !EditWindow::STANDARD.is_open(message.created_at, now) {
            return Err(MessagingError::conflict(
                ConflictKind::EditWindowClosed,
                "messages can only be edited within 2 minutes of sending",
            ));
        }
        let audit = self.audit_entry(
            actor,
            AuditAction::MessageEdit,
            Some(("message", id.to_string())),
            json!({ "conversationId": message.conversation_id }),
            now,
        );
        let edited = self
            .ports
            .messages
            .edit(&actor.tenant, id, content, now, audit)
            .await
            .map_err(modify_error)?;
        self.publish_to_both(&edited, RealtimeEvent::MessageEdited(edited.clone()))
            .await;
        Ok(edited)
    }

    /// Deletes a message (sender only): the content is erased and a tombstone stays.
    /// Deleting a tombstone again returns it unchanged. Publishes `message:deleted`.
    pub async fn delete(&self, actor: &Actor, id: MessageId) -> Result<Message, MessagingError> {
        self.ensure_enabled(&actor.tenant).await?;
        self.ensure_staff(actor, "message.delete").await?;
        let message = self.load_message(actor, id).await?;
        self.ensure_sender(actor, &message, "delete").await?;
        if message.is_deleted() {
            return Ok(message);
        }
        self.ensure_active(actor, json!({ "operation": "delete" }))
            .await?;
        self.check_rate(actor, RateAction::Modify).await?;
        let now = self.ports.clock.now();
        let audit = self.audit_entry(
            actor,
            AuditAction::MessageDelete,
            Some(("message", id.to_string())),
            json!({ "conversationId": message.conversation_id }),
            now,
        );
        let tombstone = match self
            .ports
            .messages
            .delete(&actor.tenant, id, now, audit)
            .await
        {
            Ok(tombstone) => tombstone,
            // Deleted concurrently by another device of the sender: same end
            // state, and that device's delete told everyone.
            Err(StoreError::Conflict(_)) => return self.load_message(actor, id).await,
            Err(err) => return Err(MessagingError::from_store(err, Missing::Message)),
        };
        self.publish_to_both(&tombstone, RealtimeEvent::MessageDeleted(tombstone.clone()))
            .await;
        // Nothing is left to read: the recipient's bell no longer counts it.
        self.read_notifications_of(
            &tombstone.tenant_id,
            &tombstone.recipient_id,
            &[tombstone.id],
        )
        .await;
        Ok(tombstone)
    }

    /// Records that a recipient device received a message (✓✓) and tells the
    /// sender's devices with `messaging:delivered`. Idempotent: the first time stays,
    /// and only the call that set it tells the sender.
    pub async fn mark_delivered(
        &self,
        actor: &Actor,
        id: MessageId,
    ) -> Result<Message, MessagingError> {
        self.ensure_enabled(&actor.tenant).await?;
        self.deliver(actor, id, self.ports.clock.now()).await
    }

    /// [`mark_delivered`](Self::mark_delivered) at `now`, for a tenant known enabled.
    async fn deliver(
        &self,
        actor: &Actor,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<Message, MessagingError> {
        // One store call that checks the recipient and sets the first time together
        // (one statement in the common case); the rule is applied to what it found.
        let outcome = self
            .ports
            .messages
            .mark_delivered(&actor.tenant, id, &actor.user, now)
            .await
            .map_err(|e| MessagingError::from_store(e, Missing::Message))?;
        let delivered = match outcome {
            DeliveryOutcome::Delivered(message) => message,
            DeliveryOutcome::AlreadyDelivered(message) => return Ok(message),
            DeliveryOutcome::NotRecipient(message) => {
                // Strangers are told it does not exist; the sender is refused.
                side_of(&message, &actor.user)?;
                return Err(MessagingError::Forbidden(
                    "only the recipient acknowledges delivery".into(),
                ));
            }
        };
        if let Some(delivered_at) = delivered.delivered_at {
            let event = RealtimeEvent::MessageDelivered(DeliveredEvent {
                message_id: delivered.id,
                conversation_id: delivered.conversation_id,
                delivered_at,
            });
            let sender = Audience::User(actor.tenant.clone(), delivered.sender_id.clone());
            self.publish(sender, event).await;
        }
        Ok(delivered)
    }

    /// Marks the messages of a page fetched by the caller that are addressed to
    /// them and that no device had received yet as delivered (✓✓), in place: a
    /// history or catch-up page, or the last messages of a conversation list,
    /// is the caller's device receiving them. Without
    /// this, a message sent while its recipient was offline never reached ✓✓,
    /// since only a live socket's ack of `messaging:new` marked it. The page is
    /// received at one time, so it keeps its order among later changes; the
    /// marks run together so that the store can share their writes. A failure
    /// costs only the receipt, so it is logged and the message left as it was.
    /// The caller has checked that the tenant is enabled.
    pub(super) async fn receive<'m>(
        &self,
        actor: &Actor,
        messages: impl IntoIterator<Item = &'m mut Message>,
    ) {
        let now = self.ports.clock.now();
        let marks = messages
            .into_iter()
            .filter(|m| {
                m.recipient_id == actor.user && m.delivered_at.is_none() && !m.is_deleted()
            })
            .map(|message| async move {
                match self.deliver(actor, message.id, now).await {
                    Ok(stored) => *message = stored,
                    Err(err) => {
                        tracing::warn!(%err, message = %message.id, "delivery on fetch not recorded");
                    }
                }
            });
        futures::future::join_all(marks).await;
    }

    /// Marks one message read (recipient only, idempotent: the first `readAt` stays)
    /// and tells both participants' devices with `messaging:read`.
    pub async fn mark_read(&self, actor: &Actor, id: MessageId) -> Result<Message, MessagingError> {
        self.ensure_may_use(actor, "message.read").await?;
        let message = self.load_message(actor, id).await?;
        if side_of(&message, &actor.user)? != Side::Recipient {
            return Err(self
                .refuse(
                    actor,
                    "only the recipient may mark a message read",
                    Some(("message", id.to_string())),
                    json!({ "operation": "read" }),
                )
                .await);
        }
        if message.read_at.is_some() || message.is_deleted() {
            return Ok(message);
        }
        self.check_rate(actor, RateAction::Receipt).await?;
        let changed = self
            .read_range(
                actor,
                message.conversation_id,
                (message.seq, message.seq),
                Some(id),
            )
            .await?;
        match changed.into_iter().next() {
            Some(read) => Ok(read),
            // Read concurrently by another device: return the stored state.
            None => self.load_message(actor, id).await,
        }
    }

    /// Marks every message addressed to the caller in a conversation read, up to
    /// `up_to_seq` (the latest when `None`); returns the messages read now.
    pub async fn mark_conversation_read(
        &self,
        actor: &Actor,
        conversation: ConversationId,
        up_to_seq: Option<i64>,
    ) -> Result<Vec<Message>, MessagingError> {
        let conv = self
            .participant_conversation(actor, conversation, "message.read")
            .await?;
        self.check_rate(actor, RateAction::Receipt).await?;
        let up_to = up_to_seq.unwrap_or(conv.last_seq).min(conv.last_seq);
        self.read_range(actor, conversation, (1, up_to), None).await
    }

    /// Marks a range read in the store (with its audit row) and publishes a
    /// `messaging:read` per message changed, to both participants. The row
    /// names the `message` when one was read by id, else the conversation.
    async fn read_range(
        &self,
        actor: &Actor,
        conversation: ConversationId,
        (from_seq, to_seq): (i64, i64),
        message: Option<MessageId>,
    ) -> Result<Vec<Message>, MessagingError> {
        let now = self.ports.clock.now();
        let (entity, details) = match message {
            Some(id) => (
                ("message", id.to_string()),
                json!({ "conversationId": conversation, "seq": from_seq }),
            ),
            None => (
                ("conversation", conversation.to_string()),
                json!({ "fromSeq": from_seq, "toSeq": to_seq }),
            ),
        };
        let audit = self.audit_entry(actor, AuditAction::MessageRead, Some(entity), details, now);
        let changed = self
            .ports
            .messages
            .mark_read(
                &actor.tenant,
                conversation,
                &actor.user,
                from_seq,
                to_seq,
                now,
                audit,
            )
            .await?;
        for message in &changed {
            if let Some(read_at) = message.read_at {
                let event = RealtimeEvent::MessageRead(ReadEvent {
                    message_id: message.id,
                    conversation_id: message.conversation_id,
                    read_at,
                });
                self.publish_to_both(message, event).await;
            }
        }
        let ids: Vec<MessageId> = changed.iter().map(|m| m.id).collect();
        self.read_notifications_of(&actor.tenant, &actor.user, &ids)
            .await;
        Ok(changed)
    }

    /// Marks `user`'s notifications of these messages (just read, or deleted
    /// by their sender) read too, so the bell's badge follows the
    /// conversation, and tells the user's devices. Best effort: the messages'
    /// change is stored, and a notification left unread is only a badge too
    /// high.
    async fn read_notifications_of(&self, tenant: &TenantId, user: &UserId, ids: &[MessageId]) {
        if ids.is_empty() {
            return;
        }
        let notifications = &self.ports.notifications;
        match notifications
            .mark_read_for_messages(tenant, user, ids)
            .await
        {
            Ok(0) => {}
            Ok(_) => {
                self.tell_devices_of(tenant, user, None, NotificationStatus::Read)
                    .await
            }
            Err(err) => {
                tracing::warn!(%err, "notifications of read or deleted messages left unread")
            }
        }
    }

    /// Publishes an event about `message` to its sender's and recipient's devices.
    async fn publish_to_both(&self, message: &Message, event: RealtimeEvent) {
        let tenant = &message.tenant_id;
        self.publish(
            Audience::User(tenant.clone(), message.sender_id.clone()),
            event.clone(),
        )
        .await;
        self.publish(
            Audience::User(tenant.clone(), message.recipient_id.clone()),
            event,
        )
        .await;
    }
}

/// The conflict answered for any change to a tombstone.
fn deleted_conflict() -> MessagingError {
    MessagingError::conflict(ConflictKind::MessageDeleted, "the message was deleted")
}

/// Maps a store error met while changing a message (a conflict there means it was
/// deleted in the meantime).
fn modify_error(err: StoreError) -> MessagingError {
    match err {
        StoreError::Conflict(_) => deleted_conflict(),
        other => MessagingError::from_store(other, Missing::Message),
    }
}
