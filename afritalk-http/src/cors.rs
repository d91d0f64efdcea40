//! Cross-origin access for browser front ends (CORS). The React admin is
//! often served from another origin than the API: a browser then asks first
//! (a preflight `OPTIONS` for calls carrying `Authorization`) and lets the page
//! read an answer only if it names the page's origin.
//!
//! Only API paths take part ([`applies`]). The same allowlist as socket handshakes decides ([`HttpConfig::origin_allowed`];
//! open when none is configured, as in the embedded default). Answers name the
//! requesting origin, never `*`, and carry `Vary: Origin` so a cache in between
//! keeps one copy per origin. No credentials are allowed: AfriTalk reads bearer
//! tokens, never cookies.

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::config::HttpConfig;

/// How long a browser may reuse a preflight answer.
const PREFLIGHT_MAX_AGE_SECS: u32 = 600;

/// Methods the REST API serves.
const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";

/// Response headers a page may read besides the simple ones.
const EXPOSED_HEADERS: &str = "retry-after, allow, www-authenticate";

/// Whether cross-origin pages may use this path at all: the API and its
/// sockets (`/api/…`), not the operations routes (`/metrics`, `/readyz`,
/// `/openapi.json`), which a page has no business reading through a visitor's
/// browser on an internal network.
pub(crate) fn applies(path: &str) -> bool {
    path.starts_with("/api/")
}

/// Whether a request is a CORS preflight of an API path.
pub(crate) fn is_preflight(method: &Method, path: &str, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && applies(path)
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The status and headers answering a preflight: 204 naming the origin, or
/// `None` when the origin is not allowed (the caller answers 403).
pub(crate) fn preflight(
    headers: &HeaderMap,
    config: &HttpConfig,
) -> Option<(StatusCode, HeaderMap)> {
    let origin = listed_origin(headers, config)?;
    let mut out = HeaderMap::new();
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOWED_METHODS),
    );
    // Whatever headers the page asks for: a bearer token is the only
    // credential, and it is checked whatever else comes with it.
    if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(PREFLIGHT_MAX_AGE_SECS),
    );
    out.append(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
    Some((StatusCode::NO_CONTENT, out))
}

/// The request's `Origin`, if it is allowed to read answers from `path`.
pub(crate) fn allowed_origin(
    path: &str,
    headers: &HeaderMap,
    config: &HttpConfig,
) -> Option<HeaderValue> {
    if !applies(path) {
        return None;
    }
    listed_origin(headers, config)
}

/// The request's `Origin`, if the allowlist has it.
fn listed_origin(headers: &HeaderMap, config: &HttpConfig) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    config
        .origin_allowed(Some(origin.to_str().ok()?))
        .then(|| origin.clone())
}

/// Lets the page of `origin` (an allowed one, or none) read this answer.
pub(crate) fn expose(response: &mut HeaderMap, origin: Option<HeaderValue>) {
    // Vary even when refusing: the same URL answers differently per origin.
    response.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = origin {
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        response.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_static(value));
        }
        h
    }

    fn listing(origins: &[&str]) -> HttpConfig {
        HttpConfig {
            allowed_origins: Some(origins.iter().map(|o| o.to_string()).collect()),
            ..HttpConfig::default()
        }
    }

    #[test]
    fn a_preflight_names_the_allowed_origin_and_echoes_the_asked_headers() {
        let asked = headers(&[
            ("origin", "https://admin.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type",
            ),
        ]);
        let path = "/api/tenants/t/messaging/message";
        assert!(is_preflight(&Method::OPTIONS, path, &asked));
        assert!(!is_preflight(&Method::GET, path, &asked));
        assert!(!is_preflight(&Method::OPTIONS, "/metrics", &asked));
        let (status, out) = preflight(&asked, &listing(&["https://admin.example"])).unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(
            out[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://admin.example"
        );
        assert_eq!(
            out[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "authorization, content-type"
        );
        assert!(
            out[header::ACCESS_CONTROL_ALLOW_METHODS]
                .to_str()
                .unwrap()
                .contains("PATCH")
        );
        assert!(preflight(&asked, &listing(&["https://other.example"])).is_none());
        // Open (no list): any origin is named back, never `*`.
        let (_, out) = preflight(&asked, &HttpConfig::default()).unwrap();
        assert_eq!(
            out[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://admin.example"
        );
    }

    #[test]
    fn answers_expose_only_to_allowed_origins_and_always_vary() {
        let config = listing(&["https://admin.example"]);
        let mut out = HeaderMap::new();
        expose(
            &mut out,
            allowed_origin(
                "/api/x",
                &headers(&[("origin", "https://evil.example")]),
                &config,
            ),
        );
        assert!(!out.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        assert_eq!(out[header::VARY], "origin");
        let mut out = HeaderMap::new();
        expose(
            &mut out,
            allowed_origin(
                "/api/x",
                &headers(&[("origin", "https://admin.example")]),
                &config,
            ),
        );
        assert_eq!(
            out[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://admin.example"
        );
        assert!(allowed_origin("/api/x", &HeaderMap::new(), &config).is_none());
        let admin = headers(&[("origin", "https://admin.example")]);
        assert!(allowed_origin("/metrics", &admin, &config).is_none());
    }
}
