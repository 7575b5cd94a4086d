//! Who owns a replication destination that a rule names without its account. Bucket names
//! are global and every member's ListBuckets covers all its Regions, so the bucket lists the
//! agents send (`AccountBuckets`), together with the inventory, name each member's buckets.
//! A name no member holds is outside the organization only once every member that should
//! report has sent its list; until then it is unknown, and says why.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use estate_common::model::{AccountId, UnixMillis};

use crate::index::Index;
use crate::judge::OrgView;

/// One account's bucket names, as stored in the `bucket_lists` tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketList {
    pub read_at: UnixMillis,
    pub names: BTreeSet<String>,
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

#[derive(Debug, Default)]
pub struct BucketOwners {
    lists: HashMap<AccountId, BucketList>,
    /// Name → account, over every list.
    by_name: HashMap<String, AccountId>,
    /// Destination name → the buckets whose rules name it without an account.
    dependents: HashMap<String, BTreeSet<Vec<u8>>>,
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
            if self.by_name.get(name).is_some_and(|a| a == account_id) {
                self.by_name.remove(name);
            }
        }
        for name in &list.names {
            self.by_name.insert(name.clone(), account_id.clone());
        }
        self.lists.insert(account_id.clone(), list);
        Some(changed)
    }

    pub fn has_list(&self, account_id: &str) -> bool {
        self.lists.contains_key(account_id)
    }

    /// Records which destinations bucket `key` names without an account (none: forgets it).
    pub fn set_dependent(&mut self, key: &[u8], before: &[String], after: &[String]) {
        for name in before.iter().filter(|n| !after.contains(n)) {
            if let Some(set) = self.dependents.get_mut(name) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(name);
                }
            }
        }
        for name in after {
            self.dependents.entry(name.clone()).or_default().insert(key.to_vec());
        }
    }

    /// The buckets whose rules name `name` without an account.
    pub fn dependents_of(&self, name: &str) -> Vec<Vec<u8>> {
        self.dependents.get(name).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Every bucket with such a rule.
    pub fn all_dependents(&self) -> Vec<Vec<u8>> {
        let all: BTreeSet<&Vec<u8>> = self.dependents.values().flatten().collect();
        all.into_iter().cloned().collect()
    }

    /// The accounts that should have sent a list and have not (sorted), given the organization.
    fn missing<'a>(&self, org: &'a OrgView) -> Vec<&'a AccountId> {
        org.members().iter().filter(|a| !org.suspended.contains(*a) && !self.lists.contains_key(*a)).collect()
    }

    /// Who owns bucket `name`.
    pub fn owner(&self, name: &str, index: &Index, org: &OrgView) -> DestinationOwner {
        if let Some(account) = self.by_name.get(name) {
            return DestinationOwner::Account(account.clone());
        }
        if let Some(entry) = index.find_by_name(name) {
            return DestinationOwner::Account(entry.facts.key.account_id.clone());
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

/// The bucket name of a destination ARN (`arn:aws:s3:::NAME`), if it is one.
pub fn destination_name(arn: &str) -> Option<&str> {
    arn.strip_prefix("arn:aws:s3:::").filter(|n| !n.is_empty() && !n.contains('/'))
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
        let index = Index::default();
        let mut owners = BucketOwners::default();
        let [first, second]: [AccountId; 2] = ["111111111111", "222222222222"].map(|id| id.parse().unwrap());
        assert_eq!(owners.set_list(&first, list(10, &["a", "b"])).unwrap().len(), 2);
        assert_eq!(owners.owner("a", &index, &org), DestinationOwner::Account("111111111111".parse().unwrap()));
        let DestinationOwner::Unknown(reason) = owners.owner("z", &index, &org) else { panic!() };
        assert!(reason.contains("`222222222222`"), "{reason}");
        // An older list is ignored; a newer one moves a name.
        assert!(owners.set_list(&first, list(5, &["c"])).is_none());
        owners.set_list(&second, list(10, &["b2"])).unwrap();
        assert_eq!(owners.owner("z", &index, &org), DestinationOwner::Outside);
        let changed = owners.set_list(&first, list(20, &["a"])).unwrap();
        assert_eq!(changed, ["b".to_string()].into());
        assert_eq!(owners.owner("b", &index, &org), DestinationOwner::Outside);
        // A suspended member is not waited for.
        let mut org =
            OrgView::new(None, ["111111111111".parse().unwrap(), "333333333333".parse().unwrap()].into(), Vec::new());
        let DestinationOwner::Unknown(_) = owners.owner("z", &index, &org) else { panic!() };
        org.suspended.insert("333333333333".parse().unwrap());
        assert_eq!(owners.owner("z", &index, &org), DestinationOwner::Outside);
    }

    #[test]
    fn dependents_track_rules_without_accounts() {
        let mut owners = BucketOwners::default();
        owners.set_dependent(b"k1", &[], &["dest".into()]);
        owners.set_dependent(b"k2", &[], &["dest".into(), "other".into()]);
        assert_eq!(owners.dependents_of("dest"), vec![b"k1".to_vec(), b"k2".to_vec()]);
        owners.set_dependent(b"k2", &["dest".into(), "other".into()], &[]);
        assert_eq!(owners.dependents_of("dest"), vec![b"k1".to_vec()]);
        assert!(owners.dependents_of("other").is_empty());
        assert_eq!(owners.all_dependents(), vec![b"k1".to_vec()]);
        assert_eq!(destination_name("arn:aws:s3:::dest"), Some("dest"));
        assert_eq!(destination_name("dest"), None);
    }
}
