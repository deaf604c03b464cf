//! OCSF 1.8.0 events: Detection Finding (class 2004) for alert changes, with the
//! lifecycle as activity and status, and Authentication (class 3002) for decisions.
//! Every attribute the schema requires for those classes is always present. Pure.

use serde_json::{Value, json};

use portcullis_detect::AlertKind;
use portcullis_storage::{AlertEvent, AuthEvent};

/// The schema version the events follow.
pub const SCHEMA_VERSION: &str = "1.8.0";

fn metadata(version: &str, uid: &str) -> Value {
    json!({
        "version": SCHEMA_VERSION,
        "uid": uid,
        "product": { "name": "Portcullis", "vendor_name": "Portcullis", "version": version },
    })
}

/// OCSF severity_id: Low 2, Medium 3, High 4.
fn severity_id(severity: &str) -> u8 {
    match severity {
        "high" => 4,
        "medium" => 3,
        _ => 2,
    }
}

fn ms_of(rfc3339: &str) -> Option<i64> {
    rfc3339.parse::<jiff::Timestamp>().ok().map(jiff::Timestamp::as_millisecond)
}

/// A Detection Finding for one alert change. `activity_id` is 1 Create for a new
/// alert, 3 Close when the change left it resolved or closed, else 2 Update;
/// `status_id` is 1 New (open), 4 Resolved, or 3 Suppressed (closed as a false
/// positive).
pub fn detection_finding(event: &AlertEvent, version: &str, portal_url: Option<&str>) -> Value {
    let a = &event.alert;
    let activity_id: u8 = match (event.trigger.as_str(), a.status.as_str()) {
        ("new", _) => 1,
        (_, "resolved" | "closed") => 3,
        _ => 2,
    };
    let (status_id, status) = match (a.status.as_str(), a.classification.as_deref()) {
        ("open", _) => (1, "New"),
        ("closed", Some("false-positive")) => (3, "Suppressed"),
        _ => (4, "Resolved"),
    };
    let title = AlertKind::from_name(&a.kind).map_or(a.kind.as_str(), |k| k.title());
    let mut finding = json!({
        "uid": a.id.to_string(),
        "title": title,
        "desc": a.message,
        "types": [a.kind],
        "created_time": ms_of(&a.created_at),
        "modified_time": ms_of(&a.updated_at),
        "first_seen_time": ms_of(&a.event_time),
        "last_seen_time": ms_of(&a.last_event_time),
        "attacks": [{ "technique": { "uid": a.mitre } }],
    });
    if let Some(base) = portal_url {
        finding["src_url"] = json!(format!("{base}/alerts/{}", a.id));
    }
    let mut evidence = json!({ "actor": { "user": { "name": a.user } } });
    if let Some(ip) = &a.ip {
        evidence["src_endpoint"] = json!({ "ip": ip });
    }
    json!({
        "category_uid": 2,
        "class_uid": 2004,
        "activity_id": activity_id,
        "type_uid": 200_400 + u32::from(activity_id),
        "severity_id": severity_id(&a.severity),
        "time": event.time_ms,
        "status_id": status_id,
        "status": status,
        "count": a.count,
        "message": a.message,
        "metadata": metadata(version, &crate::cef::alert_event_id(event.seq)),
        "finding_info": finding,
        "evidences": [evidence],
        "unmapped": { "trigger": event.trigger, "classification": a.classification, "evidence": a.evidence },
    })
}

/// An Authentication event (activity 1 Logon) for one decision: `status_id` 1 Success
/// for an Access-Accept, 2 Failure for a reject, 99 Other for a challenge.
pub fn authentication(e: &AuthEvent, version: &str) -> Value {
    let (status_id, status) = match e.decision.as_str() {
        "accept" => (1, "Success"),
        "challenge" => (99, "Challenge"),
        _ => (2, "Failure"),
    };
    let mut event = json!({
        "category_uid": 3,
        "class_uid": 3002,
        "activity_id": 1,
        "type_uid": 300_201,
        "severity_id": if status_id == 2 { 2 } else { 1 },
        "time": e.time_ms,
        "status_id": status_id,
        "status": status,
        "status_code": e.reason_code.to_string(),
        "status_detail": e.message,
        "auth_protocol_id": 10,
        "auth_protocol": "RADIUS",
        "is_mfa": e.mfa.is_some(),
        "is_remote": true,
        "user": { "name": e.user },
        "service": { "name": "RADIUS" },
        "dst_endpoint": { "hostname": e.nas },
        "metadata": metadata(version, &crate::cef::auth_event_id(e)),
        "unmapped": { "method": e.method, "client": e.client, "policy": e.policy, "mfa": e.mfa,
                      "user_raw": e.user_raw, "calling_station_id": e.calling_station_id },
    });
    if let Some(ip) = e.calling_station_id.as_deref().and_then(|c| c.parse::<std::net::IpAddr>().ok()) {
        event["src_endpoint"] = json!({ "ip": ip.to_string() });
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attributes OCSF 1.8.0 requires of every class, with `extends` merged.
    const BASE: [&str; 7] = ["activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time", "type_uid"];

    fn required(v: &Value, extra: &[&str]) {
        for key in BASE.iter().chain(extra) {
            assert!(v.get(key).is_some_and(|x| !x.is_null()), "{key} missing in {v}");
        }
        assert!(v["metadata"]["product"].is_object() && v["metadata"]["version"] == SCHEMA_VERSION);
        let class = v["class_uid"].as_u64().unwrap();
        assert_eq!(v["type_uid"].as_u64().unwrap(), class * 100 + v["activity_id"].as_u64().unwrap());
        assert_eq!(class / 1000, v["category_uid"].as_u64().unwrap());
    }

    #[test]
    fn detection_finding_has_every_required_field_and_the_lifecycle() {
        let mut e = crate::cef::tests::sample("alice\r\n\"x\"", "m|=\\");
        let v = detection_finding(&e, "0.1.0", Some("https://p.example"));
        required(&v, &["finding_info"]);
        assert!(v["finding_info"]["uid"].is_string());
        assert_eq!((v["activity_id"].as_u64(), v["status_id"].as_u64()), (Some(1), Some(1)));
        assert_eq!(v["finding_info"]["first_seen_time"], 1_764_999_600_000_i64);
        assert_eq!(v["evidences"][0]["actor"]["user"]["name"], "alice\r\n\"x\"");
        // The JSON text escapes what it must: one line, reads back the same.
        let text = v.to_string();
        assert!(!text.contains('\n'));
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
        e.trigger = "update".into();
        e.alert.status = "closed".into();
        e.alert.classification = Some("false-positive".into());
        let closed = detection_finding(&e, "0.1.0", None);
        assert_eq!((closed["activity_id"].as_u64(), closed["status_id"].as_u64()), (Some(3), Some(3)));
        assert_eq!(closed["type_uid"], 200_403);
    }

    #[test]
    fn authentication_has_every_required_field() {
        let mut e = portcullis_storage::conformance::auth_event(1_000, "bob", "reject");
        e.calling_station_id = Some("198.51.100.4".into());
        let v = authentication(&e, "0.1.0");
        required(&v, &["user"]);
        assert!(v.get("service").is_some() || v.get("dst_endpoint").is_some());
        assert_eq!(v["status_id"], 2);
        assert_eq!(v["src_endpoint"]["ip"], "198.51.100.4");
        assert_eq!(v["metadata"]["uid"], crate::cef::auth_event_id(&e));
    }
}
