//! Policies built to be slow or to explode: each is answered within the budget (decided, or
//! UNKNOWN with a reason), or refused as unreadable with an error naming the limit, and the
//! process stays small. Time is the analysing thread's CPU time, which a busy machine does not
//! stretch (a wall-clock bound here once failed on a loaded machine).

use std::time::Duration;

use estate_policy::{analyze, AnalysisOptions, Analyzer, SharedAccess, Tri};

#[path = "support/context.rs"]
#[allow(dead_code)]
mod context;
#[path = "support/hostile.rs"]
mod hostile;

/// Peak resident memory of this process, from `/proc/self/status`.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// The CPU time this thread has used (`/proc/thread-self/stat`, in clock ticks of 10 ms). The
/// analysis runs Z3 on the calling thread, so this is what it spent, whatever else the machine
/// runs: unlike the wall clock, it does not grow when other processes take the cores.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    // The fields after the command name (which may hold spaces), from the third on.
    let fields: Vec<&str> = stat.rsplit_once(')').expect("a stat line").1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Runs `f`, returning its result and the CPU time it took on this thread.
fn cpu_time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let before = thread_cpu();
    let out = f();
    (out, thread_cpu() - before)
}

#[test]
fn hostile_policies_are_bounded_in_time_and_memory() {
    let ctx = context::context(&serde_json::Value::Null);
    let opts = AnalysisOptions::default();
    // The budget covers the analysis; the rest is parsing and compiling, which a debug build
    // does several times slower than a release one.
    let allowed = opts.budget + Duration::from_secs(if cfg!(debug_assertions) { 8 } else { 1 });
    for h in hostile::hostile_policies("example-bucket") {
        let (result, took) = cpu_time(|| analyze(&h.text, "example-bucket", &ctx, &opts));
        assert!(took <= allowed, "{}: {took:?} of CPU time", h.name);
        match (&h.error_names, result) {
            (Some(limit), Err(e)) => assert!(e.to_string().contains(limit), "{}: {e}", h.name),
            (Some(_), Ok(a)) => panic!("{}: analysed as a policy: {a:?}", h.name),
            (None, Err(e)) => panic!("{}: {e}", h.name),
            (None, Ok(a)) => {
                let undecided = [a.allows_public_read_access, a.allows_public_write_access, a.shared_with_cloudfront]
                    .contains(&Tri::Unknown)
                    || a.shared_access == SharedAccess::Unknown
                    || a.allows_unencrypted_object_uploads == Tri::Unknown;
                assert_eq!(undecided, !a.unknown_reasons.is_empty(), "{}: {a:?}", h.name);
                let read = serde_json::to_value(a.allows_public_read_access).unwrap();
                hostile::check_public_read(&h, read.as_str().unwrap()).unwrap();
                assert!(!a.internal_error, "{}: {a:?}", h.name);
                eprintln!("{}: {took:?}, reasons {:?}", h.name, a.unknown_reasons);
            }
        }
    }
    let peak = peak_rss_mib();
    assert!(peak < 1024, "peak RSS {peak} MiB");
}

#[test]
fn over_s3s_limit_is_unknown_without_parsing() {
    let ctx = context::context(&serde_json::Value::Null);
    // Not even JSON: over 20 KB, it is not read at all.
    let text = "x".repeat(estate_policy::MAX_POLICY_BYTES + 1);
    let a = analyze(&text, "example-bucket", &ctx, &AnalysisOptions::default()).unwrap();
    assert_eq!(a.shared_access, SharedAccess::Unknown);
    assert!(a.unknown_reasons[0].contains("20 KB"), "{:?}", a.unknown_reasons);
}

/// The wildcard explosion that once took 2.7 GB is decided exactly: the long name after
/// sixteen `*`s can appear in an object key, so anyone can read such an object.
#[test]
fn sixteen_stars_are_decided_exactly() {
    let ctx = context::context(&serde_json::Value::Null);
    let h = hostile::hostile_policies("example-bucket").into_iter().find(|h| h.name.starts_with("sixteen")).unwrap();
    let a = analyze(&h.text, "example-bucket", &ctx, &AnalysisOptions::default()).unwrap();
    assert_eq!(a.allows_public_read_access, Tri::True, "{a:?}");
    let w = a.witnesses.iter().find(|w| w.question.to_string() == "publicRead").unwrap();
    assert!(w.resource.contains(&"a".repeat(43)), "{w:?}");
}

/// One budget for the whole policy: with a tiny budget, a policy with many questions comes
/// back in about that time, the questions not reached UNKNOWN with the reason.
#[test]
fn one_budget_for_all_questions() {
    let mut ctx = context::context(&serde_json::Value::Null);
    ctx.member_accounts =
        std::sync::Arc::new((0..300).map(|i| format!("{:012}", 200_000_000_000_u64 + i).parse().unwrap()).collect());
    let text = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject",
        "Resource":"arn:aws:s3:::example-bucket/*","Condition":{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::2*:role/*"}}}]}"#;
    let opts = AnalysisOptions { budget: Duration::from_millis(50), ..Default::default() };
    let (a, took) = cpu_time(|| Analyzer::new(opts, 0).analyze(text, "example-bucket", &ctx).unwrap());
    assert!(took < Duration::from_millis(if cfg!(debug_assertions) { 3000 } else { 500 }), "{took:?} of CPU time");
    assert!(a.unknown_reasons.iter().any(|r| r.contains("budget")), "{:?}", a.unknown_reasons);
}

/// Found by fuzzing: a long `StringEqualsIgnoreCase` literal went to Z3's regex engine, which
/// ran for seconds past a 100 ms budget (it does not stop at the time limit there), and the
/// memory it took made later checks fail. Such a literal is now compared character by
/// character, and the analysis keeps to its budget.
#[test]
fn a_long_case_insensitive_literal_keeps_to_the_budget() {
    let ctx = context::context(&serde_json::Value::Null);
    let text = r#"{"Statement":[{"Action":["s3:DeleteObject","s3:PutObject"],"Condition":{"StringEqualsIgnoreCase":{"s3:x-amz-server-side-encryption-customer-algorithm":["arn:aws:s3:::arn:aws:s3:::arn:aws:s3:::arn:aws:s3:::arn:aws:s3:::arn:aws:s3:::arn:aws:s3:::arn:aws:s3:::*2222222222222020-01-01T00:00:00Z"]}},"Effect":"Allow","NotPrincipal":{"AWS":["111111111111"],"Federated":"cognito-identity.amazonaws.com","Service":"logging.s3.amazonaws.com"},"NotResource":["arn:aws:s3:::example-bucket/*"]},{"Action":["s3:GetObject","s3:PutObject"],"Condition":{"StringEquals":{"s3:x-amz-server-side-encryption-aws-kms-key-id":[""]},"StringNotEqualsIfExists":{"aws:PrincipalAccount":["true"]}},"Effect":"Deny","NotPrincipal":{"AWS":["*"],"Service":"cloudfront.amazonaws.com"},"Resource":["arn:aws:s3:::example-bucket/*"]}],"Version":"2012-10-17"}"#;
    let opts = AnalysisOptions { budget: Duration::from_millis(100), ..Default::default() };
    let (_, took) = cpu_time(|| analyze(text, "example-bucket", &ctx, &opts).unwrap());
    assert!(took < Duration::from_millis(if cfg!(debug_assertions) { 1500 } else { 600 }), "{took:?} of CPU time");
    // The next analysis in the same process still decides.
    let plain = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*"}]}"#;
    let a = analyze(plain, "example-bucket", &ctx, &AnalysisOptions { presolve: false, ..Default::default() }).unwrap();
    assert!(a.unknown_reasons.is_empty(), "{:?}", a.unknown_reasons);
    assert_eq!(a.allows_public_read_access, Tri::True);
}
