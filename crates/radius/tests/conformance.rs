//! Conformance tests named after RFC sections, using the RFCs' own example packets.
//! Vector sources are listed in `tests/vectors/README.md`.

use portcullis_radius::{
    Authenticator, Code, Error, Identifier, Packet, PacketBuilder, SharedSecret, VerifiedRequest, VerifyPolicy, attr,
    unhide_user_password, verify_message_authenticator, verify_response_authenticator,
};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn secret() -> SharedSecret {
    SharedSecret::new("xyzzy5461")
}

mod rfc2865 {
    use super::*;

    const PAP_REQUEST: &str = "010000380f403f9473978057bd83d5cb98f4227a01066e656d6f02120dbe708d93d413ce3196e43f782a0aee0406c0a80110050600000003";
    const PAP_ACCEPT: &str = "0200002686fe220e7624ba2a1005f6bf9b55e0b20606000000010f06000000000e06c0a80103";
    const CHAP_REQUEST: &str = "010100472aee86f08d0d55969ca5978e0d3367a20108666c6f707379031316e97557c316185895f293ff63440772750406c0a80110050600000014060600000002070600000001";
    const CHAP_ACCEPT: &str = "0201003815efbc7dab26cfa3dc34d9c03c8601a40606000000020706000000010806fffffffe0a06000000020d06000000010c06000005dc";
    const CHALLENGE_REQUEST: &str = "01020039f3a47a1f6a6d76710b947ab93041a03901076d6f707379021233657573778289b570885e15084825c50406c0a80110050600000007";
    const CHALLENGE: &str = "0b02004e36f3c8764ae8c71157403c0c71ff9c4512304368616c6c656e67652033323736393433302e2020456e74657220726573706f6e73652061742070726f6d70742e180a3332373639343330";
    const CHALLENGE_ANSWER_AS_PRINTED: &str = "01030043b122556d428a13d0d6253807c457ecf001076d6f7073790212692c1f205fc081b919b95195f561a5810406c0a8011005060000000718103332373639343330";
    const CHALLENGE_REJECT: &str = "03030014a42f4fca45916c4e09c8340f9e746aa0";

    #[test]
    fn section_7_1_pap_request() {
        let bytes = hex(PAP_REQUEST);
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.code(), Code::AccessRequest);
        assert_eq!(p.identifier(), Identifier(0));
        assert_eq!(p.attribute(attr::USER_NAME), Some(&b"nemo"[..]));
        let hidden = p.attribute(attr::USER_PASSWORD).unwrap();
        let password = unhide_user_password(hidden, &secret(), &p.authenticator()).unwrap();
        assert_eq!(&password[..], b"arctangent");
        assert_eq!(p.attribute(attr::NAS_IP_ADDRESS), Some(&[192, 168, 1, 16][..]));
        assert_eq!(p.attribute(attr::NAS_PORT), Some(&[0, 0, 0, 3][..]));
    }

    #[test]
    fn section_7_1_pap_accept_authenticator() {
        let req = hex(PAP_REQUEST);
        let req = Packet::decode(&req).unwrap();
        let bytes = hex(PAP_ACCEPT);
        let resp = Packet::decode(&bytes).unwrap();
        verify_response_authenticator(&resp, &req.authenticator(), &secret()).unwrap();
        // Re-encoding the same attributes yields the RFC's octets exactly.
        let mut b = PacketBuilder::new(Code::AccessAccept, Identifier(0));
        for a in resp.attributes() {
            b.attribute(a.typ, a.value).unwrap();
        }
        assert_eq!(b.encode_response(&req.authenticator(), &secret()).unwrap(), bytes);
    }

    #[test]
    fn section_7_2_chap_request() {
        let bytes = hex(CHAP_REQUEST);
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.attribute(attr::USER_NAME), Some(&b"flopsy"[..]));
        let chap = p.attribute(attr::CHAP_PASSWORD).unwrap();
        assert_eq!(chap.len(), 17);
        // CHAP response = MD5(ident ‖ password ‖ challenge), challenge = Request Authenticator.
        use md5::{Digest, Md5};
        let mut h = Md5::new();
        h.update([chap[0]]);
        h.update(b"arctangent");
        h.update(p.authenticator().0);
        assert_eq!(&h.finalize()[..], &chap[1..]);
    }

    #[test]
    fn section_7_2_chap_accept_authenticator_with_printed_framed_routing() {
        let req = hex(CHAP_REQUEST);
        let req = Packet::decode(&req).unwrap();
        let bytes = hex(CHAP_ACCEPT);
        let resp = Packet::decode(&bytes).unwrap();
        // Erratum: the annotation says Framed-Routing None (0); the octets carry 2.
        assert_eq!(resp.attribute(10), Some(&[0, 0, 0, 2][..]));
        verify_response_authenticator(&resp, &req.authenticator(), &secret()).unwrap();
    }

    #[test]
    fn section_7_2_erratum_annotated_framed_routing_fails_authenticator() {
        let req = hex(CHAP_REQUEST);
        let req = Packet::decode(&req).unwrap();
        let mut bytes = hex(CHAP_ACCEPT);
        // Framed-Routing (10) value is at offset 20 + 6 + 6 + 6 + 2: set it to the annotated 0.
        let at = bytes.windows(2).position(|w| w == [0x0a, 0x06]).unwrap();
        bytes[at + 5] = 0;
        let resp = Packet::decode(&bytes).unwrap();
        assert_eq!(verify_response_authenticator(&resp, &req.authenticator(), &secret()), Err(Error::BadAuthenticator));
    }

    #[test]
    fn section_7_3_challenge_round_trip() {
        let req = hex(CHALLENGE_REQUEST);
        let req = Packet::decode(&req).unwrap();
        let pw =
            unhide_user_password(req.attribute(attr::USER_PASSWORD).unwrap(), &secret(), &req.authenticator()).unwrap();
        assert_eq!(&pw[..], b"challenge");
        let bytes = hex(CHALLENGE);
        let ch = Packet::decode(&bytes).unwrap();
        assert_eq!(ch.code(), Code::AccessChallenge);
        verify_response_authenticator(&ch, &req.authenticator(), &secret()).unwrap();
        assert_eq!(ch.attribute(attr::STATE), Some(&b"32769430"[..]));
        assert_eq!(ch.attribute(attr::REPLY_MESSAGE), Some(&b"Challenge 32769430.  Enter response at prompt."[..]));
    }

    #[test]
    fn section_7_3_erratum_printed_answer_is_malformed() {
        let bytes = hex(CHALLENGE_ANSWER_AS_PRINTED);
        assert!(matches!(Packet::decode(&bytes), Err(Error::AttributeOverrun { typ: 24, len: 16, .. })));
    }

    #[test]
    fn section_7_3_corrected_answer_and_reject() {
        let mut bytes = hex(CHALLENGE_ANSWER_AS_PRINTED);
        let at = bytes.len() - 10;
        assert_eq!(&bytes[at..at + 2], &[0x18, 0x10]);
        bytes[at + 1] = 0x0a;
        let answer = Packet::decode(&bytes).unwrap();
        assert_eq!(answer.attribute(attr::STATE), Some(&b"32769430"[..]));
        let pw =
            unhide_user_password(answer.attribute(attr::USER_PASSWORD).unwrap(), &secret(), &answer.authenticator())
                .unwrap();
        assert_eq!(&pw[..], b"99101462");
        let reject = hex(CHALLENGE_REJECT);
        let reject = Packet::decode(&reject).unwrap();
        verify_response_authenticator(&reject, &answer.authenticator(), &secret()).unwrap();
    }

    #[test]
    fn section_3_padding_beyond_length_is_ignored() {
        let mut bytes = hex(PAP_REQUEST);
        bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.as_bytes().len(), 56);
    }

    #[test]
    fn section_3_shorter_than_length_is_discarded() {
        let bytes = hex(PAP_REQUEST);
        assert_eq!(Packet::decode(&bytes[..50]), Err(Error::Truncated { length: 56, received: 50 }));
    }

    #[test]
    fn section_3_length_bounds() {
        let mut bytes = hex(PAP_REQUEST);
        bytes[2] = 0;
        bytes[3] = 19;
        assert!(matches!(Packet::decode(&bytes), Err(Error::BadLength { length: 19, .. })));
        assert!(matches!(Packet::decode(&bytes[..19]), Err(Error::TooShort { len: 19 })));
        let mut big = vec![0u8; 5000];
        big[0] = 1;
        big[2..4].copy_from_slice(&4097u16.to_be_bytes());
        assert!(matches!(Packet::decode(&big), Err(Error::BadLength { length: 4097, .. })));
    }

    #[test]
    fn section_5_attribute_length_below_two_is_malformed() {
        let mut bytes = hex(PAP_REQUEST);
        bytes[21] = 1;
        assert!(matches!(Packet::decode(&bytes), Err(Error::AttributeTooShort { typ: 1, len: 1, .. })));
    }
}

mod rfc2866 {
    use super::*;

    #[test]
    fn section_3_accounting_length_limit_is_4095() {
        let mut big = vec![0u8; 4096];
        big[0] = 4;
        big[2..4].copy_from_slice(&4096u16.to_be_bytes());
        assert!(matches!(Packet::decode(&big), Err(Error::BadLength { max: 4095, .. })));
    }

    #[test]
    fn section_3_request_authenticator() {
        let s = SharedSecret::new("testing123");
        let mut b = PacketBuilder::new(Code::AccountingRequest, Identifier(7));
        b.attribute(attr::ACCT_STATUS_TYPE, &1u32.to_be_bytes()).unwrap();
        b.attribute(attr::USER_NAME, b"alice").unwrap();
        let bytes = b.encode_computed_request(&s).unwrap();
        let p = Packet::decode(&bytes).unwrap();
        VerifiedRequest::verify(p, &s, VerifyPolicy::default()).unwrap();
        let wrong = SharedSecret::new("wrong");
        assert_eq!(VerifiedRequest::verify(p, &wrong, VerifyPolicy::default()).unwrap_err(), Error::BadAuthenticator);
    }

    #[test]
    fn section_3_response_authenticator() {
        let s = SharedSecret::new("testing123");
        let req = Authenticator([9; 16]);
        let bytes = PacketBuilder::new(Code::AccountingResponse, Identifier(7)).encode_response(&req, &s).unwrap();
        assert_eq!(bytes.len(), 20);
        verify_response_authenticator(&Packet::decode(&bytes).unwrap(), &req, &s).unwrap();
    }

    #[test]
    fn message_authenticator_on_accounting_request_uses_zero_authenticator() {
        let s = SharedSecret::new("testing123");
        let mut b = PacketBuilder::new(Code::AccountingRequest, Identifier(1));
        b.attribute(attr::ACCT_STATUS_TYPE, &2u32.to_be_bytes()).unwrap().message_authenticator();
        let bytes = b.encode_computed_request(&s).unwrap();
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.attributes().next().unwrap().typ, attr::MESSAGE_AUTHENTICATOR);
        let v = VerifiedRequest::verify(p, &s, VerifyPolicy::default()).unwrap();
        assert!(v.had_message_authenticator());
    }
}

mod rfc5997 {
    use super::*;

    const STATUS_SERVER: &str = "0cda00268a54f4686fb394c52866e302185d062350125a665e2e1e8411f3e243822097c84fa3";
    const ACCEPT: &str = "02da0014ef0d552a4bf2d693ec2b6fe8b5411d66";

    #[test]
    fn section_6_1_status_server_message_authenticator() {
        let bytes = hex(STATUS_SERVER);
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.code(), Code::StatusServer);
        assert!(verify_message_authenticator(&p, &secret(), None).unwrap());
        VerifiedRequest::verify(p, &secret(), VerifyPolicy::default()).unwrap();
    }

    #[test]
    fn section_6_1_response_authenticator() {
        let req = hex(STATUS_SERVER);
        let req = Packet::decode(&req).unwrap();
        let bytes = hex(ACCEPT);
        let resp = Packet::decode(&bytes).unwrap();
        verify_response_authenticator(&resp, &req.authenticator(), &secret()).unwrap();
        let encoded = PacketBuilder::new(Code::AccessAccept, Identifier(0xda))
            .encode_response(&req.authenticator(), &secret())
            .unwrap();
        assert_eq!(encoded, bytes);
    }

    #[test]
    fn section_3_status_server_without_message_authenticator_is_refused() {
        let bytes = PacketBuilder::new(Code::StatusServer, Identifier(1))
            .encode_with_authenticator(Authenticator([3; 16]), &secret())
            .unwrap();
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(
            VerifiedRequest::verify(p, &secret(), VerifyPolicy::default()).unwrap_err(),
            Error::MissingMessageAuthenticator
        );
    }

    #[test]
    fn section_6_1_tampered_message_authenticator_is_refused() {
        let mut bytes = hex(STATUS_SERVER);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(verify_message_authenticator(&p, &secret(), None), Err(Error::BadMessageAuthenticator));
    }
}

mod rfc3579 {
    use super::*;

    #[test]
    fn section_3_2_response_message_authenticator_first_and_valid() {
        let s = SharedSecret::new("testing123");
        let req = Authenticator([0x42; 16]);
        let mut b = PacketBuilder::new(Code::AccessReject, Identifier(5));
        b.attribute(attr::REPLY_MESSAGE, b"no").unwrap().message_authenticator();
        let bytes = b.encode_response(&req, &s).unwrap();
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.attributes().next().unwrap().typ, attr::MESSAGE_AUTHENTICATOR);
        verify_response_authenticator(&p, &req, &s).unwrap();
        assert!(verify_message_authenticator(&p, &s, Some(req)).unwrap());
    }

    #[test]
    fn section_3_1_eap_message_split_and_join() {
        let s = SharedSecret::new("testing123");
        let eap: Vec<u8> = (0..700u32).map(|i| i as u8).collect();
        let mut b = PacketBuilder::new(Code::AccessChallenge, Identifier(5));
        b.eap_message(&eap).unwrap();
        let bytes = b.encode_response(&Authenticator([1; 16]), &s).unwrap();
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.attributes_of(attr::EAP_MESSAGE).count(), 3);
        assert_eq!(p.eap_message().unwrap(), eap);
        assert!(p.has_attribute(attr::MESSAGE_AUTHENTICATOR));
    }

    #[test]
    fn access_request_policy() {
        let s = SharedSecret::new("testing123");
        let mut b = PacketBuilder::new(Code::AccessRequest, Identifier(1));
        b.attribute(attr::USER_NAME, b"bob").unwrap();
        let plain = b.encode_with_authenticator(Authenticator([7; 16]), &s).unwrap();
        let p = Packet::decode(&plain).unwrap();
        let strict = VerifyPolicy::default();
        let lax = VerifyPolicy { require_message_authenticator: false, limit_proxy_state: true };
        assert_eq!(VerifiedRequest::verify(p, &s, strict).unwrap_err(), Error::MissingMessageAuthenticator);
        VerifiedRequest::verify(p, &s, lax).unwrap();
        b.attribute(attr::PROXY_STATE, b"x").unwrap();
        let proxied = b.encode_with_authenticator(Authenticator([7; 16]), &s).unwrap();
        let p = Packet::decode(&proxied).unwrap();
        assert_eq!(VerifiedRequest::verify(p, &s, lax).unwrap_err(), Error::MissingMessageAuthenticator);
        b.message_authenticator();
        let signed = b.encode_with_authenticator(Authenticator([7; 16]), &s).unwrap();
        VerifiedRequest::verify(Packet::decode(&signed).unwrap(), &s, strict).unwrap();
    }
}

mod rfc2868 {
    use portcullis_radius::{salt_decrypt, salt_encrypt};

    use super::*;

    #[test]
    fn section_3_5_tunnel_password_round_trip() {
        let s = SharedSecret::new("testing123");
        let auth = Authenticator([0x11; 16]);
        let enc = salt_encrypt(b"tunnel-secret", &s, &auth, [0x12, 0x34]).unwrap();
        assert_eq!(enc[0] & 0x80, 0x80, "salt MSB must be set");
        assert_eq!((enc.len() - 2) % 16, 0);
        assert_eq!(&salt_decrypt(&enc, &s, &auth).unwrap()[..], b"tunnel-secret");
        assert!(salt_decrypt(&enc[..5], &s, &auth).is_err());
    }

    #[test]
    fn rfc2548_mppe_key_is_32_octets_plus_padding() {
        let s = SharedSecret::new("testing123");
        let key = [0xab; 32];
        let enc = salt_encrypt(&key, &s, &Authenticator([0; 16]), [0x80, 1]).unwrap();
        assert_eq!(enc.len(), 2 + 48);
        assert_eq!(&salt_decrypt(&enc, &s, &Authenticator([0; 16])).unwrap()[..], &key);
    }
}

mod vendor_specific {
    use super::*;

    #[test]
    fn several_sub_attributes_in_one_vsa() {
        let s = SharedSecret::new("testing123");
        let mut b = PacketBuilder::new(Code::AccountingRequest, Identifier(1));
        b.vendor_attributes(311, &[(34, b"LAPTOP-1"), (35, b"MSRASV5.20")]).unwrap();
        b.vendor_attribute(9, 1, b"ip:source-ip=203.0.113.9").unwrap();
        let bytes = b.encode_computed_request(&s).unwrap();
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.vendor_attribute(311, 34), Some(&b"LAPTOP-1"[..]));
        assert_eq!(p.vendor_attribute(311, 35), Some(&b"MSRASV5.20"[..]));
        assert_eq!(p.vendor_attribute(9, 1), Some(&b"ip:source-ip=203.0.113.9"[..]));
        assert_eq!(p.vendor_attribute(9, 2), None);
    }

    #[test]
    fn malformed_sub_attribute_is_reported_not_panicking() {
        let v = portcullis_radius::VendorSpecific::parse(&[0, 0, 1, 55, 1, 9, 0]).unwrap();
        let items: Vec<_> = v.sub_attributes().collect();
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
        assert!(portcullis_radius::VendorSpecific::parse(&[1, 0, 0, 1]).is_err());
    }
}
