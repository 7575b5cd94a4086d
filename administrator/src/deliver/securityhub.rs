//! The AWS Security Hub sink: `BatchImportFindings` in the AWS Security Finding Format (ASFF),
//! as a custom integration: the default product of the administrator's account
//! (`arn:aws:securityhub:REGION:ACCOUNT:product/ACCOUNT/default`) unless `product_arn` says
//! otherwise, `AwsAccountId` that account (Security Hub takes findings of the caller's own
//! account on the default product), and the bucket's owner in the resource's details. `Types`
//! follow Macie's mapping; a finding imported again under the same `Id` is an update.
//!
//! Security Hub's limits are kept: at most 100 findings and 6 MB per call, 240 KB per finding
//! (a larger one is logged by name and not imported, never cut), and at most 10 calls per
//! second. A finding Security Hub itself refuses is logged and not retried. The request
//! is signed with SigV4 (`aws-sigv4`, the SDK's signer) with the credentials of the
//! administrator's AWS configuration, and posted over the sinks' HTTP client. Permission:
//! `securityhub:BatchImportFindings` on the product ARN.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use serde::Deserialize;
use serde_json::json;

use estate_common::findings::{Finding, FindingType};
use estate_common::macie::{EncryptionType, Timestamp};

use super::http::{HttpClient, Target};
use super::Start;

/// BatchImportFindings takes at most 100 findings per call...
pub const BATCH: usize = 100;
/// ...and 6 MB per call...
const MAX_CALL_BYTES: usize = 6 * 1024 * 1024;
/// ...and 240 KB per finding.
const MAX_FINDING_BYTES: usize = 240 * 1024;
/// Security Hub's rate: 10 requests per second (burst 30).
const MIN_CALL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityHubConfig {
    pub name: String,
    #[serde(default)]
    pub start: Start,
    /// The Region of the Security Hub the findings go to (its aggregation Region, say).
    pub region: String,
    /// The administrator's AWS account: the findings' `AwsAccountId`, and the default
    /// product's.
    pub account_id: String,
    /// Another product to import as (default: the account's default product).
    pub product_arn: Option<String>,
}

impl SecurityHubConfig {
    pub fn check(&self) -> anyhow::Result<()> {
        if !estate_common::model::is_account_id(&self.account_id) {
            bail!("`account_id` `{}` is not a 12-digit account ID", self.account_id);
        }
        if self.region.is_empty()
            || !self.region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            bail!("`region` `{}` is not a Region name", self.region);
        }
        if let Some(arn) = &self.product_arn {
            if !arn.starts_with("arn:") || !arn.contains(":securityhub:") {
                bail!("`product_arn` `{arn}` is not a Security Hub product ARN");
            }
        }
        Ok(())
    }

    fn product_arn(&self) -> String {
        self.product_arn.clone().unwrap_or_else(|| {
            format!("arn:aws:securityhub:{}:{}:product/{}/default", self.region, self.account_id, self.account_id)
        })
    }
}

pub struct SecurityHubSink {
    client: HttpClient,
    credentials: aws_credential_types::provider::SharedCredentialsProvider,
    /// The last credentials the provider gave, reused until five minutes before they expire
    /// (the provider itself does not cache: an assumed role would be assumed for every call).
    cached: Option<aws_credential_types::Credentials>,
    region: String,
    account_id: String,
    product_arn: String,
    last_call: Option<Instant>,
}

impl SecurityHubSink {
    pub async fn new(config: &SecurityHubConfig, endpoint_url: Option<&str>) -> anyhow::Result<Self> {
        config.check()?;
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .load()
            .await;
        let credentials = shared.credentials_provider().context("no AWS credentials are configured")?;
        let url = match endpoint_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://securityhub.{}.amazonaws.com", config.region),
        };
        // Plaintext only for an endpoint override (a local AWS-compatible server).
        let target = Target::parse(&url, endpoint_url.is_some()).context("the Security Hub endpoint")?;
        Ok(Self {
            client: HttpClient::new(target, None)?,
            credentials,
            cached: None,
            region: config.region.clone(),
            account_id: config.account_id.clone(),
            product_arn: config.product_arn(),
            last_call: None,
        })
    }

    /// Delivers the batch in as many calls as its size needs (each within 6 MB). A call that
    /// fails (an error answer, throttling included) is retried with the whole batch; a finding
    /// Security Hub refuses by itself (`FailedFindings`: invalid input, which a retry cannot
    /// change) and a finding over 240 KB (not reachable with Estate's bounded findings) are
    /// logged and not retried, so that one finding cannot stop the sink.
    pub async fn deliver(&mut self, batch: &[Finding]) -> Result<(), String> {
        let mut calls: Vec<Vec<serde_json::Value>> = vec![Vec::new()];
        let mut bytes = 0;
        for finding in batch {
            let asff = asff(finding, &self.account_id, &self.product_arn);
            let size = asff.to_string().len() + 1;
            if size > MAX_FINDING_BYTES {
                tracing::error!(finding = %finding.id, size, "finding over Security Hub's 240 KB in ASFF; not imported");
                continue;
            }
            if bytes + size > MAX_CALL_BYTES {
                calls.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            calls.last_mut().expect("one call at least").push(asff);
        }
        for findings in calls.into_iter().filter(|c| !c.is_empty()) {
            self.import(findings).await?;
        }
        Ok(())
    }

    async fn import(&mut self, findings: Vec<serde_json::Value>) -> Result<(), String> {
        if let Some(last) = self.last_call {
            let wait = MIN_CALL_INTERVAL.saturating_sub(last.elapsed());
            tokio::time::sleep(wait).await;
        }
        self.last_call = Some(Instant::now());
        let count = findings.len();
        let body = json!({"Findings": findings}).to_string().into_bytes();
        let headers = self.sign("/findings/import", &body).await?;
        let (status, answer) = self.client.post("/findings/import", &headers, body).await?;
        let text = String::from_utf8_lossy(&answer);
        if !status.is_success() {
            let brief: String = text.chars().take(300).collect();
            return Err(format!("BatchImportFindings answered {status}: {}", estate_common::text::for_log(&brief)));
        }
        let answer: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("BatchImportFindings' answer is not JSON: {e}"))?;
        for failed in answer["FailedFindings"].as_array().into_iter().flatten() {
            tracing::error!(
                finding = %estate_common::text::for_log(failed["Id"].as_str().unwrap_or("?")),
                code = %estate_common::text::for_log(failed["ErrorCode"].as_str().unwrap_or("?")),
                message = %estate_common::text::for_log(failed["ErrorMessage"].as_str().unwrap_or("")),
                of = count,
                "Security Hub refused a finding; it is not retried"
            );
        }
        Ok(())
    }

    /// The request's headers, SigV4-signed for `securityhub` in the sink's Region.
    async fn sign(&mut self, path: &str, body: &[u8]) -> Result<Vec<(&'static str, String)>, String> {
        let fresh = |c: &aws_credential_types::Credentials| {
            c.expiry().is_none_or(|at| at > SystemTime::now() + Duration::from_secs(300))
        };
        let credentials = match self.cached.clone().filter(fresh) {
            Some(credentials) => credentials,
            None => {
                let credentials =
                    self.credentials.provide_credentials().await.map_err(|e| format!("AWS credentials: {e}"))?;
                self.cached = Some(credentials.clone());
                credentials
            }
        };
        let identity = credentials.into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("securityhub")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("signing: {e}"))?
            .into();
        let scheme = if self.client.target.https { "https" } else { "http" };
        let url = format!("{scheme}://{}{path}", self.client.target.authority);
        // Security Hub speaks REST-JSON.
        let content_type = "application/json";
        let unsigned = [("host", self.client.target.authority.as_str()), ("content-type", content_type)];
        let signable = SignableRequest::new("POST", url, unsigned.into_iter(), SignableBody::Bytes(body))
            .map_err(|e| format!("signing: {e}"))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| format!("signing: {e}"))?.into_parts();
        let mut headers = vec![("content-type", content_type.to_owned())];
        for (name, value) in instructions.headers() {
            let name = match name.to_ascii_lowercase().as_str() {
                "authorization" => "authorization",
                "x-amz-date" => "x-amz-date",
                "x-amz-security-token" => "x-amz-security-token",
                "x-amz-content-sha256" => "x-amz-content-sha256",
                _ => continue,
            };
            headers.push((name, value.to_owned()));
        }
        Ok(headers)
    }
}

/// Macie's mapping of its policy findings to ASFF `Types`.
fn asff_type(kind: FindingType) -> String {
    let name = kind.as_str().replace("Policy:IAMUser/", "Policy:IAMUser-");
    match kind {
        FindingType::S3BlockPublicAccessDisabled | FindingType::S3BucketEncryptionDisabled => {
            format!("Software and Configuration Checks/AWS Security Best Practices/{name}")
        }
        _ => format!("Effects/Data Exposure/{name}"),
    }
}

/// A finding in the AWS Security Finding Format.
pub fn asff(f: &Finding, account_id: &str, product_arn: &str) -> serde_json::Value {
    let iso = |ms| Timestamp(ms).to_iso8601();
    let (severity, _) = f.kind.severity();
    let arn = format!("arn:aws:s3:::{}", f.bucket_name);
    let mut details = json!({"OwnerAccountId": f.account_id.to_string()});
    let mut tags = serde_json::Map::new();
    if let Some(state) = &f.bucket_state {
        details["CreatedAt"] = json!(iso(state.created_at));
        if let Some(owner) = &state.owner_id {
            details["OwnerId"] = json!(owner);
        }
        if let Some(sse) = &state.default_encryption {
            if let Some(kind) = sse.kind.filter(|k| *k != EncryptionType::None) {
                let mut rule = json!({"SSEAlgorithm": kind.as_str()});
                if let Some(key) = &sse.kms_master_key_id {
                    rule["KMSMasterKeyID"] = json!(key);
                }
                details["ServerSideEncryptionConfiguration"] =
                    json!({"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]});
            }
        }
        if let Some(bucket) = state.public_access.as_ref().and_then(|p| p.permission_configuration.as_ref()) {
            let block = bucket.bucket_level_permissions.block_public_access;
            details["PublicAccessBlockConfiguration"] = json!({
                "BlockPublicAcls": block.block_public_acls,
                "BlockPublicPolicy": block.block_public_policy,
                "IgnorePublicAcls": block.ignore_public_acls,
                "RestrictPublicBuckets": block.restrict_public_buckets,
            });
        }
        // ASFF holds at most 50 tags; S3 allows 50.
        for t in state.tags.iter().take(50) {
            tags.insert(t.key.clone(), json!(t.value));
        }
    }
    let mut resource = json!({
        "Type": "AwsS3Bucket",
        "Id": arn,
        "Partition": "aws",
        "Region": f.region.to_string(),
        "Details": {"AwsS3Bucket": details},
    });
    if !tags.is_empty() {
        resource["Tags"] = serde_json::Value::Object(tags);
    }
    let mut fields = serde_json::Map::new();
    fields.insert("estate/findingType".into(), json!(f.kind.as_str()));
    fields.insert("estate/count".into(), json!(f.count.to_string()));
    fields.insert("estate/sequence".into(), json!(f.sequence.to_string()));
    if let Some(api) = &f.last_action.api {
        fields.insert("estate/api".into(), json!(api));
    }
    if let Some(arn) = f.last_action.actor.as_ref().and_then(|a| a.arn.as_ref()) {
        fields.insert("estate/actor".into(), json!(arn));
    }
    let description: String = f.kind.description(&f.bucket_name).chars().take(1024).collect();
    json!({
        "SchemaVersion": "2018-10-08",
        "Id": f.id,
        "ProductArn": product_arn,
        "GeneratorId": format!("estate/{}", f.kind.as_str()),
        "AwsAccountId": account_id,
        "Types": [asff_type(f.kind)],
        "FirstObservedAt": iso(f.first_action.event_time),
        "LastObservedAt": iso(f.last_action.event_time),
        "CreatedAt": iso(f.created_at),
        "UpdatedAt": iso(f.updated_at),
        "Severity": {"Label": severity.to_ascii_uppercase(), "Original": severity},
        "Title": f.kind.title(),
        "Description": description,
        "ProductName": "Estate",
        "CompanyName": "Estate",
        "Resources": [resource],
        "ProductFields": fields,
        "RecordState": "ACTIVE",
        "Workflow": {"Status": "NEW"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_follow_macies_mapping_and_required_members_are_there() {
        assert_eq!(asff_type(FindingType::S3BucketPublic), "Effects/Data Exposure/Policy:IAMUser-S3BucketPublic");
        assert_eq!(
            asff_type(FindingType::S3BucketEncryptionDisabled),
            "Software and Configuration Checks/AWS Security Best Practices/Policy:IAMUser-S3BucketEncryptionDisabled"
        );
        let finding = Finding {
            id: "f".into(),
            kind: FindingType::S3BucketSharedExternally,
            account_id: estate_common::model::AccountId::parse("111111111111").unwrap(),
            region: estate_common::model::Region::parse("eu-west-1").unwrap(),
            bucket_name: "b".into(),
            created_at: 1_700_000_000_000,
            updated_at: 1_700_000_000_000,
            count: 1,
            archived: false,
            first_action: estate_common::findings::Cause::refresh(1_700_000_000_000),
            last_action: estate_common::findings::Cause::refresh(1_700_000_000_000),
            bucket_state: None,
            suppressed_by: None,
            sequence: 3,
        };
        let doc =
            asff(&finding, "222222222222", "arn:aws:securityhub:eu-west-1:222222222222:product/222222222222/default");
        // The members ASFF requires for BatchImportFindings.
        for member in [
            "SchemaVersion",
            "Id",
            "ProductArn",
            "GeneratorId",
            "AwsAccountId",
            "CreatedAt",
            "UpdatedAt",
            "Severity",
            "Title",
            "Description",
            "Resources",
        ] {
            assert!(doc.get(member).is_some(), "{member} missing: {doc}");
        }
        assert_eq!(doc["AwsAccountId"], "222222222222", "the caller's account, not the bucket's");
        assert_eq!(doc["Resources"][0]["Details"]["AwsS3Bucket"]["OwnerAccountId"], "111111111111");
        assert_eq!(doc["Severity"]["Label"], "HIGH");
    }
}
