//! Operating a running server: time zones with daylight saving, the NPS log files it
//! writes and `replay` reading them back, replay's times and exit status, the modes of
//! the files that hold user names and addresses, and the disk use `stats` reports.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{SECRET, Server, add_user, free_port, python};

/// A server whose `[auth]` section has `auth` in it and whose file ends with `extra`.
fn start(auth: &str, extra: &str) -> Server {
    start_with("", auth, extra)
}

/// The same with `storage` in the `[storage]` section.
fn start_with(storage: &str, auth: &str, extra: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (port, auth_port) = (free_port(), free_port());
    let config = dir.path().join("portcullis.toml");
    let text = format!(
        "[radius]\nacct_listen = [\"127.0.0.1:{port}\"]\nauth_listen = [\"127.0.0.1:{auth_port}\"]\n\n\
         [storage]\ndata_dir = \"data\"\n{storage}\n\n[log]\nlevel = \"warn\"\n\n[auth]\nmin_password_length = 1\n{auth}\n\n\
         [[client]]\nname = \"local\"\naddress = \"127.0.0.1\"\nsecret = \"{SECRET}\"\n{extra}"
    );
    std::fs::write(&config, text).unwrap();
    let mut s = Server { child: None, dir, port, auth_port, config };
    s.spawn();
    s
}

/// Writes a history file for `replay`.
fn history(dir: &tempfile::TempDir, name: &str, contents: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn auth_log(s: &Server, user: &str) -> Vec<serde_json::Value> {
    let out = s.cli(&["auth-log", "--format", "json", "--user", user]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `auth-log` of a user once it holds `n` events (they reach the store asynchronously).
fn auth_log_of(s: &Server, user: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = auth_log(s, user);
        if v.len() >= n || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_iana_time_zone_is_accepted_and_policy_windows_follow_daylight_saving() {
    let policy = "\n[[network_policy]]\nname = \"office hours\"\n[[network_policy.time_windows]]\n\
                  days = [\"mon\"]\nhours = \"08:00-17:00\"\n";
    let s = start("time_zone = \"Europe/Berlin\"", policy);
    let out = Command::new(common::bin()).arg("check-config").arg("--config").arg(&s.config).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // Monday 06:30 UTC: 07:30 in Berlin before the change to summer time, 08:30 after.
    let at = |t: &str| text(&s.cli(&["policy", "test", "--user", "bob", "--at", t]));
    let winter = at("2026-03-23T06:30:00Z");
    assert!(winter.contains("reason code 37") && winter.contains("2026-03-23T07:30:00+01:00"), "{winter}");
    let summer = at("2026-03-30T06:30:00Z");
    assert!(summer.contains("Access-Accept") && summer.contains("2026-03-30T08:30:00+02:00"), "{summer}");
    assert!(summer.contains("Europe/Berlin"), "{summer}");
}

fn enroll(s: &Server, user: &str) -> String {
    let out = s.cli(&["mfa", "enroll", user, "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["secret"].as_str().unwrap().to_string()
}

/// pyrad: PAP, then the answer to the challenge (a fresh code unless `code=` says).
fn totp_login(s: &Server, user: &str, password: &str, secret: &str, options: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pyrad_auth.py"))
        .args(["127.0.0.1", &s.auth_port.to_string(), SECRET])
        .arg(common::dictionary_dir())
        .args(["totp", user, password, secret])
        .args(options)
        .output()
        .unwrap();
    assert!(out.status.success(), "pyrad: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Replays `files` into a fresh data directory with the same `[auth]` and returns the
/// replay's output and that server's view (stopped, for its CLI).
fn replay_fresh(auth: &str, args: &[&str]) -> (Output, Server) {
    let mut fresh = start(auth, "");
    fresh.stop();
    let out = Command::new(common::bin()).arg("replay").args(args).arg("--config").arg(&fresh.config).output().unwrap();
    (out, fresh)
}

#[test]
fn nps_logs_of_a_totp_login_show_the_challenge_and_the_mfa_reject_and_replay_back() {
    let shared = tempfile::tempdir().unwrap();
    let auth = "time_zone = \"Europe/Berlin\"";
    let extra = format!(
        "\n[mfa]\nstate_key_file = \"{0}/mfa.key\"\ndatabase = \"{0}/mfa.db\"\n\n[nps_log]\nformat = \"dts\"\n\
         period = \"never\"\n\n[[network_policy]]\nname = \"staff\"\ngroups = [\"vpn\"]\n",
        shared.path().display()
    );
    let s = start(auth, &extra);
    add_user(&s, "bob", "hello", &["vpn"], &[]);
    let secret = enroll(&s, "bob");
    assert_eq!(totp_login(&s, "bob", "hello", &secret, &[])["answer"], "accept");
    assert_eq!(totp_login(&s, "bob", "hello", &secret, &["code=000000"])["answer"], "reject");
    let live = auth_log_of(&s, "bob", 4);
    assert_eq!(live.len(), 4, "{live:?}");
    for e in &live {
        let t = e["time"].as_str().unwrap();
        assert!(t.len() == 24 && t.ends_with('Z') && t.as_bytes()[19] == b'.', "three fractional digits: {t}");
    }

    let nps = std::fs::read_to_string(s.dir.path().join("data/nps/iaslog.log")).unwrap();
    let responses: Vec<&str> = nps.lines().filter(|l| !l.contains("<Packet-Type data_type=\"0\">1<")).collect();
    let field = |l: &str, name: &str| {
        let open = format!("<{name} data_type=\"0\">");
        let from = l.find(&open).map(|i| i + open.len()).unwrap_or_else(|| panic!("no {name} in {l}"));
        l[from..].split('<').next().unwrap().to_string()
    };
    let kinds: Vec<(String, String)> =
        responses.iter().map(|l| (field(l, "Packet-Type"), field(l, "Reason-Code"))).collect();
    let expected = [("11", "0"), ("2", "0"), ("11", "0"), ("3", "21")];
    assert_eq!(kinds, expected.map(|(a, b)| (a.to_string(), b.to_string())), "{nps}");
    assert!(responses.iter().all(|l| field(l, "Authentication-Type") == "1"), "{nps}");
    // The counters saw the two prompts, the accept and the reject.
    let stats = s.stats_until(|v| v["clients"]["local"]["access_reject"].as_u64() >= Some(1));
    let local = &stats["clients"]["local"];
    assert_eq!((&local["access_challenge"], &local["access_accept"]), (&2.into(), &1.into()), "{stats}");

    // Replayed into a fresh store (local times read in auth.time_zone): the same
    // decisions, methods, reason codes and times.
    let file = s.dir.path().join("data/nps/iaslog.log");
    let (out, fresh) = replay_fresh(auth, &[file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let key = |v: &[serde_json::Value]| {
        let mut k: Vec<String> =
            v.iter().map(|e| format!("{} {} {} {}", e["time"], e["decision"], e["method"], e["reason_code"])).collect();
        k.sort();
        k
    };
    assert_eq!(key(&auth_log(&fresh, "bob")), key(&live));
    // Read as UTC they would be an hour or two off.
    let (out, utc) = replay_fresh("", &["--time-zone", "UTC", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(key(&auth_log(&utc, "bob")), key(&live));
}

/// An audit-log line with a time that ends in zeros, replayed into a fresh store.
#[test]
fn auth_log_times_always_have_three_fractional_digits() {
    let dir = tempfile::tempdir().unwrap();
    let file = history(
        &dir,
        "auth.log",
        "{\"time_ms\":1795227453600,\"user\":\"bob\",\"user_raw\":\"bob\",\"nas\":\"n\",\"client\":\"c\",\
         \"calling_station_id\":null,\"method\":\"pap\",\"decision\":\"reject\",\"reason_code\":16,\"event_id\":6273,\
         \"policy\":null,\"message\":\"\"}\n",
    );
    let (out, fresh) = replay_fresh("", &[file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(auth_log(&fresh, "bob")[0]["time"], "2026-11-21T02:17:33.600Z");
}

#[test]
fn replay_reports_unreadable_times_by_file_and_line_and_fails_when_nothing_was_usable() {
    let dir = tempfile::tempdir().unwrap();
    let detail = history(
        &dir,
        "detail",
        "Mon Jan  5 08:00:03 2026\n\tAcct-Status-Type = Start\n\tUser-Name = \"alice\"\n\tNAS-IP-Address = 192.0.2.10\n\
         \tAcct-Session-Id = \"s-1\"\n\tEvent-Timestamp = \"Jan  5 2026 08:00:00 XYZ\"\n\tTimestamp = 1767600003\n",
    );
    let (out, _fresh) = replay_fresh("", &[detail.to_str().unwrap()]);
    assert!(!out.status.success(), "nothing usable, yet success: {}", text(&out));
    let expected = format!("{}:6: Event-Timestamp", detail.display());
    assert!(text(&out).contains(&expected), "{}", text(&out));

    // An empty file: nothing read, a failure too.
    let empty = history(&dir, "empty.log", "");
    let (out, _fresh) = replay_fresh("", &[empty.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));

    // CET and +0100 in a detail file are honoured: 08:00 CET is 07:00 UTC.
    let zoned = history(&dir, "zoned", &std::fs::read_to_string(&detail).unwrap().replace("XYZ", "CET"));
    let (out, fresh) = replay_fresh("", &[zoned.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let sessions = text(&fresh.cli(&["sessions", "--format", "json"]));
    assert!(sessions.contains("\"started_at\": \"2026-01-05T07:00:00Z\""), "{sessions}");
}

#[test]
fn replay_dry_run_prints_alert_times_in_rfc3339() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..12)
        .map(|i| {
            format!(
                "{{\"time\":{},\"kind\":\"auth_failure\",\"user\":\"eve\",\"ip\":\"198.51.100.7\",\"reason\":\"bad_password\"}}\n",
                1_767_600_000 + i * 20
            )
        })
        .collect();
    let file = history(&dir, "events.jsonl", &lines);
    let (out, _fresh) = replay_fresh("", &["--dry-run", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let alerts: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!alerts.is_empty(), "{}", text(&out));
    assert!(
        alerts.iter().all(|a| a["event_time"].as_str().is_some_and(|t| t.starts_with("2026-01-05T"))),
        "{alerts:?}"
    );
}
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// Every file in the data directory that holds user names or addresses, after a login
/// and an accounting record.
fn private_files(s: &Server) -> Vec<std::path::PathBuf> {
    assert!(common::radtest(s, "pap", "bob", "hello").0);
    let (ok, out) = common::radclient(
        s.addr(),
        "acct",
        SECRET,
        "Acct-Status-Type = Start\nUser-Name = \"bob\"\nAcct-Session-Id = \"1\"\nCalling-Station-Id = \"198.51.100.7\"\n",
    );
    assert!(ok, "{out}");
    assert_eq!(auth_log_of(s, "bob", 1).len(), 1);
    s.sessions_until(&[], |v| !v.is_empty());
    let data = s.dir.path().join("data");
    let mut files = vec![data.join("auth.log"), data.join("portcullis.db"), data.join("portcullis.db-wal")];
    for dir in ["journal", "nps"] {
        for entry in std::fs::read_dir(data.join(dir)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files
}

#[test]
fn files_with_user_names_are_private_or_group_readable_when_asked() {
    let extra = "\n[nps_log]\nformat = \"ias\"\n\n[[network_policy]]\nname = \"all\"\n";
    let s = start("", extra);
    add_user(&s, "bob", "hello", &[], &[]);
    for f in private_files(&s) {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    assert_eq!(mode(&s.dir.path().join("data/users.db")), 0o600);
    // What the data takes and what a day at this rate adds.
    let stats = s.stats_until(|v| v["disk"]["sessions_last_day"] == 1);
    let disk = &stats["disk"];
    assert_eq!(
        (disk["auth_events_last_day"].as_u64(), disk["sessions_last_day"].as_u64()),
        (Some(1), Some(1)),
        "{stats}"
    );
    assert!(
        disk["bytes_per_day"]["total"].as_u64() > Some(600) && disk["database_bytes"].as_u64() > Some(0),
        "{stats}"
    );
    assert_eq!(disk["retention_days"]["auth_events"], 365);

    let group = start_with("group_readable = true", "", extra);
    add_user(&group, "bob", "hello", &[], &[]);
    for f in private_files(&group) {
        assert_eq!(mode(&f), 0o640, "{}", f.display());
    }
    // Secrets stay the owner's.
    assert_eq!(mode(&group.dir.path().join("data/users.db")), 0o600);
}
