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

use anyhow::Context as _;
use aws_sdk_s3::types::BucketCannedAcl;
use estate_tests::Acknowledged;

use super::findings::Events;
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
        out.status.success() && stdout.contains("equal to a recomputation") && stdout.contains("schema version 1"),
        "verify failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// Tags `bucket` `gen=<generation>` in moto and publishes the CloudTrail event that makes its
/// agent read it again (the agents of these tests refresh once a day: nothing else would).
async fn retag(
    s3: &aws_sdk_s3::Client,
    events: &Events,
    account: &str,
    bucket: &str,
    generation: usize,
) -> anyhow::Result<()> {
    let tag = Tag::builder().key("gen").value(generation.to_string()).build()?;
    s3.put_bucket_tagging().bucket(bucket).tagging(Tagging::builder().tag_set(tag).build()?).send().await?;
    events.publish(account, "PutBucketTagging", Some(bucket)).await?;
    Ok(())
}

/// The `gen` tag in an agent's words (`[("gen", "12")]`) or in the administrator's record.
fn generation_logged(tags: &str) -> Option<usize> {
    tags.strip_prefix("[(\"gen\", \"")?.split('"').next()?.parse().ok()
}

fn generation_stored(bucket: &Value) -> Option<usize> {
    let tags = bucket["tags"].as_array()?;
    tags.iter().find(|t| t["key"] == "gen")?["value"].as_str()?.parse().ok()
}

/// The newest generation of each bucket the administrator acknowledged to an agent, read from
/// the logs of every agent process so far.
fn acknowledged_generations(logs: &[std::path::PathBuf]) -> (BTreeMap<String, usize>, usize) {
    let mut newest = BTreeMap::new();
    let mut count = 0;
    for log in logs {
        for ack in Acknowledged::in_log(&std::fs::read_to_string(log).unwrap_or_default()) {
            count += 1;
            if let Some(generation) = generation_logged(&ack.tags) {
                let entry = newest.entry(ack.bucket).or_insert(generation);
                *entry = (*entry).max(generation);
            }
        }
    }
    (newest, count)
}

/// Every bucket of the administrator's inventory by name.
fn stored_buckets(admin: &Admin, token: Option<&str>) -> anyhow::Result<BTreeMap<String, Value>> {
    let listed = admin.ctl_json(token, &["buckets", "--all"])?;
    Ok(listed["buckets"]
        .as_array()
        .context("no buckets")?
        .iter()
        .map(|b| (b["bucketName"].as_str().unwrap_or_default().to_owned(), b.clone()))
        .collect())
}

/// Buckets whose acknowledged generation the store does not hold (nor a newer one).
fn lost_acknowledgements(acked: &BTreeMap<String, usize>, stored: &BTreeMap<String, Value>) -> Vec<String> {
    acked
        .iter()
        .filter(|(bucket, &generation)| {
            stored.get(*bucket).and_then(generation_stored).is_none_or(|held| held < generation)
        })
        .map(|(bucket, generation)| {
            let held = stored.get(bucket).and_then(generation_stored);
            format!("{bucket}: acknowledged gen={generation}, stored {held:?}")
        })
        .collect()
}

/// A bucket's record without what legitimately changes between two reads of the same facts.
fn without_volatile(bucket: &Value) -> Value {
    let mut bucket = bucket.clone();
    if let Some(b) = bucket.as_object_mut() {
        b.remove("lastUpdated");
        b.remove("tags");
    }
    bucket
}

/// Agents refresh once a day, so that nothing the administrator acknowledged and then lost is
/// sent again by a later refresh; the only reads during the kills are the ones CloudTrail
/// events cause. Every kill point starts a stream of changes (a new `gen` tag, one bucket every
/// 100 ms) that runs until the SIGKILL, so acknowledgements are always fresh at the kill.
/// After each restart, every snapshot any agent logged as acknowledged before the kill must be
/// in the store, generation by generation; at the end, every record is compared field by field
/// with the model (moto's tags, and the record read before the kills for everything else).
#[tokio::test(flavor = "multi_thread")]
async fn killing_the_administrator_at_seeded_points_loses_nothing() -> anyhow::Result<()> {
    let kills = env_u64("ESTATE_FAULT_KILLS", 12);
    let seed = env_u64("ESTATE_FAULT_SEED", 20_261_202);
    let mut rng = Rng(seed | 1);
    let moto = Moto::start()?;
    let creds_a = moto.credentials(A).await?;
    let creds_b = moto.credentials(B).await?;
    let mut names = Vec::new();
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
            names.push((account, name));
        }
    }
    let events_a = Events::create(&moto, &creds_a).await?;
    let events_b = Events::create(&moto, &creds_b).await?;
    let dir = tempfile::tempdir()?;
    let config = write_config_with(dir.path(), true);
    let mut admin = Admin::start(&dir.path().join("data"), Some(&config))?;
    let token = Some(CLIENT_TOKEN);
    let agent_args = |events: &Events| -> Vec<String> {
        ["--refresh-interval", "24h", "--events-wait-seconds", "1", "--events-queue-url", &events.queue]
            .map(str::to_owned)
            .to_vec()
    };
    let (args_a, args_b) = (agent_args(&events_a), agent_args(&events_b));
    let args_a: Vec<&str> = args_a.iter().map(String::as_str).collect();
    let args_b: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let agent_b = Agent::start(&admin, &moto, &creds_b, Some(&agent_token(B)), &["us-east-1"], &args_b)?;
    let mut agent_a = Agent::start(&admin, &moto, &creds_a, Some(&agent_token(A)), &["us-east-1"], &args_a)?;
    let mut logs = vec![agent_b.process.log.clone(), agent_a.process.log.clone()];
    let total = 2 * PER_ACCOUNT as i64;
    eventually(Duration::from_secs(60), "the first refresh of both accounts", || async {
        Ok((admin.ctl_json(token, &["stats"])?["bucketCount"] == total).then_some(()))
    })
    .await?;
    let before = stored_buckets(&admin, token)?;
    // Changes that raise findings while the kills go on.
    let s3_a = moto.s3(&creds_a, "us-east-1");
    let s3_b = moto.s3(&creds_b, "us-east-1");
    let mut made_public = BTreeSet::new();
    for i in 0..MADE_PUBLIC {
        let name = format!("estate-f-111-{:02}", 1 + i * 5);
        s3_a.put_bucket_acl().bucket(&name).acl(BucketCannedAcl::PublicRead).send().await?;
        events_a.publish(A, "PutBucketAcl", Some(&name)).await?;
        made_public.insert(name);
    }

    let mut with_c = true;
    let mut verified = 0;
    let mut generation = 0;
    let mut model: BTreeMap<String, usize> = BTreeMap::new();
    let mut checked = 0;
    for point in 0..kills {
        if point % 4 == 1 {
            // An organization change, applied through the committer, in flight at the kill.
            with_c = !with_c;
            write_config_with(dir.path(), with_c);
            admin.hangup()?;
        }
        if point % 3 == 2 {
            agent_a.process.kill();
            agent_a = Agent::start(&admin, &moto, &creds_a, Some(&agent_token(A)), &["us-east-1"], &args_a)?;
            logs.push(agent_a.process.log.clone());
        }
        // Changes until the kill, so that acknowledgements are in flight when it comes.
        let delay = Duration::from_millis(100 + rng.next() % 1900);
        let until = tokio::time::Instant::now() + delay;
        while tokio::time::Instant::now() < until {
            generation += 1;
            let (account, name) = &names[generation % names.len()];
            let (s3, events) = if *account == A { (&s3_a, &events_a) } else { (&s3_b, &events_b) };
            retag(s3, events, account, name, generation).await?;
            model.insert(name.clone(), generation);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        admin.process.kill();
        // What the agents were told is durable, read after the kill: all of it must be there.
        let (acked, acknowledgements) = acknowledged_generations(&logs);
        verify(&admin).map_err(|e| e.context(format!("kill point {point} (seed {seed}, after {delay:?})")))?;
        verified += 1;
        admin.kill_and_restart()?;
        let lost = lost_acknowledgements(&acked, &stored_buckets(&admin, token)?);
        anyhow::ensure!(
            lost.is_empty(),
            "kill point {point} (seed {seed}, after {delay:?}) lost acknowledged snapshots:\n{}",
            lost.join("\n")
        );
        checked = acknowledgements;
    }

    // Every change reaches its agent and is acknowledged (24 h refresh: only events carry them).
    let (acked, acknowledgements) =
        eventually(Duration::from_secs(90), "every change acknowledged to its agent", || async {
            let (acked, count) = acknowledged_generations(&logs);
            Ok(model.iter().all(|(bucket, generation)| acked.get(bucket) == Some(generation)).then_some((acked, count)))
        })
        .await
        .map_err(|e| e.context(format!("model {model:?}")))?;
    // ...and, acknowledged, is in the store at once: field by field against the model.
    let stored = stored_buckets(&admin, token)?;
    let lost = lost_acknowledgements(&acked, &stored);
    anyhow::ensure!(lost.is_empty(), "acknowledged snapshots missing at the end:\n{}", lost.join("\n"));
    assert_eq!(stored.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>(), "the same buckets");
    for (name, bucket) in &stored {
        let want = model.get(name).map(|g| json!([{"key": "gen", "value": g.to_string()}])).unwrap_or(json!([]));
        assert_eq!(bucket["tags"], want, "{name}: the tags of its last change");
        if !made_public.contains(name) {
            assert_eq!(without_volatile(bucket), without_volatile(&before[name]), "{name}: every other field");
        }
    }

    // The findings are each there once, counted once.
    let stats = eventually(Duration::from_secs(90), "the analyses after the last restart", || async {
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
    println!(
        "fault injection: {verified} kill points survived (seed {seed}), {total} buckets, {generation} changes, \
         {checked} acknowledgements checked at the kills and {acknowledgements} at the end, {} findings",
        ids.len()
    );
    Ok(())
}

/// Sends SIGTERM and waits for the process to exit (a generous ceiling, for a hung process, not
/// a budget: the time is printed); returns its status and how long it took.
fn terminate(process: &mut estate_tests::Process) -> anyhow::Result<(std::process::ExitStatus, Duration)> {
    let started = std::time::Instant::now();
    let status = Command::new("kill").args(["-TERM", &process.child.id().to_string()]).status()?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    loop {
        if let Some(status) = process.child.try_wait()? {
            return Ok((status, started.elapsed()));
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "{} still running after SIGTERM", process.name);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Retags the buckets one after another, every 50 ms, until stopped; the model is each
/// bucket's last generation.
struct Changer {
    model: std::sync::Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Changer {
    fn start(s3: aws_sdk_s3::Client, events: Events, account: &'static str, names: Vec<String>) -> Self {
        let model = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let written = std::sync::Arc::clone(&model);
        let task = tokio::spawn(async move {
            let mut generation = 0;
            while !*stopped.borrow() {
                generation += 1;
                let name = &names[generation % names.len()];
                retag(&s3, &events, account, name, generation).await?;
                written.lock().unwrap().insert(name.clone(), generation);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(())
        });
        Self { model, stop, task }
    }

    fn changes(&self) -> usize {
        self.model.lock().unwrap().values().copied().max().unwrap_or(0)
    }

    async fn finish(self) -> anyhow::Result<BTreeMap<String, usize>> {
        let _ = self.stop.send(true);
        self.task.await??;
        Ok(std::mem::take(&mut *self.model.lock().unwrap()))
    }
}

/// SIGTERM with reports in flight: agents refresh once a day and a stream of changes keeps
/// their events coming through both signals. Each process exits 0; whatever the agent was told
/// is durable before the administrator's SIGTERM is in the store after its restart; what was
/// in flight is resent; at the end the store holds every change.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_reports_in_flight_stops_agents_and_the_administrator_losing_nothing() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    let names: Vec<String> = (0..20).map(|i| format!("estate-s-{i:02}")).collect();
    for name in &names {
        seed_bucket(&moto, &creds, &Spec::plain(A, name.clone())).await?;
    }
    let events = Events::create(&moto, &creds).await?;
    let dir = tempfile::tempdir()?;
    let token = None;
    let mut admin = Admin::start(&dir.path().join("data"), None)?;
    let daily = ["--refresh-interval", "24h", "--events-wait-seconds", "1", "--events-queue-url", &events.queue];
    let mut agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &daily)?;
    let mut logs = vec![agent.process.log.clone()];
    eventually(Duration::from_secs(60), "the first refresh", || async {
        Ok((admin.ctl_json(None, &["stats"])?["bucketCount"] == 20).then_some(()))
    })
    .await?;
    let queue = events.queue.clone();
    let changer = Changer::start(moto.s3(&creds, "us-east-1"), events, A, names.clone());
    let acknowledged_count = |logs: &[std::path::PathBuf]| acknowledged_generations(logs).1;
    eventually(Duration::from_secs(60), "changes acknowledged to the agent", || async {
        Ok((acknowledged_count(&logs) > 20 + 5).then_some(()))
    })
    .await?;

    let (status, took) = terminate(&mut agent.process)?;
    assert!(status.success(), "the agent exits 0 on SIGTERM: {status:?}\n{}", agent.process.log_text());
    println!("agent stopped in {took:?} with changes streaming");

    // The administrator, mid-stream: the new agent's events keep coming.
    let daily = ["--refresh-interval", "24h", "--events-wait-seconds", "1", "--events-queue-url", &queue];
    let agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &daily)?;
    logs.push(agent.process.log.clone());
    let acknowledged_before = acknowledged_count(&logs);
    eventually(Duration::from_secs(60), "the new agent's changes acknowledged", || async {
        Ok((acknowledged_count(&logs) > acknowledged_before + 5).then_some(()))
    })
    .await?;
    let (status, took) = terminate(&mut admin.process)?;
    assert!(status.success(), "the administrator exits 0 on SIGTERM: {status:?}\n{}", admin.process.log_text());
    println!("administrator stopped in {took:?} with reports streaming");
    let (acked, _) = acknowledged_generations(&logs);
    verify(&admin)?;
    // Down long enough for the agent to queue changes it cannot send.
    let queued_from = changer.changes();
    eventually(Duration::from_secs(60), "changes made while the administrator is down", || async {
        Ok((changer.changes() >= queued_from + 20).then_some(()))
    })
    .await?;
    admin.kill_and_restart()?;
    let lost = lost_acknowledgements(&acked, &stored_buckets(&admin, token)?);
    anyhow::ensure!(lost.is_empty(), "acknowledged before SIGTERM, missing after:\n{}", lost.join("\n"));
    let resent = eventually(Duration::from_secs(60), "the agent to reconnect", || async {
        let log = agent.process.log_text();
        let unacked = log
            .lines()
            .filter(|l| l.contains("connected to the administrator"))
            .filter_map(|l| l.split(" unacked=").nth(1)?.split(' ').next()?.parse::<u64>().ok())
            .collect::<Vec<_>>();
        Ok((unacked.len() >= 2).then(|| unacked[unacked.len() - 1]))
    })
    .await?;
    assert!(resent > 0, "reports were in flight at the reconnect");

    let model = changer.finish().await?;
    eventually(Duration::from_secs(60), "every change acknowledged", || async {
        let (acked, _) = acknowledged_generations(&logs);
        Ok(model.iter().all(|(bucket, generation)| acked.get(bucket) == Some(generation)).then_some(()))
    })
    .await?;
    let stored = stored_buckets(&admin, token)?;
    assert_eq!(stored.len(), 20, "nothing acknowledged was lost");
    for (name, generation) in &model {
        assert_eq!(generation_stored(&stored[name]), Some(*generation), "{name}: its last change");
    }
    let changes = model.values().max().copied().unwrap_or(0);
    println!("SIGTERM: {changes} changes, {resent} reports resent after the administrator's restart");
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
        // The account's listing too: a failed ListBuckets must neither stop the refresh nor
        // mark a bucket deleted.
        proxy.inject("max-buckets=", Fault::InternalError, 2);
    };
    // Every faulted call was tried again until it went through (counted at the proxy, call by
    // call: a call given up on would leave its field unknown without any errorCode).
    let all_retried = |proxy: &FaultProxy| {
        let retries = proxy.retries();
        let given_up: Vec<&String> = retries.iter().filter(|(_, n)| *n == 0).map(|(c, _)| c).collect();
        assert!(given_up.is_empty(), "faulted calls never retried to success: {given_up:?}");
        retries
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
        assert_eq!(bucket["publicAccess"]["effectivePermission"], "PUBLIC", "its policy and ACL read: {bucket}");
        assert!(bucket["versioning"].is_boolean() && bucket["tags"].is_array(), "every field read: {bucket}");
    }
    assert_eq!(proxy.injected(), 10);
    let retries = all_retried(&proxy);
    assert!(retries.iter().any(|(call, _)| call.contains("max-buckets=")), "ListBuckets faulted: {retries:?}");

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
    let retries = all_retried(&proxy);
    println!("S3 faults: each faulted call and the attempts it took: {retries:?}");
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
    // The data directory is the small disk; the logs, beside it, are not on it.
    let disk = dir.path().join("data");
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
    let events = Events::create(&moto, &creds).await?;
    let mut admin = Admin::start(&disk, None)?;
    // A daily refresh: the new buckets below reach the agent only by their CreateBucket events,
    // and the administrator only by the agent's resend of what it did not acknowledge.
    let daily = ["--refresh-interval", "24h", "--events-wait-seconds", "1", "--events-queue-url", &events.queue];
    let agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &daily)?;
    eventually(Duration::from_secs(60), "the first refresh", || async {
        Ok((admin.ctl_json(None, &["stats"])?["bucketCount"] == 10).then_some(()))
    })
    .await?;

    // Fill the disk, then give the agent something new to report.
    let filler = disk.join("filler");
    let _ = Command::new("dd").arg("if=/dev/zero").arg(format!("of={}", filler.display())).args(["bs=1M"]).output()?;
    let mut names = Vec::new();
    for i in 0..15 {
        let name = format!("estate-d-{i:02}");
        if i >= 10 {
            seed_bucket(&moto, &creds, &Spec::plain(A, name.clone())).await?;
            events.publish(A, "CreateBucket", Some(&name)).await?;
        }
        names.push(name);
    }
    // Changes until the administrator needs space it does not have (sled writes into space its
    // files already hold until a segment fills).
    let changer = Changer::start(moto.s3(&creds, "us-east-1"), events, A, names);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = admin.process.child.try_wait()? {
            break status;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(180),
            "the administrator kept running on a full disk ({} acknowledgements, {} changes):\n{}\n{}\n{}",
            acknowledged_generations(std::slice::from_ref(&agent.process.log)).1,
            changer.changes(),
            admin.process.log_text(),
            agent.process.log_text().lines().rev().take(30).collect::<Vec<_>>().join("\n"),
            Command::new("df").arg(&disk).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned())?
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "a storage failure is an error exit: {status:?}");
    let log = admin.process.log_text();
    assert!(log.contains("storage failed") || log.contains("cannot make the state durable"), "it says why:\n{log}");
    assert!(log.to_lowercase().contains("no space left"), "and names the cause:\n{log}");
    let said: Vec<&str> = log.lines().filter(|l| l.contains("durable") || l.contains("storage failed")).collect();
    println!("full disk: exit {status:?}; {}", said.join(" | "));

    // Space returns; started again, the administrator holds everything it acknowledged and
    // takes the resent reports.
    let acknowledged: BTreeSet<String> =
        Acknowledged::in_log(&agent.process.log_text()).into_iter().map(|a| a.bucket).collect();
    std::fs::remove_file(&filler)?;
    admin.kill_and_restart()?;
    let stored = stored_buckets(&admin, None)?;
    let lost: Vec<&String> = acknowledged.iter().filter(|b| !stored.contains_key(*b)).collect();
    assert!(lost.is_empty(), "acknowledged before the disk filled, missing after: {lost:?}");
    let model = changer.finish().await?;
    eventually(Duration::from_secs(60), "every change acknowledged after the disk has space again", || async {
        let (acked, _) = acknowledged_generations(std::slice::from_ref(&agent.process.log));
        Ok(model.iter().all(|(bucket, generation)| acked.get(bucket) == Some(generation)).then_some(()))
    })
    .await?;
    // A new bucket's event waits until ListBuckets shows it (relisted at most every 10 s).
    let stored = eventually(Duration::from_secs(60), "every bucket, the new ones included", || async {
        let stored = stored_buckets(&admin, None)?;
        Ok((stored.len() == 15).then_some(stored))
    })
    .await?;
    for (name, generation) in &model {
        assert_eq!(generation_stored(&stored[name]), Some(*generation), "{name}: its last change");
    }
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
