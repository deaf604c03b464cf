//! The OpenAPI document and the router agree: every documented route is routed (it
//! asks for credentials rather than answering 404 or 405), and the document lists
//! exactly the API's routes.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use portcullis_storage::{PortalDb, SqliteStore, SyncMode};
use portcullis_web::{NoServer, Options, Portal, ROUTES, openapi_document};
use tower::ServiceExt;

fn portal(dir: &std::path::Path) -> axum::Router {
    let store = SqliteStore::open(dir, SyncMode::Normal).unwrap();
    let accounts = PortalDb::open(dir).unwrap();
    Portal::new(Box::new(store), accounts, Arc::new(NoServer), Options { tls: false }).router()
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
