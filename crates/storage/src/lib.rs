//! Durable storage for Portcullis: the [`Journal`] (append-only log of accepted packets,
//! the commit point of ingestion) with its group committer, and the [`Store`] trait for
//! everything derived from it (sessions, counters), with the embedded SQLite backend
//! and the conformance battery every backend must pass.
//!
//! RADIUS clients added at runtime live behind [`ClientStore`] (`clients.db`), and
//! [`ClientAdmin`] is what the CLI and the portal call to change them.
//!
//! Callers never see SQL or file formats: they append raw packets, apply normalised
//! records, and query sessions.

mod backup;
mod clients;
mod committer;
pub mod conformance;
mod files;
mod journal;
mod mfa;
mod portal;
mod sqlite;
mod users;

use portcullis_accounting::AccountingRecord;

pub use backup::snapshot_database;
pub use clients::{
    Change, ClientAdmin, ClientListing, ClientSecret, ClientSettings, ClientStore, MAX_NAME_BYTES, MAX_SECRET_BYTES,
    RECOMMENDED_SECRET_CHARS, RuntimeClients, SqliteClients, StoredClient, check_name, file_conflict, overlaps,
};
pub use committer::{Completion, GroupCommitter, QueueFull, Submitter};
pub use files::FileMode;
pub use journal::{
    Journal, JournalReader, JournalSync, Position, crc32, decode_segment, encode_segment, prune, segments,
};
pub use mfa::{Challenge, SqliteMfa, TotpFactor};
pub use portal::{Account, AuditEntry, LoginSession, PortalDb, PortalTotp, Role, Token};
pub use portcullis_detect::AlertDraft;
pub use sqlite::{SqliteStore, SyncMode};
pub use users::{SqliteUsers, User, UserStore};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A failure of another database backend, as text without credentials.
    #[error("database error: {0}")]
    Backend(String),
    #[error("cannot use data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("no database in {path} yet (has the server run?)")]
    NoDatabase { path: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Invalid(String),
}

/// A received datagram exactly as it arrived, kept so sessions can be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPacket {
    /// Arrival time, Unix milliseconds.
    pub received_ms: i64,
    /// Configured name of the RADIUS client.
    pub client: String,
    /// The client's configured vendor.
    pub vendor: String,
    /// Source address and port.
    pub source: String,
    pub packet: Vec<u8>,
}

/// A VPN session as stored. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Session {
    pub session_key: String,
    pub user: Option<String>,
    pub user_raw: Option<String>,
    pub nas: String,
    pub nas_ip: Option<String>,
    pub session_id: Option<String>,
    pub client_ip: Option<String>,
    pub device: Option<String>,
    pub framed_ip: Option<String>,
    pub framed_ipv6: Option<String>,
    pub started_at: i64,
    pub stopped_at: Option<i64>,
    pub updated_at: i64,
    /// Neither stopped nor stale.
    pub open: bool,
    /// No Interim-Update or Stop for the stale threshold: not counted as open, not
    /// closed either (a later Stop closes it, a later Interim-Update reopens it).
    pub stale: bool,
    pub session_time: Option<i64>,
    pub input_octets: Option<i64>,
    pub output_octets: Option<i64>,
    pub input_packets: Option<i64>,
    pub output_packets: Option<i64>,
    pub terminate_cause: Option<String>,
    pub details: serde_json::Value,
    /// Where `client_ip` was when the session started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<portcullis_geo::Location>,
    /// Where the Start, the Stop and the NAS reset that closed the session came in
    /// the order records were applied (none: no such record was seen).
    #[serde(skip)]
    pub order: SessionOrder,
}

/// When a session's events were applied, in the one order the store applies records
/// and authentication events in (live arrival, or a replayed file's own order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionOrder {
    /// The Start's place in the order and its event time.
    pub start: Option<(i64, i64)>,
    pub stop: Option<i64>,
    pub reset: Option<i64>,
}

/// One event of stored history as the detection engine was fed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Fed {
    /// A session's Start (at `order.start`).
    Start(Session),
    /// A session's Stop (at `stopped_at`).
    Stop(Session),
    /// An Accounting-On/Off of `nas` at `time`.
    Reset {
        nas: String,
        /// The NAS-IP-Address recorded with the sessions it closed.
        nas_ip: Option<String>,
        /// The configured client the reset came through (none for history files):
        /// the sessions it ended were recorded through the same one.
        client: Option<String>,
        time: i64,
    },
    Auth(AuthEvent),
}

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    /// Canonical or raw user name.
    pub user: Option<String>,
    /// Match `user` against canonical names only (an index lookup; the raw name is
    /// not indexed).
    pub canonical_only: bool,
    pub open_only: bool,
    /// Sessions still open at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Sessions started before this time (Unix seconds).
    pub started_before: Option<i64>,
    /// Sessions started at or after this time (Unix seconds).
    pub started_from: Option<i64>,
    /// The order keyset pages use: newest start first, sessions that share a start
    /// newest stored first (otherwise: by session key).
    pub paged: bool,
    /// Keyset paging (implies `paged`): only sessions after this one, given by its start
    /// time and session key.
    pub after: Option<(i64, String)>,
    pub limit: Option<usize>,
}

/// A named ingestion counter of one RADIUS client.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Counter {
    pub client: String,
    pub reason: String,
    pub count: u64,
}

/// One authentication decision, NPS style (event 6272 granted, 6273 denied).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuthEvent {
    /// Unix milliseconds.
    pub time_ms: i64,
    pub user: String,
    pub user_raw: String,
    pub nas: String,
    pub client: String,
    pub calling_station_id: Option<String>,
    pub method: String,
    /// `accept`, `reject` or `challenge`.
    pub decision: String,
    pub reason_code: u32,
    pub event_id: u32,
    pub policy: Option<String>,
    pub message: String,
    /// The connection-request policy that chose the user store, when any are configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_request_policy: Option<String>,
    /// Second-factor outcome: `challenge`, `totp`, `recovery_code`, `wrong_code`,
    /// `replayed`, `locked_out`, `expired`, `not_enrolled`, `admitted_without_mfa`, `exempt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<String>,
    /// Where the calling station's address is, when it is an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<portcullis_geo::Location>,
    /// How the push that settled this login was answered: the proving factor, the
    /// address and the user agent of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<PushDecision>,
}

/// The answer to a push, as the approval page saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PushDecision {
    /// What proved an approval: `totp`; `none` for a denial or a report (they need no
    /// proof).
    pub factor: String,
    /// The TCP peer that answered (a proxy in front of the listener shows as itself).
    pub address: String,
    /// The User-Agent header of the answer, at most 200 characters.
    pub user_agent: String,
}

/// What a push was sent for, shown on its approval page.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PushContext {
    /// Unix seconds.
    pub time: i64,
    pub nas: String,
    pub method: String,
    /// The Calling-Station-Id as the NAS sent it.
    pub source: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
}

/// An alert as stored: drafts from the detection engine, folded by key while open.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Alert {
    pub id: i64,
    pub kind: String,
    pub severity: String,
    /// The user, or the source address of a password spray.
    pub user: String,
    /// When the alert was raised (RFC 3339).
    pub created_at: String,
    pub updated_at: String,
    /// Event time of the first causing event (RFC 3339).
    pub event_time: String,
    /// Event time of the latest folded repeat.
    pub last_event_time: String,
    /// `open`, `resolved` or `closed`.
    pub status: String,
    /// `true-positive`, `benign-true-positive` or `false-positive`.
    pub classification: Option<String>,
    pub message: String,
    pub evidence: serde_json::Value,
    /// Occurrences folded into this alert.
    pub count: u64,
    pub mitre: String,
    pub ip: Option<String>,
    pub comments: Vec<AlertComment>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlertComment {
    pub time: String,
    pub text: String,
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    pub status: Option<String>,
    pub user: Option<String>,
    pub kind: Option<String>,
    pub severity: Option<String>,
    /// Keyset paging: only alerts with a smaller id (the list is newest first).
    pub before_id: Option<i64>,
    pub limit: Option<usize>,
}

/// A change to an alert's lifecycle.
#[derive(Debug, Clone, Default)]
pub struct AlertUpdate {
    pub status: Option<String>,
    pub classification: Option<String>,
    pub comment: Option<String>,
}

/// Alert statuses.
pub const ALERT_STATUSES: [&str; 3] = ["open", "resolved", "closed"];
/// Alert classifications.
pub const ALERT_CLASSIFICATIONS: [&str; 3] = ["true-positive", "benign-true-positive", "false-positive"];

/// What recording one draft did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertChange {
    /// A new alert with this id.
    Created(i64),
    /// Folded into the open alert with this id.
    Folded(i64),
    /// The causing event was recorded before (a replay): nothing changed.
    Known,
}

/// One change of an alert's lifecycle in the order it was recorded: the outbox that
/// export sinks read through their cursors.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertEvent {
    /// Position in the outbox: increasing, never reused, the same on every read.
    pub seq: i64,
    /// `new` (raised) or `update` (folded repeat, status, classification or comment).
    pub trigger: String,
    /// When the change was recorded (Unix milliseconds).
    pub time_ms: i64,
    /// The alert as it is now.
    pub alert: Alert,
}

/// Which authentication events to list.
#[derive(Debug, Clone, Default)]
pub struct AuthQuery {
    pub user: Option<String>,
    pub decision: Option<String>,
    /// Unix milliseconds.
    pub since_ms: Option<i64>,
    /// Events before this time (Unix milliseconds).
    pub until_ms: Option<i64>,
    pub nas: Option<String>,
    pub method: Option<String>,
    /// ISO 3166-1 alpha-2 code of the calling station's location.
    pub country: Option<String>,
    /// City of the calling station's location, as the geolocation names it.
    pub city: Option<String>,
    /// Keyset paging: only events after this `(time_ms, id)` in the list order (newest
    /// first); ids come from [`Store::auth_page`].
    pub before: Option<(i64, i64)>,
    pub limit: Option<usize>,
}

/// The values present in one user's authentication events, for filters that offer
/// only what exists.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AuthFacets {
    pub decisions: Vec<String>,
    pub countries: Vec<String>,
    pub nas: Vec<String>,
    pub methods: Vec<String>,
}

/// One distinct place a user connected from (VPN session starts and authentication
/// events together). Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ObservedLocation {
    pub country: Option<String>,
    pub city: Option<String>,
    pub asn: Option<u32>,
    pub as_org: Option<String>,
    /// Coordinates of the place (for the map), when the geolocation had them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    pub first_ms: i64,
    pub last_ms: i64,
    pub count: u64,
}

/// Which users to list (every name seen in sessions or authentication events).
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
    /// Keyset paging: names sorting after this one.
    pub after: Option<String>,
    pub limit: Option<usize>,
}

/// A user as the lists show one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserSummary {
    pub name: String,
    /// Latest session start or authentication, Unix milliseconds.
    pub last_seen_ms: i64,
    pub open_alerts: u64,
}

/// Counts for the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub open_sessions: u64,
    /// Open alerts per severity.
    pub open_alerts: Vec<(String, u64)>,
    /// Authentication decisions since the given time, per decision.
    pub auth_decisions: Vec<(String, u64)>,
}

/// What every storage backend provides for derived data.
///
/// **Contract:** `apply` is atomic: the records and the new applied position become
/// visible together, or not at all. Applying the same record twice leaves the same
/// session state as applying it once, so replaying the journal from an older position
/// is always safe.
pub trait Store: Send {
    /// Applies records and records the journal position they reach.
    fn apply(&mut self, records: &[AccountingRecord], through: Position) -> Result<(), StorageError>;
    /// The journal position applied so far.
    fn applied_position(&self) -> Result<Position, StorageError>;
    /// Lists sessions, most recently started first.
    fn sessions(&self, query: &SessionQuery) -> Result<Vec<Session>, StorageError>;
    /// Marks stale the open sessions with no record for `stale_after` seconds before
    /// `now` (Unix seconds); without `stale_after`, for twice the longest Interim-Update
    /// interval seen from the session's NAS, at least a day. Returns how many.
    fn mark_stale(&mut self, now: i64, stale_after: Option<i64>) -> Result<usize, StorageError>;
    /// Deletes every session and resets the applied position, then applies the
    /// replayed records again in their order (before a rebuild from the journal).
    fn reset_sessions(&mut self) -> Result<(), StorageError>;
    /// Applies history read from files — records and authentication events, in the
    /// given order — and keeps the records so that `reset_sessions` applies them
    /// again. The applied journal position does not move.
    fn apply_replayed(&mut self, items: &[Result<AccountingRecord, AuthEvent>]) -> Result<(), StorageError>;
    /// Stored history in the order it was applied: the events whose place in that
    /// order is `from` or later (at most about `limit`), leaving out those before
    /// `since` (Unix seconds) and open sessions that started before it. Each comes
    /// with its place; the next call starts after the last one returned.
    fn history(&self, from: i64, since: i64, limit: usize) -> Result<Vec<(i64, Fed)>, StorageError>;
    /// Replaces the stored ingestion counters with these totals.
    fn save_counters(&mut self, counters: &[Counter]) -> Result<(), StorageError>;
    /// The stored ingestion counters.
    fn counters(&self) -> Result<Vec<Counter>, StorageError>;
    /// When counters were first saved (Unix seconds): they count from then on.
    fn counters_since(&self) -> Result<Option<i64>, StorageError>;
    /// Appends authentication events.
    fn record_auth_events(&mut self, events: &[AuthEvent]) -> Result<(), StorageError>;
    /// Lists authentication events, newest first.
    fn auth_events(&self, query: &AuthQuery) -> Result<Vec<AuthEvent>, StorageError>;
    /// The session with this key.
    fn session(&self, key: &str) -> Result<Option<Session>, StorageError>;
    /// Whether this exact authentication event is stored already (a replayed file).
    fn has_auth_event(&self, event: &AuthEvent) -> Result<bool, StorageError>;
    /// Records alert drafts at `now_ms`: each causing event counts once per kind
    /// (recording the same draft again changes nothing), and a draft whose fold key
    /// matches an open alert raises that alert's count instead of opening another.
    fn record_alerts(
        &mut self,
        drafts: &[portcullis_detect::AlertDraft],
        now_ms: i64,
    ) -> Result<Vec<AlertChange>, StorageError>;
    /// Alerts, newest first.
    fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>, StorageError>;
    /// The outbox: alert changes with a `seq` greater than `after`, oldest first, at
    /// most `limit`. Every `Created` and `Folded` of [`Store::record_alerts`] and every
    /// [`Store::update_alert`] that found its alert adds one, in the same transaction.
    fn alert_events(&self, after: i64, limit: usize) -> Result<Vec<AlertEvent>, StorageError>;
    /// The `seq` of the latest alert change, 0 when there is none.
    fn last_alert_event(&self) -> Result<i64, StorageError>;
    /// Open alerts per kind (kinds with none are absent), ordered by kind: for metrics.
    fn open_alerts_by_kind(&self) -> Result<Vec<(String, u64)>, StorageError>;
    /// Changes status/classification and adds a comment; `None` when no such alert.
    fn update_alert(&mut self, id: i64, update: &AlertUpdate, now_ms: i64) -> Result<Option<Alert>, StorageError>;
    /// Retention: deletes, oldest first, at most `limit` authentication events older
    /// than `cutoff.auth_events_before_ms` and at most `limit` closed sessions that
    /// ended before `cutoff.sessions_before` (`None`: keep). Open sessions and alerts
    /// are never deleted. Small limits keep each call short, so callers can interleave
    /// it with other work until it returns fewer than `limit` of each.
    fn prune(&mut self, cutoff: &Cutoff, limit: usize) -> Result<Pruned, StorageError>;
    /// One alert with its comments.
    fn alert(&self, id: i64) -> Result<Option<Alert>, StorageError>;
    /// Authentication events like [`Store::auth_events`], each with its unique id for
    /// keyset paging.
    fn auth_page(&self, query: &AuthQuery) -> Result<Vec<(i64, AuthEvent)>, StorageError>;
    /// The decisions, countries, NAS and methods present in a user's events since then.
    fn auth_facets(&self, user: &str, since_ms: i64) -> Result<AuthFacets, StorageError>;
    /// The distinct places a user connected from since then, most recent first.
    fn user_locations(&self, user: &str, since_ms: i64) -> Result<Vec<ObservedLocation>, StorageError>;
    /// The distinct locations of every user's sessions and authentication events since
    /// `since_ms` (the dashboard's map), from the newest `limit` of each at most, so a
    /// busy day costs a bounded scan; internal addresses left out.
    fn recent_locations(&self, since_ms: i64, limit: usize) -> Result<Vec<ObservedLocation>, StorageError>;
    /// Users by name.
    fn users(&self, query: &UserQuery) -> Result<Vec<UserSummary>, StorageError>;
    /// Open sessions, open alerts by severity, authentication decisions since then.
    fn summary(&self, since_ms: i64) -> Result<Summary, StorageError>;
}

/// Merges the lists a backend's [`Store::history`] read (starts, stops, resets,
/// authentication events, each in order and at most `limit` long) into one list in
/// apply order, a Start before other events at its place. A full list may have more
/// beyond its last: nothing past that is complete yet, so nothing past it is returned.
pub fn merge_history(lists: Vec<Vec<(i64, Fed)>>, limit: usize) -> Vec<(i64, Fed)> {
    let bound = lists.iter().filter(|l| l.len() >= limit).filter_map(|l| l.last().map(|e| e.0)).min();
    let mut out: Vec<(i64, Fed)> =
        lists.into_iter().flatten().filter(|(seq, _)| bound.is_none_or(|b| *seq <= b)).collect();
    out.sort_by_key(|(seq, fed)| (*seq, !matches!(fed, Fed::Start(_))));
    out
}

/// What retention deletes: stored data older than these times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cutoff {
    /// Authentication events before this time (Unix milliseconds).
    pub auth_events_before_ms: Option<i64>,
    /// Closed sessions that ended before this time (Unix seconds).
    pub sessions_before: Option<i64>,
}

/// What one [`Store::prune`] call deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub auth_events: usize,
    pub sessions: usize,
}
