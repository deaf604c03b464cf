//! RFC 2759 §9.2, RFC 3079 §3.5 and FreeRADIUS MS-CHAPv2 vectors; CHAP; Argon2; the cache.

use std::time::{Duration, Instant};

use portcullis_auth::mschap::{
    MschapError, authenticator_response, challenge_hash, error_value, generate_nt_response, hash_nt_password_hash,
    master_key, mppe_keys, nt_password_hash, verify_response,
};
use portcullis_auth::{CredentialCache, hash_password, verify_chap, verify_password};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    hex(s).try_into().unwrap()
}

mod rfc2759 {
    use super::*;

    const AUTH: &str = "5B5D7C7D7B3F2F3E3C2C602132262628";
    const PEER: &str = "21402324255E262A28295F2B3A337C7E";

    #[test]
    fn section_9_2_hash_example() {
        let hash = nt_password_hash("clientPass");
        assert_eq!(hash, arr::<16>("44EBBA8D5312B8D611474411F56989AE"));
        assert_eq!(hash_nt_password_hash(&hash), arr::<16>("41C00C584BD2D91C4017A2A12FA59F3F"));
        assert_eq!(challenge_hash(&arr(PEER), &arr(AUTH), "User"), arr::<8>("D02E4386BCE91226"));
        let nt = generate_nt_response(&arr(AUTH), &arr(PEER), "User", &hash);
        assert_eq!(nt, arr::<24>("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF"));
        assert_eq!(
            authenticator_response(&hash, &nt, &arr(PEER), &arr(AUTH), "User"),
            "S=407A5589115FD0D6209F510FE9C04566932CDA56"
        );
    }

    #[test]
    fn section_9_2_verify_radius_response() {
        let hash = nt_password_hash("clientPass");
        let mut response = vec![0x01, 0x00];
        response.extend_from_slice(&hex(PEER));
        response.extend_from_slice(&[0; 8]);
        response.extend_from_slice(&hex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF"));
        let ok = verify_response(&hash, &arr(AUTH), &response, "User").unwrap();
        assert_eq!(ok.authenticator_response, "S=407A5589115FD0D6209F510FE9C04566932CDA56");
        assert!(verify_response(&nt_password_hash("wrong"), &arr(AUTH), &response, "User").is_none());
        assert!(verify_response(&hash, &arr(AUTH), &response[..49], "User").is_none());
    }

    #[test]
    fn section_6_error_value() {
        let v = error_value(7, MschapError::AuthenticationFailure, true, &[0xab; 16], "Authentication rejected");
        assert_eq!(v[0], 7);
        assert_eq!(
            std::str::from_utf8(&v[1..]).unwrap(),
            "E=691 R=1 C=ABABABABABABABABABABABABABABABAB V=3 M=Authentication rejected"
        );
    }
}

mod rfc3079 {
    use super::*;

    #[test]
    fn section_3_5_master_and_start_keys() {
        let hash = nt_password_hash("clientPass");
        let nt: [u8; 24] = arr("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF");
        assert_eq!(master_key(&hash, &nt), arr::<16>("FDECE3717A8C838CB388E527AE3CDD31"));
        let (send, recv) = mppe_keys(&hash, &nt);
        // Server send = Magic3 start key (the RFC's SendStartKey128); receive = Magic2.
        assert_eq!(send, arr::<16>("8B7CDC149B993A1BA118CB153F56DCCB"));
        assert_eq!(recv, arr::<16>("D5F0E9521E3EA9589645E86051C82226"));
    }
}

mod freeradius {
    use super::*;

    /// `example\john` / `secret`: only the user name without its domain verifies.
    #[test]
    fn domain_is_stripped_from_the_challenge_hash() {
        let hash = nt_password_hash("secret");
        let challenge: [u8; 16] = arr("16d2833f4239256dd2b2bb26f2ecb2a3");
        let response =
            hex("0001502feeee9495a353cddbd1efc40072820000000000000000e866286bb30d0215ed16cf425b6a29d206667a9853e23ca4");
        let ok = verify_response(&hash, &challenge, &response, "example\\john").unwrap();
        assert_eq!(ok.authenticator_response, "S=68649B6763301DD65FC2559F2D172943196EA88A");
        assert!(verify_response(&hash, &challenge, &response, "example\\john\\x").is_none());
    }
}

#[test]
fn rfc2865_section_7_2_chap() {
    let request = hex(
        "010100472aee86f08d0d55969ca5978e0d3367a20108666c6f707379031316e97557c316185895f293ff63440772750406c0a80110050600000014060600000002070600000001",
    );
    let authenticator = &request[4..20];
    let chap = &request[30..47];
    assert_eq!(chap[0], 0x16);
    assert!(verify_chap(chap, b"arctangent", authenticator));
    assert!(!verify_chap(chap, b"arctangenT", authenticator));
    assert!(!verify_chap(&chap[..10], b"arctangent", authenticator));
}

#[test]
fn argon2_round_trip() {
    let phc = hash_password(b"hello", &[7; 16]).unwrap();
    assert!(phc.starts_with("$argon2id$"));
    assert!(verify_password(&phc, b"hello").unwrap());
    assert!(!verify_password(&phc, b"hellO").unwrap());
    assert!(verify_password("not a hash", b"x").is_err());
}

#[test]
fn credential_cache_honours_generation_ttl_and_password() {
    let t0 = Instant::now();
    let mut c = CredentialCache::new([9; 32], Duration::from_secs(60), 2);
    c.insert(t0, "bob", b"hello", 1);
    assert!(c.check(t0, "bob", b"hello", 1));
    assert!(!c.check(t0, "bob", b"hellO", 1));
    assert!(!c.check(t0, "bob", b"hello", 2), "a password change bumps the generation");
    assert!(!c.check(t0 + Duration::from_secs(61), "bob", b"hello", 1));
    c.insert(t0, "alice", b"a", 1);
    c.insert(t0, "carol", b"c", 1);
    assert!(c.len() <= 2);
    c.forget("bob");
    assert!(!c.check(t0, "bob", b"hello", 1));
}
