//! TLS for both listeners: one certificate and key (PEM) serve gRPC and HTTPS; a client CA,
//! when given, makes gRPC require a client certificate it signed (mutual TLS) and lets HTTPS
//! verify one when a browser or scraper offers it.
//!
//! The rustls configurations sit behind a lock and are rebuilt from the files by
//! [`Tls::reload`] (SIGHUP): each new connection takes the current one, established
//! connections keep theirs, so rotating a certificate drops no stream. Handshakes run off the
//! accept loop, each bounded in time, so a slow or hostile peer cannot stall the listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use estate_common::transport::{read_certificates, read_private_key};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::auth::describe_certificate;

/// Handshakes in flight at once per listener; further connections wait in the kernel's
/// backlog.
const MAX_HANDSHAKES: usize = 256;
/// A peer that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// Accepts TCP connections on `listener` and yields those whose TLS handshake succeeded,
    /// with the peer's address. Refused handshakes are logged; the loop never stops on one.
    pub fn incoming(
        self: &Arc<Self>,
        listener: TcpListener,
        kind: Listener,
    ) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
        let (tx, rx) = mpsc::channel(64);
        let tls = Arc::clone(self);
        tokio::spawn(async move {
            let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
            loop {
                let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else { return };
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Without TCP_NODELAY, multi-segment responses wait for delayed ACKs (~40 ms).
                let _ = tcp.set_nodelay(true);
                if tx.is_closed() {
                    return;
                }
                let acceptor = tls.acceptor(kind);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(error)) => log_refusal(kind, peer, &error),
                        Err(_) => tracing::debug!(?kind, %peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        rx
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
            tracing::warn!(subject = %describe_certificate(end_entity), %error, "refused: client certificate");
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

/// The HTTP listener over TLS, for `axum::serve`.
#[derive(Debug)]
pub struct HttpsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl HttpsListener {
    pub fn new(tls: &Arc<Tls>, listener: TcpListener) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self { incoming: tls.incoming(listener, Listener::Http), local })
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some((stream, addr)) => {
                let certificate = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned();
                (stream, Peer { addr, certificate: certificate.map(|c| Arc::new(c.into_owned())) })
            }
            // The accept loop only ends with the runtime; wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer { addr: self.local, certificate: None })
    }
}

/// Who is on the other end of an HTTP connection: the address, and the client certificate
/// when TLS verified one.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub certificate: Option<Arc<CertificateDer<'static>>>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, HttpsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, HttpsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        Self { addr: *stream.remote_addr(), certificate: None }
    }
}
