//! `estatectl bucket NAME`: one bucket's full metadata.

use anyhow::bail;

use estate_common::macie::BucketMetadata;
use estate_common::pb;

use crate::client::{status_error, Client};
use crate::cmd::buckets;
use crate::output::{print_flattened, print_json, print_rows, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    name: String,
}

pub async fn run(client: &mut Client, output: Output, args: Args) -> anyhow::Result<()> {
    let name = args.name;
    let criteria = [("bucketName".to_owned(), pb::BucketCriterion { eq: vec![name.clone()], ..Default::default() })];
    let request = client.request(pb::DescribeBucketsRequest {
        criteria: criteria.into_iter().collect(),
        max_results: 10,
        ..Default::default()
    });
    let page = client.inventory.describe_buckets(request).await.map_err(status_error)?.into_inner();
    let Some(bucket) = page.buckets.into_iter().next().map(BucketMetadata::from) else {
        bail!("no bucket named `{name}` in the inventory");
    };
    match output {
        Output::Json => print_json(&bucket),
        Output::Csv => print_rows(Output::Csv, buckets::HEADER, &[buckets::row(&bucket)]),
        Output::Table => print_flattened(&serde_json::to_value(&bucket)?),
    }
}
