//! Tables and JSON for the query commands.

use anyhow::{Result, bail};
use portcullis_radius::{AttributeKey, Dictionary};
use portcullis_server::disk::DiskUse;
use portcullis_storage::{Counter, Session};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cli::Format;

/// RFC 3339 UTC.
pub(crate) use portcullis_detect::rfc3339;

/// RFC 3339 UTC with always three fractional digits (`02:17:33.600Z`), so the times
/// of a list line up and sort as text.
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|d| d.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Parses `--since`: RFC 3339, a date, or an age such as 90m, 12h, 7d.
pub(crate) fn parse_time(s: &str, now: i64) -> Result<i64> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &date_format) {
        return Ok(d.midnight().assume_utc().unix_timestamp());
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().unwrap_or(-1);
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    if n < 0 || mult == 0 {
        bail!(
            "cannot read time {s:?}: use RFC 3339 (2026-11-21T08:00:00Z), a date (2026-11-21) or an age (90m, 12h, 7d)"
        );
    }
    Ok(now - n * mult)
}

fn session_json(s: &Session) -> Value {
    json!({
        "user": s.user,
        "user_raw": s.user_raw,
        "nas": s.nas,
        "nas_ip": s.nas_ip,
        "session_id": s.session_id,
        "session_key": s.session_key,
        "client_ip": s.client_ip,
        "device": s.device,
        "framed_ip": s.framed_ip,
        "framed_ipv6": s.framed_ipv6,
        "started_at": rfc3339(s.started_at),
        "stopped_at": s.stopped_at.map(rfc3339),
        "updated_at": rfc3339(s.updated_at),
        "status": session_status(s),
        "session_time": s.session_time,
        "input_octets": s.input_octets,
        "output_octets": s.output_octets,
        "input_packets": s.input_packets,
        "output_packets": s.output_packets,
        "terminate_cause": s.terminate_cause,
        "details": s.details,
        "location": s.location,
    })
}

/// `open`, `stale` (no accounting for too long, not counted as open) or `closed`.
fn session_status(s: &Session) -> &'static str {
    match (s.open, s.stale) {
        (true, _) => "open",
        (false, true) => "stale",
        (false, false) => "closed",
    }
}

pub(crate) fn print_sessions(sessions: &[Session], format: Format) -> Result<()> {
    match format {
        Format::Json => {
            let v: Vec<Value> = sessions.iter().map(session_json).collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = sessions
                .iter()
                .map(|s| {
                    vec![
                        s.user.clone().unwrap_or_default(),
                        s.nas.clone(),
                        s.session_id.clone().unwrap_or_default(),
                        s.client_ip.clone().unwrap_or_default(),
                        s.device.clone().unwrap_or_default(),
                        s.location.as_ref().map(|l| l.label()).unwrap_or_default(),
                        s.framed_ip.clone().or_else(|| s.framed_ipv6.clone()).unwrap_or_default(),
                        rfc3339(s.started_at),
                        s.stopped_at.map(rfc3339).unwrap_or_default(),
                        session_status(s).into(),
                        s.input_octets.map(|v| v.to_string()).unwrap_or_default(),
                        s.output_octets.map(|v| v.to_string()).unwrap_or_default(),
                        s.terminate_cause.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "USER",
                    "NAS",
                    "SESSION",
                    "CLIENT IP",
                    "DEVICE",
                    "LOCATION",
                    "FRAMED IP",
                    "STARTED",
                    "STOPPED",
                    "STATUS",
                    "IN",
                    "OUT",
                    "CAUSE",
                ],
                &rows,
            );
            println!("{} session(s)", sessions.len());
        }
    }
    Ok(())
}

/// How far the store has applied the journal.
pub(crate) struct JournalState {
    /// Bytes of raw packets kept.
    pub bytes: u64,
    /// Bytes not yet applied to the store (0 when sessions are up to date).
    pub pending: u64,
    pub applied: portcullis_storage::Position,
}

pub(crate) fn print_stats(
    counters: &[Counter],
    since: Option<i64>,
    journal: &JournalState,
    disk: &DiskUse,
    format: Format,
) -> Result<()> {
    match format {
        Format::Json => {
            let mut clients = serde_json::Map::new();
            for c in counters {
                let entry = clients.entry(c.client.clone()).or_insert_with(|| json!({}));
                entry[&c.reason] = json!(c.count);
            }
            let v = json!({
                "counters_since": since.map(rfc3339),
                "journal_bytes": journal.bytes,
                "journal_pending_bytes": journal.pending,
                "applied_position": journal.applied.to_string(),
                "clients": clients,
                "disk": disk,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = counters
                .iter()
                .filter(|c| c.count > 0)
                .map(|c| vec![c.client.clone(), c.reason.clone(), c.count.to_string()])
                .collect();
            print_table(&["CLIENT", "COUNTER", "VALUE"], &rows);
            match since {
                Some(t) => println!("counters count since {} (the first start with this data directory)", rfc3339(t)),
                None => println!("no counters saved yet"),
            }
            println!(
                "journal: {} bytes of raw packets kept; sessions applied through {} ({} bytes still to apply)",
                journal.bytes, journal.applied, journal.pending
            );
            print_disk(disk);
        }
    }
    Ok(())
}

fn print_disk(d: &DiskUse) {
    let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
    let kept = |days: u32| if days == 0 { "forever".to_string() } else { format!("{days} days") };
    println!(
        "disk: database {}, journal {}, auth.log {}, NPS logs {}",
        mb(d.database_bytes),
        mb(d.journal_bytes),
        mb(d.auth_log_bytes),
        mb(d.nps_log_bytes)
    );
    let p = &d.bytes_per_day;
    println!(
        "a day at the last day's rate ({} authentication events, {} sessions) adds about {}: database {}, journal {}, auth.log {}, NPS logs {}",
        d.auth_events_last_day,
        d.sessions_last_day,
        mb(p.total),
        mb(p.database),
        mb(p.journal),
        mb(p.auth_log),
        mb(p.nps_log)
    );
    let r = &d.retention_days;
    println!(
        "kept: authentication events {}, closed sessions {}, journal {}",
        kept(r.auth_events),
        kept(r.sessions),
        kept(r.journal)
    );
}

pub(crate) fn print_dictionary_entry(dict: &Dictionary, key: &str) -> Result<()> {
    let def = if let Some(d) = dict.by_name(key) {
        d
    } else {
        let parsed = match key.split_once(['/', ':', '.']) {
            Some((v, n)) => {
                let vendor = v.parse::<u32>().ok().or_else(|| dict.vendor_by_name(v).map(|d| d.id));
                vendor.zip(n.parse::<u32>().ok()).map(|(vendor, number)| AttributeKey { vendor, number })
            }
            None => key.parse::<u32>().ok().map(|number| AttributeKey { vendor: 0, number }),
        };
        match parsed.and_then(|k| dict.by_key(k)) {
            Some(d) => d,
            None => bail!("no attribute {key:?} in the dictionary (try a name like Acct-Status-Type, 44, or 311/16)"),
        }
    };
    let vendor = if def.key.vendor == 0 {
        "-".to_string()
    } else {
        dict.vendor(def.key.vendor).map_or(def.key.vendor.to_string(), |v| format!("{} ({})", v.name, v.id))
    };
    println!("name:    {}", def.name);
    println!("number:  {}", def.key.number);
    println!("vendor:  {vendor}");
    println!("type:    {}", def.data_type.keyword());
    let mut flags = Vec::new();
    if def.has_tag {
        flags.push("has_tag".to_string());
    }
    if let Some(e) = def.encrypt {
        flags.push(format!("encrypt={e:?}"));
    }
    if def.concat {
        flags.push("concat".to_string());
    }
    if !flags.is_empty() {
        println!("flags:   {}", flags.join(","));
    }
    for (n, name) in dict.values_of(def.key) {
        println!("value:   {n} {name}");
    }
    Ok(())
}

pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| (*h).to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// `value` when it is one of `valid`, else an error naming the option and every valid
/// value.
pub(crate) fn one_of(option: &str, value: &str, valid: &[&str]) -> anyhow::Result<()> {
    if valid.contains(&value) {
        return Ok(());
    }
    anyhow::bail!("{option} {value:?} is not one of: {}", valid.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millisecond_times_always_have_three_digits() {
        assert_eq!(rfc3339_ms(1_767_600_000_600), "2026-01-05T08:00:00.600Z");
        assert_eq!(rfc3339_ms(1_767_600_000_000), "2026-01-05T08:00:00.000Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("2026-11-21T00:00:00Z", 0).unwrap(), 1_795_219_200);
        assert_eq!(parse_time("2026-11-21", 0).unwrap(), 1_795_219_200);
        assert_eq!(parse_time("2h", 10_000).unwrap(), 2_800);
        assert!(parse_time("yesterday", 0).is_err());
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_795_227_453_600), "2026-11-21T02:17:33.600Z");
        assert_eq!(rfc3339_ms(1_795_227_453_000), "2026-11-21T02:17:33.000Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }
}
