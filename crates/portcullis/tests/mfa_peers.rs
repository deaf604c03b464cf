//! The second factor against pyrad and radclient: TOTP by Access-Challenge (codes
//! computed by the test), two servers sharing the state key and database, replay,
//! lockout and its expiry, recovery codes, unenrolled users and policies without MFA.

mod common;

use std::process::Command;

use common::{SECRET, Server, add_user, free_port, last_event, python};
use portcullis_auth::mfa::{Totp, TotpAlgorithm};

const POLICIES: &str = r#"
[[network_policy]]
name = "service accounts"
groups = ["svc"]
mfa = "off"

[[network_policy]]
name = "staff"
groups = ["vpn"]
session_timeout = 3600
"#;

fn mfa_block(shared: &std::path::Path) -> String {
    format!(
        "\n[mfa]\nstate_key_file = \"{}\"\ndatabase = \"{}\"\nlockout_failures = 3\nlockout_seconds = 2\n",
        shared.join("mfa.key").display(),
        shared.join("mfa.db").display()
    )
}

struct Enrolled {
    secret_b32: String,
    secret: Vec<u8>,
    recovery: Vec<String>,
}

fn enroll(s: &Server, user: &str) -> Enrolled {
    let out = s.cli(&["mfa", "enroll", user, "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret_b32 = v["secret"].as_str().unwrap().to_string();
    assert!(v["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/Portcullis:"));
    Enrolled {
        secret: base32_decode(&secret_b32),
        secret_b32,
        recovery: v["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect(),
    }
}

fn base32_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => continue,
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

fn code(secret: &[u8], offset: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    Totp { algorithm: TotpAlgorithm::Sha1, digits: 6, step: 30 }.code(secret, (now + offset) as u64)
}

/// pyrad: PAP, then the answer to the challenge (`answer-port=`, `code=`, `offset=`).
fn round_trip(s: &Server, user: &str, password: &str, e: &Enrolled, options: &[String]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pyrad_auth.py"))
        .args(["127.0.0.1", &s.auth_port.to_string(), SECRET])
        .arg(common::dictionary_dir())
        .args(["totp", user, password, &e.secret_b32])
        .args(options)
        .output()
        .unwrap();
    assert!(out.status.success(), "pyrad: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn two_servers() -> (Server, Server, tempfile::TempDir) {
    let shared = tempfile::tempdir().unwrap();
    let extra = format!("{}{POLICIES}", mfa_block(shared.path()));
    let a = Server::start(&extra);
    let b = Server::start_in(tempfile::tempdir().unwrap(), free_port(), &extra);
    for s in [&a, &b] {
        add_user(s, "bob", "hello", &["vpn"], &[]);
        add_user(s, "carl", "nofactor", &["vpn"], &[]);
        add_user(s, "pat", "service", &["svc"], &[]);
        add_user(s, "dave", "radclient", &["vpn"], &[]);
    }
    (a, b, shared)
}

#[test]
fn totp_challenge_round_trip_shared_state_replay_lockout_and_recovery() {
    let (a, b, _shared) = two_servers();
    let bob = enroll(&a, "bob");

    let r = round_trip(&a, "bob", "hello", &bob, &["offset=-30".into()]);
    assert_eq!((r["first"].as_str(), r["answer"].as_str()), (Some("challenge"), Some("accept")), "{r}");
    assert_eq!(r["prompt"], "Enter the code from your authenticator app");
    assert_eq!(r["Session-Timeout"], 3600, "the granting policy's replies come with the accept");
    assert_eq!(r["ma_first"], true);
    let e = last_event(&a, "bob");
    assert_eq!((e["decision"].as_str(), e["mfa"].as_str()), (Some("accept"), Some("totp")), "{e}");

    // The answer goes to the other server, which shares the key and the database.
    let now_code = code(&bob.secret, 0);
    let r = round_trip(&a, "bob", "hello", &bob, &[format!("answer-port={}", b.auth_port), format!("code={now_code}")]);
    assert_eq!(r["answer"], "accept", "{r}");
    // The same code again, anywhere: refused.
    let r = round_trip(&b, "bob", "hello", &bob, &[format!("code={now_code}")]);
    assert_eq!((r["answer"].as_str(), r["reply_message"].as_str()), (Some("reject"), Some("Wrong code")), "{r}");
    assert_eq!(last_event(&b, "bob")["mfa"], "replayed");

    // The replay was the first failure; two wrong codes make three, which locks the
    // factor for two seconds; then a fresh code works.
    for _ in 0..2 {
        let r = round_trip(&a, "bob", "hello", &bob, &["code=000000".into()]);
        assert_eq!(r["answer"], "reject", "{r}");
    }
    assert_eq!(last_event(&a, "bob")["mfa"], "locked_out");
    let r = round_trip(&b, "bob", "hello", &bob, &["offset=30".into()]);
    assert_eq!(r["first"], "reject", "locked out on the other server too: {r}");
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let r = round_trip(&b, "bob", "hello", &bob, &["offset=30".into()]);
    assert_eq!(r["answer"], "accept", "the lock expired: {r}");

    // A recovery code works once.
    let recovery = format!("code={}", bob.recovery[0]);
    assert_eq!(round_trip(&a, "bob", "hello", &bob, std::slice::from_ref(&recovery))["answer"], "accept");
    assert_eq!(last_event(&a, "bob")["mfa"], "recovery_code");
    assert_eq!(round_trip(&a, "bob", "hello", &bob, &[recovery])["answer"], "reject");

    // A wrong password never reaches the second factor.
    assert_eq!(round_trip(&a, "bob", "wrong", &bob, &[])["first"], "reject");
    // Unenrolled users are rejected (require_user_match); policies with mfa = "off" pass.
    assert_eq!(round_trip(&a, "carl", "nofactor", &bob, &[])["first"], "reject");
    assert_eq!(last_event(&a, "carl")["mfa"], "not_enrolled");
    assert_eq!(round_trip(&a, "pat", "service", &bob, &[])["first"], "accept");
    let challenges = a.cli(&["auth-log", "--format", "json", "--user", "bob"]);
    let v: Vec<serde_json::Value> = serde_json::from_slice(&challenges.stdout).unwrap();
    assert!(v.iter().any(|e| e["decision"] == "challenge" && e["mfa"] == "challenge"), "{v:?}");
}

#[test]
fn radclient_answers_the_challenge_with_state() {
    let (a, _b, _shared) = two_servers();
    let dave = enroll(&a, "dave");
    let text = radclient_challenge(&a, "dave", "radclient", &code(&dave.secret, 0));
    assert!(text.contains("Access-Accept"), "{text}");
}

#[test]
fn password_and_code_concatenated_and_exempt_nas() {
    let shared = tempfile::tempdir().unwrap();
    let extra = format!("{}concatenated_separator = \",\"\n{POLICIES}", mfa_block(shared.path()));
    let s = Server::start(&extra);
    add_user(&s, "bob", "hello", &["vpn"], &[]);
    let bob = enroll(&s, "bob");
    let (ok, text) = common::radtest(&s, "pap", "bob", &format!("hello,{}", code(&bob.secret, 0)));
    assert!(ok, "password,code in one User-Password: {text}");
    assert_eq!(last_event(&s, "bob")["mfa"], "totp");
    let (ok, text) = common::radtest(&s, "pap", "bob", "hello,000000");
    assert!(!ok && text.contains("Access-Reject"), "{text}");
    assert_eq!(last_event(&s, "bob")["mfa"], "wrong_code");
    // Without a code the NAS gets the challenge as usual.
    let (ok, text) = common::radtest(&s, "pap", "bob", "hello");
    assert!(!ok && text.contains("Access-Challenge"), "{text}");

    let exempt_extra = format!("{}exempt_nas = [\"127.0.0.0/8\"]\n{POLICIES}", mfa_block(shared.path()));
    let e = Server::start(&exempt_extra);
    add_user(&e, "bob", "hello", &["vpn"], &[]);
    assert!(common::radtest(&e, "pap", "bob", "hello").0, "exempt NAS: no second factor");
    assert_eq!(last_event(&e, "bob")["mfa"], "exempt");
}

#[test]
fn a_challenge_is_answered_once_by_its_own_user_under_its_own_policy() {
    let shared = tempfile::tempdir().unwrap();
    // Two policies whose names share their first 60 octets: the answer must carry the
    // replies of the policy that granted, not of the first one with a similar name.
    let common = "remote access for members of the security operations team -";
    let extra = format!(
        "{}\n[[network_policy]]\nname = \"{common} administrators\"\ngroups = [\"admins\"]\nsession_timeout = 7200\n\n\
         [[network_policy]]\nname = \"{common} contractors\"\ngroups = [\"contractors\"]\nsession_timeout = 600\n",
        mfa_block(shared.path())
    );
    let s = Server::start(&extra);
    add_user(&s, "cora", "contract", &["contractors"], &[]);
    add_user(&s, "bob", "hello", &["admins"], &[]);
    let cora = enroll(&s, "cora");
    enroll(&s, "bob");
    let r = round_trip(&s, "cora", "contract", &cora, &["answer-twice=1".into()]);
    assert_eq!(r["answer"], "accept", "{r}");
    assert_eq!(r["Session-Timeout"], 600, "the contractors' policy, by its full name: {r}");
    assert_eq!(r["second_answer"], "reject", "a State is answered once: {r}");
    assert_eq!(last_event(&s, "cora")["mfa"], "invalid_state");
    // Another user cannot answer cora's challenge, even with a valid code of cora's.
    let r = round_trip(&s, "cora", "contract", &cora, &["answer-user=bob".into()]);
    assert_eq!(r["answer"], "reject", "{r}");
}

#[test]
fn exempt_nas_is_the_udp_source_not_the_nas_ip_address_a_client_claims() {
    let shared = tempfile::tempdir().unwrap();
    let extra = format!("{}exempt_nas = [\"192.0.2.0/24\"]\n{POLICIES}", mfa_block(shared.path()));
    let s = Server::start(&extra);
    add_user(&s, "bob", "hello", &["vpn"], &[]);
    let bob = enroll(&s, "bob");
    let r = round_trip(&s, "bob", "hello", &bob, &["nas-ip=192.0.2.1".into()]);
    assert_eq!(r["first"], "challenge", "a NAS-IP-Address of an exempt NAS from elsewhere skips nothing: {r}");
}

/// radclient sends the password, then `answer` to the challenge; returns the answer's reply.
fn radclient_challenge(s: &Server, user: &str, password: &str, answer: &str) -> String {
    let (ok, text) = common::radclient(
        s.auth_addr(),
        "auth",
        SECRET,
        &format!("User-Name = \"{user}\"\nUser-Password = \"{password}\"\nMessage-Authenticator = 0x00\n"),
    );
    assert!(!ok && text.contains("Access-Challenge"), "{text}");
    let state = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("State = "))
        .unwrap_or_else(|| panic!("no State in {text}"))
        .trim()
        .to_string();
    let reply = format!(
        "User-Name = \"{user}\"\nUser-Password = \"{answer}\"\nState = {state}\nMessage-Authenticator = 0x00\n"
    );
    common::radclient(s.auth_addr(), "auth", SECRET, &reply).1
}

#[test]
fn right_password_wrong_codes_alert_as_a_failed_second_factor_not_as_brute_force() {
    let shared = tempfile::tempdir().unwrap();
    let extra = format!("{}{POLICIES}", mfa_block(shared.path()));
    let s = Server::start(&extra);
    add_user(&s, "erin", "correct horse", &["vpn"], &[]);
    add_user(&s, "olga", "no policy", &["contractors"], &[]);
    let erin = enroll(&s, "erin");
    let wrong = if code(&erin.secret, 0) == "000000" { "111111" } else { "000000" };
    for _ in 0..3 {
        let text = radclient_challenge(&s, "erin", "correct horse", wrong);
        assert!(text.contains("Access-Reject"), "{text}");
    }
    // No network policy matches olga's groups: a policy denial.
    let (ok, text) = common::radtest(&s, "pap", "olga", "no policy");
    assert!(!ok && text.contains("Access-Reject"), "{text}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let alerts = loop {
        let out = s.cli(&["alerts", "list", "--format", "json"]);
        let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if all.iter().any(|a| a["kind"] == "failed_second_factor") {
            break all;
        }
        assert!(std::time::Instant::now() < deadline, "no alert: {all:?}\n{}", s.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let alert = alerts.iter().find(|a| a["kind"] == "failed_second_factor").unwrap();
    assert_eq!(alert["user"], "erin", "{alert}");
    assert!(alerts.iter().all(|a| a["kind"] != "brute_force" && a["kind"] != "password_spray"), "{alerts:?}");
    let out = s.cli(&["users", "show", "erin", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let profile: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let timeline = profile["timeline"].as_array().unwrap();
    assert!(timeline.iter().any(|e| e["activity"] == "mfa_failure" && e["reason"] == "wrong_code"), "{timeline:?}");
    assert!(timeline.iter().all(|e| e["reason"] != "bad_password"), "{timeline:?}");
    // The policy denial is olga's activity.
    let out = s.cli(&["users", "show", "olga", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let profile: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        profile["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["activity"] == "auth_failure" && e["reason"] == "policy"),
        "{profile}"
    );
}
