//! Reads one bucket's configuration from S3: every call the facts need, concurrently, and no
//! more. Any AccessDenied makes an error bucket naming the denied calls; a bucket deleted in
//! the meantime is skipped; any other failure (after the SDK's retries: throttling, a 5xx, an
//! unparsable response) marks only that call's fields unknown, and the bucket is reported.

use aws_sdk_s3::types as s3;
use aws_sdk_s3::Client;

use estate_common::model::{
    Acl, AclGrant, AclPermission, BlockPublicAccess, BucketConfig, BucketError, BucketErrorCode, BucketFacts,
    BucketKey, BucketState, ConfigCall, DefaultEncryption, Grantee, ObjectOwnership, Replication, ReplicationRule, Tag,
    UnixMillis, UnreadCall,
};

use crate::aws::{classify, optional, CallError};

type Call<T> = Result<Option<T>, CallError>;

/// Reads one bucket's configuration; `None` when the bucket was deleted meanwhile.
pub async fn collect_bucket(
    client: &Client,
    key: BucketKey,
    created_at: UnixMillis,
    read_at: UnixMillis,
) -> Option<BucketFacts> {
    let bucket = key.bucket_name.as_str();
    // Every call names the account that must own the bucket (`ExpectedBucketOwner`): S3
    // answers AccessDenied for a bucket of any other account, so facts read here are always
    // this account's own, whatever bucket name an event or a listing gave.
    let owner = key.account_id.as_str();
    let (tags, versioning, encryption, bpa, acl, ownership, policy, replication) = tokio::join!(
        tags(client, bucket, owner),
        versioning(client, bucket, owner),
        encryption(client, bucket, owner),
        block_public_access(client, bucket, owner),
        acl(client, bucket, owner),
        ownership(client, bucket, owner),
        policy(client, bucket, owner),
        replication(client, bucket, owner),
    );
    let policy_status = match &policy {
        Ok(Some(_)) => policy_status(client, bucket, owner).await,
        _ => Ok(None),
    };

    let mut denied = Vec::new();
    let mut gone = false;
    let mut unread = Vec::new();
    let mut check = |call: ConfigCall, error: Option<&CallError>| match error {
        Some(CallError::AccessDenied(detail)) => denied.push(format!("`{}` ({detail})", call.action())),
        Some(CallError::NoSuchBucket) => gone = true,
        Some(other) => unread.push(UnreadCall { call, error: truncate(&other.to_string(), MAX_ERROR_TEXT) }),
        None => {}
    };
    check(ConfigCall::Tagging, tags.as_ref().err());
    check(ConfigCall::Versioning, versioning.as_ref().err());
    check(ConfigCall::Encryption, encryption.as_ref().err());
    check(ConfigCall::PublicAccessBlock, bpa.as_ref().err());
    check(ConfigCall::Acl, acl.as_ref().err());
    check(ConfigCall::OwnershipControls, ownership.as_ref().err());
    check(ConfigCall::Policy, policy.as_ref().err());
    check(ConfigCall::Replication, replication.as_ref().err());
    check(ConfigCall::PolicyStatus, policy_status.as_ref().err());

    if gone {
        return None;
    }
    if !denied.is_empty() {
        return Some(BucketFacts {
            key,
            created_at,
            read_at,
            state: BucketState::Error(BucketError {
                code: BucketErrorCode::AccessDenied,
                message: format!("access denied to {}", denied.join(", ")),
            }),
        });
    }
    if !unread.is_empty() {
        let calls: Vec<_> = unread.iter().map(|u| format!("`{}`: {}", u.call.action(), u.error)).collect();
        tracing::warn!(bucket = %key.bucket_name, calls = %calls.join("; "), "some calls failed; their fields are unknown");
    }
    let config = BucketConfig {
        tags: tags.ok().flatten().unwrap_or_default(),
        versioning: versioning.ok().flatten().unwrap_or(false),
        default_encryption: encryption.ok().flatten(),
        block_public_access: bpa.ok().flatten(),
        acl: acl.ok().flatten(),
        object_ownership: ownership.ok().flatten(),
        policy: policy.ok().flatten(),
        policy_status_public: policy_status.ok().flatten(),
        replication: replication.ok().flatten(),
        objects: None,
        unread,
    };
    Some(BucketFacts { key, created_at, read_at, state: BucketState::Readable(Box::new(config)) })
}

/// The longest error text sent for one unread call (the administrator refuses longer).
const MAX_ERROR_TEXT: usize = 1000;

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end - 3])
}

async fn tags(client: &Client, bucket: &str, owner: &str) -> Call<Vec<Tag>> {
    let out = optional(
        client.get_bucket_tagging().bucket(bucket).expected_bucket_owner(owner).send().await.map_err(classify),
    )?;
    Ok(out.map(|o| o.tag_set().iter().map(|t| Tag { key: t.key().to_owned(), value: t.value().to_owned() }).collect()))
}

async fn versioning(client: &Client, bucket: &str, owner: &str) -> Call<bool> {
    let out = optional(
        client.get_bucket_versioning().bucket(bucket).expected_bucket_owner(owner).send().await.map_err(classify),
    )?;
    Ok(out.map(|o| o.status() == Some(&s3::BucketVersioningStatus::Enabled)))
}

async fn encryption(client: &Client, bucket: &str, owner: &str) -> Call<DefaultEncryption> {
    let out = optional(
        client.get_bucket_encryption().bucket(bucket).expected_bucket_owner(owner).send().await.map_err(classify),
    )?;
    Ok(out.and_then(|o| {
        let rule = o.server_side_encryption_configuration()?.rules().first()?;
        let default = rule.apply_server_side_encryption_by_default()?;
        Some(DefaultEncryption {
            algorithm: default.sse_algorithm().as_str().to_owned(),
            kms_master_key_id: default.kms_master_key_id().map(str::to_owned),
        })
    }))
}

async fn block_public_access(client: &Client, bucket: &str, owner: &str) -> Call<BlockPublicAccess> {
    let out = optional(
        client.get_public_access_block().bucket(bucket).expected_bucket_owner(owner).send().await.map_err(classify),
    )?;
    Ok(out.and_then(|o| o.public_access_block_configuration().map(bpa_from_s3)))
}

fn bpa_from_s3(c: &s3::PublicAccessBlockConfiguration) -> BlockPublicAccess {
    BlockPublicAccess {
        block_public_acls: c.block_public_acls().unwrap_or(false),
        ignore_public_acls: c.ignore_public_acls().unwrap_or(false),
        block_public_policy: c.block_public_policy().unwrap_or(false),
        restrict_public_buckets: c.restrict_public_buckets().unwrap_or(false),
    }
}

async fn acl(client: &Client, bucket: &str, owner: &str) -> Call<Acl> {
    let out =
        optional(client.get_bucket_acl().bucket(bucket).expected_bucket_owner(owner).send().await.map_err(classify))?;
    Ok(out.map(|o| Acl {
        owner_canonical_id: o.owner().and_then(|owner| owner.id()).unwrap_or_default().to_owned(),
        grants: o.grants().iter().filter_map(grant_from_s3).collect(),
    }))
}

fn grant_from_s3(grant: &s3::Grant) -> Option<AclGrant> {
    let grantee = grant.grantee()?;
    let grantee = match grantee.r#type() {
        s3::Type::CanonicalUser => Grantee::CanonicalUser(grantee.id()?.to_owned()),
        s3::Type::Group => Grantee::Group(grantee.uri()?.to_owned()),
        s3::Type::AmazonCustomerByEmail => Grantee::Email(grantee.email_address()?.to_owned()),
        _ => return None,
    };
    let permission = match grant.permission()? {
        s3::Permission::Read => AclPermission::Read,
        s3::Permission::Write => AclPermission::Write,
        s3::Permission::ReadAcp => AclPermission::ReadAcp,
        s3::Permission::WriteAcp => AclPermission::WriteAcp,
        s3::Permission::FullControl => AclPermission::FullControl,
        _ => return None,
    };
    Some(AclGrant { grantee, permission })
}

async fn ownership(client: &Client, bucket: &str, owner: &str) -> Call<ObjectOwnership> {
    let out = optional(
        client
            .get_bucket_ownership_controls()
            .bucket(bucket)
            .expected_bucket_owner(owner)
            .send()
            .await
            .map_err(classify),
    )?;
    Ok(out.and_then(|o| {
        let rule = o.ownership_controls()?.rules().first()?;
        match rule.object_ownership() {
            s3::ObjectOwnership::BucketOwnerEnforced => Some(ObjectOwnership::BucketOwnerEnforced),
            s3::ObjectOwnership::BucketOwnerPreferred => Some(ObjectOwnership::BucketOwnerPreferred),
            s3::ObjectOwnership::ObjectWriter => Some(ObjectOwnership::ObjectWriter),
            _ => None,
        }
    }))
}

async fn policy(client: &Client, bucket: &str, owner: &str) -> Call<String> {
    let out = optional(
        client.get_bucket_policy().bucket(bucket).expected_bucket_owner(owner).send().await.map_err(classify),
    )?;
    Ok(out.and_then(|o| o.policy().map(str::to_owned)))
}

async fn policy_status(client: &Client, bucket: &str, owner: &str) -> Call<bool> {
    let out = optional(
        client.get_bucket_policy_status().bucket(bucket).expected_bucket_owner(owner).send().await.map_err(classify),
    )?;
    Ok(out.and_then(|o| o.policy_status().and_then(|s| s.is_public())))
}

async fn replication(client: &Client, bucket: &str, owner: &str) -> Call<Replication> {
    let out = optional(
        client.get_bucket_replication().bucket(bucket).expected_bucket_owner(owner).send().await.map_err(classify),
    )?;
    Ok(out.and_then(|o| {
        let config = o.replication_configuration()?;
        Some(Replication {
            role: config.role().to_owned(),
            rules: config
                .rules()
                .iter()
                .map(|rule| ReplicationRule {
                    id: rule.id().unwrap_or_default().to_owned(),
                    enabled: rule.status() == &s3::ReplicationRuleStatus::Enabled,
                    destination_bucket_arn: rule.destination().map(|d| d.bucket().to_owned()).unwrap_or_default(),
                    destination_account: rule.destination().and_then(|d| d.account()).map(str::to_owned),
                })
                .collect(),
        })
    }))
}

/// Account-level block public access through S3 Control.
pub async fn account_block_public_access(
    client: &aws_sdk_s3control::Client,
    account_id: &str,
) -> estate_common::model::AccountBlockPublicAccess {
    use estate_common::model::AccountBlockPublicAccess as A;
    match client.get_public_access_block().account_id(account_id).send().await.map_err(classify) {
        Ok(out) => match out.public_access_block_configuration() {
            Some(c) => A::Configured(BlockPublicAccess {
                block_public_acls: c.block_public_acls().unwrap_or(false),
                ignore_public_acls: c.ignore_public_acls().unwrap_or(false),
                block_public_policy: c.block_public_policy().unwrap_or(false),
                restrict_public_buckets: c.restrict_public_buckets().unwrap_or(false),
            }),
            None => A::NotConfigured,
        },
        Err(CallError::NotConfigured) => A::NotConfigured,
        Err(error) => A::Unknown(format!("`s3:GetAccountPublicAccessBlock` failed: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_all_expect, error, FakeS3};

    #[tokio::test]
    async fn every_call_names_the_expected_owner() {
        let (client, seen) = FakeS3::client(|_, uri| {
            if uri.contains("?policy") && !uri.contains("policyStatus") {
                (200, br#"{"Version":"2012-10-17","Statement":[]}"#.to_vec())
            } else {
                error(404, "NoSuchTagSet")
            }
        });
        let account = estate_common::model::AccountId::parse("111111111111").unwrap();
        let region = estate_common::model::Region::parse("us-east-1").unwrap();
        let key = BucketKey::new(account, region, "b");
        let facts = collect_bucket(&client, key, 0, 1).await.expect("the bucket is there");
        assert!(matches!(facts.state, BucketState::Readable(_)), "{facts:?}");
        let seen = seen.lock().unwrap();
        // The eight configuration calls and the policy status.
        assert_eq!(assert_all_expect(&seen, "111111111111"), 9, "{seen:#?}");
    }
}
