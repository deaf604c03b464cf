//! The second factor's pages on the `[http]` listener: the approval page a push links
//! to, and the one-time enrolment page.
//!
//! An approval page shows what the user needs to judge the login (when, from which
//! address and place, NAS, method, how many approvals were asked in the last hour).
//! Approving needs proof: the account's own TOTP (or recovery) code, checked with the
//! same single use and lockout as a code sent by Access-Challenge, so a forwarded link
//! or a leaked channel approves nothing. Denying needs none; "this wasn't me" denies
//! and is audited as `push_reported`, which raises an alert at once. Every answer
//! settles the push once, in one transaction with the answer (factor, address, user
//! agent); a replayed answer changes nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use portcullis_storage::{PushContext, PushDecision};

use super::context::{AuthShared, LiveAuth};
use super::push::{blocking, verify};
use crate::{lock, now_unix};

/// Query string of the approval links.
#[derive(Debug, serde::Deserialize)]
struct Signed {
    sig: String,
}

/// The approval form: the code that proves it, and the number for number matching.
#[derive(Debug, Default, serde::Deserialize)]
struct Proof {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    number: Option<String>,
}

const PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>VPN sign-in</title></head><body style=\"font-family:sans-serif;max-width:30em;margin:2em auto\">";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn message(text: &str) -> Html<String> {
    Html(format!("{PAGE}<p>{}</p></body></html>", escape(text)))
}

/// The HTTP routes: approval pages, enrolment pages and a health check.
pub fn router(shared: Arc<LiveAuth>) -> axum::Router {
    axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok\n" }))
        .route("/mfa/push/{id}", axum::routing::get(page))
        .route("/mfa/push/{id}/approve", axum::routing::post(approve))
        .route("/mfa/push/{id}/deny", axum::routing::post(deny))
        .route("/mfa/push/{id}/report", axum::routing::post(report))
        .route("/mfa/enroll/{token}", axum::routing::get(enrol_page).post(enrol))
        .route("/mfa/enroll/{token}/confirm", axum::routing::post(confirm))
        .with_state(shared)
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// A pending push as its page shows it.
struct Pending {
    user: String,
    context: Option<PushContext>,
    asked_last_hour: u32,
    numbered: bool,
}

async fn page(State(live): State<Arc<LiveAuth>>, Path(id): Path<String>, Query(q): Query<Signed>) -> Html<String> {
    let shared = live.load();
    let Some(mfa) = &shared.mfa else { return message("Not available.") };
    if !verify(&mfa.key(), &id, &q.sig) {
        return message("This link is not valid.");
    }
    let db = Arc::clone(&mfa.db);
    let pid = id.clone();
    let found = blocking(move || {
        let db = lock(&db);
        let Some((user, status, expires_at)) = db.push(&pid)? else { return Ok(Err("unknown".to_string())) };
        if status != "pending" || expires_at <= now_unix() {
            return Ok(Err(if status == "pending" { "timeout".into() } else { status }));
        }
        let context = db.push_details(&pid)?.0;
        let asked_last_hour = db.pushes_since(&user, now_unix() - 3600)?;
        let numbered = db.push_number(&pid)?.is_some();
        Ok::<_, portcullis_storage::StorageError>(Ok(Pending { user, context, asked_last_hour, numbered }))
    })
    .await;
    let p = match found {
        Some(Ok(Ok(p))) => p,
        Some(Ok(Err(status))) if status == "unknown" => return message("Unknown sign-in."),
        Some(Ok(Err(status))) => return message(&format!("This sign-in can no longer be answered ({status}).")),
        _ => return message("The sign-in cannot be read now; try again."),
    };
    let c = p.context.unwrap_or_default();
    let place = match (c.city.as_deref(), c.country.as_deref()) {
        (Some(city), Some(country)) => format!(" ({city}, {country})"),
        (None, Some(country)) => format!(" ({country})"),
        _ => String::new(),
    };
    let number = if p.numbered {
        "<p><label>Number shown on your VPN screen: <input name=\"number\" inputmode=\"numeric\" autocomplete=\"off\"></label></p>"
    } else {
        ""
    };
    Html(format!(
        "{PAGE}<h1>VPN sign-in for {user}</h1><p>Is this you signing in now?</p>\
         <dl><dt>Time</dt><dd id=\"time\">{time}</dd><dt>From</dt><dd id=\"source\">{source}{place}</dd>\
         <dt>NAS</dt><dd id=\"nas\">{nas}</dd><dt>Method</dt><dd id=\"method\">{method}</dd>\
         <dt>Approvals asked in the last hour</dt><dd id=\"asked\">{asked}</dd></dl>\
         <form method=\"post\" action=\"/mfa/push/{id}/approve?sig={sig}\">{number}\
         <p><label>Code from your authenticator app: <input name=\"code\" inputmode=\"numeric\" \
         autocomplete=\"one-time-code\" required></label></p><button>Approve</button></form>\
         <form method=\"post\" action=\"/mfa/push/{id}/deny?sig={sig}\"><button>Deny</button></form>\
         <form method=\"post\" action=\"/mfa/push/{id}/report?sig={sig}\"><button>This wasn't me</button></form>\
         </body></html>",
        user = escape(super::factor::label(&p.user)),
        time = escape(&rfc3339(c.time)),
        source = escape(c.source.as_deref().unwrap_or("unknown")),
        place = escape(&place),
        nas = escape(&c.nas),
        method = escape(&c.method),
        asked = p.asked_last_hour,
        id = escape(&id),
        sig = escape(&q.sig),
    ))
}

/// Who answered: the TCP peer and its User-Agent (control characters dropped, at most
/// 200 characters).
fn answerer(peer: SocketAddr, headers: &HeaderMap, factor: &str) -> PushDecision {
    let agent = headers.get(axum::http::header::USER_AGENT).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    PushDecision {
        factor: factor.into(),
        address: peer.ip().to_canonical().to_string(),
        user_agent: agent.unwrap_or_default().chars().filter(|c| !c.is_control()).take(200).collect(),
    }
}

/// Settles a pending push with `status` and the answer; the page's text.
async fn settle(shared: &AuthShared, id: String, status: &'static str, answer: PushDecision) -> Html<String> {
    let Some(mfa) = &shared.mfa else { return message("Not available.") };
    let db = Arc::clone(&mfa.db);
    let settled = blocking(move || lock(&db).decide_push(&id, status, now_unix(), &answer)).await;
    match settled {
        Some(Ok(true)) if status == "reported" => {
            message("Thank you. The sign-in was denied and reported to the security team.")
        }
        Some(Ok(true)) => message(&format!("Sign-in {status}.")),
        Some(Ok(false)) => message("This sign-in can no longer be changed."),
        _ => message("The answer could not be recorded; the sign-in stays unanswered."),
    }
}

async fn approve(
    State(live): State<Arc<LiveAuth>>,
    Path(id): Path<String>,
    Query(q): Query<Signed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    // A body over the limit is refused as such (413); an unreadable form proves nothing.
    let body = match body {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let proof = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    proven(&live, id, &q.sig, peer, &headers, proof).await.into_response()
}

async fn proven(
    live: &LiveAuth,
    id: String,
    sig: &str,
    peer: SocketAddr,
    headers: &HeaderMap,
    proof: Proof,
) -> Html<String> {
    let shared = live.load();
    let Some(mfa) = &shared.mfa else { return message("Not available.") };
    if !verify(&mfa.key(), &id, sig) {
        return message("This link is not valid.");
    }
    let db = Arc::clone(&mfa.db);
    let pid = id.clone();
    let push = blocking(move || {
        let db = lock(&db);
        Ok::<_, portcullis_storage::StorageError>((db.push(&pid)?, db.push_number(&pid)?))
    })
    .await;
    // The account is the push's, never anything the form names.
    let (user, expected) = match push {
        Some(Ok((Some((user, status, expires_at)), number))) if status == "pending" && expires_at > now_unix() => {
            (user, number)
        }
        Some(Ok((Some(_), _))) => return message("This sign-in can no longer be changed."),
        Some(Ok((None, _))) => return message("Unknown sign-in."),
        _ => return message("The sign-in cannot be read now; try again."),
    };
    let none = answerer(peer, headers, "none");
    // Number matching: a wrong number denies (someone else may be at the prompt).
    if let Some(n) = expected
        && proof.number.as_deref().map(str::trim) != Some(n.to_string().as_str())
    {
        let _ = settle(&shared, id, "denied", none).await;
        return message("The number did not match; the sign-in was denied.");
    }
    let Some(code) = proof.code.filter(|c| !c.trim().is_empty()) else {
        return message("Approving needs the code from your authenticator app; the sign-in is still waiting.");
    };
    let code = code.trim().to_string();
    let (live2, key) = (Arc::clone(&shared), user.clone());
    let proved = blocking(move || match &live2.mfa {
        Some(m) => m.prove(&key, &code, u64::try_from(now_unix()).unwrap_or(0)),
        None => Err(("not available".into(), "unavailable")),
    })
    .await
    .unwrap_or(Err(("the check could not run".into(), "unavailable")));
    match proved {
        Ok(factor) => settle(&shared, id, "approved", answerer(peer, headers, factor)).await,
        Err((_, "unavailable")) => message("The code cannot be checked now; the sign-in is still waiting."),
        Err((why, _)) => {
            // One try per push: a wrong or used code denies it (and counts towards lockout).
            let _ = settle(&shared, id, "denied", none).await;
            message(&format!("The approval was refused ({why}); the sign-in was denied."))
        }
    }
}

async fn answer_without_proof(
    live: &LiveAuth,
    id: String,
    sig: &str,
    status: &'static str,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Html<String> {
    let shared = live.load();
    let Some(mfa) = &shared.mfa else { return message("Not available.") };
    if !verify(&mfa.key(), &id, sig) {
        return message("This link is not valid.");
    }
    settle(&shared, id, status, answerer(peer, headers, "none")).await
}

async fn deny(
    State(live): State<Arc<LiveAuth>>,
    Path(id): Path<String>,
    Query(q): Query<Signed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Html<String> {
    answer_without_proof(&live, id, &q.sig, "denied", peer, &headers).await
}

async fn report(
    State(live): State<Arc<LiveAuth>>,
    Path(id): Path<String>,
    Query(q): Query<Signed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Html<String> {
    answer_without_proof(&live, id, &q.sig, "reported", peer, &headers).await
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
const UNAVAILABLE: &str = "The second-factor database is unavailable; try again later.";
const ALREADY_ENROLLED: &str =
    "This account already has a second factor. Ask an administrator to reset it before enrolling a new one.";

/// How long the secret an enrolment page showed waits for its first code.
const CONFIRM_SECONDS: i64 = 900;
/// Wrong first codes before the shown secret is dropped (the link is used up already).
const CONFIRM_ATTEMPTS: u32 = 5;

const SIX_DIGITS: portcullis_auth::mfa::Totp =
    portcullis_auth::mfa::Totp { algorithm: portcullis_auth::mfa::TotpAlgorithm::Sha1, digits: 6, step: 30 };

/// The first press: uses the link up and shows a new secret, which becomes the
/// account's factor only once a first code from it is confirmed.
async fn enrol(State(live): State<Arc<LiveAuth>>, Path(token): Path<String>) -> Html<String> {
    let shared = live.load();
    let Some(mfa) = &shared.mfa else { return message("Not available.") };
    let db = Arc::clone(&mfa.db);
    let hash = super::factor::enrol_token_hash(&token);
    let secret = super::factor::fresh_secret(SIX_DIGITS.algorithm);
    let shown = secret.clone();
    let done = blocking(move || {
        let db = lock(&db);
        let now = now_unix();
        let user = db.enrol_link(&hash, now).ok().flatten().ok_or(INVALID_LINK)?;
        // A link never replaces a factor: that needs the old one, or an administrator.
        if !matches!(db.factor(&user), Ok(None)) {
            return Err(ALREADY_ENROLLED);
        }
        if !db.use_enrol_link(&hash, now).unwrap_or(false) {
            return Err(INVALID_LINK);
        }
        db.add_pending_factor(&hash, &user, &shown, now + CONFIRM_SECONDS, now).map_err(|_| UNAVAILABLE)?;
        Ok(user)
    })
    .await
    .unwrap_or(Err(INVALID_LINK));
    let user = match done {
        Ok(user) => user,
        Err(why) => return message(why),
    };
    let uri = super::factor::otpauth_uri(&mfa.config.issuer, &user, &secret, &SIX_DIGITS);
    let qr = qrcode::QrCode::new(uri.as_bytes())
        .map(|q| q.render::<qrcode::render::svg::Color<'_>>().min_dimensions(240, 240).build())
        .unwrap_or_default();
    // Users choose their own ntfy topic only where the administrator fenced the URLs in.
    let target = match mfa.config.push.as_ref() {
        Some(p) if !p.target_prefixes.is_empty() => format!(
            "<p><label>Your ntfy topic URL for sign-in approvals (optional, starting with {}): \
             <input name=\"ntfy\" type=\"url\" autocomplete=\"off\"></label></p>",
            escape(&p.target_prefixes.join(" or "))
        ),
        _ => String::new(),
    };
    Html(format!(
        "{PAGE}<h1>Second factor for {user}</h1><p>Scan this with your authenticator app:</p>{qr}\
         <p>Or enter the key by hand: <code>{key}</code></p>\
         <form method=\"post\" action=\"/mfa/enroll/{token}/confirm\">\
         <p><label>The code your app shows now: <input name=\"code\" inputmode=\"numeric\" \
         autocomplete=\"one-time-code\" required></label></p>{target}<button>Confirm</button></form>\
         <p>The factor is active only once you confirm a code, within {minutes} minutes.</p></body></html>",
        user = escape(super::factor::label(&user)),
        key = portcullis_auth::mfa::base32(&secret),
        token = escape(&token),
        minutes = CONFIRM_SECONDS / 60,
    ))
}

/// The confirmation form of an enrolment page.
#[derive(Debug, Default, serde::Deserialize)]
struct Confirmation {
    #[serde(default)]
    code: String,
    #[serde(default)]
    ntfy: Option<String>,
}

/// Activates the shown secret once a first code from it checks out (that code is then
/// used up), with fresh recovery codes and, when given, the user's ntfy topic.
async fn confirm(
    State(live): State<Arc<LiveAuth>>,
    Path(token): Path<String>,
    form: Result<axum::Form<Confirmation>, axum::extract::rejection::FormRejection>,
) -> Html<String> {
    let shared = live.load();
    let Some(mfa) = &shared.mfa else { return message("Not available.") };
    let form = form.map(|axum::Form(f)| f).unwrap_or_default();
    let target = match form.ntfy.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
        None => None,
        Some(url) => {
            let t = super::target::PushTarget::Ntfy(url.to_string());
            match mfa.config.push.as_ref().filter(|p| !p.target_prefixes.is_empty()).map(|p| t.check(p)) {
                Some(Ok(())) => Some(t),
                Some(Err(e)) => return message(&format!("The ntfy topic is refused: {e}. Go back and correct it.")),
                None => return message("Push targets cannot be set here."),
            }
        }
    };
    let db = Arc::clone(&mfa.db);
    let hash = super::factor::enrol_token_hash(&token);
    let issuer = mfa.config.issuer.clone();
    let done = blocking(move || {
        let mut db = lock(&db);
        let now = now_unix();
        let (user, secret) =
            db.pending_factor_attempt(&hash, now, CONFIRM_ATTEMPTS).ok().flatten().ok_or(INVALID_LINK)?;
        let now_u = u64::try_from(now).unwrap_or(0);
        let Ok(step) = SIX_DIGITS.verify(&secret, &form.code, now_u, None) else {
            return Err("That code does not match. Check the app's clock and try the current code again.");
        };
        let e = super::factor::enroll_secret(&mut db, &user, secret, &SIX_DIGITS, &issuer, false)
            .map_err(|_| ALREADY_ENROLLED)?;
        let _ = db.drop_pending_factor(&hash);
        // The confirming code is used: it cannot also answer a challenge.
        let _ = db.use_step(&user, step);
        if let Some(t) = target {
            db.set_push_target(&user, &t.stored(), now).map_err(|_| UNAVAILABLE)?;
        }
        Ok((user, e))
    })
    .await
    .unwrap_or(Err(UNAVAILABLE));
    let (user, e) = match done {
        Ok(d) => d,
        Err(why) => return message(why),
    };
    let codes: String = e.recovery_codes.iter().map(|c| format!("<li><code>{c}</code></li>")).collect();
    Html(format!(
        "{PAGE}<h1>Second factor for {}</h1><p>Your authenticator is active.</p><p>Recovery codes (each \
         works once; keep them safe, they are not shown again):</p><ul>{codes}</ul></body></html>",
        escape(super::factor::label(&user)),
    ))
}
