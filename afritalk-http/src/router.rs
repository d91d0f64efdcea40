//! The REST route table and the warp filter that serves it. One table drives
//! dispatch, 404/405 answers, the `route` label of the latency metric, and the
//! OpenAPI document, so none of them can drift from the others.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::Value;
use warp::Filter;
use warp::reply::{Reply as _, Response};

use crate::app::App;
use crate::auth::PeerAddr;
use afritalk_ports::MessagingError;

use crate::error::ApiError;
use crate::routes;

/// Which handler serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteId {
    Conversations,
    History,
    SendMessage,
    ReadMessage,
    GetMessage,
    EditMessage,
    DeleteMessage,
    ReadConversation,
    ConversationMessages,
    Sync,
    Audit,
    Notifications,
    ReadNotification,
    ReadAllNotifications,
    ArchiveNotification,
    CreateNotification,
    Presence,
    Directory,
    DirectoryEntry,
    UpsertUser,
    MessagingSettings,
    ReadMessagingSettings,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
}

/// A query parameter, for the OpenAPI document.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueryParam {
    pub(crate) name: &'static str,
    pub(crate) schema: &'static str,
    pub(crate) description: &'static str,
}

const fn q(name: &'static str, schema: &'static str, description: &'static str) -> QueryParam {
    QueryParam {
        name,
        schema,
        description,
    }
}

/// One REST route: method, path template (OpenAPI syntax), and its documentation.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) id: RouteId,
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) tag: &'static str,
    pub(crate) authenticated: bool,
    pub(crate) query: &'static [QueryParam],
    /// Name of the request body schema in `components/schemas`.
    pub(crate) body: Option<&'static str>,
    pub(crate) success: u16,
    /// Name of the response schema in `components/schemas` (`None`: not JSON).
    pub(crate) response: Option<&'static str>,
}

macro_rules! route {
    ($id:ident, $method:ident, $path:expr, $tag:literal, $summary:literal, auth = $auth:expr,
     query = $query:expr, body = $body:expr, success = $success:literal, response = $response:expr) => {
        Route {
            id: RouteId::$id,
            method: Method::$method,
            path: $path,
            summary: $summary,
            tag: $tag,
            authenticated: $auth,
            query: {
                const QUERY: &[QueryParam] = $query;
                QUERY
            },
            body: $body,
            success: $success,
            response: $response,
        }
    };
}

const LIMIT: QueryParam = q("limit", "integer", "Page size, 1 to 100 (default 50).");

/// Every REST route the server answers.
pub(crate) fn routes() -> &'static [Route] {
    use std::sync::OnceLock;
    static ROUTES: OnceLock<Vec<Route>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        vec![
            route!(Conversations, GET, concat!("/api/tenants/{tenantId}/", "messaging/conversations"), "messaging",
                "The caller's conversations, latest message first, with unread counts and the other participant. A last message to the caller is marked delivered.",
                auth = true, query = &[q("after", "string", "Cursor from a previous page's nextCursor."), LIMIT],
                body = None, success = 200, response = Some("ConversationPage")),
            route!(History, GET, concat!("/api/tenants/{tenantId}/", "messaging/conversation/{userId}"), "messaging",
                "History with a user, newest first; pass nextBeforeSeq as before for older messages. Messages to the caller are marked delivered.",
                auth = true, query = &[q("before", "integer", "Only messages with a smaller seq."), LIMIT],
                body = None, success = 200, response = Some("HistoryPage")),
            route!(SendMessage, POST, concat!("/api/tenants/{tenantId}/", "messaging/message"), "messaging",
                "Sends a message; answered once stored (201; 200 for a retry with the same clientMessageId).",
                auth = true, query = &[], body = Some("SendMessage"), success = 201, response = Some("SentMessage")),
            route!(ReadMessage, PUT, concat!("/api/tenants/{tenantId}/", "messaging/{messageId}/read"), "messaging",
                "Marks a message read (recipient only, idempotent).",
                auth = true, query = &[], body = None, success = 200, response = Some("Message")),
            route!(GetMessage, GET, concat!("/api/tenants/{tenantId}/", "messaging/{messageId}"), "messaging",
                "One message by id (participants only), e.g. a notification's relatedEntityId; fetched by its recipient, it is marked delivered.",
                auth = true, query = &[], body = None, success = 200, response = Some("Message")),
            route!(EditMessage, PATCH, concat!("/api/tenants/{tenantId}/", "messaging/{messageId}"), "messaging",
                "Edits a message (sender only, within 2 minutes).",
                auth = true, query = &[], body = Some("EditMessage"), success = 200, response = Some("Message")),
            route!(DeleteMessage, DELETE, concat!("/api/tenants/{tenantId}/", "messaging/{messageId}"), "messaging",
                "Deletes a message (sender only); a tombstone stays.",
                auth = true, query = &[], body = None, success = 200, response = Some("Message")),
            route!(ReadConversation, PUT, concat!("/api/tenants/{tenantId}/", "messaging/conversations/{conversationId}/read"), "messaging",
                "Marks the caller's messages of a conversation read, up to upToSeq (default: all).",
                auth = true, query = &[], body = Some("ReadUpTo"), success = 200, response = Some("ReadMessages")),
            route!(ConversationMessages, GET, concat!("/api/tenants/{tenantId}/", "messaging/conversations/{conversationId}/messages"), "messaging",
                "Catch-up in one conversation: messages after a seq, oldest first. Messages to the caller are marked delivered.",
                auth = true, query = &[q("after", "integer", "Only messages with a larger seq (default 0)."), LIMIT],
                body = None, success = 200, response = Some("ConversationCatchUp")),
            route!(Sync, GET, concat!("/api/tenants/{tenantId}/", "messaging/sync"), "messaging",
                "Everything a reconnecting client missed, in one call. Messages to the caller are marked delivered.",
                auth = true, query = &[
                    q("since", "date-time", "updatedAt of the last change seen (default: the beginning)."),
                    q("afterId", "uuid", "Id of the last message seen at that instant."),
                    q("settledUpTo", "date-time", "While paging: next.settledUpTo, passed back so that the run's final cursor stays before its first page."),
                    LIMIT],
                body = None, success = 200, response = Some("CatchUp")),
            route!(Audit, GET, concat!("/api/tenants/{tenantId}/", "messaging/audit"), "administration",
                "Audit rows of the tenant, newest first (PDG or service).",
                auth = true, query = &[
                    q("action", "string", "Only this action: one of the AuditEntry action values (e.g. message.send, forbidden_attempt); any other is 400."),
                    q("userId", "string", "Only rows of this user."),
                    q("since", "date-time", "Only rows at or after this time."),
                    q("before", "string", "Cursor: the nextBefore of the previous page."), LIMIT],
                body = None, success = 200, response = Some("AuditPage")),
            route!(Notifications, GET, concat!("/api/tenants/{tenantId}/", "notifications"), "notifications",
                "The caller's notifications, unread first, each group newest first.",
                auth = true, query = &[
                    q("after", "string", "Cursor from a previous page's nextCursor."),
                    q("includeArchived", "boolean", "Also list archived ones."), LIMIT],
                body = None, success = 200, response = Some("NotificationPage")),
            route!(ReadNotification, PUT, concat!("/api/tenants/{tenantId}/", "notifications/{notificationId}/read"), "notifications",
                "Marks a notification read.", auth = true, query = &[], body = None, success = 200,
                response = Some("Notification")),
            route!(ReadAllNotifications, PUT, concat!("/api/tenants/{tenantId}/", "notifications/read-all"), "notifications",
                "Marks every unread notification of the caller read; archived ones stay archived.",
                auth = true, query = &[], body = None, success = 200, response = Some("MarkedRead")),
            route!(ArchiveNotification, PUT, concat!("/api/tenants/{tenantId}/", "notifications/{notificationId}/archive"), "notifications",
                "Archives a notification.", auth = true, query = &[], body = None, success = 200,
                response = Some("Notification")),
            route!(CreateNotification, POST, concat!("/api/tenants/{tenantId}/", "notifications"), "notifications",
                "Creates an alert or system notification for a user (PDG or service).",
                auth = true, query = &[], body = Some("NewAlert"), success = 201, response = Some("Notification")),
            route!(Presence, GET, concat!("/api/tenants/{tenantId}/", "presence"), "presence",
                "Presence of every user of the tenant seen so far.",
                auth = true, query = &[], body = None, success = 200, response = Some("PresenceList")),
            route!(Directory, GET, concat!("/api/tenants/{tenantId}/", "directory/users"), "messaging",
                "Finds colleagues: the tenant's active users by name (accents and case ignored), without the caller, each saying whether the caller may start a conversation with them.",
                auth = true, query = &[
                    q("q", "string", "Only names containing this text (1 to 100 characters; accents and case ignored)."),
                    q("after", "string", "Cursor from a previous page's nextCursor."),
                    q("includeInactive", "boolean", "Also list deactivated users."), LIMIT],
                body = None, success = 200, response = Some("DirectoryPage")),
            route!(DirectoryEntry, GET, concat!("/api/tenants/{tenantId}/", "directory/users/{userId}"), "messaging",
                "One colleague by id, as the directory search shows them (404 if unknown).",
                auth = true, query = &[], body = None, success = 200, response = Some("Colleague")),
            route!(UpsertUser, PUT, concat!("/api/tenants/{tenantId}/", "directory/users/{userId}"), "administration",
                "Creates or replaces a directory entry (PDG or service); one already stored as given is left alone, with no audit row.",
                auth = true, query = &[], body = Some("DirectoryEntry"), success = 200, response = Some("DirectoryUser")),
            route!(ReadMessagingSettings, GET, concat!("/api/tenants/{tenantId}/", "settings/messaging"), "administration",
                "Whether messaging is on for the tenant (any token of the tenant: a front end shows or hides its chat).",
                auth = true, query = &[], body = None, success = 200, response = Some("MessagingSettings")),
            route!(MessagingSettings, PUT, concat!("/api/tenants/{tenantId}/", "settings/messaging"), "administration",
                "Switches messaging on or off for the tenant (service tokens).",
                auth = true, query = &[], body = Some("MessagingSettings"), success = 200,
                response = Some("MessagingSettings")),
            route!(Healthz, GET, "/healthz", "operations", "Liveness: the process answers.",
                auth = false, query = &[], body = None, success = 200, response = Some("Status")),
            route!(Readyz, GET, "/readyz", "operations", "Readiness: the stores answer.",
                auth = false, query = &[], body = None, success = 200, response = Some("Status")),
            route!(Metrics, GET, "/metrics", "operations", "Prometheus metrics (text format).",
                auth = false, query = &[], body = None, success = 200, response = None),
            route!(OpenApi, GET, "/openapi.json", "operations", "This document.",
                auth = false, query = &[], body = None, success = 200, response = None),
        ]
    })
}

/// A matched route with its path parameters.
pub(crate) struct Matched {
    pub(crate) route: &'static Route,
    params: Vec<(&'static str, String)>,
}

impl Matched {
    /// A path parameter by name (empty if absent, which the table rules out).
    pub(crate) fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }
}

/// Decodes `%XX` escapes of a path segment; `None` if that is not UTF-8.
pub(crate) fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A path segment a parameter takes: decoded, or the parameter's name when
/// its escapes do not decode to UTF-8.
type Params = Result<Vec<(&'static str, String)>, &'static str>;

/// Parameters if `path` fits `template`, and how many literal segments matched.
fn fit(template: &'static str, path: &[&str]) -> Option<(usize, Params)> {
    let parts: Vec<&'static str> = template.split('/').filter(|s| !s.is_empty()).collect();
    if parts.len() != path.len() {
        return None;
    }
    let mut literals = 0;
    let mut params = Ok(Vec::new());
    for (part, seg) in parts.iter().zip(path) {
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if let Ok(found) = &mut params {
                match percent_decode(seg) {
                    Some(value) => found.push((name, value)),
                    None => params = Err(name),
                }
            }
        } else if part == seg {
            literals += 1;
        } else {
            return None;
        }
    }
    Some((literals, params))
}

/// The routes that fit `path` best (most literal segments), whatever their
/// method: `…/messaging/sync` is the sync route's path, for every method, and
/// never a message id.
fn best_fits(path: &str) -> Vec<(&'static Route, Params)> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut best: Vec<(usize, &'static Route, Params)> = Vec::new();
    for route in routes() {
        let Some((literals, params)) = fit(route.path, &segments) else {
            continue;
        };
        match best.first() {
            Some((top, _, _)) if literals < *top => continue,
            Some((top, _, _)) if literals > *top => best.clear(),
            _ => {}
        }
        best.push((literals, route, params));
    }
    best.into_iter().map(|(_, r, p)| (r, p)).collect()
}

/// The methods a path answers, as `Allow` lists them (HEAD wherever GET,
/// OPTIONS everywhere); empty when no route has this path.
pub(crate) fn allowed_methods(path: &str) -> Vec<Method> {
    let mut allowed: Vec<Method> = Vec::new();
    for (route, _) in best_fits(path) {
        if !allowed.contains(&route.method) {
            allowed.push(route.method.clone());
        }
    }
    if allowed.is_empty() {
        return allowed;
    }
    if allowed.contains(&Method::GET) {
        allowed.push(Method::HEAD);
    }
    allowed.push(Method::OPTIONS);
    allowed
}

/// The route for a method and path: among the routes of the path's best fit,
/// the one of this method (HEAD is GET without the body); 404 when no route
/// has the path, 405 when only other methods do, 400 when a parameter's
/// escapes are not UTF-8.
pub(crate) fn find(method: &Method, path: &str) -> Result<Matched, ApiError> {
    let wanted = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let fits = best_fits(path);
    if fits.is_empty() {
        return Err(ApiError::RouteNotFound);
    }
    let Some((route, params)) = fits.into_iter().find(|(r, _)| r.method == *wanted) else {
        return Err(ApiError::MethodNotAllowed(allowed_methods(path)));
    };
    match params {
        Ok(params) => Ok(Matched { route, params }),
        Err(name) => Err(ApiError::BadRequest(format!(
            "{name}: is not valid percent-encoded UTF-8"
        ))),
    }
}

/// A REST request as the handlers see it.
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) query: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) peer: Option<PeerAddr>,
}

/// What a handler answers.
pub(crate) enum Reply {
    /// A JSON document with a status.
    Json(StatusCode, Value),
    /// Text with a content type.
    Text(&'static str, String),
}

impl Reply {
    /// 200 with `value` serialized.
    pub(crate) fn ok(value: impl serde::Serialize) -> Self {
        Self::with_status(StatusCode::OK, value)
    }

    /// `status` with `value` serialized.
    pub(crate) fn with_status(status: StatusCode, value: impl serde::Serialize) -> Self {
        match serde_json::to_value(value) {
            Ok(v) => Reply::Json(status, v),
            Err(err) => {
                tracing::error!(%err, "response not serializable");
                Reply::Json(StatusCode::INTERNAL_SERVER_ERROR, Value::Null)
            }
        }
    }
}

/// The JSON response of an error, with `Retry-After`, `Allow` or
/// `WWW-Authenticate` where the status calls for it.
pub(crate) fn error_response(err: &ApiError) -> Response {
    let reply = err.reply();
    let mut response =
        warp::reply::with_status(warp::reply::json(&reply.body()), reply.status).into_response();
    let headers = response.headers_mut();
    if let Some(retry) = reply.retry_after {
        let secs = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    if !reply.allow.is_empty()
        && let Ok(value) = HeaderValue::from_str(&methods_list(&reply.allow))
    {
        headers.insert(header::ALLOW, value);
    }
    if reply.status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Methods as an `Allow` header lists them.
fn methods_list(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn into_response(reply: Reply) -> Response {
    match reply {
        Reply::Json(status, value) => {
            warp::reply::with_status(warp::reply::json(&value), status).into_response()
        }
        Reply::Text(content_type, text) => {
            warp::reply::with_header(text, header::CONTENT_TYPE, content_type).into_response()
        }
    }
}

/// Internal path the front service sends refused socket handshakes to.
pub(crate) const ORIGIN_REFUSED_PATH: &str = "/__afritalk/origin-refused";

/// Refuses a body declared as anything but JSON (`application/json`, or a
/// `+json` type, with any parameters), rather than reading, say, a form as
/// JSON. A body without `Content-Type` is read as JSON: raw clients often
/// leave it out.
fn ensure_json(headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let Some(declared) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    if body.is_empty() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(declared.as_bytes());
    let essence = text.split(';').next().unwrap_or_default().trim();
    let json = essence.eq_ignore_ascii_case("application/json")
        || essence.split_once('/').is_some_and(|(kind, subtype)| {
            kind.eq_ignore_ascii_case("application")
                && subtype.to_ascii_lowercase().ends_with("+json")
        });
    if json {
        Ok(())
    } else {
        let shown: String = text.chars().take(100).collect();
        Err(ApiError::UnsupportedMediaType(shown))
    }
}

/// Reads the body up to the configured cap (413 beyond it), whole within
/// `within` (408 past it: a client that trickles its body must not hold the
/// connection and its buffer for as long as it likes).
async fn read_body<S, B>(
    headers: &HeaderMap,
    mut stream: S,
    cap: usize,
    within: Duration,
) -> Result<Bytes, ApiError>
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: bytes::Buf,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > cap as u64) {
        return Err(ApiError::PayloadTooLarge(cap));
    }
    let read = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let mut chunk =
                chunk.map_err(|e| ApiError::BadRequest(format!("could not read body: {e}")))?;
            if body.len() + chunk.remaining() > cap {
                return Err(ApiError::PayloadTooLarge(cap));
            }
            while chunk.has_remaining() {
                let part = chunk.chunk();
                body.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or(Err(ApiError::RequestTimeout(within)))
}

/// Serves one request: route, read the body, dispatch, record the latency.
async fn handle<S, B>(
    app: App,
    method: Method,
    path: warp::path::FullPath,
    query: String,
    headers: HeaderMap,
    peer: Option<PeerAddr>,
    stream: S,
) -> Response
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: bytes::Buf,
{
    let started = Instant::now();
    let (label, response) = if crate::cors::is_preflight(&method, path.as_str(), &headers) {
        let response = match crate::cors::preflight(&headers, &app.inner.config) {
            Some((status, cors_headers)) => {
                let mut response = warp::reply().into_response();
                *response.status_mut() = status;
                response.headers_mut().extend(cors_headers);
                response
            }
            None => error_response(&ApiError::OriginNotAllowed),
        };
        ("preflight", response)
    } else if method == Method::OPTIONS && !allowed_methods(path.as_str()).is_empty() {
        // Not a preflight: what the path allows, as RFC 9110 says.
        let mut response = warp::reply().into_response();
        *response.status_mut() = StatusCode::NO_CONTENT;
        if let Ok(allow) = HeaderValue::from_str(&methods_list(&allowed_methods(path.as_str()))) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        ("options", response)
    } else {
        match find(&method, path.as_str()) {
            Err(_) if path.as_str() == ORIGIN_REFUSED_PATH => {
                ("unmatched", error_response(&ApiError::OriginNotAllowed))
            }
            Err(err) => ("unmatched", error_response(&err)),
            Ok(matched) => {
                let label = matched.route.path;
                let config = &app.inner.config;
                let (cap, within) = (config.max_body_bytes, config.request_body_timeout);
                let body = read_body(&headers, stream, cap, within)
                    .await
                    .and_then(|body| ensure_json(&headers, &body).map(|()| body));
                let response = match body {
                    Err(err) => error_response(&err),
                    Ok(body) => {
                        let request = Request {
                            method: method.clone(),
                            query,
                            headers,
                            body,
                            peer,
                        };
                        // A client that goes away mid-request drops this future,
                        // but not the use case: it runs on in a task of its own,
                        // so no store transaction is cut in half (one cancelled
                        // midway would go back to the pool still open, holding
                        // its locks).
                        let serving = app.clone();
                        let task = tokio::spawn(async move {
                            routes::dispatch(&serving, &matched, &request).await
                        });
                        match task.await {
                            Ok(Ok(reply)) => into_response(reply),
                            Ok(Err(err)) => error_response(&err),
                            Err(failed) => {
                                error_response(&ApiError::Messaging(MessagingError::Unavailable(
                                    format!("request handler failed: {failed}"),
                                )))
                            }
                        }
                    }
                };
                (label, response)
            }
        }
    };
    app.inner.metrics.http_request(
        label,
        method_label(&method),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The method as a metrics label: a client may send any token as a method,
/// and each new one would add a set of series for good.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 7] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("other", |known| known.as_str())
}

/// The warp filter serving every REST route of the table.
pub(crate) fn filter(
    app: App,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<PeerAddr>())
        .and(warp::body::stream())
        .then(move |method, path, query, headers, peer, stream| {
            handle(
                app.clone(),
                method,
                path,
                query,
                headers,
                peer,
                Box::pin(stream),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_win_over_parameters() {
        let m = find(&Method::GET, "/api/tenants/t1/messaging/conversations").unwrap();
        assert_eq!(m.route.id, RouteId::Conversations);
        let m = find(
            &Method::PUT,
            "/api/tenants/t1/messaging/conversations/abc/read",
        )
        .unwrap();
        assert_eq!(m.route.id, RouteId::ReadConversation);
        assert_eq!(m.param("conversationId"), "abc");
        let m = find(&Method::PUT, "/api/tenants/t1/messaging/abc/read").unwrap();
        assert_eq!(m.route.id, RouteId::ReadMessage);
        let m = find(
            &Method::GET,
            "/api/tenants/a%40b/messaging/conversation/u%40x",
        )
        .unwrap();
        assert_eq!((m.param("tenantId"), m.param("userId")), ("a@b", "u@x"));
    }

    #[test]
    fn only_json_bodies_are_read() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            headers
        };
        for accepted in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert_eq!(ensure_json(&with(accepted), b"{}"), Ok(()), "{accepted}");
        }
        assert_eq!(ensure_json(&HeaderMap::new(), b"{}"), Ok(()));
        // Nothing to read, nothing to refuse (a bodiless PUT from a form library).
        assert_eq!(ensure_json(&with("text/plain"), b""), Ok(()));
        for refused in [
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "text/json+xml",
        ] {
            assert_eq!(
                ensure_json(&with(refused), b"{}"),
                Err(ApiError::UnsupportedMediaType(refused.into())),
                "{refused}"
            );
        }
    }

    #[test]
    fn metrics_label_unknown_methods_as_one() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let custom = Method::from_bytes(b"FOO1").unwrap();
        assert_eq!(method_label(&custom), "other");
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        assert!(matches!(
            find(&Method::GET, "/nope"),
            Err(ApiError::RouteNotFound)
        ));
        assert!(matches!(
            find(&Method::POST, "/api/tenants/t1/presence"),
            Err(ApiError::MethodNotAllowed(m))
                if m == vec![Method::GET, Method::HEAD, Method::OPTIONS]
        ));
        // A fixed path is never taken for a message id of another method.
        assert!(matches!(
            find(&Method::DELETE, "/api/tenants/t1/messaging/conversations"),
            Err(ApiError::MethodNotAllowed(m))
                if m == vec![Method::GET, Method::HEAD, Method::OPTIONS]
        ));
        assert!(matches!(
            find(&Method::GET, "/api/tenants/t1/messaging/message"),
            Err(ApiError::MethodNotAllowed(m)) if m == vec![Method::POST, Method::OPTIONS]
        ));
        // HEAD is GET; escapes that are not UTF-8 are the parameter's fault.
        let m = find(&Method::HEAD, "/healthz").unwrap();
        assert_eq!(m.route.id, RouteId::Healthz);
        assert!(matches!(
            find(&Method::GET, "/api/tenants/t1/directory/users/%E9"),
            Err(ApiError::BadRequest(msg)) if msg.starts_with("userId:")
        ));
        assert!(allowed_methods("/nope").is_empty());
    }
}
