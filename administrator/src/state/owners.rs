//! Who owns a replication destination that a rule names without its account. Bucket names
//! are global and every member's ListBuckets covers all its Regions, so the bucket lists the
//! agents send (`AccountBuckets`), together with the inventory, name each member's buckets.
//! A name no member holds is outside the organization only once every member that should
//! report has sent its list; until then it is unknown, and says why.
//!
//! What one member says decides another member's verdict only when it is corroborated: a
//! destination belongs to a member when that member's inventory holds the bucket (read by its
//! agent, with an ACL owned by the canonical user the agent claims for its account), not when
//! a bucket list alone names it; and a name that two accounts claim belongs to neither. Both
//! leave the verdicts that depend on the name unknown, with the reason.
//!
//! The buckets that depend on a destination name are judged again when bucket lists, buckets
//! or ACL-owner claims change (`dependents_of`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use estate_common::model::{AccountId, StoredKey, UnixMillis};

use crate::judge::{DestinationOwner, OrgView};
use crate::state::index::Index;
use crate::state::members::MemberRecord;

/// One account's bucket names, as stored in the `bucket_lists` tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketList {
    pub read_at: UnixMillis,
    pub names: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub struct BucketOwners {
    lists: HashMap<AccountId, BucketList>,
    /// Name → the accounts whose lists name it (more than one: a false claim somewhere).
    by_name: HashMap<String, BTreeSet<AccountId>>,
    /// Destination name → the buckets whose rules name it without an account.
    dependents: HashMap<String, BTreeSet<StoredKey>>,
}

impl BucketOwners {
    /// Replaces an account's list (a newer one only); returns the names whose owner changed,
    /// or `None` when the list is older than the one held.
    pub fn set_list(&mut self, account_id: &AccountId, list: BucketList) -> Option<BTreeSet<String>> {
        let old = self.lists.get(account_id);
        if old.is_some_and(|old| old.read_at > list.read_at) {
            return None;
        }
        let old_names = old.map(|o| o.names.clone()).unwrap_or_default();
        let changed: BTreeSet<String> = old_names.symmetric_difference(&list.names).cloned().collect();
        for name in old_names.difference(&list.names) {
            if let Some(accounts) = self.by_name.get_mut(name) {
                accounts.remove(account_id);
                if accounts.is_empty() {
                    self.by_name.remove(name);
                }
            }
        }
        for name in &list.names {
            self.by_name.entry(name.clone()).or_default().insert(account_id.clone());
        }
        self.lists.insert(account_id.clone(), list);
        Some(changed)
    }

    pub fn has_list(&self, account_id: &str) -> bool {
        self.lists.contains_key(account_id)
    }

    /// Drops an account's list (an operator's `members forget`); returns the names it held.
    pub fn forget(&mut self, account_id: &AccountId) -> BTreeSet<String> {
        let Some(list) = self.lists.remove(account_id) else { return BTreeSet::new() };
        for name in &list.names {
            if let Some(accounts) = self.by_name.get_mut(name) {
                accounts.remove(account_id);
                if accounts.is_empty() {
                    self.by_name.remove(name);
                }
            }
        }
        list.names
    }

    /// Names that more than one account's list claims.
    pub fn contested(&self) -> usize {
        self.by_name.values().filter(|accounts| accounts.len() > 1).count()
    }

    /// Records which destinations bucket `key` names without an account (none: forgets it).
    pub fn set_dependent(&mut self, key: &StoredKey, before: &[String], after: &[String]) {
        for name in before.iter().filter(|n| !after.contains(n)) {
            if let Some(set) = self.dependents.get_mut(name) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(name);
                }
            }
        }
        for name in after {
            self.dependents.entry(name.clone()).or_default().insert(key.clone());
        }
    }

    /// The buckets whose rules name `name` without an account.
    pub fn dependents_of(&self, name: &str) -> Vec<StoredKey> {
        self.dependents.get(name).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Every bucket with such a rule.
    pub fn all_dependents(&self) -> Vec<StoredKey> {
        let all: BTreeSet<&StoredKey> = self.dependents.values().flatten().collect();
        all.into_iter().cloned().collect()
    }

    /// The accounts that should have sent a list and have not (sorted), given the organization.
    fn missing<'a>(&self, org: &'a OrgView) -> Vec<&'a AccountId> {
        org.members().iter().filter(|a| !org.suspended.contains(*a) && !self.lists.contains_key(*a)).collect()
    }

    /// Who owns bucket `name`, from the lists, the inventory, and what each member's agent
    /// claims as its account's canonical user (`members`).
    pub fn owner(
        &self,
        name: &str,
        index: &Index,
        org: &OrgView,
        members: &BTreeMap<AccountId, MemberRecord>,
    ) -> DestinationOwner {
        // Every account that claims the name, through its inventory (with the entry) or its list.
        let mut claims: BTreeMap<&AccountId, Option<&crate::state::index::Entry>> = BTreeMap::new();
        for entry in index.all_named(name) {
            claims.insert(&entry.facts.key.account_id, Some(entry));
        }
        for account in self.by_name.get(name).into_iter().flatten() {
            claims.entry(account).or_insert(None);
        }
        let mut claims = claims.into_iter();
        match (claims.next(), claims.next()) {
            (Some((first, _)), Some((second, _))) => {
                return DestinationOwner::Unknown(format!(
                    "bucket `{name}` is claimed by accounts `{first}` and `{second}`{}: a bucket name has one owner, \
                     so a claim is false and neither is believed",
                    if claims.next().is_some() { " and others" } else { "" }
                ));
            }
            (Some((account, Some(entry))), None) => {
                let owner = entry.facts.config().and_then(|c| c.acl.as_ref()).map(|acl| &acl.owner_canonical_id);
                let claimed = members.get(account).map(|m| &m.canonical_user_id).filter(|id| !id.is_empty());
                // S3 makes a bucket's owner its ACL's owner: an entry whose ACL was not read, or
                // names another owner, does not show that the account owns the bucket.
                return match (owner, claimed) {
                    (Some(owner), Some(claimed)) if owner == claimed => DestinationOwner::Account(account.clone()),
                    _ => DestinationOwner::Unknown(format!(
                        "bucket `{name}` is in account `{account}`'s inventory, but its ACL's owner could not be \
                         matched with the canonical user that account's agent names: it may be another account's \
                         bucket"
                    )),
                };
            }
            (Some((account, None)), None) => {
                return DestinationOwner::Unknown(format!(
                    "bucket `{name}` is named only in account `{account}`'s bucket list, and that account's \
                     inventory does not hold it (does its agent cover the bucket's Region?)"
                ));
            }
            (None, _) => {}
        }
        if org.members().is_empty() {
            return DestinationOwner::Unknown(format!(
                "bucket `{name}` is in no member's inventory, and the organization's accounts are not known"
            ));
        }
        match self.missing(org).as_slice() {
            [] => DestinationOwner::Outside,
            [first, rest @ ..] => DestinationOwner::Unknown(format!(
                "bucket `{name}` is in no member's inventory, but {} member account(s) have not reported their \
                 bucket list yet (`{first}`{})",
                rest.len() + 1,
                if rest.is_empty() { "" } else { ", ..." }
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(at: UnixMillis, names: &[&str]) -> BucketList {
        BucketList { read_at: at, names: names.iter().map(|n| n.to_string()).collect() }
    }

    #[test]
    fn owners_follow_the_newest_lists_and_completeness() {
        let org =
            OrgView::new(None, ["111111111111".parse().unwrap(), "222222222222".parse().unwrap()].into(), Vec::new());
        let (index, members) = (Index::default(), BTreeMap::new());
        let mut owners = BucketOwners::default();
        let [first, second]: [AccountId; 2] = ["111111111111", "222222222222"].map(|id| id.parse().unwrap());
        assert_eq!(owners.set_list(&first, list(10, &["a", "b"])).unwrap().len(), 2);
        // A name only a list holds is not believed to be that account's.
        let DestinationOwner::Unknown(reason) = owners.owner("a", &index, &org, &members) else { panic!() };
        assert!(reason.contains("only in account `111111111111`'s bucket list"), "{reason}");
        let DestinationOwner::Unknown(reason) = owners.owner("z", &index, &org, &members) else { panic!() };
        assert!(reason.contains("`222222222222`"), "{reason}");
        // An older list is ignored; a newer one moves a name.
        assert!(owners.set_list(&first, list(5, &["c"])).is_none());
        owners.set_list(&second, list(10, &["b2"])).unwrap();
        assert_eq!(owners.owner("z", &index, &org, &members), DestinationOwner::Outside);
        let changed = owners.set_list(&first, list(20, &["a"])).unwrap();
        assert_eq!(changed, ["b".to_string()].into());
        assert_eq!(owners.owner("b", &index, &org, &members), DestinationOwner::Outside);
        // A suspended member is not waited for.
        let mut org =
            OrgView::new(None, ["111111111111".parse().unwrap(), "333333333333".parse().unwrap()].into(), Vec::new());
        let DestinationOwner::Unknown(_) = owners.owner("z", &index, &org, &members) else { panic!() };
        org.suspended.insert("333333333333".parse().unwrap());
        assert_eq!(owners.owner("z", &index, &org, &members), DestinationOwner::Outside);
    }

    #[test]
    fn dependents_track_rules_without_accounts() {
        let mut owners = BucketOwners::default();
        let key =
            |name: &str| estate_common::model::BucketKey::parse("111111111111", "eu-west-1", name).unwrap().stored();
        let (k1, k2) = (key("k1"), key("k2"));
        owners.set_dependent(&k1, &[], &["dest".into()]);
        owners.set_dependent(&k2, &[], &["dest".into(), "other".into()]);
        assert_eq!(owners.dependents_of("dest"), vec![k1.clone(), k2.clone()]);
        owners.set_dependent(&k2, &["dest".into(), "other".into()], &[]);
        assert_eq!(owners.dependents_of("dest"), vec![k1.clone()]);
        assert!(owners.dependents_of("other").is_empty());
        assert_eq!(owners.all_dependents(), vec![k1]);
    }
}
