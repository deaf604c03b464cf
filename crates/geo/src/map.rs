//! The world map's overlay: the Equal Earth projection fitted to the committed base map
//! (`crates/web/assets/world.svg`, 960×467, made by `scripts/world-map`), and markers and
//! travel lines drawn as an SVG fragment to put inside that `<svg>`, after its countries.
//!
//! Pure: numbers and names in, text out. Every name is XML-escaped (they come from
//! packets and databases), and a marker's link must be relative to the portal.

use std::fmt::Write;

/// Width of the base map, in its own units (pixels at 100 %).
pub const WIDTH: f64 = 960.0;
/// Height of the base map.
pub const HEIGHT: f64 = 467.0;

// Equal Earth (Šavrič, Patterson and Jenny, 2018), with d3-geo's constants.
const A1: f64 = 1.340264;
const A2: f64 = -0.081106;
const A3: f64 = 0.000893;
const A4: f64 = 0.003796;

/// √3 / 2.
const M: f64 = 0.866_025_403_784_438_6;

/// Equal Earth of (longitude, latitude) in radians, before scale and translation (y up).
fn raw(lambda: f64, phi: f64) -> (f64, f64) {
    let l = (M * phi.sin()).asin();
    let l2 = l * l;
    let l6 = l2 * l2 * l2;
    (
        lambda * l.cos() / (M * (A1 + 3.0 * A2 * l2 + l6 * (7.0 * A3 + 9.0 * A4 * l2))),
        l * (A1 + A2 * l2 + l6 * (A3 + A4 * l2)),
    )
}

/// The scale that fits the whole sphere into `WIDTH`×`HEIGHT`, as d3's `fitSize` does:
/// the outline's widest point is on the equator at ±180°, its highest at the poles.
fn scale() -> f64 {
    let (x, _) = raw(std::f64::consts::PI, 0.0);
    let (_, y) = raw(0.0, std::f64::consts::FRAC_PI_2);
    (WIDTH / (2.0 * x)).min(HEIGHT / (2.0 * y))
}

/// Where (`lat`, `lon`) in degrees is on the base map: x from the left, y from the top.
pub fn project(lat: f64, lon: f64) -> (f64, f64) {
    let k = scale();
    let (x, y) = raw(lon.to_radians(), lat.to_radians());
    (WIDTH / 2.0 + k * x, HEIGHT / 2.0 - k * y)
}

/// One place connections came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker<'a> {
    pub latitude: f64,
    pub longitude: f64,
    pub city: Option<&'a str>,
    /// ISO 3166-1 alpha-2 code.
    pub country: Option<&'a str>,
    /// Connections from there; the radius grows with it, within bounds.
    pub count: u64,
    /// The last one, Unix seconds.
    pub last_seen: i64,
    /// The page this marker opens (relative to the portal: `/`, `?` or `#` first; any
    /// other link is left out and the marker is drawn without one).
    pub href: &'a str,
}

/// A line between two places, such as the two ends of an impossible travel.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub from: (f64, f64),
    pub to: (f64, f64),
    /// Its accessible name ("Impossible travel: Berlin → Moscow, 1,600 km in 20 min").
    pub label: &'a str,
}

/// Smallest and largest marker radius.
pub const RADIUS: (f64, f64) = (3.0, 12.0);

/// The radius of a marker for `count` connections: 3 for one, growing with the
/// logarithm, at most 12.
pub fn radius(count: u64) -> f64 {
    let grown = RADIUS.0 + 1.5 * (count.max(1) as f64).log2();
    grown.min(RADIUS.1)
}

/// The accessible name of a marker: "Moscow, RU — 3 connections, last 2026-12-01 10:00 UTC".
pub fn marker_name(m: &Marker<'_>) -> String {
    let place = match (m.city.filter(|c| !c.is_empty()), m.country.filter(|c| !c.is_empty())) {
        (Some(city), Some(country)) => format!("{city}, {country}"),
        (Some(one), None) | (None, Some(one)) => one.to_string(),
        (None, None) => "Unknown place".to_string(),
    };
    let noun = if m.count == 1 { "connection" } else { "connections" };
    format!("{place} — {} {noun}, last {}", m.count, utc_minute(m.last_seen))
}

/// The markers and lines as an SVG fragment: a `<g class="travel">` of lines, then a
/// `<g class="markers">` of circles, each in a link with the marker's name as its
/// `aria-label` and `<title>`. Places outside ±90°/±180° (or not numbers) are left out.
pub fn render_markers(markers: &[Marker<'_>], lines: &[Line<'_>]) -> String {
    let mut out = String::new();
    if !lines.is_empty() {
        out.push_str("<g class=\"travel\">");
        for line in lines {
            let (Some(from), Some(to)) = (valid(line.from), valid(line.to)) else { continue };
            let label = escape(line.label);
            for ((x1, y1), (x2, y2)) in segments(from, to) {
                let _ = write!(
                    out,
                    "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\"><title>{label}</title></line>"
                );
            }
        }
        out.push_str("</g>");
    }
    out.push_str("<g class=\"markers\">");
    // The busiest places first, so smaller circles are drawn over larger ones.
    let mut order: Vec<&Marker<'_>> = markers.iter().collect();
    order.sort_by_key(|m| std::cmp::Reverse(m.count));
    for m in order {
        let Some((lat, lon)) = valid((m.latitude, m.longitude)) else { continue };
        let (x, y) = project(lat, lon);
        let name = escape(&marker_name(m));
        let data = [("data-country", m.country), ("data-city", m.city)]
            .iter()
            .filter_map(|(key, v)| v.map(|v| format!(" {key}=\"{}\"", escape(v))))
            .collect::<String>();
        let circle = format!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{:.1}\"{data}><title>{name}</title></circle>",
            radius(m.count)
        );
        if is_relative(m.href) {
            let _ = write!(out, "<a href=\"{}\" aria-label=\"{name}\">{circle}</a>", escape(m.href));
        } else {
            let _ = write!(out, "<g role=\"img\" aria-label=\"{name}\">{circle}</g>");
        }
    }
    out.push_str("</g>");
    out
}

/// A link that stays on the portal: a path, a query or a fragment (not `//host`).
fn is_relative(href: &str) -> bool {
    (href.starts_with('/') && !href.starts_with("//")) || href.starts_with('?') || href.starts_with('#')
}

fn valid((lat, lon): (f64, f64)) -> Option<(f64, f64)> {
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
}

/// The projected segments of a line: one, or two when the shorter way round crosses the
/// antimeridian (each ends at the map's edge, so no line streaks across the map).
fn segments(from: (f64, f64), to: (f64, f64)) -> Vec<((f64, f64), (f64, f64))> {
    let (lat1, lon1) = from;
    let (lat2, lon2) = to;
    if (lon2 - lon1).abs() <= 180.0 {
        return vec![(project(lat1, lon1), project(lat2, lon2))];
    }
    // Go the other way round: unwrap the second longitude past ±180 and cut there.
    let edge = if lon1 > 0.0 { 180.0 } else { -180.0 };
    let unwrapped = if lon1 > 0.0 { lon2 + 360.0 } else { lon2 - 360.0 };
    let t = (edge - lon1) / (unwrapped - lon1);
    let lat = lat1 + t * (lat2 - lat1);
    vec![(project(lat1, lon1), project(lat, edge)), (project(lat, -edge), project(lat2, lon2))]
}

/// Text made safe for XML content and attribute values: markup characters escaped,
/// control characters (which XML cannot carry) replaced.
pub fn escape(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { '\u{FFFD}' } else { c }).collect();
    escape_markup(&clean)
}

/// The five XML markup characters as entities (the NPS DTS log uses it too).
pub fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// "2026-12-01 10:00 UTC" for Unix seconds.
fn utc_minute(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let minutes = t.rem_euclid(86_400) / 60;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// d3-geo's own answers (scripts/world-map/make-world-map.mjs wrote them).
    const POINTS: &str = include_str!("../tests/vectors/equal_earth_960x467.csv");

    #[test]
    fn the_projection_matches_d3_to_half_a_pixel() {
        let mut n = 0;
        for line in POINTS.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let f: Vec<&str> = line.split(',').collect();
            let num = |i: usize| f[i].parse::<f64>().unwrap();
            let (x, y) = project(num(1), num(2));
            let (dx, dy) = ((x - num(3)).abs(), (y - num(4)).abs());
            assert!(dx < 0.5 && dy < 0.5, "{}: ({x}, {y}) against d3 ({}, {})", f[0], f[3], f[4]);
            // In fact it is the same arithmetic.
            assert!(dx < 1e-6 && dy < 1e-6, "{}: off by ({dx}, {dy})", f[0]);
            n += 1;
        }
        assert!(n >= 20, "{n} reference points");
    }

    fn moscow<'a>(href: &'a str) -> Marker<'a> {
        Marker {
            latitude: 55.7558,
            longitude: 37.6173,
            city: Some("Moscow"),
            country: Some("RU"),
            count: 3,
            last_seen: 1_796_119_200,
            href,
        }
    }

    #[test]
    fn a_marker_has_an_accessible_name_and_a_link() {
        let svg = render_markers(&[moscow("/users/paula/timeline?country=RU&city=Moscow")], &[]);
        let name = "Moscow, RU — 3 connections, last 2026-12-01 10:00 UTC";
        assert!(svg.contains(&format!("aria-label=\"{name}\"")), "{svg}");
        assert!(svg.contains(&format!("<title>{name}</title>")), "{svg}");
        assert!(svg.contains("href=\"/users/paula/timeline?country=RU&amp;city=Moscow\""), "{svg}");
        assert!(svg.contains("cx=\"558.7\" cy=\"51.1\""), "{svg}");
        assert!(svg.contains("data-country=\"RU\" data-city=\"Moscow\""), "{svg}");
    }

    #[test]
    fn hostile_names_and_links_render_inert() {
        let hostile = "<script>alert(\"x\")</script>' onload='x\u{7}";
        let mut m = moscow("javascript:alert(1)");
        m.city = Some(hostile);
        m.country = Some("\"><svg onload=alert(1)>");
        let line = Line { from: (52.52, 13.4), to: (55.75, 37.6), label: hostile };
        let svg = render_markers(&[m, moscow("//evil.example/")], &[line]);
        for bad in ["<script", "\"x\"", "' onload", "\"><svg", "javascript:", "//evil", "\u{7}"] {
            assert!(!svg.contains(bad), "{bad:?} in {svg}");
        }
        assert!(
            svg.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&apos; onload=&apos;x\u{FFFD}"),
            "{svg}"
        );
        // Without a safe link the marker is still there, named, without <a>.
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(!svg.contains("<a "), "{svg}");
    }

    #[test]
    fn the_radius_grows_with_the_count_within_bounds() {
        assert_eq!(radius(0), RADIUS.0);
        assert_eq!(radius(1), RADIUS.0);
        assert!(radius(2) > radius(1) && radius(100) > radius(10));
        assert_eq!(radius(u64::MAX), RADIUS.1);
    }

    #[test]
    fn places_off_the_globe_are_left_out() {
        let mut m = moscow("/x");
        for (lat, lon) in [(f64::NAN, 0.0), (91.0, 0.0), (0.0, -180.5), (0.0, f64::INFINITY)] {
            m.latitude = lat;
            m.longitude = lon;
            assert!(!render_markers(&[m.clone()], &[]).contains("<circle"), "{lat} {lon}");
        }
        assert_eq!(render_markers(&[], &[]), "<g class=\"markers\"></g>");
    }

    #[test]
    fn a_line_across_the_antimeridian_is_cut_at_the_edges() {
        // Honolulu to Sydney goes west across ±180°, not across the whole map.
        let line = Line { from: (21.3069, -157.8583), to: (-33.8688, 151.2093), label: "travel" };
        let svg = render_markers(&[], &[line]);
        assert_eq!(svg.matches("<line").count(), 2, "{svg}");
        let xs: Vec<f64> =
            svg.split(" x").skip(1).filter_map(|s| s.split('"').nth(1)).map(|v| v.parse::<f64>().unwrap()).collect();
        // Honolulu → west edge, east edge → Sydney: no segment spans the map.
        assert_eq!(xs.len(), 4, "{svg}");
        assert!((xs[0] - xs[1]).abs() < 200.0 && (xs[2] - xs[3]).abs() < 200.0, "{xs:?}");
        let short = Line { from: (52.52, 13.4), to: (55.75, 37.6), label: "t" };
        assert_eq!(render_markers(&[], &[short]).matches("<line").count(), 1);
    }

    /// The committed base map: small, one titled path per country, and no ring that
    /// streaks across the map (d3 cut Fiji, Russia and Antarctica at ±180°).
    #[test]
    fn the_base_map_is_small_and_has_no_streaks() {
        let svg = include_str!("../../web/assets/world.svg");
        assert!(svg.len() <= 150 * 1024, "{} bytes", svg.len());
        assert!(svg.starts_with("<svg ") && svg.contains(&format!("viewBox=\"0 0 {WIDTH} {HEIGHT}\"")));
        let countries = svg.matches("<path data-a3=").count();
        assert!(countries >= 170 && countries == svg.matches("<title>").count(), "{countries}");
        for name in ["Fiji", "Russia", "Antarctica", "United States of America"] {
            assert!(svg.contains(&format!("<title>{name}</title>")), "{name}");
        }
        for d in svg.split(" d=\"").skip(1).map(|rest| rest.split('"').next().unwrap()) {
            // A ring (M) may start anywhere; its segments (L) must not cross the map.
            for ring in d.split('M').filter(|r| !r.is_empty()) {
                let xs: Vec<f64> = ring
                    .split(['L', 'Z'])
                    .filter(|c| !c.is_empty())
                    .map(|c| c.split(',').next().unwrap().parse().unwrap())
                    .collect();
                for pair in xs.windows(2) {
                    assert!((pair[1] - pair[0]).abs() < WIDTH / 2.0, "a segment from x={} to x={}", pair[0], pair[1]);
                }
            }
        }
    }

    #[test]
    fn times_are_utc_minutes() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_minute(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_minute(-60), "1969-12-31 23:59 UTC");
    }
}
