//! `quota-memory`: what one hostile agent can make the administrator hold. A real agent token
//! streams snapshots at every S3 limit (50 tags of the longest key and value, 100 ACL grants, a
//! policy of 20 KB, `--rules` replication rules) under fresh bucket names until the
//! administrator's per-account quota (`--max-buckets-per-account`) rejects them, then `--extra`
//! more. Prints the administrator's resident memory before, at the quota and after the rejected
//! extras, and the bytes sent.
//!
//!   cargo build --release --workspace --bins
//!   target/release/quota-memory --quota 2000 --rules 1000 --extra 500
//!
//! The last line of output is the result as JSON.

use std::time::{Duration, Instant};

use clap::Parser;
use estate_common::pb::{self, agent_service_client::AgentServiceClient, report_request::Body, report_response};
use prost::Message;

#[derive(Debug, Parser)]
#[command(name = "quota-memory", about = "Maximum-size snapshots until the bucket quota refuses them")]
struct Args {
    /// The administrator's --max-buckets-per-account.
    #[arg(long, default_value_t = 2_000)]
    quota: u64,
    /// Snapshots sent after the quota is reached (all must be rejected).
    #[arg(long, default_value_t = 500)]
    extra: u64,
    /// Replication rules per snapshot (S3 allows 1,000).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(0..=1_000))]
    rules: u32,
}

const ACCOUNT: &str = "111111111111";
const TOKEN: &str = "quota-memory-agent-token";

/// The administrator's current and peak resident memory, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A snapshot at every S3 limit, for bucket `index`.
fn snapshot(index: u64, rules: u32, now: i64) -> pb::BucketFacts {
    let name = format!("quota-{index:012}-{}", "q".repeat(63 - 19));
    let tags = (0..50).map(|i| pb::Tag { key: format!("{i:02}{}", "k".repeat(126)), value: "v".repeat(256) }).collect();
    let grants = (0..100)
        .map(|i| pb::AclGrant {
            grantee_type: pb::GranteeType::CanonicalUser.into(),
            grantee: format!("{i:064x}"),
            permission: pb::AclPermission::Read.into(),
        })
        .collect();
    let head = r#"{"Version":"2012-10-17","Statement":[{"Sid":""#;
    let tail = format!(
        r#"","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::{name}/*","Condition":{{"Bool":{{"aws:SecureTransport":"false"}}}}}}]}}"#
    );
    let pad = estate_common::limits::MAX_BUCKET_POLICY_BYTES - head.len() - tail.len();
    let policy = format!("{head}{}{tail}", "S".repeat(pad));
    let replication = pb::Replication {
        role: format!("arn:aws:iam::{ACCOUNT}:role/{}", "r".repeat(64)),
        rules: (0..rules)
            .map(|i| pb::ReplicationRule {
                id: format!("{i:04}{}", "i".repeat(251)),
                enabled: true,
                destination_bucket_arn: format!("arn:aws:s3:::dest-{i:04}-{}", "d".repeat(53)),
                destination_account: "222222222222".into(),
            })
            .collect(),
    };
    pb::BucketFacts {
        account_id: ACCOUNT.into(),
        region: "us-east-1".into(),
        bucket_name: name,
        created_at_ms: now,
        read_at_ms: now,
        tags,
        acl: Some(pb::Acl { owner_canonical_id: "f".repeat(64), grants }),
        policy: Some(policy),
        replication: Some(replication),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("estate.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[organization]\naccounts = [\"{ACCOUNT}\"]\n[[agents]]\nname = \"hostile\"\n\
             account_id = \"{ACCOUNT}\"\ntoken = \"{TOKEN}\"\n"
        ),
    )?;
    let quota = args.quota.to_string();
    let admin = estate_tests::Admin::start_with(
        &dir.path().join("data"),
        Some(&config),
        &["--max-buckets-per-account", &quota],
    )?;
    let pid = admin.process.child.id();
    let before = rss_mib(pid);

    let mut client = AgentServiceClient::connect(admin.grpc.clone())
        .await?
        .max_encoding_message_size(16 << 20)
        .max_decoding_message_size(16 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let hello = pb::Hello {
        account_id: ACCOUNT.into(),
        regions: vec!["us-east-1".into()],
        agent_version: "quota-memory".into(),
        ..Default::default()
    };
    tx.send(pb::ReportRequest { seq: 0, body: Some(Body::Hello(hello)) }).await?;
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse()?);
    let mut answers = client.report(request).await?.into_inner();

    let total = args.quota + args.extra;
    let now = estate_common::model::now_ms();
    let sample = snapshot(0, args.rules, now);
    let snapshot_bytes = sample.encoded_len();
    let sender = tokio::spawn(async move {
        for seq in 1..=total {
            let facts = snapshot(seq, args.rules, now);
            let body = Body::Bucket(pb::BucketSnapshot { generation: 1, facts: Some(facts), cause: None });
            if tx.send(pb::ReportRequest { seq, body: Some(body) }).await.is_err() {
                break;
            }
        }
        tx
    });
    let started = Instant::now();
    let (mut acked, mut quota_rejects, mut other_rejects, mut at_quota) = (0, 0_u64, 0_u64, None);
    while acked < total {
        let message = tokio::time::timeout(Duration::from_secs(600), answers.message()).await??;
        match message.and_then(|m| m.body) {
            Some(report_response::Body::Ack(a)) => acked = a.seq,
            Some(report_response::Body::Reject(r)) if r.field == "bucket" => {
                if quota_rejects == 0 {
                    at_quota = Some(rss_mib(pid));
                }
                quota_rejects += 1;
            }
            Some(report_response::Body::Reject(r)) => {
                other_rejects += 1;
                eprintln!("rejected {}: {} ({})", r.seq, r.field, r.reason);
            }
            Some(_) => {}
            None => anyhow::bail!("the stream ended after {acked} acknowledgements"),
        }
    }
    let _tx = sender.await?;
    let after = rss_mib(pid);
    let at_quota = at_quota.unwrap_or((f64::NAN, f64::NAN));
    println!(
        "snapshot {snapshot_bytes} B; sent {total} ({:.1} MiB) in {:.1} s; quota rejects {quota_rejects}, other rejects \
         {other_rejects}",
        (snapshot_bytes as f64) * (total as f64) / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    println!(
        "administrator RSS MiB: before {:.0}, at the quota {:.0}, after the extras {:.0} (peak {:.0})",
        before.0, at_quota.0, after.0, after.1
    );
    println!(
        "{}",
        serde_json::json!({
            "quota": args.quota,
            "extra": args.extra,
            "rules": args.rules,
            "snapshotBytes": snapshot_bytes,
            "quotaRejects": quota_rejects,
            "otherRejects": other_rejects,
            "rssBeforeMiB": before.0,
            "rssAtQuotaMiB": at_quota.0,
            "rssAfterMiB": after.0,
            "rssPeakMiB": after.1,
        })
    );
    anyhow::ensure!(quota_rejects == args.extra, "every snapshot past the quota must be rejected");
    Ok(())
}
