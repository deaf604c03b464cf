//! The applier: reads the journal in order, normalises each packet again, and applies
//! the records to the store in large batches. The same code recovers after a crash
//! (it starts from the store's applied position) and rebuilds after a parser fix (it
//! starts from the beginning).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use portcullis_accounting::{AccountingRecord, ClockBounds, Vendor, normalise};
use portcullis_radius::{Packet, VerifiedRequest};
use portcullis_storage::{Counter, Cutoff, JournalReader, Position, RawPacket, StorageError, Store};

use crate::detection::Detection;

/// Records applied per transaction at most.
const APPLY_BATCH: usize = 1024;
/// How long authentication events wait for company before they are stored.
const GATHER: Duration = Duration::from_millis(5);
/// Rows deleted per retention step (a few milliseconds of work).
const PRUNE_BATCH: usize = 500;
/// How often retention looks for stored data past its age.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// How long stored data is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Journal segments older than this (and applied) are deleted.
    pub journal: Option<Duration>,
    /// Days of authentication events kept (0: forever).
    pub auth_event_days: u32,
    /// Days closed sessions are kept after they ended (0: forever).
    pub session_days: u32,
    /// Seconds of silence after which an open session is marked stale (the store's
    /// default when `None`).
    pub stale_after: Option<i64>,
}

impl Retention {
    /// From `[storage]`.
    pub fn from_config(storage: &crate::config::StorageConfig) -> Self {
        let days = |d: u32| Duration::from_secs(u64::from(d) * 86_400);
        Self {
            journal: (storage.raw_retention_days > 0).then(|| days(storage.raw_retention_days)),
            auth_event_days: storage.auth_event_retention_days,
            session_days: storage.session_retention_days,
            stale_after: storage.stale_after_seconds.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
        }
    }

    /// What is past its age at `now` (Unix seconds).
    pub fn cutoff(&self, now: i64) -> Cutoff {
        let before = |d: u32| (d > 0).then(|| now - i64::from(d) * 86_400);
        Cutoff {
            auth_events_before_ms: before(self.auth_event_days).map(|t| t * 1000),
            sessions_before: before(self.session_days),
        }
    }
}

/// Deletes stored data past its retention in small steps, so that the applier, which
/// takes a step between two of its batches, never waits long for it.
#[derive(Debug)]
struct Pruner {
    retention: Retention,
    /// A pass is under way: more rows may be past their age.
    busy: bool,
    next_pass: Instant,
    deleted: portcullis_storage::Pruned,
}

impl Pruner {
    fn new(retention: Retention) -> Self {
        let idle = retention.cutoff(0) == Cutoff::default();
        Self { retention, busy: !idle, next_pass: Instant::now(), deleted: Default::default() }
    }

    /// Whether a pass is under way.
    fn busy(&self) -> bool {
        self.busy
    }

    /// One step, if a pass is under way or due.
    fn step<S: Store + ?Sized>(&mut self, store: &mut S) {
        if !self.busy && (Instant::now() < self.next_pass || self.retention.cutoff(0) == Cutoff::default()) {
            return;
        }
        self.busy = true;
        let cutoff = self.retention.cutoff(crate::now_unix());
        match store.prune(&cutoff, PRUNE_BATCH) {
            Ok(p) => {
                self.deleted.auth_events += p.auth_events;
                self.deleted.sessions += p.sessions;
                if p.auth_events < PRUNE_BATCH && p.sessions < PRUNE_BATCH {
                    self.finish();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention of stored events and sessions failed; trying again later");
                self.finish();
            }
        }
    }

    fn finish(&mut self) {
        let d = std::mem::take(&mut self.deleted);
        if d.auth_events + d.sessions > 0 {
            tracing::info!(auth_events = d.auth_events, sessions = d.sessions, "retention deleted stored data");
        }
        self.busy = false;
        self.next_pass = Instant::now() + PRUNE_EVERY;
    }
}
/// Authentication events waiting for the applier at most (about 20 MB).
pub const PENDING_AUTH_EVENTS: usize = 65_536;
/// Least time between two "authentication events refused" warnings.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What a catch-up did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub packets: u64,
    pub records: u64,
    pub skipped: u64,
    pub position: Position,
}

/// Re-derives the record of a journaled packet, its event time within `clock` of
/// arrival. Journaled packets were verified before they were accepted; packets that no
/// longer normalise are skipped.
pub fn record_of(raw: &RawPacket, clock: ClockBounds) -> Option<AccountingRecord> {
    let source: IpAddr = raw
        .source
        .parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| raw.source.parse::<IpAddr>())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let vendor = Vendor::from_name(&raw.vendor).unwrap_or_default();
    let packet = Packet::decode(&raw.packet).ok()?;
    let request = VerifiedRequest::assume_verified_from_storage(packet);
    let mut r = normalise(&request, &raw.client, source.to_canonical(), vendor, raw.received_ms).ok()?;
    r.clamp_event_time(clock);
    // Where a Disconnect-Request for the session goes (never a NAS-IP-Address it claims).
    r.details.insert("nas_source".into(), source.to_canonical().to_string());
    Some(r)
}

/// Applies everything in the journal after the store's applied position.
pub fn catch_up<S: Store + ?Sized>(
    store: &mut S,
    reader: &JournalReader,
    detection: Option<&mut Detection>,
    clock: ClockBounds,
    mut progress: impl FnMut(&Report),
) -> Result<Report, StorageError> {
    catch_up_with(store, reader, detection, clock, |_, _, report| progress(report))
}

/// [`catch_up`], calling `between` after every batch with the store and detection, so
/// a long catch-up can store what else is waiting meanwhile.
fn catch_up_with<S: Store + ?Sized>(
    store: &mut S,
    reader: &JournalReader,
    mut detection: Option<&mut Detection>,
    clock: ClockBounds,
    mut between: impl FnMut(&mut S, Option<&mut Detection>, &Report),
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
            match record_of(raw, clock) {
                Some(r) => records.push(r),
                None => report.skipped += 1,
            }
        }
        report.records += records.len() as u64;
        apply(store, detection.as_deref_mut(), &mut records, next)?;
        report.position = next;
        between(store, detection.as_deref_mut(), &report);
    }
}

/// Clears the sessions and re-applies the whole journal.
pub fn rebuild<S: Store + ?Sized>(
    store: &mut S,
    reader: &JournalReader,
    detection: Option<&mut Detection>,
    clock: ClockBounds,
    progress: impl FnMut(&Report),
) -> Result<Report, StorageError> {
    store.reset_sessions()?;
    catch_up(store, reader, detection, clock, progress)
}

/// Enriches records, applies them, then runs the detectors over them. Alerts are
/// recorded after the records are durable; a failure to record them is logged and
/// does not undo the records.
fn apply<S: Store + ?Sized>(
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
    /// Authentication events are waiting in [`PendingAuth`].
    AuthEvents,
    /// Detection parameters changed (a reload).
    Detect(Box<portcullis_detect::Config>),
}

/// Authentication events on their way to the store. Deciding tasks append to one
/// bounded list and wake the applier only when the list was empty; the applier takes
/// the whole list at once. Unlike one channel message per event, a commit that takes
/// longer than usual (a WAL checkpoint) does not drop events: the list holds
/// [`PENDING_AUTH_EVENTS`], and beyond that an event is counted and reported, never
/// waited on (it is in `auth.log` either way).
#[derive(Debug, Default)]
pub struct PendingAuth {
    events: Mutex<Vec<portcullis_storage::AuthEvent>>,
    refused: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

impl PendingAuth {
    /// Events refused so far because the list was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Moves every waiting event into `into` (which should be empty).
    fn take(&self, into: &mut Vec<portcullis_storage::AuthEvent>) {
        std::mem::swap(&mut *crate::lock(&self.events), into);
    }

    fn is_empty(&self) -> bool {
        crate::lock(&self.events).is_empty()
    }
}

/// The deciding side of [`PendingAuth`].
#[derive(Debug, Clone)]
pub struct AuthEventSender {
    pending: Arc<PendingAuth>,
    wake: SyncSender<ApplierMessage>,
}

impl AuthEventSender {
    pub fn new(pending: Arc<PendingAuth>, wake: SyncSender<ApplierMessage>) -> Self {
        Self { pending, wake }
    }

    /// Queues one event for the store. Never blocks.
    pub fn send(&self, event: portcullis_storage::AuthEvent) {
        let first = {
            let mut events = crate::lock(&self.pending.events);
            if events.len() >= PENDING_AUTH_EVENTS {
                drop(events);
                self.refuse();
                return;
            }
            events.push(event);
            events.len() == 1
        };
        // A lost wake-up (full inbox) costs nothing: the applier looks at the list
        // after every message it handles and at least once a second.
        if first {
            let _ = self.wake.try_send(ApplierMessage::AuthEvents);
        }
    }

    fn refuse(&self) {
        let refused = self.pending.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let mut last = crate::lock(&self.pending.last_warning);
        if last.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
            *last = Some(now);
            tracing::warn!(
                refused,
                "the store cannot keep up; authentication events were not stored (auth.log has them)"
            );
        }
    }
}

/// Runs the applier until its channel closes, then applies what is left and returns.
///
/// Appended batches arrive in memory and are applied without reading the journal back;
/// when a batch is missing (the channel was full) or out of order, the applier reads
/// the gap from the journal instead. Journal segments older than the retention (and
/// already applied) are pruned hourly; stored authentication events and closed
/// sessions past theirs are deleted every ten minutes, a small batch between two
/// messages (and continuously while the inbox is empty). Open sessions silent for
/// `retention.stale_after` seconds are marked stale every minute, or twice per
/// `stale_after` when that is shorter. Event times outside `clock` around their
/// arrival are set to arrival.
#[allow(clippy::too_many_arguments)]
pub fn run_applier<S: Store + ?Sized>(
    store: &mut S,
    reader: &JournalReader,
    journal_dir: &std::path::Path,
    inbox: &Receiver<ApplierMessage>,
    auth_events: &PendingAuth,
    retention: Retention,
    clock: ClockBounds,
    mut detection: Detection,
    export: Option<Arc<portcullis_export::Exporter>>,
) {
    let export = export.as_deref();
    match detection.warm_up(&mut *store, crate::now_unix()) {
        Ok(n) => tracing::info!(
            events = n,
            profiles = detection.engine().stats().profiles,
            "detection state rebuilt from history"
        ),
        Err(e) => tracing::error!(error = %e, "rebuilding detection state failed; profiles start empty"),
    }
    let detection = &mut detection;
    let mut waiting = AuthWaiting { pending: auth_events, events: Vec::new(), export };
    let mut position = recover(&mut *store, reader, detection, clock, &mut waiting);
    let mut last_prune = SystemTime::now();
    let mut pending: Option<ApplierMessage> = None;
    let mut last_auth_commit = Instant::now();
    let stale_after = retention.stale_after;
    let sweep_every = Duration::from_secs(stale_after.map_or(60, |s| u64::try_from(s / 2).unwrap_or(0).clamp(1, 60)));
    let mut last_sweep: Option<std::time::Instant> = None;
    let mut pruner = Pruner::new(retention);
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
            // While a retention pass is under way, an empty inbox means another step.
            None if pruner.busy() => match inbox.try_recv() {
                Ok(m) => Ok(m),
                Err(TryRecvError::Empty) => {
                    pruner.step(&mut *store);
                    continue;
                }
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            },
            None => inbox.recv_timeout(Duration::from_secs(1)),
        };
        match message {
            Ok(ApplierMessage::Appended { start, end, packets }) => {
                if end <= position {
                    continue;
                }
                if start != position {
                    position = recover(&mut *store, reader, detection, clock, &mut waiting);
                    continue;
                }
                // Fold directly following batches into one transaction.
                let mut records: Vec<AccountingRecord> = packets.iter().filter_map(|p| record_of(p, clock)).collect();
                let mut through = end;
                while records.len() < APPLY_BATCH {
                    match inbox.try_recv() {
                        Ok(ApplierMessage::Appended { start, end, packets }) if start == through => {
                            records.extend(packets.iter().filter_map(|p| record_of(p, clock)));
                            through = end;
                        }
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                match apply(&mut *store, Some(detection), &mut records, through) {
                    Ok(()) => position = through,
                    Err(e) => {
                        tracing::error!(error = %e, "applying records failed; re-reading the journal");
                        std::thread::sleep(Duration::from_millis(500));
                        position = recover(&mut *store, reader, detection, clock, &mut waiting);
                    }
                }
            }
            Ok(ApplierMessage::AuthEvents) => {
                // A commit costs more than many inserts (and a wake-up per event more
                // than a nap): under load (the last commit is recent) events arriving
                // within `GATHER` share the transaction; a lone event is stored at once.
                if last_auth_commit.elapsed() < GATHER {
                    std::thread::sleep(GATHER);
                }
                store_auth_events(&mut *store, detection, &mut waiting);
                last_auth_commit = Instant::now();
            }
            Ok(ApplierMessage::Detect(config)) => {
                match detection.reconfigure(&mut *store, *config, crate::now_unix()) {
                    Ok(n) => tracing::info!(events = n, "detection parameters reloaded; state rebuilt from history"),
                    Err(e) => tracing::error!(error = %e, "rebuilding detection state failed; profiles start empty"),
                }
            }
            Ok(ApplierMessage::Counters(c)) => {
                if let Err(e) = store.save_counters(&c) {
                    tracing::warn!(error = %e, "saving ingestion counters failed");
                }
            }
            Err(RecvTimeoutError::Timeout) => position = recover(&mut *store, reader, detection, clock, &mut waiting),
            Err(RecvTimeoutError::Disconnected) => {
                recover(&mut *store, reader, detection, clock, &mut waiting);
                store_auth_events(&mut *store, detection, &mut waiting);
                return;
            }
        }
        if !auth_events.is_empty() {
            store_auth_events(&mut *store, detection, &mut waiting);
            last_auth_commit = Instant::now();
        }
        pruner.step(&mut *store);
        if let Some(keep) = retention.journal {
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

/// Stores every waiting authentication event in one transaction (enriched with its
/// location), offers them to the export sinks, then runs the detectors over them.
fn store_auth_events<S: Store + ?Sized>(store: &mut S, detection: &mut Detection, waiting: &mut AuthWaiting<'_>) {
    let AuthWaiting { pending, events, export } = waiting;
    pending.take(events);
    if events.is_empty() {
        return;
    }
    for e in events.iter_mut() {
        detection.enrich_auth(e);
    }
    if let Err(e) = store.record_auth_events(events) {
        tracing::warn!(error = %e, events = events.len(), "recording authentication events failed");
    }
    if let Some(export) = export {
        export.offer_auth(events);
    }
    let observed: Vec<_> = events.iter().filter_map(crate::detection::event_of_auth).collect();
    events.clear();
    if let Err(e) = detection.observe_and_record(store, &observed) {
        tracing::error!(error = %e, "recording alerts failed");
    }
}

/// The authentication events waiting to be stored, the list they are taken into (empty
/// between calls, kept so its memory is reused) and the export sinks offered them.
struct AuthWaiting<'a> {
    pending: &'a PendingAuth,
    events: Vec<portcullis_storage::AuthEvent>,
    export: Option<&'a portcullis_export::Exporter>,
}

/// Applies whatever the journal holds beyond the store's applied position; returns
/// the position reached (or the stored one if reading fails). Authentication events
/// that arrive meanwhile are stored (and detected on) between two batches, so a long
/// catch-up after a restart does not fill their list and refuse them.
fn recover<S: Store + ?Sized>(
    store: &mut S,
    reader: &JournalReader,
    detection: &mut Detection,
    clock: ClockBounds,
    waiting: &mut AuthWaiting<'_>,
) -> Position {
    let between = |s: &mut S, d: Option<&mut Detection>, _: &Report| {
        if let Some(d) = d {
            store_auth_events(s, d, waiting);
        }
    };
    match catch_up_with(store, reader, Some(detection), clock, between) {
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

#[cfg(test)]
mod tests {
    use portcullis_storage::conformance::auth_event as event;
    use portcullis_storage::{AuthQuery, SessionQuery, SqliteStore, SyncMode};

    use super::*;

    fn count(store: &SqliteStore, user: &str) -> usize {
        store.auth_events(&AuthQuery { user: Some(user.into()), ..AuthQuery::default() }).unwrap().len()
    }

    #[test]
    fn retention_prunes_in_small_steps_while_the_applier_keeps_applying() {
        let dir = tempfile::tempdir().unwrap();
        let now_ms = crate::now_ms();
        let old_ms = now_ms - 400 * 86_400_000;
        let mut store = SqliteStore::open(dir.path(), SyncMode::Normal).unwrap();
        const OLD: usize = 60_000;
        for chunk in 0..OLD / 1000 {
            let events: Vec<_> =
                (0..1000).map(|i| event(old_ms + (chunk * 1000 + i) as i64, "old", "reject")).collect();
            store.record_auth_events(&events).unwrap();
        }
        let old = old_ms / 1000;
        let sessions = [
            portcullis_storage::conformance::record(1, "gone", "vpn", "a", old),
            portcullis_storage::conformance::record(2, "gone", "vpn", "a", old + 60),
            portcullis_storage::conformance::record(1, "still", "vpn", "b", old),
        ];
        store.apply(&sessions, Position::default()).unwrap();
        drop(store);

        let (tx, inbox) = std::sync::mpsc::sync_channel(1024);
        let pending = Arc::new(PendingAuth::default());
        let sender = AuthEventSender::new(Arc::clone(&pending), tx.clone());
        // Queued before the applier starts: it is the first thing it handles.
        sender.send(event(now_ms, "new", "reject"));
        let journal = dir.path().join("journal");
        // Long enough that the old open session is not marked stale meanwhile.
        let retention =
            Retention { journal: None, auth_event_days: 365, session_days: 365, stale_after: Some(1000 * 86_400) };
        let mut store = SqliteStore::open(dir.path(), SyncMode::Normal).unwrap();
        let applier = std::thread::spawn(move || {
            let reader = JournalReader::new(&journal);
            let detection = Detection::new(portcullis_geo::GeoDb::empty(), portcullis_detect::Config::default());
            run_applier(
                &mut store,
                &reader,
                &journal,
                &inbox,
                &pending,
                retention,
                ClockBounds::default(),
                detection,
                None,
            );
        });
        let view = SqliteStore::open_read_only(dir.path()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while count(&view, "new") == 0 {
            assert!(Instant::now() < deadline, "the new event was never stored");
            std::thread::sleep(Duration::from_millis(1));
        }
        // The applier stored the new event before retention was through.
        let left = count(&view, "old");
        assert!(left > 0, "retention ran to the end before the applier applied anything");
        // More events while retention goes on are stored too.
        for i in 1..=20 {
            sender.send(event(now_ms + i, "new", "reject"));
            std::thread::sleep(Duration::from_millis(2));
        }
        while count(&view, "old") > 0 || count(&view, "new") < 21 {
            assert!(Instant::now() < deadline, "retention or the applier stalled: {}", count(&view, "old"));
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(sender);
        drop(tx);
        applier.join().unwrap();
        let users: Vec<_> =
            view.sessions(&SessionQuery::default()).unwrap().into_iter().filter_map(|s| s.user).collect();
        assert_eq!(users, vec!["still"], "the closed old session went, the open one stays");
    }

    #[test]
    fn authentication_events_waiting_during_a_catch_up_are_stored_between_its_batches() {
        use portcullis_radius::{Code, Identifier, PacketBuilder, SharedSecret, attr};
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join("journal");
        let mut journal =
            portcullis_storage::Journal::open(&journal_dir, portcullis_storage::JournalSync::Process).unwrap();
        let packets: Vec<RawPacket> = (0..3 * APPLY_BATCH)
            .map(|i| {
                let mut b = PacketBuilder::new(Code::AccountingRequest, Identifier(0));
                b.attribute(attr::ACCT_STATUS_TYPE, &1u32.to_be_bytes()).unwrap();
                b.attribute(attr::USER_NAME, b"pat").unwrap();
                b.attribute(attr::ACCT_SESSION_ID, i.to_string().as_bytes()).unwrap();
                let packet = b.encode_computed_request(&SharedSecret::new("s")).unwrap();
                RawPacket {
                    received_ms: 1_000,
                    client: "c".into(),
                    vendor: "generic".into(),
                    source: "127.0.0.1:1".into(),
                    packet,
                }
            })
            .collect();
        journal.append(&packets).unwrap();
        drop(journal);
        let mut store = SqliteStore::open(dir.path(), SyncMode::Normal).unwrap();
        let pending = Arc::new(PendingAuth::default());
        let (tx, _inbox) = std::sync::mpsc::sync_channel(4);
        let sender = AuthEventSender::new(Arc::clone(&pending), tx);
        sender.send(event(2_000, "waiting", "reject"));
        let mut detection = Detection::new(portcullis_geo::GeoDb::empty(), portcullis_detect::Config::default());
        let reader = JournalReader::new(&journal_dir);
        let mut waiting = AuthWaiting { pending: &pending, events: Vec::new(), export: None };
        let reached = recover(&mut store, &reader, &mut detection, ClockBounds::default(), &mut waiting);
        assert_eq!(reached, store.applied_position().unwrap());
        assert_eq!(store.sessions(&SessionQuery::default()).unwrap().len(), 3 * APPLY_BATCH);
        assert_eq!(count(&store, "waiting"), 1, "stored by the catch-up, not left to wait for it");
        assert!(pending.is_empty());
        // In the apply order, after the first batch and before the last.
        let fed = store.history(0, 0, 10 * APPLY_BATCH).unwrap();
        let at = fed.iter().position(|f| matches!(f.1, portcullis_storage::Fed::Auth(_))).unwrap();
        assert!((APPLY_BATCH..3 * APPLY_BATCH).contains(&at), "{at}");
    }

    #[test]
    fn events_wait_in_one_bounded_list_and_wake_the_applier_once() {
        let pending = Arc::new(PendingAuth::default());
        let (wake, inbox) = std::sync::mpsc::sync_channel(4);
        let sender = AuthEventSender::new(Arc::clone(&pending), wake);
        let extra: i64 = 3;
        let total = i64::try_from(PENDING_AUTH_EVENTS).unwrap() + extra;
        for n in 0..total {
            sender.send(event(n, "alice", "accept"));
        }
        assert!(matches!(inbox.try_recv(), Ok(ApplierMessage::AuthEvents)));
        assert!(inbox.try_recv().is_err(), "one wake-up for the whole list");
        assert_eq!(pending.refused(), u64::try_from(extra).unwrap(), "events beyond the bound are counted");
        let mut taken = Vec::new();
        pending.take(&mut taken);
        assert_eq!(taken.len(), PENDING_AUTH_EVENTS);
        assert!(taken.iter().enumerate().all(|(i, e)| e.time_ms == i64::try_from(i).unwrap()), "in order");
        assert!(pending.is_empty());
        // The next event after the applier emptied the list wakes it again.
        sender.send(event(0, "alice", "accept"));
        assert!(matches!(inbox.try_recv(), Ok(ApplierMessage::AuthEvents)));
    }
}
