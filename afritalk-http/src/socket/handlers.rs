//! Client → server events. Each handler validates its payload, re-authorises
//! through the core (which checks tenant, participants and rules), and acks
//! `{ ok: true, … }` or `{ ok: false, error: { code, message } }`.

use std::future::Future;

use afritalk_auth::Operation;
use afritalk_ports::{Audience, MessageContent, MessagingError, UserId};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};

use super::Session;
use crate::app::App;
use crate::dto::{self, SendBody, SyncQuery};
use crate::error::ApiError;

/// Most users one `presence:subscribe` may name.
const MAX_PRESENCE_SUBSCRIPTIONS: usize = 200;

/// Most users one socket may watch the presence of, all calls together (each
/// is a room membership the node keeps for the socket's life).
const MAX_WATCHED_USERS: usize = 1_000;

/// Registers every client event on a freshly connected socket.
pub(crate) fn register(s: &SocketRef) {
    s.on("messaging:join", join);
    s.on("messaging:send", send);
    s.on("messaging:read", read);
    s.on("messaging:edit", edit);
    s.on("messaging:delete", delete);
    s.on("presence:ping", ping);
    s.on("presence:subscribe", presence_subscribe);
    s.on("presence:unsubscribe", presence_unsubscribe);
    s.on("conv:subscribe", conv_subscribe);
    s.on("conv:unsubscribe", conv_unsubscribe);
    s.on("typing:start", typing_start);
    s.on("typing:stop", typing_stop);
    // Through the token check too, so that a socket whose token expired is
    // closed whatever it emits.
    s.on_fallback(async |s: SocketRef, Event(name): Event, ack: AckSender| {
        let unknown = async |_: Session, _: Value| Err(ApiError::UnknownEvent(name));
        handle(s, Ok::<_, ()>(Value::Null), ack, unknown).await;
    });
}

/// The ack envelope of a result.
pub(crate) fn envelope(result: Result<Value, ApiError>) -> Value {
    match result {
        Ok(Value::Object(mut map)) => {
            map.insert("ok".into(), Value::Bool(true));
            Value::Object(map)
        }
        Ok(other) => json!({ "ok": true, "data": other }),
        Err(err) => {
            let reply = err.reply();
            json!({ "ok": false, "error": reply.body()["error"] })
        }
    }
}

fn answer(ack: AckSender, result: Result<Value, ApiError>) {
    // A client that asked for no ack gets none; a gone socket needs none.
    if let Err(err) = ack.send(&envelope(result)) {
        tracing::debug!(%err, "ack not sent");
    }
}

fn to_value(value: impl serde::Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Runs `f` with the socket's session and the parsed payload, then acks; for
/// an event that only reads (see [`handle_write`]).
async fn handle<T, F, Fut>(s: SocketRef, data: Result<Value, impl Sized>, ack: AckSender, f: F)
where
    T: DeserializeOwned,
    F: FnOnce(Session, T) -> Fut,
    Fut: Future<Output = Result<Value, ApiError>>,
{
    handle_as(Operation::Read, s, data, ack, f).await;
}

/// Authorizes the socket's token again for `operation`, runs `f` with the
/// session and the parsed payload, then acks. A token that no longer reads
/// (expired, or attenuated) closes the socket after the error ack: the client
/// must reconnect with a fresh token. A token that may not do this operation
/// but still reads (read-only, or writes that ended first) keeps its socket.
/// A user found deactivated loses theirs after the ack too.
async fn handle_as<T, F, Fut>(
    operation: Operation,
    s: SocketRef,
    data: Result<Value, impl Sized>,
    ack: AckSender,
    f: F,
) where
    T: DeserializeOwned,
    F: FnOnce(Session, T) -> Fut,
    Fut: Future<Output = Result<Value, ApiError>>,
{
    let mut close_socket = false;
    let result = async {
        let session = s
            .extensions
            .get::<Session>()
            .ok_or(ApiError::MissingToken)?;
        // Shutdown waits for the events in flight and takes no new ones.
        if session.events.is_closed() {
            return Err(MessagingError::Unavailable("the server is shutting down".into()).into());
        }
        let _in_flight = session.events.token();
        // Signatures were checked at connect; the token is authorized again
        // (a decision kept while the token's dates cannot change it).
        if let Err(err) = session.token.permits(&session.actor.tenant, operation) {
            // Closed only when the token no longer reads: an attenuation can
            // end writes (by time, too, which reads as expired) before reads,
            // and a socket that still reads is of use.
            close_socket = operation == Operation::Read
                || session
                    .token
                    .permits(&session.actor.tenant, Operation::Read)
                    .is_err();
            return Err(err.into());
        }
        let payload = dto::parse_value::<T>(data.unwrap_or(Value::Null))?;
        f(session, payload).await
    }
    .await;
    // A user deactivated since they connected: nothing they try will succeed,
    // so the socket goes now rather than at the next token sweep.
    if matches!(&result, Err(ApiError::Messaging(err)) if err.is_account_deactivated()) {
        close_socket = true;
    }
    answer(ack, result);
    if close_socket {
        super::close(s);
    } else {
        leave_rooms_if_gone(&s);
    }
}

/// Rooms joined after a wait (a store read) by a socket that closed during
/// it would stay behind its cleanup for good: the disconnect marks the socket
/// closed before it leaves its rooms, so checking afterwards finds every such
/// late join.
pub(super) fn leave_rooms_if_gone(s: &SocketRef) {
    if !s.connected() {
        s.leave_all();
    }
}

/// [`handle`] for an event that changes something: the token is authorized
/// for writing on every such event, since an attenuation can allow writes for
/// less time than reads.
async fn handle_write<T, F, Fut>(
    s: SocketRef,
    data: Result<Value, impl Sized>,
    ack: AckSender,
    f: F,
) where
    T: DeserializeOwned,
    F: FnOnce(Session, T) -> Fut,
    Fut: Future<Output = Result<Value, ApiError>>,
{
    handle_as(Operation::Write, s, data, ack, f).await;
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JoinPayload {
    conversation_id: Option<String>,
    after_seq: Option<i64>,
    since: Option<chrono::DateTime<chrono::Utc>>,
    after_id: Option<String>,
    settled_up_to: Option<chrono::DateTime<chrono::Utc>>,
    limit: Option<u32>,
    /// Seed 000's `messaging:join { userId }`: the caller's own id (their
    /// room was joined at connect), so the call is a catch-up (form B).
    user_id: Option<String>,
}

/// `messaging:join`: with `conversationId`, subscribe to it and get what came after
/// `afterSeq`; without, the one-call catch-up (changes since `since`, from the
/// beginning when absent as for REST sync; conversations, unread counts). Messages
/// to the caller in the answer are marked delivered.
async fn join(s: SocketRef, State(app): State<App>, TryData(data): TryData<Value>, ack: AckSender) {
    let socket = s.clone();
    handle(s, data, ack, async |session, p: JoinPayload| {
        let service = &app.inner.service;
        let limit = dto::page(p.limit)?;
        if let Some(id) = &p.user_id {
            if id != session.actor.user.as_str() {
                return Err(ApiError::BadRequest(
                    "userId: must be your own user id (the socket joined your room at connect)"
                        .into(),
                ));
            }
            // Seed 000's join alone: the room is joined already, nothing to do
            // (a catch-up is asked with `since`, or with nothing at all, §6).
            if p.conversation_id.is_none() && p.since.is_none() && p.after_id.is_none() {
                return Ok(json!({}));
            }
        }
        if let Some(id) = p.conversation_id {
            let id = dto::parse_conversation_id(&id)?;
            let caught_up = service
                .catch_up_conversation(&session.actor, id, p.after_seq.unwrap_or(0), limit)
                .await?;
            socket.join(Audience::Conversation(session.actor.tenant.clone(), id).room());
            return to_value(caught_up);
        }
        let query = SyncQuery {
            since: p.since,
            after_id: p.after_id,
            settled_up_to: p.settled_up_to,
            limit: None,
        };
        to_value(
            service
                .catch_up(&session.actor, query.cursor()?, limit)
                .await?,
        )
    })
    .await;
}

/// `messaging:send`: acked only after the store committed (the core returns then).
async fn send(s: SocketRef, State(app): State<App>, TryData(data): TryData<Value>, ack: AckSender) {
    handle_write(s, data, ack, async |session, body: SendBody| {
        let sent = app
            .inner
            .service
            .send(&session.actor, body.into_domain()?)
            .await?;
        if !sent.duplicate {
            app.inner.metrics.message_sent();
        }
        to_value(sent)
    })
    .await;
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReadPayload {
    message_id: Option<String>,
    conversation_id: Option<String>,
    up_to_seq: Option<i64>,
}

/// `messaging:read`: one message, or a conversation up to a `seq`.
async fn read(s: SocketRef, State(app): State<App>, TryData(data): TryData<Value>, ack: AckSender) {
    handle_write(s, data, ack, async |session, p: ReadPayload| {
        let service = &app.inner.service;
        match (p.message_id, p.conversation_id) {
            (Some(id), None) => {
                let message = service
                    .mark_read(&session.actor, dto::parse_message_id(&id)?)
                    .await?;
                Ok(json!({ "message": message }))
            }
            (None, Some(id)) => {
                let id = dto::parse_conversation_id(&id)?;
                let read = service
                    .mark_conversation_read(&session.actor, id, p.up_to_seq)
                    .await?;
                Ok(json!({ "conversationId": id, "messages": read }))
            }
            _ => Err(ApiError::BadRequest(
                "give either messageId or conversationId".into(),
            )),
        }
    })
    .await;
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EditPayload {
    message_id: String,
    content: String,
}

/// `messaging:edit`.
async fn edit(s: SocketRef, State(app): State<App>, TryData(data): TryData<Value>, ack: AckSender) {
    handle_write(s, data, ack, async |session, p: EditPayload| {
        let id = dto::parse_message_id(&p.message_id)?;
        let content = MessageContent::parse(p.content).map_err(dto::invalid)?;
        let message = app.inner.service.edit(&session.actor, id, content).await?;
        Ok(json!({ "message": message }))
    })
    .await;
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MessageRef {
    message_id: String,
}

/// `messaging:delete`.
async fn delete(
    s: SocketRef,
    State(app): State<App>,
    TryData(data): TryData<Value>,
    ack: AckSender,
) {
    handle_write(s, data, ack, async |session, p: MessageRef| {
        let id = dto::parse_message_id(&p.message_id)?;
        let message = app.inner.service.delete(&session.actor, id).await?;
        Ok(json!({ "message": message }))
    })
    .await;
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `presence:ping {}`.
async fn ping(s: SocketRef, State(app): State<App>, TryData(data): TryData<Value>, ack: AckSender) {
    handle(s, data, ack, async |session, _: Empty| {
        let presence = app.inner.service.ping(&session.actor).await?;
        Ok(json!({ "presence": presence }))
    })
    .await;
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UsersPayload {
    user_ids: Vec<String>,
}

impl UsersPayload {
    fn users(self) -> Result<Vec<UserId>, ApiError> {
        if self.user_ids.len() > MAX_PRESENCE_SUBSCRIPTIONS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_PRESENCE_SUBSCRIPTIONS} userIds per call"
            )));
        }
        self.user_ids
            .into_iter()
            .map(|u| dto::parse_user("userIds", u))
            .collect()
    }
}

/// `presence:subscribe { userIds }`: watch these users' presence (rooms of the
/// caller's own tenant only) and get their current status.
async fn presence_subscribe(
    s: SocketRef,
    State(app): State<App>,
    TryData(data): TryData<Value>,
    ack: AckSender,
) {
    let socket = s.clone();
    handle(s, data, ack, async |session, p: UsersPayload| {
        let users = p.users()?;
        let mut rooms: Vec<String> = users
            .iter()
            .map(|u| Audience::PresenceWatchers(session.actor.tenant.clone(), u.clone()).room())
            .collect();
        rooms.sort_unstable();
        rooms.dedup();
        // Checked and joined with no await in between: each event runs in a
        // task of its own, and pipelined calls that all checked before any
        // joined would pass the cap together.
        let joined = socket.rooms();
        let watched = joined
            .iter()
            .filter(|r| Audience::is_presence_watchers_room(r))
            .count();
        let added: Vec<String> = rooms
            .into_iter()
            .filter(|r| !joined.iter().any(|j| j.as_ref() == r.as_str()))
            .collect();
        if watched + added.len() > MAX_WATCHED_USERS {
            return Err(ApiError::BadRequest(format!(
                "a socket watches at most {MAX_WATCHED_USERS} users' presence \
                 ({watched} now); unsubscribe some first"
            )));
        }
        socket.join(added.clone());
        let service = &app.inner.service;
        let presence = match service.presence_of_users(&session.actor, &users).await {
            Ok(presence) => presence,
            Err(err) => {
                // Refused: no new subscription stays behind.
                socket.leave(added);
                return Err(err.into());
            }
        };
        Ok(json!({ "presence": presence }))
    })
    .await;
}

/// `presence:unsubscribe { userIds }`.
async fn presence_unsubscribe(s: SocketRef, TryData(data): TryData<Value>, ack: AckSender) {
    let socket = s.clone();
    handle(s, data, ack, async |session, p: UsersPayload| {
        for user in p.users()? {
            socket.leave(Audience::PresenceWatchers(session.actor.tenant.clone(), user).room());
        }
        Ok(json!({}))
    })
    .await;
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConversationRef {
    conversation_id: String,
}

/// The payload of an event naming one conversation: `{ conversationId }`,
/// or the bare id as seed 004's clients send it (`emit('conv:subscribe',
/// convId)`), read as the object.
fn conversation_ref<E>(data: Result<Value, E>) -> Result<Value, E> {
    data.map(|value| match value {
        Value::String(id) => json!({ "conversationId": id }),
        other => other,
    })
}

/// `conv:subscribe { conversationId }`: participants only (the core checks).
async fn conv_subscribe(
    s: SocketRef,
    State(app): State<App>,
    TryData(data): TryData<Value>,
    ack: AckSender,
) {
    let socket = s.clone();
    handle(
        s,
        conversation_ref(data),
        ack,
        async |session, p: ConversationRef| {
            let id = dto::parse_conversation_id(&p.conversation_id)?;
            let conversation = app.inner.service.conversation(&session.actor, id).await?;
            socket.join(Audience::Conversation(session.actor.tenant.clone(), id).room());
            Ok(json!({ "conversation": conversation }))
        },
    )
    .await;
}

/// `conv:unsubscribe { conversationId }`.
async fn conv_unsubscribe(s: SocketRef, TryData(data): TryData<Value>, ack: AckSender) {
    let socket = s.clone();
    handle(
        s,
        conversation_ref(data),
        ack,
        async |session, p: ConversationRef| {
            let id = dto::parse_conversation_id(&p.conversation_id)?;
            socket.leave(Audience::Conversation(session.actor.tenant.clone(), id).room());
            Ok(json!({}))
        },
    )
    .await;
}

async fn typing(
    app: &App,
    session: &Session,
    p: ConversationRef,
    started: bool,
) -> Result<Value, ApiError> {
    let id = dto::parse_conversation_id(&p.conversation_id)?;
    app.inner
        .service
        .typing(&session.actor, id, started)
        .await?;
    Ok(json!({}))
}

/// `typing:start { conversationId }`.
async fn typing_start(
    s: SocketRef,
    State(app): State<App>,
    TryData(data): TryData<Value>,
    ack: AckSender,
) {
    handle(
        s,
        conversation_ref(data),
        ack,
        async |session, p: ConversationRef| typing(&app, &session, p, true).await,
    )
    .await;
}

/// `typing:stop { conversationId }`.
async fn typing_stop(
    s: SocketRef,
    State(app): State<App>,
    TryData(data): TryData<Value>,
    ack: AckSender,
) {
    handle(
        s,
        conversation_ref(data),
        ack,
        async |session, p: ConversationRef| typing(&app, &session, p, false).await,
    )
    .await;
}
