//! `DescribeBuckets`: Macie's filter criteria, a total sort order and stable page tokens over
//! the in-memory index. A page token names the last bucket returned (its sort value and key)
//! and a digest of the query, so pages stay consistent while buckets come and go.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use estate_common::macie::{unanalysed_sensitivity_score, EffectivePermission, EncryptionType, SharedAccess};
use estate_common::model::StoredKey;

use crate::state::index::{Entry, Index};

use crate::criteria::check_value_counts;
pub use crate::criteria::{Criterion, QueryError, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::criteria::{Filter, Filterable, Property, KNOWN_FIELDS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    AccountId,
    BucketName,
    Region,
    BucketArn,
    SharedAccess,
    EffectivePermission,
    AllowsUnencryptedObjectUploads,
    EncryptionType,
    Versioning,
    ErrorCode,
    Replicated,
    ReplicatedExternally,
    TagKey,
    TagValue,
    ObjectCount,
    SizeInBytes,
    ClassifiableObjectCount,
    ClassifiableSizeInBytes,
    BucketCreatedAt,
    LastUpdated,
    SizeInBytesCompressed,
    SensitivityScore,
    ReplicationAccounts,
    // Macie's discovery and job properties: Estate runs neither, so every bucket has Macie's
    // values for a bucket neither covers (NOT_MONITORED, FALSE, no job, never analysed).
    AutomatedDiscoveryMonitoringStatus,
    IsDefinedInJob,
    IsMonitoredByJob,
    LastJobId,
    LastJobRunTime,
    LastAutomatedDiscoveryTime,
}

impl Field {
    /// Whether any value of a text field (tags have several) satisfies `pred`. Borrows, never
    /// allocates: this runs once per bucket per query.
    fn any_value(self, entry: &Entry, mut pred: impl FnMut(&str) -> bool) -> bool {
        let facts = &entry.facts;
        let j = &entry.judgement;
        let config = facts.config();
        match self {
            Self::AccountId => pred(&facts.key.account_id),
            Self::BucketName => pred(&facts.key.bucket_name),
            Self::Region => pred(&facts.key.region),
            Self::BucketArn => pred(&facts.key.arn()),
            Self::SharedAccess => pred(j.shared_access.as_str()),
            Self::EffectivePermission => pred(j.effective_permission.as_str()),
            Self::AllowsUnencryptedObjectUploads => pred(j.allows_unencrypted_object_uploads.as_str()),
            Self::EncryptionType => match config {
                // Unread: neither NONE nor any algorithm.
                Some(c) if c.is_unread(estate_common::model::ConfigCall::Encryption) => false,
                Some(c) => {
                    pred(c.default_encryption.as_ref().map_or(EncryptionType::None.as_str(), |e| e.algorithm.as_str()))
                }
                None => false,
            },
            Self::Versioning => pred(if config.is_some_and(|c| c.versioning) { "true" } else { "false" }),
            Self::ErrorCode => facts.error().is_some_and(|e| pred(e.code.as_macie_str())),
            Self::Replicated => {
                j.replication.as_ref().is_some_and(|r| pred(if r.replicated { "true" } else { "false" }))
            }
            // As the JSON writes it: an unknown destination owner counts as outside.
            Self::ReplicatedExternally => j
                .replication
                .as_ref()
                .map(|r| r.replicated_externally.unwrap_or(true))
                .is_some_and(|v| pred(if v { "true" } else { "false" })),
            Self::ReplicationAccounts => {
                j.replication.as_ref().is_some_and(|r| r.replication_accounts.iter().any(|a| pred(a)))
            }
            Self::AutomatedDiscoveryMonitoringStatus => {
                pred(estate_common::macie::AutomatedDiscoveryMonitoringStatus::NotMonitored.as_str())
            }
            Self::IsDefinedInJob | Self::IsMonitoredByJob => pred("FALSE"),
            Self::TagKey => config.is_some_and(|c| c.tags.iter().any(|t| pred(&t.key))),
            Self::TagValue => config.is_some_and(|c| c.tags.iter().any(|t| pred(&t.value))),
            _ => false,
        }
    }

    /// Relative cost of reading the field: judgements are inline in the index, keys and
    /// configuration sit behind pointers. Cheap filters run first.
    fn cost(self) -> u8 {
        match self {
            Self::SharedAccess
            | Self::EffectivePermission
            | Self::AllowsUnencryptedObjectUploads
            | Self::Replicated
            | Self::ReplicatedExternally
            | Self::ReplicationAccounts
            | Self::AutomatedDiscoveryMonitoringStatus
            | Self::IsDefinedInJob
            | Self::IsMonitoredByJob
            | Self::LastJobId
            | Self::LastJobRunTime
            | Self::LastAutomatedDiscoveryTime => 0,
            Self::AccountId
            | Self::BucketName
            | Self::Region
            | Self::BucketCreatedAt
            | Self::LastUpdated
            | Self::ErrorCode => 1,
            _ => 2,
        }
    }

    /// The value of a numeric field; `None` when the bucket has none (objects not counted).
    fn number(self, entry: &Entry) -> Option<i64> {
        match self {
            Self::BucketCreatedAt => Some(entry.facts.created_at),
            Self::LastUpdated => Some(entry.facts.read_at),
            Self::ObjectCount => entry.judgement.objects.map(|o| o.object_count),
            Self::SizeInBytes => entry.judgement.objects.map(|o| o.size_in_bytes),
            Self::ClassifiableObjectCount => entry.judgement.objects.map(|o| o.classifiable_object_count),
            Self::ClassifiableSizeInBytes => entry.judgement.objects.map(|o| o.classifiable_size_in_bytes),
            Self::SizeInBytesCompressed => entry.judgement.objects.map(|o| o.size_in_bytes_compressed),
            Self::SensitivityScore => {
                unanalysed_sensitivity_score(entry.judgement.objects.map(|o| o.object_count)).map(i64::from)
            }
            _ => None,
        }
    }
}

impl Property for Field {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "accountId" => Self::AccountId,
            "bucketName" => Self::BucketName,
            "region" => Self::Region,
            "bucketArn" => Self::BucketArn,
            "sharedAccess" => Self::SharedAccess,
            "publicAccess.effectivePermission" => Self::EffectivePermission,
            "allowsUnencryptedObjectUploads" => Self::AllowsUnencryptedObjectUploads,
            "serverSideEncryption.type" => Self::EncryptionType,
            "versioning" => Self::Versioning,
            "errorCode" => Self::ErrorCode,
            "replicationDetails.replicated" => Self::Replicated,
            "replicationDetails.replicatedExternally" => Self::ReplicatedExternally,
            "tags.key" => Self::TagKey,
            "tags.value" => Self::TagValue,
            "objectCount" => Self::ObjectCount,
            "sizeInBytes" => Self::SizeInBytes,
            "classifiableObjectCount" => Self::ClassifiableObjectCount,
            "classifiableSizeInBytes" => Self::ClassifiableSizeInBytes,
            "bucketCreatedAt" => Self::BucketCreatedAt,
            "lastUpdated" => Self::LastUpdated,
            "sizeInBytesCompressed" => Self::SizeInBytesCompressed,
            "sensitivityScore" => Self::SensitivityScore,
            "replicationDetails.replicationAccounts" => Self::ReplicationAccounts,
            "automatedDiscoveryMonitoringStatus" => Self::AutomatedDiscoveryMonitoringStatus,
            "jobDetails.isDefinedInJob" => Self::IsDefinedInJob,
            "jobDetails.isMonitoredByJob" => Self::IsMonitoredByJob,
            "jobDetails.lastJobId" => Self::LastJobId,
            "jobDetails.lastJobRunTime" => Self::LastJobRunTime,
            "lastAutomatedDiscoveryTime" => Self::LastAutomatedDiscoveryTime,
            _ => return None,
        })
    }

    fn is_numeric(self) -> bool {
        matches!(
            self,
            Self::ObjectCount
                | Self::SizeInBytes
                | Self::ClassifiableObjectCount
                | Self::ClassifiableSizeInBytes
                | Self::BucketCreatedAt
                | Self::LastUpdated
                | Self::SizeInBytesCompressed
                | Self::SensitivityScore
                | Self::LastJobRunTime
                | Self::LastAutomatedDiscoveryTime
        )
    }

    fn unknown(name: &str) -> QueryError {
        QueryError::UnknownField(name.to_owned())
    }

    /// The values an enumerated text property takes (`None`: any text, or a number).
    fn allowed(self) -> Option<&'static [&'static str]> {
        const SHARED: &[&str] = &[
            SharedAccess::External.as_str(),
            SharedAccess::Internal.as_str(),
            SharedAccess::NotShared.as_str(),
            SharedAccess::Unknown.as_str(),
        ];
        const PERMISSION: &[&str] = &[
            EffectivePermission::Public.as_str(),
            EffectivePermission::NotPublic.as_str(),
            EffectivePermission::Unknown.as_str(),
        ];
        Some(match self {
            Field::SharedAccess => SHARED,
            Field::EffectivePermission => PERMISSION,
            Field::AllowsUnencryptedObjectUploads | Field::IsDefinedInJob | Field::IsMonitoredByJob => {
                &["TRUE", "FALSE", "UNKNOWN"]
            }
            Field::AutomatedDiscoveryMonitoringStatus => &["MONITORED", "NOT_MONITORED"],
            Field::Versioning | Field::Replicated | Field::ReplicatedExternally => &["true", "false"],
            // Macie's two codes. Estate stores no bucket past `--max-buckets-per-account` (the
            // agent's report of it is refused, and its account shows as refused), so no stored
            // bucket carries the second: it matches nothing.
            Field::ErrorCode => &["ACCESS_DENIED", "BUCKET_COUNT_EXCEEDS_QUOTA"],
            _ => return None,
        })
    }
}

impl Filterable<Field> for Entry {
    fn number(&self, field: Field) -> Option<i64> {
        field.number(self)
    }

    fn any_text(&self, field: Field, pred: impl FnMut(&str) -> bool) -> bool {
        field.any_value(self, pred)
    }
}

/// One property the criteria may name, as the dashboard offers it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertySchema {
    pub name: &'static str,
    pub numeric: bool,
    /// The values of an enumerated property.
    pub values: Option<&'static [&'static str]>,
}

/// Every property the criteria may name.
pub fn criteria_properties() -> Vec<PropertySchema> {
    KNOWN_FIELDS
        .split(", ")
        .filter_map(|name| {
            let field = Field::parse(name)?;
            Some(PropertySchema { name, numeric: field.is_numeric(), values: field.allowed() })
        })
        .collect()
}

/// The properties buckets can be sorted by (Macie's).
pub const SORTABLE_FIELDS: [&str; 7] = [
    "accountId",
    "bucketName",
    "objectCount",
    "sizeInBytes",
    "classifiableObjectCount",
    "classifiableSizeInBytes",
    "sensitivityScore",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortField {
    AccountId,
    BucketName,
    Numeric(Field),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum SortValue {
    /// Buckets without the value sort first in ascending order.
    Missing,
    Number(i64),
    Text(String),
}

/// A sort value borrowed from the index, so comparing costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SortRef<'a> {
    Missing,
    Number(i64),
    Text(&'a str),
}

impl SortValue {
    fn as_ref(&self) -> SortRef<'_> {
        match self {
            Self::Missing => SortRef::Missing,
            Self::Number(n) => SortRef::Number(*n),
            Self::Text(t) => SortRef::Text(t),
        }
    }
}

impl SortRef<'_> {
    fn to_owned(self) -> SortValue {
        match self {
            Self::Missing => SortValue::Missing,
            Self::Number(n) => SortValue::Number(n),
            Self::Text(t) => SortValue::Text(t.to_owned()),
        }
    }
}

impl SortField {
    fn parse(name: &str) -> Result<Self, QueryError> {
        Ok(match name {
            "accountId" => Self::AccountId,
            "bucketName" => Self::BucketName,
            "objectCount" => Self::Numeric(Field::ObjectCount),
            "sizeInBytes" => Self::Numeric(Field::SizeInBytes),
            "classifiableObjectCount" => Self::Numeric(Field::ClassifiableObjectCount),
            "classifiableSizeInBytes" => Self::Numeric(Field::ClassifiableSizeInBytes),
            "sensitivityScore" => Self::Numeric(Field::SensitivityScore),
            other => return Err(QueryError::BadSort(other.to_owned())),
        })
    }

    fn value(self, entry: &Entry) -> SortRef<'_> {
        match self {
            Self::AccountId => SortRef::Text(&entry.facts.key.account_id),
            Self::BucketName => SortRef::Text(&entry.facts.key.bucket_name),
            Self::Numeric(field) => field.number(entry).map_or(SortRef::Missing, SortRef::Number),
        }
    }
}

/// A parsed, validated `DescribeBuckets` request.
#[derive(Debug, Clone)]
pub struct Query {
    filters: Vec<Filter<Field>>,
    sort: SortField,
    descending: bool,
    page_size: usize,
    after: Option<Cursor>,
    digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    query: String,
    value: SortValue,
    key: StoredKey,
}

impl Query {
    /// A query, checked before anything is matched: at most `max_values` values per
    /// criterion (`--max-criterion-values`), known fields, a page size in range, and a token
    /// of this very query.
    pub fn new(
        criteria: BTreeMap<String, Criterion>,
        sort: Option<(String, bool)>,
        max_results: i32,
        next_token: &str,
        max_values: usize,
    ) -> Result<Self, QueryError> {
        check_value_counts(&criteria, max_values)?;
        let page_size = match max_results {
            0 => DEFAULT_PAGE_SIZE,
            n if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            n => return Err(QueryError::BadPageSize(n)),
        };
        let (sort_name, descending) = sort.unwrap_or_else(|| ("accountId".to_owned(), false));
        let sort_field = SortField::parse(&sort_name)?;
        let mut hasher = Sha256::new();
        hasher.update(serde_json::to_vec(&criteria).unwrap_or_default());
        hasher.update(sort_name.as_bytes());
        hasher.update([u8::from(descending)]);
        let digest = hex::encode(&hasher.finalize()[..12]);
        let mut filters: Vec<Filter<Field>> =
            criteria.into_iter().map(|(name, c)| Filter::new(&name, c)).collect::<Result<_, _>>()?;
        filters.sort_by_key(|f| f.property().cost());
        let after = if next_token.is_empty() {
            None
        } else {
            let bytes = hex::decode(next_token).map_err(|_| QueryError::BadToken)?;
            let cursor: Cursor = postcard::from_bytes(&bytes).map_err(|_| QueryError::BadToken)?;
            if cursor.query != digest {
                return Err(QueryError::BadToken);
            }
            Some(cursor)
        };
        Ok(Self { filters, sort: sort_field, descending, page_size: page_size as usize, after, digest })
    }

    /// Orders (value, key) pairs; keys break ties. Descending reverses the whole order, so
    /// that sorting by account is exactly key order and sorting by name is name-key order.
    fn order(&self, a: (SortRef<'_>, &StoredKey), b: (SortRef<'_>, &StoredKey)) -> Ordering {
        let ascending = a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1));
        if self.descending {
            ascending.reverse()
        } else {
            ascending
        }
    }

    fn matches(&self, entry: &Entry) -> bool {
        crate::criteria::matches_all(&self.filters, entry)
    }

    /// How many buckets match, on every page together: the index's size without criteria,
    /// else one pass over it (the cost of one page sorted by a number).
    pub fn count(&self, index: &Index) -> usize {
        if self.filters.is_empty() {
            return index.len();
        }
        index.by_key_from(None, false).filter(|(_, e)| self.matches(e)).count()
    }

    /// One page of the index, and the token of the next page (if any).
    pub fn run<'a>(&self, index: &'a Index) -> (Vec<&'a Entry>, Option<String>) {
        let cursor = self.after.as_ref().map(|c| &c.key);
        let mut page: Vec<(SortRef<'a>, &'a StoredKey, &'a Entry)> = match self.sort {
            // These orders exist already: walk one and stop after a page.
            SortField::AccountId | SortField::BucketName => {
                let walk = if self.sort == SortField::AccountId {
                    index.by_key_from(cursor, self.descending)
                } else {
                    index.by_name_from(cursor, self.descending)
                };
                walk.filter(|(_, e)| self.matches(e))
                    .take(self.page_size + 1)
                    .map(|(key, e)| (self.sort.value(e), key, &**e))
                    .collect()
            }
            SortField::Numeric(_) => self.top(index),
        };
        let more = page.len() > self.page_size;
        page.truncate(self.page_size);
        let token = match (more, page.last()) {
            (true, Some((value, key, _))) => {
                let cursor =
                    Cursor { query: self.digest.clone(), value: SortRef::to_owned(*value), key: (*key).clone() };
                Some(hex::encode(postcard::to_allocvec(&cursor).expect("serializing to memory cannot fail")))
            }
            _ => None,
        };
        (page.into_iter().map(|(_, _, e)| e).collect(), token)
    }

    /// The first `page_size + 1` matches after the cursor in an order the index does not
    /// keep: one pass, a bounded max-heap, no full sort.
    fn top<'a>(&self, index: &'a Index) -> Vec<(SortRef<'a>, &'a StoredKey, &'a Entry)> {
        struct Item<'q, 'a> {
            query: &'q Query,
            value: SortRef<'a>,
            key: &'a StoredKey,
            entry: &'a Entry,
        }
        impl PartialEq for Item<'_, '_> {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other) == Ordering::Equal
            }
        }
        impl Eq for Item<'_, '_> {}
        impl PartialOrd for Item<'_, '_> {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for Item<'_, '_> {
            fn cmp(&self, other: &Self) -> Ordering {
                self.query.order((self.value, self.key), (other.value, other.key))
            }
        }

        let keep = self.page_size + 1;
        let mut heap: BinaryHeap<Item<'_, 'a>> = BinaryHeap::with_capacity(keep + 1);
        for (key, entry) in index.range::<std::ops::RangeFull>(..) {
            if !self.matches(entry) {
                continue;
            }
            let value = self.sort.value(entry);
            if let Some(after) = &self.after {
                if self.order((value, key), (after.value.as_ref(), &after.key)) != Ordering::Greater {
                    continue;
                }
            }
            if heap.len() == keep {
                let worst = heap.peek().expect("heap is full");
                if self.order((value, key), (worst.value, worst.key)) != Ordering::Less {
                    continue;
                }
                heap.pop();
            }
            heap.push(Item { query: self, value, key, entry });
        }
        heap.into_sorted_vec().into_iter().map(|i| (i.value, i.key, i.entry)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{judge, OrgView};
    use estate_common::model::{BucketConfig, BucketFacts, BucketKey, BucketState, Tag};
    use std::sync::Arc;

    fn make_index(n: usize) -> Index {
        let mut index = Index::default();
        for (key, entry) in (0..n).map(|i| {
            let account = format!("{:012}", 100_000_000_000u64 + (i % 3) as u64);
            let facts = BucketFacts {
                key: BucketKey::parse(&account, "eu-west-1", &format!("bucket-{i:04}")).unwrap(),
                created_at: i as i64,
                read_at: 1,
                state: BucketState::Readable(Box::new(BucketConfig {
                    versioning: i % 2 == 0,
                    tags: vec![Tag { key: "team".into(), value: format!("t{}", i % 4) }],
                    ..Default::default()
                })),
            };
            let judgement = judge(&facts, None, &OrgView::default(), None);
            (
                facts.key.stored(),
                Entry { facts: Arc::new(facts), generation: 1, judgement, posture: Default::default() },
            )
        }) {
            index.insert(key, entry);
        }
        index
    }

    fn names(entries: &[&Entry]) -> Vec<String> {
        entries.iter().map(|e| e.facts.key.bucket_name.clone()).collect()
    }

    fn criteria(pairs: &[(&str, Criterion)]) -> BTreeMap<String, Criterion> {
        pairs.iter().map(|(k, c)| (k.to_string(), c.clone())).collect()
    }

    #[test]
    fn pages_cover_every_match_exactly_once_in_order() {
        let index = make_index(103);
        let c = criteria(&[("versioning", Criterion { eq: vec!["true".into()], ..Default::default() })]);
        let mut token = String::new();
        let mut seen = Vec::new();
        loop {
            let q = Query::new(c.clone(), Some(("bucketName".into(), true)), 10, &token, usize::MAX).unwrap();
            let (page, next) = q.run(&index);
            seen.extend(names(&page));
            match next {
                Some(t) => token = t,
                None => break,
            }
        }
        let mut expected: Vec<String> = (0..103).filter(|i| i % 2 == 0).map(|i| format!("bucket-{i:04}")).collect();
        expected.reverse();
        assert_eq!(seen, expected);
    }

    #[test]
    fn tokens_stay_valid_when_buckets_are_added_before_the_cursor() {
        let mut index = make_index(20);
        let q = Query::new(BTreeMap::new(), Some(("bucketName".into(), false)), 5, "", usize::MAX).unwrap();
        let (page, token) = q.run(&index);
        assert_eq!(names(&page).last().unwrap(), "bucket-0004");
        let extra = Entry::clone(make_index(1).values().next().unwrap());
        index.insert(BucketKey::parse("000000000000", "eu-west-1", "aaa").unwrap().stored(), extra);
        let q =
            Query::new(BTreeMap::new(), Some(("bucketName".into(), false)), 5, &token.unwrap(), usize::MAX).unwrap();
        let (page, _) = q.run(&index);
        assert_eq!(names(&page)[0], "bucket-0005");
    }

    #[test]
    fn filters_combine_and_nonsense_is_rejected() {
        let index = make_index(40);
        let c = criteria(&[
            ("tags.value", Criterion { eq: vec!["t1".into()], ..Default::default() }),
            ("bucketName", Criterion { prefix: Some("bucket-001".into()), ..Default::default() }),
            ("bucketCreatedAt", Criterion { gte: Some(10), lt: Some(18), ..Default::default() }),
        ]);
        let (page, _) = Query::new(c, None, 50, "", usize::MAX).unwrap().run(&index);
        let mut got = names(&page);
        got.sort();
        assert_eq!(got, vec!["bucket-0013", "bucket-0017"]);

        let err = |c: BTreeMap<String, Criterion>| Query::new(c, None, 50, "", usize::MAX).unwrap_err();
        assert!(matches!(err(criteria(&[("colour", Criterion::default())])), QueryError::UnknownField(_)));
        let bad_enum = criteria(&[("sharedAccess", Criterion { eq: vec!["SOMETIMES".into()], ..Default::default() })]);
        assert!(err(bad_enum).to_string().contains("SOMETIMES"));
        let range_on_text = criteria(&[("bucketName", Criterion { gt: Some(1), ..Default::default() })]);
        assert!(matches!(err(range_on_text), QueryError::BadCriterion { .. }));
        assert!(matches!(Query::new(BTreeMap::new(), None, 5000, "", usize::MAX), Err(QueryError::BadPageSize(5000))));
        assert!(matches!(Query::new(BTreeMap::new(), None, 5, "zz", usize::MAX), Err(QueryError::BadToken)));
        let (_, token) = Query::new(BTreeMap::new(), None, 5, "", usize::MAX).unwrap().run(&index);
        let other = Query::new(BTreeMap::new(), Some(("bucketName".into(), true)), 5, &token.unwrap(), usize::MAX);
        assert!(matches!(other, Err(QueryError::BadToken)));
    }

    /// Macie accepts both of its error codes: a script asking for buckets over the quota gets
    /// none (Estate never stores them), not an error, and not the ACCESS_DENIED ones.
    #[test]
    fn both_of_macies_error_codes_are_accepted() {
        let mut index = make_index(10);
        let error = estate_common::model::BucketError {
            code: estate_common::model::BucketErrorCode::AccessDenied,
            message: "access denied to `s3:GetBucketPolicy`".into(),
        };
        let facts = BucketFacts {
            key: BucketKey::parse("100000000000", "eu-west-1", "denied").unwrap(),
            created_at: 1,
            read_at: 1,
            state: BucketState::Error(error),
        };
        let judgement = judge(&facts, None, &OrgView::default(), None);
        let entry = Entry { facts: Arc::new(facts), generation: 1, judgement, posture: Default::default() };
        index.insert(entry.facts.key.stored(), entry);
        let access = criteria(&[("errorCode", Criterion { eq: vec!["ACCESS_DENIED".into()], ..Default::default() })]);
        assert_eq!(names(&Query::new(access, None, 50, "", usize::MAX).unwrap().run(&index).0), ["denied"]);
        let quota = criteria(&[(
            "errorCode",
            Criterion { eq: vec!["BUCKET_COUNT_EXCEEDS_QUOTA".into()], ..Default::default() },
        )]);
        let (page, token) = Query::new(quota, None, 50, "", usize::MAX).unwrap().run(&index);
        assert!(page.is_empty() && token.is_none());
        let other = criteria(&[("errorCode", Criterion { eq: vec!["THROTTLED".into()], ..Default::default() })]);
        assert!(Query::new(other, None, 50, "", usize::MAX).unwrap_err().to_string().contains("THROTTLED"));
    }

    /// Macie's discovery and job criteria: every bucket has the values of one neither covers;
    /// the sensitivity score follows the object count (1 empty, 50 with objects, none before
    /// the objects are counted) and sorts like any number.
    #[test]
    fn macies_discovery_and_job_criteria_and_the_sensitivity_score() {
        let mut index = make_index(6);
        let counted = |name: &str, objects: i64| {
            let facts = BucketFacts {
                key: BucketKey::parse("100000000009", "eu-west-1", name).unwrap(),
                created_at: 1,
                read_at: 1,
                state: BucketState::Readable(Box::default()),
            };
            let mut judgement = judge(&facts, None, &OrgView::default(), None);
            judgement.objects =
                Some(estate_common::objects::ObjectTotals { object_count: objects, ..Default::default() });
            Entry { facts: Arc::new(facts), generation: 1, judgement, posture: Default::default() }
        };
        for entry in [counted("empty", 0), counted("full", 3)] {
            index.insert(entry.facts.key.stored(), entry);
        }
        let run = |pairs: &[(&str, Criterion)], sort: Option<(&str, bool)>| {
            let sort = sort.map(|(f, d)| (f.to_owned(), d));
            names(&Query::new(criteria(pairs), sort, 50, "", usize::MAX).unwrap().run(&index).0)
        };
        let eq = |v: &str| Criterion { eq: vec![v.into()], ..Default::default() };
        assert_eq!(run(&[("automatedDiscoveryMonitoringStatus", eq("NOT_MONITORED"))], None).len(), 8);
        assert!(run(&[("automatedDiscoveryMonitoringStatus", eq("MONITORED"))], None).is_empty());
        assert_eq!(run(&[("jobDetails.isDefinedInJob", eq("FALSE"))], None).len(), 8);
        assert!(run(&[("jobDetails.isMonitoredByJob", eq("TRUE"))], None).is_empty());
        assert!(run(&[("jobDetails.lastJobId", eq("job-1"))], None).is_empty());
        let since = Criterion { gte: Some(0), ..Default::default() };
        assert!(run(&[("lastAutomatedDiscoveryTime", since.clone())], None).is_empty());
        assert!(run(&[("jobDetails.lastJobRunTime", since)], None).is_empty());
        assert_eq!(run(&[("sensitivityScore", eq("50"))], None), ["full"]);
        let scored = Criterion { gte: Some(1), ..Default::default() };
        assert_eq!(run(&[("sensitivityScore", scored)], Some(("sensitivityScore", true))), ["full", "empty"]);
        let bad = criteria(&[("jobDetails.isDefinedInJob", eq("YES"))]);
        assert!(Query::new(bad, None, 50, "", usize::MAX).unwrap_err().to_string().contains("YES"));
    }
}
