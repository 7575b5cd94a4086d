//! Macie-shaped views: bucket metadata, statistics and members, serialized with the exact
//! field names and enum strings of Amazon Macie's API so that scripts written for Macie read
//! Estate's JSON.

use serde::{Deserialize, Serialize, Serializer};

use crate::model::{BlockPublicAccess, Tag, UnixMillis};
pub use crate::objects::{ObjectCountByEncryptionType, ObjectLevelStatistics};

/// A timestamp that serializes as ISO 8601 in UTC, as Macie's API does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct Timestamp(pub UnixMillis);

impl Timestamp {
    pub fn to_iso8601(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(at) => at.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| self.0.to_string()),
            Err(_) => self.0.to_string(),
        }
    }

    /// `None` for the protobuf default (0 = never).
    pub fn from_millis(ms: UnixMillis) -> Option<Self> {
        (ms != 0).then_some(Self(ms))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_iso8601())
    }
}

pub use estate_types::Tri;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EffectivePermission {
    Public,
    NotPublic,
    Unknown,
}

impl EffectivePermission {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Public => "PUBLIC",
            Self::NotPublic => "NOT_PUBLIC",
            Self::Unknown => "UNKNOWN",
        }
    }
}

pub use estate_types::SharedAccess;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EncryptionType {
    #[serde(rename = "NONE")]
    None,
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    AwsKms,
    #[serde(rename = "aws:kms:dsse")]
    AwsKmsDsse,
}

impl EncryptionType {
    /// Maps S3's SSEAlgorithm; `None` for algorithms Macie has no name for.
    pub fn from_s3_algorithm(algorithm: &str) -> Option<Self> {
        match algorithm {
            "AES256" => Some(Self::Aes256),
            "aws:kms" => Some(Self::AwsKms),
            "aws:kms:dsse" => Some(Self::AwsKmsDsse),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Aes256 => "AES256",
            Self::AwsKms => "aws:kms",
            Self::AwsKmsDsse => "aws:kms:dsse",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessControlList {
    pub allows_public_read_access: bool,
    pub allows_public_write_access: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketPolicy {
    /// `null` when the policy has not been, or could not be, decided.
    pub allows_public_read_access: Option<bool>,
    pub allows_public_write_access: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketLevelPermissions {
    pub access_control_list: Option<AccessControlList>,
    pub block_public_access: BlockPublicAccess,
    pub bucket_policy: Option<BucketPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountLevelPermissions {
    /// `null` when the account's settings could not be read.
    pub block_public_access: Option<BlockPublicAccess>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketPermissionConfiguration {
    pub account_level_permissions: AccountLevelPermissions,
    pub bucket_level_permissions: BucketLevelPermissions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketPublicAccess {
    pub effective_permission: EffectivePermission,
    pub permission_configuration: Option<BucketPermissionConfiguration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDetails {
    pub replicated: bool,
    /// `null` when a destination's owner is not known.
    pub replicated_externally: Option<bool>,
    pub replication_accounts: Vec<String>,
    /// Estate's addition: why `replicated_externally` is `null`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unknown_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketServerSideEncryption {
    pub kms_master_key_id: Option<String>,
    /// `null` for an algorithm Macie has no name for.
    #[serde(rename = "type")]
    pub kind: Option<EncryptionType>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyValuePair<'a> {
    pub key: &'a str,
    pub value: &'a str,
}

/// One bucket, as Macie's `BucketMetadata` describes it. Object fields are `null` until the
/// bucket's objects have been counted; for an error bucket only the identifying fields,
/// `errorCode` and `errorMessage` are set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketMetadata {
    pub account_id: String,
    pub allows_unencrypted_object_uploads: Tri,
    pub bucket_arn: String,
    pub bucket_created_at: Option<Timestamp>,
    pub bucket_name: String,
    pub classifiable_object_count: Option<i64>,
    pub classifiable_size_in_bytes: Option<i64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub last_updated: Option<Timestamp>,
    pub object_count: Option<i64>,
    pub object_count_by_encryption_type: Option<ObjectCountByEncryptionType>,
    pub public_access: Option<BucketPublicAccess>,
    pub region: String,
    pub replication_details: Option<ReplicationDetails>,
    pub server_side_encryption: Option<BucketServerSideEncryption>,
    pub shared_access: SharedAccess,
    pub size_in_bytes: Option<i64>,
    pub size_in_bytes_compressed: Option<i64>,
    pub tags: Vec<Tag>,
    pub unclassifiable_object_count: Option<ObjectLevelStatistics>,
    pub unclassifiable_object_size_in_bytes: Option<ObjectLevelStatistics>,
    pub versioning: bool,
    /// Estate's addition: the accounts the bucket is shared with.
    pub shared_with_accounts: Vec<String>,
    /// Estate's addition: S3's own GetBucketPolicyStatus verdict, for comparison.
    pub s3_policy_status_public: Option<bool>,
    /// Estate's addition: how the object statistics were obtained.
    pub object_statistics_source: Option<crate::objects::ObjectStatsSource>,
    /// Estate's addition: objects and bytes per storage class.
    pub usage_by_storage_class: Option<std::collections::BTreeMap<String, crate::objects::Usage>>,
    /// Estate's addition: parts of incomplete multipart uploads included in the counts.
    pub multipart_parts: Option<i64>,
    /// Estate's addition: whether the policy lets a CloudFront OAI or OAC in.
    pub shared_with_cloud_front: Option<bool>,
    /// Estate's addition: for every PUBLIC or shared verdict of the policy, one concrete
    /// request the policy allows.
    pub policy_witnesses: Vec<PolicyWitness>,
    /// Estate's addition: why a policy verdict is UNKNOWN.
    pub policy_unknown_reasons: Vec<String>,
    /// Estate's addition: why the bucket is PUBLIC when that was decided by something other
    /// than Estate's own analysis (S3's `PolicyStatus.IsPublic`, for a policy whose analysis is
    /// UNKNOWN).
    pub public_access_reason: Option<String>,
    /// Estate's addition: the configuration calls that failed for a bucket otherwise read, and
    /// why (what they decide is unknown). Macie's `errorMessage` goes with its `errorCode`
    /// only, so a bucket read in part keeps both null and says so here.
    pub unread_configuration: Option<String>,
}

/// A concrete request that a bucket policy allows: why a verdict is what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyWitness {
    /// The question it answers: `publicRead`, `publicWrite`, `sharedWithAccount:ID`,
    /// `sharedWithCloudFront`, `unencryptedUpload`.
    pub question: String,
    pub principal: String,
    pub principal_account: Option<String>,
    pub action: String,
    pub resource: String,
    /// The condition keys the request carries, and their values.
    pub context: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketCountByEffectivePermission {
    pub publicly_accessible: i64,
    pub publicly_readable: i64,
    pub publicly_writable: i64,
    pub unknown: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketCountByEncryptionType {
    pub kms_managed: i64,
    pub s3_managed: i64,
    pub unencrypted: i64,
    pub unknown: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketCountPolicyAllowsUnencryptedObjectUploads {
    pub allows_unencrypted_object_uploads: i64,
    pub denies_unencrypted_object_uploads: i64,
    pub unknown: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketCountBySharedAccessType {
    pub external: i64,
    pub internal: i64,
    pub not_shared: i64,
    pub unknown: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SensitivityAggregations {
    pub classifiable_size_in_bytes: i64,
    pub publicly_accessible_count: i64,
    pub total_count: i64,
    pub total_size_in_bytes: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketStatisticsBySensitivity {
    pub classification_error: SensitivityAggregations,
    pub not_classified: SensitivityAggregations,
    pub not_sensitive: SensitivityAggregations,
    pub sensitive: SensitivityAggregations,
}

/// Macie's `GetBucketStatisticsResponse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketStatistics {
    pub bucket_count: i64,
    pub bucket_count_by_effective_permission: BucketCountByEffectivePermission,
    pub bucket_count_by_encryption_type: BucketCountByEncryptionType,
    pub bucket_count_by_object_encryption_requirement: BucketCountPolicyAllowsUnencryptedObjectUploads,
    pub bucket_count_by_shared_access_type: BucketCountBySharedAccessType,
    pub bucket_statistics_by_sensitivity: BucketStatisticsBySensitivity,
    pub classifiable_object_count: i64,
    pub classifiable_size_in_bytes: i64,
    pub last_updated: Option<Timestamp>,
    pub object_count: i64,
    pub size_in_bytes: i64,
    pub size_in_bytes_compressed: i64,
    pub unclassifiable_object_count: ObjectLevelStatistics,
    pub unclassifiable_object_size_in_bytes: ObjectLevelStatistics,
    /// Estate's own: accounts of the organization (or configured) no agent ever connected for.
    pub members_without_agent: i64,
    /// Estate's own: members that should report and have not completed a refresh of every
    /// Region; `last_updated` is `None` while it is non-zero.
    pub members_pending: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionState {
    Connected,
    Disconnected,
}

/// How an account relates to the organization and to Estate (after Macie's
/// `relationshipStatus`).
/// Spelled as Macie's `relationshipStatus` (`Enabled`, `AccountSuspended`, `Removed`); Estate's
/// own `NoAgent` in the same style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum MemberStatus {
    /// An agent has connected for the account.
    Enabled,
    /// An organization (or configured) account no agent has ever connected for.
    #[default]
    NoAgent,
    /// AWS Organizations reports the account suspended or closing.
    AccountSuspended,
    /// The account reported or was configured, but is no longer in the organization.
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionStatus {
    pub region: String,
    pub last_updated: Option<Timestamp>,
    pub generation: u64,
    pub bucket_count: u64,
    pub refresh_done: u64,
    pub refresh_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub account_id: String,
    pub regions: Vec<RegionStatus>,
    pub connection_state: ConnectionState,
    pub last_contact: Option<Timestamp>,
    pub last_updated: Option<Timestamp>,
    pub agent_version: String,
    pub canonical_user_id: String,
    pub bucket_count: u64,
    pub relationship_status: MemberStatus,
}

/// Why a bucket is in the posture report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PostureReason {
    Public,
    SharedExternally,
    SharedInternally,
    ReplicatedExternally,
    AllowsUnencryptedUploads,
}

impl PostureReason {
    /// As `estatectl posture` prints it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::SharedExternally => "shared externally",
            Self::SharedInternally => "shared internally",
            Self::ReplicatedExternally => "replicated externally",
            Self::AllowsUnencryptedUploads => "accepts unencrypted uploads",
        }
    }
}

/// One bucket of the posture report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostureBucket {
    pub account_id: String,
    pub region: String,
    pub bucket_name: String,
    pub reasons: Vec<PostureReason>,
    pub effective_permission: EffectivePermission,
    pub shared_access: SharedAccess,
    pub shared_with_accounts: Vec<String>,
    pub shared_internally_with: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_serialize_as_iso8601_utc() {
        let json = serde_json_like(Timestamp(1_700_000_000_123));
        assert_eq!(json, "2023-11-14T22:13:20.123Z");
    }

    fn serde_json_like(ts: Timestamp) -> String {
        ts.to_iso8601()
    }

    #[test]
    fn kleene_logic() {
        assert_eq!(Tri::Unknown.and(Tri::False), Tri::False);
        assert_eq!(Tri::Unknown.or(Tri::True), Tri::True);
        assert_eq!(Tri::Unknown.and(Tri::True), Tri::Unknown);
        assert_eq!(!Tri::True, Tri::False);
    }
}
