//! Entity profiles and VPN threat detections, sans-IO.
//!
//! The [`Engine`] takes [`Event`]s — VPN connections and disconnections from
//! accounting, authentication decisions and second-factor outcomes — already enriched
//! with a [`Location`], in event-time order, and returns [`AlertDraft`]s. It reads no
//! clock: every rule works on the events' own times, so a replay of history yields the
//! same alerts as live ingestion did. The I/O shells (the server's applier, the replay
//! command, the evaluation harness) own files, storage and time.

mod engine;
pub mod scenario;

use std::net::IpAddr;

pub use engine::{Engine, EngineStats, OpenSessionView, PlaceView, Profile, SeenView, rfc3339};
use portcullis_geo::{Location, Network};
use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Accounting Start: a VPN connection.
    VpnStart,
    /// Accounting Stop.
    VpnStop,
    /// Accounting-On/Off: every session of the NAS (through the same client) ended.
    NasReset,
    /// Access-Accept.
    AuthSuccess,
    /// Access-Reject for the password or the account (reason in `reason`).
    AuthFailure,
    /// A reject by the second factor after the password verified (reason:
    /// wrong_code, replayed, locked_out, not_enrolled, push_denied, push_timeout,
    /// push_fatigue, unavailable, ...). Never counted as a wrong password.
    MfaFailure,
}

/// One input event: the Portcullis JSON-lines replay format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Event time, Unix seconds.
    pub time: i64,
    pub kind: EventKind,
    /// Canonical user name (empty for NAS events).
    #[serde(default)]
    pub user: String,
    /// The client's public address (Calling-Station-Id or vendor source address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The client device (machine name, MAC, device id) as the client claims it: the
    /// connecting computer chooses every one of these names, so detectors never let
    /// one cancel a physical impossibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nas: Option<String>,
    /// The NAS's NAS-IP-Address, when it sent one: an Accounting-On/Off naming the NAS
    /// by address ends the sessions recorded under its NAS-Identifier, and the reverse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nas_ip: Option<IpAddr>,
    /// The configured RADIUS client the record came through (none for history files):
    /// an Accounting-On/Off ends only the sessions recorded through the same client,
    /// since the NAS names in it are claims another client could make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Stable session key (accounting) — identifies the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Failure reason or second-factor outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where `ip` is; looked up when absent and a database is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl Event {
    /// A stable identity of this event, so the same event seen twice (a restart that
    /// replays stored history, a replayed file) never counts twice in an alert.
    pub fn identity(&self) -> String {
        match (&self.kind, &self.session) {
            (EventKind::VpnStart | EventKind::VpnStop, Some(s)) => format!("{}:{s}", self.kind.name()),
            _ => format!(
                "{}:{}:{}:{}",
                self.kind.name(),
                self.time,
                self.user,
                self.ip.map(|i| i.to_string()).unwrap_or_default()
            ),
        }
    }
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::VpnStart => "vpn_start",
            Self::VpnStop => "vpn_stop",
            Self::NasReset => "nas_reset",
            Self::AuthSuccess => "auth_success",
            Self::AuthFailure => "auth_failure",
            Self::MfaFailure => "mfa_failure",
        }
    }
}

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// The detections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    SuspiciousVpnConnection,
    ImpossibleTravel,
    NewCountry,
    ConcurrentSessions,
    BruteForce,
    PasswordSpray,
    SuccessAfterFailures,
    MfaFatigue,
    FailedSecondFactor,
}

impl AlertKind {
    pub const ALL: [Self; 9] = [
        Self::SuspiciousVpnConnection,
        Self::ImpossibleTravel,
        Self::NewCountry,
        Self::ConcurrentSessions,
        Self::BruteForce,
        Self::PasswordSpray,
        Self::SuccessAfterFailures,
        Self::MfaFatigue,
        Self::FailedSecondFactor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::SuspiciousVpnConnection => "suspicious_vpn_connection",
            Self::ImpossibleTravel => "impossible_travel",
            Self::NewCountry => "new_country",
            Self::ConcurrentSessions => "concurrent_sessions",
            Self::BruteForce => "brute_force",
            Self::PasswordSpray => "password_spray",
            Self::SuccessAfterFailures => "success_after_failures",
            Self::MfaFatigue => "mfa_fatigue",
            Self::FailedSecondFactor => "failed_second_factor",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::SuspiciousVpnConnection => "Suspicious VPN connection",
            Self::ImpossibleTravel => "Impossible travel",
            Self::NewCountry => "VPN connection from a new country",
            Self::ConcurrentSessions => "Concurrent VPN sessions from distant locations",
            Self::BruteForce => "Brute force against one account",
            Self::PasswordSpray => "Password spray from one source",
            Self::SuccessAfterFailures => "Successful login after a burst of failures",
            Self::MfaFatigue => "MFA fatigue: repeated rejected or unanswered pushes",
            Self::FailedSecondFactor => "Right password, failed second factor",
        }
    }

    /// MITRE ATT&CK technique.
    pub fn mitre(self) -> &'static str {
        match self {
            Self::SuspiciousVpnConnection | Self::NewCountry => "T1133",
            Self::ImpossibleTravel | Self::ConcurrentSessions | Self::FailedSecondFactor => "T1078",
            Self::BruteForce => "T1110.001",
            Self::PasswordSpray => "T1110.003",
            Self::SuccessAfterFailures => "T1110",
            Self::MfaFatigue => "T1621",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Self::SuspiciousVpnConnection | Self::NewCountry | Self::BruteForce => Severity::Medium,
            Self::ImpossibleTravel
            | Self::ConcurrentSessions
            | Self::PasswordSpray
            | Self::SuccessAfterFailures
            | Self::MfaFatigue
            | Self::FailedSecondFactor => Severity::High,
        }
    }
}

/// An alert as a detector raises it; storage gives it an id, a status and folds
/// repeats (same `fold_key` while open) into one alert with a count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertDraft {
    pub kind: AlertKind,
    pub severity: Severity,
    /// The user, or the source address for password spray.
    pub user: String,
    /// Time of the causing event, Unix seconds.
    pub event_time: i64,
    pub message: String,
    pub evidence: serde_json::Value,
    /// Repeats with the same key fold into the open alert.
    pub fold_key: String,
    /// Identity of the causing event ([`Event::identity`]).
    pub cause: String,
    /// The source address of the causing event.
    pub ip: Option<IpAddr>,
}

/// A rule that silences alerts: every given condition must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suppression {
    /// Alert kinds (all when empty).
    #[serde(default)]
    pub kinds: Vec<AlertKind>,
    #[serde(default)]
    pub user: Option<String>,
    /// Source address range.
    #[serde(default)]
    pub network: Option<Network>,
    #[serde(default)]
    pub asn: Option<u32>,
    /// Why (kept for the operator; not used).
    #[serde(default)]
    pub comment: Option<String>,
}

impl Suppression {
    fn matches(&self, alert: &AlertDraft, asn: Option<u32>) -> bool {
        self.matches_parts(alert.kind, &alert.user, alert.ip, asn)
    }

    fn matches_parts(&self, kind: AlertKind, user: &str, ip: Option<IpAddr>, asn: Option<u32>) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&kind))
            && self.user.as_ref().is_none_or(|u| u.eq_ignore_ascii_case(user))
            && self.network.is_none_or(|n| ip.is_some_and(|ip| n.contains(ip)))
            && self.asn.is_none_or(|a| asn == Some(a))
            && (self.user.is_some() || self.network.is_some() || self.asn.is_some() || !self.kinds.is_empty())
    }
}

/// Detection parameters (`[detect]` in the configuration). Defaults follow
/// the anchors: see docs/detections.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Profile window: locations, addresses and devices older than this are forgotten.
    pub window_days: u32,
    /// Detections to run (all by default).
    pub enabled: Vec<AlertKind>,
    pub suspicious_vpn: SuspiciousVpnConfig,
    pub impossible_travel: TravelConfig,
    pub new_country: NewCountryConfig,
    pub concurrent_sessions: ConcurrentConfig,
    pub brute_force: BruteForceConfig,
    pub password_spray: SprayConfig,
    pub success_after_failures: SuccessAfterFailuresConfig,
    pub mfa_fatigue: MfaFatigueConfig,
    pub failed_second_factor: FailedSecondFactorConfig,
    /// Egress that is not where the user is: cloud hosting, VPN providers,
    /// anonymisers, satellite links. Never a travel baseline; never "a new location".
    pub egress_asns: Vec<u32>,
    pub egress_networks: Vec<Network>,
    #[serde(rename = "suppression")]
    pub suppressions: Vec<Suppression>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            window_days: 30,
            enabled: AlertKind::ALL.to_vec(),
            suspicious_vpn: SuspiciousVpnConfig::default(),
            impossible_travel: TravelConfig::default(),
            new_country: NewCountryConfig::default(),
            concurrent_sessions: ConcurrentConfig::default(),
            brute_force: BruteForceConfig::default(),
            password_spray: SprayConfig::default(),
            success_after_failures: SuccessAfterFailuresConfig::default(),
            mfa_fatigue: MfaFatigueConfig::default(),
            failed_second_factor: FailedSecondFactorConfig::default(),
            egress_asns: Vec::new(),
            egress_networks: Vec::new(),
            suppressions: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuspiciousVpnConfig {
    /// Days after the user's first VPN connection before the model is armed.
    pub learning_days: u32,
    /// Connections within the window needed before the model is armed.
    pub min_connections: u32,
    /// 1 (default): one strong deviation alerts — a country new to the user in the
    /// window and rare across the organisation, reached on a new computer or at an
    /// hour the user does not connect in; a computer new to the user that matches no
    /// `managed_devices` pattern (when patterns are set) or that connects at an hour the
    /// user does not connect in; a device name physically impossible here. A new place
    /// or network (not one many colleagues use, in a country that is not rare) and a
    /// new computer together alert too. Hours are those of the user's day: the solar
    /// time where they are, once they could have flown there.
    /// 2: only those two together (the anchor's two-feature rule).
    pub min_deviations: u32,
    /// Name patterns (`*`, `?`) of the organisation's managed computers: a managed
    /// computer new to the user is not a device deviation (a replaced laptop, a second
    /// company device) while its claim is physically consistent. Empty: every device
    /// new to the user deviates.
    pub managed_devices: Vec<String>,
    /// A country is rare across the organisation when fewer than this share of the
    /// users with a profile connected from it in the history ... (networks are
    /// reported as rare in the evidence by the same measure over the window)
    pub common_fraction: f64,
    /// ... or fewer than this many users.
    pub common_min_users: u32,
}

impl Default for SuspiciousVpnConfig {
    fn default() -> Self {
        Self {
            learning_days: 30,
            min_connections: 5,
            min_deviations: 1,
            managed_devices: Vec::new(),
            common_fraction: 0.01,
            common_min_users: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TravelConfig {
    /// Distance minus both accuracy radii, at least.
    pub min_distance_km: f64,
    /// Speed needed to cover it, more than.
    pub max_speed_kmh: f64,
    /// Accuracy radius assumed when the database gives none (DB-IP Lite).
    pub default_accuracy_km: f64,
    /// No alert when both ends are in the same country.
    pub ignore_same_country: bool,
    /// No alert when the countries border each other (built-in table).
    pub ignore_neighbours: bool,
}

impl Default for TravelConfig {
    fn default() -> Self {
        Self {
            min_distance_km: 500.0,
            max_speed_kmh: 800.0,
            default_accuracy_km: 0.0,
            ignore_same_country: false,
            ignore_neighbours: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NewCountryConfig {
    /// Countries are remembered this long per user.
    pub history_days: u32,
    /// No alert before the user has been seen this long.
    pub learning_days: u32,
    /// A country is common across the organisation when at least this share of the
    /// users seen in the history connected from it ...
    pub common_fraction: f64,
    /// ... and at least this many users.
    pub common_min_users: u32,
    /// No alert when the connection comes from a device the user has used before
    /// (their own laptop on a trip). Off for NAS that report no trustworthy device.
    pub ignore_known_device: bool,
}

impl Default for NewCountryConfig {
    fn default() -> Self {
        Self {
            history_days: 90,
            learning_days: 14,
            common_fraction: 0.01,
            common_min_users: 5,
            ignore_known_device: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrentConfig {
    pub min_distance_km: f64,
    /// Sessions without a Stop are considered ended after this long.
    pub max_session_hours: u32,
    /// A session claimed by the same computer name as the new one counts this long:
    /// one computer connecting again suggests its earlier session lost its Stop, but
    /// not within a working day, so a copied name still meets the open session.
    pub same_device_hours: u32,
}

impl Default for ConcurrentConfig {
    fn default() -> Self {
        Self { min_distance_km: 500.0, max_session_hours: 24, same_device_hours: 12 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BruteForceConfig {
    pub failures: u32,
    pub window_minutes: u32,
}

impl Default for BruteForceConfig {
    fn default() -> Self {
        Self { failures: 10, window_minutes: 10 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SprayConfig {
    /// Distinct users failing from one source, at least.
    pub users: u32,
    /// Average attempts per user, at most (more is brute force).
    pub max_attempts_per_user: f64,
    pub window_minutes: u32,
}

impl Default for SprayConfig {
    fn default() -> Self {
        Self { users: 10, max_attempts_per_user: 3.0, window_minutes: 60 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuccessAfterFailuresConfig {
    pub failures: u32,
    pub window_minutes: u32,
}

impl Default for SuccessAfterFailuresConfig {
    fn default() -> Self {
        Self { failures: 10, window_minutes: 20 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfaFatigueConfig {
    /// Denied, unanswered or refused pushes, at least.
    pub pushes: u32,
    pub window_minutes: u32,
}

impl Default for MfaFatigueConfig {
    fn default() -> Self {
        Self { pushes: 3, window_minutes: 15 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailedSecondFactorConfig {
    /// Second-factor failures after a verified password, at least, with no successful
    /// login of the user between them ...
    pub failures: u32,
    /// ... within this many minutes; once per window.
    pub window_minutes: u32,
    /// The outcomes that count (the `reason` of an `mfa_failure` event). Unanswered
    /// pushes, an unreachable MFA service and users without a factor are left out by
    /// default: they are not the second factor refusing someone.
    pub reasons: Vec<String>,
}

impl Default for FailedSecondFactorConfig {
    fn default() -> Self {
        Self {
            failures: 3,
            window_minutes: 30,
            reasons: ["wrong_code", "replayed", "locked_out", "push_denied", "remote_reject"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl Config {
    pub(crate) fn is_egress(&self, ip: Option<IpAddr>, location: Option<&Location>) -> bool {
        let asn = location.and_then(|l| l.asn);
        asn.is_some_and(|a| self.egress_asns.contains(&a))
            || ip.is_some_and(|ip| self.egress_networks.iter().any(|n| n.contains(ip)))
    }

    pub(crate) fn suppressed(&self, alert: &AlertDraft, asn: Option<u32>) -> bool {
        self.suppressions.iter().any(|s| s.matches(alert, asn))
    }

    /// Whether an alert of this kind for this user and source would be suppressed.
    pub(crate) fn would_suppress(&self, kind: AlertKind, user: &str, ip: Option<IpAddr>, asn: Option<u32>) -> bool {
        self.suppressions.iter().any(|s| s.matches_parts(kind, user, ip, asn))
    }
}

/// Pairs of countries that share a land border (ISO 3166-1 alpha-2), for the
/// optional neighbour suppression of impossible travel. Europe, North America and
/// the larger neighbourhoods of Asia, South America and Africa.
#[rustfmt::skip]
const NEIGHBOURS: &[(&str, &str)] = &[
    ("AT", "CH"), ("AT", "CZ"), ("AT", "DE"), ("AT", "HU"), ("AT", "IT"), ("AT", "LI"), ("AT", "SI"), ("AT", "SK"),
    ("BE", "DE"), ("BE", "FR"), ("BE", "LU"), ("BE", "NL"), ("BG", "GR"), ("BG", "MK"), ("BG", "RO"), ("BG", "RS"),
    ("BG", "TR"), ("BY", "LT"), ("BY", "LV"), ("BY", "PL"), ("BY", "RU"), ("BY", "UA"), ("CH", "DE"), ("CH", "FR"),
    ("CH", "IT"), ("CH", "LI"), ("CZ", "DE"), ("CZ", "PL"), ("CZ", "SK"), ("DE", "DK"), ("DE", "FR"), ("DE", "LU"),
    ("DE", "NL"), ("DE", "PL"), ("EE", "LV"), ("EE", "RU"), ("ES", "FR"), ("ES", "PT"), ("ES", "AD"), ("FR", "AD"),
    ("FR", "IT"), ("FR", "LU"), ("FR", "MC"), ("FI", "NO"), ("FI", "RU"), ("FI", "SE"), ("GB", "IE"), ("GR", "AL"),
    ("GR", "MK"), ("GR", "TR"), ("HR", "BA"), ("HR", "HU"), ("HR", "ME"), ("HR", "RS"), ("HR", "SI"), ("HU", "RO"),
    ("HU", "RS"), ("HU", "SI"), ("HU", "SK"), ("HU", "UA"), ("IT", "SI"), ("IT", "SM"), ("IT", "VA"), ("LT", "LV"),
    ("LT", "PL"), ("LT", "RU"), ("LV", "RU"), ("MD", "RO"), ("MD", "UA"), ("NO", "RU"), ("NO", "SE"), ("PL", "RU"),
    ("PL", "SK"), ("PL", "UA"), ("RO", "RS"), ("RO", "UA"), ("RS", "BA"), ("RS", "ME"), ("RS", "MK"), ("SK", "UA"),
    ("AL", "ME"), ("AL", "MK"), ("BA", "ME"), ("RU", "UA"), ("CA", "US"), ("MX", "US"), ("MX", "GT"), ("MX", "BZ"),
    ("AR", "BR"), ("AR", "CL"), ("AR", "UY"), ("AR", "PY"), ("AR", "BO"), ("BR", "UY"), ("BR", "PY"), ("BR", "BO"),
    ("BR", "PE"), ("BR", "CO"), ("BR", "VE"), ("CL", "PE"), ("CL", "BO"), ("CO", "VE"), ("CO", "PE"), ("CO", "EC"),
    ("EC", "PE"), ("IN", "PK"), ("IN", "CN"), ("IN", "NP"), ("IN", "BD"), ("CN", "RU"), ("CN", "MN"), ("CN", "KZ"),
    ("CN", "VN"), ("CN", "KP"), ("KP", "KR"), ("MY", "TH"), ("MY", "SG"), ("TH", "KH"), ("TH", "LA"), ("TH", "MM"),
    ("VN", "KH"), ("VN", "LA"), ("AE", "OM"), ("AE", "SA"), ("SA", "JO"), ("SA", "KW"), ("SA", "QA"), ("IL", "JO"),
    ("IL", "EG"), ("TR", "GE"), ("TR", "SY"), ("TR", "IR"), ("ZA", "NA"), ("ZA", "BW"), ("ZA", "ZW"), ("ZA", "MZ"),
    ("KE", "TZ"), ("KE", "UG"), ("NG", "BJ"), ("NG", "NE"), ("NG", "CM"), ("EG", "LY"), ("EG", "SD"), ("MA", "DZ"),
    ("DZ", "TN"), ("TN", "LY"),
];

/// Whether two countries share a land border.
pub fn neighbours(a: &str, b: &str) -> bool {
    NEIGHBOURS.iter().any(|&(x, y)| (x == a && y == b) || (x == b && y == a))
}
