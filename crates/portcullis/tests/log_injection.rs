//! A User-Name with a line break in it (sent by pyrad and radclient) cannot forge a
//! line in the server log (text or JSON) or in the NPS log files.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{SECRET, Server, add_user, python, radclient};

const HOSTILE: &str = "alice\nFORGED line";

/// Ten wrong passwords for a user with the hostile name: pyrad sends the first,
/// radclient the rest (its double-quoted strings read `\n` as a line break). Ten
/// failures raise a brute-force alert, whose warning names the user (lower-cased, as
/// user names are canonical) in the server log.
fn fail_ten_times(s: &Server) {
    add_user(s, HOSTILE, "wonderland", &[], &[]);
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pyrad_auth.py"))
        .args(["127.0.0.1", &s.auth_port.to_string(), SECRET])
        .arg(common::dictionary_dir())
        .args(["pap", HOSTILE, "guess"])
        .output()
        .unwrap();
    let reply: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(reply["code"], "reject", "{reply}");
    let one = "User-Name = \"alice\\nFORGED line\"\nUser-Password = \"guess\"\nMessage-Authenticator = 0x00\n";
    let input = [one; 9].join("\n");
    let (_, text) = radclient(s.auth_addr(), "auth", SECRET, &input);
    assert_eq!(text.matches("Received Access-Reject").count(), 9, "{text}");
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_no_forged_line(what: &str, text: &str) {
    for line in text.lines() {
        assert!(!line.to_lowercase().starts_with("forged"), "{what}: a forged line: {text}");
    }
}

#[test]
fn a_line_break_in_user_name_forges_no_line_in_text_or_nps_logs() {
    for format in ["ias", "odbc", "dts"] {
        let s = Server::start(&format!("[nps_log]\nformat = \"{format}\"\n"));
        fail_ten_times(&s);
        let nps = wait_for(&format!("{format}: 20 NPS records"), Duration::from_secs(10), || {
            let text: String = std::fs::read_dir(s.dir.path().join("data/nps"))
                .ok()?
                .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                .collect();
            (text.lines().count() >= 20).then_some(text)
        });
        assert_eq!(nps.lines().count(), 20, "{format}: one line per record: {nps}");
        assert_no_forged_line(format, &nps);
        match format {
            // IAS writes such a name in hex.
            "ias" => assert!(nps.contains(",0x616c6963650a464f52474544206c696e65,"), "{nps}"),
            "odbc" => assert!(nps.contains(",\"alice\\nFORGED line\","), "{nps}"),
            _ => assert!(nps.contains("<User-Name data_type=\"1\">alice\\nFORGED line</User-Name>"), "{nps}"),
        }
        let log = wait_for("the brute-force warning", Duration::from_secs(10), || {
            let log = s.log();
            log.contains("brute_force").then_some(log)
        });
        assert_no_forged_line("server log", &log);
        assert!(log.to_lowercase().contains("alice\\nforged line"), "the name is in the log, escaped: {log}");
    }
}

#[test]
fn the_json_log_stays_one_object_per_line() {
    let mut s = Server::start("");
    s.stop();
    let config =
        std::fs::read_to_string(&s.config).unwrap().replace("level = \"warn\"", "level = \"info\"\nformat = \"json\"");
    std::fs::write(&s.config, config).unwrap();
    s.spawn();
    fail_ten_times(&s);
    let log = wait_for("the brute-force warning", Duration::from_secs(10), || {
        let log = s.log();
        log.contains("brute_force").then_some(log)
    });
    assert_no_forged_line("json log", &log);
    let mut named = 0;
    for line in log.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        named += usize::from(event["fields"]["user"].as_str().is_some_and(|u| u.eq_ignore_ascii_case(HOSTILE)));
    }
    assert!(named > 0, "the alert names the user, line break and all: {log}");
}
