//! TLS for both listeners: one certificate and key (PEM) serve gRPC and HTTPS; a client CA,
//! when given, makes gRPC require a client certificate it signed (mutual TLS) and lets HTTPS
//! verify one when a browser or scraper offers it.
//!
//! The rustls configurations sit behind a lock and are rebuilt from the files by
//! [`Tls::reload`] (SIGHUP): each new connection takes the current one, established
//! connections keep theirs, so rotating a certificate drops no stream. Handshakes run in
//! `edge.rs`'s accept loop, each in its own task, bounded in time and in number per address,
//! so a slow or hostile peer cannot stall the listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use estate_common::text::for_log;
use estate_common::transport::{read_certificates, read_private_key};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::api::auth::describe_certificate;

/// Where the administrator's TLS material lives (PEM files).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Trust anchors for client certificates; with it, gRPC callers need one (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug)]
struct Configs {
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
}

/// The administrator's TLS state: the files and the configurations built from them.
#[derive(Debug)]
pub struct Tls {
    files: TlsFiles,
    configs: RwLock<Configs>,
}

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Grpc,
    Http,
}

impl Tls {
    /// Reads and checks the files; an unreadable or mismatched file is an error here, at
    /// start-up, rather than at the first handshake.
    pub fn load(files: TlsFiles) -> anyhow::Result<Self> {
        let configs = build(&files)?;
        Ok(Self { files, configs: RwLock::new(configs) })
    }

    /// Reads the files again. On any error the configuration in force stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let configs = build(&self.files)?;
        *self.configs.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = configs;
        Ok(())
    }

    /// Does gRPC require client certificates?
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    fn acceptor(&self, listener: Listener) -> TlsAcceptor {
        let configs = self.configs.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        TlsAcceptor::from(Arc::clone(match listener {
            Listener::Grpc => &configs.grpc,
            Listener::Http => &configs.http,
        }))
    }

    /// Runs the TLS handshake of a connection that arrived on `kind`'s listener; a refusal
    /// is logged (the accept loop in `edge.rs` bounds it in time).
    pub async fn handshake(
        &self,
        kind: Listener,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        self.acceptor(kind).accept(tcp).await.inspect_err(|error| log_refusal(kind, peer, error))
    }
}

fn log_refusal(kind: Listener, peer: SocketAddr, error: &std::io::Error) {
    let tls_error = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls_error {
        Some(
            error @ (rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::PeerIncompatible(_)
            | rustls::Error::PeerMisbehaved(_)
            | rustls::Error::AlertReceived(_)),
        ) => tracing::warn!(?kind, %peer, %error, "refused: TLS handshake failed"),
        _ => tracing::debug!(?kind, %peer, %error, "TLS handshake failed"),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(files: &TlsFiles) -> anyhow::Result<Configs> {
    let (_, chain) = read_certificates(&files.cert, "TLS certificate")?;
    let (_, key) = read_private_key(&files.key, "TLS key")?;
    let verifiers = match &files.client_ca {
        None => None,
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certificates(path, "client CA")?.1 {
                roots.add(cert).with_context(|| format!("a certificate in the client CA `{}`", path.display()))?;
            }
            let roots = Arc::new(roots);
            let required = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
                .build()
                .context("building the client certificate verifier")?;
            let optional = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .allow_unauthenticated()
                .build()
                .context("building the client certificate verifier")?;
            Some((required, optional))
        }
    };
    let config = |verifier: Option<Arc<dyn ClientCertVerifier>>, alpn: &[u8]| -> anyhow::Result<Arc<ServerConfig>> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("choosing TLS versions")?;
        let builder = match verifier {
            Some(verifier) => builder.with_client_cert_verifier(Arc::new(LoggingVerifier(verifier))),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain.clone(), key.clone_key())
            .with_context(|| format!("the key `{}` does not match `{}`", files.key.display(), files.cert.display()))?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(config))
    };
    let (grpc_verifier, http_verifier) = match verifiers {
        Some((required, optional)) => (Some(required), Some(optional)),
        None => (None, None),
    };
    Ok(Configs { grpc: config(grpc_verifier, b"h2")?, http: config(http_verifier, b"http/1.1")? })
}

/// Checks client certificates with webpki and logs each refusal with the certificate's
/// subject (the handshake error alone does not say who it was).
#[derive(Debug)]
struct LoggingVerifier(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for LoggingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.verify_client_cert(end_entity, intermediates, now).inspect_err(|error| {
            tracing::warn!(subject = %for_log(&describe_certificate(end_entity)), %error, "refused: client certificate");
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Who is on the other end of an HTTP connection: the address, and the client certificate
/// when TLS verified one.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub certificate: Option<Arc<CertificateDer<'static>>>,
}
