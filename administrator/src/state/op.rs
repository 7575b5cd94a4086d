//! What changes the state: one [`Op`] per kind of change, applied in order by
//! `State::apply` (`store.rs`), one method each.

use std::collections::BTreeSet;

use estate_common::findings::Cause;
use estate_common::model::{AccountId, AccountSettings, BucketFacts, BucketKey, Region, StoredKey, UnixMillis};
use estate_common::objects::ObjectStats;

use crate::state::filters::FindingsFilter;
use crate::state::owners::BucketList;
use crate::state::verdicts::{PolicyDigest, PolicyOutcome};

/// One change to durable state: from an agent's report, a policy worker, the organization's
/// source, or the archiving timer. The time of a change is the commit's clock.
#[derive(Debug, Clone)]
pub enum Op {
    Hello {
        account_id: AccountId,
        regions: Vec<Region>,
        canonical_user_id: String,
        agent_version: String,
    },
    Contact {
        account_id: AccountId,
    },
    /// `cause`: the CloudTrail event behind this read; such a read carries no object
    /// statistics, and the stored ones stay.
    Upsert {
        facts: BucketFacts,
        generation: u64,
        cause: Option<Cause>,
    },
    Retain {
        key: BucketKey,
        generation: u64,
    },
    Delete {
        key: BucketKey,
    },
    /// New object statistics for a bucket whose configuration is unchanged.
    Objects {
        key: BucketKey,
        objects: ObjectStats,
    },
    AccountSettings(AccountSettings),
    /// Account settings re-read because of a CloudTrail event.
    AccountSettingsChanged {
        settings: AccountSettings,
        cause: Cause,
    },
    /// A refresh of the scope began; its progress counts from zero to `total`.
    ScopeStarted {
        account_id: AccountId,
        region: Region,
        total: u64,
    },
    ScopeComplete {
        account_id: AccountId,
        region: Region,
        generation: u64,
        read_at: UnixMillis,
        count: u64,
    },
    /// A policy analysis came back; the bucket is judged again if it is still current.
    PolicyOutcome {
        key: StoredKey,
        digest: PolicyDigest,
        /// The bucket name the analysis was made with (empty for a policy whose analysis does
        /// not depend on it; `state::verdicts::Job::bucket`).
        bucket: String,
        outcome: PolicyOutcome,
    },
    /// The organization (ID, member accounts, paths) as its source says now, with the
    /// accounts it reports suspended.
    Organization {
        organization_id: Option<String>,
        accounts: BTreeSet<AccountId>,
        suspended: BTreeSet<AccountId>,
        paths: Vec<String>,
    },
    /// Archive findings not updated for 90 days.
    ArchiveFindings,
    /// Every bucket name of an account (its agent's ListBuckets), for replication owners.
    AccountBuckets {
        account_id: AccountId,
        list: BucketList,
    },
    /// An operator dropped everything stored for an account (`estatectl members forget`):
    /// its next hello starts from scratch. Its findings stay.
    ForgetAccount {
        account_id: AccountId,
    },
    /// Forget events counted before `before` (the seven-day horizon), while running.
    PruneSeenEvents {
        before: UnixMillis,
    },
    /// A findings filter created or changed; an archiving one archives the open findings it
    /// matches.
    PutFindingsFilter(Box<FindingsFilter>),
    DeleteFindingsFilter {
        id: String,
    },
    /// A sink delivered every finding change up to `through` (its cursor moves forward only).
    SinkDelivered {
        sink: String,
        through: u64,
    },
}
