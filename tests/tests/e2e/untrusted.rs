//! A member cannot bend the verdicts about another member. A forged agent holding member A's
//! real token speaks the protocol directly: it claims an outsider's canonical user ID, claims
//! an outsider's bucket name in A's bucket list, and sends facts no real bucket could have.
//! Member B's verdicts do not move to the side the forger wants, and every forged fact is
//! rejected with its field named. An operator can then forget A.

use aws_sdk_s3::types::{AccessControlPolicy, Grant, Grantee, Owner, Permission, Type};
use estate_common::pb::{self, agent_service_client::AgentServiceClient, report_request::Body, report_response};

use super::*;

/// An outsider's canonical user ID (moto gives every account the same one, which this is not).
const OUTSIDER_CANONICAL: &str = "0badc0ffee0badc0ffee0badc0ffee0badc0ffee0badc0ffee0badc0ffee0bad";
const OPERATOR_TOKEN: &str = "operator-token-0123456789";

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = format!("version = 1\n[organization]\nid = \"o-exampleorg1\"\naccounts = [\"{A}\", \"{B}\"]\n");
    for account in [A, B] {
        text += &format!(
            "[[agents]]\nname = \"agent-{account}\"\naccount_id = \"{account}\"\ntoken = \"{}\"\n",
            agent_token(account)
        );
    }
    text += &format!("[[clients]]\nname = \"tests\"\nrole = \"read-only\"\ntoken = \"{CLIENT_TOKEN}\"\n");
    text += &format!("[[clients]]\nname = \"ops\"\nrole = \"operator\"\ntoken = \"{OPERATOR_TOKEN}\"\n");
    let path = dir.join("estate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn request(seq: u64, body: Body) -> pb::ReportRequest {
    pb::ReportRequest { seq, body: Some(body) }
}

fn snapshot(seq: u64, facts: pb::BucketFacts, generation: u64) -> pb::ReportRequest {
    request(seq, Body::Bucket(pb::BucketSnapshot { generation, facts: Some(facts), cause: None }))
}

fn facts_of(name: &str, read_at_ms: i64) -> pb::BucketFacts {
    pb::BucketFacts {
        account_id: A.into(),
        region: "us-east-1".into(),
        bucket_name: name.into(),
        created_at_ms: 1,
        read_at_ms,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_agent_cannot_move_another_members_verdicts() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds_a = moto.credentials(A).await?;
    let creds_b = moto.credentials(B).await?;
    seed_bucket(&moto, &creds_a, &Spec::plain(A, "estate-u-a-own".into())).await?;
    seed_bucket(&moto, &creds_b, &Spec::plain(B, "estate-u-acl".into())).await?;
    seed_bucket(&moto, &creds_b, &Spec::plain(B, "estate-u-repl".into())).await?;
    // B's bucket grants READ to an outsider's canonical user...
    let s3 = moto.s3(&creds_b, "us-east-1");
    let owner = s3.get_bucket_acl().bucket("estate-u-acl").send().await?.owner.expect("an ACL has an owner");
    let grant = |grantee: Grantee, permission| Grant::builder().grantee(grantee).permission(permission).build();
    let policy = AccessControlPolicy::builder()
        .owner(Owner::builder().set_id(owner.id.clone()).build())
        .grants(grant(
            Grantee::builder().r#type(Type::CanonicalUser).set_id(owner.id.clone()).build()?,
            Permission::FullControl,
        ))
        .grants(grant(Grantee::builder().r#type(Type::CanonicalUser).id(OUTSIDER_CANONICAL).build()?, Permission::Read))
        .build();
    s3.put_bucket_acl().bucket("estate-u-acl").access_control_policy(policy).send().await?;
    // ...and replicates to a bucket no member holds, without naming its account.
    s3.put_bucket_versioning()
        .bucket("estate-u-repl")
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await?;
    let replication = replication_config(B, &[("estate-u-outside-dest".to_owned(), None)])?;
    s3.put_bucket_replication().bucket("estate-u-repl").replication_configuration(replication).send().await?;

    let dir = tempfile::tempdir()?;
    let config = config(dir.path());
    let admin = Admin::start(&dir.path().join("data"), Some(&config))?;
    let token = Some(CLIENT_TOKEN);
    let _a = Agent::start(&admin, &moto, &creds_a, Some(&agent_token(A)), &["us-east-1"], &[])?;
    let _b = Agent::start(&admin, &moto, &creds_b, Some(&agent_token(B)), &["us-east-1"], &[])?;
    let bucket = |name: &str| admin.ctl_json(token, &["bucket", name]);
    eventually(Duration::from_secs(90), "B's verdicts before the forgery", || async {
        let (acl, repl) = (bucket("estate-u-acl")?, bucket("estate-u-repl")?);
        Ok((acl["sharedAccess"] == "EXTERNAL" && repl["replicationDetails"]["replicatedExternally"] == true)
            .then_some(()))
    })
    .await?;

    // The forger: A's real token, a stream of its own.
    let mut client = AgentServiceClient::connect(admin.grpc.clone()).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let hello = pb::Hello {
        account_id: A.into(),
        regions: vec!["us-east-1".into()],
        agent_version: "forger".into(),
        canonical_user_id: OUTSIDER_CANONICAL.into(),
        ..Default::default()
    };
    tx.send(request(0, Body::Hello(hello))).await?;
    let mut stream = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    stream.metadata_mut().insert("authorization", format!("Bearer {}", agent_token(A)).parse()?);
    let mut answers = client.report(stream).await?.into_inner();

    let now = estate_common::model::now_ms();
    let ten_years_ms = 10 * 365 * 24 * 3600 * 1000_i64;
    let tags: Vec<pb::Tag> = (0..5_000).map(|i| pb::Tag { key: format!("k{i}"), value: "v".repeat(256) }).collect();
    let messages = vec![
        request(
            1,
            Body::AccountBuckets(pb::AccountBuckets {
                bucket_names: vec!["estate-u-a-own".into(), "estate-u-outside-dest".into()],
                read_at_ms: now,
            }),
        ),
        snapshot(2, facts_of("estate-u-from-the-future", now + ten_years_ms), 1),
        snapshot(3, facts_of(&"a".repeat(200_000), now), 1),
        snapshot(4, pb::BucketFacts { tags, ..facts_of("estate-u-many-tags", now) }, 1),
        request(
            5,
            Body::ScopeComplete(pb::ScopeComplete {
                region: "us-east-1".into(),
                generation: u64::MAX,
                read_at_ms: now,
                bucket_count: 0,
            }),
        ),
    ];
    for message in messages {
        tx.send(message).await?;
    }
    let mut rejected = BTreeMap::new();
    let mut acked = 0;
    while acked < 5 {
        let message = tokio::time::timeout(Duration::from_secs(30), answers.message()).await??;
        match message.and_then(|m| m.body) {
            Some(report_response::Body::Reject(r)) => {
                rejected.insert(r.seq, (r.field, r.reason));
            }
            Some(report_response::Body::Ack(a)) => acked = a.seq,
            Some(_) => {}
            None => anyhow::bail!("the forged stream ended early; rejected so far: {rejected:?}"),
        }
    }
    let fields: BTreeMap<u64, &str> = rejected.iter().map(|(seq, (field, _))| (*seq, field.as_str())).collect();
    assert_eq!(
        fields,
        BTreeMap::from([
            (2, "bucket.facts.read_at_ms"),
            (3, "facts.bucket_name"),
            (4, "facts.tags"),
            (5, "scope_complete.generation"),
        ]),
        "every forged fact is rejected with its field named: {rejected:?}"
    );

    // Everything the forger sent is committed (acknowledged): B's verdicts now.
    let acl = bucket("estate-u-acl")?;
    assert_eq!(acl["sharedAccess"], "EXTERNAL", "a claimed canonical ID does not make an outsider a member: {acl}");
    let details = &bucket("estate-u-repl")?["replicationDetails"];
    assert_ne!(details["replicatedExternally"], false, "a bucket list alone does not make a bucket A's: {details}");
    if !details["unknownReason"].is_null() {
        let reason = details["unknownReason"].as_str().unwrap_or_default();
        assert!(reason.contains(A), "the unknown names the account whose claim it rests on: {reason}");
    }
    let listed = admin.ctl_json(token, &["buckets", "--all"])?;
    let names: BTreeSet<&str> =
        listed["buckets"].as_array().unwrap().iter().filter_map(|b| b["bucketName"].as_str()).collect();
    assert!(!names.contains("estate-u-from-the-future") && !names.contains("estate-u-many-tags"), "{names:?}");
    drop(tx);
    drop(answers);

    // An operator forgets A: every bucket of A leaves the inventory; B's stay. A read-only
    // client may not.
    let refused = admin.ctl(token, &["members", "forget", A]).unwrap_err();
    assert!(refused.to_string().contains("operator") || refused.to_string().contains("PermissionDenied"), "{refused}");
    let forgot = admin.ctl_json(Some(OPERATOR_TOKEN), &["members", "forget", A])?;
    assert!(forgot["bucketsRemoved"].as_u64() >= Some(1), "A's own bucket was held: {forgot}");
    let listed = admin.ctl_json(token, &["buckets", "--all"])?;
    let accounts: BTreeSet<&str> =
        listed["buckets"].as_array().unwrap().iter().filter_map(|b| b["accountId"].as_str()).collect();
    // A's agent may already have re-sent a bucket after the forget (its stream is open): only
    // B's buckets must all still be there.
    assert!(accounts.contains(B), "{listed}");
    let b_names: BTreeSet<&str> = listed["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["accountId"] == B)
        .filter_map(|b| b["bucketName"].as_str())
        .collect();
    assert_eq!(b_names, BTreeSet::from(["estate-u-acl", "estate-u-repl"]));
    Ok(())
}
