//! NPS-format log files of authentication decisions, so tools written for Microsoft NPS
//! logs keep working: "IAS (Legacy)" attribute-value lines, "ODBC (Legacy)" fixed
//! sequence lines (the database-compatible format) and "DTS Compliant" XML events.
//!
//! Each decision is logged as NPS logs it: one record for the Access-Request and one
//! for the Access-Accept or Access-Reject. Passwords, EAP data, State and vendor
//! attributes (MS-CHAP) are never written.

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use portcullis_radius::{Packet, attr};
use portcullis_storage::FileMode;
use serde::Deserialize;

use crate::logtext::escape_controls;

/// Which NPS log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NpsFormat {
    /// IAS (Legacy): header, then attribute-value pairs.
    Ias,
    /// ODBC (Legacy), the database-compatible format: 60 fields in a fixed order.
    Odbc,
    /// DTS Compliant: one XML `<Event>` per line.
    Dts,
}

/// When a new file is started (NPS names files `IN<yymmdd>.log`, `IN<yymm>.log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NpsPeriod {
    #[default]
    Daily,
    Monthly,
    Never,
}

/// `[nps_log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpsLogConfig {
    pub format: NpsFormat,
    /// Directory of the log files (default: `<data_dir>/nps`).
    #[serde(default)]
    pub directory: Option<PathBuf>,
    #[serde(default)]
    pub period: NpsPeriod,
    /// Computer-Name in the records (default: the host name).
    #[serde(default)]
    pub computer_name: Option<String>,
}

/// Packet-Type of an Access-Request record.
pub const ACCESS_REQUEST: u8 = 1;
/// Packet-Type of an Access-Accept record.
pub const ACCESS_ACCEPT: u8 = 2;
/// Packet-Type of an Access-Reject record.
pub const ACCESS_REJECT: u8 = 3;
/// Packet-Type of an Access-Challenge record.
pub const ACCESS_CHALLENGE: u8 = 11;

/// One record: what NPS logs about a packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NpsRecord {
    /// Unix milliseconds.
    pub time_ms: i64,
    /// Seconds east of UTC for the record's date and time.
    pub offset_seconds: i32,
    pub computer: String,
    /// 1 Access-Request, 2 Access-Accept, 3 Access-Reject, 11 Access-Challenge.
    pub packet_type: u8,
    pub user_name: Option<String>,
    /// The account name after realm handling (NPS: Fully-Qualified-User-Name).
    pub account: Option<String>,
    pub called_station_id: Option<String>,
    pub calling_station_id: Option<String>,
    pub framed_ip: Option<Ipv4Addr>,
    pub nas_identifier: Option<String>,
    pub nas_ip: Option<Ipv4Addr>,
    pub nas_port: Option<u32>,
    pub client_ip: String,
    pub client_name: String,
    pub nas_port_type: Option<u32>,
    pub framed_protocol: Option<u32>,
    pub service_type: Option<u32>,
    /// 1 PAP, 2 CHAP, 4 MS-CHAPv2, 5 EAP, 11 PEAP.
    pub authentication_type: Option<u32>,
    pub policy: Option<String>,
    pub proxy_policy: Option<String>,
    pub reason_code: u32,
    pub class: Option<String>,
    pub session_timeout: Option<u32>,
    pub idle_timeout: Option<u32>,
    pub eap_friendly_name: Option<String>,
    pub tunnel_type: Option<u32>,
    pub tunnel_medium_type: Option<u32>,
    pub tunnel_client_endpoint: Option<String>,
}

/// NPS Authentication-Type of each Portcullis method name.
const AUTHENTICATION_TYPES: [(&str, u32); 5] =
    [("pap", 1), ("chap", 2), ("mschapv2", 4), ("eap-mschapv2", 5), ("peap", 11)];

/// NPS Authentication-Type for a Portcullis method name.
pub fn authentication_type(method: &str) -> Option<u32> {
    AUTHENTICATION_TYPES.iter().find(|(name, _)| *name == method).map(|(_, n)| *n)
}

/// The Portcullis method name of an NPS Authentication-Type (the inverse of
/// [`authentication_type`]).
pub fn method_name(authentication_type: u32) -> Option<&'static str> {
    AUTHENTICATION_TYPES.iter().find(|(_, n)| *n == authentication_type).map(|(name, _)| *name)
}

/// The Portcullis method name of an NPS Authentication-Type (the inverse of
/// `authentication_type`).
pub fn method_of_authentication_type(n: u32) -> Option<&'static str> {
    ["pap", "chap", "mschapv2", "eap-mschapv2", "peap"].into_iter().find(|m| authentication_type(m) == Some(n))
}

/// NPS Packet-Type of a response: Access-Accept 2, Access-Reject 3, Access-Challenge 11.
pub fn response_packet_type(decision: &str) -> u8 {
    match decision {
        "accept" => 2,
        "challenge" => 11,
        _ => 3,
    }
}

/// NPS Reason-Code 21: an extension DLL rejected the request. NPS logs it when its MFA
/// extension rejects, so a reject decided by the second factor carries it.
pub const REASON_EXTENSION_REJECTED: u32 = 21;

/// The request-side fields NPS takes from an Access-Request.
pub fn from_request(packet: &Packet<'_>, record: &mut NpsRecord) {
    let text = |t: u8| packet.attribute(t).map(|v| String::from_utf8_lossy(v).into_owned());
    let int = |t: u8| packet.attribute(t).and_then(|v| <[u8; 4]>::try_from(v).ok()).map(u32::from_be_bytes);
    // RFC 2868 tagged integers: the first octet is the tag.
    let tagged_int =
        |t: u8| packet.attribute(t).filter(|v| v.len() == 4).map(|v| u32::from_be_bytes([0, v[1], v[2], v[3]]));
    let ip = |t: u8| packet.attribute(t).and_then(|v| <[u8; 4]>::try_from(v).ok()).map(Ipv4Addr::from);
    record.user_name = text(attr::USER_NAME);
    record.called_station_id = text(attr::CALLED_STATION_ID);
    record.calling_station_id = text(attr::CALLING_STATION_ID);
    record.framed_ip = ip(attr::FRAMED_IP_ADDRESS);
    record.nas_identifier = text(attr::NAS_IDENTIFIER);
    record.nas_ip = ip(attr::NAS_IP_ADDRESS);
    record.nas_port = int(attr::NAS_PORT);
    record.nas_port_type = int(attr::NAS_PORT_TYPE);
    record.framed_protocol = int(attr::FRAMED_PROTOCOL);
    record.service_type = int(attr::SERVICE_TYPE);
    record.tunnel_type = tagged_int(attr::TUNNEL_TYPE);
    record.tunnel_medium_type = tagged_int(attr::TUNNEL_MEDIUM_TYPE);
    record.tunnel_client_endpoint = packet.attribute(attr::TUNNEL_CLIENT_ENDPOINT).map(|v| {
        let v = if v.first().is_some_and(|t| *t < 0x20) { &v[1..] } else { v };
        String::from_utf8_lossy(v).into_owned()
    });
}

fn date_time(r: &NpsRecord) -> (String, String) {
    let t = time::OffsetDateTime::from_unix_timestamp(r.time_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let t = t.to_offset(time::UtcOffset::from_whole_seconds(r.offset_seconds).unwrap_or(time::UtcOffset::UTC));
    (
        format!("{:02}/{:02}/{:04}", u8::from(t.month()), t.day(), t.year()),
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
    )
}

/// IAS: strings with delimiters or unprintable characters are written in hex.
fn ias_text(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b',') {
        s.to_string()
    } else {
        let mut out = String::from("0x");
        for b in s.bytes() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

/// One IAS (Legacy) line.
pub fn ias_line(r: &NpsRecord) -> String {
    let (date, time) = date_time(r);
    let mut out = format!(
        "{},{},{date},{time},IAS,{}",
        r.nas_ip.map(|a| a.to_string()).unwrap_or_default(),
        ias_text(r.user_name.as_deref().unwrap_or("")),
        ias_text(&r.computer)
    );
    let mut pair = |id: u32, v: String| out.push_str(&format!(",{id},{v}"));
    let num = |v: Option<u32>| v.map(|n| n.to_string());
    let txt = |v: &Option<String>| v.as_deref().map(ias_text);
    for (id, v) in [
        (5, num(r.nas_port)),
        (6, num(r.service_type)),
        (7, num(r.framed_protocol)),
        (8, r.framed_ip.map(|a| a.to_string())),
        (25, txt(&r.class)),
        (27, num(r.session_timeout)),
        (28, num(r.idle_timeout)),
        (30, txt(&r.called_station_id)),
        (31, txt(&r.calling_station_id)),
        (32, txt(&r.nas_identifier)),
        (61, num(r.nas_port_type)),
        (64, num(r.tunnel_type)),
        (65, num(r.tunnel_medium_type)),
        (66, txt(&r.tunnel_client_endpoint)),
        (4108, Some(r.client_ip.clone())),
        (4116, Some("0".into())),
        (4127, num(r.authentication_type)),
        (4128, Some(ias_text(&r.client_name))),
        (4129, txt(&r.account)),
        (4149, txt(&r.policy)),
        (4154, txt(&r.proxy_policy)),
        (4136, Some(r.packet_type.to_string())),
        (4142, Some(r.reason_code.to_string())),
    ] {
        if let Some(v) = v {
            pair(id, v);
        }
    }
    out
}

/// ODBC text: always quoted; quotes doubled; control characters escaped (a quoted
/// field could hold a line break, but line-oriented readers of the file would not
/// see it as one field).
fn odbc_text(v: &Option<String>) -> String {
    v.as_deref().map_or(String::new(), |s| format!("\"{}\"", escape_controls(s).replace('"', "\"\"")))
}

/// One ODBC (Legacy) line: the 60 fields of the database-compatible format.
pub fn odbc_line(r: &NpsRecord) -> String {
    let (date, time) = date_time(r);
    let num = |v: Option<u32>| v.map(|n| n.to_string()).unwrap_or_default();
    let ip = |v: Option<Ipv4Addr>| v.map(|a| format!("\"{a}\"")).unwrap_or_default();
    let mut f: Vec<String> = vec![
        odbc_text(&Some(r.computer.clone())),    // 1 ComputerName
        "\"IAS\"".into(),                        // 2 ServiceName
        date,                                    // 3 Record-Date
        time,                                    // 4 Record-Time
        r.packet_type.to_string(),               // 5 Packet-Type
        odbc_text(&r.user_name),                 // 6 User-Name
        odbc_text(&r.account),                   // 7 Fully-Qualified-Distinguished-Name
        odbc_text(&r.called_station_id),         // 8 Called-Station-ID
        odbc_text(&r.calling_station_id),        // 9 Calling-Station-ID
        String::new(),                           // 10 Callback-Number
        ip(r.framed_ip),                         // 11 Framed-IP-Address
        odbc_text(&r.nas_identifier),            // 12 NAS-Identifier
        ip(r.nas_ip),                            // 13 NAS-IP-Address
        num(r.nas_port),                         // 14 NAS-Port
        "0".into(),                              // 15 Client-Vendor (RADIUS standard)
        odbc_text(&Some(r.client_ip.clone())),   // 16 Client-IP-Address
        odbc_text(&Some(r.client_name.clone())), // 17 Client-Friendly-Name
        String::new(),                           // 18 Event-Timestamp
        String::new(),                           // 19 Port-Limit
        num(r.nas_port_type),                    // 20 NAS-Port-Type
        String::new(),                           // 21 Connect-Info
        num(r.framed_protocol),                  // 22 Framed-Protocol
        num(r.service_type),                     // 23 Service-Type
        num(r.authentication_type),              // 24 Authentication-Type
        odbc_text(&r.policy),                    // 25 Policy-Name
        r.reason_code.to_string(),               // 26 Reason-Code
        odbc_text(&r.class),                     // 27 Class
        num(r.session_timeout),                  // 28 Session-Timeout
        num(r.idle_timeout),                     // 29 Idle-Timeout
        String::new(),                           // 30 Termination-Action
        odbc_text(&r.eap_friendly_name),         // 31 EAP-Friendly-Name
    ];
    // 32..=44 accounting fields are empty in authentication records.
    f.resize(44, String::new());
    f.push(num(r.tunnel_type)); // 45 Tunnel-Type
    f.push(num(r.tunnel_medium_type)); // 46 Tunnel-Medium-Type
    f.push(odbc_text(&r.tunnel_client_endpoint)); // 47 Tunnel-Client-Endpt
    f.resize(60, String::new());
    f.join(",")
}

/// XML text: markup characters as entities; control characters escaped first (most
/// of them cannot appear in XML 1.0 at all, even as character references).
fn xml(s: &str) -> String {
    portcullis_geo::map::escape_markup(&escape_controls(s))
}

/// One DTS Compliant event (XML on one line). `data_type`: 0 integer, 1 string,
/// 3 IPv4 address, 4 time.
pub fn dts_line(r: &NpsRecord) -> String {
    let (date, time) = date_time(r);
    let millis = r.time_ms.rem_euclid(1000);
    let mut out = format!("<Event><Timestamp data_type=\"4\">{date} {time}.{millis:03}</Timestamp>");
    let mut element = |name: &str, data_type: u8, value: String| {
        out.push_str(&format!("<{name} data_type=\"{data_type}\">{}</{name}>", xml(&value)));
    };
    element("Computer-Name", 1, r.computer.clone());
    element("Event-Source", 1, "IAS".into());
    let mut text = |name: &str, v: &Option<String>| {
        if let Some(v) = v {
            element(name, 1, v.clone());
        }
    };
    text("User-Name", &r.user_name);
    text("Called-Station-Id", &r.called_station_id);
    text("Calling-Station-Id", &r.calling_station_id);
    text("NAS-Identifier", &r.nas_identifier);
    text("Tunnel-Client-Endpt", &r.tunnel_client_endpoint);
    text("Fully-Qualifed-User-Name", &r.account);
    text("Class", &r.class);
    text("NP-Policy-Name", &r.policy);
    text("Proxy-Policy-Name", &r.proxy_policy);
    text("EAP-Friendly-Name", &r.eap_friendly_name);
    for (name, v) in [("Framed-IP-Address", r.framed_ip), ("NAS-IP-Address", r.nas_ip)] {
        if let Some(a) = v {
            out.push_str(&format!("<{name} data_type=\"3\">{a}</{name}>"));
        }
    }
    for (name, v) in [
        ("NAS-Port", r.nas_port),
        ("NAS-Port-Type", r.nas_port_type),
        ("Framed-Protocol", r.framed_protocol),
        ("Service-Type", r.service_type),
        ("Tunnel-Type", r.tunnel_type),
        ("Tunnel-Medium-Type", r.tunnel_medium_type),
        ("Session-Timeout", r.session_timeout),
        ("Idle-Timeout", r.idle_timeout),
        ("Authentication-Type", r.authentication_type),
        ("Client-Vendor", Some(0)),
        ("Packet-Type", Some(u32::from(r.packet_type))),
        ("Reason-Code", Some(r.reason_code)),
    ] {
        if let Some(n) = v {
            out.push_str(&format!("<{name} data_type=\"0\">{n}</{name}>"));
        }
    }
    out.push_str(&format!(
        "<Client-IP-Address data_type=\"3\">{}</Client-IP-Address><Client-Friendly-Name data_type=\"1\">{}</Client-Friendly-Name></Event>",
        xml(&r.client_ip),
        xml(&r.client_name)
    ));
    out
}

/// The open log file, switched when the period turns over.
#[derive(Debug)]
pub struct NpsLog {
    format: NpsFormat,
    period: NpsPeriod,
    directory: PathBuf,
    computer: String,
    mode: FileMode,
    /// The open file: its name, handle and identity (device, inode) when opened.
    current: Option<(String, File, (u64, u64))>,
}

impl NpsLog {
    /// Creates the directory; files are opened on first use, in `mode`.
    pub fn open(config: &NpsLogConfig, data_dir: &std::path::Path, mode: FileMode) -> std::io::Result<Self> {
        let directory = config.directory.clone().unwrap_or_else(|| data_dir.join("nps"));
        mode.create_dir_all(&directory)?;
        let computer = config.computer_name.clone().unwrap_or_else(crate::hostname);
        Ok(Self { format: config.format, period: config.period, directory, computer, mode, current: None })
    }

    /// The Computer-Name written in records.
    pub fn computer(&self) -> &str {
        &self.computer
    }

    fn file_name(&self, r: &NpsRecord) -> String {
        let (date, _) = date_time(r);
        // date is MM/DD/YYYY
        let (mm, dd, yy) = (&date[0..2], &date[3..5], &date[8..10]);
        match self.period {
            NpsPeriod::Daily => format!("IN{yy}{mm}{dd}.log"),
            NpsPeriod::Monthly => format!("IN{yy}{mm}.log"),
            NpsPeriod::Never => "iaslog.log".into(),
        }
    }

    /// Appends the records as lines.
    pub fn write(&mut self, records: &[NpsRecord]) -> std::io::Result<()> {
        let Some(first) = records.first() else { return Ok(()) };
        let name = self.file_name(first);
        let path = self.directory.join(&name);
        // A file moved away (logrotate) or deleted is replaced by a new one, so that no
        // line goes into a file that is about to be compressed or removed.
        let on_disk = || std::fs::metadata(&path).ok().map(|m| crate::audit::identity(&m));
        if self.current.as_ref().is_none_or(|(n, _, id)| *n != name || on_disk() != Some(*id)) {
            let file = self.mode.open_append(&path)?;
            let id = crate::audit::identity(&file.metadata()?);
            self.current = Some((name, file, id));
        }
        let mut text = String::new();
        for r in records {
            text.push_str(&match self.format {
                NpsFormat::Ias => ias_line(r),
                NpsFormat::Odbc => odbc_line(r),
                NpsFormat::Dts => dts_line(r),
            });
            text.push_str("\r\n");
        }
        match &mut self.current {
            Some((_, f, _)) => f.write_all(text.as_bytes()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex;

    fn accept() -> NpsRecord {
        NpsRecord {
            time_ms: 1_204_895_073_000, // 2008-03-07 13:04:33 UTC
            computer: "CLIENTCOMP".into(),
            packet_type: 2,
            account: Some("npsclientdc/Users/client".into()),
            client_ip: "10.10.10.10".into(),
            client_name: "npsclient".into(),
            service_type: Some(2),
            authentication_type: Some(1),
            policy: Some("Allow access if dial-in permission is enabled".into()),
            class: Some("311 1 10.10.10.11 03/07/2008 20:04:30 1".into()),
            ..NpsRecord::default()
        }
    }

    #[test]
    fn a_file_moved_away_is_replaced_by_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            NpsLogConfig { format: NpsFormat::Ias, directory: None, period: NpsPeriod::Never, computer_name: None };
        let mut log = NpsLog::open(&config, dir.path(), FileMode::PRIVATE).unwrap();
        log.write(&[accept()]).unwrap();
        let file = dir.path().join("nps/iaslog.log");
        let moved = dir.path().join("nps/iaslog.log.1");
        std::fs::rename(&file, &moved).unwrap();
        log.write(&[accept(), accept()]).unwrap();
        let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
        assert_eq!((lines(&moved), lines(&file)), (1, 2));
    }

    #[test]
    fn odbc_matches_the_documented_access_accept_layout() {
        // Field positions of the database-compatible example entry (Client-Vendor 0 here).
        let line = odbc_line(&accept());
        assert_eq!(
            line,
            "\"CLIENTCOMP\",\"IAS\",03/07/2008,13:04:33,2,,\"npsclientdc/Users/client\",,,,,,,,0,\"10.10.10.10\",\"npsclient\",,,,,,2,1,\"Allow access if dial-in permission is enabled\",0,\"311 1 10.10.10.11 03/07/2008 20:04:30 1\",,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,"
        );
        assert_eq!(line.split(',').count(), 60);
    }

    #[test]
    fn ias_hexes_delimiters_and_dts_escapes_xml() {
        let mut r = accept();
        r.packet_type = 1;
        r.user_name = Some("EXAMPLE\\o'neil,x".into());
        r.nas_ip = Some(Ipv4Addr::new(192, 0, 2, 1));
        let ias = ias_line(&r);
        assert!(
            ias.starts_with("192.0.2.1,0x4558414d504c455c6f276e65696c2c78,03/07/2008,13:04:33,IAS,CLIENTCOMP,"),
            "{ias}"
        );
        assert!(ias.ends_with(",4136,1,4142,0"), "{ias}");
        r.user_name = Some("<a&b>".into());
        let dts = dts_line(&r);
        assert!(dts.contains("<User-Name data_type=\"1\">&lt;a&amp;b&gt;</User-Name>"), "{dts}");
        assert!(dts.contains("<Packet-Type data_type=\"0\">1</Packet-Type>"));
        assert!(dts.starts_with("<Event><Timestamp data_type=\"4\">03/07/2008 13:04:33.000</Timestamp>"));
    }

    #[test]
    fn no_format_lets_a_field_break_the_line() {
        let hostile = "alice\r\nFORGED,\"x\"<y>&'z'\t\u{0}\u{85}\u{2028}end";
        let mut r = accept();
        for field in [&mut r.user_name, &mut r.calling_station_id, &mut r.nas_identifier, &mut r.class, &mut r.policy] {
            *field = Some(hostile.into());
        }
        r.client_name = hostile.into();
        for line in [ias_line(&r), odbc_line(&r), dts_line(&r)] {
            assert!(!line.chars().any(|c| c.is_control() || c == '\u{2028}'), "{line:?}");
        }
        // IAS hexes the whole field.
        assert!(ias_line(&r).contains(&format!("0x{}", hex(hostile.as_bytes()))));
        // ODBC: one quoted field, quotes doubled, still 60 fields.
        let odbc = odbc_line(&r);
        assert!(odbc.contains(r#","alice\r\nFORGED,""x""<y>&'z'\t\u{0}\u{85}\u{2028}end","#), "{odbc}");
        // DTS: markup escaped after the controls.
        let dts = dts_line(&r);
        assert!(
            dts.contains(r#"<User-Name data_type="1">alice\r\nFORGED,&quot;x&quot;&lt;y&gt;&amp;&apos;z&apos;\t\u{0}\u{85}\u{2028}end</User-Name>"#),
            "{dts}"
        );
    }
}
