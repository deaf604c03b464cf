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

use hmac::{Hmac, Mac};
use portcullis_radius::{Authenticator, Identifier, Packet, attr};
use portcullis_storage::{AuthEvent, PushContext};
use rand::RngCore;
use sha2::Sha256;
use tokio::net::UdpSocket;

use super::audit::{audit, second_factor_outcome};
use super::context::AuthShared;
use super::factor::Mfa;
use super::target::PushTarget;
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

pub(crate) fn verify(key: &[u8; 32], id: &str, sig: &str) -> bool {
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

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
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
        let answered = |mut event: AuthEvent| {
            let db = Arc::clone(&mfa.db);
            let pid = push_id.clone();
            async move {
                event.approval = blocking(move || lock(&db).push_details(&pid)).await.and_then(|d| d.ok()?.1);
                event
            }
        };
        match status.as_str() {
            "approved" => {
                let event = answered(event).await;
                let factor = event.approval.as_ref().map_or("unknown", |a| a.factor.as_str()).to_string();
                let why = format!("access granted after push approval proven by {factor}");
                return (accept, outcome(event, true, "push_approved", why));
            }
            "denied" => {
                let event = answered(event).await;
                return (reject, outcome(event, false, "push_denied", "the user denied the push".into()));
            }
            "reported" => {
                let event = answered(event).await;
                let why = "the user reported the push as not theirs (\"this wasn't me\")".to_string();
                return (reject, outcome(event, false, "push_reported", why));
            }
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
    let looked = blocking(move || {
        let db = lock(&db);
        Ok::<_, portcullis_storage::StorageError>((db.unapproved_pushes(&u, since)?, db.push_target(&u)?))
    })
    .await;
    let (unapproved, target) = match looked {
        Some(Ok(found)) => found,
        Some(Err(e)) => return Err(Begin::Local(format!("MFA database unavailable (push fatigue): {e}"))),
        None => return Err(Begin::Local("MFA database unavailable (push fatigue)".into())),
    };
    // The target is the user's; one that cannot be used is refused, never replaced.
    let target = target
        .as_deref()
        .and_then(PushTarget::parse)
        .ok_or_else(|| Begin::Local("the account has no push target this server can use".to_string()))?;
    target.check(push).map_err(|e| Begin::Local(format!("the account's {} push target: {e}", target.kind())))?;
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
    let context = context_of(mfa, event, now);
    let db = Arc::clone(&mfa.db);
    let pid = push_id.clone();
    if !matches!(blocking(move || lock(&db).set_push_context(&pid, &context)).await, Some(Ok(()))) {
        let _ = settle_as("failed").await;
        return Err(Begin::Local("the MFA database is unavailable".into()));
    }
    let url =
        format!("{}/mfa/push/{push_id}?sig={}", push.public_url.trim_end_matches('/'), sign(&mfa.key(), &push_id));
    if let Err((unreachable, e)) = notify(mfa, push, &target, event, &url).await {
        tracing::error!(error = %e, target = target.kind(), "push notification could not be sent");
        let _ = settle_as("failed").await;
        let why = format!("push notification failed: {e}");
        return Err(if unreachable { Begin::Unavailable(why) } else { Begin::Local(why) });
    }
    Ok(push_id)
}

/// What the approval page shows about the login: when, from where (the
/// Calling-Station-Id and, when it is an address, its city and country), NAS, method.
fn context_of(mfa: &Mfa, event: &AuthEvent, now: i64) -> PushContext {
    let located =
        event.calling_station_id.as_deref().and_then(crate::detection::station_ip).map(|ip| lock(&mfa.geo).lookup(ip));
    PushContext {
        time: now,
        nas: event.nas.clone(),
        method: event.method.clone(),
        source: event.calling_station_id.clone(),
        city: located.as_ref().and_then(|l| l.city.clone()),
        country: located.and_then(|l| l.country_name.or(l.country)),
    }
}

/// Sends the notification of a push to its target. The error says whether the notifier
/// is to blame (unreachable, refused), and never carries the URL: its path may be the
/// credential (ntfy topics).
async fn notify(
    mfa: &Mfa,
    push: &crate::config::PushConfig,
    target: &PushTarget,
    event: &AuthEvent,
    url: &str,
) -> Result<(), (bool, String)> {
    let destination = match target {
        PushTarget::Shared => push.webhook_url.as_str(),
        PushTarget::Ntfy(u) | PushTarget::Webhook(u) => u.as_str(),
    };
    if let Err(e) = mfa.http.post(destination).build() {
        return Err((false, format!("the webhook request cannot be built: {}", e.without_url())));
    }
    let time =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let station = event.calling_station_id.as_deref().unwrap_or("unknown");
    let timeout = Duration::from_secs(push.webhook_timeout_seconds.max(1));
    let request = mfa.http.post(destination).timeout(timeout);
    let request = match target {
        PushTarget::Ntfy(_) => {
            // ntfy's publish: the body is the message; headers are ASCII (the link is).
            let message = format!(
                "{} is signing in to the VPN ({}, from {station}, {}) at {time}. Open to approve or deny.",
                event.user, event.nas, event.method
            );
            request
                .header("title", "VPN sign-in")
                .header("tags", "lock")
                .header("priority", "high")
                .header("click", url)
                .header("content-type", "text/plain; charset=utf-8")
                .body(message)
        }
        PushTarget::Shared | PushTarget::Webhook(_) => {
            let body = render(
                &push.webhook_template,
                &[
                    ("user", &event.user),
                    ("nas", &event.nas),
                    ("calling_station_id", station),
                    ("method", &event.method),
                    ("time", &time),
                    ("url", url),
                ],
            );
            let mut request = request.header("content-type", "application/json").body(body);
            // The shared channel's headers are its credentials: never sent elsewhere.
            if *target == PushTarget::Shared {
                for (k, v) in &push.webhook_headers {
                    request = request.header(k, v);
                }
            }
            request
        }
    };
    match request.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err((true, format!("the webhook answered {}", r.status()))),
        Err(e) => Err((notifier_unreachable(&e), e.without_url().to_string())),
    }
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
