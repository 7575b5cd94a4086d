//! Real agents against a SIGKILLed administrator (issue 30): `ESTATE_BENCH_AGENTS` (100)
//! `estate-agent` processes, one per moto account of `ESTATE_BENCH_BUCKETS` (20) buckets, make
//! their first inventory with a 24 h refresh interval while the administrator is SIGKILLed
//! and restarted at `ESTATE_BENCH_KILLS` (3) points of it. Counted from the agents' own logs
//! (every acknowledgement at debug level, the unacknowledged reports they resend at each
//! reconnect, the refreshes the administrator asks for) and from the store after each restart:
//! - acknowledged then lost: buckets acknowledged before a kill and missing after the restart;
//! - re-uploads: acknowledgements beyond one per bucket (0 when nothing acknowledged is sent
//!   again);
//! - resent: reports unacknowledged at a reconnect, sent again (what a kill costs);
//! - refreshes asked: what the generation handshake asks for when the store lost something.
//!
//! Run: `cargo build --workspace --bins && cargo run -p estate-tests --bin agents-restart`
//! (through `scripts/bench.sh` for replicates). Every figure is a count, so the build profile
//! and the machine do not move it; the wall time printed beside it does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use estate_tests::{eventually_every, Acknowledged, Admin, Agent, Moto};
use futures_util::StreamExt;

const CLIENT_TOKEN: &str = "bench-client-token-0123456789";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn account(i: usize) -> String {
    format!("{:012}", 100_000_000_000 + i)
}

fn token(account: &str) -> String {
    format!("bench-agent-token-{account}")
}

/// Every account in the organization, each with its agent token, and one read-only client.
fn write_config(dir: &std::path::Path, accounts: &[String]) -> anyhow::Result<std::path::PathBuf> {
    let text = estate_tests::config_text("o-benchorg001", accounts, accounts, token, CLIENT_TOKEN);
    let path = dir.join("estate.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

fn stored_count(admin: &Admin) -> anyhow::Result<u64> {
    admin.ctl_json(Some(CLIENT_TOKEN), &["stats"])?["bucketCount"].as_u64().context("no bucketCount")
}

fn stored_names(admin: &Admin) -> anyhow::Result<BTreeSet<String>> {
    let listed = admin.ctl_json(Some(CLIENT_TOKEN), &["buckets", "--all"])?;
    Ok(listed["buckets"]
        .as_array()
        .context("no buckets")?
        .iter()
        .filter_map(|b| b["bucketName"].as_str().map(str::to_owned))
        .collect())
}

/// What the agents' logs say so far.
#[derive(Debug, Default)]
struct Logged {
    /// Bucket → how many times it was acknowledged.
    acknowledged: BTreeMap<String, usize>,
    /// Reports unacknowledged at each reconnect (the first connection of each agent excluded).
    resent: u64,
    reconnects: usize,
    refreshes_asked: usize,
}

fn read_logs(agents: &[Agent]) -> Logged {
    let mut logged = Logged::default();
    for agent in agents {
        let log = agent.process.log_text();
        for ack in Acknowledged::in_log(&log) {
            *logged.acknowledged.entry(ack.bucket).or_default() += 1;
        }
        let connects: Vec<u64> = log
            .lines()
            .filter(|l| l.contains("connected to the administrator"))
            .filter_map(|l| l.split(" unacked=").nth(1)?.split(' ').next()?.parse().ok())
            .collect();
        logged.reconnects += connects.len().saturating_sub(1);
        logged.resent += connects.iter().skip(1).sum::<u64>();
        logged.refreshes_asked += log.lines().filter(|l| l.contains("the administrator asked for a refresh")).count();
    }
    logged
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let agents_n = env_usize("ESTATE_BENCH_AGENTS", 100);
    let per_account = env_usize("ESTATE_BENCH_BUCKETS", 20);
    let kills = env_usize("ESTATE_BENCH_KILLS", 3);
    let total = agents_n * per_account;
    let moto = Moto::start()?;
    let accounts: Vec<String> = (0..agents_n).map(account).collect();
    let mut credentials = Vec::new();
    for account in &accounts {
        credentials.push(moto.credentials(account).await?);
    }
    let seeding = Instant::now();
    let created: Vec<_> = futures_util::stream::iter(accounts.iter().zip(&credentials).flat_map(|(account, creds)| {
        let s3 = moto.s3(creds, "us-east-1");
        (0..per_account).map(move |i| {
            let s3 = s3.clone();
            let name = format!("estate-r-{account}-{i:03}");
            async move { s3.create_bucket().bucket(name).send().await }
        })
    }))
    .buffer_unordered(16)
    .collect()
    .await;
    anyhow::ensure!(created.iter().all(Result::is_ok), "seeding {total} buckets");
    println!("seeded {total} buckets in {agents_n} accounts in {:.1} s", seeding.elapsed().as_secs_f64());

    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), &accounts)?;
    let mut admin = Admin::start(&dir.path().join("data"), Some(&config))?;
    let started = Instant::now();
    let mut agents = Vec::new();
    for (account, creds) in accounts.iter().zip(&credentials) {
        agents.push(Agent::start(
            &admin,
            &moto,
            creds,
            Some(&token(account)),
            &["us-east-1"],
            &["--refresh-interval", "24h"],
        )?);
    }

    let mut lost_in_all = 0;
    for point in 1..=kills {
        // Kill once the store holds point/(kills+1) of the inventory, agents mid-stream.
        let threshold = (total * point / (kills + 1)) as u64;
        let reached =
            eventually_every(Duration::from_secs(600), Duration::from_millis(100), "the store to fill", || async {
                Ok(stored_count(&admin).ok().filter(|&n| n >= threshold))
            })
            .await?;
        admin.process.kill();
        let before = read_logs(&agents);
        admin.kill_and_restart()?;
        let stored = stored_names(&admin)?;
        let lost: Vec<&String> = before.acknowledged.keys().filter(|b| !stored.contains(*b)).collect();
        lost_in_all += lost.len();
        println!(
            "kill {point}: SIGKILL with {reached} of {total} stored and {} acknowledged; after the restart {} stored, \
             {} acknowledged then lost{}",
            before.acknowledged.len(),
            stored.len(),
            lost.len(),
            if lost.is_empty() { String::new() } else { format!(" ({:?}…)", &lost[..lost.len().min(5)]) }
        );
    }
    eventually_every(Duration::from_secs(900), Duration::from_millis(500), "the whole inventory", || async {
        Ok(stored_count(&admin).ok().filter(|&n| n == total as u64))
    })
    .await?;
    let wall = started.elapsed().as_secs_f64();
    // Every bucket's acknowledgement reaches its agent a moment after it is stored.
    let logged =
        eventually_every(Duration::from_secs(120), Duration::from_millis(500), "every acknowledgement", || async {
            let logged = read_logs(&agents);
            Ok((logged.acknowledged.len() == total).then_some(logged))
        })
        .await?;
    let acknowledgements: usize = logged.acknowledged.values().sum();
    println!("agents: {agents_n}");
    println!("buckets: {total}");
    println!("kills: {kills}");
    println!("first inventory with the kills, wall s: {wall:.1}");
    println!("acknowledged then lost: {lost_in_all}");
    println!("acknowledgements: {acknowledgements}");
    println!("re-uploads (acknowledgements beyond one per bucket): {}", acknowledgements - total);
    println!("reconnects: {}", logged.reconnects);
    println!("resent at reconnect (unacknowledged reports): {}", logged.resent);
    println!("resent per kill per agent: {:.2}", logged.resent as f64 / (kills * agents_n).max(1) as f64);
    println!("refreshes asked by the administrator: {}", logged.refreshes_asked);
    anyhow::ensure!(lost_in_all == 0, "acknowledged reports were lost");
    Ok(())
}
