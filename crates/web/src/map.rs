//! The offline world map inside pages: the committed base map (Natural Earth countries,
//! compiled into the binary) with the markers and travel lines `portcullis_geo::map`
//! draws over it, as one inline `<svg>`. No tiles, no script, no other origin.
//!
//! This is the one place that hands askama markup it does not escape: the base map is
//! our own file, and every name in the overlay is XML-escaped by `portcullis_geo::map`.

use askama::filters::Safe;
use portcullis_geo::map::{Line, Marker, render_markers};
use portcullis_storage::ObservedLocation;

/// The base map: countries as titled paths, 960×467.
const WORLD: &str = include_str!("../assets/world.svg");

/// Markers drawn at most (the busiest places); the table lists every one.
pub(crate) const MAX_MARKERS: usize = 500;

/// A rendered map, inserted into a page as it is.
pub(crate) type MapSvg = Safe<String>;

/// A line between two places (lat, lon) with its accessible name.
pub(crate) struct Travel {
    pub from: (f64, f64),
    pub to: (f64, f64),
    pub label: String,
}

/// The map of `places` (those with coordinates), each marker linking to `href(place)`,
/// with `travel` lines; `label` names the map, `class` sizes it (`map`, `map small`).
pub(crate) fn render(
    places: &[ObservedLocation],
    href: impl Fn(&ObservedLocation) -> String,
    travel: &[Travel],
    label: &str,
    class: &str,
) -> MapSvg {
    let mut located: Vec<&ObservedLocation> =
        places.iter().filter(|p| p.latitude.is_some() && p.longitude.is_some()).collect();
    located.sort_by_key(|p| std::cmp::Reverse(p.count));
    located.truncate(MAX_MARKERS);
    let hrefs: Vec<String> = located.iter().map(|p| href(p)).collect();
    let markers: Vec<Marker<'_>> = located
        .iter()
        .zip(&hrefs)
        .map(|(p, href)| Marker {
            latitude: p.latitude.unwrap_or(f64::NAN),
            longitude: p.longitude.unwrap_or(f64::NAN),
            city: p.city.as_deref(),
            country: p.country.as_deref(),
            count: p.count,
            last_seen: p.last_ms.div_euclid(1000),
            href,
        })
        .collect();
    let lines: Vec<Line<'_>> =
        travel.iter().map(|t| Line { from: t.from, to: t.to, label: t.label.as_str() }).collect();
    Safe(svg(&render_markers(&markers, &lines), label, class))
}

/// The base map with `overlay` drawn over its countries. The base map's own root is
/// replaced: an inline map is a group of links, not one image, and HTML needs no
/// namespace (so the page names no other origin, not even as one).
fn svg(overlay: &str, label: &str, class: &str) -> String {
    let countries = WORLD.find("<path").and_then(|start| WORLD.rfind("</svg>").map(|end| &WORLD[start..end]));
    let (w, h) = (portcullis_geo::map::WIDTH, portcullis_geo::map::HEIGHT);
    format!(
        "<svg viewBox=\"0 0 {w} {h}\" class=\"{}\" role=\"group\" \
         aria-label=\"{}\">{}{overlay}</svg>",
        portcullis_geo::map::escape(class),
        portcullis_geo::map::escape(label),
        countries.unwrap_or_default()
    )
}

/// The travel lines of impossible-travel evidence (`from`, `to` as [lat, lon]).
pub(crate) fn travel_of(evidence: &serde_json::Value) -> Option<Travel> {
    let point = |key: &str| {
        let v = evidence.get(key)?.as_array()?;
        Some((v.first()?.as_f64()?, v.get(1)?.as_f64()?))
    };
    let text = |key: &str| evidence.get(key).and_then(|v| v.as_str()).unwrap_or("?").to_string();
    let distance = evidence.get("distance_km").and_then(serde_json::Value::as_f64);
    let hours = evidence.get("hours").and_then(serde_json::Value::as_f64);
    let mut label = format!("Impossible travel: {} → {}", text("from_place"), text("to_place"));
    if let (Some(d), Some(h)) = (distance, hours) {
        label.push_str(&format!(", {d:.0} km in {:.0} min", h * 60.0));
    }
    Some(Travel { from: point("from")?, to: point("to")?, label })
}

/// The two ends of an impossible travel as places to mark, each named by the evidence
/// and dated by its time (RFC 3339, as evidence is stored; Unix seconds before).
pub(crate) fn travel_ends(evidence: &serde_json::Value, t: &Travel) -> Vec<ObservedLocation> {
    [("from_place", "from_time", t.from), ("to_place", "to_time", t.to)]
        .into_iter()
        .map(|(place, time, (lat, lon))| {
            let at = match evidence.get(time) {
                Some(serde_json::Value::String(t)) => t.parse::<jiff::Timestamp>().map_or(0, |t| t.as_millisecond()),
                Some(v) => v.as_i64().unwrap_or(0).saturating_mul(1000),
                None => 0,
            };
            ObservedLocation {
                country: None,
                city: evidence.get(place).and_then(|v| v.as_str()).map(str::to_string),
                asn: None,
                as_org: None,
                latitude: Some(lat),
                longitude: Some(lon),
                first_ms: at,
                last_ms: at,
                count: 1,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(city: &str, lat: f64, lon: f64, count: u64) -> ObservedLocation {
        ObservedLocation {
            country: Some("RU".into()),
            city: Some(city.into()),
            asn: None,
            as_org: None,
            latitude: Some(lat),
            longitude: Some(lon),
            first_ms: 0,
            last_ms: 1_764_000_000_000,
            count,
        }
    }

    #[test]
    fn markers_are_named_linked_and_escaped_over_the_countries() {
        let hostile = place("<script>alert(1)</script>", 55.75, 37.62, 3);
        let mut unplaced = place("Nowhere", 0.0, 0.0, 1);
        unplaced.latitude = None;
        let travel = Travel { from: (52.5, 13.4), to: (55.75, 37.62), label: "Impossible travel: a → b".into() };
        let Safe(svg) = render(&[hostile, unplaced], |_| "/users/x?country=RU".into(), &[travel], "Map", "map");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>") && svg.matches("<svg").count() == 1);
        assert!(svg.contains("<title>Germany</title>"), "the countries are in");
        assert!(svg.contains("aria-label=\"&lt;script&gt;alert(1)&lt;/script&gt;, RU — 3 connections, last "));
        assert!(svg.contains("href=\"/users/x?country=RU\""));
        assert!(!svg.contains("<script>") && !svg.contains("Nowhere"));
        assert!(svg.contains("<line ") && svg.contains("Impossible travel: a → b"));
        assert!(!svg.contains("role=\"img\" aria-label=\"World map\""), "the base map's root is replaced");
    }

    #[test]
    fn travel_evidence_becomes_a_line() {
        let evidence = serde_json::json!({
            "from": [52.52, 13.4], "to": [55.75, 37.62], "from_place": "Berlin, DE", "to_place": "Moscow, RU",
            "distance_km": 1609.0, "hours": 0.33
        });
        let t = travel_of(&evidence).unwrap();
        assert_eq!((t.from, t.to), ((52.52, 13.4), (55.75, 37.62)));
        assert_eq!(t.label, "Impossible travel: Berlin, DE → Moscow, RU, 1609 km in 20 min");
        assert!(travel_of(&serde_json::json!({"from": [1.0]})).is_none());
        let evidence =
            serde_json::json!({"from": [52.52, 13.4], "to": [55.75, 37.62], "to_time": "2026-12-01T10:00:00Z"});
        let ends = travel_ends(&evidence, &travel_of(&evidence).unwrap());
        assert_eq!(ends[1].last_ms, 1_796_119_200_000);
        assert_eq!(ends[0].city.as_deref(), None);
    }
}
