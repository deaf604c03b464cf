//! The network-policy stage: the decided account's groups and dial-in permission, the
//! request's NAS, station and method, and the local time, against the policies in order.

use portcullis_auth::mschap::MschapError;
use portcullis_auth::policy::{self, Method, MfaMode, PolicyDecision, PolicyRequest, reason};
use portcullis_radius::{Packet, attr};

use super::context::AuthShared;
use super::decision::{Denied, Grant, Refusal};
use crate::directory::Account;

/// The stricter of two second-factor modes.
fn stricter(a: MfaMode, b: MfaMode) -> MfaMode {
    let rank = |m: MfaMode| match m {
        MfaMode::Off => 0,
        MfaMode::Optional => 1,
        MfaMode::Required => 2,
    };
    if rank(a) >= rank(b) { a } else { b }
}

/// Evaluates the network policies for an account whose credentials verified.
/// `default_mfa` is `[mfa] policy_default` (Off without an `[mfa]` section): a grant
/// through a denying policy by the account's dial-in permission never takes that
/// policy's weaker mode.
pub(crate) fn authorize(
    shared: &AuthShared,
    packet: &Packet<'_>,
    account: &Account,
    method: Option<Method>,
) -> Result<Grant, Denied> {
    let (weekday, minute) = shared.zone.weekday_minute(crate::now_unix());
    let text = |t: u8| packet.attribute(t).map(|v| String::from_utf8_lossy(v).into_owned());
    let nas_identifier = text(attr::NAS_IDENTIFIER);
    let called = text(attr::CALLED_STATION_ID);
    let calling = text(attr::CALLING_STATION_ID);
    let req = PolicyRequest {
        groups: &account.groups,
        nas_identifier: nas_identifier.as_deref(),
        nas_port_type: packet.attribute(attr::NAS_PORT_TYPE).and_then(|v| v.try_into().ok()).map(u32::from_be_bytes),
        called_station_id: called.as_deref(),
        calling_station_id: calling.as_deref(),
        method,
        weekday,
        minute,
        dialin: account.dialin,
    };
    match policy::evaluate(&shared.policies, &req) {
        (PolicyDecision::Grant { policy, dialin_override }, _) => {
            let own = shared.policy(&policy).and_then(|p| p.mfa);
            let mfa = if dialin_override {
                let default = shared.mfa.as_ref().map_or(MfaMode::Off, |m| m.config.policy_default);
                Some(stricter(own.unwrap_or(default), default))
            } else {
                own
            };
            Ok(Grant { policy, mfa })
        }
        (PolicyDecision::Deny { policy, reason: r }, why) => {
            let e = match r {
                reason::LOGON_HOURS => MschapError::RestrictedLogonHours,
                reason::DIALIN_DENIED => MschapError::NoDialinPermission,
                _ => MschapError::AuthenticationFailure,
            };
            Err(Denied { policy, refusal: Refusal::new(r, e, why.join("; ")) })
        }
    }
}
