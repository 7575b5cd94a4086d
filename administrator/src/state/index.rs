//! The in-memory bucket index: every bucket by key (account, Region, name) and by bucket
//! name. Both orders hold the same shared entries, so a query sorted by account or by name
//! walks an order and stops after one page instead of scanning and sorting everything.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use estate_common::model::{BucketFacts, StoredKey};

use crate::judge::Judgement;
use crate::state::findings::Posture;

/// One bucket in the index.
#[derive(Debug, Clone)]
pub struct Entry {
    pub facts: Arc<BucketFacts>,
    pub generation: u64,
    pub judgement: Judgement,
    /// The last decided security posture: findings compare against it.
    pub posture: Posture,
}

/// A bucket key ordered by bucket name first, then by the whole key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameKey(pub StoredKey);

impl Ord for NameKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.bucket_name().cmp(other.0.bucket_name()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for NameKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Default)]
pub struct Index {
    by_key: BTreeMap<StoredKey, Arc<Entry>>,
    by_name: BTreeMap<NameKey, Arc<Entry>>,
}

impl Index {
    /// Inserts or replaces; returns the previous entry.
    pub fn insert(&mut self, key: StoredKey, entry: Entry) -> Option<Arc<Entry>> {
        let entry = Arc::new(entry);
        self.by_name.insert(NameKey(key.clone()), Arc::clone(&entry));
        self.by_key.insert(key, entry)
    }

    pub fn remove(&mut self, key: &StoredKey) -> Option<Arc<Entry>> {
        let removed = self.by_key.remove(key)?;
        self.by_name.remove(&NameKey(key.clone()));
        Some(removed)
    }

    pub fn get(&self, key: &StoredKey) -> Option<&Arc<Entry>> {
        self.by_key.get(key)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Arc<Entry>> {
        self.by_key.values()
    }

    /// Entries in key order (account, Region, name).
    pub fn range<R: RangeBounds<StoredKey>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = (&StoredKey, &Arc<Entry>)> {
        self.by_key.range(range)
    }

    /// Entries in bucket-name order (ties by key), after or before `cursor`.
    pub fn by_name_from(
        &self,
        cursor: Option<&StoredKey>,
        descending: bool,
    ) -> Box<dyn Iterator<Item = (&StoredKey, &Arc<Entry>)> + '_> {
        from_cursor(&self.by_name, cursor.map(|key| NameKey(key.clone())), descending, |k| &k.0)
    }

    /// The bucket named `name` (names are unique within a partition).
    pub fn find_by_name<'a>(&'a self, name: &'a str) -> Option<&'a Arc<Entry>> {
        self.all_named(name).next()
    }

    /// Every entry named `name`: one, unless accounts claim the same name (or one account's
    /// bucket moved Region and the old scope has not completed yet).
    pub fn all_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Arc<Entry>> + 'a {
        self.by_name
            .range(NameKey(StoredKey::name_floor(name))..)
            .map(|(_, e)| e)
            .take_while(move |e| e.facts.key.bucket_name == name)
    }

    /// Entries in key order, after or before `cursor`.
    pub fn by_key_from(
        &self,
        cursor: Option<&StoredKey>,
        descending: bool,
    ) -> Box<dyn Iterator<Item = (&StoredKey, &Arc<Entry>)> + '_> {
        from_cursor(&self.by_key, cursor.cloned(), descending, |k| k)
    }
}

/// The entries of one of the index's maps after `cursor` (or before it, descending), each
/// with its encoded key.
fn from_cursor<'a, K: Ord>(
    map: &'a BTreeMap<K, Arc<Entry>>,
    cursor: Option<K>,
    descending: bool,
    encoded: fn(&K) -> &StoredKey,
) -> Box<dyn Iterator<Item = (&'a StoredKey, &'a Arc<Entry>)> + 'a> {
    let bound = cursor.map_or(Bound::Unbounded, Bound::Excluded);
    let with_key = move |(k, e): (&'a K, &'a Arc<Entry>)| (encoded(k), e);
    if descending {
        Box::new(map.range((Bound::Unbounded, bound)).rev().map(with_key))
    } else {
        Box::new(map.range((bound, Bound::Unbounded)).map(with_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_keys_order_by_name_then_key() {
        let key = |account: &str, name: &str| {
            estate_common::model::BucketKey::parse(account, "us-east-1", name).unwrap().stored()
        };
        let (a, b) = (NameKey(key("222222222222", "alpha")), NameKey(key("111111111111", "beta")));
        assert!(a < b);
        assert_eq!(a.0.bucket_name(), b"alpha");
        assert!(NameKey(StoredKey::name_floor("alpha")) < a);
    }
}
