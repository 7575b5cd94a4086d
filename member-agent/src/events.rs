//! CloudTrail events from an SQS queue that an EventBridge rule fills: each of Macie's 18
//! events re-reads what it names (a bucket, or the account's settings) and streams it at
//! once, carrying the event's name, time and actor. Events for other accounts or Regions,
//! duplicates and unknown event names are dropped; malformed messages are logged with their
//! ID and set aside in the dead-letter queue. Order does not matter: an event triggers a
//! read of the current state, never an application of its own content.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::Message;
use serde::Deserialize;

use estate_common::model::{AccountSettings, BucketKey, Region};
use estate_common::pb::{self, report_request::Body};

use crate::aws::{classify, Clients};
use crate::collect::{account_block_public_access, collect_bucket};
use crate::outbox::Outbox;
use crate::refresh::{now_ms, Refresher};

/// Events about one account's settings.
pub const ACCOUNT_EVENTS: &[&str] = &[
    "DeletePublicAccessBlock",
    "PutPublicAccessBlock",
    "DeleteAccountPublicAccessBlock",
    "PutAccountPublicAccessBlock",
];

/// Events about one bucket (Macie's list; the set is fixed).
pub const BUCKET_EVENTS: &[&str] = &[
    "CreateBucket",
    "DeleteBucket",
    "DeleteBucketEncryption",
    "DeleteBucketPolicy",
    "DeleteBucketPublicAccessBlock",
    "DeleteBucketReplication",
    "DeleteBucketTagging",
    "PutBucketAcl",
    "PutBucketEncryption",
    "PutBucketPolicy",
    "PutBucketPublicAccessBlock",
    "PutBucketReplication",
    "PutBucketTagging",
    "PutBucketVersioning",
];

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "detail-type")]
    detail_type: String,
    account: Option<String>,
    detail: Detail,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    event_source: String,
    event_name: String,
    aws_region: String,
    event_time: Option<String>,
    #[serde(rename = "eventID")]
    event_id: String,
    recipient_account_id: Option<String>,
    user_identity: Option<UserIdentity>,
    request_parameters: Option<RequestParameters>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserIdentity {
    #[serde(rename = "type")]
    kind: Option<String>,
    arn: Option<String>,
    account_id: Option<String>,
    invoked_by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestParameters {
    bucket_name: Option<String>,
}

/// What one message asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Bucket {
        region: Region,
        bucket: String,
        cause: pb::EventCause,
    },
    Account {
        cause: pb::EventCause,
        bucket: Option<(Region, String)>,
    },
    /// Not ours: another account or Region, or an event outside the fixed set.
    Ignored(String),
}

/// Parses one message body. `Err` means malformed.
pub fn parse(body: &str, account_id: &str, regions: &[Region]) -> Result<Event, String> {
    let envelope: Envelope =
        serde_json::from_str(body).map_err(|e| format!("not an EventBridge CloudTrail event: {e}"))?;
    let d = envelope.detail;
    if envelope.detail_type != "AWS API Call via CloudTrail" || d.event_source != "s3.amazonaws.com" {
        return Ok(Event::Ignored(format!(
            "`{}` from `{}` is not an S3 API call",
            envelope.detail_type, d.event_source
        )));
    }
    let account = d.recipient_account_id.clone().or(envelope.account).unwrap_or_default();
    if account != account_id {
        return Ok(Event::Ignored(format!("event for account `{account}`")));
    }
    // Account-wide settings concern every Region, whichever Region the call was made in.
    let account_wide = ACCOUNT_EVENTS.contains(&d.event_name.as_str());
    // The event's Region, as this agent names it, when the agent covers it.
    let covered = regions.iter().find(|r| **r == d.aws_region).cloned();
    let outside = || Event::Ignored(format!("event for Region `{}`", d.aws_region));
    if covered.is_none() && !account_wide {
        return Ok(outside());
    }
    let event_time_ms = match &d.event_time {
        Some(t) => time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|e| format!("`eventTime` `{t}`: {e}"))?,
        None => now_ms(),
    };
    let identity = d.user_identity.as_ref();
    let cause = pb::EventCause {
        event_name: d.event_name.clone(),
        event_time_ms,
        event_id: d.event_id.clone(),
        actor: identity
            .and_then(|i| i.arn.clone().or_else(|| i.invoked_by.clone()).or_else(|| i.account_id.clone()))
            .unwrap_or_default(),
        actor_type: identity.and_then(|i| i.kind.clone()).unwrap_or_default(),
    };
    let bucket = d.request_parameters.and_then(|p| p.bucket_name).filter(|b| !b.is_empty());
    if account_wide {
        // A bucket named by the call is re-read only where this agent covers its Region.
        return Ok(Event::Account { cause, bucket: covered.zip(bucket) });
    }
    if !BUCKET_EVENTS.contains(&d.event_name.as_str()) {
        return Ok(Event::Ignored(format!("`{}` is not one of the monitored events", d.event_name)));
    }
    match (covered, bucket) {
        (Some(region), Some(bucket)) => Ok(Event::Bucket { region, bucket, cause }),
        (_, None) => Err(format!("`{}` names no bucket (`requestParameters.bucketName`)", d.event_name)),
        (None, Some(_)) => Ok(outside()),
    }
}

#[derive(Debug, Clone)]
pub struct EventOptions {
    pub queue_url: String,
    pub dead_letter_queue_url: Option<String>,
    pub wait_seconds: i32,
}

/// Event IDs seen recently, to drop duplicates.
#[derive(Debug, Default)]
struct Seen {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Seen {
    const CAPACITY: usize = 100_000;

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    /// True when the ID is new.
    fn insert(&mut self, id: &str) -> bool {
        if !self.set.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Consumes the queue until the process stops.
pub async fn run(options: EventOptions, clients: Arc<Clients>, refresher: Arc<Refresher>, outbox: Arc<Outbox>) {
    let sqs = clients.sqs.clone();
    let mut seen = Seen::default();
    tracing::info!(queue = %options.queue_url, "consuming CloudTrail events");
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&options.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(options.wait_seconds)
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(error = %classify(error), "cannot receive events; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        for message in messages {
            let done = handle(&message, &options, &clients, &refresher, &outbox, &mut seen).await;
            if done {
                if let Some(receipt) = message.receipt_handle() {
                    if let Err(error) =
                        sqs.delete_message().queue_url(&options.queue_url).receipt_handle(receipt).send().await
                    {
                        tracing::warn!(error = %classify(error), "cannot delete a handled event; it will come again");
                    }
                }
            }
        }
    }
}

/// Handles one message; `true` when it may be deleted.
async fn handle(
    message: &Message,
    options: &EventOptions,
    clients: &Clients,
    refresher: &Refresher,
    outbox: &Outbox,
    seen: &mut Seen,
) -> bool {
    let id = message.message_id().unwrap_or("?");
    let body = message.body().unwrap_or_default();
    let event = match parse(body, &refresher.account_id, &refresher.regions) {
        Ok(event) => event,
        Err(reason) => {
            tracing::warn!(message = id, %reason, "malformed event set aside");
            return match &options.dead_letter_queue_url {
                Some(dlq) => {
                    let sent = clients.sqs.send_message().queue_url(dlq).message_body(body).send().await;
                    sent.map_err(|e| tracing::warn!(error = %classify(e), "cannot move a malformed event to the dead-letter queue")).is_ok()
                }
                // Without a dead-letter queue URL, the queue's redrive policy moves it.
                None => false,
            };
        }
    };
    let event_id = match &event {
        Event::Bucket { cause, .. } | Event::Account { cause, .. } => Some(cause.event_id.clone()),
        Event::Ignored(_) => None,
    };
    if let Some(event_id) = &event_id {
        if seen.contains(event_id) {
            tracing::info!(message = id, event = %event_id, "duplicate event dropped");
            return true;
        }
    }
    // A re-read always reports the bucket (calls that fail mark their own fields unknown),
    // so a handled event is seen and its message may go.
    handle_event(event, clients, refresher, outbox, id).await;
    if let Some(event_id) = &event_id {
        seen.insert(event_id);
    }
    true
}

async fn handle_event(event: Event, clients: &Clients, refresher: &Refresher, outbox: &Outbox, id: &str) {
    match event {
        Event::Ignored(reason) => tracing::info!(message = id, %reason, "event ignored"),
        Event::Account { cause, bucket } => {
            let settings = AccountSettings {
                account_id: refresher.account_id.clone(),
                read_at: now_ms(),
                block_public_access: account_block_public_access(&clients.s3control, &refresher.account_id).await,
            };
            tracing::info!(event = %cause.event_name, "account settings re-read");
            let message = pb::AccountSettingsChanged { settings: Some((&settings).into()), cause: Some(cause.clone()) };
            outbox.push(Body::AccountSettingsChanged(message)).await;
            if let Some((region, bucket)) = bucket {
                reread_bucket(clients, refresher, outbox, &region, &bucket, cause, id).await;
            }
        }
        Event::Bucket { region, bucket, cause } => {
            reread_bucket(clients, refresher, outbox, &region, &bucket, cause, id).await
        }
    }
}

async fn reread_bucket(
    clients: &Clients,
    refresher: &Refresher,
    outbox: &Outbox,
    region: &Region,
    bucket: &str,
    cause: pb::EventCause,
    message_id: &str,
) {
    let key = BucketKey::new(refresher.account_id.clone(), region.clone(), bucket);
    let created_at = if cause.event_name == "CreateBucket" { cause.event_time_ms } else { 0 };
    match collect_bucket(&clients.s3(region), key, created_at, now_ms()).await {
        Some(facts) => {
            tracing::info!(message = message_id, event = %cause.event_name, %bucket, "bucket re-read");
            let snapshot = pb::BucketSnapshot {
                generation: refresher.next_generation(),
                facts: Some((&facts).into()),
                cause: Some(cause),
            };
            outbox.push(Body::Bucket(snapshot)).await;
        }
        None => {
            tracing::info!(message = message_id, event = %cause.event_name, %bucket, "bucket gone");
            outbox
                .push(Body::Deleted(pb::BucketDeleted { region: region.to_string(), bucket_name: bucket.to_owned() }))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(account: &str, region: &str, name: &str, bucket: Option<&str>) -> String {
        let mut params = serde_json::json!({});
        if let Some(b) = bucket {
            params["bucketName"] = serde_json::json!(b);
        }
        serde_json::json!({
            "version": "0", "id": "e1", "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3",
            "account": account, "time": "2026-11-29T05:00:00Z", "region": region,
            "detail": {
                "eventSource": "s3.amazonaws.com", "eventName": name, "awsRegion": region,
                "eventTime": "2026-11-29T05:00:00Z", "eventID": "id-1", "recipientAccountId": account,
                "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111111111111:user/alice", "accountId": account},
                "requestParameters": params,
            }
        })
        .to_string()
    }

    #[test]
    fn parses_ignores_and_rejects() {
        let regions = vec![Region::parse("us-east-1").unwrap()];
        let a = "111111111111";
        match parse(&event(a, "us-east-1", "PutBucketPolicy", Some("b")), a, &regions).unwrap() {
            Event::Bucket { bucket, cause, .. } => {
                assert_eq!(bucket, "b");
                assert_eq!(cause.actor, "arn:aws:iam::111111111111:user/alice");
                assert_eq!(cause.event_time_ms, 1_795_928_400_000);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&event(a, "us-east-1", "PutPublicAccessBlock", None), a, &regions),
            Ok(Event::Account { .. })
        ));
        // Account-wide settings changed from any Region are the account's; a bucket in a Region
        // the agent does not cover is not re-read.
        for name in ["PutAccountPublicAccessBlock", "DeleteAccountPublicAccessBlock"] {
            assert!(
                matches!(
                    parse(&event(a, "ap-south-1", name, None), a, &regions),
                    Ok(Event::Account { bucket: None, .. })
                ),
                "{name}"
            );
        }
        assert!(matches!(
            parse(&event(a, "ap-south-1", "PutPublicAccessBlock", Some("b")), a, &regions),
            Ok(Event::Account { bucket: None, .. })
        ));
        assert!(matches!(
            parse(&event(a, "us-east-1", "PutPublicAccessBlock", Some("b")), a, &regions),
            Ok(Event::Account { bucket: Some(_), .. })
        ));
        assert!(matches!(
            parse(&event("222222222222", "us-east-1", "PutBucketPolicy", Some("b")), a, &regions),
            Ok(Event::Ignored(_))
        ));
        assert!(matches!(
            parse(&event(a, "eu-west-1", "PutBucketPolicy", Some("b")), a, &regions),
            Ok(Event::Ignored(_))
        ));
        assert!(matches!(parse(&event(a, "us-east-1", "GetObject", Some("b")), a, &regions), Ok(Event::Ignored(_))));
        assert!(parse("{not json", a, &regions).unwrap_err().contains("not an EventBridge"));
        assert!(parse(&event(a, "us-east-1", "PutBucketPolicy", None), a, &regions)
            .unwrap_err()
            .contains("names no bucket"));
        let mut seen = Seen::default();
        assert!(seen.insert("x") && !seen.insert("x"));
    }
}
