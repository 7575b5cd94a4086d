//! `estate-agent hub`: one process serves many accounts. It assumes a read-only role in each
//! account of its set (listed, or read from AWS Organizations and polled), and runs for each
//! the pipeline a per-account agent runs ([`crate::serve`]): the same protocol, outbox and
//! acknowledgements, over a few HTTP/2 connections that the accounts' streams share.
//!
//! Accounts are kept apart: each has its own credentials, its own AWS retry state (throttling
//! in one account slows that account only) and its own stream; an account whose role cannot be
//! assumed keeps a stream open that names the problem, and never disturbs the others.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use aws_config::identity::IdentityCache;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region as AwsRegion, SdkConfig};
use aws_types::sdk_config::SharedCredentialsProvider;
use tokio::sync::{mpsc, Semaphore};

use estate_common::model::{AccountId, Region};
use estate_common::pb::Hello;
use estate_common::transport::ClientTls;

use crate::aws::{classify, retry_config, timeouts, Clients, RequestCounter};
use crate::connection::{self, ConnectionOptions, Inbound, Link, SharedConnection};
use crate::events::{supervise, Router, Routes, RESTART_BACKOFF};
use crate::outbox::Outbox;
use crate::refresh::AbortOnDrop;
use crate::{identify, serve, Account, Pipeline};

/// Where the hub's accounts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountSource {
    /// `--accounts`: these, for as long as the hub runs.
    Listed(Vec<AccountId>),
    /// AWS Organizations' active accounts, read again every `interval`: as the role
    /// `role_arn` (`EstateOrganizationsReader`), or as the hub itself without one.
    Organizations { role_arn: Option<String>, interval: Duration },
}

#[derive(Debug, Clone)]
pub struct HubOptions {
    pub admin_url: String,
    pub token: Option<String>,
    pub tls: ClientTls,
    pub regions: Vec<Region>,
    pub endpoint_url: Option<String>,
    pub accounts: AccountSource,
    /// The role assumed in each account (`EstateMemberAgent`).
    pub role_name: String,
    pub external_id: Option<String>,
    /// Bucket reads at once over every account.
    pub concurrency: usize,
    /// Bucket reads at once in one account's Region.
    pub account_concurrency: usize,
    pub refresh_interval: Duration,
    pub outbox_capacity: usize,
    pub max_attempts: u32,
    pub head_budget: usize,
    /// Account streams one HTTP/2 connection carries (below the administrator's
    /// `--max-streams-per-connection`).
    pub streams_per_connection: usize,
    /// The central queue of every account's events, read as the hub.
    pub events: Option<crate::events::EventOptions>,
}

/// The first wait before assuming a role that failed again; it doubles up to
/// [`ROLE_RETRY_MAX`]. A role created or fixed later is picked up without a restart.
const ROLE_RETRY_FIRST: Duration = Duration::from_secs(15);
const ROLE_RETRY_MAX: Duration = Duration::from_secs(600);

/// The longest problem a hello carries, in bytes (the administrator refuses a longer one).
const MAX_PROBLEM_BYTES: usize = estate_common::limits::MAX_PROBLEM_BYTES;

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The role ARN of `role_name` in `account`.
pub fn role_arn(account: &AccountId, role_name: &str) -> String {
    format!("arn:aws:iam::{account}:role/{role_name}")
}

/// Runs the hub until the process is stopped.
pub async fn run(options: HubOptions) -> anyhow::Result<()> {
    crate::check_start(&options.admin_url, options.token.as_deref(), &options.tls, &options.regions, "hub")?;
    let home = options.regions[0].clone();
    // One configuration, and so one HTTP client and its connection pool, for every account.
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(AwsRegion::new(home.to_string()))
        .retry_config(retry_config(options.max_attempts, true))
        .timeout_config(timeouts())
        .load()
        .await;
    let routes = options.events.as_ref().map(|_| Arc::new(Routes::default()));
    let hub = Arc::new(Hub {
        pipeline: Pipeline {
            regions: options.regions.clone(),
            concurrency: options.account_concurrency,
            refresh_interval: options.refresh_interval,
            outbox_capacity: options.outbox_capacity,
            head_budget: options.head_budget,
            events: None,
            await_held: true,
            resume: true,
            global_limit: Some(Arc::new(Semaphore::new(options.concurrency))),
            routes: routes.clone(),
        },
        pool: ConnectionPool::new(&options.admin_url, &options.tls, options.streams_per_connection),
        base,
        options,
    });
    tracing::info!(
        regions = ?hub.options.regions,
        role = %hub.options.role_name,
        concurrency = hub.options.concurrency,
        account_concurrency = hub.options.account_concurrency,
        "hub starting"
    );
    if let (Some(options), Some(routes)) = (hub.options.events.clone(), routes) {
        // One consumer for every account: each event goes to the pipeline of the account it
        // names, which confirms and re-reads it as that account.
        let mut sqs = aws_sdk_sqs::config::Builder::from(&hub.base);
        if let Some(url) = &hub.options.endpoint_url {
            sqs = sqs.endpoint_url(url);
        }
        let sqs = aws_sdk_sqs::Client::from_conf(sqs.build());
        let router: Arc<dyn Router> = routes;
        tokio::spawn(supervise("central events consumer", RESTART_BACKOFF, move || {
            crate::events::run(options.clone(), sqs.clone(), Arc::clone(&router))
        }));
    }
    let mut serving: BTreeMap<AccountId, Served> = BTreeMap::new();
    match hub.options.accounts.clone() {
        AccountSource::Listed(accounts) => loop {
            // Again every minute: an account that could not be started is tried again.
            hub.follow(&mut serving, accounts.clone());
            tokio::time::sleep(Duration::from_secs(60)).await;
        },
        AccountSource::Organizations { role_arn, interval } => {
            let organizations = organizations_client(&hub.base, hub.options.endpoint_url.as_deref(), role_arn).await;
            loop {
                match active_accounts(&organizations).await {
                    Ok(accounts) => hub.follow(&mut serving, accounts),
                    // The accounts served go on; the next poll tries again.
                    Err(error) => {
                        tracing::warn!(error = %format!("{error:#}"), "cannot list the organization's accounts")
                    }
                }
                tokio::time::sleep(interval).await;
            }
        }
    }
}

/// What every account of the hub shares.
#[derive(Debug)]
struct Hub {
    options: HubOptions,
    pipeline: Pipeline,
    base: SdkConfig,
    pool: Arc<ConnectionPool>,
}

/// An account being served: dropping it stops everything the account runs.
#[derive(Debug)]
struct Served {
    _task: AbortOnDrop<()>,
}

impl Hub {
    /// Serves exactly `accounts`: starts the new ones and stops those no longer listed.
    fn follow(self: &Arc<Self>, serving: &mut BTreeMap<AccountId, Served>, accounts: Vec<AccountId>) {
        let wanted: std::collections::BTreeSet<AccountId> = accounts.into_iter().collect();
        if let Some(routes) = &self.pipeline.routes {
            routes.serve(wanted.iter().map(ToString::to_string));
        }
        let gone: Vec<AccountId> = serving.keys().filter(|a| !wanted.contains(*a)).cloned().collect();
        for account in gone {
            tracing::info!(%account, "the account left the hub's set (removed, suspended or closed); stopped");
            serving.remove(&account);
        }
        let mut started = 0;
        for account in wanted {
            if serving.contains_key(&account) {
                continue;
            }
            let lease = match self.pool.lease() {
                Ok(lease) => lease,
                // The TLS files could not be read (being rotated?): the next round tries again.
                Err(error) => {
                    tracing::error!(%account, error = %format!("{error:#}"), "cannot connect for the account; trying again later");
                    continue;
                }
            };
            let task = tokio::spawn(Arc::clone(self).serve_account(account.clone(), lease));
            serving.insert(account, Served { _task: AbortOnDrop(task) });
            started += 1;
        }
        if started > 0 {
            tracing::info!(started, serving = serving.len(), "serving accounts");
        }
    }

    /// Serves one account for as long as the task lives: assumes its role, then runs its
    /// pipeline; while the role cannot be assumed, keeps a stream open that says why, and
    /// tries again with a growing wait.
    async fn serve_account(self: Arc<Self>, account_id: AccountId, lease: Lease) {
        let mut wait = ROLE_RETRY_FIRST;
        let mut pipeline = self.pipeline.clone();
        loop {
            match self.open(&account_id).await {
                Ok((clients, canonical_user_id)) => {
                    let account = Account {
                        account_id: account_id.clone(),
                        canonical_user_id,
                        clients,
                        link: Link::Shared(Arc::clone(&lease.connection)),
                        token: self.options.token.clone(),
                    };
                    if let Err(error) = serve(account, &pipeline).await {
                        tracing::error!(account = %account_id, error = %format!("{error:#}"), "the account's pipeline ended");
                    }
                    tokio::time::sleep(ROLE_RETRY_FIRST).await;
                }
                Err(problem) => {
                    // Its events may have gone to the dead-letter queue meanwhile: once it can
                    // be read, it is read in full rather than resumed.
                    pipeline.resume = false;
                    tracing::warn!(account = %account_id, %problem, retry_in = ?wait, "cannot read the account");
                    let reported = self.report_problem(&account_id, problem, &lease);
                    tokio::select! {
                        () = reported => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(ROLE_RETRY_MAX);
                }
            }
        }
    }

    /// The account's clients, as its role, and its canonical user ID; or why not.
    async fn open(&self, account_id: &AccountId) -> Result<(Arc<Clients>, String), String> {
        let role = role_arn(account_id, &self.options.role_name);
        let mut sts = self.base.to_builder();
        if let Some(url) = &self.options.endpoint_url {
            sts = sts.endpoint_url(url);
        }
        let mut provider = AssumeRoleProvider::builder(role.clone()).session_name("estate-hub").configure(&sts.build());
        if let Some(id) = &self.options.external_id {
            provider = provider.external_id(id);
        }
        let sts_requests = RequestCounter::default();
        let provider =
            SharedCredentialsProvider::new(Counted { inner: provider.build().await, requests: sts_requests.clone() });
        // The credentials are cached for every client of the account and assumed again
        // before they expire.
        let config = self
            .base
            .to_builder()
            .credentials_provider(provider.clone())
            .identity_cache(IdentityCache::lazy().build())
            .build();
        let clients = Arc::new(Clients::from_config(
            config,
            self.options.endpoint_url.clone(),
            Some(account_id.as_str()),
            sts_requests,
        ));
        let home = &self.options.regions[0];
        let described = |error: anyhow::Error| {
            let text = format!("cannot read the account as `{role}`: {error:#}");
            cut(text, MAX_PROBLEM_BYTES)
        };
        let (answered, canonical_user_id) = match identify(&clients, home).await {
            Ok(identified) => identified,
            // Said in STS's words when the role is what failed (the SDK's error for a call
            // whose credentials failed names the call only).
            Err(error) => return Err(described(credentials_problem(&provider).await.unwrap_or(error))),
        };
        if answered != *account_id {
            return Err(described(anyhow::anyhow!("its credentials are account `{answered}`'s")));
        }
        Ok((clients, canonical_user_id))
    }

    /// A stream that says only why the account cannot be read; it runs until dropped.
    async fn report_problem(&self, account_id: &AccountId, problem: String, lease: &Lease) {
        let hello = Hello {
            account_id: account_id.to_string(),
            regions: self.options.regions.iter().map(ToString::to_string).collect(),
            agent_version: estate_common::VERSION.to_owned(),
            problem,
            ..Hello::default()
        };
        let (refresh_requests, _ignored) = mpsc::channel(1);
        let (held, _ignored_too) = mpsc::channel(1);
        connection::run(
            ConnectionOptions {
                link: Link::Shared(Arc::clone(&lease.connection)),
                token: self.options.token.clone(),
                hello,
            },
            Arc::new(Outbox::new(16)),
            Inbound { refresh_requests, held },
        )
        .await;
    }
}

/// A credentials provider whose every call (an AssumeRole) is counted with the account's STS
/// requests.
#[derive(Debug)]
struct Counted {
    inner: AssumeRoleProvider,
    requests: RequestCounter,
}

impl aws_credential_types::provider::ProvideCredentials for Counted {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        self.requests.add("AssumeRole");
        self.inner.provide_credentials()
    }
}

/// Why `provider` gives no credentials, with the code and message of the refused AssumeRole;
/// `None` when it gives them.
async fn credentials_problem(provider: &SharedCredentialsProvider) -> Option<anyhow::Error> {
    use aws_credential_types::provider::ProvideCredentials;
    use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    let error = provider.provide_credentials().await.err()?;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<SdkError<AssumeRoleError>>() {
            if let Some(code) = refused.code() {
                return Some(anyhow::anyhow!("sts:AssumeRole: {code}: {}", refused.message().unwrap_or_default()));
            }
            // A response STS's error format does not describe (a proxy's, say): its status
            // and the start of its body, on one line.
            let response = refused.raw_response();
            let status = response.map_or(0, |r| r.status().as_u16());
            let body = response.and_then(|r| r.body().bytes()).map(String::from_utf8_lossy).unwrap_or_default();
            let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(300).collect();
            return Some(anyhow::anyhow!("sts:AssumeRole: HTTP {status}: {body}"));
        }
        source = e.source();
    }
    Some(anyhow::anyhow!("sts:AssumeRole: {error}"))
}

/// The Organizations client: as `role_arn` when given, as the hub otherwise.
async fn organizations_client(
    base: &SdkConfig,
    endpoint_url: Option<&str>,
    role_arn: Option<String>,
) -> aws_sdk_organizations::Client {
    let mut config = base.to_builder();
    if let Some(url) = endpoint_url {
        config = config.endpoint_url(url);
    }
    if let Some(role) = role_arn {
        let plain = config.build();
        let provider = AssumeRoleProvider::builder(role).session_name("estate-hub").configure(&plain);
        config = plain.into_builder().credentials_provider(SharedCredentialsProvider::new(provider.build().await));
    }
    // Organizations is served from us-east-1 whatever the hub's home Region.
    let config = aws_sdk_organizations::config::Builder::from(&config.build()).region(AwsRegion::new("us-east-1"));
    aws_sdk_organizations::Client::from_conf(config.build())
}

/// The organization's accounts that are ACTIVE: suspended, closing and removed accounts are
/// not served.
async fn active_accounts(client: &aws_sdk_organizations::Client) -> anyhow::Result<Vec<AccountId>> {
    use aws_sdk_organizations::types::AccountStatus;
    let mut accounts = Vec::new();
    let mut pages = client.list_accounts().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(classify).context("organizations:ListAccounts")?;
        for account in page.accounts() {
            if account.status() != Some(&AccountStatus::Active) {
                continue;
            }
            match account.id().map(AccountId::parse) {
                Some(Ok(id)) => accounts.push(id),
                _ => {
                    tracing::warn!(id = ?account.id(), "organizations:ListAccounts named an account without a valid ID; skipped")
                }
            }
        }
    }
    Ok(accounts)
}

/// A few HTTP/2 connections, each carrying the streams of up to `per_connection` accounts.
#[derive(Debug)]
struct ConnectionPool {
    admin_url: String,
    tls: ClientTls,
    per_connection: usize,
    /// Each connection and how many accounts use it.
    connections: Mutex<Vec<(Arc<SharedConnection>, usize)>>,
}

/// One account's place on a connection, given back when the account stops.
#[derive(Debug)]
struct Lease {
    pool: Arc<ConnectionPool>,
    index: usize,
    connection: Arc<SharedConnection>,
}

impl ConnectionPool {
    fn new(admin_url: &str, tls: &ClientTls, per_connection: usize) -> Arc<Self> {
        Arc::new(Self {
            admin_url: admin_url.to_owned(),
            tls: tls.clone(),
            per_connection: per_connection.max(1),
            connections: Mutex::new(Vec::new()),
        })
    }

    /// A place on the first connection with room, or on a new one.
    fn lease(self: &Arc<Self>) -> anyhow::Result<Lease> {
        let mut connections = self.connections.lock().expect("pool lock");
        let index = match connections.iter().position(|(_, used)| *used < self.per_connection) {
            Some(index) => index,
            None => {
                connections.push((Arc::new(SharedConnection::new(&self.admin_url, &self.tls)?), 0));
                connections.len() - 1
            }
        };
        connections[index].1 += 1;
        Ok(Lease { pool: Arc::clone(self), index, connection: Arc::clone(&connections[index].0) })
    }

    /// Connections made so far, and the accounts on each.
    #[cfg(test)]
    fn usage(&self) -> Vec<usize> {
        self.connections.lock().expect("pool lock").iter().map(|(_, used)| *used).collect()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut connections) = self.pool.connections.lock() {
            connections[self.index].1 -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accounts fill one connection before the next is made, and a place given back is taken
    /// again before any new connection.
    #[tokio::test]
    async fn accounts_share_connections_up_to_the_limit() {
        let pool = ConnectionPool::new("http://127.0.0.1:1", &ClientTls::default(), 3);
        let mut leases: Vec<Lease> = (0..7).map(|_| pool.lease().unwrap()).collect();
        assert_eq!(pool.usage(), [3, 3, 1]);
        assert!(Arc::ptr_eq(&leases[0].connection, &leases[2].connection));
        assert!(!Arc::ptr_eq(&leases[2].connection, &leases[3].connection));
        leases.remove(1);
        assert_eq!(pool.usage(), [2, 3, 1]);
        let again = pool.lease().unwrap();
        assert_eq!((again.index, pool.usage()), (0, vec![3, 3, 1]));
    }

    /// A problem fits the administrator's limit in bytes, whatever characters it holds.
    #[test]
    fn problems_are_cut_to_the_byte_limit_at_a_character_boundary() {
        let long = "é".repeat(1000);
        let cut_text = cut(long, MAX_PROBLEM_BYTES);
        assert!(cut_text.len() <= MAX_PROBLEM_BYTES && cut_text.len() >= MAX_PROBLEM_BYTES - 1);
        assert!(cut_text.chars().all(|c| c == 'é'));
        assert_eq!(cut("short".to_owned(), MAX_PROBLEM_BYTES), "short");
    }

    #[test]
    fn role_arns_name_the_account() {
        let account = AccountId::parse("123456789012").unwrap();
        assert_eq!(role_arn(&account, "EstateMemberAgent"), "arn:aws:iam::123456789012:role/EstateMemberAgent");
    }
}
