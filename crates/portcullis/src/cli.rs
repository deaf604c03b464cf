//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Portcullis guards a company's VPN: it records every VPN session from RADIUS
/// accounting, durably, on-premises.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
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
        config: PathBuf,
    },
    /// List recorded VPN sessions, most recent first.
    Sessions {
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
    /// Query the attribute dictionary.
    Dictionary {
        #[command(subcommand)]
        command: DictionaryCommand,
    },
    /// Load generator: send requests on loopback, verify every response, print JSON.
    Bench(BenchArgs),
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
}
