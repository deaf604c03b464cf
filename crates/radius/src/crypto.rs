//! Authenticators, Message-Authenticator and attribute hiding.
//!
//! Every comparison of a received MAC is constant-time. Secrets live in
//! [`SharedSecret`], which zeroizes on drop and never prints its contents.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::attr::MESSAGE_AUTHENTICATOR;
use crate::packet::HEADER_LEN;
use crate::{Authenticator, Code, Error, Packet};

type HmacMd5 = Hmac<Md5>;

/// A RADIUS shared secret. Zeroized on drop; `Debug` prints only its length.
///
/// It keeps the HMAC-MD5 state keyed with the secret (the inner and outer pads
/// already hashed), so a Message-Authenticator costs two MD5 blocks fewer than keying
/// a new HMAC each time. That state is as secret as the secret itself and is never
/// exposed or printed.
#[derive(Clone)]
pub struct SharedSecret {
    octets: Zeroizing<Vec<u8>>,
    keyed: HmacMd5,
}

impl SharedSecret {
    /// Wraps secret octets.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        let octets = Zeroizing::new(secret.into());
        let keyed = <HmacMd5 as Mac>::new_from_slice(&octets).expect("HMAC accepts any key length");
        Self { octets, keyed }
    }

    /// The secret octets, for the hashing code in this crate.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.octets
    }

    /// A fresh HMAC-MD5 keyed with the secret.
    fn hmac(&self) -> HmacMd5 {
        self.keyed.clone()
    }

    /// Length in octets (safe to log; RFC 2865 §3 recommends at least 16).
    pub fn len(&self) -> usize {
        self.octets.len()
    }

    /// Whether the secret is empty (never valid).
    pub fn is_empty(&self) -> bool {
        self.octets.is_empty()
    }
}

impl PartialEq for SharedSecret {
    fn eq(&self, other: &Self) -> bool {
        self.octets == other.octets
    }
}

impl Eq for SharedSecret {}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedSecret(<{} octets redacted>)", self.octets.len())
    }
}

/// `MD5(Code ‖ ID ‖ Length ‖ auth ‖ Attributes ‖ Secret)` over `packet` with its
/// Authenticator field replaced by `auth` (RFC 2865 §3, RFC 2866 §3).
pub fn packet_md5(packet: &[u8], auth: &Authenticator, secret: &SharedSecret) -> Authenticator {
    let mut h = Md5::new();
    h.update(&packet[..4]);
    h.update(auth.0);
    h.update(&packet[HEADER_LEN..]);
    h.update(secret.expose());
    Authenticator(h.finalize().into())
}

/// Verifies the Request Authenticator of an Accounting-Request, CoA-Request or
/// Disconnect-Request (RFC 2866 §3, RFC 5176 §3.5).
pub fn verify_request_authenticator(packet: &Packet<'_>, secret: &SharedSecret) -> Result<(), Error> {
    let expected = packet_md5(packet.as_bytes(), &Authenticator::ZERO, secret);
    ct_eq(&expected.0, &packet.authenticator().0).then_some(()).ok_or(Error::BadAuthenticator)
}

/// Verifies a response's Response Authenticator against the request's authenticator.
pub fn verify_response_authenticator(
    response: &Packet<'_>,
    request: &Authenticator,
    secret: &SharedSecret,
) -> Result<(), Error> {
    let expected = packet_md5(response.as_bytes(), request, secret);
    ct_eq(&expected.0, &response.authenticator().0).then_some(()).ok_or(Error::BadAuthenticator)
}

/// Which value stands in the Authenticator field while the Message-Authenticator of
/// a packet is computed (RFC 3579 §3.2, RFC 5176 §3.3, FreeRADIUS `rad_sign`).
pub fn message_authenticator_basis(code: Code, own: Authenticator, request: Option<Authenticator>) -> Authenticator {
    match code {
        Code::AccessRequest | Code::StatusServer | Code::StatusClient => own,
        Code::AccessAccept | Code::AccessReject | Code::AccessChallenge | Code::ProtocolError => request.unwrap_or(own),
        // A reply to Status-Server on the accounting port uses the request's authenticator.
        Code::AccountingResponse => request.unwrap_or(Authenticator::ZERO),
        _ => Authenticator::ZERO,
    }
}

/// Computes `HMAC-MD5(secret, packet)` with the Authenticator field replaced by
/// `basis` and the Message-Authenticator value at `ma_value_at` read as zeros.
pub(crate) fn compute_message_authenticator(
    packet: &[u8],
    ma_value_at: usize,
    basis: &Authenticator,
    secret: &SharedSecret,
) -> [u8; 16] {
    let mut mac = secret.hmac();
    mac.update(&packet[..4]);
    mac.update(&basis.0);
    mac.update(&packet[HEADER_LEN..ma_value_at]);
    mac.update(&[0u8; 16]);
    mac.update(&packet[ma_value_at + 16..]);
    mac.finalize().into_bytes().into()
}

/// Offset of the value of the (first) Message-Authenticator attribute, checking that
/// there is exactly one and that it is 18 octets long.
pub fn find_message_authenticator(packet: &Packet<'_>) -> Result<Option<usize>, Error> {
    let mut at = HEADER_LEN;
    let mut found = None;
    for attr in packet.attributes() {
        if attr.typ == MESSAGE_AUTHENTICATOR {
            if attr.value.len() != 16 || found.is_some() {
                return Err(Error::BadMessageAuthenticator);
            }
            found = Some(at + 2);
        }
        at += attr.value.len() + 2;
    }
    Ok(found)
}

/// Verifies the Message-Authenticator, if the packet carries one. Returns whether one
/// was present. `request` is the request's authenticator when `packet` is a response.
pub fn verify_message_authenticator(
    packet: &Packet<'_>,
    secret: &SharedSecret,
    request: Option<Authenticator>,
) -> Result<bool, Error> {
    let Some(at) = find_message_authenticator(packet)? else {
        return Ok(false);
    };
    let basis = message_authenticator_basis(packet.code(), packet.authenticator(), request);
    let bytes = packet.as_bytes();
    let expected = compute_message_authenticator(bytes, at, &basis, secret);
    if ct_eq(&expected, &bytes[at..at + 16]) { Ok(true) } else { Err(Error::BadMessageAuthenticator) }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Hides a User-Password (RFC 2865 §5.2).
pub fn hide_user_password(password: &[u8], secret: &SharedSecret, auth: &Authenticator) -> Result<Vec<u8>, Error> {
    if password.len() > 128 {
        return Err(Error::PasswordTooLong { len: password.len() });
    }
    let padded_len = password.len().div_ceil(16).max(1) * 16;
    let mut out = vec![0u8; padded_len];
    out[..password.len()].copy_from_slice(password);
    let mut prev: [u8; 16] = auth.0;
    for chunk in out.chunks_mut(16) {
        let b = md5_pair(secret.expose(), &prev);
        xor_in_place(chunk, &b);
        prev.copy_from_slice(chunk);
    }
    Ok(out)
}

/// Recovers a User-Password (RFC 2865 §5.2); trailing NUL padding is removed.
pub fn unhide_user_password(
    hidden: &[u8],
    secret: &SharedSecret,
    auth: &Authenticator,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    if hidden.is_empty() || hidden.len() % 16 != 0 || hidden.len() > 128 {
        return Err(Error::BadHiddenLength { len: hidden.len() });
    }
    let mut out = Zeroizing::new(hidden.to_vec());
    let mut prev: [u8; 16] = auth.0;
    for (plain, cipher) in out.chunks_mut(16).zip(hidden.chunks(16)) {
        let b = md5_pair(secret.expose(), &prev);
        xor_in_place(plain, &b);
        prev.copy_from_slice(cipher);
    }
    let end = out.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    out.truncate(end);
    Ok(out)
}

/// Salt-encrypts `plain` as Tunnel-Password (RFC 2868 §3.5) and MS-MPPE keys
/// (RFC 2548 §2.4.2) do: returns `salt ‖ E(len ‖ plain ‖ padding)`. The salt's most
/// significant bit is forced on, as both RFCs require.
pub fn salt_encrypt(
    plain: &[u8],
    secret: &SharedSecret,
    request: &Authenticator,
    salt: [u8; 2],
) -> Result<Vec<u8>, Error> {
    // 1 length octet + data, padded to 16; the attribute must still fit (2 salt octets).
    let padded_len = (plain.len() + 1).div_ceil(16) * 16;
    if plain.len() > 255 || padded_len + 2 > crate::packet::MAX_VALUE_LEN {
        return Err(Error::ValueTooLong { len: plain.len() });
    }
    let salt = [salt[0] | 0x80, salt[1]];
    let mut out = Vec::with_capacity(2 + padded_len);
    out.extend_from_slice(&salt);
    let mut body = vec![0u8; padded_len];
    body[0] = plain.len() as u8;
    body[1..=plain.len()].copy_from_slice(plain);
    let mut h = Md5::new();
    h.update(secret.expose());
    h.update(request.0);
    h.update(salt);
    let mut b: [u8; 16] = h.finalize().into();
    for chunk in body.chunks_mut(16) {
        xor_in_place(chunk, &b);
        b = md5_pair(secret.expose(), chunk);
    }
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reverses [`salt_encrypt`]: `value` is `salt ‖ ciphertext`.
pub fn salt_decrypt(value: &[u8], secret: &SharedSecret, request: &Authenticator) -> Result<Zeroizing<Vec<u8>>, Error> {
    let Some((salt, cipher)) = value.split_first_chunk::<2>() else {
        return Err(Error::BadHiddenLength { len: value.len() });
    };
    if cipher.is_empty() || cipher.len() % 16 != 0 {
        return Err(Error::BadHiddenLength { len: value.len() });
    }
    let mut h = Md5::new();
    h.update(secret.expose());
    h.update(request.0);
    h.update(salt);
    let mut b: [u8; 16] = h.finalize().into();
    let mut plain = Zeroizing::new(cipher.to_vec());
    for (p, c) in plain.chunks_mut(16).zip(cipher.chunks(16)) {
        xor_in_place(p, &b);
        b = md5_pair(secret.expose(), c);
    }
    let len = usize::from(plain[0]);
    if len + 1 > plain.len() {
        return Err(Error::BadHiddenLength { len: value.len() });
    }
    Ok(Zeroizing::new(plain[1..=len].to_vec()))
}

fn md5_pair(a: &[u8], b: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

fn xor_in_place(data: &mut [u8], key: &[u8; 16]) {
    for (d, k) in data.iter_mut().zip(key) {
        *d ^= k;
    }
}
