//! The administrator's HTTP side: liveness, Prometheus metrics, and the dashboard with the
//! JSON it reads (the same Macie-shaped JSON as `estatectl --output json`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Query as UrlQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::auth::Authenticator;
use crate::error::ServiceError;
use estate_common::findings::FindingType;

use crate::query::{self, Criterion, Query};
use crate::store::{self, Store};
use crate::tls::Peer;
use crate::views;

#[derive(Debug, Clone)]
pub struct HttpState {
    pub store: Arc<Store>,
    pub auth: Authenticator,
    /// `/metrics` without a token (for scrapers that cannot send one).
    pub metrics_open: bool,
    /// The most values one criterion may list.
    pub max_criterion_values: usize,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api/schema", get(api_schema))
        .route("/api/statistics", get(api_statistics))
        .route("/api/accounts", get(api_accounts))
        .route("/api/buckets", get(api_buckets))
        .route("/api/bucket", get(api_bucket))
        .route("/api/members", get(api_members))
        .route("/api/findings", get(api_findings))
        .route("/api/findings/live", get(api_findings_live))
        .route("/api/posture", get(api_posture))
        .with_state(state)
}

/// The dashboard's API takes the same client tokens (and, over mutual TLS, the same client
/// certificates) as gRPC.
fn authorize(state: &HttpState, peer: &Peer, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let authorization = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            Box::new(
                ServiceError::unauthenticated("the `Authorization` header is not `Bearer <token>`").into_response(),
            )
        })?),
    };
    state
        .auth
        .reader_parts(authorization, peer.certificate.as_deref())
        .map(|_| ())
        .map_err(|e| Box::new(e.into_response()))
}

/// A request with a client token (or, over mutual TLS, a client certificate) that may read:
/// the extractor every `/api/` handler takes, so none can forget to check.
struct Reader;

impl FromRequestParts<HttpState> for Reader {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, Response> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<Peer>>().cloned() else {
            return Err(ServiceError::internal("the connection's peer is unknown").into_response());
        };
        authorize(state, &peer, &parts.headers).map(|()| Reader).map_err(|response| *response)
    }
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

async fn metrics(State(state): State<HttpState>, ConnectInfo(peer): ConnectInfo<Peer>, headers: HeaderMap) -> Response {
    if !state.metrics_open {
        if let Err(response) = authorize(&state, &peer, &headers) {
            return *response;
        }
    }
    let s = state.store.read();
    let stats = s.stats.total();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: i64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    gauge("estate_buckets", "Buckets in the inventory.", stats.bucket_count);
    gauge(
        "estate_buckets_public",
        "Buckets whose effective permission is PUBLIC.",
        stats.bucket_count_by_effective_permission.publicly_accessible,
    );
    gauge(
        "estate_buckets_shared_external",
        "Buckets shared outside the organization.",
        stats.bucket_count_by_shared_access_type.external,
    );
    gauge(
        "estate_buckets_permission_unknown",
        "Buckets whose effective permission is UNKNOWN.",
        stats.bucket_count_by_effective_permission.unknown,
    );
    gauge("estate_agents_connected", "Agent streams open now.", state.store.open_streams() as i64);
    gauge("estate_members", "Member accounts that have reported.", s.members.len() as i64);
    let (refused, contested_ids, contested_names) = s.contested_claims();
    gauge(
        "estate_canonical_ids_contested",
        "Canonical user IDs that more than one account claims (bound to none).",
        contested_ids as i64,
    );
    gauge(
        "estate_bucket_names_contested",
        "Bucket names that more than one account's bucket list claims.",
        contested_names as i64,
    );
    let _ = writeln!(
        out,
        "# HELP estate_identity_claims_refused_total Canonical-ID claims refused because another account \
         corroborates the same ID.\n# TYPE estate_identity_claims_refused_total counter\n\
         estate_identity_claims_refused_total {refused}"
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

#[derive(Debug, Deserialize)]
struct StatisticsParams {
    account_id: Option<String>,
}

async fn api_statistics(
    State(state): State<HttpState>,
    _: Reader,
    UrlQuery(p): UrlQuery<StatisticsParams>,
) -> Response {
    match p.account_id.filter(|a| !a.is_empty()).map(ServiceError::account_id).transpose() {
        Ok(None) => Json(state.store.organization_statistics()).into_response(),
        Ok(Some(account)) => Json(views::statistics(&state.store.read(), Some(&account))).into_response(),
        Err(e) => e.into_response(),
    }
}

/// What the dashboard's forms offer: the bucket criteria with their values, the sortable
/// properties, the finding types and severities.
async fn api_schema(_: Reader) -> Response {
    let types: Vec<_> =
        FindingType::ALL.iter().map(|t| serde_json::json!({"type": t.as_str(), "severity": t.severity().0})).collect();
    Json(serde_json::json!({
        "criteria": query::criteria_properties(),
        "sortable": query::SORTABLE_FIELDS,
        "findingTypes": types,
    }))
    .into_response()
}

/// Answers with the JSON that `read` makes of the state, read and serialized off the reactor
/// ([`Store::read_blocking`]): a body can describe 10,000 accounts.
async fn read_json(
    store: &Arc<Store>,
    read: impl FnOnce(&store::State) -> serde_json::Value + Send + 'static,
) -> Response {
    match store.read_blocking(|s| Json(read(s)).into_response()).await {
        Ok(response) => response,
        Err(e) => ServiceError::from(e).into_response(),
    }
}

/// Every account's statistics (the organization's accounts, configured and reporting ones).
async fn api_accounts(State(state): State<HttpState>, _: Reader) -> Response {
    read_json(&state.store, |s| {
        let accounts: Vec<_> = views::member_accounts(s)
            .iter()
            .map(|a| serde_json::json!({ "accountId": a, "statistics": views::statistics(s, Some(a)) }))
            .collect();
        serde_json::json!({ "accounts": accounts })
    })
    .await
}

#[derive(Debug, Deserialize)]
struct BucketParams {
    /// Macie's `criteria` as JSON: property → `{eq, neq, gt, gte, lt, lte, prefix}`.
    criteria: Option<String>,
    sort: Option<String>,
    desc: Option<bool>,
    max_results: Option<i32>,
    next_token: Option<String>,
}

async fn api_buckets(State(state): State<HttpState>, _: Reader, UrlQuery(p): UrlQuery<BucketParams>) -> Response {
    let criteria: BTreeMap<String, Criterion> = match p.criteria.as_deref().filter(|c| !c.is_empty()) {
        None => BTreeMap::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(criteria) => criteria,
            Err(e) => return ServiceError::invalid(format!("`criteria` is not criteria JSON: {e}")).into_response(),
        },
    };
    let sort = p.sort.filter(|s| !s.is_empty()).map(|s| (s, p.desc.unwrap_or(false)));
    let token = p.next_token.as_deref().unwrap_or("");
    let query = match Query::new(criteria, sort, p.max_results.unwrap_or(50), token, state.max_criterion_values) {
        Ok(q) => q,
        Err(e) => return ServiceError::from(e).into_response(),
    };
    read_json(&state.store, move |s| {
        let (buckets, token) = views::describe(s, &query);
        serde_json::json!({ "buckets": buckets, "nextToken": token })
    })
    .await
}

#[derive(Debug, Deserialize)]
struct OneBucketParams {
    name: String,
}

/// One bucket for its page: the metadata, the policy as written, the accounts it is shared
/// with inside the organization, and its findings.
async fn api_bucket(State(state): State<HttpState>, _: Reader, UrlQuery(p): UrlQuery<OneBucketParams>) -> Response {
    let s = state.store.read();
    let Some(entry) = s.index.find_by_name(&p.name) else {
        return ServiceError::not_found(format!("no bucket named `{}` in the inventory", p.name)).into_response();
    };
    let key = entry.facts.key.encode();
    let metadata = crate::judge::metadata(
        &entry.facts,
        &entry.judgement,
        s.accounts.get(&entry.facts.key.account_id),
        s.policy_explanation(&key),
    );
    let mut findings: Vec<_> = s.findings().by_id.values().filter(|f| f.bucket_name == p.name).collect();
    findings.sort_by_key(|f| std::cmp::Reverse(f.updated_at));
    Json(serde_json::json!({
        "bucket": metadata,
        "policy": entry.facts.config().and_then(|c| c.policy.clone()),
        "sharedInternallyWith": entry.judgement.shared_internal,
        "findings": findings.iter().map(|f| f.to_macie_json()).collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn api_members(State(state): State<HttpState>, _: Reader) -> Response {
    let store = Arc::clone(&state.store);
    read_json(&state.store, move |s| {
        let members: Vec<_> =
            views::member_accounts(s).iter().map(|a| views::member(s, a, store.is_connected(a))).collect();
        serde_json::json!({ "members": members })
    })
    .await
}

/// The posture report: every exposed bucket with its reasons (the first 1,000).
async fn api_posture(State(state): State<HttpState>, _: Reader) -> Response {
    read_json(&state.store, |s| {
        let (buckets, next) = views::posture(s, None, None, 1000);
        serde_json::json!({ "buckets": buckets, "truncated": next.is_some() })
    })
    .await
}

#[derive(Debug, Deserialize)]
struct FindingParams {
    #[serde(rename = "type")]
    kind: Option<String>,
    severity: Option<String>,
    account_id: Option<String>,
    bucket: Option<String>,
    /// Archived findings are hidden unless this is true.
    archived: Option<bool>,
}

/// The newest findings that match (at most 500), Macie-shaped, with how many changed in the
/// last 24 hours and the sequence to follow live updates from.
async fn api_findings(State(state): State<HttpState>, _: Reader, UrlQuery(p): UrlQuery<FindingParams>) -> Response {
    let kind = match p.kind.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(text) => match FindingType::parse(text) {
            Some(t) => Some(t),
            None => return ServiceError::invalid(format!("`{text}` is not a finding type")).into_response(),
        },
    };
    let severity = p.severity.filter(|s| !s.is_empty());
    if let Some(bad) = severity.as_deref().filter(|s| !["High", "Medium", "Low"].contains(s)) {
        return ServiceError::invalid(format!("`{bad}` is not a severity (High, Medium, Low)")).into_response();
    }
    let account = p.account_id.filter(|a| !a.is_empty());
    let bucket = p.bucket.filter(|b| !b.is_empty());
    let archived = p.archived.unwrap_or(false);
    read_json(&state.store, move |s| findings_page(s, kind, severity, account, bucket, archived)).await
}

/// The findings page of [`api_findings`], from its checked parameters.
fn findings_page(
    s: &store::State,
    kind: Option<FindingType>,
    severity: Option<String>,
    account: Option<String>,
    bucket: Option<String>,
    archived: bool,
) -> serde_json::Value {
    let findings = s.findings();
    let since = estate_common::model::now_ms() - DAY_MS;
    let changed_last_day = findings.by_id.values().filter(|f| f.updated_at >= since).count();
    let mut matching: Vec<_> = findings
        .by_id
        .values()
        .filter(|f| {
            (archived || !f.archived)
                && kind.is_none_or(|k| f.kind == k)
                && severity.as_deref().is_none_or(|sev| f.kind.severity().0 == sev)
                && account.as_deref().is_none_or(|a| f.account_id == a)
                && bucket.as_deref().is_none_or(|b| f.bucket_name == b)
        })
        .collect();
    matching.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then_with(|| b.sequence.cmp(&a.sequence)));
    let shown: Vec<_> = matching.iter().take(MAX_FINDINGS_SHOWN).map(|f| f.to_macie_json()).collect();
    serde_json::json!({
        "findings": shown,
        "total": matching.len(),
        "changedLast24h": changed_last_day,
        "cursor": findings.durable_sequence,
    })
}

const DAY_MS: i64 = 24 * 3600 * 1000;
const MAX_FINDINGS_SHOWN: usize = 500;

#[derive(Debug, Deserialize)]
struct LiveParams {
    cursor: Option<u64>,
}

/// Server-sent events: every finding created or updated after `cursor` (replayed first), then
/// each one as it becomes durable, as `finding` events of Macie-shaped JSON. The dashboard
/// reads it with `fetch`, which can send the token.
async fn api_findings_live(State(state): State<HttpState>, _: Reader, UrlQuery(p): UrlQuery<LiveParams>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let cursor = p.cursor.unwrap_or(0);
    let (mut live, backlog) = state.store.read().findings().watch_from(cursor);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, std::convert::Infallible>>(256);
    tokio::spawn(async move {
        let event = |f: &estate_common::findings::Finding| {
            Event::default().event("finding").id(f.sequence.to_string()).data(f.to_macie_json().to_string())
        };
        let mut sent = cursor;
        for finding in &backlog {
            sent = sent.max(finding.sequence);
            if tx.send(Ok(event(finding))).await.is_err() {
                return;
            }
        }
        loop {
            match live.recv().await {
                Ok(finding) if finding.sequence > sent => {
                    sent = finding.sequence;
                    if tx.send(Ok(event(&finding))).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                // Behind: the client reloads the list and follows from its new cursor.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let _ = tx.send(Ok(Event::default().event("reload").data(sent.to_string()))).await;
                    return;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx)).keep_alive(KeepAlive::default()).into_response()
}
