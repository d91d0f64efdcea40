//! Core events → this node's sockets. A `messaging:new` for its recipient is
//! emitted with an ack: each socket's ack marks the message delivered as that
//! socket's user (the core then tells the sender, ✓✓) and records the latency.

use std::time::Duration;

use afritalk_core::Actor;
use afritalk_ports::{Audience, EventSink, Message, RealtimeEvent};
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::Value;
use socketioxide::AckError;
use socketioxide::ack::AckStream;

use super::Session;
use crate::app::App;

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
        let Some(io) = self.app.inner.io.get() else {
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
                let Some(recipient) = io
                    .to(room.clone())
                    .sockets()
                    .into_iter()
                    .find_map(|s| s.extensions.get::<Session>())
                    .map(|session| session.actor)
                else {
                    return;
                };
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
                if let Err(err) = io.to(room).emit(name, &payload).await {
                    tracing::warn!(%err, event = name, "not emitted");
                }
            }
        }
    }

    fn has_audience(&self, audience: &Audience) -> bool {
        self.app
            .inner
            .io
            .get()
            .is_some_and(|io| !io.to(audience.room()).sockets().is_empty())
    }
}

/// Marks the message delivered on the first recipient ack (later ones change
/// nothing: the first `deliveredAt` stays) and records the delivery latency.
///
/// Any answer counts, whatever it carries: socket.io clients commonly call
/// `ack()` with no argument, which arrives as an empty list and fails to decode.
async fn on_acks(app: App, recipient: Actor, message: Message, acks: AckStream<Value>) {
    let mut acks = std::pin::pin!(acks);
    while let Some((_, result)) = acks.next().await {
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
        return;
    }
}
