//! The front service: runs before Socket.IO and warp on every request. It
//! records the TCP peer, maps the tenant socket path onto Socket.IO's fixed
//! path (keeping the tenant in the request extensions), refuses socket
//! handshakes from Origins outside the allowlist, and hides the internal path.
//! CORS preflights pass untouched, to the REST router.
//! Socket requests get their headers copied out of the connection's read
//! buffer (see [`detach_headers`]).

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri, header};

use crate::auth::PeerAddr;
use crate::config::HttpConfig;
use crate::router::{ORIGIN_REFUSED_PATH, percent_decode};

/// The fixed path socketioxide serves; clients never use it directly.
pub(crate) const SIO_PATH: &str = "/__afritalk/socket";

/// The tenant of a socket path, read at the Socket.IO handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathTenant(pub(crate) String);

fn set_path<B>(req: &mut Request<B>, path_and_query: &str) {
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = PathAndQuery::try_from(path_and_query).ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// Replaces every header with an owned copy.
///
/// Socket.IO keeps the handshake request's parts for the socket's whole life,
/// and hyper's header values are slices of the connection's read buffer (8 to
/// 16 KiB): keeping one value alive keeps that whole buffer alive. Measured
/// with heaptrack, that pinned buffer was half of an idle socket's memory; the
/// copies cost a few hundred bytes.
fn detach_headers(headers: &mut HeaderMap) {
    let mut owned = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        let copied_name = HeaderName::from_bytes(name.as_str().as_bytes());
        let copied_value = HeaderValue::from_bytes(value.as_bytes());
        if let (Ok(copied_name), Ok(mut copied_value)) = (copied_name, copied_value) {
            copied_value.set_sensitive(value.is_sensitive());
            owned.append(copied_name, copied_value);
        }
    }
    *headers = owned;
}

/// `(tenant, tail)` of `/api/tenants/{tenant}/messaging/socket{tail}`.
fn socket_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/api/tenants/")?;
    let (tenant, tail) = rest.split_once('/')?;
    let tail = tail.strip_prefix("messaging/socket")?;
    (!tenant.is_empty() && (tail.is_empty() || tail.starts_with('/'))).then_some((tenant, tail))
}

/// Rewrites one request as described in the module docs.
pub(crate) fn front<B>(mut req: Request<B>, config: &HttpConfig, peer: PeerAddr) -> Request<B> {
    req.extensions_mut().insert(peer);
    if crate::cors::is_preflight(req.method(), req.uri().path(), req.headers()) {
        // The REST router answers every preflight, socket paths' too.
        return req;
    }
    let path = req.uri().path().to_owned();
    if let Some((tenant, tail)) = socket_path(&path) {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if !config.origin_allowed(origin) {
            set_path(&mut req, ORIGIN_REFUSED_PATH);
            return req;
        }
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        // Decoded as REST path parameters are, so both name a tenant alike;
        // an undecodable one is kept as is and fails the token's tenant check.
        let tenant = PathTenant(percent_decode(tenant).unwrap_or_else(|| tenant.to_owned()));
        req.extensions_mut().insert(tenant);
        detach_headers(req.headers_mut());
        set_path(&mut req, &format!("{SIO_PATH}{tail}{query}"));
    } else if path == SIO_PATH || path.starts_with(&format!("{SIO_PATH}/")) {
        // Direct hits on the internal path get warp's 404.
        set_path(&mut req, "/__afritalk/blocked");
    }
    req
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn peer() -> PeerAddr {
        PeerAddr(SocketAddr::from(([127, 0, 0, 1], 9)))
    }

    fn request(uri: &str, origin: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        if let Some(o) = origin {
            builder = builder.header(header::ORIGIN, o);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn socket_paths_are_rewritten_with_their_tenant() {
        let req = front(
            request(
                "/api/tenants/t1/messaging/socket/?EIO=4&transport=polling",
                None,
            ),
            &HttpConfig::default(),
            peer(),
        );
        assert_eq!(req.uri().path(), "/__afritalk/socket/");
        assert_eq!(req.uri().query(), Some("EIO=4&transport=polling"));
        assert_eq!(
            req.extensions().get::<PathTenant>(),
            Some(&PathTenant("t1".into()))
        );
        assert_eq!(req.extensions().get::<PeerAddr>(), Some(&peer()));
    }

    #[test]
    fn the_socket_path_tenant_is_percent_decoded_as_in_rest_paths() {
        let tenant_of = |uri: &str| {
            front(request(uri, None), &HttpConfig::default(), peer())
                .extensions()
                .get::<PathTenant>()
                .cloned()
        };
        assert_eq!(
            tenant_of("/api/tenants/acme%40hq/messaging/socket/?EIO=4"),
            Some(PathTenant("acme@hq".into()))
        );
        assert_eq!(
            tenant_of("/api/tenants/acme@hq/messaging/socket/?EIO=4"),
            Some(PathTenant("acme@hq".into()))
        );
    }

    #[test]
    fn socket_requests_keep_every_header_value() {
        let mut req = request("/api/tenants/t1/messaging/socket/?EIO=4", None);
        let headers = req.headers_mut();
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static("node"));
        let req = front(req, &HttpConfig::default(), peer());
        let forwarded: Vec<_> = req.headers().get_all("x-forwarded-for").iter().collect();
        assert_eq!(forwarded, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(req.headers()[header::USER_AGENT], "node");
        assert_eq!(req.headers().len(), 3);
    }

    #[test]
    fn foreign_origins_and_internal_paths_are_refused() {
        let config = HttpConfig {
            allowed_origins: Some(vec!["https://admin.example".into()]),
            ..HttpConfig::default()
        };
        let req = front(
            request(
                "/api/tenants/t1/messaging/socket/",
                Some("https://evil.example"),
            ),
            &config,
            peer(),
        );
        assert_eq!(req.uri().path(), ORIGIN_REFUSED_PATH);
        let req = front(
            request(
                "/api/tenants/t1/messaging/socket/",
                Some("https://admin.example"),
            ),
            &config,
            peer(),
        );
        assert_eq!(req.uri().path(), "/__afritalk/socket/");
        let req = front(request("/__afritalk/socket/?EIO=4", None), &config, peer());
        assert_eq!(req.uri().path(), "/__afritalk/blocked");
        let req = front(
            request("/api/tenants/t1/messaging/sockets", None),
            &config,
            peer(),
        );
        assert_eq!(req.uri().path(), "/api/tenants/t1/messaging/sockets");
    }
}
