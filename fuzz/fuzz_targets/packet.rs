//! Any datagram: decode, verify, walk attributes and VSAs, normalise, unhide.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_accounting::{Vendor, normalise};
use portcullis_radius::{Packet, SharedSecret, VerifiedRequest, VerifyPolicy, attr, salt_decrypt, unhide_user_password};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::decode(data) else { return };
    let secret = SharedSecret::new("testing123");
    for a in p.attributes() {
        let _ = a.value.len();
    }
    for v in p.vendor_specific() {
        for s in v.sub_attributes() {
            let _ = s;
        }
    }
    let _ = p.eap_message();
    if let Some(pw) = p.attribute(attr::USER_PASSWORD) {
        let _ = unhide_user_password(pw, &secret, &p.authenticator());
    }
    if let Some(tp) = p.attribute(attr::TUNNEL_PASSWORD) {
        let _ = salt_decrypt(tp, &secret, &p.authenticator());
    }
    let _ = VerifiedRequest::verify(p, &secret, VerifyPolicy::default());
    let trusted = VerifiedRequest::assume_verified_from_storage(p);
    for vendor in [Vendor::Generic, Vendor::Microsoft, Vendor::CiscoAsa, Vendor::Fortinet, Vendor::PaloAlto] {
        let _ = normalise(&trusted, "nas", "192.0.2.1".parse().unwrap(), vendor, 1_700_000_000_000);
    }
});
