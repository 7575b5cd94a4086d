//! `estatectl`: the command-line client of the administrator.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use estate_common::macie::{BucketMetadata, BucketStatistics, Member, PostureBucket};
use estate_common::pb::{self, inventory_service_client::InventoryServiceClient};
use estate_common::transport::{self, ClientTls};

#[derive(Debug, Parser)]
#[command(name = "estatectl", version, about = "Query Estate's administrator: inventory, statistics, members")]
struct Cli {
    /// The administrator's gRPC URL.
    #[arg(long, env = "ESTATE_ENDPOINT", default_value = "http://127.0.0.1:50051", global = true)]
    endpoint: String,
    /// A client token from the administrator's config.
    #[arg(long, env = "ESTATE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Trust anchors (PEM) for the administrator's certificate; the system's roots without.
    #[arg(long, env = "ESTATE_CA", global = true)]
    ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, env = "ESTATE_CERT", requires = "key", global = true)]
    cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "ESTATE_KEY", requires = "cert", global = true)]
    key: Option<std::path::PathBuf>,
    /// Output format. JSON uses Amazon Macie's field names and enum strings.
    #[arg(long, short, env = "ESTATE_OUTPUT", value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Organization-wide bucket statistics (GetBucketStatistics).
    Stats {
        /// Only this account.
        #[arg(long)]
        account_id: Option<String>,
    },
    /// List buckets (DescribeBuckets) with Macie's criteria, sort and paging.
    Buckets {
        /// A criterion: FIELD=V (eq; repeat for OR), FIELD!=V (neq), FIELD>N, FIELD>=N, FIELD<N,
        /// FIELD<=N, FIELD^=PREFIX. FIELD is a Macie bucket property (accountId, bucketName,
        /// sharedAccess, publicAccess.effectivePermission, ...).
        #[arg(long = "where", value_name = "CRITERION")]
        criteria: Vec<String>,
        /// Criteria as Macie's JSON map, e.g. '{"sharedAccess":{"eq":["EXTERNAL"]}}'.
        #[arg(long, conflicts_with = "criteria")]
        criteria_json: Option<String>,
        /// Sort attribute: accountId, bucketName, objectCount, sizeInBytes,
        /// classifiableObjectCount, classifiableSizeInBytes.
        #[arg(long)]
        sort: Option<String>,
        /// Sort descending.
        #[arg(long)]
        desc: bool,
        /// Page size (1 to 1000).
        #[arg(long, default_value_t = 50)]
        max_results: i32,
        /// Continue from a previous page.
        #[arg(long)]
        next_token: Option<String>,
        /// Follow every page.
        #[arg(long)]
        all: bool,
    },
    /// One bucket's full metadata.
    Bucket { name: String },
    /// Member accounts: Regions, connection, freshness.
    Members,
    /// Policy findings (ListFindings + GetFindings), Macie's shape in JSON.
    Findings {
        /// A criterion: FIELD=V, FIELD!=V, FIELD>N, >=, <, <= on type, severity.description,
        /// severity.score, accountId, region, resourcesAffected.s3Bucket.name, archived,
        /// createdAt, updatedAt, count.
        #[arg(long = "where", value_name = "CRITERION")]
        criteria: Vec<String>,
        /// Sort attribute: updatedAt (default), createdAt, count, severity.score, type.
        #[arg(long)]
        sort: Option<String>,
        /// Sort ascending (newest first by default).
        #[arg(long)]
        asc: bool,
        /// Group and count instead: type, severity.description,
        /// resourcesAffected.s3Bucket.name, accountId.
        #[arg(long)]
        group_by: Option<String>,
    },
    /// Print new and updated findings as they happen (one JSON object per line with
    /// `--output json`); `--cursor` replays everything after a sequence number first.
    Watch {
        #[arg(long, default_value_t = 0)]
        cursor: u64,
        /// Stop after this many findings.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Every bucket that is public, shared (outside or inside the organization), replicated
    /// outside it or accepts unencrypted uploads right now, whether or not it was so at first
    /// sight (GetPosture).
    Posture {
        /// Only this account's buckets.
        #[arg(long)]
        account_id: Option<String>,
    },
    /// Offline policy reasoning (no administrator needed).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Ask agents to refresh now (at most once per five minutes per scope), or recount one
    /// bucket's objects now (`--objects BUCKET`, buckets of at most 30,000 objects).
    Refresh {
        /// Only this account.
        #[arg(long, conflicts_with = "objects")]
        account_id: Option<String>,
        /// Only these Regions (comma-separated).
        #[arg(long, value_delimiter = ',', conflicts_with = "objects")]
        regions: Vec<String>,
        /// Recount this bucket's objects instead.
        #[arg(long, value_name = "BUCKET")]
        objects: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Decide whether a bucket policy makes the bucket public, shares it (inside or outside
    /// the organization, with CloudFront) or lets unencrypted uploads in; with a witness
    /// request for every yes. Exit status 0 whenever the analysis ran.
    Analyze {
        /// The policy document; `-` for standard input.
        file: String,
        /// The account that owns the bucket.
        #[arg(long)]
        owner: String,
        /// The organization's ID (`o-...`).
        #[arg(long)]
        organization_id: Option<String>,
        /// The organization's accounts, comma-separated (the owner is always inside).
        #[arg(long, value_delimiter = ',')]
        organization_accounts: Vec<String>,
        /// The bucket the policy is attached to (its name appears in resource ARNs).
        #[arg(long, default_value = "example-bucket")]
        bucket: String,
        /// Time budget of the whole analysis (every question and the work before the solver),
        /// in milliseconds; what is left undecided when it runs out is UNKNOWN.
        #[arg(long, alias = "timeout-ms", default_value_t = estate_administrator::server::defaults::POLICY_BUDGET_MS,
              value_parser = clap::value_parser!(u64).range(1..=600_000))]
        budget_ms: u64,
    },
}

fn analyze_policy(output: Output, command: PolicyCommand) -> anyhow::Result<()> {
    let PolicyCommand::Analyze { file, owner, organization_id, organization_accounts, bucket, budget_ms } = command;
    if !estate_common::model::is_account_id(&owner) {
        bail!("`--owner` `{owner}` is not a 12-digit account ID");
    }
    if let Some(bad) = organization_accounts.iter().find(|a| !estate_common::model::is_account_id(a)) {
        bail!("`--organization-accounts` holds `{bad}`, which is not a 12-digit account ID");
    }
    let text = if file == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading the policy from standard input")?;
        text
    } else {
        std::fs::read_to_string(&file).with_context(|| format!("reading `{file}`"))?
    };
    let mut members: std::collections::BTreeSet<String> = organization_accounts.into_iter().collect();
    members.insert(owner.clone());
    let context = estate_policy::OrgContext {
        owner_account: owner,
        organization_id,
        member_accounts: std::sync::Arc::new(members),
        organization_paths: Vec::new(),
    };
    let options =
        estate_policy::AnalysisOptions { budget: std::time::Duration::from_millis(budget_ms), ..Default::default() };
    let analysis =
        estate_policy::analyze(&text, &bucket, &context, &options).context("the policy cannot be analysed")?;
    match output {
        Output::Json => print_json(&analysis),
        Output::Csv => bail!("`policy analyze` prints `table` or `json`"),
        Output::Table => {
            let value = serde_json::to_value(&analysis)?;
            let mut rows = Vec::new();
            flatten("", &value, &mut rows);
            print_rows(Output::Table, &["field", "value"], &rows)
        }
    }
}

fn parse_where(items: &[String]) -> anyhow::Result<BTreeMap<String, pb::BucketCriterion>> {
    let mut out: BTreeMap<String, pb::BucketCriterion> = BTreeMap::new();
    for item in items {
        // Longest operators first, so that `>=` is not read as `>`.
        let ops = ["!=", ">=", "<=", "^=", "=", ">", "<"];
        let Some((at, op)) = ops
            .iter()
            .filter_map(|op| item.find(op).map(|at| (at, *op)))
            .min_by_key(|(at, op)| (*at, -(op.len() as i64)))
        else {
            bail!("criterion `{item}` has no operator (=, !=, >, >=, <, <=, ^=)");
        };
        let (field, value) = (item[..at].trim(), item[at + op.len()..].trim());
        if field.is_empty() {
            bail!("criterion `{item}` names no field");
        }
        let c = out.entry(field.to_owned()).or_default();
        let number = || value.parse::<i64>().with_context(|| format!("`{value}` in `{item}` is not an integer"));
        match op {
            "=" => c.eq.push(value.to_owned()),
            "!=" => c.neq.push(value.to_owned()),
            "^=" => c.prefix = Some(value.to_owned()),
            ">" => c.gt = Some(number()?),
            ">=" => c.gte = Some(number()?),
            "<" => c.lt = Some(number()?),
            "<=" => c.lte = Some(number()?),
            _ => unreachable!("operators are listed above"),
        }
    }
    Ok(out)
}

fn parse_criteria_json(text: &str) -> anyhow::Result<BTreeMap<String, pb::BucketCriterion>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct C {
        #[serde(default)]
        eq: Vec<String>,
        #[serde(default)]
        neq: Vec<String>,
        gt: Option<i64>,
        gte: Option<i64>,
        lt: Option<i64>,
        lte: Option<i64>,
        prefix: Option<String>,
    }
    let map: BTreeMap<String, C> =
        serde_json::from_str(text).context("`--criteria-json` is not a map of Macie criteria")?;
    Ok(map
        .into_iter()
        .map(|(k, c)| {
            (
                k,
                pb::BucketCriterion {
                    eq: c.eq,
                    neq: c.neq,
                    gt: c.gt,
                    gte: c.gte,
                    lt: c.lt,
                    lte: c.lte,
                    prefix: c.prefix,
                },
            )
        })
        .collect())
}

struct Client {
    inner: InventoryServiceClient<Channel>,
    findings: estate_common::pb::findings_service_client::FindingsServiceClient<Channel>,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Client {
    async fn connect(endpoint: &str, tls: &ClientTls, token: Option<&str>) -> anyhow::Result<Self> {
        let channel = transport::endpoint(endpoint, tls)?.connect().await.with_context(|| {
            if endpoint.starts_with("https://") {
                format!("cannot reach the administrator at `{endpoint}` over TLS (is it serving plaintext, or is the CA wrong?)")
            } else {
                format!("cannot reach the administrator at `{endpoint}`")
            }
        })?;
        let token = token.map(|t| format!("Bearer {t}").parse()).transpose().context("the token is not valid ASCII")?;
        Ok(Self {
            inner: InventoryServiceClient::new(channel.clone()).max_decoding_message_size(64 * 1024 * 1024),
            findings: estate_common::pb::findings_service_client::FindingsServiceClient::new(channel)
                .max_decoding_message_size(64 * 1024 * 1024),
            token,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert("authorization", token.clone());
        }
        request
    }
}

/// The status, and for transport failures (a refused TLS handshake, a reset) their causes,
/// which `message` alone does not name.
fn status_error(status: tonic::Status) -> anyhow::Error {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(&status);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    anyhow::anyhow!(text)
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Prints rows as an aligned table or as CSV.
fn print_rows(output: Output, header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if output == Output::Csv {
        writeln!(out, "{}", header.join(","))?;
        for row in rows {
            writeln!(out, "{}", row.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","))?;
        }
        return Ok(());
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, f) in widths.iter_mut().zip(row) {
            *w = (*w).max(f.chars().count());
        }
    }
    let line =
        |fields: Vec<&str>| fields.iter().zip(&widths).map(|(f, w)| format!("{f:<w$}")).collect::<Vec<_>>().join("  ");
    writeln!(out, "{}", line(header.to_vec()).trim_end())?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()).trim_end())?;
    }
    Ok(())
}

fn finding_row(f: &estate_common::findings::Finding) -> Vec<String> {
    vec![
        estate_common::macie::Timestamp(f.updated_at).to_iso8601(),
        f.kind.as_str().to_owned(),
        f.kind.severity().0.to_owned(),
        f.account_id.clone(),
        f.region.clone(),
        f.bucket_name.clone(),
        f.count.to_string(),
        f.last_action.api.clone(),
        f.archived.to_string(),
    ]
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn stats_rows(s: &BucketStatistics) -> Vec<Vec<String>> {
    let p = s.bucket_count_by_effective_permission;
    let e = s.bucket_count_by_encryption_type;
    let r = s.bucket_count_by_object_encryption_requirement;
    let a = s.bucket_count_by_shared_access_type;
    let rows: Vec<(&str, String)> = vec![
        ("bucketCount", s.bucket_count.to_string()),
        ("bucketCountByEffectivePermission.publiclyAccessible", p.publicly_accessible.to_string()),
        ("bucketCountByEffectivePermission.publiclyReadable", p.publicly_readable.to_string()),
        ("bucketCountByEffectivePermission.publiclyWritable", p.publicly_writable.to_string()),
        ("bucketCountByEffectivePermission.unknown", p.unknown.to_string()),
        ("bucketCountByEncryptionType.kmsManaged", e.kms_managed.to_string()),
        ("bucketCountByEncryptionType.s3Managed", e.s3_managed.to_string()),
        ("bucketCountByEncryptionType.unencrypted", e.unencrypted.to_string()),
        ("bucketCountByEncryptionType.unknown", e.unknown.to_string()),
        (
            "bucketCountByObjectEncryptionRequirement.allowsUnencryptedObjectUploads",
            r.allows_unencrypted_object_uploads.to_string(),
        ),
        (
            "bucketCountByObjectEncryptionRequirement.deniesUnencryptedObjectUploads",
            r.denies_unencrypted_object_uploads.to_string(),
        ),
        ("bucketCountByObjectEncryptionRequirement.unknown", r.unknown.to_string()),
        ("bucketCountBySharedAccessType.external", a.external.to_string()),
        ("bucketCountBySharedAccessType.internal", a.internal.to_string()),
        ("bucketCountBySharedAccessType.notShared", a.not_shared.to_string()),
        ("bucketCountBySharedAccessType.unknown", a.unknown.to_string()),
        ("objectCount", s.object_count.to_string()),
        ("sizeInBytes", s.size_in_bytes.to_string()),
        ("sizeInBytesCompressed", s.size_in_bytes_compressed.to_string()),
        ("classifiableObjectCount", s.classifiable_object_count.to_string()),
        ("classifiableSizeInBytes", s.classifiable_size_in_bytes.to_string()),
        ("unclassifiableObjectCount.total", s.unclassifiable_object_count.total.to_string()),
        ("unclassifiableObjectSizeInBytes.total", s.unclassifiable_object_size_in_bytes.total.to_string()),
        ("lastUpdated", opt(s.last_updated.map(|t| t.to_iso8601()))),
    ];
    rows.into_iter().map(|(k, v)| vec![k.to_owned(), v]).collect()
}

const BUCKET_HEADER: &[&str] = &[
    "accountId",
    "region",
    "bucketName",
    "effectivePermission",
    "sharedAccess",
    "encryption",
    "allowsUnencryptedObjectUploads",
    "versioning",
    "replicatedExternally",
    "objectCount",
    "sizeInBytes",
    "errorCode",
];

fn bucket_row(b: &BucketMetadata) -> Vec<String> {
    vec![
        b.account_id.clone(),
        b.region.clone(),
        b.bucket_name.clone(),
        opt(b.public_access.as_ref().map(|p| p.effective_permission.as_str())),
        b.shared_access.as_str().to_owned(),
        opt(b.server_side_encryption.as_ref().and_then(|e| e.kind).map(|k| k.as_str())),
        b.allows_unencrypted_object_uploads.as_str().to_owned(),
        b.versioning.to_string(),
        opt(b.replication_details.as_ref().and_then(|r| r.replicated_externally)),
        opt(b.object_count),
        opt(b.size_in_bytes),
        opt(b.error_code.as_deref()),
    ]
}

fn member_rows(members: &[Member]) -> Vec<Vec<String>> {
    members
        .iter()
        .map(|m| {
            let regions = m
                .regions
                .iter()
                .map(|r| {
                    let updated = opt(r.last_updated.map(|t| t.to_iso8601()));
                    if r.refresh_total > 0 {
                        format!("{} ({}; refreshing {}/{})", r.region, updated, r.refresh_done, r.refresh_total)
                    } else {
                        format!("{} ({})", r.region, updated)
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                m.account_id.clone(),
                serde_json::to_value(m.relationship_status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                serde_json::to_value(m.connection_state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                opt(m.last_contact.map(|t| t.to_iso8601())),
                opt(m.last_updated.map(|t| t.to_iso8601())),
                m.bucket_count.to_string(),
                regions,
            ]
        })
        .collect()
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Policy { command } = cli.command {
        return analyze_policy(cli.output, command);
    }
    let tls = ClientTls { ca: cli.ca.clone(), cert: cli.cert.clone(), key: cli.key.clone() };
    let mut client = Client::connect(&cli.endpoint, &tls, cli.token.as_deref()).await?;
    match cli.command {
        Command::Policy { .. } => unreachable!("handled above, without a connection"),
        Command::Stats { account_id } => {
            let request = client.request(pb::GetBucketStatisticsRequest { account_id: account_id.unwrap_or_default() });
            let stats: BucketStatistics =
                client.inner.get_bucket_statistics(request).await.map_err(status_error)?.into_inner().into();
            match cli.output {
                Output::Json => print_json(&stats),
                output => print_rows(output, &["statistic", "value"], &stats_rows(&stats)),
            }
        }
        Command::Buckets { criteria, criteria_json, sort, desc, max_results, next_token, all } => {
            let criteria = match criteria_json {
                Some(json) => parse_criteria_json(&json)?,
                None => parse_where(&criteria)?,
            };
            let sort_criteria = sort.map(|attribute_name| pb::BucketSortCriteria {
                attribute_name,
                order_by: if desc { pb::OrderBy::Desc } else { pb::OrderBy::Asc }.into(),
            });
            let mut token = next_token.unwrap_or_default();
            let mut buckets = Vec::new();
            loop {
                let request = client.request(pb::DescribeBucketsRequest {
                    criteria: criteria.clone().into_iter().collect(),
                    sort_criteria: sort_criteria.clone(),
                    max_results,
                    next_token: token.clone(),
                });
                let page = client.inner.describe_buckets(request).await.map_err(status_error)?.into_inner();
                buckets.extend(page.buckets.into_iter().map(BucketMetadata::from));
                token = page.next_token;
                if !all || token.is_empty() {
                    break;
                }
            }
            match cli.output {
                Output::Json => print_json(&serde_json::json!({
                    "buckets": buckets,
                    "nextToken": (!token.is_empty()).then_some(token),
                })),
                output => {
                    print_rows(output, BUCKET_HEADER, &buckets.iter().map(bucket_row).collect::<Vec<_>>())?;
                    if output == Output::Table && !token.is_empty() {
                        eprintln!("more: --next-token {token}");
                    }
                    Ok(())
                }
            }
        }
        Command::Bucket { name } => {
            let criteria =
                [("bucketName".to_owned(), pb::BucketCriterion { eq: vec![name.clone()], ..Default::default() })];
            let request = client.request(pb::DescribeBucketsRequest {
                criteria: criteria.into_iter().collect(),
                max_results: 10,
                ..Default::default()
            });
            let page = client.inner.describe_buckets(request).await.map_err(status_error)?.into_inner();
            let Some(bucket) = page.buckets.into_iter().next().map(BucketMetadata::from) else {
                bail!("no bucket named `{name}` in the inventory");
            };
            match cli.output {
                Output::Json => print_json(&bucket),
                Output::Csv => print_rows(Output::Csv, BUCKET_HEADER, &[bucket_row(&bucket)]),
                Output::Table => {
                    let value = serde_json::to_value(&bucket)?;
                    let mut rows = Vec::new();
                    flatten("", &value, &mut rows);
                    print_rows(Output::Table, &["field", "value"], &rows)
                }
            }
        }
        Command::Refresh { objects: Some(bucket), .. } => {
            let request = client.request(pb::RefreshObjectMetadataRequest { bucket_name: bucket.clone() });
            let out = client.inner.refresh_object_metadata(request).await.map_err(status_error)?.into_inner();
            match cli.output {
                Output::Json => print_json(&serde_json::json!({
                    "bucketName": bucket, "accountId": out.account_id, "region": out.region, "requested": true,
                })),
                output => print_rows(
                    output,
                    &["bucketName", "accountId", "region", "requested"],
                    &[vec![bucket, out.account_id, out.region, "true".into()]],
                ),
            }
        }
        Command::Refresh { account_id, regions, objects: None } => {
            let request =
                client.request(pb::RefreshInventoryRequest { account_id: account_id.unwrap_or_default(), regions });
            let out = client.inner.refresh_inventory(request).await.map_err(status_error)?.into_inner();
            let when = |ms: i64| estate_common::macie::Timestamp::from_millis(ms).map(|t| t.to_iso8601());
            match cli.output {
                Output::Json => print_json(&serde_json::json!({
                    "scopes": out.scopes.iter().map(|s| serde_json::json!({
                        "accountId": s.account_id,
                        "region": s.region,
                        "requested": s.requested,
                        "lastRefresh": when(s.last_refresh_ms),
                        "reason": (!s.reason.is_empty()).then_some(&s.reason),
                    })).collect::<Vec<_>>(),
                })),
                output => print_rows(
                    output,
                    &["accountId", "region", "requested", "lastRefresh", "reason"],
                    &out.scopes
                        .iter()
                        .map(|s| {
                            vec![
                                s.account_id.clone(),
                                s.region.clone(),
                                s.requested.to_string(),
                                opt(when(s.last_refresh_ms)),
                                s.reason.clone(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        Command::Findings { criteria, sort, asc, group_by } => {
            let criteria: std::collections::HashMap<String, pb::FindingCriterion> = parse_where(&criteria)?
                .into_iter()
                .map(|(k, c)| {
                    (k, pb::FindingCriterion { eq: c.eq, neq: c.neq, gt: c.gt, gte: c.gte, lt: c.lt, lte: c.lte })
                })
                .collect();
            if let Some(group_by) = group_by {
                let request = client.request(pb::GetFindingStatisticsRequest { criteria, group_by });
                let out = client.findings.get_finding_statistics(request).await.map_err(status_error)?.into_inner();
                return match cli.output {
                    Output::Json => print_json(&serde_json::json!({
                        "countsByGroup": out.counts_by_group.iter().map(|g| serde_json::json!({"groupKey": g.group_key, "count": g.count})).collect::<Vec<_>>(),
                    })),
                    output => print_rows(
                        output,
                        &["groupKey", "count"],
                        &out.counts_by_group
                            .iter()
                            .map(|g| vec![g.group_key.clone(), g.count.to_string()])
                            .collect::<Vec<_>>(),
                    ),
                };
            }
            let mut ids = Vec::new();
            let mut token = String::new();
            loop {
                let request = client.request(pb::ListFindingsRequest {
                    criteria: criteria.clone(),
                    sort_attribute: sort.clone().unwrap_or_default(),
                    descending: !asc,
                    max_results: 1000,
                    next_token: token,
                });
                let page = client.findings.list_findings(request).await.map_err(status_error)?.into_inner();
                ids.extend(page.finding_ids);
                token = page.next_token;
                if token.is_empty() {
                    break;
                }
            }
            let mut findings = Vec::new();
            for chunk in ids.chunks(500) {
                let request = client.request(pb::GetFindingsRequest { finding_ids: chunk.to_vec() });
                let page = client.findings.get_findings(request).await.map_err(status_error)?.into_inner();
                for f in page.findings {
                    findings.push(estate_common::findings::Finding::try_from(f).map_err(|e| anyhow::anyhow!("{e}"))?);
                }
            }
            match cli.output {
                Output::Json => print_json(&serde_json::json!({
                    "findings": findings.iter().map(|f| f.to_macie_json()).collect::<Vec<_>>(),
                })),
                output => print_rows(
                    output,
                    &["updatedAt", "type", "severity", "accountId", "region", "bucket", "count", "api", "archived"],
                    &findings.iter().map(finding_row).collect::<Vec<_>>(),
                ),
            }
        }
        Command::Watch { cursor, limit } => {
            let request = client.request(pb::WatchFindingsRequest { cursor });
            let mut stream = client.findings.watch_findings(request).await.map_err(status_error)?.into_inner();
            let mut seen = 0;
            if cli.output != Output::Json {
                print_rows(
                    cli.output,
                    &["updatedAt", "type", "severity", "accountId", "region", "bucket", "count", "api", "archived"],
                    &[],
                )?;
            }
            while let Some(message) = stream.message().await.map_err(status_error)? {
                let Some(finding) = message.finding else { continue };
                let finding =
                    estate_common::findings::Finding::try_from(finding).map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut out = std::io::stdout().lock();
                match cli.output {
                    Output::Json => writeln!(out, "{}", finding.to_macie_json())?,
                    Output::Csv => writeln!(
                        out,
                        "{}",
                        finding_row(&finding).iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",")
                    )?,
                    Output::Table => writeln!(out, "{}", finding_row(&finding).join("  "))?,
                }
                out.flush()?;
                seen += 1;
                if limit.is_some_and(|l| seen >= l) {
                    break;
                }
            }
            Ok(())
        }
        Command::Posture { account_id } => {
            let mut buckets = Vec::new();
            let mut token = String::new();
            loop {
                let request = client.request(pb::GetPostureRequest {
                    account_id: account_id.clone().unwrap_or_default(),
                    max_results: 1000,
                    next_token: token,
                });
                let page = client.inner.get_posture(request).await.map_err(status_error)?.into_inner();
                for b in page.buckets {
                    buckets.push(
                        PostureBucket::try_from(b).map_err(|e| anyhow::anyhow!("the administrator's answer: {e}"))?,
                    );
                }
                token = page.next_token;
                if token.is_empty() {
                    break;
                }
            }
            match cli.output {
                Output::Json => print_json(&serde_json::json!({
                    "buckets": buckets.iter().map(|b| serde_json::json!({
                        "accountId": b.account_id, "region": b.region, "bucketName": b.bucket_name,
                        "reasons": b.reasons.iter().map(|r| r.describe()).collect::<Vec<_>>(),
                        "sharedWithAccounts": b.shared_with_accounts,
                        "sharedInternallyWith": b.shared_internally_with,
                        "effectivePermission": b.effective_permission.as_str(),
                        "sharedAccess": b.shared_access.as_str(),
                    })).collect::<Vec<_>>(),
                })),
                output => print_rows(
                    output,
                    &["accountId", "region", "bucketName", "reasons", "sharedWithAccounts"],
                    &buckets
                        .iter()
                        .map(|b| {
                            vec![
                                b.account_id.clone(),
                                b.region.clone(),
                                b.bucket_name.clone(),
                                b.reasons.iter().map(|r| r.describe()).collect::<Vec<_>>().join("; "),
                                b.shared_with_accounts.join(" "),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        Command::Members => {
            let mut members = Vec::new();
            let mut token = String::new();
            loop {
                let request = client.request(pb::ListMembersRequest { max_results: 1000, next_token: token });
                let page = client.inner.list_members(request).await.map_err(status_error)?.into_inner();
                members.extend(page.members.into_iter().map(Member::from));
                token = page.next_token;
                if token.is_empty() {
                    break;
                }
            }
            match cli.output {
                Output::Json => print_json(&serde_json::json!({ "members": members })),
                output => print_rows(
                    output,
                    &["accountId", "status", "connection", "lastContact", "lastUpdated", "buckets", "regions"],
                    &member_rows(&members),
                ),
            }
        }
    }
}

/// `a.b.c = value` rows of a JSON document.
fn flatten(prefix: &str, value: &serde_json::Value, rows: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, rows);
            }
        }
        serde_json::Value::Array(items) if items.iter().all(|i| !i.is_object()) => {
            let text =
                items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned)).collect::<Vec<_>>();
            rows.push(vec![prefix.to_owned(), text.join(", ")]);
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), item, rows);
            }
        }
        serde_json::Value::Null => rows.push(vec![prefix.to_owned(), "-".to_owned()]),
        serde_json::Value::String(s) => rows.push(vec![prefix.to_owned(), s.clone()]),
        other => rows.push(vec![prefix.to_owned(), other.to_string()]),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let over_tls = cli.endpoint.starts_with("https://");
    let with_certificate = cli.cert.is_some();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`estatectl buckets | head`) is not an error of ours.
        Err(error)
            if error.chain().any(|e| {
                e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("estatectl: {error:#}");
            // Over TLS 1.3 the server judges the client's certificate after the client has
            // finished its handshake, so a refusal arrives as a closed connection.
            if over_tls && format!("{error:#}").contains("transport error") {
                eprintln!(
                    "estatectl: the administrator closed the TLS connection; {}",
                    if with_certificate {
                        "check that it trusts the CA of `--cert` and that the certificate has not expired"
                    } else {
                        "it may require a client certificate (`--cert` and `--key`)"
                    }
                );
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_clauses() {
        let c = parse_where(&[
            "sizeInBytes>=10".into(),
            "bucketName^=logs-".into(),
            "sharedAccess=EXTERNAL".into(),
            "sharedAccess=INTERNAL".into(),
            "accountId!=1".into(),
        ])
        .unwrap();
        assert_eq!(c["sizeInBytes"].gte, Some(10));
        assert_eq!(c["bucketName"].prefix.as_deref(), Some("logs-"));
        assert_eq!(c["sharedAccess"].eq, vec!["EXTERNAL", "INTERNAL"]);
        assert_eq!(c["accountId"].neq, vec!["1"]);
        assert!(parse_where(&["nonsense".into()]).is_err());
        assert!(parse_where(&["sizeInBytes>ten".into()]).is_err());
    }
}
