//! The accounting listener: packet → verify → normalise → durable append → response.
//!
//! **Invariant:** an Accounting-Response leaves only from the storage writer's
//! completion, i.e. after the record is durable. Every other path ends in a counted,
//! silent discard.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_accounting::normalise;
use portcullis_radius::dedup::{DuplicateCache, Lookup};
use portcullis_radius::{
    Code, Error as RadiusError, Identifier, Packet, PacketBuilder, VerifiedRequest, VerifyPolicy, attr,
};
use portcullis_storage::{RawPacket, Submitter};
use tokio::net::UdpSocket;

use crate::clients::{Client, ClientTable, Reason};
use crate::live::Live;
use crate::{lock, now_ms};

/// State shared by every accounting socket.
#[derive(Debug)]
pub struct Shared {
    /// The client table; a reload or a change of the stored clients replaces it (the
    /// authentication listeners read the same one).
    pub clients: Arc<Live<ClientTable>>,
    pub cache: Mutex<DuplicateCache>,
    pub submitter: Submitter,
    /// Event times believed; others are counted and set to arrival (by the applier,
    /// which derives the record again from the journal).
    pub clock: portcullis_accounting::ClockBounds,
}

/// Binds a UDP socket with a large receive buffer; IPv6 sockets are IPv6-only so the
/// same port can also be bound on IPv4.
pub fn bind(addr: SocketAddr, receive_buffer: usize) -> std::io::Result<StdUdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if let Err(e) = socket.set_recv_buffer_size(receive_buffer) {
        tracing::warn!(error = %e, "cannot set the socket receive buffer");
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Serves one socket until the task is dropped.
pub async fn serve(socket: StdUdpSocket, shared: Arc<Shared>) -> std::io::Result<()> {
    let sender = Arc::new(socket.try_clone()?);
    let socket = UdpSocket::from_std(socket)?;
    let mut buf = vec![0u8; 4096 + 1];
    loop {
        let (n, source) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some systems; keep serving.
                tracing::debug!(error = %e, "recv_from failed");
                continue;
            }
        };
        handle(&shared, &sender, &buf[..n], source);
    }
}

/// Handles one datagram. Public for the in-process tests and benchmarks.
pub fn handle(shared: &Arc<Shared>, sender: &Arc<StdUdpSocket>, datagram: &[u8], source: SocketAddr) {
    let ip = source.ip().to_canonical();
    let clients = shared.clients.load();
    let Some(client) = clients.lookup(ip) else {
        let n = clients.count_unknown(ip);
        if n.is_power_of_two() {
            tracing::warn!(%source, count = n, "datagram from an address that is no configured client; discarded");
        }
        return;
    };
    client.counters.bump(Reason::Received);
    let packet = match Packet::decode(datagram) {
        Ok(p) => p,
        Err(e) => {
            discard(client, Reason::Malformed, source, &e);
            return;
        }
    };
    if !matches!(packet.code(), Code::AccountingRequest | Code::StatusServer) {
        discard(client, Reason::UnsupportedCode, source, &RadiusError::UnknownCode(packet.code().to_u8()));
        return;
    }
    let policy = VerifyPolicy { require_message_authenticator: false, limit_proxy_state: false };
    let (request, client) = match client.check(packet, policy) {
        Ok(r) => r,
        Err(e) => {
            let reason = match e {
                RadiusError::BadAuthenticator => Reason::BadAuthenticator,
                RadiusError::BadMessageAuthenticator | RadiusError::MissingMessageAuthenticator => {
                    Reason::BadMessageAuthenticator
                }
                _ => Reason::Malformed,
            };
            discard(client, reason, source, &e);
            return;
        }
    };
    if packet.code() == Code::StatusServer {
        // RFC 5997 §3: answer on the accounting port with an Accounting-Response.
        if let Some(bytes) = response(&request, client) {
            send(sender, &bytes, source, client);
            client.counters.bump(Reason::StatusServer);
        }
        return;
    }
    let id = packet.identifier();
    let auth = packet.authenticator();
    let lookup = lock(&shared.cache).lookup(Instant::now(), source, id, auth);
    match lookup {
        Lookup::New => {}
        Lookup::InFlight => {
            client.counters.bump(Reason::DuplicateInFlight);
            return;
        }
        Lookup::Answered(bytes) => {
            client.counters.bump(Reason::DuplicateResent);
            send(sender, &bytes, source, client);
            return;
        }
    }
    let arrival = now_ms();
    // Normalised here only to refuse what cannot be recorded; the applier derives the
    // record again from the journal.
    match normalise(&request, &client.name, ip, client.vendor, arrival) {
        Ok(mut r) => {
            if r.clamp_event_time(shared.clock) {
                client.counters.bump(Reason::ClockSkew);
            }
        }
        Err(e) => {
            lock(&shared.cache).abandon(source, id, auth);
            discard(client, Reason::InvalidRequest, source, &e);
            return;
        }
    }
    let Some(reply) = response(&request, client) else {
        lock(&shared.cache).abandon(source, id, auth);
        return;
    };
    let raw = RawPacket {
        received_ms: arrival,
        client: client.name.clone(),
        vendor: client.vendor.name().to_string(),
        source: source.to_string(),
        packet: packet.as_bytes().to_vec(),
    };
    let done_shared = Arc::clone(shared);
    let done_sender = Arc::clone(sender);
    let done_client = Arc::clone(client);
    let completion = Box::new(move |durable: bool| {
        let client = &*done_client;
        if durable {
            lock(&done_shared.cache).answered(Instant::now(), source, id, auth, reply.clone());
            if send(&done_sender, &reply, source, client) {
                client.counters.bump(Reason::Acknowledged);
            }
        } else {
            lock(&done_shared.cache).abandon(source, id, auth);
            client.counters.bump(Reason::StorageFailed);
        }
    });
    if shared.submitter.submit(raw, completion).is_err() {
        lock(&shared.cache).abandon(source, id, auth);
        let n = client.counters.bump(Reason::QueueFull);
        if n.is_power_of_two() {
            tracing::warn!(client = %client.name, count = n, "storage queue full; request left unanswered for the NAS to retransmit");
        }
    }
}

/// The Accounting-Response: Proxy-State echoed in order (RFC 2865 §5.33), and a
/// Message-Authenticator when the request carried one.
fn response(request: &VerifiedRequest<'_>, client: &Client) -> Option<Vec<u8>> {
    let mut b = PacketBuilder::new(Code::AccountingResponse, Identifier(request.identifier().0));
    for ps in request.attributes_of(attr::PROXY_STATE) {
        b.attribute(attr::PROXY_STATE, ps).ok()?;
    }
    if request.had_message_authenticator() || request.code() == Code::StatusServer {
        b.message_authenticator();
    }
    match b.encode_response(&request.authenticator(), &client.secret) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!(client = %client.name, error = %e, "cannot encode the Accounting-Response");
            None
        }
    }
}

fn discard(client: &Client, reason: Reason, source: SocketAddr, error: &dyn std::fmt::Display) {
    let n = client.counters.bump(reason);
    // Log the first occurrence and then at powers of two, so a flood cannot flood the log.
    if n.is_power_of_two() {
        let hint = match reason {
            Reason::BadAuthenticator => " (check the shared secret configured for this client)",
            _ => "",
        };
        tracing::warn!(client = %client.name, %source, reason = reason.name(), count = n, "discarded: {error}{hint}");
    } else {
        tracing::debug!(client = %client.name, %source, reason = reason.name(), "discarded: {error}");
    }
}

fn send(sender: &StdUdpSocket, bytes: &[u8], to: SocketAddr, client: &Client) -> bool {
    for _ in 0..100 {
        match sender.send_to(bytes, to) {
            Ok(_) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_micros(50)),
            Err(e) => {
                tracing::debug!(client = %client.name, %to, error = %e, "send failed");
                break;
            }
        }
    }
    client.counters.bump(Reason::SendFailed);
    false
}
