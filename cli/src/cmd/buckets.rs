//! `estatectl buckets`: DescribeBuckets with Macie's criteria, sort and paging.

use estate_common::macie::BucketMetadata;
use estate_common::pb;

use crate::client::{paginate, status_error, Client};
use crate::criteria::{parse_criteria_json, parse_where};
use crate::output::{opt, print_json, print_rows, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A criterion: FIELD=V (eq; repeat for OR), FIELD!=V (neq), FIELD>N, FIELD>=N, FIELD<N,
    /// FIELD<=N, FIELD^=PREFIX. FIELD is a Macie bucket property (accountId, bucketName,
    /// sharedAccess, publicAccess.effectivePermission, ...).
    #[arg(long = "where", value_name = "CRITERION")]
    criteria: Vec<String>,
    /// Criteria as Macie's JSON map, e.g. '{"sharedAccess":{"eq":["EXTERNAL"]}}'.
    #[arg(long, conflicts_with = "criteria")]
    criteria_json: Option<String>,
    /// Sort attribute: accountId, bucketName, objectCount, sizeInBytes,
    /// classifiableObjectCount, classifiableSizeInBytes.
    #[arg(long)]
    sort: Option<String>,
    /// Sort descending.
    #[arg(long)]
    desc: bool,
    /// Page size (1 to 1000).
    #[arg(long, default_value_t = 50)]
    max_results: i32,
    /// Continue from a previous page.
    #[arg(long)]
    next_token: Option<String>,
    /// Follow every page.
    #[arg(long)]
    all: bool,
}

pub async fn run(client: &mut Client, output: Output, args: Args) -> anyhow::Result<()> {
    let criteria = match args.criteria_json {
        Some(json) => parse_criteria_json(&json)?,
        None => parse_where(&args.criteria)?,
    };
    let sort_criteria = args.sort.map(|attribute_name| pb::BucketSortCriteria {
        attribute_name,
        order_by: if args.desc { pb::OrderBy::Desc } else { pb::OrderBy::Asc }.into(),
    });
    let start = args.next_token.unwrap_or_default();
    let (buckets, token) = paginate(start, args.all, |next_token| {
        let request = client.request(pb::DescribeBucketsRequest {
            criteria: criteria.clone().into_iter().collect(),
            sort_criteria: sort_criteria.clone(),
            max_results: args.max_results,
            next_token,
        });
        let mut inventory = client.inventory.clone();
        async move {
            let page = inventory.describe_buckets(request).await.map_err(status_error)?.into_inner();
            Ok((page.buckets.into_iter().map(BucketMetadata::from).collect(), page.next_token))
        }
    })
    .await?;
    match output {
        Output::Json => print_json(&serde_json::json!({
            "buckets": buckets,
            "nextToken": (!token.is_empty()).then_some(token),
        })),
        output => {
            print_rows(output, HEADER, &buckets.iter().map(row).collect::<Vec<_>>())?;
            if output == Output::Table && !token.is_empty() {
                eprintln!("more: --next-token {token}");
            }
            Ok(())
        }
    }
}

pub const HEADER: &[&str] = &[
    "accountId",
    "region",
    "bucketName",
    "effectivePermission",
    "sharedAccess",
    "encryption",
    "allowsUnencryptedObjectUploads",
    "versioning",
    "replicatedExternally",
    "objectCount",
    "sizeInBytes",
    "errorCode",
];

pub fn row(b: &BucketMetadata) -> Vec<String> {
    vec![
        b.account_id.clone(),
        b.region.clone(),
        b.bucket_name.clone(),
        opt(b.public_access.as_ref().map(|p| p.effective_permission.as_str())),
        b.shared_access.as_str().to_owned(),
        opt(b.server_side_encryption.as_ref().and_then(|e| e.kind).map(|k| k.as_str())),
        b.allows_unencrypted_object_uploads.as_str().to_owned(),
        b.versioning.to_string(),
        opt(b.replication_details.as_ref().and_then(|r| r.replicated_externally)),
        opt(b.object_count),
        opt(b.size_in_bytes),
        opt(b.error_code.as_deref()),
    ]
}
