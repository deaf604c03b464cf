//! EAP (RFC 3748) packets and the server side of EAP-MSCHAPv2
//! (draft-kamath-pppext-eap-mschapv2), sans-IO: the caller supplies random challenges,
//! the user's NT hash and the policy verdict, and sends what comes back.

use crate::mschap::{self, MschapError};

/// EAP codes.
pub const REQUEST: u8 = 1;
pub const RESPONSE: u8 = 2;
pub const SUCCESS: u8 = 3;
pub const FAILURE: u8 = 4;
/// EAP types.
pub const IDENTITY: u8 = 1;
pub const NAK: u8 = 3;
pub const MSCHAPV2: u8 = 26;
/// EAP-MSCHAPv2 op-codes.
const OP_CHALLENGE: u8 = 1;
const OP_RESPONSE: u8 = 2;
const OP_SUCCESS: u8 = 3;
const OP_FAILURE: u8 = 4;

/// A decoded EAP packet borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eap<'a> {
    pub code: u8,
    pub id: u8,
    /// Type octet for Request/Response.
    pub typ: Option<u8>,
    /// Type data (after the type octet).
    pub data: &'a [u8],
}

/// Why an EAP packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EapError {
    #[error("EAP packet shorter than its header or its Length")]
    Truncated,
    #[error("EAP Length below the minimum for its code")]
    BadLength,
}

impl<'a> Eap<'a> {
    /// Decodes an EAP packet; octets beyond Length are ignored.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, EapError> {
        let [code, id, l0, l1, ..] = bytes else { return Err(EapError::Truncated) };
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let body = bytes.get(4..len).ok_or(EapError::Truncated)?;
        match *code {
            REQUEST | RESPONSE => {
                let (typ, data) = body.split_first().ok_or(EapError::BadLength)?;
                Ok(Self { code: *code, id: *id, typ: Some(*typ), data })
            }
            _ => Ok(Self { code: *code, id: *id, typ: None, data: body }),
        }
    }
}

/// Encodes an EAP packet.
pub fn encode(code: u8, id: u8, typ: Option<u8>, data: &[u8]) -> Vec<u8> {
    let len = 4 + usize::from(typ.is_some()) + data.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&[code, id]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    if let Some(t) = typ {
        out.push(t);
    }
    out.extend_from_slice(data);
    out
}

fn mschapv2_data(op: u8, ms_id: u8, body: &[u8]) -> Vec<u8> {
    let ms_len = (4 + body.len()) as u16;
    let mut out = vec![op, ms_id];
    out.extend_from_slice(&ms_len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Where an EAP-MSCHAPv2 conversation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Challenge sent; waiting for the peer's Response.
    AwaitResponse,
    /// Success Request sent; waiting for the peer's acknowledgement.
    AwaitSuccessAck { send_key: [u8; 16], recv_key: [u8; 16], policy: Option<String> },
    /// Failure Request sent; waiting for the peer's acknowledgement.
    AwaitFailureAck { reason: u32, message: String },
}

/// One conversation, kept between round trips under its State.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub identity: String,
    pub challenge: [u8; 16],
    pub ms_id: u8,
    /// Identifier of the last EAP Request sent.
    pub eap_id: u8,
    pub stage: Stage,
}

/// What to do after a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this EAP Request in an Access-Challenge and keep the conversation.
    Challenge(Vec<u8>),
    /// Send EAP-Success in an Access-Accept with these MPPE keys.
    Accept { eap: Vec<u8>, send_key: Vec<u8>, recv_key: Vec<u8>, policy: Option<String> },
    /// Send EAP-Failure in an Access-Reject.
    Reject { eap: Vec<u8>, reason: u32, message: String },
}

/// Checks an MS-CHAPv2 response somewhere else (Samba's `ntlm_auth` against Active
/// Directory) for the account the credentials were looked up for — never for a name
/// the peer chose: given the 8-octet challenge hash and the NT-Response, returns the
/// hash of the NT hash, or a reason code, error and explanation.
pub type ExternalVerifier = Box<dyn Fn(&[u8; 8], &[u8; 24]) -> Result<[u8; 16], (u32, MschapError, String)> + Send>;

/// Whether the Name in an MS-CHAPv2 Response names the same user as the identity the
/// credentials were looked up for: equal without a `DOMAIN\` prefix, ignoring case. An
/// empty Name stands for the identity.
pub fn same_user(name: &str, identity: &str) -> bool {
    let bare = |s: &str| s.trim_matches(['\0', ' ']).rsplit('\\').next().unwrap_or("").to_lowercase();
    name.is_empty() || bare(name) == bare(identity)
}

/// The user data the server needs for the Response round.
#[derive(Default)]
pub struct Credentials {
    pub nt_hash: Option<[u8; 16]>,
    /// A reason code when the account itself refuses (disabled, expired, unknown).
    pub refused: Option<(u32, MschapError)>,
    /// Used when there is no NT hash.
    pub external: Option<ExternalVerifier>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("nt_hash", &self.nt_hash.map(|_| "<redacted>"))
            .field("refused", &self.refused)
            .field("external", &self.external.is_some())
            .finish()
    }
}

impl Credentials {
    /// The user's NT hash.
    pub fn hash(nt_hash: [u8; 16]) -> Self {
        Self { nt_hash: Some(nt_hash), ..Self::default() }
    }

    /// The account refuses whatever the password.
    pub fn refused(reason: u32, error: MschapError) -> Self {
        Self { refused: Some((reason, error)), ..Self::default() }
    }
}

/// Starts a conversation from an EAP-Response/Identity.
pub fn start(
    identity_response: &Eap<'_>,
    challenge: [u8; 16],
    ms_id: u8,
    server_name: &str,
) -> Option<(Conversation, Vec<u8>)> {
    if identity_response.code != RESPONSE || identity_response.typ != Some(IDENTITY) {
        return None;
    }
    let identity = String::from_utf8_lossy(identity_response.data).trim_end_matches('\0').to_string();
    Some(start_for(&identity, identity_response.id, challenge, ms_id, server_name))
}

/// Starts a conversation for a known identity; `response_id` is the Identifier of the
/// peer's last Response (the Identity, or a Nak asking for this method).
pub fn start_for(
    identity: &str,
    response_id: u8,
    challenge: [u8; 16],
    ms_id: u8,
    server_name: &str,
) -> (Conversation, Vec<u8>) {
    let eap_id = response_id.wrapping_add(1);
    let mut body = vec![16];
    body.extend_from_slice(&challenge);
    body.extend_from_slice(server_name.as_bytes());
    let request = encode(REQUEST, eap_id, Some(MSCHAPV2), &mschapv2_data(OP_CHALLENGE, ms_id, &body));
    let conversation =
        Conversation { identity: identity.to_string(), challenge, ms_id, eap_id, stage: Stage::AwaitResponse };
    (conversation, request)
}

fn failure_request(c: &mut Conversation, response_id: u8, error: MschapError, reason: u32, message: &str) -> Step {
    // The peer learns only the error code; the explanation stays in the audit event.
    let shown = if error == MschapError::AuthenticationFailure { "Authentication failed" } else { "Access denied" };
    // `error_value` leads with the MS-CHAP ident octet, which EAP carries elsewhere.
    let value = mschap::error_value(c.ms_id, error, false, &c.challenge, shown);
    c.eap_id = response_id.wrapping_add(1);
    c.stage = Stage::AwaitFailureAck { reason, message: message.to_string() };
    Step::Challenge(encode(REQUEST, c.eap_id, Some(MSCHAPV2), &mschapv2_data(OP_FAILURE, c.ms_id, &value[1..])))
}

/// Advances a conversation with the peer's next EAP Response. `credentials` is asked
/// for the user's data only in the Response round; `authorize` decides policy after the
/// password verified (returning the granting policy, or a reason and MS-CHAP error).
pub fn step(
    c: &mut Conversation,
    response: &Eap<'_>,
    credentials: impl FnOnce(&str) -> Credentials,
    authorize: impl FnOnce() -> Result<Option<String>, (u32, MschapError, String)>,
) -> Step {
    let reject = |reason: u32, message: &str| Step::Reject {
        eap: encode(FAILURE, response.id, None, &[]),
        reason,
        message: message.to_string(),
    };
    if response.code != RESPONSE {
        return reject(16, "not an EAP Response");
    }
    if response.typ == Some(NAK) {
        return reject(66, "the peer declined EAP-MSCHAPv2");
    }
    let data = response.data;
    if response.typ != Some(MSCHAPV2) || data.is_empty() {
        return reject(16, "unexpected EAP type");
    }
    let op = data[0];
    match (&c.stage, op) {
        (Stage::AwaitResponse, OP_RESPONSE) => {
            // op, ms_id, ms_len(2), value_size(1) = 49, peer(16) reserved(8) nt(24) flags(1), name
            let Some(value) = data.get(5..54).filter(|_| data.get(4) == Some(&49)) else {
                return reject(16, "malformed EAP-MSCHAPv2 Response");
            };
            let name = String::from_utf8_lossy(data.get(54..).unwrap_or_default()).into_owned();
            let creds = credentials(&c.identity);
            if let Some((reason, error)) = creds.refused {
                return failure_request(c, response.id, error, reason, "account refused");
            }
            // The response proves the password of the user in its Name field; that must
            // be the account looked up and authorised for the identity.
            if !same_user(&name, &c.identity) {
                return failure_request(
                    c,
                    response.id,
                    MschapError::AuthenticationFailure,
                    16,
                    "the MS-CHAPv2 Name names another user than the EAP identity",
                );
            }
            let user_for_hash = if name.is_empty() { c.identity.clone() } else { name };
            let peer: [u8; 16] = value[..16].try_into().unwrap_or_default();
            let nt_response: [u8; 24] = value[24..48].try_into().unwrap_or_default();
            let ok = match (creds.nt_hash, creds.external) {
                (Some(hash), _) => {
                    let mut radius_form = vec![c.ms_id, 0];
                    radius_form.extend_from_slice(&value[..48]);
                    let Some(ok) = mschap::verify_response(&hash, &c.challenge, &radius_form, &user_for_hash) else {
                        return failure_request(
                            c,
                            response.id,
                            MschapError::AuthenticationFailure,
                            16,
                            "wrong password",
                        );
                    };
                    ok
                }
                (None, Some(verify)) => {
                    let challenge = mschap::challenge_hash(&peer, &c.challenge, &user_for_hash);
                    match verify(&challenge, &nt_response) {
                        Ok(hash_hash) => mschap::success_from_hash_hash(&hash_hash, &nt_response, &challenge),
                        Err((reason, error, message)) => {
                            return failure_request(c, response.id, error, reason, &message);
                        }
                    }
                }
                (None, None) => {
                    return failure_request(
                        c,
                        response.id,
                        MschapError::AuthenticationFailure,
                        16,
                        "no NT hash for this user",
                    );
                }
            };
            match authorize() {
                Ok(policy) => {
                    let message = format!("{} M=Authentication succeeded", ok.authenticator_response);
                    c.eap_id = response.id.wrapping_add(1);
                    c.stage = Stage::AwaitSuccessAck { send_key: ok.send_key, recv_key: ok.recv_key, policy };
                    Step::Challenge(encode(
                        REQUEST,
                        c.eap_id,
                        Some(MSCHAPV2),
                        &mschapv2_data(OP_SUCCESS, c.ms_id, message.as_bytes()),
                    ))
                }
                Err((reason, error, message)) => failure_request(c, response.id, error, reason, &message),
            }
        }
        (Stage::AwaitSuccessAck { send_key, recv_key, policy }, OP_SUCCESS) => Step::Accept {
            eap: encode(SUCCESS, response.id, None, &[]),
            send_key: send_key.to_vec(),
            recv_key: recv_key.to_vec(),
            policy: policy.clone(),
        },
        (Stage::AwaitFailureAck { reason, message }, OP_FAILURE) => reject(*reason, message),
        _ => reject(16, "EAP-MSCHAPv2 message out of order"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rejects_truncation_and_ignores_padding() {
        assert_eq!(Eap::decode(&[2, 1, 0]), Err(EapError::Truncated));
        assert_eq!(Eap::decode(&[2, 1, 0, 9, 1, b'b']), Err(EapError::Truncated));
        assert_eq!(Eap::decode(&[2, 1, 0, 4]), Err(EapError::BadLength));
        let e = Eap::decode(&[2, 7, 0, 8, 1, b'b', b'o', b'b', 0xff]).unwrap();
        assert_eq!((e.code, e.id, e.typ, e.data), (2, 7, Some(1), &b"bob"[..]));
        assert_eq!(Eap::decode(&[3, 9, 0, 4]).unwrap().typ, None);
    }

    #[test]
    fn full_conversation_with_rfc2759_values() {
        // Peer side computed with the RFC 2759 §9.2 values.
        let auth: [u8; 16] = *b"\x5B\x5D\x7C\x7D\x7B\x3F\x2F\x3E\x3C\x2C\x60\x21\x32\x26\x26\x28";
        let peer: [u8; 16] = *b"\x21\x40\x23\x24\x25\x5E\x26\x2A\x28\x29\x5F\x2B\x3A\x33\x7C\x7E";
        let identity = encode(RESPONSE, 3, Some(IDENTITY), b"User");
        let (mut c, req) = start(&Eap::decode(&identity).unwrap(), auth, 9, "portcullis").unwrap();
        let req = Eap::decode(&req).unwrap();
        assert_eq!((req.code, req.id, req.typ), (REQUEST, 4, Some(MSCHAPV2)));
        let hash = mschap::nt_password_hash("clientPass");
        let nt = mschap::generate_nt_response(&auth, &peer, "User", &hash);
        let mut body = vec![49];
        body.extend_from_slice(&peer);
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(&nt);
        body.push(0);
        body.extend_from_slice(b"User");
        let resp = encode(RESPONSE, 4, Some(MSCHAPV2), &mschapv2_data(OP_RESPONSE, 9, &body));
        let creds = |_: &str| Credentials::hash(hash);
        let step1 = step(&mut c, &Eap::decode(&resp).unwrap(), creds, || Ok(Some("p".into())));
        let Step::Challenge(success) = step1 else { panic!("{step1:?}") };
        let s = Eap::decode(&success).unwrap();
        assert!(String::from_utf8_lossy(&s.data[4..]).starts_with("S=407A5589115FD0D6209F510FE9C04566932CDA56"));
        let ack = encode(RESPONSE, 5, Some(MSCHAPV2), &[OP_SUCCESS]);
        let step2 = step(&mut c, &Eap::decode(&ack).unwrap(), |_| unreachable!(), || unreachable!());
        let Step::Accept { eap, send_key, .. } = step2 else { panic!("{step2:?}") };
        assert_eq!(eap, vec![SUCCESS, 5, 0, 4]);
        assert_eq!(send_key, mschap::mppe_keys(&hash, &nt).0);
    }

    #[test]
    fn wrong_password_fails_with_691_then_rejects() {
        let identity = encode(RESPONSE, 1, Some(IDENTITY), b"bob");
        let (mut c, _) = start(&Eap::decode(&identity).unwrap(), [1; 16], 1, "p").unwrap();
        let mut body = vec![49];
        body.extend_from_slice(&[0; 49]);
        let resp = encode(RESPONSE, 2, Some(MSCHAPV2), &mschapv2_data(OP_RESPONSE, 1, &body));
        let creds = |_: &str| Credentials::hash([0; 16]);
        let Step::Challenge(fail) = step(&mut c, &Eap::decode(&resp).unwrap(), creds, || Ok(None)) else { panic!() };
        assert!(String::from_utf8_lossy(&fail).contains("E=691 R=0"));
        let ack = encode(RESPONSE, 3, Some(MSCHAPV2), &[OP_FAILURE]);
        let last = step(&mut c, &Eap::decode(&ack).unwrap(), |_| unreachable!(), || unreachable!());
        assert!(matches!(last, Step::Reject { reason: 16, .. }));
    }

    #[test]
    fn a_response_naming_another_user_is_refused_before_any_verifier_runs() {
        assert!(same_user("CORP\\Alice", "alice") && same_user("", "alice") && same_user("alice", "OTHER\\alice"));
        assert!(!same_user("mallory", "alice") && !same_user("CORP\\mallory", "CORP\\alice"));
        let identity = encode(RESPONSE, 1, Some(IDENTITY), b"alice");
        let (mut c, _) = start(&Eap::decode(&identity).unwrap(), [1; 16], 1, "p").unwrap();
        let mut body = vec![49];
        body.extend_from_slice(&[0; 49]);
        body.extend_from_slice(b"mallory");
        let resp = encode(RESPONSE, 2, Some(MSCHAPV2), &mschapv2_data(OP_RESPONSE, 1, &body));
        // A verifier that would accept anything (a domain controller asked about mallory).
        let creds = |_: &str| Credentials { external: Some(Box::new(|_, _| Ok([0; 16]))), ..Credentials::default() };
        let first = step(&mut c, &Eap::decode(&resp).unwrap(), creds, || unreachable!("never authorised"));
        let Step::Challenge(fail) = first else { panic!("{first:?}") };
        assert!(String::from_utf8_lossy(&fail).contains("E=691"));
        let ack = encode(RESPONSE, 3, Some(MSCHAPV2), &[OP_FAILURE]);
        let last = step(&mut c, &Eap::decode(&ack).unwrap(), |_| unreachable!(), || unreachable!());
        let Step::Reject { message, .. } = last else { panic!("{last:?}") };
        assert!(message.contains("another user"), "{message}");
    }
}
