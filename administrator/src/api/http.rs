//! The administrator's HTTP side: liveness, Prometheus metrics, and the dashboard with the
//! JSON it reads (the same Macie-shaped JSON as `estatectl --output json`).
//!
//! Connections are served here rather than by `axum::serve`, whose hyper has no header-read
//! timeout: each one holds a connection slot (overall and per address, see `edge.rs`), must
//! send its request headers within the header timeout (which also closes a keep-alive
//! connection that goes quiet between requests), is closed after the idle timeout without a
//! byte moved, and every request but the live findings stream has a deadline. Every answer
//! carries the security headers ([`security_headers`]); under `--insecure-dev` a request must
//! name a loopback host ([`check_host`]).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Query as UrlQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tower::ServiceExt as _;

use crate::api::auth::{Authenticator, Identity};
use crate::api::error::ServiceError;
use crate::api::filters;
use crate::ingest::Committer;
use estate_common::findings::FindingType;

use crate::api::edge::{self, Accepted, Activity, OpeningLimits, Slots, Watched};
use crate::api::tls::{Listener, Peer, Tls};
use crate::criteria::findings::FindingProperty;
use crate::deliver::{Deliveries, SinkStatus};
use crate::read::findings::{follow, FindingsQuery, Followed};
use crate::read::members;
use crate::read::query::{self, Criterion, Query};
use crate::read::views;
use crate::state::filters::{FilterAction, FindingsFilter};
use crate::state::stats::PostureCounts;
use crate::state::store::{self, Store};
use estate_common::macie::PostureReason;
use estate_common::model::StoredKey;

#[derive(Debug, Clone)]
pub struct HttpState {
    pub store: Arc<Store>,
    pub auth: Authenticator,
    /// `/metrics` without a token (for scrapers that cannot send one).
    pub metrics_open: bool,
    /// The most values one criterion may list.
    pub max_criterion_values: usize,
    /// The deadline of every request but the live findings stream.
    pub request_timeout: Duration,
    /// Under `--insecure-dev`: the listen address, and requests must name a loopback host
    /// (or it) as their `Host`.
    pub loopback_only: Option<SocketAddr>,
    /// The sinks' delivery counters, for `/metrics`.
    pub deliveries: Arc<Deliveries>,
    /// Findings filters created and deleted from the dashboard are committed through it.
    pub committer: Committer,
}

pub fn router(state: HttpState) -> Router {
    let timed = Router::new()
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
        .route("/api/findings-filters", get(api_findings_filters).post(api_create_findings_filter))
        .route("/api/findings-filters/{id}", axum::routing::delete(api_delete_findings_filter))
        .route("/api/posture", get(api_posture))
        .route_layer(from_fn_with_state(state.request_timeout, deadline));
    // Long-lived by design: the connection caps and the idle timeout (its keep-alive
    // comments move bytes) bound it, not a deadline.
    let live = Router::new().route("/api/findings/live", get(api_findings_live));
    timed
        .merge(live)
        .layer(from_fn_with_state(state.loopback_only, check_host))
        .layer(from_fn(security_headers))
        .with_state(state)
}

/// The limits of the HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's headers must arrive within this long, counted from the connection's start
    /// or from the previous response (so it is also the keep-alive timeout).
    pub header_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once, overall and from one address.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub opening: OpeningLimits,
}

/// Serves `app` on `listener` (over TLS when given) until `stop` is set, then lets the
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    app: Router,
    limits: HttpLimits,
    stop: watch::Receiver<bool>,
) {
    let connections = Slots::new(limits.max_connections, limits.max_connections_per_ip);
    match tls {
        Some(tls) => {
            let incoming = edge::accept(listener, "https", limits.opening, Some(connections), move |tcp, peer| {
                let tls = Arc::clone(&tls);
                async move { tls.handshake(Listener::Http, tcp, peer).await }
            });
            let certificate = |stream: &TlsStream<TcpStream>| {
                stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| Arc::new(c.clone().into_owned()))
            };
            serve_connections(incoming, certificate, app, limits, stop).await
        }
        None => {
            let incoming =
                edge::accept(listener, "http", limits.opening, Some(connections), |tcp, _| async move { Ok(tcp) });
            serve_connections(incoming, |_: &TcpStream| None, app, limits, stop).await
        }
    }
}

async fn serve_connections<S>(
    mut incoming: mpsc::Receiver<Accepted<S>>,
    certificate: fn(&S) -> Option<Arc<rustls::pki_types::CertificateDer<'static>>>,
    app: Router,
    limits: HttpLimits,
    stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Each connection task holds a sender: when every one is dropped, all have ended.
    let (running, mut all_ended) = mpsc::channel::<()>(1);
    let stopping = stopped(stop.clone());
    tokio::pin!(stopping);
    loop {
        let accepted = tokio::select! {
            accepted = incoming.recv() => accepted,
            () = &mut stopping => None,
        };
        let Some(Accepted { stream, peer, slot }) = accepted else { break };
        let addr = peer;
        let peer = Peer { addr, certificate: certificate(&stream) };
        let activity = Activity::default();
        let io = hyper_util::rt::TokioIo::new(Watched::new(stream, activity.clone()));
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer.clone()));
            app.clone().oneshot(request)
        });
        let running = running.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _running = running;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(io, service);
            tokio::pin!(connection);
            let stopping = stopped(stop);
            tokio::pin!(stopping);
            let mut draining = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(peer = %addr, %error, "HTTP connection ended");
                        }
                        return;
                    }
                    () = activity.idle(limits.idle_timeout) => {
                        tracing::debug!(peer = %addr, "HTTP connection closed: idle");
                        return;
                    }
                    () = &mut stopping, if !draining => {
                        connection.as_mut().graceful_shutdown();
                        draining = true;
                    }
                }
            }
        });
    }
    drop(incoming);
    drop(running);
    let _ = all_ended.recv().await;
}

/// Resolves once `stop` is set (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The deadline of a request: past it the answer is 503 and the handler is dropped.
async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            ServiceError::unavailable(format!("the request took longer than {} s", limit.as_secs_f64())).into_response()
        }
    }
}

/// The dashboard page, served as written.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The Content-Security-Policy of every answer: nothing from elsewhere, and on the dashboard
/// only its own inline script and style, by hash, computed from the page served.
static CONTENT_SECURITY_POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    HeaderValue::from_str(&content_security_policy(DASHBOARD)).expect("a CSP is ASCII: hashes in base64")
});

/// The `<tag>` blocks' contents of `html`, exactly as a browser hashes them.
fn inline_blocks<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut blocks = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        // `<scripts>` or the like is another element.
        if !after.starts_with(['>', ' ', '\n', '\t']) {
            rest = after;
            continue;
        }
        let Some(body) = after.find('>') else { break };
        let content = &after[body + 1..];
        let Some(end) = content.find(&close) else { break };
        blocks.push(&content[..end]);
        rest = &content[end + close.len()..];
    }
    blocks
}

/// A CSP source for each inline `tag` block of `html`: `'sha256-<base64>'`.
fn hashes(html: &str, tag: &str) -> Vec<String> {
    inline_blocks(html, tag)
        .into_iter()
        .map(|block| format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(block))))
        .collect()
}

fn content_security_policy(html: &str) -> String {
    let sources = |tag| {
        let hashes = hashes(html, tag);
        if hashes.is_empty() {
            "'none'".to_owned()
        } else {
            hashes.join(" ")
        }
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        sources("script"),
        sources("style")
    )
}

/// Adds the security headers to every answer, and `Cache-Control: no-store` to the API's
/// (it carries the inventory; no cache should keep it).
async fn security_headers(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY.clone());
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // For browsers that predate `frame-ancestors`.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Under `--insecure-dev` (no authentication), a web page elsewhere could rebind its own DNS
/// name to 127.0.0.1 and read the dashboard's API from the developer's browser: such a
/// request names that page's host, so only loopback hosts (and the listen address) are
/// served; others get 421.
async fn check_host(State(listen): State<Option<SocketAddr>>, request: Request, next: Next) -> Response {
    let Some(listen) = listen else { return next.run(request).await };
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    if host.is_some_and(|host| loopback_host(host, listen)) {
        return next.run(request).await;
    }
    (
        StatusCode::MISDIRECTED_REQUEST,
        "under --insecure-dev the dashboard answers only requests to a loopback host (localhost, 127.0.0.1, [::1])",
    )
        .into_response()
}

/// Is `host` (a `Host` header: a name or address, maybe with a port) a loopback name or
/// address, or the listen address?
fn loopback_host(host: &str, listen: SocketAddr) -> bool {
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`.
        Some(bracketed) => match bracketed.split_once(']') {
            Some((address, port)) if port.is_empty() || port.starts_with(':') => address,
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        },
    };
    if let Ok(ip) = name.parse::<IpAddr>() {
        return ip.is_loopback() || ip == listen.ip();
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
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

/// A request from a client with the operator role: the extractor of every `/api/` handler that
/// changes something.
struct Operator(Identity);

impl FromRequestParts<HttpState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, Response> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<Peer>>().cloned() else {
            return Err(ServiceError::internal("the connection's peer is unknown").into_response());
        };
        let authorization = match parts.headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
            None => None,
            Some(Ok(value)) => Some(value),
            Some(Err(_)) => {
                return Err(
                    ServiceError::unauthenticated("the `Authorization` header is not `Bearer <token>`").into_response()
                )
            }
        };
        state
            .auth
            .operator_parts(authorization, peer.certificate.as_deref())
            .map(Operator)
            .map_err(|e| e.into_response())
    }
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
    Html(DASHBOARD)
}

async fn metrics(State(state): State<HttpState>, ConnectInfo(peer): ConnectInfo<Peer>, headers: HeaderMap) -> Response {
    if !state.metrics_open {
        if let Err(response) = authorize(&state, &peer, &headers) {
            return *response;
        }
    }
    let live = state.store.liveness();
    let s = state.store.read();
    // The organization's statistics: the bucket counts, and the members' freshness.
    let stats = s.organization_statistics();
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
    gauge("estate_members", "Member accounts that have reported.", s.membership.members.len() as i64);
    gauge(
        "estate_members_pending",
        "Member accounts that should report and have not completed a first inventory of every Region.",
        stats.members_pending,
    );
    gauge(
        "estate_members_without_agent",
        "Member accounts of the organization with no agent.",
        stats.members_without_agent,
    );
    // As the members page counts them: a suspended account is not expected to report.
    let disconnected = s
        .membership
        .members
        .keys()
        .filter(|a| !live.connected.contains_key(a.as_str()))
        .filter(|a| s.membership.status(&s.org, a) != estate_common::macie::MemberStatus::AccountSuspended)
        .count();
    gauge(
        "estate_members_disconnected",
        "Member accounts that have reported, are not suspended, and whose agent has no stream open now.",
        disconnected as i64,
    );
    let open: i64 = s.findings().by_id.values().filter(|f| !f.archived).count() as i64;
    gauge("estate_findings_open", "Findings not archived.", open);
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
    let durable = s.findings().durable_sequence;
    drop(s);
    sink_metrics(&mut out, &state.deliveries, durable);
    let _ = writeln!(
        out,
        "# HELP estate_identity_claims_refused_total Canonical-ID claims refused because another account \
         corroborates the same ID.\n# TYPE estate_identity_claims_refused_total counter\n\
         estate_identity_claims_refused_total {refused}"
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Per sink: findings delivered, failed deliveries, and the finding changes not yet delivered.
fn sink_metrics(out: &mut String, deliveries: &Deliveries, durable: u64) {
    if deliveries.sinks.is_empty() {
        return;
    }
    /// Name, type, help, and the value of a sink given the durable sequence.
    type Family = (&'static str, &'static str, &'static str, fn(&SinkStatus, u64) -> u64);
    let families: [Family; 4] = [
        ("estate_sink_delivered_total", "counter", "Findings delivered by the sink.", |s, _| {
            s.delivered.load(Ordering::Relaxed)
        }),
        (
            "estate_sink_batches_total",
            "counter",
            "Deliveries of the sink that succeeded (one call or write each).",
            |s, _| s.batches.load(Ordering::Relaxed),
        ),
        ("estate_sink_failures_total", "counter", "Deliveries of the sink that failed (each attempt).", |s, _| {
            s.failures.load(Ordering::Relaxed)
        }),
        ("estate_sink_lag", "gauge", "Finding changes the sink has not delivered yet.", |s, durable| {
            durable.saturating_sub(s.cursor.load(Ordering::Relaxed))
        }),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for sink in &deliveries.sinks {
            let _ = writeln!(out, "{name}{{sink=\"{}\",kind=\"{}\"}} {}", sink.name, sink.kind, value(sink, durable));
        }
    }
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

#[derive(Debug, Deserialize)]
struct AccountParams {
    /// `exposure` (default), `bucketCount`, `public`, `sharedExternally` or `accountId`.
    sort: Option<String>,
    /// Descending values; the default for every sort but `accountId`.
    desc: Option<bool>,
    max_results: Option<i32>,
    next_token: Option<String>,
}

/// A page of accounts (the organization's, configured and reporting ones) with their
/// statistics and posture counts, most exposed first by default.
async fn api_accounts(State(state): State<HttpState>, _: Reader, UrlQuery(p): UrlQuery<AccountParams>) -> Response {
    let sort_name = p.sort.as_deref().filter(|s| !s.is_empty()).unwrap_or("exposure");
    let Some(sort) = members::AccountSort::parse(sort_name) else {
        return ServiceError::invalid(format!(
            "`{sort_name}` is not an accounts sort (exposure, bucketCount, public, sharedExternally, accountId)"
        ))
        .into_response();
    };
    let descending = p.desc.unwrap_or(sort != members::AccountSort::AccountId);
    let page_size = match crate::api::error::page_size(p.max_results.unwrap_or(0), 50) {
        Ok(size) => size,
        Err(e) => return e.into_response(),
    };
    let after = match page_key(p.next_token.as_deref(), |t| sort.parse_token(descending, t)) {
        Ok(after) => after,
        Err(e) => return e.into_response(),
    };
    read_json(&state.store, move |s| {
        let page = members::accounts(s, sort, descending, page_size, after.as_ref());
        let accounts: Vec<_> = page
            .rows
            .iter()
            .map(|a| {
                serde_json::json!({
                    "accountId": a.account_id,
                    "statistics": a.statistics,
                    "posture": posture_json(&a.posture),
                })
            })
            .collect();
        serde_json::json!({
            "accounts": accounts,
            "total": page.total,
            "offset": page.offset,
            "nextToken": page.next.map(|k| sort.token(descending, &k)),
        })
    })
    .await
}

/// A page token of [`members`] read by `parse`, or a named error.
fn page_key(
    token: Option<&str>,
    parse: impl FnOnce(&str) -> Option<members::PageKey>,
) -> Result<Option<members::PageKey>, ServiceError> {
    match token.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(token) => parse(token)
            .map(Some)
            .ok_or_else(|| ServiceError::invalid("`nextToken` is malformed, or belongs to another sort or direction")),
    }
}

/// Posture counts as JSON: per reason (Macie-style enum names) and for any reason.
fn posture_json(counts: &PostureCounts) -> serde_json::Value {
    let by_reason: serde_json::Map<String, serde_json::Value> = crate::judge::POSTURE_REASONS
        .iter()
        .map(|r| {
            (
                serde_json::to_value(r).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                counts.count(Some(*r)).into(),
            )
        })
        .collect();
    serde_json::json!({ "byReason": by_reason, "exposed": counts.exposed })
}

#[derive(Debug, Deserialize)]
struct BucketParams {
    /// Macie's `criteria` as JSON: property → `{eq, neq, gt, gte, lt, lte, prefix}`.
    criteria: Option<String>,
    sort: Option<String>,
    desc: Option<bool>,
    max_results: Option<i32>,
    next_token: Option<String>,
    /// Count the matching buckets (one pass over the index when there are criteria): the
    /// dashboard asks on a list's first page and carries the figure to the next ones.
    count: Option<bool>,
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
    let count = p.count.unwrap_or(false);
    let query = match Query::new(criteria, sort, p.max_results.unwrap_or(50), token, state.max_criterion_values) {
        Ok(q) => q,
        Err(e) => return ServiceError::from(e).into_response(),
    };
    read_json(&state.store, move |s| {
        let (buckets, token) = views::describe(s, &query);
        let total = count.then(|| query.count(&s.index));
        serde_json::json!({ "buckets": buckets, "total": total, "nextToken": token })
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
    let key = entry.facts.key.stored();
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

#[derive(Debug, Deserialize)]
struct MemberParams {
    /// One of [`members::MemberState`]'s names.
    state: Option<String>,
    /// A part of the account ID.
    search: Option<String>,
    /// `accountId` (default), `lastUpdated`, `lastContact` or `bucketCount`.
    sort: Option<String>,
    desc: Option<bool>,
    max_results: Option<i32>,
    next_token: Option<String>,
}

/// A page of members: filtered by state and account ID, sorted, with the count of members in
/// each state over the whole organization.
async fn api_members(State(state): State<HttpState>, _: Reader, UrlQuery(p): UrlQuery<MemberParams>) -> Response {
    let wanted = match p.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => match members::MemberState::parse(text) {
            Some(s) => Some(s),
            None => {
                let names: Vec<&str> = members::MemberState::ALL.iter().map(|s| s.name()).collect();
                return ServiceError::invalid(format!("`{text}` is not a member state ({})", names.join(", ")))
                    .into_response();
            }
        },
    };
    let search = p.search.unwrap_or_default();
    if search.len() > 12 || !search.bytes().all(|b| b.is_ascii_digit()) {
        return ServiceError::invalid("`search` is a part of an account ID: at most 12 digits").into_response();
    }
    let sort_name = p.sort.as_deref().filter(|s| !s.is_empty()).unwrap_or("accountId");
    let Some(sort) = members::MemberSort::parse(sort_name) else {
        return ServiceError::invalid(format!(
            "`{sort_name}` is not a members sort (accountId, lastUpdated, lastContact, bucketCount)"
        ))
        .into_response();
    };
    let page_size = match crate::api::error::page_size(p.max_results.unwrap_or(0), 50) {
        Ok(size) => size,
        Err(e) => return e.into_response(),
    };
    let mut query = members::MemberQuery {
        state: wanted,
        search,
        sort,
        descending: p.desc.unwrap_or(false),
        page_size,
        after: None,
    };
    query.after = match page_key(p.next_token.as_deref(), |t| query.parse_token(t)) {
        Ok(after) => after,
        Err(e) => return e.into_response(),
    };
    // Copied before the state lock is taken: no other lock is held under it.
    let live = state.store.liveness();
    read_json(&state.store, move |s| {
        let page = members::members(s, &live, &query, estate_common::model::now_ms());
        let rows: Vec<_> = page
            .rows
            .iter()
            .map(|row| {
                let mut member = serde_json::to_value(&row.member).unwrap_or_default();
                member["states"] = row.states.iter().map(|s| s.name()).collect::<Vec<_>>().into();
                if let Some((at, reason)) = &row.refusal {
                    member["lastRefusal"] =
                        serde_json::json!({ "at": estate_common::macie::Timestamp(*at), "reason": reason });
                }
                member
            })
            .collect();
        let counts: serde_json::Map<String, serde_json::Value> =
            members::MemberState::ALL.iter().zip(page.counts).map(|(s, n)| (s.name().to_owned(), n.into())).collect();
        serde_json::json!({
            "members": rows,
            "total": page.matching,
            "all": page.all,
            "offset": page.offset,
            "counts": counts,
            "nextToken": page.next.map(|k| query.token(&k)),
        })
    })
    .await
}

#[derive(Debug, Deserialize)]
struct PostureParams {
    /// A [`PostureReason`] (`PUBLIC`, ...).
    reason: Option<String>,
    account_id: Option<String>,
    max_results: Option<i32>,
    next_token: Option<String>,
}

/// How many accounts the posture page names in its by-account group.
const POSTURE_ACCOUNTS_SHOWN: usize = 10;

/// The most bounded scans one posture page makes (each looks at up to 50,000 buckets): a page
/// of a rare reason covers up to a million buckets before it gives a token to go on from.
const POSTURE_SCANS_PER_PAGE: usize = 20;

/// A page of the posture report (for one reason and one account, if asked), with its counts by
/// reason and the most exposed accounts.
async fn api_posture(State(state): State<HttpState>, _: Reader, UrlQuery(p): UrlQuery<PostureParams>) -> Response {
    let reason = match p.reason.as_deref().filter(|r| !r.is_empty()) {
        None => None,
        Some(text) => match serde_json::from_value::<PostureReason>(serde_json::Value::String(text.to_owned())) {
            Ok(r) => Some(r),
            Err(_) => return ServiceError::invalid(format!("`{text}` is not a posture reason")).into_response(),
        },
    };
    let account = match p.account_id.filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => match ServiceError::account_id(a) {
            Ok(a) => Some(a),
            Err(e) => return e.into_response(),
        },
    };
    let page_size = match crate::api::error::page_size(p.max_results.unwrap_or(0), 50) {
        Ok(size) => size,
        Err(e) => return e.into_response(),
    };
    let after = match p.next_token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => match hex::decode(token).ok().and_then(|bytes| StoredKey::from_bytes(&bytes)) {
            Some(key) => Some(key),
            None => return ServiceError::invalid("`nextToken` is malformed").into_response(),
        },
    };
    // A page fills from several bounded scans, each under the read lock on its own, so that a
    // rare reason does not leave pages empty, and the committer waits for one scan at most.
    let mut buckets = Vec::new();
    let mut next = after;
    for _ in 0..POSTURE_SCANS_PER_PAGE {
        let (want, account, after) = (page_size - buckets.len(), account.clone(), next.take());
        let scanned =
            state.store.read_blocking(move |s| views::posture(s, account.as_ref(), reason, after.as_ref(), want));
        let (mut found, after) = match scanned.await {
            Ok(scanned) => scanned,
            Err(e) => return ServiceError::from(e).into_response(),
        };
        buckets.append(&mut found);
        next = after;
        if next.is_none() || buckets.len() >= page_size {
            break;
        }
    }
    read_json(&state.store, move |s| {
        let counts = s.stats.posture(account.as_deref());
        let accounts: Vec<_> = members::most_exposed(s, POSTURE_ACCOUNTS_SHOWN)
            .into_iter()
            .map(|(a, c)| serde_json::json!({ "accountId": a, "posture": posture_json(&c) }))
            .collect();
        serde_json::json!({
            "buckets": buckets,
            "total": counts.count(reason),
            "counts": posture_json(&counts),
            "organization": posture_json(&s.stats.posture(None)),
            "accounts": accounts,
            "accountsWithExposure": s.stats.posture_accounts().filter(|(_, c)| c.exposed > 0).count(),
            "nextToken": next.map(|key| hex::encode(key.as_bytes())),
        })
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
    /// Findings to skip, newest first (a page's start).
    offset: Option<usize>,
    max_results: Option<i32>,
}

/// A page of the newest findings that match (50 by default), Macie-shaped, with how many changed in the
/// last 24 hours and the sequence to follow live updates from.
/// Macie's `CreateFindingsFilterRequest`, as the dashboard posts it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewFilter {
    name: String,
    action: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    position: i32,
    finding_criteria: NewCriteria,
    #[serde(default)]
    client_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCriteria {
    criterion: BTreeMap<String, crate::criteria::Criterion>,
}

/// Refuses a change a browser sent from another site: with `--insecure-dev` (no token) or a
/// client certificate the browser presents by itself, such a request would otherwise be
/// authenticated. Browsers say where a request comes from (`Sec-Fetch-Site`, `Origin`); the
/// dashboard's own requests are same-origin, and non-browser clients send neither.
fn from_another_site(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    // A browser's own word first (a proxy may rewrite `Host`); `Origin` against `Host` for
    // browsers that do not send it.
    let cross = match text("sec-fetch-site") {
        Some(site) => site != "same-origin" && site != "none",
        None => {
            let host = text(header::HOST.as_str()).unwrap_or_default();
            text(header::ORIGIN.as_str())
                .is_some_and(|origin| origin.split_once("://").is_none_or(|(_, authority)| authority != host))
        }
    };
    cross
}

fn cross_site_refused() -> Response {
    ServiceError::forbidden("a change must come from the dashboard's own origin").into_response()
}

/// `CreateFindingsFilter` for the dashboard (operator role, JSON, same origin).
async fn api_create_findings_filter(
    State(state): State<HttpState>,
    Operator(who): Operator,
    headers: HeaderMap,
    new: Result<Json<NewFilter>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if from_another_site(&headers) {
        return cross_site_refused();
    }
    // `Json` takes only `Content-Type: application/json`, which a cross-site form cannot send
    // without a preflight.
    let new = match new {
        Ok(Json(new)) => new,
        Err(e) => return ServiceError::invalid(format!("not a findings filter: {}", e.body_text())).into_response(),
    };
    let action = match new.action.as_str() {
        "ARCHIVE" => FilterAction::Archive,
        "NOOP" => FilterAction::Noop,
        other => return ServiceError::invalid(format!("`action` `{other}` is not ARCHIVE or NOOP")).into_response(),
    };
    let draft = FindingsFilter {
        id: String::new(),
        created_at: 0,
        name: new.name,
        description: new.description,
        action,
        position: new.position,
        criteria: new.finding_criteria.criterion,
        tags: BTreeMap::new(),
        client_token: new.client_token.filter(|t| !t.is_empty()),
    };
    match filters::create(&state.store, &state.committer, draft, state.max_criterion_values, &who).await {
        Ok(filter) => Json(serde_json::json!({"id": filter.id, "arn": filter.arn()})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DeleteFindingsFilter` for the dashboard (operator role, same origin).
async fn api_delete_findings_filter(
    State(state): State<HttpState>,
    Operator(who): Operator,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if from_another_site(&headers) {
        return cross_site_refused();
    }
    match filters::delete(&state.store, &state.committer, id, &who).await {
        Ok(()) => Json(serde_json::json!({})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// One criterion in Macie's JSON, with only the operators it uses.
fn criterion_json(c: &crate::criteria::Criterion) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (op, values) in [("eq", &c.eq), ("eqExactMatch", &c.eq_exact_match), ("neq", &c.neq)] {
        if !values.is_empty() {
            out.insert(op.to_owned(), serde_json::json!(values));
        }
    }
    for (op, value) in [("gt", c.gt), ("gte", c.gte), ("lt", c.lt), ("lte", c.lte)] {
        if let Some(v) = value {
            out.insert(op.to_owned(), serde_json::json!(v));
        }
    }
    serde_json::Value::Object(out)
}

/// The findings filters in the order they apply, in Macie's shape (`GetFindingsFilter`).
async fn api_findings_filters(State(state): State<HttpState>, _: Reader) -> Response {
    let s = state.store.read();
    let filters: Vec<serde_json::Value> = s
        .findings()
        .filters
        .ordered()
        .into_iter()
        .map(|f| {
            serde_json::json!({
                "id": f.id,
                "arn": f.arn(),
                "name": f.name,
                "description": f.description,
                "action": match f.action { FilterAction::Archive => "ARCHIVE", FilterAction::Noop => "NOOP" },
                "position": f.position,
                "findingCriteria": {"criterion": f.criteria.iter().map(|(k, c)| (k.clone(), criterion_json(c))).collect::<serde_json::Map<_, _>>()},
                "tags": f.tags,
            })
        })
        .collect();
    Json(serde_json::json!({"findingsFilters": filters})).into_response()
}

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
    // The same query as ListFindings, from the page's parameters: newest first.
    let equal = |value: String| Criterion { eq: vec![value], ..Default::default() };
    let mut criteria = BTreeMap::new();
    let parameters = [
        ("type", kind.map(|k| k.as_str().to_owned())),
        ("severity.description", severity),
        ("accountId", p.account_id.filter(|a| !a.is_empty())),
        ("resourcesAffected.s3Bucket.name", p.bucket.filter(|b| !b.is_empty())),
        ("archived", (!p.archived.unwrap_or(false)).then(|| "false".to_owned())),
    ];
    for (name, value) in parameters {
        if let Some(value) = value {
            criteria.insert(name.to_owned(), equal(value));
        }
    }
    let filters = match crate::criteria::compile(criteria, 1) {
        Ok(filters) => filters,
        Err(error) => return ServiceError::from(error).into_response(),
    };
    let query = FindingsQuery { filters, sort: FindingProperty::UpdatedAt, descending: true };
    let size = match crate::api::error::page_size(p.max_results.unwrap_or(0), 50) {
        Ok(size) => size,
        Err(e) => return e.into_response(),
    };
    let offset = p.offset.unwrap_or(0);
    read_json(&state.store, move |s| findings_page(s, &query, offset, size)).await
}

/// The findings page of [`api_findings`], from its query: `size` findings from `offset`, and
/// the matching findings counted by type.
fn findings_page(s: &store::State, query: &FindingsQuery, offset: usize, size: usize) -> serde_json::Value {
    let findings = s.findings();
    let since = estate_common::model::now_ms() - DAY_MS;
    let changed_last_day = findings.by_id.values().filter(|f| f.updated_at >= since).count();
    let matching = query.run(findings);
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &matching {
        *by_type.entry(f.kind.as_str()).or_default() += 1;
    }
    let shown: Vec<_> = matching.iter().skip(offset).take(size).map(|f| f.to_macie_json()).collect();
    serde_json::json!({
        "findings": shown,
        "total": matching.len(),
        "offset": offset,
        "byType": by_type,
        "changedLast24h": changed_last_day,
        "cursor": findings.durable_sequence,
    })
}

const DAY_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Deserialize)]
struct LiveParams {
    cursor: Option<u64>,
}

/// Server-sent events: every finding created or updated after `cursor` (replayed first), then
/// each one as it becomes durable, as `finding` events of Macie-shaped JSON. The dashboard
/// reads it with `fetch`, which can send the token.
async fn api_findings_live(State(state): State<HttpState>, _: Reader, UrlQuery(p): UrlQuery<LiveParams>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let mut followed = follow(&state.store, p.cursor.filter(|c| *c > 0));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, std::convert::Infallible>>(1);
    tokio::spawn(async move {
        while let Some(item) = followed.recv().await {
            let event = match item {
                Followed::Finding(f) => {
                    Event::default().event("finding").id(f.sequence.to_string()).data(f.to_macie_json().to_string())
                }
                // Behind: the client reloads the list and follows from its new cursor.
                Followed::Behind { resume_from, .. } => Event::default().event("reload").data(resume_from.to_string()),
            };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx)).keep_alive(KeepAlive::default()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn state(dir: &std::path::Path, loopback_only: Option<SocketAddr>) -> HttpState {
        let store = Arc::new(Store::open(dir, crate::judge::OrgView::default(), BTreeSet::new(), None).unwrap());
        HttpState {
            auth: Authenticator::development(),
            metrics_open: false,
            max_criterion_values: 100,
            request_timeout: Duration::from_secs(30),
            loopback_only,
            deliveries: Default::default(),
            committer: Committer::start(Arc::clone(&store)),
            store,
        }
    }

    async fn fetch(app: &Router, path: &str, host: &str) -> Response {
        let peer = Peer { addr: "127.0.0.1:40000".parse().unwrap(), certificate: None };
        let request = axum::http::Request::get(path)
            .header(header::HOST, host)
            .extension(ConnectInfo(peer))
            .body(axum::body::Body::empty())
            .unwrap();
        app.clone().oneshot(request).await.unwrap()
    }

    #[test]
    fn the_csp_hashes_each_inline_block_of_the_page_served() {
        let html = "<html><style>b{}</style><script>alert(1)</script><scripts>x</scripts>\
                    <script type=\"module\">two()</script></html>";
        assert_eq!(inline_blocks(html, "script"), ["alert(1)", "two()"]);
        assert_eq!(inline_blocks(html, "style"), ["b{}"]);
        // `printf 'alert(1)' | openssl dgst -sha256 -binary | base64`
        assert!(content_security_policy(html).contains("'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"));

        let csp = CONTENT_SECURITY_POLICY.to_str().unwrap();
        let scripts = inline_blocks(DASHBOARD, "script");
        let styles = inline_blocks(DASHBOARD, "style");
        assert!(!scripts.is_empty() && !styles.is_empty(), "the dashboard has its inline script and style");
        for hash in hashes(DASHBOARD, "script").iter().chain(&hashes(DASHBOARD, "style")) {
            assert!(csp.contains(hash.as_str()), "{hash} is in the CSP");
        }
        for directive in ["default-src 'none'", "frame-ancestors 'none'", "connect-src 'self'"] {
            assert!(csp.contains(directive), "{directive} is in the CSP: {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("http"), "nothing inline unhashed, no CDN: {csp}");
    }

    #[test]
    fn the_dashboard_markup_has_nothing_the_csp_would_block() {
        // Inline event handlers and style attributes need 'unsafe-inline'; the page's code
        // adds listeners and styles through the DOM instead.
        let markup: String = {
            let mut text = DASHBOARD.to_owned();
            for block in inline_blocks(DASHBOARD, "script").into_iter().chain(inline_blocks(DASHBOARD, "style")) {
                text = text.replace(block, "");
            }
            text
        };
        assert!(!markup.contains(" style="), "a style attribute in the dashboard's markup");
        assert!(!markup.contains(" onclick=") && !markup.contains(" onload="), "an inline handler in the markup");
        assert!(!DASHBOARD.contains("setAttribute(\"style\"") && !DASHBOARD.contains("cssText"));
    }

    #[tokio::test]
    async fn every_answer_carries_the_security_headers_and_the_api_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(state(dir.path(), None));
        for path in ["/", "/api/statistics", "/api/findings/live", "/healthz"] {
            let response = fetch(&app, path, "127.0.0.1:8080").await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_SECURITY_POLICY], *CONTENT_SECURITY_POLICY, "{path}");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
            assert_eq!(headers[header::REFERRER_POLICY], "no-referrer", "{path}");
            assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "{path}");
            let cache = headers.get(header::CACHE_CONTROL).map(|v| v.to_str().unwrap());
            if path.starts_with("/api/") {
                assert_eq!(cache, Some("no-store"), "{path}");
            } else {
                assert_ne!(cache, Some("no-store"), "{path}");
            }
        }
    }

    /// A findings filter saved in the store is listed, in Macie's shape, with only the
    /// operators its criteria use.
    #[tokio::test]
    async fn findings_filters_are_listed_in_macies_shape() {
        use crate::state::filters::FindingsFilter;
        let dir = tempfile::tempdir().unwrap();
        let http = state(dir.path(), None);
        let criterion = crate::criteria::Criterion { eq_exact_match: vec!["team".into()], ..Default::default() };
        let filter = FindingsFilter {
            id: "f1".into(),
            name: "accepted".into(),
            description: "known public".into(),
            action: FilterAction::Archive,
            position: 2,
            criteria: [("resourcesAffected.s3Bucket.tags.key".to_owned(), criterion)].into(),
            tags: Default::default(),
            client_token: None,
            created_at: 1,
        };
        http.store.commit(vec![store::Op::PutFindingsFilter(Box::new(filter))], 5).unwrap();
        let app = router(http);
        let response = fetch(&app, "/api/findings-filters", "127.0.0.1:8080").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let listed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            listed["findingsFilters"][0],
            serde_json::json!({
                "id": "f1", "arn": "estate:findings-filter/f1", "name": "accepted", "description": "known public",
                "action": "ARCHIVE", "position": 2, "tags": {},
                "findingCriteria": {"criterion": {"resourcesAffected.s3Bucket.tags.key": {"eqExactMatch": ["team"]}}},
            })
        );
    }

    /// The dashboard creates and deletes filters through the same checks as gRPC: a filter
    /// Estate cannot apply is refused by name, an archiving one archives, and deleting works.
    #[tokio::test]
    async fn findings_filters_are_created_and_deleted_over_http() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(state(dir.path(), None));
        let send = |method: &str, path: &str, body: &str| {
            let peer = Peer { addr: "127.0.0.1:40000".parse().unwrap(), certificate: None };
            let request = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .header(header::HOST, "127.0.0.1:8080")
                .header(header::CONTENT_TYPE, "application/json")
                .extension(ConnectInfo(peer))
                .body(axum::body::Body::from(body.to_owned()))
                .unwrap();
            app.clone().oneshot(request)
        };
        let json = |response: Response| async move {
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            (status, serde_json::from_slice::<serde_json::Value>(&body).unwrap())
        };
        // Another site's page cannot make the browser create one.
        let cross = {
            let peer = Peer { addr: "127.0.0.1:40000".parse().unwrap(), certificate: None };
            let request = axum::http::Request::builder()
                .method("POST")
                .uri("/api/findings-filters")
                .header(header::HOST, "127.0.0.1:8080")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ORIGIN, "https://evil.example")
                .header("sec-fetch-site", "cross-site")
                .extension(ConnectInfo(peer))
                .body(axum::body::Body::from(
                    r#"{"name": "all", "action": "ARCHIVE", "findingCriteria": {"criterion": {"count": {"gte": 0}}}}"#,
                ))
                .unwrap();
            app.clone().oneshot(request).await.unwrap()
        };
        assert_eq!(cross.status(), StatusCode::FORBIDDEN);
        let unknown = r#"{"name": "bad one", "action": "ARCHIVE", "findingCriteria": {"criterion": {"colour": {"eq": ["red"]}}}}"#;
        let (status, error) = json(send("POST", "/api/findings-filters", unknown).await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(error["message"].as_str().unwrap().contains("colour"), "{error}");
        // Macie's findings filters have no `prefix`; one would be stored and not shown.
        let prefixed = r#"{"name": "prefixed", "action": "ARCHIVE", "findingCriteria": {"criterion": {"resourcesAffected.s3Bucket.name": {"prefix": "q"}}}}"#;
        let (status, error) = json(send("POST", "/api/findings-filters", prefixed).await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        let good = r#"{"name": "accepted", "action": "ARCHIVE", "position": 1,
            "findingCriteria": {"criterion": {"resourcesAffected.s3Bucket.name": {"eq": ["quiet"]}}}}"#;
        let (status, created) = json(send("POST", "/api/findings-filters", good).await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        let (_, listed) = json(fetch(&app, "/api/findings-filters", "127.0.0.1:8080").await).await;
        assert_eq!(listed["findingsFilters"][0]["name"], "accepted");
        let (status, _) = json(send("POST", "/api/findings-filters", good).await.unwrap()).await;
        assert_eq!(status, StatusCode::CONFLICT, "a second filter of the same name is refused");
        let (status, _) = json(send("DELETE", &format!("/api/findings-filters/{id}"), "").await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let (_, listed) = json(fetch(&app, "/api/findings-filters", "127.0.0.1:8080").await).await;
        assert_eq!(listed["findingsFilters"], serde_json::json!([]));
        let (status, _) = json(send("DELETE", &format!("/api/findings-filters/{id}"), "").await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn under_insecure_dev_only_loopback_hosts_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let app = router(state(dir.path(), Some(listen)));
        for host in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "dash.localhost:1",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
            "[::1]",
        ] {
            assert_eq!(fetch(&app, "/api/statistics", host).await.status(), StatusCode::OK, "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "[::1]x",
            "10.0.0.1:8080",
            "",
        ] {
            let response = fetch(&app, "/api/statistics", host).await;
            assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST, "{host:?}");
            assert_eq!(response.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "refusals carry the headers too");
        }
        // With authentication (no `--insecure-dev`), the host is not checked: tokens guard.
        let other_dir = tempfile::tempdir().unwrap();
        let guarded = router(state(other_dir.path(), None));
        assert_eq!(fetch(&guarded, "/healthz", "estate.example").await.status(), StatusCode::OK);
    }

    #[test]
    fn the_listen_address_is_a_loopback_host_too() {
        let listen: SocketAddr = "[::1]:9".parse().unwrap();
        assert!(loopback_host("[::1]:9", listen));
        // Not what `--insecure-dev` allows, but what the check would accept if it did.
        assert!(loopback_host("192.0.2.7:80", "192.0.2.7:80".parse().unwrap()));
        assert!(!loopback_host("192.0.2.8", "192.0.2.7:80".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_slow_request_gets_503_at_its_deadline() {
        let app: Router = Router::new()
            .route("/slow", get(|| async { tokio::time::sleep(Duration::from_secs(3600)).await }))
            .route_layer(from_fn_with_state(Duration::from_millis(50), deadline));
        let request = axum::http::Request::get("/slow").body(axum::body::Body::empty()).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(30), app.oneshot(request)).await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    fn limits(header: Duration, idle: Duration, per_ip: usize) -> HttpLimits {
        HttpLimits {
            header_timeout: header,
            idle_timeout: idle,
            max_connections: 16,
            max_connections_per_ip: per_ip,
            // A first-byte timeout no test waits for.
            opening: OpeningLimits {
                first_byte_timeout: Duration::from_secs(600),
                max_pending: 16,
                max_pending_per_ip: 16,
            },
        }
    }

    /// Serves a router with `/healthz` on a loopback port with `limits`.
    async fn start(limits: HttpLimits) -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let app = Router::new().route("/healthz", get(|| async { "ok" }));
        tokio::spawn(serve(listener, None, app, limits, stop));
        (addr, stop_tx)
    }

    async fn closed_within(stream: &mut TcpStream, ceiling: Duration) -> bool {
        let mut buf = [0; 1024];
        let read = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    // A 408 or the like before the close.
                    Ok(_) => continue,
                }
            }
        };
        tokio::time::timeout(ceiling, read).await.unwrap_or(false)
    }

    async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source.parse().unwrap(), 0)).unwrap();
        socket.connect(to).await.unwrap()
    }

    async fn healthz(stream: &mut TcpStream) -> String {
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        let mut buf = vec![0; 1024];
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await.unwrap().unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn a_half_sent_request_is_closed_at_the_header_timeout() {
        let (addr, _stop) = start(limits(Duration::from_millis(300), Duration::from_secs(600), 16)).await;
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET /healthz HTTP/1.1\r\nHost: local").await.unwrap();
        assert!(closed_within(&mut half, Duration::from_secs(30)).await, "the half-sent request is closed");
        // A keep-alive connection quiet after its answer is closed too.
        let mut quiet = TcpStream::connect(addr).await.unwrap();
        assert!(healthz(&mut quiet).await.starts_with("HTTP/1.1 200"));
        assert!(closed_within(&mut quiet, Duration::from_secs(30)).await, "the quiet keep-alive connection is closed");
    }

    #[tokio::test]
    async fn a_connection_that_moves_nothing_is_closed_at_the_idle_timeout() {
        // A header timeout no test waits for: only idleness can close it.
        let (addr, _stop) = start(limits(Duration::from_secs(600), Duration::from_millis(300), 16)).await;
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        assert!(closed_within(&mut stalled, Duration::from_secs(30)).await, "the idle connection is closed");
    }

    #[tokio::test]
    async fn connections_over_the_per_address_cap_are_closed_and_others_served() {
        let (addr, _stop) = start(limits(Duration::from_secs(600), Duration::from_secs(600), 1)).await;
        let mut first = connect_from("127.0.0.2", addr).await;
        assert!(healthz(&mut first).await.starts_with("HTTP/1.1 200"));
        let mut second = connect_from("127.0.0.2", addr).await;
        assert!(closed_within(&mut second, Duration::from_secs(30)).await, "the second connection of 127.0.0.2");
        let mut other = connect_from("127.0.0.1", addr).await;
        assert!(healthz(&mut other).await.starts_with("HTTP/1.1 200"), "another address is served");
        // Once the first closes, its address may connect again.
        drop(first);
        let mut again = None;
        for _ in 0..300 {
            let mut stream = connect_from("127.0.0.2", addr).await;
            if stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.is_ok() {
                let mut buf = vec![0; 1024];
                if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                    if buf[..n].starts_with(b"HTTP/1.1 200") {
                        again = Some(stream);
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(again.is_some(), "the slot was given back");
    }
}
