//! The I/O shell around the sans-IO cores: configuration, the RADIUS client table,
//! UDP listeners, ingestion counters and the storage writer.
//!
//! It owns sockets, threads, files and clocks; decisions about packets are made by
//! `portcullis-radius` and `portcullis-accounting`, and data is kept by
//! `portcullis-storage`.

pub mod acct;
pub mod applier;
pub mod audit;
pub mod auth;
/// The second-factor service and enrolment (also used by the CLI).
pub use auth::factor as mfa;
pub mod clients;
pub mod config;
pub mod detection;
pub mod directory;
pub mod disk;
pub mod http;
pub mod ldap;
pub mod logtext;
pub mod npslog;
pub mod ntlm;
pub mod privacyidea;
pub mod replay;
pub mod user_cache;
pub mod zone;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_radius::dedup::DuplicateCache;
use portcullis_storage::{GroupCommitter, Journal, JournalReader, JournalSync, SqliteStore, StorageError, SyncMode};

use crate::clients::ClientTable;
use crate::config::{Config, SyncSetting};

/// Locks a mutex, carrying on with the data if a panicking thread poisoned it (every
/// value behind these mutexes stays consistent between statements).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wall-clock time in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Wall-clock time in Unix seconds.
pub(crate) fn now_unix() -> i64 {
    now_ms() / 1000
}

/// Lower-case hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Opens the configured store for writing.
pub fn open_store(config: &Config) -> Result<SqliteStore, StorageError> {
    SqliteStore::open_with_mode(&config.storage.data_dir, SyncMode::Normal, config.storage.file_mode())
}

/// The journal directory inside the data directory.
pub fn journal_dir(config: &Config) -> std::path::PathBuf {
    config.storage.data_dir.join("journal")
}

/// Opens the journal for appending.
pub fn open_journal(config: &Config) -> Result<Journal, StorageError> {
    let sync = match config.storage.sync {
        SyncSetting::Normal => JournalSync::Process,
        SyncSetting::Fsync => JournalSync::Fsync,
    };
    Journal::open_with_mode(&journal_dir(config), sync, config.storage.file_mode())
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    shared: Arc<acct::Shared>,
    writer: GroupCommitter,
    applier: std::thread::JoinHandle<()>,
    applier_tx: std::sync::mpsc::SyncSender<applier::ApplierMessage>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    audit: Option<audit::AuditWriter>,
    /// The bound accounting addresses (useful when port 0 was configured).
    pub acct_addrs: Vec<SocketAddr>,
}

/// A start-up failure.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

fn spawn_auth(
    socket: std::net::UdpSocket,
    shared: Arc<auth::AuthShared>,
    local: SocketAddr,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = auth::serve(socket, shared).await {
            tracing::error!(%local, error = %e, "authentication listener stopped");
        }
    })
}

impl Server {
    /// Opens storage, binds every listener and starts serving. Must run inside a
    /// tokio runtime.
    pub fn start(config: &Config) -> Result<Self, StartError> {
        let store = open_store(config)?;
        let journal = open_journal(config)?;
        let (applier_tx, applier_rx) = std::sync::mpsc::sync_channel(1024);
        let dir = journal_dir(config);
        let retention = applier::Retention::from_config(&config.storage);
        let geo = config.geo.open().map_err(|e| StartError::Config(e.to_string()))?;
        for db in geo.info() {
            tracing::info!(path = %db.path, database_type = %db.database_type, build_epoch = db.build_epoch, "geolocation database loaded");
        }
        let detection = detection::Detection::new(geo, config.detect.clone());
        let applier = std::thread::Builder::new()
            .name("applier".into())
            .spawn(move || {
                let reader = JournalReader::new(&dir);
                applier::run_applier(store, &reader, &dir, &applier_rx, retention, detection);
            })
            .map_err(|source| StartError::Bind { addr: SocketAddr::from(([0, 0, 0, 0], 0)), source })?;
        let wake = applier_tx.clone();
        let (writer, submitter) = GroupCommitter::spawn(
            journal,
            config.storage.queue_capacity,
            config.storage.max_batch,
            move |start, end, packets| {
                // If the applier is behind and its inbox is full, it reads the gap from the journal.
                let _ = wake.try_send(applier::ApplierMessage::Appended { start, end, packets });
            },
        );
        let clients = Arc::new(ClientTable::from_config(config));
        let auth_tx = applier_tx.clone();
        let shared = Arc::new(acct::Shared {
            clients: Arc::clone(&clients),
            cache: Mutex::new(DuplicateCache::new(
                Duration::from_secs(config.radius.duplicate_retention_seconds),
                config.radius.duplicate_cache_entries,
            )),
            submitter,
        });
        let mut tasks = Vec::new();
        let mut acct_addrs = Vec::new();
        let mut audit_writer = None;
        for &addr in &config.radius.acct_listen {
            let socket = acct::bind(addr, config.radius.receive_buffer_bytes)
                .map_err(|source| StartError::Bind { addr, source })?;
            let local = socket.local_addr().map_err(|source| StartError::Bind { addr, source })?;
            acct_addrs.push(local);
            let shared = Arc::clone(&shared);
            tasks.push(tokio::spawn(async move {
                if let Err(e) = acct::serve(socket, shared).await {
                    tracing::error!(%local, error = %e, "accounting listener stopped");
                }
            }));
            tracing::info!(%local, "accounting listener ready");
        }
        if !config.radius.auth_listen.is_empty() {
            let audit_path = config.storage.data_dir.join("auth.log");
            let audit_file = config
                .storage
                .file_mode()
                .open_append(&audit_path)
                .map_err(|source| StorageError::DataDir { path: audit_path.display().to_string(), source })?;
            let (audit, writer) = audit::AuditLog::spawn(audit_file, audit::QUEUE_LINES)
                .map_err(|source| StorageError::DataDir { path: audit_path.display().to_string(), source })?;
            audit_writer = Some(writer);
            let mut dictionary = portcullis_radius::Dictionary::builtin();
            for f in &config.dictionary.files {
                if let Err(e) = dictionary.load_file(f) {
                    tracing::warn!(error = %e, "dictionary file not loaded");
                }
            }
            let peap = config.eap.peap().map_err(StartError::Config)?;
            let router = directory::Router::from_config(config).map_err(StartError::Config)?;
            let mfa = match &config.mfa {
                Some(c) => Some(mfa::Mfa::open(c, &config.storage.data_dir).map_err(StartError::Config)?),
                None => None,
            };
            let nps_log = match &config.nps_log {
                Some(c) => Some(Mutex::new(
                    npslog::NpsLog::open(c, &config.storage.data_dir, config.storage.file_mode())
                        .map_err(|e| StartError::Config(format!("nps_log: {e}")))?,
                )),
                None => None,
            };
            // Answers after a push are re-sent to retransmits for at least 10 s.
            let mut retention = config.radius.duplicate_retention_seconds;
            if config.mfa.as_ref().is_some_and(|m| m.push.is_some()) {
                retention = retention.max(10);
            }
            let auth_shared = Arc::new(auth::AuthShared {
                clients: Arc::clone(&clients),
                cache: Mutex::new(DuplicateCache::new(
                    Duration::from_secs(retention),
                    config.radius.duplicate_cache_entries,
                )),
                eap: Mutex::new(auth::EapTable::default()),
                peap,
                eap_default: config.eap.default_method(),
                credentials: Mutex::new(portcullis_auth::CredentialCache::new(
                    auth::random_key(),
                    Duration::from_secs(config.auth.credential_cache_seconds),
                    if config.auth.credential_cache_seconds == 0 { 0 } else { 100_000 },
                )),
                policies: config.network_policies.clone(),
                zone: config.auth.zone().unwrap_or_default(),
                router,
                dictionary,
                audit,
                nps_log,
                mfa,
                applier: auth_tx,
                pending: std::sync::atomic::AtomicUsize::new(0),
            });
            for &addr in &config.radius.auth_listen {
                let socket = acct::bind(addr, config.radius.receive_buffer_bytes)
                    .map_err(|source| StartError::Bind { addr, source })?;
                let local = socket.local_addr().map_err(|source| StartError::Bind { addr, source })?;
                // Several tasks receive from the same socket (duplicated descriptors), so
                // every runtime worker can decide requests; they share the duplicate and
                // credential caches, and each answers on the socket the request came in on.
                for _ in 1..auth::RECEIVERS_PER_SOCKET {
                    let socket = socket.try_clone().map_err(|source| StartError::Bind { addr, source })?;
                    tasks.push(spawn_auth(socket, Arc::clone(&auth_shared), local));
                }
                tasks.push(spawn_auth(socket, Arc::clone(&auth_shared), local));
                tracing::info!(%local, "authentication listener ready");
            }
            let limits = http::Limits::from_config(&config.http).map_err(StartError::Config)?;
            if !config.http.listen.is_empty() {
                let pools = config.ldap.iter().map(|l| l.pool_size).sum();
                http::check_descriptors(&limits, config.http.listen.len(), pools, http::raise_descriptor_limit())
                    .map_err(StartError::Config)?;
            }
            let connections = http::Connections::new(limits);
            for &addr in &config.http.listen {
                let listener = std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .and_then(tokio::net::TcpListener::from_std)
                    .map_err(|source| StartError::Bind { addr, source })?;
                let local = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
                let app = auth::push::router(Arc::clone(&auth_shared));
                tasks.push(tokio::spawn(http::serve(listener, app, Arc::clone(&connections))));
                tracing::info!(%local, "HTTP listener ready");
            }
        }
        // Counters reach storage every two seconds, so `portcullis stats` sees them.
        let counters = Arc::clone(&shared);
        let counters_tx = applier_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                let _ = counters_tx.try_send(applier::ApplierMessage::Counters(counters.clients.snapshot()));
            }
        }));
        Ok(Self { shared, writer, applier, applier_tx, tasks, audit: audit_writer, acct_addrs })
    }

    /// The client table with its live counters.
    pub fn clients(&self) -> &ClientTable {
        &self.shared.clients
    }

    /// Stops listening, lets the writer finish every queued request (answering them),
    /// and saves the counters.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = self.applier_tx.send(applier::ApplierMessage::Counters(self.shared.clients.snapshot()));
        let writer = self.writer;
        let applier = self.applier;
        let audit = self.audit;
        // The listener tasks held the last other references; once `shared` is gone the
        // queue closes, the writer drains it, and then the applier catches up and stops.
        drop(self.shared);
        drop(self.applier_tx);
        let _ = tokio::task::spawn_blocking(move || {
            let _ = writer.join();
            if let Some(audit) = audit {
                audit.finish();
            }
            let _ = applier.join();
        })
        .await;
    }
}
