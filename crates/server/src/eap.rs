//! EAP over RADIUS (RFC 3579): conversations kept between round trips under the State
//! we issue, method negotiation (Identity, Nak), and the two methods — EAP-MSCHAPv2
//! directly or inside a PEAPv0 tunnel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portcullis_accounting::canonical_user;
use portcullis_auth::eap::{self, Credentials, Eap, Step};
use portcullis_auth::mschap::MschapError;
use portcullis_auth::peap::{self, InnerAuth, Tunnel};
use portcullis_auth::policy::{Method, reason};
use portcullis_radius::{Code, Packet, PacketBuilder, attr};
use rand::RngCore;

use crate::auth::{
    AuthShared, Decided, Outcome, account_refusal, add_mppe_keys, add_policy_replies, audit, authorize, event, finish,
    origin,
};
use crate::clients::{Client, Reason};
use crate::config::EapMethod;
use crate::directory::Route;
use crate::lock;
use crate::mfa::Gate;
use crate::push::PushWork;

/// How long a conversation may wait for the next round trip.
const EAP_TIMEOUT: Duration = Duration::from_secs(60);
/// Most conversations held at once.
const EAP_MAX: usize = 65_536;
/// Most PEAP conversations (each holds a TLS session) held at once.
const TUNNELS_MAX: usize = 8_192;

/// A conversation between round trips.
#[derive(Debug)]
pub enum Session {
    Mschapv2 { conversation: eap::Conversation, nak_allowed: bool },
    Peap { tunnel: Box<Tunnel>, nak_allowed: bool },
}

impl Session {
    fn method(&self) -> Method {
        match self {
            Self::Mschapv2 { .. } => Method::EapMschapv2,
            Self::Peap { .. } => Method::Peap,
        }
    }
}

/// EAP conversations between round trips, keyed by the State we issued.
#[derive(Debug, Default)]
pub struct EapTable {
    sessions: HashMap<[u8; 16], (Session, Instant)>,
    tunnels: usize,
}

impl EapTable {
    fn take(&mut self, state: &[u8]) -> Option<Session> {
        let key: [u8; 16] = state.try_into().ok()?;
        let (s, expires) = self.sessions.remove(&key)?;
        if matches!(s, Session::Peap { .. }) {
            self.tunnels -= 1;
        }
        (Instant::now() < expires).then_some(s)
    }

    fn put(&mut self, state: [u8; 16], s: Session) -> bool {
        let now = Instant::now();
        let tunnel = matches!(s, Session::Peap { .. });
        if self.sessions.len() >= EAP_MAX || (tunnel && self.tunnels >= TUNNELS_MAX) {
            self.sessions.retain(|_, (_, e)| *e > now);
            self.tunnels = self.sessions.values().filter(|(s, _)| matches!(s, Session::Peap { .. })).count();
            if self.sessions.len() >= EAP_MAX || (tunnel && self.tunnels >= TUNNELS_MAX) {
                return false;
            }
        }
        self.tunnels += usize::from(tunnel);
        self.sessions.insert(state, (s, now + EAP_TIMEOUT));
        true
    }

    /// Conversations held now (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no conversation is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

fn random16() -> [u8; 16] {
    let mut v = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// The account's credentials, groups and dial-in permission for an EAP identity.
fn user_credentials(route: &Route, identity: &str) -> (Credentials, Vec<String>, Option<bool>) {
    let refuse = Credentials::refused;
    match route.store.lookup(&route.lookup_name(identity)) {
        Err(e) => {
            tracing::error!(error = %e, "user lookup failed");
            (refuse(reason::AUTHENTICATION_FAILED, MschapError::AuthenticationFailure), Vec::new(), None)
        }
        Ok(None) => (refuse(reason::NO_SUCH_USER, MschapError::AuthenticationFailure), Vec::new(), None),
        Ok(Some(a)) => match account_refusal(&a) {
            Some((code, error, _)) => (refuse(code, error), a.groups, a.dialin),
            None => {
                let mut credentials = Credentials { nt_hash: a.nt_hash, ..Credentials::default() };
                if a.nt_hash.is_none() {
                    if let Some(ntlm) = route.store.ntlm() {
                        credentials.external =
                            Some(Box::new(move |user, challenge, nt| ntlm.verify(user, challenge, nt)));
                    }
                }
                (credentials, a.groups, a.dialin)
            }
        },
    }
}

/// The server's answers to the inner method's questions.
struct Inner<'a> {
    shared: &'a AuthShared,
    packet: &'a Packet<'a>,
    method: Method,
    route: &'a Route,
}

impl InnerAuth for Inner<'_> {
    fn challenge(&self) -> ([u8; 16], u8) {
        (random16(), rand::random())
    }

    fn credentials(&self, identity: &str) -> Credentials {
        user_credentials(self.route, identity).0
    }

    fn authorize(&self, identity: &str) -> Result<Option<String>, (u32, MschapError, String)> {
        let (_, groups, dialin) = user_credentials(self.route, identity);
        authorize(self.shared, self.packet, &groups, dialin, Some(self.method))
            .map(Some)
            .map_err(|(_, r, e, why)| (r, e, why))
    }
}

/// One round of an EAP conversation.
pub(crate) fn decide(shared: &AuthShared, client: &Client, packet: &Packet<'_>, source: SocketAddr) -> Outcome {
    round(shared, client, packet, source).unwrap_or(Outcome::Dropped)
}

fn round(shared: &AuthShared, client: &Client, packet: &Packet<'_>, source: SocketAddr) -> Option<Outcome> {
    let eap_bytes = packet.eap_message()?;
    let user_raw =
        packet.attribute(attr::USER_NAME).map(|u| String::from_utf8_lossy(u).into_owned()).unwrap_or_default();
    let reject = |eap_packet: Vec<u8>, user: String, method: Method, d: Decided| {
        client.counters.bump(Reason::AccessReject);
        audit(shared, event(client, packet, source, user, user_raw.clone(), method.name(), d), packet, source);
        let mut b = PacketBuilder::new(Code::AccessReject, packet.identifier());
        b.eap_message(&eap_packet).ok()?;
        finish(b, client, packet).map(Outcome::Reply)
    };
    let refuse = |reason_code: u32, message: &str| Decided {
        accepted: false,
        reason_code,
        policy: None,
        message: message.to_string(),
    };
    let Ok(message) = Eap::decode(&eap_bytes) else {
        let d = refuse(reason::AUTHENTICATION_FAILED, "malformed EAP-Message");
        let method = Method::EapMschapv2;
        return reject(eap::encode(eap::FAILURE, 0, None, &[]), canonical_user(&user_raw), method, d);
    };
    let challenge = |session: Session, request: Vec<u8>, state: [u8; 16]| {
        if !lock(&shared.eap).put(state, session) {
            tracing::warn!("too many EAP conversations in progress; request dropped");
            return None;
        }
        let mut b = PacketBuilder::new(Code::AccessChallenge, packet.identifier());
        b.eap_message(&request).ok()?;
        b.attribute(attr::STATE, &state).ok()?;
        finish(b, client, packet).map(Outcome::Reply)
    };
    let failure = eap::encode(eap::FAILURE, message.id, None, &[]);
    let existing = packet.attribute(attr::STATE).and_then(|s| lock(&shared.eap).take(s));
    let Some(session) = existing else {
        if message.code != eap::RESPONSE || message.typ != Some(eap::IDENTITY) {
            let d = refuse(reason::AUTHENTICATION_FAILED, "EAP conversation must start with an Identity response");
            return reject(failure, canonical_user(&user_raw), Method::EapMschapv2, d);
        }
        let identity = String::from_utf8_lossy(message.data).trim_end_matches('\0').to_string();
        return match begin(shared, shared.eap_default, &identity, message.id) {
            Some((session, request)) => challenge(session, request, random16()),
            None => {
                let d = refuse(reason::AUTHENTICATION_FAILED, "cannot start the EAP method");
                reject(failure, canonical_user(&identity), Method::Peap, d)
            }
        };
    };
    let state: [u8; 16] = packet.attribute(attr::STATE).and_then(|s| s.try_into().ok()).unwrap_or_else(random16);
    // A Nak is valid only in answer to the first request of a method (RFC 3748 §5.3.1).
    let nak_allowed =
        matches!(session, Session::Mschapv2 { nak_allowed: true, .. } | Session::Peap { nak_allowed: true, .. });
    if message.code == eap::RESPONSE && message.typ == Some(eap::NAK) && nak_allowed {
        let identity = match &session {
            Session::Mschapv2 { conversation, .. } => conversation.identity.clone(),
            Session::Peap { tunnel, .. } => tunnel.outer_identity().to_string(),
        };
        let wanted = message.data.iter().find_map(|&t| match t {
            eap::MSCHAPV2 => Some(EapMethod::Mschapv2),
            peap::PEAP if shared.peap.is_some() => Some(EapMethod::Peap),
            _ => None,
        });
        let current = session.method();
        return match wanted.filter(|w| method_of(*w) != current) {
            Some(w) => match begin(shared, w, &identity, message.id) {
                Some((s, request)) => challenge(s, request, state),
                None => reject(failure, canonical_user(&identity), current, refuse(16, "cannot start the EAP method")),
            },
            None => {
                let d = refuse(reason::METHOD_NOT_ALLOWED, "the peer declined every EAP method this server offers");
                reject(failure, canonical_user(&identity), current, d)
            }
        };
    }
    let method = session.method();
    let nas_identifier = packet.attribute(attr::NAS_IDENTIFIER).map(|v| String::from_utf8_lossy(v).into_owned());
    let route = match shared.router.route(&client.name, &user_raw, nas_identifier.as_deref()) {
        Ok(r) => r,
        Err(why) => {
            let d = refuse(reason::NO_CONNECTION_REQUEST_POLICY, &why);
            return reject(failure, canonical_user(&user_raw), method, d);
        }
    };
    let inner = Inner { shared, packet, method, route: &route };
    let (step, session, identity) = match session {
        Session::Mschapv2 { mut conversation, .. } => {
            let identity = conversation.identity.clone();
            let step =
                eap::step(&mut conversation, &message, |id| inner.credentials(id), || inner.authorize(&identity));
            (step, Session::Mschapv2 { conversation, nak_allowed: false }, identity)
        }
        Session::Peap { mut tunnel, .. } => {
            let step = tunnel.step(&message, &inner);
            let identity = tunnel.inner_identity().unwrap_or(tunnel.outer_identity()).to_string();
            (step, Session::Peap { tunnel, nak_allowed: false }, identity)
        }
    };
    let user = canonical_user(&identity);
    match step {
        Step::Challenge(request) => challenge(session, request, state),
        Step::Accept { eap: success, send_key, recv_key, policy } => {
            let policy_def = policy.as_ref().and_then(|n| shared.policies.iter().find(|p| &p.name == n));
            let mut b = PacketBuilder::new(Code::AccessAccept, packet.identifier());
            b.eap_message(&success).ok()?;
            add_policy_replies(shared, &mut b, policy_def)?;
            add_mppe_keys(&mut b, client, packet, &send_key, &recv_key)?;
            b.attribute(attr::USER_NAME, identity.as_bytes()).ok()?;
            let mut message = "access granted".to_string();
            if let Session::Peap { tunnel, .. } = &session {
                message = format!("access granted ({})", tunnel.tls_version().unwrap_or("TLS"));
            }
            let eap_failure = eap::encode(eap::FAILURE, success.get(1).copied().unwrap_or(0), None, &[]);
            let d = Decided { accepted: true, reason_code: 0, policy: policy.clone(), message };
            let mut ev = event(client, packet, source, user.clone(), user_raw.clone(), method.name(), d);
            if let (Some(m), Some(name)) = (&shared.mfa, &policy) {
                let mode = policy_def.and_then(|p| p.mfa);
                match m.gate(mode, &user, &client.name, name, Some(method), source.ip().to_canonical(), packet, None) {
                    Gate::Pass(note) => ev.mfa = note.map(str::to_string),
                    Gate::Push => {
                        let accept = finish(b, client, packet)?;
                        let mut rb = PacketBuilder::new(Code::AccessReject, packet.identifier());
                        rb.eap_message(&eap_failure).ok()?;
                        let reject = finish(rb, client, packet)?;
                        let origin = origin(packet, source);
                        return Some(Outcome::Push(Box::new(PushWork {
                            accept,
                            reject,
                            event: ev,
                            origin,
                            existing: None,
                        })));
                    }
                    refused => {
                        let (why, note) = match refused {
                            Gate::Reject(why, note) => (why, note),
                            _ => ("a code cannot be asked for over EAP".to_string(), "push_unavailable"),
                        };
                        client.counters.bump(Reason::AccessReject);
                        let mut e =
                            event(client, packet, source, user, user_raw.clone(), method.name(), refuse(16, &why));
                        e.mfa = Some(note.to_string());
                        audit(shared, e, packet, source);
                        let mut rb = PacketBuilder::new(Code::AccessReject, packet.identifier());
                        rb.eap_message(&eap_failure).ok()?;
                        return finish(rb, client, packet).map(Outcome::Reply);
                    }
                }
            }
            client.counters.bump(Reason::AccessAccept);
            audit(shared, ev, packet, source);
            finish(b, client, packet).map(Outcome::Reply)
        }
        Step::Reject { eap: failure, reason: r, message } => reject(failure, user, method, refuse(r, &message)),
    }
}

fn method_of(m: EapMethod) -> Method {
    match m {
        EapMethod::Peap => Method::Peap,
        EapMethod::Mschapv2 => Method::EapMschapv2,
    }
}

/// Starts `method` for `identity`, answering the Response with Identifier `response_id`.
fn begin(shared: &AuthShared, method: EapMethod, identity: &str, response_id: u8) -> Option<(Session, Vec<u8>)> {
    match (method, &shared.peap) {
        (EapMethod::Peap, Some(config)) => match Tunnel::start(config, identity, response_id) {
            Ok((tunnel, request)) => Some((Session::Peap { tunnel: Box::new(tunnel), nak_allowed: true }, request)),
            Err(e) => {
                tracing::error!(error = %e, "cannot start a PEAP conversation");
                None
            }
        },
        _ => {
            let (conversation, request) =
                eap::start_for(identity, response_id, random16(), rand::random(), "portcullis");
            Some((Session::Mschapv2 { conversation, nak_allowed: true }, request))
        }
    }
}
