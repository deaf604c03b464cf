//! The authentication server against radtest/radclient and pyrad: PAP, CHAP and
//! MS-CHAPv2 with local users, network policies, BlastRADIUS rules and the audit log.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{SECRET, Server, add_user, python, radtest, require};

const POLICIES: &str = r#"
[[network_policy]]
name = "deny contractors"
groups = ["contractors"]
grant = false

[[network_policy]]
name = "vpn staff"
groups = ["vpn"]
methods = ["pap", "chap", "mschapv2", "eap-mschapv2", "peap"]
session_timeout = 28800
[network_policy.reply]
Class = "staff"
Filter-Id = "vpn-staff"

[[network_policy]]
name = "night shift"
groups = ["night"]
[[network_policy.time_windows]]
hours = "HOURS"

[[network_policy]]
name = "pap only"
groups = ["papers"]
methods = ["pap"]
"#;

/// A one-minute window twelve hours away from now, so "night shift" never matches now.
fn never_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let minute = ((now / 60) + 12 * 60) % 1440;
    format!("{:02}:{:02}-{:02}:{:02}", minute / 60, minute % 60, (minute + 1) / 60 % 24, (minute + 1) % 60)
}

fn server() -> Server {
    server_with("")
}

fn server_with(extra: &str) -> Server {
    let s = Server::start(&format!("\n{}\n{extra}", POLICIES.replace("HOURS", &never_now())));
    for (name, password, groups, extra) in [
        ("bob", "hello", vec!["vpn"], vec!["--chap"]),
        ("alice", "wonderland", vec!["vpn"], vec![]),
        ("carl", "contract", vec!["contractors"], vec![]),
        ("nina", "nightly", vec!["night"], vec![]),
        ("pat", "paperwork", vec!["papers"], vec![]),
        ("gus", "guest", vec!["guests"], vec![]),
        ("dora", "disabled", vec!["vpn"], vec![]),
    ] {
        add_user(&s, name, password, &groups, &extra);
    }
    let out = s.cli(&["user", "disable", "dora"]);
    assert!(out.status.success());
    s
}

fn pyrad(s: &Server, args: &[&str]) -> serde_json::Value {
    pyrad_waiting(s, args, "6")
}

/// A request the server must discard: waits 1.5 s for an answer that must not come.
fn pyrad_discarded(s: &Server, args: &[&str]) -> serde_json::Value {
    pyrad_waiting(s, args, "1.5")
}

fn pyrad_waiting(s: &Server, args: &[&str], seconds: &str) -> serde_json::Value {
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pyrad_auth.py"))
        .args(["127.0.0.1", &s.auth_port.to_string(), SECRET])
        .arg(common::dictionary_dir())
        .args(args)
        .env("PYRAD_TIMEOUT", seconds)
        .output()
        .unwrap();
    assert!(out.status.success(), "pyrad: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn auth_log(s: &Server, user: &str) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = s.cli(&["auth-log", "--format", "json", "--user", user]);
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if !v.is_empty() || std::time::Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn radtest_pap_and_chap_decisions_with_reason_codes() {
    let s = server();
    assert!(radtest(&s, "pap", "bob", "hello").0, "PAP accept");
    assert!(radtest(&s, "chap", "bob", "hello").0, "CHAP accept for a user with a reversible password");
    assert!(!radtest(&s, "pap", "bob", "nope").0, "wrong password");
    assert!(!radtest(&s, "chap", "alice", "wonderland").0, "CHAP without a reversible password");
    assert!(!radtest(&s, "pap", "nobody", "x").0, "unknown user");
    assert!(!radtest(&s, "pap", "dora", "disabled").0, "disabled user");
    assert!(!radtest(&s, "pap", "carl", "contract").0, "deny policy");
    assert!(!radtest(&s, "pap", "nina", "nightly").0, "outside the time window");
    assert!(!radtest(&s, "chap", "pat", "paperwork").0, "method not allowed");
    assert!(!radtest(&s, "pap", "gus", "guest").0, "no matching policy");
    let reason = |user: &str| {
        let v = auth_log(&s, user);
        let last = v.first().cloned().unwrap_or_default();
        (last["decision"].as_str().unwrap_or("").to_string(), last["reason_code"].as_u64().unwrap_or(999))
    };
    assert_eq!(reason("nobody"), ("reject".into(), 8));
    assert_eq!(reason("dora"), ("reject".into(), 34));
    assert_eq!(reason("carl"), ("reject".into(), 65));
    assert_eq!(reason("nina"), ("reject".into(), 37));
    assert_eq!(reason("pat"), ("reject".into(), 16), "CHAP fails first: pat has no reversible password");
    assert_eq!(reason("gus"), ("reject".into(), 48));
    let bob = auth_log(&s, "bob");
    assert_eq!(bob.len(), 3);
    let accept = bob.iter().find(|e| e["decision"] == "accept").unwrap();
    assert_eq!(accept["event_id"], 6272);
    assert_eq!(accept["policy"], "vpn staff");
    assert_eq!(accept["nas"].as_str().map(|n| !n.is_empty()), Some(true));
    for key in ["time", "user", "nas", "method", "decision", "reason_code", "event_id", "policy"] {
        assert!(accept.get(key).is_some(), "{key} missing: {accept}");
    }
    let reject = bob.iter().find(|e| e["decision"] == "reject").unwrap();
    assert_eq!((reject["reason_code"].as_u64(), reject["event_id"].as_u64()), (Some(16), Some(6273)));
    // The audit log never carries passwords.
    let audit = std::fs::read_to_string(s.dir.path().join("data/auth.log")).unwrap();
    assert!(audit.lines().count() >= 10);
    for secret in ["hello", "wonderland", "nope", SECRET] {
        assert!(!audit.contains(secret), "{secret} leaked into the audit log");
        assert!(!s.log().contains(secret), "{secret} leaked into the server log");
    }
}

#[test]
fn chap_method_restriction_reports_66_when_credentials_are_fine() {
    let s = server();
    add_user(&s, "paula", "paperwork", &["papers"], &["--chap"]);
    assert!(!radtest(&s, "chap", "paula", "paperwork").0);
    assert_eq!(auth_log(&s, "paula")[0]["reason_code"], 66);
}

#[test]
fn pyrad_message_authenticator_rules_reply_attributes_and_retransmits() {
    let s = server();
    let ok = pyrad(&s, &["pap", "alice", "wonderland"]);
    assert_eq!(ok["code"], "accept", "{ok}");
    assert_eq!(ok["ma_first"], true, "Message-Authenticator must be the first attribute: {ok}");
    assert_eq!(ok["Session-Timeout"], 28800);
    assert_eq!(ok["Class"], "staff");
    assert_eq!(ok["Filter-Id"], "vpn-staff");
    let rej = pyrad(&s, &["pap", "alice", "wrong"]);
    assert_eq!((rej["code"].as_str(), rej["ma_first"].as_bool()), (Some("reject"), Some(true)));
    assert_eq!(pyrad_discarded(&s, &["no-ma", "alice", "wonderland"])["code"], "timeout");
    assert_eq!(pyrad_discarded(&s, &["bad-ma", "alice", "wonderland"])["code"], "timeout");
    let ps = pyrad(&s, &["proxy-state", "alice", "wonderland"]);
    assert_eq!(ps["proxy_state"], serde_json::json!(["hop-1"]));
    let rt = pyrad(&s, &["retransmit", "alice", "wonderland"]);
    assert_eq!(rt["identical"], true, "{rt}");
    let stats = s.stats_until(|v| {
        v["clients"]["local"]["bad_message_authenticator"].as_u64() >= Some(2)
            && v["clients"]["local"]["duplicate_resent"].as_u64() >= Some(2)
    });
    let local = &stats["clients"]["local"];
    assert!(local["bad_message_authenticator"].as_u64() >= Some(2), "{stats}");
    assert!(local["duplicate_resent"].as_u64() >= Some(2), "{stats}");
}

#[test]
fn clients_may_opt_out_of_message_authenticator_but_proxy_state_still_needs_it() {
    let s = Server::start("require_message_authenticator = false\n\n[[network_policy]]\nname = \"all\"\n");
    add_user(&s, "alice", "wonderland", &[], &[]);
    assert_eq!(pyrad(&s, &["no-ma", "alice", "wonderland"])["code"], "accept");
    assert_eq!(
        pyrad_discarded(&s, &["proxy-state-no-ma", "alice", "wonderland"])["code"],
        "timeout",
        "limit_proxy_state"
    );
    assert!(s.log().contains("accepted without Message-Authenticator"), "start-up warning expected: {}", s.log());
}

#[test]
fn pyrad_mschapv2_success_mppe_keys_and_error() {
    let s = server();
    let ok = pyrad(&s, &["mschapv2", "alice", "wonderland"]);
    assert_eq!(ok["code"], "accept", "{ok}");
    assert_eq!(ok["ident"], 5);
    assert_eq!(ok["success_verified"], true, "MS-CHAP2-Success must verify at the client: {ok}");
    assert_eq!(ok["send_key_ok"], true, "MS-MPPE-Send-Key = server send key (Magic3): {ok}");
    assert_eq!(ok["recv_key_ok"], true, "MS-MPPE-Recv-Key = server receive key (Magic2): {ok}");
    assert_eq!(ok["ma_first"], true);
    let domain = pyrad(&s, &["mschapv2", "CONTOSO\\alice", "wonderland"]);
    assert_eq!(domain["code"], "accept", "DOMAIN\\user must verify with the bare name: {domain}");
    let bad = pyrad(&s, &["mschapv2", "alice", "wrong", "wonderland"]);
    assert_eq!(bad["code"], "reject");
    assert!(bad["error"].as_str().unwrap().starts_with("E=691 R=0 C="), "{bad}");
    let disabled = pyrad(&s, &["mschapv2", "dora", "disabled"]);
    assert!(disabled["error"].as_str().unwrap().starts_with("E=647 "), "{disabled}");
}

#[test]
fn policy_test_explains_the_decision() {
    let s = server();
    let out = s.cli(&["policy", "test", "--user", "carl", "--nas", "rras-1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("policy \"deny contractors\" matched"), "{text}");
    assert!(text.contains("decision: Access-Reject by network policy \"deny contractors\", reason code 65"), "{text}");
    let out = s.cli(&["policy", "test", "--user", "bob", "--method", "mschapv2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("skipped: user groups") && text.contains("decision: Access-Accept by network policy"),
        "{text}"
    );
    let out = s.cli(&["policy", "test", "--user", "pat", "--method", "chap"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("reason code 66: the authentication method is not allowed"));
}

#[test]
fn user_management_cli() {
    let s = server();
    let out = s.cli(&["user", "list", "--format", "json"]);
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let bob = v.iter().find(|u| u["name"] == "bob").unwrap();
    assert_eq!(bob["methods"], serde_json::json!(["pap", "chap", "mschapv2"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("argon2") && !text.contains("hello"), "credentials must not be listed");
    assert!(s.cli(&["user", "groups", "gus", "vpn"]).status.success());
    assert!(radtest(&s, "pap", "gus", "guest").0, "new group takes effect at once");
    assert!(s.cli(&["user", "disable", "gus"]).status.success());
    assert!(!radtest(&s, "pap", "gus", "guest").0, "disable takes effect at once (cache dropped)");
    assert!(s.cli(&["user", "enable", "gus"]).status.success());
    assert!(radtest(&s, "pap", "gus", "guest").0);
    let mut child = Command::new(common::bin())
        .args(["user", "passwd", "gus", "--password-stdin", "--config"])
        .arg(&s.config)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "changed").unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!radtest(&s, "pap", "gus", "guest").0, "old password stops working at once");
    assert!(radtest(&s, "pap", "gus", "changed").0);
    assert!(s.cli(&["user", "delete", "gus"]).status.success());
    assert!(!radtest(&s, "pap", "gus", "changed").0);
    assert!(!s.cli(&["user", "delete", "gus"]).status.success());
}

fn eapol_test(s: &Server, user: &str, password: &str) -> (bool, String) {
    eapol_test_with(s, &format!("eap=MSCHAPV2\n\tidentity=\"{user}\"\n\tpassword=\"{password}\""))
}

/// Runs eapol_test with the given lines inside its network block.
fn eapol_test_with(s: &Server, network: &str) -> (bool, String) {
    require("eapol_test");
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let conf = s.dir.path().join(format!("eap-{n}.conf"));
    std::fs::write(&conf, format!("network={{\n\tkey_mgmt=IEEE8021X\n\t{network}\n}}\n")).unwrap();
    let out = Command::new("eapol_test")
        .arg("-c")
        .arg(&conf)
        .args(["-a", "127.0.0.1", "-p", &s.auth_port.to_string(), "-s", SECRET, "-t", "10"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.success() && text.lines().last() == Some("SUCCESS"), text)
}

/// A server with a demo certificate made by `portcullis cert init`, serving PEAP first.
fn peap_server(extra: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin()).args(["cert", "init", "--dir"]).arg(dir.path().join("tls")).output().unwrap();
    assert!(out.status.success(), "cert init: {}", String::from_utf8_lossy(&out.stderr));
    let s = Server::start_in(
        dir,
        common::free_port(),
        &format!(
            "\n[eap]\ncertificate = \"tls/server.pem\"\nprivate_key = \"tls/server.key\"\n{extra}\n{}",
            POLICIES.replace("HOURS", &never_now())
        ),
    );
    for (name, password, groups) in
        [("bob", "hello", vec!["vpn"]), ("carl", "contract", vec!["contractors"]), ("pat", "paperwork", vec!["papers"])]
    {
        add_user(&s, name, password, &groups, &[]);
    }
    s
}

fn peap(user: &str, password: &str, phase1: &str) -> String {
    format!(
        "eap=PEAP\n\tidentity=\"{user}\"\n\tanonymous_identity=\"anonymous\"\n\tpassword=\"{password}\"\n\t\
         phase1=\"{phase1}\"\n\tphase2=\"auth=MSCHAPV2\"\n\tca_cert=\"tls/ca.pem\""
    )
}

#[test]
fn eapol_test_peap_tls12_and_tls13_with_matching_mppe_keys() {
    let s = peap_server("");
    let (ok, log) = eapol_test_with(&s, &peap("bob", "hello", "peapver=0"));
    assert!(ok, "{log}");
    assert!(log.contains("MPPE keys OK: 1  mismatch: 0"), "{log}");
    assert!(log.contains("Using TLS version TLSv1.2"), "{log}");
    let (ok, log) = eapol_test_with(&s, &peap("CONTOSO\\bob", "hello", "peapver=0 tls_disable_tlsv1_3=0"));
    assert!(ok, "{log}");
    assert!(log.contains("MPPE keys OK: 1  mismatch: 0"), "{log}");
    assert!(log.contains("Using TLS version TLSv1.3"), "{log}");
    assert!(!eapol_test_with(&s, &peap("bob", "wrong", "peapver=0")).0);
    assert!(!eapol_test_with(&s, &peap("carl", "contract", "peapver=0")).0, "denied by policy");
    assert!(!eapol_test_with(&s, &peap("pat", "paperwork", "peapver=0")).0, "PEAP not allowed for pat");
    let bob = auth_log(&s, "bob");
    assert!(bob.iter().all(|e| e["method"] == "peap"), "{bob:?}");
    assert_eq!(bob.iter().filter(|e| e["decision"] == "accept").count(), 2, "{bob:?}");
    assert!(bob.iter().any(|e| e["message"].as_str().unwrap().contains("TLS 1.3")));
    assert_eq!(bob.iter().find(|e| e["decision"] == "reject").unwrap()["reason_code"], 16);
    assert!(auth_log(&s, "anonymous").is_empty(), "the audit names the inner identity");
    assert_eq!(auth_log(&s, "carl")[0]["reason_code"], 65);
    assert_eq!(auth_log(&s, "pat")[0]["reason_code"], 66);
}

#[test]
fn eapol_test_peap_fragments_both_ways_and_nak_to_mschapv2() {
    let s = peap_server("fragment_size = 256");
    let fragmented = format!("{}\n\tfragment_size=100", peap("bob", "hello", "peapver=0 tls_disable_tlsv1_3=0"));
    let (ok, log) = eapol_test_with(&s, &fragmented);
    assert!(ok, "{log}");
    assert!(log.contains("more fragments will follow"), "the peer fragmented: {log}");
    assert!(log.contains("Flags 0xc0"), "the server fragmented: {log}");
    assert!(log.contains("MPPE keys OK: 1  mismatch: 0"), "{log}");
    // A peer configured for EAP-MSCHAPv2 only answers the PEAP Start with a Nak.
    let (ok, log) = eapol_test(&s, "bob", "hello");
    assert!(ok, "{log}");
    assert!(log.contains("MPPE keys OK: 1  mismatch: 0"), "{log}");
    let methods: Vec<_> = auth_log(&s, "bob").iter().map(|e| e["method"].as_str().unwrap().to_string()).collect();
    assert!(methods.contains(&"eap-mschapv2".to_string()) && methods.contains(&"peap".to_string()), "{methods:?}");
}

#[test]
fn eapol_test_eap_mschapv2_with_matching_mppe_keys() {
    let s = server();
    let (ok, log) = eapol_test(&s, "bob", "hello");
    assert!(ok, "{log}");
    assert!(log.contains("MPPE keys OK: 1  mismatch: 0"), "{log}");
    let (ok, log) = eapol_test(&s, "CONTOSO\\alice", "wonderland");
    assert!(ok, "DOMAIN\\user: {log}");
    assert!(!eapol_test(&s, "bob", "wrong").0);
    assert!(!eapol_test(&s, "nobody", "x").0);
    assert!(!eapol_test(&s, "carl", "contract").0, "denied by policy");
    assert!(!eapol_test(&s, "dora", "disabled").0);
    let reason = |user: &str| auth_log(&s, user)[0]["reason_code"].as_u64();
    assert_eq!(reason("nobody"), Some(8));
    assert_eq!(reason("carl"), Some(65));
    assert_eq!(reason("dora"), Some(34));
    let bob = auth_log(&s, "bob");
    assert_eq!(bob.iter().filter(|e| e["method"] == "eap-mschapv2").count(), 2);
    assert_eq!(bob.iter().find(|e| e["decision"] == "accept").unwrap()["event_id"], 6272);
    assert_eq!(bob.iter().find(|e| e["decision"] == "reject").unwrap()["reason_code"], 16);
}

#[test]
fn nps_log_files_in_ias_odbc_and_dts_formats() {
    for format in ["ias", "odbc", "dts"] {
        let s = server_with(&format!("[nps_log]\nformat = \"{format}\"\ncomputer_name = \"RADIUS01\"\n"));
        assert!(radtest(&s, "pap", "alice", "wonderland").0);
        assert!(!radtest(&s, "pap", "alice", "not-the-password").0);
        let dir = s.dir.path().join("data/nps");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let text = loop {
            let text: String = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("IN"))
                .map(|p| std::fs::read_to_string(p).unwrap())
                .collect();
            if text.lines().count() >= 4 || std::time::Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{format}: request and response per decision: {text}");
        assert!(!text.contains("wonderland") && !text.contains("not-the-password"), "{format}: {text}");
        match format {
            "ias" => {
                assert!(lines[0].starts_with("127.0.0.1,alice,") || lines[0].starts_with(",alice,"), "{}", lines[0]);
                assert!(lines[1].contains(",IAS,RADIUS01,") && lines[1].contains(",4149,vpn staff,"), "{}", lines[1]);
                assert!(lines[1].contains(",25,staff,") && lines[1].ends_with(",4136,2,4142,0"), "{}", lines[1]);
                assert!(lines[3].ends_with(",4136,3,4142,16"), "{}", lines[3]);
            }
            "odbc" => {
                for l in &lines {
                    assert_eq!(l.split(',').count(), 60, "{l}");
                }
                let f: Vec<&str> = lines[1].split(',').collect();
                assert_eq!((f[0], f[1], f[4], f[5]), ("\"RADIUS01\"", "\"IAS\"", "2", "\"alice\""), "{}", lines[1]);
                assert_eq!((f[23], f[24], f[25], f[26]), ("1", "\"vpn staff\"", "0", "\"staff\""), "{}", lines[1]);
                assert_eq!(f[27], "28800", "Session-Timeout");
                let f: Vec<&str> = lines[3].split(',').collect();
                assert_eq!((f[4], f[25]), ("3", "16"), "{}", lines[3]);
            }
            _ => {
                assert!(lines.iter().all(|l| l.starts_with("<Event>") && l.ends_with("</Event>")));
                assert!(lines[1].contains("<Packet-Type data_type=\"0\">2</Packet-Type>"), "{}", lines[1]);
                assert!(lines[1].contains("<NP-Policy-Name data_type=\"1\">vpn staff</NP-Policy-Name>"));
                assert!(lines[3].contains("<Reason-Code data_type=\"0\">16</Reason-Code>"), "{}", lines[3]);
            }
        }
    }
}

#[test]
fn sigterm_under_load_loses_no_audit_line() {
    let mut s = Server::start("[[network_policy]]\nname = \"all\"\n");
    add_user(&s, "load", "loadpass", &[], &[]);
    let target = s.auth_addr().to_string();
    let load = Command::new(common::bin())
        .args(["bench", "--mode", "pap", "--target", &target, "--secret", SECRET, "--requests", "1000000"])
        .args(["--timeout", "0.3", "--retries", "0", "--max-seconds", "5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let log = s.dir.path().join("data/auth.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    while std::fs::read(&log).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count()) < 1000
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    s.stop();
    let out = load.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let answered = report["completed"].as_u64().unwrap();
    assert!(answered > 0, "the load ran: {report}");
    // Each answer went out after its audit line was queued.
    let audit = std::fs::read_to_string(&log).unwrap();
    let lines = audit.lines().filter(|l| l.contains("\"user\":\"load\"")).count() as u64;
    assert!(lines >= answered, "{lines} audit lines for {answered} answers");
    assert!(audit.ends_with('\n'), "the last line is whole");
}
