//! Policy findings: each bucket's last decided security posture, the comparison that says
//! whether a change made it worse, and the findings raised (or repeated) when it did. For the
//! buckets of a Region's first complete inventory, the posture a bucket has when its aspects
//! are first decided is its baseline: no finding. A bucket that appears after that is a change
//! in the organization: it is compared with [`Posture::UNEXPOSED`], so one created exposed
//! raises its findings at the refresh or event that first sees it.
//! Findings not updated for [`RETENTION_MS`] are archived by `Op::ArchiveFindings` (hourly).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use estate_common::findings::{BucketSnapshot, Cause, Finding, FindingType};
use estate_common::macie::{EffectivePermission, SharedAccess};
use estate_common::model::{AccountSettings, BucketFacts, BucketKey, ConfigCall, StoredKey, UnixMillis};
use estate_common::text::for_log;

use crate::judge::{snapshot, EncryptionClass, Judgement};
use crate::state::filters::{FilterAction, Filters};

/// Findings older than this (since their last update) are archived.
pub const RETENTION_MS: i64 = 90 * 24 * 3600 * 1000;

/// The decided security aspects of a bucket; `None` while an aspect is unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posture {
    pub public: Option<bool>,
    /// Shared with an AWS account outside the organization (CloudFront not counted; anyone
    /// counts only when the bucket is not public, which is its own finding).
    pub shared_outside: Option<bool>,
    pub shared_with_cloud_front: Option<bool>,
    pub replicated_externally: Option<bool>,
    /// Every bucket-level block public access setting is off.
    pub block_public_access_disabled: Option<bool>,
    /// 0: no default encryption, 1: SSE-S3 (the S3 default), 2: SSE-KMS or DSSE-KMS.
    pub encryption_level: Option<u8>,
}

impl Posture {
    /// What a bucket that appears after its Region's first complete inventory is compared
    /// with: exposed in no way. Its encryption's first decided level is its baseline (S3 has
    /// encrypted every new bucket by default since January 2023).
    pub const UNEXPOSED: Posture = Posture {
        public: Some(false),
        shared_outside: Some(false),
        shared_with_cloud_front: Some(false),
        replicated_externally: Some(false),
        block_public_access_disabled: Some(false),
        encryption_level: None,
    };

    pub fn of(facts: &BucketFacts, j: &Judgement) -> Self {
        let Some(config) = facts.config() else { return Self::default() };
        Self {
            public: match j.effective_permission {
                EffectivePermission::Public => Some(true),
                EffectivePermission::NotPublic => Some(false),
                EffectivePermission::Unknown => None,
            },
            shared_outside: {
                // A public bucket's own finding is S3BucketPublic: `*` counts only where the
                // bucket is not public.
                let public = j.effective_permission == EffectivePermission::Public;
                let outside = j.shared_outside_named || (j.shared_with_anyone && !public);
                match j.shared_access {
                    SharedAccess::Unknown => outside.then_some(true),
                    _ => Some(outside),
                }
            },
            shared_with_cloud_front: j.shared_with_cloud_front.as_bool(),
            replicated_externally: j.replication.as_ref().and_then(|r| r.replicated_externally),
            // Unread (a failed GetPublicAccessBlock) is unknown, as the judge has it: not "all
            // disabled", which is what no configuration at all means.
            block_public_access_disabled: (!config.is_unread(ConfigCall::PublicAccessBlock))
                .then(|| config.block_public_access.is_none_or(|b| b.all_disabled())),
            encryption_level: match j.encryption {
                EncryptionClass::Unencrypted => Some(0),
                EncryptionClass::S3Managed => Some(1),
                EncryptionClass::KmsManaged => Some(2),
                EncryptionClass::Unknown => None,
            },
        }
    }

    /// Keeps the last decided value of every aspect.
    pub fn merge(self, newer: Self) -> Self {
        Self {
            public: newer.public.or(self.public),
            shared_outside: newer.shared_outside.or(self.shared_outside),
            shared_with_cloud_front: newer.shared_with_cloud_front.or(self.shared_with_cloud_front),
            replicated_externally: newer.replicated_externally.or(self.replicated_externally),
            block_public_access_disabled: newer.block_public_access_disabled.or(self.block_public_access_disabled),
            encryption_level: newer.encryption_level.or(self.encryption_level),
        }
    }

    /// The findings an event repeats: those whose aspect the event touches and that are
    /// still bad now (Macie counts every occurrence of the change).
    pub fn repeated_by(&self, event_name: &str) -> Vec<FindingType> {
        let touches: &[FindingType] = match event_name {
            "PutBucketPolicy" | "DeleteBucketPolicy" => &[
                FindingType::S3BucketPublic,
                FindingType::S3BucketSharedExternally,
                FindingType::S3BucketSharedWithCloudFront,
            ],
            "PutBucketAcl" => &[FindingType::S3BucketPublic, FindingType::S3BucketSharedExternally],
            "PutBucketPublicAccessBlock"
            | "DeleteBucketPublicAccessBlock"
            | "PutPublicAccessBlock"
            | "DeletePublicAccessBlock"
            | "PutAccountPublicAccessBlock"
            | "DeleteAccountPublicAccessBlock" => {
                &[FindingType::S3BlockPublicAccessDisabled, FindingType::S3BucketPublic]
            }
            "PutBucketReplication" => &[FindingType::S3BucketReplicatedExternally],
            "PutBucketEncryption" | "DeleteBucketEncryption" => &[FindingType::S3BucketEncryptionDisabled],
            _ => &[],
        };
        touches
            .iter()
            .copied()
            .filter(|kind| match kind {
                FindingType::S3BucketPublic => self.public == Some(true),
                FindingType::S3BucketSharedExternally => self.shared_outside == Some(true),
                FindingType::S3BucketSharedWithCloudFront => {
                    self.shared_with_cloud_front == Some(true) && self.shared_outside != Some(true)
                }
                FindingType::S3BucketReplicatedExternally => self.replicated_externally == Some(true),
                FindingType::S3BlockPublicAccessDisabled => self.block_public_access_disabled == Some(true),
                FindingType::S3BucketEncryptionDisabled => self.encryption_level.is_some_and(|l| l < 2),
            })
            .collect()
    }

    /// The findings a change from `self` (the last decided posture) to `now` raises.
    pub fn worsened(&self, now: &Self) -> Vec<FindingType> {
        let became = |before: Option<bool>, after: Option<bool>| before == Some(false) && after == Some(true);
        let mut out = Vec::new();
        if became(self.public, now.public) {
            out.push(FindingType::S3BucketPublic);
        }
        let outside = became(self.shared_outside, now.shared_outside);
        if outside {
            out.push(FindingType::S3BucketSharedExternally);
        }
        // SharedWithCloudFront gives way to SharedExternally.
        if became(self.shared_with_cloud_front, now.shared_with_cloud_front) && now.shared_outside != Some(true) {
            out.push(FindingType::S3BucketSharedWithCloudFront);
        }
        if became(self.replicated_externally, now.replicated_externally) {
            out.push(FindingType::S3BucketReplicatedExternally);
        }
        if became(self.block_public_access_disabled, now.block_public_access_disabled) {
            out.push(FindingType::S3BlockPublicAccessDisabled);
        }
        if let (Some(before), Some(after)) = (self.encryption_level, now.encryption_level) {
            if after < before {
                out.push(FindingType::S3BucketEncryptionDisabled);
            }
        }
        out
    }
}

/// The findings, in memory (the store persists them), and the feed of changes.
#[derive(Debug)]
pub struct Findings {
    pub by_id: BTreeMap<String, Finding>,
    /// The open (not archived) finding of each bucket and type.
    open: HashMap<(StoredKey, FindingType), String>,
    pub sequence: u64,
    /// The highest sequence that is on disk and announced: a watcher replays up to it and
    /// takes the rest from the feed.
    pub durable_sequence: u64,
    pub feed: broadcast::Sender<Finding>,
    /// Changed since the last flush: to write, then to announce.
    pub changed: Vec<Finding>,
    /// The findings filters (Macie's suppression rules).
    pub filters: Filters,
}

impl Findings {
    /// A watcher's start: the feed of findings announced from now on, and the durable findings
    /// after `after` (none when it is `None`), in sequence order. Called under the store's read
    /// lock, which announcing excludes, so nothing falls between the two and nothing comes
    /// twice.
    pub fn watch_from(&self, after: Option<u64>) -> (broadcast::Receiver<Finding>, Vec<Finding>) {
        let live = self.feed.subscribe();
        let Some(after) = after else { return (live, Vec::new()) };
        let mut backlog: Vec<Finding> = self
            .by_id
            .values()
            .filter(|f| f.sequence > after && f.sequence <= self.durable_sequence)
            .cloned()
            .collect();
        backlog.sort_by_key(|f| f.sequence);
        (live, backlog)
    }
}

impl Default for Findings {
    fn default() -> Self {
        Self {
            by_id: BTreeMap::new(),
            open: HashMap::new(),
            sequence: 0,
            durable_sequence: 0,
            feed: broadcast::channel(4096).0,
            changed: Vec::new(),
            filters: Filters::default(),
        }
    }
}

impl Findings {
    /// Rebuilds from stored findings.
    pub fn load(&mut self, finding: Finding) {
        self.sequence = self.sequence.max(finding.sequence);
        self.durable_sequence = self.sequence;
        if finding.is_current() {
            let key = finding.bucket().stored();
            self.open.insert((key, finding.kind), finding.id.clone());
        }
        self.by_id.insert(finding.id.clone(), finding);
    }

    /// Whether the bucket has a current finding of `kind` (open, or archived by a filter).
    pub fn is_open(&self, bucket: &BucketKey, kind: FindingType) -> bool {
        self.open.contains_key(&(bucket.stored(), kind))
    }

    /// Raises `kind` for a bucket, or counts one more occurrence of its open finding; `state`
    /// is the bucket as it is now.
    pub fn raise(
        &mut self,
        bucket: &BucketKey,
        kind: FindingType,
        cause: &Cause,
        state: &BucketSnapshot,
        now: UnixMillis,
    ) {
        self.sequence += 1;
        let key = (bucket.stored(), kind);
        let finding = match self.open.get(&key).and_then(|id| self.by_id.get_mut(id)) {
            Some(existing) => {
                existing.count += 1;
                existing.updated_at = now;
                existing.last_action = cause.clone();
                existing.bucket_state = Some(state.clone());
                existing.sequence = self.sequence;
                if !existing.archived {
                    if let Some(filter) = self.filters.archiving(existing) {
                        existing.archived = true;
                        existing.suppressed_by = Some(filter);
                    }
                }
                existing.clone()
            }
            None => {
                let mut hasher = Sha256::new();
                hasher.update(key.0.as_bytes());
                hasher.update(kind.as_str().as_bytes());
                hasher.update(now.to_le_bytes());
                hasher.update(self.sequence.to_le_bytes());
                let id = hex::encode(&hasher.finalize()[..16]);
                let mut finding = Finding {
                    id: id.clone(),
                    kind,
                    account_id: bucket.account_id.clone(),
                    region: bucket.region.clone(),
                    bucket_name: bucket.bucket_name.clone(),
                    created_at: now,
                    updated_at: now,
                    count: 1,
                    archived: false,
                    first_action: cause.clone(),
                    last_action: cause.clone(),
                    bucket_state: Some(state.clone()),
                    suppressed_by: None,
                    sequence: self.sequence,
                };
                if let Some(filter) = self.filters.archiving(&finding) {
                    finding.archived = true;
                    finding.suppressed_by = Some(filter);
                }
                self.open.insert(key, id.clone());
                self.by_id.insert(id, finding.clone());
                finding
            }
        };
        tracing::info!(
            finding = %finding.id,
            kind = kind.as_str(),
            bucket = %for_log(&bucket.bucket_name),
            count = finding.count,
            archived = finding.archived,
            cause = %for_log(cause.label()),
            "finding"
        );
        self.changed.push(finding);
    }

    /// Archives the open findings an archiving filter matches now; returns how many (none
    /// for a filter that does not archive).
    pub fn archive_matching(&mut self, filter_id: &str) -> usize {
        if self.filters.get(filter_id).is_none_or(|f| f.action != FilterAction::Archive) {
            return 0;
        }
        let matching: Vec<String> = self
            .by_id
            .values()
            .filter(|f| !f.archived && self.filters.matches(filter_id, f))
            .map(|f| f.id.clone())
            .collect();
        for id in &matching {
            self.sequence += 1;
            let finding = self.by_id.get_mut(id).expect("listed above");
            finding.archived = true;
            finding.suppressed_by = Some(filter_id.to_owned());
            finding.sequence = self.sequence;
            self.changed.push(finding.clone());
        }
        matching.len()
    }

    /// Archives findings not updated for `RETENTION_MS`: a later occurrence opens a new one.
    pub fn archive_older_than(&mut self, now: UnixMillis) {
        let old: Vec<String> = self
            .by_id
            .values()
            .filter(|f| f.is_current() && now - f.updated_at > RETENTION_MS)
            .map(|f| f.id.clone())
            .collect();
        for id in old {
            self.sequence += 1;
            let finding = self.by_id.get_mut(&id).expect("listed above");
            finding.archived = true;
            finding.suppressed_by = None;
            finding.sequence = self.sequence;
            let key = finding.bucket().stored();
            self.open.remove(&(key, finding.kind));
            self.changed.push(finding.clone());
        }
    }
}

/// Events remembered as counted: at most this many are loaded at start-up (the newest), and
/// at most twice as many are kept in memory.
pub const MAX_COUNTED_EVENTS: usize = 100_000;

/// The findings concern, with one owner: the findings themselves, the cause of each bucket's
/// latest read, the postures and counted events changed since the last flush, and the
/// postures read at start-up until their buckets are loaded.
#[derive(Debug, Default)]
pub struct FindingsTracker {
    pub findings: Findings,
    /// The CloudTrail event behind each bucket's latest read, when one was (a refresh
    /// otherwise).
    causes: HashMap<StoredKey, Cause>,
    /// (bucket, event ID) pairs already counted, with when, so that re-judging (or an agent
    /// resending after a crash) counts an event once; persisted by the store with a horizon.
    repeated_events: HashMap<(StoredKey, String), UnixMillis>,
    /// Pairs added since the last flush, with when.
    new_repeated_events: Vec<(StoredKey, String, UnixMillis)>,
    /// Postures changed since the last flush (`None`: removed).
    changed_postures: Vec<(StoredKey, Option<Posture>)>,
    /// Postures read from disk at start-up, consumed as the buckets are loaded.
    loaded_postures: HashMap<StoredKey, Posture>,
}

impl FindingsTracker {
    /// Compares a bucket's decided posture with the last one (`before`) and raises findings
    /// for what got worse; the first decided value of each aspect is its baseline. Returns the
    /// posture to keep. It is persisted when it changed and holds more than the bucket's
    /// stored facts imply (`always_persist` for re-judgements, where that is not known).
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        key: &StoredKey,
        facts: &BucketFacts,
        judgement: &Judgement,
        account: Option<&AccountSettings>,
        before: Option<Posture>,
        always_persist: bool,
        at: UnixMillis,
    ) -> Posture {
        let now = Posture::of(facts, judgement);
        let merged = match before {
            None => now,
            Some(before) => {
                let worse = before.worsened(&now);
                if !worse.is_empty() {
                    let cause = self.causes.get(key).cloned().unwrap_or_else(|| Cause::refresh(facts.read_at));
                    let state = snapshot(facts, judgement, account);
                    for kind in worse {
                        self.findings.raise(&facts.key, kind, &cause, &state, at);
                    }
                }
                before.merge(now)
            }
        };
        self.repeat(key, facts, &merged, at, || snapshot(facts, judgement, account));
        if before != Some(merged) && (always_persist || merged != now) {
            self.changed_postures.push((key.clone(), Some(merged)));
        }
        merged
    }

    /// A version of a bucket replaced before its policy was decided, judged now under its
    /// policy's verdict (`decided`; `undecided`: as it was judged while its policy waited).
    /// The aspects only that verdict decided (public, shared outside, CloudFront) are compared
    /// with the bucket's last decided posture (`before`), and what got worse raises its
    /// findings, with the cause of that version's read. The posture is not changed: the
    /// transient state is over, and the bucket's posture stays its current version's (so a
    /// later real change is still compared with it). Returns the findings raised.
    #[allow(clippy::too_many_arguments)]
    pub fn observe_superseded(
        &mut self,
        facts: &BucketFacts,
        decided: &Judgement,
        undecided: &Judgement,
        account: Option<&AccountSettings>,
        before: Posture,
        cause: &Cause,
        at: UnixMillis,
    ) -> Vec<FindingType> {
        let then = Posture::of(facts, decided);
        let waiting = Posture::of(facts, undecided);
        // What the version showed while its policy waited was compared when it arrived.
        let only_new = |decided: Option<bool>, waited: Option<bool>| if waited.is_none() { decided } else { None };
        let transient = Posture {
            public: only_new(then.public, waiting.public),
            shared_outside: only_new(then.shared_outside, waiting.shared_outside),
            shared_with_cloud_front: only_new(then.shared_with_cloud_front, waiting.shared_with_cloud_front),
            ..Posture::default()
        };
        let worse = before.worsened(&transient);
        if !worse.is_empty() {
            let state = snapshot(facts, decided, account);
            for kind in &worse {
                self.findings.raise(&facts.key, *kind, cause, &state, at);
            }
        }
        worse
    }

    /// An event that makes the same change again (the bucket still in the state a finding
    /// reported) counts one more occurrence of that finding. Each event counts once.
    fn repeat(
        &mut self,
        key: &StoredKey,
        facts: &BucketFacts,
        posture: &Posture,
        at: UnixMillis,
        state: impl FnOnce() -> BucketSnapshot,
    ) {
        let Some(cause) = self.causes.get(key).cloned() else { return };
        let Some(api) = cause.api.clone() else { return };
        let Some(event_id) = cause.event_id.clone() else { return };
        if self.repeated_events.len() > 2 * MAX_COUNTED_EVENTS {
            self.repeated_events.clear();
        }
        if self.repeated_events.insert((key.clone(), event_id.clone()), at).is_some() {
            return;
        }
        self.new_repeated_events.push((key.clone(), event_id, at));
        let mut state = Some(state);
        let mut taken = None;
        for kind in posture.repeated_by(&api) {
            let raised_now =
                self.findings.changed.iter().any(|f| f.kind == kind && f.bucket_name == facts.key.bucket_name);
            if !raised_now && self.findings.is_open(&facts.key, kind) {
                let state: &BucketSnapshot = taken.get_or_insert_with(|| state.take().expect("taken once")());
                self.findings.raise(&facts.key, kind, &cause, state, at);
            }
        }
    }

    /// The cause of the bucket's latest read (`None`: a refresh).
    pub fn set_cause(&mut self, key: &StoredKey, cause: Option<Cause>) {
        match cause {
            Some(cause) => self.causes.insert(key.clone(), cause),
            None => self.causes.remove(key),
        };
    }

    /// The bucket is gone: its posture is removed at the next flush.
    pub fn forget(&mut self, key: &StoredKey) {
        self.causes.remove(key);
        self.changed_postures.push((key.clone(), None));
    }

    pub fn load_posture(&mut self, key: StoredKey, posture: Posture) {
        self.loaded_postures.insert(key, posture);
    }

    /// The stored posture of a bucket being loaded.
    pub fn take_loaded(&mut self, key: &StoredKey) -> Option<Posture> {
        self.loaded_postures.remove(key)
    }

    pub fn load_counted_events(&mut self, events: impl IntoIterator<Item = (StoredKey, String, UnixMillis)>) {
        self.repeated_events.extend(events.into_iter().map(|(bucket, event_id, at)| ((bucket, event_id), at)));
    }

    /// Forgets events counted before `before`, and the oldest past [`MAX_COUNTED_EVENTS`];
    /// returns the pairs forgotten (for the store to remove).
    pub fn prune_counted_events(&mut self, before: UnixMillis) -> Vec<(StoredKey, String)> {
        let mut forgotten: Vec<(StoredKey, String)> =
            self.repeated_events.iter().filter(|(_, at)| **at < before).map(|(pair, _)| pair.clone()).collect();
        for pair in &forgotten {
            self.repeated_events.remove(pair);
        }
        if self.repeated_events.len() > MAX_COUNTED_EVENTS {
            let mut by_age: Vec<(UnixMillis, (StoredKey, String))> =
                self.repeated_events.iter().map(|(pair, at)| (*at, pair.clone())).collect();
            by_age.sort_unstable_by_key(|(at, _)| *at);
            let excess = by_age.len() - MAX_COUNTED_EVENTS;
            for (_, pair) in by_age.into_iter().take(excess) {
                self.repeated_events.remove(&pair);
                forgotten.push(pair);
            }
        }
        forgotten
    }

    /// Every bucket is loaded: postures of buckets that no longer exist are dropped.
    pub fn loading_done(&mut self) {
        self.loaded_postures = HashMap::new();
    }

    /// What changed since the last flush: postures, newly counted events, findings.
    #[allow(clippy::type_complexity)]
    pub fn take_changes(
        &mut self,
    ) -> (Vec<(StoredKey, Option<Posture>)>, Vec<(StoredKey, String, UnixMillis)>, Vec<Finding>) {
        (
            std::mem::take(&mut self.changed_postures),
            std::mem::take(&mut self.new_repeated_events),
            std::mem::take(&mut self.findings.changed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posture(public: bool, outside: bool, cloudfront: bool, encryption: u8) -> Posture {
        Posture {
            public: Some(public),
            shared_outside: Some(outside),
            shared_with_cloud_front: Some(cloudfront),
            replicated_externally: Some(false),
            block_public_access_disabled: Some(false),
            encryption_level: Some(encryption),
        }
    }

    #[test]
    fn worse_changes_raise_findings_and_better_ones_do_not() {
        let base = posture(false, false, false, 2);
        assert_eq!(base.worsened(&posture(true, false, false, 2)), vec![FindingType::S3BucketPublic]);
        assert_eq!(base.worsened(&posture(false, false, true, 2)), vec![FindingType::S3BucketSharedWithCloudFront]);
        // CloudFront gives way to an outside account.
        assert_eq!(base.worsened(&posture(false, true, true, 2)), vec![FindingType::S3BucketSharedExternally]);
        assert_eq!(base.worsened(&posture(false, false, false, 1)), vec![FindingType::S3BucketEncryptionDisabled]);
        assert!(posture(true, true, true, 0).worsened(&base).is_empty());
        // Unknown now: nothing to compare, and the last decided value is kept.
        let unknown = Posture::default();
        assert!(base.worsened(&unknown).is_empty());
        assert_eq!(base.merge(unknown), base);
    }

    /// A bucket's state with only these tags known.
    fn snapshot_tagged(tags: &[(&str, &str)]) -> BucketSnapshot {
        BucketSnapshot {
            created_at: 1,
            owner_id: None,
            public_access: None,
            default_encryption: None,
            allows_unencrypted_object_uploads: estate_common::macie::Tri::Unknown,
            tags: tags
                .iter()
                .map(|(k, v)| estate_common::model::Tag { key: (*k).into(), value: (*v).into() })
                .collect(),
        }
    }

    /// An archiving filter archives the open findings it matches when saved, and later ones
    /// as they are raised; an archived finding stays current and counts occurrences; a NOOP
    /// filter archives nothing; retention's archiving closes a suppressed finding for good.
    #[test]
    fn archiving_filters_suppress_now_and_later() {
        use crate::criteria::Criterion;
        use crate::state::filters::FindingsFilter;
        let mut findings = Findings::default();
        let state = snapshot_tagged(&[("team", "web")]);
        let quiet = BucketKey::parse("111111111111", "us-east-1", "quiet").unwrap();
        let loud = BucketKey::parse("111111111111", "us-east-1", "loud").unwrap();
        let cause = Cause::refresh(1);
        findings.raise(&quiet, FindingType::S3BucketPublic, &cause, &state, 10);
        findings.raise(&loud, FindingType::S3BucketPublic, &cause, &state, 10);
        let filter = |id: &str, action, bucket: &str| FindingsFilter {
            id: id.into(),
            name: format!("filter {id}"),
            description: String::new(),
            action,
            position: 0,
            criteria: [
                (
                    "resourcesAffected.s3Bucket.name".to_owned(),
                    Criterion { eq: vec![bucket.into()], ..Default::default() },
                ),
                (
                    "resourcesAffected.s3Bucket.tags.value".to_owned(),
                    Criterion { eq_exact_match: vec!["web".into()], ..Default::default() },
                ),
            ]
            .into(),
            tags: Default::default(),
            client_token: None,
            created_at: 0,
        };
        findings.filters.put(filter("noop", FilterAction::Noop, "loud"));
        assert_eq!(findings.archive_matching("noop"), 0, "a NOOP filter only names criteria");
        findings.filters.put(filter("quiet", FilterAction::Archive, "quiet"));
        assert_eq!(findings.archive_matching("quiet"), 1);
        let by_bucket = |f: &Findings, name: &str| f.by_id.values().find(|x| x.bucket_name == name).cloned().unwrap();
        let suppressed = by_bucket(&findings, "quiet");
        assert!(suppressed.archived && suppressed.suppressed_by.as_deref() == Some("quiet"));
        assert!(!by_bucket(&findings, "loud").archived);
        // A later occurrence counts on the suppressed finding, which stays archived.
        findings.raise(&quiet, FindingType::S3BucketPublic, &cause, &state, 20);
        let again = by_bucket(&findings, "quiet");
        assert_eq!((again.id, again.count, again.archived), (suppressed.id.clone(), 2, true));
        // A new finding the filter matches is raised archived.
        findings.raise(&quiet, FindingType::S3BlockPublicAccessDisabled, &cause, &state, 30);
        let new = findings.by_id.values().find(|f| f.kind == FindingType::S3BlockPublicAccessDisabled).unwrap();
        assert!(new.archived, "raised archived");
        // Retention closes it: the next occurrence opens a new finding.
        findings.archive_older_than(30 + RETENTION_MS + 1);
        assert!(findings.by_id.values().all(|f| f.archived && f.suppressed_by.is_none()));
        findings.raise(&loud, FindingType::S3BucketPublic, &cause, &state, 40 + RETENTION_MS);
        assert_eq!(findings.by_id.len(), 4);
    }

    #[test]
    fn repeats_count_and_archiving_closes() {
        let mut findings = Findings::default();
        let bucket = BucketKey::parse("111111111111", "us-east-1", "b").unwrap();
        let cause = Cause::refresh(1);
        let state = snapshot_tagged(&[]);
        findings.raise(&bucket, FindingType::S3BucketPublic, &cause, &state, 10);
        findings.raise(&bucket, FindingType::S3BucketPublic, &cause, &state, 20);
        assert_eq!(findings.by_id.len(), 1);
        let f = findings.by_id.values().next().unwrap();
        assert_eq!((f.count, f.created_at, f.updated_at), (2, 10, 20));
        findings.archive_older_than(20 + RETENTION_MS + 1);
        assert!(findings.by_id.values().next().unwrap().archived);
        findings.raise(&bucket, FindingType::S3BucketPublic, &cause, &state, 30 + RETENTION_MS);
        assert_eq!(findings.by_id.len(), 2, "a new occurrence after archiving opens a new finding");
    }
}
