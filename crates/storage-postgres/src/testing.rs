//! A throwaway PostgreSQL cluster for tests: Debian's `initdb` and `pg_ctl` (the newest
//! version under `/usr/lib/postgresql`), a data directory in a temporary directory, a
//! free port on 127.0.0.1, `fsync` off. PostgreSQL refuses to run as root, so as root
//! the cluster runs as the `postgres` user (created by Debian's package), or `nobody`.
//! Starting is never skipped: a cluster that cannot start is an error.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running throwaway cluster; stopped and deleted when dropped.
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    user: Option<String>,
    pub port: u16,
}

fn newest_bin() -> Result<PathBuf, String> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("no PostgreSQL in /usr/lib/postgresql ({e}): install Debian's postgresql"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin".into())
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_or(0, |a| a.port())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

impl Cluster {
    /// Creates and starts a cluster whose superuser is `postgres` with password
    /// `password` (md5/scram over TCP).
    pub fn start() -> Result<Self, String> {
        let bin = newest_bin()?;
        let dir = tempfile::Builder::new().prefix("portcullis-pg").tempdir().map_err(|e| e.to_string())?;
        let user = if is_root() {
            let name = ["postgres", "nobody"]
                .into_iter()
                .find(|u| Command::new("id").arg("-u").arg(u).output().is_ok_and(|o| o.status.success()))
                .ok_or("neither a postgres nor a nobody user to run PostgreSQL as")?;
            let status =
                Command::new("chown").arg("-R").arg(name).arg(dir.path()).status().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("chown {name} {}", dir.path().display()));
            }
            Some(name.to_string())
        } else {
            None
        };
        let mut cluster = Self { dir, bin, user, port: 0 };
        let pwfile = cluster.dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).map_err(|e| e.to_string())?;
        cluster.chown(&pwfile)?;
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "postgres",
                "--pwfile",
                path(&pwfile),
                "-A",
                "scram-sha-256",
                "--locale=C.UTF-8",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        cluster.port = free_port();
        cluster.up()?;
        Ok(cluster)
    }

    fn chown(&self, file: &Path) -> Result<(), String> {
        if let Some(user) = &self.user {
            Command::new("chown").arg(user).arg(file).status().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temporary directory (owned by the cluster's user).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs one of the cluster's programs as its user.
    fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let exe = self.bin.join(program);
        let mut cmd = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd.args(args).current_dir(self.dir.path()).output().map_err(|e| format!("{program}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts the server (again) on its port with these extra settings.
    pub fn up_with(&self, extra: &str) -> Result<(), String> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c fsync=off \
             -c full_page_writes=off -c max_connections=200 {extra}",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let data = self.data();
        self.run("pg_ctl", &["-D", path(&data), "-l", path(&log), "-w", "-t", "60", "-o", &options, "start"])
            .map_err(|e| format!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()))?;
        Ok(())
    }

    /// Starts the server (again) on its port.
    pub fn up(&self) -> Result<(), String> {
        self.up_with("")
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn kill(&self) -> Result<(), String> {
        let data = self.data();
        self.run("pg_ctl", &["-D", path(&data), "-m", "immediate", "-w", "stop"]).map(|_| ())
    }

    /// A connection string for database `db` as the superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable", self.port)
    }

    /// Runs SQL with Debian's `psql` against database `db`; returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .arg(format!("host=127.0.0.1 port={} user=postgres dbname={db} sslmode=disable", self.port))
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// Creates an empty database.
    pub fn create_database(&self, name: &str) -> Result<(), String> {
        self.psql("postgres", &format!("CREATE DATABASE {name}")).map(|_| ())
    }
}

/// The superuser's password in throwaway clusters.
pub const PASSWORD: &str = "throwaway-Secret-9f3k";

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
