//! Readers of history files for `portcullis replay`: Portcullis JSON lines (detection
//! events or the authentication audit log), FreeRADIUS detail files, and NPS log files
//! in IAS (legacy) and DTS Compliant (XML) format. Every reader streams, bounds line
//! and record sizes, and reports a bad record with its line number instead of
//! stopping.
//!
//! Times: JSON lines carry UTC instants. FreeRADIUS detail dates carry their zone
//! (`UTC`, `CET`, `+0100`), which is honoured; NPS files carry none and are read in the
//! zone given to the reader (`--time-zone`, by default `auth.time_zone`, the zone
//! Portcullis writes its own NPS files in). A time that cannot be read makes its record
//! an error with its line number; no record is ever given another time instead.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::IpAddr;

use portcullis_accounting::{AccountingRecord, Vendor, normalise};
use portcullis_detect::Event;
use portcullis_radius::{Code, Dictionary, Identifier, Packet, PacketBuilder, VerifiedRequest};
use portcullis_storage::AuthEvent;

use crate::npslog;
use crate::zone::Zone;

/// Longest line read; longer lines are refused.
pub const MAX_LINE: usize = 64 * 1024;
/// Most attributes in one record.
const MAX_ATTRIBUTES: usize = 512;

/// One thing read from a history file.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Record(Box<AccountingRecord>),
    Auth(Box<AuthEvent>),
    Event(Box<Event>),
}

impl Item {
    /// Event time, Unix seconds.
    pub fn time(&self) -> i64 {
        match self {
            Self::Record(r) => r.event_time,
            Self::Auth(a) => a.time_ms.div_euclid(1000),
            Self::Event(e) => e.time,
        }
    }
}

/// File formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Detail,
    Ias,
    Dts,
}

impl Format {
    /// Guesses the format from the first non-empty line.
    pub fn detect(first_line: &str) -> Self {
        let l = first_line.trim_start_matches('\u{feff}').trim();
        if l.starts_with('{') {
            Self::JsonLines
        } else if l.starts_with("<Event>") {
            Self::Dts
        } else if !l.contains(',') && l.split_whitespace().count() == 5 {
            Self::Detail
        } else {
            Self::Ias
        }
    }
}

/// A record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ReadError {
    pub line: usize,
    pub message: String,
}

/// Local times of one file: the zone they are in, and the instant of the record read
/// before, which settles the hour a change back from daylight saving repeats.
#[derive(Debug, Clone, Default)]
pub struct LocalTimes {
    zone: Zone,
    previous: Option<i64>,
}

impl LocalTimes {
    pub fn new(zone: Zone) -> Self {
        Self { zone, previous: None }
    }

    /// A local time without zone information, in the file's zone.
    fn resolve(&mut self, local: time::PrimitiveDateTime) -> Result<i64, String> {
        let t = self.zone.resolve(local, self.previous)?;
        self.previous = Some(t);
        Ok(t)
    }

    /// A local time written with its zone (FreeRADIUS `%Z`).
    fn resolve_labelled(&mut self, local: time::PrimitiveDateTime, label: &str) -> Result<i64, String> {
        let t = self.zone.resolve_labelled(local, label)?;
        self.previous = Some(t);
        Ok(t)
    }
}

/// Reads one file's items.
pub struct Reader<'a, R> {
    input: R,
    format: Option<Format>,
    dict: &'a Dictionary,
    vendor: Vendor,
    times: LocalTimes,
    line: usize,
    buf: Vec<u8>,
    block: Vec<(usize, String)>,
    done: bool,
}

impl<'a, R: BufRead> Reader<'a, R> {
    /// `format`: `None` guesses from the first line. `vendor`: the vendor adapter for
    /// accounting records (detail and NPS files). Local times without a zone are read
    /// as UTC unless [`Reader::with_zone`] says otherwise.
    pub fn new(input: R, format: Option<Format>, dict: &'a Dictionary, vendor: Vendor) -> Self {
        let times = LocalTimes::default();
        Self { input, format, dict, vendor, times, line: 0, buf: Vec::new(), block: Vec::new(), done: false }
    }

    /// The zone of local times the file does not say the zone of (NPS files).
    #[must_use]
    pub fn with_zone(mut self, zone: Zone) -> Self {
        self.times = LocalTimes::new(zone);
        self
    }

    /// The next line (without line end), or `None` at the end. Long lines are an
    /// error; the rest of such a line is skipped.
    fn next_line(&mut self) -> Option<Result<String, ReadError>> {
        self.buf.clear();
        let mut too_long = false;
        loop {
            let available = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) => return Some(Err(ReadError { line: self.line + 1, message: e.to_string() })),
            };
            if available.is_empty() {
                if self.buf.is_empty() && !too_long {
                    return None;
                }
                break;
            }
            let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..=i], true),
                None => (available, false),
            };
            let n = chunk.len();
            if self.buf.len() + n <= MAX_LINE + 1 {
                self.buf.extend_from_slice(chunk);
            } else {
                too_long = true;
            }
            self.input.consume(n);
            if found {
                break;
            }
        }
        self.line += 1;
        if too_long {
            return Some(Err(ReadError { line: self.line, message: format!("line longer than {MAX_LINE} bytes") }));
        }
        while self.buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            self.buf.pop();
        }
        Some(Ok(String::from_utf8_lossy(&self.buf).into_owned()))
    }

    fn detail_block(&mut self) -> Option<Result<Option<Item>, ReadError>> {
        loop {
            match self.next_line() {
                None => {
                    self.done = true;
                    if self.block.is_empty() {
                        return None;
                    }
                    break;
                }
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(l)) if l.trim().is_empty() => {
                    if self.block.is_empty() {
                        continue;
                    }
                    break;
                }
                Some(Ok(l)) => {
                    if self.block.len() >= MAX_ATTRIBUTES {
                        self.block.clear();
                        return Some(Err(ReadError {
                            line: self.line,
                            message: "record has too many attributes".into(),
                        }));
                    }
                    self.block.push((self.line, l));
                }
            }
        }
        let block = std::mem::take(&mut self.block);
        Some(detail_record(&block, self.dict, self.vendor, &mut self.times))
    }
}

impl<R: BufRead> Iterator for Reader<'_, R> {
    type Item = Result<Item, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if self.format == Some(Format::Detail) {
                match self.detail_block()? {
                    Ok(Some(item)) => return Some(Ok(item)),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                }
            }
            let line = match self.next_line()? {
                Ok(l) => l,
                Err(e) => return Some(Err(e)),
            };
            if line.trim().is_empty() {
                continue;
            }
            let format = *self.format.get_or_insert_with(|| Format::detect(&line));
            let at = self.line;
            let result = match format {
                Format::JsonLines => json_line(&line),
                Format::Ias => ias_line(&line, self.dict, self.vendor, &mut self.times),
                Format::Dts => dts_line(&line, self.dict, self.vendor, &mut self.times),
                Format::Detail => {
                    self.block.push((at, line));
                    continue;
                }
            };
            match result {
                Ok(Some(item)) => return Some(Ok(item)),
                Ok(None) => continue,
                Err(message) => return Some(Err(ReadError { line: at, message })),
            }
        }
    }
}

/// A Portcullis JSON line: a detection event, or an authentication audit event.
pub fn json_line(line: &str) -> Result<Option<Item>, String> {
    // Audit events always carry "decision"; detection events never do.
    if line.contains("\"decision\"") {
        if let Ok(e) = serde_json::from_str::<AuthEvent>(line) {
            return Ok(Some(Item::Auth(Box::new(e))));
        }
    }
    match serde_json::from_str::<Event>(line) {
        Ok(e) => Ok(Some(Item::Event(Box::new(e)))),
        Err(e) => match serde_json::from_str::<serde_json::Value>(line) {
            Err(_) => Err(format!("not JSON: {e}")),
            Ok(v) if v.get("decision").is_some() => serde_json::from_value::<AuthEvent>(v)
                .map(|a| Some(Item::Auth(Box::new(a))))
                .map_err(|e| format!("not an authentication event: {e}")),
            Ok(_) => Err(format!("not a detection event: {e}")),
        },
    }
}

/// Unquotes a FreeRADIUS detail value: `"..."` with `\"`, `\\`, `\n`, `\r`, `\t` and
/// octal `\NNN` escapes; unquoted values are taken as they are.
fn unquote(v: &str) -> String {
    let v = v.trim();
    let Some(inner) = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')) else { return v.to_owned() };
    let mut out = Vec::with_capacity(inner.len());
    let b = inner.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let c = b[i + 1];
            let oct = b.get(i + 1..i + 4).filter(|d| d.iter().all(|x| (b'0'..=b'7').contains(x)));
            if let Some(d) = oct {
                out.push(((d[0] - b'0') << 6) | ((d[1] - b'0') << 3) | (d[2] - b'0'));
                i += 4;
                continue;
            }
            out.push(match c {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                other => other,
            });
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// A calendar date and time of day, as a file wrote it.
fn civil(y: i64, m: i64, d: i64, (hh, mm, ss): (i64, i64, i64)) -> Option<time::PrimitiveDateTime> {
    let n = |v: i64| u8::try_from(v).ok();
    let date =
        time::Date::from_calendar_date(i32::try_from(y).ok()?, time::Month::try_from(n(m)?).ok()?, n(d)?).ok()?;
    let time = time::Time::from_hms(n(hh)?, n(mm)?, n(ss)?).ok()?;
    Some(time::PrimitiveDateTime::new(date, time))
}

/// `HH:MM:SS[.fff]`: the time of day and the milliseconds.
fn hms(t: &str) -> Option<((i64, i64, i64), i64)> {
    let (whole, fraction) = t.split_once('.').unwrap_or((t, ""));
    let mut it = whole.split(':').map(|x| x.parse::<i64>().ok());
    let hms = (it.next()??, it.next()??, it.next()??);
    if it.next().is_some() {
        return None;
    }
    let digits = fraction.get(..fraction.len().min(3))?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis = if digits.is_empty() { 0 } else { digits.parse::<i64>().ok()? * 10_i64.pow(3 - digits.len() as u32) };
    Some((hms, millis))
}

/// FreeRADIUS writes dates as `"Jan  5 2026 08:00:00 UTC"` (`%b %e %Y %H:%M:%S %Z`):
/// the zone is an abbreviation (`CET`) or an offset (`+0100`), and taken as written.
/// Without a zone the time is local to the file's zone. Unix seconds.
fn detail_date(v: &str, times: &mut LocalTimes) -> Result<i64, String> {
    let bad = || format!("cannot read the date {v:?} (expected e.g. \"Jan  5 2026 08:00:00 CET\")");
    let parts: Vec<&str> = v.split_whitespace().collect();
    if !(4..=5).contains(&parts.len()) {
        return Err(bad());
    }
    let m = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(parts[0])).ok_or_else(bad)? as i64 + 1;
    let (hms, _) = hms(parts[3]).ok_or_else(bad)?;
    let year = parts[2].parse().map_err(|_| bad())?;
    let local = civil(year, m, parts[1].parse().map_err(|_| bad())?, hms).ok_or_else(bad)?;
    match parts.get(4) {
        Some(label) => times.resolve_labelled(local, label),
        None => times.resolve(local),
    }
    .map_err(|e| format!("date {v:?}: {e}"))
}

/// NPS dates `MM/DD/YYYY` and times `HH:MM:SS[.mmm]`, local to the file's zone. Unix
/// milliseconds.
fn nps_date(date: &str, time: &str, times: &mut LocalTimes) -> Result<i64, String> {
    let bad = || format!("bad date/time {date:?} {time:?}");
    let mut d = date.split('/').map(|x| x.trim().parse::<i64>().ok());
    let (m, day, y) = (d.next().flatten(), d.next().flatten(), d.next().flatten());
    let (Some(m), Some(day), Some(y), None) = (m, day, y, d.next()) else { return Err(bad()) };
    let (hms, millis) = hms(time.trim()).ok_or_else(bad)?;
    let local = civil(y, m, day, hms).ok_or_else(bad)?;
    let t = times.resolve(local).map_err(|e| format!("{date} {time}: {e}"))?;
    Ok(t * 1000 + millis)
}

/// Builds an Accounting-Request from (dictionary name, text value) pairs and
/// normalises it as if it had arrived at `arrival` (Unix seconds).
fn accounting_record(
    attrs: &[(String, String)],
    dict: &Dictionary,
    vendor: Vendor,
    arrival: i64,
) -> Result<Option<AccountingRecord>, String> {
    let mut b = PacketBuilder::new(Code::AccountingRequest, Identifier(0));
    let mut source: IpAddr = IpAddr::from([0, 0, 0, 0]);
    for (name, value) in attrs {
        let Ok((v, typ, bytes)) = crate::auth::encode_reply_attribute(dict, name, value) else { continue };
        if name == "NAS-IP-Address" {
            source = value.parse().unwrap_or(source);
        }
        let r = if v == 0 { b.attribute(typ, &bytes) } else { b.vendor_attribute(v, typ, &bytes) };
        r.map_err(|e| format!("{name}: {e}"))?;
    }
    let bytes = b
        .encode_with_authenticator(
            portcullis_radius::Authenticator::ZERO,
            &portcullis_radius::SharedSecret::new("replay"),
        )
        .map_err(|e| e.to_string())?;
    let packet = Packet::decode(&bytes).map_err(|e| e.to_string())?;
    let request = VerifiedRequest::assume_verified_from_storage(packet);
    match normalise(&request, "", source, vendor, arrival.saturating_mul(1000)) {
        Ok(r) => Ok(Some(r)),
        Err(e) => Err(format!("not a usable accounting record: {e}")),
    }
}

fn detail_record(
    block: &[(usize, String)],
    dict: &Dictionary,
    vendor: Vendor,
    times: &mut LocalTimes,
) -> Result<Option<Item>, ReadError> {
    let first = block.first().map_or(0, |b| b.0);
    let mut attrs = Vec::new();
    let mut arrival = None;
    let mut event_time = None;
    for (i, (line, text)) in block.iter().enumerate() {
        if i == 0 && !text.starts_with([' ', '\t']) {
            continue; // the date line
        }
        let Some((name, value)) = text.split_once('=') else {
            return Err(ReadError { line: *line, message: format!("expected \"Attribute = value\", got {text:?}") });
        };
        let (name, value) = (name.trim(), unquote(value));
        let at = |message: String| ReadError { line: *line, message };
        match name {
            "Timestamp" => {
                arrival =
                    Some(value.parse::<i64>().map_err(|_| at(format!("Timestamp {value:?} is not Unix seconds")))?);
            }
            "Event-Timestamp" => {
                let t = match value.parse::<i64>() {
                    Ok(t) => t,
                    Err(_) => detail_date(&value, times).map_err(|e| at(format!("Event-Timestamp: {e}")))?,
                };
                event_time = Some(t);
            }
            _ => attrs.push((name.to_owned(), value)),
        }
    }
    if let Some(t) = event_time {
        attrs.push(("Event-Timestamp".into(), t.clamp(0, i64::from(u32::MAX)).to_string()));
    }
    let arrival = arrival
        .or(event_time)
        .ok_or_else(|| ReadError { line: first, message: "record has neither Timestamp nor Event-Timestamp".into() })?;
    let r = accounting_record(&attrs, dict, vendor, arrival).map_err(|message| ReadError { line: first, message })?;
    Ok(r.map(|r| Item::Record(Box::new(r))))
}

/// The fields NPS logs carry that matter here, by attribute number. `time_ms`: Unix
/// milliseconds.
fn nps_item(
    number_values: &BTreeMap<u32, String>,
    time_ms: i64,
    computer: &str,
    dict: &Dictionary,
    vendor: Vendor,
) -> Result<Option<Item>, String> {
    let time = time_ms.div_euclid(1000);
    let packet_type: u8 = number_values.get(&4136).and_then(|v| v.parse().ok()).unwrap_or(0);
    let get = |n: u32| number_values.get(&n).cloned().filter(|v| !v.is_empty());
    match packet_type {
        // Accounting-Request: rebuild the packet from the standard attributes.
        4 => {
            let attrs: Vec<(String, String)> = number_values
                .iter()
                .filter(|(n, _)| **n < 256)
                .filter_map(|(n, v)| {
                    let def = dict.by_key(portcullis_radius::AttributeKey { vendor: 0, number: *n })?;
                    Some((def.name.clone(), v.clone()))
                })
                .collect();
            Ok(accounting_record(&attrs, dict, vendor, time)?.map(|r| Item::Record(Box::new(r))))
        }
        // Access-Accept / Access-Reject / Access-Challenge: an authentication decision.
        npslog::ACCESS_ACCEPT | npslog::ACCESS_REJECT | npslog::ACCESS_CHALLENGE => {
            let (decision, event_id, default_reason) = match packet_type {
                npslog::ACCESS_ACCEPT => ("accept", 6272, 0),
                npslog::ACCESS_REJECT => ("reject", 6273, 16),
                _ => ("challenge", 0, 0),
            };
            let raw = get(1).or_else(|| get(4129)).unwrap_or_default();
            let reason_code = get(4142).and_then(|v| v.parse().ok()).unwrap_or(default_reason);
            let method = get(4127).and_then(|v| v.parse().ok()).and_then(npslog::method_name).unwrap_or_default();
            Ok(Some(Item::Auth(Box::new(AuthEvent {
                time_ms,
                user: portcullis_accounting::canonical_user(&raw),
                user_raw: raw,
                nas: get(32).or_else(|| get(4)).unwrap_or_else(|| computer.to_owned()),
                client: get(4128).unwrap_or_default(),
                calling_station_id: get(31),
                method: method.to_owned(),
                decision: decision.into(),
                reason_code,
                event_id,
                policy: get(4149),
                message: String::new(),
                connection_request_policy: get(4154),
                mfa: None,
                location: None,
                approval: None,
            }))))
        }
        _ => Ok(None),
    }
}

/// IAS text fields in hex (`0x...`) are decoded.
fn ias_value(v: &str) -> String {
    match v.strip_prefix("0x") {
        Some(hex) if hex.len() % 2 == 0 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            let bytes: Vec<u8> =
                (0..hex.len()).step_by(2).filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => v.to_owned(),
    }
}

/// One IAS (legacy) line: NAS address, user, date, time, service, computer, then
/// attribute-number/value pairs.
pub fn ias_line(line: &str, dict: &Dictionary, vendor: Vendor, times: &mut LocalTimes) -> Result<Option<Item>, String> {
    let fields: Vec<&str> = line.split(',').collect();
    if fields.len() < 6 || fields.len() > 6 + 2 * MAX_ATTRIBUTES {
        return Err("not an IAS log line (expected NAS,user,date,time,service,computer,id,value,...)".into());
    }
    let time = nps_date(fields[2], fields[3], times)?;
    let mut values = BTreeMap::new();
    for pair in fields[6..].chunks(2) {
        let [id, value] = pair else { return Err("attribute without a value".into()) };
        let id: u32 = id.trim().parse().map_err(|_| format!("bad attribute number {id:?}"))?;
        values.insert(id, ias_value(value));
    }
    if !values.contains_key(&1) && !fields[1].is_empty() {
        values.insert(1, ias_value(fields[1]));
    }
    if !values.contains_key(&4) && !fields[0].is_empty() {
        values.insert(4, fields[0].to_owned());
    }
    nps_item(&values, time, fields[5], dict, vendor)
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// One DTS Compliant event: `<Event><Name data_type="N">value</Name>...</Event>`.
pub fn dts_line(line: &str, dict: &Dictionary, vendor: Vendor, times: &mut LocalTimes) -> Result<Option<Item>, String> {
    let body = line
        .trim()
        .strip_prefix("<Event>")
        .and_then(|b| b.strip_suffix("</Event>"))
        .ok_or("not a DTS event (expected <Event>...</Event> on one line)")?;
    let mut elements: Vec<(&str, String)> = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let end_tag = after.find('>').ok_or("unterminated element")?;
        let tag = &after[..end_tag];
        let name = tag.split_whitespace().next().ok_or("empty element name")?;
        let content = &after[end_tag + 1..];
        let close = format!("</{name}>");
        let close_at = content.find(&close).ok_or_else(|| format!("element {name} is not closed"))?;
        elements.push((name, xml_unescape(&content[..close_at])));
        if elements.len() > MAX_ATTRIBUTES {
            return Err("event has too many elements".into());
        }
        rest = &content[close_at + close.len()..];
    }
    let find = |n: &str| elements.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
    let stamp = find("Timestamp").ok_or("event has no Timestamp")?;
    let (date, time) = stamp.split_once(' ').ok_or("bad Timestamp")?;
    let time = nps_date(date, time, times).map_err(|e| format!("Timestamp: {e}"))?;
    let mut values = BTreeMap::new();
    for (name, value) in &elements {
        let number = match *name {
            "Packet-Type" => Some(4136),
            "Authentication-Type" => Some(4127),
            "Reason-Code" => Some(4142),
            "Client-Friendly-Name" => Some(4128),
            "Fully-Qualifed-User-Name" => Some(4129),
            "NP-Policy-Name" => Some(4149),
            "Proxy-Policy-Name" => Some(4154),
            other => dict.by_name(other).filter(|d| d.key.vendor == 0 && d.key.number < 256).map(|d| d.key.number),
        };
        if let Some(n) = number {
            values.insert(n, value.clone());
        }
    }
    nps_item(&values, time, &find("Computer-Name").unwrap_or_default(), dict, vendor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Result<Item, ReadError>> {
        let dict = Dictionary::builtin();
        Reader::new(text.as_bytes(), None, &dict, Vendor::default()).collect()
    }

    #[test]
    fn detail_file_with_start_and_stop() {
        let text = "Mon Jan  5 08:00:03 2026\n\tAcct-Status-Type = Start\n\tUser-Name = \"EXAMPLE\\\\Alice\"\n\tNAS-IP-Address = 192.0.2.10\n\tCalling-Station-Id = \"198.51.100.7\"\n\tAcct-Session-Id = \"s-1\"\n\tEvent-Timestamp = \"Jan  5 2026 08:00:00 UTC\"\n\tAttr-26.9.1 = 0x00\n\tTimestamp = 1767600003\n\nMon Jan  5 09:00:00 2026\n\tAcct-Status-Type = Stop\n\tUser-Name = \"EXAMPLE\\\\Alice\"\n\tNAS-IP-Address = 192.0.2.10\n\tAcct-Session-Id = \"s-1\"\n\tAcct-Delay-Time = 5\n\tTimestamp = 1767603605\n";
        let items = read(text);
        assert_eq!(items.len(), 2, "{items:?}");
        let Ok(Item::Record(start)) = &items[0] else { panic!("{items:?}") };
        assert_eq!(start.user.as_deref(), Some("alice"));
        assert_eq!(start.event_time, 1_767_600_000);
        assert_eq!(start.client_ip, Some("198.51.100.7".parse().unwrap()));
        let Ok(Item::Record(stop)) = &items[1] else { panic!() };
        assert_eq!(stop.event_time, 1_767_603_600, "arrival minus Acct-Delay-Time");
        assert_eq!(stop.session_key, start.session_key);
    }

    #[test]
    fn ias_and_dts_lines() {
        let ias = "192.0.2.10,alice,01/05/2026,08:00:00,IAS,NPS1,31,198.51.100.7,32,vpn-gw,4128,rras,4136,3,4142,16";
        let items = read(ias);
        let Ok(Item::Auth(a)) = &items[0] else { panic!("{items:?}") };
        assert_eq!((a.user.as_str(), a.decision.as_str(), a.reason_code), ("alice", "reject", 16));
        assert_eq!(a.time_ms, 1_767_600_000_000);
        assert_eq!(a.calling_station_id.as_deref(), Some("198.51.100.7"));
        // What Portcullis writes: the method comes back; a challenge stays a challenge.
        let mfa = "192.0.2.10,alice,01/05/2026,08:00:00,IAS,NPS1,4127,1,4136,3,4142,21";
        let Ok(Item::Auth(a)) = &read(mfa)[0] else { panic!() };
        assert_eq!((a.method.as_str(), a.decision.as_str(), a.reason_code), ("pap", "reject", 21));
        let challenge = "192.0.2.10,alice,01/05/2026,08:00:00,IAS,NPS1,4127,11,4136,11,4142,0";
        let items = read(challenge);
        assert!(
            items.iter().all(|i| matches!(i, Ok(Item::Auth(a)) if a.decision == "challenge")),
            "a challenge is not a decision: {items:?}"
        );
        let acct = "192.0.2.10,alice,01/05/2026,08:00:00,IAS,NPS1,40,1,44,s-9,31,198.51.100.7,4136,4,4142,0";
        let Ok(Item::Record(r)) = &read(acct)[0] else { panic!() };
        assert_eq!(r.status, 1);
        assert_eq!(r.session_id.as_deref(), Some("s-9"));
        let dts = "<Event><Timestamp data_type=\"4\">01/05/2026 08:00:00.000</Timestamp><Computer-Name data_type=\"1\">NPS1</Computer-Name><User-Name data_type=\"1\">a&amp;b</User-Name><Calling-Station-Id data_type=\"1\">198.51.100.7</Calling-Station-Id><Packet-Type data_type=\"0\">2</Packet-Type><Reason-Code data_type=\"0\">0</Reason-Code><Authentication-Type data_type=\"0\">5</Authentication-Type></Event>";
        let Ok(Item::Auth(a)) = &read(dts)[0] else { panic!() };
        assert_eq!((a.user_raw.as_str(), a.decision.as_str(), a.method.as_str()), ("a&b", "accept", "eap-mschapv2"));
        assert_eq!(a.nas, "NPS1");
    }

    #[test]
    fn json_lines_of_both_kinds() {
        let text = "{\"time\":1767600000,\"kind\":\"vpn_start\",\"user\":\"bob\",\"ip\":\"192.0.2.1\"}\n\n{\"time_ms\":1767600000000,\"user\":\"bob\",\"user_raw\":\"bob\",\"nas\":\"n\",\"client\":\"c\",\"calling_station_id\":null,\"method\":\"pap\",\"decision\":\"reject\",\"reason_code\":16,\"event_id\":6273,\"policy\":null,\"message\":\"\"}\n";
        let items = read(text);
        assert!(matches!(&items[0], Ok(Item::Event(e)) if e.user == "bob"));
        assert!(matches!(&items[1], Ok(Item::Auth(a)) if a.reason_code == 16));
    }

    #[test]
    fn bad_input_is_reported_with_its_line_and_reading_goes_on() {
        let long = "x".repeat(MAX_LINE + 10);
        let text = format!("{{\"time\": 1}}\nnot json\n{long}\n{{\"time\":5,\"kind\":\"vpn_stop\"}}\n");
        let items = read(&text);
        assert_eq!(items.len(), 4);
        assert!(matches!(&items[0], Err(e) if e.line == 1));
        assert!(matches!(&items[1], Err(e) if e.line == 2));
        assert!(matches!(&items[2], Err(e) if e.line == 3 && e.message.contains("longer")));
        assert!(matches!(&items[3], Ok(Item::Event(_))));
        for bad in [
            "<Event><A>1</Event>",
            "<Event><Timestamp>x</Timestamp></Event>",
            "1,2,3,4,5,6,7",
            "a,b,13/45/2026,99:00:00,IAS,x",
        ] {
            assert!(read(bad)[0].is_err(), "{bad}");
        }
        let midnight = civil(2026, 1, 5, (0, 0, 0)).unwrap();
        assert_eq!(midnight.assume_utc().unix_timestamp(), 1_767_571_200);
    }

    fn read_in(text: &str, zone: &str) -> Vec<Result<Item, ReadError>> {
        let dict = Dictionary::builtin();
        let zone = Zone::parse(zone).unwrap();
        Reader::new(text.as_bytes(), None, &dict, Vendor::default()).with_zone(zone).collect()
    }

    fn auth_time(item: &Result<Item, ReadError>) -> i64 {
        match item {
            Ok(Item::Auth(a)) => a.time_ms,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nps_files_are_read_in_their_zone_across_daylight_saving() {
        // Written in Europe/Berlin: 09:00 local is 08:00 UTC in winter, 07:00 in summer.
        let ias = "192.0.2.10,alice,01/05/2026,09:00:00,IAS,NPS1,4136,2\r\n\
                   192.0.2.10,alice,07/06/2026,09:00:00,IAS,NPS1,4136,2\r\n";
        let items = read_in(ias, "Europe/Berlin");
        assert_eq!(auth_time(&items[0]), 1_767_600_000_000, "2026-01-05T08:00:00Z");
        assert_eq!(auth_time(&items[1]), 1_783_321_200_000, "2026-07-06T07:00:00Z");
        // DTS keeps the milliseconds.
        let dts = "<Event><Timestamp data_type=\"4\">01/05/2026 09:00:00.250</Timestamp><Packet-Type data_type=\"0\">3</Packet-Type></Event>";
        assert_eq!(auth_time(&read_in(dts, "Europe/Berlin")[0]), 1_767_600_000_250);
        assert_eq!(auth_time(&read_in(dts, "+01:00")[0]), 1_767_600_000_250);
        // The hour that repeats in October: in file order, the second 02:10 is after 02:50.
        let fold = "x,bob,10/25/2026,02:50:00,IAS,N,4136,3\nx,bob,10/25/2026,02:10:00,IAS,N,4136,3\n";
        let items = read_in(fold, "Europe/Berlin");
        assert_eq!(auth_time(&items[0]), 1_792_889_400_000, "00:50 UTC");
        assert_eq!(auth_time(&items[1]), 1_792_890_600_000, "01:10 UTC");
        // The hour skipped in March never happened: reported with its line, not moved.
        let gap = "x,bob,03/29/2026,01:59:00,IAS,N,4136,3\nx,bob,03/29/2026,02:30:00,IAS,N,4136,3\n";
        let items = read_in(gap, "Europe/Berlin");
        assert!(items[0].is_ok());
        assert!(matches!(&items[1], Err(e) if e.line == 2 && e.message.contains("does not exist")), "{items:?}");
    }

    #[test]
    fn challenges_and_methods_come_back_from_nps_files() {
        let ias = "192.0.2.10,bob,01/05/2026,08:00:00,IAS,NPS1,4127,1,4136,11,4142,0\n\
                   192.0.2.10,bob,01/05/2026,08:00:05,IAS,NPS1,4127,11,4136,3,4142,21\n";
        let items = read(ias);
        let Ok(Item::Auth(c)) = &items[0] else { panic!("{items:?}") };
        assert_eq!((c.decision.as_str(), c.method.as_str(), c.event_id), ("challenge", "pap", 0));
        let Ok(Item::Auth(r)) = &items[1] else { panic!("{items:?}") };
        assert_eq!((r.decision.as_str(), r.method.as_str(), r.reason_code), ("reject", "peap", 21));
        let dts = "<Event><Timestamp data_type=\"4\">01/05/2026 08:00:00.000</Timestamp><Authentication-Type data_type=\"0\">4</Authentication-Type><Packet-Type data_type=\"0\">2</Packet-Type></Event>";
        let Ok(Item::Auth(a)) = &read(dts)[0] else { panic!() };
        assert_eq!(a.method, "mschapv2");
    }

    fn detail(event_timestamp: &str) -> String {
        format!(
            "Mon Jan  5 09:00:03 2026\n\tAcct-Status-Type = Start\n\tUser-Name = \"alice\"\n\tNAS-IP-Address = 192.0.2.10\n\
             \tAcct-Session-Id = \"s-1\"\n\tEvent-Timestamp = \"{event_timestamp}\"\n\tTimestamp = 1767600003\n\n"
        )
    }

    fn record_time(item: &Result<Item, ReadError>) -> i64 {
        match item {
            Ok(Item::Record(r)) => r.event_time,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn detail_dates_keep_the_zone_they_were_written_in() {
        // 2026-01-05 07:00:00 UTC, written four ways.
        for (stamp, zone) in [
            ("Jan  5 2026 07:00:00 UTC", "UTC"),
            ("Jan  5 2026 08:00:00 CET", "UTC"),
            ("Jan  5 2026 08:00:00 +0100", "UTC"),
            ("Jan  5 2026 02:00:00 EST", "Europe/Berlin"),
            ("Jan  5 2026 01:00:00 CST", "America/Chicago"),
            ("Jan  5 2026 08:00:00", "Europe/Berlin"),
        ] {
            assert_eq!(record_time(&read_in(&detail(stamp), zone)[0]), 1_767_596_400, "{stamp} in {zone}");
        }
        // In summer the same zone writes CEST.
        let summer = detail("Jul  6 2026 09:00:00 CEST");
        assert_eq!(record_time(&read(&summer)[0]), 1_783_321_200);
    }

    #[test]
    fn an_unreadable_event_time_is_an_error_at_its_line_not_the_arrival_time() {
        for stamp in ["Jan  5 2026 08:00:00 CST", "Jan  5 2026 08:00:00 XYZ", "yesterday", "Jan 32 2026 08:00:00 UTC"] {
            let items = read(&detail(stamp));
            assert_eq!(items.len(), 1);
            assert!(
                matches!(&items[0], Err(e) if e.line == 6 && e.message.contains("Event-Timestamp")),
                "{stamp}: {items:?}"
            );
        }
        let bad_arrival = detail("Jan  5 2026 07:00:00 UTC").replace("1767600003", "soon");
        assert!(matches!(&read(&bad_arrival)[0], Err(e) if e.line == 7), "{:?}", read(&bad_arrival));
    }
}
