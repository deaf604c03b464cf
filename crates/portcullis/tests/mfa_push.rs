//! Push approval end to end: a webhook receiver standing in for the phone follows the
//! signed link and approves or denies; MS-CHAPv2 (pyrad) and PEAP (eapol_test) logins
//! wait for it; retransmit storms, a retry at a second server, timeouts, push fatigue
//! and an unreachable notifier in both fail modes.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{SECRET, Server, add_user, free_port, last_event, python};

struct Phone {
    child: Child,
    port: u16,
    mode: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Phone {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (mode, log) = (dir.path().join("mode"), dir.path().join("pushes.log"));
        std::fs::write(&mode, "ignore").unwrap();
        std::fs::write(&log, "").unwrap();
        let child = Command::new(python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/phone.py"))
            .arg(port.to_string())
            .arg(&mode)
            .arg(&log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the phone stand-in did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, mode, log, _dir: dir }
    }

    fn set(&self, mode: &str) {
        std::fs::write(&self.mode, mode).unwrap();
    }

    fn pushes(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

fn config(shared: &Path, webhook_port: u16, http_port: u16, extra: &str, push_extra: &str) -> String {
    format!(
        r#"
[http]
listen = ["127.0.0.1:{http_port}"]

[eap]
certificate = "{tls}/server.pem"
private_key = "{tls}/server.key"

[mfa]
state_key_file = "{shared}/mfa.key"
database = "{shared}/mfa.db"
{extra}

[mfa.push]
webhook_url = "http://127.0.0.1:{webhook_port}/notify"
public_url = "http://127.0.0.1:{http_port}"
wait_seconds = 4
max_unapproved = 3
{push_extra}

[[network_policy]]
name = "staff"
groups = ["vpn"]
"#,
        tls = shared.join("tls").display(),
        shared = shared.display()
    )
}

fn server(shared: &Path, webhook_port: u16, extra: &str) -> Server {
    server_with(shared, webhook_port, extra, "")
}

fn server_with(shared: &Path, webhook_port: u16, extra: &str, push_extra: &str) -> Server {
    let config = config(shared, webhook_port, free_port(), extra, push_extra);
    let s = Server::start_in(tempfile::tempdir().unwrap(), free_port(), &config);
    for (name, password) in [("alice", "wonderland"), ("bob", "builder"), ("erin", "eapuser")] {
        add_user(&s, name, password, &["vpn"], &[]);
        let out = s.cli(&["mfa", "enroll-push", name]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // Carl has an account but did not enrol for push.
    add_user(&s, "carl", "nopush", &["vpn"], &[]);
    // eapol_test trusts the demo CA from the server's own directory.
    std::fs::create_dir_all(s.dir.path().join("tls")).unwrap();
    std::fs::copy(shared.join("tls/ca.pem"), s.dir.path().join("tls/ca.pem")).unwrap();
    s
}

fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin()).args(["cert", "init", "--dir"]).arg(dir.path().join("tls")).output().unwrap();
    assert!(out.status.success());
    dir
}

fn pyrad(s: &Server, timeout: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pyrad_auth.py"))
        .args(["127.0.0.1", &s.auth_port.to_string(), SECRET])
        .arg(common::dictionary_dir())
        .args(args)
        .env("PYRAD_TIMEOUT", timeout)
        .env("PYRAD_RETRIES", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "pyrad: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn mschapv2_and_peap_wait_for_approval_through_the_signed_link() {
    let shared = shared_dir();
    let phone = Phone::start();
    let s = server(shared.path(), phone.port, "");

    phone.set("approve 0.5");
    let asked = time::OffsetDateTime::now_utc();
    let ok = pyrad(&s, "8", &["mschapv2", "alice", "wonderland"]);
    assert_eq!(ok["code"], "accept", "{ok}");
    assert_eq!(ok["success_verified"], true, "{ok}");
    assert_eq!(ok["send_key_ok"], true);
    let e = last_event(&s, "alice");
    assert_eq!((e["decision"].as_str(), e["mfa"].as_str()), (Some("accept"), Some("push_approved")), "{e}");
    // Stamped when the push was approved (half a second later), not when the request came.
    let decided =
        time::OffsetDateTime::parse(e["time"].as_str().unwrap(), &time::format_description::well_known::Rfc3339);
    assert!(decided.unwrap() - asked >= Duration::from_millis(500), "{e}");
    let pushes = phone.pushes();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0]["user"], "alice");
    assert!(pushes[0]["url"].as_str().unwrap().contains("/mfa/push/"), "{pushes:?}");

    phone.set("deny 0.3");
    assert_eq!(pyrad(&s, "8", &["mschapv2", "alice", "wonderland"])["code"], "reject");
    assert_eq!(last_event(&s, "alice")["mfa"], "push_denied");

    phone.set("approve 1");
    common::eapol_peap(&s, "erin", "anonymous", "eapuser");
    let e = last_event(&s, "erin");
    assert_eq!((e["method"].as_str(), e["mfa"].as_str()), (Some("peap"), Some("push_approved")), "{e}");

    // Unanswered: the login fails when the wait runs out.
    phone.set("ignore");
    assert_eq!(pyrad(&s, "8", &["mschapv2", "bob", "builder"])["code"], "reject");
    assert_eq!(last_event(&s, "bob")["mfa"], "push_timeout");
}

#[test]
fn a_retransmit_storm_and_a_second_server_send_one_push() {
    let shared = shared_dir();
    let phone = Phone::start();
    let a = server(shared.path(), phone.port, "");
    let b = server(shared.path(), phone.port, "");

    // Retransmits every 100 ms for 3 s; the phone approves after 1.5 s.
    phone.set("approve 1.5");
    let storm = pyrad(&a, "8", &["storm", "alice", "wonderland", "3"]);
    assert_eq!(storm["code"], "accept", "{storm}");
    assert_eq!(storm["identical"], true, "every reply is the one answer: {storm}");
    assert_eq!(phone.pushes().len(), 1, "one push for the whole storm");
    let events = a.cli(&["auth-log", "--format", "json", "--user", "alice"]);
    let v: Vec<serde_json::Value> = serde_json::from_slice(&events.stdout).unwrap();
    assert_eq!(v.len(), 1, "one decision: {v:?}");

    // The NAS gives up on server A and sends the same request to server B while the
    // push is pending: it joins that push.
    phone.set("approve 2.5");
    let r = pyrad(&a, "8", &["failover", "bob", "builder", &b.auth_port.to_string()]);
    assert_eq!((r["a"].as_str(), r["b"].as_str()), (Some("accept"), Some("accept")), "{r}");
    let bob: Vec<_> = phone.pushes().into_iter().filter(|p| p["user"] == "bob").collect();
    assert_eq!(bob.len(), 1, "the retry joined the pending push: {bob:?}");
}

#[test]
fn one_approval_admits_one_login_and_only_enrolled_users_get_a_push() {
    let shared = shared_dir();
    let phone = Phone::start();
    let s = server(shared.path(), phone.port, "");
    // Two logins of the same user from the same NAS and station at once: two pushes,
    // each approved on its own (approving one does not admit the other).
    phone.set("approve 0.5");
    let r = pyrad(&s, "8", &["two-logins", "alice", "wonderland"]);
    assert_eq!((r["a"].as_str(), r["b"].as_str()), (Some("accept"), Some("accept")), "{r}");
    let alice: Vec<_> = phone.pushes().into_iter().filter(|p| p["user"] == "alice").collect();
    assert_eq!(alice.len(), 2, "a second login never joins the first one's push: {alice:?}");
    // A user without a push enrolment gets no push, whoever reads the channel.
    assert_eq!(pyrad(&s, "8", &["mschapv2", "carl", "nopush"])["code"], "reject");
    assert_eq!(last_event(&s, "carl")["mfa"], "not_enrolled");
    assert!(phone.pushes().iter().all(|p| p["user"] != "carl"), "no push for carl");
}

#[test]
fn push_fatigue_and_an_unreachable_notifier_in_both_fail_modes() {
    let shared = shared_dir();
    let phone = Phone::start();
    let s = server(shared.path(), phone.port, "");
    phone.set("deny 0.2");
    for _ in 0..3 {
        assert_eq!(pyrad(&s, "8", &["mschapv2", "alice", "wonderland"])["code"], "reject");
    }
    assert_eq!(pyrad(&s, "8", &["mschapv2", "alice", "wonderland"])["code"], "reject");
    assert_eq!(last_event(&s, "alice")["mfa"], "push_fatigue");
    assert_eq!(phone.pushes().len(), 3, "no fourth push");

    phone.set("down");
    assert_eq!(pyrad(&s, "8", &["mschapv2", "bob", "builder"])["code"], "reject");
    let e = last_event(&s, "bob");
    assert_eq!(e["mfa"], "push_unavailable", "{e}");
    // The webhook URL (its path may be the credential) is in no log and no event.
    let audit = std::fs::read_to_string(s.dir.path().join("data/auth.log")).unwrap();
    assert!(!audit.contains("/notify") && !s.log().contains("/notify"), "the webhook URL leaked: {e}");

    let safe_shared = shared_dir();
    let safe = server(safe_shared.path(), phone.port, "fail_mode = \"safe\"");
    assert_eq!(pyrad(&safe, "8", &["mschapv2", "bob", "builder"])["code"], "accept");
    let e = last_event(&safe, "bob");
    assert_eq!(e["mfa"], "fail_safe_admitted", "{e}");
    assert!(e["message"].as_str().unwrap().contains("WITHOUT A SECOND FACTOR"), "{e}");
}

fn http(method: &str, url: &str) -> String {
    let script = "import sys, urllib.request\n\
                  r = urllib.request.Request(sys.argv[2], data=b'' if sys.argv[1] == 'POST' else None, method=sys.argv[1])\n\
                  print(urllib.request.urlopen(r, timeout=10).read().decode())";
    let out = Command::new(python()).args(["-c", script, method, url]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn self_service_enrolment_through_a_one_time_link() {
    let shared = shared_dir();
    let phone = Phone::start();
    let s = server(shared.path(), phone.port, "");
    let out = s.cli(&["mfa", "enroll-link", "alice"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(url.contains("/mfa/enroll/"), "{url}");
    assert!(http("GET", &url).contains("Create my authenticator entry"), "a preview does not use the link");
    let page = http("POST", &url);
    assert!(page.contains("<svg"), "QR code as SVG: {page}");
    let secret = page.split("by hand: <code>").nth(1).and_then(|r| r.split('<').next()).unwrap().to_string();
    assert_eq!(secret.len(), 32, "{page}");
    assert!(http("POST", &url).contains("not valid"), "the link works once");
    assert!(http("GET", &url).contains("not valid"));
    let listed = s.cli(&["mfa", "list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(v[0]["user"], "alice");
    assert_eq!(v[0]["recovery_codes_left"], 10);
}

#[test]
fn number_matching_for_pap_pushes() {
    let shared = shared_dir();
    let phone = Phone::start();
    let numbered = server_with(shared.path(), phone.port, "", "for_pap = true\nnumber_matching = true");
    let prompt = numbered.dir.path().join("prompt.txt");
    let run = |mode: &str| {
        phone.set(mode);
        let out = Command::new(python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pyrad_auth.py"))
            .args(["127.0.0.1", &numbered.auth_port.to_string(), SECRET])
            .arg(common::dictionary_dir())
            .args(["totp", "bob", "builder", "AAAA", "code=ok"])
            .env("PYRAD_TIMEOUT", "8")
            .env("PROMPT_FILE", &prompt)
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let r = run(&format!("approve 1 {}", prompt.display()));
    assert_eq!(r["first"], "challenge", "{r}");
    assert!(r["prompt"].as_str().unwrap().contains("type "), "{r}");
    assert_eq!(r["answer"], "accept", "the right number approves: {r}");
    assert_eq!(last_event(&numbered, "bob")["mfa"], "push_approved");
    let r = run("approve 1 WRONG");
    assert_eq!(r["answer"], "reject", "a wrong number denies: {r}");
    assert_eq!(last_event(&numbered, "bob")["mfa"], "push_denied");
}

#[test]
fn an_enrolment_link_never_replaces_an_existing_factor() {
    let shared = shared_dir();
    let phone = Phone::start();
    let s = server(shared.path(), phone.port, "");
    assert!(s.cli(&["mfa", "enroll", "alice", "--format", "json"]).status.success());
    let out = s.cli(&["mfa", "enroll-link", "alice"]);
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let page = http("POST", &url);
    assert!(!page.contains("<svg") && page.contains("already has a second factor"), "{page}");
}
