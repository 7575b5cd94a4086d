//! Buckets the agent may not read, with moto's IAM authorization switched on: an identity
//! policy denies the agent `s3:GetBucketPolicy` on one bucket, `s3:ListBucket` on another and
//! the account-level S3 Control read. Those buckets become error buckets naming the call and
//! count as unknown; every other bucket is complete; the account settings are unknown, not
//! "off".
//!
//! Tokens revoked by rewriting the config and sending SIGHUP: the client's next request and the
//! agent's open stream get UNAUTHENTICATED, without a restart; a config that does not parse
//! keeps the tokens in force and its error repeats nothing of the file.

use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::primitives::ByteStream;
use estate_common::pb;

use super::*;

/// The account moto gives to its own access keys.
const DEFAULT_ACCOUNT: &str = "123456789012";

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_buckets_become_error_buckets_and_the_rest_is_complete() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let root = Credentials::new("testing", "testing", None, None, "root");
    let s3 = moto.s3(&root, "us-east-1");
    let seed = |name: &str| Spec::plain(DEFAULT_ACCOUNT, name.into());
    for name in ["estate-d-readable", "estate-d-no-policy-read", "estate-d-no-listing"] {
        seed_bucket(&moto, &root, &seed(name)).await?;
        s3.put_object().bucket(name).key("data.csv").body(ByteStream::from_static(b"a,b\n1,2\n")).send().await?;
    }
    s3.put_bucket_policy()
        .bucket("estate-d-no-policy-read")
        .policy(json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": "arn:aws:s3:::estate-d-no-policy-read"}]}).to_string())
        .send()
        .await?;

    // The agent's identity: everything it needs, minus three denials.
    let agent_creds = agent_denied(
        &moto,
        &root,
        json!([
            {"Effect": "Deny", "Action": "s3:GetBucketPolicy", "Resource": "arn:aws:s3:::estate-d-no-policy-read"},
            {"Effect": "Deny", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::estate-d-no-listing"},
            {"Effect": "Deny", "Action": "s3:GetAccountPublicAccessBlock", "Resource": "*"}
        ]),
    )
    .await?;

    let dir = tempfile::tempdir()?;
    let admin = Admin::start(&dir.path().join("data"), None)?;
    let _agent = Agent::start(&admin, &moto, &agent_creds, None, &["us-east-1"], &[])?;
    eventually(Duration::from_secs(60), "the refresh", || async {
        let members = admin.ctl_json(None, &["members"])?;
        Ok(members["members"][0]["regions"][0]["lastUpdated"].is_string().then_some(()))
    })
    .await?;

    let bucket = |name: &str| admin.ctl_json(None, &["bucket", name]);
    let readable = bucket("estate-d-readable")?;
    assert!(readable["errorCode"].is_null(), "{readable}");
    assert_eq!(readable["objectCount"], 1);
    assert_eq!(readable["publicAccess"]["effectivePermission"], "NOT_PUBLIC");
    assert!(
        readable["publicAccess"]["permissionConfiguration"]["accountLevelPermissions"]["blockPublicAccess"].is_null(),
        "a denied S3 Control read leaves the account settings unknown, not off: {readable}"
    );
    for (name, call) in [("estate-d-no-policy-read", "s3:GetBucketPolicy"), ("estate-d-no-listing", "s3:ListBucket")] {
        let b = bucket(name)?;
        assert_eq!(b["errorCode"], "ACCESS_DENIED", "{b}");
        assert!(b["errorMessage"].as_str().unwrap().contains(call), "{b}");
        for field in ["objectCount", "serverSideEncryption", "replicationDetails", "tags"] {
            assert!(b[field].is_null() || b[field] == json!([]), "{name}: `{field}` must be empty: {b}");
        }
        assert_eq!(b["publicAccess"]["effectivePermission"], "UNKNOWN");
        assert_eq!(b["sharedAccess"], "UNKNOWN");
        assert!(b["bucketCreatedAt"].is_string() && b["bucketArn"].is_string() && b["region"] == "us-east-1");
    }
    let stats = admin.ctl_json(None, &["stats"])?;
    assert_eq!(stats["bucketCount"], 3);
    assert_eq!(stats["bucketCountByEffectivePermission"]["unknown"], 2);
    assert_eq!(stats["bucketCountBySharedAccessType"]["unknown"], 2);
    assert_eq!(stats["bucketCountByEncryptionType"]["unknown"], 2);
    assert_eq!(stats["bucketCountByObjectEncryptionRequirement"]["unknown"], 2);
    assert_eq!(stats["objectCount"], 1, "error buckets are excluded from the object totals");
    Ok(())
}

/// The keys of an IAM user `estate-agent` allowed everything an agent needs but `denials`
/// (IAM statements), after which moto enforces identity policies (and signatures).
pub(super) async fn agent_denied(moto: &Moto, root: &Credentials, denials: Value) -> anyhow::Result<Credentials> {
    let iam = aws_sdk_iam_client(moto, root);
    iam.create_user().user_name("estate-agent").send().await?;
    let mut statements = vec![json!({"Effect": "Allow", "Action": ["s3:*", "sts:GetCallerIdentity"], "Resource": "*"})];
    statements.extend(denials.as_array().into_iter().flatten().cloned());
    let policy = json!({"Version": "2012-10-17", "Statement": statements});
    iam.put_user_policy()
        .user_name("estate-agent")
        .policy_name("agent")
        .policy_document(policy.to_string())
        .send()
        .await?;
    let key = iam.create_access_key().user_name("estate-agent").send().await?;
    let key = key.access_key().ok_or_else(|| anyhow::anyhow!("moto gave no access key"))?;
    let credentials = Credentials::new(key.access_key_id(), key.secret_access_key(), None, None, "agent");
    let enabled = reqwest_free_post(&moto.endpoint, "/moto-api/reset-auth", "0")?;
    anyhow::ensure!(enabled.contains("200"), "enabling moto's IAM authorization: {enabled}");
    Ok(credentials)
}

pub(super) fn aws_sdk_iam_client(moto: &Moto, creds: &Credentials) -> aws_sdk_iam::Client {
    let config = aws_sdk_iam::config::Builder::new()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(creds.clone())
        .build();
    aws_sdk_iam::Client::from_conf(config)
}

/// A tiny HTTP POST over a plain TCP stream (moto's control API is not an AWS API).
pub(super) fn reqwest_free_post(endpoint: &str, path: &str, body: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host)?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.lines().next().unwrap_or_default().to_owned())
}

/// Opens a report stream for account A with `token`: the sender of further messages and the
/// answers, or the refusal.
async fn open_report(
    url: &str,
    token: &str,
) -> anyhow::Result<
    Result<(tokio::sync::mpsc::Sender<pb::ReportRequest>, tonic::Streaming<pb::ReportResponse>), tonic::Status>,
> {
    use estate_common::pb::report_request::Body;
    let mut client = pb::agent_service_client::AgentServiceClient::connect(url.to_owned()).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let hello = pb::Hello {
        account_id: A.into(),
        regions: vec!["us-east-1".into()],
        agent_version: "access-test".into(),
        ..Default::default()
    };
    tx.send(pb::ReportRequest { seq: 0, body: Some(Body::Hello(hello)) }).await?;
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    Ok(client.report(request).await.map(|r| (tx, r.into_inner())))
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_revokes_tokens_and_ends_the_streams_they_opened() -> anyhow::Result<()> {
    const NEW_CLIENT_TOKEN: &str = "client-token-rotated-0123456789";
    const NEW_AGENT_TOKEN: &str = "agent-token-rotated-0123456789";
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("estate.toml");
    let write_config = |agent: &str, client: &str| {
        let text = format!(
            "version = 1\n[[agents]]\nname = \"a\"\naccount_id = \"{A}\"\ntoken = \"{agent}\"\n\
             [[clients]]\nname = \"tests\"\nrole = \"read-only\"\ntoken = \"{client}\"\n"
        );
        // Replaced whole, as an editor or a deployment tool would.
        let next = dir.path().join("estate.toml.next");
        std::fs::write(&next, text)?;
        std::fs::rename(&next, &config)
    };
    write_config(&agent_token(A), CLIENT_TOKEN)?;
    let admin = Admin::start_with(&dir.path().join("data"), Some(&config), &[])?;
    let (_tx, mut answers) = open_report(&admin.grpc, &agent_token(A)).await?.map_err(|s| anyhow::anyhow!("{s:?}"))?;
    eventually(Duration::from_secs(30), "the agent to be CONNECTED", || async {
        let members = admin.ctl_json(Some(CLIENT_TOKEN), &["members"])?;
        Ok((members["members"][0]["connectionState"] == "CONNECTED").then_some(()))
    })
    .await?;

    // Both tokens leaked: new ones in the config, then SIGHUP.
    write_config(NEW_AGENT_TOKEN, NEW_CLIENT_TOKEN)?;
    admin.hangup()?;
    eventually(Duration::from_secs(30), "the old client token to be refused", || async {
        match admin.ctl(Some(CLIENT_TOKEN), &["stats"]) {
            Ok(_) => Ok(None),
            Err(error) => {
                let error = format!("{error:#}");
                anyhow::ensure!(error.contains("Unauthenticated") && error.contains("unknown token"), "{error}");
                Ok(Some(()))
            }
        }
    })
    .await?;
    admin.ctl_json(Some(NEW_CLIENT_TOKEN), &["stats"])?;
    // The stream the old agent token opened is ended, with the reason.
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(30), answers.message()).await? {
            Ok(Some(_)) => continue,
            Ok(None) => anyhow::bail!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), tonic::Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("revoked"), "{ended:?}");
    let Err(refused) = open_report(&admin.grpc, &agent_token(A)).await? else {
        anyhow::bail!("the old agent token opened a stream after it was revoked");
    };
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let (_tx, _answers) =
        open_report(&admin.grpc, NEW_AGENT_TOKEN).await?.map_err(|s| anyhow::anyhow!("the new agent token: {s:?}"))?;

    // A config that does not parse changes nothing, and its error does not repeat the file.
    let secret = "s3cr3t-never-logged-0123456789";
    std::fs::write(&config, format!("version = 1\n[[clients]]\nname = \"x\"\ntoken = \"{secret}\n"))?;
    admin.hangup()?;
    eventually(Duration::from_secs(30), "the broken config to be refused", || async {
        Ok(admin.process.log_text().contains("config not reloaded").then_some(()))
    })
    .await?;
    admin.ctl_json(Some(NEW_CLIENT_TOKEN), &["stats"])?;
    let log = admin.process.log_text();
    assert!(!log.contains("s3cr3t"), "{log}");
    assert!(log.contains("line 4, column"), "{log}");
    Ok(())
}
