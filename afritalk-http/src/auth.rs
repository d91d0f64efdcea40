//! Request authentication: the bearer token, verified for the path's tenant and
//! the request's operation, becomes the core's [`Actor`] with the client IP.

use std::net::SocketAddr;

use afritalk_auth::{Identity, Operation};
use afritalk_core::Actor;
use afritalk_ports::TenantId;
use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::app::AppInner;
use crate::error::ApiError;

/// The TCP peer of a connection, put into request extensions by the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The token of an `Authorization: Bearer …` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::MissingToken)?
        .to_str()
        .map_err(|_| ApiError::MissingToken)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(ApiError::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::MissingToken);
    }
    Ok(token.trim())
}

/// The client's IP: the last address of the trusted proxy header when one is
/// configured and holds an IP address, else the TCP peer.
///
/// The last one, because a proxy appends the address it saw to whatever the
/// client sent (`X-Forwarded-For: <forged>, <real>`): only the entry added by
/// the proxy itself can be trusted. Anything that is not an address (with or
/// without a port) is ignored rather than written into the audit trail.
pub(crate) fn client_ip(
    app: &AppInner,
    headers: &HeaderMap,
    peer: Option<PeerAddr>,
) -> Option<String> {
    let forwarded = app
        .config
        .client_ip_header
        .as_deref()
        .and_then(|name| headers.get_all(name).iter().next_back())
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(parse_ip);
    match forwarded {
        Some(ip) => Some(ip.to_string()),
        None => peer.map(|p| p.0.ip().to_string()),
    }
}

/// An IP address as proxies write it: `203.0.113.7`, `2001:db8::1`, or either
/// with a port (`203.0.113.7:5123`, `[2001:db8::1]:5123`).
fn parse_ip(raw: &str) -> Option<std::net::IpAddr> {
    let raw = raw.trim();
    raw.parse::<std::net::IpAddr>()
        .ok()
        .or_else(|| raw.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// The tenant named by the path. A path tenant that is not even a valid id
/// cannot be the token's: it is a tenant mismatch.
pub(crate) fn path_tenant(path_tenant: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(path_tenant).map_err(|_| ApiError::Auth(afritalk_auth::AuthError::WrongTenant))
}

/// Verifies `token` (signatures and authorizer, once) for `operation` on the
/// tenant named by the path.
pub(crate) fn verify(
    app: &AppInner,
    token: &str,
    path_tenant: &str,
    operation: Operation,
) -> Result<Identity, ApiError> {
    let tenant = self::path_tenant(path_tenant)?;
    Ok(app.verifier.verify(token, &tenant, operation)?)
}

/// The authenticated caller of a REST request, with its identity (for the
/// directory refresh) and the client IP.
pub(crate) fn authenticate(
    app: &AppInner,
    headers: &HeaderMap,
    peer: Option<PeerAddr>,
    path_tenant: &str,
    operation: Operation,
) -> Result<(Actor, Identity), ApiError> {
    let identity = verify(app, bearer(headers)?, path_tenant, operation)?;
    let mut actor = identity.to_actor();
    if let Some(ip) = client_ip(app, headers, peer) {
        actor = actor.with_ip(ip);
    }
    Ok((actor, identity))
}
