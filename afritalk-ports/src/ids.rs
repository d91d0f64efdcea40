//! Identifiers. Tenants and users are named by AfriGest (opaque strings checked
//! for a safe shape); conversations, messages, notifications and audit rows get
//! UUIDs minted by AfriTalk.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ValidationError;

/// Longest tenant or user id accepted, in bytes.
pub const MAX_EXTERNAL_ID_LEN: usize = 128;

/// Checks the shape shared by every id that AfriGest (not AfriTalk) hands out.
fn validate_external_id(field: &'static str, raw: &str) -> Result<(), ValidationError> {
    if raw.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if raw.len() > MAX_EXTERNAL_ID_LEN {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_EXTERNAL_ID_LEN} bytes"),
        ));
    }
    // Ids end up in room names, Redis keys and log lines: keep them to a
    // character set that needs no escaping anywhere.
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@');
    if !raw.chars().all(allowed) {
        return Err(ValidationError::new(
            field,
            "may only contain ASCII letters, digits and - _ . @",
        ));
    }
    Ok(())
}

macro_rules! external_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps a raw id.
            pub fn parse(raw: impl Into<String>) -> Result<Self, ValidationError> {
                let raw = raw.into();
                validate_external_id($field, &raw)?;
                Ok(Self(raw))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                Self::parse(raw)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

external_id!(
    /// A company using AfriGest; every AfriTalk row belongs to exactly one.
    TenantId,
    "tenantId"
);
external_id!(
    /// A staff member (or calling service) inside a tenant.
    UserId,
    "userId"
);

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID.
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// Parses the hyphenated text form.
            pub fn parse(raw: &str) -> Result<Self, ValidationError> {
                Uuid::parse_str(raw)
                    .map(Self)
                    .map_err(|_| ValidationError::new($field, "must be a UUID"))
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                Self::parse(raw)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A 1-to-1 conversation.
    ConversationId,
    "conversationId"
);
uuid_id!(
    /// A message.
    MessageId,
    "messageId"
);
uuid_id!(
    /// An in-app notification.
    NotificationId,
    "notificationId"
);
uuid_id!(
    /// A row of the messaging audit log.
    AuditId,
    "auditId"
);

/// One live realtime connection (a Socket.IO socket id), unique across nodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(String);

impl ConnectionId {
    /// Wraps a connection id chosen by the realtime gateway.
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest client message id accepted, in bytes.
pub const MAX_CLIENT_MESSAGE_ID_LEN: usize = 128;

/// An id chosen by the sending client so that a retried send is recognised
/// and answered with the original message instead of a duplicate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientMessageId(String);

impl ClientMessageId {
    /// Validates and wraps a client message id (1–128 visible ASCII bytes).
    pub fn parse(raw: impl Into<String>) -> Result<Self, ValidationError> {
        let raw = raw.into();
        if raw.is_empty() || raw.len() > MAX_CLIENT_MESSAGE_ID_LEN {
            return Err(ValidationError::new(
                "clientMessageId",
                format!("must be 1 to {MAX_CLIENT_MESSAGE_ID_LEN} bytes"),
            ));
        }
        if !raw.chars().all(|c| c.is_ascii_graphic()) {
            return Err(ValidationError::new(
                "clientMessageId",
                "must be visible ASCII characters",
            ));
        }
        Ok(Self(raw))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClientMessageId {
    type Error = ValidationError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<ClientMessageId> for String {
    fn from(id: ClientMessageId) -> String {
        id.0
    }
}

impl fmt::Display for ClientMessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids_accept_the_usual_shapes() {
        for ok in ["t1", "acme-corp", "user_42", "a.b@c", &"x".repeat(128)] {
            assert!(UserId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn external_ids_refuse_empty_long_and_odd_characters() {
        for bad in ["", "a b", "a:b", "é", "a/b", &"x".repeat(129)] {
            let err = TenantId::parse(bad).unwrap_err();
            assert_eq!(err.field, "tenantId", "{bad}");
        }
    }

    #[test]
    fn ids_deserialize_through_validation() {
        assert!(serde_json::from_str::<UserId>("\"u1\"").is_ok());
        assert!(serde_json::from_str::<UserId>("\"u 1\"").is_err());
        assert!(serde_json::from_str::<MessageId>("\"not-a-uuid\"").is_err());
    }

    #[test]
    fn client_message_ids_are_bounded_and_visible() {
        assert!(ClientMessageId::parse("c-1").is_ok());
        assert!(ClientMessageId::parse("").is_err());
        assert!(ClientMessageId::parse("a b").is_err());
        assert!(ClientMessageId::parse("x".repeat(129)).is_err());
    }
}
