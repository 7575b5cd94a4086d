//! Findings delivered to destinations outside Estate: Amazon EventBridge, AWS Security Hub,
//! a webhook, OCSF JSON lines. Each configured sink follows the durable findings feed from a cursor of its
//! own, persisted in the store ([`Op::SinkDelivered`]) after each delivery, so that a restart
//! resumes where the sink stopped. Delivery is at least once: a finding delivered again (a
//! crash between delivery and cursor) carries the same ID and is an update at the
//! destination, never a second finding. Archived findings are not delivered.
//!
//! A sink that fails is retried with exponential backoff (1 s doubling to 60 s, with
//! jitter) and never waits on anything but itself: every sink has its own task and
//! follower, the feed does not wait for followers (a follower left behind replays from its
//! cursor), and neither ingest nor reads wait for a sink.

mod eventbridge;
mod hmac;
mod http;
mod ocsf;
mod securityhub;
mod webhook;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use estate_common::findings::Finding;

use crate::ingest::Committer;
use crate::read::findings::{follow, Followed};
use crate::state::store::{Op, Store};

pub use eventbridge::EventBridgeConfig;
pub use ocsf::{OcsfConfig, OCSF_VERSION};
pub use securityhub::SecurityHubConfig;
pub use webhook::{WebhookConfig, WebhookFormat};

/// One destination of `estate.toml`'s `[[sinks]]`, by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SinkConfig {
    Eventbridge(EventBridgeConfig),
    Webhook(WebhookConfig),
    Ocsf(OcsfConfig),
    Securityhub(SecurityHubConfig),
}

/// Where a sink starts the first time it runs (afterwards, always from its cursor).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// Every open finding the administrator holds, then every change.
    #[default]
    All,
    /// Only the changes after the sink was first started.
    New,
}

impl SinkConfig {
    pub fn name(&self) -> &str {
        match self {
            Self::Eventbridge(c) => &c.name,
            Self::Webhook(c) => &c.name,
            Self::Ocsf(c) => &c.name,
            Self::Securityhub(c) => &c.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Eventbridge(_) => "eventbridge",
            Self::Webhook(_) => "webhook",
            Self::Ocsf(_) => "ocsf",
            Self::Securityhub(_) => "securityhub",
        }
    }

    fn start(&self) -> Start {
        match self {
            Self::Eventbridge(c) => c.start,
            Self::Webhook(c) => c.start,
            Self::Ocsf(c) => c.start,
            Self::Securityhub(c) => c.start,
        }
    }

    /// Checks what can be checked without the network (names, URLs, files, secrets).
    pub fn check(&self) -> anyhow::Result<()> {
        let name = self.name();
        anyhow::ensure!(
            !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "sink name `{name}` must be 1 to 64 letters, digits, `-`, `_` or `.`"
        );
        match self {
            Self::Eventbridge(c) => c.check(),
            Self::Webhook(c) => c.check().map(|_| ()),
            Self::Ocsf(c) => c.check(),
            Self::Securityhub(c) => c.check(),
        }
        .with_context(|| format!("sink `{name}`"))
    }
}

/// What `/metrics` and the logs say about one sink.
#[derive(Debug)]
pub struct SinkStatus {
    pub name: String,
    pub kind: &'static str,
    /// Findings delivered (a finding delivered again counts again).
    pub delivered: AtomicU64,
    /// Deliveries that succeeded (a call to the destination, or a write, of a batch).
    pub batches: AtomicU64,
    /// Deliveries that failed (each attempt).
    pub failures: AtomicU64,
    /// Every finding change up to this sequence is delivered.
    pub cursor: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

/// Every configured sink's status, in configuration order.
#[derive(Debug, Default)]
pub struct Deliveries {
    pub sinks: Vec<Arc<SinkStatus>>,
}

/// A destination, ready to deliver.
enum Sink {
    EventBridge(eventbridge::EventBridgeSink),
    Webhook(webhook::WebhookSink),
    Ocsf(ocsf::OcsfSink),
    SecurityHub(securityhub::SecurityHubSink),
}

impl Sink {
    async fn open(config: &SinkConfig, aws_endpoint_url: Option<&str>) -> anyhow::Result<Self> {
        Ok(match config {
            SinkConfig::Eventbridge(c) => {
                Self::EventBridge(eventbridge::EventBridgeSink::new(c, aws_endpoint_url).await?)
            }
            SinkConfig::Webhook(c) => Self::Webhook(webhook::WebhookSink::new(c)?),
            SinkConfig::Ocsf(c) => Self::Ocsf(ocsf::OcsfSink::open(c)?),
            SinkConfig::Securityhub(c) => {
                Self::SecurityHub(securityhub::SecurityHubSink::new(c, aws_endpoint_url).await?)
            }
        })
    }

    /// At most this many findings in one delivery.
    fn batch_limit(&self) -> usize {
        match self {
            Self::EventBridge(_) => eventbridge::BATCH,
            Self::Webhook(_) => 1,
            Self::Ocsf(_) => ocsf::BATCH,
            Self::SecurityHub(_) => securityhub::BATCH,
        }
    }

    /// Delivers every finding of `batch`, or fails (then the whole batch is retried).
    async fn deliver(&mut self, batch: &[Finding]) -> Result<(), String> {
        match self {
            Self::EventBridge(sink) => sink.deliver(batch).await,
            Self::Webhook(sink) => sink.deliver(batch).await,
            Self::Ocsf(sink) => sink.deliver(batch).await,
            Self::SecurityHub(sink) => sink.deliver(batch).await,
        }
    }
}

/// Opens every configured sink and starts delivering. A sink that cannot be opened (a file
/// that cannot be created, a secret that cannot be read) stops the start-up with its name.
pub async fn start(
    configs: &[SinkConfig],
    store: Arc<Store>,
    committer: Committer,
    aws_endpoint_url: Option<&str>,
) -> anyhow::Result<Deliveries> {
    let mut deliveries = Deliveries::default();
    for config in configs {
        let sink = Sink::open(config, aws_endpoint_url).await.with_context(|| format!("sink `{}`", config.name()))?;
        let status = Arc::new(SinkStatus {
            name: config.name().to_owned(),
            kind: config.kind(),
            delivered: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            cursor: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        deliveries.sinks.push(Arc::clone(&status));
        tokio::spawn(run(sink, status, config.start(), Arc::clone(&store), committer.clone()));
    }
    Ok(deliveries)
}

/// The first retry waits this long, each next one twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Follows the feed from the sink's cursor and delivers, batch by batch, until the feed ends
/// or storage fails.
async fn run(mut sink: Sink, status: Arc<SinkStatus>, start: Start, store: Arc<Store>, committer: Committer) {
    let name = status.name.clone();
    let stored = store.read().sink_cursor(&name);
    let mut cursor = match (stored, start) {
        (Some(cursor), _) => cursor,
        (None, Start::All) => 0,
        (None, Start::New) => {
            let now = store.read().findings().durable_sequence;
            if let Err(error) = committer.commit(vec![Op::SinkDelivered { sink: name.clone(), through: now }]).await {
                tracing::error!(sink = %name, %error, "cannot store the sink's cursor; the sink stops");
                return;
            }
            now
        }
    };
    status.cursor.store(cursor, Ordering::Relaxed);
    tracing::info!(sink = %name, kind = status.kind, cursor, "sink started");
    loop {
        let mut followed = follow(&store, Some(cursor));
        loop {
            let Some(first) = followed.recv().await else { return };
            let mut batch: Vec<Finding> = Vec::new();
            let mut through = cursor;
            let mut behind = false;
            let mut next = Some(first);
            while let Some(item) = next.take() {
                match item {
                    Followed::Finding(finding) => {
                        through = through.max(finding.sequence);
                        // A finding changed twice in one batch is delivered once, as it is now.
                        batch.retain(|f| f.id != finding.id);
                        if !finding.archived {
                            batch.push(*finding);
                        }
                    }
                    Followed::Behind { .. } => behind = true,
                }
                if !behind && batch.len() < sink.batch_limit() {
                    next = followed.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                deliver_until_done(&mut sink, &batch, &status).await;
            }
            if through > cursor {
                let op = Op::SinkDelivered { sink: name.clone(), through };
                if let Err(error) = committer.commit(vec![op]).await {
                    tracing::error!(sink = %name, %error, "cannot store the sink's cursor; the sink stops");
                    return;
                }
                cursor = through;
                status.cursor.store(cursor, Ordering::Relaxed);
            }
            if behind {
                // The feed moved on without this sink: replay from its cursor.
                break;
            }
        }
    }
}

/// Delivers `batch`, retrying with backoff until it is delivered.
async fn deliver_until_done(sink: &mut Sink, batch: &[Finding], status: &SinkStatus) {
    let mut wait = FIRST_BACKOFF;
    loop {
        match sink.deliver(batch).await {
            Ok(()) => {
                status.delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
                status.batches.fetch_add(1, Ordering::Relaxed);
                *status.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                return;
            }
            Err(error) => {
                status.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    sink = %status.name,
                    kind = status.kind,
                    findings = batch.len(),
                    retry_in_ms = wait.as_millis() as u64,
                    %error,
                    "delivery failed"
                );
                *status.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=wait.as_millis() as u64 / 4);
                tokio::time::sleep(wait + Duration::from_millis(jitter)).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sinks {
        sinks: Vec<SinkConfig>,
    }

    #[test]
    fn sinks_are_read_by_kind_and_unknown_keys_refused() {
        let text = r#"
            [[sinks]]
            kind = "eventbridge"
            name = "bus"
            event_bus = "arn:aws:events:eu-west-1:222222222222:event-bus/security"

            [[sinks]]
            kind = "ocsf"
            name = "lake"
            path = "-"
            start = "new"
        "#;
        let sinks: Sinks = toml::from_str(text).unwrap();
        assert_eq!(sinks.sinks.iter().map(SinkConfig::kind).collect::<Vec<_>>(), ["eventbridge", "ocsf"]);
        assert_eq!(sinks.sinks[1].start(), Start::New);
        sinks.sinks.iter().try_for_each(SinkConfig::check).unwrap();
        let typo = "[[sinks]]\nkind = \"ocsf\"\nname = \"lake\"\npath = \"-\"\nmax_byte = 5\n";
        assert!(toml::from_str::<Sinks>(typo).unwrap_err().to_string().contains("max_byte"));
        let bad_name = "[[sinks]]\nkind = \"ocsf\"\nname = \"a b\"\npath = \"-\"\n";
        let sinks: Sinks = toml::from_str(bad_name).unwrap();
        assert!(sinks.sinks[0].check().is_err());
    }
}
