//! `estatectl`'s JSON checked against Amazon Macie's API model, field by field: every key,
//! type and enum value of `DescribeBuckets`, `GetBucketStatistics` and `ListMembers` as the
//! macie2 service model that botocore ships (in the test virtualenv, beside moto) defines
//! them, recursively, over a read bucket with every kind of configuration, an empty one and
//! an error bucket. Every deliberate difference is listed here with its reason, and in the
//! README's table of differences; anything else fails.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::Context;
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::primitives::ByteStream;

use super::*;

/// The account moto gives to its own access keys.
const ACCOUNT: &str = "123456789012";

/// Keys Estate adds to Macie's shapes (`Shape.key`), each with its reason.
const ADDITIONS: &[(&str, &str)] = &[
    ("BucketMetadata.sharedWithAccounts", "who the bucket is shared with: Macie says only whether"),
    ("BucketMetadata.s3PolicyStatusPublic", "S3's own GetBucketPolicyStatus verdict, beside Estate's"),
    ("BucketMetadata.objectStatisticsSource", "how the object counts were obtained (listing, inventory report)"),
    ("BucketMetadata.usageByStorageClass", "objects and bytes per storage class"),
    ("BucketMetadata.multipartParts", "incomplete multipart upload parts included in the counts"),
    ("BucketMetadata.sharedWithCloudFront", "whether a CloudFront OAI or OAC gets in (Macie raises a finding only)"),
    ("BucketMetadata.policyWitnesses", "a request the policy allows, for every PUBLIC or shared verdict"),
    ("BucketMetadata.policyUnknownReasons", "why a policy verdict is UNKNOWN"),
    ("BucketMetadata.publicAccessReason", "why PUBLIC, when something other than Estate's analysis decided it"),
    ("BucketMetadata.unreadConfiguration", "the configuration calls that failed for a bucket read in part"),
    (
        "ReplicationDetails.unknownReason",
        "why the destination's owner is not known (replicatedExternally is true then)",
    ),
    ("GetBucketStatisticsResponse.membersWithoutAgent", "organization accounts no agent reports for"),
    ("GetBucketStatisticsResponse.membersPending", "members that have not completed a first refresh"),
    ("Member.regions", "each Region's refresh: when, its generation, its buckets"),
    ("Member.connectionState", "whether the account's agent is connected now"),
    ("Member.lastContact", "the agent's last message"),
    ("Member.lastUpdated", "the earliest refresh over the account's Regions"),
    ("Member.agentVersion", "the version the agent reported"),
    ("Member.canonicalUserId", "the account's S3 canonical ID, which maps ACL grants to accounts"),
    ("Member.bucketCount", "the account's buckets"),
    ("Member.reportedBy", "who reports for the account now: each agent or hub with a stream open"),
    ("Member.problem", "why its agent or hub cannot read the account (a role it may not assume)"),
];

/// Macie's keys Estate never writes, each with its reason.
const NEVER_WRITTEN: &[(&str, &str)] = &[
    ("Member.administratorAccountId", "Estate's administrator is a service, not an AWS account"),
    ("Member.masterAccountId", "the deprecated name of administratorAccountId"),
    ("Member.arn", "Estate's members are not AWS resources with ARNs"),
    ("Member.email", "members come from AWS Organizations or the config; Estate sends no invitations"),
    ("Member.invitedAt", "Estate sends no invitations"),
    ("Member.updatedAt", "Estate does not keep when a relationship status last changed"),
    ("Member.tags", "Estate's members are not taggable resources"),
];

/// Enum values Estate writes that Macie's model does not list (`Shape.key=VALUE`).
const VALUES: &[(&str, &str)] = &[(
    "Member.relationshipStatus=NoAgent",
    "an organization account no agent reports for; Macie's Created and Invited describe invitations",
)];

/// Macie's keys left out where Macie's API leaves them null too, with the rule.
const ABSENT_AS_IN_MACIE: &[(&str, &str)] = &[
    ("BucketMetadata.errorCode", "null when the metadata was read"),
    ("BucketMetadata.errorMessage", "null when errorCode is null"),
    ("BucketMetadata.lastAutomatedDiscoveryTime", "null when automated discovery never analysed the bucket"),
    ("JobDetails.lastJobId", "null when isDefinedInJob is FALSE"),
    ("JobDetails.lastJobRunTime", "null when isDefinedInJob is FALSE"),
    ("BucketServerSideEncryption.kmsMasterKeyId", "null unless the default encryption names a KMS key"),
    ("DescribeBucketsResponse.nextToken", "null on the last page"),
    ("ListMembersResponse.nextToken", "null on the last page"),
];

/// Macie's keys an error bucket leaves out: Macie keeps only accountId, bucketArn,
/// bucketCreatedAt, bucketName, lastUpdated, region, errorCode and errorMessage populated.
const ABSENT_FOR_AN_ERROR_BUCKET: &[&str] = &[
    "BucketMetadata.classifiableObjectCount",
    "BucketMetadata.classifiableSizeInBytes",
    "BucketMetadata.objectCount",
    "BucketMetadata.objectCountByEncryptionType",
    "BucketMetadata.replicationDetails",
    "BucketMetadata.sensitivityScore",
    "BucketMetadata.serverSideEncryption",
    "BucketMetadata.sizeInBytes",
    "BucketMetadata.sizeInBytesCompressed",
    "BucketMetadata.tags",
    "BucketMetadata.unclassifiableObjectCount",
    "BucketMetadata.unclassifiableObjectSizeInBytes",
    "BucketPublicAccess.permissionConfiguration",
];

/// The macie2 service model, as botocore loads it.
fn macie_model() -> anyhow::Result<Value> {
    let python = estate_tests::repo_root().join(".venv/bin/python");
    let script = "import botocore.loaders, json, sys; \
                  json.dump(botocore.loaders.Loader().load_service_model('macie2', 'service-2'), sys.stdout)";
    let out = Command::new(&python).args(["-c", script]).output().context("running the virtualenv's python")?;
    anyhow::ensure!(
        out.status.success(),
        "loading botocore's macie2 model failed (run scripts/setup.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// What one JSON document is checked against, and what it may leave out.
struct Checker<'a> {
    shapes: &'a serde_json::Map<String, Value>,
    /// `Shape.key` names this document may leave out beyond the lists above.
    may_leave_out: BTreeSet<&'static str>,
    problems: Vec<String>,
    /// `Shape.key` names seen, for the coverage check.
    seen: BTreeSet<String>,
}

impl Checker<'_> {
    fn listed(list: &[(&str, &str)], name: &str) -> bool {
        list.iter().any(|(n, _)| *n == name)
    }

    fn check(&mut self, shape: &str, at: &str, json: &Value) {
        let spec = &self.shapes[shape];
        let kind = spec["type"].as_str().unwrap_or_default();
        let wrong = |what: &str| format!("{at}: expected {what} ({shape}), got {json}");
        match kind {
            "structure" => {
                let Some(object) = json.as_object() else { return self.problems.push(wrong("an object")) };
                let members = spec["members"].as_object().cloned().unwrap_or_default();
                let mut names = BTreeSet::new();
                for (key, member) in &members {
                    let name = member["locationName"].as_str().unwrap_or(key).to_owned();
                    let full = format!("{shape}.{name}");
                    let member_shape = member["shape"].as_str().unwrap_or_default();
                    match object.get(&name) {
                        Some(value) => {
                            self.seen.insert(full.clone());
                            let value_at = format!("{at}.{name}");
                            if let Some(allowed) = self.shapes[member_shape]["enum"].as_array() {
                                let text = value.as_str().unwrap_or_default();
                                let deliberate = Self::listed(VALUES, &format!("{full}={text}"));
                                if !allowed.iter().any(|v| v == value) && !deliberate {
                                    self.problems.push(format!("{value_at}: {value} is not one of {allowed:?}"));
                                }
                            } else {
                                self.check(member_shape, &value_at, value);
                            }
                        }
                        None => {
                            let known = Self::listed(NEVER_WRITTEN, &full)
                                || Self::listed(ABSENT_AS_IN_MACIE, &full)
                                || self.may_leave_out.contains(full.as_str());
                            if !known {
                                self.problems.push(format!("{at}: Macie's `{name}` ({full}) is missing"));
                            }
                        }
                    }
                    names.insert(name);
                }
                for key in object.keys().filter(|k| !names.contains(*k)) {
                    let full = format!("{shape}.{key}");
                    if !Self::listed(ADDITIONS, &full) {
                        self.problems.push(format!("{at}: `{key}` ({full}) is neither Macie's nor a listed addition"));
                    }
                }
            }
            "list" => {
                let Some(items) = json.as_array() else { return self.problems.push(wrong("an array")) };
                let member = spec["member"]["shape"].as_str().unwrap_or_default();
                for (i, item) in items.iter().enumerate() {
                    self.check(member, &format!("{at}[{i}]"), item);
                }
            }
            "map" => {
                let Some(object) = json.as_object() else { return self.problems.push(wrong("an object")) };
                let value = spec["value"]["shape"].as_str().unwrap_or_default();
                for (k, v) in object {
                    self.check(value, &format!("{at}.{k}"), v);
                }
            }
            "string" if !json.is_string() => self.problems.push(wrong("a string")),
            "boolean" if !json.is_boolean() => self.problems.push(wrong("a boolean")),
            "long" | "integer" if !(json.is_i64() || json.is_u64()) => self.problems.push(wrong("an integer")),
            "double" if !json.is_number() => self.problems.push(wrong("a number")),
            "timestamp" => {
                let iso = json.as_str().is_some_and(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
                });
                if !iso {
                    self.problems.push(wrong("an ISO 8601 timestamp"));
                }
            }
            "string" | "boolean" | "long" | "integer" | "double" => {}
            other => self.problems.push(format!("{at}: the model's type `{other}` ({shape}) is not checked here")),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn estatectl_json_matches_macies_api_model_but_for_the_listed_differences() -> anyhow::Result<()> {
    let model = macie_model()?;
    let shapes = model["shapes"].as_object().context("the model's shapes")?;

    let moto = Moto::start()?;
    let root = Credentials::new("testing", "testing", None, None, "root");
    let s3 = moto.s3(&root, "us-east-1");
    // Every kind of configuration on one bucket, nothing on another, and a third the agent
    // may not read.
    let rich = Spec {
        tags: vec![("team", "data"), ("empty", "")],
        versioning: true,
        encryption: Some(("aws:kms", Some("arn:aws:kms:us-east-1:123456789012:key/estate-model"))),
        replicate_to: vec![OUTSIDE],
        policy: true,
        ..Spec::plain(ACCOUNT, "estate-m-rich".into())
    };
    seed_bucket(&moto, &root, &rich).await?;
    s3.put_object().bucket("estate-m-rich").key("a.csv").body(ByteStream::from_static(b"a,b\n")).send().await?;
    seed_bucket(&moto, &root, &Spec::plain(ACCOUNT, "estate-m-empty".into())).await?;
    seed_bucket(&moto, &root, &Spec::plain(ACCOUNT, "estate-m-denied".into())).await?;
    let denial =
        json!([{"Effect": "Deny", "Action": "s3:GetBucketPolicy", "Resource": "arn:aws:s3:::estate-m-denied"}]);
    let agent_creds = super::access::agent_denied(&moto, &root, denial).await?;

    let dir = tempfile::tempdir()?;
    let admin = Admin::start(&dir.path().join("data"), None)?;
    let _agent = Agent::start(&admin, &moto, &agent_creds, None, &["us-east-1"], &[])?;
    let buckets = eventually(Duration::from_secs(90), "every bucket read and judged", || async {
        let listed = admin.ctl_json(None, &["buckets", "--all"])?;
        let all = listed["buckets"].as_array().context("buckets")?;
        let done = all.len() == 3
            && all.iter().all(|b| b["bucketName"] == "estate-m-denied" || b["sharedAccess"] != "UNKNOWN")
            && all.iter().any(|b| b["bucketName"] == "estate-m-rich" && b["objectCount"] == 1);
        Ok(done.then_some(listed))
    })
    .await?;
    let stats = admin.ctl_json(None, &["stats"])?;
    let members = admin.ctl_json(None, &["members"])?;

    let mut checker = Checker { shapes, may_leave_out: BTreeSet::new(), problems: Vec::new(), seen: BTreeSet::new() };
    for (i, bucket) in buckets["buckets"].as_array().unwrap().iter().enumerate() {
        checker.may_leave_out = if bucket["errorCode"].is_null() {
            BTreeSet::new()
        } else {
            ABSENT_FOR_AN_ERROR_BUCKET.iter().copied().collect()
        };
        checker.check("BucketMetadata", &format!("buckets[{i}]"), bucket);
    }
    // The response around them (its buckets checked above, each with what it may leave out).
    checker.may_leave_out = BTreeSet::new();
    let mut around = buckets.clone();
    around["buckets"] = json!([]);
    checker.check("DescribeBucketsResponse", "DescribeBuckets", &around);
    checker.check("GetBucketStatisticsResponse", "GetBucketStatistics", &stats);
    checker.check("ListMembersResponse", "ListMembers", &members);
    assert!(checker.problems.is_empty(), "differences from Macie's model:\n{}", checker.problems.join("\n"));

    // The sample reaches every key Macie's bucket metadata has that Estate writes: a key the
    // sample never showed would not have been checked.
    let bucket_keys: Vec<String> = shapes["BucketMetadata"]["members"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| format!("BucketMetadata.{k}"))
        .filter(|k| !Checker::listed(ABSENT_AS_IN_MACIE, k))
        .collect();
    let unseen: Vec<&String> = bucket_keys.iter().filter(|k| !checker.seen.contains(*k)).collect();
    assert!(unseen.is_empty(), "never shown by the sample: {unseen:?}");

    // What the rich bucket says, in Macie's values.
    let rich = buckets["buckets"].as_array().unwrap().iter().find(|b| b["bucketName"] == "estate-m-rich").unwrap();
    assert_eq!(rich["automatedDiscoveryMonitoringStatus"], "NOT_MONITORED", "{rich}");
    assert_eq!(rich["jobDetails"], json!({"isDefinedInJob": "FALSE", "isMonitoredByJob": "FALSE"}), "{rich}");
    assert_eq!(rich["sensitivityScore"], 50, "a bucket with objects that discovery never analysed: {rich}");
    assert_eq!(rich["replicationDetails"]["replicatedExternally"], true, "{rich}");
    let empty = buckets["buckets"].as_array().unwrap().iter().find(|b| b["bucketName"] == "estate-m-empty").unwrap();
    assert_eq!(empty["sensitivityScore"], 1, "an empty bucket: {empty}");
    let denied = buckets["buckets"].as_array().unwrap().iter().find(|b| b["bucketName"] == "estate-m-denied").unwrap();
    assert!(denied.get("tags").is_none(), "an error bucket's tags were not read: {denied}");
    Ok(())
}
