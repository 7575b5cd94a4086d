//! Group commit: every agent stream submits its operations to one committer task, which
//! applies whatever has queued up as one batch, flushes sled once, and then acknowledges
//! each submission. Throughput grows with the number of streams; latency stays one flush.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{Op, Store};

/// Operations from one stream, and where to say that they are durable.
struct Submission {
    ops: Vec<Op>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The most operations one commit takes before flushing.
const MAX_BATCH_OPS: usize = 16_384;

#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<Submission>,
}

impl Committer {
    /// Starts the committer task. If sled fails, the administrator cannot promise
    /// durability any more: the failure is returned to every waiting stream and logged, and
    /// the process exits so that a supervisor restarts it from what is on disk.
    pub fn start(store: Arc<Store>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Submission>(1024);
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
                let store = Arc::clone(&store);
                let result = tokio::task::spawn_blocking(move || store.commit(ops))
                    .await
                    .map_err(|e| anyhow::anyhow!("commit task failed: {e}"))
                    .and_then(|r| r);
                let failed = result.is_err();
                let outcome = result.map_err(|e| format!("{e:#}"));
                if let Err(error) = &outcome {
                    tracing::error!(%error, "cannot make the inventory durable; exiting");
                }
                for waiter in waiters {
                    let _ = waiter.send(outcome.clone());
                }
                if failed {
                    std::process::exit(70);
                }
            }
        });
        Self { tx }
    }

    /// Queues `ops`; the returned receiver resolves once they are durable.
    pub async fn submit(&self, ops: Vec<Op>) -> oneshot::Receiver<Result<(), String>> {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Submission { ops, done }).await.is_err() {
            tracing::error!("the committer has stopped");
        }
        rx
    }

    /// Queues `ops` and waits until they are durable.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<(), String> {
        self.submit(ops).await.await.unwrap_or_else(|_| Err("the committer has stopped".to_owned()))
    }
}
