//! The policy analysis workers: a pool of threads (Z3 never runs on the async reactor) that
//! take jobs from the verdicts' queue (`state::verdicts::PolicyQueue`), analyse each policy
//! within its budget and hand the outcome to a sink, which the server wires to the committer.
//! They run at a lower priority than ingest.

use std::sync::Arc;
use std::time::Duration;

use estate_policy::{AnalysisOptions, Analyzer};

use crate::state::verdicts::{explanation, Job, PolicyOutcome, PolicyQueue};

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

/// Where the analysis workers hand each outcome. The server wires it to the committer, so
/// that an outcome is stored like every change: in order, durably, then announced.
pub trait OutcomeSink: Clone + Send + 'static {
    /// Why an outcome could not be stored.
    type Error: std::fmt::Display;
    /// Stores the outcome of `job`'s analysis; an error stops the worker that had it.
    fn settle(&self, job: Job, outcome: PolicyOutcome) -> Result<(), Self::Error>;
    /// Whether the receiving end is gone: the workers then stop.
    fn is_closed(&self) -> bool;
}

/// Starts `workers` analysis threads once they are given where their outcomes go (the
/// threads end once the sink is closed). `options.budget` bounds each policy's whole analysis.
pub fn start<S: OutcomeSink>(workers: usize, options: AnalysisOptions) -> (PolicyQueue, impl FnOnce(S)) {
    let queue = PolicyQueue::new(&options);
    let analyzer = Arc::new(Analyzer::new(options, 100_000));
    let workers_queue = queue.clone();
    let attach = move |sink: S| {
        for i in 0..workers.max(1) {
            let queue = workers_queue.clone();
            let analyzer = Arc::clone(&analyzer);
            let sink = sink.clone();
            std::thread::Builder::new()
                .name(format!("policy-{i}"))
                .spawn(move || work(&queue, &analyzer, &sink))
                .expect("spawning a policy worker");
        }
    };
    (queue, attach)
}

/// One analysis worker: takes jobs until the sink closes or refuses an outcome.
fn work(queue: &PolicyQueue, analyzer: &Analyzer, sink: &impl OutcomeSink) {
    yield_to_ingest();
    loop {
        let Some(job) = queue.next(Duration::from_secs(1)) else {
            if sink.is_closed() {
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
                bucket = %job.key.decode().bucket_name,
                reason = ?explanation(&outcome).1,
                "policy analysis failed inside the analyser; its verdicts are UNKNOWN and it is not retried until \
                 the analyser changes"
            );
        }
        if let Err(error) = sink.settle(job, outcome) {
            tracing::error!(%error, "a policy outcome could not be stored; the worker stops");
            return;
        }
    }
}
