//! Building the answer: Access-Accept with the granting policy's replies, MS-CHAP2-Success
//! and MPPE keys; Access-Reject with MS-CHAP-Error; every reply with Message-Authenticator
//! first (unless the client opted out) and the request's Proxy-State echoed.

use portcullis_auth::mschap::{self, MschapError};
use portcullis_auth::policy::{Method, NetworkPolicy};
use portcullis_radius::{Code, DataType, Dictionary, Packet, PacketBuilder, attr, salt_encrypt};
use rand::RngCore;

use super::context::AuthShared;
use crate::clients::Client;

/// MS-CHAP-Challenge and MS-CHAP2-Response (RFC 2548 §2.3).
pub(crate) const MS_CHAP_CHALLENGE: u8 = 11;
pub(crate) const MS_CHAP2_RESPONSE: u8 = 25;
const MS_CHAP2_SUCCESS: u8 = 26;
const MS_CHAP_ERROR: u8 = 2;
const MS_MPPE_ENCRYPTION_POLICY: u8 = 7;
const MS_MPPE_ENCRYPTION_TYPES: u8 = 8;
const MS_MPPE_SEND_KEY: u8 = 16;
const MS_MPPE_RECV_KEY: u8 = 17;
pub(crate) const MICROSOFT: u32 = attr::vendor::MICROSOFT;
const SESSION_TIMEOUT: u8 = 27;
const IDLE_TIMEOUT: u8 = 28;

/// What a stage of the pipeline produced for the listener.
pub(crate) enum Outcome {
    Reply(Vec<u8>),
    Dropped,
    /// Only the blocking pool may go on (Argon2, EAP/TLS, a directory, the MFA database).
    NeedsSlowPath,
    /// Both answers are ready; which one goes out depends on the push.
    Push(Box<super::push::PushWork>),
}

pub(crate) fn base_reply(code: Code, client: &Client, request: &Packet<'_>) -> PacketBuilder {
    let mut b = PacketBuilder::new(code, request.identifier());
    if client.send_message_authenticator {
        b.message_authenticator();
    }
    b
}

pub(crate) fn finish(mut b: PacketBuilder, client: &Client, request: &Packet<'_>) -> Option<Vec<u8>> {
    for ps in request.attributes_of(attr::PROXY_STATE) {
        b.attribute(attr::PROXY_STATE, ps).ok()?;
    }
    b.encode_response(&request.authenticator(), &client.secret).ok()
}

pub(crate) fn accept_reply(
    shared: &AuthShared,
    client: &Client,
    request: &Packet<'_>,
    policy: Option<&NetworkPolicy>,
    mschap: Option<&mschap::Mschapv2Success>,
    ident: u8,
) -> Option<Vec<u8>> {
    let mut b = base_reply(Code::AccessAccept, client, request);
    add_policy_replies(shared, &mut b, policy)?;
    if let Some(ok) = mschap {
        let mut success = vec![ident];
        success.extend_from_slice(ok.authenticator_response.as_bytes());
        b.vendor_attribute(MICROSOFT, MS_CHAP2_SUCCESS, &success).ok()?;
        add_mppe_keys(&mut b, client, request, &ok.send_key, &ok.recv_key)?;
    }
    finish(b, client, request)
}

/// Session-Timeout, Idle-Timeout and the configured reply attributes of the policy.
pub(crate) fn add_policy_replies(
    shared: &AuthShared,
    b: &mut PacketBuilder,
    policy: Option<&NetworkPolicy>,
) -> Option<()> {
    let Some(p) = policy else { return Some(()) };
    if let Some(t) = p.session_timeout {
        b.attribute(SESSION_TIMEOUT, &t.to_be_bytes()).ok()?;
    }
    if let Some(t) = p.idle_timeout {
        b.attribute(IDLE_TIMEOUT, &t.to_be_bytes()).ok()?;
    }
    for (name, value) in &p.reply {
        match encode_reply_attribute(&shared.dictionary, name, value) {
            Ok((0, typ, v)) => {
                b.attribute(typ, &v).ok()?;
            }
            Ok((vendor, typ, v)) => {
                b.vendor_attribute(vendor, typ, &v).ok()?;
            }
            Err(e) => tracing::warn!(policy = %p.name, attribute = %name, "reply attribute skipped: {e}"),
        }
    }
    Some(())
}

/// MS-MPPE-Send/Recv-Key, salt-encrypted (RFC 2548), with encryption policy and types.
pub(crate) fn add_mppe_keys(
    b: &mut PacketBuilder,
    client: &Client,
    request: &Packet<'_>,
    send_key: &[u8],
    recv_key: &[u8],
) -> Option<()> {
    let request_auth = request.authenticator();
    for (typ, key) in [(MS_MPPE_SEND_KEY, send_key), (MS_MPPE_RECV_KEY, recv_key)] {
        let mut salt = [0u8; 2];
        rand::thread_rng().fill_bytes(&mut salt);
        let enc = salt_encrypt(key, &client.secret, &request_auth, salt).ok()?;
        b.vendor_attribute(MICROSOFT, typ, &enc).ok()?;
    }
    b.vendor_attribute(MICROSOFT, MS_MPPE_ENCRYPTION_POLICY, &1u32.to_be_bytes()).ok()?;
    b.vendor_attribute(MICROSOFT, MS_MPPE_ENCRYPTION_TYPES, &6u32.to_be_bytes()).ok()?;
    Some(())
}

pub(crate) fn reject_reply(
    client: &Client,
    request: &Packet<'_>,
    method: Option<Method>,
    error: MschapError,
) -> Option<Vec<u8>> {
    let mut b = base_reply(Code::AccessReject, client, request);
    if method == Some(Method::Mschapv2) {
        let challenge = request.vendor_attribute(MICROSOFT, MS_CHAP_CHALLENGE);
        let response = request.vendor_attribute(MICROSOFT, MS_CHAP2_RESPONSE);
        let ident = response.and_then(|r| r.first().copied()).unwrap_or(0);
        let c: [u8; 16] = challenge.and_then(|c| c.try_into().ok()).unwrap_or([0; 16]);
        let text =
            if error == MschapError::AuthenticationFailure { "Authentication rejected" } else { "Access denied" };
        b.vendor_attribute(MICROSOFT, MS_CHAP_ERROR, &mschap::error_value(ident, error, false, &c, text)).ok()?;
    }
    finish(b, client, request)
}

/// Encodes a reply attribute given by dictionary name and text value.
pub fn encode_reply_attribute(dict: &Dictionary, name: &str, value: &str) -> Result<(u32, u8, Vec<u8>), String> {
    let def = dict.by_name(name).ok_or_else(|| format!("unknown attribute {name:?}"))?;
    let typ = u8::try_from(def.key.number).map_err(|_| format!("{name} has a number above 255"))?;
    let bytes = match def.data_type {
        DataType::Text => value.as_bytes().to_vec(),
        DataType::Octets => match value.strip_prefix("0x") {
            Some(hex) => (0..hex.len())
                .step_by(2)
                .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| format!("{name}: bad hex {value:?}"))?,
            None => value.as_bytes().to_vec(),
        },
        DataType::Integer | DataType::Date => {
            let n = value
                .parse::<u32>()
                .ok()
                .or_else(|| dict.value_number(def.key, value).and_then(|v| u32::try_from(v).ok()))
                .ok_or_else(|| format!("{name}: {value:?} is neither a number nor a known value"))?;
            n.to_be_bytes().to_vec()
        }
        DataType::IpAddr => value
            .parse::<std::net::Ipv4Addr>()
            .map(|a| a.octets().to_vec())
            .map_err(|_| format!("{name}: {value:?} is not an IPv4 address"))?,
        DataType::Ipv6Addr => value
            .parse::<std::net::Ipv6Addr>()
            .map(|a| a.octets().to_vec())
            .map_err(|_| format!("{name}: {value:?} is not an IPv6 address"))?,
        other => return Err(format!("{name}: type {} cannot be configured as a reply yet", other.keyword())),
    };
    Ok((def.key.vendor, typ, bytes))
}

/// Checks every policy's reply attributes against the dictionary.
pub fn validate_replies(dict: &Dictionary, policies: &[NetworkPolicy]) -> Result<(), String> {
    for p in policies {
        for (name, value) in &p.reply {
            encode_reply_attribute(dict, name, value).map_err(|e| format!("network_policy {:?}: {e}", p.name))?;
        }
    }
    Ok(())
}
