//! The second factor between a granting network policy and the Access-Accept: TOTP by
//! Access-Challenge (PAP), with the challenge State sealed under a key servers can
//! share, and lockout, replay and recovery codes kept in a database they can share.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use portcullis_auth::mfa::{ChallengeState, CodeError, Failures, StateError, Totp, TotpAlgorithm};
use portcullis_auth::policy::{Method, MfaMode, reason};
use portcullis_radius::{Code, Packet, attr, unhide_user_password};
use portcullis_storage::{SqliteMfa, TotpFactor};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::auth::{AuthShared, Decided, Outcome, add_policy_replies, audit, base_reply, event, finish};
use crate::clients::{Client, Reason};
use crate::config::MfaConfig;
use crate::{hex, lock};

/// The second-factor service of a running server.
pub struct Mfa {
    pub config: MfaConfig,
    key: [u8; 32],
    pub db: Arc<Mutex<SqliteMfa>>,
    /// For push notifications.
    pub http: reqwest::Client,
}

impl std::fmt::Debug for Mfa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mfa").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Reads the 32-byte state key (64 hex digits), creating it (mode 0600) when missing.
pub fn load_or_create_key(path: &Path) -> Result<[u8; 32], String> {
    if !path.exists() {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        let hex = hex(&key);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        std::io::Write::write_all(&mut f, format!("{hex}\n").as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(key);
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let hex = text.trim();
    let mut key = [0u8; 32];
    if hex.len() != 64 {
        return Err(format!("{}: the MFA state key must be 64 hex digits", path.display()));
    }
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("{}: the MFA state key must be 64 hex digits", path.display()))?;
    }
    Ok(key)
}

fn now_unix() -> u64 {
    u64::try_from(crate::now_unix()).unwrap_or(0)
}

/// SHA-256 of a recovery code as typed (spaces and dashes removed, upper case).
pub fn recovery_hash(code: &str) -> [u8; 32] {
    let normal: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect();
    Sha256::digest(normal.as_bytes()).into()
}

/// A fresh enrolment, to show to the user once.
#[derive(Debug)]
pub struct Enrolment {
    pub uri: String,
    pub secret: Vec<u8>,
    pub recovery_codes: Vec<String>,
}

/// Recovery codes issued at enrolment.
const RECOVERY_CODES: usize = 10;

/// Enrols (or re-enrols) a TOTP factor with fresh recovery codes.
pub fn enroll(
    db: &mut SqliteMfa,
    user: &str,
    algorithm: TotpAlgorithm,
    digits: u32,
    issuer: &str,
) -> Result<Enrolment, String> {
    if digits != 6 && digits != 8 {
        return Err("digits must be 6 or 8".into());
    }
    let mut secret = vec![0u8; if algorithm == TotpAlgorithm::Sha256 { 32 } else { 20 }];
    rand::thread_rng().fill_bytes(&mut secret);
    let recovery_codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            let mut b = [0u8; 7];
            rand::thread_rng().fill_bytes(&mut b);
            let s = portcullis_auth::mfa::base32(&b);
            format!("{}-{}", &s[..5], &s[5..10])
        })
        .collect();
    let hashes: Vec<[u8; 32]> = recovery_codes.iter().map(|c| recovery_hash(c)).collect();
    let factor = TotpFactor {
        secret: secret.clone(),
        algorithm: algorithm.name().into(),
        digits,
        step: 30,
        created_at: now_unix() as i64,
        last_step: None,
    };
    db.enroll(user, &factor, &hashes).map_err(|e| e.to_string())?;
    let uri = portcullis_auth::mfa::otpauth_uri(issuer, user, &secret, &Totp { algorithm, digits, step: 30 });
    Ok(Enrolment { uri, secret, recovery_codes })
}

/// A one-time enrolment link's token and the hash stored for it.
pub fn enrol_token() -> (String, [u8; 32]) {
    let mut raw = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut raw);
    let token = portcullis_auth::mfa::base32(&raw).to_lowercase();
    let hash = Sha256::digest(token.as_bytes()).into();
    (token, hash)
}

/// The stored hash of an enrolment token.
pub fn enrol_token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What the user typed into User-Password (a code, or the password), as text.
fn typed(client: &Client, packet: &Packet<'_>) -> String {
    packet
        .attribute(attr::USER_PASSWORD)
        .and_then(|h| unhide_user_password(h, &client.secret, &packet.authenticator()).ok())
        .map(|p| String::from_utf8_lossy(&p).into_owned())
        .unwrap_or_default()
}

/// The TOTP parameters of a stored factor.
pub fn totp_of(f: &TotpFactor) -> Totp {
    Totp {
        algorithm: TotpAlgorithm::from_name(&f.algorithm).unwrap_or(TotpAlgorithm::Sha1),
        digits: f.digits,
        step: f.step,
    }
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

impl Mfa {
    /// Opens the database and the state key.
    pub fn open(config: &MfaConfig, data_dir: &Path) -> Result<Self, String> {
        let key = load_or_create_key(&config.key_path(data_dir))?;
        let db = SqliteMfa::open(&config.database_path(data_dir)).map_err(|e| format!("mfa database: {e}"))?;
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self { config: config.clone(), key, db: Arc::new(Mutex::new(db)), http })
    }

    /// The key that seals challenge States and signs approval links.
    pub fn key(&self) -> [u8; 32] {
        self.key
    }

    fn exempt(&self, source: IpAddr, packet: &Packet<'_>) -> bool {
        let nas_ip = packet.attribute(attr::NAS_IP_ADDRESS).and_then(|v| <[u8; 4]>::try_from(v).ok()).map(IpAddr::from);
        self.config.exempt_nas.iter().any(|n| n.contains(source) || nas_ip.is_some_and(|ip| n.contains(ip)))
    }

    /// Decides whether a granted request needs a second factor and asks for it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gate(
        &self,
        mode: Option<MfaMode>,
        user: &str,
        client: &str,
        policy: &str,
        method: Option<Method>,
        source: IpAddr,
        packet: &Packet<'_>,
        code: Option<&str>,
    ) -> Gate {
        let mode = mode.unwrap_or(self.config.policy_default);
        if mode == MfaMode::Off {
            return Gate::Pass(None);
        }
        if self.exempt(source, packet) {
            return Gate::Pass(Some("exempt"));
        }
        let push = self.config.push.as_ref();
        if self.config.privacyidea.is_some() && method == Some(Method::Pap) {
            return Gate::Remote;
        }
        if method != Some(Method::Pap) {
            return match push {
                Some(_) => Gate::Push,
                None => Gate::Reject(
                    "this method cannot carry a code; it needs push approval, which is not configured".into(),
                    "push_unavailable",
                ),
            };
        }
        let factor = match lock(&self.db).factor(user) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "MFA database unavailable");
                return match self.config.fail_mode {
                    crate::config::FailMode::Secure => {
                        Gate::Reject(format!("MFA database unavailable: {e}"), "unavailable")
                    }
                    crate::config::FailMode::Safe => Gate::Pass(Some("fail_safe_admitted")),
                };
            }
        };
        let Some(factor) = factor else {
            return if push.is_some_and(|p| p.for_pap) {
                Gate::Push
            } else if mode == MfaMode::Required && self.config.require_user_match {
                Gate::Reject("no second factor enrolled (require_user_match)".into(), "not_enrolled")
            } else {
                Gate::Pass(Some("admitted_without_mfa"))
            };
        };
        let now = now_unix();
        if self.locked_out(user, now) {
            return Gate::Reject("second factor locked out after repeated wrong codes".into(), "locked_out");
        }
        if let Some(code) = code {
            return match self.check(user, &factor, code, now) {
                Checked::Ok(note) => Gate::Pass(Some(note)),
                Checked::Refused(why, note) => Gate::Reject(why, note),
            };
        }
        let mut nonce = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut nonce);
        let state = ChallengeState {
            expires: now + self.config.challenge_seconds,
            user: user.to_string(),
            client: client.to_string(),
            policy: policy.to_string(),
            nonce,
            transaction: String::new(),
        };
        Gate::Challenge(state.seal(&self.key))
    }

    /// Whether the user's factor is locked after repeated wrong codes.
    fn locked_out(&self, user: &str, now: u64) -> bool {
        let (count, locked_until) = lock(&self.db).failures(user).unwrap_or((0, 0));
        Failures { count, locked_until }.locked(now)
    }

    /// Checks a TOTP or recovery code; counts failures and locks out.
    fn check(&self, user: &str, factor: &TotpFactor, code: &str, now: u64) -> Checked {
        let totp = totp_of(factor);
        let db = lock(&self.db);
        let outcome = match totp.verify(&factor.secret, code, now, factor.last_step) {
            Ok(step) if db.use_step(user, step).unwrap_or(false) => Ok("totp"),
            Ok(_) | Err(CodeError::Replayed) => Err(("code already used", "replayed")),
            Err(CodeError::Wrong) => {
                if db.use_recovery(user, &recovery_hash(code), now as i64).unwrap_or(false) {
                    Ok("recovery_code")
                } else {
                    Err(("wrong code", "wrong_code"))
                }
            }
        };
        drop(db);
        match outcome {
            Ok(note) => {
                let _ = lock(&self.db).clear_failures(user);
                Checked::Ok(note)
            }
            Err((why, note)) => {
                let (limit, secs) = (self.config.lockout_failures, self.config.lockout_seconds);
                let after = lock(&self.db).record_failure(user, |count, locked_until| {
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

/// PAP with privacyIDEA: the first `/validate/check`; a challenge goes to the NAS with
/// the transaction sealed in the State. Returns the gate's verdict otherwise.
#[allow(clippy::too_many_arguments)]
pub(crate) fn remote_first(
    shared: &AuthShared,
    mfa: &Mfa,
    client: &Client,
    packet: &Packet<'_>,
    source: SocketAddr,
    user: &str,
    policy: &str,
    event: impl FnOnce() -> portcullis_storage::AuthEvent,
) -> Result<Gate, Outcome> {
    let Some(cfg) = mfa.config.privacyidea.clone() else { return Ok(Gate::Pass(None)) };
    let password = if cfg.send_password { typed(client, packet) } else { String::new() };
    let answer =
        tokio::runtime::Handle::current().block_on(crate::privacyidea::check(&mfa.http, &cfg, user, &password, None));
    match answer {
        crate::privacyidea::Answer::Accept => Ok(Gate::Pass(Some("remote_accept"))),
        crate::privacyidea::Answer::Reject(why) => Ok(Gate::Reject(format!("privacyIDEA: {why}"), "remote_reject")),
        crate::privacyidea::Answer::Unavailable(why) => Ok(match mfa.config.fail_mode {
            crate::config::FailMode::Secure => Gate::Reject(why, "remote_unavailable"),
            crate::config::FailMode::Safe => {
                tracing::warn!("{why}: access granted WITHOUT a second factor (fail mode safe)");
                Gate::Pass(Some("fail_safe_admitted"))
            }
        }),
        crate::privacyidea::Answer::Challenge { transaction, message } => {
            let mut nonce = [0u8; 8];
            rand::thread_rng().fill_bytes(&mut nonce);
            let state = ChallengeState {
                expires: now_unix() + mfa.config.challenge_seconds,
                user: user.to_string(),
                client: client.name.clone(),
                policy: policy.to_string(),
                nonce,
                transaction,
            }
            .seal(&mfa.key);
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
/// that shows it; the answer to the challenge then waits for the push.
pub(crate) fn numbered_challenge(
    shared: &AuthShared,
    mfa: &Mfa,
    client: &Client,
    packet: &Packet<'_>,
    source: SocketAddr,
    mut event: portcullis_storage::AuthEvent,
    policy: &str,
) -> Outcome {
    let Some(push) = mfa.config.push.clone() else { return Outcome::Dropped };
    let mut nonce = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut nonce);
    let number = 10 + rand::random::<u32>() % 90;
    let origin = crate::auth::origin(packet, source);
    // Runs on the blocking pool; the notification is sent from here.
    let started = tokio::runtime::Handle::current().block_on(crate::push::begin(
        mfa,
        &push,
        &event,
        &origin,
        Some((hex(&nonce), number)),
    ));
    let reject = |event: portcullis_storage::AuthEvent, why: String, note: &str| {
        let e = crate::auth::second_factor_outcome(event, false, note, why);
        client.counters.bump(Reason::AccessReject);
        audit(shared, e, packet, source);
        finish(base_reply(Code::AccessReject, client, packet), client, packet).map_or(Outcome::Dropped, Outcome::Reply)
    };
    let id = match started {
        Ok(id) => id,
        Err(crate::push::Begin::Fatigue(why)) => return reject(event, why, "push_fatigue"),
        Err(crate::push::Begin::Unavailable(why)) => return reject(event, why, "push_unavailable"),
    };
    // Joined a pending push from the same place: its number, and its id as the nonce.
    let shown = lock(&mfa.db).push_number(&id).ok().flatten().unwrap_or(number);
    for (i, b) in nonce.iter_mut().enumerate() {
        *b = id.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(*b);
    }
    let state = ChallengeState {
        expires: now_unix() + push.wait_seconds,
        user: event.user.clone(),
        client: client.name.clone(),
        policy: policy.to_string(),
        nonce,
        transaction: String::new(),
    }
    .seal(&mfa.key);
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
        let d = Decided { accepted: false, reason_code: reason::AUTHENTICATION_FAILED, policy, message: why };
        let mut e = event(client, packet, source, user, user_raw.clone(), Method::Pap.name(), d);
        e.mfa = Some(note.to_string());
        audit(shared, e, packet, source);
        finish(b, client, packet).map(Outcome::Reply)
    };
    let opened = ChallengeState::open(state, &mfa.key, now);
    let st = match opened {
        Ok(st) => st,
        Err(e) => {
            let note = if e == StateError::Expired { "expired" } else { "invalid_state" };
            return refuse(portcullis_accounting::canonical_user(&user_raw), None, e.to_string(), note, None);
        }
    };
    let nas_identifier = packet.attribute(attr::NAS_IDENTIFIER).map(|v| String::from_utf8_lossy(v).into_owned());
    let name = shared
        .router
        .route(&client.name, &user_raw, nas_identifier.as_deref())
        .map_or_else(|_| portcullis_accounting::canonical_user(&user_raw), |r| r.lookup_name(&user_raw));
    // States keep cut names; put the full ones back after checking they match.
    let clip = portcullis_auth::mfa::clip;
    let max = portcullis_auth::mfa::FIELD_MAX;
    let mut st = st;
    if let Some(p) = shared.policies.iter().find(|p| clip(&p.name, max[2]) == st.policy) {
        st.policy = p.name.clone();
    }
    if st.user == clip(&name, max[0]) {
        st.user = name.clone();
    }
    if st.client != clip(&client.name, max[1]) || st.user != name {
        let why = "the challenge was issued to another user or client".to_string();
        return refuse(name, Some(st.policy), why, "invalid_state", None);
    }
    // The answer to privacyIDEA's challenge goes back to it with the transaction.
    if !st.transaction.is_empty() {
        let code = typed(client, packet);
        let cfg = mfa.config.privacyidea.clone()?;
        let answer = tokio::runtime::Handle::current().block_on(crate::privacyidea::check(
            &mfa.http,
            &cfg,
            &st.user,
            &code,
            Some(&st.transaction),
        ));
        let (note, why) = match answer {
            crate::privacyidea::Answer::Accept => ("remote_accept", None),
            crate::privacyidea::Answer::Reject(why) => ("remote_reject", Some(format!("privacyIDEA: {why}"))),
            crate::privacyidea::Answer::Challenge { .. } => ("remote_reject", Some("privacyIDEA asked again".into())),
            crate::privacyidea::Answer::Unavailable(why) => match mfa.config.fail_mode {
                crate::config::FailMode::Secure => ("remote_unavailable", Some(why)),
                crate::config::FailMode::Safe => ("fail_safe_admitted", None),
            },
        };
        if let Some(why) = why {
            return refuse(st.user.clone(), Some(st.policy), why, note, Some(&mfa.config.wrong_code_message));
        }
        let m = "access granted after privacyIDEA";
        return accept_after_challenge(shared, client, packet, source, &st, &user_raw, note, m);
    }
    // The answer to a number-matching challenge waits for its push.
    let push_id = hex(&st.nonce);
    if lock(&mfa.db).push(&push_id).ok().flatten().is_some() {
        let policy_def = shared.policies.iter().find(|p| p.name == st.policy);
        let mut b = base_reply(Code::AccessAccept, client, packet);
        add_policy_replies(shared, &mut b, policy_def)?;
        let accept = finish(b, client, packet)?;
        let mut r = base_reply(Code::AccessReject, client, packet);
        r.attribute(attr::REPLY_MESSAGE, b"Sign-in not approved").ok()?;
        let reject = finish(r, client, packet)?;
        let d = Decided {
            accepted: true,
            reason_code: reason::SUCCESS,
            policy: Some(st.policy.clone()),
            message: String::new(),
        };
        let e = event(client, packet, source, st.user.clone(), user_raw.clone(), Method::Pap.name(), d);
        let origin = crate::auth::origin(packet, source);
        return Some(Outcome::Push(Box::new(crate::push::PushWork {
            accept,
            reject,
            event: e,
            origin,
            existing: Some(push_id),
        })));
    }
    let code = typed(client, packet);
    if mfa.locked_out(&st.user, now) {
        let why = "second factor locked out after repeated wrong codes".to_string();
        return refuse(st.user.clone(), Some(st.policy), why, "locked_out", Some(&mfa.config.wrong_code_message));
    }
    let Ok(Some(factor)) = lock(&mfa.db).factor(&st.user) else {
        return refuse(st.user.clone(), Some(st.policy), "no second factor enrolled".into(), "not_enrolled", None);
    };
    match mfa.check(&st.user, &factor, &code, now) {
        Checked::Ok(note) => {
            let m = "access granted after the second factor";
            accept_after_challenge(shared, client, packet, source, &st, &user_raw, note, m)
        }
        Checked::Refused(why, note) => {
            refuse(st.user.clone(), Some(st.policy), why, note, Some(&mfa.config.wrong_code_message))
        }
    }
}

/// The Access-Accept (with the granting policy's replies) after a challenge was answered.
#[allow(clippy::too_many_arguments)]
fn accept_after_challenge(
    shared: &AuthShared,
    client: &Client,
    packet: &Packet<'_>,
    source: SocketAddr,
    st: &ChallengeState,
    user_raw: &str,
    note: &str,
    message: &str,
) -> Option<Outcome> {
    client.counters.bump(Reason::AccessAccept);
    let policy_def = shared.policies.iter().find(|p| p.name == st.policy);
    let mut b = base_reply(Code::AccessAccept, client, packet);
    add_policy_replies(shared, &mut b, policy_def)?;
    let d = Decided {
        accepted: true,
        reason_code: reason::SUCCESS,
        policy: Some(st.policy.clone()),
        message: message.to_string(),
    };
    let mut e = event(client, packet, source, st.user.clone(), user_raw.to_string(), Method::Pap.name(), d);
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
