//! Hostile history files: every replay reader (JSON lines, FreeRADIUS detail, NPS IAS
//! and DTS) reads arbitrary bytes without panicking and with bounded memory, with local
//! times in UTC or in a zone with daylight saving.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_accounting::Vendor;
use portcullis_radius::Dictionary;
use portcullis_server::replay::{Format, Reader};
use portcullis_server::zone::Zone;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let format = match selector % 5 {
        0 => None,
        1 => Some(Format::JsonLines),
        2 => Some(Format::Detail),
        3 => Some(Format::Ias),
        _ => Some(Format::Dts),
    };
    let zone = if selector & 0x80 == 0 { Zone::utc() } else { Zone::parse("Europe/Berlin").unwrap_or_default() };
    thread_local!(static DICT: Dictionary = Dictionary::builtin());
    DICT.with(|dict| {
        for item in Reader::new(body, format, dict, Vendor::default()).with_zone(zone) {
            if let Ok(i) = item {
                let _ = i.time();
            }
        }
    });
});
