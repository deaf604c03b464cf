//! `[storage] backend = "postgres"`: two nodes, each with its own journal, share one
//! PostgreSQL database (a throwaway cluster of Debian's PostgreSQL on 127.0.0.1). An
//! Accounting-Response still means "in this node's journal": a database outage delays
//! the shared sessions and loses none, and a restart applies nothing twice.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{SECRET, Server, free_port, radclient};
use portcullis_storage_postgres::testing::Cluster;

fn start(s: &Server, user: &str, session: &str, nas: &str) -> bool {
    let input = format!(
        "Acct-Status-Type = Start\nUser-Name = \"{user}\"\nNAS-Identifier = \"{nas}\"\n\
         Acct-Session-Id = \"{session}\"\nFramed-IP-Address = 10.8.0.5\n"
    );
    radclient(s.addr(), "acct", SECRET, &input).0
}

/// A node whose store is the cluster's `portcullis` database, the connection string in
/// a file beside its configuration.
fn node(url: &str, name: &str, extra: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db.url"), format!("{url}\n")).unwrap();
    let storage = format!("backend = \"postgres\"\nurl_file = \"db.url\"\nnode_id = \"{name}\"\n");
    Server::start_with_storage(dir, free_port(), &storage, extra)
}

/// `GET /metrics` over plain HTTP on loopback.
fn metrics(port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(c, "GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    text
}

fn count(pg: &Cluster, sql: &str) -> i64 {
    pg.psql("portcullis", sql).unwrap().parse().unwrap()
}

fn users(sessions: &[serde_json::Value]) -> Vec<String> {
    let mut u: Vec<String> = sessions.iter().map(|s| s["user"].as_str().unwrap_or_default().to_string()).collect();
    u.sort();
    u
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_nodes_share_one_database_and_an_outage_delays_only_the_shared_copy() {
    let pg = Cluster::start().unwrap();
    pg.create_database("portcullis").unwrap();
    let url = pg.url("portcullis");
    // A reporting command never migrates: before any node ran, it refuses and the
    // database stays empty.
    let probe = tempfile::tempdir().unwrap();
    std::fs::write(probe.path().join("db.url"), format!("{url}\n")).unwrap();
    std::fs::write(
        probe.path().join("portcullis.toml"),
        "[radius]\nacct_listen = [\"127.0.0.1:1813\"]\n[storage]\ndata_dir = \"data\"\nbackend = \"postgres\"\n\
         url_file = \"db.url\"\n[[client]]\nname = \"local\"\naddress = \"127.0.0.1\"\nsecret = \"s3cret-long-enough\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["sessions", "--config"])
        .arg(probe.path().join("portcullis.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("version 0"), "{out:?}");
    assert_eq!(pg.psql("portcullis", "SELECT to_regclass('sessions') IS NULL").unwrap(), "t");
    // Node A also exports alerts (to a receiver that is not there): opening a sink
    // reads the shared store at start.
    let siem = free_port();
    let mut a = node(
        &url,
        "node-a",
        &format!("\n[[export]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{siem}\"\n"),
    );
    let http = free_port();
    let b = node(
        &url,
        "node-b",
        &format!("\n[http]\nlisten = [\"127.0.0.1:{http}\"]\ntls = false\n[metrics]\nenabled = true\n"),
    );
    assert!(start(&a, "alice", "s-a-1", "vpn-a"));
    assert!(start(&b, "bob", "s-b-1", "vpn-b"));
    // Each node's reporting commands read the shared store: both see both sessions.
    for s in [&a, &b] {
        let seen = s.sessions_until(&[], |v| v.len() >= 2);
        assert_eq!(users(&seen), ["alice", "bob"], "{}", s.log());
    }
    // Each node keeps its own applied journal position; nothing went to the data
    // directories' embedded databases.
    assert_eq!(
        pg.psql("portcullis", "SELECT string_agg(node, ',' ORDER BY node) FROM applied").unwrap(),
        "node-a,node-b"
    );
    assert!(!Path::new(&a.dir.path().join("data/portcullis.db")).exists());
    // /metrics reads the shared store too (from the blocking pool).
    let text = metrics(http);
    assert!(text.contains("portcullis_sessions_open 2"), "{text}");

    // The database goes away: accounting is still acknowledged (the journal is the
    // commit point) and reaches the database once it is back.
    pg.kill().unwrap();
    for i in 0..3 {
        assert!(start(&a, "carol", &format!("s-a-out-{i}"), "vpn-a"), "acknowledged during the outage");
    }
    assert!(start(&b, "dave", "s-b-out", "vpn-b"));
    std::thread::sleep(Duration::from_secs(1));
    pg.up().unwrap();
    wait_for("the backlog to drain", 60, || count(&pg, "SELECT count(*) FROM sessions") == 6);
    assert_eq!(count(&pg, "SELECT count(*) FROM sessions WHERE user_name = 'carol'"), 3);

    // A restart re-reads the journal from the applied position: nothing twice.
    a.stop();
    a.spawn();
    assert!(start(&a, "erin", "s-a-2", "vpn-a"));
    wait_for("the new session", 30, || count(&pg, "SELECT count(*) FROM sessions WHERE user_name = 'erin'") == 1);
    assert_eq!(count(&pg, "SELECT count(*) FROM sessions"), 7);
    // The outage was logged, without the connection string's password.
    let log = a.log();
    assert!(!log.contains(portcullis_storage_postgres::testing::PASSWORD), "{log}");
    // A third node started with node-b's id is refused: they would share one position.
    let twin = tempfile::tempdir().unwrap();
    std::fs::write(twin.path().join("db.url"), format!("{url}\n")).unwrap();
    let text = std::fs::read_to_string(&b.config).unwrap().replace(&b.port.to_string(), &free_port().to_string());
    let text = text.replace(&http.to_string(), &free_port().to_string());
    let text = text.replace(&b.auth_port.to_string(), &free_port().to_string());
    std::fs::write(twin.path().join("portcullis.toml"), text).unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--config"])
        .arg(twin.path().join("portcullis.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("node-b") && err.contains("node_id"), "{err}");
    // Node A's journal lost (a node rebuilt under the same id): the database is ahead
    // of the new, empty journal, and the node refuses to start instead of skipping.
    a.stop();
    std::fs::remove_dir_all(a.dir.path().join("data/journal")).unwrap();
    let out = std::process::Command::new(common::bin()).args(["serve", "--config"]).arg(&a.config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("journal was replaced"), "{err}");
    // The maintenance commands that rewrite the embedded store refuse a shared one.
    let out = a.cli(&["rebuild"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("postgres"), "{out:?}");
}

#[test]
fn a_postgres_backend_without_a_connection_string_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        "[radius]\nacct_listen = [\"127.0.0.1:1813\"]\n[storage]\ndata_dir = \"data\"\nbackend = \"postgres\"\n\
         [[client]]\nname = \"local\"\naddress = \"127.0.0.1\"\nsecret = \"s3cret-long-enough\"\n",
    )
    .unwrap();
    let out =
        std::process::Command::new(common::bin()).args(["check-config", "--config"]).arg(&config).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("url_file"), "{out:?}");
    // A connection string with a password never reaches the output.
    std::fs::write(dir.path().join("db.url"), "postgres://portcullis:Pa55-w0rd@127.0.0.1:1/x?sslmode=disable\n")
        .unwrap();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("backend = \"postgres\"\n", "backend = \"postgres\"\nurl_file = \"db.url\"\n");
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(common::bin()).args(["sessions", "--config"]).arg(&config).output().unwrap();
    assert!(!out.status.success(), "nothing listens on port 1");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!printed.contains("Pa55-w0rd"), "{printed}");
}
