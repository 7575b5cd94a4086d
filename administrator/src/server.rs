//! `estate-admin serve`: opens the store, starts the group committer and serves gRPC (agents,
//! clients, health, reflection) and HTTP (dashboard, metrics) until SIGINT or SIGTERM, both
//! over TLS when given a certificate (see `tls.rs`).
//!
//! Peer limits are [`Limits`], one flag each, defaults in [`defaults`]. Plaintext on a
//! non-loopback address is refused (`check_transport`). SIGHUP reloads the TLS files, the
//! tokens (the streams of agents and hubs that lost theirs are ended, `AgentDirectory::end_streams_of`)
//! and the config's organization unless AWS Organizations is the source. An hourly timer
//! archives findings and prunes counted events. Storage failing stops both servers. gRPC
//! connections reach tonic from `edge::accept` only after their HTTP/2 preface.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

use estate_common::pb::{
    agent_service_server::AgentServiceServer, findings_service_server::FindingsServiceServer,
    inventory_service_server::InventoryServiceServer,
};

use crate::api::auth::Authenticator;
use crate::api::edge::{self, OpeningLimits};
use crate::api::grpc::agent::AgentServiceImpl;
use crate::api::grpc::directory::AgentDirectory;
use crate::api::grpc::findings::FindingsServiceImpl;
use crate::api::grpc::inventory::InventoryServiceImpl;
use crate::api::http;
use crate::api::tls::{Tls, TlsFiles};
use crate::config::Config;
use crate::ingest::Committer;
use crate::judge::OrgView;
use crate::state::store::{Op, Store};
use crate::storage::sled_engine::SledStorage;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub insecure_dev: bool,
    /// Requested refreshes of one scope are at most this often (Macie: five minutes).
    pub min_refresh_interval: std::time::Duration,
    /// DescribeBuckets asks for a refresh of Regions quiet this long (zero: never).
    pub describe_refresh_after: std::time::Duration,
    /// Read the organization from AWS Organizations (the config's stays in force when that
    /// fails), every `organizations_interval`.
    pub organizations: bool,
    pub organizations_interval: std::time::Duration,
    /// An AWS-compatible endpoint for every AWS service the administrator calls
    /// (Organizations, EventBridge): tests point it at moto.
    pub aws_endpoint_url: Option<String>,
    pub policy_workers: usize,
    /// The time budget of one policy's whole analysis.
    pub policy_budget: std::time::Duration,
    /// Serve gRPC and HTTP over TLS with these files.
    pub tls: Option<TlsFiles>,
    /// Allow plaintext on a non-loopback address (behind a TLS-terminating proxy or mesh).
    pub allow_plaintext: bool,
    /// Serve `/metrics` without a token.
    pub metrics_open: bool,
    pub limits: Limits,
    /// Sync the store's log to stable storage (fdatasync) before each acknowledgement. Always
    /// on in the product; the ingest benchmark turns it off to measure what it costs.
    #[doc(hidden)]
    pub sync_data: bool,
}

/// What one peer may ask of the administrator; every one a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// HTTP/2 streams one connection may have open at once.
    pub max_streams_per_connection: u32,
    /// Report streams one agent account may have open at once (its token's account).
    pub max_connections_per_agent: usize,
    /// An HTTP/2 PING after this long without traffic...
    pub keepalive_interval: std::time::Duration,
    /// ...that must be answered within this long, or the connection is closed (a vanished
    /// peer is DISCONNECTED after at most the sum).
    pub keepalive_timeout: std::time::Duration,
    /// The largest message decoded from a peer.
    pub max_message_bytes: usize,
    /// The most values one criterion may list (`eq`, `neq`).
    pub max_criterion_values: usize,
    /// The deadline of one client request (a stream's is its first answer), gRPC and HTTP
    /// (every HTTP request but the live findings stream).
    pub request_timeout: std::time::Duration,
    /// Buckets one account may hold; an agent's snapshots of new buckets past it are rejected.
    pub max_buckets_per_account: u64,
    /// A peer that sends nothing for this long after connecting is dropped (both listeners).
    pub first_byte_timeout: std::time::Duration,
    /// Connections in their opening stage (first byte, TLS handshake, HTTP/2 preface) at
    /// once, per listener; more are closed at once.
    pub max_pending_handshakes: usize,
    /// The same, from one address: one address cannot take every slot.
    pub max_pending_handshakes_per_ip: usize,
    /// A gRPC peer must send the HTTP/2 preface within this long after its handshake (or,
    /// in plaintext, after its first byte).
    pub preface_timeout: std::time::Duration,
    /// An HTTP request's headers must arrive within this long (also between keep-alive
    /// requests).
    pub http_header_timeout: std::time::Duration,
    /// An HTTP connection that moves no byte for this long is closed.
    pub http_idle_timeout: std::time::Duration,
    /// HTTP connections open at once, overall and from one address; more are closed at once.
    pub max_http_connections: usize,
    pub max_http_connections_per_ip: usize,
}

/// The defaults of `estate-admin serve`: its flags' and [`ServeOptions::development`]'s.
pub mod defaults {
    pub const MIN_REFRESH_INTERVAL_SECS: u64 = 300;
    /// Macie's: DescribeBuckets refreshes metadata none arrived for in five minutes.
    pub const DESCRIBE_REFRESH_AFTER_SECS: u64 = 300;
    pub const ORGANIZATIONS_INTERVAL_SECS: u64 = 900;
    pub const POLICY_BUDGET_MS: u64 = estate_policy::DEFAULT_BUDGET_MS;
    pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;
    pub const MAX_CONNECTIONS_PER_AGENT: u16 = 4;
    pub const KEEPALIVE_INTERVAL_SECS: u64 = 20;
    pub const KEEPALIVE_TIMEOUT_SECS: u64 = 20;
    pub const MAX_MESSAGE_BYTES: u64 = 4 * 1024 * 1024;
    pub const MAX_CRITERION_VALUES: u16 = 100;
    pub const REQUEST_TIMEOUT_SECS: u64 = 30;
    pub const MAX_BUCKETS_PER_ACCOUNT: u64 = crate::api::grpc::agent::DEFAULT_MAX_BUCKETS_PER_ACCOUNT;
    /// A client sends its TLS ClientHello (or HTTP/2 preface) as soon as it is connected; a
    /// peer silent for 2 s is not a client, and holds a pending slot meanwhile.
    pub const FIRST_BYTE_TIMEOUT_MS: u64 = 2_000;
    /// Silent peers cost a descriptor and a small task each; a cap keeps a flood of them from
    /// taking every descriptor, and is far above what real clients need at once.
    pub const MAX_PENDING_HANDSHAKES: u32 = 1_024;
    /// Sixteen agents behind one NAT reconnecting at once fit four times over; one address
    /// cannot take more than a sixteenth of the pending slots.
    pub const MAX_PENDING_HANDSHAKES_PER_IP: u32 = 64;
    /// As long as a TLS handshake may take.
    pub const PREFACE_TIMEOUT_SECS: u64 = 10;
    /// Browsers send a request's headers in one go; ten seconds is generous for a slow link
    /// and short enough that a half-sent request does not hold a connection for long.
    pub const HTTP_HEADER_TIMEOUT_SECS: u64 = 10;
    /// Above the request timeout and the live stream's 15-second keep-alive comments, so only
    /// a connection that really stalls (a peer that stops reading) is cut.
    pub const HTTP_IDLE_TIMEOUT_SECS: u64 = 60;
    /// The dashboard serves operators and scrapers, not the organization: a few browsers of
    /// six connections each, per address.
    pub const MAX_HTTP_CONNECTIONS: u32 = 1_024;
    pub const MAX_HTTP_CONNECTIONS_PER_IP: u32 = 64;
}

impl Default for Limits {
    fn default() -> Self {
        use std::time::Duration;
        Self {
            max_streams_per_connection: defaults::MAX_STREAMS_PER_CONNECTION,
            max_connections_per_agent: usize::from(defaults::MAX_CONNECTIONS_PER_AGENT),
            keepalive_interval: Duration::from_secs(defaults::KEEPALIVE_INTERVAL_SECS),
            keepalive_timeout: Duration::from_secs(defaults::KEEPALIVE_TIMEOUT_SECS),
            max_message_bytes: defaults::MAX_MESSAGE_BYTES as usize,
            max_criterion_values: usize::from(defaults::MAX_CRITERION_VALUES),
            request_timeout: Duration::from_secs(defaults::REQUEST_TIMEOUT_SECS),
            max_buckets_per_account: defaults::MAX_BUCKETS_PER_ACCOUNT,
            first_byte_timeout: Duration::from_millis(defaults::FIRST_BYTE_TIMEOUT_MS),
            max_pending_handshakes: defaults::MAX_PENDING_HANDSHAKES as usize,
            max_pending_handshakes_per_ip: defaults::MAX_PENDING_HANDSHAKES_PER_IP as usize,
            preface_timeout: Duration::from_secs(defaults::PREFACE_TIMEOUT_SECS),
            http_header_timeout: Duration::from_secs(defaults::HTTP_HEADER_TIMEOUT_SECS),
            http_idle_timeout: Duration::from_secs(defaults::HTTP_IDLE_TIMEOUT_SECS),
            max_http_connections: defaults::MAX_HTTP_CONNECTIONS as usize,
            max_http_connections_per_ip: defaults::MAX_HTTP_CONNECTIONS_PER_IP as usize,
        }
    }
}

impl Limits {
    /// The opening stage's limits, the same on both listeners.
    pub fn opening(&self) -> OpeningLimits {
        OpeningLimits {
            first_byte_timeout: self.first_byte_timeout,
            max_pending: self.max_pending_handshakes,
            max_pending_per_ip: self.max_pending_handshakes_per_ip,
        }
    }

    pub fn http(&self) -> http::HttpLimits {
        http::HttpLimits {
            header_timeout: self.http_header_timeout,
            idle_timeout: self.http_idle_timeout,
            max_connections: self.max_http_connections,
            max_connections_per_ip: self.max_http_connections_per_ip,
            opening: self.opening(),
        }
    }
}

impl ServeOptions {
    /// Loopback development defaults (benchmarks, tests).
    pub fn development(listen: SocketAddr, http_listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            http_listen,
            data_dir,
            config: None,
            insecure_dev: true,
            min_refresh_interval: std::time::Duration::from_secs(defaults::MIN_REFRESH_INTERVAL_SECS),
            describe_refresh_after: std::time::Duration::from_secs(defaults::DESCRIBE_REFRESH_AFTER_SECS),
            organizations: false,
            organizations_interval: std::time::Duration::from_secs(defaults::ORGANIZATIONS_INTERVAL_SECS),
            aws_endpoint_url: None,
            policy_workers: 2,
            policy_budget: std::time::Duration::from_millis(defaults::POLICY_BUDGET_MS),
            tls: None,
            allow_plaintext: false,
            metrics_open: false,
            limits: Limits::default(),
            sync_data: true,
        }
    }
}

fn organization_from(config: Option<&Config>) -> OrgView {
    match config {
        Some(config) => OrgView::new(
            config.organization.id.clone(),
            config.organization_accounts().clone(),
            config.organization.paths.clone(),
        ),
        None => OrgView::default(),
    }
}

/// Streams still open this long after a stop signal are cut: agents' streams never end by
/// themselves, and the process must be gone within five seconds.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Resolves once `stop` is set.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// On SIGHUP, reads the TLS files again (new connections use them; established ones keep
/// theirs) and the config file: its tokens replace the old ones at once (the open report
/// streams of an agent whose token was revoked are ended), and its organization applies
/// unless AWS Organizations is the source. A config that does not load changes nothing.
async fn reload_on_hangup(
    path: Option<PathBuf>,
    tls: Option<Arc<Tls>>,
    committer: Committer,
    organizations_active: bool,
    auth: Authenticator,
    directory: Arc<AgentDirectory>,
) {
    #[cfg(unix)]
    {
        let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hangup.recv().await.is_some() {
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => tracing::info!("TLS certificate and key reloaded"),
                    Err(error) => {
                        tracing::error!(error = %format!("{error:#}"), "TLS files not reloaded; the previous ones stay")
                    }
                }
            }
            let Some(path) = &path else { continue };
            // Everything is read and checked before anything changes: a config that does not
            // load leaves the tokens and the organization as they were.
            let (config, identities) = match Config::load(path).and_then(|c| Ok((c.identities()?, c))) {
                Ok((identities, config)) => (config, identities),
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "config not reloaded; the previous tokens stay");
                    continue;
                }
            };
            crate::permissions::warn_if_config_readable(path, &config);
            if config.require_certificate_identity != auth.requires_certificate_identity() {
                tracing::warn!(
                    "`require_certificate_identity` changed in the config; it takes effect at the next start"
                );
            }
            let revoked = auth.replace_tokens(identities);
            let status = tonic::Status::unauthenticated("the token of this stream was revoked");
            let ended: usize =
                revoked.reporters.iter().map(|reporter| directory.end_streams_of(reporter, &status)).sum();
            tracing::info!(revoked = revoked.tokens, streams_ended = ended, "tokens reloaded");
            if organizations_active {
                tracing::info!("config reloaded; the organization comes from AWS Organizations");
                continue;
            }
            let org = organization_from(Some(&config));
            let op = Op::Organization {
                organization_id: org.organization_id().map(str::to_owned),
                accounts: org.members().clone(),
                suspended: BTreeSet::new(),
                paths: org.organization_paths().to_vec(),
            };
            match committer.commit(vec![op]).await {
                Ok(()) => tracing::info!("config reloaded"),
                Err(error) => tracing::error!(%error, "the reloaded organization could not be stored"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, tls, committer, organizations_active, auth, directory);
}

/// The open-file limit below which the administrator warns at start: one descriptor per
/// agent stream and client connection, and sled's files.
const RECOMMENDED_OPEN_FILES: u64 = 65_536;

/// Warns when the soft open-file limit cannot hold a large organization's agent streams
/// (read from `/proc/self/limits`; elsewhere nothing is said).
fn warn_if_few_descriptors() {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else { return };
    let Some((soft, hard)) = open_files_limit(&limits) else { return };
    if soft < RECOMMENDED_OPEN_FILES {
        tracing::warn!(
            open_files = soft,
            hard_limit = hard,
            recommended = RECOMMENDED_OPEN_FILES,
            "the open-file limit is low: each agent stream and client connection takes a descriptor; raise it \
             (systemd LimitNOFILE=, ulimit -n) before connecting thousands of agents"
        );
    }
}

/// The soft and hard "Max open files" of a `/proc/<pid>/limits` text (`unlimited` is u64::MAX).
fn open_files_limit(limits: &str) -> Option<(u64, u64)> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let parse = |v: &str| if v == "unlimited" { Some(u64::MAX) } else { v.parse().ok() };
    Some((parse(fields.next()?)?, parse(fields.next()?)?))
}

/// Refuses plaintext on a non-loopback address unless asked for, and says so when asked.
fn check_transport(options: &ServeOptions) -> anyhow::Result<()> {
    if options.tls.is_some() {
        return Ok(());
    }
    let exposed: Vec<String> =
        [options.listen, options.http_listen].iter().filter(|a| !a.ip().is_loopback()).map(|a| a.to_string()).collect();
    if exposed.is_empty() {
        return Ok(());
    }
    if !options.allow_plaintext {
        bail!(
            "refusing to serve plaintext on {}: tokens would cross the network in clear. Give `--tls-cert` and \
             `--tls-key`, or `--allow-plaintext` when a TLS-terminating proxy or mesh sits in front",
            exposed.join(" and ")
        );
    }
    tracing::warn!(
        addresses = %exposed.join(", "),
        "serving PLAINTEXT on a non-loopback address (--allow-plaintext): tokens and inventory cross the network \
         in clear unless a proxy or mesh encrypts them"
    );
    Ok(())
}

pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let config = match &options.config {
        Some(path) => Some(Config::load(path)?),
        None => None,
    };
    if let (Some(path), Some(config)) = (&options.config, &config) {
        crate::permissions::warn_if_config_readable(path, config);
    }
    check_transport(&options)?;
    let tls = match &options.tls {
        Some(files) => Some(Arc::new(Tls::load(files.clone())?)),
        None => None,
    };
    let require_certificate_identity = config.as_ref().is_some_and(|c| c.require_certificate_identity);
    if require_certificate_identity && !tls.as_ref().is_some_and(|t| t.mutual()) {
        bail!(
            "the config sets `require_certificate_identity`, which needs `--tls-cert`, `--tls-key` and `--client-ca`"
        );
    }
    let auth = match (&config, options.insecure_dev) {
        (_, true) => {
            for addr in [options.listen, options.http_listen] {
                if !addr.ip().is_loopback() {
                    bail!("`--insecure-dev` only listens on loopback addresses, not `{addr}`");
                }
            }
            tracing::warn!(
                "INSECURE DEVELOPMENT MODE: no authentication, plaintext; any local process may report or read. \
                 Never use this outside a developer's machine."
            );
            Authenticator::development()
        }
        (Some(config), false) => Authenticator::with_tokens(config.identities()?)
            .requiring_certificate_identity(require_certificate_identity),
        (None, false) => bail!(
            "agents and clients authenticate with tokens from `--config`; give one (or `--insecure-dev` on loopback)"
        ),
    };
    let org = organization_from(config.as_ref());
    let configured_members = config.as_ref().map(|c| c.agent_accounts().clone()).unwrap_or_default();

    crate::permissions::create_data_dir(&options.data_dir)
        .with_context(|| format!("creating `{}`", options.data_dir.display()))?;
    crate::permissions::warn_if_data_dir_open(&options.data_dir);
    let data_dir = options.data_dir.clone();
    let (policy_queue, attach_policy_workers) = crate::analysis::start(
        options.policy_workers,
        estate_policy::AnalysisOptions { budget: options.policy_budget, ..Default::default() },
    );
    let sync_data = options.sync_data;
    let store = tokio::task::spawn_blocking(move || {
        let storage = SledStorage::open(&data_dir, true)?;
        let storage = if sync_data { storage } else { storage.without_device_sync() };
        Store::open_on(Box::new(storage), org, configured_members, Some(policy_queue))
    })
    .await??;
    let store = Arc::new(store);
    let committer = Committer::start(Arc::clone(&store));
    attach_policy_workers(committer.clone());
    let organizations_active = if options.organizations {
        let client = crate::organizations::client(options.aws_endpoint_url.as_deref()).await;
        let ok = crate::organizations::start(committer.clone(), client, options.organizations_interval).await;
        if !ok {
            tracing::warn!("AWS Organizations is not readable now; using the config's organization until it is");
        }
        true
    } else {
        false
    };
    let sinks = config.as_ref().map(|c| c.sinks.as_slice()).unwrap_or_default();
    let deliveries = Arc::new(
        crate::deliver::start(sinks, Arc::clone(&store), committer.clone(), options.aws_endpoint_url.as_deref())
            .await?,
    );
    let directory = Arc::new(AgentDirectory::default());
    if options.config.is_some() || tls.is_some() {
        let (auth, directory) = (auth.clone(), Arc::clone(&directory));
        let reload = reload_on_hangup(
            options.config.clone(),
            tls.clone(),
            committer.clone(),
            organizations_active,
            auth,
            directory,
        );
        tokio::spawn(reload);
    }
    tracing::info!(buckets = store.read().index.len(), data_dir = %options.data_dir.display(), "store opened");

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<AgentServiceServer<AgentServiceImpl>>().await;
    health_reporter.set_serving::<InventoryServiceServer<InventoryServiceImpl>>().await;
    // Reflection in both versions: grpcurl speaks v1, older grpcurl builds, Postman and Evans
    // v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(estate_common::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1alpha = reflection().build_v1alpha().context("building the reflection service (v1alpha)")?;
    let reflection = reflection().build_v1().context("building the reflection service")?;

    let limits = options.limits;
    let agent_service = AgentServiceImpl {
        store: Arc::clone(&store),
        committer: committer.clone(),
        auth: auth.clone(),
        directory: Arc::clone(&directory),
        max_connections: limits.max_connections_per_agent,
        max_buckets_per_account: limits.max_buckets_per_account,
    };
    let inventory_service = InventoryServiceImpl {
        store: Arc::clone(&store),
        auth: auth.clone(),
        directory: Arc::clone(&directory),
        committer: committer.clone(),
        refresh_requested: Default::default(),
        min_refresh_interval_ms: options.min_refresh_interval.as_millis() as i64,
        describe_refresh_after_ms: options.describe_refresh_after.as_millis() as i64,
        last_describe_sweep: Default::default(),
        max_criterion_values: limits.max_criterion_values,
        object_refreshes: Default::default(),
    };

    let findings_service = FindingsServiceImpl {
        store: Arc::clone(&store),
        auth: auth.clone(),
        committer: committer.clone(),
        max_criterion_values: limits.max_criterion_values,
    };
    health_reporter.set_serving::<FindingsServiceServer<FindingsServiceImpl>>().await;
    // Findings not updated for 90 days are archived, and events counted more than seven days
    // ago forgotten; checked hourly and at start-up.
    {
        let committer = committer.clone();
        tokio::spawn(async move {
            loop {
                let before = estate_common::model::now_ms() - crate::state::store::SEEN_EVENTS_HORIZON_MS;
                if let Err(error) = committer.commit(vec![Op::ArchiveFindings, Op::PruneSeenEvents { before }]).await {
                    tracing::error!(%error, "archiving findings failed");
                }
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            }
        });
    }
    warn_if_few_descriptors();
    let grpc_listener =
        TcpListener::bind(options.listen).await.with_context(|| format!("binding `{}`", options.listen))?;
    let http_listener =
        TcpListener::bind(options.http_listen).await.with_context(|| format!("binding `{}`", options.http_listen))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    // SIGINT or SIGTERM: stop accepting, let requests finish, cut streams after STOP_GRACE.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let signal = estate_common::signals::shutdown().await;
        tracing::info!(%signal, "stopping");
        let _ = stop_tx.send(true);
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(grpc = %grpc_addr, http = %http_addr, tls = tls.is_some(), mutual_tls = tls.as_ref().is_some_and(|t| t.mutual()), "serving");
    // One machine-readable line for scripts and tests that start us on port 0.
    println!("ESTATE_ADMIN_READY grpc={grpc_addr} http={http_addr} scheme={scheme}");

    let http_state = http::HttpState {
        store: Arc::clone(&store),
        auth,
        metrics_open: options.metrics_open,
        max_criterion_values: limits.max_criterion_values,
        request_timeout: limits.request_timeout,
        loopback_only: options.insecure_dev.then_some(http_addr),
        deliveries,
        committer: committer.clone(),
    };
    let http_server = http::serve(http_listener, tls.clone(), http::router(http_state), limits.http(), stop.clone());
    let message = limits.max_message_bytes;
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(limits.max_streams_per_connection))
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .timeout(limits.request_timeout)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(AgentServiceServer::new(agent_service).max_decoding_message_size(message))
        .add_service(InventoryServiceServer::new(inventory_service).max_decoding_message_size(message))
        .add_service(FindingsServiceServer::new(findings_service).max_decoding_message_size(message));
    // tonic's own listener has no deadline before the HTTP/2 preface: connections come from
    // `edge.rs`'s accept loop, after the preface, in plaintext too.
    let keepalive = socket2::TcpKeepalive::new().with_time(limits.keepalive_interval);
    let preface_timeout = limits.preface_timeout;
    let grpc_server = async {
        match &tls {
            Some(tls) => {
                let tls = Arc::clone(tls);
                let incoming = edge::accept(grpc_listener, "grpc", limits.opening(), None, move |tcp, peer| {
                    let tls = Arc::clone(&tls);
                    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
                    async move {
                        let stream = tls.handshake(crate::api::tls::Listener::Grpc, tcp, peer).await?;
                        edge::read_preface(stream, preface_timeout).await.inspect_err(|error| {
                            tracing::debug!(%peer, %error, "dropped: no HTTP/2 preface");
                        })
                    }
                });
                let incoming = tokio_stream::wrappers::ReceiverStream::new(incoming)
                    .map(|accepted| Ok::<_, std::io::Error>(accepted.stream));
                router.serve_with_incoming_shutdown(incoming, stopped(stop.clone())).await
            }
            None => {
                let incoming = edge::accept(grpc_listener, "grpc", limits.opening(), None, move |tcp, peer| {
                    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
                    async move {
                        edge::read_preface(tcp, preface_timeout).await.inspect_err(|error| {
                            tracing::debug!(%peer, %error, "dropped: no HTTP/2 preface");
                        })
                    }
                });
                let incoming = tokio_stream::wrappers::ReceiverStream::new(incoming)
                    .map(|accepted| Ok::<_, std::io::Error>(accepted.stream));
                router.serve_with_incoming_shutdown(incoming, stopped(stop.clone())).await
            }
        }
    };
    // Storage failing stops both servers: the process exits non-zero and its supervisor
    // restarts it from what is on disk.
    let storage_failed = committer.failed();
    let cut = async {
        stopped(stop.clone()).await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    let grpc = tokio::select! {
        (grpc, ()) = async { tokio::join!(grpc_server, http_server) } => grpc,
        error = storage_failed => anyhow::bail!("storage failed, stopping: {error}"),
        () = cut => {
            tracing::info!("streams still open {STOP_GRACE:?} after the stop signal are closed");
            Ok(())
        }
    };
    grpc.context("gRPC server")?;
    // Everything acknowledged is already on disk; this makes the rest of sled's state so too.
    let store_to_flush = Arc::clone(&store);
    tokio::task::spawn_blocking(move || store_to_flush.flush()).await??;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             95000                95000                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(open_files_limit(text), Some((1024, 524_288)));
        let unlimited = "Max open files            unlimited            unlimited            files     \n";
        assert_eq!(open_files_limit(unlimited), Some((u64::MAX, u64::MAX)));
        assert_eq!(open_files_limit("nothing here"), None);
        if let Ok(own) = std::fs::read_to_string("/proc/self/limits") {
            assert!(open_files_limit(&own).is_some(), "this machine's own limits parse");
        }
    }
}
