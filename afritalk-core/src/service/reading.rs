//! Reading use cases: conversation list, history, and catch-up after a reconnect.
//! Messages fetched by their recipient, in a page or as a conversation's last
//! message in the list, are marked delivered (✓✓).

use std::collections::HashMap;

use afritalk_ports::{
    Audience, ChangeCursor, Conversation, ConversationCursor, ConversationId, ConversationSummary,
    MessagingError, Missing, NotificationStatus, PageSize, RateAction, RealtimeEvent, TypingEvent,
    UserId,
};

use chrono::TimeDelta;

use super::MessagingService;
use crate::actor::Actor;
use crate::rules::conversation::{ensure_participant, pair_for};
use crate::views::{
    CatchUp, CatchUpCursor, ConversationCatchUp, ConversationListItem, ConversationPage,
    ConversationPageCursor, HistoryPage, Participant,
};

/// How far behind now a finished catch-up's resume point stays: well past how
/// long a change normally waits between being stamped and being stored (the
/// Postgres send queue refuses sends older than 2 s; SQLite waits at most 5 s
/// for its file lock). Pool and lock waits have no hard limit, so a write
/// stalled longer than this by an overloaded database can still be missed by
/// a catch-up that ran meanwhile (its live event still carries it).
pub(crate) const CATCH_UP_SETTLE: TimeDelta = TimeDelta::seconds(30);

impl MessagingService {
    /// The caller's conversations, latest message first, with unread counts and the
    /// other participant.
    pub async fn conversations(
        &self,
        actor: &Actor,
        after: Option<ConversationCursor>,
        limit: PageSize,
    ) -> Result<ConversationPage, MessagingError> {
        self.ensure_may_use(actor, "conversation.list").await?;
        let items = self.conversation_items(actor, after, limit).await?;
        let full = items.len() == limit.get() as usize;
        let next_cursor = items
            .last()
            .filter(|_| full)
            .map(|item| ConversationPageCursor {
                last_message_at: item.conversation.last_message_at,
                id: item.conversation.id,
            });
        Ok(ConversationPage {
            conversations: items,
            next_cursor,
        })
    }

    /// The other participants of the caller's latest conversations (at most
    /// `limit`, latest first): whose presence a connecting socket watches.
    /// Asked right after [`Self::connect`], which refused a deactivated
    /// caller, so only the tenant's flag is checked again.
    pub async fn conversation_partners(
        &self,
        actor: &Actor,
        limit: PageSize,
    ) -> Result<Vec<UserId>, MessagingError> {
        self.ensure_enabled(&actor.tenant).await?;
        Ok(self
            .ports
            .messages
            .conversation_partners(&actor.tenant, &actor.user, limit)
            .await?)
    }

    /// One page of summaries, joined with the directory in one extra call. A
    /// last message addressed to the caller is marked delivered: the list shows
    /// it, so the device has received it.
    async fn conversation_items(
        &self,
        actor: &Actor,
        after: Option<ConversationCursor>,
        limit: PageSize,
    ) -> Result<Vec<ConversationListItem>, MessagingError> {
        let summaries = self
            .ports
            .messages
            .conversations(&actor.tenant, &actor.user, after, limit)
            .await?;
        let others: Vec<UserId> = summaries
            .iter()
            .filter_map(|s| s.conversation.other_participant(&actor.user).cloned())
            .collect();
        let entries = self.ports.directory.users(&actor.tenant, &others).await?;
        let by_id: HashMap<_, _> = entries.iter().map(|e| (&e.user_id, e)).collect();
        let mut items: Vec<ConversationListItem> = summaries
            .into_iter()
            .filter_map(|summary: ConversationSummary| {
                let other = summary.conversation.other_participant(&actor.user)?.clone();
                let entry = by_id.get(&other).copied();
                Some(ConversationListItem {
                    participant: Participant::new(other, entry),
                    conversation: summary.conversation,
                    last_message: summary.last_message,
                    unread_count: summary.unread_count,
                })
            })
            .collect();
        let last_messages = items.iter_mut().filter_map(|i| i.last_message.as_mut());
        self.receive(actor, last_messages).await;
        Ok(items)
    }

    /// History with `other`, newest first, before `before_seq` when given.
    /// An unknown user is `NotFound`; a known one never written to is an empty page.
    /// Messages to the caller in the page are marked delivered.
    pub async fn history(
        &self,
        actor: &Actor,
        other: &UserId,
        before_seq: Option<i64>,
        limit: PageSize,
    ) -> Result<HistoryPage, MessagingError> {
        self.ensure_may_use(actor, "message.history").await?;
        let pair = pair_for(&actor.user, other)?;
        let conversation = self
            .ports
            .messages
            .conversation_between(&actor.tenant, &pair)
            .await?;
        let Some(conversation) = conversation else {
            self.ports
                .directory
                .user(&actor.tenant, other)
                .await?
                .ok_or(MessagingError::NotFound(Missing::User))?;
            return Ok(HistoryPage {
                conversation_id: None,
                messages: Vec::new(),
                next_before_seq: None,
            });
        };
        let mut messages = self
            .ports
            .messages
            .history(&actor.tenant, conversation.id, before_seq, limit)
            .await?;
        self.receive(actor, &mut messages).await;
        let next_before_seq = messages
            .last()
            .map(|m| m.seq)
            .filter(|seq| *seq > 1 && messages.len() == limit.get() as usize);
        Ok(HistoryPage {
            conversation_id: Some(conversation.id),
            messages,
            next_before_seq,
        })
    }

    /// A conversation the caller takes part in (for `conv:subscribe`); anyone else
    /// gets `NotFound`.
    pub async fn conversation(
        &self,
        actor: &Actor,
        id: ConversationId,
    ) -> Result<Conversation, MessagingError> {
        self.participant_conversation(actor, id, "conversation.read")
            .await
    }

    /// [`Self::conversation`] for a use case that needs one, `operation`
    /// naming it in the audit row of a refusal.
    pub(super) async fn participant_conversation(
        &self,
        actor: &Actor,
        id: ConversationId,
        operation: &str,
    ) -> Result<Conversation, MessagingError> {
        self.ensure_may_use(actor, operation).await?;
        let conv = self
            .ports
            .messages
            .conversation(&actor.tenant, id)
            .await?
            .ok_or(MessagingError::NotFound(Missing::Conversation))?;
        ensure_participant(&conv, &actor.user)?;
        Ok(conv)
    }

    /// Tells the conversation's subscribers that the caller started or stopped typing
    /// (`typing:start` / `typing:stop`). Nothing is stored.
    pub async fn typing(
        &self,
        actor: &Actor,
        id: ConversationId,
        started: bool,
    ) -> Result<(), MessagingError> {
        self.participant_conversation(actor, id, "typing").await?;
        self.check_rate(actor, RateAction::Presence).await?;
        let event = TypingEvent {
            conversation_id: id,
            user_id: actor.user.clone(),
        };
        let event = if started {
            RealtimeEvent::TypingStart(event)
        } else {
            RealtimeEvent::TypingStop(event)
        };
        self.publish(Audience::Conversation(actor.tenant.clone(), id), event)
            .await;
        Ok(())
    }

    /// Messages of one conversation after `after_seq`, oldest first (participants
    /// only); those to the caller are marked delivered.
    pub async fn catch_up_conversation(
        &self,
        actor: &Actor,
        conversation: ConversationId,
        after_seq: i64,
        limit: PageSize,
    ) -> Result<ConversationCatchUp, MessagingError> {
        let conv = self
            .participant_conversation(actor, conversation, "catch_up")
            .await?;
        let mut messages = self
            .ports
            .messages
            .messages_after(&actor.tenant, conversation, after_seq, limit)
            .await?;
        self.receive(actor, &mut messages).await;
        let has_more = messages.last().is_some_and(|m| m.seq < conv.last_seq);
        Ok(ConversationCatchUp {
            conversation_id: conversation,
            messages,
            has_more,
        })
    }

    /// Everything a reconnecting client missed, in one call: message changes after
    /// the cursor, the first page of conversations with unread counts, and the
    /// unread notifications (the latest 50, and their count).
    pub async fn catch_up(
        &self,
        actor: &Actor,
        since: CatchUpCursor,
        limit: PageSize,
    ) -> Result<CatchUp, MessagingError> {
        self.ensure_may_use(actor, "catch_up").await?;
        // Before the read: what was stamped 30 s before it started was stored
        // by then, however long the read itself takes.
        let read_at = self.ports.clock.now();
        let mut changes = self
            .ports
            .messages
            .changes_since(&actor.tenant, &actor.user, ChangeCursor::from(since), limit)
            .await?;
        // The cursor is taken before the page is received: marking a message
        // delivered moves its `updatedAt` to now, past the rest of the changes
        // and past changes committed since the read, which resuming from it
        // would skip.
        let last_found = changes.last().map_or(since.position(), |m| {
            CatchUpCursor::at(m.updated_at, Some(m.id))
        });
        // A change is stamped before it is stored (a send may wait in a queue or
        // for a lock), so one stamped a moment ago can still commit behind a
        // later one already listed. The resume point of a finished catch-up
        // therefore stays `CATCH_UP_SETTLE` behind the moment its first page
        // was read, which each full page passes on: the latest changes come
        // again next time (clients apply them by id) instead of never, even
        // when the client paused between pages for longer than that.
        let now_settled = read_at - CATCH_UP_SETTLE;
        let settled = since
            .settled_up_to
            .map_or(now_settled, |run| run.min(now_settled));
        let next = Some(CatchUpCursor {
            settled_up_to: Some(settled),
            ..last_found
        })
        .filter(|_| changes.len() == limit.get() as usize);
        // At the settled point itself, a change with a smaller id than the
        // last one found may still be on its way: resume inclusively there.
        let cursor = if next.is_none() && last_found.since >= settled {
            CatchUpCursor::at(settled, None)
        } else {
            last_found
        };
        self.receive(actor, &mut changes).await;
        let conversations = self
            .conversation_items(actor, None, PageSize::DEFAULT)
            .await?;
        let unread_messages = conversations.iter().map(|c| c.unread_count).sum();
        let notifications = &self.ports.notifications;
        let unread_notifications = notifications
            .unread_count(&actor.tenant, &actor.user)
            .await?;
        // The list puts unread ones first: its first page holds the latest
        // unread ones (alerts too), and the bell's count says if there are more.
        let mut bell = notifications
            .list(&actor.tenant, &actor.user, None, false, PageSize::DEFAULT)
            .await?;
        bell.retain(|n| n.status == NotificationStatus::Unread);
        Ok(CatchUp {
            changes,
            next,
            cursor,
            conversations,
            unread_messages,
            unread_notifications,
            notifications: bell,
        })
    }
}
