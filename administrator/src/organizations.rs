//! The organization from AWS Organizations (DescribeOrganization, ListAccounts), polled so
//! that accounts joining or leaving re-judge every affected bucket. When the administrator's
//! credentials do not allow it, the configuration file's organization stays in force.

use std::collections::BTreeSet;

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_organizations::error::ProvideErrorMetadata;

use crate::ingest::Committer;
use crate::store::Op;

/// Reads the organization: its ID and its active accounts.
pub async fn fetch(client: &aws_sdk_organizations::Client) -> anyhow::Result<(String, BTreeSet<String>)> {
    let describe = |e: &dyn ProvideErrorMetadata| {
        format!("{}: {}", e.code().unwrap_or("error"), e.message().unwrap_or("no message"))
    };
    let organization = client
        .describe_organization()
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("`organizations:DescribeOrganization` failed: {}", describe(&e)))?;
    let id = organization
        .organization()
        .and_then(|o| o.id())
        .ok_or_else(|| anyhow::anyhow!("DescribeOrganization returned no organization ID"))?
        .to_owned();
    let mut accounts = BTreeSet::new();
    let mut token = None;
    loop {
        let page = client
            .list_accounts()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("`organizations:ListAccounts` failed: {}", describe(&e)))?;
        // Every listed account is the organization's, suspended ones included.
        accounts.extend(page.accounts().iter().filter_map(|a| a.id()).map(str::to_owned));
        match page.next_token() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    Ok((id, accounts))
}

pub async fn client(endpoint_url: Option<&str>) -> aws_sdk_organizations::Client {
    let config = aws_config::defaults(BehaviorVersion::latest()).region(Region::new("us-east-1")).load().await;
    let mut builder = aws_sdk_organizations::config::Builder::from(&config);
    if let Some(url) = endpoint_url {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_organizations::Client::from_conf(builder.build())
}

/// Polls Organizations every `interval`, applying changes to the store. Returns after the
/// first attempt, saying whether it succeeded (the poller keeps running either way).
pub async fn start(committer: Committer, client: aws_sdk_organizations::Client, interval: Duration) -> bool {
    let first = poll_once(&committer, &client).await;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            poll_once(&committer, &client).await;
        }
    });
    first
}

async fn poll_once(committer: &Committer, client: &aws_sdk_organizations::Client) -> bool {
    match fetch(client).await {
        Ok((id, accounts)) => {
            let op = Op::Organization { organization_id: Some(id), accounts, paths: Vec::new() };
            match committer.commit(vec![op]).await {
                Ok(()) => true,
                Err(error) => {
                    tracing::error!(%error, "the organization could not be stored");
                    false
                }
            }
        }
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "cannot read AWS Organizations; keeping the organization as it was");
            false
        }
    }
}
