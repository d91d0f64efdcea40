//! The accept loop: warp and Socket.IO on one listener, plain or TLS, with
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use afritalk_ports::ConnectionId;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use socketioxide::SocketIo;
use socketioxide::handler::ConnectHandler;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::app::App;
use crate::auth::PeerAddr;
use crate::config::HttpConfig;
use crate::connection::{Activity, Limits, drive};
use crate::front::{PathTenant, SIO_PATH, front};
use crate::metrics::Dropped;
use crate::socket::{self, Session};
use crate::tls::Tls;

/// TLS handshakes in progress at most; each holds a task, a descriptor and
/// key-exchange state until it completes or its time is up. High enough that
/// holding every slot with silent connections takes some 800 new connections
/// a second, sustained.
const MAX_TLS_HANDSHAKES: usize = 4096;

/// How long a TLS handshake may take (within the first-request deadline): a
/// real one takes a few round trips, so a silent client gives its slot back
/// early.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client connection: plain, or TLS terminated here. The TLS state is boxed:
/// inline, it would make every plain connection as large as a TLS one (about
/// 1.2 KiB more per idle socket, for the socket's whole life).
type Connection = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// Serves REST and Socket.IO on `listener` (over TLS when `tls` is given) until
/// `shutdown` completes, then stops accepting, closes the sockets (recording
/// their disconnection), and waits up to the configured grace period for
/// in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Tls>,
    app: App,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let config = app.inner.config.clone();
    let ws_cap = config.max_ws_message_bytes;
    let (sio, io) = SocketIo::builder()
        .req_path(SIO_PATH)
        .with_state(app.clone())
        .ack_timeout(config.ack_timeout)
        .ping_interval(config.ping_interval)
        .ping_timeout(config.ping_timeout)
        .max_payload(u64::try_from(ws_cap).unwrap_or(u64::MAX))
        .max_buffer_size(128)
        // Every socket keeps a read buffer of this size for its whole life;
        // our frames are small (a send is a few hundred bytes), and larger
        // ones (up to the cap) are simply read in more chunks. 1 KiB instead
        // of 4 KiB: 24 → 21 KiB of RSS per idle socket at 10,000 sockets.
        .ws_read_buffer_size(1024)
        .ws_max_message_size(ws_cap)
        .ws_max_frame_size(ws_cap)
        .build_with_inner_svc(warp::service(crate::router::filter(app.clone())));
    io.ns("/", socket::on_connect.with(socket::authenticate));
    if app.inner.io.set(io.clone()).is_err() {
        tracing::warn!("this App was served before; events go to the first server's sockets");
    }
    let sweeper = tokio::spawn(crate::presence_sweep::run(app.clone()));
    let token_sweeper = tokio::spawn(crate::token_sweep::run(app.clone()));

    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper enforces no header timeout at all; with it, a
    // kept-alive HTTP/1.1 connection that sends no next request is closed.
    // `drive` applies the same limit to every protocol; hyper's stays as the
    // one that also bounds headers sent too slowly.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.keep_alive_timeout);
    let connections = TaskTracker::new();
    // Cancelled first, to drop pending TLS handshakes; then `closing`, once
    // the sockets are closed, to close the connections gracefully.
    let stopping = CancellationToken::new();
    let closing = CancellationToken::new();
    let handshakes = Arc::new(Semaphore::new(MAX_TLS_HANDSHAKES));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let limits = Limits {
                    first_request_by: Instant::now() + config.first_request_timeout,
                    idle: config.keep_alive_timeout,
                    shutdown_grace: config.shutdown_grace,
                };
                let activity = Activity::new();
                let svc = edge_service(sio.clone(), config.clone(), peer, activity.clone());
                let app = app.clone();
                let closing = closing.clone();
                let Some(tls) = tls.clone() else {
                    let conn = builder.serve_connection_with_upgrades(
                        TokioIo::new(Connection::Left(stream)),
                        TowerToHyperService::new(svc),
                    )
                    .into_owned();
                    connections.spawn(async move {
                        drive(conn, &activity, limits, &closing, &app.inner.metrics).await;
                    });
                    continue;
                };
                // Each handshake costs a task, a descriptor and key-exchange
                // work: past the cap, new connections are dropped at once.
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "too many TLS handshakes in progress; connection dropped");
                    app.inner.metrics.connection_dropped(Dropped::TlsHandshakeLimit);
                    continue;
                };
                let builder = builder.clone();
                let stopping = stopping.clone();
                // The handshake runs in the connection's own task, so a slow
                // client never holds up the accept loop.
                connections.spawn(async move {
                    let handshake_deadline = limits
                        .first_request_by
                        .min(Instant::now() + TLS_HANDSHAKE_TIMEOUT);
                    let handshake = tokio::time::timeout_at(handshake_deadline, tls.accept(stream));
                    let stream = tokio::select! {
                        outcome = handshake => match outcome {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(err)) => {
                                tracing::debug!(%err, %peer, "TLS handshake failed");
                                app.inner.metrics.connection_dropped(Dropped::TlsHandshakeFailed);
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                app.inner.metrics.connection_dropped(Dropped::NoRequest);
                                return;
                            }
                        },
                        // Shutdown does not wait for handshakes.
                        () = stopping.cancelled() => return,
                    };
                    drop(permit);
                    let conn = builder.serve_connection_with_upgrades(
                        TokioIo::new(Connection::Right(Box::new(stream))),
                        TowerToHyperService::new(svc),
                    )
                    .into_owned();
                    drive(conn, &activity, limits, &closing, &app.inner.metrics).await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    stopping.cancel();
    sweeper.abort();
    token_sweeper.abort();
    // Socket events in flight (a send) finish and are acknowledged before the
    // sockets close; events arriving meanwhile are refused as unavailable.
    let events = &app.inner.events_in_flight;
    events.close();
    if tokio::time::timeout(config.shutdown_grace, events.wait())
        .await
        .is_err()
    {
        tracing::warn!("socket events still running after the grace period");
    }
    close_sockets(&app, &io).await;
    app.inner.sockets_closed.cancel();
    closing.cancel();
    connections.close();
    if tokio::time::timeout(config.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests still running after the grace period");
    }
    Ok(())
}

/// A failed request: hyper closes an HTTP/1.1 connection, or resets an
/// HTTP/2 stream, that answers with it.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An Engine.IO polling POST whose body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("Engine.IO request body not received within {0:?}")]
struct PollBodyTimeout(Duration);

/// The service one connection's requests go through: the front rewrite, the
/// count of requests in flight, and a deadline on Engine.IO polling POSTs.
/// engineioxide reads those bodies without one, so a client that trickles
/// its body would hold the connection and its buffer for as long as it
/// likes; past the deadline the request fails and hyper closes the
/// connection. (REST bodies have their deadline, with a 408, in the router;
/// long-polling GETs are held on purpose and have none.)
fn edge_service<S, B>(
    sio: S,
    config: HttpConfig,
    peer: SocketAddr,
    activity: Arc<Activity>,
) -> impl tower::Service<
    http::Request<Incoming>,
    Response = http::Response<B>,
    Error = BoxError,
    Future = impl Future<Output = Result<http::Response<B>, BoxError>> + Send,
> + Clone
where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    tower::service_fn(move |req: http::Request<Incoming>| {
        let in_flight = activity.begin();
        // Preflights are answered whole by the router; every other answer
        // names the page's origin if it may read it.
        let path = req.uri().path();
        let preflight = crate::cors::is_preflight(req.method(), path, req.headers());
        let origin = crate::cors::allowed_origin(path, req.headers(), &config);
        let req = front(req, &config, PeerAddr(peer));
        let is_poll_body =
            req.method() == http::Method::POST && req.extensions().get::<PathTenant>().is_some();
        let within = is_poll_body.then_some(config.request_body_timeout);
        let answer = sio.clone().oneshot(req);
        async move {
            let response = match within {
                None => answer.await.map_err(Into::into),
                Some(within) => match tokio::time::timeout(within, answer).await {
                    Ok(response) => response.map_err(Into::into),
                    Err(_) => {
                        tracing::debug!(%peer, "Engine.IO request body too slow; connection closed");
                        Err(PollBodyTimeout(within).into())
                    }
                },
            };
            drop(in_flight);
            response.map(|mut response| {
                if !preflight {
                    crate::cors::expose(response.headers_mut(), origin);
                }
                response
            })
        }
    })
}

/// `io.close()` does not run disconnect handlers (socketioxide 0.18.9), so record
/// each socket's disconnection first.
async fn close_sockets(app: &App, io: &SocketIo) {
    for s in io.sockets() {
        if let Some(session) = s.extensions.get::<Session>() {
            let connection = ConnectionId::new(s.id.to_string());
            if let Err(err) = app
                .inner
                .service
                .disconnect(&session.actor, &connection)
                .await
            {
                tracing::warn!(%err, "disconnect not recorded at shutdown");
            }
            // Their offline is still to come: handed over with the others.
            app.follow_presence(&session.actor.tenant, &session.actor.user);
            app.inner.metrics.socket_closed();
        }
    }
    io.close().await;
}
