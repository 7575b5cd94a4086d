//! Where Estate used to know less than Macie, over the real binaries against moto: replication
//! destinations named without their account, `aws:PrincipalOrgPaths` with and without the OU
//! tree, organization accounts no agent reports for and their effect on `lastUpdated`,
//! account-wide settings changed in a Region the agent does not cover, and the posture report;
//! gRPC reflection in both of its versions.

use aws_sdk_s3::config::Credentials;

use super::*;

const ORG_ID: &str = "o-exampleorg1";

/// Replicates `bucket` (versioned) to each destination bucket, naming no account.
async fn replicate_without_account(
    moto: &Moto,
    creds: &Credentials,
    account: &str,
    bucket: &str,
    destinations: &[&str],
) -> anyhow::Result<()> {
    let s3 = moto.s3(creds, "us-east-1");
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await?;
    let destinations: Vec<(String, Option<&str>)> = destinations.iter().map(|d| (d.to_string(), None)).collect();
    let config = replication_config(account, &destinations)?;
    s3.put_bucket_replication().bucket(bucket).replication_configuration(config).send().await?;
    Ok(())
}

fn bucket_spec(account: &'static str, region: &'static str, name: &str) -> Spec {
    Spec { account, region, name: name.into(), ..Default::default() }
}

/// The member's entry in `estatectl members`.
pub(super) fn member(admin: &Admin, account: &str) -> anyhow::Result<Value> {
    let members = admin.ctl_json(Some(CLIENT_TOKEN), &["members"])?;
    let found = members["members"].as_array().into_iter().flatten().find(|m| m["accountId"] == account).cloned();
    found.ok_or_else(|| anyhow::anyhow!("account {account} is not listed: {members}"))
}

fn refreshed(admin: &Admin, account: &str, regions: usize) -> anyhow::Result<bool> {
    let m = member(admin, account)?;
    Ok(m["regions"].as_array().is_some_and(|r| r.len() == regions && r.iter().all(|r| r["lastUpdated"].is_string())))
}

/// A rule without `Destination.Account` is resolved through the members' bucket lists and
/// inventories: UNKNOWN while a member has not reported its list, then internal for a bucket
/// a member's inventory holds and external for a bucket no member holds. (A bucket named only
/// in a member's list is not believed to be that member's: `owners.rs`.)
#[tokio::test(flavor = "multi_thread")]
async fn replication_destinations_without_an_account_are_resolved_from_member_inventories() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds_a = moto.credentials(A).await?;
    let creds_b = moto.credentials(B).await?;
    let creds_c = moto.credentials(C).await?;
    for name in ["estate-r-to-member", "estate-r-to-stranger"] {
        seed_bucket(&moto, &creds_a, &bucket_spec(A, "us-east-1", name)).await?;
    }
    seed_bucket(&moto, &creds_b, &bucket_spec(B, "eu-west-1", "estate-r-dest-in-b")).await?;
    replicate_without_account(&moto, &creds_a, A, "estate-r-to-member", &["estate-r-dest-in-b"]).await?;
    replicate_without_account(&moto, &creds_a, A, "estate-r-to-stranger", &["estate-r-dest-nowhere"]).await?;

    let dir = tempfile::tempdir()?;
    let config = write_config_for(dir.path(), &[A, B, C]);
    let admin = Admin::start(&dir.path().join("data"), Some(&config))?;
    let token = Some(CLIENT_TOKEN);
    let _a = Agent::start(&admin, &moto, &creds_a, Some(&agent_token(A)), &["us-east-1"], &[])?;
    eventually(Duration::from_secs(60), "A's first refresh", || async { Ok(refreshed(&admin, A, 1)?.then_some(())) })
        .await?;
    // B and C have not reported their buckets: nothing can be said of either destination.
    // Macie's boolean says `true` (the destination is in no inventory Estate holds), and
    // Estate's reason says it is not known.
    for name in ["estate-r-to-member", "estate-r-to-stranger"] {
        let b = admin.ctl_json(token, &["bucket", name])?;
        let details = &b["replicationDetails"];
        assert_eq!(details["replicated"], true, "{b}");
        assert_eq!(details["replicatedExternally"], true, "{name}: {b}");
        let reason = details["unknownReason"].as_str().unwrap_or_default();
        assert!(reason.contains("have not reported their bucket list"), "{name}: {reason}");
    }

    let _b = Agent::start(&admin, &moto, &creds_b, Some(&agent_token(B)), &["us-east-1", "eu-west-1"], &[])?;
    let internal = eventually(Duration::from_secs(60), "the member's destination to be found", || async {
        let b = admin.ctl_json(token, &["bucket", "estate-r-to-member"])?;
        Ok((b["replicationDetails"]["replicatedExternally"] == false).then_some(b))
    })
    .await?;
    assert_eq!(internal["replicationDetails"]["replicationAccounts"], json!([B]), "{internal}");
    assert!(internal["replicationDetails"]["unknownReason"].is_null(), "{internal}");
    // C still has not reported: a bucket no member holds may yet be C's.
    let stranger = admin.ctl_json(token, &["bucket", "estate-r-to-stranger"])?;
    assert_eq!(stranger["replicationDetails"]["replicatedExternally"], true, "{stranger}");
    assert!(stranger["replicationDetails"]["unknownReason"].as_str().unwrap().contains(C), "{stranger}");

    let _c = Agent::start(&admin, &moto, &creds_c, Some(&agent_token(C)), &["us-east-1"], &[])?;
    let external = eventually(Duration::from_secs(60), "the stranger's destination to be external", || async {
        let b = admin.ctl_json(token, &["bucket", "estate-r-to-stranger"])?;
        let known = b["replicationDetails"]["unknownReason"].is_null();
        Ok((known && b["replicationDetails"]["replicatedExternally"] == true).then_some(b))
    })
    .await?;
    assert_eq!(external["replicationDetails"]["replicationAccounts"], json!([]), "the owner is unknown: {external}");
    let stats = admin.ctl_json(token, &["stats"])?;
    assert_eq!(stats["membersPending"], 0, "{stats}");
    Ok(())
}

/// Coverage and freshness: organization accounts with no agent are listed and counted, and the
/// organization's `lastUpdated` is still set from the members with data (as Macie's); the
/// posture report (GetPosture) names internal sharing; a policy path under our organization
/// is INTERNAL although the OU tree is not configured.
#[tokio::test(flavor = "multi_thread")]
async fn coverage_freshness_posture_and_organization_paths() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds_a = moto.credentials(A).await?;
    let creds_b = moto.credentials(B).await?;
    let s3 = moto.s3(&creds_a, "us-east-1");
    let names = ["estate-c-public", "estate-c-shared-b", "estate-c-org-paths", "estate-c-other-org", "estate-c-quiet"];
    for name in names {
        seed_bucket(&moto, &creds_a, &bucket_spec(A, "us-east-1", name)).await?;
    }
    let policy = |bucket: &str, principal: Value, condition: Option<Value>| {
        let mut statement = json!({"Effect": "Allow", "Principal": principal, "Action": "s3:GetObject",
            "Resource": format!("arn:aws:s3:::{bucket}/*")});
        if let Some(c) = condition {
            statement["Condition"] = c;
        }
        json!({"Version": "2012-10-17", "Statement": [statement]}).to_string()
    };
    let paths = |path: &str| Some(json!({"ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": path}}));
    let policies = [
        ("estate-c-public", policy("estate-c-public", json!("*"), None)),
        ("estate-c-shared-b", policy("estate-c-shared-b", json!({"AWS": format!("arn:aws:iam::{B}:root")}), None)),
        ("estate-c-org-paths", policy("estate-c-org-paths", json!("*"), paths(&format!("{ORG_ID}/*")))),
        ("estate-c-other-org", policy("estate-c-other-org", json!("*"), paths("o-otherorg22/*"))),
    ];
    for (bucket, text) in &policies {
        s3.put_bucket_policy().bucket(*bucket).policy(text).send().await?;
    }

    let dir = tempfile::tempdir()?;
    // B has an agent configured that does not connect yet; C has none at all.
    let config = write_config_for(dir.path(), &[A, B]);
    let admin = Admin::start(&dir.path().join("data"), Some(&config))?;
    let token = Some(CLIENT_TOKEN);
    let _a = Agent::start(&admin, &moto, &creds_a, Some(&agent_token(A)), &["us-east-1"], &[])?;
    eventually(Duration::from_secs(60), "A's first refresh", || async { Ok(refreshed(&admin, A, 1)?.then_some(())) })
        .await?;

    let a = member(&admin, A)?;
    assert_eq!(a["relationshipStatus"], "Enabled", "{a}");
    assert!(a["lastUpdated"].is_string(), "{a}");
    for account in [B, C] {
        let m = member(&admin, account)?;
        assert_eq!(m["relationshipStatus"], "NoAgent", "{m}");
        assert!(m["lastUpdated"].is_null(), "{m}");
        assert_eq!(m["connectionState"], "DISCONNECTED", "{m}");
    }
    let stats = admin.ctl_json(token, &["stats"])?;
    assert_eq!(stats["membersWithoutAgent"], 2, "{stats}");
    assert_eq!(stats["membersPending"], 2, "{stats}");
    let only_a = admin.ctl_json(token, &["stats", "--account-id", A])?;
    assert!(only_a["lastUpdated"].is_string(), "{only_a}");
    assert_eq!(stats["lastUpdated"], only_a["lastUpdated"], "B and C have no data: A's is the earliest: {stats}");
    let b_only = admin.ctl_json(token, &["stats", "--account-id", B])?;
    assert!(b_only["lastUpdated"].is_null(), "B has no data: {b_only}");
    assert_eq!(only_a["membersPending"], 0, "{only_a}");

    // Every policy analysed, then the posture report.
    let verdicts = eventually(Duration::from_secs(60), "every policy to be analysed", || async {
        let listed = admin.ctl_json(token, &["buckets", "--all", "--where", "bucketName^=estate-c-"])?;
        let done = listed["buckets"].as_array().unwrap().iter().all(|b| b["sharedAccess"] != "UNKNOWN");
        Ok(done.then_some(listed))
    })
    .await?;
    let shared = |name: &str| {
        let b = verdicts["buckets"].as_array().unwrap().iter().find(|b| b["bucketName"] == name).unwrap();
        (b["sharedAccess"].as_str().unwrap().to_owned(), b["sharedWithAccounts"].clone())
    };
    assert_eq!(shared("estate-c-org-paths"), ("INTERNAL".into(), json!([B, C])), "a path under our organization");
    assert_eq!(shared("estate-c-other-org").0, "EXTERNAL", "a path under another organization");
    assert_eq!(shared("estate-c-shared-b"), ("INTERNAL".into(), json!([B])));

    let posture = admin.ctl_json(token, &["posture"])?;
    let entry = |name: &str| {
        posture["buckets"].as_array().unwrap().iter().find(|b| b["bucketName"] == name).cloned().unwrap_or(Value::Null)
    };
    let reasons = |name: &str| entry(name)["reasons"].clone();
    assert!(reasons("estate-c-public").as_array().unwrap().contains(&json!("public")), "{posture}");
    assert!(reasons("estate-c-shared-b").as_array().unwrap().contains(&json!("shared internally")), "{posture}");
    assert_eq!(entry("estate-c-shared-b")["sharedInternallyWith"], json!([B]), "{posture}");
    assert!(reasons("estate-c-other-org").as_array().unwrap().contains(&json!("shared externally")), "{posture}");
    // Every bucket accepts unencrypted uploads (no policy requires encryption), so every bucket
    // is listed, each exactly once, in key order.
    let listed: Vec<&str> =
        posture["buckets"].as_array().unwrap().iter().map(|b| b["bucketName"].as_str().unwrap()).collect();
    let mut sorted = names.to_vec();
    sorted.sort();
    assert_eq!(listed, sorted, "{posture}");
    let of_b = admin.ctl_json(token, &["posture", "--account-id", B])?;
    assert_eq!(of_b["buckets"], json!([]), "B has no bucket: {of_b}");
    // A client asking for nonsense gets a clear error.
    let err = admin.ctl(token, &["posture", "--account-id", "12"]).unwrap_err();
    assert!(format!("{err:#}").contains("`12` is not a 12-digit account ID"), "{err:#}");

    // B's agent connects and refreshes: only C is missing now.
    let _b = Agent::start(&admin, &moto, &creds_b, Some(&agent_token(B)), &["us-east-1"], &[])?;
    eventually(Duration::from_secs(60), "B's first refresh", || async { Ok(refreshed(&admin, B, 1)?.then_some(())) })
        .await?;
    assert_eq!(member(&admin, B)?["relationshipStatus"], "Enabled");
    let stats = admin.ctl_json(token, &["stats"])?;
    assert_eq!(
        (stats["membersWithoutAgent"].clone(), stats["membersPending"].clone()),
        (json!(1), json!(1)),
        "{stats}"
    );
    let earliest = [A, B]
        .map(|account| admin.ctl_json(token, &["stats", "--account-id", account]).map(|s| s["lastUpdated"].clone()));
    let earliest = earliest.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let earliest = earliest.iter().filter_map(Value::as_str).min().map(str::to_owned);
    assert_eq!(
        stats["lastUpdated"].as_str().map(str::to_owned),
        earliest,
        "the earliest of A and B; C is pending: {stats}"
    );
    Ok(())
}

/// DescribeBuckets refreshes, as Macie's: a query once a Region has been quiet for
/// `--describe-refresh-after` asks its agent for a refresh, which finds a bucket created with
/// no event; the query answers without waiting; a query that names one account refreshes only
/// that one; and another query right after asks nothing more.
#[tokio::test(flavor = "multi_thread")]
async fn describe_buckets_refreshes_regions_quiet_for_the_interval() -> anyhow::Result<()> {
    const QUIET_SECS: u64 = 15;
    let moto = Moto::start()?;
    let creds_a = moto.credentials(A).await?;
    let creds_b = moto.credentials(B).await?;
    seed_bucket(&moto, &creds_a, &bucket_spec(A, "us-east-1", "estate-q-a")).await?;
    seed_bucket(&moto, &creds_b, &bucket_spec(B, "us-east-1", "estate-q-b")).await?;
    let dir = tempfile::tempdir()?;
    let config = write_config_for(dir.path(), &[A, B]);
    let quiet = QUIET_SECS.to_string();
    // A reader's query may not ask more often than an operator may: both intervals are set.
    let flags = ["--describe-refresh-after", quiet.as_str(), "--min-refresh-interval", quiet.as_str()];
    let admin = Admin::start_with(&dir.path().join("data"), Some(&config), &flags)?;
    let token = Some(CLIENT_TOKEN);
    let _a = Agent::start(&admin, &moto, &creds_a, Some(&agent_token(A)), &["us-east-1"], &[])?;
    let _b = Agent::start(&admin, &moto, &creds_b, Some(&agent_token(B)), &["us-east-1"], &[])?;
    let first_refresh = |account: &'static str| {
        let admin = &admin;
        async move {
            eventually(Duration::from_secs(60), "the first refresh", || async {
                Ok(refreshed(admin, account, 1)?.then_some(()))
            })
            .await
        }
    };
    let asked = || {
        admin
            .process
            .log_text()
            .lines()
            .filter(|l| l.contains("refresh requested") && l.contains("DescribeBuckets"))
            .count()
    };
    // A query while A's Region is fresh asks nothing.
    first_refresh(A).await?;
    let only_a = format!("accountId={A}");
    admin.ctl_json(token, &["buckets", "--all", "--where", &only_a])?;
    assert_eq!(asked(), 0, "a fresh Region is not refreshed again");
    first_refresh(B).await?;
    let generation =
        |account: &str| -> anyhow::Result<Value> { Ok(member(&admin, account)?["regions"][0]["generation"].clone()) };
    let (first_a, first_b) = (generation(A)?, generation(B)?);

    // A bucket created with no event: only a refresh can find it.
    seed_bucket(&moto, &creds_a, &bucket_spec(A, "us-east-1", "estate-q-new")).await?;
    tokio::time::sleep(Duration::from_secs(QUIET_SECS + 1)).await;
    let listed = admin.ctl_json(token, &["buckets", "--all", "--where", &only_a])?;
    assert_eq!(
        listed["buckets"].as_array().map(Vec::len),
        Some(1),
        "the answer does not wait for the refresh: {listed}"
    );
    eventually(Duration::from_secs(60), "the refresh DescribeBuckets asked for", || async {
        let listed = admin.ctl_json(token, &["buckets", "--all", "--where", &only_a])?;
        Ok(listed["buckets"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["bucketName"] == "estate-q-new"))
            .then_some(()))
    })
    .await?;
    assert_ne!(generation(A)?, first_a, "A's Region was refreshed");
    assert_eq!(asked(), 1, "one request, however many queries: {}", admin.process.log_text());
    admin.ctl_json(token, &["buckets", "--all", "--where", &only_a])?;
    assert_eq!(asked(), 1, "a Region just refreshed is not asked again");
    assert_eq!(generation(B)?, first_b, "a query that names A leaves B alone");
    Ok(())
}

/// The OU tree read from AWS Organizations: a path to an OU that holds an account is INTERNAL,
/// a path under the organization that no account carries is shared with nobody, and a path
/// under another organization is EXTERNAL. None is public: only principals of an organization
/// carry its paths.
#[tokio::test(flavor = "multi_thread")]
async fn organization_paths_follow_the_ou_tree_from_organizations() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let root = Credentials::new("testing", "testing", None, None, "root");
    let (organizations, org_id) = moto.new_organization().await?;
    let root_id = organizations.list_roots().send().await?.roots()[0].id().expect("a root ID").to_owned();
    let ou = organizations.create_organizational_unit().parent_id(&root_id).name("workloads").send().await?;
    let ou_id = ou.organizational_unit().and_then(|o| o.id()).expect("an OU ID").to_owned();
    let empty = organizations.create_organizational_unit().parent_id(&root_id).name("empty").send().await?;
    let empty_id = empty.organizational_unit().and_then(|o| o.id()).expect("an OU ID").to_owned();
    let member = Moto::new_account(&organizations, "member").await?;
    organizations
        .move_account()
        .account_id(&member)
        .source_parent_id(&root_id)
        .destination_parent_id(&ou_id)
        .send()
        .await?;

    let owner = "123456789012";
    let s3 = moto.s3(&root, "us-east-1");
    let cases = [
        ("estate-o-workloads", format!("{org_id}/{root_id}/{ou_id}/*"), "INTERNAL"),
        ("estate-o-empty-ou", format!("{org_id}/{root_id}/{empty_id}/*"), "NOT_SHARED"),
        // A fixed path of another organization: not public (a fixed value of a principal
        // key), but outside accounts carry it.
        ("estate-o-other-org", "o-otherorg22/r-ab12/ou-ab12-11111111/".to_owned(), "EXTERNAL"),
    ];
    for (bucket, path, _) in &cases {
        seed_bucket(&moto, &root, &bucket_spec(owner, "us-east-1", bucket)).await?;
        let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
            "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/*"),
            "Condition": {"ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": path}}}]});
        s3.put_bucket_policy().bucket(*bucket).policy(policy.to_string()).send().await?;
    }

    let dir = tempfile::tempdir()?;
    let admin = Admin::start_with_organizations(&dir.path().join("data"), &moto)?;
    let _agent = Agent::start(&admin, &moto, &root, None, &["us-east-1"], &[])?;
    let listed = eventually(Duration::from_secs(90), "every policy to be analysed", || async {
        let listed = admin.ctl_json(None, &["buckets", "--all", "--where", "bucketName^=estate-o-"])?;
        let all = listed["buckets"].as_array().unwrap();
        Ok((all.len() == cases.len() && all.iter().all(|b| b["sharedAccess"] != "UNKNOWN")).then_some(listed))
    })
    .await?;
    for (bucket, path, sharing) in &cases {
        let b = listed["buckets"].as_array().unwrap().iter().find(|b| b["bucketName"] == *bucket).unwrap();
        assert_eq!(b["sharedAccess"], *sharing, "{bucket} with path {path}: {b}");
        assert_eq!(b["publicAccess"]["effectivePermission"], "NOT_PUBLIC", "{bucket}: {b}");
    }
    let workloads =
        listed["buckets"].as_array().unwrap().iter().find(|b| b["bucketName"] == "estate-o-workloads").unwrap();
    assert!(workloads["sharedWithAccounts"].as_array().unwrap().contains(&json!(member)), "{workloads}");
    // Every organization account is listed, agent or not.
    let members = admin.ctl_json(None, &["members"])?;
    let listed_member = members["members"].as_array().unwrap().iter().find(|m| m["accountId"] == member.as_str());
    assert_eq!(listed_member.map(|m| m["relationshipStatus"].clone()), Some(json!("NoAgent")), "{members}");
    Ok(())
}

/// PutAccountPublicAccessBlock is account-wide: delivered with a Region the agent does not
/// cover, it still re-reads the account's settings and re-judges every bucket.
#[tokio::test(flavor = "multi_thread")]
async fn account_level_events_from_any_region_rejudge_the_account() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    let spec = Spec { canned_acl: Some("public-read"), ..bucket_spec(A, "us-east-1", "estate-e-acl") };
    seed_bucket(&moto, &creds, &spec).await?;
    let sqs = moto.sqs(&creds);
    let queue = sqs.create_queue().queue_name("estate-events").send().await?.queue_url.unwrap();
    let dead_letters = sqs.create_queue().queue_name("estate-events-dlq").send().await?.queue_url.unwrap();

    let dir = tempfile::tempdir()?;
    let admin = Admin::start(&dir.path().join("data"), None)?;
    let args =
        ["--events-queue-url", &queue, "--events-dead-letter-queue-url", &dead_letters, "--events-wait-seconds", "1"];
    let _agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &args)?;
    eventually(Duration::from_secs(60), "the bucket to be public", || async {
        let b = admin.ctl_json(None, &["bucket", "estate-e-acl"])?;
        Ok((b["publicAccess"]["effectivePermission"] == "PUBLIC").then_some(()))
    })
    .await?;

    moto.s3control(&creds)
        .put_public_access_block()
        .account_id(A)
        .public_access_block_configuration(public_access_block!(
            aws_sdk_s3control::types::PublicAccessBlockConfiguration,
            [true, true, false, false]
        ))
        .send()
        .await?;
    let event = json!({
        "version": "0", "id": "11111111-2222-4333-8444-555555555555",
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3", "account": A,
        "time": "2026-12-02T04:00:00Z", "region": "ap-south-1", "resources": [],
        "detail": {
            "eventVersion": "1.09", "eventSource": "s3.amazonaws.com",
            "eventName": "PutAccountPublicAccessBlock", "awsRegion": "ap-south-1",
            "eventTime": "2026-12-02T04:00:00Z", "eventID": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
            "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::{A}:user/alice"), "accountId": A},
            "requestParameters": {"accountId": A}, "recipientAccountId": A,
        },
    });
    sqs.send_message().queue_url(&queue).message_body(event.to_string()).send().await?;
    let b = eventually(Duration::from_secs(30), "the account's settings to be re-read", || async {
        let b = admin.ctl_json(None, &["bucket", "estate-e-acl"])?;
        Ok((b["publicAccess"]["effectivePermission"] == "NOT_PUBLIC").then_some(b))
    })
    .await?;
    let account_level = &b["publicAccess"]["permissionConfiguration"]["accountLevelPermissions"]["blockPublicAccess"];
    assert_eq!(account_level["ignorePublicAcls"], true, "{b}");
    Ok(())
}

/// Events are claims, not proofs: a failed call on an outsider's bucket (CloudTrail records it
/// in the caller's account, with an `errorCode`) and a successful-looking call naming a bucket
/// the member does not own are both planted in the member's queue. Neither puts the outsider's
/// bucket into the member's inventory, while an event about the member's own bucket still
/// re-reads it.
#[tokio::test(flavor = "multi_thread")]
async fn events_naming_buckets_the_member_does_not_own_change_nothing() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let (creds, outsider) = (moto.credentials(A).await?, moto.credentials(OUTSIDE).await?);
    seed_bucket(&moto, &creds, &bucket_spec(A, "us-east-1", "estate-h-own")).await?;
    // moto lets any account read it (S3 would answer AccessDenied to ExpectedBucketOwner):
    // only the agent's own check keeps it out.
    let theirs = Spec { canned_acl: Some("public-read"), ..bucket_spec(OUTSIDE, "us-east-1", "estate-h-theirs") };
    seed_bucket(&moto, &outsider, &theirs).await?;
    let sqs = moto.sqs(&creds);
    let queue = sqs.create_queue().queue_name("estate-events").send().await?.queue_url.unwrap();
    let dead_letters = sqs.create_queue().queue_name("estate-events-dlq").send().await?.queue_url.unwrap();

    let dir = tempfile::tempdir()?;
    let admin = Admin::start(&dir.path().join("data"), None)?;
    let args =
        ["--events-queue-url", &queue, "--events-dead-letter-queue-url", &dead_letters, "--events-wait-seconds", "1"];
    let agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &args)?;
    let names = || -> anyhow::Result<Vec<String>> {
        let listed = admin.ctl_json(None, &["buckets", "--all"])?;
        let buckets = listed["buckets"].as_array().cloned().unwrap_or_default();
        Ok(buckets.iter().filter_map(|b| b["bucketName"].as_str().map(str::to_owned)).collect())
    };
    eventually(Duration::from_secs(60), "the member's first refresh", || async {
        Ok((names()? == ["estate-h-own"]).then_some(()))
    })
    .await?;

    let event = |id: &str, bucket: &str, error: Option<&str>| {
        let mut detail = json!({
            "eventVersion": "1.09", "eventSource": "s3.amazonaws.com", "eventName": "PutBucketTagging",
            "awsRegion": "us-east-1",
            "eventTime": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
            "eventID": id,
            "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::{A}:user/mallory"), "accountId": A},
            "requestParameters": {"bucketName": bucket, "tagging": ""}, "recipientAccountId": A,
        });
        if let Some(code) = error {
            detail["errorCode"] = json!(code);
            detail["errorMessage"] = json!("Access Denied");
        }
        json!({
            "version": "0", "id": id, "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3",
            "account": A, "time": "2026-12-07T04:00:00Z", "region": "us-east-1", "resources": [],
            "detail": detail,
        })
        .to_string()
    };
    let plant = |body: String| {
        let (sqs, queue) = (sqs.clone(), queue.clone());
        async move { sqs.send_message().queue_url(queue).message_body(body).send().await }
    };
    plant(event("h0000000-0000-4000-8000-000000000001", "estate-h-theirs", Some("AccessDenied"))).await?;
    plant(event("h0000000-0000-4000-8000-000000000002", "estate-h-theirs", None)).await?;
    // The member's own bucket, tagged: its event must still be acted on.
    moto.s3(&creds, "us-east-1")
        .put_bucket_tagging()
        .bucket("estate-h-own")
        .tagging(Tagging::builder().tag_set(Tag::builder().key("team").value("blue").build()?).build()?)
        .send()
        .await?;
    plant(event("h0000000-0000-4000-8000-000000000003", "estate-h-own", None)).await?;

    eventually(Duration::from_secs(60), "the own bucket's event to be re-read", || async {
        let own = admin.ctl_json(None, &["bucket", "estate-h-own"])?;
        Ok(own["tags"].as_array().is_some_and(|t| t.iter().any(|t| t["value"] == "blue")).then_some(()))
    })
    .await
    .map_err(|e| e.context(agent.process.log_text()))?;
    // Both outsider events handled (ignored, dropped), not merely not yet received.
    eventually(Duration::from_secs(60), "both outsider events to be turned away", || async {
        let log = agent.process.log_text();
        let ignored = log.contains("failed (`errorCode` `AccessDenied`)");
        let dropped = log.contains("event dropped: the bucket is not this account's");
        Ok((ignored && dropped).then_some(()))
    })
    .await
    .map_err(|e| e.context(agent.process.log_text()))?;
    assert_eq!(names()?, ["estate-h-own"], "the outsider's bucket entered the member's inventory");
    let stats = admin.ctl_json(None, &["stats"])?;
    assert_eq!(stats["bucketCount"], 1, "{stats}");
    assert_eq!(stats["bucketCountByEffectivePermission"]["publiclyAccessible"], 0, "{stats}");
    Ok(())
}

/// One call's response cannot be parsed (a proxy corrupts every GetBucketVersioning, and one
/// bucket's GetBucketEncryption, another's GetBucketAcl): the buckets are still reported, only
/// the fields of those calls are unknown, and the calls are named in the error details.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_response_marks_only_its_own_fields_unknown() -> anyhow::Result<()> {
    use estate_tests::faultproxy::{Fault, FaultProxy};
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    let public = Spec { canned_acl: Some("public-read"), ..bucket_spec(A, "us-east-1", "estate-x-acl-public") };
    seed_bucket(&moto, &creds, &public).await?;
    let encrypted = Spec { encryption: Some(("AES256", None)), ..bucket_spec(A, "us-east-1", "estate-x-encrypted") };
    seed_bucket(&moto, &creds, &encrypted).await?;
    seed_bucket(&moto, &creds, &bucket_spec(A, "us-east-1", "estate-x-acl-unread")).await?;

    let proxy = FaultProxy::start(&moto.endpoint).await?;
    proxy.inject("?versioning", Fault::Corrupt, 1_000);
    proxy.inject("/estate-x-encrypted/?encryption ", Fault::Corrupt, 1_000);
    proxy.inject("/estate-x-acl-unread/?acl ", Fault::Corrupt, 1_000);
    let dir = tempfile::tempdir()?;
    let admin = Admin::start(&dir.path().join("data"), None)?;
    let agent = Agent::start_at(&admin, &proxy.endpoint, &creds, None, &["us-east-1"], &[])?;
    let listed = eventually(Duration::from_secs(60), "every bucket despite the corrupted responses", || async {
        let listed = admin.ctl_json(None, &["buckets", "--all", "--sort", "bucketName"])?;
        let members = admin.ctl_json(None, &["members"])?;
        let done = members["members"][0]["regions"][0]["lastUpdated"].is_string();
        Ok((done && listed["buckets"].as_array().unwrap().len() == 3).then_some(listed))
    })
    .await
    .map_err(|e| e.context(agent.process.log_text()))?;
    assert!(proxy.injected() >= 5, "the faults fired {} times: {:#?}", proxy.injected(), proxy.seen());
    let b =
        |name: &str| listed["buckets"].as_array().unwrap().iter().find(|b| b["bucketName"] == name).unwrap().clone();

    // The ACL was read: the public bucket is PUBLIC, and only versioning is named unknown.
    let acl = b("estate-x-acl-public");
    assert_eq!(acl["publicAccess"]["effectivePermission"], "PUBLIC", "{acl}");
    assert!(acl["errorCode"].is_null() && acl["errorMessage"].is_null(), "Macie's pair is for errorCode alone: {acl}");
    let message = acl["unreadConfiguration"].as_str().unwrap_or_default();
    assert!(message.contains("`s3:GetBucketVersioning`"), "{acl}");
    assert!(!message.contains("s3:GetEncryptionConfiguration"), "{acl}");
    assert_eq!(acl["serverSideEncryption"]["type"], "NONE", "its encryption was read: {acl}");

    // Encryption unread: unknown, not "none".
    let encrypted = b("estate-x-encrypted");
    assert!(encrypted["serverSideEncryption"]["type"].is_null(), "{encrypted}");
    assert!(
        encrypted["unreadConfiguration"].as_str().unwrap().contains("`s3:GetEncryptionConfiguration`"),
        "{encrypted}"
    );
    assert_eq!(encrypted["publicAccess"]["effectivePermission"], "NOT_PUBLIC", "{encrypted}");

    // ACL unread: whether it is public or shared is unknown.
    let unread = b("estate-x-acl-unread");
    assert_eq!(unread["publicAccess"]["effectivePermission"], "UNKNOWN", "{unread}");
    assert_eq!(unread["sharedAccess"], "UNKNOWN", "{unread}");
    assert!(unread["unreadConfiguration"].as_str().unwrap().contains("`s3:GetBucketAcl`"), "{unread}");

    let stats = admin.ctl_json(None, &["stats"])?;
    assert_eq!(stats["bucketCount"], 3, "{stats}");
    assert_eq!(stats["bucketCountByEncryptionType"]["unknown"], 1, "{stats}");
    assert_eq!(stats["bucketCountByEffectivePermission"]["unknown"], 1, "{stats}");
    Ok(())
}

/// grpcurl lists services through reflection v1; older grpcurl builds, Postman and Evans through
/// v1alpha. Both list Estate's services, and both describe them.
#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_the_services_in_v1_and_v1alpha() -> anyhow::Result<()> {
    use tokio_stream::StreamExt as _;
    use tonic_reflection::pb::{v1, v1alpha};

    let dir = tempfile::tempdir()?;
    let admin = Admin::start(&dir.path().join("data"), None)?;
    let expected =
        ["estate.v1.AgentService", "estate.v1.FindingsService", "estate.v1.InventoryService", "grpc.health.v1.Health"];

    let channel = tonic::transport::Endpoint::from_shared(admin.grpc.clone())?.connect().await?;
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let ask = |request| v1alpha::ServerReflectionRequest { host: String::new(), message_request: Some(request) };
    let requests = tokio_stream::iter([
        ask(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
        ask(v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
            "estate.v1.InventoryService".into(),
        )),
    ]);
    let mut answers = client.server_reflection_info(requests).await?.into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.next().await.transpose()?.and_then(|a| a.message_response)
    else {
        anyhow::bail!("v1alpha: no service list");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for service in expected {
        assert!(names.contains(&service), "v1alpha lists {names:?}, not {service}");
    }
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        answers.next().await.transpose()?.and_then(|a| a.message_response)
    else {
        anyhow::bail!("v1alpha: no descriptor for estate.v1.InventoryService");
    };
    assert!(!files.file_descriptor_proto.is_empty());

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel);
    let ask = |request| v1::ServerReflectionRequest { host: String::new(), message_request: Some(request) };
    let requests = tokio_stream::iter([
        ask(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
        ask(v1::server_reflection_request::MessageRequest::FileContainingSymbol("estate.v1.InventoryService".into())),
    ]);
    let mut answers = client.server_reflection_info(requests).await?.into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.next().await.transpose()?.and_then(|a| a.message_response)
    else {
        anyhow::bail!("v1: no service list");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for service in expected {
        assert!(names.contains(&service), "v1 lists {names:?}, not {service}");
    }
    let Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        answers.next().await.transpose()?.and_then(|a| a.message_response)
    else {
        anyhow::bail!("v1: no descriptor for estate.v1.InventoryService");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    Ok(())
}
