//! SIGHUP reloads the configuration (secret rollover under load, a bad file refused),
//! counters survive a graceful restart, and auth.log is reopened after it was moved.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{SECRET, Server, radclient, radtest, require};

const NEW_SECRET: &str = "a-new-secret-of-24-chars";

fn start(i: u32) -> String {
    format!("Acct-Status-Type = Start\nUser-Name = \"u{i}\"\nNAS-IP-Address = 10.0.0.1\nAcct-Session-Id = \"r{i}\"\n")
}

fn hup(s: &Server) {
    let pid = s.child.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
}

/// Rewrites the configuration file and sends SIGHUP; waits for the log to say it.
fn reload(s: &Server, edit: impl Fn(&str) -> String, expect: &str) {
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, edit(&text)).unwrap();
    let before = s.log().matches(expect).count();
    hup(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.log().matches(expect).count() == before {
        assert!(Instant::now() < deadline, "no {expect:?} in the log:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stats(s: &Server) -> serde_json::Value {
    // Counters reach storage every 2 s.
    std::thread::sleep(Duration::from_millis(2500));
    serde_json::from_slice(&s.cli(&["stats", "--format", "json"]).stdout).unwrap()
}

#[test]
fn a_secret_rolls_over_under_load_without_losing_or_repeating_a_request() {
    require("radclient");
    let mut s = Server::start("");
    s.config_log_level("info");
    assert!(radclient(s.addr(), "acct", SECRET, &start(1)).0);
    let ack_log = s.dir.path().join("acked.txt");
    let load = ["--mode", "acct-start", "--requests", "20000", "--window", "16", "--rate", "4000", "--run-id", "roll"];
    let generator = s.bench(&[&load[..], &["--secret", SECRET]].concat(), &ack_log);
    std::thread::sleep(Duration::from_millis(1000));
    // Phase 2: the new secret, the old one still accepted.
    reload(
        &s,
        |t| {
            t.replace(
                &format!("secret = \"{SECRET}\""),
                &format!("secret = \"{NEW_SECRET}\"\nprevious_secret = \"{SECRET}\""),
            )
        },
        "configuration reloaded",
    );
    assert!(radclient(s.addr(), "acct", NEW_SECRET, &start(2)).0, "{}", s.log());
    assert!(radclient(s.addr(), "acct", SECRET, &start(3)).0, "{}", s.log());
    let out = generator.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["bad_responses"], 0, "{report}");
    assert_eq!(report["completed"], 20000, "{report}");
    let acked = std::fs::read_to_string(&ack_log).unwrap();
    let ids: std::collections::HashSet<&str> = acked.lines().collect();
    assert_eq!(ids.len(), 20000, "every request acknowledged once");
    let v = stats(&s);
    let local = &v["clients"]["local"];
    assert!(local["previous_secret"].as_u64() > Some(1000), "the old secret matched under load: {v}");
    // Phase 3: the previous secret removed: the old one is refused and counted.
    reload(&s, |t| t.replace(&format!("previous_secret = \"{SECRET}\"\n"), ""), "configuration reloaded");
    let bad_before = stats(&s)["clients"]["local"]["bad_authenticator"].as_u64().unwrap_or(0);
    assert!(!radclient(s.addr(), "acct", SECRET, &start(4)).0, "the removed secret must be refused");
    assert!(radclient(s.addr(), "acct", NEW_SECRET, &start(5)).0);
    let v = stats(&s);
    assert!(v["clients"]["local"]["bad_authenticator"].as_u64() > Some(bad_before), "{v}");
    s.wait_applied(Duration::from_secs(120));
    let sessions = s.sessions_until(&["--limit", "100000"], |v| v.len() >= 20004);
    assert_eq!(sessions.len(), 20004, "every acknowledged Start stored once, and the refused one not at all");
    assert!(s.child.as_mut().unwrap().try_wait().unwrap().is_none(), "still running");
    s.stop();
}

#[test]
fn a_bad_file_on_sighup_is_refused_and_the_old_configuration_keeps_working() {
    require("radclient");
    let mut s = Server::start("");
    s.config_log_level("info");
    reload(&s, |t| format!("{t}\nbogus_key = 1\n"), "configuration reload refused");
    let log = s.log();
    let check = s.cli(&["check-config"]);
    let error = String::from_utf8_lossy(&check.stderr).trim().trim_start_matches("error: ").to_string();
    assert!(!error.is_empty() && log.contains(&error), "the check-config error {error:?} in the log:\n{log}");
    assert!(s.child.as_mut().unwrap().try_wait().unwrap().is_none(), "SIGHUP must not stop the server");
    assert!(radclient(s.addr(), "acct", SECRET, &start(1)).0);
    s.stop();
}

#[test]
fn counters_survive_a_graceful_restart() {
    require("radclient");
    let mut s = Server::start("");
    assert!(radclient(s.addr(), "acct", SECRET, &start(1)).0);
    let since = s.stats_until(|v| v["clients"]["local"]["acknowledged"] == 1)["counters_since"].clone();
    assert!(since.as_str().is_some_and(|t| t.ends_with('Z')), "{since}");
    s.stop();
    s.spawn();
    assert!(radclient(s.addr(), "acct", SECRET, &start(2)).0);
    let v = s.stats_until(|v| v["clients"]["local"]["acknowledged"] == 2);
    assert_eq!(v["clients"]["local"]["acknowledged"], 2, "{v}");
    // They still count from the first start.
    assert_eq!(v["counters_since"], since, "{v}");
    s.stop();
}

#[test]
fn auth_log_is_reopened_after_it_was_moved_away_and_sighup() {
    require("radtest");
    let mut s = Server::start("[[network_policy]]\nname = \"all\"\n");
    common::add_user(&s, "alice", "pw", &[], &[]);
    assert!(radtest(&s, "pap", "alice", "pw").0);
    let log = s.dir.path().join("data/auth.log");
    let moved = s.dir.path().join("data/auth.log.old");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&log).unwrap_or_default().is_empty() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::rename(&log, &moved).unwrap();
    hup(&s);
    std::thread::sleep(Duration::from_millis(300));
    assert!(radtest(&s, "pap", "alice", "pw").0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&log).unwrap_or_default().is_empty() {
        assert!(Instant::now() < deadline, "nothing written to a new auth.log:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&moved).unwrap().lines().count(), 1);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
    s.stop();
}

/// `Type=notify`: READY=1 once serving, watchdog pings at half of WATCHDOG_USEC,
/// RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 at SIGTERM.
#[test]
fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    let mut s = Server::start("");
    s.stop();
    let socket_path = s.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let log = std::fs::File::create(s.dir.path().join("server.log")).unwrap();
    let mut child = Command::new(common::bin())
        .args(["serve", "--config"])
        .arg(&s.config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let next = || {
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("no notification: {e}\n{}", s.log()));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(ready.starts_with("READY=1"), "{ready}");
    // It answers once it said so.
    assert!(common::status_server(s.addr(), SECRET).is_some());
    // Pings every 200 ms: two in a row well before the 20 s receive timeout.
    let began = Instant::now();
    assert_eq!((next(), next()), ("WATCHDOG=1".to_string(), "WATCHDOG=1".to_string()));
    assert!(began.elapsed() < Duration::from_secs(5));
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let mut after_hup: Vec<String> = (0..6).map(|_| next()).filter(|m| m != "WATCHDOG=1").collect();
    after_hup.truncate(2);
    assert!(after_hup.first().is_some_and(|m| m.starts_with("RELOADING=1\nMONOTONIC_USEC=")), "{after_hup:?}");
    assert!(after_hup.get(1).is_some_and(|m| m.starts_with("READY=1")), "{after_hup:?}");
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let stopping = (0..20).map(|_| next()).find(|m| m != "WATCHDOG=1");
    assert_eq!(stopping.as_deref(), Some("STOPPING=1"));
    assert!(child.wait().unwrap().success());
}
