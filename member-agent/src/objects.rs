//! Counts one bucket's objects into Macie's object statistics, streaming, in constant memory.
//! Counts, sizes and storage classes come from ListObjectsV2 (current versions only, so a
//! versioned bucket counts the latest version of each key) or from the bucket's newest S3
//! Inventory report when it has a current one; encryption comes from that report, or from
//! HeadObject within a per-bucket budget, the rest counting as `unknown`. Parts of incomplete
//! multipart uploads are added on the daily refresh (ListMultipartUploads, ListParts).

use std::io::Read;
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
async fn head_encryption(client: &Client, bucket: &str, key: &str) -> ObjectEncryption {
    use aws_sdk_s3::types::ServerSideEncryption as Sse;
    match client.head_object().bucket(bucket).key(key).send().await {
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

pub async fn count_objects(
    client: &Client,
    bucket: &str,
    options: CountOptions,
    read_at: UnixMillis,
) -> Result<ObjectStats, CountError> {
    if options.use_inventory && options.read_encryption {
        match inventory::newest_report(client, bucket, read_at).await {
            Ok(Some(report)) => {
                let mut stats = inventory::count(client, &report).await?;
                if options.include_parts {
                    add_parts(client, bucket, &mut stats).await?;
                }
                return Ok(stats);
            }
            Ok(None) => {}
            Err(error) => tracing::info!(%bucket, %error, "no usable S3 Inventory report; listing instead"),
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
            .map(|key| async move { head_encryption(client, bucket, &key).await })
            .buffer_unordered(16)
            .collect()
            .await;
        for encryption in heads {
            stats.resolve_encryption(encryption);
        }
    }
    if options.include_parts {
        add_parts(client, bucket, &mut stats).await?;
    }
    Ok(stats)
}

/// Adds every part of every incomplete multipart upload.
async fn add_parts(client: &Client, bucket: &str, stats: &mut ObjectStats) -> Result<(), CallError> {
    let (mut key_marker, mut upload_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let page = client
            .list_multipart_uploads()
            .bucket(bucket)
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
    //! and its gzip CSV files, counted without one request per object.

    use super::*;

    /// A manifest to read.
    #[derive(Debug, Clone)]
    pub struct Report {
        pub destination_bucket: String,
        pub files: Vec<String>,
        pub columns: Vec<String>,
        /// The report lists every version: only the latest of each key counts.
        pub all_versions: bool,
        pub created_at: UnixMillis,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Manifest {
        file_format: String,
        file_schema: String,
        files: Vec<ManifestFile>,
    }

    #[derive(Debug, serde::Deserialize)]
    struct ManifestFile {
        key: String,
    }

    /// The newest report of the bucket's first enabled daily or weekly CSV inventory, when
    /// it is current (at most two periods old).
    pub async fn newest_report(client: &Client, bucket: &str, now: UnixMillis) -> Result<Option<Report>, CallError> {
        use aws_sdk_s3::types::{InventoryFormat, InventoryFrequency, InventoryIncludedObjectVersions};
        let configs = match client.list_bucket_inventory_configurations().bucket(bucket).send().await.map_err(classify)
        {
            Ok(out) => out,
            Err(CallError::NotConfigured) => return Ok(None),
            Err(error) => return Err(error),
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
                    .prefix(&base)
                    .delimiter("/")
                    .set_continuation_token(token)
                    .send()
                    .await
                    .map_err(classify)?;
                for p in page.common_prefixes().iter().filter_map(|p| p.prefix()) {
                    let folder = &p[base.len()..];
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
            let created_at = parse_folder_time(&folder[base.len()..]).unwrap_or(0);
            if now - created_at > 2 * period.as_millis() as i64 {
                tracing::info!(%bucket, %folder, "the newest S3 Inventory report is stale");
                continue;
            }
            let body = read_object(client, &destination_bucket, &format!("{folder}manifest.json")).await?;
            let manifest: Manifest = serde_json::from_slice(&body)
                .map_err(|e| CallError::Transient(format!("manifest `{folder}manifest.json` is malformed: {e}")))?;
            if manifest.file_format != "CSV" {
                continue;
            }
            return Ok(Some(Report {
                destination_bucket,
                files: manifest.files.into_iter().map(|f| f.key).collect(),
                columns: manifest.file_schema.split(',').map(|c| c.trim().to_owned()).collect(),
                all_versions: config.included_object_versions() == &InventoryIncludedObjectVersions::All,
                created_at,
            }));
        }
        Ok(None)
    }

    /// The whole body of one object of a report.
    async fn read_object(client: &Client, bucket: &str, key: &str) -> Result<Vec<u8>, CallError> {
        let out = client.get_object().bucket(bucket).key(key).send().await.map_err(classify)?;
        let body = out.body.collect().await.map_err(|e| CallError::Transient(format!("reading `{key}`: {e}")))?;
        Ok(body.to_vec())
    }

    /// `2026-11-28T01-00Z` → Unix milliseconds.
    pub fn parse_folder_time(folder: &str) -> Option<UnixMillis> {
        let folder = folder.trim_end_matches('/');
        let format = time::macros::format_description!("[year]-[month]-[day]T[hour]-[minute]Z");
        let at = time::PrimitiveDateTime::parse(folder, format).ok()?;
        Some((at.assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
    }

    /// Splits one CSV line whose fields are all quoted, as S3 Inventory writes them.
    pub fn split_csv(line: &str) -> Vec<String> {
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => fields.push(std::mem::take(&mut field)),
                (c, _) => field.push(c),
            }
        }
        fields.push(field);
        fields
    }

    /// Percent-decoding of inventory keys (they are URL-encoded).
    fn decode_key(key: &str) -> String {
        let bytes = key.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&key[i + 1..i + 3], 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                },
                b'+' => out.push(b' '),
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    pub fn encryption_status(status: &str) -> ObjectEncryption {
        match status {
            "SSE-S3" => ObjectEncryption::S3Managed,
            "SSE-KMS" | "DSSE-KMS" => ObjectEncryption::KmsManaged,
            "SSE-C" => ObjectEncryption::CustomerManaged,
            "NOT-SSE" => ObjectEncryption::Unencrypted,
            _ => ObjectEncryption::Unknown,
        }
    }

    /// Counts every row of the report's files.
    pub async fn count(client: &Client, report: &Report) -> Result<ObjectStats, CallError> {
        let column = |name: &str| report.columns.iter().position(|c| c == name);
        let key_at = column("Key").ok_or_else(|| CallError::Transient("the inventory has no `Key` column".into()))?;
        let (size_at, class_at, encryption_at) = (column("Size"), column("StorageClass"), column("EncryptionStatus"));
        let (latest_at, delete_marker_at) = (column("IsLatest"), column("IsDeleteMarker"));
        // The numbers are as of the report, not as of now.
        let mut stats = ObjectStats::empty(ObjectStatsSource::InventoryReport, report.created_at);
        for file in &report.files {
            let body = read_object(client, &report.destination_bucket, file).await?;
            let mut text = String::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_string(&mut text)
                .map_err(|e| CallError::Transient(format!("`{file}` is not gzip CSV: {e}")))?;
            for line in text.lines().filter(|l| !l.is_empty()) {
                let fields = split_csv(line);
                let get = |at: Option<usize>| at.and_then(|i| fields.get(i)).map(String::as_str);
                if (report.all_versions && get(latest_at) == Some("false")) || get(delete_marker_at) == Some("true") {
                    continue;
                }
                let key = decode_key(get(Some(key_at)).unwrap_or_default());
                let size = get(size_at).and_then(|s| s.parse().ok()).unwrap_or(0);
                let encryption = get(encryption_at).map_or(ObjectEncryption::Unknown, encryption_status);
                stats.add_object(&key, size, get(class_at), encryption);
            }
        }
        Ok(stats)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn csv_and_folders() {
            assert_eq!(split_csv(r#""b","a,b.csv","10","""q""""#), vec!["b", "a,b.csv", "10", "\"q\""]);
            assert_eq!(parse_folder_time("2026-11-28T01-00Z/"), Some(1_795_827_600_000));
            assert_eq!(parse_folder_time("data"), None);
            assert_eq!(decode_key("dir/my+file%2Bx.csv"), "dir/my file+x.csv");
            assert_eq!(encryption_status("DSSE-KMS"), ObjectEncryption::KmsManaged);
        }
    }
}
