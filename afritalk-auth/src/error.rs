//! Why a token was refused or could not be minted, with the stable codes the
//! HTTP edge sends to clients.

use afritalk_ports::{TenantId, UserId};

/// Why a token was refused. Each variant has a stable [`code`](AuthError::code);
/// [`is_forbidden`](AuthError::is_forbidden) tells 403 from 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a token: bad base64, bad encoding, too large, too many blocks, or missing facts.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The signature chain does not verify with the root public key.
    #[error("token signature does not verify")]
    BadSignature,
    /// The token's expiry check failed.
    #[error("token expired")]
    Expired,
    /// The token is valid but for another tenant than the one addressed.
    #[error("token is not valid for this tenant")]
    WrongTenant,
    /// A check of an attenuation block refused this operation (e.g. a read-only token writing).
    #[error("the token does not allow this operation")]
    OperationRefused,
    /// A genuine token, allowed here, of a staff member whose role the
    /// permission matrix does not know: refused as `forbidden`, and the edge
    /// writes the `forbidden_attempt` row (it knows who tried).
    #[error("your role ({role}) is not one messaging knows (PDG, DG or EMPLOYE)")]
    UnknownRole {
        /// The token's tenant (the one addressed).
        tenant: TenantId,
        /// The token's user.
        user: UserId,
        /// The role as the token states it.
        role: String,
    },
}

impl AuthError {
    /// The stable error code: `invalid_token`, `token_expired`, `tenant_mismatch`,
    /// `operation_not_allowed` or `forbidden`.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Malformed(_) | AuthError::BadSignature => "invalid_token",
            AuthError::Expired => "token_expired",
            AuthError::WrongTenant => "tenant_mismatch",
            AuthError::OperationRefused => "operation_not_allowed",
            AuthError::UnknownRole { .. } => "forbidden",
        }
    }

    /// True for a valid token used beyond its rights (HTTP 403), false for a token
    /// that proves nothing (HTTP 401).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            AuthError::WrongTenant | AuthError::OperationRefused | AuthError::UnknownRole { .. }
        )
    }
}

/// Why a token could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// The expiry overflows the clock.
    #[error("token lifetime is too long")]
    TtlOverflow,
    /// The biscuit library refused to build or serialize the token.
    #[error("could not build token: {0}")]
    Build(String),
}

/// Why a key could not be read from hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid root key: {0}")]
pub struct KeyError(pub String);
