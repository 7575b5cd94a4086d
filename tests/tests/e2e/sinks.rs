//! Findings delivered outside Estate, end to end (issue 24): a policy change, as a CloudTrail
//! event through moto's EventBridge → SQS path, reaches every configured sink with Macie's
//! whole document: EventBridge (a custom bus in moto, read back through a rule's SQS queue), a
//! signed HTTPS webhook and its Slack form (a local receiver that checks the signature with
//! its own HMAC), and OCSF lines (validated against the OCSF schema). A sink whose receiver is
//! down does not hold the others back. A SIGKILL in the middle of a burst of findings loses
//! none and gives none a second ID.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use estate_tests::receiver::{Received, Receiver};

use super::findings::Events;
use super::*;

const SECRET: &str = "webhook-secret-0123456789";
const BUS: &str = "estate-findings";
const WITHIN: Duration = Duration::from_secs(60);

fn policy(bucket: &str) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": format!("arn:aws:s3:::{bucket}/*")}]})
    .to_string()
}

/// moto's default account, whose credentials the administrator has.
const ADMIN_ACCOUNT: &str = "123456789012";

/// Every finding moto's Security Hub holds, read with boto3 (AWS's own Python client) from
/// the project's virtualenv.
fn security_hub_findings(moto: &Moto) -> anyhow::Result<Vec<Value>> {
    let script = r#"
import boto3, json, sys
hub = boto3.client("securityhub", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
found, token = [], None
while True:
    page = hub.get_findings(MaxResults=100, **({"NextToken": token} if token else {}))
    found += page["Findings"]
    token = page.get("NextToken")
    if not token:
        break
print(json.dumps(found, default=str))
"#;
    let python = estate_tests::repo_root().join(".venv/bin/python");
    let out = std::process::Command::new(&python).args(["-c", script, &moto.endpoint]).output()?;
    anyhow::ensure!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The administrator's own AWS credentials in moto (its default account).
fn admin_credentials() -> aws_sdk_s3::config::Credentials {
    aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "tests")
}

/// A custom bus with a rule sending Estate's events to an SQS queue; returns the queue URL.
async fn bus_with_queue(moto: &Moto) -> anyhow::Result<String> {
    moto.findings_bus(&admin_credentials(), BUS, "estate-delivered").await
}

/// Every event the bus's queue holds now (each deleted once read).
async fn drain(moto: &Moto, queue: &str) -> anyhow::Result<Vec<Value>> {
    let sqs = moto.sqs(&admin_credentials());
    let mut events = Vec::new();
    loop {
        let out = sqs.receive_message().queue_url(queue).max_number_of_messages(10).send().await?;
        let messages = out.messages();
        if messages.is_empty() {
            return Ok(events);
        }
        for m in messages {
            events.push(serde_json::from_str(m.body().unwrap_or_default())?);
            sqs.delete_message().queue_url(queue).receipt_handle(m.receipt_handle().unwrap_or_default()).send().await?;
        }
    }
}

/// The config: the bus, OCSF lines, the webhook in both forms, and (`dead_port`) a webhook
/// whose receiver is down.
fn sinks_config(dir: &Path, receiver: &Receiver, dead_port: Option<u16>) -> anyhow::Result<(PathBuf, PathBuf)> {
    let ocsf = dir.join("findings.ocsf.jsonl");
    let secret = dir.join("webhook-secret");
    std::fs::write(&secret, SECRET)?;
    let hook = |name: &str, url: String, format: &str| {
        format!(
            "[[sinks]]\nkind = \"webhook\"\nname = \"{name}\"\nurl = \"{url}\"\nformat = \"{format}\"\n\
             secret_file = \"{}\"\nca_file = \"{}\"\n",
            secret.display(),
            receiver.ca_path.display()
        )
    };
    let text = format!(
        "version = 1\n\
         [[sinks]]\nkind = \"eventbridge\"\nname = \"bus\"\nevent_bus = \"{BUS}\"\nregion = \"us-east-1\"\n\
         [[sinks]]\nkind = \"securityhub\"\nname = \"hub\"\nregion = \"us-east-1\"\naccount_id = \"{ADMIN_ACCOUNT}\"\n\
         [[sinks]]\nkind = \"ocsf\"\nname = \"lake\"\npath = \"{}\"\n{}{}{}",
        ocsf.display(),
        hook("hook", format!("https://127.0.0.1:{}/hook", receiver.addr.port()), "json"),
        hook("chat", format!("https://127.0.0.1:{}/slack", receiver.addr.port()), "slack"),
        dead_port.map(|port| hook("dead", format!("https://127.0.0.1:{port}/hook"), "json")).unwrap_or_default(),
    );
    let path = dir.join("estate.toml");
    std::fs::write(&path, text)?;
    Ok((path, ocsf))
}

fn start_admin(dir: &Path, config: &Path, moto: &Moto) -> anyhow::Result<Admin> {
    Admin::start_with_env(
        &dir.join("data"),
        None,
        &["--config", config.to_str().unwrap(), "--aws-endpoint-url", &moto.endpoint, "--min-refresh-interval", "0"],
        &[("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")],
    )
}

/// The administrator's `/metrics`, as `name{labels}` → value.
fn metrics(admin: &Admin) -> anyhow::Result<BTreeMap<String, f64>> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", &format!("{}/metrics", admin.http)])
        .output()?;
    anyhow::ensure!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| Some((k.to_owned(), v.parse().ok()?))))
        .collect())
}

fn sink_metric(metrics: &BTreeMap<String, f64>, name: &str, sink: &str, kind: &str) -> f64 {
    metrics.get(&format!("{name}{{sink=\"{sink}\",kind=\"{kind}\"}}")).copied().unwrap_or(f64::NAN)
}

/// Runs `scripts/ocsf-validate.py` (the OCSF schema bundled in the project's virtualenv).
fn validate_ocsf(path: &Path) -> anyhow::Result<()> {
    let python = estate_tests::repo_root().join(".venv/bin/python");
    let out = std::process::Command::new(&python)
        .arg(estate_tests::repo_root().join("scripts/ocsf-validate.py"))
        .arg(path)
        .output()
        .with_context(|| format!("running {} (scripts/setup.sh installs it)", python.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "OCSF validation failed:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_change_reaches_every_sink_whole_and_a_dead_receiver_holds_none_back() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    let s3 = moto.s3(&creds, "us-east-1");
    let events = Events::create(&moto, &creds).await?;
    for name in ["estate-s-policy", "estate-s-quiet", "estate-s-later"] {
        seed_bucket(&moto, &creds, &Spec { tags: vec![("team", "data")], ..Spec::plain(A, name.into()) }).await?;
    }
    let queue = bus_with_queue(&moto).await?;
    let dir = tempfile::tempdir()?;
    let mut receiver = Receiver::start(dir.path(), SECRET).await?;
    let dead_port = estate_tests::free_port();
    let (config, ocsf) = sinks_config(dir.path(), &receiver, Some(dead_port))?;
    let admin = start_admin(dir.path(), &config, &moto)?;
    let agent_args = ["--events-queue-url", &events.queue, "--events-wait-seconds", "1"];
    let _agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &agent_args)?;
    eventually(WITHIN, "the first refresh", || async {
        let members = admin.ctl_json(None, &["members"])?;
        Ok(members["members"][0]["regions"][0]["lastUpdated"].is_string().then_some(()))
    })
    .await?;

    // The change, by an assumed role from an address.
    s3.put_bucket_policy().bucket("estate-s-policy").policy(policy("estate-s-policy")).send().await?;
    let mut detail = events.detail(A, "PutBucketPolicy", Some("estate-s-policy"), "evt-sinks-1");
    detail["sourceIPAddress"] = json!("198.51.100.7");
    detail["userIdentity"] = json!({
        "type": "AssumedRole", "principalId": "AROAEXAMPLE:deploy", "accountId": A,
        "arn": format!("arn:aws:sts::{A}:assumed-role/deployer/deploy"), "accessKeyId": "ASIAEXAMPLE",
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE", "accountId": A,
                "arn": format!("arn:aws:iam::{A}:role/deployer"), "userName": "deployer"},
            "attributes": {"creationDate": "2026-12-01T10:00:00Z", "mfaAuthenticated": "true"}
        }
    });
    events.publish_detail(detail).await?;

    // The webhook, in both forms, signed.
    let mut got: BTreeMap<String, Received> = BTreeMap::new();
    while got.len() < 2 {
        let request = receiver.next(WITHIN).await?;
        got.insert(request.path.clone(), request);
    }
    let hook = &got["/hook"];
    assert!(hook.signature_valid, "the webhook's signature checks out: {:?}", hook.headers);
    let doc = hook.json()?;
    let id = doc["id"].as_str().unwrap().to_owned();
    assert_eq!(hook.headers["x-estate-finding-id"], id);
    assert_eq!(doc["type"], "Policy:IAMUser/S3BucketPublic");
    assert_eq!(doc["schemaVersion"], "1.0");
    let bucket = &doc["resourcesAffected"]["s3Bucket"];
    assert_eq!(bucket["name"], "estate-s-policy");
    assert_eq!(bucket["publicAccess"]["effectivePermission"], "PUBLIC", "{doc}");
    assert_eq!(bucket["tags"], json!([{"key": "team", "value": "data"}]));
    assert!(bucket["owner"]["id"].is_string() && bucket["createdAt"].is_string(), "{bucket}");
    let actor = &doc["policyDetails"]["actor"];
    assert_eq!(actor["ipAddressDetails"], json!({"ipAddressV4": "198.51.100.7"}), "no geolocation is invented");
    let role = &actor["userIdentity"]["assumedRole"];
    assert_eq!(actor["userIdentity"]["type"], "AssumedRole");
    assert_eq!(role["sessionContext"]["sessionIssuer"]["userName"], "deployer");
    assert_eq!(role["sessionContext"]["attributes"]["mfaAuthenticated"], true);
    assert_eq!(doc["policyDetails"]["action"]["apiCallDetails"]["api"], "PutBucketPolicy");
    let slack = &got["/slack"];
    assert!(slack.signature_valid);
    let text = slack.json()?["text"].as_str().unwrap_or_default().to_owned();
    assert!(text.contains("estate-s-policy") && text.contains("S3BucketPublic") && text.contains(&id), "{text}");

    // EventBridge, read back through the bus's rule.
    let delivered = eventually(WITHIN, "the event on the bus", || async {
        let events = drain(&moto, &queue).await?;
        Ok(events.into_iter().find(|e| e["detail"]["id"] == id.as_str()))
    })
    .await?;
    assert_eq!(
        (delivered["source"].as_str(), delivered["detail-type"].as_str()),
        (Some("estate"), Some("Estate Finding"))
    );
    assert_eq!(delivered["detail"], doc, "the bus carries the same document");
    assert_eq!(delivered["resources"], json!(["arn:aws:s3:::estate-s-policy"]));

    // Security Hub, in ASFF, read back with AWS's own client.
    let imported = eventually(WITHIN, "the finding in Security Hub", || async {
        Ok(security_hub_findings(&moto)?.into_iter().find(|f| f["Id"] == id.as_str()))
    })
    .await
    .with_context(|| {
        let log = admin.process.log_text();
        log.lines().filter(|l| l.contains("sink")).take(20).collect::<Vec<_>>().join("\n")
    })?;
    assert_eq!(imported["Types"], json!(["Effects/Data Exposure/Policy:IAMUser-S3BucketPublic"]));
    assert_eq!(imported["AwsAccountId"], ADMIN_ACCOUNT);
    assert_eq!(
        imported["ProductArn"],
        format!("arn:aws:securityhub:us-east-1:{ADMIN_ACCOUNT}:product/{ADMIN_ACCOUNT}/default")
    );
    let resource = &imported["Resources"][0];
    assert_eq!(
        (resource["Type"].as_str(), resource["Id"].as_str()),
        (Some("AwsS3Bucket"), Some("arn:aws:s3:::estate-s-policy"))
    );
    assert_eq!(resource["Details"]["AwsS3Bucket"]["OwnerAccountId"], A);
    assert_eq!(imported["Severity"]["Label"], "HIGH");

    // OCSF, valid against the schema of the version it declares.
    let line = eventually(WITHIN, "the OCSF line", || async {
        let text = std::fs::read_to_string(&ocsf).unwrap_or_default();
        Ok(text.lines().find(|l| l.contains(&id)).map(str::to_owned))
    })
    .await?;
    let event: Value = serde_json::from_str(&line)?;
    assert_eq!((event["class_uid"].as_i64(), event["finding_info"]["uid"].as_str()), (Some(2004), Some(id.as_str())));
    assert_eq!(event["resources"][0]["uid"], "arn:aws:s3:::estate-s-policy");
    validate_ocsf(&ocsf)?;

    // The dead receiver's sink failed and holds the finding back; the others did not wait.
    let m = metrics(&admin)?;
    assert!(sink_metric(&m, "estate_sink_failures_total", "dead", "webhook") >= 1.0, "{m:?}");
    assert!(sink_metric(&m, "estate_sink_lag", "dead", "webhook") >= 1.0, "{m:?}");
    assert_eq!(sink_metric(&m, "estate_sink_delivered_total", "dead", "webhook"), 0.0);
    for (sink, kind) in
        [("hook", "webhook"), ("chat", "webhook"), ("bus", "eventbridge"), ("lake", "ocsf"), ("hub", "securityhub")]
    {
        assert!(sink_metric(&m, "estate_sink_delivered_total", sink, kind) >= 1.0, "{sink}: {m:?}");
    }

    // An archiving filter (Macie's suppression rule) on one bucket: its finding is raised
    // archived and never delivered, while a later finding of another bucket is. Sinks deliver
    // in sequence order, so the later one's arrival proves the earlier one was skipped.
    let created = admin.ctl_json(
        None,
        &[
            "filters",
            "create",
            "--name",
            "quiet-is-expected-public",
            "--action",
            "archive",
            "--where",
            "resourcesAffected.s3Bucket.name=estate-s-quiet",
            "--where",
            "resourcesAffected.s3Bucket.tags.key==team",
        ],
    )?;
    let filter_id = created["id"].as_str().unwrap().to_owned();
    let listed = admin.ctl_json(None, &["filters", "get", &filter_id])?;
    assert_eq!(listed["action"], "ARCHIVE");
    assert_eq!(
        listed["findingCriteria"]["criterion"]["resourcesAffected.s3Bucket.tags.key"],
        json!({"eqExactMatch": ["team"]})
    );
    for bucket in ["estate-s-quiet", "estate-s-later"] {
        s3.put_bucket_policy().bucket(bucket).policy(policy(bucket)).send().await?;
        events.publish(A, "PutBucketPolicy", Some(bucket)).await?;
        // One at a time, so that the archived one comes first in the feed.
        eventually(WITHIN, "the finding raised", || async {
            let found =
                admin.ctl_json(None, &["findings", "--where", &format!("resourcesAffected.s3Bucket.name={bucket}")])?;
            Ok((found["findings"].as_array().is_some_and(|f| !f.is_empty())).then_some(()))
        })
        .await?;
    }
    let later = loop {
        let request = receiver.next(WITHIN).await?;
        let doc = request.json()?;
        let name = doc["resourcesAffected"]["s3Bucket"]["name"].as_str().unwrap_or_default().to_owned();
        assert_ne!(name, "estate-s-quiet", "an archived finding was delivered to {}", request.path);
        if name == "estate-s-later" && request.path == "/hook" {
            break doc;
        }
    };
    assert_eq!(later["archived"], false);
    let quiet = admin.ctl_json(None, &["findings", "--where", "resourcesAffected.s3Bucket.name=estate-s-quiet"])?;
    assert_eq!(quiet["findings"][0]["archived"], true, "{quiet}");
    let text = std::fs::read_to_string(&ocsf)?;
    assert!(!text.contains("estate-s-quiet"), "the archived finding reached the OCSF file");
    Ok(())
}

/// Issue 24's acceptance: SIGKILL the administrator while it delivers a burst of 1,000
/// findings (500 buckets created public after the first inventory: each raises
/// S3BucketPublic and S3BlockPublicAccessDisabled at the refresh that first sees it). After
/// the restart every finding reaches every sink, and no bucket's finding of one type arrives
/// under two IDs.
#[tokio::test(flavor = "multi_thread")]
async fn a_sigkill_during_a_burst_of_findings_loses_none_and_gives_none_a_second_id() -> anyhow::Result<()> {
    const BUCKETS: usize = 500;
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    seed_bucket(&moto, &creds, &Spec::plain(A, "estate-b-seed".into())).await?;
    let queue = bus_with_queue(&moto).await?;
    let dir = tempfile::tempdir()?;
    let mut receiver = Receiver::start(dir.path(), SECRET).await?;
    let (config, ocsf) = sinks_config(dir.path(), &receiver, None)?;
    let mut admin = start_admin(dir.path(), &config, &moto)?;
    let _agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &[])?;
    eventually(WITHIN, "the first refresh", || async {
        let members = admin.ctl_json(None, &["members"])?;
        Ok(members["members"][0]["regions"][0]["lastUpdated"].is_string().then_some(()))
    })
    .await?;

    let s3 = moto.s3(&creds, "us-east-1");
    let names: Vec<String> = (0..BUCKETS).map(|i| format!("estate-burst-{i:03}")).collect();
    for chunk in names.chunks(25) {
        let creates = chunk
            .iter()
            .map(|name| s3.create_bucket().bucket(name).acl(aws_sdk_s3::types::BucketCannedAcl::PublicRead).send());
        for created in futures_util::future::join_all(creates).await {
            created?;
        }
    }
    admin.ctl(None, &["refresh"])?;

    // Kill once the webhook has taken a hundred of them.
    let mut webhook: Vec<Received> = Vec::new();
    while webhook.len() < 100 {
        webhook.push(receiver.next(Duration::from_secs(120)).await?);
    }
    admin.kill_and_restart()?;

    let findings = eventually(Duration::from_secs(300), "every finding raised", || async {
        let listed = admin.ctl_json(None, &["findings"])?;
        let all = listed["findings"].as_array().cloned().unwrap_or_default();
        Ok((all.len() >= 2 * BUCKETS).then_some(all))
    })
    .await?;
    let mut ids = BTreeSet::new();
    let mut per_bucket_and_type = BTreeMap::new();
    for f in &findings {
        let id = f["id"].as_str().unwrap().to_owned();
        let key = (f["resourcesAffected"]["s3Bucket"]["name"].as_str().unwrap().to_owned(), f["type"].to_string());
        assert!(per_bucket_and_type.insert(key.clone(), id.clone()).is_none(), "two findings for {key:?}");
        ids.insert(id);
    }
    assert_eq!(findings.len(), 2 * BUCKETS, "each new public bucket raises two findings");

    // Every sink delivers every one, each under the ID the administrator holds.
    let check = |sink: &str, delivered: &[(String, String, String)]| {
        let mut seen: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for (bucket, kind, id) in delivered {
            seen.entry((bucket.clone(), kind.clone())).or_default().insert(id.clone());
        }
        let delivered_ids: BTreeSet<&String> = delivered.iter().map(|(_, _, id)| id).collect();
        let missing: Vec<&String> = ids.iter().filter(|id| !delivered_ids.contains(id)).collect();
        let twice: Vec<_> = seen.iter().filter(|(_, ids)| ids.len() > 1).collect();
        (missing.len(), twice.len(), delivered.len(), sink.to_owned())
    };
    let as_delivered = |doc: &Value| {
        (
            doc["resourcesAffected"]["s3Bucket"]["name"].as_str().unwrap_or_default().to_owned(),
            doc["type"].to_string(),
            doc["id"].as_str().unwrap_or_default().to_owned(),
        )
    };
    // Polled by hand: these collect as they wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let hook = loop {
        while let Ok(request) = receiver.requests.try_recv() {
            webhook.push(request);
        }
        let delivered: Vec<_> = webhook
            .iter()
            .filter(|r| r.path == "/hook")
            .filter_map(|r| r.json().ok())
            .map(|d| as_delivered(&d))
            .collect();
        let report = check("hook", &delivered);
        if report.0 == 0 || std::time::Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut on_bus = Vec::new();
    let bus = loop {
        on_bus.extend(drain(&moto, &queue).await?.iter().map(|e| as_delivered(&e["detail"])));
        let report = check("bus", &on_bus);
        if report.0 == 0 || std::time::Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let lake = eventually(Duration::from_secs(300), "the OCSF file to hold every finding", || async {
        let text = std::fs::read_to_string(&ocsf).unwrap_or_default();
        let delivered: Vec<_> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|e| {
                (
                    e["resources"][0]["name"].as_str().unwrap_or_default().to_owned(),
                    format!("\"{}\"", e["finding_info"]["types"][0].as_str().unwrap_or_default()),
                    e["finding_info"]["uid"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let report = check("lake", &delivered);
        Ok((report.0 == 0).then_some(report))
    })
    .await?;
    let hub = loop {
        let delivered: Vec<_> = security_hub_findings(&moto)?
            .iter()
            .map(|f| {
                (
                    f["Resources"][0]["Id"].as_str().unwrap_or_default().trim_start_matches("arn:aws:s3:::").to_owned(),
                    format!("\"{}\"", f["ProductFields"]["estate/findingType"].as_str().unwrap_or_default()),
                    f["Id"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let report = check("hub", &delivered);
        if report.0 == 0 || std::time::Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (missing, twice, delivered, sink) in [hook, bus, lake, hub] {
        println!("{sink}: {delivered} deliveries of {} findings", ids.len());
        assert_eq!((missing, twice), (0, 0), "{sink}: findings missing, or one under two IDs");
    }
    validate_ocsf(&ocsf)?;
    Ok(())
}
