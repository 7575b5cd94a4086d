//! The Amazon EventBridge sink: `PutEvents` to a bus named by name or ARN (an ARN of another
//! account's bus delivers across accounts). Each event's `detail` is the Macie finding
//! document, its `source` Estate's own (EventBridge reserves `aws.`), its `detail-type`
//! [`DETAIL_TYPE`], its `resources` the bucket's ARN and its `time` the finding's update.
//! Permission needed: `events:PutEvents` on the bus.

use anyhow::bail;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::Deserialize;

use estate_common::findings::Finding;

use super::Start;

/// PutEvents takes at most 10 entries per call.
pub const BATCH: usize = 10;
/// The `detail-type` of every event: rules match findings by it, and by `detail.type`.
pub const DETAIL_TYPE: &str = "Estate Finding";
/// PutEvents takes at most 256 KB per call, entries included.
const MAX_CALL_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBridgeConfig {
    pub name: String,
    #[serde(default)]
    pub start: Start,
    /// The bus's name (in the administrator's account and `region`) or ARN.
    pub event_bus: String,
    /// The Region of a bus given by name (default: the administrator's AWS Region
    /// configuration); a bus ARN names its own.
    pub region: Option<String>,
    /// The events' `source` (default `estate`); must not start with `aws.`.
    #[serde(default = "default_source")]
    pub source: String,
}

fn default_source() -> String {
    "estate".to_owned()
}

impl EventBridgeConfig {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.source.to_ascii_lowercase().starts_with("aws.") || self.source.is_empty() {
            bail!("`source` `{}` is reserved or empty: EventBridge keeps `aws.` for AWS services", self.source);
        }
        if self.event_bus.starts_with("arn:") {
            bus_region(&self.event_bus)?;
        } else if self.event_bus.is_empty() || self.event_bus.len() > 256 {
            bail!("`event_bus` must be a bus name or ARN");
        }
        Ok(())
    }
}

/// The Region of a bus ARN (`arn:PARTITION:events:REGION:ACCOUNT:event-bus/NAME`).
fn bus_region(arn: &str) -> anyhow::Result<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "events", region, account, resource]
            if !region.is_empty() && account.len() == 12 && resource.starts_with("event-bus/") =>
        {
            Ok(region)
        }
        _ => bail!("`event_bus` `{arn}` is not an event bus ARN (arn:aws:events:REGION:ACCOUNT:event-bus/NAME)"),
    }
}

pub struct EventBridgeSink {
    client: aws_sdk_eventbridge::Client,
    bus: String,
    source: String,
}

impl EventBridgeSink {
    pub async fn new(config: &EventBridgeConfig, endpoint_url: Option<&str>) -> anyhow::Result<Self> {
        config.check()?;
        let region = match (config.event_bus.starts_with("arn:"), &config.region) {
            (true, _) => Some(bus_region(&config.event_bus)?.to_owned()),
            (false, region) => region.clone(),
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        let shared = loader.load().await;
        if shared.region().is_none() {
            bail!("no AWS Region for the bus `{}`: give `region` or a bus ARN", config.event_bus);
        }
        let mut builder = aws_sdk_eventbridge::config::Builder::from(&shared);
        if let Some(url) = endpoint_url {
            builder = builder.endpoint_url(url);
        }
        Ok(Self {
            client: aws_sdk_eventbridge::Client::from_conf(builder.build()),
            bus: config.event_bus.clone(),
            source: config.source.clone(),
        })
    }

    /// Delivers the batch in as many `PutEvents` calls as its size needs (each within the
    /// 256 KB limit). A single event larger than a call could carry (not reachable with
    /// Estate's bounded findings) is logged and skipped rather than retried forever.
    pub async fn deliver(&self, batch: &[Finding]) -> Result<(), String> {
        let mut calls: Vec<Vec<PutEventsRequestEntry>> = vec![Vec::new()];
        let mut bytes = 0;
        for finding in batch {
            let detail = finding.to_macie_json().to_string();
            // What AWS counts against the call's size: the entry's strings.
            let size = detail.len() + self.source.len() + DETAIL_TYPE.len() + finding.bucket_name.len() + 13;
            if size > MAX_CALL_BYTES {
                tracing::error!(finding = %finding.id, size, "finding too large for an EventBridge event; not delivered to this bus");
                continue;
            }
            if bytes + size > MAX_CALL_BYTES {
                calls.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            calls.last_mut().expect("one call at least").push(
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(&self.source)
                    .detail_type(DETAIL_TYPE)
                    .resources(format!("arn:aws:s3:::{}", finding.bucket_name))
                    .time(aws_smithy_types::DateTime::from_millis(finding.updated_at))
                    .detail(detail)
                    .build(),
            );
        }
        for entries in calls.into_iter().filter(|c| !c.is_empty()) {
            let count = entries.len();
            let out = self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| format!("PutEvents: {}", DisplayErrorContext(e)))?;
            if out.failed_entry_count() > 0 {
                let first = out.entries().iter().find(|e| e.error_code().is_some());
                return Err(format!(
                    "PutEvents: {} of {count} entries failed (first: {} {})",
                    out.failed_entry_count(),
                    first.and_then(|e| e.error_code()).unwrap_or("?"),
                    first.and_then(|e| e.error_message()).unwrap_or(""),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_arns_name_their_region_and_aws_sources_are_refused() {
        assert_eq!(bus_region("arn:aws:events:eu-west-1:222222222222:event-bus/security").unwrap(), "eu-west-1");
        assert!(bus_region("arn:aws:sqs:eu-west-1:222222222222:q").is_err());
        let config = |source: &str| EventBridgeConfig {
            name: "bus".into(),
            start: Start::All,
            event_bus: "default".into(),
            region: None,
            source: source.into(),
        };
        assert!(config("estate").check().is_ok());
        assert!(config("aws.macie").check().is_err());
    }
}
