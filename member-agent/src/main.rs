//! `estate-agent`: the member agent.

use clap::{Args, Subcommand};

use estate_member_agent::hub::{self, AccountSource, HubOptions};
use estate_member_agent::{parse_duration, run, AgentOptions};

#[derive(Debug, Subcommand)]
enum Command {
    /// Collect one account's buckets (the account of the AWS credentials) and stream them
    /// until stopped.
    Run(RunArgs),
    /// Serve many accounts from one process: assume a role in each account of a list or of
    /// the organization, and stream each account's buckets until stopped.
    Hub(HubArgs),
}

/// The flags an agent and a hub share.
#[derive(Debug, Args)]
struct CommonArgs {
    /// The administrator's gRPC URL.
    #[arg(long, env = "ESTATE_ADMIN")]
    admin: String,
    /// This agent's or hub's token (from the administrator's config).
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
    /// An S3-compatible endpoint instead of AWS (S3, S3 Control, STS, SQS, Organizations).
    #[arg(long, env = "ESTATE_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// Interval of the full refresh cycle (s, m, h or d).
    #[arg(long, env = "ESTATE_REFRESH_INTERVAL", default_value = "24h", value_parser = parse_duration)]
    refresh_interval: std::time::Duration,
    /// Messages kept until acknowledged, per account; collection pauses when full.
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
    /// The SQS queue that the EventBridge rule for S3's CloudTrail events fills: an agent's
    /// own account's (deploy/cloudformation/member.yaml), or a hub's central queue, which holds
    /// every account's events (deploy/cloudformation/hub.yaml), read as the hub.
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

impl CommonArgs {
    fn tls(&self) -> estate_common::transport::ClientTls {
        estate_common::transport::ClientTls { ca: self.ca.clone(), cert: self.cert.clone(), key: self.key.clone() }
    }

    fn events(&self) -> Option<estate_member_agent::events::EventOptions> {
        self.events_queue_url.clone().map(|queue_url| estate_member_agent::events::EventOptions {
            queue_url,
            dead_letter_queue_url: self.events_dead_letter_queue_url.clone(),
            wait_seconds: self.events_wait_seconds,
        })
    }
}

/// `estate-agent run`'s flags.
#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Buckets read at once per Region.
    #[arg(long, env = "ESTATE_CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=1_024))]
    concurrency: u16,
}

impl RunArgs {
    fn into_options(self) -> AgentOptions {
        AgentOptions {
            tls: self.common.tls(),
            events: self.common.events(),
            admin_url: self.common.admin,
            token: self.common.token,
            regions: self.common.regions,
            endpoint_url: self.common.endpoint_url,
            concurrency: usize::from(self.concurrency),
            refresh_interval: self.common.refresh_interval,
            outbox_capacity: self.common.outbox_capacity as usize,
            max_attempts: self.common.aws_max_attempts,
            head_budget: self.common.head_object_budget,
        }
    }
}

/// `estate-agent hub`'s flags.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["accounts", "organizations", "organizations_role_arn"])))]
struct HubArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The accounts to serve, comma-separated.
    #[arg(long, env = "ESTATE_HUB_ACCOUNTS", value_delimiter = ',')]
    accounts: Vec<estate_common::model::AccountId>,
    /// Serve the organization's active accounts, read from AWS Organizations with the hub's
    /// own credentials (in the management or a delegated administrator account).
    #[arg(long, env = "ESTATE_HUB_ORGANIZATIONS")]
    organizations: bool,
    /// Serve the organization's active accounts, read from AWS Organizations as this role
    /// (deploy/cloudformation/organizations-reader.yaml's `EstateOrganizationsReader`).
    #[arg(long, env = "ESTATE_ORGANIZATIONS_ROLE_ARN")]
    organizations_role_arn: Option<String>,
    /// How often the organization's accounts are read again (s, m, h or d).
    #[arg(long, env = "ESTATE_ORGANIZATIONS_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    organizations_interval: std::time::Duration,
    /// The role assumed in each account.
    #[arg(long, env = "ESTATE_ROLE_NAME", default_value = "EstateMemberAgent")]
    role_name: String,
    /// The external ID the role's trust policy asks for.
    #[arg(long, env = "ESTATE_EXTERNAL_ID", hide_env_values = true)]
    external_id: Option<String>,
    /// Buckets read at once over every account.
    #[arg(long, env = "ESTATE_CONCURRENCY", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..=4_096))]
    concurrency: u16,
    /// Buckets read at once in one account's Region.
    #[arg(long, env = "ESTATE_ACCOUNT_CONCURRENCY", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=1_024))]
    account_concurrency: u16,
    /// Account streams one HTTP/2 connection carries; keep it below the administrator's
    /// `--max-streams-per-connection` (64 by default).
    #[arg(long, env = "ESTATE_STREAMS_PER_CONNECTION", default_value_t = 50,
          value_parser = clap::value_parser!(u16).range(1..=1_000))]
    streams_per_connection: u16,
}

impl HubArgs {
    fn into_options(self) -> anyhow::Result<HubOptions> {
        let accounts = match (self.accounts.is_empty(), self.organizations || self.organizations_role_arn.is_some()) {
            (false, false) => AccountSource::Listed(self.accounts),
            (true, true) => AccountSource::Organizations {
                role_arn: self.organizations_role_arn,
                interval: self.organizations_interval,
            },
            _ => anyhow::bail!("give `--accounts` or `--organizations`/`--organizations-role-arn`, not both"),
        };
        Ok(HubOptions {
            tls: self.common.tls(),
            events: self.common.events(),
            admin_url: self.common.admin,
            token: self.common.token,
            regions: self.common.regions,
            endpoint_url: self.common.endpoint_url,
            accounts,
            role_name: self.role_name,
            external_id: self.external_id,
            concurrency: usize::from(self.concurrency),
            account_concurrency: usize::from(self.account_concurrency),
            refresh_interval: self.common.refresh_interval,
            outbox_capacity: self.common.outbox_capacity as usize,
            max_attempts: self.common.aws_max_attempts,
            head_budget: self.common.head_object_budget,
            streams_per_connection: usize::from(self.streams_per_connection),
        })
    }
}

/// Runs `work` until it fails or a signal stops the process.
async fn until_stopped(work: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::select! {
        result = work => result,
        signal = estate_common::signals::shutdown() => {
            // Nothing the agent holds is lost by stopping: messages not yet acknowledged
            // belong to a refresh that did not complete, which is read again at start (a
            // resuming hub sees it under way), or to an event, which stays in its queue until
            // what it reported is acknowledged. The streams close when the process exits.
            tracing::info!(%signal, "stopping");
            std::process::exit(0);
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
        Command::Run(args) => until_stopped(run(args.into_options())).await,
        Command::Hub(args) => until_stopped(hub::run(args.into_options()?)).await,
    }
}
