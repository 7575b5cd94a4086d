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

use crate::auth::Authenticator;
use crate::error::ServiceError;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct FindingsServiceImpl {
    pub store: Arc<Store>,
    pub auth: Authenticator,
    /// The most values one criterion may list.
    pub max_criterion_values: usize,
}

/// Checks every criterion before any finding is looked at: a property that does not exist,
/// an operator its kind does not take, a value that is not a number, or too many values is
/// an error even when there are no findings.
fn validate(criteria: &HashMap<String, pb::FindingCriterion>, max_values: usize) -> Result<(), ServiceError> {
    for (field, c) in criteria {
        let values = c.eq.len().max(c.neq.len());
        if values > max_values {
            return Err(ServiceError::invalid(format!(
                "criterion on `{field}`: {values} values; at most {max_values} per operator"
            )));
        }
        if is_numeric(field)? {
            if let Some(bad) = c.eq.iter().chain(&c.neq).find(|v| v.parse::<i64>().is_err()) {
                return Err(ServiceError::invalid(format!("`{bad}` in `{field}` is not an integer")));
            }
        } else if c.gt.is_some() || c.gte.is_some() || c.lt.is_some() || c.lte.is_some() {
            return Err(ServiceError::invalid(format!("`{field}` takes `eq` and `neq` only")));
        }
    }
    Ok(())
}

fn unknown_property(field: &str) -> ServiceError {
    ServiceError::invalid(format!(
        "unknown finding property `{field}` (known: type, severity.description, severity.score, accountId, region, \
         resourcesAffected.s3Bucket.name, archived, createdAt, updatedAt, count)"
    ))
}

/// Whether a finding property is a number (else text); an error for an unknown property.
fn is_numeric(field: &str) -> Result<bool, ServiceError> {
    match field {
        "type" | "severity.description" | "accountId" | "region" | "resourcesAffected.s3Bucket.name" | "archived" => {
            Ok(false)
        }
        "severity.score" | "createdAt" | "updatedAt" | "count" => Ok(true),
        other => Err(unknown_property(other)),
    }
}

/// A finding's value for a criterion or group: text, or a number for time and count.
enum Value {
    Text(String),
    Number(i64),
}

fn value(f: &Finding, field: &str) -> Result<Value, ServiceError> {
    Ok(match field {
        "type" => Value::Text(f.kind.as_str().to_owned()),
        "severity.description" => Value::Text(f.kind.severity().0.to_owned()),
        "severity.score" => Value::Number(f.kind.severity().1),
        "accountId" => Value::Text(f.account_id.clone()),
        "region" => Value::Text(f.region.clone()),
        "resourcesAffected.s3Bucket.name" => Value::Text(f.bucket_name.clone()),
        "archived" => Value::Text(f.archived.to_string()),
        "createdAt" => Value::Number(f.created_at),
        "updatedAt" => Value::Number(f.updated_at),
        "count" => Value::Number(f.count),
        other => return Err(unknown_property(other)),
    })
}

fn matches(f: &Finding, criteria: &HashMap<String, pb::FindingCriterion>) -> Result<bool, ServiceError> {
    for (field, c) in criteria {
        let ok = match value(f, field)? {
            Value::Text(v) => {
                if c.gt.is_some() || c.gte.is_some() || c.lt.is_some() || c.lte.is_some() {
                    return Err(ServiceError::invalid(format!("`{field}` takes `eq` and `neq` only")));
                }
                (c.eq.is_empty() || c.eq.contains(&v)) && !c.neq.contains(&v)
            }
            Value::Number(n) => {
                let parse = |values: &[String]| -> Result<Vec<i64>, ServiceError> {
                    values
                        .iter()
                        .map(|v| {
                            v.parse()
                                .map_err(|_| ServiceError::invalid(format!("`{v}` in `{field}` is not an integer")))
                        })
                        .collect()
                };
                let (eq, neq) = (parse(&c.eq)?, parse(&c.neq)?);
                (eq.is_empty() || eq.contains(&n))
                    && !neq.contains(&n)
                    && c.gt.is_none_or(|v| n > v)
                    && c.gte.is_none_or(|v| n >= v)
                    && c.lt.is_none_or(|v| n < v)
                    && c.lte.is_none_or(|v| n <= v)
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
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
        let page_size = crate::error::page_size(r.max_results, 50)?;
        let sort = if r.sort_attribute.is_empty() { "updatedAt".to_owned() } else { r.sort_attribute };
        if !["updatedAt", "createdAt", "count", "severity.score", "type"].contains(&sort.as_str()) {
            return Err(ServiceError::invalid(format!(
                "cannot sort by `{sort}` (sortable: updatedAt, createdAt, count, severity.score, type)"
            ))
            .into());
        }
        let offset: usize = if r.next_token.is_empty() {
            0
        } else {
            r.next_token.parse().map_err(|_| ServiceError::invalid("`nextToken` is malformed"))?
        };
        validate(&r.criteria, self.max_criterion_values)?;
        let store = Arc::clone(&self.store);
        // A scan and a sort over every finding: off the reactor.
        tokio::task::spawn_blocking(move || {
            let state = store.read();
            let mut found = Vec::new();
            for f in state.findings().by_id.values() {
                if matches(f, &r.criteria)? {
                    found.push(f);
                }
            }
            let key = |f: &Finding| match value(f, &sort) {
                Ok(Value::Number(n)) => (n, String::new()),
                Ok(Value::Text(t)) => (0, t),
                Err(_) => (0, String::new()),
            };
            // Ties by ID: a total order, so offsets page consistently.
            found.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id)));
            if r.descending {
                found.reverse();
            }
            let page: Vec<String> = found.iter().skip(offset).take(page_size).map(|f| f.id.clone()).collect();
            let next = offset + page.len();
            Ok(Response::new(pb::ListFindingsResponse {
                next_token: if next < found.len() { next.to_string() } else { String::new() },
                finding_ids: page,
            }))
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
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
        if !["type", "severity.description", "resourcesAffected.s3Bucket.name", "accountId"]
            .contains(&r.group_by.as_str())
        {
            return Err(ServiceError::invalid(format!(
                "cannot group by `{}` (type, severity.description, resourcesAffected.s3Bucket.name, accountId)",
                r.group_by
            ))
            .into());
        }
        validate(&r.criteria, self.max_criterion_values)?;
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let state = store.read();
            let mut groups: BTreeMap<String, i64> = BTreeMap::new();
            for f in state.findings().by_id.values() {
                if matches(f, &r.criteria)? {
                    if let Value::Text(key) = value(f, &r.group_by)? {
                        *groups.entry(key).or_default() += 1;
                    }
                }
            }
            Ok(Response::new(pb::GetFindingStatisticsResponse {
                counts_by_group: groups
                    .into_iter()
                    .map(|(group_key, count)| pb::GroupCount { group_key, count })
                    .collect(),
            }))
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
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
