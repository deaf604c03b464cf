//! Network policies in the NPS model: evaluated in order, the first whose conditions
//! match decides; its constraints (methods, day and time) can still deny. No match
//! denies. Every step is explained, for `portcullis policy test` and the audit log.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Authentication methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Pap,
    Chap,
    Mschapv2,
    EapMschapv2,
    Peap,
}

impl Method {
    /// The configuration and audit spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pap => "pap",
            Self::Chap => "chap",
            Self::Mschapv2 => "mschapv2",
            Self::EapMschapv2 => "eap-mschapv2",
            Self::Peap => "peap",
        }
    }

    /// Parses the configuration spelling.
    pub fn from_name(s: &str) -> Option<Self> {
        [Self::Pap, Self::Chap, Self::Mschapv2, Self::EapMschapv2, Self::Peap].into_iter().find(|m| m.name() == s)
    }
}

/// NPS reason codes used in audit events.
pub mod reason {
    pub const SUCCESS: u32 = 0;
    pub const NO_SUCH_USER: u32 = 8;
    pub const AUTHENTICATION_FAILED: u32 = 16;
    /// An extension rejected the request: what NPS logs when its MFA extension refuses
    /// the second factor (wrong, replayed or missing code, denied or unanswered push).
    pub const EXTENSION_REJECTED: u32 = 21;
    pub const ACCOUNT_DISABLED: u32 = 34;
    pub const ACCOUNT_EXPIRED: u32 = 35;
    pub const ACCOUNT_LOCKED: u32 = 36;
    pub const LOGON_HOURS: u32 = 37;
    pub const NO_MATCHING_POLICY: u32 = 48;
    pub const NO_CONNECTION_REQUEST_POLICY: u32 = 49;
    pub const DIALIN_DENIED: u32 = 65;
    pub const METHOD_NOT_ALLOWED: u32 = 66;

    /// What an NPS administrator reads for the code (the wording of NPS's event log).
    pub fn describe(code: u32) -> &'static str {
        match code {
            SUCCESS => "success",
            NO_SUCH_USER => "the user account does not exist",
            AUTHENTICATION_FAILED => "the user name or password is incorrect",
            EXTENSION_REJECTED => "an extension (the second factor) rejected the request",
            ACCOUNT_DISABLED => "the user account is disabled",
            ACCOUNT_EXPIRED => "the user account has expired",
            ACCOUNT_LOCKED => "the user account is locked out",
            LOGON_HOURS => "the user is not allowed to log on at this time",
            NO_MATCHING_POLICY => "the connection request did not match any network policy",
            NO_CONNECTION_REQUEST_POLICY => "the connection request did not match any connection request policy",
            DIALIN_DENIED => "the network policy or the account's dial-in permission denies access",
            METHOD_NOT_ALLOWED => "the authentication method is not allowed by the network policy",
            _ => "another reason",
        }
    }
}

/// A day-and-time window: days of the week and an `HH:MM-HH:MM` range (which may wrap
/// past midnight), in the policy time zone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    /// `mon` .. `sun`; empty means every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM-HH:MM`; absent means all day.
    #[serde(default)]
    pub hours: Option<String>,
}

/// One `[[network_policy]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    pub name: String,
    /// Condition: the user is in any of these groups (empty: any user).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Condition: NAS-Identifier matches this pattern (`*` and `?` wildcards).
    #[serde(default)]
    pub nas_identifier: Option<String>,
    /// Condition: NAS-Port-Type is one of these (e.g. 5 = Virtual).
    #[serde(default)]
    pub nas_port_types: Vec<u32>,
    /// Condition: Called-Station-Id matches this pattern.
    #[serde(default)]
    pub called_station_id: Option<String>,
    /// Condition: Calling-Station-Id matches this pattern.
    #[serde(default)]
    pub calling_station_id: Option<String>,
    /// Grant or deny access when the conditions match.
    #[serde(default = "yes")]
    pub grant: bool,
    /// Constraint: allowed methods (empty: any).
    #[serde(default)]
    pub methods: Vec<Method>,
    /// Constraint: allowed day-and-time windows (empty: always).
    #[serde(default)]
    pub time_windows: Vec<TimeWindow>,
    /// Session-Timeout sent in the Access-Accept (seconds).
    #[serde(default)]
    pub session_timeout: Option<u32>,
    /// Idle-Timeout sent in the Access-Accept (seconds).
    #[serde(default)]
    pub idle_timeout: Option<u32>,
    /// Extra reply attributes by dictionary name (`Class`, `Filter-Id`, VSAs...).
    #[serde(default)]
    pub reply: BTreeMap<String, String>,
    /// Second factor before the Access-Accept (default: `[mfa] policy_default`).
    #[serde(default)]
    pub mfa: Option<MfaMode>,
}

/// Whether a granting policy asks for a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MfaMode {
    /// Every user proves a second factor (users without one: `[mfa] require_user_match`).
    Required,
    /// Users with a factor prove it; users without one pass.
    Optional,
    /// No second factor.
    Off,
}

fn yes() -> bool {
    true
}

/// What a policy is evaluated against.
#[derive(Debug, Clone, Default)]
pub struct PolicyRequest<'a> {
    pub groups: &'a [String],
    pub nas_identifier: Option<&'a str>,
    pub nas_port_type: Option<u32>,
    pub called_station_id: Option<&'a str>,
    pub calling_station_id: Option<&'a str>,
    pub method: Option<Method>,
    /// Local day of week, 0 = Monday.
    pub weekday: u8,
    /// Local minutes since midnight.
    pub minute: u16,
    /// The account's own dial-in permission (Active Directory `msNPAllowDialin`): `true`
    /// allows even where the matching policy denies, `false` denies, `None` leaves it to
    /// the policy — as NPS does.
    pub dialin: Option<bool>,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyDecision {
    /// `dialin_override`: the policy itself denies and the account's dial-in
    /// permission allowed the request anyway (so the policy's own settings, such as its
    /// second-factor mode, were written for refusals and must not weaken the grant).
    Grant {
        policy: String,
        dialin_override: bool,
    },
    Deny {
        policy: Option<String>,
        reason: u32,
    },
}

impl std::fmt::Display for PolicyDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Grant { policy, dialin_override } => {
                write!(f, "Access-Accept by network policy {policy:?}")?;
                if *dialin_override {
                    write!(f, " (the account's dial-in permission overrides its deny)")?;
                }
                Ok(())
            }
            Self::Deny { policy, reason: code } => {
                write!(f, "Access-Reject")?;
                if let Some(p) = policy {
                    write!(f, " by network policy {p:?}")?;
                }
                write!(f, ", reason code {code}: {}", reason::describe(*code))
            }
        }
    }
}

/// Evaluates policies in order; returns the decision and the explanation.
pub fn evaluate(policies: &[NetworkPolicy], req: &PolicyRequest<'_>) -> (PolicyDecision, Vec<String>) {
    let mut why = Vec::new();
    for p in policies {
        if let Some(miss) = condition_miss(p, req) {
            why.push(format!("policy {:?} skipped: {miss}", p.name));
            continue;
        }
        why.push(format!("policy {:?} matched", p.name));
        let deny = |why: &mut Vec<String>, text: &str| {
            why.push(text.to_string());
            PolicyDecision::Deny { policy: Some(p.name.clone()), reason: reason::DIALIN_DENIED }
        };
        let dialin_override = req.dialin == Some(true) && !p.grant;
        match (req.dialin, p.grant) {
            (Some(false), _) => return (deny(&mut why, "the account's dial-in permission denies access"), why),
            (Some(true), false) => why.push("it denies access, but the account's dial-in permission allows it".into()),
            (None, false) => return (deny(&mut why, "it denies access"), why),
            (_, true) => {}
        }
        if let Some(m) = req.method {
            if !p.methods.is_empty() && !p.methods.contains(&m) {
                why.push(format!(
                    "method {} is not among {:?}",
                    m.name(),
                    p.methods.iter().map(|m| m.name()).collect::<Vec<_>>()
                ));
                return (
                    PolicyDecision::Deny { policy: Some(p.name.clone()), reason: reason::METHOD_NOT_ALLOWED },
                    why,
                );
            }
        }
        if !p.time_windows.is_empty() && !p.time_windows.iter().any(|w| in_window(w, req.weekday, req.minute)) {
            why.push("outside every allowed day-and-time window".into());
            return (PolicyDecision::Deny { policy: Some(p.name.clone()), reason: reason::LOGON_HOURS }, why);
        }
        why.push("access granted".into());
        return (PolicyDecision::Grant { policy: p.name.clone(), dialin_override }, why);
    }
    why.push("no network policy matched".into());
    (PolicyDecision::Deny { policy: None, reason: reason::NO_MATCHING_POLICY }, why)
}

fn condition_miss(p: &NetworkPolicy, req: &PolicyRequest<'_>) -> Option<String> {
    if !p.groups.is_empty() && !p.groups.iter().any(|g| req.groups.iter().any(|u| u.eq_ignore_ascii_case(g))) {
        return Some(format!("user groups {:?} include none of {:?}", req.groups, p.groups));
    }
    let pattern_miss = |name: &str, pat: &Option<String>, value: Option<&str>| -> Option<String> {
        let pat = pat.as_deref()?;
        (!glob(pat, value.unwrap_or(""))).then(|| format!("{name} {:?} does not match {pat:?}", value.unwrap_or("")))
    };
    if let Some(m) = pattern_miss("NAS-Identifier", &p.nas_identifier, req.nas_identifier) {
        return Some(m);
    }
    if !p.nas_port_types.is_empty() && !req.nas_port_type.is_some_and(|t| p.nas_port_types.contains(&t)) {
        return Some(format!("NAS-Port-Type {:?} is not among {:?}", req.nas_port_type, p.nas_port_types));
    }
    if let Some(m) = pattern_miss("Called-Station-Id", &p.called_station_id, req.called_station_id) {
        return Some(m);
    }
    pattern_miss("Calling-Station-Id", &p.calling_station_id, req.calling_station_id)
}

/// Parses `HH:MM-HH:MM` into minutes.
pub fn parse_hours(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    let m = |t: &str| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 24 && m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
    };
    Some((m(a)?, m(b)?))
}

/// Day names accepted in `days`.
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn in_window(w: &TimeWindow, weekday: u8, minute: u16) -> bool {
    let day_ok = w.days.is_empty()
        || w.days.iter().any(|d| DAYS.iter().position(|x| x.eq_ignore_ascii_case(d)) == Some(usize::from(weekday)));
    let time_ok = match w.hours.as_deref().and_then(parse_hours) {
        None => true,
        Some((start, end)) if start <= end => (start..end).contains(&minute),
        Some((start, end)) => minute >= start || minute < end,
    };
    day_ok && time_ok
}

pub use portcullis_radius::glob;

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(toml_text: &str) -> NetworkPolicy {
        #[derive(Deserialize)]
        struct W {
            network_policy: Vec<NetworkPolicy>,
        }
        let w: W = toml::from_str(toml_text).unwrap();
        w.network_policy.into_iter().next().unwrap()
    }

    #[test]
    fn first_match_wins_and_constraints_deny() {
        let staff = policy(
            "[[network_policy]]\nname = \"staff\"\ngroups = [\"vpn\"]\nmethods = [\"pap\", \"mschapv2\"]\nsession_timeout = 3600\n\
             [[network_policy.time_windows]]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]\nhours = \"07:00-19:00\"\n",
        );
        let deny_all = policy("[[network_policy]]\nname = \"deny\"\ngrant = false\n");
        let groups = vec!["VPN".to_string()];
        let mut req =
            PolicyRequest { groups: &groups, method: Some(Method::Pap), weekday: 1, minute: 600, ..Default::default() };
        let policies = vec![staff, deny_all];
        assert_eq!(
            evaluate(&policies, &req).0,
            PolicyDecision::Grant { policy: "staff".into(), dialin_override: false }
        );
        req.method = Some(Method::Chap);
        assert_eq!(evaluate(&policies, &req).0, PolicyDecision::Deny { policy: Some("staff".into()), reason: 66 });
        req.method = Some(Method::Pap);
        req.weekday = 6;
        let (d, why) = evaluate(&policies, &req);
        assert_eq!(d, PolicyDecision::Deny { policy: Some("staff".into()), reason: 37 });
        assert!(why.iter().any(|w| w.contains("day-and-time")));
        let none: Vec<String> = vec![];
        let req = PolicyRequest { groups: &none, weekday: 1, minute: 600, ..Default::default() };
        assert_eq!(evaluate(&policies, &req).0, PolicyDecision::Deny { policy: Some("deny".into()), reason: 65 });
        assert_eq!(evaluate(&policies[..1], &req).0, PolicyDecision::Deny { policy: None, reason: 48 });
    }

    #[test]
    fn dialin_permission_overrides_the_policy_as_nps_does() {
        let deny_all = policy("[[network_policy]]\nname = \"deny\"\ngrant = false\n");
        let allow = policy("[[network_policy]]\nname = \"allow\"\nmethods = [\"pap\"]\n");
        let none: Vec<String> = vec![];
        let mut req =
            PolicyRequest { groups: &none, method: Some(Method::Pap), dialin: Some(true), ..Default::default() };
        let (d, why) = evaluate(std::slice::from_ref(&deny_all), &req);
        assert_eq!(d, PolicyDecision::Grant { policy: "deny".into(), dialin_override: true }, "{why:?}");
        req.method = Some(Method::Chap);
        assert_eq!(
            evaluate(std::slice::from_ref(&allow), &req).0,
            PolicyDecision::Deny { policy: Some("allow".into()), reason: 66 },
            "constraints still apply"
        );
        req.method = Some(Method::Pap);
        req.dialin = Some(false);
        let (d, why) = evaluate(&[allow], &req);
        assert_eq!(d, PolicyDecision::Deny { policy: Some("allow".into()), reason: 65 });
        assert!(why.iter().any(|w| w.contains("dial-in")));
    }

    #[test]
    fn windows_wrap_midnight() {
        let w = TimeWindow { days: vec![], hours: Some("22:00-06:00".into()) };
        assert!(in_window(&w, 0, 23 * 60));
        assert!(in_window(&w, 0, 5 * 60));
        assert!(!in_window(&w, 0, 12 * 60));
        assert_eq!(parse_hours("25:00-26:00"), None);
    }

    #[test]
    fn globs() {
        assert!(glob("rras-*", "RRAS-01"));
        assert!(glob("*", ""));
        assert!(glob("10.0.?.1", "10.0.5.1"));
        assert!(!glob("asa-*", "rras-1"));
        assert!(glob("*-vpn-*", "corp-vpn-east"));
    }
}
