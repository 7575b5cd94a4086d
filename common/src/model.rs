//! Domain types: the raw facts an agent reads from S3, and the keys that identify them.
//!
//! These are what the administrator stores and reasons about. They are converted from and to
//! the protobuf messages at the edge (`crate::convert`), so the core logic never speaks prost.

use serde::{Deserialize, Serialize};

pub use crate::time::{now_ms, UnixMillis};

/// `account \0 region \0 rest`, with the account and the Region checked.
fn split_key(bytes: &[u8]) -> Option<(AccountId, Region, &str)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (account, text) = text.split_once('\0')?;
    let (region, rest) = text.split_once('\0')?;
    Some((AccountId::parse(account).ok()?, Region::parse(region).ok()?, rest))
}

/// One bucket: account, Region and name. Bucket names are globally unique in a partition,
/// but the key carries the scope so that per-scope ranges are contiguous in the store. Its
/// byte layout (`account \0 region \0 bucket`) is written and read only here; the typed
/// account and Region cannot contain the separator.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BucketKey {
    pub account_id: AccountId,
    pub region: Region,
    pub bucket_name: String,
}

impl BucketKey {
    pub fn new(account_id: AccountId, region: Region, bucket_name: impl Into<String>) -> Self {
        Self { account_id, region, bucket_name: bucket_name.into() }
    }

    /// A key from unchecked text, checking the account and the Region.
    pub fn parse(account_id: &str, region: &str, bucket_name: &str) -> Result<Self, InvalidId> {
        Ok(Self::new(AccountId::parse(account_id)?, Region::parse(region)?, bucket_name))
    }

    /// `account \0 region \0 bucket`: sorts by scope, then name.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Self::scope_prefix(&self.account_id, &self.region);
        out.extend_from_slice(self.bucket_name.as_bytes());
        out
    }

    /// The key [`BucketKey::encode`] wrote; `None` for bytes that are not one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (account_id, region, rest) = split_key(bytes)?;
        (!rest.is_empty()).then(|| Self::new(account_id, region, rest))
    }

    /// The key prefix shared by every bucket of one account.
    pub fn account_prefix(account_id: &AccountId) -> Vec<u8> {
        let mut out = Vec::with_capacity(account_id.len() + 1);
        out.extend_from_slice(account_id.as_bytes());
        out.push(0);
        out
    }

    /// The key prefix shared by every bucket of one scope (`account \0 region \0`), which is
    /// also the key of the scope's own record.
    pub fn scope_prefix(account_id: &AccountId, region: &Region) -> Vec<u8> {
        let mut out = Self::account_prefix(account_id);
        out.reserve(region.len() + 1);
        out.extend_from_slice(region.as_bytes());
        out.push(0);
        out
    }

    /// The `(account, region)` a [`BucketKey::scope_prefix`] names.
    pub fn decode_scope(bytes: &[u8]) -> Option<(AccountId, Region)> {
        let (account_id, region, rest) = split_key(bytes)?;
        rest.is_empty().then_some((account_id, region))
    }

    pub fn arn(&self) -> String {
        format!("arn:aws:s3:::{}", self.bucket_name)
    }
}

impl BucketKey {
    /// The key in its stored and indexed form.
    pub fn stored(&self) -> StoredKey {
        StoredKey(self.encode())
    }
}

/// A bucket key in its stored and indexed form: the bytes [`BucketKey::encode`] writes,
/// checked to be one wherever they come from. Ordered as those bytes, so that one account or
/// one scope is one contiguous range ([`StoredKey::account_range`], [`StoredKey::scope_range`])
/// and a bucket's name is what follows its scope; the layout stays behind these methods.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoredKey(Vec<u8>);

impl StoredKey {
    /// Bytes read back (from disk, or from a page token a client sent): `None` unless they
    /// are a bucket key.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        BucketKey::decode(bytes).map(|_| Self(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key it encodes.
    pub fn decode(&self) -> BucketKey {
        BucketKey::decode(&self.0).expect("a stored key is checked when it is made")
    }

    /// The bucket name: what follows the scope.
    pub fn bucket_name(&self) -> &[u8] {
        let mut zeros = self.0.iter().enumerate().filter(|(_, b)| **b == 0).map(|(i, _)| i);
        match (zeros.next(), zeros.next()) {
            (Some(_), Some(second)) => &self.0[second + 1..],
            _ => &self.0,
        }
    }

    /// Every key of one account, as a range (its bounds are not keys themselves).
    pub fn account_range(account_id: &AccountId) -> std::ops::Range<StoredKey> {
        Self::prefix_range(BucketKey::account_prefix(account_id))
    }

    /// Every key of one scope (account, Region), as a range.
    pub fn scope_range(account_id: &AccountId, region: &Region) -> std::ops::Range<StoredKey> {
        Self::prefix_range(BucketKey::scope_prefix(account_id, region))
    }

    /// A bound that sorts, by bucket name and then by key, before every key of a bucket
    /// named `name` (a bound, not a key).
    pub fn name_floor(name: &str) -> StoredKey {
        let mut floor = Vec::with_capacity(name.len() + 2);
        floor.extend_from_slice(b"\0\0");
        floor.extend_from_slice(name.as_bytes());
        StoredKey(floor)
    }

    fn prefix_range(prefix: Vec<u8>) -> std::ops::Range<StoredKey> {
        let mut end = prefix.clone();
        // No key byte is 0xff: names, accounts and Regions are UTF-8 text, which never holds it.
        end.push(0xff);
        StoredKey(prefix)..StoredKey(end)
    }
}

/// As its bytes (the same encoding as a `Vec<u8>`); read back only if they are a bucket key.
impl Serialize for StoredKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StoredKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = Vec::<u8>::deserialize(deserializer)?;
        match BucketKey::decode(&bytes) {
            Some(_) => Ok(Self(bytes)),
            None => Err(serde::de::Error::custom("not a bucket key")),
        }
    }
}

impl From<StoredKey> for Vec<u8> {
    fn from(key: StoredKey) -> Self {
        key.0
    }
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredKey({:?})", String::from_utf8_lossy(&self.0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockPublicAccess {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

impl BlockPublicAccess {
    /// S3 applies the most restrictive combination of account and bucket settings.
    pub fn combine(self, other: Self) -> Self {
        Self {
            block_public_acls: self.block_public_acls || other.block_public_acls,
            ignore_public_acls: self.ignore_public_acls || other.ignore_public_acls,
            block_public_policy: self.block_public_policy || other.block_public_policy,
            restrict_public_buckets: self.restrict_public_buckets || other.restrict_public_buckets,
        }
    }

    pub fn all_disabled(self) -> bool {
        self == Self::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclPermission {
    Read,
    Write,
    ReadAcp,
    WriteAcp,
    FullControl,
}

impl AclPermission {
    pub fn grants_read(self) -> bool {
        matches!(self, Self::Read | Self::FullControl)
    }

    pub fn grants_write(self) -> bool {
        matches!(self, Self::Write | Self::WriteAcp | Self::FullControl)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grantee {
    CanonicalUser(String),
    Group(String),
    Email(String),
}

/// The group of every caller, signed or not.
pub const ALL_USERS_GROUP: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
/// The group of every AWS-authenticated caller, in any account.
pub const AUTHENTICATED_USERS_GROUP: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";

impl Grantee {
    /// Grants to these groups are public under S3 Block Public Access's definition.
    pub fn is_public_group(&self) -> bool {
        matches!(self, Self::Group(uri) if uri == ALL_USERS_GROUP || uri == AUTHENTICATED_USERS_GROUP)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclGrant {
    pub grantee: Grantee,
    pub permission: AclPermission,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    pub owner_canonical_id: String,
    pub grants: Vec<AclGrant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectOwnership {
    BucketOwnerEnforced,
    BucketOwnerPreferred,
    ObjectWriter,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultEncryption {
    /// As S3 spells it: `AES256`, `aws:kms`, `aws:kms:dsse` (or a newer value).
    pub algorithm: String,
    pub kms_master_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationRule {
    pub id: String,
    pub enabled: bool,
    pub destination_bucket_arn: String,
    pub destination_account: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replication {
    pub role: String,
    pub rules: Vec<ReplicationRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BucketErrorCode {
    AccessDenied,
}

impl BucketErrorCode {
    pub fn as_macie_str(self) -> &'static str {
        match self {
            Self::AccessDenied => "ACCESS_DENIED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketError {
    pub code: BucketErrorCode,
    pub message: String,
}

/// One S3 call of the configuration read, for naming what could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConfigCall {
    Tagging,
    Versioning,
    Encryption,
    PublicAccessBlock,
    Acl,
    OwnershipControls,
    Policy,
    PolicyStatus,
    Replication,
}

impl ConfigCall {
    pub const ALL: [ConfigCall; 9] = [
        Self::Tagging,
        Self::Versioning,
        Self::Encryption,
        Self::PublicAccessBlock,
        Self::Acl,
        Self::OwnershipControls,
        Self::Policy,
        Self::PolicyStatus,
        Self::Replication,
    ];

    /// The IAM action of the call, as error messages name it.
    pub fn action(self) -> &'static str {
        match self {
            Self::Tagging => "s3:GetBucketTagging",
            Self::Versioning => "s3:GetBucketVersioning",
            Self::Encryption => "s3:GetEncryptionConfiguration",
            Self::PublicAccessBlock => "s3:GetBucketPublicAccessBlock",
            Self::Acl => "s3:GetBucketAcl",
            Self::OwnershipControls => "s3:GetBucketOwnershipControls",
            Self::Policy => "s3:GetBucketPolicy",
            Self::PolicyStatus => "s3:GetBucketPolicyStatus",
            Self::Replication => "s3:GetReplicationConfiguration",
        }
    }
}

/// A call that failed (after its retries) for a reason other than access denial: the
/// members it fills are unknown, not "not configured".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadCall {
    pub call: ConfigCall,
    pub error: String,
}

/// What the bucket's configuration says, read in one pass. Absent members mean "not
/// configured", except for the members of a call listed in `unread`, which are unknown. A
/// bucket whose configuration was denied is an error bucket (`BucketState::Error`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BucketConfig {
    pub tags: Vec<Tag>,
    pub versioning: bool,
    pub default_encryption: Option<DefaultEncryption>,
    pub block_public_access: Option<BlockPublicAccess>,
    pub acl: Option<Acl>,
    pub object_ownership: Option<ObjectOwnership>,
    pub policy: Option<String>,
    pub policy_status_public: Option<bool>,
    pub replication: Option<Replication>,
    /// Absent until the bucket's objects have been counted (boxed: most of the index's
    /// memory is buckets, and this is the largest part of one).
    pub objects: Option<Box<crate::objects::ObjectStats>>,
    /// The calls that could not be read this time (their members are unknown).
    pub unread: Vec<UnreadCall>,
}

impl BucketConfig {
    /// Whether `call` could not be read.
    pub fn is_unread(&self, call: ConfigCall) -> bool {
        self.unread.iter().any(|u| u.call == call)
    }
}

/// Everything the agent read about one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketFacts {
    pub key: BucketKey,
    pub created_at: UnixMillis,
    pub read_at: UnixMillis,
    pub state: BucketState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BucketState {
    Readable(Box<BucketConfig>),
    Error(BucketError),
}

impl BucketFacts {
    pub fn config(&self) -> Option<&BucketConfig> {
        match &self.state {
            BucketState::Readable(config) => Some(config),
            BucketState::Error(_) => None,
        }
    }

    pub fn error(&self) -> Option<&BucketError> {
        match &self.state {
            BucketState::Readable(_) => None,
            BucketState::Error(error) => Some(error),
        }
    }
}

/// Account-level block public access, as far as the agent could read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountBlockPublicAccess {
    Configured(BlockPublicAccess),
    NotConfigured,
    Unknown(String),
}

impl AccountBlockPublicAccess {
    /// The settings S3 applies, or `None` when they could not be read.
    pub fn effective(&self) -> Option<BlockPublicAccess> {
        match self {
            Self::Configured(bpa) => Some(*bpa),
            Self::NotConfigured => Some(BlockPublicAccess::default()),
            Self::Unknown(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSettings {
    pub account_id: AccountId,
    pub read_at: UnixMillis,
    pub block_public_access: AccountBlockPublicAccess,
}

pub use estate_types::{is_account_id, AccountId, InvalidId, Region};

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(account: &str, region: &str) -> (AccountId, Region) {
        (AccountId::parse(account).unwrap(), Region::parse(region).unwrap())
    }

    #[test]
    fn the_key_layout_round_trips() {
        let (account, region) = ids("111111111111", "eu-west-1");
        let key = BucketKey::new(account.clone(), region.clone(), "logs.example");
        let encoded = key.encode();
        assert_eq!(BucketKey::decode(&encoded), Some(key));
        let scope = BucketKey::scope_prefix(&account, &region);
        assert!(encoded.starts_with(&scope) && scope.starts_with(&BucketKey::account_prefix(&account)));
        assert_eq!(BucketKey::decode_scope(&scope), Some(ids("111111111111", "eu-west-1")));
        assert_eq!(BucketKey::decode_scope(b"no-separator"), None);
        assert_eq!(BucketKey::decode_scope(&encoded), None, "a bucket key is not a scope key");
    }

    #[test]
    fn a_key_whose_parts_are_not_identifiers_does_not_decode() {
        assert_eq!(BucketKey::decode(b"111111111111\0EU WEST\0b"), None);
        assert_eq!(BucketKey::decode(b"1111\0eu-west-1\0b"), None);
        assert_eq!(BucketKey::decode_scope(b"111111111111\0eu-west-1"), None, "a scope key ends with NUL");
        assert!(BucketKey::parse("111111111111", "eu-west-1\0x", "b").is_err());
    }

    #[test]
    fn bucket_key_round_trips_and_sorts_by_scope() {
        let a = BucketKey::parse("111111111111", "eu-west-1", "zeta").unwrap();
        let b = BucketKey::parse("111111111111", "us-east-1", "alpha").unwrap();
        assert_eq!(BucketKey::decode(&a.encode()), Some(a.clone()));
        assert!(a.encode() < b.encode());
        assert!(a.encode().starts_with(&BucketKey::scope_prefix(&a.account_id, &a.region)));
    }

    #[test]
    fn stored_keys_are_checked_and_ranged_by_account_and_scope() {
        let (account, region) = ids("111111111111", "eu-west-1");
        let key = BucketKey::new(account.clone(), region.clone(), "logs").stored();
        assert_eq!(StoredKey::from_bytes(key.as_bytes()), Some(key.clone()));
        assert_eq!(StoredKey::from_bytes(b"111111111111\0eu-west-1\0"), None, "a scope key is not a bucket key");
        assert_eq!(StoredKey::from_bytes(b"garbage"), None);
        assert_eq!(key.bucket_name(), b"logs");
        assert!(StoredKey::scope_range(&account, &region).contains(&key));
        assert!(StoredKey::account_range(&account).contains(&key));
        let (other_account, other_region) = ids("222222222222", "us-east-1");
        assert!(!StoredKey::account_range(&other_account).contains(&key));
        assert!(!StoredKey::scope_range(&account, &other_region).contains(&key));
        // Serialized as its bytes, and read back only if they are a key.
        let bytes = postcard::to_allocvec(&key).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&key.as_bytes().to_vec()).unwrap());
        assert_eq!(postcard::from_bytes::<StoredKey>(&bytes).unwrap(), key);
        let garbage = postcard::to_allocvec(&b"garbage".to_vec()).unwrap();
        assert!(postcard::from_bytes::<StoredKey>(&garbage).is_err());
    }

    #[test]
    fn block_public_access_combines_most_restrictive() {
        let account = BlockPublicAccess { ignore_public_acls: true, ..Default::default() };
        let bucket = BlockPublicAccess { restrict_public_buckets: true, ..Default::default() };
        let both = account.combine(bucket);
        assert!(both.ignore_public_acls && both.restrict_public_buckets);
        assert!(!both.block_public_acls && !both.block_public_policy);
    }
}
