//! `InventoryService`: DescribeBuckets (which, as Macie's, asks for a refresh of metadata none
//! arrived for in `--describe-refresh-after`), GetBucketStatistics, ListMembers, GetMember.
//! Also RefreshInventory (at most once per scope per `--min-refresh-interval`),
//! RefreshObjectMetadata (once per bucket per window, `ObjectRefreshLimiter`, bounded and in
//! memory: each grant costs the member S3 calls), ForgetMember and GetPosture.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tonic::{Request, Response, Status};

use estate_common::model::{AccountId, BucketKey, Region, StoredKey};
use estate_common::pb::{self, inventory_service_server::InventoryService};

use crate::api::auth::Authenticator;
use crate::api::error::ServiceError;
use crate::api::grpc::directory::AgentDirectory;
use crate::ingest::Committer;
use crate::read::query::{Criterion, Query};
use crate::read::views;
use crate::state::store::{self, Op, Store};
use estate_common::model::now_ms;

#[derive(Debug, Clone)]
pub struct InventoryServiceImpl {
    pub store: Arc<Store>,
    pub auth: Authenticator,
    pub directory: Arc<AgentDirectory>,
    /// For the one change a client may make: forgetting an account.
    pub committer: Committer,
    /// When a refresh of each scope was last requested (in memory: a restart allows one).
    pub refresh_requested: Arc<Mutex<HashMap<(AccountId, Region), i64>>>,
    /// At most one requested refresh per scope in this window (Macie: five minutes).
    pub min_refresh_interval_ms: i64,
    /// DescribeBuckets asks for a refresh of the Regions not refreshed (completed or asked) in
    /// this window, as Macie's refreshes metadata none arrived for in five minutes; 0: never.
    pub describe_refresh_after_ms: i64,
    /// When DescribeBuckets last looked for such Regions: at most once a second, whatever the
    /// rate of queries.
    pub last_describe_sweep: Arc<std::sync::atomic::AtomicI64>,
    /// The most values one criterion may list.
    pub max_criterion_values: usize,
    /// When each bucket's objects were last asked for (`RefreshObjectMetadata`).
    pub object_refreshes: Arc<ObjectRefreshLimiter>,
}

/// `RefreshObjectMetadata` of one bucket is granted at most once in this window: each grant
/// makes the member's agent list the bucket's objects, S3 calls the member pays for, and an
/// operator's script in a loop must not turn that into a bill.
pub const OBJECT_REFRESH_INTERVAL_MS: i64 = 60_000;

/// The most buckets [`ObjectRefreshLimiter`] remembers: entries older than the window are
/// pruned when it is full, and while it is full of recent ones new buckets are refused, so a
/// loop over millions of names cannot grow it without bound.
pub const MAX_OBJECT_REFRESHES_REMEMBERED: usize = 100_000;

/// One `RefreshObjectMetadata` per bucket per [`OBJECT_REFRESH_INTERVAL_MS`], in memory (a
/// restart allows one more).
#[derive(Debug)]
pub struct ObjectRefreshLimiter {
    granted: Mutex<HashMap<BucketKey, i64>>,
    interval_ms: i64,
    capacity: usize,
}

impl Default for ObjectRefreshLimiter {
    fn default() -> Self {
        Self::new(OBJECT_REFRESH_INTERVAL_MS, MAX_OBJECT_REFRESHES_REMEMBERED)
    }
}

impl ObjectRefreshLimiter {
    pub fn new(interval_ms: i64, capacity: usize) -> Self {
        Self { granted: Mutex::new(HashMap::new()), interval_ms, capacity }
    }

    /// Grants a refresh of `key` at `now`, or says when one may be asked again.
    fn grant(&self, key: &BucketKey, now: i64) -> Result<(), ServiceError> {
        let mut granted = self.granted.lock().expect("object refresh lock");
        let again_at = |at: i64| at.saturating_add(self.interval_ms);
        if let Some(&at) = granted.get(key).filter(|&&at| now < again_at(at)) {
            return Err(ServiceError::Exhausted(format!(
                "the objects of bucket `{}` were asked for {} s ago; ask again in {} s (one request per bucket per {} s)",
                key.bucket_name,
                (now - at) / 1000,
                (again_at(at) - now + 999) / 1000,
                self.interval_ms / 1000
            )));
        }
        if granted.len() >= self.capacity && !granted.contains_key(key) {
            granted.retain(|_, at| now < again_at(*at));
            if granted.len() >= self.capacity {
                let first_free = granted.values().copied().min().map_or(now, again_at);
                return Err(ServiceError::Exhausted(format!(
                    "object refreshes of {} buckets were asked for in the last {} s; ask again in {} s",
                    granted.len(),
                    self.interval_ms / 1000,
                    (first_free - now + 999) / 1000
                )));
            }
        }
        granted.insert(key.clone(), now);
        Ok(())
    }

    /// Forgets a grant that was not used (the agent was not connected).
    fn release(&self, key: &BucketKey) {
        self.granted.lock().expect("object refresh lock").remove(key);
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.granted.lock().expect("object refresh lock").len()
    }
}

/// A manual object refresh is for buckets of at most this many objects.
pub const MAX_OBJECTS_FOR_MANUAL_REFRESH: i64 = 30_000;

fn criterion(c: pb::BucketCriterion) -> Criterion {
    Criterion {
        eq: c.eq,
        neq: c.neq,
        gt: c.gt,
        gte: c.gte,
        lt: c.lt,
        lte: c.lte,
        prefix: c.prefix,
        ..Default::default()
    }
}

/// Every member Region (of `only`'s accounts when it names some; of `regions` when it names
/// some), with when it last completed a refresh.
fn member_scopes(state: &store::State, only: &[AccountId], regions: &[String]) -> Vec<(AccountId, Region, i64)> {
    let accounts = views::member_accounts(state);
    accounts
        .iter()
        .filter(|a| only.is_empty() || only.contains(a))
        .flat_map(|a| {
            let known = state.membership.members.get(a).map(|m| m.regions.clone()).unwrap_or_default();
            known
                .into_iter()
                .filter(|region| regions.is_empty() || regions.iter().any(|r| r == region))
                .map(|region| {
                    let completed = state.scope(a, &region).and_then(|s| s.last_updated).unwrap_or(0);
                    (a.clone(), region, completed)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

impl InventoryServiceImpl {
    /// Asks the agents for a refresh of each scope not refreshed (completed or asked) within
    /// `interval_ms`, and says for each whether it was asked and why not.
    fn ask_refresh(&self, scopes: Vec<(AccountId, Region, i64)>, interval_ms: i64) -> Vec<pb::ScopeRefresh> {
        let now = now_ms();
        let mut by_account: BTreeMap<AccountId, Vec<Region>> = BTreeMap::new();
        let mut out = Vec::new();
        {
            let mut requested = self.refresh_requested.lock().expect("refresh lock");
            for (account, region, completed) in scopes {
                let last = completed.max(requested.get(&(account.clone(), region.clone())).copied().unwrap_or(0));
                if now - last < interval_ms {
                    out.push(pb::ScopeRefresh {
                        account_id: account.into(),
                        region: region.into(),
                        requested: false,
                        last_refresh_ms: last,
                        reason: format!(
                            "refreshed within the last {} s; the last refresh is at `lastRefresh`",
                            interval_ms / 1000
                        ),
                    });
                    continue;
                }
                by_account.entry(account.clone()).or_default().push(region.clone());
                requested.insert((account.clone(), region.clone()), now);
                out.push(pb::ScopeRefresh {
                    account_id: account.into(),
                    region: region.into(),
                    requested: true,
                    last_refresh_ms: last,
                    reason: String::new(),
                });
            }
        }
        for (account, regions) in &by_account {
            let regions_asked = regions.iter().map(ToString::to_string).collect();
            let asked =
                self.directory.send(account, &pb::RefreshRequest { regions: regions_asked, ..Default::default() });
            if asked == 0 {
                let mut requested = self.refresh_requested.lock().expect("refresh lock");
                for region in regions {
                    requested.remove(&(account.clone(), region.clone()));
                }
                for scope in out.iter_mut().filter(|s| *account == s.account_id && s.requested) {
                    scope.requested = false;
                    scope.reason = "the agent is not connected".into();
                }
            }
        }
        out
    }

    /// Whether DescribeBuckets should look for quiet Regions now: the feature is on, and the
    /// last look was over a second ago (one caller wins the look).
    fn describe_sweep_due(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.describe_refresh_after_ms <= 0 {
            return false;
        }
        let now = now_ms();
        let last = self.last_describe_sweep.load(Ordering::Relaxed);
        (now - last).abs() >= 1_000
            && self.last_describe_sweep.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Macie's DescribeBuckets refreshes the metadata no refresh brought in the preceding five
    /// minutes: of `scopes` (the Regions of the accounts the query names, or all), those whose
    /// last refresh, completed or asked, is older than `--describe-refresh-after` (and than
    /// `--min-refresh-interval`: a reader may not ask more often than an operator) are asked for
    /// one. A Region that never completed a refresh is in its first one (agents refresh when
    /// they connect): its metadata is arriving. The query does not wait for it.
    fn refresh_quiet(&self, mut scopes: Vec<(AccountId, Region, i64)>) {
        scopes.retain(|(_, _, completed)| *completed > 0);
        let interval = self.describe_refresh_after_ms.max(self.min_refresh_interval_ms);
        let asked = self.ask_refresh(scopes, interval).iter().filter(|s| s.requested).count();
        if asked > 0 {
            tracing::info!(by = "DescribeBuckets", scopes = asked, "refresh requested");
        }
    }
}

#[tonic::async_trait]
impl InventoryService for InventoryServiceImpl {
    async fn describe_buckets(
        &self,
        request: Request<pb::DescribeBucketsRequest>,
    ) -> Result<Response<pb::DescribeBucketsResponse>, Status> {
        self.auth.reader(&request)?;
        let r = request.into_inner();
        let criteria: BTreeMap<String, Criterion> = r.criteria.into_iter().map(|(k, v)| (k, criterion(v))).collect();
        // The accounts the query names, if it names them: only their Regions are refreshed.
        let named: Option<Vec<AccountId>> = criteria
            .get("accountId")
            .filter(|c| !c.eq.is_empty())
            .map(|c| c.eq.iter().filter_map(|a| AccountId::parse(a).ok()).collect());
        let sort = r.sort_criteria.map(|s| (s.attribute_name, s.order_by == i32::from(pb::OrderBy::Desc)));
        let query = Query::new(criteria, sort, r.max_results, &r.next_token, self.max_criterion_values)
            .map_err(ServiceError::from)?;
        // A query that names only accounts that are no account IDs refreshes nothing.
        let sweep = named.as_ref().is_none_or(|n| !n.is_empty()) && self.describe_sweep_due();
        // A scan over millions of buckets is CPU work, and so is the look over every Region:
        // off the reactor.
        let ((buckets, token), quiet) = self
            .store
            .read_blocking(move |state| {
                let page = views::describe(state, &query);
                (page, sweep.then(|| member_scopes(state, named.as_deref().unwrap_or_default(), &[])))
            })
            .await
            .map_err(ServiceError::from)?;
        if let Some(scopes) = quiet {
            self.refresh_quiet(scopes);
        }
        Ok(Response::new(pb::DescribeBucketsResponse {
            buckets: buckets.iter().map(Into::into).collect(),
            next_token: token.unwrap_or_default(),
        }))
    }

    async fn get_bucket_statistics(
        &self,
        request: Request<pb::GetBucketStatisticsRequest>,
    ) -> Result<Response<pb::GetBucketStatisticsResponse>, Status> {
        self.auth.reader(&request)?;
        let account = request.into_inner().account_id;
        if account.is_empty() {
            // Published by the last commit: no wait for the one being applied.
            return Ok(Response::new((&self.store.organization_statistics()).into()));
        }
        let account = ServiceError::account_id(account)?;
        let stats = self
            .store
            .read_blocking(move |state| views::statistics(state, Some(&account)))
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new((&stats).into()))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        self.auth.reader(&request)?;
        let r = request.into_inner();
        let page_size = crate::api::error::page_size(r.max_results, 100)?;
        let after = match r.next_token.as_str() {
            "" => None,
            token => Some(AccountId::parse(token).map_err(|_| ServiceError::invalid("`nextToken` is malformed"))?),
        };
        let state = self.store.read();
        let accounts = views::member_accounts(&state);
        let mut page: Vec<_> =
            accounts.iter().filter(|a| after.as_ref().is_none_or(|after| *a > after)).take(page_size + 1).collect();
        let next_token = if page.len() > page_size {
            page.truncate(page_size);
            page.last().map(|a| a.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListMembersResponse {
            members: page.into_iter().map(|a| (&views::member(&state, a, self.store.member_live(a))).into()).collect(),
            next_token,
        }))
    }

    async fn refresh_inventory(
        &self,
        request: Request<pb::RefreshInventoryRequest>,
    ) -> Result<Response<pb::RefreshInventoryResponse>, Status> {
        let identity = self.auth.operator(&request)?;
        let r = request.into_inner();
        let only = match r.account_id.is_empty() {
            true => None,
            false => Some(ServiceError::account_id(r.account_id)?),
        };
        if let Some(account) = only.as_ref().filter(|a| {
            let state = self.store.read();
            !state.membership.is_known(&state.org, a)
        }) {
            return Err(ServiceError::NoSuchMember(account.to_string()).into());
        }
        let scopes = member_scopes(&self.store.read(), only.as_slice(), &r.regions);
        if scopes.is_empty() {
            return Err(ServiceError::Precondition(
                "no member Region matches; agents report their Regions when they connect".into(),
            )
            .into());
        }
        let out = self.ask_refresh(scopes, self.min_refresh_interval_ms);
        tracing::info!(by = identity.name(), scopes = out.iter().filter(|s| s.requested).count(), "refresh requested");
        Ok(Response::new(pb::RefreshInventoryResponse { scopes: out }))
    }

    async fn refresh_object_metadata(
        &self,
        request: Request<pb::RefreshObjectMetadataRequest>,
    ) -> Result<Response<pb::RefreshObjectMetadataResponse>, Status> {
        self.auth.operator(&request)?;
        let name = request.into_inner().bucket_name;
        if name.is_empty() {
            return Err(ServiceError::invalid("`bucket_name` is required").into());
        }
        let (key, objects) = {
            let state = self.store.read();
            match state.index.find_by_name(&name) {
                Some(entry) => (entry.facts.key.clone(), entry.judgement.objects.map(|o| o.object_count)),
                None => return Err(ServiceError::NotFound(format!("no bucket named `{name}` in the inventory")).into()),
            }
        };
        if let Some(count) = objects.filter(|c| *c > MAX_OBJECTS_FOR_MANUAL_REFRESH) {
            return Err(ServiceError::Precondition(format!(
                "bucket `{name}` holds {count} objects; a manual object refresh is for buckets of at most \
                 {MAX_OBJECTS_FOR_MANUAL_REFRESH} objects (the daily refresh counts it)"
            ))
            .into());
        }
        self.object_refreshes.grant(&key, now_ms())?;
        let request = pb::RefreshRequest {
            regions: Vec::new(),
            object_refresh_bucket: key.bucket_name.clone(),
            object_refresh_region: key.region.to_string(),
            count_objects: false,
        };
        if self.directory.send(&key.account_id, &request) == 0 {
            self.object_refreshes.release(&key);
            return Err(ServiceError::unavailable(format!(
                "the agent of account `{}` is not connected",
                key.account_id
            ))
            .into());
        }
        Ok(Response::new(pb::RefreshObjectMetadataResponse {
            account_id: key.account_id.into(),
            region: key.region.into(),
        }))
    }

    async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::GetMemberResponse>, Status> {
        self.auth.reader(&request)?;
        let account = ServiceError::account_id(request.into_inner().account_id)?;
        let state = self.store.read();
        if !state.membership.is_known(&state.org, &account) {
            return Err(ServiceError::NoSuchMember(account.into()).into());
        }
        Ok(Response::new(pb::GetMemberResponse {
            member: Some((&views::member(&state, &account, self.store.member_live(&account))).into()),
        }))
    }

    async fn forget_member(
        &self,
        request: Request<pb::ForgetMemberRequest>,
    ) -> Result<Response<pb::ForgetMemberResponse>, Status> {
        let caller = self.auth.operator(&request)?;
        let account_id = ServiceError::account_id(request.into_inner().account_id)?;
        let buckets = u64::try_from(self.store.read().stats.account(&account_id).bucket_count).unwrap_or(0);
        tracing::warn!(operator = caller.name(), account = %account_id, buckets, "forgetting an account");
        self.committer.commit(vec![Op::ForgetAccount { account_id }]).await.map_err(ServiceError::from)?;
        Ok(Response::new(pb::ForgetMemberResponse { buckets_removed: buckets }))
    }

    async fn get_posture(
        &self,
        request: Request<pb::GetPostureRequest>,
    ) -> Result<Response<pb::GetPostureResponse>, Status> {
        self.auth.reader(&request)?;
        let r = request.into_inner();
        let page_size = crate::api::error::page_size(r.max_results, 100)?;
        let account = match r.account_id.is_empty() {
            true => None,
            false => Some(ServiceError::account_id(r.account_id)?),
        };
        let after = match r.next_token.as_str() {
            "" => None,
            token => Some(
                hex::decode(token)
                    .ok()
                    .and_then(|bytes| StoredKey::from_bytes(&bytes))
                    .ok_or(ServiceError::BadToken)?,
            ),
        };
        // A walk over up to 50,000 buckets: off the reactor.
        let (buckets, next) = self
            .store
            .read_blocking(move |state| views::posture(state, account.as_ref(), None, after.as_ref(), page_size))
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(pb::GetPostureResponse {
            buckets: buckets.iter().map(Into::into).collect(),
            next_token: next.map(|key| hex::encode(key.as_bytes())).unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> BucketKey {
        BucketKey::new("111111111111".parse().unwrap(), "us-east-1".parse().unwrap(), name.to_owned())
    }

    #[test]
    fn one_object_refresh_per_bucket_per_window() {
        let limiter = ObjectRefreshLimiter::new(60_000, 100);
        let (a, b) = (key("bucket-a"), key("bucket-b"));
        assert!(limiter.grant(&a, 1_000_000).is_ok());
        let again = limiter.grant(&a, 1_010_000).unwrap_err();
        assert_eq!(again.code(), tonic::Code::ResourceExhausted);
        assert!(again.message().contains("`bucket-a`") && again.message().contains("ask again in 50 s"), "{again}");
        assert!(limiter.grant(&b, 1_010_000).is_ok(), "another bucket has its own window");
        assert!(limiter.grant(&a, 1_060_000).is_ok(), "the window has passed");
        // A grant the agent never received is given back.
        limiter.release(&b);
        assert!(limiter.grant(&b, 1_020_000).is_ok());
    }

    #[test]
    fn the_limiter_forgets_old_buckets_and_stays_bounded() {
        let limiter = ObjectRefreshLimiter::new(60_000, 3);
        for (i, name) in ["a-1", "a-2", "a-3"].into_iter().enumerate() {
            limiter.grant(&key(name), 1_000_000 + i as i64 * 1000).unwrap();
        }
        // Full of recent grants: a new bucket waits for the oldest to expire.
        let full = limiter.grant(&key("a-4"), 1_030_000).unwrap_err();
        assert_eq!(full.code(), tonic::Code::ResourceExhausted);
        assert!(full.message().contains("ask again in 30 s"), "{full}");
        assert_eq!(limiter.remembered(), 3);
        // Once they are old, they are pruned to make room.
        limiter.grant(&key("a-4"), 1_061_000).unwrap();
        assert_eq!(limiter.remembered(), 2, "a-1 and a-2 expired and were pruned: {limiter:?}");
        for i in 0..1_000 {
            let _ = limiter.grant(&key(&format!("b-{i}")), 2_000_000 + i * 100_000);
            assert!(limiter.remembered() <= 3);
        }
    }
}
