//! Which member account a canonical user ID belongs to. An ACL grant names its grantee by
//! canonical ID, and whether that grantee is inside the organization decides the bucket's
//! sharing verdict, so the mapping must not rest on one agent's word: a member's hello
//! *claims* its account's canonical ID, and the claim binds only when it is *corroborated*
//! and *uncontested*.
//!
//! - Corroborated: every bucket of the account whose ACL was read names that ID as its owner
//!   (S3 makes the bucket owner the owner of its ACL), and at least one does. An agent that
//!   claims another ID than its buckets show, or whose inventory holds buckets of several
//!   owners (a foreign bucket planted by an event, say), binds nothing.
//! - Uncontested: no other account corroborates the same ID. Two accounts that do bind
//!   neither, with a log line and a count (`refused`), never the last writer.
//!
//! An ID that binds to no account is judged as an outsider's, the side that raises a finding
//! rather than hides one.

use std::collections::{BTreeSet, HashMap};

use estate_common::model::AccountId;
use estate_common::text::for_log;

/// Bindings that changed: the ID, and the account it is bound to now (none: unbound).
pub type Changes = Vec<(String, Option<AccountId>)>;

#[derive(Debug, Default)]
pub struct CanonicalIds {
    /// What each account's agent last claimed (one per account: a new claim replaces the old).
    claims: HashMap<AccountId, String>,
    /// Per account, how many of its buckets name each ACL owner.
    owners: HashMap<AccountId, HashMap<String, u64>>,
    /// ID → the accounts whose claim it corroborates (more than one: contested).
    candidates: HashMap<String, BTreeSet<AccountId>>,
    /// The bound IDs: corroborated and uncontested.
    bound: HashMap<String, AccountId>,
    /// Claims refused because another account corroborates the same ID (since start).
    refused: u64,
}

impl CanonicalIds {
    /// The ID bound to an account, if any.
    pub fn bindings(&self) -> &HashMap<String, AccountId> {
        &self.bound
    }

    /// Claims refused (contested) since the administrator started.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// IDs that two or more accounts claim with corroboration.
    pub fn contested(&self) -> usize {
        self.candidates.values().filter(|accounts| accounts.len() > 1).count()
    }

    /// An account's agent claims `id` (empty: no claim).
    pub fn claim(&mut self, account: &AccountId, id: &str) -> Changes {
        let old = if id.is_empty() {
            self.claims.remove(account)
        } else if self.claims.get(account).is_some_and(|c| c == id) {
            return Vec::new();
        } else {
            self.claims.insert(account.clone(), id.to_owned())
        };
        self.settle(account, old)
    }

    /// One of the account's buckets names `owner` as its ACL's owner (`delta` +1 when a
    /// bucket with it arrives, -1 when it leaves).
    pub fn count_owner(&mut self, account: &AccountId, owner: &str, delta: i64) -> Changes {
        let tally = self.owners.entry(account.clone()).or_default();
        let before = tally.len();
        let count = tally.entry(owner.to_owned()).or_default();
        *count = count.saturating_add_signed(delta);
        if *count == 0 {
            tally.remove(owner);
        }
        let after = tally.len();
        if tally.is_empty() {
            self.owners.remove(account);
        }
        // Only a change in which owners the account's buckets name can change a binding.
        if before == after {
            return Vec::new();
        }
        let claimed = self.claims.get(account).cloned();
        self.settle(account, claimed)
    }

    /// Forgets everything of an account (an operator's `members forget`).
    pub fn forget(&mut self, account: &AccountId) -> Changes {
        let old = self.claims.remove(account);
        self.owners.remove(account);
        self.settle(account, old)
    }

    /// The ID the account's claim corroborates now.
    fn corroborated(&self, account: &AccountId) -> Option<&String> {
        let claim = self.claims.get(account)?;
        let tally = self.owners.get(account)?;
        (tally.len() == 1 && tally.contains_key(claim)).then_some(claim)
    }

    /// Moves the account's candidacy from what it was (for `old`, or its current claim) to
    /// what it corroborates now, and settles the IDs touched.
    fn settle(&mut self, account: &AccountId, old: Option<String>) -> Changes {
        let mut touched: Vec<String> = Vec::new();
        for id in old.into_iter().chain(self.claims.get(account).cloned()) {
            if let Some(accounts) = self.candidates.get_mut(&id) {
                if accounts.remove(account) {
                    touched.push(id.clone());
                }
                if accounts.is_empty() {
                    self.candidates.remove(&id);
                }
            }
        }
        if let Some(id) = self.corroborated(account).cloned() {
            self.candidates.entry(id.clone()).or_default().insert(account.clone());
            touched.push(id);
        }
        touched.sort();
        touched.dedup();
        let mut changed = Vec::new();
        for id in touched {
            let now = match self.candidates.get(&id) {
                Some(accounts) if accounts.len() == 1 => accounts.iter().next().cloned(),
                Some(accounts) => {
                    self.refused += 1;
                    let claimants: Vec<&str> = accounts.iter().map(AccountId::as_str).collect();
                    tracing::warn!(
                        canonical_id = %for_log(&id),
                        accounts = ?claimants,
                        "refused: several accounts claim the same canonical user ID; it is bound to none of them"
                    );
                    None
                }
                None => None,
            };
            let before = match &now {
                Some(account) => self.bound.insert(id.clone(), account.clone()),
                None => self.bound.remove(&id),
            };
            if before != now {
                changed.push((id, now));
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str) -> AccountId {
        id.parse().unwrap()
    }

    fn assert_change(changes: Changes) {
        assert!(!changes.is_empty());
    }

    fn assert_no_change(changes: Changes) {
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn a_claim_binds_only_when_the_accounts_buckets_corroborate_it() {
        let (a, b) = (account("111111111111"), account("222222222222"));
        let mut ids = CanonicalIds::default();
        // A bare claim binds nothing: no bucket shows it.
        assert_no_change(ids.claim(&a, "outsider"));
        assert!(ids.bindings().is_empty());
        // A's buckets are owned by `ca`: the claim of `outsider` is not corroborated.
        assert_no_change(ids.count_owner(&a, "ca", 1));
        assert!(ids.bindings().is_empty());
        // The true claim binds.
        assert_change(ids.claim(&a, "ca"));
        assert_eq!(ids.bindings().get("ca"), Some(&a));
        // A planted bucket of another owner makes the inventory disagree: unbound.
        assert_change(ids.count_owner(&a, "outsider", 1));
        assert!(ids.bindings().is_empty());
        assert_change(ids.count_owner(&a, "outsider", -1));
        assert_eq!(ids.bindings().get("ca"), Some(&a));
        // A second bucket of the same owner changes nothing.
        assert_no_change(ids.count_owner(&a, "ca", 1));
        // B corroborates the same ID (its agent forged every bucket): contested, bound to none.
        ids.count_owner(&b, "ca", 1);
        assert_change(ids.claim(&b, "ca"));
        assert!(ids.bindings().is_empty());
        assert_eq!((ids.refused(), ids.contested()), (1, 1));
        // B's claim replaced by its true one: A's binding returns, B binds its own.
        ids.count_owner(&b, "ca", -1);
        ids.count_owner(&b, "cb", 1);
        ids.claim(&b, "cb");
        assert_eq!(ids.bindings().get("ca"), Some(&a));
        assert_eq!(ids.bindings().get("cb"), Some(&b));
        assert_eq!(ids.contested(), 0);
        // A new claim replaces the old one: nothing of the old stays (no growth per claim).
        ids.claim(&a, "other");
        assert!(!ids.bindings().contains_key("ca"));
        assert_eq!(ids.claims.len(), 2);
        // Forgetting an account drops its binding.
        assert_change(ids.forget(&b));
        assert!(ids.bindings().is_empty());
        assert!(ids.candidates.is_empty());
    }

    #[test]
    fn the_last_bucket_leaving_unbinds() {
        let a = account("111111111111");
        let mut ids = CanonicalIds::default();
        ids.claim(&a, "ca");
        assert_change(ids.count_owner(&a, "ca", 1));
        assert_change(ids.count_owner(&a, "ca", -1));
        assert!(ids.bindings().is_empty());
        assert!(ids.owners.is_empty());
    }
}
