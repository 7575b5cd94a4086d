//! `estatectl members`: every member account with its Regions, connection and freshness;
//! `estatectl members forget ACCOUNT`: an operator drops everything stored for one account.

use estate_common::macie::Member;
use estate_common::model::AccountId;
use estate_common::pb;

use crate::client::{paginate, status_error, Client};
use crate::output::{opt, print_json, print_rows, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Drop everything stored for ACCOUNT (its buckets, settings, refreshes, member record,
    /// bucket list and canonical-ID claim), so that its agent's next hello starts from scratch.
    /// Its findings stay. Operators only.
    Forget {
        /// The member account's 12-digit ID.
        account_id: AccountId,
    },
}

pub async fn run(client: &mut Client, output: Output, args: Args) -> anyhow::Result<()> {
    match args.action {
        None => list(client, output).await,
        Some(Action::Forget { account_id }) => {
            let request = client.request(pb::ForgetMemberRequest { account_id: account_id.to_string() });
            let response = client.inventory.forget_member(request).await.map_err(status_error)?.into_inner();
            match output {
                Output::Json => print_json(&serde_json::json!({
                    "accountId": account_id.as_str(),
                    "bucketsRemoved": response.buckets_removed,
                })),
                _ => {
                    println!(
                        "forgot account {account_id}: {} buckets removed; its agent's next hello starts from scratch",
                        response.buckets_removed
                    );
                    Ok(())
                }
            }
        }
    }
}

async fn list(client: &mut Client, output: Output) -> anyhow::Result<()> {
    let (members, _) = paginate(String::new(), true, |next_token| {
        let request = client.request(pb::ListMembersRequest { max_results: 1000, next_token });
        let mut inventory = client.inventory.clone();
        async move {
            let page = inventory.list_members(request).await.map_err(status_error)?.into_inner();
            Ok((page.members.into_iter().map(Member::from).collect(), page.next_token))
        }
    })
    .await?;
    match output {
        Output::Json => print_json(&serde_json::json!({ "members": members })),
        output => print_rows(
            output,
            &[
                "accountId",
                "status",
                "connection",
                "reportedBy",
                "lastContact",
                "lastUpdated",
                "buckets",
                "regions",
                "problem",
            ],
            &rows(&members),
        ),
    }
}

/// An enum as its JSON string (Macie's spelling).
fn json_name<T: serde::Serialize>(value: T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn rows(members: &[Member]) -> Vec<Vec<String>> {
    members
        .iter()
        .map(|m| {
            let regions = m
                .regions
                .iter()
                .map(|r| {
                    let updated = opt(r.last_updated.map(|t| t.to_iso8601()));
                    if r.refresh_total > 0 {
                        format!("{} ({}; refreshing {}/{})", r.region, updated, r.refresh_done, r.refresh_total)
                    } else {
                        format!("{} ({})", r.region, updated)
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                m.account_id.clone(),
                json_name(m.relationship_status),
                json_name(m.connection_state),
                m.reported_by.join(", "),
                opt(m.last_contact.map(|t| t.to_iso8601())),
                opt(m.last_updated.map(|t| t.to_iso8601())),
                m.bucket_count.to_string(),
                regions,
                m.problem.clone().unwrap_or_default(),
            ]
        })
        .collect()
}
