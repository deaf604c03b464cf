//! Any bytes as a journal segment: decoding stops at the first bad frame, and what
//! decodes re-encodes to the same valid prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_storage::{decode_segment, encode_segment};

fuzz_target!(|data: &[u8]| {
    let (records, valid) = decode_segment(data);
    assert!(valid <= data.len() as u64);
    let again = encode_segment(&records);
    let (records2, _) = decode_segment(&again);
    assert_eq!(records, records2);
});
