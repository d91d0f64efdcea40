//! Prometheus metrics of the gateway, in a registry of its own (no globals, so
//! several servers in one test process do not mix their counts).

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// The gateway's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    connections: IntGauge,
    messages_sent: IntCounter,
    delivery_latency: Histogram,
    http_latency: HistogramVec,
    connections_dropped: IntCounterVec,
    events_dropped: IntCounter,
    sockets_over_cap: IntCounter,
}

/// Why the server dropped a client connection before serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// No complete request (plain) or no finished handshake (TLS) by the deadline.
    NoRequest,
    /// The TLS handshake failed (wrong protocol or version, bad hello).
    TlsHandshakeFailed,
    /// Too many TLS handshakes were already in progress.
    TlsHandshakeLimit,
}

impl Dropped {
    fn label(self) -> &'static str {
        match self {
            Dropped::NoRequest => "no_request",
            Dropped::TlsHandshakeFailed => "tls_handshake_failed",
            Dropped::TlsHandshakeLimit => "tls_handshake_limit",
        }
    }
}

/// Sub-millisecond to seconds: the delivery target is single-digit milliseconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.015, 0.03, 0.06, 0.125, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The names, help texts, buckets and label sets below are constants checked by
/// the tests: building them cannot fail on any input a user controls.
const VALID: &str = "constant metric definitions are valid";

impl Metrics {
    #[allow(clippy::expect_used)]
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let connections = IntGauge::new(
            "afritalk_socket_connections",
            "Open Socket.IO connections on this node",
        )
        .expect(VALID);
        let messages_sent = IntCounter::new(
            "afritalk_messages_sent_total",
            "Messages stored through this node (retries excluded)",
        )
        .expect(VALID);
        let delivery_latency = Histogram::with_opts(
            HistogramOpts::new(
                "afritalk_delivery_latency_seconds",
                "From a message being stored to a recipient socket acknowledging it",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect(VALID);
        let http_latency = HistogramVec::new(
            HistogramOpts::new(
                "afritalk_http_request_duration_seconds",
                "REST request latency by route template, method and status",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method", "status"],
        )
        .expect(VALID);
        let connections_dropped = IntCounterVec::new(
            Opts::new(
                "afritalk_connections_dropped_total",
                "Client connections closed before a request was served, by reason",
            ),
            &["reason"],
        )
        .expect(VALID);
        let events_dropped = IntCounter::new(
            "afritalk_socket_events_dropped_total",
            "Events not emitted to a socket whose outgoing buffer was full (its \
             client is then told to catch up)",
        )
        .expect(VALID);
        let sockets_over_cap = IntCounter::new(
            "afritalk_socket_handshakes_over_cap_total",
            "Socket handshakes refused (too_many_sockets) because their user already \
             held the most sockets allowed on this node",
        )
        .expect(VALID);
        // Every reason from the start, at 0, so that rates and alerts see
        // the series before the first drop.
        for why in [
            Dropped::NoRequest,
            Dropped::TlsHandshakeFailed,
            Dropped::TlsHandshakeLimit,
        ] {
            connections_dropped.with_label_values(&[why.label()]);
        }
        for collector in [
            Box::new(connections.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(messages_sent.clone()),
            Box::new(delivery_latency.clone()),
            Box::new(http_latency.clone()),
            Box::new(connections_dropped.clone()),
            Box::new(events_dropped.clone()),
            Box::new(sockets_over_cap.clone()),
        ] {
            if let Err(err) = registry.register(collector) {
                tracing::error!(%err, "metric not registered");
            }
        }
        Self {
            registry,
            connections,
            messages_sent,
            delivery_latency,
            http_latency,
            connections_dropped,
            events_dropped,
            sockets_over_cap,
        }
    }

    /// Counts a handshake refused because its user held the most sockets allowed.
    pub(crate) fn socket_over_cap(&self) {
        self.sockets_over_cap.inc();
    }

    /// Counts an event lost for a socket whose outgoing buffer was full.
    pub(crate) fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    pub(crate) fn connection_dropped(&self, why: Dropped) {
        self.connections_dropped
            .with_label_values(&[why.label()])
            .inc();
    }

    pub(crate) fn socket_opened(&self) {
        self.connections.inc();
    }

    pub(crate) fn socket_closed(&self) {
        self.connections.dec();
    }

    pub(crate) fn message_sent(&self) {
        self.messages_sent.inc();
    }

    pub(crate) fn delivered_after(&self, latency: Duration) {
        self.delivery_latency.observe(latency.as_secs_f64());
    }

    pub(crate) fn http_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.http_latency
            .with_label_values(&[route, method, &status.to_string()])
            .observe(took.as_secs_f64());
    }

    /// The text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%err, "metrics not encoded");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
