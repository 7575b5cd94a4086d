//! Bucket-policy verdicts in the administrator: the queue of analyses that the state fills
//! whenever a bucket's policy or organization context changes (the worker pool that empties
//! it is `analysis.rs`), and the outcomes. A bucket's verdict is UNKNOWN until its analysis
//! lands; a slow policy delays only its own bucket, and spends at most the per-policy budget.
//!
//! The queue is fair between accounts: jobs for buckets re-read because of a CloudTrail event
//! go before refresh and re-judgement jobs, and within each class the accounts with waiting
//! buckets take turns, one job each, so a member that puts a slow policy on thousands of
//! buckets delays its own verdicts, not other members'. A bucket is in line once: a newer job
//! replaces its queued one in place (a membership change re-judging every bucket queues each
//! once, and the organization's member set is shared by every job), except that a replaced
//! version of the policy is still analysed and judged (bounded, [`MAX_SUPERSEDED_PER_BUCKET`]),
//! so a policy made public and reverted before its analysis ran raises its finding.
//!
//! Outcomes are kept by digest ([`digest`]: the policy, its owner, the organization's digest,
//! and the bucket only when the analysis may depend on it) in memory and in the store's
//! `policy_outcomes` tree, bounded and least recently used out first, so a restart (or a
//! membership change back to a known organization) judges from them without a solver job.
//! Internal failures are remembered by digest (`Store`'s `policy_failures` tree) until the
//! analyser's version changes.
//!
//! A cached outcome is reused only under the same analyser version and options
//! (`fingerprint`), and removed at load otherwise; outcomes that ran out of time and internal
//! failures are not cached. Event jobs go first, but at most `EVENT_BURST` in a row while
//! refresh jobs wait.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use estate_common::findings::Cause;
use estate_common::macie;
use estate_common::model::{AccountId, BucketFacts, StoredKey, UnixMillis};
use estate_policy::{Analysis, AnalysisOptions, OrgContext};
use serde::{Deserialize, Serialize};

use crate::judge::{OrgView, PolicyVerdict};

/// Identifies one analysis: the policy text and the context it was judged under.
pub type PolicyDigest = [u8; 32];

/// The outcome of analysing one bucket's policy.
#[derive(Debug, Clone)]
pub enum PolicyOutcome {
    Analysed(Arc<Analysis>),
    /// The policy could not be parsed: every policy verdict is UNKNOWN with this reason.
    Malformed(String),
}

impl PolicyOutcome {
    /// The analysis failed inside the analyser (caught): remembered, never retried in a loop.
    pub fn is_internal_failure(&self) -> bool {
        self.internal_failure_reason().is_some()
    }

    /// Whether the analysis left a verdict UNKNOWN because its time budget ran out: a busy
    /// machine's answer, not the policy's, so it is not cached.
    pub fn ran_out_of_time(&self) -> bool {
        matches!(self, PolicyOutcome::Analysed(analysis) if analysis.ran_out_of_time())
    }

    /// Why the analysis failed inside the analyser, when it did.
    pub fn internal_failure_reason(&self) -> Option<String> {
        match self {
            PolicyOutcome::Analysed(analysis) if analysis.internal_error => Some(analysis.unknown_reasons.join("; ")),
            _ => None,
        }
    }

    /// The outcome remembered for a policy that failed with `reason`.
    pub fn internal_failure(reason: String) -> PolicyOutcome {
        let mut analysis = Analysis::undecided(reason);
        analysis.internal_error = true;
        PolicyOutcome::Analysed(Arc::new(analysis))
    }
}

/// One bucket's policy to analyse.
#[derive(Debug)]
pub struct Job {
    pub key: StoredKey,
    pub digest: PolicyDigest,
    pub policy: String,
    /// The bucket name to analyse with: empty for a policy whose analysis does not depend on
    /// it, so that one analysis (the analyser caches by name) serves every bucket of the owner.
    pub bucket: String,
    /// The owner (`context.owner_account`) is the account the queue is fair between.
    pub context: OrgContext,
    pub class: JobClass,
}

/// The organization context of a bucket owned by `owner` (the member set is shared).
pub fn context(org: &OrgView, owner: &AccountId) -> OrgContext {
    OrgContext {
        owner_account: owner.clone(),
        organization_id: org.organization_id().map(str::to_owned),
        member_accounts: Arc::clone(org.accounts()),
        organization_paths: org.organization_paths().to_vec(),
    }
}

/// The digest an analysis of `policy` on `bucket` is known by: equal digests, equal verdicts.
/// It covers the policy text, the owner and the organization (its digest), and the bucket's
/// name only when the analysis may depend on it ([`depends_on_bucket`]); a policy that names
/// no bucket in particular has one digest for all of its owner's buckets.
pub fn digest(policy: &str, bucket: &str, owner: &str, org: &OrgView) -> PolicyDigest {
    let bucket = if depends_on_bucket(policy, bucket) { bucket } else { "" };
    // No bucket name is empty, so a digest without one never equals a bucket's own.
    estate_policy::policy_digest(policy, bucket, owner, &org.digest())
}

const S3_ARN_PREFIX: &str = "arn:aws:s3:::";

/// Whether the analysis of `policy` may differ between two buckets of the same owner. The
/// bucket enters an analysis only through its ARN, which Resource and NotResource patterns
/// are matched against (`arn:aws:s3:::BUCKET` for bucket actions, `arn:aws:s3:::BUCKET/KEY`
/// for object actions; a bucket name has no `/`, `*`, `?` or `$`). The answer is "no" only
/// when every pattern matches the same bucket and object ARNs whatever the bucket
/// ([`matches_alike_for_every_bucket`]); a document that does not parse (or is over S3's
/// size limit) is taken to depend on it.
pub fn depends_on_bucket(policy: &str, bucket: &str) -> bool {
    if policy.len() > estate_policy::MAX_POLICY_BYTES {
        // Not read by the analyser either (UNKNOWN): not worth parsing here.
        return true;
    }
    let Ok(parsed) = estate_policy::parse_policy(policy) else { return true };
    let own = format!("{S3_ARN_PREFIX}{bucket}");
    parsed
        .statements
        .iter()
        .flat_map(|st| &st.resource.values)
        .any(|pattern| pattern.starts_with(&own) || !matches_alike_for_every_bucket(pattern))
}

/// Whether a Resource pattern (that does not start with the bucket's own ARN) matches the
/// same bucket and object ARNs of every bucket whose own ARN it does not start with:
/// - its literal beginning (up to the first `*`, `?` or `${`) is no S3 ARN's: it matches none;
/// - it names a bucket literally (`arn:aws:s3:::NAME` exactly, or `arn:aws:s3:::NAME/...`):
///   it matches only that bucket's ARNs, which start with it, so none of the others';
/// - it is `*` after a beginning of `arn:aws:s3:::`, then nothing or `/...`: the `*` takes
///   the whole bucket name (which has no `/`), so the match depends on the key alone.
///
/// Anything else (`arn:aws:s3:::logs-*`, `arn:aws:s3:::${aws:username}/*`) may tell buckets
/// apart.
fn matches_alike_for_every_bucket(pattern: &str) -> bool {
    let special = [pattern.find('*'), pattern.find('?'), pattern.find("${")].into_iter().flatten().min();
    let literal = &pattern[..special.unwrap_or(pattern.len())];
    if !S3_ARN_PREFIX.starts_with(literal) && !literal.starts_with(S3_ARN_PREFIX) {
        return true;
    }
    if let Some(rest) = literal.strip_prefix(S3_ARN_PREFIX).filter(|rest| !rest.is_empty()) {
        // `arn:aws:s3:::/...` names the empty bucket, which the shared analysis stands for.
        return !rest.starts_with('/') && (special.is_none() || rest.contains('/'));
    }
    match pattern[literal.len()..].strip_prefix('*') {
        Some(after) => after.is_empty() || after.starts_with('/'),
        None => false,
    }
}

/// The judge's view of an outcome.
pub fn verdict(outcome: &PolicyOutcome) -> PolicyVerdict {
    match outcome {
        PolicyOutcome::Malformed(_) => PolicyVerdict::undecided(),
        PolicyOutcome::Analysed(a) => PolicyVerdict {
            public_read: a.allows_public_read_access,
            public_write: a.allows_public_write_access,
            unencrypted_uploads: a.allows_unencrypted_object_uploads,
            shared_internal: a.internal_accounts.clone(),
            shared_external: a.external_accounts.clone(),
            shared_with_cloudfront: a.shared_with_cloudfront,
            sharing_decided: a.shared_access != estate_policy::SharedAccess::Unknown,
            // Filled in from the witnesses by `Settled::of`.
            service_accounts: Vec::new(),
        },
    }
}

/// Witnesses and reasons, for the bucket's metadata.
pub fn explanation(outcome: &PolicyOutcome) -> (Vec<macie::PolicyWitness>, Vec<String>) {
    match outcome {
        PolicyOutcome::Malformed(reason) => (Vec::new(), vec![format!("the bucket policy is malformed: {reason}")]),
        PolicyOutcome::Analysed(a) => (
            a.witnesses
                .iter()
                .map(|w| macie::PolicyWitness {
                    question: w.question.to_string(),
                    principal: w.principal.clone(),
                    principal_account: w.principal_account.clone(),
                    action: w.action.clone(),
                    resource: w.resource.clone(),
                    context: w.context.clone(),
                })
                .collect(),
            a.unknown_reasons.clone(),
        ),
    }
}

/// Which jobs a worker takes first: a bucket re-read because of a CloudTrail event (someone
/// just changed it) before a refresh's or a re-judgement's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JobClass {
    Event = 0,
    Refresh = 1,
}

impl JobClass {
    const ALL: [JobClass; 2] = [JobClass::Event, JobClass::Refresh];

    /// The class of a job for a read with this cause (`None`: a refresh or a re-judgement).
    pub fn of(cause: Option<&Cause>) -> Self {
        if cause.is_some() {
            JobClass::Event
        } else {
            JobClass::Refresh
        }
    }
}

/// One bucket's jobs: the analysis of its current version, and of versions replaced before
/// their analysis ran (kept while [`PolicyVerdicts`] waits for them).
#[derive(Debug, Default)]
struct Waiting {
    current: Option<Job>,
    superseded: VecDeque<Job>,
    /// The line that holds this bucket's one live entry; entries in other lines are stale.
    line: Option<JobClass>,
}

impl Waiting {
    fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.current.iter().chain(self.superseded.iter())
    }

    fn len(&self) -> usize {
        self.jobs().count()
    }

    /// The class the bucket waits in: its most urgent job's.
    fn class(&self) -> Option<JobClass> {
        self.jobs().map(|j| j.class).min()
    }

    /// The most urgent job, the current version first among equals.
    fn take(&mut self) -> Option<Job> {
        let class = self.class()?;
        if self.current.as_ref().is_some_and(|j| j.class == class) {
            return self.current.take();
        }
        let at = self.superseded.iter().position(|j| j.class == class)?;
        self.superseded.remove(at)
    }
}

/// The jobs waiting for a worker, fair between accounts: per class (events first), the
/// accounts with waiting buckets take turns, one job per turn, and each account's buckets wait
/// in first-queued order. A bucket is in line once; a newer job for it replaces its current
/// one in place.
#[derive(Debug, Default)]
struct Pending {
    buckets: HashMap<StoredKey, Waiting>,
    /// Per account, its buckets in line for each class (stale entries are skipped).
    lines: HashMap<String, [VecDeque<StoredKey>; 2]>,
    /// Per class, the accounts with entries in that line, in turn.
    turns: [VecDeque<String>; 2],
    jobs: usize,
    /// Event jobs taken in a row while refresh jobs waited (see [`EVENT_BURST`]).
    events_in_a_row: usize,
}

/// Event jobs go first, but at most this many in a row while refresh jobs wait: a member's
/// events (whose cause its own agent reports) cannot hold every other account's re-judgements
/// back for good; refresh jobs keep at least a fifth of the workers' turns.
const EVENT_BURST: usize = 4;

impl Pending {
    fn enqueue(&mut self, key: &StoredKey, account: &str, class: JobClass) {
        let line = &mut self.lines.entry(account.to_owned()).or_default()[class as usize];
        if line.is_empty() {
            self.turns[class as usize].push_back(account.to_owned());
        }
        line.push_back(key.clone());
    }

    /// Queues `job` as its bucket's current version. The job it replaces is kept (as a
    /// superseded version) when its digest is in `keep`, dropped otherwise; a job of the
    /// same digest as `job` is dropped, since `job` answers for it.
    fn submit(&mut self, mut job: Job, keep: &[PolicyDigest]) {
        let key = job.key.clone();
        let account = job.context.owner_account.clone();
        let waiting = self.buckets.entry(key.clone()).or_default();
        let before = waiting.len();
        waiting.superseded.retain(|j| j.digest != job.digest && keep.contains(&j.digest));
        if let Some(old) = waiting.current.take() {
            if old.digest != job.digest && keep.contains(&old.digest) {
                waiting.superseded.push_back(old);
            } else {
                // Replaced in place: the newer read stands for the older one, urgency included.
                job.class = job.class.min(old.class);
            }
        }
        waiting.current = Some(job);
        let after = waiting.len();
        let class = waiting.class().expect("a job was just added");
        let moved = waiting.line != Some(class);
        waiting.line = Some(class);
        self.jobs = self.jobs + after - before;
        if moved {
            self.enqueue(&key, &account, class);
        }
    }

    fn pop(&mut self) -> Option<Job> {
        let order =
            if self.events_in_a_row >= EVENT_BURST { [JobClass::Refresh, JobClass::Event] } else { JobClass::ALL };
        let job = self.pop_in(order)?;
        let refresh_waits = !self.turns[JobClass::Refresh as usize].is_empty();
        self.events_in_a_row = match job.class {
            JobClass::Event if refresh_waits => self.events_in_a_row + 1,
            _ => 0,
        };
        Some(job)
    }

    fn pop_in(&mut self, order: [JobClass; 2]) -> Option<Job> {
        for class in order {
            let c = class as usize;
            while let Some(account) = self.turns[c].pop_front() {
                let Some(lines) = self.lines.get_mut(&account) else { continue };
                let mut taken = None;
                while let Some(key) = lines[c].pop_front() {
                    if self.buckets.get(&key).is_some_and(|w| w.line == Some(class)) {
                        taken = Some(key);
                        break;
                    }
                }
                if !lines[c].is_empty() {
                    self.turns[c].push_back(account.clone());
                } else if lines.iter().all(VecDeque::is_empty) {
                    self.lines.remove(&account);
                }
                let Some(key) = taken else { continue };
                let waiting = self.buckets.get_mut(&key).expect("checked above");
                let job = waiting.take().expect("a bucket in line has a job");
                self.jobs -= 1;
                match waiting.class() {
                    None => {
                        self.buckets.remove(&key);
                    }
                    Some(next) => {
                        // Its other versions wait for the account's next turns.
                        waiting.line = Some(next);
                        self.enqueue(&key, &account, next);
                    }
                }
                return Some(job);
            }
        }
        None
    }
}

/// The sending side of the worker pool.
#[derive(Debug, Clone)]
pub struct PolicyQueue {
    inner: Arc<(Mutex<Pending>, Condvar)>,
    /// The analyser's version and options: outcomes cached under others are not reused.
    fingerprint: Arc<str>,
}

impl Default for PolicyQueue {
    fn default() -> Self {
        PolicyQueue::new(&AnalysisOptions::default())
    }
}

impl PolicyQueue {
    /// A queue for workers analysing with `options`.
    pub fn new(options: &AnalysisOptions) -> Self {
        PolicyQueue { inner: Arc::default(), fingerprint: fingerprint(options).into() }
    }

    /// Queues `job` as its bucket's current version, replacing a job for the same bucket that
    /// no worker has taken yet, unless the replaced job's digest is in `keep` (a superseded
    /// version still to be judged).
    pub fn submit(&self, job: Job, keep: &[PolicyDigest]) {
        let (lock, ready) = &*self.inner;
        lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner).submit(job, keep);
        ready.notify_one();
    }

    /// Jobs waiting for a worker.
    pub fn len(&self) -> usize {
        self.inner.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).jobs
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next job, waiting at most `wait` for one.
    pub fn next(&self, wait: Duration) -> Option<Job> {
        let (lock, ready) = &*self.inner;
        let mut pending = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some(job) = pending.pop() {
                return Some(job);
            }
            let (guard, timeout) = ready.wait_timeout(pending, wait).unwrap_or_else(std::sync::PoisonError::into_inner);
            pending = guard;
            if timeout.timed_out() && pending.jobs == 0 {
                return None;
            }
        }
    }
}

/// What an outcome cached on disk must have been computed with to be reused: the analyser's
/// version and every option (a budget raised since may decide what timed out before).
fn fingerprint(options: &AnalysisOptions) -> String {
    format!("{} {options:?}", estate_policy::ANALYZER_VERSION)
}

/// How many replaced versions of one bucket wait to be judged. A version replaced before its
/// analysis ran is still analysed and judged (so that a policy made public and reverted raises
/// its finding); versions that differ only in the organization they were judged under are
/// not versions. Past the bound, a bucket keeps the versions it holds and a further replaced
/// version is dropped unjudged, with a warning: a burst of edits to one bucket costs at most
/// this many extra analyses, while flipping between two texts costs one (versions of equal
/// digest are one). Replaced versions live in memory only: a restart forgets those not yet
/// judged (the store keeps each bucket's current facts, not its history).
pub const MAX_SUPERSEDED_PER_BUCKET: usize = 4;

/// How many replaced versions wait to be judged over all buckets (each holds its bucket's
/// facts of the time, up to S3's 20 KB policy): past it, replaced versions are dropped
/// unjudged, with a warning, until some are judged.
pub const MAX_SUPERSEDED: usize = 100_000;

/// How many analysis outcomes the `policy_outcomes` tree (and its copy in memory) keeps. The
/// least recently used go first. Enough for an organization's distinct policies, so that a
/// restart re-judges from the cache; bounded, because every entry is also in memory.
pub const MAX_CACHED_OUTCOMES: usize = 1_000_000;

/// The encoded bytes the outcome cache keeps at most (the least recently used go first): a
/// policy naming thousands of accounts has a large outcome.
pub const MAX_CACHED_OUTCOME_BYTES: usize = 256 * 1024 * 1024;

/// The digest [`PolicyVerdicts::supersede`] is given for a version without a policy (no
/// analysis has it: it is no SHA-256 anyone can produce on purpose).
const NO_POLICY: PolicyDigest = [0; 32];

fn policy_text(facts: &BucketFacts) -> Option<&str> {
    facts.config().and_then(|c| c.policy.as_deref())
}

/// The accounts an AWS service principal gets in for, as the witnesses of the analyser's
/// `serviceActingFor:ACCOUNT` questions name them (a "yes" always has its witness).
fn service_accounts(witnesses: &[macie::PolicyWitness]) -> Vec<String> {
    witnesses.iter().filter_map(|w| w.question.strip_prefix("serviceActingFor:").map(str::to_owned)).collect()
}

/// What the store keeps of an analysis: the judge's verdict and the explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    pub verdict: PolicyVerdict,
    pub witnesses: Vec<macie::PolicyWitness>,
    pub reasons: Vec<String>,
}

impl Settled {
    pub fn of(outcome: &PolicyOutcome) -> Self {
        let (witnesses, reasons) = explanation(outcome);
        let mut verdict = verdict(outcome);
        verdict.service_accounts = service_accounts(&witnesses);
        Settled { verdict, witnesses, reasons }
    }

    /// The same outcome for `bucket`, when it was computed for `analysed` (a policy whose
    /// analysis does not depend on the bucket): the witnesses' resources name `bucket`.
    fn for_bucket(&self, analysed: &str, bucket: &str) -> Settled {
        let from = format!("{S3_ARN_PREFIX}{analysed}");
        let to = format!("{S3_ARN_PREFIX}{bucket}");
        let mut out = self.clone();
        for witness in &mut out.witnesses {
            if let Some(rest) = witness.resource.strip_prefix(&from).filter(|r| r.is_empty() || r.starts_with('/')) {
                witness.resource = format!("{to}{rest}");
            }
        }
        out
    }
}

/// An outcome as the `policy_outcomes` tree stores it, under its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedOutcome {
    /// What it was computed with ([`fingerprint`]); another analyser's is forgotten at load.
    pub analyzer: String,
    /// The bucket it was computed for (its witnesses name it).
    pub bucket: String,
    pub stored_at: UnixMillis,
    pub settled: Settled,
}

#[derive(Debug)]
struct CacheEntry {
    settled: Arc<Settled>,
    bucket: String,
    bytes: usize,
    /// When it was last used, in uses since start-up (loaded entries in stored order).
    used: u64,
}

/// Outcomes by digest, bounded ([`MAX_CACHED_OUTCOMES`], [`MAX_CACHED_OUTCOME_BYTES`]),
/// least recently used out first; the store persists `changes`.
#[derive(Debug)]
struct OutcomeCache {
    /// `None` without workers (tools): nothing is cached or read.
    analyzer: Option<Arc<str>>,
    max_entries: usize,
    max_bytes: usize,
    entries: HashMap<PolicyDigest, CacheEntry>,
    by_use: BTreeSet<(u64, PolicyDigest)>,
    bytes: usize,
    uses: u64,
    /// Written or removed since the last flush.
    changes: Vec<(PolicyDigest, Option<Vec<u8>>)>,
}

impl Default for OutcomeCache {
    fn default() -> Self {
        OutcomeCache {
            analyzer: None,
            max_entries: MAX_CACHED_OUTCOMES,
            max_bytes: MAX_CACHED_OUTCOME_BYTES,
            entries: HashMap::new(),
            by_use: BTreeSet::new(),
            bytes: 0,
            uses: 0,
            changes: Vec::new(),
        }
    }
}

impl OutcomeCache {
    fn get(&mut self, digest: &PolicyDigest, bucket: &str) -> Option<Arc<Settled>> {
        let entry = self.entries.get_mut(digest)?;
        self.uses += 1;
        self.by_use.remove(&(entry.used, *digest));
        entry.used = self.uses;
        self.by_use.insert((entry.used, *digest));
        Some(if entry.bucket == bucket {
            Arc::clone(&entry.settled)
        } else {
            Arc::new(entry.settled.for_bucket(&entry.bucket, bucket))
        })
    }

    /// Keeps an outcome (`persist`: write it too; false for one read from disk).
    fn insert(&mut self, digest: PolicyDigest, record: CachedOutcome, bytes: usize, persist: Option<Vec<u8>>) {
        self.remove(&digest, false);
        self.uses += 1;
        let entry = CacheEntry { settled: Arc::new(record.settled), bucket: record.bucket, bytes, used: self.uses };
        self.by_use.insert((entry.used, digest));
        self.bytes += bytes;
        self.entries.insert(digest, entry);
        if persist.is_some() {
            self.changes.push((digest, persist));
        }
        while self.entries.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some(&(_, oldest)) = self.by_use.iter().next() else { break };
            self.remove(&oldest, true);
        }
    }

    fn remove(&mut self, digest: &PolicyDigest, persist: bool) {
        if let Some(entry) = self.entries.remove(digest) {
            self.by_use.remove(&(entry.used, *digest));
            self.bytes -= entry.bytes;
            if persist {
                self.changes.push((*digest, None));
            }
        }
    }
}

/// A version of a bucket whose analysis is awaited.
#[derive(Debug)]
struct Awaited {
    digest: PolicyDigest,
    facts: Arc<BucketFacts>,
    cause: Option<Cause>,
}

/// Where an outcome that came back belongs.
#[derive(Debug)]
pub enum Settlement {
    /// The bucket's current version: judge the bucket again.
    Current,
    /// A version replaced before its analysis came back: judge it (findings only).
    Superseded { facts: Arc<BucketFacts>, cause: Option<Box<Cause>>, verdict: PolicyVerdict },
    /// Nobody waits for it any more (the bucket is gone, or its context moved on); only cached.
    Stale,
}

/// What the store knows about bucket policies' analyses, with one owner: the outcome of each
/// bucket's policy (with the digest of what was analysed), the version whose analysis is
/// queued and not yet back, the replaced versions still to be judged, the outcomes cached by
/// digest (persisted), and the digests of analyses that failed inside this analyser (never
/// queued again).
#[derive(Debug, Default)]
pub struct PolicyVerdicts {
    outcomes: HashMap<StoredKey, (PolicyDigest, Arc<Settled>)>,
    pending: HashMap<StoredKey, Awaited>,
    superseded: HashMap<StoredKey, Vec<Awaited>>,
    superseded_count: usize,
    queue: Option<PolicyQueue>,
    failures: HashMap<PolicyDigest, String>,
    cache: OutcomeCache,
    /// Each bucket's last digest and whether its analysis depends on the bucket, with the
    /// plain digest (policy, bucket, owner, organization) they were derived from: deciding
    /// whether a policy depends on its bucket parses it, once per text and context.
    digests: HashMap<StoredKey, (PolicyDigest, PolicyDigest, bool)>,
}

impl PolicyVerdicts {
    /// Without a queue (tools, tests), unknown policies stay unknown and nothing is cached.
    pub fn new(queue: Option<PolicyQueue>) -> Self {
        let cache = OutcomeCache { analyzer: queue.as_ref().map(|q| Arc::clone(&q.fingerprint)), ..Default::default() };
        Self { queue, cache, ..Default::default() }
    }

    /// The bucket's digest, and the bucket name its analysis is made with ([`Job::bucket`]).
    fn digest_of(
        &mut self,
        key: &StoredKey,
        text: &str,
        bucket: &str,
        owner: &str,
        org: &OrgView,
    ) -> (PolicyDigest, bool) {
        let plain = estate_policy::policy_digest(text, bucket, owner, &org.digest());
        match self.digests.get(key) {
            Some((known, digest, relative)) if *known == plain => (*digest, *relative),
            _ => {
                let relative = depends_on_bucket(text, bucket);
                let digest =
                    estate_policy::policy_digest(text, if relative { bucket } else { "" }, owner, &org.digest());
                self.digests.insert(key.clone(), (plain, digest, relative));
                (digest, relative)
            }
        }
    }

    /// The verdict on a bucket's policy under the organization, when known (from the bucket's
    /// last outcome, the cache, or a remembered failure). Otherwise an analysis is queued
    /// (once per digest, as an event's job when `cause` is an event) and the answer is `None`
    /// (UNKNOWN) meanwhile. The version whose analysis was awaited, if its policy differs, is
    /// still judged when its analysis comes back ([`Settlement::Superseded`]).
    pub fn verdict(
        &mut self,
        key: &StoredKey,
        facts: &Arc<BucketFacts>,
        org: &OrgView,
        cause: Option<&Cause>,
    ) -> Option<PolicyVerdict> {
        let Some(text) = facts.config().and_then(|c| c.policy.as_deref()) else {
            // No policy (deleted, or the bucket unreadable): a version still awaited was
            // replaced, and is judged when it comes back.
            self.supersede(key, &NO_POLICY, facts);
            self.outcomes.remove(key);
            self.digests.remove(key);
            return None;
        };
        let bucket = &facts.key.bucket_name;
        let (digest, relative) = self.digest_of(key, text, bucket, &facts.key.account_id, org);
        if let Some((_, settled)) = self.outcomes.get(key).filter(|(known, _)| *known == digest) {
            let answer = settled.verdict.clone();
            // An exact revert to the known version while another was awaited: that other
            // version is still judged when it comes back.
            self.supersede(key, &digest, facts);
            return Some(answer);
        }
        let known = match self.failures.get(&digest) {
            // Failed inside this analyser before (maybe before a restart): not analysed again
            // until the analyser changes.
            Some(reason) => Some(Arc::new(Settled::of(&PolicyOutcome::internal_failure(reason.clone())))),
            None => self.cache.get(&digest, bucket),
        };
        if let Some(settled) = known {
            self.supersede(key, &digest, facts);
            let answer = settled.verdict.clone();
            self.outcomes.insert(key.clone(), (digest, settled));
            return Some(answer);
        }
        if self.pending.get(key).map(|p| p.digest) != Some(digest) {
            if let Some(queue) = self.queue.clone() {
                self.supersede(key, &digest, facts);
                let keep: Vec<PolicyDigest> =
                    self.superseded.get(key).into_iter().flatten().map(|a| a.digest).collect();
                self.pending.insert(key.clone(), Awaited { digest, facts: Arc::clone(facts), cause: cause.cloned() });
                queue.submit(
                    Job {
                        key: key.clone(),
                        digest,
                        policy: text.to_owned(),
                        bucket: if relative { bucket.clone() } else { String::new() },
                        context: context(org, &facts.key.account_id),
                        class: JobClass::of(cause),
                    },
                    &keep,
                );
            }
        }
        None
    }

    /// The bucket's version `digest` now answers for: the awaited one, if its policy differs,
    /// becomes a superseded version (within the bounds); one of the same digest is answered.
    fn supersede(&mut self, key: &StoredKey, digest: &PolicyDigest, facts: &BucketFacts) {
        if let Some(versions) = self.superseded.get_mut(key) {
            let before = versions.len();
            versions.retain(|a| a.digest != *digest);
            self.superseded_count -= before - versions.len();
            if versions.is_empty() {
                self.superseded.remove(key);
            }
        }
        let Some(awaited) = self.pending.remove(key) else { return };
        if awaited.digest == *digest || policy_text(&awaited.facts) == policy_text(facts) {
            // The same version under another context (the organization changed): not a version.
            return;
        }
        let versions = self.superseded.entry(key.clone()).or_default();
        if versions.iter().any(|a| a.digest == awaited.digest) {
            return;
        }
        if versions.len() >= MAX_SUPERSEDED_PER_BUCKET || self.superseded_count >= MAX_SUPERSEDED {
            tracing::warn!(
                bucket = %facts.key.bucket_name,
                account = %facts.key.account_id,
                per_bucket = MAX_SUPERSEDED_PER_BUCKET,
                total = MAX_SUPERSEDED,
                "a replaced version of a bucket policy is dropped unjudged: too many replaced versions wait"
            );
            if versions.is_empty() {
                self.superseded.remove(key);
            }
            return;
        }
        versions.push(awaited);
        self.superseded_count += 1;
    }

    /// The witnesses and reasons for UNKNOWN of a bucket's policy.
    pub fn explanation(&self, key: &StoredKey) -> (Vec<macie::PolicyWitness>, Vec<String>) {
        match self.outcomes.get(key) {
            Some((_, settled)) => (settled.witnesses.clone(), settled.reasons.clone()),
            None if self.pending.contains_key(key) => {
                (Vec::new(), vec!["the bucket policy is being analysed".to_owned()])
            }
            None => Default::default(),
        }
    }

    /// The bucket is gone.
    pub fn forget(&mut self, key: &StoredKey) {
        self.outcomes.remove(key);
        self.pending.remove(key);
        self.digests.remove(key);
        if let Some(versions) = self.superseded.remove(key) {
            self.superseded_count -= versions.len();
        }
    }

    pub fn remember_failure(&mut self, digest: PolicyDigest, reason: String) {
        self.failures.insert(digest, reason);
    }

    /// An analysis came back (made with the bucket name `analysed`, empty for a policy that
    /// does not depend on it): cached by digest (unless it failed inside the analyser), and
    /// handed to whoever waits for it.
    pub fn settle(
        &mut self,
        key: StoredKey,
        digest: PolicyDigest,
        analysed: String,
        outcome: &PolicyOutcome,
        now: UnixMillis,
    ) -> Settlement {
        let bucket = key.decode().bucket_name;
        let settled = Settled::of(outcome);
        let shown = if analysed == bucket { settled.clone() } else { settled.for_bucket(&analysed, &bucket) };
        let settled_here = Arc::new(shown);
        if let (Some(analyzer), false) =
            (&self.cache.analyzer, outcome.is_internal_failure() || outcome.ran_out_of_time())
        {
            // Also when nobody waits for it: the organization may change back.
            let record = CachedOutcome { analyzer: analyzer.to_string(), bucket: analysed, stored_at: now, settled };
            let encoded = crate::storage::codec::encode(&record);
            self.cache.insert(digest, record, encoded.len(), Some(encoded));
        }
        let settled = settled_here;
        if self.pending.get(&key).is_some_and(|a| a.digest == digest) {
            self.pending.remove(&key);
            self.outcomes.insert(key, (digest, settled));
            return Settlement::Current;
        }
        if let Some(versions) = self.superseded.get_mut(&key) {
            if let Some(at) = versions.iter().position(|a| a.digest == digest) {
                let awaited = versions.remove(at);
                self.superseded_count -= 1;
                if versions.is_empty() {
                    self.superseded.remove(&key);
                }
                return Settlement::Superseded {
                    facts: awaited.facts,
                    cause: awaited.cause.map(Box::new),
                    verdict: settled.verdict.clone(),
                };
            }
        }
        Settlement::Stale
    }

    /// An outcome read from the `policy_outcomes` tree at start-up (in stored order); one of
    /// another analyser is removed. Returns whether it was kept.
    pub fn load_cached(&mut self, digest: PolicyDigest, mut record: CachedOutcome, bytes: usize) -> bool {
        match &self.cache.analyzer {
            Some(analyzer) if **analyzer == *record.analyzer => {
                record.settled.verdict.service_accounts = service_accounts(&record.settled.witnesses);
                self.cache.insert(digest, record, bytes, None);
                true
            }
            Some(_) => {
                self.cache.changes.push((digest, None));
                false
            }
            None => false,
        }
    }

    /// Replaced versions waiting to be judged, over all buckets.
    pub fn superseded(&self) -> usize {
        self.superseded_count
    }

    /// Outcomes cached (in memory and on disk).
    pub fn cached(&self) -> usize {
        self.cache.entries.len()
    }

    /// The cache's writes and removals since the last flush.
    pub fn take_cache_changes(&mut self) -> Vec<(PolicyDigest, Option<Vec<u8>>)> {
        std::mem::take(&mut self.cache.changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use estate_common::model::BucketKey;
    use estate_policy::Analyzer;

    /// The stored key of a bucket of account A.
    fn test_key(name: &str) -> StoredKey {
        BucketKey::parse(A, "eu-west-1", name).unwrap().stored()
    }

    const A: &str = "111111111111";
    const B: &str = "222222222222";

    fn job(account: &str, key: &str, policy: &str, class: JobClass) -> Job {
        Job {
            key: BucketKey::parse(account, "eu-west-1", key).unwrap().stored(),
            digest: estate_policy::policy_digest(policy, key, account, &[0; 32]),
            policy: policy.to_owned(),
            bucket: key.into(),
            context: context(&OrgView::default(), &account.parse().unwrap()),
            class,
        }
    }

    fn refresh(account: &str, key: &str, policy: &str) -> Job {
        job(account, key, policy, JobClass::Refresh)
    }

    fn next(q: &PolicyQueue) -> Option<Job> {
        q.next(Duration::from_millis(1))
    }

    #[test]
    fn one_pending_job_per_bucket_the_latest_wins() {
        let q = PolicyQueue::default();
        q.submit(refresh(A, "a", "first"), &[]);
        q.submit(refresh(A, "b", "other"), &[]);
        q.submit(refresh(A, "a", "second"), &[]);
        assert_eq!(q.len(), 2);
        let first = next(&q).unwrap();
        assert_eq!((first.bucket.as_str(), first.policy.as_str()), ("a", "second"), "replaced in place");
        assert_eq!(next(&q).unwrap().policy, "other");
        assert!(next(&q).is_none());
        assert!(q.is_empty());
    }

    /// A member with 10,000 queued analyses does not hold back another member's one.
    #[test]
    fn accounts_take_turns() {
        let q = PolicyQueue::default();
        for i in 0..10_000 {
            q.submit(refresh(A, &format!("a-{i}"), "slow"), &[]);
        }
        q.submit(refresh(B, "b", "other"), &[]);
        let order: Vec<String> = (0..3).map(|_| next(&q).unwrap().context.owner_account.into_string()).collect();
        assert_eq!(order, [A, B, A], "B's job is the second taken, not the 10,001st");
        assert_eq!(q.len(), 9_998);
        // A's buckets still go in the order they were queued.
        assert_eq!(next(&q).unwrap().bucket, "a-2");
    }

    /// A bucket re-read because of an event is analysed before refreshes and re-judgements,
    /// and a newer read of such a bucket keeps its place among the events.
    #[test]
    fn event_jobs_go_first() {
        let q = PolicyQueue::default();
        for i in 0..100 {
            q.submit(refresh(A, &format!("a-{i}"), "p"), &[]);
        }
        q.submit(job(B, "changed", "public", JobClass::Event), &[]);
        q.submit(refresh(B, "changed", "public again"), &[]);
        let first = next(&q).unwrap();
        assert_eq!((first.bucket.as_str(), first.class), ("changed", JobClass::Event));
        assert_eq!(first.policy, "public again", "the newer read, with the event's urgency");
        // A refresh job replaced by an event's goes first too.
        q.submit(job(A, "a-50", "edited", JobClass::Event), &[]);
        assert_eq!(next(&q).unwrap().bucket, "a-50");
        assert_eq!(next(&q).unwrap().bucket, "a-0");
        assert_eq!(q.len(), 98);
    }

    /// One account's flood of event jobs does not hold refresh jobs back for good.
    #[test]
    fn refresh_jobs_keep_a_share_while_events_flood() {
        let q = PolicyQueue::default();
        for i in 0..100 {
            q.submit(job(A, &format!("a-{i}"), "p", JobClass::Event), &[]);
        }
        q.submit(refresh(B, "b", "p"), &[]);
        let classes: Vec<JobClass> = (0..=EVENT_BURST).map(|_| next(&q).unwrap().class).collect();
        assert_eq!(classes.iter().filter(|c| **c == JobClass::Refresh).count(), 1, "{classes:?}");
        assert_eq!(classes[EVENT_BURST], JobClass::Refresh, "after {EVENT_BURST} events, B's refresh: {classes:?}");
    }

    /// A replaced job whose version is still to be judged stays queued, after the current one.
    #[test]
    fn a_replaced_version_that_is_kept_waits_behind_the_current_one() {
        let q = PolicyQueue::default();
        let public = refresh(A, "a", "public");
        let kept = public.digest;
        q.submit(public, &[]);
        q.submit(refresh(A, "a", "private"), &[kept]);
        q.submit(refresh(A, "b", "other"), &[]);
        assert_eq!(q.len(), 3);
        let taken: Vec<String> = std::iter::from_fn(|| next(&q)).map(|j| j.policy).collect();
        assert_eq!(taken, ["private", "other", "public"]);
        // A replaced job of the same digest as the new one is not kept twice.
        q.submit(refresh(A, "a", "public"), &[]);
        q.submit(refresh(A, "a", "private"), &[kept]);
        q.submit(refresh(A, "a", "public"), &[kept]);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn jobs_share_the_member_set() {
        let org = OrgView::new(None, [A.parse().unwrap()].into(), Vec::new());
        let a = context(&org, &A.parse().unwrap());
        let b = context(&org, &B.parse().unwrap());
        assert!(Arc::ptr_eq(&a.member_accounts, &b.member_accounts));
    }

    fn resources(values: &[&str]) -> String {
        let statements: Vec<String> = values
            .iter()
            .map(|r| format!(r#"{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"{r}"}}"#))
            .collect();
        format!(r#"{{"Version":"2012-10-17","Statement":[{}]}}"#, statements.join(","))
    }

    #[test]
    fn a_policy_depends_on_its_bucket_when_a_resource_may_tell_buckets_apart() {
        for independent in [
            "*",
            "arn:aws:s3:::*",
            "arn:aws:s3:::*/*",
            "arn:aws:s3:::*/public/*",
            "arn:aws:*/x",
            "arn:aws:s3:::other-bucket/*",
            "arn:aws:s3:::other-bucket",
            "arn:aws:iam::*",
            "arn:aws:sqs:*",
        ] {
            assert!(!depends_on_bucket(&resources(&[independent]), "mine"), "{independent}");
        }
        for relative in [
            "arn:aws:s3:::mine/*",
            "arn:aws:s3:::mine",
            "arn:aws:s3:::mine*",
            "arn:aws:s3:::mi*",
            "arn:aws:s3:::m?ne/*",
            "arn:aws:s3:::*e",
            "arn:aws:s3:::*e/*",
            "arn:aws:s3:::${aws:username}/*",
            "arn:aws:s3:::",
            "arn:*:s3:::mine/*",
            "arn:aws:s3:::/*",
            "arn:aws:s3:::/",
        ] {
            assert!(depends_on_bucket(&resources(&["*", relative]), "mine"), "{relative}");
        }
        assert!(depends_on_bucket("{", "mine"), "a document that does not parse");
        let org = OrgView::default();
        let shared = resources(&["arn:aws:s3:::*/*"]);
        assert_eq!(digest(&shared, "one", A, &org), digest(&shared, "two", A, &org));
        assert_ne!(digest(&shared, "one", A, &org), digest(&shared, "one", B, &org), "the owner counts");
        let own = resources(&["arn:aws:s3:::one/*"]);
        assert_ne!(digest(&own, "one", A, &org), digest(&own, "two", A, &org));
        let other = OrgView::new(Some("o-1".into()), [A.parse().unwrap()].into(), Vec::new());
        assert_ne!(digest(&shared, "one", A, &org), digest(&shared, "one", A, &other), "the organization counts");
    }

    /// The accounts services act for come from the witnesses, so a stored outcome (whose
    /// layout has no place for them) has them again when loaded.
    #[test]
    fn service_accounts_come_from_the_witnesses() {
        let witness = |question: &str| macie::PolicyWitness {
            question: question.into(),
            principal: "logging.s3.amazonaws.com".into(),
            principal_account: None,
            action: "s3:PutObject".into(),
            resource: "arn:aws:s3:::b/k".into(),
            context: Default::default(),
        };
        let witnesses = vec![witness("sharedWithAccount:444444444444"), witness("serviceActingFor:555555555555")];
        assert_eq!(service_accounts(&witnesses), ["555555555555"]);
        let mut stored = record("b");
        stored.settled.witnesses = witnesses;
        let bytes = crate::storage::codec::encode(&stored);
        let loaded: CachedOutcome = crate::storage::codec::decode("policy_outcomes", b"k", &bytes).unwrap();
        assert!(loaded.settled.verdict.service_accounts.is_empty(), "not stored");
        let mut verdicts = PolicyVerdicts::new(None);
        verdicts.cache.analyzer = Some("a".into());
        assert!(verdicts.load_cached([7; 32], loaded, bytes.len()));
        let settled = verdicts.cache.get(&[7; 32], "b").unwrap();
        assert_eq!(settled.verdict.service_accounts, ["555555555555"]);
    }

    fn record(bucket: &str) -> CachedOutcome {
        let settled = Settled { verdict: PolicyVerdict::undecided(), witnesses: Vec::new(), reasons: Vec::new() };
        CachedOutcome { analyzer: "a".into(), bucket: bucket.into(), stored_at: 1, settled }
    }

    /// The cache holds at most its bounds, the least recently used out first, and each
    /// eviction is removed from disk too.
    #[test]
    fn the_outcome_cache_is_bounded_least_recently_used_first() {
        let mut cache = OutcomeCache { max_entries: 2, max_bytes: 250, ..Default::default() };
        let (one, two, three, four) = ([1; 32], [2; 32], [3; 32], [4; 32]);
        cache.insert(one, record("b"), 100, Some(vec![1]));
        cache.insert(two, record("b"), 100, Some(vec![2]));
        assert!(cache.get(&one, "b").is_some(), "used: now the most recent");
        cache.insert(three, record("b"), 100, Some(vec![3]));
        assert!(cache.get(&two, "b").is_none(), "the least recently used went");
        assert!(cache.get(&one, "b").is_some() && cache.get(&three, "b").is_some());
        assert!(cache.changes.contains(&(two, None)), "and is removed from disk");
        // The byte bound: one large entry pushes out both others.
        cache.insert(four, record("b"), 240, None);
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.bytes, 240);
    }

    fn verdicts_facts(name: &str, policy: &str) -> Arc<BucketFacts> {
        use estate_common::model::{BucketConfig, BucketState};
        Arc::new(BucketFacts {
            key: BucketKey::parse(A, "eu-west-1", name).unwrap(),
            created_at: 1,
            read_at: 1,
            state: BucketState::Readable(Box::new(BucketConfig { policy: Some(policy.into()), ..Default::default() })),
        })
    }

    /// Each replaced version of a policy waits to be judged, up to the bound per bucket; an
    /// organization change re-queues a policy without making a version of it.
    #[test]
    fn replaced_versions_wait_within_their_bound() {
        let queue = PolicyQueue::default();
        let mut verdicts = PolicyVerdicts::new(Some(queue.clone()));
        let org = OrgView::default();
        let key = test_key("bucket");
        for i in 0..MAX_SUPERSEDED_PER_BUCKET + 3 {
            let facts = verdicts_facts("x", &resources(&[&format!("arn:aws:s3:::x/{i}")]));
            assert!(verdicts.verdict(&key, &facts, &org, None).is_none());
        }
        assert_eq!(verdicts.superseded(), MAX_SUPERSEDED_PER_BUCKET);
        assert_eq!(queue.len(), MAX_SUPERSEDED_PER_BUCKET + 1, "the current version and the kept ones");
        // Back to a version still waiting: it is current again, not twice in line.
        let again = verdicts_facts("x", &resources(&["arn:aws:s3:::x/0"]));
        verdicts.verdict(&key, &again, &org, None);
        assert_eq!(verdicts.superseded(), MAX_SUPERSEDED_PER_BUCKET);
        assert_eq!(queue.len(), MAX_SUPERSEDED_PER_BUCKET + 1);
        // Another organization: the same text, another digest, and no new version.
        let other = OrgView::new(Some("o-1".into()), [A.parse().unwrap()].into(), Vec::new());
        verdicts.verdict(&key, &again, &other, None);
        assert_eq!(verdicts.superseded(), MAX_SUPERSEDED_PER_BUCKET);
        assert_eq!(queue.len(), MAX_SUPERSEDED_PER_BUCKET + 1);
        verdicts.forget(&key);
        assert_eq!(verdicts.superseded(), 0);
    }

    /// A policy that names no bucket in particular is analysed without a bucket name, so the
    /// analyser's cache answers for every bucket of its owner after the first.
    #[test]
    fn a_bucket_independent_policy_is_analysed_once_for_all_buckets() {
        let queue = PolicyQueue::default();
        let mut verdicts = PolicyVerdicts::new(Some(queue.clone()));
        let org = OrgView::default();
        let shared = resources(&["arn:aws:s3:::*/*"]);
        for (key, name) in [(test_key("k1"), "one"), (test_key("k2"), "two")] {
            verdicts.verdict(&key, &verdicts_facts(name, &shared), &org, None);
        }
        verdicts.verdict(&test_key("k3"), &verdicts_facts("three", &resources(&["arn:aws:s3:::three/*"])), &org, None);
        let jobs: Vec<Job> = std::iter::from_fn(|| next(&queue)).collect();
        let names: Vec<&str> = jobs.iter().map(|j| j.bucket.as_str()).collect();
        assert_eq!(names, ["", "", "three"]);
        assert_eq!(jobs[0].digest, jobs[1].digest);
        let analyzer = Analyzer::new(AnalysisOptions::default(), 10);
        for job in &jobs {
            analyzer.analyze(&job.policy, &job.bucket, &job.context).unwrap();
        }
        assert_eq!(analyzer.cached(), 2, "one analysis for the two buckets of the shared policy");
    }

    /// A read caused by an event queues its analysis as an event's job, ahead of refreshes.
    #[test]
    fn an_event_read_queues_an_event_job() {
        let queue = PolicyQueue::default();
        let mut verdicts = PolicyVerdicts::new(Some(queue.clone()));
        let org = OrgView::default();
        verdicts.verdict(&test_key("k1"), &verdicts_facts("one", &resources(&["arn:aws:s3:::one/*"])), &org, None);
        let cause = Cause {
            api: Some("PutBucketPolicy".into()),
            event_time: 1,
            actor: None,
            source_ip: None,
            event_id: Some("e".into()),
        };
        verdicts.verdict(
            &test_key("k2"),
            &verdicts_facts("two", &resources(&["arn:aws:s3:::two/*"])),
            &org,
            Some(&cause),
        );
        let first = next(&queue).unwrap();
        assert_eq!((first.key, first.class), (test_key("k2"), JobClass::Event));
        assert_eq!(next(&queue).unwrap().class, JobClass::Refresh);
    }

    /// Witnesses of an outcome shared between buckets name the bucket they are shown for.
    #[test]
    fn a_shared_outcome_names_the_bucket_it_is_shown_for() {
        let witness = |resource: &str| macie::PolicyWitness {
            question: "publicRead".into(),
            principal: "*".into(),
            principal_account: None,
            action: "s3:GetObject".into(),
            resource: resource.into(),
            context: Default::default(),
        };
        let settled = Settled {
            verdict: PolicyVerdict::undecided(),
            witnesses: vec![witness("arn:aws:s3:::one/k"), witness("arn:aws:s3:::one"), witness("arn:aws:s3:::onex")],
            reasons: Vec::new(),
        };
        let shown: Vec<String> = settled.for_bucket("one", "two").witnesses.into_iter().map(|w| w.resource).collect();
        assert_eq!(shown, ["arn:aws:s3:::two/k", "arn:aws:s3:::two", "arn:aws:s3:::onex"]);
    }
}
