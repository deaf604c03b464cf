//! Serves the `[http]` listener (portal, REST API, push approval and enrolment pages,
//! `/metrics`), over TLS unless configured otherwise, so that no client can hold it
//! open: every connection has a deadline for its TLS handshake, its header, its request
//! and its silences, bodies and headers are bounded, and the number of open connections
//! is capped.
//!
//! The cap is what keeps file descriptors for the rest of the server. A second factor
//! that cannot be checked because a webhook call or a database open failed for want of
//! a descriptor is a local failure, and with `fail_mode = "safe"` a local failure
//! admits the login; so a flood of HTTP connections must never reach the descriptors
//! those need. Open descriptors are at most
//!
//! ```text
//!   max_connections                  HTTP connections (this module)
//! + 2 × listen addresses             the HTTP listeners, one socket being admitted each
//! + 1,024                            webhook calls (one per pending push; pushes in flight are capped at 1,024)
//! + Σ [[ldap]] pool_size             directory connections
//! + 256                              UDP sockets, journal, databases (3 each), certificates, runtime
//! ```
//!
//! and [`check_descriptors`] refuses to start when the soft `RLIMIT_NOFILE`, first raised
//! to the hard limit by [`raise_descriptor_limit`], is below that sum.
//!
//! At the cap a new connection is not refused while some open connection has no request
//! in progress: the one that has been quiet longest is closed to make room, so idle and
//! half-sent (slowloris) connections cannot keep a new client out. Only when every
//! connection has a request in progress is the new one closed at once. Both are counted
//! and logged at most once per power of two.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::HttpConfig;
use crate::lock;

/// Descriptors kept for everything but HTTP connections, webhook calls and LDAP pools.
const BASE_RESERVE: u64 = 256;
/// Webhook calls in flight at most: one per pending push, and pushes in flight are
/// capped at 1,024 by the authentication listener.
const WEBHOOK_RESERVE: u64 = 1024;
/// How long a new connection waits for the slot of the connection closed for it.
const EVICTION_WAIT: Duration = Duration::from_millis(200);
/// Pause after a failed `accept` (out of descriptors, say) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// `Strict-Transport-Security` of every response over TLS: one year.
const HSTS: &str = "max-age=31536000";
/// hyper refuses read buffers smaller than this.
const MIN_READ_BUFFER: usize = 8192;

/// The bounds of the listener, from `[http]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub max_body_bytes: u64,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

impl Limits {
    /// The limits of `[http]`, refusing values that would disable a bound.
    pub fn from_config(c: &HttpConfig) -> Result<Self, String> {
        let positive = |key: &str, v: u64| {
            if v == 0 { Err(format!("[http] {key} must be at least 1")) } else { Ok(v) }
        };
        positive("max_connections", c.max_connections as u64)?;
        positive("max_body_bytes", c.max_body_bytes as u64)?;
        positive("max_headers", c.max_headers as u64)?;
        if c.max_header_bytes < 1024 {
            return Err("[http] max_header_bytes must be at least 1024".into());
        }
        Ok(Self {
            max_connections: c.max_connections,
            header_timeout: Duration::from_secs(positive("header_timeout_seconds", c.header_timeout_seconds)?),
            idle_timeout: Duration::from_secs(positive("idle_timeout_seconds", c.idle_timeout_seconds)?),
            request_timeout: Duration::from_secs(positive("request_timeout_seconds", c.request_timeout_seconds)?),
            max_body_bytes: c.max_body_bytes as u64,
            max_header_bytes: c.max_header_bytes,
            max_headers: c.max_headers,
        })
    }
}

/// Raises the soft limit on open files to the hard limit and returns the soft limit
/// in force afterwards (`u64::MAX` for none).
pub fn raise_descriptor_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        // Refused (an unlimited hard limit above the kernel's nr_open): the soft limit stays.
        let _ = setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum });
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Refuses a connection cap that the open-file limit cannot hold together with
/// everything else the server opens (the sum in the module documentation).
pub fn check_descriptors(limits: &Limits, listeners: usize, ldap_pools: usize, soft_limit: u64) -> Result<(), String> {
    let needed =
        limits.max_connections as u64 + 2 * listeners as u64 + WEBHOOK_RESERVE + ldap_pools as u64 + BASE_RESERVE;
    if soft_limit < needed {
        return Err(format!(
            "[http] max_connections = {} needs {needed} open files in all (webhook calls, directory pools and \
             the rest of the server included), but the limit is {soft_limit}: lower max_connections or raise the \
             limit (LimitNOFILE= in the systemd unit, ulimit -n)",
            limits.max_connections
        ));
    }
    Ok(())
}

/// What every connection of every `[http]` listen address shares: the slots and the
/// open connections, to choose one to close when the slots run out.
pub struct Connections {
    limits: Limits,
    slots: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Arc<Watch>>>,
    next_id: AtomicU64,
    epoch: Instant,
    refused: AtomicU64,
    evicted: AtomicU64,
    accept_failures: AtomicU64,
}

/// One connection as its watchdog and the admission of others see it.
struct Watch {
    /// Requests whose response has not been produced yet.
    in_flight: AtomicUsize,
    /// Milliseconds after `epoch` of the last byte read or written.
    last_io: AtomicU64,
    /// Chosen to make room for a new connection.
    closing: AtomicBool,
    close: Notify,
}

impl Connections {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            accept_failures: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A slot for a new connection: a free one, or the one of the connection that has
    /// been quiet longest among those with no request in progress.
    async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Some(permit);
        }
        // Quietest first; of those quiet since the same moment, the oldest.
        let victim = lock(&self.open)
            .iter()
            .filter(|(_, w)| w.in_flight.load(Ordering::Acquire) == 0 && !w.closing.load(Ordering::Acquire))
            .min_by_key(|(id, w)| (w.last_io.load(Ordering::Acquire), **id))
            .map(|(_, w)| Arc::clone(w));
        let Some(victim) = victim else {
            if let Some(n) = bump(&self.refused) {
                tracing::warn!(
                    refused = n,
                    max_connections = self.limits.max_connections,
                    "HTTP connection closed at once: every connection has a request in progress"
                );
            }
            return None;
        };
        victim.closing.store(true, Ordering::Release);
        victim.close.notify_one();
        if let Some(n) = bump(&self.evicted) {
            tracing::warn!(
                closed = n,
                max_connections = self.limits.max_connections,
                "HTTP listener full: closed the quietest idle connection to admit a new one"
            );
        }
        tokio::time::timeout(EVICTION_WAIT, Arc::clone(&self.slots).acquire_owned()).await.ok()?.ok()
    }
}

/// Accepts connections on `listener` and serves `app` on each within the limits, over
/// TLS when `tls` is given. Runs until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    connections: Arc<Connections>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                if let Some(n) = bump(&connections.accept_failures) {
                    tracing::error!(error = %e, failures = n, "HTTP listener cannot accept");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(permit) = connections.admit().await else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Registered before the task runs, so the next admission can already choose it.
        let id = connections.next_id.fetch_add(1, Ordering::Relaxed);
        let watch = Arc::new(Watch {
            in_flight: AtomicUsize::new(0),
            last_io: AtomicU64::new(connections.now_ms()),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        lock(&connections.open).insert(id, Arc::clone(&watch));
        let slot = (id, watch, permit);
        tokio::spawn(connection(Arc::clone(&connections), stream, peer, app.clone(), tls.clone(), slot));
    }
}

async fn connection(
    connections: Arc<Connections>,
    stream: TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    (id, watch, permit): (u64, Arc<Watch>, OwnedSemaphorePermit),
) {
    let tracked = Tracked { inner: stream, watch: Arc::clone(&watch), connections: Arc::clone(&connections) };
    match tls {
        None => requests(&connections, TokioIo::new(tracked), peer, app, &watch, false).await,
        Some(acceptor) => {
            // The handshake has the header's deadline, and the connection, with no
            // request in progress yet, can be closed to make room for another.
            let handshake = tokio::time::timeout(connections.limits.header_timeout, acceptor.accept(tracked));
            tokio::select! {
                accepted = handshake => match accepted {
                    Ok(Ok(stream)) => requests(&connections, TokioIo::new(stream), peer, app, &watch, true).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
                () = watch.close.notified() => {}
            }
        }
    }
    // The socket is closed (by `requests`, or with the handshake) before its slot is
    // given back.
    lock(&connections.open).remove(&id);
    drop(permit);
}

/// Serves the requests of one connection until it ends, is closed for another or
/// stays quiet too long. Over TLS every response carries HSTS, so a browser that once
/// reached the listener never sends it a request in clear.
async fn requests<S>(
    connections: &Connections,
    io: TokioIo<S>,
    peer: SocketAddr,
    app: axum::Router,
    watch: &Arc<Watch>,
    tls: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &connections.limits;
    let app = TowerToHyperService::new(app);
    let service = {
        let watch = Arc::clone(watch);
        let (max_body, request_timeout) = (limits.max_body_bytes, limits.request_timeout);
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let guard = InFlight::enter(&watch);
            let app = app.clone();
            async move {
                let _guard = guard;
                let declared = request
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if declared.is_some_and(|n| n > max_body) {
                    return Ok::<_, hyper::Error>(closing(StatusCode::PAYLOAD_TOO_LARGE));
                }
                // A body without a declared length is cut off at the limit; the
                // handler that reads it answers 413.
                let mut request = request.map(|body| http_body_util::Limited::new(body, max_body as usize));
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                match tokio::time::timeout(request_timeout, hyper::service::Service::call(&app, request)).await {
                    Ok(Ok(mut response)) => {
                        if tls {
                            let hsts = header::HeaderValue::from_static(HSTS);
                            response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, hsts);
                        }
                        Ok(response)
                    }
                    Ok(Err(never)) => match never {},
                    Err(_) => Ok(closing(StatusCode::REQUEST_TIMEOUT)),
                }
            }
        })
    };

    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(limits.max_headers)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_READ_BUFFER))
        .keep_alive(true);
    let mut conn = Box::pin(builder.serve_connection(io, service));
    let idle_ms = u64::try_from(limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    loop {
        // A connection with a request in progress is bounded by the request timeout;
        // it is looked at again an idle timeout later.
        let wake = if watch.in_flight.load(Ordering::Acquire) > 0 {
            Instant::now() + limits.idle_timeout
        } else {
            connections.epoch + Duration::from_millis(watch.last_io.load(Ordering::Acquire).saturating_add(idle_ms))
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                }
                break;
            }
            () = watch.close.notified() => break,
            () = tokio::time::sleep_until(wake) => {
                let quiet = watch.last_io.load(Ordering::Acquire).saturating_add(idle_ms) <= connections.now_ms();
                if quiet && watch.in_flight.load(Ordering::Acquire) == 0 {
                    break;
                }
            }
        }
    }
    drop(conn);
}

/// Counts one more; the new count when it is a power of two (the times to log it).
fn bump(counter: &AtomicU64) -> Option<u64> {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    n.is_power_of_two().then_some(n)
}

/// A response that ends the connection.
fn closing(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::from(format!("{status}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    response
}

/// Counts a request as in progress until its response is produced or it is dropped.
struct InFlight(Arc<Watch>);

impl InFlight {
    fn enter(watch: &Arc<Watch>) -> Self {
        watch.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(watch))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The TCP stream, noting when a byte last moved.
struct Tracked {
    inner: TcpStream,
    watch: Arc<Watch>,
    connections: Arc<Connections>,
}

impl Tracked {
    fn moved(&self) {
        self.watch.last_io.store(self.connections.now_ms(), Ordering::Release);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.moved();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_limits_are_refused() {
        let ok = HttpConfig::default();
        assert!(Limits::from_config(&ok).is_ok());
        for bad in [
            HttpConfig { max_connections: 0, ..HttpConfig::default() },
            HttpConfig { header_timeout_seconds: 0, ..HttpConfig::default() },
            HttpConfig { idle_timeout_seconds: 0, ..HttpConfig::default() },
            HttpConfig { request_timeout_seconds: 0, ..HttpConfig::default() },
            HttpConfig { max_body_bytes: 0, ..HttpConfig::default() },
            HttpConfig { max_header_bytes: 100, ..HttpConfig::default() },
            HttpConfig { max_headers: 0, ..HttpConfig::default() },
        ] {
            assert!(Limits::from_config(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_descriptor_limit_must_hold_the_cap_and_the_reserve() {
        let limits = Limits::from_config(&HttpConfig::default()).unwrap();
        // 512 + 2 + 1,024 + 10 + 256
        assert!(check_descriptors(&limits, 1, 10, 1804).is_ok());
        let err = check_descriptors(&limits, 1, 10, 1803).unwrap_err();
        assert!(err.contains("max_connections = 512") && err.contains("1804"), "{err}");
    }
}
