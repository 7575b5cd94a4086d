//! End-to-end scenarios over the real binaries against moto: the inventory of a small
//! organization equals what the seeding implies; an administrator killed mid-ingestion ends
//! up identical to one that was not; agents cannot report for other accounts; refreshes pick
//! up new, deleted and changed buckets.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_s3::types::{
    BucketCannedAcl, BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, Destination,
    ObjectOwnership, OwnershipControls, OwnershipControlsRule, PublicAccessBlockConfiguration,
    ReplicationConfiguration, ReplicationRule, ReplicationRuleFilter, ReplicationRuleStatus, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
    VersioningConfiguration,
};
use estate_tests::{eventually, Admin, Agent, Moto};

/// A Block Public Access configuration from its four flags (`BlockPublicAcls`,
/// `IgnorePublicAcls`, `BlockPublicPolicy`, `RestrictPublicBuckets`): S3 and S3 Control have
/// two types with the same builder.
macro_rules! public_access_block {
    ($ty:path, $flags:expr) => {{
        let [acls, ignore, policy, restrict]: [bool; 4] = $flags;
        <$ty>::builder()
            .block_public_acls(acls)
            .ignore_public_acls(ignore)
            .block_public_policy(policy)
            .restrict_public_buckets(restrict)
            .build()
    }};
}

mod access;
mod dashboard;
mod demo;
mod faults;
mod findings;
mod hostile;
mod hubs;
mod limits;
mod loadgen;
mod model;
mod objects;
mod parity;
mod policies;
mod scale;
mod sinks;
mod slowpeers;
mod tls;
mod untrusted;
use serde_json::{json, Value};

const A: &str = "111111111111";
const B: &str = "222222222222";
const C: &str = "333333333333";
const OUTSIDE: &str = "999999999999";
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const CLIENT_TOKEN: &str = "client-token-0123456789";

fn agent_token(account: &str) -> String {
    format!("agent-token-{account}")
}

/// Config: the three accounts, one agent token each, one read-only client.
fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    write_config_for(dir, &[A, B, C])
}

/// Config: the organization `o-exampleorg1` of A, B and C; agents configured for `agents`
/// only; one read-only client.
fn write_config_for(dir: &std::path::Path, agents: &[&str]) -> std::path::PathBuf {
    let text = estate_tests::config_text("o-exampleorg1", &[A, B, C], agents, agent_token, CLIENT_TOKEN);
    let path = dir.join("estate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[derive(Debug, Clone, Default)]
struct Spec {
    account: &'static str,
    region: &'static str,
    name: String,
    canned_acl: Option<&'static str>,
    owner_enforced: bool,
    /// blockPublicAcls, ignorePublicAcls, blockPublicPolicy, restrictPublicBuckets
    bpa: Option<[bool; 4]>,
    encryption: Option<(&'static str, Option<&'static str>)>,
    replicate_to: Vec<&'static str>,
    tags: Vec<(&'static str, &'static str)>,
    versioning: bool,
    policy: bool,
}

impl Spec {
    /// A bucket of `account` in us-east-1 with nothing configured.
    fn plain(account: &'static str, name: String) -> Self {
        Self { account, region: "us-east-1", name, ..Default::default() }
    }
}

/// Account-level block public access of account C: ignore public ACLs only.
const ACCOUNT_C_BPA: [bool; 4] = [false, true, false, false];

fn account_bpa(account: &str) -> [bool; 4] {
    if account == C {
        ACCOUNT_C_BPA
    } else {
        [false; 4]
    }
}

fn org_specs() -> Vec<Spec> {
    let mut specs = Vec::new();
    for account in [A, B, C] {
        for region in REGIONS {
            let short = &account[..1];
            let r = if region == "us-east-1" { "use1" } else { "euw1" };
            let base =
                |kind: &str| Spec { account, region, name: format!("estate-{short}-{r}-{kind}"), ..Default::default() };
            specs.push(Spec { canned_acl: Some("public-read"), tags: vec![("team", "web")], ..base("public-read") });
            specs.push(Spec { canned_acl: Some("public-read-write"), ..base("public-rw") });
            specs.push(Spec { encryption: Some(("AES256", None)), versioning: true, ..base("sse-s3") });
            specs.push(Spec {
                encryption: Some(("aws:kms", Some("arn:aws:kms:us-east-1:111111111111:key/1234abcd"))),
                tags: vec![("env", "prod"), ("owner", "")],
                ..base("sse-kms")
            });
            specs.push(Spec {
                canned_acl: Some("authenticated-read"),
                bpa: Some([false, true, false, false]),
                ..base("acl-ignored")
            });
            specs.push(Spec { canned_acl: Some("public-read"), owner_enforced: true, ..base("acls-disabled") });
        }
    }
    // Every block-public-access combination that matters, each default encryption type,
    // replication inside and outside the organization, a policy (undecided until analysed).
    let extra = |account, region, name: &str| Spec { account, region, name: name.to_owned(), ..Default::default() };
    specs.push(Spec {
        canned_acl: Some("public-read"),
        bpa: Some([true, false, false, false]),
        ..extra(A, "us-east-1", "estate-a-block-acls-only")
    });
    specs.push(Spec {
        canned_acl: Some("public-read"),
        bpa: Some([true, true, true, true]),
        ..extra(A, "us-east-1", "estate-a-bpa-all")
    });
    specs.push(Spec { encryption: Some(("aws:kms:dsse", Some("dsse-key"))), ..extra(B, "eu-west-1", "estate-b-dsse") });
    specs.push(Spec {
        versioning: true,
        replicate_to: vec![B],
        ..extra(A, "eu-west-1", "estate-a-replicated-internal")
    });
    specs.push(Spec {
        versioning: true,
        replicate_to: vec![B, OUTSIDE],
        ..extra(A, "eu-west-1", "estate-a-replicated-external")
    });
    specs.push(Spec { policy: true, ..extra(B, "us-east-1", "estate-b-policy") });
    specs.push(Spec {
        policy: true,
        bpa: Some([false, false, false, true]),
        ..extra(B, "us-east-1", "estate-b-policy-restricted")
    });
    specs.push(Spec {
        policy: true,
        canned_acl: Some("public-read"),
        ..extra(C, "eu-west-1", "estate-c-policy-and-acl")
    });
    specs
}

async fn seed(moto: &Moto, specs: &[Spec]) -> anyhow::Result<()> {
    for account in [A, B, C] {
        let creds = moto.credentials(account).await?;
        let flags = account_bpa(account);
        if flags != [false; 4] {
            moto.s3control(&creds)
                .put_public_access_block()
                .account_id(account)
                .public_access_block_configuration(public_access_block!(
                    aws_sdk_s3control::types::PublicAccessBlockConfiguration,
                    flags
                ))
                .send()
                .await?;
        }
        for spec in specs.iter().filter(|s| s.account == account) {
            seed_bucket(moto, &creds, spec).await?;
        }
    }
    Ok(())
}

async fn seed_bucket(moto: &Moto, creds: &aws_sdk_s3::config::Credentials, spec: &Spec) -> anyhow::Result<()> {
    let s3 = moto.s3(creds, spec.region);
    let bucket = spec.name.as_str();
    let mut create = s3.create_bucket().bucket(bucket);
    if spec.region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(spec.region))
                .build(),
        );
    }
    create.send().await?;
    if let Some(acl) = spec.canned_acl {
        s3.put_bucket_acl().bucket(bucket).acl(BucketCannedAcl::from(acl)).send().await?;
    }
    if spec.owner_enforced {
        s3.put_bucket_ownership_controls()
            .bucket(bucket)
            .ownership_controls(
                OwnershipControls::builder()
                    .rules(
                        OwnershipControlsRule::builder()
                            .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                            .build()?,
                    )
                    .build()?,
            )
            .send()
            .await?;
    }
    if let Some(flags) = spec.bpa {
        s3.put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(public_access_block!(PublicAccessBlockConfiguration, flags))
            .send()
            .await?;
    }
    if let Some((algorithm, key)) = spec.encryption {
        let mut default = ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::from(algorithm));
        if let Some(key) = key {
            default = default.kms_master_key_id(key);
        }
        s3.put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(
                        ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(default.build()?)
                            .build(),
                    )
                    .build()?,
            )
            .send()
            .await?;
    }
    if spec.versioning {
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await?;
    }
    if !spec.tags.is_empty() {
        let mut tagging = Tagging::builder();
        for (k, v) in &spec.tags {
            tagging = tagging.tag_set(Tag::builder().key(*k).value(*v).build()?);
        }
        s3.put_bucket_tagging().bucket(bucket).tagging(tagging.build()?).send().await?;
    }
    if !spec.replicate_to.is_empty() {
        let destinations: Vec<(String, Option<&str>)> =
            spec.replicate_to.iter().map(|account| (format!("dest-{account}"), Some(*account))).collect();
        let config = replication_config(spec.account, &destinations)?;
        s3.put_bucket_replication().bucket(bucket).replication_configuration(config).send().await?;
    }
    if spec.policy {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/*")}]
        });
        s3.put_bucket_policy().bucket(bucket).policy(policy.to_string()).send().await?;
    }
    Ok(())
}

/// One enabled rule per destination bucket, naming its account or not.
fn replication_config(
    account: &str,
    destinations: &[(String, Option<&str>)],
) -> anyhow::Result<ReplicationConfiguration> {
    let mut config = ReplicationConfiguration::builder().role(format!("arn:aws:iam::{account}:role/replication"));
    for (i, (bucket, owner)) in destinations.iter().enumerate() {
        config = config.rules(
            ReplicationRule::builder()
                .id(format!("rule-{i}"))
                .priority(i as i32 + 1)
                .status(ReplicationRuleStatus::Enabled)
                .filter(ReplicationRuleFilter::builder().prefix("").build())
                .destination(
                    Destination::builder()
                        .bucket(format!("arn:aws:s3:::{bucket}"))
                        .set_account(owner.map(str::to_owned))
                        .build()?,
                )
                .build()?,
        );
    }
    Ok(config.build()?)
}

/// What the rules say about one seeded bucket, computed from the spec alone.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    permission: &'static str,
    readable: bool,
    writable: bool,
    shared: &'static str,
    encryption: &'static str,
    unencrypted_uploads: &'static str,
    replicated_externally: bool,
}

fn expected(spec: &Spec) -> Expected {
    let bucket_bpa = spec.bpa.unwrap_or([false; 4]);
    let account = account_bpa(spec.account);
    let ignore_acls = bucket_bpa[1] || account[1];
    let restrict = bucket_bpa[3] || account[3];
    let acls_apply = !spec.owner_enforced && !ignore_acls;
    let acl_read =
        acls_apply && matches!(spec.canned_acl, Some("public-read" | "public-read-write" | "authenticated-read"));
    let acl_write = acls_apply && spec.canned_acl == Some("public-read-write");
    // The seeded policy grants s3:GetObject to everyone: public read, shared with any account,
    // unless RestrictPublicBuckets confines it to the owner's account.
    let policy_public = spec.policy && !restrict;
    let permission = if acl_read || acl_write || policy_public { "PUBLIC" } else { "NOT_PUBLIC" };
    let shared = if acl_read || acl_write || policy_public { "EXTERNAL" } else { "NOT_SHARED" };
    Expected {
        permission,
        readable: acl_read || policy_public,
        writable: acl_write,
        shared,
        encryption: match spec.encryption {
            None => "NONE",
            Some((alg, _)) => alg,
        },
        unencrypted_uploads: "TRUE",
        replicated_externally: spec.replicate_to.iter().any(|a| ![A, B, C].contains(a)),
    }
}

fn expected_stats(specs: &[Spec]) -> Value {
    let mut n: BTreeMap<&str, i64> = BTreeMap::new();
    for spec in specs {
        let e = expected(spec);
        let mut inc = |k: &'static str| *n.entry(k).or_default() += 1;
        inc("bucketCount");
        match e.permission {
            "PUBLIC" => inc("publiclyAccessible"),
            "UNKNOWN" => inc("permissionUnknown"),
            _ => {}
        }
        if e.readable {
            inc("publiclyReadable");
        }
        if e.writable {
            inc("publiclyWritable");
        }
        inc(match e.encryption {
            "NONE" => "unencrypted",
            "AES256" => "s3Managed",
            _ => "kmsManaged",
        });
        inc(if e.unencrypted_uploads == "TRUE" { "allowsUnencrypted" } else { "uploadsUnknown" });
        inc(match e.shared {
            "EXTERNAL" => "external",
            "UNKNOWN" => "sharedUnknown",
            _ => "notShared",
        });
    }
    let g = |k: &str| n.get(k).copied().unwrap_or(0);
    json!({
        "bucketCount": g("bucketCount"),
        "bucketCountByEffectivePermission": {"publiclyAccessible": g("publiclyAccessible"), "publiclyReadable": g("publiclyReadable"), "publiclyWritable": g("publiclyWritable"), "unknown": g("permissionUnknown")},
        "bucketCountByEncryptionType": {"kmsManaged": g("kmsManaged"), "s3Managed": g("s3Managed"), "unencrypted": g("unencrypted"), "unknown": 0},
        "bucketCountByObjectEncryptionRequirement": {"allowsUnencryptedObjectUploads": g("allowsUnencrypted"), "deniesUnencryptedObjectUploads": 0, "unknown": g("uploadsUnknown")},
        "bucketCountBySharedAccessType": {"external": g("external"), "internal": 0, "notShared": g("notShared"), "unknown": g("sharedUnknown")},
        "objectCount": 0,
        "sizeInBytes": 0,
    })
}

/// Every member has completed a refresh of every Region.
fn all_refreshed(admin: &Admin, token: Option<&str>, accounts: &[&str]) -> anyhow::Result<bool> {
    let members = admin.ctl_json(token, &["members"])?;
    let done = accounts.iter().all(|account| {
        members["members"].as_array().into_iter().flatten().any(|m| {
            m["accountId"] == *account
                && m["regions"]
                    .as_array()
                    .is_some_and(|r| r.len() == 2 && r.iter().all(|r| !r["lastUpdated"].is_null()))
        })
    });
    Ok(done)
}

fn stats_subset(stats: &Value) -> Value {
    let keys = [
        "bucketCount",
        "bucketCountByEffectivePermission",
        "bucketCountByEncryptionType",
        "bucketCountByObjectEncryptionRequirement",
        "bucketCountBySharedAccessType",
        "objectCount",
        "sizeInBytes",
    ];
    Value::Object(keys.iter().map(|k| (k.to_string(), stats[*k].clone())).collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn organization_inventory_matches_the_seeding() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let specs = org_specs();
    assert!(specs.len() >= 30, "the scenario needs at least 30 buckets");
    seed(&moto, &specs).await?;
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path());
    let admin = Admin::start(&dir.path().join("data"), Some(&config))?;
    let mut agents = Vec::new();
    for account in [A, B, C] {
        let creds = moto.credentials(account).await?;
        agents.push(Agent::start(&admin, &moto, &creds, Some(&agent_token(account)), &REGIONS, &[])?);
    }
    let token = Some(CLIENT_TOKEN);
    eventually(Duration::from_secs(120), "every member to complete its first refresh", || async {
        Ok(all_refreshed(&admin, token, &[A, B, C])?.then_some(()))
    })
    .await?;

    // Policies are analysed off the ingestion path; wait until every verdict has landed.
    let _ = eventually(Duration::from_secs(60), "every policy to be analysed", || async {
        let stats = admin.ctl_json(token, &["stats"])?;
        Ok((stats_subset(&stats) == expected_stats(&specs)).then_some(()))
    })
    .await;
    let listed = admin.ctl_json(token, &["buckets", "--all", "--max-results", "7", "--sort", "bucketName"])?;
    let buckets = listed["buckets"].as_array().expect("buckets array");
    let names: Vec<&str> = buckets.iter().map(|b| b["bucketName"].as_str().unwrap()).collect();
    let mut expected_names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    expected_names.sort();
    assert_eq!(names, expected_names, "every seeded bucket, once, sorted by name across pages");

    for spec in &specs {
        let b = buckets.iter().find(|b| b["bucketName"] == spec.name.as_str()).unwrap();
        let e = expected(spec);
        let ctx = &spec.name;
        assert_eq!(b["accountId"], spec.account, "{ctx}");
        assert_eq!(b["region"], spec.region, "{ctx}");
        assert_eq!(b["bucketArn"], format!("arn:aws:s3:::{}", spec.name), "{ctx}");
        assert_eq!(b["publicAccess"]["effectivePermission"], e.permission, "{ctx}");
        assert_eq!(b["sharedAccess"], e.shared, "{ctx}");
        assert_eq!(b["serverSideEncryption"]["type"], e.encryption, "{ctx}");
        assert_eq!(b["serverSideEncryption"]["kmsMasterKeyId"], json!(spec.encryption.and_then(|(_, k)| k)), "{ctx}");
        assert_eq!(b["allowsUnencryptedObjectUploads"], e.unencrypted_uploads, "{ctx}");
        assert_eq!(b["versioning"], spec.versioning, "{ctx}");
        assert_eq!(b["objectCount"], 0, "{ctx}: empty buckets hold zero objects");
        assert_eq!(b["objectStatisticsSource"], "FULL", "{ctx}");
        let tags: BTreeSet<(String, String)> = b["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["key"].as_str().unwrap().to_owned(), t["value"].as_str().unwrap().to_owned()))
            .collect();
        let want: BTreeSet<(String, String)> = spec.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(tags, want, "{ctx}");
        let replication = &b["replicationDetails"];
        assert_eq!(replication["replicated"], !spec.replicate_to.is_empty(), "{ctx}");
        assert_eq!(replication["replicatedExternally"], e.replicated_externally, "{ctx}");
        let mut accounts: Vec<&str> = spec.replicate_to.clone();
        accounts.sort();
        assert_eq!(replication["replicationAccounts"], json!(accounts), "{ctx}");
        let perms = &b["publicAccess"]["permissionConfiguration"];
        let [acls, ignore, policy, restrict] = spec.bpa.unwrap_or([false; 4]);
        assert_eq!(
            perms["bucketLevelPermissions"]["blockPublicAccess"],
            json!({"blockPublicAcls": acls, "ignorePublicAcls": ignore, "blockPublicPolicy": policy, "restrictPublicBuckets": restrict}),
            "{ctx}"
        );
        let [acls, ignore, policy, restrict] = account_bpa(spec.account);
        assert_eq!(
            perms["accountLevelPermissions"]["blockPublicAccess"],
            json!({"blockPublicAcls": acls, "ignorePublicAcls": ignore, "blockPublicPolicy": policy, "restrictPublicBuckets": restrict}),
            "{ctx}"
        );
        let acl = &perms["bucketLevelPermissions"]["accessControlList"];
        let grants_read = !spec.owner_enforced && spec.canned_acl.is_some();
        assert_eq!(acl["allowsPublicReadAccess"], grants_read, "{ctx}: the ACL as written");
        assert_eq!(
            acl["allowsPublicWriteAccess"],
            !spec.owner_enforced && spec.canned_acl == Some("public-read-write"),
            "{ctx}"
        );
        if !spec.policy {
            let flags = &perms["bucketLevelPermissions"]["bucketPolicy"];
            assert_eq!(flags, &json!({"allowsPublicReadAccess": false, "allowsPublicWriteAccess": false}), "{ctx}");
            assert!(b["s3PolicyStatusPublic"].is_null(), "no policy, no policy status: {ctx}");
        }
        if spec.policy {
            let policy = &perms["bucketLevelPermissions"]["bucketPolicy"];
            assert_eq!(policy, &json!({"allowsPublicReadAccess": true, "allowsPublicWriteAccess": false}), "{ctx}");
            let witnessed = b["policyWitnesses"].as_array().unwrap().iter().any(|w| w["question"] == "publicRead");
            assert!(witnessed, "{ctx}: a public verdict comes with a witness: {b}");
        }
    }

    let stats = admin.ctl_json(token, &["stats"])?;
    assert_eq!(stats_subset(&stats), expected_stats(&specs), "organization statistics");
    assert!(stats["lastUpdated"].is_string(), "lastUpdated is set once every member has refreshed");
    let only_c: Vec<Spec> = specs.iter().filter(|s| s.account == C).cloned().collect();
    let stats_c = admin.ctl_json(token, &["stats", "--account-id", C])?;
    assert_eq!(stats_subset(&stats_c), expected_stats(&only_c), "statistics of account C");

    // Macie's criteria through estatectl: exactly the public buckets of account A.
    let public_a = admin.ctl_json(
        token,
        &[
            "buckets",
            "--all",
            "--where",
            "publicAccess.effectivePermission=PUBLIC",
            "--where",
            &format!("accountId={A}"),
        ],
    )?;
    let got: BTreeSet<&str> =
        public_a["buckets"].as_array().unwrap().iter().map(|b| b["bucketName"].as_str().unwrap()).collect();
    let want: BTreeSet<&str> = specs
        .iter()
        .filter(|s| s.account == A && expected(s).permission == "PUBLIC")
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(got, want);
    // A client asking for nonsense gets a clear error.
    let err = admin.ctl(token, &["buckets", "--where", "colour=blue"]).unwrap_err();
    assert!(format!("{err:#}").contains("unknown bucket property `colour`"), "{err:#}");
    drop(agents);
    Ok(())
}

fn comparable(mut buckets: Value) -> Value {
    for b in buckets.as_array_mut().into_iter().flatten() {
        b.as_object_mut().unwrap().remove("lastUpdated");
    }
    buckets
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_administrator_mid_ingestion_loses_and_doubles_nothing() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    let specs: Vec<Spec> = (0..300u32)
        .map(|i| Spec {
            account: A,
            region: if i.is_multiple_of(3) { "eu-west-1" } else { "us-east-1" },
            name: format!("estate-kill-{i:03}"),
            canned_acl: (i.is_multiple_of(7)).then_some("public-read"),
            encryption: (i.is_multiple_of(5)).then_some(("AES256", None)),
            ..Default::default()
        })
        .collect();
    for spec in &specs {
        seed_bucket(&moto, &creds, spec).await?;
    }
    let dir = tempfile::tempdir()?;
    let mut killed = Admin::start(&dir.path().join("killed"), None)?;
    let steady = Admin::start(&dir.path().join("steady"), None)?;
    let _slow_agent = Agent::start(&killed, &moto, &creds, None, &REGIONS, &["--concurrency", "2"])?;
    let _agent = Agent::start(&steady, &moto, &creds, None, &REGIONS, &[])?;

    // Kill as soon as some, but not all, buckets are in.
    let seen = eventually(Duration::from_secs(60), "ingestion to start", || async {
        let count = killed.ctl_json(None, &["stats"])?["bucketCount"].as_i64().unwrap_or(0);
        Ok((count > 0).then_some(count))
    })
    .await?;
    killed.kill_and_restart()?;
    assert!(seen < specs.len() as i64, "the administrator was killed mid-ingestion ({seen} of {} in)", specs.len());

    for admin in [&killed, &steady] {
        eventually(Duration::from_secs(120), "the refresh to complete", || async {
            let done = all_refreshed(admin, None, &[A])?;
            let count = admin.ctl_json(None, &["stats"])?["bucketCount"].as_i64().unwrap_or(0);
            Ok((done && count == specs.len() as i64).then_some(()))
        })
        .await?;
    }
    let stats_killed = stats_subset(&killed.ctl_json(None, &["stats"])?);
    assert_eq!(stats_killed, stats_subset(&steady.ctl_json(None, &["stats"])?));
    assert_eq!(stats_killed, expected_stats(&specs));
    let all = ["buckets", "--all", "--max-results", "1000"];
    assert_eq!(
        comparable(killed.ctl_json(None, &all)?["buckets"].take()),
        comparable(steady.ctl_json(None, &all)?["buckets"].take())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_cannot_report_for_another_account() -> anyhow::Result<()> {
    use estate_common::pb::{self, agent_service_client::AgentServiceClient, report_request::Body};

    let moto = Moto::start()?;
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path());
    let admin = Admin::start(&dir.path().join("data"), Some(&config))?;

    // Through the protocol: account A's token, a hello for account B.
    let hello_for = |account: &str| pb::ReportRequest {
        seq: 0,
        body: Some(Body::Hello(pb::Hello {
            account_id: account.into(),
            regions: vec!["us-east-1".into()],
            ..Default::default()
        })),
    };
    let attempt = |token: Option<String>, account: &'static str| {
        let url = admin.grpc.clone();
        let hello = hello_for(account);
        async move {
            let mut client = AgentServiceClient::connect(url).await?;
            let mut request = tonic::Request::new(tokio_stream::iter(vec![hello]));
            if let Some(token) = token {
                request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
            }
            anyhow::Ok(client.report(request).await.map(|_| ()))
        }
    };
    let refused = attempt(Some(agent_token(A)), B).await?.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let unknown = attempt(Some("not-a-configured-token".into()), A).await?.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::Unauthenticated);
    let client_as_agent = attempt(Some(CLIENT_TOKEN.into()), A).await?.unwrap_err();
    assert_eq!(client_as_agent.code(), tonic::Code::PermissionDenied);

    // The real agent, with B's credentials and A's token, is refused too, and it is logged.
    let creds_b = moto.credentials(B).await?;
    seed_bucket(&moto, &creds_b, &Spec::plain(B, "estate-b-secret".into())).await?;
    let agent = Agent::start(&admin, &moto, &creds_b, Some(&agent_token(A)), &["us-east-1"], &[])?;
    eventually(Duration::from_secs(30), "the refusal to be logged", || async {
        Ok(admin.process.log_text().contains("refused").then_some(()))
    })
    .await?;
    eventually(Duration::from_secs(30), "the agent to log the refusal", || async {
        Ok(agent.process.log_text().contains("may not report for account `222222222222`").then_some(()))
    })
    .await
    .map_err(|e| e.context(agent.process.log_text()))?;
    let stats = admin.ctl_json(Some(CLIENT_TOKEN), &["stats"])?;
    assert_eq!(stats["bucketCount"], 0, "the store is unchanged");
    let members = admin.ctl_json(Some(CLIENT_TOKEN), &["members"])?;
    assert!(members["members"].as_array().unwrap().iter().all(|m| m["lastContact"].is_null()), "{members}");
    // Clients need a token; agents' tokens do not read.
    assert!(admin.ctl(None, &["stats"]).is_err());
    let err = admin.ctl(Some(&agent_token(A)), &["stats"]).unwrap_err();
    assert!(format!("{err:#}").contains("PermissionDenied") || format!("{err:#}").contains("not a client"), "{err:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn refreshes_pick_up_new_deleted_and_changed_buckets() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let creds = moto.credentials(A).await?;
    for name in ["estate-r-stays", "estate-r-goes", "estate-r-changes"] {
        seed_bucket(&moto, &creds, &Spec::plain(A, name.into())).await?;
    }
    let dir = tempfile::tempdir()?;
    let admin = Admin::start(&dir.path().join("data"), None)?;
    let _agent = Agent::start(&admin, &moto, &creds, None, &["us-east-1"], &["--refresh-interval", "2s"])?;
    let names = |admin: &Admin| -> anyhow::Result<BTreeSet<String>> {
        let listed = admin.ctl_json(None, &["buckets", "--all"])?;
        Ok(listed["buckets"].as_array().unwrap().iter().map(|b| b["bucketName"].as_str().unwrap().to_owned()).collect())
    };
    eventually(Duration::from_secs(60), "the first refresh", || async {
        Ok((names(&admin)?.len() == 3).then_some(()))
    })
    .await?;

    let s3 = moto.s3(&creds, "us-east-1");
    s3.delete_bucket().bucket("estate-r-goes").send().await?;
    seed_bucket(&moto, &creds, &Spec::plain(A, "estate-r-new".into())).await?;
    s3.put_bucket_acl().bucket("estate-r-changes").acl(BucketCannedAcl::PublicRead).send().await?;

    eventually(Duration::from_secs(60), "the next refresh to show the changes", || async {
        let want: BTreeSet<String> =
            ["estate-r-stays", "estate-r-new", "estate-r-changes"].iter().map(|s| s.to_string()).collect();
        let bucket = admin.ctl_json(None, &["bucket", "estate-r-changes"])?;
        Ok((names(&admin)? == want && bucket["publicAccess"]["effectivePermission"] == "PUBLIC").then_some(()))
    })
    .await?;
    let stats = admin.ctl_json(None, &["stats"])?;
    assert_eq!(stats["bucketCount"], 3);
    assert_eq!(stats["bucketCountByEffectivePermission"]["publiclyAccessible"], 1);
    Ok(())
}
