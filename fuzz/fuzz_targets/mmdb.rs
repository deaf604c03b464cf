//! Hostile MMDB files: opening and looking addresses up in an arbitrary database never
//! lets a panic escape (a corrupt or malicious geolocation file is an error or an
//! unknown location, never a crash of the thread that asked).
//!
//! The MMDB reader crate indexes its buffer without bounds checks and panics on
//! malformed files; `GeoDb` contains those panics. The default hook would abort on
//! them before they are contained, so this target installs a silent one: any panic
//! that escapes `GeoDb` still unwinds out of the target and is reported as a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_geo::GeoDb;

fuzz_target!(|data: &[u8]| {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|i| if std::env::var_os("SHOW").is_some() { eprintln!("{i}") })));
    if let Ok(db) = GeoDb::from_bytes(data.to_vec()) {
        for ip in ["1.1.1.1", "192.0.2.1", "203.0.113.9", "2001:db8::1", "::1", "255.255.255.254"] {
            let _ = db.lookup_now(ip.parse().unwrap());
        }
        let _ = db.info();
    }
});
