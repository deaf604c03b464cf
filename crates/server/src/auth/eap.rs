//! EAP over RADIUS (RFC 3579): method negotiation (Identity, Nak) and the two methods —
//! EAP-MSCHAPv2 directly or inside a PEAPv0 tunnel. The account is looked up once, for
//! the identity the method authenticates (PEAP: the inner identity, which must pass
//! the connection-request policies and reach the outer one's store), and the MS-CHAPv2 Response must name that same user; the
//! decided account and grant ride in the conversation to the round that sends
//! EAP-Success, where the second factor is asked of that account.

use std::cell::RefCell;
use std::net::SocketAddr;

use portcullis_accounting::canonical_user;
use portcullis_auth::eap::{self, Credentials, Eap, Step};
use portcullis_auth::mschap::MschapError;
use portcullis_auth::peap::{self, InnerAuth, Tunnel};
use portcullis_auth::policy::{Method, reason};
use portcullis_radius::{Code, Packet, PacketBuilder, attr};
use rand::RngCore;

use super::audit::{Decided, audit, event};
use super::context::AuthShared;
use super::conversations::{Decision, Kind, Session};
use super::decision::{Identity, Refusal};
use super::identity::{resolve, route};
use super::mfa::{Ask, Gate};
use super::push::{PushWork, origin};
use super::reply::{Outcome, add_mppe_keys, add_policy_replies, finish};
use crate::clients::{Client, Reason};
use crate::config::EapMethod;
use crate::directory::Route;
use crate::lock;

fn random16() -> [u8; 16] {
    let mut v = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// The server's answers to the inner method's questions, and the account it decided.
struct Inner<'a> {
    shared: &'a AuthShared,
    client: &'a Client,
    packet: &'a Packet<'a>,
    method: Method,
    /// The route of the outer identity (the RADIUS User-Name).
    outer: &'a Route,
    decided: RefCell<Option<Result<Identity, Refusal>>>,
    grant: RefCell<Option<super::decision::Grant>>,
}

impl Inner<'_> {
    /// The account for `identity`, looked up once. Inside PEAP the inner identity goes
    /// through the connection-request policies too and must reach the same user store
    /// as the outer one, so a realm rule cannot be bypassed by another realm inside the
    /// tunnel.
    fn identity(&self, identity: &str) -> Result<Identity, Refusal> {
        if let Some(done) = self.decided.borrow().as_ref() {
            return done.clone();
        }
        let nas = self.packet.attribute(attr::NAS_IDENTIFIER).map(|v| String::from_utf8_lossy(v).into_owned());
        let result = route(self.shared, &self.client.name, identity, nas.as_deref()).and_then(|r| {
            if r.store.name() != self.outer.store.name() {
                return Err(Refusal::new(
                    reason::NO_CONNECTION_REQUEST_POLICY,
                    MschapError::AuthenticationFailure,
                    "the inner identity reaches another user store than the outer one",
                ));
            }
            resolve(&r, identity)
        });
        *self.decided.borrow_mut() = Some(result.clone());
        result
    }
}

impl InnerAuth for Inner<'_> {
    fn challenge(&self) -> ([u8; 16], u8) {
        (random16(), rand::random())
    }

    fn credentials(&self, identity: &str) -> Credentials {
        let found = match self.identity(identity) {
            Ok(i) => i,
            Err(r) => return Credentials::refused(r.reason, r.mschap_error),
        };
        let mut credentials = Credentials { nt_hash: found.account.nt_hash, ..Credentials::default() };
        if found.account.nt_hash.is_none() {
            if let Some(ntlm) = found.route.store.ntlm() {
                // The domain controller is asked about the looked-up account only.
                let account = found.account.name.clone();
                credentials.external = Some(Box::new(move |challenge, nt| ntlm.verify(&account, challenge, nt)));
            }
        }
        credentials
    }

    fn authorize(&self, identity: &str) -> Result<Option<String>, (u32, MschapError, String)> {
        let found = self.identity(identity).map_err(|r| (r.reason, r.mschap_error, r.message))?;
        match super::policy::authorize(self.shared, self.packet, &found.account, Some(self.method)) {
            Ok(grant) => {
                let name = grant.policy.clone();
                *self.grant.borrow_mut() = Some(grant);
                Ok(Some(name))
            }
            Err(d) => Err((d.refusal.reason, d.refusal.mschap_error, d.refusal.message)),
        }
    }
}

/// One round of an EAP conversation.
pub(crate) fn decide(shared: &AuthShared, client: &Client, packet: &Packet<'_>, source: SocketAddr) -> Outcome {
    round(shared, client, packet, source).unwrap_or(Outcome::Dropped)
}

#[allow(clippy::too_many_lines)]
fn round(shared: &AuthShared, client: &Client, packet: &Packet<'_>, source: SocketAddr) -> Option<Outcome> {
    let eap_bytes = packet.eap_message()?;
    let user_raw =
        packet.attribute(attr::USER_NAME).map(|u| String::from_utf8_lossy(u).into_owned()).unwrap_or_default();
    let reject = |eap_packet: Vec<u8>, user: String, method: Method, d: Decided, crp: Option<String>| {
        client.counters.bump(Reason::AccessReject);
        let mut e = event(client, packet, source, user, user_raw.clone(), method.name(), d);
        e.connection_request_policy = crp;
        audit(shared, e, packet, source);
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
        return reject(eap::encode(eap::FAILURE, 0, None, &[]), canonical_user(&user_raw), method, d, None);
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
    // A conversation continues only from the client it began with.
    let existing =
        packet.attribute(attr::STATE).and_then(|s| lock(&shared.eap).take(s)).filter(|s| s.client == client.name);
    let Some(session) = existing else {
        if message.code != eap::RESPONSE || message.typ != Some(eap::IDENTITY) {
            let d = refuse(reason::AUTHENTICATION_FAILED, "EAP conversation must start with an Identity response");
            return reject(failure, canonical_user(&user_raw), Method::EapMschapv2, d, None);
        }
        let identity = String::from_utf8_lossy(message.data).trim_end_matches('\0').to_string();
        return match begin(shared, client, shared.eap_default, &identity, message.id) {
            Some((session, request)) => challenge(session, request, random16()),
            None => {
                let d = refuse(reason::AUTHENTICATION_FAILED, "cannot start the EAP method");
                reject(failure, canonical_user(&identity), Method::Peap, d, None)
            }
        };
    };
    let state: [u8; 16] = packet.attribute(attr::STATE).and_then(|s| s.try_into().ok()).unwrap_or_else(random16);
    if message.code == eap::RESPONSE && message.typ == Some(eap::NAK) && session.nak_allowed {
        let identity = match &session.kind {
            Kind::Mschapv2(conversation) => conversation.identity.clone(),
            Kind::Peap(tunnel) => tunnel.outer_identity().to_string(),
        };
        let wanted = message.data.iter().find_map(|&t| match t {
            eap::MSCHAPV2 => Some(EapMethod::Mschapv2),
            peap::PEAP if shared.peap.is_some() => Some(EapMethod::Peap),
            _ => None,
        });
        let current = session.method();
        return match wanted.filter(|w| method_of(*w) != current) {
            Some(w) => match begin(shared, client, w, &identity, message.id) {
                Some((s, request)) => challenge(s, request, state),
                None => {
                    let d = refuse(16, "cannot start the EAP method");
                    reject(failure, canonical_user(&identity), current, d, None)
                }
            },
            None => {
                let d = refuse(reason::METHOD_NOT_ALLOWED, "the peer declined every EAP method this server offers");
                reject(failure, canonical_user(&identity), current, d, None)
            }
        };
    }
    let method = session.method();
    let nas_identifier = packet.attribute(attr::NAS_IDENTIFIER).map(|v| String::from_utf8_lossy(v).into_owned());
    let outer = match route(shared, &client.name, &user_raw, nas_identifier.as_deref()) {
        Ok(r) => r,
        Err(r) => {
            let d = refuse(r.reason, &r.message);
            return reject(failure, canonical_user(&user_raw), method, d, None);
        }
    };
    let crp = outer.policy.clone();
    let inner =
        Inner { shared, client, packet, method, outer: &outer, decided: RefCell::new(None), grant: RefCell::new(None) };
    let Session { kind, decided, client: started_by, .. } = session;
    let (step, kind, identity) = match kind {
        Kind::Mschapv2(mut conversation) => {
            let identity = conversation.identity.clone();
            let step =
                eap::step(&mut conversation, &message, |id| inner.credentials(id), || inner.authorize(&identity));
            (step, Kind::Mschapv2(conversation), identity)
        }
        Kind::Peap(mut tunnel) => {
            let step = tunnel.step(&message, &inner);
            let identity = tunnel.inner_identity().unwrap_or(tunnel.outer_identity()).to_string();
            (step, Kind::Peap(tunnel), identity)
        }
    };
    // What this round decided, else what an earlier round of the conversation did.
    let decided = match (inner.decided.into_inner(), inner.grant.into_inner()) {
        (Some(Ok(identity)), Some(grant)) => Some(Box::new(Decision { identity, grant })),
        _ => decided,
    };
    let user = decided.as_ref().map_or_else(|| canonical_user(&identity), |d| d.identity.name().to_string());
    match step {
        Step::Challenge(request) => {
            challenge(Session { kind, nak_allowed: false, decided, client: started_by }, request, state)
        }
        Step::Accept { eap: success, send_key, recv_key, policy } => {
            // EAP-Success only for the account and grant the credentials round decided.
            let Some(d) = decided.filter(|d| policy.as_deref() == Some(d.grant.policy.as_str())) else {
                let why = refuse(reason::AUTHENTICATION_FAILED, "the conversation lost its decided account");
                let eap_failure = eap::encode(eap::FAILURE, success.get(1).copied().unwrap_or(0), None, &[]);
                return reject(eap_failure, user, method, why, crp);
            };
            let policy_def = shared.policy(&d.grant.policy);
            let mut b = PacketBuilder::new(Code::AccessAccept, packet.identifier());
            b.eap_message(&success).ok()?;
            add_policy_replies(shared, &mut b, policy_def)?;
            add_mppe_keys(&mut b, client, packet, &send_key, &recv_key)?;
            b.attribute(attr::USER_NAME, identity.as_bytes()).ok()?;
            let mut message = "access granted".to_string();
            if let Kind::Peap(tunnel) = &kind {
                message = format!("access granted ({})", tunnel.tls_version().unwrap_or("TLS"));
            }
            let eap_failure = eap::encode(eap::FAILURE, success.get(1).copied().unwrap_or(0), None, &[]);
            let accepted = Decided { accepted: true, reason_code: 0, policy: policy.clone(), message };
            let mut ev = event(client, packet, source, user.clone(), user_raw.clone(), method.name(), accepted);
            ev.connection_request_policy = crp.clone();
            if let Some(m) = &shared.mfa {
                let ask = Ask {
                    identity: &d.identity,
                    user_raw: &user_raw,
                    client,
                    grant: &d.grant,
                    method: Some(method),
                    source: source.ip().to_canonical(),
                    code: None,
                };
                match m.gate(&ask) {
                    Gate::Pass(note) => ev.mfa = note.map(str::to_string),
                    Gate::Push => {
                        let accept = finish(b, client, packet)?;
                        let mut rb = PacketBuilder::new(Code::AccessReject, packet.identifier());
                        rb.eap_message(&eap_failure).ok()?;
                        let reject = finish(rb, client, packet)?;
                        return Some(Outcome::Push(Box::new(PushWork {
                            accept,
                            reject,
                            event: ev,
                            account: d.identity.key().to_string(),
                            origin: origin(packet, source),
                            existing: None,
                        })));
                    }
                    refused => {
                        let (why, note) = match refused {
                            Gate::Reject(why, note) => (why, note),
                            _ => ("a code cannot be asked for over EAP".to_string(), "push_unavailable"),
                        };
                        client.counters.bump(Reason::AccessReject);
                        let mut d = refuse(16, &why);
                        d.policy = policy;
                        let mut e = event(client, packet, source, user, user_raw.clone(), method.name(), d);
                        e.mfa = Some(note.to_string());
                        e.connection_request_policy = crp;
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
        Step::Reject { eap: failure, reason: r, message } => reject(failure, user, method, refuse(r, &message), crp),
    }
}

fn method_of(m: EapMethod) -> Method {
    match m {
        EapMethod::Peap => Method::Peap,
        EapMethod::Mschapv2 => Method::EapMschapv2,
    }
}

/// Starts `method` for `identity`, answering the Response with Identifier `response_id`.
fn begin(
    shared: &AuthShared,
    client: &Client,
    method: EapMethod,
    identity: &str,
    response_id: u8,
) -> Option<(Session, Vec<u8>)> {
    match (method, &shared.peap) {
        (EapMethod::Peap, Some(config)) => match Tunnel::start(config, identity, response_id) {
            Ok((tunnel, request)) => Some((Session::new(Kind::Peap(Box::new(tunnel)), &client.name), request)),
            Err(e) => {
                tracing::error!(error = %e, "cannot start a PEAP conversation");
                None
            }
        },
        _ => {
            let (conversation, request) =
                eap::start_for(identity, response_id, random16(), rand::random(), "portcullis");
            Some((Session::new(Kind::Mschapv2(conversation), &client.name), request))
        }
    }
}
