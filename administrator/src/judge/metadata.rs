//! The Macie-shaped view of one bucket (`BucketMetadata`), from its facts, its judgement and
//! its account's settings.

use estate_common::findings::BucketSnapshot;
use estate_common::macie::{
    unanalysed_sensitivity_score, AccountLevelPermissions, AutomatedDiscoveryMonitoringStatus, BucketLevelPermissions,
    BucketMetadata, BucketPermissionConfiguration, BucketPolicy, BucketPublicAccess, BucketServerSideEncryption,
    EffectivePermission, JobDetails, Timestamp,
};
use estate_common::model::{AccountSettings, BucketFacts, ConfigCall};

use super::{default_encryption_type, Judgement, PUBLIC_BY_ACL_GRANT, PUBLIC_BY_S3_POLICY_STATUS};

/// The bucket's state that a finding records (Macie's `resourcesAffected.s3Bucket`).
pub fn snapshot(facts: &BucketFacts, judgement: &Judgement, account: Option<&AccountSettings>) -> BucketSnapshot {
    let view = metadata(facts, judgement, account, (Vec::new(), Vec::new()));
    BucketSnapshot {
        created_at: facts.created_at,
        owner_id: facts
            .config()
            .and_then(|c| c.acl.as_ref())
            .map(|acl| acl.owner_canonical_id.clone())
            .filter(|id| !id.is_empty()),
        public_access: view.public_access,
        default_encryption: view.server_side_encryption,
        allows_unencrypted_object_uploads: view.allows_unencrypted_object_uploads,
        tags: view.tags.unwrap_or_default(),
    }
}

/// The Macie-shaped view of a bucket; `explanation` holds the policy's witnesses and the
/// reasons for UNKNOWN policy verdicts.
pub fn metadata(
    facts: &BucketFacts,
    judgement: &Judgement,
    account: Option<&AccountSettings>,
    explanation: (Vec<estate_common::macie::PolicyWitness>, Vec<String>),
) -> BucketMetadata {
    let key = &facts.key;
    let mut out = BucketMetadata {
        account_id: key.account_id.to_string(),
        allows_unencrypted_object_uploads: judgement.allows_unencrypted_object_uploads,
        automated_discovery_monitoring_status: AutomatedDiscoveryMonitoringStatus::NotMonitored,
        bucket_arn: key.arn(),
        bucket_created_at: Timestamp::from_millis(facts.created_at),
        bucket_name: key.bucket_name.clone(),
        classifiable_object_count: None,
        classifiable_size_in_bytes: None,
        error_code: None,
        error_message: None,
        job_details: JobDetails::none(),
        last_automated_discovery_time: None,
        last_updated: Timestamp::from_millis(facts.read_at),
        object_count: None,
        object_count_by_encryption_type: None,
        public_access: None,
        region: key.region.to_string(),
        replication_details: None,
        sensitivity_score: None,
        server_side_encryption: None,
        shared_access: judgement.shared_access,
        size_in_bytes: None,
        size_in_bytes_compressed: None,
        tags: None,
        unclassifiable_object_count: None,
        unclassifiable_object_size_in_bytes: None,
        versioning: false,
        shared_with_accounts: judgement.shared_with_accounts.clone(),
        s3_policy_status_public: None,
        object_statistics_source: None,
        usage_by_storage_class: None,
        multipart_parts: None,
        shared_with_cloud_front: None,
        policy_witnesses: Vec::new(),
        policy_unknown_reasons: Vec::new(),
        public_access_reason: None,
        unread_configuration: None,
    };
    match (facts.config(), facts.error()) {
        (Some(config), _) => {
            out.public_access = Some(BucketPublicAccess {
                effective_permission: judgement.effective_permission,
                permission_configuration: Some(BucketPermissionConfiguration {
                    account_level_permissions: AccountLevelPermissions {
                        block_public_access: account.and_then(|a| a.block_public_access.effective()),
                    },
                    bucket_level_permissions: BucketLevelPermissions {
                        access_control_list: judgement.acl,
                        block_public_access: config.block_public_access.unwrap_or_default(),
                        // Macie's flags for a bucket without a policy are both false.
                        bucket_policy: Some(judgement.policy.map_or(
                            BucketPolicy {
                                allows_public_read_access: Some(false),
                                allows_public_write_access: Some(false),
                            },
                            super::PolicyFlags::macie,
                        )),
                    },
                }),
            });
            out.replication_details = judgement.replication.clone();
            if !config.unread.is_empty() {
                let calls: Vec<String> =
                    config.unread.iter().map(|u| format!("`{}` ({})", u.call.action(), u.error)).collect();
                out.unread_configuration =
                    Some(format!("could not read {}; what they say is unknown", calls.join(", ")));
            }
            let kms_master_key_id = (!config.is_unread(ConfigCall::Encryption))
                .then(|| config.default_encryption.as_ref().and_then(|e| e.kms_master_key_id.clone()))
                .flatten();
            out.server_side_encryption =
                Some(BucketServerSideEncryption { kms_master_key_id, kind: default_encryption_type(config) });
            out.tags = (!config.is_unread(ConfigCall::Tagging)).then(|| config.tags.clone());
            out.versioning = config.versioning;
            out.s3_policy_status_public = config.policy_status_public;
            out.public_access_reason = if judgement.public_by_s3_policy_status {
                Some(PUBLIC_BY_S3_POLICY_STATUS.to_owned())
            } else {
                judgement.public_by_acl_grant.then(|| PUBLIC_BY_ACL_GRANT.to_owned())
            };
            out.shared_with_cloud_front = judgement.shared_with_cloud_front.as_bool();
            (out.policy_witnesses, out.policy_unknown_reasons) = explanation;
            if let Some(reason) = judgement.policy.and_then(super::PolicyFlags::stand_in_reason) {
                out.policy_unknown_reasons.push(reason);
            }
            if let Some(o) = &config.objects {
                let t = &o.totals;
                out.object_count = Some(t.object_count);
                out.sensitivity_score = unanalysed_sensitivity_score(out.object_count);
                out.size_in_bytes = Some(t.size_in_bytes);
                out.size_in_bytes_compressed = Some(t.size_in_bytes_compressed);
                out.classifiable_object_count = Some(t.classifiable_object_count);
                out.classifiable_size_in_bytes = Some(t.classifiable_size_in_bytes);
                out.unclassifiable_object_count = Some(t.unclassifiable_object_count);
                out.unclassifiable_object_size_in_bytes = Some(t.unclassifiable_object_size_in_bytes);
                out.object_count_by_encryption_type = Some(o.object_count_by_encryption_type);
                out.object_statistics_source = Some(o.source);
                out.usage_by_storage_class = Some(o.by_storage_class.clone());
                out.multipart_parts = Some(o.multipart_parts);
            }
        }
        (None, Some(error)) => {
            out.error_code = Some(error.code.as_macie_str().to_owned());
            out.error_message = Some(error.message.clone());
            out.public_access = Some(BucketPublicAccess {
                effective_permission: EffectivePermission::Unknown,
                permission_configuration: None,
            });
        }
        (None, None) => {}
    }
    out
}
