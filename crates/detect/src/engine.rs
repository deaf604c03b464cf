//! The detection engine: compact per-user state, the detectors, and the profile view.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;

use portcullis_geo::{Location, distance_km};
use serde::Serialize;
use serde_json::json;

use crate::{AlertDraft, AlertKind, Config, Event, EventKind, neighbours};

const DAY: i64 = 86_400;
/// Per-user bounds: the newest entries are kept.
const MAX_PLACES: usize = 48;
const MAX_IPS: usize = 48;
const MAX_DEVICES: usize = 16;
const MAX_ASNS: usize = 24;
const MAX_NAS: usize = 8;
const MAX_COUNTRIES: usize = 24;
const MAX_OPEN: usize = 16;
const MAX_FAILURES: usize = 64;
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
}

#[derive(Debug, Clone)]
struct Open {
    session: u64,
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
    /// Times of the latest VPN connections (as many as arming needs).
    connections: VecDeque<i64>,
    places: Vec<Seen<u32>>,
    countries: Vec<Seen<[u8; 2]>>,
    ips: Vec<Seen<IpAddr>>,
    devices: Vec<Seen<Box<str>>>,
    asns: Vec<Seen<u32>>,
    nas: Vec<Seen<Box<str>>>,
    hours: [u16; 24],
    fix: Option<Fix>,
    open: Vec<Open>,
    failures: VecDeque<i64>,
    pushes: VecDeque<i64>,
    brute_fired: Option<i64>,
    fatigue_fired: Option<i64>,
}

impl UserState {
    fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.connections.capacity() * 8
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

    fn prune(&mut self, since: i64, history_since: i64) -> Vec<[u8; 2]> {
        self.places.retain(|s| i64::from(s.last) >= since);
        self.ips.retain(|s| i64::from(s.last) >= since);
        self.devices.retain(|s| i64::from(s.last) >= since);
        self.asns.retain(|s| i64::from(s.last) >= since);
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
        dropped
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

    fn fix_of(&self, event: &Event, place: Option<u32>) -> Option<Fix> {
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
        let mut dropped = Vec::new();
        self.users.retain(|_, u| {
            dropped.extend(u.prune(since, history_since));
            if u.last_seen < history_since {
                dropped.extend(u.countries.iter().map(|c| c.key));
                return false;
            }
            true
        });
        for cc in dropped {
            if let Some(n) = self.org_countries.get_mut(&cc) {
                *n = n.saturating_sub(1);
            }
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

    fn vpn_start(&mut self, event: &Event, out: &mut Vec<AlertDraft>) {
        let location = event.location.clone().unwrap_or_default();
        let place = self.intern_place(&location);
        let egress = self.config.is_egress(event.ip, Some(&location));
        let cc = country_code(&location).filter(|_| !location.internal);
        let fix = self.fix_of(event, place).filter(|_| !egress && !location.internal);
        let session = event.session.as_deref().map(|s| self.hash(s)).unwrap_or_else(|| self.hash(&event.identity()));
        let nas = self.hash(event.nas.as_deref().unwrap_or(""));
        let nas_ip = event.nas_ip.map(|i| self.hash(&i.to_string()));
        let device = event.device.as_deref().map(clip).filter(|d| !d.is_empty());
        let device_hash = device.map(|d| self.hash(d));
        let config = std::sync::Arc::clone(&self.config);
        let window_since = event.time - i64::from(config.window_days) * DAY;
        let history_since = event.time - i64::from(config.new_country.history_days) * DAY;
        let common = cc.map(|c| self.org_common(c)).unwrap_or(true);
        let enabled = |k| config.enabled.contains(&k);
        let Some(state) = self.user_mut(&event.user, event.time) else { return };
        let mut found = Vec::new();

        // Suspicious VPN connection.
        let armed =
            state.first_vpn.is_some_and(|f| event.time - f >= i64::from(config.suspicious_vpn.learning_days) * DAY)
                && state.connections.len() >= config.suspicious_vpn.min_connections as usize
                && state
                    .connections
                    .iter()
                    .rev()
                    .nth(config.suspicious_vpn.min_connections.saturating_sub(1) as usize)
                    .is_none_or(|&t| t >= window_since);
        if armed && enabled(AlertKind::SuspiciousVpnConnection) {
            let new_place = !egress && place.is_some_and(|p| !known(&state.places, &p, window_since));
            let managed = |d: &str| config.suspicious_vpn.managed_devices.iter().any(|p| portcullis_radius::glob(p, d));
            let new_device = device.is_some_and(|d| {
                !state.devices.iter().any(|s| &*s.key == d && i64::from(s.last) >= window_since) && !managed(d)
            });
            let new_network = !egress && location.asn.is_some_and(|a| !known(&state.asns, &a, window_since));
            // Two features, as the model of the anchor: where (location or network) and
            // which computer. Without a device only "where" can deviate.
            let features = if device.is_some() { 2 } else { 1 };
            let deviations = u32::from(new_place || new_network) + u32::from(new_device);
            if deviations >= config.suspicious_vpn.min_deviations.clamp(1, features) {
                let computers = recent(&state.devices, window_since) + usize::from(new_device);
                let locations = recent(&state.places, window_since) + usize::from(new_place);
                found.push((
                    AlertKind::SuspiciousVpnConnection,
                    format!("suspicious_vpn_connection:{}", event.user),
                    json!({
                        "new_location": new_place,
                        "new_device": new_device,
                        "new_network": new_network,
                        "computers": computers,
                        "locations": locations,
                        "known_places": state.places.iter().filter(|s| i64::from(s.last) >= window_since).map(|s| s.key).collect::<Vec<_>>(),
                        "known_devices": state.devices.iter().filter(|s| i64::from(s.last) >= window_since).map(|s| s.key.to_string()).collect::<Vec<_>>(),
                        "connections_in_window": state.connections.iter().filter(|&&t| t >= window_since).count(),
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
        if let (Some(c), true) = (cc, enabled(AlertKind::NewCountry)) {
            let learned = event.time - state.first_seen >= i64::from(config.new_country.learning_days) * DAY;
            let own_device = config.new_country.ignore_known_device
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
                    json!({ "country": cc_str(&c), "known_countries": known_list, "history_days": config.new_country.history_days }),
                    format!("{} connected to a VPN from {}, a country new to them.", event.user, cc_str(&c)),
                ));
            }
        }

        // Impossible travel against the last baseline fix.
        if let (Some(now), Some(prev), true) = (fix, state.fix, enabled(AlertKind::ImpossibleTravel)) {
            let t = &config.impossible_travel;
            let distance =
                distance_km((f64::from(prev.lat), f64::from(prev.lon)), (f64::from(now.lat), f64::from(now.lon)));
            let effective = distance - f64::from(prev.accuracy) - f64::from(now.accuracy);
            let hours = (event.time - prev.time).abs() as f64 / 3600.0;
            let speed = if hours > 0.0 { effective / hours } else { f64::INFINITY };
            let same = prev.country == now.country;
            let suppressed = (t.ignore_same_country && same)
                || (t.ignore_neighbours && neighbours(cc_str(&prev.country), cc_str(&now.country)));
            if effective >= t.min_distance_km && speed > t.max_speed_kmh && !suppressed {
                found.push((
                    AlertKind::ImpossibleTravel,
                    format!("impossible_travel:{}:{}-{}", event.user, cc_str(&prev.country), cc_str(&now.country)),
                    json!({
                        "from_place": prev.place, "from_time": prev.time, "from": [prev.lat, prev.lon],
                        "to_place": now.place, "to": [now.lat, now.lon],
                        "distance_km": distance.round(), "effective_distance_km": effective.round(),
                        "hours": (hours * 100.0).round() / 100.0,
                        "speed_kmh": if speed.is_finite() { json!(speed.round()) } else { json!(null) },
                    }),
                    String::new(),
                ));
            }
        }

        // Concurrent sessions far apart.
        if let (Some(now), true) = (fix, enabled(AlertKind::ConcurrentSessions)) {
            let c = &config.concurrent_sessions;
            let oldest = event.time - i64::from(c.max_session_hours) * 3600;
            let other = state
                .open
                .iter()
                .filter(|o| o.session != session && o.start >= oldest && o.start <= event.time)
                .filter(|o| device.is_none() || o.device.is_none() || o.device != device_hash)
                .find_map(|o| {
                    let f = o.fix?;
                    let d = distance_km((f64::from(f.lat), f64::from(f.lon)), (f64::from(now.lat), f64::from(now.lon)))
                        - f64::from(f.accuracy)
                        - f64::from(now.accuracy);
                    (d >= c.min_distance_km).then_some((f, o.start, d))
                });
            if let Some((f, started, d)) = other {
                found.push((
                    AlertKind::ConcurrentSessions,
                    format!("concurrent_sessions:{}", event.user),
                    json!({ "other_place": f.place, "other_started": started, "to_place": now.place, "effective_distance_km": d.round() }),
                    String::new(),
                ));
            }
        }

        // Learn.
        state.first_vpn = Some(state.first_vpn.map_or(event.time, |f| f.min(event.time)));
        state.connections.push_back(event.time);
        while state.connections.len() > (config.suspicious_vpn.min_connections as usize).clamp(1, 64) {
            state.connections.pop_front();
        }
        if let Some(p) = place.filter(|_| !egress) {
            touch(&mut state.places, p, event.time, MAX_PLACES);
        }
        let (mut new_cc, mut dropped_cc) = (None, None);
        if let Some(c) = cc.filter(|_| !egress) {
            let (new, evicted) = touch_evicting(&mut state.countries, &c, || c, event.time, MAX_COUNTRIES);
            new_cc = new.then_some(c);
            dropped_cc = evicted;
        }
        if let Some(ip) = event.ip {
            touch(&mut state.ips, ip.to_canonical(), event.time, MAX_IPS);
        }
        if let Some(d) = device {
            touch_text(&mut state.devices, d, event.time, MAX_DEVICES);
        }
        if let Some(a) = location.asn.filter(|_| !egress) {
            touch(&mut state.asns, a, event.time, MAX_ASNS);
        }
        if let Some(n) = event.nas.as_deref().map(clip) {
            touch_text(&mut state.nas, n, event.time, MAX_NAS);
        }
        state.hours[(event.time.rem_euclid(DAY) / 3600) as usize] += 1;
        if let Some(f) = fix {
            if state.fix.is_none_or(|p| p.time <= f.time) {
                state.fix = Some(f);
            }
        }
        state.open.retain(|o| o.session != session);
        if state.open.len() >= MAX_OPEN {
            state.open.remove(0);
        }
        state.open.push(Open { session, nas, nas_ip, device: device_hash, start: event.time, fix });
        if let Some(c) = new_cc {
            *self.org_countries.entry(c).or_insert(0) += 1;
        }
        if let Some(n) = dropped_cc.and_then(|c| self.org_countries.get_mut(&c)) {
            *n = n.saturating_sub(1);
        }

        let labels: Vec<(u32, String)> =
            found.iter().flat_map(|f| place_refs(&f.2)).map(|p| (p, self.place_label(p))).collect();
        for (kind, fold_key, mut evidence, message) in found {
            resolve_places(&mut evidence, &labels);
            let message = if message.is_empty() { self.travel_message(kind, &event.user, &evidence) } else { message };
            if let Some(obj) = evidence.as_object_mut() {
                obj.insert("ip".into(), json!(event.ip));
                obj.insert("device".into(), json!(device));
                obj.insert("nas".into(), json!(event.nas));
                obj.insert("location".into(), json!(location));
            }
            out.push(self.draft(kind, &event.user, event, fold_key, message, evidence));
        }
    }

    fn travel_message(&self, kind: AlertKind, user: &str, evidence: &serde_json::Value) -> String {
        let text = |k: &str| evidence.get(k).and_then(|v| v.as_str()).unwrap_or("unknown").to_owned();
        let km = evidence.get("effective_distance_km").and_then(|v| v.as_f64()).unwrap_or(0.0);
        match kind {
            AlertKind::ImpossibleTravel => format!(
                "{user} connected from {} and then from {}: {km:.0} km in {} h.",
                text("from_place"),
                text("to_place"),
                evidence.get("hours").and_then(|v| v.as_f64()).unwrap_or(0.0)
            ),
            _ => format!(
                "{user} has VPN sessions open at once from {} and {} ({km:.0} km apart).",
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
                if state.fix.is_none_or(|f| f.time <= event.time) {
                    fix.time = event.time;
                    state.fix = Some(fix);
                }
            }
            state.open.retain(|o| o.session != session);
            state.last_seen = state.last_seen.max(event.time);
        }
    }

    fn nas_reset(&mut self, event: &Event) {
        let nas = self.hash(event.nas.as_deref().unwrap_or(""));
        let nas_ip = event.nas_ip.map(|i| self.hash(&i.to_string()));
        for state in self.users.values_mut() {
            state.open.retain(|o| (o.nas != nas && (nas_ip.is_none() || o.nas_ip != nas_ip)) || o.start > event.time);
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
            // Unknown users get no profile; policy refusals are not guessing.
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

    fn mfa_failure(&mut self, event: &Event, out: &mut Vec<AlertDraft>) {
        let reason = event.reason.as_deref().unwrap_or("");
        if !matches!(reason, "push_denied" | "push_timeout" | "push_fatigue") {
            return;
        }
        let c = self.config.mfa_fatigue.clone();
        let enabled = self.enabled(AlertKind::MfaFatigue);
        let Some(state) = self.user_mut(&event.user, event.time) else { return };
        state.pushes.push_back(event.time);
        while state.pushes.len() > (c.pushes as usize).clamp(1, 64) {
            state.pushes.pop_front();
        }
        let since = event.time - i64::from(c.window_minutes) * 60;
        let count = state.pushes.iter().filter(|&&t| t >= since && t <= event.time).count();
        if enabled && count >= c.pushes as usize && state.fatigue_fired.is_none_or(|t| t < since) {
            state.fatigue_fired = Some(event.time);
            let evidence = json!({ "pushes": count, "last_outcome": reason, "window_minutes": c.window_minutes, "ip": event.ip, "nas": event.nas });
            let message = format!(
                "{} received {count} push requests that were denied or not answered within {} minutes.",
                event.user, c.window_minutes
            );
            out.push(self.draft(
                AlertKind::MfaFatigue,
                &event.user,
                event,
                format!("mfa_fatigue:{}", event.user),
                message,
                evidence,
            ));
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
            usual_hours_utc: usual_hours,
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
        if let Some(t) = obj.get("from_time").and_then(|v| v.as_i64()) {
            obj.insert("from_time".into(), json!(rfc3339(t)));
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
    /// Hours (UTC) holding at least a tenth of the user's connections.
    pub usual_hours_utc: Vec<u8>,
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
        let mut e = Engine::new(Config::default());
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
        assert_eq!(a.severity, crate::Severity::Medium);
        assert_eq!(a.evidence["new_device"], true);
        assert_eq!(a.event_time, t);
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
        assert_eq!(p.usual_hours_utc, vec![8]);
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
