//! Duplicate detection and response cache (RFC 5080 §2.2.2), sans-IO: the caller
//! passes `now` in.
//!
//! A request is identified by source address and port, Identifier and Request
//! Authenticator. While a request is being processed its duplicates are discarded;
//! once answered, a duplicate gets the cached response without being processed again.
//! A different Request Authenticator with the same address, port and Identifier is a
//! new request and replaces the entry. Answered entries live for `retention` after
//! their last use; in-flight entries live at least [`IN_FLIGHT`] (a login held for a
//! push approval must not be processed twice), and the cache never holds more than
//! `capacity` entries.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::{Authenticator, Identifier};

/// What to do with an arriving request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// New request: process it (it is now marked in flight).
    New,
    /// Duplicate of a request still being processed: discard silently.
    InFlight,
    /// Duplicate of an answered request: send these octets again.
    Answered(Vec<u8>),
}

#[derive(Debug)]
struct Entry {
    authenticator: Authenticator,
    response: Option<Vec<u8>>,
    generation: u64,
}

type Key = (SocketAddr, u8);

/// How long a request may stay in flight before a retransmit counts as new.
pub const IN_FLIGHT: Duration = Duration::from_secs(120);

/// The cache.
#[derive(Debug)]
pub struct DuplicateCache {
    entries: HashMap<Key, Entry>,
    order: VecDeque<(Instant, Key, u64)>,
    retention: Duration,
    capacity: usize,
    generation: u64,
}

impl DuplicateCache {
    /// `retention` should be 5–30 s (RFC 5080); `capacity` bounds memory.
    pub fn new(retention: Duration, capacity: usize) -> Self {
        Self { entries: HashMap::new(), order: VecDeque::new(), retention, capacity: capacity.max(1), generation: 0 }
    }

    /// Classifies an arriving, already verified request.
    pub fn lookup(&mut self, now: Instant, source: SocketAddr, id: Identifier, auth: Authenticator) -> Lookup {
        self.expire(now);
        let key = (source, id.0);
        if let Some(e) = self.entries.get(&key) {
            if e.authenticator == auth {
                return match &e.response {
                    Some(r) => Lookup::Answered(r.clone()),
                    None => Lookup::InFlight,
                };
            }
        }
        while self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            if !self.evict_oldest() {
                break;
            }
        }
        self.insert(now, key, auth, None);
        Lookup::New
    }

    /// Records the response sent for a request, so duplicates get it again.
    pub fn answered(
        &mut self,
        now: Instant,
        source: SocketAddr,
        id: Identifier,
        auth: Authenticator,
        response: Vec<u8>,
    ) {
        let key = (source, id.0);
        match self.entries.get(&key) {
            Some(e) if e.authenticator == auth => self.insert(now, key, auth, Some(response)),
            // A newer request took the slot, or the entry was evicted: nothing to do.
            _ => {}
        }
    }

    /// Forgets an in-flight request that will not be answered (so a retransmit is
    /// processed again, e.g. after the storage queue was full).
    pub fn abandon(&mut self, source: SocketAddr, id: Identifier, auth: Authenticator) {
        let key = (source, id.0);
        if self.entries.get(&key).is_some_and(|e| e.authenticator == auth && e.response.is_none()) {
            self.entries.remove(&key);
        }
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, now: Instant, key: Key, authenticator: Authenticator, response: Option<Vec<u8>>) {
        self.generation += 1;
        let lifetime = if response.is_some() { self.retention } else { self.retention.max(IN_FLIGHT) };
        let expires = now + lifetime;
        self.entries.insert(key, Entry { authenticator, response, generation: self.generation });
        self.order.push_back((expires, key, self.generation));
        // Stale order records (superseded generations) are dropped lazily; keep the
        // queue from growing without bound when entries are refreshed often.
        if self.order.len() > self.capacity.saturating_mul(4) {
            let entries = &self.entries;
            self.order.retain(|(_, k, g)| entries.get(k).is_some_and(|e| e.generation == *g));
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(expires, key, generation)) = self.order.front() {
            let current = self.entries.get(&key).is_some_and(|e| e.generation == generation);
            // Superseded records go at once, whatever their time: a request that was in
            // flight (long lifetime) and then answered must not hold up the queue.
            if current && expires > now {
                break;
            }
            self.order.pop_front();
            if self.entries.get(&key).is_some_and(|e| e.generation == generation) {
                self.entries.remove(&key);
            }
        }
    }

    fn evict_oldest(&mut self) -> bool {
        while let Some((_, key, generation)) = self.order.pop_front() {
            if self.entries.get(&key).is_some_and(|e| e.generation == generation) {
                self.entries.remove(&key);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn rfc5080_section_2_2_2_contract() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(Duration::from_secs(5), 100);
        let a = Authenticator([1; 16]);
        assert_eq!(c.lookup(t0, addr(1), Identifier(7), a), Lookup::New);
        // Duplicate before the response exists: silently discard.
        assert_eq!(c.lookup(t0, addr(1), Identifier(7), a), Lookup::InFlight);
        c.answered(t0, addr(1), Identifier(7), a, vec![5, 7]);
        // Duplicate after: resend the original response without reprocessing.
        assert_eq!(c.lookup(t0 + Duration::from_secs(4), addr(1), Identifier(7), a), Lookup::Answered(vec![5, 7]));
        // Different Request Authenticator: a new request replaces the entry.
        let b = Authenticator([2; 16]);
        assert_eq!(c.lookup(t0, addr(1), Identifier(7), b), Lookup::New);
        assert_eq!(c.lookup(t0, addr(1), Identifier(7), a), Lookup::New);
        // Other port, same id: independent.
        assert_eq!(c.lookup(t0, addr(2), Identifier(7), a), Lookup::New);
    }

    #[test]
    fn entries_expire_after_retention() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(Duration::from_secs(5), 100);
        let a = Authenticator([1; 16]);
        c.lookup(t0, addr(1), Identifier(1), a);
        c.answered(t0, addr(1), Identifier(1), a, vec![1]);
        assert_eq!(c.lookup(t0 + Duration::from_secs(6), addr(1), Identifier(1), a), Lookup::New);
    }

    #[test]
    fn requests_in_flight_outlive_the_retention() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(Duration::from_secs(10), 100);
        let a = Authenticator([1; 16]);
        assert_eq!(c.lookup(t0, addr(1), Identifier(1), a), Lookup::New);
        // Still waiting for a push approval after 50 s: retransmits are discarded.
        assert_eq!(c.lookup(t0 + Duration::from_secs(50), addr(1), Identifier(1), a), Lookup::InFlight);
        c.answered(t0 + Duration::from_secs(55), addr(1), Identifier(1), a, vec![7]);
        assert_eq!(c.lookup(t0 + Duration::from_secs(60), addr(1), Identifier(1), a), Lookup::Answered(vec![7]));
        assert_eq!(c.lookup(t0 + Duration::from_secs(66), addr(1), Identifier(1), a), Lookup::New);
    }

    #[test]
    fn capacity_is_a_hard_bound() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(Duration::from_secs(30), 10);
        for port in 0..1000u16 {
            c.lookup(t0, addr(port), Identifier(1), Authenticator([3; 16]));
            c.answered(t0, addr(port), Identifier(1), Authenticator([3; 16]), vec![0; 20]);
            assert!(c.len() <= 10);
        }
        assert!(c.order.len() <= 40 + 1);
    }

    #[test]
    fn abandoned_requests_are_processed_again() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(Duration::from_secs(5), 10);
        let a = Authenticator([1; 16]);
        c.lookup(t0, addr(1), Identifier(1), a);
        c.abandon(addr(1), Identifier(1), a);
        assert_eq!(c.lookup(t0, addr(1), Identifier(1), a), Lookup::New);
    }
}
