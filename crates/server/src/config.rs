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
    /// The web portal and REST API on the `[http]` listener.
    #[serde(default)]
    pub portal: PortalConfig,
    /// Offline IP geolocation.
    #[serde(default)]
    pub geo: crate::detection::GeoConfig,
    /// Detection parameters, egress and suppressions.
    #[serde(default)]
    pub detect: portcullis_detect::Config,
    /// Where alerts (and, optionally, authentication decisions) are sent.
    #[serde(default, rename = "export")]
    pub exports: Vec<portcullis_export::SinkConfig>,
    /// `/metrics` on the `[http]` listener.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// `[metrics]`: Prometheus text on `/metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// A file holding the bearer token a scraper sends (`Authorization: Bearer …`);
    /// without it only loopback addresses may scrape.
    pub token_file: Option<PathBuf>,
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
/// served by the `[http]` listener. `Debug` redacts the webhook's path (for ntfy-style
/// topics it is the credential), its header values and its body template.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// The shared channel: where the notification of users enrolled without a target of
    /// their own is POSTed (ntfy, a chat webhook, a gateway of your own). Empty: none.
    #[serde(default)]
    pub webhook_url: String,
    /// URL prefixes a user's own target (ntfy topic or webhook) must start with. Empty:
    /// any http(s) URL an administrator sets; the enrolment page then offers none.
    #[serde(default)]
    pub target_prefixes: Vec<String>,
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

impl std::fmt::Debug for PushConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: std::collections::BTreeMap<&str, Redacted> =
            self.webhook_headers.keys().map(|k| (k.as_str(), Redacted)).collect();
        f.debug_struct("PushConfig")
            .field("webhook_url", &redact_url(&self.webhook_url))
            .field("target_prefixes", &self.target_prefixes)
            .field("webhook_template", &Redacted)
            .field("webhook_headers", &headers)
            .field("public_url", &self.public_url)
            .field("wait_seconds", &self.wait_seconds)
            .field("webhook_timeout_seconds", &self.webhook_timeout_seconds)
            .field("max_unapproved", &self.max_unapproved)
            .field("fatigue_window_seconds", &self.fatigue_window_seconds)
            .field("for_pap", &self.for_pap)
            .field("number_matching", &self.number_matching)
            .field("number_prompt", &self.number_prompt)
            .finish()
    }
}

/// Prints `<redacted>` in `Debug` output in place of a secret.
struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A URL as it may be logged: `scheme://host[:port]/<redacted>`. User information,
/// path, query and fragment can all be credentials (an ntfy topic, a chat webhook's
/// token), so none of them is shown.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redacted>".into();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}/<redacted>")
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

/// `[portal]`: the web portal and `/api/v1`, served on the `[http]` listen addresses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortalConfig {
    pub enabled: bool,
}

impl PortalConfig {
    /// The portal needs a listener to be served on.
    pub fn check(&self, http: &HttpConfig) -> Result<(), String> {
        if self.enabled && http.listen.is_empty() {
            return Err("portal.enabled needs [http] listen addresses to serve it on".into());
        }
        Ok(())
    }
}

/// `[http]`: the HTTPS listener (portal, REST API, push approval and enrolment pages,
/// `/metrics`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: Vec<SocketAddr>,
    /// Serve HTTPS (the default). `false` serves plain HTTP, which is allowed only when
    /// every listen address is a loopback address.
    pub tls: bool,
    /// The certificate chain (PEM, the server's certificate first). Without it and
    /// `private_key`, a self-signed certificate is made on first start and kept in
    /// `<data_dir>/http-tls/`.
    pub certificate: Option<PathBuf>,
    /// The private key of `certificate` (PEM).
    pub private_key: Option<PathBuf>,
    /// Base URL users reach the listener at (enrolment links); default
    /// `https://<first listen address>` (`http://` with `tls = false`).
    pub public_url: Option<String>,
    /// Open connections at most, over all listen addresses (see `http.rs` for the file
    /// descriptor arithmetic).
    pub max_connections: usize,
    /// The TLS handshake, and then the whole request header, must each arrive within
    /// this many seconds of the server starting to wait for it.
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
            tls: true,
            certificate: None,
            private_key: None,
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
        let scheme = if self.tls { "https" } else { "http" };
        self.public_url
            .clone()
            .or_else(|| self.listen.first().map(|a| format!("{scheme}://{a}")))
            .map(|u| u.trim_end_matches('/').to_string())
    }

    /// Plain HTTP carries passwords, session cookies and approval links in clear, so
    /// it is served on loopback addresses only; a certificate needs its key.
    pub fn check(&self) -> Result<(), String> {
        if !self.tls {
            if let Some(a) = self.listen.iter().find(|a| !a.ip().is_loopback()) {
                return Err(format!(
                    "http.tls = false with [http] listen address {a}: plain HTTP is allowed on loopback addresses \
                     only. Remove `tls = false` to serve HTTPS (with http.certificate and http.private_key, or a \
                     self-signed certificate made on first start), or listen on 127.0.0.1 behind a TLS reverse \
                     proxy on this host"
                ));
            }
            if self.certificate.is_some() || self.private_key.is_some() {
                return Err("http.certificate and http.private_key are set but http.tls = false: remove them, \
                            or `tls = false`"
                    .into());
            }
        }
        if self.certificate.is_some() != self.private_key.is_some() {
            return Err("http.certificate and http.private_key go together: set both, or neither for a \
                        self-signed certificate made on first start"
                .into());
        }
        Ok(())
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
    /// Time zone of policy day-and-time windows and NPS log files: an IANA name
    /// (`Europe/Berlin`) or a fixed offset (`+HH:MM`).
    pub time_zone: String,
    /// How long a verified PAP credential is remembered (0 disables the cache).
    pub credential_cache_seconds: u64,
    /// Strip `DOMAIN\` and `@realm` from User-Name before looking up local users.
    pub strip_realm: bool,
    /// Fewest characters in a local user's password (`user add`, `user passwd`).
    pub min_password_length: usize,
}

/// The default `auth.min_password_length`.
pub const MIN_PASSWORD_LENGTH: usize = 8;

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            time_zone: "+00:00".into(),
            credential_cache_seconds: 300,
            strip_realm: true,
            min_password_length: MIN_PASSWORD_LENGTH,
        }
    }
}

impl AuthConfig {
    /// Refuses a local user's password that is shorter than `min_password_length`.
    pub fn check_password(&self, password: &str) -> Result<(), String> {
        let length = password.chars().count();
        if length < self.min_password_length {
            return Err(format!(
                "the password has {length} character(s); auth.min_password_length asks for at least {}",
                self.min_password_length
            ));
        }
        Ok(())
    }

    /// The configured time zone.
    pub fn zone(&self) -> Result<crate::zone::Zone, String> {
        crate::zone::Zone::parse(&self.time_zone)
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
    /// Event-Timestamps more than this many seconds after arrival are set to arrival
    /// (and counted as `clock_skew`); so are those before 2000.
    pub max_clock_skew_seconds: u32,
}

impl RadiusConfig {
    /// The event times believed, as `max_clock_skew_seconds` sets them.
    pub fn clock_bounds(&self) -> portcullis_accounting::ClockBounds {
        portcullis_accounting::ClockBounds {
            ahead_s: i64::from(self.max_clock_skew_seconds),
            ..portcullis_accounting::ClockBounds::default()
        }
    }
}

impl Default for RadiusConfig {
    fn default() -> Self {
        Self {
            acct_listen: vec![SocketAddr::from(([0, 0, 0, 0], 1813)), SocketAddr::from(([0u16; 8], 1813))],
            auth_listen: vec![SocketAddr::from(([0, 0, 0, 0], 1812)), SocketAddr::from(([0u16; 8], 1812))],
            receive_buffer_bytes: 4 * 1024 * 1024,
            duplicate_retention_seconds: 10,
            duplicate_cache_entries: 65_536,
            max_clock_skew_seconds: 300,
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

/// `ldap://host[:port]` or `ldaps://host[:port]` (an optional trailing `/`), the host a
/// name or an address (IPv6 in brackets), the port 1-65535.
fn ldap_url_is_valid(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("ldaps://").or_else(|| url.strip_prefix("ldap://")) else { return false };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((a, tail)) if a.parse::<std::net::Ipv6Addr>().is_ok() => ("v6", tail.strip_prefix(':')),
            _ => return false,
        },
        None => match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        },
    };
    let host_ok =
        host == "v6" || (!host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    host_ok && port_ok
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
    /// Days to keep stored authentication events; 0 keeps them forever.
    pub auth_event_retention_days: u32,
    /// Days to keep closed sessions after they ended; 0 keeps them forever.
    pub session_retention_days: u32,
    /// Seconds without an Interim-Update or Stop after which an open session is marked
    /// stale; unset: twice the longest Interim interval seen from its NAS, at least a day.
    pub stale_after_seconds: Option<u64>,
    /// Data files (database, journal, `auth.log`, NPS logs) readable by the group too
    /// (0640 instead of 0600).
    pub group_readable: bool,
    /// Where sessions, history, authentication events and alerts are kept: the
    /// embedded SQLite database in `data_dir` (default) or a PostgreSQL database
    /// several nodes share. The journal stays in `data_dir` either way.
    pub backend: Backend,
    /// The PostgreSQL connection string (it carries a password: prefer `url_file`).
    pub url: Option<Secret>,
    /// A file holding the PostgreSQL connection string on its first line.
    pub url_file: Option<PathBuf>,
    /// This node's name in the shared database (its applied journal position is kept
    /// under it); default: the host name. Two nodes must never share one.
    pub node_id: Option<String>,
    /// PEM certificate authorities the database server's certificate must chain to
    /// (with `sslmode=require` or stronger); default: the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// `storage.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Sqlite,
    Postgres,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/portcullis"),
            sync: SyncSetting::Normal,
            raw_retention_days: 90,
            queue_capacity: 65_536,
            max_batch: 4096,
            auth_event_retention_days: 365,
            session_retention_days: 365,
            stale_after_seconds: None,
            group_readable: false,
            backend: Backend::Sqlite,
            url: None,
            url_file: None,
            node_id: None,
            ca_file: None,
        }
    }
}

impl StorageConfig {
    /// The mode of the data files.
    pub fn file_mode(&self) -> portcullis_storage::FileMode {
        portcullis_storage::FileMode::new(self.group_readable)
    }

    /// This node's name in a shared database.
    pub fn node(&self) -> String {
        self.node_id.clone().unwrap_or_else(crate::hostname)
    }

    /// Resolves relative paths, reads `url_file` and refuses an incomplete PostgreSQL
    /// setting (a server would otherwise start on a store nobody else sees).
    fn resolve(&mut self, base: &Path) -> Result<(), String> {
        for f in [&mut self.url_file, &mut self.ca_file].into_iter().flatten() {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        if self.backend == Backend::Sqlite {
            if self.url.is_some() || self.url_file.is_some() || self.ca_file.is_some() {
                return Err("storage.url, url_file and ca_file need storage.backend = \"postgres\"".into());
            }
            return Ok(());
        }
        match (&self.url, &self.url_file) {
            (Some(_), Some(_)) => return Err("storage: set url or url_file, not both".into()),
            (None, None) => return Err("storage.backend = \"postgres\" needs storage.url_file (or url)".into()),
            (None, Some(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| format!("storage.url_file {}: {e}", path.display()))?;
                self.url = Some(Secret(text.lines().next().unwrap_or("").trim().to_string()));
            }
            (Some(_), None) => {}
        }
        if self.url.as_ref().is_none_or(|u| u.0.is_empty()) {
            return Err("storage.url is empty".into());
        }
        if self.node_id.as_ref().is_some_and(|n| n.trim().is_empty() || n.chars().any(char::is_control)) {
            return Err("storage.node_id must be a non-empty name".into());
        }
        Ok(())
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
    /// Rotate `auth.log` when it reaches this many bytes (0: no size limit).
    pub auth_log_max_bytes: u64,
    /// Rotate `auth.log` at midnight UTC.
    pub auth_log_daily: bool,
    /// Rotated files kept (`auth.log.1` newest); older ones are deleted.
    pub auth_log_keep: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
            auth_log_max_bytes: 0,
            auth_log_daily: false,
            auth_log_keep: 7,
        }
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
    /// During a secret rollover, the old secret: requests signed with either are
    /// accepted (and answered with the one they used) until this key is removed.
    #[serde(default)]
    pub previous_secret: Option<Secret>,
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
    /// Where the NAS listens for Disconnect-Requests (RFC 5176; `portcullis sessions
    /// disconnect`).
    #[serde(default = "coa_port")]
    pub coa_port: u16,
}

fn coa_port() -> u16 {
    3799
}

impl ClientConfig {
    /// What the client is, without its secret (as the client administration lists it).
    pub fn settings(&self) -> portcullis_storage::ClientSettings {
        portcullis_storage::ClientSettings {
            name: self.name.clone(),
            address: self.address,
            vendor: self.vendor,
            require_message_authenticator: self.require_message_authenticator,
            limit_proxy_state: self.limit_proxy_state,
            send_message_authenticator: self.send_message_authenticator,
        }
    }
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
        let text = "[radius]\nacct_listen = [\"127.0.0.1:1813\"]\nauth_listen = [\"127.0.0.1:1812\"]\n\n[storage]\ndata_dir = \"portcullis-data\"\n\n[[client]]\nname = \"localhost\"\naddress = \"127.0.0.1\"\nsecret = \"testing123\"\n\n[[network_policy]]\nname = \"demo: any local user\"\n\n[http]\nlisten = [\"127.0.0.1:8443\"]\n\n[portal]\nenabled = true\n";
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
        if let Err(message) = self.http.check() {
            let line = text.find("[http]").map(|i| line_of(text, i));
            return Err(ConfigError { file: file.into(), line, message });
        }
        if let Err(message) = self.portal.check(&self.http) {
            let line = text.find("[portal]").map(|i| line_of(text, i));
            return Err(ConfigError { file: file.into(), line, message });
        }
        if let Err(e) = self.auth.zone() {
            let line = text.find("time_zone").map(|i| line_of(text, i));
            return Err(ConfigError { file: file.into(), line, message: format!("auth.time_zone: {e}") });
        }
        // Detection rebuilds its profiles from the stored history after a restart: a
        // shorter retention would forget what live detection still remembers.
        let history = self.detect.new_country.history_days.max(self.detect.window_days);
        for (key, days) in [
            ("auth_event_retention_days", self.storage.auth_event_retention_days),
            ("session_retention_days", self.storage.session_retention_days),
        ] {
            if days != 0 && days < history {
                return Err(ConfigError {
                    file: file.into(),
                    line: text.find(key).map(|i| line_of(text, i)),
                    message: format!(
                        "storage.{key} = {days} is shorter than the {history} days of history the detections \
                         keep (detect.new_country.history_days, detect.window_days); a restart would forget what \
                         they remember. Keep at least {history} days, or 0 (forever)"
                    ),
                });
            }
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
            if l.urls.is_empty() || l.urls.iter().any(|u| !ldap_url_is_valid(u)) {
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
        self.storage.resolve(base).map_err(|message| ConfigError {
            file: file.into(),
            line: text.find("[storage]").map(|i| line_of(text, i)),
            message,
        })?;
        for f in &mut self.dictionary.files {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        let nps_dir = self.nps_log.as_mut().map(|n| &mut n.directory);
        let export_files = self
            .exports
            .iter_mut()
            .flat_map(|e| [&mut e.ca_file, &mut e.client_cert_file, &mut e.client_key_file, &mut e.secret_file]);
        let http_files = [&mut self.http.certificate, &mut self.http.private_key];
        for f in [Some(&mut self.eap.certificate), Some(&mut self.eap.private_key), nps_dir]
            .into_iter()
            .flatten()
            .chain(export_files)
            .chain([&mut self.metrics.token_file])
            .chain(http_files)
            .flatten()
        {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        portcullis_export::check(&self.exports).map_err(|e| ConfigError {
            file: file.into(),
            line: None,
            message: e.to_string(),
        })?;
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
            if c.previous_secret.as_ref().is_some_and(|s| s.0.is_empty()) {
                return Err(at(span, format!("client {:?}: previous_secret is empty; remove the key", c.name)));
            }
        }
        self.validate_mfa().map_err(|message| ConfigError { file: file.into(), line: None, message })
    }

    /// Second-factor settings that would admit logins without the factor the
    /// administrator asked for, or make it guessable, are refused.
    fn validate_mfa(&self) -> Result<(), String> {
        use portcullis_auth::policy::MfaMode;
        let Some(mfa) = &self.mfa else {
            if let Some(p) = self.network_policies.iter().find(|p| p.mfa.is_some_and(|m| m != MfaMode::Off)) {
                let mode = if p.mfa == Some(MfaMode::Required) { "required" } else { "optional" };
                return Err(format!(
                    "network_policy {:?} sets mfa = \"{mode}\" but there is no [mfa] section, so its users would be \
                     admitted without a second factor; add an [mfa] section (docs/mfa.md) or remove the policy's mfa key",
                    p.name
                ));
            }
            return Ok(());
        };
        if mfa.lockout_failures == 0 {
            return Err("mfa.lockout_failures must be at least 1 (wrong codes in a row before a lockout)".into());
        }
        if mfa.lockout_seconds == 0 {
            return Err("mfa.lockout_seconds = 0 turns lockout off, leaving codes open to guessing; set how long a \
                        lockout lasts (default 300)"
                .into());
        }
        let shared = [("mfa.database", &mfa.database), ("mfa.state_key_file", &mfa.state_key_file)];
        for (key, path) in shared.iter().filter_map(|(k, p)| p.as_ref().map(|p| (k, p))) {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(format!(
                    "{key} {}: the directory {} does not exist; if it is shared storage, mount it (a new empty file \
                     there would look as if nobody were enrolled)",
                    path.display(),
                    dir.display()
                ));
            }
        }
        Ok(())
    }

    /// Every setting that weakens authentication, one sentence each: `check-config`
    /// prints them and `serve` logs them. None of them makes the configuration invalid.
    pub fn warnings(&self) -> Vec<String> {
        use portcullis_auth::policy::MfaMode;
        let mut out = Vec::new();
        if self.clients.is_empty() {
            out.push("no [[client]] is configured: only clients added with `portcullis clients add` are served".into());
        }
        if self.metrics.enabled && self.http.listen.is_empty() {
            out.push("[metrics] is enabled but [http] has no listen address: /metrics is not served".into());
        }
        for c in self.client_list() {
            let name = &c.name;
            let len = c.secret.as_ref().map_or(0, |s| s.expose().chars().count());
            if len < 16 {
                out.push(format!("client {name:?} has a {len}-character secret; RFC 2865 §3 recommends at least 16"));
            }
            if c.previous_secret.is_some() {
                out.push(format!(
                    "client {name:?} still accepts previous_secret; remove it once every NAS uses the new secret"
                ));
            }
            out.extend(c.settings().warnings());
        }
        for l in &self.ldap {
            for u in l.urls.iter().filter(|u| u.starts_with("ldap://") && !l.starttls) {
                out.push(format!(
                    "ldap {:?}: {u} without starttls sends the bind and users' passwords in clear",
                    l.name
                ));
            }
        }
        if self.auth.min_password_length < MIN_PASSWORD_LENGTH {
            out.push(format!(
                "auth.min_password_length = {} allows local passwords shorter than {MIN_PASSWORD_LENGTH}",
                self.auth.min_password_length
            ));
        }
        let Some(mfa) = &self.mfa else { return out };
        for n in &mfa.exempt_nas {
            if n.prefix < if n.addr.is_ipv4() { 24 } else { 64 } {
                out.push(format!("mfa.exempt_nas {n} is wider than a /24 (IPv6 /64): logins through it skip MFA"));
            }
        }
        if mfa.lockout_seconds < 60 || mfa.lockout_failures > 10 {
            out.push(format!(
                "mfa lockout after {} wrong codes for {} s leaves codes guessable (at least 60 s after at most 10 \
                 failures is advised)",
                mfa.lockout_failures, mfa.lockout_seconds
            ));
        }
        if mfa.fail_mode == FailMode::Safe {
            out.push(
                "mfa.fail_mode = \"safe\" admits logins without a second factor while the MFA database, the \
                 notifier or privacyIDEA fails"
                    .into(),
            );
        }
        if !mfa.require_user_match {
            out.push(
                "mfa.require_user_match = false admits users without an enrolled factor where MFA is required".into(),
            );
        }
        let granting = self.network_policies.iter().filter(|p| p.grant);
        let (unset, set): (Vec<_>, Vec<_>) = granting.partition(|p| p.mfa.is_none());
        if mfa.policy_default == MfaMode::Off {
            let names: Vec<String> = unset.iter().map(|p| format!("{:?}", p.name)).collect();
            out.push(format!(
                "mfa.policy_default = \"off\": network policies without an mfa key admit without a second factor{}",
                if names.is_empty() { String::new() } else { format!(" ({})", names.join(", ")) }
            ));
        } else if mfa.policy_default == MfaMode::Optional {
            out.push(
                "mfa.policy_default = \"optional\": network policies without an mfa key admit users who have no \
                 factor on the password alone"
                    .into(),
            );
        }
        for p in set {
            match p.mfa {
                Some(MfaMode::Off) => {
                    out.push(format!("network_policy {:?}: mfa = \"off\" admits without a second factor", p.name));
                }
                Some(MfaMode::Optional) => out.push(format!(
                    "network_policy {:?}: mfa = \"optional\" admits users who have no factor on the password alone",
                    p.name
                )),
                _ => {}
            }
        }
        let plain = |url: &str| url.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://"));
        if mfa.push.as_ref().is_some_and(|p| plain(&p.webhook_url)) {
            out.push("mfa.push.webhook_url is plain http://: the webhook and its credentials cross in clear".into());
        }
        if mfa.privacyidea.as_ref().is_some_and(|p| plain(&p.url)) {
            out.push("mfa.privacyidea.url is plain http://: codes and passwords cross in clear".into());
        }
        out
    }

    /// The clients without their spans.
    pub fn client_list(&self) -> impl Iterator<Item = &ClientConfig> {
        self.clients.iter().map(Spanned::get_ref)
    }

    /// The clients' settings, without their secrets.
    pub fn client_settings(&self) -> Vec<portcullis_storage::ClientSettings> {
        self.client_list().map(ClientConfig::settings).collect()
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
        assert!(d.http.tls);
        assert_eq!(d.http.base_url().as_deref(), Some("https://127.0.0.1:8443"));
    }

    #[test]
    fn plain_http_is_for_loopback_only() {
        let portal = "[portal]\nenabled = true\n";
        let over_tls = parse(&format!("{OK}[http]\nlisten = [\"0.0.0.0:8443\"]\n{portal}")).unwrap();
        assert!(over_tls.http.tls, "HTTPS is the default, on any address");
        for listen in ["\"0.0.0.0:8080\"", "\"127.0.0.1:8080\", \"[2001:db8::1]:8080\""] {
            let e = parse(&format!("{OK}[http]\nlisten = [{listen}]\ntls = false\n{portal}")).unwrap_err();
            assert!(e.message.contains("http.tls = false") && e.message.contains("loopback"), "{e}");
            assert!(e.line.is_some(), "{e}");
        }
        let plain = parse(&format!("{OK}[http]\nlisten = [\"127.0.0.1:8080\", \"[::1]:8080\"]\ntls = false\n{portal}"));
        assert_eq!(plain.unwrap().http.base_url().as_deref(), Some("http://127.0.0.1:8080"));
        let e = parse(&format!("{OK}[http]\nlisten = [\"127.0.0.1:8443\"]\ncertificate = \"c.pem\"\n")).unwrap_err();
        assert!(e.message.contains("http.private_key"), "{e}");
        let both = "certificate = \"c.pem\"\nprivate_key = \"k.pem\"\n";
        let e = parse(&format!("{OK}[http]\nlisten = [\"127.0.0.1:8080\"]\ntls = false\n{both}")).unwrap_err();
        assert!(e.message.contains("tls = false"), "{e}");
    }

    const MFA_POLICY: &str = "[[network_policy]]\nname = \"staff\"\nmfa = \"required\"\n";

    #[test]
    fn a_policy_asking_for_mfa_needs_an_mfa_section() {
        for mode in ["required", "optional"] {
            let e = parse(&format!("{OK}{}", MFA_POLICY.replace("required", mode))).unwrap_err();
            assert!(e.message.contains("\"staff\"") && e.message.contains(mode), "{e}");
            assert!(e.message.contains("add an [mfa] section"), "{e}");
        }
        parse(&format!("{OK}{}", MFA_POLICY.replace("required", "off"))).unwrap();
        parse(&format!("{OK}{MFA_POLICY}[mfa]\n")).unwrap();
    }

    #[test]
    fn lockout_cannot_be_turned_off() {
        let e = parse(&format!("{OK}[mfa]\nlockout_seconds = 0\n")).unwrap_err();
        assert!(e.message.contains("mfa.lockout_seconds = 0"), "{e}");
        let e = parse(&format!("{OK}[mfa]\nlockout_failures = 0\n")).unwrap_err();
        assert!(e.message.contains("mfa.lockout_failures"), "{e}");
        parse(&format!("{OK}[mfa]\nlockout_failures = 1\nlockout_seconds = 1\n")).unwrap();
    }

    #[test]
    fn a_shared_mfa_file_in_a_missing_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        for key in ["database", "state_key_file"] {
            let missing = d.path().join("not-mounted/mfa.file");
            let e = parse(&format!("{OK}[mfa]\n{key} = {:?}\n", missing.display().to_string())).unwrap_err();
            assert!(e.message.contains(&format!("mfa.{key}")) && e.message.contains("does not exist"), "{e}");
            let present = d.path().join("mfa.file");
            parse(&format!("{OK}[mfa]\n{key} = {:?}\n", present.display().to_string())).unwrap();
        }
        assert!(!d.path().join("not-mounted").exists());
    }

    #[test]
    fn min_password_length_defaults_to_8() {
        let c = parse(OK).unwrap();
        assert_eq!(c.auth.min_password_length, 8);
        assert!(c.auth.check_password("1234567").unwrap_err().contains("at least 8"));
        c.auth.check_password("12345678").unwrap();
        assert!(c.auth.check_password("ééééééé").is_err(), "characters are counted, not bytes");
        let c = parse(&format!("{OK}[auth]\nmin_password_length = 12\n")).unwrap();
        assert!(c.auth.check_password("12345678901").is_err());
    }

    #[test]
    fn ldap_urls_must_be_scheme_host_and_port() {
        for good in ["ldap://dc1.example.com", "ldaps://10.0.0.5:636", "ldap://[2001:db8::1]:389/", "ldap://a-b"] {
            assert!(ldap_url_is_valid(good), "{good}");
        }
        for bad in [
            "ldap://",
            "ldap://host:",
            "ldap://host:99999",
            "ldap://ho st",
            "http://dc1",
            "ldap://h/dc=x",
            "ldap://[::1",
        ] {
            assert!(!ldap_url_is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn urls_are_redacted_to_scheme_and_host() {
        assert_eq!(redact_url("https://ntfy.sh/vpn-topic-s3cret"), "https://ntfy.sh/<redacted>");
        assert_eq!(redact_url("https://user:pw@host:8443/p?q=1#f"), "https://host:8443/<redacted>");
        assert_eq!(redact_url("http://[::1]:80?token=x"), "http://[::1]:80/<redacted>");
        assert_eq!(redact_url("not a url with s3cret"), "<redacted>");
    }

    /// Every commented-out section of the example turned on.
    fn example_with_everything() -> String {
        let text = include_str!("../../../portcullis.example.toml");
        let mut out = String::new();
        for line in text.lines() {
            let rest = line.strip_prefix("# ").unwrap_or(line);
            let key =
                rest.split_once(" = ").is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            out.push_str(if rest.starts_with('[') || key { rest } else { line });
            out.push('\n');
        }
        out
    }

    #[test]
    fn debug_of_the_example_configuration_shows_no_secret() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("asa.secret"), "asa-secret-from-the-file\n").unwrap();
        let text = example_with_everything()
            .replace("/etc/portcullis/asa.secret", &d.path().join("asa.secret").display().to_string());
        let secrets = [
            "change-me-to-a-long-random-string",
            "asa-secret-from-the-file",
            "vpn-approvals",
            "Bearer ",
            "ntfy-token",
            "pi-admin-pass",
            "ldap-bind-s3cret",
        ];
        let extra = "\n[mfa.privacyidea]\nurl = \"https://admin:pi-admin-pass@pi.example.com/path\"\n";
        let ldap = "\n[[ldap]]\nname = \"plain\"\nurls = [\"ldap://ldap.example.com\"]\nbind_dn = \"cn=svc\"\n\
                    bind_password = \"ldap-bind-s3cret\"\nbase_dn = \"dc=example\"\n";
        let c = parse(&format!("{text}{ldap}")).unwrap();
        let mfa = c.mfa.as_ref().expect("the example's [mfa] section is on");
        let push = mfa.push.as_ref().expect("the example's [mfa.push] section is on");
        assert!(push.webhook_url.contains("vpn-approvals"));
        assert!(push.webhook_headers.values().any(|v| v.contains("ntfy-token")), "the example shows a header");
        assert!(c.ldap.len() == 2 && c.eap.certificate.is_some() && c.nps_log.is_some() && !c.geo.databases.is_empty());
        let printed = format!("{c:?}");
        for secret in secrets {
            assert!(!printed.contains(secret), "{secret:?} in {printed}");
        }
        assert!(printed.contains("https://ntfy.example.com/<redacted>"), "{printed}");
        // privacyIDEA, placed in the [mfa] table.
        let with_pi = text.replace("[mfa.push]", &format!("{extra}\n[mfa.push]"));
        let c = parse(&with_pi).unwrap();
        let printed = format!("{c:?}");
        assert!(c.mfa.as_ref().unwrap().privacyidea.is_some());
        assert!(!printed.contains("pi-admin-pass") && !printed.contains("admin:"), "{printed}");
        assert!(printed.contains("https://pi.example.com/<redacted>"), "{printed}");
    }

    fn warnings(text: &str) -> Vec<String> {
        parse(&format!("{OK}{text}")).unwrap().warnings()
    }

    fn has(warnings: &[String], words: &str) -> bool {
        warnings.iter().any(|w| w.contains(words))
    }

    #[test]
    fn a_strong_configuration_has_no_warnings() {
        let strong = OK.replace("s3cret", "0123456789abcdef");
        let text = format!("{strong}{MFA_POLICY}[mfa]\nexempt_nas = [\"192.0.2.0/24\", \"2001:db8::/64\"]\n");
        assert_eq!(parse(&text).unwrap().warnings(), Vec::<String>::new());
    }

    #[test]
    fn every_weakening_is_warned_about() {
        let w = warnings(
            "[[client]]\nname = \"all\"\naddress = \"0.0.0.0/0\"\nsecret = \"0123456789abcdef\"\n\
             require_message_authenticator = false\nlimit_proxy_state = false\nsend_message_authenticator = false\n\
             [[client]]\nname = \"all6\"\naddress = \"::/0\"\nsecret = \"0123456789abcdef\"\n\
             [[client]]\nname = \"wide\"\naddress = \"10.0.0.0/7\"\nsecret = \"0123456789abcdef\"\n\
             [[client]]\nname = \"eight\"\naddress = \"11.0.0.0/8\"\nsecret = \"0123456789abcdef\"\n\
             [auth]\nmin_password_length = 4\n\
             [[ldap]]\nname = \"plain\"\nurls = [\"ldap://a\", \"ldaps://b\"]\nbind_dn = \"x\"\nbind_password = \"y\"\nbase_dn = \"z\"\n\
             [[ldap]]\nname = \"tls\"\nurls = [\"ldap://c\"]\nstarttls = true\nbind_dn = \"x\"\nbind_password = \"y\"\nbase_dn = \"z\"\n\
             [[network_policy]]\nname = \"default\"\n\
             [[network_policy]]\nname = \"opt\"\nmfa = \"optional\"\n\
             [[network_policy]]\nname = \"none\"\nmfa = \"off\"\n\
             [[network_policy]]\nname = \"deny\"\ngrant = false\n\
             [mfa]\npolicy_default = \"off\"\nfail_mode = \"safe\"\nrequire_user_match = false\n\
             exempt_nas = [\"10.0.0.0/16\", \"10.1.0.0/24\", \"2001:db8::/48\"]\n\
             [mfa.privacyidea]\nurl = \"http://pi\"\n\
             [mfa.push]\nwebhook_url = \"http://ntfy/topic\"\npublic_url = \"https://p\"\n",
        );
        for words in [
            "client \"rras-1\" has a 6-character secret",
            "client \"all\" address 0.0.0.0/0 covers every address",
            "client \"all6\" address ::/0 covers every address",
            "client \"wide\" address 10.0.0.0/7 is a very wide network",
            "client \"all\": require_message_authenticator = false",
            "client \"all\": limit_proxy_state = false",
            "client \"all\": send_message_authenticator = false",
            "ldap \"plain\": ldap://a without starttls",
            "auth.min_password_length = 4",
            "mfa.exempt_nas 10.0.0.0/16 is wider",
            "mfa.exempt_nas 2001:db8::/48 is wider",
            "mfa.fail_mode = \"safe\"",
            "mfa.require_user_match = false",
            "network policies without an mfa key admit without a second factor (\"default\")",
            "network_policy \"opt\": mfa = \"optional\"",
            "network_policy \"none\": mfa = \"off\"",
            "mfa.push.webhook_url is plain http://",
            "mfa.privacyidea.url is plain http://",
        ] {
            assert!(has(&w, words), "no warning {words:?} in {w:#?}");
        }
        assert_eq!(w.len(), 18, "{w:#?}");
        assert!(!has(&w, "\"eight\"") && !has(&w, "ldaps://") && !has(&w, "\"tls\"") && !has(&w, "10.1.0.0/24"));
        let w = warnings("[[network_policy]]\nname = \"p\"\n[mfa]\npolicy_default = \"optional\"\n");
        assert!(has(&w, "mfa.policy_default = \"optional\""), "{w:#?}");
        assert!(has(&parse("").unwrap().warnings(), "no [[client]]"));
    }

    #[test]
    fn time_windows_follow_daylight_saving_in_an_iana_zone() {
        use portcullis_auth::policy::{PolicyDecision, PolicyRequest, evaluate, reason};
        let text = format!(
            "{OK}\n[auth]\ntime_zone = \"Europe/Berlin\"\n\n[[network_policy]]\nname = \"office hours\"\n\
             [[network_policy.time_windows]]\ndays = [\"mon\"]\nhours = \"08:00-17:00\"\n"
        );
        let c = parse(&text).unwrap();
        let zone = c.auth.zone().unwrap();
        let decide = |rfc3339: &str| {
            let f = time::format_description::well_known::Rfc3339;
            let now = time::OffsetDateTime::parse(rfc3339, &f).unwrap().unix_timestamp();
            let (weekday, minute) = zone.weekday_minute(now);
            evaluate(&c.network_policies, &PolicyRequest { weekday, minute, ..Default::default() }).0
        };
        let granted = PolicyDecision::Grant { policy: "office hours".into(), dialin_override: false };
        let outside = PolicyDecision::Deny { policy: Some("office hours".into()), reason: reason::LOGON_HOURS };
        // Monday 07:30 UTC is 08:30 in winter (CET) and 09:30 in summer (CEST).
        assert_eq!(decide("2026-03-23T07:30:00Z"), granted);
        assert_eq!(decide("2026-03-30T07:30:00Z"), granted);
        // Monday 06:30 UTC: 07:30 before the change (closed), 08:30 after it (open).
        assert_eq!(decide("2026-03-23T06:30:00Z"), outside);
        assert_eq!(decide("2026-03-30T06:30:00Z"), granted);
        // 16:30 UTC: 17:30 CET (closed) and 18:30 CEST (closed); 15:30 UTC in summer is 17:30.
        assert_eq!(decide("2026-03-23T15:30:00Z"), granted);
        assert_eq!(decide("2026-03-30T15:30:00Z"), outside);
        // And back in October.
        assert_eq!(decide("2026-10-19T06:30:00Z"), granted);
        assert_eq!(decide("2026-10-26T06:30:00Z"), outside);
    }

    #[test]
    fn retention_shorter_than_the_detection_history_is_refused() {
        let storage = OK.replace("[[client]]", "auth_event_retention_days = 30\n\n[[client]]");
        let e = parse(&storage).unwrap_err();
        assert!(e.message.contains("auth_event_retention_days = 30") && e.message.contains("90 days"), "{e}");
        assert_eq!(e.line, Some(7));
        assert!(parse(&OK.replace("[[client]]", "session_retention_days = 0\n\n[[client]]")).is_ok());
        let c = parse(&OK.replace("[[client]]", "session_retention_days = 90\n\n[[client]]")).unwrap();
        assert_eq!((c.storage.session_retention_days, c.storage.auth_event_retention_days), (90, 365));
    }

    #[test]
    fn time_zone_takes_names_and_offsets_and_refuses_the_rest() {
        for good in ["Europe/Berlin", "America/New_York", "UTC", "+01:00", "-05:30"] {
            assert!(parse(&format!("{OK}[auth]\ntime_zone = \"{good}\"\n")).is_ok(), "{good}");
        }
        let e = parse(&format!("{OK}[auth]\ntime_zone = \"Europe/Berlinn\"\n")).unwrap_err();
        assert!(e.message.contains("auth.time_zone") && e.message.contains("IANA"), "{e}");
        assert_eq!(e.line, Some(13));
    }
}
