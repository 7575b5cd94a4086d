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

/// Macie's boolean for a value Estate may not know: `true` (exposed) when unknown. Only in
/// human-readable formats (JSON): binary records (postcard) keep the `Option` as it is, so
/// that their layout, and the unknown, survive.
fn unknown_as_true<S: Serializer>(value: &Option<bool>, serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_bool(value.unwrap_or(true))
    } else {
        value.serialize(serializer)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketPolicy {
    /// Written as Macie's booleans. While Estate's analysis of the policy is UNKNOWN (not yet
    /// run, or undecided), the judge sets S3's own `PolicyStatus.IsPublic` for both, or `true`
    /// when that was not read either, and says so in `policyUnknownReasons`; `None` (only in
    /// findings stored before that) is written `true`.
    #[serde(serialize_with = "unknown_as_true")]
    pub allows_public_read_access: Option<bool>,
    #[serde(serialize_with = "unknown_as_true")]
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
    /// `None` when a destination's owner is not known. Written as Macie's boolean all the same:
    /// `true` then (a bucket in no inventory Estate holds is taken to be outside), with
    /// `unknown_reason` saying why.
    #[serde(serialize_with = "unknown_as_true")]
    pub replicated_externally: Option<bool>,
    pub replication_accounts: Vec<String>,
    /// Estate's addition: why `replicated_externally` is not known, and was taken as `true`.
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

/// Whether automated sensitive data discovery monitors a bucket (Macie's
/// `automatedDiscoveryMonitoringStatus`); Estate runs no discovery, so never `Monitored`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AutomatedDiscoveryMonitoringStatus {
    Monitored,
    #[default]
    NotMonitored,
}

impl AutomatedDiscoveryMonitoringStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Monitored => "MONITORED",
            Self::NotMonitored => "NOT_MONITORED",
        }
    }

    /// Macie's spelling; anything else is `NotMonitored` (what Estate always is).
    pub fn parse(text: &str) -> Self {
        if text == Self::Monitored.as_str() {
            Self::Monitored
        } else {
            Self::NotMonitored
        }
    }
}

/// Macie's `JobDetails`: which classification jobs cover a bucket. Estate runs no jobs, so
/// both are `FALSE` and the last job is absent, Macie's values for a bucket no job covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDetails {
    pub is_defined_in_job: Tri,
    pub is_monitored_by_job: Tri,
    pub last_job_id: Option<String>,
    pub last_job_run_time: Option<Timestamp>,
}

impl JobDetails {
    /// A bucket no classification job covers.
    pub fn none() -> Self {
        Self {
            is_defined_in_job: Tri::False,
            is_monitored_by_job: Tri::False,
            last_job_id: None,
            last_job_run_time: None,
        }
    }
}

/// Macie's `sensitivityScore` for a bucket that automated discovery never analysed: 1 for an
/// empty bucket, 50 for one with objects; `None` before the objects are counted.
pub fn unanalysed_sensitivity_score(object_count: Option<i64>) -> Option<i32> {
    object_count.map(|n| if n == 0 { 1 } else { 50 })
}

/// Drops every `null` member of every JSON object in `value`, as Macie's API leaves absent
/// fields out. `null`s inside arrays stay (none of Macie's lists holds one).
pub fn without_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(without_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(without_nulls),
        _ => {}
    }
}

/// One bucket, as Macie's `BucketMetadata` describes it. Object fields are absent until the
/// bucket's objects have been counted; for an error bucket only the identifying fields,
/// `errorCode` and `errorMessage` are set (and the fields Macie always gives). As in Macie's
/// API, `estatectl`'s JSON leaves a field without a value out rather than writing `null`: it
/// passes through [`without_nulls`]. (The types themselves serialize every field: those that
/// the administrator's records hold, such as the public access and encryption a finding
/// keeps, must keep their binary layout.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketMetadata {
    pub account_id: String,
    pub allows_unencrypted_object_uploads: Tri,
    pub automated_discovery_monitoring_status: AutomatedDiscoveryMonitoringStatus,
    pub bucket_arn: String,
    pub bucket_created_at: Option<Timestamp>,
    pub bucket_name: String,
    pub classifiable_object_count: Option<i64>,
    pub classifiable_size_in_bytes: Option<i64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub job_details: JobDetails,
    /// Absent: automated discovery never analysed the bucket.
    pub last_automated_discovery_time: Option<Timestamp>,
    pub last_updated: Option<Timestamp>,
    pub object_count: Option<i64>,
    pub object_count_by_encryption_type: Option<ObjectCountByEncryptionType>,
    pub public_access: Option<BucketPublicAccess>,
    pub region: String,
    pub replication_details: Option<ReplicationDetails>,
    pub sensitivity_score: Option<i32>,
    pub server_side_encryption: Option<BucketServerSideEncryption>,
    pub shared_access: SharedAccess,
    pub size_in_bytes: Option<i64>,
    pub size_in_bytes_compressed: Option<i64>,
    /// Absent for an error bucket, whose tags could not be read.
    pub tags: Option<Vec<Tag>>,
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
    /// Region; `last_updated` is the earliest over the others.
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
    /// Estate's addition: who reports for the account now (each agent or hub with a report
    /// stream open).
    pub reported_by: Vec<String>,
    /// Estate's addition: why its agent or hub cannot read the account (a role it cannot
    /// assume, say), as the last hello said; absent when it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
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
    fn absent_fields_are_left_out_at_every_depth_and_lists_keep_their_items() {
        let mut v = serde_json::json!({"a": null, "b": {"c": null, "d": 1}, "e": [{"f": null}, null], "g": []});
        without_nulls(&mut v);
        assert_eq!(v, serde_json::json!({"b": {"d": 1}, "e": [{}, null], "g": []}));
    }

    /// JSON says `true` for an unknown; a binary record keeps the unknown, in the layout
    /// records had before (an `Option<bool>`).
    #[test]
    fn unknowns_are_macies_true_in_json_and_stay_unknown_in_records() {
        let policy = BucketPolicy { allows_public_read_access: None, allows_public_write_access: Some(false) };
        let json = serde_json::to_value(policy).unwrap();
        assert_eq!(json, serde_json::json!({"allowsPublicReadAccess": true, "allowsPublicWriteAccess": false}));
        let record = postcard::to_allocvec(&policy).unwrap();
        let as_before: (Option<bool>, Option<bool>) = postcard::from_bytes(&record).unwrap();
        assert_eq!(as_before, (None, Some(false)));
        assert_eq!(postcard::from_bytes::<BucketPolicy>(&record).unwrap(), policy);
    }

    #[test]
    fn an_unanalysed_bucket_scores_as_macie_says() {
        assert_eq!(unanalysed_sensitivity_score(None), None);
        assert_eq!(unanalysed_sensitivity_score(Some(0)), Some(1));
        assert_eq!(unanalysed_sensitivity_score(Some(7)), Some(50));
    }

    #[test]
    fn kleene_logic() {
        assert_eq!(Tri::Unknown.and(Tri::False), Tri::False);
        assert_eq!(Tri::Unknown.or(Tri::True), Tri::True);
        assert_eq!(Tri::Unknown.and(Tri::True), Tri::Unknown);
        assert_eq!(!Tri::True, Tri::False);
    }
}
