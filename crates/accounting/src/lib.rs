//! Normalises RADIUS Accounting-Requests from any VPN concentrator into one session
//! model: who, from which public IP and device, which assigned address, when, how long
//! and how much traffic.
//!
//! Pure code: it takes a verified packet, the source address, the client's vendor and
//! the arrival time, and returns an [`AccountingRecord`]. It does no I/O and keeps no
//! state; applying records to stored sessions is the storage layer's job.

mod user;
mod vendor;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use portcullis_radius::{Code, DataType, Packet, Value, VerifiedRequest, attr, split_tag};
use sha2::{Digest, Sha256};

pub use user::canonical_user;
pub use vendor::{Vendor, parse_endpoint};

/// Acct-Status-Type (RFC 2866 §5.1, RFC 2867 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusType {
    Start,
    Stop,
    InterimUpdate,
    AccountingOn,
    AccountingOff,
    /// RFC 2867 tunnel accounting (9 ..= 14): recorded, not applied to sessions.
    Tunnel(u32),
    /// 15, reserved for Failed.
    Failed,
    /// Anything else: recorded, not applied.
    Other(u32),
}

impl StatusType {
    /// From the wire value.
    pub fn from_u32(v: u32) -> Self {
        match v {
            attr::status::START => Self::Start,
            attr::status::STOP => Self::Stop,
            attr::status::INTERIM_UPDATE => Self::InterimUpdate,
            attr::status::ACCOUNTING_ON => Self::AccountingOn,
            attr::status::ACCOUNTING_OFF => Self::AccountingOff,
            attr::status::TUNNEL_START..=attr::status::TUNNEL_LINK_REJECT => Self::Tunnel(v),
            attr::status::FAILED => Self::Failed,
            other => Self::Other(other),
        }
    }

    /// The wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            Self::Start => attr::status::START,
            Self::Stop => attr::status::STOP,
            Self::InterimUpdate => attr::status::INTERIM_UPDATE,
            Self::AccountingOn => attr::status::ACCOUNTING_ON,
            Self::AccountingOff => attr::status::ACCOUNTING_OFF,
            Self::Failed => attr::status::FAILED,
            Self::Tunnel(v) | Self::Other(v) => v,
        }
    }

    /// The RFC name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Start => "Start",
            Self::Stop => "Stop",
            Self::InterimUpdate => "Interim-Update",
            Self::AccountingOn => "Accounting-On",
            Self::AccountingOff => "Accounting-Off",
            Self::Tunnel(9) => "Tunnel-Start",
            Self::Tunnel(10) => "Tunnel-Stop",
            Self::Tunnel(11) => "Tunnel-Reject",
            Self::Tunnel(12) => "Tunnel-Link-Start",
            Self::Tunnel(13) => "Tunnel-Link-Stop",
            Self::Tunnel(_) => "Tunnel-Link-Reject",
            Self::Failed => "Failed",
            Self::Other(_) => "Other",
        }
    }

    /// Whether this status changes a session (Start, Stop, Interim-Update).
    pub fn is_session_event(self) -> bool {
        matches!(self, Self::Start | Self::Stop | Self::InterimUpdate)
    }

    /// Whether this status closes every open session of the NAS.
    pub fn is_nas_restart(self) -> bool {
        matches!(self, Self::AccountingOn | Self::AccountingOff)
    }
}

/// Why a verified Accounting-Request cannot be normalised. The server discards such
/// packets silently (no Accounting-Response) and counts them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NormaliseError {
    #[error("packet is a {0}, not an Accounting-Request")]
    NotAccounting(Code),
    #[error("Acct-Status-Type is missing or not a 4-octet integer")]
    MissingStatusType,
    #[error("accounting packets must not carry {0} (RFC 2866 §4.1)")]
    ForbiddenAttribute(&'static str),
}

/// One normalised accounting event. Times are Unix seconds (UTC).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AccountingRecord {
    pub status: u32,
    /// Event-Timestamp when present, else arrival minus Acct-Delay-Time.
    pub event_time: i64,
    /// When the packet arrived, Unix milliseconds.
    pub arrival_ms: i64,
    pub delay: u32,
    /// User-Name as sent.
    pub user_raw: Option<String>,
    /// Canonical user: domain and realm folded away, lower case.
    pub user: Option<String>,
    /// NAS identity: NAS-Identifier, else NAS-IP-Address, else NAS-IPv6-Address, else
    /// the packet's source address.
    pub nas: String,
    pub nas_ip: Option<IpAddr>,
    pub nas_port: Option<u32>,
    pub session_id: Option<String>,
    pub multi_session_id: Option<String>,
    /// Stable unique key of the session: hash of NAS, Acct-Session-Id and user.
    pub session_key: Option<String>,
    /// The VPN client's public address.
    pub client_ip: Option<IpAddr>,
    /// The client device (machine name, device id) when the NAS reports one.
    pub device: Option<String>,
    pub framed_ip: Option<Ipv4Addr>,
    pub framed_ipv6: Option<String>,
    pub session_time: Option<u32>,
    pub input_octets: Option<u64>,
    pub output_octets: Option<u64>,
    pub input_packets: Option<u32>,
    pub output_packets: Option<u32>,
    pub terminate_cause: Option<String>,
    /// Class echoed from the Access-Accept, hex.
    pub class: Option<String>,
    /// Vendor details worth keeping (tunnel group, client type, platform, ...).
    pub details: BTreeMap<String, String>,
    /// Where `client_ip` is; filled in after normalising, when a database is configured.
    pub location: Option<portcullis_geo::Location>,
}

impl AccountingRecord {
    /// A record of `status` at `event_time` (arrival the same second) from `nas`, with
    /// nothing else known; callers fill in what they have.
    pub fn bare(status: u32, event_time: i64, nas: &str) -> Self {
        Self {
            status,
            event_time,
            arrival_ms: event_time.saturating_mul(1000),
            delay: 0,
            user_raw: None,
            user: None,
            nas: nas.to_owned(),
            nas_ip: None,
            nas_port: None,
            session_id: None,
            multi_session_id: None,
            session_key: None,
            client_ip: None,
            device: None,
            framed_ip: None,
            framed_ipv6: None,
            session_time: None,
            input_octets: None,
            output_octets: None,
            input_packets: None,
            output_packets: None,
            terminate_cause: None,
            class: None,
            details: BTreeMap::new(),
            location: None,
        }
    }

    /// The parsed status type.
    pub fn status_type(&self) -> StatusType {
        StatusType::from_u32(self.status)
    }

    /// When the session started, as far as this record can tell.
    pub fn started_at(&self) -> i64 {
        match self.status_type() {
            StatusType::Start => self.event_time,
            _ => self.event_time - i64::from(self.session_time.unwrap_or(0)),
        }
    }
}

/// Which event times are believed: at most `ahead_s` seconds after the packet's arrival
/// (a NAS clock years ahead is not), and not before `not_before` (a NAS clock reset to
/// 1970). Times in the past are otherwise believed however old: NAS hold accounting
/// back while the server is unreachable, and history is sent again with its own times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockBounds {
    pub ahead_s: i64,
    pub not_before: i64,
}

impl Default for ClockBounds {
    /// Five minutes ahead; nothing before 2000-01-01.
    fn default() -> Self {
        Self { ahead_s: 300, not_before: 946_684_800 }
    }
}

impl AccountingRecord {
    /// Sets an event time outside `bounds` to the arrival second and keeps the value the
    /// NAS sent as `event_time_sent` in the details. Returns whether it did.
    pub fn clamp_event_time(&mut self, bounds: ClockBounds) -> bool {
        let arrival = self.arrival_ms.div_euclid(1000);
        if self.event_time.saturating_sub(arrival) <= bounds.ahead_s && self.event_time >= bounds.not_before {
            return false;
        }
        self.details.insert("event_time_sent".into(), self.event_time.to_string());
        self.event_time = arrival;
        true
    }
}

/// Normalises one verified Accounting-Request that came from the configured client
/// named `client` (empty for history files, which name none).
pub fn normalise(
    request: &VerifiedRequest<'_>,
    client: &str,
    source: IpAddr,
    vendor: Vendor,
    arrival_ms: i64,
) -> Result<AccountingRecord, NormaliseError> {
    let p: &Packet<'_> = request.packet();
    if p.code() != Code::AccountingRequest {
        return Err(NormaliseError::NotAccounting(p.code()));
    }
    for (typ, name) in [
        (attr::USER_PASSWORD, "User-Password"),
        (attr::CHAP_PASSWORD, "CHAP-Password"),
        (attr::REPLY_MESSAGE, "Reply-Message"),
        (attr::STATE, "State"),
    ] {
        if p.has_attribute(typ) {
            return Err(NormaliseError::ForbiddenAttribute(name));
        }
    }
    let status = int(p, attr::ACCT_STATUS_TYPE).ok_or(NormaliseError::MissingStatusType)?;
    let delay = int(p, attr::ACCT_DELAY_TIME).unwrap_or(0);
    let arrival_s = arrival_ms.div_euclid(1000);
    let event_time = int(p, attr::EVENT_TIMESTAMP).map_or(arrival_s - i64::from(delay), i64::from);

    let user_raw = text(p, attr::USER_NAME);
    let user = user_raw.as_deref().map(canonical_user).filter(|u| !u.is_empty());
    let nas_identifier = text(p, attr::NAS_IDENTIFIER).filter(|s| !s.is_empty());
    let nas_ip = ip(p, attr::NAS_IP_ADDRESS)
        .map(IpAddr::V4)
        .or_else(|| p.attribute(attr::NAS_IPV6_ADDRESS).and_then(ipv6).map(IpAddr::V6));
    let nas = nas_identifier.clone().or_else(|| nas_ip.map(|i| i.to_string())).unwrap_or_else(|| source.to_string());
    let session_id = text(p, attr::ACCT_SESSION_ID);
    let session_key = StatusType::from_u32(status)
        .is_session_event()
        .then(|| session_key(client, &nas, session_id.as_deref().unwrap_or(""), user.as_deref().unwrap_or("")));

    let mut details = BTreeMap::new();
    if let Some(id) = nas_identifier.filter(|_| nas_ip.is_some()) {
        details.insert("nas_identifier".into(), id);
    }
    if !client.is_empty() {
        details.insert("client".into(), client.to_owned());
    }
    let observed = vendor::observe(p, vendor, &mut details);

    Ok(AccountingRecord {
        status,
        event_time,
        arrival_ms,
        delay,
        user_raw,
        user,
        nas,
        nas_ip,
        nas_port: int(p, attr::NAS_PORT),
        session_id,
        multi_session_id: text(p, attr::ACCT_MULTI_SESSION_ID),
        session_key,
        client_ip: observed.client_ip,
        device: observed.device,
        framed_ip: ip(p, attr::FRAMED_IP_ADDRESS),
        framed_ipv6: framed_ipv6(p),
        session_time: int(p, attr::ACCT_SESSION_TIME),
        input_octets: octets(p, attr::ACCT_INPUT_OCTETS, attr::ACCT_INPUT_GIGAWORDS),
        output_octets: octets(p, attr::ACCT_OUTPUT_OCTETS, attr::ACCT_OUTPUT_GIGAWORDS),
        input_packets: int(p, attr::ACCT_INPUT_PACKETS),
        output_packets: int(p, attr::ACCT_OUTPUT_PACKETS),
        terminate_cause: int(p, attr::ACCT_TERMINATE_CAUSE).map(terminate_cause_name),
        class: p.attribute(attr::CLASS).map(hex),
        details,
        location: None,
    })
}

/// The stable session key: the first 16 octets of SHA-256 over the configured client
/// the records came from, NAS, Acct-Session-Id and canonical user, hex. The NAS names
/// are what the packet claims, so the client is part of the key: another NAS, sending
/// with its own secret, naming the same NAS and session, reaches a session of its own,
/// never this one. NAS-Port is left out (some NAS change it mid-session).
pub fn session_key(client: &str, nas: &str, session_id: &str, user: &str) -> String {
    let mut h = Sha256::new();
    for part in [client, nas, session_id, user] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize()[..16])
}

/// The RFC 2866 §5.10 name of a terminate cause, or its number.
pub fn terminate_cause_name(v: u32) -> String {
    const NAMES: [&str; 18] = [
        "User-Request",
        "Lost-Carrier",
        "Lost-Service",
        "Idle-Timeout",
        "Session-Timeout",
        "Admin-Reset",
        "Admin-Reboot",
        "Port-Error",
        "NAS-Error",
        "NAS-Request",
        "NAS-Reboot",
        "Port-Unneeded",
        "Port-Preempted",
        "Port-Suspended",
        "Service-Unavailable",
        "Callback",
        "User-Error",
        "Host-Request",
    ];
    usize::try_from(v)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| v.to_string(), |s| (*s).to_string())
}

pub(crate) fn int(p: &Packet<'_>, typ: u8) -> Option<u32> {
    p.attribute(typ).and_then(|v| <[u8; 4]>::try_from(v).ok()).map(u32::from_be_bytes)
}

pub(crate) fn text(p: &Packet<'_>, typ: u8) -> Option<String> {
    p.attribute(typ).map(lossy)
}

pub(crate) fn lossy(v: &[u8]) -> String {
    String::from_utf8_lossy(v).trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string()
}

fn ip(p: &Packet<'_>, typ: u8) -> Option<Ipv4Addr> {
    p.attribute(typ).and_then(|v| <[u8; 4]>::try_from(v).ok()).map(Ipv4Addr::from)
}

fn ipv6(v: &[u8]) -> Option<std::net::Ipv6Addr> {
    <[u8; 16]>::try_from(v).ok().map(std::net::Ipv6Addr::from)
}

fn framed_ipv6(p: &Packet<'_>) -> Option<String> {
    if let Some(a) = p.attribute(attr::FRAMED_IPV6_ADDRESS).and_then(ipv6) {
        return Some(a.to_string());
    }
    p.attribute(attr::FRAMED_IPV6_PREFIX)
        .and_then(|v| Value::decode(DataType::Ipv6Prefix, v).ok())
        .map(|v| v.to_string())
}

fn octets(p: &Packet<'_>, low: u8, giga: u8) -> Option<u64> {
    let lo = int(p, low)?;
    Some((u64::from(int(p, giga).unwrap_or(0)) << 32) | u64::from(lo))
}

pub(crate) fn tagged_text(p: &Packet<'_>, typ: u8) -> Option<String> {
    p.attribute(typ).map(|v| lossy(&split_tag(DataType::Text, v).1))
}

fn hex(v: &[u8]) -> String {
    use std::fmt::Write;
    v.iter().fold(String::with_capacity(v.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
