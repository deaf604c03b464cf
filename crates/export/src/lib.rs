//! Getting findings out: alert changes leave through an outbox (the store's
//! `alert_events`, read by each sink through a cursor that moves only after the
//! receiver took the events), authentication decisions through a bounded queue per
//! sink that drops and counts instead of waiting.
//!
//! Formats are pure functions (`cef`, `syslog`, `ocsf`, `webhook`); the sinks' threads
//! own the sockets, the HTTP client and the cursor files. The crate reads the store
//! through the `Store` trait and knows nothing about the server.

pub mod cef;
pub mod ocsf;
pub mod syslog;
mod transport;
pub mod webhook;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use portcullis_storage::{AlertEvent, AuthEvent, StorageError, Store};

pub use transport::Tls;

/// What carries a sink's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkType {
    /// Syslog over TCP or TLS, octet-counted.
    Syslog,
    /// HTTP(S) POST, signed.
    Webhook,
}

/// What a message holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// CEF (syslog only).
    Cef,
    /// OCSF 1.8.0 JSON.
    Ocsf,
    /// Portcullis' own alert and authentication JSON (webhook only).
    Json,
}

/// One `[[export]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Letters, digits, `-` and `_`: names the cursor file and the metrics label.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: SinkType,
    /// Default: `cef` for syslog, `json` for webhooks.
    #[serde(default)]
    pub format: Option<Format>,
    /// Syslog: `host:port` of the receiver.
    #[serde(default)]
    pub address: Option<String>,
    /// Syslog: TLS (RFC 5425) instead of plain TCP.
    #[serde(default)]
    pub tls: bool,
    /// The name the receiver's certificate must carry (default: the host of `address`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM file of the CA that signs the receiver's certificate (default: system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    #[serde(default)]
    pub framing: syslog::Framing,
    #[serde(default = "default_facility")]
    pub facility: String,
    /// A syslog message never exceeds this many bytes (longer fields are cut).
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: usize,
    /// Webhook: `https://…` (`http://` only to a loopback address).
    #[serde(default)]
    pub url: Option<String>,
    /// Webhook: a file holding the `whsec_…` signing secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Also send authentication decisions (best effort, through the bounded queue).
    #[serde(default)]
    pub auth_events: bool,
    /// Authentication decisions waiting at most; more are dropped and counted.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Only alerts at least this severe (`low`, `medium`, `high`).
    #[serde(default)]
    pub min_severity: Option<portcullis_detect::Severity>,
    /// Only these alert kinds (all when empty).
    #[serde(default)]
    pub kinds: Vec<portcullis_detect::AlertKind>,
}

fn default_facility() -> String {
    "auth".into()
}
fn default_max_frame() -> usize {
    4096
}
fn default_queue() -> usize {
    10_000
}

/// What every sink shares about the sender.
#[derive(Debug, Clone)]
pub struct Context {
    /// HOSTNAME of syslog headers.
    pub hostname: String,
    /// The product version in CEF headers and OCSF metadata.
    pub version: String,
    /// Base URL of the portal, for links to alerts.
    pub portal_url: Option<String>,
    /// Where the cursor files live (`<data_dir>/export`).
    pub state_dir: PathBuf,
}

/// A configuration or start-up error, naming the sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error("[[export]] {name}: {message}")]
    Config { name: String, message: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("export state {path}: {source}")]
    State { path: String, source: std::io::Error },
}

/// A sink's counters, as `/metrics` and the portal show them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SinkStats {
    pub name: String,
    /// Events the receiver took (alert changes and authentication decisions).
    pub sent: u64,
    /// Events sent again after a failure (same ids).
    pub retried: u64,
    /// Authentication decisions dropped: queue full, or the receiver down.
    pub dropped: u64,
    /// Messages with a field cut to fit `max_frame_bytes`.
    pub truncated: u64,
    /// Alert changes recorded but not yet acknowledged by the receiver.
    pub lag: u64,
    /// Whether the last attempt to reach the receiver worked.
    pub up: bool,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
    truncated: AtomicU64,
    lag: AtomicU64,
    up: AtomicBool,
}

#[derive(Debug)]
struct Sink {
    name: String,
    counters: Counters,
    auth: Option<SyncSender<AuthEvent>>,
}

/// Opens a store connection for a sink's thread.
pub type OpenStore = dyn Fn() -> Result<Box<dyn Store>, StorageError> + Send + Sync;

/// The running sinks. Dropping it stops them.
#[derive(Debug)]
pub struct Exporter {
    sinks: Vec<Arc<Sink>>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// Checks every sink as [`Exporter::start`] would (names, keys, files, secrets)
/// without starting anything: for check-config.
pub fn check(configs: &[SinkConfig]) -> Result<(), ExportError> {
    prepare(configs).map(drop)
}

fn prepare(configs: &[SinkConfig]) -> Result<Vec<Prepared>, ExportError> {
    let prepared = configs.iter().map(Prepared::new).collect::<Result<Vec<_>, _>>()?;
    let mut names = std::collections::HashSet::new();
    for p in &prepared {
        if !names.insert(p.config.name.clone()) {
            return Err(config_error(&p.config, "two [[export]] tables have this name"));
        }
    }
    Ok(prepared)
}

impl Exporter {
    /// Checks every sink, then starts one thread per sink, each with its own store
    /// connection. A sink seen for the first time starts after the latest alert change.
    pub fn start(configs: &[SinkConfig], context: &Context, open: &OpenStore) -> Result<Self, ExportError> {
        let prepared = prepare(configs)?;
        std::fs::create_dir_all(&context.state_dir)
            .map_err(|source| ExportError::State { path: context.state_dir.display().to_string(), source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut sinks = Vec::new();
        let mut threads = Vec::new();
        for p in prepared {
            let store = open()?;
            let cursor = Cursor::open(&context.state_dir, &p.config.name, store.as_ref())?;
            let (tx, rx) = if p.config.auth_events {
                let (tx, rx) = std::sync::mpsc::sync_channel(p.config.queue.max(1));
                (Some(tx), Some(rx))
            } else {
                (None, None)
            };
            let sink = Arc::new(Sink { name: p.config.name.clone(), counters: Counters::default(), auth: tx });
            let worker = Worker {
                prepared: p,
                context: context.clone(),
                sink: Arc::clone(&sink),
                store,
                cursor,
                auth: rx,
                stop: Arc::clone(&stop),
            };
            let thread = std::thread::Builder::new()
                .name(format!("export-{}", sink.name))
                .spawn(move || worker.run())
                .map_err(|source| ExportError::State { path: "thread".into(), source })?;
            sinks.push(sink);
            threads.push(thread);
        }
        Ok(Self { sinks, stop, threads: Mutex::new(threads) })
    }

    /// Offers authentication decisions to the sinks that want them. Never blocks: a
    /// full queue drops the event and counts it.
    pub fn offer_auth(&self, events: &[AuthEvent]) {
        for sink in &self.sinks {
            let Some(tx) = &sink.auth else { continue };
            for e in events {
                match tx.try_send(e.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                        sink.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Every sink's counters, in configuration order.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.sinks
            .iter()
            .map(|s| {
                let c = &s.counters;
                SinkStats {
                    name: s.name.clone(),
                    sent: c.sent.load(Ordering::Relaxed),
                    retried: c.retried.load(Ordering::Relaxed),
                    dropped: c.dropped.load(Ordering::Relaxed),
                    truncated: c.truncated.load(Ordering::Relaxed),
                    lag: c.lag.load(Ordering::Relaxed),
                    up: c.up.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Stops the sinks and waits for their threads.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config_error(c: &SinkConfig, message: impl Into<String>) -> ExportError {
    ExportError::Config { name: c.name.clone(), message: message.into() }
}

/// A checked sink configuration with what it needs built.
struct Prepared {
    config: SinkConfig,
    format: Format,
    target: Target,
    facility: u8,
}

enum Target {
    Syslog { address: String, tls: Option<Tls> },
    Webhook { url: String, key: webhook::SigningKey, client: reqwest::blocking::Client },
}

impl Prepared {
    fn new(c: &SinkConfig) -> Result<Self, ExportError> {
        let err = |m: &str| config_error(c, m);
        if c.name.is_empty()
            || c.name.len() > 64
            || !c.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(err("name: 1 to 64 letters, digits, - or _"));
        }
        let facility = syslog::facility(&c.facility)
            .ok_or_else(|| err("facility: one of user, daemon, auth, authpriv, local0 … local7"))?;
        let (format, target) = match c.kind {
            SinkType::Syslog => {
                if c.url.is_some() || c.secret_file.is_some() {
                    return Err(err("url and secret_file are for webhooks"));
                }
                let address = c.address.clone().ok_or_else(|| err("address (host:port) is required"))?;
                if !(480..=65_536).contains(&c.max_frame_bytes) {
                    return Err(err("max_frame_bytes: from 480 (what every receiver takes) to 65536"));
                }
                let tls = if c.tls {
                    let host = address.rsplit_once(':').map_or(address.as_str(), |(h, _)| h);
                    let name = c.server_name.clone().unwrap_or_else(|| host.trim_matches(['[', ']']).to_string());
                    let client = match (&c.client_cert_file, &c.client_key_file) {
                        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
                        (None, None) => None,
                        _ => return Err(err("client_cert_file and client_key_file go together")),
                    };
                    Some(Tls::new(&name, c.ca_file.as_deref(), client).map_err(|m| err(&m))?)
                } else {
                    if c.ca_file.is_some() || c.client_cert_file.is_some() || c.server_name.is_some() {
                        return Err(err("ca_file, client_cert_file and server_name need tls = true"));
                    }
                    None
                };
                let format = c.format.unwrap_or(Format::Cef);
                if format == Format::Json {
                    return Err(err("format: cef or ocsf for syslog"));
                }
                (format, Target::Syslog { address, tls })
            }
            SinkType::Webhook => {
                if c.address.is_some() || c.tls {
                    return Err(err("address and tls are for syslog; a webhook has a url"));
                }
                let url = c.url.clone().ok_or_else(|| err("url is required"))?;
                check_url(&url).map_err(|m| err(&m))?;
                let secret_file = c.secret_file.as_ref().ok_or_else(|| err("secret_file is required"))?;
                let text = std::fs::read_to_string(secret_file)
                    .map_err(|e| err(&format!("cannot read {}: {e}", secret_file.display())))?;
                let key =
                    webhook::SigningKey::parse(&text).map_err(|m| err(&format!("{}: {m}", secret_file.display())))?;
                let mut builder = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .redirect(reqwest::redirect::Policy::none());
                if let Some(ca) = &c.ca_file {
                    let pem = std::fs::read(ca).map_err(|e| err(&format!("cannot read {}: {e}", ca.display())))?;
                    let cert =
                        reqwest::Certificate::from_pem(&pem).map_err(|e| err(&format!("{}: {e}", ca.display())))?;
                    builder = builder.add_root_certificate(cert);
                }
                let client = builder.build().map_err(|e| err(&e.to_string()))?;
                let format = c.format.unwrap_or(Format::Json);
                if format == Format::Cef {
                    return Err(err("format: json or ocsf for webhooks"));
                }
                (format, Target::Webhook { url, key, client })
            }
        };
        Ok(Self { config: c.clone(), format, target, facility })
    }

    fn wants(&self, e: &AlertEvent) -> bool {
        let kind = portcullis_detect::AlertKind::from_name(&e.alert.kind);
        let severity = match e.alert.severity.as_str() {
            "high" => portcullis_detect::Severity::High,
            "medium" => portcullis_detect::Severity::Medium,
            _ => portcullis_detect::Severity::Low,
        };
        self.config.min_severity.is_none_or(|m| severity >= m)
            && (self.config.kinds.is_empty() || kind.is_some_and(|k| self.config.kinds.contains(&k)))
    }
}

/// `https://` anywhere; `http://` only to a loopback address, since the body names
/// users and addresses.
fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or("").trim_matches(['[', ']']);
            let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback());
            if loopback { Ok(()) } else { Err("url: http:// only to a loopback address; use https://".into()) }
        }
        _ => Err("url: https:// (or http:// to loopback)".into()),
    }
}

/// A sink's position in the outbox, kept in `<state_dir>/<name>.cursor`.
struct Cursor {
    path: PathBuf,
    seq: i64,
}

impl Cursor {
    fn open(dir: &Path, name: &str, store: &dyn Store) -> Result<Self, ExportError> {
        let path = dir.join(format!("{name}.cursor"));
        let io = |source| ExportError::State { path: path.display().to_string(), source };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let seq = text.trim().parse::<i64>().map_err(|_| {
                    io(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a number: remove it to start over"))
                })?;
                Ok(Self { path, seq })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut c = Self { seq: store.last_alert_event()?, path: path.clone() };
                c.save(c.seq).map_err(io)?;
                Ok(c)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Writes the position durably (a new file renamed over the old one).
    fn save(&mut self, seq: i64) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = self.path.with_extension("cursor.new");
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{seq}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        self.seq = seq;
        Ok(())
    }
}

/// Back-off between attempts: 1 s, doubling to 60 s, back to 1 s after a success.
#[derive(Debug)]
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(60);

    fn next(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        now
    }

    fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

/// Alert changes read from the outbox at once.
const BATCH: usize = 500;
/// A syslog write counts as taken once the connection is still open this long after
/// it; a receiver that goes away sooner gets the events again (same ids).
const CONFIRM: Duration = Duration::from_secs(1);
/// How often an idle sink looks for new alert changes.
const POLL: Duration = Duration::from_millis(200);

struct Worker {
    prepared: Prepared,
    context: Context,
    sink: Arc<Sink>,
    store: Box<dyn Store>,
    cursor: Cursor,
    auth: Option<Receiver<AuthEvent>>,
    stop: Arc<AtomicBool>,
}

/// One message ready to send.
struct Message {
    /// The outbox position of an alert change (0 for an authentication decision).
    seq: i64,
    id: String,
    kind: String,
    time_ms: i64,
    body: Vec<u8>,
}

impl Worker {
    fn run(mut self) {
        let mut backoff = Backoff(Backoff::FIRST);
        // Written after the cursor but not yet confirmed: (last seq of a write, when).
        let mut inflight: VecDeque<(i64, Instant)> = VecDeque::new();
        let mut written = self.cursor.seq;
        let mut conn: Option<transport::Connection> = None;
        let mut down_since_logged = false;
        while !self.stop.load(Ordering::Relaxed) {
            if conn.as_mut().is_some_and(|c| !c.alive()) {
                conn = None;
                self.lost(&mut written, &mut inflight, "the receiver closed the connection");
            }
            let now = Instant::now();
            let mut confirmed = None;
            while inflight.front().is_some_and(|(_, at)| now.duration_since(*at) >= CONFIRM) {
                confirmed = inflight.pop_front().map(|(seq, _)| seq);
            }
            if let Some(seq) = confirmed {
                self.advance(seq);
            }
            self.refresh_lag();
            if let (Target::Syslog { address, tls }, None) = (&self.prepared.target, &conn) {
                match transport::Connection::open(address, tls.as_ref()) {
                    Ok(c) => {
                        conn = Some(c);
                        self.sink.counters.up.store(true, Ordering::Relaxed);
                        if down_since_logged {
                            tracing::info!(sink = %self.sink.name, "export receiver reachable again");
                        }
                        down_since_logged = false;
                    }
                    Err(e) => {
                        self.sink.counters.up.store(false, Ordering::Relaxed);
                        if !down_since_logged {
                            tracing::warn!(sink = %self.sink.name, error = %e, "export receiver unreachable; retrying with back-off");
                            down_since_logged = true;
                        }
                        self.drain_auth_as_dropped();
                        self.sleep(backoff.next());
                        continue;
                    }
                }
            }
            let batch = match self.store.alert_events(written, BATCH) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(sink = %self.sink.name, error = %e, "cannot read the alert outbox");
                    self.sleep(backoff.next());
                    continue;
                }
            };
            let Some(batch_last) = batch.last().map(|e| e.seq) else {
                self.send_auth(&mut conn, &mut backoff);
                continue;
            };
            let messages: Vec<Message> =
                batch.iter().filter(|e| self.prepared.wants(e)).map(|e| self.alert_message(e)).collect();
            let count = messages.len() as u64;
            let outcome = match &mut conn {
                Some(c) => self.send_syslog(c, &messages).map_err(|e| e.to_string()),
                None => self.send_webhooks(&messages, &mut written),
            };
            match outcome {
                Ok(()) => {
                    backoff.reset();
                    written = batch_last;
                    if conn.is_some() {
                        self.sink.counters.sent.fetch_add(count, Ordering::Relaxed);
                        inflight.push_back((batch_last, Instant::now()));
                    } else {
                        self.advance(batch_last);
                    }
                    self.sink.counters.up.store(true, Ordering::Relaxed);
                }
                Err(e) => {
                    if !down_since_logged {
                        tracing::warn!(sink = %self.sink.name, error = %e, "export delivery failed; retrying with back-off");
                        down_since_logged = true;
                    }
                    self.sink.counters.up.store(false, Ordering::Relaxed);
                    if conn.is_none() {
                        // A webhook: the message that failed goes again.
                        self.sink.counters.retried.fetch_add(1, Ordering::Relaxed);
                    }
                    conn = None;
                    self.lost(&mut written, &mut inflight, "");
                    self.sleep(backoff.next());
                }
            }
        }
        // Stopping: what a live connection took in the last second counts as taken.
        if let (Some(c), Some(&(seq, _))) = (&mut conn, inflight.back()) {
            if c.alive() {
                self.advance(seq);
            }
        }
    }

    /// The connection is gone: everything after the cursor goes again.
    fn lost(&self, written: &mut i64, inflight: &mut VecDeque<(i64, Instant)>, why: &str) {
        let again = u64::try_from(*written - self.cursor.seq).unwrap_or(0);
        if again > 0 {
            self.sink.counters.retried.fetch_add(again, Ordering::Relaxed);
        }
        if !why.is_empty() {
            tracing::warn!(sink = %self.sink.name, again, "{why}; resending what it may not have taken");
        }
        self.sink.counters.up.store(false, Ordering::Relaxed);
        *written = self.cursor.seq;
        inflight.clear();
    }

    fn advance(&mut self, seq: i64) {
        if seq <= self.cursor.seq {
            return;
        }
        if let Err(e) = self.cursor.save(seq) {
            // The position stays in memory; a restart resends from the saved one.
            tracing::warn!(sink = %self.sink.name, error = %e, "cannot save the export cursor");
            self.cursor.seq = seq;
        }
        self.refresh_lag();
    }

    /// Publishes how many alert changes the sink has not yet delivered.
    fn refresh_lag(&self) {
        let last = self.store.last_alert_event().unwrap_or(self.cursor.seq);
        self.sink.counters.lag.store(u64::try_from(last - self.cursor.seq).unwrap_or(0), Ordering::Relaxed);
    }

    /// Waits, keeping the published lag current: a sink in a long back-off still
    /// shows what it owes.
    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut refreshed = Instant::now();
        while !self.stop.load(Ordering::Relaxed) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
            if refreshed.elapsed() >= POLL {
                self.refresh_lag();
                refreshed = Instant::now();
            }
        }
    }

    fn syslog_frame(
        &self,
        severity: u8,
        msgid: &str,
        time_ms: i64,
        body: impl FnOnce(usize) -> (String, bool),
    ) -> Vec<u8> {
        let header = syslog::header(
            self.prepared.config.framing,
            &syslog::Header {
                facility: self.prepared.facility,
                severity,
                time_ms,
                hostname: &self.context.hostname,
                app: "portcullis",
                procid: std::process::id(),
                msgid,
            },
        );
        let budget = self.prepared.config.max_frame_bytes.saturating_sub(header.len());
        let (text, truncated) = body(budget);
        if truncated {
            self.sink.counters.truncated.fetch_add(1, Ordering::Relaxed);
        }
        let mut out = Vec::with_capacity(header.len() + text.len() + 8);
        syslog::octet_counted(&(header + &text), &mut out);
        out
    }

    fn alert_message(&self, e: &AlertEvent) -> Message {
        let version = &self.context.version;
        let url = self.context.portal_url.as_deref();
        let id = cef::alert_event_id(e.seq);
        let kind = format!("alert.{}", e.trigger);
        let body = match (&self.prepared.target, self.prepared.format) {
            (Target::Syslog { .. }, Format::Cef) => {
                self.syslog_frame(syslog::alert_severity(&e.alert.severity), &e.alert.kind, e.time_ms, |budget| {
                    let c = cef::alert(e, version, url, budget);
                    (c.text, c.truncated)
                })
            }
            (Target::Syslog { .. }, _) => {
                self.syslog_frame(syslog::alert_severity(&e.alert.severity), &e.alert.kind, e.time_ms, |budget| {
                    fit_json(ocsf::detection_finding(e, version, url).to_string(), budget)
                })
            }
            (Target::Webhook { .. }, Format::Ocsf) => {
                webhook::body(&kind, e.time_ms, ocsf::detection_finding(e, version, url))
            }
            (Target::Webhook { .. }, _) => {
                let mut data = serde_json::to_value(e).unwrap_or_default();
                data["id"] = serde_json::json!(id);
                if let Some(base) = url {
                    data["url"] = serde_json::json!(format!("{base}/alerts/{}", e.alert.id));
                }
                webhook::body(&kind, e.time_ms, data)
            }
        };
        Message { seq: e.seq, id, kind, time_ms: e.time_ms, body }
    }

    fn auth_message(&self, e: &AuthEvent) -> Message {
        let version = &self.context.version;
        let id = cef::auth_event_id(e);
        let kind = format!("auth.{}", e.decision);
        let severity = if e.decision == "reject" { 5 } else { 6 };
        let body = match (&self.prepared.target, self.prepared.format) {
            (Target::Syslog { .. }, Format::Cef) => self.syslog_frame(severity, "auth", e.time_ms, |budget| {
                let c = cef::auth(e, version, budget);
                (c.text, c.truncated)
            }),
            (Target::Syslog { .. }, _) => self.syslog_frame(severity, "auth", e.time_ms, |budget| {
                fit_json(ocsf::authentication(e, version).to_string(), budget)
            }),
            (Target::Webhook { .. }, Format::Ocsf) => webhook::body(&kind, e.time_ms, ocsf::authentication(e, version)),
            (Target::Webhook { .. }, _) => {
                let mut data = serde_json::to_value(e).unwrap_or_default();
                data["id"] = serde_json::json!(id);
                webhook::body(&kind, e.time_ms, data)
            }
        };
        Message { seq: 0, id, kind, time_ms: e.time_ms, body }
    }

    fn send_syslog(&self, conn: &mut transport::Connection, messages: &[Message]) -> std::io::Result<()> {
        let bytes: Vec<u8> = messages.iter().flat_map(|m| m.body.iter().copied()).collect();
        if bytes.is_empty() { Ok(()) } else { conn.send(&bytes) }
    }

    /// Posts each message until one fails; the cursor follows each 2xx.
    fn send_webhooks(&mut self, messages: &[Message], written: &mut i64) -> Result<(), String> {
        for m in messages {
            self.post(m)?;
            *written = m.seq;
            self.advance(m.seq);
            self.sink.counters.sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn post(&self, m: &Message) -> Result<(), String> {
        let Target::Webhook { url, key, client } = &self.prepared.target else { return Ok(()) };
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &m.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", key.sign(&m.id, timestamp, &m.body))
            .body(m.body.clone())
            .send()
            // reqwest's errors name the URL, which may carry a token: say what failed only.
            .map_err(|e| {
                if e.is_timeout() {
                    "the receiver did not answer in time".into()
                } else {
                    "cannot reach the receiver".to_string()
                }
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {} to {} {}", status.as_u16(), m.kind, m.time_ms))
        }
    }

    /// With no alert change waiting: sends the queued authentication decisions (best
    /// effort: a failure drops them), or waits for one.
    fn send_auth(&mut self, conn: &mut Option<transport::Connection>, backoff: &mut Backoff) {
        let Some(rx) = &self.auth else {
            self.sleep(POLL);
            return;
        };
        let Ok(first) = rx.recv_timeout(POLL) else { return };
        let mut events = vec![first];
        while events.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => events.push(e),
                Err(_) => break,
            }
        }
        let messages: Vec<Message> = events.iter().map(|e| self.auth_message(e)).collect();
        let n = messages.len() as u64;
        let outcome = match conn {
            Some(c) => self.send_syslog(c, &messages).map_err(|e| e.to_string()),
            None => messages.iter().try_for_each(|m| self.post(m)),
        };
        match outcome {
            Ok(()) => {
                self.sink.counters.sent.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(sink = %self.sink.name, error = %e, dropped = n, "authentication events not delivered");
                self.sink.counters.dropped.fetch_add(n, Ordering::Relaxed);
                *conn = None;
                self.sleep(backoff.next());
            }
        }
    }

    /// While the receiver is down, queued authentication decisions are dropped (and
    /// counted) rather than kept, so the queue holds only fresh ones.
    fn drain_auth_as_dropped(&self) {
        let Some(rx) = &self.auth else { return };
        let mut n = 0u64;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        self.sink.counters.dropped.fetch_add(n, Ordering::Relaxed);
    }
}

/// A JSON text that does not fit the budget cannot be cut and stay JSON: it is
/// replaced by a stub naming its id, and counted as truncated.
fn fit_json(text: String, budget: usize) -> (String, bool) {
    if text.len() <= budget {
        return (text, false);
    }
    let uid = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["metadata"]["uid"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let stub = serde_json::json!({ "truncated": true, "metadata": { "uid": uid } }).to_string();
    (if stub.len() <= budget { stub } else { String::new() }, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_and_resets() {
        let mut b = Backoff(Backoff::FIRST);
        let seen: Vec<u64> = (0..8).map(|_| b.next().as_secs()).collect();
        assert_eq!(seen, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        b.reset();
        assert_eq!(b.next().as_secs(), 1);
    }

    #[test]
    fn webhook_urls_are_https_or_loopback() {
        assert!(check_url("https://hooks.example/x").is_ok());
        assert!(check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(check_url("http://[::1]:8080/x").is_ok());
        assert!(check_url("http://hooks.example/x").is_err());
        assert!(check_url("ftp://127.0.0.1/").is_err());
    }

    #[test]
    fn oversized_json_becomes_a_stub_with_its_id() {
        let (text, cut) =
            fit_json(serde_json::json!({"metadata":{"uid":"alert-9"},"x":"y".repeat(900)}).to_string(), 200);
        assert!(cut);
        assert_eq!(text, r#"{"metadata":{"uid":"alert-9"},"truncated":true}"#);
    }
}
