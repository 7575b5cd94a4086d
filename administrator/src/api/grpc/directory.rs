//! The agents connected now, by account: where the inventory service sends refresh requests
//! and the agent service registers each stream it opens. A stream's entry lives exactly as
//! long as the stream: its [`Registration`] removes it when the stream's task ends, so the
//! directory holds nothing for streams that closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Notify};
use tonic::Status;

use estate_common::model::AccountId;
use estate_common::pb;

/// The sending half of one agent stream.
type AgentSender = mpsc::Sender<Result<pb::ReportResponse, Status>>;

/// Whether a stream was ended (its token revoked, or another reporter took its account), the
/// status it ends with, and a wake-up for the task that reads it: that task sends the status,
/// so it is the stream's last word whatever the task was doing.
#[derive(Debug, Default)]
struct Revocation {
    revoked: AtomicBool,
    status: Mutex<Option<Status>>,
    notify: Notify,
}

/// One open stream: its ID, where its answers go, and its revocation.
#[derive(Debug)]
struct Stream {
    id: u64,
    tx: AgentSender,
    revocation: Arc<Revocation>,
    /// Who holds it ([`crate::api::auth::Identity::reporter`]).
    owner: String,
}

/// The status a report stream ends with when another reporter (an agent, a hub) connects for
/// its account: the later connection wins. Its code is ABORTED, used for nothing else, and
/// the agent backs off for longer than after a failure.
pub fn superseded(account_id: &AccountId, by: &str) -> Status {
    Status::aborted(format!(
        "superseded: {by} reports for account `{account_id}` now (of two reporters of one account, the later \
         connection wins)"
    ))
}

/// Channels to connected agents, for refresh requests.
#[derive(Debug, Default)]
pub struct AgentDirectory {
    senders: Mutex<HashMap<AccountId, Vec<Stream>>>,
    next: AtomicU64,
}

/// One registered stream; dropping it removes the stream from the directory.
#[must_use = "the stream is deregistered when this is dropped"]
#[derive(Debug)]
pub struct Registration {
    directory: Arc<AgentDirectory>,
    account_id: AccountId,
    id: u64,
    revocation: Arc<Revocation>,
}

impl Registration {
    /// The status the stream ends with, once it was ended.
    pub fn ending(&self) -> Status {
        self.revocation
            .status
            .lock()
            .expect("revocation lock")
            .clone()
            .unwrap_or_else(|| Status::unauthenticated("the token of this stream was revoked"))
    }

    /// Whether the stream's token was revoked: nothing more it sends may be applied.
    pub fn is_revoked(&self) -> bool {
        self.revocation.revoked.load(Ordering::Acquire)
    }

    /// Resolves once the stream's token is revoked.
    pub async fn revoked(&self) {
        loop {
            let notified = self.revocation.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_revoked() {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut senders = self.directory.senders.lock().expect("directory lock");
        if let Some(list) = senders.get_mut(&self.account_id) {
            list.retain(|stream| stream.id != self.id);
            if list.is_empty() {
                senders.remove(&self.account_id);
            }
        }
    }
}

/// Ends one stream taken out of the directory: its task stops applying what it reads at once
/// and ends its answer with `status` ([`Registration::ending`]), after the answers already
/// queued. Whether it was open.
fn end(stream: Stream, status: &Status) -> bool {
    let Stream { tx, revocation, .. } = stream;
    // The status first: the task reads it once it sees the flag.
    *revocation.status.lock().expect("revocation lock") = Some(status.clone());
    revocation.revoked.store(true, Ordering::Release);
    revocation.notify.notify_waiters();
    !tx.is_closed()
}

impl AgentDirectory {
    /// Registers a report stream of `owner` for `account_id`.
    pub(crate) fn register(self: &Arc<Self>, account_id: &AccountId, owner: &str, tx: AgentSender) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let revocation = Arc::new(Revocation::default());
        let stream = Stream { id, tx, revocation: Arc::clone(&revocation), owner: owner.to_owned() };
        self.senders.lock().expect("directory lock").entry(account_id.clone()).or_default().push(stream);
        Registration { directory: Arc::clone(self), account_id: account_id.clone(), id, revocation }
    }

    /// Ends the streams another reporter than `owner` registered for `account_id` before the
    /// stream `registration`, with [`superseded`]: of two reporters of one account, the later
    /// connection wins (two that register at once do not end each other: only the earlier
    /// goes). Called once the newcomer's credentials are checked again. Returns how many were
    /// open.
    pub(crate) fn supersede_others(&self, registration: &Registration, owner: &str) -> usize {
        let account_id = &registration.account_id;
        let others = {
            let mut senders = self.senders.lock().expect("directory lock");
            let Some(list) = senders.get_mut(account_id) else { return 0 };
            let (mine, others): (Vec<Stream>, Vec<Stream>) =
                list.drain(..).partition(|s| s.owner == owner || s.id > registration.id);
            *list = mine;
            others
        };
        if others.is_empty() {
            return 0;
        }
        let status = superseded(account_id, owner);
        let ended = others.into_iter().map(|stream| end(stream, &status)).filter(|open| *open).count();
        tracing::warn!(account = %account_id, by = owner, superseded = ended, "another reporter's streams ended");
        ended
    }

    /// Ends every open report stream `owner` holds, whatever its account (its token was
    /// revoked): each stream's task stops applying what it reads at once, its answer ends with
    /// `status` after the answers already queued, and no refresh request goes through it.
    /// Returns how many were open.
    pub fn end_streams_of(&self, owner: &str, status: &Status) -> usize {
        let mine: Vec<Stream> = {
            let mut senders = self.senders.lock().expect("directory lock");
            let mut mine = Vec::new();
            for list in senders.values_mut() {
                let (taken, kept): (Vec<Stream>, Vec<Stream>) = list.drain(..).partition(|s| s.owner == owner);
                *list = kept;
                mine.extend(taken);
            }
            senders.retain(|_, list| !list.is_empty());
            mine
        };
        mine.into_iter().map(|stream| end(stream, status)).filter(|open| *open).count()
    }

    /// Sends `request` to every connected agent of `account_id`. Returns how many got it.
    pub fn send(&self, account_id: &str, request: &pb::RefreshRequest) -> usize {
        let senders = self.senders.lock().expect("directory lock");
        let Some(list) = senders.get(account_id) else { return 0 };
        list.iter()
            .filter(|Stream { tx, .. }| {
                let message = pb::ReportResponse { body: Some(pb::report_response::Body::Refresh(request.clone())) };
                tx.try_send(Ok(message)).is_ok()
            })
            .count()
    }

    /// Streams registered now (for tests and `/metrics`).
    pub fn streams(&self) -> usize {
        self.senders.lock().expect("directory lock").values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_leaves_the_directory_when_it_ends() {
        let directory = Arc::new(AgentDirectory::default());
        let account: AccountId = "111111111111".parse().unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let first = directory.register(&account, "agent `a`", tx.clone());
        let second = directory.register(&account, "agent `a`", tx);
        assert_eq!(directory.streams(), 2);
        assert_eq!(directory.send("111111111111", &pb::RefreshRequest::default()), 2);
        assert!(rx.try_recv().is_ok());
        drop(first);
        assert_eq!(directory.streams(), 1);
        drop(second);
        assert_eq!(directory.streams(), 0);
        assert!(directory.senders.lock().unwrap().is_empty(), "no entry is kept for an account with no stream");
        assert_eq!(directory.send("111111111111", &pb::RefreshRequest::default()), 0);
    }

    fn refresh() -> pb::RefreshRequest {
        pb::RefreshRequest { regions: vec!["us-east-1".into()], ..Default::default() }
    }

    #[tokio::test]
    async fn ending_a_reporters_streams_sends_the_status_and_forgets_them() {
        let directory = Arc::new(AgentDirectory::default());
        let (a_tx, mut a_rx) = mpsc::channel(1);
        let (b_tx, mut b_rx) = mpsc::channel(4);
        let a = directory.register(&"111111111111".parse().unwrap(), "agent `a`", a_tx.clone());
        let b = directory.register(&"222222222222".parse().unwrap(), "hub `h`", b_tx);
        // The stream's task sends the status it is given, after what is queued.
        a_tx.try_send(Ok(pb::ReportResponse::default())).unwrap();
        let revoked = Status::unauthenticated("the token of this stream was revoked");
        assert_eq!(directory.end_streams_of("agent `a`", &revoked), 1);
        assert!(a_rx.recv().await.unwrap().is_ok());
        assert_eq!(a.ending().code(), tonic::Code::Unauthenticated);
        assert_eq!(directory.send("111111111111", &refresh()), 0, "no refresh goes to an ended stream");
        assert_eq!(directory.send("222222222222", &refresh()), 1, "other reporters keep theirs");
        assert!(b_rx.recv().await.unwrap().is_ok());
        assert_eq!(directory.end_streams_of("agent `c`", &revoked), 0);
        // The stream's own task learns of it at once, and only the revoked stream's.
        assert!(a.is_revoked() && !b.is_revoked());
        tokio::time::timeout(std::time::Duration::from_secs(30), a.revoked()).await.expect("revocation wakes the task");
    }

    /// Of two reporters of one account, the later connection wins: the earlier one's streams
    /// end with ABORTED naming the newcomer; the same reporter's streams stay. A hub's
    /// revocation ends its streams of every account, and no one else's.
    #[tokio::test]
    async fn the_later_reporter_of_an_account_wins_and_a_hub_is_ended_everywhere() {
        let directory = Arc::new(AgentDirectory::default());
        let (a, b): (AccountId, AccountId) = ("111111111111".parse().unwrap(), "222222222222".parse().unwrap());
        let (agent_tx, mut agent_rx) = mpsc::channel(4);
        let agent = directory.register(&a, "agent `a`", agent_tx.clone());
        let again = directory.register(&a, "agent `a`", agent_tx);
        assert!(!agent.is_revoked() && !again.is_revoked(), "one reporter may hold several streams");
        let (hub_tx, mut hub_rx) = mpsc::channel(4);
        let hub_a = directory.register(&a, "hub `h`", hub_tx.clone());
        assert!(!agent.is_revoked(), "registering alone supersedes nobody: the caller is checked again first");
        assert_eq!(directory.supersede_others(&hub_a, "hub `h`"), 2, "both of the agent's streams");
        let hub_b = directory.register(&b, "hub `h`", hub_tx);
        assert_eq!(directory.supersede_others(&hub_b, "hub `h`"), 0);
        assert!(agent.is_revoked() && again.is_revoked(), "the agent's streams were superseded");
        let told = agent.ending();
        assert_eq!(told.code(), tonic::Code::Aborted);
        assert!(told.message().starts_with("superseded: hub `h`"), "{}", told.message());
        assert!(agent_rx.try_recv().is_err(), "the stream's own task sends the status, not the directory");
        assert_eq!(directory.send("111111111111", &refresh()), 1, "only the hub's stream is left");
        assert!(hub_rx.recv().await.unwrap().is_ok());
        let (other_tx, _other_rx) = mpsc::channel(4);
        let other = directory.register(&"333333333333".parse().unwrap(), "agent `c`", other_tx);
        let revoked = Status::unauthenticated("the token of this stream was revoked");
        assert_eq!(directory.end_streams_of("hub `h`", &revoked), 2);
        assert!(hub_a.is_revoked() && hub_b.is_revoked() && !other.is_revoked());
        assert_eq!(directory.streams(), 1);

        // Two reporters registering at once: the earlier one's late call ends nobody registered
        // after it; the later one's ends the earlier.
        let d: AccountId = "444444444444".parse().unwrap();
        let (early_tx, _early_rx) = mpsc::channel(4);
        let early = directory.register(&d, "hub `h`", early_tx);
        let (late_tx, _late_rx) = mpsc::channel(4);
        let late = directory.register(&d, "agent `d`", late_tx);
        assert_eq!(directory.supersede_others(&early, "hub `h`"), 0);
        assert!(!late.is_revoked());
        assert_eq!(directory.supersede_others(&late, "agent `d`"), 1);
        assert!(early.is_revoked());
    }
}
