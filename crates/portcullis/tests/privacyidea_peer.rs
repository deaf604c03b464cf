//! privacyIDEA as the remote second-factor provider, for real: the test sets up
//! privacyIDEA 3.14 (PyPI) on loopback with a TOTP token, and pyrad drives PAP through
//! Portcullis, whose Access-Challenge carries privacyIDEA's challenge.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{SECRET, Server, add_user, last_event, python};

struct PrivacyIdea {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for PrivacyIdea {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn venv() -> PathBuf {
    std::env::var_os("PRIVACYIDEA_VENV").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/test-peers/privacyidea")),
        PathBuf::from,
    )
}

/// RFC 6238's SHA-1 test key.
const KEY_HEX: &str = "3132333435363738393031323334353637383930";
const KEY_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn start() -> PrivacyIdea {
    let manage = venv().join("bin/pi-manage");
    assert!(manage.is_file(), "privacyIDEA is not installed: run scripts/install-test-deps.sh first");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let cfg = dir.path().join("pi.cfg");
    std::fs::write(
        &cfg,
        format!(
            "SQLALCHEMY_DATABASE_URI = 'sqlite:///{d}/pi.sqlite'\nSECRET_KEY = 'test only'\nPI_PEPPER = 'test only'\n\
             PI_ENCFILE = '{d}/enckey'\nPI_AUDIT_KEY_PRIVATE = '{d}/private.pem'\nPI_AUDIT_KEY_PUBLIC = '{d}/public.pem'\n\
             PI_LOGFILE = '{d}/pi.log'\n"
        ),
    )
    .unwrap();
    for args in [
        vec!["setup", "create_enckey"],
        vec!["setup", "create_audit_keys"],
        vec!["setup", "create_tables"],
        vec!["admin", "add", "admin", "-p", "admin-pass"],
    ] {
        let out = Command::new(&manage).args(&args).env("PRIVACYIDEA_CONFIGFILE", &cfg).output().unwrap();
        assert!(out.status.success(), "pi-manage {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::write(dir.path().join("users"), "alice:x:1000:1000:Alice:/home/alice:/bin/sh\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::fs::File::create(dir.path().join("run.log")).unwrap();
    let child = Command::new(&manage)
        .args(["run", "-h", "127.0.0.1", "-p", &port.to_string()])
        .env("PRIVACYIDEA_CONFIGFILE", &cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "privacyIDEA did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/privacyidea_setup.py"))
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("admin-pass")
        .arg(dir.path().join("users"))
        .arg(format!("alice:{KEY_HEX}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "setup: {}", String::from_utf8_lossy(&out.stderr));
    PrivacyIdea { child, port, _dir: dir }
}

fn round_trip(s: &Server, options: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pyrad_auth.py"))
        .args(["127.0.0.1", &s.auth_port.to_string(), SECRET])
        .arg(common::dictionary_dir())
        .args(["totp", "alice", "wonderland", KEY_B32])
        .args(options)
        .env("PYRAD_TIMEOUT", "10")
        .output()
        .unwrap();
    assert!(out.status.success(), "pyrad: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn privacyidea_challenge_response_through_access_challenge() {
    let mut pi = start();
    let s = Server::start(&format!(
        "\n[mfa]\n\n[mfa.privacyidea]\nurl = \"http://127.0.0.1:{}\"\nrealm = \"corp\"\ntimeout_seconds = 5\n\n\
         [[network_policy]]\nname = \"staff\"\ngroups = [\"vpn\"]\nsession_timeout = 600\n",
        pi.port
    ));
    add_user(&s, "alice", "wonderland", &["vpn"], &[]);

    let r = round_trip(&s, &[]);
    assert_eq!(r["first"], "challenge", "{r}");
    assert_eq!(r["prompt"], "please enter otp:", "privacyIDEA's own prompt: {r}");
    assert_eq!(r["answer"], "accept", "{r}");
    assert_eq!(r["Session-Timeout"], 600);
    assert_eq!(last_event(&s, "alice")["mfa"], "remote_accept");

    let r = round_trip(&s, &["code=000000"]);
    assert_eq!(r["answer"], "reject", "{r}");
    assert_eq!(last_event(&s, "alice")["mfa"], "remote_reject");

    // privacyIDEA gone: fail mode secure rejects.
    let _ = pi.child.kill();
    let _ = pi.child.wait();
    let r = round_trip(&s, &[]);
    assert_eq!(r["first"], "reject", "{r}");
    assert_eq!(last_event(&s, "alice")["mfa"], "remote_unavailable");
}
