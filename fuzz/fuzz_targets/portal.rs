//! Hostile portal input: an API cursor never panics and one that decodes encodes back
//! to itself; a CSV field is always one field that no spreadsheet runs as a formula.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_web::{Cursor, csv_field};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(c) = Cursor::decode(&text) {
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
    }
    let field = csv_field(&text);
    let inner = field.strip_prefix('"').and_then(|f| f.strip_suffix('"')).unwrap_or(&field);
    assert!(!inner.starts_with(['=', '+', '-', '@', '\t', '\r', '\0']), "{field:?}");
    if field.contains([',', '\n', '\r']) {
        assert!(field.starts_with('"') && field.ends_with('"'));
        assert!(!inner.replace("\"\"", "").contains('"'));
    }
});
