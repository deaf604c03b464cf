//! `portcullis user ...`, `auth-log` and `policy test`.

use std::io::BufRead;

use anyhow::{Context, Result, bail};
use portcullis_auth::policy::{Method, PolicyDecision, PolicyRequest, evaluate, reason};
use portcullis_server::config::Config;
use portcullis_storage::{AuthQuery, SqliteUsers, User, UserStore};
use rand::RngCore;
use serde_json::json;

use crate::cli::{Format, PolicyCommand, UserCommand};
use crate::output;

/// The password on the first line of standard input, at least `auth.min_password_length`
/// characters long.
fn read_password(config: &Config) -> Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("the password on standard input is empty");
    }
    config.auth.check_password(&password).map_err(anyhow::Error::msg)?;
    Ok(password)
}

fn set_password(user: &mut User, password: &str, chap: bool) -> Result<()> {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    user.password_hash = Some(portcullis_auth::hash_password(password.as_bytes(), &salt)?);
    user.nt_hash = Some(portcullis_auth::mschap::nt_password_hash(password));
    user.reversible = chap.then(|| password.to_string());
    Ok(())
}

fn existing(users: &SqliteUsers, name: &str) -> Result<User> {
    users.user(name)?.with_context(|| format!("no local user {name:?}"))
}

pub(crate) fn run_user(
    command: UserCommand,
    load: impl Fn(Option<&std::path::PathBuf>) -> Result<Config>,
) -> Result<()> {
    let open = |config: Option<&std::path::PathBuf>| -> Result<SqliteUsers> {
        let config = load(config)?;
        Ok(SqliteUsers::open(&config.storage.data_dir)?)
    };
    match command {
        UserCommand::Add { name, config, password_stdin: _, groups, chap, expires } => {
            let config = load(config.as_ref())?;
            let password = read_password(&config)?;
            let mut users = SqliteUsers::open(&config.storage.data_dir)?;
            let now = super::now_unix();
            let expires_at = expires.map(|e| output::parse_time(&e, now)).transpose()?;
            let mut user = User {
                name: name.clone(),
                password_hash: None,
                nt_hash: None,
                reversible: None,
                groups,
                disabled: false,
                expires_at,
                generation: 0,
            };
            set_password(&mut user, &password, chap)?;
            users.put_user(&user)?;
            println!(
                "user {} saved{}",
                name.to_lowercase(),
                if chap { " (CHAP enabled: reversible password kept)" } else { "" }
            );
        }
        UserCommand::Passwd { name, config, password_stdin: _, chap } => {
            let config = load(config.as_ref())?;
            let mut users = SqliteUsers::open(&config.storage.data_dir)?;
            let mut user = existing(&users, &name)?;
            let password = read_password(&config)?;
            set_password(&mut user, &password, chap)?;
            users.put_user(&user)?;
            println!("password of {} changed", user.name);
        }
        UserCommand::Disable { name, config } => set_disabled(&mut open(config.as_ref())?, &name, true)?,
        UserCommand::Enable { name, config } => set_disabled(&mut open(config.as_ref())?, &name, false)?,
        UserCommand::Delete { name, config } => {
            let loaded = load(config.as_ref())?;
            let mut users = SqliteUsers::open(&loaded.storage.data_dir)?;
            if !users.delete_user(&name)? {
                bail!("no local user {name:?}");
            }
            println!("user {} deleted", name.to_lowercase());
            // A user added again later under this name is someone new: no factor, no
            // push enrolment, no lockout carried over.
            let mfa = loaded.mfa.clone().unwrap_or_default();
            let path = mfa.database_path(&loaded.storage.data_dir);
            if path.exists() && portcullis_storage::SqliteMfa::open(&path)?.reset(&name.to_lowercase())? {
                println!("second factor of {} removed", name.to_lowercase());
            }
        }
        UserCommand::Groups { name, groups, config } => {
            let mut users = open(config.as_ref())?;
            let mut user = existing(&users, &name)?;
            user.groups = groups;
            users.put_user(&user)?;
            println!("user {} groups: {}", user.name, user.groups.join(", "));
        }
        UserCommand::List { config, format } => {
            let config = load(config.as_ref())?;
            if !config.storage.data_dir.join("users.db").exists() {
                // Listing must not create an empty database where the server keeps none.
                match format {
                    Format::Json => println!("[]"),
                    Format::Table => {
                        println!("no local accounts (no users.db in {})", config.storage.data_dir.display());
                    }
                }
                return Ok(());
            }
            let users = SqliteUsers::open(&config.storage.data_dir)?;
            let list = users.users()?;
            match format {
                Format::Json => {
                    let v: Vec<_> = list
                        .iter()
                        .map(|u| {
                            json!({
                                "name": u.name,
                                "groups": u.groups,
                                "disabled": u.disabled,
                                "expires_at": u.expires_at.map(output::rfc3339),
                                "methods": methods(u),
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                Format::Table => {
                    for u in &list {
                        println!(
                            "{:<20} {:<8} groups={} methods={}{}",
                            u.name,
                            if u.disabled { "disabled" } else { "enabled" },
                            u.groups.join(","),
                            methods(u).join(","),
                            u.expires_at.map(|t| format!(" expires={}", output::rfc3339(t))).unwrap_or_default()
                        );
                    }
                    println!("{} user(s)", list.len());
                }
            }
        }
    }
    Ok(())
}

fn set_disabled(users: &mut SqliteUsers, name: &str, disabled: bool) -> Result<()> {
    let mut user = existing(users, name)?;
    user.disabled = disabled;
    users.put_user(&user)?;
    println!("user {} {}", user.name, if disabled { "disabled" } else { "enabled" });
    Ok(())
}

fn methods(u: &User) -> Vec<&'static str> {
    let mut m = Vec::new();
    if u.password_hash.is_some() {
        m.push("pap");
    }
    if u.reversible.is_some() {
        m.push("chap");
    }
    if u.nt_hash.is_some() {
        m.push("mschapv2");
    }
    m
}

pub(crate) fn run_auth_log(
    config: &Config,
    user: Option<String>,
    result: Option<String>,
    since: Option<String>,
    pivot: &crate::cli::Pivot,
    limit: Option<usize>,
    format: Format,
) -> Result<()> {
    if let Some(r) = &result {
        output::one_of("--result", r, &["accept", "reject", "challenge"])?;
    }
    let since_ms = since.map(|s| output::parse_time(&s, super::now_unix())).transpose()?.map(|s| s * 1000);
    let store = portcullis_server::open_reader(config)?;
    let store_limit = if pivot.is_empty() { limit } else { None };
    let mut events =
        store.auth_events(&AuthQuery { user, decision: result, since_ms, limit: store_limit, ..Default::default() })?;
    events.retain(|e| {
        pivot.matches(e.calling_station_id.as_deref(), e.location.as_ref(), &[e.nas.as_str(), e.client.as_str()])
    });
    events.truncate(limit.unwrap_or(usize::MAX));
    match format {
        Format::Json => {
            let v: Vec<_> = events
                .iter()
                .map(|e| {
                    json!({
                        "time": output::rfc3339_ms(e.time_ms),
                        "user": e.user,
                        "user_raw": e.user_raw,
                        "nas": e.nas,
                        "client": e.client,
                        "calling_station_id": e.calling_station_id,
                        "method": e.method,
                        "decision": e.decision,
                        "reason_code": e.reason_code,
                        "event_id": e.event_id,
                        "policy": e.policy,
                        "connection_request_policy": e.connection_request_policy,
                        "mfa": e.mfa,
                        "message": e.message,
                        "location": e.location,
                        "approval": e.approval,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    vec![
                        output::rfc3339_ms(e.time_ms),
                        e.user.clone(),
                        e.nas.clone(),
                        e.calling_station_id.clone().unwrap_or_default(),
                        e.location.as_ref().map(|l| l.label()).unwrap_or_default(),
                        e.method.clone(),
                        e.decision.clone(),
                        e.reason_code.to_string(),
                        e.policy.clone().unwrap_or_default(),
                        e.message.clone(),
                    ]
                })
                .collect();
            output::print_table(
                &[
                    "TIME",
                    "USER",
                    "NAS",
                    "CALLING STATION",
                    "LOCATION",
                    "METHOD",
                    "RESULT",
                    "REASON",
                    "POLICY",
                    "MESSAGE",
                ],
                &rows,
            );
            println!("{} event(s)", events.len());
        }
    }
    Ok(())
}

pub(crate) fn run_policy(command: PolicyCommand, config: &Config) -> Result<()> {
    let PolicyCommand::Test { user, nas, method, nas_port_type, calling_station_id, at, client, .. } = command;
    let method = Method::from_name(&method).with_context(|| format!("unknown method {method:?}"))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let _entered = runtime.enter();
    let router = portcullis_server::directory::Router::from_config(config).map_err(anyhow::Error::msg)?;
    let route = router.route(client.as_deref().unwrap_or(""), &user, nas.as_deref());
    let (name, account) = match &route {
        Ok(r) => {
            let name = r.lookup_name(&user);
            if let Some(p) = &r.policy {
                println!("connection request policy {p:?} matched");
            }
            let account = r.store.lookup(&name).map_err(anyhow::Error::msg)?;
            (name, account)
        }
        Err(why) => {
            println!("{why}");
            let refused = PolicyDecision::Deny { policy: None, reason: reason::NO_CONNECTION_REQUEST_POLICY };
            println!("decision: {refused}");
            return Ok(());
        }
    };
    let groups = account.as_ref().map(|a| a.groups.clone()).unwrap_or_default();
    let zone = config.auth.zone().map_err(anyhow::Error::msg)?;
    let at = match at {
        Some(t) => output::parse_time(&t, super::now_unix())?,
        None => super::now_unix(),
    };
    let when = zone.local(at);
    let weekday_name = when.weekday();
    let (weekday, minute) = zone.weekday_minute(at);
    let req = PolicyRequest {
        groups: &groups,
        nas_identifier: nas.as_deref(),
        nas_port_type,
        called_station_id: None,
        calling_station_id: calling_station_id.as_deref(),
        method: Some(method),
        weekday,
        minute,
        dialin: account.as_ref().and_then(|a| a.dialin),
    };
    match &account {
        Some(a) => println!(
            "user {name}: groups {:?}{}{}{}",
            a.groups,
            if a.disabled { ", DISABLED" } else { "" },
            if a.locked { ", LOCKED" } else { "" },
            a.dialin.map_or(String::new(), |d| format!(", dial-in {}", if d { "allowed" } else { "denied" }))
        ),
        None => println!("user {user}: not found in the user store (groups unknown)"),
    }
    let when = when.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| at.to_string());
    println!("evaluated at {when} ({weekday_name}, {}) with method {}", zone.name(), method.name());
    let (decision, why) = evaluate(&config.network_policies, &req);
    for line in why {
        println!("  {line}");
    }
    println!("decision: {decision}");
    Ok(())
}
