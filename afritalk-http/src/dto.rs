//! The wire shapes of requests (REST bodies, query strings, socket payloads) and
//! their conversion to the core's validated values at the edge. Unknown fields in
//! bodies are refused, so a typo is an error rather than silently ignored.

use afritalk_core::DirectorySearch;
use afritalk_core::views::{CatchUpCursor, ConversationPageCursor, SendMessage};
use afritalk_ports::{
    AuditAction, AuditCursor, AuditFilter, AuditId, ClientMessageId, ConversationCursor,
    ConversationId, DirectoryCursor, DisplayName, MessageContent, MessageId, NameKey,
    NotificationCursor, NotificationId, NotificationKind, NotificationStatus, PageSize,
    RelatedEntity, Role, SearchText, UserId, ValidationError,
};
use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Parses a JSON object body into `T`; any failure is a 400.
///
/// serde fills a struct from an array by position (`["u2", "hi"]` would send
/// "hi" to u2), so anything but an object is refused before it is read.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let starts_as_object = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{');
    if !starts_as_object {
        return Err(ApiError::BadRequest(
            "invalid JSON body: expected a JSON object".into(),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Parses a socket payload into `T`; a missing payload reads as `{}`, and
/// anything else but an object (an array above all, which serde would read
/// by position) is refused.
pub(crate) fn parse_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    let value = match value {
        serde_json::Value::Null => serde_json::json!({}),
        object @ serde_json::Value::Object(_) => object,
        _ => {
            return Err(ApiError::BadRequest(
                "invalid payload: expected an object".into(),
            ));
        }
    };
    serde_json::from_value(value).map_err(|e| ApiError::BadRequest(format!("invalid payload: {e}")))
}

/// Parses a query string into `T`; any failure is a 400.
pub(crate) fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))
}

/// A page size from an optional `limit`.
pub(crate) fn page(limit: Option<u32>) -> Result<PageSize, ApiError> {
    Ok(limit
        .map(PageSize::new)
        .transpose()
        .map_err(invalid)?
        .unwrap_or_default())
}

/// A validation error as an API error.
pub(crate) fn invalid(err: ValidationError) -> ApiError {
    ApiError::Messaging(err.into())
}

/// `related: { type, id }`, the socket form of the entity reference.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RelatedRef {
    #[serde(rename = "type")]
    entity_type: String,
    id: String,
}

/// `POST messaging/message` and `messaging:send`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SendBody {
    to_user_id: String,
    content: String,
    /// An object only (a `Map`): serde would read `["order", "17"]` as a
    /// `RelatedRef` by position.
    related: Option<serde_json::Map<String, serde_json::Value>>,
    related_entity_type: Option<String>,
    related_entity_id: Option<String>,
    client_message_id: Option<String>,
}

impl SendBody {
    /// The validated send request.
    pub(crate) fn into_domain(self) -> Result<SendMessage, ApiError> {
        let related = match (
            self.related,
            self.related_entity_type,
            self.related_entity_id,
        ) {
            (Some(r), None, None) => {
                let r: RelatedRef = serde_json::from_value(serde_json::Value::Object(r))
                    .map_err(|e| ApiError::BadRequest(format!("related: {e}")))?;
                Some(RelatedEntity::new(r.entity_type, r.id).map_err(invalid)?)
            }
            (Some(_), _, _) => {
                return Err(ApiError::BadRequest(
                    "give either related or relatedEntityType/relatedEntityId, not both".into(),
                ));
            }
            (None, t, i) => RelatedEntity::from_parts(t, i).map_err(invalid)?,
        };
        Ok(SendMessage {
            to: UserId::parse(self.to_user_id)
                .map_err(|_| field("toUserId", "must be a user id"))?,
            content: MessageContent::parse(self.content).map_err(invalid)?,
            related,
            client_message_id: self
                .client_message_id
                .map(ClientMessageId::parse)
                .transpose()
                .map_err(invalid)?,
        })
    }
}

fn field(name: &'static str, reason: &'static str) -> ApiError {
    invalid(ValidationError::new(name, reason))
}

/// `PATCH messaging/:messageId` and `messaging:edit`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct EditBody {
    pub(crate) content: String,
}

/// `PUT messaging/conversations/:id/read` (body optional).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ReadUpToBody {
    pub(crate) up_to_seq: Option<i64>,
}

/// `POST notifications`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AlertBody {
    pub(crate) user_id: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) title: String,
    pub(crate) message: String,
    pub(crate) related_entity_type: Option<String>,
    pub(crate) related_entity_id: Option<String>,
}

impl AlertBody {
    /// The validated alert.
    pub(crate) fn into_domain(self) -> Result<afritalk_core::NewAlert, ApiError> {
        let recipient = parse_user("userId", self.user_id)?;
        let kind = NotificationKind::parse(&self.kind).map_err(invalid)?;
        let related = RelatedEntity::from_parts(self.related_entity_type, self.related_entity_id)
            .map_err(invalid)?;
        afritalk_core::NewAlert::new(recipient, kind, &self.title, &self.message, related)
            .map_err(invalid)
    }
}

/// `PUT directory/users/:userId`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DirectoryBody {
    pub(crate) display_name: String,
    pub(crate) role: String,
    pub(crate) active: Option<bool>,
}

impl DirectoryBody {
    /// Name, role and active flag (active by default).
    pub(crate) fn into_domain(self) -> Result<(DisplayName, Role, bool), ApiError> {
        Ok((
            DisplayName::parse(self.display_name).map_err(invalid)?,
            Role::parse(&self.role).map_err(invalid)?,
            self.active.unwrap_or(true),
        ))
    }
}

/// `PUT settings/messaging`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SettingsBody {
    pub(crate) enabled: bool,
}

/// `?after=&limit=` of the conversation list.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    pub(crate) after: Option<String>,
    pub(crate) limit: Option<u32>,
}

/// `?before=&limit=` of a history.
#[derive(Debug, Deserialize)]
pub(crate) struct HistoryQuery {
    pub(crate) before: Option<i64>,
    pub(crate) limit: Option<u32>,
}

/// `?after=&limit=` of a conversation catch-up.
#[derive(Debug, Deserialize)]
pub(crate) struct AfterSeqQuery {
    pub(crate) after: Option<i64>,
    pub(crate) limit: Option<u32>,
}

/// `?since=&afterId=&settledUpTo=&limit=` of the one-call sync (also the
/// `messaging:join` payload).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SyncQuery {
    pub(crate) since: Option<DateTime<Utc>>,
    pub(crate) after_id: Option<String>,
    pub(crate) settled_up_to: Option<DateTime<Utc>>,
    pub(crate) limit: Option<u32>,
}

impl SyncQuery {
    /// The cursor; without `since`, everything from the beginning.
    pub(crate) fn cursor(&self) -> Result<CatchUpCursor, ApiError> {
        Ok(CatchUpCursor {
            since: checked_time("since", self.since)?.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            settled_up_to: checked_time("settledUpTo", self.settled_up_to)?,
            after_id: self
                .after_id
                .as_deref()
                .map(MessageId::parse)
                .transpose()
                .map_err(|err| {
                    invalid(ValidationError {
                        field: "afterId",
                        ..err
                    })
                })?,
        })
    }
}

/// `?after=&includeArchived=&limit=` of the notification list.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NotificationQuery {
    pub(crate) after: Option<String>,
    pub(crate) include_archived: Option<bool>,
    pub(crate) limit: Option<u32>,
}

/// `?q=&after=&includeInactive=&limit=` of the directory search.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DirectoryListQuery {
    q: Option<String>,
    after: Option<String>,
    include_inactive: Option<bool>,
    limit: Option<u32>,
}

impl DirectoryListQuery {
    /// The search; a blank `q` (a cleared search box) lists everyone.
    pub(crate) fn into_domain(self) -> Result<DirectorySearch, ApiError> {
        let text = self
            .q
            .filter(|q| !q.trim().is_empty())
            .map(|q| SearchText::parse(&q))
            .transpose()
            .map_err(invalid)?;
        Ok(DirectorySearch {
            text,
            after: self
                .after
                .as_deref()
                .map(decode_directory_cursor)
                .transpose()?,
            include_inactive: self.include_inactive.unwrap_or(false),
            limit: page(self.limit)?,
        })
    }
}

/// `?action=&userId=&since=&before=&limit=` of the audit query.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditQuery {
    action: Option<String>,
    user_id: Option<String>,
    since: Option<DateTime<Utc>>,
    before: Option<String>,
    pub(crate) limit: Option<u32>,
}

impl AuditQuery {
    /// The core's filter.
    pub(crate) fn filter(&self) -> Result<AuditFilter, ApiError> {
        Ok(AuditFilter {
            action: self
                .action
                .as_deref()
                .map(AuditAction::parse)
                .transpose()
                .map_err(invalid)?,
            user_id: self
                .user_id
                .clone()
                .map(|u| parse_user("userId", u))
                .transpose()?,
            since: checked_time("since", self.since)?,
            before: self
                .before
                .as_deref()
                .map(decode_audit_cursor)
                .transpose()?,
        })
    }
}

/// A user id from a path or body field, with the field named in the error.
pub(crate) fn parse_user(name: &'static str, raw: String) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|e| invalid(ValidationError::new(name, e.reason)))
}

/// A message id from a path or payload.
pub(crate) fn parse_message_id(raw: &str) -> Result<MessageId, ApiError> {
    MessageId::parse(raw).map_err(invalid)
}

/// A conversation id from a path or payload.
pub(crate) fn parse_conversation_id(raw: &str) -> Result<ConversationId, ApiError> {
    ConversationId::parse(raw).map_err(invalid)
}

/// A notification id from a path.
pub(crate) fn parse_notification_id(raw: &str) -> Result<NotificationId, ApiError> {
    NotificationId::parse(raw).map_err(invalid)
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(raw: &str) -> Option<DateTime<Utc>> {
    raw.parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .filter(|at| storable(*at))
}

/// Whether every store compares `at` in time order: SQLite keeps times as
/// text, where a year past 9999 (`+10000-…`) or before 1 sorts out of order,
/// so a time out there would silently select the wrong rows.
fn storable(at: DateTime<Utc>) -> bool {
    (1..=9999).contains(&at.year())
}

/// `since` when given, checked to be a time the stores compare in order.
fn checked_time(
    name: &'static str,
    at: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    match at {
        Some(at) if !storable(at) => Err(field(name, "must be a time in the years 1 to 9999")),
        other => Ok(other),
    }
}

fn bad_cursor() -> ApiError {
    field("after", "is not a cursor this server gave")
}

/// The opaque `before` cursor of audit pages: `{micros}_{uuid}` of the last row.
pub(crate) fn encode_audit_cursor(e: &afritalk_ports::AuditEntry) -> String {
    format!("{}_{}", micros(e.created_at), e.id)
}

/// Reads an audit page cursor.
fn decode_audit_cursor(raw: &str) -> Result<AuditCursor, ApiError> {
    let bad = || field("before", "is not a cursor this server gave");
    let (at, id) = raw.split_once('_').ok_or_else(bad)?;
    Ok(AuditCursor {
        created_at: from_micros(at).ok_or_else(bad)?,
        id: AuditId::parse(id).map_err(|_| bad())?,
    })
}

/// The opaque `after` cursor of conversation pages: `{micros}_{uuid}`.
pub(crate) fn encode_conversation_cursor(c: &ConversationPageCursor) -> String {
    format!("{}_{}", micros(c.last_message_at), c.id)
}

/// Reads a conversation page cursor.
pub(crate) fn decode_conversation_cursor(raw: &str) -> Result<ConversationCursor, ApiError> {
    let (at, id) = raw.split_once('_').ok_or_else(bad_cursor)?;
    Ok(ConversationCursor {
        last_message_at: from_micros(at).ok_or_else(bad_cursor)?,
        id: ConversationId::parse(id).map_err(|_| bad_cursor())?,
    })
}

/// The opaque `after` cursor of directory pages: the folded name in hex (any
/// text, kept out of the way of the separator), `_`, the user id.
pub(crate) fn encode_directory_cursor(c: &DirectoryCursor) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(c.key.as_str().len() * 2 + 1 + c.user_id.as_str().len());
    for byte in c.key.as_str().bytes() {
        let _ = write!(out, "{byte:02x}");
    }
    out.push('_');
    out.push_str(c.user_id.as_str());
    out
}

/// Reads a directory page cursor.
fn decode_directory_cursor(raw: &str) -> Result<DirectoryCursor, ApiError> {
    let (hex, user) = raw.split_once('_').ok_or_else(bad_cursor)?;
    if hex.len() % 2 != 0 {
        return Err(bad_cursor());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad_cursor)?;
    let key = String::from_utf8(bytes).map_err(|_| bad_cursor())?;
    Ok(DirectoryCursor {
        key: NameKey::from_cursor(key),
        user_id: UserId::parse(user).map_err(|_| bad_cursor())?,
    })
}

/// The opaque `after` cursor of notification pages: `{status}_{micros}_{uuid}`.
pub(crate) fn encode_notification_cursor(n: &afritalk_ports::Notification) -> String {
    format!("{}_{}_{}", n.status.as_str(), micros(n.created_at), n.id)
}

/// Reads a notification page cursor.
pub(crate) fn decode_notification_cursor(raw: &str) -> Result<NotificationCursor, ApiError> {
    let mut parts = raw.splitn(3, '_');
    let (Some(status), Some(at), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad_cursor());
    };
    Ok(NotificationCursor {
        status: NotificationStatus::parse(status).map_err(|_| bad_cursor())?,
        created_at: from_micros(at).ok_or_else(bad_cursor)?,
        id: NotificationId::parse(id).map_err(|_| bad_cursor())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_past_year_9999_are_refused_not_misordered() {
        let id = "0190c1d2-0000-7000-8000-000000000001";
        // 9999-12-31 is the last day kept in order; 10000-01-01 is refused.
        assert!(decode_conversation_cursor(&format!("253402300799000000_{id}")).is_ok());
        assert!(decode_conversation_cursor(&format!("253402300800000000_{id}")).is_err());
        assert!(decode_notification_cursor(&format!("unread_253402300800000000_{id}")).is_err());
        assert!(decode_audit_cursor(&format!("-62135596800000001_{id}")).is_err());
        let q: AuditQuery = parse_query("since=%2B10000-01-01T00:00:00Z").unwrap();
        assert!(q.filter().is_err());
        let q: SyncQuery = parse_query("since=2999-01-01T00:00:00Z").unwrap();
        assert!(q.cursor().is_ok());
        let q: SyncQuery = parse_query("settledUpTo=%2B10000-01-01T00:00:00Z").unwrap();
        let err = q.cursor().unwrap_err();
        assert!(err.reply().message.starts_with("settledUpTo"), "{err}");
    }

    #[test]
    fn send_bodies_accept_both_related_forms_and_refuse_unknown_fields() {
        let flat: SendBody = parse_json(
            br#"{"toUserId":"u2","content":" hi ","relatedEntityType":"order","relatedEntityId":"O1"}"#,
        )
        .unwrap();
        let flat = flat.into_domain().unwrap();
        assert_eq!(flat.content.as_str(), "hi");
        let nested: SendBody =
            parse_json(br#"{"toUserId":"u2","content":"hi","related":{"type":"order","id":"O1"}}"#)
                .unwrap();
        assert_eq!(nested.into_domain().unwrap().related, flat.related);
        let plain: SendBody = parse_json(br#"{"toUserId":"u2","content":"hi"}"#).unwrap();
        assert!(plain.related.is_none());
        assert!(
            parse_json::<SendBody>(br#"{"toUserId":"u2","content":"hi","related":["order","O1"]}"#)
                .is_err()
        );
        let extra: SendBody = parse_json(
            br#"{"toUserId":"u2","content":"hi","related":{"type":"order","id":"O1","x":1}}"#,
        )
        .unwrap();
        assert!(extra.into_domain().is_err());
        assert!(parse_json::<SendBody>(br#"{"toUserId":"u2","content":"hi","extra":1}"#).is_err());
        assert!(parse_json::<SendBody>(br#"{"toUserId":"u2","content":5}"#).is_err());
        assert!(parse_json::<SendBody>(b"{not json").is_err());
        // Positional forms are refused, though serde would fill the struct from them.
        assert!(parse_json::<SendBody>(br#" ["u2","hi"]"#).is_err());
        assert!(parse_value::<SendBody>(serde_json::json!(["u2", "hi"])).is_err());
        assert!(parse_value::<SendBody>(serde_json::json!("hi")).is_err());
        let sent: SendBody =
            parse_value(serde_json::json!({"toUserId":"u2","content":"hi"})).unwrap();
        assert_eq!(sent.content, "hi");
    }

    #[test]
    fn a_bad_sync_after_id_names_its_own_field() {
        let query = SyncQuery {
            after_id: Some("nope".into()),
            ..SyncQuery::default()
        };
        let err = query.cursor().unwrap_err();
        assert!(err.reply().message.starts_with("afterId"), "{err}");
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = ConversationPageCursor {
            last_message_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: ConversationId::from_uuid(uuid::Uuid::nil()),
        };
        let back = decode_conversation_cursor(&encode_conversation_cursor(&c)).unwrap();
        assert_eq!((back.last_message_at, back.id), (c.last_message_at, c.id));
        assert!(decode_conversation_cursor("nope").is_err());
        let d = DirectoryCursor {
            key: NameKey::from_cursor("élodie_k 😀".into()),
            user_id: UserId::parse("u_1").unwrap(),
        };
        assert_eq!(
            decode_directory_cursor(&encode_directory_cursor(&d)).unwrap(),
            d
        );
        for bad in ["", "_", "6_u", "zz_u", "ff_u", "61", "61_"] {
            assert!(decode_directory_cursor(bad).is_err(), "{bad}");
        }
        assert!(decode_notification_cursor("read_x_y").is_err());
    }
}
