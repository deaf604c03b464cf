//! Hostile challenge States, User-Password values and codes: State opening (MAC, expiry,
//! version and length), password+code splitting and TOTP verification never panic, and a
//! sealed State always opens to what was sealed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_auth::mfa::{ChallengeState, Totp, split_concatenated};

fuzz_target!(|data: &[u8]| {
    let key = [9u8; 32];
    let _ = ChallengeState::open(data, &key, 1_000);
    let _ = split_concatenated(data, ",", 6);
    let _ = split_concatenated(data, "", 8);
    let _ = Totp::default().verify(b"12345678901234567890", &String::from_utf8_lossy(data), 1_000_000, Some(3));
    if let Some((head, tail)) = data.split_first_chunk::<8>() {
        let text = String::from_utf8_lossy(tail).into_owned();
        let text = text.as_str();
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(head);
        let s = ChallengeState { expires: u64::from_be_bytes(*head), nonce, digest: ChallengeState::digest(&[text, text]) };
        let sealed = s.seal(&key);
        assert!(sealed.len() <= 253);
        if let Ok(opened) = ChallengeState::open(&sealed, &key, 0) {
            assert_eq!(opened, s);
        }
    }
});
