//! Geolocation, profiles and detections end to end: radclient accounting and radtest
//! logins against the running server, alerts within a second, the same alerts from
//! `portcullis replay` of the equivalent history files, the alert lifecycle, the
//! evaluation harness, and lookups in the real DB-IP City Lite database.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{SECRET, Server, add_user, bin, detail_date, radclient, radtest};
use serde_json::Value;

/// The detectors the evaluation scores, before its combined rows.
const DETECTORS: usize = portcullis_detect::AlertKind::ALL.len();

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../geo/testdata").join(name)
}

fn geo_section() -> String {
    format!(
        "\n[geo]\ndatabases = [{:?}, {:?}]\n",
        fixture("test-city.mmdb").display().to_string(),
        fixture("test-asn.mmdb").display().to_string()
    )
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn alerts(s: &Server) -> Vec<Value> {
    json_of(&s.cli(&["alerts", "list", "--format", "json"])).as_array().cloned().unwrap_or_default()
}

/// The fields that must be identical between live ingestion and replay.
fn comparable(alerts: &[Value]) -> Vec<Value> {
    let mut v: Vec<Value> = alerts
        .iter()
        .map(|a| {
            serde_json::json!({
                "kind": a["kind"], "severity": a["severity"], "user": a["user"], "event_time": a["event_time"],
                "last_event_time": a["last_event_time"], "message": a["message"], "evidence": a["evidence"],
                "count": a["count"], "status": a["status"], "mitre": a["mitre"],
            })
        })
        .collect();
    v.sort_by_key(|a| (a["kind"].to_string(), a["user"].to_string(), a["event_time"].to_string()));
    v
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

struct Acct {
    status: &'static str,
    session: &'static str,
    station: &'static str,
    time: i64,
}

fn radclient_text(a: &Acct) -> String {
    format!(
        "Acct-Status-Type = {}\nUser-Name = \"EXAMPLE\\\\Alice\"\nNAS-IP-Address = 192.0.2.254\nAcct-Session-Id = \"{}\"\nCalling-Station-Id = \"{}\"\nEvent-Timestamp = {}\n",
        a.status, a.session, a.station, a.time
    )
}

fn detail_text(a: &Acct) -> String {
    format!(
        "Sun Nov 22 00:00:00 2026\n\tAcct-Status-Type = {}\n\tUser-Name = \"EXAMPLE\\\\Alice\"\n\tNAS-IP-Address = 192.0.2.254\n\tAcct-Session-Id = \"{}\"\n\tCalling-Station-Id = \"{}\"\n\tEvent-Timestamp = \"{}\"\n\tTimestamp = {}\n\n",
        a.status,
        a.session,
        a.station,
        detail_date(a.time),
        a.time + 2
    )
}

#[test]
fn live_alerts_within_a_second_and_replay_gives_the_same_alerts() {
    let s = Server::start(&geo_section());
    let t0 = now() - 2 * 86_400;
    let history = [
        Acct { status: "Start", session: "a-1", station: "192.0.2.10", time: t0 },
        Acct { status: "Stop", session: "a-1", station: "192.0.2.10", time: t0 + 1800 },
        // Sydney an hour after leaving Berlin: ~16,000 km.
        Acct { status: "Start", session: "a-2", station: "203.0.113.5", time: t0 + 5400 },
    ];
    for a in &history[..2] {
        let (ok, out) = radclient(s.addr(), "acct", SECRET, &radclient_text(a));
        assert!(ok, "{out}");
    }
    let (ok, out) = radclient(s.addr(), "acct", SECRET, &radclient_text(&history[2]));
    assert!(ok && out.contains("Received Accounting-Response"), "{out}");
    // The Accounting-Response means the record is durable; the alert follows within a second.
    let acked = Instant::now();
    let travel = loop {
        let found = alerts(&s).into_iter().find(|a| a["kind"] == "impossible_travel");
        if let Some(a) = found {
            break a;
        }
        assert!(acked.elapsed() < Duration::from_secs(5), "no alert: {}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    let latency = acked.elapsed();
    eprintln!("impossible travel alert visible {latency:?} after the Accounting-Response");
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    assert_eq!(travel["user"], "alice");
    assert_eq!(travel["severity"], "high");
    assert_eq!(travel["status"], "open");
    assert_eq!(travel["mitre"], "T1078");
    assert_eq!(travel["evidence"]["from_place"], "Berlin, DE");
    assert_eq!(travel["evidence"]["to_place"], "Sydney, AU");
    assert_eq!(travel["event_time"], portcullis_detect::rfc3339(t0 + 5400));
    assert!(
        travel["message"].as_str().unwrap().starts_with("alice connected from Berlin, DE and then from Sydney, AU")
    );
    assert!(travel["evidence"]["effective_distance_km"].as_f64().unwrap() > 15_000.0);

    // Brute force from the authentication stream: ten wrong passwords with radtest.
    add_user(&s, "bob", "correct-horse", &[], &[]);
    for _ in 0..10 {
        let (accepted, _) = radtest(&s, "pap", "bob", "wrong-guess");
        assert!(!accepted);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !alerts(&s).iter().any(|a| a["kind"] == "brute_force") {
        assert!(Instant::now() < deadline, "no brute force alert: {}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }

    // The profile.
    let profile = json_of(&s.cli(&["users", "show", "EXAMPLE\\Alice", "--format", "json"]));
    let locations = profile["locations"].as_array().unwrap();
    assert_eq!(locations.len(), 2, "{profile}");
    let berlin = locations.iter().find(|l| l["city"] == "Berlin").expect("Berlin");
    assert_eq!(berlin["country"], "DE");
    assert_eq!(berlin["count"], 1);
    assert!((berlin["latitude"].as_f64().unwrap() - 52.52).abs() < 0.01);
    assert!((berlin["longitude"].as_f64().unwrap() - 13.405).abs() < 0.01);
    assert_eq!(berlin["first_seen"], portcullis_detect::rfc3339(t0));
    assert!(berlin["last_seen"].is_string());
    let ips: Vec<&str> = profile["ips"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap()).collect();
    assert!(ips.contains(&"192.0.2.10") && ips.contains(&"203.0.113.5"), "{ips:?}");
    assert_eq!(profile["open_sessions"].as_array().unwrap().len(), 1);
    assert_eq!(profile["timeline"][0]["activity"], "vpn_start");
    assert_eq!(profile["timeline"][0]["location"], "Sydney, AU");
    assert_eq!(profile["open_alerts"].as_array().unwrap().len(), 1);
    let table = s.cli(&["users", "show", "alice"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("Sydney, AU"));

    // The same history as files: a FreeRADIUS detail file and the audit log.
    let live = comparable(&alerts(&s));
    let files = tempfile::tempdir().unwrap();
    let detail = files.path().join("detail-20261120");
    std::fs::write(&detail, history.iter().map(detail_text).collect::<String>()).unwrap();
    let auth_log = s.dir.path().join("data/auth.log");
    let replayed = Server::start(&geo_section());
    let mut replayed = replayed;
    replayed.stop();
    let out = replayed.cli(&["replay", detail.to_str().unwrap(), auth_log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("replay: 13 records (3 new accounting, 10 new authentication)"), "{stderr}");
    assert_eq!(comparable(&alerts(&replayed)), live);
    // Replaying again changes nothing: causes are recorded once.
    let again = replayed.cli(&["replay", detail.to_str().unwrap(), auth_log.to_str().unwrap()]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("(0 new accounting, 0 new authentication)"));
    assert_eq!(comparable(&alerts(&replayed)), live);

    // Lifecycle.
    let id = travel["id"].as_i64().unwrap().to_string();
    let updated = json_of(&s.cli(&[
        "alerts",
        "update",
        &id,
        "--status",
        "resolved",
        "--classification",
        "benign-true-positive",
        "--comment",
        "flew with a VPN router",
        "--format",
        "json",
    ]));
    assert_eq!(updated["status"], "resolved");
    assert_eq!(updated["classification"], "benign-true-positive");
    assert_eq!(updated["comments"][0]["text"], "flew with a VPN router");
    let open = json_of(&s.cli(&["alerts", "list", "--status", "open", "--user", "alice", "--format", "json"]));
    assert_eq!(open.as_array().unwrap().len(), 0);
    let bad = s.cli(&["alerts", "update", &id, "--classification", "maybe"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown classification"));
    let table = s.cli(&["alerts", "list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("brute_force"));
}

#[test]
fn restart_rebuilds_profiles_and_repeats_fold_into_one_alert() {
    let extra = format!("{}\n[detect.brute_force]\nfailures = 3\nwindow_minutes = 10\n", geo_section());
    let mut s = Server::start(&extra);
    let t0 = now() - 3600;
    for (i, station) in ["192.0.2.10", "203.0.113.5"].iter().enumerate() {
        let a = Acct { status: "Start", session: ["r-1", "r-2"][i], station, time: t0 + i as i64 * 600 };
        assert!(radclient(s.addr(), "acct", SECRET, &radclient_text(&a)).0);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while alerts(&s).len() < 2 {
        assert!(Instant::now() < deadline, "{:?}", alerts(&s));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Both sessions are open and 16,000 km apart: impossible travel and concurrent sessions.
    let kinds: Vec<String> = alerts(&s).iter().map(|a| a["kind"].as_str().unwrap().to_owned()).collect();
    assert!(kinds.contains(&"impossible_travel".into()) && kinds.contains(&"concurrent_sessions".into()), "{kinds:?}");
    // After a restart the profile is rebuilt from storage: a third far connection is
    // judged against it, and its alert folds into the open one.
    s.stop();
    s.spawn();
    let a = Acct { status: "Start", session: "r-3", station: "192.0.2.200", time: t0 + 1200 };
    assert!(radclient(s.addr(), "acct", SECRET, &radclient_text(&a)).0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = alerts(&s);
        let folded = all.iter().find(|a| a["kind"] == "concurrent_sessions" && a["count"] == 2);
        if folded.is_some() {
            assert_eq!(all.iter().filter(|a| a["kind"] == "concurrent_sessions").count(), 1, "{all:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{all:?}\n{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn replay_of_a_generated_workforce_equals_the_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args([
            "eval",
            "--users",
            "300",
            "--days",
            "60",
            "--seed",
            "3",
            "--attacks-per-thousand",
            "30",
            "--format",
            "json",
            "--write",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let report = json_of(&out);
    let drafts: u64 =
        report["scores"].as_array().unwrap()[..DETECTORS].iter().map(|s| s["alerts"].as_u64().unwrap()).sum();
    assert!(drafts > 20, "{report}");
    for s in &report["scores"].as_array().unwrap()[..DETECTORS] {
        assert!(s["precision"].as_f64().unwrap() >= 0.8, "{s}");
    }
    let truth: Value = serde_json::from_slice(&std::fs::read(dir.path().join("truth.json")).unwrap()).unwrap();
    assert!(truth.as_array().unwrap().len() >= 60);
    // The organisation settings the evaluation uses.
    let extra = "\n[detect]\negress_asns = [64600]\n[detect.suspicious_vpn]\nmanaged_devices = [\"LT-*\", \"TAB-*\"]\n";
    let mut s = Server::start(extra);
    s.stop();
    let events = dir.path().join("events.jsonl");
    let dry = s.cli(&["replay", "--dry-run", events.to_str().unwrap()]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let lines = String::from_utf8_lossy(&dry.stdout).lines().count() as u64;
    assert_eq!(lines, drafts, "replay raises exactly the evaluation's alerts");
    let stored = s.cli(&["replay", events.to_str().unwrap()]);
    assert!(stored.status.success(), "{}", String::from_utf8_lossy(&stored.stderr));
    let all = alerts(&s);
    assert!(!all.is_empty());
    let folded: u64 = all.iter().map(|a| a["count"].as_u64().unwrap()).sum();
    assert_eq!(folded, drafts, "every raised alert is stored or folded");
    let profile = json_of(&s.cli(&["users", "show", "user00001", "--format", "json"]));
    assert!(!profile["locations"].as_array().unwrap().is_empty(), "{profile}");
}

#[test]
fn real_city_database_lookups() {
    let db = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-peers/geoip/dbip-city-lite.mmdb");
    assert!(db.is_file(), "{} is missing: run scripts/install-test-deps.sh first", db.display());
    let out = Command::new(bin())
        .args(["geo", "lookup", "8.8.8.8", "89.160.20.128", "81.2.69.142", "2a02:a458:1::1", "10.1.2.3", "--database"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let expect = [("US", "Mountain View"), ("SE", "Stockholm"), ("GB", "London"), ("NL", "The Hague (Laak)")];
    for (row, (cc, city)) in rows.iter().zip(expect) {
        assert_eq!((row["country"].as_str(), row["city"].as_str()), (Some(cc), Some(city)), "{row}");
        assert!(row["latitude"].is_f64() && row.get("accuracy_km").is_none(), "DB-IP Lite has no radius: {row}");
    }
    assert_eq!(rows[4]["internal"], true);
    // A server with the real database enriches sessions with it.
    let s = Server::start(&format!("\n[geo]\ndatabases = [{:?}]\n", db.display().to_string()));
    let text = "Acct-Status-Type = Start\nUser-Name = \"carol\"\nAcct-Session-Id = \"g-1\"\nCalling-Station-Id = \"89.160.20.128\"\n";
    assert!(radclient(s.addr(), "acct", SECRET, text).0);
    let v = s.sessions_until(&[], |v| !v.is_empty());
    assert_eq!(v[0]["location"]["city"], "Stockholm", "{v:?}");
}

#[test]
fn nps_log_files_replay_to_the_same_alerts() {
    for format in ["ias", "dts"] {
        let extra = format!("[nps_log]\nformat = \"{format}\"\ncomputer_name = \"RADIUS01\"\n");
        let s = Server::start(&extra);
        add_user(&s, "dave", "correct-horse", &[], &[]);
        for _ in 0..10 {
            assert!(!radtest(&s, "pap", "dave", "guess").0);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !alerts(&s).iter().any(|a| a["kind"] == "brute_force") {
            assert!(Instant::now() < deadline, "{format}: no alert: {}", s.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        let live = comparable(&alerts(&s));
        let logs: Vec<PathBuf> =
            std::fs::read_dir(s.dir.path().join("data/nps")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(logs.len(), 1, "{logs:?}");
        let mut other = Server::start("");
        other.stop();
        let out = other.cli(&["replay", logs[0].to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("10 new authentication") && stderr.contains("0 unreadable"), "{format}: {stderr}");
        assert_eq!(comparable(&alerts(&other)), live, "{format}");
    }
}

/// An Accounting-On naming the NAS 192.0.2.254, sent by the configured client at
/// 127.0.0.2 with its own secret.
fn reset_from_other_client(s: &Server) {
    use portcullis_radius::{Code, Identifier, Packet, PacketBuilder, SharedSecret, attr};
    let mut b = PacketBuilder::new(Code::AccountingRequest, Identifier(7));
    b.attribute(attr::ACCT_STATUS_TYPE, &7u32.to_be_bytes()).unwrap();
    b.attribute(attr::NAS_IP_ADDRESS, &[192, 0, 2, 254]).unwrap();
    let req = b.encode_computed_request(&SharedSecret::new("other-secret")).unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    sock.send_to(&req, s.addr()).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("the other client is answered");
    assert_eq!(Packet::decode(&buf[..n]).unwrap().code(), Code::AccountingResponse);
}

fn alerts_until(s: &Server, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = alerts(s);
        if until(&all) || Instant::now() > deadline {
            return all;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_reset_through_another_client_does_not_silence_concurrent_sessions() {
    let extra = format!(
        "{}\n[[client]]\nname = \"branch\"\naddress = \"127.0.0.2\"\nsecret = \"other-secret\"\n",
        geo_section()
    );
    let s = Server::start(&extra);
    let t0 = now() - 3600;
    let home = Acct { status: "Start", session: "c-1", station: "192.0.2.10", time: t0 };
    assert!(radclient(s.addr(), "acct", SECRET, &radclient_text(&home)).0);
    s.sessions_until(&[], |v| v.len() == 1);
    // Whoever holds the branch client's secret claims the NAS restarted ...
    reset_from_other_client(&s);
    let v = s.sessions_until(&[], |v| v.len() == 1);
    assert_eq!(v[0]["status"], "open", "the store keeps the session open: {v:?}");
    // ... and alice's second session, 16,000 km away, still meets her first one.
    let far = Acct { status: "Start", session: "c-2", station: "203.0.113.5", time: t0 + 600 };
    assert!(radclient(s.addr(), "acct", SECRET, &radclient_text(&far)).0);
    let all = alerts_until(&s, |a| a.iter().any(|a| a["kind"] == "concurrent_sessions"));
    assert!(all.iter().any(|a| a["kind"] == "concurrent_sessions"), "{all:?}\n{}", s.log());
    // The NAS's own reset, by address only, ends both sessions (recorded under that
    // address) in the store and in the engine: a third session meets neither.
    let own = "Acct-Status-Type = Accounting-On\nNAS-IP-Address = 192.0.2.254\n";
    assert!(radclient(s.addr(), "acct", SECRET, own).0);
    s.sessions_until(&[], |v| v.len() == 2 && v.iter().all(|x| x["status"] == "closed"));
    let again = Acct { status: "Start", session: "c-3", station: "192.0.2.10", time: t0 + 1800 };
    assert!(radclient(s.addr(), "acct", SECRET, &radclient_text(&again)).0);
    s.sessions_until(&[], |v| v.len() == 3);
    s.wait_applied(Duration::from_secs(10));
    let all = alerts(&s);
    let concurrent: Vec<_> = all.iter().filter(|a| a["kind"] == "concurrent_sessions").collect();
    assert_eq!(concurrent.len(), 1, "{all:?}");
    assert_eq!(concurrent[0]["count"], 1, "the reset ended the sessions in the engine too: {all:?}");
}
