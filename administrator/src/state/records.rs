//! The records the state keeps in storage, one type per [`Tree`]: each record type, the older
//! layouts it still reads, the check `estate-admin verify` runs on every record, and the keys
//! of the trees whose keys are not a plain account or bucket key.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use estate_common::findings::Finding;
use estate_common::model::{AccountSettings, BucketFacts, BucketKey, StoredKey, UnixMillis};

use crate::state::filters::FindingsFilter;
use crate::state::findings::Posture;
use crate::state::members::{MemberRecord, ScopeRecord};
use crate::state::owners::BucketList;
use crate::state::verdicts::{CachedOutcome, PolicyDigest};
use crate::storage::codec::{decode, Record};
use crate::storage::Tree;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredBucket {
    pub(crate) facts: BucketFacts,
    pub(crate) generation: u64,
}

impl Record for StoredBucket {
    fn decode_older(version: u8, body: &[u8]) -> anyhow::Result<Self> {
        match version {
            1 => Ok(postcard::from_bytes::<v1::StoredBucket>(body)?.into()),
            // Versions 2 and 3 differ only in findings.
            _ => Ok(postcard::from_bytes(body)?),
        }
    }
}

impl Record for Finding {
    fn decode_older(_version: u8, body: &[u8]) -> anyhow::Result<Self> {
        // Versions 1 and 2 stored findings alike.
        Ok(postcard::from_bytes::<v2::Finding>(body)?.into())
    }
}

/// Findings as record versions 1 and 2 stored them: a cause with a flat actor (`daily
/// refresh` for a refresh), and no bucket state.
mod v2 {
    use estate_common::findings::{self as current, Actor, FindingType};
    use estate_common::model::{AccountId, Region, UnixMillis};
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Finding {
        id: String,
        kind: FindingType,
        account_id: AccountId,
        region: Region,
        bucket_name: String,
        created_at: UnixMillis,
        updated_at: UnixMillis,
        count: i64,
        archived: bool,
        first_action: Cause,
        last_action: Cause,
        sequence: u64,
    }

    #[derive(Deserialize)]
    struct Cause {
        api: String,
        event_time: UnixMillis,
        actor: Option<String>,
        actor_type: Option<String>,
        event_id: Option<String>,
    }

    impl From<Cause> for current::Cause {
        fn from(old: Cause) -> Self {
            // The flat actor was the ARN, else the invoking service, else the account.
            let actor = (old.actor.is_some() || old.actor_type.is_some()).then(|| {
                let name = old.actor.unwrap_or_default();
                let (arn, invoked_by, account_id) = if name.starts_with("arn:") {
                    (Some(name), None, None)
                } else if old.actor_type.as_deref() == Some("AWSService") {
                    (None, Some(name), None)
                } else {
                    (None, None, Some(name).filter(|n| !n.is_empty()))
                };
                Actor { kind: old.actor_type, arn, invoked_by, account_id, ..Actor::default() }
            });
            current::Cause {
                api: (old.api != "daily refresh").then_some(old.api),
                event_time: old.event_time,
                actor,
                source_ip: None,
                event_id: old.event_id,
            }
        }
    }

    impl From<Finding> for current::Finding {
        fn from(old: Finding) -> Self {
            current::Finding {
                id: old.id,
                kind: old.kind,
                account_id: old.account_id,
                region: old.region,
                bucket_name: old.bucket_name,
                created_at: old.created_at,
                updated_at: old.updated_at,
                count: old.count,
                archived: old.archived,
                first_action: old.first_action.into(),
                last_action: old.last_action.into(),
                bucket_state: None,
                suppressed_by: None,
                sequence: old.sequence,
            }
        }
    }
}

/// Buckets as record version 1 stored them: a configuration without `unread`.
mod v1 {
    use estate_common::model::{
        Acl, BlockPublicAccess, BucketError, BucketKey, DefaultEncryption, ObjectOwnership, Replication, Tag,
        UnixMillis,
    };
    use estate_common::objects::ObjectStats;
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct StoredBucket {
        facts: BucketFacts,
        generation: u64,
    }

    #[derive(Deserialize)]
    struct BucketFacts {
        key: BucketKey,
        created_at: UnixMillis,
        read_at: UnixMillis,
        state: BucketState,
    }

    #[derive(Deserialize)]
    enum BucketState {
        Readable(Box<BucketConfig>),
        Error(BucketError),
    }

    #[derive(Deserialize)]
    struct BucketConfig {
        tags: Vec<Tag>,
        versioning: bool,
        default_encryption: Option<DefaultEncryption>,
        block_public_access: Option<BlockPublicAccess>,
        acl: Option<Acl>,
        object_ownership: Option<ObjectOwnership>,
        policy: Option<String>,
        policy_status_public: Option<bool>,
        replication: Option<Replication>,
        objects: Option<Box<ObjectStats>>,
    }

    impl From<StoredBucket> for super::StoredBucket {
        fn from(old: StoredBucket) -> Self {
            use estate_common::model as m;
            let f = old.facts;
            let state = match f.state {
                BucketState::Error(error) => m::BucketState::Error(error),
                BucketState::Readable(c) => m::BucketState::Readable(Box::new(m::BucketConfig {
                    tags: c.tags,
                    versioning: c.versioning,
                    default_encryption: c.default_encryption,
                    block_public_access: c.block_public_access,
                    acl: c.acl,
                    object_ownership: c.object_ownership,
                    policy: c.policy,
                    policy_status_public: c.policy_status_public,
                    replication: c.replication,
                    objects: c.objects,
                    unread: Vec::new(),
                })),
            };
            super::StoredBucket {
                facts: m::BucketFacts { key: f.key, created_at: f.created_at, read_at: f.read_at, state },
                generation: old.generation,
            }
        }
    }
}

impl Record for ScopeRecord {}
impl Record for MemberRecord {}
impl Record for PolicyFailure {}
impl Record for AccountSettings {}
impl Record for Posture {}
impl Record for UnixMillis {}
impl Record for BucketList {}
impl Record for CachedOutcome {}
impl Record for SinkCursor {}
impl Record for FindingsFilter {}

/// How far one sink has delivered the findings feed: every change up to `delivered_through`
/// (a finding sequence) is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkCursor {
    pub delivered_through: u64,
}

/// An analysis that failed inside the analyser, remembered across restarts for as long as
/// the analyser's version is the same.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PolicyFailure {
    pub(crate) analyzer_version: String,
    pub(crate) reason: String,
}

/// Decodes one record with the type its tree holds, and checks that its key agrees with it
/// (for `estate-admin verify`).
pub fn check_record(tree: Tree, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
    let name = tree.name();
    match tree {
        Tree::Buckets => {
            let stored: StoredBucket = decode(name, key, value)?;
            anyhow::ensure!(stored.facts.key.encode() == key, "the key does not name the bucket the record holds");
        }
        Tree::Accounts => {
            let settings: AccountSettings = decode(name, key, value)?;
            anyhow::ensure!(settings.account_id.as_bytes() == key, "the key does not name the record's account");
        }
        Tree::Scopes => {
            decode::<ScopeRecord>(name, key, value)?;
            anyhow::ensure!(BucketKey::decode_scope(key).is_some(), "the key is not ACCOUNT NUL REGION NUL");
        }
        Tree::Members => {
            let record: MemberRecord = decode(name, key, value)?;
            anyhow::ensure!(record.account_id.as_bytes() == key, "the key does not name the record's account");
        }
        Tree::Findings => {
            let finding: Finding = decode(name, key, value)?;
            anyhow::ensure!(finding.id.as_bytes() == key, "the key is not the finding's ID");
        }
        Tree::Postures => {
            decode::<Posture>(name, key, value)?;
            anyhow::ensure!(StoredKey::from_bytes(key).is_some(), "the key is not a bucket key");
        }
        Tree::PolicyFailures => {
            decode::<PolicyFailure>(name, key, value)?;
            anyhow::ensure!(key.len() == std::mem::size_of::<PolicyDigest>(), "the key is not a digest");
        }
        Tree::SeenEvents => {
            decode::<UnixMillis>(name, key, value)?;
            anyhow::ensure!(parse_seen_event_key(key).is_some(), "the key is not EVENT NUL BUCKET");
        }
        Tree::PolicyOutcomes => {
            decode::<CachedOutcome>(name, key, value)?;
            anyhow::ensure!(key.len() == std::mem::size_of::<PolicyDigest>(), "the key is not a digest");
        }
        Tree::FindingsFilters => {
            let filter: FindingsFilter = decode(name, key, value)?;
            anyhow::ensure!(filter.id.as_bytes() == key, "the key is not the filter's ID");
        }
        Tree::SinkCursors => {
            decode::<SinkCursor>(name, key, value)?;
            anyhow::ensure!(std::str::from_utf8(key).is_ok_and(|k| !k.is_empty()), "the key is not a sink name");
        }
        Tree::BucketLists => {
            decode::<BucketList>(name, key, value)?;
            anyhow::ensure!(
                estate_common::model::is_account_id(&String::from_utf8_lossy(key)),
                "the key is not an account ID"
            );
        }
    }
    Ok(())
}

/// A bucket key read back from `tree`; an error names the tree and how to repair.
pub(crate) fn stored_key(tree: Tree, key: &[u8]) -> anyhow::Result<StoredKey> {
    StoredKey::from_bytes(key).with_context(|| {
        format!(
            "corrupt bucket key `{}` in tree `{}` (`estate-admin verify --repair` sets such records aside)",
            String::from_utf8_lossy(key),
            tree.name()
        )
    })
}

/// The key of a remembered event: the event ID, a NUL, the bucket key.
pub(crate) fn seen_event_key(bucket: &StoredKey, event_id: &str) -> Vec<u8> {
    let mut key = event_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(bucket.as_bytes());
    key
}

/// The (event ID, bucket key) a [`seen_event_key`] names.
pub(crate) fn parse_seen_event_key(key: &[u8]) -> Option<(String, StoredKey)> {
    let nul = key.iter().position(|&b| b == 0)?;
    Some((String::from_utf8(key[..nul].to_vec()).ok()?, StoredKey::from_bytes(&key[nul + 1..])?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use estate_common::findings::FindingType;

    /// A finding as record version 2 wrote it still loads: the refresh's made-up API name
    /// becomes none, the flat actor its ARN.
    #[test]
    fn a_version_2_finding_loads() {
        #[derive(Serialize)]
        struct OldCause(String, i64, Option<String>, Option<String>, Option<String>);
        #[derive(Serialize)]
        #[allow(clippy::type_complexity)]
        struct OldFinding(String, FindingType, String, String, String, i64, i64, i64, bool, OldCause, OldCause, u64);
        let refresh = OldCause("daily refresh".into(), 5, None, None, None);
        let event = OldCause(
            "PutBucketAcl".into(),
            9,
            Some("arn:aws:iam::111111111111:user/alice".into()),
            Some("IAMUser".into()),
            Some("e-1".into()),
        );
        let old = OldFinding(
            "f".into(),
            FindingType::S3BucketPublic,
            "111111111111".into(),
            "us-east-1".into(),
            "b".into(),
            5,
            9,
            2,
            false,
            refresh,
            event,
            7,
        );
        let mut bytes = vec![2u8];
        bytes.extend(postcard::to_stdvec(&old).unwrap());
        let finding: Finding = decode("findings", b"f", &bytes).unwrap();
        assert_eq!(finding.first_action.api, None);
        assert_eq!(finding.last_action.api.as_deref(), Some("PutBucketAcl"));
        let actor = finding.last_action.actor.as_ref().unwrap();
        assert_eq!(actor.arn.as_deref(), Some("arn:aws:iam::111111111111:user/alice"));
        assert_eq!((finding.count, finding.sequence, finding.bucket_state.is_none()), (2, 7, true));
    }
}
