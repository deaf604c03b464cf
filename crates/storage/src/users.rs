//! Local users: credentials, groups, disabled flag and expiry, in the data directory.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::StorageError;

/// A local user. Names are matched case-insensitively (stored in lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// Argon2id PHC string, for PAP.
    pub password_hash: Option<String>,
    /// MD4 of the UTF-16LE password, for MS-CHAPv2.
    pub nt_hash: Option<[u8; 16]>,
    /// The password itself, only for users who opted into CHAP.
    pub reversible: Option<String>,
    pub groups: Vec<String>,
    pub disabled: bool,
    /// Unix seconds after which the account is expired.
    pub expires_at: Option<i64>,
    /// Set on every credential or status change (invalidates cached verifications) from
    /// a counter that is never reused, even after the user is deleted and added again.
    pub generation: i64,
}

/// What a local user store provides.
pub trait UserStore: Send {
    /// The user with this name (case-insensitive).
    fn user(&self, name: &str) -> Result<Option<User>, StorageError>;
    /// Inserts or replaces a user; the user gets a generation no user has had before.
    fn put_user(&mut self, user: &User) -> Result<(), StorageError>;
    /// Deletes a user; returns whether it existed.
    fn delete_user(&mut self, name: &str) -> Result<bool, StorageError>;
    /// Every user, by name.
    fn users(&self) -> Result<Vec<User>, StorageError>;
}

/// Users in `users.db` inside the data directory.
pub struct SqliteUsers {
    conn: Connection,
    /// Users read recently, valid while `PRAGMA data_version` is unchanged (SQLite
    /// changes it for every commit by another connection, such as the CLI; file sizes
    /// and times are not reliable: a reused WAL keeps its size within one clock tick).
    cache: std::cell::RefCell<(i64, std::collections::HashMap<String, Option<User>>)>,
}

/// Most users kept in the read cache.
const CACHED_USERS: usize = 100_000;

impl std::fmt::Debug for SqliteUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteUsers")
    }
}

impl SqliteUsers {
    /// Opens (creating it and the data directory if needed) the user database.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StorageError::DataDir { path: data_dir.display().to_string(), source })?;
        let path = data_dir.join("users.db");
        let conn = open_private(&path)?;
        // `meta.generation` is the last generation handed out. A database from before the
        // counter starts it above every generation still stored.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS users (
                name TEXT PRIMARY KEY,
                password_hash TEXT,
                nt_hash BLOB,
                reversible TEXT,
                groups TEXT NOT NULL,
                disabled INTEGER NOT NULL,
                expires_at INTEGER,
                generation INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
            INSERT OR IGNORE INTO meta (key, value)
                SELECT 'generation', COALESCE(MAX(generation), 0) FROM users;",
        )?;
        Ok(Self { conn, cache: std::cell::RefCell::new((-1, std::collections::HashMap::new())) })
    }

    fn fetch(&self, name: &str) -> Result<Option<User>, StorageError> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE name = ?1"))?
            .query_row([name], row_to_user)
            .optional()?)
    }
}

/// Opens (creating it if needed) a database of secrets: readable by its owner only,
/// WAL, every commit synced, waiting up to 10 s for other processes. A missing directory
/// is an error, not created: a database on shared storage that is not mounted must not
/// come up empty, as if nobody were enrolled.
pub(crate) fn open_private(path: &Path) -> Result<Connection, StorageError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        return Err(StorageError::DataDir {
            path: dir.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "the directory does not exist"),
        });
    }
    let conn = Connection::open(path)?;
    restrict_permissions(path);
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_permissions(_: &Path) {}

fn row_to_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let nt: Option<Vec<u8>> = r.get(2)?;
    let groups: String = r.get(4)?;
    Ok(User {
        name: r.get(0)?,
        password_hash: r.get(1)?,
        nt_hash: nt.and_then(|v| v.try_into().ok()),
        reversible: r.get(3)?,
        groups: groups.split('\n').filter(|g| !g.is_empty()).map(str::to_string).collect(),
        disabled: r.get(5)?,
        expires_at: r.get(6)?,
        generation: r.get(7)?,
    })
}

const COLUMNS: &str = "name, password_hash, nt_hash, reversible, groups, disabled, expires_at, generation";

impl SqliteUsers {
    /// SQLite's `data_version`: changes whenever another connection commits.
    pub fn data_version(&self) -> Result<i64, StorageError> {
        Ok(self.conn.prepare_cached("PRAGMA data_version")?.query_row([], |r| r.get(0))?)
    }
}

impl UserStore for SqliteUsers {
    fn user(&self, name: &str) -> Result<Option<User>, StorageError> {
        let name = name.to_lowercase();
        let version = self.data_version()?;
        let mut cache = self.cache.borrow_mut();
        if cache.0 != version || cache.1.len() >= CACHED_USERS {
            *cache = (version, std::collections::HashMap::new());
        }
        if let Some(u) = cache.1.get(&name) {
            return Ok(u.clone());
        }
        let u = self.fetch(&name)?;
        cache.1.insert(name, u.clone());
        Ok(u)
    }

    fn put_user(&mut self, u: &User) -> Result<(), StorageError> {
        self.cache.borrow_mut().1.clear();
        // Taking the next generation and writing the user is one transaction, so two
        // processes writing at once never hand out the same generation.
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let generation: i64 =
            tx.query_row("UPDATE meta SET value = value + 1 WHERE key = 'generation' RETURNING value", [], |r| {
                r.get(0)
            })?;
        tx.execute(
            &format!(
                "INSERT INTO users ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash, nt_hash = excluded.nt_hash,
                 reversible = excluded.reversible, groups = excluded.groups, disabled = excluded.disabled,
                 expires_at = excluded.expires_at, generation = excluded.generation"
            ),
            params![
                u.name.to_lowercase(),
                u.password_hash,
                u.nt_hash.map(|h| h.to_vec()),
                u.reversible,
                u.groups.join("\n"),
                u.disabled,
                u.expires_at,
                generation,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn delete_user(&mut self, name: &str) -> Result<bool, StorageError> {
        self.cache.borrow_mut().1.clear();
        Ok(self.conn.execute("DELETE FROM users WHERE name = ?1", [name.to_lowercase()])? > 0)
    }

    fn users(&self) -> Result<Vec<User>, StorageError> {
        let mut stmt = self.conn.prepare(&format!("SELECT {COLUMNS} FROM users ORDER BY name"))?;
        let rows = stmt.query_map([], row_to_user)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_update_delete() {
        let d = tempfile::tempdir().unwrap();
        let mut s = SqliteUsers::open(d.path()).unwrap();
        let mut u = User {
            name: "Bob".into(),
            password_hash: Some("$argon2id$x".into()),
            nt_hash: Some([1; 16]),
            reversible: None,
            groups: vec!["vpn".into(), "staff".into()],
            disabled: false,
            expires_at: None,
            generation: 0,
        };
        s.put_user(&u).unwrap();
        let got = s.user("BOB").unwrap().unwrap();
        assert_eq!(got.name, "bob");
        assert_eq!(got.groups, vec!["vpn", "staff"]);
        assert_eq!(got.nt_hash, Some([1; 16]));
        assert_eq!(got.generation, 1);
        u.disabled = true;
        s.put_user(&u).unwrap();
        let got = s.user("bob").unwrap().unwrap();
        assert!(got.disabled);
        assert_eq!(got.generation, 2);
        assert_eq!(s.users().unwrap().len(), 1);
        assert!(s.delete_user("bob").unwrap());
        assert!(s.user("bob").unwrap().is_none());
    }

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            password_hash: Some("$argon2id$x".into()),
            nt_hash: None,
            reversible: None,
            groups: Vec::new(),
            disabled: false,
            expires_at: None,
            generation: 0,
        }
    }

    /// A cached PAP verification is keyed by user, password and generation: a user
    /// deleted and added again with the same password must not get an old generation.
    #[test]
    fn generations_are_never_reused_after_delete_and_re_add() {
        let d = tempfile::tempdir().unwrap();
        let mut s = SqliteUsers::open(d.path()).unwrap();
        s.put_user(&user("bob")).unwrap();
        s.put_user(&user("bob")).unwrap();
        let before = s.user("bob").unwrap().unwrap().generation;
        assert!(s.delete_user("bob").unwrap());
        s.put_user(&user("bob")).unwrap();
        let after = s.user("bob").unwrap().unwrap().generation;
        assert!(after > before, "re-added user got generation {after}, had {before}");
        s.put_user(&user("carol")).unwrap();
        assert!(s.user("carol").unwrap().unwrap().generation > after, "one counter for every user");
        drop(s);
        // The counter survives reopening, and another connection continues it.
        let mut a = SqliteUsers::open(d.path()).unwrap();
        let mut b = SqliteUsers::open(d.path()).unwrap();
        let highest = a.users().unwrap().iter().map(|u| u.generation).max().unwrap();
        a.delete_user("carol").unwrap();
        b.put_user(&user("carol")).unwrap();
        a.put_user(&user("dave")).unwrap();
        let carol = a.user("carol").unwrap().unwrap().generation;
        let dave = b.user("dave").unwrap().unwrap().generation;
        assert!(carol > highest && dave > highest && carol != dave, "{highest} {carol} {dave}");
    }

    /// A database from before the counter starts it above every stored generation.
    #[test]
    fn an_old_database_continues_above_its_generations() {
        let d = tempfile::tempdir().unwrap();
        let conn = Connection::open(d.path().join("users.db")).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE users (name TEXT PRIMARY KEY, password_hash TEXT, nt_hash BLOB, reversible TEXT,
             groups TEXT NOT NULL, disabled INTEGER NOT NULL, expires_at INTEGER, generation INTEGER NOT NULL)
             WITHOUT ROWID;
             INSERT INTO users ({COLUMNS}) VALUES ('old', NULL, NULL, NULL, '', 0, NULL, 7);"
        ))
        .unwrap();
        drop(conn);
        let mut s = SqliteUsers::open(d.path()).unwrap();
        s.put_user(&user("new")).unwrap();
        assert_eq!(s.user("new").unwrap().unwrap().generation, 8);
    }

    /// Shared storage that is not mounted must not come up as an empty database.
    #[test]
    fn a_database_in_a_missing_directory_is_refused_not_created() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("not-mounted");
        let e = crate::SqliteMfa::open(&missing.join("mfa.db")).unwrap_err();
        assert!(e.to_string().contains("not-mounted"), "{e}");
        assert!(!missing.exists());
        // The user database lives in the data directory, which is made when missing.
        SqliteUsers::open(&d.path().join("data")).unwrap();
        assert!(d.path().join("data/users.db").is_file());
    }
}
