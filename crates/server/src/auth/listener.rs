//! The UDP side of authentication: receive, client lookup, decode, verify
//! (BlastRADIUS rules), duplicate cache; then the pipeline decides, on this task when
//! the credentials are cached or cheap, on the blocking pool otherwise (Argon2, EAP/TLS,
//! directories, the second factor), at most `MAX_PENDING` at once; beyond that requests
//! are dropped unanswered and counted. A login waiting for a push stays in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use portcullis_radius::dedup::Lookup;
use portcullis_radius::{Authenticator, Code, Error as RadiusError, Identifier, Packet, PacketBuilder};
use tokio::net::UdpSocket;

use super::context::{AuthShared, LiveAuth};
use super::pipeline::decide;
use super::reply::Outcome;
use crate::clients::{Client, Reason};
use crate::lock;

/// Tasks receiving from each authentication socket: one per runtime worker of the
/// two-thread runtime `portcullis serve` builds.
pub const RECEIVERS_PER_SOCKET: usize = 2;

/// Most credential checks queued or running at once.
const MAX_PENDING: usize = 1024;

/// Serves one authentication socket until the task is dropped. Each datagram is
/// decided under the configuration current when it arrived.
pub async fn serve(socket: std::net::UdpSocket, live: Arc<LiveAuth>) -> std::io::Result<()> {
    let socket = Arc::new(UdpSocket::from_std(socket)?);
    let mut buf = vec![0u8; 4096 + 1];
    loop {
        let Ok((n, source)) = socket.recv_from(&mut buf).await else { continue };
        let datagram = &buf[..n];
        let shared = live.load();
        let Some(work) = accept(&shared, datagram, source, &socket).await else { continue };
        if shared.pending.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING {
            shared.pending.fetch_sub(1, Ordering::AcqRel);
            lock(&shared.cache).abandon(source, work.id, work.auth);
            work.client.counters.bump(Reason::QueueFull);
            continue;
        }
        // Most requests are decided right here (cached or cheap credentials); only
        // Argon2, EAP, directory and second-factor work goes to the blocking pool.
        let result = match decide(&shared, &work.client, datagram, source, false) {
            Outcome::Reply(reply) => Some(Some(reply)),
            Outcome::Dropped | Outcome::Push(_) => Some(None),
            Outcome::NeedsSlowPath => None,
        };
        if let Some(result) = result {
            shared.pending.fetch_sub(1, Ordering::AcqRel);
            if let Some(reply) = result {
                answer(&shared, &work, &socket, source, reply).await;
            } else {
                lock(&shared.cache).abandon(source, work.id, work.auth);
            }
            continue;
        }
        let (socket, datagram) = (Arc::clone(&socket), datagram.to_vec());
        tokio::spawn(async move {
            let (s2, c2, d2) = (Arc::clone(&shared), Arc::clone(&work.client), datagram.clone());
            let result = tokio::task::spawn_blocking(move || decide(&s2, &c2, &d2, source, true)).await;
            match result {
                Ok(Outcome::Reply(reply)) => {
                    shared.pending.fetch_sub(1, Ordering::AcqRel);
                    answer(&shared, &work, &socket, source, reply).await;
                }
                // The request stays in flight (retransmits are discarded) until the
                // push is answered; `settle` sends the reply and releases the slot.
                Ok(Outcome::Push(push)) => {
                    super::push::settle(shared, push, datagram, source, socket, work.id, work.auth).await;
                }
                _ => {
                    shared.pending.fetch_sub(1, Ordering::AcqRel);
                    lock(&shared.cache).abandon(source, work.id, work.auth);
                }
            }
        });
    }
}

/// Caches and sends a decided reply; an Access-Challenge is counted here (accepts and
/// rejects are counted where they are decided).
async fn answer(shared: &AuthShared, work: &Work, socket: &UdpSocket, source: SocketAddr, reply: Vec<u8>) {
    if reply.first() == Some(&Code::AccessChallenge.to_u8()) {
        work.client.counters.bump(Reason::AccessChallenge);
    }
    lock(&shared.cache).answered(Instant::now(), source, work.id, work.auth, reply.clone());
    let _ = socket.send_to(&reply, source).await;
}

struct Work {
    id: Identifier,
    auth: Authenticator,
    /// The client, with the secret the request verified with.
    client: Arc<Client>,
}

/// Cheap checks on the receiving task; `Some` when the request needs a decision.
async fn accept(shared: &AuthShared, datagram: &[u8], source: SocketAddr, socket: &UdpSocket) -> Option<Work> {
    let ip = source.ip().to_canonical();
    let clients = shared.clients.load();
    let Some(client) = clients.lookup(ip) else {
        let n = clients.count_unknown(ip);
        if n.is_power_of_two() {
            tracing::warn!(%source, count = n, "Access-Request from an address that is no configured client; discarded");
        }
        return None;
    };
    client.counters.bump(Reason::Received);
    let packet = match Packet::decode(datagram) {
        Ok(p) => p,
        Err(e) => {
            count(client, Reason::Malformed, source, &e);
            return None;
        }
    };
    if !matches!(packet.code(), Code::AccessRequest | Code::StatusServer) {
        count(client, Reason::UnsupportedCode, source, &RadiusError::UnknownCode(packet.code().to_u8()));
        return None;
    }
    let (request, client) = match client.check(packet, client.verify) {
        Ok(r) => r,
        Err(e) => {
            count(client, Reason::BadMessageAuthenticator, source, &e);
            return None;
        }
    };
    if packet.code() == Code::StatusServer {
        let mut b = PacketBuilder::new(Code::AccessAccept, packet.identifier());
        b.message_authenticator();
        if let Ok(reply) = b.encode_response(&packet.authenticator(), &client.secret) {
            let _ = socket.send_to(&reply, source).await;
            client.counters.bump(Reason::StatusServer);
        }
        return None;
    }
    let (id, auth) = (request.identifier(), request.authenticator());
    let lookup = lock(&shared.cache).lookup(Instant::now(), source, id, auth);
    match lookup {
        Lookup::New => Some(Work { id, auth, client: Arc::clone(client) }),
        Lookup::InFlight => {
            client.counters.bump(Reason::DuplicateInFlight);
            None
        }
        Lookup::Answered(reply) => {
            client.counters.bump(Reason::DuplicateResent);
            let _ = socket.send_to(&reply, source).await;
            None
        }
    }
}

fn count(client: &Client, reason: Reason, source: SocketAddr, error: &dyn std::fmt::Display) {
    let n = client.counters.bump(reason);
    if n.is_power_of_two() {
        tracing::warn!(client = %client.name, %source, reason = reason.name(), count = n, "Access-Request discarded: {error}");
    }
}
