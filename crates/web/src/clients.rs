//! Settings → RADIUS clients, on the settings page and at `/api/v1/clients`: the
//! configuration file's clients (listed, read-only) and the stored ones, which admins
//! add, re-key and delete through the server's [`ClientAdmin`]; a change reaches the
//! listeners within a second, without a restart.
//!
//! The shared secret goes in and never comes out: it is read from a form field or a
//! JSON member into a [`ClientSecret`] (whose `Debug` is redacted) and handed to the
//! administration; no page, response, export, audit line or log carries it, and a body
//! that cannot be read is answered without quoting any of its values.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use portcullis_accounting::Vendor;
use portcullis_storage::{ClientAdmin, ClientListing, ClientSecret, ClientSettings, Role};
use serde::Deserialize;

use crate::auth::Caller;
use crate::pages::{self, Outcome};
use crate::text::{encode, utc};
use crate::{Portal, WebError};

pub(crate) fn routes() -> Router<Portal> {
    Router::new()
        .route("/settings/clients", post(add_form))
        .route("/settings/clients/{name}/secret", post(rekey_form))
        .route("/settings/clients/{name}/delete", post(delete_form))
}

/// A client as the settings page shows it.
pub(crate) struct ClientView {
    pub name: String,
    pub address: String,
    pub vendor: &'static str,
    pub require_message_authenticator: bool,
    pub limit_proxy_state: bool,
    pub send_message_authenticator: bool,
    /// Stored (changeable here); `false`: managed by the configuration file.
    pub stored: bool,
    /// When and by whom a stored client was last changed.
    pub changed: String,
    /// `/settings/clients/{name}` (encoded), the prefix of its forms.
    pub href: String,
}

impl ClientView {
    pub(crate) fn of(c: &ClientListing) -> Self {
        let s = c.settings();
        let changed = match c {
            ClientListing::File(_) => String::new(),
            ClientListing::Stored(c) => format!("{} by {}", utc(c.updated_ms), c.updated_by),
        };
        Self {
            name: s.name.clone(),
            address: s.address.to_string(),
            vendor: s.vendor.name(),
            require_message_authenticator: s.require_message_authenticator,
            limit_proxy_state: s.limit_proxy_state,
            send_message_authenticator: s.send_message_authenticator,
            stored: matches!(c, ClientListing::Stored(_)),
            changed,
            href: format!("/settings/clients/{}", encode(&s.name)),
        }
    }
}

/// The vendor adapters a client may name, for the page's choice.
pub(crate) fn vendors() -> Vec<&'static str> {
    Vendor::ALL.iter().map(|v| v.name()).collect()
}

/// Runs `f` with the server's client administration on the blocking pool (it writes
/// `clients.db`). A portal without a server has none.
async fn with_admin<T: Send + 'static>(
    portal: &Portal,
    f: impl FnOnce(&dyn ClientAdmin) -> Result<T, String> + Send + 'static,
) -> Result<Result<T, String>, WebError> {
    let Some(admin) = portal.view().client_admin() else {
        return Ok(Err("RADIUS clients cannot be changed here: this portal runs without a server".into()));
    };
    tokio::task::spawn_blocking(move || f(admin.as_ref()))
        .await
        .map_err(|e| WebError::Storage(portcullis_storage::StorageError::Corrupt(e.to_string())))
}

/// Every client the server knows, as the settings page and the status page list them:
/// the file's first, then the stored ones. Without a server, the view's list.
pub(crate) async fn listing(portal: &Portal) -> Result<Vec<ClientListing>, WebError> {
    if portal.view().client_admin().is_none() {
        return Ok(Vec::new());
    }
    with_admin(portal, |a| a.list()).await?.map_err(WebError::BadRequest)
}

/// The settings of a new client from what a form or a body said.
fn settings(name: &str, address: &str, vendor: Option<&str>, flags: [bool; 3]) -> Result<ClientSettings, String> {
    let address = address.trim().parse().map_err(|e: String| format!("address: {e}"))?;
    let vendor = match vendor.map(str::trim).filter(|v| !v.is_empty()) {
        None => Vendor::Generic,
        Some(v) => Vendor::from_name(v)
            .ok_or_else(|| format!("unknown vendor {v:?}; expected one of {}", vendors().join(", ")))?,
    };
    let [require_message_authenticator, limit_proxy_state, send_message_authenticator] = flags;
    Ok(ClientSettings {
        name: name.trim().to_string(),
        address,
        vendor,
        require_message_authenticator,
        limit_proxy_state,
        send_message_authenticator,
    })
}

async fn add(portal: &Portal, caller: &Caller, s: ClientSettings, secret: ClientSecret) -> Result<Vec<String>, String> {
    let detail = format!("client {:?} address {} vendor {}", s.name, s.address, s.vendor.name());
    let by = caller.name.clone();
    let warnings = with_admin(portal, move |a| a.add(s, secret, &by)).await.map_err(|_| failed())??;
    portal.audit(&caller.name, "client-add", detail, &caller.source).await;
    Ok(warnings)
}

async fn rekey(portal: &Portal, caller: &Caller, name: String, secret: ClientSecret) -> Result<Vec<String>, String> {
    let (by, who) = (caller.name.clone(), name.clone());
    let warnings = with_admin(portal, move |a| a.set_secret(&who, secret, &by)).await.map_err(|_| failed())??;
    portal.audit(&caller.name, "client-rekey", format!("client {name:?}"), &caller.source).await;
    Ok(warnings)
}

async fn delete(portal: &Portal, caller: &Caller, name: String) -> Result<(), String> {
    let (by, who) = (caller.name.clone(), name.clone());
    with_admin(portal, move |a| a.delete(&who, &by)).await.map_err(|_| failed())??;
    portal.audit(&caller.name, "client-delete", format!("client {name:?}"), &caller.source).await;
    Ok(())
}

fn failed() -> String {
    "the client administration failed; see the server log".into()
}

const TAKES_EFFECT: &str = "the RADIUS listeners use it within a second";

// ---------------------------------------------------------------- the settings page

/// Reads a secret field into a [`ClientSecret`] straight away.
fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ClientSecret, D::Error> {
    String::deserialize(d).map(ClientSecret::new)
}

/// The add form. A checkbox left unticked is absent; the form shows all three ticked.
#[derive(Debug, Deserialize)]
struct AddForm {
    name: String,
    address: String,
    vendor: Option<String>,
    require_message_authenticator: Option<String>,
    limit_proxy_state: Option<String>,
    send_message_authenticator: Option<String>,
    #[serde(deserialize_with = "secret")]
    secret: ClientSecret,
}

#[derive(Debug, Deserialize)]
struct SecretForm {
    #[serde(deserialize_with = "secret")]
    secret: ClientSecret,
}

/// The settings page after a change: what happened, or why nothing did (400).
async fn answer(portal: &Portal, caller: &Caller, result: Result<Vec<String>, String>, done: String) -> Response {
    let outcome = match result {
        Ok(warnings) => Outcome { notice: std::iter::once(done).chain(warnings).collect(), error: None },
        Err(e) => Outcome { notice: Vec::new(), error: Some(e) },
    };
    let status = if outcome.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    match pages::settings_page(portal, caller, outcome).await {
        Ok(page) => (status, page).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn add_form(State(portal): State<Portal>, caller: Caller, Form(f): Form<AddForm>) -> Result<Response, WebError> {
    caller.require(Role::Admin)?;
    let flags = [&f.require_message_authenticator, &f.limit_proxy_state, &f.send_message_authenticator]
        .map(|v| v.as_deref().is_some_and(|v| !v.is_empty()));
    let result = match settings(&f.name, &f.address, f.vendor.as_deref(), flags) {
        Ok(s) => add(&portal, &caller, s, f.secret).await,
        Err(e) => Err(e),
    };
    let done = format!("client {:?} added; {TAKES_EFFECT}", f.name.trim());
    Ok(answer(&portal, &caller, result, done).await)
}

async fn rekey_form(
    State(portal): State<Portal>,
    caller: Caller,
    Path(name): Path<String>,
    Form(f): Form<SecretForm>,
) -> Result<Response, WebError> {
    caller.require(Role::Admin)?;
    let done = format!("secret of client {name:?} replaced; {TAKES_EFFECT}");
    let result = rekey(&portal, &caller, name, f.secret).await;
    Ok(answer(&portal, &caller, result, done).await)
}

async fn delete_form(
    State(portal): State<Portal>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    caller.require(Role::Admin)?;
    let done = format!("client {name:?} deleted; the RADIUS listeners drop it within a second");
    let result = delete(&portal, &caller, name).await.map(|()| Vec::new());
    Ok(answer(&portal, &caller, result, done).await)
}

// ---------------------------------------------------------------- /api/v1/clients

fn yes() -> bool {
    true
}

/// The body of `POST /api/v1/clients`; the BlastRADIUS options default to on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClient {
    name: String,
    address: String,
    vendor: Option<String>,
    #[serde(default = "yes")]
    require_message_authenticator: bool,
    #[serde(default = "yes")]
    limit_proxy_state: bool,
    #[serde(default = "yes")]
    send_message_authenticator: bool,
    #[serde(deserialize_with = "secret")]
    secret: ClientSecret,
}

/// The body of `PATCH /api/v1/clients/{name}`: a new secret, the one thing a stored
/// client changes (delete and add it again for the rest).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSecret {
    #[serde(deserialize_with = "secret")]
    secret: ClientSecret,
}

/// Reads a JSON body. The error names a missing or unknown member and where, never a
/// value (serde's type errors quote the value, which may be the secret).
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, WebError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let text = e.to_string();
        let what = if text.starts_with("missing field") || text.starts_with("unknown field") {
            text.split(" at line").next().unwrap_or_default().to_string()
        } else {
            match e.classify() {
                serde_json::error::Category::Data => "a member has the wrong type".to_string(),
                _ => "the body is not JSON".to_string(),
            }
        };
        WebError::BadRequest(format!("{what} (line {} column {})", e.line(), e.column()))
    })
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (status, axum::Json(value)).into_response()
}

/// The client `name` as listed, or 404.
async fn find(portal: &Portal, name: &str) -> Result<ClientListing, WebError> {
    listing(portal).await?.into_iter().find(|c| c.settings().name == name).ok_or(WebError::NotFound)
}

pub(crate) async fn api_list(State(portal): State<Portal>, caller: Caller) -> Result<Response, WebError> {
    caller.require(Role::Admin)?;
    Ok(json(StatusCode::OK, serde_json::json!({ "items": listing(&portal).await?, "next_cursor": null })))
}

pub(crate) async fn api_get(
    State(portal): State<Portal>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    caller.require(Role::Admin)?;
    Ok(json(StatusCode::OK, serde_json::to_value(find(&portal, &name).await?).unwrap_or_default()))
}

pub(crate) async fn api_add(State(portal): State<Portal>, caller: Caller, bytes: Bytes) -> Result<Response, WebError> {
    caller.require(Role::Admin)?;
    let c: NewClient = body(&bytes)?;
    let flags = [c.require_message_authenticator, c.limit_proxy_state, c.send_message_authenticator];
    let s = settings(&c.name, &c.address, c.vendor.as_deref(), flags).map_err(WebError::BadRequest)?;
    let name = s.name.clone();
    let warnings = add(&portal, &caller, s, c.secret).await.map_err(WebError::BadRequest)?;
    let client = find(&portal, &name).await?;
    Ok(json(StatusCode::CREATED, serde_json::json!({ "client": client, "warnings": warnings })))
}

pub(crate) async fn api_rekey(
    State(portal): State<Portal>,
    caller: Caller,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Response, WebError> {
    caller.require(Role::Admin)?;
    let c: NewSecret = body(&bytes)?;
    find(&portal, &name).await?;
    let warnings = rekey(&portal, &caller, name.clone(), c.secret).await.map_err(WebError::BadRequest)?;
    let client = find(&portal, &name).await?;
    Ok(json(StatusCode::OK, serde_json::json!({ "client": client, "warnings": warnings })))
}

pub(crate) async fn api_delete(
    State(portal): State<Portal>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    caller.require(Role::Admin)?;
    find(&portal, &name).await?;
    delete(&portal, &caller, name).await.map_err(WebError::BadRequest)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
