//! Agent efficiency benchmark (issue: object statistics). Counts the S3 requests the agent
//! makes (its request-counting interceptor, logged per refresh), and measures its wall time
//! and peak memory, for a moto account of 1,000 buckets and for one bucket of 100,000
//! objects. Run: `cargo run --release -p estate-tests --bin agent-efficiency` (after
//! `cargo build --release --workspace --bins`). `ESTATE_BENCH_OBJECTS` overrides 100,000.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use estate_tests::{eventually, peak_rss_mib, Admin, Agent, Moto};
use futures_util::StreamExt;

/// Runs one agent until its first refresh completes; returns (seconds, peak MiB, per-op counts).
async fn measure(moto: &Moto, account: &str) -> anyhow::Result<(f64, f64, serde_json::Value)> {
    let creds = moto.credentials(account).await?;
    let dir = tempfile::tempdir()?;
    let admin = Admin::start(&dir.path().join("data"), None)?;
    let started = Instant::now();
    let agent = Agent::start(&admin, moto, &creds, None, &["us-east-1"], &["--concurrency", "16"])?;
    let line = eventually(Duration::from_secs(1800), "the refresh", || async {
        let log = agent.process.log_text();
        Ok(log.lines().find(|l| l.contains("refresh complete")).map(str::to_owned))
    })
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = peak_rss_mib(agent.process.child.id()).unwrap_or(0.0);
    let counts = line
        .split("s3_requests_so_far=")
        .nth(1)
        .and_then(|rest| serde_json::from_str(rest.trim()).ok())
        .unwrap_or(serde_json::Value::Null);
    Ok((seconds, peak, counts))
}

fn sum(counts: &serde_json::Value, ops: &[&str]) -> u64 {
    ops.iter().map(|op| counts[*op].as_u64().unwrap_or(0)).sum()
}

const BUCKET_LEVEL: &[&str] = &[
    "GetBucketTagging",
    "GetBucketVersioning",
    "GetBucketEncryption",
    "GetPublicAccessBlock",
    "GetBucketAcl",
    "GetBucketOwnershipControls",
    "GetBucketPolicy",
    "GetBucketPolicyStatus",
    "GetBucketReplication",
];
const OBJECT_LEVEL: &[&str] =
    &["ListBucketInventoryConfigurations", "ListObjectsV2", "HeadObject", "ListMultipartUploads", "ListParts"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let objects: usize = std::env::var("ESTATE_BENCH_OBJECTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let moto = Moto::start()?;

    // 1,000 buckets in one account.
    let creds = moto.credentials("111111111111").await?;
    let s3 = moto.s3(&creds, "us-east-1");
    let created: Vec<_> = futures_util::stream::iter((0..1000).map(|i| {
        let s3 = s3.clone();
        async move { s3.create_bucket().bucket(format!("estate-eff-{i:04}")).send().await }
    }))
    .buffer_unordered(16)
    .collect()
    .await;
    anyhow::ensure!(created.iter().all(Result::is_ok), "seeding 1,000 buckets");
    let (seconds, peak, counts) = measure(&moto, "111111111111").await?;
    let total: u64 = counts.as_object().map(|m| m.values().filter_map(|v| v.as_u64()).sum()).unwrap_or(0);
    println!("agent efficiency benchmark");
    println!("1,000 buckets: {seconds:.1} s wall, peak agent memory {peak:.0} MiB");
    println!(
        "  requests per bucket: {:.2} bucket-level metadata, {:.2} object statistics, {:.2} in all ({total} requests: {counts})",
        sum(&counts, BUCKET_LEVEL) as f64 / 1000.0,
        sum(&counts, OBJECT_LEVEL) as f64 / 1000.0,
        total as f64 / 1000.0,
    );

    // One bucket of `objects` objects, in a second account.
    let creds = moto.credentials("222222222222").await?;
    let s3 = moto.s3(&creds, "us-east-1");
    s3.create_bucket().bucket("estate-eff-objects").send().await?;
    let puts: Vec<_> = futures_util::stream::iter((0..objects).map(|i| {
        let s3 = s3.clone();
        async move {
            s3.put_object()
                .bucket("estate-eff-objects")
                .key(format!("data/{i:06}.csv"))
                .body(ByteStream::from_static(b"a,b\n"))
                .send()
                .await
        }
    }))
    .buffer_unordered(32)
    .collect()
    .await;
    anyhow::ensure!(puts.iter().all(Result::is_ok), "seeding {objects} objects");
    let (seconds, peak, counts) = measure(&moto, "222222222222").await?;
    let listing = sum(&counts, &["ListObjectsV2"]);
    let heads = sum(&counts, &["HeadObject"]);
    println!("{objects} objects in one bucket: {seconds:.1} s wall, peak agent memory {peak:.0} MiB");
    println!(
        "  per 1,000 objects: {:.2} ListObjectsV2 requests; HeadObject {heads} in all (the per-bucket encryption budget); {counts}",
        listing as f64 * 1000.0 / objects as f64
    );
    Ok(())
}
