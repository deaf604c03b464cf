//! The SQLite backend against the conformance battery, plus what only it can show.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis_storage::conformance::{record, run_all};
use portcullis_storage::{Entry, GroupCommitter, SessionQuery, SqliteStore, Store, SyncMode};

#[test]
fn sqlite_normal_passes_conformance() {
    let dirs = std::cell::RefCell::new(Vec::new());
    run_all(|| {
        let d = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(d.path(), SyncMode::Normal).unwrap();
        dirs.borrow_mut().push(d);
        s
    });
}

#[test]
fn sqlite_fsync_passes_conformance() {
    let dirs = std::cell::RefCell::new(Vec::new());
    run_all(|| {
        let d = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(d.path(), SyncMode::Fsync).unwrap();
        dirs.borrow_mut().push(d);
        s
    });
}

#[test]
fn data_survives_reopen() {
    let d = tempfile::tempdir().unwrap();
    {
        let mut s = SqliteStore::open(d.path(), SyncMode::Normal).unwrap();
        s.commit(&[Entry { raw: None, record: Some(record(1, "alice", "nas", "1", 5)) }]).unwrap();
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
fn group_committer_acknowledges_after_commit() {
    let d = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(d.path(), SyncMode::Normal).unwrap();
    let (writer, submit) = GroupCommitter::spawn(store, 1024, 64);
    let acked = Arc::new(AtomicUsize::new(0));
    for n in 0..500 {
        let acked = acked.clone();
        let r = record(1, &format!("user{n}"), "nas", &n.to_string(), n);
        submit
            .submit(Entry { raw: None, record: Some(r) }, Box::new(move |ok| {
                assert!(ok);
                acked.fetch_add(1, Ordering::SeqCst);
            }))
            .unwrap();
    }
    drop(submit);
    writer.join();
    assert_eq!(acked.load(Ordering::SeqCst), 500);
    let s = SqliteStore::open_read_only(d.path()).unwrap();
    assert_eq!(s.sessions(&SessionQuery::default()).unwrap().len(), 500);
}

#[test]
fn full_queue_refuses_instead_of_blocking() {
    let d = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(d.path(), SyncMode::Normal).unwrap();
    let (writer, submit) = GroupCommitter::spawn(store, 1, 1);
    // Block the writer inside a completion so the queue fills.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    submit.submit(Entry { raw: None, record: None }, Box::new(move |_| { let _ = rx.recv(); })).unwrap();
    let mut refused = 0;
    for _ in 0..10 {
        if submit.submit(Entry { raw: None, record: None }, Box::new(|_| {})).is_err() {
            refused += 1;
        }
    }
    assert!(refused >= 8, "refused {refused}");
    tx.send(()).unwrap();
    drop(submit);
    writer.join();
}
