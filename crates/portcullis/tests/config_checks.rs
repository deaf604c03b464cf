//! Configurations that would weaken authentication without saying so: what `check-config`
//! and `serve` refuse, what they warn about, and the password and generation rules of the
//! local users.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{SECRET, Server, add_user, free_port, radtest};

/// A configuration that starts: a loopback client with a long secret and free ports.
fn base() -> String {
    format!(
        "[radius]\nacct_listen = [\"127.0.0.1:{}\"]\nauth_listen = [\"127.0.0.1:{}\"]\n\n[storage]\ndata_dir = \
         \"data\"\n\n[[client]]\nname = \"local\"\naddress = \"127.0.0.1\"\nsecret = \"0123456789abcdef\"\n\n",
        free_port(),
        free_port()
    )
}

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("p.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn check_config(config: &Path) -> (bool, String, String) {
    let out = Command::new(common::bin()).arg("check-config").arg("--config").arg(config).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// `serve` must exit with an error; a server that starts instead is stopped and fails
/// the test.
fn serve_refuses(config: &Path) -> String {
    let mut child = Command::new(common::bin())
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            assert!(!status.success(), "serve exited successfully: {err}");
            return err;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("serve started with a configuration it must refuse");
}

/// Both `check-config` and `serve` refuse the configuration with an error holding `words`.
fn refused(text: &str, words: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), text);
    let (ok, out, err) = check_config(&config);
    assert!(!ok, "check-config accepted it: {out}");
    for w in words {
        assert!(err.contains(w), "check-config error without {w:?}: {err}");
    }
    let err = serve_refuses(&config);
    for w in words {
        assert!(err.contains(w), "serve error without {w:?}: {err}");
    }
}

#[test]
fn a_policy_asking_for_mfa_without_an_mfa_section_is_refused() {
    for mode in ["required", "optional"] {
        let text = format!("{}[[network_policy]]\nname = \"vpn staff\"\nmfa = \"{mode}\"\n", base());
        refused(&text, &["network_policy \"vpn staff\"", mode, "add an [mfa] section"]);
    }
}

#[test]
fn lockout_turned_off_is_refused() {
    refused(&format!("{}[mfa]\nlockout_seconds = 0\n", base()), &["mfa.lockout_seconds = 0"]);
    refused(&format!("{}[mfa]\nlockout_failures = 0\n", base()), &["mfa.lockout_failures"]);
}

#[test]
fn an_mfa_database_on_missing_shared_storage_is_refused_not_created() {
    let shared = tempfile::tempdir().unwrap();
    let missing = shared.path().join("not-mounted");
    let text = format!("{}[mfa]\ndatabase = {:?}\n", base(), missing.join("mfa.db").display().to_string());
    refused(&text, &["mfa.database", "not-mounted", "does not exist"]);
    assert!(!missing.exists(), "the directory was created");
    // `portcullis mfa` opens the same database and must not make it either.
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), &text);
    let out = Command::new(common::bin()).args(["mfa", "list", "--config"]).arg(&config).output().unwrap();
    assert!(!out.status.success());
    assert!(!missing.exists(), "the directory was created");
}

/// `portcullis user add|passwd NAME --password-stdin` with `password` on standard input.
fn user(config: &Path, command: &str, name: &str, password: &str) -> Output {
    let mut child = Command::new(common::bin())
        .args(["user", command, name, "--password-stdin", "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn short_passwords_are_refused_by_user_add_and_passwd() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), &base());
    let out = user(&config, "add", "bob", "x");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.min_password_length asks for at least 8"), "{err}");
    assert!(!err.contains("\"x\""), "{err}");
    assert!(user(&config, "add", "bob", "1234567").status.code() == Some(2));
    assert!(user(&config, "add", "bob", "12345678").status.success());
    let out = user(&config, "passwd", "bob", "short");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8"));
    assert!(user(&config, "passwd", "bob", "long-enough").status.success());
    // The minimum is configurable.
    write(dir.path(), &format!("{}[auth]\nmin_password_length = 12\n", base()));
    assert!(!user(&config, "passwd", "bob", "long-enough").status.success());
    assert!(user(&config, "passwd", "bob", "long-enough!").status.success());
}

/// The PAP credential cache is keyed by user, password and generation: a user deleted
/// and added again with a new password must not log in with the old one.
#[test]
fn a_cached_password_does_not_survive_delete_and_re_add() {
    let s = Server::start("[[network_policy]]\nname = \"all\"\n");
    add_user(&s, "bob", "first-password", &[], &[]);
    assert!(radtest(&s, "pap", "bob", "first-password").0);
    assert!(s.cli(&["user", "delete", "bob"]).status.success());
    add_user(&s, "bob", "second-password", &[], &[]);
    assert!(!radtest(&s, "pap", "bob", "first-password").0, "the old password was accepted from the cache");
    assert!(radtest(&s, "pap", "bob", "second-password").0);
}

const WEAK: &str = "[[client]]\nname = \"anyone\"\naddress = \"0.0.0.0/0\"\nsecret = \"0123456789abcdef\"\n\
                    require_message_authenticator = false\nlimit_proxy_state = false\n\n\
                    [[ldap]]\nname = \"corp\"\nurls = [\"ldap://127.0.0.1:1\"]\nbind_dn = \"cn=svc\"\n\
                    bind_password = \"ldap-bind-password\"\nbase_dn = \"dc=example\"\n\n\
                    [[network_policy]]\nname = \"everyone\"\n\n\
                    [mfa]\npolicy_default = \"off\"\nfail_mode = \"safe\"\nrequire_user_match = false\n\
                    exempt_nas = [\"10.0.0.0/8\"]\n";

const WEAK_WARNINGS: [&str; 8] = [
    "client \"anyone\" address 0.0.0.0/0 covers every address",
    "client \"anyone\": require_message_authenticator = false",
    "client \"anyone\": limit_proxy_state = false",
    "ldap \"corp\": ldap://127.0.0.1:1 without starttls",
    "mfa.exempt_nas 10.0.0.0/8 is wider than a /24",
    "mfa.fail_mode = \"safe\"",
    "mfa.require_user_match = false",
    "mfa.policy_default = \"off\": network policies without an mfa key admit without a second factor (\"everyone\")",
];

#[test]
fn check_config_lists_every_weakening_and_still_passes() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), &format!("{}{WEAK}", base()));
    let (ok, out, err) = check_config(&config);
    assert!(ok, "warnings do not make a configuration invalid: {out}{err}");
    assert!(out.contains("configuration is valid"), "{out}");
    for w in WEAK_WARNINGS {
        assert!(out.contains(&format!("warning: {w}")), "no warning {w:?}: {out}");
    }
    assert_eq!(out.matches("warning: ").count(), WEAK_WARNINGS.len(), "{out}");
    assert!(!out.contains("ldap-bind-password") && !out.contains("0123456789abcdef"), "{out}");
}

#[test]
fn serve_logs_each_weakening_once_at_start() {
    let mut s = Server::start(&format!("\n{WEAK}"));
    s.stop();
    let log = s.log();
    for w in WEAK_WARNINGS {
        assert_eq!(log.matches(w).count(), 1, "{w:?} should be logged once: {log}");
    }
    assert!(log.contains(&format!("client \"local\" has a {}-character secret", SECRET.len())), "{log}");
    assert!(!log.contains("ldap-bind-password"), "{log}");
}
