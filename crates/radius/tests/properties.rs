//! Property tests: whatever the builder encodes decodes to the same attributes, and
//! no input makes the decoder panic.

use portcullis_radius::{
    Authenticator, Code, Identifier, Packet, PacketBuilder, SharedSecret, VerifiedRequest, VerifyPolicy,
    hide_user_password, unhide_user_password,
};
use proptest::prelude::*;

fn attributes() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    prop::collection::vec((1u8..=255, prop::collection::vec(any::<u8>(), 0..=253)), 0..12)
        .prop_filter("message authenticator is placed by the builder", |v| v.iter().all(|(t, _)| *t != 80))
}

proptest! {
    #[test]
    fn decode_encode_round_trip(id in any::<u8>(), attrs in attributes(), secret in prop::collection::vec(any::<u8>(), 1..64)) {
        let s = SharedSecret::new(secret);
        let mut b = PacketBuilder::new(Code::AccountingRequest, Identifier(id));
        let mut total = 20;
        for (t, v) in &attrs {
            total += v.len() + 2;
            b.attribute(*t, v).unwrap();
        }
        let encoded = b.encode_computed_request(&s);
        if total > 4095 {
            prop_assert!(encoded.is_err());
            return Ok(());
        }
        let bytes = encoded.unwrap();
        let p = Packet::decode(&bytes).unwrap();
        prop_assert_eq!(p.identifier(), Identifier(id));
        let decoded: Vec<(u8, Vec<u8>)> = p.attributes().map(|a| (a.typ, a.value.to_vec())).collect();
        prop_assert_eq!(&decoded, &attrs);
        VerifiedRequest::verify(p, &s, VerifyPolicy::default()).unwrap();
        // Re-encode from the decoded view: identical octets.
        let mut again = PacketBuilder::new(Code::AccountingRequest, Identifier(id));
        for a in p.attributes() {
            again.attribute(a.typ, a.value).unwrap();
        }
        prop_assert_eq!(again.encode_computed_request(&s).unwrap(), bytes);
    }

    #[test]
    fn decoder_never_panics(data in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(p) = Packet::decode(&data) {
            for a in p.attributes() {
                let _ = a.value.len();
            }
            for v in p.vendor_specific() {
                for s in v.sub_attributes() {
                    let _ = s;
                }
            }
            let _ = VerifiedRequest::verify(p, &SharedSecret::new("s"), VerifyPolicy::default());
        }
    }

    #[test]
    fn user_password_round_trip(pw in prop::collection::vec(1u8..=255, 0..=128), auth in any::<[u8; 16]>()) {
        let s = SharedSecret::new("testing123");
        let a = Authenticator(auth);
        let hidden = hide_user_password(&pw, &s, &a).unwrap();
        prop_assert_eq!(hidden.len() % 16, 0);
        prop_assert_eq!(&unhide_user_password(&hidden, &s, &a).unwrap()[..], &pw[..]);
    }
}
