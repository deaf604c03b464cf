//! The applier: reads the journal in order, normalises each packet again, and applies
//! the records to the store in large batches. The same code recovers after a crash
//! (it starts from the store's applied position) and rebuilds after a parser fix (it
//! starts from the beginning).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, SystemTime};

use portcullis_accounting::{AccountingRecord, Vendor, normalise};
use portcullis_radius::{Packet, VerifiedRequest};
use portcullis_storage::{Counter, JournalReader, Position, RawPacket, StorageError, Store};

/// Records applied per transaction at most.
const APPLY_BATCH: usize = 8192;

/// What a catch-up did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub packets: u64,
    pub records: u64,
    pub skipped: u64,
    pub position: Position,
}

/// Re-derives the record of a journaled packet. Journaled packets were verified
/// before they were accepted; packets that no longer normalise are skipped.
pub fn record_of(raw: &RawPacket) -> Option<AccountingRecord> {
    let source: IpAddr = raw
        .source
        .parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| raw.source.parse::<IpAddr>())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let vendor = Vendor::from_name(&raw.vendor).unwrap_or_default();
    let packet = Packet::decode(&raw.packet).ok()?;
    let request = VerifiedRequest::assume_verified_from_storage(packet);
    normalise(&request, source.to_canonical(), vendor, raw.received_ms).ok()
}

/// Applies everything in the journal after the store's applied position.
pub fn catch_up<S: Store>(
    store: &mut S,
    reader: &JournalReader,
    mut progress: impl FnMut(&Report),
) -> Result<Report, StorageError> {
    let mut report = Report { position: store.applied_position()?, ..Report::default() };
    loop {
        let (rows, next) = reader.read(report.position, APPLY_BATCH)?;
        if rows.is_empty() {
            if next != report.position {
                store.apply(&[], next)?;
                report.position = next;
            }
            return Ok(report);
        }
        let mut records = Vec::with_capacity(rows.len());
        for (_, raw) in &rows {
            report.packets += 1;
            match record_of(raw) {
                Some(r) => records.push(r),
                None => report.skipped += 1,
            }
        }
        report.records += records.len() as u64;
        store.apply(&records, next)?;
        report.position = next;
        progress(&report);
    }
}

/// Clears the sessions and re-applies the whole journal.
pub fn rebuild<S: Store>(
    store: &mut S,
    reader: &JournalReader,
    progress: impl FnMut(&Report),
) -> Result<Report, StorageError> {
    store.reset_sessions()?;
    catch_up(store, reader, progress)
}

/// Messages to the applier thread.
#[derive(Debug)]
pub enum ApplierMessage {
    /// The journal grew.
    Wake,
    /// Persist these counter totals.
    Counters(Vec<Counter>),
}

/// Runs the applier until its channel closes, then applies what is left and returns.
/// Raw journal segments older than `retention` (and already applied) are pruned hourly.
pub fn run_applier<S: Store>(
    mut store: S,
    reader: &JournalReader,
    journal_dir: &std::path::Path,
    inbox: &Receiver<ApplierMessage>,
    wake_pending: &AtomicBool,
    retention: Option<Duration>,
) {
    let mut last_prune = SystemTime::now();
    loop {
        match catch_up(&mut store, reader, |_| {}) {
            Ok(r) if r.packets > 0 => {
                tracing::debug!(records = r.records, position = %r.position, "applied")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "applying the journal failed; will retry"),
        }
        if let Some(keep) = retention {
            if last_prune.elapsed().unwrap_or_default() >= Duration::from_secs(3600) {
                last_prune = SystemTime::now();
                let applied = store.applied_position().unwrap_or_default();
                match portcullis_storage::prune(journal_dir, SystemTime::now() - keep, applied) {
                    Ok(n) if n > 0 => tracing::info!(segments = n, "journal retention applied"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "journal retention failed"),
                }
            }
        }
        match inbox.recv_timeout(Duration::from_millis(200)) {
            Ok(ApplierMessage::Wake) => wake_pending.store(false, Ordering::Release),
            Err(RecvTimeoutError::Timeout) => {}
            Ok(ApplierMessage::Counters(c)) => {
                if let Err(e) = store.save_counters(&c) {
                    tracing::warn!(error = %e, "saving ingestion counters failed");
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                if let Err(e) = catch_up(&mut store, reader, |_| {}) {
                    tracing::error!(error = %e, "final apply failed; it resumes at the next start");
                }
                return;
            }
        }
    }
}
