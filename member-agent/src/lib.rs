//! The member agent: reads S3 bucket metadata in its account and Regions and streams it to
//! the administrator, at start-up, on a daily cycle and whenever the administrator asks.

pub mod aws;
pub mod collect;
pub mod connection;
pub mod events;
pub mod hub;
pub mod limit;
pub mod objects;
pub mod outbox;
pub mod refresh;
pub mod report;
#[cfg(test)]
mod testing;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::mpsc;
use tokio::time::Instant;

use estate_common::model::{now_ms, AccountId, Region, UnixMillis};
use estate_common::pb::{Held, Hello, RefreshRequest};

use crate::aws::{classify, Clients};
use crate::connection::{ConnectionOptions, Inbound, Link};
use crate::outbox::Outbox;
use crate::refresh::{AbortOnDrop, Refresher};

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub admin_url: String,
    pub token: Option<String>,
    /// TLS material for an `https://` administrator.
    pub tls: estate_common::transport::ClientTls,
    pub regions: Vec<Region>,
    pub endpoint_url: Option<String>,
    pub concurrency: usize,
    pub refresh_interval: Duration,
    pub outbox_capacity: usize,
    pub max_attempts: u32,
    pub head_budget: usize,
    pub events: Option<events::EventOptions>,
}

/// Parses `90`, `90s`, `15m`, `24h` or `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let value: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 90s, 15m, 24h or 1d"))?;
    let seconds = match unit {
        "" | "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        "d" => value * 86_400,
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (use s, m, h or d)")),
    };
    if seconds == 0 {
        return Err("the interval must be positive".to_owned());
    }
    Ok(Duration::from_secs(seconds))
}

/// Runs the agent until the process is stopped.
pub async fn run(options: AgentOptions) -> anyhow::Result<()> {
    check_start(&options.admin_url, options.token.as_deref(), &options.tls, &options.regions, "agent")?;
    let home = options.regions[0].clone();
    let clients = Arc::new(Clients::new(&home, options.endpoint_url.clone(), options.max_attempts).await);
    let (account_id, canonical_user_id) = identify(&clients, &home).await?;
    tracing::info!(account = %account_id, regions = ?options.regions, "agent starting");
    let pipeline = Pipeline {
        regions: options.regions.clone(),
        concurrency: options.concurrency,
        refresh_interval: options.refresh_interval,
        outbox_capacity: options.outbox_capacity,
        head_budget: options.head_budget,
        events: options.events.clone(),
        await_held: false,
        resume: false,
        global_limit: None,
        routes: None,
    };
    let link = Link::Own { admin_url: options.admin_url.clone(), tls: options.tls.clone() };
    let account = Account { account_id, canonical_user_id, clients, link, token: options.token.clone() };
    serve(account, &pipeline).await
}

/// What an agent or a hub (`who`) checks before it starts: Regions given, the administrator's
/// URL and TLS files readable (so that a mistake stops it at start), and warnings for a
/// missing token or a token sent in plaintext to another machine.
pub fn check_start(
    admin_url: &str,
    token: Option<&str>,
    tls: &estate_common::transport::ClientTls,
    regions: &[Region],
    who: &str,
) -> anyhow::Result<()> {
    if regions.is_empty() {
        bail!("give at least one Region with `--regions`");
    }
    if token.is_none() {
        tracing::warn!("no `--token`: only an administrator in `--insecure-dev` mode will accept this {who}");
    }
    estate_common::transport::endpoint(admin_url, tls)?;
    if token.is_some() && estate_common::transport::is_remote_plaintext(admin_url) {
        tracing::warn!(admin = %admin_url, "the token goes to a remote administrator in PLAINTEXT; use an `https://` URL");
    }
    Ok(())
}

/// Who the clients' credentials are: the account (STS GetCallerIdentity) and its canonical
/// user ID (the owner ListBuckets names).
pub async fn identify(clients: &Clients, home: &Region) -> anyhow::Result<(AccountId, String)> {
    let identity = clients.sts.get_caller_identity().send().await.map_err(classify).context("STS GetCallerIdentity")?;
    let account_id = AccountId::parse(identity.account().context("GetCallerIdentity returned no account")?)
        .context("STS GetCallerIdentity")?;
    let owner = clients
        .s3(home)
        .list_buckets()
        .max_buckets(1)
        .send()
        .await
        .map_err(classify)
        .context("`s3:ListAllMyBuckets` (for the canonical user ID)")?;
    Ok((account_id, owner.owner().and_then(|o| o.id()).unwrap_or_default().to_owned()))
}

/// How every account's pipeline runs: the agent's settings, one account's or a hub's.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub regions: Vec<Region>,
    /// Buckets read at once per Region of the account.
    pub concurrency: usize,
    pub refresh_interval: Duration,
    pub outbox_capacity: usize,
    pub head_budget: usize,
    pub events: Option<events::EventOptions>,
    /// Read nothing until the administrator accepts the stream and says what it holds (a hub:
    /// an account the administrator refuses costs no S3 request). Needs an administrator that
    /// sends `Held`: every one that knows hubs does.
    pub await_held: bool,
    /// With `await_held`: skip the refresh at start when the administrator holds a recent
    /// complete one of every Region (a restarted hub does not read every account again).
    pub resume: bool,
    /// Bucket reads at once over every account (a hub's global limit).
    pub global_limit: Option<Arc<tokio::sync::Semaphore>>,
    /// A hub's central event queue, which routes each account's events to its pipeline.
    pub routes: Option<Arc<events::Routes>>,
}

/// One account, ready to be served: who it is, its clients, and its way to the administrator.
#[derive(Debug)]
pub struct Account {
    pub account_id: AccountId,
    pub canonical_user_id: String,
    pub clients: Arc<Clients>,
    pub link: Link,
    pub token: Option<String>,
}

/// How long a pipeline that waits for the administrator to accept its stream waits between
/// warnings.
const HELD_WARNING: Duration = Duration::from_secs(300);

/// When the first full refresh is due, from what the administrator holds: later when every
/// Region has a completed refresh younger than `interval` and none is under way (the next one
/// is due `interval` after the oldest); now otherwise.
pub fn first_refresh_in(held: &Held, regions: &[Region], interval: Duration, now: UnixMillis) -> Duration {
    let mut oldest = UnixMillis::MAX;
    for region in regions {
        let Some(scope) = held.scopes.iter().find(|s| *region == s.region) else { return Duration::ZERO };
        if scope.refreshing || scope.last_updated_ms <= 0 {
            return Duration::ZERO;
        }
        oldest = oldest.min(scope.last_updated_ms.min(now));
    }
    let age = Duration::from_millis(u64::try_from(now - oldest).unwrap_or(0));
    interval.saturating_sub(age)
}

/// Serves one account until the future is dropped: its stream to the administrator, its
/// refreshes (at start unless resumed, on the cycle, when asked) and its events. Every task it
/// starts ends with it.
pub async fn serve(account: Account, pipeline: &Pipeline) -> anyhow::Result<()> {
    let Account { account_id, canonical_user_id, clients, link, token } = account;
    let mut tasks = tokio::task::JoinSet::new();
    let outbox = Arc::new(Outbox::new(pipeline.outbox_capacity));
    let (refresh_tx, mut refresh_rx) = mpsc::channel::<RefreshRequest>(16);
    let (held_tx, mut held_rx) = mpsc::channel::<Held>(1);
    let hello = Hello {
        account_id: account_id.to_string(),
        regions: pipeline.regions.iter().map(ToString::to_string).collect(),
        canonical_user_id,
        agent_version: estate_common::VERSION.to_owned(),
        // Filled in for each stream from the outbox.
        completed: Vec::new(),
        problem: String::new(),
    };
    tasks.spawn(connection::run(
        ConnectionOptions { link, token, hello },
        Arc::clone(&outbox),
        Inbound { refresh_requests: refresh_tx, held: held_tx },
    ));

    let mut refresher = Refresher::new(
        Arc::clone(&clients),
        Arc::clone(&outbox),
        account_id.clone(),
        pipeline.regions.clone(),
        pipeline.concurrency,
        pipeline.head_budget,
    );
    refresher.global_limit = pipeline.global_limit.clone();
    let refresher = Arc::new(refresher);
    let account_events =
        Arc::new(events::AccountEvents::new(Arc::clone(&clients), Arc::clone(&refresher), Arc::clone(&outbox)));
    if let Some(options) = pipeline.events.clone() {
        // The account's own queue, read as the account.
        let sqs = clients.sqs();
        let router: Arc<dyn events::Router> = Arc::new(events::OneAccount(Arc::clone(&account_events)));
        tasks.spawn(events::supervise("events consumer", events::RESTART_BACKOFF, move || {
            events::run(options.clone(), sqs.clone(), router.clone())
        }));
    }
    let mut next_full = Instant::now();
    if pipeline.await_held {
        // Nothing is read before the administrator accepts the account's stream.
        let held = loop {
            match tokio::time::timeout(HELD_WARNING, held_rx.recv()).await {
                Ok(Some(held)) => break held,
                Ok(None) => anyhow::bail!("the stream's task ended"),
                Err(_) => tracing::warn!(
                    account = %account_id,
                    waited = ?HELD_WARNING,
                    "the administrator has not accepted this account's stream yet; nothing is read until it does"
                ),
            }
        };
        tracing::info!(account = %account_id, "the administrator accepted the account's stream");
        // What the administrator holds counts as completed: should it later lose it (restored
        // from an older copy), the next hello says so and it asks for those Regions again.
        outbox.seed_completed(held.scopes.iter().filter(|s| !s.refreshing).map(|s| (s.region.clone(), s.generation)));
        if pipeline.resume {
            let wait = first_refresh_in(&held, &pipeline.regions, pipeline.refresh_interval, now_ms());
            if !wait.is_zero() {
                tracing::info!(account = %account_id, next_refresh_in = ?wait, "the administrator holds a recent refresh of every Region; resuming");
            }
            next_full = Instant::now() + wait;
        }
    }
    // A hub's central queue: its consumer hands this account's events here from now on.
    let _routed = pipeline.routes.as_ref().map(|routes| routes.ready(account_id.as_str(), account_events));
    loop {
        // Finished object refreshes.
        while tasks.try_join_next().is_some() {}
        let (requested, count_objects) = tokio::select! {
            _ = tokio::time::sleep_until(next_full) => (Vec::new(), true),
            Some(request) = refresh_rx.recv() => {
                if !request.object_refresh_bucket.is_empty() {
                    // Object refreshes run beside the bucket refreshes.
                    let refresher = Arc::clone(&refresher);
                    tasks.spawn(async move {
                        refresher.refresh_objects(&request.object_refresh_region, &request.object_refresh_bucket).await
                    });
                    continue;
                }
                let count_objects = request.count_objects || request.regions.is_empty();
                (request.regions, count_objects)
            }
            // Later hellos' answers (reconnections) change nothing.
            Some(_) = held_rx.recv() => continue,
        };
        let full = requested.is_empty();
        // A task of its own: a panic in a refresh (each bucket's is caught as that bucket's
        // failure already) is a failed refresh, never the end of the agent.
        let refresh = AbortOnDrop(tokio::spawn({
            let refresher = Arc::clone(&refresher);
            async move { refresher.refresh(&requested, count_objects).await }
        }));
        let mut refresh = refresh;
        let outcome =
            (&mut refresh.0).await.unwrap_or_else(|joined| Err(anyhow::anyhow!("the refresh task failed: {joined}")));
        match outcome {
            Ok(()) if full => next_full = Instant::now() + pipeline.refresh_interval,
            Ok(()) => {}
            Err(error) => {
                tracing::error!(account = %account_id, error = %format!("{error:#}"), "refresh failed; retrying in a minute");
                next_full = next_full.min(Instant::now() + Duration::from_secs(60));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use estate_common::pb::HeldScope;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("h").is_err());
    }

    /// A restarted hub resumes only when every Region it serves has a complete refresh younger
    /// than the interval and none is under way; the next is due an interval after the oldest.
    #[test]
    fn a_refresh_at_start_is_skipped_only_when_every_region_is_recent() {
        let regions: Vec<Region> = ["us-east-1", "eu-west-1"].map(|r| r.parse().unwrap()).to_vec();
        let scope = |region: &str, at: i64, refreshing: bool| HeldScope {
            region: region.to_owned(),
            generation: 1,
            last_updated_ms: at,
            refreshing,
        };
        let hour = Duration::from_secs(3600);
        let now = 10 * 3_600_000;
        let held = |scopes: Vec<HeldScope>| Held { scopes };
        let recent = held(vec![scope("us-east-1", now - 600_000, false), scope("eu-west-1", now - 1_200_000, false)]);
        assert_eq!(first_refresh_in(&recent, &regions, hour, now), Duration::from_secs(40 * 60), "after the oldest");
        let one_missing = held(vec![scope("us-east-1", now - 600_000, false)]);
        assert_eq!(first_refresh_in(&one_missing, &regions, hour, now), Duration::ZERO);
        let never = held(vec![scope("us-east-1", now, false), scope("eu-west-1", 0, false)]);
        assert_eq!(first_refresh_in(&never, &regions, hour, now), Duration::ZERO);
        let under_way = held(vec![scope("us-east-1", now, false), scope("eu-west-1", now, true)]);
        assert_eq!(first_refresh_in(&under_way, &regions, hour, now), Duration::ZERO, "a refresh cut short");
        let old = held(vec![scope("us-east-1", now - 2 * 3_600_000, false), scope("eu-west-1", now, false)]);
        assert_eq!(first_refresh_in(&old, &regions, hour, now), Duration::ZERO);
        // A time ahead of the agent's clock counts as now, never as a longer wait.
        let ahead = held(vec![scope("us-east-1", now + 3_600_000, false), scope("eu-west-1", now, false)]);
        assert_eq!(first_refresh_in(&ahead, &regions, hour, now), hour);
    }

    #[test]
    fn location_constraints() {
        assert_eq!(refresh::location_to_region(None), "us-east-1");
        assert_eq!(refresh::location_to_region(Some("")), "us-east-1");
        assert_eq!(refresh::location_to_region(Some("EU")), "eu-west-1");
        assert_eq!(refresh::location_to_region(Some("ap-south-1")), "ap-south-1");
    }
}
