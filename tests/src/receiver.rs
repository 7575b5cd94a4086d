//! A local HTTPS receiver of webhook deliveries, as a security team's endpoint would be: it
//! checks each request's HMAC-SHA256 signature with its own implementation (the `hmac`
//! crate, not the administrator's), answers 200, and hands the test every request it
//! received, signature verdict included.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::pki::Pki;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// `X-Estate-Signature` is the HMAC-SHA256 of `X-Estate-Timestamp`, `.`, and the body
    /// under the shared secret.
    pub signature_valid: bool,
}

impl Received {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("the body is not JSON")
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    /// The CA that issued the receiver's certificate (for the sink's `ca_file`).
    pub ca_path: std::path::PathBuf,
    pub requests: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    /// Listens on a free loopback port with a certificate of a new CA written under `dir`.
    pub async fn start(dir: &std::path::Path, secret: &str) -> anyhow::Result<Self> {
        let pki = Pki::new(dir, "receiver")?;
        let issued = pki.server("receiver", "receiver")?;
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&issued.cert)?.collect::<Result<_, _>>()?;
        let key = PrivateKeyDer::from_pem_file(&issued.key)?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, requests) = mpsc::unbounded_channel();
        let secret = secret.as_bytes().to_vec();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, tx, secret) = (acceptor.clone(), tx.clone(), secret.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let (tx, secret) = (tx.clone(), secret.clone());
                        async move {
                            let path = request.uri().path().to_owned();
                            let headers: BTreeMap<String, String> = request
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())
                                })
                                .collect();
                            let body = request.into_body().collect().await?.to_bytes().to_vec();
                            let signature_valid = verify(&secret, &headers, &body);
                            let _ = tx.send(Received { path, headers, body, signature_valid });
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        Ok(Self { addr, ca_path: pki.ca_path.clone(), requests })
    }

    /// The next request, within `timeout`.
    pub async fn next(&mut self, timeout: std::time::Duration) -> anyhow::Result<Received> {
        tokio::time::timeout(timeout, self.requests.recv())
            .await
            .context("no webhook request in time")?
            .context("the receiver stopped")
    }
}

fn verify(secret: &[u8], headers: &BTreeMap<String, String>, body: &[u8]) -> bool {
    let (Some(timestamp), Some(signature)) = (headers.get("x-estate-timestamp"), headers.get("x-estate-signature"))
    else {
        return false;
    };
    let Some(Ok(signature)) = signature.strip_prefix("v1=").map(hex::decode) else { return false };
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret) else { return false };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}
