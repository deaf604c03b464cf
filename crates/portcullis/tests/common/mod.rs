//! Test harness: runs the real `portcullis` binary on 127.0.0.1 with a random port and a
//! temporary data directory, and finds the third-party peers the tests drive.

#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_radius::{Authenticator, Code, Identifier, Packet, PacketBuilder, SharedSecret};

pub const SECRET: &str = "testing123";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

/// A port on 127.0.0.1 that is free for UDP and TCP, released before returning. Taken
/// below the kernel's ephemeral range (32768 and up), where the peers' own client
/// sockets and other tests' `bind(0)` never land between our check and the server's
/// bind; one counter per test binary, offset by the process id, keeps the threads of a
/// binary apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 10_000 + (std::process::id() % 400) * 50;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(base + n % 22_000).unwrap_or(10_000);
        let port = if port >= 32_000 { port - 22_000 } else { port };
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The session ids in a load generator's `--ack-log`, in the order they were acknowledged.
pub fn acked_ids(ack_log: &Path) -> Vec<String> {
    std::fs::read_to_string(ack_log).unwrap().lines().map(|l| l.split_once(' ').unwrap().1.to_string()).collect()
}

/// Fails loudly when a peer is missing: the test setup installs them.
pub fn require(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(tool)).find(|p| p.is_file()));
    found.unwrap_or_else(|| panic!("{tool} is not installed: run scripts/install-test-deps.sh first"))
}

pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

pub fn dictionary_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../radius/dictionaries")
}

pub struct Server {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub auth_port: u16,
    pub config: PathBuf,
}

impl Server {
    /// Writes a configuration with `extra` appended and starts the server.
    pub fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        Self::start_in(dir, port, extra)
    }

    pub fn start_in(dir: tempfile::TempDir, port: u16, extra: &str) -> Self {
        Self::start_with_storage(dir, port, "", extra)
    }

    /// [`Server::start_in`] with more `[storage]` lines.
    pub fn start_with_storage(dir: tempfile::TempDir, port: u16, storage: &str, extra: &str) -> Self {
        let config = dir.path().join("portcullis.toml");
        let auth_port = free_port();
        let text = format!(
            "[radius]\nacct_listen = [\"127.0.0.1:{port}\"]\nauth_listen = [\"127.0.0.1:{auth_port}\"]\n\n[storage]\ndata_dir = \"data\"\n{storage}\n[log]\nlevel = \"warn\"\n\n\
             # The tests' passwords are short words.\n[auth]\nmin_password_length = 1\n\n\
             [[client]]\nname = \"local\"\naddress = \"127.0.0.1\"\nsecret = \"{SECRET}\"\n{extra}"
        );
        std::fs::write(&config, text).unwrap();
        let mut s = Self { child: None, dir, port, auth_port, config };
        s.spawn();
        s
    }

    pub fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    /// Starts `portcullis bench` against the accounting port with `args`, writing what
    /// was acknowledged to `ack_log`; its report is on the child's standard output.
    pub fn bench(&self, args: &[&str], ack_log: &Path) -> Child {
        Command::new(bin())
            .arg("bench")
            .args(args)
            .arg("--target")
            .arg(self.addr().to_string())
            .arg("--ack-log")
            .arg(ack_log)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Of the session ids in `acked`, those not stored, once at least `expected`
    /// sessions are (or the wait ran out), and how many sessions are stored.
    pub fn unstored(&self, acked: &[String], expected: usize) -> (Vec<String>, usize) {
        let v = self.sessions_until(&["--limit", "100000000"], |v| v.len() >= expected);
        let stored: std::collections::HashSet<&str> = v.iter().filter_map(|x| x["session_id"].as_str()).collect();
        (acked.iter().filter(|id| !stored.contains(id.as_str())).cloned().collect(), v.len())
    }

    /// Sets `log.level` in the configuration file and restarts the server with it.
    pub fn config_log_level(&mut self, level: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, text.replace("level = \"warn\"", &format!("level = \"{level}\""))).unwrap();
        self.stop();
        self.spawn();
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn auth_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.auth_port))
    }

    /// Waits until a Status-Server is answered.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if status_server(self.addr(), SECRET).is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not come up; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs a CLI subcommand against this server's configuration.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin()).args(args).arg("--config").arg(&self.config).output().unwrap()
    }

    /// `sessions --format json`, waiting until `until` holds (sessions apply
    /// asynchronously, within milliseconds).
    pub fn sessions_until(
        &self,
        extra: &[&str],
        until: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut args = vec!["sessions", "--format", "json"];
        args.extend_from_slice(extra);
        loop {
            let out = self.cli(&args);
            let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if until(&v) || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the store has applied the whole journal (after a restart the
    /// applier works through what was acknowledged but not yet applied; under load on
    /// a small machine that takes a while).
    pub fn wait_applied(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let out = self.cli(&["stats", "--format", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            if v["journal_pending_bytes"] == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "the journal is still not applied: {v}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `stats --format json`, waiting until `until` holds (counters are saved every 2 s).
    pub fn stats_until(&self, until: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = self.cli(&["stats", "--format", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            if until(&v) || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends Status-Server and returns the reply, if any arrives within 300 ms.
pub fn status_server(addr: SocketAddr, secret: &str) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").ok()?;
    s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
    let mut b = PacketBuilder::new(Code::StatusServer, Identifier(1));
    b.message_authenticator();
    let bytes = b.encode_with_authenticator(Authenticator([7; 16]), &SharedSecret::new(secret)).ok()?;
    s.send_to(&bytes, addr).ok()?;
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).ok()?;
    Packet::decode(&buf[..n]).ok()?;
    Some(buf[..n].to_vec())
}

/// Starts `command` with `input` on its standard input and its outputs captured.
pub fn spawn_with_input(mut command: Command, input: &str) -> Child {
    use std::io::Write;
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child
}

/// Runs radclient with `input` on stdin; returns (success, stdout + stderr).
pub fn radclient(addr: SocketAddr, kind: &str, secret: &str, input: &str) -> (bool, String) {
    require("radclient");
    let mut command = Command::new("radclient");
    command.args(["-r", "2", "-t", "1", "-x"]).arg(addr.to_string()).args([kind, secret]);
    let out = spawn_with_input(command, input).wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

pub fn by_user<'a>(v: &'a [serde_json::Value], user: &str) -> Vec<&'a serde_json::Value> {
    v.iter().filter(|s| s["user"] == user).collect()
}

/// radtest against the server's authentication port; true when it was accepted.
pub fn radtest(s: &Server, kind: &str, user: &str, password: &str) -> (bool, String) {
    require("radtest");
    let out = Command::new("radtest")
        // radtest reads backslash escapes in the name (`\a` is BEL), so double them.
        .args(["-t", kind, &user.replace('\\', "\\\\"), password])
        .arg(format!("127.0.0.1:{}", s.auth_port))
        .args(["0", SECRET])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (text.contains("Received Access-Accept"), text)
}

/// The newest audit event of a user (waits until the applier stored one).
pub fn last_event(s: &Server, user: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = s.cli(&["auth-log", "--format", "json", "--user", user, "--limit", "1"]);
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(e) = v.into_iter().next() {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no audit event for {user}: {}",
            std::fs::read_to_string(s.dir.path().join("data/auth.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// eapol_test PEAP/MS-CHAPv2 with the server's demo CA (`tls/ca.pem` in its directory);
/// returns eapol_test's output after checking it succeeded with matching MPPE keys.
pub fn eapol_peap(s: &Server, identity: &str, anonymous: &str, password: &str) -> String {
    let (ok, log) = eapol_peap_try(s, identity, anonymous, password);
    assert!(ok, "{log}");
    assert!(log.contains("MPPE keys OK: 1  mismatch: 0"), "{log}");
    log
}

/// eapol_test PEAP/MS-CHAPv2: whether it succeeded, and its output.
pub fn eapol_peap_try(s: &Server, identity: &str, anonymous: &str, password: &str) -> (bool, String) {
    require("eapol_test");
    let conf = s.dir.path().join("peap.conf");
    std::fs::write(
        &conf,
        format!(
            "network={{\n\tkey_mgmt=IEEE8021X\n\teap=PEAP\n\tidentity=\"{identity}\"\n\t\
             anonymous_identity=\"{anonymous}\"\n\tpassword=\"{password}\"\n\tphase2=\"auth=MSCHAPV2\"\n\t\
             ca_cert=\"tls/ca.pem\"\n}}\n"
        ),
    )
    .unwrap();
    let out = Command::new("eapol_test")
        .arg("-c")
        .arg(&conf)
        .args(["-a", "127.0.0.1", "-p", &s.auth_port.to_string(), "-s", SECRET, "-t", "15"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    (log.lines().last() == Some("SUCCESS"), log)
}

/// The pyrad MS-CHAPv2 client's verdict (see tests/peers/pyrad_auth.py).
pub fn pyrad_mschapv2(s: &Server, user: &str, password: &str) -> serde_json::Value {
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pyrad_auth.py"))
        .args(["127.0.0.1", &s.auth_port.to_string(), SECRET])
        .arg(dictionary_dir())
        .args(["mschapv2", user, password])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// `portcullis user add` with the password on standard input.
pub fn add_user(s: &Server, name: &str, password: &str, groups: &[&str], extra: &[&str]) {
    let mut args = vec!["user", "add", name, "--password-stdin"];
    for g in groups {
        args.extend(["--group", g]);
    }
    args.extend(extra);
    let mut child = Command::new(bin())
        .args(&args)
        .arg("--config")
        .arg(&s.config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
}

/// FreeRADIUS writes `Event-Timestamp` as a UTC date.
pub fn detail_date(t: i64) -> String {
    let d = time::OffsetDateTime::from_unix_timestamp(t).unwrap();
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        [u8::from(d.month()) as usize - 1];
    format!("{month} {:>2} {} {:02}:{:02}:{:02} UTC", d.day(), d.year(), d.hour(), d.minute(), d.second())
}

/// Starts one radclient accounting Start from `source` (a loopback address, through
/// `Packet-Src-IP-Address`) with one short wait.
pub fn spawn_acct_from(addr: SocketAddr, source: &str, secret: &str, session: &str) -> Child {
    let input = format!(
        "Acct-Status-Type = Start\nUser-Name = \"rt-user\"\nNAS-Identifier = \"lab-nas\"\n\
         Acct-Session-Id = \"{session}\"\nPacket-Src-IP-Address = {source}\n"
    );
    let mut command = Command::new("radclient");
    command.args(["-r", "1", "-t", "0.3"]).arg(addr.to_string()).args(["acct", secret]);
    spawn_with_input(command, &input)
}

/// One accounting request from `source`; true when acknowledged.
pub fn acct_from(addr: SocketAddr, source: &str, secret: &str, session: &str) -> bool {
    spawn_acct_from(addr, source, secret, session).wait().unwrap().success()
}

/// Starts a request from `source` every 50 ms (each with its own session) until one
/// sent at or after `since` ends the way `want` says (acknowledged or not); returns how
/// long after `since` that request was started. Panics after five seconds.
pub fn acct_until(addr: SocketAddr, source: &str, secret: &str, want: bool, since: Instant) -> Duration {
    let mut running: Vec<(Duration, Child)> = Vec::new();
    let mut found = None;
    for n in 0.. {
        assert!(since.elapsed() < Duration::from_secs(5), "still acknowledged={} after 5 s", !want);
        let session = format!("rt-{source}-{n}-{}", since.elapsed().as_micros());
        running.push((since.elapsed(), spawn_acct_from(addr, source, secret, &session)));
        std::thread::sleep(Duration::from_millis(50));
        for (sent, child) in &mut running {
            if let Some(status) = child.try_wait().unwrap() {
                if status.success() == want && found.is_none_or(|f| *sent < f) {
                    found = Some(*sent);
                }
            }
        }
        running.retain_mut(|(_, c)| c.try_wait().unwrap().is_none());
        // Every request started before the one found has ended: none can be earlier.
        if let Some(f) = found.filter(|f| running.iter().all(|(sent, _)| sent > f)) {
            for (_, mut c) in running {
                let _ = c.wait();
            }
            return f;
        }
    }
    unreachable!()
}
