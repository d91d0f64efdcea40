//! Presence snapshot, directory search, and administration: directory entries,
//! audit query, messaging switch.

use serde_json::json;

use super::caller;
use crate::app::App;
use crate::dto::{self, AuditQuery, DirectoryBody, DirectoryListQuery, SettingsBody};
use crate::error::ApiError;
use crate::router::{Matched, Reply, Request};

pub(super) async fn presence(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    Ok(Reply::ok(app.inner.service.presence(&actor).await?))
}

pub(super) async fn directory(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let q: DirectoryListQuery = dto::parse_query(&req.query)?;
    let page = app
        .inner
        .service
        .search_directory(&actor, q.into_domain()?)
        .await?;
    let next = page.next_cursor.as_ref().map(dto::encode_directory_cursor);
    Ok(Reply::ok(
        json!({ "users": page.users, "nextCursor": next }),
    ))
}

pub(super) async fn directory_entry(
    app: &App,
    m: &Matched,
    req: &Request,
) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let user = dto::parse_user("userId", m.param("userId").to_owned())?;
    Ok(Reply::ok(
        app.inner.service.directory_entry(&actor, &user).await?,
    ))
}

pub(super) async fn upsert_user(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let user = dto::parse_user("userId", m.param("userId").to_owned())?;
    let body: DirectoryBody = dto::parse_json(&req.body)?;
    let (name, role, active) = body.into_domain()?;
    let stored = app
        .inner
        .service
        .upsert_user(&actor, user, name, role, active)
        .await?;
    if !stored.active {
        // At once on this node; the others' token sweeps close theirs.
        app.close_sockets_of(&stored.tenant_id, &stored.user_id);
    }
    Ok(Reply::ok(stored))
}

pub(super) async fn audit(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let q: AuditQuery = dto::parse_query(&req.query)?;
    let limit = dto::page(q.limit)?;
    let entries = app
        .inner
        .service
        .audit_log(&actor, q.filter()?, limit)
        .await?;
    let next_before = entries
        .last()
        .filter(|_| entries.len() == limit.get() as usize)
        .map(dto::encode_audit_cursor);
    Ok(Reply::ok(
        json!({ "entries": entries, "nextBefore": next_before }),
    ))
}

pub(super) async fn read_messaging_settings(
    app: &App,
    m: &Matched,
    req: &Request,
) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let enabled = app.inner.service.messaging_enabled(&actor).await?;
    Ok(Reply::ok(json!({ "enabled": enabled })))
}

pub(super) async fn messaging_settings(
    app: &App,
    m: &Matched,
    req: &Request,
) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let body: SettingsBody = dto::parse_json(&req.body)?;
    app.inner
        .service
        .set_messaging_enabled(&actor, body.enabled)
        .await?;
    Ok(Reply::ok(json!({ "enabled": body.enabled })))
}
