//! The in-memory bucket index: every bucket by key (account, Region, name) and by bucket
//! name. Both orders hold the same shared entries, so a query sorted by account or by name
//! walks an order and stops after one page instead of scanning and sorting everything.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use estate_common::model::BucketFacts;

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

/// An encoded bucket key ordered by bucket name first, then by the whole key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameKey(pub Vec<u8>);

impl NameKey {
    fn name(&self) -> &[u8] {
        let mut zeros = self.0.iter().enumerate().filter(|(_, b)| **b == 0).map(|(i, _)| i);
        match (zeros.next(), zeros.next()) {
            (Some(_), Some(second)) => &self.0[second + 1..],
            _ => &self.0,
        }
    }
}

impl Ord for NameKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.name().cmp(other.name()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for NameKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Default)]
pub struct Index {
    by_key: BTreeMap<Vec<u8>, Arc<Entry>>,
    by_name: BTreeMap<NameKey, Arc<Entry>>,
}

impl Index {
    /// Inserts or replaces; returns the previous entry.
    pub fn insert(&mut self, key: Vec<u8>, entry: Entry) -> Option<Arc<Entry>> {
        let entry = Arc::new(entry);
        self.by_name.insert(NameKey(key.clone()), Arc::clone(&entry));
        self.by_key.insert(key, entry)
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Arc<Entry>> {
        let removed = self.by_key.remove(key)?;
        self.by_name.remove(&NameKey(key.to_vec()));
        Some(removed)
    }

    pub fn get(&self, key: &[u8]) -> Option<&Arc<Entry>> {
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
    pub fn range<R: RangeBounds<Vec<u8>>>(&self, range: R) -> impl DoubleEndedIterator<Item = (&Vec<u8>, &Arc<Entry>)> {
        self.by_key.range(range)
    }

    /// Entries in bucket-name order (ties by key), after or before `cursor`.
    pub fn by_name_from(
        &self,
        cursor: Option<&[u8]>,
        descending: bool,
    ) -> Box<dyn Iterator<Item = (&[u8], &Arc<Entry>)> + '_> {
        from_cursor(&self.by_name, cursor.map(|key| NameKey(key.to_vec())), descending, |k| k.0.as_slice())
    }

    /// The bucket named `name` (names are unique within a partition).
    pub fn find_by_name<'a>(&'a self, name: &'a str) -> Option<&'a Arc<Entry>> {
        self.all_named(name).next()
    }

    /// Every entry named `name`: one, unless accounts claim the same name (or one account's
    /// bucket moved Region and the old scope has not completed yet).
    pub fn all_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Arc<Entry>> + 'a {
        let mut start = Vec::with_capacity(name.len() + 2);
        start.extend_from_slice(b"\0\0");
        start.extend_from_slice(name.as_bytes());
        self.by_name.range(NameKey(start)..).map(|(_, e)| e).take_while(move |e| e.facts.key.bucket_name == name)
    }

    /// Entries in key order, after or before `cursor`.
    pub fn by_key_from(
        &self,
        cursor: Option<&[u8]>,
        descending: bool,
    ) -> Box<dyn Iterator<Item = (&[u8], &Arc<Entry>)> + '_> {
        from_cursor(&self.by_key, cursor.map(<[u8]>::to_vec), descending, Vec::as_slice)
    }
}

/// The entries of one of the index's maps after `cursor` (or before it, descending), each
/// with its encoded key.
fn from_cursor<'a, K: Ord>(
    map: &'a BTreeMap<K, Arc<Entry>>,
    cursor: Option<K>,
    descending: bool,
    encoded: fn(&K) -> &[u8],
) -> Box<dyn Iterator<Item = (&'a [u8], &'a Arc<Entry>)> + 'a> {
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
        let a = NameKey(b"222222222222\0us-east-1\0alpha".to_vec());
        let b = NameKey(b"111111111111\0us-east-1\0beta".to_vec());
        assert!(a < b);
        assert_eq!(a.name(), b"alpha");
    }
}
