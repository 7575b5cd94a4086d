//! Beyond Macie's 10,000-bucket limit: an account with 12,000 buckets is inventoried
//! completely, with ListBuckets read page by page and the agent's memory flat while it streams.

use futures_util::StreamExt;

use super::*;

const BUCKETS: usize = 12_000;

#[tokio::test(flavor = "multi_thread")]
async fn an_account_with_12000_buckets_is_inventoried_completely() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    let s3 = moto.s3(&creds, "us-east-1");
    let created: Vec<_> = futures_util::stream::iter((0..BUCKETS).map(|i| {
        let s3 = s3.clone();
        async move { s3.create_bucket().bucket(format!("estate-s-{i:05}")).send().await }
    }))
    .buffer_unordered(32)
    .collect()
    .await;
    assert!(created.iter().all(Result::is_ok), "creating {BUCKETS} buckets");

    let dir = tempfile::tempdir()?;
    let admin = Admin::start(&dir.path().join("data"), None)?;
    let agent = Agent::start(
        &admin,
        &moto,
        &creds,
        None,
        &["us-east-1"],
        &["--concurrency", "32", "--outbox-capacity", "1024"],
    )?;
    // Some 130,000 S3 calls through moto on two cores: checked every 5 s, each check two
    // `estatectl` runs, so that polling does not slow what it waits for.
    estate_tests::eventually_every(
        Duration::from_secs(1_200),
        Duration::from_secs(5),
        "all 12,000 buckets",
        || async {
            let stats = admin.ctl_json(None, &["stats"])?;
            let members = admin.ctl_json(None, &["members"])?;
            let done = members["members"][0]["regions"][0]["lastUpdated"].is_string();
            if done && stats["bucketCount"] == BUCKETS {
                return Ok(Some(()));
            }
            anyhow::bail!("{} buckets so far, refresh completed: {done}", stats["bucketCount"])
        },
    )
    .await?;
    let names = admin.ctl_json(None, &["buckets", "--all", "--max-results", "1000", "--sort", "bucketName"])?;
    let names: Vec<&str> =
        names["buckets"].as_array().unwrap().iter().map(|b| b["bucketName"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..BUCKETS).map(|i| format!("estate-s-{i:05}")).collect();
    assert_eq!(names, expected.iter().map(String::as_str).collect::<Vec<_>>());
    // Listed in several pages, each after the last one's continuation token (moto's shim pages
    // as S3 does and logs each page).
    let log = moto.process.log_text();
    let pages: Vec<&str> = log.lines().filter(|l| l.contains("moto_server: ListBuckets page of")).collect();
    let continued = pages.iter().filter(|l| l.contains("continuation-token: yes")).count();
    assert!(
        pages.len() >= BUCKETS / 1000 && continued >= BUCKETS / 1000 - 1,
        "ListBuckets read page by page: {} pages, {continued} continued",
        pages.len()
    );
    let peak = estate_tests::peak_rss_mib(agent.process.child.id()).expect("the agent's /proc status");
    assert!(peak < 256.0, "the agent's memory stays bounded while streaming: peak {peak:.0} MiB");
    Ok(())
}
