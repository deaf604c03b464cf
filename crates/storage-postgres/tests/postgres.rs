//! The PostgreSQL backend against the conformance battery on a throwaway cluster of
//! Debian's PostgreSQL, plus what only it can show: migrations under a lock, TLS, the
//! FreeRADIUS views and passwords kept out of errors.

use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis_storage::Store;
use portcullis_storage::conformance::{auth_event, record, run_all};
use portcullis_storage::{Position, SessionQuery};
use portcullis_storage_postgres::testing::{Cluster, PASSWORD};
use portcullis_storage_postgres::{DatabaseUrl, PgStore, TlsOptions};

fn cluster() -> Cluster {
    Cluster::start().unwrap_or_else(|e| panic!("PostgreSQL must start for this test: {e}"))
}

fn open(c: &Cluster, db: &str, node: &str) -> PgStore {
    PgStore::open(&DatabaseUrl::new(c.url(db)), &TlsOptions::default(), node).expect("open")
}

#[test]
fn postgres_passes_conformance() {
    let c = cluster();
    let n = AtomicUsize::new(0);
    run_all(|| {
        let db = format!("check{}", n.fetch_add(1, Ordering::Relaxed));
        c.create_database(&db).expect("create database");
        open(&c, &db, "node-a")
    });
}

#[test]
fn three_nodes_starting_at_once_migrate_once() {
    let c = cluster();
    c.create_database("shared").unwrap();
    let barrier = std::sync::Barrier::new(3);
    std::thread::scope(|s| {
        let nodes: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|node| {
                let (c, barrier) = (&c, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    open(c, "shared", node)
                })
            })
            .collect();
        for n in nodes {
            n.join().expect("every node opens the database");
        }
    });
    let versions =
        c.psql("shared", "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations").unwrap();
    assert_eq!(versions, "1,2,3");
    // Opening again applies nothing.
    open(&c, "shared", "d");
    assert_eq!(c.psql("shared", "SELECT count(*) FROM schema_migrations").unwrap(), "3");
    // A database a newer build migrated is refused.
    c.psql("shared", "INSERT INTO schema_migrations (version, name) VALUES (99, 'future')").unwrap();
    let e = PgStore::open(&DatabaseUrl::new(c.url("shared")), &TlsOptions::default(), "e").unwrap_err();
    assert!(e.to_string().contains("newer than this build"), "{e}");
}

#[test]
fn nodes_keep_their_own_positions_and_counters() {
    let c = cluster();
    c.create_database("nodes").unwrap();
    let mut a = open(&c, "nodes", "a");
    let mut b = open(&c, "nodes", "b");
    a.apply(&[record(1, "alice", "nas", "1", 5)], Position { segment: 1, offset: 90 }).unwrap();
    b.apply(&[record(1, "bob", "nas", "2", 6)], Position { segment: 3, offset: 7 }).unwrap();
    assert_eq!(a.applied_position().unwrap(), Position { segment: 1, offset: 90 });
    assert_eq!(b.applied_position().unwrap(), Position { segment: 3, offset: 7 });
    assert_eq!(a.sessions(&SessionQuery::default()).unwrap().len(), 2, "one database, both nodes' sessions");
    let counter = |n| portcullis_storage::Counter { client: "rras".into(), reason: "accepted".into(), count: n };
    a.save_counters(&[counter(3)]).unwrap();
    b.save_counters(&[counter(5)]).unwrap();
    assert_eq!(a.counters().unwrap(), vec![counter(3)]);
    assert_eq!(b.counters().unwrap(), vec![counter(5)]);
}

#[test]
fn the_store_reconnects_after_the_database_restarts() {
    let c = cluster();
    c.create_database("restart").unwrap();
    let mut s = open(&c, "restart", "a");
    s.apply(&[record(1, "alice", "nas", "1", 5)], Position { segment: 1, offset: 1 }).unwrap();
    c.kill().unwrap();
    let e = s.apply(&[record(1, "bob", "nas", "2", 6)], Position { segment: 1, offset: 2 }).unwrap_err();
    assert!(!e.to_string().contains(PASSWORD), "{e}");
    assert!(s.applied_position().is_err(), "no database, no position");
    c.up().unwrap();
    s.apply(&[record(1, "bob", "nas", "2", 6)], Position { segment: 1, offset: 2 }).unwrap();
    assert_eq!(s.applied_position().unwrap(), Position { segment: 1, offset: 2 });
    assert_eq!(s.sessions(&SessionQuery::default()).unwrap().len(), 2);
}

#[test]
fn errors_and_debug_output_never_show_the_password() {
    let c = cluster();
    c.create_database("secret").unwrap();
    let url = DatabaseUrl::new(c.url("secret"));
    assert!(!format!("{url:?} {url}").contains(PASSWORD));
    let store = PgStore::open(&url, &TlsOptions::default(), "a").unwrap();
    assert!(!format!("{store:?}").contains(PASSWORD));
    // A wrong password, a database that does not exist, a port nothing listens on.
    let wrong = c.url("secret").replace(PASSWORD, "not-the-Secret-x7");
    let missing = c.url("no_such_db");
    let closed = c
        .url("secret")
        .replace(&format!(":{}/", c.port), &format!(":{}/", portcullis_storage_postgres::testing::free_port()));
    for url in [wrong, missing, closed] {
        let e = PgStore::open(&DatabaseUrl::new(url.clone()), &TlsOptions::default(), "a").unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(!text.contains(PASSWORD) && !text.contains("not-the-Secret-x7"), "{text}");
        assert!(text.contains("database error"), "{text}");
    }
}

#[test]
fn freeradius_views_answer_radacct_queries_and_refuse_writes() {
    let c = cluster();
    c.create_database("compat").unwrap();
    let mut s = open(&c, "compat", "a");
    let mut start = record(1, "alice", "vpn-1", "S1", 1_700_000_000);
    start.nas_ip = Some("192.0.2.10".parse().unwrap());
    start.framed_ip = Some("10.8.0.5".parse().unwrap());
    start.client_ip = Some("198.51.100.7".parse().unwrap());
    let mut stop = record(2, "bob", "vpn-1", "S2", 1_700_000_600);
    stop.nas_ip = start.nas_ip;
    stop.session_time = Some(600);
    stop.input_octets = Some(5_000_000_000);
    stop.terminate_cause = Some("User-Request".into());
    s.apply(&[start, stop], Position { segment: 1, offset: 2 }).unwrap();
    s.record_auth_events(&[
        auth_event(1_700_000_000_000, "alice", "accept"),
        auth_event(1_700_000_001_000, "bob", "reject"),
    ])
    .unwrap();
    // FreeRADIUS's simultaneous-use query and a typical report, unchanged.
    let simul = c
        .psql("compat", "SELECT COUNT(*) FROM radacct WHERE UserName='EXAMPLE\\alice' AND AcctStopTime IS NULL")
        .unwrap();
    assert_eq!(simul, "1");
    let report = c
        .psql(
            "compat",
            "SELECT UserName, host(NASIPAddress), host(FramedIPAddress), CallingStationId, AcctSessionTime,
                    AcctInputOctets, AcctTerminateCause, extract(epoch FROM AcctStopTime)::bigint
             FROM radacct ORDER BY AcctStartTime, RadAcctId",
        )
        .unwrap();
    assert_eq!(
        report,
        "EXAMPLE\\alice|192.0.2.10|10.8.0.5|198.51.100.7||||\nEXAMPLE\\bob|192.0.2.10|||600|5000000000|User-Request|1700000600"
    );
    let posts = c
        .psql(
            "compat",
            "SELECT username, reply, extract(epoch FROM authdate)::bigint FROM radpostauth ORDER BY authdate",
        )
        .unwrap();
    assert_eq!(posts, "ALICE|Access-Accept|1700000000\nBOB|Access-Reject|1700000001");
    let columns = c
        .psql("compat", "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'radpostauth'")
        .unwrap();
    assert_eq!(columns, "id,username,reply,calledstationid,callingstationid,authdate,class", "no pass column");
    for write in ["DELETE FROM radacct", "UPDATE radacct SET username = 'x'", "DELETE FROM radpostauth"] {
        let e = c.psql("compat", write).unwrap_err();
        assert!(e.contains("cannot"), "{write}: {e}");
    }
    assert_eq!(s.sessions(&SessionQuery::default()).unwrap().len(), 2);
}
