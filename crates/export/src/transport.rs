//! Connections to syslog receivers: plain TCP or TLS (rustls, the server certificate
//! verified against the configured CA or the system's roots, optional client
//! certificate), each write a blocking `write_all` with a deadline.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// How long a connect or a write may take before the peer counts as down.
const DEADLINE: Duration = Duration::from_secs(10);

/// TLS settings of a syslog sink, built once.
#[derive(Debug, Clone)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl Tls {
    /// Builds the client configuration: `ca_file` (PEM) or the system's roots,
    /// optionally a client certificate and key (PEM), and the name to verify.
    pub fn new(
        server_name: &str,
        ca_file: Option<&std::path::Path>,
        client: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
                for c in certs {
                    roots.add(c).map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
            }
        }
        if roots.is_empty() {
            return Err("no CA certificate to verify the receiver with (set ca_file)".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
                let key =
                    PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| e.to_string())?
            }
            None => builder.with_no_client_auth(),
        };
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| format!("{server_name:?} is not a DNS name or an address"))?;
        Ok(Self { config: Arc::new(config), name })
    }
}

/// An open connection.
pub(crate) enum Connection {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Connection {
    /// Connects (and completes the TLS handshake, so a bad certificate fails here).
    pub(crate) fn open(address: &str, tls: Option<&Tls>) -> std::io::Result<Self> {
        let mut last = None;
        for addr in address.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, DEADLINE) {
                Ok(s) => {
                    s.set_write_timeout(Some(DEADLINE))?;
                    s.set_read_timeout(Some(DEADLINE))?;
                    s.set_nodelay(true)?;
                    let Some(tls) = tls else { return Ok(Self::Tcp(s)) };
                    let conn = rustls::ClientConnection::new(Arc::clone(&tls.config), tls.name.clone())
                        .map_err(std::io::Error::other)?;
                    let mut stream = rustls::StreamOwned::new(conn, s);
                    while stream.conn.is_handshaking() {
                        stream.conn.complete_io(&mut stream.sock)?;
                    }
                    return Ok(Self::Tls(Box::new(stream)));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other(format!("{address} resolves to no address"))))
    }

    /// Writes every byte; an error means the connection is gone.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => s.write_all(bytes).and_then(|()| s.flush()),
            Self::Tls(s) => s.write_all(bytes).and_then(|()| s.flush()),
        }
    }

    /// Whether the receiver is still there: syslog receivers never send, so readable
    /// bytes (a TLS close_notify, anything) or an end of stream mean it closed or broke
    /// the connection.
    pub(crate) fn alive(&mut self) -> bool {
        let sock = match self {
            Self::Tcp(s) => &*s,
            Self::Tls(s) => &s.sock,
        };
        if sock.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let alive = matches!(sock.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        alive && sock.set_nonblocking(false).is_ok()
    }
}
