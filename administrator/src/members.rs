//! Who should report, and how fresh each member's inventory is. The organization's freshness
//! (members without an agent, members pending, the earliest `lastUpdated`) is kept as members,
//! scopes and the organization change, so that the statistics never walk every account: with
//! 10,000 members that walk is tens of milliseconds per request.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use estate_common::macie::{BucketStatistics, MemberStatus, Timestamp};
use estate_common::model::{AccountId, UnixMillis};

use crate::store::State;

/// When the member's data was last complete: the earliest last completed refresh over its
/// Regions, or `None` while its agent has not reported its Regions or some Region has never
/// completed a refresh (a stale Region is never hidden behind fresher ones).
pub fn last_updated(state: &State, account_id: &AccountId) -> Option<UnixMillis> {
    let regions = &state.members.get(account_id)?.regions;
    if regions.is_empty() {
        return None;
    }
    let mut earliest = UnixMillis::MAX;
    for region in regions {
        let at = state.scope(account_id, region)?.last_updated?;
        earliest = earliest.min(at);
    }
    Some(earliest)
}

/// Every account Estate should see: the organization's, those with an agent configured,
/// and those that have ever reported.
pub fn account_names(state: &State) -> BTreeSet<&AccountId> {
    state.configured.iter().chain(state.members.keys()).chain(state.org.members()).collect()
}

pub fn status(state: &State, account_id: &str) -> MemberStatus {
    let organization = state.org.members();
    if state.org.suspended.contains(account_id) {
        MemberStatus::AccountSuspended
    } else if !organization.is_empty() && !organization.contains(account_id) {
        MemberStatus::Removed
    } else if state.members.contains_key(account_id) {
        MemberStatus::Enabled
    } else {
        MemberStatus::NoAgent
    }
}

/// Whether the account's inventory is expected: not suspended, and not an account that left
/// the organization without ever reporting.
fn should_report(state: &State, account_id: &str, status: MemberStatus) -> bool {
    match status {
        MemberStatus::Enabled | MemberStatus::NoAgent => true,
        MemberStatus::Removed => state.members.contains_key(account_id),
        MemberStatus::AccountSuspended => false,
    }
}

/// The organization's statistics: every bucket's, with the members' freshness.
pub fn organization_statistics(state: &State) -> BucketStatistics {
    let mut stats = state.stats.total();
    stats.members_without_agent = state.freshness.members_without_agent();
    stats.members_pending = state.freshness.members_pending();
    stats.last_updated = state.freshness.last_updated().map(Timestamp);
    stats
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

/// Whether Estate should see the account: one of [`account_names`], without building the set.
pub fn is_known(state: &State, account_id: &str) -> bool {
    state.configured.contains(account_id)
        || state.members.contains_key(account_id)
        || state.org.accounts().contains(account_id)
}

/// The account's standing, or `None` when its inventory is not expected (or it is no longer
/// one Estate should see: an organization change can drop an account that never reported).
pub fn standing(state: &State, account_id: &AccountId) -> Option<Standing> {
    if !is_known(state, account_id) {
        return None;
    }
    let status = status(state, account_id);
    if !should_report(state, account_id, status) {
        return None;
    }
    Some(match (status, last_updated(state, account_id)) {
        (MemberStatus::NoAgent, _) => Standing::NoAgent,
        (_, Some(at)) => Standing::UpdatedAt(at),
        (_, None) => Standing::Pending,
    })
}

/// The organization's freshness, counted over the standing of every account that should
/// report. [`State`] recounts an account whenever its member record, a scope of it or the
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

    /// The earliest `lastUpdated` over every member that should report, `None` while one of
    /// them is pending (or none should report).
    pub fn last_updated(&self) -> Option<UnixMillis> {
        if self.pending > 0 {
            return None;
        }
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
            (1, 1, None)
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
