//! Time zones: `auth.time_zone` for policy day-and-time windows and the NPS log files,
//! and the zones `portcullis replay` reads local times in. A zone is an IANA name
//! (`Europe/Berlin`, with its daylight-saving rules from the time zone database built
//! into the binary, so every machine agrees) or a fixed offset (`+01:00`).
//!
//! Converting an instant to local time is always exact. Converting a local time back
//! (history files written in local time) can meet the hour a daylight-saving change
//! repeats, which [`Zone::resolve`] settles from the order of the file, and the hour it
//! skips, which no clock ever showed and is refused.

use jiff::tz::{AmbiguousOffset, Offset, TimeZone, TimeZoneDatabase};

/// A time zone as configured or given on the command line.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Default for Zone {
    fn default() -> Self {
        Self::utc()
    }
}

/// How far a record may lie before the one read before it and still be taken as the
/// earlier of the two readings of a repeated hour (NPS writes a decision's records a
/// few milliseconds apart, not always in order).
const REORDER_SLACK_SECONDS: i64 = 60;

/// `+HH:MM`, `-HH:MM`, `+HHMM`, `+HH` (the seconds east of UTC).
fn numeric_offset(s: &str) -> Option<i32> {
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = match digits.split_once(':') {
        Some((h, m)) if h.len() == 2 && m.len() == 2 => format!("{h}{m}"),
        Some(_) => return None,
        None if digits.len() == 2 => format!("{digits}00"),
        None => digits.to_string(),
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    (hours <= 18 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
}

/// Zone abbreviations that name one offset wherever they are used. Ambiguous ones
/// (`CST`: US Central or China; `IST`: India, Ireland or Israel) are not here: a file
/// that uses them is read with `--time-zone`, whose own abbreviations decide.
const ABBREVIATIONS: [(&str, i32); 30] = [
    ("UTC", 0),
    ("UT", 0),
    ("GMT", 0),
    ("Z", 0),
    ("WET", 0),
    ("WEST", 3600),
    ("BST", 3600),
    ("CET", 3600),
    ("CEST", 7200),
    ("MET", 3600),
    ("MEST", 7200),
    ("EET", 7200),
    ("EEST", 10_800),
    ("MSK", 10_800),
    ("SAST", 7200),
    ("EST", -18_000),
    ("EDT", -14_400),
    ("CDT", -18_000),
    ("MST", -25_200),
    ("MDT", -21_600),
    ("PST", -28_800),
    ("PDT", -25_200),
    ("AKST", -32_400),
    ("AKDT", -28_800),
    ("HST", -36_000),
    ("JST", 32_400),
    ("KST", 32_400),
    ("AEST", 36_000),
    ("AEDT", 39_600),
    ("NZDT", 46_800),
];

impl Zone {
    /// Coordinated Universal Time.
    pub fn utc() -> Self {
        Self { name: "UTC".into(), tz: TimeZone::UTC }
    }

    /// A fixed offset, seconds east of UTC.
    pub fn fixed(seconds: i32) -> Option<Self> {
        let offset = Offset::from_seconds(seconds).ok()?;
        let (sign, abs) = if seconds < 0 { ('-', -seconds) } else { ('+', seconds) };
        let name = format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60);
        Some(Self { name, tz: TimeZone::fixed(offset) })
    }

    /// An IANA name (`Europe/Berlin`, `UTC`) or a fixed offset (`+01:00`, `-0530`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("Z") || s.eq_ignore_ascii_case("UTC") {
            return Ok(Self::utc());
        }
        if s.starts_with(['+', '-']) {
            return numeric_offset(s)
                .and_then(Self::fixed)
                .ok_or_else(|| format!("{s:?} is not a UTC offset such as \"+01:00\""));
        }
        match TimeZoneDatabase::bundled().get(s) {
            Ok(tz) => Ok(Self { name: tz.iana_name().unwrap_or(s).to_string(), tz }),
            Err(_) => Err(format!(
                "{s:?} is neither an IANA time zone name such as \"Europe/Berlin\" nor a UTC offset such as \"+01:00\""
            )),
        }
    }

    /// As configured: the IANA name or the offset.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn timestamp(unix: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(unix.clamp(jiff::Timestamp::MIN.as_second(), jiff::Timestamp::MAX.as_second()))
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    /// Seconds east of UTC at the instant `unix` (Unix seconds).
    pub fn offset_at(&self, unix: i64) -> i32 {
        self.tz.to_offset(Self::timestamp(unix)).seconds()
    }

    /// The local date and time at `unix`, with the offset then in force.
    pub fn local(&self, unix: i64) -> time::OffsetDateTime {
        let offset = time::UtcOffset::from_whole_seconds(self.offset_at(unix)).unwrap_or(time::UtcOffset::UTC);
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH).to_offset(offset)
    }

    /// What policy time windows compare: the local weekday (0 Monday) and minute of
    /// the day at `unix`.
    pub fn weekday_minute(&self, unix: i64) -> (u8, u16) {
        let t = self.local(unix);
        (t.weekday().number_days_from_monday(), u16::from(t.hour()) * 60 + u16::from(t.minute()))
    }

    /// The instant of a local date and time in this zone. In the hour a change back
    /// from daylight saving repeats, the earlier reading is taken unless it lies more
    /// than a minute before `previous` (the record read before this one, from the same
    /// file), in which case the clock went back and the later one is. A local time the
    /// change forward skipped is an error.
    pub fn resolve(&self, local: time::PrimitiveDateTime, previous: Option<i64>) -> Result<i64, String> {
        let civil = civil(local)?;
        let candidates = match self.tz.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => return Ok(at_offset(local, offset.seconds())),
            AmbiguousOffset::Gap { .. } => {
                return Err(format!("{local} does not exist in {} (skipped by a daylight-saving change)", self.name));
            }
            AmbiguousOffset::Fold { before, after } => {
                [at_offset(local, before.seconds()), at_offset(local, after.seconds())]
            }
        };
        let [earlier, later] = if candidates[0] <= candidates[1] { candidates } else { [candidates[1], candidates[0]] };
        Ok(match previous {
            Some(p) if earlier < p - REORDER_SLACK_SECONDS => later,
            _ => earlier,
        })
    }

    /// The instant of a local date and time written with a zone `label`: a numeric
    /// offset (`+0100`, `+01:00`), an abbreviation this zone used at that time (`CET`
    /// or `CEST` for `Europe/Berlin`, which also settles the repeated hour), or one of
    /// the abbreviations that mean one offset everywhere.
    pub fn resolve_labelled(&self, local: time::PrimitiveDateTime, label: &str) -> Result<i64, String> {
        if let Some(seconds) = numeric_offset(label) {
            return Ok(at_offset(local, seconds));
        }
        let civil = civil(local)?;
        let offsets = match self.tz.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => vec![offset],
            AmbiguousOffset::Gap { before, after } | AmbiguousOffset::Fold { before, after } => vec![before, after],
        };
        for offset in offsets {
            let unix = at_offset(local, offset.seconds());
            let info = self.tz.to_offset_info(Self::timestamp(unix));
            if info.offset() == offset && info.abbreviation().eq_ignore_ascii_case(label) {
                return Ok(unix);
            }
        }
        match ABBREVIATIONS.iter().find(|(name, _)| name.eq_ignore_ascii_case(label)) {
            Some((_, seconds)) => Ok(at_offset(local, *seconds)),
            None => Err(format!(
                "time zone {label:?} is not one this reader knows to mean a single offset, and not one {} uses \
                 at that time; give the file's zone with --time-zone",
                self.name
            )),
        }
    }
}

fn civil(local: time::PrimitiveDateTime) -> Result<jiff::civil::DateTime, String> {
    let n = |v: u8| i8::try_from(v).map_err(|_| format!("bad local time {local}"));
    jiff::civil::DateTime::new(
        i16::try_from(local.year()).map_err(|_| format!("year {} is out of range", local.year()))?,
        n(u8::from(local.month()))?,
        n(local.day())?,
        n(local.hour())?,
        n(local.minute())?,
        n(local.second())?,
        0,
    )
    .map_err(|e| format!("bad local time {local}: {e}"))
}

fn at_offset(local: time::PrimitiveDateTime, seconds: i32) -> i64 {
    local.assume_utc().unix_timestamp() - i64::from(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> time::PrimitiveDateTime {
        let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        time::PrimitiveDateTime::parse(s, &f).unwrap()
    }

    fn unix(s: &str) -> i64 {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap().unix_timestamp()
    }

    #[test]
    fn names_and_offsets_parse() {
        assert_eq!(Zone::parse("Europe/Berlin").unwrap().name(), "Europe/Berlin");
        assert_eq!(Zone::parse("europe/berlin").unwrap().name(), "Europe/Berlin");
        assert_eq!(Zone::parse("+01:00").unwrap().offset_at(0), 3600);
        assert_eq!(Zone::parse("-05:30").unwrap().offset_at(0), -19_800);
        assert_eq!(Zone::parse("+0100").unwrap().name(), "+01:00");
        assert_eq!(Zone::parse("UTC").unwrap().offset_at(0), 0);
        for bad in ["Mars/Olympus", "+25:00", "+1", "01:00", "", "+01:60"] {
            assert!(Zone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn berlin_follows_daylight_saving() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // 2026-03-29 01:00 UTC: CET (+1) becomes CEST (+2).
        assert_eq!(berlin.offset_at(unix("2026-03-29T00:59:59Z")), 3600);
        assert_eq!(berlin.offset_at(unix("2026-03-29T01:00:00Z")), 7200);
        // A Monday in winter and one in summer, both 07:30 UTC.
        assert_eq!(berlin.weekday_minute(unix("2026-01-05T07:30:00Z")), (0, 8 * 60 + 30));
        assert_eq!(berlin.weekday_minute(unix("2026-07-06T07:30:00Z")), (0, 9 * 60 + 30));
        assert_eq!(Zone::parse("+01:00").unwrap().weekday_minute(unix("2026-07-06T07:30:00Z")), (0, 8 * 60 + 30));
    }

    #[test]
    fn local_times_resolve_across_the_changes() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        assert_eq!(berlin.resolve(local("2026-01-05 09:00:00"), None), Ok(unix("2026-01-05T08:00:00Z")));
        assert_eq!(berlin.resolve(local("2026-07-06 09:00:00"), None), Ok(unix("2026-07-06T07:00:00Z")));
        // The skipped hour never existed.
        assert!(berlin.resolve(local("2026-03-29 02:30:00"), None).unwrap_err().contains("does not exist"));
        // 2026-10-25: 02:00-03:00 happens twice; file order decides.
        let first = berlin.resolve(local("2026-10-25 02:50:00"), None).unwrap();
        assert_eq!(first, unix("2026-10-25T00:50:00Z"));
        let again = berlin.resolve(local("2026-10-25 02:10:00"), Some(first)).unwrap();
        assert_eq!(again, unix("2026-10-25T01:10:00Z"), "the clock went back");
        let slightly_out_of_order = berlin.resolve(local("2026-10-25 02:49:30"), Some(first)).unwrap();
        assert_eq!(slightly_out_of_order, unix("2026-10-25T00:49:30Z"));
    }

    #[test]
    fn labelled_local_times() {
        let utc = Zone::utc();
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let t = local("2026-01-05 09:00:00");
        let expected = unix("2026-01-05T08:00:00Z");
        for label in ["CET", "+0100", "+01:00", "+01"] {
            assert_eq!(utc.resolve_labelled(t, label), Ok(expected), "{label}");
        }
        assert_eq!(utc.resolve_labelled(t, "UTC"), Ok(unix("2026-01-05T09:00:00Z")));
        // The repeated hour, told apart by its abbreviation.
        let fold = local("2026-10-25 02:30:00");
        assert_eq!(berlin.resolve_labelled(fold, "CEST"), Ok(unix("2026-10-25T00:30:00Z")));
        assert_eq!(berlin.resolve_labelled(fold, "CET"), Ok(unix("2026-10-25T01:30:00Z")));
        // Ambiguous abbreviations need the file's zone.
        assert!(utc.resolve_labelled(t, "CST").is_err());
        let chicago = Zone::parse("America/Chicago").unwrap();
        assert_eq!(chicago.resolve_labelled(t, "CST"), Ok(unix("2026-01-05T15:00:00Z")));
        assert!(utc.resolve_labelled(t, "XYZ").is_err());
    }
}
