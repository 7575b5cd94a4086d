//! The finding properties Macie's finding criteria, sorting and grouping name, and how a
//! finding is matched against them: shared by the findings queries (`read/`) and the findings
//! filters the state applies as findings are raised.

use estate_common::findings::Finding;

use super::{Filterable, Property, QueryError};

/// A finding property that criteria, sorting and grouping may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingProperty {
    Id,
    Category,
    Type,
    Severity,
    SeverityScore,
    AccountId,
    Region,
    BucketName,
    BucketArn,
    BucketCreatedAt,
    TagKey,
    TagValue,
    EffectivePermission,
    EncryptionType,
    AllowsUnencryptedUploads,
    OwnerId,
    ActorType,
    Api,
    ApiServiceName,
    FirstSeen,
    LastSeen,
    IpAddress,
    Archived,
    Sample,
    CreatedAt,
    UpdatedAt,
    Count,
}

/// Every finding property by its Macie name: the one list criteria, sorting, grouping and
/// their error messages read.
const FINDING_PROPERTIES: [(&str, FindingProperty); 27] = [
    ("id", FindingProperty::Id),
    ("category", FindingProperty::Category),
    ("type", FindingProperty::Type),
    ("severity.description", FindingProperty::Severity),
    ("severity.score", FindingProperty::SeverityScore),
    ("accountId", FindingProperty::AccountId),
    ("region", FindingProperty::Region),
    ("resourcesAffected.s3Bucket.name", FindingProperty::BucketName),
    ("resourcesAffected.s3Bucket.arn", FindingProperty::BucketArn),
    ("resourcesAffected.s3Bucket.createdAt", FindingProperty::BucketCreatedAt),
    ("resourcesAffected.s3Bucket.tags.key", FindingProperty::TagKey),
    ("resourcesAffected.s3Bucket.tags.value", FindingProperty::TagValue),
    ("resourcesAffected.s3Bucket.publicAccess.effectivePermission", FindingProperty::EffectivePermission),
    ("resourcesAffected.s3Bucket.defaultServerSideEncryption.encryptionType", FindingProperty::EncryptionType),
    ("resourcesAffected.s3Bucket.allowsUnencryptedObjectUploads", FindingProperty::AllowsUnencryptedUploads),
    ("resourcesAffected.s3Bucket.owner.id", FindingProperty::OwnerId),
    ("policyDetails.actor.userIdentity.type", FindingProperty::ActorType),
    ("policyDetails.action.apiCallDetails.api", FindingProperty::Api),
    ("policyDetails.action.apiCallDetails.apiServiceName", FindingProperty::ApiServiceName),
    ("policyDetails.action.apiCallDetails.firstSeen", FindingProperty::FirstSeen),
    ("policyDetails.action.apiCallDetails.lastSeen", FindingProperty::LastSeen),
    ("policyDetails.actor.ipAddressDetails.ipAddressV4", FindingProperty::IpAddress),
    ("archived", FindingProperty::Archived),
    ("sample", FindingProperty::Sample),
    ("createdAt", FindingProperty::CreatedAt),
    ("updatedAt", FindingProperty::UpdatedAt),
    ("count", FindingProperty::Count),
];

impl FindingProperty {
    /// Macie's `SortCriteria.attributeName` values Estate sorts by.
    pub fn sortable(self) -> bool {
        matches!(
            self,
            Self::UpdatedAt
                | Self::CreatedAt
                | Self::Count
                | Self::SeverityScore
                | Self::Type
                | Self::FirstSeen
                | Self::LastSeen
        )
    }

    pub fn groupable(self) -> bool {
        matches!(self, Self::Type | Self::Severity | Self::BucketName | Self::AccountId)
    }

    /// The names of the properties `keep` accepts, for error messages.
    pub fn names(keep: fn(Self) -> bool) -> String {
        FINDING_PROPERTIES.iter().filter(|(_, p)| keep(*p)).map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
    }
}

impl Property for FindingProperty {
    fn parse(name: &str) -> Option<Self> {
        FINDING_PROPERTIES.iter().find(|(known, _)| *known == name).map(|(_, p)| *p)
    }

    fn unknown(name: &str) -> QueryError {
        QueryError::UnknownFindingField { name: name.to_owned(), known: Self::names(|_| true) }
    }

    fn is_numeric(self) -> bool {
        matches!(
            self,
            Self::SeverityScore
                | Self::CreatedAt
                | Self::UpdatedAt
                | Self::Count
                | Self::FirstSeen
                | Self::LastSeen
                | Self::BucketCreatedAt
        )
    }

    fn allowed(self) -> Option<&'static [&'static str]> {
        match self {
            Self::Archived | Self::Sample => Some(&["true", "false"]),
            Self::Severity => Some(&["High", "Medium", "Low"]),
            Self::Category => Some(&["POLICY", "CLASSIFICATION"]),
            Self::EffectivePermission => Some(&["PUBLIC", "NOT_PUBLIC", "UNKNOWN"]),
            Self::AllowsUnencryptedUploads => Some(&["TRUE", "FALSE", "UNKNOWN"]),
            Self::ActorType => Some(&["AssumedRole", "IAMUser", "FederatedUser", "Root", "AWSAccount", "AWSService"]),
            _ => None,
        }
    }

    fn exact_match(self) -> bool {
        matches!(self, Self::TagKey | Self::TagValue)
    }

    fn takes_prefix(self) -> bool {
        false
    }
}

impl Filterable<FindingProperty> for Finding {
    fn number(&self, property: FindingProperty) -> Option<i64> {
        match property {
            FindingProperty::SeverityScore => Some(self.kind.severity().1),
            FindingProperty::CreatedAt => Some(self.created_at),
            FindingProperty::UpdatedAt => Some(self.updated_at),
            FindingProperty::Count => Some(self.count),
            FindingProperty::FirstSeen => Some(self.first_action.event_time),
            FindingProperty::LastSeen => Some(self.last_action.event_time),
            FindingProperty::BucketCreatedAt => self.bucket_state.as_ref().map(|b| b.created_at),
            _ => None,
        }
    }

    fn any_text(&self, property: FindingProperty, mut pred: impl FnMut(&str) -> bool) -> bool {
        let state = self.bucket_state.as_ref();
        match property {
            FindingProperty::Type => pred(self.kind.as_str()),
            FindingProperty::Severity => pred(self.kind.severity().0),
            FindingProperty::AccountId => pred(&self.account_id),
            FindingProperty::Region => pred(&self.region),
            FindingProperty::BucketName => pred(&self.bucket_name),
            FindingProperty::Archived => pred(if self.archived { "true" } else { "false" }),
            FindingProperty::Id => pred(&self.id),
            FindingProperty::Category => pred("POLICY"),
            FindingProperty::Sample => pred("false"),
            FindingProperty::BucketArn => pred(&format!("arn:aws:s3:::{}", self.bucket_name)),
            FindingProperty::TagKey => state.is_some_and(|b| b.tags.iter().any(|t| pred(&t.key))),
            FindingProperty::TagValue => state.is_some_and(|b| b.tags.iter().any(|t| pred(&t.value))),
            FindingProperty::EffectivePermission => {
                state.and_then(|b| b.public_access.as_ref()).is_some_and(|p| pred(p.effective_permission.as_str()))
            }
            FindingProperty::EncryptionType => state
                .and_then(|b| b.default_encryption.as_ref())
                .is_some_and(|e| pred(e.kind.map_or("UNKNOWN", |k| k.as_str()))),
            FindingProperty::AllowsUnencryptedUploads => {
                state.is_some_and(|b| pred(b.allows_unencrypted_object_uploads.as_str()))
            }
            FindingProperty::OwnerId => state.and_then(|b| b.owner_id.as_deref()).is_some_and(pred),
            FindingProperty::ActorType => {
                self.last_action.actor.as_ref().and_then(|a| a.kind.as_deref()).is_some_and(pred)
            }
            FindingProperty::Api => self.last_action.api.as_deref().is_some_and(pred),
            FindingProperty::ApiServiceName => self.last_action.api.is_some() && pred("s3.amazonaws.com"),
            FindingProperty::IpAddress => self.last_action.ip_v4().is_some_and(|ip| pred(&ip.to_string())),
            _ => false,
        }
    }
}

/// A finding's text value of a property, for grouping and sorting (`None` for numbers).
pub fn text(f: &Finding, property: FindingProperty) -> Option<String> {
    let mut value = None;
    f.any_text(property, |v| {
        value = Some(v.to_owned());
        true
    });
    value
}
