//! A fake S3 for unit tests: an SDK client whose HTTP client answers from a route table in
//! memory and records every request, so tests can check what the agent sends (headers,
//! operations) without a server.

use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

/// One request as sent: method, URI (path and query) and the `ExpectedBucketOwner` header.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub expected_owner: Option<String>,
}

/// Answers a request (method, URI) with a status and a body.
pub type Route = fn(&str, &str) -> (u16, Vec<u8>);

#[derive(Debug, Clone)]
pub struct FakeS3 {
    route: Route,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeS3 {
    /// A client (no retries, path-style) answered by `route`, and the record of its requests.
    pub fn client(route: Route) -> (aws_sdk_s3::Client, Arc<Mutex<Vec<Seen>>>) {
        let fake = Self { route, seen: Arc::default() };
        let seen = Arc::clone(&fake.seen);
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url("http://127.0.0.1:9")
            .force_path_style(true)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .http_client(fake)
            .build();
        (aws_sdk_s3::Client::from_conf(config), seen)
    }
}

impl HttpConnector for FakeS3 {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let uri = request.uri().trim_start_matches("http://127.0.0.1:9").to_owned();
        let method = request.method().to_owned();
        let expected_owner = request.headers().get("x-amz-expected-bucket-owner").map(str::to_owned);
        let (status, body) = (self.route)(&method, &uri);
        self.seen.lock().expect("fake S3 lock").push(Seen { method, uri, expected_owner });
        let status = status.try_into().expect("a valid status");
        HttpConnectorFuture::ready(Ok(HttpResponse::new(status, SdkBody::from(body))))
    }
}

impl HttpClient for FakeS3 {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// An S3 error answer with `code`.
pub fn error(status: u16, code: &str) -> (u16, Vec<u8>) {
    (status, format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>m</Message></Error>").into_bytes())
}

/// Every request in `seen` carried `owner` as its `ExpectedBucketOwner`; returns how many.
pub fn assert_all_expect(seen: &[Seen], owner: &str) -> usize {
    for request in seen {
        assert_eq!(
            request.expected_owner.as_deref(),
            Some(owner),
            "{} {} has no ExpectedBucketOwner",
            request.method,
            request.uri
        );
    }
    seen.len()
}
