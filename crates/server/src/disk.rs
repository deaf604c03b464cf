//! How much disk the data takes, and how much a day of traffic adds at the rate of the
//! last day: what `portcullis stats` reports.
//!
//! The bytes per item were measured with `bench/disk.sh` (`portcullis bench` driving
//! PAP logins and accounting Start/Stop pairs through a fresh server; table and index
//! pages from SQLite's dbstat). They vary with the length of names and attributes.

use std::path::Path;

use portcullis_storage::{JournalReader, SqliteStore, StorageError};
use serde::Serialize;

use crate::config::Config;

/// Database bytes (table and indexes) per stored authentication event.
pub const DATABASE_BYTES_PER_AUTH_EVENT: u64 = 333;
/// Bytes per `auth.log` line.
pub const AUTH_LOG_BYTES_PER_EVENT: u64 = 245;
/// NPS log bytes per decision (two records, IAS format).
pub const NPS_LOG_BYTES_PER_DECISION: u64 = 280;
/// Database bytes (table and indexes) per session.
pub const DATABASE_BYTES_PER_SESSION: u64 = 305;
/// Journal bytes per accounting request.
pub const JOURNAL_BYTES_PER_RECORD: u64 = 159;

const DAY: i64 = 86_400;

/// Disk in use and the growth per day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiskUse {
    pub database_bytes: u64,
    pub journal_bytes: u64,
    pub auth_log_bytes: u64,
    pub nps_log_bytes: u64,
    /// Authentication events stored with a time in the last 24 hours.
    pub auth_events_last_day: u64,
    /// Sessions that started in the last 24 hours.
    pub sessions_last_day: u64,
    /// What a day at that rate adds: database, journal (averaged over the records it
    /// keeps), `auth.log` and NPS logs (when configured).
    pub bytes_per_day: PerDay,
    /// How long the stored data is kept (0: forever).
    pub retention_days: Kept,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PerDay {
    pub database: u64,
    pub journal: u64,
    pub auth_log: u64,
    pub nps_log: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub auth_events: u32,
    pub sessions: u32,
    pub journal: u32,
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
    })
}

/// The disk use of the configured data directory at `now` (Unix seconds).
pub fn disk_use(config: &Config, store: &SqliteStore, now: i64) -> Result<DiskUse, StorageError> {
    let data = &config.storage.data_dir;
    let reader = JournalReader::new(&crate::journal_dir(config));
    let journal_bytes = reader.size()?;
    let (auth_events_last_day, sessions_last_day) = store.stored_since(now - DAY)?;
    // The journal's own rate: its bytes over the time its oldest record was kept (at
    // least a minute, so that a young journal does not extrapolate wildly).
    let journal_per_day = match reader.oldest_ms()? {
        Some(oldest) => {
            let span = (now - oldest.div_euclid(1000)).max(60);
            u64::try_from(i128::from(journal_bytes) * i128::from(DAY.min(span)) / i128::from(span)).unwrap_or(0)
        }
        None => 0,
    };
    let nps = config.nps_log.as_ref();
    let nps_dir = nps.map(|n| n.directory.clone().unwrap_or_else(|| data.join("nps")));
    let mut per_day = PerDay {
        database: auth_events_last_day * DATABASE_BYTES_PER_AUTH_EVENT + sessions_last_day * DATABASE_BYTES_PER_SESSION,
        journal: journal_per_day,
        auth_log: auth_events_last_day * AUTH_LOG_BYTES_PER_EVENT,
        nps_log: if nps.is_some() { auth_events_last_day * NPS_LOG_BYTES_PER_DECISION } else { 0 },
        total: 0,
    };
    per_day.total = per_day.database + per_day.journal + per_day.auth_log + per_day.nps_log;
    Ok(DiskUse {
        database_bytes: store.file_bytes(),
        journal_bytes,
        auth_log_bytes: std::fs::metadata(data.join("auth.log")).map_or(0, |m| m.len()),
        nps_log_bytes: nps_dir.as_deref().map_or(0, dir_bytes),
        auth_events_last_day,
        sessions_last_day,
        bytes_per_day: per_day,
        retention_days: Kept {
            auth_events: config.storage.auth_event_retention_days,
            sessions: config.storage.session_retention_days,
            journal: config.storage.raw_retention_days,
        },
    })
}

#[cfg(test)]
mod tests {
    use portcullis_storage::conformance::{auth_event, record};
    use portcullis_storage::{Position, Store};

    use super::*;

    #[test]
    fn a_day_of_events_and_sessions_is_counted_and_priced() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("[storage]\ndata_dir = \"{}\"\n", dir.path().display());
        let config = Config::parse("t.toml", &text, dir.path()).unwrap();
        let now = 1_767_600_000;
        let mut store = crate::open_store(&config).unwrap();
        let old = (0..5).map(|i| auth_event((now - 2 * DAY + i) * 1000, "bob", "reject"));
        let recent = (0..7).map(|i| auth_event((now - 60 + i) * 1000, "bob", "reject"));
        store.record_auth_events(&old.chain(recent).collect::<Vec<_>>()).unwrap();
        let sessions = [record(1, "a", "nas", "1", now - 3 * DAY), record(1, "b", "nas", "2", now - 10)];
        store.apply(&sessions, Position::default()).unwrap();
        let d = disk_use(&config, &store, now).unwrap();
        assert_eq!((d.auth_events_last_day, d.sessions_last_day), (7, 1));
        assert_eq!(d.bytes_per_day.database, 7 * DATABASE_BYTES_PER_AUTH_EVENT + DATABASE_BYTES_PER_SESSION);
        assert_eq!(d.bytes_per_day.auth_log, 7 * AUTH_LOG_BYTES_PER_EVENT);
        assert_eq!(d.bytes_per_day.nps_log, 0, "no NPS logs configured");
        assert_eq!(d.retention_days, Kept { auth_events: 365, sessions: 365, journal: 90 });
        assert!(d.database_bytes > 0);
    }
}
