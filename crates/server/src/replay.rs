//! Readers of history files for `portcullis replay`: Portcullis JSON lines (detection
//! events or the authentication audit log), FreeRADIUS detail files, and NPS log files
//! in IAS (legacy) and DTS Compliant (XML) format. Every reader streams, bounds line
//! and record sizes, and reports a bad record with its line number instead of
//! stopping.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::IpAddr;

use portcullis_accounting::{AccountingRecord, Vendor, normalise};
use portcullis_detect::Event;
use portcullis_radius::{Code, Dictionary, Identifier, Packet, PacketBuilder, VerifiedRequest};
use portcullis_storage::AuthEvent;

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

/// Reads one file's items.
pub struct Reader<'a, R> {
    input: R,
    format: Option<Format>,
    dict: &'a Dictionary,
    vendor: Vendor,
    line: usize,
    buf: Vec<u8>,
    block: Vec<(usize, String)>,
    done: bool,
}

impl<'a, R: BufRead> Reader<'a, R> {
    /// `format`: `None` guesses from the first line. `vendor`: the vendor adapter for
    /// accounting records (detail and NPS files).
    pub fn new(input: R, format: Option<Format>, dict: &'a Dictionary, vendor: Vendor) -> Self {
        Self { input, format, dict, vendor, line: 0, buf: Vec::new(), block: Vec::new(), done: false }
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
        Some(detail_record(&block, self.dict, self.vendor))
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
                Format::Ias => ias_line(&line, self.dict, self.vendor),
                Format::Dts => dts_line(&line, self.dict, self.vendor),
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

fn civil_to_unix(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> Option<i64> {
    let n = |v: i64| u8::try_from(v).ok();
    let date =
        time::Date::from_calendar_date(i32::try_from(y).ok()?, time::Month::try_from(n(m)?).ok()?, n(d)?).ok()?;
    let time = time::Time::from_hms(n(hh)?, n(mm)?, n(ss)?).ok()?;
    Some(time::PrimitiveDateTime::new(date, time).assume_utc().unix_timestamp())
}

fn hms(t: &str) -> Option<(i64, i64, i64)> {
    let mut it = t.split('.').next()?.split(':').map(|x| x.parse::<i64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

/// FreeRADIUS writes dates as `"Jan  5 2026 08:00:00 UTC"`; only UTC is understood.
fn detail_date(v: &str) -> Option<i64> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    if parts.len() != 5 || !matches!(parts[4], "UTC" | "GMT") {
        return None;
    }
    let m = MONTHS.iter().position(|x| *x == parts[0])? as i64 + 1;
    let (hh, mm, ss) = hms(parts[3])?;
    civil_to_unix(parts[2].parse().ok()?, m, parts[1].parse().ok()?, hh, mm, ss)
}

/// NPS dates `MM/DD/YYYY` and times `HH:MM:SS[.mmm]` (taken as UTC).
fn nps_date(date: &str, time: &str) -> Option<i64> {
    let mut d = date.split('/').map(|x| x.trim().parse::<i64>().ok());
    let (m, day, y) = (d.next()??, d.next()??, d.next()??);
    let (hh, mm, ss) = hms(time.trim())?;
    civil_to_unix(y, m, day, hh, mm, ss)
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
    match normalise(&request, source, vendor, arrival.saturating_mul(1000)) {
        Ok(r) => Ok(Some(r)),
        Err(e) => Err(format!("not a usable accounting record: {e}")),
    }
}

fn detail_record(block: &[(usize, String)], dict: &Dictionary, vendor: Vendor) -> Result<Option<Item>, ReadError> {
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
        match name {
            "Timestamp" => arrival = value.parse::<i64>().ok(),
            "Event-Timestamp" => event_time = value.parse::<i64>().ok().or_else(|| detail_date(&value)),
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

/// The fields NPS logs carry that matter here, by attribute number.
fn nps_item(
    number_values: &BTreeMap<u32, String>,
    time: i64,
    computer: &str,
    dict: &Dictionary,
    vendor: Vendor,
) -> Result<Option<Item>, String> {
    let packet_type: u32 = number_values.get(&4136).and_then(|v| v.parse().ok()).unwrap_or(0);
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
        // Access-Accept / Access-Reject: an authentication decision.
        2 | 3 => {
            let accepted = packet_type == 2;
            let raw = get(1).or_else(|| get(4129)).unwrap_or_default();
            let reason_code = get(4142).and_then(|v| v.parse().ok()).unwrap_or(if accepted { 0 } else { 16 });
            Ok(Some(Item::Auth(Box::new(AuthEvent {
                time_ms: time.saturating_mul(1000),
                user: portcullis_accounting::canonical_user(&raw),
                user_raw: raw,
                nas: get(32).or_else(|| get(4)).unwrap_or_else(|| computer.to_owned()),
                client: get(4128).unwrap_or_default(),
                calling_station_id: get(31),
                method: get(4127)
                    .and_then(|v| v.parse().ok())
                    .and_then(crate::npslog::method_of_authentication_type)
                    .unwrap_or_default()
                    .to_owned(),
                decision: if accepted { "accept" } else { "reject" }.into(),
                reason_code,
                event_id: if accepted { 6272 } else { 6273 },
                policy: get(4149),
                message: String::new(),
                connection_request_policy: get(4154),
                mfa: None,
                location: None,
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
pub fn ias_line(line: &str, dict: &Dictionary, vendor: Vendor) -> Result<Option<Item>, String> {
    let fields: Vec<&str> = line.split(',').collect();
    if fields.len() < 6 || fields.len() > 6 + 2 * MAX_ATTRIBUTES {
        return Err("not an IAS log line (expected NAS,user,date,time,service,computer,id,value,...)".into());
    }
    let time =
        nps_date(fields[2], fields[3]).ok_or_else(|| format!("bad date/time {:?} {:?}", fields[2], fields[3]))?;
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
pub fn dts_line(line: &str, dict: &Dictionary, vendor: Vendor) -> Result<Option<Item>, String> {
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
    let time = nps_date(date, time).ok_or_else(|| format!("bad Timestamp {stamp:?}"))?;
    let mut values = BTreeMap::new();
    for (name, value) in &elements {
        let number = match *name {
            "Packet-Type" => Some(4136),
            "Reason-Code" => Some(4142),
            "Authentication-Type" => Some(4127),
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
        // What Portcullis writes: the method comes back; a challenge is not a decision.
        let mfa = "192.0.2.10,alice,01/05/2026,08:00:00,IAS,NPS1,4127,1,4136,3,4142,21";
        let Ok(Item::Auth(a)) = &read(mfa)[0] else { panic!() };
        assert_eq!((a.method.as_str(), a.decision.as_str(), a.reason_code), ("pap", "reject", 21));
        let challenge = "192.0.2.10,alice,01/05/2026,08:00:00,IAS,NPS1,4127,11,4136,11,4142,0";
        assert!(read(challenge).is_empty(), "an Access-Challenge is not replayed as a decision");
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
        assert_eq!(civil_to_unix(2026, 1, 5, 0, 0, 0), Some(1_767_571_200));
        assert_eq!(detail_date("Jan  5 2026 08:00:00 CET"), None);
    }
}
