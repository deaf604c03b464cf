//! The command line: configuration checking, dictionary lookups, and error messages.

mod common;

use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::bin()).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn example_configuration_is_valid_apart_from_its_secret_file() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../portcullis.example.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("asa.secret");
    std::fs::write(&secret, "a-long-secret-from-a-file\n").unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(&config, text.replace("/etc/portcullis/asa.secret", secret.to_str().unwrap())).unwrap();
    let (ok, out, err) = run(&["check-config", "--config", config.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("configuration is valid: 2 accounting listener(s), 2 client(s)"), "{out}");
}

#[test]
fn configuration_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[radius]\nacct_listen = [\"127.0.0.1:1813\"]\nacct_lisen = []\n").unwrap();
    let (ok, _, err) = run(&["check-config", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("bad.toml:3:") && err.contains("acct_lisen"), "{err}");
}

#[test]
fn short_secrets_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(&config, "[[client]]\nname = \"n\"\naddress = \"127.0.0.1\"\nsecret = \"short\"\n").unwrap();
    let (ok, out, _) = run(&["check-config", "--config", config.to_str().unwrap()]);
    assert!(ok);
    assert!(out.contains("recommends at least 16"), "{out}");
    assert!(!out.contains("short\""), "the secret itself is never printed: {out}");
}

#[test]
fn dictionary_lookup_by_name_number_and_vendor() {
    let (ok, out, _) = run(&["dictionary", "lookup", "Acct-Status-Type"]);
    assert!(ok);
    assert!(out.contains("number:  40") && out.contains("value:   7 Accounting-On"), "{out}");
    let (ok, out, _) = run(&["dictionary", "lookup", "44"]);
    assert!(ok && out.contains("Acct-Session-Id"), "{out}");
    let (ok, out, _) = run(&["dictionary", "lookup", "311/16"]);
    assert!(ok && out.contains("MS-MPPE-Send-Key") && out.contains("Microsoft (311)"), "{out}");
    let (ok, out, _) = run(&["dictionary", "lookup", "Microsoft:50"]);
    assert!(ok && out.contains("MS-Machine-Name"), "{out}");
    let (ok, _, err) = run(&["dictionary", "lookup", "No-Such-Thing"]);
    assert!(!ok && err.contains("no attribute"), "{err}");
}

#[test]
fn extra_dictionary_files_load_and_bad_lines_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dictionary.local"),
        "VENDOR Example 32473\nBEGIN-VENDOR Example\nATTRIBUTE Example-Thing 1 string\nEND-VENDOR Example\n",
    )
    .unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(&config, "[dictionary]\nfiles = [\"dictionary.local\"]\n[[client]]\nname = \"n\"\naddress = \"127.0.0.1\"\nsecret = \"0123456789abcdef\"\n").unwrap();
    let (ok, out, err) = run(&["dictionary", "lookup", "Example-Thing", "--config", config.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("Example (32473)"), "{out}");
    std::fs::write(dir.path().join("dictionary.local"), "ATTRIBUTE Broken 1\n").unwrap();
    let (ok, _, err) = run(&["check-config", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("dictionary.local:1:"), "{err}");
}

#[test]
fn load_generator_refuses_non_loopback_targets() {
    let (ok, _, err) = run(&["bench", "--target", "192.0.2.1:1813", "--requests", "1"]);
    assert!(!ok);
    assert!(err.contains("only sends to loopback"), "{err}");
}

#[test]
fn sessions_without_a_database_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(&config, "[storage]\ndata_dir = \"d\"\n[[client]]\nname = \"n\"\naddress = \"127.0.0.1\"\nsecret = \"0123456789abcdef\"\n").unwrap();
    let (ok, _, err) = run(&["sessions", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("has the server run"), "{err}");
}

/// A configuration with its data in `d` inside a fresh directory.
fn config_in_tempdir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(&config, "[storage]\ndata_dir = \"d\"\n[[client]]\nname = \"n\"\naddress = \"127.0.0.1\"\nsecret = \"0123456789abcdef\"\n").unwrap();
    (dir, config)
}

/// Runs in `cwd` with `$PORTCULLIS_CONFIG` set to `env` (or unset).
fn run_with(cwd: &std::path::Path, env: Option<&std::path::Path>, args: &[&str]) -> (bool, String, String) {
    let mut c = Command::new(common::bin());
    c.args(args).current_dir(cwd).env_remove("PORTCULLIS_CONFIG");
    if let Some(path) = env {
        c.env("PORTCULLIS_CONFIG", path);
    }
    let out = c.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn the_error_is_said_once() {
    let (_dir, config) = config_in_tempdir();
    let (_, _, err) = run(&["sessions", "--config", config.to_str().unwrap()]);
    assert_eq!(err.matches("has the server run").count(), 1, "{err}");
}

#[test]
fn configuration_comes_from_the_environment_and_says_so() {
    let (dir, config) = config_in_tempdir();
    let elsewhere = tempfile::tempdir().unwrap();
    let (ok, out, err) = run_with(elsewhere.path(), Some(&config), &["check-config"]);
    assert!(ok, "{out}{err}");
    assert!(err.contains(&format!("using the configuration {} (from $PORTCULLIS_CONFIG)", config.display())), "{err}");
    // The database it names, not the demo's.
    let (_, _, err) = run_with(elsewhere.path(), Some(&config), &["sessions"]);
    assert!(err.contains(&dir.path().join("d").display().to_string()), "{err}");
    // --config wins and needs no message.
    let (ok, _, err) = run_with(
        elsewhere.path(),
        Some(std::path::Path::new("/nonexistent.toml")),
        &["check-config", "--config", config.to_str().unwrap()],
    );
    assert!(ok && !err.contains("using the configuration"), "{err}");
    // Without any, check-config has nothing to check and the others say they use the demo.
    let (ok, _, err) = run_with(elsewhere.path(), None, &["check-config"]);
    assert!(!ok && err.contains("$PORTCULLIS_CONFIG"), "{err}");
    let (_, _, err) = run_with(elsewhere.path(), None, &["alerts", "list"]);
    assert!(err.contains("using the demo configuration"), "{err}");
}

#[test]
fn listing_accounts_without_a_configuration_creates_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    for command in ["accounts", "user"] {
        let (ok, out, err) = run_with(cwd.path(), None, &[command, "list"]);
        assert!(ok, "{out}{err}");
        assert!(out.contains("no local accounts"), "{out}");
    }
    assert!(!cwd.path().join("portcullis-data").exists(), "listing created the demo data directory");
}

#[test]
fn bad_filter_values_list_the_valid_ones() {
    let (_dir, config) = config_in_tempdir();
    let c = config.to_str().unwrap();
    let (ok, _, err) = run(&["alerts", "list", "--config", c, "--status", "bogus"]);
    assert!(!ok && err.contains("open, resolved, closed"), "{err}");
    let (ok, _, err) = run(&["alerts", "list", "--config", c, "--kind", "impossible-travel"]);
    assert!(!ok && err.contains("impossible_travel") && err.contains("concurrent_sessions"), "{err}");
    let (ok, _, err) = run(&["auth-log", "--config", c, "--result", "granted"]);
    assert!(!ok && err.contains("accept, reject, challenge"), "{err}");
    let (ok, _, err) = run(&["replay", "--config", c, "--vendor", "rras", "/dev/null"]);
    assert!(!ok && err.contains("microsoft") && err.contains("cisco-asa"), "{err}");
}

#[test]
fn accounts_and_profiles_are_named_apart_and_the_old_names_still_work() {
    let (_, out, _) = run(&["--help"]);
    assert!(out.contains("accounts") && out.contains("profiles"), "{out}");
    for args in [["accounts", "--help"], ["user", "--help"], ["profiles", "--help"], ["users", "--help"]] {
        let (ok, out, err) = run(&args);
        assert!(ok, "{args:?}: {out}{err}");
    }
    let (_, out, _) = run(&["profiles", "--help"]);
    assert!(out.contains("show"), "{out}");
}

#[test]
fn check_config_refuses_what_serve_would_and_summarises_the_rest() {
    let (dir, config) = config_in_tempdir();
    let base = std::fs::read_to_string(&config).unwrap();
    let c = config.to_str().unwrap();
    let check = |text: &str| {
        std::fs::write(&config, text).unwrap();
        run(&["check-config", "--config", c])
    };
    let (ok, out, err) = check(&base);
    assert!(ok, "{out}{err}");
    for line in
        ["listeners: accounting", "clients: n", "network policies: none", "mfa: not configured", "geolocation: none"]
    {
        assert!(out.contains(line), "{line}: {out}");
    }
    let missing = dir.path().join("no-such.mmdb");
    let (ok, _, err) = check(&format!("[geo]\ndatabases = [{:?}]\n{base}", missing.to_str().unwrap()));
    assert!(!ok && err.contains("no-such.mmdb"), "{err}");
    let (ok, _, err) = check(&format!(
        "[eap]\ncertificate = \"{0}/none.pem\"\nprivate_key = \"{0}/none.key\"\n{base}",
        dir.path().display()
    ));
    assert!(!ok && err.contains("none.pem"), "{err}");
    let ldap = "\n[[ldap]]\nname = \"ad\"\nurls = [\"ldap://dc1:notaport\"]\nbind_dn = \"cn=svc\"\nbind_password = \"x\"\nbase_dn = \"dc=example\"\n";
    let (ok, _, err) = check(&format!("{base}{ldap}"));
    assert!(!ok && err.contains("urls must be"), "{err}");
    let (ok, _, err) = check(&format!("[mfa]\nstate_key_file = \"{}/gone/mfa.key\"\n{base}", dir.path().display()));
    assert!(!ok && err.contains("gone"), "{err}");
}
