//! Who should report, and how fresh each member's inventory is. The organization's freshness
//! (members without an agent, members pending, the earliest `lastUpdated`) is kept as members,
//! scopes and the organization change, so that the statistics never walk every account: with
//! 10,000 members that walk is tens of milliseconds per request.
//!
//! Who should report: the organization's accounts, the configured agents' and every account
//! that ever reported, each with its relationship status; an account's standing is no agent,
//! pending, or updated at a time. An organization change recounts every account inside its
//! commit.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use estate_common::macie::MemberStatus;
use estate_common::model::{AccountId, Region, UnixMillis};
use serde::{Deserialize, Serialize};

use crate::judge::OrgView;

/// The state of one scope (account, Region).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeRecord {
    /// The generation of the last completed full refresh.
    pub generation: u64,
    /// When that refresh read its data from S3.
    pub last_updated: Option<UnixMillis>,
    pub bucket_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub account_id: AccountId,
    pub regions: Vec<Region>,
    pub canonical_user_id: String,
    pub agent_version: String,
    pub last_contact: UnixMillis,
}

/// Progress of a refresh under way: (buckets reported, total).
pub type Progress = (u64, u64);

/// Who the organization's members are and where their inventories stand: each member's
/// record, its Regions' last completed refreshes and the refreshes under way, the accounts
/// with an agent in the config, and the organization's freshness.
#[derive(Debug, Default)]
pub struct Membership {
    pub members: BTreeMap<AccountId, MemberRecord>,
    /// Per account, its Regions' last completed refreshes ([`Membership::scope`]).
    pub(crate) scopes: HashMap<AccountId, BTreeMap<Region, ScopeRecord>>,
    /// Per account, the refreshes under way in its Regions ([`Membership::progress`]).
    pub(crate) progress: HashMap<AccountId, HashMap<Region, Progress>>,
    /// Accounts with an agent in the config: expected to report even before they connect.
    pub configured: BTreeSet<AccountId>,
    /// The organization's freshness, kept as members and scopes change.
    pub freshness: Freshness,
}

impl Membership {
    /// The last completed refresh of one account's Region, if it ever completed one.
    pub fn scope(&self, account_id: &AccountId, region: &Region) -> Option<&ScopeRecord> {
        self.scopes.get(account_id)?.get(region)
    }

    /// Every Region of one account that has completed a refresh, in order.
    pub fn account_scopes(&self, account_id: &AccountId) -> impl Iterator<Item = (&Region, &ScopeRecord)> {
        self.scopes.get(account_id).into_iter().flatten()
    }

    /// The refresh under way in one account's Region, if any.
    pub fn progress(&self, account_id: &AccountId, region: &Region) -> Option<Progress> {
        self.progress.get(account_id)?.get(region).copied()
    }

    /// When the member's data was last complete: the earliest last completed refresh over its
    /// Regions, or `None` while its agent has not reported its Regions or some Region has never
    /// completed a refresh (a stale Region is never hidden behind fresher ones).
    pub fn last_updated(&self, account_id: &AccountId) -> Option<UnixMillis> {
        let regions = &self.members.get(account_id)?.regions;
        if regions.is_empty() {
            return None;
        }
        let mut earliest = UnixMillis::MAX;
        for region in regions {
            let at = self.scope(account_id, region)?.last_updated?;
            earliest = earliest.min(at);
        }
        Some(earliest)
    }

    /// Every account Estate should see: the organization's, those with an agent configured,
    /// and those that have ever reported.
    pub fn account_names<'a>(&'a self, org: &'a OrgView) -> BTreeSet<&'a AccountId> {
        self.configured.iter().chain(self.members.keys()).chain(org.members()).collect()
    }

    pub fn status(&self, org: &OrgView, account_id: &str) -> MemberStatus {
        let organization = org.members();
        if org.suspended.contains(account_id) {
            MemberStatus::AccountSuspended
        } else if !organization.is_empty() && !organization.contains(account_id) {
            MemberStatus::Removed
        } else if self.members.contains_key(account_id) {
            MemberStatus::Enabled
        } else {
            MemberStatus::NoAgent
        }
    }

    /// Whether the account's inventory is expected: not suspended, and not an account that
    /// left the organization without ever reporting.
    fn should_report(&self, account_id: &str, status: MemberStatus) -> bool {
        match status {
            MemberStatus::Enabled | MemberStatus::NoAgent => true,
            MemberStatus::Removed => self.members.contains_key(account_id),
            MemberStatus::AccountSuspended => false,
        }
    }

    /// Whether Estate should see the account: one of [`Membership::account_names`], without
    /// building the set.
    pub fn is_known(&self, org: &OrgView, account_id: &str) -> bool {
        self.configured.contains(account_id)
            || self.members.contains_key(account_id)
            || org.accounts().contains(account_id)
    }

    /// The account's standing, or `None` when its inventory is not expected (or it is no
    /// longer one Estate should see: an organization change can drop an account that never
    /// reported).
    pub fn standing(&self, org: &OrgView, account_id: &AccountId) -> Option<Standing> {
        if !self.is_known(org, account_id) {
            return None;
        }
        let status = self.status(org, account_id);
        if !self.should_report(account_id, status) {
            return None;
        }
        Some(match (status, self.last_updated(account_id)) {
            (MemberStatus::NoAgent, _) => Standing::NoAgent,
            (_, Some(at)) => Standing::UpdatedAt(at),
            (_, None) => Standing::Pending,
        })
    }
}

/// Where an account that should report stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No agent has ever reported for it (it is pending too).
    NoAgent,
    /// Its agent reported, but some Region has never completed a refresh.
    Pending,
    /// Every Region completed a refresh; the earliest at this time.
    UpdatedAt(UnixMillis),
}

/// The organization's freshness, counted over the standing of every account that should
/// report. The state recounts an account whenever its member record, a scope of it or the
/// organization changes.
#[derive(Debug, Default)]
pub struct Freshness {
    standings: HashMap<AccountId, Standing>,
    without_agent: i64,
    pending: i64,
    /// Each member's `lastUpdated` → how many members have it.
    updated_at: BTreeMap<UnixMillis, u32>,
}

impl Freshness {
    /// Records the account's standing (`None`: not expected) in place of the previous one.
    pub fn set(&mut self, account_id: &AccountId, standing: Option<Standing>) {
        let previous = match standing {
            Some(standing) => self.standings.insert(account_id.clone(), standing),
            None => self.standings.remove(account_id),
        };
        if previous == standing {
            return;
        }
        if let Some(previous) = previous {
            self.count(previous, -1);
        }
        if let Some(standing) = standing {
            self.count(standing, 1);
        }
    }

    fn count(&mut self, standing: Standing, delta: i64) {
        match standing {
            Standing::NoAgent => {
                self.without_agent += delta;
                self.pending += delta;
            }
            Standing::Pending => self.pending += delta,
            Standing::UpdatedAt(at) => {
                let members = self.updated_at.entry(at).or_default();
                if delta > 0 {
                    *members += 1;
                } else {
                    *members -= 1;
                    if *members == 0 {
                        self.updated_at.remove(&at);
                    }
                }
            }
        }
    }

    /// The accounts counted now (an organization change recounts them with the new ones).
    pub fn accounts(&self) -> impl Iterator<Item = &AccountId> {
        self.standings.keys()
    }

    pub fn members_without_agent(&self) -> i64 {
        self.without_agent
    }

    pub fn members_pending(&self) -> i64 {
        self.pending
    }

    /// The earliest `lastUpdated` over the members that have completed an inventory of every
    /// Region, as Macie reports the earliest of the accounts it has data for; `None` until one
    /// has. Members still pending or without an agent are not waited for: they are counted
    /// apart ([`Freshness::members_pending`], [`Freshness::members_without_agent`]).
    pub fn last_updated(&self) -> Option<UnixMillis> {
        self.updated_at.keys().next().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_each_change_of_standing() {
        let mut freshness = Freshness::default();
        let [a, b, c]: [AccountId; 3] = ["111111111111", "222222222222", "333333333333"].map(|id| id.parse().unwrap());
        freshness.set(&a, Some(Standing::NoAgent));
        freshness.set(&b, Some(Standing::UpdatedAt(20)));
        freshness.set(&c, Some(Standing::UpdatedAt(10)));
        assert_eq!(
            (freshness.members_without_agent(), freshness.members_pending(), freshness.last_updated()),
            (1, 1, Some(10)),
            "the earliest of the members with data; the one without an agent is counted apart"
        );
        freshness.set(&a, Some(Standing::Pending));
        assert_eq!((freshness.members_without_agent(), freshness.members_pending()), (0, 1));
        freshness.set(&a, Some(Standing::UpdatedAt(30)));
        assert_eq!(freshness.last_updated(), Some(10));
        // The earliest moves on when its only member refreshes again.
        freshness.set(&c, Some(Standing::UpdatedAt(40)));
        assert_eq!(freshness.last_updated(), Some(20));
        // Two members at one time: the time stays until both have moved.
        freshness.set(&a, Some(Standing::UpdatedAt(20)));
        freshness.set(&b, None);
        assert_eq!(freshness.last_updated(), Some(20));
        freshness.set(&a, None);
        assert_eq!(freshness.last_updated(), Some(40));
        freshness.set(&c, None);
        assert_eq!((freshness.members_pending(), freshness.last_updated(), freshness.accounts().count()), (0, None, 0));
    }
}
