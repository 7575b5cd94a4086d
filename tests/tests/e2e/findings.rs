//! Change monitoring end to end: real changes in moto, CloudTrail-shaped events through
//! moto's EventBridge → SQS path, the agent re-reading what they name, and the findings that
//! arrive over WatchFindings; findings survive a restart; malformed, duplicate and
//! foreign-account events are handled.

use std::time::Instant;

use aws_sdk_s3::types::{
    BucketCannedAcl, BucketVersioningStatus, Destination, ReplicationConfiguration, ReplicationRule,
    ReplicationRuleFilter, ReplicationRuleStatus, VersioningConfiguration,
};
use estate_common::pb::{self, findings_service_client::FindingsServiceClient};

use super::*;

const ACTOR: &str = "arn:aws:iam::111111111111:user/alice";

pub(super) struct Events {
    sqs: aws_sdk_sqs::Client,
    bridge: aws_sdk_eventbridge::Client,
    pub(super) queue: String,
    pub(super) dead_letters: String,
    next: std::sync::atomic::AtomicUsize,
}

impl Events {
    pub(super) async fn create(moto: &Moto, creds: &aws_sdk_s3::config::Credentials) -> anyhow::Result<Self> {
        let sqs = moto.sqs(creds);
        let dead_letters = sqs.create_queue().queue_name("estate-events-dlq").send().await?.queue_url.unwrap();
        let queue = moto.event_queue(creds, "estate-events").await?;
        Ok(Self { sqs, bridge: moto.eventbridge(creds), queue, dead_letters, next: Default::default() })
    }

    pub(super) fn detail(&self, account: &str, name: &str, bucket: Option<&str>, event_id: &str) -> Value {
        let mut params = json!({});
        if let Some(b) = bucket {
            params["bucketName"] = json!(b);
        }
        json!({
            "eventVersion": "1.09",
            "userIdentity": {"type": "IAMUser", "arn": ACTOR, "accountId": account, "principalId": "AIDAEXAMPLE"},
            "eventTime": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
            "eventSource": "s3.amazonaws.com",
            "eventName": name,
            "awsRegion": "us-east-1",
            "requestParameters": params,
            "eventID": event_id,
            "eventType": "AwsApiCall",
            "recipientAccountId": account,
        })
    }

    /// Publishes a CloudTrail-shaped event through EventBridge; returns its ID.
    pub(super) async fn publish(&self, account: &str, name: &str, bucket: Option<&str>) -> anyhow::Result<String> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let event_id = format!("00000000-0000-4000-8000-{n:012}");
        self.publish_with_id(account, name, bucket, &event_id).await?;
        Ok(event_id)
    }

    async fn publish_with_id(
        &self,
        account: &str,
        name: &str,
        bucket: Option<&str>,
        event_id: &str,
    ) -> anyhow::Result<()> {
        self.publish_detail(self.detail(account, name, bucket, event_id)).await
    }

    /// Publishes a CloudTrail event's `detail` as written.
    pub(super) async fn publish_detail(&self, detail: Value) -> anyhow::Result<()> {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .source("aws.s3")
            .detail_type("AWS API Call via CloudTrail")
            .detail(detail.to_string())
            .build();
        let out = self.bridge.put_events().entries(entry).send().await?;
        anyhow::ensure!(out.failed_entry_count() == 0, "PutEvents failed: {out:?}");
        Ok(())
    }
}

/// Collects findings from WatchFindings with the time each arrived.
struct Watcher {
    rx: tokio::sync::mpsc::UnboundedReceiver<(Instant, pb::Finding)>,
}

impl Watcher {
    async fn start(admin: &Admin, cursor: u64) -> anyhow::Result<Self> {
        let mut client = FindingsServiceClient::connect(admin.grpc.clone()).await?;
        let mut stream = client.watch_findings(pb::WatchFindingsRequest { cursor }).await?.into_inner();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(message)) = stream.message().await {
                if let Some(f) = message.finding {
                    let _ = tx.send((Instant::now(), f));
                }
            }
        });
        Ok(Self { rx })
    }

    /// The next finding, within `timeout`.
    async fn next(&mut self, timeout: Duration) -> anyhow::Result<(Instant, pb::Finding)> {
        tokio::time::timeout(timeout, self.rx.recv()).await?.ok_or_else(|| anyhow::anyhow!("the watch ended"))
    }
}

fn kind(f: &pb::Finding) -> pb::FindingType {
    pb::FindingType::try_from(f.r#type).unwrap()
}

/// The ceiling on the wait between an event and its finding: generous, so that a busy machine
/// does not fail the test (the benchmark measures the real figure; several moto servers and
/// builds share two cores while the tests run).
const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn changes_for_the_worse_raise_the_right_findings() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    let s3 = moto.s3(&creds, "us-east-1");
    let events = Events::create(&moto, &creds).await?;
    let seed = |name: &str| Spec::plain(A, name.into());
    let names = [
        "estate-f-policy",
        "estate-f-acl",
        "estate-f-replication",
        "estate-f-shared",
        "estate-f-cloudfront",
        "estate-f-quiet",
    ];
    for name in names {
        seed_bucket(&moto, &creds, &seed(name)).await?;
    }
    seed_bucket(&moto, &creds, &Spec { bpa: Some([true; 4]), ..seed("estate-f-bpa") }).await?;
    seed_bucket(&moto, &creds, &Spec { encryption: Some(("aws:kms", Some("k1"))), ..seed("estate-f-encryption") })
        .await?;
    seed_bucket(&moto, &creds, &Spec { canned_acl: Some("public-read"), ..seed("estate-f-born-public") }).await?;
    s3.put_bucket_versioning()
        .bucket("estate-f-replication")
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await?;

    let dir = tempfile::tempdir()?;
    let mut admin = Admin::start(&dir.path().join("data"), None)?;
    let agent_args = [
        "--events-queue-url",
        &events.queue,
        "--events-dead-letter-queue-url",
        &events.dead_letters,
        "--events-wait-seconds",
        "1",
    ];
    let agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &agent_args)?;
    eventually(Duration::from_secs(60), "the first refresh", || async {
        let members = admin.ctl_json(None, &["members"])?;
        let stats = admin.ctl_json(None, &["stats"])?;
        let done = members["members"][0]["regions"][0]["lastUpdated"].is_string();
        Ok((done && stats["bucketCount"] == names.len() + 3).then_some(()))
    })
    .await?;
    // From the first finding on: had first sight raised any, it would come before the first
    // expected one below.
    let mut watcher = Watcher::start(&admin, 0).await?;

    let public_policy = |b: &str| {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{b}/*")}]}).to_string()
    };
    let mut latencies = Vec::new();
    let mut expect =
        async |name: &str, bucket: &str, want: pb::FindingType, count: i64| -> anyhow::Result<pb::Finding> {
            let published = Instant::now();
            let event_id = events.publish(A, name, Some(bucket)).await?;
            let (arrived, finding) =
                watcher.next(WITHIN).await.map_err(|e| e.context(format!("{name} on {bucket}")))?;
            latencies.push(arrived - published);
            assert_eq!(kind(&finding), want, "{name} on {bucket}: {finding:?}");
            assert_eq!(finding.bucket_name, bucket);
            assert_eq!(finding.count, count, "{finding:?}");
            let action = finding.last_action.clone().unwrap();
            assert_eq!(
                (action.api.as_str(), action.actor.as_str(), action.event_id.as_str()),
                (name, ACTOR, event_id.as_str())
            );
            Ok(finding)
        };

    s3.put_bucket_policy().bucket("estate-f-policy").policy(public_policy("estate-f-policy")).send().await?;
    expect("PutBucketPolicy", "estate-f-policy", pb::FindingType::S3BucketPublic, 1).await?;
    s3.put_bucket_acl().bucket("estate-f-acl").acl(BucketCannedAcl::PublicRead).send().await?;
    expect("PutBucketAcl", "estate-f-acl", pb::FindingType::S3BucketPublic, 1).await?;
    s3.delete_public_access_block().bucket("estate-f-bpa").send().await?;
    expect("DeleteBucketPublicAccessBlock", "estate-f-bpa", pb::FindingType::S3BlockPublicAccessDisabled, 1).await?;
    s3.put_bucket_replication()
        .bucket("estate-f-replication")
        .replication_configuration(
            ReplicationConfiguration::builder()
                .role("arn:aws:iam::111111111111:role/replication")
                .rules(
                    ReplicationRule::builder()
                        .id("out")
                        .priority(1)
                        .status(ReplicationRuleStatus::Enabled)
                        .filter(ReplicationRuleFilter::builder().prefix("").build())
                        .destination(Destination::builder().bucket("arn:aws:s3:::elsewhere").account(OUTSIDE).build()?)
                        .build()?,
                )
                .build()?,
        )
        .send()
        .await?;
    expect("PutBucketReplication", "estate-f-replication", pb::FindingType::S3BucketReplicatedExternally, 1).await?;
    let outsider = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": OUTSIDE}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::estate-f-shared/*"}]});
    s3.put_bucket_policy().bucket("estate-f-shared").policy(outsider.to_string()).send().await?;
    expect("PutBucketPolicy", "estate-f-shared", pb::FindingType::S3BucketSharedExternally, 1).await?;
    let oac = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::estate-f-cloudfront/*", "Condition": {"StringEquals": {"AWS:SourceArn": "arn:aws:cloudfront::111111111111:distribution/E1"}}}]});
    s3.put_bucket_policy().bucket("estate-f-cloudfront").policy(oac.to_string()).send().await?;
    expect("PutBucketPolicy", "estate-f-cloudfront", pb::FindingType::S3BucketSharedWithCloudFront, 1).await?;
    s3.delete_bucket_encryption().bucket("estate-f-encryption").send().await?;
    let disabled =
        expect("DeleteBucketEncryption", "estate-f-encryption", pb::FindingType::S3BucketEncryptionDisabled, 1).await?;
    assert_eq!(pb::FindingType::try_from(disabled.r#type)?, pb::FindingType::S3BucketEncryptionDisabled);

    // The same change again counts; a change back deletes nothing.
    s3.put_bucket_policy().bucket("estate-f-policy").policy(public_policy("estate-f-policy")).send().await?;
    let repeated = expect("PutBucketPolicy", "estate-f-policy", pb::FindingType::S3BucketPublic, 2).await?;
    assert!(repeated.updated_at_ms >= repeated.created_at_ms);
    s3.delete_bucket_policy().bucket("estate-f-policy").send().await?;
    events.publish(A, "DeleteBucketPolicy", Some("estate-f-policy")).await?;
    // A change for the better raises nothing: the next finding is the next section's.

    // Malformed, duplicate and foreign-account events.
    events.sqs.send_message().queue_url(&events.queue).message_body("{this is not an event").send().await?;
    let duplicate = "11111111-2222-4333-8444-555555555555";
    s3.put_bucket_acl().bucket("estate-f-quiet").acl(BucketCannedAcl::PublicRead).send().await?;
    events.publish_with_id(A, "PutBucketAcl", Some("estate-f-quiet"), duplicate).await?;
    let (_, first) = watcher.next(WITHIN).await?;
    assert_eq!(
        (kind(&first), first.bucket_name.as_str(), first.count),
        (pb::FindingType::S3BucketPublic, "estate-f-quiet", 1),
        "the change for the better before it raised nothing"
    );
    events.publish_with_id(A, "PutBucketAcl", Some("estate-f-quiet"), duplicate).await?;
    events.publish(OUTSIDE, "PutBucketAcl", Some("estate-f-quiet")).await?;
    // A barrier: a change for the worse published after them, whose finding must come next.
    let aes = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256).build()?,
                )
                .build(),
        )
        .build()?;
    s3.put_bucket_encryption().bucket("estate-f-encryption").server_side_encryption_configuration(aes).send().await?;
    events.publish(A, "PutBucketEncryption", Some("estate-f-encryption")).await?;
    s3.delete_bucket_encryption().bucket("estate-f-encryption").send().await?;
    events.publish(A, "DeleteBucketEncryption", Some("estate-f-encryption")).await?;
    let (_, barrier) = watcher.next(WITHIN).await?;
    assert_eq!(
        (kind(&barrier), barrier.bucket_name.as_str(), barrier.count),
        (pb::FindingType::S3BucketEncryptionDisabled, "estate-f-encryption", 2),
        "duplicates and foreign events change nothing: the barrier's finding comes next"
    );
    // The encryption set to SSE-S3 was the first occurrence after them; its deletion is one
    // more. Taken here, so that it cannot arrive after the restart below in place of that
    // section's finding.
    let (_, deleted) = watcher.next(WITHIN).await?;
    assert_eq!(
        (kind(&deleted), deleted.bucket_name.as_str(), deleted.count),
        (pb::FindingType::S3BucketEncryptionDisabled, "estate-f-encryption", 3),
        "the deletion after the reset counts once more"
    );
    let set_aside = eventually(Duration::from_secs(10), "the malformed message in the dead-letter queue", || async {
        let out = events.sqs.receive_message().queue_url(&events.dead_letters).wait_time_seconds(1).send().await?;
        Ok(out.messages.unwrap_or_default().into_iter().next())
    })
    .await?;
    assert_eq!(set_aside.body(), Some("{this is not an event"));
    assert!(agent.process.log_text().contains("malformed event set aside"));

    // A bucket public at first sight: no finding, but in the posture report.
    let findings = admin.ctl_json(None, &["findings"])?;
    let all = findings["findings"].as_array().unwrap();
    assert!(all.iter().all(|f| f["resourcesAffected"]["s3Bucket"]["name"] != "estate-f-born-public"));
    assert_eq!(all.len(), 8, "{findings}");
    let public = all.iter().find(|f| f["resourcesAffected"]["s3Bucket"]["name"] == "estate-f-policy").unwrap();
    assert_eq!(public["type"], "Policy:IAMUser/S3BucketPublic");
    assert_eq!(public["severity"], json!({"description": "High", "score": 3}));
    assert_eq!(public["count"], 2);
    assert_eq!(public["policyDetails"]["action"]["apiCallDetails"]["api"], "PutBucketPolicy");
    let posture = admin.ctl_json(None, &["posture"])?;
    let born =
        posture["buckets"].as_array().unwrap().iter().find(|b| b["bucketName"] == "estate-f-born-public").unwrap();
    assert!(born["reasons"].as_array().unwrap().contains(&json!("public")), "{posture}");
    let by_type = admin.ctl_json(None, &["findings", "--group-by", "severity.description"])?;
    assert_eq!(
        by_type["countsByGroup"],
        json!([{"groupKey": "High", "count": 6}, {"groupKey": "Low", "count": 1}, {"groupKey": "Medium", "count": 1}])
    );

    // Restart in the middle: every finding and its count survives, and monitoring goes on.
    drop(watcher);
    admin.kill_and_restart()?;
    let after = admin.ctl_json(None, &["findings"])?;
    assert_eq!(after["findings"].as_array().unwrap().len(), 8);
    let public = after["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["resourcesAffected"]["s3Bucket"]["name"] == "estate-f-policy")
        .unwrap();
    assert_eq!(public["count"], 2);
    let mut watcher = Watcher::start(&admin, 0).await?;
    eventually(Duration::from_secs(30), "the agent to reconnect", || async {
        let members = admin.ctl_json(None, &["members"])?;
        Ok((members["members"][0]["connectionState"] == "CONNECTED").then_some(()))
    })
    .await?;
    s3.put_bucket_policy().bucket("estate-f-policy").policy(public_policy("estate-f-policy")).send().await?;
    events.publish(A, "PutBucketPolicy", Some("estate-f-policy")).await?;
    let (_, again) = watcher.next(WITHIN).await?;
    assert_eq!(
        (kind(&again), again.count),
        (pb::FindingType::S3BucketPublic, 3),
        "made public again after the restart"
    );
    latencies.sort();
    println!("event → finding latencies: {latencies:?}");
    Ok(())
}

/// Issue 24: only the buckets of a Region's first complete inventory are a baseline. A bucket
/// created exposed after it raises its findings at the refresh that first sees it; and a
/// public access block that cannot be read (the response corrupted) is unknown, so the
/// guarded bucket raises no `S3BlockPublicAccessDisabled`.
#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_created_exposed_later_raises_its_findings_and_an_unread_block_raises_none() -> anyhow::Result<()> {
    use estate_tests::faultproxy::{Fault, FaultProxy};
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    let s3 = moto.s3(&creds, "us-east-1");
    seed_bucket(&moto, &creds, &Spec { bpa: Some([true; 4]), ..Spec::plain(A, "estate-s-guarded".into()) }).await?;
    let proxy = FaultProxy::start(&moto.endpoint).await?;
    let dir = tempfile::tempdir()?;
    let admin = Admin::start_with(&dir.path().join("data"), None, &["--min-refresh-interval", "0"])?;
    let agent = Agent::start_at(&admin, &proxy.endpoint, &creds, None, &["us-east-1"], &[])?;
    let last_updated = || -> anyhow::Result<Option<String>> {
        let members = admin.ctl_json(None, &["members"])?;
        Ok(members["members"][0]["regions"][0]["lastUpdated"].as_str().map(str::to_owned))
    };
    let first = eventually(Duration::from_secs(60), "the first inventory", || async { last_updated() })
        .await
        .map_err(|e| e.context(agent.process.log_text()))?;
    assert_eq!(admin.ctl_json(None, &["findings"])?["findings"], json!([]), "the first inventory is the baseline");

    // After it: a bucket created with a public policy, and the guarded bucket's public access
    // block unreadable from now on.
    seed_bucket(&moto, &creds, &Spec::plain(A, "estate-s-born-later".into())).await?;
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
        "Action": "s3:GetObject", "Resource": "arn:aws:s3:::estate-s-born-later/*"}]});
    s3.put_bucket_policy().bucket("estate-s-born-later").policy(policy.to_string()).send().await?;
    proxy.inject("/estate-s-guarded/?publicAccessBlock ", Fault::Corrupt, 1_000);
    let asked = admin.ctl_json(None, &["refresh"])?;
    assert_eq!(asked["scopes"][0]["requested"], true, "{asked}");
    eventually(Duration::from_secs(60), "the refresh after the changes", || async {
        Ok(last_updated()?.filter(|at| *at != first))
    })
    .await
    .map_err(|e| e.context(agent.process.log_text()))?;
    assert!(proxy.injected() > 0, "the fault fired: {:#?}", proxy.seen());
    let guarded = admin.ctl_json(None, &["bucket", "estate-s-guarded"])?;
    assert!(
        guarded.to_string().contains("s3:GetBucketPublicAccessBlock"),
        "the guarded bucket's block was not read: {guarded}"
    );

    // The policy's analysis lands after the refresh; the findings are those of the new bucket.
    let raised = eventually(Duration::from_secs(60), "the new bucket's S3BucketPublic", || async {
        let findings = admin.ctl_json(None, &["findings"])?;
        let raised: BTreeSet<(String, String)> = findings["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let bucket = f["resourcesAffected"]["s3Bucket"]["name"].as_str().unwrap_or_default().to_owned();
                (bucket, f["type"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        Ok(raised.iter().any(|(_, kind)| kind == "Policy:IAMUser/S3BucketPublic").then_some(raised))
    })
    .await?;
    assert_eq!(
        raised,
        BTreeSet::from([
            ("estate-s-born-later".to_owned(), "Policy:IAMUser/S3BucketPublic".to_owned()),
            ("estate-s-born-later".to_owned(), "Policy:IAMUser/S3BlockPublicAccessDisabled".to_owned()),
        ]),
        "the new bucket's exposure, and nothing for the guarded bucket"
    );
    Ok(())
}
