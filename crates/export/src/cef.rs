//! ArcSight Common Event Format: the header and extension keys of Microsoft Defender
//! for Identity's SIEM messages (severities 3/5/10, `cs2Label=trigger cs2=new|update`),
//! with the escaping the CEF standard defines (`\|` and `\\` in the header; `\=`, `\\`,
//! `\n`, `\r` in values; never `\:`). Pure functions: values in, text out.

use portcullis_detect::AlertKind;
use portcullis_storage::{AlertEvent, AuthEvent};

/// The vendor and product of the header.
const VENDOR: &str = "Portcullis";
const PRODUCT: &str = "Portcullis";

/// A CEF line and whether a value was cut to fit the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cef {
    pub text: String,
    pub truncated: bool,
}

/// Escapes a header field: backslash and pipe, line breaks and other control
/// characters become spaces (a header cannot carry them).
pub fn escape_header(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes an extension value: backslash, equals sign, CR and LF; other control
/// characters become spaces.
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// MDI's severities: Low 3, Medium 5, High 10.
pub fn severity(name: &str) -> u8 {
    match name {
        "high" => 10,
        "medium" => 5,
        _ => 3,
    }
}

/// `externalId`: the alert type's number. The suspicious VPN connection keeps MDI's
/// 2025, so rules written for it keep matching; the others are Portcullis' own, from
/// 9001.
pub fn external_id(kind: &str) -> u32 {
    match AlertKind::from_name(kind) {
        Some(AlertKind::SuspiciousVpnConnection) => 2025,
        Some(k) => 9000 + AlertKind::ALL.iter().position(|x| *x == k).map_or(0, |i| i as u32),
        None => 9999,
    }
}

/// The stable id of an alert change: the same on every retry and every read.
pub fn alert_event_id(seq: i64) -> String {
    format!("alert-{seq}")
}

/// The CEF line of one alert change, at most `budget` bytes: `msg` is cut first, then
/// the user and the address; the ids, trigger and header are never cut.
pub fn alert(event: &AlertEvent, version: &str, portal_url: Option<&str>, budget: usize) -> Cef {
    let a = &event.alert;
    let title = AlertKind::from_name(&a.kind).map_or(a.kind.as_str(), |k| k.title());
    let header = format!(
        "CEF:0|{VENDOR}|{PRODUCT}|{}|{}|{}|{}|",
        escape_header(version),
        escape_header(&a.kind),
        escape_header(title),
        severity(&a.severity)
    );
    let mut pairs: Vec<(&str, String)> = vec![
        ("start", a.event_time.clone()),
        ("rt", event.time_ms.to_string()),
        ("app", "VpnConnection".into()),
        ("suser", a.user.clone()),
    ];
    if let Some(ip) = &a.ip {
        pairs.push(("src", ip.clone()));
    }
    pairs.extend([
        ("msg", a.message.clone()),
        ("cnt", a.count.to_string()),
        ("externalId", external_id(&a.kind).to_string()),
    ]);
    if let Some(base) = portal_url {
        pairs.extend([("cs1Label", "url".into()), ("cs1", format!("{base}/alerts/{}", a.id))]);
    }
    pairs.extend([
        ("cs2Label", "trigger".into()),
        ("cs2", event.trigger.clone()),
        ("cs4Label", "alertId".into()),
        ("cs4", a.id.to_string()),
        ("cs5Label", "eventId".into()),
        ("cs5", alert_event_id(event.seq)),
        ("cs6Label", "status".into()),
        ("cs6", a.status.clone()),
    ]);
    fit(header, pairs, &["msg", "suser", "src", "cs1"], budget)
}

/// The stable id of an authentication event: a digest of what identifies it, so a
/// retry carries the same id.
pub fn auth_event_id(e: &AuthEvent) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [&e.time_ms.to_string(), &e.user_raw, &e.nas, &e.client, &e.decision, &e.message] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(e.calling_station_id.as_deref().unwrap_or("").as_bytes());
    let d = h.finalize();
    format!("auth-{}", d[..12].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The CEF line of one authentication decision (severity 1 when granted or
/// challenged, 3 when refused).
pub fn auth(e: &AuthEvent, version: &str, budget: usize) -> Cef {
    let (name, sev, outcome) = match e.decision.as_str() {
        "accept" => ("RADIUS Access-Accept", 1, "success"),
        "challenge" => ("RADIUS Access-Challenge", 1, "challenge"),
        _ => ("RADIUS Access-Reject", 3, "failure"),
    };
    let header = format!(
        "CEF:0|{VENDOR}|{PRODUCT}|{}|auth_{}|{name}|{sev}|",
        escape_header(version),
        escape_header(&e.decision)
    );
    let mut pairs: Vec<(&str, String)> = vec![
        ("rt", e.time_ms.to_string()),
        ("app", "RADIUS".into()),
        ("suser", e.user.clone()),
        ("dvchost", e.nas.clone()),
        ("outcome", outcome.into()),
        ("reason", e.message.clone()),
        ("cn1Label", "reasonCode".into()),
        ("cn1", e.reason_code.to_string()),
        ("cs3Label", "callingStationId".into()),
        ("cs3", e.calling_station_id.clone().unwrap_or_default()),
        ("cs5Label", "eventId".into()),
        ("cs5", auth_event_id(e)),
        ("cs6Label", "method".into()),
        ("cs6", e.method.clone()),
    ];
    if let Some(p) = &e.policy {
        pairs.extend([("cs4Label", "policy".into()), ("cs4", p.clone())]);
    }
    fit(header, pairs, &["reason", "suser", "cs3", "cs4", "dvchost"], budget)
}

/// Joins header and escaped pairs; while the line is longer than `budget`, cuts the
/// values named in `cut` (in that order) from their end. A header alone longer than
/// the budget is cut at a character boundary that does not split an escape.
fn fit(header: String, mut pairs: Vec<(&str, String)>, cut: &[&str], budget: usize) -> Cef {
    let render = |pairs: &[(&str, String)]| {
        let mut s = header.clone();
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(k);
            s.push('=');
            s.push_str(&escape_value(v));
        }
        s
    };
    let mut text = render(&pairs);
    if text.len() <= budget {
        return Cef { text, truncated: false };
    }
    for key in cut {
        let Some(i) = pairs.iter().position(|(k, _)| k == key) else { continue };
        let over = text.len() - budget;
        let value = &mut pairs[i].1;
        // Drop characters from the end until their escaped length covers the excess.
        let mut freed = 0;
        while freed < over {
            let Some(c) = value.pop() else { break };
            freed += escape_value(c.encode_utf8(&mut [0; 4])).len();
        }
        text = render(&pairs);
        if text.len() <= budget {
            return Cef { text, truncated: true };
        }
    }
    let mut end = budget.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    // An odd run of trailing backslashes is half an escape.
    if text.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1 {
        text.pop();
    }
    Cef { text, truncated: true }
}

/// A CEF line read back: the seven header fields (unescaped) and the extension's
/// pairs (unescaped), in order. For receivers and tests; `None` when the line has fewer
/// than seven header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub header: Vec<String>,
    pub pairs: Vec<(String, String)>,
}

impl Read {
    /// The first value of `key`, `""` when absent.
    pub fn field(&self, key: &str) -> &str {
        self.pairs.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
    }
}

/// Reads a CEF line strictly: `\\` and `\|` in the header; in the extension a value runs
/// to the space before the next `key=` (a key is ASCII letters and digits), with `\=`,
/// `\\`, `\n` and `\r` undone.
pub fn read(text: &str) -> Option<Read> {
    let mut header = vec![String::new()];
    let mut escaped = false;
    let mut ext = None;
    for (i, c) in text.char_indices() {
        let field = header.last_mut()?;
        if escaped {
            field.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '|' {
            if header.len() == 7 {
                ext = Some(&text[i + 1..]);
                break;
            }
            header.push(String::new());
        } else {
            field.push(c);
        }
    }
    let ext = ext?;
    let mut pairs = Vec::new();
    if ext.is_empty() {
        return Some(Read { header, pairs });
    }
    let mut key = String::new();
    let mut value = String::new();
    let mut in_value = false;
    let mut rest = ext;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        if !in_value {
            if c == '=' {
                in_value = true;
            } else {
                key.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                if let Some(o) = rest.chars().next() {
                    rest = &rest[o.len_utf8()..];
                    value.push(match o {
                        'n' => '\n',
                        'r' => '\r',
                        o => o,
                    });
                }
            }
            ' ' if starts_with_key(rest) => {
                pairs.push((std::mem::take(&mut key), std::mem::take(&mut value)));
                in_value = false;
            }
            o => value.push(o),
        }
    }
    pairs.push((key, value));
    Some(Read { header, pairs })
}

/// Whether `s` starts with `key=`.
fn starts_with_key(s: &str) -> bool {
    let key = s.bytes().take_while(u8::is_ascii_alphanumeric).count();
    key > 0 && s.as_bytes().get(key) == Some(&b'=')
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use portcullis_storage::Alert;

    pub(crate) fn sample(user: &str, message: &str) -> AlertEvent {
        AlertEvent {
            seq: 7,
            trigger: "new".into(),
            time_ms: 1_765_000_000_123,
            alert: Alert {
                id: 3,
                kind: "suspicious_vpn_connection".into(),
                severity: "medium".into(),
                user: user.into(),
                created_at: "2025-12-06T05:46:40Z".into(),
                updated_at: "2025-12-06T05:46:40Z".into(),
                event_time: "2025-12-06T05:40:00Z".into(),
                last_event_time: "2025-12-06T05:40:00Z".into(),
                status: "open".into(),
                classification: None,
                message: message.into(),
                evidence: serde_json::json!({}),
                count: 1,
                mitre: "T1133".into(),
                ip: Some("203.0.113.7".into()),
                comments: Vec::new(),
            },
        }
    }

    fn reread(text: &str) -> Read {
        read(text).unwrap_or_else(|| panic!("not a CEF line: {text}"))
    }

    #[test]
    fn mdi_keys_severity_and_trigger() {
        let cef = alert(&sample("alice@corp.example", "alice connected"), "0.1.0", Some("https://p.example"), 4096);
        assert!(!cef.truncated);
        assert!(
            cef.text.starts_with(
                "CEF:0|Portcullis|Portcullis|0.1.0|suspicious_vpn_connection|Suspicious VPN connection|5|start="
            ),
            "{}",
            cef.text
        );
        let r = reread(&cef.text);
        assert_eq!(r.field("suser"), "alice@corp.example");
        assert_eq!(r.field("externalId"), "2025");
        assert_eq!(r.field("cs1"), "https://p.example/alerts/3");
        assert_eq!(r.field("cs2"), "new");
        assert_eq!(r.field("cs5"), "alert-7");
        assert!(!cef.text.contains("\\:"));
    }

    #[test]
    fn hostile_names_round_trip_through_a_strict_reader() {
        let user = "ev|il\\user=x\r\nCEF:0|forged";
        let message = "line one\nmsg=forged cs2=update \u{7f}ünïcødé 名前";
        let cef = alert(&sample(user, message), "0.1|0", None, 4096);
        assert!(!cef.text.contains(['\r', '\n', '\u{7f}']), "{}", cef.text);
        let r = reread(&cef.text);
        assert_eq!(r.header[3], "0.1|0");
        assert_eq!(r.header[6], "5");
        assert_eq!(r.field("suser"), user);
        assert_eq!(r.field("msg"), "line one\nmsg=forged cs2=update  ünïcødé 名前");
        assert_eq!(r.field("cs2"), "new");
        assert_eq!(r.pairs.iter().filter(|(k, _)| k == "cs2").count(), 1);
    }

    #[test]
    fn long_fields_are_cut_to_the_budget_never_the_ids() {
        let long = "é".repeat(3000);
        let cef = alert(&sample(&long, &long), "0.1.0", None, 1024);
        assert!(cef.truncated);
        assert!(cef.text.len() <= 1024, "{}", cef.text.len());
        assert!(cef.text.ends_with("cs6Label=status cs6=open"), "{}", cef.text);
        let escapes = "\\".repeat(5000);
        let cef = alert(&sample("bob", &escapes), "0.1.0", None, 600);
        assert!(cef.text.len() <= 600);
        let r = reread(&cef.text);
        assert!(r.field("msg").chars().all(|c| c == '\\'));
        assert_eq!(r.field("cs5"), "alert-7");
        // A budget below the header still yields no half escape.
        let tiny = alert(&sample("bob", "m"), "0.1.0", None, 20);
        assert!(tiny.truncated && tiny.text.len() <= 20);
    }

    #[test]
    fn auth_decisions_carry_a_stable_id() {
        let e = portcullis_storage::conformance::auth_event(1_000, "mallory|=\\", "reject");
        let a = auth(&e, "0.1.0", 4096);
        assert!(a.text.contains("|auth_reject|RADIUS Access-Reject|3|"), "{}", a.text);
        assert!(a.text.contains("suser=mallory|\\=\\\\"), "{}", a.text);
        assert_eq!(auth_event_id(&e), auth_event_id(&e.clone()));
        assert!(a.text.contains(&auth_event_id(&e)));
    }

    #[test]
    fn severities_and_external_ids() {
        assert_eq!((severity("low"), severity("medium"), severity("high")), (3, 5, 10));
        assert_eq!(external_id("suspicious_vpn_connection"), 2025);
        assert_eq!(external_id("impossible_travel"), 9001);
        assert_eq!(external_id("nonsense"), 9999);
    }
}
