//! `/metrics` on the `[http]` listener: the Prometheus text format (0.0.4) of the
//! per-client counters, the accounting and authentication totals, the journal backlog,
//! open sessions, open alerts by kind and every export sink's counters. Client labels
//! are configured names (unknown sources are one `unknown` label), never user names or
//! addresses. Scrapes come from loopback, or carry the configured bearer token.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_storage::{Counter, JournalReader, Store};

use crate::clients::{ClientTable, Reason};
use crate::live::Live;

/// What a scrape reads.
pub struct Metrics {
    clients: Arc<Live<ClientTable>>,
    export: Option<Arc<portcullis_export::Exporter>>,
    store: Mutex<Box<dyn Store>>,
    journal: JournalReader,
    token: Option<String>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("token", &self.token.as_ref().map(|_| "redacted")).finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(
        clients: Arc<Live<ClientTable>>,
        export: Option<Arc<portcullis_export::Exporter>>,
        store: Box<dyn Store>,
        journal: JournalReader,
        token: Option<String>,
    ) -> Self {
        Self { clients, export, store: Mutex::new(store), journal, token }
    }

    /// Reads the token file: one line of at least 16 characters.
    pub fn read_token(path: &std::path::Path) -> Result<String, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("metrics.token_file {}: {e}", path.display()))?;
        let token = text.trim();
        if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("metrics.token_file {}: one token of at least 16 characters", path.display()));
        }
        Ok(token.to_string())
    }

    /// With a token, only a request carrying it; without one, only loopback peers.
    fn allowed(&self, peer: SocketAddr, headers: &HeaderMap) -> bool {
        use subtle::ConstantTimeEq as _;
        match &self.token {
            Some(token) => headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes()))),
            None => match peer.ip() {
                std::net::IpAddr::V4(a) => a.is_loopback(),
                std::net::IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
            },
        }
    }

    fn snapshot(&self) -> Snapshot {
        let store = crate::lock(&self.store);
        let applied = store.applied_position().ok();
        let summary = store.summary(crate::now_ms()).ok();
        Snapshot {
            counters: self.clients.load().snapshot(),
            journal_pending_bytes: applied.and_then(|p| self.journal.pending(p).ok()),
            open_sessions: summary.map(|s| s.open_sessions),
            open_alerts: store.open_alerts_by_kind().unwrap_or_default(),
            sinks: self.export.as_ref().map(|e| e.stats()).unwrap_or_default(),
        }
    }
}

/// `GET /metrics`.
pub fn router(metrics: Arc<Metrics>) -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(scrape)).with_state(metrics)
}

async fn scrape(
    State(metrics): State<Arc<Metrics>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !metrics.allowed(peer, &headers) {
        return (StatusCode::FORBIDDEN, "metrics are served to loopback or with the configured token\n")
            .into_response();
    }
    let Ok(snapshot) = tokio::task::spawn_blocking(move || metrics.snapshot()).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&snapshot)).into_response()
}

/// What one scrape shows.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub counters: Vec<Counter>,
    pub journal_pending_bytes: Option<u64>,
    pub open_sessions: Option<u64>,
    pub open_alerts: Vec<(String, u64)>,
    pub sinks: Vec<portcullis_export::SinkStats>,
}

/// A label value with `\`, `"` and line feeds escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The exposition text.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    family(&mut out, "portcullis_build_info", "gauge", "Version of the running server.");
    let _ = writeln!(out, "portcullis_build_info{{version=\"{}\"}} 1", label(env!("CARGO_PKG_VERSION")));

    // Per client and reason; every unknown source counts under one label.
    let mut per: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for c in &s.counters {
        let client = if c.client.starts_with("unknown:") { "unknown".to_string() } else { c.client.clone() };
        *per.entry((client, c.reason.clone())).or_default() += c.count;
    }
    family(
        &mut out,
        "portcullis_radius_packets_total",
        "counter",
        "RADIUS datagrams by client and what became of them (received, acknowledged, access_accept, bad_authenticator, queue_full, ...).",
    );
    for ((client, reason), n) in &per {
        let _ = writeln!(
            out,
            "portcullis_radius_packets_total{{client=\"{}\",reason=\"{}\"}} {n}",
            label(client),
            label(reason)
        );
    }
    let total = |reason: Reason| per.iter().filter(|((_, r), _)| r == reason.name()).map(|(_, n)| n).sum::<u64>();
    family(
        &mut out,
        "portcullis_accounting_acknowledged_total",
        "counter",
        "Accounting-Requests durably recorded and answered, all clients.",
    );
    let _ = writeln!(out, "portcullis_accounting_acknowledged_total {}", total(Reason::Acknowledged));
    family(&mut out, "portcullis_access_decisions_total", "counter", "Access-Request answers by code, all clients.");
    for (decision, reason) in
        [("accept", Reason::AccessAccept), ("reject", Reason::AccessReject), ("challenge", Reason::AccessChallenge)]
    {
        let _ = writeln!(out, "portcullis_access_decisions_total{{decision=\"{decision}\"}} {}", total(reason));
    }
    if let Some(n) = s.journal_pending_bytes {
        family(&mut out, "portcullis_journal_pending_bytes", "gauge", "Journal bytes not yet applied to the store.");
        let _ = writeln!(out, "portcullis_journal_pending_bytes {n}");
    }
    if let Some(n) = s.open_sessions {
        family(&mut out, "portcullis_sessions_open", "gauge", "VPN sessions open in the store.");
        let _ = writeln!(out, "portcullis_sessions_open {n}");
    }
    family(&mut out, "portcullis_alerts_open", "gauge", "Open alerts by detection.");
    for kind in portcullis_detect::AlertKind::ALL {
        let n = s.open_alerts.iter().find(|(k, _)| k == kind.name()).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "portcullis_alerts_open{{kind=\"{}\"}} {n}", kind.name());
    }
    if !s.sinks.is_empty() {
        family(
            &mut out,
            "portcullis_export_events_total",
            "counter",
            "Events per export sink: sent, retried (sent again with the same id), dropped (authentication decisions), truncated.",
        );
        for k in &s.sinks {
            for (outcome, n) in
                [("sent", k.sent), ("retried", k.retried), ("dropped", k.dropped), ("truncated", k.truncated)]
            {
                let _ = writeln!(
                    out,
                    "portcullis_export_events_total{{sink=\"{}\",outcome=\"{outcome}\"}} {n}",
                    label(&k.name)
                );
            }
        }
        family(
            &mut out,
            "portcullis_export_lag_events",
            "gauge",
            "Alert changes recorded but not yet acknowledged by the sink's receiver.",
        );
        for k in &s.sinks {
            let _ = writeln!(out, "portcullis_export_lag_events{{sink=\"{}\"}} {}", label(&k.name), k.lag);
        }
        family(&mut out, "portcullis_export_up", "gauge", "1 when the sink's last attempt reached its receiver.");
        for k in &s.sinks {
            let _ = writeln!(out, "portcullis_export_up{{sink=\"{}\"}} {}", label(&k.name), u8::from(k.up));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_client_names_stay_inside_their_label_and_unknown_sources_are_one() {
        let s = Snapshot {
            counters: vec![
                Counter { client: "nas\"}\n1 evil".into(), reason: "received".into(), count: 3 },
                Counter { client: "unknown:192.0.2.1".into(), reason: "unknown_client".into(), count: 2 },
                Counter { client: "unknown:other".into(), reason: "unknown_client".into(), count: 5 },
                Counter { client: "vpn".into(), reason: "acknowledged".into(), count: 7 },
            ],
            open_alerts: vec![("brute_force".into(), 2)],
            ..Snapshot::default()
        };
        let text = render(&s);
        assert!(
            text.contains("portcullis_radius_packets_total{client=\"nas\\\"}\\n1 evil\",reason=\"received\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("portcullis_radius_packets_total{client=\"unknown\",reason=\"unknown_client\"} 7\n"));
        assert!(!text.contains("192.0.2.1"));
        assert!(text.contains("portcullis_accounting_acknowledged_total 7\n"));
        assert!(text.contains("portcullis_alerts_open{kind=\"brute_force\"} 2\n"));
        assert!(text.contains("portcullis_alerts_open{kind=\"impossible_travel\"} 0\n"));
        // Every sample line belongs to a family declared before it.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{line}");
            }
        }
    }
}
