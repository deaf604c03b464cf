//! EAP conversations between round trips, keyed by the State we issue, bounded and
//! expiring. A conversation carries the identity decided in its credentials round, so
//! the round that sends EAP-Success and the second factor use that same account.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use portcullis_auth::eap;
use portcullis_auth::peap::Tunnel;
use portcullis_auth::policy::Method;

use super::decision::{Grant, Identity};

/// How long a conversation may wait for the next round trip.
const EAP_TIMEOUT: Duration = Duration::from_secs(60);
/// Most conversations held at once.
const EAP_MAX: usize = 65_536;
/// Most PEAP conversations (each holds a TLS session) held at once.
const TUNNELS_MAX: usize = 8_192;

/// The account and grant a conversation's credentials round decided.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    pub(crate) identity: Identity,
    pub(crate) grant: Grant,
}

/// A conversation between round trips.
#[derive(Debug)]
pub(crate) enum Kind {
    Mschapv2(eap::Conversation),
    Peap(Box<Tunnel>),
}

/// A conversation between round trips.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) kind: Kind,
    /// A Nak is valid only in answer to the first request of a method (RFC 3748 §5.3.1).
    pub(crate) nak_allowed: bool,
    pub(crate) decided: Option<Box<Decision>>,
    /// The `[[client]]` the conversation began with: only it may continue it.
    pub(crate) client: String,
}

impl Session {
    pub(crate) fn new(kind: Kind, client: &str) -> Self {
        Self { kind, nak_allowed: true, decided: None, client: client.to_string() }
    }

    pub(crate) fn method(&self) -> Method {
        match self.kind {
            Kind::Mschapv2(_) => Method::EapMschapv2,
            Kind::Peap(_) => Method::Peap,
        }
    }

    fn is_tunnel(&self) -> bool {
        matches!(self.kind, Kind::Peap(_))
    }
}

/// EAP conversations between round trips, keyed by the State we issued.
#[derive(Debug, Default)]
pub struct EapTable {
    sessions: HashMap<[u8; 16], (Session, Instant)>,
    tunnels: usize,
}

impl EapTable {
    pub(crate) fn take(&mut self, state: &[u8]) -> Option<Session> {
        let key: [u8; 16] = state.try_into().ok()?;
        let (s, expires) = self.sessions.remove(&key)?;
        if s.is_tunnel() {
            self.tunnels -= 1;
        }
        (Instant::now() < expires).then_some(s)
    }

    pub(crate) fn put(&mut self, state: [u8; 16], s: Session) -> bool {
        let now = Instant::now();
        let tunnel = s.is_tunnel();
        if self.sessions.len() >= EAP_MAX || (tunnel && self.tunnels >= TUNNELS_MAX) {
            self.sessions.retain(|_, (_, e)| *e > now);
            self.tunnels = self.sessions.values().filter(|(s, _)| s.is_tunnel()).count();
            if self.sessions.len() >= EAP_MAX || (tunnel && self.tunnels >= TUNNELS_MAX) {
                return false;
            }
        }
        self.tunnels += usize::from(tunnel);
        self.sessions.insert(state, (s, now + EAP_TIMEOUT));
        true
    }

    /// Conversations held now (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no conversation is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}
