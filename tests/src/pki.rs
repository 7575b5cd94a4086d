//! A throwaway private CA for the TLS tests and benchmarks: issues the administrator's
//! certificate (for `127.0.0.1` and `localhost`) and client certificates that may name an
//! Estate identity (`estate:agent:ACCOUNT`, `estate:client:ROLE`), and writes each as PEM
//! files in a directory.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use time::{Duration, OffsetDateTime};

/// A certificate and key written to disk.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a client certificate should look like.
#[derive(Debug, Clone, Default)]
pub struct ClientSpec<'a> {
    /// The identity URI (`estate:agent:111111111111`), if any.
    pub identity: Option<&'a str>,
    /// Issue it already expired.
    pub expired: bool,
}

/// A CA whose key stays in memory; files land in `dir`.
pub struct Pki {
    dir: PathBuf,
    name: String,
    ca: Certificate,
    ca_key: KeyPair,
    pub ca_path: PathBuf,
}

impl Pki {
    /// A new CA named `name`, written to `dir/name-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(3);
        params.not_after = now + Duration::days(30);
        let ca = params.self_signed(&ca_key)?;
        let ca_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_path, ca.pem()).with_context(|| format!("writing `{}`", ca_path.display()))?;
        Ok(Self { dir: dir.to_owned(), name: name.to_owned(), ca, ca_key, ca_path })
    }

    /// A server certificate for `127.0.0.1` and `localhost` with common name `common_name`.
    pub fn server(&self, file_stem: &str, common_name: &str) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, file_stem, false)
    }

    /// A client certificate with common name `common_name`.
    pub fn client(&self, file_stem: &str, common_name: &str, spec: ClientSpec<'_>) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if let Some(uri) = spec.identity {
            params.subject_alt_names.push(SanType::URI(uri.try_into()?));
        }
        self.issue(params, file_stem, spec.expired)
    }

    fn issue(&self, mut params: CertificateParams, file_stem: &str, expired: bool) -> anyhow::Result<Issued> {
        let now = OffsetDateTime::now_utc();
        (params.not_before, params.not_after) = if expired {
            (now - Duration::days(2), now - Duration::days(1))
        } else {
            (now - Duration::days(1), now + Duration::days(7))
        };
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca, &self.ca_key)?;
        let issued = Issued {
            cert: self.dir.join(format!("{}-{file_stem}.pem", self.name)),
            key: self.dir.join(format!("{}-{file_stem}-key.pem", self.name)),
        };
        std::fs::write(&issued.cert, cert.pem())?;
        std::fs::write(&issued.key, key.serialize_pem())?;
        Ok(issued)
    }
}
