//! The second-factor service: the key that seals challenge States and signs approval
//! links, the shared MFA database, the HTTP client for notifications, and enrolment
//! (TOTP secrets, recovery codes, one-time links). Everything here is keyed by the
//! account's stable key ([`crate::auth::identity::Identity::key`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

use portcullis_auth::mfa::{Totp, TotpAlgorithm};
use portcullis_storage::{SqliteMfa, TotpFactor};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::MfaConfig;
use crate::hex;

/// The second-factor service of a running server.
pub struct Mfa {
    pub config: MfaConfig,
    key: [u8; 32],
    pub db: Arc<Mutex<SqliteMfa>>,
    /// For push notifications.
    pub http: reqwest::Client,
    /// Where a push's source address is, for its approval page (the databases the
    /// applier reads, shared).
    pub geo: Arc<Mutex<portcullis_geo::GeoDb>>,
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

/// Enrols a TOTP factor with fresh recovery codes for the account `key`; `label` is
/// the name shown in the authenticator app. Without `replace`, an existing factor is
/// an error (replacing one is an administrator's action).
pub fn enroll(
    db: &mut SqliteMfa,
    key: &str,
    algorithm: TotpAlgorithm,
    digits: u32,
    issuer: &str,
    replace: bool,
) -> Result<Enrolment, String> {
    if digits != 6 && digits != 8 {
        return Err("digits must be 6 or 8".into());
    }
    enroll_secret(db, key, fresh_secret(algorithm), &Totp { algorithm, digits, step: 30 }, issuer, replace)
}

/// A new random TOTP secret of the algorithm's recommended length.
pub fn fresh_secret(algorithm: TotpAlgorithm) -> Vec<u8> {
    let mut secret = vec![0u8; if algorithm == TotpAlgorithm::Sha256 { 32 } else { 20 }];
    rand::thread_rng().fill_bytes(&mut secret);
    secret
}

/// The otpauth URI of a secret for the account `key`.
pub fn otpauth_uri(issuer: &str, key: &str, secret: &[u8], totp: &Totp) -> String {
    portcullis_auth::mfa::otpauth_uri(issuer, label(key), secret, totp)
}

/// Enrols `secret` (with fresh recovery codes) for the account `key`, as [`enroll`].
pub fn enroll_secret(
    db: &mut SqliteMfa,
    key: &str,
    secret: Vec<u8>,
    totp: &Totp,
    issuer: &str,
    replace: bool,
) -> Result<Enrolment, String> {
    let (user, algorithm, digits) = (key, totp.algorithm, totp.digits);
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
    if replace {
        db.enroll(user, &factor, &hashes).map_err(|e| e.to_string())?;
    } else if !db.enroll_new(user, &factor, &hashes).map_err(|e| e.to_string())? {
        return Err(format!("{user} already has a second factor; an administrator must reset it first"));
    }
    let uri = otpauth_uri(issuer, user, &secret, totp);
    Ok(Enrolment { uri, secret, recovery_codes })
}

/// The name an account key shows in an authenticator app: the local user's name, or
/// the first RDN value of a directory entry.
pub fn label(key: &str) -> &str {
    let Some(rest) = key.strip_prefix("ldap:") else { return key };
    let dn = rest.split_once(':').map_or(rest, |(_, dn)| dn);
    let first = dn.split(',').next().unwrap_or(dn);
    first.split_once('=').map_or(first, |(_, v)| v)
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

/// The TOTP parameters of a stored factor.
pub fn totp_of(f: &TotpFactor) -> Totp {
    Totp {
        algorithm: TotpAlgorithm::from_name(&f.algorithm).unwrap_or(TotpAlgorithm::Sha1),
        digits: f.digits,
        step: f.step,
    }
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
        let geo = Arc::new(Mutex::new(portcullis_geo::GeoDb::empty()));
        Ok(Self { config: config.clone(), key, db: Arc::new(Mutex::new(db)), http, geo })
    }

    /// The same database, key and HTTP client under reloaded settings: recorded
    /// challenges, pending pushes and lockouts carry on.
    pub fn with_config(&self, config: &MfaConfig) -> Self {
        Self {
            config: config.clone(),
            key: self.key,
            db: Arc::clone(&self.db),
            http: self.http.clone(),
            geo: Arc::clone(&self.geo),
        }
    }

    /// The key that seals challenge States and signs approval links.
    pub fn key(&self) -> [u8; 32] {
        self.key
    }
}
