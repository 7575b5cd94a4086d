//! `estate-agent`: the member agent.

use clap::{Args, Subcommand};

use estate_member_agent::{parse_duration, run, AgentOptions};

#[derive(Debug, Subcommand)]
enum Command {
    /// Collect and stream until stopped.
    Run(RunArgs),
}

/// `estate-agent run`'s flags.
#[derive(Debug, Args)]
struct RunArgs {
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
}

impl RunArgs {
    fn into_options(self) -> AgentOptions {
        AgentOptions {
            admin_url: self.admin,
            token: self.token,
            tls: estate_common::transport::ClientTls { ca: self.ca, cert: self.cert, key: self.key },
            regions: self.regions,
            endpoint_url: self.endpoint_url,
            concurrency: usize::from(self.concurrency),
            refresh_interval: self.refresh_interval,
            outbox_capacity: self.outbox_capacity as usize,
            max_attempts: self.aws_max_attempts,
            head_budget: self.head_object_budget,
            events: self.events_queue_url.map(|queue_url| estate_member_agent::events::EventOptions {
                queue_url,
                dead_letter_queue_url: self.events_dead_letter_queue_url,
                wait_seconds: self.events_wait_seconds,
            }),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = estate_common::logging::start::<Command>(
        "estate-agent",
        env!("CARGO_PKG_VERSION"),
        "Estate's member agent: streams S3 bucket metadata to the administrator",
    );
    match command {
        Command::Run(args) => {
            let agent = run(args.into_options());
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
