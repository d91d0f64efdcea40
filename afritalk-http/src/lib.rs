//! # afritalk-http
//!
//! The network edge of AfriTalk: REST (warp) and Socket.IO v4 (socketioxide) on
//! one port, turning requests and socket events into calls of
//! [`afritalk_core::MessagingService`] and its results into responses, acks and
//! emits. It holds no rules (they are the core's) and names no adapter.
//!
//! ```ignore
//! let app = App::new(service, TokenVerifier::new(public_key), HttpConfig::default(),
//!                    Arc::new(MyStoresPing));
//! bus.attach(app.event_sink());          // core events reach this node's sockets
//! serve(TcpListener::bind(addr).await?, None, app, shutdown_signal()).await?;
//! ```
//!
//! ## Layout
//! - [`config`]: [`HttpConfig`], limits and policies (body and socket caps, Origins, proxy header).
//! - [`app`]: [`App`], the shared state, and [`ReadinessCheck`] for `/readyz`.
//! - [`server`]: [`serve`], the accept loop with graceful shutdown.
//! - `connection`: one connection's first-request deadline, idle limit and graceful close.
//! - [`tls`]: [`Tls`], TLS 1.3 termination with a certificate reloadable while serving.
//! - `front`: rewrites the tenant socket path for Socket.IO, checks `Origin`, records the peer.
//! - `router`: the REST route table, its warp filter, 404/405/413 handling.
//! - `routes`: the REST handlers, one module per resource.
//! - `auth`: bearer token → [`afritalk_core::Actor`] with the client IP.
//! - `dto`: request bodies, queries and cursors, converted to the core's values.
//! - [`error`]: [`ApiError`], the one mapping to status + `{ error: { code, message } }`.
//! - `socket`: connect middleware, rooms, event handlers, and the event sink.
//! - `metrics`: Prometheus metrics; `openapi`: the OpenAPI 3.1 document.
//! - `presence_sweep`: publishes presence changes caused by time alone (idle, offline).

pub mod app;
mod auth;
pub mod config;
mod connection;
mod cors;
mod dto;
pub mod error;
mod front;
mod metrics;
mod openapi;
mod presence_sweep;
mod router;
mod routes;
pub mod server;
mod socket;
pub mod tls;
mod token_sweep;

pub use app::{AlwaysReady, App, MetricsSource, ReadinessCheck};
pub use auth::PeerAddr;
pub use config::HttpConfig;
pub use error::{ApiError, ErrorReply};
pub use server::serve;
pub use tls::{Tls, TlsError, TlsFiles};
