//! `portcullis backup` while the server takes accounting load: the copy, started as a
//! server of its own, holds every record acknowledged before the backup began.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::Server;

fn bench(s: &Server, run_id: &str, seconds: &str, ack_log: Option<&std::path::Path>) -> Command {
    let mut c = Command::new(common::bin());
    c.args(["bench", "--mode", "acct-start", "--requests", "1000000", "--window", "32"])
        .args(["--max-seconds", seconds, "--run-id", run_id])
        .arg("--target")
        .arg(s.addr().to_string())
        .stdout(Stdio::piped());
    if let Some(log) = ack_log {
        c.arg("--ack-log").arg(log);
    }
    c
}

#[test]
fn backup_under_load_restores_every_acknowledged_record() {
    let mut s = Server::start("");
    let before = s.dir.path().join("acked-before.txt");
    let out = bench(&s, "before", "2", Some(&before)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let acked: Vec<String> =
        std::fs::read_to_string(&before).unwrap().lines().map(|l| l.split_once(' ').unwrap().1.to_string()).collect();
    assert!(acked.len() > 1000, "too little load: {}", acked.len());

    // More load while the backup runs.
    let during = bench(&s, "during", "3", None).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let copy = s.dir.path().join("backup");
    let out = s.cli(&["backup", "--to", copy.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("portcullis.db") && listing.contains("journal/"), "{listing}");
    assert!(during.wait_with_output().unwrap().status.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&copy), 0o700);
        assert_eq!(mode(&copy.join("portcullis.db")), 0o600);
    }
    // A second backup into the same directory is refused, not merged.
    let again = s.cli(&["backup", "--to", copy.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    s.stop();

    // The copy as the data directory of a new server.
    let restored = tempfile::tempdir().unwrap();
    std::fs::rename(&copy, restored.path().join("data")).unwrap();
    let mut r = Server::start_in(restored, common::free_port(), "");
    r.wait_applied(Duration::from_secs(120));
    let v = r.sessions_until(&["--limit", "100000000"], |v| v.len() >= acked.len());
    let stored: std::collections::HashSet<&str> = v.iter().filter_map(|x| x["session_id"].as_str()).collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(id.as_str())).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records missing from the backup, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!("{} acknowledged before the backup, {} sessions in the copy", acked.len(), v.len());
    r.stop();
}

#[test]
fn backup_of_a_directory_without_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(&config, "[storage]\ndata_dir = \"data\"\n").unwrap();
    let to = dir.path().join("copy");
    let out = Command::new(common::bin())
        .args(["backup", "--to", to.to_str().unwrap(), "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has the server run?"));
    assert!(!to.exists());
}
