//! Decode, verify and encode of a typical 12-attribute Accounting-Request.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_radius::{Code, Identifier, Packet, PacketBuilder, SharedSecret, VerifiedRequest, VerifyPolicy, attr};

fn typical_stop(secret: &SharedSecret) -> Vec<u8> {
    let mut b = PacketBuilder::new(Code::AccountingRequest, Identifier(7));
    let int = |v: u32| v.to_be_bytes();
    b.attribute(attr::ACCT_STATUS_TYPE, &int(2)).unwrap();
    b.attribute(attr::USER_NAME, b"CONTOSO\\alice").unwrap();
    b.attribute(attr::NAS_IP_ADDRESS, &[10, 0, 0, 1]).unwrap();
    b.attribute(attr::NAS_PORT, &int(17)).unwrap();
    b.attribute(attr::ACCT_SESSION_ID, b"0000A1B2C3D4").unwrap();
    b.attribute(attr::FRAMED_IP_ADDRESS, &[10, 8, 0, 5]).unwrap();
    b.attribute(attr::CALLING_STATION_ID, b"198.51.100.7").unwrap();
    b.attribute(attr::EVENT_TIMESTAMP, &int(1_700_000_000)).unwrap();
    b.attribute(attr::ACCT_SESSION_TIME, &int(3600)).unwrap();
    b.attribute(attr::ACCT_INPUT_OCTETS, &int(123_456)).unwrap();
    b.attribute(attr::ACCT_OUTPUT_OCTETS, &int(654_321)).unwrap();
    b.attribute(attr::ACCT_TERMINATE_CAUSE, &int(1)).unwrap();
    b.encode_computed_request(secret).unwrap()
}

fn codec(c: &mut Criterion) {
    let secret = SharedSecret::new("a-reasonably-long-shared-secret");
    let bytes = typical_stop(&secret);
    c.bench_function("decode 12-attribute Accounting-Request", |b| {
        b.iter(|| Packet::decode(black_box(&bytes)).unwrap().attributes().count())
    });
    c.bench_function("decode + verify 12-attribute Accounting-Request", |b| {
        b.iter(|| {
            let p = Packet::decode(black_box(&bytes)).unwrap();
            VerifiedRequest::verify(p, &secret, VerifyPolicy::default()).unwrap().identifier()
        })
    });
    c.bench_function("encode 12-attribute Accounting-Request", |b| b.iter(|| typical_stop(black_box(&secret))));
    let request = Packet::decode(&bytes).unwrap().authenticator();
    c.bench_function("encode Accounting-Response", |b| {
        b.iter(|| {
            PacketBuilder::new(Code::AccountingResponse, Identifier(7)).encode_response(&request, &secret).unwrap()
        })
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
