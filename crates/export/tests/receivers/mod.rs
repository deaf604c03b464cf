//! Syslog receivers for tests: rsyslog and syslog-ng from Debian's packages, unpacked
//! under target/test-peers/syslog by scripts/install-test-deps.sh, started on
//! 127.0.0.1 and killed when dropped. Shared by the export crate's tests and the
//! server's (through `#[path]`).
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn peers() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-peers/syslog");
    assert!(
        dir.join("usr/sbin/rsyslogd").is_file() && dir.join("usr/sbin/syslog-ng").is_file(),
        "rsyslog and syslog-ng are not unpacked: run scripts/install-test-deps.sh first"
    );
    dir
}

/// promtool from Debian's prometheus package, unpacked beside them.
pub fn promtool() -> PathBuf {
    peers().join("usr/bin/promtool")
}

/// TLS files of a receiver: the CA that signed its certificate, the certificate and key.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A receiver process, killed when dropped.
pub struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the receiver did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// rsyslog writing `hostname|app|msgid|sd|msg` lines to `out`; TLS when `certs` is set.
pub fn rsyslog(dir: &Path, port: u16, certs: Option<&Certs>, out: &Path) -> Peer {
    let p = peers();
    let work = dir.join(format!("rs-work-{port}"));
    std::fs::create_dir_all(&work).unwrap();
    let (global, module) = match certs {
        Some(c) => (
            format!(
                r#"DefaultNetstreamDriverCAFile="{}" DefaultNetstreamDriverCertFile="{}" DefaultNetstreamDriverKeyFile="{}""#,
                c.ca.display(),
                c.cert.display(),
                c.key.display()
            ),
            r#"StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon""#.to_string(),
        ),
        None => (String::new(), String::new()),
    };
    let conf = format!(
        r#"global(workDirectory="{work}" {global})
module(load="imtcp" {module})
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="s")
template(name="f" type="list"){{ property(name="hostname") constant(value="|") property(name="app-name")
  constant(value="|") property(name="msgid") constant(value="|") property(name="structured-data")
  constant(value="|") property(name="msg") constant(value="\n") }}
ruleset(name="s"){{ action(type="omfile" file="{out}" template="f") }}
"#,
        work = work.display(),
        out = out.display()
    );
    let conf_path = dir.join(format!("rsyslog-{port}.conf"));
    std::fs::write(&conf_path, conf).unwrap();
    // A pid file left by a killed instance would stop the next one.
    let _ = std::fs::remove_file(dir.join(format!("rsyslog-{port}.pid")));
    let child = Command::new(p.join("usr/sbin/rsyslogd"))
        .args(["-n", "-f"])
        .arg(&conf_path)
        .arg("-i")
        .arg(dir.join(format!("rsyslog-{port}.pid")))
        .arg("-M")
        .arg(p.join("usr/lib/x86_64-linux-gnu/rsyslog"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rsyslogd starts");
    wait_for_port(port);
    Peer(child)
}

/// syslog-ng receiving RFC 5424 over TLS and writing one JSON object per message.
pub fn syslog_ng(dir: &Path, port: u16, certs: &Certs, out: &Path) -> Peer {
    let p = peers();
    let conf = format!(
        r#"@version: 3.38
options {{ stats_freq(0); keep_hostname(yes); }};
source s {{ syslog(ip(127.0.0.1) port({port}) transport("tls")
  tls(key-file("{key}") cert-file("{cert}") peer-verify(optional-untrusted))); }};
destination d {{ file("{out}" template("$(format-json --scope rfc5424 --key MSGID --key PROGRAM --key HOST)\n")); }};
log {{ source(s); destination(d); }};
"#,
        key = certs.key.display(),
        cert = certs.cert.display(),
        out = out.display()
    );
    let conf_path = dir.join(format!("syslog-ng-{port}.conf"));
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(p.join("usr/sbin/syslog-ng"))
        .env("LD_LIBRARY_PATH", p.join("usr/lib/syslog-ng"))
        .args(["-F", "--no-caps", "-f"])
        .arg(&conf_path)
        .arg(format!("--module-path={}", p.join("usr/lib/syslog-ng/3.38").display()))
        .arg("-R")
        .arg(dir.join(format!("ng-{port}.persist")))
        .arg("-p")
        .arg(dir.join(format!("ng-{port}.pid")))
        .arg("-c")
        .arg(dir.join(format!("ng-{port}.ctl")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("syslog-ng starts");
    wait_for_port(port);
    Peer(child)
}
