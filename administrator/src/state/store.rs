//! The administrator's state: the records on disk (the truth, through the [`Storage`]
//! interface; sled by default) and an in-memory index rebuilt from them at start-up (for
//! queries and statistics). Every change — agents' reports, policy outcomes, the organization,
//! archiving — is an [`Op`] applied by `Store::commit`, which the committer (`ingest.rs`) alone
//! calls: it applies a batch to memory, commits every write at once to stable storage, and
//! only then lets anything be announced or acknowledged.
//!
//! Every record is a versioned encoding (`storage::codec`); the engine migrates an older
//! database when it opens it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use anyhow::Context;

use estate_common::findings::{Cause, Finding};
use estate_common::macie::BucketStatistics;
use estate_common::model::{
    AccountId, AccountSettings, BucketFacts, BucketKey, BucketState, Grantee, Region, StoredKey, UnixMillis,
};
use estate_common::objects::ObjectStats;
use estate_common::text::for_log;

use crate::judge::{destination_name, judge_with, Judgement, OrgView, PolicyVerdict};
use crate::state::filters::FindingsFilter;
use crate::state::findings::{Findings, FindingsTracker, Posture, MAX_COUNTED_EVENTS as MAX_SEEN_EVENTS};
use crate::state::identities::{self, CanonicalIds};
use crate::state::index::{Entry, Index};
use crate::state::members::{Freshness, MemberRecord, Membership, Progress, ScopeRecord};
pub use crate::state::op::Op;
use crate::state::owners::{BucketList, BucketOwners};
use crate::state::records::{
    parse_seen_event_key, seen_event_key, stored_key, PolicyFailure, SinkCursor, StoredBucket,
};
use crate::state::stats::Statistics;
use crate::state::verdicts::{CachedOutcome, PolicyDigest, PolicyOutcome, PolicyQueue, PolicyVerdicts, Settlement};
use crate::storage::codec::{decode, encode};
use crate::storage::sled_engine::SledStorage;
use crate::storage::{Storage, Tree, Writes};

#[derive(Debug, Default)]
pub struct State {
    /// Encoded `BucketKey` → entry; ordered, so one scope or account is one range.
    pub index: Index,
    pub accounts: HashMap<AccountId, AccountSettings>,
    /// The members, their Regions' refreshes and the organization's freshness (`members.rs`).
    pub membership: Membership,
    pub stats: Statistics,
    pub org: OrgView,
    /// Per canonical user ID, the buckets whose ACL grants to it (other than their owner):
    /// re-judged when that ID's account binding changes, and only those.
    acl_dependents: HashMap<String, BTreeSet<StoredKey>>,
    /// Policy analyses: outcomes, what is queued, failures remembered (`verdicts.rs`).
    verdicts: PolicyVerdicts,
    /// Findings and what raises them: postures, causes, events counted (`findings.rs`).
    tracker: FindingsTracker,
    /// Who owns replication destinations named without their account (`owners.rs`).
    owners: BucketOwners,
    /// Which account each canonical user ID belongs to, as far as it is corroborated
    /// (`identities.rs`); its bindings are mirrored in `org.canonical_ids` for the judge.
    identities: CanonicalIds,
    /// The clock of the commit being applied.
    now: UnixMillis,
    /// The store is being loaded: the buckets inserted are not new.
    loading: bool,
    /// Per sink, how far it has delivered the findings feed (`deliver/`).
    sink_cursors: HashMap<String, SinkCursor>,
}

/// How long an event counted once is remembered (agents resend within minutes).
pub const SEEN_EVENTS_HORIZON_MS: i64 = 7 * 24 * 3600 * 1000;

/// The destinations of the bucket's enabled replication rules that name no account.
fn unnamed_destinations(facts: &BucketFacts) -> Vec<String> {
    let Some(replication) = facts.config().and_then(|c| c.replication.as_ref()) else { return Vec::new() };
    replication
        .rules
        .iter()
        .filter(|r| r.enabled && r.destination_account.is_none())
        .filter_map(|r| destination_name(&r.destination_bucket_arn).map(str::to_owned))
        .collect()
}

impl State {
    /// The last completed refresh of one account's Region, if it ever completed one.
    pub fn scope(&self, account_id: &AccountId, region: &Region) -> Option<&ScopeRecord> {
        self.membership.scope(account_id, region)
    }

    /// The refresh under way in one account's Region, if any.
    pub fn progress(&self, account_id: &AccountId, region: &Region) -> Option<Progress> {
        self.membership.progress(account_id, region)
    }

    /// The organization's statistics: every bucket's, with the members' freshness.
    pub fn organization_statistics(&self) -> BucketStatistics {
        let freshness = &self.membership.freshness;
        let mut stats = self.stats.total();
        stats.members_without_agent = freshness.members_without_agent();
        stats.members_pending = freshness.members_pending();
        stats.last_updated = freshness.last_updated().map(estate_common::macie::Timestamp);
        stats
    }

    /// Judges a bucket. A policy whose outcome for the current text and organization context
    /// is not known yet is queued for analysis (as an event's job when `cause` is the event
    /// behind this read) and judged UNKNOWN meanwhile.
    fn judge(&mut self, key: &StoredKey, facts: &Arc<BucketFacts>, cause: Option<&Cause>) -> Judgement {
        let verdict = self.verdicts.verdict(key, facts, &self.org, cause);
        let owner = |name: &str| self.owners.owner(name, &self.index, &self.org, &self.membership.members);
        judge_with(facts, self.accounts.get(&facts.key.account_id), &self.org, verdict.as_ref(), &owner)
    }

    /// Canonical-ID claims refused since start, and canonical IDs and bucket names that more
    /// than one account claims now (for `/metrics`).
    pub fn contested_claims(&self) -> (u64, usize, usize) {
        (self.identities.refused(), self.identities.contested(), self.owners.contested())
    }

    /// Mirrors changed canonical-ID bindings into the organization view and judges again the
    /// buckets whose verdicts they decide: ACL grants to other canonical users, and
    /// replication destinations (whose owner's ACL is checked against its account's claim).
    fn rebind(&mut self, changes: identities::Changes) {
        if changes.is_empty() {
            return;
        }
        let changed: Vec<String> = changes.iter().map(|(id, _)| id.clone()).collect();
        for (id, account) in changes {
            match account {
                Some(account) => self.org.canonical_ids.insert(id, account),
                None => self.org.canonical_ids.remove(&id),
            };
        }
        let dependents: BTreeSet<StoredKey> =
            changed.iter().flat_map(|id| self.acl_dependents.get(id)).flatten().cloned().collect();
        self.rejudge(dependents.into_iter().collect());
    }

    /// The canonical users other than its owner that a bucket's ACL grants to.
    fn acl_grantees(facts: &BucketFacts) -> BTreeSet<String> {
        let Some(acl) = facts.config().and_then(|c| c.acl.as_ref()) else { return BTreeSet::new() };
        acl.grants
            .iter()
            .filter_map(|g| match &g.grantee {
                Grantee::CanonicalUser(id) if *id != acl.owner_canonical_id => Some(id.clone()),
                _ => None,
            })
            .collect()
    }

    /// Moves `key` in the grantee index from the IDs `before` to the IDs `after`.
    fn index_grantees(&mut self, key: &StoredKey, before: &BTreeSet<String>, after: &BTreeSet<String>) {
        for id in before.difference(after) {
            if let Some(keys) = self.acl_dependents.get_mut(id) {
                keys.remove(key);
                if keys.is_empty() {
                    self.acl_dependents.remove(id);
                }
            }
        }
        for id in after.difference(before) {
            self.acl_dependents.entry(id.clone()).or_default().insert(key.clone());
        }
    }

    /// The canonical ID a bucket's ACL names as its owner, when its ACL was read.
    fn acl_owner(facts: &BucketFacts) -> Option<&str> {
        facts
            .config()
            .and_then(|c| c.acl.as_ref())
            .map(|acl| acl.owner_canonical_id.as_str())
            .filter(|id| !id.is_empty())
    }

    /// The findings, for the read side.
    pub fn findings(&self) -> &Findings {
        &self.tracker.findings
    }

    /// The policy's witnesses and reasons for UNKNOWN, for a bucket's metadata.
    pub fn policy_explanation(&self, key: &StoredKey) -> (Vec<estate_common::macie::PolicyWitness>, Vec<String>) {
        self.verdicts.explanation(key)
    }

    /// Judges every bucket again (the organization changed).
    fn rejudge_all(&mut self) {
        let keys: Vec<StoredKey> = self.index.range::<std::ops::RangeFull>(..).map(|(k, _)| k.clone()).collect();
        self.rejudge(keys);
    }

    /// What a bucket seen for the first time is compared with: nothing (its first posture is
    /// its baseline) while its Region's first inventory is under way, or the store loads;
    /// after that it is a new bucket, compared with [`Posture::UNEXPOSED`].
    fn first_sight(&self, key: &BucketKey) -> Option<Posture> {
        let inventoried = self.membership.scope(&key.account_id, &key.region).is_some();
        (inventoried && !self.loading).then_some(Posture::UNEXPOSED)
    }

    fn insert_entry(&mut self, key: StoredKey, facts: BucketFacts, generation: u64, cause: Option<&Cause>) {
        let facts = Arc::new(facts);
        let judgement = self.judge(&key, &facts, cause);
        let before = self
            .index
            .get(&key)
            .map(|e| e.posture)
            .or_else(|| self.tracker.take_loaded(&key))
            .or_else(|| self.first_sight(&facts.key));
        let account = self.accounts.get(&facts.key.account_id);
        let posture = self.tracker.observe(&key, &facts, &judgement, account, before, false, self.now);
        self.stats.add(&facts.key.account_id, &judgement);
        let granted_before = self.index.get(&key).map(|old| Self::acl_grantees(&old.facts)).unwrap_or_default();
        self.index_grantees(&key, &granted_before, &Self::acl_grantees(&facts));
        let name = facts.key.bucket_name.clone();
        let after = unnamed_destinations(&facts);
        let (account, new_owner) = (facts.key.account_id.clone(), Self::acl_owner(&facts).map(str::to_owned));
        let old = self.index.insert(key.clone(), Entry { facts, generation, judgement, posture });
        let old_owner = old.as_ref().and_then(|old| Self::acl_owner(&old.facts).map(str::to_owned));
        match old {
            Some(old) => {
                self.stats.remove(&old.facts.key.account_id, &old.judgement);
                self.owners.set_dependent(&key, &unnamed_destinations(&old.facts), &after);
                if old_owner != new_owner {
                    // Whether it corroborates its account's claim changed.
                    let dependents = self.owners.dependents_of(&name);
                    self.rejudge(dependents);
                }
            }
            None => {
                self.owners.set_dependent(&key, &[], &after);
                // A new bucket may be the destination other buckets replicate to.
                let dependents = self.owners.dependents_of(&name);
                self.rejudge(dependents);
            }
        }
        if old_owner != new_owner {
            let mut changes = Vec::new();
            if let Some(owner) = old_owner {
                changes.extend(self.identities.count_owner(&account, &owner, -1));
            }
            if let Some(owner) = new_owner {
                changes.extend(self.identities.count_owner(&account, &owner, 1));
            }
            self.rebind(changes);
        }
    }

    fn remove_entry(&mut self, key: &StoredKey) -> bool {
        if let Some(old) = self.index.get(key) {
            let granted = Self::acl_grantees(&old.facts);
            self.index_grantees(key, &granted, &BTreeSet::new());
        }
        self.tracker.forget(key);
        self.verdicts.forget(key);
        match self.index.remove(key) {
            Some(old) => {
                self.stats.remove(&old.facts.key.account_id, &old.judgement);
                if let Some(owner) = Self::acl_owner(&old.facts) {
                    let changes = self.identities.count_owner(&old.facts.key.account_id, owner, -1);
                    self.rebind(changes);
                }
                self.owners.set_dependent(key, &unnamed_destinations(&old.facts), &[]);
                let dependents = self.owners.dependents_of(&old.facts.key.bucket_name);
                self.rejudge(dependents);
                true
            }
            None => false,
        }
    }

    /// Judges the given buckets again (after their context changed) and moves the statistics.
    fn rejudge(&mut self, keys: Vec<StoredKey>) {
        for key in keys {
            let Some(entry) = self.index.get(&key).cloned() else { continue };
            let judgement = self.judge(&key, &entry.facts, None);
            if judgement == entry.judgement {
                continue;
            }
            let account = self.accounts.get(&entry.facts.key.account_id);
            let posture =
                self.tracker.observe(&key, &entry.facts, &judgement, account, Some(entry.posture), true, self.now);
            let account_id = entry.facts.key.account_id.clone();
            let updated = Entry { facts: Arc::clone(&entry.facts), generation: entry.generation, judgement, posture };
            self.stats.remove(&account_id, &entry.judgement);
            self.stats.add(&account_id, &updated.judgement);
            self.index.insert(key, updated);
        }
    }

    fn account_keys(&self, account_id: &AccountId) -> Vec<StoredKey> {
        self.index.range(StoredKey::account_range(account_id)).map(|(k, _)| k.clone()).collect()
    }

    /// The bucket exists in refresh `generation` (its stored facts stay).
    fn retain(&mut self, encoded: StoredKey, generation: u64, writes: &mut Writes) {
        if let Some(entry) = self.index.get(&encoded) {
            if entry.generation < generation {
                let updated = Entry { generation, ..Entry::clone(entry) };
                let stored = StoredBucket { facts: (*updated.facts).clone(), generation };
                writes.insert(Tree::Buckets, encoded.clone(), encode(&stored));
                self.index.insert(encoded, updated);
            }
        }
    }

    /// Counts the account's standing again after its member record or a scope of it changed.
    fn recount(&mut self, account_id: &AccountId) {
        let standing = self.membership.standing(&self.org, account_id);
        self.membership.freshness.set(account_id, standing);
    }

    /// Counts every account again: the organization or the configured accounts changed, so
    /// accounts may have joined, left or changed status.
    fn recount_all(&mut self) {
        let accounts: BTreeSet<AccountId> = self
            .membership
            .account_names(&self.org)
            .into_iter()
            .chain(self.membership.freshness.accounts())
            .cloned()
            .collect();
        for account in accounts {
            self.recount(&account);
        }
    }

    fn bump_progress(&mut self, key: &BucketKey) {
        if let Some(progress) = self.membership.progress.get_mut(&key.account_id).and_then(|p| p.get_mut(&key.region)) {
            progress.0 += 1;
        }
    }

    fn apply(&mut self, op: Op, writes: &mut Writes) {
        match op {
            Op::Hello { account_id, regions, canonical_user_id, agent_version } => {
                self.apply_hello(account_id, regions, canonical_user_id, agent_version, writes)
            }
            Op::Contact { account_id } => self.apply_contact(account_id, writes),
            Op::Upsert { facts, generation, cause } => self.apply_upsert(facts, generation, cause, writes),
            Op::Retain { key, generation } => self.apply_retain(key, generation, writes),
            Op::Objects { key, objects } => self.apply_objects(key, objects, writes),
            Op::Delete { key } => self.apply_delete(key, writes),
            Op::AccountSettings(settings) => self.apply_account_settings(settings, writes),
            Op::AccountSettingsChanged { settings, cause } => {
                self.apply_account_settings_changed(settings, cause, writes)
            }
            Op::ScopeStarted { account_id, region, total } => self.apply_scope_started(account_id, region, total),
            Op::ScopeComplete { account_id, region, generation, read_at, count } => {
                self.apply_scope_complete(account_id, region, generation, read_at, count, writes)
            }
            Op::PolicyOutcome { key, digest, bucket, outcome } => {
                self.apply_policy_outcome(key, digest, bucket, outcome, writes)
            }
            Op::Organization { organization_id, accounts, suspended, paths } => {
                self.apply_organization(organization_id, accounts, suspended, paths)
            }
            Op::ArchiveFindings => self.tracker.findings.archive_older_than(self.now),
            Op::ForgetAccount { account_id } => self.forget_account(&account_id, writes),
            Op::PruneSeenEvents { before } => self.apply_prune_seen_events(before, writes),
            Op::AccountBuckets { account_id, list } => self.apply_account_buckets(account_id, list, writes),
            Op::SinkDelivered { sink, through } => self.apply_sink_delivered(sink, through, writes),
            Op::PutFindingsFilter(filter) => self.apply_put_findings_filter(*filter, writes),
            Op::DeleteFindingsFilter { id } => {
                if self.tracker.findings.filters.remove(&id).is_some() {
                    tracing::info!(filter = %id, "findings filter deleted");
                    writes.remove(Tree::FindingsFilters, id.into_bytes());
                }
            }
        }
    }

    /// Applies [`Op::PutFindingsFilter`]: stored, and an archiving filter archives the open
    /// findings it matches now.
    fn apply_put_findings_filter(&mut self, filter: FindingsFilter, writes: &mut Writes) {
        writes.insert(Tree::FindingsFilters, filter.id.as_bytes(), encode(&filter));
        let id = filter.id.clone();
        tracing::info!(filter = %id, name = %for_log(&filter.name), action = ?filter.action, "findings filter saved");
        let findings = &mut self.tracker.findings;
        findings.filters.put(filter);
        let archived = findings.archive_matching(&id);
        if archived > 0 {
            tracing::info!(filter = %id, archived, "findings archived by the filter");
        }
    }

    /// Applies [`Op::SinkDelivered`]: the cursor only moves forward.
    fn apply_sink_delivered(&mut self, sink: String, through: u64, writes: &mut Writes) {
        let known = self.sink_cursors.get(&sink).map(|c| c.delivered_through);
        if known.is_none_or(|before| through > before) {
            let cursor = SinkCursor { delivered_through: through };
            writes.insert(Tree::SinkCursors, sink.as_bytes(), encode(&cursor));
            self.sink_cursors.insert(sink, cursor);
        }
    }

    /// How far `sink` has delivered the findings feed; `None` before its first delivery.
    pub fn sink_cursor(&self, sink: &str) -> Option<u64> {
        self.sink_cursors.get(sink).map(|c| c.delivered_through)
    }

    /// Applies [`Op::Hello`].
    fn apply_hello(
        &mut self,
        account_id: AccountId,
        regions: Vec<Region>,
        canonical_user_id: String,
        agent_version: String,
        writes: &mut Writes,
    ) {
        let record = MemberRecord {
            account_id: account_id.clone(),
            regions,
            canonical_user_id: canonical_user_id.clone(),
            agent_version,
            last_contact: self.now,
        };
        writes.insert(Tree::Members, account_id.as_bytes(), encode(&record));
        let old = self.membership.members.insert(account_id.clone(), record);
        self.recount(&account_id);
        let changes = self.identities.claim(&account_id, &canonical_user_id);
        self.rebind(changes);
        if old.is_none_or(|old| old.canonical_user_id != canonical_user_id) {
            // Destinations in this account's inventory are checked against its claim:
            // the buckets replicating to them are judged again (only those).
            let names: BTreeSet<String> = self
                .account_keys(&account_id)
                .iter()
                .filter_map(|key| self.index.get(key).map(|e| e.facts.key.bucket_name.clone()))
                .collect();
            let dependents: BTreeSet<StoredKey> =
                names.iter().flat_map(|name| self.owners.dependents_of(name)).collect();
            self.rejudge(dependents.into_iter().collect());
        }
    }

    /// Applies [`Op::Contact`].
    fn apply_contact(&mut self, account_id: AccountId, writes: &mut Writes) {
        let at = self.now;
        if let Some(record) = self.membership.members.get_mut(&account_id) {
            record.last_contact = record.last_contact.max(at);
            writes.insert(Tree::Members, account_id.as_bytes(), encode(&*record));
        }
    }

    /// Applies [`Op::Upsert`].
    fn apply_upsert(&mut self, mut facts: BucketFacts, generation: u64, cause: Option<Cause>, writes: &mut Writes) {
        let key = facts.key.stored();
        self.bump_progress(&facts.key);
        if self.index.get(&key).is_some_and(|entry| facts.read_at < entry.facts.read_at) {
            // An older read that arrived late (an event re-read overtaken by a refresh,
            // or the reverse) loses to the newer one; it still counts as seen in its
            // refresh, so completing that scope does not remove it.
            self.retain(key, generation, writes);
            return;
        }
        if cause.is_some() {
            // An event-driven read does not list the bucket for its creation time:
            // keep the stored one.
            if let Some(entry) = self.index.get(&key) {
                if facts.created_at == 0 {
                    facts.created_at = entry.facts.created_at;
                }
            }
        }
        // A read that did not count objects (an event's, or a refresh an operator
        // asked for) keeps the stored statistics: they change on the daily cycle or
        // through RefreshObjectMetadata.
        let stored = self.index.get(&key).and_then(|e| e.facts.config().and_then(|c| c.objects.clone()));
        if let (BucketState::Readable(config), Some(objects)) = (&mut facts.state, stored) {
            if config.objects.is_none() {
                config.objects = Some(objects);
            }
        }
        self.tracker.set_cause(&key, cause.clone());
        writes.insert(Tree::Buckets, key.clone(), encode(&StoredBucket { facts: facts.clone(), generation }));
        self.insert_entry(key, facts, generation, cause.as_ref());
    }

    /// Applies [`Op::Retain`].
    fn apply_retain(&mut self, key: BucketKey, generation: u64, writes: &mut Writes) {
        self.bump_progress(&key);
        self.retain(key.stored(), generation, writes);
    }

    /// Applies [`Op::Objects`].
    fn apply_objects(&mut self, key: BucketKey, objects: ObjectStats, writes: &mut Writes) {
        let encoded = key.stored();
        let Some(entry) = self.index.get(&encoded) else { return };
        let BucketState::Readable(config) = &entry.facts.state else { return };
        let mut facts = (*entry.facts).clone();
        facts.read_at = facts.read_at.max(objects.read_at);
        facts.state = BucketState::Readable(Box::new(estate_common::model::BucketConfig {
            objects: Some(Box::new(objects)),
            ..(**config).clone()
        }));
        let generation = entry.generation;
        writes.insert(Tree::Buckets, encoded.clone(), encode(&StoredBucket { facts: facts.clone(), generation }));
        self.insert_entry(encoded, facts, generation, None);
    }

    /// Applies [`Op::Delete`].
    fn apply_delete(&mut self, key: BucketKey, writes: &mut Writes) {
        let encoded = key.stored();
        if self.remove_entry(&encoded) {
            writes.remove(Tree::Buckets, encoded);
        }
    }

    /// Applies [`Op::AccountSettings`].
    fn apply_account_settings(&mut self, settings: AccountSettings, writes: &mut Writes) {
        let account_id = settings.account_id.clone();
        writes.insert(Tree::Accounts, account_id.as_bytes(), encode(&settings));
        if self.accounts.get(&account_id) != Some(&settings) {
            self.accounts.insert(account_id.clone(), settings);
            let keys = self.account_keys(&account_id);
            self.rejudge(keys);
        }
    }

    /// Applies [`Op::AccountSettingsChanged`].
    fn apply_account_settings_changed(&mut self, settings: AccountSettings, cause: Cause, writes: &mut Writes) {
        for key in self.account_keys(&settings.account_id) {
            self.tracker.set_cause(&key, Some(cause.clone()));
        }
        self.apply_account_settings(settings, writes);
    }

    /// Applies [`Op::ScopeStarted`].
    fn apply_scope_started(&mut self, account_id: AccountId, region: Region, total: u64) {
        self.membership.progress.entry(account_id).or_default().insert(region, (0, total));
    }

    /// Applies [`Op::ScopeComplete`].
    fn apply_scope_complete(
        &mut self,
        account_id: AccountId,
        region: Region,
        generation: u64,
        read_at: UnixMillis,
        count: u64,
        writes: &mut Writes,
    ) {
        let stale: Vec<StoredKey> = self
            .index
            .range(StoredKey::scope_range(&account_id, &region))
            .filter(|(_, e)| e.generation < generation)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.remove_entry(&key);
            writes.remove(Tree::Buckets, key);
        }
        if let Some(under_way) = self.membership.progress.get_mut(&account_id) {
            under_way.remove(&region);
            if under_way.is_empty() {
                self.membership.progress.remove(&account_id);
            }
        }
        let scope_key = BucketKey::scope_prefix(&account_id, &region);
        let record = self.membership.scopes.entry(account_id.clone()).or_default().entry(region).or_default();
        if generation >= record.generation {
            *record = ScopeRecord { generation, last_updated: Some(read_at), bucket_count: count };
            writes.insert(Tree::Scopes, scope_key, encode(&*record));
        }
        self.recount(&account_id);
    }

    /// Applies [`Op::Organization`].
    fn apply_organization(
        &mut self,
        organization_id: Option<String>,
        accounts: BTreeSet<AccountId>,
        suspended: BTreeSet<AccountId>,
        paths: Vec<String>,
    ) {
        let suspended_changed = self.org.suspended != suspended;
        if suspended_changed {
            // Suspended members are not waited for: destinations may be decided now.
            self.org.suspended = suspended;
            let dependents = self.owners.all_dependents();
            self.rejudge(dependents);
        }
        let membership_changed = self.org.set_membership(organization_id, accounts, paths);
        if membership_changed {
            tracing::info!(
                accounts = self.org.accounts().len(),
                buckets = self.index.len(),
                "the organization changed; judging every bucket again"
            );
            self.rejudge_all();
        }
        if suspended_changed || membership_changed {
            self.recount_all();
        }
    }

    /// Applies [`Op::PruneSeenEvents`].
    fn apply_prune_seen_events(&mut self, before: UnixMillis, writes: &mut Writes) {
        for (bucket, event_id) in self.tracker.prune_counted_events(before) {
            writes.remove(Tree::SeenEvents, seen_event_key(&bucket, &event_id));
        }
    }

    /// Applies [`Op::AccountBuckets`].
    fn apply_account_buckets(&mut self, account_id: AccountId, list: BucketList, writes: &mut Writes) {
        let first = !self.owners.has_list(&account_id);
        let encoded = encode(&list);
        if let Some(changed) = self.owners.set_list(&account_id, list) {
            writes.insert(Tree::BucketLists, account_id.as_bytes(), encoded);
            // The first list of an account may complete the organization's.
            let dependents = if first {
                self.owners.all_dependents()
            } else {
                changed.iter().flat_map(|name| self.owners.dependents_of(name)).collect()
            };
            self.rejudge(dependents);
        }
    }

    /// Drops every record of one account: buckets (with their postures and verdicts),
    /// settings, scopes, refreshes under way, member record, bucket list and canonical-ID
    /// claim. What other accounts' verdicts drew from it is judged again.
    fn forget_account(&mut self, account_id: &AccountId, writes: &mut Writes) {
        for key in self.account_keys(account_id) {
            self.remove_entry(&key);
            writes.remove(Tree::Buckets, key);
        }
        if self.accounts.remove(account_id).is_some() {
            writes.remove(Tree::Accounts, account_id.as_bytes());
        }
        for region in self.membership.scopes.remove(account_id).into_iter().flat_map(|scopes| scopes.into_keys()) {
            writes.remove(Tree::Scopes, BucketKey::scope_prefix(account_id, &region));
        }
        self.membership.progress.remove(account_id);
        if self.membership.members.remove(account_id).is_some() {
            writes.remove(Tree::Members, account_id.as_bytes());
        }
        let names = self.owners.forget(account_id);
        writes.remove(Tree::BucketLists, account_id.as_bytes());
        let dependents: Vec<StoredKey> = names.iter().flat_map(|name| self.owners.dependents_of(name)).collect();
        self.rejudge(dependents);
        let changes = self.identities.forget(account_id);
        self.rebind(changes);
        self.recount(account_id);
        tracing::warn!(account = %account_id, "an operator dropped everything stored for the account");
    }

    /// Records a policy analysis: the bucket is judged again if the analysis is of its current
    /// version; a version replaced meanwhile is judged for the findings it raises.
    fn apply_policy_outcome(
        &mut self,
        key: StoredKey,
        digest: PolicyDigest,
        analysed: String,
        outcome: PolicyOutcome,
        writes: &mut Writes,
    ) {
        if let Some(reason) = outcome.internal_failure_reason() {
            let failure =
                PolicyFailure { analyzer_version: estate_policy::ANALYZER_VERSION.to_owned(), reason: reason.clone() };
            writes.insert(Tree::PolicyFailures, &digest[..], encode(&failure));
            self.verdicts.remember_failure(digest, reason);
        }
        match self.verdicts.settle(key.clone(), digest, analysed, &outcome, self.now) {
            Settlement::Current => self.rejudge(vec![key]),
            Settlement::Superseded { facts, cause, verdict } => {
                self.judge_superseded(&key, &facts, cause.map(|c| *c), &verdict)
            }
            Settlement::Stale => {}
        }
    }

    /// Judges a version of a bucket that was replaced before its policy was decided, under its
    /// policy's verdict: what that verdict decided and makes worse than the bucket's last
    /// decided posture raises its findings (a policy made public and reverted meanwhile). The
    /// bucket's judgement and posture stay its current version's.
    fn judge_superseded(
        &mut self,
        key: &StoredKey,
        facts: &BucketFacts,
        cause: Option<Cause>,
        verdict: &PolicyVerdict,
    ) {
        let Some(before) = self.index.get(key).map(|e| e.posture) else { return };
        let (decided, undecided) = {
            let owner = |name: &str| self.owners.owner(name, &self.index, &self.org, &self.membership.members);
            let account = self.accounts.get(&facts.key.account_id);
            (
                judge_with(facts, account, &self.org, Some(verdict), &owner),
                judge_with(facts, account, &self.org, None, &owner),
            )
        };
        let cause = cause.unwrap_or_else(|| Cause::refresh(facts.read_at));
        let account = self.accounts.get(&facts.key.account_id);
        self.tracker.observe_superseded(facts, &decided, &undecided, account, before, &cause, self.now);
    }
}

/// The storage engine plus the in-memory state rebuilt from it.
pub struct Store {
    /// Where every commit goes (`storage/`): past `Store::open`, which opens the default
    /// engine, nothing here names it.
    storage: Box<dyn Storage>,
    state: RwLock<State>,
    /// The organization's statistics as of the last commit: read without the state lock,
    /// which the committer holds while it applies.
    published: Mutex<BucketStatistics>,
    /// Report streams open per account and reporter ([`crate::api::auth::Identity::reporter`]):
    /// in memory only (after a restart every agent reconnects), and under a lock of its own so
    /// that accepting a stream never waits for a commit.
    connections: Mutex<HashMap<String, BTreeMap<String, usize>>>,
    /// The last report refused per account, with why (in memory, like `connections`): an
    /// account is only ever charged with its own agent's refusals.
    refusals: Mutex<HashMap<String, (UnixMillis, String)>>,
    /// Why the reporter of an account cannot read it, as its last hello said (in memory, like
    /// `connections`: every reporter says it again when it reconnects).
    problems: Mutex<HashMap<String, (UnixMillis, String)>>,
}

/// The committer releases the state lock after this many operations, so that a read waits
/// for at most one slice of a commit, not for a batch of thousands of snapshots.
const APPLY_SLICE: usize = 64;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database under `dir`, migrates it to this schema version, and
    /// rebuilds the index from it. Findings the load raises (a stored posture the facts no
    /// longer match) are kept and persisted before this returns.
    /// `configured`: the accounts with an agent in the config, expected before they connect.
    pub fn open(
        dir: &Path,
        org: OrgView,
        configured: BTreeSet<AccountId>,
        policy_queue: Option<PolicyQueue>,
    ) -> anyhow::Result<Self> {
        Self::open_on(Box::new(SledStorage::open(dir, true)?), org, configured, policy_queue)
    }

    /// [`Store::open`] over a storage engine already opened.
    pub fn open_on(
        storage: Box<dyn Storage>,
        org: OrgView,
        configured: BTreeSet<AccountId>,
        policy_queue: Option<PolicyQueue>,
    ) -> anyhow::Result<Self> {
        Self::open_inner(storage, org, configured, policy_queue, true)
    }

    /// Opens the store to inspect it: nothing the load finds is written back.
    pub fn open_to_verify(dir: &Path, org: OrgView) -> anyhow::Result<Self> {
        Self::open_inner(Box::new(SledStorage::open(dir, false)?), org, BTreeSet::new(), None, false)
    }

    fn open_inner(
        storage: Box<dyn Storage>,
        org: OrgView,
        configured: BTreeSet<AccountId>,
        policy_queue: Option<PolicyQueue>,
        write: bool,
    ) -> anyhow::Result<Self> {
        let store = Self {
            storage,
            state: RwLock::new(State::default()),
            published: Mutex::default(),
            connections: Mutex::default(),
            refusals: Mutex::default(),
            problems: Mutex::default(),
        };
        store.load(org, configured, policy_queue, write)?;
        Ok(store)
    }

    fn load(
        &self,
        org: OrgView,
        configured: BTreeSet<AccountId>,
        policy_queue: Option<PolicyQueue>,
        write: bool,
    ) -> anyhow::Result<()> {
        let now = estate_common::model::now_ms();
        let mut state = State {
            org,
            membership: Membership { configured, ..Default::default() },
            verdicts: PolicyVerdicts::new(policy_queue),
            now,
            loading: true,
            ..Default::default()
        };
        let mut writes = Writes::default();
        // Before the buckets: a bucket whose analysis failed before is not queued again.
        self.storage.scan(Tree::PolicyFailures, &mut |key, value| {
            let failure: PolicyFailure = decode(Tree::PolicyFailures.name(), key, value)?;
            match <PolicyDigest>::try_from(key) {
                Ok(digest) if failure.analyzer_version == estate_policy::ANALYZER_VERSION => {
                    state.verdicts.remember_failure(digest, failure.reason);
                }
                // Another analyser's failure (or a key of another shape): forgotten.
                _ => writes.remove(Tree::PolicyFailures, key),
            }
            Ok(())
        })?;
        // Events counted within the horizon, the newest `MAX_SEEN_EVENTS`.
        let mut seen: Vec<(UnixMillis, StoredKey, String)> = Vec::new();
        // (The same rule runs hourly while serving: `Op::PruneSeenEvents`.)
        self.storage.scan(Tree::SeenEvents, &mut |key, value| {
            let at: UnixMillis = decode(Tree::SeenEvents.name(), key, value)?;
            match parse_seen_event_key(key) {
                Some((event_id, bucket)) if now - at < SEEN_EVENTS_HORIZON_MS => seen.push((at, bucket, event_id)),
                _ => writes.remove(Tree::SeenEvents, key),
            }
            Ok(())
        })?;
        seen.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.0));
        for (_, bucket, event_id) in seen.drain(MAX_SEEN_EVENTS.min(seen.len())..) {
            writes.remove(Tree::SeenEvents, seen_event_key(&bucket, &event_id));
        }
        state.tracker.load_counted_events(seen.into_iter().map(|(at, bucket, event_id)| (bucket, event_id, at)));
        self.storage.scan(Tree::Members, &mut |key, value| {
            let record: MemberRecord = decode(Tree::Members.name(), key, value)?;
            // Nothing binds yet: the claims are corroborated as the buckets load.
            let changes = state.identities.claim(&record.account_id, &record.canonical_user_id);
            debug_assert!(changes.is_empty());
            state.membership.members.insert(record.account_id.clone(), record);
            Ok(())
        })?;
        self.storage.scan(Tree::Accounts, &mut |key, value| {
            let settings: AccountSettings = decode(Tree::Accounts.name(), key, value)?;
            state.accounts.insert(settings.account_id.clone(), settings);
            Ok(())
        })?;
        self.storage.scan(Tree::Scopes, &mut |key, value| {
            let record: ScopeRecord = decode(Tree::Scopes.name(), key, value)?;
            let Some((account_id, region)) = BucketKey::decode_scope(key) else {
                let text = String::from_utf8_lossy(key);
                anyhow::bail!("corrupt scope key `{text}` (run `estate-admin verify --repair`)");
            };
            state.membership.scopes.entry(account_id).or_default().insert(region, record);
            Ok(())
        })?;
        self.storage.scan(Tree::Findings, &mut |key, value| {
            state.tracker.findings.load(decode(Tree::Findings.name(), key, value)?);
            Ok(())
        })?;
        self.storage.scan(Tree::FindingsFilters, &mut |key, value| {
            let filter: FindingsFilter = decode(Tree::FindingsFilters.name(), key, value)?;
            state.tracker.findings.filters.put(filter);
            Ok(())
        })?;
        self.storage.scan(Tree::SinkCursors, &mut |key, value| {
            let cursor: SinkCursor = decode(Tree::SinkCursors.name(), key, value)?;
            state.sink_cursors.insert(String::from_utf8_lossy(key).into_owned(), cursor);
            Ok(())
        })?;
        // Before the buckets: their replication destinations are judged with the lists.
        self.storage.scan(Tree::BucketLists, &mut |key, value| {
            let list: BucketList = decode(Tree::BucketLists.name(), key, value)?;
            let account = std::str::from_utf8(key).ok().and_then(|k| AccountId::parse(k).ok());
            let account = account.with_context(|| format!("`bucket_lists` key {key:?} is not an account ID"))?;
            state.owners.set_list(&account, list);
            Ok(())
        })?;
        // Before the buckets: a bucket whose outcome is cached is judged from it, not queued.
        let mut cached = Vec::new();
        self.storage.scan(Tree::PolicyOutcomes, &mut |key, value| {
            let record: CachedOutcome = decode(Tree::PolicyOutcomes.name(), key, value)?;
            match <PolicyDigest>::try_from(key) {
                Ok(digest) => cached.push((record.stored_at, digest, record, value.len())),
                Err(_) => writes.remove(Tree::PolicyOutcomes, key),
            }
            Ok(())
        })?;
        // Oldest first, so that the least recently stored are the first to go.
        cached.sort_unstable_by_key(|entry| (entry.0, entry.1));
        for (_, digest, record, bytes) in cached {
            state.verdicts.load_cached(digest, record, bytes);
        }
        self.storage.scan(Tree::Postures, &mut |key, value| {
            let posture = decode(Tree::Postures.name(), key, value)?;
            state.tracker.load_posture(stored_key(Tree::Postures, key)?, posture);
            Ok(())
        })?;
        self.storage.scan(Tree::Buckets, &mut |key, value| {
            let stored: StoredBucket = decode(Tree::Buckets.name(), key, value)?;
            state.insert_entry(stored_key(Tree::Buckets, key)?, stored.facts, stored.generation, None);
            Ok(())
        })?;
        state.tracker.loading_done();
        state.loading = false;
        state.recount_all();
        // A posture the stored facts no longer match (the judge changed, or a posture was
        // lost) raised findings above: they are real changes, so they are kept, persisted
        // and announced like any other.
        let raised = state.tracker.findings.changed.len();
        let announce = Self::drain(&mut state, &mut writes);
        if raised > 0 {
            tracing::info!(findings = raised, "findings raised while loading the store");
        }
        self.publish(&state);
        *self.state.write() = state;
        if write {
            self.persist(writes, announce)?;
        }
        Ok(())
    }

    /// Recomputes the statistics from the stored buckets' judgements, and the freshness counts
    /// from the members and scopes, and compares them with the incrementally kept ones;
    /// returns each disagreement.
    pub fn verify_statistics(&self) -> Vec<String> {
        let state = self.read();
        let mut recomputed = Statistics::default();
        let mut accounts = BTreeSet::new();
        for entry in state.index.values() {
            recomputed.add(&entry.facts.key.account_id, &entry.judgement);
            accounts.insert(entry.facts.key.account_id.clone());
        }
        let mut problems = Vec::new();
        if recomputed.total() != state.stats.total() {
            problems.push(format!(
                "organization totals differ: kept {:?}, recomputed {:?}",
                state.stats.total(),
                recomputed.total()
            ));
        }
        if recomputed.posture(None) != state.stats.posture(None) {
            problems.push(format!(
                "posture counts differ: kept {:?}, recomputed {:?}",
                state.stats.posture(None),
                recomputed.posture(None)
            ));
        }
        for account in accounts {
            if recomputed.account(&account) != state.stats.account(&account)
                || recomputed.posture(Some(&account)) != state.stats.posture(Some(&account))
            {
                problems.push(format!("statistics of account {account} differ from a recomputation"));
            }
        }
        // The freshness counts, recounted over every account Estate should see.
        let mut recounted = Freshness::default();
        for account in state.membership.account_names(&state.org) {
            recounted.set(account, state.membership.standing(&state.org, account));
        }
        let counts = |f: &Freshness| (f.members_without_agent(), f.members_pending(), f.last_updated());
        if counts(&recounted) != counts(&state.membership.freshness) {
            problems.push(format!(
                "freshness differs: kept {:?}, recounted {:?} (without agent, pending, earliest)",
                counts(&state.membership.freshness),
                counts(&recounted)
            ));
        }
        problems
    }

    /// Moves findings, postures and counted events changed in memory into `writes`; returns
    /// the findings to announce once they are durable.
    fn drain(state: &mut State, writes: &mut Writes) -> Vec<Finding> {
        let (postures, counted, changed) = state.tracker.take_changes();
        for (key, posture) in postures {
            match posture {
                Some(p) => writes.insert(Tree::Postures, key, encode(&p)),
                None => writes.remove(Tree::Postures, key),
            }
        }
        for (bucket, event_id, at) in counted {
            writes.insert(Tree::SeenEvents, seen_event_key(&bucket, &event_id), encode(&at));
        }
        for finding in &changed {
            writes.insert(Tree::Findings, finding.id.as_bytes(), encode(finding));
        }
        for (digest, record) in state.verdicts.take_cache_changes() {
            match record {
                Some(bytes) => writes.insert(Tree::PolicyOutcomes, &digest[..], bytes),
                None => writes.remove(Tree::PolicyOutcomes, &digest[..]),
            }
        }
        changed
    }

    /// Commits every write (`Storage::commit`: at once, on stable storage), then announces
    /// the findings. A commit is acknowledged to agents only once this returns.
    fn persist(&self, writes: Writes, announce: Vec<Finding>) -> anyhow::Result<()> {
        self.storage.commit(writes)?;
        if !announce.is_empty() {
            // Under the write lock: a watcher reads `durable_sequence` and subscribes under
            // the read lock, so each finding reaches it exactly once, by replay or by feed.
            let mut state = self.state.write();
            for finding in announce {
                let findings = &mut state.tracker.findings;
                findings.durable_sequence = findings.durable_sequence.max(finding.sequence);
                let _ = findings.feed.send(finding);
            }
        }
        Ok(())
    }

    /// Applies `ops` in order, at time `now`, and returns once they are on disk. Only the
    /// committer calls this (and tests).
    ///
    /// Readers may see a commit part-applied (between slices) as they may see it applied but
    /// not yet on disk; the published statistics and the findings feed move only once it is whole.
    pub fn commit(&self, ops: Vec<Op>, now: UnixMillis) -> anyhow::Result<()> {
        let mut writes = Writes::default();
        let announce = {
            let mut state = self.state.write();
            state.now = now;
            let mut ops = ops.into_iter().peekable();
            while ops.peek().is_some() {
                for op in ops.by_ref().take(APPLY_SLICE) {
                    state.apply(op, &mut writes);
                }
                // Hands the lock to the readers that queued behind this slice, if any
                // (a plain unlock and lock again would often take it back before they run).
                RwLockWriteGuard::bump(&mut state);
            }
            self.publish(&state);
            Self::drain(&mut state, &mut writes)
        };
        self.persist(writes, announce)
    }

    fn publish(&self, state: &State) {
        *self.published.lock().expect("statistics lock poisoned") = state.organization_statistics();
    }

    /// The organization's statistics as of the last commit, without waiting for the one
    /// being applied.
    pub fn organization_statistics(&self) -> BucketStatistics {
        *self.published.lock().expect("statistics lock poisoned")
    }

    /// Makes everything written durable (at shutdown; every commit already made its own
    /// writes durable).
    pub fn flush(&self) -> anyhow::Result<()> {
        self.storage.flush()
    }

    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read()
    }

    /// Runs `read` over the state on the blocking pool: for a read that walks many records,
    /// or that may wait for a slice of the commit being applied, never on the reactor.
    pub async fn read_blocking<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&State) -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || read(&store.read())).await
    }

    pub fn organization(&self) -> OrgView {
        self.state.read().org.clone()
    }

    /// Counts a new report stream of `reporter` for `account_id`, unless the account already
    /// has `limit` open, whoever holds them.
    pub fn try_open_connection(&self, account_id: &str, reporter: &str, limit: usize) -> bool {
        let mut connections = self.connections.lock().expect("connections lock poisoned");
        let open = connections.entry(account_id.to_owned()).or_default();
        if open.values().sum::<usize>() >= limit {
            return false;
        }
        *open.entry(reporter.to_owned()).or_default() += 1;
        true
    }

    /// Who holds a report stream of `account_id` now, in order.
    pub fn reporters(&self, account_id: &str) -> Vec<String> {
        let connections = self.connections.lock().expect("connections lock poisoned");
        connections.get(account_id).map(|open| open.keys().cloned().collect()).unwrap_or_default()
    }

    pub fn connection_closed(&self, account_id: &str, reporter: &str) {
        let mut connections = self.connections.lock().expect("connections lock poisoned");
        if let Some(open) = connections.get_mut(account_id) {
            if let Some(count) = open.get_mut(reporter) {
                *count -= 1;
                if *count == 0 {
                    open.remove(reporter);
                }
            }
            if open.is_empty() {
                connections.remove(account_id);
            }
        }
    }

    /// Report streams open now, over every account.
    pub fn open_streams(&self) -> usize {
        self.connections.lock().expect("connections lock poisoned").values().flat_map(BTreeMap::values).sum()
    }

    /// Records that a report for `account_id`, by a reporter allowed to report for it (its
    /// agent, or a hub of its set), was refused (the reason is cut to 256 characters).
    pub fn note_refusal(&self, account_id: &str, reason: &str) {
        let reason = for_log(reason).to_string().chars().take(256).collect();
        let now = estate_common::model::now_ms();
        self.refusals.lock().expect("refusals lock poisoned").insert(account_id.to_owned(), (now, reason));
    }

    /// Records what the hello of a reporter of `account_id` says about reading it: `problem`
    /// empty clears the last one. The caller has bounded its size.
    pub fn note_problem(&self, account_id: &str, problem: &str) {
        let mut problems = self.problems.lock().expect("problems lock poisoned");
        if problem.is_empty() {
            problems.remove(account_id);
        } else {
            let now = estate_common::model::now_ms();
            problems.insert(account_id.to_owned(), (now, for_log(problem).to_string()));
        }
    }

    /// What is in memory only about one member: who reports for it, and its reader's problem.
    pub fn member_live(&self, account_id: &str) -> MemberLive {
        let problem = self.problems.lock().expect("problems lock poisoned").get(account_id).map(|(_, p)| p.clone());
        MemberLive { reported_by: self.reporters(account_id), problem }
    }

    /// The accounts with a stream open and the last refusals, copied now: a page of members
    /// reads them for each of thousands of members under the state lock, and takes their locks
    /// once instead. The refusals are one per account with an agent at most.
    pub fn liveness(&self) -> Liveness {
        let connected = self
            .connections
            .lock()
            .expect("connections lock poisoned")
            .iter()
            .map(|(account, open)| (account.clone(), open.keys().cloned().collect()))
            .collect();
        let refusals = self.refusals.lock().expect("refusals lock poisoned").clone();
        let problems = self.problems.lock().expect("problems lock poisoned").clone();
        Liveness { connected, refusals, problems }
    }
}

/// What one member view needs from memory ([`Store::member_live`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberLive {
    /// Who holds a report stream of the account now (empty: not connected).
    pub reported_by: Vec<String>,
    /// Why its reader cannot read it, if it said so.
    pub problem: Option<String>,
}

/// What is kept in memory only about members, as of one moment ([`Store::liveness`]).
#[derive(Debug, Default)]
pub struct Liveness {
    /// Accounts with a report stream open, and who holds them.
    pub connected: HashMap<String, Vec<String>>,
    pub refusals: HashMap<String, (UnixMillis, String)>,
    /// Readers' problems, per account ([`Store::note_problem`]).
    pub problems: HashMap<String, (UnixMillis, String)>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::state::records::check_record;
    use estate_common::model::BucketState;

    impl Store {
        /// Every record of `tree` as stored.
        fn records(&self, tree: Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
            let mut records = Vec::new();
            self.storage
                .scan(tree, &mut |key, value| {
                    records.push((key.to_vec(), value.to_vec()));
                    Ok(())
                })
                .unwrap();
            records
        }
    }

    fn facts(account: &str, region: &str, name: &str, read_at: i64) -> BucketFacts {
        BucketFacts {
            key: BucketKey::parse(account, region, name).unwrap(),
            created_at: 1,
            read_at,
            state: BucketState::Readable(Box::default()),
        }
    }

    impl Store {
        /// A commit at a fixed time.
        fn commit_at(&self, ops: Vec<Op>) -> anyhow::Result<()> {
            self.commit(ops, 1_700_000_000_000)
        }
    }

    fn open(dir: &Path) -> Store {
        let org = OrgView::new(None, ["111111111111".parse().unwrap()].into(), Vec::new());
        Store::open(dir, org, BTreeSet::new(), None).unwrap()
    }

    #[test]
    fn a_commit_longer_than_a_slice_is_applied_whole_and_published() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let a = "111111111111";
        let count = APPLY_SLICE * 3 + 7;
        let ops = (0..count)
            .map(|i| Op::Upsert { facts: facts(a, "eu-west-1", &format!("b-{i:05}"), 5), generation: 1, cause: None })
            .collect();
        store.commit_at(ops).unwrap();
        assert_eq!(store.read().index.len(), count);
        assert_eq!(store.organization_statistics().bucket_count, count as i64);
        drop(store);
        assert_eq!(open(dir.path()).read().index.len(), count, "every slice reached the disk");
    }

    #[test]
    fn scope_complete_removes_unreported_buckets_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let a = "111111111111";
        store
            .commit_at(vec![
                Op::Upsert { facts: facts(a, "eu-west-1", "old", 5), generation: 1, cause: None },
                Op::Upsert { facts: facts(a, "eu-west-1", "kept", 5), generation: 1, cause: None },
                Op::Upsert { facts: facts(a, "us-east-1", "other-scope", 5), generation: 1, cause: None },
                Op::ScopeComplete {
                    account_id: a.parse().unwrap(),
                    region: "eu-west-1".parse().unwrap(),
                    generation: 1,
                    read_at: 5,
                    count: 2,
                },
            ])
            .unwrap();
        assert_eq!(store.read().stats.total().bucket_count, 3);
        store
            .commit_at(vec![
                Op::Retain { key: BucketKey::parse(a, "eu-west-1", "kept").unwrap(), generation: 2 },
                Op::Upsert { facts: facts(a, "eu-west-1", "new", 9), generation: 2, cause: None },
                Op::ScopeComplete {
                    account_id: a.parse().unwrap(),
                    region: "eu-west-1".parse().unwrap(),
                    generation: 2,
                    read_at: 9,
                    count: 2,
                },
            ])
            .unwrap();
        let names =
            |s: &Store| -> Vec<String> { s.read().index.values().map(|e| e.facts.key.bucket_name.clone()).collect() };
        assert_eq!(names(&store), vec!["kept", "new", "other-scope"]);
        assert_eq!(store.read().stats.total().bucket_count, 3);
        let published = store.organization_statistics();
        assert_eq!(published.bucket_count, 3);
        drop(store);
        let store = open(dir.path());
        assert_eq!(store.organization_statistics(), published, "the freshness counts are rebuilt at load");
        assert_eq!(names(&store), vec!["kept", "new", "other-scope"]);
        assert_eq!(store.read().stats.total().bucket_count, 3);
        assert_eq!(
            store.read().scope(&a.parse().unwrap(), &"eu-west-1".parse().unwrap()).unwrap().last_updated,
            Some(9)
        );
    }

    /// A policy whose analysis failed inside the analyser is remembered by digest across a
    /// restart: it is not queued again, and its verdicts stay UNKNOWN with the reason.
    #[test]
    fn an_internal_failure_is_not_retried_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let a = "111111111111";
        let org = || OrgView::new(None, [a.parse().unwrap()].into(), Vec::new());
        let text = r#"{"Version":"2012-10-17","Statement":[]}"#;
        let mut f = facts(a, "eu-west-1", "poison", 5);
        f.state = BucketState::Readable(Box::new(estate_common::model::BucketConfig {
            policy: Some(text.into()),
            ..Default::default()
        }));
        let key = f.key.stored();
        let queue = PolicyQueue::default();
        let store = Store::open(dir.path(), org(), BTreeSet::new(), Some(queue.clone())).unwrap();
        store.commit_at(vec![Op::Upsert { facts: f, generation: 1, cause: None }]).unwrap();
        assert_eq!(queue.len(), 1);
        let digest = crate::state::verdicts::digest(text, "poison", a, &org());
        let outcome = PolicyOutcome::internal_failure("internal error: boom".into());
        let bucket = String::new(); // an empty statement list names no bucket
        store.commit_at(vec![Op::PolicyOutcome { key: key.clone(), digest, bucket, outcome }]).unwrap();
        assert!(store.read().policy_explanation(&key).1[0].contains("boom"));
        drop(store);

        let queue = PolicyQueue::default();
        let store = Store::open(dir.path(), org(), BTreeSet::new(), Some(queue.clone())).unwrap();
        assert_eq!(queue.len(), 0, "a remembered failure is not queued again");
        assert!(store.read().policy_explanation(&key).1[0].contains("boom"));
        assert_eq!(store.read().stats.total().bucket_count, 1);
    }

    fn policy_facts(account: &str, name: &str, read_at: i64, policy: &str, status_public: Option<bool>) -> BucketFacts {
        let mut f = facts(account, "eu-west-1", name, read_at);
        f.state = BucketState::Readable(Box::new(estate_common::model::BucketConfig {
            policy: Some(policy.into()),
            policy_status_public: status_public,
            ..Default::default()
        }));
        f
    }

    /// A policy letting `principal` read the bucket's objects.
    fn reader_policy(bucket: &str, principal: &str) -> String {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{principal},"Action":"s3:GetObject","Resource":"arn:aws:s3:::{bucket}/*"}}]}}"#
        )
    }

    /// What a policy worker would send back for `facts` under `org` (analysed with no bucket
    /// name when the policy does not depend on it, as `PolicyVerdicts` queues it).
    fn analysed(facts: &BucketFacts, org: &OrgView) -> Op {
        let text = facts.config().unwrap().policy.as_deref().unwrap();
        let (name, owner) = (&facts.key.bucket_name, &facts.key.account_id);
        let bucket = if crate::state::verdicts::depends_on_bucket(text, name) { name.clone() } else { String::new() };
        let ctx = crate::state::verdicts::context(org, owner);
        let analysis = estate_policy::analyze(text, &bucket, &ctx, &estate_policy::AnalysisOptions::default()).unwrap();
        Op::PolicyOutcome {
            key: facts.key.stored(),
            digest: crate::state::verdicts::digest(text, name, owner, org),
            bucket,
            outcome: PolicyOutcome::Analysed(Arc::new(analysis)),
        }
    }

    fn event(api: &str, id: &str, at: i64) -> Cause {
        Cause { api: Some(api.into()), event_time: at, actor: None, source_ip: None, event_id: Some(id.into()) }
    }

    fn permission(store: &Store, f: &BucketFacts) -> estate_common::macie::EffectivePermission {
        store.read().index.get(&f.key.stored()).unwrap().judgement.effective_permission
    }

    /// Outcomes are kept by digest: a restart judges every unchanged policy from them and
    /// queues no analysis; another organization is another digest, and is analysed again. A
    /// policy that names no bucket in particular is analysed once for all its owner's buckets.
    #[test]
    fn a_restart_judges_from_cached_outcomes_until_the_organization_changes() {
        use estate_common::macie::EffectivePermission;
        let dir = tempfile::tempdir().unwrap();
        let a = "111111111111";
        let org = || OrgView::new(None, [a.parse().unwrap()].into(), Vec::new());
        let public = policy_facts(a, "x", 5, &reader_policy("x", r#""*""#), None);
        let any_bucket = reader_policy("*", r#""*""#);
        let first = policy_facts(a, "y1", 5, &any_bucket, None);
        let second = policy_facts(a, "y2", 5, &any_bucket, None);
        let queue = PolicyQueue::default();
        let store = Store::open(dir.path(), org(), BTreeSet::new(), Some(queue.clone())).unwrap();
        store
            .commit_at(vec![
                no_account_block(a),
                Op::Upsert { facts: public.clone(), generation: 1, cause: None },
                Op::Upsert { facts: first.clone(), generation: 1, cause: None },
            ])
            .unwrap();
        assert_eq!(queue.len(), 2);
        store.commit_at(vec![analysed(&public, &org()), analysed(&first, &org())]).unwrap();
        assert_eq!(permission(&store, &public), EffectivePermission::Public);
        store.commit_at(vec![Op::Upsert { facts: second.clone(), generation: 1, cause: None }]).unwrap();
        assert_eq!(queue.len(), 2, "the second bucket of a bucket-independent policy is judged from the first's");
        assert_eq!(permission(&store, &second), EffectivePermission::Public);
        for f in [&first, &second] {
            let witness = &store.read().policy_explanation(&f.key.stored()).0[0];
            let own = format!("arn:aws:s3:::{}/", f.key.bucket_name);
            assert!(witness.resource.starts_with(&own), "{witness:?}");
        }
        drop(store);

        let queue = PolicyQueue::default();
        let store = Store::open(dir.path(), org(), BTreeSet::new(), Some(queue.clone())).unwrap();
        assert_eq!(queue.len(), 0, "no analysis is queued for unchanged policies after a restart");
        for f in [&public, &first, &second] {
            assert_eq!(permission(&store, f), EffectivePermission::Public);
        }
        assert_eq!(store.read().verdicts.cached(), 2);
        drop(store);

        let queue = PolicyQueue::default();
        let other = OrgView::new(Some("o-1".into()), [a.parse().unwrap()].into(), Vec::new());
        let store = Store::open(dir.path(), other, BTreeSet::new(), Some(queue.clone())).unwrap();
        assert_eq!(queue.len(), 3, "another organization invalidates every cached outcome");
        assert_eq!(permission(&store, &public), EffectivePermission::Unknown);
        drop(store);

        // Outcomes computed with other analyser options are not reused, and are pruned.
        let options =
            estate_policy::AnalysisOptions { budget: std::time::Duration::from_secs(9), ..Default::default() };
        let queue = PolicyQueue::new(&options);
        let store = Store::open(dir.path(), org(), BTreeSet::new(), Some(queue.clone())).unwrap();
        assert_eq!(queue.len(), 3);
        assert_eq!(store.records(Tree::PolicyOutcomes).len(), 0, "another analyser's outcomes are removed");
    }

    /// A policy made public and replaced before its analysis ran still raises S3BucketPublic,
    /// with the event that made it public; the bucket's posture stays its current version's.
    #[test]
    fn a_public_version_replaced_before_its_analysis_still_raises_its_finding() {
        use estate_common::findings::FindingType;
        use estate_common::macie::EffectivePermission;
        let dir = tempfile::tempdir().unwrap();
        let a = "111111111111";
        let org = || OrgView::new(None, [a.parse().unwrap()].into(), Vec::new());
        let owner_only = reader_policy("x", r#"{"AWS":"arn:aws:iam::111111111111:root"}"#);
        let private = policy_facts(a, "x", 5, &owner_only, None);
        let public = policy_facts(a, "x", 6, &reader_policy("x", r#""*""#), None);
        let reverted = policy_facts(a, "x", 7, &owner_only.replace("GetObject", "GetObjectVersion"), None);
        let queue = PolicyQueue::default();
        let store = Store::open(dir.path(), org(), BTreeSet::new(), Some(queue.clone())).unwrap();
        store
            .commit_at(vec![no_account_block(a), Op::Upsert { facts: private.clone(), generation: 1, cause: None }])
            .unwrap();
        store.commit_at(vec![analysed(&private, &org())]).unwrap();
        assert_eq!(permission(&store, &private), EffectivePermission::NotPublic, "the baseline");
        let made_public = event("PutBucketPolicy", "e-public", 6);
        store
            .commit_at(vec![
                Op::Upsert { facts: public.clone(), generation: 1, cause: Some(made_public.clone()) },
                Op::Upsert {
                    facts: reverted.clone(),
                    generation: 1,
                    cause: Some(event("PutBucketPolicy", "e-revert", 7)),
                },
            ])
            .unwrap();
        assert_eq!(queue.len(), 2, "the replaced version is still queued");
        store.commit_at(vec![analysed(&reverted, &org())]).unwrap();
        assert!(store.read().findings().by_id.is_empty());
        store.commit_at(vec![analysed(&public, &org())]).unwrap();
        let state = store.read();
        let findings: Vec<_> = state.findings().by_id.values().collect();
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].kind, FindingType::S3BucketPublic);
        assert_eq!(findings[0].first_action, made_public);
        let entry = state.index.get(&reverted.key.stored()).unwrap();
        assert_eq!(entry.judgement.effective_permission, EffectivePermission::NotPublic, "the current version");
        assert_eq!(entry.posture.public, Some(false));
        assert_eq!(state.verdicts.superseded(), 0);
    }

    /// The commonest revert puts back the exact previous text, whose outcome is already known:
    /// the public version in between is still judged, and raises its finding.
    #[test]
    fn a_public_version_reverted_to_the_exact_previous_text_still_raises_its_finding() {
        use estate_common::findings::FindingType;
        use estate_common::macie::EffectivePermission;
        let dir = tempfile::tempdir().unwrap();
        let a = "111111111111";
        let org = || OrgView::new(None, [a.parse().unwrap()].into(), Vec::new());
        let owner_only = reader_policy("x", r#"{"AWS":"arn:aws:iam::111111111111:root"}"#);
        let private = policy_facts(a, "x", 5, &owner_only, None);
        let public = policy_facts(a, "x", 6, &reader_policy("x", r#""*""#), None);
        let reverted = policy_facts(a, "x", 7, &owner_only, None);
        let queue = PolicyQueue::default();
        let store = Store::open(dir.path(), org(), BTreeSet::new(), Some(queue.clone())).unwrap();
        store
            .commit_at(vec![no_account_block(a), Op::Upsert { facts: private.clone(), generation: 1, cause: None }])
            .unwrap();
        store.commit_at(vec![analysed(&private, &org())]).unwrap();
        let made_public = event("PutBucketPolicy", "e-public", 6);
        store
            .commit_at(vec![
                Op::Upsert { facts: public.clone(), generation: 1, cause: Some(made_public.clone()) },
                Op::Upsert {
                    facts: reverted.clone(),
                    generation: 1,
                    cause: Some(event("PutBucketPolicy", "e-revert", 7)),
                },
            ])
            .unwrap();
        assert_eq!(permission(&store, &reverted), EffectivePermission::NotPublic, "the known outcome answers at once");
        store.commit_at(vec![analysed(&public, &org())]).unwrap();
        let state = store.read();
        let findings: Vec<_> = state.findings().by_id.values().collect();
        assert_eq!(findings.len(), 1, "the public version in between raised its finding");
        assert_eq!((findings[0].kind, &findings[0].first_action), (FindingType::S3BucketPublic, &made_public));
        let entry = state.index.get(&reverted.key.stored()).unwrap();
        assert_eq!(entry.judgement.effective_permission, EffectivePermission::NotPublic, "the current version");
    }

    /// A policy made public and then deleted before its analysis ran raises S3BucketPublic too.
    #[test]
    fn a_public_policy_deleted_before_its_analysis_still_raises_its_finding() {
        use estate_common::findings::FindingType;
        let dir = tempfile::tempdir().unwrap();
        let a = "111111111111";
        let org = || OrgView::new(None, [a.parse().unwrap()].into(), Vec::new());
        let queue = PolicyQueue::default();
        let store = Store::open(dir.path(), org(), BTreeSet::new(), Some(queue.clone())).unwrap();
        store
            .commit_at(vec![
                no_account_block(a),
                Op::Upsert { facts: facts(a, "eu-west-1", "x", 5), generation: 1, cause: None },
            ])
            .unwrap();
        let public = policy_facts(a, "x", 6, &reader_policy("x", r#""*""#), None);
        let deleted = facts(a, "eu-west-1", "x", 7);
        store
            .commit_at(vec![
                Op::Upsert { facts: public.clone(), generation: 1, cause: Some(event("PutBucketPolicy", "e1", 6)) },
                Op::Upsert { facts: deleted, generation: 1, cause: Some(event("DeleteBucketPolicy", "e2", 7)) },
            ])
            .unwrap();
        assert!(store.read().findings().by_id.is_empty());
        store.commit_at(vec![analysed(&public, &org())]).unwrap();
        let state = store.read();
        let kinds: Vec<_> = state.findings().by_id.values().map(|f| f.kind).collect();
        assert_eq!(kinds, [FindingType::S3BucketPublic]);
        assert!(state.policy_explanation(&public.key.stored()).0.is_empty(), "no policy now: no witnesses");
    }

    /// S3's PolicyStatus.IsPublic decides a policy the analyser left UNKNOWN, and the bucket
    /// becoming PUBLIC that way raises its finding.
    #[test]
    fn s3_policy_status_makes_an_undecided_policy_public_and_raises_the_finding() {
        use estate_common::findings::FindingType;
        use estate_common::macie::EffectivePermission;
        let dir = tempfile::tempdir().unwrap();
        let a = "111111111111";
        let queue = PolicyQueue::default();
        let org = OrgView::new(None, [a.parse().unwrap()].into(), Vec::new());
        let store = Store::open(dir.path(), org.clone(), BTreeSet::new(), Some(queue.clone())).unwrap();
        store
            .commit_at(vec![
                no_account_block(a),
                Op::Upsert { facts: facts(a, "eu-west-1", "x", 5), generation: 1, cause: None },
            ])
            .unwrap();
        let undecidable = policy_facts(a, "x", 6, r#"{"Statement":"not a list"}"#, Some(true));
        store.commit_at(vec![Op::Upsert { facts: undecidable.clone(), generation: 1, cause: None }]).unwrap();
        assert_eq!(permission(&store, &undecidable), EffectivePermission::Unknown, "while it is analysed");
        let text = undecidable.config().unwrap().policy.clone().unwrap();
        let digest = crate::state::verdicts::digest(&text, "x", a, &org);
        let outcome = PolicyOutcome::Malformed("`Statement` is not a list".into());
        let op = Op::PolicyOutcome { key: undecidable.key.stored(), digest, bucket: "x".into(), outcome };
        store.commit_at(vec![op]).unwrap();
        let state = store.read();
        let entry = state.index.get(&undecidable.key.stored()).unwrap();
        assert_eq!(entry.judgement.effective_permission, EffectivePermission::Public);
        assert!(entry.judgement.public_by_s3_policy_status);
        let kinds: Vec<_> = state.findings().by_id.values().map(|f| f.kind).collect();
        assert_eq!(kinds, [FindingType::S3BucketPublic]);
    }

    #[test]
    fn replaying_the_same_ops_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let a = "111111111111";
        let ops = vec![
            Op::Upsert { facts: facts(a, "eu-west-1", "x", 5), generation: 1, cause: None },
            Op::Delete { key: BucketKey::parse(a, "eu-west-1", "gone").unwrap() },
            Op::ScopeComplete {
                account_id: a.parse().unwrap(),
                region: "eu-west-1".parse().unwrap(),
                generation: 1,
                read_at: 5,
                count: 1,
            },
        ];
        store.commit_at(ops.clone()).unwrap();
        let before = store.read().stats.total();
        store.commit_at(ops).unwrap();
        assert_eq!(store.read().stats.total(), before);
        assert_eq!(before.bucket_count, 1);
    }

    /// Only the buckets of a Region's first complete inventory are a baseline: a bucket that
    /// appears after it, exposed, raises its findings; and a public access block that could
    /// not be read is unknown, not "every setting disabled".
    #[test]
    fn a_bucket_that_appears_after_the_first_inventory_is_compared_with_an_unexposed_one() {
        use estate_common::findings::FindingType;
        use estate_common::model::{BlockPublicAccess, BucketConfig, ConfigCall, UnreadCall};
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let a = "111111111111";
        let all_on = BlockPublicAccess {
            block_public_acls: true,
            ignore_public_acls: true,
            block_public_policy: true,
            restrict_public_buckets: true,
        };
        let guarded = |read_at, config: BucketConfig| BucketFacts {
            state: BucketState::Readable(Box::new(config)),
            ..facts(a, "eu-west-1", "guarded", read_at)
        };
        let (account, region): (AccountId, Region) = (a.parse().unwrap(), "eu-west-1".parse().unwrap());
        store
            .commit_at(vec![
                no_account_block(a),
                Op::ScopeStarted { account_id: account.clone(), region: region.clone(), total: 2 },
                Op::Upsert { facts: public_facts(a, "born-public", 5), generation: 1, cause: None },
                Op::Upsert {
                    facts: guarded(5, BucketConfig { block_public_access: Some(all_on), ..Default::default() }),
                    generation: 1,
                    cause: None,
                },
                Op::ScopeComplete { account_id: account, region, generation: 1, read_at: 5, count: 2 },
            ])
            .unwrap();
        assert!(store.read().findings().by_id.is_empty(), "the first inventory is the baseline");

        let unread = BucketConfig {
            unread: vec![UnreadCall { call: ConfigCall::PublicAccessBlock, error: "SlowDown".into() }],
            ..Default::default()
        };
        store
            .commit_at(vec![
                Op::Upsert { facts: public_facts(a, "new-public", 9), generation: 1, cause: None },
                Op::Upsert { facts: guarded(9, unread), generation: 1, cause: None },
            ])
            .unwrap();
        let raised: BTreeSet<(String, FindingType)> =
            store.read().findings().by_id.values().map(|f| (f.bucket_name.clone(), f.kind)).collect();
        assert_eq!(
            raised,
            BTreeSet::from([
                ("new-public".to_owned(), FindingType::S3BucketPublic),
                ("new-public".to_owned(), FindingType::S3BlockPublicAccessDisabled),
            ]),
            "the new bucket's exposure, and nothing for the guarded bucket whose block went unread"
        );
    }

    fn no_account_block(account: &str) -> Op {
        Op::AccountSettings(AccountSettings {
            account_id: account.parse().unwrap(),
            read_at: 1,
            block_public_access: estate_common::model::AccountBlockPublicAccess::NotConfigured,
        })
    }

    fn public_facts(account: &str, name: &str, read_at: i64) -> BucketFacts {
        use estate_common::model::{Acl, AclGrant, AclPermission, BucketConfig, ALL_USERS_GROUP};
        let owner = "a".repeat(64);
        let mut f = facts(account, "eu-west-1", name, read_at);
        f.state = BucketState::Readable(Box::new(BucketConfig {
            acl: Some(Acl {
                owner_canonical_id: owner.clone(),
                grants: vec![
                    AclGrant { grantee: Grantee::CanonicalUser(owner), permission: AclPermission::FullControl },
                    AclGrant { grantee: Grantee::Group(ALL_USERS_GROUP.into()), permission: AclPermission::Read },
                ],
            }),
            ..Default::default()
        }));
        f
    }

    /// Today's on-disk encoding, pinned: a change to a stored type or to the codec that is not
    /// a new record version fails here, before it can refuse every existing database.
    #[test]
    fn the_record_encoding_is_pinned() {
        let stored = StoredBucket { facts: public_facts("111111111111", "golden", 7), generation: 3 };
        let scope = ScopeRecord { generation: 3, last_updated: Some(9), bucket_count: 1 };
        let member = MemberRecord {
            account_id: "111111111111".parse().unwrap(),
            regions: vec!["eu-west-1".parse().unwrap()],
            canonical_user_id: "c".into(),
            agent_version: "1".into(),
            last_contact: 5,
        };
        let failure = PolicyFailure { analyzer_version: "v".into(), reason: "r".into() };
        let outcome = CachedOutcome {
            analyzer: "v".into(),
            bucket: "b".into(),
            stored_at: 7,
            settled: crate::state::verdicts::Settled {
                verdict: PolicyVerdict {
                    public_read: estate_common::macie::Tri::True,
                    public_write: estate_common::macie::Tri::False,
                    unencrypted_uploads: estate_common::macie::Tri::Unknown,
                    shared_internal: vec!["1".into()],
                    shared_external: vec!["*".into()],
                    shared_with_cloudfront: estate_common::macie::Tri::False,
                    sharing_decided: true,
                    service_accounts: Vec::new(),
                },
                witnesses: vec![estate_common::macie::PolicyWitness {
                    question: "q".into(),
                    principal: "*".into(),
                    principal_account: None,
                    action: "a".into(),
                    resource: "r".into(),
                    context: [("k".to_owned(), vec!["v".to_owned()])].into(),
                }],
                reasons: vec!["x".into()],
            },
        };
        let golden = [
            (
                hex::encode(encode(&stored)),
                // Version 3 (the same layout as version 2; only findings changed): as version 1
                // below, and the empty `unread` list (00) before the generation.
                concat!(
                    "030c3131313131313131313131310965752d776573742d3106676f6c64656e020e000000000001406161616161616161",
                    "616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161",
                    "616161616161616102004061616161616161616161616161616161616161616161616161616161616161616161616161",
                    "61616161616161616161616161616161616161616161616161616104012f687474703a2f2f6163732e616d617a6f6e61",
                    "77732e636f6d2f67726f7570732f676c6f62616c2f416c6c55736572730000000000000003"
                ),
            ),
            (hex::encode(encode(&scope)), "0303011201"),
            (hex::encode(encode(&member)), "030c313131313131313131313131010965752d776573742d31016301310a"),
            (hex::encode(encode(&failure)), "0301760172"),
            (hex::encode(encode(&Posture::default())), "03000000000000"),
            // A cached analysis (`policy_outcomes`): analyser, bucket, time, then the verdict
            // (Tri as its variant index: 00 TRUE, 01 FALSE, 02 UNKNOWN), witnesses, reasons.
            (hex::encode(encode(&outcome)), "03017601620e00010201013101012a0101010171012a000161017201016b010176010178"),
        ];
        for (actual, pinned) in golden {
            assert_eq!(actual, pinned);
        }
    }

    /// A bucket record of version 1 (before `unread`), as an older administrator wrote it,
    /// still loads, with nothing unread.
    #[test]
    fn a_version_1_bucket_record_still_decodes() {
        let v1 = concat!(
            "010c3131313131313131313131310965752d776573742d3106676f6c64656e020e000000000001406161616161616161",
            "616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161",
            "616161616161616102004061616161616161616161616161616161616161616161616161616161616161616161616161",
            "61616161616161616161616161616161616161616161616161616104012f687474703a2f2f6163732e616d617a6f6e61",
            "77732e636f6d2f67726f7570732f676c6f62616c2f416c6c557365727300000000000003"
        );
        let stored: StoredBucket = decode("buckets", b"k", &hex::decode(v1).unwrap()).unwrap();
        assert_eq!(stored.facts, public_facts("111111111111", "golden", 7));
        assert_eq!(stored.generation, 3);
    }

    /// Object statistics nest their Macie numbers (`ObjectTotals`); stored records must stay
    /// the bytes of the flat layout they were written in before, field for field.
    #[test]
    fn nested_object_totals_encode_as_the_flat_fields_did() {
        use estate_common::macie::{ObjectCountByEncryptionType, ObjectLevelStatistics};
        use estate_common::objects::{ObjectStatsSource, ObjectTotals, Usage};
        #[derive(serde::Serialize)]
        struct Flat {
            object_count: i64,
            size_in_bytes: i64,
            size_in_bytes_compressed: i64,
            classifiable_object_count: i64,
            classifiable_size_in_bytes: i64,
            unclassifiable_object_count: ObjectLevelStatistics,
            unclassifiable_object_size_in_bytes: ObjectLevelStatistics,
            object_count_by_encryption_type: ObjectCountByEncryptionType,
            by_storage_class: BTreeMap<String, Usage>,
            multipart_parts: i64,
            source: ObjectStatsSource,
            read_at: i64,
        }
        let unclassifiable = ObjectLevelStatistics { file_type: 3, storage_class: 4, total: 5 };
        let by_encryption = ObjectCountByEncryptionType { unknown: 6, s3_managed: 7, ..Default::default() };
        let by_storage_class = BTreeMap::from([("STANDARD".to_owned(), Usage { count: 8, size: 9 })]);
        let nested = ObjectStats {
            totals: ObjectTotals {
                object_count: 10,
                size_in_bytes: 11,
                size_in_bytes_compressed: 12,
                classifiable_object_count: 13,
                classifiable_size_in_bytes: 14,
                unclassifiable_object_count: unclassifiable,
                unclassifiable_object_size_in_bytes: ObjectLevelStatistics { total: 15, ..unclassifiable },
            },
            object_count_by_encryption_type: by_encryption,
            by_storage_class: by_storage_class.clone(),
            multipart_parts: 16,
            source: ObjectStatsSource::Sampled,
            read_at: 17,
        };
        let flat = Flat {
            object_count: 10,
            size_in_bytes: 11,
            size_in_bytes_compressed: 12,
            classifiable_object_count: 13,
            classifiable_size_in_bytes: 14,
            unclassifiable_object_count: unclassifiable,
            unclassifiable_object_size_in_bytes: ObjectLevelStatistics { total: 15, ..unclassifiable },
            object_count_by_encryption_type: by_encryption,
            by_storage_class,
            multipart_parts: 16,
            source: ObjectStatsSource::Sampled,
            read_at: 17,
        };
        assert_eq!(postcard::to_allocvec(&nested).unwrap(), postcard::to_allocvec(&flat).unwrap());
    }

    /// A database written before records were versioned opens, migrated, with nothing lost.
    #[test]
    fn an_unversioned_database_is_migrated_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let a = "111111111111";
        {
            let db = sled::open(dir.path()).unwrap();
            let f = facts(a, "eu-west-1", "legacy", 5);
            let legacy = postcard::to_allocvec(&StoredBucket { facts: f.clone(), generation: 1 }).unwrap();
            db.open_tree("buckets").unwrap().insert(f.key.encode(), legacy).unwrap();
            let scope = postcard::to_allocvec(&ScopeRecord { generation: 1, last_updated: Some(5), bucket_count: 1 });
            db.open_tree("scopes")
                .unwrap()
                .insert(BucketKey::scope_prefix(&a.parse().unwrap(), &"eu-west-1".parse().unwrap()), scope.unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        let store = open(dir.path());
        assert_eq!(store.read().index.len(), 1);
        assert_eq!(
            store.read().scope(&a.parse().unwrap(), &"eu-west-1".parse().unwrap()).unwrap().last_updated,
            Some(5)
        );
        drop(store);
        let reopened = open(dir.path());
        assert_eq!(reopened.read().index.len(), 1, "migrated once, readable after");
    }

    #[test]
    fn an_older_read_arriving_late_loses_to_the_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let a = "111111111111";
        store
            .commit_at(vec![
                no_account_block(a),
                Op::ScopeStarted { account_id: a.parse().unwrap(), region: "eu-west-1".parse().unwrap(), total: 2 },
                Op::Upsert { facts: public_facts(a, "x", 20), generation: 2, cause: None },
            ])
            .unwrap();
        store
            .commit_at(vec![Op::Upsert { facts: facts(a, "eu-west-1", "x", 10), generation: 1, cause: None }])
            .unwrap();
        let state = store.read();
        let entry = state.index.values().next().unwrap();
        assert_eq!(entry.facts.read_at, 20, "the newer read stays");
        let progress = state.membership.progress(&a.parse().unwrap(), &"eu-west-1".parse().unwrap()).unwrap();
        assert_eq!(progress, (2, 2), "each report counts once toward the refresh's progress");
        assert_eq!(state.stats.total().bucket_count_by_effective_permission.publicly_accessible, 1);
    }

    /// A stored posture that the stored facts no longer match (a crash in an older version,
    /// or a judge that changed) raises its finding at load, and the finding is kept.
    #[test]
    fn findings_raised_while_loading_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = "111111111111";
        let store = open(dir.path());
        store
            .commit_at(vec![
                no_account_block(a),
                Op::Upsert { facts: facts(a, "eu-west-1", "x", 5), generation: 1, cause: None },
            ])
            .unwrap();
        assert!(store.read().findings().by_id.is_empty());
        // The facts on disk change behind the stored posture's back.
        let public = public_facts(a, "x", 6);
        let posture = store.read().index.get(&public.key.stored()).unwrap().posture;
        let mut writes = Writes::default();
        writes.insert(Tree::Postures, public.key.stored(), encode(&posture));
        writes.insert(Tree::Buckets, public.key.stored(), encode(&StoredBucket { facts: public, generation: 1 }));
        store.storage.commit(writes).unwrap();
        drop(store);
        let store = open(dir.path());
        assert_eq!(store.read().findings().by_id.len(), 1, "the load raised a finding");
        drop(store);
        let store = open(dir.path());
        assert_eq!(store.read().findings().by_id.len(), 1, "and it was persisted, once");
    }

    #[test]
    fn verify_finds_and_repair_quarantines_unreadable_records() {
        let dir = tempfile::tempdir().unwrap();
        let a = "111111111111";
        let store = open(dir.path());
        store
            .commit_at(vec![Op::Upsert { facts: facts(a, "eu-west-1", "good", 5), generation: 1, cause: None }])
            .unwrap();
        let mut writes = Writes::default();
        writes.insert(Tree::Buckets, b"garbage".to_vec(), vec![1, 0xff, 0xff]);
        store.storage.commit(writes).unwrap();
        drop(store);
        let error = format!("{:#}", Store::open(dir.path(), OrgView::default(), BTreeSet::new(), None).unwrap_err());
        assert!(error.contains("verify --repair"), "{error}");

        let storage = SledStorage::open(dir.path(), true).unwrap();
        let report = crate::storage::verify_records(&storage, false, check_record).unwrap();
        assert_eq!((report[0].name, report[0].records, report[0].unreadable), ("buckets", 2, 1));
        let report = crate::storage::verify_records(&storage, true, check_record).unwrap();
        assert_eq!(report[0].unreadable, 1);
        let report = crate::storage::verify_records(&storage, false, check_record).unwrap();
        assert_eq!((report[0].records, report[0].unreadable), (1, 0), "the unreadable record was set aside");
        drop(storage);
        let store = Store::open_to_verify(dir.path(), OrgView::default()).unwrap();
        assert_eq!(store.read().index.len(), 1);
        assert!(store.verify_statistics().is_empty());
    }

    /// A bucket of `account` whose ACL is owned by `owner` and grants READ to `grantees`, and
    /// whose replication rules name `destinations` without an account.
    fn bucket_with(account: &str, name: &str, owner: &str, grantees: &[&str], destinations: &[&str]) -> BucketFacts {
        use estate_common::model::{Acl, AclGrant, AclPermission, BucketConfig, Replication, ReplicationRule};
        let config = BucketConfig {
            acl: Some(Acl {
                owner_canonical_id: owner.into(),
                grants: grantees
                    .iter()
                    .map(|g| AclGrant { grantee: Grantee::CanonicalUser((*g).into()), permission: AclPermission::Read })
                    .collect(),
            }),
            replication: (!destinations.is_empty()).then(|| Replication {
                role: "r".into(),
                rules: destinations
                    .iter()
                    .map(|d| ReplicationRule {
                        id: (*d).into(),
                        enabled: true,
                        destination_bucket_arn: format!("arn:aws:s3:::{d}"),
                        destination_account: None,
                    })
                    .collect(),
            }),
            ..Default::default()
        };
        BucketFacts { state: BucketState::Readable(Box::new(config)), ..facts(account, "us-east-1", name, 5) }
    }

    fn hello(account: &str, canonical: &str) -> Op {
        Op::Hello {
            account_id: account.parse().unwrap(),
            regions: vec!["us-east-1".parse().unwrap()],
            canonical_user_id: canonical.into(),
            agent_version: "t".into(),
        }
    }

    fn upsert(facts: BucketFacts) -> Op {
        Op::Upsert { facts, generation: 1, cause: None }
    }

    fn judgement(store: &Store, account: &str, name: &str) -> Judgement {
        let key = BucketKey::parse(account, "us-east-1", name).unwrap().stored();
        store.read().index.get(&key).expect("the bucket is held").judgement.clone()
    }

    fn open_org(dir: &Path) -> Store {
        let org =
            OrgView::new(None, ["111111111111".parse().unwrap(), "222222222222".parse().unwrap()].into(), Vec::new());
        Store::open(dir, org, BTreeSet::new(), None).unwrap()
    }

    #[test]
    fn a_claimed_canonical_id_binds_only_when_the_claimants_buckets_corroborate_it() {
        use estate_common::macie::SharedAccess;
        let dir = tempfile::tempdir().unwrap();
        let store = open_org(dir.path());
        let (a, b) = ("111111111111", "222222222222");
        store
            .commit_at(vec![
                hello(b, "cb"),
                upsert(bucket_with(b, "b-shares", "cb", &["cx"], &[])),
                hello(a, "ca"),
                upsert(bucket_with(a, "a-own", "ca", &[], &[])),
            ])
            .unwrap();
        assert_eq!(judgement(&store, b, "b-shares").shared_access, SharedAccess::External);
        // A's agent claims the outsider's ID: its buckets say otherwise, so B's verdict stays.
        store.commit_at(vec![hello(a, "cx")]).unwrap();
        assert_eq!(judgement(&store, b, "b-shares").shared_access, SharedAccess::External);
        // Even with a planted bucket of that owner, A's inventory disagrees with itself.
        store.commit_at(vec![upsert(bucket_with(a, "a-planted", "cx", &[], &[]))]).unwrap();
        assert_eq!(judgement(&store, b, "b-shares").shared_access, SharedAccess::External);
        assert!(!store.read().org.canonical_ids.contains_key("cx"));
        // A true, corroborated claim binds: a grant to A's real ID is internal.
        store
            .commit_at(vec![
                Op::Delete { key: BucketKey::parse(a, "us-east-1", "a-planted").unwrap() },
                hello(a, "ca"),
                upsert(bucket_with(b, "b-shares", "cb", &["ca"], &[])),
            ])
            .unwrap();
        assert_eq!(judgement(&store, b, "b-shares").shared_access, SharedAccess::Internal);
        // The bindings are rebuilt from the store at start-up, the same way.
        drop(store);
        let store = open_org(dir.path());
        assert_eq!(judgement(&store, b, "b-shares").shared_access, SharedAccess::Internal);
        assert_eq!(store.read().org.canonical_ids.get("ca").map(AccountId::as_str), Some(a));
        // A's agent now claims another ID: `ca` is unbound, and the bucket granting to it is
        // judged again at once (found through the grantee index, not a scan).
        store.commit_at(vec![hello(a, "cz")]).unwrap();
        assert_eq!(judgement(&store, b, "b-shares").shared_access, SharedAccess::External);
    }

    #[test]
    fn a_destination_named_only_in_a_list_or_claimed_twice_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_org(dir.path());
        let (a, b) = ("111111111111", "222222222222");
        let list = |account: &str, names: &[&str]| Op::AccountBuckets {
            account_id: account.parse().unwrap(),
            list: BucketList { read_at: 5, names: names.iter().map(|n| n.to_string()).collect() },
        };
        store
            .commit_at(vec![
                hello(b, "cb"),
                upsert(bucket_with(b, "b-repl", "cb", &[], &["outside-dest"])),
                list(b, &["b-repl"]),
                hello(a, "ca"),
                list(a, &[]),
            ])
            .unwrap();
        let externally = |store: &Store| judgement(store, b, "b-repl").replication.unwrap();
        assert_eq!(externally(&store).replicated_externally, Some(true));
        // A's list alone claims the outsider's bucket: unknown, naming A, never "inside".
        store.commit_at(vec![list(a, &["outside-dest"])]).unwrap();
        let details = externally(&store);
        assert_eq!(details.replicated_externally, None);
        assert!(details.unknown_reason.as_deref().unwrap().contains(a), "{details:?}");
        // A's inventory holds it, owned by A's claimed canonical user: A's.
        store.commit_at(vec![upsert(bucket_with(a, "outside-dest", "ca", &[], &[]))]).unwrap();
        assert_eq!(externally(&store).replicated_externally, Some(false));
        // ...but not when its ACL's owner is another canonical user, nor when its ACL is
        // unread (a forged snapshot without one) or the bucket an error.
        store.commit_at(vec![upsert(bucket_with(a, "outside-dest", "cx", &[], &[]))]).unwrap();
        assert_eq!(externally(&store).replicated_externally, None);
        store.commit_at(vec![upsert(facts(a, "us-east-1", "outside-dest", 6))]).unwrap();
        assert_eq!(externally(&store).replicated_externally, None);
        // Two accounts claim the name: neither is believed.
        store
            .commit_at(vec![
                upsert(bucket_with(a, "outside-dest", "ca", &[], &[])),
                list(b, &["b-repl", "outside-dest"]),
            ])
            .unwrap();
        let details = externally(&store);
        assert_eq!(details.replicated_externally, None);
        assert!(details.unknown_reason.as_deref().unwrap().contains("claimed by accounts"), "{details:?}");
        assert_eq!(store.read().contested_claims().2, 1);
    }

    #[test]
    fn forgetting_an_account_drops_all_it_stored_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_org(dir.path());
        let (a, b) = ("111111111111", "222222222222");
        store
            .commit_at(vec![
                hello(a, "ca"),
                upsert(bucket_with(a, "a-1", "ca", &[], &[])),
                upsert(bucket_with(a, "a-2", "ca", &[], &[])),
                hello(b, "cb"),
                upsert(bucket_with(b, "b-1", "cb", &[], &[])),
                Op::ScopeComplete {
                    account_id: a.parse().unwrap(),
                    region: "us-east-1".parse().unwrap(),
                    generation: 1,
                    read_at: 5,
                    count: 2,
                },
                Op::AccountBuckets {
                    account_id: a.parse().unwrap(),
                    list: BucketList { read_at: 5, names: ["a-1".to_string()].into() },
                },
            ])
            .unwrap();
        let a_id: AccountId = a.parse().unwrap();
        store.commit_at(vec![Op::ForgetAccount { account_id: a_id.clone() }]).unwrap();
        let check = |store: &Store| {
            let state = store.read();
            assert_eq!(state.index.len(), 1, "only B's bucket stays");
            assert!(
                !state.membership.members.contains_key(&a_id)
                    && state.scope(&a_id, &"us-east-1".parse().unwrap()).is_none()
            );
            assert!(!state.owners.has_list(a) && !state.org.canonical_ids.contains_key("ca"));
            assert_eq!(state.stats.account(&a_id).bucket_count, 0);
        };
        check(&store);
        drop(store);
        let store = open_org(dir.path());
        check(&store);
        assert!(store.verify_statistics().is_empty());
    }

    #[test]
    fn counted_events_are_pruned_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let cause = |id: &str| Cause {
            api: Some("PutBucketAcl".into()),
            event_time: 5,
            actor: None,
            source_ip: None,
            event_id: Some(id.into()),
        };
        let a = "111111111111";
        store
            .commit(
                vec![Op::Upsert {
                    facts: facts(a, "eu-west-1", "bucket-1", 5),
                    generation: 1,
                    cause: Some(cause("old")),
                }],
                1_000,
            )
            .unwrap();
        store
            .commit(
                vec![Op::Upsert {
                    facts: facts(a, "eu-west-1", "bucket-1", 6),
                    generation: 1,
                    cause: Some(cause("new")),
                }],
                9_000,
            )
            .unwrap();
        assert_eq!(store.records(Tree::SeenEvents).len(), 2);
        store.commit(vec![Op::PruneSeenEvents { before: 5_000 }], 10_000).unwrap();
        assert_eq!(
            store.records(Tree::SeenEvents).len(),
            1,
            "the event counted before the horizon is forgotten on disk"
        );
        let (event_id, _) = parse_seen_event_key(&store.records(Tree::SeenEvents)[0].0).unwrap();
        assert_eq!(event_id, "new");
    }
}
