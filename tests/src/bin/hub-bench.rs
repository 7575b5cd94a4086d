//! `estate-agent hub` at organization scale (issue 26): ACCOUNTS accounts × 2 Regions ×
//! BUCKETS buckets in moto, one hub serving them all. Measures the time until every account's
//! every Region has completed its first refresh in the administrator, the hub's peak memory
//! and CPU time, and its S3 and STS requests per account; then, in the same run against the
//! same moto, a plain concurrent client making the same calls with the same concurrency:
//! moto is the bottleneck, and the ratio of the two times says what the hub adds to it.
//!
//! Run: `cargo build --release --workspace --bins && target/release/hub-bench`.
//! `ESTATE_BENCH_ACCOUNTS` (1000), `ESTATE_BENCH_BUCKETS` (10 per Region) and
//! `ESTATE_BENCH_CONCURRENCY` (16 buckets read at once) change the sizes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use estate_tests::{eventually_every, peak_rss_mib, Admin, Hub, Moto};
use futures_util::StreamExt;

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn account(i: usize) -> String {
    format!("{:012}", 300_000_000_000 + i)
}

fn bucket(account: &str, region: &str, i: usize) -> String {
    format!("hb-{account}-{region}-{i:02}")
}

/// The process's CPU time so far (user + system), in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which ends with the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // /proc counts in USER_HZ, which Linux fixes at 100 per second for user space.
    Some(ticks / 100.0)
}

/// Creates every account's buckets.
async fn seed(moto: &Moto, accounts: usize, buckets: usize) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..accounts)
        .map(|i| async move {
            let id = account(i);
            let creds = moto.credentials(&id).await?;
            for region in REGIONS {
                let s3 = moto.s3(&creds, region);
                for b in 0..buckets {
                    let mut create = s3.create_bucket().bucket(bucket(&id, region, b));
                    if region != "us-east-1" {
                        create = create.create_bucket_configuration(
                            CreateBucketConfiguration::builder()
                                .location_constraint(BucketLocationConstraint::from(region))
                                .build(),
                        );
                    }
                    create.send().await.with_context(|| format!("creating a bucket of {id}"))?;
                }
            }
            Ok(())
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The hub's run: (seconds to converge, peak MiB, CPU seconds, S3 and STS requests per
/// account by operation).
async fn hub_run(moto: &Moto, accounts: usize, buckets: usize, concurrency: usize) -> anyhow::Result<HubFigures> {
    let dir = tempfile::tempdir()?;
    let admin = Admin::start(&dir.path().join("data"), None)?;
    let ids: Vec<String> = (0..accounts).map(account).collect();
    let started = Instant::now();
    let hub = Hub::start(
        &admin,
        moto,
        &REGIONS,
        &[
            "--accounts",
            &ids.join(","),
            "--concurrency",
            &concurrency.to_string(),
            "--account-concurrency",
            "8",
            "--refresh-interval",
            "24h",
            "--head-object-budget",
            "0",
        ],
    )?;
    let expected = accounts * REGIONS.len();
    eventually_every(Duration::from_secs(3600), Duration::from_secs(1), "every account's refreshes", || async {
        Ok((hub.process.log_text().matches("refresh complete").count() >= expected).then_some(()))
    })
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let log = hub.process.log_text();
    if let Ok(path) = std::env::var("ESTATE_BENCH_KEEP_LOG") {
        std::fs::write(path, &log)?;
    }
    // When the hub logged its first read and its last completion (RFC 3339, at each line's start).
    let at = |line: &str| {
        let stamp = line.split_whitespace().next()?;
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()
    };
    let first_read = log.lines().find(|l| l.contains("refresh started")).and_then(at);
    let last_done = log.lines().rfind(|l| l.contains("refresh complete")).and_then(at);
    let first_line = log.lines().next().and_then(at);
    if let (Some(start), Some(first), Some(last)) = (first_line, first_read, last_done) {
        println!("hub start to first read: {:.1} s", (first - start).as_seconds_f64());
        println!("hub first read to last completion: {:.1} s", (last - first).as_seconds_f64());
    }
    let pid = hub.process.child.id();
    let (peak, cpu) = (peak_rss_mib(pid).unwrap_or(0.0), cpu_seconds(pid).unwrap_or(0.0));
    // The administrator's view: every account complete, every bucket there (the last
    // acknowledgements may follow the log lines by a moment).
    eventually_every(Duration::from_secs(120), Duration::from_secs(2), "the administrator's view", || async {
        let members = admin.ctl_json(None, &["members"])?;
        let members = members["members"].as_array().context("no members")?;
        let complete = members.iter().filter(|m| m["lastUpdated"].is_string()).count();
        let stored: u64 = members.iter().map(|m| m["bucketCount"].as_u64().unwrap_or(0)).sum();
        Ok((complete == accounts && stored == (accounts * REGIONS.len() * buckets) as u64).then_some(()))
    })
    .await?;
    // Each account's last "refresh complete" line has its requests so far.
    let mut s3 = std::collections::BTreeMap::<String, u64>::new();
    let mut sts = std::collections::BTreeMap::<String, u64>::new();
    let mut last: std::collections::HashMap<String, (serde_json::Value, serde_json::Value)> = Default::default();
    for line in hub.process.log_text().lines().filter(|l| l.contains("refresh complete")) {
        let field = |name: &str| {
            line.split(&format!("{name}=")).nth(1).and_then(|rest| {
                let end = rest.find('}').map_or(rest.len(), |i| i + 1);
                serde_json::from_str::<serde_json::Value>(&rest[..end]).ok()
            })
        };
        let account = line.split("account=").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("?");
        if let (Some(s3_so_far), Some(sts_so_far)) = (field("s3_requests_so_far"), field("sts_requests_so_far")) {
            last.insert(account.to_owned(), (s3_so_far, sts_so_far));
        }
    }
    for (s3_so_far, sts_so_far) in last.values() {
        for (totals, counts) in [(&mut s3, s3_so_far), (&mut sts, sts_so_far)] {
            for (op, n) in counts.as_object().into_iter().flatten() {
                *totals.entry(op.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
    }
    anyhow::ensure!(last.len() == accounts, "request counts for {} of {accounts} accounts", last.len());
    Ok(HubFigures { seconds, peak, cpu, s3, sts })
}

struct HubFigures {
    seconds: f64,
    peak: f64,
    cpu: f64,
    s3: std::collections::BTreeMap<String, u64>,
    sts: std::collections::BTreeMap<String, u64>,
}

/// The plain client: for each account, its credentials (AssumeRole, GetCallerIdentity), the
/// two ListBuckets, the account's public
/// access block, and for each bucket the hub's calls (eight configuration reads at once, then
/// the three object-statistics calls), `concurrency` buckets at once over every account.
async fn baseline(moto: &Moto, accounts: usize, concurrency: usize) -> anyhow::Result<(f64, u64)> {
    let requests = Arc::new(AtomicU64::new(0));
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..accounts)
        .map(|i| {
            let (requests, limit) = (Arc::clone(&requests), Arc::clone(&limit));
            async move {
                let id = account(i);
                let count = |n: u64| requests.fetch_add(n, Ordering::Relaxed);
                let creds = moto.credentials(&id).await?;
                moto.sts(&creds).get_caller_identity().send().await?;
                count(2);
                // The hub's two ListBuckets: one for the canonical ID, one for the listing.
                let home = moto.s3(&creds, REGIONS[0]);
                home.list_buckets().max_buckets(1).send().await?;
                let listed = home.list_buckets().send().await?;
                count(2);
                moto.s3control(&creds).get_public_access_block().account_id(&id).send().await.ok();
                count(1);
                let names: Vec<(String, String)> = listed
                    .buckets()
                    .iter()
                    .map(|b| {
                        (b.name().unwrap_or_default().to_owned(), b.bucket_region().unwrap_or("us-east-1").to_owned())
                    })
                    .collect();
                let reads = names.iter().map(|(name, region)| {
                    let (limit, s3, id) = (Arc::clone(&limit), moto.s3(&creds, region), id.clone());
                    async move {
                        let _permit = limit.acquire().await?;
                        let b = name.as_str();
                        let _ = tokio::join!(
                            s3.get_bucket_tagging().bucket(b).expected_bucket_owner(&id).send(),
                            s3.get_bucket_versioning().bucket(b).expected_bucket_owner(&id).send(),
                            s3.get_bucket_encryption().bucket(b).expected_bucket_owner(&id).send(),
                            s3.get_public_access_block().bucket(b).expected_bucket_owner(&id).send(),
                            s3.get_bucket_acl().bucket(b).expected_bucket_owner(&id).send(),
                            s3.get_bucket_ownership_controls().bucket(b).expected_bucket_owner(&id).send(),
                            s3.get_bucket_policy().bucket(b).expected_bucket_owner(&id).send(),
                            s3.get_bucket_replication().bucket(b).expected_bucket_owner(&id).send(),
                        );
                        let _ =
                            s3.list_bucket_inventory_configurations().bucket(b).expected_bucket_owner(&id).send().await;
                        let _ = s3.list_objects_v2().bucket(b).expected_bucket_owner(&id).send().await;
                        let _ = s3.list_multipart_uploads().bucket(b).expected_bucket_owner(&id).send().await;
                        anyhow::Ok(11u64)
                    }
                });
                let done: Vec<anyhow::Result<u64>> = futures_util::future::join_all(reads).await;
                for d in done {
                    count(d?);
                }
                Ok(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<()>>()?;
    Ok((started.elapsed().as_secs_f64(), requests.load(Ordering::Relaxed)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let accounts = env("ESTATE_BENCH_ACCOUNTS", 1000);
    let buckets = env("ESTATE_BENCH_BUCKETS", 10);
    let concurrency = env("ESTATE_BENCH_CONCURRENCY", 16);
    let moto = Moto::start()?;
    let seeding = Instant::now();
    seed(&moto, accounts, buckets).await?;
    println!(
        "hub benchmark: {accounts} accounts x {} Regions x {buckets} buckets, concurrency {concurrency}",
        REGIONS.len()
    );
    println!("seeded in: {:.1} s", seeding.elapsed().as_secs_f64());

    let hub = hub_run(&moto, accounts, buckets, concurrency).await?;
    let (plain, plain_requests) = baseline(&moto, accounts, concurrency).await?;
    let per_account =
        |counts: &std::collections::BTreeMap<String, u64>| counts.values().sum::<u64>() as f64 / accounts as f64;
    println!("hub converged in: {:.1} s", hub.seconds);
    println!("hub peak RSS MiB: {:.0}", hub.peak);
    println!("hub CPU seconds: {:.1}", hub.cpu);
    println!("plain client in: {plain:.1} s");
    println!("hub / plain client: {:.2}", hub.seconds / plain);
    println!("hub S3 requests per account: {:.2}", per_account(&hub.s3));
    println!("hub STS requests per account: {:.2}", per_account(&hub.sts));
    println!("plain client requests per account: {:.2}", plain_requests as f64 / accounts as f64);
    println!("hub S3 requests by operation: {}", serde_json::to_string(&hub.s3)?);
    println!("hub STS requests by operation: {}", serde_json::to_string(&hub.sts)?);
    Ok(())
}
