//! Policy findings: Macie's six types and severities, what caused a finding, and the
//! Macie-shaped JSON view that `estatectl` and the dashboard print.

use serde::{Deserialize, Serialize};

use crate::macie::Timestamp;
use crate::model::{AccountId, BucketKey, Region, UnixMillis};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FindingType {
    S3BucketPublic,
    S3BucketSharedExternally,
    S3BucketReplicatedExternally,
    S3BlockPublicAccessDisabled,
    S3BucketSharedWithCloudFront,
    S3BucketEncryptionDisabled,
}

impl FindingType {
    pub const ALL: [FindingType; 6] = [
        Self::S3BucketPublic,
        Self::S3BucketSharedExternally,
        Self::S3BucketReplicatedExternally,
        Self::S3BlockPublicAccessDisabled,
        Self::S3BucketSharedWithCloudFront,
        Self::S3BucketEncryptionDisabled,
    ];

    /// Macie's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S3BucketPublic => "Policy:IAMUser/S3BucketPublic",
            Self::S3BucketSharedExternally => "Policy:IAMUser/S3BucketSharedExternally",
            Self::S3BucketReplicatedExternally => "Policy:IAMUser/S3BucketReplicatedExternally",
            Self::S3BlockPublicAccessDisabled => "Policy:IAMUser/S3BlockPublicAccessDisabled",
            Self::S3BucketSharedWithCloudFront => "Policy:IAMUser/S3BucketSharedWithCloudFront",
            Self::S3BucketEncryptionDisabled => "Policy:IAMUser/S3BucketEncryptionDisabled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Macie's severity: (description, score).
    pub fn severity(self) -> (&'static str, i64) {
        match self {
            Self::S3BucketSharedWithCloudFront => ("Medium", 2),
            Self::S3BucketEncryptionDisabled => ("Low", 1),
            _ => ("High", 3),
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::S3BucketPublic => "The S3 bucket is publicly accessible",
            Self::S3BucketSharedExternally => "The S3 bucket is shared with an AWS account outside the organization",
            Self::S3BucketReplicatedExternally => "The S3 bucket replicates to an AWS account outside the organization",
            Self::S3BlockPublicAccessDisabled => "Block public access settings are disabled for the S3 bucket",
            Self::S3BucketSharedWithCloudFront => "The S3 bucket is shared with a CloudFront OAI or OAC",
            Self::S3BucketEncryptionDisabled => {
                "Default encryption is disabled or reset to the S3 default for the S3 bucket"
            }
        }
    }
}

/// What made a bucket's state change: a CloudTrail event, or a refresh that found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// The CloudTrail event name, or `daily refresh`.
    pub api: String,
    pub event_time: UnixMillis,
    pub actor: Option<String>,
    pub actor_type: Option<String>,
    pub event_id: Option<String>,
}

impl Cause {
    pub const REFRESH: &'static str = "daily refresh";

    pub fn refresh(at: UnixMillis) -> Self {
        Self { api: Self::REFRESH.to_owned(), event_time: at, actor: None, actor_type: None, event_id: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub kind: FindingType,
    pub account_id: AccountId,
    pub region: Region,
    pub bucket_name: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub count: i64,
    pub archived: bool,
    pub first_action: Cause,
    pub last_action: Cause,
    /// Increases with every change of any finding.
    pub sequence: u64,
}

impl Finding {
    /// The bucket the finding is about.
    pub fn bucket(&self) -> BucketKey {
        BucketKey::new(self.account_id.clone(), self.region.clone(), self.bucket_name.clone())
    }
}

impl Finding {
    /// Macie's `Finding` shape (the members a policy finding has).
    pub fn to_macie_json(&self) -> serde_json::Value {
        let (description, score) = self.kind.severity();
        let iso = |ms| Timestamp(ms).to_iso8601();
        let identity = |cause: &Cause| {
            serde_json::json!({
                "type": cause.actor_type,
                "arn": cause.actor,
            })
        };
        serde_json::json!({
            "id": self.id,
            "type": self.kind.as_str(),
            "category": "POLICY",
            "title": self.kind.title(),
            "severity": {"description": description, "score": score},
            "accountId": self.account_id,
            "region": self.region,
            "partition": "aws",
            "resourcesAffected": {"s3Bucket": {
                "name": self.bucket_name,
                "arn": format!("arn:aws:s3:::{}", self.bucket_name),
            }},
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "count": self.count,
            "archived": self.archived,
            "sample": false,
            "policyDetails": {
                "action": {
                    "actionType": "AWS_API_CALL",
                    "apiCallDetails": {
                        "api": self.last_action.api,
                        "apiServiceName": "s3.amazonaws.com",
                        "firstSeen": iso(self.first_action.event_time),
                        "lastSeen": iso(self.last_action.event_time),
                    },
                },
                "actor": {"userIdentity": identity(&self.last_action)},
            },
            "sequence": self.sequence,
        })
    }
}
