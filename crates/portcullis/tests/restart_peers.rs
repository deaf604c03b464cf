//! Restart, rebuild and replay give the alerts live traffic gave: a shuffled history of
//! a thousand users sent with radclient, the server stopped with SIGTERM and started
//! again, the same history replayed into a fresh data directory and rebuilt there.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{SECRET, Server, detail_date, require};
use serde_json::Value;

fn geo_section() -> String {
    let fixture = |name: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("../geo/testdata").join(name);
    format!(
        "\n[geo]\ndatabases = [{:?}, {:?}]\n",
        fixture("test-city.mmdb").display().to_string(),
        fixture("test-asn.mmdb").display().to_string()
    )
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Alerts without what differs between data directories (ids, creation times).
fn alert_set(s: &Server) -> Vec<Value> {
    let all = json_of(&s.cli(&["alerts", "list", "--format", "json"]));
    let mut v: Vec<Value> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            serde_json::json!({
                "kind": a["kind"], "user": a["user"], "event_time": a["event_time"],
                "last_event_time": a["last_event_time"], "message": a["message"], "evidence": a["evidence"],
                "count": a["count"], "status": a["status"],
            })
        })
        .collect();
    v.sort_by_key(|a| a.to_string());
    v
}

fn sessions(s: &Server) -> Vec<Value> {
    let mut v = json_of(&s.cli(&["sessions", "--format", "json"])).as_array().cloned().unwrap();
    v.sort_by_key(|x| x["session_key"].to_string());
    v
}

/// One accounting packet of the history.
struct Acct {
    status: &'static str,
    user: String,
    session: String,
    station: String,
    time: i64,
    session_time: Option<u32>,
}

impl Acct {
    fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("Acct-Status-Type", self.status.to_owned()),
            ("User-Name", format!("\"{}\"", self.user)),
            ("NAS-IP-Address", "192.0.2.254".to_owned()),
            ("Acct-Session-Id", format!("\"{}\"", self.session)),
            ("Calling-Station-Id", format!("\"{}\"", self.station)),
            ("Event-Timestamp", self.time.to_string()),
        ];
        if let Some(t) = self.session_time {
            v.push(("Acct-Session-Time", t.to_string()));
        }
        v
    }

    fn radclient(&self) -> String {
        self.attributes().iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
    }

    /// As FreeRADIUS's detail writer puts it (in arrival order).
    fn detail(&self) -> String {
        let body: String = self
            .attributes()
            .into_iter()
            .map(|(k, v)| if k == "Event-Timestamp" { (k, format!("\"{}\"", detail_date(self.time))) } else { (k, v) })
            .map(|(k, v)| format!("\t{k} = {v}\n"))
            .collect();
        format!("Sun Nov 22 00:00:00 2026\n{body}\tTimestamp = {}\n\n", self.time + 2)
    }
}

/// A thousand users' week: everyone connects from Berlin; some then from Sydney an
/// hour later (impossible travel), some have a Stop whose Start never came, some a
/// Start that arrives after a later one (concurrent sessions in event time). Arrival
/// order is event-time order shuffled within an hour.
fn history(users: usize) -> Vec<Acct> {
    let base = now() - 6 * 86_400;
    let mut v = Vec::new();
    for u in 0..users {
        let user = format!("user{u:04}");
        let t = base + u as i64 * 7;
        let host = u % 100 + 1;
        let acct = |status, session: &str, station: String, time, session_time| Acct {
            status,
            user: user.clone(),
            session: format!("{user}-{session}"),
            station,
            time,
            session_time,
        };
        v.push(acct("Start", "1", format!("192.0.2.{host}"), t, None));
        v.push(acct("Stop", "1", format!("192.0.2.{host}"), t + 1800, Some(1800)));
        if u % 5 == 0 {
            v.push(acct("Start", "2", format!("203.0.113.{host}"), t + 3600, None));
        }
        if u % 7 == 0 {
            v.push(acct("Stop", "3", format!("198.51.100.{host}"), t + 7200, Some(600)));
        }
        if u % 11 == 0 {
            v.push(acct("Start", "4", format!("192.0.2.{}", 128 + host % 100), t + 9000, None));
            v.push(acct("Start", "5", format!("198.51.100.{host}"), t + 9000 - 1800, None));
        }
    }
    // Deterministic shuffle: arrival = event time plus up to an hour.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut keyed: Vec<(i64, Acct)> = v
        .into_iter()
        .map(|a| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((a.time + (seed >> 33) as i64 % 3600), a)
        })
        .collect();
    keyed.sort_by_key(|(arrival, _)| *arrival);
    keyed.into_iter().map(|(_, a)| a).collect()
}

/// Sends every packet with radclient, one at a time, in order.
fn send(s: &Server, packets: &[Acct]) {
    require("radclient");
    let file = s.dir.path().join("requests.txt");
    std::fs::write(&file, packets.iter().map(|a| a.radclient() + "\n").collect::<String>()).unwrap();
    let out = Command::new("radclient")
        .args(["-q", "-p", "1", "-r", "3", "-t", "2", "-f"])
        .arg(&file)
        .arg(s.addr().to_string())
        .args(["acct", SECRET])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Waits until everything is applied and the alerts stop changing.
fn settled(s: &Server) -> Vec<Value> {
    s.wait_applied(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = alert_set(s);
    loop {
        std::thread::sleep(Duration::from_millis(700));
        let now = alert_set(s);
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "alerts keep changing");
        last = now;
    }
}

/// After a restart the applier has rebuilt its state once it applies new packets.
fn restart(s: &mut Server) {
    s.stop();
    s.spawn();
    let probe = Acct {
        status: "Interim-Update",
        user: "user0000".into(),
        session: "user0000-1".into(),
        station: "192.0.2.1".into(),
        time: now() - 6 * 86_400 + 60,
        session_time: Some(60),
    };
    send(s, &[probe]);
}

#[test]
fn a_shuffled_history_gives_the_same_alerts_live_after_a_restart_replayed_and_rebuilt() {
    let history = history(1000);
    let mut live = Server::start(&geo_section());
    let started = Instant::now();
    send(&live, &history);
    let alerts = settled(&live);
    eprintln!("{} packets sent and applied in {:?}", history.len(), started.elapsed());
    let kinds = |v: &[Value], k: &str| v.iter().filter(|a| a["kind"] == k).count();
    assert!(kinds(&alerts, "impossible_travel") >= 150, "{}", alerts.len());
    assert!(kinds(&alerts, "concurrent_sessions") > 0 || kinds(&alerts, "impossible_travel") > 200);

    // SIGTERM, serve again: the warm-up from storage raises nothing new.
    restart(&mut live);
    assert_eq!(settled(&live), alerts, "a restart changed the alerts");

    // The same history as a detail file, replayed into a fresh data directory.
    let mut replayed = Server::start(&geo_section());
    replayed.stop();
    let detail = replayed.dir.path().join("detail-history");
    std::fs::write(&detail, history.iter().map(Acct::detail).collect::<String>()).unwrap();
    let out = replayed.cli(&["replay", detail.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(alert_set(&replayed), alerts, "replay differs from live");

    // Rebuild keeps the replayed sessions (they are in no journal) and their order.
    let before = sessions(&replayed);
    assert_eq!(before.len(), 1525);
    let out = replayed.cli(&["rebuild"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sessions(&replayed), before, "rebuild lost replayed sessions");
    replayed.spawn();
    let refused = replayed.cli(&["rebuild"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("cannot rebuild") && stderr.contains("running server"), "{stderr}");
    // So is a replay: the running server's detections would not see what it stores.
    let refused = replayed.cli(&["replay", detail.to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("cannot replay") && stderr.contains("running server"), "{stderr}");
    assert!(replayed.cli(&["replay", "--dry-run", detail.to_str().unwrap()]).status.success());
    restart(&mut replayed);
    assert_eq!(settled(&replayed), alerts, "restart after rebuild changed the alerts");
}

/// The two cases first seen: a Stop without its Start followed by a later connection
/// elsewhere, and a Start whose Event-Timestamp is half an hour before the previous
/// one. A restart must add nothing to what live traffic raised.
#[test]
fn a_lone_stop_and_a_late_start_raise_nothing_new_after_a_restart() {
    let mut s = Server::start(&geo_section());
    let t = now() - 86_400;
    let acct = |status, session: &str, station: &str, time, session_time| Acct {
        status,
        user: "alice".into(),
        session: session.into(),
        station: station.into(),
        time,
        session_time,
    };
    send(
        &s,
        &[
            acct("Start", "a", "192.0.2.10", t, None),
            acct("Stop", "a", "192.0.2.10", t + 600, Some(600)),
            // Sydney, its Start lost.
            acct("Stop", "b", "203.0.113.5", t + 86_000, Some(60)),
            acct("Start", "c", "192.0.2.11", t + 86_100, None),
            acct("Start", "d", "198.51.100.7", t + 86_200, None),
            acct("Start", "e", "192.0.2.12", t + 86_200 - 1800, None),
        ],
    );
    let live = settled(&s);
    assert!(live.iter().any(|a| a["kind"] == "impossible_travel"), "{live:?}");
    restart(&mut s);
    assert_eq!(settled(&s), live);
}

/// An Event-Timestamp in 2031 is set to arrival and counted, so the connections after
/// it are still judged: the one from Sydney is impossible travel from New York.
#[test]
fn an_event_time_years_ahead_is_set_to_arrival_and_counted() {
    let s = Server::start(&geo_section());
    let acct = |session: &str, station: &str, time| Acct {
        status: "Start",
        user: "carol".into(),
        session: session.into(),
        station: station.into(),
        time,
        session_time: None,
    };
    let future = 1_925_000_000; // 2031
    send(&s, &[acct("a", "192.0.2.10", now() - 7200), acct("b", "198.51.100.7", future)]);
    send(&s, &[acct("c", "203.0.113.5", now())]);
    let alerts = settled(&s);
    let sydney = alerts.iter().find(|a| a["kind"] == "impossible_travel" && a["evidence"]["to_place"] == "Sydney, AU");
    assert!(sydney.is_some_and(|a| a["evidence"]["from_place"] == "New York, US"), "{alerts:?}");
    let stats = s.stats_until(|v| v["clients"]["local"]["clock_skew"].as_u64() >= Some(1));
    assert_eq!(stats["clients"]["local"]["clock_skew"], 1, "{stats}");
    let b = sessions(&s).into_iter().find(|x| x["session_id"] == "b").expect("session b is stored");
    assert_eq!(b["details"]["event_time_sent"], future.to_string(), "{b}");
    assert!(b["started_at"].as_str().is_some_and(|t| t < "2031"), "{b}");
}
