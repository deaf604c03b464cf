//! `portcullis users`, `alerts`, `replay` and `eval`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use portcullis_detect::scenario::{self, Params};
use portcullis_detect::{AlertDraft, Engine, Event};
use portcullis_server::config::Config;
use portcullis_server::detection::{self, Detection};
use portcullis_server::replay::{Format as FileFormat, Item, Reader};
use portcullis_storage::{AlertQuery, AlertUpdate, AuthQuery, SessionQuery, SqliteStore, Store};
use serde_json::json;

use crate::cli::{AlertsCommand, Format, GeoCommand, ReplayFormat, UsersCommand};
use crate::now_unix;

/// Geolocation and detection as the configuration sets them up.
pub(crate) fn detection(config: &Config) -> Result<Detection> {
    let geo = config.geo.open().context("opening the geolocation databases")?;
    Ok(Detection::new(geo, config.detect.clone()))
}

pub(crate) fn users(command: UsersCommand, load: fn(Option<&PathBuf>) -> Result<Config>) -> Result<()> {
    let UsersCommand::Show { user, config, timeline, format } = command;
    let config = load(config.as_ref())?;
    let store = portcullis_server::open_reader(&config)?;
    let canonical = portcullis_accounting::canonical_user(&user);
    let days = i64::from(config.detect.new_country.history_days.max(config.detect.window_days));
    // The window ends at the user's latest activity, as the engine's own does, so an
    // old replayed history still shows its profile.
    let latest_session = store
        .sessions(&SessionQuery { user: Some(user.clone()), limit: Some(1), ..Default::default() })?
        .first()
        .map(|s| s.stopped_at.unwrap_or(s.started_at).max(s.started_at));
    let latest_auth = store
        .auth_events(&AuthQuery { user: Some(canonical.clone()), limit: Some(1), ..Default::default() })?
        .first()
        .map(|e| e.time_ms.div_euclid(1000));
    let end = latest_session.max(latest_auth).unwrap_or_else(now_unix);
    let since = end - days * 86_400;
    let sessions =
        store.sessions(&SessionQuery { user: Some(user.clone()), since: Some(since), ..Default::default() })?;
    let auth = store.auth_events(&AuthQuery {
        user: Some(canonical.clone()),
        since_ms: Some(since * 1000),
        ..Default::default()
    })?;
    let mut events = detection::merge(&sessions, &auth);
    let mut detection = detection(&config)?;
    for e in &mut events {
        if e.location.is_none() {
            e.location = e.ip.map(|ip| detection.locate(ip));
        }
    }
    detection.observe(&events);
    let Some(profile) = detection.engine().profile(&canonical) else {
        bail!("no VPN or authentication activity of {user:?} in the last {days} days");
    };
    let open_alerts =
        store.alerts(&AlertQuery { user: Some(canonical), status: Some("open".into()), ..Default::default() })?;
    let entries: Vec<serde_json::Value> = events
        .iter()
        .rev()
        .take(timeline)
        .map(|e| {
            let l = e.location.clone().unwrap_or_default();
            json!({
                "time": portcullis_detect::rfc3339(e.time),
                "activity": e.kind.name(),
                "reason": e.reason,
                "ip": e.ip,
                "location": e.location.as_ref().map(|l| l.label()),
                "country": l.country,
                "city": l.city,
                "nas": e.nas,
                "device": e.device,
            })
        })
        .collect();
    // Where each device name came from (attribute and vendor), as the latest session
    // claiming it recorded: the connecting computer chooses every one of them.
    let source_of = |device: &str| {
        sessions
            .iter()
            .filter(|s| s.device.as_deref() == Some(device))
            .max_by_key(|s| s.started_at)
            .and_then(|s| s.details.get("device_source").and_then(|v| v.as_str()).map(str::to_owned))
    };
    match format {
        Format::Json => {
            let mut v = serde_json::to_value(&profile)?;
            if let Some(list) = v["devices"].as_array_mut() {
                for d in list {
                    let source = d["value"].as_str().and_then(source_of);
                    d["source"] = json!(source);
                }
            }
            v["open_alerts"] = json!(open_alerts.iter().map(|a| a.id).collect::<Vec<_>>());
            v["timeline"] = json!(entries);
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            println!("user:          {}", profile.user);
            println!("first seen:    {}", profile.first_seen);
            println!("last seen:     {}", profile.last_seen);
            println!("open alerts:   {}", open_alerts.len());
            println!("usual hours:   {:?} (solar time where the user was)", profile.usual_hours_local);
            println!("\nlocations (last {} days):", profile.window_days);
            for l in &profile.locations {
                let place = match (&l.city, &l.country) {
                    (Some(c), Some(cc)) => format!("{c}, {cc}"),
                    (None, Some(cc)) => cc.clone(),
                    _ => "unknown".into(),
                };
                println!("  {place:<28} {:>5}x  {} .. {}", l.count, l.first_seen, l.last_seen);
            }
            for (title, list) in [("addresses", &profile.ips), ("devices", &profile.devices), ("NAS", &profile.nas)] {
                println!("\n{title}:");
                for s in list {
                    let source = if title == "devices" {
                        format!("  claimed by {}", source_of(&s.value).as_deref().unwrap_or("an unrecorded attribute"))
                    } else {
                        String::new()
                    };
                    println!("  {:<28} {:>5}x  {} .. {}{source}", s.value, s.count, s.first_seen, s.last_seen);
                }
            }
            println!("\ntimeline (newest first):");
            for e in &entries {
                println!(
                    "  {}  {:<13} {:<14} {:<16} {}",
                    e["time"].as_str().unwrap_or(""),
                    e["activity"].as_str().unwrap_or(""),
                    e["reason"].as_str().unwrap_or(""),
                    e["ip"].as_str().unwrap_or(""),
                    e["location"].as_str().unwrap_or("")
                );
            }
            if !config.geo.databases.is_empty() {
                println!("\nIP Geolocation by DB-IP (https://db-ip.com) where a DB-IP database is configured.");
            }
        }
    }
    Ok(())
}

pub(crate) fn geo(command: GeoCommand, load: fn(Option<&PathBuf>) -> Result<Config>) -> Result<()> {
    let (config, database) = match &command {
        GeoCommand::Lookup { config, database, .. } => (config, database.clone()),
        GeoCommand::Info { config } => (config, Vec::new()),
    };
    let config = load(config.as_ref())?;
    let db = if database.is_empty() {
        config.geo.open().context("opening the geolocation databases")?
    } else {
        portcullis_geo::GeoDb::open(&database)?
    };
    match command {
        GeoCommand::Lookup { ips, .. } => {
            for ip in ips {
                let mut v = serde_json::to_value(db.lookup_now(ip))?;
                v["ip"] = json!(ip);
                println!("{}", serde_json::to_string(&v)?);
            }
        }
        GeoCommand::Info { .. } => {
            let info = db.info();
            if info.is_empty() {
                println!("no geolocation database configured ([geo] databases)");
            }
            for d in info {
                println!(
                    "{}: {} built {} ({} nodes)",
                    d.path,
                    d.database_type,
                    portcullis_detect::rfc3339(d.build_epoch as i64),
                    d.node_count
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn alerts(command: AlertsCommand, load: fn(Option<&PathBuf>) -> Result<Config>) -> Result<()> {
    match command {
        AlertsCommand::List { config, status, user, kind, limit, format } => {
            let config = load(config.as_ref())?;
            let user = user.map(|u| portcullis_accounting::canonical_user(&u));
            if let Some(s) = status.as_deref() {
                crate::output::one_of("--status", s, &portcullis_storage::ALERT_STATUSES)?;
            }
            if let Some(k) = kind.as_deref() {
                let kinds: Vec<&str> = portcullis_detect::AlertKind::ALL.iter().map(|k| k.name()).collect();
                crate::output::one_of("--kind", k, &kinds)?;
            }
            let store = portcullis_server::open_reader(&config)?;
            let alerts = store.alerts(&AlertQuery { status, user, kind, limit, ..AlertQuery::default() })?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&alerts)?),
                Format::Table => {
                    println!(
                        "{:<6} {:<26} {:<7} {:<16} {:<21} {:<9} {:>5}  message",
                        "id", "kind", "sev", "user", "event_time", "status", "count"
                    );
                    for a in &alerts {
                        println!(
                            "{:<6} {:<26} {:<7} {:<16} {:<21} {:<9} {:>5}  {}",
                            a.id, a.kind, a.severity, a.user, a.event_time, a.status, a.count, a.message
                        );
                    }
                }
            }
            Ok(())
        }
        AlertsCommand::Update { id, config, status, classification, comment, format } => {
            let config = load(config.as_ref())?;
            if status.is_none() && classification.is_none() && comment.is_none() {
                bail!("nothing to change: give --status, --classification or --comment");
            }
            let mut store = portcullis_server::open_configured_store(&config)?;
            let update = AlertUpdate { status, classification, comment };
            let Some(alert) = store.update_alert(id, &update, crate::now_unix() * 1000)? else {
                bail!("no alert {id}");
            };
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&alert)?),
                Format::Table => println!(
                    "alert {} is {}{}",
                    alert.id,
                    alert.status,
                    alert.classification.map(|c| format!(" ({c})")).unwrap_or_default()
                ),
            }
            Ok(())
        }
    }
}

type Stored = Result<portcullis_accounting::AccountingRecord, portcullis_storage::AuthEvent>;

/// Items read per hand-over between the reading thread and the detecting one.
const CHUNK: usize = 8192;

/// The files being replayed, merged by event time: each file is read in its own order
/// (as a NAS sent it), and the next record is always the earliest head of all files.
/// Memory stays bounded whatever the size of the files.
struct Merge<'a> {
    files: Vec<(PathBuf, std::iter::Peekable<Reader<'a, std::io::BufReader<std::fs::File>>>)>,
    errors: usize,
}

impl Merge<'_> {
    fn next(&mut self) -> Option<Item> {
        loop {
            let mut best: Option<(usize, i64)> = None;
            for (i, (path, reader)) in self.files.iter_mut().enumerate() {
                // Report and drop unreadable records at the head.
                while let Some(Err(_)) = reader.peek() {
                    if let Some(Err(e)) = reader.next() {
                        self.errors += 1;
                        if self.errors <= 10 {
                            eprintln!("replay: {}:{}: {}", path.display(), e.line, e.message);
                        }
                    }
                }
                if let Some(Ok(item)) = reader.peek() {
                    if best.is_none_or(|(_, t)| item.time() < t) {
                        best = Some((i, item.time()));
                    }
                }
            }
            let (i, _) = best?;
            if let Some(Ok(item)) = self.files[i].1.next() {
                return Some(item);
            }
        }
    }
}

/// What `portcullis replay` reads and how.
pub(crate) struct ReplayOptions<'a> {
    pub(crate) input: ReplayFormat,
    pub(crate) vendor: &'a str,
    /// The zone of local times in files that do not say theirs (NPS); `auth.time_zone`
    /// by default, the zone Portcullis writes its own NPS files in.
    pub(crate) time_zone: Option<&'a str>,
    pub(crate) dry_run: bool,
}

pub(crate) fn replay(config: &Config, files: &[PathBuf], options: &ReplayOptions<'_>) -> Result<()> {
    let ReplayOptions { input, vendor, time_zone, dry_run } = *options;
    let vendor = portcullis_accounting::Vendor::from_name(vendor).with_context(|| {
        let names: Vec<_> = portcullis_accounting::Vendor::ALL.iter().map(|v| v.name()).collect();
        format!("unknown vendor {vendor:?} (one of {}, as in [[client]] vendor)", names.join(", "))
    })?;
    let zone = match time_zone {
        Some(z) => portcullis_server::zone::Zone::parse(z).map_err(|e| anyhow::anyhow!("--time-zone: {e}"))?,
        None => config.auth.zone().map_err(anyhow::Error::msg)?,
    };
    let dict = crate::load_dictionary(config)?;
    let format = match input {
        ReplayFormat::Auto => None,
        ReplayFormat::Json => Some(FileFormat::JsonLines),
        ReplayFormat::Detail => Some(FileFormat::Detail),
        ReplayFormat::Ias => Some(FileFormat::Ias),
        ReplayFormat::Dts => Some(FileFormat::Dts),
    };
    let mut merge = Merge { files: Vec::new(), errors: 0 };
    for path in files {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let reader = Reader::new(std::io::BufReader::with_capacity(1 << 20, file), format, &dict, vendor)
            .with_zone(zone.clone());
        merge.files.push((path.clone(), reader.peekable()));
    }
    let started = Instant::now();
    let clock = config.radius.clock_bounds();
    // Lookups happen on the reading thread, detection on this one.
    let mut geo = config.geo.open().context("opening the geolocation databases")?;
    let mut detection = Detection::new(portcullis_geo::GeoDb::empty(), config.detect.clone());
    if !dry_run {
        portcullis_server::require_embedded(config, "replay")?;
    }
    let mut store = if dry_run { None } else { Some(portcullis_server::open_store(config)?) };
    if let Some(s) = store.as_mut() {
        detection.warm_up(s, now_unix()).context("reading stored history")?;
    }
    let (mut done, mut alerts, mut records, mut auths) = (0usize, 0usize, 0usize, 0usize);
    let mut last_report = Instant::now();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // One thread reads, parses and merges the files; this one stores and detects.
    let errors = std::thread::scope(|scope| -> Result<usize> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Stored>>(4);
        // Used chunks go back to the reader: allocating megabytes per chunk costs more
        // than everything else the reader does.
        let (recycle, recycled) = std::sync::mpsc::sync_channel::<Vec<Stored>>(8);
        let reader = scope.spawn(move || {
            loop {
                let mut chunk = recycled.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
                chunk.clear();
                while chunk.len() < CHUNK {
                    let Some(item) = merge.next() else { break };
                    match item {
                        Item::Record(mut r) => {
                            // Against the arrival the file records (detail `Timestamp`,
                            // the NPS log time), as live traffic is against its arrival.
                            r.clamp_event_time(clock);
                            chunk.push(Ok(*r));
                        }
                        Item::Auth(a) => chunk.push(Err(*a)),
                        Item::Event(e) => chunk.extend(detection::stored_forms(*e)),
                    }
                }
                for item in &mut chunk {
                    match item {
                        Ok(r) => detection::locate_record(&mut geo, r),
                        Err(a) => detection::locate_auth(&mut geo, a),
                    }
                }
                if chunk.is_empty() || tx.send(chunk).is_err() {
                    return merge.errors;
                }
            }
        });
        // A chunk in merged order; storage takes its records and its authentication
        // events in one transaction each, detection sees them in order.
        let mut events: Vec<Event> = Vec::with_capacity(CHUNK);
        for mut chunk in rx {
            done += chunk.len();
            if let Some(s) = store.as_mut() {
                // What the store holds already was seen by the detectors (history).
                let mut fresh = Vec::with_capacity(chunk.len());
                for item in chunk.drain(..) {
                    let known = match &item {
                        Ok(r) => already_stored(s, r)?,
                        Err(a) => s.has_auth_event(a)?,
                    };
                    if !known {
                        fresh.push(item);
                    }
                }
                chunk = fresh;
                // In the order detection sees them, kept for a rebuild.
                s.apply_replayed(&chunk)?;
            }
            events.clear();
            events.extend(chunk.iter().filter_map(|i| match i {
                Ok(r) => {
                    records += 1;
                    detection::event_of_record(r)
                }
                Err(a) => {
                    auths += 1;
                    detection::event_of_auth(a)
                }
            }));
            // The reader empties it: the frees balance the two threads' work.
            let _ = recycle.try_send(chunk);
            let drafts = detection.observe(&events);
            match store.as_mut() {
                Some(s) => alerts += detection::record(s, &drafts)?,
                None => {
                    for d in &drafts {
                        let mut v = serde_json::to_value(d)?;
                        v["event_time"] = json!(portcullis_detect::rfc3339(d.event_time));
                        writeln!(out, "{v}")?;
                    }
                    alerts += drafts.len();
                }
            }
            if last_report.elapsed().as_secs() >= 1 {
                last_report = Instant::now();
                let rate = done as f64 / started.elapsed().as_secs_f64();
                eprintln!("replay: {done} records ({rate:.0}/s), {alerts} alerts");
            }
        }
        reader.join().map_err(|_| anyhow::anyhow!("the file reader failed"))
    })?;
    if errors > 10 {
        eprintln!("replay: {errors} unreadable records in all (first 10 shown)");
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "replay: {done} records ({records} new accounting, {auths} new authentication) in {secs:.1} s ({:.0}/s); {alerts} alerts raised or repeated; {errors} unreadable",
        done as f64 / secs.max(1e-9),
    );
    if done == 0 {
        bail!("nothing usable was read ({errors} unreadable records)");
    }
    Ok(())
}

/// A Start or Stop the store has applied already.
fn already_stored(store: &SqliteStore, r: &portcullis_accounting::AccountingRecord) -> Result<bool> {
    let Some(key) = r.session_key.as_deref() else { return Ok(false) };
    let Some(s) = store.session(key)? else { return Ok(false) };
    Ok(match r.status_type() {
        portcullis_accounting::StatusType::Start => s.started_at <= r.event_time,
        portcullis_accounting::StatusType::Stop => s.stopped_at == Some(r.event_time),
        _ => s.updated_at >= r.event_time,
    })
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// The detection settings `portcullis eval` scores.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EvalSettings {
    /// None of the organisation's settings (see [`eval_config`]).
    pub(crate) defaults: bool,
    /// `suspicious_vpn.min_deviations`.
    pub(crate) min_deviations: u32,
}

/// The organisation's settings of the synthetic workforce: its cloud VDI is egress,
/// its computers are named LT-* and TAB-*. `defaults`: none of that is configured.
fn eval_config(settings: EvalSettings) -> portcullis_detect::Config {
    let mut c = portcullis_detect::Config::default();
    c.suspicious_vpn.min_deviations = settings.min_deviations;
    if !settings.defaults {
        c.egress_asns.push(scenario::VDI_ASN);
        c.suspicious_vpn.managed_devices = vec!["LT-*".into(), "TAB-*".into()];
    }
    c
}

pub(crate) fn eval(
    params: Params,
    geoip: Option<&Path>,
    write: Option<&Path>,
    settings: EvalSettings,
    format: Format,
) -> Result<()> {
    let t = Instant::now();
    let s = scenario::generate(params);
    let generated = t.elapsed().as_secs_f64();
    if let Some(dir) = write {
        std::fs::create_dir_all(dir)?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("events.jsonl"))?);
        for e in &s.events {
            serde_json::to_writer(&mut f, e)?;
            f.write_all(b"\n")?;
        }
        f.flush()?;
        std::fs::write(dir.join("truth.json"), serde_json::to_string_pretty(&s.attacks)?)?;
    }
    let rss_before = rss_bytes();
    let mut engine = Engine::new(eval_config(settings));
    let t = Instant::now();
    let alerts = engine.ingest_all(&s.events);
    let detect_secs = t.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    let profiles = engine.stats().profiles.max(1);
    let baseline = scenario::baseline_new_country(&s.events);
    let scores = scenario::evaluate(&s, &alerts, &baseline);
    // Geolocation + profiles + detectors: every address looked up in a real database,
    // on two threads (lookups, then profiles and detectors), as two cores allow.
    let geo_rate = match geoip {
        Some(path) => {
            let mut geo = portcullis_geo::GeoDb::open(&[path])?;
            let stripped: Vec<Event> = s.events.iter().map(|e| Event { location: None, ..e.clone() }).collect();
            let mut engine = Engine::new(eval_config(settings));
            let t = Instant::now();
            std::thread::scope(|scope| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Event>>(8);
                scope.spawn(move || {
                    for chunk in stripped.chunks(4096) {
                        let mut located = chunk.to_vec();
                        for e in &mut located {
                            e.location = e.ip.map(|ip| geo.lookup(ip));
                        }
                        if tx.send(located).is_err() {
                            return;
                        }
                    }
                });
                let mut out: Vec<AlertDraft> = Vec::new();
                for chunk in rx {
                    for e in &chunk {
                        engine.ingest(e, &mut out);
                    }
                }
            });
            Some(s.events.len() as f64 / t.elapsed().as_secs_f64())
        }
        None => None,
    };
    let summary = json!({
        "users": s.users,
        "days": s.days,
        "seed": params.seed,
        "default_settings": settings.defaults,
        "min_deviations": settings.min_deviations,
        "events": s.events.len(),
        "attacks": s.attacks.len(),
        "generate_seconds": generated,
        "detect_events_per_second": s.events.len() as f64 / detect_secs,
        "geo_detect_events_per_second": geo_rate,
        "bytes_per_profile_estimate": engine.bytes_per_profile(),
        "bytes_per_profile_rss": rss_after.saturating_sub(rss_before) as f64 / profiles as f64,
        "profiles": profiles,
        "scores": scores,
    });
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        Format::Table => {
            println!(
                "{} users, {} days, seed {}, {} settings, min_deviations {}: {} events, {} attacks",
                s.users,
                s.days,
                params.seed,
                if settings.defaults { "default" } else { "organisation" },
                settings.min_deviations,
                s.events.len(),
                s.attacks.len()
            );
            println!(
                "{:<48} {:>6} {:>6} {:>6} {:>8} {:>9} {:>6} {:>6} {:>6}",
                "detector", "alerts", "TP", "FP", "attacks", "detected", "P", "R", "F1"
            );
            for sc in &scores {
                println!(
                    "{:<48} {:>6} {:>6} {:>6} {:>8} {:>9} {:>6.3} {:>6.3} {:>6.3}",
                    sc.detector,
                    sc.alerts,
                    sc.true_positives,
                    sc.false_positives,
                    sc.expected_attacks,
                    sc.detected_attacks,
                    sc.precision,
                    sc.recall,
                    sc.f1
                );
            }
            println!("detectors: {:.0} events/s (one core)", s.events.len() as f64 / detect_secs);
            if let Some(r) = geo_rate {
                println!("geolocation + detectors: {r:.0} events/s (two threads)");
            }
            println!(
                "memory per profile: {:.0} bytes (estimate), {:.0} bytes (resident set growth) over {profiles} profiles",
                engine.bytes_per_profile(),
                rss_after.saturating_sub(rss_before) as f64 / profiles as f64
            );
        }
    }
    Ok(())
}
