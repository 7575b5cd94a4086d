//! Bucket-policy analysis in the administrator: a pool of worker threads (Z3 never runs on
//! the async reactor) fed by the store whenever a bucket's policy or organization context
//! changes. A bucket's verdict is UNKNOWN until its analysis lands; a slow policy delays only
//! its own bucket, and spends at most the per-policy budget. Results are derived data: they
//! live in memory and are recomputed after a restart (identical policies under the same
//! context are analysed once, by the cache), except internal failures, which are remembered
//! by digest (`Store`'s `policy_failures` tree) until the analyser's version changes.
//!
//! The queue holds at most one job per bucket: a newer job for a queued bucket replaces the
//! older one in place, so a burst of changes (a membership change re-judging every bucket)
//! queues each bucket once, and the organization's member set is shared by every job.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use estate_common::macie;
use estate_common::model::BucketFacts;
use estate_policy::{Analysis, AnalysisOptions, Analyzer, OrgContext};

use crate::ingest::Committer;
use crate::judge::{OrgView, PolicyVerdict};
use crate::store::Op;

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
    pub key: Vec<u8>,
    pub digest: PolicyDigest,
    pub policy: String,
    pub bucket: String,
    pub context: OrgContext,
}

/// The organization context of a bucket owned by `owner` (the member set is shared).
pub fn context(org: &OrgView, owner: &str) -> OrgContext {
    OrgContext {
        owner_account: owner.to_owned(),
        organization_id: org.organization_id().map(str::to_owned),
        member_accounts: Arc::clone(org.accounts()),
        organization_paths: org.organization_paths().to_vec(),
    }
}

/// The digest of one bucket's analysis: equal digests, equal verdicts.
pub fn digest(policy: &str, bucket: &str, owner: &str, org: &OrgView) -> PolicyDigest {
    estate_policy::policy_digest(policy, bucket, owner, &org.digest())
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

/// The jobs waiting for a worker: at most one per bucket, in first-queued order.
#[derive(Debug, Default)]
struct Pending {
    order: VecDeque<Vec<u8>>,
    jobs: HashMap<Vec<u8>, Job>,
}

/// The sending side of the worker pool.
#[derive(Debug, Clone, Default)]
pub struct PolicyQueue {
    inner: Arc<(Mutex<Pending>, Condvar)>,
}

impl PolicyQueue {
    /// Queues `job`, replacing a job for the same bucket that no worker has taken yet.
    pub fn submit(&self, job: Job) {
        let (lock, ready) = &*self.inner;
        let mut pending = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = job.key.clone();
        if pending.jobs.insert(key.clone(), job).is_none() {
            pending.order.push_back(key);
        }
        ready.notify_one();
    }

    /// Jobs waiting for a worker.
    pub fn len(&self) -> usize {
        self.inner.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next job, waiting at most `wait` for one.
    fn next(&self, wait: Duration) -> Option<Job> {
        let (lock, ready) = &*self.inner;
        let mut pending = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            while let Some(key) = pending.order.pop_front() {
                if let Some(job) = pending.jobs.remove(&key) {
                    return Some(job);
                }
            }
            let (guard, timeout) = ready.wait_timeout(pending, wait).unwrap_or_else(std::sync::PoisonError::into_inner);
            pending = guard;
            if timeout.timed_out() && pending.order.is_empty() {
                return None;
            }
        }
    }
}

/// Policy workers run at this nice value under `SCHED_BATCH`: when ingest and analysis
/// compete for the cores, ingest (nice 0, its commit thread nice 5) gets most of them, and
/// analysis keeps going.
const POLICY_WORKER_NICE: u8 = 10;

/// Gives the calling policy worker a lower scheduling priority than ingest.
fn yield_to_ingest() {
    if let Err(error) = estate_common::priority::lower_current_thread(POLICY_WORKER_NICE, true) {
        tracing::warn!(%error, "cannot lower the policy workers' priority; they compete with ingest as equals");
    }
}

/// Starts `workers` analysis threads reporting to `store` (held weakly: the threads end
/// once the store is dropped). `options.budget` bounds each policy's whole analysis.
pub fn start(workers: usize, options: AnalysisOptions) -> (PolicyQueue, impl FnOnce(Committer)) {
    let queue = PolicyQueue::default();
    let analyzer = Arc::new(Analyzer::new(options, 100_000));
    let workers_queue = queue.clone();
    let attach = move |committer: Committer| {
        for i in 0..workers.max(1) {
            let queue = workers_queue.clone();
            let analyzer = Arc::clone(&analyzer);
            let committer = committer.clone();
            std::thread::Builder::new()
                .name(format!("policy-{i}"))
                .spawn(move || {
                    yield_to_ingest();
                    loop {
                    let Some(job) = queue.next(Duration::from_secs(1)) else {
                        if committer.is_closed() {
                            return;
                        }
                        continue;
                    };
                    let outcome = match analyzer.analyze(&job.policy, &job.bucket, &job.context) {
                        Ok(analysis) => PolicyOutcome::Analysed(analysis),
                        Err(error) => PolicyOutcome::Malformed(error.to_string()),
                    };
                    if outcome.is_internal_failure() {
                        tracing::error!(
                            policy_digest = %hex::encode(job.digest),
                            bucket = %job.bucket,
                            reason = ?explanation(&outcome).1,
                            "policy analysis failed inside the analyser; its verdicts are UNKNOWN and it is not retried \
                             until the analyser changes"
                        );
                    }
                    // Through the committer, like every change: in order, durable, then announced.
                    let op = Op::PolicyOutcome { key: job.key, digest: job.digest, outcome };
                    if let Err(error) = committer.commit_blocking(vec![op]) {
                        tracing::error!(%error, "a policy outcome could not be stored; the worker stops");
                        return;
                    }
                    }
                })
                .expect("spawning a policy worker");
        }
    };
    (queue, attach)
}

/// What the store knows about bucket policies' analyses, with one owner: the outcome of each
/// bucket's policy (with the digest of what was analysed), the analyses queued and not yet
/// back, and the digests of analyses that failed inside this analyser (never queued again).
#[derive(Debug, Default)]
pub struct PolicyVerdicts {
    outcomes: HashMap<Vec<u8>, (PolicyDigest, PolicyOutcome)>,
    pending: HashMap<Vec<u8>, PolicyDigest>,
    queue: Option<PolicyQueue>,
    failures: HashMap<PolicyDigest, String>,
}

impl PolicyVerdicts {
    /// Without a queue (tools, tests), unknown policies stay unknown.
    pub fn new(queue: Option<PolicyQueue>) -> Self {
        Self { queue, ..Default::default() }
    }

    /// The verdict on a bucket's policy under the organization, when known. Otherwise an
    /// analysis is queued (once per digest) and the answer is `None` (UNKNOWN) meanwhile.
    pub fn verdict(&mut self, key: &[u8], facts: &BucketFacts, org: &OrgView) -> Option<PolicyVerdict> {
        let text = facts.config().and_then(|c| c.policy.as_deref())?;
        let digest = digest(text, &facts.key.bucket_name, &facts.key.account_id, org);
        match self.outcomes.get(key) {
            Some((known, outcome)) if *known == digest => return Some(verdict(outcome)),
            _ => {}
        }
        if let Some(reason) = self.failures.get(&digest) {
            // Failed inside this analyser before (maybe before a restart): not analysed again
            // until the analyser changes.
            let outcome = PolicyOutcome::internal_failure(reason.clone());
            let answer = verdict(&outcome);
            self.pending.remove(key);
            self.outcomes.insert(key.to_vec(), (digest, outcome));
            return Some(answer);
        }
        if self.pending.get(key) != Some(&digest) {
            if let Some(queue) = &self.queue {
                self.pending.insert(key.to_vec(), digest);
                queue.submit(Job {
                    key: key.to_vec(),
                    digest,
                    policy: text.to_owned(),
                    bucket: facts.key.bucket_name.clone(),
                    context: context(org, &facts.key.account_id),
                });
            }
        }
        None
    }

    /// The witnesses and reasons for UNKNOWN of a bucket's policy.
    pub fn explanation(&self, key: &[u8]) -> (Vec<macie::PolicyWitness>, Vec<String>) {
        match self.outcomes.get(key) {
            Some((_, outcome)) => explanation(outcome),
            None if self.pending.contains_key(key) => {
                (Vec::new(), vec!["the bucket policy is being analysed".to_owned()])
            }
            None => Default::default(),
        }
    }

    /// The bucket is gone.
    pub fn forget(&mut self, key: &[u8]) {
        self.outcomes.remove(key);
        self.pending.remove(key);
    }

    pub fn remember_failure(&mut self, digest: PolicyDigest, reason: String) {
        self.failures.insert(digest, reason);
    }

    /// An analysis came back. It is kept when `current` (the bucket's policy and context are
    /// still the analysed ones); returns whether the bucket must be judged again.
    pub fn settle(&mut self, key: Vec<u8>, digest: PolicyDigest, outcome: PolicyOutcome, current: bool) -> bool {
        if self.pending.get(&key) == Some(&digest) {
            self.pending.remove(&key);
        }
        if current {
            self.outcomes.insert(key, (digest, outcome));
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(key: &str, policy: &str) -> Job {
        Job {
            key: key.as_bytes().to_vec(),
            digest: [0; 32],
            policy: policy.to_owned(),
            bucket: "b".into(),
            context: context(&OrgView::default(), "111111111111"),
        }
    }

    #[test]
    fn one_pending_job_per_bucket_the_latest_wins() {
        let q = PolicyQueue::default();
        q.submit(job("a", "first"));
        q.submit(job("b", "other"));
        q.submit(job("a", "second"));
        assert_eq!(q.len(), 2);
        let first = q.next(Duration::from_millis(1)).unwrap();
        assert_eq!((first.key.as_slice(), first.policy.as_str()), (&b"a"[..], "second"));
        assert_eq!(q.next(Duration::from_millis(1)).unwrap().policy, "other");
        assert!(q.next(Duration::from_millis(1)).is_none());
    }

    #[test]
    fn jobs_share_the_member_set() {
        let org = OrgView::new(None, ["111111111111".parse().unwrap()].into(), Vec::new());
        let a = context(&org, "111111111111");
        let b = context(&org, "222222222222");
        assert!(Arc::ptr_eq(&a.member_accounts, &b.member_accounts));
    }
}
