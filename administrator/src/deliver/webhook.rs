//! The webhook sink: one HTTPS POST per finding, over a kept-alive connection, signed with
//! HMAC-SHA256. The body is the Macie finding document (`format = "json"`) or a
//! Slack-compatible `{"text": ...}` message (`format = "slack"`). Headers:
//! - `X-Estate-Finding-Id`: the finding's stable ID (a repeat is an update of it);
//! - `X-Estate-Timestamp`: Unix seconds when the request was signed;
//! - `X-Estate-Signature`: `v1=` and the hex HMAC-SHA256, under the sink's secret, of the
//!   timestamp, a `.`, and the body. A receiver recomputes it, compares in constant time, and
//!   refuses timestamps older than it tolerates (a replay).
//!
//! Any answer but 2xx is a failure, retried with backoff. The URL is never logged whole (a
//! Slack webhook's path is its secret): only its host.

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::Deserialize;

use estate_common::findings::Finding;

use super::hmac::hmac_sha256;
use super::http::{HttpClient, Target};
use super::Start;

/// A secret shorter than this is refused.
const MIN_SECRET_BYTES: usize = 16;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The Macie finding document.
    #[default]
    Json,
    /// `{"text": "..."}`, which Slack's incoming webhooks (and Mattermost's, and others) take.
    Slack,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    #[serde(default)]
    pub start: Start,
    /// `https://HOST[:PORT]/PATH`.
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// The signing secret: a file holding it, or an environment variable (exactly one).
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    /// Extra certificate authorities (PEM) to trust besides the system's, for a receiver
    /// with a private CA.
    pub ca_file: Option<PathBuf>,
}

impl WebhookConfig {
    /// The URL's parts and the secret.
    pub fn check(&self) -> anyhow::Result<(Target, Vec<u8>)> {
        // Findings are sensitive: never in plaintext.
        let target = Target::parse(&self.url, false).context("`url`")?;
        let secret = match (&self.secret_file, &self.secret_env) {
            (Some(path), None) => std::fs::read_to_string(path)
                .with_context(|| format!("reading `secret_file` `{}`", path.display()))?
                .trim()
                .to_owned(),
            (None, Some(var)) => std::env::var(var).with_context(|| format!("`secret_env`: `{var}` is not set"))?,
            _ => bail!("give exactly one of `secret_file` and `secret_env`"),
        };
        if secret.len() < MIN_SECRET_BYTES {
            bail!("the signing secret is shorter than {MIN_SECRET_BYTES} bytes");
        }
        Ok((target, secret.into_bytes()))
    }
}

pub struct WebhookSink {
    client: HttpClient,
    secret: Vec<u8>,
    format: WebhookFormat,
}

impl WebhookSink {
    pub fn new(config: &WebhookConfig) -> anyhow::Result<Self> {
        let (target, secret) = config.check()?;
        Ok(Self { client: HttpClient::new(target, config.ca_file.as_deref())?, secret, format: config.format })
    }

    pub async fn deliver(&mut self, batch: &[Finding]) -> Result<(), String> {
        for finding in batch {
            let body = match self.format {
                WebhookFormat::Json => finding.to_macie_json().to_string(),
                WebhookFormat::Slack => serde_json::json!({"text": slack_text(finding)}).to_string(),
            };
            let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
            let signature = hex::encode(hmac_sha256(&self.secret, &[timestamp.as_bytes(), b".", body.as_bytes()]));
            let headers = [
                ("content-type", "application/json".to_owned()),
                ("user-agent", concat!("estate/", env!("CARGO_PKG_VERSION")).to_owned()),
                ("x-estate-finding-id", finding.id.clone()),
                ("x-estate-timestamp", timestamp),
                ("x-estate-signature", format!("v1={signature}")),
            ];
            let path = self.client.target.path.clone();
            let host = self.client.target.host.clone();
            let (status, answer) =
                self.client.post(&path, &headers, body.into_bytes()).await.map_err(|e| format!("{host}: {e}"))?;
            if !status.is_success() {
                let text: String = String::from_utf8_lossy(&answer).chars().take(200).collect();
                return Err(format!("{host}: answered {status}: {}", estate_common::text::for_log(&text)));
            }
        }
        Ok(())
    }
}

/// One line a person reads in a chat channel.
fn slack_text(f: &Finding) -> String {
    let (severity, _) = f.kind.severity();
    let by = match (&f.last_action.api, f.last_action.actor.as_ref().and_then(|a| a.arn.as_deref())) {
        (Some(api), Some(arn)) => format!("{api} by {arn}"),
        (Some(api), None) => api.clone(),
        (None, _) => "found by a refresh".to_owned(),
    };
    format!(
        "[{severity}] {}: bucket `{}` (account {}, {}). {} ({by}; occurrences: {}; finding {})",
        f.kind.as_str(),
        f.bucket_name,
        f.account_id,
        f.region,
        f.kind.title(),
        f.count,
        f.id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> WebhookConfig {
        WebhookConfig {
            name: "hook".into(),
            start: Start::All,
            url: url.into(),
            format: WebhookFormat::Json,
            secret_file: None,
            secret_env: Some("ESTATE_TEST_WEBHOOK_SECRET".into()),
            ca_file: None,
        }
    }

    #[test]
    fn urls_must_be_https_and_secrets_long_enough() {
        // The variable is this test's own.
        std::env::set_var("ESTATE_TEST_WEBHOOK_SECRET", "0123456789abcdef");
        let (target, secret) = config("https://hooks.example.com:8443/services/T/B/x?y=1").check().unwrap();
        assert!(target.https);
        assert_eq!(
            (target.host.as_str(), target.port, target.path.as_str()),
            ("hooks.example.com", 8443, "/services/T/B/x?y=1")
        );
        assert_eq!(secret.len(), 16);
        assert!(format!("{:#}", config("http://hooks.example.com/").check().unwrap_err()).contains("https"));
        std::env::set_var("ESTATE_TEST_WEBHOOK_SECRET", "short");
        assert!(config("https://hooks.example.com/").check().unwrap_err().to_string().contains("shorter"));
    }
}
