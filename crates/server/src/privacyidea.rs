//! privacyIDEA as a remote second-factor provider: its `/validate/check` decides, and
//! its challenge-response runs through the RADIUS Access-Challenge (the transaction id
//! travels inside our sealed State).

use std::time::Duration;

use serde::Deserialize;

/// `[mfa.privacyidea]`. `Debug` shows the URL as `scheme://host[:port]/<redacted>`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyIdeaConfig {
    /// Base URL, e.g. `https://privacyidea.example.com`.
    pub url: String,
    /// privacyIDEA realm of the users (default: its default realm).
    #[serde(default)]
    pub realm: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Send the user's password as `pass` in the first call (privacyIDEA policy
    /// `otppin=userstore`); by default an empty `pass` triggers the challenge
    /// (`otppin=none`), the password having been checked already.
    #[serde(default)]
    pub send_password: bool,
}

fn default_timeout() -> u64 {
    10
}

impl std::fmt::Debug for PrivacyIdeaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacyIdeaConfig")
            .field("url", &crate::config::redact_url(&self.url))
            .field("realm", &self.realm)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("send_password", &self.send_password)
            .finish()
    }
}

/// What privacyIDEA answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accept,
    Reject(String),
    Challenge {
        transaction: String,
        message: String,
    },
    /// Not reachable or an error: the fail mode decides.
    Unavailable(String),
}

/// Interprets a `/validate/check` response body.
pub fn interpret(status: u16, body: &str) -> Answer {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return Answer::Unavailable(format!("privacyIDEA answered HTTP {status} without JSON"));
    };
    let result = &v["result"];
    if result["status"] != true {
        let why = result["error"]["message"].as_str().unwrap_or("error").to_string();
        // A 4xx is privacyIDEA refusing this request (unknown user, no token, bad
        // parameters): a rejection, never "unavailable", which fail_mode = "safe" admits.
        if (400..500).contains(&status) {
            return Answer::Reject(format!("privacyIDEA refused the request: {why}"));
        }
        return Answer::Unavailable(format!("privacyIDEA error: {why}"));
    }
    if result["value"] == true {
        return Answer::Accept;
    }
    let detail = &v["detail"];
    let message = detail["message"].as_str().unwrap_or("").trim().to_string();
    match detail["transaction_id"].as_str() {
        Some(t) if !t.is_empty() => Answer::Challenge {
            transaction: t.to_string(),
            message: if message.is_empty() { "Enter your one-time code".into() } else { message },
        },
        _ => Answer::Reject(if message.is_empty() { "privacyIDEA rejected the login".into() } else { message }),
    }
}

/// Calls `/validate/check`.
pub async fn check(
    http: &reqwest::Client,
    config: &PrivacyIdeaConfig,
    user: &str,
    pass: &str,
    transaction: Option<&str>,
) -> Answer {
    let mut body = serde_json::json!({ "user": user, "pass": pass });
    if let Some(realm) = &config.realm {
        body["realm"] = realm.clone().into();
    }
    if let Some(t) = transaction {
        body["transaction_id"] = t.into();
    }
    let url = format!("{}/validate/check", config.url.trim_end_matches('/'));
    let response = http
        .post(url)
        .timeout(Duration::from_secs(config.timeout_seconds.max(1)))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await;
    match response {
        Ok(r) => {
            let status = r.status().as_u16();
            match r.text().await {
                Ok(text) => interpret(status, &text),
                Err(e) => Answer::Unavailable(format!("privacyIDEA: {}", e.without_url())),
            }
        }
        Err(e) => Answer::Unavailable(format!("privacyIDEA unreachable: {}", e.without_url())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses() {
        let challenge = r#"{"detail":{"message":"please enter otp: ","transaction_id":"0619"},"result":{"authentication":"CHALLENGE","status":true,"value":false}}"#;
        assert_eq!(
            interpret(200, challenge),
            Answer::Challenge { transaction: "0619".into(), message: "please enter otp:".into() }
        );
        assert_eq!(interpret(200, r#"{"result":{"status":true,"value":true}}"#), Answer::Accept);
        assert!(matches!(
            interpret(200, r#"{"detail":{"message":"wrong otp value"},"result":{"status":true,"value":false}}"#),
            Answer::Reject(m) if m == "wrong otp value"
        ));
        assert!(matches!(interpret(500, "oops"), Answer::Unavailable(_)));
        assert!(matches!(
            interpret(400, r#"{"result":{"status":false,"error":{"message":"ERR905"}}}"#),
            Answer::Reject(m) if m.contains("ERR905")
        ));
        assert!(matches!(
            interpret(500, r#"{"result":{"status":false,"error":{"message":"database down"}}}"#),
            Answer::Unavailable(m) if m.contains("database down")
        ));
    }
}
