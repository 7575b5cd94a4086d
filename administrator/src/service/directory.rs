//! The agents connected now, by account: where the inventory service sends refresh requests
//! and the agent service registers each stream it opens.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;
use tonic::Status;

use estate_common::pb;

/// The sending half of one agent stream.
type AgentSender = mpsc::Sender<Result<pb::ReportResponse, Status>>;

/// Channels to connected agents, for refresh requests.
#[derive(Debug, Default)]
pub struct AgentDirectory {
    senders: Mutex<HashMap<String, Vec<AgentSender>>>,
}

impl AgentDirectory {
    pub(crate) fn register(&self, account_id: &str, tx: AgentSender) {
        self.senders.lock().expect("directory lock").entry(account_id.to_owned()).or_default().push(tx);
    }

    /// Sends `request` to every connected agent of `account_id`. Returns how many got it.
    pub fn send(&self, account_id: &str, request: &pb::RefreshRequest) -> usize {
        let mut senders = self.senders.lock().expect("directory lock");
        let Some(list) = senders.get_mut(account_id) else { return 0 };
        list.retain(|tx| !tx.is_closed());
        list.iter()
            .filter(|tx| {
                let message = pb::ReportResponse { body: Some(pb::report_response::Body::Refresh(request.clone())) };
                tx.try_send(Ok(message)).is_ok()
            })
            .count()
    }
}
