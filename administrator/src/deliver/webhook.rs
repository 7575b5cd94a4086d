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
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use estate_common::findings::Finding;

use super::hmac::hmac_sha256;
use super::Start;

/// Connecting, and each request, give up after this long.
const TIMEOUT: Duration = Duration::from_secs(10);
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
        let uri: Uri = self.url.parse().context("`url` is not a URL")?;
        if uri.scheme_str() != Some("https") {
            bail!("`url` must be https:// (findings are sensitive)");
        }
        let host = uri.host().context("`url` has no host")?.trim_matches(['[', ']']).to_owned();
        let target = Target {
            port: uri.port_u16().unwrap_or(443),
            authority: uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_else(|| host.clone()),
            path: uri.path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned()),
            host,
        };
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

#[derive(Debug, Clone)]
pub struct Target {
    host: String,
    port: u16,
    /// What the `Host` header carries.
    authority: String,
    path: String,
}

pub struct WebhookSink {
    target: Target,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    secret: Vec<u8>,
    format: WebhookFormat,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl WebhookSink {
    pub fn new(config: &WebhookConfig) -> anyhow::Result<Self> {
        let (target, secret) = config.check()?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A system certificate rustls cannot use is skipped, as browsers do.
            let _ = roots.add(cert);
        }
        if let Some(path) = &config.ca_file {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading `ca_file` `{}`", path.display()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("`ca_file` `{}` is not PEM certificates", path.display()))?;
            if certs.is_empty() {
                bail!("`ca_file` `{}` holds no certificate", path.display());
            }
            for cert in certs {
                roots.add(cert).with_context(|| format!("a certificate in `ca_file` `{}`", path.display()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(target.host.clone()).context("the URL's host is not a TLS name")?;
        Ok(Self {
            target,
            server_name,
            tls: TlsConnector::from(Arc::new(tls)),
            secret,
            format: config.format,
            connection: None,
        })
    }

    pub async fn deliver(&mut self, batch: &[Finding]) -> Result<(), String> {
        for finding in batch {
            let body = match self.format {
                WebhookFormat::Json => finding.to_macie_json().to_string(),
                WebhookFormat::Slack => serde_json::json!({"text": slack_text(finding)}).to_string(),
            };
            let result = self.post(&finding.id, body.into_bytes()).await;
            if result.is_err() {
                // Whatever state the connection is in, the next attempt starts afresh.
                self.connection = None;
            }
            result.map_err(|e| format!("{}: {e}", self.target.host))?;
        }
        Ok(())
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let target = &self.target;
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect((target.host.as_str(), target.port)))
            .await
            .map_err(|_| "connecting timed out".to_owned())?
            .map_err(|e| format!("connecting: {e}"))?;
        let tls = tokio::time::timeout(TIMEOUT, self.tls.connect(self.server_name.clone(), tcp))
            .await
            .map_err(|_| "the TLS handshake timed out".to_owned())?
            .map_err(|e| format!("TLS: {e}"))?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| format!("HTTP: {e}"))?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the peer closes.
            let _ = connection.await;
        });
        Ok(sender)
    }

    async fn post(&mut self, finding_id: &str, body: Vec<u8>) -> Result<(), String> {
        if self.connection.as_ref().is_none_or(|c| c.is_closed()) {
            self.connection = Some(self.connect().await?);
        }
        let sender = self.connection.as_mut().expect("connected above");
        tokio::time::timeout(TIMEOUT, sender.ready())
            .await
            .map_err(|_| "the connection stayed busy".to_owned())?
            .map_err(|e| format!("HTTP: {e}"))?;
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        let signature = hex::encode(hmac_sha256(&self.secret, &[timestamp.as_bytes(), b".", &body]));
        let request = Request::post(self.target.path.as_str())
            .header(hyper::header::HOST, self.target.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, concat!("estate/", env!("CARGO_PKG_VERSION")))
            .header("x-estate-finding-id", finding_id)
            .header("x-estate-timestamp", timestamp)
            .header("x-estate-signature", format!("v1={signature}"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("building the request: {e}"))?;
        let response = tokio::time::timeout(TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| "no answer in time".to_owned())?
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status();
        // The body is read (bounded) so that the connection can carry the next request.
        let text =
            match tokio::time::timeout(TIMEOUT, http_body_util::Limited::new(response.into_body(), 4096).collect())
                .await
            {
                Ok(Ok(body)) => String::from_utf8_lossy(&body.to_bytes()).chars().take(200).collect::<String>(),
                _ => {
                    self.connection = None;
                    String::new()
                }
            };
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}: {}", estate_common::text::for_log(&text)))
        }
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
        assert_eq!(
            (target.host.as_str(), target.port, target.path.as_str()),
            ("hooks.example.com", 8443, "/services/T/B/x?y=1")
        );
        assert_eq!(secret.len(), 16);
        assert!(config("http://hooks.example.com/").check().unwrap_err().to_string().contains("https"));
        std::env::set_var("ESTATE_TEST_WEBHOOK_SECRET", "short");
        assert!(config("https://hooks.example.com/").check().unwrap_err().to_string().contains("shorter"));
    }
}
