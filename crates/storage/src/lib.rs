//! Durable storage for Portcullis: the [`Journal`] (append-only log of accepted packets,
//! the commit point of ingestion) with its group committer, and the [`Store`] trait for
//! everything derived from it (sessions, counters), with the embedded SQLite backend
//! and the conformance battery every backend must pass.
//!
//! Callers never see SQL or file formats: they append raw packets, apply normalised
//! records, and query sessions.

mod committer;
pub mod conformance;
mod journal;
mod mfa;
mod sqlite;
mod users;

use portcullis_accounting::AccountingRecord;

pub use committer::{Completion, GroupCommitter, QueueFull, Submitter};
pub use journal::{
    Journal, JournalReader, JournalSync, Position, crc32, decode_segment, encode_segment, prune, segments,
};
pub use mfa::{SqliteMfa, TotpFactor};
pub use sqlite::{SqliteStore, SyncMode};
pub use users::{SqliteUsers, User, UserStore};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("cannot use data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    pub open: bool,
    pub session_time: Option<i64>,
    pub input_octets: Option<i64>,
    pub output_octets: Option<i64>,
    pub input_packets: Option<i64>,
    pub output_packets: Option<i64>,
    pub terminate_cause: Option<String>,
    pub details: serde_json::Value,
}

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    /// Canonical or raw user name.
    pub user: Option<String>,
    pub open_only: bool,
    /// Sessions still open at or after this time (Unix seconds).
    pub since: Option<i64>,
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
}

/// Which authentication events to list.
#[derive(Debug, Clone, Default)]
pub struct AuthQuery {
    pub user: Option<String>,
    pub decision: Option<String>,
    /// Unix milliseconds.
    pub since_ms: Option<i64>,
    pub limit: Option<usize>,
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
    /// Deletes every session and resets the applied position (before a rebuild).
    fn reset_sessions(&mut self) -> Result<(), StorageError>;
    /// Replaces the stored ingestion counters with these totals.
    fn save_counters(&mut self, counters: &[Counter]) -> Result<(), StorageError>;
    /// The stored ingestion counters.
    fn counters(&self) -> Result<Vec<Counter>, StorageError>;
    /// Appends authentication events.
    fn record_auth_events(&mut self, events: &[AuthEvent]) -> Result<(), StorageError>;
    /// Lists authentication events, newest first.
    fn auth_events(&self, query: &AuthQuery) -> Result<Vec<AuthEvent>, StorageError>;
}
