//! Any EAP bytes: decoding, then a whole EAP-MSCHAPv2 conversation fed with them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_auth::eap::{self, Credentials, Eap};

fuzz_target!(|data: &[u8]| {
    let Ok(first) = Eap::decode(data) else { return };
    let identity = eap::encode(eap::RESPONSE, first.id, Some(eap::IDENTITY), first.data);
    let Ok(identity) = Eap::decode(&identity) else { return };
    let Some((mut conversation, _)) = eap::start(&identity, [7; 16], 1, "fuzz") else { return };
    for chunk in data.chunks(64) {
        let Ok(message) = Eap::decode(chunk) else { continue };
        let _ = eap::step(
            &mut conversation,
            &message,
            |_| Credentials::hash([1; 16]),
            || Ok(Some("p".into())),
        );
    }
});
