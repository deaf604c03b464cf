//! Hostile history files: every replay reader (JSON lines, FreeRADIUS detail, NPS IAS
//! and DTS) reads arbitrary bytes without panicking and with bounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_accounting::Vendor;
use portcullis_radius::Dictionary;
use portcullis_server::replay::{Format, Reader};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let format = match selector % 5 {
        0 => None,
        1 => Some(Format::JsonLines),
        2 => Some(Format::Detail),
        3 => Some(Format::Ias),
        _ => Some(Format::Dts),
    };
    thread_local!(static DICT: Dictionary = Dictionary::builtin());
    DICT.with(|dict| {
        for item in Reader::new(body, format, dict, Vendor::default()) {
            if let Ok(i) = item {
                let _ = i.time();
            }
        }
    });
});
