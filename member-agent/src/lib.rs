//! The member agent: reads S3 bucket metadata in its account and Regions and streams it to
//! the administrator, at start-up, on a daily cycle and whenever the administrator asks.

pub mod aws;
pub mod collect;
pub mod connection;
pub mod events;
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

use estate_common::model::{AccountId, Region};
use estate_common::pb::{Hello, RefreshRequest};

use crate::aws::{classify, Clients};
use crate::connection::ConnectionOptions;
use crate::outbox::Outbox;
use crate::refresh::Refresher;

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
    if options.regions.is_empty() {
        bail!("give at least one Region with `--regions`");
    }
    if options.token.is_none() {
        tracing::warn!("no `--token`: only an administrator in `--insecure-dev` mode will accept this agent");
    }
    // Checks the URL and reads the TLS files now, so a mistake stops the agent at start.
    estate_common::transport::endpoint(&options.admin_url, &options.tls)?;
    if options.token.is_some() && estate_common::transport::is_remote_plaintext(&options.admin_url) {
        tracing::warn!(
            admin = %options.admin_url,
            "the token goes to a remote administrator in PLAINTEXT; use an `https://` URL"
        );
    }
    let home = options.regions[0].clone();
    let clients = Arc::new(Clients::new(&home, options.endpoint_url.clone(), options.max_attempts).await);
    let identity = clients.sts.get_caller_identity().send().await.map_err(classify).context("STS GetCallerIdentity")?;
    let account_id = AccountId::parse(identity.account().context("GetCallerIdentity returned no account")?)
        .context("STS GetCallerIdentity")?;
    let owner = clients
        .s3(&home)
        .list_buckets()
        .max_buckets(1)
        .send()
        .await
        .map_err(classify)
        .context("`s3:ListAllMyBuckets` (for the canonical user ID)")?;
    let canonical_user_id = owner.owner().and_then(|o| o.id()).unwrap_or_default().to_owned();
    tracing::info!(account = %account_id, regions = ?options.regions, "agent starting");

    let outbox = Arc::new(Outbox::new(options.outbox_capacity));
    let (refresh_tx, mut refresh_rx) = mpsc::channel::<RefreshRequest>(16);
    let hello = Hello {
        account_id: account_id.to_string(),
        regions: options.regions.iter().map(ToString::to_string).collect(),
        canonical_user_id,
        agent_version: estate_common::VERSION.to_owned(),
        // Filled in for each stream from the outbox.
        completed: Vec::new(),
    };
    tokio::spawn(connection::run(
        ConnectionOptions {
            admin_url: options.admin_url.clone(),
            tls: options.tls.clone(),
            token: options.token.clone(),
            hello,
        },
        Arc::clone(&outbox),
        refresh_tx,
    ));

    let refresher = Arc::new(Refresher::new(
        Arc::clone(&clients),
        Arc::clone(&outbox),
        account_id,
        options.regions.clone(),
        options.concurrency,
        options.head_budget,
    ));
    if let Some(events) = options.events.clone() {
        let (clients, refresher, outbox) = (Arc::clone(&clients), Arc::clone(&refresher), Arc::clone(&outbox));
        let state = Arc::new(tokio::sync::Mutex::new(events::ConsumerState::default()));
        tokio::spawn(events::supervise("events consumer", events::RESTART_BACKOFF, move || {
            let (clients, refresher, outbox) = (Arc::clone(&clients), Arc::clone(&refresher), Arc::clone(&outbox));
            events::run(events.clone(), clients, refresher, outbox, Arc::clone(&state))
        }));
    }
    let mut next_full = Instant::now();
    loop {
        let (requested, count_objects) = tokio::select! {
            _ = tokio::time::sleep_until(next_full) => (Vec::new(), true),
            Some(request) = refresh_rx.recv() => {
                if !request.object_refresh_bucket.is_empty() {
                    // Object refreshes run beside the bucket refreshes.
                    let refresher = Arc::clone(&refresher);
                    tokio::spawn(async move {
                        refresher.refresh_objects(&request.object_refresh_region, &request.object_refresh_bucket).await
                    });
                    continue;
                }
                let count_objects = request.count_objects || request.regions.is_empty();
                (request.regions, count_objects)
            }
        };
        let full = requested.is_empty();
        // A task of its own: a panic in a refresh (each bucket's is caught as that bucket's
        // failure already) is a failed refresh, never the end of the agent.
        let refresh = tokio::spawn({
            let refresher = Arc::clone(&refresher);
            async move { refresher.refresh(&requested, count_objects).await }
        });
        let outcome = refresh.await.unwrap_or_else(|joined| Err(anyhow::anyhow!("the refresh task failed: {joined}")));
        match outcome {
            Ok(()) if full => next_full = Instant::now() + options.refresh_interval,
            Ok(()) => {}
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "refresh failed; retrying in a minute");
                next_full = next_full.min(Instant::now() + Duration::from_secs(60));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn location_constraints() {
        assert_eq!(refresh::location_to_region(None), "us-east-1");
        assert_eq!(refresh::location_to_region(Some("")), "us-east-1");
        assert_eq!(refresh::location_to_region(Some("EU")), "eu-west-1");
        assert_eq!(refresh::location_to_region(Some("ap-south-1")), "ap-south-1");
    }
}
