//! Security Hub export benchmark (issue 24): 10,000 findings exported by the `securityhub`
//! sink to moto's Security Hub, with the time it took and the calls it made.
//!
//! Set-up: 5,000 buckets created public after the first inventory raise 10,000 findings
//! (S3BucketPublic and S3BlockPublicAccessDisabled each) with no sink configured. The
//! administrator is then restarted with a `securityhub` sink that starts with every finding
//! it holds, and the export is timed from the restart to the sink's lag reaching 0; the calls
//! are its `estate_sink_batches_total` (and failures), and moto's Security Hub is read back
//! with boto3 to count what arrived.
//! Run: `cargo build --release --workspace --bins && target/release/securityhub-export`.

use std::time::{Duration, Instant};

use estate_tests::{eventually, Admin, Agent, Moto};

const ACCOUNT: &str = "111111111111";
const BUCKETS: usize = 5000;

fn metric(admin: &Admin, name: &str) -> anyhow::Result<f64> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", &format!("{}/metrics", admin.http)])
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    let line = text.lines().find(|l| l.starts_with(name)).ok_or_else(|| anyhow::anyhow!("no {name} in /metrics"))?;
    Ok(line.rsplit_once(' ').map(|(_, v)| v.parse()).transpose()?.unwrap_or(f64::NAN))
}

/// How many findings moto's Security Hub holds (boto3, paged by 100).
fn imported(moto: &Moto) -> anyhow::Result<usize> {
    let script = r#"
import boto3, sys
hub = boto3.client("securityhub", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
count, token = 0, None
while True:
    page = hub.get_findings(MaxResults=100, **({"NextToken": token} if token else {}))
    count += len(page["Findings"])
    token = page.get("NextToken")
    if not token:
        break
print(count)
"#;
    let python = estate_tests::repo_root().join(".venv/bin/python");
    let out = std::process::Command::new(python).args(["-c", script, &moto.endpoint]).output()?;
    anyhow::ensure!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds = moto.credentials(ACCOUNT).await?;
    let s3 = moto.s3(&creds, "us-east-1");
    s3.create_bucket().bucket("estate-hub-seed").send().await?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let env = [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")];
    let mut admin = Admin::start_with_env(&data, None, &["--min-refresh-interval", "0"], &env)?;
    let agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &["--concurrency", "32"])?;
    eventually(Duration::from_secs(120), "the first refresh", || async {
        let members = admin.ctl_json(None, &["members"])?;
        Ok(members["members"][0]["regions"][0]["lastUpdated"].is_string().then_some(()))
    })
    .await?;
    let created = Instant::now();
    let names: Vec<String> = (0..BUCKETS).map(|i| format!("estate-hub-{i:04}")).collect();
    for chunk in names.chunks(50) {
        let creates = chunk
            .iter()
            .map(|name| s3.create_bucket().bucket(name).acl(aws_sdk_s3::types::BucketCannedAcl::PublicRead).send());
        for result in futures_util::future::join_all(creates).await {
            result?;
        }
    }
    println!("created {BUCKETS} public buckets in {:.1} s", created.elapsed().as_secs_f64());
    admin.ctl(None, &["refresh"])?;
    let raised = Instant::now();
    eventually(Duration::from_secs(1800), "10,000 findings raised", || async {
        Ok((metric(&admin, "estate_findings_open")? >= (2 * BUCKETS) as f64).then_some(()))
    })
    .await?;
    println!("raised {} findings in {:.1} s", 2 * BUCKETS, raised.elapsed().as_secs_f64());
    drop(agent);
    admin.process.kill();

    // The same store, now with the sink: it starts with every finding held.
    let config = dir.path().join("estate.toml");
    std::fs::write(
        &config,
        "version = 1\n[[sinks]]\nkind = \"securityhub\"\nname = \"hub\"\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\n",
    )?;
    let started = Instant::now();
    let admin = Admin::start_with_env(
        &data,
        None,
        &["--config", config.to_str().unwrap_or_default(), "--aws-endpoint-url", &moto.endpoint],
        &env,
    )?;
    eventually(Duration::from_secs(1800), "the export", || async {
        let lag = metric(&admin, "estate_sink_lag")?;
        let delivered = metric(&admin, "estate_sink_delivered_total")?;
        Ok((lag == 0.0 && delivered >= (2 * BUCKETS) as f64).then_some(()))
    })
    .await?;
    let took = started.elapsed();
    let calls = metric(&admin, "estate_sink_batches_total")?;
    let failures = metric(&admin, "estate_sink_failures_total")?;
    let delivered = metric(&admin, "estate_sink_delivered_total")?;
    let held = imported(&moto)?;
    println!("security hub export benchmark: {delivered} findings delivered, {held} held by moto's Security Hub");
    println!(
        "export of 10,000 findings (from the restart, the administrator's start included): {:.1} s",
        took.as_secs_f64()
    );
    println!("BatchImportFindings calls: {calls} ({failures} failed), {:.1} findings per call", delivered / calls);
    anyhow::ensure!(held == 2 * BUCKETS, "moto holds {held} findings, not {}", 2 * BUCKETS);
    Ok(())
}
