//! `estatectl findings`: ListFindings and GetFindings (or GetFindingStatistics with
//! `--group-by`), Macie's shape in JSON.

use std::collections::HashMap;

use estate_common::findings::Finding;
use estate_common::pb;

use crate::client::{paginate, status_error, Client};
use crate::criteria::{parse_finding_criteria_json, parse_finding_where};
use crate::output::{print_json, print_rows, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A criterion on a property Macie names (type, severity.description, accountId,
    /// resourcesAffected.s3Bucket.tags.key, policyDetails.actor.userIdentity.type, ...):
    /// FIELD=V (repeat for OR), FIELD==V (eqExactMatch: every one), FIELD!=V, FIELD>N, >=,
    /// <, <=.
    #[arg(long = "where", value_name = "CRITERION")]
    criteria: Vec<String>,
    /// Macie's `findingCriteria` as JSON, instead of `--where`.
    #[arg(long, conflicts_with = "criteria")]
    criteria_json: Option<String>,
    /// Sort attribute: updatedAt (default), createdAt, count, severity.score, type,
    /// policyDetails.action.apiCallDetails.firstSeen, .lastSeen.
    #[arg(long)]
    sort: Option<String>,
    /// Sort ascending (newest first by default).
    #[arg(long)]
    asc: bool,
    /// Group and count instead: type, severity.description,
    /// resourcesAffected.s3Bucket.name, accountId.
    #[arg(long)]
    group_by: Option<String>,
    /// With `--group-by`: order groups by `groupKey` (default) or `count` (largest first
    /// unless `--asc`).
    #[arg(long, requires = "group_by")]
    sort_groups: Option<String>,
    /// With `--group-by`: at most this many groups.
    #[arg(long, requires = "group_by", default_value_t = 0)]
    size: i32,
}

/// Findings are fetched by ID in batches of this many (GetFindings' limit).
const GET_FINDINGS_BATCH: usize = 500;

pub async fn run(client: &mut Client, output: Output, args: Args) -> anyhow::Result<()> {
    let criteria: HashMap<String, pb::FindingCriterion> = match &args.criteria_json {
        Some(text) => parse_finding_criteria_json(text)?,
        None => parse_finding_where(&args.criteria)?,
    };
    let finding_criteria = Some(pb::FindingCriteria { criterion: criteria });
    if let Some(group_by) = args.group_by {
        let sort_criteria = args.sort_groups.map(|attribute_name| pb::FindingStatisticsSortCriteria {
            order_by: if args.asc || attribute_name != "count" { pb::OrderBy::Asc } else { pb::OrderBy::Desc }.into(),
            attribute_name,
        });
        let request = client.request(pb::GetFindingStatisticsRequest {
            group_by,
            finding_criteria,
            size: args.size,
            sort_criteria,
            ..Default::default()
        });
        let out = client.findings.get_finding_statistics(request).await.map_err(status_error)?.into_inner();
        return match output {
            Output::Json => print_json(&serde_json::json!({
                "countsByGroup": out.counts_by_group.iter()
                    .map(|g| serde_json::json!({"groupKey": g.group_key, "count": g.count}))
                    .collect::<Vec<_>>(),
            })),
            output => print_rows(
                output,
                &["groupKey", "count"],
                &out.counts_by_group.iter().map(|g| vec![g.group_key.clone(), g.count.to_string()]).collect::<Vec<_>>(),
            ),
        };
    }
    let (ids, _) = paginate(String::new(), true, |next_token| {
        let request = client.request(pb::ListFindingsRequest {
            finding_criteria: finding_criteria.clone(),
            sort_criteria: Some(pb::SortCriteria {
                attribute_name: args.sort.clone().unwrap_or_default(),
                order_by: if args.asc { pb::OrderBy::Asc } else { pb::OrderBy::Desc }.into(),
            }),
            max_results: 1000,
            next_token,
            ..Default::default()
        });
        let mut findings = client.findings.clone();
        async move {
            let page = findings.list_findings(request).await.map_err(status_error)?.into_inner();
            Ok((page.finding_ids, page.next_token))
        }
    })
    .await?;
    let mut findings = Vec::new();
    for chunk in ids.chunks(GET_FINDINGS_BATCH) {
        let request = client.request(pb::GetFindingsRequest { finding_ids: chunk.to_vec(), sort_criteria: None });
        let page = client.findings.get_findings(request).await.map_err(status_error)?.into_inner();
        for f in page.findings {
            findings.push(Finding::try_from(f).map_err(|e| anyhow::anyhow!("{e}"))?);
        }
    }
    match output {
        Output::Json => print_json(&serde_json::json!({
            "findings": findings.iter().map(Finding::to_macie_json).collect::<Vec<_>>(),
        })),
        output => print_rows(output, HEADER, &findings.iter().map(row).collect::<Vec<_>>()),
    }
}

pub const HEADER: &[&str] =
    &["updatedAt", "type", "severity", "accountId", "region", "bucket", "count", "api", "archived"];

pub fn row(f: &Finding) -> Vec<String> {
    vec![
        estate_common::macie::Timestamp(f.updated_at).to_iso8601(),
        f.kind.as_str().to_owned(),
        f.kind.severity().0.to_owned(),
        f.account_id.to_string(),
        f.region.to_string(),
        f.bucket_name.clone(),
        f.count.to_string(),
        f.last_action.label().to_owned(),
        f.archived.to_string(),
    ]
}
