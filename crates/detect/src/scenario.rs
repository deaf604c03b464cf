//! A seeded synthetic workforce with injected attacks and their ground truth, and the
//! scoring of detections against it.
//!
//! The workforce lives in a handful of countries: each user has a home city and an
//! ISP, a laptop (some a second device), connects on most workdays in local office
//! hours, sometimes over a mobile carrier (geolocated to the carrier's hub city with a
//! wide accuracy radius), sometimes through the company's cloud VDI (an egress ASN),
//! sometimes from an address the database only knows to country level. Users mistype
//! passwords, miss pushes, lose a Stop, replace laptops, fly on business trips (at
//! airliner speed, with airport time) and go on holiday. Attacks: stolen credentials
//! used from abroad, impossible travel, concurrent sessions from far away, a new
//! device in the home country, password spray, brute force (some succeeding) and MFA
//! fatigue (some approved). Same seed, same events.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use portcullis_geo::Location;
use serde::Serialize;

use crate::{AlertDraft, AlertKind, Event, EventKind};

/// Monday 2026-01-05 00:00 UTC.
pub const EPOCH: i64 = 1_767_571_200;
const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// SplitMix64: small, seeded, stable across versions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % (hi - lo) as u64) as i64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next_u64() as usize % items.len()]
    }
}

#[derive(Debug, Clone, Copy)]
struct City {
    name: &'static str,
    cc: &'static str,
    lat: f64,
    lon: f64,
    /// UTC offset in hours (winter).
    tz: i64,
    /// Index of the city mobile carriers of this city's users geolocate to.
    hub: usize,
}

const fn city(name: &'static str, cc: &'static str, lat: f64, lon: f64, tz: i64, hub: usize) -> City {
    City { name, cc, lat, lon, tz, hub }
}

/// Home cities (0..HOMES), then destinations and attacker cities.
const CITIES: &[City] = &[
    city("Berlin", "DE", 52.52, 13.405, 1, 3),
    city("Munich", "DE", 48.137, 11.575, 1, 3),
    city("Hamburg", "DE", 53.551, 9.993, 1, 3),
    city("Frankfurt", "DE", 50.11, 8.682, 1, 3),
    city("Cologne", "DE", 50.938, 6.96, 1, 3),
    city("Paris", "FR", 48.857, 2.352, 1, 5),
    city("Lyon", "FR", 45.764, 4.836, 1, 5),
    city("London", "GB", 51.507, -0.128, 0, 7),
    city("Manchester", "GB", 53.48, -2.242, 0, 7),
    city("Amsterdam", "NL", 52.37, 4.895, 1, 9),
    city("Rotterdam", "NL", 51.924, 4.478, 1, 9),
    city("Madrid", "ES", 40.417, -3.704, 1, 11),
    city("Barcelona", "ES", 41.385, 2.173, 1, 12),
    city("New York", "US", 40.713, -74.006, -5, 13),
    city("Boston", "US", 42.36, -71.06, -5, 13),
    // Business and holiday destinations.
    city("Rome", "IT", 41.9, 12.5, 1, 15),
    city("Milan", "IT", 45.46, 9.19, 1, 16),
    city("Zurich", "CH", 47.37, 8.54, 1, 17),
    city("Stockholm", "SE", 59.33, 18.07, 1, 18),
    city("Warsaw", "PL", 52.23, 21.01, 1, 19),
    city("Lisbon", "PT", 38.72, -9.14, 0, 20),
    city("Athens", "GR", 37.98, 23.73, 2, 21),
    city("Vienna", "AT", 48.21, 16.37, 1, 22),
    city("Split", "HR", 43.51, 16.44, 1, 23),
    city("Bangkok", "TH", 13.76, 100.5, 7, 24),
    city("Chicago", "US", 41.878, -87.63, -6, 25),
    // Attacker locations.
    city("Moscow", "RU", 55.76, 37.62, 3, 26),
    city("Lagos", "NG", 6.52, 3.38, 1, 27),
    city("Hanoi", "VN", 21.03, 105.85, 7, 28),
    city("Sao Paulo", "BR", -23.55, -46.63, -3, 29),
    city("Beijing", "CN", 39.9, 116.4, 8, 30),
    city("Mumbai", "IN", 19.08, 72.88, 5, 31),
    city("Jakarta", "ID", -6.2, 106.85, 7, 32),
    city("Kyiv", "UA", 50.45, 30.52, 2, 33),
    city("Bucharest", "RO", 44.43, 26.1, 2, 34),
    city("Istanbul", "TR", 41.01, 28.98, 3, 35),
    city("Los Angeles", "US", 34.05, -118.24, -8, 36),
    city("Singapore", "SG", 1.35, 103.82, 8, 37),
];
const HOMES: usize = 15;
const OFFICES: &[usize] = &[0, 1, 5, 7, 9, 11, 13];
const CUSTOMERS: &[usize] = &[15, 16, 17, 18, 19, 22, 25];
const HOLIDAYS: &[usize] = &[11, 12, 15, 20, 21, 23, 22, 5, 16];
const RARE_HOLIDAYS: &[usize] = &[24, 36];
const ABROAD: &[usize] = &[26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 37];
/// Country centroids for addresses known only to country level (accuracy 1000 km).
const CENTROIDS: &[(&str, f64, f64)] = &[
    ("DE", 51.0, 9.0),
    ("FR", 46.0, 2.0),
    ("GB", 54.0, -2.0),
    ("NL", 52.5, 5.75),
    ("ES", 40.0, -4.0),
    ("US", 37.751, -97.822),
];
/// The company's cloud VDI: an egress ASN (configured in `egress_asns`).
pub const VDI_ASN: u32 = 64_600;
const VDI_CITY: usize = 9;

fn country_index(cc: &str) -> u32 {
    CITIES.iter().position(|c| c.cc == cc).unwrap_or(0) as u32
}

fn residential_asn(cc: &str, isp: u32) -> u32 {
    65_000 + country_index(cc) * 10 + isp
}

fn mobile_asn(cc: &str) -> u32 {
    65_000 + country_index(cc) * 10 + 5
}

fn hosting_asn(city: usize) -> u32 {
    66_000 + city as u32
}

/// The kinds of attack, with the detections each is expected to raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackKind {
    StolenAbroad,
    ImpossibleTravel,
    Concurrent,
    NewDevice,
    /// A second session from far away while the victim's is open, on a computer
    /// named like the victim's laptop.
    CopiedNameConcurrent,
    /// Stolen credentials used from the attacker's own residential ISP abroad, on a
    /// computer named like the victim's laptop.
    CopiedNameAbroad,
    /// A new computer in the victim's own city, over another of the city's ISPs.
    OwnCity,
    /// The attacker of an earlier attack back days later from the same place and computer.
    FollowUp,
    /// The password is known; the second factor refuses every code tried.
    StolenPassword,
    Spray,
    BruteForce,
    MfaFatigue,
}

/// One injected attack.
#[derive(Debug, Clone, Serialize)]
pub struct Attack {
    pub id: usize,
    pub kind: AttackKind,
    /// The victim, or the source address for a spray.
    pub subject: String,
    pub start: i64,
    pub end: i64,
    pub expected: Vec<AlertKind>,
    /// The attacker made a VPN connection (what a location rule can see).
    pub vpn_connection: bool,
}

/// Generated events and ground truth.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub events: Vec<Event>,
    pub attacks: Vec<Attack>,
    pub users: usize,
    pub days: i64,
}

/// Parameters of the generator.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub users: usize,
    pub days: i64,
    pub seed: u64,
    /// Attacks of each kind per 1,000 users.
    pub attacks_per_thousand: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self { users: 5_000, days: 90, seed: 1, attacks_per_thousand: 12 }
    }
}

struct User {
    name: String,
    home: usize,
    isp: u32,
    laptop: String,
    second: Option<String>,
    vdi: bool,
    rate: f64,
    home_ip: u32,
}

/// Where a connection comes from.
#[derive(Debug, Clone, Copy)]
struct Source {
    city: usize,
    asn: u32,
    accuracy: u32,
    centroid: bool,
}

fn ip_for(asn: u32, city: usize, host: u32) -> IpAddr {
    // A distinct public-looking /24 per (ASN, city) inside 45.0.0.0/8 .. 60.0.0.0/8.
    let block = (asn.wrapping_mul(2_654_435_761) ^ (city as u32).wrapping_mul(40_503)) % (15 << 16);
    IpAddr::V4(Ipv4Addr::from((45 << 24) + (block << 8) + (host % 254 + 1)))
}

fn location_of(src: Source, rng: &mut Rng) -> Location {
    let c = CITIES[src.city];
    if src.centroid {
        let (cc, lat, lon) = CENTROIDS.iter().find(|x| x.0 == c.cc).copied().unwrap_or((c.cc, c.lat, c.lon));
        return Location {
            country: Some(cc.into()),
            latitude: Some(lat),
            longitude: Some(lon),
            accuracy_km: Some(1000),
            asn: Some(src.asn),
            ..Location::default()
        };
    }
    // Small jitter, as different blocks of one city geolocate to different points.
    let j = |rng: &mut Rng| (rng.f() - 0.5) * 0.05;
    Location {
        country: Some(c.cc.into()),
        city: Some(c.name.into()),
        latitude: Some(c.lat + j(rng)),
        longitude: Some(c.lon + j(rng)),
        accuracy_km: Some(src.accuracy),
        asn: Some(src.asn),
        ..Location::default()
    }
}

struct Gen {
    rng: Rng,
    events: Vec<Event>,
    attacks: Vec<Attack>,
    session: u64,
}

impl Gen {
    fn push(&mut self, mut e: Event) {
        if matches!(e.kind, EventKind::VpnStart) && e.session.is_none() {
            self.session += 1;
            e.session = Some(format!("s{}", self.session));
        }
        self.events.push(e);
    }

    fn event(kind: EventKind, time: i64, user: &str) -> Event {
        Event {
            time,
            kind,
            user: user.into(),
            ip: None,
            device: None,
            nas: Some("vpn-gw".into()),
            nas_ip: None,
            client: None,
            session: None,
            reason: None,
            location: None,
        }
    }

    /// An attacker's login on a computer of their own.
    fn attacker_connection(&mut self, user: &str, start: i64, duration: i64, src: Source) {
        let device = format!("DESKTOP-{:06X}", self.rng.next_u64() & 0xFF_FFFF);
        let host = self.rng.next_u64() as u32;
        self.connection(user, start, duration, src, host, &device, true);
    }

    /// Records the ground truth of one attack.
    fn attack(&mut self, kind: AttackKind, subject: String, start: i64, end: i64, expected: Vec<AlertKind>, vpn: bool) {
        let id = self.attacks.len();
        self.attacks.push(Attack { id, kind, subject, start, end, expected, vpn_connection: vpn });
    }

    /// A complete login: auth events (with typos and missed pushes), Start and Stop.
    #[allow(clippy::too_many_arguments)]
    fn connection(&mut self, user: &str, start: i64, duration: i64, src: Source, host: u32, device: &str, stop: bool) {
        let ip = ip_for(src.asn, src.city, host);
        let location = location_of(src, &mut self.rng);
        let mut t = start - 30;
        if self.rng.chance(0.06) {
            let n = if self.rng.chance(0.15) { self.rng.range(2, 4) } else { 1 };
            for _ in 0..n {
                let mut e = Self::event(EventKind::AuthFailure, t, user);
                e.ip = Some(ip);
                e.reason = Some("bad_password".into());
                e.location = Some(location.clone());
                self.push(e);
                t += self.rng.range(5, 30);
            }
        }
        if self.rng.chance(0.09) {
            let n = if self.rng.chance(0.1) { 2 } else { 1 };
            for _ in 0..n {
                let mut e = Self::event(EventKind::MfaFailure, t, user);
                e.ip = Some(ip);
                e.reason = Some("push_timeout".into());
                self.push(e);
                t += 60;
            }
        }
        if self.rng.chance(0.02) {
            // A mistyped one-time code, then the right one.
            let mut e = Self::event(EventKind::MfaFailure, t, user);
            e.ip = Some(ip);
            e.reason = Some("wrong_code".into());
            self.push(e);
            t += 20;
        }
        let mut ok = Self::event(EventKind::AuthSuccess, t.max(start - 5), user);
        ok.ip = Some(ip);
        ok.location = Some(location.clone());
        self.push(ok);
        self.session += 1;
        let session = format!("s{}", self.session);
        let mut s = Self::event(EventKind::VpnStart, start, user);
        s.ip = Some(ip);
        s.device = Some(device.into());
        s.session = Some(session.clone());
        s.location = Some(location);
        self.push(s);
        if stop {
            let mut e = Self::event(EventKind::VpnStop, start + duration, user);
            e.session = Some(session);
            e.ip = Some(ip);
            self.push(e);
        }
    }
}

/// Generates a scenario.
pub fn generate(p: Params) -> Scenario {
    let mut rng = Rng::new(p.seed);
    let users: Vec<User> = (0..p.users)
        .map(|i| {
            let home = if rng.chance(0.55) { *rng.pick(OFFICES) } else { rng.range(0, HOMES as i64) as usize };
            User {
                name: format!("user{i:05}"),
                home,
                isp: rng.range(0, 3) as u32,
                laptop: format!("LT-{i:05}"),
                second: rng.chance(0.2).then(|| format!("TAB-{i:05}")),
                vdi: rng.chance(0.06),
                rate: 0.35 + rng.f() * 0.6,
                home_ip: rng.next_u64() as u32,
            }
        })
        .collect();
    let mut g = Gen { rng, events: Vec::new(), attacks: Vec::new(), session: 0 };
    // Per user: a record of (start, end, city) of sessions for attack placement.
    let mut sessions: Vec<Vec<(i64, i64, usize)>> = vec![Vec::new(); users.len()];
    for (ui, u) in users.iter().enumerate() {
        workforce_user(&mut g, u, p.days, &mut sessions[ui]);
    }
    inject_attacks(&mut g, &users, &sessions, p);
    let mut events = g.events;
    events.sort_by_key(|e| e.time);
    Scenario { events, attacks: g.attacks, users: p.users, days: p.days }
}

fn workforce_user(g: &mut Gen, u: &User, days: i64, log: &mut Vec<(i64, i64, usize)>) {
    let home = CITIES[u.home];
    let mut laptop = u.laptop.clone();
    let replace_day = if g.rng.chance(0.03) { g.rng.range(5, days) } else { i64::MAX };
    // Trips: (first day, last day, city, is holiday).
    let mut trips: Vec<(i64, i64, usize, bool)> = Vec::new();
    let mut d = 0;
    while d < days {
        if g.rng.chance(0.08 / 22.0) && d % 7 < 4 {
            let dest = if g.rng.chance(0.5) { *g.rng.pick(OFFICES) } else { *g.rng.pick(CUSTOMERS) };
            if dest != u.home {
                let len = g.rng.range(1, 4);
                trips.push((d, d + len, dest, false));
                d += len + 3;
                continue;
            }
        }
        if g.rng.chance(0.03 / 30.0) {
            let dest = if g.rng.chance(0.95) { *g.rng.pick(HOLIDAYS) } else { *g.rng.pick(RARE_HOLIDAYS) };
            if CITIES[dest].cc != home.cc {
                let len = g.rng.range(6, 11);
                trips.push((d, d + len, dest, true));
                d += len + 3;
                continue;
            }
        }
        d += 1;
    }
    let mut host = u.home_ip;
    let mut prev_city = u.home;
    let mut prev_end = i64::MIN;
    for day in 0..days {
        if day == replace_day {
            laptop = format!("{}-new", u.laptop);
        }
        if day % 14 == 0 {
            host = host.wrapping_add(1); // residential addresses change now and then
        }
        let trip = trips.iter().find(|t| day >= t.0 && day <= t.1).copied();
        let weekday = day % 7 < 5;
        let (city, holiday) = match trip {
            Some((_, _, c, h)) => (c, h),
            None => (u.home, false),
        };
        let p = match (holiday, weekday) {
            (true, _) => 0.25,
            (false, true) => u.rate,
            (false, false) => 0.04,
        };
        if !g.rng.chance(p) {
            continue;
        }
        let c = CITIES[city];
        let mut start = EPOCH + day * DAY + (g.rng.range(7 * 60 + 30, 9 * 60 + 45) - c.tz * 60) * 60;
        // Physically consistent travel: a flight at airliner speed plus airport time.
        if city != prev_city {
            let km = portcullis_geo::distance_km((CITIES[prev_city].lat, CITIES[prev_city].lon), (c.lat, c.lon));
            let earliest = prev_end + ((km / 750.0 + 3.0) * HOUR as f64) as i64;
            start = start.max(earliest);
        }
        let duration = g.rng.range(3 * HOUR, 9 * HOUR);
        let mut device = laptop.as_str();
        let src = if trip.is_some() {
            Source { city, asn: residential_asn(c.cc, 3 + g.rng.range(0, 2) as u32), accuracy: 20, centroid: false }
        } else {
            let r = g.rng.f();
            if u.vdi && r < 0.5 {
                Source { city: VDI_CITY, asn: VDI_ASN, accuracy: 20, centroid: false }
            } else if r < 0.62 && u.vdi || !u.vdi && r < 0.12 {
                if let Some(second) = &u.second {
                    device = second;
                }
                Source { city: home.hub, asn: mobile_asn(home.cc), accuracy: 200, centroid: false }
            } else if r > 0.97 {
                Source { city, asn: residential_asn(home.cc, u.isp), accuracy: 1000, centroid: true }
            } else {
                Source { city, asn: residential_asn(home.cc, u.isp), accuracy: 20, centroid: false }
            }
        };
        let stop = !g.rng.chance(0.01);
        g.connection(&u.name, start, duration, src, host, device, stop);
        // Attacks are placed against sessions a location can be judged from.
        if src.asn != VDI_ASN && !src.centroid {
            log.push((start, start + duration, city));
        }
        prev_city = city;
        prev_end = start + duration;
        // Sometimes a short evening session.
        if trip.is_none() && g.rng.chance(0.08) {
            let evening = start + duration + g.rng.range(2 * HOUR, 4 * HOUR);
            let len = g.rng.range(20 * 60, 90 * 60);
            g.connection(&u.name, evening, len, src, host, device, true);
            if src.asn != VDI_ASN && !src.centroid {
                log.push((evening, evening + len, city));
            }
            prev_end = evening + len;
        }
    }
    // A forgotten password after a change, rarely: a long burst and (mostly) success.
    if g.rng.chance(0.002) {
        let t = EPOCH + g.rng.range(1, days) * DAY + 9 * HOUR;
        let ip = ip_for(residential_asn(home.cc, u.isp), u.home, u.home_ip);
        let n = g.rng.range(6, 12);
        for k in 0..n {
            let mut e = Gen::event(EventKind::AuthFailure, t + k * 40, &u.name);
            e.ip = Some(ip);
            e.reason = Some("bad_password".into());
            g.push(e);
        }
    }
}

fn inject_attacks(g: &mut Gen, users: &[User], sessions: &[Vec<(i64, i64, usize)>], p: Params) {
    let per_kind = (p.users * p.attacks_per_thousand).div_ceil(1000).max(1);
    let earliest = EPOCH + 40 * DAY;
    let latest = EPOCH + (p.days - 2).max(41) * DAY;
    let mut victims: HashSet<usize> = HashSet::new();
    let mut pick_victim = |g: &mut Gen, regular: bool| -> usize {
        loop {
            let i = g.rng.range(0, users.len() as i64) as usize;
            if (!regular || users[i].rate >= 0.5) && victims.insert(i) || victims.len() >= users.len() {
                return i;
            }
        }
    };
    for copied in [false, true] {
        for _ in 0..per_kind {
            // Stolen credentials used from abroad, at night: from a hosting address on a
            // computer of the attacker's, or from the attacker's own residential ISP on
            // a computer named like the victim's laptop.
            let v = pick_victim(g, true);
            let city = *g.rng.pick(ABROAD);
            let t = g.rng.range(earliest, latest) / DAY * DAY + g.rng.range(0, 4) * HOUR;
            let (src, device, kind, expected) = if copied {
                let src = Source { city, asn: residential_asn(CITIES[city].cc, 1), accuracy: 20, centroid: false };
                (src, users[v].laptop.clone(), AttackKind::CopiedNameAbroad, vec![AlertKind::SuspiciousVpnConnection])
            } else {
                let src = Source { city, asn: hosting_asn(city), accuracy: 50, centroid: false };
                let device = format!("DESKTOP-{:06X}", g.rng.next_u64() & 0xFF_FFFF);
                let expected = vec![AlertKind::SuspiciousVpnConnection, AlertKind::NewCountry];
                (src, device, AttackKind::StolenAbroad, expected)
            };
            let host = g.rng.next_u64() as u32;
            let duration = g.rng.range(20 * 60, 3600);
            g.connection(&users[v].name, t, duration, src, host, &device, true);
            g.attack(kind, users[v].name.clone(), t - 120, t, expected, true);
            // Half come back days later, from the same place and computer.
            if g.rng.chance(0.5) {
                let back = t + g.rng.range(2, 6) * DAY + g.rng.range(0, 3) * HOUR;
                g.connection(&users[v].name, back, duration, src, host, &device, true);
                let expected = vec![AlertKind::SuspiciousVpnConnection];
                g.attack(AttackKind::FollowUp, users[v].name.clone(), back - 120, back, expected, true);
            }
        }
    }
    for _ in 0..per_kind {
        // Impossible travel: far away shortly after the victim's session ended.
        let v = pick_victim(g, true);
        let Some(&(_, end, city)) = sessions[v].iter().rev().find(|s| s.1 >= earliest && s.1 < latest) else {
            continue;
        };
        let far = farthest(city, g);
        let t = end + g.rng.range(30 * 60, 90 * 60);
        let src = Source { city: far, asn: residential_asn(CITIES[far].cc, 1), accuracy: 20, centroid: false };
        g.attacker_connection(&users[v].name, t, 1800, src);
        g.attack(
            AttackKind::ImpossibleTravel,
            users[v].name.clone(),
            t - 120,
            t,
            vec![AlertKind::ImpossibleTravel],
            true,
        );
    }
    for copied in [false, true] {
        for _ in 0..per_kind {
            // A second session from far away while the victim's is open (on a computer
            // of the attacker's, or on one named like the victim's laptop).
            let v = pick_victim(g, true);
            let Some(&(start, end, city)) =
                sessions[v].iter().rev().find(|s| s.0 >= earliest && s.1 < latest && s.1 - s.0 > 2 * HOUR)
            else {
                continue;
            };
            let far = farthest(city, g);
            let t = start + g.rng.range(30 * 60, (end - start - 30 * 60).max(30 * 60 + 1));
            if copied {
                let src = Source { city: far, asn: residential_asn(CITIES[far].cc, 1), accuracy: 20, centroid: false };
                let host = g.rng.next_u64() as u32;
                g.connection(&users[v].name, t, 1800, src, host, &users[v].laptop, true);
                let expected = vec![AlertKind::ConcurrentSessions, AlertKind::SuspiciousVpnConnection];
                g.attack(AttackKind::CopiedNameConcurrent, users[v].name.clone(), t - 120, t, expected, true);
            } else {
                let src = Source { city: far, asn: hosting_asn(far), accuracy: 20, centroid: false };
                g.attacker_connection(&users[v].name, t, 1800, src);
                let expected = vec![AlertKind::ConcurrentSessions];
                g.attack(AttackKind::Concurrent, users[v].name.clone(), t - 120, t, expected, true);
            }
        }
    }
    for own_city in [false, true] {
        for _ in 0..per_kind {
            // A new computer in the victim's own country (another city and network, at
            // night) or in the victim's own city (over another of its ISPs, in the
            // evening).
            let v = pick_victim(g, true);
            let home = users[v].home;
            let (kind, city, asn, hours) = if own_city {
                let isp = (users[v].isp + 1 + g.rng.range(0, 2) as u32) % 3;
                (AttackKind::OwnCity, home, residential_asn(CITIES[home].cc, isp), (18, 22))
            } else {
                let city = (0..HOMES)
                    .filter(|&c| CITIES[c].cc == CITIES[home].cc && c != home)
                    .nth(g.rng.range(0, 2) as usize);
                let city = city.unwrap_or_else(|| CITIES[home].hub);
                (AttackKind::NewDevice, city, residential_asn(CITIES[city].cc, 7), (19, 23))
            };
            let t =
                g.rng.range(earliest, latest) / DAY * DAY + (g.rng.range(hours.0, hours.1) - CITIES[home].tz) * HOUR;
            g.attacker_connection(&users[v].name, t, 2400, Source { city, asn, accuracy: 20, centroid: false });
            g.attack(kind, users[v].name.clone(), t - 120, t, vec![AlertKind::SuspiciousVpnConnection], true);
        }
    }
    for _ in 0..per_kind {
        // A stolen password: the second factor refuses every code the attacker tries.
        let v = pick_victim(g, false);
        let city = *g.rng.pick(ABROAD);
        let ip = ip_for(hosting_asn(city), city, g.rng.next_u64() as u32);
        let t0 = g.rng.range(earliest, latest);
        let mut t = t0;
        for _ in 0..g.rng.range(3, 7) {
            let mut e = Gen::event(EventKind::MfaFailure, t, &users[v].name);
            e.ip = Some(ip);
            e.reason = Some(if g.rng.chance(0.2) { "replayed" } else { "wrong_code" }.into());
            g.push(e);
            t += g.rng.range(20, 240);
        }
        let expected = vec![AlertKind::FailedSecondFactor];
        g.attack(AttackKind::StolenPassword, users[v].name.clone(), t0, t, expected, false);
    }
    for _ in 0..per_kind {
        // Password spray from one hosting address: many users, one or two tries each.
        let city = *g.rng.pick(ABROAD);
        let ip = ip_for(hosting_asn(city), city, g.rng.next_u64() as u32);
        let location = location_of(Source { city, asn: hosting_asn(city), accuracy: 50, centroid: false }, &mut g.rng);
        let t0 = g.rng.range(earliest, latest);
        let n = g.rng.range(25, 80);
        let mut t = t0;
        for _ in 0..n {
            let unknown = g.rng.chance(0.1);
            let name = if unknown {
                format!("admin{}", g.rng.range(0, 1000))
            } else {
                users[g.rng.range(0, users.len() as i64) as usize].name.clone()
            };
            for _ in 0..g.rng.range(1, 3) {
                let mut e = Gen::event(EventKind::AuthFailure, t, &name);
                e.ip = Some(ip);
                e.reason = Some(if unknown { "unknown_user" } else { "bad_password" }.into());
                e.location = Some(location.clone());
                g.push(e);
                t += g.rng.range(5, 60);
            }
        }
        g.attack(AttackKind::Spray, ip.to_string(), t0, t, vec![AlertKind::PasswordSpray], false);
    }
    for _ in 0..per_kind {
        // Brute force against one account; a third succeed.
        let v = pick_victim(g, false);
        let city = *g.rng.pick(ABROAD);
        let ip = ip_for(hosting_asn(city), city, g.rng.next_u64() as u32);
        let t0 = g.rng.range(earliest, latest);
        let n = g.rng.range(15, 40);
        let mut t = t0;
        for _ in 0..n {
            let mut e = Gen::event(EventKind::AuthFailure, t, &users[v].name);
            e.ip = Some(ip);
            e.reason = Some("bad_password".into());
            g.push(e);
            t += g.rng.range(3, 25);
        }
        let mut expected = vec![AlertKind::BruteForce];
        if g.rng.chance(0.35) {
            let mut e = Gen::event(EventKind::AuthSuccess, t, &users[v].name);
            e.ip = Some(ip);
            g.push(e);
            expected.push(AlertKind::SuccessAfterFailures);
        }
        g.attack(AttackKind::BruteForce, users[v].name.clone(), t0, t, expected, false);
    }
    for _ in 0..per_kind {
        // MFA fatigue: the password is known, pushes are sent until one is approved.
        let v = pick_victim(g, false);
        let city = *g.rng.pick(ABROAD);
        let src = Source { city, asn: hosting_asn(city), accuracy: 50, centroid: false };
        let ip = ip_for(src.asn, city, g.rng.next_u64() as u32);
        let t0 = g.rng.range(earliest, latest);
        let mut t = t0;
        for _ in 0..g.rng.range(4, 9) {
            let mut e = Gen::event(EventKind::MfaFailure, t, &users[v].name);
            e.ip = Some(ip);
            e.reason = Some(if g.rng.chance(0.5) { "push_denied" } else { "push_timeout" }.into());
            g.push(e);
            t += g.rng.range(60, 150);
        }
        let approved = g.rng.chance(0.3);
        if approved {
            g.attacker_connection(&users[v].name, t + 30, 1800, src);
        }
        g.attack(AttackKind::MfaFatigue, users[v].name.clone(), t0, t + 30, vec![AlertKind::MfaFatigue], approved);
    }
}

/// A city at least 1,500 km from `from`.
fn farthest(from: usize, g: &mut Gen) -> usize {
    let f = CITIES[from];
    let far: Vec<usize> = (0..CITIES.len())
        .filter(|&c| portcullis_geo::distance_km((f.lat, f.lon), (CITIES[c].lat, CITIES[c].lon)) >= 1500.0)
        .collect();
    *g.rng.pick(&far)
}

/// The baseline: an alert whenever a user connects from a country not among their
/// connections of the previous 30 days (after 30 days of data).
pub fn baseline_new_country(events: &[Event]) -> Vec<AlertDraft> {
    let mut seen: HashMap<&str, Vec<(String, i64)>> = HashMap::new();
    let mut out = Vec::new();
    let first = events.first().map_or(0, |e| e.time);
    for e in events.iter().filter(|e| e.kind == EventKind::VpnStart) {
        let Some(cc) = e.location.as_ref().and_then(|l| l.country.clone()) else { continue };
        let list = seen.entry(&e.user).or_default();
        let since = e.time - 30 * DAY;
        let known = list.iter().any(|(c, t)| *c == cc && *t >= since);
        if !known && e.time - first >= 30 * DAY {
            out.push(AlertDraft {
                kind: AlertKind::NewCountry,
                severity: crate::Severity::Medium,
                user: e.user.clone(),
                event_time: e.time,
                message: format!("{} connected from {cc}", e.user),
                evidence: serde_json::Value::Null,
                fold_key: String::new(),
                cause: e.identity(),
                ip: e.ip,
            });
        }
        list.retain(|(c, t)| *t >= since && *c != cc);
        list.push((cc, e.time));
    }
    out
}

/// Precision, recall and F1 of one detector.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub detector: String,
    pub alerts: usize,
    pub true_positives: usize,
    pub false_positives: usize,
    pub expected_attacks: usize,
    pub detected_attacks: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

fn score(detector: &str, alerts: &[&AlertDraft], attacks: &[Attack], expects: impl Fn(&Attack) -> bool) -> Score {
    let matches = |a: &AlertDraft, k: &Attack| {
        a.user == k.subject && a.event_time >= k.start - 60 && a.event_time <= k.end + 12 * HOUR
    };
    let tp = alerts.iter().filter(|a| attacks.iter().any(|k| matches(a, k))).count();
    let expected: Vec<&Attack> = attacks.iter().filter(|k| expects(k)).collect();
    let detected = expected.iter().filter(|k| alerts.iter().any(|a| matches(a, k))).count();
    let precision = if alerts.is_empty() { 1.0 } else { tp as f64 / alerts.len() as f64 };
    let recall = if expected.is_empty() { 1.0 } else { detected as f64 / expected.len() as f64 };
    let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    Score {
        detector: detector.into(),
        alerts: alerts.len(),
        true_positives: tp,
        false_positives: alerts.len() - tp,
        expected_attacks: expected.len(),
        detected_attacks: detected,
        precision,
        recall,
        f1,
    }
}

/// Scores every detector, the baseline rule and the location detectors combined.
///
/// An alert is a true positive when an injected attack against the same user (or from
/// the same source, for spray) happened within the 12 hours before it (the victim's
/// own next login after an attack is rightly an impossible journey). Recall counts the
/// attacks a detector is expected to catch; an alert on another attack still counts
/// as a true positive for precision.
pub fn evaluate(scenario: &Scenario, alerts: &[AlertDraft], baseline: &[AlertDraft]) -> Vec<Score> {
    let mut out = Vec::new();
    for kind in AlertKind::ALL {
        let mine: Vec<&AlertDraft> = alerts.iter().filter(|a| a.kind == kind).collect();
        out.push(score(kind.name(), &mine, &scenario.attacks, |k| k.expected.contains(&kind)));
    }
    let location_kinds = [
        AlertKind::SuspiciousVpnConnection,
        AlertKind::ImpossibleTravel,
        AlertKind::NewCountry,
        AlertKind::ConcurrentSessions,
    ];
    let location: Vec<&AlertDraft> = alerts.iter().filter(|a| location_kinds.contains(&a.kind)).collect();
    out.push(score("location detectors combined (VPN takeover)", &location, &scenario.attacks, |k| k.vpn_connection));
    let base: Vec<&AlertDraft> = baseline.iter().collect();
    out.push(score("baseline: new country in 30 days (VPN takeover)", &base, &scenario.attacks, |k| k.vpn_connection));
    out
}
