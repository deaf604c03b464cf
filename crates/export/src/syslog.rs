//! Syslog framing: RFC 5424 headers (structured data `-`, no BOM), RFC 3164 as the
//! legacy option, and RFC 6587 octet counting for TCP and TLS (RFC 5425). Pure.

use serde::Deserialize;

/// The header format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    #[default]
    Rfc5424,
    Rfc3164,
}

/// Syslog facilities by name.
const FACILITIES: [(&str, u8); 12] = [
    ("user", 1),
    ("daemon", 3),
    ("auth", 4),
    ("authpriv", 10),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// The facility number of a name, `None` for an unknown name.
pub fn facility(name: &str) -> Option<u8> {
    FACILITIES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Syslog severity of an alert severity: high → error (3), medium → warning (4),
/// low → notice (5).
pub fn alert_severity(severity: &str) -> u8 {
    match severity {
        "high" => 3,
        "medium" => 4,
        _ => 5,
    }
}

/// What the header says about the sender.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    pub facility: u8,
    pub severity: u8,
    pub time_ms: i64,
    pub hostname: &'a str,
    pub app: &'a str,
    pub procid: u32,
    /// RFC 5424 MSGID (cut to 32 characters).
    pub msgid: &'a str,
}

impl Header<'_> {
    fn pri(&self) -> u16 {
        u16::from(self.facility.min(23)) * 8 + u16::from(self.severity.min(7))
    }
}

/// A header field as RFC 5424 allows it: printable US-ASCII without spaces, at most
/// `max` characters, `-` when empty.
fn header_field(s: &str, max: usize) -> String {
    let out: String = s.chars().map(|c| if c.is_ascii_graphic() { c } else { '_' }).take(max).collect();
    if out.is_empty() { "-".into() } else { out }
}

/// The header, up to and including the space before MSG.
pub fn header(framing: Framing, h: &Header<'_>) -> String {
    match framing {
        Framing::Rfc5424 => format!(
            "<{}>1 {} {} {} {} {} - ",
            h.pri(),
            timestamp_5424(h.time_ms),
            header_field(h.hostname, 255),
            header_field(h.app, 48),
            h.procid,
            header_field(h.msgid, 32)
        ),
        Framing::Rfc3164 => {
            let tag: String = h.app.chars().filter(char::is_ascii_alphanumeric).take(32).collect();
            format!(
                "<{}>{} {} {}[{}]: ",
                h.pri(),
                timestamp_3164(h.time_ms),
                header_field(h.hostname, 255),
                if tag.is_empty() { "portcullis" } else { &tag },
                h.procid
            )
        }
    }
}

fn civil(time_ms: i64) -> jiff::civil::DateTime {
    jiff::Timestamp::from_millisecond(time_ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .datetime()
}

/// `2026-12-06T01:00:05.123Z`.
pub fn timestamp_5424(time_ms: i64) -> String {
    let d = civil(time_ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        d.year(),
        d.month(),
        d.day(),
        d.hour(),
        d.minute(),
        d.second(),
        d.subsec_nanosecond() / 1_000_000
    )
}

/// `Dec  6 01:00:05` (UTC: RFC 3164 has no zone).
pub fn timestamp_3164(time_ms: i64) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let d = civil(time_ms);
    let month = MONTHS.get(usize::try_from(d.month() - 1).unwrap_or(0)).unwrap_or(&"Jan");
    format!("{month} {:>2} {:02}:{:02}:{:02}", d.day(), d.hour(), d.minute(), d.second())
}

/// RFC 6587 octet counting: `LEN SP MSG`.
pub fn octet_counted(message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(hostname: &'a str, msgid: &'a str) -> Header<'a> {
        Header { facility: 4, severity: 4, time_ms: 1_765_000_005_123, hostname, app: "portcullis", procid: 42, msgid }
    }

    #[test]
    fn rfc5424_header_is_strict() {
        assert_eq!(
            header(Framing::Rfc5424, &h("vpn-radius-01", "suspicious_vpn_connection")),
            "<36>1 2025-12-06T05:46:45.123Z vpn-radius-01 portcullis 42 suspicious_vpn_connection - "
        );
        // Hostile or empty header values cannot add fields.
        let hostile = header(Framing::Rfc5424, &h("a b\r\nc", &"x".repeat(40)));
        assert_eq!(hostile, format!("<36>1 2025-12-06T05:46:45.123Z a_b__c portcullis 42 {} - ", "x".repeat(32)));
        assert!(header(Framing::Rfc5424, &h("", "")).contains(" - portcullis 42 - - "));
        let name = header(Framing::Rfc5424, &h("hôte", "m"));
        assert!(name.contains(" h_te "), "{name}");
    }

    #[test]
    fn rfc3164_header() {
        assert_eq!(header(Framing::Rfc3164, &h("vpn", "m")), "<36>Dec  6 05:46:45 vpn portcullis[42]: ");
        assert_eq!(timestamp_3164(0), "Jan  1 00:00:00");
    }

    #[test]
    fn octet_counting_counts_bytes_not_characters() {
        let mut out = Vec::new();
        octet_counted("é|x", &mut out);
        assert_eq!(out, "4 é|x".as_bytes());
    }

    #[test]
    fn facilities_and_severities() {
        assert_eq!(facility("local7"), Some(23));
        assert_eq!(facility("bogus"), None);
        assert_eq!((alert_severity("high"), alert_severity("medium"), alert_severity("low")), (3, 4, 5));
    }
}
