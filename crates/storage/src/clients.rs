//! RADIUS clients added at runtime (by the CLI or the portal) in `clients.db` beside
//! `users.db`, and [`ClientAdmin`], the one way to list and change them, which keeps the
//! clients of the configuration file read-only and refuses a stored client that would
//! overlap one.
//!
//! The shared secret must verify packets, so it is kept as FreeRADIUS keeps it in its
//! SQL `nas` table: as text, in a file only its owner can read (0600). It leaves the
//! store only through [`ClientStore::clients_with_secrets`], which the server's loader
//! calls; every listing returns [`StoredClient`], which has no secret.

use std::path::Path;
use std::sync::Mutex;

use portcullis_accounting::Vendor;
use portcullis_geo::Network;
use rusqlite::{Connection, OptionalExtension, params};

use crate::StorageError;
use crate::files::FileMode;

/// Longest shared secret accepted, in bytes (RADIUS sets no limit; a bound keeps hostile
/// input small).
pub const MAX_SECRET_BYTES: usize = 256;
/// Longest client name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Secrets shorter than this draw a warning, as RFC 2865 §3 recommends.
pub const RECOMMENDED_SECRET_CHARS: usize = 16;

/// What a client is, without its secret: the `[[client]]` keys but `secret`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClientSettings {
    pub name: String,
    #[serde(serialize_with = "display")]
    pub address: Network,
    #[serde(serialize_with = "vendor_name")]
    pub vendor: Vendor,
    /// Discard Access-Requests without a valid Message-Authenticator (BlastRADIUS).
    pub require_message_authenticator: bool,
    /// Discard Access-Requests that carry Proxy-State without a Message-Authenticator.
    pub limit_proxy_state: bool,
    /// Put a Message-Authenticator first in every reply.
    pub send_message_authenticator: bool,
}

impl ClientSettings {
    /// A client of the generic vendor with every BlastRADIUS protection on, the
    /// `[[client]]` defaults.
    pub fn new(name: impl Into<String>, address: Network) -> Self {
        Self {
            name: name.into(),
            address,
            vendor: Vendor::Generic,
            require_message_authenticator: true,
            limit_proxy_state: true,
            send_message_authenticator: true,
        }
    }

    /// The settings that weaken the client, one sentence each (the `[[client]]`
    /// warnings).
    pub fn warnings(&self) -> Vec<String> {
        let name = &self.name;
        let mut out = Vec::new();
        let a = self.address;
        if a.prefix == 0 {
            out.push(format!("client {name:?} address {a} covers every address: any host can send requests"));
        } else if a.prefix < if a.addr.is_ipv4() { 8 } else { 32 } {
            out.push(format!("client {name:?} address {a} is a very wide network"));
        }
        for (on, key, what) in [
            (
                self.require_message_authenticator,
                "require_message_authenticator",
                "Access-Requests are accepted without Message-Authenticator",
            ),
            (
                self.limit_proxy_state,
                "limit_proxy_state",
                "Access-Requests with Proxy-State are accepted without Message-Authenticator",
            ),
            (self.send_message_authenticator, "send_message_authenticator", "replies carry no Message-Authenticator"),
        ] {
            if !on {
                out.push(format!("client {name:?}: {key} = false: {what} (BlastRADIUS)"));
            }
        }
        out
    }
}

fn display<S: serde::Serializer>(n: &Network, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(n)
}

fn vendor_name<S: serde::Serializer>(v: &Vendor, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.name())
}

/// A shared secret on its way into the store. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The `[[client]]` rules: not empty, at most [`MAX_SECRET_BYTES`], no NUL (which
    /// the RADIUS secret of most NAS cannot hold). Returns a warning for a secret shorter
    /// than RFC 2865 recommends.
    pub fn check(&self) -> Result<Option<String>, String> {
        if self.0.is_empty() {
            return Err("the secret is empty".into());
        }
        if self.0.len() > MAX_SECRET_BYTES {
            return Err(format!("the secret is longer than {MAX_SECRET_BYTES} bytes"));
        }
        if self.0.contains('\0') {
            return Err("the secret contains a NUL character".into());
        }
        let len = self.0.chars().count();
        Ok((len < RECOMMENDED_SECRET_CHARS)
            .then(|| format!("a {len}-character secret; RFC 2865 §3 recommends at least {RECOMMENDED_SECRET_CHARS}")))
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// A stored client as listed: settings and who changed it when, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredClient {
    #[serde(flatten)]
    pub settings: ClientSettings,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub created_by: String,
    /// Unix milliseconds of the last change (the secret set again).
    pub updated_ms: i64,
    pub updated_by: String,
}

/// Who made a change and when (Unix milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub by: &'a str,
    pub now_ms: i64,
}

/// What a backend of runtime clients provides.
///
/// **Contract:** names are unique and no two clients have the same network; every
/// change raises [`generation`](Self::generation), which never goes back (a poller that
/// saw generation `g` has seen every change up to it); no listing carries the secret.
pub trait ClientStore: Send {
    /// Raised by every change; cheap to read.
    fn generation(&self) -> Result<i64, StorageError>;
    /// Every stored client, by name, without secrets.
    fn clients(&self) -> Result<Vec<StoredClient>, StorageError>;
    /// Adds a client; refuses a name or a network that is stored already, an invalid
    /// name and a secret [`ClientSecret::check`] refuses.
    fn insert(
        &mut self,
        settings: &ClientSettings,
        secret: &ClientSecret,
        change: Change<'_>,
    ) -> Result<StoredClient, StorageError>;
    /// Replaces a client's secret; `false` when there is no such client.
    fn set_secret(&mut self, name: &str, secret: &ClientSecret, change: Change<'_>) -> Result<bool, StorageError>;
    /// Deletes a client; `false` when there is no such client.
    fn delete(&mut self, name: &str) -> Result<bool, StorageError>;
    /// Every client with its secret, for the server's client table only.
    fn clients_with_secrets(&self) -> Result<Vec<(StoredClient, ClientSecret)>, StorageError>;
}

/// Refuses a name a client cannot have: empty, too long, or with control characters
/// (it is shown in logs, tables and pages).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the client name is empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("the client name is longer than {MAX_NAME_BYTES} bytes"));
    }
    if name.chars().any(char::is_control) || name != name.trim() {
        return Err(format!("the client name {name:?} has control characters or surrounding spaces"));
    }
    Ok(())
}

/// Whether two networks share an address.
pub fn overlaps(a: Network, b: Network) -> bool {
    a.contains(b.addr) || b.contains(a.addr)
}

/// Why `candidate` cannot be a stored client beside the configuration file's
/// clients: the file's clients win, so a stored client with one of their names or an
/// address one of them covers (or that covers one of them) is refused, and left out of
/// the client table if the file gained such a client later.
pub fn file_conflict(file: &[ClientSettings], candidate: &ClientSettings) -> Option<String> {
    file.iter().find_map(|f| {
        if f.name == candidate.name {
            Some(format!("a client named {:?} is managed by the configuration file (read-only there)", candidate.name))
        } else if overlaps(f.address, candidate.address) {
            Some(format!(
                "address {} overlaps {} of the client {:?} managed by the configuration file; \
                 clients of the file win, so change that client in the file instead",
                candidate.address, f.address, f.name
            ))
        } else {
            None
        }
    })
}

/// Runtime clients in `clients.db` inside the data directory.
pub struct SqliteClients {
    conn: Connection,
}

impl std::fmt::Debug for SqliteClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteClients")
    }
}

const COLUMNS: &str = "name, address, vendor, require_message_authenticator, limit_proxy_state, \
                       send_message_authenticator, created_ms, created_by, updated_ms, updated_by";

impl SqliteClients {
    /// Opens (creating it and the data directory if needed) `clients.db`, mode 0600
    /// (with its `-wal` and `-shm`). WAL with a busy timeout: the CLI writes while the
    /// server reads.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        let conn = crate::sqlite::open_in(data_dir, "clients.db", FileMode::PRIVATE)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS clients (
                name TEXT PRIMARY KEY,
                address TEXT NOT NULL UNIQUE,
                vendor TEXT NOT NULL,
                require_message_authenticator INTEGER NOT NULL,
                limit_proxy_state INTEGER NOT NULL,
                send_message_authenticator INTEGER NOT NULL,
                created_ms INTEGER NOT NULL,
                created_by TEXT NOT NULL,
                updated_ms INTEGER NOT NULL,
                updated_by TEXT NOT NULL,
                secret TEXT NOT NULL
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
            INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0);",
        )?;
        Ok(Self { conn })
    }

    /// Whether `data_dir` has a `clients.db` (listing must not create one).
    pub fn exists(data_dir: &Path) -> bool {
        data_dir.join("clients.db").is_file()
    }

    fn bump(tx: &rusqlite::Transaction<'_>) -> Result<(), StorageError> {
        tx.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'", [])?;
        Ok(())
    }

    fn list(&self, with_secret: bool) -> Result<Vec<(StoredClient, ClientSecret)>, StorageError> {
        let secret = if with_secret { "secret" } else { "''" };
        let mut stmt = self.conn.prepare(&format!("SELECT {COLUMNS}, {secret} FROM clients ORDER BY name"))?;
        let rows = stmt.query_map([], |r| {
            let text: [String; 5] = [r.get(0)?, r.get(1)?, r.get(2)?, r.get(7)?, r.get(9)?];
            let flags: [bool; 3] = [r.get(3)?, r.get(4)?, r.get(5)?];
            let times: [i64; 2] = [r.get(6)?, r.get(8)?];
            Ok((text, flags, times, ClientSecret(r.get(10)?)))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let ([name, address, vendor, created_by, updated_by], flags, [created_ms, updated_ms], secret) = row?;
            let address =
                address.parse().map_err(|e| StorageError::Corrupt(format!("clients.db: client {name:?}: {e}")))?;
            let vendor = Vendor::from_name(&vendor).ok_or_else(|| {
                StorageError::Corrupt(format!("clients.db: client {name:?}: unknown vendor {vendor:?}"))
            })?;
            let [require_message_authenticator, limit_proxy_state, send_message_authenticator] = flags;
            let settings = ClientSettings {
                name,
                address,
                vendor,
                require_message_authenticator,
                limit_proxy_state,
                send_message_authenticator,
            };
            out.push((StoredClient { settings, created_ms, created_by, updated_ms, updated_by }, secret));
        }
        Ok(out)
    }
}

impl ClientStore for SqliteClients {
    fn generation(&self) -> Result<i64, StorageError> {
        Ok(self.conn.prepare_cached("SELECT value FROM meta WHERE key = 'generation'")?.query_row([], |r| r.get(0))?)
    }

    fn clients(&self) -> Result<Vec<StoredClient>, StorageError> {
        Ok(self.list(false)?.into_iter().map(|(c, _)| c).collect())
    }

    fn insert(
        &mut self,
        s: &ClientSettings,
        secret: &ClientSecret,
        change: Change<'_>,
    ) -> Result<StoredClient, StorageError> {
        check_name(&s.name).map_err(StorageError::Invalid)?;
        secret.check().map_err(|e| StorageError::Invalid(format!("client {:?}: {e}", s.name)))?;
        let address = canonical(s.address).to_string();
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let clash: Option<String> = tx
            .query_row("SELECT name FROM clients WHERE name = ?1 OR address = ?2", params![s.name, address], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(other) = clash {
            return Err(StorageError::Invalid(if other == s.name {
                format!("a client named {:?} exists already", s.name)
            } else {
                format!("the client {other:?} has the address {address} already")
            }));
        }
        tx.execute(
            &format!("INSERT INTO clients ({COLUMNS}, secret) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7, ?8, ?9)"),
            params![
                s.name,
                address,
                s.vendor.name(),
                s.require_message_authenticator,
                s.limit_proxy_state,
                s.send_message_authenticator,
                change.now_ms,
                change.by,
                secret.0,
            ],
        )?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(StoredClient {
            settings: ClientSettings { address: canonical(s.address), ..s.clone() },
            created_ms: change.now_ms,
            created_by: change.by.to_string(),
            updated_ms: change.now_ms,
            updated_by: change.by.to_string(),
        })
    }

    fn set_secret(&mut self, name: &str, secret: &ClientSecret, change: Change<'_>) -> Result<bool, StorageError> {
        secret.check().map_err(|e| StorageError::Invalid(format!("client {name:?}: {e}")))?;
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE clients SET secret = ?2, updated_ms = ?3, updated_by = ?4 WHERE name = ?1",
            params![name, secret.0, change.now_ms, change.by],
        )?;
        if n > 0 {
            Self::bump(&tx)?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    fn delete(&mut self, name: &str) -> Result<bool, StorageError> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute("DELETE FROM clients WHERE name = ?1", [name])?;
        if n > 0 {
            Self::bump(&tx)?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    fn clients_with_secrets(&self) -> Result<Vec<(StoredClient, ClientSecret)>, StorageError> {
        self.list(true)
    }
}

/// The network with its host bits cleared (10.1.2.3/8 is 10.0.0.0/8), so one network
/// has one spelling and the store can refuse it twice.
fn canonical(n: Network) -> Network {
    let addr = match n.addr {
        std::net::IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(n.prefix)).unwrap_or(0);
            std::net::IpAddr::V4((u32::from(a) & mask).into())
        }
        std::net::IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(n.prefix)).unwrap_or(0);
            std::net::IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    Network { addr, prefix: n.prefix }
}

/// A client as the administration lists it: from the configuration file (read-only)
/// or stored. Neither carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "managed_by", rename_all = "lowercase")]
pub enum ClientListing {
    File(ClientSettings),
    Stored(StoredClient),
}

impl ClientListing {
    pub fn settings(&self) -> &ClientSettings {
        match self {
            Self::File(s) => s,
            Self::Stored(c) => &c.settings,
        }
    }
}

/// What the CLI and the portal call to administer RADIUS clients. Errors are text for
/// people. Nothing here returns a secret; a change reaches the running server's client
/// table within a second.
pub trait ClientAdmin: Send + Sync {
    /// The file's clients first (read-only), then the stored ones, by name.
    fn list(&self) -> Result<Vec<ClientListing>, String>;
    /// Adds a stored client; returns warnings (a short secret, a weakened option).
    fn add(&self, settings: ClientSettings, secret: ClientSecret, by: &str) -> Result<Vec<String>, String>;
    /// Deletes a stored client; a file client is refused.
    fn delete(&self, name: &str, by: &str) -> Result<(), String>;
    /// Replaces a stored client's secret; returns warnings.
    fn set_secret(&self, name: &str, secret: ClientSecret, by: &str) -> Result<Vec<String>, String>;
}

/// [`ClientAdmin`] over a [`ClientStore`] and the clients of the configuration file.
pub struct RuntimeClients<S> {
    store: Mutex<S>,
    file: Mutex<Vec<ClientSettings>>,
}

impl<S> std::fmt::Debug for RuntimeClients<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeClients").finish_non_exhaustive()
    }
}

impl<S: ClientStore> RuntimeClients<S> {
    /// `file`: the clients of the configuration file.
    pub fn new(store: S, file: Vec<ClientSettings>) -> Self {
        Self { store: Mutex::new(store), file: Mutex::new(file) }
    }

    /// Replaces the configuration file's clients (after a reload).
    pub fn set_file_clients(&self, file: Vec<ClientSettings>) {
        *lock(&self.file) = file;
    }

    fn store(&self) -> std::sync::MutexGuard<'_, S> {
        lock(&self.store)
    }

    fn refuse_file_client(&self, name: &str) -> Result<(), String> {
        if lock(&self.file).iter().any(|f| f.name == name) {
            return Err(format!("the client {name:?} is managed by the configuration file; change it there"));
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl<S: ClientStore> ClientAdmin for RuntimeClients<S> {
    fn list(&self) -> Result<Vec<ClientListing>, String> {
        let stored = self.store().clients().map_err(|e| e.to_string())?;
        Ok(lock(&self.file)
            .iter()
            .cloned()
            .map(ClientListing::File)
            .chain(stored.into_iter().map(ClientListing::Stored))
            .collect())
    }

    fn add(&self, settings: ClientSettings, secret: ClientSecret, by: &str) -> Result<Vec<String>, String> {
        check_name(&settings.name)?;
        if let Some(e) = file_conflict(&lock(&self.file), &settings) {
            return Err(e);
        }
        let mut warnings: Vec<String> =
            secret.check()?.map(|w| format!("client {:?} has {w}", settings.name)).into_iter().collect();
        warnings.extend(settings.warnings());
        self.store().insert(&settings, &secret, Change { by, now_ms: now_ms() }).map_err(|e| e.to_string())?;
        tracing::info!(client = settings.name, address = %settings.address, by, "stored RADIUS client added");
        Ok(warnings)
    }

    fn delete(&self, name: &str, by: &str) -> Result<(), String> {
        self.refuse_file_client(name)?;
        if self.store().delete(name).map_err(|e| e.to_string())? {
            tracing::info!(client = name, by, "stored RADIUS client deleted");
            Ok(())
        } else {
            Err(format!("no stored client {name:?}"))
        }
    }

    fn set_secret(&self, name: &str, secret: ClientSecret, by: &str) -> Result<Vec<String>, String> {
        self.refuse_file_client(name)?;
        let warning = secret.check()?.map(|w| format!("client {name:?} has {w}"));
        if self.store().set_secret(name, &secret, Change { by, now_ms: now_ms() }).map_err(|e| e.to_string())? {
            tracing::info!(client = name, by, "stored RADIUS client's secret replaced");
            Ok(warning.into_iter().collect())
        } else {
            Err(format!("no stored client {name:?}"))
        }
    }
}
