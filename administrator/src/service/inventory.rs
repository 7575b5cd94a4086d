//! `InventoryService`: DescribeBuckets, GetBucketStatistics, ListMembers, GetMember.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tonic::{Request, Response, Status};

use estate_common::model::is_account_id;
use estate_common::pb::{self, inventory_service_server::InventoryService};

use crate::auth::Authenticator;
use crate::error::ServiceError;
use crate::query::{Criterion, Query};
use crate::store::Store;
use crate::views;

#[derive(Debug, Clone)]
pub struct InventoryServiceImpl {
    pub store: Arc<Store>,
    pub auth: Authenticator,
    /// Accounts with a configured agent: members even before their first report.
    pub configured_members: Arc<BTreeSet<String>>,
}

fn criterion(c: pb::BucketCriterion) -> Criterion {
    Criterion { eq: c.eq, neq: c.neq, gt: c.gt, gte: c.gte, lt: c.lt, lte: c.lte, prefix: c.prefix }
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
        let sort = r.sort_criteria.map(|s| (s.attribute_name, s.order_by == i32::from(pb::OrderBy::Desc)));
        let query = Query::new(criteria, sort, r.max_results, &r.next_token).map_err(ServiceError::from)?;
        let store = Arc::clone(&self.store);
        // A scan over millions of buckets is CPU work: keep it off the reactor.
        let (buckets, token) = tokio::task::spawn_blocking(move || views::describe(&store.read(), &query))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
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
        let account = (!account.is_empty()).then_some(account);
        let stats = views::statistics(&self.store.read(), account.as_deref())?;
        Ok(Response::new((&stats).into()))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        self.auth.reader(&request)?;
        let r = request.into_inner();
        let page_size = match r.max_results {
            0 => 100,
            n if (1..=1000).contains(&n) => n as usize,
            n => return Err(Status::invalid_argument(format!("`maxResults` must be between 1 and 1000, got {n}"))),
        };
        if !r.next_token.is_empty() && !is_account_id(&r.next_token) {
            return Err(Status::invalid_argument("`nextToken` is malformed"));
        }
        let state = self.store.read();
        let accounts = views::member_accounts(&state, &self.configured_members);
        let mut page: Vec<_> =
            accounts.iter().filter(|a| r.next_token.is_empty() || **a > r.next_token).take(page_size + 1).collect();
        let next_token = if page.len() > page_size {
            page.truncate(page_size);
            page.last().map(|a| (*a).clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListMembersResponse {
            members: page.into_iter().map(|a| (&views::member(&state, a)).into()).collect(),
            next_token,
        }))
    }

    async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::GetMemberResponse>, Status> {
        self.auth.reader(&request)?;
        let account = request.into_inner().account_id;
        if !is_account_id(&account) {
            return Err(ServiceError::BadAccountId(account).into());
        }
        let state = self.store.read();
        if !views::member_accounts(&state, &self.configured_members).contains(&account) {
            return Err(ServiceError::NoSuchMember(account).into());
        }
        Ok(Response::new(pb::GetMemberResponse { member: Some((&views::member(&state, &account)).into()) }))
    }
}
