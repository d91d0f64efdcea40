//! One client connection's life after it is accepted: the deadline for its
//! first request, the limit on how long it may sit idle between requests, and
//! its part in a graceful shutdown.
//!
//! hyper gives none of these for every protocol: it waits for a connection's
//! first bytes without a timeout, and its keep-alive limit (the header read
//! timeout) is HTTP/1.1's only. An HTTP/2 connection that made one request
//! could otherwise stay open, idle, for ever. So each connection counts its
//! requests in flight in an [`Activity`] (the connection's service calls
//! [`Activity::begin`] for each request), and [`drive`] closes it gracefully
//! once it has had none for the keep-alive limit, then drops it if that close
//! has not ended it within a grace. A connection upgraded to a websocket
//! leaves hyper (its future ends) and is Engine.IO's from then on, with its own
//! heartbeat.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::HttpService;
use hyper_util::server::conn::auto;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Dropped, Metrics};

/// What one connection's requests are doing: whether it made one, how many are
/// being served, and when the last one started or ended.
#[derive(Debug)]
pub(crate) struct Activity {
    opened: Instant,
    served: AtomicBool,
    in_flight: AtomicUsize,
    /// Milliseconds from `opened` to the last request's start or end.
    last_change_ms: AtomicU64,
}

impl Activity {
    /// A connection opened now, with no request yet.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            served: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_change_ms: AtomicU64::new(0),
        })
    }

    /// Records a request whose headers were read; it counts as in flight until
    /// the returned guard is dropped (when its response is ready).
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.served.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_change_ms.fetch_max(ms, Ordering::AcqRel);
    }

    fn served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// Since when no request has been in flight; `None` while one is.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ms = self.last_change_ms.load(Ordering::Acquire);
        Some(self.opened + Duration::from_millis(ms))
    }
}

/// A request in flight on a connection (see [`Activity::begin`]).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // The time first: the driver never sees no request in flight with the
        // time of an older one.
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long a connection closed for idleness may take to finish: a client
/// that never reads its last answer, or never acknowledges HTTP/2's GOAWAY,
/// would otherwise keep it open.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(10);

/// The limits [`drive`] applies to one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// When the first request's headers must have been read.
    pub(crate) first_request_by: Instant,
    /// How long the connection may have no request in flight.
    pub(crate) idle: Duration,
    /// How long it may take to finish once shutdown has begun.
    pub(crate) shutdown_grace: Duration,
}

/// A connection hyper serves, which can be asked to finish what it is doing
/// and close.
pub(crate) trait Closable: Future {
    /// Stop taking new requests; close once those in flight are answered.
    fn close_gracefully(self: Pin<&mut Self>);
}

impl<I, S, E, B> Closable for auto::UpgradeableConnection<'_, I, S, E>
where
    Self: Future,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: auto::HttpServerConnExec<S::Future, B>,
{
    fn close_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Drives one connection to its end. It is dropped (closed at once) if it has
/// not delivered its first request's headers by the deadline; closed
/// gracefully once it has had no request in flight for the idle limit, or
/// when `stopping` is cancelled; and dropped if a graceful close has not
/// ended it within its grace.
pub(crate) async fn drive<C, E>(
    conn: C,
    activity: &Activity,
    limits: Limits,
    stopping: &CancellationToken,
    metrics: &Metrics,
) where
    C: Closable<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let mut wake = limits.first_request_by.min(Instant::now() + limits.idle);
    // Set once a graceful close has begun: when to give up waiting for it.
    let mut close_by: Option<Instant> = None;
    let result = loop {
        tokio::select! {
            result = &mut conn => break result,
            () = stopping.cancelled(), if close_by.is_none() => {
                conn.as_mut().close_gracefully();
                let by = Instant::now() + limits.shutdown_grace;
                close_by = Some(by);
                wake = wake.min(by);
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                let served = activity.served();
                if !served && now >= limits.first_request_by {
                    tracing::debug!("no request before the deadline; connection closed");
                    metrics.connection_dropped(Dropped::NoRequest);
                    return;
                }
                if let Some(by) = close_by {
                    if now >= by {
                        tracing::debug!("not closed within its grace; connection dropped");
                        return;
                    }
                    wake = if served { by } else { by.min(limits.first_request_by) };
                    continue;
                }
                if !served {
                    wake = limits.first_request_by;
                    continue;
                }
                match activity.idle_since() {
                    None => wake = now + limits.idle,
                    Some(since) if now >= since + limits.idle => {
                        tracing::debug!("idle past the keep-alive limit; connection closed");
                        conn.as_mut().close_gracefully();
                        let by = now + IDLE_CLOSE_GRACE;
                        close_by = Some(by);
                        wake = by;
                    }
                    Some(since) => wake = since + limits.idle,
                }
            }
        }
    };
    if let Err(err) = result {
        tracing::debug!(%err, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::task::{Context, Poll};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_with_no_request_in_flight() {
        let activity = Activity::new();
        assert!(!activity.served());
        let first = activity.begin();
        let second = activity.begin();
        assert!(activity.served());
        tokio::time::advance(Duration::from_secs(3)).await;
        drop(first);
        assert_eq!(activity.idle_since(), None, "one still in flight");
        tokio::time::advance(Duration::from_secs(2)).await;
        drop(second);
        let since = activity.idle_since().unwrap();
        assert_eq!(since, activity.opened + Duration::from_secs(5));
    }

    /// A connection that never ends by itself, even when asked to close: a
    /// client that never acknowledges a GOAWAY, say.
    struct Stubborn<'a>(&'a AtomicU32);

    impl Future for Stubborn<'_> {
        type Output = Result<(), String>;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            Poll::Pending
        }
    }

    impl Closable for Stubborn<'_> {
        fn close_gracefully(self: Pin<&mut Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn limits(first_request: Duration) -> Limits {
        Limits {
            first_request_by: Instant::now() + first_request,
            idle: Duration::from_secs(75),
            shutdown_grace: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_asked_to_close_then_dropped_after_its_grace() {
        let asked = AtomicU32::new(0);
        let activity = Activity::new();
        drop(activity.begin());
        let started = Instant::now();
        let stopping = CancellationToken::new();
        let metrics = Metrics::new();
        let limits = limits(Duration::from_secs(10));
        drive(Stubborn(&asked), &activity, limits, &stopping, &metrics).await;
        assert_eq!(asked.load(Ordering::Relaxed), 1);
        assert_eq!(started.elapsed(), limits.idle + IDLE_CLOSE_GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_keeps_the_connection_open() {
        let asked = AtomicU32::new(0);
        let activity = Activity::new();
        let in_flight = activity.begin();
        let stopping = CancellationToken::new();
        let metrics = Metrics::new();
        let driven = drive(
            Stubborn(&asked),
            &activity,
            limits(Duration::from_secs(10)),
            &stopping,
            &metrics,
        );
        let timed_out = tokio::time::timeout(Duration::from_secs(3600), driven).await;
        assert!(timed_out.is_err(), "an hour with a request in flight");
        assert_eq!(asked.load(Ordering::Relaxed), 0);
        drop(in_flight);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_asks_once_and_keeps_the_first_request_deadline() {
        let asked = AtomicU32::new(0);
        let activity = Activity::new();
        let started = Instant::now();
        let stopping = CancellationToken::new();
        stopping.cancel();
        let metrics = Metrics::new();
        // No request yet: dropped at the 3 s deadline, before the 10 s grace.
        let limits = limits(Duration::from_secs(3));
        drive(Stubborn(&asked), &activity, limits, &stopping, &metrics).await;
        assert_eq!(asked.load(Ordering::Relaxed), 1);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        // Served: dropped when the shutdown grace is over.
        drop(activity.begin());
        let started = Instant::now();
        drive(Stubborn(&asked), &activity, limits, &stopping, &metrics).await;
        assert_eq!(started.elapsed(), limits.shutdown_grace);
    }
}
