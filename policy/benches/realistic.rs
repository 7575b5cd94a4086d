//! A realistic mix: 10,000 distinct bucket policies generated from the shapes of AWS's
//! documented examples (public website, CloudFront OAC and OAI, cross-account access,
//! organization-only, require TLS, require SSE, VPC-endpoint-only, log delivery,
//! replication), with varied names, accounts, CIDRs and conditions, judged under an
//! organization of 50 accounts. Prints per-policy latency with and without the pre-solver
//! layer, how many questions the layer decided, solver calls per policy, and the time of a
//! full re-judge of every policy on both cores after a membership change, without and with
//! the cache.
//!
//! `ESTATE_BENCH_POLICIES` overrides 10,000.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use estate_policy::{analyze, AccountId, AnalysisOptions, Analyzer, OrgContext};

#[path = "../tests/support/realistic.rs"]
mod realistic;
use realistic::{members, mix, ORG};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn main() {
    let n: usize = std::env::var("ESTATE_BENCH_POLICIES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let members = members();
    let docs = mix(n);
    let set: Arc<BTreeSet<AccountId>> = Arc::new(members.iter().map(|m| m.parse().expect("an account ID")).collect());
    let ctx = |owner: &str, set: &Arc<BTreeSet<AccountId>>| OrgContext {
        owner_account: owner.parse().expect("an account ID"),
        organization_id: Some(ORG.to_owned()),
        member_accounts: Arc::clone(set),
        organization_paths: Vec::new(),
    };

    // Latency per policy, one thread, no cache: with the layer, then the solver alone.
    let run = |opts: &AnalysisOptions, docs: &[(String, String, String)]| {
        let mut lat = Vec::with_capacity(docs.len());
        let (mut questions, mut before, mut calls, mut unknown) = (0u64, 0u64, 0u64, 0usize);
        for (text, bucket, owner) in docs {
            let t = Instant::now();
            let a = analyze(text, bucket, &ctx(owner, &set), opts).expect("generated policies parse");
            lat.push(t.elapsed());
            questions += u64::from(a.stats.questions);
            before += u64::from(a.stats.decided_before_solver);
            calls += u64::from(a.stats.solver_calls);
            unknown += usize::from(!a.unknown_reasons.is_empty());
        }
        lat.sort();
        (lat, questions, before, calls, unknown)
    };
    let opts = AnalysisOptions::default();
    // Warm-up (the thread's Z3 context).
    let _ = run(&opts, &docs[..docs.len().min(50)]);
    let (lat, questions, before, calls, unknown) = run(&opts, &docs);
    let baseline_n = (n / 10).max(1);
    let plain = AnalysisOptions { presolve: false, ..opts.clone() };
    let (base_lat, base_questions, base_before, base_calls, _) = run(&plain, &docs[..baseline_n]);

    // A full re-judge on both cores after a membership change: every policy once, under the
    // new organization, through a shared cache; then again with everything cached.
    let changed: Arc<BTreeSet<AccountId>> = Arc::new(set.iter().skip(1).cloned().collect());
    let analyzer = Arc::new(Analyzer::new(opts.clone(), 2 * n));
    let rejudge = |analyzer: &Arc<Analyzer>| {
        let started = Instant::now();
        std::thread::scope(|scope| {
            for half in 0..2 {
                let analyzer = Arc::clone(analyzer);
                let (docs, changed, ctx) = (&docs, &changed, &ctx);
                scope.spawn(move || {
                    for (text, bucket, owner) in docs.iter().skip(half).step_by(2) {
                        let _ = analyzer.analyze(text, bucket, &ctx(owner, changed));
                    }
                });
            }
        });
        started.elapsed()
    };
    let cold = rejudge(&analyzer);
    let warm = rejudge(&analyzer);

    println!(
        "estate-policy realistic mix: {n} distinct policies, 50-account organization, no cache unless said; \
         percentiles over the {n} analyses of one pass (the baseline's over its {baseline_n})"
    );
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| p50 / p99 / max per policy | {:.3?} / {:.3?} / {:.3?} |",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or_default()
    );
    println!(
        "| questions decided before the solver | {before} of {questions} ({:.1} %) |",
        100.0 * before as f64 / questions.max(1) as f64
    );
    println!("| solver calls per policy | {:.3} |", calls as f64 / n as f64);
    println!("| policies with an UNKNOWN verdict | {unknown} |");
    println!(
        "| baseline, solver only ({baseline_n} policies): p50 / p99 / solver calls per policy | {:.3?} / {:.3?} / {:.2} |",
        percentile(&base_lat, 0.5),
        percentile(&base_lat, 0.99),
        base_calls as f64 / baseline_n as f64
    );
    // The baseline folds constants too: what the pre-solver adds is the difference.
    println!(
        "| baseline, solver only: questions decided before the solver | {base_before} of {base_questions} ({:.1} %) |",
        100.0 * base_before as f64 / base_questions.max(1) as f64
    );
    println!("| full re-judge after a membership change, 2 threads, cold cache | {cold:.2?} |");
    println!("| the same, every result cached | {warm:.3?} |");
}
