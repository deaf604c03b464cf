//! `portcullis mfa enroll|reset|list`.

use anyhow::{Context, Result, bail};
use portcullis_auth::mfa::{Totp, TotpAlgorithm, base32, otpauth_uri};
use portcullis_server::config::{Config, MfaConfig};
use portcullis_storage::{SqliteMfa, TotpFactor};
use rand::RngCore;
use serde_json::json;

use crate::cli::{Format, MfaCommand};

/// Recovery codes issued at enrolment.
const RECOVERY_CODES: usize = 10;

fn open(config: &Config) -> Result<(SqliteMfa, MfaConfig)> {
    let mfa = config.mfa.clone().unwrap_or_default();
    let db = SqliteMfa::open(&mfa.database_path(&config.storage.data_dir))?;
    Ok((db, mfa))
}

/// A recovery code: 10 base32 characters (50 bits) shown as `XXXXX-XXXXX`.
fn recovery_code() -> String {
    let mut b = [0u8; 7];
    rand::thread_rng().fill_bytes(&mut b);
    let s = base32(&b);
    format!("{}-{}", &s[..5], &s[5..10])
}

pub(crate) fn run(command: MfaCommand, load: impl Fn(Option<&std::path::PathBuf>) -> Result<Config>) -> Result<()> {
    match command {
        MfaCommand::Enroll { user, config, algorithm, digits, format } => {
            let config = load(config.as_ref())?;
            let (mut db, mfa) = open(&config)?;
            let algorithm = TotpAlgorithm::from_name(&algorithm).context("--algorithm is sha1 or sha256")?;
            if digits != 6 && digits != 8 {
                bail!("--digits is 6 or 8");
            }
            let user = portcullis_accounting::canonical_user(&user);
            let mut secret = vec![0u8; if algorithm == TotpAlgorithm::Sha256 { 32 } else { 20 }];
            rand::thread_rng().fill_bytes(&mut secret);
            let totp = Totp { algorithm, digits, step: 30 };
            let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
            let hashes: Vec<[u8; 32]> = codes.iter().map(|c| portcullis_server::mfa::recovery_hash(c)).collect();
            let factor = TotpFactor {
                secret: secret.clone(),
                algorithm: algorithm.name().into(),
                digits,
                step: 30,
                created_at: crate::now_unix(),
                last_step: None,
            };
            db.enroll(&user, &factor, &hashes)?;
            let uri = otpauth_uri(&mfa.issuer, &user, &secret, &totp);
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
        MfaCommand::Reset { user, config } => {
            let config = load(config.as_ref())?;
            let (mut db, _) = open(&config)?;
            let user = portcullis_accounting::canonical_user(&user);
            if !db.reset(&user)? {
                bail!("{user} has no second factor");
            }
            println!("second factor of {user} removed");
            Ok(())
        }
        MfaCommand::List { config, format } => {
            let config = load(config.as_ref())?;
            let (db, _) = open(&config)?;
            let users = db.enrolled()?;
            let rows: Vec<_> = users
                .iter()
                .map(|(u, at)| {
                    let (failures, locked_until) = db.failures(u).unwrap_or((0, 0));
                    let left = db.recovery_left(u).unwrap_or(0);
                    (u, *at, failures, locked_until, left)
                })
                .collect();
            match format {
                Format::Json => {
                    let v: Vec<_> = rows
                        .iter()
                        .map(|(u, at, f, l, left)| {
                            json!({
                                "user": u,
                                "enrolled_at": crate::output::rfc3339_ms(at * 1000),
                                "failures": f,
                                "locked_until": (*l > 0).then(|| crate::output::rfc3339_ms(*l as i64 * 1000)),
                                "recovery_codes_left": left,
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                Format::Table => {
                    for (u, at, f, l, left) in &rows {
                        let locked = if *l > crate::now_unix() as u64 { " LOCKED" } else { "" };
                        println!(
                            "{u:<24} enrolled {}  failures {f}  recovery codes left {left}{locked}",
                            crate::output::rfc3339_ms(at * 1000)
                        );
                    }
                    println!("{} user(s)", rows.len());
                }
            }
            Ok(())
        }
    }
}
