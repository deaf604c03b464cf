//! Durable storage for Portcullis behind the [`Store`] trait, with the embedded SQLite
//! backend, a group committer that makes one transaction of many requests, and the
//! conformance battery that every backend must pass.
//!
//! Callers never see SQL: they hand over raw packets and normalised records and get
//! sessions back. A backend's `commit` returns only once the batch is durable.

mod committer;
pub mod conformance;
mod sqlite;

use portcullis_accounting::AccountingRecord;

pub use committer::{Completion, GroupCommitter, QueueFull, Submitter};
pub use sqlite::{SqliteStore, SyncMode};

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

/// One unit of a commit: the raw packet and, if it normalised, its record.
#[derive(Debug, Clone)]
pub struct Entry {
    pub raw: Option<RawPacket>,
    pub record: Option<AccountingRecord>,
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

/// What every storage backend provides.
///
/// **Contract:** `commit` returns `Ok` only after every entry of the batch is durable
/// (as the backend's sync mode defines it); on `Err` nothing of the batch is visible.
/// Applying the same record twice leaves the same session state as applying it once.
pub trait Store: Send {
    /// Appends the raw packets and applies the records, atomically and durably.
    fn commit(&mut self, batch: &[Entry]) -> Result<(), StorageError>;
    /// Lists sessions, most recently started first.
    fn sessions(&self, query: &SessionQuery) -> Result<Vec<Session>, StorageError>;
    /// Number of raw packets kept.
    fn raw_count(&self) -> Result<u64, StorageError>;
    /// Raw packets with id greater than `after`, oldest first, at most `limit`.
    fn raw_packets(&self, after: i64, limit: usize) -> Result<Vec<(i64, RawPacket)>, StorageError>;
    /// Deletes every session (before a rebuild from raw packets).
    fn clear_sessions(&mut self) -> Result<(), StorageError>;
    /// Deletes raw packets received before `before_ms`; returns how many.
    fn prune_raw(&mut self, before_ms: i64) -> Result<u64, StorageError>;
    /// Replaces the stored ingestion counters with these totals.
    fn save_counters(&mut self, counters: &[Counter]) -> Result<(), StorageError>;
    /// The stored ingestion counters.
    fn counters(&self) -> Result<Vec<Counter>, StorageError>;
}
