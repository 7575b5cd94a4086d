//! AWS clients (S3 per Region, S3 Control, STS) built from the default credential chain, and
//! the one place where SDK errors are classified: "not configured", "access denied",
//! "no such bucket", "throttled" and "transient" are kept apart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::endpoint::Endpoint;

/// Error codes that mean "this configuration is absent", not a failure.
const NOT_CONFIGURED: &[&str] = &[
    "NoSuchBucketPolicy",
    "NoSuchTagSet",
    "NoSuchTagSetError",
    "ServerSideEncryptionConfigurationNotFoundError",
    "NoSuchPublicAccessBlockConfiguration",
    "ReplicationConfigurationNotFoundError",
    "OwnershipControlsNotFoundError",
];

const ACCESS_DENIED: &[&str] = &["AccessDenied", "AccessDeniedException", "AllAccessDisabled"];

const THROTTLED: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
];

/// What went wrong with one AWS call, in the terms collection cares about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("not configured")]
    NotConfigured,
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("the bucket no longer exists")]
    NoSuchBucket,
    #[error("throttled after retries: {0}")]
    Throttled(String),
    #[error("{0}")]
    Transient(String),
}

/// Classifies an SDK error by its service error code.
pub fn classify<E, R>(error: SdkError<E, R>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = error.code().map(str::to_owned);
    let message = error.message().map(str::to_owned).unwrap_or_default();
    let describe = |code: &str| if message.is_empty() { code.to_owned() } else { format!("{code}: {message}") };
    match code.as_deref() {
        Some(c) if NOT_CONFIGURED.contains(&c) => CallError::NotConfigured,
        Some(c) if ACCESS_DENIED.contains(&c) => CallError::AccessDenied(describe(c)),
        Some("NoSuchBucket") => CallError::NoSuchBucket,
        Some(c) if THROTTLED.contains(&c) => CallError::Throttled(describe(c)),
        Some(c) => CallError::Transient(describe(c)),
        None => CallError::Transient(describe_chain(&error)),
    }
}

/// The error and its sources, each as it displays itself, joined, at most 300 characters: an
/// unparsable response otherwise drags the whole raw response into the message.
fn describe_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    let text = parts.join(": ");
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Maps "not configured" to `None`.
pub fn optional<T>(result: Result<T, CallError>) -> Result<Option<T>, CallError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(CallError::NotConfigured) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Resolves every S3 Control request to one fixed URL. S3 Control's endpoint rules put the
/// account ID in front of the host, which an S3-compatible server on a plain address (a
/// test server on 127.0.0.1) cannot answer; with `--endpoint-url` we send requests there.
#[derive(Debug)]
struct StaticEndpoint(String);

impl aws_sdk_s3control::config::endpoint::ResolveEndpoint for StaticEndpoint {
    fn resolve_endpoint<'a>(
        &'a self,
        _params: &'a aws_sdk_s3control::config::endpoint::Params,
    ) -> aws_sdk_s3control::config::endpoint::EndpointFuture<'a> {
        aws_sdk_s3control::config::endpoint::EndpointFuture::ready(Ok(Endpoint::builder().url(self.0.clone()).build()))
    }
}

/// Counts the HTTP requests a set of clients sends (every attempt, retries included): the
/// agent's cost in S3 requests (the S3 and S3 Control clients), and in STS requests, reported
/// per refresh.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    total: Arc<AtomicU64>,
    /// Answers that said the account is throttled (HTTP 503 SlowDown, or 429).
    throttled: Arc<AtomicU64>,
    by_operation: Arc<Mutex<HashMap<String, u64>>>,
}

impl RequestCounter {
    pub fn get(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Throttling answers so far (every attempt's, retried or not).
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Counts one request of `operation` made outside the SDK clients counted (the AssumeRole
    /// of a hub's credentials provider).
    pub fn add(&self, operation: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        *self.by_operation.lock().expect("counter lock").entry(operation.to_owned()).or_default() += 1;
    }

    /// Requests per operation so far, for the logs.
    pub fn by_operation(&self) -> std::collections::BTreeMap<String, u64> {
        self.by_operation.lock().expect("counter lock").iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "EstateRequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.total.fetch_add(1, Ordering::Relaxed);
        if let Some(metadata) = config.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>() {
            *self.by_operation.lock().expect("counter lock").entry(metadata.name().to_owned()).or_default() += 1;
        }
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if matches!(context.response().status().as_u16(), 429 | 503) {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Retries: `max_attempts` per call with backoff from 200 ms; `adaptive` (a hub's) also
/// lowers the request rate of a client that is throttled.
pub fn retry_config(max_attempts: u32, adaptive: bool) -> RetryConfig {
    let mode = if adaptive { RetryConfig::adaptive() } else { RetryConfig::standard() };
    mode.with_max_attempts(max_attempts).with_initial_backoff(Duration::from_millis(200))
}

/// The retry partition of `service` for `account`'s clients (`SERVICE-ACCOUNT`), or the
/// service's shared one without an account.
fn retry_partition(account: Option<&str>, service: &str) -> Option<aws_sdk_s3::config::retry::RetryPartition> {
    account.map(|account| aws_sdk_s3::config::retry::RetryPartition::new(format!("{service}-{account}")))
}

/// Connecting takes at most 10 s and one attempt at most 60 s.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(60))
        .build()
}

/// The clients of one agent: one S3 client per Region, created on first use.
#[derive(Debug)]
pub struct Clients {
    base: SdkConfig,
    endpoint_url: Option<String>,
    /// The account whose own retry partitions the clients use ([`Clients::from_config`]).
    partition: Option<String>,
    s3: Mutex<HashMap<String, aws_sdk_s3::Client>>,
    pub sts: aws_sdk_sts::Client,
    pub s3control: aws_sdk_s3control::Client,
    /// Made on first use: a hub's accounts never read a queue of their own.
    sqs: std::sync::OnceLock<aws_sdk_sqs::Client>,
    pub requests: RequestCounter,
    /// The STS requests: GetCallerIdentity, and a hub's AssumeRole.
    pub sts_requests: RequestCounter,
}

impl Clients {
    /// The clients of an agent that runs as its account's own identity (the default chain).
    pub async fn new(home_region: &str, endpoint_url: Option<String>, max_attempts: u32) -> Self {
        let base = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(home_region.to_owned()))
            .retry_config(retry_config(max_attempts, false))
            .timeout_config(timeouts())
            .load()
            .await;
        Self::from_config(base, endpoint_url, None, RequestCounter::default())
    }

    /// Clients built on `base`: its credentials, Region, retries and HTTP client. With
    /// `partition` (a hub's account ID), their retry state is that account's alone: the retry
    /// quota and, in adaptive mode, the request rate that throttling lowers are per account,
    /// as AWS's API limits are, so throttling in one account never slows the others.
    /// `sts_requests` counts the STS client's requests (and whatever else the caller adds).
    pub fn from_config(
        base: SdkConfig,
        endpoint_url: Option<String>,
        partition: Option<&str>,
        sts_requests: RequestCounter,
    ) -> Self {
        let requests = RequestCounter::default();
        let named = |service: &str| retry_partition(partition, service);
        let mut sts = aws_sdk_sts::config::Builder::from(&base).interceptor(sts_requests.clone());
        sts.set_retry_partition(named("sts"));
        let mut s3control = aws_sdk_s3control::config::Builder::from(&base).interceptor(requests.clone());
        s3control.set_retry_partition(named("s3control"));
        if let Some(url) = &endpoint_url {
            sts = sts.endpoint_url(url);
            s3control = s3control.endpoint_resolver(StaticEndpoint(url.clone()));
        }
        Self {
            sts: aws_sdk_sts::Client::from_conf(sts.build()),
            sqs: std::sync::OnceLock::new(),
            s3control: aws_sdk_s3control::Client::from_conf(s3control.build()),
            base,
            endpoint_url,
            partition: partition.map(str::to_owned),
            s3: Mutex::new(HashMap::new()),
            requests,
            sts_requests,
        }
    }

    /// The SQS client (the account's own events queue).
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        self.sqs
            .get_or_init(|| {
                let mut config = aws_sdk_sqs::config::Builder::from(&self.base);
                config.set_retry_partition(retry_partition(self.partition.as_deref(), "sqs"));
                if let Some(url) = &self.endpoint_url {
                    config = config.endpoint_url(url);
                }
                aws_sdk_sqs::Client::from_conf(config.build())
            })
            .clone()
    }

    /// The S3 client for `region` (requests for a bucket go to its own Region).
    pub fn s3(&self, region: &str) -> aws_sdk_s3::Client {
        let mut clients = self.s3.lock().expect("client map lock");
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                let mut config = aws_sdk_s3::config::Builder::from(&self.base)
                    .region(Region::new(region.to_owned()))
                    .interceptor(self.requests.clone());
                config.set_retry_partition(retry_partition(self.partition.as_deref(), "s3"));
                if let Some(url) = &self.endpoint_url {
                    // S3-compatible servers on a plain address cannot serve virtual-hosted names.
                    config = config.endpoint_url(url).force_path_style(true);
                }
                aws_sdk_s3::Client::from_conf(config.build())
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_keeps_failures_and_drops_absence() {
        assert_eq!(optional::<u8>(Err(CallError::NotConfigured)), Ok(None));
        assert_eq!(optional(Ok(1)), Ok(Some(1)));
        assert!(optional::<u8>(Err(CallError::AccessDenied("x".into()))).is_err());
    }
}
