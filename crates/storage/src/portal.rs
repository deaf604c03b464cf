//! Portal accounts, their login sessions, API tokens, sign-in failures and the portal's
//! own audit trail, in `portal.db` beside `users.db` (mode 0600). Portal accounts are
//! not RADIUS users: nothing here is consulted by authentication.
//!
//! Secrets arrive already hashed (Argon2id PHC strings for passwords, SHA-256 digests
//! of 256-bit random session ids and tokens): this module never sees a secret.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::StorageError;
use crate::users::open_private;

/// What a portal account may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read and export.
    Viewer,
    /// And change alerts (status, classification, comments).
    Analyst,
    /// And settings, portal accounts and API tokens.
    Admin,
}

impl Role {
    pub const ALL: [Self; 3] = [Self::Viewer, Self::Analyst, Self::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Analyst => "analyst",
            Self::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (viewer, analyst, admin)"))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A portal account as listed (never with its hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_ms: i64,
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSession {
    pub account: String,
    pub role: Role,
    pub created_ms: i64,
    pub last_ms: i64,
}

/// An API token as listed (never with its hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Token {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
}

/// One line of the portal's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub time_ms: i64,
    /// The account or token name, or the name tried at a failed sign-in.
    pub actor: String,
    /// `sign-in`, `sign-in-failed`, `sign-in-limited`, `sign-out`, `alert-update`, `export`, ...
    pub action: String,
    pub detail: String,
    /// Source address of the request.
    pub source: String,
}

/// The portal database.
pub struct PortalDb {
    conn: Connection,
}

impl std::fmt::Debug for PortalDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalDb").finish_non_exhaustive()
    }
}

fn role_of(s: &str) -> rusqlite::Result<Role> {
    s.parse().map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}

/// A portal account's TOTP secret and the last step it accepted.
pub type PortalTotp = (Vec<u8>, Option<u64>);

impl PortalDb {
    /// Opens (creating) `portal.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StorageError::DataDir { path: data_dir.display().to_string(), source })?;
        let conn = open_private(&data_dir.join("portal.db"))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS accounts (
                name TEXT PRIMARY KEY,
                role TEXT NOT NULL,
                password_hash TEXT NOT NULL,
                disabled INTEGER NOT NULL DEFAULT 0,
                created_ms INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS login_sessions (
                id_hash BLOB PRIMARY KEY,
                account TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                last_ms INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS login_sessions_account ON login_sessions(account);
            CREATE TABLE IF NOT EXISTS tokens (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                role TEXT NOT NULL,
                hash BLOB NOT NULL UNIQUE,
                prefix TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                expires_ms INTEGER,
                last_used_ms INTEGER
            );
            CREATE TABLE IF NOT EXISTS sign_in_failures (
                key TEXT NOT NULL,
                time_ms INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS sign_in_failures_key ON sign_in_failures(key, time_ms);
            CREATE TABLE IF NOT EXISTS account_totp (
                account TEXT PRIMARY KEY,
                secret BLOB NOT NULL,
                last_step INTEGER
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS pending_sign_ins (
                id_hash BLOB PRIMARY KEY,
                account TEXT NOT NULL,
                created_ms INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS audit (
                id INTEGER PRIMARY KEY,
                time_ms INTEGER NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                detail TEXT NOT NULL,
                source TEXT NOT NULL
            );",
        )?;
        Ok(Self { conn })
    }

    /// Adds an account; an existing name is an error.
    pub fn add_account(&self, name: &str, role: Role, hash: &str, now_ms: i64) -> Result<(), StorageError> {
        let added = self.conn.execute(
            "INSERT OR IGNORE INTO accounts (name, role, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), hash, now_ms],
        )?;
        if added == 0 {
            return Err(StorageError::Invalid(format!("portal account {name:?} exists already")));
        }
        Ok(())
    }

    /// Sets a password and ends the account's login sessions; false: no such account.
    pub fn set_password(&self, name: &str, hash: &str) -> Result<bool, StorageError> {
        let n = self.conn.execute("UPDATE accounts SET password_hash = ?2 WHERE name = ?1", params![name, hash])?;
        self.end_sessions_of(name)?;
        Ok(n > 0)
    }

    /// Disables (ending its login sessions) or enables an account; false: no such account.
    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool, StorageError> {
        let n = self.conn.execute("UPDATE accounts SET disabled = ?2 WHERE name = ?1", params![name, disabled])?;
        self.end_sessions_of(name)?;
        Ok(n > 0)
    }

    /// Deletes an account, its login sessions and its second factor; false: no such
    /// account.
    pub fn delete_account(&self, name: &str) -> Result<bool, StorageError> {
        let n = self.conn.execute("DELETE FROM accounts WHERE name = ?1", [name])?;
        self.conn.execute("DELETE FROM account_totp WHERE account = ?1", [name])?;
        self.end_sessions_of(name)?;
        Ok(n > 0)
    }

    fn end_sessions_of(&self, name: &str) -> Result<(), StorageError> {
        self.conn.execute("DELETE FROM login_sessions WHERE account = ?1", [name])?;
        self.conn.execute("DELETE FROM pending_sign_ins WHERE account = ?1", [name])?;
        Ok(())
    }

    /// Enrols a TOTP secret for an account (replacing one it had) or removes it
    /// (`None`), ending the account's login sessions; false: no such account.
    pub fn set_totp(&self, name: &str, secret: Option<&[u8]>) -> Result<bool, StorageError> {
        let exists: bool =
            self.conn.query_row("SELECT EXISTS(SELECT 1 FROM accounts WHERE name = ?1)", [name], |r| r.get(0))?;
        if !exists {
            return Ok(false);
        }
        match secret {
            Some(secret) => self.conn.execute(
                "INSERT OR REPLACE INTO account_totp (account, secret, last_step) VALUES (?1, ?2, NULL)",
                params![name, secret],
            )?,
            None => self.conn.execute("DELETE FROM account_totp WHERE account = ?1", [name])?,
        };
        self.end_sessions_of(name)?;
        Ok(true)
    }

    /// An account's TOTP secret and the last step used, if it has one.
    pub fn totp(&self, name: &str) -> Result<Option<PortalTotp>, StorageError> {
        Ok(self
            .conn
            .query_row("SELECT secret, last_step FROM account_totp WHERE account = ?1", [name], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Option<i64>>(1)?.and_then(|s| u64::try_from(s).ok())))
            })
            .optional()?)
    }

    /// Marks `step` used, in one statement: false when it (or a later one) was used
    /// already, so two sign-ins cannot both spend the same code.
    pub fn use_totp_step(&self, name: &str, step: u64) -> Result<bool, StorageError> {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let n = self.conn.execute(
            "UPDATE account_totp SET last_step = ?2 WHERE account = ?1 AND (last_step IS NULL OR last_step < ?2)",
            params![name, step],
        )?;
        Ok(n == 1)
    }

    /// Remembers a sign-in whose password was right and whose code is still to come.
    pub fn create_pending(&self, id_hash: &[u8; 32], account: &str, now_ms: i64) -> Result<(), StorageError> {
        self.conn.execute(
            "INSERT INTO pending_sign_ins (id_hash, account, created_ms) VALUES (?1, ?2, ?3)",
            params![id_hash.as_slice(), account, now_ms],
        )?;
        Ok(())
    }

    /// The account of a pending sign-in younger than `max_age_ms` (older ones are
    /// deleted).
    pub fn pending(&self, id_hash: &[u8; 32], now_ms: i64, max_age_ms: i64) -> Result<Option<String>, StorageError> {
        self.conn.execute("DELETE FROM pending_sign_ins WHERE created_ms < ?1", [now_ms - max_age_ms])?;
        Ok(self
            .conn
            .query_row("SELECT account FROM pending_sign_ins WHERE id_hash = ?1", [id_hash.as_slice()], |r| r.get(0))
            .optional()?)
    }

    /// Ends a pending sign-in.
    pub fn end_pending(&self, id_hash: &[u8; 32]) -> Result<(), StorageError> {
        self.conn.execute("DELETE FROM pending_sign_ins WHERE id_hash = ?1", [id_hash.as_slice()])?;
        Ok(())
    }

    pub fn accounts(&self) -> Result<Vec<Account>, StorageError> {
        let mut stmt = self.conn.prepare("SELECT name, role, disabled, created_ms FROM accounts ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(Account {
                name: r.get(0)?,
                role: role_of(&r.get::<_, String>(1)?)?,
                disabled: r.get(2)?,
                created_ms: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// An account with its password hash, for signing in.
    pub fn credentials(&self, name: &str) -> Result<Option<(Account, String)>, StorageError> {
        Ok(self
            .conn
            .prepare_cached("SELECT name, role, disabled, created_ms, password_hash FROM accounts WHERE name = ?1")?
            .query_row([name], |r| {
                let account = Account {
                    name: r.get(0)?,
                    role: role_of(&r.get::<_, String>(1)?)?,
                    disabled: r.get(2)?,
                    created_ms: r.get(3)?,
                };
                Ok((account, r.get(4)?))
            })
            .optional()?)
    }

    pub fn create_session(&self, id_hash: &[u8; 32], account: &str, now_ms: i64) -> Result<(), StorageError> {
        self.conn.execute(
            "INSERT INTO login_sessions (id_hash, account, created_ms, last_ms) VALUES (?1, ?2, ?3, ?3)",
            params![&id_hash[..], account, now_ms],
        )?;
        Ok(())
    }

    /// The live session with this id hash, its last use moved to `now_ms`. A session
    /// idle longer than `idle_ms`, older than `absolute_ms`, or whose account is gone or
    /// disabled is ended and not returned. The role is the account's current one.
    pub fn session(
        &self,
        id_hash: &[u8; 32],
        now_ms: i64,
        idle_ms: i64,
        absolute_ms: i64,
    ) -> Result<Option<LoginSession>, StorageError> {
        let found = self
            .conn
            .prepare_cached(
                "SELECT s.account, a.role, s.created_ms, s.last_ms, a.disabled FROM login_sessions s
                 LEFT JOIN accounts a ON a.name = s.account WHERE s.id_hash = ?1",
            )?
            .query_row([&id_hash[..]], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<bool>>(4)?,
                ))
            })
            .optional()?;
        let Some((account, role, created_ms, last_ms, disabled)) = found else {
            return Ok(None);
        };
        let live = now_ms - last_ms <= idle_ms && now_ms - created_ms <= absolute_ms && disabled == Some(false);
        let role = role.as_deref().map(role_of).transpose()?;
        match role.filter(|_| live) {
            Some(role) => {
                self.conn
                    .prepare_cached("UPDATE login_sessions SET last_ms = ?2 WHERE id_hash = ?1")?
                    .execute(params![&id_hash[..], now_ms])?;
                Ok(Some(LoginSession { account, role, created_ms, last_ms: now_ms }))
            }
            None => {
                self.end_session(id_hash)?;
                Ok(None)
            }
        }
    }

    pub fn end_session(&self, id_hash: &[u8; 32]) -> Result<(), StorageError> {
        self.conn.prepare_cached("DELETE FROM login_sessions WHERE id_hash = ?1")?.execute([&id_hash[..]])?;
        Ok(())
    }

    /// Stores a token's hash; returns its id.
    pub fn add_token(
        &self,
        name: &str,
        role: Role,
        hash: &[u8; 32],
        prefix: &str,
        now_ms: i64,
        expires_ms: Option<i64>,
    ) -> Result<i64, StorageError> {
        self.conn.execute(
            "INSERT INTO tokens (name, role, hash, prefix, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![name, role.as_str(), &hash[..], prefix, now_ms, expires_ms],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The unexpired token with this hash, its last use moved to `now_ms`.
    pub fn use_token(&self, hash: &[u8; 32], now_ms: i64) -> Result<Option<Token>, StorageError> {
        let token = self
            .conn
            .prepare_cached(
                "UPDATE tokens SET last_used_ms = ?2 WHERE hash = ?1 AND (expires_ms IS NULL OR expires_ms > ?2)
                 RETURNING id, name, role, prefix, created_ms, expires_ms, last_used_ms",
            )?
            .query_row(params![&hash[..], now_ms], row_to_token)
            .optional()?;
        Ok(token)
    }

    pub fn tokens(&self) -> Result<Vec<Token>, StorageError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, role, prefix, created_ms, expires_ms, last_used_ms FROM tokens ORDER BY id")?;
        let rows = stmt.query_map([], row_to_token)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// false: no such token.
    pub fn delete_token(&self, id: i64) -> Result<bool, StorageError> {
        Ok(self.conn.execute("DELETE FROM tokens WHERE id = ?1", [id])? > 0)
    }

    /// Records a failed sign-in under `key` (an account name or a source address) and
    /// returns how many failures it has since `since_ms`; older ones are forgotten.
    pub fn record_failure(&self, key: &str, now_ms: i64, since_ms: i64) -> Result<u64, StorageError> {
        self.conn.prepare_cached("DELETE FROM sign_in_failures WHERE time_ms < ?1")?.execute([since_ms])?;
        self.conn
            .prepare_cached("INSERT INTO sign_in_failures (key, time_ms) VALUES (?1, ?2)")?
            .execute(params![key, now_ms])?;
        self.failures(key, since_ms)
    }

    /// Failed sign-ins under `key` since `since_ms`.
    pub fn failures(&self, key: &str, since_ms: i64) -> Result<u64, StorageError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM sign_in_failures WHERE key = ?1 AND time_ms >= ?2")?
            .query_row(params![key, since_ms], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub fn audit(
        &self,
        time_ms: i64,
        actor: &str,
        action: &str,
        detail: &str,
        source: &str,
    ) -> Result<(), StorageError> {
        self.conn
            .prepare_cached("INSERT INTO audit (time_ms, actor, action, detail, source) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![time_ms, actor, action, detail, source])?;
        Ok(())
    }

    /// Audit entries newest first, with ids below `before_id`.
    pub fn audit_entries(&self, before_id: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>, StorageError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, time_ms, actor, action, detail, source FROM audit WHERE ?1 IS NULL OR id < ?1
             ORDER BY id DESC LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![before_id, limit], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                time_ms: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                detail: r.get(4)?,
                source: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn row_to_token(r: &rusqlite::Row<'_>) -> rusqlite::Result<Token> {
    Ok(Token {
        id: r.get(0)?,
        name: r.get(1)?,
        role: role_of(&r.get::<_, String>(2)?)?,
        prefix: r.get(3)?,
        created_ms: r.get(4)?,
        expires_ms: r.get(5)?,
        last_used_ms: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_follow_the_account() {
        let dir = tempfile::tempdir().unwrap();
        let db = PortalDb::open(dir.path()).unwrap();
        db.add_account("ann", Role::Analyst, "$argon2id$x", 0).unwrap();
        assert!(db.add_account("ann", Role::Admin, "$argon2id$y", 0).is_err());
        let id = [7u8; 32];
        db.create_session(&id, "ann", 1_000).unwrap();
        assert_eq!(db.session(&id, 2_000, 1_000, 10_000).unwrap().map(|s| s.role), Some(Role::Analyst));
        // Idle too long: ended for good.
        assert!(db.session(&id, 3_500, 1_000, 10_000).unwrap().is_none());
        assert!(db.session(&id, 2_000, 1_000, 10_000).unwrap().is_none());
        // Absolute limit, however busy.
        db.create_session(&id, "ann", 1_000).unwrap();
        for t in (1_500..=11_000).step_by(500) {
            let live = db.session(&id, t, 1_000, 10_000).unwrap().is_some();
            assert_eq!(live, t - 1_000 <= 10_000, "at {t}");
        }
        // Disabling ends sessions.
        let other = [8u8; 32];
        db.create_session(&other, "ann", 1_000).unwrap();
        assert!(db.set_disabled("ann", true).unwrap());
        assert!(db.session(&other, 1_100, 1_000, 10_000).unwrap().is_none());
        assert!(db.credentials("ann").unwrap().unwrap().0.disabled);
    }

    #[test]
    fn a_totp_step_is_spent_once_and_pending_sign_ins_expire() {
        let dir = tempfile::tempdir().unwrap();
        let db = PortalDb::open(dir.path()).unwrap();
        assert!(!db.set_totp("nobody", Some(b"k")).unwrap());
        db.add_account("ann", Role::Admin, "$argon2id$x", 0).unwrap();
        assert!(db.totp("ann").unwrap().is_none());
        assert!(db.set_totp("ann", Some(b"secret")).unwrap());
        assert_eq!(db.totp("ann").unwrap(), Some((b"secret".to_vec(), None)));
        assert!(db.use_totp_step("ann", 10).unwrap());
        assert!(!db.use_totp_step("ann", 10).unwrap(), "a replay");
        assert!(!db.use_totp_step("ann", 9).unwrap());
        assert_eq!(db.totp("ann").unwrap().unwrap().1, Some(10));
        let id = [3u8; 32];
        db.create_pending(&id, "ann", 1_000).unwrap();
        assert_eq!(db.pending(&id, 1_500, 1_000).unwrap().as_deref(), Some("ann"));
        assert!(db.pending(&id, 2_500, 1_000).unwrap().is_none(), "expired");
        db.create_pending(&id, "ann", 3_000).unwrap();
        assert!(db.set_totp("ann", None).unwrap());
        assert!(db.pending(&id, 3_100, 1_000).unwrap().is_none(), "a change of factor ends it");
        assert!(db.totp("ann").unwrap().is_none());
    }

    #[test]
    fn tokens_expire_and_keep_their_last_use() {
        let dir = tempfile::tempdir().unwrap();
        let db = PortalDb::open(dir.path()).unwrap();
        let h = [1u8; 32];
        let id = db.add_token("ci", Role::Viewer, &h, "pcl_abcd", 0, Some(100)).unwrap();
        assert_eq!(db.use_token(&h, 50).unwrap().map(|t| t.last_used_ms), Some(Some(50)));
        assert!(db.use_token(&h, 100).unwrap().is_none());
        assert!(db.use_token(&[2u8; 32], 50).unwrap().is_none());
        assert_eq!(db.tokens().unwrap()[0].last_used_ms, Some(50));
        assert!(db.delete_token(id).unwrap());
    }

    #[test]
    fn failures_count_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let db = PortalDb::open(dir.path()).unwrap();
        assert_eq!(db.record_failure("a", 10, 0).unwrap(), 1);
        assert_eq!(db.record_failure("a", 20, 0).unwrap(), 2);
        assert_eq!(db.record_failure("a", 30, 15).unwrap(), 2);
        assert_eq!(db.failures("b", 0).unwrap(), 0);
    }
}
