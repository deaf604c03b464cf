//! The running server's exports and metrics: ten wrong passwords sent with radtest
//! raise a brute-force alert that rsyslog (started here on loopback, plain TCP)
//! receives as CEF together with the ten Access-Rejects, and a scrape of `/metrics`
//! passes Debian's `promtool check metrics` and shows the decisions, the open alert
//! and the sink's counters; a scraper that is neither loopback nor carries the token
//! is refused.

mod common;
#[path = "../../export/tests/receivers/mod.rs"]
mod receivers;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Server, add_user, free_port, radtest};

/// `GET /metrics` over plain HTTP/1.1; the status code and the body.
fn scrape(port: u16, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET /metrics HTTP/1.1\r\nhost: localhost\r\n{auth}connection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start).and_then(|r| r.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{line_start} missing in\n{text}"))
}

#[test]
fn alerts_and_decisions_reach_rsyslog_and_metrics_pass_promtool() {
    let syslog_port = free_port();
    let http_port = free_port();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("rsyslog.out");
    let _rsyslog = receivers::rsyslog(work.path(), syslog_port, None, &out);
    let s = Server::start(&format!(
        "[http]\nlisten = [\"127.0.0.1:{http_port}\"]\ntls = false\n\n[metrics]\nenabled = true\n\n\
         [[export]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{syslog_port}\"\nauth_events = true\n"
    ));
    add_user(&s, "bob", "correct-horse", &[], &[]);
    for _ in 0..10 {
        let (accepted, _) = radtest(&s, "pap", "bob", "wrong-guess");
        assert!(!accepted);
    }
    let lines = || -> Vec<(String, portcullis_export::cef::Read)> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut f = l.splitn(5, '|');
                let _host = f.next();
                let app = f.next().unwrap().to_string();
                let msgid = f.next().unwrap().to_string();
                let msg = f.nth(1).unwrap();
                assert_eq!(app, "portcullis");
                (msgid, portcullis_export::cef::read(msg).unwrap_or_else(|| panic!("not CEF: {l}")))
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = lines();
        let rejects = got.iter().filter(|(id, c)| id == "auth" && c.header[4] == "auth_reject").count();
        if rejects >= 10 && got.iter().any(|(id, _)| id == "brute_force") {
            break;
        }
        assert!(Instant::now() < deadline, "rsyslog got {got:?}; server log:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = lines();
    let (_, alert) = got.iter().find(|(id, _)| id == "brute_force").unwrap();
    assert_eq!((alert.field("suser"), alert.field("cs2"), alert.header[6].as_str()), ("bob", "new", "5"));
    let (_, reject) = got.iter().find(|(id, _)| id == "auth").unwrap();
    assert_eq!(
        (reject.field("suser"), reject.field("outcome"), reject.field("dvchost").is_empty()),
        ("bob", "failure", false)
    );

    // The scrape, linted by promtool, once the receiver's last write is confirmed
    // (a second after it).
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (code, text) = scrape(http_port, None);
        assert_eq!(code, 200, "{text}");
        if text.contains("portcullis_export_lag_events{sink=\"siem\"} 0") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let file = work.path().join("scrape.txt");
    std::fs::write(&file, &text).unwrap();
    let lint = std::process::Command::new(receivers::promtool())
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    assert!(metric(&text, "portcullis_access_decisions_total{decision=\"reject\"}") >= 10);
    assert_eq!(metric(&text, "portcullis_alerts_open{kind=\"brute_force\"}"), 1);
    assert!(metric(&text, "portcullis_radius_packets_total{client=\"local\",reason=\"received\"}") >= 10);
    assert!(metric(&text, "portcullis_export_events_total{sink=\"siem\",outcome=\"sent\"}") >= 11);
    assert_eq!(metric(&text, "portcullis_export_up{sink=\"siem\"}"), 1);
    assert_eq!(metric(&text, "portcullis_export_lag_events{sink=\"siem\"}"), 0);
    assert!(!text.contains("bob"), "no user names in metrics");
}

#[test]
fn metrics_with_a_token_refuse_a_scrape_without_it() {
    let http_port = free_port();
    let work = tempfile::tempdir().unwrap();
    let token_file = work.path().join("metrics.token");
    std::fs::write(&token_file, "s3cret-scrape-token-0123456789\n").unwrap();
    let s = Server::start(&format!(
        "[http]\nlisten = [\"127.0.0.1:{http_port}\"]\ntls = false\n\n[metrics]\nenabled = true\ntoken_file = \"{}\"\n",
        token_file.display()
    ));
    assert_eq!(scrape(http_port, None).0, 403);
    assert_eq!(scrape(http_port, Some("s3cret-scrape-token-wrong")).0, 403);
    let (code, text) = scrape(http_port, Some("s3cret-scrape-token-0123456789"));
    assert_eq!(code, 200, "{}", s.log());
    assert!(text.contains("# TYPE portcullis_build_info gauge"));
    assert!(!s.log().contains("s3cret"), "the token never reaches the log");
}

#[test]
fn check_config_refuses_exports_that_would_leak_or_cannot_be_signed() {
    let work = tempfile::tempdir().unwrap();
    let secret = work.path().join("hook.secret");
    std::fs::write(&secret, "not-a-whsec-secret\n").unwrap();
    let good = work.path().join("good.secret");
    std::fs::write(&good, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
    let base = "[radius]\nacct_listen = [\"127.0.0.1:0\"]\n\n[storage]\ndata_dir = \"data\"\n\n\
                [[client]]\nname = \"local\"\naddress = \"127.0.0.1\"\nsecret = \"0123456789abcdef\"\n\n";
    let check = |export: &str| {
        let path = work.path().join("p.toml");
        std::fs::write(&path, format!("{base}{export}")).unwrap();
        let out =
            std::process::Command::new(common::bin()).arg("check-config").arg("--config").arg(&path).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, err) = check(&format!(
        "[[export]]\nname = \"h\"\ntype = \"webhook\"\nurl = \"http://hooks.example/x\"\nsecret_file = \"{}\"\n",
        good.display()
    ));
    assert!(!ok && err.contains("http:// only to a loopback address"), "{err}");
    let (ok, err) = check(&format!(
        "[[export]]\nname = \"h\"\ntype = \"webhook\"\nurl = \"https://hooks.example/x\"\nsecret_file = \"{}\"\n",
        secret.display()
    ));
    assert!(!ok && err.contains("whsec_"), "{err}");
    assert!(!err.contains("not-a-whsec-secret"), "the secret's text never reaches the output");
    let (ok, err) = check("[[export]]\nname = \"bad name\"\ntype = \"syslog\"\naddress = \"127.0.0.1:6514\"\n");
    assert!(!ok && err.contains("name"), "{err}");
    let (ok, err) = check("[[export]]\nname = \"s\"\ntype = \"syslog\"\naddress = \"127.0.0.1:6514\"\n");
    assert!(ok, "{err}");
}
