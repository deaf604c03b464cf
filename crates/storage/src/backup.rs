//! Consistent copies of live SQLite databases, for backups taken while a server runs.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::StorageError;

/// Writes a consistent snapshot of the SQLite database at `source` to `dest` (which must
/// not exist) with `VACUUM INTO`: one read transaction, so writers in other processes
/// carry on and the copy holds every transaction committed before it began, and none
/// after. The copy is readable by its owner only.
pub fn snapshot_database(source: &Path, dest: &Path) -> Result<(), StorageError> {
    if dest.exists() {
        return Err(StorageError::Invalid(format!("{} already exists", dest.display())));
    }
    let conn = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let target =
        dest.to_str().ok_or_else(|| StorageError::Invalid(format!("{} is not a UTF-8 path", dest.display())))?;
    conn.execute("VACUUM INTO ?1", [target])?;
    crate::FileMode::PRIVATE
        .restrict(dest)
        .map_err(|source| StorageError::DataDir { path: dest.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_holds_committed_rows_while_a_writer_keeps_the_database_open() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.db");
        let writer = Connection::open(&live).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        writer.execute_batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1), (2);").unwrap();
        // An open write transaction in the other connection is not in the copy.
        writer.execute_batch("BEGIN; INSERT INTO t VALUES (3);").unwrap();
        let copy = dir.path().join("copy.db");
        snapshot_database(&live, &copy).unwrap();
        writer.execute_batch("COMMIT;").unwrap();
        let read = Connection::open(&copy).unwrap();
        let n: i64 = read.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 2);
        assert!(matches!(snapshot_database(&live, &copy), Err(StorageError::Invalid(_))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
