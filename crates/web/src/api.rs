//! `/api/v1`: the same queries and authorization as the pages, as JSON (or
//! `?format=csv|ndjson`), for browsers signed in and for bearer tokens.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::auth::Caller;
use crate::clients;
use crate::export::Format;
use crate::pages::{self, AlertChange, AuthParams};
use crate::{Portal, WebError};

/// Every route of the API, as `METHOD path` (the OpenAPI test compares the document
/// with this list and the list with the router).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/users"),
    ("GET", "/api/v1/users/{name}"),
    ("GET", "/api/v1/users/{name}/locations"),
    ("GET", "/api/v1/users/{name}/timeline"),
    ("GET", "/api/v1/sessions"),
    ("GET", "/api/v1/auth-log"),
    ("GET", "/api/v1/alerts"),
    ("GET", "/api/v1/alerts/{id}"),
    ("PATCH", "/api/v1/alerts/{id}"),
    ("GET", "/api/v1/clients"),
    ("POST", "/api/v1/clients"),
    ("GET", "/api/v1/clients/{name}"),
    ("PATCH", "/api/v1/clients/{name}"),
    ("DELETE", "/api/v1/clients/{name}"),
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/openapi.json"),
];

pub(crate) fn routes() -> Router<Portal> {
    Router::new()
        .route("/users", get(|s, c, q| pages::users(s, c, q, Format::Json)))
        .route("/users/{name}", get(user))
        .route("/users/{name}/locations", get(locations))
        .route("/users/{name}/timeline", get(timeline))
        .route("/sessions", get(|s, c, q| pages::sessions(s, c, q, Format::Json)))
        .route("/auth-log", get(|s, c, q| pages::auth_log(s, c, q, Format::Json)))
        .route("/alerts", get(|s, c, q| pages::alerts(s, c, q, Format::Json)))
        .route("/alerts/{id}", get(alert).patch(patch_alert))
        .route("/clients", get(clients::api_list).post(clients::api_add))
        .route("/clients/{name}", get(clients::api_get).patch(clients::api_rekey).delete(clients::api_delete))
        .route("/stats", get(stats))
        .route("/openapi.json", get(openapi))
        .layer(axum::middleware::from_fn(mark))
}

/// Marks a request as the API's (the nested router sees its path without `/api/v1`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ApiRequest;

async fn mark(mut request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    request.extensions_mut().insert(ApiRequest);
    next.run(request).await
}

/// What each route answers, for the OpenAPI document.
fn summary_of(method: &str, path: &str) -> &'static str {
    match (method, path.trim_start_matches("/api/v1")) {
        ("GET", "/users") => "Users by name (?q= substring); keyset-paged",
        ("GET", "/users/{name}") => {
            "A user's profile: last seen, open alerts, observed locations, addresses, devices, NAS"
        }
        ("GET", "/users/{name}/locations") => "A user's distinct locations over ?observed=30|90|180 days",
        ("GET", "/users/{name}/timeline") => "A user's authentication events, filtered; keyset-paged",
        ("GET", "/sessions") => "VPN sessions (?user=, ?open=1); keyset-paged",
        ("GET", "/auth-log") => "Authentication decisions, filtered; keyset-paged",
        ("GET", "/alerts") => "Alerts (?status=, ?severity=, ?kind=, ?user=); keyset-paged",
        ("GET", "/alerts/{id}") => "One alert with its evidence and comments",
        ("PATCH", "/alerts/{id}") => "Change an alert's status or classification, or add a comment (analyst)",
        ("GET", "/clients") => {
            "RADIUS clients, the configuration file's (read-only) and the stored ones, never a secret (admin)"
        }
        ("POST", "/clients") => {
            "Add a stored RADIUS client: name, address, vendor, BlastRADIUS options and a write-only secret (admin)"
        }
        ("GET", "/clients/{name}") => "One RADIUS client, without its secret (admin)",
        ("PATCH", "/clients/{name}") => "Replace a stored client's secret: {\"secret\": ...} (admin)",
        ("DELETE", "/clients/{name}") => "Delete a stored RADIUS client (admin)",
        ("GET", "/stats") => "Open sessions, open alerts by severity, authentication decisions over 24 h",
        ("GET", "/openapi.json") => "This document",
        _ => "",
    }
}

/// An OpenAPI 3.1 document of [`ROUTES`].
pub fn openapi_document() -> serde_json::Value {
    let list_params = serde_json::json!([
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
        {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "next_cursor of the previous page"},
        {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv", "ndjson"]}}
    ]);
    let mut paths = serde_json::Map::new();
    for (method, path) in ROUTES {
        let mut op = serde_json::json!({
            "summary": summary_of(method, path),
            "responses": {
                "200": {"description": "OK"},
                "401": {"description": "no valid session or bearer token"},
                "403": {"description": "the role does not allow this"}
            }
        });
        let mut params: Vec<serde_json::Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| serde_json::json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if summary_of(method, path).contains("keyset-paged") {
            params.extend(list_params.as_array().into_iter().flatten().cloned());
        }
        op["parameters"] = params.into();
        let entry = paths.entry(path.to_string()).or_insert_with(|| serde_json::json!({}));
        entry[method.to_lowercase()] = op;
    }
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "Portcullis", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths
    })
}

async fn openapi(_caller: Caller) -> Response {
    axum::Json(openapi_document()).into_response()
}

/// The profile of `/users/{name}` and `/users/{name}/locations`.
type ProfileRequest = (State<Portal>, Caller, Path<String>, Query<AuthParams>);

async fn profile_of(
    (State(portal), _caller, Path(name), Query(p)): ProfileRequest,
) -> Result<pages::Profile, WebError> {
    pages::profile(&portal, name, pages::observed_of(&p)?).await
}

async fn user(s: State<Portal>, c: Caller, n: Path<String>, q: Query<AuthParams>) -> Result<Response, WebError> {
    Ok(axum::Json(profile_of((s, c, n, q)).await?).into_response())
}

async fn locations(s: State<Portal>, c: Caller, n: Path<String>, q: Query<AuthParams>) -> Result<Response, WebError> {
    let profile = profile_of((s, c, n, q)).await?;
    Ok(axum::Json(serde_json::json!({ "items": profile.locations, "days": profile.observed_days })).into_response())
}

async fn timeline(
    State(portal): State<Portal>,
    caller: Caller,
    Path(name): Path<String>,
    Query(mut p): Query<AuthParams>,
) -> Result<Response, WebError> {
    p.set_user(name);
    pages::auth_log(State(portal), caller, Query(p), Format::Json).await
}

async fn alert(State(portal): State<Portal>, _caller: Caller, Path(id): Path<i64>) -> Result<Response, WebError> {
    let alert = portal.store(move |s| s.alert(id)).await?.ok_or(WebError::NotFound)?;
    Ok(axum::Json(alert).into_response())
}

async fn patch_alert(
    State(portal): State<Portal>,
    caller: Caller,
    Path(id): Path<i64>,
    axum::Json(change): axum::Json<AlertChange>,
) -> Result<Response, WebError> {
    Ok(axum::Json(pages::change_alert(&portal, &caller, id, change).await?).into_response())
}

async fn stats(State(portal): State<Portal>, _caller: Caller) -> Result<Response, WebError> {
    Ok(axum::Json(pages::summary(&portal).await?).into_response())
}
