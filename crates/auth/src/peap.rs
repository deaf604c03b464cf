//! PEAPv0 (draft-kamath-pppext-peapv0, [MS-PEAP]) with inner EAP-MSCHAPv2, sans-IO.
//!
//! The TLS tunnel is rustls driven from memory: EAP-Response data goes into the TLS
//! connection, what it writes comes back as EAP-Request fragments. Nothing here touches
//! a socket or a clock; the caller keeps a [`Tunnel`] between round trips (keyed by the
//! RADIUS State) and supplies random challenges, user data and policy through
//! [`InnerAuth`].
//!
//! Wire format of a PEAP message (RFC 5216 §3.1 framing): a flags octet (L = length
//! included, M = more fragments, S = start; the low three bits carry the PEAP version),
//! a four-octet TLS message length when L is set, then TLS records.
//!
//! Inside the tunnel PEAPv0 sends EAP packets without their four-octet header (the peer
//! rebuilds it from the outer packet), except Extensions packets (type 33) carrying the
//! Result TLV, which keep it. After the inner method succeeds the server asks for the
//! Result TLV; only when the peer confirms it does the outer EAP-Success go out, with the
//! MPPE keys exported from the TLS session ("client EAP encryption").

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::eap::{self, Credentials, Eap, IDENTITY, NAK, REQUEST, RESPONSE, Step};
use crate::mschap::MschapError;

/// EAP type of PEAP.
pub const PEAP: u8 = 25;
/// EAP type of Extensions packets (Result TLV).
const EXTENSIONS: u8 = 33;
const FLAG_LENGTH: u8 = 0x80;
const FLAG_MORE: u8 = 0x40;
const FLAG_START: u8 = 0x20;
const VERSION_MASK: u8 = 0x07;
/// Largest TLS message a peer may announce or send in fragments.
const MAX_TLS_MESSAGE: usize = 64 * 1024;
/// Most round trips one conversation may take (a full handshake with fragments needs
/// about ten).
const MAX_ROUNDS: u16 = 64;
/// Result TLV: mandatory bit + type 3, length 2.
const RESULT_TLV: [u8; 4] = [0x80, 0x03, 0x00, 0x02];
const RESULT_SUCCESS: u16 = 1;
const RESULT_FAILURE: u16 = 2;

/// Errors building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum PeapError {
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("private key: {0}")]
    PrivateKey(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// TLS protocol versions a deployment allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Server side settings shared by every PEAP conversation.
#[derive(Debug, Clone)]
pub struct PeapConfig {
    tls: Arc<rustls::ServerConfig>,
    fragment_size: usize,
}

impl PeapConfig {
    /// Builds the configuration from a PEM certificate chain (server first) and a PEM
    /// private key (PKCS#8, PKCS#1 or SEC1). `fragment_size` bounds the TLS data per
    /// EAP-Request (clamped to 256..=4000).
    pub fn from_pem(
        chain_pem: &[u8],
        key_pem: &[u8],
        min: TlsVersion,
        max: TlsVersion,
        fragment_size: usize,
    ) -> Result<Self, PeapError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| PeapError::Certificate(e.to_string()))?;
        if chain.is_empty() {
            return Err(PeapError::Certificate("no CERTIFICATE block found".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| PeapError::PrivateKey(e.to_string()))?;
        let mut versions = Vec::new();
        if min <= TlsVersion::Tls12 && max >= TlsVersion::Tls12 {
            versions.push(&rustls::version::TLS12);
        }
        if max >= TlsVersion::Tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if versions.is_empty() {
            return Err(PeapError::Tls("no TLS version between the minimum and the maximum".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| PeapError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| PeapError::Tls(e.to_string()))?;
        // No resumption: every conversation runs the inner method, so tickets and the
        // session cache would only hold memory.
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Self { tls: Arc::new(config), fragment_size: fragment_size.clamp(256, 4000) })
    }
}

/// What the tunnel asks of the server about the inner user.
pub trait InnerAuth {
    /// A fresh random authenticator challenge and MS-CHAPv2 identifier.
    fn challenge(&self) -> ([u8; 16], u8);
    /// The user's credentials, looked up by the identity given inside the tunnel.
    fn credentials(&self, identity: &str) -> Credentials;
    /// Network policy after the password verified: the granting policy's name, or a
    /// reason code, MS-CHAP error and explanation.
    fn authorize(&self, identity: &str) -> Result<Option<String>, (u32, MschapError, String)>;
}

#[derive(Debug)]
enum Phase {
    /// TLS handshake in progress.
    Handshake,
    /// Handshake done; the inner Identity request has not been sent yet.
    TunnelUp,
    /// Inner Identity request sent.
    AwaitIdentity,
    /// Inner EAP-MSCHAPv2 running.
    Inner(eap::Conversation),
    /// Result TLV sent; waiting for the peer's own Result TLV.
    AwaitResult(Result<Option<String>, (u32, String)>),
}

/// One PEAP conversation.
pub struct Tunnel {
    tls: Box<rustls::ServerConnection>,
    fragment_size: usize,
    /// Identifier of the last EAP-Request sent.
    eap_id: u8,
    /// TLS bytes being sent in fragments, and how many went out already.
    out: Vec<u8>,
    out_sent: usize,
    /// TLS bytes of a fragmented message being received.
    incoming: Vec<u8>,
    phase: Phase,
    rounds: u16,
    outer_identity: String,
    inner_identity: Option<String>,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel").field("phase", &self.phase).field("rounds", &self.rounds).finish_non_exhaustive()
    }
}

impl Tunnel {
    /// Starts a conversation: returns the tunnel and the EAP-Request/PEAP Start.
    pub fn start(config: &PeapConfig, outer_identity: &str, response_id: u8) -> Result<(Self, Vec<u8>), PeapError> {
        let tls = rustls::ServerConnection::new(Arc::clone(&config.tls)).map_err(|e| PeapError::Tls(e.to_string()))?;
        let eap_id = response_id.wrapping_add(1);
        let tunnel = Self {
            tls: Box::new(tls),
            fragment_size: config.fragment_size,
            eap_id,
            out: Vec::new(),
            out_sent: 0,
            incoming: Vec::new(),
            phase: Phase::Handshake,
            rounds: 0,
            outer_identity: outer_identity.to_string(),
            inner_identity: None,
        };
        Ok((tunnel, eap::encode(REQUEST, eap_id, Some(PEAP), &[FLAG_START])))
    }

    /// The identity the peer gave outside the tunnel (often anonymous).
    pub fn outer_identity(&self) -> &str {
        &self.outer_identity
    }

    /// The identity the peer gave inside the tunnel, once known.
    pub fn inner_identity(&self) -> Option<&str> {
        self.inner_identity.as_deref()
    }

    /// The negotiated TLS version, once the handshake is done.
    pub fn tls_version(&self) -> Option<&'static str> {
        match self.tls.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_2 => Some("TLS 1.2"),
            rustls::ProtocolVersion::TLSv1_3 => Some("TLS 1.3"),
            _ => Some("TLS"),
        }
    }

    /// Advances the conversation with the peer's next EAP-Response.
    pub fn step(&mut self, response: &Eap<'_>, inner: &dyn InnerAuth) -> Step {
        self.rounds += 1;
        if self.rounds > MAX_ROUNDS {
            return self.fail(response.id, 16, "too many PEAP round trips");
        }
        if response.code != RESPONSE {
            return self.fail(response.id, 16, "not an EAP Response");
        }
        if response.typ == Some(NAK) {
            return self.fail(response.id, 66, "the peer declined PEAP");
        }
        if response.typ != Some(PEAP) {
            return self.fail(response.id, 16, "unexpected EAP type inside a PEAP conversation");
        }
        let Some((&flags, mut data)) = response.data.split_first() else {
            return self.fail(response.id, 16, "PEAP message without flags");
        };
        if flags & VERSION_MASK != 0 {
            return self.fail(response.id, 16, "only PEAP version 0 is supported");
        }
        if flags & FLAG_LENGTH != 0 {
            let Some((len, rest)) = data.split_first_chunk::<4>() else {
                return self.fail(response.id, 16, "PEAP length field truncated");
            };
            if u32::from_be_bytes(*len) as usize > MAX_TLS_MESSAGE {
                return self.fail(response.id, 16, "PEAP message too long");
            }
            data = rest;
        }
        if self.incoming.len() + data.len() > MAX_TLS_MESSAGE {
            return self.fail(response.id, 16, "PEAP message too long");
        }
        self.incoming.extend_from_slice(data);
        if flags & FLAG_MORE != 0 {
            // Acknowledge the fragment and wait for the rest.
            return self.request(response.id, &[0]);
        }
        if self.out_sent < self.out.len() {
            if !self.incoming.is_empty() {
                return self.fail(response.id, 16, "peer sent data while fragments were pending");
            }
            return self.next_fragment(response.id);
        }
        let received = std::mem::take(&mut self.incoming);
        if let Err(e) = self.feed(&received) {
            return self.fail(response.id, 16, &format!("TLS: {e}"));
        }
        if self.tls.is_handshaking() {
            return self.flush(response.id);
        }
        let plaintext = match self.read_plaintext() {
            Ok(p) => p,
            Err(e) => return self.fail(response.id, 16, &e),
        };
        self.tunnel_round(response.id, &plaintext, inner)
    }

    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), rustls::Error> {
        while !bytes.is_empty() {
            match self.tls.read_tls(&mut bytes) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(rustls::Error::General(e.to_string())),
            }
            self.tls.process_new_packets()?;
        }
        Ok(())
    }

    fn read_plaintext(&mut self) -> Result<Vec<u8>, String> {
        let mut plain = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match self.tls.reader().read(&mut chunk) {
                Ok(0) => return Err("peer closed the tunnel".into()),
                Ok(n) => {
                    plain.extend_from_slice(&chunk[..n]);
                    if plain.len() > MAX_TLS_MESSAGE {
                        return Err("tunnelled message too long".into());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(plain),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn tunnel_round(&mut self, response_id: u8, plaintext: &[u8], inner: &dyn InnerAuth) -> Step {
        match std::mem::replace(&mut self.phase, Phase::TunnelUp) {
            Phase::Handshake | Phase::TunnelUp => {
                if self.tls.wants_write() {
                    // TLS 1.2: the server's Finished goes out first; the peer acknowledges it.
                    self.phase = Phase::TunnelUp;
                    return self.flush(response_id);
                }
                if !plaintext.is_empty() {
                    return self.fail(response_id, 16, "unexpected data before the inner Identity request");
                }
                self.phase = Phase::AwaitIdentity;
                // PEAPv0: the inner Identity request without its EAP header.
                self.send_inner(response_id, &[IDENTITY])
            }
            Phase::AwaitIdentity => {
                let full = with_header(RESPONSE, response_id, plaintext);
                let Ok(identity) = Eap::decode(&full) else {
                    return self.fail(response_id, 16, "malformed inner Identity response");
                };
                let (challenge, ms_id) = inner.challenge();
                let Some((conversation, request)) = eap::start(&identity, challenge, ms_id, "portcullis") else {
                    return self.fail(response_id, 16, "the tunnel must start with an Identity response");
                };
                self.inner_identity = Some(conversation.identity.clone());
                self.phase = Phase::Inner(conversation);
                self.send_inner(response_id, &request[4..])
            }
            Phase::Inner(mut conversation) => {
                let full = with_header(RESPONSE, conversation.eap_id, plaintext);
                let Ok(message) = Eap::decode(&full) else {
                    return self.fail(response_id, 16, "malformed inner EAP response");
                };
                let identity = conversation.identity.clone();
                let step =
                    eap::step(&mut conversation, &message, |id| inner.credentials(id), || inner.authorize(&identity));
                match step {
                    Step::Challenge(request) => {
                        self.phase = Phase::Inner(conversation);
                        self.send_inner(response_id, &request[4..])
                    }
                    Step::Accept { policy, .. } => self.send_result(response_id, Ok(policy)),
                    Step::Reject { reason, message, .. } => self.send_result(response_id, Err((reason, message))),
                }
            }
            Phase::AwaitResult(outcome) => {
                let confirmed = result_tlv(plaintext) == Some(RESULT_SUCCESS);
                let done_id = response_id;
                match outcome {
                    Ok(policy) if confirmed => match self.msk() {
                        Some(msk) => Step::Accept {
                            eap: eap::encode(eap::SUCCESS, done_id, None, &[]),
                            recv_key: msk[..32].to_vec(),
                            send_key: msk[32..64].to_vec(),
                            policy,
                        },
                        None => self.fail(done_id, 16, "cannot export the TLS keys"),
                    },
                    Ok(_) => self.fail(done_id, 16, "the peer did not confirm the Result TLV"),
                    Err((reason, message)) => self.fail(done_id, reason, &message),
                }
            }
        }
    }

    /// The 64-octet MSK: TLS-PRF(master secret, "client EAP encryption", randoms) for
    /// TLS 1.2; for TLS 1.3 the first 64 octets of the exporter with label
    /// "EXPORTER_EAP_TLS_Key_Material" and the EAP type as context (RFC 9427 §2.1).
    fn msk(&self) -> Option<[u8; 64]> {
        if self.tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
            let material = self.tls.export_keying_material([0u8; 128], b"EXPORTER_EAP_TLS_Key_Material", Some(&[PEAP]));
            return material.ok().map(|m| {
                let mut msk = [0u8; 64];
                msk.copy_from_slice(&m[..64]);
                msk
            });
        }
        self.tls.export_keying_material([0u8; 64], b"client EAP encryption", None).ok()
    }

    fn send_result(&mut self, response_id: u8, outcome: Result<Option<String>, (u32, String)>) -> Step {
        let value = if outcome.is_ok() { RESULT_SUCCESS } else { RESULT_FAILURE };
        let mut tlv = RESULT_TLV.to_vec();
        tlv.extend_from_slice(&value.to_be_bytes());
        self.phase = Phase::AwaitResult(outcome);
        // Extensions packets keep their header inside the tunnel.
        let packet = eap::encode(REQUEST, response_id.wrapping_add(1), Some(EXTENSIONS), &tlv);
        self.send_inner(response_id, &packet)
    }

    fn send_inner(&mut self, response_id: u8, plaintext: &[u8]) -> Step {
        if self.tls.writer().write_all(plaintext).is_err() {
            return self.fail(response_id, 16, "cannot write into the TLS tunnel");
        }
        self.flush(response_id)
    }

    /// Collects what TLS wants to send and sends its first fragment.
    fn flush(&mut self, response_id: u8) -> Step {
        self.out.clear();
        self.out_sent = 0;
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut self.out).is_err() {
                return self.fail(response_id, 16, "TLS write failed");
            }
        }
        self.next_fragment(response_id)
    }

    fn next_fragment(&mut self, response_id: u8) -> Step {
        let remaining = self.out.len() - self.out_sent;
        let first = self.out_sent == 0;
        let more = remaining > self.fragment_size;
        let take = remaining.min(self.fragment_size);
        let mut data = Vec::with_capacity(5 + take);
        let mut flags = 0;
        if more {
            flags |= FLAG_MORE;
        }
        if first && more {
            flags |= FLAG_LENGTH;
        }
        data.push(flags);
        if first && more {
            data.extend_from_slice(&(self.out.len() as u32).to_be_bytes());
        }
        data.extend_from_slice(&self.out[self.out_sent..self.out_sent + take]);
        self.out_sent += take;
        self.request(response_id, &data)
    }

    fn request(&mut self, response_id: u8, data: &[u8]) -> Step {
        self.eap_id = response_id.wrapping_add(1);
        Step::Challenge(eap::encode(REQUEST, self.eap_id, Some(PEAP), data))
    }

    fn fail(&self, response_id: u8, reason: u32, message: &str) -> Step {
        Step::Reject { eap: eap::encode(eap::FAILURE, response_id, None, &[]), reason, message: message.to_string() }
    }
}

fn with_header(code: u8, id: u8, body: &[u8]) -> Vec<u8> {
    // A peer that keeps the header on an Extensions response sends a whole packet.
    if body.len() >= 5 && body[0] == code && body[4] == EXTENSIONS {
        return body.to_vec();
    }
    let Some((&typ, data)) = body.split_first() else { return eap::encode(code, id, None, &[]) };
    eap::encode(code, id, Some(typ), data)
}

/// The Result TLV value in a peer's Extensions response.
fn result_tlv(plaintext: &[u8]) -> Option<u16> {
    let message = Eap::decode(plaintext).ok()?;
    if message.code != RESPONSE || message.typ != Some(EXTENSIONS) {
        return None;
    }
    let mut tlvs = message.data;
    while let Some((header, rest)) = tlvs.split_first_chunk::<4>() {
        let typ = u16::from_be_bytes([header[0], header[1]]) & 0x3fff;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value = rest.get(..len)?;
        if typ == 3 && len == 2 {
            return Some(u16::from_be_bytes([value[0], value[1]]));
        }
        tlvs = &rest[len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoUsers;

    impl InnerAuth for NoUsers {
        fn challenge(&self) -> ([u8; 16], u8) {
            ([1; 16], 1)
        }
        fn credentials(&self, _: &str) -> Credentials {
            Credentials::default()
        }
        fn authorize(&self, _: &str) -> Result<Option<String>, (u32, MschapError, String)> {
            Ok(None)
        }
    }

    fn config(min: TlsVersion, max: TlsVersion) -> Result<PeapConfig, PeapError> {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["test.local".into()]).unwrap().self_signed(&key).unwrap();
        PeapConfig::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), min, max, 1024)
    }

    fn response(flags_and_data: &[u8]) -> Vec<u8> {
        eap::encode(RESPONSE, 2, Some(PEAP), flags_and_data)
    }

    #[test]
    fn start_offers_version_0_and_configuration_errors_are_clear() {
        let c = config(TlsVersion::Tls12, TlsVersion::Tls13).unwrap();
        let (_, start) = Tunnel::start(&c, "anonymous", 7).unwrap();
        assert_eq!(start, vec![REQUEST, 8, 0, 6, PEAP, FLAG_START]);
        assert!(config(TlsVersion::Tls13, TlsVersion::Tls12).is_err());
        let e = PeapConfig::from_pem(b"", b"", TlsVersion::Tls12, TlsVersion::Tls13, 1024).unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    }

    #[test]
    fn fragments_are_acknowledged_and_oversized_messages_refused() {
        let c = config(TlsVersion::Tls12, TlsVersion::Tls13).unwrap();
        let (mut t, _) = Tunnel::start(&c, "anonymous", 1).unwrap();
        let first = response(&[FLAG_LENGTH | FLAG_MORE, 0, 0, 1, 0, 0x16, 3, 1]);
        let Step::Challenge(ack) = t.step(&Eap::decode(&first).unwrap(), &NoUsers) else { panic!() };
        assert_eq!(ack, vec![REQUEST, 3, 0, 6, PEAP, 0]);
        let (mut t, _) = Tunnel::start(&c, "anonymous", 1).unwrap();
        let huge = response(&[FLAG_LENGTH | FLAG_MORE, 0, 0x10, 0, 1]);
        assert!(matches!(t.step(&Eap::decode(&huge).unwrap(), &NoUsers), Step::Reject { .. }));
        let (mut t, _) = Tunnel::start(&c, "anonymous", 1).unwrap();
        let v1 = response(&[1]);
        assert!(matches!(t.step(&Eap::decode(&v1).unwrap(), &NoUsers), Step::Reject { .. }));
    }

    #[test]
    fn garbage_tls_rejects_and_round_trips_are_bounded() {
        let c = config(TlsVersion::Tls12, TlsVersion::Tls13).unwrap();
        let (mut t, _) = Tunnel::start(&c, "anonymous", 1).unwrap();
        let junk = response(&[0, 0x16, 3, 1, 0, 5, 9, 9, 9, 9, 9]);
        let Step::Reject { reason, message, .. } = t.step(&Eap::decode(&junk).unwrap(), &NoUsers) else { panic!() };
        assert_eq!(reason, 16);
        assert!(message.starts_with("TLS"), "{message}");
        let (mut t, _) = Tunnel::start(&c, "anonymous", 1).unwrap();
        let fragment = response(&[FLAG_MORE, 0x16]);
        let mut last = None;
        for _ in 0..=MAX_ROUNDS {
            last = Some(t.step(&Eap::decode(&fragment).unwrap(), &NoUsers));
        }
        assert!(matches!(last, Some(Step::Reject { .. })));
    }

    #[test]
    fn result_tlv_parsing() {
        let ok = eap::encode(RESPONSE, 9, Some(EXTENSIONS), &[0x80, 3, 0, 2, 0, 1]);
        assert_eq!(result_tlv(&ok), Some(RESULT_SUCCESS));
        let other_first = eap::encode(RESPONSE, 9, Some(EXTENSIONS), &[0, 7, 0, 1, 0xaa, 0x80, 3, 0, 2, 0, 2]);
        assert_eq!(result_tlv(&other_first), Some(RESULT_FAILURE));
        let truncated = eap::encode(RESPONSE, 9, Some(EXTENSIONS), &[0x80, 3, 0, 9, 0]);
        assert_eq!(result_tlv(&truncated), None);
        assert_eq!(result_tlv(&[]), None);
    }

    #[test]
    fn headerless_inner_packets_get_the_outer_header() {
        assert_eq!(with_header(RESPONSE, 4, &[1, b'b']), vec![2, 4, 0, 6, 1, b'b']);
        let whole = eap::encode(RESPONSE, 7, Some(EXTENSIONS), &[0x80, 3, 0, 2, 0, 1]);
        assert_eq!(with_header(RESPONSE, 4, &whole), whole);
    }
}
