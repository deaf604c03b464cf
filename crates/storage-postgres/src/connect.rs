//! Connecting: the credential-bearing URL (never printed), TLS through rustls, and the
//! redaction every message that could carry the URL or its password goes through.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portcullis_storage::StorageError;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A PostgreSQL connection string (`postgres://user:password@host:port/db?...` or
/// `host=... user=... password=...`). It carries a password: `Debug` and `Display`
/// show it with the password replaced.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for the driver only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({:?})", redact(&self.0))
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

/// How the connection's TLS certificate is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the certificate authorities the server's certificate must chain to;
    /// none: the system's roots.
    pub ca_file: Option<PathBuf>,
}

const HIDDEN: &str = "***";

/// The connection string with its password replaced by `***`, in the URL's user
/// information and in `password=` parameters (URL query or key/value form).
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..].find(['/', '?']).map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@').map(|i| rest_start + i) {
            if let Some(colon) = out[rest_start..at].find(':').map(|i| rest_start + i) {
                out.replace_range(colon + 1..at, HIDDEN);
            }
        }
    }
    redact_parameters(&out)
}

/// Replaces the values of `password=` parameters, separated by `&` or white space,
/// quoted or not.
fn redact_parameters(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = find_parameter(rest) {
        let value_start = i + "password=".len();
        out.push_str(&rest[..value_start]);
        out.push_str(HIDDEN);
        let value = &rest[value_start..];
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            // A quoted value ends at the first quote not escaped by a backslash.
            let mut escaped = false;
            quoted
                .char_indices()
                .find(|&(_, c)| {
                    let close = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    close
                })
                .map_or(value.len(), |(j, _)| j + 2)
        } else {
            value.find(|c: char| c == '&' || c.is_whitespace()).unwrap_or(value.len())
        };
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// Where a `password=` parameter starts (at the start or after a separator).
fn find_parameter(s: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("password=").map(|i| from + i) {
        let before = lower[..i].chars().next_back();
        if before.is_none_or(|c| c == '?' || c == '&' || c.is_whitespace()) {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// A message with every occurrence of `password` replaced.
pub(crate) fn scrub(message: &str, password: Option<&[u8]>) -> String {
    let message = redact(message);
    match password.and_then(|p| std::str::from_utf8(p).ok()).filter(|p| !p.is_empty()) {
        Some(p) => message.replace(p, HIDDEN),
        None => message,
    }
}

/// The parsed connection settings with Portcullis's timeouts.
pub(crate) fn config(url: &DatabaseUrl) -> Result<postgres::Config, StorageError> {
    let mut config: postgres::Config = url
        .expose()
        .parse()
        .map_err(|e: postgres::Error| StorageError::Invalid(format!("storage.url: {}", scrub(&e.to_string(), None))))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    // A database that stops answering (a network partition) is noticed within
    // seconds instead of at the operating system's TCP timeout.
    config.keepalives(true).keepalives_idle(Duration::from_secs(10)).tcp_user_timeout(Duration::from_secs(15));
    if config.get_application_name().is_none() {
        config.application_name("portcullis");
    }
    // The server notices a vanished client as fast, so a session (and the node lock it
    // holds) does not outlive a partition by the operating system's two hours.
    if config.get_options().is_none() {
        config.options("-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3");
    }
    // Without an explicit sslmode the driver would fall back to clear text (and accept
    // a clear-text password request) when an on-path attacker refuses TLS: toward
    // anything but this machine, TLS is required unless the URL says otherwise.
    if !mentions_sslmode(url.expose()) && !all_hosts_local(&config) {
        config.ssl_mode(postgres::config::SslMode::Require);
    }
    Ok(config)
}

fn mentions_sslmode(url: &str) -> bool {
    url.to_ascii_lowercase().contains("sslmode")
}

/// Every host is a Unix socket directory or a loopback address (or `localhost`).
fn all_hosts_local(config: &postgres::Config) -> bool {
    let hosts = config.get_hosts();
    !hosts.is_empty()
        && hosts.iter().all(|h| match h {
            postgres::config::Host::Tcp(name) => {
                name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
            }
            postgres::config::Host::Unix(_) => true,
        })
}

/// The TLS connector: rustls with the ring provider, TLS 1.2 or 1.3, the server's
/// certificate checked against `ca_file` or the system's roots. Whether TLS is used is
/// the URL's `sslmode` (`disable`, `prefer` or `require`); without one, `require` toward
/// another machine and `prefer` on this one.
pub(crate) fn tls(options: &TlsOptions) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StorageError> {
    let mut roots = rustls::RootCertStore::empty();
    match &options.ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect())
                .map_err(|e| StorageError::Invalid(format!("storage.ca_file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(StorageError::Invalid(format!("storage.ca_file {}: no certificate in it", path.display())));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| StorageError::Invalid(format!("storage.ca_file {}: {e}", path.display())))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StorageError::Invalid(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_required_toward_another_machine_unless_the_url_says_otherwise() {
        use postgres::config::SslMode;
        let mode = |url: &str| config(&DatabaseUrl::new(url)).unwrap().get_ssl_mode();
        assert_eq!(mode("postgres://app:pw@db.example/portcullis"), SslMode::Require);
        assert_eq!(mode("host=10.0.0.5 user=app password=pw dbname=portcullis"), SslMode::Require);
        assert_eq!(mode("postgres://app:pw@127.0.0.1/portcullis"), SslMode::Prefer);
        assert_eq!(mode("host=/run/postgresql user=app dbname=portcullis"), SslMode::Prefer);
        assert_eq!(mode("postgres://app:pw@db.example/portcullis?sslmode=disable"), SslMode::Disable);
    }

    #[test]
    fn passwords_never_show() {
        for (url, shown) in [
            ("postgres://app:s3cr%40t@db.example:5432/portcullis", "postgres://app:***@db.example:5432/portcullis"),
            ("postgresql://app:p@ss@db/x?sslmode=require", "postgresql://app:***@db/x?sslmode=require"),
            (
                "postgres://db/x?user=app&password=hunter2&sslmode=require",
                "postgres://db/x?user=app&password=***&sslmode=require",
            ),
            ("host=db user=app password=hunter2 dbname=x", "host=db user=app password=*** dbname=x"),
            ("host=db password='hun ter\\'2' dbname=x", "host=db password=*** dbname=x"),
            ("host=db PASSWORD=hunter2", "host=db PASSWORD=***"),
            ("postgres://app@db/x", "postgres://app@db/x"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
            let d = DatabaseUrl::new(url);
            for printed in [format!("{d:?}"), d.to_string()] {
                assert!(
                    !printed.contains("hunter2") && !printed.contains("s3cr") && !printed.contains("p@ss"),
                    "{printed}"
                );
            }
        }
        assert_eq!(scrub("failed for x: hunter2!", Some(b"hunter2")), "failed for x: ***!");
    }
}
