//! Macie's filter criteria (`eq`, `neq`, `gt`, `gte`, `lt`, `lte`, `prefix`), for any kind of
//! record: buckets (`read/query.rs`) and findings (`findings.rs` here). Pure: below the state,
//! which applies findings filters with them. A record kind names its
//! properties ([`Property`]) and reads them ([`Filterable`]); criteria are parsed and checked
//! against the properties once, before any record is looked at ([`compile`]), then matched.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod findings;

/// A request that makes no sense, with the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("unknown bucket property `{0}` in criteria (known: {KNOWN_FIELDS})")]
    UnknownField(String),
    #[error("unknown finding property `{name}` in criteria (known: {known})")]
    UnknownFindingField { name: String, known: String },
    #[error("criterion on `{field}`: {reason}")]
    BadCriterion { field: String, reason: String },
    #[error("cannot sort by `{0}` (sortable: accountId, bucketName, objectCount, sizeInBytes, classifiableObjectCount, classifiableSizeInBytes, sensitivityScore)")]
    BadSort(String),
    #[error("`nextToken` is malformed or belongs to a different query")]
    BadToken,
    #[error("`maxResults` must be between 1 and {MAX_PAGE_SIZE}, got {0}")]
    BadPageSize(i32),
}

pub(crate) const KNOWN_FIELDS: &str =
    "accountId, bucketName, region, bucketArn, sharedAccess, publicAccess.effectivePermission, \
allowsUnencryptedObjectUploads, serverSideEncryption.type, versioning, errorCode, replicationDetails.replicated, \
replicationDetails.replicatedExternally, replicationDetails.replicationAccounts, tags.key, tags.value, objectCount, \
sizeInBytes, sizeInBytesCompressed, classifiableObjectCount, classifiableSizeInBytes, bucketCreatedAt, lastUpdated, \
sensitivityScore, automatedDiscoveryMonitoringStatus, jobDetails.isDefinedInJob, jobDetails.isMonitoredByJob, \
jobDetails.lastJobId, jobDetails.lastJobRunTime, lastAutomatedDiscoveryTime";

pub const MAX_PAGE_SIZE: i32 = 1000;
pub const DEFAULT_PAGE_SIZE: i32 = 50;

/// Macie's `CriterionAdditionalProperties`, for one property (operators left out are unset):
/// `eq` and `neq` hold when any of the property's values is (or none is) one listed;
/// `eqExactMatch` when every value listed is among the property's values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Criterion {
    pub eq: Vec<String>,
    #[serde(rename = "eqExactMatch")]
    pub eq_exact_match: Vec<String>,
    pub neq: Vec<String>,
    pub gt: Option<i64>,
    pub gte: Option<i64>,
    pub lt: Option<i64>,
    pub lte: Option<i64>,
    pub prefix: Option<String>,
}

/// A property criteria may name, of one kind of record.
pub trait Property: Copy {
    fn parse(name: &str) -> Option<Self>;
    /// The error for a name that is no property of this kind of record.
    fn unknown(name: &str) -> QueryError;
    fn is_numeric(self) -> bool;
    /// The values an enumerated text property takes (`None`: any text, or a number).
    fn allowed(self) -> Option<&'static [&'static str]> {
        None
    }
    /// Whether `eqExactMatch` applies (Macie: tag keys and values).
    fn exact_match(self) -> bool {
        false
    }
    /// Whether `prefix` applies (Macie: bucket criteria only).
    fn takes_prefix(self) -> bool {
        true
    }
}

/// A record that criteria on the properties `P` can be matched against.
pub trait Filterable<P: Property> {
    /// The value of a numeric property; `None` when the record has none.
    fn number(&self, property: P) -> Option<i64>;
    /// Whether any value of a text property (some have several) satisfies `pred`.
    fn any_text(&self, property: P, pred: impl FnMut(&str) -> bool) -> bool;
}

/// One checked criterion, with its numbers parsed.
#[derive(Debug, Clone)]
pub struct Filter<P> {
    property: P,
    criterion: Criterion,
    eq_numbers: Vec<i64>,
    neq_numbers: Vec<i64>,
}

impl<P: Property> Filter<P> {
    pub fn new(name: &str, criterion: Criterion) -> Result<Self, QueryError> {
        let property = P::parse(name).ok_or_else(|| P::unknown(name))?;
        let bad = |reason: &str| QueryError::BadCriterion { field: name.to_owned(), reason: reason.to_owned() };
        let numbers = |values: &[String]| -> Result<Vec<i64>, QueryError> {
            values.iter().map(|v| v.parse().map_err(|_| bad(&format!("`{v}` is not an integer")))).collect()
        };
        let has_range = [criterion.gt, criterion.gte, criterion.lt, criterion.lte].iter().any(Option::is_some);
        if criterion.prefix.is_some() && !property.takes_prefix() {
            return Err(bad("`prefix` applies to bucket properties only"));
        }
        if !criterion.eq_exact_match.is_empty() && !property.exact_match() {
            return Err(bad("`eqExactMatch` applies to tag keys and values only"));
        }
        if property.is_numeric() {
            if criterion.prefix.is_some() {
                return Err(bad("`prefix` applies to text properties only"));
            }
        } else {
            if has_range {
                return Err(bad("`gt`, `gte`, `lt` and `lte` apply to numeric properties only"));
            }
            if let Some(allowed) = property.allowed() {
                if let Some(v) = criterion.eq.iter().chain(&criterion.neq).find(|v| !allowed.contains(&v.as_str())) {
                    return Err(bad(&format!("`{v}` is not one of {}", allowed.join(", "))));
                }
            }
        }
        let (eq_numbers, neq_numbers) = if property.is_numeric() {
            (numbers(&criterion.eq)?, numbers(&criterion.neq)?)
        } else {
            (Vec::new(), Vec::new())
        };
        if criterion == Criterion::default() {
            return Err(bad("the criterion has no operator"));
        }
        Ok(Self { property, criterion, eq_numbers, neq_numbers })
    }

    pub fn property(&self) -> P {
        self.property
    }

    pub fn matches<R: Filterable<P>>(&self, record: &R) -> bool {
        let c = &self.criterion;
        if self.property.is_numeric() {
            let Some(n) = record.number(self.property) else { return false };
            return (self.eq_numbers.is_empty() || self.eq_numbers.contains(&n))
                && (self.neq_numbers.is_empty() || !self.neq_numbers.contains(&n))
                && c.gt.is_none_or(|v| n > v)
                && c.gte.is_none_or(|v| n >= v)
                && c.lt.is_none_or(|v| n < v)
                && c.lte.is_none_or(|v| n <= v);
        }
        let p = self.property;
        (c.eq.is_empty() || record.any_text(p, |v| c.eq.iter().any(|e| e == v)))
            && c.eq_exact_match.iter().all(|wanted| record.any_text(p, |v| v == wanted))
            && (c.neq.is_empty() || !record.any_text(p, |v| c.neq.iter().any(|e| e == v)))
            && c.prefix.as_ref().is_none_or(|prefix| record.any_text(p, |v| v.starts_with(prefix.as_str())))
    }
}

/// Refuses criteria that list more than `max` values in one operator (a request must stay
/// cheap to match against millions of records).
pub fn check_value_counts(criteria: &BTreeMap<String, Criterion>, max: usize) -> Result<(), QueryError> {
    let most = |c: &Criterion| c.eq.len().max(c.neq.len()).max(c.eq_exact_match.len());
    match criteria.iter().find(|(_, c)| most(c) > max) {
        Some((field, c)) => Err(QueryError::BadCriterion {
            field: field.clone(),
            reason: format!("{} values; at most {max} per operator", most(c)),
        }),
        None => Ok(()),
    }
}

/// Every criterion checked: the value counts, then each property and operator.
pub fn compile<P: Property>(
    criteria: BTreeMap<String, Criterion>,
    max_values: usize,
) -> Result<Vec<Filter<P>>, QueryError> {
    check_value_counts(&criteria, max_values)?;
    criteria.into_iter().map(|(name, c)| Filter::new(&name, c)).collect()
}

/// Whether `record` satisfies every filter.
pub fn matches_all<P: Property, R: Filterable<P>>(filters: &[Filter<P>], record: &R) -> bool {
    filters.iter().all(|f| f.matches(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Toy {
        Name,
        Colour,
        Size,
    }

    impl Property for Toy {
        fn parse(name: &str) -> Option<Self> {
            Some(match name {
                "name" => Self::Name,
                "colour" => Self::Colour,
                "size" => Self::Size,
                _ => return None,
            })
        }
        fn unknown(name: &str) -> QueryError {
            QueryError::UnknownField(name.to_owned())
        }
        fn is_numeric(self) -> bool {
            self == Self::Size
        }
        fn allowed(self) -> Option<&'static [&'static str]> {
            (self == Self::Colour).then_some(&["red", "blue"])
        }
    }

    struct Thing {
        names: Vec<&'static str>,
        colour: &'static str,
        size: Option<i64>,
    }

    impl Filterable<Toy> for Thing {
        fn number(&self, _: Toy) -> Option<i64> {
            self.size
        }
        fn any_text(&self, property: Toy, mut pred: impl FnMut(&str) -> bool) -> bool {
            match property {
                Toy::Name => self.names.iter().any(|n| pred(n)),
                _ => pred(self.colour),
            }
        }
    }

    fn criteria(items: &[(&str, Criterion)]) -> BTreeMap<String, Criterion> {
        items.iter().map(|(k, c)| (k.to_string(), c.clone())).collect()
    }

    #[test]
    fn criteria_are_checked_before_any_record_and_then_matched() {
        let eq = |v: &str| Criterion { eq: vec![v.into()], ..Default::default() };
        let bad = |items: &[(&str, Criterion)]| compile::<Toy>(criteria(items), 10).unwrap_err();
        assert!(matches!(bad(&[("weight", eq("1"))]), QueryError::UnknownField(_)));
        assert!(matches!(bad(&[("colour", eq("green"))]), QueryError::BadCriterion { .. }), "not an allowed value");
        assert!(matches!(bad(&[("size", eq("big"))]), QueryError::BadCriterion { .. }), "not a number");
        let range_on_text = Criterion { gt: Some(1), ..Default::default() };
        assert!(matches!(bad(&[("name", range_on_text)]), QueryError::BadCriterion { .. }));
        assert!(matches!(bad(&[("name", Criterion::default())]), QueryError::BadCriterion { .. }), "no operator");
        let many = Criterion { eq: (0..11).map(|i| i.to_string()).collect(), ..Default::default() };
        assert!(matches!(bad(&[("size", many)]), QueryError::BadCriterion { .. }), "too many values");

        let thing = Thing { names: vec!["logs", "archive"], colour: "red", size: Some(5) };
        let unsized_thing = Thing { names: vec!["x"], colour: "blue", size: None };
        let filters = |items: &[(&str, Criterion)]| compile::<Toy>(criteria(items), 10).unwrap();
        let at_least_5 = Criterion { gte: Some(5), ..Default::default() };
        assert!(matches_all(&filters(&[("name", eq("archive")), ("size", at_least_5.clone())]), &thing));
        assert!(!matches_all(&filters(&[("size", at_least_5)]), &unsized_thing), "no value matches no range");
        let not_red = Criterion { neq: vec!["red".into()], ..Default::default() };
        assert!(!matches_all(&filters(&[("colour", not_red.clone())]), &thing));
        assert!(matches_all(&filters(&[("colour", not_red)]), &unsized_thing));
        let prefix = Criterion { prefix: Some("arc".into()), ..Default::default() };
        assert!(matches_all(&filters(&[("name", prefix)]), &thing), "any of several values");
    }
}
