//! The agent's outbox: every message gets a sequence number and stays here until the
//! administrator acknowledges it as durable, so a reconnect resends exactly what may have
//! been lost. The outbox is bounded: collection waits when it is full, which keeps the
//! agent's memory flat however large the account.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::{Notify, Semaphore};

use estate_common::pb::{report_request::Body, ReportRequest, ScopeGeneration};

#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    space: Semaphore,
    added: Notify,
    /// Woken whenever messages leave (acknowledged or rejected).
    settled: Notify,
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    unacked: VecDeque<ReportRequest>,
    /// Region → the generation of its last refresh whose completion was acknowledged.
    completed: BTreeMap<String, u64>,
}

/// What the administrator acknowledged as durable, at debug level (`RUST_LOG=estate_member_agent::outbox=debug`):
/// the fault tests compare every acknowledged snapshot with what the administrator holds after
/// it was killed. Disabled, it costs one level check per acknowledged snapshot.
fn log_acknowledged(seq: u64, snapshot: &estate_common::pb::BucketSnapshot) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let Some(facts) = &snapshot.facts else { return };
        let tags: Vec<(&str, &str)> = facts.tags.iter().map(|t| (t.key.as_str(), t.value.as_str())).collect();
        tracing::debug!(
            seq,
            bucket = %estate_common::text::for_log(&facts.bucket_name),
            read_at_ms = facts.read_at_ms,
            tags = ?tags,
            "acknowledged"
        );
    }
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State { next_seq: 1, unacked: VecDeque::new(), completed: BTreeMap::new() }),
            space: Semaphore::new(capacity),
            added: Notify::new(),
            settled: Notify::new(),
        }
    }

    /// Queues a message, waiting while the outbox is full; returns its sequence number.
    pub async fn push(&self, body: Body) -> u64 {
        self.space.acquire().await.expect("the outbox semaphore is never closed").forget();
        let mut state = self.state.lock().expect("outbox lock");
        let seq = state.next_seq;
        state.next_seq += 1;
        state.unacked.push_back(ReportRequest { seq, body: Some(body) });
        drop(state);
        self.added.notify_one();
        seq
    }

    /// The sequence number of the last message queued (0 before the first).
    pub fn last_pushed(&self) -> u64 {
        self.state.lock().expect("outbox lock").next_seq - 1
    }

    /// Waits until every message up to and including `seq` has left the outbox: acknowledged
    /// as durable, or rejected.
    pub async fn settled(&self, seq: u64) {
        loop {
            let settled = self.settled.notified();
            if self.state.lock().expect("outbox lock").unacked.front().is_none_or(|m| m.seq > seq) {
                return;
            }
            settled.await;
        }
    }

    /// Drops every message up to and including `seq`.
    pub fn ack(&self, seq: u64) {
        let mut state = self.state.lock().expect("outbox lock");
        let mut freed = 0;
        while state.unacked.front().is_some_and(|m| m.seq <= seq) {
            let Some(message) = state.unacked.pop_front() else { break };
            match message.body {
                Some(Body::ScopeComplete(complete)) => {
                    let last = state.completed.entry(complete.region).or_default();
                    *last = (*last).max(complete.generation);
                }
                Some(Body::Bucket(snapshot)) => log_acknowledged(message.seq, &snapshot),
                _ => {}
            }
            freed += 1;
        }
        drop(state);
        self.space.add_permits(freed);
        self.settled.notify_waiters();
    }

    /// Drops the message `seq`, which the administrator rejected: it is never sent again.
    pub fn reject(&self, seq: u64) {
        let mut state = self.state.lock().expect("outbox lock");
        let before = state.unacked.len();
        state.unacked.retain(|m| m.seq != seq);
        let freed = before - state.unacked.len();
        drop(state);
        self.space.add_permits(freed);
        self.settled.notify_waiters();
    }

    /// Messages after `seq`, in order; waits until there is at least one.
    pub async fn after(&self, seq: u64) -> Vec<ReportRequest> {
        loop {
            let added = self.added.notified();
            {
                let state = self.state.lock().expect("outbox lock");
                let pending: Vec<_> = state.unacked.iter().filter(|m| m.seq > seq).take(256).cloned().collect();
                if !pending.is_empty() {
                    return pending;
                }
            }
            added.await;
        }
    }

    /// Counts `completed` (Region, generation) pairs as acknowledged completions: what the
    /// administrator said it holds when this agent has completed nothing yet (a resuming hub).
    pub fn seed_completed(&self, completed: impl IntoIterator<Item = (String, u64)>) {
        let mut state = self.state.lock().expect("outbox lock");
        for (region, generation) in completed.into_iter().filter(|(_, g)| *g > 0) {
            let last = state.completed.entry(region).or_default();
            *last = (*last).max(generation);
        }
    }

    /// Each Region's last refresh whose completion the administrator acknowledged, for the
    /// hello of the next stream.
    pub fn completed(&self) -> Vec<ScopeGeneration> {
        let state = self.state.lock().expect("outbox lock");
        state
            .completed
            .iter()
            .map(|(region, &generation)| ScopeGeneration { region: region.clone(), generation })
            .collect()
    }

    pub fn unacked(&self) -> usize {
        self.state.lock().expect("outbox lock").unacked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use estate_common::pb::BucketDeleted;

    fn body(name: &str) -> Body {
        Body::Deleted(BucketDeleted { region: "r".into(), bucket_name: name.into() })
    }

    #[tokio::test]
    async fn resends_everything_unacknowledged_in_order() {
        let outbox = Outbox::new(8);
        for name in ["a", "b", "c"] {
            outbox.push(body(name)).await;
        }
        let first: Vec<u64> = outbox.after(0).await.iter().map(|m| m.seq).collect();
        assert_eq!(first, vec![1, 2, 3]);
        outbox.ack(2);
        // After a reconnect the sender starts again from 0 and gets only what is unacked.
        let again: Vec<u64> = outbox.after(0).await.iter().map(|m| m.seq).collect();
        assert_eq!(again, vec![3]);
        assert_eq!(outbox.unacked(), 1);
    }

    #[tokio::test]
    async fn acknowledged_completions_are_remembered_per_region() {
        let outbox = Outbox::new(8);
        let complete = |region: &str, generation| {
            Body::ScopeComplete(estate_common::pb::ScopeComplete {
                region: region.into(),
                generation,
                read_at_ms: 1,
                bucket_count: 0,
            })
        };
        outbox.push(complete("eu-west-1", 5)).await;
        outbox.push(complete("us-east-1", 6)).await;
        outbox.push(complete("eu-west-1", 7)).await;
        outbox.ack(2);
        let pairs = |o: &Outbox| o.completed().into_iter().map(|s| (s.region, s.generation)).collect::<Vec<_>>();
        assert_eq!(
            pairs(&outbox),
            vec![("eu-west-1".into(), 5), ("us-east-1".into(), 6)],
            "only what was acknowledged"
        );
        outbox.ack(3);
        assert_eq!(pairs(&outbox), vec![("eu-west-1".into(), 7), ("us-east-1".into(), 6)]);
    }

    #[tokio::test]
    async fn a_rejected_message_is_never_resent_and_frees_its_place() {
        let outbox = std::sync::Arc::new(Outbox::new(2));
        outbox.push(body("a")).await;
        outbox.push(body("b")).await;
        outbox.reject(1);
        let again: Vec<u64> = outbox.after(0).await.iter().map(|m| m.seq).collect();
        assert_eq!(again, vec![2]);
        // Its place is free: a third message does not wait.
        tokio::time::timeout(std::time::Duration::from_secs(1), outbox.push(body("c"))).await.unwrap();
        outbox.ack(3);
        assert_eq!(outbox.unacked(), 0);
    }

    /// Waiting for a message to settle ends once it and everything before it left the
    /// outbox, acknowledged or rejected, and not before.
    #[tokio::test]
    async fn settled_waits_for_the_acknowledgement_or_the_rejection() {
        let outbox = std::sync::Arc::new(Outbox::new(8));
        assert_eq!(outbox.push(body("a")).await, 1);
        assert_eq!(outbox.push(body("b")).await, 2);
        assert_eq!(outbox.last_pushed(), 2);
        let waiting = |seq| {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.settled(seq).await })
        };
        let (first, second) = (waiting(1), waiting(2));
        tokio::task::yield_now().await;
        assert!(!first.is_finished() && !second.is_finished());
        outbox.ack(1);
        tokio::time::timeout(std::time::Duration::from_secs(5), first).await.unwrap().unwrap();
        assert!(!second.is_finished(), "the second is not acknowledged yet");
        outbox.reject(2);
        tokio::time::timeout(std::time::Duration::from_secs(5), second).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn push_waits_while_full() {
        let outbox = std::sync::Arc::new(Outbox::new(1));
        outbox.push(body("a")).await;
        let pusher = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.push(body("b")).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!pusher.is_finished());
        outbox.ack(1);
        pusher.await.unwrap();
        assert_eq!(outbox.unacked(), 1);
    }
}
