//! PEAP reassembly and the TLS tunnel fed with hostile EAP-Responses: each input is a
//! sequence of responses (two-octet length, then bytes), played against one tunnel.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_auth::eap::{self, Credentials, Eap};
use portcullis_auth::mschap::MschapError;
use portcullis_auth::peap::{InnerAuth, PEAP, PeapConfig, Tunnel, TlsVersion};

struct Inner;

impl InnerAuth for Inner {
    fn challenge(&self) -> ([u8; 16], u8) {
        ([3; 16], 1)
    }
    fn credentials(&self, _: &str) -> Credentials {
        Credentials::hash([1; 16])
    }
    fn authorize(&self, _: &str) -> Result<Option<String>, (u32, MschapError, String)> {
        Ok(None)
    }
}

fn config() -> &'static PeapConfig {
    static CONFIG: OnceLock<PeapConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["fuzz.local".into()]).unwrap().self_signed(&key).unwrap();
        PeapConfig::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), TlsVersion::Tls12, TlsVersion::Tls13, 256)
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok((mut tunnel, _start)) = Tunnel::start(config(), "fuzz", 1) else { return };
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        let (body, tail) = tail.split_at(len);
        rest = tail;
        // Half the inputs are wrapped as PEAP responses so reassembly and TLS see them.
        let wrapped;
        let bytes = if body.first().is_some_and(|b| b & 1 == 1) {
            wrapped = eap::encode(eap::RESPONSE, 2, Some(PEAP), &body[1..]);
            &wrapped[..]
        } else {
            body
        };
        let Ok(message) = Eap::decode(bytes) else { continue };
        if let eap::Step::Accept { .. } | eap::Step::Reject { .. } = tunnel.step(&message, &Inner) {
            break;
        }
    }
});
