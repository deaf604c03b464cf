//! The second factor, sans-IO: TOTP (RFC 6238) with replay protection, the
//! self-contained challenge State any node holding the key can verify, lockout
//! arithmetic, and `password<sep>code` splitting. Callers pass `now` and keys.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// TOTP hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TotpAlgorithm {
    Sha1,
    Sha256,
}

impl TotpAlgorithm {
    /// The name in otpauth URIs and storage.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }

    /// Parses `SHA1` / `SHA256` (any case).
    pub fn from_name(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "SHA1" => Some(Self::Sha1),
            "SHA256" => Some(Self::Sha256),
            _ => None,
        }
    }
}

/// A TOTP factor's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totp {
    pub algorithm: TotpAlgorithm,
    /// 6 or 8.
    pub digits: u32,
    /// Seconds per step (30).
    pub step: u64,
}

impl Default for Totp {
    fn default() -> Self {
        Self { algorithm: TotpAlgorithm::Sha1, digits: 6, step: 30 }
    }
}

/// Why a code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("wrong code")]
    Wrong,
    #[error("code already used")]
    Replayed,
}

impl Totp {
    /// HOTP value (RFC 4226 §5.3) for a counter.
    pub fn code_at(&self, secret: &[u8], counter: u64) -> u32 {
        let msg = counter.to_be_bytes();
        let digest: Vec<u8> = match self.algorithm {
            TotpAlgorithm::Sha1 => {
                let mut m = <Hmac<Sha1> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
                m.update(&msg);
                m.finalize().into_bytes().to_vec()
            }
            TotpAlgorithm::Sha256 => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
                m.update(&msg);
                m.finalize().into_bytes().to_vec()
            }
        };
        let offset = usize::from(digest[digest.len() - 1] & 0x0f);
        let bin =
            u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
        bin % 10u32.pow(self.digits)
    }

    /// The code for a Unix time, zero-padded.
    pub fn code(&self, secret: &[u8], unix: u64) -> String {
        format!("{:0width$}", self.code_at(secret, unix / self.step.max(1)), width = self.digits as usize)
    }

    /// Checks a code against the steps now−1, now and now+1 (RFC 6238 §5.2: one step of
    /// network delay either way). A step at or before `last_used` is a replay. Returns
    /// the step that matched, to be remembered as used.
    pub fn verify(&self, secret: &[u8], code: &str, unix: u64, last_used: Option<u64>) -> Result<u64, CodeError> {
        let code = code.trim();
        if code.len() != self.digits as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodeError::Wrong);
        }
        let now = unix / self.step.max(1);
        let mut matched = None;
        for step in [now.saturating_sub(1), now, now + 1] {
            let expected = format!("{:0width$}", self.code_at(secret, step), width = self.digits as usize);
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
                matched = Some(step);
            }
        }
        match matched {
            None => Err(CodeError::Wrong),
            Some(step) if last_used.is_some_and(|l| step <= l) => Err(CodeError::Replayed),
            Some(step) => Ok(step),
        }
    }
}

/// RFC 4648 base32 (no padding), as authenticator apps expect.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(char::from(ALPHABET[((buffer >> (bits - 5)) & 31) as usize]));
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn uri_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The otpauth URI authenticator apps scan (Key Uri Format).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8], t: &Totp) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm={}&digits={}&period={}",
        uri_escape(issuer),
        uri_escape(account),
        base32(secret),
        uri_escape(issuer),
        t.algorithm.name(),
        t.digits,
        t.step
    )
}

/// What a challenge State carries between the Access-Challenge and the answer: a
/// random nonce that names the challenge the server recorded (account, User-Name,
/// client, full policy name, transaction) and a digest of those fields, so an answer
/// is tied to exactly what was challenged — no name is cut, nothing matches by prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeState {
    /// Unix seconds after which the answer is refused.
    pub expires: u64,
    /// Random; the key of the recorded challenge.
    pub nonce: [u8; 16],
    /// [`ChallengeState::digest`] of the recorded fields.
    pub digest: [u8; 16],
}

/// Marks our State values (`P` `M` version 2).
const STATE_MAGIC: [u8; 3] = [b'P', b'M', 2];
const STATE_MAC_LEN: usize = 16;
/// Magic, expiry, nonce, digest and MAC.
const STATE_LEN: usize = 3 + 8 + 16 + 16 + STATE_MAC_LEN;

/// Why a State was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("not a challenge State of this server")]
    Foreign,
    #[error("challenge State fails its MAC (forged or another key)")]
    BadMac,
    #[error("challenge expired")]
    Expired,
    #[error("challenge State is malformed")]
    Malformed,
}

impl ChallengeState {
    /// SHA-256 (first 16 octets) of the fields, each prefixed by its length, so no two
    /// different lists of fields share a digest.
    pub fn digest(fields: &[&str]) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(b"portcullis challenge");
        for f in fields {
            h.update((f.len() as u64).to_be_bytes());
            h.update(f.as_bytes());
        }
        let d = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        out
    }

    /// Encodes and authenticates (HMAC-SHA256 under `key`, 16 octets): 59 octets.
    pub fn seal(&self, key: &[u8; 32]) -> Vec<u8> {
        let mut out = STATE_MAGIC.to_vec();
        out.extend_from_slice(&self.expires.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.digest);
        let mac = state_mac(key, &out);
        out.extend_from_slice(&mac);
        out
    }

    /// Whether a State value looks like ours (before checking its MAC).
    pub fn is_ours(state: &[u8]) -> bool {
        state.starts_with(&STATE_MAGIC[..2])
    }

    /// Verifies the version, length, MAC and expiry.
    pub fn open(state: &[u8], key: &[u8; 32], now: u64) -> Result<Self, StateError> {
        if !Self::is_ours(state) {
            return Err(StateError::Foreign);
        }
        if !state.starts_with(&STATE_MAGIC) || state.len() != STATE_LEN {
            return Err(StateError::Malformed);
        }
        let (body, mac) = state.split_at(STATE_LEN - STATE_MAC_LEN);
        if !bool::from(state_mac(key, body).ct_eq(mac)) {
            return Err(StateError::BadMac);
        }
        let rest = &body[STATE_MAGIC.len()..];
        let (expires, rest) = rest.split_first_chunk::<8>().ok_or(StateError::Malformed)?;
        let (nonce, rest) = rest.split_first_chunk::<16>().ok_or(StateError::Malformed)?;
        let digest: [u8; 16] = rest.try_into().map_err(|_| StateError::Malformed)?;
        let expires = u64::from_be_bytes(*expires);
        if now > expires {
            return Err(StateError::Expired);
        }
        Ok(Self { expires, nonce: *nonce, digest })
    }
}

fn state_mac(key: &[u8; 32], body: &[u8]) -> [u8; STATE_MAC_LEN] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(b"portcullis mfa state");
    m.update(body);
    let d = m.finalize().into_bytes();
    let mut out = [0u8; STATE_MAC_LEN];
    out.copy_from_slice(&d[..STATE_MAC_LEN]);
    out
}

/// Splits `password<sep>code` when the tail after the last separator is a code of
/// `digits` digits; `None` when the password carries no code.
pub fn split_concatenated<'a>(password: &'a [u8], separator: &str, digits: u32) -> Option<(&'a [u8], &'a str)> {
    let sep = separator.as_bytes();
    if sep.is_empty() {
        // No separator: the code is the last `digits` characters.
        let split = password.len().checked_sub(digits as usize).filter(|s| *s > 0)?;
        let code = std::str::from_utf8(&password[split..]).ok()?;
        return code.bytes().all(|b| b.is_ascii_digit()).then_some((&password[..split], code));
    }
    let at = password.windows(sep.len()).rposition(|w| w == sep)?;
    let code = std::str::from_utf8(&password[at + sep.len()..]).ok()?;
    (code.len() == digits as usize && code.bytes().all(|b| b.is_ascii_digit()) && at > 0)
        .then_some((&password[..at], code))
}

/// Lockout bookkeeping: after `limit` failures in a row the user is locked for
/// `lock_seconds`; a success clears the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Failures {
    pub count: u32,
    /// Unix seconds; 0 when not locked.
    pub locked_until: u64,
}

impl Failures {
    /// Whether the user is locked out at `now`.
    pub fn locked(&self, now: u64) -> bool {
        now < self.locked_until
    }

    /// Counts a failure; returns the new state (locked when the limit is reached).
    pub fn fail(self, now: u64, limit: u32, lock_seconds: u64) -> Self {
        // A lock that has run out starts a fresh count.
        let count = if self.locked_until != 0 && now >= self.locked_until { 1 } else { self.count + 1 };
        if count >= limit.max(1) {
            Self { count, locked_until: now + lock_seconds }
        } else {
            Self { count, locked_until: 0 }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B.
    #[test]
    fn rfc6238_appendix_b_vectors() {
        let sha1 = Totp { algorithm: TotpAlgorithm::Sha1, digits: 8, step: 30 };
        let sha256 = Totp { algorithm: TotpAlgorithm::Sha256, digits: 8, step: 30 };
        let s1 = b"12345678901234567890";
        let s256 = b"12345678901234567890123456789012";
        for (t, c1, c256) in [
            (59u64, "94287082", "46119246"),
            (1_111_111_109, "07081804", "68084774"),
            (1_111_111_111, "14050471", "67062674"),
            (1_234_567_890, "89005924", "91819424"),
            (2_000_000_000, "69279037", "90698825"),
            (20_000_000_000, "65353130", "77737706"),
        ] {
            assert_eq!(sha1.code(s1, t), c1, "SHA1 at {t}");
            assert_eq!(sha256.code(s256, t), c256, "SHA256 at {t}");
        }
    }

    #[test]
    fn window_and_replay() {
        let t = Totp::default();
        let secret = b"12345678901234567890";
        let now = 1_234_567_890;
        let code = t.code(secret, now);
        let step = t.verify(secret, &code, now, None).unwrap();
        assert_eq!(t.verify(secret, &code, now, Some(step)), Err(CodeError::Replayed));
        assert_eq!(t.verify(secret, &t.code(secret, now - 30), now, None), Ok(step - 1), "one step late");
        assert_eq!(t.verify(secret, &t.code(secret, now + 30), now, None), Ok(step + 1), "one step early");
        assert_eq!(t.verify(secret, &t.code(secret, now - 60), now, None), Err(CodeError::Wrong));
        assert_eq!(t.verify(secret, "12345", now, None), Err(CodeError::Wrong));
        assert_eq!(t.verify(secret, "abcdef", now, None), Err(CodeError::Wrong));
    }

    #[test]
    fn state_round_trip_and_refusals() {
        let s = ChallengeState { expires: 1000, nonce: [5; 16], digest: ChallengeState::digest(&["alice", "vpn"]) };
        let key = [7u8; 32];
        let sealed = s.seal(&key);
        assert!(sealed.len() <= 253);
        assert_eq!(ChallengeState::open(&sealed, &key, 999), Ok(s));
        assert_eq!(ChallengeState::open(&sealed, &key, 1001), Err(StateError::Expired));
        assert_eq!(ChallengeState::open(&sealed, &[8; 32], 999), Err(StateError::BadMac));
        let mut tampered = sealed;
        tampered[12] ^= 1;
        assert_eq!(ChallengeState::open(&tampered, &key, 999), Err(StateError::BadMac));
        assert_eq!(ChallengeState::open(b"other", &key, 0), Err(StateError::Foreign));
        assert_eq!(ChallengeState::open(&STATE_MAGIC, &key, 0), Err(StateError::Malformed));
        assert_eq!(ChallengeState::open(&[b'P', b'M', 1, 0], &key, 0), Err(StateError::Malformed), "old version");
        // Fields never run together, and long names are not cut.
        assert_ne!(ChallengeState::digest(&["ab", "c"]), ChallengeState::digest(&["a", "bc"]));
        let long = "p".repeat(300);
        assert_ne!(ChallengeState::digest(&[&long]), ChallengeState::digest(&[&long[..299]]));
    }

    #[test]
    fn concatenation_and_lockout() {
        assert_eq!(split_concatenated(b"pa,ss,123456", ",", 6), Some((&b"pa,ss"[..], "123456")));
        assert_eq!(split_concatenated(b"pass,12345", ",", 6), None);
        assert_eq!(split_concatenated(b",123456", ",", 6), None);
        assert_eq!(split_concatenated(b"pass123456", "", 6), Some((&b"pass"[..], "123456")));
        let mut f = Failures::default();
        for _ in 0..4 {
            f = f.fail(100, 5, 300);
            assert!(!f.locked(100));
        }
        f = f.fail(100, 5, 300);
        assert!(f.locked(399) && !f.locked(400));
        assert_eq!(f.fail(500, 5, 300).count, 1, "an expired lock starts over");
    }

    #[test]
    fn otpauth_uri_and_base32() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        let uri = otpauth_uri("Portcullis", "alice@corp", b"12345678901234567890", &Totp::default());
        assert_eq!(
            uri,
            "otpauth://totp/Portcullis:alice%40corp?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Portcullis&algorithm=SHA1&digits=6&period=30"
        );
    }
}
