//! Counts one bucket's objects into Macie's object statistics, streaming, in constant memory.
//! Counts, sizes and storage classes come from ListObjectsV2 (current versions only, so a
//! versioned bucket counts the latest version of each key) or from the bucket's newest S3
//! Inventory report when it has a current one; encryption comes from that report, or from
//! HeadObject within a per-bucket budget, the rest counting as `unknown`. Parts of incomplete
//! multipart uploads are added on the daily refresh (ListMultipartUploads, ListParts).

use std::time::Duration;

use aws_sdk_s3::Client;
use futures::stream::{self, StreamExt};

use estate_common::model::UnixMillis;
use estate_common::objects::{ObjectEncryption, ObjectStats, ObjectStatsSource};

use crate::aws::{classify, CallError};

/// How to count one bucket.
#[derive(Debug, Clone, Copy)]
pub struct CountOptions {
    /// HeadObject calls per bucket for encryption; objects beyond it count as `unknown`.
    pub head_budget: usize,
    /// Add parts of incomplete multipart uploads (the daily refresh does; a manual refresh not).
    pub include_parts: bool,
    /// Read encryption at all (a manual refresh reports it as `unknown`).
    pub read_encryption: bool,
    /// Use a current S3 Inventory report when the bucket has one.
    pub use_inventory: bool,
    /// Fail when the bucket holds more objects than this (manual refresh).
    pub max_objects: Option<i64>,
}

impl CountOptions {
    pub fn daily(head_budget: usize) -> Self {
        Self { head_budget, include_parts: true, read_encryption: true, use_inventory: true, max_objects: None }
    }

    /// Macie's manual object refresh: at most 30,000 objects, no parts, encryption unknown.
    pub fn manual() -> Self {
        Self {
            head_budget: 0,
            include_parts: false,
            read_encryption: false,
            use_inventory: false,
            max_objects: Some(30_000),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CountError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("the bucket holds more than {0} objects")]
    TooManyObjects(i64),
}

/// The encryption of one object, from HeadObject. A 400 answer to HeadObject on a listed
/// object means S3 wants the customer's key: the object is SSE-C.
async fn head_encryption(client: &Client, bucket: &str, owner: &str, key: &str) -> ObjectEncryption {
    use aws_sdk_s3::types::ServerSideEncryption as Sse;
    match client.head_object().bucket(bucket).key(key).expected_bucket_owner(owner).send().await {
        Ok(head) if head.sse_customer_algorithm().is_some() => ObjectEncryption::CustomerManaged,
        Ok(head) => match head.server_side_encryption() {
            Some(Sse::Aes256) => ObjectEncryption::S3Managed,
            Some(Sse::AwsKms | Sse::AwsKmsDsse) => ObjectEncryption::KmsManaged,
            Some(_) => ObjectEncryption::Unknown,
            None => ObjectEncryption::Unencrypted,
        },
        Err(error) if error.raw_response().is_some_and(|r| r.status().as_u16() == 400) => {
            ObjectEncryption::CustomerManaged
        }
        Err(_) => ObjectEncryption::Unknown,
    }
}

/// Counts the objects of `bucket`, which `owner` (the agent's account) owns: every call
/// passes it as `ExpectedBucketOwner`, so S3 refuses to answer for anyone else's bucket.
pub async fn count_objects(
    client: &Client,
    bucket: &str,
    owner: &str,
    options: CountOptions,
    read_at: UnixMillis,
) -> Result<ObjectStats, CountError> {
    if options.use_inventory && options.read_encryption {
        // A report that cannot be read, or whose content is refused (too large, malformed,
        // about another bucket), is set aside: the bucket is listed as if it had none.
        let counted = match inventory::newest_report(client, bucket, owner, read_at).await {
            Ok(Some(report)) => Some(inventory::count(client, &report).await),
            Ok(None) => None,
            Err(error) => Some(Err(error)),
        };
        match counted {
            Some(Ok(mut stats)) => {
                if options.include_parts {
                    add_parts(client, bucket, owner, &mut stats).await?;
                }
                return Ok(stats);
            }
            Some(Err(error @ inventory::InventoryError::Refused(_))) => {
                tracing::warn!(%bucket, %error, "S3 Inventory report refused; listing instead")
            }
            Some(Err(error)) => tracing::info!(%bucket, %error, "no usable S3 Inventory report; listing instead"),
            None => {}
        }
    }
    let source = if options.read_encryption { ObjectStatsSource::Full } else { ObjectStatsSource::ManualRefresh };
    let mut stats = ObjectStats::empty(source, read_at);
    let mut sample: Vec<String> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .expected_bucket_owner(owner)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(classify)?;
        for object in page.contents() {
            let key = object.key().unwrap_or_default();
            // Encryption is not in listings: unknown until HeadObject says otherwise.
            stats.add_object(
                key,
                object.size().unwrap_or(0),
                object.storage_class().map(|c| c.as_str()),
                ObjectEncryption::Unknown,
            );
            if options.read_encryption && sample.len() < options.head_budget {
                sample.push(key.to_owned());
            }
        }
        if let Some(max) = options.max_objects {
            if stats.totals.object_count > max {
                return Err(CountError::TooManyObjects(max));
            }
        }
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => break,
        }
    }
    if options.read_encryption {
        if stats.totals.object_count > sample.len() as i64 {
            stats.source = ObjectStatsSource::Sampled;
        }
        let heads: Vec<ObjectEncryption> = stream::iter(sample)
            .map(|key| async move { head_encryption(client, bucket, owner, &key).await })
            .buffer_unordered(16)
            .collect()
            .await;
        for encryption in heads {
            stats.resolve_encryption(encryption);
        }
    }
    if options.include_parts {
        add_parts(client, bucket, owner, &mut stats).await?;
    }
    Ok(stats)
}

/// Adds every part of every incomplete multipart upload.
async fn add_parts(client: &Client, bucket: &str, owner: &str, stats: &mut ObjectStats) -> Result<(), CallError> {
    let (mut key_marker, mut upload_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let page = client
            .list_multipart_uploads()
            .bucket(bucket)
            .expected_bucket_owner(owner)
            .set_key_marker(key_marker.take())
            .set_upload_id_marker(upload_marker.take())
            .send()
            .await
            .map_err(classify)?;
        for upload in page.uploads() {
            let (Some(key), Some(upload_id)) = (upload.key(), upload.upload_id()) else { continue };
            let class = upload.storage_class().map(|c| c.as_str().to_owned());
            let mut part_marker: Option<String> = None;
            loop {
                let parts = client
                    .list_parts()
                    .bucket(bucket)
                    .expected_bucket_owner(owner)
                    .key(key)
                    .upload_id(upload_id)
                    .set_part_number_marker(part_marker.take())
                    .send()
                    .await
                    .map_err(classify);
                let parts = match parts {
                    Ok(parts) => parts,
                    // Completed or aborted since it was listed.
                    Err(CallError::Transient(detail)) if detail.starts_with("NoSuchUpload") => break,
                    Err(error) => return Err(error),
                };
                for part in parts.parts() {
                    stats.add_part(part.size().unwrap_or(0), class.as_deref());
                }
                match parts.next_part_number_marker() {
                    Some(next) if parts.is_truncated() == Some(true) => part_marker = Some(next.to_owned()),
                    _ => break,
                }
            }
        }
        if page.is_truncated() != Some(true) {
            return Ok(());
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        upload_marker = page.next_upload_id_marker().map(str::to_owned);
        if key_marker.is_none() && upload_marker.is_none() {
            return Ok(());
        }
    }
}

pub mod inventory {
    //! S3 Inventory reports: the newest manifest of an enabled CSV inventory configuration,
    //! and its gzip CSV files, counted without one request per object. The parsing, and
    //! every bound on it, is `crate::report`'s; this module only streams the bytes from S3.

    use super::*;
    use crate::report::{self, ReportCounter, ReportError, ReportLimits};

    pub use crate::report::{decode_key, encryption_status, parse_folder_time, split_csv};

    /// A manifest to read.
    #[derive(Debug, Clone)]
    pub struct Report {
        pub destination_bucket: String,
        /// The account that owns the destination bucket (the configuration's, or the agent's).
        pub destination_owner: String,
        pub files: Vec<String>,
        pub columns: Vec<String>,
        /// The report lists every version: only the latest of each key counts.
        pub all_versions: bool,
        pub created_at: UnixMillis,
    }

    /// Why a report could not be used: a call failed, or what it holds was refused.
    #[derive(Debug, thiserror::Error)]
    pub enum InventoryError {
        #[error(transparent)]
        Call(#[from] CallError),
        #[error("S3 Inventory report refused: {0}")]
        Refused(#[from] ReportError),
    }

    /// The newest report of the bucket's first enabled daily or weekly CSV inventory, when
    /// it is current (at most two periods old). `owner` is the agent's account: it owns the
    /// bucket, and the destination bucket unless the configuration names another account.
    pub async fn newest_report(
        client: &Client,
        bucket: &str,
        owner: &str,
        now: UnixMillis,
    ) -> Result<Option<Report>, InventoryError> {
        use aws_sdk_s3::types::{InventoryFormat, InventoryFrequency, InventoryIncludedObjectVersions};
        let configs = match client
            .list_bucket_inventory_configurations()
            .bucket(bucket)
            .expected_bucket_owner(owner)
            .send()
            .await
            .map_err(classify)
        {
            Ok(out) => out,
            Err(CallError::NotConfigured) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        for config in configs.inventory_configuration_list() {
            if !config.is_enabled() {
                continue;
            }
            let Some(destination) = config.destination().and_then(|d| d.s3_bucket_destination()) else { continue };
            if destination.format() != &InventoryFormat::Csv {
                continue;
            }
            let period = match config.schedule().map(|s| s.frequency()) {
                Some(InventoryFrequency::Weekly) => Duration::from_secs(7 * 86_400),
                _ => Duration::from_secs(86_400),
            };
            let destination_bucket = destination.bucket().trim_start_matches("arn:aws:s3:::").to_owned();
            let destination_owner = destination.account_id().filter(|a| !a.is_empty()).unwrap_or(owner).to_owned();
            let mut prefix = destination.prefix().unwrap_or_default().trim_end_matches('/').to_owned();
            if !prefix.is_empty() {
                prefix.push('/');
            }
            let base = format!("{prefix}{bucket}/{}/", config.id());
            // Report folders are named by their time, so the newest sorts last.
            let mut newest: Option<String> = None;
            let mut token = None;
            loop {
                let page = client
                    .list_objects_v2()
                    .bucket(&destination_bucket)
                    .expected_bucket_owner(&destination_owner)
                    .prefix(&base)
                    .delimiter("/")
                    .set_continuation_token(token)
                    .send()
                    .await
                    .map_err(classify)?;
                for p in page.common_prefixes().iter().filter_map(|p| p.prefix()) {
                    let Some(folder) = p.get(base.len()..) else { continue };
                    if parse_folder_time(folder).is_some() && newest.as_deref().is_none_or(|n| p > n) {
                        newest = Some(p.to_owned());
                    }
                }
                match page.next_continuation_token() {
                    Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                    _ => break,
                }
            }
            let Some(folder) = newest else { continue };
            let created_at = folder.get(base.len()..).and_then(parse_folder_time).unwrap_or(0);
            if now - created_at > 2 * period.as_millis() as i64 {
                tracing::info!(%bucket, %folder, "the newest S3 Inventory report is stale");
                continue;
            }
            let key = format!("{folder}manifest.json");
            let body = read_manifest(client, &destination_bucket, &destination_owner, &key).await?;
            let manifest = report::parse_manifest(&key, &body, bucket, &ReportLimits::DEFAULT)?;
            return Ok(Some(Report {
                destination_bucket,
                destination_owner,
                files: manifest.files,
                columns: manifest.columns,
                all_versions: config.included_object_versions() == &InventoryIncludedObjectVersions::All,
                created_at,
            }));
        }
        Ok(None)
    }

    /// The body of a manifest, refused once it passes [`report::MAX_MANIFEST_BYTES`]: its
    /// announced length is checked first, and the bytes as they arrive.
    async fn read_manifest(client: &Client, bucket: &str, owner: &str, key: &str) -> Result<Vec<u8>, InventoryError> {
        let limit = ReportLimits::DEFAULT.manifest_bytes;
        let too_large = || ReportError::ManifestTooLarge { key: key.to_owned(), limit };
        let out =
            client.get_object().bucket(bucket).key(key).expected_bucket_owner(owner).send().await.map_err(classify)?;
        if out.content_length().is_some_and(|n| n > limit as i64) {
            return Err(too_large().into());
        }
        let mut body = out.body;
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| CallError::Transient(format!("reading `{key}`: {e}")))?;
            if bytes.len() + chunk.len() > limit {
                return Err(too_large().into());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// Counts every row of the report's files, streaming each file through the bounded
    /// decoder of [`ReportCounter`].
    pub async fn count(client: &Client, report: &Report) -> Result<ObjectStats, InventoryError> {
        let mut counter =
            ReportCounter::new(&report.columns, report.all_versions, report.created_at, ReportLimits::DEFAULT)?;
        for file in &report.files {
            let out = client
                .get_object()
                .bucket(&report.destination_bucket)
                .key(file)
                .expected_bucket_owner(&report.destination_owner)
                .send()
                .await
                .map_err(classify)?;
            let mut body = out.body;
            let mut reader = counter.file(file);
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| CallError::Transient(format!("reading `{file}`: {e}")))?;
                reader.feed(&chunk)?;
            }
            reader.finish()?;
        }
        Ok(counter.into_stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_all_expect, error, FakeS3};

    fn folder(bucket: &str) -> String {
        let at = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        let format = time::macros::format_description!("[year]-[month]-[day]T[hour]-00Z");
        format!("inv/{bucket}/daily/{}/", at.format(format).unwrap())
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// `src` has an inventory report in `dest`; `plain` has none. Both have one upload of one part.
    fn route(method: &str, uri: &str) -> (u16, Vec<u8>) {
        // Bucket-level requests are `/bucket/?query`.
        let uri = &uri.replace("/?", "?");
        let xml = |body: &str| (200, format!("<?xml version=\"1.0\"?>{body}").into_bytes());
        if uri.starts_with("/src?inventory") {
            return xml("<ListInventoryConfigurationsResult><IsTruncated>false</IsTruncated><InventoryConfiguration>\
                 <Id>daily</Id><IsEnabled>true</IsEnabled><IncludedObjectVersions>Current</IncludedObjectVersions>\
                 <Schedule><Frequency>Daily</Frequency></Schedule><Destination><S3BucketDestination>\
                 <Format>CSV</Format><Bucket>arn:aws:s3:::dest</Bucket><Prefix>inv</Prefix>\
                 </S3BucketDestination></Destination></InventoryConfiguration></ListInventoryConfigurationsResult>");
        }
        if uri.contains("?inventory") {
            return error(404, "NoSuchConfiguration");
        }
        if uri.starts_with("/dest?") {
            return xml(&format!(
                "<ListBucketResult><Name>dest</Name><IsTruncated>false</IsTruncated>\
                 <CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes></ListBucketResult>",
                folder(if uri.contains("prefix=inv%2Fplain") { "plain" } else { "src" })
            ));
        }
        if uri.contains("manifest.json") {
            let manifest = serde_json::json!({
                "sourceBucket": "src", "fileFormat": "CSV", "fileSchema": "Bucket, Key, Size, EncryptionStatus",
                "files": [{"key": "inv/src/daily/data/f.csv.gz"}],
            });
            return (200, manifest.to_string().into_bytes());
        }
        if uri.contains("f.csv.gz") {
            return (200, gzip(b"\"src\",\"a.txt\",\"3\",\"SSE-S3\"\n\"src\",\"b.txt\",\"4\",\"NOT-SSE\"\n"));
        }
        if uri.contains("?uploads") {
            return xml("<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>\
                 <Upload><Key>u</Key><UploadId>1</UploadId></Upload></ListMultipartUploadsResult>");
        }
        if uri.contains("uploadId=1") {
            return xml("<ListPartsResult><IsTruncated>false</IsTruncated>\
                 <Part><PartNumber>1</PartNumber><Size>5</Size></Part></ListPartsResult>");
        }
        if uri.starts_with("/plain?") && uri.contains("list-type=2") {
            return xml("<ListBucketResult><Name>plain</Name><IsTruncated>false</IsTruncated>\
                 <Contents><Key>a.txt</Key><Size>7</Size></Contents></ListBucketResult>");
        }
        if method == "HEAD" {
            return (200, Vec::new());
        }
        (
            400,
            format!("<?xml version=\"1.0\"?><Error><Code>Unexpected</Code><Message>{method} {uri}</Message></Error>")
                .into_bytes(),
        )
    }

    #[tokio::test]
    async fn every_call_names_the_expected_owner() {
        let (client, seen) = FakeS3::client(route);
        let from_report = count_objects(&client, "src", "111111111111", CountOptions::daily(10), 1).await.unwrap();
        assert_eq!(from_report.source, ObjectStatsSource::InventoryReport);
        assert_eq!(from_report.totals.object_count, 3, "two objects and a part");
        let listed = count_objects(&client, "plain", "111111111111", CountOptions::daily(10), 1).await.unwrap();
        assert_eq!(listed.object_count_by_encryption_type.unencrypted, 1, "HeadObject was read: {listed:?}");
        let seen = seen.lock().unwrap();
        let calls = assert_all_expect(&seen, "111111111111");
        // Inventory, report listing, manifest, file, uploads and parts; then inventory,
        // listing, HeadObject, uploads and parts.
        assert_eq!(calls, 11, "{seen:#?}");
    }

    #[tokio::test]
    async fn a_report_about_another_bucket_is_not_counted() {
        // `plain` has an inventory configuration too, whose newest manifest says it is `src`'s.
        fn elsewhere(method: &str, uri: &str) -> (u16, Vec<u8>) {
            route(method, &uri.replacen("/plain/?inventory", "/src?inventory", 1))
        }
        let (client, _) = FakeS3::client(elsewhere);
        let stats = count_objects(&client, "plain", "111111111111", CountOptions::daily(10), 1).await.unwrap();
        // Listed instead: its one object, not the report's two.
        assert_eq!(stats.source, ObjectStatsSource::Full);
        assert_eq!(stats.totals.object_count, 2, "one object and a part: {stats:?}");
    }
}
