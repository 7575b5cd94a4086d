//! Fault injection over the real binaries. The administrator is SIGKILLed at seeded random
//! points while two agents stream refreshes, bucket policies are being analysed, the
//! organization changes (config rewritten, SIGHUP) and findings are being raised; one agent is
//! SIGKILLed and restarted mid-refresh now and then. After every kill, `estate-admin verify`
//! reads every record and checks the statistics against a recomputation; at the end no
//! acknowledged bucket is missing and no finding is lost or counted twice.
//!
//! `ESTATE_FAULT_KILLS` sets the number of kill points (12 here; the long run in
//! BENCHMARKS.md uses 60), `ESTATE_FAULT_SEED` the seed that places them.

use std::process::Command;

use aws_sdk_s3::types::BucketCannedAcl;

use super::*;

const PER_ACCOUNT: usize = 30;
/// Buckets of A made public after the first refresh: one finding each, counted once.
const MADE_PUBLIC: usize = 4;

/// A small deterministic generator, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn public_policy(bucket: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": format!("arn:aws:s3:::{bucket}/*")}]})
    .to_string()
}

/// The config of `main.rs`, with account C inside the organization or not.
fn write_config_with(dir: &std::path::Path, with_c: bool) -> std::path::PathBuf {
    let path = write_config(dir);
    if !with_c {
        let text = std::fs::read_to_string(&path).unwrap().replace(", \"333333333333\"]", "]");
        std::fs::write(&path, text).unwrap();
    }
    path
}

fn verify(admin: &Admin) -> anyhow::Result<String> {
    let out = Command::new(estate_tests::binary("estate-admin"))
        .args(["verify", "--data-dir"])
        .arg(&admin.data_dir)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success() && stdout.contains("equal to a recomputation"),
        "verify failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_administrator_at_seeded_points_loses_nothing() -> anyhow::Result<()> {
    let kills = env_u64("ESTATE_FAULT_KILLS", 12);
    let seed = env_u64("ESTATE_FAULT_SEED", 20_261_202);
    let mut rng = Rng(seed | 1);
    let moto = Moto::start()?;
    let creds_a = moto.credentials(A).await?;
    let creds_b = moto.credentials(B).await?;
    for (account, creds) in [(A, &creds_a), (B, &creds_b)] {
        for i in 0..PER_ACCOUNT {
            let name = format!("estate-f-{}-{i:02}", &account[..3]);
            seed_bucket(&moto, creds, &Spec::plain(account, name.clone())).await?;
            if i % 5 == 0 {
                // Policies keep the analysers busy through the kills.
                moto.s3(creds, "us-east-1")
                    .put_bucket_policy()
                    .bucket(&name)
                    .policy(public_policy(&name))
                    .send()
                    .await?;
            }
        }
    }
    let dir = tempfile::tempdir()?;
    let config = write_config_with(dir.path(), true);
    let mut admin = Admin::start(&dir.path().join("data"), Some(&config))?;
    let token = Some(CLIENT_TOKEN);
    let agent_args = ["--refresh-interval", "2s"];
    let _agent_b = Agent::start(&admin, &moto, &creds_b, Some(&agent_token(B)), &["us-east-1"], &agent_args)?;
    let mut agent_a = Agent::start(&admin, &moto, &creds_a, Some(&agent_token(A)), &["us-east-1"], &agent_args)?;
    let total = 2 * PER_ACCOUNT as i64;
    eventually(Duration::from_secs(60), "the first refresh of both accounts", || async {
        Ok((admin.ctl_json(token, &["stats"])?["bucketCount"] == total).then_some(()))
    })
    .await?;
    // Changes that raise findings while the kills go on.
    let s3 = moto.s3(&creds_a, "us-east-1");
    for i in 0..MADE_PUBLIC {
        let name = format!("estate-f-111-{:02}", 1 + i * 5);
        s3.put_bucket_acl().bucket(&name).acl(BucketCannedAcl::PublicRead).send().await?;
    }

    let mut with_c = true;
    let mut verified = 0;
    for point in 0..kills {
        if point % 4 == 1 {
            // An organization change, applied through the committer, in flight at the kill.
            with_c = !with_c;
            write_config_with(dir.path(), with_c);
            admin.hangup()?;
        }
        if point % 3 == 2 {
            agent_a.process.kill();
            agent_a = Agent::start(&admin, &moto, &creds_a, Some(&agent_token(A)), &["us-east-1"], &agent_args)?;
        }
        let delay = Duration::from_millis(100 + rng.next() % 1900);
        tokio::time::sleep(delay).await;
        admin.process.kill();
        verify(&admin).map_err(|e| e.context(format!("kill point {point} (seed {seed}, after {delay:?})")))?;
        verified += 1;
        admin.kill_and_restart()?;
    }

    // Everything acknowledged is there, the findings are each there once, counted once.
    let stats = eventually(Duration::from_secs(90), "the inventory after the last restart", || async {
        let stats = admin.ctl_json(token, &["stats"])?;
        let findings = admin.ctl_json(token, &["findings"])?;
        let public = findings["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["type"] == "Policy:IAMUser/S3BucketPublic")
            .count();
        let analysed = stats["bucketCountByEffectivePermission"]["unknown"] == 0;
        Ok((stats["bucketCount"] == total && analysed && public == MADE_PUBLIC).then_some((stats, findings)))
    })
    .await;
    let (stats, findings) = stats.map_err(|e| e.context(admin.process.log_text()))?;
    let expected_public = (PER_ACCOUNT as i64 + 4) / 5 * 2 + MADE_PUBLIC as i64;
    assert_eq!(stats["bucketCountByEffectivePermission"]["publiclyAccessible"], expected_public, "{stats}");
    for finding in findings["findings"].as_array().unwrap() {
        assert_eq!(finding["count"], 1, "a finding counted twice: {finding}");
    }
    let ids: BTreeSet<&str> =
        findings["findings"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), findings["findings"].as_array().unwrap().len(), "no finding stored twice");
    // Replaying the findings from the first sequence gives each, in order, with no gaps.
    // (Bounded in time: a missing finding would otherwise wait for the live feed forever.)
    let out = Command::new("timeout")
        .arg("20")
        .arg(estate_tests::binary("estatectl"))
        .args(["--endpoint", &admin.grpc, "--token", CLIENT_TOKEN, "--output", "json", "watch", "--cursor", "1"])
        .args(["--limit", &(ids.len() - 1).to_string()])
        .output()?;
    let replayed: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(replayed.len(), ids.len() - 1);
    assert!(replayed.iter().all(|f| ids.contains(f["id"].as_str().unwrap())));
    admin.process.kill();
    verify(&admin)?;
    println!("fault injection: {verified} kill points survived (seed {seed}), {total} buckets, {} findings", ids.len());
    Ok(())
}

/// Sends SIGTERM and waits at most `limit` for the process to exit; returns its status and
/// how long it took.
fn terminate(
    process: &mut estate_tests::Process,
    limit: Duration,
) -> anyhow::Result<(std::process::ExitStatus, Duration)> {
    let started = std::time::Instant::now();
    let status = Command::new("kill").args(["-TERM", &process.child.id().to_string()]).status()?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    loop {
        if let Some(status) = process.child.try_wait()? {
            return Ok((status, started.elapsed()));
        }
        anyhow::ensure!(started.elapsed() < limit, "{} still running {limit:?} after SIGTERM", process.name);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_agents_and_the_administrator_within_five_seconds_losing_nothing() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    for i in 0..20 {
        seed_bucket(&moto, &creds, &Spec::plain(A, format!("estate-s-{i:02}"))).await?;
    }
    let dir = tempfile::tempdir()?;
    let mut admin = Admin::start(&dir.path().join("data"), None)?;
    let streaming = ["--refresh-interval", "1s"];
    let mut agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &streaming)?;
    eventually(Duration::from_secs(60), "the first refresh", || async {
        Ok((admin.ctl_json(None, &["stats"])?["bucketCount"] == 20).then_some(()))
    })
    .await?;

    let (status, took) = terminate(&mut agent.process, Duration::from_secs(5))?;
    assert!(status.success(), "the agent exits 0 on SIGTERM: {status:?}\n{}", agent.process.log_text());
    println!("agent stopped in {took:?}");

    // The administrator, mid-stream: an agent refreshing every second is connected.
    let _agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &streaming)?;
    eventually(Duration::from_secs(30), "the agent to reconnect", || async {
        let members = admin.ctl_json(None, &["members"])?;
        Ok((members["members"][0]["connectionState"] == "CONNECTED").then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, took) = terminate(&mut admin.process, Duration::from_secs(5))?;
    assert!(status.success(), "the administrator exits 0 on SIGTERM: {status:?}\n{}", admin.process.log_text());
    println!("administrator stopped in {took:?}");
    verify(&admin)?;
    admin.kill_and_restart()?;
    let stats = admin.ctl_json(None, &["stats"])?;
    assert_eq!(stats["bucketCount"], 20, "nothing acknowledged was lost");
    Ok(())
}

/// S3 throttling, server errors, connection resets and a 10 s stall on chosen calls, through
/// a proxy in front of moto: the agent retries with backoff, every bucket arrives complete,
/// and a refresh under faults marks nothing deleted.
#[tokio::test(flavor = "multi_thread")]
async fn s3_faults_are_retried_and_nothing_is_lost_or_marked_deleted() -> anyhow::Result<()> {
    use estate_tests::faultproxy::{Fault, FaultProxy};
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    const COUNT: usize = 8;
    for i in 0..COUNT {
        let name = format!("estate-p-{i:02}");
        seed_bucket(&moto, &creds, &Spec::plain(A, name.clone())).await?;
        moto.s3(&creds, "us-east-1").put_bucket_policy().bucket(&name).policy(public_policy(&name)).send().await?;
    }
    let proxy = FaultProxy::start(&moto.endpoint).await?;
    let inject_round = || {
        proxy.inject("?policy", Fault::SlowDown, 3);
        proxy.inject("?acl", Fault::InternalError, 2);
        proxy.inject("?tagging", Fault::Reset, 2);
        proxy.inject("?versioning", Fault::Stall(Duration::from_secs(10)), 1);
    };
    inject_round();
    let dir = tempfile::tempdir()?;
    let admin = Admin::start(&dir.path().join("data"), None)?;
    let agent = Agent::start_at(&admin, &proxy.endpoint, &creds, None, &["us-east-1"], &["--refresh-interval", "3s"])?;
    let complete = || async {
        let listed = admin.ctl_json(None, &["buckets", "--all"])?;
        let buckets = listed["buckets"].as_array().unwrap().clone();
        let members = admin.ctl_json(None, &["members"])?;
        let updated = members["members"][0]["regions"][0]["lastUpdated"].as_str().map(str::to_owned);
        anyhow::Ok((buckets, updated))
    };
    let (buckets, first_update) =
        eventually(Duration::from_secs(90), "a complete refresh through the faults", || async {
            let (buckets, updated) = complete().await?;
            Ok((buckets.len() == COUNT && updated.is_some() && proxy.pending().is_empty())
                .then_some((buckets, updated)))
        })
        .await
        .map_err(|e| e.context(agent.process.log_text()))?;
    for bucket in &buckets {
        assert!(bucket["errorCode"].is_null(), "retried to completion: {bucket}");
    }
    assert_eq!(proxy.injected(), 8);

    // A second round of faults during later refreshes: nothing is marked deleted.
    inject_round();
    eventually(Duration::from_secs(90), "a later refresh through the faults", || async {
        let (buckets, updated) = complete().await?;
        assert_eq!(buckets.len(), COUNT, "a fault made a bucket disappear");
        Ok((proxy.pending().is_empty() && updated > first_update).then_some(()))
    })
    .await?;
    let (buckets, _) = complete().await?;
    assert_eq!(buckets.len(), COUNT);
    assert!(buckets.iter().all(|b| b["errorCode"].is_null() && b["publicAccess"]["effectivePermission"] == "PUBLIC"));
    println!("S3 faults: {} injected, {} requests forwarded, 0 buckets lost", proxy.injected(), proxy.forwarded());
    Ok(())
}

/// The administrator's disk fills up mid-stream (a small tmpfs, filled by a file): it stops
/// acknowledging, says why and exits non-zero; once space returns and it is started again,
/// the agent resends what was not acknowledged and nothing is missing.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_stops_acknowledging_and_loses_nothing_once_space_returns() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let disk = dir.path().join("disk");
    std::fs::create_dir_all(&disk)?;
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"]).arg(&disk).output()?;
    anyhow::ensure!(
        mounted.status.success(),
        "mounting a tmpfs for the full-disk test needs root (CAP_SYS_ADMIN): {}",
        String::from_utf8_lossy(&mounted.stderr)
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());

    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    for i in 0..10 {
        seed_bucket(&moto, &creds, &Spec::plain(A, format!("estate-d-{i:02}"))).await?;
    }
    let mut admin = Admin::start(&disk.join("data"), None)?;
    let _agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &["--refresh-interval", "1s"])?;
    eventually(Duration::from_secs(60), "the first refresh", || async {
        Ok((admin.ctl_json(None, &["stats"])?["bucketCount"] == 10).then_some(()))
    })
    .await?;

    // Fill the disk, then give the agent something new to report.
    let filler = disk.join("filler");
    let _ = Command::new("dd").arg("if=/dev/zero").arg(format!("of={}", filler.display())).args(["bs=1M"]).output()?;
    for i in 10..15 {
        seed_bucket(&moto, &creds, &Spec::plain(A, format!("estate-d-{i:02}"))).await?;
    }
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = admin.process.child.try_wait()? {
            break status;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "the administrator kept running on a full disk");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "a storage failure is an error exit: {status:?}");
    let log = admin.process.log_text();
    assert!(log.contains("storage failed") || log.contains("cannot make the state durable"), "it says why:\n{log}");
    assert!(log.to_lowercase().contains("no space left"), "and names the cause:\n{log}");
    let said: Vec<&str> = log.lines().filter(|l| l.contains("durable") || l.contains("storage failed")).collect();
    println!("full disk: exit {status:?}; {}", said.join(" | "));

    // Space returns; started again, the administrator takes the resent reports.
    std::fs::remove_file(&filler)?;
    admin.kill_and_restart()?;
    eventually(Duration::from_secs(60), "every bucket after the disk has space again", || async {
        Ok((admin.ctl_json(None, &["stats"])?["bucketCount"] == 15).then_some(()))
    })
    .await?;
    admin.process.kill();
    verify(&admin)?;
    Ok(())
}

/// An administrator restored from an older copy of its store (here the oldest: an empty
/// one) learns from each agent's hello which acknowledged refreshes it no longer holds, and
/// asks for those Regions at once instead of waiting for the next daily refresh.
#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_that_lost_acknowledged_data_asks_for_it_again() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    for i in 0..3 {
        seed_bucket(&moto, &creds, &Spec::plain(A, format!("estate-l-{i:02}"))).await?;
    }
    let dir = tempfile::tempdir()?;
    let mut admin = Admin::start(&dir.path().join("data"), None)?;
    // Only the first refresh runs by itself within the test.
    let _agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &["--refresh-interval", "1h"])?;
    let refreshed = |admin: &Admin| -> anyhow::Result<Option<()>> {
        let stats = admin.ctl_json(None, &["stats"])?;
        Ok((stats["bucketCount"] == 3 && stats["lastUpdated"].is_string()).then_some(()))
    };
    eventually(Duration::from_secs(60), "the first refresh", || async { refreshed(&admin) }).await?;
    // The statistics are published before the commit's flush and its acknowledgement: give the
    // acknowledgement a moment to reach the agent, so that it counts the refresh as stored.
    tokio::time::sleep(Duration::from_secs(1)).await;

    admin.process.kill();
    std::fs::remove_dir_all(&admin.data_dir)?;
    admin.kill_and_restart()?;
    // Nothing else would bring the buckets back within the hour: the agent's outbox is empty.
    eventually(Duration::from_secs(60), "the lost Region refreshed again", || async { refreshed(&admin) }).await?;
    let log = admin.process.log_text();
    assert!(log.contains("asking for those Regions again"), "the administrator says why it asked:\n{log}");
    // Object statistics were lost too: the recovery counts them, as the daily cycle does.
    let bucket = admin.ctl_json(None, &["bucket", "estate-l-00"])?;
    assert!(bucket["objectCount"].is_number(), "objects counted again: {bucket}");
    Ok(())
}
