//! `PgStore`: the [`Store`] contract in PostgreSQL, statement for statement the rules of
//! the SQLite store (the conformance battery holds both to them).

use std::cell::RefCell;

use portcullis_accounting::{AccountingRecord, StatusType};
use portcullis_storage::{
    Alert, AlertChange, AlertComment, AlertEvent, AlertQuery, AlertUpdate, AuthEvent, AuthFacets, AuthQuery, Counter,
    Cutoff, Fed, ObservedLocation, Position, Pruned, Session, SessionOrder, SessionQuery, StorageError, Store, Summary,
    UserQuery, UserSummary,
};
use postgres::types::{Json, ToSql};
use postgres::{Client, Row, Statement, Transaction};

use crate::connect::{self, DatabaseUrl, TlsOptions, scrub};
use crate::migrate::{self, Outcome};

/// One statement for Start, Interim-Update and Stop (`$26`: 1, 2 or 3), with the rules
/// of the SQLite store: counters take the larger value, a Stop keeps the Start's
/// endpoint, a recorded Start's time is the start, a stale session comes back with a
/// newer Interim-Update, and the address of the session's first record stays.
const UPSERT: &str = "
INSERT INTO sessions AS s (session_key, user_name, user_raw, nas, nas_ip, session_id, client_ip, device, framed_ip,
    framed_ipv6, started_at, stopped_at, updated_at, open, session_time, input_octets, output_octets,
    input_packets, output_packets, terminate_cause, details, location, start_seq, start_time, stop_seq, start_seen)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
    $23, $24, $25, $26::int = 1)
ON CONFLICT (session_key) DO UPDATE SET
    user_raw = COALESCE(s.user_raw, excluded.user_raw),
    nas_ip = COALESCE(s.nas_ip, excluded.nas_ip),
    client_ip = COALESCE(s.client_ip, excluded.client_ip),
    device = COALESCE(s.device, excluded.device),
    framed_ip = COALESCE(excluded.framed_ip, s.framed_ip),
    framed_ipv6 = COALESCE(excluded.framed_ipv6, s.framed_ipv6),
    started_at = CASE WHEN s.start_seen THEN s.started_at WHEN $26::int = 1 THEN excluded.started_at
        ELSE LEAST(s.started_at, excluded.started_at) END,
    start_seen = s.start_seen OR excluded.start_seen,
    stopped_at = COALESCE(s.stopped_at, excluded.stopped_at),
    updated_at = GREATEST(s.updated_at, excluded.updated_at),
    open = CASE WHEN s.stopped_at IS NOT NULL OR NOT excluded.open THEN false
        WHEN s.stale AND excluded.updated_at <= s.updated_at THEN false ELSE true END,
    stale = CASE WHEN NOT excluded.open OR excluded.updated_at > s.updated_at THEN false ELSE s.stale END,
    interim_gap = CASE WHEN $26::int = 2 AND excluded.updated_at > s.updated_at
        THEN GREATEST(COALESCE(s.interim_gap, 0), excluded.updated_at - s.updated_at) ELSE s.interim_gap END,
    session_time = GREATEST(s.session_time, excluded.session_time),
    input_octets = GREATEST(s.input_octets, excluded.input_octets),
    output_octets = GREATEST(s.output_octets, excluded.output_octets),
    input_packets = GREATEST(s.input_packets, excluded.input_packets),
    output_packets = GREATEST(s.output_packets, excluded.output_packets),
    terminate_cause = COALESCE(s.terminate_cause, excluded.terminate_cause),
    details = jsonb_strip_nulls(s.details || excluded.details || jsonb_build_object('nas_source',
        COALESCE(s.details -> 'nas_source', excluded.details -> 'nas_source'))),
    location = COALESCE(s.location, excluded.location),
    start_seq = COALESCE(s.start_seq, excluded.start_seq),
    start_time = COALESCE(s.start_time, excluded.start_time),
    stop_seq = COALESCE(s.stop_seq, excluded.stop_seq)
";

/// The place of a session event in the apply order: the one it got the first time.
const ORDER: &str = "
INSERT INTO feed_order (key, seq) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET seq = feed_order.seq RETURNING seq
";

/// Accounting-On/Off ends every open or stale session of the NAS (by identifier or
/// address) that started by then and was recorded through the same configured client.
const CLOSE_NAS: &str = "
UPDATE sessions SET open = false, stale = false, stopped_at = $2, updated_at = GREATEST(updated_at, $2),
    terminate_cause = 'NAS-Reboot', reset_seq = COALESCE(reset_seq, $4)
WHERE (nas = $1 OR ($3::text IS NOT NULL AND nas_ip = $3::text)) AND (open OR stale) AND started_at <= $2
    AND details ->> 'client' IS NOT DISTINCT FROM $5::text
";

/// A change of an alert, in the outbox export sinks read.
const ALERT_EVENT_INSERT: &str = "INSERT INTO alert_events (alert_id, trigger, time_ms) VALUES ($1, $2, $3)";

/// The transaction lock every writer of the outbox takes first ("alertout" in ASCII),
/// so outbox positions commit in the order they are given.
const OUTBOX_LOCK: &str = "SELECT pg_advisory_xact_lock(7019893245495309684)";

/// Distinct places of the `(loc, t)` rows `source` selects, newest first: one row per
/// country, city and ASN, with the place's coordinates, first and last time and count.
fn locations_sql(source: &str) -> String {
    format!(
        "SELECT loc ->> 'country', loc ->> 'city', (loc ->> 'asn')::bigint, MAX(loc ->> 'as_org'), MIN(t), MAX(t),
             COUNT(*), MAX((loc ->> 'latitude')::float8), MAX((loc ->> 'longitude')::float8)
         FROM ({source}) AS x
         WHERE COALESCE(loc ->> 'internal', '') <> 'true'
         GROUP BY 1, 2, 3 ORDER BY MAX(t) DESC LIMIT 10000"
    )
}

fn observed_location(r: &Row) -> ObservedLocation {
    ObservedLocation {
        country: r.get(0),
        city: r.get(1),
        asn: r.get::<_, Option<i64>>(2).and_then(|a| u32::try_from(a).ok()),
        as_org: r.get(3),
        first_ms: r.get(4),
        last_ms: r.get(5),
        count: count(r.get(6)),
        latitude: r.get(7),
        longitude: r.get(8),
    }
}

const MARK_STALE: &str = "
UPDATE sessions SET open = false, stale = true
WHERE open AND updated_at < $1 - COALESCE($2::bigint, GREATEST(86400,
    2 * COALESCE((SELECT MAX(g.interim_gap) FROM sessions g WHERE g.nas = sessions.nas AND g.open), 0)))
";

const AUTH_INSERT: &str = "INSERT INTO auth_events (time_ms, user_name, event, seq) VALUES ($1, $2, $3, $4)";

/// The columns `row_to_session` reads, in its order.
const SESSION_COLUMNS: &str = "session_key, user_name, user_raw, nas, nas_ip, session_id, client_ip, device,
    framed_ip, framed_ipv6, started_at, stopped_at, updated_at, open, session_time, input_octets, output_octets,
    input_packets, output_packets, terminate_cause, details, location, start_seq, start_time, stop_seq, reset_seq,
    stale";

const ALERT_COLUMNS: &str = "id, kind, severity, user_name, created_ms, updated_ms, event_time, last_event_time,
    status, classification, message, evidence, count, ip";

/// An open connection with the statements the write path uses, prepared once.
struct Conn {
    client: Client,
    upsert: Statement,
    order: Statement,
    close_nas: Statement,
    auth_insert: Statement,
}

/// The PostgreSQL store of one node.
///
/// Each store holds one connection, opened again on the next call after it broke (the
/// failed call returns the error; the applier retries from its applied position). Calls
/// block: use it from a thread of its own or the blocking pool, never from an async task.
pub struct PgStore {
    conn: RefCell<Option<Conn>>,
    config: postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    node: String,
    /// Whether this connection holds the node's claim (the applier's does).
    claim: bool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("node", &self.node).finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.get_mut().take() {
            discard(conn);
        }
    }
}

/// Closes a connection. The driver closes it on a runtime of its own, which may not be
/// dropped inside another runtime's context: there it is closed on a short-lived thread.
fn discard(conn: Conn) {
    if tokio::runtime::Handle::try_current().is_ok() {
        let _ = std::thread::Builder::new().name("pg-close".into()).spawn(move || drop(conn));
    } else {
        drop(conn);
    }
}

/// Runs `f` where the driver may start its own runtime: on this thread, or on a
/// short-lived one when this thread is inside a runtime's context.
fn outside_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

impl PgStore {
    /// Connects, applies pending migrations and returns the store of node `node` (whose
    /// journal position is kept under that name). Fails when the database cannot be
    /// reached or was migrated by a newer build.
    pub fn open(url: &DatabaseUrl, tls: &TlsOptions, node: &str) -> Result<Self, StorageError> {
        let store = Self::unconnected(url, tls, node)?;
        store.migrate()?;
        Ok(store)
    }

    fn unconnected(url: &DatabaseUrl, tls: &TlsOptions, node: &str) -> Result<Self, StorageError> {
        if node.trim().is_empty() {
            return Err(StorageError::Invalid("storage.node_id must name this node".into()));
        }
        Ok(Self {
            conn: RefCell::new(None),
            config: connect::config(url)?,
            tls: connect::tls(tls)?,
            node: node.to_string(),
            claim: false,
        })
    }

    /// Connects for reading without migrating: a reporting command must not upgrade a
    /// schema that running nodes of an older build still use. Fails unless the schema
    /// is exactly the one this build knows.
    pub fn open_reader(url: &DatabaseUrl, tls: &TlsOptions, node: &str) -> Result<Self, StorageError> {
        let store = Self::unconnected(url, tls, node)?;
        let (config, tls) = (&store.config, store.tls.clone());
        let version = outside_runtime(move || {
            let mut client = config.connect(tls)?;
            migrate::version(&mut client)
        })
        .map_err(|e| store.error(&e))?;
        let latest = crate::MIGRATIONS.last().map_or(0, |m| m.version);
        if version != latest {
            return Err(StorageError::Invalid(format!(
                "the database schema is at version {version} and this build reads version {latest}: \
                 start a node of this build (it migrates), or use the build the nodes run"
            )));
        }
        Ok(store)
    }

    /// Another connection to a database [`PgStore::open`] migrated already (the portal's).
    pub fn open_another(&self) -> Result<Self, StorageError> {
        let other = Self {
            conn: RefCell::new(None),
            config: self.config.clone(),
            tls: self.tls.clone(),
            node: self.node.clone(),
            claim: false,
        };
        other.with(|_| Ok(()))?;
        Ok(other)
    }

    /// Makes this connection the node's writer: it holds a session advisory lock on
    /// the node id (taken again after every reconnect), so a second node started with
    /// the same `node_id` is refused instead of sharing one journal position with it.
    pub fn claim_node(&mut self) -> Result<(), StorageError> {
        self.claim = true;
        self.with(|_| Ok(()))
    }

    /// The node whose journal position this store keeps.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn migrate(&self) -> Result<(), StorageError> {
        // On a connection of its own: the store's prepares statements on tables the
        // migrations create.
        let (config, tls) = (&self.config, self.tls.clone());
        let outcome = outside_runtime(move || {
            let mut client = config.connect(tls)?;
            migrate::migrate(&mut client)
        })
        .map_err(|e| self.error(&e))?;
        match outcome {
            Outcome::Current(applied) if !applied.is_empty() => {
                tracing::info!(versions = ?applied, "PostgreSQL schema migrated");
                Ok(())
            }
            Outcome::Current(_) => Ok(()),
            Outcome::Newer(v) => Err(StorageError::Corrupt(format!(
                "database schema version {v} is newer than this build understands ({})",
                crate::MIGRATIONS.len()
            ))),
        }
    }

    /// A storage error for a driver error, without the password.
    fn error(&self, e: &postgres::Error) -> StorageError {
        let mut text = e.to_string();
        if let Some(db) = e.as_db_error() {
            text = format!("{}: {}", db.code().code(), db.message());
        } else if let Some(source) = std::error::Error::source(e) {
            text = format!("{text}: {source}");
        }
        StorageError::Backend(scrub(&text, self.config.get_password()))
    }

    fn connect(&self) -> Result<Conn, postgres::Error> {
        let (config, tls) = (&self.config, self.tls.clone());
        outside_runtime(move || {
            let mut client = config.connect(tls)?;
            Ok(Conn {
                upsert: client.prepare(UPSERT)?,
                order: client.prepare(ORDER)?,
                close_nas: client.prepare(CLOSE_NAS)?,
                auth_insert: client.prepare(AUTH_INSERT)?,
                client,
            })
        })
    }

    /// Runs `f` on the connection, connecting first when there is none; a connection
    /// that broke is dropped so that the next call connects again.
    fn with_conn<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, postgres::Error>) -> Result<T, StorageError> {
        let mut slot = self.conn.borrow_mut();
        if slot.as_ref().is_some_and(|c| c.client.is_closed()) {
            if let Some(old) = slot.take() {
                discard(old);
            }
        }
        if slot.is_none() {
            let mut conn = self.connect().map_err(|e| self.error(&e))?;
            if self.claim {
                let key = format!("portcullis-node:{}", self.node);
                let held = outside_runtime(|| {
                    conn.client
                        .query_one("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", &[&key])
                        .map(|r| r.get::<_, bool>(0))
                })
                .map_err(|e| self.error(&e))?;
                if !held {
                    discard(conn);
                    return Err(StorageError::Invalid(format!(
                        "another node is connected with storage.node_id {:?}; give every node its own",
                        self.node
                    )));
                }
            }
            *slot = Some(conn);
        }
        let Some(conn) = slot.as_mut() else { unreachable!("connected above") };
        let result = f(conn);
        if result.is_err() && conn.client.is_closed() {
            if let Some(old) = slot.take() {
                discard(old);
            }
        }
        result.map_err(|e| self.error(&e))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>) -> Result<T, StorageError> {
        self.with_conn(|c| f(&mut c.client))
    }

    fn query(&self, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StorageError> {
        self.with(|c| c.query(sql, args))
    }

    /// Runs `f` in one transaction with the write statements and the next place in the
    /// apply order (locked, so nodes applying at once take places one after the other).
    fn write<T>(&self, f: impl FnOnce(&mut Writer<'_, '_>) -> Result<T, postgres::Error>) -> Result<T, StorageError> {
        self.with_conn(|conn| {
            let mut tx = conn.client.transaction()?;
            let next: i64 = tx.query_one("SELECT value FROM meta WHERE key = 'seq' FOR UPDATE", &[])?.get(0);
            let mut w = Writer {
                tx: &mut tx,
                upsert: &conn.upsert,
                order: &conn.order,
                close_nas: &conn.close_nas,
                auth_insert: &conn.auth_insert,
                next,
            };
            let out = f(&mut w)?;
            let next = w.next;
            tx.execute("UPDATE meta SET value = $1 WHERE key = 'seq'", &[&next])?;
            tx.commit()?;
            Ok(out)
        })
    }

    fn alert_comments(&self, alert: &mut Alert) -> Result<(), StorageError> {
        let rows =
            self.query("SELECT time_ms, text FROM alert_comments WHERE alert_id = $1 ORDER BY id", &[&alert.id])?;
        alert.comments = rows.iter().map(|r| AlertComment { time: ms_to_rfc3339(r.get(0)), text: r.get(1) }).collect();
        Ok(())
    }
}

/// The statements of one write transaction and the next place in the apply order.
struct Writer<'a, 't> {
    tx: &'a mut Transaction<'t>,
    upsert: &'a Statement,
    order: &'a Statement,
    close_nas: &'a Statement,
    auth_insert: &'a Statement,
    next: i64,
}

impl Writer<'_, '_> {
    fn next(&mut self) -> i64 {
        self.next += 1;
        self.next - 1
    }

    /// The place of a session event: the one it got when first applied, else the next.
    fn place(&mut self, key: &str) -> Result<i64, postgres::Error> {
        let seq = self.next;
        let got: i64 = self.tx.query_one(self.order, &[&key, &seq])?.get(0);
        if got == seq {
            self.next += 1;
        }
        Ok(got)
    }

    fn auth(&mut self, e: &AuthEvent) -> Result<(), postgres::Error> {
        let seq = self.next();
        self.tx.execute(self.auth_insert, &[&e.time_ms, &e.user, &Json(e), &seq])?;
        Ok(())
    }

    fn apply(&mut self, r: &AccountingRecord) -> Result<(), postgres::Error> {
        let status = r.status_type();
        let nas_ip = r.nas_ip.map(|i| i.to_string());
        if status.is_nas_restart() {
            let seq = self.place(&format!("r:{}:{}", r.nas, r.event_time))?;
            let client = r.details.get("client").map(String::as_str);
            self.tx.execute(self.close_nas, &[&r.nas, &r.event_time, &nas_ip, &seq, &client])?;
            return Ok(());
        }
        let Some(key) = r.session_key.as_deref().filter(|_| status.is_session_event()) else {
            return Ok(());
        };
        let stop = status == StatusType::Stop;
        let start = status == StatusType::Start;
        let start_seq = if start { Some(self.place(&format!("s:{key}"))?) } else { None };
        let stop_seq = if stop { Some(self.place(&format!("t:{key}"))?) } else { None };
        let kind: i32 = match status {
            StatusType::Start => 1,
            StatusType::InterimUpdate => 2,
            _ => 3,
        };
        let location = r.location.as_ref().map(Json);
        self.tx.execute(
            self.upsert,
            &[
                &key,
                &r.user,
                &r.user_raw,
                &r.nas,
                &nas_ip,
                &r.session_id,
                &r.client_ip.map(|i| i.to_string()),
                &r.device,
                &r.framed_ip.map(|i| i.to_string()),
                &r.framed_ipv6,
                &r.started_at(),
                &stop.then_some(r.event_time),
                &r.event_time,
                &!stop,
                &r.session_time.map(i64::from),
                &r.input_octets.map(clamp),
                &r.output_octets.map(clamp),
                &r.input_packets.map(i64::from),
                &r.output_packets.map(i64::from),
                &if stop { r.terminate_cause.clone() } else { None },
                &Json(&r.details),
                &location,
                &start_seq,
                &start.then_some(r.event_time),
                &stop_seq,
                &kind,
            ],
        )?;
        Ok(())
    }
}

/// A query grown one `AND` condition at a time, with numbered parameters.
struct Filter {
    sql: String,
    args: Vec<Box<dyn ToSql + Sync>>,
}

impl Filter {
    fn new(select: String) -> Self {
        Self { sql: select + " WHERE true", args: Vec::new() }
    }

    /// Adds a parameter; returns its number.
    fn bind(&mut self, value: impl ToSql + Sync + 'static) -> usize {
        self.args.push(Box::new(value));
        self.args.len()
    }

    /// ` AND {column_op} $N` with `value` as parameter N.
    fn and(&mut self, column_op: &str, value: impl ToSql + Sync + 'static) {
        let n = self.bind(value);
        self.sql.push_str(&format!(" AND {column_op} ${n}"));
    }

    fn limit(&mut self, limit: Option<usize>) {
        if let Some(limit) = limit {
            self.sql.push_str(&format!(" LIMIT {limit}"));
        }
    }

    fn run(&self, store: &PgStore) -> Result<Vec<Row>, StorageError> {
        let args: Vec<&(dyn ToSql + Sync)> = self.args.iter().map(|a| a.as_ref()).collect();
        store.query(&self.sql, &args)
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn ms_to_rfc3339(ms: i64) -> String {
    portcullis_detect::rfc3339(ms.div_euclid(1000))
}

fn corrupt(e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(e.to_string())
}

fn row_to_session(row: &Row) -> Session {
    let details: Option<serde_json::Value> = row.get(20);
    let location: Option<serde_json::Value> = row.get(21);
    Session {
        session_key: row.get(0),
        user: row.get(1),
        user_raw: row.get(2),
        nas: row.get(3),
        nas_ip: row.get(4),
        session_id: row.get(5),
        client_ip: row.get(6),
        device: row.get(7),
        framed_ip: row.get(8),
        framed_ipv6: row.get(9),
        started_at: row.get(10),
        stopped_at: row.get(11),
        updated_at: row.get(12),
        open: row.get(13),
        session_time: row.get(14),
        input_octets: row.get(15),
        output_octets: row.get(16),
        input_packets: row.get(17),
        output_packets: row.get(18),
        terminate_cause: row.get(19),
        details: details.unwrap_or(serde_json::Value::Null),
        location: location.and_then(|l| serde_json::from_value(l).ok()),
        order: SessionOrder {
            start: match (row.get::<_, Option<i64>>(22), row.get::<_, Option<i64>>(23)) {
                (Some(seq), Some(time)) => Some((seq, time)),
                _ => None,
            },
            stop: row.get(24),
            reset: row.get(25),
        },
        stale: row.get(26),
    }
}

fn row_to_alert(row: &Row) -> Alert {
    let kind: String = row.get(1);
    let evidence: serde_json::Value = row.get(11);
    Alert {
        id: row.get(0),
        mitre: portcullis_detect::AlertKind::from_name(&kind).map(|k| k.mitre().to_owned()).unwrap_or_default(),
        kind,
        severity: row.get(2),
        user: row.get(3),
        created_at: ms_to_rfc3339(row.get(4)),
        updated_at: ms_to_rfc3339(row.get(5)),
        event_time: portcullis_detect::rfc3339(row.get(6)),
        last_event_time: portcullis_detect::rfc3339(row.get(7)),
        status: row.get(8),
        classification: row.get(9),
        message: row.get(10),
        evidence,
        count: count(row.get(12)),
        ip: row.get(13),
        comments: Vec::new(),
    }
}

fn auth_event(value: serde_json::Value) -> Result<AuthEvent, StorageError> {
    serde_json::from_value(value).map_err(corrupt)
}

impl Store for PgStore {
    fn apply(&mut self, records: &[AccountingRecord], through: Position) -> Result<(), StorageError> {
        let node = self.node.clone();
        self.write(|w| {
            for r in records {
                w.apply(r)?;
            }
            w.tx.execute(
                "INSERT INTO applied (node, segment, \"offset\") VALUES ($1, $2, $3)
                 ON CONFLICT (node) DO UPDATE SET segment = excluded.segment, \"offset\" = excluded.\"offset\"",
                &[&node, &clamp(through.segment), &clamp(through.offset)],
            )?;
            Ok(())
        })
    }

    fn applied_position(&self) -> Result<Position, StorageError> {
        let rows = self.query("SELECT segment, \"offset\" FROM applied WHERE node = $1", &[&self.node])?;
        Ok(rows
            .first()
            .map_or_else(Position::default, |r| Position { segment: count(r.get(0)), offset: count(r.get(1)) }))
    }

    fn sessions(&self, q: &SessionQuery) -> Result<Vec<Session>, StorageError> {
        let mut f = Filter::new(format!("SELECT {SESSION_COLUMNS} FROM sessions"));
        match &q.user {
            Some(u) if q.canonical_only => f.and("user_name =", portcullis_accounting::canonical_user(u)),
            Some(u) => {
                let canonical = f.bind(portcullis_accounting::canonical_user(u));
                let raw = f.bind(u.clone());
                f.sql.push_str(&format!(" AND (user_name = ${canonical} OR user_raw = ${raw})"));
            }
            None => {}
        }
        if q.open_only {
            f.sql.push_str(" AND open");
        }
        if let Some(since) = q.since {
            let n = f.bind(since);
            f.sql.push_str(&format!(" AND (stopped_at IS NULL OR stopped_at >= ${n})"));
        }
        if let Some(before) = q.started_before {
            f.and("started_at <", before);
        }
        if let Some(from) = q.started_from {
            f.and("started_at >=", from);
        }
        if let Some((time, key)) = &q.after {
            let (t, k) = (f.bind(*time), f.bind(key.clone()));
            f.sql.push_str(&format!(
                " AND (started_at, id) < (${t}, (SELECT id FROM sessions WHERE session_key = ${k}))"
            ));
        }
        if q.paged || q.after.is_some() {
            f.sql.push_str(" ORDER BY started_at DESC, id DESC");
        } else {
            f.sql.push_str(" ORDER BY started_at DESC, session_key");
        }
        f.limit(q.limit);
        Ok(f.run(self)?.iter().map(row_to_session).collect())
    }

    fn mark_stale(&mut self, now: i64, stale_after: Option<i64>) -> Result<usize, StorageError> {
        let n = self.with(|c| c.execute(MARK_STALE, &[&now, &stale_after]))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn reset_sessions(&mut self) -> Result<(), StorageError> {
        self.write(|w| {
            w.tx.batch_execute("DELETE FROM sessions; DELETE FROM applied;")?;
            let rows = w.tx.query("SELECT record FROM replayed ORDER BY seq", &[])?;
            for row in rows {
                let value: serde_json::Value = row.get(0);
                // A record this build cannot read is left out rather than stopping the
                // rebuild of every other one.
                match serde_json::from_value::<AccountingRecord>(value) {
                    Ok(r) => w.apply(&r)?,
                    Err(e) => tracing::warn!(error = %e, "a replayed record cannot be read; left out"),
                }
            }
            Ok(())
        })
    }

    fn apply_replayed(&mut self, items: &[Result<AccountingRecord, AuthEvent>]) -> Result<(), StorageError> {
        self.write(|w| {
            for item in items {
                match item {
                    Ok(r) => {
                        let seq = w.next();
                        w.tx.execute("INSERT INTO replayed (seq, record) VALUES ($1, $2)", &[&seq, &Json(r)])?;
                        w.apply(r)?;
                    }
                    Err(e) => w.auth(e)?,
                }
            }
            Ok(())
        })
    }

    fn history(&self, from: i64, since: i64, limit: usize) -> Result<Vec<(i64, Fed)>, StorageError> {
        let limit = limit.max(1);
        let n = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut lists: Vec<Vec<(i64, Fed)>> = Vec::with_capacity(4);
        let sessions = |condition: &str, seq: &str| -> Result<Vec<Session>, StorageError> {
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE {seq} >= $1 AND ({condition}) ORDER BY {seq} LIMIT $3"
            );
            Ok(self.query(&sql, &[&from, &since, &n])?.iter().map(row_to_session).collect())
        };
        let starts = sessions("(stopped_at IS NULL AND started_at >= $2) OR stopped_at >= $2", "start_seq")?;
        lists.push(starts.into_iter().filter_map(|s| Some((s.order.start?.0, Fed::Start(s)))).collect());
        let stops = sessions("stopped_at >= $2", "stop_seq")?;
        lists.push(stops.into_iter().filter_map(|s| Some((s.order.stop?, Fed::Stop(s)))).collect());
        let resets = self.query(
            "SELECT reset_seq, MIN(nas), MIN(nas_ip), MIN(stopped_at), MIN(details ->> 'client') FROM sessions
             WHERE reset_seq >= $1 AND stopped_at >= $2 GROUP BY reset_seq ORDER BY reset_seq LIMIT $3",
            &[&from, &since, &n],
        )?;
        lists.push(
            resets
                .iter()
                .map(|r| (r.get(0), Fed::Reset { nas: r.get(1), nas_ip: r.get(2), client: r.get(4), time: r.get(3) }))
                .collect(),
        );
        let auth = self.query(
            "SELECT seq, event FROM auth_events WHERE seq >= $1 AND time_ms >= $2 ORDER BY seq LIMIT $3",
            &[&from, &since.saturating_mul(1000), &n],
        )?;
        lists.push(
            auth.into_iter()
                .map(|r| Ok((r.get::<_, i64>(0), Fed::Auth(auth_event(r.get(1))?))))
                .collect::<Result<_, StorageError>>()?,
        );
        Ok(portcullis_storage::merge_history(lists, limit))
    }

    fn save_counters(&mut self, counters: &[Counter]) -> Result<(), StorageError> {
        let node = self.node.clone();
        self.with(|c| {
            let mut tx = c.transaction()?;
            let stmt = tx.prepare(
                "INSERT INTO counters (node, client, reason, count) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (node, client, reason) DO UPDATE SET count = excluded.count",
            )?;
            for counter in counters {
                tx.execute(&stmt, &[&node, &counter.client, &counter.reason, &clamp(counter.count)])?;
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ($1, extract(epoch FROM now())::bigint) ON CONFLICT DO NOTHING",
                &[&format!("counters_since:{node}")],
            )?;
            tx.commit()
        })
    }

    fn counters(&self) -> Result<Vec<Counter>, StorageError> {
        let rows = self.query(
            "SELECT client, reason, count FROM counters WHERE node = $1 ORDER BY client, reason",
            &[&self.node],
        )?;
        Ok(rows.iter().map(|r| Counter { client: r.get(0), reason: r.get(1), count: count(r.get(2)) }).collect())
    }

    fn counters_since(&self) -> Result<Option<i64>, StorageError> {
        let key = format!("counters_since:{}", self.node);
        Ok(self.query("SELECT value FROM meta WHERE key = $1", &[&key])?.first().map(|r| r.get(0)))
    }

    fn record_auth_events(&mut self, events: &[AuthEvent]) -> Result<(), StorageError> {
        self.write(|w| events.iter().try_for_each(|e| w.auth(e)))
    }

    fn auth_events(&self, q: &AuthQuery) -> Result<Vec<AuthEvent>, StorageError> {
        Ok(self.auth_page(q)?.into_iter().map(|(_, e)| e).collect())
    }

    fn session(&self, key: &str) -> Result<Option<Session>, StorageError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE session_key = $1");
        Ok(self.query(&sql, &[&key])?.first().map(row_to_session))
    }

    fn has_auth_event(&self, e: &AuthEvent) -> Result<bool, StorageError> {
        let rows = self.query(
            "SELECT 1 FROM auth_events WHERE user_name = $1 AND time_ms = $2 AND event = $3 LIMIT 1",
            &[&e.user, &e.time_ms, &Json(e)],
        )?;
        Ok(!rows.is_empty())
    }

    fn record_alerts(
        &mut self,
        drafts: &[portcullis_detect::AlertDraft],
        now_ms: i64,
    ) -> Result<Vec<AlertChange>, StorageError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            if !drafts.is_empty() {
                tx.execute(OUTBOX_LOCK, &[])?;
            }
            let mut out = Vec::with_capacity(drafts.len());
            for d in drafts {
                let kind = d.kind.name();
                // Nodes recording the same cause at once: the second waits for the
                // first's row and then finds it known.
                let claimed = tx.query(
                    "INSERT INTO alert_causes (cause, kind, alert_id) VALUES ($1, $2, 0)
                     ON CONFLICT DO NOTHING RETURNING 1",
                    &[&d.cause, &kind],
                )?;
                if claimed.is_empty() {
                    out.push(AlertChange::Known);
                    continue;
                }
                let open = tx.query(
                    "SELECT id FROM alerts WHERE fold_key = $1 AND status = 'open' ORDER BY id DESC LIMIT 1 FOR UPDATE",
                    &[&d.fold_key],
                )?;
                let id: i64 = if let Some(row) = open.first() {
                    let id: i64 = row.get(0);
                    tx.execute(
                        "UPDATE alerts SET count = count + 1, updated_ms = $2,
                             last_event_time = GREATEST(last_event_time, $3) WHERE id = $1",
                        &[&id, &now_ms, &d.event_time],
                    )?;
                    tx.execute(ALERT_EVENT_INSERT, &[&id, &"update", &now_ms])?;
                    out.push(AlertChange::Folded(id));
                    id
                } else {
                    let id: i64 = tx
                        .query_one(
                            "INSERT INTO alerts (kind, severity, user_name, created_ms, updated_ms, event_time,
                                 last_event_time, status, classification, message, evidence, fold_key, count, ip)
                             VALUES ($1, $2, $3, $4, $4, $5, $5, 'open', NULL, $6, $7, $8, 1, $9) RETURNING id",
                            &[
                                &kind,
                                &d.severity.name(),
                                &d.user,
                                &now_ms,
                                &d.event_time,
                                &d.message,
                                &Json(&d.evidence),
                                &d.fold_key,
                                &d.ip.map(|i| i.to_string()),
                            ],
                        )?
                        .get(0);
                    tx.execute(ALERT_EVENT_INSERT, &[&id, &"new", &now_ms])?;
                    out.push(AlertChange::Created(id));
                    id
                };
                tx.execute(
                    "UPDATE alert_causes SET alert_id = $3 WHERE cause = $1 AND kind = $2",
                    &[&d.cause, &kind, &id],
                )?;
            }
            tx.commit()?;
            Ok(out)
        })
    }

    fn alerts(&self, q: &AlertQuery) -> Result<Vec<Alert>, StorageError> {
        let mut f = Filter::new(format!("SELECT {ALERT_COLUMNS} FROM alerts"));
        for (column_op, value) in
            [("status =", &q.status), ("user_name =", &q.user), ("kind =", &q.kind), ("severity =", &q.severity)]
        {
            if let Some(v) = value {
                f.and(column_op, v.clone());
            }
        }
        if let Some(id) = q.before_id {
            f.and("id <", id);
        }
        f.sql.push_str(" ORDER BY id DESC");
        f.limit(q.limit);
        let mut alerts: Vec<Alert> = f.run(self)?.iter().map(row_to_alert).collect();
        for a in &mut alerts {
            self.alert_comments(a)?;
        }
        Ok(alerts)
    }

    fn update_alert(&mut self, id: i64, u: &AlertUpdate, now_ms: i64) -> Result<Option<Alert>, StorageError> {
        if let Some(s) = u.status.as_deref().filter(|s| !portcullis_storage::ALERT_STATUSES.contains(s)) {
            return Err(StorageError::Invalid(format!("unknown status {s:?} (open, resolved, closed)")));
        }
        if let Some(c) = u.classification.as_deref().filter(|c| !portcullis_storage::ALERT_CLASSIFICATIONS.contains(c))
        {
            return Err(StorageError::Invalid(format!(
                "unknown classification {c:?} (true-positive, benign-true-positive, false-positive)"
            )));
        }
        let exists = self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute(OUTBOX_LOCK, &[])?;
            if tx.query("SELECT 1 FROM alerts WHERE id = $1 FOR UPDATE", &[&id])?.is_empty() {
                return Ok(false);
            }
            if let Some(s) = &u.status {
                tx.execute("UPDATE alerts SET status = $2, updated_ms = $3 WHERE id = $1", &[&id, s, &now_ms])?;
            }
            if let Some(class) = &u.classification {
                tx.execute(
                    "UPDATE alerts SET classification = $2, updated_ms = $3 WHERE id = $1",
                    &[&id, class, &now_ms],
                )?;
            }
            if let Some(text) = &u.comment {
                tx.execute(
                    "INSERT INTO alert_comments (alert_id, time_ms, text) VALUES ($1, $2, $3)",
                    &[&id, &now_ms, text],
                )?;
                tx.execute("UPDATE alerts SET updated_ms = $2 WHERE id = $1", &[&id, &now_ms])?;
            }
            if u.status.is_some() || u.classification.is_some() || u.comment.is_some() {
                tx.execute(ALERT_EVENT_INSERT, &[&id, &"update", &now_ms])?;
            }
            tx.commit()?;
            Ok(true)
        })?;
        if exists { self.alert(id) } else { Ok(None) }
    }

    fn prune(&mut self, cutoff: &Cutoff, limit: usize) -> Result<Pruned, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let mut tx = c.transaction()?;
            let mut pruned = Pruned::default();
            if let Some(before) = cutoff.auth_events_before_ms {
                let n = tx.execute(
                    "DELETE FROM auth_events WHERE id IN
                     (SELECT id FROM auth_events WHERE time_ms < $1 ORDER BY time_ms LIMIT $2)",
                    &[&before, &limit],
                )?;
                pruned.auth_events = usize::try_from(n).unwrap_or(usize::MAX);
            }
            if let Some(before) = cutoff.sessions_before {
                let n = tx.execute(
                    "DELETE FROM sessions WHERE id IN
                     (SELECT id FROM sessions WHERE started_at < $1 AND NOT open
                          AND COALESCE(stopped_at, updated_at) < $1 ORDER BY started_at LIMIT $2)",
                    &[&before, &limit],
                )?;
                pruned.sessions = usize::try_from(n).unwrap_or(usize::MAX);
            }
            tx.commit()?;
            Ok(pruned)
        })
    }

    fn alert_events(&self, after: i64, limit: usize) -> Result<Vec<AlertEvent>, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(
            "SELECT seq, alert_id, trigger, time_ms FROM alert_events WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&after, &limit],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let (seq, alert_id): (i64, i64) = (r.get(0), r.get(1));
            // Alerts are never deleted, so every change names one.
            let alert = self.alert(alert_id)?.ok_or_else(|| {
                StorageError::Corrupt(format!("alert change {seq} names alert {alert_id}, which is missing"))
            })?;
            out.push(AlertEvent { seq, trigger: r.get(2), time_ms: r.get(3), alert });
        }
        Ok(out)
    }

    fn last_alert_event(&self) -> Result<i64, StorageError> {
        Ok(self.query("SELECT COALESCE(MAX(seq), 0)::bigint FROM alert_events", &[])?.first().map_or(0, |r| r.get(0)))
    }

    fn open_alerts_by_kind(&self) -> Result<Vec<(String, u64)>, StorageError> {
        let rows =
            self.query("SELECT kind, COUNT(*) FROM alerts WHERE status = 'open' GROUP BY kind ORDER BY kind", &[])?;
        Ok(rows.iter().map(|r| (r.get(0), count(r.get(1)))).collect())
    }

    fn alert(&self, id: i64) -> Result<Option<Alert>, StorageError> {
        let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1");
        let Some(mut alert) = self.query(&sql, &[&id])?.first().map(row_to_alert) else {
            return Ok(None);
        };
        self.alert_comments(&mut alert)?;
        Ok(Some(alert))
    }

    fn auth_page(&self, q: &AuthQuery) -> Result<Vec<(i64, AuthEvent)>, StorageError> {
        let mut f = Filter::new("SELECT id, event FROM auth_events".into());
        if let Some(u) = &q.user {
            f.and("user_name =", u.to_lowercase());
        }
        if let Some(since) = q.since_ms {
            f.and("time_ms >=", since);
        }
        if let Some(until) = q.until_ms {
            f.and("time_ms <", until);
        }
        for (path, value) in [
            ("event ->> 'decision'", &q.decision),
            ("event ->> 'nas'", &q.nas),
            ("event ->> 'method'", &q.method),
            ("event #>> '{location,country}'", &q.country),
            ("event #>> '{location,city}'", &q.city),
        ] {
            if let Some(v) = value {
                f.and(&format!("{path} ="), v.clone());
            }
        }
        if let Some((time, id)) = q.before {
            let (t, i) = (f.bind(time), f.bind(id));
            f.sql.push_str(&format!(" AND (time_ms, id) < (${t}, ${i})"));
        }
        f.sql.push_str(" ORDER BY time_ms DESC, id DESC");
        f.limit(q.limit);
        f.run(self)?.into_iter().map(|r| Ok((r.get(0), auth_event(r.get(1))?))).collect()
    }

    fn auth_facets(&self, user: &str, since_ms: i64) -> Result<AuthFacets, StorageError> {
        let rows = self.query(
            "SELECT DISTINCT event ->> 'decision', event #>> '{location,country}', event ->> 'nas', event ->> 'method'
             FROM auth_events WHERE user_name = $1 AND time_ms >= $2",
            &[&user.to_lowercase(), &since_ms],
        )?;
        let mut sets: [std::collections::BTreeSet<String>; 4] = Default::default();
        for row in &rows {
            for (i, set) in sets.iter_mut().enumerate() {
                if let Some(v) = row.get::<_, Option<String>>(i) {
                    set.insert(v);
                }
            }
        }
        let [decisions, countries, nas, methods] = sets.map(|s| s.into_iter().collect());
        Ok(AuthFacets { decisions, countries, nas, methods })
    }

    fn user_locations(&self, user: &str, since_ms: i64) -> Result<Vec<ObservedLocation>, StorageError> {
        let user = portcullis_accounting::canonical_user(user);
        let rows = self.query(
            &locations_sql(
                "SELECT location AS loc, started_at * 1000 AS t FROM sessions
                   WHERE user_name = $1 AND started_at >= $2::bigint / 1000 AND location IS NOT NULL
                 UNION ALL
                 SELECT event -> 'location', time_ms FROM auth_events
                   WHERE user_name = $1 AND time_ms >= $2::bigint AND jsonb_typeof(event -> 'location') = 'object'",
            ),
            &[&user, &since_ms],
        )?;
        Ok(rows.iter().map(observed_location).collect())
    }

    fn recent_locations(&self, since_ms: i64, limit: usize) -> Result<Vec<ObservedLocation>, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(
            &locations_sql(
                "SELECT * FROM (SELECT location AS loc, started_at * 1000 AS t FROM sessions
                     WHERE started_at >= $1::bigint / 1000 ORDER BY started_at DESC LIMIT $2) AS s
                   WHERE loc IS NOT NULL
                 UNION ALL
                 SELECT * FROM (SELECT event -> 'location' AS loc, time_ms AS t FROM auth_events
                     WHERE time_ms >= $1::bigint ORDER BY time_ms DESC LIMIT $2) AS a
                   WHERE jsonb_typeof(loc) = 'object'",
            ),
            &[&since_ms, &limit],
        )?;
        Ok(rows.iter().map(observed_location).collect())
    }

    fn users(&self, q: &UserQuery) -> Result<Vec<UserSummary>, StorageError> {
        let limit = i64::try_from(q.limit.unwrap_or(usize::MAX)).unwrap_or(i64::MAX);
        let rows = self.query(
            // The names come from a merge of two index scans that stops at the limit;
            // only the names on the page are looked at further.
            "SELECT u,
                 GREATEST(COALESCE((SELECT MAX(started_at) FROM sessions s WHERE s.user_name = u) * 1000, 0),
                     COALESCE((SELECT MAX(time_ms) FROM auth_events e WHERE e.user_name = u), 0)),
                 (SELECT COUNT(*) FROM alerts a WHERE a.user_name = u AND a.status = 'open')
             FROM (SELECT user_name AS u FROM sessions WHERE user_name IS NOT NULL
                       AND ($2::text IS NULL OR user_name > $2::text)
                       AND ($1::text IS NULL OR strpos(lower(user_name), lower($1::text)) > 0)
                   UNION
                   SELECT user_name FROM auth_events WHERE ($2::text IS NULL OR user_name > $2::text)
                       AND ($1::text IS NULL OR strpos(lower(user_name), lower($1::text)) > 0)
                   ORDER BY 1 LIMIT $3) AS names
             ORDER BY u",
            &[&q.search, &q.after, &limit],
        )?;
        Ok(rows
            .iter()
            .map(|r| UserSummary { name: r.get(0), last_seen_ms: r.get(1), open_alerts: count(r.get(2)) })
            .collect())
    }

    fn summary(&self, since_ms: i64) -> Result<Summary, StorageError> {
        let open: i64 = self.query("SELECT COUNT(*) FROM sessions WHERE open", &[])?.first().map_or(0, |r| r.get(0));
        let grouped = |rows: Vec<Row>| rows.iter().map(|r| (r.get::<_, String>(0), count(r.get(1)))).collect();
        Ok(Summary {
            open_sessions: count(open),
            open_alerts: grouped(self.query(
                "SELECT severity, COUNT(*) FROM alerts WHERE status = 'open' GROUP BY severity ORDER BY severity",
                &[],
            )?),
            auth_decisions: grouped(self.query(
                "SELECT event ->> 'decision' AS d, COUNT(*) FROM auth_events
                 WHERE time_ms >= $1 AND event ->> 'decision' IS NOT NULL GROUP BY 1 ORDER BY (event ->> 'decision') COLLATE \"C\"",
                &[&since_ms],
            )?),
        })
    }
}
