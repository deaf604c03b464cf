//! Where a user's push approvals go: the shared webhook (`[mfa.push] webhook_url`), an
//! ntfy topic of the user's own, or a personal webhook that gets the configured JSON
//! template. Kept in the MFA database as text: `webhook`, `ntfy <url>`, `webhook <url>`.

use crate::config::PushConfig;

/// Longest URL accepted for a user's own target.
const MAX_URL: usize = 2048;

/// A user's push target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushTarget {
    /// The configured shared webhook.
    Shared,
    /// An ntfy topic URL: the notification is ntfy's plain-text publish (a POST whose
    /// body is the message, with `Title`, `Click` and `Tags` headers).
    Ntfy(String),
    /// A personal webhook: the configured template is POSTed to it, without the shared
    /// webhook's headers (they are the shared channel's credentials).
    Webhook(String),
}

impl PushTarget {
    /// Reads a stored target; `None` for text this version does not know.
    pub fn parse(stored: &str) -> Option<Self> {
        match stored.split_once(' ') {
            None if stored == "webhook" => Some(Self::Shared),
            Some(("ntfy", url)) if !url.is_empty() => Some(Self::Ntfy(url.to_string())),
            Some(("webhook", url)) if !url.is_empty() => Some(Self::Webhook(url.to_string())),
            _ => None,
        }
    }

    /// The text stored for the target.
    pub fn stored(&self) -> String {
        match self {
            Self::Shared => "webhook".into(),
            Self::Ntfy(url) => format!("ntfy {url}"),
            Self::Webhook(url) => format!("webhook {url}"),
        }
    }

    /// What the target is, without its URL (which may be the credential): `shared`,
    /// `ntfy` or `webhook`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Ntfy(_) => "ntfy",
            Self::Webhook(_) => "webhook",
        }
    }

    /// Whether notifications can go to this target under `push`: the shared channel
    /// must be configured; a user's own URL must be http(s), at most 2,048 characters,
    /// and start with one of `target_prefixes` when there are any. Checked when a
    /// target is set and again before every notification.
    pub fn check(&self, push: &PushConfig) -> Result<(), String> {
        let url = match self {
            Self::Shared if push.webhook_url.is_empty() => {
                return Err("no shared webhook is configured ([mfa.push] webhook_url)".into());
            }
            Self::Shared => return Ok(()),
            Self::Ntfy(url) | Self::Webhook(url) => url,
        };
        if url.len() > MAX_URL {
            return Err(format!("the target URL is longer than {MAX_URL} characters"));
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("the target is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
            return Err("the target must be an http:// or https:// URL with a host".into());
        }
        if url.chars().any(char::is_whitespace) {
            return Err("the target URL contains white space".into());
        }
        if !push.target_prefixes.is_empty() && !push.target_prefixes.iter().any(|p| within(url, p)) {
            return Err("the target URL does not start with one of [mfa.push] target_prefixes".into());
        }
        Ok(())
    }
}

/// Whether `url` starts with `prefix` at a boundary: a prefix without a path
/// (`https://ntfy.example.com`) does not admit `https://ntfy.example.com.evil.test/`.
fn within(url: &str, prefix: &str) -> bool {
    let Some(rest) = url.strip_prefix(prefix) else { return false };
    prefix.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(prefixes: &[&str]) -> PushConfig {
        let text = format!(
            "webhook_url = \"\"\npublic_url = \"https://p\"\ntarget_prefixes = {:?}",
            prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>()
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn targets_round_trip_and_urls_are_checked() {
        for t in [PushTarget::Shared, PushTarget::Ntfy("https://n/t".into()), PushTarget::Webhook("http://h/x".into())]
        {
            assert_eq!(PushTarget::parse(&t.stored()), Some(t));
        }
        assert_eq!(PushTarget::parse("ntfy "), None);
        assert_eq!(PushTarget::parse("sms 123"), None);
        let open = push(&[]);
        assert!(PushTarget::Shared.check(&open).is_err(), "no shared webhook configured");
        assert!(PushTarget::Ntfy("https://ntfy.example.com/alice".into()).check(&open).is_ok());
        assert!(PushTarget::Ntfy("file:///etc/passwd".into()).check(&open).is_err());
        assert!(PushTarget::Ntfy("https://".into()).check(&open).is_err());
        let fenced = push(&["https://ntfy.example.com"]);
        assert!(PushTarget::Ntfy("https://ntfy.example.com/alice".into()).check(&fenced).is_ok());
        assert!(PushTarget::Ntfy("https://ntfy.example.com.evil.test/a".into()).check(&fenced).is_err());
        assert!(PushTarget::Webhook("https://hooks.example.net/a".into()).check(&fenced).is_err());
        assert!(PushTarget::Ntfy(format!("https://ntfy.example.com/{}", "a".repeat(MAX_URL))).check(&open).is_err());
    }
}
