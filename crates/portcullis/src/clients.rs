//! `portcullis clients ...`: RADIUS clients added at runtime, through the same
//! [`ClientAdmin`] the portal calls.

use std::io::BufRead;

use anyhow::{Context, Result, anyhow, bail};
use portcullis_server::config::Config;
use portcullis_storage::{ClientAdmin, ClientListing, ClientSecret, ClientSettings, RuntimeClients, SqliteClients};

use crate::cli::{ClientOptions, ClientsCommand, Format};
use crate::output;

/// The secret on the first line of standard input.
fn read_secret() -> Result<ClientSecret> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the secret from standard input")?;
    Ok(ClientSecret::new(line.trim_end_matches(['\r', '\n'])))
}

fn admin(config: &Config) -> Result<RuntimeClients<SqliteClients>> {
    Ok(RuntimeClients::new(SqliteClients::open(&config.storage.data_dir)?, config.client_settings()))
}

/// Who made a change, for the store's record: the local account running the command.
fn changed_by() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default();
    if user.is_empty() { "cli".into() } else { format!("cli:{user}") }
}

fn settings(name: String, address: &str, o: ClientOptions) -> Result<ClientSettings> {
    let vendor = portcullis_accounting::Vendor::from_name(&o.vendor).ok_or_else(|| {
        anyhow!(
            "unknown vendor {:?}; expected one of generic, microsoft, cisco-asa, f5, checkpoint, fortinet, palo-alto",
            o.vendor
        )
    })?;
    Ok(ClientSettings {
        name,
        address: address.parse().map_err(|e: String| anyhow!("--address: {e}"))?,
        vendor,
        require_message_authenticator: o.require_message_authenticator,
        limit_proxy_state: o.limit_proxy_state,
        send_message_authenticator: o.send_message_authenticator,
    })
}

fn warn(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

pub(crate) fn run(command: ClientsCommand, load: impl Fn(Option<&std::path::PathBuf>) -> Result<Config>) -> Result<()> {
    match command {
        ClientsCommand::Add { name, address, options, secret_stdin: _, config } => {
            let config = load(config.as_ref())?;
            let settings = settings(name, &address, options)?;
            let secret = read_secret()?;
            let (name, address) = (settings.name.clone(), settings.address);
            warn(&admin(&config)?.add(settings, secret, &changed_by()).map_err(anyhow::Error::msg)?);
            println!("client {name:?} ({address}) stored; a running server takes it within a second");
        }
        ClientsCommand::List(crate::cli::ListArgs { config, format }) => {
            let config = load(config.as_ref())?;
            let list = if SqliteClients::exists(&config.storage.data_dir) {
                admin(&config)?.list().map_err(anyhow::Error::msg)?
            } else {
                // Listing must not create a database where the server keeps none.
                config.client_settings().into_iter().map(ClientListing::File).collect()
            };
            print(&list, format)?;
        }
        ClientsCommand::Delete { name, config } => {
            let config = load(config.as_ref())?;
            admin(&config)?.delete(&name, &changed_by()).map_err(anyhow::Error::msg)?;
            println!("client {name:?} deleted; a running server drops it within a second");
        }
        ClientsCommand::SetSecret { name, secret_stdin: _, config } => {
            let config = load(config.as_ref())?;
            let secret = read_secret()?;
            if secret.expose().is_empty() {
                bail!("the secret on standard input is empty");
            }
            warn(&admin(&config)?.set_secret(&name, secret, &changed_by()).map_err(anyhow::Error::msg)?);
            println!("secret of client {name:?} replaced; a running server uses it within a second");
        }
    }
    Ok(())
}

fn print(list: &[ClientListing], format: Format) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(list)?),
        Format::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|c| {
                    let s = c.settings();
                    let (managed, changed) = match c {
                        ClientListing::File(_) => ("file (read-only)".to_string(), String::new()),
                        ClientListing::Stored(c) => {
                            ("stored".to_string(), format!("{} by {}", output::rfc3339_ms(c.updated_ms), c.updated_by))
                        }
                    };
                    let flag = |on: bool| if on { "yes" } else { "no" }.to_string();
                    vec![
                        s.name.clone(),
                        s.address.to_string(),
                        s.vendor.name().to_string(),
                        flag(s.require_message_authenticator),
                        flag(s.limit_proxy_state),
                        flag(s.send_message_authenticator),
                        managed,
                        changed,
                    ]
                })
                .collect();
            output::print_table(
                &["NAME", "ADDRESS", "VENDOR", "REQUIRE-MA", "LIMIT-PROXY-STATE", "SEND-MA", "MANAGED BY", "CHANGED"],
                &rows,
            );
        }
    }
    Ok(())
}
