//! The sinks' HTTP client: POSTs over one kept-alive HTTP/1.1 connection, over TLS (the
//! system's roots and an optional extra CA) or, where a sink allows it, in plaintext (an
//! AWS-compatible endpoint on loopback in tests). Every step is bounded by [`TIMEOUT`]; after
//! any failure the next request opens a new connection.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Connecting, the TLS handshake, and each request give up after this long.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Where requests go, from a URL.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// What the `Host` header carries.
    pub authority: String,
    /// The URL's path and query.
    pub path: String,
    pub https: bool,
}

impl Target {
    /// `https://` always; `http://` only when `allow_http`.
    pub fn parse(url: &str, allow_http: bool) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().context("not a URL")?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if allow_http => false,
            _ => bail!("must be https://"),
        };
        let host = uri.host().context("no host")?.trim_matches(['[', ']']).to_owned();
        Ok(Self {
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_else(|| host.clone()),
            path: uri.path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned()),
            host,
            https,
        })
    }
}

pub struct HttpClient {
    pub target: Target,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl HttpClient {
    pub fn new(target: Target, extra_ca: Option<&Path>) -> anyhow::Result<Self> {
        let tls = if target.https {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system certificate rustls cannot use is skipped, as browsers do.
                let _ = roots.add(cert);
            }
            if let Some(path) = extra_ca {
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
            let config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .context("TLS versions")?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            let name = ServerName::try_from(target.host.clone()).context("the URL's host is not a TLS name")?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self { target, tls, connection: None })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let target = &self.target;
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect((target.host.as_str(), target.port)))
            .await
            .map_err(|_| "connecting timed out".to_owned())?
            .map_err(|e| format!("connecting: {e}"))?;
        let sender = match &self.tls {
            Some((connector, name)) => {
                let tls = tokio::time::timeout(TIMEOUT, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| "the TLS handshake timed out".to_owned())?
                    .map_err(|e| format!("TLS: {e}"))?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| format!("HTTP: {e}"))?;
                tokio::spawn(connection);
                sender
            }
            None => {
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| format!("HTTP: {e}"))?;
                tokio::spawn(connection);
                sender
            }
        };
        Ok(sender)
    }

    /// POSTs `body` to `path` with `headers` (`Host` is added); the answer's status and the
    /// first 4 KiB of its body.
    pub async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), String> {
        let result = self.post_once(path, headers, body).await;
        if result.is_err() {
            // Whatever state the connection is in, the next request starts afresh.
            self.connection = None;
        }
        result
    }

    async fn post_once(
        &mut self,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), String> {
        if self.connection.as_ref().is_none_or(|c| c.is_closed()) {
            self.connection = Some(self.connect().await?);
        }
        let sender = self.connection.as_mut().expect("connected above");
        tokio::time::timeout(TIMEOUT, sender.ready())
            .await
            .map_err(|_| "the connection stayed busy".to_owned())?
            .map_err(|e| format!("HTTP: {e}"))?;
        let mut request = Request::post(path).header(hyper::header::HOST, self.target.authority.as_str());
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| format!("building the request: {e}"))?;
        let response = tokio::time::timeout(TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| "no answer in time".to_owned())?
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status();
        // Read (bounded) so that the connection can carry the next request.
        let body =
            tokio::time::timeout(TIMEOUT, http_body_util::Limited::new(response.into_body(), 64 * 1024).collect())
                .await
                .map_err(|_| "the answer's body did not arrive in time".to_owned())?
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
        Ok((status, body))
    }
}
