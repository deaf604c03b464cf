//! The applier: reads the journal in order, normalises each packet again, and applies
//! the records to the store in large batches. The same code recovers after a crash
//! (it starts from the store's applied position) and rebuilds after a parser fix (it
//! starts from the beginning).

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, SystemTime};

use portcullis_accounting::{AccountingRecord, Vendor, normalise};
use portcullis_radius::{Packet, VerifiedRequest};
use portcullis_storage::{Counter, JournalReader, Position, RawPacket, StorageError, Store};

use crate::detection::Detection;

/// Records applied per transaction at most.
const APPLY_BATCH: usize = 1024;
/// How long authentication events wait for company before they are stored.
const GATHER: Duration = Duration::from_millis(5);

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
    mut detection: Option<&mut Detection>,
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
        apply(store, detection.as_deref_mut(), &mut records, next)?;
        report.position = next;
        progress(&report);
    }
}

/// Clears the sessions and re-applies the whole journal.
pub fn rebuild<S: Store>(
    store: &mut S,
    reader: &JournalReader,
    detection: Option<&mut Detection>,
    progress: impl FnMut(&Report),
) -> Result<Report, StorageError> {
    store.reset_sessions()?;
    catch_up(store, reader, detection, progress)
}

/// Enriches records, applies them, then runs the detectors over them. Alerts are
/// recorded after the records are durable; a failure to record them is logged and
/// does not undo the records.
fn apply<S: Store>(
    store: &mut S,
    detection: Option<&mut Detection>,
    records: &mut [AccountingRecord],
    through: Position,
) -> Result<(), StorageError> {
    let Some(detection) = detection else { return store.apply(records, through) };
    for r in records.iter_mut() {
        detection.enrich_record(r);
    }
    store.apply(records, through)?;
    let events: Vec<_> = records.iter().filter_map(crate::detection::event_of_record).collect();
    if let Err(e) = detection.observe_and_record(store, &events) {
        tracing::error!(error = %e, "recording alerts failed");
    }
    Ok(())
}

/// Messages to the applier thread.
#[derive(Debug)]
pub enum ApplierMessage {
    /// The journal writer appended these packets between `start` and `end`.
    Appended { start: Position, end: Position, packets: Vec<RawPacket> },
    /// Persist these counter totals.
    Counters(Vec<Counter>),
    /// Record an authentication decision.
    AuthEvent(Box<portcullis_storage::AuthEvent>),
    /// Detection parameters changed (a reload).
    Detect(Box<portcullis_detect::Config>),
}

/// Runs the applier until its channel closes, then applies what is left and returns.
///
/// Appended batches arrive in memory and are applied without reading the journal back;
/// when a batch is missing (the channel was full) or out of order, the applier reads
/// the gap from the journal instead. Journal segments older than `retention` (and
/// already applied) are pruned hourly. Open sessions silent for `stale_after` seconds
/// (the store's default when `None`) are marked stale every minute, or twice per
/// `stale_after` when that is shorter.
pub fn run_applier<S: Store>(
    mut store: S,
    reader: &JournalReader,
    journal_dir: &std::path::Path,
    inbox: &Receiver<ApplierMessage>,
    retention: Option<Duration>,
    stale_after: Option<i64>,
    mut detection: Detection,
) {
    match detection.warm_up(&mut store, crate::now_unix()) {
        Ok(n) => tracing::info!(
            events = n,
            profiles = detection.engine().stats().profiles,
            "detection state rebuilt from history"
        ),
        Err(e) => tracing::error!(error = %e, "rebuilding detection state failed; profiles start empty"),
    }
    let detection = &mut detection;
    let mut position = recover(&mut store, reader, detection);
    let mut last_prune = SystemTime::now();
    let mut pending: Option<ApplierMessage> = None;
    let mut last_auth_commit = std::time::Instant::now();
    let sweep_every = Duration::from_secs(stale_after.map_or(60, |s| u64::try_from(s / 2).unwrap_or(0).clamp(1, 60)));
    let mut last_sweep: Option<std::time::Instant> = None;
    loop {
        if last_sweep.is_none_or(|t| t.elapsed() >= sweep_every) {
            last_sweep = Some(std::time::Instant::now());
            match store.mark_stale(crate::now_unix(), stale_after) {
                Ok(n) if n > 0 => tracing::info!(sessions = n, "sessions without accounting for too long marked stale"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "marking stale sessions failed"),
            }
        }
        let message = match pending.take() {
            Some(m) => Ok(m),
            None => inbox.recv_timeout(Duration::from_secs(1)),
        };
        match message {
            Ok(ApplierMessage::Appended { start, end, packets }) => {
                if end <= position {
                    continue;
                }
                if start != position {
                    position = recover(&mut store, reader, detection);
                    continue;
                }
                // Fold directly following batches into one transaction.
                let mut records: Vec<AccountingRecord> = packets.iter().filter_map(record_of).collect();
                let mut through = end;
                while records.len() < APPLY_BATCH {
                    match inbox.try_recv() {
                        Ok(ApplierMessage::Appended { start, end, packets }) if start == through => {
                            records.extend(packets.iter().filter_map(record_of));
                            through = end;
                        }
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                match apply(&mut store, Some(detection), &mut records, through) {
                    Ok(()) => position = through,
                    Err(e) => {
                        tracing::error!(error = %e, "applying records failed; re-reading the journal");
                        std::thread::sleep(Duration::from_millis(500));
                        position = recover(&mut store, reader, detection);
                    }
                }
            }
            Ok(ApplierMessage::AuthEvent(e)) => {
                // Fold the events waiting behind this one into the same transaction. A
                // commit costs more than many inserts (and a wake-up per event more
                // than a nap): under load (the last commit is recent) events arriving
                // within `GATHER` share the transaction; a lone event is stored at once.
                let mut events = vec![*e];
                if last_auth_commit.elapsed() < GATHER {
                    std::thread::sleep(GATHER);
                }
                while events.len() < APPLY_BATCH {
                    match inbox.try_recv() {
                        Ok(ApplierMessage::AuthEvent(e)) => events.push(*e),
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                for e in &mut events {
                    detection.enrich_auth(e);
                }
                if let Err(e) = store.record_auth_events(&events) {
                    tracing::warn!(error = %e, "recording an authentication event failed");
                }
                last_auth_commit = std::time::Instant::now();
                let events: Vec<_> = events.iter().filter_map(crate::detection::event_of_auth).collect();
                if let Err(e) = detection.observe_and_record(&mut store, &events) {
                    tracing::error!(error = %e, "recording alerts failed");
                }
            }
            Ok(ApplierMessage::Detect(config)) => match detection.reconfigure(&mut store, *config, crate::now_unix()) {
                Ok(n) => tracing::info!(events = n, "detection parameters reloaded; state rebuilt from history"),
                Err(e) => tracing::error!(error = %e, "rebuilding detection state failed; profiles start empty"),
            },
            Ok(ApplierMessage::Counters(c)) => {
                if let Err(e) = store.save_counters(&c) {
                    tracing::warn!(error = %e, "saving ingestion counters failed");
                }
            }
            Err(RecvTimeoutError::Timeout) => position = recover(&mut store, reader, detection),
            Err(RecvTimeoutError::Disconnected) => {
                recover(&mut store, reader, detection);
                return;
            }
        }
        if let Some(keep) = retention {
            if last_prune.elapsed().unwrap_or_default() >= Duration::from_secs(3600) {
                last_prune = SystemTime::now();
                match portcullis_storage::prune(journal_dir, SystemTime::now() - keep, position) {
                    Ok(n) if n > 0 => tracing::info!(segments = n, "journal retention applied"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "journal retention failed"),
                }
            }
        }
    }
}

/// Applies whatever the journal holds beyond the store's applied position; returns
/// the position reached (or the stored one if reading fails).
fn recover<S: Store>(store: &mut S, reader: &JournalReader, detection: &mut Detection) -> Position {
    match catch_up(store, reader, Some(detection), |_| {}) {
        Ok(r) => {
            if r.packets > 0 {
                tracing::info!(records = r.records, position = %r.position, "applied journal records from disk");
            }
            r.position
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the journal failed; will retry");
            store.applied_position().unwrap_or_default()
        }
    }
}
