//! CEF: any text read back strictly without a panic, and any user name and message
//! formatted into a line within its byte budget that reads back to the same values
//! whenever nothing had to be cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_export::cef;
use portcullis_storage::{Alert, AlertEvent};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = cef::read(&text);
    let (user, message) = text.split_once('\u{0}').unwrap_or((&text, "m"));
    let budget = 400 + usize::from(data.first().copied().unwrap_or(0)) * 8;
    let event = AlertEvent {
        seq: 1,
        trigger: "new".into(),
        time_ms: 0,
        alert: Alert {
            id: 1,
            kind: "brute_force".into(),
            severity: "medium".into(),
            user: user.into(),
            created_at: String::new(),
            updated_at: String::new(),
            event_time: String::new(),
            last_event_time: String::new(),
            status: "open".into(),
            classification: None,
            message: message.into(),
            evidence: serde_json::Value::Null,
            count: 1,
            mitre: String::new(),
            ip: None,
            comments: Vec::new(),
        },
    };
    let line = cef::alert(&event, "0", None, budget);
    assert!(line.text.len() <= budget);
    assert!(!line.text.contains(['\r', '\n']));
    let read = cef::read(&line.text).expect("a formatted line reads back");
    assert_eq!(read.field("cs5"), "alert-1");
    if !line.truncated {
        // Control characters other than CR and LF travel as spaces.
        let expected: String =
            user.chars().map(|c| if c.is_control() && c != '\r' && c != '\n' { ' ' } else { c }).collect();
        assert_eq!(read.field("suser"), expected);
    }
});
