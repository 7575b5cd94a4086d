//! The agents connected now, by account: where the inventory service sends refresh requests
//! and the agent service registers each stream it opens. A stream's entry lives exactly as
//! long as the stream: its [`Registration`] removes it when the stream's task ends, so the
//! directory holds nothing for streams that closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tonic::Status;

use estate_common::model::AccountId;
use estate_common::pb;

/// The sending half of one agent stream.
type AgentSender = mpsc::Sender<Result<pb::ReportResponse, Status>>;

/// Channels to connected agents, for refresh requests.
#[derive(Debug, Default)]
pub struct AgentDirectory {
    senders: Mutex<HashMap<AccountId, Vec<(u64, AgentSender)>>>,
    next: AtomicU64,
}

/// One registered stream; dropping it removes the stream from the directory.
#[must_use = "the stream is deregistered when this is dropped"]
#[derive(Debug)]
pub struct Registration {
    directory: Arc<AgentDirectory>,
    account_id: AccountId,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut senders = self.directory.senders.lock().expect("directory lock");
        if let Some(list) = senders.get_mut(&self.account_id) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                senders.remove(&self.account_id);
            }
        }
    }
}

impl AgentDirectory {
    pub(crate) fn register(self: &Arc<Self>, account_id: &AccountId, tx: AgentSender) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.senders.lock().expect("directory lock").entry(account_id.clone()).or_default().push((id, tx));
        Registration { directory: Arc::clone(self), account_id: account_id.clone(), id }
    }

    /// Sends `request` to every connected agent of `account_id`. Returns how many got it.
    pub fn send(&self, account_id: &str, request: &pb::RefreshRequest) -> usize {
        let senders = self.senders.lock().expect("directory lock");
        let Some(list) = senders.get(account_id) else { return 0 };
        list.iter()
            .filter(|(_, tx)| {
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
        let first = directory.register(&account, tx.clone());
        let second = directory.register(&account, tx);
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
}
