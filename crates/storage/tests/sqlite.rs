//! The SQLite backend against the conformance battery, plus what only it can show.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis_storage::conformance::{record, run_all};
use portcullis_storage::{
    GroupCommitter, Journal, JournalReader, JournalSync, Position, RawPacket, SessionQuery, SqliteStore, Store,
    SyncMode,
};

fn conformance(sync: SyncMode) {
    let dirs = std::cell::RefCell::new(Vec::new());
    run_all(|| {
        let d = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(d.path(), sync).unwrap();
        dirs.borrow_mut().push(d);
        s
    });
}

#[test]
fn sqlite_normal_passes_conformance() {
    conformance(SyncMode::Normal);
}

#[test]
fn sqlite_fsync_passes_conformance() {
    conformance(SyncMode::Fsync);
}

#[test]
fn data_survives_reopen() {
    let d = tempfile::tempdir().unwrap();
    {
        let mut s = SqliteStore::open(d.path(), SyncMode::Normal).unwrap();
        s.apply(&[record(1, "alice", "nas", "1", 5)], Position { segment: 1, offset: 9 }).unwrap();
    }
    let s = SqliteStore::open_read_only(d.path()).unwrap();
    assert_eq!(s.sessions(&SessionQuery::default()).unwrap().len(), 1);
}

#[test]
fn read_only_open_of_missing_database_says_so() {
    let d = tempfile::tempdir().unwrap();
    let e = SqliteStore::open_read_only(d.path()).unwrap_err();
    assert!(e.to_string().contains("has the server run"), "{e}");
}

#[test]
fn another_connection_shares_the_database_and_needs_it_upgraded() {
    let d = tempfile::tempdir().unwrap();
    assert!(SqliteStore::open_another(d.path()).is_err(), "no database yet");
    let mut first = SqliteStore::open(d.path(), SyncMode::Normal).unwrap();
    let mut second = SqliteStore::open_another(d.path()).unwrap();
    first.apply(&[record(1, "alice", "nas", "1", 5)], Position { segment: 1, offset: 9 }).unwrap();
    assert_eq!(second.sessions(&SessionQuery::default()).unwrap().len(), 1);
    second.apply(&[record(1, "bob", "nas", "2", 6)], Position { segment: 1, offset: 10 }).unwrap();
    drop(second);
    assert_eq!(first.sessions(&SessionQuery::default()).unwrap().len(), 2);
}

fn raw(n: i64) -> RawPacket {
    RawPacket {
        received_ms: n,
        client: "c".into(),
        vendor: "generic".into(),
        source: "127.0.0.1:9".into(),
        packet: vec![1; 30],
    }
}

#[test]
fn group_committer_acknowledges_after_append() {
    let d = tempfile::tempdir().unwrap();
    let journal = Journal::open(d.path(), JournalSync::Process).unwrap();
    let last = Arc::new(std::sync::Mutex::new(Position::default()));
    let seen = last.clone();
    let (writer, submit) = GroupCommitter::spawn(journal, 1024, 64, move |_, end, _| *seen.lock().unwrap() = end);
    let acked = Arc::new(AtomicUsize::new(0));
    for n in 0..500 {
        let acked = acked.clone();
        submit
            .submit(
                raw(n),
                Box::new(move |ok| {
                    assert!(ok);
                    acked.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .unwrap();
    }
    drop(submit);
    let journal = writer.join().unwrap();
    assert_eq!(acked.load(Ordering::SeqCst), 500);
    assert_eq!(*last.lock().unwrap(), journal.position());
    let (records, _) = JournalReader::new(d.path()).read(Position::default(), 1000).unwrap();
    assert_eq!(records.len(), 500);
    assert_eq!(records[499].1, raw(499));
}

#[test]
fn full_queue_refuses_instead_of_blocking() {
    let d = tempfile::tempdir().unwrap();
    let journal = Journal::open(d.path(), JournalSync::Process).unwrap();
    let (writer, submit) = GroupCommitter::spawn(journal, 1, 1, |_, _, _| {});
    // Block the writer inside a completion so the queue fills.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    submit
        .submit(
            raw(0),
            Box::new(move |_| {
                let _ = rx.recv();
            }),
        )
        .unwrap();
    let mut refused = 0;
    for n in 0..10 {
        if submit.submit(raw(n), Box::new(|_| {})).is_err() {
            refused += 1;
        }
    }
    assert!(refused >= 8, "refused {refused}");
    tx.send(()).unwrap();
    drop(submit);
    writer.join();
}

#[test]
fn a_version_1_database_is_upgraded_in_place() {
    let d = tempfile::tempdir().unwrap();
    {
        let mut s = SqliteStore::open(d.path(), SyncMode::Normal).unwrap();
        s.apply(&[record(1, "alice", "nas", "1", 5)], Position { segment: 1, offset: 9 }).unwrap();
    }
    // Make it what an old release wrote: no session location, no alert tables, no
    // stale sessions.
    {
        let c = rusqlite::Connection::open(d.path().join("portcullis.db")).unwrap();
        c.execute_batch(
            "DROP INDEX sessions_open_by_nas_ip; ALTER TABLE sessions DROP COLUMN start_seen;
             ALTER TABLE sessions DROP COLUMN stale; ALTER TABLE sessions DROP COLUMN interim_gap;
             ALTER TABLE sessions DROP COLUMN location; DROP TABLE alerts; DROP TABLE alert_causes;
             DROP TABLE alert_comments; DROP INDEX sessions_start_seq; DROP INDEX sessions_stop_seq;
             DROP INDEX sessions_reset_seq; DROP INDEX auth_events_seq; ALTER TABLE sessions DROP COLUMN start_seq;
             ALTER TABLE sessions DROP COLUMN start_time; ALTER TABLE sessions DROP COLUMN stop_seq;
             ALTER TABLE sessions DROP COLUMN reset_seq; ALTER TABLE auth_events DROP COLUMN seq;
             DROP TABLE meta; DROP TABLE feed_order; DROP TABLE replayed; PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let mut s = SqliteStore::open(d.path(), SyncMode::Normal).unwrap();
    let sessions = s.sessions(&SessionQuery::default()).unwrap();
    assert_eq!((sessions.len(), sessions[0].location.clone()), (1, None));
    // Earlier history is ordered by event time; what comes now follows it.
    assert_eq!(sessions[0].order.start, Some((5, 5)));
    s.apply(&[record(1, "bob", "nas", "2", 1)], Position { segment: 1, offset: 15 }).unwrap();
    let fed: Vec<i64> = s.history(0, 0, 10).unwrap().iter().map(|(seq, _)| *seq).collect();
    assert_eq!(fed, vec![5, 6]);
    let mut again = record(2, "alice", "nas", "1", 9);
    again.location = Some(portcullis_geo::Location::internal());
    s.apply(&[again], Position { segment: 1, offset: 20 }).unwrap();
    assert_eq!(s.sessions(&SessionQuery::default()).unwrap()[0].location, Some(portcullis_geo::Location::internal()));
    let draft = portcullis_storage::conformance::draft(
        portcullis_detect::AlertKind::BruteForce,
        "alice",
        9,
        "c",
        "brute_force:alice",
    );
    assert_eq!(s.record_alerts(&[draft], 1).unwrap().len(), 1);
}

#[test]
fn sqlite_clients_pass_conformance() {
    let dirs = std::cell::RefCell::new(Vec::new());
    portcullis_storage::conformance::run_client_store(|| {
        let d = tempfile::tempdir().unwrap();
        let s = portcullis_storage::SqliteClients::open(d.path()).unwrap();
        dirs.borrow_mut().push(d);
        s
    });
}

/// The server polls while the CLI writes from another process: a second connection
/// sees each change through the generation, and the file is its owner's alone.
#[test]
fn sqlite_clients_are_private_and_shared_between_connections() {
    use portcullis_storage::{Change, ClientSecret, ClientSettings, ClientStore, SqliteClients};
    let d = tempfile::tempdir().unwrap();
    let reader = SqliteClients::open(d.path()).unwrap();
    let mut writer = SqliteClients::open(d.path()).unwrap();
    let before = reader.generation().unwrap();
    let settings = ClientSettings::new("lab", "192.0.2.0/24".parse().unwrap());
    writer.insert(&settings, &ClientSecret::new("0123456789abcdef"), Change { by: "cli", now_ms: 1 }).unwrap();
    assert!(reader.generation().unwrap() > before);
    assert_eq!(reader.clients_with_secrets().unwrap()[0].1.expose(), "0123456789abcdef");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["clients.db", "clients.db-wal", "clients.db-shm"] {
            let mode = std::fs::metadata(d.path().join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
    }
}
