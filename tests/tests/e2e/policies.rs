//! Exact policy verdicts end to end: buckets in moto with policies that are public, public
//! but taken back by a Deny, shared with a member, shared with an outsider, shared only
//! through `aws:PrincipalOrgID`, shared with CloudFront (OAC), shared through a service acting
//! for an outsider or a member, and requiring encryption, and a bucket whose ACL grants everyone
//! READ_ACP only (public by the reference's ACL rule); the
//! statistics count them; moving an account out of the organization (config reload, or AWS
//! Organizations) turns an INTERNAL bucket EXTERNAL with no new data from the agent.

use aws_sdk_s3::config::Credentials;

use super::*;

const ORG_ID: &str = "o-exampleorg1";

fn statement(effect: &str, principal: Value, action: &str, resource: &str, condition: Option<Value>) -> Value {
    let mut s = json!({"Effect": effect, "Principal": principal, "Action": action, "Resource": resource});
    if let Some(c) = condition {
        s["Condition"] = c;
    }
    s
}

/// (bucket, policy, expected permission, sharing, shared accounts, CloudFront, unencrypted uploads)
type Case = (&'static str, Value, &'static str, &'static str, Vec<&'static str>, bool, &'static str);

fn cases() -> Vec<Case> {
    let objects = |b: &str| format!("arn:aws:s3:::{b}/*");
    let doc = |statements: Vec<Value>| json!({"Version": "2012-10-17", "Statement": statements});
    vec![
        (
            "estate-p-public",
            doc(vec![statement("Allow", json!("*"), "s3:GetObject", &objects("estate-p-public"), None)]),
            "PUBLIC",
            "EXTERNAL",
            vec!["*", "222222222222", "333333333333"],
            false,
            "TRUE",
        ),
        (
            "estate-p-public-denied",
            doc(vec![
                statement("Allow", json!("*"), "s3:GetObject", &objects("estate-p-public-denied"), None),
                statement(
                    "Deny",
                    json!("*"),
                    "s3:*",
                    &objects("estate-p-public-denied"),
                    Some(json!({"StringNotEquals": {"aws:PrincipalOrgID": ORG_ID}})),
                ),
            ]),
            "NOT_PUBLIC",
            "INTERNAL",
            vec!["222222222222", "333333333333"],
            false,
            "TRUE",
        ),
        (
            "estate-p-member",
            doc(vec![statement(
                "Allow",
                json!({"AWS": "arn:aws:iam::222222222222:root"}),
                "s3:GetObject",
                &objects("estate-p-member"),
                None,
            )]),
            "NOT_PUBLIC",
            "INTERNAL",
            vec!["222222222222"],
            false,
            "TRUE",
        ),
        (
            "estate-p-outsider",
            doc(vec![statement(
                "Allow",
                json!({"AWS": "999999999999"}),
                "s3:GetObject",
                &objects("estate-p-outsider"),
                None,
            )]),
            "NOT_PUBLIC",
            "EXTERNAL",
            vec!["999999999999"],
            false,
            "TRUE",
        ),
        (
            "estate-p-org-only",
            doc(vec![statement(
                "Allow",
                json!("*"),
                "s3:GetObject",
                &objects("estate-p-org-only"),
                Some(json!({"StringEquals": {"aws:PrincipalOrgID": ORG_ID}})),
            )]),
            "NOT_PUBLIC",
            "INTERNAL",
            vec!["222222222222", "333333333333"],
            false,
            "TRUE",
        ),
        (
            "estate-p-cloudfront",
            doc(vec![statement(
                "Allow",
                json!({"Service": "cloudfront.amazonaws.com"}),
                "s3:GetObject",
                &objects("estate-p-cloudfront"),
                Some(
                    json!({"StringEquals": {"AWS:SourceArn": "arn:aws:cloudfront::111111111111:distribution/EDFDVBD6EXAMPLE"}}),
                ),
            )]),
            "NOT_PUBLIC",
            "EXTERNAL",
            vec!["cloudfront"],
            true,
            "TRUE",
        ),
        (
            // Server access logging for a bucket of an outside account: the service acts for it.
            "estate-p-service-outsider",
            doc(vec![statement(
                "Allow",
                json!({"Service": "logging.s3.amazonaws.com"}),
                "s3:PutObject",
                &objects("estate-p-service-outsider"),
                Some(json!({"StringEquals": {"aws:SourceAccount": "999999999999"}})),
            )]),
            "NOT_PUBLIC",
            "EXTERNAL",
            vec!["999999999999"],
            false,
            "TRUE",
        ),
        (
            // AWS Config of member 222222222222 delivers here: shared inside the organization.
            "estate-p-service-member",
            doc(vec![statement(
                "Allow",
                json!({"Service": "config.amazonaws.com"}),
                "s3:PutObject",
                &objects("estate-p-service-member"),
                Some(json!({"StringEquals": {"aws:SourceAccount": "222222222222"}})),
            )]),
            "NOT_PUBLIC",
            "INTERNAL",
            vec!["222222222222"],
            false,
            "TRUE",
        ),
        (
            "estate-p-encrypted",
            doc(vec![
                statement(
                    "Deny",
                    json!("*"),
                    "s3:PutObject",
                    &objects("estate-p-encrypted"),
                    Some(json!({"Null": {"s3:x-amz-server-side-encryption": "true"}})),
                ),
                statement(
                    "Deny",
                    json!("*"),
                    "s3:PutObject",
                    &objects("estate-p-encrypted"),
                    Some(
                        json!({"StringNotEquals": {"s3:x-amz-server-side-encryption": ["AES256", "aws:kms", "aws:kms:dsse"]}}),
                    ),
                ),
            ]),
            "NOT_PUBLIC",
            "NOT_SHARED",
            vec![],
            false,
            "FALSE",
        ),
    ]
}

async fn seed_policies(moto: &Moto, creds: &Credentials, account: &'static str) -> anyhow::Result<()> {
    let s3 = moto.s3(creds, "us-east-1");
    for (name, policy, ..) in cases() {
        seed_bucket(moto, creds, &Spec { account, region: "us-east-1", name: name.into(), ..Default::default() })
            .await?;
        s3.put_bucket_policy().bucket(name).policy(policy.to_string()).send().await?;
    }
    // No policy; an ACL that grants everyone READ_ACP only: public, though it neither reads
    // nor writes objects.
    seed_bucket(moto, creds, &Spec { account, region: "us-east-1", name: ACL_READ_ACP.into(), ..Default::default() })
        .await?;
    s3.put_bucket_acl().bucket(ACL_READ_ACP).grant_read_acp(format!("uri=\"{ALL_USERS}\"")).send().await?;
    Ok(())
}

const ACL_READ_ACP: &str = "estate-p-acl-read-acp";
const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";

fn check_bucket(b: &Value, expected: &Case) {
    let (name, _, permission, shared, accounts, cloudfront, uploads) = expected;
    assert_eq!(b["publicAccess"]["effectivePermission"], *permission, "{name}: {b}");
    assert_eq!(b["sharedAccess"], *shared, "{name}: {b}");
    let mut got: Vec<&str> = b["sharedWithAccounts"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    got.sort();
    let mut want = accounts.clone();
    want.sort();
    assert_eq!(got, want, "{name}: {b}");
    assert_eq!(b["sharedWithCloudFront"], *cloudfront, "{name}: {b}");
    assert_eq!(b["allowsUnencryptedObjectUploads"], *uploads, "{name}: {b}");
    let witnesses = b["policyWitnesses"].as_array().unwrap();
    if *permission == "PUBLIC" {
        assert!(witnesses.iter().any(|w| w["question"] == "publicRead" && w["principal"] == "*"), "{name}: {b}");
    }
    for account in accounts.iter().filter(|a| a.len() == 12) {
        let questions = [format!("sharedWithAccount:{account}"), format!("serviceActingFor:{account}")];
        assert!(
            witnesses.iter().any(|w| questions.iter().any(|q| w["question"] == q.as_str())),
            "{name}: no witness for {account}: {b}"
        );
    }
    assert!(b["policyUnknownReasons"].as_array().unwrap().is_empty(), "{name}: {b}");
}

async fn wait_for_verdicts(admin: &Admin, token: Option<&str>) -> anyhow::Result<Value> {
    eventually(Duration::from_secs(90), "every policy verdict", || async {
        let listed = admin.ctl_json(token, &["buckets", "--all", "--where", "bucketName^=estate-p-"])?;
        let decided = listed["buckets"].as_array().unwrap().len() == cases().len() + 1
            && listed["buckets"].as_array().unwrap().iter().all(|b| b["sharedAccess"] != "UNKNOWN");
        Ok(decided.then_some(listed))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_verdicts_are_exact_and_follow_the_organization() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    seed_policies(&moto, &creds, A).await?;
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path());
    let admin = Admin::start(&dir.path().join("data"), Some(&config))?;
    let _agent = Agent::start(&admin, &moto, &creds, Some(&agent_token(A)), &["us-east-1"], &[])?;
    let token = Some(CLIENT_TOKEN);
    let listed = wait_for_verdicts(&admin, token).await?;
    for case in cases() {
        let b = listed["buckets"].as_array().unwrap().iter().find(|b| b["bucketName"] == case.0).unwrap();
        check_bucket(b, &case);
    }
    let acl = listed["buckets"].as_array().unwrap().iter().find(|b| b["bucketName"] == ACL_READ_ACP).unwrap();
    assert_eq!(acl["publicAccess"]["effectivePermission"], "PUBLIC", "{acl}");
    let acl_flags = &acl["publicAccess"]["permissionConfiguration"]["bucketLevelPermissions"]["accessControlList"];
    assert_eq!(acl_flags, &json!({"allowsPublicReadAccess": false, "allowsPublicWriteAccess": false}), "{acl}");
    assert!(acl["publicAccessReason"].as_str().unwrap().contains("READ_ACP"), "{acl}");
    assert_eq!((&acl["sharedAccess"], &acl["sharedWithAccounts"]), (&json!("EXTERNAL"), &json!(["*"])), "{acl}");
    let stats = admin.ctl_json(token, &["stats"])?;
    let by_sharing = &stats["bucketCountBySharedAccessType"];
    assert_eq!(by_sharing, &json!({"external": 5, "internal": 4, "notShared": 1, "unknown": 0}), "{stats}");
    assert_eq!(stats["bucketCountByEffectivePermission"]["publiclyAccessible"], 2);
    assert_eq!(stats["bucketCountByEffectivePermission"]["publiclyReadable"], 1);
    assert_eq!(stats["bucketCountByObjectEncryptionRequirement"]["deniesUnencryptedObjectUploads"], 1);
    assert_eq!(stats["bucketCountByObjectEncryptionRequirement"]["allowsUnencryptedObjectUploads"], 9);

    // Account 222222222222 leaves the organization: the config no longer lists it (nor an
    // agent for it). After SIGHUP, the bucket shared with it is shared externally.
    let text = std::fs::read_to_string(&config)?;
    let text = text.replace("\"222222222222\", ", "");
    let text = text.replace(
        "[[agents]]\nname = \"agent-222222222222\"\naccount_id = \"222222222222\"\ntoken = \"agent-token-222222222222\"\n",
        "",
    );
    std::fs::write(&config, text)?;
    admin.hangup()?;
    let member = eventually(Duration::from_secs(60), "estate-p-member to turn EXTERNAL", || async {
        let b = admin.ctl_json(token, &["bucket", "estate-p-member"])?;
        Ok((b["sharedAccess"] == "EXTERNAL").then_some(b))
    })
    .await?;
    assert_eq!(member["sharedWithAccounts"], json!(["222222222222"]));
    // So does the bucket a service acting for it delivers to.
    let service = eventually(Duration::from_secs(60), "estate-p-service-member to turn EXTERNAL", || async {
        let b = admin.ctl_json(token, &["bucket", "estate-p-service-member"])?;
        Ok((b["sharedAccess"] == "EXTERNAL").then_some(b))
    })
    .await?;
    assert_eq!(service["sharedWithAccounts"], json!(["222222222222"]), "{service}");
    // Every policy is analysed again under the new organization: UNKNOWN until it lands.
    let org_only = eventually(Duration::from_secs(60), "estate-p-org-only to be judged again", || async {
        let b = admin.ctl_json(token, &["bucket", "estate-p-org-only"])?;
        Ok((b["sharedAccess"] != "UNKNOWN").then_some(b))
    })
    .await?;
    assert_eq!(org_only["sharedAccess"], "INTERNAL");
    assert_eq!(org_only["sharedWithAccounts"], json!(["333333333333"]), "{org_only}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn organizations_membership_changes_rejudge_buckets() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    // The management account is moto's default one; a member account is created.
    let root = Credentials::new("testing", "testing", None, None, "root");
    let (organizations, _) = moto.new_organization().await?;
    let member = Moto::new_account(&organizations, "member").await?;

    let owner = "123456789012";
    let s3 = moto.s3(&root, "us-east-1");
    seed_bucket(
        &moto,
        &root,
        &Spec { account: owner, region: "us-east-1", name: "estate-p-org-member".into(), ..Default::default() },
    )
    .await?;
    let policy = json!({"Version": "2012-10-17", "Statement": [statement(
        "Allow", json!({"AWS": format!("arn:aws:iam::{member}:root")}), "s3:GetObject", "arn:aws:s3:::estate-p-org-member/*", None)]});
    s3.put_bucket_policy().bucket("estate-p-org-member").policy(policy.to_string()).send().await?;

    let dir = tempfile::tempdir()?;
    let admin = Admin::start_with_organizations(&dir.path().join("data"), &moto)?;
    let _agent = Agent::start(&admin, &moto, &root, None, &["us-east-1"], &[])?;
    let internal = eventually(Duration::from_secs(60), "the bucket shared with a member", || async {
        let b = admin.ctl_json(None, &["bucket", "estate-p-org-member"])?;
        Ok((b["sharedAccess"] == "INTERNAL").then_some(b))
    })
    .await?;
    assert_eq!(internal["sharedWithAccounts"], json!([member]));

    organizations.remove_account_from_organization().account_id(&member).send().await?;
    let external = eventually(Duration::from_secs(60), "the account's departure to be seen", || async {
        let b = admin.ctl_json(None, &["bucket", "estate-p-org-member"])?;
        Ok((b["sharedAccess"] == "EXTERNAL").then_some(b))
    })
    .await?;
    assert_eq!(external["sharedWithAccounts"], json!([member]));
    Ok(())
}
