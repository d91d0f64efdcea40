//! The Socket.IO v4 endpoint: connect-time authentication, rooms, and the
//! registration of every event handler in one place.
//!
//! - [`handlers`]: one function per client event, each acked with `{ ok, … }`.
//! - [`sink`]: the [`EventSink`](afritalk_ports::EventSink) that emits core events
//!   to this node's sockets, and turns recipient acks into ✓✓ receipts.
//! - [`slots`]: the cap on each user's open sockets on this node.

pub(crate) mod handlers;
pub(crate) mod sink;
pub(crate) mod slots;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use afritalk_auth::{AuthError, Operation, VerifiedToken};
use afritalk_core::Actor;
use afritalk_ports::{Audience, ConnectionId, PageSize};
use serde::Deserialize;
use socketioxide::SocketError;
use socketioxide::extract::{SocketRef, State, TryData};
use socketioxide::socket::DisconnectReason;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::auth::{self, PeerAddr};
use crate::error::ApiError;
use crate::front::PathTenant;

/// What a socket is, once authenticated (kept in the socket's extensions).
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The caller, with the client IP.
    pub(crate) actor: Actor,
    /// The handshake token, its signatures verified once at connect; it is
    /// authorized again on every event and by the token sweep (no signature
    /// work), so that a socket does not outlive its token's expiry.
    pub(crate) token: VerifiedToken,
    /// The node's events in flight (see `AppInner::events_in_flight`).
    pub(crate) events: TaskTracker,
}

/// The handshake's `auth` object.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConnectAuth {
    token: Option<String>,
}

/// A refused handshake; the client's `connect_error` message is `code: message`.
#[derive(Debug)]
pub(crate) struct ConnectRefused(ApiError);

/// The refusal of a handshake that carries no token.
const MISSING_SOCKET_TOKEN: &str =
    "invalid_token: missing token (give the handshake auth.token or a token query parameter)";

impl fmt::Display for ConnectRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if matches!(self.0, ApiError::MissingToken) {
            // The REST wording names a header that sockets do not read.
            return f.write_str(MISSING_SOCKET_TOKEN);
        }
        let reply = self.0.reply();
        write!(f, "{}: {}", reply.code, reply.message)
    }
}

impl<E: Into<ApiError>> From<E> for ConnectRefused {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

/// Closes a socket from the server side. One already gone is fine; one whose
/// outgoing buffer is full cannot be told and stays open (socketioxide
/// refuses the close then), so the next token sweep tries again.
pub(crate) fn close(s: SocketRef) {
    match s.disconnect() {
        Ok(()) => {}
        Err(SocketError::InternalChannelFull) => {
            tracing::warn!(
                "socket not closed: its outgoing buffer is full; the token sweep retries"
            );
        }
        Err(err) => tracing::debug!(%err, "socket already gone"),
    }
}

/// The token of `auth: { token }`, else of the `?token=` query.
fn handshake_token(s: &SocketRef, auth: Option<ConnectAuth>) -> Option<String> {
    auth.and_then(|a| a.token).or_else(|| {
        let query = s.req_parts().uri.query()?;
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .ok()?
            .into_iter()
            .find_map(|(k, v)| (k == "token").then_some(v))
    })
}

/// Connect middleware: opens the token once (signatures) and authorizes it to
/// read the path's tenant (each write event is authorized again as a write),
/// refreshes the directory, records the connection (staff only, checked by
/// the core), keeps the [`Session`], joins the socket's rooms and registers
/// its events. Nothing is emitted before it
/// succeeds.
///
/// Rooms and events are set up here rather than in [`on_connect`] because
/// socketioxide sends the client its connect packet before it spawns the
/// connect handler: a client that emits as soon as it is connected could
/// otherwise reach a socket with no handler yet, and get no ack at all.
pub(crate) async fn authenticate(
    s: SocketRef,
    State(app): State<App>,
    TryData(auth): TryData<ConnectAuth>,
) -> Result<(), ConnectRefused> {
    let parts = s.req_parts();
    let tenant = parts
        .extensions
        .get::<PathTenant>()
        .map(|t| t.0.clone())
        .ok_or(ApiError::RouteNotFound)?;
    let token = handshake_token(&s, auth.ok()).ok_or(ApiError::MissingToken)?;
    let inner = &app.inner;
    let tenant = auth::path_tenant(&tenant)?;
    let token = inner.verifier.open(&token)?;
    let peer = parts.extensions.get::<PeerAddr>().copied();
    let identity = match token.authorize(&tenant, Operation::Read) {
        Ok(identity) => identity,
        Err(AuthError::UnknownRole { tenant, user, role }) => {
            let ip = auth::client_ip(inner, &parts.headers, peer);
            let service = &inner.service;
            let refused = service
                .refuse_unknown_role(&tenant, &user, ip.as_deref(), &role, "ws.connect")
                .await;
            return Err(ApiError::from(refused).into());
        }
        Err(err) => return Err(ApiError::from(err).into()),
    };
    // Before anything is recorded: a refused handshake leaves no trace but the log.
    let slots = &inner.socket_slots;
    let Some(slot) = slots.take(&identity.tenant, &identity.user) else {
        // Counted, and logged only at debug: a client retrying in a loop
        // would otherwise fill the log.
        inner.metrics.socket_over_cap();
        tracing::debug!(user = %identity.user, max = slots.max(), "socket refused: too many open");
        return Err(ApiError::TooManySockets(slots.max()).into());
    };
    let mut actor = identity.to_actor();
    if let Some(ip) = auth::client_ip(inner, &parts.headers, peer) {
        actor = actor.with_ip(ip);
    }
    // A service token is refused by the core's `connect`, on the audit trail.
    inner
        .service
        .remember_identity(&actor, identity.name)
        .await?;
    inner
        .service
        .connect(&actor, &ConnectionId::new(s.id.to_string()))
        .await?;
    s.join(Audience::User(actor.tenant.clone(), actor.user.clone()).room());
    s.join(Audience::Tenant(actor.tenant.clone()).room());
    handlers::register(&s);
    s.on_disconnect(on_disconnect);
    s.extensions
        .insert(PendingConnection::new(app.clone(), actor.clone(), &s));
    s.extensions.insert(sink::MissedEvents::default());
    s.extensions.insert(Arc::new(slot));
    s.extensions.insert(Session {
        actor,
        token,
        events: app.inner.events_in_flight.clone(),
    });
    Ok(())
}

/// A connection recorded by [`authenticate`] that is not yet a live socket.
///
/// socketioxide sends the connect packet after the middleware returns; when
/// the client left meanwhile (it closed during the handshake), that send
/// fails and the socket is dropped with neither the connect nor the
/// disconnect handler called. Dropped while still pending, this records the
/// disconnect, so that the user does not stay connected in presence for good.
/// [`on_connect`] and [`on_disconnect`] settle it (take it out, disarmed).
#[derive(Clone)]
struct PendingConnection(Arc<PendingInner>);

struct PendingInner {
    settled: AtomicBool,
    app: App,
    actor: Actor,
    connection: ConnectionId,
}

impl PendingConnection {
    fn new(app: App, actor: Actor, s: &SocketRef) -> Self {
        Self(Arc::new(PendingInner {
            settled: AtomicBool::new(false),
            app,
            actor,
            connection: ConnectionId::new(s.id.to_string()),
        }))
    }

    /// Takes the socket's pending connection out, disarmed: a handler now owns
    /// the connection's end.
    fn settle(s: &SocketRef) {
        if let Some(pending) = s.extensions.remove::<PendingConnection>() {
            pending.0.settled.store(true, Ordering::Release);
        }
    }
}

impl Drop for PendingInner {
    fn drop(&mut self) {
        if self.settled.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(connection = %self.connection, "abandoned handshake left in presence");
            return;
        };
        let app = self.app.clone();
        let actor = self.actor.clone();
        let connection = self.connection.clone();
        runtime.spawn(async move {
            tracing::debug!(%connection, "handshake abandoned by the client");
            app.follow_presence(&actor.tenant, &actor.user);
            if let Err(err) = app.inner.service.disconnect(&actor, &connection).await {
                tracing::warn!(%err, "abandoned handshake not recorded as a disconnect");
            }
        });
    }
}

/// After the connect packet: watch the presence of the partners of the latest
/// conversations (a query the handshake need not wait for).
pub(crate) async fn on_connect(s: SocketRef, State(app): State<App>) {
    PendingConnection::settle(&s);
    let Some(session) = s.extensions.get::<Session>() else {
        // The middleware always stores it; without it the socket is useless.
        let _ = s.disconnect();
        return;
    };
    // Counted here, not in the middleware: a socket whose connect packet
    // could not be sent never gets this handler, nor a disconnect one.
    app.inner.metrics.socket_opened();
    let actor = &session.actor;
    match app
        .inner
        .service
        .conversation_partners(actor, PageSize::DEFAULT)
        .await
    {
        Ok(partners) => {
            for partner in partners {
                s.join(Audience::PresenceWatchers(actor.tenant.clone(), partner).room());
            }
        }
        Err(err) => tracing::warn!(%err, "presence rooms of conversation partners not joined"),
    }
    handlers::leave_rooms_if_gone(&s);
}

async fn on_disconnect(s: SocketRef, State(app): State<App>, reason: DisconnectReason) {
    PendingConnection::settle(&s);
    // Its place is free at once, not when the last handle on the socket goes.
    s.extensions.remove::<Arc<slots::SocketSlot>>();
    let Some(session) = s.extensions.get::<Session>() else {
        return;
    };
    app.inner.metrics.socket_closed();
    app.follow_presence(&session.actor.tenant, &session.actor.user);
    let connection = ConnectionId::new(s.id.to_string());
    if let Err(err) = app
        .inner
        .service
        .disconnect(&session.actor, &connection)
        .await
    {
        tracing::warn!(%err, ?reason, "disconnect not recorded");
    }
}
