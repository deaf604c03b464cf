//! `portcullis sessions disconnect`: ends sessions at their NAS (RFC 5176) and records
//! who asked, what was sent where and what the NAS answered in `<data_dir>/actions.log`.

use std::io::Write;

use anyhow::{Result, bail};
use portcullis_server::coa;
use portcullis_server::config::Config;
use portcullis_storage::SessionQuery;
use serde_json::json;

use crate::cli::Format;
use crate::output;

/// Who runs the command: the user sudo ran it for, else the login name, else the uid.
fn actor() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self").map_or_else(|_| "unknown".into(), |m| format!("uid {}", m.uid()))
        })
}

pub(crate) fn disconnect(
    config: &Config,
    session_key: Option<&str>,
    user: Option<&str>,
    attempts: u32,
    format: Format,
) -> Result<()> {
    let store = portcullis_server::open_reader(config)?;
    let sessions = store.sessions(&SessionQuery {
        user: user.map(str::to_owned),
        open_only: user.is_some(),
        ..Default::default()
    })?;
    let chosen: Vec<_> = sessions.into_iter().filter(|s| session_key.is_none_or(|k| s.session_key == k)).collect();
    if chosen.is_empty() {
        match (session_key, user) {
            (Some(k), _) => bail!("no session with key {k:?}"),
            (None, Some(u)) => bail!("{u:?} has no open session"),
            (None, None) => bail!("name a session (--session-key) or a user (--user)"),
        }
    }
    let mode = config.storage.file_mode();
    let mut log = mode.open_append(&config.storage.data_dir.join("actions.log"))?;
    let who = actor();
    let mut results = Vec::new();
    let mut failed = false;
    for s in &chosen {
        let now = crate::now_unix();
        let (target, outcome) = match coa::target(config, s) {
            Ok(t) => {
                let outcome = coa::send(&t, s, now, attempts).map_err(anyhow::Error::msg);
                (Some((t.client.clone(), t.address)), outcome)
            }
            Err(e) => (None, Err(anyhow::Error::msg(e))),
        };
        failed |= !matches!(outcome, Ok(coa::Outcome::Ack));
        let line = json!({
            "time": output::rfc3339(now),
            "actor": who,
            "action": "disconnect",
            "session_key": s.session_key,
            "user": s.user,
            "nas": s.nas,
            "client": target.as_ref().map(|t| &t.0),
            "sent_to": target.as_ref().map(|t| t.1.to_string()),
            "outcome": outcome.as_ref().ok(),
            "error": outcome.as_ref().err().map(|e| e.to_string()),
        });
        writeln!(log, "{line}")?;
        results.push((s, target, outcome, line));
    }
    log.sync_data()?;
    match format {
        Format::Json => {
            let lines: Vec<_> = results.iter().map(|r| &r.3).collect();
            println!("{}", serde_json::to_string_pretty(&lines)?);
        }
        Format::Table => {
            for (s, target, outcome, _) in &results {
                let to = target.as_ref().map_or(String::new(), |(c, a)| format!(" via client {c} ({a})"));
                let user = s.user.as_deref().unwrap_or("?");
                match outcome {
                    Ok(o) => println!("session {} of {user}{to}: {o}", s.session_key),
                    Err(e) => println!("session {} of {user}: not sent: {e}", s.session_key),
                }
            }
        }
    }
    if failed {
        bail!("not every session was ended (see above; recorded in actions.log)");
    }
    Ok(())
}
