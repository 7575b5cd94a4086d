//! The organization from AWS Organizations (DescribeOrganization, ListAccounts, and the OU
//! tree through ListRoots, ListOrganizationalUnitsForParent, ListAccountsForParent), polled so
//! that accounts joining or leaving re-judge every affected bucket. When the administrator's
//! credentials do not allow it, the configuration file's organization stays in force.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_organizations::error::ProvideErrorMetadata;
use aws_sdk_organizations::types::AccountStatus;

use estate_common::model::AccountId;

use crate::ingest::Committer;
use crate::state::store::Op;

/// What AWS Organizations says of the organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: String,
    /// Every account, suspended ones included (they are still the organization's).
    pub accounts: BTreeSet<AccountId>,
    /// Accounts whose status is SUSPENDED or PENDING_CLOSURE.
    pub suspended: BTreeSet<AccountId>,
    /// The path (`o-.../r-.../ou-.../`) of every root or OU that holds an account: the values
    /// `aws:PrincipalOrgPaths` carries for the organization's principals.
    pub paths: Vec<String>,
}

/// AWS allows five levels of OUs under a root; deeper answers are not trusted.
const MAX_OU_DEPTH: usize = 5;
/// AWS's quota on OUs per organization (1,000 by default, 2,000 at most): a walk past it stops.
const MAX_PARENTS: usize = 2_000;

fn describe(e: &dyn ProvideErrorMetadata) -> String {
    format!("{}: {}", e.code().unwrap_or("error"), e.message().unwrap_or("no message"))
}

/// Reads the organization: its ID, its accounts with their status, and its OU paths.
pub async fn fetch(client: &aws_sdk_organizations::Client) -> anyhow::Result<Organization> {
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
    let mut suspended = BTreeSet::new();
    let mut pages = client.list_accounts().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| anyhow::anyhow!("`organizations:ListAccounts` failed: {}", describe(&e)))?;
        for account in page.accounts() {
            let Some(account_id) = account.id() else { continue };
            let account_id = AccountId::parse(account_id).map_err(|e| {
                anyhow::anyhow!("`organizations:ListAccounts` returned an account that is not one: {e}")
            })?;
            if matches!(account.status(), Some(AccountStatus::Suspended | AccountStatus::PendingClosure)) {
                suspended.insert(account_id.clone());
            }
            accounts.insert(account_id);
        }
    }
    let paths = paths(client, &id).await?;
    Ok(Organization { id, accounts, suspended, paths })
}

/// Walks the OU tree from every root: the path of each root or OU with an account in it.
async fn paths(client: &aws_sdk_organizations::Client, organization_id: &str) -> anyhow::Result<Vec<String>> {
    let mut parents: Vec<(String, String, usize)> = Vec::new();
    let mut pages = client.list_roots().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| anyhow::anyhow!("`organizations:ListRoots` failed: {}", describe(&e)))?;
        for root_id in page.roots().iter().filter_map(|root| root.id()) {
            parents.push((root_id.to_owned(), format!("{organization_id}/{root_id}/"), 0));
        }
    }
    let mut paths = Vec::new();
    let mut visited = 0;
    while let Some((parent, path, depth)) = parents.pop() {
        visited += 1;
        anyhow::ensure!(visited <= MAX_PARENTS, "the organization has more than {MAX_PARENTS} roots and OUs");
        let holds_accounts = !client
            .list_accounts_for_parent()
            .parent_id(&parent)
            .max_results(1)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("`organizations:ListAccountsForParent` failed: {}", describe(&e)))?
            .accounts()
            .is_empty();
        if holds_accounts {
            paths.push(path.clone());
        }
        if depth == MAX_OU_DEPTH {
            continue;
        }
        let mut pages = client.list_organizational_units_for_parent().parent_id(&parent).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                anyhow::anyhow!("`organizations:ListOrganizationalUnitsForParent` failed: {}", describe(&e))
            })?;
            for ou_id in page.organizational_units().iter().filter_map(|ou| ou.id()) {
                parents.push((ou_id.to_owned(), format!("{path}{ou_id}/"), depth + 1));
            }
        }
    }
    paths.sort();
    Ok(paths)
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
        Ok(org) => {
            let op = Op::Organization {
                organization_id: Some(org.id),
                accounts: org.accounts,
                suspended: org.suspended,
                paths: org.paths,
            };
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
