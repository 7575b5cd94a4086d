//! `estatectl posture`: every bucket exposed right now (GetPosture).

use estate_common::macie::PostureBucket;
use estate_common::pb;

use crate::client::{paginate, status_error, Client};
use crate::output::{print_json, print_rows, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this account's buckets.
    #[arg(long)]
    account_id: Option<String>,
}

pub async fn run(client: &mut Client, output: Output, args: Args) -> anyhow::Result<()> {
    let account_id = args.account_id.unwrap_or_default();
    let (buckets, _) = paginate(String::new(), true, |next_token| {
        let request =
            client.request(pb::GetPostureRequest { account_id: account_id.clone(), max_results: 1000, next_token });
        let mut inventory = client.inventory.clone();
        async move {
            let page = inventory.get_posture(request).await.map_err(status_error)?.into_inner();
            let buckets = page
                .buckets
                .into_iter()
                .map(|b| PostureBucket::try_from(b).map_err(|e| anyhow::anyhow!("the administrator's answer: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok((buckets, page.next_token))
        }
    })
    .await?;
    match output {
        Output::Json => print_json(&serde_json::json!({
            "buckets": buckets.iter().map(|b| serde_json::json!({
                "accountId": b.account_id, "region": b.region, "bucketName": b.bucket_name,
                "reasons": b.reasons.iter().map(|r| r.describe()).collect::<Vec<_>>(),
                "sharedWithAccounts": b.shared_with_accounts,
                "sharedInternallyWith": b.shared_internally_with,
                "effectivePermission": b.effective_permission.as_str(),
                "sharedAccess": b.shared_access.as_str(),
            })).collect::<Vec<_>>(),
        })),
        output => print_rows(
            output,
            &["accountId", "region", "bucketName", "reasons", "sharedWithAccounts"],
            &buckets
                .iter()
                .map(|b| {
                    vec![
                        b.account_id.clone(),
                        b.region.clone(),
                        b.bucket_name.clone(),
                        b.reasons.iter().map(|r| r.describe()).collect::<Vec<_>>().join("; "),
                        b.shared_with_accounts.join(" "),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}
