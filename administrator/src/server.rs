//! `estate-admin serve`: opens the store, starts the group committer and serves gRPC (agents,
//! clients, health, reflection) and HTTP (dashboard, metrics) until SIGINT or SIGTERM.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use estate_common::pb::{agent_service_server::AgentServiceServer, inventory_service_server::InventoryServiceServer};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::http;
use crate::ingest::Committer;
use crate::service::agent::{AgentDirectory, AgentServiceImpl};
use crate::service::inventory::InventoryServiceImpl;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub insecure_dev: bool,
    /// Requested refreshes of one scope are at most this often (Macie: five minutes).
    pub min_refresh_interval: std::time::Duration,
}

/// Resolves when the process is asked to stop.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let config = match &options.config {
        Some(path) => Some(Config::load(path)?),
        None => None,
    };
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
        (Some(config), false) => Authenticator::with_tokens(config.identities()?),
        (None, false) => bail!(
            "agents and clients authenticate with tokens from `--config`; give one (or `--insecure-dev` on loopback)"
        ),
    };
    let org_accounts = config.as_ref().map(Config::organization_accounts).unwrap_or_default();
    let configured_members: BTreeSet<String> =
        config.as_ref().map(|c| c.agents.iter().map(|a| a.account_id.clone()).collect()).unwrap_or_default();

    std::fs::create_dir_all(&options.data_dir).with_context(|| format!("creating `{}`", options.data_dir.display()))?;
    let data_dir = options.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&data_dir, org_accounts)).await??;
    let store = Arc::new(store);
    tracing::info!(buckets = store.read().index.len(), data_dir = %options.data_dir.display(), "store opened");
    let committer = Committer::start(Arc::clone(&store));
    let directory = Arc::new(AgentDirectory::default());

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<AgentServiceServer<AgentServiceImpl>>().await;
    health_reporter.set_serving::<InventoryServiceServer<InventoryServiceImpl>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(estate_common::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;

    let agent_service = AgentServiceImpl {
        store: Arc::clone(&store),
        committer: committer.clone(),
        auth: auth.clone(),
        directory: Arc::clone(&directory),
    };
    let inventory_service = InventoryServiceImpl {
        store: Arc::clone(&store),
        auth: auth.clone(),
        configured_members: Arc::new(configured_members.clone()),
        directory: Arc::clone(&directory),
        refresh_requested: Default::default(),
        min_refresh_interval_ms: options.min_refresh_interval.as_millis() as i64,
    };

    let grpc_listener =
        TcpListener::bind(options.listen).await.with_context(|| format!("binding `{}`", options.listen))?;
    let http_listener =
        TcpListener::bind(options.http_listen).await.with_context(|| format!("binding `{}`", options.http_listen))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    tracing::info!(grpc = %grpc_addr, http = %http_addr, "serving");
    // One machine-readable line for scripts and tests that start us on port 0.
    println!("ESTATE_ADMIN_READY grpc={grpc_addr} http={http_addr}");

    let http_state =
        http::HttpState { store: Arc::clone(&store), auth, configured_members: Arc::new(configured_members) };
    let http_server = axum::serve(http_listener, http::router(http_state)).with_graceful_shutdown(shutdown_signal());
    let grpc_server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(AgentServiceServer::new(agent_service))
        .add_service(InventoryServiceServer::new(inventory_service))
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY, multi-segment responses wait for delayed ACKs (~40 ms).
            TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
            shutdown_signal(),
        );
    let (grpc, http) = tokio::join!(grpc_server, http_server);
    grpc.context("gRPC server")?;
    http.context("HTTP server")?;
    tracing::info!("stopped");
    Ok(())
}
