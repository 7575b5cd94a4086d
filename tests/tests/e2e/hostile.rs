//! Hostile bucket policies through the real binaries: moto buckets carry policies designed to
//! be slow or to explode (long wildcard runs, 20 KB of statements, thousands of condition
//! values, JSON nested past the parser's limit, more than 20 KB). The administrator stays up
//! and small, the ordinary buckets beside them are judged on time, the hostile ones show
//! UNKNOWN with a reason (or an exact verdict), and a restart does not explode again.

use std::time::Instant;

use super::*;

#[path = "../../../policy/tests/support/hostile.rs"]
mod hostile_set;

const PUBLIC: &str = "estate-h-ordinary-public";
const PRIVATE: &str = "estate-h-ordinary-private";

fn ordinary_policy(bucket: &str, principal: Value) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": principal,
        "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/*")}]})
    .to_string()
}

/// Bucket name → hostile document, each built for its own bucket. Documents that are not JSON
/// policies at all are left out: S3 refuses to store them (MalformedPolicy), and moto's
/// GetBucketPolicyStatus fails on them, so they never reach an agent from S3; the policy
/// crate's hostile test and `estatectl policy analyze` cover them.
fn hostile_buckets() -> Vec<(String, hostile_set::Hostile)> {
    hostile_set::hostile_policies("estate-h-probe")
        .into_iter()
        .enumerate()
        .filter(|(_, h)| h.error_names.is_none())
        .map(|(i, _)| {
            let bucket = format!("estate-h-hostile-{i:02}");
            let h = hostile_set::hostile_policies(&bucket).swap_remove(i);
            (bucket, h)
        })
        .collect()
}

fn check_hostile(b: &Value, h: &hostile_set::Hostile) {
    // Why a verdict is unknown: the analysis's reasons, or a policy the administrator did not
    // keep (one over S3's 20 KB limit is refused at the edge and named in `unreadConfiguration`).
    let reasons: Vec<&str> = b["policyUnknownReasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .chain(b["unreadConfiguration"].as_str())
        .collect();
    match h.error_names {
        Some(limit) => {
            assert!(reasons.iter().any(|r| r.contains("malformed") && r.contains(limit)), "{}: {b}", h.name)
        }
        None => {
            let undecided = b["sharedAccess"] == "UNKNOWN"
                || b["allowsUnencryptedObjectUploads"] == "UNKNOWN"
                || b["publicAccess"]["effectivePermission"] == "UNKNOWN";
            assert_eq!(undecided, !reasons.is_empty(), "{}: {b}", h.name);
            assert!(!reasons.iter().any(|r| r.contains("internal error")), "{}: {b}", h.name);
            let permission = b["publicAccess"]["effectivePermission"].as_str().unwrap_or_default();
            hostile_set::check_public_read(h, permission).unwrap();
        }
    }
    if h.name == "over-20kb" {
        assert!(reasons.iter().any(|r| r.contains("20 KB")), "{b}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_policies_do_not_take_the_administrator_down() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    let s3 = moto.s3(&creds, "us-east-1");
    let hostile = hostile_buckets();
    let spec = |name: &str| Spec::plain(A, name.into());
    for (name, h) in &hostile {
        seed_bucket(&moto, &creds, &spec(name)).await?;
        s3.put_bucket_policy().bucket(name).policy(&h.text).send().await?;
    }
    for (name, principal) in [(PUBLIC, json!("*")), (PRIVATE, json!({"AWS": format!("arn:aws:iam::{A}:root")}))] {
        seed_bucket(&moto, &creds, &spec(name)).await?;
        s3.put_bucket_policy().bucket(name).policy(ordinary_policy(name, principal)).send().await?;
    }

    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path());
    let mut admin = Admin::start(&dir.path().join("data"), Some(&config))?;
    let started = Instant::now();
    let agent = Agent::start(&admin, &moto, &creds, Some(&agent_token(A)), &["us-east-1"], &[])?;
    let token = Some(CLIENT_TOKEN);

    // The ordinary buckets are judged on time, hostile neighbours or not: two workers share
    // at most 2 s per hostile policy.
    let ordinary = |admin: &Admin| -> anyhow::Result<Option<(Value, Value)>> {
        let public = admin.ctl_json(token, &["bucket", PUBLIC])?;
        let private = admin.ctl_json(token, &["bucket", PRIVATE])?;
        let decided = public["sharedAccess"] != "UNKNOWN" && private["sharedAccess"] != "UNKNOWN";
        Ok(decided.then_some((public, private)))
    };
    let (public, private) =
        eventually(Duration::from_secs(60), "the ordinary buckets' verdicts", || async { ordinary(&admin) }).await?;
    eprintln!("ordinary verdicts after {:?}", started.elapsed());
    assert_eq!(public["publicAccess"]["effectivePermission"], "PUBLIC", "{public}");
    assert_eq!(private["sharedAccess"], "NOT_SHARED", "{private}");

    let all_judged = |admin: &Admin| -> anyhow::Result<Option<Value>> {
        let listed = admin.ctl_json(token, &["buckets", "--all", "--where", "bucketName^=estate-h-hostile-"])?;
        let buckets = listed["buckets"].as_array().unwrap();
        let done = buckets.len() == hostile.len()
            && buckets.iter().all(|b| {
                !b["policyUnknownReasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r == "the bucket policy is being analysed")
            });
        if !done {
            let pending: Vec<&Value> = buckets
                .iter()
                .filter(|b| {
                    b["policyUnknownReasons"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|r| r == "the bucket policy is being analysed")
                })
                .map(|b| &b["bucketName"])
                .collect();
            let missing: Vec<&str> = hostile
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| !buckets.iter().any(|b| b["bucketName"] == *n))
                .collect();
            eprintln!("hostile buckets missing: {missing:?}; still analysed: {pending:?}");
        }
        Ok(done.then_some(listed))
    };
    let listed =
        eventually(Duration::from_secs(120), "every hostile policy to be judged", || async { all_judged(&admin) })
            .await
            .inspect_err(|_| eprintln!("agent log:\n{}", agent.process.log_text()))?;
    for (name, h) in &hostile {
        let b = listed["buckets"].as_array().unwrap().iter().find(|b| b["bucketName"] == name.as_str()).unwrap();
        check_hostile(b, h);
    }
    let peak = estate_tests::peak_rss_mib(admin.process.child.id()).unwrap_or(0.0);
    eprintln!("administrator peak RSS {peak:.0} MiB");
    assert!(peak < 1024.0, "administrator peak RSS {peak:.0} MiB");

    // A restart judges the same policies again (from the cached outcomes), within the same bounds.
    admin.kill_and_restart()?;
    let listed = eventually(Duration::from_secs(120), "every hostile policy after a restart", || async {
        Ok(if ordinary(&admin)?.is_some() { all_judged(&admin)? } else { None })
    })
    .await?;
    for (name, h) in &hostile {
        let b = listed["buckets"].as_array().unwrap().iter().find(|b| b["bucketName"] == name.as_str()).unwrap();
        check_hostile(b, h);
    }
    let peak = estate_tests::peak_rss_mib(admin.process.child.id()).unwrap_or(0.0);
    assert!(peak < 1024.0, "administrator peak RSS after restart {peak:.0} MiB");
    assert!(!admin.process.log_text().contains("panicked"), "{}", admin.process.log_text());
    Ok(())
}

/// `estatectl policy analyze` answers every hostile document: exit 0 with UNKNOWN and a
/// reason, an exact verdict, or for a document that is not a policy, an error that names the
/// limit. How long each took is printed, not asserted (a busy machine must not fail this;
/// the analyser's own time budget is what bounds it, and BENCHMARKS.md records the timings).
#[test]
fn estatectl_answers_every_hostile_document() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for h in hostile_set::hostile_policies("example-bucket") {
        let file = dir.path().join(format!("{}.json", h.name));
        std::fs::write(&file, &h.text)?;
        let started = Instant::now();
        let out = std::process::Command::new(estate_tests::binary("estatectl"))
            .args(["--output", "json", "policy", "analyze", "--owner", A, "--bucket", "example-bucket"])
            .arg(&file)
            .output()?;
        let took = started.elapsed();
        eprintln!("{}: {took:?}", h.name);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match h.error_names {
            Some(named) => {
                assert!(!out.status.success(), "{}: {stdout}", h.name);
                assert!(stderr.contains(named), "{}: {stderr}", h.name);
            }
            None => {
                assert!(out.status.success(), "{}: {stderr}", h.name);
                let analysis: Value = serde_json::from_str(&stdout)?;
                let unknown = analysis["sharedAccess"] == "UNKNOWN"
                    || analysis["allowsPublicReadAccess"] == "UNKNOWN"
                    || analysis["allowsUnencryptedObjectUploads"] == "UNKNOWN";
                let reasons = analysis["unknownReasons"].as_array().map_or(0, Vec::len);
                assert_eq!(unknown, reasons > 0, "{}: {analysis}", h.name);
                hostile_set::check_public_read(&h, analysis["allowsPublicReadAccess"].as_str().unwrap_or_default())
                    .map_err(anyhow::Error::msg)?;
            }
        }
    }
    Ok(())
}
