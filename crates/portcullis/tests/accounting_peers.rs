//! The accounting sensor against software we did not write: radclient (FreeRADIUS
//! utilities) and pyrad, each vendor's attribute set, wrong secrets, hostile datagrams,
//! retransmits, and `kill -9` under load.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::{SECRET, Server, by_user, python, radclient, require};
use portcullis_radius::{Code, Identifier, Packet, PacketBuilder, SharedSecret, attr, verify_response_authenticator};

#[test]
fn radclient_microsoft_rras_start_interim_stop() {
    let s = Server::start("vendor = \"microsoft\"\n");
    let common = "User-Name = \"CONTOSO\\\\Alice\"\nNAS-IP-Address = 10.0.0.1\nAcct-Session-Id = \"rras-1\"\nFramed-IP-Address = 10.8.0.5\nCalling-Station-Id = \"198.51.100.7\"\nTunnel-Client-Endpoint:0 = \"198.51.100.7\"\nMS-Machine-Name = \"ALICE-LAPTOP\"\nMS-RAS-Client-Version = \"Windows 11\"\n";
    for (status, extra) in [
        ("Start", ""),
        ("Interim-Update", "Acct-Session-Time = 300\nAcct-Input-Octets = 1000\n"),
        (
            "Stop",
            "Acct-Session-Time = 600\nAcct-Input-Octets = 2000\nAcct-Output-Octets = 3000\nAcct-Input-Gigawords = 1\nAcct-Terminate-Cause = User-Request\n",
        ),
    ] {
        let (ok, out) = radclient(s.addr(), "acct", SECRET, &format!("Acct-Status-Type = {status}\n{common}{extra}"));
        assert!(ok, "{status}: {out}");
        assert!(out.contains("Received Accounting-Response"), "{out}");
    }
    let v = s.sessions_until(&[], |v| v.first().is_some_and(|x| x["status"] == "closed"));
    assert_eq!(v.len(), 1, "{v:?}");
    let x = &v[0];
    assert_eq!(x["user"], "alice");
    assert_eq!(x["user_raw"], "CONTOSO\\alice".replace("alice", "Alice"));
    assert_eq!(x["nas"], "10.0.0.1");
    assert_eq!(x["session_id"], "rras-1");
    assert_eq!(x["client_ip"], "198.51.100.7");
    assert_eq!(x["device"], "ALICE-LAPTOP");
    assert_eq!(x["framed_ip"], "10.8.0.5");
    assert_eq!(x["status"], "closed");
    assert_eq!(x["input_octets"], (1u64 << 32) + 2000);
    assert_eq!(x["output_octets"], 3000);
    assert_eq!(x["terminate_cause"], "User-Request");
    assert!(x["stopped_at"].as_str().unwrap().ends_with('Z'));
    // The profile says where the device name came from: it is the client's claim.
    let out = s.cli(&["profiles", "show", "alice", "--format", "json"]);
    let profile: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(profile["devices"][0]["value"], "ALICE-LAPTOP", "{profile}");
    assert_eq!(profile["devices"][0]["source"], "Microsoft MS-Machine-Name (311/50)", "{profile}");
    let table = String::from_utf8_lossy(&s.cli(&["profiles", "show", "alice"]).stdout).to_string();
    assert!(table.contains("ALICE-LAPTOP") && table.contains("claimed by Microsoft MS-Machine-Name"), "{table}");
}

#[test]
fn radclient_cisco_asa_anyconnect() {
    let s = Server::start("vendor = \"cisco-asa\"\n");
    let common = "User-Name = \"bob@example.com\"\nNAS-IP-Address = 10.0.0.2\nAcct-Session-Id = \"C0A8000100\"\nFramed-IP-Address = 10.9.0.7\nTunnel-Client-Endpoint:0 = \"203.0.113.9\"\nCisco-AVPair = \"mdm-tlv=device-platform=win\"\nCisco-AVPair += \"mdm-tlv=device-uid=UID-123\"\nCisco-AVPair += \"mdm-tlv=ac-user-agent=AnyConnect Windows 4.10\"\nASA-TunnelGroupName = \"EMPLOYEES\"\nASA-ClientType = 2\n";
    for status in ["Start", "Stop"] {
        let (ok, out) = radclient(s.addr(), "acct", SECRET, &format!("Acct-Status-Type = {status}\n{common}"));
        assert!(ok, "{status}: {out}");
    }
    let v = s.sessions_until(&["--user", "bob"], |v| v.first().is_some_and(|x| x["status"] == "closed"));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["client_ip"], "203.0.113.9");
    assert_eq!(v[0]["device"], "UID-123");
    assert_eq!(v[0]["details"]["tunnel_group"], "EMPLOYEES");
    assert_eq!(v[0]["details"]["device_platform"], "win");
}

#[test]
fn radclient_f5_stop_keeps_endpoint_from_start_and_checkpoint_generic() {
    let s = Server::start(
        "vendor = \"f5\"\n\n[[client]]\nname = \"gw\"\naddress = \"127.0.0.2/32\"\nsecret = \"other-secret\"\nvendor = \"checkpoint\"\n",
    );
    let start = "Acct-Status-Type = Start\nUser-Name = \"carol\"\nNAS-Identifier = \"bigip-apm\"\nAcct-Session-Id = \"f5-1\"\nTunnel-Client-Endpoint = \"192.0.2.77\"\nFramed-IP-Address = 10.10.0.2\n";
    let stop = "Acct-Status-Type = Stop\nUser-Name = \"carol\"\nNAS-Identifier = \"bigip-apm\"\nAcct-Session-Id = \"f5-1\"\nAcct-Session-Time = 60\n";
    assert!(radclient(s.addr(), "acct", SECRET, start).0);
    assert!(radclient(s.addr(), "acct", SECRET, stop).0);
    let v = s.sessions_until(&[], |v| v.first().is_some_and(|x| x["status"] == "closed"));
    assert_eq!(v[0]["nas"], "bigip-apm");
    assert_eq!(v[0]["client_ip"], "192.0.2.77");
    assert_eq!(v[0]["framed_ip"], "10.10.0.2");
}

#[test]
fn radclient_status_server_on_accounting_port() {
    let s = Server::start("");
    let (ok, out) = radclient(s.addr(), "status", SECRET, "Message-Authenticator = 0x00\n");
    assert!(ok, "{out}");
    assert!(out.contains("Received Accounting-Response"), "{out}");
}

#[test]
fn wrong_secret_gets_no_response_and_is_counted() {
    let s = Server::start("");
    let (ok, out) = radclient(
        s.addr(),
        "acct",
        "not-the-secret",
        "Acct-Status-Type = Start\nUser-Name = \"x\"\nNAS-IP-Address = 10.0.0.1\n",
    );
    assert!(!ok, "a wrong secret must get no answer: {out}");
    assert!(out.contains("No reply"), "{out}");
    let stats = s.stats_until(|v| v["clients"]["local"]["bad_authenticator"].as_u64() >= Some(1));
    assert!(stats["clients"]["local"]["bad_authenticator"].as_u64() >= Some(1), "{stats}");
    assert_eq!(stats["clients"]["local"]["acknowledged"], 0);
    assert!(s.log().contains("check the shared secret"), "{}", s.log());
}

#[test]
fn pyrad_microsoft_and_nas_reboot_and_tunnel_types() {
    let s = Server::start("vendor = \"microsoft\"\n");
    let run = |scenario: &str| {
        let out = Command::new(python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pyrad_acct.py"))
            .args(["127.0.0.1", &s.port.to_string(), SECRET])
            .arg(common::dictionary_dir())
            .arg(scenario)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "pyrad failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains("timeout") && !text.contains("bad-code"), "{text}");
        text
    };
    run("microsoft");
    let v = s.sessions_until(&["--user", "pat"], |v| v.first().is_some_and(|x| x["status"] == "closed"));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["device"], "PAT-LAPTOP");
    assert_eq!(v[0]["client_ip"], "198.51.100.44");
    assert_eq!(v[0]["input_octets"], (1u64 << 32) + 2000);

    run("nas-reboot");
    let v = s.sessions_until(&[], |v| by_user(v, "sam").first().is_some_and(|x| x["status"] == "closed"));
    for u in ["quinn", "rory", "sam"] {
        let x = by_user(&v, u);
        assert_eq!(x.len(), 1, "{u}: {v:?}");
        assert_eq!(x[0]["status"], "closed", "{u}");
        assert_eq!(x[0]["terminate_cause"], "NAS-Reboot", "{u}");
    }
    run("tunnel");
    let stats = s.stats_until(|v| v["clients"]["local"]["acknowledged"].as_u64() >= Some(9));
    assert_eq!(stats["clients"]["local"]["acknowledged"], 9, "{stats}");
}

fn acct_start(id: u8, session: &str) -> Vec<u8> {
    let mut b = PacketBuilder::new(Code::AccountingRequest, Identifier(id));
    b.attribute(attr::ACCT_STATUS_TYPE, &1u32.to_be_bytes()).unwrap();
    b.attribute(attr::USER_NAME, b"dup").unwrap();
    b.attribute(attr::NAS_IP_ADDRESS, &[10, 0, 0, 9]).unwrap();
    b.attribute(attr::ACCT_SESSION_ID, session.as_bytes()).unwrap();
    b.attribute(attr::PROXY_STATE, b"proxy-1").unwrap();
    b.attribute(attr::PROXY_STATE, b"proxy-2").unwrap();
    b.encode_computed_request(&SharedSecret::new(SECRET)).unwrap()
}

#[test]
fn retransmits_get_the_cached_answer_and_proxy_state_is_echoed() {
    let s = Server::start("");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let req = acct_start(42, "dup-1");
    let mut answers = Vec::new();
    for _ in 0..3 {
        sock.send_to(&req, s.addr()).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        answers.push(buf[..n].to_vec());
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    let reply = Packet::decode(&answers[0]).unwrap();
    let request = Packet::decode(&req).unwrap();
    verify_response_authenticator(&reply, &request.authenticator(), &SharedSecret::new(SECRET)).unwrap();
    let ps: Vec<&[u8]> = reply.attributes_of(attr::PROXY_STATE).collect();
    assert_eq!(ps, vec![&b"proxy-1"[..], &b"proxy-2"[..]]);
    let stats = s.stats_until(|v| v["clients"]["local"]["duplicate_resent"].as_u64() >= Some(2));
    assert_eq!(stats["clients"]["local"]["duplicate_resent"], 2, "{stats}");
    assert_eq!(stats["clients"]["local"]["acknowledged"], 1, "{stats}");
}

#[test]
fn hostile_datagrams_never_crash_the_server() {
    let s = Server::start("");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let valid = acct_start(1, "hostile");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..3000 {
        let datagram: Vec<u8> = match i % 4 {
            0 => (0..(next() % 200) as usize).map(|_| next() as u8).collect(),
            1 => valid[..(next() as usize % valid.len())].to_vec(),
            2 => {
                let mut v = valid.clone();
                let at = 20 + next() as usize % (v.len() - 20);
                v[at] = next() as u8;
                v
            }
            _ => {
                let mut v = valid.clone();
                v[2] = 0xff;
                v[3] = 0xff;
                v
            }
        };
        sock.send_to(&datagram, s.addr()).unwrap();
    }
    // Still alive and still correct.
    let (ok, out) = radclient(
        s.addr(),
        "acct",
        SECRET,
        "Acct-Status-Type = Start\nUser-Name = \"after\"\nNAS-IP-Address = 10.0.0.1\nAcct-Session-Id = \"z\"\n",
    );
    assert!(ok, "{out}");
    let stats = s.stats_until(|v| v["clients"]["local"]["malformed"].as_u64() > Some(100));
    let local = &stats["clients"]["local"];
    assert!(local["malformed"].as_u64() > Some(100), "{stats}");
    assert!(local["bad_authenticator"].as_u64() > Some(100), "{stats}");
}

#[test]
fn unknown_clients_are_discarded_and_counted() {
    let s = Server::start("");
    // 127.0.0.3 is loopback but no configured client.
    let sock = UdpSocket::bind("127.0.0.3:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    sock.send_to(&acct_start(3, "x"), s.addr()).unwrap();
    let mut buf = [0u8; 100];
    assert!(sock.recv(&mut buf).is_err(), "no reply to an unknown client");
    let stats = s.stats_until(|v| v["clients"]["unknown:127.0.0.3"]["unknown_client"] == 1);
    assert_eq!(stats["clients"]["unknown:127.0.0.3"]["unknown_client"], 1, "{stats}");
}

/// Every acknowledged Accounting-Start must be in storage after `kill -9`, three times
/// over, with the generator's own record of what was acknowledged as the reference.
#[test]
fn kill_9_under_load_loses_no_acknowledged_record() {
    require("radclient");
    let mut s = Server::start("");
    let mut acked_total = 0;
    for round in 0..3 {
        let ack_log = s.dir.path().join(format!("acked-{round}.txt"));
        let run_id = format!("kill{round}");
        let load = ["--mode", "acct-start", "--requests", "1000000", "--window", "64", "--timeout", "0.3"];
        let generator =
            s.bench(&[&load[..], &["--retries", "1", "--max-seconds", "4", "--run-id", &run_id]].concat(), &ack_log);
        std::thread::sleep(Duration::from_millis(1500));
        s.kill9();
        let out = generator.wait_with_output().unwrap();
        assert!(out.status.success());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let acked = common::acked_ids(&ack_log);
        assert!(acked.len() > 1000, "too little load before the kill: {report}");
        assert!(report["lost"].as_u64() > Some(0), "the kill must interrupt the run: {report}");
        acked_total += acked.len();
        s.spawn();
        s.wait_applied(Duration::from_secs(300));
        let (missing, stored) = s.unstored(&acked, acked_total);
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged records lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        eprintln!("round {round}: {} acknowledged, all stored ({stored} sessions in total)", acked.len());
    }
    s.stop();
}

#[test]
fn clean_shutdown_answers_queued_requests_and_keeps_counters() {
    let mut s = Server::start("");
    assert!(
        radclient(
            s.addr(),
            "acct",
            SECRET,
            "Acct-Status-Type = Start\nUser-Name = \"u\"\nNAS-IP-Address = 10.0.0.1\nAcct-Session-Id = \"c1\"\n"
        )
        .0
    );
    s.stop();
    let out = s.cli(&["stats", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["clients"]["local"]["acknowledged"], 1, "{v}");
    let out = s.cli(&["sessions", "--format", "json"]);
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), 1);
}

#[test]
fn ipv6_listener_and_client_network() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = dir.path().join("v6.toml");
    std::fs::write(
        &config,
        format!(
            "[radius]\nacct_listen = [\"127.0.0.1:{port}\", \"[::1]:{port}\"]\nauth_listen = []\n[storage]\ndata_dir = \"data\"\n\
             [[client]]\nname = \"v4\"\naddress = \"127.0.0.1\"\nsecret = \"{SECRET}\"\n\
             [[client]]\nname = \"v6\"\naddress = \"::1/128\"\nsecret = \"v6-secret\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(common::bin()).args(["serve", "--config"]).arg(&config).spawn().unwrap();
    let v6: std::net::SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let mut answered = false;
    for _ in 0..100 {
        let (ok, _) = radclient(
            v6,
            "acct",
            "v6-secret",
            "Acct-Status-Type = Start\nUser-Name = \"six\"\nNAS-IPv6-Address = 2001:db8::1\nAcct-Session-Id = \"v6\"\nCalling-Station-Id = \"2001:db8:8000::5\"\n",
        );
        if ok {
            answered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // A clean stop applies everything acknowledged before the process exits.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    assert!(answered, "no answer over IPv6");
    let out =
        Command::new(common::bin()).args(["sessions", "--format", "json", "--config"]).arg(&config).output().unwrap();
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["nas"], "2001:db8::1");
    assert_eq!(v[0]["client_ip"], "2001:db8:8000::5");
}

fn send(s: &Server, body: &str) {
    let (ok, out) = radclient(s.addr(), "acct", SECRET, body);
    assert!(ok && out.contains("Received Accounting-Response"), "{body}: {out}");
}

#[test]
fn accounting_on_with_only_nas_ip_closes_sessions_recorded_under_the_nas_identifier() {
    let s = Server::start("");
    send(
        &s,
        "Acct-Status-Type = Start\nUser-Name = \"dana\"\nNAS-Identifier = \"vpn-gw-1\"\nNAS-IP-Address = 10.0.0.1\nAcct-Session-Id = \"d-1\"\n",
    );
    send(
        &s,
        "Acct-Status-Type = Start\nUser-Name = \"eric\"\nNAS-Identifier = \"vpn-gw-2\"\nNAS-IP-Address = 10.0.0.2\nAcct-Session-Id = \"e-1\"\n",
    );
    s.sessions_until(&[], |v| v.len() == 2);
    send(&s, "Acct-Status-Type = Accounting-On\nNAS-IP-Address = 10.0.0.1\n");
    let v = s.sessions_until(&["--user", "dana"], |v| v.first().is_some_and(|x| x["status"] == "closed"));
    assert_eq!(v[0]["nas"], "vpn-gw-1");
    assert_eq!(v[0]["status"], "closed", "{v:?}");
    assert_eq!(v[0]["terminate_cause"], "NAS-Reboot");
    let other = s.sessions_until(&["--user", "eric"], |v| !v.is_empty());
    assert_eq!(other[0]["status"], "open", "another NAS's sessions stay open: {other:?}");
}

#[test]
fn interim_keeps_the_start_time_and_without_a_start_derives_it_from_session_time() {
    let s = Server::start("");
    let t0: i64 = 1_767_571_200;
    let common = "User-Name = \"fay\"\nNAS-IP-Address = 10.0.0.1\n";
    send(&s, &format!("Acct-Status-Type = Start\n{common}Acct-Session-Id = \"f-1\"\nEvent-Timestamp = {t0}\n"));
    // The NAS counts session time from before its Start (authentication, tunnel set-up).
    send(
        &s,
        &format!(
            "Acct-Status-Type = Interim-Update\n{common}Acct-Session-Id = \"f-1\"\nEvent-Timestamp = {}\nAcct-Session-Time = 900\n",
            t0 + 600
        ),
    );
    send(
        &s,
        &format!(
            "Acct-Status-Type = Interim-Update\n{common}Acct-Session-Id = \"f-2\"\nEvent-Timestamp = {}\nAcct-Session-Time = 300\n",
            t0 + 600
        ),
    );
    let v = s.sessions_until(&[], |v| v.len() == 2 && v.iter().all(|x| x["session_time"].is_number()));
    let started = |id: &str| v.iter().find(|x| x["session_id"] == id).map(|x| x["started_at"].clone()).unwrap();
    assert_eq!(started("f-1"), "2026-01-05T00:00:00Z", "{v:?}");
    assert_eq!(started("f-2"), "2026-01-05T00:05:00Z", "{v:?}");
}

#[test]
fn a_silent_session_goes_stale_leaves_the_open_list_and_a_later_stop_closes_it() {
    let mut s = Server::start("");
    s.stop();
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, text.replace("data_dir = \"data\"\n", "data_dir = \"data\"\nstale_after_seconds = 2\n"))
        .unwrap();
    s.spawn();
    let common = "User-Name = \"gus\"\nNAS-IP-Address = 10.0.0.1\nAcct-Session-Id = \"g-1\"\n";
    send(&s, &format!("Acct-Status-Type = Start\n{common}"));
    let v = s.sessions_until(&[], |v| v.first().is_some_and(|x| x["status"] == "stale"));
    assert_eq!(v[0]["status"], "stale", "{v:?}");
    assert!(v[0]["stopped_at"].is_null());
    let open = s.sessions_until(&["--open"], |v| v.is_empty());
    assert!(open.is_empty(), "a stale session is not open: {open:?}");
    let table = s.cli(&["sessions"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("stale"));
    send(&s, &format!("Acct-Status-Type = Stop\n{common}Acct-Session-Time = 30\n"));
    let v = s.sessions_until(&[], |v| v.first().is_some_and(|x| x["status"] == "closed"));
    assert_eq!(v[0]["status"], "closed", "{v:?}");
    assert!(v[0]["stopped_at"].is_string());
}

#[test]
fn sessions_and_auth_log_show_device_station_and_pivot_by_address_and_nas() {
    let s = Server::start("vendor = \"microsoft\"\n");
    for (user, nas, ip, device) in
        [("hank", "10.0.0.1", "198.51.100.7", "HANK-PC"), ("iris", "10.0.0.2", "203.0.113.9", "IRIS-PC")]
    {
        send(
            &s,
            &format!(
                "Acct-Status-Type = Start\nUser-Name = \"{user}\"\nNAS-IP-Address = {nas}\nAcct-Session-Id = \"{user}-1\"\nCalling-Station-Id = \"{ip}\"\nTunnel-Client-Endpoint:0 = \"{ip}\"\nMS-Machine-Name = \"{device}\"\n"
            ),
        );
    }
    s.sessions_until(&[], |v| v.len() == 2);
    let by_ip = s.sessions_until(&["--ip", "203.0.113.9"], |v| v.len() == 1);
    assert_eq!(by_ip.len(), 1, "{by_ip:?}");
    assert_eq!(by_ip[0]["user"], "iris");
    let by_nas = s.sessions_until(&["--nas", "10.0.0.1"], |v| v.len() == 1);
    assert_eq!((by_nas.len(), &by_nas[0]["user"]), (1, &serde_json::json!("hank")), "{by_nas:?}");
    let none = s.sessions_until(&["--country", "ZZ"], |v| v.is_empty());
    assert!(none.is_empty(), "{none:?}");
    let table = String::from_utf8_lossy(&s.cli(&["sessions"]).stdout).to_string();
    assert!(table.starts_with("USER") && table.contains("DEVICE") && table.contains("HANK-PC"), "{table}");

    let (_, out) = radclient(
        s.auth_addr(),
        "auth",
        SECRET,
        "User-Name = \"nobody\"\nUser-Password = \"x\"\nCalling-Station-Id = \"198.51.100.7\"\nMessage-Authenticator = 0x00\n",
    );
    assert!(out.contains("Access-Reject"), "{out}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let table = loop {
        let t = String::from_utf8_lossy(&s.cli(&["auth-log", "--ip", "198.51.100.7"]).stdout).to_string();
        if t.contains("nobody") || std::time::Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(table.starts_with("TIME") && table.contains("CALLING STATION") && table.contains("LOCATION"), "{table}");
    assert!(table.contains("198.51.100.7") && table.contains("nobody"), "{table}");
    let other = String::from_utf8_lossy(&s.cli(&["auth-log", "--ip", "203.0.113.9"]).stdout).to_string();
    assert!(!other.contains("nobody"), "{other}");
    let json: Vec<serde_json::Value> =
        serde_json::from_slice(&s.cli(&["auth-log", "--format", "json"]).stdout).unwrap();
    assert!(json[0].as_object().unwrap().contains_key("location"), "{json:?}");
}

/// A packet from the NAS at 127.0.0.2 with its own secret, naming another NAS.
fn send_from_other_nas(s: &Server, id: u8, status: u32, session: Option<&str>) {
    let mut b = PacketBuilder::new(Code::AccountingRequest, Identifier(id));
    b.attribute(attr::ACCT_STATUS_TYPE, &status.to_be_bytes()).unwrap();
    b.attribute(attr::NAS_IDENTIFIER, b"vpn-gw-1").unwrap();
    b.attribute(attr::NAS_IP_ADDRESS, &[10, 0, 0, 1]).unwrap();
    if let Some(session) = session {
        b.attribute(attr::USER_NAME, b"dana").unwrap();
        b.attribute(attr::ACCT_SESSION_ID, session.as_bytes()).unwrap();
    }
    let req = b.encode_computed_request(&SharedSecret::new("other-secret")).unwrap();
    let sock = UdpSocket::bind("127.0.0.2:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    sock.send_to(&req, s.addr()).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("the other NAS is answered");
    assert_eq!(Packet::decode(&buf[..n]).unwrap().code(), Code::AccountingResponse);
}

#[test]
fn another_nas_naming_this_one_can_neither_end_its_sessions_nor_stop_them() {
    let s = Server::start("[[client]]\nname = \"other\"\naddress = \"127.0.0.2\"\nsecret = \"other-secret\"\n");
    send(
        &s,
        "Acct-Status-Type = Start\nUser-Name = \"dana\"\nNAS-Identifier = \"vpn-gw-1\"\nNAS-IP-Address = 10.0.0.1\nAcct-Session-Id = \"d-1\"\n",
    );
    s.sessions_until(&[], |v| v.len() == 1);
    // The other NAS claims vpn-gw-1's identifier and address: an Accounting-Off, then a
    // Stop of dana's session.
    send_from_other_nas(&s, 1, 8, None);
    send_from_other_nas(&s, 2, 2, Some("d-1"));
    let v = s.sessions_until(&["--user", "dana"], |v| v.len() == 2);
    let open: Vec<_> = v.iter().filter(|x| x["status"] == "open").collect();
    assert_eq!(open.len(), 1, "the NAS's own session stays open: {v:?}");
    // The NAS's own reset ends it.
    send(&s, "Acct-Status-Type = Accounting-Off\nNAS-Identifier = \"vpn-gw-1\"\nNAS-IP-Address = 10.0.0.1\n");
    s.sessions_until(&["--user", "dana"], |v| v.iter().all(|x| x["status"] == "closed"));
}
