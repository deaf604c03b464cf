//! One Access-Request, one way through the stages: an EAP round or the answer to our
//! challenge goes to its own stage; otherwise connection-request policy (which store)
//! → credentials (one module per method; the account is decided here, once) → network
//! policy → second factor → reply and audit. Each stage returns a value the next one
//! takes; none calls back into an earlier one.

use std::net::SocketAddr;

use portcullis_auth::mschap::MschapError;
use portcullis_auth::policy::{Method, reason};
use portcullis_radius::{Packet, attr, unhide_user_password};

use super::audit::{Decided, audit, event};
use super::context::AuthShared;
use super::credentials::{self, Attempt, Verdict};
use super::decision::{Grant, Identity, Refusal};
use super::identity::{route, typed_name};
use super::mfa::{self, Ask, Gate};
use super::push::{PushWork, origin};
use super::reply::{MICROSOFT, MS_CHAP_CHALLENGE, MS_CHAP2_RESPONSE, Outcome, accept_reply, reject_reply};
use crate::clients::{Client, Reason};

/// The method of a request outside EAP, from the attributes it carries.
fn method_of(packet: &Packet<'_>) -> Option<Method> {
    if packet.has_attribute(attr::USER_PASSWORD) {
        Some(Method::Pap)
    } else if packet.has_attribute(attr::CHAP_PASSWORD) {
        Some(Method::Chap)
    } else if packet.vendor_attribute(MICROSOFT, MS_CHAP_CHALLENGE).is_some()
        && packet.vendor_attribute(MICROSOFT, MS_CHAP2_RESPONSE).is_some()
    {
        Some(Method::Mschapv2)
    } else {
        None
    }
}

/// Decides one verified, new Access-Request from `client` (with the secret it was
/// verified with). Without `allow_slow` it refuses to run an Argon2 verification, a
/// directory call or the second factor and says so, so the caller can move the work
/// off the I/O task.
pub(crate) fn decide(
    shared: &AuthShared,
    client: &Client,
    datagram: &[u8],
    source: SocketAddr,
    allow_slow: bool,
) -> Outcome {
    let Ok(packet) = Packet::decode(datagram) else { return Outcome::Dropped };
    if packet.has_attribute(attr::EAP_MESSAGE) {
        // TLS handshakes and directory lookups do not belong on the I/O task.
        if !allow_slow {
            return Outcome::NeedsSlowPath;
        }
        return super::eap::decide(shared, client, &packet, source);
    }
    if let (Some(m), Some(state)) = (&shared.mfa, packet.attribute(attr::STATE)) {
        if portcullis_auth::mfa::ChallengeState::is_ours(state) {
            if !allow_slow {
                return Outcome::NeedsSlowPath;
            }
            return mfa::answer(shared, m, client, &packet, source);
        }
    }
    let user_raw =
        packet.attribute(attr::USER_NAME).map(|u| String::from_utf8_lossy(u).into_owned()).unwrap_or_default();
    let nas_identifier = packet.attribute(attr::NAS_IDENTIFIER).map(|v| String::from_utf8_lossy(v).into_owned());
    let method = method_of(&packet);
    let request = Request { shared, client, packet: &packet, source, user_raw: &user_raw, method };
    // Connection-request policy.
    let route = match route(shared, &client.name, &user_raw, nas_identifier.as_deref()) {
        Ok(r) => r,
        Err(refusal) => return request.reject(typed_name(None, &user_raw), None, None, refusal, None),
    };
    let Some(m) = method else {
        let refusal = Refusal::new(
            reason::METHOD_NOT_ALLOWED,
            MschapError::AuthenticationFailure,
            "no supported authentication method in the request",
        );
        return request.reject(typed_name(Some(&route), &user_raw), route.policy.clone(), None, refusal, None);
    };
    // Credentials: the account is decided here.
    let mut concatenated = concatenated_code(shared, client, &packet, method);
    let attempt = |without_code: Option<&[u8]>| {
        let a = Attempt {
            shared,
            client,
            packet: &packet,
            route: &route,
            user_raw: &user_raw,
            allow_slow,
            password_without_code: without_code,
        };
        credentials::check(&a, m)
    };
    let verdict = match &concatenated {
        // `password<sep>code`: the password without the code first; a password that
        // merely ends like a code is tried whole.
        Some((password, _)) => match attempt(Some(password)) {
            Verdict::Fail { .. } => {
                concatenated = None;
                attempt(None)
            }
            other => other,
        },
        None => attempt(None),
    };
    let crp = route.policy.clone();
    let (identity, mschap, ident) = match verdict {
        Verdict::NeedsSlowPath => return Outcome::NeedsSlowPath,
        Verdict::Fail { refusal, identity } => {
            let user = identity.as_ref().map_or_else(|| typed_name(Some(&route), &user_raw), |i| i.name().to_string());
            return request.reject(user, crp, None, refusal, None);
        }
        Verdict::Ok { identity, mschap, ident } => (identity, mschap, ident),
    };
    // Network policy.
    let grant = match super::policy::authorize(shared, &packet, &identity.account, method) {
        Ok(g) => g,
        Err(denied) => return request.reject(identity.name().to_string(), crp, denied.policy, denied.refusal, None),
    };
    let accept = || accept_reply(shared, client, &packet, shared.policy(&grant.policy), mschap.as_ref(), ident);
    // Second factor.
    let mut mfa_note = None;
    if let Some(mfa_service) = &shared.mfa {
        // The second-factor database is not for the I/O task.
        if !allow_slow {
            return Outcome::NeedsSlowPath;
        }
        let code = concatenated.as_ref().map(|(_, c)| c.as_str());
        let ask = Ask {
            identity: &identity,
            user_raw: &user_raw,
            client,
            grant: &grant,
            method,
            source: source.ip().to_canonical(),
            code,
        };
        let mut gate = mfa_service.gate(&ask);
        if let Gate::Remote = gate {
            let make_event = || request.event(&identity, &grant, &crp, false, String::new());
            gate = match mfa::remote_first(shared, mfa_service, &ask, &packet, source, make_event) {
                Ok(g) => g,
                Err(outcome) => return outcome,
            };
        }
        match gate {
            Gate::Remote => return Outcome::Dropped,
            Gate::Pass(note) => mfa_note = note,
            Gate::Challenge(state) => {
                let reply = mfa::challenge_reply(mfa_service, client, &packet, &state);
                let message = "password accepted; second factor requested".to_string();
                let mut e = request.event(&identity, &grant, &crp, false, message);
                e.decision = "challenge".into();
                e.event_id = 0;
                e.mfa = Some("challenge".into());
                audit(shared, e, &packet, source);
                return reply.map_or(Outcome::Dropped, Outcome::Reply);
            }
            Gate::Push => {
                let reject = reject_reply(client, &packet, method, MschapError::AuthenticationFailure);
                let (Some(accept), Some(reject)) = (accept(), reject) else { return Outcome::Dropped };
                let event = request.event(&identity, &grant, &crp, true, "access granted".into());
                if method == Some(Method::Pap) && mfa_service.config.push.as_ref().is_some_and(|p| p.number_matching) {
                    return mfa::numbered_challenge(shared, mfa_service, &ask, &packet, source, event);
                }
                return Outcome::Push(Box::new(PushWork {
                    accept,
                    reject,
                    event,
                    account: identity.key().to_string(),
                    origin: origin(&packet, source),
                    existing: None,
                }));
            }
            Gate::Reject(why, note) => {
                let refusal = Refusal::failed(why);
                return request.reject(identity.name().to_string(), crp, Some(grant.policy), refusal, Some(note));
            }
        }
    }
    client.counters.bump(Reason::AccessAccept);
    let reply = accept();
    let mut e = request.event(&identity, &grant, &crp, true, "access granted".into());
    e.mfa = mfa_note.map(str::to_string);
    audit(shared, e, &packet, source);
    reply.map_or(Outcome::Dropped, Outcome::Reply)
}

/// What every stage's answer to this request needs.
struct Request<'a> {
    shared: &'a AuthShared,
    client: &'a Client,
    packet: &'a Packet<'a>,
    source: SocketAddr,
    user_raw: &'a str,
    method: Option<Method>,
}

impl Request<'_> {
    fn method_name(&self) -> &'static str {
        self.method.map_or("none", Method::name)
    }

    /// The audit event of a granted request (`accepted` false while a factor is asked).
    fn event(
        &self,
        identity: &Identity,
        grant: &Grant,
        crp: &Option<String>,
        accepted: bool,
        message: String,
    ) -> portcullis_storage::AuthEvent {
        let d = Decided { accepted, reason_code: reason::SUCCESS, policy: Some(grant.policy.clone()), message };
        let name = identity.name().to_string();
        let mut e =
            event(self.client, self.packet, self.source, name, self.user_raw.to_string(), self.method_name(), d);
        e.connection_request_policy.clone_from(crp);
        e
    }

    /// Rejects, audited under `user` with the deciding policies.
    fn reject(
        &self,
        user: String,
        crp: Option<String>,
        policy: Option<String>,
        refusal: Refusal,
        mfa_note: Option<&str>,
    ) -> Outcome {
        self.client.counters.bump(Reason::AccessReject);
        let reply = reject_reply(self.client, self.packet, self.method, refusal.mschap_error);
        let d = Decided { accepted: false, reason_code: refusal.reason, policy, message: refusal.message };
        let mut e =
            event(self.client, self.packet, self.source, user, self.user_raw.to_string(), self.method_name(), d);
        e.connection_request_policy = crp;
        e.mfa = mfa_note.map(str::to_string);
        audit(self.shared, e, self.packet, self.source);
        reply.map_or(Outcome::Dropped, Outcome::Reply)
    }
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
