//! Errors at the two levels the ports define: what a backend reports
//! ([`StoreError`]) and what a use case answers ([`MessagingError`]). The HTTP
//! and Socket.IO edge maps `MessagingError` to statuses and ack codes once.

use std::borrow::Cow;
use std::time::Duration;

/// A value that failed its construction rules; says which field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// The input field at fault, in the API's camelCase.
    pub field: &'static str,
    /// Why it was refused, for a human.
    pub reason: Cow<'static, str>,
}

impl ValidationError {
    /// Builds a validation error for `field`.
    pub fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// What a driven adapter (storage, presence, bus, limiter…) reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The addressed row does not exist in this tenant.
    #[error("not found")]
    NotFound,
    /// The operation conflicts with the stored state (e.g. the message is deleted).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend could not be reached or failed; the operation did nothing.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
}

/// What kind of thing was not found, so the edge can say it precisely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// A user absent from the tenant's directory.
    User,
    /// A conversation.
    Conversation,
    /// A message.
    Message,
    /// A notification.
    Notification,
}

impl Missing {
    /// Lower-case noun used in error codes and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::User => "user",
            Missing::Conversation => "conversation",
            Missing::Message => "message",
            Missing::Notification => "notification",
        }
    }
}

/// Why a conflict was raised; each maps to a stable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// The 2-minute edit window is over.
    EditWindowClosed,
    /// The message was deleted and can no longer change.
    MessageDeleted,
    /// The recipient exists but is deactivated.
    RecipientInactive,
    /// The sender tried to message themselves.
    SelfMessage,
    /// Another stored-state conflict reported by a backend.
    Other,
}

impl ConflictKind {
    /// The stable error code sent to clients.
    pub fn code(self) -> &'static str {
        match self {
            ConflictKind::EditWindowClosed => "edit_window_closed",
            ConflictKind::MessageDeleted => "message_deleted",
            ConflictKind::RecipientInactive => "recipient_inactive",
            ConflictKind::SelfMessage => "self_message",
            ConflictKind::Other => "conflict",
        }
    }
}

/// The reason of the `Forbidden` refusal of anything a user whom an
/// administrator deactivated tries with a token that outlived the decision.
pub const ACCOUNT_DEACTIVATED: &str = "your account is deactivated";

/// The answer of a use case that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessagingError {
    /// The input broke a value rule; nothing was done.
    #[error("invalid input: {0}")]
    Validation(#[from] ValidationError),
    /// The object does not exist for this caller (also used for other tenants' objects,
    /// so that their existence is never revealed).
    #[error("{} not found", .0.as_str())]
    NotFound(Missing),
    /// The caller may not do this (permission matrix, sender-only rules, admin-only calls).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request is valid but clashes with the current state.
    #[error("{message}")]
    Conflict {
        /// Which rule was hit.
        kind: ConflictKind,
        /// Human explanation.
        message: String,
    },
    /// The caller exceeded its rate for this action; retry later.
    #[error("rate limited; retry in {} ms", .retry_after.as_millis())]
    RateLimited {
        /// How long to wait before the next attempt may succeed.
        retry_after: Duration,
    },
    /// Messaging is switched off for this tenant (progressive rollout).
    #[error("messaging is not enabled for this tenant")]
    FeatureDisabled,
    /// A backend failed; the operation did nothing and may be retried.
    #[error("service unavailable: {0}")]
    Unavailable(String),
}

impl MessagingError {
    /// Builds a conflict of the given kind.
    pub fn conflict(kind: ConflictKind, message: impl Into<String>) -> Self {
        MessagingError::Conflict {
            kind,
            message: message.into(),
        }
    }

    /// The stable error code sent to clients (`{ error: { code } }` / ack errors).
    pub fn code(&self) -> &'static str {
        match self {
            MessagingError::Validation(_) => "validation",
            MessagingError::NotFound(_) => "not_found",
            MessagingError::Forbidden(_) => "forbidden",
            MessagingError::Conflict { kind, .. } => kind.code(),
            MessagingError::RateLimited { .. } => "rate_limited",
            MessagingError::FeatureDisabled => "messaging_disabled",
            MessagingError::Unavailable(_) => "unavailable",
        }
    }

    /// Whether this refuses a deactivated user (see [`ACCOUNT_DEACTIVATED`]):
    /// nothing else they try will succeed either, so an open socket of theirs
    /// can be closed.
    pub fn is_account_deactivated(&self) -> bool {
        matches!(self, MessagingError::Forbidden(reason) if reason == ACCOUNT_DEACTIVATED)
    }

    /// Maps a backend error met while acting on `missing`.
    pub fn from_store(err: StoreError, missing: Missing) -> Self {
        match err {
            StoreError::NotFound => MessagingError::NotFound(missing),
            StoreError::Conflict(message) => MessagingError::conflict(ConflictKind::Other, message),
            StoreError::Unavailable(message) => MessagingError::Unavailable(message),
        }
    }
}

impl From<StoreError> for MessagingError {
    /// A backend error outside any specific object: not-found cannot happen there,
    /// so it is reported as unavailable rather than guessed at.
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => {
                MessagingError::Unavailable("backend reported a missing row unexpectedly".into())
            }
            StoreError::Conflict(message) => MessagingError::conflict(ConflictKind::Other, message),
            StoreError::Unavailable(message) => MessagingError::Unavailable(message),
        }
    }
}
