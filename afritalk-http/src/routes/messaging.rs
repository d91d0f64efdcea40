//! Messages and conversations: list, history, send, read, edit, delete, catch-up.

use afritalk_auth::Operation;
use http::StatusCode;
use serde_json::json;

use super::caller;
use crate::app::App;
use crate::auth;
use crate::dto::{self, EditBody, HistoryQuery, ListQuery, ReadUpToBody, SendBody, SyncQuery};
use crate::error::ApiError;
use crate::router::{Matched, Reply, Request};

pub(super) async fn conversations(
    app: &App,
    m: &Matched,
    req: &Request,
) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let q: ListQuery = dto::parse_query(&req.query)?;
    let after = q
        .after
        .as_deref()
        .map(dto::decode_conversation_cursor)
        .transpose()?;
    let page = app
        .inner
        .service
        .conversations(&actor, after, dto::page(q.limit)?)
        .await?;
    let next = page
        .next_cursor
        .as_ref()
        .map(dto::encode_conversation_cursor);
    Ok(Reply::ok(
        json!({ "conversations": page.conversations, "nextCursor": next }),
    ))
}

pub(super) async fn history(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let other = dto::parse_user("userId", m.param("userId").to_owned())?;
    let q: HistoryQuery = dto::parse_query(&req.query)?;
    let page = app
        .inner
        .service
        .history(&actor, &other, q.before, dto::page(q.limit)?)
        .await?;
    Ok(Reply::ok(page))
}

pub(super) async fn send(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    // Sending is where a new user first appears: refresh the directory from the token.
    let (actor, identity) = auth::authenticate(
        &app.inner,
        &req.headers,
        req.peer,
        m.param("tenantId"),
        Operation::Write,
    )?;
    let body: SendBody = dto::parse_json(&req.body)?;
    let request = body.into_domain()?;
    let service = &app.inner.service;
    service.remember_identity(&actor, identity.name).await?;
    let sent = service.send(&actor, request).await?;
    // A send is activity: a sender with no socket here goes idle, then offline.
    app.follow_presence(&actor.tenant, &actor.user);
    if sent.duplicate {
        Ok(Reply::ok(sent))
    } else {
        app.inner.metrics.message_sent();
        Ok(Reply::with_status(StatusCode::CREATED, sent))
    }
}

pub(super) async fn read(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let id = dto::parse_message_id(m.param("messageId"))?;
    Ok(Reply::ok(app.inner.service.mark_read(&actor, id).await?))
}

pub(super) async fn message(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let id = dto::parse_message_id(m.param("messageId"))?;
    Ok(Reply::ok(app.inner.service.message(&actor, id).await?))
}

pub(super) async fn edit(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let id = dto::parse_message_id(m.param("messageId"))?;
    let body: EditBody = dto::parse_json(&req.body)?;
    let content = afritalk_ports::MessageContent::parse(body.content).map_err(dto::invalid)?;
    Ok(Reply::ok(
        app.inner.service.edit(&actor, id, content).await?,
    ))
}

pub(super) async fn delete(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let id = dto::parse_message_id(m.param("messageId"))?;
    Ok(Reply::ok(app.inner.service.delete(&actor, id).await?))
}

pub(super) async fn read_conversation(
    app: &App,
    m: &Matched,
    req: &Request,
) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let id = dto::parse_conversation_id(m.param("conversationId"))?;
    let body: ReadUpToBody = if req.body.is_empty() {
        ReadUpToBody::default()
    } else {
        dto::parse_json(&req.body)?
    };
    let read = app
        .inner
        .service
        .mark_conversation_read(&actor, id, body.up_to_seq)
        .await?;
    Ok(Reply::ok(json!({ "conversationId": id, "messages": read })))
}

pub(super) async fn conversation_messages(
    app: &App,
    m: &Matched,
    req: &Request,
) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let id = dto::parse_conversation_id(m.param("conversationId"))?;
    let q: dto::AfterSeqQuery = dto::parse_query(&req.query)?;
    let page = dto::page(q.limit)?;
    let caught_up = app
        .inner
        .service
        .catch_up_conversation(&actor, id, q.after.unwrap_or(0), page)
        .await?;
    Ok(Reply::ok(caught_up))
}

pub(super) async fn sync(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let q: SyncQuery = dto::parse_query(&req.query)?;
    let caught_up = app
        .inner
        .service
        .catch_up(&actor, q.cursor()?, dto::page(q.limit)?)
        .await?;
    Ok(Reply::ok(caught_up))
}
