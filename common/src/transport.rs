//! How agents and clients reach the administrator: `https://` with TLS (trusting the system's
//! roots, or the CA given), optionally presenting a client certificate for mutual TLS; or
//! plaintext `http://`, for loopback development and TLS-terminating meshes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// The TLS material a caller brings (`--ca`, `--cert`, `--key`).
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// Trust anchors for the administrator's certificate (PEM); the system's roots without.
    pub ca: Option<PathBuf>,
    /// A client certificate chain (PEM), for mutual TLS.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
}

impl ClientTls {
    fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} `{}`", path.display()))
}

/// A PEM file's bytes and every certificate in it; a file with none is an error. Shared by
/// the administrator (its chain, the client CA) and its callers (the CA, a client chain).
pub fn read_certificates(path: &Path, what: &str) -> anyhow::Result<(Vec<u8>, Vec<CertificateDer<'static>>)> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("the {what} `{}` is not PEM", path.display()))?;
    if certs.is_empty() {
        bail!("the {what} `{}` holds no PEM certificate", path.display());
    }
    Ok((pem, certs))
}

/// A PEM file's bytes and the private key in it (PKCS#8, PKCS#1 or SEC1).
pub fn read_private_key(path: &Path, what: &str) -> anyhow::Result<(Vec<u8>, PrivateKeyDer<'static>)> {
    let pem = read(path, what)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).with_context(|| {
        format!("the {what} `{}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())
    })?;
    Ok((pem, key))
}

/// An endpoint for `url` with the TLS settings its scheme calls for. TLS material with an
/// `http://` URL is an error rather than a silent downgrade, and every file is read and
/// checked here, before the first connection.
pub fn endpoint(url: &str, tls: &ClientTls) -> anyhow::Result<Endpoint> {
    let endpoint = Endpoint::from_shared(url.to_owned()).with_context(|| format!("`{url}` is not a URL"))?;
    let endpoint = match endpoint.uri().scheme_str() {
        Some("https") => {
            let mut config = ClientTlsConfig::new();
            config = match &tls.ca {
                Some(path) => config.ca_certificate(Certificate::from_pem(read_certificates(path, "CA")?.0)),
                None => config.with_native_roots(),
            };
            match (&tls.cert, &tls.key) {
                (Some(cert), Some(key)) => {
                    let (cert, _) = read_certificates(cert, "client certificate")?;
                    let (key, _) = read_private_key(key, "client key")?;
                    config = config.identity(Identity::from_pem(cert, key));
                }
                (None, None) => {}
                _ => bail!("`--cert` and `--key` go together"),
            }
            endpoint.tls_config(config).context("configuring TLS")?
        }
        Some("http") => {
            if tls.any() {
                bail!("`--ca`, `--cert` and `--key` need an `https://` URL, and `{url}` is plaintext");
            }
            endpoint
        }
        _ => bail!("`{url}`: the administrator's URL starts with `https://` (or `http://` for plaintext)"),
    };
    Ok(endpoint.connect_timeout(Duration::from_secs(10)))
}

/// Is `url` plaintext to a host other than this machine? (Tokens would cross a network in
/// clear; callers warn.)
pub fn is_remote_plaintext(url: &str) -> bool {
    let Ok(uri) = url.parse::<tonic::codegen::http::Uri>() else { return false };
    if uri.scheme_str() != Some("http") {
        return false;
    }
    match uri.host() {
        Some("localhost") | None => false,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .map_or(true, |ip| !ip.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_with_a_plaintext_url_is_an_error() {
        let tls = ClientTls { ca: Some("ca.pem".into()), ..Default::default() };
        let error = endpoint("http://127.0.0.1:50051", &tls).unwrap_err().to_string();
        assert!(error.contains("need an `https://` URL"), "{error}");
        assert!(endpoint("ftp://example.com", &ClientTls::default()).is_err());
        let half = ClientTls { cert: Some("c.pem".into()), ..Default::default() };
        assert!(endpoint("https://example.com", &half).is_err());
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error_before_connecting() {
        let missing = ClientTls { ca: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        assert!(format!("{:#}", endpoint("https://example.com", &missing).unwrap_err()).contains("reading the CA"));
        let dir = std::env::temp_dir().join(format!("estate-transport-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = endpoint("https://example.com", &ClientTls { ca: Some(empty), ..Default::default() }).unwrap_err();
        assert!(error.to_string().contains("holds no PEM certificate"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn remote_plaintext_is_recognised() {
        assert!(is_remote_plaintext("http://10.0.0.5:50051"));
        assert!(is_remote_plaintext("http://admin.example.com:50051"));
        assert!(!is_remote_plaintext("http://127.0.0.1:50051"));
        assert!(!is_remote_plaintext("http://[::1]:50051"));
        assert!(!is_remote_plaintext("http://localhost:50051"));
        assert!(!is_remote_plaintext("https://admin.example.com"));
    }
}
