//! The finite universe of S3 action names the analyser reasons about, with their resource
//! types and the read/write classification of SEMANTICS.md.

/// What an action acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ResourceType {
    /// `arn:aws:s3:::BUCKET`.
    Bucket,
    /// `arn:aws:s3:::BUCKET/KEY`.
    Object,
}

/// Bucket-level actions first, then object-level ones (the encoding relies on this order).
const BUCKET_ACTIONS: &[&str] = &[
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:ListBucketMultipartUploads",
    "s3:GetBucketAcl",
    "s3:PutBucketAcl",
    "s3:GetBucketPolicy",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:GetBucketPolicyStatus",
    "s3:GetBucketLocation",
    "s3:GetBucketVersioning",
    "s3:PutBucketVersioning",
    "s3:GetBucketLogging",
    "s3:PutBucketLogging",
    "s3:GetBucketCORS",
    "s3:PutBucketCORS",
    "s3:GetBucketWebsite",
    "s3:PutBucketWebsite",
    "s3:DeleteBucketWebsite",
    "s3:GetBucketTagging",
    "s3:PutBucketTagging",
    "s3:GetBucketNotification",
    "s3:PutBucketNotification",
    "s3:GetBucketPublicAccessBlock",
    "s3:PutBucketPublicAccessBlock",
    "s3:GetBucketOwnershipControls",
    "s3:PutBucketOwnershipControls",
    "s3:GetEncryptionConfiguration",
    "s3:PutEncryptionConfiguration",
    "s3:GetLifecycleConfiguration",
    "s3:PutLifecycleConfiguration",
    "s3:GetReplicationConfiguration",
    "s3:PutReplicationConfiguration",
    "s3:GetBucketObjectLockConfiguration",
    "s3:PutBucketObjectLockConfiguration",
    "s3:GetAccelerateConfiguration",
    "s3:PutAccelerateConfiguration",
    "s3:GetBucketRequestPayment",
    "s3:PutBucketRequestPayment",
    "s3:GetAnalyticsConfiguration",
    "s3:PutAnalyticsConfiguration",
    "s3:GetInventoryConfiguration",
    "s3:PutInventoryConfiguration",
    "s3:GetMetricsConfiguration",
    "s3:PutMetricsConfiguration",
    "s3:GetIntelligentTieringConfiguration",
    "s3:PutIntelligentTieringConfiguration",
    "s3:DeleteBucket",
];

const OBJECT_ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectAcl",
    "s3:GetObjectVersionAcl",
    "s3:GetObjectTagging",
    "s3:GetObjectVersionTagging",
    "s3:GetObjectAttributes",
    "s3:GetObjectVersionAttributes",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
    "s3:GetObjectTorrent",
    "s3:ListMultipartUploadParts",
    "s3:PutObject",
    "s3:PutObjectAcl",
    "s3:PutObjectVersionAcl",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging",
    "s3:AbortMultipartUpload",
    "s3:RestoreObject",
    "s3:ReplicateObject",
    "s3:ReplicateDelete",
    "s3:ReplicateTags",
    "s3:ObjectOwnerOverrideToBucketOwner",
    "s3:BypassGovernanceRetention",
];

/// Number of actions in the universe.
pub fn count() -> usize {
    BUCKET_ACTIONS.len() + OBJECT_ACTIONS.len()
}

/// Number of bucket-level actions; indices at or above it are object-level.
pub fn bucket_count() -> usize {
    BUCKET_ACTIONS.len()
}

/// The name of action `i`.
pub fn name(i: usize) -> &'static str {
    if i < BUCKET_ACTIONS.len() {
        BUCKET_ACTIONS[i]
    } else {
        OBJECT_ACTIONS[i - BUCKET_ACTIONS.len()]
    }
}

/// The resource type of action `i`.
pub fn resource_type(i: usize) -> ResourceType {
    if i < BUCKET_ACTIONS.len() {
        ResourceType::Bucket
    } else {
        ResourceType::Object
    }
}

/// The index of a (case-insensitive) action name.
pub fn index_of(action: &str) -> Option<usize> {
    (0..count()).find(|&i| name(i).eq_ignore_ascii_case(action))
}

/// Read actions: `s3:Get*`, `s3:List*`.
pub fn is_read(action: &str) -> bool {
    let a = action.to_ascii_lowercase();
    a.starts_with("s3:get") || a.starts_with("s3:list")
}

/// Write actions as SEMANTICS.md lists them.
pub fn is_write(action: &str) -> bool {
    let a = action.to_ascii_lowercase();
    a.starts_with("s3:put")
        || a.starts_with("s3:delete")
        || matches!(
            a.as_str(),
            "s3:abortmultipartupload"
                | "s3:restoreobject"
                | "s3:replicateobject"
                | "s3:replicatedelete"
                | "s3:objectowneroverridetobucketowner"
                | "s3:bypassgovernanceretention"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn universe_is_ordered_and_classified() {
        assert!((0..count()).all(|i| (resource_type(i) == ResourceType::Bucket) == (i < bucket_count())));
        assert_eq!(index_of("S3:GETOBJECT").map(name), Some("s3:GetObject"));
        assert!(is_read("s3:ListBucket") && !is_write("s3:ListBucket"));
        assert!(is_write("s3:PutObject") && is_write("s3:AbortMultipartUpload"));
        assert!(!is_read("s3:ReplicateTags") && !is_write("s3:ReplicateTags"));
    }
}
