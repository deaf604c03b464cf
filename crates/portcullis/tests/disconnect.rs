//! `portcullis sessions disconnect` against a NAS stand-in built on pyrad (its RFC 5176
//! port on 127.0.0.1): Disconnect-ACK, Disconnect-NAK with an Error-Cause, and a NAS
//! that never answers; the request goes to the address the accounting came from, never
//! to the NAS-IP-Address the NAS claims, and every attempt is recorded in actions.log.

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use common::{SECRET, Server, free_port, python, radclient, require};

struct Nas {
    child: Child,
    record: std::path::PathBuf,
}

impl Nas {
    fn start(dir: &std::path::Path, port: u16, mode: &str) -> Self {
        let record = dir.join(format!("coa-{mode}.jsonl"));
        let mut child = Command::new(python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/coa_nas.py"))
            .args([&port.to_string(), SECRET])
            .arg(common::dictionary_dir())
            .arg(mode)
            .arg(&record)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        Self { child, record }
    }

    fn received(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Nas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_session_is_ended_at_its_nas_and_the_outcome_is_recorded() {
    require("radclient");
    let coa_port = free_port();
    // A second NAS, with a secret of its own, on 127.0.0.2.
    let s = Server::start(&format!(
        "coa_port = {coa_port}\n\n[[client]]\nname = \"branch\"\naddress = \"127.0.0.2\"\nsecret = \"branch-secret-1234\"\n"
    ));
    let start = "Acct-Status-Type = Start\nUser-Name = \"CONTOSO\\\\mallory\"\nAcct-Session-Id = \"S-1\"\n\
                 NAS-IP-Address = 192.0.2.99\nFramed-IP-Address = 10.1.2.3\nCalling-Station-Id = \"198.51.100.7\"\n";
    assert!(radclient(s.addr(), "acct", SECRET, start).0);
    let sessions = s.sessions_until(&[], |v| !v.is_empty());
    let key = sessions[0]["session_key"].as_str().unwrap().to_string();
    // The other NAS names the same session in an Interim-Update: that reaches a session
    // of its own, so this one's address stays, and the request cannot be steered to it.
    let interim =
        start.replace("Start", "Interim-Update") + "Acct-Session-Time = 60\nPacket-Src-IP-Address = 127.0.0.2\n";
    assert!(radclient(s.addr(), "acct", "branch-secret-1234", &interim).0);
    let v = s.sessions_until(&[], |v| v.len() == 2);
    let ours = v.iter().find(|x| x["session_key"] == key.as_str()).unwrap();
    assert_eq!(ours["details"]["nas_source"], "127.0.0.1", "{v:?}");
    assert_eq!(ours["session_time"], serde_json::Value::Null, "{v:?}");
    let theirs = v.iter().find(|x| x["session_key"] != key.as_str()).unwrap();
    assert_eq!((&theirs["details"]["client"], &theirs["session_time"]), (&"branch".into(), &60.into()), "{v:?}");

    // ACK: the NAS stand-in verified the signature, the Message-Authenticator and got
    // the session's names; it listens on 127.0.0.1, not on the claimed 192.0.2.99.
    let nas = Nas::start(s.dir.path(), coa_port, "ack");
    let out = s.cli(&["sessions", "disconnect", "--session-key", &key]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Disconnect-ACK"), "{}", text(&out));
    let got = nas.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!(
        (r["code"].as_u64(), &r["authenticator_ok"], &r["message_authenticator_ok"]),
        (Some(40), &true.into(), &true.into()),
        "{r}"
    );
    let a = &r["attributes"];
    assert_eq!(a["User-Name"][0], "CONTOSO\\mallory", "{r}");
    assert_eq!(a["Acct-Session-Id"][0], "S-1", "{r}");
    assert_eq!(a["NAS-IP-Address"][0], "192.0.2.99", "{r}");
    assert_eq!(a["Framed-IP-Address"][0], "10.1.2.3", "{r}");
    assert!(a["Event-Timestamp"].is_array(), "{r}");
    drop(nas);

    // NAK with its Error-Cause: reported, and the command fails.
    let nas = Nas::start(s.dir.path(), coa_port, "nak");
    let out = s.cli(&["sessions", "disconnect", "--session-key", &key]);
    assert!(!out.status.success());
    assert!(text(&out).contains("Error-Cause 503 (Session Context Not Found)"), "{}", text(&out));
    assert_eq!(nas.received().len(), 1);
    drop(nas);

    // No answer: the same request is sent again (same identifier), then given up.
    let nas = Nas::start(s.dir.path(), coa_port, "silent");
    let out = s.cli(&["sessions", "disconnect", "--session-key", &key, "--attempts", "2"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no answer from the NAS after 2 attempts"), "{}", text(&out));
    let got = nas.received();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["id"], got[1]["id"]);
    drop(nas);

    // Each attempt is in actions.log (0600), with who, where it went and the outcome.
    let log = s.dir.path().join("data/actions.log");
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let outcomes: Vec<&str> = lines.iter().map(|l| l["outcome"]["result"].as_str().unwrap_or("")).collect();
    assert_eq!(outcomes, ["ack", "nak", "no_answer"], "{lines:?}");
    assert_eq!(lines[0]["sent_to"], format!("127.0.0.1:{coa_port}"));
    assert_eq!(lines[1]["outcome"]["error_cause"], 503);
    assert!(lines.iter().all(|l| l["actor"].as_str().is_some_and(|a| !a.is_empty())));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!std::fs::read_to_string(&log).unwrap().contains(SECRET));

    let out = s.cli(&["sessions", "disconnect", "--session-key", "nope"]);
    assert!(!out.status.success() && text(&out).contains("no session with key"), "{}", text(&out));
}
