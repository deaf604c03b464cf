//! `portcullis backup` while the server takes accounting load: the copy, started as a
//! server of its own, holds every record acknowledged before the backup began.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Server;

const LOAD: [&str; 6] = ["--mode", "acct-start", "--requests", "1000000", "--window", "32"];

#[test]
fn backup_under_load_restores_every_acknowledged_record() {
    let mut s = Server::start("");
    let before = s.dir.path().join("acked-before.txt");
    let out = s.bench(&[&LOAD[..], &["--max-seconds", "2", "--run-id", "before"]].concat(), &before);
    let out = out.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let acked = common::acked_ids(&before);
    assert!(acked.len() > 1000, "too little load: {}", acked.len());

    // More load while the backup runs.
    let during = s.bench(
        &[&LOAD[..], &["--max-seconds", "3", "--run-id", "during"]].concat(),
        &s.dir.path().join("acked-during.txt"),
    );
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
    let (missing, stored) = r.unstored(&acked, acked.len());
    assert!(
        missing.is_empty(),
        "{} acknowledged records missing from the backup, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!("{} acknowledged before the backup, {stored} sessions in the copy", acked.len());
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
