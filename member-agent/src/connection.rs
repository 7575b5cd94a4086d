//! The stream to the administrator: connect, say hello, send the outbox, take
//! acknowledgements and refresh requests; on any failure reconnect with jittered exponential
//! backoff and resend everything not yet acknowledged.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;

use estate_common::pb::{
    agent_service_client::AgentServiceClient, report_request::Body, report_response, Hello, RefreshRequest,
    ReportRequest,
};

use crate::outbox::Outbox;

#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    pub admin_url: String,
    /// Read again at every connection, so rotated client certificates take effect.
    pub tls: estate_common::transport::ClientTls,
    pub token: Option<String>,
    pub hello: Hello,
}

/// How long the agent waits after the administrator ended its stream because another
/// reporter of the account (an agent, a hub) connected later: the later connection wins, and
/// two reporters retrying at the usual pace would take the account from each other every few
/// seconds.
pub const SUPERSEDED_BACKOFF: Duration = Duration::from_secs(600);

/// Whether the administrator ended the stream because another reporter of the account
/// connected later (ABORTED, which it uses for nothing else).
fn superseded(error: &anyhow::Error) -> bool {
    error.chain().find_map(|e| e.downcast_ref::<tonic::Status>()).is_some_and(|s| s.code() == tonic::Code::Aborted)
}

/// Runs forever: keeps one stream to the administrator open.
pub async fn run(options: ConnectionOptions, outbox: Arc<Outbox>, refresh_requests: mpsc::Sender<RefreshRequest>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match session(&options, &outbox, &refresh_requests).await {
            Ok(()) => {
                tracing::warn!("the administrator closed the stream; reconnecting");
                backoff = Duration::from_millis(250);
            }
            Err(error) if superseded(&error) => {
                tracing::warn!(
                    error = %format!("{error:#}"),
                    retry_in = ?SUPERSEDED_BACKOFF,
                    "another reporter of this account connected later; this agent steps back"
                );
                // Jittered, so that two reporters do not come back at the same instant.
                let jitter = rand::thread_rng().gen_range(0.75..1.25);
                tokio::time::sleep(SUPERSEDED_BACKOFF.mul_f64(jitter)).await;
                backoff = Duration::from_millis(250);
                continue;
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), retry_in = ?backoff, "stream to the administrator failed")
            }
        }
        let jitter = rand::thread_rng().gen_range(0.5..1.5);
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn session(
    options: &ConnectionOptions,
    outbox: &Arc<Outbox>,
    refresh_requests: &mpsc::Sender<RefreshRequest>,
) -> anyhow::Result<()> {
    let channel = estate_common::transport::endpoint(&options.admin_url, &options.tls)?
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect()
        .await?;
    let mut client = AgentServiceClient::new(channel).max_decoding_message_size(16 * 1024 * 1024);
    let (tx, rx) = mpsc::channel::<ReportRequest>(256);
    let hello = Hello { completed: outbox.completed(), ..options.hello.clone() };
    tx.send(ReportRequest { seq: 0, body: Some(Body::Hello(hello)) }).await?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = &options.token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse()?;
        request.metadata_mut().insert("authorization", value);
    }
    let sender = {
        let outbox = Arc::clone(outbox);
        tokio::spawn(async move {
            let mut sent = 0;
            loop {
                for message in outbox.after(sent).await {
                    sent = message.seq;
                    if tx.send(message).await.is_err() {
                        return;
                    }
                }
            }
        })
    };
    let result = async {
        let mut inbound = client.report(request).await?.into_inner();
        tracing::info!(admin = %options.admin_url, unacked = outbox.unacked(), "connected to the administrator");
        while let Some(message) = inbound.message().await? {
            match message.body {
                Some(report_response::Body::Ack(ack)) => outbox.ack(ack.seq),
                Some(report_response::Body::Reject(reject)) => {
                    // One message the administrator cannot accept (often a newer or older
                    // administrator): dropped, and the stream goes on.
                    tracing::warn!(seq = reject.seq, field = %reject.field, reason = %reject.reason, "the administrator rejected a message; it is dropped");
                    outbox.reject(reject.seq);
                }
                Some(report_response::Body::Refresh(refresh)) => {
                    tracing::info!(regions = ?refresh.regions, bucket = %refresh.object_refresh_bucket, "the administrator asked for a refresh");
                    let _ = refresh_requests.try_send(refresh);
                }
                None => {}
            }
        }
        Ok(())
    }
    .await;
    sender.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only ABORTED, which the administrator sends for nothing but a later reporter, makes the
    /// agent step back; other failures retry at the usual pace.
    #[test]
    fn only_a_later_reporter_makes_the_agent_step_back() {
        let aborted = anyhow::Error::from(tonic::Status::aborted("superseded: hub `h` reports for account"));
        assert!(superseded(&aborted.context("stream to the administrator")));
        assert!(!superseded(&anyhow::Error::from(tonic::Status::unavailable("down"))));
        assert!(!superseded(&anyhow::anyhow!("connection refused")));
    }
}
