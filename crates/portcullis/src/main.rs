//! The `portcullis` binary: parse the command line, load configuration, build the
//! parts, run.

/// jemalloc: replaying history allocates on one thread and frees on another, where the
/// system allocator spends most of its time consolidating; RADIUS serving is no slower.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod admin;
mod bench;
mod cli;
mod clients;
mod detect;
mod mfa;
mod notify;
mod output;
mod respond;
mod users;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use portcullis_server::certs;
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

/// Where the configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ConfigSource {
    /// `--config`.
    Explicit(PathBuf),
    /// `$PORTCULLIS_CONFIG`.
    Environment(PathBuf),
    /// The system-wide file, which exists.
    System(PathBuf),
    /// None of them: the demo configuration.
    Demo,
}

/// The system-wide configuration file, used when neither `--config` nor
/// `$PORTCULLIS_CONFIG` names one.
const SYSTEM_CONFIG: &str = "/etc/portcullis/portcullis.toml";

/// `--config`, else `$PORTCULLIS_CONFIG` (when set and not empty), else `system` when it
/// exists, else the demo.
fn discover(
    explicit: Option<&PathBuf>,
    environment: Option<std::ffi::OsString>,
    system: &std::path::Path,
) -> ConfigSource {
    if let Some(path) = explicit {
        return ConfigSource::Explicit(path.clone());
    }
    if let Some(path) = environment.filter(|p| !p.is_empty()) {
        return ConfigSource::Environment(PathBuf::from(path));
    }
    if system.exists() {
        return ConfigSource::System(system.to_path_buf());
    }
    ConfigSource::Demo
}

fn config_source(explicit: Option<&PathBuf>) -> ConfigSource {
    discover(explicit, std::env::var_os("PORTCULLIS_CONFIG"), std::path::Path::new(SYSTEM_CONFIG))
}

/// Loads the configuration `config_source` finds, saying on standard error which one
/// when it was not named with `--config`.
fn load(config: Option<&PathBuf>) -> Result<Config> {
    let source = config_source(config);
    match &source {
        ConfigSource::Explicit(_) => {}
        ConfigSource::Environment(path) => {
            eprintln!("using the configuration {} (from $PORTCULLIS_CONFIG)", path.display());
        }
        ConfigSource::System(path) => eprintln!("using the configuration {}", path.display()),
        ConfigSource::Demo => eprintln!(
            "using the demo configuration (no --config, no $PORTCULLIS_CONFIG, no {SYSTEM_CONFIG}; data in ./portcullis-data)"
        ),
    }
    match source {
        ConfigSource::Explicit(path) | ConfigSource::Environment(path) | ConfigSource::System(path) => {
            Config::load(&path).map_err(anyhow::Error::from)
        }
        ConfigSource::Demo => Ok(Config::demo()),
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
            let source = config_source(config.as_ref());
            let demo = source == ConfigSource::Demo;
            let path = match source {
                ConfigSource::Explicit(p) | ConfigSource::Environment(p) | ConfigSource::System(p) => Some(p),
                ConfigSource::Demo => None,
            };
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
            if demo {
                demo_portal_account(&config)?;
            }
            serve(&config, path.as_deref())
        }
        Command::CheckConfig { config } => {
            if config_source(config.as_ref()) == ConfigSource::Demo {
                bail!("no configuration to check: give --config or set $PORTCULLIS_CONFIG (or write {SYSTEM_CONFIG})");
            }
            let config = load(config.as_ref())?;
            let peap = check(&config)?;
            // What `serve` would refuse at start-up.
            let geo = config.geo.open().context("geolocation")?;
            // Files placed outside the data directory (which `serve` creates) must find
            // their directory: shared storage that is not mounted is not created.
            if let Some(mfa) = &config.mfa {
                for (what, path) in [("state key", &mfa.state_key_file), ("database", &mfa.database)] {
                    let Some(path) = path else { continue };
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
                        bail!("mfa: the directory of the {what} {} does not exist", dir.display());
                    }
                }
            }
            println!(
                "configuration is valid: {} accounting listener(s), {} client(s), data in {}",
                config.radius.acct_listen.len(),
                config.client_list().count(),
                config.storage.data_dir.display()
            );
            let list = |v: &[std::net::SocketAddr]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                }
            };
            println!(
                "listeners: accounting {}; authentication {}",
                list(&config.radius.acct_listen),
                list(&config.radius.auth_listen)
            );
            let http = if config.http.listen.is_empty() {
                "none".to_string()
            } else if !config.http.tls {
                format!("plain HTTP (loopback) on {}", list(&config.http.listen))
            } else if let Some(cert) = &config.http.certificate {
                format!("HTTPS on {} with the certificate {}", list(&config.http.listen), cert.display())
            } else {
                let (cert, _) = certs::http_files(&config);
                format!("HTTPS on {} with the self-signed certificate {}", list(&config.http.listen), cert.display())
            };
            println!("http: {http}");
            let clients: Vec<String> = config.client_list().map(|c| c.name.clone()).collect();
            println!("clients: {}", clients.join(", "));
            let policies: Vec<&str> = config.network_policies.iter().map(|p| p.name.as_str()).collect();
            println!("network policies: {}", if policies.is_empty() { "none".into() } else { policies.join(", ") });
            println!(
                "user stores: local{}",
                config.ldap.iter().map(|l| format!(", {} (ldap)", l.name)).collect::<String>()
            );
            println!("mfa: {}", if config.mfa.is_some() { "configured" } else { "not configured" });
            let dbs: Vec<String> = geo.info().iter().map(|d| format!("{} ({})", d.path, d.database_type)).collect();
            println!(
                "geolocation: {}",
                if dbs.is_empty() { "none (no locations in profiles and alerts)".into() } else { dbs.join(", ") }
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
        Command::Sessions {
            action: Some(cli::SessionsCommand::Disconnect { config, session_key, user, attempts, format }),
            ..
        } => {
            let config = load(config.as_ref())?;
            respond::disconnect(&config, session_key.as_deref(), user.as_deref(), attempts, format)
        }
        Command::Sessions { action: None, config, user, open, since, pivot, limit, format } => {
            let config = load(config.as_ref())?;
            let since = since.map(|s| output::parse_time(&s, now_unix())).transpose()?;
            let store = portcullis_server::open_reader(&config)?;
            let store_limit = if pivot.is_empty() { limit } else { None };
            let q = portcullis_storage::SessionQuery {
                user,
                open_only: open,
                since,
                limit: store_limit,
                ..Default::default()
            };
            let mut sessions = store.sessions(&q)?;
            sessions.retain(|s| {
                let nas = [s.nas.as_str(), s.nas_ip.as_deref().unwrap_or("")];
                pivot.matches(s.client_ip.as_deref(), s.location.as_ref(), &nas)
            });
            sessions.truncate(limit.unwrap_or(usize::MAX));
            output::print_sessions(&sessions, format)
        }
        Command::Stats { config, format } => {
            let config = load(config.as_ref())?;
            portcullis_server::require_embedded(&config, "stats (use /metrics)")?;
            let store = portcullis_storage::SqliteStore::open_read_only(&config.storage.data_dir)?;
            let counters = portcullis_storage::Store::counters(&store)?;
            let since = portcullis_storage::Store::counters_since(&store)?;
            let applied = portcullis_storage::Store::applied_position(&store)?;
            let reader = portcullis_storage::JournalReader::new(&portcullis_server::journal_dir(&config));
            let journal = output::JournalState { bytes: reader.size()?, pending: reader.pending(applied)?, applied };
            let disk = portcullis_server::disk::disk_use(&config, &store, now_unix())?;
            output::print_stats(&counters, since, &journal, &disk, format)
        }
        Command::Rebuild { config } => {
            let config = load(config.as_ref())?;
            portcullis_server::require_embedded(&config, "rebuild")?;
            let _lock = portcullis_server::lock_data_dir(&config.storage.data_dir, "rebuild")?;
            let mut store = portcullis_server::open_store(&config)?;
            let reader = portcullis_storage::JournalReader::new(&portcullis_server::journal_dir(&config));
            let mut detection = detect::detection(&config)?;
            let clock = config.radius.clock_bounds();
            let report = portcullis_server::applier::rebuild(&mut store, &reader, Some(&mut detection), clock, |r| {
                eprintln!("rebuild: {} packets read", r.packets);
            })?;
            println!(
                "rebuilt sessions from {} raw packets ({} applied, {} skipped)",
                report.packets, report.records, report.skipped
            );
            Ok(())
        }
        Command::Backup { to, logs, config } => {
            let config = load(config.as_ref())?;
            let report = portcullis_server::backup::run(&config, &to, logs).map_err(anyhow::Error::msg)?;
            for (file, bytes) in &report.files {
                println!("{bytes:>12}  {}", file.display());
            }
            println!(
                "backup of {} in {}: {} files, {} bytes",
                config.storage.data_dir.display(),
                to.display(),
                report.files.len(),
                report.bytes()
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
        Command::Profiles { command } => detect::users(command, load),
        Command::Geo { command } => detect::geo(command, load),
        Command::Alerts { command } => detect::alerts(command, load),
        Command::Replay { files, config, input, vendor, time_zone, dry_run } => {
            let config = load(config.as_ref())?;
            // A running server's detections would not see what a replay stores.
            let _lock = (!dry_run)
                .then(|| portcullis_server::lock_data_dir(&config.storage.data_dir, "replay into this data directory"))
                .transpose()?;
            let options = detect::ReplayOptions { input, vendor: &vendor, time_zone: time_zone.as_deref(), dry_run };
            detect::replay(&config, &files, &options)
        }
        Command::Eval { users, days, seed, attacks_per_thousand, geoip, write, defaults, min_deviations, format } => {
            let params = portcullis_detect::scenario::Params { users, days, seed, attacks_per_thousand };
            let settings = detect::EvalSettings { defaults, min_deviations };
            detect::eval(params, geoip.as_deref(), write.as_deref(), settings, format)
        }
        Command::Mfa { command } => mfa::run(command, load),
        Command::Cert { command: CertCommand::Init { config, dir, name, force } } => {
            let config = load(config.as_ref())?;
            let dir = dir.unwrap_or_else(|| config.storage.data_dir.join("tls"));
            let files = certs::init(&dir, &name, force).map_err(anyhow::Error::msg)?;
            println!("wrote a demo CA and a certificate for {name:?}:");
            println!("  CA certificate (install on VPN clients): {}", files.ca.display());
            println!("  CA key (keep offline or delete):         {}", files.ca_key.display());
            println!("add to the configuration:\n\n[eap]");
            println!("certificate = {:?}", files.certificate.display().to_string());
            println!("private_key = {:?}", files.private_key.display().to_string());
            Ok(())
        }
        Command::Cert { command: CertCommand::Show { config } } => {
            let config = load(config.as_ref())?;
            show_http_certificate(&config)
        }
        Command::Clients { command } => clients::run(command, load),
        Command::Admin { command } => admin::run(command, load),
        Command::Accounts { command } => users::run_user(command, load),
        Command::AuthLog { config, user, result, since, pivot, limit, format } => {
            let config = load(config.as_ref())?;
            users::run_auth_log(&config, user, result, since, &pivot, limit, format)
        }
        Command::Policy { command } => {
            let crate::cli::PolicyCommand::Test { config, .. } = &command;
            let config = load(config.as_ref())?;
            users::run_policy(command, &config)
        }
    }
}

/// The demo serves the portal; at first start it makes the `admin` account and prints
/// its password, once.
fn demo_portal_account(config: &Config) -> Result<()> {
    let db = portcullis_storage::PortalDb::open(&config.storage.data_dir)?;
    if let Some(password) = portcullis_web::demo_password_notice(&db)? {
        let url = config.http.base_url().unwrap_or_default();
        eprintln!(
            "portal: {url}/ -- sign in as \"admin\" with the password {password} (shown this once; change it with \
             `portcullis admin passwd admin --password-stdin`)"
        );
    }
    Ok(())
}

/// `portcullis cert show`: what an administrator compares with what the browser shows
/// of the `[http]` listener's certificate.
fn show_http_certificate(config: &Config) -> Result<()> {
    if !config.http.tls {
        bail!("[http] serves plain HTTP (tls = false): there is no certificate to show");
    }
    let (cert, _) = certs::http_files(config);
    if config.http.certificate.is_none() && !cert.exists() {
        bail!(
            "no [http] certificate yet: `portcullis serve` makes a self-signed one in {} on first start",
            cert.display()
        );
    }
    let pem = std::fs::read(&cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let summary = certs::summarize(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    println!("certificate: {}", cert.display());
    println!("sha256:      {}", summary.fingerprint());
    println!("spki sha256: {} (base64)", summary.spki_base64());
    println!("not before:  {}", summary.not_before.format(rfc3339)?);
    println!("not after:   {}", summary.not_after.format(rfc3339)?);
    println!("names:       {}", summary.names.join(", "));
    Ok(())
}

/// The demo serves PEAP with a demo certificate, made on first start.
fn demo_certificate(config: &mut Config) -> Result<()> {
    let dir = config.storage.data_dir.join("tls");
    let files = certs::CertFiles::in_dir(&dir);
    if !files.exist() {
        certs::init(&dir, "portcullis.local", true).map_err(anyhow::Error::msg)?;
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

/// What `check-config` checks beyond parsing, and what `serve` and a reload refuse to
/// run without: the dictionaries load, network policies' replies encode, the PEAP
/// certificate and key load. Returns the PEAP settings.
fn check(config: &Config) -> Result<Option<portcullis_auth::peap::PeapConfig>> {
    let dict = load_dictionary(config)?;
    if let (Some(cert), Some(key)) = (&config.http.certificate, &config.http.private_key) {
        certs::http_tls_config(cert, key).map_err(|e| anyhow::anyhow!("[http] certificate: {e}"))?;
    }
    portcullis_server::auth::validate_replies(&dict, &config.network_policies).map_err(anyhow::Error::msg)?;
    config.eap.peap().map_err(anyhow::Error::msg)
}

/// A server with no client at all, in the file or stored, would discard every packet.
fn require_clients(config: &Config) -> Result<()> {
    if config.client_list().next().is_some() {
        return Ok(());
    }
    let dir = &config.storage.data_dir;
    let stored = portcullis_storage::SqliteClients::exists(dir)
        && !portcullis_storage::ClientStore::clients(&portcullis_storage::SqliteClients::open(dir)?)?.is_empty();
    if !stored {
        bail!(
            "no [[client]] is configured and none is stored (portcullis clients add); every packet would be discarded"
        );
    }
    Ok(())
}

fn serve(config: &Config, path: Option<&std::path::Path>) -> Result<()> {
    check(config)?;
    require_clients(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let notifier = notify::Notifier::from_env();
    runtime.block_on(async {
        let server = portcullis_server::Server::start(config)?;
        tracing::info!(
            data_dir = %config.storage.data_dir.display(),
            clients = server.clients().iter().count(),
            "portcullis is running"
        );
        notifier.send("READY=1\nSTATUS=serving");
        let watchdog = notifier.watchdog_interval().map(|every| {
            let notifier = notify::Notifier::from_env();
            // Pinged from the runtime that serves the listeners: a stuck runtime stops it.
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    notifier.send("WATCHDOG=1");
                }
            })
        });
        signals(&server, path, &notifier).await;
        tracing::info!("shutting down: answering every queued request first");
        notifier.send("STOPPING=1");
        if let Some(w) = watchdog {
            w.abort();
        }
        server.shutdown().await;
        Ok(())
    })
}

/// Waits for SIGINT or SIGTERM; SIGHUP (`systemctl reload`) reloads the configuration
/// meanwhile.
async fn signals(server: &portcullis_server::Server, path: Option<&std::path::Path>, notifier: &notify::Notifier) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
            tracing::warn!("cannot watch SIGTERM and SIGHUP; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = term.recv() => return,
                _ = hup.recv() => {
                    notifier.reloading();
                    reload(server, path);
                    notifier.send("READY=1\nSTATUS=serving");
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Re-reads the configuration file: applied whole, or refused whole with the errors
/// `check-config` gives, the running configuration staying in force.
fn reload(server: &portcullis_server::Server, path: Option<&std::path::Path>) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: the demo configuration has no file to re-read; nothing changed");
        return;
    };
    tracing::info!(path = %path.display(), "SIGHUP: reloading the configuration");
    let loaded = Config::load(path).map_err(anyhow::Error::from).and_then(|c| {
        check(&c)?;
        require_clients(&c)?;
        Ok(c)
    });
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("configuration reload refused; the running configuration stays in force: {e:#}");
            return;
        }
    };
    match server.reload(&config) {
        Ok(restart) => {
            for note in restart {
                tracing::warn!("{note}");
            }
            for warning in config.warnings() {
                tracing::warn!("{warning}");
            }
            tracing::info!(clients = config.client_list().count(), "configuration reloaded");
        }
        Err(e) => {
            tracing::error!("configuration reload refused; the running configuration stays in force: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_is_found_in_the_documented_order() {
        let dir = tempfile::tempdir().unwrap();
        let system = dir.path().join("portcullis.toml");
        let explicit = PathBuf::from("/srv/a.toml");
        let env = Some(std::ffi::OsString::from("/srv/b.toml"));
        assert_eq!(discover(Some(&explicit), env.clone(), &system), ConfigSource::Explicit(explicit));
        assert_eq!(discover(None, env, &system), ConfigSource::Environment("/srv/b.toml".into()));
        assert_eq!(discover(None, Some("".into()), &system), ConfigSource::Demo);
        std::fs::write(&system, "").unwrap();
        assert_eq!(discover(None, None, &system), ConfigSource::System(system.clone()));
    }
}
