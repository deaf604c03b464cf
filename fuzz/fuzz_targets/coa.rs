//! Any datagram read as the answer to a Disconnect-Request: no panic, and nothing is
//! believed unless it is signed with the secret (the fuzzer cannot forge that).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_radius::{Code, Identifier, PacketBuilder, SharedSecret};

fuzz_target!(|data: &[u8]| {
    let secret = SharedSecret::new(b"fuzzing-secret".to_vec());
    let mut b = PacketBuilder::new(Code::DisconnectRequest, Identifier(data.first().copied().unwrap_or(0)));
    b.message_authenticator();
    let request = b.encode_computed_request(&secret).unwrap();
    assert_eq!(portcullis_server::coa::answer(data, &request, &secret), None);
});
