//! Object statistics end to end: every field computed from what was seeded (storage classes,
//! extensions, compression, SSE-S3/SSE-KMS/SSE-C, a versioned bucket with old versions and a
//! delete marker, an incomplete multipart upload, an S3 Inventory report), manual object
//! refreshes and their 30,000-object limit, and the refresh window.

use std::io::Write;

use futures_util::StreamExt;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, InventoryConfiguration, InventoryDestination, InventoryFormat, InventoryFrequency,
    InventoryIncludedObjectVersions, InventoryOptionalField, InventoryS3BucketDestination, InventorySchedule,
    ServerSideEncryption, StorageClass, VersioningConfiguration,
};
use serde_json::{json, Value};

use super::*;

/// One object as seeded: key, size, storage class, how it is encrypted.
struct Obj {
    key: &'static str,
    size: usize,
    class: &'static str,
    sse: &'static str,
}

const MIXED: &[Obj] = &[
    Obj { key: "docs/report.pdf", size: 1000, class: "STANDARD", sse: "SSE-S3" },
    Obj { key: "data/table.csv", size: 2000, class: "STANDARD_IA", sse: "SSE-KMS" },
    Obj { key: "archive/old.csv", size: 3000, class: "GLACIER", sse: "NONE" },
    Obj { key: "deep/backup.bin", size: 4000, class: "DEEP_ARCHIVE", sse: "NONE" },
    Obj { key: "logs/app.log.gz", size: 5000, class: "STANDARD", sse: "SSE-S3" },
    Obj { key: "images/photo.png", size: 6000, class: "STANDARD", sse: "NONE" },
    Obj { key: "exports/dump.zip", size: 700, class: "ONEZONE_IA", sse: "SSE-C" },
];

/// Two parts of one incomplete multipart upload.
const PART_SIZES: [usize; 2] = [5 * 1024 * 1024, 1234];

/// What the rules say about a set of objects (and parts), written out independently of the
/// agent's tally.
fn expected_objects(objects: &[Obj], parts: &[usize], encryption_known: bool) -> Value {
    let classifiable_ext = |key: &str| {
        let ext = key.rsplit('.').next().unwrap();
        ["pdf", "csv", "gz", "zip", "json", "txt", "log"].contains(&ext)
    };
    let classifiable_class = |c: &str| ["STANDARD", "STANDARD_IA", "ONEZONE_IA"].contains(&c);
    let (mut count, mut size, mut compressed, mut c_count, mut c_size) = (0i64, 0i64, 0i64, 0i64, 0i64);
    let (mut u_count, mut u_size) = ([0i64; 3], [0i64; 3]); // file type, storage class, total
    let mut enc = BTreeMap::from([("s3", 0i64), ("kms", 0), ("c", 0), ("none", 0), ("unknown", 0)]);
    for o in objects {
        count += 1;
        size += o.size as i64;
        if o.key.ends_with(".gz") || o.key.ends_with(".zip") {
            compressed += o.size as i64;
        }
        let (ext_ok, class_ok) = (classifiable_ext(o.key), classifiable_class(o.class));
        if ext_ok && class_ok {
            c_count += 1;
            c_size += o.size as i64;
        } else {
            u_count[2] += 1;
            u_size[2] += o.size as i64;
            if !ext_ok {
                u_count[0] += 1;
                u_size[0] += o.size as i64;
            }
            if !class_ok {
                u_count[1] += 1;
                u_size[1] += o.size as i64;
            }
        }
        let bucket = if !encryption_known {
            "unknown"
        } else {
            match o.sse {
                "SSE-S3" => "s3",
                "SSE-KMS" => "kms",
                "SSE-C" => "c",
                _ => "none",
            }
        };
        *enc.get_mut(bucket).unwrap() += 1;
    }
    for p in parts {
        count += 1;
        size += *p as i64;
        u_count[0] += 1;
        u_count[2] += 1;
        u_size[0] += *p as i64;
        u_size[2] += *p as i64;
        *enc.get_mut("unknown").unwrap() += 1;
    }
    json!({
        "objectCount": count,
        "sizeInBytes": size,
        "sizeInBytesCompressed": compressed,
        "classifiableObjectCount": c_count,
        "classifiableSizeInBytes": c_size,
        "unclassifiableObjectCount": {"fileType": u_count[0], "storageClass": u_count[1], "total": u_count[2]},
        "unclassifiableObjectSizeInBytes": {"fileType": u_size[0], "storageClass": u_size[1], "total": u_size[2]},
        "objectCountByEncryptionType": {"s3Managed": enc["s3"], "kmsManaged": enc["kms"], "customerManaged": enc["c"], "unencrypted": enc["none"], "unknown": enc["unknown"]},
    })
}

fn object_fields(bucket: &Value) -> Value {
    let keys = [
        "objectCount",
        "sizeInBytes",
        "sizeInBytesCompressed",
        "classifiableObjectCount",
        "classifiableSizeInBytes",
        "unclassifiableObjectCount",
        "unclassifiableObjectSizeInBytes",
        "objectCountByEncryptionType",
    ];
    Value::Object(keys.iter().map(|k| (k.to_string(), bucket[*k].clone())).collect())
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, o: &Obj) -> anyhow::Result<()> {
    let mut put = s3
        .put_object()
        .bucket(bucket)
        .key(o.key)
        .storage_class(StorageClass::from(o.class))
        .body(ByteStream::from(vec![b'x'; o.size]));
    put = match o.sse {
        "SSE-S3" => put.server_side_encryption(ServerSideEncryption::Aes256),
        "SSE-KMS" => put
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id("arn:aws:kms:us-east-1:111111111111:key/k1"),
        "SSE-C" => put
            .sse_customer_algorithm("AES256")
            .sse_customer_key("MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=")
            .sse_customer_key_md5("vQJYLGJFdsl1wUkTS2ieFA=="),
        _ => put,
    };
    put.send().await?;
    Ok(())
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn object_statistics_match_the_seeding() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    let s3 = moto.s3(&creds, "us-east-1");
    let seed = |name: &str| Spec::plain(A, name.into());

    // Mixed storage classes, extensions and encryption, plus an incomplete multipart upload.
    seed_bucket(&moto, &creds, &seed("estate-o-mixed")).await?;
    for o in MIXED {
        put(&s3, "estate-o-mixed", o).await?;
    }
    let upload = s3.create_multipart_upload().bucket("estate-o-mixed").key("big/upload.parquet").send().await?;
    for (i, size) in PART_SIZES.iter().enumerate() {
        s3.upload_part()
            .bucket("estate-o-mixed")
            .key("big/upload.parquet")
            .upload_id(upload.upload_id().unwrap())
            .part_number(i as i32 + 1)
            .body(ByteStream::from(vec![b'p'; *size]))
            .send()
            .await?;
    }

    // A versioned bucket: only the latest version of each key counts; deleted keys not at all.
    seed_bucket(&moto, &creds, &seed("estate-o-versioned")).await?;
    s3.put_bucket_versioning()
        .bucket("estate-o-versioned")
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await?;
    for (key, size) in [("notes.txt", 10), ("notes.txt", 25), ("gone.json", 30)] {
        s3.put_object().bucket("estate-o-versioned").key(key).body(ByteStream::from(vec![b'v'; size])).send().await?;
    }
    s3.delete_object().bucket("estate-o-versioned").key("gone.json").send().await?;

    // A bucket with a current S3 Inventory report (all versions listed, CSV, gzip).
    seed_bucket(&moto, &creds, &seed("estate-o-inventoried")).await?;
    seed_bucket(&moto, &creds, &seed("estate-o-inventory-dest")).await?;
    s3.put_bucket_inventory_configuration()
        .bucket("estate-o-inventoried")
        .id("daily")
        .inventory_configuration(
            InventoryConfiguration::builder()
                .id("daily")
                .is_enabled(true)
                .included_object_versions(InventoryIncludedObjectVersions::All)
                .schedule(InventorySchedule::builder().frequency(InventoryFrequency::Daily).build()?)
                .optional_fields(InventoryOptionalField::Size)
                .optional_fields(InventoryOptionalField::StorageClass)
                .optional_fields(InventoryOptionalField::EncryptionStatus)
                .destination(
                    InventoryDestination::builder()
                        .s3_bucket_destination(
                            InventoryS3BucketDestination::builder()
                                .bucket("arn:aws:s3:::estate-o-inventory-dest")
                                .prefix("inv")
                                .format(InventoryFormat::Csv)
                                .build()?,
                        )
                        .build(),
                )
                .build()?,
        )
        .send()
        .await?;
    let now = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let folder = format!(
        "inv/estate-o-inventoried/daily/{:04}-{:02}-{:02}T{:02}-00Z/",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour()
    );
    let rows = [
        r#""estate-o-inventoried","reports/q1.csv","v2","true","false","100","STANDARD","SSE-KMS""#,
        r#""estate-o-inventoried","reports/q1.csv","v1","false","false","90","STANDARD","SSE-KMS""#,
        r#""estate-o-inventoried","reports/q2.csv","v1","true","false","200","STANDARD_IA","SSE-S3""#,
        r#""estate-o-inventoried","raw/blob.bin","v1","true","false","300","GLACIER","NOT-SSE""#,
        r#""estate-o-inventoried","private/key%2Bname.txt","v1","true","false","400","STANDARD","SSE-C""#,
        r#""estate-o-inventoried","old/removed.txt","v3","true","true","0","STANDARD","NOT-SSE""#,
    ];
    let data_key = format!("{folder}data/part-0.csv.gz");
    s3.put_object()
        .bucket("estate-o-inventory-dest")
        .key(&data_key)
        .body(ByteStream::from(gzip(&rows.join("\n"))))
        .send()
        .await?;
    let manifest = json!({
        "sourceBucket": "estate-o-inventoried",
        "destinationBucket": "arn:aws:s3:::estate-o-inventory-dest",
        "version": "2016-11-30",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, StorageClass, EncryptionStatus",
        "files": [{"key": data_key, "size": 1, "MD5checksum": "0"}],
    });
    s3.put_object()
        .bucket("estate-o-inventory-dest")
        .key(format!("{folder}manifest.json"))
        .body(ByteStream::from(manifest.to_string().into_bytes()))
        .send()
        .await?;

    let dir = tempfile::tempdir()?;
    let admin = Admin::start_with(&dir.path().join("data"), None, &["--min-refresh-interval", "4"])?;
    let _agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &[])?;
    eventually(Duration::from_secs(60), "the first refresh", || async { Ok(all_refreshed_one(&admin)?.then_some(())) })
        .await?;

    let bucket = |name: &str| admin.ctl_json(None, &["bucket", name]);
    let mixed = bucket("estate-o-mixed")?;
    assert_eq!(object_fields(&mixed), expected_objects(MIXED, &PART_SIZES, true), "estate-o-mixed");
    assert_eq!(mixed["objectStatisticsSource"], "FULL");
    assert_eq!(mixed["multipartParts"], 2);
    assert_eq!(mixed["usageByStorageClass"]["GLACIER"], json!({"objectCount": 1, "sizeInBytes": 3000}));
    assert_eq!(mixed["usageByStorageClass"]["DEEP_ARCHIVE"], json!({"objectCount": 1, "sizeInBytes": 4000}));

    let versioned = bucket("estate-o-versioned")?;
    let latest = [Obj { key: "notes.txt", size: 25, class: "STANDARD", sse: "NONE" }];
    assert_eq!(object_fields(&versioned), expected_objects(&latest, &[], true), "estate-o-versioned");

    let inventoried = bucket("estate-o-inventoried")?;
    assert_eq!(inventoried["objectStatisticsSource"], "INVENTORY_REPORT");
    let reported = [
        Obj { key: "reports/q1.csv", size: 100, class: "STANDARD", sse: "SSE-KMS" },
        Obj { key: "reports/q2.csv", size: 200, class: "STANDARD_IA", sse: "SSE-S3" },
        Obj { key: "raw/blob.bin", size: 300, class: "GLACIER", sse: "NONE" },
        Obj { key: "private/key+name.txt", size: 400, class: "STANDARD", sse: "SSE-C" },
    ];
    assert_eq!(object_fields(&inventoried), expected_objects(&reported, &[], true), "estate-o-inventoried");

    // The statistics sum what the buckets hold; the destination bucket holds the report.
    let stats = admin.ctl_json(None, &["stats"])?;
    let total: i64 = ["estate-o-mixed", "estate-o-versioned", "estate-o-inventoried", "estate-o-inventory-dest"]
        .iter()
        .map(|b| bucket(b).unwrap()["objectCount"].as_i64().unwrap())
        .sum();
    assert_eq!(stats["objectCount"], total);

    // A manual object refresh recounts now, without parts, encryption unknown.
    admin.ctl(None, &["refresh", "--objects", "estate-o-mixed"])?;
    let refreshed = eventually(Duration::from_secs(30), "the manual object refresh", || async {
        let b = bucket("estate-o-mixed")?;
        Ok((b["objectStatisticsSource"] == "MANUAL_REFRESH").then_some(b))
    })
    .await?;
    assert_eq!(object_fields(&refreshed), expected_objects(MIXED, &[], false));

    // The refresh window: a refresh right after one is answered with its time, not run.
    let first = admin.ctl_json(None, &["refresh"])?;
    let scope = &first["scopes"][0];
    assert_eq!(scope["requested"], false, "{first}");
    assert!(scope["lastRefresh"].is_string(), "{first}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = admin.ctl_json(None, &["refresh"])?;
    assert_eq!(later["scopes"][0]["requested"], true, "{later}");
    let again = admin.ctl_json(None, &["refresh"])?;
    assert_eq!(again["scopes"][0]["requested"], false, "{again}");
    // That refresh re-reads bucket metadata only: the object statistics stay those of the
    // manual object refresh (they change on the daily cycle or through RefreshObjectMetadata).
    let before = scope["lastRefresh"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(30), "the requested refresh to complete", || async {
        let members = admin.ctl_json(None, &["members"])?;
        let updated = members["members"][0]["regions"][0]["lastUpdated"].as_str().unwrap_or_default().to_owned();
        Ok((updated > before).then_some(()))
    })
    .await?;
    let after = bucket("estate-o-mixed")?;
    assert_eq!(after["objectStatisticsSource"], "MANUAL_REFRESH", "{after}");
    assert_eq!(object_fields(&after), expected_objects(MIXED, &[], false));
    Ok(())
}

fn all_refreshed_one(admin: &Admin) -> anyhow::Result<bool> {
    let members = admin.ctl_json(None, &["members"])?;
    Ok(members["members"].as_array().into_iter().flatten().any(|m| {
        m["regions"].as_array().is_some_and(|r| !r.is_empty() && r.iter().all(|r| !r["lastUpdated"].is_null()))
    }))
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_object_refresh_is_limited_to_30000_objects() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    let s3 = moto.s3(&creds, "us-east-1");
    seed_bucket(&moto, &creds, &Spec::plain(A, "estate-o-large".into())).await?;
    let keys: Vec<String> = (0..30_001).map(|i| format!("k/{i:05}.txt")).collect();
    let puts =
        futures_util::stream::iter(
            keys.iter().map(|key| {
                let s3 = s3.clone();
                async move {
                    s3.put_object().bucket("estate-o-large").key(key).body(ByteStream::from_static(b"1")).send().await
                }
            }),
        )
        .buffer_unordered(32);
    let results: Vec<_> = puts.collect().await;
    assert!(results.iter().all(Result::is_ok), "seeding 30,001 objects");

    let dir = tempfile::tempdir()?;
    let admin = Admin::start(&dir.path().join("data"), None)?;
    let _agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &["--head-object-budget", "100"])?;
    let large = eventually(Duration::from_secs(180), "the large bucket to be counted", || async {
        let b = admin.ctl_json(None, &["bucket", "estate-o-large"])?;
        Ok(b["objectCount"].as_i64().map(|_| b))
    })
    .await?;
    assert_eq!(large["objectCount"], 30_001);
    assert_eq!(large["objectStatisticsSource"], "SAMPLED");
    assert_eq!(large["objectCountByEncryptionType"]["unknown"], 30_001 - 100);
    let err = admin.ctl(None, &["refresh", "--objects", "estate-o-large"]).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("FailedPrecondition") || message.contains("failed precondition"), "{message}");
    assert!(message.contains("30001 objects") && message.contains("at most 30000"), "{message}");
    let err = admin.ctl(None, &["refresh", "--objects", "no-such-bucket"]).unwrap_err();
    assert!(format!("{err:#}").contains("no bucket named `no-such-bucket`"), "{err:#}");
    Ok(())
}
