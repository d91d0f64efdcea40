//! The one mapping from every failure (use case, token, request shape, routing)
//! to an HTTP status and the `{ "error": { "code", "message" } }` body, shared by
//! REST responses and Socket.IO acks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use afritalk_auth::AuthError;
use afritalk_ports::MessagingError;
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// Anything a request or socket event can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// A use case refused or failed.
    #[error(transparent)]
    Messaging(#[from] MessagingError),
    /// The token was refused.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// No bearer token was given.
    #[error("missing bearer token")]
    MissingToken,
    /// The body or query could not be read (malformed JSON, wrong types, unknown fields).
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than the configured cap.
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body is not declared as JSON (the `Content-Type` it was sent with).
    #[error("the body must be JSON (Content-Type: application/json), not {0}")]
    UnsupportedMediaType(String),
    /// The body did not arrive within the configured time.
    #[error("request body not received within {} s", .0.as_secs_f64())]
    RequestTimeout(Duration),
    /// No route has this path.
    #[error("no such route")]
    RouteNotFound,
    /// The path exists, but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed(Vec<Method>),
    /// A socket handshake from an Origin outside the allowlist.
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// A socket handshake of a user who already holds this many sockets open
    /// on this node.
    #[error("too many sockets open ({0})")]
    TooManySockets(usize),
    /// A socket event nobody handles.
    #[error("unknown event {0}")]
    UnknownEvent(String),
    /// A dependency is not ready (readiness probe).
    #[error("not ready: {0}")]
    NotReady(String),
}

/// What a failure looks like on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable error code.
    pub code: &'static str,
    /// A human explanation (never backend internals).
    pub message: String,
    /// For `rate_limited`: when to retry.
    pub retry_after: Option<Duration>,
    /// For 405: the methods the path accepts.
    pub allow: Vec<Method>,
}

impl ErrorReply {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            allow: Vec::new(),
        }
    }

    /// The `{ "error": { "code", "message", "retryAfterMs"? } }` body.
    pub fn body(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let (Some(retry), Some(map)) = (self.retry_after, error.as_object_mut()) {
            let ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
            map.insert("retryAfterMs".into(), ms.into());
        }
        json!({ "error": error })
    }
}

impl ApiError {
    /// The status, code and message of this failure.
    pub fn reply(&self) -> ErrorReply {
        use ErrorReply as R;
        match self {
            ApiError::Messaging(err) => messaging_reply(err),
            ApiError::Auth(err) => {
                let status = if err.is_forbidden() {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::UNAUTHORIZED
                };
                R::new(status, err.code(), err.to_string())
            }
            ApiError::MissingToken => R::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "missing bearer token (Authorization: Bearer <token>)",
            ),
            ApiError::BadRequest(message) => {
                R::new(StatusCode::BAD_REQUEST, "validation", message.clone())
            }
            ApiError::PayloadTooLarge(_) => R::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                self.to_string(),
            ),
            ApiError::UnsupportedMediaType(_) => R::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                self.to_string(),
            ),
            ApiError::RequestTimeout(_) => R::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                self.to_string(),
            ),
            ApiError::RouteNotFound => R::new(StatusCode::NOT_FOUND, "not_found", "no such route"),
            ApiError::MethodNotAllowed(allow) => R {
                allow: allow.clone(),
                ..R::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "this path does not accept this method",
                )
            },
            ApiError::OriginNotAllowed => R::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this Origin is not in the server's allowlist",
            ),
            ApiError::TooManySockets(max) => R::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sockets",
                format!(
                    "you already have {max} sockets open on this server: close one (another tab or device) first"
                ),
            ),
            ApiError::UnknownEvent(name) => R::new(
                StatusCode::NOT_FOUND,
                "unknown_event",
                format!("unknown event {name:?}"),
            ),
            ApiError::NotReady(_) => R::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "a dependency is not ready",
            ),
        }
    }
}

fn messaging_reply(err: &MessagingError) -> ErrorReply {
    let status = match err {
        MessagingError::Validation(_) => StatusCode::BAD_REQUEST,
        MessagingError::NotFound(_) => StatusCode::NOT_FOUND,
        MessagingError::Forbidden(_) | MessagingError::FeatureDisabled => StatusCode::FORBIDDEN,
        MessagingError::Conflict { .. } => StatusCode::CONFLICT,
        MessagingError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        MessagingError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let message = match err {
        MessagingError::Validation(v) => v.to_string(),
        // The code already says "forbidden"; the message says why.
        MessagingError::Forbidden(reason) => reason.clone(),
        // Backend details stay in the logs.
        MessagingError::Unavailable(detail) => {
            log_unavailable(detail);
            "the service is temporarily unavailable; retry later".to_owned()
        }
        other => other.to_string(),
    };
    let retry_after = match err {
        MessagingError::RateLimited { retry_after } => Some(*retry_after),
        _ => None,
    };
    ErrorReply {
        retry_after,
        ..ErrorReply::new(status, err.code(), message)
    }
}

/// Logs a backend outage at most once a second, with how many were not
/// logged since: an overloaded or unreachable backend fails every request,
/// and a line per request would only add to the load.
fn log_unavailable(detail: &str) {
    static LOGGED_AT: AtomicU64 = AtomicU64::new(0);
    static NOT_LOGGED: AtomicU64 = AtomicU64::new(0);
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    if LOGGED_AT.swap(second, Ordering::Relaxed) == second {
        NOT_LOGGED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let not_logged = NOT_LOGGED.swap(0, Ordering::Relaxed);
    tracing::error!(%detail, not_logged, "backend unavailable");
}

#[cfg(test)]
mod tests {
    use afritalk_ports::{ConflictKind, Missing, ValidationError};

    use super::*;

    fn status_code(err: impl Into<ApiError>) -> (u16, &'static str) {
        let reply = err.into().reply();
        (reply.status.as_u16(), reply.code)
    }

    #[test]
    fn each_error_class_has_its_status_and_code() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (
                MessagingError::Validation(ValidationError::new("content", "empty")).into(),
                400,
                "validation",
            ),
            (
                MessagingError::NotFound(Missing::User).into(),
                404,
                "not_found",
            ),
            (
                MessagingError::Forbidden("no".into()).into(),
                403,
                "forbidden",
            ),
            (
                MessagingError::conflict(ConflictKind::EditWindowClosed, "late").into(),
                409,
                "edit_window_closed",
            ),
            (
                MessagingError::RateLimited {
                    retry_after: Duration::from_millis(1500),
                }
                .into(),
                429,
                "rate_limited",
            ),
            (
                MessagingError::FeatureDisabled.into(),
                403,
                "messaging_disabled",
            ),
            (
                MessagingError::Unavailable("db down".into()).into(),
                503,
                "unavailable",
            ),
            (AuthError::Expired.into(), 401, "token_expired"),
            (AuthError::BadSignature.into(), 401, "invalid_token"),
            (AuthError::WrongTenant.into(), 403, "tenant_mismatch"),
            (
                AuthError::OperationRefused.into(),
                403,
                "operation_not_allowed",
            ),
            (ApiError::MissingToken, 401, "invalid_token"),
            (ApiError::BadRequest("bad".into()), 400, "validation"),
            (ApiError::PayloadTooLarge(10), 413, "payload_too_large"),
            (
                ApiError::UnsupportedMediaType("text/plain".into()),
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::RequestTimeout(Duration::from_secs(30)),
                408,
                "request_timeout",
            ),
            (ApiError::RouteNotFound, 404, "not_found"),
            (ApiError::TooManySockets(32), 429, "too_many_sockets"),
            (
                ApiError::MethodNotAllowed(vec![Method::GET]),
                405,
                "method_not_allowed",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!(status_code(err.clone()), (status, code), "{err:?}");
        }
    }

    #[test]
    fn rate_limits_carry_the_retry_hint_and_backend_details_stay_hidden() {
        let reply = ApiError::from(MessagingError::RateLimited {
            retry_after: Duration::from_millis(1500),
        })
        .reply();
        assert_eq!(reply.body()["error"]["retryAfterMs"], 1500);
        let reply = ApiError::from(MessagingError::Unavailable("pg at 10.0.0.3".into())).reply();
        assert!(!reply.message.contains("10.0.0.3"));
    }
}
