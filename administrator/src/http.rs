//! The administrator's HTTP side: liveness, Prometheus metrics, and the dashboard with the
//! JSON it reads (the same Macie-shaped JSON as `estatectl --output json`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query as UrlQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::auth::Authenticator;
use crate::query::{Criterion, Query};
use crate::store::Store;
use crate::tls::Peer;
use crate::views;

#[derive(Debug, Clone)]
pub struct HttpState {
    pub store: Arc<Store>,
    pub auth: Authenticator,
    pub configured_members: Arc<BTreeSet<String>>,
    /// `/metrics` without a token (for scrapers that cannot send one).
    pub metrics_open: bool,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api/statistics", get(api_statistics))
        .route("/api/buckets", get(api_buckets))
        .route("/api/members", get(api_members))
        .route("/api/findings", get(api_findings))
        .route("/api/posture", get(api_posture))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "message": message.into() }))).into_response()
}

/// The dashboard's API takes the same client tokens (and, over mutual TLS, the same client
/// certificates) as gRPC.
fn authorize(state: &HttpState, peer: &Peer, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let authorization = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            Box::new(error(StatusCode::UNAUTHORIZED, "the `Authorization` header is not `Bearer <token>`"))
        })?),
    };
    state.auth.reader_parts(authorization, peer.certificate.as_deref()).map(|_| ()).map_err(|status| {
        let code = match status.code() {
            tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        Box::new(error(code, status.message()))
    })
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
    gauge("estate_agents_connected", "Agent streams open now.", s.connections.values().sum::<usize>() as i64);
    gauge("estate_members", "Member accounts that have reported.", s.members.len() as i64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

#[derive(Debug, Deserialize)]
struct StatisticsParams {
    account_id: Option<String>,
}

async fn api_statistics(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    UrlQuery(p): UrlQuery<StatisticsParams>,
) -> Response {
    if let Err(response) = authorize(&state, &peer, &headers) {
        return *response;
    }
    match views::statistics(
        &state.store.read(),
        &state.configured_members,
        p.account_id.as_deref().filter(|a| !a.is_empty()),
    ) {
        Ok(stats) => Json(stats).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct BucketParams {
    /// Bucket name prefix.
    prefix: Option<String>,
    account_id: Option<String>,
    effective_permission: Option<String>,
    shared_access: Option<String>,
    sort: Option<String>,
    desc: Option<bool>,
    max_results: Option<i32>,
    next_token: Option<String>,
}

async fn api_buckets(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    UrlQuery(p): UrlQuery<BucketParams>,
) -> Response {
    if let Err(response) = authorize(&state, &peer, &headers) {
        return *response;
    }
    let mut criteria = BTreeMap::new();
    let eq = |v: String| Criterion { eq: vec![v], ..Default::default() };
    if let Some(prefix) = p.prefix.filter(|s| !s.is_empty()) {
        criteria.insert("bucketName".to_owned(), Criterion { prefix: Some(prefix), ..Default::default() });
    }
    for (field, value) in [
        ("accountId", p.account_id),
        ("publicAccess.effectivePermission", p.effective_permission),
        ("sharedAccess", p.shared_access),
    ] {
        if let Some(value) = value.filter(|s| !s.is_empty()) {
            criteria.insert(field.to_owned(), eq(value));
        }
    }
    let sort = p.sort.map(|s| (s, p.desc.unwrap_or(false)));
    let query = match Query::new(criteria, sort, p.max_results.unwrap_or(50), p.next_token.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let store = Arc::clone(&state.store);
    match tokio::task::spawn_blocking(move || views::describe(&store.read(), &query)).await {
        Ok((buckets, token)) => Json(serde_json::json!({ "buckets": buckets, "nextToken": token })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn api_members(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&state, &peer, &headers) {
        return *response;
    }
    let s = state.store.read();
    let members: Vec<_> =
        views::member_accounts(&s, &state.configured_members).iter().map(|a| views::member(&s, a)).collect();
    Json(serde_json::json!({ "members": members })).into_response()
}

/// The posture report: every exposed bucket with its reasons (the first 1,000).
async fn api_posture(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&state, &peer, &headers) {
        return *response;
    }
    let (buckets, next) = views::posture(&state.store.read(), None, None, 1000);
    Json(serde_json::json!({ "buckets": buckets, "truncated": next.is_some() })).into_response()
}

/// The newest findings (at most 200), Macie-shaped.
async fn api_findings(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&state, &peer, &headers) {
        return *response;
    }
    let s = state.store.read();
    let mut findings: Vec<_> = s.findings().by_id.values().collect();
    findings.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then_with(|| a.id.cmp(&b.id)));
    let findings: Vec<_> = findings.iter().take(200).map(|f| f.to_macie_json()).collect();
    Json(serde_json::json!({ "findings": findings })).into_response()
}
