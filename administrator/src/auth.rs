//! Who is calling: bearer tokens mapped to agents (bound to one account) and clients (with a
//! role), or the unauthenticated loopback development mode.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use tonic::{Request, Status};

use crate::config::{digest, TokenDigest};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// May read the inventory, statistics and members.
    ReadOnly,
    /// May also ask for refreshes.
    Operator,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Agent {
        name: String,
        account_id: String,
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
            Self::Agent { name, .. } | Self::Client { name, .. } => name,
            Self::Development => "development",
        }
    }

    /// May this caller report for `account_id`?
    pub fn may_report_for(&self, account_id: &str) -> bool {
        match self {
            Self::Agent { account_id: own, .. } => own == account_id,
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

/// Resolves the `authorization: Bearer <token>` header of every request.
#[derive(Debug, Clone)]
pub struct Authenticator {
    identities: Option<Arc<HashMap<TokenDigest, Identity>>>,
}

impl Authenticator {
    pub fn with_tokens(identities: HashMap<TokenDigest, Identity>) -> Self {
        Self { identities: Some(Arc::new(identities)) }
    }

    pub fn development() -> Self {
        Self { identities: None }
    }

    pub fn identify<T>(&self, request: &Request<T>) -> Result<Identity, Status> {
        let Some(identities) = &self.identities else {
            return Ok(Identity::Development);
        };
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <token>` metadata"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("`authorization` metadata is not `Bearer <token>`"))?;
        identities.get(&digest(token.trim())).cloned().ok_or_else(|| Status::unauthenticated("unknown token"))
    }

    /// For RPCs that change something (refreshes): the caller must be an operator.
    pub fn operator<T>(&self, request: &Request<T>) -> Result<Identity, Status> {
        let identity = self.reader(request)?;
        if identity.may_operate() {
            Ok(identity)
        } else {
            Err(Status::permission_denied(format!(
                "`{}` is read-only; refreshes need the operator role",
                identity.name()
            )))
        }
    }

    /// For client RPCs: the caller must be a client (or development mode).
    pub fn reader<T>(&self, request: &Request<T>) -> Result<Identity, Status> {
        let identity = self.identify(request)?;
        if identity.may_read() {
            Ok(identity)
        } else {
            Err(Status::permission_denied(format!("`{}` is an agent, not a client", identity.name())))
        }
    }
}
