//! Benchmark over the whole corpus: every question per policy, no cache; prints p50, p99 and
//! max latency per policy, policies per second, and the cost of a cache hit; then the same
//! figures for the corpus's policies written from AWS's documentation examples alone (not
//! from the pre-solver's templates), and for the hostile set.

use std::time::{Duration, Instant};

use estate_policy::{analyze, AnalysisOptions, Analyzer};
use serde_json::Value;

#[path = "../tests/support/context.rs"]
mod support;
use support::context;
#[path = "../tests/support/hostile.rs"]
#[allow(dead_code, reason = "the benchmark times the documents; their expected verdicts are for the tests")]
mod hostile;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// The figures of one subset of the corpus.
#[derive(Default)]
struct Subset {
    policies: u64,
    latencies: Vec<Duration>,
    questions: u64,
    presolved: u64,
    calls: u64,
    baseline_questions: u64,
    baseline_before: u64,
}

fn main() {
    // Cargo's directory at run time (a reused build keeps another checkout's path).
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .join("tests/corpus");
    let mut cases = Vec::new();
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("corpus directory").filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for path in files.iter().filter(|p| p.extension().is_some_and(|x| x == "json")) {
        let Ok(case) = std::fs::read_to_string(path)
            .map_err(|_| ())
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|_| ()))
        else {
            continue;
        };
        if case.get("policyText").is_some() || case.get("timeoutMs").is_some() {
            continue; // malformed input and deliberate timeouts measure nothing useful here
        }
        let Some(policy) = case.get("policy") else { continue };
        let text = serde_json::to_string(policy).unwrap_or_default();
        let bucket = case.get("bucket").and_then(Value::as_str).unwrap_or("example-bucket").to_owned();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let from_docs = case.get("source").and_then(Value::as_str).is_some_and(|s| s.starts_with("aws-docs:"));
        cases.push((name, text, bucket, context(&case), from_docs));
    }
    let mut opts = AnalysisOptions::default();
    // `ESTATE_BENCH_TIMEOUT_MS` shrinks the per-policy budget (to exercise the timeout path).
    if let Some(ms) = std::env::var("ESTATE_BENCH_TIMEOUT_MS").ok().and_then(|v| v.parse().ok()) {
        opts.budget = Duration::from_millis(ms);
    }
    let rounds = std::env::var("ESTATE_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3usize);
    // Warm-up: one pass (creates the thread's Z3 context).
    for (_, text, bucket, ctx, _) in &cases {
        let _ = analyze(text, bucket, ctx, &opts);
    }
    // Baseline in the same run: the solver alone (the pre-solver layer off).
    let plain = AnalysisOptions { presolve: false, ..opts.clone() };
    let mut baseline: Vec<Duration> = Vec::new();
    let (mut plain_questions, mut plain_calls, mut plain_before) = (0u64, 0u64, 0u64);
    let mut docs = Subset::default();
    for (_, text, bucket, ctx, from_docs) in &cases {
        let t = Instant::now();
        if let Ok(a) = analyze(text, bucket, ctx, &plain) {
            plain_questions += u64::from(a.stats.questions);
            plain_calls += u64::from(a.stats.solver_calls);
            plain_before += u64::from(a.stats.decided_before_solver);
            if *from_docs {
                docs.baseline_questions += u64::from(a.stats.questions);
                docs.baseline_before += u64::from(a.stats.decided_before_solver);
            }
        }
        baseline.push(t.elapsed());
    }
    baseline.sort();
    let mut per_policy: Vec<(Duration, &str)> = Vec::new();
    let (mut questions, mut presolved, mut calls) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    for round in 0..rounds {
        for (name, text, bucket, ctx, from_docs) in &cases {
            let t = Instant::now();
            let analysis = analyze(text, bucket, ctx, &opts);
            per_policy.push((t.elapsed(), name));
            if *from_docs {
                docs.latencies.push(t.elapsed());
            }
            if let (0, Ok(a)) = (round, analysis) {
                questions += u64::from(a.stats.questions);
                presolved += u64::from(a.stats.decided_before_solver);
                calls += u64::from(a.stats.solver_calls);
                if *from_docs {
                    docs.policies += 1;
                    docs.questions += u64::from(a.stats.questions);
                    docs.presolved += u64::from(a.stats.decided_before_solver);
                    docs.calls += u64::from(a.stats.solver_calls);
                }
            }
        }
    }
    let wall = started.elapsed();
    let mut lat: Vec<Duration> = per_policy.iter().map(|(d, _)| *d).collect();
    lat.sort();
    let analyzer = Analyzer::new(opts.clone(), 1024);
    let (_, text, bucket, ctx, _) = &cases[0];
    let _ = analyzer.analyze(text, bucket, ctx);
    let hits = 10_000u32;
    let t = Instant::now();
    for _ in 0..hits {
        let _ = analyzer.analyze(text, bucket, ctx);
    }
    let hit = t.elapsed() / hits;
    per_policy.sort_by_key(|p| std::cmp::Reverse(p.0));
    println!(
        "estate-policy analyze benchmark: {} policies x {rounds} rounds, all questions, no cache; percentiles over \
         the {} analyses (policies x rounds), the baseline's over one round",
        cases.len(),
        lat.len()
    );
    println!("| metric              | value        |");
    println!("|---------------------|--------------|");
    println!("| p50 per policy      | {:>12.3?} |", percentile(&lat, 0.50));
    println!("| p90 per policy      | {:>12.3?} |", percentile(&lat, 0.90));
    println!("| p99 per policy      | {:>12.3?} |", percentile(&lat, 0.99));
    println!("| max per policy      | {:>12.3?} |", lat.last().copied().unwrap_or_default());
    println!("| policies per second | {:>12.1} |", lat.len() as f64 / wall.as_secs_f64());
    println!("| cache hit           | {:>12.3?} |", hit);
    println!(
        "| questions decided before the solver | {presolved} of {questions} ({:.1} %) |",
        100.0 * presolved as f64 / questions.max(1) as f64
    );
    println!("| solver calls per policy | {:.2} |", calls as f64 / cases.len().max(1) as f64);
    println!(
        "| baseline, solver only: p50 / p99 / solver calls per policy | {:.3?} / {:.3?} / {:.2} ({plain_questions} questions) |",
        percentile(&baseline, 0.50),
        percentile(&baseline, 0.99),
        plain_calls as f64 / cases.len().max(1) as f64
    );
    // The baseline folds constants too: what the pre-solver adds is the difference.
    println!(
        "| baseline, solver only: questions decided before the solver | {plain_before} of {plain_questions} ({:.1} %) |",
        100.0 * plain_before as f64 / plain_questions.max(1) as f64
    );
    // The policies written from AWS's documentation examples (the corpus's `aws-docs:` cases),
    // not from the pre-solver's templates: the same figures on that subset alone.
    docs.latencies.sort();
    println!(
        "| AWS documentation examples: p50 / p99 / max ({} policies, percentiles over {} analyses) | {:.3?} / {:.3?} / {:.3?} |",
        docs.policies,
        docs.latencies.len(),
        percentile(&docs.latencies, 0.50),
        percentile(&docs.latencies, 0.99),
        docs.latencies.last().copied().unwrap_or_default()
    );
    println!(
        "| AWS documentation examples: questions decided before the solver | {} of {} ({:.1} %); baseline {} of {} ({:.1} %) |",
        docs.presolved,
        docs.questions,
        100.0 * docs.presolved as f64 / docs.questions.max(1) as f64,
        docs.baseline_before,
        docs.baseline_questions,
        100.0 * docs.baseline_before as f64 / docs.baseline_questions.max(1) as f64
    );
    println!(
        "| AWS documentation examples: solver calls per policy | {:.2} |",
        docs.calls as f64 / docs.policies.max(1) as f64
    );
    // The hostile set: each document once per round, under the default budget.
    let hostile = hostile::hostile_policies("example-bucket");
    let hostile_ctx = context(&Value::Null);
    let mut hostile_lat: Vec<Duration> = Vec::new();
    let mut hostile_slowest: Vec<(Duration, &str)> = Vec::new();
    for _ in 0..rounds.min(2) {
        for h in &hostile {
            let t = Instant::now();
            let _ = analyze(&h.text, "example-bucket", &hostile_ctx, &opts);
            hostile_lat.push(t.elapsed());
            hostile_slowest.push((t.elapsed(), h.name));
        }
    }
    hostile_lat.sort();
    let unreadable = hostile.iter().filter(|h| h.error_names.is_some()).count();
    println!(
        "| hostile set: p50 / p99 / max ({} documents, {unreadable} not policies, budget {:?}) | {:.3?} / {:.3?} / {:.3?} |",
        hostile.len(),
        opts.budget,
        percentile(&hostile_lat, 0.50),
        percentile(&hostile_lat, 0.99),
        hostile_lat.last().copied().unwrap_or_default()
    );
    println!("slowest:");
    let mut seen = std::collections::BTreeSet::new();
    for (d, name) in per_policy.iter().filter(|(_, n)| seen.insert(*n)).take(12) {
        let asked = cases
            .iter()
            .find(|c| c.0 == *name)
            .and_then(|(_, text, bucket, ctx, _)| analyze(text, bucket, ctx, &opts).ok())
            .map(|a| a.stats.solved.join(", "))
            .unwrap_or_default();
        println!("  {d:>10.3?}  {name}  (solver: {asked})");
    }
}
