//! `estatectl`: the command-line client of the administrator. Each subcommand is a module of
//! `cmd` with its arguments and its `run`; `client` holds the connection and pagination,
//! `output` the table, CSV and JSON printers, `criteria` the `--where` syntax.

mod client;
mod cmd;
mod criteria;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use estate_common::transport::ClientTls;

use crate::client::Client;
use crate::output::Output;

#[derive(Debug, Parser)]
#[command(name = "estatectl", version, about = "Query Estate's administrator: inventory, statistics, members")]
struct Cli {
    /// The administrator's gRPC URL.
    #[arg(long, env = "ESTATE_ENDPOINT", default_value = "http://127.0.0.1:50051", global = true)]
    endpoint: String,
    /// A client token from the administrator's config.
    #[arg(long, env = "ESTATE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Trust anchors (PEM) for the administrator's certificate; the system's roots without.
    #[arg(long, env = "ESTATE_CA", global = true)]
    ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, env = "ESTATE_CERT", requires = "key", global = true)]
    cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "ESTATE_KEY", requires = "cert", global = true)]
    key: Option<std::path::PathBuf>,
    /// Output format. JSON uses Amazon Macie's field names and enum strings.
    #[arg(long, short, env = "ESTATE_OUTPUT", value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Organization-wide bucket statistics (GetBucketStatistics).
    Stats(cmd::stats::Args),
    /// List buckets (DescribeBuckets) with Macie's criteria, sort and paging.
    Buckets(cmd::buckets::Args),
    /// One bucket's full metadata.
    Bucket(cmd::bucket::Args),
    /// Member accounts: Regions, connection, freshness; `members forget ACCOUNT` (operators)
    /// drops everything stored for one account.
    Members(cmd::members::Args),
    /// Policy findings (ListFindings + GetFindings), Macie's shape in JSON.
    Findings(cmd::findings::Args),
    /// Findings filters (Macie's suppression rules): list, get, create, update, delete.
    Filters(cmd::filters::Args),
    /// Print new and updated findings as they happen (one JSON object per line with
    /// `--output json`); `--cursor` replays everything after a sequence number first.
    Watch(cmd::watch::Args),
    /// Every bucket that is public, shared (outside or inside the organization), replicated
    /// outside it or accepts unencrypted uploads right now, whether or not it was so at first
    /// sight (GetPosture).
    Posture(cmd::posture::Args),
    /// Offline policy reasoning (no administrator needed).
    Policy(cmd::policy::Args),
    /// Ask agents to refresh now (at most once per five minutes per scope), or recount one
    /// bucket's objects now (`--objects BUCKET`, buckets of at most 30,000 objects).
    Refresh(cmd::refresh::Args),
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let output = cli.output;
    if let Command::Policy(args) = cli.command {
        return cmd::policy::run(output, args);
    }
    let tls = ClientTls { ca: cli.ca, cert: cli.cert, key: cli.key };
    let client = &mut Client::connect(&cli.endpoint, &tls, cli.token.as_deref()).await?;
    match cli.command {
        Command::Policy(_) => unreachable!("answered above, without a connection"),
        Command::Stats(args) => cmd::stats::run(client, output, args).await,
        Command::Buckets(args) => cmd::buckets::run(client, output, args).await,
        Command::Bucket(args) => cmd::bucket::run(client, output, args).await,
        Command::Members(args) => cmd::members::run(client, output, args).await,
        Command::Findings(args) => cmd::findings::run(client, output, args).await,
        Command::Watch(args) => cmd::watch::run(client, output, args).await,
        Command::Filters(args) => cmd::filters::run(client, output, args).await,
        Command::Posture(args) => cmd::posture::run(client, output, args).await,
        Command::Refresh(args) => cmd::refresh::run(client, output, args).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let over_tls = cli.endpoint.starts_with("https://");
    let with_certificate = cli.cert.is_some();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`estatectl buckets | head`) is not an error of ours.
        Err(error)
            if error.chain().any(|e| {
                e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("estatectl: {error:#}");
            // Over TLS 1.3 the server judges the client's certificate after the client has
            // finished its handshake, so a refusal arrives as a closed connection.
            if over_tls && format!("{error:#}").contains("transport error") {
                eprintln!(
                    "estatectl: the administrator closed the TLS connection; {}",
                    if with_certificate {
                        "check that it trusts the CA of `--cert` and that the certificate has not expired"
                    } else {
                        "it may require a client certificate (`--cert` and `--key`)"
                    }
                );
            }
            ExitCode::FAILURE
        }
    }
}
