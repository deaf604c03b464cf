//! `portcullis mfa enroll|reset|list`.

use anyhow::{Context, Result, bail};
use portcullis_auth::mfa::{TotpAlgorithm, base32};
use portcullis_server::auth::target::PushTarget;
use portcullis_server::config::{Config, MfaConfig};
use portcullis_storage::SqliteMfa;
use serde_json::json;

use crate::cli::{Format, MfaCommand};

fn open(config: &Config) -> Result<(SqliteMfa, MfaConfig)> {
    let mfa = config.mfa.clone().unwrap_or_default();
    if mfa.database.is_none() {
        // The default location is inside the data directory, which may be made here; a
        // configured location's directory must already exist.
        std::fs::create_dir_all(&config.storage.data_dir)
            .with_context(|| format!("creating {}", config.storage.data_dir.display()))?;
    }
    let db = SqliteMfa::open(&mfa.database_path(&config.storage.data_dir))?;
    Ok((db, mfa))
}

/// The stable key of the account an administrator names, as the server keys it.
fn account_key(config: &Config, user: &str, store: Option<&str>) -> Result<String> {
    let runtime = tokio::runtime::Runtime::new()?;
    let _entered = runtime.enter();
    let router = portcullis_server::directory::Router::from_config(config).map_err(anyhow::Error::msg)?;
    let key = router.account_for_admin(user, store).map_err(anyhow::Error::msg)?.key;
    eprintln!("account {key}");
    Ok(key)
}

pub(crate) fn run(command: MfaCommand, load: impl Fn(Option<&std::path::PathBuf>) -> Result<Config>) -> Result<()> {
    match command {
        MfaCommand::Enroll { user, store, config, algorithm, digits, format } => {
            let config = load(config.as_ref())?;
            let (mut db, mfa) = open(&config)?;
            let algorithm = TotpAlgorithm::from_name(&algorithm).context("--algorithm is sha1 or sha256")?;
            let user = account_key(&config, &user, store.as_deref())?;
            // An administrator's enrolment replaces an existing factor.
            let e = portcullis_server::mfa::enroll(&mut db, &user, algorithm, digits, &mfa.issuer, true)
                .map_err(anyhow::Error::msg)?;
            let (uri, secret, codes) = (e.uri, e.secret, e.recovery_codes);
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "user": user,
                        "otpauth_uri": uri,
                        "secret": base32(&secret),
                        "algorithm": algorithm.name(),
                        "digits": digits,
                        "period": 30,
                        "recovery_codes": codes,
                    }))?
                ),
                Format::Table => {
                    let qr = qrcode::QrCode::new(uri.as_bytes()).context("the URI does not fit a QR code")?;
                    let image = qr
                        .render::<qrcode::render::unicode::Dense1x2>()
                        .dark_color(qrcode::render::unicode::Dense1x2::Light)
                        .light_color(qrcode::render::unicode::Dense1x2::Dark)
                        .build();
                    println!("Scan with an authenticator app, or enter the secret by hand:\n\n{image}\n");
                    println!("secret:  {}", base32(&secret));
                    println!("uri:     {uri}\n");
                    println!("Recovery codes (each works once; they are not shown again):");
                    for c in &codes {
                        println!("  {c}");
                    }
                }
            }
            Ok(())
        }
        MfaCommand::EnrollLink { user, store, config, valid_hours } => {
            let config = load(config.as_ref())?;
            let base = config.http.base_url().context("enrolment links need an [http] listener")?;
            let (db, _) = open(&config)?;
            let user = account_key(&config, &user, store.as_deref())?;
            let (token, hash) = portcullis_server::mfa::enrol_token();
            let expires = crate::now_unix() + i64::from(valid_hours) * 3600;
            db.add_enrol_link(&hash, &user, expires)?;
            println!("{base}/mfa/enroll/{token}");
            eprintln!("one-time link for {user}, valid until {}", crate::output::rfc3339(expires));
            Ok(())
        }
        MfaCommand::EnrollPush { user, store, config, ntfy, webhook } => {
            let config = load(config.as_ref())?;
            let Some(push) = config.mfa.as_ref().and_then(|m| m.push.as_ref()) else {
                bail!("push approval is not configured ([mfa.push])");
            };
            let target = match (ntfy, webhook) {
                (Some(url), _) => PushTarget::Ntfy(url),
                (None, Some(url)) => PushTarget::Webhook(url),
                (None, None) => PushTarget::Shared,
            };
            target.check(push).map_err(anyhow::Error::msg)?;
            let (db, _) = open(&config)?;
            let user = account_key(&config, &user, store.as_deref())?;
            db.set_push_target(&user, &target.stored(), crate::now_unix())?;
            if db.factor(&user)?.is_none() {
                eprintln!("{user} has no TOTP factor yet: approvals are proven with its code, so enrol one too");
            }
            println!("{user} enrolled for push approval ({})", target.kind());
            Ok(())
        }
        MfaCommand::Reset { user, store, config } => {
            let config = load(config.as_ref())?;
            let (mut db, _) = open(&config)?;
            // An account already gone from its store may still have data to remove.
            let user = account_key(&config, &user, store.as_deref())
                .unwrap_or_else(|_| portcullis_accounting::canonical_user(&user));
            if !db.reset(&user)? {
                bail!("{user} has no second factor");
            }
            println!("second factor of {user} removed");
            Ok(())
        }
        MfaCommand::List(crate::cli::ListArgs { config, format }) => {
            let config = load(config.as_ref())?;
            let (db, _) = open(&config)?;
            let users = db.enrolled()?;
            let rows: Vec<_> = users
                .iter()
                .map(|(u, at)| {
                    let (failures, locked_until) = db.failures(u).unwrap_or((0, 0));
                    let left = db.recovery_left(u).unwrap_or(0);
                    let push = db.push_target(u).ok().flatten().as_deref().and_then(PushTarget::parse);
                    (u, *at, failures, locked_until, left, push.map_or("none", |t| t.kind()))
                })
                .collect();
            match format {
                Format::Json => {
                    let v: Vec<_> = rows
                        .iter()
                        .map(|(u, at, f, l, left, push)| {
                            json!({
                                "user": u,
                                "enrolled_at": crate::output::rfc3339(*at),
                                "failures": f,
                                "locked_until": (*l > 0).then(|| crate::output::rfc3339(*l as i64)),
                                "recovery_codes_left": left,
                                "push_target": push,
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                Format::Table => {
                    for (u, at, f, l, left, push) in &rows {
                        let locked = if *l > crate::now_unix() as u64 { " LOCKED" } else { "" };
                        println!(
                            "{u:<24} enrolled {}  failures {f}  recovery codes left {left}  push {push}{locked}",
                            crate::output::rfc3339(*at)
                        );
                    }
                    println!("{} user(s)", rows.len());
                }
            }
            Ok(())
        }
    }
}
