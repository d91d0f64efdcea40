//! The gateway's shared state: the messaging service, the token verifier, the
//! settings, the readiness probe, the metrics, and (once serving) the Socket.IO handle.

use std::sync::{Arc, OnceLock};

use afritalk_auth::TokenVerifier;
use afritalk_core::MessagingService;
use afritalk_ports::EventSink;
use async_trait::async_trait;
use socketioxide::SocketIo;

use crate::config::HttpConfig;
use crate::metrics::Metrics;
use crate::socket::sink::SocketSink;

/// What `/readyz` asks: the binary implements it by pinging its stores.
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    /// `Ok` when every dependency answers; `Err` says which does not (logged, not sent).
    async fn check(&self) -> Result<(), String>;
}

/// A readiness check that is always ready (tests, embedded setups without stores).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysReady;

#[async_trait]
impl ReadinessCheck for AlwaysReady {
    async fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The gateway: everything `serve` needs. Cheap to clone; serve it once.
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<AppInner>,
}

pub(crate) struct AppInner {
    pub(crate) service: MessagingService,
    pub(crate) verifier: TokenVerifier,
    pub(crate) config: HttpConfig,
    pub(crate) readiness: Arc<dyn ReadinessCheck>,
    pub(crate) metrics: Metrics,
    /// Set by `serve` once the Socket.IO layer exists; events before that reach nobody.
    pub(crate) io: OnceLock<SocketIo>,
}

impl App {
    /// Builds the gateway over a messaging service and a verifier holding the root public key.
    pub fn new(
        service: MessagingService,
        verifier: TokenVerifier,
        config: HttpConfig,
        readiness: Arc<dyn ReadinessCheck>,
    ) -> Self {
        Self {
            inner: Arc::new(AppInner {
                service,
                verifier,
                config,
                readiness,
                metrics: Metrics::new(),
                io: OnceLock::new(),
            }),
        }
    }

    /// The sink to attach to the node's event bus: it emits each event to this
    /// node's sockets in the audience's room.
    pub fn event_sink(&self) -> Arc<dyn EventSink> {
        Arc::new(SocketSink::new(self.clone()))
    }

    /// The settings in force.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    /// The Prometheus text exposition of the gateway's metrics.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }
}
