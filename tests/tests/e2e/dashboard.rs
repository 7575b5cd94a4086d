//! The dashboard in a real browser: moto seeded with a small organization, the administrator
//! and two agents, then `tests/browser/dashboard.mjs` (playwright-core driving Debian's
//! Chromium) checks the page against what the gRPC API says, follows a finding live while
//! this test changes a policy through an SQS event, and saves screenshots under
//! `$CARGO_TARGET_DIR/estate-test-output/dashboard/`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use super::*;

/// Where a browser test's screenshots go: `name` under `$CARGO_TARGET_DIR/estate-test-output/`.
pub(super) fn output_dir(name: &str) -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| estate_tests::repo_root().join("target"));
    target.join("estate-test-output").join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_what_the_api_says_in_a_real_browser() -> anyhow::Result<()> {
    Browser::available()?;
    let moto = Moto::start()?;
    let creds_a = moto.credentials(A).await?;
    let creds_b = moto.credentials(B).await?;
    let s3 = moto.s3(&creds_a, "us-east-1");
    let specs = [
        Spec { policy: true, ..Spec::plain(A, "estate-d-public".into()) },
        Spec {
            encryption: Some(("aws:kms", Some("arn:aws:kms:us-east-1:111111111111:key/d"))),
            versioning: true,
            tags: vec![("team", "data")],
            ..Spec::plain(A, "estate-d-kms".into())
        },
        Spec::plain(A, "estate-d-quiet".into()),
        Spec {
            canned_acl: Some("public-read"),
            ..Spec { account: B, region: "eu-west-1", name: "estate-d-b-acl".into(), ..Default::default() }
        },
        Spec::plain(B, "estate-d-b-plain".into()),
    ];
    for spec in &specs {
        let creds = if spec.account == A { &creds_a } else { &creds_b };
        seed_bucket(&moto, creds, spec).await?;
    }
    let shared = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{OUTSIDE}:root")}, "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::estate-d-kms/*"}]});
    s3.put_bucket_policy().bucket("estate-d-kms").policy(shared.to_string()).send().await?;
    let sqs = moto.sqs(&creds_a);
    let queue = sqs.create_queue().queue_name("estate-events").send().await?.queue_url.unwrap();
    let dead_letters = sqs.create_queue().queue_name("estate-events-dlq").send().await?.queue_url.unwrap();

    // The organization: A and B with agents, C without.
    let dir = tempfile::tempdir()?;
    let config = write_config_for(dir.path(), &[A, B]);
    let admin = Admin::start(&dir.path().join("data"), Some(&config))?;
    let events =
        ["--events-queue-url", &queue, "--events-dead-letter-queue-url", &dead_letters, "--events-wait-seconds", "1"];
    let _a = Agent::start(&admin, &moto, &creds_a, Some(&agent_token(A)), &REGIONS, &events)?;
    let _b = Agent::start(&admin, &moto, &creds_b, Some(&agent_token(B)), &REGIONS, &[])?;
    let token = Some(CLIENT_TOKEN);
    eventually(Duration::from_secs(90), "both agents' refreshes and every verdict", || async {
        let listed = admin.ctl_json(token, &["buckets", "--all"])?;
        let buckets = listed["buckets"].as_array().unwrap();
        let decided = buckets.len() == specs.len() && buckets.iter().all(|b| b["sharedAccess"] != "UNKNOWN");
        Ok((decided && all_refreshed(&admin, token, &[A, B])?).then_some(()))
    })
    .await?;

    // What the gRPC API says, for the browser to compare with.
    let stats = admin.ctl_json(token, &["stats"])?;
    let external =
        admin.ctl_json(token, &["buckets", "--all", "--where", "sharedAccess=EXTERNAL", "--sort", "bucketName"])?;
    let names: Vec<&str> =
        external["buckets"].as_array().unwrap().iter().map(|b| b["bucketName"].as_str().unwrap()).collect();
    assert!(names.len() >= 2, "the filter must select several buckets: {names:?}");
    let expected = json!({
        "stats": stats,
        "filter": {"property": "sharedAccess", "value": "EXTERNAL", "names": names},
        "publicBucket": "estate-d-public",
        "changeBucket": "estate-d-quiet",
        "members": {A: "Enabled", B: "Enabled", C: "NoAgent"},
        "memberCounts": {"connected": 2, "noAgent": 1, "disconnected": 0},
        // A: one public bucket, one shared outside; B: one public by its ACL, none outside.
        "mostExposed": A,
    });
    let expected_path = dir.path().join("expected.json");
    std::fs::write(&expected_path, expected.to_string())?;

    let shots = output_dir("dashboard");
    let browser =
        Browser { url: format!("{}/", admin.http), token: CLIENT_TOKEN, expected: &expected_path, shots, env: vec![] };
    browser
        .run(
            || async {
                // The quiet bucket turns public, and CloudTrail says so.
                let public = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
                    "Action": "s3:GetObject", "Resource": "arn:aws:s3:::estate-d-quiet/*"}]});
                s3.put_bucket_policy().bucket("estate-d-quiet").policy(public.to_string()).send().await?;
                let event = json!({
                    "version": "0", "id": "d0000000-0000-4000-8000-000000000001",
                    "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3", "account": A,
                    "time": "2026-12-02T05:00:00Z", "region": "us-east-1", "resources": [],
                    "detail": {
                        "eventVersion": "1.09", "eventSource": "s3.amazonaws.com", "eventName": "PutBucketPolicy",
                        "awsRegion": "us-east-1", "eventTime": "2026-12-02T05:00:00Z",
                        "eventID": "d0000000-0000-4000-8000-0000000000aa",
                        "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::{A}:user/alice"), "accountId": A},
                        "requestParameters": {"bucketName": "estate-d-quiet"}, "recipientAccountId": A,
                    },
                });
                sqs.send_message().queue_url(&queue).message_body(event.to_string()).send().await?;
                Ok(())
            },
            || format!("administrator log:\n{}", admin.process.log_text()),
        )
        .await
}

/// One run of `tests/browser/dashboard.mjs` against a running dashboard.
pub(super) struct Browser<'a> {
    /// The dashboard's address, ending in `/`.
    pub(super) url: String,
    pub(super) token: &'a str,
    /// What the gRPC API says, as the script expects it.
    pub(super) expected: &'a std::path::Path,
    pub(super) shots: std::path::PathBuf,
    /// More environment for node (trust in a TLS dashboard's certificate).
    pub(super) env: Vec<(&'static str, std::ffi::OsString)>,
}

impl Browser<'_> {
    /// Fails unless Chromium and playwright-core are installed (scripts/setup.sh does it).
    pub(super) fn available() -> anyhow::Result<()> {
        let browser_dir = estate_tests::repo_root().join("tests/browser");
        anyhow::ensure!(
            browser_dir.join("node_modules/playwright-core").is_dir()
                && std::path::Path::new("/usr/bin/chromium").exists(),
            "the browser test needs Chromium and playwright-core: run scripts/setup.sh"
        );
        Ok(())
    }

    /// Runs the script, calls `change` when it asks for the live change, and fails with its
    /// transcript (and `context()`) unless it passes and saved its three screenshots.
    pub(super) async fn run<F, Fut>(self, change: F, context: impl Fn() -> String) -> anyhow::Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        /// node (and the Chromium under it) is killed if the test fails or times out.
        struct Node(std::process::Child);
        impl Drop for Node {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let browser_dir = estate_tests::repo_root().join("tests/browser");
        let node = Command::new("node")
            .arg(browser_dir.join("dashboard.mjs"))
            .current_dir(&browser_dir)
            .env("ESTATE_DASHBOARD_URL", &self.url)
            .env("ESTATE_TOKEN", self.token)
            .env("ESTATE_EXPECTED", self.expected)
            .env("ESTATE_SCREENSHOTS", &self.shots)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting node (scripts/setup.sh installs it): {e}"))?;
        let mut node = Node(node);
        let stdout = node.0.stdout.take().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut transcript = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        let mut change = Some(change);
        let timed_out = loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) => {
                    transcript.push(line.clone());
                    if line == "ready-for-change" {
                        if let Some(change) = change.take() {
                            change().await?;
                        }
                    }
                }
                Ok(None) => break false,
                Err(_) => break true,
            }
        };
        if timed_out {
            let _ = node.0.kill();
        }
        let status = node.0.wait()?;
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut node.0.stderr.take().unwrap(), &mut stderr)?;
        anyhow::ensure!(
            status.success() && transcript.iter().any(|l| l == "dashboard: ok"),
            "the browser test failed ({status}{}):\n{}\n{stderr}\n{}",
            if timed_out { ", killed after 180 s" } else { "" },
            transcript.join("\n"),
            context()
        );
        assert!(change.is_none(), "the browser reached the live step");
        for shot in ["summary.png", "members.png", "bucket.png", "findings.png"] {
            let size = std::fs::metadata(self.shots.join(shot))?.len();
            assert!(size > 10_000, "{shot} is {size} bytes");
        }
        println!("dashboard screenshots in {}", self.shots.display());
        Ok(())
    }
}
