//! Group commit, and the only writer: agent streams, policy workers, the organization's
//! source and the archiving timer all submit operations to one committer task, which applies
//! whatever has queued up as one batch (in arrival order, at one clock reading), writes it in
//! one transaction, flushes once, and then answers each submission. Throughput grows with
//! the number of streams; latency stays one flush.
//!
//! The commit thread (`estate-commit`) runs at a lower priority than the threads that serve
//! requests. On a storage failure the committer stops, later submissions fail with
//! [`CommitError`], and [`Committer::failed`] makes `serve` return the error.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::state::store::{Op, Store};

/// Why operations submitted to the committer are not durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// Storage refused the commit (its cause, formatted); the committer then stops for good.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The committer stopped before these operations were committed (storage failed earlier,
    /// or the process is shutting down).
    #[error("the committer has stopped")]
    Stopped,
}

/// Where to say that operations are durable, or why they are not.
type Done = oneshot::Sender<Result<(), CommitError>>;

/// Operations from one stream, and where to say that they are durable.
struct Submission {
    ops: Vec<Op>,
    done: Done,
}

/// The most operations one commit takes before flushing.
const MAX_BATCH_OPS: usize = 16_384;

/// The thread that applies and writes commits, one at a time. Its own thread, not the
/// blocking pool's: it runs at a slightly lower priority than the threads that serve
/// requests, so that a read arriving while a large batch applies is answered first (reads are
/// short; the batch waits microseconds), and reads on the blocking pool keep normal priority.
struct Applier {
    tx: std::sync::mpsc::SyncSender<(Vec<Op>, Done)>,
}

/// The commit thread's nice value; policy workers run at 10, below it.
const APPLIER_NICE: u8 = 5;

impl Applier {
    fn start(store: Arc<Store>) -> Self {
        // One commit at a time is in flight: the committer awaits each before the next.
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<Op>, Done)>(1);
        std::thread::Builder::new()
            .name("estate-commit".into())
            .spawn(move || {
                if let Err(error) = estate_common::priority::lower_current_thread(APPLIER_NICE, false) {
                    tracing::warn!(%error, "cannot lower the commit thread's priority; reads wait behind commits");
                }
                for (ops, done) in rx {
                    let now = estate_common::model::now_ms();
                    let _ = done.send(store.commit(ops, now).map_err(|e| CommitError::Storage(format!("{e:#}"))));
                }
            })
            .expect("starting the commit thread");
        Self { tx }
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<(), CommitError> {
        let (done, rx) = oneshot::channel();
        self.tx.send((ops, done)).map_err(|_| CommitError::Stopped)?;
        rx.await.unwrap_or(Err(CommitError::Stopped))
    }
}

#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<Submission>,
    failed: watch::Receiver<Option<CommitError>>,
}

impl Committer {
    /// Starts the committer task. If storage fails, the administrator cannot promise
    /// durability any more: the failure is returned to every waiting submission, the
    /// committer stops taking more, and [`Committer::failed`] resolves so that `serve` stops
    /// and a supervisor restarts the process from what is on disk.
    pub fn start(store: Arc<Store>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Submission>(1024);
        let (failed_tx, failed) = watch::channel(None);
        let applier = Applier::start(store);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                let mut ops_count = batch[0].ops.len();
                while ops_count < MAX_BATCH_OPS {
                    match rx.try_recv() {
                        Ok(next) => {
                            ops_count += next.ops.len();
                            batch.push(next);
                        }
                        Err(_) => break,
                    }
                }
                let mut ops = Vec::with_capacity(ops_count);
                let mut waiters = Vec::with_capacity(batch.len());
                for submission in batch {
                    ops.extend(submission.ops);
                    waiters.push(submission.done);
                }
                let outcome = applier.commit(ops).await;
                for waiter in waiters {
                    let _ = waiter.send(outcome.clone());
                }
                if let Err(error) = outcome {
                    tracing::error!(%error, "cannot make the state durable; the committer stops");
                    let _ = failed_tx.send(Some(error));
                    // Dropping the receiver fails every later submission.
                    return;
                }
            }
        });
        Self { tx, failed }
    }

    /// Resolves with the error once the committer has stopped because storage failed.
    pub async fn failed(&self) -> CommitError {
        let mut failed = self.failed.clone();
        let error = failed.wait_for(Option::is_some).await.map(|error| error.clone().unwrap_or(CommitError::Stopped));
        error.unwrap_or(CommitError::Stopped)
    }

    /// Has the committer stopped (storage failed, or the runtime is shutting down)?
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// [`Committer::commit`] for threads outside the async runtime (policy workers).
    pub fn commit_blocking(&self, ops: Vec<Op>) -> Result<(), CommitError> {
        let (done, rx) = oneshot::channel();
        self.tx.blocking_send(Submission { ops, done }).map_err(|_| CommitError::Stopped)?;
        rx.blocking_recv().unwrap_or(Err(CommitError::Stopped))
    }

    /// Queues `ops`; the returned receiver resolves once they are durable.
    pub async fn submit(&self, ops: Vec<Op>) -> oneshot::Receiver<Result<(), CommitError>> {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Submission { ops, done }).await.is_err() {
            tracing::error!("the committer has stopped");
        }
        rx
    }

    /// Queues `ops` and waits until they are durable.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<(), CommitError> {
        self.submit(ops).await.await.unwrap_or(Err(CommitError::Stopped))
    }
}

impl crate::analysis::OutcomeSink for Committer {
    type Error = CommitError;

    fn settle(
        &self,
        job: crate::state::verdicts::Job,
        outcome: crate::state::verdicts::PolicyOutcome,
    ) -> Result<(), Self::Error> {
        self.commit_blocking(vec![Op::PolicyOutcome { key: job.key, digest: job.digest, bucket: job.bucket, outcome }])
    }

    fn is_closed(&self) -> bool {
        Committer::is_closed(self)
    }
}
