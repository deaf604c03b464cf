//! `portcullis admin`: portal accounts and API tokens in `portal.db`.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use portcullis_server::config::Config;
use portcullis_storage::{PortalDb, Role};

use crate::cli::AdminCommand;

/// Shortest portal password accepted.
const MIN_PASSWORD: usize = 12;

fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.chars().count() < MIN_PASSWORD {
        bail!("a portal password has at least {MIN_PASSWORD} characters");
    }
    Ok(password)
}

fn role(text: &str) -> Result<Role> {
    text.parse().map_err(anyhow::Error::msg)
}

fn now_ms() -> i64 {
    crate::now_unix().saturating_mul(1000)
}

/// Checks a portal account name: printable, no spaces, at most 64 characters.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        bail!("a portal account name has 1 to 64 characters, without spaces or control characters");
    }
    Ok(())
}

pub(crate) fn run(command: AdminCommand, load: fn(Option<&PathBuf>) -> Result<Config>) -> Result<()> {
    let open = |config: Option<&PathBuf>| -> Result<PortalDb> {
        let config = load(config)?;
        Ok(PortalDb::open(&config.storage.data_dir)?)
    };
    let found = |ok: bool, name: &str| if ok { Ok(()) } else { bail!("no portal account {name:?}") };
    match command {
        AdminCommand::Add { name, role: r, password_stdin: _, config } => {
            check_name(&name)?;
            let role = role(&r)?;
            let db = open(config.as_ref())?;
            let hash = portcullis_web::auth::hash_password(&read_password()?).map_err(anyhow::Error::msg)?;
            db.add_account(&name, role, &hash, now_ms())?;
            println!("added portal account {name} ({role})");
        }
        AdminCommand::List { config } => {
            let db = open(config.as_ref())?;
            println!("{:<24} {:<8} {:<9} created", "name", "role", "disabled");
            for a in db.accounts()? {
                let created = portcullis_detect::rfc3339(a.created_ms.div_euclid(1000));
                println!("{:<24} {:<8} {:<9} {created}", a.name, a.role, if a.disabled { "yes" } else { "no" });
            }
        }
        AdminCommand::Passwd { name, password_stdin: _, config } => {
            let db = open(config.as_ref())?;
            let hash = portcullis_web::auth::hash_password(&read_password()?).map_err(anyhow::Error::msg)?;
            found(db.set_password(&name, &hash)?, &name)?;
            println!("password of portal account {name} changed; its login sessions ended");
        }
        AdminCommand::Disable { name, enable, config } => {
            found(open(config.as_ref())?.set_disabled(&name, !enable)?, &name)?;
            println!("portal account {name} {}", if enable { "enabled" } else { "disabled; its login sessions ended" });
        }
        AdminCommand::Delete { name, config } => {
            found(open(config.as_ref())?.delete_account(&name)?, &name)?;
            println!("portal account {name} deleted");
        }
        AdminCommand::Token { name, role: r, expires, config } => {
            check_name(&name)?;
            let role = role(&r)?;
            let db = open(config.as_ref())?;
            let now = now_ms();
            let expires_ms = expires.map(|d| now + i64::from(d) * 86_400_000);
            let (value, hash, prefix) = portcullis_web::auth::new_token();
            db.add_token(&name, role, &hash, &prefix, now, expires_ms)?;
            eprintln!("API token {name} ({role}); shown once, only its hash is kept:");
            println!("{value}");
        }
        AdminCommand::Totp { name, remove, config } => {
            let db = open(config.as_ref())?;
            if remove {
                found(db.set_totp(&name, None)?, &name)?;
                println!("portal account {name} signs in with its password only; its login sessions ended");
                return Ok(());
            }
            let mut secret = [0u8; 20];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
            found(db.set_totp(&name, Some(&secret))?, &name)?;
            let totp = portcullis_auth::mfa::Totp::default();
            eprintln!(
                "portal account {name} now signs in with its password and a TOTP code; its login sessions ended. \
                 Add this to an authenticator app (shown once):"
            );
            println!("{}", portcullis_auth::mfa::otpauth_uri("Portcullis portal", &name, &secret, &totp));
        }
    }
    Ok(())
}
