//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Portcullis guards a company's VPN: it records every VPN session from RADIUS
/// accounting, durably, on-premises.
/// Every command that reads a configuration finds it the same way: `--config`, else
/// `$PORTCULLIS_CONFIG`, else `/etc/portcullis/portcullis.toml`, else the demo.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `portcullis mfa ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum MfaCommand {
    /// Enrol a TOTP factor: prints the otpauth URI, a QR code and recovery codes
    /// (replaces an existing factor).
    Enroll {
        user: String,
        /// The user store to look the account up in (when connection-request
        /// policies could choose several for this name).
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// sha1 (every app) or sha256.
        #[arg(long, default_value = "sha1")]
        algorithm: String,
        /// 6 or 8.
        #[arg(long, default_value_t = 6)]
        digits: u32,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// A one-time link to a self-service enrolment page (served by the [http] listener).
    EnrollLink {
        user: String,
        /// The user store to look the account up in (when connection-request
        /// policies could choose several for this name).
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// How long the link stays valid.
        #[arg(long, default_value_t = 24)]
        valid_hours: u32,
    },
    /// Let the user's logins ask for push approval, sent to the user's own ntfy topic
    /// or webhook, or else through the configured shared webhook (replaces an earlier
    /// target). Users who did not enrol for push get none.
    EnrollPush {
        user: String,
        /// The user store to look the account up in (when connection-request
        /// policies could choose several for this name).
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// The user's own ntfy topic URL (ntfy's plain-text publish).
        #[arg(long, conflicts_with = "webhook")]
        ntfy: Option<String>,
        /// The user's own webhook URL (gets the configured JSON template).
        #[arg(long)]
        webhook: Option<String>,
    },
    /// Remove a user's factor, recovery codes, push enrolment and lockout.
    Reset {
        user: String,
        /// The user store to look the account up in (when connection-request
        /// policies could choose several for this name).
        #[arg(long)]
        store: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Enrolled users.
    List(ListArgs),
}

/// The arguments of a listing: the configuration and the output format.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ListArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `portcullis cert ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// Make a demo CA and a server certificate signed by it (for trials; use your
    /// organisation's CA in production).
    Init {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to write ca.pem, ca.key, server.pem and server.key (default: DATA_DIR/tls).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The server's DNS name (certificate subject and subjectAltName).
        #[arg(long, default_value = "portcullis.local")]
        name: String,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Print the `[http]` listener's certificate: its SHA-256 fingerprint (compare it
    /// with the one the browser shows), SPKI hash, validity and names.
    Show {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// `portcullis sessions ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum SessionsCommand {
    /// End sessions at their NAS with an RFC 5176 Disconnect-Request (to the client's
    /// coa_port, signed with its secret); the outcome is recorded in actions.log.
    Disconnect {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The session (its key, as `sessions --format json` shows it).
        #[arg(long, required_unless_present = "user", conflicts_with = "user")]
        session_key: Option<String>,
        /// Every open session of this user.
        #[arg(long)]
        user: Option<String>,
        /// Attempts before giving up (waiting 1 s, 2 s, 4 s, 8 s between them).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=8))]
        attempts: u32,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the server. Without --config, runs the demo (127.0.0.1:1813, secret testing123).
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and exit.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List recorded VPN sessions, most recent first; `sessions disconnect` ends them.
    #[command(args_conflicts_with_subcommands = true)]
    Sessions {
        #[command(subcommand)]
        action: Option<SessionsCommand>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Canonical (alice) or raw (EXAMPLE\alice) user name.
        #[arg(long)]
        user: Option<String>,
        /// Only sessions still open.
        #[arg(long)]
        open: bool,
        /// Sessions still active at or after TIME: RFC 3339, a date (2026-11-21), or an age (90m, 12h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        pivot: Pivot,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show per-client ingestion counters (accepted, duplicates, bad secrets, ...).
    Stats {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Rebuild every session from the kept raw packets (stop the server first).
    Rebuild {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Copy databases, the MFA key and the journal into a new directory while the server runs.
    Backup {
        /// The directory to create (it must not exist).
        #[arg(long = "to")]
        to: PathBuf,
        /// Also copy auth.log and the NPS log files.
        #[arg(long)]
        logs: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Query the attribute dictionary.
    Dictionary {
        #[command(subcommand)]
        command: DictionaryCommand,
    },
    /// Load generator: send requests on loopback, verify every response, print JSON.
    Bench(BenchArgs),
    /// Second factors: enrol, reset, list.
    Mfa {
        #[command(subcommand)]
        command: MfaCommand,
    },
    /// Server certificates: a demo CA for PEAP, and the HTTPS listener's.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// RADIUS clients added at runtime (stored in clients.db; the running server takes
    /// a change within a second). Clients of the configuration file are listed, read-only.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Portal accounts and API tokens (not RADIUS users).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Manage local accounts (the built-in user store). Formerly `user`.
    #[command(alias = "user")]
    Accounts {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// List authentication decisions (NPS-style events 6272/6273), newest first.
    AuthLog {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        user: Option<String>,
        /// accept, reject or challenge.
        #[arg(long)]
        result: Option<String>,
        /// RFC 3339, a date, or an age (90m, 12h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        pivot: Pivot,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Explain which network policy a login would match and why.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Entity profiles: locations, addresses, devices, timeline. Formerly `users`.
    #[command(alias = "users")]
    Profiles {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Look addresses up in the configured geolocation databases (offline).
    Geo {
        #[command(subcommand)]
        command: GeoCommand,
    },
    /// Detection alerts: list, classify, resolve.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// Ingest history (Portcullis JSON lines, FreeRADIUS detail, NPS IAS/DTS logs)
    /// with event time; runs the same detections as live ingestion.
    Replay {
        /// Files, read in the given order and merged by event time.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// File format (guessed from the first line by default).
        #[arg(long, value_enum, default_value = "auto")]
        input: ReplayFormat,
        /// Vendor adapter for accounting records, spelt as `[[client]] vendor`: generic,
        /// microsoft, cisco-asa, f5, checkpoint, fortinet or palo-alto.
        #[arg(long, default_value = "generic")]
        vendor: String,
        /// Zone of local times in files that carry none (NPS IAS and DTS files): an IANA
        /// name or an offset; default auth.time_zone. Zones written in a file win.
        #[arg(long)]
        time_zone: Option<String>,
        /// Print the alerts as JSON lines instead of storing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Measure the detections on a seeded synthetic workforce with injected attacks.
    Eval {
        #[arg(long, default_value_t = 5000)]
        users: usize,
        #[arg(long, default_value_t = 90)]
        days: i64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Attacks of each kind per 1,000 users.
        #[arg(long, default_value_t = 12)]
        attacks_per_thousand: usize,
        /// Look every event's address up in this MMDB file as well (measures
        /// geolocation + profiles + detectors together).
        #[arg(long)]
        geoip: Option<PathBuf>,
        /// Write the events (JSON lines, for `portcullis replay`) and the ground truth here.
        #[arg(long)]
        write: Option<PathBuf>,
        /// Run with the default detection settings instead of the organisation's (its
        /// VDI egress ASN and managed computer names unknown to the detectors).
        #[arg(long)]
        defaults: bool,
        /// `[detect.suspicious_vpn] min_deviations` to score with: 1 (the default, one
        /// strong deviation alerts) or 2 (where and which computer must both deviate).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2))]
        min_deviations: u32,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

/// Filters to pivot on, shared by `sessions` and `auth-log`.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct Pivot {
    /// The client's public address (sessions) or Calling-Station-Id (auth-log).
    #[arg(long)]
    pub ip: Option<std::net::IpAddr>,
    /// Two-letter country code of that address (DE, US, ...).
    #[arg(long)]
    pub country: Option<String>,
    /// NAS-Identifier or NAS-IP-Address.
    #[arg(long)]
    pub nas: Option<String>,
}

impl Pivot {
    pub(crate) fn is_empty(&self) -> bool {
        self.ip.is_none() && self.country.is_none() && self.nas.is_none()
    }

    /// Whether a record from `ip`, at `location`, through a NAS named any of `nas`, passes.
    pub(crate) fn matches(&self, ip: Option<&str>, location: Option<&portcullis_geo::Location>, nas: &[&str]) -> bool {
        let ip_ok = self.ip.is_none_or(|want| {
            ip.and_then(portcullis_accounting::parse_endpoint).is_some_and(|i| i.to_canonical() == want.to_canonical())
        });
        let country_ok = self.country.as_deref().is_none_or(|want| {
            location.and_then(|l| l.country.as_deref()).is_some_and(|c| c.eq_ignore_ascii_case(want))
        });
        let nas_ok = self.nas.as_deref().is_none_or(|want| nas.contains(&want));
        ip_ok && country_ok && nas_ok
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ReplayFormat {
    Auto,
    Json,
    Detail,
    Ias,
    Dts,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GeoCommand {
    /// Where addresses are, as JSON lines (country, city, coordinates, accuracy, ASN).
    Lookup {
        #[arg(required = true)]
        ips: Vec<std::net::IpAddr>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Use these MMDB files instead of the configured ones.
        #[arg(long)]
        database: Vec<PathBuf>,
    },
    /// The loaded databases: type, build time, size.
    Info {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// `portcullis admin ...`: portal accounts in `portal.db`.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Add a portal account; the password is read from standard input.
    Add {
        name: String,
        /// viewer (read, export), analyst (+ alert changes) or admin (+ settings, accounts, tokens).
        #[arg(long)]
        role: String,
        /// Read the password from standard input (the only way it is taken).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Portal accounts with their roles.
    List {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Set a portal account's password (from standard input); ends its login sessions.
    Passwd {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Disable a portal account (ends its login sessions); --enable undoes it.
    Disable {
        name: String,
        #[arg(long)]
        enable: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Delete a portal account.
    Delete {
        name: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Enrol a TOTP second factor for a portal account (its otpauth:// URI is printed
    /// once) or remove it with --remove; ends the account's login sessions.
    Totp {
        name: String,
        #[arg(long)]
        remove: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Make an API bearer token; its value is printed once and only its hash is kept.
    Token {
        name: String,
        #[arg(long)]
        role: String,
        /// Days until it stops working (default: never).
        #[arg(long)]
        expires: Option<u32>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// A user's profile: first/last seen, VPN locations, addresses, devices, NAS,
    /// usual hours, open sessions and a timeline.
    Show {
        user: String,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Timeline entries shown (newest).
        #[arg(long, default_value_t = 50)]
        timeline: usize,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AlertsCommand {
    /// Alerts, newest first.
    List {
        #[arg(long)]
        config: Option<PathBuf>,
        /// open, resolved or closed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        user: Option<String>,
        /// suspicious_vpn_connection, impossible_travel, new_country, ...
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Change an alert's status and classification, or add a comment.
    Update {
        id: i64,
        #[arg(long)]
        config: Option<PathBuf>,
        /// open, resolved or closed.
        #[arg(long)]
        status: Option<String>,
        /// true-positive, benign-true-positive or false-positive.
        #[arg(long)]
        classification: Option<String>,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Evaluate the configured network policies for a user.
    Test {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        user: String,
        /// NAS-Identifier the request would carry.
        #[arg(long)]
        nas: Option<String>,
        /// pap, chap, mschapv2, eap-mschapv2 or peap.
        #[arg(long, default_value = "pap")]
        method: String,
        /// NAS-Port-Type (5 = Virtual).
        #[arg(long)]
        nas_port_type: Option<u32>,
        #[arg(long)]
        calling_station_id: Option<String>,
        /// When the login happens (RFC 3339; default now).
        #[arg(long)]
        at: Option<String>,
        /// The [[client]] name the request would come from (for connection-request policies).
        #[arg(long)]
        client: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add (or replace) a user. The password is read from standard input and must have
    /// at least `[auth] min_password_length` characters (default 8).
    Add {
        name: String,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Group membership (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Also keep the password reversibly so CHAP works (see docs/authentication.md).
        #[arg(long)]
        chap: bool,
        /// Account expiry (RFC 3339 or a date).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Change a user's password (read from standard input; at least
    /// `[auth] min_password_length` characters).
    Passwd {
        name: String,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, required = true)]
        password_stdin: bool,
        #[arg(long)]
        chap: bool,
    },
    /// Disable a user.
    Disable {
        name: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Enable a user.
    Enable {
        name: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Delete a user.
    Delete {
        name: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Replace a user's groups.
    Groups {
        name: String,
        groups: Vec<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List users (never their credentials).
    List {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

/// The `[[client]]` options of a stored client, with the same defaults.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClientOptions {
    /// Vendor adapter: generic, microsoft, cisco-asa, f5, checkpoint, fortinet or palo-alto.
    #[arg(long, default_value = "generic")]
    pub vendor: String,
    /// Discard Access-Requests without a valid Message-Authenticator (BlastRADIUS).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub require_message_authenticator: bool,
    /// Discard Access-Requests that carry Proxy-State without a Message-Authenticator.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub limit_proxy_state: bool,
    /// Put a Message-Authenticator first in every reply (false only for NAS that drop them).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub send_message_authenticator: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClientsCommand {
    /// Add a client. The shared secret is read from the first line of standard input
    /// and never shown again.
    Add {
        name: String,
        /// An address (192.0.2.1) or a network (192.0.2.0/24).
        #[arg(long)]
        address: String,
        #[command(flatten)]
        options: ClientOptions,
        #[arg(long, required = true)]
        secret_stdin: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Clients of the configuration file and stored ones (never their secrets).
    List(ListArgs),
    /// Delete a stored client.
    Delete {
        name: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Replace a stored client's secret (read from standard input); it takes effect
    /// within a second, so change it on the NAS at the same time.
    SetSecret {
        name: String,
        #[arg(long, required = true)]
        secret_stdin: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DictionaryCommand {
    /// Look up an attribute by name (Acct-Status-Type), number (44) or vendor/number (311/16).
    Lookup {
        key: String,
        /// Also load the dictionary files this configuration names.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// What the load generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BenchMode {
    /// Accounting Start/Stop pairs with unique sessions.
    Acct,
    /// Accounting Starts only (every acknowledged one must become an open session).
    AcctStart,
    /// Status-Server.
    Status,
    /// PAP Access-Requests (with Message-Authenticator) for --user / --password.
    Pap,
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    #[arg(long, value_enum, default_value = "acct")]
    pub mode: BenchMode,
    /// Server address; must be a loopback address.
    #[arg(long, default_value = "127.0.0.1:1813")]
    pub target: SocketAddr,
    #[arg(long, default_value = "testing123")]
    pub secret: String,
    /// Total requests to complete.
    #[arg(long, default_value_t = 100_000)]
    pub requests: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Pace to this many requests per second (0: as fast as responses allow).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Wall-clock cap in seconds.
    #[arg(long, default_value_t = 120)]
    pub max_seconds: u64,
    /// Seconds before an unanswered request is retransmitted.
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
    /// Retransmits before a request counts as lost.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Prefix of generated Acct-Session-Ids (default: random).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Write one line per acknowledged request: "<status> <Acct-Session-Id>".
    #[arg(long)]
    pub ack_log: Option<PathBuf>,
    /// User for --mode pap.
    #[arg(long, default_value = "load")]
    pub user: String,
    /// Password for --mode pap.
    #[arg(long, default_value = "loadpass")]
    pub password: String,
}
