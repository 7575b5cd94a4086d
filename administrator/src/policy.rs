//! Bucket-policy analysis in the administrator: a pool of worker threads (Z3 never runs on
//! the async reactor) fed by the store whenever a bucket's policy or organization context
//! changes. A bucket's verdict is UNKNOWN until its analysis lands; a slow policy delays only
//! its own bucket. Results are derived data: they live in memory and are recomputed after a
//! restart (identical policies under the same context are analysed once, by the cache).

use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};

use estate_common::macie::{self, Tri};
use estate_policy::{Analysis, AnalysisOptions, Analyzer, OrgContext};

use crate::judge::{OrgView, PolicyVerdict};
use crate::store::Store;

/// Identifies one analysis: the policy text and the context it was judged under.
pub type PolicyDigest = [u8; 32];

/// The outcome of analysing one bucket's policy.
#[derive(Debug, Clone)]
pub enum PolicyOutcome {
    Analysed(Arc<Analysis>),
    /// The policy could not be parsed: every policy verdict is UNKNOWN with this reason.
    Malformed(String),
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

/// The organization context of a bucket owned by `owner`.
pub fn context(org: &OrgView, owner: &str) -> OrgContext {
    OrgContext {
        owner_account: owner.to_owned(),
        organization_id: org.organization_id.clone(),
        member_accounts: org.accounts.clone(),
        organization_paths: org.organization_paths.clone(),
    }
}

pub fn digest(policy: &str, bucket: &str, context: &OrgContext) -> PolicyDigest {
    let mut hasher = Sha256::new();
    hasher.update((policy.len() as u64).to_le_bytes());
    hasher.update(policy.as_bytes());
    hasher.update((bucket.len() as u64).to_le_bytes());
    hasher.update(bucket.as_bytes());
    hasher.update(serde_json::to_vec(context).expect("serializing to memory cannot fail"));
    hasher.finalize().into()
}

fn tri(t: estate_policy::Tri) -> Tri {
    match t {
        estate_policy::Tri::True => Tri::True,
        estate_policy::Tri::False => Tri::False,
        estate_policy::Tri::Unknown => Tri::Unknown,
    }
}

/// The judge's view of an outcome.
pub fn verdict(outcome: &PolicyOutcome) -> PolicyVerdict {
    match outcome {
        PolicyOutcome::Malformed(_) => PolicyVerdict::undecided(),
        PolicyOutcome::Analysed(a) => PolicyVerdict {
            public_read: tri(a.allows_public_read_access),
            public_write: tri(a.allows_public_write_access),
            unencrypted_uploads: tri(a.allows_unencrypted_object_uploads),
            shared_internal: a.internal_accounts.clone(),
            shared_external: a.external_accounts.clone(),
            shared_with_cloudfront: tri(a.shared_with_cloudfront),
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

/// The sending side of the worker pool.
#[derive(Debug, Clone)]
pub struct PolicyQueue {
    tx: mpsc::Sender<Job>,
}

impl PolicyQueue {
    pub fn submit(&self, job: Job) {
        // The workers live as long as the store; a closed queue means shutdown.
        let _ = self.tx.send(job);
    }
}

/// Starts `workers` analysis threads reporting to `store` (held weakly: the threads end
/// when the store is dropped and the queue closes).
pub fn start(workers: usize, timeout: Duration) -> (PolicyQueue, impl FnOnce(Weak<Store>)) {
    let (tx, rx) = mpsc::channel::<Job>();
    let analyzer = Arc::new(Analyzer::new(AnalysisOptions { timeout }, 100_000));
    let attach = move |store: Weak<Store>| {
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = Arc::clone(&rx);
            let analyzer = Arc::clone(&analyzer);
            let store = store.clone();
            std::thread::Builder::new()
                .name(format!("policy-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock().expect("policy queue lock").recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    };
                    let outcome = match analyzer.analyze(&job.policy, &job.bucket, &job.context) {
                        Ok(analysis) => PolicyOutcome::Analysed(analysis),
                        Err(error) => PolicyOutcome::Malformed(error.to_string()),
                    };
                    let Some(store) = store.upgrade() else { return };
                    store.apply_policy_outcome(&job.key, job.digest, outcome);
                })
                .expect("spawning a policy worker");
        }
    };
    (PolicyQueue { tx }, attach)
}
