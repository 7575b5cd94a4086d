//! Policy findings: Macie's six types and severities, what caused a finding, and the
//! Macie-shaped JSON view that `estatectl` and the dashboard print.

use serde::{Deserialize, Serialize};

use crate::macie::{BucketPublicAccess, BucketServerSideEncryption, Timestamp, Tri};
use crate::model::{AccountId, BucketKey, Region, Tag, UnixMillis};

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
    /// The CloudTrail event's name; `None` when a refresh, not an event, found the change
    /// (no API name is made up for it).
    pub api: Option<String>,
    /// When the event happened, or when the refresh read the bucket.
    pub event_time: UnixMillis,
    /// Who made the call, from the event's `userIdentity`.
    pub actor: Option<Actor>,
    /// CloudTrail's `sourceIPAddress`: an address, or a service's name for calls a service
    /// made.
    pub source_ip: Option<String>,
    pub event_id: Option<String>,
}

impl Cause {
    pub fn refresh(at: UnixMillis) -> Self {
        Self { api: None, event_time: at, actor: None, source_ip: None, event_id: None }
    }

    /// The event's name, or `(refresh)`: for logs and tables.
    pub fn label(&self) -> &str {
        self.api.as_deref().unwrap_or("(refresh)")
    }

    /// The source address when it is an IPv4 address (Macie's `ipAddressV4`).
    pub fn ip_v4(&self) -> Option<std::net::Ipv4Addr> {
        self.source_ip.as_deref()?.parse().ok()
    }
}

/// CloudTrail's `userIdentity` of a call, as Macie's finding reports it: the fields its
/// per-type objects (`iamUser`, `assumedRole`, `root`, ...) carry. Empty fields are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `IAMUser`, `AssumedRole`, `FederatedUser`, `Root`, `AWSAccount` or `AWSService`
    /// (anything else is kept as CloudTrail wrote it).
    pub kind: Option<String>,
    pub arn: Option<String>,
    pub principal_id: Option<String>,
    pub account_id: Option<String>,
    pub user_name: Option<String>,
    pub access_key_id: Option<String>,
    pub invoked_by: Option<String>,
    pub session: Option<Session>,
}

/// `userIdentity.sessionContext`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub issuer: Option<SessionIssuer>,
    pub created_at: Option<UnixMillis>,
    pub mfa_authenticated: Option<bool>,
}

/// `userIdentity.sessionContext.sessionIssuer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionIssuer {
    pub kind: Option<String>,
    pub arn: Option<String>,
    pub principal_id: Option<String>,
    pub account_id: Option<String>,
    pub user_name: Option<String>,
}

/// The bucket's state when the finding was raised or last repeated (Macie's
/// `resourcesAffected.s3Bucket`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSnapshot {
    pub created_at: UnixMillis,
    /// The canonical user ID of the bucket's owner, from its ACL, when read.
    pub owner_id: Option<String>,
    pub public_access: Option<BucketPublicAccess>,
    pub default_encryption: Option<BucketServerSideEncryption>,
    pub allows_unencrypted_object_uploads: Tri,
    pub tags: Vec<Tag>,
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
    /// The bucket as it was at the latest occurrence; `None` for findings stored before
    /// Estate kept it.
    pub bucket_state: Option<BucketSnapshot>,
    /// The findings filter that archived the finding (Macie's suppression); such a finding
    /// stays its bucket's current one and counts later occurrences, archived.
    pub suppressed_by: Option<String>,
    /// Increases with every change of any finding.
    pub sequence: u64,
}

impl Finding {
    /// Whether later occurrences count on this finding: it is open, or archived by a filter
    /// (retention's archiving closes it for good).
    pub fn is_current(&self) -> bool {
        !self.archived || self.suppressed_by.is_some()
    }

    /// The bucket the finding is about.
    pub fn bucket(&self) -> BucketKey {
        BucketKey::new(self.account_id.clone(), self.region.clone(), self.bucket_name.clone())
    }
}

/// The version of the finding document's layout, Macie's `schemaVersion`.
pub const SCHEMA_VERSION: &str = "1.0";

/// A JSON object of the members that have a value: a field Estate cannot know is absent, not
/// `null` or invented.
fn object(members: impl IntoIterator<Item = (&'static str, Option<serde_json::Value>)>) -> serde_json::Value {
    serde_json::Value::Object(members.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))).collect())
}

fn text(value: &Option<String>) -> Option<serde_json::Value> {
    value.as_ref().map(|v| serde_json::Value::String(v.clone()))
}

impl Actor {
    /// Macie's `UserIdentity`: the type, and the object of that type.
    pub fn to_macie_json(&self) -> serde_json::Value {
        let session = || {
            self.session.as_ref().map(|s| {
                object([
                    (
                        "attributes",
                        Some(object([
                            ("creationDate", s.created_at.map(|at| Timestamp(at).to_iso8601().into())),
                            ("mfaAuthenticated", s.mfa_authenticated.map(Into::into)),
                        ])),
                    ),
                    (
                        "sessionIssuer",
                        s.issuer.as_ref().map(|i| {
                            object([
                                ("accountId", text(&i.account_id)),
                                ("arn", text(&i.arn)),
                                ("principalId", text(&i.principal_id)),
                                ("type", text(&i.kind)),
                                ("userName", text(&i.user_name)),
                            ])
                        }),
                    ),
                ])
            })
        };
        let (member, details) = match self.kind.as_deref() {
            Some("IAMUser") => (
                "iamUser",
                object([
                    ("accountId", text(&self.account_id)),
                    ("arn", text(&self.arn)),
                    ("principalId", text(&self.principal_id)),
                    ("userName", text(&self.user_name)),
                ]),
            ),
            Some(kind @ ("AssumedRole" | "FederatedUser")) => (
                if kind == "AssumedRole" { "assumedRole" } else { "federatedUser" },
                object([
                    ("accessKeyId", text(&self.access_key_id)),
                    ("accountId", text(&self.account_id)),
                    ("arn", text(&self.arn)),
                    ("principalId", text(&self.principal_id)),
                    ("sessionContext", session()),
                ]),
            ),
            Some("Root") => (
                "root",
                object([
                    ("accountId", text(&self.account_id)),
                    ("arn", text(&self.arn)),
                    ("principalId", text(&self.principal_id)),
                ]),
            ),
            Some("AWSAccount") => (
                "awsAccount",
                object([("accountId", text(&self.account_id)), ("principalId", text(&self.principal_id))]),
            ),
            Some("AWSService") => ("awsService", object([("invokedBy", text(&self.invoked_by))])),
            // A type Macie has no object for (e.g. `IdentityCenterUser`): the type alone.
            _ => return object([("type", text(&self.kind))]),
        };
        object([("type", text(&self.kind)), (member, Some(details))])
    }
}

impl BucketSnapshot {
    /// Macie's `S3Bucket` (of `resourcesAffected`), for the bucket named.
    pub fn to_macie_json(&self, name: &str) -> serde_json::Value {
        object([
            ("allowsUnencryptedObjectUploads", serde_json::to_value(self.allows_unencrypted_object_uploads).ok()),
            ("arn", Some(format!("arn:aws:s3:::{name}").into())),
            ("createdAt", Some(Timestamp(self.created_at).to_iso8601().into())),
            (
                "defaultServerSideEncryption",
                self.default_encryption.as_ref().map(|e| {
                    object([
                        ("encryptionType", Some(e.kind.map_or("UNKNOWN", |k| k.as_str()).into())),
                        ("kmsMasterKeyId", text(&e.kms_master_key_id)),
                    ])
                }),
            ),
            ("name", Some(name.into())),
            ("owner", self.owner_id.as_ref().map(|id| serde_json::json!({"id": id}))),
            ("publicAccess", self.public_access.as_ref().and_then(|p| serde_json::to_value(p).ok())),
            ("tags", Some(self.tags.iter().map(|t| serde_json::json!({"key": t.key, "value": t.value})).collect())),
        ])
    }
}

impl FindingType {
    /// Macie's `description`: what the finding means, for the bucket named.
    pub fn description(self, bucket: &str) -> String {
        match self {
            Self::S3BucketPublic => format!(
                "The S3 bucket {bucket} is publicly accessible: its policy, its ACL or both let anyone reach it, \
                 and no block public access setting prevents that."
            ),
            Self::S3BucketSharedExternally => format!(
                "The S3 bucket {bucket} is shared with an AWS account that is not a member of the organization."
            ),
            Self::S3BucketReplicatedExternally => format!(
                "The S3 bucket {bucket} replicates objects to a bucket of an AWS account that is not a member of \
                 the organization."
            ),
            Self::S3BlockPublicAccessDisabled => {
                format!("Every bucket-level block public access setting of the S3 bucket {bucket} is disabled.")
            }
            Self::S3BucketSharedWithCloudFront => format!(
                "The S3 bucket {bucket} is shared with a CloudFront origin access identity (OAI) or origin access \
                 control (OAC)."
            ),
            Self::S3BucketEncryptionDisabled => format!(
                "The default encryption of the S3 bucket {bucket} was disabled or reset to the S3 default \
                 (SSE-S3)."
            ),
        }
    }
}

impl Finding {
    /// Macie's `Finding` document, field for field where Estate knows the value; `sequence`
    /// and `policyDetails.action.estateFoundBy` (`EVENT` or `REFRESH`) are Estate's own.
    pub fn to_macie_json(&self) -> serde_json::Value {
        let (severity, score) = self.kind.severity();
        let iso = |ms| serde_json::Value::String(Timestamp(ms).to_iso8601());
        let last = &self.last_action;
        let api_call = object([
            ("api", text(&last.api)),
            ("apiServiceName", last.api.as_ref().map(|_| "s3.amazonaws.com".into())),
            ("firstSeen", Some(iso(self.first_action.event_time))),
            ("lastSeen", Some(iso(last.event_time))),
        ]);
        let actor = object([
            ("ipAddressDetails", last.ip_v4().map(|ip| serde_json::json!({"ipAddressV4": ip.to_string()}))),
            ("userIdentity", last.actor.as_ref().map(Actor::to_macie_json)),
        ]);
        let bucket = match &self.bucket_state {
            Some(state) => state.to_macie_json(&self.bucket_name),
            None => serde_json::json!({"name": self.bucket_name, "arn": format!("arn:aws:s3:::{}", self.bucket_name)}),
        };
        serde_json::json!({
            "accountId": self.account_id,
            "archived": self.archived,
            "category": "POLICY",
            "count": self.count,
            "createdAt": iso(self.created_at),
            "description": self.kind.description(&self.bucket_name),
            "id": self.id,
            "partition": "aws",
            "policyDetails": {
                "action": {
                    "actionType": "AWS_API_CALL",
                    "apiCallDetails": api_call,
                    "estateFoundBy": if last.api.is_some() { "EVENT" } else { "REFRESH" },
                },
                "actor": actor,
            },
            "region": self.region,
            "resourcesAffected": {"s3Bucket": bucket},
            "sample": false,
            "schemaVersion": SCHEMA_VERSION,
            "severity": {"description": severity, "score": score},
            "title": self.kind.title(),
            "type": self.kind.as_str(),
            "updatedAt": iso(self.updated_at),
            "sequence": self.sequence,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::macie::{
        AccessControlList, AccountLevelPermissions, BucketLevelPermissions, BucketPermissionConfiguration,
        BucketPolicy, EffectivePermission, EncryptionType,
    };
    use crate::model::BlockPublicAccess;

    /// The members of Macie's `Finding` (the macie2 model, `../shared/reference/macie-api.md`
    /// section 6), with nested shapes; a list is shown by its element.
    fn macie_finding_shape() -> serde_json::Value {
        let block = serde_json::json!({
            "blockPublicAcls": null, "blockPublicPolicy": null, "ignorePublicAcls": null, "restrictPublicBuckets": null
        });
        let session = serde_json::json!({
            "attributes": {"creationDate": null, "mfaAuthenticated": null},
            "sessionIssuer": {"accountId": null, "arn": null, "principalId": null, "type": null, "userName": null},
        });
        let role = serde_json::json!({
            "accessKeyId": null, "accountId": null, "arn": null, "principalId": null, "sessionContext": session
        });
        serde_json::json!({
            "accountId": null, "archived": null, "category": null, "classificationDetails": null, "count": null,
            "createdAt": null, "description": null, "id": null, "partition": null,
            "policyDetails": {
                "action": {
                    "actionType": null,
                    "apiCallDetails": {"api": null, "apiServiceName": null, "firstSeen": null, "lastSeen": null},
                },
                "actor": {
                    "domainDetails": {"domainName": null},
                    "ipAddressDetails": {
                        "ipAddressV4": null,
                        "ipCity": {"name": null},
                        "ipCountry": {"code": null, "name": null},
                        "ipGeoLocation": {"lat": null, "lon": null},
                        "ipOwner": {"asn": null, "asnOrg": null, "isp": null, "org": null},
                    },
                    "userIdentity": {
                        "assumedRole": role,
                        "awsAccount": {"accountId": null, "principalId": null},
                        "awsService": {"invokedBy": null},
                        "federatedUser": role,
                        "iamUser": {"accountId": null, "arn": null, "principalId": null, "userName": null},
                        "root": {"accountId": null, "arn": null, "principalId": null},
                        "type": null,
                    },
                },
            },
            "region": null,
            "resourcesAffected": {
                "s3Bucket": {
                    "allowsUnencryptedObjectUploads": null, "arn": null, "createdAt": null,
                    "defaultServerSideEncryption": {"encryptionType": null, "kmsMasterKeyId": null},
                    "name": null, "owner": {"displayName": null, "id": null},
                    "publicAccess": {
                        "effectivePermission": null,
                        "permissionConfiguration": {
                            "accountLevelPermissions": {"blockPublicAccess": block},
                            "bucketLevelPermissions": {
                                "accessControlList": {"allowsPublicReadAccess": null, "allowsPublicWriteAccess": null},
                                "blockPublicAccess": block,
                                "bucketPolicy": {"allowsPublicReadAccess": null, "allowsPublicWriteAccess": null},
                            },
                        },
                    },
                    "tags": [{"key": null, "value": null}],
                },
                "s3Object": null,
            },
            "sample": null, "schemaVersion": null,
            "severity": {"description": null, "score": null},
            "title": null, "type": null, "updatedAt": null,
        })
    }

    /// Every member path of a document (`a.b.c`); list elements share their list's path.
    fn paths(value: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
        match value {
            serde_json::Value::Object(members) => {
                for (key, inner) in members {
                    let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    out.insert(path.clone());
                    paths(inner, &path, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| paths(item, prefix, out)),
            _ => {}
        }
    }

    fn actor(kind: &str) -> Actor {
        let some = |s: &str| Some(s.to_owned());
        Actor {
            kind: some(kind),
            arn: some("arn:aws:sts::111111111111:assumed-role/r/s"),
            principal_id: some("AROAEXAMPLE:s"),
            account_id: some("111111111111"),
            user_name: some("alice"),
            access_key_id: some("ASIAEXAMPLE"),
            invoked_by: some("cloudformation.amazonaws.com"),
            session: Some(Session {
                issuer: Some(SessionIssuer {
                    kind: some("Role"),
                    arn: some("arn:aws:iam::111111111111:role/r"),
                    principal_id: some("AROAEXAMPLE"),
                    account_id: some("111111111111"),
                    user_name: some("r"),
                }),
                created_at: Some(1_700_000_000_000),
                mfa_authenticated: Some(false),
            }),
        }
    }

    fn finding(kind: &str) -> Finding {
        let block = BlockPublicAccess::default();
        let cause = Cause {
            api: Some("PutBucketPolicy".into()),
            event_time: 1_700_000_000_000,
            actor: Some(actor(kind)),
            source_ip: Some("198.51.100.7".into()),
            event_id: Some("e-1".into()),
        };
        Finding {
            id: "f".into(),
            kind: FindingType::S3BucketPublic,
            account_id: AccountId::parse("111111111111").unwrap(),
            region: Region::parse("us-east-1").unwrap(),
            bucket_name: "b".into(),
            created_at: 1_700_000_000_000,
            updated_at: 1_700_000_000_000,
            count: 1,
            archived: false,
            first_action: cause.clone(),
            last_action: cause,
            suppressed_by: None,
            bucket_state: Some(BucketSnapshot {
                created_at: 1_600_000_000_000,
                owner_id: Some("canonical".into()),
                public_access: Some(BucketPublicAccess {
                    effective_permission: EffectivePermission::Public,
                    permission_configuration: Some(BucketPermissionConfiguration {
                        account_level_permissions: AccountLevelPermissions { block_public_access: Some(block) },
                        bucket_level_permissions: BucketLevelPermissions {
                            access_control_list: Some(AccessControlList {
                                allows_public_read_access: false,
                                allows_public_write_access: false,
                            }),
                            block_public_access: block,
                            bucket_policy: Some(BucketPolicy {
                                allows_public_read_access: Some(true),
                                allows_public_write_access: Some(false),
                            }),
                        },
                    }),
                }),
                default_encryption: Some(BucketServerSideEncryption {
                    kms_master_key_id: Some("arn:aws:kms:us-east-1:111111111111:key/k".into()),
                    kind: Some(EncryptionType::AwsKms),
                }),
                allows_unencrypted_object_uploads: Tri::True,
                tags: vec![Tag { key: "team".into(), value: "data".into() }],
            }),
            sequence: 1,
        }
    }

    /// Estate's finding document against Macie's model, member by member: Estate adds only
    /// the members listed, and leaves out only the members listed, each with its reason.
    #[test]
    fn the_finding_document_has_macies_members() {
        let mut macie = BTreeSet::new();
        paths(&macie_finding_shape(), "", &mut macie);
        let mut estate = BTreeSet::new();
        for kind in ["IAMUser", "AssumedRole", "FederatedUser", "Root", "AWSAccount", "AWSService"] {
            paths(&finding(kind).to_macie_json(), "", &mut estate);
        }
        let added: BTreeSet<&str> = ["sequence", "policyDetails.action.estateFoundBy"].into();
        // Members Estate does not fill, and why.
        let absent: BTreeSet<&str> = [
            // Sensitive-data findings only: Estate raises policy findings.
            "classificationDetails",
            "resourcesAffected.s3Object",
            // S3's CloudTrail events name no domain.
            "policyDetails.actor.domainDetails",
            "policyDetails.actor.domainDetails.domainName",
            // Geolocation and network owner: Estate has no IP intelligence database, and does
            // not invent them.
            "policyDetails.actor.ipAddressDetails.ipCity",
            "policyDetails.actor.ipAddressDetails.ipCity.name",
            "policyDetails.actor.ipAddressDetails.ipCountry",
            "policyDetails.actor.ipAddressDetails.ipCountry.code",
            "policyDetails.actor.ipAddressDetails.ipCountry.name",
            "policyDetails.actor.ipAddressDetails.ipGeoLocation",
            "policyDetails.actor.ipAddressDetails.ipGeoLocation.lat",
            "policyDetails.actor.ipAddressDetails.ipGeoLocation.lon",
            "policyDetails.actor.ipAddressDetails.ipOwner",
            "policyDetails.actor.ipAddressDetails.ipOwner.asn",
            "policyDetails.actor.ipAddressDetails.ipOwner.asnOrg",
            "policyDetails.actor.ipAddressDetails.ipOwner.isp",
            "policyDetails.actor.ipAddressDetails.ipOwner.org",
            // The agent reads the owner's canonical ID from the ACL; S3 no longer returns
            // display names in most Regions.
            "resourcesAffected.s3Bucket.owner.displayName",
        ]
        .into();
        let invented: Vec<&String> =
            estate.iter().filter(|p| !macie.contains(*p) && !added.contains(p.as_str())).collect();
        assert!(invented.is_empty(), "members Macie's finding does not have: {invented:?}");
        let missing: Vec<&String> =
            macie.iter().filter(|p| !estate.contains(*p) && !absent.contains(p.as_str())).collect();
        assert!(missing.is_empty(), "Macie's members Estate leaves out without a reason: {missing:?}");
        let filled_anyway: Vec<&&str> = absent.iter().filter(|p| estate.contains(**p)).collect();
        assert!(filled_anyway.is_empty(), "listed as absent but filled: {filled_anyway:?}");
    }

    #[test]
    fn a_refresh_has_no_api_name_and_a_service_address_no_ip() {
        let mut f = finding("IAMUser");
        f.last_action = Cause::refresh(1_700_000_100_000);
        let doc = f.to_macie_json();
        let details = &doc["policyDetails"]["action"]["apiCallDetails"];
        assert!(details.get("api").is_none() && details.get("apiServiceName").is_none(), "{details}");
        assert_eq!(doc["policyDetails"]["action"]["estateFoundBy"], "REFRESH");
        assert!(doc["policyDetails"]["actor"].get("userIdentity").is_none());
        let mut g = finding("AWSService");
        g.last_action.source_ip = Some("s3.amazonaws.com".into());
        let doc = g.to_macie_json();
        assert!(doc["policyDetails"]["actor"].get("ipAddressDetails").is_none(), "a service name is not an address");
        assert_eq!(
            doc["policyDetails"]["actor"]["userIdentity"]["awsService"]["invokedBy"],
            "cloudformation.amazonaws.com"
        );
        assert_eq!(doc["schemaVersion"], SCHEMA_VERSION);
    }
}
