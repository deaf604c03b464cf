//! The RADIUS client table and its per-client ingestion counters.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use portcullis_accounting::Vendor;
use portcullis_radius::{Error as RadiusError, Packet, SharedSecret, VerifiedRequest, VerifyPolicy};
use portcullis_storage::{ClientSecret, ClientSettings, Counter, StoredClient};

use crate::config::{Config, Network};

/// Why a datagram was counted. Every discard has a reason an operator can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Datagrams received from this client.
    Received,
    /// Accounting-Requests durably recorded and answered.
    Acknowledged,
    /// Status-Server requests answered.
    StatusServer,
    /// Retransmits discarded while the original was still being recorded.
    DuplicateInFlight,
    /// Retransmits answered again from the response cache.
    DuplicateResent,
    /// Datagrams that are not well-formed RADIUS.
    Malformed,
    /// Request Authenticator wrong: almost always a shared-secret mismatch.
    BadAuthenticator,
    /// Message-Authenticator present but wrong, or required and missing.
    BadMessageAuthenticator,
    /// RADIUS codes this port does not serve.
    UnsupportedCode,
    /// Accounting-Requests missing Acct-Status-Type or carrying forbidden attributes.
    InvalidRequest,
    /// Accounting-Requests recorded with their event time set to arrival: the
    /// Event-Timestamp was too far ahead of arrival or before 2000.
    ClockSkew,
    /// Dropped unanswered because the storage queue was full (the NAS retransmits).
    QueueFull,
    /// Dropped unanswered because the storage commit failed.
    StorageFailed,
    /// The response could not be sent.
    SendFailed,
    /// Access-Requests answered with Access-Accept.
    AccessAccept,
    /// Access-Requests answered with Access-Reject.
    AccessReject,
    /// Access-Requests answered with Access-Challenge (an EAP round, a second-factor
    /// prompt).
    AccessChallenge,
    /// Requests that verified with `previous_secret`, not `secret` (a rollover in
    /// progress: the NAS still uses the old secret).
    PreviousSecret,
}

impl Reason {
    /// Every reason, in display order.
    pub const ALL: [Self; 18] = [
        Self::Received,
        Self::Acknowledged,
        Self::StatusServer,
        Self::DuplicateInFlight,
        Self::DuplicateResent,
        Self::Malformed,
        Self::BadAuthenticator,
        Self::BadMessageAuthenticator,
        Self::UnsupportedCode,
        Self::InvalidRequest,
        Self::ClockSkew,
        Self::QueueFull,
        Self::StorageFailed,
        Self::SendFailed,
        Self::AccessAccept,
        Self::AccessReject,
        Self::AccessChallenge,
        Self::PreviousSecret,
    ];

    /// The counter name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Acknowledged => "acknowledged",
            Self::StatusServer => "status_server",
            Self::DuplicateInFlight => "duplicate_in_flight",
            Self::DuplicateResent => "duplicate_resent",
            Self::Malformed => "malformed",
            Self::BadAuthenticator => "bad_authenticator",
            Self::BadMessageAuthenticator => "bad_message_authenticator",
            Self::UnsupportedCode => "unsupported_code",
            Self::InvalidRequest => "invalid_request",
            Self::ClockSkew => "clock_skew",
            Self::QueueFull => "queue_full",
            Self::StorageFailed => "storage_failed",
            Self::SendFailed => "send_failed",
            Self::AccessAccept => "access_accept",
            Self::AccessReject => "access_reject",
            Self::AccessChallenge => "access_challenge",
            Self::PreviousSecret => "previous_secret",
        }
    }
}

/// Counters of one client.
#[derive(Debug, Default)]
pub struct Counters {
    values: [AtomicU64; Reason::ALL.len()],
}

impl Counters {
    /// Adds one.
    pub fn bump(&self, reason: Reason) -> u64 {
        self.values[reason as usize].fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The current value.
    pub fn value(&self, reason: Reason) -> u64 {
        self.values[reason as usize].load(Ordering::Relaxed)
    }

    fn add(&self, reason: Reason, n: u64) {
        self.values[reason as usize].fetch_add(n, Ordering::Relaxed);
    }
}

/// One configured RADIUS client.
#[derive(Debug)]
pub struct Client {
    pub name: String,
    pub network: Network,
    pub secret: SharedSecret,
    pub vendor: Vendor,
    /// Shared by every table this client appears in: a reload keeps them.
    pub counters: Arc<Counters>,
    pub verify: portcullis_radius::VerifyPolicy,
    pub send_message_authenticator: bool,
    /// During a secret rollover: the same client with `previous_secret` as its secret.
    pub previous: Option<Arc<Self>>,
    /// Added at runtime (`clients.db`), not by the configuration file.
    pub stored: bool,
}

impl Client {
    /// What the client is, without its secret.
    pub fn settings(&self) -> ClientSettings {
        ClientSettings {
            name: self.name.clone(),
            address: self.network,
            vendor: self.vendor,
            require_message_authenticator: self.verify.require_message_authenticator,
            limit_proxy_state: self.verify.limit_proxy_state,
            send_message_authenticator: self.send_message_authenticator,
        }
    }
}

impl Client {
    /// Verifies a request with the secret and, during a rollover, with the previous
    /// secret (counted as `previous_secret`). Returns the client whose secret matched:
    /// the reply must be signed, and User-Password read, with that one.
    pub fn check<'a>(
        self: &'a Arc<Self>,
        packet: Packet<'a>,
        policy: VerifyPolicy,
    ) -> Result<(VerifiedRequest<'a>, &'a Arc<Self>), RadiusError> {
        let error = match VerifiedRequest::verify(packet, &self.secret, policy) {
            Ok(request) => return Ok((request, self)),
            Err(e) => e,
        };
        let Some(previous) = &self.previous else { return Err(error) };
        if !matches!(error, RadiusError::BadAuthenticator | RadiusError::BadMessageAuthenticator) {
            return Err(error);
        }
        match VerifiedRequest::verify(packet, &previous.secret, policy) {
            Ok(request) => {
                self.counters.bump(Reason::PreviousSecret);
                Ok((request, previous))
            }
            Err(_) => Err(error),
        }
    }
}

/// Most distinct unknown source addresses tracked individually.
const UNKNOWN_SOURCES_TRACKED: usize = 1024;

/// Counters that outlive one configuration: every client name seen since the start
/// (a client removed by a reload and added back continues where it was) and the
/// unknown sources.
#[derive(Debug, Default)]
struct Registry {
    counters: Mutex<HashMap<String, Arc<Counters>>>,
    unknown: Mutex<HashMap<IpAddr, u64>>,
    unknown_other: AtomicU64,
}

impl Registry {
    fn counters(&self, name: &str) -> Arc<Counters> {
        Arc::clone(crate::lock(&self.counters).entry(name.to_string()).or_default())
    }

    /// A client with the counters its name has had since the start.
    fn client(&self, s: &ClientSettings, secret: &str, previous: Option<Arc<Client>>, stored: bool) -> Client {
        Client {
            name: s.name.clone(),
            network: s.address,
            secret: SharedSecret::new(secret),
            vendor: s.vendor,
            counters: self.counters(&s.name),
            verify: VerifyPolicy {
                require_message_authenticator: s.require_message_authenticator,
                limit_proxy_state: s.limit_proxy_state,
            },
            send_message_authenticator: s.send_message_authenticator,
            previous,
            stored,
        }
    }
}

/// Clients from `clients.db` with their secrets, as the server loaded them.
pub type StoredClients = Arc<Vec<(StoredClient, ClientSecret)>>;

/// Lookup by source address: the most specific matching network wins. The clients of
/// the configuration file come first; a stored client that shares a name or an
/// address with one of them is left out (the file wins).
#[derive(Debug)]
pub struct ClientTable {
    clients: Vec<Arc<Client>>,
    stored: StoredClients,
    registry: Arc<Registry>,
}

impl ClientTable {
    /// Builds the table from validated configuration and the stored clients.
    pub fn new(config: &Config, stored: StoredClients) -> Self {
        let registry = Arc::default();
        Self::build(Self::file_clients(config, &registry), stored, registry)
    }

    /// Builds the table from validated configuration alone.
    pub fn from_config(config: &Config) -> Self {
        Self::new(config, Arc::default())
    }

    /// The table of a reloaded configuration, with the same stored clients: clients
    /// keep their counters by name, and unknown sources keep theirs.
    pub fn reloaded(&self, config: &Config) -> Self {
        Self::build(Self::file_clients(config, &self.registry), Arc::clone(&self.stored), Arc::clone(&self.registry))
    }

    /// The same file clients with these stored clients (after `clients.db` changed).
    pub fn with_stored(&self, stored: StoredClients) -> Self {
        let file = self.clients.iter().filter(|c| !c.stored).cloned().collect();
        Self::build(file, stored, Arc::clone(&self.registry))
    }

    /// The stored clients this table was built with.
    pub fn stored(&self) -> &StoredClients {
        &self.stored
    }

    fn file_clients(config: &Config, registry: &Registry) -> Vec<Arc<Client>> {
        config
            .client_list()
            .map(|c| {
                let settings = c.settings();
                let previous =
                    c.previous_secret.as_ref().map(|p| Arc::new(registry.client(&settings, p.expose(), None, false)));
                let secret = c.secret.as_ref().map(|s| s.expose()).unwrap_or_default();
                Arc::new(registry.client(&settings, secret, previous, false))
            })
            .collect()
    }

    fn build(file: Vec<Arc<Client>>, stored: StoredClients, registry: Arc<Registry>) -> Self {
        let settings: Vec<ClientSettings> = file.iter().map(|c| c.settings()).collect();
        let mut clients = file;
        for (c, secret) in stored.iter() {
            if let Some(conflict) = portcullis_storage::file_conflict(&settings, &c.settings) {
                tracing::warn!(client = %c.settings.name, "stored RADIUS client left out: {conflict}");
                continue;
            }
            clients.push(Arc::new(registry.client(&c.settings, secret.expose(), None, true)));
        }
        // Stable: between two networks of one length, the file's client stays first.
        clients.sort_by_key(|c| std::cmp::Reverse(c.network.prefix));
        Self { clients, stored, registry }
    }

    /// Adds stored totals (from before a restart) to the counters, so they count on
    /// from where the last run stopped. Call once, before traffic.
    pub fn seed(&self, stored: &[Counter]) {
        for c in stored {
            if c.reason == "unknown_client" {
                let Some(source) = c.client.strip_prefix("unknown:") else { continue };
                if source == "other" {
                    self.registry.unknown_other.fetch_add(c.count, Ordering::Relaxed);
                } else if let Ok(ip) = source.parse::<IpAddr>() {
                    let mut map = crate::lock(&self.registry.unknown);
                    if map.len() < UNKNOWN_SOURCES_TRACKED || map.contains_key(&ip) {
                        *map.entry(ip).or_default() += c.count;
                    }
                }
            } else if let Some(reason) = Reason::ALL.into_iter().find(|r| r.name() == c.reason) {
                self.registry.counters(&c.client).add(reason, c.count);
            }
        }
    }

    /// The client a datagram from `ip` belongs to.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<Client>> {
        self.clients.iter().find(|c| c.network.contains(ip))
    }

    /// Every client.
    pub fn iter(&self) -> impl Iterator<Item = &Client> {
        self.clients.iter().map(|c| &**c)
    }

    /// Counts a datagram from an address no client matches; returns the new count.
    pub fn count_unknown(&self, ip: IpAddr) -> u64 {
        let mut map = crate::lock(&self.registry.unknown);
        if let Some(n) = map.get_mut(&ip) {
            *n += 1;
            return *n;
        }
        if map.len() < UNKNOWN_SOURCES_TRACKED {
            map.insert(ip, 1);
            return 1;
        }
        self.registry.unknown_other.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A snapshot of every counter, for storage and display.
    pub fn snapshot(&self) -> Vec<Counter> {
        let mut out = Vec::new();
        for c in &self.clients {
            for r in Reason::ALL {
                out.push(Counter { client: c.name.clone(), reason: r.name().into(), count: c.counters.value(r) });
            }
        }
        let map = crate::lock(&self.registry.unknown);
        for (ip, n) in map.iter() {
            out.push(Counter { client: format!("unknown:{ip}"), reason: "unknown_client".into(), count: *n });
        }
        let other = self.registry.unknown_other.load(Ordering::Relaxed);
        if other > 0 {
            out.push(Counter { client: "unknown:other".into(), reason: "unknown_client".into(), count: other });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use portcullis_storage::{ClientSecret, ClientSettings, StoredClient};

    use super::*;

    fn stored(name: &str, address: &str, secret: &str) -> (StoredClient, ClientSecret) {
        let client = StoredClient {
            settings: ClientSettings::new(name, address.parse().unwrap()),
            created_ms: 1,
            created_by: "cli".into(),
            updated_ms: 1,
            updated_by: "cli".into(),
        };
        (client, ClientSecret::new(secret))
    }

    /// The demo's file client is 127.0.0.1: a stored client that overlaps it or takes its
    /// name is left out; the others are looked up like file clients, keep their counters
    /// by name across a change of the stored set and a reload, and a reload keeps them.
    #[test]
    fn stored_clients_join_the_table_and_the_file_wins() {
        let config = Config::demo();
        let file = config.client_list().next().unwrap().name.clone();
        let table = ClientTable::new(
            &config,
            Arc::new(vec![
                stored("lab", "127.0.0.2", "lab-secret"),
                stored("sneaky", "127.0.0.0/8", "x"),
                stored(&file, "192.0.2.1", "x"),
            ]),
        );
        let names: Vec<&str> = table.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, [file.as_str(), "lab"]);
        let lab = table.lookup("127.0.0.2".parse().unwrap()).unwrap();
        assert!(lab.stored && lab.secret == SharedSecret::new("lab-secret"));
        assert!(!table.lookup("127.0.0.1".parse().unwrap()).unwrap().stored);
        assert!(table.lookup("127.0.0.3".parse().unwrap()).is_none());
        lab.counters.bump(Reason::Acknowledged);

        let reloaded = table.reloaded(&config);
        assert!(reloaded.lookup("127.0.0.2".parse().unwrap()).is_some(), "a reload keeps the stored clients");
        let changed = reloaded.with_stored(Arc::new(vec![stored("lab", "127.0.0.2", "new-secret")]));
        let lab = changed.lookup("127.0.0.2".parse().unwrap()).unwrap();
        assert!(lab.secret == SharedSecret::new("new-secret"));
        assert_eq!(lab.counters.value(Reason::Acknowledged), 1, "counters are kept by name");
        let emptied = changed.with_stored(Arc::default());
        assert!(emptied.lookup("127.0.0.2".parse().unwrap()).is_none());
        assert!(emptied.lookup("127.0.0.1".parse().unwrap()).is_some(), "the file's clients stay");
    }
}
