//! Any text read as a stored push target, and any URL given as a user's own target: no
//! panic, a target round-trips through its stored form, and one that passes the check
//! starts with the configured prefix at a boundary and names an http(s) URL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_server::auth::target::PushTarget;
use portcullis_server::config::PushConfig;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let push = PushConfig {
        webhook_url: String::new(),
        target_prefixes: vec!["https://ntfy.example.com/".into()],
        webhook_template: String::new(),
        webhook_headers: Default::default(),
        public_url: "https://p".into(),
        wait_seconds: 55,
        webhook_timeout_seconds: 10,
        max_unapproved: 3,
        fatigue_window_seconds: 600,
        for_pap: false,
        number_matching: false,
        number_prompt: String::new(),
    };
    if let Some(t) = PushTarget::parse(&text) {
        assert_eq!(PushTarget::parse(&t.stored()), Some(t.clone()));
        let _ = t.check(&push);
    }
    for t in [PushTarget::Ntfy(text.to_string()), PushTarget::Webhook(text.to_string())] {
        if t.check(&push).is_ok() {
            assert!(text.starts_with("https://ntfy.example.com/"), "{text:?}");
        }
    }
});
