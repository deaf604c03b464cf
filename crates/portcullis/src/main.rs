//! The `portcullis` binary: parse the command line, load configuration, build the
//! parts, run.

/// jemalloc: replaying history allocates on one thread and frees on another, where the
/// system allocator spends most of its time consolidating; RADIUS serving is no slower.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod bench;
mod cert;
mod cli;
mod detect;
mod mfa;
mod output;
mod users;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use portcullis_server::config::{Config, LogFormat};

use crate::cli::{CertCommand, Cli, Command, DictionaryCommand};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        // A query piped into `head` stops quietly when the reader goes away, as other
        // command-line tools do, instead of reporting a panic.
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info.payload().downcast_ref::<String>().map_or("", String::as_str);
            if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
                std::process::exit(0);
            }
            default(info);
        }));
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn load(config: Option<&PathBuf>) -> Result<Config> {
    match config {
        Some(path) => Config::load(path).map_err(anyhow::Error::from),
        None => Ok(Config::demo()),
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    match config.log.format {
        // serde escapes every control character in JSON strings: one line per event.
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.fmt_fields(EscapedFields).init(),
    }
}

/// The text log's fields and message as tracing formats them, with control characters
/// escaped: whatever a peer put in a User-Name, and whichever code logs it, it cannot
/// start a line of its own.
struct EscapedFields;

impl<'writer> tracing_subscriber::fmt::FormatFields<'writer> for EscapedFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut raw = String::new();
        let plain = tracing_subscriber::fmt::format::Writer::new(&mut raw);
        tracing_subscriber::fmt::format::DefaultFields::new().format_fields(plain, fields)?;
        writer.write_str(&portcullis_server::logtext::escape_controls(&raw))
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let demo = config.is_none();
            let mut config = load(config.as_ref())?;
            init_logging(&config);
            if demo {
                demo_certificate(&mut config)?;
                if config.geo.databases.is_empty() {
                    tracing::warn!(
                        "no geolocation database: profiles and alerts will have no locations (scripts/fetch-geoip.sh \
                         puts DB-IP City Lite at {})",
                        portcullis_server::config::DEMO_GEOIP
                    );
                }
                tracing::warn!(
                    "no --config given: running the demo configuration (data in ./portcullis-data, accounting on \
                     127.0.0.1:1813, authentication on 127.0.0.1:1812, one client 127.0.0.1 with secret \
                     \"testing123\", every local user admitted); do not use it in production"
                );
            }
            for warning in config.warnings() {
                tracing::warn!("{warning}");
            }
            serve(&config)
        }
        Command::CheckConfig { config } => {
            let config = Config::load(&config)?;
            let dict = load_dictionary(&config)?;
            portcullis_server::auth::validate_replies(&dict, &config.network_policies).map_err(anyhow::Error::msg)?;
            let peap = config.eap.peap().map_err(anyhow::Error::msg)?;
            println!(
                "configuration is valid: {} accounting listener(s), {} client(s), data in {}",
                config.radius.acct_listen.len(),
                config.client_list().count(),
                config.storage.data_dir.display()
            );
            if let Some(p) = &config.eap.certificate {
                if peap.is_some() {
                    println!("PEAP enabled with the certificate {}", p.display());
                }
            }
            for warning in config.warnings() {
                println!("warning: {warning}");
            }
            Ok(())
        }
        Command::Sessions { config, user, open, since, limit, format } => {
            let config = load(config.as_ref())?;
            let since = since.map(|s| output::parse_time(&s, now_unix())).transpose()?;
            let store = portcullis_storage::SqliteStore::open_read_only(&config.storage.data_dir)?;
            let q = portcullis_storage::SessionQuery { user, open_only: open, since, limit, ..Default::default() };
            let sessions = portcullis_storage::Store::sessions(&store, &q)?;
            output::print_sessions(&sessions, format)
        }
        Command::Stats { config, format } => {
            let config = load(config.as_ref())?;
            let store = portcullis_storage::SqliteStore::open_read_only(&config.storage.data_dir)?;
            let counters = portcullis_storage::Store::counters(&store)?;
            let applied = portcullis_storage::Store::applied_position(&store)?;
            let reader = portcullis_storage::JournalReader::new(&portcullis_server::journal_dir(&config));
            let journal = output::JournalState { bytes: reader.size()?, pending: reader.pending(applied)?, applied };
            let disk = portcullis_server::disk::disk_use(&config, &store, now_unix())?;
            output::print_stats(&counters, &journal, &disk, format)
        }
        Command::Rebuild { config } => {
            let config = load(config.as_ref())?;
            let mut store = portcullis_server::open_store(&config)?;
            let reader = portcullis_storage::JournalReader::new(&portcullis_server::journal_dir(&config));
            let mut detection = detect::detection(&config)?;
            let report = portcullis_server::applier::rebuild(&mut store, &reader, Some(&mut detection), |r| {
                eprintln!("rebuild: {} packets read", r.packets);
            })?;
            println!(
                "rebuilt sessions from {} raw packets ({} applied, {} skipped)",
                report.packets, report.records, report.skipped
            );
            Ok(())
        }
        Command::Dictionary { command: DictionaryCommand::Lookup { key, config } } => {
            let config = match config {
                Some(path) => Some(Config::load(&path)?),
                None => None,
            };
            let dict = match &config {
                Some(c) => load_dictionary(c)?,
                None => portcullis_radius::Dictionary::builtin(),
            };
            output::print_dictionary_entry(&dict, &key)
        }
        Command::Bench(args) => bench::run(&args),
        Command::Users { command } => detect::users(command, load),
        Command::Geo { command } => detect::geo(command, load),
        Command::Alerts { command } => detect::alerts(command, load),
        Command::Replay { files, config, input, vendor, time_zone, dry_run } => {
            let config = load(config.as_ref())?;
            let options = detect::ReplayOptions { input, vendor: &vendor, time_zone: time_zone.as_deref(), dry_run };
            detect::replay(&config, &files, &options)
        }
        Command::Eval { users, days, seed, attacks_per_thousand, geoip, write, defaults, format } => {
            let params = portcullis_detect::scenario::Params { users, days, seed, attacks_per_thousand };
            detect::eval(params, geoip.as_deref(), write.as_deref(), defaults, format)
        }
        Command::Mfa { command } => mfa::run(command, load),
        Command::Cert { command: CertCommand::Init { config, dir, name, force } } => {
            let config = load(config.as_ref())?;
            let dir = dir.unwrap_or_else(|| config.storage.data_dir.join("tls"));
            let files = cert::init(&dir, &name, force)?;
            println!("wrote a demo CA and a certificate for {name:?}:");
            println!("  CA certificate (install on VPN clients): {}", files.ca.display());
            println!("  CA key (keep offline or delete):         {}", files.ca_key.display());
            println!("add to the configuration:\n\n[eap]");
            println!("certificate = {:?}", files.certificate.display().to_string());
            println!("private_key = {:?}", files.private_key.display().to_string());
            Ok(())
        }
        Command::User { command } => users::run_user(command, load),
        Command::AuthLog { config, user, result, since, limit, format } => {
            let config = load(config.as_ref())?;
            users::run_auth_log(&config, user, result, since, limit, format)
        }
        Command::Policy { command } => {
            let crate::cli::PolicyCommand::Test { config, .. } = &command;
            let config = load(config.as_ref())?;
            users::run_policy(command, &config)
        }
    }
}

/// The demo serves PEAP with a demo certificate, made on first start.
fn demo_certificate(config: &mut Config) -> Result<()> {
    let dir = config.storage.data_dir.join("tls");
    let files = cert::CertFiles::in_dir(&dir);
    if !files.exist() {
        cert::init(&dir, "portcullis.local", true)?;
        tracing::info!(ca = %files.ca.display(), "made a demo CA and server certificate for PEAP");
    }
    config.eap.certificate = Some(files.certificate);
    config.eap.private_key = Some(files.private_key);
    config.eap.default_method = Some(portcullis_server::config::EapMethod::Peap);
    config.eap.peap().map_err(anyhow::Error::msg)?;
    Ok(())
}

pub(crate) fn load_dictionary(config: &Config) -> Result<portcullis_radius::Dictionary> {
    let mut dict = portcullis_radius::Dictionary::builtin();
    for f in &config.dictionary.files {
        dict.load_file(f)?;
    }
    Ok(dict)
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn serve(config: &Config) -> Result<()> {
    let dict = load_dictionary(config)?;
    portcullis_server::auth::validate_replies(&dict, &config.network_policies).map_err(anyhow::Error::msg)?;
    if config.client_list().next().is_none() {
        bail!("no [[client]] is configured; every packet would be discarded");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let server = portcullis_server::Server::start(config)?;
        tracing::info!(
            data_dir = %config.storage.data_dir.display(),
            clients = server.clients().iter().count(),
            "portcullis is running"
        );
        shutdown_signal().await;
        tracing::info!("shutting down: answering every queued request first");
        server.shutdown().await;
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
