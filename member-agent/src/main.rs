//! `estate-agent`: the member agent.

use clap::{Parser, Subcommand};

use estate_common::logging::LogArgs;
use estate_member_agent::{parse_duration, run, AgentOptions};

#[derive(Debug, Parser)]
#[command(
    name = "estate-agent",
    version,
    about = "Estate's member agent: streams S3 bucket metadata to the administrator"
)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Collect and stream until stopped.
    Run {
        /// The administrator's gRPC URL.
        #[arg(long, env = "ESTATE_ADMIN")]
        admin: String,
        /// This agent's token (from the administrator's config).
        #[arg(long, env = "ESTATE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Trust anchors (PEM) for the administrator's certificate; the system's roots without.
        #[arg(long, env = "ESTATE_CA")]
        ca: Option<std::path::PathBuf>,
        /// Client certificate (PEM) for mutual TLS; read again at every reconnection.
        #[arg(long, env = "ESTATE_CERT", requires = "key")]
        cert: Option<std::path::PathBuf>,
        /// The client certificate's private key (PEM).
        #[arg(long, env = "ESTATE_KEY", requires = "cert")]
        key: Option<std::path::PathBuf>,
        /// Regions to inventory, comma-separated; the first is where global calls go.
        #[arg(long, env = "ESTATE_REGIONS", value_delimiter = ',', required = true)]
        regions: Vec<estate_common::model::Region>,
        /// An S3-compatible endpoint instead of AWS (S3, S3 Control and STS).
        #[arg(long, env = "ESTATE_ENDPOINT_URL")]
        endpoint_url: Option<String>,
        /// Buckets read at once per Region.
        #[arg(long, env = "ESTATE_CONCURRENCY", default_value_t = 16,
              value_parser = clap::value_parser!(u16).range(1..=1_024))]
        concurrency: u16,
        /// Interval of the full refresh cycle (s, m, h or d).
        #[arg(long, env = "ESTATE_REFRESH_INTERVAL", default_value = "24h", value_parser = parse_duration)]
        refresh_interval: std::time::Duration,
        /// Messages kept until acknowledged; collection pauses when full.
        #[arg(long, env = "ESTATE_OUTBOX_CAPACITY", default_value_t = 4096,
              value_parser = clap::value_parser!(u32).range(16..=1_000_000))]
        outbox_capacity: u32,
        /// Attempts per AWS call (throttling and transient errors are retried with backoff).
        #[arg(long, env = "ESTATE_AWS_MAX_ATTEMPTS", default_value_t = 8,
              value_parser = clap::value_parser!(u32).range(1..=20))]
        aws_max_attempts: u32,
        /// HeadObject calls per bucket to read object encryption when the bucket has no
        /// current S3 Inventory report; objects beyond it count as `unknown`.
        #[arg(long, env = "ESTATE_HEAD_OBJECT_BUDGET", default_value_t = 1000)]
        head_object_budget: usize,
        /// The SQS queue that the EventBridge rule for S3's CloudTrail events fills
        /// (deploy/cloudformation/member.yaml creates it).
        #[arg(long, env = "ESTATE_EVENTS_QUEUE_URL")]
        events_queue_url: Option<String>,
        /// Where malformed event messages are set aside; without it, the queue's redrive
        /// policy moves them after repeated receives.
        #[arg(long, env = "ESTATE_EVENTS_DEAD_LETTER_QUEUE_URL")]
        events_dead_letter_queue_url: Option<String>,
        /// Long-polling wait of one receive, in seconds (at most 20).
        #[arg(long, env = "ESTATE_EVENTS_WAIT_SECONDS", default_value_t = 20,
              value_parser = clap::value_parser!(i32).range(0..=20))]
        events_wait_seconds: i32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    estate_common::logging::init(cli.log.log_format);
    match cli.command {
        Command::Run {
            admin,
            token,
            ca,
            cert,
            key,
            regions,
            endpoint_url,
            concurrency,
            refresh_interval,
            outbox_capacity,
            aws_max_attempts,
            head_object_budget,
            events_queue_url,
            events_dead_letter_queue_url,
            events_wait_seconds,
        } => {
            let agent = run(AgentOptions {
                admin_url: admin,
                token,
                tls: estate_common::transport::ClientTls { ca, cert, key },
                regions,
                endpoint_url,
                concurrency: usize::from(concurrency),
                refresh_interval,
                outbox_capacity: outbox_capacity as usize,
                max_attempts: aws_max_attempts,
                head_budget: head_object_budget,
                events: events_queue_url.map(|queue_url| estate_member_agent::events::EventOptions {
                    queue_url,
                    dead_letter_queue_url: events_dead_letter_queue_url,
                    wait_seconds: events_wait_seconds,
                }),
            });
            tokio::select! {
                result = agent => result,
                signal = estate_common::signals::shutdown() => {
                    // Nothing the agent holds is lost by stopping: messages not yet acknowledged
                    // are read again by the next refresh, and events stay in their queue until
                    // deleted. The stream closes when the process exits.
                    tracing::info!(%signal, "stopping");
                    std::process::exit(0);
                }
            }
        }
    }
}
