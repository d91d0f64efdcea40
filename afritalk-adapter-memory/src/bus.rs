//! The in-process event bus: on a single node, publishing an event means handing
//! it to this node's realtime gateway, which emits it to the audience's sockets.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use afritalk_ports::{Audience, EventPublisher, EventSink, RealtimeEvent, StoreResult};
use async_trait::async_trait;

/// Hands every published event to the attached [`EventSink`], unchanged and with
/// its exact audience; the sink alone decides which local sockets are in it.
///
/// The sink is attached after construction because the realtime gateway (the
/// sink) is built after the messaging service that publishes. Until then, and
/// whenever no sink is attached, publishing succeeds and delivers nothing: no
/// socket can be connected to a node without a gateway.
#[derive(Default)]
pub struct LocalEventBus {
    sink: RwLock<Option<Arc<dyn EventSink>>>,
}

impl LocalEventBus {
    /// A bus with no sink attached yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches the node's sink, replacing any sink attached before.
    pub fn attach(&self, sink: Arc<dyn EventSink>) {
        // A poisoned slot only ever held a whole `Option<Arc<_>>`: safe to reuse.
        *self.sink.write().unwrap_or_else(PoisonError::into_inner) = Some(sink);
    }

    /// Whether a sink is attached.
    pub fn is_attached(&self) -> bool {
        self.sink
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

impl fmt::Debug for LocalEventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalEventBus")
            .field("attached", &self.is_attached())
            .finish()
    }
}

#[async_trait]
impl EventPublisher for LocalEventBus {
    async fn publish(&self, audience: Audience, event: RealtimeEvent) -> StoreResult<()> {
        // Clone the Arc and release the lock before awaiting the sink.
        let sink = self
            .sink
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(sink) = sink {
            sink.deliver(&audience, &event).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use afritalk_ports::{PresenceEvent, PresenceStatus, TenantId, UserId};
    use chrono::DateTime;
    use futures::executor::block_on;

    use super::*;

    #[derive(Default)]
    struct RecordingSink {
        delivered: Mutex<Vec<(Audience, RealtimeEvent)>>,
    }

    #[async_trait]
    impl EventSink for RecordingSink {
        async fn deliver(&self, audience: &Audience, event: &RealtimeEvent) {
            self.delivered
                .lock()
                .unwrap()
                .push((audience.clone(), event.clone()));
        }
    }

    fn presence_event(user: &str) -> RealtimeEvent {
        RealtimeEvent::PresenceUpdate(PresenceEvent {
            user_id: UserId::parse(user).unwrap(),
            status: PresenceStatus::Online,
            last_seen: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        })
    }

    fn audience(tenant: &str, user: &str) -> Audience {
        Audience::User(
            TenantId::parse(tenant).unwrap(),
            UserId::parse(user).unwrap(),
        )
    }

    #[test]
    fn publishing_without_a_sink_is_ok() {
        let bus = LocalEventBus::new();
        assert!(!bus.is_attached());
        block_on(bus.publish(audience("t", "u"), presence_event("u"))).unwrap();
    }

    #[test]
    fn the_attached_sink_gets_each_event_with_its_exact_audience() {
        let bus = LocalEventBus::new();
        let sink = Arc::new(RecordingSink::default());
        bus.attach(sink.clone());
        assert!(bus.is_attached());

        let tenant_b = Audience::Tenant(TenantId::parse("b").unwrap());
        block_on(bus.publish(audience("a", "u1"), presence_event("u1"))).unwrap();
        block_on(bus.publish(tenant_b.clone(), presence_event("u2"))).unwrap();

        let delivered = sink.delivered.lock().unwrap();
        assert_eq!(
            *delivered,
            vec![
                (audience("a", "u1"), presence_event("u1")),
                (tenant_b, presence_event("u2")),
            ]
        );
    }

    #[test]
    fn attaching_again_replaces_the_sink() {
        let bus = LocalEventBus::new();
        let first = Arc::new(RecordingSink::default());
        let second = Arc::new(RecordingSink::default());
        bus.attach(first.clone());
        bus.attach(second.clone());
        block_on(bus.publish(audience("a", "u"), presence_event("u"))).unwrap();
        assert!(first.delivered.lock().unwrap().is_empty());
        assert_eq!(second.delivered.lock().unwrap().len(), 1);
    }
}
