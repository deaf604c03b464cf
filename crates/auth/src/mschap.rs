//! MS-CHAPv2 (RFC 2759) and MPPE key derivation (RFC 3079), server side.

use des::Des;
use des::cipher::{BlockEncrypt, KeyInit};
use md4::{Digest, Md4};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// "Magic server to client signing constant" (RFC 2759 §8.7).
const MAGIC1: &[u8] = b"Magic server to client signing constant";
/// "Pad to make it do more than one iteration" (RFC 2759 §8.7).
const MAGIC2: &[u8] = b"Pad to make it do more than one iteration";
/// RFC 3079 §3.4 master key label.
const MASTER_KEY_LABEL: &[u8] = b"This is the MPPE Master Key";
/// RFC 3079 Magic2: client send key / server receive key.
const KEY_MAGIC2: &[u8] = b"On the client side, this is the send key; on the server side, it is the receive key.";
/// RFC 3079 Magic3: client receive key / server send key.
const KEY_MAGIC3: &[u8] = b"On the client side, this is the receive key; on the server side, it is the send key.";
const SHS_PAD1: [u8; 40] = [0; 40];
const SHS_PAD2: [u8; 40] = [0xf2; 40];

/// MS-CHAP error codes (RFC 2759 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MschapError {
    /// 646: logon outside the allowed hours.
    RestrictedLogonHours = 646,
    /// 647: account disabled.
    AccountDisabled = 647,
    /// 648: password expired.
    PasswordExpired = 648,
    /// 649: no dial-in permission.
    NoDialinPermission = 649,
    /// 691: authentication failure.
    AuthenticationFailure = 691,
}

/// `NtPasswordHash`: MD4 of the UTF-16LE password (RFC 2759 §8.3).
pub fn nt_password_hash(password: &str) -> [u8; 16] {
    let mut h = Md4::new();
    for unit in password.encode_utf16() {
        h.update(unit.to_le_bytes());
    }
    h.finalize().into()
}

/// `HashNtPasswordHash` (RFC 2759 §8.4).
pub fn hash_nt_password_hash(hash: &[u8; 16]) -> [u8; 16] {
    Md4::digest(hash).into()
}

/// The user name that goes into the ChallengeHash: without a Windows domain
/// (`EXAMPLE\john` → `john`, RFC 2759 §4).
pub fn challenge_user(user: &str) -> &str {
    user.rsplit_once('\\').map_or(user, |(_, u)| u)
}

/// `ChallengeHash` (RFC 2759 §8.2).
pub fn challenge_hash(peer: &[u8; 16], authenticator: &[u8; 16], user: &str) -> [u8; 8] {
    let mut h = Sha1::new();
    h.update(peer);
    h.update(authenticator);
    h.update(challenge_user(user).as_bytes());
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

fn des_key(k: &[u8]) -> [u8; 8] {
    [
        k[0],
        (k[0] << 7) | (k[1] >> 1),
        (k[1] << 6) | (k[2] >> 2),
        (k[2] << 5) | (k[3] >> 3),
        (k[3] << 4) | (k[4] >> 4),
        (k[4] << 3) | (k[5] >> 5),
        (k[5] << 2) | (k[6] >> 6),
        k[6] << 1,
    ]
}

/// `ChallengeResponse` (RFC 2759 §8.5): three DES encryptions of the challenge.
pub fn challenge_response(challenge: &[u8; 8], hash: &[u8; 16]) -> [u8; 24] {
    let mut z = [0u8; 21];
    z[..16].copy_from_slice(hash);
    let mut out = [0u8; 24];
    for (i, chunk) in z.chunks(7).enumerate() {
        let cipher = Des::new_from_slice(&des_key(chunk)).expect("DES takes an 8-octet key");
        let mut block = des::cipher::generic_array::GenericArray::clone_from_slice(challenge);
        cipher.encrypt_block(&mut block);
        out[i * 8..i * 8 + 8].copy_from_slice(&block);
    }
    out
}

/// `GenerateNTResponse` (RFC 2759 §8.1).
pub fn generate_nt_response(authenticator: &[u8; 16], peer: &[u8; 16], user: &str, hash: &[u8; 16]) -> [u8; 24] {
    challenge_response(&challenge_hash(peer, authenticator, user), hash)
}

/// `GenerateAuthenticatorResponse` (RFC 2759 §8.7): `S=` and 40 upper-case hex digits.
pub fn authenticator_response(
    hash: &[u8; 16],
    nt_response: &[u8; 24],
    peer: &[u8; 16],
    authenticator: &[u8; 16],
    user: &str,
) -> String {
    let challenge = challenge_hash(peer, authenticator, user);
    authenticator_response_from_hash_hash(&hash_nt_password_hash(hash), nt_response, &challenge)
}

/// `GenerateAuthenticatorResponse` from the hash of the NT hash (what an external
/// verifier such as Samba's `ntlm_auth` returns as NT_KEY) and the 8-octet challenge hash.
pub fn authenticator_response_from_hash_hash(
    hash_hash: &[u8; 16],
    nt_response: &[u8; 24],
    challenge: &[u8; 8],
) -> String {
    let mut h = Sha1::new();
    h.update(hash_hash);
    h.update(nt_response);
    h.update(MAGIC1);
    let digest = h.finalize();
    let mut h = Sha1::new();
    h.update(digest);
    h.update(challenge);
    h.update(MAGIC2);
    let d = h.finalize();
    let mut s = String::from("S=");
    for b in d {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// The server's verdict on an MS-CHAP2-Response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mschapv2Success {
    /// `S=...` for MS-CHAP2-Success.
    pub authenticator_response: String,
    /// MS-MPPE-Send-Key (server send, RFC 3079 Magic3 start key, 16 octets).
    pub send_key: [u8; 16],
    /// MS-MPPE-Recv-Key (server receive, RFC 3079 Magic2 start key, 16 octets).
    pub recv_key: [u8; 16],
}

/// Checks an MS-CHAP2-Response against the stored NT hash. `response` is the 50-octet
/// RADIUS MS-CHAP2-Response value (Ident, Flags, Peer-Challenge, Reserved, NT-Response).
/// Returns `None` when it does not verify (or is malformed).
pub fn verify_response(
    hash: &[u8; 16],
    authenticator: &[u8; 16],
    response: &[u8],
    user: &str,
) -> Option<Mschapv2Success> {
    let response: &[u8; 50] = response.try_into().ok()?;
    let peer: [u8; 16] = response[2..18].try_into().ok()?;
    let nt_response: [u8; 24] = response[26..50].try_into().ok()?;
    let expected = generate_nt_response(authenticator, &peer, user, hash);
    if !bool::from(expected.ct_eq(&nt_response)) {
        return None;
    }
    let challenge = challenge_hash(&peer, authenticator, user);
    Some(success_from_hash_hash(&hash_nt_password_hash(hash), &nt_response, &challenge))
}

/// The Success values from the hash of the NT hash, for responses an external verifier
/// (Samba's `ntlm_auth --request-nt-key`) has already checked.
pub fn success_from_hash_hash(hash_hash: &[u8; 16], nt_response: &[u8; 24], challenge: &[u8; 8]) -> Mschapv2Success {
    let master = master_key_from_hash_hash(hash_hash, nt_response);
    Mschapv2Success {
        authenticator_response: authenticator_response_from_hash_hash(hash_hash, nt_response, challenge),
        send_key: asymmetric_start_key(&master, KEY_MAGIC3),
        recv_key: asymmetric_start_key(&master, KEY_MAGIC2),
    }
}

/// RFC 3079 §3.4 master key from the NT hash and NT-Response.
pub fn master_key(hash: &[u8; 16], nt_response: &[u8; 24]) -> [u8; 16] {
    master_key_from_hash_hash(&hash_nt_password_hash(hash), nt_response)
}

fn master_key_from_hash_hash(hash_hash: &[u8; 16], nt_response: &[u8; 24]) -> [u8; 16] {
    let mut h = Sha1::new();
    h.update(hash_hash);
    h.update(nt_response);
    h.update(MASTER_KEY_LABEL);
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

fn asymmetric_start_key(master: &[u8; 16], magic: &[u8]) -> [u8; 16] {
    let mut h = Sha1::new();
    h.update(master);
    h.update(SHS_PAD1);
    h.update(magic);
    h.update(SHS_PAD2);
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// The server's (send, receive) 128-bit MPPE start keys (RFC 3079 §3.3–3.4).
pub fn mppe_keys(hash: &[u8; 16], nt_response: &[u8; 24]) -> ([u8; 16], [u8; 16]) {
    let master = master_key(hash, nt_response);
    (asymmetric_start_key(&master, KEY_MAGIC3), asymmetric_start_key(&master, KEY_MAGIC2))
}

/// The MS-CHAP-Error value: `E=nnn R=r C=<32 hex> V=3 M=<text>` after the ident octet.
pub fn error_value(ident: u8, error: MschapError, retry: bool, challenge: &[u8; 16], message: &str) -> Vec<u8> {
    let mut hex = String::with_capacity(32);
    for b in challenge {
        hex.push_str(&format!("{b:02X}"));
    }
    let mut v = vec![ident];
    v.extend_from_slice(format!("E={} R={} C={hex} V=3 M={message}", error as u16, u8::from(retry)).as_bytes());
    v
}
