//! The application: built from a [`Config`], bound to its listen address, served
//! until a shutdown signal. Tests build it on port 0 and stop it at will.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use afritalk_adapter_memory::SystemClock;
use afritalk_adapter_redis::{BusMetrics, Orphans, RedisPresence};
use afritalk_auth::TokenVerifier;
use afritalk_core::MessagingService;
use afritalk_http::{App, HttpConfig, ReadinessCheck, Tls, TlsError};
use afritalk_ports::{Clock, TenantId, UserId};
use async_trait::async_trait;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind};

use crate::config::{AuditRetention, Config};
use crate::keys::{self, KeyFileError};
use crate::retention::{self, PurgeSchedule};
use crate::wiring::{self, Bus, ReadCaches, RealtimeError, Storage, StorageError};

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Keys could not be loaded or created.
    #[error(transparent)]
    Keys(#[from] KeyFileError),
    /// Storage could not be opened or migrated.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The realtime adapters (Redis) could not be set up.
    #[error(transparent)]
    Realtime(#[from] RealtimeError),
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// `/readyz`: ready when the storage answers a query and, with Redis, the node
/// is subscribed to the cross-node event channel.
struct Readiness {
    storage: Storage,
    bus: Option<Arc<BusMetrics>>,
}

#[async_trait]
impl ReadinessCheck for Readiness {
    async fn check(&self) -> Result<(), String> {
        self.storage.ping().await.map_err(|e| e.to_string())?;
        match &self.bus {
            Some(bus) if !bus.is_subscribed() => {
                Err("not subscribed to the Redis event bus".into())
            }
            _ => Ok(()),
        }
    }
}

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    tls: Option<Tls>,
    app: App,
    service: MessagingService,
    heartbeat: Option<Heartbeat>,
    read_caches: ReadCaches,
    audit: AuditRetention,
    purge_schedule: PurgeSchedule,
}

/// What the shared-presence heartbeat needs: the Redis presence, and the bus's
/// subscription counter (a resubscription means Redis may have lost its data).
struct Heartbeat {
    presence: Arc<RedisPresence>,
    subscriptions: tokio::sync::watch::Receiver<u64>,
    clock: Arc<SystemClock>,
}

impl Application {
    /// Opens storage (migrating it), loads keys, wires adapters and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        // First, so that a wrong certificate path fails before any migration runs.
        let tls = config.tls.clone().map(Tls::load).transpose()?;
        // The data directory is made (or checked) by what needs it: the SQLite
        // store and the development key pair. A node on Postgres with a
        // configured public key writes nothing locally.
        let public_key = keys::root_public_key(&config)?;
        let storage = wiring::open_storage(&config).await?;
        let clock = Arc::new(SystemClock::new());
        let realtime = wiring::realtime(&config, clock.clone())?;
        wiring::check_redis(&realtime).await?;
        let service = wiring::service(&storage, &realtime, clock.clone());
        let bus_metrics = match &realtime.bus {
            Bus::Redis(bus) => Some(bus.metrics()),
            Bus::Local(_) => None,
        };
        let edge = &config.edge;
        let http_config = HttpConfig {
            allowed_origins: config.allowed_origins.clone(),
            client_ip_header: config.trusted_proxy_header.clone(),
            max_body_bytes: edge.max_body_bytes,
            max_ws_message_bytes: edge.max_socket_message_bytes,
            max_sockets_per_user: edge.max_sockets_per_user,
            first_request_timeout: edge.first_request_timeout,
            keep_alive_timeout: edge.keep_alive_timeout,
            request_body_timeout: edge.request_body_timeout,
            shutdown_grace: edge.shutdown_grace,
            ..HttpConfig::default()
        };
        let app = App::new(
            service.clone(),
            TokenVerifier::new(public_key),
            http_config,
            Arc::new(Readiness {
                storage: storage.clone(),
                bus: bus_metrics.clone(),
            }),
        );
        realtime
            .bus
            .attach(app.event_sink())
            .map_err(|e| RealtimeError(e.to_string()))?;
        let mut heartbeat = None;
        if let (Bus::Redis(bus), Some(presence)) = (&realtime.bus, &realtime.shared_presence) {
            if !bus.wait_subscribed(Duration::from_secs(5)).await {
                tracing::warn!(
                    "not yet subscribed to the Redis event bus; retrying in the background"
                );
            }
            if let Some(metrics) = bus_metrics {
                app.add_metrics_source(Arc::new(move || bus_metrics_text(&metrics)));
            }
            heartbeat = Some(Heartbeat {
                presence: presence.clone(),
                subscriptions: bus.subscriptions(),
                clock,
            });
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let address = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        tracing::info!(
            %address,
            scheme = if tls.is_some() { "https (TLS 1.3)" } else { "http" },
            storage = storage.backend,
            realtime = realtime.backend,
            "AfriTalk listening (REST + Socket.IO at /api/tenants/{{tenantId}}/messaging/socket)"
        );
        Ok(Self {
            listener,
            address,
            tls,
            app,
            service,
            heartbeat,
            read_caches: storage.read_caches.clone(),
            audit: config.audit,
            purge_schedule: PurgeSchedule::DAILY,
        })
    }

    /// Runs the audit retention job on `schedule` rather than daily (when
    /// `AFRITALK_AUDIT_PURGE` leaves it on): for embedders with a maintenance
    /// window of their own, and for tests.
    pub fn with_audit_purge_schedule(mut self, schedule: PurgeSchedule) -> Self {
        self.purge_schedule = schedule;
        self
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The bound port (useful when the configuration asked for port 0).
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The TLS acceptor, when the server terminates TLS itself (to reload its certificate).
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// The messaging service, for in-process callers next to the server.
    pub fn service(&self) -> &MessagingService {
        &self.service
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let adopting = Adopting::default();
        let heartbeat = self.heartbeat.map(|h| {
            let hand_over =
                hand_over_at_shutdown(h.presence.clone(), self.app.clone(), adopting.clone());
            let beat = run_heartbeat(h, self.app.clone(), self.service.clone(), adopting);
            (tokio::spawn(beat), tokio::spawn(hand_over))
        });
        // Shutdown stops the heartbeat first: it would announce again the
        // sockets being closed, and adopt users it could no longer announce.
        let beat = heartbeat.as_ref().map(|(beat, _)| beat.abort_handle());
        let shutdown = async move {
            shutdown.await;
            if let Some(beat) = beat {
                beat.abort();
            }
        };
        let read_caches = tokio::spawn(self.read_caches.keep_fresh());
        let audit_purge = self.audit.purge_daily.then(|| {
            let job = retention::run(self.service.clone(), self.audit, self.purge_schedule);
            tokio::spawn(job)
        });
        let result = afritalk_http::serve(self.listener, self.tls, self.app, shutdown).await;
        read_caches.abort();
        if let Some(job) = audit_purge {
            job.abort();
        }
        if let Some((_, hand_over)) = heartbeat {
            // Done as soon as the sockets closed, unless serving failed first.
            if result.is_ok() {
                let _ = hand_over.await;
            } else {
                hand_over.abort();
            }
        }
        result?;
        tracing::info!("AfriTalk stopped");
        Ok(())
    }
}

/// Keeps this node's live sockets in the shared presence: refreshes their expiry
/// every heartbeat interval, and re-announces them at once after the bus
/// resubscribes (Redis restarted and may have lost everything). Then takes over
/// the users of nodes that crashed, so their watchers learn they left.
async fn run_heartbeat(mut h: Heartbeat, app: App, service: MessagingService, adopting: Adopting) {
    let mut tick = tokio::time::interval(h.presence.heartbeat_interval());
    // Owned here, so that stopping the heartbeat stops them too; the users
    // they had yet to announce stay in `adopting`, for the hand-over.
    let mut adoptions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = h.subscriptions.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            Some(_) = adoptions.join_next(), if !adoptions.is_empty() => continue,
        }
        let live = app.live_connections();
        if let Err(err) = h.presence.reannounce(&live, h.clock.now()).await {
            tracing::warn!(%err, sockets = live.len(), "presence heartbeat failed");
            continue;
        }
        match h.presence.adopt_orphans().await {
            // Apart from the heartbeat: announcing many users takes a while,
            // and a late renewal would get this node adopted in turn.
            Ok(orphans) if !orphans.users.is_empty() => {
                let retry_every = h.presence.heartbeat_interval();
                let (app, service, adopting) = (app.clone(), service.clone(), adopting.clone());
                adoptions.spawn(adopt(app, service, adopting, orphans, retry_every));
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "stopped nodes not checked for"),
        }
    }
}

/// Attempts at announcing an adopted tenant's users before giving up.
const ADOPTION_ATTEMPTS: u32 = 5;

/// Users taken over from stopped nodes and not announced yet, by tenant:
/// handed over in turn if this node stops first.
type Adopting = Arc<Mutex<BTreeMap<TenantId, BTreeSet<UserId>>>>;

/// Locks `adopting` (a poisoned lock still holds valid sets).
fn lock(adopting: &Adopting) -> std::sync::MutexGuard<'_, BTreeMap<TenantId, BTreeSet<UserId>>> {
    adopting
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Tells the watchers of a stopped node's users what their status is now, and
/// follows those not offline yet until they are. The node's record is gone
/// from Redis once adopted, so a failed announcement (Redis or the store
/// briefly unreachable, as is likely around a crash) is retried here.
async fn adopt(
    app: App,
    service: MessagingService,
    adopting: Adopting,
    orphans: Orphans,
    retry_every: Duration,
) {
    tracing::info!(
        nodes = orphans.nodes,
        users = orphans.users.len(),
        "took over the presence of nodes that stopped"
    );
    let mut pending: BTreeMap<TenantId, Vec<UserId>> = BTreeMap::new();
    for (tenant, user) in orphans.users {
        lock(&adopting)
            .entry(tenant.clone())
            .or_default()
            .insert(user.clone());
        pending.entry(tenant).or_default().push(user);
    }
    for attempt in 1..=ADOPTION_ATTEMPTS {
        let mut failed = BTreeMap::new();
        for (tenant, users) in pending {
            match service.announce_orphaned_presence(&tenant, &users).await {
                Ok(follow) => {
                    for user in &follow {
                        app.follow_presence(&tenant, user);
                    }
                    if let Some(set) = lock(&adopting).get_mut(&tenant) {
                        for user in &users {
                            set.remove(user);
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(%tenant, %err, attempt, "stopped node's users not announced yet");
                    failed.insert(tenant, users);
                }
            }
        }
        if failed.is_empty() {
            return;
        }
        pending = failed;
        tokio::time::sleep(retry_every).await;
    }
    tracing::error!(
        tenants = pending.len(),
        "stopped node's users never announced; their watchers see them as they were"
    );
}

/// At shutdown, once every socket is closed, leaves to another node the users
/// whose `offline` is still to come: those who left this node in the last ten
/// minutes, and those it took over and had not announced yet.
async fn hand_over_at_shutdown(presence: Arc<RedisPresence>, app: App, adopting: Adopting) {
    app.sockets_closed().await;
    let mut users = app.presence_followed();
    for (tenant, set) in lock(&adopting).iter() {
        users.extend(set.iter().map(|user| (tenant.clone(), user.clone())));
    }
    if let Err(err) = presence.hand_over(&users).await {
        tracing::warn!(%err, users = users.len(), "presence not handed over; their offline goes unannounced");
    }
}

/// The Redis bus's counters in Prometheus text format.
fn bus_metrics_text(m: &BusMetrics) -> String {
    format!(
        "# HELP afritalk_bus_reconnects_total Reconnections of the Redis event subscriber\n\
         # TYPE afritalk_bus_reconnects_total counter\n\
         afritalk_bus_reconnects_total {}\n\
         # HELP afritalk_bus_gap_seconds_total Seconds without a Redis event subscription\n\
         # TYPE afritalk_bus_gap_seconds_total counter\n\
         afritalk_bus_gap_seconds_total {}\n\
         # HELP afritalk_bus_subscribed Whether the node is subscribed to the event channel\n\
         # TYPE afritalk_bus_subscribed gauge\n\
         afritalk_bus_subscribed {}\n\
         # HELP afritalk_bus_events_total Events through the Redis bus by stage\n\
         # TYPE afritalk_bus_events_total counter\n\
         afritalk_bus_events_total{{stage=\"published\"}} {}\n\
         afritalk_bus_events_total{{stage=\"received\"}} {}\n\
         afritalk_bus_events_total{{stage=\"not_here\"}} {}\n\
         afritalk_bus_events_total{{stage=\"malformed\"}} {}\n",
        m.reconnects(),
        m.gap_seconds_total(),
        u8::from(m.is_subscribed()),
        m.published(),
        m.received(),
        m.not_here(),
        m.malformed(),
    )
}

/// The process's SIGHUPs, from now on (a SIGHUP no longer ends the process).
pub fn hangups() -> std::io::Result<Signal> {
    tokio::signal::unix::signal(SignalKind::hangup())
}

/// Reloads the TLS certificate and key from their files on every SIGHUP, as
/// certificate renewal tools expect; a failed reload keeps the current pair.
pub async fn reload_tls_on_sighup(tls: Tls, mut hangups: Signal) {
    while hangups.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => {
                tracing::info!(cert = %tls.files().cert.display(), "TLS certificate reloaded")
            }
            Err(err) => {
                tracing::error!(%err, "TLS certificate not reloaded; the current one stays")
            }
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
