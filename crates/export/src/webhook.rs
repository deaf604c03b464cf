//! Generic webhooks signed the Standard Webhooks way: `webhook-id` (stable across
//! retries), `webhook-timestamp` (Unix seconds of the attempt) and
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>`, where the key
//! is the base64 text after `whsec_`. Pure.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

/// A signing key, from its `whsec_…` text. `Debug` does not show it.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(redacted)")
    }
}

impl SigningKey {
    /// Reads `whsec_<base64>`: at least 24 bytes of key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let b64 = text.trim().strip_prefix("whsec_").ok_or("a webhook secret starts with whsec_")?;
        let key = STANDARD.decode(b64).map_err(|_| "the text after whsec_ is not base64")?;
        if key.len() < 24 {
            return Err("a webhook secret holds at least 24 bytes (32 recommended)".into());
        }
        Ok(Self(key))
    }

    /// `v1,<base64 signature>` of one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The body: `{"type", "timestamp", "data"}` as Standard Webhooks shapes it; `type` is
/// `alert.new`, `alert.update` or `auth.accept|reject|challenge`.
pub fn body(kind: &str, time_ms: i64, data: Value) -> Vec<u8> {
    let timestamp = crate::syslog::timestamp_5424(time_ms);
    json!({ "type": kind, "timestamp": timestamp, "data": data }).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_signature() {
        // The example of the Standard Webhooks specification.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(format!("{key:?}").contains("redacted"));
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert!(SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(SigningKey::parse("whsec_%%%").is_err());
        assert!(SigningKey::parse("whsec_c2hvcnQ=").is_err());
    }

    #[test]
    fn body_is_one_json_object() {
        let b = body("alert.new", 0, json!({ "user": "a\nb\"c" }));
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["type"], "alert.new");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["data"]["user"], "a\nb\"c");
    }
}
