//! `portcullis cert init`: a demo CA and a server certificate for PEAP.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// Paths of the files `init` writes.
#[derive(Debug, Clone)]
pub(crate) struct CertFiles {
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

impl CertFiles {
    pub(crate) fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            certificate: dir.join("server.pem"),
            private_key: dir.join("server.key"),
        }
    }

    pub(crate) fn exist(&self) -> bool {
        self.certificate.exists() && self.private_key.exists()
    }
}

/// Makes a CA (ECDSA P-256, ten years) and a server certificate for `name` (two years,
/// serverAuth) signed by it. Keys are written readable by the owner only.
pub(crate) fn init(dir: &Path, name: &str, force: bool) -> Result<CertFiles> {
    let files = CertFiles::in_dir(dir);
    if !force && [&files.ca, &files.ca_key, &files.certificate, &files.private_key].iter().any(|p| p.exists()) {
        bail!("{} already holds certificate files; pass --force to replace them", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let now = time::OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = dn(&format!("Portcullis demo CA ({name})"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(3650);
    let ca_cert = ca.self_signed(&ca_key)?;
    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec![name.to_string()])?;
    server.distinguished_name = dn(name);
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = now - time::Duration::days(1);
    server.not_after = now + time::Duration::days(730);
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key)?;
    write(&files.ca, ca_cert.pem().as_bytes(), false)?;
    write(&files.ca_key, ca_key.serialize_pem().as_bytes(), true)?;
    write(&files.certificate, server_cert.pem().as_bytes(), false)?;
    write(&files.private_key, server_key.serialize_pem().as_bytes(), true)?;
    Ok(files)
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Portcullis");
    dn
}

fn write(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = secret;
    let mut f = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))
}
