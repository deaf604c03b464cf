//! The authentication listener: Access-Request → verify (BlastRADIUS rules) → duplicate
//! cache → credentials (local users) → network policy → Access-Accept/Reject, each
//! decision audited.
//!
//! Credential checks run on the blocking pool (Argon2 is slow by design), at most
//! `MAX_PENDING` at once; beyond that requests are dropped unanswered and counted.

use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use portcullis_accounting::canonical_user;
use portcullis_auth::mschap::{self, MschapError};
use portcullis_auth::policy::{self, Method, NetworkPolicy, PolicyDecision, PolicyRequest, reason};
use portcullis_auth::{CredentialCache, verify_chap};
use portcullis_radius::dedup::{DuplicateCache, Lookup};
use portcullis_radius::{
    Authenticator, Code, DataType, Dictionary, Error as RadiusError, Identifier, Packet, PacketBuilder,
    VerifiedRequest, attr, salt_encrypt, unhide_user_password,
};
use portcullis_storage::AuthEvent;
use rand::RngCore;
use tokio::net::UdpSocket;

use crate::applier::ApplierMessage;
use crate::clients::{Client, ClientTable, Reason};
use crate::directory::{Account, PasswordCheck, Route};
use crate::npslog;
use crate::{lock, now_ms};

/// Most credential checks queued or running at once.
const MAX_PENDING: usize = 1024;
/// MS-CHAP-Challenge and MS-CHAP2-Response (RFC 2548 §2.3).
const MS_CHAP_CHALLENGE: u8 = 11;
const MS_CHAP2_RESPONSE: u8 = 25;
const MS_CHAP2_SUCCESS: u8 = 26;
const MS_CHAP_ERROR: u8 = 2;
const MS_MPPE_ENCRYPTION_POLICY: u8 = 7;
const MS_MPPE_ENCRYPTION_TYPES: u8 = 8;
const MS_MPPE_SEND_KEY: u8 = 16;
const MS_MPPE_RECV_KEY: u8 = 17;
const MICROSOFT: u32 = attr::vendor::MICROSOFT;
const SESSION_TIMEOUT: u8 = 27;
const IDLE_TIMEOUT: u8 = 28;

/// State shared by every authentication socket.
pub struct AuthShared {
    pub clients: Arc<ClientTable>,
    pub cache: Mutex<DuplicateCache>,
    pub eap: Mutex<crate::eap::EapTable>,
    /// PEAP settings when a server certificate is configured.
    pub peap: Option<portcullis_auth::peap::PeapConfig>,
    /// The method offered first after EAP-Response/Identity.
    pub eap_default: crate::config::EapMethod,
    pub credentials: Mutex<CredentialCache>,
    pub policies: Vec<NetworkPolicy>,
    pub offset: time::UtcOffset,
    /// Connection-request policies and the user stores they name.
    pub router: crate::directory::Router,
    pub dictionary: Dictionary,
    pub audit_file: Mutex<File>,
    /// The second factor, when configured.
    pub mfa: Option<crate::mfa::Mfa>,
    /// NPS-format log files, when configured.
    pub nps_log: Option<Mutex<crate::npslog::NpsLog>>,
    pub applier: std::sync::mpsc::SyncSender<ApplierMessage>,
    pub pending: AtomicUsize,
}

impl std::fmt::Debug for AuthShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthShared").field("policies", &self.policies.len()).finish_non_exhaustive()
    }
}

/// Serves one authentication socket until the task is dropped.
pub async fn serve(socket: std::net::UdpSocket, shared: Arc<AuthShared>) -> std::io::Result<()> {
    let socket = Arc::new(UdpSocket::from_std(socket)?);
    let mut buf = vec![0u8; 4096 + 1];
    loop {
        let Ok((n, source)) = socket.recv_from(&mut buf).await else { continue };
        let datagram = buf[..n].to_vec();
        let shared = Arc::clone(&shared);
        let socket = Arc::clone(&socket);
        if let Some(work) = accept(&shared, &datagram, source, &socket).await {
            if shared.pending.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING {
                shared.pending.fetch_sub(1, Ordering::AcqRel);
                lock(&shared.cache).abandon(source, work.id, work.auth);
                if let Some(c) = shared.clients.lookup(source.ip()) {
                    c.counters.bump(Reason::QueueFull);
                }
                continue;
            }
            // Most requests are decided right here (cached or cheap credentials); only
            // Argon2, EAP, directory and second-factor work goes to the blocking pool.
            let result = match decide(&shared, &datagram, source, false) {
                Outcome::Reply(reply) => Some(Some(reply)),
                Outcome::Dropped | Outcome::Push(_) => Some(None),
                Outcome::NeedsSlowPath => None,
            };
            if let Some(result) = result {
                shared.pending.fetch_sub(1, Ordering::AcqRel);
                if let Some(reply) = result {
                    lock(&shared.cache).answered(Instant::now(), source, work.id, work.auth, reply.clone());
                    let _ = socket.send_to(&reply, source).await;
                } else {
                    lock(&shared.cache).abandon(source, work.id, work.auth);
                }
                continue;
            }
            tokio::spawn(async move {
                let (s2, d2) = (Arc::clone(&shared), datagram.clone());
                let result = tokio::task::spawn_blocking(move || decide(&s2, &d2, source, true)).await;
                match result {
                    Ok(Outcome::Reply(reply)) => {
                        shared.pending.fetch_sub(1, Ordering::AcqRel);
                        lock(&shared.cache).answered(Instant::now(), source, work.id, work.auth, reply.clone());
                        let _ = socket.send_to(&reply, source).await;
                    }
                    // The request stays in flight (retransmits are discarded) until the
                    // push is answered; `settle` sends the reply and releases the slot.
                    Ok(Outcome::Push(push)) => {
                        crate::push::settle(shared, push, datagram, source, socket, work.id, work.auth).await;
                    }
                    _ => {
                        shared.pending.fetch_sub(1, Ordering::AcqRel);
                        lock(&shared.cache).abandon(source, work.id, work.auth);
                    }
                }
            });
        }
    }
}

struct Work {
    id: Identifier,
    auth: Authenticator,
}

/// Cheap checks on the receiving task; `Some` when the request needs a decision.
async fn accept(shared: &AuthShared, datagram: &[u8], source: SocketAddr, socket: &UdpSocket) -> Option<Work> {
    let ip = source.ip().to_canonical();
    let Some(client) = shared.clients.lookup(ip) else {
        let n = shared.clients.count_unknown(ip);
        if n.is_power_of_two() {
            tracing::warn!(%source, count = n, "Access-Request from an address that is no configured client; discarded");
        }
        return None;
    };
    client.counters.bump(Reason::Received);
    let packet = match Packet::decode(datagram) {
        Ok(p) => p,
        Err(e) => {
            count(client, Reason::Malformed, source, &e);
            return None;
        }
    };
    if !matches!(packet.code(), Code::AccessRequest | Code::StatusServer) {
        count(client, Reason::UnsupportedCode, source, &RadiusError::UnknownCode(packet.code().to_u8()));
        return None;
    }
    let request = match VerifiedRequest::verify(packet, &client.secret, client.verify) {
        Ok(r) => r,
        Err(e) => {
            count(client, Reason::BadMessageAuthenticator, source, &e);
            return None;
        }
    };
    if packet.code() == Code::StatusServer {
        let mut b = PacketBuilder::new(Code::AccessAccept, packet.identifier());
        b.message_authenticator();
        if let Ok(reply) = b.encode_response(&packet.authenticator(), &client.secret) {
            let _ = socket.send_to(&reply, source).await;
            client.counters.bump(Reason::StatusServer);
        }
        return None;
    }
    let (id, auth) = (request.identifier(), request.authenticator());
    let lookup = lock(&shared.cache).lookup(Instant::now(), source, id, auth);
    match lookup {
        Lookup::New => Some(Work { id, auth }),
        Lookup::InFlight => {
            client.counters.bump(Reason::DuplicateInFlight);
            None
        }
        Lookup::Answered(reply) => {
            client.counters.bump(Reason::DuplicateResent);
            let _ = socket.send_to(&reply, source).await;
            None
        }
    }
}

fn count(client: &Client, reason: Reason, source: SocketAddr, error: &dyn std::fmt::Display) {
    let n = client.counters.bump(reason);
    if n.is_power_of_two() {
        tracing::warn!(client = %client.name, %source, reason = reason.name(), count = n, "Access-Request discarded: {error}");
    }
}

/// What the credential check concluded.
enum Verdict {
    Ok {
        mschap: Option<mschap::Mschapv2Success>,
        ident: u8,
        groups: Vec<String>,
        dialin: Option<bool>,
    },
    Fail {
        reason: u32,
        mschap_error: MschapError,
        message: String,
    },
    /// Only an Argon2 verification can tell; retry with `allow_slow`.
    NeedsSlowPath,
}

/// What [`decide`] produced.
pub(crate) enum Outcome {
    Reply(Vec<u8>),
    Dropped,
    NeedsSlowPath,
    /// Both answers are ready; which one goes out depends on the push.
    Push(Box<crate::push::PushWork>),
}

/// Decides one verified, new Access-Request. Without `allow_slow` it refuses to run an
/// Argon2 verification and says so, so the caller can move the work off the I/O task.
fn decide(shared: &AuthShared, datagram: &[u8], source: SocketAddr, allow_slow: bool) -> Outcome {
    let Some(client) = shared.clients.lookup(source.ip().to_canonical()) else { return Outcome::Dropped };
    let Ok(packet) = Packet::decode(datagram) else { return Outcome::Dropped };
    if packet.has_attribute(attr::EAP_MESSAGE) {
        // TLS handshakes and directory lookups do not belong on the I/O task.
        if !allow_slow {
            return Outcome::NeedsSlowPath;
        }
        return crate::eap::decide(shared, client, &packet, source);
    }
    if let (Some(m), Some(state)) = (&shared.mfa, packet.attribute(attr::STATE)) {
        if portcullis_auth::mfa::ChallengeState::is_ours(state) {
            if !allow_slow {
                return Outcome::NeedsSlowPath;
            }
            return crate::mfa::answer(shared, m, client, &packet, source);
        }
    }
    let user_raw =
        packet.attribute(attr::USER_NAME).map(|u| String::from_utf8_lossy(u).into_owned()).unwrap_or_default();
    let nas_identifier = packet.attribute(attr::NAS_IDENTIFIER).map(|v| String::from_utf8_lossy(v).into_owned());
    let route = shared.router.route(&client.name, &user_raw, nas_identifier.as_deref());
    let user = route.as_ref().map_or_else(|_| canonical_user(&user_raw), |r| r.lookup_name(&user_raw));
    let ms_challenge = packet.vendor_attribute(MICROSOFT, MS_CHAP_CHALLENGE);
    let ms_response = packet.vendor_attribute(MICROSOFT, MS_CHAP2_RESPONSE);
    let method = if packet.has_attribute(attr::USER_PASSWORD) {
        Some(Method::Pap)
    } else if packet.has_attribute(attr::CHAP_PASSWORD) {
        Some(Method::Chap)
    } else if ms_challenge.is_some() && ms_response.is_some() {
        Some(Method::Mschapv2)
    } else {
        None
    };
    let mut concatenated = concatenated_code(shared, client, &packet, method);
    let verdict = match (method, &route) {
        (_, Err(why)) => Verdict::Fail {
            reason: reason::NO_CONNECTION_REQUEST_POLICY,
            mschap_error: MschapError::AuthenticationFailure,
            message: why.clone(),
        },
        (None, _) => Verdict::Fail {
            reason: reason::METHOD_NOT_ALLOWED,
            mschap_error: MschapError::AuthenticationFailure,
            message: "no supported authentication method in the request".into(),
        },
        (Some(m), Ok(route)) => {
            let verdict = |without_code: Option<&[u8]>| {
                check_credentials(shared, client, &packet, route, &user, &user_raw, m, allow_slow, without_code)
            };
            match &concatenated {
                // `password<sep>code`: the password without the code first; a password
                // that merely ends like a code is tried whole.
                Some((password, _)) => match verdict(Some(password)) {
                    Verdict::Fail { .. } => {
                        concatenated = None;
                        verdict(None)
                    }
                    other => other,
                },
                None => verdict(None),
            }
        }
    };
    let (mut decision, policy_name, mut reason_code, mut message, mschap_error) = match verdict {
        Verdict::NeedsSlowPath => return Outcome::NeedsSlowPath,
        Verdict::Fail { reason, mschap_error, message } => (None, None, reason, message, mschap_error),
        Verdict::Ok { mschap, ident, groups, dialin } => match authorize(shared, &packet, &groups, dialin, method) {
            Ok(policy) => (
                Some((mschap, ident)),
                Some(policy),
                reason::SUCCESS,
                "access granted".to_string(),
                MschapError::AuthenticationFailure,
            ),
            Err((policy, r, e, why)) => (None, policy, r, why, e),
        },
    };
    let policy = policy_name.as_ref().and_then(|n| shared.policies.iter().find(|p| &p.name == n));
    let mut mfa_note = None;
    if let (Some(m), Some(_), Some(name)) = (&shared.mfa, &decision, &policy_name) {
        // The second-factor database is not for the I/O task.
        if !allow_slow {
            return Outcome::NeedsSlowPath;
        }
        let mode = policy.and_then(|p| p.mfa);
        let code = concatenated.as_ref().map(|(_, c)| c.as_str());
        let mut gate = m.gate(mode, &user, &client.name, name, method, source.ip().to_canonical(), &packet, code);
        if let crate::mfa::Gate::Remote = gate {
            let make_event = || {
                let d = Decided {
                    accepted: false,
                    reason_code: reason::SUCCESS,
                    policy: policy_name.clone(),
                    message: String::new(),
                };
                event(client, &packet, source, user.clone(), user_raw.clone(), method.map_or("none", Method::name), d)
            };
            gate = match crate::mfa::remote_first(shared, m, client, &packet, source, &user, name, make_event) {
                Ok(g) => g,
                Err(outcome) => return outcome,
            };
        }
        match gate {
            crate::mfa::Gate::Remote => return Outcome::Dropped,
            crate::mfa::Gate::Pass(note) => mfa_note = note,
            crate::mfa::Gate::Challenge(state) => {
                let reply = crate::mfa::challenge_reply(m, client, &packet, &state);
                let d = Decided {
                    accepted: false,
                    reason_code: reason::SUCCESS,
                    policy: policy_name.clone(),
                    message: "password accepted; second factor requested".into(),
                };
                let mut e = event(client, &packet, source, user, user_raw, method.map_or("none", Method::name), d);
                e.decision = "challenge".into();
                e.event_id = 0;
                e.mfa = Some("challenge".into());
                audit(shared, e, &packet, source);
                return reply.map_or(Outcome::Dropped, Outcome::Reply);
            }
            crate::mfa::Gate::Push => {
                let Some((mschap, ident)) = &decision else { return Outcome::Dropped };
                let accept = accept_reply(shared, client, &packet, policy, mschap.as_ref(), *ident);
                let reject = reject_reply(client, &packet, method, ms_challenge, ms_response, mschap_error);
                let (Some(accept), Some(reject)) = (accept, reject) else { return Outcome::Dropped };
                let d = Decided { accepted: true, reason_code: reason::SUCCESS, policy: policy_name.clone(), message };
                let event = event(client, &packet, source, user, user_raw, method.map_or("none", Method::name), d);
                if method == Some(Method::Pap) && m.config.push.as_ref().is_some_and(|p| p.number_matching) {
                    return crate::mfa::numbered_challenge(shared, m, client, &packet, source, event, name);
                }
                return Outcome::Push(Box::new(crate::push::PushWork {
                    accept,
                    reject,
                    event,
                    origin: origin(&packet, source),
                    existing: None,
                }));
            }
            crate::mfa::Gate::Reject(why, note) => {
                decision = None;
                reason_code = reason::AUTHENTICATION_FAILED;
                message = why;
                mfa_note = Some(note);
            }
        }
    }
    let reply = match &decision {
        Some((mschap, ident)) => {
            client.counters.bump(Reason::AccessAccept);
            accept_reply(shared, client, &packet, policy, mschap.as_ref(), *ident)
        }
        None => {
            client.counters.bump(Reason::AccessReject);
            reject_reply(client, &packet, method, ms_challenge, ms_response, mschap_error)
        }
    };
    let decision = Decided { accepted: decision.is_some(), reason_code, policy: policy_name, message };
    let mut e = event(client, &packet, source, user, user_raw, method.map_or("none", Method::name), decision);
    e.mfa = mfa_note.map(str::to_string);
    audit(shared, e, &packet, source);
    reply.map_or(Outcome::Dropped, Outcome::Reply)
}

/// `password<sep>code` in User-Password when `[mfa] concatenated_separator` is set:
/// the password without the code, and the code (6 or 8 digits).
fn concatenated_code(
    shared: &AuthShared,
    client: &Client,
    packet: &Packet<'_>,
    method: Option<Method>,
) -> Option<(Vec<u8>, String)> {
    let separator = shared.mfa.as_ref()?.config.concatenated_separator.as_deref()?;
    if method != Some(Method::Pap) {
        return None;
    }
    let hidden = packet.attribute(attr::USER_PASSWORD)?;
    let password = unhide_user_password(hidden, &client.secret, &packet.authenticator()).ok()?;
    let (p, c) = portcullis_auth::mfa::split_concatenated(&password, separator, 6)
        .or_else(|| portcullis_auth::mfa::split_concatenated(&password, separator, 8))?;
    Some((p.to_vec(), c.to_string()))
}

/// Where a login comes from (NAS and calling station): a retry from the same place
/// joins a pending push instead of sending another.
pub(crate) fn origin(packet: &Packet<'_>, source: SocketAddr) -> String {
    let text = |t: u8| packet.attribute(t).map(|v| String::from_utf8_lossy(v).into_owned());
    let nas = text(attr::NAS_IDENTIFIER)
        .or_else(|| {
            packet
                .attribute(attr::NAS_IP_ADDRESS)
                .and_then(|v| <[u8; 4]>::try_from(v).ok())
                .map(|o| IpAddr::from(o).to_string())
        })
        .unwrap_or_else(|| source.ip().to_string());
    format!("{nas}|{}", text(attr::CALLING_STATION_ID).unwrap_or_default())
}

/// A final decision, for the audit event.
pub(crate) struct Decided {
    pub(crate) accepted: bool,
    pub(crate) reason_code: u32,
    pub(crate) policy: Option<String>,
    pub(crate) message: String,
}

pub(crate) fn event(
    client: &Client,
    packet: &Packet<'_>,
    source: SocketAddr,
    user: String,
    user_raw: String,
    method: &str,
    d: Decided,
) -> AuthEvent {
    AuthEvent {
        time_ms: now_ms(),
        user,
        user_raw,
        nas: packet
            .attribute(attr::NAS_IDENTIFIER)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .or_else(|| {
                packet
                    .attribute(attr::NAS_IP_ADDRESS)
                    .and_then(|v| <[u8; 4]>::try_from(v).ok())
                    .map(|o| IpAddr::from(o).to_string())
            })
            .unwrap_or_else(|| source.ip().to_string()),
        client: client.name.clone(),
        calling_station_id: packet.attribute(attr::CALLING_STATION_ID).map(|v| String::from_utf8_lossy(v).into_owned()),
        method: method.to_string(),
        decision: if d.accepted { "accept" } else { "reject" }.into(),
        reason_code: d.reason_code,
        event_id: if d.accepted { 6272 } else { 6273 },
        policy: d.policy,
        message: d.message,
        connection_request_policy: None,
        mfa: None,
        location: None,
    }
}

/// The audit event of a granted request once the second factor settled it: kept as
/// an accept, or turned into a reject (6273, reason 16); the MFA outcome and message
/// are recorded either way.
pub(crate) fn second_factor_outcome(mut e: AuthEvent, accepted: bool, note: &str, message: String) -> AuthEvent {
    if !accepted {
        e.decision = "reject".into();
        e.event_id = 6273;
        e.reason_code = reason::AUTHENTICATION_FAILED;
    }
    e.mfa = Some(note.to_string());
    e.message = message;
    e
}

/// Evaluates the network policies for a request whose credentials verified. Returns
/// the granting policy, or the denying policy, reason, MS-CHAP error and explanation.
pub(crate) fn authorize(
    shared: &AuthShared,
    packet: &Packet<'_>,
    groups: &[String],
    dialin: Option<bool>,
    method: Option<Method>,
) -> Result<String, (Option<String>, u32, MschapError, String)> {
    let now = time::OffsetDateTime::now_utc().to_offset(shared.offset);
    let text = |t: u8| packet.attribute(t).map(|v| String::from_utf8_lossy(v).into_owned());
    let nas_identifier = text(attr::NAS_IDENTIFIER);
    let called = text(attr::CALLED_STATION_ID);
    let calling = text(attr::CALLING_STATION_ID);
    let req = PolicyRequest {
        groups,
        nas_identifier: nas_identifier.as_deref(),
        nas_port_type: packet.attribute(attr::NAS_PORT_TYPE).and_then(|v| v.try_into().ok()).map(u32::from_be_bytes),
        called_station_id: called.as_deref(),
        calling_station_id: calling.as_deref(),
        method,
        weekday: now.weekday().number_days_from_monday(),
        minute: u16::from(now.hour()) * 60 + u16::from(now.minute()),
        dialin,
    };
    match policy::evaluate(&shared.policies, &req) {
        (PolicyDecision::Grant { policy }, _) => Ok(policy),
        (PolicyDecision::Deny { policy, reason: r }, why) => {
            let e = match r {
                reason::LOGON_HOURS => MschapError::RestrictedLogonHours,
                reason::DIALIN_DENIED => MschapError::NoDialinPermission,
                _ => MschapError::AuthenticationFailure,
            };
            Err((policy, r, e, why.join("; ")))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_credentials(
    shared: &AuthShared,
    client: &Client,
    packet: &Packet<'_>,
    route: &Route,
    user: &str,
    user_raw: &str,
    method: Method,
    allow_slow: bool,
    password_without_code: Option<&[u8]>,
) -> Verdict {
    let fail =
        |reason: u32, e: MschapError, message: &str| Verdict::Fail { reason, mschap_error: e, message: message.into() };
    if route.is_remote() && !allow_slow {
        return Verdict::NeedsSlowPath;
    }
    let record = match route.store.lookup(user) {
        Ok(Some(u)) => u,
        Ok(None) => return fail(reason::NO_SUCH_USER, MschapError::AuthenticationFailure, "no such user"),
        Err(e) => {
            tracing::error!(error = %e, "user lookup failed");
            return fail(
                reason::AUTHENTICATION_FAILED,
                MschapError::AuthenticationFailure,
                &format!("user store unavailable: {e}"),
            );
        }
    };
    if let Some((code, error, why)) = account_refusal(&record) {
        return fail(code, error, why);
    }
    let ok = |mschap, ident| Verdict::Ok { mschap, ident, groups: record.groups.clone(), dialin: record.dialin };
    let generation = record.generation;
    match method {
        Method::Pap => {
            let Some(hidden) = packet.attribute(attr::USER_PASSWORD) else {
                return fail(reason::AUTHENTICATION_FAILED, MschapError::AuthenticationFailure, "no password");
            };
            let Ok(mut password) = unhide_user_password(hidden, &client.secret, &packet.authenticator()) else {
                return fail(
                    reason::AUTHENTICATION_FAILED,
                    MschapError::AuthenticationFailure,
                    "malformed User-Password",
                );
            };
            if let Some(p) = password_without_code {
                password = p.to_vec().into();
            }
            if route.is_remote() {
                // Directories decide every time (a changed password takes effect at once).
                return password_verdict(route.store.check_password(&record, &password), ok(None, 0));
            }
            if lock(&shared.credentials).check(Instant::now(), user, &password, generation) {
                return ok(None, 0);
            }
            if !allow_slow && record.password_hash.is_some() {
                return Verdict::NeedsSlowPath;
            }
            let verdict = password_verdict(route.store.check_password(&record, &password), ok(None, 0));
            if matches!(verdict, Verdict::Ok { .. }) {
                lock(&shared.credentials).insert(Instant::now(), user, &password, generation);
            }
            verdict
        }
        Method::Chap => {
            let Some(secret) = record.reversible.as_deref() else {
                return fail(
                    reason::AUTHENTICATION_FAILED,
                    MschapError::AuthenticationFailure,
                    "CHAP needs a reversible password and this user has none",
                );
            };
            let chap = packet.attribute(attr::CHAP_PASSWORD).unwrap_or_default();
            let challenge = packet
                .attribute(attr::CHAP_CHALLENGE)
                .map_or_else(|| packet.authenticator().0.to_vec(), <[u8]>::to_vec);
            if verify_chap(chap, secret.as_bytes(), &challenge) {
                ok(None, 0)
            } else {
                fail(reason::AUTHENTICATION_FAILED, MschapError::AuthenticationFailure, "wrong password")
            }
        }
        Method::Mschapv2 => {
            let challenge: Option<[u8; 16]> =
                packet.vendor_attribute(MICROSOFT, MS_CHAP_CHALLENGE).and_then(|c| c.try_into().ok());
            let response = packet.vendor_attribute(MICROSOFT, MS_CHAP2_RESPONSE).unwrap_or_default();
            let ident = response.first().copied().unwrap_or(0);
            let ntlm = route.store.ntlm();
            match (record.nt_hash, ntlm) {
                (Some(hash), _) => match challenge.and_then(|c| mschap::verify_response(&hash, &c, response, user_raw))
                {
                    Some(success) => ok(Some(success), ident),
                    None => fail(reason::AUTHENTICATION_FAILED, MschapError::AuthenticationFailure, "wrong password"),
                },
                (None, Some(ntlm)) => {
                    let (Some(c), Some(r)) = (challenge, <&[u8; 50]>::try_from(response).ok()) else {
                        return fail(
                            reason::AUTHENTICATION_FAILED,
                            MschapError::AuthenticationFailure,
                            "malformed MS-CHAP2-Response",
                        );
                    };
                    let peer: [u8; 16] = r[2..18].try_into().unwrap_or_default();
                    let nt: [u8; 24] = r[26..50].try_into().unwrap_or_default();
                    let hash = mschap::challenge_hash(&peer, &c, user_raw);
                    match ntlm.verify(user_raw, &hash, &nt) {
                        Ok(hash_hash) => ok(Some(mschap::success_from_hash_hash(&hash_hash, &nt, &hash)), ident),
                        Err((code, error, why)) => fail(code, error, &why),
                    }
                }
                (None, None) => fail(
                    reason::AUTHENTICATION_FAILED,
                    MschapError::AuthenticationFailure,
                    "no NT hash for this user (the store has none)",
                ),
            }
        }
        Method::EapMschapv2 | Method::Peap => {
            fail(reason::METHOD_NOT_ALLOWED, MschapError::AuthenticationFailure, "EAP arrives in EAP-Message")
        }
    }
}

/// The verdict for a PAP password check; `ok` is the verdict on success.
fn password_verdict(check: Result<PasswordCheck, String>, ok: Verdict) -> Verdict {
    let fail =
        |reason: u32, e: MschapError, message: &str| Verdict::Fail { reason, mschap_error: e, message: message.into() };
    match check {
        Ok(PasswordCheck::Ok) => ok,
        Ok(PasswordCheck::Wrong) => {
            fail(reason::AUTHENTICATION_FAILED, MschapError::AuthenticationFailure, "wrong password")
        }
        Ok(PasswordCheck::Disabled) => fail(reason::ACCOUNT_DISABLED, MschapError::AccountDisabled, "account disabled"),
        Ok(PasswordCheck::Locked) => fail(reason::ACCOUNT_LOCKED, MschapError::AccountDisabled, "account locked out"),
        Ok(PasswordCheck::Expired) => {
            fail(reason::ACCOUNT_EXPIRED, MschapError::AccountDisabled, "account or password expired")
        }
        Err(e) => {
            tracing::error!(error = %e, "password check failed");
            fail(
                reason::AUTHENTICATION_FAILED,
                MschapError::AuthenticationFailure,
                &format!("user store unavailable: {e}"),
            )
        }
    }
}

/// Why an account may not log in at all, whatever its password: NPS reason code,
/// MS-CHAP error and explanation.
pub(crate) fn account_refusal(a: &Account) -> Option<(u32, MschapError, &'static str)> {
    if a.disabled {
        Some((reason::ACCOUNT_DISABLED, MschapError::AccountDisabled, "account disabled"))
    } else if a.locked {
        Some((reason::ACCOUNT_LOCKED, MschapError::AccountDisabled, "account locked out"))
    } else if a.expired {
        Some((reason::ACCOUNT_EXPIRED, MschapError::AccountDisabled, "account expired"))
    } else {
        None
    }
}

pub(crate) fn base_reply(code: Code, client: &Client, request: &Packet<'_>) -> PacketBuilder {
    let mut b = PacketBuilder::new(code, request.identifier());
    if client.send_message_authenticator {
        b.message_authenticator();
    }
    b
}

pub(crate) fn finish(mut b: PacketBuilder, client: &Client, request: &Packet<'_>) -> Option<Vec<u8>> {
    for ps in request.attributes_of(attr::PROXY_STATE) {
        b.attribute(attr::PROXY_STATE, ps).ok()?;
    }
    b.encode_response(&request.authenticator(), &client.secret).ok()
}

fn accept_reply(
    shared: &AuthShared,
    client: &Client,
    request: &Packet<'_>,
    policy: Option<&NetworkPolicy>,
    mschap: Option<&mschap::Mschapv2Success>,
    ident: u8,
) -> Option<Vec<u8>> {
    let mut b = base_reply(Code::AccessAccept, client, request);
    add_policy_replies(shared, &mut b, policy)?;
    if let Some(ok) = mschap {
        let mut success = vec![ident];
        success.extend_from_slice(ok.authenticator_response.as_bytes());
        b.vendor_attribute(MICROSOFT, MS_CHAP2_SUCCESS, &success).ok()?;
        add_mppe_keys(&mut b, client, request, &ok.send_key, &ok.recv_key)?;
    }
    finish(b, client, request)
}

/// Session-Timeout, Idle-Timeout and the configured reply attributes of the policy.
pub(crate) fn add_policy_replies(
    shared: &AuthShared,
    b: &mut PacketBuilder,
    policy: Option<&NetworkPolicy>,
) -> Option<()> {
    let Some(p) = policy else { return Some(()) };
    if let Some(t) = p.session_timeout {
        b.attribute(SESSION_TIMEOUT, &t.to_be_bytes()).ok()?;
    }
    if let Some(t) = p.idle_timeout {
        b.attribute(IDLE_TIMEOUT, &t.to_be_bytes()).ok()?;
    }
    for (name, value) in &p.reply {
        match encode_reply_attribute(&shared.dictionary, name, value) {
            Ok((0, typ, v)) => {
                b.attribute(typ, &v).ok()?;
            }
            Ok((vendor, typ, v)) => {
                b.vendor_attribute(vendor, typ, &v).ok()?;
            }
            Err(e) => tracing::warn!(policy = %p.name, attribute = %name, "reply attribute skipped: {e}"),
        }
    }
    Some(())
}

/// MS-MPPE-Send/Recv-Key, salt-encrypted (RFC 2548), with encryption policy and types.
pub(crate) fn add_mppe_keys(
    b: &mut PacketBuilder,
    client: &Client,
    request: &Packet<'_>,
    send_key: &[u8],
    recv_key: &[u8],
) -> Option<()> {
    let request_auth = request.authenticator();
    for (typ, key) in [(MS_MPPE_SEND_KEY, send_key), (MS_MPPE_RECV_KEY, recv_key)] {
        let mut salt = [0u8; 2];
        rand::thread_rng().fill_bytes(&mut salt);
        let enc = salt_encrypt(key, &client.secret, &request_auth, salt).ok()?;
        b.vendor_attribute(MICROSOFT, typ, &enc).ok()?;
    }
    b.vendor_attribute(MICROSOFT, MS_MPPE_ENCRYPTION_POLICY, &1u32.to_be_bytes()).ok()?;
    b.vendor_attribute(MICROSOFT, MS_MPPE_ENCRYPTION_TYPES, &6u32.to_be_bytes()).ok()?;
    Some(())
}

fn reject_reply(
    client: &Client,
    request: &Packet<'_>,
    method: Option<Method>,
    challenge: Option<&[u8]>,
    response: Option<&[u8]>,
    error: MschapError,
) -> Option<Vec<u8>> {
    let mut b = base_reply(Code::AccessReject, client, request);
    if method == Some(Method::Mschapv2) {
        let ident = response.and_then(|r| r.first().copied()).unwrap_or(0);
        let c: [u8; 16] = challenge.and_then(|c| c.try_into().ok()).unwrap_or([0; 16]);
        let text =
            if error == MschapError::AuthenticationFailure { "Authentication rejected" } else { "Access denied" };
        b.vendor_attribute(MICROSOFT, MS_CHAP_ERROR, &mschap::error_value(ident, error, false, &c, text)).ok()?;
    }
    finish(b, client, request)
}

/// Encodes a reply attribute given by dictionary name and text value.
pub fn encode_reply_attribute(dict: &Dictionary, name: &str, value: &str) -> Result<(u32, u8, Vec<u8>), String> {
    let def = dict.by_name(name).ok_or_else(|| format!("unknown attribute {name:?}"))?;
    let typ = u8::try_from(def.key.number).map_err(|_| format!("{name} has a number above 255"))?;
    let bytes = match def.data_type {
        DataType::Text => value.as_bytes().to_vec(),
        DataType::Octets => match value.strip_prefix("0x") {
            Some(hex) => (0..hex.len())
                .step_by(2)
                .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| format!("{name}: bad hex {value:?}"))?,
            None => value.as_bytes().to_vec(),
        },
        DataType::Integer | DataType::Date => {
            let n = value
                .parse::<u32>()
                .ok()
                .or_else(|| dict.value_number(def.key, value).and_then(|v| u32::try_from(v).ok()))
                .ok_or_else(|| format!("{name}: {value:?} is neither a number nor a known value"))?;
            n.to_be_bytes().to_vec()
        }
        DataType::IpAddr => value
            .parse::<std::net::Ipv4Addr>()
            .map(|a| a.octets().to_vec())
            .map_err(|_| format!("{name}: {value:?} is not an IPv4 address"))?,
        DataType::Ipv6Addr => value
            .parse::<std::net::Ipv6Addr>()
            .map(|a| a.octets().to_vec())
            .map_err(|_| format!("{name}: {value:?} is not an IPv6 address"))?,
        other => return Err(format!("{name}: type {} cannot be configured as a reply yet", other.keyword())),
    };
    Ok((def.key.vendor, typ, bytes))
}

/// Checks every policy's reply attributes against the dictionary.
pub fn validate_replies(dict: &Dictionary, policies: &[NetworkPolicy]) -> Result<(), String> {
    for p in policies {
        for (name, value) in &p.reply {
            encode_reply_attribute(dict, name, value).map_err(|e| format!("network_policy {:?}: {e}", p.name))?;
        }
    }
    Ok(())
}

pub(crate) fn audit(shared: &AuthShared, mut event: AuthEvent, packet: &Packet<'_>, source: SocketAddr) {
    let nas_identifier = packet.attribute(attr::NAS_IDENTIFIER).map(|v| String::from_utf8_lossy(v).into_owned());
    event.connection_request_policy =
        shared.router.route(&event.client, &event.user_raw, nas_identifier.as_deref()).ok().and_then(|r| r.policy);
    if let Ok(line) = serde_json::to_string(&event) {
        let mut f = lock(&shared.audit_file);
        if let Err(e) = writeln!(f, "{line}") {
            tracing::warn!(error = %e, "writing the audit log failed");
        }
    }
    if let Some(log) = &shared.nps_log {
        let records = nps_records(shared, &event, packet, source, lock(log).computer());
        if let Err(e) = lock(log).write(&records) {
            tracing::warn!(error = %e, "writing the NPS log failed");
        }
    }
    tracing::info!(
        user = %event.user, decision = %event.decision, reason_code = event.reason_code, method = %event.method,
        policy = ?event.policy, "{}", event.message
    );
    let _ = shared.applier.try_send(ApplierMessage::AuthEvent(Box::new(event)));
}

/// The Access-Request record and the response record NPS would log for a decision.
fn nps_records(
    shared: &AuthShared,
    event: &AuthEvent,
    packet: &Packet<'_>,
    source: SocketAddr,
    computer: &str,
) -> [npslog::NpsRecord; 2] {
    let mut request = npslog::NpsRecord {
        time_ms: event.time_ms,
        offset_seconds: shared.offset.whole_seconds(),
        computer: computer.to_string(),
        packet_type: 1,
        account: Some(event.user.clone()),
        client_ip: source.ip().to_canonical().to_string(),
        client_name: event.client.clone(),
        authentication_type: npslog::authentication_type(&event.method),
        proxy_policy: event.connection_request_policy.clone(),
        eap_friendly_name: match event.method.as_str() {
            "peap" => Some("Microsoft: Protected EAP (PEAP)".into()),
            "eap-mschapv2" => Some("Microsoft: Secured password (EAP-MSCHAP v2)".into()),
            _ => None,
        },
        ..Default::default()
    };
    npslog::from_request(packet, &mut request);
    let mut response = request.clone();
    response.packet_type = if event.decision == "accept" { 2 } else { 3 };
    response.reason_code = event.reason_code;
    response.policy = event.policy.clone();
    if event.decision == "accept" {
        let policy = event.policy.as_ref().and_then(|n| shared.policies.iter().find(|p| &p.name == n));
        if let Some(p) = policy {
            response.session_timeout = p.session_timeout;
            response.idle_timeout = p.idle_timeout;
            response.class = p.reply.get("Class").cloned();
        }
    }
    [request, response]
}

/// A new random key for the credential cache.
pub fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut k);
    k
}
