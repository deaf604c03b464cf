//! Text that came from a peer, made safe for line-oriented logs: control characters
//! are written as visible escapes, so a User-Name with a line break cannot start a
//! forged line in the server log or the NPS log files.

use std::borrow::Cow;

/// Whether `c` must not appear raw in a log line: C0 and C1 controls and DEL, the
/// Unicode line and paragraph separators, and the bidirectional overrides and
/// isolates that reorder how a line is displayed.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character escaped: `\n`, `\r` and `\t` as those two
/// characters, the others as `\u{..}` (the spelling of Rust's `escape_debug`).
/// Backslashes are kept as they are, so `DOMAIN\user` reads as itself.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_visible_escapes() {
        assert_eq!(escape_controls("alice\nFORGED line"), "alice\\nFORGED line");
        assert_eq!(escape_controls("a\r\tb\u{0}c\u{1b}[31m"), "a\\r\\tb\\u{0}c\\u{1b}[31m");
        assert_eq!(escape_controls("x\u{7f}\u{85}\u{9f}y"), "x\\u{7f}\\u{85}\\u{9f}y");
        assert_eq!(escape_controls("p\u{2028}q\u{2029}r\u{202e}s\u{2066}"), "p\\u{2028}q\\u{2029}r\\u{202e}s\\u{2066}");
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for s in ["EXAMPLE\\alice", "bob@example.com", "Zoë Ünal", "名前", "a \"quoted\", <tag> & more"] {
            assert!(matches!(escape_controls(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }
}
