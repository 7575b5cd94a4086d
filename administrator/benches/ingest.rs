//! Ingest and query benchmark of the administrator (run with `cargo bench -p
//! estate-administrator --bench ingest`): N concurrent synthetic agent streams × M buckets
//! each against a running administrator (in process, on loopback gRPC). Prints the durable
//! ingest rate, acknowledgement latency, the raw rate of batched sled inserts of the same
//! records (the ceiling) measured in the same run, statistics and filtered-page latencies
//! with everything stored, and peak memory. `ESTATE_BENCH_STREAMS` and
//! `ESTATE_BENCH_BUCKETS_PER_STREAM` override the defaults (64 × 15,625 = 1,000,000).
//!
//! `-- --rejudge` measures ingest alone and while an organization change has every bucket
//! policy judged again (20,000 distinct policies by default), in the same run.
//!
//! `-- --durability` measures what syncing the store to stable storage before each
//! acknowledgement costs: ingest with and without the `fdatasync` (64 streams × 2,000
//! buckets). `-- --tls` compares TLS (a throwaway CA, TLS 1.3) with plaintext (16 streams ×
//! 4,000 buckets). Both run each ingest in a child process of its own (no administrator
//! outlives its run), in ABBA order, 6 runs of each (`ESTATE_BENCH_ROUNDS`), and print each
//! mode's median and range and the ratio pair by pair.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use estate_common::model::{
    Acl, AclGrant, AclPermission, BlockPublicAccess, BucketConfig, BucketFacts, BucketKey, BucketState,
    DefaultEncryption, Grantee, ObjectOwnership, Tag, ALL_USERS_GROUP,
};
use estate_common::pb::{
    self, agent_service_client::AgentServiceClient, inventory_service_client::InventoryServiceClient,
};
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// Messages a synthetic agent keeps unacknowledged.
const WINDOW: usize = 512;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn account(stream: usize) -> String {
    format!("{:012}", 100_000_000_000u64 + stream as u64)
}

/// Streams numbered from here report buckets with policies (the re-judge benchmark).
const POLICY_STREAMS: usize = 1000;

/// A distinct policy per bucket: a cross-account read grant (to an account inside the
/// organization or not), fenced to TLS and, every third one, to a VPC endpoint.
fn bucket_policy(stream: usize, i: usize) -> String {
    let bucket = format!("bench-{stream:03}-{i:07}");
    let grantee = format!("{:012}", 200_000_000_000u64 + (i % 50) as u64);
    let vpce = if i.is_multiple_of(3) {
        format!(
            r#",{{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::{bucket}/*","Condition":{{"StringNotEquals":{{"aws:SourceVpce":"vpce-{i:08x}"}}}}}}"#
        )
    } else {
        String::new()
    };
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{grantee}:root"}},"Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}},{{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::{bucket}/*","Condition":{{"Bool":{{"aws:SecureTransport":"false"}}}}}}{vpce}]}}"#
    )
}

/// A realistic bucket: tags, an ACL, block public access, default encryption; one in ten is
/// public through its ACL.
fn facts(stream: usize, i: usize) -> BucketFacts {
    let owner = format!("{:064x}", stream);
    let mut grants =
        vec![AclGrant { grantee: Grantee::CanonicalUser(owner.clone()), permission: AclPermission::FullControl }];
    if i.is_multiple_of(10) {
        grants.push(AclGrant { grantee: Grantee::Group(ALL_USERS_GROUP.into()), permission: AclPermission::Read });
    }
    BucketFacts {
        key: BucketKey::parse(
            &account(stream),
            if i.is_multiple_of(2) { "us-east-1" } else { "eu-west-1" },
            &format!("bench-{stream:03}-{i:07}"),
        )
        .expect("the bench's names are valid"),
        created_at: 1_700_000_000_000 + i as i64,
        read_at: 1_700_000_100_000,
        state: BucketState::Readable(Box::new(BucketConfig {
            tags: vec![
                Tag { key: "team".into(), value: format!("team-{}", i % 17) },
                Tag { key: "env".into(), value: "prod".into() },
            ],
            versioning: i.is_multiple_of(3),
            default_encryption: Some(DefaultEncryption { algorithm: "AES256".into(), kms_master_key_id: None }),
            block_public_access: (!i.is_multiple_of(10)).then_some(BlockPublicAccess {
                block_public_acls: true,
                ignore_public_acls: true,
                block_public_policy: true,
                restrict_public_buckets: true,
            }),
            acl: Some(Acl { owner_canonical_id: owner, grants }),
            object_ownership: Some(ObjectOwnership::BucketOwnerPreferred),
            policy: (stream >= POLICY_STREAMS).then(|| bucket_policy(stream, i)),
            policy_status_public: None,
            replication: None,
            objects: None,
            unread: Vec::new(),
        })),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The ceiling: the same records, encoded as the store encodes them, in batches of the
/// committer's size, one flush per batch.
fn raw_sled_rate(streams: usize, per_stream: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).cache_capacity(256 * 1024 * 1024).open().unwrap();
    let tree = db.open_tree("buckets").unwrap();
    let started = Instant::now();
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    for i in 0..per_stream {
        for stream in 0..streams {
            let f = facts(stream, i);
            batch.insert(f.key.encode(), postcard::to_allocvec(&(f, 1u64)).unwrap());
            in_batch += 1;
            if in_batch == 16_384 {
                tree.apply_batch(std::mem::take(&mut batch)).unwrap();
                db.flush().unwrap();
                in_batch = 0;
            }
        }
    }
    tree.apply_batch(batch).unwrap();
    db.flush().unwrap();
    (streams * per_stream) as f64 / started.elapsed().as_secs_f64()
}

async fn run_stream(endpoint: Endpoint, stream: usize, per_stream: usize) -> Vec<Duration> {
    let mut client = AgentServiceClient::new(endpoint.connect().await.unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ReportRequest>(1024);
    let hello = pb::Hello {
        account_id: account(stream),
        regions: vec!["us-east-1".into(), "eu-west-1".into()],
        canonical_user_id: format!("{:064x}", stream),
        agent_version: "bench".into(),
        completed: Vec::new(),
        problem: String::new(),
    };
    tx.send(pb::ReportRequest { seq: 0, body: Some(pb::report_request::Body::Hello(hello)) }).await.unwrap();
    let mut acks = client.report(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let sent_at = std::sync::Arc::new(std::sync::Mutex::new(VecDeque::<(u64, Instant)>::new()));
    // Like the real agent's outbox, a stream keeps a bounded number of messages unacknowledged.
    let window = std::sync::Arc::new(tokio::sync::Semaphore::new(WINDOW));
    let total = per_stream as u64 + 3;
    let sender = {
        let sent_at = sent_at.clone();
        let window = window.clone();
        tokio::spawn(async move {
            let mut seq = 0;
            let mut send = |body| {
                seq += 1;
                sent_at.lock().unwrap().push_back((seq, Instant::now()));
                pb::ReportRequest { seq, body: Some(body) }
            };
            macro_rules! send {
                ($body:expr) => {{
                    window.acquire().await.unwrap().forget();
                    tx.send(send($body)).await.unwrap();
                }};
            }
            let settings = estate_common::model::AccountSettings {
                account_id: account(stream).parse().expect("the bench's accounts are valid"),
                read_at: 1_700_000_100_000,
                block_public_access: estate_common::model::AccountBlockPublicAccess::NotConfigured,
            };
            send!(pb::report_request::Body::AccountSettings((&settings).into()));
            for i in 0..per_stream {
                let snapshot =
                    pb::BucketSnapshot { generation: 1, facts: Some((&facts(stream, i)).into()), cause: None };
                send!(pb::report_request::Body::Bucket(snapshot));
            }
            for region in ["us-east-1", "eu-west-1"] {
                let done = pb::ScopeComplete {
                    region: region.into(),
                    generation: 1,
                    read_at_ms: 1_700_000_100_000,
                    bucket_count: per_stream as u64 / 2,
                };
                send!(pb::report_request::Body::ScopeComplete(done));
            }
            // Keep the stream open until every ack arrived.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        })
    };
    let mut latencies = Vec::with_capacity(per_stream + 2);
    while let Some(message) = acks.next().await {
        let Ok(pb::ReportResponse { body: Some(pb::report_response::Body::Ack(ack)) }) = message else { continue };
        let now = Instant::now();
        let mut pending = sent_at.lock().unwrap();
        while pending.front().is_some_and(|(seq, _)| *seq <= ack.seq) {
            let (_, at) = pending.pop_front().unwrap();
            latencies.push(now - at);
            window.add_permits(1);
        }
        if ack.seq >= total {
            break;
        }
    }
    sender.abort();
    latencies
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A throwaway CA and a certificate for 127.0.0.1, written to `dir`.
fn bench_certificates(dir: &std::path::Path) -> (estate_administrator::api::tls::TlsFiles, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let files = estate_administrator::api::tls::TlsFiles {
        cert: dir.join("admin.pem"),
        key: dir.join("admin-key.pem"),
        client_ca: None,
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    (files, ca.pem().into_bytes())
}

/// Starts an administrator (TLS when `tls` is given) on fresh loopback ports and data
/// directory; returns the endpoint agents and clients use.
async fn start_admin(
    data_dir: std::path::PathBuf,
    tls: Option<&(estate_administrator::api::tls::TlsFiles, Vec<u8>)>,
) -> Endpoint {
    start_admin_syncing(data_dir, tls, true).await
}

/// [`start_admin`], with or without the sync to stable storage before each acknowledgement.
async fn start_admin_syncing(
    data_dir: std::path::PathBuf,
    tls: Option<&(estate_administrator::api::tls::TlsFiles, Vec<u8>)>,
    sync_data: bool,
) -> Endpoint {
    let (grpc, http) = (free_addr(), free_addr());
    let mut options = estate_administrator::server::ServeOptions::development(grpc, http, data_dir);
    options.tls = tls.map(|(files, _)| files.clone());
    options.sync_data = sync_data;
    tokio::spawn(async move { estate_administrator::server::serve(options).await.unwrap() });
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(grpc).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    match tls {
        None => Endpoint::from_shared(format!("http://{grpc}")).unwrap(),
        Some((_, ca)) => Endpoint::from_shared(format!("https://{grpc}"))
            .unwrap()
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
            .unwrap(),
    }
}

/// Every stream's buckets, acknowledged; returns the rate and the acknowledgement latencies.
async fn ingest(endpoint: &Endpoint, streams: usize, per_stream: usize) -> (f64, Duration, Vec<Duration>) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..streams).map(|s| tokio::spawn(run_stream(endpoint.clone(), s, per_stream))).collect();
    let mut latencies = Vec::with_capacity(streams * per_stream);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    ((streams * per_stream) as f64 / elapsed.as_secs_f64(), elapsed, latencies)
}

/// Ingest alone, the re-judge alone (every bucket policy judged again after an organization
/// change: config rewritten, SIGHUP to this process), then the re-judge with ingest running for
/// all of it, in the same run: both sides' slowdown.
async fn compare_rejudge(streams: usize, per_stream: usize, policies: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("estate.toml");
    let write_config = |accounts: usize| {
        let list: Vec<String> = (0..accounts).map(|a| format!("\"{:012}\"", 200_000_000_000u64 + a as u64)).collect();
        std::fs::write(&config, format!("version = 1\n[organization]\naccounts = [{}]\n", list.join(", "))).unwrap();
    };
    write_config(10);
    let (grpc, http) = (free_addr(), free_addr());
    let mut options = estate_administrator::server::ServeOptions::development(grpc, http, dir.path().join("data"));
    options.config = Some(config.clone());
    options.policy_workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers = options.policy_workers;
    tokio::spawn(async move { estate_administrator::server::serve(options).await.unwrap() });
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(grpc).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let endpoint = Endpoint::from_shared(format!("http://{grpc}")).unwrap();
    let client = InventoryServiceClient::new(endpoint.connect().await.unwrap());
    let unknown = || {
        let mut client = client.clone();
        async move {
            let stats = client.get_bucket_statistics(pb::GetBucketStatisticsRequest::default()).await.unwrap();
            // Sharing depends on the policy whatever block public access says: a bucket whose
            // policy is being analysed counts here.
            stats.into_inner().bucket_count_by_shared_access_type.map_or(0, |p| p.unknown)
        }
    };
    println!(
        "estate ingest during a re-judge: {policies} buckets with distinct policies, {workers} policy workers; \
         ingest of {streams} streams x {per_stream} buckets alone; the re-judge alone, then with ingest throughout"
    );
    // The policies: one stream per 1,000 buckets.
    let policy_streams = policies.div_ceil(1000);
    let tasks: Vec<_> = (0..policy_streams)
        .map(|s| tokio::spawn(run_stream(endpoint.clone(), POLICY_STREAMS + s, policies / policy_streams)))
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let started = Instant::now();
    while unknown().await > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("first analysis of the policies:      {:>9.2} s", started.elapsed().as_secs_f64());

    let alone = {
        let tasks: Vec<_> = (0..streams).map(|s| tokio::spawn(run_stream(endpoint.clone(), s, per_stream))).collect();
        let started = Instant::now();
        for task in tasks {
            task.await.unwrap();
        }
        (streams * per_stream) as f64 / started.elapsed().as_secs_f64()
    };
    println!("ingest alone:                        {alone:>12.0} buckets/s");

    // An organization change makes every policy's analysis stale: returns when the re-judge
    // has begun (some bucket's sharing is unknown again).
    let change_organization = |accounts: usize| {
        write_config(accounts);
        let hangup = std::process::Command::new("kill").args(["-HUP", &std::process::id().to_string()]).status();
        assert!(hangup.unwrap().success());
        let started = Instant::now();
        async move {
            while unknown().await == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            started
        }
    };

    // The re-judge alone.
    let started = change_organization(11).await;
    while unknown().await > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rejudge_alone = started.elapsed();
    println!("re-judge alone:                      {:>9.2} s", rejudge_alone.as_secs_f64());

    // The re-judge again, with ingest running for all of it: rounds of new buckets on every
    // stream until the re-judge ends.
    // (A new organization: one seen before has its analyses cached, and nothing is re-judged.)
    let started = change_organization(12).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ingesting = {
        let (endpoint, stop) = (endpoint.clone(), std::sync::Arc::clone(&stop));
        let chunk = (per_stream / 10).max(1);
        tokio::spawn(async move {
            let (started, mut ingested, mut round) = (Instant::now(), 0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Streams below `POLICY_STREAMS` (their buckets have no policy, so the re-judge
                // ends); a stream seen before sends its buckets again, read anew.
                let tasks: Vec<_> = (0..streams)
                    .map(|s| tokio::spawn(run_stream(endpoint.clone(), 100 + (round * streams + s) % 800, chunk)))
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
                ingested += streams * chunk;
                round += 1;
            }
            ingested as f64 / started.elapsed().as_secs_f64()
        })
    };
    // Policy workers run at a lower priority than ingest: under ingest that saturates the
    // cores the re-judge may barely move, so the ingest stops after `ceiling` at the latest.
    let ceiling = Duration::from_secs(env_usize("ESTATE_BENCH_REJUDGE_CEILING_S", 120) as u64);
    let mut left = unknown().await;
    while left > 0 && started.elapsed() < ceiling {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = unknown().await;
    }
    let under_ingest = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = ingesting.await.unwrap();
    while unknown().await > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rejudge_during = started.elapsed();
    println!("ingest during the re-judge:          {during:>12.0} buckets/s (its last round ends after the re-judge)");
    println!("ingest during / alone:               {:>12.1} %", 100.0 * during / alone);
    if left == 0 {
        println!("re-judge with ingest throughout:     {:>9.2} s", rejudge_during.as_secs_f64());
        println!(
            "re-judge with ingest / alone:        {:>12.1} %",
            100.0 * rejudge_during.as_secs_f64() / rejudge_alone.as_secs_f64()
        );
    } else {
        println!(
            "re-judge with ingest throughout:     not done after {:.0} s of ingest: {left} of {policies} buckets \
             still unknown ({:.0} re-judged per second); done {:.1} s after the ingest stopped",
            under_ingest.as_secs_f64(),
            (policies - left as usize) as f64 / under_ingest.as_secs_f64(),
            (rejudge_during - under_ingest).as_secs_f64()
        );
    }
}

/// One ingest run in this (child) process, so that no administrator outlives its run: `sync`
/// (the product), `flush` (no `fdatasync` before acknowledging), `plaintext` or `tls`. Prints
/// the rate and the acknowledgement latency p50.
async fn ingest_child(mode: &str, streams: usize, per_stream: usize) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let endpoint = match mode {
        "flush" => start_admin_syncing(data, None, false).await,
        "tls" => start_admin(data, Some(&bench_certificates(dir.path()))).await,
        "sync" | "plaintext" => start_admin(data, None).await,
        other => panic!("unknown ingest mode {other}"),
    };
    let (rate, _, latencies) = ingest(&endpoint, streams, per_stream).await;
    println!("{rate} {}", percentile(&latencies, 0.5).as_secs_f64() * 1e3);
}

/// Ingest in two modes, each run a fresh administrator in a child process of its own, in ABBA
/// order; prints every run, each mode's median and range, and the ratio B / A pair by pair.
fn compare_in_children(
    title: &str,
    (a, a_mode): (&str, &str),
    (b, b_mode): (&str, &str),
    streams: usize,
    per_stream: usize,
    rounds: usize,
) {
    let total = streams * per_stream;
    println!(
        "estate ingest, {title}: {streams} streams x {per_stream} buckets = {total} per run, {rounds} runs each, \
         ABBA order, one child process per run"
    );
    let run = |mode: &str| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ingest-child", mode])
            .env("ESTATE_BENCH_STREAMS", streams.to_string())
            .env("ESTATE_BENCH_BUCKETS_PER_STREAM", per_stream.to_string())
            .output()
            .unwrap();
        // The last line: the administrator's ready line comes first.
        let text = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_owned();
        let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().expect("the child prints its figures"));
        (fields.next().unwrap(), fields.next().unwrap())
    };
    let (mut rates_a, mut rates_b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        let mut pair = [0.0; 2];
        for second in order {
            let (name, mode) = if second { (b, b_mode) } else { (a, a_mode) };
            let (rate, p50) = run(mode);
            println!("run {round} {name:<10} {rate:>10.0} buckets/s, ack p50 {p50:.1} ms");
            pair[usize::from(second)] = rate;
            if second { &mut rates_b } else { &mut rates_a }.push(rate);
        }
        ratios.push(pair[1] / pair[0]);
    }
    let summary = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    for (name, rates) in [(a, &mut rates_a), (b, &mut rates_b)] {
        let (median, low, high) = summary(rates);
        println!("{name} median:   {median:>10.0} buckets/s (range {low:.0}-{high:.0})");
    }
    let (r, low, high) = summary(&mut ratios);
    println!("{b} / {a} pair by pair:   {:>6.1} % (median; range {:.1}-{:.1} %)", 100.0 * r, 100.0 * low, 100.0 * high);
}

#[tokio::main]
async fn main() {
    let streams = env_usize("ESTATE_BENCH_STREAMS", 64);
    let per_stream = env_usize("ESTATE_BENCH_BUCKETS_PER_STREAM", 15_625);
    if std::env::args().any(|a| a == "--raw-sled-child") {
        println!("{}", raw_sled_rate(streams, per_stream));
        return;
    }
    if std::env::args().any(|a| a == "--rejudge") {
        compare_rejudge(
            env_usize("ESTATE_BENCH_STREAMS", 8),
            env_usize("ESTATE_BENCH_BUCKETS_PER_STREAM", 15_625),
            env_usize("ESTATE_BENCH_POLICIES", 20_000),
        )
        .await;
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(mode) = args.iter().position(|a| a == "--ingest-child").and_then(|i| args.get(i + 1)) {
        ingest_child(mode, streams, per_stream).await;
        return;
    }
    let rounds = env_usize("ESTATE_BENCH_ROUNDS", 6);
    if args.iter().any(|a| a == "--durability") {
        let (streams, per_stream) =
            (env_usize("ESTATE_BENCH_STREAMS", 64), env_usize("ESTATE_BENCH_BUCKETS_PER_STREAM", 2_000));
        let title = "fdatasync at acknowledgement vs sled's flush alone";
        compare_in_children(title, ("flush only", "flush"), ("fdatasync", "sync"), streams, per_stream, rounds);
        return;
    }
    if args.iter().any(|a| a == "--tls") {
        let (streams, per_stream) =
            (env_usize("ESTATE_BENCH_STREAMS", 16), env_usize("ESTATE_BENCH_BUCKETS_PER_STREAM", 4_000));
        compare_in_children(
            "TLS vs plaintext",
            ("plaintext", "plaintext"),
            ("TLS", "tls"),
            streams,
            per_stream,
            rounds,
        );
        return;
    }
    let total = streams * per_stream;
    println!("estate ingest benchmark: {streams} streams x {per_stream} buckets = {total} buckets, window {WINDOW} per stream");

    // The ceiling runs in a child process, so that the peak memory below is the
    // administrator's (and the synthetic clients'), not the baseline's.
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--raw-sled-child")
        .env("ESTATE_BENCH_STREAMS", streams.to_string())
        .env("ESTATE_BENCH_BUCKETS_PER_STREAM", per_stream.to_string())
        .output()
        .unwrap();
    let raw: f64 = String::from_utf8_lossy(&child.stdout).trim().parse().expect("the baseline child prints its rate");
    println!("raw batched sled inserts (ceiling):  {raw:>12.0} buckets/s");

    let dir = tempfile::tempdir().unwrap();
    let endpoint = start_admin(dir.path().join("data"), None).await;
    let (rate, elapsed, latencies) = ingest(&endpoint, streams, per_stream).await;
    println!("durable ingest over gRPC:            {rate:>12.0} buckets/s ({:.1} s)", elapsed.as_secs_f64());
    println!("ingest / raw sled:                   {:>12.1} %", 100.0 * rate / raw);
    println!(
        "ack latency p50 / p99 / max:         {:>8.1} / {:.1} / {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );

    let mut client = InventoryServiceClient::new(endpoint.connect().await.unwrap());
    let stats = client.get_bucket_statistics(pb::GetBucketStatisticsRequest::default()).await.unwrap().into_inner();
    assert_eq!(stats.bucket_count as usize, total, "every bucket is counted once");
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        client.get_bucket_statistics(pb::GetBucketStatisticsRequest::default()).await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "GetBucketStatistics p50 / p99:       {:>8.3} / {:.3} ms (gRPC round trip included)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );

    let request = || pb::DescribeBucketsRequest {
        criteria: [
            ("sharedAccess".to_owned(), pb::BucketCriterion { eq: vec!["EXTERNAL".into()], ..Default::default() }),
            (
                "tags.value".to_owned(),
                pb::BucketCriterion { eq: vec!["team-3".into(), "team-5".into()], ..Default::default() },
            ),
        ]
        .into_iter()
        .collect(),
        sort_criteria: Some(pb::BucketSortCriteria {
            attribute_name: "bucketName".into(),
            order_by: pb::OrderBy::Desc.into(),
        }),
        max_results: 50,
        next_token: String::new(),
    };
    let mut times = Vec::new();
    let mut returned = 0;
    for _ in 0..20 {
        let t = Instant::now();
        returned = client.describe_buckets(request()).await.unwrap().into_inner().buckets.len();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "DescribeBuckets filtered+sorted p50 / p99: {:>5.1} / {:.1} ms ({returned} of {total} buckets, first page)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );
    // The worst cases beside it: a filter that matches nothing walks every bucket, and a
    // numeric sort cannot walk an order the index keeps (one pass with a bounded heap).
    let worst = [
        (
            "DescribeBuckets, a filter matching nothing",
            pb::DescribeBucketsRequest {
                criteria: [(
                    "tags.value".to_owned(),
                    pb::BucketCriterion { eq: vec!["no-such-team".into()], ..Default::default() },
                )]
                .into_iter()
                .collect(),
                max_results: 50,
                ..Default::default()
            },
        ),
        (
            "DescribeBuckets, sorted by sizeInBytes",
            pb::DescribeBucketsRequest {
                sort_criteria: Some(pb::BucketSortCriteria {
                    attribute_name: "sizeInBytes".into(),
                    order_by: pb::OrderBy::Desc.into(),
                }),
                max_results: 50,
                ..Default::default()
            },
        ),
    ];
    for (label, request) in worst {
        let mut times = Vec::new();
        let mut returned = 0;
        for _ in 0..20 {
            let t = Instant::now();
            returned = client.describe_buckets(request.clone()).await.unwrap().into_inner().buckets.len();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "{label} p50 / p99 / max: {:.1} / {:.1} / {:.1} ms ({returned} returned of {total}, 20 requests after ingest)",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
            times.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }
    println!("peak resident memory (whole process): {:>10.0} MiB", peak_rss_mib());
}
