//! CloudTrail events from an SQS queue that an EventBridge rule fills: each of Macie's 18
//! events re-reads what it names (a bucket, or the account's settings) and streams it at
//! once, carrying the event's name, time and actor. Events for other accounts or Regions,
//! duplicates and unknown event names are dropped; malformed messages are logged with their
//! ID and set aside in the dead-letter queue. Order does not matter: an event triggers a
//! read of the current state, never an application of its own content.
//!
//! An event is a claim, not a proof: a failed call (one with an `errorCode`) on anyone's
//! bucket is recorded in this account's trail too. Failed calls are ignored, and a bucket an
//! event names is re-read only once this account's own ListBuckets answer lists it
//! ([`OwnedBuckets`]); every read then passes `ExpectedBucketOwner` as well. The consumer
//! runs under [`supervise`], which restarts it with backoff should it ever stop or panic.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::Message;
use serde::Deserialize;

use estate_common::model::{AccountSettings, BucketKey, Region, UnixMillis};
use estate_common::pb::{self, report_request::Body};

use crate::aws::{classify, CallError, Clients};
use crate::collect::{account_block_public_access, collect_bucket};
use crate::outbox::Outbox;
use crate::refresh::{guarded, now_ms, AbortOnDrop, Refresher};

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
    /// Present only when the call failed.
    error_code: Option<serde_json::Value>,
    recipient_account_id: Option<String>,
    user_identity: Option<UserIdentity>,
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: Option<String>,
    request_parameters: Option<RequestParameters>,
}

/// CloudTrail's `userIdentity`: the members Macie's finding reports.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserIdentity {
    #[serde(rename = "type")]
    kind: Option<String>,
    arn: Option<String>,
    principal_id: Option<String>,
    account_id: Option<String>,
    user_name: Option<String>,
    access_key_id: Option<String>,
    invoked_by: Option<String>,
    session_context: Option<SessionContext>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionContext {
    session_issuer: Option<SessionIssuer>,
    attributes: Option<SessionAttributes>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionIssuer {
    #[serde(rename = "type")]
    kind: Option<String>,
    arn: Option<String>,
    principal_id: Option<String>,
    account_id: Option<String>,
    user_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionAttributes {
    creation_date: Option<String>,
    /// CloudTrail writes `"true"` or `"false"`.
    mfa_authenticated: Option<serde_json::Value>,
}

/// A CloudTrail string as the agent passes it on: one longer than the administrator accepts
/// is dropped (the rest of the event still counts), not sent to be refused.
fn claim(value: &Option<String>) -> String {
    match value {
        Some(v) if v.len() <= estate_common::limits::MAX_EVENT_STRING_BYTES => v.clone(),
        _ => String::new(),
    }
}

fn rfc3339_ms(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

impl UserIdentity {
    fn to_pb(&self) -> pb::UserIdentity {
        let session = self.session_context.as_ref();
        let attributes = session.and_then(|s| s.attributes.as_ref());
        pb::UserIdentity {
            r#type: claim(&self.kind),
            arn: claim(&self.arn),
            principal_id: claim(&self.principal_id),
            account_id: claim(&self.account_id),
            user_name: claim(&self.user_name),
            access_key_id: claim(&self.access_key_id),
            invoked_by: claim(&self.invoked_by),
            session_issuer: session.and_then(|s| s.session_issuer.as_ref()).map(|i| pb::SessionIssuer {
                r#type: claim(&i.kind),
                arn: claim(&i.arn),
                principal_id: claim(&i.principal_id),
                account_id: claim(&i.account_id),
                user_name: claim(&i.user_name),
            }),
            session_created_ms: attributes
                .and_then(|a| a.creation_date.as_deref())
                .and_then(rfc3339_ms)
                .filter(|ms| *ms > 0)
                .unwrap_or_default(),
            mfa_authenticated: attributes.and_then(|a| match &a.mfa_authenticated {
                Some(serde_json::Value::Bool(b)) => Some(*b),
                Some(serde_json::Value::String(s)) => s.parse().ok(),
                _ => None,
            }),
        }
    }
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
    // A failed call changed nothing, and may name a bucket of any account: CloudTrail
    // records, in the caller's account, calls on other accounts' buckets that S3 refused.
    if let Some(code) = &d.error_code {
        let code: String = code.as_str().map_or_else(|| code.to_string(), str::to_owned).chars().take(64).collect();
        return Ok(Event::Ignored(format!("`{}` failed (`errorCode` `{code}`)", d.event_name)));
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
        Some(t) => rfc3339_ms(t).ok_or_else(|| format!("`eventTime` `{t}` is not an RFC 3339 time"))?,
        None => now_ms(),
    };
    let identity = d.user_identity.as_ref();
    let cause = pb::EventCause {
        event_name: d.event_name.clone(),
        event_time_ms,
        event_id: d.event_id.clone(),
        actor: claim(
            &identity.and_then(|i| i.arn.clone().or_else(|| i.invoked_by.clone()).or_else(|| i.account_id.clone())),
        ),
        actor_type: claim(&identity.and_then(|i| i.kind.clone())),
        identity: identity.map(UserIdentity::to_pb),
        source_ip: claim(&d.source_ip_address),
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

/// How long a listing of the account's buckets is trusted to say that a bucket it lists is
/// still the account's.
pub const OWNED_CACHE_TTL_MS: i64 = 10 * 60 * 1000;

/// The least time between two ListBuckets calls made to confirm events: however many events
/// name buckets that are not the account's, they cost at most one listing (of 1,000 names a
/// page) per interval. An event that would need a listing sooner waits in the queue: its
/// message is made visible again when the next listing is allowed, so an event about a bucket
/// created a moment ago is late by at most this much.
pub const MIN_RELIST_INTERVAL_MS: i64 = 10 * 1000;

/// Whether a bucket an event names is this account's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Listed by the account's own ListBuckets.
    Owned,
    /// Not listed by a ListBuckets answer read after the event: not the account's (or no
    /// longer).
    NotOwned,
    /// No listing new enough, and none may be made yet (or it failed): ask again later.
    Unconfirmed,
}

/// The account's own bucket names, from its last ListBuckets answer (ListBuckets lists only
/// the buckets the caller owns), re-listed when an event names a bucket the cache cannot
/// decide about, at most once per [`MIN_RELIST_INTERVAL_MS`]. It holds one name per bucket
/// of the account (S3 allows at most 1,000,000 per account, so tens of MB at worst).
#[derive(Debug, Default)]
pub struct OwnedBuckets {
    names: HashSet<String>,
    /// When the listing in `names` started (wall clock).
    listed_at: Option<UnixMillis>,
    /// When a listing was last started, successful or not.
    last_attempt: Option<UnixMillis>,
    /// Events dropped because their bucket is not the account's.
    pub dropped: u64,
}

impl OwnedBuckets {
    /// How long until a new listing is allowed, at `now`.
    pub fn next_listing_in(&self, now: UnixMillis) -> Duration {
        let wait =
            self.last_attempt.map_or(0, |at| (at + MIN_RELIST_INTERVAL_MS - now).clamp(0, MIN_RELIST_INTERVAL_MS));
        Duration::from_millis(wait as u64)
    }

    /// Decides whether `bucket`, named by an event at `event_time`, is the account's, at
    /// `now`; `list` lists the account's bucket names when a new listing is needed and allowed.
    pub async fn confirm<F, Fut>(&mut self, bucket: &str, event_time: UnixMillis, now: UnixMillis, list: F) -> Ownership
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<String>, CallError>>,
    {
        if let Some(known) = self.decide(bucket, event_time, now) {
            return known;
        }
        // A clock that went back allows a listing rather than none for a long time.
        if self.last_attempt.is_some_and(|at| now >= at && now - at < MIN_RELIST_INTERVAL_MS) {
            return Ownership::Unconfirmed;
        }
        self.last_attempt = Some(now);
        match list().await {
            Ok(names) => {
                self.names = names.into_iter().collect();
                self.listed_at = Some(now);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot list the account's buckets to confirm an event; it waits in the queue");
                return Ownership::Unconfirmed;
            }
        }
        // A listing just made decides, even for an event stamped after it (a skewed clock).
        self.decide(bucket, event_time.min(now), now).unwrap_or(Ownership::Unconfirmed)
    }

    /// What the cached listing alone can say.
    fn decide(&self, bucket: &str, event_time: UnixMillis, now: UnixMillis) -> Option<Ownership> {
        let listed_at = self.listed_at?;
        if self.names.contains(bucket) {
            return (now - listed_at <= OWNED_CACHE_TTL_MS).then_some(Ownership::Owned);
        }
        // Absent from a listing made after the event: the event's bucket is not ours.
        (listed_at >= event_time).then_some(Ownership::NotOwned)
    }
}

/// Every bucket name the account owns (ListBuckets, paginated).
async fn list_bucket_names(clients: &Clients, home_region: &str) -> Result<Vec<String>, CallError> {
    let mut names = Vec::new();
    crate::refresh::each_list_buckets_page(clients, home_region, |page| {
        names.extend(page.buckets().iter().filter_map(|b| b.name()).map(str::to_owned));
    })
    .await?;
    Ok(names)
}

/// What the consumer keeps across restarts: the IDs of events handled, and the listing.
#[derive(Debug, Default)]
pub struct ConsumerState {
    seen: Seen,
    owned: OwnedBuckets,
}

/// How [`supervise`] waits before restarting a task: `initial`, doubled after each failure
/// up to `max`, and back to `initial` once a run lasted longer than `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

/// The events consumer's restart delays.
pub const RESTART_BACKOFF: Backoff = Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(300) };

/// Runs the task `start` makes, and whenever it ends or panics, logs why and starts it again
/// after a backoff. It never returns: a consumer that stopped silently would leave every
/// later event unread until the agent restarted.
pub async fn supervise<F, Fut>(name: &'static str, backoff: Backoff, mut start: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut delay = backoff.initial;
    loop {
        let started = tokio::time::Instant::now();
        // Aborted with the supervisor: a pipeline that stops takes its consumer with it.
        let mut task = AbortOnDrop(tokio::spawn(start()));
        let reason = match (&mut task.0).await {
            Ok(Ok(())) => "it stopped".to_owned(),
            Ok(Err(error)) => format!("it failed: {error:#}"),
            Err(joined) => format!("it panicked: {joined}"),
        };
        if started.elapsed() > backoff.max {
            delay = backoff.initial;
        }
        tracing::error!(task = name, %reason, restart_in_ms = delay.as_millis() as u64, "restarting the task");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(backoff.max);
    }
}

/// The events of one account and what acting on them needs; the consumer of a queue hands
/// each message to its account's.
#[derive(Debug)]
pub struct AccountEvents {
    clients: Arc<Clients>,
    refresher: Arc<Refresher>,
    outbox: Arc<Outbox>,
    /// What the account's consumer learned, kept across restarts of the consumer.
    state: tokio::sync::Mutex<ConsumerState>,
    /// Messages of the account being handled now.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

/// One message of an account being handled ([`AccountEvents::begin`]).
struct Handling(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl AccountEvents {
    pub fn new(clients: Arc<Clients>, refresher: Arc<Refresher>, outbox: Arc<Outbox>) -> Self {
        Self {
            clients,
            refresher,
            outbox,
            state: tokio::sync::Mutex::new(ConsumerState::default()),
            in_flight: Arc::default(),
        }
    }

    /// A place for one more message of the account, unless it has [`MAX_IN_FLIGHT_PER_ACCOUNT`].
    fn begin(&self) -> Option<Handling> {
        use std::sync::atomic::Ordering;
        let taken = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let handling = Handling(Arc::clone(&self.in_flight));
        (taken < MAX_IN_FLIGHT_PER_ACCOUNT).then_some(handling)
    }

    /// Handles one message of this account: `Err` with why when it is malformed.
    async fn handle(&self, message: &Message) -> Result<Outcome, String> {
        let mut state = self.state.lock().await;
        handle(message, &self.clients, &self.refresher, &self.outbox, &mut state).await
    }
}

/// Where the consumer sends one message.
#[derive(Debug, Clone)]
pub enum Route {
    /// To this account's events.
    To(Arc<AccountEvents>),
    /// Dropped, for this reason (an account the reader does not serve).
    Drop(String),
    /// Received again after this long (an account not ready yet).
    Later(Duration),
    /// Set aside as malformed, for this reason.
    Malformed(String),
}

/// Decides where each message of a queue goes: one account's agent sends all to its own
/// events; a hub routes by the account the event names.
pub trait Router: Send + Sync + 'static {
    fn route(&self, body: &str) -> Route;
}

/// Every message to one account's events (the event itself says whether it is that account's).
#[derive(Debug)]
pub struct OneAccount(pub Arc<AccountEvents>);

impl Router for OneAccount {
    fn route(&self, _body: &str) -> Route {
        Route::To(Arc::clone(&self.0))
    }
}

/// How long an event for an account of the set whose pipeline is not ready yet (its role
/// being assumed, its stream not accepted yet, the hub's accounts not listed yet) waits in the
/// queue before it is received again. hub.yaml's queue moves a message to its dead-letter queue
/// after 20 receives, about 20 minutes of this.
pub const NOT_READY_RETRY: Duration = Duration::from_secs(60);

/// A hub's router: one queue holds the events of every account, and each goes to the events
/// of the account it names; events for accounts outside the hub's set are dropped.
#[derive(Debug, Default)]
pub struct Routes {
    /// The hub's accounts now; `None` until the hub knows them (its first listing).
    set: std::sync::RwLock<Option<HashSet<String>>>,
    /// The events of each account whose pipeline runs.
    ready: std::sync::RwLock<std::collections::HashMap<String, Arc<AccountEvents>>>,
}

impl Routes {
    /// The hub serves exactly `accounts` from now on.
    pub fn serve(&self, accounts: impl IntoIterator<Item = String>) {
        *self.set.write().expect("routes lock") = Some(accounts.into_iter().collect());
    }

    /// Events for `account` go to `events` until the guard is dropped (the pipeline stops);
    /// called once the administrator accepted the account's stream.
    pub fn ready(self: &Arc<Self>, account: &str, events: Arc<AccountEvents>) -> RouteGuard {
        self.ready.write().expect("routes lock").insert(account.to_owned(), events);
        RouteGuard { routes: Arc::clone(self), account: account.to_owned() }
    }
}

impl Router for Routes {
    fn route(&self, body: &str) -> Route {
        let account = match event_account(body) {
            Ok(account) => account,
            Err(reason) => return Route::Malformed(reason),
        };
        if let Some(events) = self.ready.read().expect("routes lock").get(&account) {
            return Route::To(Arc::clone(events));
        }
        // Not known yet, or of the set and not ready (its role, its stream): later.
        if self.set.read().expect("routes lock").as_ref().is_none_or(|set| set.contains(&account)) {
            return Route::Later(NOT_READY_RETRY);
        }
        Route::Drop(format!(
            "event for account `{}`, which this hub does not serve",
            estate_common::text::for_log(&account)
        ))
    }
}

/// Routes one account's events while it lives ([`Routes::ready`]).
#[derive(Debug)]
pub struct RouteGuard {
    routes: Arc<Routes>,
    account: String,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        if let Ok(mut ready) = self.routes.ready.write() {
            ready.remove(&self.account);
        }
    }
}

/// The account an event is about (`recipientAccountId`, or the envelope's `account`), as a
/// queue of several accounts' events routes it; `Err` when the message is not an event.
pub fn event_account(body: &str) -> Result<String, String> {
    let envelope: Envelope =
        serde_json::from_str(body).map_err(|e| format!("not an EventBridge CloudTrail event: {e}"))?;
    Ok(envelope.detail.recipient_account_id.or(envelope.account).unwrap_or_default())
}

/// Consumes the queue with `sqs`, each message where `router` sends it; the messages of one
/// receive are handled at once, one account's in turn. It returns only on a failure it cannot
/// retry itself; [`supervise`] restarts it.
pub async fn run(options: EventOptions, sqs: aws_sdk_sqs::Client, router: Arc<dyn Router>) -> anyhow::Result<()> {
    tracing::info!(queue = %options.queue_url, "consuming CloudTrail events");
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    // Each message is handled in a task of its own, so that a slow account holds up only its
    // own messages; the tasks end with the consumer.
    let mut handling = tokio::task::JoinSet::new();
    loop {
        while handling.try_join_next().is_some() {}
        // Room for a whole receive before receiving: received messages wait for no one.
        drop(Arc::clone(&in_flight).acquire_many_owned(10).await.expect("never closed"));
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
            let permit = Arc::clone(&in_flight).acquire_owned().await.expect("never closed");
            let (options, sqs, router) = (options.clone(), sqs.clone(), Arc::clone(&router));
            handling.spawn(async move {
                let _permit = permit;
                let outcome = match tokio::time::timeout(
                    HANDLED_WITHIN,
                    consume(&message, &options, &sqs, router.as_ref()),
                )
                .await
                {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        let id = message.message_id().unwrap_or("?");
                        tracing::warn!(message = id, "the event was not handled in time; it stays in the queue");
                        Outcome::Keep
                    }
                };
                settle(&message, outcome, &options, &sqs).await;
            });
        }
    }
}

/// Messages handled at once over every account.
const MAX_IN_FLIGHT: usize = 100;

/// Messages of one account handled at once: an account whose events are slow (its stream not
/// acknowledging, its outbox full) holds at most this many of [`MAX_IN_FLIGHT`].
const MAX_IN_FLIGHT_PER_ACCOUNT: usize = 10;

/// How long one message may take, its account's turn, its re-read and the acknowledgement
/// included; past it, the message is left to the queue.
const HANDLED_WITHIN: Duration = Duration::from_secs(90);

/// What becomes of one message: routed, handled, or set aside.
async fn consume(message: &Message, options: &EventOptions, sqs: &aws_sdk_sqs::Client, router: &dyn Router) -> Outcome {
    let id = message.message_id().unwrap_or("?");
    let body = message.body().unwrap_or_default();
    let handled = match router.route(body) {
        Route::To(events) => match events.begin() {
            Some(_handling) => events.handle(message).await,
            None => Ok(Outcome::RetryIn(Duration::from_secs(5))),
        },
        Route::Drop(reason) => {
            tracing::info!(message = id, %reason, "event dropped");
            Ok(Outcome::Done)
        }
        Route::Later(delay) => Ok(Outcome::RetryIn(delay)),
        Route::Malformed(reason) => Err(reason),
    };
    let reason = match handled {
        Ok(outcome) => return outcome,
        Err(reason) => reason,
    };
    tracing::warn!(message = id, %reason, "malformed event set aside");
    match &options.dead_letter_queue_url {
        Some(dlq) => match sqs.send_message().queue_url(dlq).message_body(body).send().await {
            Ok(_) => Outcome::Done,
            Err(e) => {
                tracing::warn!(error = %classify(e), "cannot move a malformed event to the dead-letter queue");
                Outcome::Keep
            }
        },
        // Without a dead-letter queue URL, the queue's redrive policy moves it.
        None => Outcome::Keep,
    }
}

/// Deletes a handled message, or makes it visible again when asked to.
async fn settle(message: &Message, outcome: Outcome, options: &EventOptions, sqs: &aws_sdk_sqs::Client) {
    let Some(receipt) = message.receipt_handle() else { return };
    match outcome {
        Outcome::Done => {
            let deleted = sqs.delete_message().queue_url(&options.queue_url).receipt_handle(receipt).send().await;
            if let Err(error) = deleted {
                tracing::warn!(error = %classify(error), "cannot delete a handled event; it will come again");
            }
        }
        Outcome::Keep => {}
        Outcome::RetryIn(delay) => {
            // At least a second, and whole seconds: what SQS counts in.
            let seconds = i32::try_from(delay.as_secs() + 1).unwrap_or(i32::MAX);
            let changed = sqs
                .change_message_visibility()
                .queue_url(&options.queue_url)
                .receipt_handle(receipt)
                .visibility_timeout(seconds)
                .send()
                .await;
            if let Err(error) = changed {
                tracing::info!(error = %classify(error), "the event comes back after the queue's visibility timeout");
            }
        }
    }
}

/// How long a handled event waits for the administrator to acknowledge what it reported
/// before its message is left to the queue: well within the queues' 120 s visibility timeout.
pub const ACKNOWLEDGED_WITHIN: Duration = Duration::from_secs(60);

/// What becomes of a message once handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Handled (or dropped): delete it.
    Done,
    /// Leave it to the queue (its redrive policy moves it after repeated receives).
    Keep,
    /// Not decidable yet: receive it again after this long.
    RetryIn(Duration),
}

/// Handles one message of an account: `Err` with why when it is malformed.
async fn handle(
    message: &Message,
    clients: &Clients,
    refresher: &Refresher,
    outbox: &Outbox,
    state: &mut ConsumerState,
) -> Result<Outcome, String> {
    let id = message.message_id().unwrap_or("?");
    let body = message.body().unwrap_or_default();
    let event = parse(body, &refresher.account_id, &refresher.regions)?;
    let event_id = match &event {
        Event::Bucket { cause, .. } | Event::Account { cause, .. } => Some(cause.event_id.clone()),
        Event::Ignored(_) => None,
    };
    if let Some(event_id) = &event_id {
        if state.seen.contains(event_id) {
            tracing::info!(message = id, event = %event_id, "duplicate event dropped");
            return Ok(Outcome::Done);
        }
    }
    // A re-read always reports the bucket (calls that fail mark their own fields unknown),
    // so a handled event is seen and its message may go once what it reported is durable;
    // one whose bucket could not be confirmed yet stays in the queue.
    let before = outbox.last_pushed();
    let mut outcome = handle_event(event, clients, refresher, outbox, &mut state.owned, id).await;
    let reported = outbox.last_pushed();
    if outcome == Outcome::Done && reported > before {
        // Deleted only once the administrator holds what the event made the agent report: a
        // message deleted before would be lost with the agent (a hub resumes without reading
        // again). Not acknowledged in time, the message comes back after its visibility
        // timeout and is handled again.
        if tokio::time::timeout(ACKNOWLEDGED_WITHIN, outbox.settled(reported)).await.is_err() {
            tracing::warn!(
                message = id,
                "what the event reported is not acknowledged yet; the event stays in the queue"
            );
            outcome = Outcome::Keep;
        }
    }
    if let (Outcome::Done, Some(event_id)) = (outcome, &event_id) {
        state.seen.insert(event_id);
    }
    Ok(outcome)
}

/// Acts on one event.
async fn handle_event(
    event: Event,
    clients: &Clients,
    refresher: &Refresher,
    outbox: &Outbox,
    owned: &mut OwnedBuckets,
    id: &str,
) -> Outcome {
    match event {
        Event::Ignored(reason) => {
            tracing::info!(message = id, %reason, "event ignored");
            Outcome::Done
        }
        Event::Account { cause, bucket } => {
            let settings = AccountSettings {
                account_id: refresher.account_id.clone(),
                read_at: now_ms(),
                block_public_access: account_block_public_access(&clients.s3control, &refresher.account_id).await,
            };
            tracing::info!(event = %cause.event_name, "account settings re-read");
            let message = pb::AccountSettingsChanged { settings: Some((&settings).into()), cause: Some(cause.clone()) };
            outbox.push(Body::AccountSettingsChanged(message)).await;
            match bucket {
                Some((region, bucket)) => {
                    reread_owned(clients, refresher, outbox, owned, &region, &bucket, cause, id).await
                }
                None => Outcome::Done,
            }
        }
        Event::Bucket { region, bucket, cause } => {
            reread_owned(clients, refresher, outbox, owned, &region, &bucket, cause, id).await
        }
    }
}

/// Re-reads the bucket an event names once it is confirmed to be the account's own; drops
/// the event when it is not; one that cannot be confirmed yet is tried again later.
#[allow(clippy::too_many_arguments, reason = "the consumer's context, passed down one level")]
async fn reread_owned(
    clients: &Clients,
    refresher: &Refresher,
    outbox: &Outbox,
    owned: &mut OwnedBuckets,
    region: &Region,
    bucket: &str,
    cause: pb::EventCause,
    id: &str,
) -> Outcome {
    let list = || list_bucket_names(clients, &refresher.home_region);
    match owned.confirm(bucket, cause.event_time_ms, now_ms(), list).await {
        Ownership::Owned => {
            reread_bucket(clients, refresher, outbox, region, bucket, cause, id).await;
            Outcome::Done
        }
        // The account's own bucket, deleted since: its deletion is reported as a re-read
        // would (for this account's key only, so it cannot touch anyone else's bucket).
        Ownership::NotOwned if cause.event_name == "DeleteBucket" => {
            tracing::info!(message = id, event = %cause.event_name, %bucket, "bucket gone");
            let deleted = pb::BucketDeleted { region: region.to_string(), bucket_name: bucket.to_owned() };
            outbox.push(Body::Deleted(deleted)).await;
            Outcome::Done
        }
        Ownership::NotOwned => {
            owned.dropped += 1;
            tracing::warn!(
                message = id,
                event = %cause.event_name,
                %bucket,
                actor = %cause.actor,
                dropped_so_far = owned.dropped,
                "event dropped: the bucket is not this account's"
            );
            Outcome::Done
        }
        Ownership::Unconfirmed => {
            let delay = owned.next_listing_in(now_ms());
            tracing::info!(
                message = id,
                event = %cause.event_name,
                %bucket,
                retry_in_ms = delay.as_millis() as u64,
                "bucket ownership not confirmed yet; the event waits"
            );
            Outcome::RetryIn(delay)
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
    match guarded(collect_bucket(&clients.s3(region), key, created_at, now_ms())).await {
        Ok(Some(facts)) => {
            tracing::info!(message = message_id, event = %cause.event_name, %bucket, "bucket re-read");
            let snapshot = pb::BucketSnapshot {
                generation: refresher.next_generation(),
                facts: Some((&facts).into()),
                cause: Some(cause),
            };
            outbox.push(Body::Bucket(snapshot)).await;
        }
        Ok(None) => {
            tracing::info!(message = message_id, event = %cause.event_name, %bucket, "bucket gone");
            outbox
                .push(Body::Deleted(pb::BucketDeleted { region: region.to_string(), bucket_name: bucket.to_owned() }))
                .await;
        }
        // Its stored facts stay; the next refresh reads it again.
        Err(panic) => {
            tracing::error!(message = message_id, event = %cause.event_name, %bucket, %panic, "bucket re-read failed")
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
    fn an_assumed_role_and_its_source_address_are_passed_on_and_oversized_claims_dropped() {
        let regions = vec![Region::parse("us-east-1").unwrap()];
        let a = "111111111111";
        let mut body: serde_json::Value =
            serde_json::from_str(&event(a, "us-east-1", "PutBucketAcl", Some("b"))).unwrap();
        body["detail"]["sourceIPAddress"] = serde_json::json!("198.51.100.7");
        body["detail"]["userIdentity"] = serde_json::json!({
            "type": "AssumedRole", "principalId": "AROAEXAMPLE:session", "accountId": a,
            "arn": format!("arn:aws:sts::{a}:assumed-role/deployer/session"), "accessKeyId": "ASIAEXAMPLE",
            "userName": "x".repeat(estate_common::limits::MAX_EVENT_STRING_BYTES + 1),
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE", "accountId": a,
                    "arn": format!("arn:aws:iam::{a}:role/deployer"), "userName": "deployer"},
                "attributes": {"creationDate": "2026-11-29T04:00:00Z", "mfaAuthenticated": "true"}
            }
        });
        let Event::Bucket { cause, .. } = parse(&body.to_string(), a, &regions).unwrap() else {
            panic!("a bucket event")
        };
        assert_eq!(cause.source_ip, "198.51.100.7");
        let identity = cause.identity.expect("the identity is passed on");
        assert_eq!((identity.r#type.as_str(), identity.access_key_id.as_str()), ("AssumedRole", "ASIAEXAMPLE"));
        assert_eq!(identity.user_name, "", "a claim longer than the administrator accepts is dropped");
        let issuer = identity.session_issuer.expect("the session issuer");
        assert_eq!((issuer.r#type.as_str(), issuer.user_name.as_str()), ("Role", "deployer"));
        assert_eq!(identity.session_created_ms, 1_795_924_800_000);
        assert_eq!(identity.mfa_authenticated, Some(true));
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

    fn with_error(body: &str, code: serde_json::Value) -> String {
        let mut value: serde_json::Value = serde_json::from_str(body).unwrap();
        value["detail"]["errorCode"] = code;
        value["detail"]["errorMessage"] = serde_json::json!("Access Denied");
        value.to_string()
    }

    #[test]
    fn failed_calls_are_ignored() {
        let regions = vec![Region::parse("us-east-1").unwrap()];
        let a = "111111111111";
        for name in ["PutBucketTagging", "CreateBucket", "PutPublicAccessBlock", "PutAccountPublicAccessBlock"] {
            let body =
                with_error(&event(a, "us-east-1", name, Some("outsiders-bucket")), serde_json::json!("AccessDenied"));
            match parse(&body, a, &regions) {
                Ok(Event::Ignored(reason)) => assert!(reason.contains("AccessDenied"), "{name}: {reason}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        // Whatever the code's type; a null `errorCode` is no error.
        let odd = with_error(&event(a, "us-east-1", "PutBucketTagging", Some("b")), serde_json::json!({"x": 1}));
        assert!(matches!(parse(&odd, a, &regions), Ok(Event::Ignored(_))));
        let null = with_error(&event(a, "us-east-1", "PutBucketTagging", Some("b")), serde_json::Value::Null);
        assert!(matches!(parse(&null, a, &regions), Ok(Event::Bucket { .. })));
        // A failed call needs no bucket name to be ignored rather than set aside as malformed.
        let nameless = with_error(&event(a, "us-east-1", "PutBucketTagging", None), serde_json::json!("NoSuchBucket"));
        assert!(matches!(parse(&nameless, a, &regions), Ok(Event::Ignored(_))));
    }

    /// A lister that answers `names` and counts its calls.
    fn lister<'a>(
        names: &'static [&'static str],
        calls: &'a std::cell::Cell<u32>,
    ) -> impl FnOnce() -> std::future::Ready<Result<Vec<String>, CallError>> + 'a {
        move || {
            calls.set(calls.get() + 1);
            std::future::ready(Ok(names.iter().map(|n| (*n).to_owned()).collect()))
        }
    }

    const T0: UnixMillis = 1_800_000_000_000;

    #[tokio::test]
    async fn only_the_accounts_own_buckets_are_confirmed() {
        let calls = std::cell::Cell::new(0);
        let mut owned = OwnedBuckets::default();
        // Nothing listed yet: the first event lists.
        assert_eq!(owned.confirm("mine", T0, T0 + 1, lister(&["mine"], &calls)).await, Ownership::Owned);
        assert_eq!(calls.get(), 1);
        // A bucket absent from a listing made after its event is not the account's, and
        // deciding so costs no call.
        assert_eq!(owned.confirm("theirs", T0, T0 + 2, lister(&["mine"], &calls)).await, Ownership::NotOwned);
        assert_eq!(owned.confirm("mine", T0, T0 + 3, lister(&["mine"], &calls)).await, Ownership::Owned);
        assert_eq!(calls.get(), 1);
        // An event newer than the listing (a bucket created since) lists again once allowed.
        let later = T0 + MIN_RELIST_INTERVAL_MS + 10;
        assert_eq!(owned.confirm("new", later - 5, later, lister(&["mine", "new"], &calls)).await, Ownership::Owned);
        assert_eq!(calls.get(), 2);
        // A listing that fails decides nothing.
        let failing = || std::future::ready(Err(CallError::Transient("boom".into())));
        let later = later + MIN_RELIST_INTERVAL_MS;
        assert_eq!(owned.confirm("newer", later, later, failing).await, Ownership::Unconfirmed);
    }

    #[tokio::test]
    async fn a_flood_of_foreign_buckets_lists_at_most_once_per_interval() {
        let calls = std::cell::Cell::new(0);
        let mut owned = OwnedBuckets::default();
        let mut verdicts = std::collections::HashMap::new();
        // 10,000 events naming foreign buckets over 100 s, each stamped at its arrival (the
        // worst case: every one is newer than the last listing).
        for i in 0..10_000i64 {
            let now = T0 + i * 10;
            let verdict = owned.confirm(&format!("foreign-{i}"), now, now, lister(&["mine"], &calls)).await;
            *verdicts.entry(format!("{verdict:?}")).or_insert(0) += 1;
            if verdict == Ownership::Unconfirmed {
                let wait = owned.next_listing_in(now);
                assert!(wait > Duration::ZERO && wait <= Duration::from_millis(MIN_RELIST_INTERVAL_MS as u64));
            }
        }
        let ceiling = 100_000 / MIN_RELIST_INTERVAL_MS + 1;
        assert!(i64::from(calls.get()) <= ceiling, "{} listings for 100 s of events: {verdicts:?}", calls.get());
        assert_eq!(verdicts.get("Owned"), None);
        // Retried once the next listing is allowed, each is dropped.
        let after = T0 + 200_000;
        for i in 0..10_000i64 {
            let verdict = owned.confirm(&format!("foreign-{i}"), T0 + i * 10, after, lister(&["mine"], &calls)).await;
            assert_eq!(verdict, Ownership::NotOwned);
        }
        assert!(i64::from(calls.get()) <= ceiling + 1);
    }

    #[tokio::test]
    async fn a_stale_listing_does_not_confirm() {
        let calls = std::cell::Cell::new(0);
        let mut owned = OwnedBuckets::default();
        assert_eq!(owned.confirm("b", T0, T0, lister(&["b"], &calls)).await, Ownership::Owned);
        // Deleted, and maybe someone else's since: after the TTL the cache is asked again.
        let later = T0 + OWNED_CACHE_TTL_MS + 1;
        assert_eq!(owned.confirm("b", later, later, lister(&[], &calls)).await, Ownership::NotOwned);
        assert_eq!(calls.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_supervisor_restarts_a_task_that_panics_or_fails() {
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let backoff = Backoff { initial: Duration::from_millis(10), max: Duration::from_millis(100) };
        let supervised = tokio::spawn(supervise("test task", backoff, {
            let runs = Arc::clone(&runs);
            move || {
                let n = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    match n {
                        0 => panic!("first run panics"),
                        1 => anyhow::bail!("second run fails"),
                        2 => Ok(()),
                        _ => std::future::pending().await,
                    }
                }
            }
        }));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 4, "restarted after a panic, an error and a stop");
        assert!(!supervised.is_finished());
        supervised.abort();
    }
}
