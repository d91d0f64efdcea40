//! Core events → this node's sockets. A `messaging:new` for its recipient is
//! emitted with an ack: each socket's ack marks the message delivered as that
//! socket's user (the core then tells the sender, ✓✓) and records the latency.
//!
//! A socket's outgoing buffer holds a bounded number of packets; a client that
//! reads slower than events arrive fills it, and an event emitted meanwhile is
//! lost for that socket. It is never lost silently: the socket is flagged
//! ([`MissedEvents`]), and as soon as its buffer has room again it gets
//! `sync:required`, upon which its client catches up as after a reconnect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use afritalk_core::Actor;
use afritalk_ports::{Audience, EventSink, Message, RealtimeEvent};
use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::ack::AckStream;
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use socketioxide::{AckError, SendError, SocketError};

use super::Session;
use crate::app::App;

/// The event telling a socket that events were lost for it.
pub(crate) const SYNC_REQUIRED: &str = "sync:required";

/// Whether an event was lost for a socket (its outgoing buffer was full) since
/// it was last told; one per socket, in its extensions.
#[derive(Debug, Clone, Default)]
pub(crate) struct MissedEvents(Arc<AtomicBool>);

/// Flags `socket`: an event did not fit in its buffer.
fn missed(app: &App, socket: &SocketRef) {
    app.inner.metrics.event_dropped();
    if let Some(flag) = socket.extensions.get::<MissedEvents>() {
        flag.0.store(true, Ordering::Release);
    }
}

/// Sends `sync:required` to `socket` if events were lost for it. Returns
/// whether the socket may receive the next event: false while its buffer is
/// still full (the flag stays, for the next try).
pub(crate) fn tell_if_missed(socket: &SocketRef) -> bool {
    let Some(flag) = socket.extensions.get::<MissedEvents>() else {
        return true;
    };
    // A read first: on nearly every event the flag is clear, and a plain
    // load is all it then costs.
    if !flag.0.load(Ordering::Acquire) || !flag.0.swap(false, Ordering::AcqRel) {
        return true;
    }
    match socket.emit(SYNC_REQUIRED, &json!({ "reason": "events_dropped" })) {
        Ok(()) => true,
        Err(SendError::Socket(SocketError::InternalChannelFull)) => {
            flag.0.store(true, Ordering::Release);
            false
        }
        // Closed (or unencodable, which a constant payload is not): there is
        // no one left to tell, and nothing to count as lost.
        Err(_) => true,
    }
}

/// Emits an event to one socket, first telling it to catch up if it missed
/// some; an event that does not fit flags the socket.
fn emit_to(app: &App, socket: &SocketRef, name: &str, payload: &impl Serialize) {
    if !tell_if_missed(socket) {
        missed(app, socket);
        return;
    }
    match socket.emit(name, payload) {
        Ok(()) => {}
        Err(SendError::Socket(SocketError::InternalChannelFull)) => missed(app, socket),
        Err(err) => tracing::debug!(%err, event = name, "not emitted"),
    }
}

/// The gateway's [`EventSink`].
pub(crate) struct SocketSink {
    app: App,
}

impl SocketSink {
    pub(crate) fn new(app: App) -> Self {
        Self { app }
    }
}

#[async_trait]
impl EventSink for SocketSink {
    async fn deliver(&self, audience: &Audience, event: &RealtimeEvent) {
        let Some(io) = self.app.sockets_root() else {
            return;
        };
        let room = audience.room();
        // Serialized straight into each frame, never as a `Value` tree.
        let payload = event.wire_payload();
        let name = event.name();
        match (audience, event) {
            (Audience::User(_, user), RealtimeEvent::MessageNew(new))
                if *user == new.message.recipient_id =>
            {
                // Read before emitting, so that a socket that acks and
                // disconnects at once still names the recipient: every socket
                // of the room is theirs.
                let sockets = io.clone().to(room.clone()).sockets();
                let Some(recipient) = sockets
                    .iter()
                    .find_map(|s| s.extensions.get::<Session>())
                    .map(|session| session.actor)
                else {
                    return;
                };
                // A socket still owing its catch-up notice gets it first.
                for socket in &sockets {
                    tell_if_missed(socket);
                }
                let timeout = self.app.inner.config.ack_timeout;
                match io
                    .to(room.clone())
                    .timeout(timeout)
                    .emit_with_ack::<_, Value>(name, &payload)
                    .await
                {
                    Ok(acks) => {
                        let app = self.app.clone();
                        let message = new.message.clone();
                        tokio::spawn(async move { on_acks(app, recipient, message, acks).await });
                    }
                    Err(err) => tracing::warn!(%err, event = name, "not emitted"),
                }
            }
            _ => {
                // One socket at a time, unlike a room broadcast, so that a
                // socket whose buffer is full is known and told later.
                for socket in io.to(room).sockets() {
                    emit_to(&self.app, &socket, name, &payload);
                }
            }
        }
    }

    fn has_audience(&self, audience: &Audience) -> bool {
        self.app
            .sockets_root()
            .is_some_and(|root| !root.to(audience.room()).sockets().is_empty())
    }
}

/// Marks the message delivered on the first recipient ack (later ones change
/// nothing: the first `deliveredAt` stays) and records the delivery latency.
///
/// Any answer counts, whatever it carries: socket.io clients commonly call
/// `ack()` with no argument, which arrives as an empty list and fails to decode.
async fn on_acks(app: App, recipient: Actor, message: Message, acks: AckStream<Value>) {
    let mut acks = std::pin::pin!(acks);
    while let Some((sid, result)) = acks.next().await {
        flag_if_full(&app, sid, &result);
        if matches!(result, Err(AckError::Timeout | AckError::Socket(_))) {
            continue;
        }
        let latency = (chrono::Utc::now() - message.created_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        app.inner.metrics.delivered_after(latency);
        if let Err(err) = app
            .inner
            .service
            .mark_delivered(&recipient, message.id)
            .await
        {
            tracing::warn!(%err, message = %message.id, "delivery not recorded");
        }
        // The other sockets' answers no longer matter, but a socket whose
        // buffer was full answered at once, and must still be flagged.
        while let Some(Some((sid, result))) = acks.next().now_or_never() {
            flag_if_full(&app, sid, &result);
        }
        return;
    }
}

/// Flags the socket `sid` if its answer says the event did not fit its buffer.
fn flag_if_full<T>(app: &App, sid: Sid, result: &Result<T, AckError>) {
    if let Err(AckError::Socket(SocketError::InternalChannelFull)) = result
        && let Some(socket) = app.sockets_root().and_then(|root| root.get_socket(sid))
    {
        missed(app, &socket);
    }
}
