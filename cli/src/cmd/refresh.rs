//! `estatectl refresh`: RefreshInventory, or RefreshObjectMetadata with `--objects BUCKET`.

use estate_common::macie::Timestamp;
use estate_common::pb;

use crate::client::{status_error, Client};
use crate::output::{opt, print_json, print_rows, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this account.
    #[arg(long, conflicts_with = "objects")]
    account_id: Option<String>,
    /// Only these Regions (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "objects")]
    regions: Vec<String>,
    /// Recount this bucket's objects instead.
    #[arg(long, value_name = "BUCKET")]
    objects: Option<String>,
}

pub async fn run(client: &mut Client, output: Output, args: Args) -> anyhow::Result<()> {
    if let Some(bucket) = args.objects {
        return objects(client, output, bucket).await;
    }
    let request = client.request(pb::RefreshInventoryRequest {
        account_id: args.account_id.unwrap_or_default(),
        regions: args.regions,
    });
    let out = client.inventory.refresh_inventory(request).await.map_err(status_error)?.into_inner();
    let when = |ms: i64| Timestamp::from_millis(ms).map(|t| t.to_iso8601());
    match output {
        Output::Json => print_json(&serde_json::json!({
            "scopes": out.scopes.iter().map(|s| serde_json::json!({
                "accountId": s.account_id,
                "region": s.region,
                "requested": s.requested,
                "lastRefresh": when(s.last_refresh_ms),
                "reason": (!s.reason.is_empty()).then_some(&s.reason),
            })).collect::<Vec<_>>(),
        })),
        output => print_rows(
            output,
            &["accountId", "region", "requested", "lastRefresh", "reason"],
            &out.scopes
                .iter()
                .map(|s| {
                    vec![
                        s.account_id.clone(),
                        s.region.clone(),
                        s.requested.to_string(),
                        opt(when(s.last_refresh_ms)),
                        s.reason.clone(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}

async fn objects(client: &mut Client, output: Output, bucket: String) -> anyhow::Result<()> {
    let request = client.request(pb::RefreshObjectMetadataRequest { bucket_name: bucket.clone() });
    let out = client.inventory.refresh_object_metadata(request).await.map_err(status_error)?.into_inner();
    match output {
        Output::Json => print_json(&serde_json::json!({
            "bucketName": bucket, "accountId": out.account_id, "region": out.region, "requested": true,
        })),
        output => print_rows(
            output,
            &["bucketName", "accountId", "region", "requested"],
            &[vec![bucket, out.account_id, out.region, "true".into()]],
        ),
    }
}
