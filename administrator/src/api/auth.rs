//! Who is calling: bearer tokens mapped to agents (bound to one account), hubs (bound to a set
//! of accounts: a list, or the organization's), and clients (with a role), or the
//! unauthenticated loopback development mode.
//!
//! The token table is replaced whole on SIGHUP (see `server.rs`), so that a leaked token is
//! revoked without a restart.
//!
//! Over mutual TLS a client certificate can name the caller too, in a URI subject alternative
//! name: `estate:agent:ACCOUNT` for an agent, `estate:hub:NAME` for a hub, `estate:client:ROLE`
//! (`read-only` or `operator`) for a client. When it does, the token must name the same identity; with
//! `require_certificate_identity` in the config, a token alone is not enough.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use tonic::Request;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use estate_common::model::AccountId;
use estate_common::text::for_log;

use crate::api::error::ServiceError;

/// What the administrator keeps of a token: its SHA-256, never the token itself.
pub type TokenDigest = [u8; 32];

pub fn digest(token: &str) -> TokenDigest {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// May read the inventory, statistics and members.
    ReadOnly,
    /// May also ask for refreshes.
    Operator,
}

impl Role {
    const ALL: [Role; 2] = [Role::ReadOnly, Role::Operator];

    /// The name the config and certificates use.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::Operator => "operator",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

/// The identity a client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateClaim {
    Agent { account_id: AccountId },
    Hub { name: String },
    Client { role: Role },
}

/// The most bytes of a hub's name (config and certificates).
pub const MAX_HUB_NAME_BYTES: usize = 64;

/// A hub's name: 1 to [`MAX_HUB_NAME_BYTES`] letters, digits, `.`, `_` or `-`.
pub fn is_hub_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HUB_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The accounts a hub may report for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubAccounts {
    /// Every account of the organization, as the administrator knows it when the hub reports.
    Organization,
    Listed(BTreeSet<AccountId>),
}

/// What the administrator reads from a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The subject's distinguished name, for logs.
    pub subject: String,
    pub claim: Option<CertificateClaim>,
}

const CLAIM_PREFIX: &str = "estate:";

impl PeerCertificate {
    /// Reads the subject and the `estate:` URI names of a DER certificate. More than one
    /// `estate:` name, or one this administrator cannot read, is an error: a certificate
    /// must not be read two ways.
    pub fn parse(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("unreadable client certificate: {e}"))?;
        let subject = cert.subject().to_string();
        let mut claims = Vec::new();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| format!("client certificate `{subject}`: unreadable subject alternative names: {e}"))?;
        for name in san.iter().flat_map(|san| san.value.general_names.iter()) {
            if let GeneralName::URI(uri) = name {
                if let Some(rest) = uri.strip_prefix(CLAIM_PREFIX) {
                    claims.push(parse_claim(rest).ok_or_else(|| {
                        format!(
                            "client certificate `{subject}` names `{uri}`, which is none of \
                             `estate:agent:ACCOUNT`, `estate:hub:NAME` and `estate:client:read-only|operator`"
                        )
                    })?);
                }
            }
        }
        if claims.len() > 1 {
            return Err(format!("client certificate `{subject}` names more than one Estate identity"));
        }
        Ok(Self { subject, claim: claims.pop() })
    }
}

fn parse_claim(rest: &str) -> Option<CertificateClaim> {
    match rest.split_once(':')? {
        ("agent", account) => AccountId::parse(account).ok().map(|account_id| CertificateClaim::Agent { account_id }),
        ("hub", name) if is_hub_name(name) => Some(CertificateClaim::Hub { name: name.to_owned() }),
        ("client", role) => Role::parse(role).map(|role| CertificateClaim::Client { role }),
        _ => None,
    }
}

/// A certificate's subject for a log line, or why it could not be read.
pub fn describe_certificate(der: &CertificateDer<'_>) -> String {
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => cert.subject().to_string(),
        Err(_) => "(unreadable certificate)".to_owned(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Agent {
        name: String,
        account_id: AccountId,
    },
    /// One process that reports for many accounts (`estate-agent hub`).
    Hub {
        name: String,
        accounts: HubAccounts,
    },
    Client {
        name: String,
        role: Role,
    },
    /// Loopback development mode: no authentication at all.
    Development,
}

impl Identity {
    pub fn name(&self) -> &str {
        match self {
            Self::Agent { name, .. } | Self::Hub { name, .. } | Self::Client { name, .. } => name,
            Self::Development => "development",
        }
    }

    /// Who holds a report stream, for telling two reporters of one account apart: an agent
    /// and a hub may share a name.
    pub fn reporter(&self) -> String {
        match self {
            Self::Agent { name, .. } => format!("agent `{name}`"),
            Self::Hub { name, .. } => format!("hub `{name}`"),
            Self::Client { name, .. } => format!("client `{name}`"),
            Self::Development => "a development-mode agent".to_owned(),
        }
    }

    /// May this caller report for `account_id`? `in_organization`: the account is one of the
    /// organization's now (for a hub of the organization's accounts).
    pub fn may_report_for(&self, account_id: &AccountId, in_organization: bool) -> bool {
        match self {
            Self::Agent { account_id: own, .. } => own == account_id,
            Self::Hub { accounts: HubAccounts::Listed(listed), .. } => listed.contains(account_id),
            Self::Hub { accounts: HubAccounts::Organization, .. } => in_organization,
            Self::Development => true,
            Self::Client { .. } => false,
        }
    }

    pub fn may_read(&self) -> bool {
        matches!(self, Self::Client { .. } | Self::Development)
    }

    pub fn may_operate(&self) -> bool {
        matches!(self, Self::Client { role: Role::Operator, .. } | Self::Development)
    }
}

/// Token digest → who presents it.
pub type Identities = HashMap<TokenDigest, Identity>;

/// Resolves the `authorization: Bearer <token>` header of every request, and the client
/// certificate when mutual TLS verified one.
///
/// Clones share one token table, which [`Authenticator::replace_tokens`] swaps whole (SIGHUP):
/// every request after the swap is judged by the new table, none by a mix of both.
#[derive(Debug, Clone)]
pub struct Authenticator {
    identities: Option<Arc<RwLock<Arc<Identities>>>>,
    require_certificate_identity: bool,
}

/// What a token reload took away: callers whose tokens no longer name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    /// Agents and hubs whose token was removed (or now names someone else), as
    /// [`Identity::reporter`] names them: the report streams they opened end, whatever their
    /// accounts, and only theirs.
    pub reporters: BTreeSet<String>,
    /// How many tokens, of agents, hubs and clients, no longer name who they named.
    pub tokens: usize,
}

impl Authenticator {
    pub fn with_tokens(identities: Identities) -> Self {
        Self { identities: Some(Arc::new(RwLock::new(Arc::new(identities)))), require_certificate_identity: false }
    }

    /// Replaces the token table of this authenticator and all its clones at once, and says
    /// which callers lost their token. Development mode has no tokens: nothing changes.
    pub fn replace_tokens(&self, new: Identities) -> Revoked {
        let Some(table) = &self.identities else { return Revoked::default() };
        let new = Arc::new(new);
        let old = std::mem::replace(&mut *table.write().unwrap_or_else(|e| e.into_inner()), Arc::clone(&new));
        let mut revoked = Revoked::default();
        for (digest, identity) in old.iter() {
            if new.get(digest) == Some(identity) {
                continue;
            }
            revoked.tokens += 1;
            if matches!(identity, Identity::Agent { .. } | Identity::Hub { .. }) {
                revoked.reporters.insert(identity.reporter());
            }
        }
        revoked
    }

    /// The token table in force now.
    fn table(&self) -> Option<Arc<Identities>> {
        self.identities.as_ref().map(|table| Arc::clone(&table.read().unwrap_or_else(|e| e.into_inner())))
    }

    /// Also require a client certificate that names the caller (see the module's notes).
    pub fn requiring_certificate_identity(self, require: bool) -> Self {
        Self { require_certificate_identity: require, ..self }
    }

    /// Does this authenticator require a certificate naming the caller besides the token?
    pub fn requires_certificate_identity(&self) -> bool {
        self.require_certificate_identity
    }

    pub fn development() -> Self {
        Self { identities: None, require_certificate_identity: false }
    }

    pub fn identify<T>(&self, request: &Request<T>) -> Result<Identity, ServiceError> {
        let authorization = match request.metadata().get("authorization") {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| ServiceError::unauthenticated("`authorization` metadata is not `Bearer <token>`"))?,
            ),
        };
        let certificates = request.peer_certs();
        self.identify_parts(authorization, certificates.as_ref().and_then(|c| c.first()))
    }

    /// The caller named by an `authorization` value and the peer's verified certificate.
    pub fn identify_parts(
        &self,
        authorization: Option<&str>,
        certificate: Option<&CertificateDer<'_>>,
    ) -> Result<Identity, ServiceError> {
        let Some(identities) = self.table() else {
            return Ok(Identity::Development);
        };
        let peer = match certificate.map(|der| PeerCertificate::parse(der)) {
            None => None,
            Some(Ok(peer)) => Some(peer),
            Some(Err(reason)) => {
                tracing::warn!(reason = %for_log(&reason), "refused: client certificate");
                return Err(ServiceError::unauthenticated(reason));
            }
        };
        let subject = peer.as_ref().map_or("(no client certificate)", |p| p.subject.as_str());
        let refuse = |error: ServiceError| {
            tracing::warn!(subject = %for_log(subject), reason = %for_log(&error.to_string()), "refused");
            error
        };
        // No credentials at all (a browser before its login, a probe) is routine: not a warning.
        let header = authorization.ok_or_else(|| {
            tracing::debug!(subject = %for_log(subject), "refused: no token");
            ServiceError::unauthenticated("missing `authorization: Bearer <token>` metadata")
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| refuse(ServiceError::unauthenticated("`authorization` metadata is not `Bearer <token>`")))?;
        let identity = identities
            .get(&digest(token.trim()))
            .cloned()
            .ok_or_else(|| refuse(ServiceError::unauthenticated("unknown token")))?;
        match (peer.as_ref().and_then(|p| p.claim.as_ref()), &identity) {
            (Some(CertificateClaim::Agent { account_id: named }), Identity::Agent { account_id, .. })
                if named == account_id => {}
            (Some(CertificateClaim::Hub { name: named }), Identity::Hub { name, .. }) if named == name => {}
            (Some(CertificateClaim::Client { role: named }), Identity::Client { role, .. }) if named == role => {}
            (Some(claim), _) => {
                return Err(refuse(ServiceError::Forbidden(format!(
                    "the client certificate names {} but the token is `{}`'s ({})",
                    describe_claim(claim),
                    identity.name(),
                    describe_identity(&identity)
                ))))
            }
            (None, _) if self.require_certificate_identity => {
                return Err(refuse(ServiceError::unauthenticated(
                    "this administrator requires a client certificate naming the caller \
                     (`estate:agent:ACCOUNT`, `estate:hub:NAME` or `estate:client:ROLE`) as well as a token",
                )))
            }
            (None, _) => {}
        }
        Ok(identity)
    }

    /// For RPCs that change something (refreshes, findings filters): the caller must be an
    /// operator.
    pub fn operator<T>(&self, request: &Request<T>) -> Result<Identity, ServiceError> {
        Self::must_operate(self.reader(request)?)
    }

    fn must_operate(identity: Identity) -> Result<Identity, ServiceError> {
        if identity.may_operate() {
            Ok(identity)
        } else {
            Err(ServiceError::forbidden(format!(
                "`{}` is read-only; this change needs the operator role",
                identity.name()
            )))
        }
    }

    /// For client RPCs: the caller must be a client (or development mode).
    pub fn reader<T>(&self, request: &Request<T>) -> Result<Identity, ServiceError> {
        Self::must_read(self.identify(request)?)
    }

    /// [`Self::operator`] for the HTTP side.
    pub fn operator_parts(
        &self,
        authorization: Option<&str>,
        certificate: Option<&CertificateDer<'_>>,
    ) -> Result<Identity, ServiceError> {
        Self::must_operate(self.reader_parts(authorization, certificate)?)
    }

    /// [`Self::reader`] for the HTTP side.
    pub fn reader_parts(
        &self,
        authorization: Option<&str>,
        certificate: Option<&CertificateDer<'_>>,
    ) -> Result<Identity, ServiceError> {
        Self::must_read(self.identify_parts(authorization, certificate)?)
    }

    fn must_read(identity: Identity) -> Result<Identity, ServiceError> {
        if identity.may_read() {
            Ok(identity)
        } else {
            Err(ServiceError::forbidden(format!(
                "`{}` reports (an agent or a hub); it is not a client",
                identity.name()
            )))
        }
    }
}

fn describe_claim(claim: &CertificateClaim) -> String {
    match claim {
        CertificateClaim::Agent { account_id } => format!("the agent of account `{account_id}`"),
        CertificateClaim::Hub { name } => format!("hub `{name}`"),
        CertificateClaim::Client { role } => format!("a client with role `{}`", role.as_str()),
    }
}

fn describe_identity(identity: &Identity) -> String {
    match identity {
        Identity::Agent { account_id, .. } => {
            describe_claim(&CertificateClaim::Agent { account_id: account_id.clone() })
        }
        Identity::Hub { name, .. } => describe_claim(&CertificateClaim::Hub { name: name.clone() }),
        Identity::Client { role, .. } => describe_claim(&CertificateClaim::Client { role: *role }),
        Identity::Development => "development mode".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};
    use tonic::Code;

    fn certificate(common_name: &str, uris: &[&str]) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        for uri in uris {
            params.subject_alt_names.push(SanType::URI((*uri).try_into().unwrap()));
        }
        params.self_signed(&KeyPair::generate().unwrap()).unwrap().der().clone()
    }

    fn authenticator(require: bool) -> Authenticator {
        let identities = HashMap::from([
            (
                digest("agent-a-token"),
                Identity::Agent { name: "a".into(), account_id: "111111111111".parse().unwrap() },
            ),
            (digest("ops-token"), Identity::Client { name: "ops".into(), role: Role::Operator }),
            (
                digest("hub-token"),
                Identity::Hub {
                    name: "central".into(),
                    accounts: HubAccounts::Listed(["111111111111".parse().unwrap()].into()),
                },
            ),
        ]);
        Authenticator::with_tokens(identities).requiring_certificate_identity(require)
    }

    #[test]
    fn certificates_name_agents_and_clients_in_uri_names() {
        let agent = PeerCertificate::parse(&certificate("agent", &["estate:agent:111111111111"])).unwrap();
        assert_eq!(agent.claim, Some(CertificateClaim::Agent { account_id: "111111111111".parse().unwrap() }));
        assert_eq!(agent.subject, "CN=agent");
        let ops =
            PeerCertificate::parse(&certificate("ops", &["https://example.com", "estate:client:operator"])).unwrap();
        assert_eq!(ops.claim, Some(CertificateClaim::Client { role: Role::Operator }));
        assert_eq!(PeerCertificate::parse(&certificate("plain", &["https://example.com"])).unwrap().claim, None);
        for bad in [
            &["estate:agent:12"][..],
            &["estate:client:root"],
            &["estate:agent:111111111111", "estate:client:operator"],
        ] {
            assert!(PeerCertificate::parse(&certificate("bad", bad)).is_err(), "{bad:?}");
        }
        assert!(PeerCertificate::parse(b"not DER").is_err());
    }

    /// A hub reports for exactly its accounts: its list, or the organization's as the
    /// administrator knows them; a certificate names it as `estate:hub:NAME`.
    #[test]
    fn a_hub_reports_for_its_accounts_and_its_certificate_names_it() {
        let (a, b): (AccountId, AccountId) = ("111111111111".parse().unwrap(), "222222222222".parse().unwrap());
        let listed = Identity::Hub { name: "h".into(), accounts: HubAccounts::Listed([a.clone()].into()) };
        assert!(listed.may_report_for(&a, false) && !listed.may_report_for(&b, true));
        let organization = Identity::Hub { name: "h".into(), accounts: HubAccounts::Organization };
        assert!(organization.may_report_for(&b, true) && !organization.may_report_for(&b, false));
        assert_ne!(listed.reporter(), Identity::Agent { name: "h".into(), account_id: a }.reporter());
        let hub = PeerCertificate::parse(&certificate("hub", &["estate:hub:central"])).unwrap();
        assert_eq!(hub.claim, Some(CertificateClaim::Hub { name: "central".into() }));
        for bad in ["estate:hub:", "estate:hub:a b", "estate:hub:a/b"] {
            assert!(PeerCertificate::parse(&certificate("bad", &[bad])).is_err(), "{bad}");
        }
        let auth = authenticator(false);
        let other_hub = certificate("other", &["estate:hub:elsewhere"]);
        assert!(auth
            .identify_parts(Some("Bearer hub-token"), Some(&certificate("hub", &["estate:hub:central"])))
            .is_ok());
        let refused = auth.identify_parts(Some("Bearer hub-token"), Some(&other_hub)).unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        let agent_cert = certificate("a", &["estate:agent:111111111111"]);
        assert_eq!(
            auth.identify_parts(Some("Bearer hub-token"), Some(&agent_cert)).unwrap_err().code(),
            Code::PermissionDenied
        );
    }

    #[test]
    fn a_certificate_and_a_token_must_name_the_same_caller() {
        let auth = authenticator(false);
        let a = certificate("a", &["estate:agent:111111111111"]);
        let b = certificate("b", &["estate:agent:222222222222"]);
        let ops = certificate("ops", &["estate:client:operator"]);
        let viewer = certificate("viewer", &["estate:client:read-only"]);
        let plain = certificate("plain", &[]);
        assert!(auth.identify_parts(Some("Bearer agent-a-token"), Some(&a)).is_ok());
        assert!(auth.identify_parts(Some("Bearer agent-a-token"), None).is_ok());
        assert!(auth.identify_parts(Some("Bearer agent-a-token"), Some(&plain)).is_ok());
        assert!(auth.identify_parts(Some("Bearer ops-token"), Some(&ops)).is_ok());
        for (token, cert) in [("agent-a-token", &b), ("agent-a-token", &ops), ("ops-token", &a), ("ops-token", &viewer)]
        {
            let status = auth.identify_parts(Some(&format!("Bearer {token}")), Some(cert)).unwrap_err();
            assert_eq!(status.code(), Code::PermissionDenied, "{token}: {status:?}");
        }
        let unknown = auth.identify_parts(Some("Bearer nope"), Some(&a)).unwrap_err();
        assert_eq!(unknown.code(), Code::Unauthenticated);
        assert_eq!(auth.identify_parts(None, Some(&a)).unwrap_err().code(), Code::Unauthenticated);
    }

    #[test]
    fn replaced_tokens_apply_to_every_clone_at_once() {
        let auth = authenticator(false);
        let shared = auth.clone();
        let a = Identity::Agent { name: "a".into(), account_id: "111111111111".parse().unwrap() };
        let b = Identity::Agent { name: "b".into(), account_id: "222222222222".parse().unwrap() };
        // The agent of 111… keeps its token, ops and the hub lose theirs, a new agent 222…
        // arrives: the hub's streams are to end, wherever they are.
        let revoked =
            auth.replace_tokens(HashMap::from([(digest("agent-a-token"), a.clone()), (digest("agent-b-token"), b)]));
        let reporters = BTreeSet::from(["hub `central`".to_owned()]);
        assert_eq!(revoked, Revoked { reporters, tokens: 2 });
        let refused = shared.identify_parts(Some("Bearer ops-token"), None).unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert_eq!(shared.identify_parts(Some("Bearer agent-a-token"), None).unwrap(), a);
        assert!(shared.identify_parts(Some("Bearer agent-b-token"), None).is_ok());
        // A revoked agent token names its agent, whose open streams must end.
        let revoked = shared.replace_tokens(HashMap::from([(digest("agent-a-token"), a)]));
        assert_eq!(revoked.reporters, BTreeSet::from(["agent `b`".to_owned()]));
        assert_eq!(auth.identify_parts(Some("Bearer agent-b-token"), None).unwrap_err().code(), Code::Unauthenticated);
        // Development mode has no tokens to replace.
        let development = Authenticator::development();
        assert_eq!(development.replace_tokens(HashMap::new()), Revoked::default());
        assert_eq!(development.identify_parts(None, None).unwrap(), Identity::Development);
    }

    #[test]
    fn when_required_a_token_alone_is_not_enough() {
        let auth = authenticator(true);
        let a = certificate("a", &["estate:agent:111111111111"]);
        assert!(auth.identify_parts(Some("Bearer agent-a-token"), Some(&a)).is_ok());
        for cert in [None, Some(certificate("plain", &[]))] {
            let status = auth.identify_parts(Some("Bearer agent-a-token"), cert.as_ref()).unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated);
            assert!(status.message().contains("requires a client certificate"), "{status:?}");
        }
        assert_eq!(Authenticator::development().identify_parts(None, None).unwrap(), Identity::Development);
    }
}
