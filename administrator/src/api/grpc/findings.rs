//! `FindingsService`: ListFindings (Macie's criteria, sort, pages), GetFindings,
//! GetFindingStatistics, and WatchFindings, a stream of new and updated findings that first
//! replays everything after the client's cursor.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use estate_common::findings::Finding;
use estate_common::pb::{self, findings_service_server::FindingsService};

use crate::api::auth::Authenticator;
use crate::api::error::ServiceError;
use crate::api::filters::{self, no_such_filter};
use crate::criteria::findings::FindingProperty;
use crate::criteria::{Criterion, Filter, Property};
use crate::ingest::Committer;
use crate::read::findings::{follow, FindingsQuery, Followed};
use crate::state::filters::{FilterAction, FindingsFilter};
use crate::state::store::Store;

#[derive(Debug, Clone)]
pub struct FindingsServiceImpl {
    pub store: Arc<Store>,
    pub auth: Authenticator,
    /// Findings filters are saved through it.
    pub committer: Committer,
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
    Ok(crate::criteria::compile(criteria_map(criteria), max_values)?)
}

/// Macie's criteria as the criteria module holds them.
fn criteria_map(criteria: HashMap<String, pb::FindingCriterion>) -> BTreeMap<String, Criterion> {
    criteria
        .into_iter()
        .map(|(k, c)| {
            let criterion = Criterion {
                eq: c.eq,
                eq_exact_match: c.eq_exact_match,
                neq: c.neq,
                gt: c.gt,
                gte: c.gte,
                lt: c.lt,
                lte: c.lte,
                prefix: None,
            };
            (k, criterion)
        })
        .collect()
}

fn criteria_to_pb(criteria: &BTreeMap<String, Criterion>) -> pb::FindingCriteria {
    pb::FindingCriteria {
        criterion: criteria
            .iter()
            .map(|(k, c)| {
                let criterion = pb::FindingCriterion {
                    eq: c.eq.clone(),
                    eq_exact_match: c.eq_exact_match.clone(),
                    neq: c.neq.clone(),
                    gt: c.gt,
                    gte: c.gte,
                    lt: c.lt,
                    lte: c.lte,
                };
                (k.clone(), criterion)
            })
            .collect(),
    }
}

/// The request's criteria: Macie's `findingCriteria`, or the first form, not both.
fn either_criteria(
    first_form: HashMap<String, pb::FindingCriterion>,
    macie: Option<pb::FindingCriteria>,
) -> Result<HashMap<String, pb::FindingCriterion>, ServiceError> {
    match (first_form.is_empty(), macie) {
        (_, None) => Ok(first_form),
        (true, Some(criteria)) => Ok(criteria.criterion),
        (false, Some(_)) => Err(ServiceError::invalid("give `findingCriteria` or `criteria`, not both")),
    }
}

/// A sort attribute Estate sorts findings by, and whether descending.
fn sort_of(attribute: &str, order: i32, default_descending: bool) -> Result<(FindingProperty, bool), ServiceError> {
    let name = if attribute.is_empty() { "updatedAt" } else { attribute };
    let Some(sort) = FindingProperty::parse(name).filter(|p| p.sortable()) else {
        return Err(ServiceError::invalid(format!(
            "cannot sort by `{name}` (sortable: {})",
            FindingProperty::names(FindingProperty::sortable)
        )));
    };
    let descending = match pb::OrderBy::try_from(order) {
        Ok(pb::OrderBy::Asc) => false,
        Ok(pb::OrderBy::Desc) => true,
        Ok(pb::OrderBy::Unspecified) => default_descending,
        Err(_) => return Err(ServiceError::invalid(format!("`orderBy` {order} is not ASC or DESC"))),
    };
    Ok((sort, descending))
}

fn filter_action(action: i32) -> Result<FilterAction, ServiceError> {
    match pb::FindingsFilterAction::try_from(action) {
        Ok(pb::FindingsFilterAction::Archive) => Ok(FilterAction::Archive),
        Ok(pb::FindingsFilterAction::Noop) => Ok(FilterAction::Noop),
        _ => Err(ServiceError::invalid("`action` must be ARCHIVE or NOOP")),
    }
}

fn filter_to_pb(f: &FindingsFilter) -> pb::FindingsFilter {
    pb::FindingsFilter {
        id: f.id.clone(),
        arn: f.arn(),
        name: f.name.clone(),
        description: f.description.clone(),
        action: match f.action {
            FilterAction::Archive => pb::FindingsFilterAction::Archive,
            FilterAction::Noop => pb::FindingsFilterAction::Noop,
        }
        .into(),
        position: f.position,
        finding_criteria: Some(criteria_to_pb(&f.criteria)),
        tags: f.tags.clone().into_iter().collect(),
    }
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
        let (sort, descending) = match r.sort_criteria {
            Some(sort) if r.sort_attribute.is_empty() => sort_of(&sort.attribute_name, sort.order_by, true)?,
            Some(_) => return Err(ServiceError::invalid("give `sortCriteria` or `sortAttribute`, not both").into()),
            None => (sort_of(&r.sort_attribute, pb::OrderBy::Unspecified.into(), false)?.0, r.descending),
        };
        let offset: usize = if r.next_token.is_empty() {
            0
        } else {
            r.next_token.parse().map_err(|_| ServiceError::invalid("`nextToken` is malformed"))?
        };
        let criteria = either_criteria(r.criteria, r.finding_criteria)?;
        let query = FindingsQuery { filters: compile_criteria(criteria, self.max_criterion_values)?, sort, descending };
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
        let r = request.into_inner();
        if r.finding_ids.len() > 1000 {
            return Err(ServiceError::invalid("at most 1000 finding IDs per request").into());
        }
        let sort = r.sort_criteria.map(|s| sort_of(&s.attribute_name, s.order_by, false)).transpose()?;
        let state = self.store.read();
        let mut found: Vec<&Finding> = r.finding_ids.iter().filter_map(|id| state.findings().by_id.get(id)).collect();
        if let Some((property, descending)) = sort {
            FindingsQuery { filters: Vec::new(), sort: property, descending }.order(&mut found);
        }
        Ok(Response::new(pb::GetFindingsResponse { findings: found.into_iter().map(Into::into).collect() }))
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
        if r.size < 0 {
            return Err(ServiceError::invalid("`size` must not be negative").into());
        }
        let (by_count, descending) = match &r.sort_criteria {
            None => (false, false),
            Some(sort) => {
                let by_count = match sort.attribute_name.as_str() {
                    "" | "groupKey" => false,
                    "count" => true,
                    other => {
                        return Err(ServiceError::invalid(format!(
                            "cannot sort statistics by `{other}` (groupKey, count)"
                        ))
                        .into())
                    }
                };
                (by_count, matches!(pb::OrderBy::try_from(sort.order_by), Ok(pb::OrderBy::Desc)))
            }
        };
        let criteria = either_criteria(r.criteria, r.finding_criteria)?;
        let query = FindingsQuery {
            filters: compile_criteria(criteria, self.max_criterion_values)?,
            sort: group_by,
            descending: false,
        };
        let size = r.size as usize;
        let counts = self.store.read_blocking(move |state| {
            let mut groups: Vec<(String, i64)> = query.count_by(state.findings(), group_by).into_iter().collect();
            if by_count {
                groups.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            }
            if descending {
                groups.reverse();
            }
            if size > 0 {
                groups.truncate(size);
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

    async fn create_findings_filter(
        &self,
        request: Request<pb::CreateFindingsFilterRequest>,
    ) -> Result<Response<pb::CreateFindingsFilterResponse>, Status> {
        let who = self.auth.operator(&request)?;
        let r = request.into_inner();
        let draft = FindingsFilter {
            id: String::new(),
            created_at: 0,
            name: r.name,
            description: r.description,
            action: filter_action(r.action)?,
            position: r.position,
            criteria: criteria_map(r.finding_criteria.unwrap_or_default().criterion),
            tags: r.tags.into_iter().collect(),
            client_token: (!r.client_token.is_empty()).then_some(r.client_token),
        };
        let filter = filters::create(&self.store, &self.committer, draft, self.max_criterion_values, &who).await?;
        Ok(Response::new(pb::CreateFindingsFilterResponse { arn: filter.arn(), id: filter.id }))
    }

    async fn get_findings_filter(
        &self,
        request: Request<pb::GetFindingsFilterRequest>,
    ) -> Result<Response<pb::FindingsFilter>, Status> {
        self.auth.reader(&request)?;
        let id = request.into_inner().id;
        let state = self.store.read();
        let filter = state.findings().filters.get(&id).ok_or_else(|| no_such_filter(&id))?;
        Ok(Response::new(filter_to_pb(filter)))
    }

    async fn update_findings_filter(
        &self,
        request: Request<pb::UpdateFindingsFilterRequest>,
    ) -> Result<Response<pb::UpdateFindingsFilterResponse>, Status> {
        let who = self.auth.operator(&request)?;
        let r = request.into_inner();
        let action = match pb::FindingsFilterAction::try_from(r.action) {
            Ok(pb::FindingsFilterAction::Unspecified) => None,
            _ => Some(filter_action(r.action)?),
        };
        let change = |filter: &mut FindingsFilter| {
            if let Some(action) = action {
                filter.action = action;
            }
            if let Some(name) = r.name {
                filter.name = name;
            }
            if let Some(description) = r.description {
                filter.description = description;
            }
            if let Some(position) = r.position {
                filter.position = position;
            }
            if let Some(criteria) = r.finding_criteria {
                filter.criteria = criteria_map(criteria.criterion);
            }
            Ok(())
        };
        let filter =
            filters::update(&self.store, &self.committer, &r.id, change, self.max_criterion_values, &who).await?;
        let response = pb::UpdateFindingsFilterResponse { arn: filter.arn(), id: filter.id };
        Ok(Response::new(response))
    }

    async fn delete_findings_filter(
        &self,
        request: Request<pb::DeleteFindingsFilterRequest>,
    ) -> Result<Response<pb::DeleteFindingsFilterResponse>, Status> {
        let who = self.auth.operator(&request)?;
        let id = request.into_inner().id;
        filters::delete(&self.store, &self.committer, id, &who).await?;
        Ok(Response::new(pb::DeleteFindingsFilterResponse {}))
    }

    async fn list_findings_filters(
        &self,
        request: Request<pb::ListFindingsFiltersRequest>,
    ) -> Result<Response<pb::ListFindingsFiltersResponse>, Status> {
        self.auth.reader(&request)?;
        let r = request.into_inner();
        let page_size = match r.max_results {
            0 => 25,
            n @ 1..=25 => n as usize,
            n => return Err(ServiceError::invalid(format!("`maxResults` must be 1 to 25, got {n}")).into()),
        };
        let offset: usize = if r.next_token.is_empty() {
            0
        } else {
            r.next_token.parse().map_err(|_| ServiceError::invalid("`nextToken` is malformed"))?
        };
        let state = self.store.read();
        let all = state.findings().filters.ordered();
        let items: Vec<pb::FindingsFilterListItem> = all
            .iter()
            .skip(offset)
            .take(page_size)
            .map(|f| {
                let full = filter_to_pb(f);
                pb::FindingsFilterListItem {
                    id: full.id,
                    arn: full.arn,
                    name: full.name,
                    action: full.action,
                    tags: full.tags,
                }
            })
            .collect();
        let next = offset + items.len();
        Ok(Response::new(pb::ListFindingsFiltersResponse {
            next_token: if next < all.len() { next.to_string() } else { String::new() },
            findings_filter_list_items: items,
        }))
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
