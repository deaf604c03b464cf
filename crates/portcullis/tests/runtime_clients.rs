//! RADIUS clients added, re-keyed and deleted with `portcullis clients` while the
//! server runs take effect within a second, without a restart or a reload; their
//! secret appears in no log, no command output and no counter.
//!
//! The configuration file's client is 127.0.0.1 (the harness's); radclient sends from
//! 127.0.0.2 (`Packet-Src-IP-Address`), which only a stored client covers.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, require};

const SOURCE: &str = "127.0.0.2";
const RUNTIME_SECRET: &str = "rt-secret-XyZ-0123456789-only-here";
const ROTATED_SECRET: &str = "rt-rotated-QwE-9876543210-only-here";

/// One accounting request from 127.0.0.2; true when acknowledged.
fn send(addr: SocketAddr, secret: &str, session: &str) -> bool {
    common::acct_from(addr, SOURCE, secret, session)
}

/// When a request from 127.0.0.2 sent at or after `since` first ends as `want` says.
fn until(addr: SocketAddr, secret: &str, want: bool, since: Instant) -> Duration {
    common::acct_until(addr, SOURCE, secret, want, since)
}

/// Status-Server sent from 127.0.0.2; true when a reply arrives.
fn status_server_from_source(addr: SocketAddr, secret: &str) -> bool {
    use portcullis_radius::{Authenticator, Code, Identifier, PacketBuilder, SharedSecret};
    let socket = std::net::UdpSocket::bind((SOURCE, 0)).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut b = PacketBuilder::new(Code::StatusServer, Identifier(9));
    b.message_authenticator();
    let bytes = b.encode_with_authenticator(Authenticator([3; 16]), &SharedSecret::new(secret)).unwrap();
    socket.send_to(&bytes, addr).unwrap();
    let mut buf = [0u8; 4096];
    socket.recv(&mut buf).is_ok_and(|n| buf[0] == Code::AccessAccept.to_u8() && n >= 20)
}

/// Runs `portcullis clients ...` with `stdin`; returns (success, stdout + stderr).
fn clients(s: &Server, args: &[&str], stdin: &str, outputs: &mut String) -> (bool, String) {
    let mut command = Command::new(common::bin());
    command.arg("clients").args(args).arg("--config").arg(&s.config);
    let out = common::spawn_with_input(command, stdin).wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    outputs.push_str(&text);
    (out.status.success(), text)
}

fn counter(s: &Server, client: &str, reason: &str, at_least: u64) -> u64 {
    let stats = s.stats_until(|v| v["clients"][client][reason].as_u64().unwrap_or(0) >= at_least);
    stats["clients"][client][reason].as_u64().unwrap_or(0)
}

#[test]
fn a_client_added_at_runtime_is_served_within_a_second_and_its_secret_is_never_shown() {
    require("radclient");
    let mut s = Server::start("");
    s.config_log_level("debug");
    let mut outputs = String::new();

    // Before the add: dropped and counted as an unknown source.
    assert!(!send(s.addr(), RUNTIME_SECRET, "rt-before"));
    assert!(counter(&s, "unknown:127.0.0.2", "unknown_client", 1) >= 1);

    // A stored client may not overlap the file's, nor take its name.
    let (ok, text) =
        clients(&s, &["add", "sneaky", "--address", "127.0.0.0/30", "--secret-stdin"], "x\n", &mut outputs);
    assert!(!ok && text.contains("overlaps 127.0.0.1/32 of the client \"local\""), "{text}");
    let (ok, text) = clients(&s, &["add", "local", "--address", "192.0.2.1", "--secret-stdin"], "x\n", &mut outputs);
    assert!(!ok && text.contains("managed by the configuration file"), "{text}");

    let (ok, text) = clients(
        &s,
        &["add", "lab", "--address", SOURCE, "--vendor", "cisco-asa", "--secret-stdin"],
        &format!("{RUNTIME_SECRET}\n"),
        &mut outputs,
    );
    assert!(ok, "{text}");
    let added = Instant::now();
    let took = until(s.addr(), RUNTIME_SECRET, true, added);
    eprintln!("accounting from the new client acknowledged {} ms after the add", took.as_millis());
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // The authentication port reads the same table: Status-Server from 127.0.0.2 is answered.
    assert!(status_server_from_source(s.auth_addr(), RUNTIME_SECRET), "{}", s.log());
    assert!(counter(&s, "lab", "acknowledged", 1) >= 1);

    let (ok, list) = clients(&s, &["list", "--format", "json"], "", &mut outputs);
    assert!(ok, "{list}");
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v[0]["name"], "local");
    assert_eq!(v[0]["managed_by"], "file");
    assert_eq!((v[1]["name"].as_str(), v[1]["managed_by"].as_str()), (Some("lab"), Some("stored")));
    assert_eq!((v[1]["address"].as_str(), v[1]["vendor"].as_str()), (Some("127.0.0.2/32"), Some("cisco-asa")));
    let (ok, table) = clients(&s, &["list"], "", &mut outputs);
    assert!(ok && table.contains("file (read-only)") && table.contains("stored"), "{table}");

    // SIGHUP reloads the file and keeps the stored client.
    let before = s.log().matches("configuration reloaded").count();
    let pid = s.child.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.log().matches("configuration reloaded").count() == before {
        assert!(Instant::now() < deadline, "no reload in the log:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(send(s.addr(), RUNTIME_SECRET, "rt-after-reload"), "{}", s.log());

    // A new secret: the old one stops verifying, the new one is acknowledged, within a second.
    let (ok, text) =
        clients(&s, &["set-secret", "lab", "--secret-stdin"], &format!("{ROTATED_SECRET}\n"), &mut outputs);
    assert!(ok, "{text}");
    let rotated = Instant::now();
    assert!(until(s.addr(), ROTATED_SECRET, true, rotated) < Duration::from_secs(1));
    assert!(!send(s.addr(), RUNTIME_SECRET, "rt-old-secret"));
    assert!(counter(&s, "lab", "bad_authenticator", 1) >= 1);

    // Deleted: dropped again within a second, as an unknown source.
    let unknown_before = counter(&s, "unknown:127.0.0.2", "unknown_client", 1);
    let (ok, text) = clients(&s, &["delete", "lab"], "", &mut outputs);
    assert!(ok, "{text}");
    let deleted = Instant::now();
    let took = until(s.addr(), ROTATED_SECRET, false, deleted);
    assert!(took < Duration::from_secs(1), "still answered {took:?} after the delete");
    assert!(counter(&s, "unknown:127.0.0.2", "unknown_client", unknown_before + 1) > unknown_before);
    let (ok, text) = clients(&s, &["delete", "local"], "", &mut outputs);
    assert!(!ok && text.contains("configuration file"), "{text}");

    // The secrets are nowhere but in clients.db.
    let (_, stats) = clients(&s, &["list"], "", &mut outputs);
    let stats_out = s.cli(&["stats", "--format", "json"]);
    let mut seen = outputs + &stats + &String::from_utf8_lossy(&stats_out.stdout);
    s.stop();
    seen += &s.log();
    for entry in walk(s.dir.path()) {
        let name = entry.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("clients.db") {
            seen += &String::from_utf8_lossy(&std::fs::read(&entry).unwrap());
        }
    }
    for secret in [RUNTIME_SECRET, ROTATED_SECRET] {
        assert!(!seen.contains(secret), "the secret {secret:?} was shown or logged");
    }
    assert!(s.log().contains("stored RADIUS clients changed"), "{}", s.log());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.dir.path().join("data/clients.db")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

/// A server whose configuration file has no `[[client]]` serves the stored ones, and
/// refuses to start while there are none.
#[test]
fn a_server_with_only_stored_clients_serves_them() {
    require("radclient");
    let dir = tempfile::tempdir().unwrap();
    let (port, auth_port) = (common::free_port(), common::free_port());
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[radius]\nacct_listen = [\"127.0.0.1:{port}\"]\nauth_listen = [\"127.0.0.1:{auth_port}\"]\n\n\
             [storage]\ndata_dir = \"data\"\n\n[log]\nlevel = \"warn\"\n"
        ),
    )
    .unwrap();
    let mut s = Server { child: None, dir, port, auth_port, config };
    let refused = Command::new(common::bin()).args(["serve", "--config"]).arg(&s.config).output().unwrap();
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && text.contains("none is stored"), "{text}");
    let mut outputs = String::new();
    let add = ["add", "local", "--address", "127.0.0.1", "--secret-stdin"];
    let (ok, text) = clients(&s, &add, &format!("{}\n", common::SECRET), &mut outputs);
    assert!(ok, "{text}");
    // The harness waits for Status-Server from 127.0.0.1 with the test secret: the
    // stored client answers it.
    s.spawn();
    let (ok, text) = common::radclient(
        s.addr(),
        "acct",
        common::SECRET,
        "Acct-Status-Type = Start\nUser-Name = \"only-stored\"\nAcct-Session-Id = \"os-1\"\n",
    );
    assert!(ok, "{text}");
}
