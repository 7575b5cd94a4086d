//! A refresh: read the account-level settings, list every bucket once (paginated), place each
//! in its Region, then for each requested Region (a scope) read every bucket with bounded
//! concurrency and stream the results, closing with a "scope complete" marker.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::stream::{self, Stream, StreamExt};
use futures::FutureExt;

use estate_common::model::{AccountId, AccountSettings, BucketFacts, BucketKey, Region, UnixMillis};
use estate_common::pb::{self, report_request::Body};

use crate::aws::{classify, CallError, Clients};
use crate::collect::{account_block_public_access, collect_bucket};
use crate::limit::AdaptiveLimit;

/// One bucket of a refresh: its facts, gone, or kept as stored because counting its objects
/// failed this time (its configuration calls mark their own failures unknown instead).
#[derive(Debug)]
pub enum Collected {
    Facts(BucketFacts),
    Gone,
    Failed(String),
}

/// Runs one bucket's work so that a panic in it (a bug, or input nobody foresaw) is that
/// bucket's failure, with the panic's message, and never unwinds into the refresh or the
/// event consumer around it.
pub async fn guarded<T>(work: impl Future<Output = T>) -> Result<T, String> {
    AssertUnwindSafe(work).catch_unwind().await.map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        format!("reading the bucket panicked: {message}")
    })
}

/// Reads each bucket with `read`, at most `concurrency` at once, in completion order. A read
/// that panics yields [`Collected::Failed`] for its bucket; the others go on.
pub fn read_each<'a, F, Fut>(
    buckets: &'a [&'a Listed],
    concurrency: usize,
    read: F,
) -> impl Stream<Item = (&'a str, Collected)> + 'a
where
    F: Fn(&'a Listed) -> Fut + 'a,
    Fut: Future<Output = Collected> + 'a,
{
    stream::iter(buckets.iter().copied())
        .map(move |bucket| {
            let work = read(bucket);
            async move { (bucket.name.as_str(), guarded(work).await.unwrap_or_else(Collected::Failed)) }
        })
        .buffer_unordered(concurrency)
}
use crate::objects::{count_objects, CountError, CountOptions};
use crate::outbox::Outbox;

/// The most bucket names one `AccountBuckets` message carries (100,000 names of at most 63
/// bytes stay well under the administrator's 4 MiB message limit).
const MAX_LISTED_NAMES: usize = 100_000;

pub use estate_common::model::now_ms;

#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub created_at: UnixMillis,
    pub region: String,
}

/// What ListBuckets says about the account: its canonical ID and every bucket with its Region.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub owner_canonical_id: String,
    pub buckets: Vec<Listed>,
    /// Buckets listed whose Region could not be read: no scope can be complete.
    pub unlocated: Vec<String>,
}

/// GetBucketLocation's answer as a Region: empty means us-east-1, `EU` means eu-west-1.
pub fn location_to_region(location: Option<&str>) -> String {
    match location {
        None | Some("") => "us-east-1".to_owned(),
        Some("EU") => "eu-west-1".to_owned(),
        Some(other) => other.to_owned(),
    }
}

/// Hands every page of the account's ListBuckets (1,000 buckets a page) to `page`, in order.
pub async fn each_list_buckets_page(
    clients: &Clients,
    home_region: &str,
    mut page: impl FnMut(&aws_sdk_s3::operation::list_buckets::ListBucketsOutput),
) -> Result<(), CallError> {
    let client = clients.s3(home_region);
    let mut token: Option<String> = None;
    loop {
        let out = client
            .list_buckets()
            .max_buckets(1000)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(classify)?;
        page(&out);
        match out.continuation_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => return Ok(()),
        }
    }
}

/// Lists every general purpose bucket of the account (`account`: ListBuckets answers with the
/// caller's own buckets only). BucketRegion is used when present; GetBucketLocation only when
/// it is missing.
pub async fn list_buckets(
    clients: &Clients,
    account: &str,
    home_region: &str,
    concurrency: usize,
) -> Result<Listing, CallError> {
    let client = clients.s3(home_region);
    let mut listing = Listing::default();
    let mut without_region = Vec::new();
    each_list_buckets_page(clients, home_region, |page| {
        if let Some(id) = page.owner().and_then(|o| o.id()) {
            listing.owner_canonical_id = id.to_owned();
        }
        for bucket in page.buckets() {
            let Some(name) = bucket.name() else { continue };
            let created_at = bucket.creation_date().map_or(0, |d| d.to_millis().unwrap_or(0));
            match bucket.bucket_region() {
                Some(region) if !region.is_empty() => {
                    listing.buckets.push(Listed { name: name.to_owned(), created_at, region: region.to_owned() })
                }
                _ => without_region.push((name.to_owned(), created_at)),
            }
        }
    })
    .await?;
    let located: Vec<_> = stream::iter(without_region)
        .map(|(name, created_at)| {
            let client = client.clone();
            async move {
                let out = client
                    .get_bucket_location()
                    .bucket(&name)
                    .expected_bucket_owner(account)
                    .send()
                    .await
                    .map_err(classify);
                (name, created_at, out)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for (name, created_at, out) in located {
        match out {
            Ok(out) => {
                let region = location_to_region(out.location_constraint().map(|c| c.as_str()));
                listing.buckets.push(Listed { name, created_at, region });
            }
            Err(CallError::NoSuchBucket) => {}
            Err(error) => {
                // Its stored facts stay: no scope completes this time, so nothing is deleted.
                tracing::warn!(bucket = %name, %error, "cannot locate the bucket; no scope completes this refresh");
                listing.unlocated.push(name);
            }
        }
    }
    Ok(listing)
}

/// A task aborted when its handle is dropped: work started for a refresh ends with it.
#[derive(Debug)]
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Everything one refresh needs.
#[derive(Debug)]
pub struct Refresher {
    pub clients: Arc<Clients>,
    pub outbox: Arc<Outbox>,
    pub account_id: AccountId,
    pub home_region: Region,
    pub regions: Vec<Region>,
    pub concurrency: usize,
    /// HeadObject calls per bucket for object encryption.
    pub head_budget: usize,
    /// Bucket reads at once over every account a hub serves.
    pub global_limit: Option<Arc<tokio::sync::Semaphore>>,
    /// Bucket reads at once in this account (`concurrency`), lowered while AWS throttles it.
    pub account_limit: Arc<AdaptiveLimit>,
    last_generation: std::sync::Mutex<u64>,
}

impl Refresher {
    pub fn new(
        clients: Arc<Clients>,
        outbox: Arc<Outbox>,
        account_id: AccountId,
        regions: Vec<Region>,
        concurrency: usize,
        head_budget: usize,
    ) -> Self {
        Self {
            head_budget,
            home_region: regions[0].clone(),
            clients,
            outbox,
            account_id,
            regions,
            concurrency,
            global_limit: None,
            account_limit: AdaptiveLimit::new(concurrency),
            last_generation: std::sync::Mutex::new(0),
        }
    }

    /// A strictly increasing generation number (milliseconds, bumped on collisions).
    pub fn next_generation(&self) -> u64 {
        let mut last = self.last_generation.lock().expect("generation lock");
        *last = (*last + 1).max(now_ms() as u64);
        *last
    }

    /// Refreshes `regions` (all the agent's Regions when empty). The daily cycle also counts
    /// every bucket's objects (`count_objects`), and so does the refresh an administrator asks
    /// for when its store lost acknowledged data; a refresh an operator asks for
    /// (RefreshInventory) re-reads bucket metadata only, as Macie does: object statistics
    /// change on the daily cycle or through RefreshObjectMetadata.
    pub async fn refresh(&self, regions: &[String], count_objects: bool) -> anyhow::Result<()> {
        let regions: Vec<&Region> = if regions.is_empty() {
            self.regions.iter().collect()
        } else {
            self.regions.iter().filter(|r| regions.iter().any(|asked| *r == asked)).collect()
        };
        let started = now_ms();
        let settings = AccountSettings {
            account_id: self.account_id.clone(),
            read_at: started,
            block_public_access: account_block_public_access(&self.clients.s3control, &self.account_id).await,
        };
        self.outbox.push(Body::AccountSettings((&settings).into())).await;

        let listing = list_buckets(&self.clients, &self.account_id, &self.home_region, self.concurrency)
            .await
            .map_err(|e| anyhow::anyhow!("`s3:ListAllMyBuckets` failed: {e}"))?;
        // Every bucket name of the account, in every Region: the administrator resolves
        // replication destinations named without their account with it.
        let names: Vec<String> =
            listing.buckets.iter().map(|b| b.name.clone()).chain(listing.unlocated.iter().cloned()).collect();
        if names.len() <= MAX_LISTED_NAMES {
            self.outbox
                .push(Body::AccountBuckets(pb::AccountBuckets { bucket_names: names, read_at_ms: started }))
                .await;
        } else {
            tracing::warn!(
                buckets = names.len(),
                "too many buckets to send their names in one message; replication destinations named without \
                 an account stay unknown"
            );
        }
        let mut by_region: BTreeMap<&str, Vec<&Listed>> = BTreeMap::new();
        for bucket in &listing.buckets {
            by_region.entry(bucket.region.as_str()).or_default().push(bucket);
        }
        // A bucket whose Region is unknown may belong to any scope: completing one would
        // remove it from the inventory. Read everything else, complete nothing.
        let complete = listing.unlocated.is_empty();
        for region in regions {
            let buckets = by_region.remove(region.as_str()).unwrap_or_default();
            self.refresh_scope(region, &buckets, started, complete, count_objects).await;
        }
        if !complete {
            anyhow::bail!(
                "{} bucket(s) could not be located: {}",
                listing.unlocated.len(),
                listing.unlocated.join(", ")
            );
        }
        Ok(())
    }

    async fn refresh_scope(
        &self,
        region: &Region,
        buckets: &[&Listed],
        started: UnixMillis,
        complete: bool,
        count_objects: bool,
    ) {
        let generation = self.next_generation();
        let total = buckets.len() as u64;
        let requests_before = self.clients.requests.get();
        tracing::info!(account = %self.account_id, %region, buckets = total, generation, "refresh started");
        self.outbox
            .push(Body::ScopeStarted(pb::ScopeStarted { region: region.to_string(), generation, bucket_total: total }))
            .await;
        let client = self.clients.s3(region);
        let mut results = std::pin::pin!(read_each(buckets, self.concurrency, |bucket| {
            let client = client.clone();
            let key = BucketKey::new(self.account_id.clone(), region.clone(), &bucket.name);
            let options = CountOptions::daily(self.head_budget);
            let (created_at, global, account) =
                (bucket.created_at, self.global_limit.clone(), Arc::clone(&self.account_limit));
            let requests = self.clients.requests.clone();
            let account_id = self.account_id.clone();
            async move {
                // The places first, and only then the read (a large future): thousands of
                // accounts waiting for the global limit hold small futures only.
                let account_place = account.acquire().await;
                let global_place = match &global {
                    Some(limit) => {
                        Some(Arc::clone(limit).acquire_owned().await.expect("the global limit is never closed"))
                    }
                    None => None,
                };
                // A task of its own, so that the read goes on, and gives its places back, while
                // this refresh waits for room in the outbox.
                let task = AbortOnDrop(tokio::spawn(guarded(async move {
                    let _places = (account_place, global_place);
                    let throttled_before = requests.throttled();
                    let collected = match collect_bucket(&client, key, created_at, now_ms()).await {
                        None => Collected::Gone,
                        Some(facts) if count_objects => with_objects(&client, facts, options).await,
                        Some(facts) => Collected::Facts(facts),
                    };
                    // Throttling anywhere in the account during this read lowers the account's
                    // limit; a clean read raises it again, slowly.
                    if requests.throttled() > throttled_before {
                        if let Some(lowered) = account.throttled() {
                            tracing::warn!(account = %account_id, reads_at_once = lowered, "AWS throttles this account; its reads at once are lowered");
                        }
                    } else {
                        account.clean();
                    }
                    collected
                })));
                let mut task = task;
                match (&mut task.0).await {
                    Ok(Ok(collected)) => collected,
                    Ok(Err(panic)) => Collected::Failed(panic),
                    Err(joined) => Collected::Failed(format!("the read ended: {joined}")),
                }
            }
        }));
        let (mut reported, mut failed, mut done) = (0u64, 0u64, 0u64);
        while let Some((name, collected)) = results.next().await {
            done += 1;
            match collected {
                Collected::Facts(facts) => {
                    reported += 1;
                    let snapshot = pb::BucketSnapshot { generation, facts: Some((&facts).into()), cause: None };
                    self.outbox.push(Body::Bucket(snapshot)).await;
                }
                Collected::Gone => {}
                Collected::Failed(reason) => {
                    failed += 1;
                    tracing::warn!(%region, bucket = %name, %reason, "cannot read the bucket now; its stored facts are kept");
                    // Retained explicitly, so that completing the scope does not remove it.
                    let retained = pb::BucketRetained {
                        region: region.to_string(),
                        bucket_name: name.to_owned(),
                        generation,
                        reason,
                    };
                    self.outbox.push(Body::Retained(retained)).await;
                }
            }
            if done % 1000 == 0 {
                tracing::info!(%region, done, total, "refresh progress");
            }
        }
        if complete {
            self.outbox
                .push(Body::ScopeComplete(pb::ScopeComplete {
                    region: region.to_string(),
                    generation,
                    read_at_ms: started,
                    bucket_count: reported,
                }))
                .await;
        }
        let requests = self.clients.requests.get() - requests_before;
        let by_operation = serde_json::to_string(&self.clients.requests.by_operation()).unwrap_or_default();
        let sts = serde_json::to_string(&self.clients.sts_requests.by_operation()).unwrap_or_default();
        tracing::info!(
            account = %self.account_id,
            %region,
            reported,
            failed,
            generation,
            s3_requests = requests,
            s3_requests_so_far = %by_operation,
            sts_requests_so_far = %sts,
            "refresh complete"
        );
    }
}

/// Adds object statistics to a readable bucket's facts. Denied listing makes an error bucket
/// that names the call; a transient failure keeps what is stored.
async fn with_objects(client: &aws_sdk_s3::Client, mut facts: BucketFacts, options: CountOptions) -> Collected {
    use estate_common::model::{BucketError, BucketErrorCode, BucketState};
    let BucketState::Readable(config) = &mut facts.state else { return Collected::Facts(facts) };
    match count_objects(client, &facts.key.bucket_name, &facts.key.account_id, options, now_ms()).await {
        Ok(stats) => {
            config.objects = Some(Box::new(stats));
            Collected::Facts(facts)
        }
        Err(CountError::Call(CallError::AccessDenied(detail))) => {
            facts.state = BucketState::Error(BucketError {
                code: BucketErrorCode::AccessDenied,
                message: format!("access denied to `s3:ListBucket` ({detail})"),
            });
            Collected::Facts(facts)
        }
        Err(CountError::Call(CallError::NoSuchBucket)) => Collected::Gone,
        Err(error) => Collected::Failed(format!("counting objects: {error}")),
    }
}

impl Refresher {
    /// Macie's manual object refresh of one bucket: recount now, without multipart parts,
    /// encryption unknown; at most 30,000 objects.
    pub async fn refresh_objects(&self, region: &str, bucket: &str) {
        if !self.regions.iter().any(|r| r == region) {
            tracing::warn!(%region, %bucket, "object refresh for a Region this agent does not serve; ignored");
            return;
        }
        let client = self.clients.s3(region);
        let counted = guarded(count_objects(&client, bucket, &self.account_id, CountOptions::manual(), now_ms())).await;
        match counted {
            Err(panic) => tracing::error!(%bucket, %panic, "manual object refresh failed"),
            Ok(Ok(stats)) => {
                tracing::info!(%bucket, objects = stats.totals.object_count, "objects recounted");
                let message = pb::BucketObjects {
                    region: region.to_owned(),
                    bucket_name: bucket.to_owned(),
                    objects: Some((&stats).into()),
                };
                self.outbox.push(Body::BucketObjects(message)).await;
            }
            Ok(Err(error)) => tracing::warn!(%bucket, %error, "manual object refresh failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str) -> Listed {
        Listed { name: name.to_owned(), created_at: 0, region: "us-east-1".to_owned() }
    }

    #[tokio::test]
    async fn a_panicking_bucket_read_fails_only_that_bucket() {
        let buckets: Vec<Listed> = (0..20).map(|i| listed(&format!("bucket-{i}"))).collect();
        let refs: Vec<&Listed> = buckets.iter().collect();
        let results: Vec<(&str, Collected)> = read_each(&refs, 4, |bucket| async move {
            tokio::task::yield_now().await;
            if bucket.name == "bucket-7" {
                panic!("hostile input in {}", bucket.name);
            }
            Collected::Gone
        })
        .collect()
        .await;
        // Every bucket has its outcome: the others were read, the panicking one failed.
        assert_eq!(results.len(), 20);
        for (name, collected) in &results {
            match collected {
                Collected::Failed(reason) => {
                    assert_eq!(*name, "bucket-7");
                    assert!(reason.contains("panicked: hostile input in bucket-7"), "{reason}");
                }
                Collected::Gone => assert_ne!(*name, "bucket-7"),
                Collected::Facts(_) => panic!("{name}"),
            }
        }
    }

    #[tokio::test]
    async fn guarded_names_any_panic() {
        assert_eq!(guarded(async { 1 }).await, Ok(1));
        let formatted = guarded(async { panic!("bucket {}", "x") }).await;
        assert_eq!(formatted, Err::<(), _>("reading the bucket panicked: bucket x".to_owned()));
        let other = guarded(async { std::panic::panic_any(7u8) }).await;
        assert_eq!(other, Err::<(), _>("reading the bucket panicked: a panic without a message".to_owned()));
    }
}
