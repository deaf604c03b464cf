//! Ends a VPN session at its NAS with an RFC 5176 Disconnect-Request.
//!
//! The request goes only to a configured client, at the address its accounting came
//! from (recorded with the session as `nas_source`), on the client's `coa_port`, signed
//! with its shared secret, with a Message-Authenticator and an Event-Timestamp. It
//! names the session the way the NAS knows it: User-Name as the NAS sent it,
//! Acct-Session-Id, NAS-IP-Address or NAS-Identifier, Framed-IP-Address. The NAS-IP-Address
//! a NAS reports is a claim and never chooses where the request goes.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use portcullis_radius::{
    Authenticator, Code, Identifier, Packet, PacketBuilder, SharedSecret, attr, verify_message_authenticator,
    verify_response_authenticator,
};
use portcullis_storage::Session;

use crate::config::Config;

/// Where a NAS listens for dynamic authorization unless its client says otherwise
/// (RFC 5176 §3.1); stored clients use it.
const DEFAULT_COA_PORT: u16 = 3799;
/// RFC 5176 §3.5 Error-Cause.
const ERROR_CAUSE: u8 = 101;

/// What the NAS answered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Disconnect-ACK: the NAS ended the session.
    Ack,
    /// Disconnect-NAK, with its Error-Cause (RFC 5176 §3.5) when it sent one.
    Nak { error_cause: Option<u32>, meaning: Option<&'static str> },
    /// No valid answer after every attempt.
    NoAnswer { attempts: u32 },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ack => f.write_str("Disconnect-ACK: the NAS ended the session"),
            Self::Nak { error_cause: Some(c), meaning } => {
                write!(f, "Disconnect-NAK, Error-Cause {c} ({})", meaning.unwrap_or("unknown"))
            }
            Self::Nak { error_cause: None, .. } => f.write_str("Disconnect-NAK without an Error-Cause"),
            Self::NoAnswer { attempts } => write!(f, "no answer from the NAS after {attempts} attempts"),
        }
    }
}

/// The meaning of an RFC 5176 Error-Cause value.
pub fn error_cause_meaning(code: u32) -> Option<&'static str> {
    Some(match code {
        201 => "Residual Session Context Removed",
        202 => "Invalid EAP Packet (Ignored)",
        401 => "Unsupported Attribute",
        402 => "Missing Attribute",
        403 => "NAS Identification Mismatch",
        404 => "Invalid Request",
        405 => "Unsupported Service",
        406 => "Unsupported Extension",
        407 => "Invalid Attribute Value",
        501 => "Administratively Prohibited",
        502 => "Request Not Routable (Proxy)",
        503 => "Session Context Not Found",
        504 => "Session Context Not Removable",
        505 => "Other Proxy Processing Error",
        506 => "Resources Unavailable",
        507 => "Request Initiated",
        508 => "Multiple Session Selection Unsupported",
        _ => return None,
    })
}

/// Where a Disconnect-Request for a session goes and with which secret.
pub struct Target {
    pub client: String,
    pub address: SocketAddr,
    secret: SharedSecret,
}

/// Finds the configured client the session's accounting came from.
pub fn target(config: &Config, session: &Session) -> Result<Target, String> {
    let source: IpAddr =
        session.details.get("nas_source").and_then(|v| v.as_str()).and_then(|s| s.parse().ok()).ok_or_else(|| {
            format!(
                "session {} has no recorded NAS address (replayed from a file, or stored by an older version); \
                 end it on the NAS",
                session.session_key
            )
        })?;
    // The client the listeners would take a datagram from there for: the most specific
    // network among the file's and the stored clients, with its secret.
    let stored = portcullis_storage::SqliteClients::open(&config.storage.data_dir)
        .and_then(|c| crate::client_watch::load(&c))
        .map_err(|e| format!("reading the stored RADIUS clients: {e}"))?;
    let table = crate::clients::ClientTable::new(config, stored);
    let client = table
        .lookup(source)
        .ok_or_else(|| format!("{source}, where session {} came from, is no configured client", session.session_key))?;
    let coa_port = config
        .clients
        .iter()
        .map(|c| c.get_ref())
        .find(|c| c.name == client.name)
        .map_or(DEFAULT_COA_PORT, |c| c.coa_port);
    Ok(Target {
        client: client.name.clone(),
        address: SocketAddr::new(source, coa_port),
        secret: client.secret.clone(),
    })
}

/// The Disconnect-Request for `session` (sans-IO: the caller sends it).
pub fn request(session: &Session, identifier: u8, now: i64, secret: &SharedSecret) -> Result<Vec<u8>, String> {
    let mut b = PacketBuilder::new(Code::DisconnectRequest, Identifier(identifier));
    let e = |e: portcullis_radius::Error| e.to_string();
    if let Some(u) = session.user_raw.as_deref().or(session.user.as_deref()) {
        b.attribute(attr::USER_NAME, u.as_bytes()).map_err(e)?;
    }
    let id = session.session_id.as_deref().ok_or("the session has no Acct-Session-Id to name it by")?;
    b.attribute(attr::ACCT_SESSION_ID, id.as_bytes()).map_err(e)?;
    match session.nas_ip.as_deref().and_then(|s| s.parse::<IpAddr>().ok()) {
        Some(IpAddr::V4(ip)) => {
            b.attribute(attr::NAS_IP_ADDRESS, &ip.octets()).map_err(e)?;
        }
        Some(IpAddr::V6(ip)) => {
            b.attribute(attr::NAS_IPV6_ADDRESS, &ip.octets()).map_err(e)?;
        }
        None => {
            b.attribute(attr::NAS_IDENTIFIER, session.nas.as_bytes()).map_err(e)?;
        }
    }
    if let Some(ip) = session.framed_ip.as_deref().and_then(|s| s.parse::<std::net::Ipv4Addr>().ok()) {
        b.attribute(attr::FRAMED_IP_ADDRESS, &ip.octets()).map_err(e)?;
    }
    let now = u32::try_from(now).unwrap_or(0);
    b.attribute(attr::EVENT_TIMESTAMP, &now.to_be_bytes()).map_err(e)?;
    b.message_authenticator();
    b.encode_computed_request(secret).map_err(e)
}

/// Reads a datagram as the answer to `request`: `None` when it is not one (wrong
/// identifier, code or authenticator, or a bad Message-Authenticator), to be ignored.
pub fn answer(datagram: &[u8], request: &[u8], secret: &SharedSecret) -> Option<Outcome> {
    let sent = Packet::decode(request).ok()?;
    let p = Packet::decode(datagram).ok()?;
    if p.identifier() != sent.identifier() {
        return None;
    }
    let request_auth: Authenticator = sent.authenticator();
    verify_response_authenticator(&p, &request_auth, secret).ok()?;
    verify_message_authenticator(&p, secret, Some(request_auth)).ok()?;
    match p.code() {
        Code::DisconnectAck => Some(Outcome::Ack),
        Code::DisconnectNak => {
            let error_cause =
                p.attribute(ERROR_CAUSE).and_then(|v| <[u8; 4]>::try_from(v).ok()).map(u32::from_be_bytes);
            Some(Outcome::Nak { error_cause, meaning: error_cause.and_then(error_cause_meaning) })
        }
        _ => None,
    }
}

/// Sends the request and waits for the answer, sending it again after 1 s, 2 s, 4 s
/// (the same packet each time, so the NAS can tell a retransmission).
pub fn send(target: &Target, session: &Session, now: i64, attempts: u32) -> Result<Outcome, String> {
    let bind: SocketAddr = if target.address.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(bind).map_err(|e| format!("binding a socket: {e}"))?;
    socket.connect(target.address).map_err(|e| format!("{}: {e}", target.address))?;
    let identifier = rand::random::<u8>();
    let packet = request(session, identifier, now, &target.secret)?;
    let mut buf = [0u8; 4096];
    let mut wait = Duration::from_secs(1);
    for _ in 0..attempts {
        socket.send(&packet).map_err(|e| format!("sending to {}: {e}", target.address))?;
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
            socket.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
            match socket.recv(&mut buf) {
                Ok(n) => {
                    if let Some(outcome) = answer(&buf[..n], &packet, &target.secret) {
                        return Ok(outcome);
                    }
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
                // An ICMP port unreachable from the NAS: try again after the pause.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    std::thread::sleep(left);
                    break;
                }
                Err(e) => return Err(format!("receiving from {}: {e}", target.address)),
            }
        }
        wait = (wait * 2).min(Duration::from_secs(8));
    }
    Ok(Outcome::NoAnswer { attempts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_radius::find_message_authenticator;

    fn session() -> Session {
        Session {
            session_key: "k".into(),
            user: Some("alice".into()),
            user_raw: Some("CONTOSO\\alice".into()),
            nas: "rras-1".into(),
            nas_ip: Some("192.0.2.1".into()),
            session_id: Some("S1".into()),
            client_ip: None,
            device: None,
            framed_ip: Some("10.0.0.7".into()),
            framed_ipv6: None,
            started_at: 1,
            stopped_at: None,
            updated_at: 1,
            open: true,
            stale: false,
            session_time: None,
            input_octets: None,
            output_octets: None,
            input_packets: None,
            output_packets: None,
            terminate_cause: None,
            details: serde_json::json!({"nas_source": "127.0.0.1"}),
            location: None,
            order: Default::default(),
        }
    }

    #[test]
    fn the_request_names_the_session_and_only_its_answer_is_believed() {
        let secret = SharedSecret::new(b"s3cret-s3cret".to_vec());
        let req = request(&session(), 7, 1_800_000_000, &secret).unwrap();
        let p = Packet::decode(&req).unwrap();
        assert_eq!(p.code(), Code::DisconnectRequest);
        portcullis_radius::verify_request_authenticator(&p, &secret).unwrap();
        assert_eq!(p.attribute(attr::USER_NAME), Some(&b"CONTOSO\\alice"[..]));
        assert_eq!(p.attribute(attr::ACCT_SESSION_ID), Some(&b"S1"[..]));
        assert_eq!(p.attribute(attr::NAS_IP_ADDRESS), Some(&[192, 0, 2, 1][..]));
        assert_eq!(p.attribute(attr::FRAMED_IP_ADDRESS), Some(&[10, 0, 0, 7][..]));
        assert!(find_message_authenticator(&p).unwrap().is_some());

        let mut nak = PacketBuilder::new(Code::DisconnectNak, Identifier(7));
        nak.attribute(ERROR_CAUSE, &503u32.to_be_bytes()).unwrap();
        let nak = nak.encode_response(&p.authenticator(), &secret).unwrap();
        assert_eq!(
            answer(&nak, &req, &secret),
            Some(Outcome::Nak { error_cause: Some(503), meaning: Some("Session Context Not Found") })
        );
        // Signed with another secret, or answering another identifier: ignored.
        let other = SharedSecret::new(b"another-secret".to_vec());
        let forged = PacketBuilder::new(Code::DisconnectAck, Identifier(7)).encode_response(&p.authenticator(), &other);
        assert_eq!(answer(&forged.unwrap(), &req, &secret), None);
        let wrong_id =
            PacketBuilder::new(Code::DisconnectAck, Identifier(8)).encode_response(&p.authenticator(), &secret);
        assert_eq!(answer(&wrong_id.unwrap(), &req, &secret), None);
        assert_eq!(answer(b"\x29\x07\x00", &req, &secret), None);
    }
}
