//! The organization a bucket is judged in: its ID, member accounts and paths (with the digest
//! every policy analysis is keyed by), canonical IDs and suspended accounts; and who owns a
//! replication destination, as far as Estate can tell.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use estate_common::model::AccountId;

/// What the administrator knows of the organization. The membership (ID, accounts, paths)
/// changes only through [`OrgView::new`] and [`OrgView::set_membership`], which keep its
/// digest (part of every policy analysis's digest) in step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgView {
    organization_id: Option<String>,
    organization_paths: Vec<String>,
    /// Shared with every queued analysis's context.
    members: Arc<BTreeSet<AccountId>>,
    digest: [u8; 32],
    /// Canonical user ID → account, as the agents reported them.
    pub canonical_ids: HashMap<String, AccountId>,
    /// Accounts AWS Organizations reports suspended or closing (still members).
    pub suspended: BTreeSet<AccountId>,
}

impl Default for OrgView {
    fn default() -> Self {
        OrgView::new(None, BTreeSet::new(), Vec::new())
    }
}

impl OrgView {
    pub fn new(
        organization_id: Option<String>,
        accounts: BTreeSet<AccountId>,
        organization_paths: Vec<String>,
    ) -> Self {
        let mut org = OrgView {
            organization_id: None,
            organization_paths: Vec::new(),
            members: Arc::default(),
            digest: [0; 32],
            canonical_ids: HashMap::new(),
            suspended: BTreeSet::new(),
        };
        org.set_membership(organization_id, accounts, organization_paths);
        org
    }

    /// Replaces the membership; false when nothing changed.
    pub fn set_membership(
        &mut self,
        organization_id: Option<String>,
        accounts: BTreeSet<AccountId>,
        organization_paths: Vec<String>,
    ) -> bool {
        if self.digest != [0; 32]
            && self.organization_id == organization_id
            && *self.members == accounts
            && self.organization_paths == organization_paths
        {
            return false;
        }
        self.digest = estate_policy::organization_digest(organization_id.as_deref(), &accounts, &organization_paths);
        self.organization_id = organization_id;
        self.members = Arc::new(accounts);
        self.organization_paths = organization_paths;
        true
    }

    pub fn organization_id(&self) -> Option<&str> {
        self.organization_id.as_deref()
    }

    pub fn organization_paths(&self) -> &[String] {
        &self.organization_paths
    }

    /// The member accounts.
    pub fn members(&self) -> &BTreeSet<AccountId> {
        &self.members
    }

    /// The member accounts, shared (every analysis's context holds them).
    pub fn accounts(&self) -> &Arc<BTreeSet<AccountId>> {
        &self.members
    }

    /// The membership's digest.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
}

/// The owner of a destination bucket, as far as Estate can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationOwner {
    Account(AccountId),
    /// No member holds it, and every member's list is known: someone outside owns it.
    Outside,
    /// Not found while some list is missing; the reason says which.
    Unknown(String),
}

/// The bucket name of a destination ARN (`arn:aws:s3:::NAME`), if it is one.
pub fn destination_name(arn: &str) -> Option<&str> {
    arn.strip_prefix("arn:aws:s3:::").filter(|n| !n.is_empty() && !n.contains('/'))
}
