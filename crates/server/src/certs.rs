//! Certificates the server makes for itself: the demo CA and server certificate for
//! PEAP (`portcullis cert init`), and the self-signed certificate of the `[http]`
//! listener, made on first start when none is configured and reused afterwards. Also
//! what an administrator compares in a browser: the SHA-256 fingerprint and the expiry.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::Config;

/// Paths of the files `init` writes.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

impl CertFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            certificate: dir.join("server.pem"),
            private_key: dir.join("server.key"),
        }
    }

    pub fn exist(&self) -> bool {
        self.certificate.exists() && self.private_key.exists()
    }
}

/// Makes a CA (ECDSA P-256, ten years) and a server certificate for `name` (two years,
/// serverAuth) signed by it. Keys are written readable by the owner only.
pub fn init(dir: &Path, name: &str, force: bool) -> Result<CertFiles, String> {
    let files = CertFiles::in_dir(dir);
    if !force && [&files.ca, &files.ca_key, &files.certificate, &files.private_key].iter().any(|p| p.exists()) {
        return Err(format!("{} already holds certificate files; pass --force to replace them", dir.display()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let now = time::OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().map_err(made)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(made)?;
    ca.distinguished_name = dn(&format!("Portcullis demo CA ({name})"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(3650);
    let ca_cert = ca.self_signed(&ca_key).map_err(made)?;
    let server_key = KeyPair::generate().map_err(made)?;
    let mut server = server_params(vec![name.to_string()], name, 730)?;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key).map_err(made)?;
    write(&files.ca, ca_cert.pem().as_bytes(), false)?;
    write(&files.ca_key, ca_key.serialize_pem().as_bytes(), true)?;
    write(&files.certificate, server_cert.pem().as_bytes(), false)?;
    write(&files.private_key, server_key.serialize_pem().as_bytes(), true)?;
    Ok(files)
}

/// A serverAuth certificate's parameters for `names`, valid from yesterday for `days`.
fn server_params(names: Vec<String>, common_name: &str, days: i64) -> Result<CertificateParams, String> {
    let now = time::OffsetDateTime::now_utc();
    let mut params = CertificateParams::new(names).map_err(made)?;
    params.distinguished_name = dn(common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
    Ok(params)
}

fn made(e: rcgen::Error) -> String {
    format!("cannot make the certificate: {e}")
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Portcullis");
    dn
}

/// Writes `bytes` to `path` through a temporary file renamed over it, so a reader
/// never sees half a file; `secret` files are created readable by the owner only.
fn write(path: &Path, bytes: &[u8], secret: bool) -> Result<(), String> {
    use std::io::Write;
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    let temporary = path.with_file_name(name);
    let _ = std::fs::remove_file(&temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let _ = secret;
    let mut f = options.open(&temporary).map_err(fail)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)
}

/// Validity of the `[http]` listener's self-signed certificate, in days (within the
/// 398 days browsers accept).
const HTTP_DAYS: i64 = 397;
/// A self-signed certificate this close to its expiry is replaced at start.
const RENEW_DAYS: i64 = 30;

/// Where the self-signed certificate of the `[http]` listener is kept.
pub fn http_tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("http-tls")
}

/// The certificate and key files the `[http]` listener serves: the configured ones, or
/// those of `<data_dir>/http-tls/`.
pub fn http_files(config: &Config) -> (PathBuf, PathBuf) {
    match (&config.http.certificate, &config.http.private_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let dir = http_tls_dir(&config.storage.data_dir);
            (dir.join("cert.pem"), dir.join("key.pem"))
        }
    }
}

/// The names the self-signed certificate must carry: localhost, the loopback
/// addresses, every specific listen address, and the hosts of `[http] public_url` and
/// `[mfa.push] public_url`.
pub fn http_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    let listen = config.http.listen.iter().map(|a| a.ip()).filter(|ip| !ip.is_unspecified()).map(|ip| ip.to_string());
    let urls = [
        config.http.public_url.as_deref(),
        config.mfa.as_ref().and_then(|m| m.push.as_ref()).map(|p| p.public_url.as_str()),
    ];
    for name in listen.chain(urls.into_iter().flatten().filter_map(url_host)) {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            names.push(name);
        }
    }
    names
}

/// The host of `scheme://[user@]host[:port]/…`, without brackets around an IPv6 address.
fn url_host(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// What became of the `[http]` certificate at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpCertificate {
    /// The configured files.
    Configured,
    /// The self-signed certificate made before, still valid and naming every host.
    Reused,
    /// A self-signed certificate made now, with a new key (there was none before).
    Made,
    /// The self-signed certificate renewed (it was expiring or missing a name) with
    /// the key it had, so key pins (the SPKI hash) still hold; the browser's
    /// fingerprint changes from `previous`.
    Renewed { previous: String },
}

/// Makes sure the `[http]` certificate exists: with configured files, nothing to do;
/// otherwise the self-signed one in `<data_dir>/http-tls/` is reused, or made (key mode
/// 0600) when it is missing, expires within 30 days or lacks one of [`http_names`].
/// A kept certificate that cannot be read is an error, never silently replaced.
pub fn ensure_http_certificate(config: &Config) -> Result<HttpCertificate, String> {
    if config.http.certificate.is_some() {
        return Ok(HttpCertificate::Configured);
    }
    let (cert, key) = http_files(config);
    let names = http_names(config);
    let mut previous = None;
    if cert.exists() && key.exists() {
        let pem = std::fs::read(&cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
        let summary = summarize(&pem).map_err(|e| {
            format!("{}: {e}; delete {} to have a new certificate made", cert.display(), cert.display())
        })?;
        let fresh = summary.not_after - time::OffsetDateTime::now_utc() > time::Duration::days(RENEW_DAYS);
        let named = names.iter().all(|n| summary.names.iter().any(|s| s.eq_ignore_ascii_case(n)));
        if fresh && named {
            return Ok(HttpCertificate::Reused);
        }
        previous = Some(summary.fingerprint());
    }
    let dir = http_tls_dir(&config.storage.data_dir);
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // A renewal keeps the key: pins on it hold, and the key file is not rewritten.
    let kept = match &previous {
        Some(_) => {
            let text = std::fs::read_to_string(&key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
            Some(KeyPair::from_pem(&text).map_err(|e| {
                format!("{}: {e}; delete it and {} to have a new key made", key.display(), cert.display())
            })?)
        }
        None => None,
    };
    let pair = match kept {
        Some(pair) => pair,
        None => {
            let pair = KeyPair::generate().map_err(made)?;
            write(&key, pair.serialize_pem().as_bytes(), true)?;
            pair
        }
    };
    let certificate = server_params(names, "Portcullis (self-signed)", HTTP_DAYS)?.self_signed(&pair).map_err(made)?;
    write(&cert, certificate.pem().as_bytes(), false)?;
    Ok(match previous {
        Some(previous) => HttpCertificate::Renewed { previous },
        None => HttpCertificate::Made,
    })
}

/// What an administrator checks of a certificate.
#[derive(Debug, Clone)]
pub struct Summary {
    /// SHA-256 of the certificate (DER): what a browser shows as its fingerprint.
    pub sha256: [u8; 32],
    /// SHA-256 of the SubjectPublicKeyInfo (DER): what key pins name.
    pub spki_sha256: [u8; 32],
    pub not_before: time::OffsetDateTime,
    pub not_after: time::OffsetDateTime,
    /// DNS names and IP addresses of the subjectAltName extension.
    pub names: Vec<String>,
}

impl Summary {
    /// The fingerprint as browsers print it: `AB:CD:…`.
    pub fn fingerprint(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
    }

    /// The SPKI hash in base64, as Chromium's `--ignore-certificate-errors-spki-list`
    /// and HTTP key pins take it.
    pub fn spki_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.spki_sha256)
    }
}

/// The first certificate of a PEM chain, summarized.
pub fn summarize(pem: &[u8]) -> Result<Summary, String> {
    let der = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or("no CERTIFICATE block found")?
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san.value.general_names.iter().filter_map(general_name).collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(format!("bad subjectAltName: {e}")),
    };
    Ok(Summary {
        sha256: Sha256::digest(&der).into(),
        spki_sha256: Sha256::digest(cert.public_key().raw).into(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        names,
    })
}

fn general_name(name: &x509_parser::extensions::GeneralName<'_>) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    match name {
        GeneralName::DNSName(dns) => Some((*dns).to_string()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes).ok().map(|b| std::net::Ipv4Addr::from(b).to_string()),
            16 => <[u8; 16]>::try_from(*bytes).ok().map(|b| std::net::Ipv6Addr::from(b).to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// The rustls configuration of the `[http]` listener from PEM files (HTTP/1.1 by ALPN;
/// the one crypto provider of the tree, ring).
pub fn http_tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no CERTIFICATE block found", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, extra: &str) -> Config {
        let text = format!(
            "[radius]\nacct_listen = [\"127.0.0.1:0\"]\n[storage]\ndata_dir = \"data\"\n[http]\nlisten = \
             [\"127.0.0.1:0\"]\n{extra}"
        );
        Config::parse("t.toml", &text, dir).unwrap()
    }

    #[test]
    fn the_self_signed_certificate_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), "public_url = \"https://vpn.example.com:8443/\"\n");
        assert_eq!(ensure_http_certificate(&c).unwrap(), HttpCertificate::Made);
        let (cert, key) = http_files(&c);
        assert_eq!(cert, dir.path().join("data/http-tls/cert.pem"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(key.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        }
        let first = std::fs::read(&cert).unwrap();
        let summary = summarize(&first).unwrap();
        assert_eq!(summary.names, ["localhost", "127.0.0.1", "::1", "vpn.example.com"]);
        assert!(summary.not_after - time::OffsetDateTime::now_utc() > time::Duration::days(390));
        assert_eq!(summary.fingerprint().len(), 32 * 3 - 1);
        assert!(http_tls_config(&cert, &key).is_ok());

        assert_eq!(ensure_http_certificate(&c).unwrap(), HttpCertificate::Reused);
        assert_eq!(std::fs::read(&cert).unwrap(), first, "kept as it was");
        // A new public host needs a certificate that names it.
        let moved = config(dir.path(), "public_url = \"https://[2001:db8::1]/\"\n");
        let key_before = std::fs::read(&key).unwrap();
        assert_eq!(
            ensure_http_certificate(&moved).unwrap(),
            HttpCertificate::Renewed { previous: summary.fingerprint() }
        );
        let renewed = summarize(&std::fs::read(&cert).unwrap()).unwrap();
        assert!(renewed.names.contains(&"2001:db8::1".to_string()));
        // Same key: pins on the SPKI hold; the certificate's fingerprint changed.
        assert_eq!((renewed.spki_sha256, std::fs::read(&key).unwrap()), (summary.spki_sha256, key_before));
        assert_ne!(renewed.sha256, summary.sha256);
    }

    #[test]
    fn a_kept_certificate_that_cannot_be_read_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), "");
        let (cert, key) = http_files(&c);
        std::fs::create_dir_all(cert.parent().unwrap()).unwrap();
        std::fs::write(&cert, "garbage").unwrap();
        std::fs::write(&key, "garbage").unwrap();
        let e = ensure_http_certificate(&c).unwrap_err();
        assert!(e.contains("no CERTIFICATE block") && e.contains("delete"), "{e}");
        assert_eq!(std::fs::read(&cert).unwrap(), b"garbage");
        assert!(summarize(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    }

    #[test]
    fn configured_files_are_served_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let files = init(&dir.path().join("tls"), "vpn.example.com", false).unwrap();
        let extra = format!(
            "certificate = \"{}\"\nprivate_key = \"{}\"\n",
            files.certificate.display(),
            files.private_key.display()
        );
        let c = config(dir.path(), &extra);
        assert_eq!(ensure_http_certificate(&c).unwrap(), HttpCertificate::Configured);
        assert!(!http_tls_dir(&c.storage.data_dir).exists());
        let (cert, key) = http_files(&c);
        assert!(http_tls_config(&cert, &key).is_ok());
        assert!(http_tls_config(&key, &cert).is_err());
        assert!(init(&dir.path().join("tls"), "x", false).unwrap_err().contains("--force"));
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://vpn.example.com/approve").as_deref(), Some("vpn.example.com"));
        assert_eq!(url_host("https://u:p@Host.Example:8443").as_deref(), Some("host.example"));
        assert_eq!(url_host("http://[::1]:8080/").as_deref(), Some("::1"));
        assert_eq!(url_host("no scheme"), None);
        assert_eq!(url_host("https:///path"), None);
    }
}
