//! The findings read side, one for every API: the properties Macie's finding criteria name,
//! a query (criteria, sort) that ListFindings, GetFindingStatistics and `/api/findings` all
//! run, and the one follower of the durable feed that WatchFindings and the live findings
//! stream (server-sent events) both read.

use std::collections::BTreeMap;

use tokio::sync::{broadcast, mpsc};

use estate_common::findings::Finding;

use crate::read::criteria::{matches_all, Filter, Filterable, Property, QueryError};
use crate::state::findings::Findings;
use crate::state::store::Store;

/// A finding property that criteria, sorting and grouping may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingProperty {
    Type,
    Severity,
    SeverityScore,
    AccountId,
    Region,
    BucketName,
    Archived,
    CreatedAt,
    UpdatedAt,
    Count,
}

/// Every finding property by its Macie name: the one list criteria, sorting, grouping and
/// their error messages read.
const FINDING_PROPERTIES: [(&str, FindingProperty); 10] = [
    ("type", FindingProperty::Type),
    ("severity.description", FindingProperty::Severity),
    ("severity.score", FindingProperty::SeverityScore),
    ("accountId", FindingProperty::AccountId),
    ("region", FindingProperty::Region),
    ("resourcesAffected.s3Bucket.name", FindingProperty::BucketName),
    ("archived", FindingProperty::Archived),
    ("createdAt", FindingProperty::CreatedAt),
    ("updatedAt", FindingProperty::UpdatedAt),
    ("count", FindingProperty::Count),
];

impl FindingProperty {
    pub fn sortable(self) -> bool {
        matches!(self, Self::UpdatedAt | Self::CreatedAt | Self::Count | Self::SeverityScore | Self::Type)
    }

    pub fn groupable(self) -> bool {
        matches!(self, Self::Type | Self::Severity | Self::BucketName | Self::AccountId)
    }

    /// The names of the properties `keep` accepts, for error messages.
    pub fn names(keep: fn(Self) -> bool) -> String {
        FINDING_PROPERTIES.iter().filter(|(_, p)| keep(*p)).map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
    }
}

impl Property for FindingProperty {
    fn parse(name: &str) -> Option<Self> {
        FINDING_PROPERTIES.iter().find(|(known, _)| *known == name).map(|(_, p)| *p)
    }

    fn unknown(name: &str) -> QueryError {
        QueryError::UnknownFindingField { name: name.to_owned(), known: Self::names(|_| true) }
    }

    fn is_numeric(self) -> bool {
        matches!(self, Self::SeverityScore | Self::CreatedAt | Self::UpdatedAt | Self::Count)
    }

    fn allowed(self) -> Option<&'static [&'static str]> {
        match self {
            Self::Archived => Some(&["true", "false"]),
            Self::Severity => Some(&["High", "Medium", "Low"]),
            _ => None,
        }
    }
}

impl Filterable<FindingProperty> for Finding {
    fn number(&self, property: FindingProperty) -> Option<i64> {
        match property {
            FindingProperty::SeverityScore => Some(self.kind.severity().1),
            FindingProperty::CreatedAt => Some(self.created_at),
            FindingProperty::UpdatedAt => Some(self.updated_at),
            FindingProperty::Count => Some(self.count),
            _ => None,
        }
    }

    fn any_text(&self, property: FindingProperty, mut pred: impl FnMut(&str) -> bool) -> bool {
        match property {
            FindingProperty::Type => pred(self.kind.as_str()),
            FindingProperty::Severity => pred(self.kind.severity().0),
            FindingProperty::AccountId => pred(&self.account_id),
            FindingProperty::Region => pred(&self.region),
            FindingProperty::BucketName => pred(&self.bucket_name),
            FindingProperty::Archived => pred(if self.archived { "true" } else { "false" }),
            _ => false,
        }
    }
}

/// A finding's text value of a property, for grouping and sorting (`None` for numbers).
fn text(f: &Finding, property: FindingProperty) -> Option<String> {
    let mut value = None;
    f.any_text(property, |v| {
        value = Some(v.to_owned());
        true
    });
    value
}

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
        let sort = self.sort;
        let key = |f: &Finding| (f.number(sort).unwrap_or(0), text(f, sort).unwrap_or_default(), f.sequence);
        found.sort_by_cached_key(|f| key(f));
        if self.descending {
            found.reverse();
        }
        found
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
