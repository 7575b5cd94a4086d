//! Event latency benchmark (issues: change monitoring, findings delivery). Publishes 1,000
//! CloudTrail-shaped events through moto's EventBridge → SQS path, each after a real change
//! that makes a bucket public, and measures from publication to the finding's arrival over
//! WatchFindings, and to its delivery by the administrator's `eventbridge` sink (read back
//! from a custom bus's rule → SQS queue in moto: the latency a consumer of the bus sees, its
//! SQS long poll included).
//! Run: `cargo run --release -p estate-tests --bin event-latency` (after
//! `cargo build --release --workspace --bins`).

use std::time::{Duration, Instant};

use aws_sdk_s3::types::BucketCannedAcl;
use estate_common::pb::{self, findings_service_client::FindingsServiceClient};
use estate_tests::{eventually, Admin, Agent, Moto};
use serde_json::json;

const ACCOUNT: &str = "111111111111";
const BUCKETS: usize = 100;
const EVENTS: usize = 1000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds = moto.credentials(ACCOUNT).await?;
    let queue = moto.event_queue(&creds, "estate-events").await?;
    let bridge = moto.eventbridge(&creds);
    let s3 = moto.s3(&creds, "us-east-1");
    for i in 0..BUCKETS {
        s3.create_bucket().bucket(format!("estate-lat-{i:03}")).send().await?;
    }
    let admin_creds = aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "bench");
    let delivered_queue = moto.findings_bus(&admin_creds, "estate-findings", "estate-delivered").await?;
    let sqs = moto.sqs(&admin_creds);
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("estate.toml");
    std::fs::write(
        &config,
        "version = 1\n[[sinks]]\nkind = \"eventbridge\"\nname = \"bus\"\nevent_bus = \"estate-findings\"\nregion = \"us-east-1\"\n",
    )?;
    let admin = Admin::start_with_env(
        &dir.path().join("data"),
        None,
        &["--config", config.to_str().unwrap_or_default(), "--aws-endpoint-url", &moto.endpoint],
        &[("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")],
    )?;
    let _agent = Agent::start(
        &admin,
        &moto,
        &creds,
        None,
        &["us-east-1"],
        &["--events-queue-url", &queue, "--events-wait-seconds", "20"],
    )?;
    eventually(Duration::from_secs(120), "the first refresh", || async {
        let members = admin.ctl_json(None, &["members"])?;
        Ok(members["members"][0]["regions"][0]["lastUpdated"].is_string().then_some(()))
    })
    .await?;
    let mut client = FindingsServiceClient::connect(admin.grpc.clone()).await?;
    let mut watch = client.watch_findings(pb::WatchFindingsRequest { cursor: 0 }).await?.into_inner();

    // Every bucket becomes public once (a new finding); later events repeat the change (an
    // updated finding, count + 1). One event in flight at a time.
    let mut latencies = Vec::with_capacity(EVENTS);
    let mut delivered = Vec::with_capacity(EVENTS);
    let started = Instant::now();
    for n in 0..EVENTS {
        let bucket = format!("estate-lat-{:03}", n % BUCKETS);
        if n < BUCKETS {
            s3.put_bucket_acl().bucket(&bucket).acl(BucketCannedAcl::PublicRead).send().await?;
        }
        let detail = json!({
            "eventSource": "s3.amazonaws.com", "eventName": "PutBucketAcl", "awsRegion": "us-east-1",
            "eventTime": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?,
            "eventID": format!("00000000-0000-4000-8000-{n:012}"), "recipientAccountId": ACCOUNT,
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111111111111:user/bench"},
            "requestParameters": {"bucketName": bucket},
        });
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .source("aws.s3")
            .detail_type("AWS API Call via CloudTrail")
            .detail(detail.to_string())
            .build();
        let published = Instant::now();
        bridge.put_events().entries(entry).send().await?;
        let message = tokio::time::timeout(Duration::from_secs(30), watch.message()).await??;
        let finding = message.and_then(|m| m.finding).ok_or_else(|| anyhow::anyhow!("the watch ended"))?;
        anyhow::ensure!(
            finding.bucket_name == bucket,
            "finding for {} while waiting for {bucket}",
            finding.bucket_name
        );
        latencies.push(published.elapsed());
        // The same change, delivered to the bus: the finding's ID at this count.
        let wanted = (finding.id.clone(), finding.count);
        let arrived = 'found: loop {
            anyhow::ensure!(published.elapsed() < Duration::from_secs(30), "no delivery of {wanted:?} in 30 s");
            let out = sqs
                .receive_message()
                .queue_url(&delivered_queue)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await?;
            let mut hit = None;
            for m in out.messages() {
                sqs.delete_message()
                    .queue_url(&delivered_queue)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await?;
                let event: serde_json::Value = serde_json::from_str(m.body().unwrap_or_default())?;
                if event["detail"]["id"] == wanted.0.as_str() && event["detail"]["count"] == wanted.1 {
                    hit = Some(published.elapsed());
                }
            }
            if let Some(at) = hit {
                break 'found at;
            }
        };
        delivered.push(arrived);
    }
    let total = started.elapsed();
    latencies.sort();
    delivered.sort();
    println!("event latency benchmark: {EVENTS} events over {BUCKETS} buckets, one in flight at a time");
    println!(
        "publication → finding over WatchFindings: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({:.1} s in all)",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
        total.as_secs_f64()
    );
    println!(
        "publication → delivered to EventBridge (read from the bus's SQS target): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&delivered, 0.5).as_secs_f64() * 1e3,
        percentile(&delivered, 0.99).as_secs_f64() * 1e3,
        delivered.last().unwrap().as_secs_f64() * 1e3,
    );
    Ok(())
}
