//! What the use cases return: plain data shaped for clients (camelCase JSON).

use afritalk_ports::{
    ChangeCursor, Conversation, ConversationId, DirectoryCursor, DirectoryUser, Message, MessageId,
    Notification, PresenceStatus, Role, UserId,
};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A send request, already made of validated values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMessage {
    /// The recipient.
    pub to: UserId,
    /// The text.
    pub content: afritalk_ports::MessageContent,
    /// The business object referenced, if any.
    pub related: Option<afritalk_ports::RelatedEntity>,
    /// The client's idempotency key, if any.
    pub client_message_id: Option<afritalk_ports::ClientMessageId>,
}

/// The answer to a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SentMessage {
    /// The conversation the message is in.
    pub conversation_id: ConversationId,
    /// The stored message.
    pub message: Message,
    /// True when this was a retry answered with the original message.
    pub duplicate: bool,
}

/// The other participant of a conversation, as the caller sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    /// Their id.
    pub user_id: UserId,
    /// Their name, when the directory knows them.
    pub display_name: Option<String>,
    /// Their role, when the directory knows them.
    pub role: Option<Role>,
    /// Whether they are active (false when unknown to the directory).
    pub active: bool,
}

impl Participant {
    /// The participant view of `user_id`, enriched from the directory entry if any.
    pub fn new(user_id: UserId, entry: Option<&DirectoryUser>) -> Self {
        Self {
            user_id,
            display_name: entry.map(|e| e.display_name.as_str().to_owned()),
            role: entry.map(|e| e.role),
            active: entry.is_some_and(|e| e.active),
        }
    }
}

/// A colleague as the caller's directory search shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryEntry {
    /// Their id.
    pub user_id: UserId,
    /// Their name.
    pub display_name: String,
    /// Their role.
    pub role: Role,
    /// Whether they are active.
    pub active: bool,
    /// Whether the permission matrix lets the caller open a conversation with
    /// them (always false for services and inactive people). A conversation
    /// they opened can be answered either way (the reply rule).
    pub can_start_conversation: bool,
    /// Online, idle or offline now (offline when never seen); `None` when
    /// unknown (the tenant's messaging is off, or presence is unreachable).
    pub status: Option<PresenceStatus>,
    /// Their last activity (`None`: never seen).
    pub last_seen: Option<DateTime<Utc>>,
}

/// One page of a directory search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryPage {
    /// The people, by name (accents and case ignored), then id.
    pub users: Vec<DirectoryEntry>,
    /// Where the next page starts (`None`: this is the last page).
    pub next_cursor: Option<DirectoryCursor>,
}

/// One row of the caller's conversation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationListItem {
    /// The conversation.
    pub conversation: Conversation,
    /// The other participant.
    pub participant: Participant,
    /// Its latest message.
    pub last_message: Option<Message>,
    /// Messages addressed to the caller that are still unread.
    pub unread_count: u64,
}

/// One page of the caller's conversation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationPage {
    /// The rows, latest message first.
    pub conversations: Vec<ConversationListItem>,
    /// Cursor for the next page (`None`: this is the last page).
    pub next_cursor: Option<ConversationPageCursor>,
}

/// Where the next conversation page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationPageCursor {
    /// `lastMessageAt` of the last row.
    pub last_message_at: DateTime<Utc>,
    /// Id of the last row.
    pub id: ConversationId,
}

/// One page of history with a user, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    /// The conversation, if the two users ever exchanged a message.
    pub conversation_id: Option<ConversationId>,
    /// The messages, newest first.
    pub messages: Vec<Message>,
    /// Pass as `before` to get the next (older) page; `None` at the beginning.
    pub next_before_seq: Option<i64>,
}

/// Messages of one conversation after a `seq`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationCatchUp {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The messages after the given `seq`, oldest first.
    pub messages: Vec<Message>,
    /// Whether more messages follow (call again after the last `seq`).
    pub has_more: bool,
}

/// Everything a reconnecting client needs, in one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatchUp {
    /// Messages of the caller's conversations created or changed after the cursor,
    /// oldest change first (new messages, receipts, edits, deletions).
    pub changes: Vec<Message>,
    /// Pass back whole to continue when `changes` filled a page (it carries
    /// the run's settled point); `None` when up to date.
    pub next: Option<CatchUpCursor>,
    /// Where the next catch-up resumes, whether or not the page was full: the
    /// last change as the store found it, or the given cursor when there was
    /// none, but on a page that is not full never later than the run's
    /// settled point: 30 s before the first page was read (a change stamped
    /// just before one already listed may still be on its way to the store).
    /// Clients keep this one rather than one of their own, because a change
    /// this call marked delivered carries a later `updatedAt` than its place
    /// in the stream. It never carries a settled point.
    pub cursor: CatchUpCursor,
    /// The first page of conversations with their unread counts.
    pub conversations: Vec<ConversationListItem>,
    /// Unread messages over the conversations listed.
    pub unread_messages: u64,
    /// Unread notifications.
    pub unread_notifications: u64,
    /// The latest unread notifications (messages, alerts, system), newest
    /// first, at most 50: more when `unread_notifications` says so, through
    /// the notification list.
    pub notifications: Vec<Notification>,
}

/// Position in the change stream, as clients send it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatchUpCursor {
    /// `updatedAt` of the last change seen.
    pub since: DateTime<Utc>,
    /// Id of the last message seen at that instant.
    pub after_id: Option<MessageId>,
    /// Only while paging (on `next`): the point up to which every change was
    /// stored when the run's first page was read. The run's final cursor
    /// never passes it, however long the client took between pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settled_up_to: Option<DateTime<Utc>>,
}

impl CatchUpCursor {
    /// A position to resume from, outside any run of pages.
    pub fn at(since: DateTime<Utc>, after_id: Option<MessageId>) -> Self {
        Self {
            since,
            after_id,
            settled_up_to: None,
        }
    }

    /// The same position, with no run attached.
    pub(crate) fn position(self) -> Self {
        Self::at(self.since, self.after_id)
    }
}

impl From<CatchUpCursor> for ChangeCursor {
    fn from(c: CatchUpCursor) -> Self {
        ChangeCursor {
            updated_at: c.since,
            id: c.after_id,
        }
    }
}

/// What a presence sweep did, for the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceSweep {
    /// The end of the window swept: the next sweep's `since`.
    pub swept_to: DateTime<Utc>,
    /// The users who may still change with time (not offline), to keep sweeping.
    pub still_changing: Vec<UserId>,
}
