//! Any sequence of arrivals, answers and abandons keeps the cache within its bound.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use portcullis_radius::dedup::DuplicateCache;
use portcullis_radius::{Authenticator, Identifier};

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut cache = DuplicateCache::new(Duration::from_secs(5), 16);
    let mut now = start;
    for op in data.chunks(4) {
        let [kind, port, id, auth] = op else { break };
        let source = SocketAddr::from(([127, 0, 0, 1], u16::from(*port)));
        let auth = Authenticator([*auth; 16]);
        match kind % 4 {
            0 => drop(cache.lookup(now, source, Identifier(*id), auth)),
            1 => cache.answered(now, source, Identifier(*id), auth, vec![*id]),
            2 => cache.abandon(source, Identifier(*id), auth),
            _ => now += Duration::from_millis(u64::from(*id) * 100),
        }
        assert!(cache.len() <= 16);
    }
});
