//! The portal and REST API: server-rendered pages (askama, usable without JavaScript)
//! and `/api/v1` JSON over the same queries, portal accounts and roles, login sessions,
//! bearer tokens, CSRF and header policy, and streamed CSV/NDJSON exports.
//!
//! It reads and changes data only through the `Store` trait and the portal database of
//! `portcullis-storage`; what only the running server knows (its RADIUS clients, the
//! journal backlog) comes through [`ServerView`], which the server implements. It never
//! depends on the server crate.

mod api;
pub mod auth;
mod clients;
mod export;
mod map;
mod pages;
mod security;
mod text;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portcullis_storage::{ClientAdmin, PortalDb, StorageError, Store};

pub use api::{ROUTES, openapi_document};
pub use export::{Cursor, Format, csv_field};
pub use pages::demo_password_notice;

/// What the running server knows that the store does not.
pub trait ServerView: Send + Sync + 'static {
    /// The configured RADIUS clients: name and the networks they may send from.
    fn clients(&self) -> Vec<(String, String)>;
    /// Journal bytes appended but not yet applied to the store.
    fn journal_backlog_bytes(&self) -> Option<u64>;
    /// The administration of RADIUS clients (Settings, `/api/v1/clients`); none: the
    /// portal cannot list or change them.
    fn client_admin(&self) -> Option<Arc<dyn ClientAdmin>> {
        None
    }
}

/// A [`ServerView`] for a portal running without a server (tests, tools).
#[derive(Debug, Default)]
pub struct NoServer;

impl ServerView for NoServer {
    fn clients(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    fn journal_backlog_bytes(&self) -> Option<u64> {
        None
    }
}

/// How the portal is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Served over TLS: the session cookie is `__Host-` prefixed and `Secure`. Plain
    /// HTTP is only allowed on loopback addresses (the configuration refuses otherwise),
    /// where the cookie is `portcullis_session`, without `Secure`.
    pub tls: bool,
}

/// The portal's shared state: a connection to the store of its own (so it never holds
/// a lock the applier needs), the portal database, and the server's view.
#[derive(Clone)]
pub struct Portal(Arc<Inner>);

struct Inner {
    store: Mutex<Box<dyn Store>>,
    accounts: Mutex<PortalDb>,
    view: Arc<dyn ServerView>,
    options: Options,
}

/// A failure answering a request.
#[derive(Debug)]
pub(crate) enum WebError {
    Storage(StorageError),
    BadRequest(String),
    Forbidden,
    NotFound,
}

impl From<StorageError> for WebError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Invalid(m) => Self::BadRequest(m),
            other => Self::Storage(other),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            Self::Storage(e) => {
                tracing::error!(error = %e, "portal request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "the store could not answer; see the server log\n").into_response()
            }
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, format!("{m}\n")).into_response(),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden: your role does not allow this\n").into_response(),
            Self::NotFound => (StatusCode::NOT_FOUND, "not found\n").into_response(),
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Portal {
    pub fn new(store: Box<dyn Store>, accounts: PortalDb, view: Arc<dyn ServerView>, options: Options) -> Self {
        Self(Arc::new(Inner { store: Mutex::new(store), accounts: Mutex::new(accounts), view, options }))
    }

    /// Runs `f` with the store on the blocking pool.
    pub(crate) async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, WebError> {
        let inner = Arc::clone(&self.0);
        let joined = tokio::task::spawn_blocking(move || {
            let mut store = inner.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(store.as_mut())
        })
        .await;
        joined.map_err(|e| WebError::Storage(StorageError::Corrupt(e.to_string())))?.map_err(WebError::from)
    }

    /// The store from a blocking thread (exports).
    pub(crate) fn store_blocking<T>(&self, f: impl FnOnce(&mut dyn Store) -> T) -> T {
        let mut store = self.0.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(store.as_mut())
    }

    /// Runs `f` with the portal database on the blocking pool.
    pub(crate) async fn accounts<T: Send + 'static>(
        &self,
        f: impl FnOnce(&PortalDb) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, WebError> {
        let inner = Arc::clone(&self.0);
        let joined = tokio::task::spawn_blocking(move || {
            let db = inner.accounts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&db)
        })
        .await;
        joined.map_err(|e| WebError::Storage(StorageError::Corrupt(e.to_string())))?.map_err(WebError::from)
    }

    /// Writes one audit line; a failure is logged, never shown.
    pub(crate) async fn audit(&self, actor: &str, action: &'static str, detail: String, source: &str) {
        let (actor, source) = (actor.to_string(), source.to_string());
        if let Err(e) = self.accounts(move |db| db.audit(now_ms(), &actor, action, &detail, &source)).await {
            tracing::error!(error = ?e, "cannot write the portal audit");
        }
    }

    pub(crate) fn view(&self) -> &dyn ServerView {
        self.0.view.as_ref()
    }

    pub(crate) fn tls(&self) -> bool {
        self.0.options.tls
    }

    /// The session cookie's name: `__Host-` needs `Secure`, which needs TLS.
    pub(crate) fn cookie_name(&self) -> &'static str {
        if self.tls() { "__Host-portcullis_session" } else { "portcullis_session" }
    }

    /// The cookie of a sign-in whose password was right and whose code is to come.
    pub(crate) fn pending_cookie_name(&self) -> &'static str {
        if self.tls() { "__Host-portcullis_pending" } else { "portcullis_pending" }
    }

    /// The pages and the API, with the header policy and the CSRF check.
    pub fn router(self) -> Router {
        pages::routes()
            .merge(clients::routes())
            .nest("/api/v1", api::routes())
            .layer(axum::middleware::from_fn(security::csrf))
            .layer(axum::middleware::from_fn_with_state(self.clone(), security::headers))
            .with_state(self)
    }
}
