//! Second-factor data: enrolled TOTP factors with their last used step, recovery codes
//! (hashed, single use) and failure counters. Several servers may share one database
//! file: every check-and-set is one atomic statement or an immediate transaction.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::{PushContext, PushDecision, StorageError};

/// An enrolled TOTP factor.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpFactor {
    pub secret: Vec<u8>,
    /// `SHA1` or `SHA256`.
    pub algorithm: String,
    pub digits: u32,
    pub step: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// The last TOTP step accepted (replay protection).
    pub last_step: Option<u64>,
}

impl std::fmt::Debug for TotpFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpFactor")
            .field("secret", &"<redacted>")
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// An Access-Challenge the server issued, recorded so that its answer is tied to the
/// account, client and policy it was issued for, and accepted once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub nonce: [u8; 16],
    /// The account's stable key.
    pub account: String,
    /// The account's own login name.
    pub name: String,
    /// The User-Name of the request that was challenged, as sent.
    pub user_raw: String,
    pub client: String,
    /// The granting network policy, by its full name.
    pub policy: String,
    /// A remote provider's transaction (privacyIDEA), empty otherwise.
    pub transaction: String,
    /// The push a number-matching challenge waits on.
    pub push_id: Option<String>,
    pub expires_at: i64,
}

/// Second-factor data in `mfa.db`.
pub struct SqliteMfa {
    conn: Connection,
}

impl std::fmt::Debug for SqliteMfa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteMfa")
    }
}

impl SqliteMfa {
    /// Opens (creating if needed) the database file, readable by its owner only.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let conn = crate::users::open_private(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS factors (
                user TEXT PRIMARY KEY,
                secret BLOB NOT NULL,
                algorithm TEXT NOT NULL,
                digits INTEGER NOT NULL,
                step INTEGER NOT NULL,
                created_at INTEGER NOT NULL,
                last_step INTEGER
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS recovery_codes (
                user TEXT NOT NULL,
                hash BLOB NOT NULL,
                used_at INTEGER,
                PRIMARY KEY (user, hash)
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS failures (
                user TEXT PRIMARY KEY,
                count INTEGER NOT NULL,
                locked_until INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS pushes (
                id TEXT PRIMARY KEY,
                user TEXT NOT NULL,
                origin TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                status TEXT NOT NULL,
                decided_at INTEGER,
                number INTEGER
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS pushes_by_user ON pushes (user, origin, created_at);
            CREATE TABLE IF NOT EXISTS challenges (
                nonce BLOB PRIMARY KEY,
                account TEXT NOT NULL,
                name TEXT NOT NULL,
                user_raw TEXT NOT NULL,
                client TEXT NOT NULL,
                policy TEXT NOT NULL,
                transaction_id TEXT NOT NULL,
                push_id TEXT,
                expires_at INTEGER NOT NULL,
                used_at INTEGER
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS push_targets (
                user TEXT PRIMARY KEY,
                target TEXT NOT NULL,
                created_at INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS push_details (
                id TEXT PRIMARY KEY,
                context TEXT NOT NULL,
                decision TEXT
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS pending_factors (
                token_hash BLOB PRIMARY KEY,
                user TEXT NOT NULL,
                secret BLOB NOT NULL,
                expires_at INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS enrol_links (
                token_hash BLOB PRIMARY KEY,
                user TEXT NOT NULL,
                expires_at INTEGER NOT NULL,
                used_at INTEGER
            ) WITHOUT ROWID;",
        )?;
        Ok(Self { conn })
    }

    /// The user's factor, if enrolled.
    pub fn factor(&self, user: &str) -> Result<Option<TotpFactor>, StorageError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT secret, algorithm, digits, step, created_at, last_step FROM factors WHERE user = ?1",
            )?
            .query_row([user], |r| {
                Ok(TotpFactor {
                    secret: r.get(0)?,
                    algorithm: r.get(1)?,
                    digits: r.get(2)?,
                    step: r.get::<_, i64>(3)? as u64,
                    created_at: r.get(4)?,
                    last_step: r.get::<_, Option<i64>>(5)?.map(|s| s as u64),
                })
            })
            .optional()?)
    }

    /// Enrols (or re-enrols) a user: replaces the factor and the recovery codes, clears
    /// failures.
    pub fn enroll(
        &mut self,
        user: &str,
        factor: &TotpFactor,
        recovery_hashes: &[[u8; 32]],
    ) -> Result<(), StorageError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR REPLACE INTO factors (user, secret, algorithm, digits, step, created_at, last_step)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
            params![user, factor.secret, factor.algorithm, factor.digits, factor.step as i64, factor.created_at],
        )?;
        tx.execute("DELETE FROM recovery_codes WHERE user = ?1", [user])?;
        for h in recovery_hashes {
            tx.execute("INSERT OR IGNORE INTO recovery_codes (user, hash) VALUES (?1, ?2)", params![user, &h[..]])?;
        }
        tx.execute("DELETE FROM failures WHERE user = ?1", [user])?;
        tx.commit()?;
        Ok(())
    }

    /// Enrols a user who has no factor yet (self-service enrolment must not replace an
    /// existing factor without proof of it); false when one exists.
    pub fn enroll_new(
        &mut self,
        user: &str,
        factor: &TotpFactor,
        recovery_hashes: &[[u8; 32]],
    ) -> Result<bool, StorageError> {
        if self.factor(user)?.is_some() {
            return Ok(false);
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO factors (user, secret, algorithm, digits, step, created_at, last_step)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
            params![user, factor.secret, factor.algorithm, factor.digits, factor.step as i64, factor.created_at],
        )?;
        if n == 0 {
            return Ok(false);
        }
        tx.execute("DELETE FROM recovery_codes WHERE user = ?1", [user])?;
        for h in recovery_hashes {
            tx.execute("INSERT OR IGNORE INTO recovery_codes (user, hash) VALUES (?1, ?2)", params![user, &h[..]])?;
        }
        tx.execute("DELETE FROM failures WHERE user = ?1", [user])?;
        tx.commit()?;
        Ok(true)
    }

    /// Records where a user's push approvals go (`webhook`: the configured shared
    /// webhook; `ntfy <url>` or `webhook <url>`: the user's own). Without a target a
    /// user gets no push.
    pub fn set_push_target(&self, user: &str, target: &str, now: i64) -> Result<(), StorageError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO push_targets (user, target, created_at) VALUES (?1, ?2, ?3)",
            params![user, target, now],
        )?;
        Ok(())
    }

    /// Where a user's push approvals go, if the user enrolled for push.
    pub fn push_target(&self, user: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .conn
            .prepare_cached("SELECT target FROM push_targets WHERE user = ?1")?
            .query_row([user], |r| r.get(0))
            .optional()?)
    }

    /// Records an issued challenge (by its nonce) so that its answer can be tied to it
    /// and accepted once; drops challenges that expired an hour ago.
    pub fn add_challenge(&self, c: &Challenge, now: i64) -> Result<(), StorageError> {
        self.conn.prepare_cached("DELETE FROM challenges WHERE expires_at < ?1")?.execute([now - 3600])?;
        self.conn
            .prepare_cached(
                "INSERT INTO challenges
                 (nonce, account, name, user_raw, client, policy, transaction_id, push_id, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                &c.nonce[..],
                c.account,
                c.name,
                c.user_raw,
                c.client,
                c.policy,
                c.transaction,
                c.push_id,
                c.expires_at
            ])?;
        Ok(())
    }

    /// Takes a challenge for its one answer: `None` when it is unknown, expired or was
    /// answered already (on this server or another sharing the file).
    pub fn take_challenge(&self, nonce: &[u8; 16], now: i64) -> Result<Option<Challenge>, StorageError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE challenges SET used_at = ?2 WHERE nonce = ?1 AND used_at IS NULL AND expires_at >= ?2",
            )?
            .execute(params![&nonce[..], now])?;
        if n != 1 {
            return Ok(None);
        }
        Ok(self
            .conn
            .prepare_cached(
                "SELECT account, name, user_raw, client, policy, transaction_id, push_id, expires_at
                 FROM challenges WHERE nonce = ?1",
            )?
            .query_row([&nonce[..]], |r| {
                Ok(Challenge {
                    nonce: *nonce,
                    account: r.get(0)?,
                    name: r.get(1)?,
                    user_raw: r.get(2)?,
                    client: r.get(3)?,
                    policy: r.get(4)?,
                    transaction: r.get(5)?,
                    push_id: r.get(6)?,
                    expires_at: r.get(7)?,
                })
            })
            .optional()?)
    }

    /// Removes the factor, recovery codes, failures and push target; returns whether a
    /// factor or push target existed.
    pub fn reset(&mut self, user: &str) -> Result<bool, StorageError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute("DELETE FROM factors WHERE user = ?1", [user])?
            + tx.execute("DELETE FROM push_targets WHERE user = ?1", [user])?;
        tx.execute("DELETE FROM recovery_codes WHERE user = ?1", [user])?;
        tx.execute("DELETE FROM failures WHERE user = ?1", [user])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Records a TOTP step as used; false when it (or a later one) already was, so a
    /// code is accepted once across every server sharing the database.
    pub fn use_step(&self, user: &str, step: u64) -> Result<bool, StorageError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE factors SET last_step = ?2 WHERE user = ?1 AND (last_step IS NULL OR last_step < ?2)",
            )?
            .execute(params![user, step as i64])?;
        Ok(n == 1)
    }

    /// Uses a recovery code (by hash); false when unknown or already used.
    pub fn use_recovery(&self, user: &str, hash: &[u8; 32], now: i64) -> Result<bool, StorageError> {
        let n = self
            .conn
            .prepare_cached("UPDATE recovery_codes SET used_at = ?3 WHERE user = ?1 AND hash = ?2 AND used_at IS NULL")?
            .execute(params![user, &hash[..], now])?;
        Ok(n == 1)
    }

    /// Recovery codes still unused.
    pub fn recovery_left(&self, user: &str) -> Result<u32, StorageError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM recovery_codes WHERE user = ?1 AND used_at IS NULL",
            [user],
            |r| r.get(0),
        )?)
    }

    /// The failure count and lock end (Unix seconds, 0 when unlocked).
    pub fn failures(&self, user: &str) -> Result<(u32, u64), StorageError> {
        Ok(self
            .conn
            .prepare_cached("SELECT count, locked_until FROM failures WHERE user = ?1")?
            .query_row([user], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .optional()?
            .unwrap_or((0, 0)))
    }

    /// Updates the failure counter atomically with `next(count, locked_until)`.
    pub fn record_failure(
        &mut self,
        user: &str,
        next: impl FnOnce(u32, u64) -> (u32, u64),
    ) -> Result<(u32, u64), StorageError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: (u32, u64) = tx
            .query_row("SELECT count, locked_until FROM failures WHERE user = ?1", [user], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
            })
            .optional()?
            .unwrap_or((0, 0));
        let (count, locked_until) = next(current.0, current.1);
        tx.execute(
            "INSERT OR REPLACE INTO failures (user, count, locked_until) VALUES (?1, ?2, ?3)",
            params![user, count, locked_until as i64],
        )?;
        tx.commit()?;
        Ok((count, locked_until))
    }

    /// Clears the failure counter (after a success).
    pub fn clear_failures(&self, user: &str) -> Result<(), StorageError> {
        self.conn.prepare_cached("DELETE FROM failures WHERE user = ?1")?.execute([user])?;
        Ok(())
    }

    /// Starts a push for `user` from `origin` (the NAS and calling station), unless one
    /// is already pending for them: returns the push to wait on and whether it is new
    /// (only a new one sends a notification). Atomic across servers sharing the file.
    pub fn start_push(
        &mut self,
        id: &str,
        user: &str,
        origin: &str,
        now: i64,
        expires_at: i64,
        number: Option<u32>,
    ) -> Result<(String, bool), StorageError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT id FROM pushes WHERE user = ?1 AND origin = ?2 AND status = 'pending' AND expires_at > ?3
                 ORDER BY created_at DESC LIMIT 1",
                params![user, origin, now],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            tx.commit()?;
            return Ok((id, false));
        }
        tx.execute(
            "INSERT INTO pushes (id, user, origin, created_at, expires_at, status, number)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
            params![id, user, origin, now, expires_at, number],
        )?;
        // Old pushes are kept a day for the fatigue count, then dropped.
        tx.execute(
            "DELETE FROM push_details WHERE id IN (SELECT id FROM pushes WHERE created_at < ?1)",
            [now - 86_400],
        )?;
        tx.execute("DELETE FROM pushes WHERE created_at < ?1", [now - 86_400])?;
        tx.commit()?;
        Ok((id.to_string(), true))
    }

    /// A push's user, status (`pending`, `approved`, `denied`, `timeout`, `failed`) and
    /// expiry.
    pub fn push(&self, id: &str) -> Result<Option<(String, String, i64)>, StorageError> {
        Ok(self
            .conn
            .prepare_cached("SELECT user, status, expires_at FROM pushes WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?)
    }

    /// The number a push asks the user to type (number matching), if any.
    pub fn push_number(&self, id: &str) -> Result<Option<u32>, StorageError> {
        Ok(self
            .conn
            .prepare_cached("SELECT number FROM pushes WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?
            .flatten())
    }

    /// Records what a push was sent for (shown on its approval page).
    pub fn set_push_context(&self, id: &str, context: &PushContext) -> Result<(), StorageError> {
        let text = serde_json::to_string(context).unwrap_or_default();
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO push_details (id, context) VALUES (?1, ?2)")?
            .execute(params![id, text])?;
        Ok(())
    }

    /// What a push was sent for and how it was answered, when recorded.
    pub fn push_details(&self, id: &str) -> Result<(Option<PushContext>, Option<PushDecision>), StorageError> {
        let row: Option<(String, Option<String>)> = self
            .conn
            .prepare_cached("SELECT context, decision FROM push_details WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(row.map_or((None, None), |(c, d)| {
            (serde_json::from_str(&c).ok(), d.and_then(|d| serde_json::from_str(&d).ok()))
        }))
    }

    /// Settles a pending push with the answer that settled it, in one transaction;
    /// false when it was already settled or has expired (so a replayed answer changes
    /// nothing).
    pub fn decide_push(
        &mut self,
        id: &str,
        status: &str,
        now: i64,
        decision: &PushDecision,
    ) -> Result<bool, StorageError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE pushes SET status = ?2, decided_at = ?3 WHERE id = ?1 AND status = 'pending' AND expires_at > ?3",
            params![id, status, now],
        )?;
        if n != 1 {
            return Ok(false);
        }
        let text = serde_json::to_string(decision).unwrap_or_default();
        tx.execute(
            "INSERT INTO push_details (id, context, decision) VALUES (?1, '{}', ?2)
             ON CONFLICT (id) DO UPDATE SET decision = excluded.decision",
            params![id, text],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Pushes sent to a user since `since`, whatever their outcome.
    pub fn pushes_since(&self, user: &str, since: i64) -> Result<u32, StorageError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM pushes WHERE user = ?1 AND created_at >= ?2 AND status != 'failed'",
            params![user, since],
            |r| r.get(0),
        )?)
    }

    /// Settles a pending push; false when it was already settled or has expired.
    pub fn settle_push(&self, id: &str, status: &str, now: i64) -> Result<bool, StorageError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE pushes SET status = ?2, decided_at = ?3
                 WHERE id = ?1 AND status = 'pending' AND (expires_at > ?3 OR ?2 IN ('timeout', 'failed'))",
            )?
            .execute(params![id, status, now])?;
        Ok(n == 1)
    }

    /// Pushes of a user since `since` that were denied, timed out or are pending
    /// (push-fatigue protection).
    pub fn unapproved_pushes(&self, user: &str, since: i64) -> Result<u32, StorageError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM pushes WHERE user = ?1 AND created_at >= ?2 AND status IN ('denied', 'reported', 'timeout', 'pending')",
            params![user, since],
            |r| r.get(0),
        )?)
    }

    /// Stores a one-time enrolment link (by the hash of its token).
    pub fn add_enrol_link(&self, token_hash: &[u8; 32], user: &str, expires_at: i64) -> Result<(), StorageError> {
        self.conn.execute(
            "INSERT INTO enrol_links (token_hash, user, expires_at) VALUES (?1, ?2, ?3)",
            params![&token_hash[..], user, expires_at],
        )?;
        Ok(())
    }

    /// The user of a valid, unused enrolment link.
    pub fn enrol_link(&self, token_hash: &[u8; 32], now: i64) -> Result<Option<String>, StorageError> {
        Ok(self
            .conn
            .query_row(
                "SELECT user FROM enrol_links WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
                params![&token_hash[..], now],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Uses an enrolment link; false when it was used already or expired.
    pub fn use_enrol_link(&self, token_hash: &[u8; 32], now: i64) -> Result<bool, StorageError> {
        let n = self.conn.execute(
            "UPDATE enrol_links SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
            params![&token_hash[..], now],
        )?;
        Ok(n == 1)
    }

    /// Keeps the TOTP secret an enrolment page showed until the user confirms a first
    /// code from it (by the hash of the link's token); drops expired ones.
    pub fn add_pending_factor(
        &self,
        token_hash: &[u8; 32],
        user: &str,
        secret: &[u8],
        expires_at: i64,
        now: i64,
    ) -> Result<(), StorageError> {
        self.conn.execute("DELETE FROM pending_factors WHERE expires_at <= ?1", [now])?;
        self.conn.execute(
            "INSERT OR REPLACE INTO pending_factors (token_hash, user, secret, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![&token_hash[..], user, secret, expires_at],
        )?;
        Ok(())
    }

    /// Takes one confirmation attempt of a pending factor: its user and secret, unless it
    /// is unknown, expired or had `max_attempts` already (then it is dropped).
    pub fn pending_factor_attempt(
        &self,
        token_hash: &[u8; 32],
        now: i64,
        max_attempts: u32,
    ) -> Result<Option<(String, Vec<u8>)>, StorageError> {
        let n = self.conn.execute(
            "UPDATE pending_factors SET attempts = attempts + 1
             WHERE token_hash = ?1 AND expires_at > ?2 AND attempts < ?3",
            params![&token_hash[..], now, max_attempts],
        )?;
        if n != 1 {
            self.drop_pending_factor(token_hash)?;
            return Ok(None);
        }
        Ok(self
            .conn
            .query_row("SELECT user, secret FROM pending_factors WHERE token_hash = ?1", [&token_hash[..]], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    /// Forgets a pending factor (confirmed, or out of attempts).
    pub fn drop_pending_factor(&self, token_hash: &[u8; 32]) -> Result<(), StorageError> {
        self.conn.execute("DELETE FROM pending_factors WHERE token_hash = ?1", [&token_hash[..]])?;
        Ok(())
    }

    /// Enrolled users with their enrolment time.
    pub fn enrolled(&self) -> Result<Vec<(String, i64)>, StorageError> {
        let mut stmt = self.conn.prepare("SELECT user, created_at FROM factors ORDER BY user")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factor() -> TotpFactor {
        TotpFactor {
            secret: b"12345678901234567890".to_vec(),
            algorithm: "SHA1".into(),
            digits: 6,
            step: 30,
            created_at: 1,
            last_step: None,
        }
    }

    #[test]
    fn steps_and_recovery_codes_are_single_use_across_connections() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("shared")).unwrap();
        let path = dir.path().join("shared/mfa.db");
        let mut a = SqliteMfa::open(&path).unwrap();
        let b = SqliteMfa::open(&path).unwrap();
        a.enroll("alice", &factor(), &[[1; 32], [2; 32]]).unwrap();
        assert_eq!(b.factor("alice").unwrap().unwrap().secret, factor().secret);
        assert!(a.use_step("alice", 100).unwrap());
        assert!(!b.use_step("alice", 100).unwrap(), "the other server sees the step as used");
        assert!(!b.use_step("alice", 99).unwrap());
        assert!(b.use_step("alice", 101).unwrap());
        assert!(b.use_recovery("alice", &[1; 32], 5).unwrap());
        assert!(!a.use_recovery("alice", &[1; 32], 6).unwrap());
        assert!(!a.use_recovery("alice", &[9; 32], 6).unwrap());
        assert_eq!(a.recovery_left("alice").unwrap(), 1);
        assert!(!format!("{:?}", factor()).contains("49"), "Debug hides the secret");
    }

    #[test]
    fn a_pending_push_is_shared_and_settles_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mfa.db");
        let mut a = SqliteMfa::open(&path).unwrap();
        let mut b = SqliteMfa::open(&path).unwrap();
        assert_eq!(a.start_push("p1", "bob", "nas", 100, 155, None).unwrap(), ("p1".into(), true));
        assert_eq!(b.start_push("p2", "bob", "nas", 101, 156, None).unwrap(), ("p1".into(), false), "joins");
        assert_eq!(b.start_push("p3", "bob", "other-nas", 101, 156, Some(42)).unwrap(), ("p3".into(), true));
        assert_eq!(a.push_number("p3").unwrap(), Some(42));
        assert!(b.settle_push("p1", "approved", 110).unwrap());
        assert!(!a.settle_push("p1", "denied", 111).unwrap(), "settled once");
        assert_eq!(a.push("p1").unwrap().unwrap().1, "approved");
        assert!(!a.settle_push("p3", "approved", 200).unwrap(), "expired pushes cannot be approved");
        assert!(a.settle_push("p3", "timeout", 200).unwrap());
        assert_eq!(a.unapproved_pushes("bob", 0).unwrap(), 1);
        assert_eq!(a.pushes_since("bob", 0).unwrap(), 2);
    }

    #[test]
    fn a_push_is_decided_once_with_its_answer() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = SqliteMfa::open(&dir.path().join("mfa.db")).unwrap();
        a.start_push("p1", "bob", "nas", 100, 155, None).unwrap();
        let context = PushContext { time: 100, nas: "vpn".into(), method: "mschapv2".into(), ..Default::default() };
        a.set_push_context("p1", &context).unwrap();
        let answer = PushDecision { factor: "totp".into(), address: "192.0.2.1".into(), user_agent: "phone".into() };
        assert!(a.decide_push("p1", "approved", 110, &answer).unwrap());
        let other = PushDecision { factor: "none".into(), ..answer.clone() };
        assert!(!a.decide_push("p1", "reported", 111, &other).unwrap(), "a replayed answer changes nothing");
        assert_eq!(a.push_details("p1").unwrap(), (Some(context), Some(answer)));
        assert_eq!(a.push("p1").unwrap().unwrap().1, "approved");
        a.start_push("p2", "bob", "nas2", 100, 155, None).unwrap();
        assert!(!a.decide_push("p2", "approved", 155, &other).unwrap(), "expired");
    }

    #[test]
    fn challenges_are_answered_once_and_links_do_not_replace_factors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mfa.db");
        let mut a = SqliteMfa::open(&path).unwrap();
        let b = SqliteMfa::open(&path).unwrap();
        let c = Challenge {
            nonce: [7; 16],
            account: "alice".into(),
            name: "alice".into(),
            user_raw: "CORP\\alice".into(),
            client: "vpn".into(),
            policy: "staff".into(),
            transaction: String::new(),
            push_id: None,
            expires_at: 160,
        };
        a.add_challenge(&c, 100).unwrap();
        assert_eq!(b.take_challenge(&[7; 16], 120).unwrap(), Some(c.clone()));
        assert_eq!(a.take_challenge(&[7; 16], 121).unwrap(), None, "a State is answered once");
        a.add_challenge(&Challenge { nonce: [8; 16], ..c }, 100).unwrap();
        assert_eq!(a.take_challenge(&[8; 16], 161).unwrap(), None, "expired");
        assert!(a.enroll_new("alice", &factor(), &[]).unwrap());
        assert!(!a.enroll_new("alice", &factor(), &[]).unwrap(), "an existing factor is not replaced");
        assert_eq!(a.push_target("alice").unwrap(), None);
        a.set_push_target("alice", "webhook", 1).unwrap();
        a.add_pending_factor(&[5; 32], "carl", b"secret", 200, 100).unwrap();
        assert_eq!(b.pending_factor_attempt(&[5; 32], 150, 2).unwrap(), Some(("carl".into(), b"secret".to_vec())));
        assert!(b.pending_factor_attempt(&[5; 32], 150, 2).unwrap().is_some());
        assert_eq!(b.pending_factor_attempt(&[5; 32], 150, 2).unwrap(), None, "out of attempts");
        assert_eq!(a.pending_factor_attempt(&[5; 32], 150, 9).unwrap(), None, "dropped");
        assert_eq!(b.push_target("alice").unwrap().as_deref(), Some("webhook"));
        assert!(a.reset("alice").unwrap());
        assert_eq!(b.push_target("alice").unwrap(), None);
    }

    #[test]
    fn failures_count_lock_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = SqliteMfa::open(&dir.path().join("mfa.db")).unwrap();
        m.enroll("bob", &factor(), &[]).unwrap();
        let bump = |(c, _): (u32, u64)| (c + 1, if c + 1 >= 2 { 500 } else { 0 });
        assert_eq!(m.record_failure("bob", |c, l| bump((c, l))).unwrap(), (1, 0));
        assert_eq!(m.record_failure("bob", |c, l| bump((c, l))).unwrap(), (2, 500));
        assert_eq!(m.failures("bob").unwrap(), (2, 500));
        m.clear_failures("bob").unwrap();
        assert_eq!(m.failures("bob").unwrap(), (0, 0));
        assert!(m.reset("bob").unwrap());
        assert!(m.factor("bob").unwrap().is_none());
        assert!(!m.reset("bob").unwrap());
    }
}
