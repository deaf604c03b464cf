//! Offline IP geolocation for Portcullis.
//!
//! Reads MMDB files with the `maxminddb` crate: a city database (GeoLite2-City, DB-IP
//! City Lite, or any file of that shape), an optional ASN database (GeoLite2-ASN, DB-IP
//! ASN Lite) and IPinfo Lite files (flat `country_code`, `asn`, `as_name` records). No
//! lookup ever leaves the machine. Files are re-read when they change on disk, so a
//! monthly database update needs no restart. Private, loopback and other special
//! addresses are never looked up: they are [`Location::internal`].
//!
//! [`map`] draws locations on the offline world map (Equal Earth, as the committed base
//! map was projected).

pub mod map;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// Mean Earth radius in kilometres.
pub const EARTH_RADIUS_KM: f64 = 6371.0;

/// Where an address is, as far as the databases know.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// ISO 3166-1 alpha-2 country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    /// Radius in km around the coordinates with 67 % confidence (GeoLite2); DB-IP Lite
    /// has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_km: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_org: Option<String>,
    /// A private, loopback, link-local or other special address: never looked up.
    #[serde(default, skip_serializing_if = "is_false")]
    pub internal: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Location {
    /// The location of an internal address.
    pub fn internal() -> Self {
        Self { internal: true, ..Self::default() }
    }

    /// Coordinates, when both are known.
    pub fn coordinates(&self) -> Option<(f64, f64)> {
        Some((self.latitude?, self.longitude?))
    }

    /// True when nothing at all is known.
    pub fn is_unknown(&self) -> bool {
        !self.internal && self.country.is_none() && self.latitude.is_none() && self.asn.is_none()
    }

    /// "City, CC", "CC", "internal" or "unknown".
    pub fn label(&self) -> String {
        if self.internal {
            return "internal".into();
        }
        match (&self.city, &self.country) {
            (Some(city), Some(cc)) => format!("{city}, {cc}"),
            (None, Some(cc)) => cc.clone(),
            (Some(city), None) => city.clone(),
            (None, None) => "unknown".into(),
        }
    }
}

/// Great-circle distance in km (haversine, mean Earth radius).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (p1, p2) = (a.0.to_radians(), b.0.to_radians());
    let dp = p2 - p1;
    let dl = (b.1 - a.1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// True for addresses that have no public location: private (RFC 1918, RFC 4193),
/// loopback, link-local, shared (RFC 6598), unspecified, multicast, reserved and
/// benchmarking ranges. Documentation ranges are public here (test data uses them).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            a == 0
                || a == 10
                || a == 127
                || a >= 224
                || (a == 100 && (64..128).contains(&b))
                || (a == 169 && b == 254)
                || (a == 172 && (16..32).contains(&b))
                || (a == 192 && b == 168)
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_unspecified()
                || v6.is_loopback()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xff00) == 0xff00
                || s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 1
        }
    }
}

/// An IP address or CIDR network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Network {
    /// Whether `ip` is inside this network. IPv4-mapped IPv6 addresses match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                // A prefix longer than the address is no network (never built by
                // `from_str`); it matches nothing rather than everything.
                let Some(shift) = 32u32.checked_sub(u32::from(self.prefix)) else { return false };
                let mask = u32::MAX.checked_shl(shift).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let Some(shift) = 128u32.checked_sub(u32::from(self.prefix)) else { return false };
                let mask = u128::MAX.checked_shl(shift).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| format!("{s:?} is not an IP address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix length in {s:?} must be 0..={max}"))?,
            None => max,
        };
        // An IPv4-mapped address (`::ffff:192.0.2.0/120`) is the IPv4 network it maps:
        // its prefix counts the 96 mapping bits, which must all be in it.
        let prefix = match (addr, addr.to_canonical()) {
            (IpAddr::V6(_), IpAddr::V4(_)) => prefix
                .checked_sub(96)
                .ok_or_else(|| format!("prefix length of the IPv4-mapped {s:?} must be 96..=128"))?,
            _ => prefix,
        };
        Ok(Self { addr: addr.to_canonical(), prefix })
    }
}

#[cfg(test)]
mod network_tests {
    use super::Network;

    #[test]
    fn an_ipv4_mapped_address_is_the_ipv4_network_it_maps() {
        let one: Network = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(one.to_string(), "192.0.2.7/32");
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("198.51.100.1".parse().unwrap()), "a mapped address is no wildcard");
        let net: Network = "::ffff:192.0.2.0/120".parse().unwrap();
        assert_eq!(net.to_string(), "192.0.2.0/24");
        assert!("::ffff:192.0.2.0/64".parse::<Network>().is_err());
        let odd = Network { addr: "192.0.2.7".parse().unwrap(), prefix: 128 };
        assert!(!odd.contains("198.51.100.1".parse().unwrap()));
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A failure to open a database.
#[derive(Debug, thiserror::Error)]
#[error("cannot read MMDB database {path}: {message}")]
pub struct GeoError {
    pub path: String,
    pub message: String,
}

/// Description of a loaded database, for health pages and logs.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseInfo {
    pub path: String,
    pub database_type: String,
    /// Build time, Unix seconds.
    pub build_epoch: u64,
    pub node_count: u32,
}

/// Records of every supported shape, read leniently: unknown fields are ignored and
/// every field is optional.
#[derive(Deserialize, Default)]
struct Record<'a> {
    #[serde(borrow, default)]
    city: Option<NamesOrText<'a>>,
    #[serde(borrow, default)]
    country: Option<CountryField<'a>>,
    #[serde(default)]
    location: Option<LocationField>,
    // GeoLite2-ASN / DB-IP ASN.
    #[serde(default)]
    autonomous_system_number: Option<Number>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
    // IPinfo Lite.
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(borrow, default)]
    asn: Option<&'a str>,
    #[serde(borrow, default)]
    as_name: Option<&'a str>,
    #[serde(default)]
    lat: Option<StrOrF64<'a>>,
    #[serde(default)]
    lng: Option<StrOrF64<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NamesOrText<'a> {
    Names {
        #[serde(borrow, default)]
        names: Option<Names<'a>>,
    },
    Text(&'a str),
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow, default)]
    en: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CountryField<'a> {
    Full {
        #[serde(borrow, default)]
        iso_code: Option<&'a str>,
        #[serde(borrow, default)]
        names: Option<Names<'a>>,
    },
    Text(&'a str),
}

#[derive(Deserialize)]
struct LocationField {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
    #[serde(default)]
    accuracy_radius: Option<Number>,
}

/// Any integer width (files differ: uint16, uint32), read leniently.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Unsigned(u64),
    Signed(i64),
}

impl Number {
    fn as_u32(&self) -> Option<u32> {
        match self {
            Self::Unsigned(n) => u32::try_from(*n).ok(),
            Self::Signed(n) => u32::try_from(*n).ok(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StrOrF64<'a> {
    Num(f64),
    Text(&'a str),
}

impl StrOrF64<'_> {
    fn value(&self) -> Option<f64> {
        match self {
            Self::Num(n) => Some(*n),
            Self::Text(t) => t.parse().ok(),
        }
    }
}

impl Record<'_> {
    fn merge_into(self, out: &mut Location) {
        if let Some(NamesOrText::Names { names: Some(Names { en: Some(city) }) } | NamesOrText::Text(city)) = self.city
        {
            if !city.is_empty() {
                out.city.get_or_insert_with(|| city.to_owned());
            }
        }
        match self.country {
            Some(CountryField::Full { iso_code, names }) => {
                if let Some(cc) = iso_code {
                    out.country.get_or_insert_with(|| cc.to_owned());
                }
                if let Some(Names { en: Some(n) }) = names {
                    out.country_name.get_or_insert_with(|| n.to_owned());
                }
            }
            Some(CountryField::Text(name)) => {
                out.country_name.get_or_insert_with(|| name.to_owned());
            }
            None => {}
        }
        if let Some(cc) = self.country_code.filter(|c| !c.is_empty()) {
            out.country.get_or_insert_with(|| cc.to_owned());
        }
        if let Some(loc) = self.location {
            if let (Some(lat), Some(lon)) = (loc.latitude, loc.longitude) {
                if out.latitude.is_none() && valid_coordinates(lat, lon) {
                    out.latitude = Some(lat);
                    out.longitude = Some(lon);
                    out.accuracy_km = loc.accuracy_radius.and_then(|n| n.as_u32());
                }
            }
        }
        if let (Some(lat), Some(lon)) = (self.lat.and_then(|v| v.value()), self.lng.and_then(|v| v.value())) {
            if out.latitude.is_none() && valid_coordinates(lat, lon) {
                out.latitude = Some(lat);
                out.longitude = Some(lon);
            }
        }
        let asn = self.autonomous_system_number.and_then(|n| n.as_u32()).or_else(|| {
            let text = self.asn?;
            text.strip_prefix("AS").unwrap_or(text).parse().ok()
        });
        if let Some(asn) = asn {
            out.asn.get_or_insert(asn);
        }
        if let Some(org) = self.autonomous_system_organization.or(self.as_name).filter(|o| !o.is_empty()) {
            out.as_org.get_or_insert_with(|| org.to_owned());
        }
    }
}

fn valid_coordinates(lat: f64, lon: f64) -> bool {
    lat.is_finite() && lon.is_finite() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)
}

/// One database file, re-read when it changes.
struct Source {
    path: PathBuf,
    reader: maxminddb::Reader<Vec<u8>>,
    stamp: Option<(SystemTime, u64)>,
}

/// Runs a call into the MMDB reader so that a malformed file can never take the
/// calling thread down with it.
fn guard<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    stamp_of(&std::fs::metadata(path).ok()?)
}

/// What tells a replaced file from the one loaded: modification time and length.
fn stamp_of(meta: &std::fs::Metadata) -> Option<(SystemTime, u64)> {
    Some((meta.modified().ok()?, meta.len()))
}

/// Largest database file read into memory.
const MAX_DATABASE_BYTES: u64 = 2 << 30;

impl Source {
    fn from_bytes(path: &Path, bytes: Vec<u8>, stamp: Option<(SystemTime, u64)>) -> Result<Self, GeoError> {
        let err = |message: String| GeoError { path: path.display().to_string(), message };
        // The reader slices the file by the metadata's node count and record size without
        // checking them; a file whose search tree would not fit is refused here.
        const MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
        let metadata_start = bytes
            .windows(MARKER.len())
            .rposition(|w| w == MARKER)
            .ok_or_else(|| err("no MaxMind DB metadata marker".into()))?;
        let reader = guard(|| maxminddb::Reader::from_source(bytes))
            .ok_or_else(|| err("malformed database".into()))?
            .map_err(|e| err(e.to_string()))?;
        let m = reader.metadata();
        let tree = u64::from(m.node_count) * u64::from(m.record_size) / 4;
        if !matches!(m.record_size, 24 | 28 | 32) || !matches!(m.ip_version, 4 | 6) || tree + 16 > metadata_start as u64
        {
            return Err(err(format!(
                "inconsistent metadata (record size {}, IP version {}, {} nodes)",
                m.record_size, m.ip_version, m.node_count
            )));
        }
        // A probe lookup, so a structurally broken file fails here and not per packet.
        guard(|| {
            reader.lookup(IpAddr::from([1, 1, 1, 1])).and_then(|r| r.decode::<maxminddb::geoip2::Asn>()).map(|_| ())
        })
        .ok_or_else(|| err("malformed database".into()))?
        .map_err(|e| err(e.to_string()))?;
        Ok(Self { path: path.to_owned(), reader, stamp })
    }

    fn open(path: &Path) -> Result<Self, GeoError> {
        let err = |message: String| GeoError { path: path.display().to_string(), message };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.len() > MAX_DATABASE_BYTES {
            return Err(err(format!("file is larger than {MAX_DATABASE_BYTES} bytes")));
        }
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        Self::from_bytes(path, bytes, stamp_of(&meta))
    }

    fn info(&self) -> DatabaseInfo {
        let m = self.reader.metadata();
        DatabaseInfo {
            path: self.path.display().to_string(),
            database_type: m.database_type.clone(),
            build_epoch: m.build_epoch,
            node_count: m.node_count,
        }
    }

    fn lookup_into(&self, ip: IpAddr, out: &mut Location) {
        match guard(|| self.reader.lookup(ip).and_then(|r| r.decode::<Record<'_>>())) {
            Some(Ok(Some(record))) => record.merge_into(out),
            Some(Ok(None)) => {}
            Some(Err(e)) => tracing::debug!(error = %e, "geolocation record unreadable"),
            None => tracing::warn!(path = %self.path.display(), "geolocation database is malformed at this address"),
        }
    }
}

/// The configured databases. Owned by one thread; lookups take `&mut self` only to
/// notice changed files.
pub struct GeoDb {
    sources: Vec<Source>,
    check_every: Duration,
    last_check: Instant,
    reloads: u64,
    /// Recent answers: VPN users come back from the same addresses.
    cache: std::collections::HashMap<IpAddr, Location>,
}

/// Answers kept; the cache is emptied when full and on every reload.
const CACHE_ENTRIES: usize = 1 << 16;

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb").field("databases", &self.info()).finish()
    }
}

impl GeoDb {
    /// Opens the given files (city first, then ASN; either may be absent). Lookups
    /// merge what every file knows; the first file wins where two disagree.
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<Self, GeoError> {
        let sources = paths.iter().map(|p| Source::open(p.as_ref())).collect::<Result<_, _>>()?;
        Ok(Self {
            sources,
            check_every: Duration::from_secs(10),
            last_check: Instant::now(),
            reloads: 0,
            cache: std::collections::HashMap::new(),
        })
    }

    /// One database from memory (tests, fuzzing); never reloaded.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GeoError> {
        let mut db = Self::empty();
        db.sources.push(Source::from_bytes(Path::new("<memory>"), bytes, None)?);
        Ok(db)
    }

    /// A database set that knows nothing (every public address is unknown).
    pub fn empty() -> Self {
        Self {
            sources: Vec::new(),
            check_every: Duration::from_secs(10),
            last_check: Instant::now(),
            reloads: 0,
            cache: std::collections::HashMap::new(),
        }
    }

    /// How often file changes are looked for (default 10 s).
    pub fn set_check_interval(&mut self, every: Duration) {
        self.check_every = every;
    }

    /// What is loaded.
    pub fn info(&self) -> Vec<DatabaseInfo> {
        self.sources.iter().map(Source::info).collect()
    }

    /// Files re-read since opening.
    pub fn reloads(&self) -> u64 {
        self.reloads
    }

    /// Re-reads files whose modification time or size changed. A file that fails to
    /// load keeps the previous version in use.
    pub fn reload_changed(&mut self) {
        self.last_check = Instant::now();
        for source in &mut self.sources {
            let now = stamp(&source.path);
            if now.is_none() || now == source.stamp {
                continue;
            }
            match Source::open(&source.path) {
                Ok(fresh) => {
                    *source = fresh;
                    self.reloads += 1;
                    self.cache.clear();
                    let info = source.info();
                    tracing::info!(path = %info.path, database_type = %info.database_type, build_epoch = info.build_epoch, "geolocation database reloaded");
                }
                Err(e) => {
                    // Do not try again until the file changes once more.
                    source.stamp = now;
                    tracing::warn!(error = %e, "geolocation database changed but cannot be read; keeping the previous one");
                }
            }
        }
    }

    /// Where `ip` is.
    pub fn lookup(&mut self, ip: IpAddr) -> Location {
        if self.last_check.elapsed() >= self.check_every {
            self.reload_changed();
        }
        if let Some(hit) = self.cache.get(&ip) {
            return hit.clone();
        }
        let found = self.lookup_now(ip);
        if self.cache.len() >= CACHE_ENTRIES {
            self.cache.clear();
        }
        self.cache.insert(ip, found.clone());
        found
    }

    /// Where `ip` is, without looking for changed files.
    pub fn lookup_now(&self, ip: IpAddr) -> Location {
        let ip = ip.to_canonical();
        if is_internal(ip) {
            return Location::internal();
        }
        let mut out = Location::default();
        for source in &self.sources {
            source.lookup_into(ip, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
    }

    #[test]
    fn haversine_matches_known_distances() {
        // Berlin – Paris ≈ 878 km; New York – Sydney ≈ 15,990 km.
        let d = distance_km((52.52, 13.405), (48.8566, 2.3522));
        assert!((d - 878.0).abs() < 5.0, "{d}");
        let d = distance_km((40.7128, -74.006), (-33.8688, 151.2093));
        assert!((d - 15_990.0).abs() < 30.0, "{d}");
        assert_eq!(distance_km((10.0, 10.0), (10.0, 10.0)), 0.0);
        // Antipodes do not produce NaN.
        assert!((distance_km((0.0, 0.0), (0.0, 180.0)) - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1.0);
    }

    #[test]
    fn special_ranges_are_internal() {
        for ip in [
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.9.9",
            "100.100.1.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "192.0.2.1", "198.51.100.7", "2001:db8::1", "172.32.0.1", "100.128.0.1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn reads_the_geolite2_shaped_fixture() {
        let mut db = GeoDb::open(&[fixture("test-city.mmdb")]).unwrap();
        let berlin = db.lookup("192.0.2.1".parse().unwrap());
        assert_eq!(berlin.city.as_deref(), Some("Berlin"));
        assert_eq!(berlin.country.as_deref(), Some("DE"));
        assert_eq!(berlin.country_name.as_deref(), Some("Germany"));
        assert_eq!(berlin.accuracy_km, Some(20));
        assert!((berlin.latitude.unwrap() - 52.52).abs() < 1e-6);
        let sydney = db.lookup("::ffff:203.0.113.9".parse().unwrap());
        assert_eq!(sydney.city.as_deref(), Some("Sydney"));
        let tokyo = db.lookup("2001:db8::5".parse().unwrap());
        assert_eq!(tokyo.country.as_deref(), Some("JP"));
        assert_eq!(tokyo.accuracy_km, Some(100));
        let nothing = db.lookup("8.8.8.8".parse().unwrap());
        assert!(nothing.is_unknown());
        assert!(db.lookup("10.0.0.1".parse().unwrap()).internal);
        assert_eq!(db.info()[0].database_type, "Test-GeoLite2-City");
    }

    #[test]
    fn reads_dbip_and_ipinfo_shapes_and_merges_asn() {
        let db = GeoDb::open(&[fixture("test-dbip-city.mmdb"), fixture("test-asn.mmdb")]).unwrap();
        let paris = db.lookup_now("192.0.2.200".parse().unwrap());
        assert_eq!(paris.city.as_deref(), Some("Paris"));
        assert_eq!(paris.accuracy_km, None, "DB-IP Lite has no accuracy radius");
        assert_eq!(paris.asn, Some(64501));
        assert_eq!(paris.as_org.as_deref(), Some("Example Transit"));
        let ipinfo = GeoDb::open(&[fixture("test-ipinfo-lite.mmdb")]).unwrap();
        let ny = ipinfo.lookup_now("198.51.100.1".parse().unwrap());
        assert_eq!(ny.country.as_deref(), Some("US"));
        assert_eq!(ny.country_name.as_deref(), Some("United States"));
        assert_eq!(ny.asn, Some(64510));
        assert_eq!(ny.as_org.as_deref(), Some("Example Hosting"));
        assert_eq!(ny.city, None);
    }

    #[test]
    fn reloads_a_replaced_file_and_keeps_the_old_one_when_the_new_is_broken() {
        let dir = std::env::temp_dir().join(format!("portcullis-geo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("city.mmdb");
        std::fs::copy(fixture("test-city.mmdb"), &path).unwrap();
        let mut db = GeoDb::open(&[&path]).unwrap();
        db.set_check_interval(Duration::ZERO);
        assert_eq!(db.lookup("192.0.2.1".parse().unwrap()).city.as_deref(), Some("Berlin"));
        // Replace by rename, as an updater does; the DB-IP fixture has another shape.
        let tmp = dir.join("city.mmdb.new");
        std::fs::copy(fixture("test-asn.mmdb"), &tmp).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let after = db.lookup("192.0.2.1".parse().unwrap());
        assert_eq!(after.city, None);
        assert_eq!(after.asn, Some(64500));
        assert_eq!(db.reloads(), 1);
        // A truncated file is refused; the previous database stays in use.
        std::fs::write(&path, b"not a database at all, longer than before").unwrap();
        assert_eq!(db.lookup("192.0.2.1".parse().unwrap()).asn, Some(64500));
        assert_eq!(db.reloads(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_garbage() {
        let dir = std::env::temp_dir().join(format!("portcullis-geo-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.mmdb");
        std::fs::write(&path, [0u8; 100]).unwrap();
        assert!(GeoDb::open(&[&path]).is_err());
        assert!(GeoDb::open(&[dir.join("missing.mmdb")]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
