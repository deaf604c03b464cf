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

#[cfg(unix)]
fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

#[cfg(not(unix))]
fn private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir(path)
}

/// Copies one file byte for byte, readable by its owner only.
fn copy_private(from: &Path, to: &Path) -> Result<u64, String> {
    let n = std::fs::copy(from, to).map_err(|e| io(from, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).map_err(|e| io(to, e))?;
    }
    Ok(n)
}

/// Writes a backup of the data directory named by `config` (and the MFA database and
/// key wherever they are configured) into `dest`, which must not exist yet. Log files
/// (`auth.log`, NPS logs) are left to the system's log backup unless `logs` is set.
pub fn run(config: &Config, dest: &Path, logs: bool) -> Result<Report, String> {
    let data = &config.storage.data_dir;
    if !data.join("portcullis.db").exists() {
        return Err(format!("{} holds no database (has the server run?)", data.display()));
    }
    if dest.exists() {
        return Err(format!("{} already exists; name a new directory", dest.display()));
    }
    private_dir(dest).map_err(|e| io(dest, e))?;
    let mut report = Report::default();
    let mut add = |rel: PathBuf, bytes: u64| report.files.push((rel, bytes));

    // Databases first, so the journal copied afterwards reaches every position they record.
    let mut databases: Vec<(PathBuf, PathBuf)> = ["portcullis.db", "users.db"]
        .iter()
        .map(|n| (data.join(n), PathBuf::from(n)))
        .filter(|(p, _)| p.exists())
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

    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data)
        .map_err(|e| io(data, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && is_journal(p))
        .collect();
    dirs.sort();
    let mut dirs: Vec<(PathBuf, PathBuf)> =
        dirs.into_iter().map(|d| (PathBuf::from(d.file_name().unwrap_or_default()), d)).collect();
    if logs {
        let nps = config.nps_log.as_ref().and_then(|n| n.directory.clone()).unwrap_or_else(|| data.join("nps"));
        dirs.extend(std::iter::once((PathBuf::from("nps"), nps)).filter(|(_, p)| p.is_dir()));
    }
    for (name, dir) in dirs {
        private_dir(&dest.join(&name)).map_err(|e| io(&dest.join(&name), e))?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| io(&dir, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            let rel = name.join(file.file_name().unwrap_or_default());
            add(rel.clone(), copy_private(&file, &dest.join(&rel))?);
        }
    }
    if logs {
        let mut audit: Vec<PathBuf> = std::fs::read_dir(data)
            .map_err(|e| io(data, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("auth.log")))
            .collect();
        audit.sort();
        for file in audit {
            let rel = PathBuf::from(file.file_name().unwrap_or_default());
            add(rel.clone(), copy_private(&file, &dest.join(&rel))?);
        }
    }
    Ok(report)
}
