//! The local demo as a newcomer runs it: `scripts/run-local.sh`, started non-interactively in a
//! process group of its own (as a terminal would), seeds moto, starts the administrator and
//! three agents, and prints the organization's statistics; every figure the seeding means to
//! show is non-zero. Each `scripts/demo-change.sh` command raises its finding through the real
//! event path (EventBridge rule, SQS queue, agent), seen by `estatectl watch`; `revert` brings
//! the bucket back. The browser test runs against the demo's TLS dashboard and takes the
//! screenshots the README shows (`ESTATE_UPDATE_SCREENSHOTS=1` copies them into
//! `docs/screenshots/`). Ctrl-C (SIGINT to the group) stops everything, with exit status 0.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use super::dashboard::{output_dir, Browser};
use super::*;

/// The ceiling on one change's wait for its finding: generous, so that a busy machine does not
/// fail the test; the test prints the real figure (the budget is 5 s).
const WITHIN: Duration = Duration::from_secs(30);

/// Figures of the printed summary that the seeding (deploy/local/seed.py) means to be
/// non-zero: every permission, encryption, requirement and sharing class it seeds, objects of
/// each kind, and the unreadable bucket's unknowns.
const NON_ZERO: &[&str] = &[
    "bucketCount",
    "bucketCountByEffectivePermission.publiclyAccessible",
    "bucketCountByEffectivePermission.publiclyReadable",
    "bucketCountByEffectivePermission.unknown",
    "bucketCountByEncryptionType.kmsManaged",
    "bucketCountByEncryptionType.s3Managed",
    "bucketCountByEncryptionType.unencrypted",
    "bucketCountByEncryptionType.unknown",
    "bucketCountByObjectEncryptionRequirement.allowsUnencryptedObjectUploads",
    "bucketCountByObjectEncryptionRequirement.deniesUnencryptedObjectUploads",
    "bucketCountByObjectEncryptionRequirement.unknown",
    "bucketCountBySharedAccessType.external",
    "bucketCountBySharedAccessType.internal",
    "bucketCountBySharedAccessType.notShared",
    "bucketCountBySharedAccessType.unknown",
    "objectCount",
    "sizeInBytes",
    "sizeInBytesCompressed",
    "classifiableObjectCount",
    "classifiableSizeInBytes",
    "unclassifiableObjectCount.total",
    "unclassifiableObjectSizeInBytes.total",
];

/// The demo's process group, killed outright if the test ends before the demo stopped (then
/// disarmed: the group's ID may be reused once it is gone).
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = signal_group("KILL", pgid);
        }
    }
}

/// `kill -SIGNAL -- -PGID`; true when some process of the group received it.
fn signal_group(signal: &str, pgid: u32) -> bool {
    Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Demo {
    child: Child,
    group: Group,
    run: PathBuf,
    lines: mpsc::Receiver<String>,
    transcript: Vec<String>,
    /// The `export`s of the demo's `env` file.
    env: BTreeMap<String, String>,
}

impl Demo {
    /// Starts `scripts/run-local.sh` on free ports with the tested binaries, and waits for its
    /// last line.
    fn start(run: PathBuf) -> anyhow::Result<Self> {
        let bin_dir = estate_tests::binary("estate-admin").parent().expect("a directory").to_path_buf();
        let stderr = std::fs::File::create(run.with_extension("stderr"))?;
        let mut child = Command::new("bash")
            .arg(estate_tests::repo_root().join("scripts/run-local.sh"))
            .env("ESTATE_LOCAL_DIR", &run)
            .env("ESTATE_LOCAL_GRPC_PORT", estate_tests::free_port().to_string())
            .env("ESTATE_LOCAL_HTTP_PORT", estate_tests::free_port().to_string())
            .env("ESTATE_BIN_DIR", &bin_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .spawn()?;
        let group = Group(Some(child.id()));
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut demo = Self { child, group, run, lines, transcript: Vec::new(), env: BTreeMap::new() };
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match demo.lines.recv_timeout(left) {
                Ok(line) => {
                    let last = line == "Ctrl-C stops everything.";
                    demo.transcript.push(line);
                    if last {
                        break;
                    }
                }
                Err(_) => anyhow::bail!("run-local.sh did not finish starting:\n{}", demo.logs()),
            }
        }
        let env = std::fs::read_to_string(demo.run.join("env"))?;
        // `export NAME='value'`, as run-local.sh writes it.
        demo.env = env
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .filter(|(k, _)| k.starts_with("ESTATE_"))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect();
        Ok(demo)
    }

    /// What the demo printed and logged, for failure messages.
    fn logs(&self) -> String {
        let mut text = format!("run-local.sh printed:\n{}\n", self.transcript.join("\n"));
        let mut files = vec![self.run.with_extension("stderr")];
        if let Ok(entries) = std::fs::read_dir(&self.run) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "log")));
        }
        for file in files {
            let content = std::fs::read_to_string(&file).unwrap_or_default();
            let tail: Vec<&str> = content.lines().rev().take(30).collect();
            text += &format!("--- {} (last lines)\n", file.display());
            text.extend(tail.into_iter().rev().map(|l| format!("{l}\n")));
        }
        text
    }

    fn estatectl(&self) -> Command {
        let mut command = Command::new(estate_tests::binary("estatectl"));
        command.envs(&self.env).args(["--output", "json"]);
        command
    }

    fn ctl(&self, args: &[&str]) -> anyhow::Result<Value> {
        let out = self.estatectl().args(args).output()?;
        anyhow::ensure!(out.status.success(), "estatectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// `scripts/demo-change.sh COMMAND BUCKET`, as printed under "Try".
    fn change(&self, command: &str, bucket: &str) -> anyhow::Result<String> {
        let out = Command::new("bash")
            .arg(estate_tests::repo_root().join("scripts/demo-change.sh"))
            .args([command, bucket])
            .env("ESTATE_LOCAL_DIR", &self.run)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        anyhow::ensure!(
            out.status.success(),
            "demo-change.sh {command} {bucket}: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(text)
    }

    /// The summary `run-local.sh` printed: the statistics table between "The organization:"
    /// and "Try:".
    fn summary(&self) -> BTreeMap<String, String> {
        self.transcript
            .iter()
            .skip_while(|l| *l != "The organization:")
            .skip(2)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(char::is_whitespace))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect()
    }
}

/// `estatectl --output json watch`, one finding per line, with the time each arrived.
struct Watch {
    child: Child,
    findings: mpsc::Receiver<(Instant, Value)>,
}

impl Watch {
    fn start(demo: &Demo) -> anyhow::Result<Self> {
        // From the first finding on (cursor 0): nothing raised before it listens is missed.
        let stderr = std::fs::File::create(demo.run.join("watch.log"))?;
        let mut child =
            demo.estatectl().args(["watch", "--cursor", "0"]).stdout(Stdio::piped()).stderr(stderr).spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, findings) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(finding) = serde_json::from_str::<Value>(&line) {
                    if tx.send((Instant::now(), finding)).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Self { child, findings })
    }

    /// Runs `act`, then returns every finding that arrives before the first of `kind` about
    /// `bucket` (which must arrive within [`WITHIN`]), with those that arrived before `act`.
    fn expect_after<T>(
        &self,
        kind: &str,
        bucket: &str,
        act: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<Vec<Value>> {
        let before: Vec<Value> = self.findings.try_iter().map(|(_, f)| f).collect();
        act()?;
        self.until(kind, bucket, before).map(|(before, _, _)| before)
    }

    /// The first finding of `kind` about `bucket` to arrive within [`WITHIN`].
    fn expect(&self, kind: &str, bucket: &str) -> anyhow::Result<(Instant, Value)> {
        self.until(kind, bucket, Vec::new()).map(|(_, at, finding)| (at, finding))
    }

    /// Reads findings until the first of `kind` about `bucket`, within [`WITHIN`]: the ones
    /// before it (after `before`), and it with the time it arrived.
    fn until(&self, kind: &str, bucket: &str, mut before: Vec<Value>) -> anyhow::Result<(Vec<Value>, Instant, Value)> {
        let deadline = Instant::now() + WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, finding) = self
                .findings
                .recv_timeout(left)
                .map_err(|_| anyhow::anyhow!("no {kind} finding about {bucket} within {WITHIN:?}"))?;
            if finding["type"] == kind && finding["resourcesAffected"]["s3Bucket"]["name"] == bucket {
                return Ok((before, at, finding));
            }
            before.push(finding);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one `demo-change.sh` command and waits for its finding on the watch; checks that the
/// event, not a refresh, raised it; returns the time from the command's start to the finding.
fn change_and_watch(
    demo: &Demo,
    watch: &Watch,
    command: &str,
    bucket: &str,
    kind: &str,
    api: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let printed = demo.change(command, bucket)?;
    assert!(printed.contains("estatectl watch"), "demo-change.sh says what to watch: {printed}");
    let (at, finding) = watch.expect(kind, bucket).map_err(|e| anyhow::anyhow!("{e}\n{}", demo.logs()))?;
    let action = &finding["policyDetails"]["action"];
    assert_eq!(action["apiCallDetails"]["api"], api, "{finding}");
    assert_eq!(action["estateFoundBy"], "EVENT", "{finding}");
    let actor = &finding["policyDetails"]["actor"]["userIdentity"];
    assert_eq!(actor["type"], "AssumedRole", "{finding}");
    assert_eq!(actor["assumedRole"]["sessionContext"]["sessionIssuer"]["userName"], "DemoAdmin", "{finding}");
    let took = at.duration_since(started);
    println!("demo-change.sh {command} {bucket}: {kind} seen by estatectl watch after {took:?}");
    Ok(took)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_demo_shows_everything_and_raises_findings_live() -> anyhow::Result<()> {
    Browser::available()?;
    let dir = tempfile::tempdir()?;
    let mut demo = Demo::start(dir.path().join("run"))?;

    // The printed summary: the figures the seeding intends are there and non-zero, and they
    // are GetBucketStatistics' own.
    let summary = demo.summary();
    let stats = demo.ctl(&["stats"])?;
    for name in NON_ZERO {
        let shown = summary.get(*name).ok_or_else(|| anyhow::anyhow!("the summary lacks {name}: {summary:?}"))?;
        assert!(shown.parse::<u64>().is_ok_and(|n| n > 0), "{name} is {shown} in the summary\n{}", demo.logs());
        let path = name.split('.').fold(&stats, |v, k| &v[k]);
        assert_eq!(path.to_string(), *shown, "{name}: the summary and `estatectl stats` differ");
    }
    assert_eq!(stats["bucketCount"], 32, "deploy/local/seed.py seeds 32 buckets");
    assert_eq!(stats["bucketCountByEffectivePermission"]["publiclyWritable"], 0, "no seeded bucket is writable");
    for reason in ["fileType", "storageClass"] {
        assert!(stats["unclassifiableObjectCount"][reason].as_u64() > Some(0), "{reason}: {stats}");
    }

    // The buckets that show one thing each.
    let bucket = |name: &str| demo.ctl(&["bucket", name]);
    let restricted = bucket("demo-333-restricted")?;
    assert_eq!(restricted["errorCode"], "ACCESS_DENIED", "{restricted}");
    assert!(restricted["errorMessage"].as_str().is_some_and(|m| m.contains("s3:GetBucketPolicy")), "{restricted}");
    assert_eq!(bucket("demo-222-org")?["sharedAccess"], "INTERNAL", "the organization-paths grant");
    assert_eq!(bucket("demo-333-cdn")?["sharedAccess"], "EXTERNAL", "an OAC grant is external, as in Macie");
    for name in ["demo-111-secure", "demo-222-kms-only"] {
        assert_eq!(bucket(name)?["allowsUnencryptedObjectUploads"], "FALSE", "{name}");
    }
    assert_eq!(bucket("demo-111-backup")?["replicationDetails"]["replicatedExternally"], true);
    let website = bucket("demo-222-us-east-1-website")?;
    assert_eq!(website["publicAccess"]["effectivePermission"], "PUBLIC", "{website}");

    // Two changes for the worse before the browser opens the findings page, one while it
    // watches.
    let watch = Watch::start(&demo)?;
    let mut took = vec![
        change_and_watch(
            &demo,
            &watch,
            "share-outside",
            "demo-222-eu-west-1-logs",
            "Policy:IAMUser/S3BucketSharedExternally",
            "PutBucketPolicy",
        )?,
        change_and_watch(
            &demo,
            &watch,
            "disable-bpa",
            "demo-333-us-east-1-data",
            "Policy:IAMUser/S3BlockPublicAccessDisabled",
            "DeleteBucketPublicAccessBlock",
        )?,
    ];

    let external = demo.ctl(&["buckets", "--all", "--where", "sharedAccess=EXTERNAL", "--sort", "bucketName"])?;
    let names: Vec<&str> =
        external["buckets"].as_array().unwrap().iter().map(|b| b["bucketName"].as_str().unwrap()).collect();
    let change_bucket = "demo-111-us-east-1-logs";
    let expected = json!({
        "stats": demo.ctl(&["stats"])?,
        "filter": {"property": "sharedAccess", "value": "EXTERNAL", "names": names},
        "publicBucket": "demo-222-us-east-1-website",
        "changeBucket": change_bucket,
        "members": {A: "Enabled", B: "Enabled", C: "Enabled"},
        // 333333333333 holds the bucket its agent may not read.
        "memberCounts": {"connected": 3, "erroring": 1, "noAgent": 0},
        // Public buckets: 222 two by policy, 111 two by ACL (333's account ignores public ACLs);
        // shared outside: 222 two, 111 two before the changes, and share-outside adds one to 222.
        "mostExposed": B,
    });
    let expected_path = dir.path().join("expected.json");
    std::fs::write(&expected_path, expected.to_string())?;
    let tls = demo.run.join("tls");
    let shots = output_dir("demo");
    let browser = Browser {
        url: demo.env["ESTATE_DASHBOARD"].clone(),
        token: &demo.env["ESTATE_VIEWER_TOKEN"],
        expected: &expected_path,
        shots: shots.clone(),
        env: vec![
            ("ESTATE_SERVER_CERT", tls.join("admin.pem").into()),
            ("NODE_EXTRA_CA_CERTS", tls.join("ca.pem").into()),
        ],
    };
    let mut live = None;
    let (live_slot, demo_ref, watch_ref) = (&mut live, &demo, &watch);
    browser
        .run(
            move || async move {
                let kind = "Policy:IAMUser/S3BucketPublic";
                let took =
                    change_and_watch(demo_ref, watch_ref, "make-public", change_bucket, kind, "PutBucketPolicy")?;
                *live_slot = Some(took);
                Ok(())
            },
            || demo.logs(),
        )
        .await?;
    took.extend(live);
    if std::env::var_os("ESTATE_UPDATE_SCREENSHOTS").is_some() {
        let docs = estate_tests::repo_root().join("docs/screenshots");
        for shot in ["summary.png", "members.png", "bucket.png", "findings.png"] {
            std::fs::copy(shots.join(shot), docs.join(shot))?;
        }
        println!("copied the demo's screenshots into {}", docs.display());
    }

    // Two changes of one bucket, then revert: it gets back its policy (none) and its block
    // public access settings as they were before the first change. Neither revert, a change
    // for the better, raises a finding. The sentinel, a change in the same account after the
    // reverts, comes through the same queue and agent: a finding the reverts raised would come
    // before its finding.
    let twice = "demo-111-us-east-1-data";
    for (command, kind, api) in [
        ("share-outside", "Policy:IAMUser/S3BucketSharedExternally", "PutBucketPolicy"),
        ("disable-bpa", "Policy:IAMUser/S3BlockPublicAccessDisabled", "DeleteBucketPublicAccessBlock"),
    ] {
        took.push(change_and_watch(&demo, &watch, command, twice, kind, api)?);
    }
    for bucket in [change_bucket, twice] {
        demo.change("revert", bucket)?;
    }
    eventually(WITHIN, "the reverted buckets' verdicts", || async {
        let logs = demo.ctl(&["bucket", change_bucket])?;
        let data = demo.ctl(&["bucket", twice])?;
        let bucket_level = |b: &Value| b["publicAccess"]["permissionConfiguration"]["bucketLevelPermissions"].clone();
        // No policy: Macie's flags are both false, and S3 has no policy status to give.
        let no_policy = |b: &Value| {
            bucket_level(b)["bucketPolicy"] == json!({"allowsPublicReadAccess": false, "allowsPublicWriteAccess": false})
                && b["s3PolicyStatusPublic"].is_null()
        };
        let back = logs["publicAccess"]["effectivePermission"] == "NOT_PUBLIC"
            && logs["sharedAccess"] == "NOT_SHARED"
            && no_policy(&logs)
            && data["sharedAccess"] == "NOT_SHARED"
            && no_policy(&data)
            && bucket_level(&data)["blockPublicAccess"]
                == json!({"blockPublicAcls": true, "ignorePublicAcls": true, "blockPublicPolicy": true, "restrictPublicBuckets": true});
        Ok(back.then_some(()))
    })
    .await?;
    let sentinel = "demo-111-eu-west-1-logs";
    let before = watch
        .expect_after("Policy:IAMUser/S3BucketPublic", sentinel, || demo.change("make-public", sentinel))
        .map_err(|e| anyhow::anyhow!("{e}\n{}", demo.logs()))?;
    for finding in before {
        let name = &finding["resourcesAffected"]["s3Bucket"]["name"];
        assert!(
            name != change_bucket && name != twice,
            "a revert (a change for the better) raised or updated a finding: {finding}"
        );
    }
    let slowest = took.iter().max().copied().unwrap_or_default();
    println!("demo findings: {} changes, slowest {slowest:?} from command to `estatectl watch`", took.len());
    drop(watch);

    // Ctrl-C: SIGINT to the whole group, as a terminal sends it.
    let pgid = demo.group.0.expect("armed");
    assert!(signal_group("INT", pgid), "the demo's processes were running");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = demo.child.try_wait()? {
            break status;
        }
        anyhow::ensure!(Instant::now() < deadline, "run-local.sh did not stop on SIGINT\n{}", demo.logs());
        std::thread::sleep(Duration::from_millis(100));
    };
    // Everything it printed, up to the end of its output.
    while let Ok(line) = demo.lines.recv_timeout(Duration::from_secs(10)) {
        demo.transcript.push(line);
    }
    assert!(status.success(), "run-local.sh exited with {status} on SIGINT\n{}", demo.logs());
    assert_eq!(demo.transcript.last().map(String::as_str), Some("stopping"), "{}", demo.logs());
    assert!(!signal_group("0", pgid), "processes of the demo outlived it");
    demo.group.0 = None;
    assert_path_kept(&demo.run)?;
    Ok(())
}

/// The demo's state stays for the user to read after it stops.
fn assert_path_kept(run: &Path) -> anyhow::Result<()> {
    for file in ["admin.log", "env", "seed.json", "estate.toml"] {
        anyhow::ensure!(run.join(file).exists(), "{file} is gone after the demo stopped");
    }
    Ok(())
}
