//! The I/O shell around geolocation and the detection engine: enriches records and
//! authentication events, turns them into detection events, and stores alerts.
//! The applier (live) and `portcullis replay` (history) run the same code.

use std::net::IpAddr;
use std::path::PathBuf;

use portcullis_accounting::{AccountingRecord, StatusType};
use portcullis_detect::{AlertDraft, Engine, Event, EventKind};
use portcullis_geo::{GeoDb, GeoError, Location};
use portcullis_storage::{AlertChange, AuthEvent, Fed, Session, StorageError, Store};
use serde::Deserialize;

/// `[geo]`: offline IP geolocation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoConfig {
    /// MMDB files, city database first, then an ASN database (optional).
    pub databases: Vec<PathBuf>,
    /// How often the files are checked for changes (seconds).
    pub check_seconds: Option<u64>,
}

impl GeoConfig {
    /// Opens the configured databases (none: every public address is unknown).
    pub fn open(&self) -> Result<GeoDb, GeoError> {
        let mut db = if self.databases.is_empty() { GeoDb::empty() } else { GeoDb::open(&self.databases)? };
        if let Some(s) = self.check_seconds {
            db.set_check_interval(std::time::Duration::from_secs(s));
        }
        Ok(db)
    }
}

/// Geolocation and detection, owned by one thread.
pub struct Detection {
    geo: std::sync::Arc<std::sync::Mutex<GeoDb>>,
    engine: Engine,
    out: Vec<AlertDraft>,
}

impl std::fmt::Debug for Detection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detection").field("geo", &self.geo).field("engine", &self.engine).finish()
    }
}

/// The address in a Calling-Station-Id, when it holds one (RRAS, Cisco ASA, F5 and
/// others send the client's public address; 802.1X NAS send a MAC).
pub fn station_ip(calling_station_id: &str) -> Option<IpAddr> {
    let s = calling_station_id.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(|i| i.to_canonical())
}

/// Adds the client's location to a record that has none yet.
pub fn locate_record(geo: &mut GeoDb, r: &mut AccountingRecord) {
    if r.location.is_none() {
        r.location = r.client_ip.map(|ip| geo.lookup(ip));
    }
}

/// Adds the calling station's location to an authentication event that has none yet.
pub fn locate_auth(geo: &mut GeoDb, e: &mut AuthEvent) {
    if e.location.is_none() {
        e.location = e.calling_station_id.as_deref().and_then(station_ip).map(|ip| geo.lookup(ip));
    }
}

/// The detection event of an accounting record (Interim-Updates are none).
pub fn event_of_record(r: &AccountingRecord) -> Option<Event> {
    let kind = match r.status_type() {
        StatusType::Start => EventKind::VpnStart,
        StatusType::Stop => EventKind::VpnStop,
        s if s.is_nas_restart() => EventKind::NasReset,
        _ => return None,
    };
    let user = r.user.clone().unwrap_or_default();
    if user.is_empty() && kind != EventKind::NasReset {
        return None;
    }
    Some(Event {
        time: r.event_time,
        kind,
        user,
        ip: r.client_ip,
        device: r.device.clone(),
        nas: Some(r.nas.clone()),
        nas_ip: r.nas_ip,
        client: r.details.get("client").cloned(),
        session: r.session_key.clone(),
        reason: None,
        location: r.location.clone(),
    })
}

/// The detection event of an authentication decision (challenges are none).
pub fn event_of_auth(e: &AuthEvent) -> Option<Event> {
    let (kind, reason) = match (e.decision.as_str(), e.mfa.as_deref()) {
        // The second factor that admitted the login, for the timeline.
        ("accept", mfa) => (EventKind::AuthSuccess, mfa.map(str::to_owned)),
        // The second factor refused after the password verified (a wrong, replayed or
        // expired code, a lockout, no factor enrolled, a denied push, ...): never a
        // wrong password. NPS logs it as reason 21 without saying which.
        ("reject", Some(m)) if !m.is_empty() => (EventKind::MfaFailure, Some(m.to_owned())),
        ("reject", _) if e.reason_code == 21 => (EventKind::MfaFailure, Some("second_factor".to_owned())),
        ("reject", _) => {
            let reason = match e.reason_code {
                16 => "bad_password",
                8 => "unknown_user",
                34..=36 => "account",
                _ => "policy",
            };
            (EventKind::AuthFailure, Some(reason.to_owned()))
        }
        _ => return None,
    };
    Some(Event {
        time: e.time_ms.div_euclid(1000),
        kind,
        user: e.user.clone(),
        ip: e.calling_station_id.as_deref().and_then(station_ip),
        device: None,
        nas: Some(e.nas.clone()),
        nas_ip: None,
        client: None,
        session: None,
        reason,
        location: e.location.clone(),
    })
}

impl Detection {
    pub fn new(geo: GeoDb, config: portcullis_detect::Config) -> Self {
        Self { geo: std::sync::Arc::new(std::sync::Mutex::new(geo)), engine: Engine::new(config), out: Vec::new() }
    }

    /// The geolocation databases, shared with the push approval pages.
    pub fn geo(&self) -> std::sync::Arc<std::sync::Mutex<GeoDb>> {
        std::sync::Arc::clone(&self.geo)
    }

    /// New detection parameters: the engine starts again from the history window, as
    /// after a restart with them, so live and restarted servers agree.
    pub fn reconfigure<S: Store + ?Sized>(
        &mut self,
        store: &mut S,
        config: portcullis_detect::Config,
        now: i64,
    ) -> Result<usize, StorageError> {
        self.engine = Engine::new(config);
        self.warm_up(store, now)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Where `ip` is.
    pub fn locate(&mut self, ip: IpAddr) -> Location {
        crate::lock(&self.geo).lookup(ip)
    }

    /// Adds the client's location to a record that has none yet.
    pub fn enrich_record(&mut self, r: &mut AccountingRecord) {
        locate_record(&mut crate::lock(&self.geo), r);
    }

    /// Adds the calling station's location to an authentication event.
    pub fn enrich_auth(&mut self, e: &mut AuthEvent) {
        locate_auth(&mut crate::lock(&self.geo), e);
    }

    /// Runs the detectors over events (in the given order); returns their alerts.
    pub fn observe(&mut self, events: &[Event]) -> Vec<AlertDraft> {
        self.out.clear();
        for e in events {
            match (e.location.is_none(), e.ip) {
                (true, Some(ip)) => {
                    let location = Some(crate::lock(&self.geo).lookup(ip));
                    let located = Event { location, ..e.clone() };
                    self.engine.ingest(&located, &mut self.out);
                }
                _ => self.engine.ingest(e, &mut self.out),
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Runs the detectors and records their alerts.
    pub fn observe_and_record<S: Store + ?Sized>(
        &mut self,
        store: &mut S,
        events: &[Event],
    ) -> Result<usize, StorageError> {
        let drafts = self.observe(events);
        record(store, &drafts)
    }

    /// Rebuilds the engine's state from what the store holds (sessions and
    /// authentication events of the history window), recording any alert the
    /// history raises that is not stored yet. Returns the number of events.
    ///
    /// History comes in the order the store applied it — the order live traffic and
    /// replayed files reached the detectors — so the engine ends where it was and
    /// raises nothing live traffic did not. It is read in pages, so memory holds one
    /// page, not the whole window.
    pub fn warm_up<S: Store + ?Sized>(&mut self, store: &mut S, now: i64) -> Result<usize, StorageError> {
        const DAY: i64 = 86_400;
        const PAGE: usize = 16_384;
        let days = i64::from(self.engine.config().new_country.history_days.max(self.engine.config().window_days));
        let since = now - days * DAY;
        let mut total = 0;
        let mut from = 0;
        loop {
            let page = store.history(from, since, PAGE)?;
            let Some(&(last, _)) = page.last() else { return Ok(total) };
            from = last + 1;
            let events: Vec<Event> = page.into_iter().filter_map(|(_, fed)| event_of_fed(fed)).collect();
            total += events.len();
            let drafts = self.observe(&events);
            record(store, &drafts)?;
        }
    }
}

/// The detection event of one event of stored history.
fn event_of_fed(fed: Fed) -> Option<Event> {
    match fed {
        Fed::Start(s) => {
            let time = s.order.start.map_or(s.started_at, |(_, t)| t);
            session_event(s, EventKind::VpnStart, time)
        }
        Fed::Stop(s) => {
            let time = s.stopped_at?;
            session_event(s, EventKind::VpnStop, time)
        }
        Fed::Reset { nas, nas_ip, client, time } => Some(Event {
            time,
            kind: EventKind::NasReset,
            user: String::new(),
            ip: None,
            device: None,
            nas: Some(nas),
            nas_ip: nas_ip.and_then(|i| i.parse().ok()),
            client,
            session: None,
            reason: None,
            location: None,
        }),
        Fed::Auth(a) => event_of_auth(&a),
    }
}

/// The configured client a stored session was recorded through.
fn recorded_client(details: &serde_json::Value) -> Option<String> {
    details.get("client").and_then(|c| c.as_str()).map(str::to_owned)
}

fn session_event(s: Session, kind: EventKind, time: i64) -> Option<Event> {
    Some(Event {
        time,
        kind,
        user: s.user?,
        ip: s.client_ip.as_deref().and_then(|i| i.parse().ok()),
        device: s.device,
        nas_ip: s.nas_ip.as_deref().and_then(|i| i.parse().ok()),
        client: recorded_client(&s.details),
        nas: Some(s.nas),
        session: Some(s.session_key),
        reason: None,
        location: s.location,
    })
}

/// Detection events of stored sessions and authentication events, in event-time order.
pub fn merge(sessions: &[Session], auth: &[AuthEvent]) -> Vec<Event> {
    let mut events = Vec::new();
    for s in sessions {
        let Some(user) = s.user.clone() else { continue };
        let base = Event {
            time: s.started_at,
            kind: EventKind::VpnStart,
            user,
            ip: s.client_ip.as_deref().and_then(|i| i.parse().ok()),
            device: s.device.clone(),
            nas: Some(s.nas.clone()),
            nas_ip: s.nas_ip.as_deref().and_then(|i| i.parse().ok()),
            client: recorded_client(&s.details),
            session: Some(s.session_key.clone()),
            reason: None,
            location: s.location.clone(),
        };
        if let Some(stop) = s.stopped_at {
            events.push(Event { time: stop, kind: EventKind::VpnStop, ..base.clone() });
        }
        events.push(base);
    }
    events.extend(auth.iter().filter_map(event_of_auth));
    // Stable: a Start and its Stop at the same second keep Start first.
    events.sort_by_key(|e| (e.time, e.kind != EventKind::VpnStart));
    events
}

/// The stored forms of a detection event (replayed JSON lines are stored like live
/// traffic, so profiles and later restarts see them).
pub fn stored_forms(e: Event) -> Option<Result<AccountingRecord, AuthEvent>> {
    let status = match e.kind {
        EventKind::VpnStart => 1,
        EventKind::VpnStop => 2,
        EventKind::NasReset => 7,
        EventKind::AuthSuccess | EventKind::AuthFailure | EventKind::MfaFailure => {
            let accepted = e.kind == EventKind::AuthSuccess;
            let reason_code = match (e.kind, e.reason.as_deref().unwrap_or("")) {
                (EventKind::AuthSuccess, _) => 0,
                (EventKind::AuthFailure, "unknown_user") => 8,
                (EventKind::AuthFailure, "account") => 34,
                (EventKind::AuthFailure, "policy") => 65,
                (EventKind::MfaFailure, _) => 21,
                _ => 16,
            };
            let mfa = match e.kind {
                EventKind::MfaFailure => Some(e.reason.unwrap_or_default()),
                EventKind::AuthSuccess => e.reason,
                _ => None,
            };
            return Some(Err(AuthEvent {
                time_ms: e.time.saturating_mul(1000),
                user_raw: e.user.clone(),
                user: e.user,
                nas: e.nas.unwrap_or_default(),
                client: String::new(),
                calling_station_id: e.ip.map(|i| i.to_string()),
                method: String::new(),
                decision: if accepted { "accept" } else { "reject" }.into(),
                reason_code,
                event_id: if accepted { 6272 } else { 6273 },
                policy: None,
                message: String::new(),
                connection_request_policy: None,
                mfa,
                location: e.location,
                approval: None,
            }));
        }
    };
    if e.kind != EventKind::NasReset && e.user.is_empty() {
        return None;
    }
    let session_key = (e.kind != EventKind::NasReset).then(|| e.session.clone().unwrap_or_else(|| e.identity()));
    let user = (!e.user.is_empty()).then_some(e.user);
    Some(Ok(AccountingRecord {
        user_raw: user.clone(),
        user,
        session_id: e.session,
        session_key,
        client_ip: e.ip,
        device: e.device,
        location: e.location,
        ..AccountingRecord::bare(status, e.time, e.nas.as_deref().unwrap_or_default())
    }))
}

/// Stores drafts; logs the new ones. Returns how many alerts were created or folded.
pub fn record<S: Store + ?Sized>(store: &mut S, drafts: &[AlertDraft]) -> Result<usize, StorageError> {
    if drafts.is_empty() {
        return Ok(0);
    }
    let changes = store.record_alerts(drafts, crate::now_ms())?;
    let mut n = 0;
    for (d, c) in drafts.iter().zip(changes) {
        match c {
            AlertChange::Created(id) => {
                n += 1;
                tracing::warn!(alert = id, kind = d.kind.name(), severity = d.severity.name(), user = %d.user, "{}", d.message);
            }
            AlertChange::Folded(id) => {
                n += 1;
                tracing::info!(alert = id, kind = d.kind.name(), user = %d.user, "alert repeated");
            }
            AlertChange::Known => {}
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(decision: &str, reason_code: u32, mfa: Option<&str>) -> AuthEvent {
        AuthEvent {
            time_ms: 1_767_600_000_500,
            user: "alice".into(),
            user_raw: "EXAMPLE\\alice".into(),
            nas: "vpn".into(),
            client: "c".into(),
            calling_station_id: Some("198.51.100.7".into()),
            method: "pap".into(),
            decision: decision.into(),
            reason_code,
            event_id: 6273,
            policy: None,
            message: String::new(),
            connection_request_policy: None,
            mfa: mfa.map(Into::into),
            location: None,
            approval: None,
        }
    }

    #[test]
    fn audit_events_become_detection_events_and_back() {
        let cases = [
            (auth("accept", 0, Some("totp")), EventKind::AuthSuccess, Some("totp")),
            (auth("reject", 16, None), EventKind::AuthFailure, Some("bad_password")),
            (auth("reject", 8, None), EventKind::AuthFailure, Some("unknown_user")),
            (auth("reject", 65, None), EventKind::AuthFailure, Some("policy")),
            (auth("reject", 34, None), EventKind::AuthFailure, Some("account")),
            (auth("reject", 16, Some("push_denied")), EventKind::MfaFailure, Some("push_denied")),
            (auth("reject", 16, Some("wrong_code")), EventKind::MfaFailure, Some("wrong_code")),
            // A replayed code or no factor enrolled is the second factor refusing, not a
            // wrong password; so is NPS's reason 21 when the log names no outcome.
            (auth("reject", 21, Some("replayed")), EventKind::MfaFailure, Some("replayed")),
            (auth("reject", 21, Some("not_enrolled")), EventKind::MfaFailure, Some("not_enrolled")),
            (auth("reject", 21, None), EventKind::MfaFailure, Some("second_factor")),
            // No network policy matched.
            (auth("reject", 48, None), EventKind::AuthFailure, Some("policy")),
        ];
        for (a, kind, reason) in cases {
            let e = event_of_auth(&a).unwrap();
            assert_eq!((e.kind, e.reason.as_deref()), (kind, reason), "{a:?}");
            assert_eq!(e.time, 1_767_600_000);
            assert_eq!(e.ip, Some("198.51.100.7".parse().unwrap()));
            // Stored again (replayed JSON lines) it means the same.
            let Some(Err(back)) = stored_forms(e.clone()) else { panic!() };
            let again = event_of_auth(&back).unwrap();
            assert_eq!((again.kind, again.reason.as_deref(), again.time), (kind, reason, e.time));
        }
        assert!(event_of_auth(&auth("challenge", 0, Some("challenge"))).is_none());
    }

    #[test]
    fn records_become_detection_events() {
        let mut r = AccountingRecord::bare(1, 100, "vpn");
        assert!(event_of_record(&r).is_none(), "no user, no event");
        r.user = Some("bob".into());
        r.session_key = Some("k".into());
        let e = event_of_record(&r).unwrap();
        assert_eq!((e.kind, e.session.as_deref()), (EventKind::VpnStart, Some("k")));
        r.status = 3;
        assert!(event_of_record(&r).is_none(), "interim updates are not connections");
        let reset = AccountingRecord::bare(7, 100, "vpn");
        assert_eq!(event_of_record(&reset).unwrap().kind, EventKind::NasReset);
        let Some(Ok(stored)) = stored_forms(e.clone()) else { panic!() };
        assert_eq!(event_of_record(&stored).unwrap(), e);
    }

    #[test]
    fn warm_up_reads_history_a_day_at_a_time_and_keeps_stops_for_later_days() {
        let dir = tempfile::tempdir().unwrap();
        let mut store =
            portcullis_storage::SqliteStore::open(dir.path(), portcullis_storage::SyncMode::Normal).unwrap();
        let now = 1_767_600_000;
        let day = 86_400;
        let session = |status, t, id: &str| AccountingRecord {
            user: Some("alice".into()),
            session_key: Some(id.into()),
            client_ip: Some("192.0.2.1".parse().unwrap()),
            location: Some(portcullis_geo::Location {
                country: Some("DE".into()),
                city: Some("Berlin".into()),
                latitude: Some(52.52),
                longitude: Some(13.4),
                ..Default::default()
            }),
            ..AccountingRecord::bare(status, t, "vpn")
        };
        // Started five days ago, stopped three days ago; one still open; one lost its Stop long ago.
        let records = [
            session(1, now - 5 * day, "a"),
            session(2, now - 3 * day, "a"),
            session(1, now - day, "b"),
            session(1, now - 400 * day, "stale"),
        ];
        store.apply(&records, portcullis_storage::Position::default()).unwrap();
        store.record_auth_events(&[auth("reject", 16, None)]).unwrap();
        let mut d = Detection::new(GeoDb::empty(), portcullis_detect::Config::default());
        let n = d.warm_up(&mut store, now).unwrap();
        assert_eq!(n, 4, "two starts, one stop, one audit event");
        let p = d.engine().profile("alice").unwrap();
        assert_eq!(p.open_sessions.len(), 1, "{p:?}");
        assert_eq!(p.locations[0].count, 2);
    }

    #[test]
    fn calling_station_addresses() {
        assert_eq!(station_ip("203.0.113.7"), Some("203.0.113.7".parse().unwrap()));
        assert_eq!(station_ip(" 2001:db8::1 "), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(station_ip("198.51.100.1:4500"), Some("198.51.100.1".parse().unwrap()));
        assert_eq!(station_ip("::ffff:192.0.2.1"), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(station_ip("00-11-22-33-44-55"), None);
        assert_eq!(station_ip(""), None);
    }
}
