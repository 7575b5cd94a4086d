//! `FindingsService`: ListFindings (Macie's criteria, sort, pages), GetFindings,
//! GetFindingStatistics, and WatchFindings, a stream of new and updated findings that first
//! replays everything after the client's cursor.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use estate_common::findings::Finding;
use estate_common::pb::{self, findings_service_server::FindingsService};

use crate::api::auth::Authenticator;
use crate::api::error::ServiceError;
use crate::read::criteria::{matches_all, Criterion, Filter, Filterable, Property};
use crate::read::query::QueryError;
use crate::state::store::Store;

#[derive(Debug, Clone)]
pub struct FindingsServiceImpl {
    pub store: Arc<Store>,
    pub auth: Authenticator,
    /// The most values one criterion may list.
    pub max_criterion_values: usize,
}

/// A finding property that criteria, sorting and grouping may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FindingProperty {
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
    fn sortable(self) -> bool {
        matches!(self, Self::UpdatedAt | Self::CreatedAt | Self::Count | Self::SeverityScore | Self::Type)
    }

    fn groupable(self) -> bool {
        matches!(self, Self::Type | Self::Severity | Self::BucketName | Self::AccountId)
    }

    /// The names of the properties `keep` accepts, for error messages.
    fn names(keep: fn(Self) -> bool) -> String {
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

/// Checks every criterion before any finding is looked at: a property that does not exist,
/// an operator its kind does not take, a value that is not a number or not one the property
/// takes, or too many values is an error even when there are no findings.
fn compile_criteria(
    criteria: HashMap<String, pb::FindingCriterion>,
    max_values: usize,
) -> Result<Vec<Filter<FindingProperty>>, ServiceError> {
    let criteria = criteria
        .into_iter()
        .map(|(k, c)| (k, Criterion { eq: c.eq, neq: c.neq, gt: c.gt, gte: c.gte, lt: c.lt, lte: c.lte, prefix: None }))
        .collect();
    Ok(crate::read::criteria::compile(criteria, max_values)?)
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchFindingsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl FindingsService for FindingsServiceImpl {
    async fn list_findings(
        &self,
        request: Request<pb::ListFindingsRequest>,
    ) -> Result<Response<pb::ListFindingsResponse>, Status> {
        self.auth.reader(&request)?;
        let r = request.into_inner();
        let page_size = crate::api::error::page_size(r.max_results, 50)?;
        let sort_name = if r.sort_attribute.is_empty() { "updatedAt" } else { r.sort_attribute.as_str() };
        let Some(sort) = FindingProperty::parse(sort_name).filter(|p| p.sortable()) else {
            return Err(ServiceError::invalid(format!(
                "cannot sort by `{sort_name}` (sortable: {})",
                FindingProperty::names(FindingProperty::sortable)
            ))
            .into());
        };
        let offset: usize = if r.next_token.is_empty() {
            0
        } else {
            r.next_token.parse().map_err(|_| ServiceError::invalid("`nextToken` is malformed"))?
        };
        let filters = compile_criteria(r.criteria, self.max_criterion_values)?;
        // A scan and a sort over every finding: off the reactor.
        let page = self.store.read_blocking(move |state| {
            let mut found: Vec<&Finding> =
                state.findings().by_id.values().filter(|f| matches_all(&filters, *f)).collect();
            let key = |f: &Finding| (f.number(sort).unwrap_or(0), text(f, sort).unwrap_or_default());
            // Ties by ID: a total order, so offsets page consistently.
            found.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id)));
            if r.descending {
                found.reverse();
            }
            let page: Vec<String> = found.iter().skip(offset).take(page_size).map(|f| f.id.clone()).collect();
            let next = offset + page.len();
            pb::ListFindingsResponse {
                next_token: if next < found.len() { next.to_string() } else { String::new() },
                finding_ids: page,
            }
        });
        Ok(Response::new(page.await.map_err(ServiceError::from)?))
    }

    async fn get_findings(
        &self,
        request: Request<pb::GetFindingsRequest>,
    ) -> Result<Response<pb::GetFindingsResponse>, Status> {
        self.auth.reader(&request)?;
        let ids = request.into_inner().finding_ids;
        if ids.len() > 1000 {
            return Err(ServiceError::invalid("at most 1000 finding IDs per request").into());
        }
        let state = self.store.read();
        let findings = ids.iter().filter_map(|id| state.findings().by_id.get(id)).map(Into::into).collect();
        Ok(Response::new(pb::GetFindingsResponse { findings }))
    }

    async fn get_finding_statistics(
        &self,
        request: Request<pb::GetFindingStatisticsRequest>,
    ) -> Result<Response<pb::GetFindingStatisticsResponse>, Status> {
        self.auth.reader(&request)?;
        let r = request.into_inner();
        let Some(group_by) = FindingProperty::parse(&r.group_by).filter(|p| p.groupable()) else {
            let groupable = FindingProperty::names(FindingProperty::groupable);
            return Err(ServiceError::invalid(format!("cannot group by `{}` ({groupable})", r.group_by)).into());
        };
        let filters = compile_criteria(r.criteria, self.max_criterion_values)?;
        let counts = self.store.read_blocking(move |state| {
            let mut groups: BTreeMap<String, i64> = BTreeMap::new();
            for f in state.findings().by_id.values().filter(|f| matches_all(&filters, *f)) {
                if let Some(key) = text(f, group_by) {
                    *groups.entry(key).or_default() += 1;
                }
            }
            pb::GetFindingStatisticsResponse {
                counts_by_group: groups
                    .into_iter()
                    .map(|(group_key, count)| pb::GroupCount { group_key, count })
                    .collect(),
            }
        });
        Ok(Response::new(counts.await.map_err(ServiceError::from)?))
    }

    type WatchFindingsStream = WatchStream;

    async fn watch_findings(
        &self,
        request: Request<pb::WatchFindingsRequest>,
    ) -> Result<Response<Self::WatchFindingsStream>, Status> {
        self.auth.reader(&request)?;
        let cursor = request.into_inner().cursor;
        // Subscribe and read what is durable under one lock that announcing excludes: what is
        // announced before is replayed (when asked for), what is announced after comes from
        // the feed, so nothing falls between the two and nothing arrives twice.
        let (mut live, backlog) = self.store.read().findings().watch_from(cursor);
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut sent = cursor;
            for finding in backlog {
                sent = sent.max(finding.sequence);
                if tx.send(Ok(pb::WatchFindingsResponse { finding: Some((&finding).into()) })).await.is_err() {
                    return;
                }
            }
            loop {
                match live.recv().await {
                    Ok(finding) if finding.sequence > sent => {
                        sent = finding.sequence;
                        if tx.send(Ok(pb::WatchFindingsResponse { finding: Some((&finding).into()) })).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let _ = tx
                            .send(Err(ServiceError::DataLoss(format!(
                                "this watcher fell {missed} changes behind; reconnect with cursor {sent}"
                            ))
                            .into()))
                            .await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
