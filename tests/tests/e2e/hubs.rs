//! Hub identities (issue 26), over today's agent binary presenting a hub's token: a hub
//! reports for the accounts of its set, listed or the organization's, and is refused any other
//! with PERMISSION_DENIED; of a hub and an account's own agent, the later connection wins and
//! the other is told why and steps back; revoking a hub's token ends its streams of every
//! account.

use aws_sdk_s3::config::Credentials;

use super::parity::member;
use super::*;

const HUB_TOKEN: &str = "hub-token-central-0123456789";
const ORG_HUB_TOKEN: &str = "hub-token-organization-0123456789";

/// Config: the organization of A, B and C, an agent token for each, a hub `central` for A and
/// B, and a hub `everywhere` for the organization's accounts.
fn write_hub_config(dir: &std::path::Path) -> std::path::PathBuf {
    let text = estate_tests::config_text("o-exampleorg1", &[A, B, C], &[A, B, C], agent_token, CLIENT_TOKEN)
        + &format!(
            "[[hubs]]\nname = \"central\"\naccounts = [\"{A}\", \"{B}\"]\ntoken = \"{HUB_TOKEN}\"\n\
             [[hubs]]\nname = \"everywhere\"\naccounts = \"organization\"\ntoken = \"{ORG_HUB_TOKEN}\"\n"
        );
    let path = dir.join("estate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_reports_for_its_accounts_only_and_the_later_reporter_wins() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let dir = tempfile::tempdir()?;
    let config = write_hub_config(dir.path());
    let admin = Admin::start(&dir.path().join("data"), Some(&config))?;
    let creds = |account| moto.credentials(account);
    let (creds_a, creds_c) = (creds(A).await?, creds(C).await?);
    seed_bucket(&moto, &creds_a, &Spec::plain(A, "estate-h-a".into())).await?;

    // A's own agent first; then the hub connects for A: the later connection wins, and the
    // agent is told why and steps back.
    let own = Agent::start(&admin, &moto, &creds_a, Some(&agent_token(A)), &["us-east-1"], &[])?;
    let first = eventually(Duration::from_secs(60), "A's first refresh, by its own agent", || async {
        let m = member(&admin, A)?;
        Ok(m["regions"][0]["lastUpdated"].is_string().then(|| m["regions"][0]["generation"].clone()))
    })
    .await?;
    let hub = Agent::start(&admin, &moto, &creds_a, Some(HUB_TOKEN), &["us-east-1"], &[])?;
    eventually(Duration::from_secs(60), "the agent to be told it was superseded", || async {
        let log = own.process.log_text();
        Ok((log.contains("superseded: hub `central`") && log.contains("steps back")).then_some(()))
    })
    .await?;
    // The hub's own refresh: a generation the agent's was not.
    let a = eventually(Duration::from_secs(60), "a refresh of A through the hub", || async {
        let m = member(&admin, A)?;
        Ok((m["connectionState"] == "CONNECTED" && m["regions"][0]["generation"] != first).then_some(m))
    })
    .await?;
    assert_eq!(a["relationshipStatus"], "Enabled", "{a}");
    assert_eq!(a["reportedBy"], json!(["hub `central`"]), "who reports for A now: {a}");
    assert!(admin.process.log_text().contains("another reporter's streams ended"));
    assert!(!hub.process.log_text().contains("superseded"), "the later connection keeps its stream");

    // The hub is refused an account outside its set, by name.
    let outside = Agent::start(&admin, &moto, &creds_c, Some(HUB_TOKEN), &["us-east-1"], &[])?;
    eventually(Duration::from_secs(60), "the hub refused for C", || async {
        let log = outside.process.log_text();
        // PERMISSION_DENIED, as tonic words it, with the administrator's reason.
        let refused = log.contains("does not have permission");
        Ok((refused && log.contains(&format!("`central` may not report for account `{C}`"))).then_some(()))
    })
    .await?;
    assert!(admin.process.log_text().contains("refused: a report for an account this agent or hub may not report for"));

    // A hub of the organization's accounts may report for C; for an account outside the
    // organization it may not.
    let org_hub = Agent::start(&admin, &moto, &creds_c, Some(ORG_HUB_TOKEN), &["us-east-1"], &[])?;
    eventually(Duration::from_secs(60), "C through the organization's hub", || async {
        Ok(member(&admin, C)?["regions"][0]["lastUpdated"].is_string().then_some(()))
    })
    .await?;
    let creds_outside = creds(OUTSIDE).await?;
    let stranger = Agent::start(&admin, &moto, &creds_outside, Some(ORG_HUB_TOKEN), &["us-east-1"], &[])?;
    eventually(Duration::from_secs(60), "the organization's hub refused for an outsider", || async {
        let log = stranger.process.log_text();
        Ok(log.contains(&format!("may not report for account `{OUTSIDE}`")).then_some(()))
    })
    .await?;

    // Revoking the hub's token (SIGHUP with the hub gone) ends its streams.
    let text = std::fs::read_to_string(&config)?;
    let without = text.replace(&format!("token = \"{ORG_HUB_TOKEN}\""), "token = \"hub-token-rotated-0123456789\"");
    std::fs::write(&config, without)?;
    admin.hangup()?;
    eventually(Duration::from_secs(60), "the revoked hub's stream ended", || async {
        Ok(org_hub.process.log_text().contains("revoked").then_some(()))
    })
    .await?;
    assert!(!hub.process.log_text().contains("revoked"), "another hub's streams are not touched");
    drop((own, hub));
    Ok(())
}

/// The accounts of the hub tests: `count` made-up IDs from 200000000000.
fn hub_accounts(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("2000000000{i:02}")).collect()
}

/// One bucket named after its account and Region.
async fn bucket_in(moto: &Moto, creds: &Credentials, account: &str, region: &str) -> anyhow::Result<String> {
    let name = format!("hub-{account}-{region}");
    let mut create = moto.s3(creds, region).create_bucket().bucket(&name);
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(region)).build(),
        );
    }
    create.send().await?;
    Ok(name)
}

/// Every member of the listing by account ID.
fn members_by_id(admin: &Admin) -> anyhow::Result<BTreeMap<String, Value>> {
    let members = admin.ctl_json(Some(CLIENT_TOKEN), &["members"])?;
    Ok(members["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| (m["accountId"].as_str().unwrap_or_default().to_owned(), m.clone()))
        .collect())
}

/// Each Region's generation of each account, as the members listing shows them.
fn generations(members: &BTreeMap<String, Value>, accounts: &[String]) -> Vec<Value> {
    accounts
        .iter()
        .map(|a| members[a]["regions"].as_array().into_iter().flatten().map(|r| r["generation"].clone()).collect())
        .collect()
}

/// One `estate-agent hub` for 20 accounts × 2 Regions: every account converges over a few
/// shared connections; an account outside the hub's set is refused by name; after SIGKILL
/// the restarted hub resumes from what the administrator holds and reads no account again;
/// and an account's own agent, started later, takes that account only.
#[tokio::test(flavor = "multi_thread")]
async fn a_hub_serves_twenty_accounts_and_resumes_after_sigkill() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let accounts = hub_accounts(20);
    let outsider = "299999999999".to_owned();
    let dir = tempfile::tempdir()?;
    let text = estate_tests::config_text("o-exampleorg1", &accounts, &accounts[..1], agent_token, CLIENT_TOKEN)
        + &format!(
            "[[hubs]]\nname = \"central\"\naccounts = [{}]\ntoken = \"{HUB_TOKEN}\"\n",
            accounts.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ")
        );
    let config = dir.path().join("estate.toml");
    std::fs::write(&config, text)?;
    let admin = Admin::start(&dir.path().join("data"), Some(&config))?;
    for account in &accounts {
        let creds = moto.credentials(account).await?;
        for region in REGIONS {
            bucket_in(&moto, &creds, account, region).await?;
        }
    }
    let served: Vec<&str> = accounts.iter().chain([&outsider]).map(String::as_str).collect();
    let args = [
        "--token",
        HUB_TOKEN,
        "--accounts",
        &served.join(","),
        "--refresh-interval",
        "1h",
        "--concurrency",
        "8",
        "--account-concurrency",
        "2",
        "--streams-per-connection",
        "8",
    ];
    let mut hub = estate_tests::Hub::start(&admin, &moto, &REGIONS, &args)?;
    let converged = |admin: &Admin| -> anyhow::Result<Option<BTreeMap<String, Value>>> {
        let members = members_by_id(admin)?;
        let done = accounts.iter().all(|a| {
            let m = &members[a];
            m["reportedBy"] == json!(["hub `central`"])
                && m["bucketCount"] == 2
                && m["regions"]
                    .as_array()
                    .is_some_and(|r| r.len() == 2 && r.iter().all(|r| r["lastUpdated"].is_string()))
        });
        Ok(done.then_some(members))
    };
    let before = eventually(Duration::from_secs(180), "20 accounts × 2 Regions through the hub", || async {
        converged(&admin)
    })
    .await?;
    let log = hub.process.log_text();
    assert!(log.contains(&format!("may not report for account `{outsider}`")), "the outsider is refused by name");
    let read_outsider = log.lines().any(|l| l.contains("refresh started") && l.contains(&outsider));
    assert!(!read_outsider, "an account the administrator refuses is not read");

    // SIGKILL, and the same command again: every account resumes, none is read again.
    hub.kill_and_restart()?;
    eventually(Duration::from_secs(90), "every account to resume", || async {
        Ok((hub.process.log_text().matches("resuming").count() == accounts.len()).then_some(()))
    })
    .await?;
    let after = eventually(Duration::from_secs(60), "every account reported by the restarted hub", || async {
        converged(&admin)
    })
    .await?;
    let log = hub.process.log_text();
    assert!(!log.contains("refresh started"), "the restarted hub read an account again:\n{log}");
    assert_eq!(generations(&after, &accounts), generations(&before, &accounts), "no Region was refreshed again");

    // The first account's own agent connects later: it takes that account, the hub steps back
    // from it only.
    let own_creds = moto.credentials(&accounts[0]).await?;
    let own = Agent::start(&admin, &moto, &own_creds, Some(&agent_token(&accounts[0])), &REGIONS, &[])?;
    eventually(Duration::from_secs(60), "the hub to step back from the first account", || async {
        let stepped = hub.process.log_text().contains("steps back");
        let m = member(&admin, &accounts[0])?;
        Ok((stepped && m["reportedBy"] == json!([format!("agent `agent-{}`", accounts[0])])).then_some(()))
    })
    .await?;
    let members = members_by_id(&admin)?;
    for account in &accounts[1..] {
        assert_eq!(members[account]["reportedBy"], json!(["hub `central`"]), "{account} keeps its hub");
    }
    assert!(!own.process.log_text().contains("superseded"));
    Ok(())
}

/// A hub that reads its accounts from AWS Organizations serves an account created while it
/// runs within one poll, and stops serving an account removed from the organization.
#[tokio::test(flavor = "multi_thread")]
async fn a_hub_follows_the_organization() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let (organizations, _) = moto.new_organization().await?;
    let create = |n: usize| {
        let organizations = organizations.clone();
        async move { Moto::new_account(&organizations, &format!("member{n}")).await }
    };
    let (first, second) = (create(1).await?, create(2).await?);
    let dir = tempfile::tempdir()?;
    let admin = Admin::start_with_organizations(&dir.path().join("data"), &moto)?;
    let hub = estate_tests::Hub::start(
        &admin,
        &moto,
        &["us-east-1"],
        &["--organizations", "--organizations-interval", "2s", "--refresh-interval", "1h"],
    )?;
    let reported = |account: String| {
        let admin = &admin;
        async move {
            let m = member(admin, &account)?;
            Ok((m["connectionState"] == "CONNECTED" && m["regions"][0]["lastUpdated"].is_string()).then_some(()))
        }
    };
    for account in ["123456789012".to_owned(), first.clone(), second.clone()] {
        eventually(Duration::from_secs(90), "an organization account through the hub", || reported(account.clone()))
            .await?;
    }
    // A new account is served within one poll of Organizations.
    let third = create(3).await?;
    eventually(Duration::from_secs(60), "the new account through the hub", || reported(third.clone())).await?;
    // An account removed from the organization is no longer served.
    organizations.remove_account_from_organization().account_id(&second).send().await?;
    eventually(Duration::from_secs(60), "the removed account to be stopped", || async {
        let m = member(&admin, &second)?;
        let stopped = hub.process.log_text().contains("the account left the hub's set");
        Ok((stopped && m["connectionState"] == "DISCONNECTED").then_some(()))
    })
    .await?;
    assert_eq!(member(&admin, &first)?["connectionState"], "CONNECTED", "the others are served still");
    Ok(())
}

/// An account whose role the hub may not assume shows why in the members view, with the hub
/// as its reporter, and the hub's other account is served all the same.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_whose_role_is_refused_shows_why_and_disturbs_no_other() -> anyhow::Result<()> {
    use super::access::{aws_sdk_iam_client, reqwest_free_post};
    let moto = Moto::start()?;
    let (served, refused) = ("200000000001", "200000000002");
    let dir = tempfile::tempdir()?;
    let text = estate_tests::config_text("o-exampleorg1", &[served, refused], &[refused], agent_token, CLIENT_TOKEN)
        + &format!("[[hubs]]\nname = \"central\"\naccounts = [\"{served}\", \"{refused}\"]\ntoken = \"{HUB_TOKEN}\"\n");
    let config = dir.path().join("estate.toml");
    std::fs::write(&config, text)?;
    let admin = Admin::start(&dir.path().join("data"), Some(&config))?;

    // The refused account reported once, through its own agent: its canonical ID is claimed,
    // and other accounts' verdicts may depend on the claim.
    let own_creds = moto.credentials(refused).await?;
    let own = Agent::start(&admin, &moto, &own_creds, Some(&agent_token(refused)), &["us-east-1"], &[])?;
    let canonical = eventually(Duration::from_secs(60), "the refused account's own first report", || async {
        let m = member(&admin, refused)?;
        Ok(m["canonicalUserId"].as_str().filter(|c| !c.is_empty()).map(str::to_owned))
    })
    .await?;
    drop(own);

    // The served account's role, which the hub's calls are authorized as once moto checks IAM.
    let creds = moto.credentials(served).await?;
    bucket_in(&moto, &creds, served, "us-east-1").await?;
    let iam = aws_sdk_iam_client(&moto, &creds);
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]});
    iam.create_role().role_name("EstateMemberAgent").assume_role_policy_document(trust.to_string()).send().await?;
    let reader = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": ["s3:*", "sts:GetCallerIdentity"], "Resource": "*"}]});
    iam.put_role_policy()
        .role_name("EstateMemberAgent")
        .policy_name("reader")
        .policy_document(reader.to_string())
        .send()
        .await?;
    // The hub's own user may assume the role in every account but the refused one.
    let root = Credentials::new("testing", "testing", None, None, "root");
    let iam = aws_sdk_iam_client(&moto, &root);
    iam.create_user().user_name("estate-hub").send().await?;
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "arn:aws:iam::*:role/EstateMemberAgent"},
        {"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": format!("arn:aws:iam::{refused}:role/EstateMemberAgent")}]});
    iam.put_user_policy().user_name("estate-hub").policy_name("hub").policy_document(policy.to_string()).send().await?;
    let key = iam.create_access_key().user_name("estate-hub").send().await?;
    let key = key.access_key().ok_or_else(|| anyhow::anyhow!("moto gave no access key"))?;
    let hub_creds = Credentials::new(key.access_key_id(), key.secret_access_key(), None, None, "hub");
    let enabled = reqwest_free_post(&moto.endpoint, "/moto-api/reset-auth", "0")?;
    anyhow::ensure!(enabled.contains("200"), "enabling moto's IAM authorization: {enabled}");

    let _hub = estate_tests::Hub::start_as(
        &admin,
        &moto,
        &hub_creds,
        &["us-east-1"],
        &["--token", HUB_TOKEN, "--accounts", &format!("{served},{refused}"), "--refresh-interval", "1h"],
    )?;
    let problem = eventually(Duration::from_secs(90), "the refused account's problem in the members view", || async {
        let m = member(&admin, refused)?;
        Ok(m["problem"].as_str().map(str::to_owned).map(|p| (p, m)))
    })
    .await?;
    let (text, m) = problem;
    assert!(text.contains(&format!("arn:aws:iam::{refused}:role/EstateMemberAgent")), "{text}");
    assert!(text.contains("AccessDenied") || text.contains("not authorized"), "{text}");
    assert_eq!(m["reportedBy"], json!(["hub `central`"]), "the hub keeps the account's stream open: {m}");
    assert_eq!(m["canonicalUserId"], canonical, "a hello that cannot read the account changes no record: {m}");
    eventually(Duration::from_secs(90), "the other account through the hub", || async {
        let m = member(&admin, served)?;
        Ok((m["regions"][0]["lastUpdated"].is_string() && m["bucketCount"] == 1 && m.get("problem").is_none())
            .then_some(()))
    })
    .await?;
    Ok(())
}

/// S3's CloudTrail event `name` about `bucket`, published on the default bus of `account`.
async fn publish_s3_event(
    moto: &Moto,
    creds: &Credentials,
    account: &str,
    name: &str,
    bucket: &str,
    id: &str,
) -> anyhow::Result<()> {
    let detail = json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::{account}:user/alice"), "accountId": account},
        "eventTime": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?,
        "eventSource": "s3.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "requestParameters": {"bucketName": bucket},
        "eventID": id,
        "eventType": "AwsApiCall",
        "recipientAccountId": account,
    });
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .source("aws.s3")
        .detail_type("AWS API Call via CloudTrail")
        .detail(detail.to_string())
        .build();
    let out = moto.eventbridge(creds).put_events().entries(entry).send().await?;
    anyhow::ensure!(out.failed_entry_count() == 0, "PutEvents failed: {out:?}");
    Ok(())
}

/// Members forward S3's CloudTrail events to the hub's central bus; the hub reads its one
/// queue, and each event reaches the pipeline of the account it names, which re-reads the
/// bucket as that account: a bucket made public is judged so without waiting for a refresh.
/// Events of an account outside the hub's set are dropped.
#[tokio::test(flavor = "multi_thread")]
async fn events_reach_the_hub_through_the_central_bus() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let (member_account, outsider) = ("200000000001", "299999999999");
    let dir = tempfile::tempdir()?;
    let text = estate_tests::config_text("o-exampleorg1", &[member_account], &[], agent_token, CLIENT_TOKEN)
        + &format!("[[hubs]]\nname = \"central\"\naccounts = [\"{member_account}\"]\ntoken = \"{HUB_TOKEN}\"\n");
    let config = dir.path().join("estate.toml");
    std::fs::write(&config, text)?;
    let admin = Admin::start(&dir.path().join("data"), Some(&config))?;

    // The central bus and queue in the hub's account (moto's default, 123456789012), and each
    // member's rule forwarding to it.
    let root = Credentials::new("testing", "testing", None, None, "hub");
    let (queue, bus) = moto.central_event_queue(&root, "estate-central", "estate-central-events").await?;
    let (member_creds, outsider_creds) = (moto.credentials(member_account).await?, moto.credentials(outsider).await?);
    for creds in [&member_creds, &outsider_creds] {
        moto.forward_events(creds, &bus).await?;
    }
    let bucket = bucket_in(&moto, &member_creds, member_account, "us-east-1").await?;
    let foreign = bucket_in(&moto, &outsider_creds, outsider, "us-east-1").await?;

    let hub = estate_tests::Hub::start(
        &admin,
        &moto,
        &["us-east-1"],
        &[
            "--token",
            HUB_TOKEN,
            "--accounts",
            member_account,
            "--refresh-interval",
            "1h",
            "--events-queue-url",
            &queue,
            "--events-wait-seconds",
            "1",
        ],
    )?;
    let judged = |expected: &'static str| {
        let (admin, bucket) = (&admin, bucket.clone());
        async move {
            let listed = admin
                .ctl_json(Some(CLIENT_TOKEN), &["buckets", "--all", "--where", &format!("bucketName={bucket}")])?;
            let b = &listed["buckets"][0];
            Ok((b["publicAccess"]["effectivePermission"] == expected).then_some(()))
        }
    };
    eventually(Duration::from_secs(90), "the bucket's first refresh", || judged("NOT_PUBLIC")).await?;
    let generation = member(&admin, member_account)?["regions"][0]["generation"].clone();

    moto.s3(&member_creds, "us-east-1")
        .put_bucket_acl()
        .bucket(&bucket)
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await?;
    publish_s3_event(
        &moto,
        &member_creds,
        member_account,
        "PutBucketAcl",
        &bucket,
        "00000000-0000-4000-8000-000000000001",
    )
    .await?;
    publish_s3_event(
        &moto,
        &outsider_creds,
        outsider,
        "PutBucketAcl",
        &foreign,
        "00000000-0000-4000-8000-000000000002",
    )
    .await?;
    eventually(Duration::from_secs(60), "the event through the central queue", || judged("PUBLIC")).await?;
    let log = eventually(Duration::from_secs(60), "the outsider's event dropped", || async {
        let log = hub.process.log_text();
        Ok(log.contains(&format!("event for account `{outsider}`, which this hub does not serve")).then_some(log))
    })
    .await?;
    assert!(log.contains("bucket re-read"), "{log}");
    let now = member(&admin, member_account)?["regions"][0]["generation"].clone();
    assert_eq!(now, generation, "the change came by its event, not by a refresh");
    // Both messages deleted: none waiting, none received and not yet deleted.
    use aws_sdk_sqs::types::QueueAttributeName::{ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible};
    eventually(Duration::from_secs(30), "both events deleted from the central queue", || async {
        let out = moto
            .sqs(&root)
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(ApproximateNumberOfMessages)
            .attribute_names(ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?;
        let count = |name| out.attributes().and_then(|a| a.get(&name).cloned());
        let counts = (count(ApproximateNumberOfMessages), count(ApproximateNumberOfMessagesNotVisible));
        Ok((counts == (Some("0".to_owned()), Some("0".to_owned()))).then_some(()))
    })
    .await?;
    Ok(())
}

/// The hub's central rule lets through exactly the events a member's own rule does.
#[test]
fn the_central_rule_matches_the_members_rule() -> anyhow::Result<()> {
    let central = estate_tests::template_event_pattern("hub.yaml", "CentralEventsRule")?;
    assert_eq!(central, estate_tests::deployed_event_pattern()?);
    Ok(())
}

/// AWS throttles one account (every S3 call on its buckets answers SlowDown for a while): the
/// hub lowers that account's reads at once, and only that account's; both accounts complete.
#[tokio::test(flavor = "multi_thread")]
async fn throttling_in_one_account_lowers_only_its_own_limit() -> anyhow::Result<()> {
    use estate_tests::faultproxy::{Fault, FaultProxy};
    let moto = Moto::start()?;
    let proxy = FaultProxy::start(&moto.endpoint).await?;
    let (throttled, calm) = ("200000000001", "200000000002");
    let dir = tempfile::tempdir()?;
    let text = estate_tests::config_text("o-exampleorg1", &[throttled, calm], &[], agent_token, CLIENT_TOKEN)
        + &format!("[[hubs]]\nname = \"central\"\naccounts = [\"{throttled}\", \"{calm}\"]\ntoken = \"{HUB_TOKEN}\"\n");
    let config = dir.path().join("estate.toml");
    std::fs::write(&config, text)?;
    let admin = Admin::start(&dir.path().join("data"), Some(&config))?;
    for account in [throttled, calm] {
        let creds = moto.credentials(account).await?;
        for i in 0..6 {
            moto.s3(&creds, "us-east-1").create_bucket().bucket(format!("hub-{account}-b{i}")).send().await?;
        }
    }
    // Path-style requests name the bucket first: every call on the throttled account's buckets.
    proxy.inject(&format!("/hub-{throttled}-"), Fault::SlowDown, 40);
    let root = Credentials::new("testing", "testing", None, None, "hub");
    let hub = estate_tests::Hub::start_at(
        &admin,
        &proxy.endpoint,
        &root,
        &["us-east-1"],
        &[
            "--token",
            HUB_TOKEN,
            "--accounts",
            &format!("{throttled},{calm}"),
            "--account-concurrency",
            "4",
            "--refresh-interval",
            "1h",
        ],
    )?;
    for account in [throttled, calm] {
        eventually(Duration::from_secs(120), "both accounts complete", || async {
            let m = member(&admin, account)?;
            Ok((m["regions"][0]["lastUpdated"].is_string() && m["bucketCount"] == 6).then_some(()))
        })
        .await?;
    }
    assert!(proxy.injected() > 0, "the throttled account met SlowDown");
    let log = hub.process.log_text();
    let lowered: Vec<&str> = log.lines().filter(|l| l.contains("AWS throttles this account")).collect();
    assert!(!lowered.is_empty(), "the throttled account's limit was lowered:\n{log}");
    assert!(lowered.iter().all(|l| l.contains(throttled) && !l.contains(calm)), "{lowered:?}");
    Ok(())
}
