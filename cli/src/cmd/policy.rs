//! `estatectl policy analyze`: offline policy reasoning, no administrator needed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use estate_common::model::AccountId;

use crate::output::{print_flattened, print_json, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Decide whether a bucket policy makes the bucket public, shares it (inside or outside
    /// the organization, with CloudFront) or lets unencrypted uploads in; with a witness
    /// request for every yes. Exit status 0 whenever the analysis ran.
    Analyze {
        /// The policy document; `-` for standard input.
        file: String,
        /// The account that owns the bucket.
        #[arg(long)]
        owner: AccountId,
        /// The organization's ID (`o-...`).
        #[arg(long)]
        organization_id: Option<String>,
        /// The organization's accounts, comma-separated (the owner is always inside).
        #[arg(long, value_delimiter = ',')]
        organization_accounts: Vec<AccountId>,
        /// The bucket the policy is attached to (its name appears in resource ARNs).
        #[arg(long, default_value = "example-bucket")]
        bucket: String,
        /// Time budget of the whole analysis (every question and the work before the solver),
        /// in milliseconds; what is left undecided when it runs out is UNKNOWN.
        #[arg(long, alias = "timeout-ms", default_value_t = estate_policy::DEFAULT_BUDGET_MS,
              value_parser = clap::value_parser!(u64).range(1..=600_000))]
        budget_ms: u64,
    },
}

pub fn run(output: Output, args: Args) -> anyhow::Result<()> {
    let Command::Analyze { file, owner, organization_id, organization_accounts, bucket, budget_ms } = args.command;
    let text = if file == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading the policy from standard input")?;
        text
    } else {
        std::fs::read_to_string(&file).with_context(|| format!("reading `{file}`"))?
    };
    let mut members: BTreeSet<AccountId> = organization_accounts.into_iter().collect();
    members.insert(owner.clone());
    let context = estate_policy::OrgContext {
        owner_account: owner,
        organization_id,
        member_accounts: Arc::new(members),
        organization_paths: Vec::new(),
    };
    let options = estate_policy::AnalysisOptions { budget: Duration::from_millis(budget_ms), ..Default::default() };
    let analysis =
        estate_policy::analyze(&text, &bucket, &context, &options).context("the policy cannot be analysed")?;
    match output {
        Output::Json => print_json(&analysis),
        Output::Csv => bail!("`policy analyze` prints `table` or `json`"),
        Output::Table => print_flattened(&serde_json::to_value(&analysis)?),
    }
}
