//! TOML configuration. Unknown keys and bad values are errors that name the key and
//! the line; secrets are redacted from every `Debug` print.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use portcullis_accounting::Vendor;
use serde::Deserialize;
use toml::Spanned;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub radius: RadiusConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default, rename = "client")]
    pub clients: Vec<Spanned<ClientConfig>>,
    #[serde(default)]
    pub dictionary: DictionaryConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default, rename = "network_policy")]
    pub network_policies: Vec<portcullis_auth::policy::NetworkPolicy>,
    #[serde(default)]
    pub eap: EapConfig,
    #[serde(default)]
    pub ldap: Vec<crate::ldap::LdapConfig>,
    #[serde(default, rename = "connection_request_policy")]
    pub connection_request_policies: Vec<ConnectionRequestPolicy>,
    /// NPS-format log files of authentication decisions.
    #[serde(default)]
    pub nps_log: Option<crate::npslog::NpsLogConfig>,
    /// Second factor before Access-Accept.
    #[serde(default)]
    pub mfa: Option<MfaConfig>,
    #[serde(default)]
    pub http: HttpConfig,
    /// Offline IP geolocation.
    #[serde(default)]
    pub geo: crate::detection::GeoConfig,
    /// Detection parameters, egress and suppressions.
    #[serde(default)]
    pub detect: portcullis_detect::Config,
}

/// What happens when a second factor cannot be asked for (notifier or provider down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Reject.
    #[default]
    Secure,
    /// Accept, and say so in the audit event.
    Safe,
}

/// `[mfa]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfaConfig {
    /// The mode of network policies that do not set `mfa`.
    pub policy_default: portcullis_auth::policy::MfaMode,
    /// Reject users without a factor where MFA is required (false: admit them without
    /// MFA and say so in the audit event — for onboarding only).
    pub require_user_match: bool,
    /// NAS addresses or networks (source address or NAS-IP-Address) exempt from MFA.
    pub exempt_nas: Vec<Network>,
    /// The shared second-factor database (default `<data_dir>/mfa.db`); servers that
    /// answer each other's challenges point at the same file.
    pub database: Option<PathBuf>,
    /// 32-byte key (64 hex digits) that authenticates challenge States (default
    /// `<data_dir>/mfa.key`, made on first start); servers sharing challenges share it.
    pub state_key_file: Option<PathBuf>,
    /// How long a challenge may be answered.
    pub challenge_seconds: u64,
    /// Reply-Message of the Access-Challenge.
    pub prompt: String,
    /// Reply-Message of a reject after a wrong code.
    pub wrong_code_message: String,
    /// Accept `password<separator>code` in User-Password for NAS that cannot show
    /// challenges; `""` means the code is simply appended. Absent: off.
    pub concatenated_separator: Option<String>,
    /// Wrong codes in a row before the user is locked out.
    pub lockout_failures: u32,
    /// How long a lockout lasts.
    pub lockout_seconds: u64,
    pub fail_mode: FailMode,
    /// Issuer shown in authenticator apps.
    pub issuer: String,
    /// Push approval through a webhook (`[mfa.push]`).
    pub push: Option<PushConfig>,
    /// privacyIDEA decides the second factor for PAP (`[mfa.privacyidea]`).
    pub privacyidea: Option<crate::privacyidea::PrivacyIdeaConfig>,
}

/// `[mfa.push]`: approve-or-deny requests sent through a webhook; the link in them is
/// served by the `[http]` listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// Where the notification is POSTed (ntfy, a chat webhook, a gateway of your own).
    pub webhook_url: String,
    /// JSON body; `{user}`, `{nas}`, `{calling_station_id}`, `{method}`, `{time}` and
    /// `{url}` (the signed approval page) are replaced, JSON-escaped.
    #[serde(default = "default_push_template")]
    pub webhook_template: String,
    /// Extra request headers (e.g. `Authorization`).
    #[serde(default)]
    pub webhook_headers: std::collections::BTreeMap<String, String>,
    /// Base URL of the `[http]` listener as the phone reaches it.
    pub public_url: String,
    /// How long a login waits for the answer; set the NAS timeout above it.
    #[serde(default = "default_push_wait")]
    pub wait_seconds: u64,
    /// Deadline of the webhook request itself.
    #[serde(default = "default_webhook_timeout")]
    pub webhook_timeout_seconds: u64,
    /// Push-fatigue protection: at most this many denied, unanswered or pending pushes
    /// per user in `fatigue_window_seconds`; beyond, logins are rejected without a push.
    #[serde(default = "default_max_unapproved")]
    pub max_unapproved: u32,
    #[serde(default = "default_fatigue_window")]
    pub fatigue_window_seconds: u64,
    /// Use push for PAP users who have no TOTP factor (otherwise PAP uses TOTP only).
    #[serde(default)]
    pub for_pap: bool,
    /// Number matching for PAP pushes: the VPN prompt (an Access-Challenge) shows a
    /// number the user must type on the approval page.
    #[serde(default)]
    pub number_matching: bool,
    /// The prompt; `{number}` is replaced.
    #[serde(default = "default_number_prompt")]
    pub number_prompt: String,
}

fn default_number_prompt() -> String {
    "Approve the sign-in on your phone and type {number} there, then confirm here".into()
}

fn default_push_template() -> String {
    r#"{"user":"{user}","title":"VPN sign-in","message":"{user} is signing in to the VPN ({nas}, from {calling_station_id}) at {time}. Approve or deny: {url}","url":"{url}"}"#.into()
}
fn default_push_wait() -> u64 {
    55
}
fn default_webhook_timeout() -> u64 {
    10
}
fn default_max_unapproved() -> u32 {
    3
}
fn default_fatigue_window() -> u64 {
    600
}

/// `[http]`: the HTTP listener (push approval pages, health).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: Vec<SocketAddr>,
    /// Base URL users reach the listener at (enrolment links); default
    /// `http://<first listen address>`.
    pub public_url: Option<String>,
    /// Open connections at most, over all listen addresses (see `http.rs` for the file
    /// descriptor arithmetic).
    pub max_connections: usize,
    /// The whole request header must arrive within this many seconds of the server
    /// starting to wait for it.
    pub header_timeout_seconds: u64,
    /// A connection with no request in progress that moves no byte for this long is
    /// closed.
    pub idle_timeout_seconds: u64,
    /// From the complete header to the response, reading the body included.
    pub request_timeout_seconds: u64,
    /// Request bodies larger than this are answered 413.
    pub max_body_bytes: usize,
    /// Request line and headers together, at most.
    pub max_header_bytes: usize,
    /// Header fields per request, at most.
    pub max_headers: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            public_url: None,
            max_connections: 512,
            header_timeout_seconds: 10,
            idle_timeout_seconds: 5,
            request_timeout_seconds: 30,
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
        }
    }
}

impl HttpConfig {
    /// The base URL for links.
    pub fn base_url(&self) -> Option<String> {
        self.public_url
            .clone()
            .or_else(|| self.listen.first().map(|a| format!("http://{a}")))
            .map(|u| u.trim_end_matches('/').to_string())
    }
}

impl Default for MfaConfig {
    fn default() -> Self {
        Self {
            policy_default: portcullis_auth::policy::MfaMode::Required,
            require_user_match: true,
            exempt_nas: Vec::new(),
            database: None,
            state_key_file: None,
            challenge_seconds: 120,
            prompt: "Enter the code from your authenticator app".into(),
            wrong_code_message: "Wrong code".into(),
            concatenated_separator: None,
            lockout_failures: 5,
            lockout_seconds: 300,
            fail_mode: FailMode::Secure,
            issuer: "Portcullis".into(),
            push: None,
            privacyidea: None,
        }
    }
}

impl MfaConfig {
    /// The database path.
    pub fn database_path(&self, data_dir: &Path) -> PathBuf {
        self.database.clone().unwrap_or_else(|| data_dir.join("mfa.db"))
    }

    /// The state key path.
    pub fn key_path(&self, data_dir: &Path) -> PathBuf {
        self.state_key_file.clone().unwrap_or_else(|| data_dir.join("mfa.key"))
    }
}

/// One `[[connection_request_policy]]` (NPS model): which user store answers a request,
/// chosen by client, NAS and realm. Evaluated in order; the first match decides. With
/// none configured every request goes to the local users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionRequestPolicy {
    pub name: String,
    /// Condition: the request came from one of these `[[client]]` names (empty: any).
    #[serde(default)]
    pub clients: Vec<String>,
    /// Condition: NAS-Identifier matches this pattern (`*`, `?`).
    #[serde(default)]
    pub nas_identifier: Option<String>,
    /// Condition: the realm of User-Name (`DOMAIN\\user` or `user@realm`), case-insensitive;
    /// `""` matches names without a realm (empty list: any realm).
    #[serde(default)]
    pub realms: Vec<String>,
    /// `"local"` or the name of an `[[ldap]]` directory.
    #[serde(default = "local_store")]
    pub user_store: String,
    /// Strip the realm before the lookup (default: `auth.strip_realm`).
    #[serde(default)]
    pub strip_realm: Option<bool>,
    /// `false` rejects matching requests (reason 49) without asking any store.
    #[serde(default = "yes")]
    pub accept: bool,
}

fn local_store() -> String {
    "local".into()
}

/// EAP methods the server can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EapMethod {
    /// PEAPv0 with inner EAP-MSCHAPv2 (needs a certificate).
    Peap,
    /// EAP-MSCHAPv2 directly, without a tunnel.
    Mschapv2,
}

/// `[eap]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EapConfig {
    /// PEM server certificate chain, server certificate first.
    pub certificate: Option<PathBuf>,
    /// PEM private key of the server certificate.
    pub private_key: Option<PathBuf>,
    /// Lowest TLS version offered: "1.2" or "1.3".
    pub tls_min_version: String,
    /// Highest TLS version offered: "1.2" or "1.3".
    pub tls_max_version: String,
    /// Most TLS octets per EAP-Request.
    pub fragment_size: usize,
    /// Method offered after EAP-Response/Identity; peers may ask for the other with a
    /// Nak. Default: PEAP when a certificate is configured, else EAP-MSCHAPv2.
    pub default_method: Option<EapMethod>,
}

impl Default for EapConfig {
    fn default() -> Self {
        Self {
            certificate: None,
            private_key: None,
            tls_min_version: "1.2".into(),
            tls_max_version: "1.3".into(),
            fragment_size: 1024,
            default_method: None,
        }
    }
}

impl EapConfig {
    /// Reads the certificate and key and builds the PEAP settings; `None` when no
    /// certificate is configured.
    pub fn peap(&self) -> Result<Option<portcullis_auth::peap::PeapConfig>, String> {
        use portcullis_auth::peap::{PeapConfig, TlsVersion};
        let (cert, key) = match (&self.certificate, &self.private_key) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (c, k),
            _ => return Err("eap.certificate and eap.private_key go together".into()),
        };
        let version = |v: &str, key: &str| match v {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            other => Err(format!("eap.{key} {other:?} must be \"1.2\" or \"1.3\"")),
        };
        let min = version(&self.tls_min_version, "tls_min_version")?;
        let max = version(&self.tls_max_version, "tls_max_version")?;
        if min > max {
            return Err("eap.tls_min_version is above eap.tls_max_version".into());
        }
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        PeapConfig::from_pem(&read(cert)?, &read(key)?, min, max, self.fragment_size)
            .map(Some)
            .map_err(|e| format!("eap: {e}"))
    }

    /// The method offered first.
    pub fn default_method(&self) -> EapMethod {
        self.default_method.unwrap_or(if self.certificate.is_some() { EapMethod::Peap } else { EapMethod::Mschapv2 })
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// UTC offset for policy day-and-time windows, `+HH:MM` or `-HH:MM`.
    pub time_zone: String,
    /// How long a verified PAP credential is remembered (0 disables the cache).
    pub credential_cache_seconds: u64,
    /// Strip `DOMAIN\` and `@realm` from User-Name before looking up local users.
    pub strip_realm: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { time_zone: "+00:00".into(), credential_cache_seconds: 300, strip_realm: true }
    }
}

impl AuthConfig {
    /// The configured offset.
    pub fn offset(&self) -> Option<time::UtcOffset> {
        let format = time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]");
        time::UtcOffset::parse(&self.time_zone, &format).ok()
    }
}

/// `[radius]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RadiusConfig {
    /// Accounting listeners (RFC 2866, UDP 1813).
    pub acct_listen: Vec<SocketAddr>,
    /// Authentication listeners (RFC 2865, UDP 1812); empty disables authentication.
    pub auth_listen: Vec<SocketAddr>,
    /// Socket receive buffer; a large one avoids kernel drops under bursts.
    pub receive_buffer_bytes: usize,
    /// How long answered requests stay in the duplicate cache (RFC 5080: 5–30 s).
    pub duplicate_retention_seconds: u64,
    /// Upper bound on duplicate-cache entries.
    pub duplicate_cache_entries: usize,
}

impl Default for RadiusConfig {
    fn default() -> Self {
        Self {
            acct_listen: vec![SocketAddr::from(([0, 0, 0, 0], 1813)), SocketAddr::from(([0u16; 8], 1813))],
            auth_listen: vec![SocketAddr::from(([0, 0, 0, 0], 1812)), SocketAddr::from(([0u16; 8], 1812))],
            receive_buffer_bytes: 4 * 1024 * 1024,
            duplicate_retention_seconds: 10,
            duplicate_cache_entries: 65_536,
        }
    }
}

/// `storage.sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncSetting {
    /// Survives a crash of the process.
    #[default]
    Normal,
    /// Survives power loss (fsync per group commit).
    Fsync,
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub sync: SyncSetting,
    /// Days to keep raw packets; 0 keeps them forever.
    pub raw_retention_days: u32,
    /// Requests waiting for the writer; beyond this, requests are dropped unanswered
    /// (the NAS retransmits) and counted as `queue_full`.
    pub queue_capacity: usize,
    /// Most requests in one transaction.
    pub max_batch: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/portcullis"),
            sync: SyncSetting::Normal,
            raw_retention_days: 90,
            queue_capacity: 65_536,
            max_batch: 4096,
        }
    }
}

/// `[dictionary]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DictionaryConfig {
    /// Extra FreeRADIUS-format dictionary files.
    pub files: Vec<PathBuf>,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter).
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// One `[[client]]`: a NAS or a network of them sharing a secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub name: String,
    pub address: Network,
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "vendor")]
    pub vendor: Vendor,
    /// Discard Access-Requests without a valid Message-Authenticator (BlastRADIUS).
    #[serde(default = "yes")]
    pub require_message_authenticator: bool,
    /// Discard Access-Requests that carry Proxy-State without a Message-Authenticator.
    #[serde(default = "yes")]
    pub limit_proxy_state: bool,
    /// Put a Message-Authenticator first in every Access-Accept/Reject/Challenge.
    /// Turn off only for NAS that drop such packets (older Check Point).
    #[serde(default = "yes")]
    pub send_message_authenticator: bool,
}

fn yes() -> bool {
    true
}

fn vendor<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vendor, D::Error> {
    let s = String::deserialize(d)?;
    Vendor::from_name(&s).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown vendor {s:?}; expected one of generic, microsoft, cisco-asa, f5, checkpoint, fortinet, palo-alto"
        ))
    })
}

/// A shared secret as configured. `Debug` never shows it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

pub use portcullis_geo::Network;

/// A configuration problem, with file, line and key where known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// Where the demo configuration looks for a city database.
pub const DEMO_GEOIP: &str = "portcullis-data/geoip/dbip-city-lite.mmdb";

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&file, &text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses and validates configuration text; `base` resolves relative paths.
    pub fn parse(file: &str, text: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            ConfigError { file: file.to_string(), line, message: e.message().trim().to_string() }
        })?;
        config.validate(file, text, base)?;
        Ok(config)
    }

    /// The demo configuration used when `serve` runs without a file.
    pub fn demo() -> Self {
        let text = "[radius]\nacct_listen = [\"127.0.0.1:1813\"]\nauth_listen = [\"127.0.0.1:1812\"]\n\n[storage]\ndata_dir = \"portcullis-data\"\n\n[[client]]\nname = \"localhost\"\naddress = \"127.0.0.1\"\nsecret = \"testing123\"\n\n[[network_policy]]\nname = \"demo: any local user\"\n";
        let mut config = Self::parse("<demo>", text, Path::new(".")).expect("the demo configuration is valid");
        // Where scripts/fetch-geoip.sh puts DB-IP City Lite.
        let geo = Path::new(DEMO_GEOIP);
        if geo.is_file() {
            config.geo.databases.push(geo.to_owned());
        }
        config
    }

    fn validate(&mut self, file: &str, text: &str, base: &Path) -> Result<(), ConfigError> {
        let at = |span: std::ops::Range<usize>, message: String| ConfigError {
            file: file.to_string(),
            line: Some(line_of(text, span.start)),
            message,
        };
        if self.auth.offset().is_none() {
            return Err(ConfigError {
                file: file.into(),
                line: None,
                message: format!("auth.time_zone {:?} must be a UTC offset such as \"+01:00\"", self.auth.time_zone),
            });
        }
        let mut policy_names = std::collections::HashSet::new();
        for p in &self.network_policies {
            if !policy_names.insert(p.name.clone()) {
                return Err(ConfigError {
                    file: file.into(),
                    line: None,
                    message: format!("network_policy {:?} is defined twice", p.name),
                });
            }
            for w in &p.time_windows {
                if let Some(h) = &w.hours {
                    if portcullis_auth::policy::parse_hours(h).is_none() {
                        return Err(ConfigError {
                            file: file.into(),
                            line: None,
                            message: format!("network_policy {:?}: hours {h:?} must be HH:MM-HH:MM", p.name),
                        });
                    }
                }
                for d in &w.days {
                    if !portcullis_auth::policy::DAYS.iter().any(|x| x.eq_ignore_ascii_case(d)) {
                        return Err(ConfigError {
                            file: file.into(),
                            line: None,
                            message: format!("network_policy {:?}: unknown day {d:?} (mon..sun)", p.name),
                        });
                    }
                }
            }
        }
        let mut stores = std::collections::HashSet::from(["local".to_string()]);
        for l in &mut self.ldap {
            let bad =
                |m: String| ConfigError { file: file.into(), line: None, message: format!("ldap {:?}: {m}", l.name) };
            if !stores.insert(l.name.clone()) {
                return Err(bad("the name is used twice (or is \"local\")".into()));
            }
            if l.urls.is_empty() || l.urls.iter().any(|u| !(u.starts_with("ldap://") || u.starts_with("ldaps://"))) {
                return Err(bad("urls must be ldap://host[:port] or ldaps://host[:port]".into()));
            }
            if l.bind_password.is_some() == l.bind_password_file.is_some() {
                return Err(bad("set bind_password or bind_password_file (one of them)".into()));
            }
            if !l.user_filter.contains("{user}") {
                return Err(bad("user_filter must contain {user}".into()));
            }
            for f in [&mut l.ca_certificate, &mut l.bind_password_file].into_iter().flatten() {
                if f.is_relative() {
                    *f = base.join(&*f);
                }
            }
        }
        for p in &self.connection_request_policies {
            if !stores.contains(&p.user_store) {
                return Err(ConfigError {
                    file: file.into(),
                    line: None,
                    message: format!(
                        "connection_request_policy {:?}: user_store {:?} is neither \"local\" nor an [[ldap]] name",
                        p.name, p.user_store
                    ),
                });
            }
            for c in &p.clients {
                if !self.clients.iter().any(|x| &x.get_ref().name == c) {
                    return Err(ConfigError {
                        file: file.into(),
                        line: None,
                        message: format!("connection_request_policy {:?}: no [[client]] is named {c:?}", p.name),
                    });
                }
            }
        }
        if self.radius.acct_listen.is_empty() {
            return Err(ConfigError { file: file.into(), line: None, message: "radius.acct_listen is empty".into() });
        }
        if !(5..=30).contains(&self.radius.duplicate_retention_seconds) {
            return Err(ConfigError {
                file: file.into(),
                line: None,
                message: "radius.duplicate_retention_seconds must be 5..=30 (RFC 5080 §2.2.2)".into(),
            });
        }
        if self.storage.data_dir.is_relative() {
            self.storage.data_dir = base.join(&self.storage.data_dir);
        }
        for f in &mut self.dictionary.files {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        let nps_dir = self.nps_log.as_mut().map(|n| &mut n.directory);
        for f in
            [Some(&mut self.eap.certificate), Some(&mut self.eap.private_key), nps_dir].into_iter().flatten().flatten()
        {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        if self.eap.default_method() == EapMethod::Peap && self.eap.certificate.is_none() {
            return Err(ConfigError {
                file: file.into(),
                line: None,
                message: "eap.default_method = \"peap\" needs eap.certificate and eap.private_key".into(),
            });
        }
        let mut names = std::collections::HashSet::new();
        for client in &mut self.clients {
            let span = client.span();
            let c = client.get_mut();
            if c.name.trim().is_empty() {
                return Err(at(span, "client.name must not be empty".into()));
            }
            if !names.insert(c.name.clone()) {
                return Err(at(span, format!("client.name {:?} is used twice", c.name)));
            }
            match (&c.secret, &c.secret_file) {
                (Some(_), Some(_)) => {
                    return Err(at(span, format!("client {:?}: set secret or secret_file, not both", c.name)));
                }
                (None, None) => {
                    return Err(at(span, format!("client {:?}: secret or secret_file is required", c.name)));
                }
                (None, Some(path)) => {
                    let path = if path.is_relative() { base.join(path) } else { path.clone() };
                    let s = std::fs::read_to_string(&path).map_err(|e| {
                        at(span.clone(), format!("client {:?}: secret_file {}: {e}", c.name, path.display()))
                    })?;
                    c.secret = Some(Secret(s.trim_end_matches(['\r', '\n']).to_string()));
                }
                (Some(_), None) => {}
            }
            if c.secret.as_ref().is_none_or(|s| s.0.is_empty()) {
                return Err(at(span, format!("client {:?}: the secret is empty", c.name)));
            }
        }
        Ok(())
    }

    /// The clients without their spans.
    pub fn client_list(&self) -> impl Iterator<Item = &ClientConfig> {
        self.clients.iter().map(Spanned::get_ref)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse("test.toml", text, Path::new("/etc/portcullis"))
    }

    const OK: &str = "[radius]\nacct_listen = [\"127.0.0.1:1813\"]\n\n[storage]\ndata_dir = \"/var/lib/portcullis\"\n\n[[client]]\nname = \"rras-1\"\naddress = \"127.0.0.1\"\nsecret = \"s3cret\"\nvendor = \"microsoft\"\n";

    #[test]
    fn acceptance_shape_parses() {
        let c = parse(OK).unwrap();
        assert_eq!(c.radius.acct_listen, vec!["127.0.0.1:1813".parse().unwrap()]);
        let client = c.client_list().next().unwrap();
        assert_eq!(client.vendor, Vendor::Microsoft);
        assert_eq!(client.address, "127.0.0.1/32".parse().unwrap());
        assert!(!format!("{c:?}").contains("s3cret"), "secrets must not reach Debug output");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = parse(&OK.replace("vendor = \"microsoft\"", "vendr = \"microsoft\"")).unwrap_err();
        assert_eq!(e.line, Some(11));
        assert!(e.message.contains("vendr"), "{e}");
        assert!(e.to_string().starts_with("test.toml:11: "), "{e}");
    }

    #[test]
    fn bad_values_name_the_line() {
        let e = parse(&OK.replace("127.0.0.1\"\nsecret", "127.0.0.999\"\nsecret")).unwrap_err();
        assert_eq!(e.line, Some(9));
        assert!(e.message.contains("127.0.0.999"), "{e}");
        let e = parse(&OK.replace("microsoft", "juniper")).unwrap_err();
        assert!(e.message.contains("unknown vendor"), "{e}");
        let e = parse(&OK.replace("[storage]", "[storage]\nsync = \"sometimes\"")).unwrap_err();
        assert_eq!(e.line, Some(5));
    }

    #[test]
    fn secret_rules() {
        let e = parse(&OK.replace("secret = \"s3cret\"\n", "")).unwrap_err();
        assert!(e.message.contains("secret or secret_file is required"));
        assert_eq!(e.line, Some(7));
        let e = parse(&OK.replace("secret = \"s3cret\"", "secret = \"s3cret\"\nsecret_file = \"x\"")).unwrap_err();
        assert!(e.message.contains("not both"));
        let e = parse(&OK.replace("secret = \"s3cret\"", "secret_file = \"/nonexistent/secret\"")).unwrap_err();
        assert!(e.message.contains("/nonexistent/secret"));
    }

    #[test]
    fn networks() {
        let n: Network = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6: Network = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
    }

    #[test]
    fn demo_is_valid() {
        let d = Config::demo();
        assert_eq!(d.client_list().count(), 1);
    }
}
