//! The second-factor stage, after a granting network policy and before the
//! Access-Accept: TOTP by Access-Challenge (PAP), privacyIDEA, push approval (every
//! method; number matching for PAP). Everything is keyed by the decided account
//! ([`Identity::key`]); an issued challenge is recorded in the shared MFA database and
//! its State names that record, so the answer is tied to the account, User-Name,
//! client and policy it was issued for, and is accepted once.

use std::net::{IpAddr, SocketAddr};

use portcullis_auth::mfa::{ChallengeState, CodeError, Failures, StateError};
use portcullis_auth::policy::{Method, MfaMode, reason};
use portcullis_radius::{Code, Packet, attr, unhide_user_password};
use portcullis_storage::{AuthEvent, Challenge, TotpFactor};
use rand::RngCore;

use super::audit::{Decided, audit, event, second_factor_outcome};
use super::context::AuthShared;
use super::decision::{Grant, Identity};
use super::factor::{Mfa, recovery_hash, totp_of};
use super::push::{Begin, PushWork};
use super::reply::{Outcome, add_policy_replies, base_reply, finish};
use crate::clients::{Client, Reason};
use crate::config::FailMode;
use crate::lock;

fn now_unix() -> u64 {
    u64::try_from(crate::now_unix()).unwrap_or(0)
}

/// What the user typed into User-Password (a code, or the password), as text.
fn typed(client: &Client, packet: &Packet<'_>) -> String {
    packet
        .attribute(attr::USER_PASSWORD)
        .and_then(|h| unhide_user_password(h, &client.secret, &packet.authenticator()).ok())
        .map(|p| String::from_utf8_lossy(&p).into_owned())
        .unwrap_or_default()
}

/// What the gate decided for a request the network policy granted.
pub(crate) enum Gate {
    /// Accept now; the note goes into the audit event.
    Pass(Option<&'static str>),
    /// Send this Access-Challenge State with the prompt.
    Challenge(Vec<u8>),
    /// Reject with this explanation and note.
    Reject(String, &'static str),
    /// Hold the request until the push is answered.
    Push,
    /// Ask the remote provider (privacyIDEA).
    Remote,
}

/// Outcome of checking a code.
enum Checked {
    Ok(&'static str),
    Refused(String, &'static str),
}

/// A granted request, as the gate sees it.
pub(crate) struct Ask<'a> {
    pub identity: &'a Identity,
    /// The User-Name as the peer sent it (the answer to a challenge must carry it again).
    pub user_raw: &'a str,
    pub client: &'a Client,
    pub grant: &'a Grant,
    pub method: Option<Method>,
    /// The UDP source of the request: the only address `exempt_nas` is matched against
    /// (NAS-IP-Address is what the client claims).
    pub source: IpAddr,
    /// A code that came with the password (`password<sep>code`).
    pub code: Option<&'a str>,
}

impl Mfa {
    fn exempt(&self, source: IpAddr) -> bool {
        self.config.exempt_nas.iter().any(|n| n.contains(source))
    }

    fn unavailable(&self, what: &str, e: &dyn std::fmt::Display) -> Gate {
        tracing::error!(error = %e, "MFA database unavailable ({what})");
        match self.config.fail_mode {
            FailMode::Secure => Gate::Reject(format!("MFA database unavailable: {e}"), "unavailable"),
            FailMode::Safe => Gate::Pass(Some("fail_safe_admitted")),
        }
    }

    /// Decides whether a granted request needs a second factor and asks for it.
    pub(crate) fn gate(&self, ask: &Ask<'_>) -> Gate {
        let mode = ask.grant.mfa.unwrap_or(self.config.policy_default);
        if mode == MfaMode::Off {
            return Gate::Pass(None);
        }
        if self.exempt(ask.source) {
            return Gate::Pass(Some("exempt"));
        }
        if self.config.privacyidea.is_some() && ask.method == Some(Method::Pap) {
            return Gate::Remote;
        }
        let key = ask.identity.key();
        let (factor, target) = {
            let db = lock(&self.db);
            (db.factor(key), db.push_target(key))
        };
        let factor = match factor {
            Ok(f) => f,
            Err(e) => return self.unavailable("factor", &e),
        };
        let target = match target {
            Ok(t) => t,
            Err(e) => return self.unavailable("push target", &e),
        };
        let push = self.config.push.as_ref();
        // An approval must be proven on the page, with the account's own code: a push
        // target without a factor to prove it with is no usable push.
        let can_push = push.is_some() && target.is_some() && factor.is_some();
        let not_enrolled = || {
            if mode == MfaMode::Required && self.config.require_user_match {
                Gate::Reject("no second factor enrolled (require_user_match)".into(), "not_enrolled")
            } else {
                Gate::Pass(Some("admitted_without_mfa"))
            }
        };
        if ask.method != Some(Method::Pap) {
            // Only an approval can be asked for without a password field.
            return match (can_push, factor.is_some() || target.is_some()) {
                (true, _) => Gate::Push,
                (false, false) => not_enrolled(),
                (false, true) => Gate::Reject(
                    "this method cannot carry a code and the user has no usable push approval \
                     (a push target and a TOTP factor to prove approvals with)"
                        .into(),
                    "push_unavailable",
                ),
            };
        }
        let Some(factor) = factor else {
            return if target.is_some() {
                Gate::Reject(
                    "the user enrolled only for push, without a TOTP factor to prove approvals with".into(),
                    "push_unavailable",
                )
            } else {
                not_enrolled()
            };
        };
        if can_push && push.is_some_and(|p| p.for_pap) && ask.code.is_none() {
            return Gate::Push;
        }
        let now = now_unix();
        match self.locked_out(key, now) {
            Ok(false) => {}
            Ok(true) => {
                return Gate::Reject("second factor locked out after repeated wrong codes".into(), "locked_out");
            }
            Err(why) => return Gate::Reject(why, "unavailable"),
        }
        if let Some(code) = ask.code {
            return match self.check(key, &factor, code, now) {
                Checked::Ok(note) => Gate::Pass(Some(note)),
                Checked::Refused(why, note) => Gate::Reject(why, note),
            };
        }
        let record = self.challenge_for(ask, String::new(), None, self.config.challenge_seconds);
        match self.issue(record) {
            Ok(state) => Gate::Challenge(state),
            Err(e) => Gate::Reject(format!("cannot record the challenge: {e}"), "unavailable"),
        }
    }

    /// The record of a challenge for this request (nonce and expiry filled in here).
    fn challenge_for(&self, ask: &Ask<'_>, transaction: String, push_id: Option<String>, seconds: u64) -> Challenge {
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        Challenge {
            nonce,
            account: ask.identity.key().to_string(),
            name: ask.identity.name().to_string(),
            user_raw: ask.user_raw.to_string(),
            client: ask.client.name.clone(),
            policy: ask.grant.policy.clone(),
            transaction,
            push_id,
            expires_at: i64::try_from(now_unix() + seconds).unwrap_or(i64::MAX),
        }
    }

    /// Records a challenge and seals the State that names it.
    fn issue(&self, c: Challenge) -> Result<Vec<u8>, String> {
        lock(&self.db).add_challenge(&c, crate::now_unix()).map_err(|e| e.to_string())?;
        let state =
            ChallengeState { expires: u64::try_from(c.expires_at).unwrap_or(0), nonce: c.nonce, digest: digest(&c) };
        Ok(state.seal(&self.key()))
    }

    /// Whether the account's factor is locked after repeated wrong codes; a database
    /// that cannot say is an error (the caller rejects, whatever the fail mode).
    fn locked_out(&self, key: &str, now: u64) -> Result<bool, String> {
        let (count, locked_until) =
            lock(&self.db).failures(key).map_err(|e| format!("MFA database unavailable (lockout): {e}"))?;
        Ok(Failures { count, locked_until }.locked(now))
    }

    /// Proves an approval on the approval page with the account's own TOTP or recovery
    /// code, under the same lockout and single use as a code sent by Access-Challenge:
    /// the factor that proved it (`totp`, `recovery_code`), or why not and the outcome.
    pub(crate) fn prove(&self, key: &str, code: &str, now: u64) -> Result<&'static str, (String, &'static str)> {
        let factor = match lock(&self.db).factor(key) {
            Ok(Some(f)) => f,
            Ok(None) => return Err(("the account has no factor to prove an approval with".into(), "not_enrolled")),
            Err(e) => return Err((format!("MFA database unavailable: {e}"), "unavailable")),
        };
        match self.locked_out(key, now) {
            Ok(false) => {}
            Ok(true) => return Err(("second factor locked out after repeated wrong codes".into(), "locked_out")),
            Err(why) => return Err((why, "unavailable")),
        }
        match self.check(key, &factor, code, now) {
            Checked::Ok(note) => Ok(note),
            Checked::Refused(why, note) => Err((why, note)),
        }
    }

    /// Checks a TOTP or recovery code; counts failures and locks out.
    fn check(&self, key: &str, factor: &TotpFactor, code: &str, now: u64) -> Checked {
        let totp = totp_of(factor);
        let db = lock(&self.db);
        let outcome = match totp.verify(&factor.secret, code, now, factor.last_step) {
            Ok(step) if db.use_step(key, step).unwrap_or(false) => Ok("totp"),
            Ok(_) | Err(CodeError::Replayed) => Err(("code already used", "replayed")),
            Err(CodeError::Wrong) => {
                if db.use_recovery(key, &recovery_hash(code), now as i64).unwrap_or(false) {
                    Ok("recovery_code")
                } else {
                    Err(("wrong code", "wrong_code"))
                }
            }
        };
        drop(db);
        match outcome {
            Ok(note) => {
                let _ = lock(&self.db).clear_failures(key);
                Checked::Ok(note)
            }
            Err((why, note)) => {
                let (limit, secs) = (self.config.lockout_failures, self.config.lockout_seconds);
                let after = lock(&self.db).record_failure(key, |count, locked_until| {
                    let f = Failures { count, locked_until }.fail(now, limit, secs);
                    (f.count, f.locked_until)
                });
                let locked = after.is_ok_and(|(c, l)| (Failures { count: c, locked_until: l }).locked(now));
                if locked {
                    Checked::Refused(format!("{why}; second factor locked out for {secs} s"), "locked_out")
                } else {
                    Checked::Refused(why.to_string(), note)
                }
            }
        }
    }
}

/// The digest a State carries of its recorded challenge.
fn digest(c: &Challenge) -> [u8; 16] {
    let expires = c.expires_at.to_string();
    ChallengeState::digest(&[
        &c.account,
        &c.name,
        &c.user_raw,
        &c.client,
        &c.policy,
        &c.transaction,
        c.push_id.as_deref().unwrap_or(""),
        &expires,
    ])
}

/// PAP with privacyIDEA: the first `/validate/check` for the account's name; a
/// challenge goes to the NAS with the transaction recorded. Returns the gate's verdict
/// otherwise.
pub(crate) fn remote_first(
    shared: &AuthShared,
    mfa: &Mfa,
    ask: &Ask<'_>,
    packet: &Packet<'_>,
    source: SocketAddr,
    event: impl FnOnce() -> AuthEvent,
) -> Result<Gate, Outcome> {
    let Some(cfg) = mfa.config.privacyidea.clone() else { return Ok(Gate::Pass(None)) };
    let client = ask.client;
    let password = if cfg.send_password { typed(client, packet) } else { String::new() };
    let user = ask.identity.name();
    let answer =
        tokio::runtime::Handle::current().block_on(crate::privacyidea::check(&mfa.http, &cfg, user, &password, None));
    match answer {
        crate::privacyidea::Answer::Accept => Ok(Gate::Pass(Some("remote_accept"))),
        crate::privacyidea::Answer::Reject(why) => Ok(Gate::Reject(format!("privacyIDEA: {why}"), "remote_reject")),
        crate::privacyidea::Answer::Unavailable(why) => Ok(match mfa.config.fail_mode {
            FailMode::Secure => Gate::Reject(why, "remote_unavailable"),
            FailMode::Safe => {
                tracing::warn!("{why}: access granted WITHOUT a second factor (fail mode safe)");
                Gate::Pass(Some("fail_safe_admitted"))
            }
        }),
        crate::privacyidea::Answer::Challenge { transaction, message } => {
            let record = mfa.challenge_for(ask, transaction, None, mfa.config.challenge_seconds);
            let state = match mfa.issue(record) {
                Ok(s) => s,
                Err(e) => return Ok(Gate::Reject(format!("cannot record the challenge: {e}"), "unavailable")),
            };
            let mut b = base_reply(Code::AccessChallenge, client, packet);
            if b.attribute(attr::REPLY_MESSAGE, message.as_bytes()).is_err()
                || b.attribute(attr::STATE, &state).is_err()
            {
                return Err(Outcome::Dropped);
            }
            let mut e = event();
            e.decision = "challenge".into();
            e.event_id = 0;
            e.mfa = Some("remote_challenge".into());
            e.message = "password accepted; privacyIDEA asks for a code".into();
            audit(shared, e, packet, source);
            Err(finish(b, client, packet).map_or(Outcome::Dropped, Outcome::Reply))
        }
    }
}

/// Number matching (PAP): starts the push with a number and sends the Access-Challenge
/// that shows it; the answer to the challenge then waits for that push.
pub(crate) fn numbered_challenge(
    shared: &AuthShared,
    mfa: &Mfa,
    ask: &Ask<'_>,
    packet: &Packet<'_>,
    source: SocketAddr,
    mut event: AuthEvent,
) -> Outcome {
    let Some(push) = mfa.config.push.clone() else { return Outcome::Dropped };
    let client = ask.client;
    let number = 10 + rand::random::<u32>() % 90;
    let origin = super::push::origin(packet, source);
    // Runs on the blocking pool; the notification is sent from here.
    let started = tokio::runtime::Handle::current().block_on(super::push::begin(
        mfa,
        &push,
        ask.identity.key(),
        &event,
        &origin,
        Some(number),
    ));
    let reject = |event: AuthEvent, why: String, note: &str| {
        let e = second_factor_outcome(event, false, note, why);
        client.counters.bump(Reason::AccessReject);
        audit(shared, e, packet, source);
        finish(base_reply(Code::AccessReject, client, packet), client, packet).map_or(Outcome::Dropped, Outcome::Reply)
    };
    let id = match started {
        Ok(id) => id,
        Err(Begin::Fatigue(why)) => return reject(event, why, "push_fatigue"),
        Err(Begin::Unavailable(why) | Begin::Local(why)) => return reject(event, why, "push_unavailable"),
    };
    // A retransmit of this same request joined the push already started: its number.
    let shown = lock(&mfa.db).push_number(&id).ok().flatten().unwrap_or(number);
    let record = mfa.challenge_for(ask, String::new(), Some(id), push.wait_seconds);
    let state = match mfa.issue(record) {
        Ok(s) => s,
        Err(e) => return reject(event, format!("cannot record the challenge: {e}"), "unavailable"),
    };
    let mut b = base_reply(Code::AccessChallenge, client, packet);
    let prompt = push.number_prompt.replace("{number}", &shown.to_string());
    if b.attribute(attr::REPLY_MESSAGE, prompt.as_bytes()).is_err() || b.attribute(attr::STATE, &state).is_err() {
        return Outcome::Dropped;
    }
    event.decision = "challenge".into();
    event.event_id = 0;
    event.mfa = Some("push_number".into());
    event.message = "password accepted; push with number matching sent".into();
    audit(shared, event, packet, source);
    finish(b, client, packet).map_or(Outcome::Dropped, Outcome::Reply)
}

/// An Access-Request answering one of our challenges (its State is ours).
pub(crate) fn answer(
    shared: &AuthShared,
    mfa: &Mfa,
    client: &Client,
    packet: &Packet<'_>,
    source: SocketAddr,
) -> Outcome {
    answer_inner(shared, mfa, client, packet, source).unwrap_or(Outcome::Dropped)
}

fn answer_inner(
    shared: &AuthShared,
    mfa: &Mfa,
    client: &Client,
    packet: &Packet<'_>,
    source: SocketAddr,
) -> Option<Outcome> {
    let state = packet.attribute(attr::STATE)?;
    let user_raw =
        packet.attribute(attr::USER_NAME).map(|u| String::from_utf8_lossy(u).into_owned()).unwrap_or_default();
    let now = now_unix();
    let refuse = |user: String, policy: Option<String>, why: String, note: &str, reply_message: Option<&str>| {
        client.counters.bump(Reason::AccessReject);
        let mut b = base_reply(Code::AccessReject, client, packet);
        if let Some(m) = reply_message {
            b.attribute(attr::REPLY_MESSAGE, m.as_bytes()).ok()?;
        }
        let d = Decided { accepted: false, reason_code: reason::EXTENSION_REJECTED, policy, message: why };
        let mut e = event(client, packet, source, user, user_raw.clone(), Method::Pap.name(), d);
        e.mfa = Some(note.to_string());
        audit(shared, e, packet, source);
        finish(b, client, packet).map(Outcome::Reply)
    };
    let typed_name = portcullis_accounting::canonical_user(&user_raw);
    let st = match ChallengeState::open(state, &mfa.key(), now) {
        Ok(st) => st,
        Err(e) => {
            let note = if e == StateError::Expired { "expired" } else { "invalid_state" };
            return refuse(typed_name, None, e.to_string(), note, None);
        }
    };
    let taken = lock(&mfa.db).take_challenge(&st.nonce, crate::now_unix());
    let c = match taken {
        Ok(Some(c)) => c,
        Ok(None) => {
            let why = "the challenge is unknown, expired or was answered already".to_string();
            return refuse(typed_name, None, why, "invalid_state", None);
        }
        Err(e) => {
            let why = format!("MFA database unavailable (challenge): {e}");
            return refuse(typed_name, None, why, "unavailable", None);
        }
    };
    if digest(&c) != st.digest {
        return refuse(typed_name, None, "the challenge record does not match its State".into(), "invalid_state", None);
    }
    let user = c.name.clone();
    if c.client != client.name || c.user_raw != user_raw {
        let why = "the challenge was issued to another user or client".to_string();
        return refuse(user, Some(c.policy), why, "invalid_state", None);
    }
    let Some(policy) = shared.policy(&c.policy) else {
        let why = format!("network policy {:?} is no longer configured", c.policy);
        return refuse(user, None, why, "invalid_state", None);
    };
    // The answer to privacyIDEA's challenge goes back to it with the transaction.
    if !c.transaction.is_empty() {
        let code = typed(client, packet);
        let cfg = mfa.config.privacyidea.clone()?;
        let answer = tokio::runtime::Handle::current().block_on(crate::privacyidea::check(
            &mfa.http,
            &cfg,
            &c.name,
            &code,
            Some(&c.transaction),
        ));
        let (note, why) = match answer {
            crate::privacyidea::Answer::Accept => ("remote_accept", None),
            crate::privacyidea::Answer::Reject(why) => ("remote_reject", Some(format!("privacyIDEA: {why}"))),
            crate::privacyidea::Answer::Challenge { .. } => ("remote_reject", Some("privacyIDEA asked again".into())),
            crate::privacyidea::Answer::Unavailable(why) => match mfa.config.fail_mode {
                FailMode::Secure => ("remote_unavailable", Some(why)),
                FailMode::Safe => ("fail_safe_admitted", None),
            },
        };
        if let Some(why) = why {
            return refuse(user, Some(c.policy), why, note, Some(&mfa.config.wrong_code_message));
        }
        let m = "access granted after privacyIDEA";
        return accept_after_challenge(shared, client, packet, source, &c, note, m);
    }
    // The answer to a number-matching challenge waits for its push.
    if let Some(push_id) = c.push_id.clone() {
        let mut b = base_reply(Code::AccessAccept, client, packet);
        add_policy_replies(shared, &mut b, Some(policy))?;
        let accept = finish(b, client, packet)?;
        let mut r = base_reply(Code::AccessReject, client, packet);
        r.attribute(attr::REPLY_MESSAGE, b"Sign-in not approved").ok()?;
        let reject = finish(r, client, packet)?;
        let d = Decided {
            accepted: true,
            reason_code: reason::SUCCESS,
            policy: Some(c.policy.clone()),
            message: String::new(),
        };
        let e = event(client, packet, source, user, user_raw.clone(), Method::Pap.name(), d);
        let origin = super::push::origin(packet, source);
        return Some(Outcome::Push(Box::new(PushWork {
            accept,
            reject,
            event: e,
            account: c.account.clone(),
            origin,
            existing: Some(push_id),
        })));
    }
    let code = typed(client, packet);
    match mfa.locked_out(&c.account, now) {
        Ok(false) => {}
        Ok(true) => {
            let why = "second factor locked out after repeated wrong codes".to_string();
            return refuse(user, Some(c.policy), why, "locked_out", Some(&mfa.config.wrong_code_message));
        }
        Err(why) => return refuse(user, Some(c.policy), why, "unavailable", None),
    }
    let factor = lock(&mfa.db).factor(&c.account);
    let factor = match factor {
        Ok(Some(f)) => f,
        Ok(None) => {
            return refuse(user, Some(c.policy), "no second factor enrolled".into(), "not_enrolled", None);
        }
        Err(e) => {
            return refuse(user, Some(c.policy), format!("MFA database unavailable: {e}"), "unavailable", None);
        }
    };
    match mfa.check(&c.account, &factor, &code, now) {
        Checked::Ok(note) => {
            let m = "access granted after the second factor";
            accept_after_challenge(shared, client, packet, source, &c, note, m)
        }
        Checked::Refused(why, note) => refuse(user, Some(c.policy), why, note, Some(&mfa.config.wrong_code_message)),
    }
}

/// The Access-Accept (with the granting policy's replies) after a challenge was answered.
fn accept_after_challenge(
    shared: &AuthShared,
    client: &Client,
    packet: &Packet<'_>,
    source: SocketAddr,
    c: &Challenge,
    note: &str,
    message: &str,
) -> Option<Outcome> {
    client.counters.bump(Reason::AccessAccept);
    let mut b = base_reply(Code::AccessAccept, client, packet);
    add_policy_replies(shared, &mut b, shared.policy(&c.policy))?;
    let d = Decided {
        accepted: true,
        reason_code: reason::SUCCESS,
        policy: Some(c.policy.clone()),
        message: message.to_string(),
    };
    let mut e = event(client, packet, source, c.name.clone(), c.user_raw.clone(), Method::Pap.name(), d);
    e.mfa = Some(note.to_string());
    audit(shared, e, packet, source);
    finish(b, client, packet).map(Outcome::Reply)
}

/// The Access-Challenge asking for the code.
pub(crate) fn challenge_reply(mfa: &Mfa, client: &Client, packet: &Packet<'_>, state: &[u8]) -> Option<Vec<u8>> {
    let mut b = base_reply(Code::AccessChallenge, client, packet);
    b.attribute(attr::REPLY_MESSAGE, mfa.config.prompt.as_bytes()).ok()?;
    b.attribute(attr::STATE, state).ok()?;
    finish(b, client, packet)
}
