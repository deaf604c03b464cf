//! The sinks against real receivers started here on 127.0.0.1: rsyslog (TLS and plain
//! TCP, octet-counted) and syslog-ng (TLS), both from Debian's packages unpacked by
//! scripts/install-test-deps.sh, and a webhook receiver written in this file that
//! checks the Standard Webhooks signature. What the receivers wrote is decoded here
//! (their own CEF parsers are not trusted).

mod receivers;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use receivers::{Certs, rsyslog, syslog_ng};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_detect::AlertKind;
use portcullis_export::{Context, Exporter, SinkConfig, SinkStats};
use portcullis_storage::conformance::{auth_event, draft};
use portcullis_storage::{SqliteStore, Store, SyncMode};

/// A port below the ephemeral range, different per process and per call.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + u16::try_from(std::process::id() % 500).unwrap() * 20 + n % 20;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn certs(dir: &Path, tag: &str) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = server.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let c = Certs {
        ca: dir.join(format!("{tag}-ca.pem")),
        cert: dir.join(format!("{tag}-srv.pem")),
        key: dir.join(format!("{tag}-srv.key")),
    };
    std::fs::write(&c.ca, ca_cert.pem()).unwrap();
    std::fs::write(&c.cert, cert.pem()).unwrap();
    std::fs::write(&c.key, key.serialize_pem()).unwrap();
    c
}

fn sink(toml_text: &str) -> SinkConfig {
    toml::from_str(toml_text).unwrap()
}

fn start(dir: &Path, sinks: &[SinkConfig]) -> Exporter {
    let data = dir.join("data");
    let context = Context {
        hostname: "vpn-radius-01".into(),
        version: "0.1.0".into(),
        portal_url: Some("https://portcullis.example".into()),
        state_dir: data.join("export"),
    };
    let open = move || SqliteStore::open_another(&data).map(|s| Box::new(s) as Box<dyn Store>);
    Exporter::start(sinks, &context, &open).unwrap()
}

fn store(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("data"), SyncMode::Normal).unwrap()
}

/// Raises `n` alerts for distinct users; the first user name is hostile.
fn raise(store: &mut SqliteStore, from: usize, n: usize) {
    let drafts: Vec<_> = (from..from + n)
        .map(|i| {
            let user = if i == 0 { "ev|il=\\user\r\nCEF:0|x".to_string() } else { format!("user{i}@corp.example") };
            let mut d = draft(AlertKind::ImpossibleTravel, &user, 1_000 + i as i64, &format!("c{i}"), &format!("k{i}"));
            d.message = format!("{user} travelled too fast ünï {i}");
            d
        })
        .collect();
    store.record_alerts(&drafts, 1_765_000_000_000 + from as i64).unwrap();
}

/// The decoded lines rsyslog wrote: (hostname, app, msgid, sd, CEF).
fn rsyslog_lines(out: &Path) -> Vec<(String, String, String, String, portcullis_export::cef::Read)> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines()
        .map(|l| {
            let mut f = l.splitn(5, '|');
            let mut next = || f.next().unwrap_or_default().to_string();
            let (host, app, msgid, sd, msg) = (next(), next(), next(), next(), next());
            let cef = portcullis_export::cef::read(&msg).unwrap_or_else(|| panic!("not CEF: {l}"));
            (host, app, msgid, sd, cef)
        })
        .collect()
}

fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stats(e: &Exporter, name: &str) -> SinkStats {
    e.stats().into_iter().find(|s| s.name == name).unwrap()
}

/// Ids in order of first arrival, checking that a repeat carries the same content.
fn first_arrivals(lines: &[portcullis_export::cef::Read]) -> Vec<String> {
    let mut seen: std::collections::HashMap<String, &portcullis_export::cef::Read> = Default::default();
    let mut order = Vec::new();
    for l in lines {
        let id = l.field("cs5").to_string();
        match seen.get(&id) {
            Some(before) => assert_eq!(before.pairs, l.pairs, "a repeat of {id} differs"),
            None => {
                seen.insert(id.clone(), l);
                order.push(id);
            }
        }
    }
    order
}

#[test]
fn rsyslog_over_tls_gets_every_alert_in_order_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path(), "rs");
    let port = free_port();
    let out = dir.path().join("rsyslog.out");
    let mut db = store(dir.path());
    // An alert before the sink existed is not sent: a new sink starts at the end.
    raise(&mut db, 1000, 1);
    let config = sink(&format!(
        r#"name = "siem"
type = "syslog"
address = "127.0.0.1:{port}"
tls = true
server_name = "localhost"
ca_file = "{}"
max_frame_bytes = 1024"#,
        certs.ca.display()
    ));
    let peer = rsyslog(dir.path(), port, Some(&certs), &out);
    let exporter = start(dir.path(), &[config]);
    raise(&mut db, 0, 40);
    wait_until("40 alerts at rsyslog", 30, || rsyslog_lines(&out).len() >= 40);
    let lines = rsyslog_lines(&out);
    for (i, (host, app, msgid, sd, cef)) in lines.iter().enumerate() {
        assert_eq!(
            (host.as_str(), app.as_str(), msgid.as_str(), sd.as_str()),
            ("vpn-radius-01", "portcullis", "impossible_travel", "-")
        );
        assert_eq!(
            cef.header[..7],
            ["CEF:0", "Portcullis", "Portcullis", "0.1.0", "impossible_travel", "Impossible travel", "10"]
        );
        assert_eq!(cef.field("cs2"), "new");
        assert_eq!(cef.field("cs5"), format!("alert-{}", i + 2));
        let user = if i == 0 { "ev|il=\\user\r\nCEF:0|x".to_string() } else { format!("user{i}@corp.example") };
        assert_eq!(cef.field("suser"), user);
        assert_eq!(cef.field("msg"), format!("{user} travelled too fast ünï {i}"));
        assert_eq!(cef.field("cs1"), format!("https://portcullis.example/alerts/{}", i + 2));
    }

    // A long message is cut to the frame limit, never split into a second message.
    let mut long = draft(AlertKind::BruteForce, "longuser", 5, "long", "long");
    long.message = "x".repeat(5000);
    db.record_alerts(&[long], 1_765_000_100_000).unwrap();
    wait_until("the long alert", 30, || rsyslog_lines(&out).len() >= 41);
    let cut = &rsyslog_lines(&out)[40].4;
    assert_eq!((cut.field("suser"), cut.field("cs2")), ("longuser", "new"));
    assert!(cut.field("msg").len() < 1024 && cut.field("msg").starts_with("xxx"));
    assert_eq!(stats(&exporter, "siem").truncated, 1);

    // The receiver dies (SIGKILL); alerts keep coming; it returns on the same port.
    drop(peer);
    raise(&mut db, 100, 30);
    wait_until("the sink to see the receiver gone and owe the 30 alerts", 15, || {
        let s = stats(&exporter, "siem");
        !s.up && s.lag >= 30
    });
    let _peer = rsyslog(dir.path(), port, Some(&certs), &out);
    let expected: Vec<String> = (2..=72).map(|seq| format!("alert-{seq}")).collect();
    wait_until("every alert after the restart", 60, || {
        first_arrivals(&rsyslog_lines(&out).into_iter().map(|l| l.4).collect::<Vec<_>>()).len() >= expected.len()
    });
    let order = first_arrivals(&rsyslog_lines(&out).into_iter().map(|l| l.4).collect::<Vec<_>>());
    assert_eq!(order, expected);
    wait_until("the lag to reach zero", 10, || stats(&exporter, "siem").lag == 0);
    let s = stats(&exporter, "siem");
    assert!(s.up && s.sent >= 71, "{s:?}");

    // A restart of the exporter resumes from its cursor: nothing twice, nothing missed.
    exporter.stop();
    drop(exporter);
    let before = rsyslog_lines(&out).len();
    raise(&mut db, 200, 2);
    let config = sink(&format!(
        "name = \"siem\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{port}\"\ntls = true\nca_file = \"{}\"",
        certs.ca.display()
    ));
    let exporter = start(dir.path(), &[config]);
    wait_until("the two alerts raised while stopped", 30, || rsyslog_lines(&out).len() >= before + 2);
    std::thread::sleep(Duration::from_millis(500));
    let lines = rsyslog_lines(&out);
    let tail: Vec<&str> = lines[before..].iter().map(|l| l.4.field("cs5")).collect();
    assert_eq!(tail, ["alert-73", "alert-74"]);
    drop(exporter);
}

#[test]
fn syslog_ng_over_tls_and_rsyslog_over_tcp_at_once_and_a_bad_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path(), "ng");
    let other = certs_other(dir.path());
    let (ng_port, rs_port, bad_port) = (free_port(), free_port(), free_port());
    let (ng_out, rs_out, bad_out) = (dir.path().join("ng.out"), dir.path().join("rs.out"), dir.path().join("bad.out"));
    let mut db = store(dir.path());
    let _ng = syslog_ng(dir.path(), ng_port, &certs, &ng_out);
    let _rs = rsyslog(dir.path(), rs_port, None, &rs_out);
    let _bad = rsyslog(dir.path(), bad_port, Some(&certs), &bad_out);
    let sinks = [
        sink(&format!(
            "name = \"ng\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{ng_port}\"\ntls = true\nserver_name = \"localhost\"\nca_file = \"{}\"\nfacility = \"local4\"\nauth_events = true",
            certs.ca.display()
        )),
        sink(&format!(
            "name = \"ocsf\"\ntype = \"syslog\"\nformat = \"ocsf\"\naddress = \"127.0.0.1:{rs_port}\"\nmin_severity = \"high\""
        )),
        // Signed by another CA: the handshake fails, nothing is sent.
        sink(&format!(
            "name = \"wrongca\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{bad_port}\"\ntls = true\nserver_name = \"localhost\"\nca_file = \"{}\"",
            other.display()
        )),
    ];
    let exporter = start(dir.path(), &sinks);
    raise(&mut db, 0, 5);
    // A medium alert the OCSF sink filters out.
    db.record_alerts(&[draft(AlertKind::NewCountry, "dora", 9, "m1", "m1")], 1_765_000_000_500).unwrap();
    exporter.offer_auth(&[
        auth_event(1_765_000_000_000, "pat|=x", "reject"),
        auth_event(1_765_000_000_001, "sam", "accept"),
    ]);

    let ng_lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&ng_out).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    wait_until("8 messages at syslog-ng", 30, || ng_lines().len() >= 8);
    let got = ng_lines();
    let alerts: Vec<&serde_json::Value> = got.iter().filter(|v| v["MSGID"] != "auth").collect();
    assert_eq!(alerts.len(), 6);
    for v in &alerts {
        assert_eq!(
            (v["PROGRAM"].as_str(), v["HOST"].as_str(), v["FACILITY"].as_str()),
            (Some("portcullis"), Some("vpn-radius-01"), Some("local4"))
        );
        let cef = portcullis_export::cef::read(v["MESSAGE"].as_str().unwrap()).unwrap();
        assert_eq!(cef.header[0], "CEF:0");
    }
    assert_eq!(alerts[0]["PRIORITY"], "err");
    let first = portcullis_export::cef::read(alerts[0]["MESSAGE"].as_str().unwrap()).unwrap();
    assert_eq!(first.field("suser"), "ev|il=\\user\r\nCEF:0|x");
    let auth: Vec<_> = got
        .iter()
        .filter(|v| v["MSGID"] == "auth")
        .map(|v| portcullis_export::cef::read(v["MESSAGE"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(auth.len(), 2);
    assert_eq!(
        (auth[0].header[4].as_str(), auth[0].field("suser"), auth[0].field("outcome")),
        ("auth_reject", "pat|=x", "failure")
    );

    // OCSF over plain TCP: the five high alerts only, each a complete Detection Finding.
    wait_until("5 OCSF findings at rsyslog", 30, || {
        std::fs::read_to_string(&rs_out).unwrap_or_default().lines().count() >= 5
    });
    std::thread::sleep(Duration::from_millis(500));
    let text = std::fs::read_to_string(&rs_out).unwrap();
    let findings: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l.splitn(5, '|').nth(4).unwrap()).unwrap()).collect();
    assert_eq!(findings.len(), 5);
    for f in &findings {
        assert_eq!(
            (f["class_uid"].as_u64(), f["activity_id"].as_u64(), f["type_uid"].as_u64()),
            (Some(2004), Some(1), Some(200_401))
        );
        assert!(f["finding_info"]["uid"].is_string() && f["metadata"]["product"]["name"] == "Portcullis");
    }
    assert_eq!(findings[0]["evidences"][0]["actor"]["user"]["name"], "ev|il=\\user\r\nCEF:0|x");

    let bad = stats(&exporter, "wrongca");
    assert!(!bad.up && bad.sent == 0, "{bad:?}");
    assert_eq!(std::fs::read_to_string(&bad_out).unwrap_or_default(), "");
    // The refused sink owes all six alerts, even during its back-off.
    wait_until("the refused sink to show its lag", 10, || stats(&exporter, "wrongca").lag >= 6);
}

fn certs_other(dir: &Path) -> PathBuf {
    certs(dir, "other").ca
}

#[test]
fn a_full_queue_drops_and_counts_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let _db = store(dir.path());
    // Nothing listens on this port: the sink stays down.
    let port = free_port();
    let config = sink(&format!(
        "name = \"down\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{port}\"\nauth_events = true\nqueue = 5"
    ));
    let exporter = start(dir.path(), &[config]);
    let events: Vec<_> = (0..10_000).map(|i| auth_event(i, "u", "reject")).collect();
    let began = Instant::now();
    exporter.offer_auth(&events);
    let took = began.elapsed();
    assert!(took < Duration::from_millis(500), "offering took {took:?}");
    let s = stats(&exporter, "down");
    assert!(s.dropped >= 9_995, "{s:?}");
    assert_eq!(s.sent, 0);
}

/// What the webhook receiver saw: (id, timestamp, signature, body).
type Seen = Arc<Mutex<Vec<(String, String, String, Vec<u8>)>>>;

/// An HTTP/1.1 receiver answering 503 to the first `fail` requests, then 204.
fn webhook_receiver(fail: usize) -> (u16, Seen) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut n = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = std::collections::HashMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(line.starts_with("POST /hook "), "{line}");
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
            }
            let len: usize = headers["content-length"].parse().unwrap();
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            record.lock().unwrap().push((
                headers["webhook-id"].clone(),
                headers["webhook-timestamp"].clone(),
                headers["webhook-signature"].clone(),
                body,
            ));
            n += 1;
            let status = if n <= fail { "503 Service Unavailable" } else { "204 No Content" };
            let _ = write!(stream, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (port, seen)
}

#[test]
fn webhooks_are_signed_and_a_retry_carries_the_same_id() {
    use base64::Engine as _;
    use hmac::Mac;
    let dir = tempfile::tempdir().unwrap();
    let mut db = store(dir.path());
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let secret_file = dir.path().join("hook.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let (port, seen) = webhook_receiver(2);
    let config = sink(&format!(
        "name = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret_file = \"{}\"",
        secret_file.display()
    ));
    let exporter = start(dir.path(), &[config]);
    raise(&mut db, 0, 3);
    wait_until("three alerts acknowledged", 30, || stats(&exporter, "hook").sent >= 3);
    let got = seen.lock().unwrap().clone();
    // Two 503s for the first alert, then each alert once, in order.
    let ids: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(ids, ["alert-1", "alert-1", "alert-1", "alert-2", "alert-3"]);
    let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    for (id, timestamp, signature, body) in &got {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
        assert_eq!(signature, &expected);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(now.abs_diff(timestamp.parse().unwrap()) < 300);
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["type"], "alert.new");
        assert_eq!(v["data"]["id"], id.as_str());
    }
    let first: serde_json::Value = serde_json::from_slice(&got[0].3).unwrap();
    assert_eq!(first["data"]["alert"]["user"], "ev|il=\\user\r\nCEF:0|x");
    assert_eq!(first["data"]["url"], "https://portcullis.example/alerts/1");
    let s = stats(&exporter, "hook");
    assert_eq!((s.sent, s.lag), (3, 0));
    // A status change is an update with its own id.
    db.update_alert(2, &portcullis_storage::AlertUpdate { status: Some("closed".into()), ..Default::default() }, 1)
        .unwrap();
    wait_until("the update", 30, || stats(&exporter, "hook").sent >= 4);
    let last = seen.lock().unwrap().last().cloned().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&last.3).unwrap();
    assert_eq!(
        (last.0.as_str(), v["type"].as_str(), v["data"]["alert"]["status"].as_str()),
        ("alert-4", Some("alert.update"), Some("closed"))
    );
}
