//! The detection engine: compact per-user state, the detectors, and the profile view.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;

use portcullis_geo::{Location, distance_km};
use serde::Serialize;
use serde_json::json;

use crate::{AlertDraft, AlertKind, Config, Event, EventKind, neighbours};

const DAY: i64 = 86_400;
/// Hours at airports on a journey by air, on top of the flight.
const GROUND_HOURS: f64 = 3.0;
/// Per-user bounds: the newest entries are kept.
const MAX_PLACES: usize = 48;
const MAX_IPS: usize = 48;
const MAX_DEVICES: usize = 16;
const MAX_ASNS: usize = 24;
const MAX_NAS: usize = 8;
const MAX_COUNTRIES: usize = 24;
const MAX_OPEN: usize = 16;
const MAX_FAILURES: usize = 64;
/// Connection times kept for the window's count (more in 30 days is automation).
const MAX_CONNECTIONS: usize = 1024;
/// Global bounds.
const MAX_PLACES_TOTAL: usize = 1 << 20;
const MAX_USERS: usize = 4_000_000;
const MAX_SOURCES: usize = 1 << 18;
const MAX_SOURCE_ATTEMPTS: usize = 512;
const MAX_TEXT: usize = 128;

/// One thing seen by a user, with first and last time and a count.
#[derive(Debug, Clone)]
struct Seen<T> {
    key: T,
    first: u32,
    last: u32,
    count: u32,
}

/// Times are kept as unsigned 32-bit Unix seconds (until 2106) to keep profiles small.
fn st(t: i64) -> u32 {
    t.clamp(0, i64::from(u32::MAX)) as u32
}

fn touch<T: PartialEq + Copy>(list: &mut Vec<Seen<T>>, key: T, time: i64, max: usize) -> bool {
    touch_evicting(list, &key, || key, time, max).0
}

/// As [`touch`] for text keys: the owned copy is made only for a new entry.
fn touch_text(list: &mut Vec<Seen<Box<str>>>, key: &str, time: i64, max: usize) {
    touch_evicting(list, key, || key.into(), time, max);
}

/// As [`touch`], also returning the entry forgotten to make room.
fn touch_evicting<T: std::borrow::Borrow<K>, K: PartialEq + ?Sized>(
    list: &mut Vec<Seen<T>>,
    key: &K,
    owned: impl FnOnce() -> T,
    time: i64,
    max: usize,
) -> (bool, Option<T>) {
    let time = st(time);
    if let Some(s) = list.iter_mut().find(|s| s.key.borrow() == key) {
        s.first = s.first.min(time);
        s.last = s.last.max(time);
        s.count = s.count.saturating_add(1);
        return (false, None);
    }
    let mut evicted = None;
    if list.len() >= max {
        // Forget the least recently seen.
        if let Some(i) = list.iter().enumerate().min_by_key(|(_, s)| s.last).map(|(i, _)| i) {
            evicted = Some(list.swap_remove(i).key);
        }
    }
    list.push(Seen { key: owned(), first: time, last: time, count: 1 });
    (true, evicted)
}

/// Counts a user in (or out of) an organisation-wide tally of countries or networks.
fn count_user<K: Hash + Eq>(counts: &mut HashMap<K, u32>, new: Option<K>, dropped: Option<K>) {
    if let Some(k) = new {
        *counts.entry(k).or_insert(0) += 1;
    }
    if let Some(n) = dropped.and_then(|k| counts.get_mut(&k)) {
        *n = n.saturating_sub(1);
    }
}

/// Distance, distance minus both accuracy radii, hours and speed from one fix to another.
fn motion(from: Fix, to: Fix) -> (f64, f64, f64, f64) {
    let distance = distance_km((f64::from(from.lat), f64::from(from.lon)), (f64::from(to.lat), f64::from(to.lon)));
    let effective = distance - f64::from(from.accuracy) - f64::from(to.accuracy);
    let hours = (to.time - from.time).abs() as f64 / 3600.0;
    let speed = if hours > 0.0 { effective / hours } else { f64::INFINITY };
    (distance, effective, hours, speed)
}

/// Remembers where a claimed computer name was last.
fn place_device(list: &mut Vec<(u64, Fix)>, device: u64, fix: Fix) {
    if let Some(d) = list.iter_mut().find(|d| d.0 == device) {
        if d.1.time <= fix.time {
            d.1 = fix;
        }
        return;
    }
    if list.len() >= MAX_DEVICES {
        if let Some(i) = list.iter().enumerate().min_by_key(|(_, d)| d.1.time).map(|(i, _)| i) {
            list.swap_remove(i);
        }
    }
    list.push((device, fix));
}

/// The hour of the day (0..24) of `time` in the solar time of `longitude` (UTC when it is
/// unknown): people work by the sun where they are, so a traveller's morning abroad is
/// their morning at home. Solar time is within an hour or so of civil time almost
/// everywhere, and [`usual_hour`] accepts the next hours too.
fn local_hour(time: i64, longitude: Option<f32>) -> usize {
    let offset = longitude.filter(|l| l.is_finite()).map_or(0, |l| (f64::from(l) / 15.0).round() as i64);
    ((time + offset * 3600).rem_euclid(DAY) / 3600) as usize
}

/// Whether `hour`, or one next to it, holds at least a tenth of the user's connections.
fn usual_hour(hours: &[u16; 24], hour: usize) -> bool {
    let total: u32 = hours.iter().map(|&h| u32::from(h)).sum();
    [hour + 23, hour, hour + 1].iter().any(|&x| u32::from(hours[x % 24]) * 10 >= total.max(1))
}

/// Adds `time` to a bounded list of recent times; when at least `needed` fall within
/// the window and none fired in it (and the detection is on), fires and returns the count.
fn burst(
    times: &mut VecDeque<i64>,
    fired: &mut Option<i64>,
    time: i64,
    needed: u32,
    window_minutes: u32,
    on: bool,
) -> Option<usize> {
    times.push_back(time);
    while times.len() > (needed as usize).clamp(1, 64) {
        times.pop_front();
    }
    let since = time - i64::from(window_minutes) * 60;
    let count = times.iter().filter(|&&t| t >= since && t <= time).count();
    if !on || count < needed as usize || fired.is_some_and(|t| t >= since) {
        return None;
    }
    *fired = Some(time);
    Some(count)
}

fn known<T: PartialEq>(list: &[Seen<T>], key: &T, since: i64) -> bool {
    list.iter().any(|s| &s.key == key && i64::from(s.last) >= since)
}

fn recent<T>(list: &[Seen<T>], since: i64) -> usize {
    list.iter().filter(|s| i64::from(s.last) >= since).count()
}

/// A location fix used as the travel baseline.
#[derive(Debug, Clone, Copy)]
struct Fix {
    time: i64,
    lat: f32,
    lon: f32,
    accuracy: f32,
    place: u32,
    country: [u8; 2],
    /// The computer name claimed there (hashed).
    device: Option<u64>,
}

/// A connection questioned for its country, not learned (yet).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pending {
    place: Option<u32>,
    device: Option<u64>,
    asn: Option<u32>,
}

#[derive(Debug, Clone)]
struct Open {
    session: u64,
    /// The configured client the Start came through (hashed; "" for none).
    client: u64,
    nas: u64,
    nas_ip: Option<u64>,
    device: Option<u64>,
    start: i64,
    fix: Option<Fix>,
}

#[derive(Debug, Default)]
struct UserState {
    first_seen: i64,
    last_seen: i64,
    first_vpn: Option<i64>,
    /// Times of the VPN connections in the window (at most `MAX_CONNECTIONS`).
    connections: VecDeque<u32>,
    places: Vec<Seen<u32>>,
    countries: Vec<Seen<[u8; 2]>>,
    ips: Vec<Seen<IpAddr>>,
    devices: Vec<Seen<Box<str>>>,
    asns: Vec<Seen<u32>>,
    nas: Vec<Seen<Box<str>>>,
    hours: [u16; 24],
    fix: Option<Fix>,
    /// The last connection, when it was questioned for its country.
    pending: Option<Pending>,
    /// Where each claimed computer name was last (at most `MAX_DEVICES`).
    device_fixes: Vec<(u64, Fix)>,
    open: Vec<Open>,
    failures: VecDeque<i64>,
    pushes: VecDeque<i64>,
    /// Second-factor failures after a verified password.
    second_factor: VecDeque<i64>,
    brute_fired: Option<i64>,
    fatigue_fired: Option<i64>,
    second_factor_fired: Option<i64>,
}

impl UserState {
    fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.connections.capacity() * 4
            + self.device_fixes.capacity() * size_of::<(u64, Fix)>()
            + self.second_factor.capacity() * 8
            + self.places.capacity() * size_of::<Seen<u32>>()
            + self.countries.capacity() * size_of::<Seen<[u8; 2]>>()
            + self.ips.capacity() * size_of::<Seen<IpAddr>>()
            + self.devices.iter().map(|d| d.key.len()).sum::<usize>()
            + self.devices.capacity() * size_of::<Seen<Box<str>>>()
            + self.asns.capacity() * size_of::<Seen<u32>>()
            + self.nas.iter().map(|d| d.key.len()).sum::<usize>()
            + self.nas.capacity() * size_of::<Seen<Box<str>>>()
            + self.open.capacity() * size_of::<Open>()
            + self.failures.capacity() * 8
            + self.pushes.capacity() * 8
    }

    /// Forgets what is older than the window; returns the countries and networks
    /// forgotten.
    fn prune(&mut self, since: i64, history_since: i64) -> (Vec<[u8; 2]>, Vec<u32>) {
        self.places.retain(|s| i64::from(s.last) >= since);
        self.ips.retain(|s| i64::from(s.last) >= since);
        // Computers are remembered over the history: a tablet used again after a month
        // is not a computer never seen.
        self.devices.retain(|s| i64::from(s.last) >= history_since);
        self.device_fixes.retain(|d| d.1.time >= since);
        while self.connections.front().is_some_and(|&t| i64::from(t) < since) {
            self.connections.pop_front();
        }
        let mut dropped_asns = Vec::new();
        self.asns.retain(|s| {
            let keep = i64::from(s.last) >= since;
            if !keep {
                dropped_asns.push(s.key);
            }
            keep
        });
        self.nas.retain(|s| i64::from(s.last) >= since);
        let mut dropped = Vec::new();
        self.countries.retain(|s| {
            let keep = i64::from(s.last) >= history_since;
            if !keep {
                dropped.push(s.key);
            }
            keep
        });
        for list in [&mut self.places, &mut self.asns] {
            list.shrink_to_fit();
        }
        self.ips.shrink_to_fit();
        self.devices.shrink_to_fit();
        (dropped, dropped_asns)
    }
}

#[derive(Debug, Default)]
struct SourceState {
    /// (time, user hash, failed)
    attempts: VecDeque<(i64, u64, bool)>,
    fired: Option<i64>,
}

#[derive(Debug, Clone)]
struct Place {
    country: Option<Box<str>>,
    city: Option<Box<str>>,
    lat: f32,
    lon: f32,
}

/// Counters of the engine.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct EngineStats {
    pub events: u64,
    pub alerts: u64,
    pub suppressed: u64,
    /// Events whose user or source could not get state (a bound was reached).
    pub dropped: u64,
    pub profiles: u64,
}

/// The detection engine. See the crate documentation.
pub struct Engine {
    config: std::sync::Arc<Config>,
    users: HashMap<Box<str>, UserState>,
    places: Vec<Place>,
    place_index: HashMap<u64, u32>,
    sources: HashMap<IpAddr, SourceState>,
    org_countries: HashMap<[u8; 2], u32>,
    /// Users per network (ASN) in the window.
    org_asns: HashMap<u32, u32>,
    hasher: std::collections::hash_map::RandomState,
    watermark: i64,
    last_prune: i64,
    stats: EngineStats,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("users", &self.users.len()).field("stats", &self.stats).finish()
    }
}

fn country_code(location: &Location) -> Option<[u8; 2]> {
    let cc = location.country.as_deref()?.as_bytes();
    (cc.len() == 2).then(|| [cc[0].to_ascii_uppercase(), cc[1].to_ascii_uppercase()])
}

fn cc_str(cc: &[u8; 2]) -> &str {
    std::str::from_utf8(cc).unwrap_or("??")
}

fn clip(s: &str) -> &str {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Engine {
    pub fn new(config: Config) -> Self {
        Self {
            config: std::sync::Arc::new(config),
            users: HashMap::new(),
            places: Vec::new(),
            place_index: HashMap::new(),
            sources: HashMap::new(),
            org_countries: HashMap::new(),
            org_asns: HashMap::new(),
            hasher: std::collections::hash_map::RandomState::new(),
            watermark: i64::MIN,
            last_prune: i64::MIN,
            stats: EngineStats::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats { profiles: self.users.len() as u64, ..self.stats }
    }

    /// Approximate memory held per user profile, in bytes (state + map entry).
    pub fn bytes_per_profile(&self) -> f64 {
        if self.users.is_empty() {
            return 0.0;
        }
        let entry = std::mem::size_of::<UserState>() + std::mem::size_of::<Box<str>>() + 8;
        let heap: usize = self.users.iter().map(|(k, v)| k.len() + v.heap_bytes()).sum();
        (self.users.len() * entry + heap) as f64 / self.users.len() as f64
    }

    fn hash<T: Hash + ?Sized>(&self, value: &T) -> u64 {
        self.hasher.hash_one(value)
    }

    fn enabled(&self, kind: AlertKind) -> bool {
        self.config.enabled.contains(&kind)
    }

    fn intern_place(&mut self, location: &Location) -> Option<u32> {
        if location.internal || (location.country.is_none() && location.city.is_none()) {
            return None;
        }
        let country = location.country.as_deref().map(clip);
        let city = location.city.as_deref().map(clip);
        let key = self.hash(&(country, city));
        if let Some(&id) = self.place_index.get(&key) {
            return Some(id);
        }
        if self.places.len() >= MAX_PLACES_TOTAL {
            return None;
        }
        let (lat, lon) = location.coordinates().map_or((f32::NAN, f32::NAN), |(a, b)| (a as f32, b as f32));
        let id = self.places.len() as u32;
        self.places.push(Place { country: country.map(Into::into), city: city.map(Into::into), lat, lon });
        self.place_index.insert(key, id);
        Some(id)
    }

    fn fix_of(&self, event: &Event, place: Option<u32>, device: Option<u64>) -> Option<Fix> {
        let location = event.location.as_ref()?;
        let (lat, lon) = location.coordinates()?;
        let accuracy = location.accuracy_km.map_or(self.config.impossible_travel.default_accuracy_km, f64::from);
        Some(Fix {
            time: event.time,
            lat: lat as f32,
            lon: lon as f32,
            accuracy: accuracy as f32,
            place: place.unwrap_or(u32::MAX),
            country: country_code(location).unwrap_or(*b"??"),
            device,
        })
    }

    fn place_label(&self, place: u32) -> String {
        match self.places.get(place as usize) {
            Some(Place { city: Some(city), country: Some(cc), .. }) => format!("{city}, {cc}"),
            Some(Place { country: Some(cc), .. }) => cc.to_string(),
            Some(Place { city: Some(city), .. }) => city.to_string(),
            _ => "unknown".into(),
        }
    }

    /// Processes one event; alerts are appended to `out`.
    pub fn ingest(&mut self, event: &Event, out: &mut Vec<AlertDraft>) {
        self.stats.events += 1;
        if !(0..=i64::from(u32::MAX)).contains(&event.time) {
            // Before 1970 or after 2106: not a real event time.
            self.stats.dropped += 1;
            return;
        }
        self.watermark = self.watermark.max(event.time);
        if self.watermark.saturating_sub(self.last_prune) >= DAY {
            self.prune();
        }
        let start = out.len();
        match event.kind {
            EventKind::VpnStart => self.vpn_start(event, out),
            EventKind::VpnStop => self.vpn_stop(event),
            EventKind::NasReset => self.nas_reset(event),
            EventKind::AuthSuccess => self.auth_success(event, out),
            EventKind::AuthFailure => self.auth_failure(event, out),
            EventKind::MfaFailure => self.mfa_failure(event, out),
        }
        // Suppressions.
        let asn = event.location.as_ref().and_then(|l| l.asn);
        let mut i = start;
        while i < out.len() {
            if self.config.suppressed(&out[i], asn) {
                out.swap_remove(i);
                self.stats.suppressed += 1;
            } else {
                i += 1;
            }
        }
        self.stats.alerts += (out.len() - start) as u64;
    }

    /// Processes events and returns their alerts.
    pub fn ingest_all<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) -> Vec<AlertDraft> {
        let mut out = Vec::new();
        for e in events {
            self.ingest(e, &mut out);
        }
        out
    }

    /// Forgets what is older than the windows: idle profiles, spray sources.
    fn prune(&mut self) {
        self.last_prune = self.watermark;
        let since = self.watermark - i64::from(self.config.window_days) * DAY;
        let history = i64::from(self.config.new_country.history_days.max(self.config.window_days));
        let history_since = self.watermark - history * DAY;
        let (mut dropped, mut dropped_asns) = (Vec::new(), Vec::new());
        self.users.retain(|_, u| {
            let (countries, asns) = u.prune(since, history_since);
            dropped.extend(countries);
            dropped_asns.extend(asns);
            if u.last_seen < history_since {
                dropped.extend(u.countries.iter().map(|c| c.key));
                dropped_asns.extend(u.asns.iter().map(|c| c.key));
                return false;
            }
            true
        });
        for cc in dropped {
            count_user(&mut self.org_countries, None, Some(cc));
        }
        for asn in dropped_asns {
            count_user(&mut self.org_asns, None, Some(asn));
        }
        let spray_since = self.watermark - i64::from(self.config.password_spray.window_minutes) * 60;
        self.sources.retain(|_, s| s.attempts.back().is_some_and(|a| a.0 >= spray_since));
    }

    fn user_mut(&mut self, user: &str, time: i64) -> Option<&mut UserState> {
        if user.is_empty() {
            return None;
        }
        if !self.users.contains_key(user) {
            if self.users.len() >= MAX_USERS {
                self.stats.dropped += 1;
                return None;
            }
            self.users
                .insert(clip(user).into(), UserState { first_seen: time, last_seen: time, ..UserState::default() });
        }
        let state = self.users.get_mut(clip(user))?;
        state.first_seen = state.first_seen.min(time);
        state.last_seen = state.last_seen.max(time);
        Some(state)
    }

    fn org_common(&self, cc: [u8; 2]) -> bool {
        let c = &self.config.new_country;
        let users = self.org_countries.get(&cc).copied().unwrap_or(0);
        let needed = (c.common_fraction * self.users.len() as f64).ceil().max(f64::from(c.common_min_users));
        f64::from(users) >= needed
    }

    /// Whether at least `suspicious_vpn.common_fraction` of the profiles, and
    /// `common_min_users` users, connect from this country or network.
    fn widespread<K: Hash + Eq>(&self, counts: &HashMap<K, u32>, key: &K) -> bool {
        let c = &self.config.suspicious_vpn;
        let users = counts.get(key).copied().unwrap_or(0);
        let needed = (c.common_fraction * self.users.len() as f64).ceil().max(f64::from(c.common_min_users));
        f64::from(users) >= needed
    }

    fn vpn_start(&mut self, event: &Event, out: &mut Vec<AlertDraft>) {
        let location = event.location.clone().unwrap_or_default();
        let place = self.intern_place(&location);
        let egress = self.config.is_egress(event.ip, Some(&location));
        let cc = country_code(&location).filter(|_| !location.internal);
        let session = event.session.as_deref().map(|s| self.hash(s)).unwrap_or_else(|| self.hash(&event.identity()));
        let (client, nas, nas_ip) = self.nas_of(event);
        let device = event.device.as_deref().map(clip).filter(|d| !d.is_empty());
        let device_hash = device.map(|d| self.hash(d));
        let fix = self.fix_of(event, place, device_hash).filter(|_| !egress && !location.internal);
        let config = std::sync::Arc::clone(&self.config);
        let window_since = event.time - i64::from(config.window_days) * DAY;
        let history_since = event.time - i64::from(config.new_country.history_days) * DAY;
        let common = cc.map(|c| self.org_common(c)).unwrap_or(true);
        let rare_country = cc.is_some_and(|c| !self.widespread(&self.org_countries, &c));
        let common_network = location.asn.is_some_and(|a| self.widespread(&self.org_asns, &a));
        let rare_asn = location.asn.is_some() && !common_network;
        let enabled = |k| config.enabled.contains(&k);
        let Some(state) = self.user_mut(&event.user, event.time) else { return };
        let mut found = Vec::new();

        // The physical checks first: a device name is the client's claim, so it never
        // cancels them, and a claim they contradict suppresses nothing.
        let travel = fix.zip(state.fix).and_then(|(now, prev)| {
            let t = &config.impossible_travel;
            let (from, to) = if prev.time <= now.time { (prev, now) } else { (now, prev) };
            let (distance, effective, hours, speed) = motion(from, to);
            let suppressed = (t.ignore_same_country && from.country == to.country)
                || (t.ignore_neighbours && neighbours(cc_str(&from.country), cc_str(&to.country)));
            (effective >= t.min_distance_km && speed > t.max_speed_kmh && !suppressed)
                .then_some((from, to, distance, effective, hours, speed))
        });
        let concurrent = fix.and_then(|now| {
            let c = &config.concurrent_sessions;
            let oldest = event.time - i64::from(c.max_session_hours) * 3600;
            // A computer connecting again suggests its own older session ended without
            // a Stop: that one counts while it is recent.
            let own_oldest = event.time - i64::from(c.same_device_hours.min(c.max_session_hours)) * 3600;
            state.open.iter().filter(|o| o.session != session && o.start >= oldest && o.start <= event.time).find_map(
                |o| {
                    let same = o.device.is_some() && o.device == device_hash;
                    let f = o.fix.filter(|_| !same || o.start >= own_oldest)?;
                    let d = motion(f, now).1;
                    (d >= c.min_distance_km).then_some((f, o.start, d, same))
                },
            )
        });
        // Where the claimed computer was last seen, and whether it could be here now.
        let device_fix = device_hash.and_then(|h| state.device_fixes.iter().find(|d| d.0 == h).map(|d| d.1));
        let t = &config.impossible_travel;
        let impossible =
            |from: Fix, to: Fix| motion(from, to).1 >= t.min_distance_km && motion(from, to).3 > t.max_speed_kmh;
        let claim_consistent = concurrent.is_none()
            && fix.is_none_or(|now| {
                state.fix.is_none_or(|prev| !impossible(prev, now)) && device_fix.is_none_or(|d| !impossible(d, now))
            });

        // A connection questioned for its country is accepted when the user's next
        // connection comes from the same place on the same computer: they are there (a
        // trip). Connections from elsewhere in between keep it questioned.
        let confirmed = state.pending.take().is_some_and(|p| {
            claim_consistent && place.is_some() && p.place == place && p.device == device_hash && p.asn == location.asn
        });

        // The hour of the user's day. A body keeps the clock of where it was last until
        // it could have travelled here by air (the flight plus time at airports): a
        // traveller's morning abroad is their usual morning, a connection from the other
        // side of the world hours after the user left the office is at the user's night.
        // Egress and unknown places: where the user was last.
        let arrived = |now: Fix, prev: Fix| {
            let hours = (now.time - prev.time) as f64 / 3600.0;
            hours >= motion(prev, now).1.max(0.0) / config.impossible_travel.max_speed_kmh + GROUND_HOURS
        };
        let clock = match (fix, state.fix) {
            (Some(now), Some(prev)) if !arrived(now, prev) => Some(prev),
            (now, prev) => now.or(prev),
        };
        let hour = local_hour(event.time, clock.map(|f| f.lon));

        // Suspicious VPN connection.
        let in_window = state.connections.iter().filter(|&&t| i64::from(t) >= window_since).count();
        let armed =
            state.first_vpn.is_some_and(|f| event.time - f >= i64::from(config.suspicious_vpn.learning_days) * DAY)
                && in_window >= config.suspicious_vpn.min_connections as usize;
        if armed && !confirmed && enabled(AlertKind::SuspiciousVpnConnection) {
            let v = &config.suspicious_vpn;
            let new_place = !egress && place.is_some_and(|p| !known(&state.places, &p, window_since));
            let new_country = !egress && cc.is_some_and(|c| !known(&state.countries, &c, window_since));
            let new_network = !egress && location.asn.is_some_and(|a| !known(&state.asns, &a, window_since));
            let managed = device.is_some_and(|d| v.managed_devices.iter().any(|p| portcullis_radius::glob(p, d)));
            let seen_device = device
                .is_some_and(|d| state.devices.iter().any(|s| &*s.key == d && i64::from(s.last) >= history_since));
            // A known or managed name vouches for nothing the physics contradicts.
            let new_device = device.is_some() && (!(seen_device || managed) || !claim_consistent);
            // The user's own computer in a rare country during their working hours is
            // a trip; the same name there at an hour they never work is not.
            let odd_hour = !usual_hour(&state.hours, hour);
            let strong_where = new_country && rare_country && (new_device || odd_hour);
            // A computer new to the user deviates on its own when the organisation names
            // its computers (it matches none of the patterns), when the physics
            // contradicts its name, or at an hour the user does not connect in; a new
            // computer in working hours is a replaced laptop or a first tablet.
            let strong_device = new_device && (!claim_consistent || !v.managed_devices.is_empty() || odd_hour);
            // A place or network new to the user, reached over a network many colleagues
            // use (the national mobile carrier, whose addresses geolocate to its hub
            // city; a large ISP) in a country that is not rare, is not somewhere new.
            let new_where = (new_place || new_network) && (!common_network || new_country && rare_country);
            // Two features, as the model of the anchor: where (location or network) and
            // which computer. Without a device only "where" can deviate.
            let features = if device.is_some() { 2 } else { 1 };
            let deviations = u32::from(new_where) + u32::from(new_device);
            let strong = v.min_deviations <= 1 && (strong_where || strong_device);
            if strong || deviations >= v.min_deviations.max(2).min(features) {
                let computers = recent(&state.devices, window_since) + usize::from(new_device && !seen_device);
                let locations = recent(&state.places, window_since) + usize::from(new_place);
                found.push((
                    AlertKind::SuspiciousVpnConnection,
                    format!("suspicious_vpn_connection:{}", event.user),
                    json!({
                        "new_location": new_place,
                        "new_country": new_country,
                        "new_device": new_device,
                        "new_network": new_network,
                        "deviations": deviations,
                        "rare_country": new_country && rare_country,
                        "rare_network": new_network && rare_asn,
                        "device_claim_consistent": claim_consistent,
                        "unusual_hour": odd_hour,
                        "computers": computers,
                        "locations": locations,
                        "known_places": state.places.iter().filter(|s| i64::from(s.last) >= window_since).map(|s| s.key).collect::<Vec<_>>(),
                        "known_devices": state.devices.iter().filter(|s| i64::from(s.last) >= window_since).map(|s| s.key.to_string()).collect::<Vec<_>>(),
                        "connections_in_window": in_window,
                    }),
                    format!(
                        "{} connected to a VPN using {} from {}.",
                        event.user,
                        plural(computers.max(1), "computer", "computers"),
                        plural(locations.max(1), "location", "locations")
                    ),
                ));
            }
        }

        // First connection from a country new to the user.
        if let (Some(c), false, true) = (cc, confirmed, enabled(AlertKind::NewCountry)) {
            let learned = event.time - state.first_seen >= i64::from(config.new_country.learning_days) * DAY;
            let own_device = config.new_country.ignore_known_device
                && claim_consistent
                && device.is_some_and(|d| state.devices.iter().any(|s| &*s.key == d));
            if learned && !egress && !common && !own_device && !known(&state.countries, &c, history_since) {
                let known_list: Vec<&str> = state
                    .countries
                    .iter()
                    .filter(|s| i64::from(s.last) >= history_since)
                    .map(|s| cc_str(&s.key))
                    .collect();
                found.push((
                    AlertKind::NewCountry,
                    format!("new_country:{}:{}", event.user, cc_str(&c)),
                    json!({
                        "country": cc_str(&c), "known_countries": known_list,
                        "history_days": config.new_country.history_days, "device_claim_consistent": claim_consistent,
                    }),
                    format!("{} connected to a VPN from {}, a country new to them.", event.user, cc_str(&c)),
                ));
            }
        }

        // Impossible travel against the last baseline fix, told in the order of event time.
        if let (Some((from, to, distance, effective, hours, speed)), true) =
            (travel, enabled(AlertKind::ImpossibleTravel))
        {
            found.push((
                AlertKind::ImpossibleTravel,
                format!("impossible_travel:{}:{}-{}", event.user, cc_str(&from.country), cc_str(&to.country)),
                json!({
                    "from_place": from.place, "from_time": from.time, "from": [from.lat, from.lon],
                    "to_place": to.place, "to_time": to.time, "to": [to.lat, to.lon],
                    "distance_km": distance.round(), "effective_distance_km": effective.round(),
                    "hours": (hours * 100.0).round() / 100.0,
                    "speed_kmh": if speed.is_finite() { json!(speed.round()) } else { json!(null) },
                    "same_device_name": from.device.is_some() && from.device == to.device,
                }),
                String::new(),
            ));
        }

        // Concurrent sessions far apart, whatever computer names they claim.
        if let (Some((f, started, d, same_device)), Some(now), true) =
            (concurrent, fix, enabled(AlertKind::ConcurrentSessions))
        {
            found.push((
                AlertKind::ConcurrentSessions,
                format!("concurrent_sessions:{}", event.user),
                json!({
                    "other_place": f.place, "other_started": started, "to_place": now.place,
                    "effective_distance_km": d.round(), "same_device_name": same_device,
                }),
                String::new(),
            ));
        }

        // Learn. A connection questioned for its country (a new country alert, or a
        // suspicious connection from a country rare in the organisation) does not
        // become part of what is normal for the user until their next connection
        // confirms it, so the attacker coming back days later from the same place and
        // computer, after the user connected from home, is questioned again.
        let questioned = found.iter().any(|f| {
            (f.0 == AlertKind::NewCountry || f.0 == AlertKind::SuspiciousVpnConnection && f.2["rare_country"] == true)
                && !config.would_suppress(f.0, &event.user, event.ip, location.asn)
        });
        let learn = !egress && !questioned;
        if questioned {
            state.pending = Some(Pending { place, device: device_hash, asn: location.asn });
        }
        state.first_vpn = Some(state.first_vpn.map_or(event.time, |f| f.min(event.time)));
        while state.connections.front().is_some_and(|&t| i64::from(t) < window_since) {
            state.connections.pop_front();
        }
        if state.connections.len() >= MAX_CONNECTIONS {
            state.connections.pop_front();
        }
        state.connections.push_back(st(event.time));
        if let Some(p) = place.filter(|_| learn) {
            touch(&mut state.places, p, event.time, MAX_PLACES);
        }
        let (mut new_cc, mut dropped_cc) = (None, None);
        if let Some(c) = cc.filter(|_| learn) {
            let (new, evicted) = touch_evicting(&mut state.countries, &c, || c, event.time, MAX_COUNTRIES);
            new_cc = new.then_some(c);
            dropped_cc = evicted;
        }
        if let Some(ip) = event.ip {
            touch(&mut state.ips, ip.to_canonical(), event.time, MAX_IPS);
        }
        if let Some(d) = device.filter(|_| !questioned) {
            touch_text(&mut state.devices, d, event.time, MAX_DEVICES);
        }
        let (mut new_asn, mut dropped_asn) = (None, None);
        if let Some(a) = location.asn.filter(|_| learn) {
            let (new, evicted) = touch_evicting(&mut state.asns, &a, || a, event.time, MAX_ASNS);
            new_asn = new.then_some(a);
            dropped_asn = evicted;
        }
        if let Some(n) = event.nas.as_deref().map(clip) {
            touch_text(&mut state.nas, n, event.time, MAX_NAS);
        }
        state.hours[hour] += 1;
        if let Some(f) = fix {
            if state.fix.is_none_or(|p| p.time <= f.time) {
                state.fix = Some(f);
            }
            if let Some(h) = device_hash {
                place_device(&mut state.device_fixes, h, f);
            }
        }
        state.open.retain(|o| o.session != session);
        if state.open.len() >= MAX_OPEN {
            state.open.remove(0);
        }
        state.open.push(Open { session, client, nas, nas_ip, device: device_hash, start: event.time, fix });
        count_user(&mut self.org_countries, new_cc, dropped_cc);
        count_user(&mut self.org_asns, new_asn, dropped_asn);

        let labels: Vec<(u32, String)> =
            found.iter().flat_map(|f| place_refs(&f.2)).map(|p| (p, self.place_label(p))).collect();
        for (kind, fold_key, mut evidence, message) in found {
            resolve_places(&mut evidence, &labels);
            let message =
                if message.is_empty() { self.travel_message(kind, &event.user, device, &evidence) } else { message };
            if let Some(obj) = evidence.as_object_mut() {
                obj.insert("ip".into(), json!(event.ip));
                obj.insert("device".into(), json!(device));
                obj.insert("nas".into(), json!(event.nas));
                obj.insert("location".into(), json!(location));
            }
            let mut draft = self.draft(kind, &event.user, event, fold_key, message, evidence);
            // Where and which computer both deviate: more than one sign.
            if kind == AlertKind::SuspiciousVpnConnection && draft.evidence["deviations"].as_u64() >= Some(2) {
                draft.severity = crate::Severity::High;
            }
            out.push(draft);
        }
    }

    fn travel_message(
        &self,
        kind: AlertKind,
        user: &str,
        device: Option<&str>,
        evidence: &serde_json::Value,
    ) -> String {
        let text = |k: &str| evidence.get(k).and_then(|v| v.as_str()).unwrap_or("unknown").to_owned();
        let km = evidence.get("effective_distance_km").and_then(|v| v.as_f64()).unwrap_or(0.0);
        let same = evidence.get("same_device_name").and_then(|v| v.as_bool()).unwrap_or(false);
        let claim = match (same, device) {
            (true, Some(d)) => format!(
                " Both claim the computer name {d:?}: one computer cannot be at both places, so the name is copied \
                 or the session stolen."
            ),
            _ => String::new(),
        };
        match kind {
            AlertKind::ImpossibleTravel => format!(
                "{user} connected from {} and then from {}: {km:.0} km in {} h.{claim}",
                text("from_place"),
                text("to_place"),
                evidence.get("hours").and_then(|v| v.as_f64()).unwrap_or(0.0)
            ),
            _ => format!(
                "{user} has VPN sessions open at once from {} and {} ({km:.0} km apart).{claim}",
                text("other_place"),
                text("to_place")
            ),
        }
    }

    fn draft(
        &self,
        kind: AlertKind,
        user: &str,
        event: &Event,
        fold_key: String,
        message: String,
        evidence: serde_json::Value,
    ) -> AlertDraft {
        AlertDraft {
            kind,
            severity: kind.severity(),
            user: user.to_owned(),
            event_time: event.time,
            message,
            evidence,
            fold_key,
            cause: event.identity(),
            ip: event.ip,
        }
    }

    fn vpn_stop(&mut self, event: &Event) {
        let Some(key) = event.session.as_deref() else { return };
        let session = self.hash(key);
        if let Some(state) = self.users.get_mut(clip(&event.user)) {
            // The user was where this session started until it stopped: a fresher
            // travel baseline.
            if let Some(mut fix) = state.open.iter().find(|o| o.session == session).and_then(|o| o.fix) {
                fix.time = event.time;
                if state.fix.is_none_or(|f| f.time <= event.time) {
                    state.fix = Some(fix);
                }
                if let Some(h) = fix.device {
                    place_device(&mut state.device_fixes, h, fix);
                }
            }
            state.open.retain(|o| o.session != session);
            state.last_seen = state.last_seen.max(event.time);
        }
    }

    /// The configured client, NAS-Identifier and NAS-IP-Address of an event, hashed.
    fn nas_of(&self, event: &Event) -> (u64, u64, Option<u64>) {
        let client = self.hash(event.client.as_deref().unwrap_or(""));
        let nas = self.hash(event.nas.as_deref().unwrap_or(""));
        (client, nas, event.nas_ip.map(|i| self.hash(&i.to_string())))
    }

    /// Accounting-On/Off ends the sessions of the NAS named by NAS-Identifier or
    /// NAS-IP-Address (a reset naming either matches sessions recorded under the other)
    /// that started by then, as the store does. The names are claims, so only sessions
    /// recorded through the same configured client end: a client cannot silence the
    /// concurrent-session detection of another NAS by naming it.
    fn nas_reset(&mut self, event: &Event) {
        let (client, nas, nas_ip) = self.nas_of(event);
        for state in self.users.values_mut() {
            state.open.retain(|o| {
                let named = o.nas == nas || nas_ip.is_some() && o.nas_ip == nas_ip;
                !(named && o.client == client) || o.start > event.time
            });
        }
    }

    fn source_attempt(&mut self, event: &Event, failed: bool, out: &mut Vec<AlertDraft>) {
        let Some(ip) = event.ip.map(|i| i.to_canonical()) else { return };
        let user = self.hash(&event.user.to_ascii_lowercase());
        if !self.sources.contains_key(&ip) && (self.sources.len() >= MAX_SOURCES || !failed) {
            if failed {
                self.stats.dropped += 1;
            }
            return;
        }
        let c = self.config.password_spray.clone();
        let since = event.time - i64::from(c.window_minutes) * 60;
        let source = self.sources.entry(ip).or_default();
        source.attempts.push_back((event.time, user, failed));
        while source.attempts.len() > MAX_SOURCE_ATTEMPTS || source.attempts.front().is_some_and(|a| a.0 < since) {
            source.attempts.pop_front();
        }
        if !failed || !self.config.enabled.contains(&AlertKind::PasswordSpray) {
            return;
        }
        if source.fired.is_some_and(|t| t >= since) {
            return;
        }
        let mut failed_users: Vec<u64> = source.attempts.iter().filter(|a| a.2).map(|a| a.1).collect();
        let failures = failed_users.len();
        failed_users.sort_unstable();
        failed_users.dedup();
        let mut ok_users: Vec<u64> = source.attempts.iter().filter(|a| !a.2).map(|a| a.1).collect();
        ok_users.sort_unstable();
        ok_users.dedup();
        let distinct = failed_users.len();
        if distinct >= c.users as usize
            && failures as f64 / distinct as f64 <= c.max_attempts_per_user
            && ok_users.len() < distinct
        {
            source.fired = Some(event.time);
            let evidence = json!({
                "source": ip, "users": distinct, "failures": failures, "successful_users": ok_users.len(),
                "window_minutes": c.window_minutes, "location": event.location,
            });
            let message = format!(
                "{ip} failed to log in as {distinct} different users ({failures} attempts) within {} minutes.",
                c.window_minutes
            );
            out.push(self.draft(
                AlertKind::PasswordSpray,
                &ip.to_string(),
                event,
                format!("password_spray:{ip}"),
                message,
                evidence,
            ));
        }
    }

    fn auth_failure(&mut self, event: &Event, out: &mut Vec<AlertDraft>) {
        let reason = event.reason.as_deref().unwrap_or("bad_password");
        if matches!(reason, "bad_password" | "unknown_user") {
            self.source_attempt(event, true, out);
        }
        if reason != "bad_password" {
            // Unknown users get no profile; policy and account refusals are not
            // guessing, but they are the user's activity.
            if reason != "unknown_user" {
                self.user_mut(&event.user, event.time);
            }
            return;
        }
        let c = self.config.brute_force.clone();
        let enabled = self.enabled(AlertKind::BruteForce);
        let keep =
            MAX_FAILURES.min((c.failures as usize).max(self.config.success_after_failures.failures as usize).max(1));
        let Some(state) = self.user_mut(&event.user, event.time) else { return };
        state.failures.push_back(event.time);
        while state.failures.len() > keep {
            state.failures.pop_front();
        }
        let since = event.time - i64::from(c.window_minutes) * 60;
        let count = state.failures.iter().filter(|&&t| t >= since && t <= event.time).count();
        if enabled && count >= c.failures as usize && state.brute_fired.is_none_or(|t| t < since) {
            state.brute_fired = Some(event.time);
            let evidence = json!({ "failures": count, "window_minutes": c.window_minutes, "ip": event.ip, "nas": event.nas, "location": event.location });
            let message = format!("{} failed to log in {count} times within {} minutes.", event.user, c.window_minutes);
            out.push(self.draft(
                AlertKind::BruteForce,
                &event.user,
                event,
                format!("brute_force:{}", event.user),
                message,
                evidence,
            ));
        }
    }

    fn auth_success(&mut self, event: &Event, out: &mut Vec<AlertDraft>) {
        self.source_attempt(event, false, out);
        let c = self.config.success_after_failures.clone();
        let enabled = self.enabled(AlertKind::SuccessAfterFailures);
        let Some(state) = self.user_mut(&event.user, event.time) else { return };
        if let Some(ip) = event.ip {
            touch(&mut state.ips, ip.to_canonical(), event.time, MAX_IPS);
        }
        let since = event.time - i64::from(c.window_minutes) * 60;
        let count = state.failures.iter().filter(|&&t| t >= since && t <= event.time).count();
        state.failures.clear();
        state.second_factor.clear();
        if enabled && count >= c.failures as usize {
            let evidence = json!({ "failures_before": count, "window_minutes": c.window_minutes, "ip": event.ip, "nas": event.nas, "location": event.location });
            let message =
                format!("{} logged in after {count} failed attempts within {} minutes.", event.user, c.window_minutes);
            out.push(self.draft(
                AlertKind::SuccessAfterFailures,
                &event.user,
                event,
                format!("success_after_failures:{}", event.user),
                message,
                evidence,
            ));
        }
    }

    /// A second factor refused a login whose password verified: MFA fatigue counts
    /// the pushes, "right password, failed second factor" the refusals it is told to.
    fn mfa_failure(&mut self, event: &Event, out: &mut Vec<AlertDraft>) {
        let reason = event.reason.as_deref().unwrap_or("");
        let config = std::sync::Arc::clone(&self.config);
        let enabled = |k| config.enabled.contains(&k);
        let push = matches!(reason, "push_denied" | "push_timeout" | "push_fatigue" | "push_reported");
        let refusal = config.failed_second_factor.reasons.iter().any(|r| r == reason);
        let Some(state) = self.user_mut(&event.user, event.time) else { return };
        let mut found = Vec::new();
        if push {
            let c = &config.mfa_fatigue;
            let on = enabled(AlertKind::MfaFatigue);
            // The user said the push was not theirs: an alert at once, whatever the count.
            let needed = if reason == "push_reported" { 1 } else { c.pushes };
            if reason == "push_reported" {
                state.fatigue_fired = None;
            }
            if let Some(count) =
                burst(&mut state.pushes, &mut state.fatigue_fired, event.time, needed, c.window_minutes, on)
            {
                let message = if reason == "push_reported" {
                    format!(
                        "{} reported a push approval request as not theirs (\"this wasn't me\"): someone else \
                         holds the password.",
                        event.user
                    )
                } else {
                    format!(
                        "{} received {count} push requests that were denied or not answered within {} minutes.",
                        event.user, c.window_minutes
                    )
                };
                found.push((
                    AlertKind::MfaFatigue,
                    json!({ "pushes": count, "last_outcome": reason, "window_minutes": c.window_minutes, "ip": event.ip, "nas": event.nas }),
                    message,
                ));
            }
        }
        if refusal {
            let c = &config.failed_second_factor;
            let on = enabled(AlertKind::FailedSecondFactor);
            let (times, fired) = (&mut state.second_factor, &mut state.second_factor_fired);
            if let Some(count) = burst(times, fired, event.time, c.failures, c.window_minutes, on) {
                found.push((
                    AlertKind::FailedSecondFactor,
                    json!({
                        "failures": count, "last_outcome": reason, "window_minutes": c.window_minutes,
                        "ip": event.ip, "nas": event.nas, "location": event.location,
                    }),
                    format!(
                        "{} entered the right password and failed the second factor {count} times within {} minutes \
                         (last: {reason}): someone else may hold the password.",
                        event.user, c.window_minutes
                    ),
                ));
            }
        }
        for (kind, evidence, message) in found {
            let fold = format!("{}:{}", kind.name(), event.user);
            out.push(self.draft(kind, &event.user, event, fold, message, evidence));
        }
    }

    /// The profile of one user, as far as the engine remembers it.
    pub fn profile(&self, user: &str) -> Option<Profile> {
        let state = self.users.get(user)?;
        let since = self.watermark - i64::from(self.config.window_days) * DAY;
        let mut locations: Vec<PlaceView> = state
            .places
            .iter()
            .filter(|s| i64::from(s.last) >= since)
            .filter_map(|s| {
                let p = self.places.get(s.key as usize)?;
                Some(PlaceView {
                    country: p.country.as_deref().map(str::to_owned),
                    city: p.city.as_deref().map(str::to_owned),
                    latitude: (!p.lat.is_nan()).then_some(f64::from(p.lat)),
                    longitude: (!p.lon.is_nan()).then_some(f64::from(p.lon)),
                    first_seen: rfc3339(s.first.into()),
                    last_seen: rfc3339(s.last.into()),
                    count: s.count,
                })
            })
            .collect();
        locations.sort_by(|a, b| b.count.cmp(&a.count).then(a.first_seen.cmp(&b.first_seen)));
        let seen = |list: Vec<(String, i64, i64, u32)>| {
            let mut v: Vec<SeenView> = list
                .into_iter()
                .map(|(value, first, last, count)| SeenView {
                    value,
                    first_seen: rfc3339(first),
                    last_seen: rfc3339(last),
                    count,
                })
                .collect();
            v.sort_by(|a, b| b.count.cmp(&a.count).then(a.first_seen.cmp(&b.first_seen)));
            v
        };
        let total: u32 = state.hours.iter().map(|&h| u32::from(h)).sum();
        let usual_hours =
            (0..24u8).filter(|&h| total > 0 && u32::from(state.hours[h as usize]) * 10 >= total).collect();
        Some(Profile {
            user: user.to_owned(),
            first_seen: rfc3339(state.first_seen),
            last_seen: rfc3339(state.last_seen),
            first_vpn_connection: state.first_vpn.map(rfc3339),
            locations,
            ips: seen(
                state
                    .ips
                    .iter()
                    .filter(|s| i64::from(s.last) >= since)
                    .map(|s| (s.key.to_string(), i64::from(s.first), i64::from(s.last), s.count))
                    .collect(),
            ),
            devices: seen(
                state
                    .devices
                    .iter()
                    .filter(|s| i64::from(s.last) >= since)
                    .map(|s| (s.key.to_string(), i64::from(s.first), i64::from(s.last), s.count))
                    .collect(),
            ),
            nas: seen(
                state
                    .nas
                    .iter()
                    .filter(|s| i64::from(s.last) >= since)
                    .map(|s| (s.key.to_string(), i64::from(s.first), i64::from(s.last), s.count))
                    .collect(),
            ),
            countries: seen(
                state
                    .countries
                    .iter()
                    .map(|s| (cc_str(&s.key).to_owned(), i64::from(s.first), i64::from(s.last), s.count))
                    .collect(),
            ),
            asns: state.asns.iter().filter(|s| i64::from(s.last) >= since).map(|s| s.key).collect(),
            usual_hours_local: usual_hours,
            open_sessions: state
                .open
                .iter()
                .map(|o| OpenSessionView { started: rfc3339(o.start), place: o.fix.map(|f| self.place_label(f.place)) })
                .collect(),
            window_days: self.config.window_days,
        })
    }
}

/// Evidence refers to places by id while detectors run; these become labels.
fn place_refs(evidence: &serde_json::Value) -> Vec<u32> {
    let mut out = Vec::new();
    if let Some(obj) = evidence.as_object() {
        for key in ["from_place", "to_place", "other_place"] {
            if let Some(id) = obj.get(key).and_then(|v| v.as_u64()) {
                out.push(id as u32);
            }
        }
        if let Some(list) = obj.get("known_places").and_then(|v| v.as_array()) {
            out.extend(list.iter().filter_map(|v| v.as_u64()).map(|v| v as u32));
        }
    }
    out
}

fn resolve_places(evidence: &mut serde_json::Value, labels: &[(u32, String)]) {
    let label = |v: &serde_json::Value| {
        v.as_u64()
            .and_then(|id| labels.iter().find(|(p, _)| u64::from(*p) == id))
            .map_or_else(|| json!("unknown"), |(_, l)| json!(l))
    };
    if let Some(obj) = evidence.as_object_mut() {
        for key in ["from_place", "to_place", "other_place"] {
            if let Some(v) = obj.get_mut(key) {
                *v = label(v);
            }
        }
        if let Some(serde_json::Value::Array(list)) = obj.get_mut("known_places") {
            for v in list.iter_mut() {
                *v = label(v);
            }
        }
        for key in ["from_time", "to_time"] {
            if let Some(t) = obj.get(key).and_then(|v| v.as_i64()) {
                obj.insert(key.into(), json!(rfc3339(t)));
            }
        }
        if let Some(t) = obj.get("other_started").and_then(|v| v.as_i64()) {
            obj.insert("other_started".into(), json!(rfc3339(t)));
        }
    }
}

/// A location in a profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaceView {
    pub country: Option<String>,
    pub city: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub first_seen: String,
    pub last_seen: String,
    pub count: u32,
}

/// An address, device, NAS or country in a profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeenView {
    pub value: String,
    pub first_seen: String,
    pub last_seen: String,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenSessionView {
    pub started: String,
    pub place: Option<String>,
}

/// A user's entity profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub user: String,
    pub first_seen: String,
    pub last_seen: String,
    pub first_vpn_connection: Option<String>,
    /// Distinct VPN locations in the window.
    pub locations: Vec<PlaceView>,
    /// Client addresses in the window.
    pub ips: Vec<SeenView>,
    pub devices: Vec<SeenView>,
    pub nas: Vec<SeenView>,
    pub countries: Vec<SeenView>,
    pub asns: Vec<u32>,
    /// Hours of the day holding at least a tenth of the user's connections, in the
    /// solar time where the user was (see docs/detections.md).
    pub usual_hours_local: Vec<u8>,
    pub open_sessions: Vec<OpenSessionView>,
    pub window_days: u32,
}

/// Unix seconds as RFC 3339 UTC (`2026-11-22T08:15:00Z`); the number itself when out
/// of the calendar's range.
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Suppression;

    fn loc(cc: &str, city: &str, lat: f64, lon: f64, acc: Option<u32>, asn: u32) -> Location {
        Location {
            country: Some(cc.into()),
            city: Some(city.into()),
            latitude: Some(lat),
            longitude: Some(lon),
            accuracy_km: acc,
            asn: Some(asn),
            ..Location::default()
        }
    }

    fn berlin() -> Location {
        loc("DE", "Berlin", 52.52, 13.405, Some(20), 64500)
    }

    fn start(t: i64, user: &str, ip: &str, device: &str, l: Location, session: &str) -> Event {
        Event {
            time: t,
            kind: EventKind::VpnStart,
            user: user.into(),
            ip: Some(ip.parse().unwrap()),
            device: Some(device.into()),
            nas: Some("gw".into()),
            nas_ip: None,
            client: None,
            session: Some(session.into()),
            reason: None,
            location: Some(l),
        }
    }

    fn auth(t: i64, kind: EventKind, user: &str, ip: &str, reason: Option<&str>) -> Event {
        Event {
            time: t,
            kind,
            user: user.into(),
            ip: Some(ip.parse().unwrap()),
            device: None,
            nas: None,
            nas_ip: None,
            client: None,
            session: None,
            reason: reason.map(Into::into),
            location: None,
        }
    }

    const T0: i64 = 1_767_571_200;

    /// Alice connects daily from Berlin on her laptop for `days` days.
    fn learned(engine: &mut Engine, days: i64) -> Vec<AlertDraft> {
        let events: Vec<Event> = (0..days)
            .map(|d| start(T0 + d * DAY + 8 * 3600, "alice", "192.0.2.1", "LT-1", berlin(), &format!("s{d}")))
            .collect();
        engine.ingest_all(&events)
    }

    fn moscow() -> Location {
        loc("RU", "Moscow", 55.76, 37.62, Some(50), 64999)
    }

    fn kinds(alerts: &[AlertDraft]) -> Vec<AlertKind> {
        alerts.iter().map(|a| a.kind).collect()
    }

    #[test]
    fn suspicious_vpn_connection_arms_after_thirty_days_and_five_connections() {
        let mut e = Engine::new(Config::default());
        assert!(learned(&mut e, 20).is_empty());
        // Not yet armed: a new computer from Sydney on day 21 raises no model alert.
        let t = T0 + 21 * DAY;
        let alerts = e.ingest_all(&[start(
            t,
            "alice",
            "203.0.113.5",
            "DESKTOP-X",
            loc("AU", "Sydney", -33.87, 151.2, Some(50), 64520),
            "x1",
        )]);
        assert!(alerts.iter().all(|a| a.kind != AlertKind::SuspiciousVpnConnection));
        // The two-feature rule of before.
        let mut config = Config::default();
        config.suspicious_vpn.min_deviations = 2;
        let mut e = Engine::new(config);
        learned(&mut e, 35);
        let t = T0 + 35 * DAY + 12 * 3600;
        // Same laptop from Paris (a trip): one deviation, no alert.
        let trip = e.ingest_all(&[start(
            t,
            "alice",
            "192.0.2.200",
            "LT-1",
            loc("FR", "Paris", 48.85, 2.35, Some(20), 64501),
            "t1",
        )]);
        assert!(trip.iter().all(|a| a.kind != AlertKind::SuspiciousVpnConnection), "{trip:?}");
        // A new computer from a new place: alert with the anchor's wording.
        let t = t + 2 * DAY;
        let alerts = e.ingest_all(&[start(
            t,
            "alice",
            "198.51.100.9",
            "DESKTOP-X",
            loc("US", "New York", 40.71, -74.0, Some(50), 64510),
            "a1",
        )]);
        let a = alerts.iter().find(|a| a.kind == AlertKind::SuspiciousVpnConnection).expect("alert");
        assert_eq!(a.message, "alice connected to a VPN using 2 computers from 3 locations.");
        assert_eq!(a.severity, crate::Severity::High, "two deviations");
        assert_eq!(a.evidence["new_device"], true);
        assert_eq!(a.event_time, t);
        // The real count (days 8 to 34 and the trip), not the arming threshold.
        assert_eq!(a.evidence["connections_in_window"], 28);
    }

    #[test]
    fn one_strong_deviation_alerts_a_common_one_does_not() {
        // A country nobody in the organisation connects from, on the user's own laptop.
        let mut e = Engine::new(Config::default());
        learned(&mut e, 35);
        let t = T0 + 35 * DAY + 12 * 3600;
        let a = e.ingest_all(&[start(t, "alice", "198.51.100.3", "LT-1", moscow(), "m1")]);
        let a = a.iter().find(|a| a.kind == AlertKind::SuspiciousVpnConnection).expect("one deviation");
        assert_eq!(a.severity, crate::Severity::Medium);
        assert_eq!(
            (a.evidence["new_device"].as_bool(), a.evidence["rare_country"].as_bool()),
            (Some(false), Some(true))
        );
        assert_eq!(a.message, "alice connected to a VPN using 1 computer from 2 locations.");
        // Paris, where half the organisation connects from its office network: a new
        // place alone is no strong deviation.
        let mut e = Engine::new(Config::default());
        let paris = loc("FR", "Paris", 48.85, 2.35, Some(20), 64501);
        learned(&mut e, 35);
        let office: Vec<Event> = (0..8)
            .map(|i| start(t - DAY + i * 60, &format!("fr{i}"), "192.0.2.77", "PC", paris.clone(), &format!("f{i}")))
            .collect();
        e.ingest_all(&office);
        let a = e.ingest_all(&[start(t, "alice", "192.0.2.200", "LT-1", paris, "t1")]);
        assert!(a.iter().all(|a| a.kind != AlertKind::SuspiciousVpnConnection), "{a:?}");
        // A computer never seen, not a managed name, from home: strong when the
        // organisation names its computers.
        let mut config = Config::default();
        config.suspicious_vpn.managed_devices = vec!["LT-*".into()];
        let mut e = Engine::new(config);
        learned(&mut e, 35);
        let a = e.ingest_all(&[start(t, "alice", "192.0.2.1", "DESKTOP-7", berlin(), "d1")]);
        assert_eq!(kinds(&a), vec![AlertKind::SuspiciousVpnConnection]);
        let a = e.ingest_all(&[start(t + DAY, "alice", "192.0.2.1", "LT-2", berlin(), "d2")]);
        assert!(a.is_empty(), "a replaced managed laptop: {a:?}");
    }

    #[test]
    fn a_copied_device_name_cancels_no_physical_impossibility() {
        // Alice's laptop is connected from Berlin; an attacker names a computer
        // "LT-1" too and connects from Moscow an hour later.
        let mut e = Engine::new(Config::default());
        learned(&mut e, 35);
        let t = T0 + 35 * DAY + 8 * 3600;
        e.ingest_all(&[start(t, "alice", "192.0.2.1", "LT-1", berlin(), "home")]);
        let a = e.ingest_all(&[start(t + 3600, "alice", "198.51.100.3", "LT-1", moscow(), "evil")]);
        let found = kinds(&a);
        for k in [
            AlertKind::SuspiciousVpnConnection,
            AlertKind::NewCountry,
            AlertKind::ImpossibleTravel,
            AlertKind::ConcurrentSessions,
        ] {
            assert!(found.contains(&k), "{k:?} missing from {found:?}");
        }
        let concurrent = a.iter().find(|a| a.kind == AlertKind::ConcurrentSessions).unwrap();
        assert_eq!(concurrent.evidence["same_device_name"], true);
        assert!(concurrent.message.contains("Both claim the computer name \"LT-1\""), "{}", concurrent.message);
        let travel = a.iter().find(|a| a.kind == AlertKind::ImpossibleTravel).unwrap();
        assert!(travel.message.contains("copied"), "{}", travel.message);
        let model = a.iter().find(|a| a.kind == AlertKind::SuspiciousVpnConnection).unwrap();
        assert_eq!(model.evidence["device_claim_consistent"], false);
        assert_eq!(model.evidence["new_device"], true);
        assert_eq!(model.severity, crate::Severity::High);
        // A managed name is no excuse either.
        let mut config = Config::default();
        config.suspicious_vpn.managed_devices = vec!["LT-*".into()];
        config.suspicious_vpn.min_deviations = 2;
        let mut e = Engine::new(config);
        learned(&mut e, 35);
        e.ingest_all(&[start(t, "alice", "192.0.2.1", "LT-1", berlin(), "home")]);
        let a = e.ingest_all(&[start(t + 3600, "alice", "198.51.100.3", "LT-77", moscow(), "evil")]);
        assert!(kinds(&a).contains(&AlertKind::SuspiciousVpnConnection), "{a:?}");
        // The laptop really travelled (Stop in Berlin, Moscow two days later): the
        // known device still explains the new country.
        let mut e = Engine::new(Config::default());
        learned(&mut e, 35);
        let a = e.ingest_all(&[start(t + 2 * DAY, "alice", "198.51.100.3", "LT-1", moscow(), "trip")]);
        assert!(!kinds(&a).contains(&AlertKind::NewCountry), "{a:?}");
        assert!(!kinds(&a).contains(&AlertKind::ConcurrentSessions), "{a:?}");
    }

    #[test]
    fn a_questioned_country_stays_questioned_until_the_user_is_there() {
        let night = |d: i64| T0 + d * DAY + 2 * 3600;
        let mut e = Engine::new(Config::default());
        learned(&mut e, 35);
        // An attacker at night from Moscow, on a computer named like alice's laptop.
        let first = e.ingest_all(&[start(night(35), "alice", "198.51.100.3", "LT-1", moscow(), "evil1")]);
        assert!(kinds(&first).contains(&AlertKind::SuspiciousVpnConnection), "{first:?}");
        // Alice works from Berlin in between; the attacker comes back three days later.
        learned_day(&mut e, 36);
        let back = e.ingest_all(&[start(night(38), "alice", "198.51.100.3", "LT-1", moscow(), "evil2")]);
        assert!(kinds(&back).contains(&AlertKind::SuspiciousVpnConnection), "a follow-up: {back:?}");
        // A trip: the next connection comes from the same place on the same computer.
        let trip = e.ingest_all(&[start(night(38) + 7200, "alice", "198.51.100.3", "LT-1", moscow(), "t2")]);
        assert!(trip.is_empty(), "she is there: {trip:?}");
    }

    fn learned_day(engine: &mut Engine, d: i64) {
        engine.ingest_all(&[start(T0 + d * DAY + 8 * 3600, "alice", "192.0.2.1", "LT-1", berlin(), &format!("s{d}"))]);
    }

    fn vienna() -> Location {
        loc("AT", "Vienna", 48.21, 16.37, Some(20), 65224)
    }

    fn new_york() -> Location {
        loc("US", "New York", 40.71, -74.0, Some(20), 65131)
    }

    /// 40 working days in New York, 07:30 local (12:30 UTC).
    fn new_yorker(e: &mut Engine) {
        for d in 0..40 {
            let t = T0 + d * DAY + 12 * 3600 + 1800;
            e.ingest_all(&[start(t, "nina", "192.0.2.7", "LT-7", new_york(), &format!("n{d}"))]);
        }
    }

    #[test]
    fn a_trip_is_judged_by_the_hour_where_the_user_is() {
        // Her own laptop in Vienna at 07:30 local (06:30 UTC, an hour she never connects
        // at on the UTC clock) two days after she left New York: a trip.
        let mut e = Engine::new(Config::default());
        new_yorker(&mut e);
        let trip = T0 + 41 * DAY + 6 * 3600 + 1800;
        let a = e.ingest_all(&[start(trip, "nina", "198.51.100.9", "LT-7", vienna(), "trip")]);
        assert!(!kinds(&a).contains(&AlertKind::SuspiciousVpnConnection), "{a:?}");
    }

    #[test]
    fn a_far_connection_before_the_user_could_have_flown_keeps_the_home_clock() {
        // The same laptop name in Vienna at 07:30 local, but eight hours after her day
        // ended in New York (the flight and the airports take longer): at 01:30 on her
        // clock, which she never connects at.
        let mut e = Engine::new(Config::default());
        new_yorker(&mut e);
        let evening = T0 + 40 * DAY + 22 * 3600 + 1800;
        e.ingest_all(&[start(evening, "nina", "192.0.2.7", "LT-7", new_york(), "late")]);
        let a = e.ingest_all(&[start(evening + 8 * 3600, "nina", "198.51.100.9", "LT-7", vienna(), "x")]);
        let a = a.iter().find(|a| a.kind == AlertKind::SuspiciousVpnConnection).expect("suspicious");
        assert_eq!(a.evidence["unusual_hour"], true);
    }

    #[test]
    fn a_new_tablet_on_a_network_colleagues_use_is_not_somewhere_new() {
        // Ten colleagues connect over the national mobile carrier; alice's first tablet
        // over it, in her working hours, deviates only in the computer.
        let mut e = Engine::new(Config::default());
        let carrier = loc("DE", "Frankfurt", 50.11, 8.68, Some(200), 65005);
        for u in 0..10 {
            let s = start(
                T0 + 35 * DAY + u * 60,
                &format!("c{u}"),
                "192.0.2.20",
                "LT-C",
                carrier.clone(),
                &format!("c{u}"),
            );
            e.ingest_all(&[s]);
        }
        learned(&mut e, 40);
        let t = T0 + 40 * DAY + 8 * 3600;
        let a = e.ingest_all(&[start(t, "alice", "192.0.2.30", "TAB-1", carrier.clone(), "tab")]);
        assert!(!kinds(&a).contains(&AlertKind::SuspiciousVpnConnection), "{a:?}");
        // The same at 02:00, an hour she never connects at, alerts.
        let a = e.ingest_all(&[start(t + 18 * 3600, "alice", "192.0.2.30", "TAB-2", carrier, "tab2")]);
        assert!(kinds(&a).contains(&AlertKind::SuspiciousVpnConnection), "{a:?}");
    }

    #[test]
    fn impossible_travel_is_told_in_event_time_order() {
        let mut e = Engine::new(Config::default());
        // Berlin at 10:00 arrives first, Moscow at 09:00 arrives after it.
        e.ingest_all(&[start(T0 + 10 * 3600, "bob", "192.0.2.1", "LT-2", berlin(), "b1")]);
        let a = e.ingest_all(&[start(T0 + 9 * 3600, "bob", "198.51.100.3", "PC-9", moscow(), "b2")]);
        let a = a.iter().find(|a| a.kind == AlertKind::ImpossibleTravel).expect("travel");
        assert!(a.message.starts_with("bob connected from Moscow, RU and then from Berlin, DE"), "{}", a.message);
        assert_eq!(a.evidence["from_time"], "2026-01-05T09:00:00Z");
        assert_eq!(a.evidence["to_time"], "2026-01-05T10:00:00Z");
        assert_eq!(a.fold_key, "impossible_travel:bob:RU-DE");
        assert_eq!(a.evidence["same_device_name"], false);
    }

    #[test]
    fn second_factor_failures_are_not_wrong_passwords() {
        let mut e = Engine::new(Config::default());
        let refused: Vec<Event> = (0..12)
            .map(|i| {
                let reason = ["wrong_code", "replayed", "unavailable", "not_enrolled"][i as usize % 4];
                auth(T0 + i * 20, EventKind::MfaFailure, "eve", "198.51.100.7", Some(reason))
            })
            .collect();
        let alerts = e.ingest_all(&refused);
        assert_eq!(kinds(&alerts), vec![AlertKind::FailedSecondFactor], "no brute force, no spray");
        assert_eq!(alerts[0].evidence["failures"], 3);
        assert_eq!(alerts[0].severity, crate::Severity::High);
        assert!(alerts[0].message.starts_with("eve entered the right password and failed the second factor 3 times"));
        // A typo in the code, then the right one: no alert.
        let mut e = Engine::new(Config::default());
        let mut events = vec![
            auth(T0, EventKind::MfaFailure, "kim", "192.0.2.9", Some("wrong_code")),
            auth(T0 + 30, EventKind::MfaFailure, "kim", "192.0.2.9", Some("wrong_code")),
            auth(T0 + 60, EventKind::AuthSuccess, "kim", "192.0.2.9", Some("totp")),
        ];
        events.push(auth(T0 + 900, EventKind::MfaFailure, "kim", "192.0.2.9", Some("wrong_code")));
        assert!(e.ingest_all(&events).is_empty());
        // A policy denial is the user's activity: the profile exists.
        let mut e = Engine::new(Config::default());
        e.ingest_all(&[auth(T0, EventKind::AuthFailure, "lee", "192.0.2.9", Some("policy"))]);
        assert_eq!(e.profile("lee").map(|p| p.first_seen), Some("2026-01-05T00:00:00Z".to_string()));
        e.ingest_all(&[auth(T0, EventKind::AuthFailure, "nobody", "192.0.2.9", Some("unknown_user"))]);
        assert!(e.profile("nobody").is_none());
    }

    #[test]
    fn impossible_travel_subtracts_accuracy_and_ignores_egress() {
        let mut config = Config::default();
        config.egress_asns.push(64999);
        let mut e = Engine::new(config);
        let t = T0;
        e.ingest_all(&[start(t, "bob", "192.0.2.1", "LT-2", berlin(), "b1")]);
        // Paris (878 km) one hour later: too fast.
        let fast = e.ingest_all(&[start(
            t + 3600,
            "bob",
            "192.0.2.200",
            "LT-2",
            loc("FR", "Paris", 48.8566, 2.3522, Some(20), 64501),
            "b2",
        )]);
        let a = fast.iter().find(|a| a.kind == AlertKind::ImpossibleTravel).expect("travel");
        assert!(a.message.contains("Berlin, DE") && a.message.contains("Paris, FR"), "{}", a.message);
        assert_eq!(a.evidence["effective_distance_km"], 837.0);
        // Country-level fix (accuracy 1000 km) an hour later: distance is within the radii.
        let vague = e.ingest_all(&[start(
            t + 7200,
            "bob",
            "192.0.2.2",
            "LT-2",
            loc("DE", "", 51.0, 9.0, Some(1000), 64500),
            "b3",
        )]);
        assert!(vague.iter().all(|a| a.kind != AlertKind::ImpossibleTravel));
        // Cloud egress far away is not judged and does not become the baseline.
        let cloud = e.ingest_all(&[start(
            t + 7300,
            "bob",
            "198.51.100.1",
            "LT-2",
            loc("US", "New York", 40.7, -74.0, Some(10), 64999),
            "b4",
        )]);
        assert!(cloud.iter().all(|a| a.kind != AlertKind::ImpossibleTravel));
        let back = e.ingest_all(&[start(
            t + 7400,
            "bob",
            "192.0.2.201",
            "LT-2",
            loc("FR", "Paris", 48.8566, 2.3522, Some(20), 64501),
            "b5",
        )]);
        assert!(back.iter().all(|a| a.kind != AlertKind::ImpossibleTravel), "{back:?}");
    }

    #[test]
    fn neighbour_suppression_is_optional() {
        let mut config = Config::default();
        config.impossible_travel.ignore_neighbours = true;
        let mut e = Engine::new(config);
        e.ingest_all(&[start(T0, "c", "192.0.2.1", "d", berlin(), "1")]);
        let a = e.ingest_all(&[start(
            T0 + 600,
            "c",
            "192.0.2.200",
            "d",
            loc("FR", "Paris", 48.85, 2.35, Some(20), 1),
            "2",
        )]);
        assert!(a.iter().all(|a| a.kind != AlertKind::ImpossibleTravel));
    }

    #[test]
    fn concurrent_sessions_from_far_apart_but_not_after_a_stop() {
        let mut e = Engine::new(Config::default());
        e.ingest_all(&[start(T0, "d", "192.0.2.1", "LT", berlin(), "1")]);
        let ny = loc("US", "New York", 40.71, -74.0, Some(50), 64510);
        let a = e.ingest_all(&[start(T0 + 20 * 3600, "d", "198.51.100.1", "PC", ny.clone(), "2")]);
        assert!(a.iter().any(|a| a.kind == AlertKind::ConcurrentSessions));
        let mut e = Engine::new(Config::default());
        e.ingest_all(&[start(T0, "d", "192.0.2.1", "LT", berlin(), "1")]);
        let mut stop = start(T0 + 3600, "d", "192.0.2.1", "LT", berlin(), "1");
        stop.kind = EventKind::VpnStop;
        let a = e.ingest_all(&[stop, start(T0 + 20 * 3600, "d", "198.51.100.1", "PC", ny, "2")]);
        assert!(a.iter().all(|a| a.kind != AlertKind::ConcurrentSessions));
    }

    #[test]
    fn a_nas_reset_ends_only_sessions_recorded_through_the_same_client() {
        // Bob's session came through client "hq". A reset naming his NAS through
        // client "branch" (whose secret an attacker holds) ends nothing of it, so the
        // attacker's far session is still concurrent with it; one through "hq" does.
        let through = |mut e: Event, client: &str| {
            e.client = Some(client.into());
            e
        };
        let reset = |client: &str| Event {
            kind: EventKind::NasReset,
            user: String::new(),
            nas: Some("gw".into()),
            session: None,
            location: None,
            client: Some(client.into()),
            ..start(T0 + 3600, "", "192.0.2.1", "", berlin(), "")
        };
        let ny = loc("US", "New York", 40.71, -74.0, Some(50), 64510);
        let far = through(start(T0 + 2 * 3600, "bob", "198.51.100.1", "PC", ny, "2"), "hq");
        for (client, concurrent) in [("branch", true), ("hq", false)] {
            let mut e = Engine::new(Config::default());
            let home = through(start(T0, "bob", "192.0.2.1", "LT", berlin(), "1"), "hq");
            let a = e.ingest_all(&[home, reset(client), far.clone()]);
            assert_eq!(kinds(&a).contains(&AlertKind::ConcurrentSessions), concurrent, "reset via {client}: {a:?}");
        }
    }

    #[test]
    fn a_nas_reset_by_address_ends_sessions_named_by_identifier() {
        let mut e = Engine::new(Config::default());
        let mut first = start(T0, "d", "192.0.2.1", "LT", berlin(), "1");
        first.nas_ip = Some("192.0.2.10".parse().unwrap());
        let reset = Event {
            kind: EventKind::NasReset,
            user: String::new(),
            nas: Some("192.0.2.10".into()),
            nas_ip: Some("192.0.2.10".parse().unwrap()),
            session: None,
            location: None,
            ..start(T0 + 3600, "", "192.0.2.1", "", berlin(), "")
        };
        let ny = loc("US", "New York", 40.71, -74.0, Some(50), 64510);
        let a = e.ingest_all(&[first, reset, start(T0 + 20 * 3600, "d", "198.51.100.1", "PC", ny, "2")]);
        assert!(a.iter().all(|a| a.kind != AlertKind::ConcurrentSessions), "{a:?}");
    }

    #[test]
    fn new_country_needs_learning_and_is_suppressed_when_common() {
        let mut config = Config::default();
        config.new_country.common_min_users = 2;
        config.new_country.common_fraction = 0.0;
        let mut e = Engine::new(config);
        learned(&mut e, 20);
        let t = T0 + 20 * DAY;
        let ru = loc("RU", "Moscow", 55.76, 37.62, Some(50), 64999);
        let a = e.ingest_all(&[start(t, "alice", "198.51.100.3", "X", ru.clone(), "n1")]);
        let alert = a.iter().find(|a| a.kind == AlertKind::NewCountry).expect("new country");
        assert_eq!(alert.fold_key, "new_country:alice:RU");
        // Two other users already connect from RU: common, no alert for a third.
        for u in ["u1", "u2"] {
            e.ingest_all(&[start(t + 10, u, "198.51.100.3", "X", ru.clone(), u)]);
        }
        let mut e2 = e;
        let other: Vec<Event> =
            (0..20).map(|d| start(T0 + d * DAY, "zed", "192.0.2.1", "LT", berlin(), &format!("z{d}"))).collect();
        e2.ingest_all(&other);
        let a = e2.ingest_all(&[start(t + 100, "zed", "198.51.100.4", "Y", ru, "z99")]);
        assert!(a.iter().all(|a| a.kind != AlertKind::NewCountry), "{a:?}");
    }

    #[test]
    fn brute_force_spray_success_after_failures_and_fatigue() {
        let mut e = Engine::new(Config::default());
        let mut events: Vec<Event> = (0..12)
            .map(|i| auth(T0 + i * 20, EventKind::AuthFailure, "eve", "198.51.100.7", Some("bad_password")))
            .collect();
        events.push(auth(T0 + 300, EventKind::AuthSuccess, "eve", "198.51.100.7", None));
        let alerts = e.ingest_all(&events);
        let kinds: Vec<AlertKind> = alerts.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, vec![AlertKind::BruteForce, AlertKind::SuccessAfterFailures]);
        assert_eq!(alerts[0].message, "eve failed to log in 10 times within 10 minutes.");

        let mut e = Engine::new(Config::default());
        let spray: Vec<Event> = (0..12)
            .map(|i| {
                auth(T0 + i * 60, EventKind::AuthFailure, &format!("user{i}"), "203.0.113.66", Some("bad_password"))
            })
            .collect();
        let alerts = e.ingest_all(&spray);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].kind, AlertKind::PasswordSpray);
        assert_eq!(alerts[0].user, "203.0.113.66");
        assert_eq!(alerts[0].evidence["users"], 10);

        let mut e = Engine::new(Config::default());
        let pushes: Vec<Event> = ["push_denied", "push_timeout", "push_denied"]
            .iter()
            .enumerate()
            .map(|(i, r)| auth(T0 + i as i64 * 90, EventKind::MfaFailure, "fay", "192.0.2.9", Some(r)))
            .collect();
        let alerts = e.ingest_all(&pushes);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind, AlertKind::MfaFatigue);
        assert_eq!(alerts[0].evidence["pushes"], 3);
        // "This wasn't me" raises at once, even right after the burst above.
        let reported = auth(T0 + 300, EventKind::MfaFailure, "fay", "192.0.2.9", Some("push_reported"));
        let alerts = e.ingest_all(&[reported]);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(
            (alerts[0].kind, alerts[0].evidence["last_outcome"].as_str()),
            (AlertKind::MfaFatigue, Some("push_reported"))
        );
        assert!(alerts[0].message.contains("not theirs"), "{:?}", alerts[0].message);
    }

    #[test]
    fn suppressions_by_user_network_and_asn() {
        let config = Config {
            suppressions: vec![
                Suppression { user: Some("eve".into()), ..Suppression::default() },
                Suppression { network: Some("203.0.113.0/24".parse().unwrap()), ..Suppression::default() },
            ],
            ..Config::default()
        };
        let mut e = Engine::new(config);
        let events: Vec<Event> = (0..12)
            .map(|i| auth(T0 + i * 20, EventKind::AuthFailure, "eve", "198.51.100.7", Some("bad_password")))
            .collect();
        assert!(e.ingest_all(&events).is_empty());
        let spray: Vec<Event> = (0..12)
            .map(|i| {
                auth(T0 + i * 60, EventKind::AuthFailure, &format!("user{i}"), "203.0.113.66", Some("bad_password"))
            })
            .collect();
        assert!(e.ingest_all(&spray).is_empty());
        assert_eq!(e.stats().suppressed, 2);
    }

    #[test]
    fn profile_lists_locations_ips_devices() {
        let mut e = Engine::new(Config::default());
        learned(&mut e, 3);
        let p = e.profile("alice").unwrap();
        assert_eq!(p.locations.len(), 1);
        assert_eq!(p.locations[0].city.as_deref(), Some("Berlin"));
        assert_eq!(p.locations[0].count, 3);
        assert_eq!(p.locations[0].first_seen, "2026-01-05T08:00:00Z");
        assert_eq!(p.ips[0].value, "192.0.2.1");
        assert_eq!(p.devices[0].value, "LT-1");
        assert_eq!(p.usual_hours_local, vec![9], "08:00 UTC is 09:00 in Berlin's solar time");
        assert_eq!(p.open_sessions.len(), 3);
    }

    #[test]
    fn hostile_events_stay_bounded() {
        let mut e = Engine::new(Config::default());
        let long = "x".repeat(100_000);
        let mut out = Vec::new();
        for i in 0..2_000 {
            let mut ev = start(T0 + i, &long, "192.0.2.1", &format!("{long}{i}"), berlin(), &i.to_string());
            ev.location.as_mut().unwrap().city = Some(format!("{long}{i}"));
            e.ingest(&ev, &mut out);
        }
        assert!(e.bytes_per_profile() < 16_384.0);
        let mut weird = start(i64::MIN, "u", "::1", "", Location::default(), "");
        weird.location = None;
        e.ingest(&weird, &mut out);
        weird.time = i64::MAX;
        e.ingest(&weird, &mut out);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_767_571_200), "2026-01-05T00:00:00Z");
    }
}
