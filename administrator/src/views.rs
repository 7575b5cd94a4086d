//! Read-side views over the store: members with their Regions and freshness, statistics with
//! the earliest lastUpdated, and bucket metadata pages.

use std::collections::BTreeSet;

use estate_common::macie::{self, BucketStatistics, ConnectionState, RegionStatus, Timestamp};
use estate_common::model::{is_account_id, UnixMillis};

use crate::error::ServiceError;
use crate::judge;
use crate::query::Query;
use crate::store::State;

/// The earliest last completed refresh over the member's Regions (`None` before the first).
fn member_last_updated(state: &State, account_id: &str, regions: &[String]) -> Option<UnixMillis> {
    regions
        .iter()
        .filter_map(|r| state.scopes.get(&(account_id.to_owned(), r.clone())).and_then(|s| s.last_updated))
        .min()
}

/// Every account that has an agent configured or has ever reported.
pub fn member_accounts(state: &State, configured: &BTreeSet<String>) -> BTreeSet<String> {
    configured.iter().cloned().chain(state.members.keys().cloned()).collect()
}

pub fn member(state: &State, account_id: &str) -> macie::Member {
    let record = state.members.get(account_id).cloned().unwrap_or_default();
    let regions = record
        .regions
        .iter()
        .map(|region| {
            let scope = state.scopes.get(&(account_id.to_owned(), region.clone())).cloned().unwrap_or_default();
            let (done, total) = state.progress.get(&(account_id.to_owned(), region.clone())).copied().unwrap_or((0, 0));
            RegionStatus {
                region: region.clone(),
                last_updated: scope.last_updated.map(Timestamp),
                generation: scope.generation,
                bucket_count: scope.bucket_count,
                refresh_done: done,
                refresh_total: total,
            }
        })
        .collect();
    let connected = state.connections.get(account_id).copied().unwrap_or(0) > 0;
    macie::Member {
        account_id: account_id.to_owned(),
        regions,
        connection_state: if connected { ConnectionState::Connected } else { ConnectionState::Disconnected },
        last_contact: Timestamp::from_millis(record.last_contact),
        last_updated: member_last_updated(state, account_id, &record.regions).map(Timestamp),
        agent_version: record.agent_version,
        canonical_user_id: record.canonical_user_id,
        bucket_count: state.stats.account(account_id).bucket_count.max(0) as u64,
    }
}

pub fn statistics(state: &State, account_id: Option<&str>) -> Result<BucketStatistics, ServiceError> {
    match account_id {
        Some(account) => {
            if !is_account_id(account) {
                return Err(ServiceError::BadAccountId(account.to_owned()));
            }
            let mut stats = state.stats.account(account);
            let regions = state.members.get(account).map(|m| m.regions.clone()).unwrap_or_default();
            stats.last_updated = member_last_updated(state, account, &regions).map(Timestamp);
            Ok(stats)
        }
        None => {
            let mut stats = state.stats.total();
            stats.last_updated = state
                .members
                .values()
                .filter_map(|m| member_last_updated(state, &m.account_id, &m.regions))
                .min()
                .map(Timestamp);
            Ok(stats)
        }
    }
}

pub fn describe(state: &State, query: &Query) -> (Vec<macie::BucketMetadata>, Option<String>) {
    let (entries, token) = query.run(&state.index);
    let buckets = entries
        .into_iter()
        .map(|e| {
            let explanation = state.policy_explanation(&e.facts.key.encode());
            judge::metadata(&e.facts, &e.judgement, state.accounts.get(&e.facts.key.account_id), explanation)
        })
        .collect();
    (buckets, token)
}
