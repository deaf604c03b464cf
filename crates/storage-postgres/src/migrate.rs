//! Versioned migrations: each runs once per database, in order, and all pending ones
//! run in one transaction that first takes a transaction-level advisory lock, so nodes
//! starting at once wait for each other and the first one migrates. A transaction lock
//! (not a session lock) also holds through a pooler in transaction mode.

use postgres::Client;

/// One versioned schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this build knows, in order.
pub const MIGRATIONS: [Migration; 3] = [
    Migration { version: 1, name: "store", sql: include_str!("../migrations/0001_store.sql") },
    Migration { version: 2, name: "freeradius_views", sql: include_str!("../migrations/0002_freeradius_views.sql") },
    Migration { version: 3, name: "alert_outbox", sql: include_str!("../migrations/0003_alert_outbox.sql") },
];

/// The advisory lock key of migrations ("portcull" in ASCII).
const LOCK_KEY: i64 = 0x706f_7274_6375_6c6c;

/// What migrating found.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The schema is current; these versions were applied now.
    Current(Vec<i32>),
    /// The database was migrated by a newer build.
    Newer(i32),
}

/// Applies every pending migration.
/// The schema version the database is at (0 before the first migration), read without
/// changing anything.
pub(crate) fn version(client: &mut Client) -> Result<i32, postgres::Error> {
    let exists: bool = client.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?.get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?.get(0))
}

pub(crate) fn migrate(client: &mut Client) -> Result<Outcome, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )?;
    let done: i32 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?.get(0);
    let latest = MIGRATIONS.last().map_or(0, |m| m.version);
    if done > latest {
        return Ok(Outcome::Newer(done));
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > done) {
        tx.batch_execute(m.sql)?;
        tx.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", &[&m.version, &m.name])?;
        applied.push(m.version);
    }
    tx.commit()?;
    Ok(Outcome::Current(applied))
}
