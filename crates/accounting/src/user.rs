//! User-Name canonicalisation.

/// Folds the forms VPNs send (`DOMAIN\user`, `user@realm`, `host/...`, any case) into one
/// canonical user: the bare account name in lower case. The raw value is kept elsewhere.
pub fn canonical_user(raw: &str) -> String {
    let s = raw.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    let s = s.rsplit_once('\\').map_or(s, |(_, u)| u);
    let s = s.split_once('@').map_or(s, |(u, _)| u);
    s.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::canonical_user;

    #[test]
    fn folds_domain_realm_and_case() {
        assert_eq!(canonical_user("EXAMPLE\\John"), "john");
        assert_eq!(canonical_user("John@Example.COM"), "john");
        assert_eq!(canonical_user("  john \0"), "john");
        assert_eq!(canonical_user("CORP\\sub\\alice"), "alice");
        assert_eq!(canonical_user("RAJESHP2\\rajeshp"), "rajeshp");
        assert_eq!(canonical_user("ÄRGER@x"), "ärger");
        assert_eq!(canonical_user("@realm"), "");
    }
}
