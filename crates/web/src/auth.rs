//! Who is calling: portal passwords (Argon2id), login sessions behind a cookie, API
//! bearer tokens, and the sign-in rate limit.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_storage::Role;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{Portal, now_ms};

/// A login session ends after this long without a request...
pub const IDLE_MS: i64 = 30 * 60 * 1000;
/// ...and this long after sign-in, however busy.
pub const ABSOLUTE_MS: i64 = 8 * 60 * 60 * 1000;
/// Failed sign-ins per account, and per source address, within [`FAILURE_WINDOW_MS`]
/// after which sign-in answers 429 without checking the password.
pub const MAX_FAILURES: u64 = 5;
pub const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;
/// The prefix of every API token.
pub const TOKEN_PREFIX: &str = "pcl_";

/// Argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane).
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string stored for a portal password.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// A hash of a random password, verified when the name is unknown so that an unknown
/// name costs as much as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_secret()).unwrap_or_default())
}

/// Checks a password against a stored hash (or the dummy when there is none).
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    let stored: &str = match hash {
        Some(h) => h,
        None => dummy_hash(),
    };
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    argon2().verify_password(password.as_bytes(), &parsed).is_ok() && hash.is_some()
}

/// 256 random bits as hex.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What is stored for a session id or token: its SHA-256 (the secret itself has 256
/// random bits, so no slow hash is needed).
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A new API token: the value shown once, and its hash and recognisable prefix to store.
pub fn new_token() -> (String, [u8; 32], String) {
    let value = format!("{TOKEN_PREFIX}{}", random_secret());
    let prefix = value.chars().take(TOKEN_PREFIX.len() + 6).collect();
    (value.clone(), digest(&value), prefix)
}

/// The signed-in account or token behind a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// The digest of the login session's id (none for a token).
    pub session: Option<[u8; 32]>,
    pub source: String,
}

impl Caller {
    pub fn may(&self, role: Role) -> bool {
        self.role >= role
    }

    /// 403 unless the caller has at least `role`.
    pub(crate) fn require(&self, role: Role) -> Result<(), crate::WebError> {
        if self.may(role) { Ok(()) } else { Err(crate::WebError::Forbidden) }
    }
}

/// The request's source address as the listener saw it.
pub fn source(parts: &Parts) -> String {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The value of the cookie `name`, if the request carries it.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Why no caller was found.
#[derive(Debug, Clone, Copy)]
pub enum Unauthenticated {
    /// A page: go and sign in.
    Page,
    /// The API: 401.
    Api,
    Failed,
}

impl IntoResponse for Unauthenticated {
    fn into_response(self) -> Response {
        match self {
            Self::Page => Redirect::to("/login").into_response(),
            Self::Api => {
                let mut r = (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({"error": "unauthenticated"})))
                    .into_response();
                r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
                r
            }
            Self::Failed => (StatusCode::SERVICE_UNAVAILABLE, "the portal database is unavailable\n").into_response(),
        }
    }
}

impl FromRequestParts<Portal> for Caller {
    type Rejection = Unauthenticated;

    async fn from_request_parts(parts: &mut Parts, portal: &Portal) -> Result<Self, Self::Rejection> {
        let api = parts.extensions.get::<crate::api::ApiRequest>().is_some();
        let missing = if api { Unauthenticated::Api } else { Unauthenticated::Page };
        let source = source(parts);
        let now = now_ms();
        if let Some(token) = bearer(parts) {
            // A bearer token is for the API only; a wrong one is never tried as a cookie.
            if !api || !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
                return Err(missing);
            }
            let hash = digest(token);
            let found =
                portal.accounts(move |db| db.use_token(&hash, now)).await.map_err(|_| Unauthenticated::Failed)?;
            let t = found.ok_or(missing)?;
            return Ok(Self { name: format!("token:{}", t.name), role: t.role, session: None, source });
        }
        let id = cookie(parts, portal.cookie_name()).filter(|v| v.len() == 64).ok_or(missing)?;
        let hash = digest(id);
        let found = portal
            .accounts(move |db| db.session(&hash, now, IDLE_MS, ABSOLUTE_MS))
            .await
            .map_err(|_| Unauthenticated::Failed)?;
        let s = found.ok_or(missing)?;
        Ok(Self { name: s.account, role: s.role, session: Some(hash), source })
    }
}
