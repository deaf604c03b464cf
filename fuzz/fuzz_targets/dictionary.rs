//! Any dictionary text, with an include that returns the same text (depth-limited).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_radius::Dictionary;

static BUILTIN: OnceLock<Dictionary> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut d = BUILTIN.get_or_init(Dictionary::builtin).clone();
    let owned = text.to_string();
    let mut include = |_: &str| Some(("fuzz".to_string(), owned.clone()));
    let _ = d.parse_str("fuzz", text, &mut include);
});
