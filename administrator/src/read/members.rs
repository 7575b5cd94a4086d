//! Members and accounts as an organization's dashboard pages them: what state each member is
//! in (counted over every member, each count a filter), a search by account ID, a sort, and
//! keyset pages whose tokens stay valid while rows change; accounts ordered by exposure.
//!
//! A page costs one pass over the members (or every account Estate should see) under the read
//! lock, and builds the full view of only the rows it returns.

use std::cmp::Ordering;

use estate_common::macie::{self, BucketStatistics, MemberStatus};
use estate_common::model::{AccountId, UnixMillis};

use crate::read::views;
use crate::state::stats::PostureCounts;
use crate::state::store::{MemberLive, State};

/// A member with an agent and no complete refresh for this long is stale (the dashboard's
/// highlight uses the same 26 hours).
pub const STALE_AFTER_MS: i64 = 26 * 3600 * 1000;

/// A refused report counts against its member for this long.
pub const REFUSED_FOR_MS: i64 = 24 * 3600 * 1000;

/// What needs attention about a member; a member can be in several states at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// A report stream is open now.
    Connected,
    /// An agent reported once, and no stream is open now.
    Disconnected,
    /// An agent reported, and no refresh of every Region completed within 26 hours.
    Stale,
    /// In the organization, and no agent has ever reported for it.
    NoAgent,
    /// The administrator refused one of its agent's reports within the last 24 hours.
    Refused,
    /// Its agent or hub cannot read it (the problem its hello named: a role it cannot assume),
    /// or some of its buckets could not be read (their encryption is unknown).
    Erroring,
}

impl MemberState {
    pub const ALL: [MemberState; 6] = [
        MemberState::Connected,
        MemberState::Disconnected,
        MemberState::Stale,
        MemberState::NoAgent,
        MemberState::Refused,
        MemberState::Erroring,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MemberState::Connected => "connected",
            MemberState::Disconnected => "disconnected",
            MemberState::Stale => "stale",
            MemberState::NoAgent => "noAgent",
            MemberState::Refused => "refused",
            MemberState::Erroring => "erroring",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == text)
    }
}

/// What a members page is ordered by (ties by account ID, ascending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberSort {
    AccountId,
    /// The earliest Region's last complete refresh; never is oldest.
    LastUpdated,
    LastContact,
    BucketCount,
}

impl MemberSort {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "accountId" => MemberSort::AccountId,
            "lastUpdated" => MemberSort::LastUpdated,
            "lastContact" => MemberSort::LastContact,
            "bucketCount" => MemberSort::BucketCount,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            MemberSort::AccountId => "accountId",
            MemberSort::LastUpdated => "lastUpdated",
            MemberSort::LastContact => "lastContact",
            MemberSort::BucketCount => "bucketCount",
        }
    }
}

/// An account ID as a sort value (twelve digits fit an i64).
fn account_value(account: &AccountId) -> i64 {
    account.parse().unwrap_or(0)
}

/// The name of an order in its tokens: the sort and its direction.
fn order_tag(sort: &str, descending: bool) -> String {
    format!("{sort}.{}", if descending { "desc" } else { "asc" })
}

/// Where a page starts: the sort values and account of the last row of the page before, and
/// (in its token) the order they belong to: a token of another sort or direction is refused.
/// Values of a descending order are stored negated (they are counts, times and account IDs,
/// far from `i64::MIN`), so that every order is ascending here; ties go by account ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PageKey {
    values: Vec<i64>,
    account: AccountId,
}

impl PageKey {
    fn new(values: &[i64], descending: bool, account: &AccountId) -> Self {
        let values = values.iter().map(|v| if descending { v.saturating_neg() } else { *v }).collect();
        Self { values, account: account.clone() }
    }

    /// `order:v1,v2,...:account`, opaque to clients.
    fn token(&self, order: &str) -> String {
        let values: Vec<String> = self.values.iter().map(i64::to_string).collect();
        format!("{order}:{}:{}", values.join(","), self.account)
    }

    /// A token this module wrote for `order` with `arity` values, or None.
    fn parse(token: &str, order: &str, arity: usize) -> Option<Self> {
        let rest = token.strip_prefix(order)?.strip_prefix(':')?;
        let (values, account) = rest.split_once(':')?;
        let values: Vec<i64> = if values.is_empty() {
            vec![]
        } else {
            values.split(',').map(|v| v.parse().ok()).collect::<Option<_>>()?
        };
        (values.len() == arity).then_some(())?;
        Some(Self { values, account: AccountId::parse(account.to_owned()).ok()? })
    }
}

/// One page of rows in key order, after `after`: the rows, the offset of the first in the
/// whole ordered list, and the key to go on from.
fn page<T>(mut rows: Vec<(PageKey, T)>, after: Option<&PageKey>, size: usize) -> (Vec<T>, usize, Option<PageKey>) {
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let start = after.map_or(0, |after| rows.partition_point(|(key, _)| key.cmp(after) != Ordering::Greater));
    let mut taken: Vec<(PageKey, T)> = rows.into_iter().skip(start).take(size + 1).collect();
    let next = if taken.len() > size {
        taken.truncate(size);
        taken.last().map(|(key, _)| key.clone())
    } else {
        None
    };
    (taken.into_iter().map(|(_, row)| row).collect(), start, next)
}

pub struct MemberQuery {
    pub state: Option<MemberState>,
    /// A part of the account ID (empty: every member).
    pub search: String,
    pub sort: MemberSort,
    pub descending: bool,
    pub page_size: usize,
    pub after: Option<PageKey>,
}

impl MemberQuery {
    fn order(&self) -> String {
        order_tag(self.sort.name(), self.descending)
    }

    /// The page token of this query's order, or None when it is not one.
    pub fn parse_token(&self, token: &str) -> Option<PageKey> {
        PageKey::parse(token, &self.order(), 1)
    }

    /// The token of the page after `key`.
    pub fn token(&self, key: &PageKey) -> String {
        key.token(&self.order())
    }
}

/// A member as the page shows it.
pub struct MemberRow {
    pub member: macie::Member,
    pub states: Vec<MemberState>,
    /// When and why the last report was refused, within [`REFUSED_FOR_MS`].
    pub refusal: Option<(UnixMillis, String)>,
}

pub struct MemberPage {
    pub rows: Vec<MemberRow>,
    /// Members matching the state and the search.
    pub matching: usize,
    /// Every member Estate should see.
    pub all: usize,
    /// Members per state, over every member ([`MemberState::ALL`] order).
    pub counts: [usize; 6],
    pub offset: usize,
    pub next: Option<PageKey>,
}

/// What a page needs from outside the state: which accounts have a stream open, and the last
/// refusal of each (both in memory only: [`crate::state::store::Store::liveness`]).
pub trait Liveness {
    /// Who holds a report stream of the account now (empty: not connected).
    fn reporters(&self, account_id: &str) -> Vec<String>;
    fn connected(&self, account_id: &str) -> bool {
        !self.reporters(account_id).is_empty()
    }
    fn last_refusal(&self, account_id: &str) -> Option<(UnixMillis, String)>;
    /// Why the account's reader cannot read it, as its last hello said.
    fn problem(&self, account_id: &str) -> Option<String>;
}

impl Liveness for crate::state::store::Liveness {
    fn reporters(&self, account_id: &str) -> Vec<String> {
        self.connected.get(account_id).cloned().unwrap_or_default()
    }

    fn connected(&self, account_id: &str) -> bool {
        self.connected.contains_key(account_id)
    }

    fn last_refusal(&self, account_id: &str) -> Option<(UnixMillis, String)> {
        self.refusals.get(account_id).cloned()
    }

    fn problem(&self, account_id: &str) -> Option<String> {
        self.problems.get(account_id).map(|(_, problem)| problem.clone())
    }
}

/// The states of one member at `now`.
fn states_of(
    state: &State,
    live: &dyn Liveness,
    account: &AccountId,
    stats: &BucketStatistics,
    now: UnixMillis,
) -> (Vec<MemberState>, Option<(UnixMillis, String)>) {
    let mut states = Vec::new();
    let status = state.membership.status(&state.org, account);
    let has_agent = state.membership.members.contains_key(account);
    // A suspended account is not expected to report: its silence needs no attention.
    let expected = status != MemberStatus::AccountSuspended;
    if live.connected(account) {
        states.push(MemberState::Connected);
    } else if has_agent && expected {
        states.push(MemberState::Disconnected);
    }
    if has_agent
        && expected
        && state.membership.last_updated(account).is_none_or(|at| now.saturating_sub(at) > STALE_AFTER_MS)
    {
        states.push(MemberState::Stale);
    }
    if status == MemberStatus::NoAgent {
        states.push(MemberState::NoAgent);
    }
    let refusal = live.last_refusal(account).filter(|(at, _)| now.saturating_sub(*at) <= REFUSED_FOR_MS);
    if refusal.is_some() {
        states.push(MemberState::Refused);
    }
    // A reader that cannot read the account, or buckets it could not read.
    if live.problem(account).is_some() || stats.bucket_count_by_encryption_type.unknown > 0 {
        states.push(MemberState::Erroring);
    }
    (states, refusal)
}

/// One page of members.
pub fn members(state: &State, live: &dyn Liveness, query: &MemberQuery, now: UnixMillis) -> MemberPage {
    let accounts = views::member_accounts(state);
    let mut counts = [0usize; 6];
    let mut rows = Vec::new();
    for account in &accounts {
        let stats = state.stats.account(account);
        let (states, refusal) = states_of(state, live, account, &stats, now);
        for s in &states {
            counts[MemberState::ALL.iter().position(|x| x == s).expect("every state is in ALL")] += 1;
        }
        if query.state.is_some_and(|wanted| !states.contains(&wanted)) || !account.as_str().contains(&query.search) {
            continue;
        }
        let value = match query.sort {
            MemberSort::AccountId => account_value(account),
            MemberSort::LastUpdated => state.membership.last_updated(account).unwrap_or(0),
            MemberSort::LastContact => state.membership.members.get(account).map_or(0, |r| r.last_contact),
            MemberSort::BucketCount => stats.bucket_count,
        };
        let key = PageKey::new(&[value], query.descending, account);
        rows.push((key, (account, states, refusal)));
    }
    let matching = rows.len();
    let (taken, offset, next) = page(rows, query.after.as_ref(), query.page_size);
    let rows = taken
        .into_iter()
        .map(|(account, states, refusal)| MemberRow {
            member: views::member(
                state,
                account,
                MemberLive { reported_by: live.reporters(account), problem: live.problem(account) },
            ),
            states,
            refusal,
        })
        .collect();
    MemberPage { rows, matching, all: accounts.len(), counts, offset, next }
}

/// What an accounts page is ordered by (ties by account ID, ascending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountSort {
    /// Public buckets, then buckets shared outside, then all buckets.
    Exposure,
    Buckets,
    Public,
    SharedExternally,
    AccountId,
}

impl AccountSort {
    const NAMES: [(AccountSort, &'static str); 5] = [
        (AccountSort::Exposure, "exposure"),
        (AccountSort::Buckets, "bucketCount"),
        (AccountSort::Public, "public"),
        (AccountSort::SharedExternally, "sharedExternally"),
        (AccountSort::AccountId, "accountId"),
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(_, name)| *name == text).map(|(sort, _)| *sort)
    }

    fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(sort, _)| *sort == self).map_or("", |(_, name)| name)
    }

    fn arity(self) -> usize {
        match self {
            AccountSort::Exposure => 3,
            _ => 1,
        }
    }

    /// The page token of this order, or None when it is not one.
    pub fn parse_token(self, descending: bool, token: &str) -> Option<PageKey> {
        PageKey::parse(token, &order_tag(self.name(), descending), self.arity())
    }

    /// The token of the page after `key`.
    pub fn token(self, descending: bool, key: &PageKey) -> String {
        key.token(&order_tag(self.name(), descending))
    }
}

pub struct AccountRow {
    pub account_id: AccountId,
    pub statistics: BucketStatistics,
    pub posture: PostureCounts,
}

pub struct AccountPage {
    pub rows: Vec<AccountRow>,
    /// Every account Estate should see.
    pub total: usize,
    pub offset: usize,
    pub next: Option<PageKey>,
}

/// One page of accounts with their statistics; `descending` applies to the sort's values.
pub fn accounts(
    state: &State,
    sort: AccountSort,
    descending: bool,
    page_size: usize,
    after: Option<&PageKey>,
) -> AccountPage {
    let all = views::member_accounts(state);
    let rows: Vec<_> = all
        .iter()
        .map(|account| {
            let s = state.stats.account(account);
            let values: Vec<i64> = match sort {
                AccountSort::Exposure => vec![
                    s.bucket_count_by_effective_permission.publicly_accessible,
                    s.bucket_count_by_shared_access_type.external,
                    s.bucket_count,
                ],
                AccountSort::Buckets => vec![s.bucket_count],
                AccountSort::Public => vec![s.bucket_count_by_effective_permission.publicly_accessible],
                AccountSort::SharedExternally => vec![s.bucket_count_by_shared_access_type.external],
                AccountSort::AccountId => vec![account_value(account)],
            };
            (PageKey::new(&values, descending, account), account)
        })
        .collect();
    let (taken, offset, next) = page(rows, after, page_size);
    let rows = taken
        .into_iter()
        .map(|account| AccountRow {
            account_id: account.clone(),
            statistics: views::statistics(state, Some(account)),
            posture: state.stats.posture(Some(account)),
        })
        .collect();
    AccountPage { rows, total: all.len(), offset, next }
}

/// The `limit` most exposed accounts of the posture report: most public buckets first, then
/// most shared outside (as the summary ranks them), then most exposed for any reason (where
/// the summary takes the bucket count); most first.
pub fn most_exposed(state: &State, limit: usize) -> Vec<(String, PostureCounts)> {
    use estate_common::macie::PostureReason::{Public, SharedExternally};
    let rank = |c: &PostureCounts| (c.count(Some(Public)), c.count(Some(SharedExternally)), c.exposed);
    let mut accounts: Vec<(String, PostureCounts)> =
        state.stats.posture_accounts().filter(|(_, c)| c.exposed > 0).map(|(a, c)| (a.to_owned(), *c)).collect();
    accounts.sort_unstable_by(|a, b| rank(&b.1).cmp(&rank(&a.1)).then_with(|| a.0.cmp(&b.0)));
    accounts.truncate(limit);
    accounts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(values: &[i64], descending: bool, account: &str) -> PageKey {
        PageKey::new(values, descending, &AccountId::parse(account.to_owned()).unwrap())
    }

    #[test]
    fn tokens_round_trip_and_refuse_what_they_did_not_write() {
        let k = key(&[3, -1, 40], true, "111111111111");
        let exposure = AccountSort::Exposure;
        assert_eq!(exposure.parse_token(true, &exposure.token(true, &k)), Some(k.clone()));
        assert_eq!(exposure.parse_token(false, &exposure.token(true, &k)), None, "the other direction");
        assert_eq!(AccountSort::Public.parse_token(true, &exposure.token(true, &k)), None, "another sort");
        let one = key(&[7], false, "222222222222");
        let buckets = AccountSort::Buckets;
        assert_eq!(buckets.parse_token(false, &buckets.token(false, &one)), Some(one.clone()));
        assert_eq!(AccountSort::Public.parse_token(false, &buckets.token(false, &one)), None, "same arity, other sort");
        for bad in [
            "",
            ":",
            "bucketCount.asc:1,x:111111111111",
            "bucketCount.asc:1:nope",
            "bucketCount.asc:111111111111",
            "bucketCount.asc:1,2:111111111111",
        ] {
            assert_eq!(buckets.parse_token(false, bad), None, "{bad}");
        }
    }

    #[test]
    fn pages_cover_every_row_once_in_order_even_when_descending() {
        let accounts: Vec<String> = (0..7).map(|i| format!("{:012}", 100 + i)).collect();
        // Buckets per account: ties on 5 are ordered by account ID.
        let buckets = [5, 1, 5, 9, 0, 5, 2];
        let rows = || -> Vec<(PageKey, String)> {
            accounts.iter().zip(buckets).map(|(a, b)| (key(&[b], true, a), a.clone())).collect()
        };
        let mut seen = Vec::new();
        let mut after = None;
        let mut offsets = Vec::new();
        loop {
            let (taken, offset, next) = page(rows(), after.as_ref(), 3);
            offsets.push(offset);
            seen.extend(taken);
            match next {
                Some(next) => after = Some(PageKey::parse(&next.token("t"), "t", 1).unwrap()),
                None => break,
            }
        }
        let expected = [
            "000000000103",
            "000000000100",
            "000000000102",
            "000000000105",
            "000000000106",
            "000000000101",
            "000000000104",
        ];
        assert_eq!(seen, expected);
        assert_eq!(offsets, [0, 3, 6]);
    }

    #[test]
    fn a_page_after_a_removed_row_goes_on_from_where_it_was() {
        let rows: Vec<(PageKey, u8)> = (1..=5u8).map(|i| (key(&[i64::from(i)], false, "111111111111"), i)).collect();
        let after = key(&[2], false, "111111111111");
        let without_three: Vec<_> = rows.into_iter().filter(|(_, i)| *i != 3).collect();
        let (taken, offset, next) = page(without_three, Some(&after), 10);
        assert_eq!(taken, [4, 5]);
        assert_eq!(offset, 2);
        assert!(next.is_none());
    }

    struct Live {
        connected: Vec<&'static str>,
        refused: Vec<(&'static str, UnixMillis)>,
        problems: Vec<&'static str>,
    }

    impl Liveness for Live {
        fn reporters(&self, account_id: &str) -> Vec<String> {
            if self.connected.contains(&account_id) {
                vec!["agent `test`".to_owned()]
            } else {
                Vec::new()
            }
        }
        fn last_refusal(&self, account_id: &str) -> Option<(UnixMillis, String)> {
            self.refused.iter().find(|(a, _)| *a == account_id).map(|(_, at)| (*at, "`bucket`: too many".to_owned()))
        }
        fn problem(&self, account_id: &str) -> Option<String> {
            self.problems.contains(&account_id).then(|| "AssumeRole: AccessDenied".to_owned())
        }
    }

    /// Each state from what decides it: an open stream, a stream gone, a refresh older than 26
    /// hours, no agent, a refusal within 24 hours (an older one no longer counts); counts are
    /// over every member whatever the filter, and a filter keeps exactly its state's members.
    #[test]
    fn members_are_counted_and_filtered_by_state() {
        use crate::judge::OrgView;
        use crate::state::store::Store;
        use crate::state::testing::{hello, scope_complete};
        use std::collections::BTreeSet;

        const HOUR: i64 = 3600 * 1000;
        let now: UnixMillis = 100 * HOUR;
        let ids = ["111111111111", "222222222222", "333333333333", "444444444444"];
        let [fresh, old, _never, idle]: [AccountId; 4] = ids.map(|id| id.parse().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let org = OrgView::new(None, ids.iter().map(|a| a.parse().unwrap()).collect(), Vec::new());
        let store = Store::open(dir.path(), org, BTreeSet::new(), None).unwrap();
        let complete = |account: &AccountId, read_at: i64| scope_complete(account, 1, read_at);
        // `never` has no agent; `idle` reported once and never completed a refresh.
        store
            .commit(
                vec![
                    hello(&fresh),
                    complete(&fresh, now - HOUR),
                    hello(&old),
                    complete(&old, now - 27 * HOUR),
                    hello(&idle),
                ],
                now,
            )
            .unwrap();
        // `idle`'s hub cannot assume its role.
        let live = Live {
            connected: vec![ids[0]],
            refused: vec![(ids[0], now - 25 * HOUR), (ids[1], now - HOUR)],
            problems: vec![ids[3]],
        };
        let state = store.read();
        let query = |wanted: Option<MemberState>| MemberQuery {
            state: wanted,
            search: String::new(),
            sort: MemberSort::AccountId,
            descending: false,
            page_size: 10,
            after: None,
        };
        let all = members(&state, &live, &query(None), now);
        let states: Vec<Vec<&str>> = all.rows.iter().map(|r| r.states.iter().map(|s| s.name()).collect()).collect();
        assert_eq!(
            states,
            [
                vec!["connected"],
                vec!["disconnected", "stale", "refused"],
                vec!["noAgent"],
                vec!["disconnected", "stale", "erroring"]
            ]
        );
        assert_eq!(all.counts, [1, 2, 2, 1, 1, 1]);
        assert_eq!(all.rows[3].member.problem.as_deref(), Some("AssumeRole: AccessDenied"));
        assert_eq!(all.rows[0].member.problem, None);
        assert_eq!((all.all, all.matching), (4, 4));
        for wanted in MemberState::ALL {
            let page = members(&state, &live, &query(Some(wanted)), now);
            let expected = all.rows.iter().filter(|r| r.states.contains(&wanted)).count();
            assert_eq!(
                (page.rows.len(), page.matching, page.counts),
                (expected, expected, all.counts),
                "{}",
                wanted.name()
            );
        }
        let searched = members(&state, &live, &MemberQuery { search: "3333".into(), ..query(None) }, now);
        assert_eq!(searched.rows.iter().map(|r| r.member.account_id.as_str()).collect::<Vec<_>>(), [ids[2]]);
        let by_update = members(&state, &live, &MemberQuery { sort: MemberSort::LastUpdated, ..query(None) }, now);
        let order: Vec<&str> = by_update.rows.iter().map(|r| r.member.account_id.as_str()).collect();
        assert_eq!(order, [ids[2], ids[3], ids[1], ids[0]], "never updated first, then oldest");
        let descending = members(&state, &live, &MemberQuery { descending: true, ..query(None) }, now);
        let order: Vec<&str> = descending.rows.iter().map(|r| r.member.account_id.as_str()).collect();
        assert_eq!(order, [ids[3], ids[2], ids[1], ids[0]], "account IDs, descending");
    }

    #[test]
    fn states_and_sorts_parse_their_names_only() {
        for s in MemberState::ALL {
            assert_eq!(MemberState::parse(s.name()), Some(s));
        }
        assert_eq!(MemberState::parse("Connected"), None);
        assert_eq!(MemberSort::parse("lastContact"), Some(MemberSort::LastContact));
        assert_eq!(AccountSort::parse("exposure"), Some(AccountSort::Exposure));
        assert_eq!(AccountSort::parse("size"), None);
    }
}
