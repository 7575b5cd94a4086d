//! `estate-loadgen`: N synthetic member agents against one real administrator, over loopback,
//! with no moto. Each agent is a real gRPC report stream with its own token (streams share
//! HTTP/2 connections, as many agents behind one egress would), reporting B buckets in each
//! of R Regions with the agent protocol: hello, scope started, snapshots, scope complete,
//! resending whatever is not acknowledged after a reconnect (jittered exponential backoff).
//!
//! It starts the administrator itself (so that it can kill it), then reports:
//! - convergence: from the first message until GetBucketStatistics counts every bucket and
//!   every agent's messages are acknowledged;
//! - the administrator's peak RSS and CPU seconds;
//! - GetBucketStatistics and first-page DescribeBuckets latency (p50, p99, max) while ingest
//!   runs;
//! - after SIGKILL and a restart on the same data: the time until every agent is connected
//!   again and the statistics are whole, and how many bucket snapshots were sent again (0: a
//!   reconnect resends only what was not acknowledged, and everything was).
//!
//! Optional churn: `--churn-per-minute F` re-reports that fraction of each agent's buckets
//! per minute for `--churn-seconds`, and `--disconnect-per-minute F` drops that fraction of
//! the agents' streams per minute meanwhile.
//!
//!   estate-loadgen --agents 10000 --regions 2 --buckets 100
//!
//! The last line of output is the result as JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use estate_common::pb::{
    self, agent_service_client::AgentServiceClient, inventory_service_client::InventoryServiceClient,
    report_request::Body, report_response,
};
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Parser)]
#[command(name = "estate-loadgen", about = "Synthetic member agents against one administrator")]
struct Args {
    /// Member agents (one account each).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    agents: u32,
    /// Regions per agent.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=40))]
    regions: u32,
    /// Buckets per Region.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    buckets: u32,
    /// Report streams per HTTP/2 connection (the administrator allows 64 by default).
    #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u32).range(1..=64))]
    streams_per_connection: u32,
    /// Fraction of each agent's buckets re-reported per minute during the churn phase.
    #[arg(long, default_value_t = 0.0)]
    churn_per_minute: f64,
    /// Fraction of agents whose stream is dropped (and reopened) per minute during churn.
    #[arg(long, default_value_t = 0.0)]
    disconnect_per_minute: f64,
    /// Length of the churn phase (seconds; 0: none).
    #[arg(long, default_value_t = 0)]
    churn_seconds: u64,
    /// Skip the SIGKILL-and-restart phase.
    #[arg(long)]
    no_restart: bool,
    /// SIGKILL the administrator while the churn's reports are still in flight (after a churn
    /// phase), instead of once every agent has had everything acknowledged.
    #[arg(long)]
    kill_in_flight: bool,
    /// Delete the administrator's store after the SIGKILL, as if restored from nothing: every
    /// acknowledged completion is lost, the administrator asks every agent for its Regions
    /// again, and the load generator answers as the agent does (a whole refresh).
    #[arg(long)]
    wipe_store_at_kill: bool,
    /// The administrator binary (default: next to this one).
    #[arg(long)]
    admin_bin: Option<PathBuf>,
    /// Give up after this many seconds per phase.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Run the synthetic agents at the administrator's priority. By default their threads
    /// run at nice 10: real agents run on other machines, and on a shared machine the
    /// generator's own CPU use would otherwise take the administrator's cores as an equal.
    /// The probe that times reads stays at the administrator's priority, as a client would.
    #[arg(long)]
    equal_priority: bool,
    /// Make every N-th bucket of every N-th agent public (a public-read ACL and no block public
    /// access), so that accounts differ in exposure as in a real organization; 0: none.
    #[arg(long, default_value_t = 0)]
    public_every: u32,
    /// After convergence (and the churn phase), every agent re-reports this many of its
    /// buckets with block public access turned off: each raises one
    /// `S3BlockPublicAccessDisabled` finding, for a findings list at scale.
    #[arg(long, default_value_t = 0)]
    expose_per_agent: u32,
    /// Once converged (after the churn phase, before the restart), run this shell command
    /// with the administrator up and every agent connected, and fail if it fails. It gets
    /// ESTATE_DASHBOARD_URL (plain HTTP on loopback), ESTATE_GRPC_URL and ESTATE_TOKEN (a
    /// read-only client token).
    #[arg(long)]
    then: Option<String>,
}

/// What every agent task shares with the driver.
#[derive(Default)]
struct Counters {
    snapshots_sent: AtomicU64,
    hellos_sent: AtomicU64,
    rejects: AtomicU64,
    /// Refresh requests from the administrator (after a restart that lost nothing: none).
    refreshes_asked: AtomicU64,
    /// Snapshots sent because the administrator asked for a refresh: what it had acknowledged
    /// and then lost, read again as an agent would.
    refresh_snapshots: AtomicU64,
    /// Messages queued and not yet acknowledged, over every agent.
    unacked: AtomicU64,
    /// Agents whose current stream is open.
    connected: AtomicUsize,
}

struct Agent {
    index: u32,
    account: String,
    token: String,
}

fn account_of(index: u32) -> String {
    format!("{:012}", 100_000_000_000u64 + u64::from(index))
}

const CLIENT_TOKEN: &str = "loadgen-client-token-0123456789";

fn region_name(r: u32) -> String {
    const NAMES: [&str; 8] = [
        "us-east-1",
        "eu-west-1",
        "us-west-2",
        "ap-southeast-2",
        "eu-central-1",
        "us-east-2",
        "ap-northeast-1",
        "sa-east-1",
    ];
    match NAMES.get(r as usize) {
        Some(name) => (*name).to_owned(),
        None => format!("xx-region-{r}"),
    }
}

fn snapshot(agent: &Agent, region: &str, b: u32, read_at: i64, generation: u64, public_every: u32) -> Body {
    let public = public_every > 0 && agent.index.is_multiple_of(public_every) && b.is_multiple_of(public_every);
    let mut facts = pb::BucketFacts {
        account_id: agent.account.clone(),
        region: region.to_owned(),
        bucket_name: format!("lg-{}-{region}-{b:06}", agent.index),
        created_at_ms: 1_700_000_000_000,
        read_at_ms: read_at,
        versioning: b.is_multiple_of(3),
        default_encryption: Some(pb::DefaultEncryption {
            algorithm: "AES256".into(),
            kms_master_key_id: String::new(),
        }),
        block_public_access: Some(pb::BlockPublicAccess {
            block_public_acls: true,
            ignore_public_acls: true,
            block_public_policy: true,
            restrict_public_buckets: true,
        }),
        ..Default::default()
    };
    if public {
        facts.block_public_access = Some(pb::BlockPublicAccess::default());
        facts.acl = Some(pb::Acl {
            owner_canonical_id: format!("{:064x}", agent.index),
            grants: vec![pb::AclGrant {
                grantee_type: pb::GranteeType::Group.into(),
                grantee: estate_common::model::ALL_USERS_GROUP.into(),
                permission: pb::AclPermission::Read.into(),
            }],
        });
    }
    Body::Bucket(pb::BucketSnapshot { generation, facts: Some(facts), cause: None })
}

/// One agent's outbox: every message until acknowledged, and each Region's refreshes.
struct Outbox {
    next_seq: u64,
    unacked: BTreeMap<u64, Body>,
    /// Region → the generation of its latest refresh.
    generation: BTreeMap<String, u64>,
    /// Region → the generation of its latest refresh whose completion was acknowledged (the
    /// hello's `completed`, by which a restored administrator finds what it lost).
    completed: BTreeMap<String, u64>,
}

impl Outbox {
    fn push(&mut self, body: Body, counters: &Counters) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked.insert(seq, body);
        counters.unacked.fetch_add(1, Ordering::Relaxed);
        seq
    }

    /// Forgets what `keep` refuses, counting it as acknowledged.
    fn settle(&mut self, counters: &Counters, keep: impl Fn(u64) -> bool) {
        let before = self.unacked.len();
        let completed = &mut self.completed;
        self.unacked.retain(|seq, body| {
            let kept = keep(*seq);
            if let (false, Body::ScopeComplete(c)) = (kept, &*body) {
                let last = completed.entry(c.region.clone()).or_default();
                *last = (*last).max(c.generation);
            }
            kept
        });
        counters.unacked.fetch_sub((before - self.unacked.len()) as u64, Ordering::Relaxed);
    }

    /// A whole refresh of `region` as the agent reports one: started, every bucket, complete;
    /// returns the messages with their sequence numbers.
    fn refresh(&mut self, agent: &Agent, region: &str, args: &Args, counters: &Counters) -> Vec<(u64, Body)> {
        let buckets = args.buckets;
        let generation = {
            let g = self.generation.entry(region.to_owned()).or_default();
            *g += 1;
            *g
        };
        let read_at = estate_common::model::now_ms();
        let mut bodies = vec![Body::ScopeStarted(pb::ScopeStarted {
            region: region.to_owned(),
            generation,
            bucket_total: u64::from(buckets),
        })];
        bodies.extend((0..buckets).map(|b| snapshot(agent, region, b, read_at, generation, args.public_every)));
        bodies.push(Body::ScopeComplete(pb::ScopeComplete {
            region: region.to_owned(),
            generation,
            read_at_ms: read_at,
            bucket_count: u64::from(buckets),
        }));
        bodies.into_iter().map(|body| (self.push(body.clone(), counters), body)).collect()
    }
}

/// Runs one agent for ever: report everything once, then keep the stream open and resend
/// what is unacknowledged after any break.
async fn run_agent(
    agent: Agent,
    channel: Channel,
    args: Arc<Args>,
    counters: Arc<Counters>,
    churn: Arc<AtomicBool>,
    drop_stream: Arc<Mutex<Vec<bool>>>,
    expose: Arc<AtomicBool>,
) {
    let mut outbox =
        Outbox { next_seq: 1, unacked: BTreeMap::new(), generation: BTreeMap::new(), completed: BTreeMap::new() };
    if args.public_every > 0 && agent.index.is_multiple_of(args.public_every) {
        // Its public buckets are PUBLIC only once the account's settings are known to be off.
        let settings = pb::AccountSettings {
            account_id: agent.account.clone(),
            read_at_ms: estate_common::model::now_ms(),
            block_public_access_state: pb::AccountBlockPublicAccessState::NotConfigured.into(),
            ..Default::default()
        };
        outbox.push(Body::AccountSettings(settings), &counters);
    }
    for r in 0..args.regions {
        outbox.refresh(&agent, &region_name(r), &args, &counters);
    }
    let outbox = Arc::new(Mutex::new(outbox));
    let mut backoff = Duration::from_millis(250);
    let mut churn_round = 0u64;
    let mut exposed = false;
    loop {
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::ReportRequest>(1024);
        let completed = {
            let o = outbox.lock().unwrap();
            o.completed
                .iter()
                .map(|(region, &generation)| pb::ScopeGeneration { region: region.clone(), generation })
                .collect()
        };
        let hello = pb::ReportRequest {
            seq: 0,
            body: Some(Body::Hello(pb::Hello {
                account_id: agent.account.clone(),
                regions: (0..args.regions).map(region_name).collect(),
                canonical_user_id: format!("{:064x}", agent.index),
                agent_version: "loadgen".into(),
                completed,
                problem: String::new(),
            })),
        };
        let _ = tx.send(hello).await;
        counters.hellos_sent.fetch_add(1, Ordering::Relaxed);
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        request.metadata_mut().insert("authorization", format!("Bearer {}", agent.token).parse().expect("ascii"));
        let mut client = AgentServiceClient::new(channel.clone());
        let opened = client.report(request).await;
        let mut inbound = match opened {
            Ok(response) => response.into_inner(),
            Err(_) => {
                let jitter = 0.5 + rand_unit(agent.index, backoff.as_millis() as u64);
                tokio::time::sleep(backoff.mul_f64(jitter)).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(250);
        counters.connected.fetch_add(1, Ordering::Relaxed);
        // Send everything unacknowledged, in order.
        let pending: Vec<(u64, Body)> = outbox.lock().unwrap().unacked.iter().map(|(s, b)| (*s, b.clone())).collect();
        let sender = {
            let tx = tx.clone();
            let counters = Arc::clone(&counters);
            tokio::spawn(async move {
                for (seq, body) in pending {
                    if matches!(body, Body::Bucket(_)) {
                        counters.snapshots_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    if tx.send(pb::ReportRequest { seq, body: Some(body) }).await.is_err() {
                        return;
                    }
                }
            })
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let broken = loop {
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(pb::ReportResponse { body: Some(report_response::Body::Ack(ack)) })) => {
                        outbox.lock().unwrap().settle(&counters, |seq| seq > ack.seq);
                    }
                    Ok(Some(pb::ReportResponse { body: Some(report_response::Body::Reject(reject)) })) => {
                        counters.rejects.fetch_add(1, Ordering::Relaxed);
                        outbox.lock().unwrap().settle(&counters, |seq| seq != reject.seq);
                    }
                    Ok(Some(pb::ReportResponse { body: Some(report_response::Body::Refresh(asked)) })) => {
                        // As the agent does: the asked Regions (of its own) read again, whole.
                        counters.refreshes_asked.fetch_add(1, Ordering::Relaxed);
                        let ours: Vec<String> = (0..args.regions).map(region_name).collect();
                        let mut messages = Vec::new();
                        {
                            let mut o = outbox.lock().unwrap();
                            for region in asked.regions.iter().filter(|r| ours.contains(r)) {
                                messages.extend(o.refresh(&agent, region, &args, &counters));
                            }
                        }
                        let resent = messages.iter().filter(|(_, b)| matches!(b, Body::Bucket(_))).count() as u64;
                        counters.refresh_snapshots.fetch_add(resent, Ordering::Relaxed);
                        counters.snapshots_sent.fetch_add(resent, Ordering::Relaxed);
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            for (seq, body) in messages {
                                if tx.send(pb::ReportRequest { seq, body: Some(body) }).await.is_err() {
                                    return;
                                }
                            }
                        });
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break true,
                },
                _ = tick.tick() => {
                    if std::mem::take(&mut drop_stream.lock().unwrap()[agent.index as usize]) {
                        break true;
                    }
                    if expose.load(Ordering::Relaxed) && !exposed {
                        exposed = true;
                        let messages: Vec<(u64, Body)> = {
                            let mut o = outbox.lock().unwrap();
                            (0..args.expose_per_agent.min(args.buckets))
                                .map(|b| {
                                    let now = estate_common::model::now_ms();
                                    let mut body = snapshot(&agent, &region_name(0), b, now, 1, args.public_every);
                                    if let Body::Bucket(pb::BucketSnapshot { facts: Some(facts), .. }) = &mut body {
                                        facts.block_public_access = Some(pb::BlockPublicAccess::default());
                                    }
                                    (o.push(body.clone(), &counters), body)
                                })
                                .collect()
                        };
                        counters.snapshots_sent.fetch_add(messages.len() as u64, Ordering::Relaxed);
                        // Queued whatever the channel's room: a message left out would never be
                        // acknowledged on this stream (a broken stream sends the outbox again).
                        for (seq, body) in messages {
                            if tx.send(pb::ReportRequest { seq, body: Some(body) }).await.is_err() {
                                break;
                            }
                        }
                    }
                    if churn.load(Ordering::Relaxed) && args.churn_per_minute > 0.0 {
                        // This second's share of the per-minute churn, re-read now.
                        churn_round += 1;
                        let per_second = f64::from(args.buckets * args.regions) * args.churn_per_minute / 60.0;
                        let count = per_second.floor() as u32
                            + u32::from(rand_unit(agent.index, churn_round) < per_second.fract());
                        let mut o = outbox.lock().unwrap();
                        for i in 0..count {
                            let n = (churn_round as u32).wrapping_mul(7919).wrapping_add(i) % (args.buckets * args.regions);
                            let body = snapshot(
                                &agent,
                                &region_name(n / args.buckets),
                                n % args.buckets,
                                estate_common::model::now_ms(),
                                1,
                                args.public_every,
                            );
                            let seq = o.push(body.clone(), &counters);
                            counters.snapshots_sent.fetch_add(1, Ordering::Relaxed);
                            if tx.try_send(pb::ReportRequest { seq, body: Some(body) }).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        };
        sender.abort();
        counters.connected.fetch_sub(1, Ordering::Relaxed);
        if broken {
            let jitter = 0.5 + rand_unit(agent.index, churn_round ^ backoff.as_millis() as u64);
            tokio::time::sleep(backoff.mul_f64(jitter)).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

/// A deterministic number in [0, 1) from two seeds (splitmix64), for jitter and sampling.
fn rand_unit(a: u32, b: u64) -> f64 {
    let mut z = (u64::from(a) << 32 ^ b).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

struct Admin {
    child: Child,
    command: Vec<String>,
    grpc: String,
}

fn start_admin(bin: &std::path::Path, args: &[String]) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let ready = lines
        .find_map(|l| l.ok().filter(|l| l.starts_with("ESTATE_ADMIN_READY")))
        .context("the administrator exited before it was ready")?;
    std::thread::spawn(move || for _ in lines {});
    let grpc = ready.split_whitespace().find_map(|w| w.strip_prefix("grpc=")).context("no grpc= in the ready line")?;
    Ok((child, format!("http://{grpc}")))
}

/// Peak RSS (MiB) and CPU seconds of a process, from /proc.
fn usage(pid: u32) -> (f64, f64) {
    let rss = estate_tests::peak_rss_mib(pid).unwrap_or(0.0);
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = after.split_whitespace().collect();
            let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            // utime + stime in clock ticks; Linux reports them at USER_HZ, 100 on every
            // mainstream architecture.
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0);
    (rss, cpu)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn latency_summary(mut samples: Vec<f64>) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    serde_json::json!({
        "samples": samples.len(),
        "p50_ms": percentile(&samples, 0.5),
        "p99_ms": percentile(&samples, 0.99),
        "max_ms": samples.last().copied().unwrap_or(0.0),
    })
}

async fn bucket_count(client: &mut InventoryServiceClient<Channel>) -> anyhow::Result<(i64, f64)> {
    let mut request = tonic::Request::new(pb::GetBucketStatisticsRequest::default());
    request.metadata_mut().insert("authorization", format!("Bearer {CLIENT_TOKEN}").parse()?);
    let started = Instant::now();
    let stats = client.get_bucket_statistics(request).await?.into_inner();
    Ok((stats.bucket_count, started.elapsed().as_secs_f64() * 1000.0))
}

/// Read latencies sampled every 100 ms by a client on an OS thread and runtime of its own, as
/// a separate client process would see them: the samples do not include waiting behind this
/// generator's own agent tasks for a worker thread.
struct Probe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<ProbeSamples>>,
}

#[derive(Debug, Default)]
struct ProbeSamples {
    statistics_ms: Vec<f64>,
    first_page_ms: Vec<f64>,
}

impl Probe {
    fn start(grpc: String, first_pages: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let mut reader = InventoryServiceClient::new(Endpoint::from_shared(grpc)?.connect_lazy());
                let mut samples = ProbeSamples::default();
                while !stopping.load(Ordering::Relaxed) {
                    if let Ok((_, ms)) = bucket_count(&mut reader).await {
                        samples.statistics_ms.push(ms);
                    }
                    if first_pages {
                        if let Ok(ms) = first_page_ms(&mut reader).await {
                            samples.first_page_ms.push(ms);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(samples)
            })
        });
        Self { stop, thread }
    }

    fn finish(self) -> anyhow::Result<ProbeSamples> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|_| anyhow::anyhow!("the probe thread panicked"))?
    }
}

async fn first_page_ms(client: &mut InventoryServiceClient<Channel>) -> anyhow::Result<f64> {
    let mut request = tonic::Request::new(pb::DescribeBucketsRequest { max_results: 50, ..Default::default() });
    request.metadata_mut().insert("authorization", format!("Bearer {CLIENT_TOKEN}").parse()?);
    let started = Instant::now();
    client.describe_buckets(request).await?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Connected report streams, as the administrator's members say (CONNECTED count).
async fn connected_members(client: &mut InventoryServiceClient<Channel>) -> anyhow::Result<usize> {
    let mut token = String::new();
    let mut connected = 0;
    loop {
        let mut request = tonic::Request::new(pb::ListMembersRequest { max_results: 1000, next_token: token });
        request.metadata_mut().insert("authorization", format!("Bearer {CLIENT_TOKEN}").parse()?);
        let page = client.list_members(request).await?.into_inner();
        connected +=
            page.members.iter().filter(|m| m.connection_state == i32::from(pb::ConnectionState::Connected)).count();
        token = page.next_token;
        if token.is_empty() {
            return Ok(connected);
        }
    }
}

/// The synthetic agents' nice value (see `--equal-priority`).
const GENERATOR_NICE: u8 = 10;

fn lower_priority() {
    if let Err(error) = estate_common::priority::lower_current_thread(GENERATOR_NICE, false) {
        eprintln!("loadgen: cannot lower the generator's priority: {error}");
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if !args.equal_priority {
        runtime.on_thread_start(lower_priority);
    }
    runtime.build()?.block_on(run(Arc::new(args)))
}

async fn run(args: Arc<Args>) -> anyhow::Result<()> {
    let total = i64::from(args.agents) * i64::from(args.regions) * i64::from(args.buckets);
    let admin_bin = match &args.admin_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("estate-admin"),
    };
    let dir = tempfile::tempdir()?;
    let mut config = String::from("version = 1\n");
    let agents: Vec<Agent> = (0..args.agents)
        .map(|i| Agent { index: i, account: account_of(i), token: format!("loadgen-agent-token-{i:08}") })
        .collect();
    for a in &agents {
        config += &format!(
            "[[agents]]\nname = \"lg-{}\"\naccount_id = \"{}\"\ntoken = \"{}\"\n",
            a.index, a.account, a.token
        );
    }
    config += &format!("[[clients]]\nname = \"loadgen\"\nrole = \"read-only\"\ntoken = \"{CLIENT_TOKEN}\"\n");
    std::fs::write(dir.path().join("estate.toml"), config)?;
    let grpc_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let http_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let command: Vec<String> = [
        "serve".into(),
        "--listen".into(),
        format!("127.0.0.1:{grpc_port}"),
        "--http-listen".into(),
        format!("127.0.0.1:{http_port}"),
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--config".into(),
        dir.path().join("estate.toml").display().to_string(),
        "--policy-workers".into(),
        "1".into(),
        "--max-streams-per-connection".into(),
        "64".into(),
    ]
    .into();
    let (child, grpc) = start_admin(&admin_bin, &command)?;
    let mut admin = Admin { child, command, grpc };
    println!(
        "loadgen: {} agents x {} Regions x {} buckets = {total} buckets, administrator pid {}",
        args.agents,
        args.regions,
        args.buckets,
        admin.child.id()
    );

    let connections = args.agents.div_ceil(args.streams_per_connection) as usize;
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        // Lazy: a channel reconnects by itself after the administrator restarts.
        channels.push(
            Endpoint::from_shared(admin.grpc.clone())?
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_while_idle(true)
                .connect_lazy(),
        );
    }
    let counters = Arc::new(Counters::default());
    let churn = Arc::new(AtomicBool::new(false));
    let drop_stream = Arc::new(Mutex::new(vec![false; args.agents as usize]));
    let expose = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    for agent in agents {
        let channel = channels[agent.index as usize % connections].clone();
        tokio::spawn(run_agent(
            agent,
            channel,
            Arc::clone(&args),
            Arc::clone(&counters),
            Arc::clone(&churn),
            Arc::clone(&drop_stream),
            Arc::clone(&expose),
        ));
    }

    // Convergence, with the read latencies measured while ingest runs.
    let mut reader = InventoryServiceClient::new(Endpoint::from_shared(admin.grpc.clone())?.connect_lazy());
    let probe = Probe::start(admin.grpc.clone(), true);
    let deadline = Duration::from_secs(args.timeout);
    let converged = loop {
        anyhow::ensure!(started.elapsed() < deadline, "no convergence within {deadline:?}");
        let (count, _) = bucket_count(&mut reader).await.unwrap_or((0, 0.0));
        let settled = counters.unacked.load(Ordering::Relaxed) == 0;
        if count == total && settled {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ingest_samples = probe.finish()?;
    let (rss_mib, cpu_s) = usage(admin.child.id());
    println!(
        "loadgen: converged in {:.1} s; administrator peak RSS {rss_mib:.0} MiB, {cpu_s:.1} CPU s; {} snapshots sent",
        converged.as_secs_f64(),
        counters.snapshots_sent.load(Ordering::Relaxed)
    );

    // Churn: buckets re-read and streams dropped while reads go on.
    let mut churn_stats_ms = Vec::new();
    if args.churn_seconds > 0 {
        let probe = Probe::start(admin.grpc.clone(), false);
        churn.store(true, Ordering::Relaxed);
        let churn_started = Instant::now();
        let mut second = 0;
        while churn_started.elapsed() < Duration::from_secs(args.churn_seconds) {
            if churn_started.elapsed().as_secs() > second {
                second = churn_started.elapsed().as_secs();
                let per_second = f64::from(args.agents) * args.disconnect_per_minute / 60.0;
                let mut drops = drop_stream.lock().unwrap();
                for k in 0..(per_second.ceil() as u32) {
                    if rand_unit(k, second) < per_second / per_second.ceil() {
                        let victim = (rand_unit(k + 1, second * 31) * f64::from(args.agents)) as usize;
                        drops[victim.min(args.agents as usize - 1)] = true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        churn.store(false, Ordering::Relaxed);
        churn_stats_ms = probe.finish()?.statistics_ms;
    }

    // Buckets turned worse, for findings at scale: every agent re-reports some, and each is
    // acknowledged once its finding is committed.
    if args.expose_per_agent > 0 {
        let started = Instant::now();
        let before = counters.snapshots_sent.load(Ordering::Relaxed);
        expose.store(true, Ordering::Relaxed);
        let expected = u64::from(args.agents) * u64::from(args.expose_per_agent.min(args.buckets));
        loop {
            let sent = counters.snapshots_sent.load(Ordering::Relaxed) - before;
            if sent >= expected && counters.unacked.load(Ordering::Relaxed) == 0 {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < deadline,
                "the exposed buckets were not acknowledged within {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("loadgen: {expected} buckets exposed and acknowledged in {:.1} s", started.elapsed().as_secs_f64());
    }

    // What to run against the whole organization, with every agent connected.
    let mut then = serde_json::Value::Null;
    if let Some(command) = &args.then {
        let started = Instant::now();
        let status = tokio::process::Command::new("sh")
            .args(["-c", command])
            .env("ESTATE_DASHBOARD_URL", format!("http://127.0.0.1:{http_port}/"))
            .env("ESTATE_GRPC_URL", &admin.grpc)
            .env("ESTATE_TOKEN", CLIENT_TOKEN)
            .status()
            .await?;
        println!("loadgen: `{command}` ended ({status}) after {:.1} s", started.elapsed().as_secs_f64());
        anyhow::ensure!(status.success(), "`{command}` failed: {status}");
        then = serde_json::json!({ "command": command, "seconds": started.elapsed().as_secs_f64() });
    }

    // SIGKILL and restart on the same data: every agent reconnects; nothing is sent again but
    // what was not acknowledged.
    let mut restart = serde_json::Value::Null;
    if !args.no_restart {
        if args.kill_in_flight {
            // Reports still coming: churn until the kill.
            churn.store(true, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(2)).await;
        } else {
            let settle = Instant::now();
            while counters.unacked.load(Ordering::Relaxed) > 0 {
                anyhow::ensure!(settle.elapsed() < deadline, "agents did not settle before the restart");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let snapshots_before = counters.snapshots_sent.load(Ordering::Relaxed);
        let hellos_before = counters.hellos_sent.load(Ordering::Relaxed);
        let refreshes_before = counters.refreshes_asked.load(Ordering::Relaxed);
        let refresh_snapshots_before = counters.refresh_snapshots.load(Ordering::Relaxed);
        admin.child.kill()?;
        let in_flight = counters.unacked.load(Ordering::Relaxed);
        churn.store(false, Ordering::Relaxed);
        admin.child.wait()?;
        if args.wipe_store_at_kill {
            std::fs::remove_dir_all(dir.path().join("data"))?;
        }
        let killed = Instant::now();
        let bin = admin_bin.clone();
        let (child, grpc) = start_admin(&bin, &admin.command)?;
        admin.child = child;
        admin.grpc = grpc;
        let restarted_after = killed.elapsed();
        let mut reader = InventoryServiceClient::new(Endpoint::from_shared(admin.grpc.clone())?.connect_lazy());
        let reconverged = loop {
            anyhow::ensure!(killed.elapsed() < deadline, "no reconvergence within {deadline:?}");
            let connected = connected_members(&mut reader).await.unwrap_or(0);
            let (count, _) = bucket_count(&mut reader).await.unwrap_or((0, 0.0));
            if connected == args.agents as usize && count == total {
                break killed.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let resent = counters.snapshots_sent.load(Ordering::Relaxed) - snapshots_before;
        let hellos = counters.hellos_sent.load(Ordering::Relaxed) - hellos_before;
        // Acknowledged, then lost by the kill: what the administrator asked to be read again.
        let lost = counters.refresh_snapshots.load(Ordering::Relaxed) - refresh_snapshots_before;
        println!(
            "loadgen: after SIGKILL ({in_flight} messages unacknowledged at the kill), restarted in {:.1} s, every \
             agent reconnected and the statistics whole in {:.1} s; {resent} snapshots sent again ({lost} of them \
             acknowledged before the kill and asked for again), {hellos} hellos",
            restarted_after.as_secs_f64(),
            reconverged.as_secs_f64()
        );
        restart = serde_json::json!({
            "killed_in_flight": args.kill_in_flight,
            "unacknowledged_at_kill": in_flight,
            "restart_s": restarted_after.as_secs_f64(),
            "reconverged_s": reconverged.as_secs_f64(),
            "snapshots_resent": resent,
            "acknowledged_then_lost_snapshots": lost,
            "hellos": hellos,
            "refreshes_asked": counters.refreshes_asked.load(Ordering::Relaxed) - refreshes_before,
        });
    }
    let (rss_end, cpu_end) = usage(admin.child.id());
    let result = serde_json::json!({
        "agents": args.agents,
        "regions": args.regions,
        "buckets_per_region": args.buckets,
        "buckets": total,
        "converged_s": converged.as_secs_f64(),
        "admin_peak_rss_mib": rss_mib,
        "admin_cpu_s": cpu_s,
        "get_bucket_statistics_during_ingest": latency_summary(ingest_samples.statistics_ms),
        "describe_buckets_first_page_during_ingest": latency_summary(ingest_samples.first_page_ms),
        "get_bucket_statistics_during_churn": latency_summary(churn_stats_ms),
        "rejects": counters.rejects.load(Ordering::Relaxed),
        "restart": restart,
        "then": then,
        "admin_after_restart_rss_mib": rss_end,
        "admin_after_restart_cpu_s": cpu_end,
    });
    let _ = admin.child.kill();
    let _ = admin.child.wait();
    println!("{result}");
    Ok(())
}
