//! `estate-admin`: the administrator service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use estate_administrator::api::tls::TlsFiles;
use estate_administrator::server::{defaults, serve, Limits, ServeOptions};

// Parsed once at start-up: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC (agents and clients) and HTTP (dashboard, metrics).
    Serve(ServeArgs),
    /// Check every record of a (stopped) administrator's database and the statistics against
    /// a recomputation; exit status 1 when something is wrong.
    Verify {
        /// Directory of the embedded database.
        #[arg(long, env = "ESTATE_DATA_DIR", default_value = "./estate-data")]
        data_dir: PathBuf,
        /// Move unreadable records into the `quarantine` tree (each logged), so that the
        /// administrator starts again.
        #[arg(long)]
        repair: bool,
    },
}

/// `estate-admin serve`'s flags.
#[derive(Debug, Args)]
struct ServeArgs {
    /// gRPC listen address.
    #[arg(long, env = "ESTATE_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// HTTP listen address (dashboard, /metrics, /healthz).
    #[arg(long, env = "ESTATE_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,
    /// Directory of the embedded database.
    #[arg(long, env = "ESTATE_DATA_DIR", default_value = "./estate-data")]
    data_dir: PathBuf,
    /// Configuration file (TOML): organization and tokens.
    #[arg(long, env = "ESTATE_CONFIG")]
    config: Option<PathBuf>,
    /// Plaintext, unauthenticated mode for a developer's machine; loopback only.
    #[arg(long, env = "ESTATE_INSECURE_DEV")]
    insecure_dev: bool,
    /// Requested refreshes of one scope are at most this often (seconds).
    #[arg(long, env = "ESTATE_MIN_REFRESH_INTERVAL", default_value_t = defaults::MIN_REFRESH_INTERVAL_SECS,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    min_refresh_interval: u64,
    /// DescribeBuckets asks the agents for a refresh of the Regions whose last refresh,
    /// completed or asked, is older than this (seconds), as Macie's refreshes metadata none
    /// arrived for in five minutes; 0: never.
    #[arg(long, env = "ESTATE_DESCRIBE_REFRESH_AFTER", default_value_t = defaults::DESCRIBE_REFRESH_AFTER_SECS,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    describe_refresh_after: u64,
    /// Read the organization (ID, member accounts) from AWS Organizations with the default
    /// AWS credentials; the config's organization stays in force while that fails.
    #[arg(long, env = "ESTATE_ORGANIZATIONS")]
    organizations: bool,
    /// How often to read AWS Organizations again (seconds).
    #[arg(long, env = "ESTATE_ORGANIZATIONS_INTERVAL", default_value_t = defaults::ORGANIZATIONS_INTERVAL_SECS,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    organizations_interval: u64,
    /// An AWS-compatible endpoint for Organizations, instead of AWS.
    #[arg(long, env = "ESTATE_AWS_ENDPOINT_URL")]
    aws_endpoint_url: Option<String>,
    /// Threads that analyse bucket policies; 0 (the default): one per core.
    #[arg(long, env = "ESTATE_POLICY_WORKERS", default_value_t = 0)]
    policy_workers: usize,
    /// Time budget of one policy's whole analysis, every question included (milliseconds);
    /// what is undecided when it runs out is UNKNOWN, with the reason.
    #[arg(long, alias = "policy-timeout-ms", env = "ESTATE_POLICY_BUDGET_MS",
          default_value_t = defaults::POLICY_BUDGET_MS, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    policy_budget_ms: u64,
    /// Serve gRPC and HTTPS with this certificate chain (PEM, leaf first). SIGHUP reloads it.
    #[arg(long, env = "ESTATE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "ESTATE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require gRPC callers to present a client certificate signed by this CA (PEM):
    /// mutual TLS. HTTPS then checks a certificate when one is offered.
    #[arg(long, env = "ESTATE_CLIENT_CA", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Serve plaintext on a non-loopback address (only behind a TLS-terminating proxy or
    /// mesh); without TLS, that is refused otherwise.
    #[arg(long, env = "ESTATE_ALLOW_PLAINTEXT")]
    allow_plaintext: bool,
    /// Serve `/metrics` without a token, for scrapers that cannot send one.
    #[arg(long, env = "ESTATE_METRICS_OPEN")]
    metrics_open: bool,
    /// HTTP/2 streams one connection may have open at once.
    #[arg(long, env = "ESTATE_MAX_STREAMS_PER_CONNECTION", default_value_t = defaults::MAX_STREAMS_PER_CONNECTION,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_streams_per_connection: u32,
    /// Report streams one agent account may have open at once; more are refused.
    #[arg(long, env = "ESTATE_MAX_CONNECTIONS_PER_AGENT", default_value_t = defaults::MAX_CONNECTIONS_PER_AGENT,
          value_parser = clap::value_parser!(u16).range(1..=1_000))]
    max_connections_per_agent: u16,
    /// Buckets one member account may hold in the inventory; snapshots of new buckets past it
    /// are rejected (a quota against an agent that invents buckets).
    #[arg(long, env = "ESTATE_MAX_BUCKETS_PER_ACCOUNT", default_value_t = defaults::MAX_BUCKETS_PER_ACCOUNT,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    max_buckets_per_account: u64,
    /// Seconds without traffic before the administrator pings a peer (HTTP/2 and TCP
    /// keepalive).
    #[arg(long, env = "ESTATE_KEEPALIVE_INTERVAL", default_value_t = defaults::KEEPALIVE_INTERVAL_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    keepalive_interval: u64,
    /// Seconds a ping may go unanswered before the connection is closed: a vanished agent
    /// is DISCONNECTED within the interval plus this.
    #[arg(long, env = "ESTATE_KEEPALIVE_TIMEOUT", default_value_t = defaults::KEEPALIVE_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    keepalive_timeout: u64,
    /// The largest message accepted from a peer, in bytes.
    #[arg(long, env = "ESTATE_MAX_MESSAGE_BYTES", default_value_t = defaults::MAX_MESSAGE_BYTES,
          value_parser = clap::value_parser!(u64).range(64 * 1024..=64 * 1024 * 1024))]
    max_message_bytes: u64,
    /// The most values one criterion (`eq`, `neq`) may list.
    #[arg(long, env = "ESTATE_MAX_CRITERION_VALUES", default_value_t = defaults::MAX_CRITERION_VALUES,
          value_parser = clap::value_parser!(u16).range(1..=10_000))]
    max_criterion_values: u16,
    /// Seconds a client request may take (a gRPC stream: until its first answer; over HTTP,
    /// every request but the live findings stream).
    #[arg(long, env = "ESTATE_REQUEST_TIMEOUT", default_value_t = defaults::REQUEST_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    request_timeout: u64,
    /// Milliseconds a peer may stay silent after connecting before it is dropped (both
    /// listeners).
    #[arg(long, env = "ESTATE_FIRST_BYTE_TIMEOUT_MS", default_value_t = defaults::FIRST_BYTE_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    first_byte_timeout_ms: u64,
    /// Connections in their opening stage (first byte, TLS handshake, HTTP/2 preface) at once,
    /// per listener; more are closed at once.
    #[arg(long, env = "ESTATE_MAX_PENDING_HANDSHAKES", default_value_t = defaults::MAX_PENDING_HANDSHAKES,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_pending_handshakes: u32,
    /// The same, from one address.
    #[arg(long, env = "ESTATE_MAX_PENDING_HANDSHAKES_PER_IP", default_value_t = defaults::MAX_PENDING_HANDSHAKES_PER_IP,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_pending_handshakes_per_ip: u32,
    /// Seconds a gRPC peer has to send the HTTP/2 preface after its TLS handshake (in
    /// plaintext: after its first byte).
    #[arg(long, env = "ESTATE_PREFACE_TIMEOUT", default_value_t = defaults::PREFACE_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    preface_timeout: u64,
    /// Seconds an HTTP request's headers may take to arrive (also the keep-alive timeout
    /// between requests).
    #[arg(long, env = "ESTATE_HTTP_HEADER_TIMEOUT", default_value_t = defaults::HTTP_HEADER_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=60))]
    http_header_timeout: u64,
    /// Seconds an HTTP connection may move no byte before it is closed.
    #[arg(long, env = "ESTATE_HTTP_IDLE_TIMEOUT", default_value_t = defaults::HTTP_IDLE_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    http_idle_timeout: u64,
    /// HTTP connections open at once; more are closed at once.
    #[arg(long, env = "ESTATE_MAX_HTTP_CONNECTIONS", default_value_t = defaults::MAX_HTTP_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_http_connections: u32,
    /// HTTP connections open at once from one address.
    #[arg(long, env = "ESTATE_MAX_HTTP_CONNECTIONS_PER_IP", default_value_t = defaults::MAX_HTTP_CONNECTIONS_PER_IP,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_http_connections_per_ip: u32,
}

impl ServeArgs {
    fn into_options(self) -> ServeOptions {
        ServeOptions {
            listen: self.listen,
            http_listen: self.http_listen,
            data_dir: self.data_dir,
            config: self.config,
            insecure_dev: self.insecure_dev,
            min_refresh_interval: Duration::from_secs(self.min_refresh_interval),
            describe_refresh_after: Duration::from_secs(self.describe_refresh_after),
            organizations: self.organizations,
            organizations_interval: Duration::from_secs(self.organizations_interval),
            aws_endpoint_url: self.aws_endpoint_url,
            policy_workers: match self.policy_workers {
                0 => std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
                n => n,
            },
            policy_budget: Duration::from_millis(self.policy_budget_ms),
            tls: match (self.tls_cert, self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key, client_ca: self.client_ca }),
                _ => None,
            },
            allow_plaintext: self.allow_plaintext,
            metrics_open: self.metrics_open,
            limits: Limits {
                max_streams_per_connection: self.max_streams_per_connection,
                max_connections_per_agent: usize::from(self.max_connections_per_agent),
                keepalive_interval: Duration::from_secs(self.keepalive_interval),
                keepalive_timeout: Duration::from_secs(self.keepalive_timeout),
                max_message_bytes: self.max_message_bytes as usize,
                max_criterion_values: usize::from(self.max_criterion_values),
                request_timeout: Duration::from_secs(self.request_timeout),
                max_buckets_per_account: self.max_buckets_per_account,
                first_byte_timeout: Duration::from_millis(self.first_byte_timeout_ms),
                max_pending_handshakes: self.max_pending_handshakes as usize,
                max_pending_handshakes_per_ip: self.max_pending_handshakes_per_ip as usize,
                preface_timeout: Duration::from_secs(self.preface_timeout),
                http_header_timeout: Duration::from_secs(self.http_header_timeout),
                http_idle_timeout: Duration::from_secs(self.http_idle_timeout),
                max_http_connections: self.max_http_connections as usize,
                max_http_connections_per_ip: self.max_http_connections_per_ip as usize,
            },
            sync_data: true,
        }
    }
}

/// `estate-admin verify`.
fn verify(data_dir: &std::path::Path, repair: bool) -> anyhow::Result<bool> {
    use estate_administrator::storage::{sled_engine::SledStorage, verify_records, Storage};
    let storage = SledStorage::open(data_dir, repair)?;
    println!("schema version {}", storage.schema_version()?);
    let reports = verify_records(&storage, repair, estate_administrator::state::records::check_record)?;
    drop(storage);
    let mut healthy = true;
    for report in &reports {
        println!(
            "{:<16} {:>10} records  {:>6} unreadable{}",
            report.name,
            report.records,
            report.unreadable,
            if report.unreadable > 0 && repair { " (quarantined)" } else { "" }
        );
        healthy &= report.unreadable == 0 || repair;
    }
    if !healthy {
        println!("unreadable records: run again with --repair to set them aside");
        return Ok(false);
    }
    let store = estate_administrator::state::store::Store::open_to_verify(data_dir, Default::default())?;
    let problems = store.verify_statistics();
    for problem in &problems {
        println!("statistics: {problem}");
    }
    let buckets = store.read().index.len();
    println!(
        "statistics: {} for {buckets} buckets",
        if problems.is_empty() { "equal to a recomputation" } else { "WRONG" }
    );
    Ok(problems.is_empty())
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let command = estate_common::logging::start::<Command>(
        "estate-admin",
        env!("CARGO_PKG_VERSION"),
        "Estate's administrator: merges member inventories and judges every bucket",
    );
    match command {
        Command::Verify { data_dir, repair } => {
            let healthy = verify(&data_dir, repair)?;
            Ok(if healthy { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
        }
        Command::Serve(args) => {
            serve(args.into_options()).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn the_flags_defaults_are_the_servers_defaults_and_each_edge_limit_is_a_flag() {
        let defaults = Cli::try_parse_from(["estate-admin"]).unwrap().serve.into_options();
        assert_eq!(defaults.limits, Limits::default());
        let limits = Cli::try_parse_from([
            "estate-admin",
            "--first-byte-timeout-ms=500",
            "--max-pending-handshakes=7",
            "--max-pending-handshakes-per-ip=3",
            "--preface-timeout=4",
            "--http-header-timeout=5",
            "--http-idle-timeout=6",
            "--max-http-connections=8",
            "--max-http-connections-per-ip=2",
            "--max-buckets-per-account=9",
        ])
        .unwrap()
        .serve
        .into_options()
        .limits;
        assert_eq!(limits.first_byte_timeout, Duration::from_millis(500));
        assert_eq!((limits.max_pending_handshakes, limits.max_pending_handshakes_per_ip), (7, 3));
        assert_eq!(limits.preface_timeout, Duration::from_secs(4));
        assert_eq!(limits.http_header_timeout, Duration::from_secs(5));
        assert_eq!(limits.http_idle_timeout, Duration::from_secs(6));
        assert_eq!((limits.max_http_connections, limits.max_http_connections_per_ip), (8, 2));
        assert_eq!(limits.max_buckets_per_account, 9);
        for nonsense in [
            "--http-header-timeout=0",
            "--http-header-timeout=61",
            "--max-http-connections-per-ip=0",
            "--max-buckets-per-account=0",
        ] {
            assert!(Cli::try_parse_from(["estate-admin", nonsense]).is_err(), "{nonsense} is refused");
        }
    }
}
