//! The conformance battery every [`Store`] backend must pass. A backend's tests call
//! [`run_all`] with a factory that returns a fresh, empty store.

use portcullis_accounting::{AccountingRecord, session_key};

use portcullis_detect::{AlertDraft, AlertKind};

use crate::{
    AlertChange, AlertQuery, AlertUpdate, AuthEvent, AuthQuery, Counter, Cutoff, Fed, Position, Pruned, SessionQuery,
    Store, UserQuery,
};
use crate::{Change, ClientAdmin, ClientListing, ClientSecret, ClientSettings, ClientStore, RuntimeClients};

type Check<S> = (&'static str, fn(&mut S));
type ClientCheck<S> = (&'static str, fn(S));

/// Runs every check; panics with the check's name on the first failure.
pub fn run_all<S: Store>(mut fresh: impl FnMut() -> S) {
    let checks: [Check<S>; 26] = [
        ("start_then_stop", start_then_stop),
        ("stop_without_start", stop_without_start),
        ("interim_counters_never_double_count", interim_counters_never_double_count),
        ("accounting_on_off_close_only_that_nas", accounting_on_off_close_only_that_nas),
        ("accounting_on_by_address_closes_sessions_named_by_identifier", accounting_on_by_address),
        ("a_reset_from_another_client_ends_none_of_its_sessions", reset_from_another_client),
        ("interim_keeps_the_start_time", interim_keeps_the_start_time),
        ("interim_without_start_derives_the_start", interim_without_start_derives_the_start),
        ("silent_sessions_go_stale_and_a_stop_closes_them", silent_sessions_go_stale),
        ("retransmit_is_idempotent", retransmit_is_idempotent),
        ("stop_keeps_start_endpoint", stop_keeps_start_endpoint),
        ("query_filters", query_filters),
        ("applied_position_moves_with_records", applied_position_moves_with_records),
        ("counters_round_trip", counters_round_trip),
        ("auth_events_round_trip", auth_events_round_trip),
        ("session_location_round_trip", session_location_round_trip),
        ("alerts_fold_and_are_idempotent", alerts_fold_and_are_idempotent),
        ("alert_lifecycle", alert_lifecycle),
        ("alert_events_follow_every_change_in_order", alert_events_in_order),
        ("history_follows_apply_order", history_follows_apply_order),
        ("replayed_records_survive_reset", replayed_records_survive_reset),
        ("retention_prunes_old_events_and_closed_sessions", retention_prunes_old_events_and_closed_sessions),
        ("keyset_pages_cover_every_row_once", keyset_pages_cover_every_row_once),
        ("auth_filters_and_facets", auth_filters_and_facets),
        ("users_and_locations", users_and_locations),
        ("summary_counts", summary_counts),
    ];
    for (name, check) in checks {
        let mut store = fresh();
        run_check("storage", name, || check(&mut store));
    }
}

/// Runs one check; panics with the battery's and the check's name when it fails.
fn run_check(battery: &str, name: &str, check: impl FnOnce()) {
    if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_default();
        panic!("{battery} conformance check {name} failed: {msg}");
    }
}

/// A record as the normaliser would produce it.
pub fn record(status: u32, user: &str, nas: &str, session_id: &str, event_time: i64) -> AccountingRecord {
    let session = matches!(status, 1..=3);
    AccountingRecord {
        user_raw: (!user.is_empty()).then(|| format!("EXAMPLE\\{user}")),
        user: (!user.is_empty()).then(|| user.to_string()),
        session_id: (!session_id.is_empty()).then(|| session_id.to_string()),
        session_key: session.then(|| session_key("", nas, session_id, user)),
        ..AccountingRecord::bare(status, event_time, nas)
    }
}

fn commit<S: Store>(s: &mut S, records: Vec<AccountingRecord>) {
    let mut through = s.applied_position().expect("applied position");
    through.offset += records.len() as u64;
    s.apply(&records, through).expect("apply");
}

fn all<S: Store>(s: &S) -> Vec<crate::Session> {
    s.sessions(&SessionQuery::default()).expect("sessions")
}

fn start_then_stop<S: Store>(s: &mut S) {
    let mut start = record(1, "alice", "nas-1", "A1", 1000);
    start.client_ip = Some("198.51.100.7".parse().unwrap());
    start.framed_ip = Some("10.8.0.5".parse().unwrap());
    commit(s, vec![start]);
    let open = all(s);
    assert_eq!(open.len(), 1);
    assert!(open[0].open);
    assert_eq!(open[0].started_at, 1000);
    assert_eq!(open[0].stopped_at, None);
    assert_eq!(open[0].client_ip.as_deref(), Some("198.51.100.7"));
    let mut stop = record(2, "alice", "nas-1", "A1", 4600);
    stop.session_time = Some(3600);
    stop.input_octets = Some(5_000_000_000);
    stop.output_octets = Some(42);
    stop.terminate_cause = Some("User-Request".into());
    commit(s, vec![stop]);
    let closed = all(s);
    assert_eq!(closed.len(), 1);
    let c = &closed[0];
    assert!(!c.open);
    assert_eq!((c.started_at, c.stopped_at), (1000, Some(4600)));
    assert_eq!(c.input_octets, Some(5_000_000_000));
    assert_eq!(c.output_octets, Some(42));
    assert_eq!(c.terminate_cause.as_deref(), Some("User-Request"));
    assert_eq!(c.framed_ip.as_deref(), Some("10.8.0.5"));
}

fn stop_without_start<S: Store>(s: &mut S) {
    let mut stop = record(2, "bob", "nas-1", "B1", 10_000);
    stop.session_time = Some(600);
    commit(s, vec![stop]);
    let v = all(s);
    assert_eq!(v.len(), 1);
    assert!(!v[0].open);
    assert_eq!((v[0].started_at, v[0].stopped_at), (9_400, Some(10_000)));
}

fn interim_counters_never_double_count<S: Store>(s: &mut S) {
    commit(s, vec![record(1, "carol", "nas-1", "C1", 100)]);
    let mut i1 = record(3, "carol", "nas-1", "C1", 700);
    i1.session_time = Some(600);
    i1.input_octets = Some(1000);
    commit(s, vec![i1.clone(), i1.clone()]);
    commit(s, vec![i1]);
    let mut late = record(3, "carol", "nas-1", "C1", 400);
    late.session_time = Some(300);
    late.input_octets = Some(500);
    commit(s, vec![late]);
    let v = all(s);
    assert_eq!(v.len(), 1);
    assert!(v[0].open);
    assert_eq!(v[0].input_octets, Some(1000));
    assert_eq!(v[0].session_time, Some(600));
    assert_eq!(v[0].updated_at, 700);
}

fn accounting_on_off_close_only_that_nas<S: Store>(s: &mut S) {
    commit(
        s,
        vec![record(1, "a", "nas-1", "1", 100), record(1, "b", "nas-1", "2", 100), record(1, "c", "nas-2", "3", 100)],
    );
    commit(s, vec![record(7, "", "nas-1", "", 200)]);
    let v = all(s);
    let by_user = |u: &str| v.iter().find(|x| x.user.as_deref() == Some(u)).unwrap().clone();
    for u in ["a", "b"] {
        let x = by_user(u);
        assert!(!x.open, "{u} must be closed by Accounting-On");
        assert_eq!(x.stopped_at, Some(200));
        assert_eq!(x.terminate_cause.as_deref(), Some("NAS-Reboot"));
    }
    assert!(by_user("c").open);
    commit(s, vec![record(8, "", "nas-2", "", 300)]);
    assert!(all(s).iter().all(|x| !x.open));
}

/// A record as the normaliser would produce it for a packet from the configured client
/// `client`.
pub fn record_from(client: &str, status: u32, user: &str, nas: &str, session_id: &str, t: i64) -> AccountingRecord {
    let mut r = record(status, user, nas, session_id, t);
    r.session_key = r.session_key.map(|_| session_key(client, nas, session_id, user));
    r.details.insert("client".into(), client.into());
    r
}

fn reset_from_another_client<S: Store>(s: &mut S) {
    let nas_ip = "192.0.2.20".parse().unwrap();
    let mut start = record_from("vpn-a", 1, "gina", "vpn-a", "G1", 100);
    start.nas_ip = Some(nas_ip);
    commit(s, vec![start]);
    // Another client claims the same NAS-Identifier and NAS-IP-Address.
    let mut off = record_from("vpn-b", 8, "", "vpn-a", "", 200);
    off.nas_ip = Some(nas_ip);
    commit(s, vec![off]);
    // And a Stop naming gina's session reaches a session of its own.
    commit(s, vec![record_from("vpn-b", 2, "gina", "vpn-a", "G1", 250)]);
    let v = all(s);
    let open: Vec<_> = v.iter().filter(|x| x.open).collect();
    assert_eq!(open.len(), 1, "{v:?}");
    assert_eq!(open[0].session_key, session_key("vpn-a", "vpn-a", "G1", "gina"));
    // The client's own reset ends it.
    let mut own = record_from("vpn-a", 7, "", "vpn-a", "", 300);
    own.nas_ip = Some(nas_ip);
    commit(s, vec![own]);
    assert!(all(s).iter().all(|x| !x.open));
}

fn accounting_on_by_address<S: Store>(s: &mut S) {
    let nas_ip = "192.0.2.10".parse().unwrap();
    let mut start = record(1, "dave", "vpn-1", "D1", 100);
    start.nas_ip = Some(nas_ip);
    let mut other = record(1, "erin", "vpn-2", "E1", 100);
    other.nas_ip = Some("192.0.2.11".parse().unwrap());
    commit(s, vec![start, other]);
    // Accounting-On with only NAS-IP-Address: the normaliser names the NAS by address.
    let mut on = record(7, "", "192.0.2.10", "", 200);
    on.nas_ip = Some(nas_ip);
    commit(s, vec![on]);
    let v = all(s);
    let dave = v.iter().find(|x| x.user.as_deref() == Some("dave")).unwrap();
    assert!(!dave.open);
    assert_eq!(dave.stopped_at, Some(200));
    assert!(v.iter().find(|x| x.user.as_deref() == Some("erin")).unwrap().open);
    // And the other way round: a reset naming the NAS by identifier and address closes
    // sessions recorded under the address alone.
    let mut by_ip = record(1, "frank", "192.0.2.11", "F1", 300);
    by_ip.nas_ip = Some("192.0.2.11".parse().unwrap());
    commit(s, vec![by_ip]);
    let mut off = record(8, "", "vpn-2", "", 400);
    off.nas_ip = Some("192.0.2.11".parse().unwrap());
    commit(s, vec![off]);
    assert!(all(s).iter().all(|x| !x.open));
}

fn interim_keeps_the_start_time<S: Store>(s: &mut S) {
    commit(s, vec![record(1, "gina", "nas-1", "G1", 1000)]);
    // The NAS counts session time from before the Start's timestamp.
    let mut interim = record(3, "gina", "nas-1", "G1", 1600);
    interim.session_time = Some(900);
    commit(s, vec![interim.clone()]);
    assert_eq!(all(s)[0].started_at, 1000);
    let mut stop = record(2, "gina", "nas-1", "G1", 2000);
    stop.session_time = Some(1500);
    commit(s, vec![stop, interim]);
    assert_eq!(all(s)[0].started_at, 1000);
}

fn interim_without_start_derives_the_start<S: Store>(s: &mut S) {
    let mut interim = record(3, "hal", "nas-1", "H1", 5000);
    interim.session_time = Some(1200);
    commit(s, vec![interim]);
    let v = all(s);
    assert!(v[0].open);
    assert_eq!(v[0].started_at, 3800);
    // The Start arriving late is the start.
    commit(s, vec![record(1, "hal", "nas-1", "H1", 3810)]);
    assert_eq!(all(s)[0].started_at, 3810);
}

fn silent_sessions_go_stale<S: Store>(s: &mut S) {
    commit(s, vec![record(1, "ivy", "nas-1", "I1", 1000), record(1, "jon", "nas-3", "J1", 1000)]);
    let mut alive = record(3, "jon", "nas-3", "J1", 90_000);
    alive.session_time = Some(89_000);
    commit(s, vec![alive]);
    // The default threshold is at least a day.
    assert_eq!(s.mark_stale(80_000, None).unwrap(), 0);
    assert_eq!(s.mark_stale(88_000, None).unwrap(), 1);
    let ivy = |s: &S| all(s).into_iter().find(|x| x.session_id.as_deref() == Some("I1")).unwrap();
    let v = ivy(s);
    assert!(v.stale && !v.open && v.stopped_at.is_none());
    let open = s.sessions(&SessionQuery { open_only: true, ..SessionQuery::default() }).unwrap();
    assert_eq!(open.len(), 1);
    // Marking again, or replaying an older record, changes nothing.
    assert_eq!(s.mark_stale(88_000, None).unwrap(), 0);
    commit(s, vec![record(1, "ivy", "nas-1", "I1", 1000)]);
    assert!(ivy(s).stale);
    let mut stop = record(2, "ivy", "nas-1", "I1", 95_000);
    stop.session_time = Some(94_000);
    commit(s, vec![stop]);
    let v = ivy(s);
    assert!(!v.stale && !v.open);
    assert_eq!((v.started_at, v.stopped_at), (1000, Some(95_000)));
    // A configured threshold; twice a long Interim interval when none is configured.
    let mut i1 = record(3, "kim", "nas-2", "K1", 200_000);
    i1.session_time = Some(0);
    let mut i2 = record(3, "kim", "nas-2", "K1", 300_000);
    i2.session_time = Some(100_000);
    commit(s, vec![i1, i2]);
    let kim = |s: &S| all(s).into_iter().find(|x| x.session_id.as_deref() == Some("K1")).unwrap();
    s.mark_stale(450_000, None).unwrap();
    assert!(kim(s).open, "twice the 100,000 s interval has not passed");
    s.mark_stale(450_000, Some(3600)).unwrap();
    assert!(kim(s).stale);
    let mut i3 = record(3, "kim", "nas-2", "K1", 460_000);
    i3.session_time = Some(260_000);
    commit(s, vec![i3]);
    let k = kim(s);
    assert!(k.open && !k.stale, "a newer Interim-Update reopens a stale session");
}

fn retransmit_is_idempotent<S: Store>(s: &mut S) {
    let mut stop = record(2, "dave", "nas-1", "D1", 500);
    stop.session_time = Some(100);
    stop.output_octets = Some(77);
    commit(s, vec![record(1, "dave", "nas-1", "D1", 400)]);
    commit(s, vec![stop.clone()]);
    let once = all(s);
    commit(s, vec![stop]);
    commit(s, vec![record(1, "dave", "nas-1", "D1", 400)]);
    assert_eq!(all(s), once);
}

fn stop_keeps_start_endpoint<S: Store>(s: &mut S) {
    let mut start = record(1, "erin", "bigip", "E1", 10);
    start.client_ip = Some("203.0.113.9".parse().unwrap());
    start.device = Some("LAPTOP".into());
    start.details.insert("tunnel_group".into(), "STAFF".into());
    let mut stop = record(2, "erin", "bigip", "E1", 20);
    stop.details.insert("calling_station_id".into(), "x".into());
    commit(s, vec![start, stop]);
    let v = all(s);
    assert_eq!(v[0].client_ip.as_deref(), Some("203.0.113.9"));
    assert_eq!(v[0].device.as_deref(), Some("LAPTOP"));
    assert_eq!(v[0].details["tunnel_group"], "STAFF");
    assert_eq!(v[0].details["calling_station_id"], "x");
}

fn query_filters<S: Store>(s: &mut S) {
    commit(
        s,
        vec![
            record(1, "alice", "nas-1", "1", 100),
            record(1, "alice", "nas-1", "2", 200),
            record(1, "bob", "nas-1", "3", 300),
            record(2, "bob", "nas-1", "4", 50),
        ],
    );
    let q = |user: Option<&str>, open_only, since| SessionQuery {
        user: user.map(str::to_string),
        open_only,
        since,
        ..SessionQuery::default()
    };
    assert_eq!(s.sessions(&q(Some("alice"), false, None)).unwrap().len(), 2);
    assert_eq!(s.sessions(&q(Some("ALICE"), false, None)).unwrap().len(), 2);
    assert_eq!(s.sessions(&q(Some("EXAMPLE\\alice"), false, None)).unwrap().len(), 2);
    assert_eq!(s.sessions(&q(Some("bob"), true, None)).unwrap().len(), 1);
    assert_eq!(s.sessions(&q(None, false, Some(60))).unwrap().len(), 3);
    let newest = s.sessions(&SessionQuery { limit: Some(1), ..SessionQuery::default() }).unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].started_at, 300);
    let range = SessionQuery { started_from: Some(100), started_before: Some(300), ..SessionQuery::default() };
    let started: Vec<i64> = s.sessions(&range).unwrap().iter().map(|x| x.started_at).collect();
    assert!(started.iter().all(|t| (100..300).contains(t)) && !started.is_empty(), "{started:?}");
}

fn applied_position_moves_with_records<S: Store>(s: &mut S) {
    assert_eq!(s.applied_position().unwrap(), Position::default());
    s.apply(&[record(1, "a", "nas", "1", 1)], Position { segment: 1, offset: 100 }).unwrap();
    assert_eq!(s.applied_position().unwrap(), Position { segment: 1, offset: 100 });
    s.apply(&[], Position { segment: 2, offset: 7 }).unwrap();
    assert_eq!(s.applied_position().unwrap(), Position { segment: 2, offset: 7 });
    assert_eq!(all(s).len(), 1);
    s.reset_sessions().unwrap();
    assert_eq!(s.applied_position().unwrap(), Position::default());
    assert!(all(s).is_empty());
}

fn counters_round_trip<S: Store>(s: &mut S) {
    let c = |client: &str, reason: &str, count| Counter { client: client.into(), reason: reason.into(), count };
    s.save_counters(&[c("rras", "bad_authenticator", 3), c("rras", "accepted", 10)]).unwrap();
    s.save_counters(&[c("rras", "bad_authenticator", 4)]).unwrap();
    let got = s.counters().unwrap();
    assert_eq!(got, vec![c("rras", "accepted", 10), c("rras", "bad_authenticator", 4)]);
    // They count from the first save on, which later saves do not move.
    let since = s.counters_since().unwrap().expect("counters have a start");
    s.save_counters(&[c("rras", "accepted", 11)]).unwrap();
    assert_eq!(s.counters_since().unwrap(), Some(since));
}

/// An authentication event of `user` at `t` milliseconds.
pub fn auth_event(t: i64, user: &str, decision: &str) -> AuthEvent {
    AuthEvent {
        time_ms: t,
        user: user.into(),
        user_raw: user.to_uppercase(),
        nas: "nas".into(),
        client: "c".into(),
        calling_station_id: None,
        method: "pap".into(),
        decision: decision.into(),
        reason_code: if decision == "accept" { 0 } else { 16 },
        event_id: if decision == "accept" { 6272 } else { 6273 },
        policy: None,
        message: String::new(),
        connection_request_policy: Some("corp".into()),
        mfa: None,
        location: (user == "alice")
            .then(|| portcullis_geo::Location { country: Some("DE".into()), ..Default::default() }),
        approval: None,
    }
}

fn auth_events_round_trip<S: Store>(s: &mut S) {
    let e = auth_event;
    s.record_auth_events(&[e(1, "bob", "reject"), e(2, "bob", "accept"), e(3, "alice", "accept")]).unwrap();
    let all = s.auth_events(&AuthQuery::default()).unwrap();
    assert_eq!(all.iter().map(|x| x.time_ms).collect::<Vec<_>>(), vec![3, 2, 1]);
    let bob = s.auth_events(&AuthQuery { user: Some("BOB".into()), ..AuthQuery::default() }).unwrap();
    assert_eq!(bob.len(), 2);
    let rejects = s.auth_events(&AuthQuery { decision: Some("reject".into()), ..AuthQuery::default() }).unwrap();
    assert_eq!(rejects, vec![e(1, "bob", "reject")]);
    assert!(s.has_auth_event(&e(2, "bob", "accept")).unwrap());
    assert!(!s.has_auth_event(&e(2, "bob", "reject")).unwrap());
    let middle = s.auth_events(&AuthQuery { since_ms: Some(2), until_ms: Some(3), ..AuthQuery::default() }).unwrap();
    assert_eq!(middle.iter().map(|x| x.time_ms).collect::<Vec<_>>(), vec![2]);
    let recent = s.auth_events(&AuthQuery { since_ms: Some(2), limit: Some(1), ..AuthQuery::default() }).unwrap();
    assert_eq!(recent.len(), 1);
}

fn retention_prunes_old_events_and_closed_sessions<S: Store>(s: &mut S) {
    s.record_auth_events(&(1..=5).map(|t| auth_event(t * 1000, "bob", "reject")).collect::<Vec<_>>()).unwrap();
    commit(
        s,
        vec![
            record(1, "old", "nas", "a", 100),
            record(2, "old", "nas", "a", 200),
            record(1, "long", "nas", "b", 100),
            record(1, "new", "nas", "c", 100),
            record(2, "new", "nas", "c", 900),
        ],
    );
    let cutoff = Cutoff { auth_events_before_ms: Some(4000), sessions_before: Some(500) };
    // Two at a time, oldest first.
    assert_eq!(s.prune(&cutoff, 2).unwrap(), Pruned { auth_events: 2, sessions: 1 });
    assert_eq!(s.prune(&cutoff, 2).unwrap(), Pruned { auth_events: 1, sessions: 0 });
    assert_eq!(s.prune(&cutoff, 2).unwrap(), Pruned::default());
    let left = s.auth_events(&AuthQuery::default()).unwrap();
    assert_eq!(left.iter().map(|e| e.time_ms).collect::<Vec<_>>(), vec![5000, 4000]);
    let mut sessions: Vec<_> =
        s.sessions(&SessionQuery::default()).unwrap().into_iter().map(|x| x.user.unwrap_or_default()).collect();
    sessions.sort();
    assert_eq!(sessions, vec!["long", "new"], "the open session and the one that ended later stay");
    // Keeping forever deletes nothing.
    assert_eq!(s.prune(&Cutoff::default(), 100).unwrap(), Pruned::default());
}

fn session_location_round_trip<S: Store>(s: &mut S) {
    let berlin = portcullis_geo::Location {
        country: Some("DE".into()),
        city: Some("Berlin".into()),
        latitude: Some(52.52),
        longitude: Some(13.405),
        accuracy_km: Some(20),
        asn: Some(64500),
        ..Default::default()
    };
    let mut start = record(1, "alice", "nas", "1", 100);
    start.location = Some(berlin.clone());
    // The Stop's lookup (another database version) does not replace the Start's.
    let mut stop = record(2, "alice", "nas", "1", 200);
    stop.location = Some(portcullis_geo::Location::internal());
    commit(s, vec![start, stop]);
    assert_eq!(all(s)[0].location, Some(berlin));
    let key = all(s)[0].session_key.clone();
    assert_eq!(s.session(&key).unwrap().map(|x| x.stopped_at), Some(Some(200)));
    assert_eq!(s.session("no such key").unwrap(), None);
}

pub fn draft(kind: AlertKind, user: &str, time: i64, cause: &str, fold_key: &str) -> AlertDraft {
    AlertDraft {
        kind,
        severity: kind.severity(),
        user: user.into(),
        event_time: time,
        message: format!("{user} did something"),
        evidence: serde_json::json!({ "n": time }),
        fold_key: fold_key.into(),
        cause: cause.into(),
        ip: Some("192.0.2.1".parse().unwrap()),
    }
}

fn alerts_fold_and_are_idempotent<S: Store>(s: &mut S) {
    let a = draft(AlertKind::BruteForce, "bob", 100, "e1", "brute_force:bob");
    let b = draft(AlertKind::BruteForce, "bob", 200, "e2", "brute_force:bob");
    let c = draft(AlertKind::MfaFatigue, "bob", 150, "e1", "mfa_fatigue:bob");
    let changes = s.record_alerts(&[a.clone(), b.clone(), c], 1_000).unwrap();
    let AlertChange::Created(id) = changes[0] else { panic!("{changes:?}") };
    assert_eq!(changes[1], AlertChange::Folded(id));
    assert!(matches!(changes[2], AlertChange::Created(other) if other != id));
    // The same causes again (a replay, a restart): nothing changes.
    assert_eq!(s.record_alerts(&[a, b], 2_000).unwrap(), vec![AlertChange::Known, AlertChange::Known]);
    let got = s.alerts(&AlertQuery { kind: Some("brute_force".into()), ..AlertQuery::default() }).unwrap();
    assert_eq!(got.len(), 1);
    let alert = &got[0];
    assert_eq!((alert.count, alert.status.as_str(), alert.severity.as_str()), (2, "open", "medium"));
    assert_eq!(alert.event_time, "1970-01-01T00:01:40Z");
    assert_eq!(alert.last_event_time, "1970-01-01T00:03:20Z");
    assert_eq!(alert.created_at, "1970-01-01T00:00:01Z");
    assert_eq!(alert.evidence, serde_json::json!({ "n": 100 }));
    assert_eq!(alert.mitre, "T1110.001");
    assert_eq!(alert.ip.as_deref(), Some("192.0.2.1"));
    assert_eq!(s.alerts(&AlertQuery { user: Some("bob".into()), ..AlertQuery::default() }).unwrap().len(), 2);
}

fn alert_lifecycle<S: Store>(s: &mut S) {
    let first = draft(AlertKind::ImpossibleTravel, "carol", 100, "e1", "impossible_travel:carol");
    let AlertChange::Created(id) = s.record_alerts(&[first], 1_000).unwrap()[0] else { panic!() };
    let update = AlertUpdate {
        status: Some("resolved".into()),
        classification: Some("benign-true-positive".into()),
        comment: Some("travelling with a new phone".into()),
    };
    let alert = s.update_alert(id, &update, 5_000).unwrap().expect("exists");
    assert_eq!(alert.status, "resolved");
    assert_eq!(alert.classification.as_deref(), Some("benign-true-positive"));
    assert_eq!(alert.comments.len(), 1);
    assert_eq!(alert.comments[0].text, "travelling with a new phone");
    assert_eq!(alert.updated_at, "1970-01-01T00:00:05Z");
    // A repeat after resolution opens a new alert instead of folding into the old one.
    let again = draft(AlertKind::ImpossibleTravel, "carol", 300, "e2", "impossible_travel:carol");
    assert!(matches!(s.record_alerts(&[again], 6_000).unwrap()[0], AlertChange::Created(n) if n != id));
    let open = s.alerts(&AlertQuery { status: Some("open".into()), ..AlertQuery::default() }).unwrap();
    assert_eq!(open.len(), 1);
    assert!(
        s.update_alert(id, &AlertUpdate { status: Some("bogus".into()), ..AlertUpdate::default() }, 7_000).is_err()
    );
    let bad = AlertUpdate { classification: Some("maybe".into()), ..AlertUpdate::default() };
    assert!(s.update_alert(id, &bad, 7_000).is_err());
    assert_eq!(s.update_alert(9_999, &update, 7_000).unwrap(), None);
}

fn alert_events_in_order<S: Store>(s: &mut S) {
    assert_eq!(s.last_alert_event().unwrap(), 0);
    assert!(s.alert_events(0, 10).unwrap().is_empty());
    let a = draft(AlertKind::BruteForce, "dave", 100, "e1", "brute_force:dave");
    let b = draft(AlertKind::BruteForce, "dave", 200, "e2", "brute_force:dave");
    let AlertChange::Created(id) = s.record_alerts(&[a.clone(), b], 1_000).unwrap()[0] else { panic!() };
    // A replay records nothing, and neither does an update of a missing alert.
    s.record_alerts(&[a], 1_500).unwrap();
    assert_eq!(
        s.update_alert(id + 100, &AlertUpdate { comment: Some("x".into()), ..AlertUpdate::default() }, 1_600).unwrap(),
        None
    );
    let close = AlertUpdate { status: Some("closed".into()), ..AlertUpdate::default() };
    s.update_alert(id, &close, 2_000).unwrap().expect("exists");
    let c = draft(AlertKind::MfaFatigue, "erin", 300, "e3", "mfa_fatigue:erin");
    s.record_alerts(&[c], 3_000).unwrap();
    let all = s.alert_events(0, 100).unwrap();
    let seen: Vec<(&str, &str, i64)> =
        all.iter().map(|e| (e.trigger.as_str(), e.alert.user.as_str(), e.time_ms)).collect();
    assert_eq!(
        seen,
        vec![("new", "dave", 1_000), ("update", "dave", 1_000), ("update", "dave", 2_000), ("new", "erin", 3_000)]
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "{all:?}");
    // The alert is read as it is now; the cursor pages without gaps or repeats.
    assert_eq!(all[0].alert.status, "closed");
    assert_eq!(s.last_alert_event().unwrap(), all[3].seq);
    let page = s.alert_events(all[0].seq, 2).unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![all[1].seq, all[2].seq]);
    assert_eq!(s.alert_events(all[3].seq, 10).unwrap(), Vec::new());
    // dave's alert is closed: only erin's counts as open.
    assert_eq!(s.open_alerts_by_kind().unwrap(), vec![("mfa_fatigue".to_string(), 1)]);
}

/// What `history` returns, as (kind, session or NAS) pairs.
fn fed<S: Store>(s: &S, since: i64, page: usize) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let items = s.history(from, since, page).expect("history");
        let Some(last) = items.last() else { return out };
        from = last.0 + 1;
        for (_, f) in items {
            out.push(match f {
                Fed::Start(x) => ("start", x.session_id.unwrap_or_default()),
                Fed::Stop(x) => ("stop", x.session_id.unwrap_or_default()),
                Fed::Reset { nas, .. } => ("reset", nas),
                Fed::Auth(a) => ("auth", a.user),
            });
        }
    }
}

/// History comes back in the order it was applied, not in event-time order; a Stop
/// whose Start never came is no Start; the place of an event does not change when it
/// is applied again.
fn history_follows_apply_order<S: Store>(s: &mut S) {
    commit(s, vec![record(1, "u", "nas-1", "A", 1000)]);
    // Half an hour earlier, but later to arrive.
    commit(s, vec![record(1, "u", "nas-1", "B", 1000 - 1800)]);
    let mut lone = record(2, "u", "nas-2", "C", 2000);
    lone.session_time = Some(100);
    commit(s, vec![lone]);
    s.record_auth_events(&[auth_event(1_500_000, "u", "accept")]).unwrap();
    commit(s, vec![record(1, "u", "nas-1", "A", 1000), record(7, "", "nas-1", "", 3000)]);
    let expected: Vec<(&str, String)> =
        [("start", "A"), ("start", "B"), ("stop", "C"), ("auth", "u"), ("reset", "nas-1")]
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
    assert_eq!(fed(s, 0, 1000), expected);
    assert_eq!(fed(s, 0, 1), expected, "paging gives the same order");
    let starts = s.sessions(&SessionQuery::default()).unwrap();
    let a = starts.iter().find(|x| x.session_id.as_deref() == Some("A")).unwrap();
    assert_eq!(a.order.start.map(|(_, t)| t), Some(1000));
    // Only what happened since 1,950: the Stop, the reset (and the sessions it closed).
    let recent = fed(s, 1950, 1000);
    assert!(!recent.contains(&("auth", "u".into())), "{recent:?}");
    assert!(recent.contains(&("stop", "C".into())) && recent.contains(&("reset", "nas-1".into())), "{recent:?}");
}

/// Records replayed from files are applied again after `reset_sessions`, in their
/// places; journal-derived sessions are gone until the journal is applied again.
fn replayed_records_survive_reset<S: Store>(s: &mut S) {
    let mut replayed = record(1, "old", "nas-9", "R", 50);
    replayed.client_ip = Some("192.0.2.9".parse().unwrap());
    s.apply_replayed(&[Ok(replayed), Err(auth_event(60_000, "old", "reject"))]).unwrap();
    commit(s, vec![record(1, "live", "nas-1", "L", 100)]);
    let before = s.session(&session_key("", "nas-9", "R", "old")).unwrap().unwrap();
    assert_eq!(all(s).len(), 2);
    s.reset_sessions().unwrap();
    assert_eq!(all(s), vec![before]);
    assert_eq!(s.applied_position().unwrap(), Position::default());
    assert_eq!(s.auth_events(&AuthQuery::default()).unwrap().len(), 1);
    commit(s, vec![record(1, "live", "nas-1", "L", 100)]);
    assert_eq!(fed(s, 0, 10), vec![("start", "R".into()), ("auth", "old".into()), ("start", "L".into())]);
}

/// Runs every check of a [`crate::ClientStore`] backend, and of [`crate::RuntimeClients`]
/// over it; panics with the check's name on the first failure.
pub fn run_client_store<S: ClientStore>(mut fresh: impl FnMut() -> S) {
    let checks: [ClientCheck<S>; 6] = [
        ("clients_round_trip_without_secrets", clients_round_trip_without_secrets),
        ("every_change_raises_the_generation", every_change_raises_the_generation),
        ("names_and_networks_are_unique", names_and_networks_are_unique),
        ("secrets_and_names_are_checked", secrets_and_names_are_checked),
        ("file_clients_win_and_are_read_only", file_clients_win_and_are_read_only),
        ("listings_never_carry_the_secret", listings_never_carry_the_secret),
    ];
    for (name, check) in checks {
        let store = fresh();
        run_check("client store", name, || check(store));
    }
}

const SECRET: &str = "a-runtime-secret-0123456789";

fn settings(name: &str, address: &str) -> ClientSettings {
    ClientSettings::new(name, address.parse().expect("network"))
}

fn by(now_ms: i64) -> Change<'static> {
    Change { by: "admin", now_ms }
}

fn clients_round_trip_without_secrets<S: ClientStore>(mut s: S) {
    assert!(s.clients().expect("clients").is_empty());
    let mut asa = settings("asa", "192.0.2.1");
    asa.vendor = portcullis_accounting::Vendor::CiscoAsa;
    asa.require_message_authenticator = false;
    let added = s.insert(&asa, &ClientSecret::new(SECRET), by(1000)).expect("insert");
    assert_eq!(added.settings, asa);
    // A network is stored with its host bits cleared.
    s.insert(&settings("site", "10.1.2.3/16"), &ClientSecret::new(SECRET), by(2000)).expect("insert");
    let listed = s.clients().expect("clients");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], added);
    assert_eq!((listed[0].created_ms, listed[0].created_by.as_str()), (1000, "admin"));
    assert_eq!(listed[1].settings.address.to_string(), "10.1.0.0/16");
    assert!(
        s.set_secret("asa", &ClientSecret::new("another-secret-0123456789"), Change { by: "bob", now_ms: 3000 })
            .expect("set")
    );
    let with = s.clients_with_secrets().expect("with secrets");
    assert_eq!(with[0].1.expose(), "another-secret-0123456789");
    assert_eq!((with[0].0.created_ms, with[0].0.updated_ms, with[0].0.updated_by.as_str()), (1000, 3000, "bob"));
    assert_eq!(with[1].1.expose(), SECRET);
    assert!(!s.set_secret("nobody", &ClientSecret::new(SECRET), by(4000)).expect("set"));
    assert!(s.delete("asa").expect("delete"));
    assert!(!s.delete("asa").expect("delete"));
    assert_eq!(s.clients().expect("clients").len(), 1);
}

fn every_change_raises_the_generation<S: ClientStore>(mut s: S) {
    let mut last = s.generation().expect("generation");
    let mut raised = |s: &S, what: &str| {
        let g = s.generation().expect("generation");
        assert!(g > last, "{what}: generation {g} after {last}");
        last = g;
    };
    s.insert(&settings("a", "192.0.2.1"), &ClientSecret::new(SECRET), by(1)).expect("insert");
    raised(&s, "insert");
    s.set_secret("a", &ClientSecret::new("another-secret-0123456789"), by(2)).expect("set");
    raised(&s, "set_secret");
    s.delete("a").expect("delete");
    raised(&s, "delete");
    // The same client added again is a change too: the generation never goes back.
    s.insert(&settings("a", "192.0.2.1"), &ClientSecret::new(SECRET), by(3)).expect("insert");
    raised(&s, "insert again");
    let before = s.generation().expect("generation");
    assert!(s.insert(&settings("a", "192.0.2.9"), &ClientSecret::new(SECRET), by(4)).is_err());
    assert!(!s.delete("missing").expect("delete"));
    assert_eq!(s.generation().expect("generation"), before, "a refused change changes nothing");
}

fn names_and_networks_are_unique<S: ClientStore>(mut s: S) {
    s.insert(&settings("a", "192.0.2.0/24"), &ClientSecret::new(SECRET), by(1)).expect("insert");
    let e = s.insert(&settings("a", "198.51.100.1"), &ClientSecret::new(SECRET), by(2)).unwrap_err();
    assert!(e.to_string().contains("exists already"), "{e}");
    let e = s.insert(&settings("b", "192.0.2.77/24"), &ClientSecret::new(SECRET), by(2)).unwrap_err();
    assert!(e.to_string().contains("\"a\" has the address 192.0.2.0/24"), "{e}");
    // A more specific network inside a stored one is another client (the most
    // specific wins, as in the file).
    s.insert(&settings("b", "192.0.2.7"), &ClientSecret::new(SECRET), by(3)).expect("nested");
    assert_eq!(s.clients().expect("clients").len(), 2);
}

fn secrets_and_names_are_checked<S: ClientStore>(mut s: S) {
    for (secret, error) in [("", "empty"), ("a\0b", "NUL"), (&"x".repeat(crate::MAX_SECRET_BYTES + 1), "longer than")] {
        let e = s.insert(&settings("a", "192.0.2.1"), &ClientSecret::new(secret), by(1)).unwrap_err();
        assert!(e.to_string().contains(error), "{e}");
    }
    for name in ["", " a", "a\nb", &"n".repeat(crate::MAX_NAME_BYTES + 1)] {
        assert!(s.insert(&settings(name, "192.0.2.1"), &ClientSecret::new(SECRET), by(1)).is_err(), "{name:?}");
    }
    s.insert(&settings("a", "192.0.2.1"), &ClientSecret::new(SECRET), by(1)).expect("insert");
    assert!(s.set_secret("a", &ClientSecret::new(""), by(2)).is_err());
    assert_eq!(s.clients_with_secrets().expect("with secrets")[0].1.expose(), SECRET);
}

fn file_clients_win_and_are_read_only<S: ClientStore>(s: S) {
    let admin = RuntimeClients::new(s, vec![settings("rras", "127.0.0.0/29"), settings("asa", "192.0.2.1")]);
    let secret = || ClientSecret::new(SECRET);
    for (candidate, error) in [
        (settings("rras", "198.51.100.1"), "managed by the configuration file"),
        (settings("x", "127.0.0.3"), "overlaps 127.0.0.0/29 of the client \"rras\""),
        (settings("y", "127.0.0.0/8"), "overlaps 127.0.0.0/29"),
        (settings("z", "192.0.2.0/24"), "overlaps 192.0.2.1/32 of the client \"asa\""),
    ] {
        let e = admin.add(candidate.clone(), secret(), "admin").unwrap_err();
        assert!(e.contains(error), "{candidate:?}: {e}");
    }
    assert!(admin.delete("rras", "admin").unwrap_err().contains("configuration file"));
    assert!(admin.set_secret("asa", secret(), "admin").unwrap_err().contains("configuration file"));
    assert!(admin.delete("nobody", "admin").unwrap_err().contains("no stored client"));
    let warnings = admin.add(settings("lab", "127.0.0.8"), ClientSecret::new("short"), "admin").expect("add");
    assert!(warnings.iter().any(|w| w.contains("5-character secret")), "{warnings:?}");
    let listed = admin.list().expect("list");
    let names: Vec<(&str, bool)> =
        listed.iter().map(|c| (c.settings().name.as_str(), matches!(c, ClientListing::File(_)))).collect();
    assert_eq!(names, [("rras", true), ("asa", true), ("lab", false)]);
    assert!(admin.set_secret("lab", secret(), "admin").expect("set").is_empty());
    admin.delete("lab", "admin").expect("delete");
    assert_eq!(admin.list().expect("list").len(), 2);
    // After a reload the file's clients are the new ones.
    admin.set_file_clients(vec![settings("lab-file", "127.0.0.8")]);
    let e = admin.add(settings("lab", "127.0.0.8"), secret(), "admin").unwrap_err();
    assert!(e.contains("\"lab-file\""), "{e}");
    admin.add(settings("rras", "127.0.0.1"), secret(), "admin").expect("no longer in the file");
}

fn listings_never_carry_the_secret<S: ClientStore>(s: S) {
    let admin = RuntimeClients::new(s, vec![settings("file", "192.0.2.1")]);
    admin.add(settings("lab", "198.51.100.0/24"), ClientSecret::new(SECRET), "admin").expect("add");
    let listed = admin.list().expect("list");
    let printed =
        format!("{listed:?} {} {:?}", serde_json::to_string(&listed).expect("json"), ClientSecret::new(SECRET));
    assert!(!printed.contains(SECRET), "{printed}");
    assert!(printed.contains("\"managed_by\":\"stored\"") && printed.contains("\"managed_by\":\"file\""), "{printed}");
    assert!(printed.contains("\"address\":\"198.51.100.0/24\""), "{printed}");
}

/// Events that share a time are neither skipped nor repeated across pages.
fn keyset_pages_cover_every_row_once<S: Store>(s: &mut S) {
    let events: Vec<AuthEvent> = (0..25).map(|i| auth_event(i / 4, "dan", "accept")).collect();
    s.record_auth_events(&events).unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let q = AuthQuery { user: Some("dan".into()), before, limit: Some(3), ..AuthQuery::default() };
        let page = s.auth_page(&q).unwrap();
        let Some((id, last)) = page.last() else { break };
        before = Some((last.time_ms, *id));
        seen.extend(page.iter().map(|(id, _)| *id));
    }
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (25, 25));

    commit(s, (0..7).map(|i| record(1, "dan", "nas", &i.to_string(), 100 + i / 3)).collect());
    let mut keys = Vec::new();
    let mut after = None;
    loop {
        let q = SessionQuery { paged: true, after: after.clone(), limit: Some(2), ..SessionQuery::default() };
        let page = s.sessions(&q).unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.started_at, last.session_key.clone()));
        keys.extend(page.into_iter().map(|x| x.session_key));
    }
    let paged = s.sessions(&SessionQuery { paged: true, ..SessionQuery::default() }).unwrap();
    assert_eq!(keys, paged.into_iter().map(|x| x.session_key).collect::<Vec<_>>());
    assert_eq!(keys.len(), 7);
    let by_name = |canonical_only| {
        let q = SessionQuery { user: Some("DAN".into()), canonical_only, ..SessionQuery::default() };
        s.sessions(&q).unwrap().len()
    };
    assert_eq!((by_name(true), by_name(false)), (7, 7));

    for i in 0..5 {
        let d = draft(AlertKind::NewCountry, "dan", i, &format!("c{i}"), &format!("k{i}"));
        s.record_alerts(&[d], 1_000).unwrap();
    }
    let first = s.alerts(&AlertQuery { limit: Some(3), ..AlertQuery::default() }).unwrap();
    let rest = s.alerts(&AlertQuery { before_id: first.last().map(|a| a.id), ..AlertQuery::default() }).unwrap();
    assert_eq!((first.len(), rest.len()), (3, 2));
    assert_eq!(s.alert(first[0].id).unwrap().map(|a| a.id), Some(first[0].id));
    assert_eq!(s.alert(-1).unwrap(), None);
}

fn auth_filters_and_facets<S: Store>(s: &mut S) {
    let mut radius = auth_event(5, "erin", "reject");
    radius.nas = "vpn2".into();
    radius.method = "mschapv2".into();
    s.record_auth_events(&[auth_event(1, "erin", "accept"), radius, auth_event(9, "alice", "accept")]).unwrap();
    let only = |q: AuthQuery| s.auth_page(&q).unwrap().into_iter().map(|(_, e)| e.time_ms).collect::<Vec<_>>();
    let erin = || AuthQuery { user: Some("erin".into()), ..AuthQuery::default() };
    assert_eq!(only(AuthQuery { nas: Some("vpn2".into()), ..erin() }), vec![5]);
    assert_eq!(only(AuthQuery { method: Some("pap".into()), ..erin() }), vec![1]);
    assert_eq!(only(AuthQuery { decision: Some("accept".into()), ..erin() }), vec![1]);
    assert_eq!(only(AuthQuery { country: Some("DE".into()), ..AuthQuery::default() }), vec![9]);
    assert_eq!(only(AuthQuery { city: Some("Nowhere".into()), ..AuthQuery::default() }), Vec::<i64>::new());
    let facets = s.auth_facets("ERIN", 0).unwrap();
    assert_eq!(facets.decisions, vec!["accept", "reject"]);
    assert_eq!(facets.nas, vec!["nas", "vpn2"]);
    assert_eq!(facets.methods, vec!["mschapv2", "pap"]);
    assert!(facets.countries.is_empty());
    assert_eq!(s.auth_facets("erin", 6).unwrap().decisions, Vec::<String>::new());
}

fn users_and_locations<S: Store>(s: &mut S) {
    let moscow = portcullis_geo::Location {
        country: Some("RU".into()),
        city: Some("Moscow".into()),
        asn: Some(64501),
        latitude: Some(55.75),
        longitude: Some(37.62),
        ..Default::default()
    };
    let mut start = record(1, "alice", "nas", "1", 100);
    start.location = Some(moscow);
    commit(s, vec![start, record(1, "bob", "nas", "2", 50)]);
    s.record_auth_events(&[auth_event(120_000, "alice", "accept"), auth_event(130_000, "alice", "accept")]).unwrap();
    let names = |q: UserQuery| s.users(&q).unwrap().into_iter().map(|u| u.name).collect::<Vec<_>>();
    assert_eq!(names(UserQuery::default()), vec!["alice", "bob"]);
    assert_eq!(names(UserQuery { search: Some("LIC".into()), ..UserQuery::default() }), vec!["alice"]);
    assert_eq!(names(UserQuery { after: Some("alice".into()), ..UserQuery::default() }), vec!["bob"]);
    assert_eq!(names(UserQuery { limit: Some(1), ..UserQuery::default() }), vec!["alice"]);
    assert_eq!(s.users(&UserQuery::default()).unwrap()[0].last_seen_ms, 130_000);
    let places = s.user_locations("alice", 0).unwrap();
    let summary: Vec<_> = places.iter().map(|p| (p.country.as_deref(), p.city.as_deref(), p.count)).collect();
    assert_eq!(summary, vec![(Some("DE"), None, 2), (Some("RU"), Some("Moscow"), 1)]);
    assert_eq!((places[1].first_ms, places[1].asn), (100_000, Some(64501)));
    assert_eq!((places[1].latitude, places[1].longitude), (Some(55.75), Some(37.62)), "the map's coordinates");
    assert_eq!(s.user_locations("alice", 125_000).unwrap().len(), 1);
    // Every user's places (the dashboard's map), bounded and newest first.
    let everyone = s.recent_locations(0, 1000).unwrap();
    let summary: Vec<_> = everyone.iter().map(|p| (p.country.as_deref(), p.count)).collect();
    assert_eq!(summary, vec![(Some("DE"), 2), (Some("RU"), 1)]);
    assert!(s.recent_locations(200_000, 1000).unwrap().is_empty());
    assert_eq!(s.recent_locations(0, 1).unwrap().len(), 2, "the newest session and the newest event");
}

fn summary_counts<S: Store>(s: &mut S) {
    commit(s, vec![record(1, "a", "nas", "1", 100), record(1, "b", "nas", "2", 100), record(2, "b", "nas", "2", 200)]);
    s.record_auth_events(&[auth_event(1, "a", "accept"), auth_event(5, "a", "reject"), auth_event(6, "a", "accept")])
        .unwrap();
    s.record_alerts(&[draft(AlertKind::NewCountry, "a", 1, "c", "k")], 1).unwrap();
    let summary = s.summary(5).unwrap();
    assert_eq!(summary.open_sessions, 1);
    assert_eq!(summary.auth_decisions, vec![("accept".to_string(), 1), ("reject".to_string(), 1)]);
    assert_eq!(summary.open_alerts, vec![("medium".to_string(), 1)]);
}
