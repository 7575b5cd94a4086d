//! `FindingsService`: ListFindings (Macie's criteria, sort, pages), GetFindings,
//! GetFindingStatistics, and WatchFindings, a stream of new and updated findings that first
//! replays everything after the client's cursor.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use estate_common::pb::{self, findings_service_server::FindingsService};

use crate::api::auth::Authenticator;
use crate::api::error::ServiceError;
use crate::read::criteria::{Criterion, Filter, Property};
use crate::read::findings::{follow, FindingProperty, FindingsQuery, Followed};
use crate::state::store::Store;

#[derive(Debug, Clone)]
pub struct FindingsServiceImpl {
    pub store: Arc<Store>,
    pub auth: Authenticator,
    /// The most values one criterion may list.
    pub max_criterion_values: usize,
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
        let query = FindingsQuery {
            filters: compile_criteria(r.criteria, self.max_criterion_values)?,
            sort,
            descending: r.descending,
        };
        // A scan and a sort over every finding: off the reactor.
        let page = self.store.read_blocking(move |state| {
            let found = query.run(state.findings());
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
        let query = FindingsQuery {
            filters: compile_criteria(r.criteria, self.max_criterion_values)?,
            sort: group_by,
            descending: false,
        };
        let counts = self.store.read_blocking(move |state| {
            let groups = query.count_by(state.findings(), group_by);
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
        let mut followed = follow(&self.store, (cursor > 0).then_some(cursor));
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            while let Some(item) = followed.recv().await {
                let message = match item {
                    Followed::Finding(finding) => {
                        Ok(pb::WatchFindingsResponse { finding: Some(finding.as_ref().into()) })
                    }
                    Followed::Behind { missed, resume_from } => Err(ServiceError::DataLoss(format!(
                        "this watcher fell {missed} changes behind; reconnect with cursor {resume_from}"
                    ))
                    .into()),
                };
                if tx.send(message).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
