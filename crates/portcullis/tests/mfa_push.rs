//! Push approval end to end: a receiver standing in for the phone (a JSON webhook, or
//! ntfy's plain-text publish, which is an HTTP POST) follows the signed link and approves
//! with the user's TOTP code, denies or reports; MS-CHAPv2 (pyrad) and PEAP (eapol_test)
//! logins wait for it; per-user targets, approvals without or with a wrong or replayed
//! code, retransmit storms, a retry at a second server, timeouts, push fatigue and an
//! unreachable notifier in both fail modes.

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
    secrets: PathBuf,
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
        let secrets = dir.path().join("secrets");
        std::fs::write(&mode, "ignore").unwrap();
        std::fs::write(&log, "").unwrap();
        std::fs::write(&secrets, "").unwrap();
        let child = Command::new(python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/phone.py"))
            .arg(port.to_string())
            .arg(&mode)
            .arg(&log)
            .arg(&secrets)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the phone stand-in did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, mode, log, secrets, _dir: dir }
    }

    /// The phone holds the user's authenticator entry (its base32 secret).
    fn learn(&self, user: &str, secret: &str) {
        let mut known = std::fs::read_to_string(&self.secrets).unwrap();
        known.push_str(&format!("{user} {secret}\n"));
        std::fs::write(&self.secrets, known).unwrap();
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
# The phone stand-in follows plain links; plain HTTP is allowed on loopback.
tls = false

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

fn server(shared: &Path, phone: &Phone, extra: &str) -> Server {
    server_with(shared, phone, extra, "")
}

/// Enrols a TOTP factor for `user` (which proves approvals) and gives it to the phone.
fn enrol_totp(s: &Server, phone: &Phone, user: &str) -> String {
    let out = s.cli(&["mfa", "enroll", user, "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = v["secret"].as_str().unwrap().to_string();
    phone.learn(user, &secret);
    secret
}

fn server_with(shared: &Path, phone: &Phone, extra: &str, push_extra: &str) -> Server {
    let config = config(shared, phone.port, free_port(), extra, push_extra);
    let s = Server::start_in(tempfile::tempdir().unwrap(), free_port(), &config);
    for (name, password) in [("alice", "wonderland"), ("bob", "builder"), ("erin", "eapuser")] {
        add_user(&s, name, password, &["vpn"], &[]);
        enrol_totp(&s, phone, name);
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
    let s = server(shared.path(), &phone, "");

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
    let a = server(shared.path(), &phone, "");
    let b = server(shared.path(), &phone, "");

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
    let s = server(shared.path(), &phone, "");
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
    let s = server(shared.path(), &phone, "");
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
    let safe = server(safe_shared.path(), &phone, "fail_mode = \"safe\"");
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
    let prefixes = format!("target_prefixes = [\"http://127.0.0.1:{}/\"]", phone.port);
    let s = server_with(shared.path(), &phone, "", &prefixes);
    let out = s.cli(&["mfa", "enroll-link", "carl"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(url.contains("/mfa/enroll/"), "{url}");
    assert!(http("GET", &url).contains("Create my authenticator entry"), "a preview does not use the link");
    let page = http("POST", &url);
    assert!(page.contains("<svg"), "QR code as SVG: {page}");
    assert!(page.contains("name=\"ntfy\""), "the user may name their own ntfy topic: {page}");
    let secret = page.split("by hand: <code>").nth(1).and_then(|r| r.split('<').next()).unwrap().to_string();
    assert_eq!(secret.len(), 32, "{page}");
    assert!(http("POST", &url).contains("not valid"), "the link works once");
    assert!(http("GET", &url).contains("not valid"));
    let listed = || -> Vec<serde_json::Value> {
        let out = s.cli(&["mfa", "list", "--format", "json"]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert!(listed().iter().all(|u| u["user"] != "carl"), "not active before a first code");
    // A wrong first code, or a topic outside the prefixes, activates nothing.
    let confirm = format!("{url}/confirm");
    let wrong = if code_now(&secret, 0) == "000000" { "111111" } else { "000000" };
    assert!(post_form(&confirm, &format!("code={wrong}")).contains("does not match"));
    let outside = format!("code={}&ntfy=http%3A%2F%2F127.0.0.1%3A1%2Fcarl", code_now(&secret, 0));
    assert!(post_form(&confirm, &outside).contains("refused"));
    assert!(listed().iter().all(|u| u["user"] != "carl"));
    let topic = format!("http://127.0.0.1:{}/carl-topic-9q", phone.port);
    // The code of the step before (within the one step of skew), so the phone's current
    // code is still unused when it approves below.
    let done = post_form(&confirm, &format!("code={}&ntfy={}", code_now(&secret, -1), topic.replace(':', "%3A")));
    assert!(done.contains("Recovery codes") && done.contains("active"), "{done}");
    assert!(post_form(&confirm, &format!("code={}", code_now(&secret, 1))).contains("not valid"), "confirmed once");
    let carl = listed().into_iter().find(|u| u["user"] == "carl").unwrap();
    assert_eq!((carl["recovery_codes_left"].as_u64(), carl["push_target"].as_str()), (Some(10), Some("ntfy")));
    // Carl's logins now go to his own topic and are approved with his code.
    phone.learn("carl", &secret);
    phone.set("approve 0.3");
    let r = pyrad(&s, "8", &["mschapv2", "carl", "nopush"]);
    assert_eq!((r["code"].as_str(), r["send_key_ok"].as_bool()), (Some("accept"), Some(true)), "{r}");
    assert_eq!(phone.pushes().last().unwrap()["path"], "/carl-topic-9q");
}

#[test]
fn number_matching_for_pap_pushes() {
    let shared = shared_dir();
    let phone = Phone::start();
    let numbered = server_with(shared.path(), &phone, "", "for_pap = true\nnumber_matching = true");
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
    let s = server(shared.path(), &phone, "");
    assert!(s.cli(&["mfa", "enroll", "alice", "--format", "json"]).status.success());
    let out = s.cli(&["mfa", "enroll-link", "alice"]);
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let page = http("POST", &url);
    assert!(!page.contains("<svg") && page.contains("already has a second factor"), "{page}");
}

#[test]
fn each_user_gets_pushes_at_their_own_ntfy_topic() {
    let shared = shared_dir();
    let channel = Phone::start();
    let s = server(shared.path(), &channel, "");
    let (alice_phone, bob_phone) = (Phone::start(), Phone::start());
    for (user, phone) in [("alice", &alice_phone), ("bob", &bob_phone)] {
        let topic = format!("http://127.0.0.1:{}/{user}-vpn-7f3k", phone.port);
        let out = s.cli(&["mfa", "enroll-push", user, "--ntfy", &topic]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let secret = std::fs::read_to_string(&channel.secrets).unwrap();
        let line = secret.lines().find(|l| l.starts_with(&format!("{user} "))).unwrap();
        phone.learn(user, line.split(' ').nth(1).unwrap());
        phone.set("approve 0.3");
    }
    // A target outside http(s) is refused when it is set.
    let out = s.cli(&["mfa", "enroll-push", "alice", "--ntfy", "file:///etc/passwd"]);
    assert!(!out.status.success());

    for (user, password) in [("alice", "wonderland"), ("bob", "builder"), ("alice", "wonderland")] {
        let r = pyrad(&s, "8", &["mschapv2", user, password]);
        assert_eq!((r["code"].as_str(), r["send_key_ok"].as_bool()), (Some("accept"), Some(true)), "{user}: {r}");
        let e = last_event(&s, user);
        assert_eq!(e["mfa"], "push_approved", "{e}");
        let approval = &e["approval"];
        assert_eq!(
            (approval["factor"].as_str(), approval["address"].as_str(), approval["user_agent"].as_str()),
            (Some("totp"), Some("127.0.0.1"), Some("phone-stand-in/1")),
            "the auth log says which factor approved, from where, with what: {e}"
        );
    }
    let (a, b) = (alice_phone.pushes(), bob_phone.pushes());
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(b.len(), 1, "{b:?}");
    for (pushes, user) in [(&a, "alice"), (&b, "bob")] {
        for p in pushes.iter() {
            assert_eq!(p["ntfy"], true, "ntfy's plain-text publish: {p}");
            assert_eq!(p["path"], format!("/{user}-vpn-7f3k"));
            assert_eq!(p["title"], "VPN sign-in");
            assert!(p["message"].as_str().unwrap().starts_with(&format!("{user} is signing in")), "{p}");
        }
    }
    assert!(channel.pushes().is_empty(), "nothing went through the shared channel");
    let listed = s.cli(&["mfa", "list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let kinds: Vec<_> = v.as_array().unwrap().iter().map(|u| (u["user"].clone(), u["push_target"].clone())).collect();
    assert!(kinds.contains(&("alice".into(), "ntfy".into())) && kinds.contains(&("erin".into(), "shared".into())));
    // Reset: no target, no push.
    assert!(s.cli(&["mfa", "reset", "bob"]).status.success());
    assert_eq!(pyrad(&s, "8", &["mschapv2", "bob", "builder"])["code"], "reject");
    assert_eq!(bob_phone.pushes().len(), 1, "no push after the reset");
}

/// Decodes RFC 4648 base32 without padding.
fn base32_decode(text: &str) -> Vec<u8> {
    let (mut out, mut bits, mut value) = (Vec::new(), 0u32, 0u64);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {text}"),
        };
        value = (value << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((value >> bits) as u8);
        }
    }
    out
}

fn code_now(secret: &str, offset_steps: i64) -> String {
    let totp = portcullis_auth::mfa::Totp { algorithm: portcullis_auth::mfa::TotpAlgorithm::Sha1, digits: 6, step: 30 };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    totp.code(&base32_decode(secret), now.saturating_add_signed(offset_steps * 30))
}

/// POSTs a form with a User-Agent; the answer page.
fn post_form(url: &str, form: &str) -> String {
    let script = "import sys, urllib.request\n\
                  r = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method='POST')\n\
                  r.add_header('content-type', 'application/x-www-form-urlencoded')\n\
                  print(urllib.request.urlopen(r, timeout=10).read().decode())";
    let out = Command::new(python()).args(["-c", script, url, form]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts a login in the background and returns it with the link of its push.
fn held_login(
    s: &Server,
    phone: &Phone,
    user: &str,
    password: &str,
) -> (std::thread::JoinHandle<serde_json::Value>, String) {
    let before = phone.pushes().len();
    let args: Vec<String> = ["mschapv2", user, password].iter().map(|a| a.to_string()).collect();
    let (port, dir) = (s.auth_port, s.dir.path().to_path_buf());
    let login = std::thread::spawn(move || {
        let out = Command::new(python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pyrad_auth.py"))
            .args(["127.0.0.1", &port.to_string(), SECRET])
            .arg(common::dictionary_dir())
            .args(&args)
            .env("PYRAD_TIMEOUT", "8")
            .env("PYRAD_RETRIES", "1")
            .current_dir(dir)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(p) = phone.pushes().get(before) {
            return (login, p["url"].as_str().unwrap().to_string());
        }
        assert!(Instant::now() < deadline, "no push for {user}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn approve_url(link: &str) -> String {
    let (path, query) = link.split_once('?').unwrap();
    format!("{path}/approve?{query}")
}

#[test]
fn approving_needs_the_users_own_code_once_and_a_report_raises_an_alert() {
    let shared = shared_dir();
    let phone = Phone::start();
    let s = server(shared.path(), &phone, "");
    let secrets = std::fs::read_to_string(&phone.secrets).unwrap();
    let secret_of = |user: &str| {
        secrets.lines().find(|l| l.starts_with(&format!("{user} "))).unwrap().split(' ').nth(1).unwrap().to_string()
    };

    // The page shows the context; a bare click (no code) approves nothing.
    let (login, link) = held_login(&s, &phone, "alice", "wonderland");
    let page = http("GET", &link);
    for shown in ["VPN sign-in for alice", "id=\"nas\">", "id=\"method\">mschapv2", "id=\"asked\">1", "This wasn't me"]
    {
        assert!(page.contains(shown), "{shown}: {page}");
    }
    assert!(post_form(&approve_url(&link), "").contains("needs the code"));
    // Another user's code (bob holds one account and alice's leaked link) is wrong for
    // alice: it denies her login and approves nothing.
    let refused = post_form(&approve_url(&link), &format!("code={}", code_now(&secret_of("bob"), 0)));
    assert!(refused.contains("refused"), "{refused}");
    assert_eq!(login.join().unwrap()["code"], "reject");
    assert_eq!(last_event(&s, "alice")["mfa"], "push_denied");

    // The right code approves once; replaying the same approve request changes nothing.
    let (login, link) = held_login(&s, &phone, "alice", "wonderland");
    let form = format!("code={}", code_now(&secret_of("alice"), 1));
    assert!(post_form(&approve_url(&link), &form).contains("Sign-in approved"));
    assert!(post_form(&approve_url(&link), &form).contains("can no longer be changed"), "replay refused");
    let r = login.join().unwrap();
    assert_eq!((r["code"].as_str(), r["send_key_ok"].as_bool()), (Some("accept"), Some(true)), "{r}");
    let e = last_event(&s, "alice");
    assert_eq!((e["mfa"].as_str(), e["approval"]["factor"].as_str()), (Some("push_approved"), Some("totp")), "{e}");
    // The link is bound to its login: a second login gets its own link, and the used
    // code does not approve it.
    let (login, second) = held_login(&s, &phone, "alice", "wonderland");
    assert_ne!(second, link);
    assert!(post_form(&approve_url(&link), &form).contains("can no longer be changed"));
    assert!(post_form(&approve_url(&second), &form).contains("refused"), "a code works once");
    assert_eq!(login.join().unwrap()["code"], "reject");

    // "This wasn't me": the login is rejected and an alert raised at once.
    phone.set("report 0.3");
    assert_eq!(pyrad(&s, "8", &["mschapv2", "erin", "eapuser"])["code"], "reject");
    assert_eq!(last_event(&s, "erin")["mfa"], "push_reported");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = s.cli(&["alerts", "list", "--user", "erin", "--format", "json"]);
        let alerts: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(a) = alerts.iter().find(|a| a["kind"] == "mfa_fatigue") {
            assert!(a["message"].as_str().unwrap().contains("not theirs"), "{a}");
            break;
        }
        assert!(Instant::now() < deadline, "no alert for the reported push: {alerts:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
