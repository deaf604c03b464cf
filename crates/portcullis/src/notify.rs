//! systemd's service notification protocol (`sd_notify(3)`), for `Type=notify`:
//! `READY=1` once every listener is bound, `RELOADING=1` … `READY=1` around a reload,
//! `STOPPING=1` at shutdown, and `WATCHDOG=1` at half the interval systemd asks for.
//! Without `NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go, from `NOTIFY_SOCKET` (a path, or `@name` for an abstract
/// socket).
pub(crate) struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
}

impl Notifier {
    pub(crate) fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let bytes = path.as_encoded_bytes();
            let addr = match bytes.strip_prefix(b"@") {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt as _;
                    std::os::unix::net::SocketAddr::from_abstract_name(name).ok()?
                }
                None => std::os::unix::net::SocketAddr::from_pathname(&path).ok()?,
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        Self { socket }
    }

    /// Sends one notification; a failure is logged once per call and never fatal.
    pub(crate) fn send(&self, state: &str) {
        if let Some((socket, addr)) = &self.socket {
            if let Err(e) = socket.send_to_addr(state.as_bytes(), addr) {
                tracing::warn!(error = %e, "cannot notify systemd");
            }
        }
    }

    /// `RELOADING=1` with the `CLOCK_MONOTONIC` time systemd (253 and later) expects
    /// beside it.
    pub(crate) fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0) / 1000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when it is meant for
    /// this process (`WATCHDOG_PID` unset or ours).
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref()?;
        let pid_ok = std::env::var("WATCHDOG_PID").map_or(true, |p| p.parse() == Ok(std::process::id()));
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        (pid_ok && usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}
