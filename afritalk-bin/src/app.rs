//! The application: built from a [`Config`], bound to its listen address, served
//! until a shutdown signal. Tests build it on port 0 and stop it at will.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use afritalk_adapter_memory::SystemClock;
use afritalk_auth::TokenVerifier;
use afritalk_core::MessagingService;
use afritalk_http::{App, HttpConfig, ReadinessCheck};
use async_trait::async_trait;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::keys::{self, KeyFileError};
use crate::wiring::{self, Storage, StorageError};

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Keys could not be loaded or created.
    #[error(transparent)]
    Keys(#[from] KeyFileError),
    /// Storage could not be opened or migrated.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// `/readyz`: ready when the storage answers a query.
struct StorageReadiness(Storage);

#[async_trait]
impl ReadinessCheck for StorageReadiness {
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    app: App,
    service: MessagingService,
}

impl Application {
    /// Opens storage (migrating it), loads keys, wires adapters and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        keys::ensure_data_dir(&config.data_dir)?;
        let public_key = keys::root_public_key(&config)?;
        let storage = wiring::open_storage(&config).await?;
        let clock = Arc::new(SystemClock::new());
        let realtime = wiring::in_process_realtime(clock.clone());
        let service = wiring::service(&storage, &realtime, clock);
        let http_config = HttpConfig {
            allowed_origins: config.allowed_origins.clone(),
            client_ip_header: config.trusted_proxy_header.clone(),
            ..HttpConfig::default()
        };
        let app = App::new(
            service.clone(),
            TokenVerifier::new(public_key),
            http_config,
            Arc::new(StorageReadiness(storage.clone())),
        );
        realtime.bus.attach(app.event_sink());
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
            storage = storage.backend,
            realtime = realtime.backend,
            "AfriTalk listening (REST + Socket.IO at /api/tenants/{{tenantId}}/messaging/socket)"
        );
        Ok(Self {
            listener,
            address,
            app,
            service,
        })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The bound port (useful when the configuration asked for port 0).
    pub fn port(&self) -> u16 {
        self.address.port()
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
        afritalk_http::serve(self.listener, self.app, shutdown).await?;
        tracing::info!("AfriTalk stopped");
        Ok(())
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
