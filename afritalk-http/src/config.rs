//! The gateway's settings (the listen address belongs to the binary).

use std::time::Duration;

/// Limits and policies of the HTTP and Socket.IO edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest REST request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest Socket.IO message (websocket message or frame, long-polling body).
    pub max_ws_message_bytes: usize,
    /// Most sockets one user may hold open on this node (at least 1); a
    /// handshake past it is refused with `too_many_sockets`.
    pub max_sockets_per_user: usize,
    /// Origins allowed to open a socket and to read REST answers in a browser
    /// (CORS) (`None`: any). Requests without `Origin` (non-browser clients) are
    /// always allowed.
    pub allowed_origins: Option<Vec<String>>,
    /// Header set by a trusted proxy with the client IP (e.g. `X-Forwarded-For`);
    /// `None`: the TCP peer address.
    pub client_ip_header: Option<String>,
    /// How long a new connection has to deliver its first request's headers,
    /// TLS handshake included; a connection silent that long is closed.
    pub first_request_timeout: Duration,
    /// How long a connection may have no request in flight (HTTP/1.1
    /// keep-alive and HTTP/2 alike) before it is closed.
    pub keep_alive_timeout: Duration,
    /// How long a REST request's body may take to arrive, whole (a slower one
    /// gets 408), and an Engine.IO polling POST (a slower one closes its
    /// connection).
    pub request_body_timeout: Duration,
    /// How long the server waits for a client's ack of an emit (`messaging:new` ✓✓).
    pub ack_timeout: Duration,
    /// Engine.IO heartbeat interval.
    pub ping_interval: Duration,
    /// Engine.IO heartbeat timeout.
    pub ping_timeout: Duration,
    /// How long shutdown waits for in-flight requests to finish.
    pub shutdown_grace: Duration,
    /// How often this node re-checks the presence of its users, to publish what
    /// time alone changed (a quiet minute → idle, ten minutes gone → offline).
    /// At most 30 s (`afritalk_core::rules::presence::SWEEP_INTERVAL_MAX`);
    /// longer is taken as 30 s.
    pub presence_sweep_interval: Duration,
    /// How often this node re-checks the tokens of its sockets, so that a socket
    /// that only listens is closed at most this long after its token expires.
    pub token_recheck_interval: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_ws_message_bytes: 64 * 1024,
            max_sockets_per_user: 32,
            allowed_origins: None,
            client_ip_header: None,
            first_request_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
            request_body_timeout: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(10),
            presence_sweep_interval: Duration::from_secs(15),
            token_recheck_interval: Duration::from_secs(15),
        }
    }
}

impl HttpConfig {
    /// Whether a socket handshake from `origin` may proceed.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match (&self.allowed_origins, origin) {
            (None, _) | (_, None) => true,
            (Some(list), Some(origin)) => list.iter().any(|o| o == origin),
        }
    }
}
