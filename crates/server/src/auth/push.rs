//! Push approval: the login waits while a notification with a signed link goes out
//! through a webhook; the phone's owner opens the link (served by the `[http]`
//! listener) and approves or denies. Only accounts that enrolled for push get one.
//! One approval admits one login: pending pushes live in the MFA database under the
//! account and the request's origin (a digest of its Request Authenticator, User-Name,
//! NAS and Calling-Station-Id), so only the same request — retransmitted, or retried
//! at another server sharing the database — joins a pending push.
//!
//! While a push is pending the request stays in the duplicate cache as in flight, so
//! NAS retransmits are discarded; the one answer is then cached and re-sent to
//! retransmits for the cache's retention (at least 10 s).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::Html;
use hmac::{Hmac, Mac};
use portcullis_radius::{Authenticator, Identifier, Packet, attr};
use portcullis_storage::AuthEvent;
use rand::RngCore;
use sha2::Sha256;
use tokio::net::UdpSocket;

use super::audit::{audit, second_factor_outcome};
use super::context::{AuthShared, LiveAuth};
use super::factor::Mfa;
use crate::clients::Reason;
use crate::config::FailMode;
use crate::{hex, lock, now_unix};

/// A login waiting for approval: both possible answers, prepared by the decision.
#[derive(Debug)]
pub struct PushWork {
    pub accept: Vec<u8>,
    pub reject: Vec<u8>,
    /// The audit event of the accept; the reject reuses it with the outcome.
    pub event: AuthEvent,
    /// The account's stable key: pushes and the fatigue count are kept under it.
    pub account: String,
    /// The request's origin ([`origin`]): only the same request joins a pending push.
    pub origin: String,
    /// A push already started (number matching: the answer to its challenge waits on it).
    pub existing: Option<String>,
}

/// The origin of a login for joining a pending push: a digest of the Identifier,
/// Request Authenticator, User-Name, NAS and Calling-Station-Id. A retransmit, or the same
/// request retried at another server, has the same origin; a second login does not.
pub(crate) fn origin(packet: &Packet<'_>, source: SocketAddr) -> String {
    use sha2::Digest;
    let mut h = Sha256::new();
    h.update(packet.authenticator().0);
    h.update([packet.identifier().0]);
    for t in [attr::USER_NAME, attr::NAS_IDENTIFIER, attr::NAS_IP_ADDRESS, attr::CALLING_STATION_ID] {
        let v = packet.attribute(t).unwrap_or_default();
        h.update((v.len() as u32).to_be_bytes());
        h.update(v);
    }
    h.update(source.ip().to_canonical().to_string().as_bytes());
    hex(&h.finalize()[..16])
}

/// The signature on an approval link.
pub fn sign(key: &[u8; 32], id: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(b"portcullis push ");
    m.update(id.as_bytes());
    hex(&m.finalize().into_bytes()[..16])
}

fn verify(key: &[u8; 32], id: &str, sig: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(sign(key, id).as_bytes().ct_eq(sig.as_bytes()))
}

fn json_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted[1..quoted.len().saturating_sub(1)].to_string()
}

/// Fills the webhook template.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), &json_escape(v));
    }
    out
}

/// Waits for the push and answers the request. Runs as its own task.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn settle(
    shared: Arc<AuthShared>,
    work: Box<PushWork>,
    datagram: Vec<u8>,
    source: SocketAddr,
    socket: Arc<UdpSocket>,
    id: Identifier,
    auth: Authenticator,
) {
    let (reply, event) = wait(&shared, *work).await;
    if let Some(c) = shared.clients.load().lookup(source.ip().to_canonical()) {
        c.counters.bump(if event.decision == "accept" { Reason::AccessAccept } else { Reason::AccessReject });
    }
    lock(&shared.cache).answered(std::time::Instant::now(), source, id, auth, reply.clone());
    let _ = socket.send_to(&reply, source).await;
    if let Ok(packet) = Packet::decode(&datagram) {
        audit(&shared, event, &packet, source);
    }
    shared.pending.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

async fn wait(shared: &Arc<AuthShared>, work: PushWork) -> (Vec<u8>, AuthEvent) {
    let PushWork { accept, reject, event, account, origin, existing } = work;
    let outcome = second_factor_outcome;
    let (Some(mfa), Some(push)) = (shared.mfa.as_ref(), shared.mfa.as_ref().and_then(|m| m.config.push.clone())) else {
        return (reject, outcome(event, false, "push_unavailable", "push approval is not configured".into()));
    };
    // Never longer than the wait, whatever the database says (or fails to say).
    let deadline = now_unix() + push.wait_seconds as i64 + 2;
    let push_id = match existing {
        Some(id) => id,
        None => match begin(mfa, &push, &account, &event, &origin, None).await {
            Ok(id) => id,
            Err(Begin::Fatigue(why)) => return (reject, outcome(event, false, "push_fatigue", why)),
            Err(Begin::Local(why)) => return (reject, outcome(event, false, "push_unavailable", why)),
            Err(Begin::Unavailable(why)) => return fail(mfa.config.fail_mode, accept, reject, event, &why, outcome),
        },
    };
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let db = Arc::clone(&mfa.db);
        let pid = push_id.clone();
        let state = blocking(move || lock(&db).push(&pid)).await;
        let (status, expires_at) = match state {
            Some(Ok(Some((_, status, expires_at)))) => (status, expires_at),
            _ => ("unknown".to_string(), 0),
        };
        if status == "unknown" && now_unix() <= deadline {
            continue;
        }
        match status.as_str() {
            "approved" => {
                return (accept, outcome(event, true, "push_approved", "access granted after push approval".into()));
            }
            "denied" => return (reject, outcome(event, false, "push_denied", "the user denied the push".into())),
            "pending" if now_unix() < expires_at.min(deadline) => {}
            _ => {
                let db = Arc::clone(&mfa.db);
                let pid = push_id.clone();
                let _ = blocking(move || lock(&db).settle_push(&pid, "timeout", now_unix())).await;
                return (reject, outcome(event, false, "push_timeout", "the push was not answered in time".into()));
            }
        }
    }
}

/// Why a push could not be started.
pub(crate) enum Begin {
    /// Too many unapproved pushes recently.
    Fatigue(String),
    /// The notifier could not be reached or refused the notification (`fail_mode`
    /// decides).
    Unavailable(String),
    /// A failure here — the MFA database, this machine's resources — which says nothing
    /// about the notifier: always a rejection, whatever `fail_mode` says.
    Local(String),
}

/// Whether a failed webhook call means the notifier is unreachable (as opposed to this
/// machine failing to make the call: no file descriptors, no memory, a bad request).
fn notifier_unreachable(e: &reqwest::Error) -> bool {
    use std::error::Error as _;
    if e.is_timeout() || e.is_status() {
        return true;
    }
    if !e.is_connect() {
        return false;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            // EMFILE, ENFILE, ENOMEM, ENOBUFS and the like are ours, not the notifier's.
            return matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::TimedOut
                    | K::HostUnreachable
                    | K::NetworkUnreachable
                    | K::NotFound
                    | K::AddrNotAvailable
            );
        }
        source = s.source();
    }
    // Name resolution and TLS failures carry no I/O error: the notifier side.
    true
}

/// Starts a push for `account` (or joins the pending one of this same request) and
/// sends the notification for a new one. `number` is shown on the page for number
/// matching.
pub(crate) async fn begin(
    mfa: &Mfa,
    push: &crate::config::PushConfig,
    account: &str,
    event: &AuthEvent,
    origin: &str,
    number: Option<u32>,
) -> Result<String, Begin> {
    let user = account.to_string();
    let now = now_unix();
    let db = Arc::clone(&mfa.db);
    let (u, since) = (user.clone(), now - push.fatigue_window_seconds as i64);
    let unapproved = blocking(move || lock(&db).unapproved_pushes(&u, since)).await;
    let unapproved = match unapproved {
        Some(Ok(n)) => n,
        Some(Err(e)) => return Err(Begin::Local(format!("MFA database unavailable (push fatigue): {e}"))),
        None => return Err(Begin::Local("MFA database unavailable (push fatigue)".into())),
    };
    let new_id = {
        let mut raw = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut raw);
        hex(&raw)
    };
    let db = Arc::clone(&mfa.db);
    let (u, o, expires) = (user.clone(), origin.to_string(), now + push.wait_seconds as i64);
    let started = blocking(move || lock(&db).start_push(&new_id, &u, &o, now, expires, number)).await;
    let Some(Ok((push_id, is_new))) = started else {
        return Err(Begin::Local("the MFA database is unavailable".into()));
    };
    if !is_new {
        return Ok(push_id);
    }
    let settle_as = |status: &'static str| {
        let db = Arc::clone(&mfa.db);
        let pid = push_id.clone();
        blocking(move || lock(&db).settle_push(&pid, status, now_unix()))
    };
    if unapproved >= push.max_unapproved {
        let _ = settle_as("failed").await;
        return Err(Begin::Fatigue(format!(
            "{unapproved} pushes were denied or left unanswered recently; no new push sent"
        )));
    }
    let url =
        format!("{}/mfa/push/{push_id}?sig={}", push.public_url.trim_end_matches('/'), sign(&mfa.key(), &push_id));
    let request_built = mfa.http.post(&push.webhook_url).build();
    if let Err(e) = request_built {
        let _ = settle_as("failed").await;
        return Err(Begin::Local(format!("the webhook request cannot be built: {}", e.without_url())));
    }
    let time =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let body = render(
        &push.webhook_template,
        &[
            ("user", &event.user),
            ("nas", &event.nas),
            ("calling_station_id", event.calling_station_id.as_deref().unwrap_or("unknown")),
            ("method", &event.method),
            ("time", &time),
            ("url", &url),
        ],
    );
    let mut request = mfa
        .http
        .post(&push.webhook_url)
        .timeout(Duration::from_secs(push.webhook_timeout_seconds.max(1)))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in &push.webhook_headers {
        request = request.header(k, v);
    }
    // Errors are shown without the URL: its path may be the credential (ntfy topics).
    let sent = match request.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err((true, format!("the webhook answered {}", r.status()))),
        Err(e) => Err((notifier_unreachable(&e), e.without_url().to_string())),
    };
    if let Err((unreachable, e)) = sent {
        tracing::error!(error = %e, "push notification could not be sent");
        let _ = settle_as("failed").await;
        let why = format!("push notification failed: {e}");
        return Err(if unreachable { Begin::Unavailable(why) } else { Begin::Local(why) });
    }
    Ok(push_id)
}

fn fail(
    mode: FailMode,
    accept: Vec<u8>,
    reject: Vec<u8>,
    event: AuthEvent,
    why: &str,
    outcome: impl Fn(AuthEvent, bool, &str, String) -> AuthEvent,
) -> (Vec<u8>, AuthEvent) {
    match mode {
        FailMode::Secure => {
            (reject, outcome(event, false, "push_unavailable", format!("{why}; rejected (fail mode secure)")))
        }
        FailMode::Safe => {
            tracing::warn!("{why}: access granted WITHOUT a second factor (fail mode safe)");
            (
                accept,
                outcome(
                    event,
                    true,
                    "fail_safe_admitted",
                    format!("{why}; ADMITTED WITHOUT A SECOND FACTOR (fail mode safe)"),
                ),
            )
        }
    }
}

/// Query string of the approval links.
#[derive(Debug, serde::Deserialize)]
pub struct Signed {
    sig: String,
}

const PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>VPN sign-in</title></head><body style=\"font-family:sans-serif;max-width:30em;margin:2em auto\">";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The HTTP routes: approval pages and a health check.
pub fn router(shared: Arc<LiveAuth>) -> axum::Router {
    axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok\n" }))
        .route("/mfa/push/{id}", axum::routing::get(page))
        .route("/mfa/push/{id}/approve", axum::routing::post(approve))
        .route("/mfa/push/{id}/deny", axum::routing::post(deny))
        .route("/mfa/enroll/{token}", axum::routing::get(enrol_page).post(enrol))
        .with_state(shared)
}

async fn page(State(live): State<Arc<LiveAuth>>, Path(id): Path<String>, Query(q): Query<Signed>) -> Html<String> {
    let shared = live.load();
    let Some(mfa) = &shared.mfa else { return Html(format!("{PAGE}<p>Not available.</p>")) };
    if !verify(&mfa.key(), &id, &q.sig) {
        return Html(format!("{PAGE}<p>This link is not valid.</p>"));
    }
    let db = Arc::clone(&mfa.db);
    let pid = id.clone();
    let push = blocking(move || lock(&db).push(&pid)).await.and_then(Result::ok).flatten();
    match push {
        Some((user, status, _)) if status == "pending" => {
            let db = Arc::clone(&mfa.db);
            let pid = id.clone();
            let numbered = blocking(move || lock(&db).push_number(&pid)).await.and_then(Result::ok).flatten().is_some();
            let field = if numbered {
                "<p><label>Number shown on your VPN screen: <input name=\"number\" inputmode=\"numeric\" autocomplete=\"off\"></label></p>"
            } else {
                ""
            };
            Html(format!(
                "{PAGE}<h1>VPN sign-in for {}</h1><p>Is this you signing in now?</p>\
                 <form method=\"post\" action=\"/mfa/push/{id}/approve?sig={sig}\">{field}<button>Approve</button></form>\
                 <form method=\"post\" action=\"/mfa/push/{id}/deny?sig={sig}\"><button>Deny</button></form></body></html>",
                escape(super::factor::label(&user)),
                id = escape(&id),
                sig = escape(&q.sig)
            ))
        }
        Some((_, status, _)) => Html(format!("{PAGE}<p>This sign-in was already {}.</p>", escape(&status))),
        None => Html(format!("{PAGE}<p>Unknown sign-in.</p>")),
    }
}

async fn decide(
    shared: Arc<AuthShared>,
    id: String,
    sig: String,
    status: &'static str,
    typed: Option<String>,
) -> Html<String> {
    let Some(mfa) = &shared.mfa else { return Html(format!("{PAGE}<p>Not available.</p>")) };
    if !verify(&mfa.key(), &id, &sig) {
        return Html(format!("{PAGE}<p>This link is not valid.</p>"));
    }
    let db = Arc::clone(&mfa.db);
    let settled = blocking(move || {
        let db = lock(&db);
        // Number matching: a wrong number denies (someone else may be at the prompt).
        let expected = db.push_number(&id).ok().flatten();
        let status = match (status, expected) {
            ("approved", Some(n)) if typed.as_deref().map(str::trim) != Some(n.to_string().as_str()) => "denied",
            _ => status,
        };
        db.settle_push(&id, status, now_unix()).map(|ok| ok.then_some(status))
    })
    .await
    .and_then(Result::ok);
    let settled = match settled {
        Some(Some(s)) if s == status => Some(true),
        Some(Some(_)) => return Html(format!("{PAGE}<p>The number did not match; the sign-in was denied.</p>")),
        _ => Some(false),
    };
    if settled == Some(true) {
        Html(format!("{PAGE}<p>Sign-in {status}.</p>"))
    } else {
        Html(format!("{PAGE}<p>This sign-in can no longer be changed.</p>"))
    }
}

async fn approve(
    State(live): State<Arc<LiveAuth>>,
    Path(id): Path<String>,
    Query(q): Query<Signed>,
    body: String,
) -> Html<String> {
    let shared = live.load();
    // The form's only field: `number=<digits>` (URL-encoded digits are themselves).
    let typed = body.split('&').find_map(|kv| kv.strip_prefix("number=")).map(str::to_string);
    decide(shared, id, q.sig, "approved", typed).await
}

async fn deny(State(live): State<Arc<LiveAuth>>, Path(id): Path<String>, Query(q): Query<Signed>) -> Html<String> {
    let shared = live.load();
    decide(shared, id, q.sig, "denied", None).await
}

async fn enrol_page(State(live): State<Arc<LiveAuth>>, Path(token): Path<String>) -> Html<String> {
    let shared = live.load();
    let Some(mfa) = &shared.mfa else { return Html(format!("{PAGE}<p>Not available.</p>")) };
    let db = Arc::clone(&mfa.db);
    let hash = super::factor::enrol_token_hash(&token);
    let user = blocking(move || lock(&db).enrol_link(&hash, now_unix())).await.and_then(Result::ok).flatten();
    match user {
        // A form, so link previews (which only fetch) cannot use the link up.
        Some(user) => Html(format!(
            "{PAGE}<h1>Second factor for {}</h1><p>This link works once. Have your authenticator app ready.</p>\
             <form method=\"post\"><button>Create my authenticator entry</button></form></body></html>",
            escape(super::factor::label(&user))
        )),
        None => Html(format!("{PAGE}<p>This enrolment link is not valid (used, expired or unknown).</p>")),
    }
}

const INVALID_LINK: &str = "This enrolment link is not valid (used, expired or unknown).";
const ALREADY_ENROLLED: &str =
    "This account already has a second factor. Ask an administrator to reset it before enrolling a new one.";

async fn enrol(State(live): State<Arc<LiveAuth>>, Path(token): Path<String>) -> Html<String> {
    let shared = live.load();
    let Some(mfa) = &shared.mfa else { return Html(format!("{PAGE}<p>Not available.</p>")) };
    let db = Arc::clone(&mfa.db);
    let hash = super::factor::enrol_token_hash(&token);
    let issuer = mfa.config.issuer.clone();
    let done = blocking(move || {
        let mut db = lock(&db);
        let now = now_unix();
        let user = db.enrol_link(&hash, now).ok().flatten().ok_or(INVALID_LINK)?;
        // A link never replaces a factor: that needs the old one, or an administrator.
        if !matches!(db.factor(&user), Ok(None)) {
            return Err(ALREADY_ENROLLED);
        }
        if !db.use_enrol_link(&hash, now).unwrap_or(false) {
            return Err(INVALID_LINK);
        }
        super::factor::enroll(&mut db, &user, portcullis_auth::mfa::TotpAlgorithm::Sha1, 6, &issuer, false)
            .map(|e| (user, e))
            .map_err(|_| ALREADY_ENROLLED)
    })
    .await
    .unwrap_or(Err(INVALID_LINK));
    let (user, e) = match done {
        Ok(d) => d,
        Err(why) => return Html(format!("{PAGE}<p>{why}</p>")),
    };
    let qr = qrcode::QrCode::new(e.uri.as_bytes())
        .map(|q| q.render::<qrcode::render::svg::Color<'_>>().min_dimensions(240, 240).build())
        .unwrap_or_default();
    let codes: String = e.recovery_codes.iter().map(|c| format!("<li><code>{c}</code></li>")).collect();
    Html(format!(
        "{PAGE}<h1>Second factor for {}</h1><p>Scan this with your authenticator app:</p>{qr}\
         <p>Or enter the key by hand: <code>{}</code></p><p>Recovery codes (each works once; keep them safe, \
         they are not shown again):</p><ul>{codes}</ul></body></html>",
        escape(super::factor::label(&user)),
        portcullis_auth::mfa::base32(&e.secret)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_escape_and_links_verify() {
        let body = render(r#"{"m":"{user} at {url}"}"#, &[("user", "a\"b"), ("url", "http://x/?sig=1")]);
        assert_eq!(body, r#"{"m":"a\"b at http://x/?sig=1"}"#);
        assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok());
        let key = [3u8; 32];
        let sig = sign(&key, "abc");
        assert!(verify(&key, "abc", &sig));
        assert!(!verify(&key, "abd", &sig));
        assert!(!verify(&[4u8; 32], "abc", &sig));
    }
}
