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
pub mod backup;
pub mod certs;
/// The second-factor service and enrolment (also used by the CLI).
pub use auth::factor as mfa;
pub mod client_watch;
pub mod clients;
pub mod coa;
pub mod config;
pub mod detection;
pub mod directory;
pub mod disk;
pub mod http;
pub mod ldap;
pub mod live;
pub mod logtext;
pub mod metrics;
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
use portcullis_storage::{
    GroupCommitter, Journal, JournalReader, JournalSync, SqliteStore, StorageError, Store, SyncMode,
};

use crate::clients::ClientTable;
use crate::config::{Config, SyncSetting};
use crate::live::Live;

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

/// This machine's host name (`portcullis` when it has none).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "portcullis".into())
}

/// Opens the embedded store in the data directory for writing (what the maintenance
/// commands work on).
pub fn open_store(config: &Config) -> Result<SqliteStore, StorageError> {
    SqliteStore::open_with_mode(&config.storage.data_dir, SyncMode::Normal, config.storage.file_mode())
}

/// The configured store behind the [`Store`] trait, for writing; PostgreSQL's
/// migrations are applied here, under their lock.
pub fn open_configured_store(config: &Config) -> Result<Box<dyn Store>, StorageError> {
    match config.storage.backend {
        config::Backend::Sqlite => Ok(Box::new(open_store(config)?)),
        config::Backend::Postgres => Ok(Box::new(open_postgres(config)?)),
    }
}

fn postgres_settings(
    config: &Config,
) -> (portcullis_storage_postgres::DatabaseUrl, portcullis_storage_postgres::TlsOptions) {
    let url = config.storage.url.as_ref().map(|u| u.expose()).unwrap_or_default();
    let tls = portcullis_storage_postgres::TlsOptions { ca_file: config.storage.ca_file.clone() };
    (portcullis_storage_postgres::DatabaseUrl::new(url), tls)
}

fn open_postgres(config: &Config) -> Result<portcullis_storage_postgres::PgStore, StorageError> {
    let (url, tls) = postgres_settings(config);
    let node = config.storage.node();
    let store = portcullis_storage_postgres::PgStore::open(&url, &tls, &node)?;
    tracing::info!(database = %url, node = %node, "storage: PostgreSQL");
    Ok(store)
}

/// The configured store for reading (the reporting commands): the embedded database
/// read-only, or a connection to the shared one.
pub fn open_reader(config: &Config) -> Result<Box<dyn Store>, StorageError> {
    match config.storage.backend {
        config::Backend::Sqlite => Ok(Box::new(SqliteStore::open_read_only(&config.storage.data_dir)?)),
        config::Backend::Postgres => Ok(Box::new(open_postgres_migrated(config)?)),
    }
}

/// A connection to a shared database that is already at this build's schema; it
/// never migrates.
fn open_postgres_migrated(config: &Config) -> Result<portcullis_storage_postgres::PgStore, StorageError> {
    let (url, tls) = postgres_settings(config);
    portcullis_storage_postgres::PgStore::open_reader(&url, &tls, &config.storage.node())
}

/// Refuses `what` when the store is shared: commands that rewrite the embedded
/// database would otherwise act on a store no node reads, or on other nodes' data.
pub fn require_embedded(config: &Config, what: &str) -> Result<(), StorageError> {
    match config.storage.backend {
        config::Backend::Sqlite => Ok(()),
        config::Backend::Postgres => Err(StorageError::Invalid(format!(
            "{what} works on the embedded store; with storage.backend = \"postgres\" it is not available yet"
        ))),
    }
}

/// The server's own store: [`open_configured_store`], holding the node's claim on a
/// shared database.
fn open_node_store(config: &Config) -> Result<Box<dyn Store>, StorageError> {
    match config.storage.backend {
        config::Backend::Sqlite => Ok(Box::new(open_store(config)?)),
        config::Backend::Postgres => {
            let mut store = open_postgres(config)?;
            store.claim_node()?;
            Ok(Box::new(store))
        }
    }
}

/// Another connection to the configured store, opened after [`open_configured_store`]
/// (which created or upgraded the schema): the portal's, each export sink's, the
/// metrics'.
pub fn open_another_store(config: &Config) -> Result<Box<dyn Store>, StorageError> {
    match config.storage.backend {
        config::Backend::Sqlite => Ok(Box::new(SqliteStore::open_another(&config.storage.data_dir)?)),
        config::Backend::Postgres => Ok(Box::new(open_postgres_migrated(config)?)),
    }
}

/// An exclusive hold on a data directory, released when dropped (or when the process
/// dies): one server, or one `portcullis rebuild`, uses a data directory at a time.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

/// The administration of RADIUS clients the portal changes them through; a reload
/// gives it the configuration file's clients again.
type PortalClients = Arc<portcullis_storage::RuntimeClients<portcullis_storage::SqliteClients>>;

/// The portal, with a store connection of its own (so its reads never wait on the
/// applier's connection) and the portal database.
fn portal(config: &Config) -> Result<(portcullis_web::Portal, PortalClients), StartError> {
    // The applier's connection opened and upgraded the database already.
    let store = open_another_store(config).map_err(StartError::Storage)?;
    let accounts = portcullis_storage::PortalDb::open(&config.storage.data_dir).map_err(StartError::Storage)?;
    if accounts.accounts().map_err(StartError::Storage)?.is_empty() {
        tracing::warn!(
            "the portal has no account yet: add one with `portcullis admin add NAME --role admin --password-stdin`"
        );
    }
    let client_store = portcullis_storage::SqliteClients::open(&config.storage.data_dir)?;
    let clients = Arc::new(portcullis_storage::RuntimeClients::new(client_store, config.client_settings()));
    let view = PortalView {
        configured: config.client_list().map(|c| (c.name.clone(), c.address.to_string())).collect(),
        clients: Arc::clone(&clients),
    };
    let options = portcullis_web::Options { tls: config.http.tls };
    Ok((portcullis_web::Portal::new(store, accounts, Arc::new(view), options), clients))
}

/// The `[http]` listener's TLS: the configured certificate, or the self-signed one of
/// `<data_dir>/http-tls/` (made on first start). Its fingerprint is logged, so an
/// administrator can compare it with the one the browser shows.
fn http_tls(config: &Config) -> Result<tokio_rustls::TlsAcceptor, StartError> {
    let made = certs::ensure_http_certificate(config).map_err(StartError::Config)?;
    let (cert, key) = certs::http_files(config);
    let tls = certs::http_tls_config(&cert, &key).map_err(StartError::Config)?;
    let pem = std::fs::read(&cert).map_err(|e| StartError::Config(format!("cannot read {}: {e}", cert.display())))?;
    let summary = certs::summarize(&pem).map_err(|e| StartError::Config(format!("{}: {e}", cert.display())))?;
    let expires = summary.not_after.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let what = match made {
        certs::HttpCertificate::Configured => "configured",
        certs::HttpCertificate::Reused => "self-signed",
        certs::HttpCertificate::Made => "self-signed, made now",
        certs::HttpCertificate::Renewed { previous } => {
            tracing::warn!(
                certificate = %cert.display(),
                previous = %previous,
                sha256 = %summary.fingerprint(),
                "the self-signed HTTPS certificate was renewed (expiring, or a listen address or public host \
                 changed) with the same key: browsers show a new fingerprint"
            );
            "self-signed, renewed now"
        }
    };
    tracing::info!(
        certificate = %cert.display(),
        sha256 = %summary.fingerprint(),
        %expires,
        "HTTPS certificate ({what}); compare its SHA-256 fingerprint with the one the browser shows"
    );
    if summary.not_after <= time::OffsetDateTime::now_utc() {
        tracing::warn!(certificate = %cert.display(), %expires, "the HTTPS certificate has expired");
    }
    Ok(tokio_rustls::TlsAcceptor::from(tls))
}

/// The export sinks, each with a store connection of its own and its cursor in
/// `<data_dir>/export`.
fn start_export(config: &Config) -> Result<portcullis_export::Exporter, StartError> {
    let context = portcullis_export::Context {
        hostname: hostname(),
        version: env!("CARGO_PKG_VERSION").into(),
        portal_url: if config.portal.enabled { config.http.base_url() } else { None },
        state_dir: config.storage.data_dir.join("export"),
    };
    let store_config = config.clone();
    let open = move || open_another_store(&store_config);
    portcullis_export::Exporter::start(&config.exports, &context, &open).map_err(|e| StartError::Config(e.to_string()))
}

/// `/metrics`, with a store connection of its own.
fn metrics_source(
    config: &Config,
    clients: Arc<Live<ClientTable>>,
    export: Option<Arc<portcullis_export::Exporter>>,
) -> Result<metrics::Metrics, StartError> {
    let token = config
        .metrics
        .token_file
        .as_deref()
        .map(metrics::Metrics::read_token)
        .transpose()
        .map_err(StartError::Config)?;
    let store = open_another_store(config)?;
    Ok(metrics::Metrics::new(clients, export, store, JournalReader::new(&journal_dir(config)), token))
}

/// What the portal asks the server: the configured RADIUS clients (status page) and
/// the administration of stored ones (settings).
struct PortalView {
    configured: Vec<(String, String)>,
    clients: PortalClients,
}

impl portcullis_web::ServerView for PortalView {
    fn clients(&self) -> Vec<(String, String)> {
        self.configured.clone()
    }
    fn journal_backlog_bytes(&self) -> Option<u64> {
        None
    }
    fn client_admin(&self) -> Option<Arc<dyn portcullis_storage::ClientAdmin>> {
        Some(Arc::clone(&self.clients) as Arc<dyn portcullis_storage::ClientAdmin>)
    }
}

/// Takes the data directory's lock (`portcullis.lock`) without waiting; `purpose`
/// says in the error what refused to run.
pub fn lock_data_dir(dir: &std::path::Path, purpose: &str) -> Result<DataDirLock, StorageError> {
    let path = dir.join("portcullis.lock");
    let io = |source| StorageError::DataDir { path: path.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(StorageError::Invalid(format!(
            "cannot {purpose}: a running server holds {} (the data directory is in use); stop it first",
            path.display()
        ))),
        Err(e) => Err(io(e.into())),
    }
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
    lock: DataDirLock,
    /// The authentication snapshot, when authentication is on.
    auth: Option<Arc<auth::LiveAuth>>,
    /// The configuration the server started with: what a reload cannot change is
    /// compared against it.
    started: Config,
    /// The detection parameters in force (as printed), to notice a change.
    detect: Mutex<String>,
    /// Held while the client table is rebuilt and swapped (reload, stored clients).
    client_swap: Arc<Mutex<()>>,
    watch: client_watch::ClientWatch,
    /// The portal's client administration, whose file clients a reload replaces.
    portal_clients: Option<PortalClients>,
    /// The bound accounting addresses (useful when port 0 was configured).
    pub acct_addrs: Vec<SocketAddr>,
    /// The export sinks, when any are configured.
    export: Option<Arc<portcullis_export::Exporter>>,
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
    shared: Arc<auth::LiveAuth>,
    local: SocketAddr,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = auth::serve(socket, shared).await {
            tracing::error!(%local, error = %e, "authentication listener stopped");
        }
    })
}

/// What every authentication snapshot shares: conversations, answers to retransmits,
/// the audit log and the count of pending work outlive a reload.
struct AuthState {
    cache: Arc<Mutex<DuplicateCache>>,
    eap: Arc<Mutex<auth::EapTable>>,
    audit: Arc<audit::AuditLog>,
    applier: applier::AuthEventSender,
    pending: Arc<std::sync::atomic::AtomicUsize>,
    geo: Arc<Mutex<portcullis_geo::GeoDb>>,
}

impl AuthState {
    fn of(shared: &auth::AuthShared) -> Self {
        Self {
            cache: Arc::clone(&shared.cache),
            eap: Arc::clone(&shared.eap),
            audit: Arc::clone(&shared.audit),
            applier: shared.applier.clone(),
            pending: Arc::clone(&shared.pending),
            geo: shared
                .mfa
                .as_ref()
                .map_or_else(|| Arc::new(Mutex::new(portcullis_geo::GeoDb::empty())), |m| Arc::clone(&m.geo)),
        }
    }
}

/// The authentication snapshot of a configuration. The MFA database and key are those
/// of `mfa_before` when there is one (changing them needs a restart). The credential
/// cache starts empty: a changed store or policy must not be bypassed by a cached
/// password.
fn auth_shared(
    config: &Config,
    clients: Arc<Live<ClientTable>>,
    state: AuthState,
    mfa_before: Option<&mfa::Mfa>,
) -> Result<auth::AuthShared, StartError> {
    let mut dictionary = portcullis_radius::Dictionary::builtin();
    for f in &config.dictionary.files {
        if let Err(e) = dictionary.load_file(f) {
            tracing::warn!(error = %e, "dictionary file not loaded");
        }
    }
    let peap = config.eap.peap().map_err(StartError::Config)?;
    let router = directory::Router::from_config(config).map_err(StartError::Config)?;
    let mfa = match (&config.mfa, mfa_before) {
        (Some(c), Some(before)) => Some(before.with_config(c)),
        (Some(c), None) => {
            let mut m = mfa::Mfa::open(c, &config.storage.data_dir).map_err(StartError::Config)?;
            m.geo = Arc::clone(&state.geo);
            Some(m)
        }
        (None, _) => None,
    };
    let nps_log = match &config.nps_log {
        Some(c) => Some(Mutex::new(
            npslog::NpsLog::open(c, &config.storage.data_dir, config.storage.file_mode())
                .map_err(|e| StartError::Config(format!("nps_log: {e}")))?,
        )),
        None => None,
    };
    Ok(auth::AuthShared {
        clients,
        cache: state.cache,
        eap: state.eap,
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
        audit: state.audit,
        nps_log,
        mfa,
        applier: state.applier,
        pending: state.pending,
    })
}

/// Settings that differ between the running and the reloaded configuration but take
/// effect only after a restart, one sentence each.
fn restart_only(running: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut differs = |key: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{key} changed; it requires a restart (the running value is kept)"));
        }
    };
    let (r, n) = (&running.radius, &new.radius);
    differs("radius.acct_listen", format!("{:?}", r.acct_listen), format!("{:?}", n.acct_listen));
    differs("radius.auth_listen", format!("{:?}", r.auth_listen), format!("{:?}", n.auth_listen));
    differs("radius.receive_buffer_bytes", r.receive_buffer_bytes.to_string(), n.receive_buffer_bytes.to_string());
    differs(
        "radius.duplicate_retention_seconds",
        r.duplicate_retention_seconds.to_string(),
        n.duplicate_retention_seconds.to_string(),
    );
    differs(
        "radius.max_clock_skew_seconds",
        r.max_clock_skew_seconds.to_string(),
        n.max_clock_skew_seconds.to_string(),
    );
    differs(
        "radius.duplicate_cache_entries",
        r.duplicate_cache_entries.to_string(),
        n.duplicate_cache_entries.to_string(),
    );
    differs("[storage]", format!("{:?}", running.storage), format!("{:?}", new.storage));
    // The connection string prints redacted: compare what it says.
    let url = |c: &Config| c.storage.url.as_ref().map(|u| u.expose().to_string()).unwrap_or_default();
    differs("storage.url (or the file it is read from)", url(running), url(new));
    differs("[http]", format!("{:?}", running.http), format!("{:?}", new.http));
    differs("[geo]", format!("{:?}", running.geo), format!("{:?}", new.geo));
    differs("[[export]]", format!("{:?}", running.exports), format!("{:?}", new.exports));
    differs("[metrics]", format!("{:?}", running.metrics), format!("{:?}", new.metrics));
    differs("log.format", format!("{:?}", running.log.format), format!("{:?}", new.log.format));
    differs("log.level", running.log.level.clone(), new.log.level.clone());
    let paths =
        |c: &Config| c.mfa.as_ref().map(|m| (m.database_path(&c.storage.data_dir), m.key_path(&c.storage.data_dir)));
    if let (Some(a), Some(b)) = (paths(running), paths(new)) {
        differs("mfa.database or mfa.state_key_file", format!("{a:?}"), format!("{b:?}"));
    }
    if running.mfa.is_none() && new.mfa.as_ref().is_some_and(|m| m.push.is_some()) {
        out.push("[mfa.push] needs the [http] listener and a longer duplicate retention: restart to be sure".into());
    }
    out
}

impl Server {
    /// Opens storage, binds every listener and starts serving. Must run inside a
    /// tokio runtime.
    pub fn start(config: &Config) -> Result<Self, StartError> {
        let lock = lock_data_dir(&config.storage.data_dir, "start the server")?;
        let store = open_node_store(config)?;
        // Counters go on from where the last run stopped; read off the runtime thread,
        // since a PostgreSQL store's calls block.
        let (mut store, stored_counters) = std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let read = store.counters().and_then(|c| Ok((c, store.applied_position()?)));
                    (store, read)
                })
                .join()
        })
        .map_err(|_| StartError::Storage(StorageError::Corrupt("reading the stored counters failed".into())))?;
        let (stored_counters, applied) = stored_counters?;
        let journal = open_journal(config)?;
        // A shared database that recorded this node further than its journal reaches
        // belongs to another journal (a node rebuilt or restored under the same id):
        // every new record up to that position would be skipped without a word.
        if config.storage.backend == config::Backend::Postgres && applied > journal.position() {
            return Err(StartError::Storage(StorageError::Invalid(format!(
                "the shared database records storage.node_id {:?} as applied through journal position {applied}, \
                 beyond this node's journal (which ends at {}): the journal was replaced. Give this node a new \
                 node_id, or remove its row (DELETE FROM applied WHERE node = '…') once nothing else uses it",
                config.storage.node(),
                journal.position()
            ))));
        }
        // The applier's connection opened (and upgraded) the database: the sinks may
        // open theirs, off the runtime's thread as above.
        let export = if config.exports.is_empty() {
            None
        } else {
            let started = std::thread::scope(|scope| scope.spawn(|| start_export(config)).join());
            Some(Arc::new(started.map_err(|_| StartError::Config("starting the export sinks failed".into()))??))
        };
        let (applier_tx, applier_rx) = std::sync::mpsc::sync_channel(1024);
        let dir = journal_dir(config);
        let retention = applier::Retention::from_config(&config.storage);
        let geo = config.geo.open().map_err(|e| StartError::Config(e.to_string()))?;
        for db in geo.info() {
            tracing::info!(path = %db.path, database_type = %db.database_type, build_epoch = db.build_epoch, "geolocation database loaded");
        }
        let detection = detection::Detection::new(geo, config.detect.clone());
        let shared_geo = detection.geo();
        let clock = config.radius.clock_bounds();
        let pending_auth = Arc::new(applier::PendingAuth::default());
        let auth_events = Arc::clone(&pending_auth);
        let applier_export = export.clone();
        let applier = std::thread::Builder::new()
            .name("applier".into())
            .spawn(move || {
                let reader = JournalReader::new(&dir);
                applier::run_applier(
                    &mut *store,
                    &reader,
                    &dir,
                    &applier_rx,
                    &auth_events,
                    retention,
                    clock,
                    detection,
                    applier_export,
                );
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
        let client_store = portcullis_storage::SqliteClients::open(&config.storage.data_dir)?;
        let seen = portcullis_storage::ClientStore::generation(&client_store)?;
        let table = ClientTable::new(config, client_watch::load(&client_store)?);
        table.seed(&stored_counters);
        let clients = Arc::new(Live::new(Arc::new(table)));
        let client_swap = Arc::default();
        let watch =
            client_watch::ClientWatch::spawn(client_store, seen, Arc::clone(&clients), Arc::clone(&client_swap))
                .map_err(|source| StartError::Bind { addr: SocketAddr::from(([0, 0, 0, 0], 0)), source })?;
        let auth_tx = applier::AuthEventSender::new(pending_auth, applier_tx.clone());
        let shared = Arc::new(acct::Shared {
            clients: Arc::clone(&clients),
            cache: Mutex::new(DuplicateCache::new(
                Duration::from_secs(config.radius.duplicate_retention_seconds),
                config.radius.duplicate_cache_entries,
            )),
            submitter,
            clock,
        });
        let mut tasks = Vec::new();
        let mut acct_addrs = Vec::new();
        let mut audit_writer = None;
        let mut auth_live = None;
        let mut portal_clients = None;
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
            let (audit, writer) = audit::AuditLog::spawn(
                audit_path.clone(),
                audit::Rotation::of(&config.log),
                config.storage.file_mode(),
                audit::QUEUE_LINES,
            )
            .map_err(|source| StorageError::DataDir { path: audit_path.display().to_string(), source })?;
            audit_writer = Some(writer);
            // Answers after a push are re-sent to retransmits for at least 10 s.
            let mut retention = config.radius.duplicate_retention_seconds;
            if config.mfa.as_ref().is_some_and(|m| m.push.is_some()) {
                retention = retention.max(10);
            }
            let state = AuthState {
                cache: Arc::new(Mutex::new(DuplicateCache::new(
                    Duration::from_secs(retention),
                    config.radius.duplicate_cache_entries,
                ))),
                eap: Arc::default(),
                audit: Arc::new(audit),
                applier: auth_tx,
                pending: Arc::default(),
                geo: shared_geo,
            };
            let auth_shared = Arc::new(Live::new(Arc::new(auth_shared(config, Arc::clone(&clients), state, None)?)));
            auth_live = Some(Arc::clone(&auth_shared));
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
        }
        let limits = http::Limits::from_config(&config.http).map_err(StartError::Config)?;
        if !config.http.listen.is_empty() {
            let pools = config.ldap.iter().map(|l| l.pool_size).sum();
            http::check_descriptors(&limits, config.http.listen.len(), pools, http::raise_descriptor_limit())
                .map_err(StartError::Config)?;
        }
        let connections = http::Connections::new(limits);
        let tls = if config.http.tls && !config.http.listen.is_empty() { Some(http_tls(config)?) } else { None };
        let portal = if config.portal.enabled { Some(portal(config)?) } else { None };
        let portal = portal.map(|(portal, clients)| {
            portal_clients = Some(clients);
            portal
        });
        let metrics = if config.metrics.enabled && !config.http.listen.is_empty() {
            Some(Arc::new(metrics_source(config, Arc::clone(&clients), export.clone())?))
        } else {
            None
        };
        for &addr in &config.http.listen {
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(|source| StartError::Bind { addr, source })?;
            let local = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
            let mut app = match &auth_live {
                Some(auth_shared) => auth::router(Arc::clone(auth_shared)),
                None => axum::Router::new(),
            };
            if let Some(portal) = &portal {
                app = app.merge(portal.clone().router());
            }
            if let Some(metrics) = &metrics {
                app = app.merge(metrics::router(Arc::clone(metrics)));
            }
            tasks.push(tokio::spawn(http::serve(listener, app, Arc::clone(&connections), tls.clone())));
            if tls.is_some() {
                tracing::info!(url = %format!("https://{local}/"), "HTTPS listener ready");
            } else {
                tracing::info!(url = %format!("http://{local}/"), "HTTP listener ready (plain, loopback only)");
            }
        }
        // Counters reach storage every two seconds, so `portcullis stats` sees them.
        let counters = Arc::clone(&shared);
        let counters_tx = applier_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                let _ = counters_tx.try_send(applier::ApplierMessage::Counters(counters.clients.load().snapshot()));
            }
        }));
        Ok(Self {
            shared,
            writer,
            applier,
            applier_tx,
            tasks,
            audit: audit_writer,
            lock,
            auth: auth_live,
            started: config.clone(),
            detect: Mutex::new(format!("{:?}", config.detect)),
            client_swap,
            watch,
            portal_clients,
            acct_addrs,
            export,
        })
    }

    /// The client table with its live counters.
    pub fn clients(&self) -> Arc<ClientTable> {
        self.shared.clients.load()
    }

    /// Applies a reloaded configuration (already validated as `check-config` does):
    /// clients and secrets, policies, user stores, MFA, EAP, NPS log, detection and
    /// `auth.log` settings change at once; requests already being decided finish under
    /// the old ones. Nothing changes if any part cannot be built. Returns what differs
    /// but needs a restart (listeners, storage, HTTP, geolocation databases), which
    /// keeps its old value. Called from one task at a time.
    pub fn reload(&self, config: &Config) -> Result<Vec<String>, String> {
        // The stored clients stay; a change of them waits until this table is in place.
        let _swap = lock(&self.client_swap);
        let clients = Arc::new(self.shared.clients.load().reloaded(config));
        let auth = match &self.auth {
            Some(live) => {
                let old = live.load();
                let shared =
                    auth_shared(config, Arc::clone(&self.shared.clients), AuthState::of(&old), old.mfa.as_ref())
                        .map_err(|e| e.to_string())?;
                Some((live, shared))
            }
            None => None,
        };
        // Everything is built: swap.
        self.shared.clients.store(clients);
        if let Some(admin) = &self.portal_clients {
            admin.set_file_clients(config.client_settings());
        }
        if let Some((live, shared)) = auth {
            shared.audit.set_rotation(audit::Rotation::of(&config.log));
            shared.audit.reopen();
            live.store(Arc::new(shared));
        }
        let detect = format!("{:?}", config.detect);
        if *lock(&self.detect) != detect {
            *lock(&self.detect) = detect;
            let _ = self.applier_tx.send(applier::ApplierMessage::Detect(Box::new(config.detect.clone())));
        }
        Ok(restart_only(&self.started, config))
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
        let _ = self.applier_tx.send(applier::ApplierMessage::Counters(self.shared.clients.load().snapshot()));
        drop(self.watch);
        let writer = self.writer;
        let applier = self.applier;
        let audit = self.audit;
        let lock = self.lock;
        let export = self.export;
        // The listener tasks held the last other references; once `shared` and the live
        // authentication snapshot (whose senders feed the audit log and the applier) are
        // gone the queues close, the writer drains its queue, and then the applier
        // catches up and stops.
        drop(self.shared);
        drop(self.auth);
        drop(self.applier_tx);
        let _ = tokio::task::spawn_blocking(move || {
            let _ = writer.join();
            if let Some(audit) = audit {
                audit.finish();
            }
            let _ = applier.join();
            // What the applier recorded last is in the outbox; a sink that cannot send
            // it now sends it after the next start.
            if let Some(export) = export {
                export.stop();
            }
            drop(lock);
        })
        .await;
    }
}
