//! REST handlers, one module per resource. Each handler authenticates, calls one
//! use case of the core, and shapes the result; rules live in the core.

mod admin;
mod messaging;
mod notifications;
mod ops;

use afritalk_auth::{AuthError, Operation};
use afritalk_core::Actor;
use http::Method;

use crate::app::App;
use crate::auth;
use crate::error::ApiError;
use crate::router::{Matched, Reply, Request, RouteId};

/// The operation a method asks the token for: GET reads, everything else writes.
fn operation(method: &Method) -> Operation {
    if method == Method::GET || method == Method::HEAD {
        Operation::Read
    } else {
        Operation::Write
    }
}

/// The caller of an authenticated route, made known to the directory by the
/// token's facts when it did not know them yet, so that a user known so far
/// only by their REST calls can be written to. Not for the messaging switch,
/// which front ends ask before anything else (it writes nothing).
pub(crate) async fn caller(app: &App, m: &Matched, req: &Request) -> Result<Actor, ApiError> {
    let (actor, identity) = auth::authenticate(
        &app.inner,
        &req.headers,
        req.peer,
        m.param("tenantId"),
        operation(&req.method),
    )?;
    if m.route.id != RouteId::ReadMessagingSettings {
        app.inner
            .service
            .introduce_identity(&actor, identity.name)
            .await?;
    }
    Ok(actor)
}

/// Runs the handler of a matched route. A genuine token whose role the
/// permission matrix does not know is refused on the audit trail here, once
/// for every route (the handlers only see the verifier's refusal).
pub(crate) async fn dispatch(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    match handle(app, m, req).await {
        // The messaging switch is what a front end asks first, for every
        // user: a role outside the matrix is refused there without a row.
        Err(ApiError::Auth(err @ AuthError::UnknownRole { .. }))
            if m.route.id == RouteId::ReadMessagingSettings =>
        {
            Err(ApiError::Auth(err))
        }
        Err(ApiError::Auth(AuthError::UnknownRole { tenant, user, role })) => {
            let ip = auth::client_ip(&app.inner, &req.headers, req.peer);
            let operation = format!("{} {}", m.route.method, m.route.path);
            let service = &app.inner.service;
            let refused = service
                .refuse_unknown_role(&tenant, &user, ip.as_deref(), &role, &operation)
                .await;
            Err(refused.into())
        }
        handled => handled,
    }
}

/// The handler of a matched route.
async fn handle(app: &App, m: &Matched, req: &Request) -> Result<Reply, ApiError> {
    use RouteId::*;
    match m.route.id {
        Conversations => messaging::conversations(app, m, req).await,
        History => messaging::history(app, m, req).await,
        SendMessage => messaging::send(app, m, req).await,
        ReadMessage => messaging::read(app, m, req).await,
        GetMessage => messaging::message(app, m, req).await,
        EditMessage => messaging::edit(app, m, req).await,
        DeleteMessage => messaging::delete(app, m, req).await,
        ReadConversation => messaging::read_conversation(app, m, req).await,
        ConversationMessages => messaging::conversation_messages(app, m, req).await,
        Sync => messaging::sync(app, m, req).await,
        Audit => admin::audit(app, m, req).await,
        Notifications => notifications::list(app, m, req).await,
        ReadNotification => notifications::read(app, m, req).await,
        ReadAllNotifications => notifications::read_all(app, m, req).await,
        ArchiveNotification => notifications::archive(app, m, req).await,
        CreateNotification => notifications::create(app, m, req).await,
        Presence => admin::presence(app, m, req).await,
        Directory => admin::directory(app, m, req).await,
        DirectoryEntry => admin::directory_entry(app, m, req).await,
        UpsertUser => admin::upsert_user(app, m, req).await,
        MessagingSettings => admin::messaging_settings(app, m, req).await,
        ReadMessagingSettings => admin::read_messaging_settings(app, m, req).await,
        Healthz => Ok(ops::healthz()),
        Readyz => ops::readyz(app).await,
        RouteId::Metrics => Ok(ops::metrics(app)),
        OpenApi => Ok(ops::openapi()),
    }
}
