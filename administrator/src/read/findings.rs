//! The findings read side, one for every API: a query (criteria, sort) that ListFindings,
//! GetFindingStatistics and `/api/findings` all run, and the one follower of the durable feed that WatchFindings and the live findings
//! stream (server-sent events) both read.

use std::collections::BTreeMap;

use tokio::sync::{broadcast, mpsc};

use estate_common::findings::Finding;

use crate::criteria::findings::{text, FindingProperty};
use crate::criteria::{matches_all, Filter, Filterable};
use crate::state::findings::Findings;
use crate::state::store::Store;

/// Which findings, and in which order.
#[derive(Debug, Clone)]
pub struct FindingsQuery {
    pub filters: Vec<Filter<FindingProperty>>,
    pub sort: FindingProperty,
    pub descending: bool,
}

impl FindingsQuery {
    /// Every finding that matches, in the query's order. Ties go by sequence (each finding's
    /// last change has its own): a total order, so offsets page consistently, and the newest
    /// of equal values comes first when descending.
    pub fn run<'a>(&self, findings: &'a Findings) -> Vec<&'a Finding> {
        let mut found: Vec<&Finding> = findings.by_id.values().filter(|f| matches_all(&self.filters, *f)).collect();
        self.order(&mut found);
        found
    }

    /// Puts findings in the query's order.
    pub fn order(&self, found: &mut [&Finding]) {
        let sort = self.sort;
        let key = |f: &Finding| (f.number(sort).unwrap_or(0), text(f, sort).unwrap_or_default(), f.sequence);
        found.sort_by_cached_key(|f| key(f));
        if self.descending {
            found.reverse();
        }
    }

    /// How many findings match, per value of `group_by` (the query's order is not used).
    pub fn count_by(&self, findings: &Findings, group_by: FindingProperty) -> BTreeMap<String, i64> {
        let mut groups = BTreeMap::new();
        for f in findings.by_id.values().filter(|f| matches_all(&self.filters, *f)) {
            if let Some(key) = text(f, group_by) {
                *groups.entry(key).or_default() += 1;
            }
        }
        groups
    }
}

/// What a follower of the findings receives.
#[derive(Debug, Clone)]
pub enum Followed {
    /// A finding created or updated, once durable; each at most once, in sequence order.
    Finding(Box<Finding>),
    /// The follower fell `missed` changes behind the feed and is stopped: it resumes from
    /// `resume_from` (every finding up to it was delivered).
    Behind { missed: u64, resume_from: u64 },
}

/// How many followed findings wait for a slow reader before the feed's own buffer is used.
const FOLLOW_BUFFER: usize = 256;

/// Every finding created or updated after `after` (none before now when it is `None`),
/// replayed first, then each one as it becomes durable. Subscribing and reading what is durable happen
/// under one read lock, which announcing excludes: what is announced before is replayed, what
/// is announced after comes from the feed, so nothing falls between the two and nothing
/// arrives twice. The receiver closes when the follower falls behind (after `Behind`) or the
/// feed ends.
pub fn follow(store: &Store, after: Option<u64>) -> mpsc::Receiver<Followed> {
    let (mut live, backlog) = store.read().findings().watch_from(after);
    let cursor = after.unwrap_or(0);
    let (tx, rx) = mpsc::channel(FOLLOW_BUFFER);
    tokio::spawn(async move {
        let mut sent = cursor;
        for finding in backlog {
            sent = sent.max(finding.sequence);
            if tx.send(Followed::Finding(Box::new(finding))).await.is_err() {
                return;
            }
        }
        loop {
            match live.recv().await {
                Ok(finding) if finding.sequence > sent => {
                    sent = finding.sequence;
                    if tx.send(Followed::Finding(Box::new(finding))).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let _ = tx.send(Followed::Behind { missed, resume_from: sent }).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    rx
}
