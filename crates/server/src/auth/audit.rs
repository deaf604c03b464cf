//! The record of every decision: the audit event (a JSON line in `auth.log`, then the
//! applier → geolocation → store → profiles → detectors), the NPS log records, and
//! the server log line. Names in an event are the account the pipeline decided on,
//! beside the name as the peer sent it.

use std::net::{IpAddr, SocketAddr};

use portcullis_auth::policy::reason;
use portcullis_radius::{Packet, attr};
use portcullis_storage::AuthEvent;

use super::context::AuthShared;
use crate::clients::Client;
use crate::{lock, now_ms, npslog};

/// A final decision, for the audit event.
pub(crate) struct Decided {
    pub(crate) accepted: bool,
    pub(crate) reason_code: u32,
    pub(crate) policy: Option<String>,
    pub(crate) message: String,
}

pub(crate) fn event(
    client: &Client,
    packet: &Packet<'_>,
    source: SocketAddr,
    user: String,
    user_raw: String,
    method: &str,
    d: Decided,
) -> AuthEvent {
    AuthEvent {
        time_ms: now_ms(),
        user,
        user_raw,
        nas: packet
            .attribute(attr::NAS_IDENTIFIER)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .or_else(|| {
                packet
                    .attribute(attr::NAS_IP_ADDRESS)
                    .and_then(|v| <[u8; 4]>::try_from(v).ok())
                    .map(|o| IpAddr::from(o).to_string())
            })
            .unwrap_or_else(|| source.ip().to_string()),
        client: client.name.clone(),
        calling_station_id: packet.attribute(attr::CALLING_STATION_ID).map(|v| String::from_utf8_lossy(v).into_owned()),
        method: method.to_string(),
        decision: if d.accepted { "accept" } else { "reject" }.into(),
        reason_code: d.reason_code,
        event_id: if d.accepted { 6272 } else { 6273 },
        policy: d.policy,
        message: d.message,
        connection_request_policy: None,
        mfa: None,
        location: None,
        approval: None,
    }
}

/// The audit event of a granted request once the second factor settled it: kept as
/// an accept, or turned into a reject (6273, reason 21, as NPS logs a rejection by its
/// MFA extension); the MFA outcome and message are recorded either way. It is stamped
/// with the time of this decision (a push may have waited for a minute).
pub(crate) fn second_factor_outcome(mut e: AuthEvent, accepted: bool, note: &str, message: String) -> AuthEvent {
    e.time_ms = now_ms();
    if !accepted {
        e.decision = "reject".into();
        e.event_id = 6273;
        e.reason_code = reason::EXTENSION_REJECTED;
    }
    e.mfa = Some(note.to_string());
    e.message = message;
    e
}

pub(crate) fn audit(shared: &AuthShared, event: AuthEvent, packet: &Packet<'_>, source: SocketAddr) {
    // Large enough for a typical line and its newline, so it is not grown on the way.
    let mut line = Vec::with_capacity(512);
    if serde_json::to_writer(&mut line, &event).is_ok() {
        shared.audit.write(line);
    }
    if let Some(log) = &shared.nps_log {
        let records = nps_records(shared, &event, packet, source, lock(log).computer());
        if let Err(e) = lock(log).write(&records) {
            tracing::warn!(error = %e, "writing the NPS log failed");
        }
    }
    tracing::info!(
        user = %event.user, decision = %event.decision, reason_code = event.reason_code, method = %event.method,
        policy = ?event.policy, "{}", event.message
    );
    shared.applier.send(event);
}

/// The Access-Request record and the response record NPS would log for a decision.
fn nps_records(
    shared: &AuthShared,
    event: &AuthEvent,
    packet: &Packet<'_>,
    source: SocketAddr,
    computer: &str,
) -> [npslog::NpsRecord; 2] {
    let mut request = npslog::NpsRecord {
        time_ms: event.time_ms,
        offset_seconds: shared.zone.offset_at(event.time_ms.div_euclid(1000)),
        computer: computer.to_string(),
        packet_type: npslog::ACCESS_REQUEST,
        account: Some(event.user.clone()),
        client_ip: source.ip().to_canonical().to_string(),
        client_name: event.client.clone(),
        authentication_type: npslog::authentication_type(&event.method),
        proxy_policy: event.connection_request_policy.clone(),
        eap_friendly_name: match event.method.as_str() {
            "peap" => Some("Microsoft: Protected EAP (PEAP)".into()),
            "eap-mschapv2" => Some("Microsoft: Secured password (EAP-MSCHAP v2)".into()),
            _ => None,
        },
        ..Default::default()
    };
    npslog::from_request(packet, &mut request);
    let mut response = request.clone();
    response.packet_type = match event.decision.as_str() {
        "accept" => npslog::ACCESS_ACCEPT,
        "challenge" => npslog::ACCESS_CHALLENGE,
        _ => npslog::ACCESS_REJECT,
    };
    response.reason_code = event.reason_code;
    response.policy = event.policy.clone();
    if event.decision == "accept" {
        let policy = event.policy.as_ref().and_then(|n| shared.policies.iter().find(|p| &p.name == n));
        if let Some(p) = policy {
            response.session_timeout = p.session_timeout;
            response.idle_timeout = p.idle_timeout;
            response.class = p.reply.get("Class").cloned();
        }
    }
    [request, response]
}
