//! Authentication methods, sans-IO: PAP password hashing (Argon2), CHAP (RFC 1994 /
//! RFC 2865 §5.3), MS-CHAPv2 (RFC 2759) with MPPE keys (RFC 3079), and a cache of
//! recently verified credentials that never holds a password.
//!
//! Callers pass salts, keys and `now`; nothing here touches sockets, files or clocks.

pub mod eap;
pub mod mfa;
pub mod mschap;
pub mod peap;
pub mod policy;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Errors of credential handling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("stored password hash is malformed")]
    BadStoredHash,
}

/// Hashes a password with Argon2id (default parameters) and the given 16-octet salt;
/// returns the PHC string.
pub fn hash_password(password: &[u8], salt: &[u8; 16]) -> Result<String, AuthError> {
    let salt = SaltString::encode_b64(salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Verifies a password against a PHC string (slow by design).
pub fn verify_password(phc: &str, password: &[u8]) -> Result<bool, AuthError> {
    let parsed = PasswordHash::new(phc).map_err(|_| AuthError::BadStoredHash)?;
    Ok(argon2::Argon2::default().verify_password(password, &parsed).is_ok())
}

/// Checks a CHAP-Password value (ident ‖ 16-octet response) against the cleartext
/// secret and the challenge (CHAP-Challenge, or the Request Authenticator).
pub fn verify_chap(chap_password: &[u8], secret: &[u8], challenge: &[u8]) -> bool {
    let Some((ident, response)) = chap_password.split_first() else { return false };
    if response.len() != 16 {
        return false;
    }
    let mut h = Md5::new();
    h.update([*ident]);
    h.update(secret);
    h.update(challenge);
    let expected: [u8; 16] = h.finalize().into();
    expected.ct_eq(response).into()
}

/// Remembers credentials that verified recently, so a VPN's repeated logins do not pay
/// for Argon2 every time. It stores only `HMAC-SHA256(key, user ‖ password)` with the
/// user's credential generation; a password change, disable or delete bumps the
/// generation, and a restart (a new key) forgets everything.
#[derive(Debug)]
pub struct CredentialCache {
    /// HMAC-SHA256 keyed with the process key (its pads hashed once, not per check).
    keyed: Hmac<Sha256>,
    ttl: Duration,
    capacity: usize,
    entries: HashMap<String, (u64, [u8; 32], Instant)>,
}

impl CredentialCache {
    /// `key` must be random and private to this process.
    pub fn new(key: [u8; 32], ttl: Duration, capacity: usize) -> Self {
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes any key length");
        Self { keyed, ttl, capacity: capacity.max(1), entries: HashMap::new() }
    }

    fn tag(&self, user: &str, password: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user.as_bytes());
        mac.update(password);
        mac.finalize().into_bytes().into()
    }

    /// Whether this user verified with this password, at this generation, within the TTL.
    pub fn check(&self, now: Instant, user: &str, password: &[u8], generation: u64) -> bool {
        match self.entries.get(user) {
            Some((g, tag, expires)) if *g == generation && now < *expires => {
                bool::from(self.tag(user, password).ct_eq(tag))
            }
            _ => false,
        }
    }

    /// Records a successful verification.
    pub fn insert(&mut self, now: Instant, user: &str, password: &[u8], generation: u64) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(user) {
            self.entries.retain(|_, (_, _, expires)| *expires > now);
            if self.entries.len() >= self.capacity {
                return;
            }
        }
        let tag = self.tag(user, password);
        self.entries.insert(user.to_string(), (generation, tag, now + self.ttl));
    }

    /// Forgets a user (on password change, disable, delete).
    pub fn forget(&mut self, user: &str) {
        self.entries.remove(user);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
