//! Hostile event streams into the detection engine: any order, any times (including
//! out of range), any mix of users, addresses, devices, sessions and locations (with
//! absurd coordinates and accuracy radii). No panic, and the profile view always renders.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_detect::{Config, Engine, Event, EventKind};
use portcullis_geo::Location;

const KINDS: [EventKind; 6] = [
    EventKind::VpnStart,
    EventKind::VpnStop,
    EventKind::NasReset,
    EventKind::AuthSuccess,
    EventKind::AuthFailure,
    EventKind::MfaFailure,
];
const REASONS: [&str; 8] =
    ["bad_password", "unknown_user", "policy", "push_denied", "push_timeout", "wrong_code", "replayed", "x"];

fn location(b: u8, c: u8) -> Option<Location> {
    let coordinate = |v: u8| match v % 8 {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => 90.0,
        3 => -180.0,
        n => f64::from(n) * 37.5 - 80.0,
    };
    match b % 5 {
        0 => None,
        1 => Some(Location::internal()),
        2 => Some(Location::default()),
        _ => Some(Location {
            country: Some(["DE", "FR", "US", "", "ZZZ"][usize::from(c % 5)].into()),
            city: (c & 8 != 0).then(|| format!("c{}", c % 7)),
            latitude: Some(coordinate(c)),
            longitude: Some(coordinate(c.rotate_left(3))),
            accuracy_km: (c & 16 != 0).then_some(u32::from(c) * 97),
            asn: (c & 32 != 0).then_some(u32::from(c % 4)),
            ..Location::default()
        }),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut config = Config::default();
    config.egress_asns.push(1);
    config.suspicious_vpn.learning_days = 0;
    config.suspicious_vpn.min_connections = 1;
    config.new_country.learning_days = 0;
    let mut engine = Engine::new(config);
    let mut out = Vec::new();
    for chunk in data.chunks_exact(12) {
        let time = match chunk[0] % 16 {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => -1,
            _ => 1_767_571_200 + i64::from(u32::from_be_bytes([chunk[1], chunk[2], chunk[3], 0]) >> 4),
        };
        let e = Event {
            time,
            kind: KINDS[usize::from(chunk[4] % 6)],
            user: format!("u{}", chunk[5] % 6),
            ip: Some(std::net::IpAddr::from([chunk[6], chunk[7] % 4, 0, 1])),
            device: (chunk[8] % 3 != 0).then(|| format!("d{}", chunk[8] % 5)),
            nas: Some(format!("n{}", chunk[9] % 2)),
            nas_ip: (chunk[9] & 8 != 0).then(|| std::net::IpAddr::from([192, 0, 2, chunk[9] % 2])),
            session: (chunk[9] & 4 != 0).then(|| format!("s{}", chunk[9] % 9)),
            reason: Some(REASONS[usize::from(chunk[10]) % REASONS.len()].into()),
            location: location(chunk[10] >> 3, chunk[11]),
        };
        engine.ingest(&e, &mut out);
    }
    for u in 0..6 {
        if let Some(p) = engine.profile(&format!("u{u}")) {
            let _ = format!("{p:?}");
        }
    }
    for a in &out {
        assert!(!a.message.is_empty());
        let _ = a.evidence.to_string();
    }
});
