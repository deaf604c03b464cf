//! Small text helpers: UTC times, URL encoding.

/// Unix milliseconds as RFC 3339 UTC, to the second.
pub(crate) fn utc(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a path segment
/// or a query value.
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?k=v&...` from the pairs whose value is not empty.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<String> =
        pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", encode(v))).collect();
    if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) }
}

/// The link to a user's entity page.
pub(crate) fn user_href(name: &str) -> String {
    format!("/users/{}", encode(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_encoded() {
        assert_eq!(encode("a b/<c>&"), "a%20b%2F%3Cc%3E%26");
        assert_eq!(query(&[("q", "x y"), ("empty", ""), ("n", "1")]), "?q=x%20y&n=1");
        assert_eq!(query(&[("empty", "")]), "");
        assert_eq!(utc(1_000), "1970-01-01T00:00:01Z");
    }
}
