//! The gateway's shared state: the messaging service, the token verifier, the
//! settings, the readiness probe, the metrics, and (once serving) the Socket.IO handle.

use std::sync::{Arc, Mutex, OnceLock};

use afritalk_auth::TokenVerifier;
use afritalk_core::MessagingService;
use afritalk_ports::{Audience, ConnectionId, EventSink, TenantId, UserId};
use async_trait::async_trait;
use socketioxide::SocketIo;
use socketioxide::operators::BroadcastOperators;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::HttpConfig;
use crate::metrics::Metrics;
use crate::socket::Session;
use crate::socket::sink::SocketSink;
use crate::socket::slots::SocketSlots;

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
    /// Metrics of other components (e.g. the Redis bus), appended to `/metrics`.
    pub(crate) extra_metrics: Mutex<Vec<MetricsSource>>,
    /// Users whose presence this node changed without a socket staying here
    /// (a last socket closed, a send over REST): the presence sweep takes them
    /// in, so their idle → offline is announced too.
    pub(crate) presence_followups: Mutex<Vec<(TenantId, UserId)>>,
    /// The users the presence sweep followed at its last run, so that a node
    /// stopping can hand them over (see [`App::presence_followed`]).
    pub(crate) presence_swept: Mutex<Vec<(TenantId, UserId)>>,
    /// Cancelled by shutdown once every socket is closed and its disconnect
    /// recorded (see [`App::sockets_closed`]).
    pub(crate) sockets_closed: CancellationToken,
    /// The socket events being handled: shutdown waits for them (a send
    /// acknowledged before its socket closes), refusing new ones meanwhile.
    pub(crate) events_in_flight: TaskTracker,
    /// Each user's open sockets on this node, under `max_sockets_per_user`.
    pub(crate) socket_slots: Arc<SocketSlots>,
}

/// A function returning Prometheus text lines for `/metrics`.
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

impl App {
    /// Builds the gateway over a messaging service and a verifier holding the root public key.
    pub fn new(
        service: MessagingService,
        verifier: TokenVerifier,
        config: HttpConfig,
        readiness: Arc<dyn ReadinessCheck>,
    ) -> Self {
        let socket_slots = SocketSlots::new(config.max_sockets_per_user);
        Self {
            inner: Arc::new(AppInner {
                service,
                verifier,
                config,
                readiness,
                metrics: Metrics::new(),
                io: OnceLock::new(),
                extra_metrics: Mutex::new(Vec::new()),
                presence_followups: Mutex::new(Vec::new()),
                presence_swept: Mutex::new(Vec::new()),
                sockets_closed: CancellationToken::new(),
                events_in_flight: TaskTracker::new(),
                socket_slots,
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

    /// The Prometheus text exposition of the gateway's metrics, followed by
    /// every added source's.
    pub fn metrics_text(&self) -> String {
        let mut text = self.inner.metrics.render();
        text.push_str(&format!(
            "# HELP afritalk_tokens_reopened_total Token checks answered by a token this node \
             already verified (no signature work)\n\
             # TYPE afritalk_tokens_reopened_total counter\n\
             afritalk_tokens_reopened_total {}\n",
            self.inner.verifier.reopened()
        ));
        let sources = self
            .inner
            .extra_metrics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for source in sources {
            text.push_str(&source());
        }
        text
    }

    /// Adds metrics of another component (Prometheus text) to `/metrics`.
    pub fn add_metrics_source(&self, source: MetricsSource) {
        self.inner
            .extra_metrics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(source);
    }

    /// Asks the presence sweep to follow `user` until they are offline (e.g. a
    /// user taken over from a node that crashed).
    pub fn follow_presence(&self, tenant: &TenantId, user: &UserId) {
        self.inner
            .presence_followups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((tenant.clone(), user.clone()));
    }

    /// The users whose presence this node still follows without a socket of
    /// theirs here (they left in the last ten minutes, so their `offline` is
    /// still to come). A node that stops hands them over to another, or their
    /// watchers would never see them go offline.
    pub fn presence_followed(&self) -> Vec<(TenantId, UserId)> {
        let lock = |m: &Mutex<Vec<(TenantId, UserId)>>| {
            m.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone()
        };
        let mut users = lock(&self.inner.presence_swept);
        users.extend(lock(&self.inner.presence_followups));
        users.sort();
        users.dedup();
        users
    }

    /// Completes once shutdown has closed every socket and recorded its
    /// disconnect, before it waits for the remaining HTTP requests: the moment
    /// to hand presence over (see [`presence_followed`](Self::presence_followed)).
    pub async fn sockets_closed(&self) {
        self.inner.sockets_closed.cancelled().await;
    }

    /// The users [`follow_presence`](Self::follow_presence) named since the last call.
    pub(crate) fn take_presence_followups(&self) -> Vec<(TenantId, UserId)> {
        std::mem::take(
            &mut *self
                .inner
                .presence_followups
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// The default namespace's operators while the Socket.IO layer serves;
    /// `None` before `serve` built it and after shutdown closed it, when
    /// socketioxide's shortcuts (`io.to`, `io.sockets`) would panic while the
    /// event bus or a background task still calls in.
    pub(crate) fn sockets_root(&self) -> Option<BroadcastOperators> {
        self.inner.io.get()?.of("/")
    }

    /// Closes this node's sockets of one user whom an administrator
    /// deactivated: at once when the change is made through this node, else
    /// when this node's token sweep finds it.
    pub(crate) fn close_sockets_of(&self, tenant: &TenantId, user: &UserId) {
        let Some(root) = self.sockets_root() else {
            return;
        };
        let room = Audience::User(tenant.clone(), user.clone()).room();
        for socket in root.to(room).sockets() {
            tracing::info!(%user, "closing a socket of a deactivated user");
            crate::socket::close(socket);
        }
    }

    /// The authenticated sockets of this node as (tenant, user, connection), so a
    /// shared presence store can be re-announced (e.g. after Redis lost its data).
    pub fn live_connections(&self) -> Vec<(TenantId, UserId, ConnectionId)> {
        let Some(root) = self.sockets_root() else {
            return Vec::new();
        };
        root.sockets()
            .into_iter()
            // A closing socket stays listed until its disconnect handler ends;
            // announcing it again would bring back a connection just removed.
            .filter(|s| s.connected())
            .filter_map(|s| {
                let session = s.extensions.get::<Session>()?;
                Some((
                    session.actor.tenant.clone(),
                    session.actor.user.clone(),
                    ConnectionId::new(s.id.to_string()),
                ))
            })
            .collect()
    }
}
