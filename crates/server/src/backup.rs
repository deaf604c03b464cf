//! `portcullis backup`: a copy of everything a server keeps, taken while it runs.
//!
//! Databases are copied as consistent snapshots (`VACUUM INTO`, one read transaction
//! each, so the server carries on). Journal segments are copied after the databases:
//! the copy of `portcullis.db` records a journal position that the copied journal
//! reaches or passes, so a restored server re-applies what the snapshot lacks and loses
//! nothing (applying a record twice equals applying it once). A record being written
//! while the newest segment is copied is a torn tail, which opening the journal cuts off;
//! its request was not answered before the copy began, so nothing acknowledged is
//! missing.

use std::path::{Path, PathBuf};

use portcullis_storage::FileMode;

use crate::config::Config;

/// What a backup wrote.
#[derive(Debug, Default)]
pub struct Report {
    /// Files written, relative to the backup directory, with their sizes.
    pub files: Vec<(PathBuf, u64)>,
}

impl Report {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, n)| n).sum()
    }
}

fn io(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

/// Whether `dir` holds journal segments (`<20 digits>.log`).
fn is_journal(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.len() == 24 && name.ends_with(".log") && name[..20].bytes().all(|b| b.is_ascii_digit())
        })
    })
}

/// The entries of `dir` that `keep` selects, sorted by name.
fn entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>, String> {
    let mut out: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(|e| io(dir, e))?.flatten().map(|e| e.path()).filter(|p| keep(p)).collect();
    out.sort();
    Ok(out)
}

/// Backups hold password hashes and TOTP secrets: the owner's alone.
const MODE: FileMode = FileMode::PRIVATE;

/// Creates one directory (not its parents), readable by its owner only.
fn private_dir(path: &Path) -> Result<(), String> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, MODE.dir_bits());
    builder.create(path).map_err(|e| io(path, e))
}

/// Copies one file byte for byte, readable by its owner only.
fn copy_private(from: &Path, to: &Path) -> Result<u64, String> {
    let n = std::fs::copy(from, to).map_err(|e| io(from, e))?;
    MODE.restrict(to).map_err(|e| io(to, e))?;
    Ok(n)
}

/// Writes a backup of the data directory named by `config` (and the MFA database and
/// key wherever they are configured) into `dest`, which must not exist yet. Log files
/// (`auth.log`, NPS logs) are left to the system's log backup unless `logs` is set.
pub fn run(config: &Config, dest: &Path, logs: bool) -> Result<Report, String> {
    let data = &config.storage.data_dir;
    // With a shared PostgreSQL store the sessions, events and alerts are in that
    // database (its own backup, `pg_dump`); the rest of the data directory is copied.
    let shared = config.storage.backend == crate::config::Backend::Postgres;
    if !shared && !data.join("portcullis.db").exists() {
        return Err(format!("{} holds no database (has the server run?)", data.display()));
    }
    if dest.exists() {
        return Err(format!("{} already exists; name a new directory", dest.display()));
    }
    private_dir(dest)?;
    let mut report = Report::default();
    let mut add = |rel: PathBuf, bytes: u64| report.files.push((rel, bytes));

    // Databases first, so the journal copied afterwards reaches every position they record.
    let mut databases: Vec<(PathBuf, PathBuf)> = ["portcullis.db", "users.db", "clients.db"]
        .iter()
        .map(|n| (data.join(n), PathBuf::from(n)))
        .filter(|(p, rel)| p.exists() && !(shared && rel.as_os_str() == "portcullis.db"))
        .collect();
    let mfa_db = config.mfa.as_ref().map_or_else(|| data.join("mfa.db"), |m| m.database_path(data));
    if mfa_db.exists() {
        databases.push((mfa_db, PathBuf::from("mfa.db")));
    }
    for (from, rel) in databases {
        let to = dest.join(&rel);
        portcullis_storage::snapshot_database(&from, &to).map_err(|e| format!("{}: {e}", from.display()))?;
        add(rel, std::fs::metadata(&to).map_or(0, |m| m.len()));
    }
    let key = config.mfa.as_ref().map_or_else(|| data.join("mfa.key"), |m| m.key_path(data));
    if key.exists() {
        add(PathBuf::from("mfa.key"), copy_private(&key, &dest.join("mfa.key"))?);
    }
    // The HTTPS listener's self-signed certificate and key, so a restored server shows
    // the fingerprint its users already compared.
    let tls = crate::certs::http_tls_dir(data);
    if config.http.certificate.is_none() && tls.is_dir() {
        private_dir(&dest.join("http-tls"))?;
        for name in ["cert.pem", "key.pem"] {
            let rel = Path::new("http-tls").join(name);
            if tls.join(name).is_file() {
                add(rel.clone(), copy_private(&tls.join(name), &dest.join(&rel))?);
            }
        }
    }

    let mut dirs: Vec<(PathBuf, PathBuf)> = entries(data, |p| p.is_dir() && is_journal(p))?
        .into_iter()
        .map(|d| (PathBuf::from(d.file_name().unwrap_or_default()), d))
        .collect();
    if logs {
        let nps = config.nps_log.as_ref().and_then(|n| n.directory.clone()).unwrap_or_else(|| data.join("nps"));
        dirs.extend(std::iter::once((PathBuf::from("nps"), nps)).filter(|(_, p)| p.is_dir()));
    }
    for (name, dir) in dirs {
        private_dir(&dest.join(&name))?;
        for file in entries(&dir, Path::is_file)? {
            let rel = name.join(file.file_name().unwrap_or_default());
            add(rel.clone(), copy_private(&file, &dest.join(&rel))?);
        }
    }
    if logs {
        let audit =
            |p: &Path| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("auth.log"));
        for file in entries(data, audit)? {
            let rel = PathBuf::from(file.file_name().unwrap_or_default());
            add(rel.clone(), copy_private(&file, &dest.join(&rel))?);
        }
    }
    Ok(report)
}
