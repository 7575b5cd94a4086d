//! Read-side views over the store: members with their Regions and freshness, statistics with
//! the earliest lastUpdated, and bucket metadata pages.
//! The posture report walks the index in key order, at most `POSTURE_SCAN_LIMIT` buckets per
//! page under the read lock. The organization's `lastUpdated` is the earliest of the members
//! with a complete inventory; those pending are counted apart.

use std::collections::BTreeSet;

use estate_common::macie::{
    self, BucketStatistics, ConnectionState, PostureBucket, PostureReason, RegionStatus, Timestamp,
};
use estate_common::model::{AccountId, StoredKey};

use crate::read::query::Query;
use crate::state::members;
use crate::state::store::{MemberLive, State};

/// Every account Estate should see: the organization's, those with an agent configured,
/// and those that have ever reported.
pub fn member_accounts(state: &State) -> BTreeSet<AccountId> {
    state.membership.account_names(&state.org).into_iter().cloned().collect()
}

/// The member as ListMembers shows it; `live`: who holds a report stream of it now, none
/// when it is not connected, and its reader's problem ([`crate::state::store::Store::member_live`]).
pub fn member(state: &State, account_id: &AccountId, live: MemberLive) -> macie::Member {
    let MemberLive { reported_by, problem } = live;
    let record = state.membership.members.get(account_id);
    let regions = record
        .map_or(&[][..], |r| &r.regions)
        .iter()
        .map(|region| {
            let scope = state.scope(account_id, region).cloned().unwrap_or_default();
            let (done, total) = state.progress(account_id, region).unwrap_or((0, 0));
            RegionStatus {
                region: region.to_string(),
                last_updated: scope.last_updated.map(Timestamp),
                generation: scope.generation,
                bucket_count: scope.bucket_count,
                refresh_done: done,
                refresh_total: total,
            }
        })
        .collect();
    macie::Member {
        account_id: account_id.to_string(),
        regions,
        connection_state: if reported_by.is_empty() {
            ConnectionState::Disconnected
        } else {
            ConnectionState::Connected
        },
        last_contact: Timestamp::from_millis(record.map_or(0, |r| r.last_contact)),
        last_updated: state.membership.last_updated(account_id).map(Timestamp),
        agent_version: record.map(|r| r.agent_version.clone()).unwrap_or_default(),
        canonical_user_id: record.map(|r| r.canonical_user_id.clone()).unwrap_or_default(),
        bucket_count: state.stats.account(account_id).bucket_count.max(0) as u64,
        relationship_status: state.membership.status(&state.org, account_id),
        reported_by,
        problem,
    }
}

/// Statistics of the organization, or of one account. The organization's `lastUpdated` is the
/// earliest over the accounts that completed a refresh of every Region (Macie's "accounts it has
/// data for"); those pending or without an agent are counted in `membersPending` and
/// `membersWithoutAgent`. One account's is `None` until it has completed one.
pub fn statistics(state: &State, account_id: Option<&AccountId>) -> BucketStatistics {
    let Some(account) = account_id else { return state.organization_statistics() };
    let mut stats = state.stats.account(account);
    match state.membership.standing(&state.org, account) {
        Some(members::Standing::NoAgent) => (stats.members_without_agent, stats.members_pending) = (1, 1),
        Some(members::Standing::Pending) => stats.members_pending = 1,
        Some(members::Standing::UpdatedAt(at)) => stats.last_updated = Some(Timestamp(at)),
        None => {}
    }
    stats
}

pub fn describe(state: &State, query: &Query) -> (Vec<macie::BucketMetadata>, Option<String>) {
    let (entries, token) = query.run(&state.index);
    let buckets = entries
        .into_iter()
        .map(|e| {
            let explanation = state.policy_explanation(&e.facts.key.stored());
            crate::judge::metadata(&e.facts, &e.judgement, state.accounts.get(&e.facts.key.account_id), explanation)
        })
        .collect();
    (buckets, token)
}

/// At most this many buckets are looked at under the read lock for one posture page; a page
/// that stops there carries a token to go on from (it may hold fewer buckets than asked).
const POSTURE_SCAN_LIMIT: usize = 50_000;

/// One page of the posture report, in key order: buckets of `account_id` (or every account)
/// after `after` (an encoded bucket key), exposed for `reason` (or any reason), and the token
/// of the next page.
pub fn posture(
    state: &State,
    account_id: Option<&AccountId>,
    reason: Option<PostureReason>,
    after: Option<&StoredKey>,
    page_size: usize,
) -> (Vec<PostureBucket>, Option<StoredKey>) {
    use std::ops::Bound;
    let range = account_id.map(StoredKey::account_range);
    let start = match (after, &range) {
        (Some(after), _) => Bound::Excluded(after.clone()),
        (None, Some(range)) => Bound::Included(range.start.clone()),
        (None, None) => Bound::Unbounded,
    };
    let mut out = Vec::new();
    let mut last: Option<&StoredKey> = None;
    for (scanned, (key, entry)) in state.index.range((start, Bound::Unbounded)).enumerate() {
        if range.as_ref().is_some_and(|r| !r.contains(key)) {
            return (out, None);
        }
        if scanned == POSTURE_SCAN_LIMIT || out.len() == page_size {
            return (out, last.cloned());
        }
        last = Some(key);
        let reasons = entry.judgement.posture_reasons();
        if reasons.is_empty() || reason.is_some_and(|r| !reasons.contains(&r)) {
            continue;
        }
        let j = &entry.judgement;
        let k = &entry.facts.key;
        out.push(PostureBucket {
            account_id: k.account_id.to_string(),
            region: k.region.to_string(),
            bucket_name: k.bucket_name.clone(),
            reasons,
            effective_permission: j.effective_permission,
            shared_access: j.shared_access,
            shared_with_accounts: j.shared_with_accounts.clone(),
            shared_internally_with: j.shared_internal.clone(),
        });
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::OrgView;
    use crate::state::store::{Op, Store};
    use crate::state::testing::{hello, scope_complete};
    use estate_common::macie::MemberStatus;

    /// Suspended accounts are not waited for; an account that reported but left the
    /// organization is Removed and still counts while it reports; one with no agent is pending.
    #[test]
    fn member_statuses_and_pending_members() {
        let dir = tempfile::tempdir().unwrap();
        let [a, b, c, gone]: [AccountId; 4] =
            ["111111111111", "222222222222", "333333333333", "444444444444"].map(|id| id.parse().unwrap());
        let (a, b, c, gone) = (&a, &b, &c, &gone);
        let org = OrgView::new(Some("o-abc123".into()), [a.clone(), b.clone(), c.clone()].into(), Vec::new());
        let store = Store::open(dir.path(), org, BTreeSet::new(), None).unwrap();
        let complete_at = scope_complete;
        let complete = |account: &AccountId| complete_at(account, 1, 1_000);
        store.commit(vec![hello(a), complete(a), hello(gone), complete(gone)], 5_000).unwrap();
        let state = store.read();
        let status = |account: &AccountId| member(&state, account, MemberLive::default()).relationship_status;
        assert_eq!(
            [status(a), status(b), status(gone)],
            [MemberStatus::Enabled, MemberStatus::NoAgent, MemberStatus::Removed]
        );
        let stats = statistics(&state, None);
        assert_eq!(
            (stats.members_without_agent, stats.members_pending, stats.last_updated),
            (2, 2, Some(Timestamp(1_000))),
            "a and `gone` have data; b and c are counted apart"
        );
        assert_eq!(stats, store.organization_statistics(), "the published statistics are the committed ones");
        assert_eq!(statistics(&state, Some(b)).members_without_agent, 1);
        drop(state);

        let organization = |suspended: &[&AccountId]| Op::Organization {
            organization_id: Some("o-abc123".into()),
            accounts: [a.clone(), b.clone(), c.clone()].into(),
            suspended: suspended.iter().map(|s| (*s).clone()).collect(),
            paths: Vec::new(),
        };
        store.commit(vec![organization(&[b, c])], 6_000).unwrap();
        let state = store.read();
        assert_eq!(member(&state, b, MemberLive::default()).relationship_status, MemberStatus::AccountSuspended);
        let stats = statistics(&state, None);
        assert_eq!((stats.members_without_agent, stats.members_pending), (0, 0));
        assert_eq!(stats.last_updated, Some(Timestamp(1_000)), "every account that should report has");
        assert_eq!(stats, store.organization_statistics());
        drop(state);

        // The earliest moves on when its account refreshes again, and only once every account
        // at that time has moved on (`gone` reported, then left the organization: it counts).
        store.commit(vec![complete_at(a, 2, 3_000)], 7_000).unwrap();
        assert_eq!(store.organization_statistics().last_updated, Some(Timestamp(1_000)), "`gone` is still at 1,000");
        store.commit(vec![complete_at(gone, 2, 4_000)], 8_000).unwrap();
        assert_eq!(store.organization_statistics().last_updated, Some(Timestamp(3_000)));
        assert_eq!(store.verify_statistics(), Vec::<String>::new(), "the kept counts equal a recount");

        // An organization that drops every account: those that never reported are no longer
        // waited for, exactly as a recount says.
        let empty = Op::Organization {
            organization_id: Some("o-abc123".into()),
            accounts: BTreeSet::new(),
            suspended: BTreeSet::new(),
            paths: Vec::new(),
        };
        store.commit(vec![empty], 9_000).unwrap();
        assert_eq!(store.verify_statistics(), Vec::<String>::new());
        let stats = store.organization_statistics();
        assert_eq!((stats.members_without_agent, stats.members_pending), (0, 0), "b and c are gone");
    }
}
