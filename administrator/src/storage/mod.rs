//! Persistence, named once: what the state needs from a storage engine ([`Storage`]), the
//! kinds of record it keeps ([`Tree`]), the writes of one commit ([`Writes`]), and the
//! verification that reads every record back. The state in memory (`state::store`) speaks only
//! these, past the constructor that opens the default engine; sled is that engine
//! (`sled_engine.rs`).

pub mod codec;
pub mod sled_engine;

use estate_common::text::for_log;

/// The kinds of record, each in a tree (a keyspace) of its own. The one list of them: the
/// engines, the commit and `verify` all go through [`Tree::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    /// Bucket key → the bucket's facts and generation.
    Buckets,
    /// Account → its account-level settings.
    Accounts,
    /// Account NUL Region NUL → the scope's last completed refresh.
    Scopes,
    /// Account → its member record.
    Members,
    /// Finding ID → the finding.
    Findings,
    /// Bucket key → the posture its findings were last raised from.
    Postures,
    /// Digest → an analysis that failed inside the analyser.
    PolicyFailures,
    /// Event ID NUL bucket key → when the event was first counted.
    SeenEvents,
    /// Account → every bucket name of the account.
    BucketLists,
    /// Digest → a policy analysis, so that a restart re-judges from it.
    PolicyOutcomes,
    /// Sink name → how far the sink has delivered the findings feed.
    SinkCursors,
    /// Filter ID → a findings filter.
    FindingsFilters,
}

impl Tree {
    pub const ALL: [Tree; 12] = [
        Tree::Buckets,
        Tree::Accounts,
        Tree::Scopes,
        Tree::Members,
        Tree::Findings,
        Tree::Postures,
        Tree::PolicyFailures,
        Tree::SeenEvents,
        Tree::BucketLists,
        Tree::PolicyOutcomes,
        Tree::SinkCursors,
        Tree::FindingsFilters,
    ];

    /// Its name on disk.
    pub const fn name(self) -> &'static str {
        match self {
            Tree::Buckets => "buckets",
            Tree::Accounts => "accounts",
            Tree::Scopes => "scopes",
            Tree::Members => "members",
            Tree::Findings => "findings",
            Tree::Postures => "postures",
            Tree::PolicyFailures => "policy_failures",
            Tree::SeenEvents => "seen_events",
            Tree::BucketLists => "bucket_lists",
            Tree::PolicyOutcomes => "policy_outcomes",
            Tree::SinkCursors => "sink_cursors",
            Tree::FindingsFilters => "findings_filters",
        }
    }

    /// Its place in [`Tree::ALL`].
    const fn index(self) -> usize {
        self as usize
    }
}

/// One write: a key set to a value, or removed (`None`).
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// The writes of one commit, per tree, in the order they were made.
#[derive(Debug, Default)]
pub struct Writes {
    per_tree: [Vec<Write>; Tree::ALL.len()],
}

impl Writes {
    pub fn insert(&mut self, tree: Tree, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.per_tree[tree.index()].push((key.into(), Some(value)));
    }

    pub fn remove(&mut self, tree: Tree, key: impl Into<Vec<u8>>) {
        self.per_tree[tree.index()].push((key.into(), None));
    }

    /// Every tree's writes, in [`Tree::ALL`] order.
    pub fn into_trees(self) -> impl Iterator<Item = (Tree, Vec<Write>)> {
        Tree::ALL.into_iter().zip(self.per_tree)
    }
}

/// What [`Storage::scan`] hands each record to: its key and value; an error stops the scan.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> anyhow::Result<()> + 'a;

/// What persistence must give the state.
pub trait Storage: Send + Sync {
    /// Applies every write at once, across trees (after a crash: all of them or none), and
    /// returns once they are on stable storage: a commit is acknowledged to agents only then.
    fn commit(&self, writes: Writes) -> anyhow::Result<()>;

    /// Hands every record of `tree` to `visit`, in key order; stops at `visit`'s first error.
    fn scan(&self, tree: Tree, visit: &mut Visit<'_>) -> anyhow::Result<()>;

    /// Moves an unreadable record of `tree` aside (`estate-admin verify --repair`), so that
    /// the store opens again and the record can still be looked at.
    fn quarantine(&self, tree: Tree, key: &[u8]) -> anyhow::Result<()>;

    /// The layout of the database as a whole, as recorded in it.
    fn schema_version(&self) -> anyhow::Result<u32>;

    /// Makes everything written so far durable (at shutdown: every commit already did).
    fn flush(&self) -> anyhow::Result<()>;
}

/// What `verify` found in one tree.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TreeReport {
    pub name: &'static str,
    pub records: u64,
    pub unreadable: u64,
}

/// Reads every record of every tree with `check_record` (which decodes it with the type its
/// tree holds, `state::store::check_record`); with `repair`, moves each unreadable one aside
/// (logging it) so that the store opens again.
pub fn verify_records(
    storage: &dyn Storage,
    repair: bool,
    check_record: impl Fn(Tree, &[u8], &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<TreeReport>> {
    let mut reports = Vec::new();
    for tree in Tree::ALL {
        let mut report = TreeReport { name: tree.name(), ..Default::default() };
        let mut unreadable = Vec::new();
        storage.scan(tree, &mut |key, value| {
            report.records += 1;
            if let Err(error) = check_record(tree, key, value) {
                report.unreadable += 1;
                tracing::warn!(tree = tree.name(), key = %for_log(&String::from_utf8_lossy(key)), error = %for_log(&format!("{error:#}")), "unreadable record");
                unreadable.push(key.to_vec());
            }
            Ok(())
        })?;
        if repair {
            for key in unreadable {
                storage.quarantine(tree, &key)?;
                tracing::warn!(tree = tree.name(), key = %for_log(&String::from_utf8_lossy(&key)), "record moved to `quarantine`");
            }
        }
        reports.push(report);
    }
    storage.flush()?;
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_list_is_in_index_order_with_distinct_names() {
        for (i, tree) in Tree::ALL.into_iter().enumerate() {
            assert_eq!(tree.index(), i, "{tree:?}");
        }
        let names: std::collections::BTreeSet<&str> = Tree::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), Tree::ALL.len());
    }
}
