//! Conversions between the protobuf messages and the domain types, in both directions: every
//! report body and every Macie-shaped answer passes here (the administrator's gRPC services
//! also read a few request fields themselves); malformed messages are rejected here with a
//! message that names the field.

use crate::macie;
use crate::model::{self, AccountId, BucketKey, Region};
use crate::objects::{ObjectStats, ObjectStatsSource, ObjectTotals, Usage};
use crate::pb;
use estate_types::limits::{
    self, MAX_ACL_GRANTS, MAX_BUCKET_POLICY_BYTES, MAX_CANONICAL_ID_BYTES, MAX_ERROR_MESSAGE_BYTES,
    MAX_EVENT_STRING_BYTES, MAX_IDENTIFIER_BYTES, MAX_REPLICATION_RULES, MAX_TAGS, MAX_TAG_KEY_CHARS,
    MAX_TAG_VALUE_CHARS,
};

/// A protobuf message that does not describe a valid domain value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("invalid value for `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConvertError {
    ConvertError::Invalid { field, reason: reason.into() }
}

/// The largest count or size one bucket may report: 2^60 (an exbibyte of bytes, or more
/// objects than S3 has ever held in one bucket). Sums over many buckets saturate.
pub const MAX_COUNTER: i64 = 1 << 60;

/// Storage classes one bucket's statistics may name: S3 has about a dozen.
const MAX_STORAGE_CLASSES: usize = 64;
/// A storage class's name, in bytes.
const MAX_STORAGE_CLASS_BYTES: usize = 64;

/// A counter an agent reports: never negative, never past `MAX_COUNTER`.
fn check_counter(field: &'static str, value: i64) -> Result<(), ConvertError> {
    if value < 0 {
        Err(invalid(field, format!("{value} is negative")))
    } else if value > MAX_COUNTER {
        Err(invalid(field, format!("{value} is larger than {MAX_COUNTER}")))
    } else {
        Ok(())
    }
}

fn non_empty(value: &str, field: &'static str) -> Result<(), ConvertError> {
    if value.is_empty() {
        Err(ConvertError::Missing(field))
    } else {
        Ok(())
    }
}

/// An account ID from a message: missing when empty, invalid when not twelve digits.
pub fn account_id(field: &'static str, text: String) -> Result<AccountId, ConvertError> {
    non_empty(&text, field)?;
    AccountId::parse(text).map_err(|e| invalid(field, e.to_string()))
}

/// A Region from a message: missing when empty, invalid when not a Region code.
pub fn region(field: &'static str, text: String) -> Result<Region, ConvertError> {
    non_empty(&text, field)?;
    Region::parse(text).map_err(|e| invalid(field, e.to_string()))
}

/// A bucket name from a message, checked against S3's naming rules (legacy names only in
/// us-east-1, where they can exist).
pub fn bucket_name(field: &'static str, region: &Region, name: String) -> Result<String, ConvertError> {
    non_empty(&name, field)?;
    limits::check_bucket_name(&name, region.as_str() == "us-east-1").map_err(|e| invalid(field, e.to_string()))?;
    Ok(name)
}

/// A string no longer than `max` bytes.
fn bounded(field: &'static str, value: &str, max: usize) -> Result<(), ConvertError> {
    if value.len() > max {
        return Err(invalid(field, format!("{} bytes, over the limit of {max}", value.len())));
    }
    Ok(())
}

/// A list no longer than S3 allows.
fn at_most<T>(field: &'static str, items: &[T], max: usize) -> Result<(), ConvertError> {
    if items.len() > max {
        return Err(invalid(field, format!("{} entries, over S3's limit of {max}", items.len())));
    }
    Ok(())
}

fn some_if_non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

impl From<pb::BlockPublicAccess> for model::BlockPublicAccess {
    fn from(v: pb::BlockPublicAccess) -> Self {
        Self {
            block_public_acls: v.block_public_acls,
            ignore_public_acls: v.ignore_public_acls,
            block_public_policy: v.block_public_policy,
            restrict_public_buckets: v.restrict_public_buckets,
        }
    }
}

impl From<model::BlockPublicAccess> for pb::BlockPublicAccess {
    fn from(v: model::BlockPublicAccess) -> Self {
        Self {
            block_public_acls: v.block_public_acls,
            ignore_public_acls: v.ignore_public_acls,
            block_public_policy: v.block_public_policy,
            restrict_public_buckets: v.restrict_public_buckets,
        }
    }
}

fn tags_from_pb(tags: Vec<pb::Tag>) -> Result<Vec<model::Tag>, ConvertError> {
    at_most("facts.tags", &tags, MAX_TAGS)?;
    tags.into_iter()
        .map(|t| {
            let chars = t.key.chars().count();
            if chars == 0 || chars > MAX_TAG_KEY_CHARS {
                return Err(invalid(
                    "facts.tags.key",
                    format!("{chars} characters; S3 allows 1 to {MAX_TAG_KEY_CHARS}"),
                ));
            }
            let chars = t.value.chars().count();
            if chars > MAX_TAG_VALUE_CHARS {
                return Err(invalid(
                    "facts.tags.value",
                    format!("{chars} characters; S3 allows {MAX_TAG_VALUE_CHARS}"),
                ));
            }
            Ok(model::Tag { key: t.key, value: t.value })
        })
        .collect()
}

fn tags_to_pb(tags: &[model::Tag]) -> Vec<pb::Tag> {
    tags.iter().map(|t| pb::Tag { key: t.key.clone(), value: t.value.clone() }).collect()
}

impl TryFrom<pb::AclGrant> for model::AclGrant {
    type Error = ConvertError;

    fn try_from(g: pb::AclGrant) -> Result<Self, ConvertError> {
        bounded("acl.grants.grantee", &g.grantee, MAX_IDENTIFIER_BYTES)?;
        let grantee = match pb::GranteeType::try_from(g.grantee_type) {
            Ok(pb::GranteeType::CanonicalUser) => model::Grantee::CanonicalUser(g.grantee),
            Ok(pb::GranteeType::Group) => model::Grantee::Group(g.grantee),
            Ok(pb::GranteeType::Email) => model::Grantee::Email(g.grantee),
            _ => return Err(invalid("acl.grants.grantee_type", format!("{}", g.grantee_type))),
        };
        let permission = match pb::AclPermission::try_from(g.permission) {
            Ok(pb::AclPermission::Read) => model::AclPermission::Read,
            Ok(pb::AclPermission::Write) => model::AclPermission::Write,
            Ok(pb::AclPermission::ReadAcp) => model::AclPermission::ReadAcp,
            Ok(pb::AclPermission::WriteAcp) => model::AclPermission::WriteAcp,
            Ok(pb::AclPermission::FullControl) => model::AclPermission::FullControl,
            _ => return Err(invalid("acl.grants.permission", format!("{}", g.permission))),
        };
        Ok(Self { grantee, permission })
    }
}

impl From<&model::AclGrant> for pb::AclGrant {
    fn from(g: &model::AclGrant) -> Self {
        let (grantee_type, grantee) = match &g.grantee {
            model::Grantee::CanonicalUser(id) => (pb::GranteeType::CanonicalUser, id.clone()),
            model::Grantee::Group(uri) => (pb::GranteeType::Group, uri.clone()),
            model::Grantee::Email(email) => (pb::GranteeType::Email, email.clone()),
        };
        let permission = match g.permission {
            model::AclPermission::Read => pb::AclPermission::Read,
            model::AclPermission::Write => pb::AclPermission::Write,
            model::AclPermission::ReadAcp => pb::AclPermission::ReadAcp,
            model::AclPermission::WriteAcp => pb::AclPermission::WriteAcp,
            model::AclPermission::FullControl => pb::AclPermission::FullControl,
        };
        Self { grantee_type: grantee_type.into(), grantee, permission: permission.into() }
    }
}

/// The longest error text kept for an unread call.
const MAX_UNREAD_ERROR: usize = MAX_ERROR_MESSAGE_BYTES;

fn config_call_to_pb(c: model::ConfigCall) -> pb::ConfigCall {
    match c {
        model::ConfigCall::Tagging => pb::ConfigCall::Tagging,
        model::ConfigCall::Versioning => pb::ConfigCall::Versioning,
        model::ConfigCall::Encryption => pb::ConfigCall::Encryption,
        model::ConfigCall::PublicAccessBlock => pb::ConfigCall::PublicAccessBlock,
        model::ConfigCall::Acl => pb::ConfigCall::Acl,
        model::ConfigCall::OwnershipControls => pb::ConfigCall::OwnershipControls,
        model::ConfigCall::Policy => pb::ConfigCall::Policy,
        model::ConfigCall::PolicyStatus => pb::ConfigCall::PolicyStatus,
        model::ConfigCall::Replication => pb::ConfigCall::Replication,
    }
}

impl TryFrom<pb::UnreadCall> for model::UnreadCall {
    type Error = ConvertError;

    fn try_from(u: pb::UnreadCall) -> Result<Self, ConvertError> {
        let call = model::ConfigCall::ALL
            .into_iter()
            .find(|c| i32::from(config_call_to_pb(*c)) == u.call)
            .ok_or_else(|| invalid("facts.unread.call", format!("{}", u.call)))?;
        if u.error.len() > MAX_UNREAD_ERROR {
            return Err(invalid("facts.unread.error", format!("longer than {MAX_UNREAD_ERROR} bytes")));
        }
        Ok(model::UnreadCall { call, error: u.error })
    }
}

impl TryFrom<pb::BucketFacts> for model::BucketFacts {
    type Error = ConvertError;

    fn try_from(f: pb::BucketFacts) -> Result<Self, ConvertError> {
        let account = account_id("facts.account_id", f.account_id)?;
        let region = region("facts.region", f.region)?;
        let bucket_name = bucket_name("facts.bucket_name", &region, f.bucket_name)?;
        if f.read_at_ms <= 0 {
            return Err(invalid("facts.read_at_ms", "must be a positive Unix time in milliseconds"));
        }
        let key = BucketKey::new(account, region, bucket_name);
        let state = if let Some(error) = f.error {
            let code = match pb::BucketErrorCode::try_from(error.code) {
                Ok(pb::BucketErrorCode::AccessDenied) => model::BucketErrorCode::AccessDenied,
                _ => return Err(invalid("facts.error.code", format!("{}", error.code))),
            };
            bounded("facts.error.message", &error.message, MAX_ERROR_MESSAGE_BYTES)?;
            model::BucketState::Error(model::BucketError { code, message: error.message })
        } else {
            let acl = match f.acl {
                Some(acl) => {
                    bounded("facts.acl.owner_canonical_id", &acl.owner_canonical_id, MAX_CANONICAL_ID_BYTES)?;
                    at_most("facts.acl.grants", &acl.grants, MAX_ACL_GRANTS)?;
                    Some(model::Acl {
                        owner_canonical_id: acl.owner_canonical_id,
                        grants: acl.grants.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?,
                    })
                }
                None => None,
            };
            let object_ownership = match pb::ObjectOwnership::try_from(f.object_ownership) {
                Ok(pb::ObjectOwnership::Unspecified) => None,
                Ok(pb::ObjectOwnership::BucketOwnerEnforced) => Some(model::ObjectOwnership::BucketOwnerEnforced),
                Ok(pb::ObjectOwnership::BucketOwnerPreferred) => Some(model::ObjectOwnership::BucketOwnerPreferred),
                Ok(pb::ObjectOwnership::ObjectWriter) => Some(model::ObjectOwnership::ObjectWriter),
                Err(_) => return Err(invalid("facts.object_ownership", format!("{}", f.object_ownership))),
            };
            let default_encryption = match f.default_encryption {
                Some(e) => {
                    non_empty(&e.algorithm, "facts.default_encryption.algorithm")?;
                    bounded("facts.default_encryption.algorithm", &e.algorithm, MAX_IDENTIFIER_BYTES)?;
                    bounded("facts.default_encryption.kms_master_key_id", &e.kms_master_key_id, MAX_IDENTIFIER_BYTES)?;
                    Some(model::DefaultEncryption {
                        algorithm: e.algorithm,
                        kms_master_key_id: some_if_non_empty(e.kms_master_key_id),
                    })
                }
                None => None,
            };
            let replication = match f.replication {
                Some(r) => {
                    bounded("facts.replication.role", &r.role, MAX_IDENTIFIER_BYTES)?;
                    at_most("facts.replication.rules", &r.rules, MAX_REPLICATION_RULES)?;
                    let rules = r
                        .rules
                        .into_iter()
                        .map(|rule| {
                            bounded("facts.replication.rules.id", &rule.id, MAX_IDENTIFIER_BYTES)?;
                            bounded(
                                "facts.replication.rules.destination_bucket_arn",
                                &rule.destination_bucket_arn,
                                MAX_IDENTIFIER_BYTES,
                            )?;
                            bounded(
                                "facts.replication.rules.destination_account",
                                &rule.destination_account,
                                MAX_IDENTIFIER_BYTES,
                            )?;
                            Ok(model::ReplicationRule {
                                id: rule.id,
                                enabled: rule.enabled,
                                destination_bucket_arn: rule.destination_bucket_arn,
                                destination_account: some_if_non_empty(rule.destination_account),
                            })
                        })
                        .collect::<Result<_, ConvertError>>()?;
                    Some(model::Replication { role: r.role, rules })
                }
                None => None,
            };
            // One entry per call at most.
            at_most("facts.unread", &f.unread, model::ConfigCall::ALL.len())?;
            let mut unread: Vec<model::UnreadCall> =
                f.unread.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?;
            // A document over S3's limit cannot be the bucket's policy: it is not kept, and what
            // the policy decides is unknown, with the reason.
            let policy = match f.policy {
                Some(text) if text.len() > MAX_BUCKET_POLICY_BYTES => {
                    unread.retain(|u| u.call != model::ConfigCall::Policy);
                    unread.push(model::UnreadCall {
                        call: model::ConfigCall::Policy,
                        error: format!(
                            "the agent sent a policy of {} bytes, over S3's limit of {MAX_BUCKET_POLICY_BYTES} \
                             bytes (20 KB): not kept",
                            text.len()
                        ),
                    });
                    None
                }
                policy => policy,
            };
            model::BucketState::Readable(Box::new(model::BucketConfig {
                tags: tags_from_pb(f.tags)?,
                versioning: f.versioning,
                default_encryption,
                block_public_access: f.block_public_access.map(Into::into),
                acl,
                object_ownership,
                policy,
                policy_status_public: f.policy_status_public,
                replication,
                objects: f.objects.map(TryInto::try_into).transpose()?.map(Box::new),
                unread,
            }))
        };
        Ok(Self { key, created_at: f.created_at_ms, read_at: f.read_at_ms, state })
    }
}

impl From<&model::BucketFacts> for pb::BucketFacts {
    fn from(f: &model::BucketFacts) -> Self {
        let mut out = pb::BucketFacts {
            account_id: f.key.account_id.to_string(),
            region: f.key.region.to_string(),
            bucket_name: f.key.bucket_name.clone(),
            created_at_ms: f.created_at,
            read_at_ms: f.read_at,
            ..Default::default()
        };
        match &f.state {
            model::BucketState::Error(error) => {
                out.error = Some(pb::BucketError {
                    code: match error.code {
                        model::BucketErrorCode::AccessDenied => pb::BucketErrorCode::AccessDenied.into(),
                    },
                    message: error.message.clone(),
                });
            }
            model::BucketState::Readable(c) => {
                out.tags = tags_to_pb(&c.tags);
                out.versioning = c.versioning;
                out.default_encryption = c.default_encryption.as_ref().map(|e| pb::DefaultEncryption {
                    algorithm: e.algorithm.clone(),
                    kms_master_key_id: e.kms_master_key_id.clone().unwrap_or_default(),
                });
                out.block_public_access = c.block_public_access.map(Into::into);
                out.acl = c.acl.as_ref().map(|acl| pb::Acl {
                    owner_canonical_id: acl.owner_canonical_id.clone(),
                    grants: acl.grants.iter().map(Into::into).collect(),
                });
                out.object_ownership = match c.object_ownership {
                    None => pb::ObjectOwnership::Unspecified,
                    Some(model::ObjectOwnership::BucketOwnerEnforced) => pb::ObjectOwnership::BucketOwnerEnforced,
                    Some(model::ObjectOwnership::BucketOwnerPreferred) => pb::ObjectOwnership::BucketOwnerPreferred,
                    Some(model::ObjectOwnership::ObjectWriter) => pb::ObjectOwnership::ObjectWriter,
                }
                .into();
                out.policy = c.policy.clone();
                out.policy_status_public = c.policy_status_public;
                out.unread = c
                    .unread
                    .iter()
                    .map(|u| pb::UnreadCall { call: config_call_to_pb(u.call).into(), error: u.error.clone() })
                    .collect();
                out.replication = c.replication.as_ref().map(|r| pb::Replication {
                    role: r.role.clone(),
                    rules: r
                        .rules
                        .iter()
                        .map(|rule| pb::ReplicationRule {
                            id: rule.id.clone(),
                            enabled: rule.enabled,
                            destination_bucket_arn: rule.destination_bucket_arn.clone(),
                            destination_account: rule.destination_account.clone().unwrap_or_default(),
                        })
                        .collect(),
                });
                out.objects = c.objects.as_deref().map(Into::into);
            }
        }
        out
    }
}

fn encryption_counts_to_pb(e: macie::ObjectCountByEncryptionType) -> pb::ObjectCountByEncryptionType {
    pb::ObjectCountByEncryptionType {
        customer_managed: e.customer_managed,
        kms_managed: e.kms_managed,
        s3_managed: e.s3_managed,
        unencrypted: e.unencrypted,
        unknown: e.unknown,
    }
}

fn encryption_counts_from_pb(e: Option<pb::ObjectCountByEncryptionType>) -> macie::ObjectCountByEncryptionType {
    let e = e.unwrap_or_default();
    macie::ObjectCountByEncryptionType {
        customer_managed: e.customer_managed,
        kms_managed: e.kms_managed,
        s3_managed: e.s3_managed,
        unencrypted: e.unencrypted,
        unknown: e.unknown,
    }
}

impl From<&ObjectStats> for pb::ObjectStats {
    fn from(o: &ObjectStats) -> Self {
        let t = &o.totals;
        pb::ObjectStats {
            object_count: t.object_count,
            size_in_bytes: t.size_in_bytes,
            size_in_bytes_compressed: t.size_in_bytes_compressed,
            classifiable_object_count: t.classifiable_object_count,
            classifiable_size_in_bytes: t.classifiable_size_in_bytes,
            unclassifiable_object_count: Some(ols_to_pb(t.unclassifiable_object_count)),
            unclassifiable_object_size_in_bytes: Some(ols_to_pb(t.unclassifiable_object_size_in_bytes)),
            object_count_by_encryption_type: Some(encryption_counts_to_pb(o.object_count_by_encryption_type)),
            by_storage_class: o
                .by_storage_class
                .iter()
                .map(|(class, usage)| pb::StorageClassUsage {
                    storage_class: class.clone(),
                    object_count: usage.count,
                    size_in_bytes: usage.size,
                })
                .collect(),
            multipart_parts: o.multipart_parts,
            source: match o.source {
                ObjectStatsSource::InventoryReport => pb::ObjectStatsSource::InventoryReport,
                ObjectStatsSource::Full => pb::ObjectStatsSource::Full,
                ObjectStatsSource::Sampled => pb::ObjectStatsSource::Sampled,
                ObjectStatsSource::ManualRefresh => pb::ObjectStatsSource::ManualRefresh,
            }
            .into(),
            read_at_ms: o.read_at,
        }
    }
}

impl TryFrom<pb::ObjectStats> for ObjectStats {
    type Error = ConvertError;

    fn try_from(o: pb::ObjectStats) -> Result<Self, ConvertError> {
        let source = match pb::ObjectStatsSource::try_from(o.source) {
            Ok(pb::ObjectStatsSource::InventoryReport) => ObjectStatsSource::InventoryReport,
            Ok(pb::ObjectStatsSource::Full) => ObjectStatsSource::Full,
            Ok(pb::ObjectStatsSource::Sampled) => ObjectStatsSource::Sampled,
            Ok(pb::ObjectStatsSource::ManualRefresh) => ObjectStatsSource::ManualRefresh,
            _ => return Err(invalid("objects.source", format!("{}", o.source))),
        };
        let mut counters = vec![
            ("objects.object_count", o.object_count),
            ("objects.size_in_bytes", o.size_in_bytes),
            ("objects.size_in_bytes_compressed", o.size_in_bytes_compressed),
            ("objects.classifiable_object_count", o.classifiable_object_count),
            ("objects.classifiable_size_in_bytes", o.classifiable_size_in_bytes),
            ("objects.multipart_parts", o.multipart_parts),
        ];
        for (field, part) in [
            ("objects.unclassifiable_object_count", &o.unclassifiable_object_count),
            ("objects.unclassifiable_object_size_in_bytes", &o.unclassifiable_object_size_in_bytes),
        ] {
            if let Some(part) = part {
                counters.extend([(field, part.file_type), (field, part.storage_class), (field, part.total)]);
            }
        }
        if let Some(e) = &o.object_count_by_encryption_type {
            let field = "objects.object_count_by_encryption_type";
            counters.extend([
                (field, e.customer_managed),
                (field, e.kms_managed),
                (field, e.s3_managed),
                (field, e.unencrypted),
                (field, e.unknown),
            ]);
        }
        at_most("objects.by_storage_class", &o.by_storage_class, MAX_STORAGE_CLASSES)?;
        for usage in &o.by_storage_class {
            non_empty(&usage.storage_class, "objects.by_storage_class.storage_class")?;
            bounded("objects.by_storage_class.storage_class", &usage.storage_class, MAX_STORAGE_CLASS_BYTES)?;
            counters.extend([
                ("objects.by_storage_class.object_count", usage.object_count),
                ("objects.by_storage_class.size_in_bytes", usage.size_in_bytes),
            ]);
        }
        for (field, value) in counters {
            check_counter(field, value)?;
        }
        Ok(ObjectStats {
            totals: ObjectTotals {
                object_count: o.object_count,
                size_in_bytes: o.size_in_bytes,
                size_in_bytes_compressed: o.size_in_bytes_compressed,
                classifiable_object_count: o.classifiable_object_count,
                classifiable_size_in_bytes: o.classifiable_size_in_bytes,
                unclassifiable_object_count: ols_from_pb(o.unclassifiable_object_count),
                unclassifiable_object_size_in_bytes: ols_from_pb(o.unclassifiable_object_size_in_bytes),
            },
            object_count_by_encryption_type: encryption_counts_from_pb(o.object_count_by_encryption_type),
            by_storage_class: o
                .by_storage_class
                .into_iter()
                .map(|u| (u.storage_class, Usage { count: u.object_count, size: u.size_in_bytes }))
                .collect(),
            multipart_parts: o.multipart_parts,
            source,
            read_at: o.read_at_ms,
        })
    }
}

impl TryFrom<pb::AccountSettings> for model::AccountSettings {
    type Error = ConvertError;

    fn try_from(s: pb::AccountSettings) -> Result<Self, ConvertError> {
        let account_id = account_id("account_settings.account_id", s.account_id)?;
        let block_public_access = match pb::AccountBlockPublicAccessState::try_from(s.block_public_access_state) {
            Ok(pb::AccountBlockPublicAccessState::Configured) => model::AccountBlockPublicAccess::Configured(
                s.block_public_access.ok_or(ConvertError::Missing("account_settings.block_public_access"))?.into(),
            ),
            Ok(pb::AccountBlockPublicAccessState::NotConfigured) => model::AccountBlockPublicAccess::NotConfigured,
            Ok(pb::AccountBlockPublicAccessState::Unknown) => {
                model::AccountBlockPublicAccess::Unknown(s.unknown_reason)
            }
            _ => {
                return Err(invalid(
                    "account_settings.block_public_access_state",
                    format!("{}", s.block_public_access_state),
                ))
            }
        };
        Ok(Self { account_id, read_at: s.read_at_ms, block_public_access })
    }
}

impl From<&model::AccountSettings> for pb::AccountSettings {
    fn from(s: &model::AccountSettings) -> Self {
        let (state, bpa, reason) = match &s.block_public_access {
            model::AccountBlockPublicAccess::Configured(bpa) => {
                (pb::AccountBlockPublicAccessState::Configured, Some((*bpa).into()), String::new())
            }
            model::AccountBlockPublicAccess::NotConfigured => {
                (pb::AccountBlockPublicAccessState::NotConfigured, None, String::new())
            }
            model::AccountBlockPublicAccess::Unknown(reason) => {
                (pb::AccountBlockPublicAccessState::Unknown, None, reason.clone())
            }
        };
        Self {
            account_id: s.account_id.to_string(),
            read_at_ms: s.read_at,
            block_public_access_state: state.into(),
            block_public_access: bpa,
            unknown_reason: reason,
        }
    }
}

// ---- Macie-shaped views -------------------------------------------------------------------

fn tri_to_pb(t: macie::Tri) -> i32 {
    match t {
        macie::Tri::True => pb::Tristate::True,
        macie::Tri::False => pb::Tristate::False,
        macie::Tri::Unknown => pb::Tristate::Unknown,
    }
    .into()
}

fn tri_from_pb(v: i32) -> macie::Tri {
    match pb::Tristate::try_from(v) {
        Ok(pb::Tristate::True) => macie::Tri::True,
        Ok(pb::Tristate::False) => macie::Tri::False,
        _ => macie::Tri::Unknown,
    }
}

fn opt_bool_to_pb(v: Option<bool>) -> i32 {
    tri_to_pb(v.map_or(macie::Tri::Unknown, macie::Tri::from_bool))
}

fn ts(ms: i64) -> Option<macie::Timestamp> {
    macie::Timestamp::from_millis(ms)
}

fn ms(t: Option<macie::Timestamp>) -> i64 {
    t.map_or(0, |t| t.0)
}

fn permission_to_pb(p: macie::EffectivePermission) -> pb::EffectivePermission {
    match p {
        macie::EffectivePermission::Public => pb::EffectivePermission::Public,
        macie::EffectivePermission::NotPublic => pb::EffectivePermission::NotPublic,
        macie::EffectivePermission::Unknown => pb::EffectivePermission::Unknown,
    }
}

fn permission_from_pb(p: i32) -> macie::EffectivePermission {
    match pb::EffectivePermission::try_from(p) {
        Ok(pb::EffectivePermission::Public) => macie::EffectivePermission::Public,
        Ok(pb::EffectivePermission::NotPublic) => macie::EffectivePermission::NotPublic,
        _ => macie::EffectivePermission::Unknown,
    }
}

fn shared_access_to_pb(a: macie::SharedAccess) -> pb::SharedAccess {
    match a {
        macie::SharedAccess::External => pb::SharedAccess::External,
        macie::SharedAccess::Internal => pb::SharedAccess::Internal,
        macie::SharedAccess::NotShared => pb::SharedAccess::NotShared,
        macie::SharedAccess::Unknown => pb::SharedAccess::Unknown,
    }
}

fn shared_access_from_pb(a: i32) -> macie::SharedAccess {
    match pb::SharedAccess::try_from(a) {
        Ok(pb::SharedAccess::External) => macie::SharedAccess::External,
        Ok(pb::SharedAccess::Internal) => macie::SharedAccess::Internal,
        Ok(pb::SharedAccess::NotShared) => macie::SharedAccess::NotShared,
        _ => macie::SharedAccess::Unknown,
    }
}

impl From<&macie::BucketPublicAccess> for pb::BucketPublicAccess {
    fn from(pa: &macie::BucketPublicAccess) -> Self {
        pb::BucketPublicAccess {
            effective_permission: permission_to_pb(pa.effective_permission).into(),
            permission_configuration: pa.permission_configuration.as_ref().map(|pc| {
                pb::BucketPermissionConfiguration {
                    account_level_permissions: Some(pb::AccountLevelPermissions {
                        block_public_access: pc.account_level_permissions.block_public_access.map(Into::into),
                    }),
                    bucket_level_permissions: Some(pb::BucketLevelPermissions {
                        access_control_list: pc.bucket_level_permissions.access_control_list.map(|acl| {
                            pb::AccessControlList {
                                allows_public_read_access: acl.allows_public_read_access,
                                allows_public_write_access: acl.allows_public_write_access,
                            }
                        }),
                        block_public_access: Some(pc.bucket_level_permissions.block_public_access.into()),
                        bucket_policy: pc.bucket_level_permissions.bucket_policy.map(|p| pb::BucketPolicyVerdict {
                            allows_public_read_access: opt_bool_to_pb(p.allows_public_read_access),
                            allows_public_write_access: opt_bool_to_pb(p.allows_public_write_access),
                        }),
                    }),
                }
            }),
        }
    }
}

impl From<pb::BucketPublicAccess> for macie::BucketPublicAccess {
    fn from(pa: pb::BucketPublicAccess) -> Self {
        macie::BucketPublicAccess {
            effective_permission: permission_from_pb(pa.effective_permission),
            permission_configuration: pa.permission_configuration.map(|pc| {
                let account = pc.account_level_permissions.unwrap_or_default();
                let bucket = pc.bucket_level_permissions.unwrap_or_default();
                macie::BucketPermissionConfiguration {
                    account_level_permissions: macie::AccountLevelPermissions {
                        block_public_access: account.block_public_access.map(Into::into),
                    },
                    bucket_level_permissions: macie::BucketLevelPermissions {
                        access_control_list: bucket.access_control_list.map(|acl| macie::AccessControlList {
                            allows_public_read_access: acl.allows_public_read_access,
                            allows_public_write_access: acl.allows_public_write_access,
                        }),
                        block_public_access: bucket.block_public_access.map(Into::into).unwrap_or_default(),
                        bucket_policy: bucket.bucket_policy.map(|p| macie::BucketPolicy {
                            allows_public_read_access: tri_from_pb(p.allows_public_read_access).as_bool(),
                            allows_public_write_access: tri_from_pb(p.allows_public_write_access).as_bool(),
                        }),
                    },
                }
            }),
        }
    }
}

impl From<&macie::BucketServerSideEncryption> for pb::BucketServerSideEncryption {
    fn from(e: &macie::BucketServerSideEncryption) -> Self {
        pb::BucketServerSideEncryption {
            r#type: match e.kind {
                None => pb::EncryptionType::Unspecified,
                Some(macie::EncryptionType::None) => pb::EncryptionType::None,
                Some(macie::EncryptionType::Aes256) => pb::EncryptionType::Aes256,
                Some(macie::EncryptionType::AwsKms) => pb::EncryptionType::AwsKms,
                Some(macie::EncryptionType::AwsKmsDsse) => pb::EncryptionType::AwsKmsDsse,
            }
            .into(),
            kms_master_key_id: e.kms_master_key_id.clone().unwrap_or_default(),
        }
    }
}

impl From<pb::BucketServerSideEncryption> for macie::BucketServerSideEncryption {
    fn from(e: pb::BucketServerSideEncryption) -> Self {
        macie::BucketServerSideEncryption {
            kms_master_key_id: some_if_non_empty(e.kms_master_key_id),
            kind: match pb::EncryptionType::try_from(e.r#type) {
                Ok(pb::EncryptionType::None) => Some(macie::EncryptionType::None),
                Ok(pb::EncryptionType::Aes256) => Some(macie::EncryptionType::Aes256),
                Ok(pb::EncryptionType::AwsKms) => Some(macie::EncryptionType::AwsKms),
                Ok(pb::EncryptionType::AwsKmsDsse) => Some(macie::EncryptionType::AwsKmsDsse),
                _ => None,
            },
        }
    }
}

impl From<&macie::BucketMetadata> for pb::BucketMetadata {
    fn from(b: &macie::BucketMetadata) -> Self {
        let public_access = b.public_access.as_ref().map(Into::into);
        let object_statistics = b.object_count.map(|object_count| pb::ObjectStats {
            object_count,
            size_in_bytes: b.size_in_bytes.unwrap_or_default(),
            size_in_bytes_compressed: b.size_in_bytes_compressed.unwrap_or_default(),
            classifiable_object_count: b.classifiable_object_count.unwrap_or_default(),
            classifiable_size_in_bytes: b.classifiable_size_in_bytes.unwrap_or_default(),
            unclassifiable_object_count: b.unclassifiable_object_count.map(ols_to_pb),
            unclassifiable_object_size_in_bytes: b.unclassifiable_object_size_in_bytes.map(ols_to_pb),
            object_count_by_encryption_type: b.object_count_by_encryption_type.map(encryption_counts_to_pb),
            by_storage_class: b
                .usage_by_storage_class
                .iter()
                .flatten()
                .map(|(class, usage)| pb::StorageClassUsage {
                    storage_class: class.clone(),
                    object_count: usage.count,
                    size_in_bytes: usage.size,
                })
                .collect(),
            multipart_parts: b.multipart_parts.unwrap_or_default(),
            source: match b.object_statistics_source {
                Some(ObjectStatsSource::InventoryReport) => pb::ObjectStatsSource::InventoryReport,
                Some(ObjectStatsSource::Full) => pb::ObjectStatsSource::Full,
                Some(ObjectStatsSource::Sampled) => pb::ObjectStatsSource::Sampled,
                Some(ObjectStatsSource::ManualRefresh) => pb::ObjectStatsSource::ManualRefresh,
                None => pb::ObjectStatsSource::Unspecified,
            }
            .into(),
            read_at_ms: 0,
        });
        pb::BucketMetadata {
            account_id: b.account_id.clone(),
            bucket_arn: b.bucket_arn.clone(),
            bucket_name: b.bucket_name.clone(),
            region: b.region.clone(),
            bucket_created_at_ms: ms(b.bucket_created_at),
            last_updated_ms: ms(b.last_updated),
            error_code: match b.error_code.as_deref() {
                Some("ACCESS_DENIED") => pb::BucketErrorCode::AccessDenied,
                _ => pb::BucketErrorCode::Unspecified,
            }
            .into(),
            error_message: b.error_message.clone().unwrap_or_default(),
            allows_unencrypted_object_uploads: tri_to_pb(b.allows_unencrypted_object_uploads),
            public_access,
            replication_details: b.replication_details.as_ref().map(|r| pb::ReplicationDetails {
                replicated: r.replicated,
                replicated_externally: opt_bool_to_pb(r.replicated_externally),
                replication_accounts: r.replication_accounts.clone(),
                unknown_reason: r.unknown_reason.clone().unwrap_or_default(),
            }),
            server_side_encryption: b.server_side_encryption.as_ref().map(Into::into),
            shared_access: shared_access_to_pb(b.shared_access).into(),
            tags: tags_to_pb(b.tags.as_deref().unwrap_or_default()),
            tags_unknown: b.tags.is_none(),
            automated_discovery_monitoring_status: b.automated_discovery_monitoring_status.as_str().to_owned(),
            job_details: Some(pb::JobDetails {
                is_defined_in_job: tri_to_pb(b.job_details.is_defined_in_job),
                is_monitored_by_job: tri_to_pb(b.job_details.is_monitored_by_job),
                last_job_id: b.job_details.last_job_id.clone().unwrap_or_default(),
                last_job_run_time_ms: b.job_details.last_job_run_time.map_or(0, |t| t.0),
            }),
            sensitivity_score: b.sensitivity_score,
            last_automated_discovery_time_ms: b.last_automated_discovery_time.map_or(0, |t| t.0),
            versioning: b.versioning,
            object_statistics,
            shared_with_accounts: b.shared_with_accounts.clone(),
            s3_policy_status_public: b.s3_policy_status_public,
            shared_with_cloud_front: opt_bool_to_pb(b.shared_with_cloud_front),
            policy_witnesses: b
                .policy_witnesses
                .iter()
                .map(|w| pb::PolicyWitness {
                    question: w.question.clone(),
                    principal: w.principal.clone(),
                    principal_account: w.principal_account.clone().unwrap_or_default(),
                    action: w.action.clone(),
                    resource: w.resource.clone(),
                    context: w
                        .context
                        .iter()
                        .map(|(key, values)| pb::ContextValues { key: key.clone(), values: values.clone() })
                        .collect(),
                })
                .collect(),
            policy_unknown_reasons: b.policy_unknown_reasons.clone(),
            public_access_reason: b.public_access_reason.clone(),
            unread_configuration: b.unread_configuration.clone(),
        }
    }
}

fn ols_to_pb(o: macie::ObjectLevelStatistics) -> pb::ObjectLevelStatistics {
    pb::ObjectLevelStatistics { file_type: o.file_type, storage_class: o.storage_class, total: o.total }
}

fn ols_from_pb(o: Option<pb::ObjectLevelStatistics>) -> macie::ObjectLevelStatistics {
    o.map_or_else(Default::default, |o| macie::ObjectLevelStatistics {
        file_type: o.file_type,
        storage_class: o.storage_class,
        total: o.total,
    })
}

impl From<pb::BucketMetadata> for macie::BucketMetadata {
    fn from(b: pb::BucketMetadata) -> Self {
        let public_access = b.public_access.map(Into::into);
        let stats = b.object_statistics;
        macie::BucketMetadata {
            account_id: b.account_id,
            allows_unencrypted_object_uploads: tri_from_pb(b.allows_unencrypted_object_uploads),
            bucket_arn: b.bucket_arn,
            bucket_created_at: ts(b.bucket_created_at_ms),
            bucket_name: b.bucket_name,
            classifiable_object_count: stats.as_ref().map(|s| s.classifiable_object_count),
            classifiable_size_in_bytes: stats.as_ref().map(|s| s.classifiable_size_in_bytes),
            error_code: match pb::BucketErrorCode::try_from(b.error_code) {
                Ok(pb::BucketErrorCode::AccessDenied) => Some("ACCESS_DENIED".to_owned()),
                _ => None,
            },
            error_message: some_if_non_empty(b.error_message),
            last_updated: ts(b.last_updated_ms),
            object_count: stats.as_ref().map(|s| s.object_count),
            object_count_by_encryption_type: stats
                .as_ref()
                .map(|s| encryption_counts_from_pb(s.object_count_by_encryption_type)),
            public_access,
            region: b.region,
            replication_details: b.replication_details.map(|r| macie::ReplicationDetails {
                replicated: r.replicated,
                replicated_externally: tri_from_pb(r.replicated_externally).as_bool(),
                replication_accounts: r.replication_accounts,
                unknown_reason: some_if_non_empty(r.unknown_reason),
            }),
            server_side_encryption: b.server_side_encryption.map(Into::into),
            shared_access: shared_access_from_pb(b.shared_access),
            size_in_bytes: stats.as_ref().map(|s| s.size_in_bytes),
            size_in_bytes_compressed: stats.as_ref().map(|s| s.size_in_bytes_compressed),
            // The administrator's answer: its tags were checked when the agent sent them.
            tags: (!b.tags_unknown)
                .then(|| b.tags.into_iter().map(|t| model::Tag { key: t.key, value: t.value }).collect()),
            automated_discovery_monitoring_status: macie::AutomatedDiscoveryMonitoringStatus::parse(
                &b.automated_discovery_monitoring_status,
            ),
            job_details: b.job_details.map_or_else(macie::JobDetails::none, |j| macie::JobDetails {
                is_defined_in_job: tri_from_pb(j.is_defined_in_job),
                is_monitored_by_job: tri_from_pb(j.is_monitored_by_job),
                last_job_id: some_if_non_empty(j.last_job_id),
                last_job_run_time: ts(j.last_job_run_time_ms),
            }),
            sensitivity_score: b.sensitivity_score,
            last_automated_discovery_time: ts(b.last_automated_discovery_time_ms),
            unclassifiable_object_count: stats.as_ref().map(|s| ols_from_pb(s.unclassifiable_object_count)),
            unclassifiable_object_size_in_bytes: stats
                .as_ref()
                .map(|s| ols_from_pb(s.unclassifiable_object_size_in_bytes)),
            versioning: b.versioning,
            shared_with_accounts: b.shared_with_accounts,
            s3_policy_status_public: b.s3_policy_status_public,
            object_statistics_source: stats.as_ref().and_then(|s| match pb::ObjectStatsSource::try_from(s.source) {
                Ok(pb::ObjectStatsSource::InventoryReport) => Some(ObjectStatsSource::InventoryReport),
                Ok(pb::ObjectStatsSource::Full) => Some(ObjectStatsSource::Full),
                Ok(pb::ObjectStatsSource::Sampled) => Some(ObjectStatsSource::Sampled),
                Ok(pb::ObjectStatsSource::ManualRefresh) => Some(ObjectStatsSource::ManualRefresh),
                _ => None,
            }),
            usage_by_storage_class: stats.as_ref().map(|s| {
                s.by_storage_class
                    .iter()
                    .map(|u| (u.storage_class.clone(), Usage { count: u.object_count, size: u.size_in_bytes }))
                    .collect()
            }),
            multipart_parts: stats.as_ref().map(|s| s.multipart_parts),
            shared_with_cloud_front: tri_from_pb(b.shared_with_cloud_front).as_bool(),
            policy_witnesses: b
                .policy_witnesses
                .into_iter()
                .map(|w| macie::PolicyWitness {
                    question: w.question,
                    principal: w.principal,
                    principal_account: some_if_non_empty(w.principal_account),
                    action: w.action,
                    resource: w.resource,
                    context: w.context.into_iter().map(|c| (c.key, c.values)).collect(),
                })
                .collect(),
            policy_unknown_reasons: b.policy_unknown_reasons,
            public_access_reason: b.public_access_reason,
            unread_configuration: b.unread_configuration,
        }
    }
}

fn sens_to_pb(s: macie::SensitivityAggregations) -> pb::SensitivityAggregations {
    pb::SensitivityAggregations {
        classifiable_size_in_bytes: s.classifiable_size_in_bytes,
        publicly_accessible_count: s.publicly_accessible_count,
        total_count: s.total_count,
        total_size_in_bytes: s.total_size_in_bytes,
    }
}

fn sens_from_pb(s: Option<pb::SensitivityAggregations>) -> macie::SensitivityAggregations {
    let s = s.unwrap_or_default();
    macie::SensitivityAggregations {
        classifiable_size_in_bytes: s.classifiable_size_in_bytes,
        publicly_accessible_count: s.publicly_accessible_count,
        total_count: s.total_count,
        total_size_in_bytes: s.total_size_in_bytes,
    }
}

impl From<&macie::BucketStatistics> for pb::GetBucketStatisticsResponse {
    fn from(s: &macie::BucketStatistics) -> Self {
        let p = s.bucket_count_by_effective_permission;
        let e = s.bucket_count_by_encryption_type;
        let r = s.bucket_count_by_object_encryption_requirement;
        let a = s.bucket_count_by_shared_access_type;
        let v = s.bucket_statistics_by_sensitivity;
        Self {
            bucket_count: s.bucket_count,
            bucket_count_by_effective_permission: Some(pb::BucketCountByEffectivePermission {
                publicly_accessible: p.publicly_accessible,
                publicly_readable: p.publicly_readable,
                publicly_writable: p.publicly_writable,
                unknown: p.unknown,
            }),
            bucket_count_by_encryption_type: Some(pb::BucketCountByEncryptionType {
                kms_managed: e.kms_managed,
                s3_managed: e.s3_managed,
                unencrypted: e.unencrypted,
                unknown: e.unknown,
            }),
            bucket_count_by_object_encryption_requirement: Some(pb::BucketCountPolicyAllowsUnencryptedObjectUploads {
                allows_unencrypted_object_uploads: r.allows_unencrypted_object_uploads,
                denies_unencrypted_object_uploads: r.denies_unencrypted_object_uploads,
                unknown: r.unknown,
            }),
            bucket_count_by_shared_access_type: Some(pb::BucketCountBySharedAccessType {
                external: a.external,
                internal: a.internal,
                not_shared: a.not_shared,
                unknown: a.unknown,
            }),
            bucket_statistics_by_sensitivity: Some(pb::BucketStatisticsBySensitivity {
                classification_error: Some(sens_to_pb(v.classification_error)),
                not_classified: Some(sens_to_pb(v.not_classified)),
                not_sensitive: Some(sens_to_pb(v.not_sensitive)),
                sensitive: Some(sens_to_pb(v.sensitive)),
            }),
            classifiable_object_count: s.classifiable_object_count,
            classifiable_size_in_bytes: s.classifiable_size_in_bytes,
            last_updated_ms: ms(s.last_updated),
            object_count: s.object_count,
            size_in_bytes: s.size_in_bytes,
            size_in_bytes_compressed: s.size_in_bytes_compressed,
            unclassifiable_object_count: Some(ols_to_pb(s.unclassifiable_object_count)),
            unclassifiable_object_size_in_bytes: Some(ols_to_pb(s.unclassifiable_object_size_in_bytes)),
            members_without_agent: s.members_without_agent,
            members_pending: s.members_pending,
        }
    }
}

impl From<pb::GetBucketStatisticsResponse> for macie::BucketStatistics {
    fn from(s: pb::GetBucketStatisticsResponse) -> Self {
        let p = s.bucket_count_by_effective_permission.unwrap_or_default();
        let e = s.bucket_count_by_encryption_type.unwrap_or_default();
        let r = s.bucket_count_by_object_encryption_requirement.unwrap_or_default();
        let a = s.bucket_count_by_shared_access_type.unwrap_or_default();
        let v = s.bucket_statistics_by_sensitivity.unwrap_or_default();
        Self {
            bucket_count: s.bucket_count,
            bucket_count_by_effective_permission: macie::BucketCountByEffectivePermission {
                publicly_accessible: p.publicly_accessible,
                publicly_readable: p.publicly_readable,
                publicly_writable: p.publicly_writable,
                unknown: p.unknown,
            },
            bucket_count_by_encryption_type: macie::BucketCountByEncryptionType {
                kms_managed: e.kms_managed,
                s3_managed: e.s3_managed,
                unencrypted: e.unencrypted,
                unknown: e.unknown,
            },
            bucket_count_by_object_encryption_requirement: macie::BucketCountPolicyAllowsUnencryptedObjectUploads {
                allows_unencrypted_object_uploads: r.allows_unencrypted_object_uploads,
                denies_unencrypted_object_uploads: r.denies_unencrypted_object_uploads,
                unknown: r.unknown,
            },
            bucket_count_by_shared_access_type: macie::BucketCountBySharedAccessType {
                external: a.external,
                internal: a.internal,
                not_shared: a.not_shared,
                unknown: a.unknown,
            },
            bucket_statistics_by_sensitivity: macie::BucketStatisticsBySensitivity {
                classification_error: sens_from_pb(v.classification_error),
                not_classified: sens_from_pb(v.not_classified),
                not_sensitive: sens_from_pb(v.not_sensitive),
                sensitive: sens_from_pb(v.sensitive),
            },
            classifiable_object_count: s.classifiable_object_count,
            classifiable_size_in_bytes: s.classifiable_size_in_bytes,
            last_updated: ts(s.last_updated_ms),
            object_count: s.object_count,
            size_in_bytes: s.size_in_bytes,
            size_in_bytes_compressed: s.size_in_bytes_compressed,
            unclassifiable_object_count: ols_from_pb(s.unclassifiable_object_count),
            unclassifiable_object_size_in_bytes: ols_from_pb(s.unclassifiable_object_size_in_bytes),
            members_without_agent: s.members_without_agent,
            members_pending: s.members_pending,
        }
    }
}

impl From<&macie::Member> for pb::Member {
    fn from(m: &macie::Member) -> Self {
        pb::Member {
            account_id: m.account_id.clone(),
            regions: m
                .regions
                .iter()
                .map(|r| pb::RegionStatus {
                    region: r.region.clone(),
                    last_updated_ms: ms(r.last_updated),
                    generation: r.generation,
                    bucket_count: r.bucket_count,
                    refresh_done: r.refresh_done,
                    refresh_total: r.refresh_total,
                })
                .collect(),
            connection_state: match m.connection_state {
                macie::ConnectionState::Connected => pb::ConnectionState::Connected,
                macie::ConnectionState::Disconnected => pb::ConnectionState::Disconnected,
            }
            .into(),
            last_contact_ms: ms(m.last_contact),
            last_updated_ms: ms(m.last_updated),
            agent_version: m.agent_version.clone(),
            canonical_user_id: m.canonical_user_id.clone(),
            bucket_count: m.bucket_count,
            reported_by: m.reported_by.clone(),
            problem: m.problem.clone().unwrap_or_default(),
            relationship_status: match m.relationship_status {
                macie::MemberStatus::Enabled => pb::MemberStatus::Enabled,
                macie::MemberStatus::NoAgent => pb::MemberStatus::NoAgent,
                macie::MemberStatus::AccountSuspended => pb::MemberStatus::AccountSuspended,
                macie::MemberStatus::Removed => pb::MemberStatus::Removed,
            }
            .into(),
        }
    }
}

impl From<pb::Member> for macie::Member {
    fn from(m: pb::Member) -> Self {
        macie::Member {
            account_id: m.account_id,
            regions: m
                .regions
                .into_iter()
                .map(|r| macie::RegionStatus {
                    region: r.region,
                    last_updated: ts(r.last_updated_ms),
                    generation: r.generation,
                    bucket_count: r.bucket_count,
                    refresh_done: r.refresh_done,
                    refresh_total: r.refresh_total,
                })
                .collect(),
            connection_state: match pb::ConnectionState::try_from(m.connection_state) {
                Ok(pb::ConnectionState::Connected) => macie::ConnectionState::Connected,
                _ => macie::ConnectionState::Disconnected,
            },
            last_contact: ts(m.last_contact_ms),
            last_updated: ts(m.last_updated_ms),
            agent_version: m.agent_version,
            canonical_user_id: m.canonical_user_id,
            bucket_count: m.bucket_count,
            reported_by: m.reported_by,
            problem: Some(m.problem).filter(|p| !p.is_empty()),
            relationship_status: match pb::MemberStatus::try_from(m.relationship_status) {
                Ok(pb::MemberStatus::Enabled) => macie::MemberStatus::Enabled,
                Ok(pb::MemberStatus::AccountSuspended) => macie::MemberStatus::AccountSuspended,
                Ok(pb::MemberStatus::Removed) => macie::MemberStatus::Removed,
                _ => macie::MemberStatus::NoAgent,
            },
        }
    }
}

fn posture_reason_to_pb(r: macie::PostureReason) -> pb::PostureReason {
    match r {
        macie::PostureReason::Public => pb::PostureReason::Public,
        macie::PostureReason::SharedExternally => pb::PostureReason::SharedExternally,
        macie::PostureReason::SharedInternally => pb::PostureReason::SharedInternally,
        macie::PostureReason::ReplicatedExternally => pb::PostureReason::ReplicatedExternally,
        macie::PostureReason::AllowsUnencryptedUploads => pb::PostureReason::AllowsUnencryptedUploads,
    }
}

impl From<&macie::PostureBucket> for pb::PostureBucket {
    fn from(b: &macie::PostureBucket) -> Self {
        pb::PostureBucket {
            account_id: b.account_id.clone(),
            region: b.region.clone(),
            bucket_name: b.bucket_name.clone(),
            reasons: b.reasons.iter().map(|r| posture_reason_to_pb(*r).into()).collect(),
            effective_permission: permission_to_pb(b.effective_permission).into(),
            shared_access: shared_access_to_pb(b.shared_access).into(),
            shared_with_accounts: b.shared_with_accounts.clone(),
            shared_internally_with: b.shared_internally_with.clone(),
        }
    }
}

impl TryFrom<pb::PostureBucket> for macie::PostureBucket {
    type Error = ConvertError;

    fn try_from(b: pb::PostureBucket) -> Result<Self, ConvertError> {
        let reasons = b
            .reasons
            .iter()
            .map(|r| match pb::PostureReason::try_from(*r) {
                Ok(pb::PostureReason::Public) => Ok(macie::PostureReason::Public),
                Ok(pb::PostureReason::SharedExternally) => Ok(macie::PostureReason::SharedExternally),
                Ok(pb::PostureReason::SharedInternally) => Ok(macie::PostureReason::SharedInternally),
                Ok(pb::PostureReason::ReplicatedExternally) => Ok(macie::PostureReason::ReplicatedExternally),
                Ok(pb::PostureReason::AllowsUnencryptedUploads) => Ok(macie::PostureReason::AllowsUnencryptedUploads),
                _ => Err(invalid("reasons", format!("unknown posture reason {r}"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(macie::PostureBucket {
            account_id: b.account_id,
            region: b.region,
            bucket_name: b.bucket_name,
            reasons,
            effective_permission: permission_from_pb(b.effective_permission),
            shared_access: shared_access_from_pb(b.shared_access),
            shared_with_accounts: b.shared_with_accounts,
            shared_internally_with: b.shared_internally_with,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable_facts() -> model::BucketFacts {
        model::BucketFacts {
            key: BucketKey::parse("111111111111", "eu-west-1", "bucket-b").unwrap(),
            created_at: 1,
            read_at: 2,
            state: model::BucketState::Readable(Box::new(model::BucketConfig {
                tags: vec![model::Tag { key: "k".into(), value: String::new() }],
                versioning: true,
                default_encryption: Some(model::DefaultEncryption {
                    algorithm: "aws:kms".into(),
                    kms_master_key_id: Some("key".into()),
                }),
                block_public_access: Some(model::BlockPublicAccess { block_public_acls: true, ..Default::default() }),
                acl: Some(model::Acl {
                    owner_canonical_id: "owner".into(),
                    grants: vec![model::AclGrant {
                        grantee: model::Grantee::Group(model::ALL_USERS_GROUP.into()),
                        permission: model::AclPermission::Read,
                    }],
                }),
                object_ownership: Some(model::ObjectOwnership::ObjectWriter),
                policy: Some("{}".into()),
                policy_status_public: Some(false),
                replication: Some(model::Replication {
                    role: "r".into(),
                    rules: vec![model::ReplicationRule {
                        id: "1".into(),
                        enabled: true,
                        destination_bucket_arn: "arn:aws:s3:::d".into(),
                        destination_account: None,
                    }],
                }),
                objects: Some(Box::new({
                    let mut o = ObjectStats::empty(ObjectStatsSource::Sampled, 3);
                    o.add_object("a.csv", 5, Some("GLACIER"), crate::objects::ObjectEncryption::KmsManaged);
                    o.add_part(7, None);
                    o
                })),
                unread: vec![model::UnreadCall { call: model::ConfigCall::Versioning, error: "unparsable".into() }],
            })),
        }
    }

    #[test]
    fn facts_round_trip_through_protobuf() {
        let facts = readable_facts();
        let back = model::BucketFacts::try_from(pb::BucketFacts::from(&facts)).unwrap();
        assert_eq!(back, facts);
        let error = model::BucketFacts {
            state: model::BucketState::Error(model::BucketError {
                code: model::BucketErrorCode::AccessDenied,
                message: "`GetBucketPolicy` was denied".into(),
            }),
            ..facts
        };
        assert_eq!(model::BucketFacts::try_from(pb::BucketFacts::from(&error)).unwrap(), error);
    }

    #[test]
    fn malformed_facts_are_rejected_with_the_field_name() {
        let mut facts = pb::BucketFacts::from(&readable_facts());
        facts.account_id = "not-an-account".into();
        let err = model::BucketFacts::try_from(facts).unwrap_err();
        assert!(err.to_string().contains("facts.account_id"), "{err}");
        let mut facts = pb::BucketFacts::from(&readable_facts());
        facts.acl.as_mut().unwrap().grants[0].permission = 99;
        assert!(model::BucketFacts::try_from(facts).is_err());
    }

    /// One change to a fixture.
    type Change = Box<dyn FnOnce(&mut pb::BucketFacts)>;

    /// Converts facts changed by `change`; the error's text, or "" when they convert.
    fn convert_changed(change: impl FnOnce(&mut pb::BucketFacts)) -> String {
        let mut facts = pb::BucketFacts::from(&readable_facts());
        change(&mut facts);
        model::BucketFacts::try_from(facts).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn s3s_limits_are_checked_at_the_edge_one_by_one() {
        assert_eq!(convert_changed(|_| {}), "", "the fixture is within every limit");
        let cases: Vec<(&str, Change)> = vec![
            ("facts.bucket_name", Box::new(|f| f.bucket_name = "a".repeat(200_000))),
            ("facts.bucket_name", Box::new(|f| f.bucket_name = "ab".into())),
            ("facts.bucket_name", Box::new(|f| f.bucket_name = "Upper_Case".into())),
            ("facts.tags", Box::new(|f| f.tags = vec![pb::Tag { key: "k".into(), value: "v".into() }; MAX_TAGS + 1])),
            ("facts.tags.key", Box::new(|f| f.tags[0].key = "k".repeat(MAX_TAG_KEY_CHARS + 1))),
            ("facts.tags.key", Box::new(|f| f.tags[0].key = String::new())),
            ("facts.tags.value", Box::new(|f| f.tags[0].value = "é".repeat(MAX_TAG_VALUE_CHARS + 1))),
            (
                "facts.acl.grants",
                Box::new(|f| {
                    let acl = f.acl.as_mut().unwrap();
                    acl.grants = vec![acl.grants[0].clone(); MAX_ACL_GRANTS + 1];
                }),
            ),
            (
                "facts.acl.owner_canonical_id",
                Box::new(|f| f.acl.as_mut().unwrap().owner_canonical_id = "c".repeat(MAX_CANONICAL_ID_BYTES + 1)),
            ),
            (
                "acl.grants.grantee",
                Box::new(|f| f.acl.as_mut().unwrap().grants[0].grantee = "g".repeat(MAX_IDENTIFIER_BYTES + 1)),
            ),
            (
                "facts.replication.rules",
                Box::new(|f| {
                    let r = f.replication.as_mut().unwrap();
                    r.rules = vec![r.rules[0].clone(); MAX_REPLICATION_RULES + 1];
                }),
            ),
            (
                "facts.replication.rules.destination_bucket_arn",
                Box::new(|f| {
                    f.replication.as_mut().unwrap().rules[0].destination_bucket_arn =
                        "a".repeat(MAX_IDENTIFIER_BYTES + 1)
                }),
            ),
            (
                "facts.default_encryption.kms_master_key_id",
                Box::new(|f| {
                    f.default_encryption.as_mut().unwrap().kms_master_key_id = "k".repeat(MAX_IDENTIFIER_BYTES + 1)
                }),
            ),
            (
                "facts.unread",
                Box::new(|f| {
                    let one = f.unread[0].clone();
                    f.unread = vec![one; model::ConfigCall::ALL.len() + 1];
                }),
            ),
            (
                "objects.by_storage_class",
                Box::new(|f| {
                    let objects = f.objects.as_mut().unwrap();
                    objects.by_storage_class = vec![objects.by_storage_class[0].clone(); MAX_STORAGE_CLASSES + 1];
                }),
            ),
        ];
        for (field, change) in cases {
            let error = convert_changed(change);
            assert!(error.contains(&format!("`{field}`")), "expected a rejection naming {field}: {error:?}");
        }
        // At the limits, everything converts.
        assert_eq!(convert_changed(|f| f.bucket_name = "a".repeat(63)), "");
        assert_eq!(
            convert_changed(|f| f.tags = vec![pb::Tag { key: "k".repeat(128), value: "é".repeat(256) }; MAX_TAGS]),
            ""
        );
        // A legacy name only where it can exist.
        assert_eq!(convert_changed(|f| (f.region, f.bucket_name) = ("us-east-1".into(), "Legacy_Name".into())), "");
    }

    #[test]
    fn a_policy_over_s3s_limit_is_not_kept_and_its_verdicts_are_unknown() {
        let mut facts = pb::BucketFacts::from(&readable_facts());
        facts.policy = Some("x".repeat(MAX_BUCKET_POLICY_BYTES + 1));
        let facts = model::BucketFacts::try_from(facts).unwrap();
        let config = facts.config().unwrap();
        assert_eq!(config.policy, None);
        let unread = config.unread.iter().find(|u| u.call == model::ConfigCall::Policy).expect("the policy is unread");
        assert!(unread.error.contains("20 KB"), "{}", unread.error);
        let mut at_limit = pb::BucketFacts::from(&readable_facts());
        at_limit.policy = Some("x".repeat(MAX_BUCKET_POLICY_BYTES));
        assert!(model::BucketFacts::try_from(at_limit).unwrap().config().unwrap().policy.is_some());
    }

    #[test]
    fn event_causes_are_bounded_and_name_an_event() {
        use crate::findings::Cause;
        let good = pb::EventCause {
            event_name: "PutBucketPolicy".into(),
            event_time_ms: 5,
            event_id: "e".into(),
            actor: "arn:aws:iam::111111111111:user/a".into(),
            actor_type: "IAMUser".into(),
            identity: Some(pb::UserIdentity {
                r#type: "AssumedRole".into(),
                session_issuer: Some(pb::SessionIssuer {
                    arn: "arn:aws:iam::111111111111:role/r".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            source_ip: "192.0.2.1".into(),
        };
        assert!(Cause::try_from(good.clone()).is_ok());
        for (field, bad) in [
            ("cause.actor", pb::EventCause { actor: "a".repeat(MAX_EVENT_STRING_BYTES + 1), ..good.clone() }),
            ("cause.event_id", pb::EventCause { event_id: "e".repeat(MAX_EVENT_STRING_BYTES + 1), ..good.clone() }),
            ("cause.event_name", pb::EventCause { event_name: String::new(), ..good.clone() }),
            ("cause.event_time_ms", pb::EventCause { event_time_ms: 0, ..good.clone() }),
            ("cause.source_ip", pb::EventCause { source_ip: "1".repeat(MAX_EVENT_STRING_BYTES + 1), ..good.clone() }),
            (
                "cause.identity.session_issuer.arn",
                pb::EventCause {
                    identity: Some(pb::UserIdentity {
                        session_issuer: Some(pb::SessionIssuer {
                            arn: "a".repeat(MAX_EVENT_STRING_BYTES + 1),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..good.clone()
                },
            ),
        ] {
            let error = Cause::try_from(bad).unwrap_err().to_string();
            assert!(error.contains(field), "{field}: {error}");
        }
    }
}

mod findings {
    //! Findings between protobuf and domain.

    use crate::findings::{Actor, BucketSnapshot, Cause, Finding, FindingType, Session, SessionIssuer};
    use crate::pb;

    fn kind_to_pb(kind: FindingType) -> pb::FindingType {
        match kind {
            FindingType::S3BucketPublic => pb::FindingType::S3BucketPublic,
            FindingType::S3BucketSharedExternally => pb::FindingType::S3BucketSharedExternally,
            FindingType::S3BucketReplicatedExternally => pb::FindingType::S3BucketReplicatedExternally,
            FindingType::S3BlockPublicAccessDisabled => pb::FindingType::S3BlockPublicAccessDisabled,
            FindingType::S3BucketSharedWithCloudFront => pb::FindingType::S3BucketSharedWithCloudFront,
            FindingType::S3BucketEncryptionDisabled => pb::FindingType::S3BucketEncryptionDisabled,
        }
    }

    fn kind_from_pb(kind: i32) -> Option<FindingType> {
        Some(match pb::FindingType::try_from(kind).ok()? {
            pb::FindingType::S3BucketPublic => FindingType::S3BucketPublic,
            pb::FindingType::S3BucketSharedExternally => FindingType::S3BucketSharedExternally,
            pb::FindingType::S3BucketReplicatedExternally => FindingType::S3BucketReplicatedExternally,
            pb::FindingType::S3BlockPublicAccessDisabled => FindingType::S3BlockPublicAccessDisabled,
            pb::FindingType::S3BucketSharedWithCloudFront => FindingType::S3BucketSharedWithCloudFront,
            pb::FindingType::S3BucketEncryptionDisabled => FindingType::S3BucketEncryptionDisabled,
            pb::FindingType::Unspecified => return None,
        })
    }

    fn some(s: String) -> Option<String> {
        (!s.is_empty()).then_some(s)
    }

    impl From<&Actor> for pb::UserIdentity {
        fn from(a: &Actor) -> Self {
            let text = |v: &Option<String>| v.clone().unwrap_or_default();
            let session = a.session.as_ref();
            pb::UserIdentity {
                r#type: text(&a.kind),
                arn: text(&a.arn),
                principal_id: text(&a.principal_id),
                account_id: text(&a.account_id),
                user_name: text(&a.user_name),
                access_key_id: text(&a.access_key_id),
                invoked_by: text(&a.invoked_by),
                session_issuer: session.and_then(|s| s.issuer.as_ref()).map(|i| pb::SessionIssuer {
                    r#type: text(&i.kind),
                    arn: text(&i.arn),
                    principal_id: text(&i.principal_id),
                    account_id: text(&i.account_id),
                    user_name: text(&i.user_name),
                }),
                session_created_ms: session.and_then(|s| s.created_at).unwrap_or_default(),
                mfa_authenticated: session.and_then(|s| s.mfa_authenticated),
            }
        }
    }

    impl From<pb::UserIdentity> for Actor {
        fn from(u: pb::UserIdentity) -> Self {
            let has_session = u.session_issuer.is_some() || u.session_created_ms > 0 || u.mfa_authenticated.is_some();
            let session = has_session.then(|| Session {
                issuer: u.session_issuer.map(|i| SessionIssuer {
                    kind: some(i.r#type),
                    arn: some(i.arn),
                    principal_id: some(i.principal_id),
                    account_id: some(i.account_id),
                    user_name: some(i.user_name),
                }),
                created_at: (u.session_created_ms > 0).then_some(u.session_created_ms),
                mfa_authenticated: u.mfa_authenticated,
            });
            Actor {
                kind: some(u.r#type),
                arn: some(u.arn),
                principal_id: some(u.principal_id),
                account_id: some(u.account_id),
                user_name: some(u.user_name),
                access_key_id: some(u.access_key_id),
                invoked_by: some(u.invoked_by),
                session,
            }
        }
    }

    /// What older peers sent instead of the identity: its ARN (or the invoking service, or
    /// the account) and its type.
    fn actor_summary(actor: Option<&Actor>) -> (String, String) {
        let Some(a) = actor else { return Default::default() };
        let name = a.arn.clone().or_else(|| a.invoked_by.clone()).or_else(|| a.account_id.clone());
        (name.unwrap_or_default(), a.kind.clone().unwrap_or_default())
    }

    /// The actor of an older peer, which sent only the summary.
    fn actor_from_summary(name: String, kind: String) -> Option<Actor> {
        if name.is_empty() && kind.is_empty() {
            return None;
        }
        Some(Actor { kind: some(kind), arn: some(name).filter(|n| n.starts_with("arn:")), ..Actor::default() })
    }

    impl From<&Cause> for pb::FindingAction {
        fn from(c: &Cause) -> Self {
            let (actor, actor_type) = actor_summary(c.actor.as_ref());
            pb::FindingAction {
                api: c.api.clone().unwrap_or_default(),
                event_time_ms: c.event_time,
                actor,
                actor_type,
                event_id: c.event_id.clone().unwrap_or_default(),
                identity: c.actor.as_ref().map(Into::into),
                source_ip: c.source_ip.clone().unwrap_or_default(),
            }
        }
    }

    impl From<pb::FindingAction> for Cause {
        fn from(a: pb::FindingAction) -> Self {
            Cause {
                api: some(a.api),
                event_time: a.event_time_ms,
                actor: match a.identity {
                    Some(identity) => Some(identity.into()),
                    None => actor_from_summary(a.actor, a.actor_type),
                },
                source_ip: some(a.source_ip),
                event_id: some(a.event_id),
            }
        }
    }

    /// An event cause from an agent: its strings are CloudTrail's, each bounded at
    /// [`super::MAX_EVENT_STRING_BYTES`], and it names an event.
    impl TryFrom<pb::EventCause> for Cause {
        type Error = super::ConvertError;

        fn try_from(e: pb::EventCause) -> Result<Self, super::ConvertError> {
            super::non_empty(&e.event_name, "cause.event_name")?;
            let limit = super::MAX_EVENT_STRING_BYTES;
            for (field, value) in [
                ("cause.event_name", &e.event_name),
                ("cause.actor", &e.actor),
                ("cause.actor_type", &e.actor_type),
                ("cause.event_id", &e.event_id),
                ("cause.source_ip", &e.source_ip),
            ] {
                super::bounded(field, value, limit)?;
            }
            if let Some(u) = &e.identity {
                for (field, value) in [
                    ("cause.identity.type", &u.r#type),
                    ("cause.identity.arn", &u.arn),
                    ("cause.identity.principal_id", &u.principal_id),
                    ("cause.identity.account_id", &u.account_id),
                    ("cause.identity.user_name", &u.user_name),
                    ("cause.identity.access_key_id", &u.access_key_id),
                    ("cause.identity.invoked_by", &u.invoked_by),
                ] {
                    super::bounded(field, value, limit)?;
                }
                if let Some(i) = &u.session_issuer {
                    for (field, value) in [
                        ("cause.identity.session_issuer.type", &i.r#type),
                        ("cause.identity.session_issuer.arn", &i.arn),
                        ("cause.identity.session_issuer.principal_id", &i.principal_id),
                        ("cause.identity.session_issuer.account_id", &i.account_id),
                        ("cause.identity.session_issuer.user_name", &i.user_name),
                    ] {
                        super::bounded(field, value, limit)?;
                    }
                }
                if u.session_created_ms < 0 {
                    return Err(super::invalid("cause.identity.session_created_ms", "must not be negative"));
                }
            }
            if e.event_time_ms <= 0 {
                return Err(super::invalid("cause.event_time_ms", "must be a positive Unix time in milliseconds"));
            }
            Ok(Cause {
                api: Some(e.event_name),
                event_time: e.event_time_ms,
                actor: match e.identity {
                    Some(identity) => Some(identity.into()),
                    None => actor_from_summary(e.actor, e.actor_type),
                },
                source_ip: some(e.source_ip),
                event_id: some(e.event_id),
            })
        }
    }

    impl From<&BucketSnapshot> for pb::FindingBucket {
        fn from(b: &BucketSnapshot) -> Self {
            pb::FindingBucket {
                created_at_ms: b.created_at,
                owner_id: b.owner_id.clone().unwrap_or_default(),
                public_access: b.public_access.as_ref().map(Into::into),
                default_encryption: b.default_encryption.as_ref().map(Into::into),
                allows_unencrypted_object_uploads: super::tri_to_pb(b.allows_unencrypted_object_uploads),
                tags: super::tags_to_pb(&b.tags),
            }
        }
    }

    impl From<pb::FindingBucket> for BucketSnapshot {
        fn from(b: pb::FindingBucket) -> Self {
            BucketSnapshot {
                created_at: b.created_at_ms,
                owner_id: some(b.owner_id),
                public_access: b.public_access.map(Into::into),
                default_encryption: b.default_encryption.map(Into::into),
                allows_unencrypted_object_uploads: super::tri_from_pb(b.allows_unencrypted_object_uploads),
                // The administrator's answer: the tags were checked when the agent sent them.
                tags: b.tags.into_iter().map(|t| crate::model::Tag { key: t.key, value: t.value }).collect(),
            }
        }
    }

    impl From<&Finding> for pb::Finding {
        fn from(f: &Finding) -> Self {
            pb::Finding {
                id: f.id.clone(),
                r#type: kind_to_pb(f.kind).into(),
                account_id: f.account_id.to_string(),
                region: f.region.to_string(),
                bucket_name: f.bucket_name.clone(),
                created_at_ms: f.created_at,
                updated_at_ms: f.updated_at,
                count: f.count,
                archived: f.archived,
                first_action: Some((&f.first_action).into()),
                last_action: Some((&f.last_action).into()),
                sequence: f.sequence,
                bucket: f.bucket_state.as_ref().map(Into::into),
                suppressed_by: f.suppressed_by.clone().unwrap_or_default(),
            }
        }
    }

    impl TryFrom<pb::Finding> for Finding {
        type Error = super::ConvertError;

        fn try_from(f: pb::Finding) -> Result<Self, super::ConvertError> {
            Ok(Finding {
                id: f.id,
                kind: kind_from_pb(f.r#type).ok_or_else(|| super::invalid("finding.type", f.r#type.to_string()))?,
                account_id: super::account_id("finding.account_id", f.account_id)?,
                region: super::region("finding.region", f.region)?,
                bucket_name: f.bucket_name,
                created_at: f.created_at_ms,
                updated_at: f.updated_at_ms,
                count: f.count,
                archived: f.archived,
                first_action: f.first_action.unwrap_or_default().into(),
                last_action: f.last_action.unwrap_or_default().into(),
                bucket_state: f.bucket.map(Into::into),
                suppressed_by: some(f.suppressed_by),
                sequence: f.sequence,
            })
        }
    }

    #[test]
    fn agent_counters_are_checked_at_the_edge_and_name_their_field() {
        let good =
            pb::ObjectStats { object_count: 3, source: pb::ObjectStatsSource::Full.into(), ..Default::default() };
        use crate::objects::ObjectStats;
        assert!(ObjectStats::try_from(good.clone()).is_ok());
        let negative = pb::ObjectStats { size_in_bytes_compressed: -1, ..good.clone() };
        let error = ObjectStats::try_from(negative).unwrap_err().to_string();
        assert!(error.contains("objects.size_in_bytes_compressed") && error.contains("negative"), "{error}");
        let huge = pb::ObjectStats {
            by_storage_class: vec![pb::StorageClassUsage {
                storage_class: "STANDARD".into(),
                object_count: 1,
                size_in_bytes: i64::MAX,
            }],
            ..good.clone()
        };
        let error = ObjectStats::try_from(huge).unwrap_err().to_string();
        assert!(error.contains("objects.by_storage_class.size_in_bytes"), "{error}");
        let nested = pb::ObjectStats {
            unclassifiable_object_count: Some(pb::ObjectLevelStatistics { file_type: -5, storage_class: 0, total: 0 }),
            ..good
        };
        assert!(ObjectStats::try_from(nested).unwrap_err().to_string().contains("unclassifiable_object_count"));
    }
}
