//! The embedded backend: one SQLite database in WAL mode inside the data directory.

use std::path::{Path, PathBuf};

use portcullis_accounting::{AccountingRecord, StatusType};
use rusqlite::{Connection, OptionalExtension, params};

use crate::files::FileMode;
use crate::{
    Alert, AlertChange, AlertComment, AlertEvent, AlertQuery, AlertUpdate, AuthEvent, AuthFacets, AuthQuery, Counter,
    Cutoff, Fed, ObservedLocation, Position, Pruned, Session, SessionQuery, StorageError, Store, Summary, UserQuery,
    UserSummary,
};

/// How hard a commit pushes data to disk. Sessions are derived from the journal, so
/// `Normal` is enough for them: after a power loss the applied position rolls back with
/// the sessions and the journal is replayed from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// WAL with `synchronous = NORMAL`: survives a crash of the process.
    #[default]
    Normal,
    /// WAL with `synchronous = FULL`: every commit is fsynced.
    Fsync,
}

/// The SQLite store.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

const SCHEMA_VERSION: i64 = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS applied (
    journal TEXT PRIMARY KEY,
    segment INTEGER NOT NULL,
    offset INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    session_key TEXT NOT NULL UNIQUE,
    user TEXT,
    user_raw TEXT,
    nas TEXT NOT NULL,
    nas_ip TEXT,
    session_id TEXT,
    client_ip TEXT,
    device TEXT,
    framed_ip TEXT,
    framed_ipv6 TEXT,
    started_at INTEGER NOT NULL,
    stopped_at INTEGER,
    updated_at INTEGER NOT NULL,
    open INTEGER NOT NULL,
    session_time INTEGER,
    input_octets INTEGER,
    output_octets INTEGER,
    input_packets INTEGER,
    output_packets INTEGER,
    terminate_cause TEXT,
    details TEXT NOT NULL,
    location TEXT,
    start_seq INTEGER,
    start_time INTEGER,
    stop_seq INTEGER,
    reset_seq INTEGER,
    start_seen INTEGER NOT NULL DEFAULT 0,
    stale INTEGER NOT NULL DEFAULT 0,
    interim_gap INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_start_seq ON sessions(start_seq) WHERE start_seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS sessions_stop_seq ON sessions(stop_seq) WHERE stop_seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS sessions_reset_seq ON sessions(reset_seq) WHERE reset_seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user);
CREATE INDEX IF NOT EXISTS sessions_open_by_nas ON sessions(nas) WHERE open = 1;
CREATE INDEX IF NOT EXISTS sessions_open_by_nas_ip ON sessions(nas_ip) WHERE open = 1 OR stale = 1;
CREATE INDEX IF NOT EXISTS sessions_started ON sessions(started_at);

CREATE TABLE IF NOT EXISTS auth_events (
    id INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    user TEXT NOT NULL,
    event TEXT NOT NULL,
    seq INTEGER
);
CREATE INDEX IF NOT EXISTS auth_events_seq ON auth_events(seq);
CREATE INDEX IF NOT EXISTS auth_events_time ON auth_events(time_ms);
CREATE INDEX IF NOT EXISTS auth_events_user ON auth_events(user, time_ms);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    user TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    event_time INTEGER NOT NULL,
    last_event_time INTEGER NOT NULL,
    status TEXT NOT NULL,
    classification TEXT,
    message TEXT NOT NULL,
    evidence TEXT NOT NULL,
    fold_key TEXT NOT NULL,
    count INTEGER NOT NULL,
    ip TEXT
);
CREATE INDEX IF NOT EXISTS alerts_open_fold ON alerts(fold_key) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS alerts_user ON alerts(user);
CREATE TABLE IF NOT EXISTS alert_causes (
    cause TEXT NOT NULL,
    kind TEXT NOT NULL,
    alert_id INTEGER NOT NULL,
    PRIMARY KEY (cause, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alert_comments (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_comments_alert ON alert_comments(alert_id);
-- The outbox of alert changes export sinks read in order (AUTOINCREMENT: a seq is never reused).
CREATE TABLE IF NOT EXISTS alert_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    time_ms INTEGER NOT NULL
);
-- The next place in the order records and authentication events are applied in.
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
-- The place of each session event (s: Start, t: Stop, r: NAS reset) the first time it
-- was applied; kept through a rebuild so that history keeps its order.
CREATE TABLE IF NOT EXISTS feed_order (
    key TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
-- Records read from history files: not in the journal, applied again by a rebuild.
CREATE TABLE IF NOT EXISTS replayed (
    seq INTEGER PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    client TEXT NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (client, reason)
) WITHOUT ROWID;
";

/// One statement for Start, Interim-Update and Stop (`?23`: 1, 2 or 3). Counters are
/// cumulative on the wire, so they take the larger value: a retransmit or a late Interim
/// never adds. Attributes a Stop lacks (F5 sends no endpoint in Stops) keep the earlier
/// value. A recorded Start's time is the start; without one, the earliest start the
/// Interims and the Stop imply (event time minus Acct-Session-Time). A stale session
/// comes back to life with a newer Interim and is closed by its Stop; an older record
/// (a replay) leaves it stale.
const UPSERT: &str = "
INSERT INTO sessions (session_key, user, user_raw, nas, nas_ip, session_id, client_ip, device, framed_ip,
    framed_ipv6, started_at, stopped_at, updated_at, open, session_time, input_octets, output_octets,
    input_packets, output_packets, terminate_cause, details, location, start_seq, start_time, stop_seq, start_seen)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22,
    ?23, ?24, ?25, ?26 = 1)
ON CONFLICT(session_key) DO UPDATE SET
    user_raw = COALESCE(user_raw, excluded.user_raw),
    nas_ip = COALESCE(nas_ip, excluded.nas_ip),
    client_ip = COALESCE(client_ip, excluded.client_ip),
    device = COALESCE(device, excluded.device),
    framed_ip = COALESCE(excluded.framed_ip, framed_ip),
    framed_ipv6 = COALESCE(excluded.framed_ipv6, framed_ipv6),
    started_at = CASE WHEN start_seen = 1 THEN started_at WHEN ?26 = 1 THEN excluded.started_at
        ELSE MIN(started_at, excluded.started_at) END,
    start_seen = MAX(start_seen, excluded.start_seen),
    stopped_at = COALESCE(stopped_at, excluded.stopped_at),
    updated_at = MAX(updated_at, excluded.updated_at),
    open = CASE WHEN stopped_at IS NOT NULL OR excluded.open = 0 THEN 0
        WHEN stale = 1 AND excluded.updated_at <= updated_at THEN 0 ELSE 1 END,
    stale = CASE WHEN excluded.open = 0 OR excluded.updated_at > updated_at THEN 0 ELSE stale END,
    interim_gap = CASE WHEN ?26 = 2 AND excluded.updated_at > updated_at
        THEN MAX(COALESCE(interim_gap, 0), excluded.updated_at - updated_at) ELSE interim_gap END,
    session_time = COALESCE(MAX(session_time, excluded.session_time), session_time, excluded.session_time),
    input_octets = COALESCE(MAX(input_octets, excluded.input_octets), input_octets, excluded.input_octets),
    output_octets = COALESCE(MAX(output_octets, excluded.output_octets), output_octets, excluded.output_octets),
    input_packets = COALESCE(MAX(input_packets, excluded.input_packets), input_packets, excluded.input_packets),
    output_packets = COALESCE(MAX(output_packets, excluded.output_packets), output_packets, excluded.output_packets),
    terminate_cause = COALESCE(terminate_cause, excluded.terminate_cause),
    -- The address the session's first record came from stays: a later record from
    -- another client naming the same session does not redirect a Disconnect-Request.
    details = json_patch(json_patch(details, excluded.details), json_object('nas_source',
        COALESCE(json_extract(details, '$.nas_source'), json_extract(excluded.details, '$.nas_source')))),
    location = COALESCE(location, excluded.location),
    start_seq = COALESCE(start_seq, excluded.start_seq),
    start_time = COALESCE(start_time, excluded.start_time),
    stop_seq = COALESCE(stop_seq, excluded.stop_seq)
";

/// The place of a session event in the apply order: the one it got the first time.
const ORDER: &str = "
INSERT INTO feed_order (key, seq) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET seq = feed_order.seq RETURNING seq
";

/// Accounting-On/Off ends every session of the NAS, open or stale, that started by
/// then: the NAS is named by NAS-Identifier or NAS-IP-Address, and a reset carrying
/// either one matches sessions recorded under the other. Those names are claims, so
/// only sessions recorded from the same configured client (`?5`, none for history
/// files) are ended: another NAS cannot end this one's sessions by naming it.
const CLOSE_NAS: &str = "
UPDATE sessions SET open = 0, stale = 0, stopped_at = ?2, updated_at = MAX(updated_at, ?2),
    terminate_cause = 'NAS-Reboot', reset_seq = COALESCE(reset_seq, ?4)
WHERE (nas = ?1 OR (?3 IS NOT NULL AND nas_ip = ?3)) AND (open = 1 OR stale = 1) AND started_at <= ?2
    AND json_extract(details, '$.client') IS ?5
";

/// Marks stale the open sessions with no record since `?1` minus the threshold: `?2`
/// seconds when configured, else twice the longest Interim interval seen from the
/// session's NAS, at least a day.
const MARK_STALE: &str = "
UPDATE sessions SET open = 0, stale = 1
WHERE open = 1 AND updated_at < ?1 - COALESCE(?2, MAX(86400,
    2 * COALESCE((SELECT MAX(g.interim_gap) FROM sessions g WHERE g.nas = sessions.nas AND g.open = 1), 0)))
";

/// Opens (creating it and the data directory if needed) the database `name` in
/// `data_dir` with this mode; SQLite gives its `-wal` and `-shm` files the database
/// file's mode, and those kept from before are narrowed.
pub(crate) fn open_in(data_dir: &Path, name: &str, mode: FileMode) -> Result<Connection, StorageError> {
    mode.create_dir_all(data_dir)
        .map_err(|source| StorageError::DataDir { path: data_dir.display().to_string(), source })?;
    let path = data_dir.join(name);
    for file in [path.clone(), data_dir.join(format!("{name}-wal")), data_dir.join(format!("{name}-shm"))] {
        let done = if file == path { mode.ensure(&file) } else { mode.restrict(&file) };
        done.map_err(|source| StorageError::DataDir { path: file.display().to_string(), source })?;
    }
    Ok(Connection::open(&path)?)
}

impl SqliteStore {
    /// Opens (creating if needed) `portcullis.db` in `data_dir`, readable by its owner
    /// only.
    pub fn open(data_dir: &Path, sync: SyncMode) -> Result<Self, StorageError> {
        Self::open_with_mode(data_dir, sync, FileMode::PRIVATE)
    }

    /// Opens (creating if needed) `portcullis.db` in `data_dir` with this mode; SQLite
    /// gives its `-wal` and `-shm` files the database file's mode.
    pub fn open_with_mode(data_dir: &Path, sync: SyncMode, mode: FileMode) -> Result<Self, StorageError> {
        let conn = open_in(data_dir, "portcullis.db", mode)?;
        let path = data_dir.join("portcullis.db");
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", if sync == SyncMode::Fsync { "FULL" } else { "NORMAL" })?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Keep hot index pages in memory and checkpoint the WAL in large steps (about
        // 40 MB): each checkpoint writes every changed page once and syncs, and with
        // 1,000-page steps those syncs took a quarter of the applier's time. The file is
        // cut back to 64 MB after a checkpoint.
        conn.pragma_update(None, "cache_size", -131_072)?;
        conn.pragma_update(None, "mmap_size", 1_073_741_824_i64)?;
        conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StorageError::Corrupt(format!(
                "database schema version {version} is newer than this build understands ({SCHEMA_VERSION})"
            )));
        }
        if version == 1 {
            // Version 2 added the session location and the alert tables.
            conn.execute_batch("ALTER TABLE sessions ADD COLUMN location TEXT")?;
        }
        if (1..=2).contains(&version) {
            // Version 3 added the apply order and the replayed records.
            conn.execute_batch(
                "ALTER TABLE sessions ADD COLUMN start_seq INTEGER;
                 ALTER TABLE sessions ADD COLUMN start_time INTEGER;
                 ALTER TABLE sessions ADD COLUMN stop_seq INTEGER;
                 ALTER TABLE sessions ADD COLUMN reset_seq INTEGER;
                 ALTER TABLE auth_events ADD COLUMN seq INTEGER;",
            )?;
        }
        if (1..=3).contains(&version) {
            // Version 4 added whether a Start was recorded, stale sessions and the
            // longest Interim interval.
            conn.execute_batch(
                "ALTER TABLE sessions ADD COLUMN start_seen INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE sessions ADD COLUMN stale INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE sessions ADD COLUMN interim_gap INTEGER;",
            )?;
        }
        conn.execute_batch(SCHEMA)?;
        if (1..=2).contains(&version) {
            // What earlier versions stored has no arrival order: event time stands in.
            conn.execute_batch(
                "BEGIN;
                 UPDATE sessions SET start_seq = started_at, start_time = started_at, stop_seq = stopped_at;
                 UPDATE auth_events SET seq = time_ms / 1000;
                 INSERT OR IGNORE INTO feed_order (key, seq) SELECT 's:' || session_key, start_seq FROM sessions;
                 INSERT OR IGNORE INTO feed_order (key, seq)
                     SELECT 't:' || session_key, stop_seq FROM sessions WHERE stop_seq IS NOT NULL;
                 INSERT OR REPLACE INTO meta (key, value) SELECT 'seq', MAX(
                     COALESCE((SELECT MAX(seq) FROM feed_order), 0),
                     COALESCE((SELECT MAX(seq) FROM auth_events), 0)) + 1;
                 COMMIT;",
            )?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Self { conn, path })
    }

    /// Opens the database for reading only (CLI queries while the server runs).
    pub fn open_read_only(data_dir: &Path) -> Result<Self, StorageError> {
        Self::open_existing(data_dir, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    }

    /// Another read-write connection to a database that this process has opened (and
    /// upgraded) with [`SqliteStore::open_with_mode`] already: the portal's. It leaves the
    /// files' modes alone, because opening and closing any descriptor of the database
    /// or its `-wal`/`-shm` files in this process would drop the POSIX locks SQLite
    /// holds for the other connection, and another process could then reset the
    /// shared memory under it.
    pub fn open_another(data_dir: &Path) -> Result<Self, StorageError> {
        let store = Self::open_existing(data_dir, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        store.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = store.conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version != SCHEMA_VERSION {
            return Err(StorageError::Corrupt(format!(
                "database schema version {version}, expected {SCHEMA_VERSION}: open it with open_with_mode first"
            )));
        }
        Ok(store)
    }

    fn open_existing(data_dir: &Path, flags: rusqlite::OpenFlags) -> Result<Self, StorageError> {
        let path = data_dir.join("portcullis.db");
        if !path.exists() {
            return Err(StorageError::NoDatabase { path: data_dir.display().to_string() });
        }
        let conn = Connection::open_with_flags(&path, flags | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(Self { conn, path })
    }

    /// Authentication events stored with a time at or after `since` and sessions that
    /// started then (Unix seconds), estimated from row ids rather than counted, so it
    /// takes two index lookups on a database of any size.
    pub fn stored_since(&self, since: i64) -> Result<(u64, u64), StorageError> {
        let span = |table: &str, column: &str, since: i64| -> Result<u64, StorageError> {
            let sql = format!(
                "SELECT (SELECT MAX(id) FROM {table}) - (SELECT id FROM {table} WHERE {column} >= ?1 ORDER BY {column} LIMIT 1) + 1"
            );
            let n: Option<i64> = self.conn.query_row(&sql, [since], |r| r.get(0))?;
            Ok(n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
        };
        Ok((span("auth_events", "time_ms", since.saturating_mul(1000))?, span("sessions", "started_at", since)?))
    }

    /// Bytes of the database file and its write-ahead log.
    pub fn file_bytes(&self) -> u64 {
        let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        len(&self.path) + len(Path::new(&wal))
    }

    fn apply_one(w: &mut Writer<'_>, r: &AccountingRecord) -> Result<(), StorageError> {
        let status = r.status_type();
        if status.is_nas_restart() {
            let seq = w.place(&format!("r:{}:{}", r.nas, r.event_time))?;
            w.close_nas.execute(params![
                r.nas,
                r.event_time,
                r.nas_ip.map(|i| i.to_string()),
                seq,
                r.details.get("client")
            ])?;
            return Ok(());
        }
        let Some(key) = r.session_key.as_deref().filter(|_| status.is_session_event()) else {
            return Ok(());
        };
        let stop = status == StatusType::Stop;
        let start = status == StatusType::Start;
        let start_seq = if start { Some(w.place(&format!("s:{key}"))?) } else { None };
        let stop_seq = if stop { Some(w.place(&format!("t:{key}"))?) } else { None };
        let kind = match status {
            StatusType::Start => 1,
            StatusType::InterimUpdate => 2,
            _ => 3,
        };
        let details = serde_json::to_string(&r.details).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        w.upsert.execute(params![
            key,
            r.user,
            r.user_raw,
            r.nas,
            r.nas_ip.map(|i| i.to_string()),
            r.session_id,
            r.client_ip.map(|i| i.to_string()),
            r.device,
            r.framed_ip.map(|i| i.to_string()),
            r.framed_ipv6,
            r.started_at(),
            stop.then_some(r.event_time),
            r.event_time,
            !stop,
            r.session_time,
            r.input_octets.map(clamp),
            r.output_octets.map(clamp),
            r.input_packets,
            r.output_packets,
            if stop { r.terminate_cause.clone() } else { None },
            details,
            r.location.as_ref().and_then(|l| serde_json::to_string(l).ok()),
            start_seq,
            start.then_some(r.event_time),
            stop_seq,
            kind,
        ])?;
        Ok(())
    }
}

/// The statements of one write transaction and the next place in the apply order.
struct Writer<'t> {
    tx: &'t rusqlite::Transaction<'t>,
    upsert: rusqlite::CachedStatement<'t>,
    close_nas: rusqlite::CachedStatement<'t>,
    order: rusqlite::CachedStatement<'t>,
    next: i64,
}

impl<'t> Writer<'t> {
    fn new(tx: &'t rusqlite::Transaction<'t>) -> Result<Self, StorageError> {
        let next = tx
            .prepare_cached("SELECT value FROM meta WHERE key = 'seq'")?
            .query_row([], |r| r.get(0))
            .optional()?
            .unwrap_or(1);
        Ok(Self {
            tx,
            upsert: tx.prepare_cached(UPSERT)?,
            close_nas: tx.prepare_cached(CLOSE_NAS)?,
            order: tx.prepare_cached(ORDER)?,
            next,
        })
    }

    /// The next place in the apply order.
    fn next(&mut self) -> i64 {
        self.next += 1;
        self.next - 1
    }

    /// The place of a session event: the one it got when first applied, else the next.
    fn place(&mut self, key: &str) -> Result<i64, StorageError> {
        let seq = self.next;
        let got: i64 = self.order.query_row(params![key, seq], |r| r.get(0))?;
        if got == seq {
            self.next += 1;
        }
        Ok(got)
    }

    fn finish(self) -> Result<(), StorageError> {
        self.tx
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('seq', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute([self.next])?;
        Ok(())
    }
}

/// The columns `row_to_session` reads, in its order.
const SESSION_COLUMNS: &str = "session_key, user, user_raw, nas, nas_ip, session_id, client_ip, device,
    framed_ip, framed_ipv6, started_at, stopped_at, updated_at, open, session_time, input_octets, output_octets,
    input_packets, output_packets, terminate_cause, details, location, start_seq, start_time, stop_seq, reset_seq,
    stale";

/// A query grown one `AND` condition at a time, with numbered parameters.
struct Filter {
    sql: String,
    args: Vec<rusqlite::types::Value>,
}

impl Filter {
    fn new(select: String) -> Self {
        Self { sql: select + " WHERE 1 = 1", args: Vec::new() }
    }

    /// Adds a parameter; returns its number.
    fn bind(&mut self, value: impl Into<rusqlite::types::Value>) -> usize {
        self.args.push(value.into());
        self.args.len()
    }

    /// ` AND {column_op} ?N` with `value` as parameter N.
    fn and(&mut self, column_op: &str, value: impl Into<rusqlite::types::Value>) {
        let n = self.bind(value);
        self.sql.push_str(&format!(" AND {column_op} ?{n}"));
    }
}

const AUTH_INSERT: &str = "INSERT INTO auth_events (time_ms, user, event, seq) VALUES (?1, ?2, ?3, ?4)";

fn insert_auth(stmt: &mut rusqlite::CachedStatement<'_>, e: &AuthEvent, seq: i64) -> Result<(), StorageError> {
    stmt.execute(params![e.time_ms, e.user, event_json(e)?, seq])?;
    Ok(())
}

/// The stored form of an authentication event, written into a buffer large enough
/// for a typical event so it is not grown several times.
fn event_json(e: &AuthEvent) -> Result<String, StorageError> {
    let mut out = Vec::with_capacity(512);
    serde_json::to_writer(&mut out, e).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    String::from_utf8(out).map_err(|e| StorageError::Corrupt(e.to_string()))
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn row_to_session(row: &rusqlite::Row<'_>) -> rusqlite::Result<Session> {
    let details: String = row.get(20)?;
    Ok(Session {
        session_key: row.get(0)?,
        user: row.get(1)?,
        user_raw: row.get(2)?,
        nas: row.get(3)?,
        nas_ip: row.get(4)?,
        session_id: row.get(5)?,
        client_ip: row.get(6)?,
        device: row.get(7)?,
        framed_ip: row.get(8)?,
        framed_ipv6: row.get(9)?,
        started_at: row.get(10)?,
        stopped_at: row.get(11)?,
        updated_at: row.get(12)?,
        open: row.get(13)?,
        session_time: row.get(14)?,
        input_octets: row.get(15)?,
        output_octets: row.get(16)?,
        input_packets: row.get(17)?,
        output_packets: row.get(18)?,
        terminate_cause: row.get(19)?,
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
        location: row.get::<_, Option<String>>(21)?.and_then(|l| serde_json::from_str(&l).ok()),
        order: crate::SessionOrder {
            start: match (row.get::<_, Option<i64>>(22)?, row.get::<_, Option<i64>>(23)?) {
                (Some(seq), Some(time)) => Some((seq, time)),
                _ => None,
            },
            stop: row.get(24)?,
            reset: row.get(25)?,
        },
        stale: row.get(26)?,
    })
}

const ALERT_COLUMNS: &str = "id, kind, severity, user, created_ms, updated_ms, event_time, last_event_time, status,
    classification, message, evidence, count, ip";

const ALERT_EVENT_INSERT: &str = "INSERT INTO alert_events (alert_id, trigger, time_ms) VALUES (?1, ?2, ?3)";

fn ms_to_rfc3339(ms: i64) -> String {
    portcullis_detect::rfc3339(ms.div_euclid(1000))
}

fn row_to_alert(row: &rusqlite::Row<'_>) -> rusqlite::Result<Alert> {
    let kind: String = row.get(1)?;
    let evidence: String = row.get(11)?;
    let count: i64 = row.get(12)?;
    Ok(Alert {
        id: row.get(0)?,
        mitre: portcullis_detect::AlertKind::from_name(&kind).map(|k| k.mitre().to_owned()).unwrap_or_default(),
        kind,
        severity: row.get(2)?,
        user: row.get(3)?,
        created_at: ms_to_rfc3339(row.get(4)?),
        updated_at: ms_to_rfc3339(row.get(5)?),
        event_time: portcullis_detect::rfc3339(row.get(6)?),
        last_event_time: portcullis_detect::rfc3339(row.get(7)?),
        status: row.get(8)?,
        classification: row.get(9)?,
        message: row.get(10)?,
        evidence: serde_json::from_str(&evidence).unwrap_or(serde_json::Value::Null),
        count: u64::try_from(count).unwrap_or(0),
        ip: row.get(13)?,
        comments: Vec::new(),
    })
}

impl SqliteStore {
    fn alert_comments(&self, alert: &mut Alert) -> Result<(), StorageError> {
        let mut stmt =
            self.conn.prepare_cached("SELECT time_ms, text FROM alert_comments WHERE alert_id = ?1 ORDER BY id")?;
        let rows =
            stmt.query_map([alert.id], |r| Ok(AlertComment { time: ms_to_rfc3339(r.get(0)?), text: r.get(1)? }))?;
        alert.comments = rows.collect::<Result<_, _>>()?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn apply(&mut self, records: &[AccountingRecord], through: Position) -> Result<(), StorageError> {
        let tx = self.conn.transaction()?;
        {
            let mut w = Writer::new(&tx)?;
            for r in records {
                Self::apply_one(&mut w, r)?;
            }
            w.finish()?;
        }
        tx.prepare_cached(
            "INSERT INTO applied (journal, segment, offset) VALUES ('local', ?1, ?2)
             ON CONFLICT(journal) DO UPDATE SET segment = excluded.segment, offset = excluded.offset",
        )?
        .execute(params![clamp(through.segment), clamp(through.offset)])?;
        tx.commit()?;
        Ok(())
    }

    fn applied_position(&self) -> Result<Position, StorageError> {
        let row: Option<(i64, i64)> = self
            .conn
            .query_row("SELECT segment, offset FROM applied WHERE journal = 'local'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        Ok(row.map_or_else(Position::default, |(segment, offset)| Position {
            segment: u64::try_from(segment).unwrap_or(0),
            offset: u64::try_from(offset).unwrap_or(0),
        }))
    }

    fn sessions(&self, q: &SessionQuery) -> Result<Vec<Session>, StorageError> {
        let mut f = Filter::new(format!("SELECT {SESSION_COLUMNS} FROM sessions"));
        match &q.user {
            Some(u) if q.canonical_only => f.and("user =", portcullis_accounting::canonical_user(u)),
            Some(u) => {
                let canonical = f.bind(portcullis_accounting::canonical_user(u));
                let raw = f.bind(u.clone());
                f.sql.push_str(&format!(" AND (user = ?{canonical} OR user_raw = ?{raw})"));
            }
            None => {}
        }
        if q.open_only {
            f.sql.push_str(" AND open = 1");
        }
        if let Some(since) = q.since {
            let n = f.bind(since);
            f.sql.push_str(&format!(" AND (stopped_at IS NULL OR stopped_at >= ?{n})"));
        }
        if let Some(before) = q.started_before {
            f.and("started_at <", before);
        }
        if let Some(from) = q.started_from {
            f.and("started_at >=", from);
        }
        if let Some((time, key)) = &q.after {
            // A row-value range on the started_at index (which ends in the row id), so a
            // page costs its own rows however many sessions share a start time.
            let (t, k) = (f.bind(*time), f.bind(key.clone()));
            f.sql.push_str(&format!(
                " AND (started_at, id) < (?{t}, (SELECT id FROM sessions WHERE session_key = ?{k}))"
            ));
        }
        if q.paged || q.after.is_some() {
            f.sql.push_str(" ORDER BY started_at DESC, id DESC");
        } else {
            f.sql.push_str(" ORDER BY started_at DESC, session_key");
        }
        if let Some(limit) = q.limit {
            f.sql.push_str(&format!(" LIMIT {limit}"));
        }
        let mut stmt = self.conn.prepare(&f.sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(f.args), row_to_session)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn mark_stale(&mut self, now: i64, stale_after: Option<i64>) -> Result<usize, StorageError> {
        Ok(self.conn.prepare_cached(MARK_STALE)?.execute(params![now, stale_after])?)
    }

    fn reset_sessions(&mut self) -> Result<(), StorageError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM sessions", [])?;
        tx.execute("DELETE FROM applied", [])?;
        {
            let mut w = Writer::new(&tx)?;
            let mut replayed = tx.prepare("SELECT record FROM replayed ORDER BY seq")?;
            let mut rows = replayed.query([])?;
            while let Some(row) = rows.next()? {
                let r: AccountingRecord = serde_json::from_str(&row.get::<_, String>(0)?)
                    .map_err(|e| StorageError::Corrupt(format!("replayed record: {e}")))?;
                Self::apply_one(&mut w, &r)?;
            }
            w.finish()?;
        }
        tx.commit()?;
        Ok(())
    }

    fn apply_replayed(&mut self, items: &[Result<AccountingRecord, AuthEvent>]) -> Result<(), StorageError> {
        let tx = self.conn.transaction()?;
        {
            let mut w = Writer::new(&tx)?;
            let mut keep = tx.prepare_cached("INSERT INTO replayed (seq, record) VALUES (?1, ?2)")?;
            let mut auth = tx.prepare_cached(AUTH_INSERT)?;
            for item in items {
                match item {
                    Ok(r) => {
                        let json = serde_json::to_string(r).map_err(|e| StorageError::Corrupt(e.to_string()))?;
                        keep.execute(params![w.next(), json])?;
                        Self::apply_one(&mut w, r)?;
                    }
                    Err(e) => insert_auth(&mut auth, e, w.next())?,
                }
            }
            w.finish()?;
        }
        tx.commit()?;
        Ok(())
    }

    fn history(&self, from: i64, since: i64, limit: usize) -> Result<Vec<(i64, Fed)>, StorageError> {
        let limit = limit.max(1);
        let n = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut lists: Vec<Vec<(i64, Fed)>> = Vec::with_capacity(4);
        let sessions = |condition: &str, seq: &str| -> Result<Vec<Session>, StorageError> {
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE {seq} >= ?1 AND ({condition}) ORDER BY {seq} LIMIT ?3"
            );
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![from, since, n], row_to_session)?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        let starts = sessions("(stopped_at IS NULL AND started_at >= ?2) OR stopped_at >= ?2", "start_seq")?;
        lists.push(starts.into_iter().filter_map(|s| Some((s.order.start?.0, Fed::Start(s)))).collect());
        let stops = sessions("stopped_at >= ?2", "stop_seq")?;
        lists.push(stops.into_iter().filter_map(|s| Some((s.order.stop?, Fed::Stop(s)))).collect());
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT reset_seq, MIN(nas), MIN(nas_ip), MIN(stopped_at), MIN(json_extract(details, '$.client'))
                 FROM sessions WHERE reset_seq >= ?1 AND stopped_at >= ?2
                 GROUP BY reset_seq ORDER BY reset_seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![from, since, n], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    Fed::Reset { nas: r.get(1)?, nas_ip: r.get(2)?, client: r.get(4)?, time: r.get(3)? },
                ))
            })?;
            lists.push(rows.collect::<Result<_, _>>()?);
        }
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT seq, event FROM auth_events WHERE seq >= ?1 AND time_ms >= ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![from, since.saturating_mul(1000), n], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut auth = Vec::new();
            for row in rows {
                let (seq, json) = row?;
                let e: AuthEvent = serde_json::from_str(&json).map_err(|e| StorageError::Corrupt(e.to_string()))?;
                auth.push((seq, Fed::Auth(e)));
            }
            lists.push(auth);
        }
        Ok(crate::merge_history(lists, limit))
    }

    fn save_counters(&mut self, counters: &[Counter]) -> Result<(), StorageError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO counters (client, reason, count) VALUES (?1, ?2, ?3)
                 ON CONFLICT(client, reason) DO UPDATE SET count = excluded.count",
            )?;
            for c in counters {
                stmt.execute(params![c.client, c.reason, clamp(c.count)])?;
            }
            tx.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('counters_since', CAST(strftime('%s', 'now') AS INTEGER))",
                [],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn record_auth_events(&mut self, events: &[AuthEvent]) -> Result<(), StorageError> {
        let tx = self.conn.transaction()?;
        {
            let mut w = Writer::new(&tx)?;
            let mut stmt = tx.prepare_cached(AUTH_INSERT)?;
            for e in events {
                insert_auth(&mut stmt, e, w.next())?;
            }
            w.finish()?;
        }
        tx.commit()?;
        Ok(())
    }

    fn auth_events(&self, q: &AuthQuery) -> Result<Vec<AuthEvent>, StorageError> {
        Ok(self.auth_page(q)?.into_iter().map(|(_, e)| e).collect())
    }

    fn session(&self, key: &str) -> Result<Option<Session>, StorageError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE session_key = ?1");
        Ok(self.conn.prepare_cached(&sql)?.query_row([key], row_to_session).optional()?)
    }

    fn prune(&mut self, cutoff: &Cutoff, limit: usize) -> Result<Pruned, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let tx = self.conn.transaction()?;
        let mut pruned = Pruned::default();
        if let Some(before) = cutoff.auth_events_before_ms {
            pruned.auth_events = tx
                .prepare_cached(
                    "DELETE FROM auth_events WHERE id IN
                     (SELECT id FROM auth_events WHERE time_ms < ?1 ORDER BY time_ms LIMIT ?2)",
                )?
                .execute(params![before, limit])?;
        }
        if let Some(before) = cutoff.sessions_before {
            // A session ends no earlier than it starts: the index on started_at finds
            // the candidates.
            pruned.sessions = tx
                .prepare_cached(
                    "DELETE FROM sessions WHERE id IN
                     (SELECT id FROM sessions WHERE started_at < ?1 AND open = 0
                          AND COALESCE(stopped_at, updated_at) < ?1 ORDER BY started_at LIMIT ?2)",
                )?
                .execute(params![before, limit])?;
        }
        tx.commit()?;
        Ok(pruned)
    }

    fn has_auth_event(&self, e: &AuthEvent) -> Result<bool, StorageError> {
        let json = event_json(e)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM auth_events WHERE user = ?1 AND time_ms = ?2 AND event = ?3 LIMIT 1")?;
        Ok(stmt.exists(params![e.user, e.time_ms, json])?)
    }

    fn record_alerts(
        &mut self,
        drafts: &[portcullis_detect::AlertDraft],
        now_ms: i64,
    ) -> Result<Vec<AlertChange>, StorageError> {
        let tx = self.conn.transaction()?;
        let mut out = Vec::with_capacity(drafts.len());
        {
            let mut known = tx.prepare_cached("SELECT alert_id FROM alert_causes WHERE cause = ?1 AND kind = ?2")?;
            let mut open = tx.prepare_cached(
                "SELECT id FROM alerts WHERE fold_key = ?1 AND status = 'open' ORDER BY id DESC LIMIT 1",
            )?;
            let mut fold = tx.prepare_cached(
                "UPDATE alerts SET count = count + 1, updated_ms = ?2, last_event_time = MAX(last_event_time, ?3) WHERE id = ?1",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO alerts (kind, severity, user, created_ms, updated_ms, event_time, last_event_time, status,
                 classification, message, evidence, fold_key, count, ip)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?5, 'open', NULL, ?6, ?7, ?8, 1, ?9)",
            )?;
            let mut cause =
                tx.prepare_cached("INSERT INTO alert_causes (cause, kind, alert_id) VALUES (?1, ?2, ?3)")?;
            let mut event = tx.prepare_cached(ALERT_EVENT_INSERT)?;
            for d in drafts {
                let kind = d.kind.name();
                if known.query_row(params![d.cause, kind], |r| r.get::<_, i64>(0)).optional()?.is_some() {
                    out.push(AlertChange::Known);
                    continue;
                }
                let id = match open.query_row([&d.fold_key], |r| r.get::<_, i64>(0)).optional()? {
                    Some(id) => {
                        fold.execute(params![id, now_ms, d.event_time])?;
                        event.execute(params![id, "update", now_ms])?;
                        out.push(AlertChange::Folded(id));
                        id
                    }
                    None => {
                        let evidence =
                            serde_json::to_string(&d.evidence).map_err(|e| StorageError::Corrupt(e.to_string()))?;
                        insert.execute(params![
                            kind,
                            d.severity.name(),
                            d.user,
                            now_ms,
                            d.event_time,
                            d.message,
                            evidence,
                            d.fold_key,
                            d.ip.map(|i| i.to_string()),
                        ])?;
                        let id = tx.last_insert_rowid();
                        event.execute(params![id, "new", now_ms])?;
                        out.push(AlertChange::Created(id));
                        id
                    }
                };
                cause.execute(params![d.cause, kind, id])?;
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn alerts(&self, q: &AlertQuery) -> Result<Vec<Alert>, StorageError> {
        let mut f = Filter::new(format!("SELECT {ALERT_COLUMNS} FROM alerts"));
        for (column_op, value) in
            [("status =", &q.status), ("user =", &q.user), ("kind =", &q.kind), ("severity =", &q.severity)]
        {
            if let Some(v) = value {
                f.and(column_op, v.clone());
            }
        }
        if let Some(id) = q.before_id {
            f.and("id <", id);
        }
        f.sql.push_str(" ORDER BY id DESC");
        if let Some(limit) = q.limit {
            f.sql.push_str(&format!(" LIMIT {limit}"));
        }
        let mut alerts: Vec<Alert> = {
            let mut stmt = self.conn.prepare(&f.sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(f.args), row_to_alert)?;
            rows.collect::<Result<_, _>>()?
        };
        for a in &mut alerts {
            self.alert_comments(a)?;
        }
        Ok(alerts)
    }

    fn update_alert(&mut self, id: i64, u: &AlertUpdate, now_ms: i64) -> Result<Option<Alert>, StorageError> {
        if let Some(s) = u.status.as_deref().filter(|s| !crate::ALERT_STATUSES.contains(s)) {
            return Err(StorageError::Invalid(format!("unknown status {s:?} (open, resolved, closed)")));
        }
        if let Some(c) = u.classification.as_deref().filter(|c| !crate::ALERT_CLASSIFICATIONS.contains(c)) {
            return Err(StorageError::Invalid(format!(
                "unknown classification {c:?} (true-positive, benign-true-positive, false-positive)"
            )));
        }
        let tx = self.conn.transaction()?;
        let exists = tx.query_row("SELECT 1 FROM alerts WHERE id = ?1", [id], |_| Ok(())).optional()?.is_some();
        if !exists {
            return Ok(None);
        }
        if let Some(s) = &u.status {
            tx.execute("UPDATE alerts SET status = ?2, updated_ms = ?3 WHERE id = ?1", params![id, s, now_ms])?;
        }
        if let Some(c) = &u.classification {
            tx.execute("UPDATE alerts SET classification = ?2, updated_ms = ?3 WHERE id = ?1", params![id, c, now_ms])?;
        }
        if let Some(text) = &u.comment {
            tx.execute(
                "INSERT INTO alert_comments (alert_id, time_ms, text) VALUES (?1, ?2, ?3)",
                params![id, now_ms, text],
            )?;
            tx.execute("UPDATE alerts SET updated_ms = ?2 WHERE id = ?1", params![id, now_ms])?;
        }
        if u.status.is_some() || u.classification.is_some() || u.comment.is_some() {
            tx.execute(ALERT_EVENT_INSERT, params![id, "update", now_ms])?;
        }
        tx.commit()?;
        self.alert(id)
    }

    fn alert_events(&self, after: i64, limit: usize) -> Result<Vec<AlertEvent>, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(i64, i64, String, i64)> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT seq, alert_id, trigger, time_ms FROM alert_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(rows.len());
        for (seq, alert_id, trigger, time_ms) in rows {
            // Alerts are never deleted, so every change names one.
            let alert = self.alert(alert_id)?.ok_or_else(|| {
                StorageError::Corrupt(format!("alert change {seq} names alert {alert_id}, which is missing"))
            })?;
            out.push(AlertEvent { seq, trigger, time_ms, alert });
        }
        Ok(out)
    }

    fn open_alerts_by_kind(&self) -> Result<Vec<(String, u64)>, StorageError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT kind, COUNT(*) FROM alerts WHERE status = 'open' GROUP BY kind ORDER BY kind")?;
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0))))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn last_alert_event(&self) -> Result<i64, StorageError> {
        Ok(self.conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM alert_events", [], |r| r.get(0))?)
    }

    fn alert(&self, id: i64) -> Result<Option<Alert>, StorageError> {
        let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1");
        let Some(mut alert) = self.conn.prepare_cached(&sql)?.query_row([id], row_to_alert).optional()? else {
            return Ok(None);
        };
        self.alert_comments(&mut alert)?;
        Ok(Some(alert))
    }

    fn auth_page(&self, q: &AuthQuery) -> Result<Vec<(i64, AuthEvent)>, StorageError> {
        let mut f = Filter::new("SELECT id, event FROM auth_events".into());
        if let Some(u) = &q.user {
            f.and("user =", u.to_lowercase());
        }
        if let Some(since) = q.since_ms {
            f.and("time_ms >=", since);
        }
        if let Some(until) = q.until_ms {
            f.and("time_ms <", until);
        }
        for (path, value) in [
            ("'$.decision'", &q.decision),
            ("'$.nas'", &q.nas),
            ("'$.method'", &q.method),
            ("'$.location.country'", &q.country),
            ("'$.location.city'", &q.city),
        ] {
            if let Some(v) = value {
                f.and(&format!("json_extract(event, {path}) ="), v.clone());
            }
        }
        if let Some((time, id)) = q.before {
            let (t, i) = (f.bind(time), f.bind(id));
            f.sql.push_str(&format!(" AND (time_ms < ?{t} OR (time_ms = ?{t} AND id < ?{i}))"));
        }
        f.sql.push_str(" ORDER BY time_ms DESC, id DESC");
        if let Some(limit) = q.limit {
            f.sql.push_str(&format!(" LIMIT {limit}"));
        }
        let mut stmt = self.conn.prepare(&f.sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(f.args), |r| Ok((r.get(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row?;
            let e: AuthEvent = serde_json::from_str(&json).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            out.push((id, e));
        }
        Ok(out)
    }

    fn auth_facets(&self, user: &str, since_ms: i64) -> Result<AuthFacets, StorageError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT json_extract(event, '$.decision'), json_extract(event, '$.location.country'),
                 json_extract(event, '$.nas'), json_extract(event, '$.method')
             FROM auth_events WHERE user = ?1 AND time_ms >= ?2",
        )?;
        let mut sets: [std::collections::BTreeSet<String>; 4] = Default::default();
        let mut rows = stmt.query(params![user.to_lowercase(), since_ms])?;
        while let Some(row) = rows.next()? {
            for (i, set) in sets.iter_mut().enumerate() {
                if let Some(v) = row.get::<_, Option<String>>(i)? {
                    set.insert(v);
                }
            }
        }
        let [decisions, countries, nas, methods] = sets.map(|s| s.into_iter().collect());
        Ok(AuthFacets { decisions, countries, nas, methods })
    }

    fn user_locations(&self, user: &str, since_ms: i64) -> Result<Vec<ObservedLocation>, StorageError> {
        let mut stmt = self.conn.prepare_cached(&locations_sql(
            "SELECT location AS loc, started_at * 1000 AS t FROM sessions
               WHERE user = ?1 AND started_at >= ?2 / 1000 AND location IS NOT NULL
             UNION ALL
             SELECT json_extract(event, '$.location') AS loc, time_ms AS t FROM auth_events
               WHERE user = ?1 AND time_ms >= ?2 AND json_extract(event, '$.location') IS NOT NULL",
        ))?;
        let user = portcullis_accounting::canonical_user(user);
        let rows = stmt.query_map(params![user, since_ms], observed_location)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn recent_locations(&self, since_ms: i64, limit: usize) -> Result<Vec<ObservedLocation>, StorageError> {
        let mut stmt = self.conn.prepare_cached(&locations_sql(
            "SELECT * FROM (SELECT location AS loc, started_at * 1000 AS t FROM sessions
                 WHERE started_at >= ?1 / 1000 ORDER BY started_at DESC LIMIT ?2)
               WHERE loc IS NOT NULL
             UNION ALL
             SELECT * FROM (SELECT json_extract(event, '$.location') AS loc, time_ms AS t FROM auth_events
                 WHERE time_ms >= ?1 ORDER BY time_ms DESC LIMIT ?2)
               WHERE loc IS NOT NULL",
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![since_ms, limit], observed_location)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn users(&self, q: &UserQuery) -> Result<Vec<UserSummary>, StorageError> {
        let mut stmt = self.conn.prepare_cached(
            // The names come from a merge of two index scans that stops at the limit;
            // only the names on the page are looked at further.
            "SELECT u,
                 MAX(COALESCE((SELECT MAX(started_at) FROM sessions s WHERE s.user = u) * 1000, 0),
                     COALESCE((SELECT MAX(time_ms) FROM auth_events e WHERE e.user = u), 0)),
                 (SELECT COUNT(*) FROM alerts a WHERE a.user = u AND a.status = 'open')
             FROM (SELECT user AS u FROM sessions WHERE user IS NOT NULL AND (?2 IS NULL OR user > ?2)
                       AND (?1 IS NULL OR instr(lower(user), lower(?1)) > 0)
                   UNION
                   SELECT user FROM auth_events WHERE (?2 IS NULL OR user > ?2)
                       AND (?1 IS NULL OR instr(lower(user), lower(?1)) > 0)
                   ORDER BY 1 LIMIT ?3)
             ORDER BY u",
        )?;
        let limit = i64::try_from(q.limit.unwrap_or(usize::MAX)).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![q.search, q.after, limit], |r| {
            let open: i64 = r.get(2)?;
            Ok(UserSummary { name: r.get(0)?, last_seen_ms: r.get(1)?, open_alerts: u64::try_from(open).unwrap_or(0) })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn summary(&self, since_ms: i64) -> Result<Summary, StorageError> {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let open_sessions: i64 =
            self.conn.query_row("SELECT COUNT(*) FROM sessions WHERE open = 1", [], |r| r.get(0))?;
        let grouped = |sql: &str, arg: Option<i64>| -> Result<Vec<(String, u64)>, StorageError> {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params![arg], |r| Ok((r.get::<_, String>(0)?, count(r.get(1)?))))?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        Ok(Summary {
            open_sessions: count(open_sessions),
            open_alerts: grouped(
                "SELECT severity, COUNT(*) FROM alerts WHERE status = 'open' AND ?1 IS NULL GROUP BY severity \
                 ORDER BY severity",
                None,
            )?,
            auth_decisions: grouped(
                "SELECT json_extract(event, '$.decision') AS d, COUNT(*) FROM auth_events WHERE time_ms >= ?1 \
                 AND d IS NOT NULL GROUP BY d ORDER BY d",
                Some(since_ms),
            )?,
        })
    }

    fn counters(&self) -> Result<Vec<Counter>, StorageError> {
        let mut stmt = self.conn.prepare("SELECT client, reason, count FROM counters ORDER BY client, reason")?;
        let rows = stmt.query_map([], |r| {
            let n: i64 = r.get(2)?;
            Ok(Counter { client: r.get(0)?, reason: r.get(1)?, count: u64::try_from(n).unwrap_or(0) })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn counters_since(&self) -> Result<Option<i64>, StorageError> {
        Ok(self.conn.query_row("SELECT value FROM meta WHERE key = 'counters_since'", [], |r| r.get(0)).optional()?)
    }
}

/// Distinct places of the `(loc, t)` rows `source` selects, newest first: one row per
/// country, city and ASN, with the place's coordinates, first and last time and count.
fn locations_sql(source: &str) -> String {
    format!(
        "SELECT json_extract(loc, '$.country') AS c, json_extract(loc, '$.city') AS ci,
             json_extract(loc, '$.asn') AS a, MAX(json_extract(loc, '$.as_org')), MIN(t), MAX(t), COUNT(*),
             MAX(json_extract(loc, '$.latitude')), MAX(json_extract(loc, '$.longitude'))
         FROM ({source})
         WHERE json_extract(loc, '$.internal') IS NOT 1
         GROUP BY c, ci, a ORDER BY MAX(t) DESC LIMIT 10000"
    )
}

fn observed_location(r: &rusqlite::Row<'_>) -> rusqlite::Result<ObservedLocation> {
    let count: i64 = r.get(6)?;
    Ok(ObservedLocation {
        country: r.get(0)?,
        city: r.get(1)?,
        asn: r.get::<_, Option<i64>>(2)?.and_then(|a| u32::try_from(a).ok()),
        as_org: r.get(3)?,
        first_ms: r.get(4)?,
        last_ms: r.get(5)?,
        count: u64::try_from(count).unwrap_or(0),
        latitude: r.get(7)?,
        longitude: r.get(8)?,
    })
}
