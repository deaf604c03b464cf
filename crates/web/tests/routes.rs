//! The OpenAPI document and the router agree: every documented route is routed (it
//! asks for credentials rather than answering 404 or 405), and the document lists
//! exactly the API's routes. Over TLS the session cookie is `__Host-` prefixed and
//! `Secure`, and HSTS is sent; over plain HTTP (loopback only) neither.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use portcullis_storage::{PortalDb, Role, SqliteStore, SyncMode};
use portcullis_web::{NoServer, Options, Portal, ROUTES, openapi_document};
use tower::ServiceExt;

fn portal(dir: &std::path::Path) -> axum::Router {
    portal_with(dir, Options { tls: false })
}

fn portal_with(dir: &std::path::Path, options: Options) -> axum::Router {
    let store = SqliteStore::open(dir, SyncMode::Normal).unwrap();
    let accounts = PortalDb::open(dir).unwrap();
    Portal::new(Box::new(store), accounts, Arc::new(NoServer), options).router()
}

#[tokio::test]
async fn over_tls_the_session_cookie_is_host_only_and_secure() {
    for tls in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let hash = portcullis_web::auth::hash_password("a-portal-password").unwrap();
        PortalDb::open(dir.path()).unwrap().add_account("admin", Role::Admin, &hash, 0).unwrap();
        let router = portal_with(dir.path(), Options { tls });
        let request = Request::builder()
            .method("POST")
            .uri("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .body(Body::from("name=admin&password=a-portal-password"))
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "tls = {tls}");
        let cookies: Vec<&str> =
            response.headers().get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
        let session = cookies.iter().find(|c| c.contains("portcullis_session=")).unwrap();
        let hsts = response.headers().get(header::STRICT_TRANSPORT_SECURITY);
        for part in ["; Path=/", "; HttpOnly", "; SameSite=Strict"] {
            assert!(session.contains(part), "{part} in {session}");
        }
        assert!(!session.contains("Domain="), "{session}");
        if tls {
            assert!(session.starts_with("__Host-portcullis_session=") && session.ends_with("; Secure"), "{session}");
            assert!(hsts.is_some_and(|v| v.to_str().unwrap().starts_with("max-age=")), "{hsts:?}");
        } else {
            assert!(session.starts_with("portcullis_session=") && !session.contains("Secure"), "{session}");
            assert!(hsts.is_none(), "no HSTS over plain HTTP");
        }
    }
}

async fn status(router: &axum::Router, method: &str, path: &str) -> StatusCode {
    let request = Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
    router.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn openapi_document_lists_every_route_the_router_has() {
    let dir = tempfile::tempdir().unwrap();
    let router = portal(dir.path());
    for (method, path) in ROUTES {
        let concrete = path.replace("{name}", "paula").replace("{id}", "1");
        assert_eq!(status(&router, method, &concrete).await, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // The check can fail: what is not routed is not 401.
    assert_eq!(status(&router, "GET", "/api/v1/nothing").await, StatusCode::NOT_FOUND);
    assert_eq!(status(&router, "DELETE", "/api/v1/alerts/1").await, StatusCode::METHOD_NOT_ALLOWED);

    let doc = openapi_document();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    let mut routes: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| ((*m).to_string(), (*p).to_string())).collect();
    documented.sort();
    routes.sort();
    assert_eq!(documented, routes);
    for item in doc["paths"].as_object().unwrap().values().flat_map(|i| i.as_object().unwrap().values()) {
        assert!(!item["summary"].as_str().unwrap().is_empty(), "{item}");
    }
}

#[tokio::test]
async fn pages_without_a_session_go_to_sign_in_and_assets_need_none() {
    let dir = tempfile::tempdir().unwrap();
    let router = portal(dir.path());
    for path in
        ["/", "/users", "/users/x", "/sessions", "/auth-log", "/alerts", "/alerts/1", "/status", "/settings", "/audit"]
    {
        assert_eq!(status(&router, "GET", path).await, StatusCode::SEE_OTHER, "{path}");
    }
    for path in ["/login", "/static/app.css", "/static/app.js"] {
        assert_eq!(status(&router, "GET", path).await, StatusCode::OK, "{path}");
    }
}
