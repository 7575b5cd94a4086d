//! `estatectl watch`: new and updated findings as they happen (WatchFindings).

use std::io::Write;

use estate_common::findings::Finding;
use estate_common::pb;

use crate::client::{status_error, Client};
use crate::cmd::findings;
use crate::output::{csv_field, print_rows, table_cell, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 0)]
    cursor: u64,
    /// Stop after this many findings.
    #[arg(long)]
    limit: Option<usize>,
}

pub async fn run(client: &mut Client, output: Output, args: Args) -> anyhow::Result<()> {
    let request = client.request(pb::WatchFindingsRequest { cursor: args.cursor });
    let mut stream = client.findings.watch_findings(request).await.map_err(status_error)?.into_inner();
    if output != Output::Json {
        print_rows(output, findings::HEADER, &[])?;
    }
    let mut seen = 0;
    while let Some(message) = stream.message().await.map_err(status_error)? {
        let Some(finding) = message.finding else { continue };
        let finding = Finding::try_from(finding).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut out = std::io::stdout().lock();
        match output {
            Output::Json => writeln!(out, "{}", finding.to_macie_json())?,
            Output::Csv => {
                writeln!(out, "{}", findings::row(&finding).iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","))?
            }
            Output::Table => writeln!(
                out,
                "{}",
                findings::row(&finding).iter().map(|f| table_cell(f)).collect::<Vec<_>>().join("  ")
            )?,
        }
        out.flush()?;
        seen += 1;
        if args.limit.is_some_and(|l| seen >= l) {
            break;
        }
    }
    Ok(())
}
