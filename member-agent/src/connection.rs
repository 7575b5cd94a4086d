//! The stream to the administrator: connect, say hello, send the outbox, take
//! acknowledgements and refresh requests; on any failure reconnect with jittered exponential
//! backoff and resend everything not yet acknowledged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use estate_common::pb::{
    agent_service_client::AgentServiceClient, report_request::Body, report_response, Held, Hello, RefreshRequest,
    ReportRequest,
};
use estate_common::transport::ClientTls;

use crate::outbox::Outbox;
use crate::refresh::AbortOnDrop;

#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    pub link: Link,
    pub token: Option<String>,
    pub hello: Hello,
}

/// How a stream reaches the administrator.
#[derive(Debug, Clone)]
pub enum Link {
    /// A connection of its own, made again at every reconnection (the TLS files are read
    /// again, so rotated client certificates take effect).
    Own { admin_url: String, tls: ClientTls },
    /// An HTTP/2 connection that other accounts' streams share (a hub's).
    Shared(Arc<SharedConnection>),
}

impl Link {
    fn admin_url(&self) -> &str {
        match self {
            Link::Own { admin_url, .. } => admin_url,
            Link::Shared(shared) => &shared.admin_url,
        }
    }
}

/// One HTTP/2 connection to the administrator that carries the streams of several accounts.
/// tonic's channel reconnects by itself; after a stream fails as unavailable the channel is
/// made again, once for all its streams, so that rotated TLS files take effect.
#[derive(Debug)]
pub struct SharedConnection {
    admin_url: String,
    tls: ClientTls,
    /// The channel and how many times it was made.
    current: Mutex<(Channel, u64)>,
}

impl SharedConnection {
    /// A connection made when its first stream opens.
    pub fn new(admin_url: &str, tls: &ClientTls) -> anyhow::Result<Self> {
        let channel = lazy_channel(admin_url, tls)?;
        Ok(Self { admin_url: admin_url.to_owned(), tls: tls.clone(), current: Mutex::new((channel, 0)) })
    }

    fn channel(&self) -> (Channel, u64) {
        self.current.lock().expect("channel lock").clone()
    }

    /// Makes the channel again, unless another stream did since `seen`.
    fn renew(&self, seen: u64) {
        let mut current = self.current.lock().expect("channel lock");
        if current.1 != seen {
            return;
        }
        match lazy_channel(&self.admin_url, &self.tls) {
            Ok(channel) => *current = (channel, seen + 1),
            Err(error) => tracing::warn!(error = %format!("{error:#}"), "cannot make the connection again; keeping it"),
        }
    }
}

fn lazy_channel(admin_url: &str, tls: &ClientTls) -> anyhow::Result<Channel> {
    Ok(estate_common::transport::endpoint(admin_url, tls)?
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
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

/// What the administrator sends besides acknowledgements, for the account's pipeline.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub refresh_requests: mpsc::Sender<RefreshRequest>,
    /// What the administrator holds, sent after each hello.
    pub held: mpsc::Sender<Held>,
}

/// Runs forever: keeps one stream to the administrator open.
pub async fn run(options: ConnectionOptions, outbox: Arc<Outbox>, inbound: Inbound) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match session(&options, &outbox, &inbound).await {
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

async fn session(options: &ConnectionOptions, outbox: &Arc<Outbox>, inbound: &Inbound) -> anyhow::Result<()> {
    match &options.link {
        Link::Own { admin_url, tls } => {
            let channel = lazy_channel(admin_url, tls)?;
            stream(channel, options, outbox, inbound).await
        }
        Link::Shared(shared) => {
            let (channel, made) = shared.channel();
            let result = stream(channel, options, outbox, inbound).await;
            let status = result.as_ref().err().and_then(|e| e.chain().find_map(|e| e.downcast_ref::<tonic::Status>()));
            if status.is_none_or(|s| s.code() == tonic::Code::Unavailable) && result.is_err() {
                shared.renew(made);
            }
            result
        }
    }
}

async fn stream(
    channel: Channel,
    options: &ConnectionOptions,
    outbox: &Arc<Outbox>,
    inbound: &Inbound,
) -> anyhow::Result<()> {
    let mut client = AgentServiceClient::new(channel).max_decoding_message_size(16 * 1024 * 1024);
    let (tx, rx) = mpsc::channel::<ReportRequest>(256);
    let hello = Hello { completed: outbox.completed(), ..options.hello.clone() };
    tx.send(ReportRequest { seq: 0, body: Some(Body::Hello(hello)) }).await?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = &options.token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse()?;
        request.metadata_mut().insert("authorization", value);
    }
    // Aborted when the stream ends, or when the pipeline it serves is dropped.
    let _sender = {
        let outbox = Arc::clone(outbox);
        AbortOnDrop(tokio::spawn(async move {
            let mut sent = 0;
            loop {
                for message in outbox.after(sent).await {
                    sent = message.seq;
                    if tx.send(message).await.is_err() {
                        return;
                    }
                }
            }
        }))
    };
    let result = async {
        let mut responses = client.report(request).await?.into_inner();
        tracing::info!(
            admin = %options.link.admin_url(),
            account = %options.hello.account_id,
            unacked = outbox.unacked(),
            "connected to the administrator"
        );
        while let Some(message) = responses.message().await? {
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
                    let _ = inbound.refresh_requests.try_send(refresh);
                }
                Some(report_response::Body::Held(held)) => {
                    let _ = inbound.held.try_send(held);
                }
                None => {}
            }
        }
        Ok(())
    }
    .await;
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
