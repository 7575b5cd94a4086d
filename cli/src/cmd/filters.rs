//! `estatectl filters`: Macie's findings filters (suppression rules): list, get, create,
//! update, delete. Creating, updating and deleting need the operator role.

use std::collections::HashMap;

use estate_common::pb;

use crate::client::{paginate, status_error, Client};
use crate::criteria::{finding_criteria_json, parse_finding_criteria_json, parse_finding_where};
use crate::output::{print_json, print_rows, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Every filter, in the order they apply.
    List,
    /// One filter, in Macie's shape.
    Get {
        id: String,
    },
    /// A new filter; ARCHIVE archives the findings it matches, now and as they come.
    Create {
        #[arg(long)]
        name: String,
        /// `archive` or `noop`.
        #[arg(long)]
        action: String,
        #[command(flatten)]
        criteria: CriteriaArgs,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, default_value_t = 0)]
        position: i32,
        /// A retry with the same token returns the filter the first call created.
        #[arg(long, default_value = "")]
        client_token: String,
    },
    /// Change a filter; what is not given stays.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[command(flatten)]
        criteria: CriteriaArgs,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        position: Option<i32>,
    },
    Delete {
        id: String,
    },
}

#[derive(Debug, clap::Args)]
struct CriteriaArgs {
    /// A criterion, as `estatectl findings --where` takes it.
    #[arg(long = "where", value_name = "CRITERION")]
    criteria: Vec<String>,
    /// Macie's `findingCriteria` as JSON, instead of `--where`.
    #[arg(long, conflicts_with = "criteria")]
    criteria_json: Option<String>,
}

impl CriteriaArgs {
    fn parse(&self) -> anyhow::Result<Option<pb::FindingCriteria>> {
        let criterion = match (&self.criteria_json, self.criteria.is_empty()) {
            (Some(text), _) => parse_finding_criteria_json(text)?,
            (None, false) => parse_finding_where(&self.criteria)?,
            (None, true) => return Ok(None),
        };
        Ok(Some(pb::FindingCriteria { criterion }))
    }
}

fn action(text: &str) -> anyhow::Result<i32> {
    Ok(match text.to_ascii_uppercase().as_str() {
        "ARCHIVE" => pb::FindingsFilterAction::Archive,
        "NOOP" => pb::FindingsFilterAction::Noop,
        _ => anyhow::bail!("`--action` is `archive` or `noop`, not `{text}`"),
    }
    .into())
}

fn action_name(action: i32) -> &'static str {
    match pb::FindingsFilterAction::try_from(action) {
        Ok(pb::FindingsFilterAction::Archive) => "ARCHIVE",
        Ok(pb::FindingsFilterAction::Noop) => "NOOP",
        _ => "UNKNOWN",
    }
}

fn filter_json(f: &pb::FindingsFilter) -> serde_json::Value {
    let criteria: HashMap<String, pb::FindingCriterion> =
        f.finding_criteria.clone().map(|c| c.criterion).unwrap_or_default();
    serde_json::json!({
        "action": action_name(f.action),
        "arn": f.arn,
        "description": f.description,
        "findingCriteria": finding_criteria_json(&criteria),
        "id": f.id,
        "name": f.name,
        "position": f.position,
        "tags": f.tags,
    })
}

pub async fn run(client: &mut Client, output: Output, args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::List => {
            let (items, _) = paginate(String::new(), true, |next_token| {
                let request = client.request(pb::ListFindingsFiltersRequest { max_results: 25, next_token });
                let mut findings = client.findings.clone();
                async move {
                    let page = findings.list_findings_filters(request).await.map_err(status_error)?.into_inner();
                    Ok((page.findings_filter_list_items, page.next_token))
                }
            })
            .await?;
            match output {
                Output::Json => print_json(&serde_json::json!({
                    "findingsFilterListItems": items.iter().map(|f| serde_json::json!({
                        "action": action_name(f.action), "arn": f.arn, "id": f.id, "name": f.name, "tags": f.tags,
                    })).collect::<Vec<_>>(),
                })),
                output => print_rows(
                    output,
                    &["id", "name", "action"],
                    &items
                        .iter()
                        .map(|f| vec![f.id.clone(), f.name.clone(), action_name(f.action).to_owned()])
                        .collect::<Vec<_>>(),
                ),
            }
        }
        Command::Get { id } => {
            let request = client.request(pb::GetFindingsFilterRequest { id });
            let filter = client.findings.get_findings_filter(request).await.map_err(status_error)?.into_inner();
            print_json(&filter_json(&filter))
        }
        Command::Create { name, action: act, criteria, description, position, client_token } => {
            let request = client.request(pb::CreateFindingsFilterRequest {
                action: action(&act)?,
                client_token,
                description,
                finding_criteria: criteria.parse()?,
                name,
                position,
                tags: HashMap::new(),
            });
            let out = client.findings.create_findings_filter(request).await.map_err(status_error)?.into_inner();
            print_json(&serde_json::json!({"id": out.id, "arn": out.arn}))
        }
        Command::Update { id, name, action: act, criteria, description, position } => {
            let request = client.request(pb::UpdateFindingsFilterRequest {
                id,
                action: act.as_deref().map(action).transpose()?.unwrap_or_default(),
                description,
                finding_criteria: criteria.parse()?,
                name,
                position,
                client_token: String::new(),
            });
            let out = client.findings.update_findings_filter(request).await.map_err(status_error)?.into_inner();
            print_json(&serde_json::json!({"id": out.id, "arn": out.arn}))
        }
        Command::Delete { id } => {
            let request = client.request(pb::DeleteFindingsFilterRequest { id });
            client.findings.delete_findings_filter(request).await.map_err(status_error)?;
            print_json(&serde_json::json!({}))
        }
    }
}
