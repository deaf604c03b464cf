//! The header policy of every portal response and the cross-site request check of every
//! state change.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Portal;

/// No inline script or style, nothing from another origin, never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'";

/// Sets the security headers; everything but the static assets is `no-store`.
pub(crate) async fn headers(State(portal): State<Portal>, request: Request, next: Next) -> Response {
    let asset = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    if portal.tls() {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    let cache = if asset { "public, max-age=3600" } else { "no-store" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// Whether a state-changing request may proceed, from its Fetch Metadata and Origin
/// (the scheme of Go's `CrossOriginProtection`): `Sec-Fetch-Site` must be `same-origin`
/// or `none` when sent; otherwise an `Origin` must name this host. A request with
/// neither header does not come from a browser (which sends one or both on every
/// state change) and carries no ambient credentials an attacker could borrow.
pub(crate) fn same_origin(method: &Method, fetch_site: Option<&str>, origin: Option<&str>, host: Option<&str>) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    if let Some(site) = fetch_site {
        return site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none");
    }
    match origin {
        None => true,
        Some(origin) => {
            let Some((_, authority)) = origin.split_once("://") else {
                return false; // "null" and other opaque origins
            };
            host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
        }
    }
}

/// Refuses cross-site state changes with 403.
pub(crate) async fn csrf(request: Request, next: Next) -> Response {
    let h = request.headers();
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    if !same_origin(request.method(), text("sec-fetch-site"), text("origin"), text("host")) {
        return (StatusCode::FORBIDDEN, "cross-site request refused\n").into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_state_changes_are_refused() {
        let post = Method::POST;
        let host = Some("127.0.0.1:8080");
        assert!(same_origin(&Method::GET, Some("cross-site"), Some("https://evil.example"), host));
        assert!(same_origin(&post, Some("same-origin"), Some("http://127.0.0.1:8080"), host));
        assert!(same_origin(&post, None, None, host));
        assert!(same_origin(&post, None, Some("http://127.0.0.1:8080"), host));
        assert!(!same_origin(&post, Some("cross-site"), None, host));
        assert!(!same_origin(&post, Some("same-site"), None, host));
        assert!(!same_origin(&post, None, Some("https://evil.example"), host));
        assert!(!same_origin(&post, None, Some("null"), host));
        assert!(!same_origin(&Method::PATCH, None, Some("http://127.0.0.1:8080"), None));
    }
}
