//! Findings filters, Macie's suppression rules: named criteria with an action. An `Archive`
//! filter archives the open findings that match it when it is saved, and every finding that
//! matches it when raised or repeated later; archived findings are not delivered to sinks.
//! A `Noop` filter only names a set of criteria. Filters apply in `position` order; the first
//! that archives a finding is recorded on it (`suppressed_by`), and such a finding stays the
//! bucket's current one, counting later occurrences while it stays archived. Deleting a
//! filter archives nothing more and unarchives nothing, as in Macie.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use estate_common::findings::Finding;
use estate_common::model::UnixMillis;

use crate::criteria::findings::FindingProperty;
use crate::criteria::{compile, matches_all, Criterion, Filter, QueryError};

/// At most this many filters (Macie's quota is 1,000 per account).
pub const MAX_FILTERS: usize = 1000;
/// The most values one criterion of a filter may list.
pub const MAX_FILTER_VALUES: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterAction {
    Archive,
    Noop,
}

/// One filter as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingsFilter {
    pub id: String,
    pub name: String,
    pub description: String,
    pub action: FilterAction,
    pub position: i32,
    /// Macie's `findingCriteria.criterion`.
    pub criteria: BTreeMap<String, Criterion>,
    pub tags: BTreeMap<String, String>,
    /// The creating request's idempotency token, when it gave one.
    pub client_token: Option<String>,
    pub created_at: UnixMillis,
}

impl FindingsFilter {
    /// Checks the filter as Macie does: the name 3 to 64 characters, the description at most
    /// 512, at most 50 tags, and criteria Estate can compile.
    pub fn check(&self) -> Result<Vec<Filter<FindingProperty>>, QueryError> {
        let bad = |field: &str, reason: String| QueryError::BadCriterion { field: field.to_owned(), reason };
        let name_chars = self.name.chars().count();
        if !(3..=64).contains(&name_chars) {
            return Err(bad("name", format!("must be 3 to 64 characters, not {name_chars}")));
        }
        if self.description.chars().count() > 512 {
            return Err(bad("description", "must be at most 512 characters".into()));
        }
        if self.tags.len() > 50 || self.tags.iter().any(|(k, v)| k.chars().count() > 128 || v.chars().count() > 256) {
            return Err(bad(
                "tags",
                "at most 50 tags, keys of at most 128 and values of at most 256 characters".into(),
            ));
        }
        if self.criteria.is_empty() {
            return Err(bad("findingCriteria", "a filter needs at least one criterion".into()));
        }
        compile(self.criteria.clone(), MAX_FILTER_VALUES)
    }

    pub fn arn(&self) -> String {
        format!("estate:findings-filter/{}", self.id)
    }
}

/// The filters, compiled, in application order.
#[derive(Debug, Default)]
pub struct Filters {
    by_id: BTreeMap<String, (FindingsFilter, Vec<Filter<FindingProperty>>)>,
}

impl Filters {
    /// Adds or replaces a filter; one whose criteria no longer compile (stored by a version
    /// that knew other properties) is kept but applies to nothing, and the error is logged.
    pub fn put(&mut self, filter: FindingsFilter) {
        let compiled = match filter.check() {
            Ok(compiled) => compiled,
            Err(error) => {
                tracing::error!(filter = %filter.id, %error, "findings filter does not compile; it archives nothing");
                Vec::new()
            }
        };
        self.by_id.insert(filter.id.clone(), (filter, compiled));
    }

    pub fn remove(&mut self, id: &str) -> Option<FindingsFilter> {
        self.by_id.remove(id).map(|(f, _)| f)
    }

    pub fn get(&self, id: &str) -> Option<&FindingsFilter> {
        self.by_id.get(id).map(|(f, _)| f)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every filter, by position then name.
    pub fn ordered(&self) -> Vec<&FindingsFilter> {
        let mut all: Vec<&FindingsFilter> = self.by_id.values().map(|(f, _)| f).collect();
        all.sort_by(|a, b| (a.position, &a.name, &a.id).cmp(&(b.position, &b.name, &b.id)));
        all
    }

    pub fn by_client_token(&self, token: &str) -> Option<&FindingsFilter> {
        self.by_id.values().map(|(f, _)| f).find(|f| f.client_token.as_deref() == Some(token))
    }

    pub fn by_name(&self, name: &str) -> Option<&FindingsFilter> {
        self.by_id.values().map(|(f, _)| f).find(|f| f.name == name)
    }

    /// Whether `filter`'s criteria match the finding (`false` for one that did not compile).
    pub fn matches(&self, id: &str, finding: &Finding) -> bool {
        self.by_id.get(id).is_some_and(|(_, compiled)| !compiled.is_empty() && matches_all(compiled, finding))
    }

    /// The first archiving filter, in position order, that matches the finding.
    pub fn archiving(&self, finding: &Finding) -> Option<String> {
        if self.by_id.is_empty() {
            return None;
        }
        self.ordered()
            .into_iter()
            .filter(|f| f.action == FilterAction::Archive)
            .find(|f| self.matches(&f.id, finding))
            .map(|f| f.id.clone())
    }
}
