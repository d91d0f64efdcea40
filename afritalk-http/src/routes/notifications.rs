//! In-app notifications: list (unread first), read (one or all), archive, and
//! alerts from services.

use http::StatusCode;
use serde_json::json;

use super::caller;
use crate::app::App;
use crate::dto::{self, AlertBody, NotificationQuery};
use crate::error::ApiError;
use crate::router::{Matched, Reply, Request};

pub(super) async fn list(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let q: NotificationQuery = dto::parse_query(&req.query)?;
    let after = q
        .after
        .as_deref()
        .map(dto::decode_notification_cursor)
        .transpose()?;
    let limit = dto::page(q.limit)?;
    let items = app
        .inner
        .service
        .notifications(&actor, after, q.include_archived.unwrap_or(false), limit)
        .await?;
    let next = items
        .last()
        .filter(|_| items.len() == limit.get() as usize)
        .map(dto::encode_notification_cursor);
    Ok(Reply::ok(
        json!({ "notifications": items, "nextCursor": next }),
    ))
}

pub(super) async fn read(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let id = dto::parse_notification_id(m.param("notificationId"))?;
    Ok(Reply::ok(
        app.inner.service.mark_notification_read(&actor, id).await?,
    ))
}

pub(super) async fn read_all(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let updated = app
        .inner
        .service
        .mark_all_notifications_read(&actor)
        .await?;
    Ok(Reply::ok(json!({ "updated": updated })))
}

pub(super) async fn archive(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let id = dto::parse_notification_id(m.param("notificationId"))?;
    Ok(Reply::ok(
        app.inner.service.archive_notification(&actor, id).await?,
    ))
}

pub(super) async fn create(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    let actor = caller(app, m, req).await?;
    let body: AlertBody = dto::parse_json(&req.body)?;
    let created = app
        .inner
        .service
        .create_notification(&actor, body.into_domain()?)
        .await?;
    Ok(Reply::with_status(StatusCode::CREATED, created))
}
