//! A minimal Socket.IO v4 client (Engine.IO v4 over websocket only), built to
//! hold thousands of sockets in one process: one tokio task and one small
//! websocket buffer per socket, no polling transport, no reconnection.
//!
//! The handshake is what `socket.io-client` does with `transports: ["websocket"]`:
//! `GET {path}/?EIO=4&transport=websocket` upgraded to a websocket, the server's
//! open packet `0{…}`, our `40{"token":…}`, and the server's `40{"sid":…}` (or
//! `44{…}` when the token is refused). Afterwards the socket task answers pings,
//! acks every server event that asks for one (with the reply of the
//! [`EventHandler`]), and hands the acks of our events back to the handler with
//! the tag the caller gave.
//!
//! An `https://` server URL makes every socket (and the REST setup calls) speak
//! TLS, trusting only the certificate authority given (`--ca-file`), so that
//! a server terminating TLS itself is measured the way its clients reach it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};
use tokio_util::either::Either;

use crate::protocol::{self, Packet};

/// Why a socket could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL is not `http://host:port[/prefix]` or `https://…`.
    #[error("bad server URL `{0}`: expected http://host:port or https://host:port")]
    BadUrl(String),
    /// The certificate authority to trust could not be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// TCP or websocket failure.
    #[error("transport: {0}")]
    Transport(String),
    /// The server broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server refused the Socket.IO connection (bad token, unknown role…).
    #[error("connection refused by the server: {0}")]
    Refused(String),
    /// No answer in time.
    #[error("handshake timed out")]
    Timeout,
}

/// Where the sockets of one tenant connect: a resolved address, the
/// websocket URL of the tenant's Socket.IO path, and the TLS settings when the
/// server speaks TLS.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The server address (resolved once).
    pub addr: SocketAddr,
    /// `ws://host:port/api/tenants/{tenant}/messaging/socket/?EIO=4&transport=websocket`
    /// (`wss://` over TLS).
    pub ws_url: String,
    /// The HTTP base URL, for the REST calls (`http://host:port` or `https://…`).
    pub http_base: String,
    /// The client for the REST calls (trusting the same authority as the sockets).
    pub http: reqwest::Client,
    /// How sockets open TLS (`None`: plain TCP).
    tls: Option<TlsTarget>,
}

/// What a TLS socket needs: the connector trusting the given authority, and
/// the name the server's certificate must carry.
#[derive(Clone)]
struct TlsTarget {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTarget")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl Endpoint {
    /// The endpoint of `tenant` on the server at `url` (`http://host:port`, or
    /// `https://host:port` with `ca_file`, the PEM authority to trust; a
    /// trailing slash or path prefix is kept for the REST base).
    pub fn new(url: &str, tenant: &str, ca_file: Option<&Path>) -> Result<Self, ClientError> {
        let trimmed = url.trim_end_matches('/');
        let (secure, rest) = if let Some(rest) = trimmed.strip_prefix("https://") {
            (true, rest)
        } else {
            let rest = trimmed
                .strip_prefix("http://")
                .or_else(|| trimmed.strip_prefix("ws://"))
                .ok_or_else(|| ClientError::BadUrl(url.to_owned()))?;
            (false, rest)
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
            .map_err(|_| ClientError::BadUrl(url.to_owned()))?
            .next()
            .ok_or_else(|| ClientError::BadUrl(url.to_owned()))?;
        let roots = match (secure, ca_file) {
            (false, None) => RootCertStore::empty(),
            (false, Some(_)) => {
                return Err(ClientError::Tls(
                    "--ca-file is for an https:// server; this one is plain http://".into(),
                ));
            }
            (true, None) => {
                return Err(ClientError::Tls(
                    "an https:// server needs --ca-file, the PEM authority to trust".into(),
                ));
            }
            (true, Some(ca_file)) => trusted(ca_file)?,
        };
        // The REST client gets the sockets' TLS settings even for a plain
        // server (where it never uses them), so it needs no process-wide
        // crypto provider.
        let config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(config.clone())
            .build()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let tls = if secure {
            Some(TlsTarget {
                connector: TlsConnector::from(Arc::new(config)),
                server_name: server_name(authority)?,
            })
        } else {
            None
        };
        let (ws, http_scheme) = if secure {
            ("wss", "https")
        } else {
            ("ws", "http")
        };
        Ok(Self {
            addr,
            ws_url: format!(
                "{ws}://{authority}{prefix}/api/tenants/{tenant}/messaging/socket/?EIO=4&transport=websocket"
            ),
            http_base: format!("{http_scheme}://{authority}{prefix}"),
            http,
            tls,
        })
    }
}

/// The certificates of `ca_file` (PEM), the only ones a TLS socket trusts.
fn trusted(ca_file: &Path) -> Result<RootCertStore, ClientError> {
    let tls_error =
        |e: &dyn std::fmt::Display| ClientError::Tls(format!("{}: {e}", ca_file.display()));
    let pem = std::fs::read(ca_file).map_err(|e| tls_error(&e))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| tls_error(&e))?)
            .map_err(|e| tls_error(&e))?;
    }
    if roots.is_empty() {
        return Err(tls_error(&"no PEM certificate"));
    }
    Ok(roots)
}

/// The name the server's certificate must carry: the host of `authority`
/// (`host:port`, `[v6]:port`).
fn server_name(authority: &str) -> Result<ServerName<'static>, ClientError> {
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|e| ClientError::BadUrl(format!("{host}: {e}")))
}

/// What the sockets do with what the server sends them. Called on the socket's
/// task, right after the frame was read (so timestamps taken here are receive
/// times).
pub trait EventHandler: Send + Sync + 'static {
    /// A server event on socket `socket`; the returned value is the ack
    /// argument sent back when the server asked for an ack.
    fn on_event(&self, socket: usize, name: &str, data: &Value) -> Value;
    /// The ack of an event emitted with [`SocketHandle::emit`] under `tag`.
    fn on_ack(&self, socket: usize, tag: u64, data: &Value);
    /// The socket ended (server close, transport error, or our close).
    fn on_close(&self, socket: usize, reason: &str);
}

/// A command for a socket's task.
#[derive(Debug)]
enum Command {
    Emit {
        name: &'static str,
        data: Value,
        tag: u64,
    },
    Close,
}

/// A connected socket. Dropping every handle closes it.
#[derive(Debug, Clone)]
pub struct SocketHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl SocketHandle {
    /// Emits `name` with `data`, asking for an ack that reaches
    /// [`EventHandler::on_ack`] with `tag`. Never waits: the frame is queued for
    /// the socket's task. Returns false when the socket is gone.
    pub fn emit(&self, name: &'static str, data: Value, tag: u64) -> bool {
        self.tx.send(Command::Emit { name, data, tag }).is_ok()
    }

    /// Closes the socket (a websocket close frame, then the task ends).
    pub fn close(&self) {
        let _ = self.tx.send(Command::Close);
    }
}

type Ws = WebSocketStream<Either<TcpStream, TlsStream<TcpStream>>>;

/// The websocket settings: small buffers so that 10,000 sockets fit in one
/// process (tungstenite's default read buffer is 128 KiB per socket).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

async fn next_packet(ws: &mut Ws) -> Result<Packet, ClientError> {
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Text(text))) => {
                return protocol::decode(text.as_str())
                    .map_err(|e| ClientError::Protocol(e.to_string()));
            }
            Some(Ok(WsMessage::Close(_))) | None => {
                return Err(ClientError::Transport("closed during the handshake".into()));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ClientError::Transport(e.to_string())),
        }
    }
}

async fn send_text(ws: &mut Ws, text: String) -> Result<(), ClientError> {
    ws.send(WsMessage::text(text))
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))
}

async fn handshake(endpoint: &Endpoint, token: &str) -> Result<Ws, ClientError> {
    let tcp = TcpStream::connect(endpoint.addr)
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let stream = match &endpoint.tls {
        None => Either::Left(tcp),
        Some(tls) => Either::Right(
            tls.connector
                .connect(tls.server_name.clone(), tcp)
                .await
                .map_err(|e| ClientError::Transport(format!("TLS: {e}")))?,
        ),
    };
    let (mut ws, _) = client_async_with_config(endpoint.ws_url.as_str(), stream, Some(ws_config()))
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    match next_packet(&mut ws).await? {
        Packet::Open(_) => {}
        other => {
            return Err(ClientError::Protocol(format!(
                "expected the open packet, got {other:?}"
            )));
        }
    }
    send_text(
        &mut ws,
        protocol::encode_connect(&json!({ "token": token })),
    )
    .await?;
    loop {
        match next_packet(&mut ws).await? {
            Packet::Connect(_) => return Ok(ws),
            Packet::ConnectError(data) => {
                let message = data
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| data.to_string());
                return Err(ClientError::Refused(message));
            }
            Packet::Ping => send_text(&mut ws, protocol::PONG.to_owned()).await?,
            Packet::Noop | Packet::Pong => {}
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected the connect packet, got {other:?}"
                )));
            }
        }
    }
}

/// Connects socket number `index` with `token`, within `timeout`, and spawns
/// its task; server events and acks go to `handler`.
pub async fn connect<H: EventHandler>(
    endpoint: &Endpoint,
    token: &str,
    index: usize,
    handler: Arc<H>,
    timeout: Duration,
) -> Result<SocketHandle, ClientError> {
    let ws = tokio::time::timeout(timeout, handshake(endpoint, token))
        .await
        .map_err(|_| ClientError::Timeout)??;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(ws, rx, index, handler));
    Ok(SocketHandle { tx })
}

/// The socket's task: reads frames and commands until either side closes.
async fn run<H: EventHandler>(
    mut ws: Ws,
    mut rx: mpsc::UnboundedReceiver<Command>,
    index: usize,
    handler: Arc<H>,
) {
    let mut next_id: u64 = 0;
    let mut pending: HashMap<u64, u64> = HashMap::new();
    let reason = loop {
        tokio::select! {
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(WsMessage::Text(text))) => text,
                    Some(Ok(WsMessage::Close(_))) | None => break "closed by the server".to_owned(),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break format!("transport error: {e}"),
                };
                let reply = match protocol::decode(text.as_str()) {
                    Ok(Packet::Ping) => Some(protocol::PONG.to_owned()),
                    Ok(Packet::Event { id, name, data }) => {
                        let ack = handler.on_event(index, &name, &data);
                        id.map(|id| protocol::encode_ack(id, &ack))
                    }
                    Ok(Packet::Ack { id, data }) => {
                        if let Some(tag) = pending.remove(&id) {
                            handler.on_ack(index, tag, &data);
                        }
                        None
                    }
                    Ok(Packet::Disconnect) | Ok(Packet::Close) => break "disconnected by the server".to_owned(),
                    Ok(_) => None,
                    Err(e) => break format!("protocol error: {e}"),
                };
                if let Some(reply) = reply
                    && let Err(e) = ws.send(WsMessage::text(reply)).await
                {
                    break format!("transport error: {e}");
                }
            }
            command = rx.recv() => match command {
                Some(Command::Emit { name, data, tag }) => {
                    let id = next_id;
                    next_id += 1;
                    pending.insert(id, tag);
                    if let Err(e) = ws.send(WsMessage::text(protocol::encode_event(Some(id), name, &data))).await {
                        break format!("transport error: {e}");
                    }
                }
                Some(Command::Close) | None => {
                    let _ = ws.close(None).await;
                    break "closed by the benchmark".to_owned();
                }
            },
        }
    };
    handler.on_close(index, &reason);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn endpoints_name_the_tenant_socket_path() {
        let e = Endpoint::new("http://127.0.0.1:8080/", "acme", None).unwrap();
        assert_eq!(e.addr.port(), 8080);
        assert_eq!(
            e.ws_url,
            "ws://127.0.0.1:8080/api/tenants/acme/messaging/socket/?EIO=4&transport=websocket"
        );
        assert_eq!(e.http_base, "http://127.0.0.1:8080");
        assert!(Endpoint::new("ftp://127.0.0.1:8080", "acme", None).is_err());
        assert!(Endpoint::new("http://", "acme", None).is_err());
    }

    #[test]
    fn an_https_endpoint_needs_an_authority_that_reads() {
        let err = Endpoint::new("https://localhost:8443", "acme", None).unwrap_err();
        assert!(err.to_string().contains("--ca-file"), "{err}");
        let missing = Path::new("/nonexistent/ca.pem");
        let err = Endpoint::new("https://localhost:8443", "acme", Some(missing)).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let err = Endpoint::new("http://127.0.0.1:8080", "acme", Some(missing)).unwrap_err();
        assert!(err.to_string().contains("plain http://"), "{err}");
    }
}
