//! `estatectl stats`: GetBucketStatistics.

use estate_common::macie::BucketStatistics;
use estate_common::pb;

use crate::client::{status_error, Client};
use crate::output::{opt, print_json, print_rows, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this account.
    #[arg(long)]
    account_id: Option<String>,
}

pub async fn run(client: &mut Client, output: Output, args: Args) -> anyhow::Result<()> {
    let request = client.request(pb::GetBucketStatisticsRequest { account_id: args.account_id.unwrap_or_default() });
    let stats: BucketStatistics =
        client.inventory.get_bucket_statistics(request).await.map_err(status_error)?.into_inner().into();
    match output {
        Output::Json => print_json(&stats),
        output => print_rows(output, &["statistic", "value"], &rows(&stats)),
    }
}

fn rows(s: &BucketStatistics) -> Vec<Vec<String>> {
    let p = s.bucket_count_by_effective_permission;
    let e = s.bucket_count_by_encryption_type;
    let r = s.bucket_count_by_object_encryption_requirement;
    let a = s.bucket_count_by_shared_access_type;
    let rows: Vec<(&str, String)> = vec![
        ("bucketCount", s.bucket_count.to_string()),
        ("bucketCountByEffectivePermission.publiclyAccessible", p.publicly_accessible.to_string()),
        ("bucketCountByEffectivePermission.publiclyReadable", p.publicly_readable.to_string()),
        ("bucketCountByEffectivePermission.publiclyWritable", p.publicly_writable.to_string()),
        ("bucketCountByEffectivePermission.unknown", p.unknown.to_string()),
        ("bucketCountByEncryptionType.kmsManaged", e.kms_managed.to_string()),
        ("bucketCountByEncryptionType.s3Managed", e.s3_managed.to_string()),
        ("bucketCountByEncryptionType.unencrypted", e.unencrypted.to_string()),
        ("bucketCountByEncryptionType.unknown", e.unknown.to_string()),
        (
            "bucketCountByObjectEncryptionRequirement.allowsUnencryptedObjectUploads",
            r.allows_unencrypted_object_uploads.to_string(),
        ),
        (
            "bucketCountByObjectEncryptionRequirement.deniesUnencryptedObjectUploads",
            r.denies_unencrypted_object_uploads.to_string(),
        ),
        ("bucketCountByObjectEncryptionRequirement.unknown", r.unknown.to_string()),
        ("bucketCountBySharedAccessType.external", a.external.to_string()),
        ("bucketCountBySharedAccessType.internal", a.internal.to_string()),
        ("bucketCountBySharedAccessType.notShared", a.not_shared.to_string()),
        ("bucketCountBySharedAccessType.unknown", a.unknown.to_string()),
        ("objectCount", s.object_count.to_string()),
        ("sizeInBytes", s.size_in_bytes.to_string()),
        ("sizeInBytesCompressed", s.size_in_bytes_compressed.to_string()),
        ("classifiableObjectCount", s.classifiable_object_count.to_string()),
        ("classifiableSizeInBytes", s.classifiable_size_in_bytes.to_string()),
        ("unclassifiableObjectCount.total", s.unclassifiable_object_count.total.to_string()),
        ("unclassifiableObjectSizeInBytes.total", s.unclassifiable_object_size_in_bytes.total.to_string()),
        ("lastUpdated", opt(s.last_updated.map(|t| t.to_iso8601()))),
    ];
    rows.into_iter().map(|(k, v)| vec![k.to_owned(), v]).collect()
}
