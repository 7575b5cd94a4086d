//! Data-driven analyser test: one `check` over every `tests/corpus/*.json` case, comparing
//! every expected verdict, re-checking every witness with the concrete evaluator, and
//! printing all mismatches before failing.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use estate_policy::{analyze, evaluate, parse_policy, AnalysisOptions, Decision, Question, SharedAccess, Tri};
use serde_json::Value;

#[path = "support/context.rs"]
mod support;
use support::context;

/// The package's directory: cargo's at run time, since a test binary reused from a build in
/// another checkout (CI's shared target directory) still carries that checkout's
/// compile-time path.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

fn corpus_dir() -> PathBuf {
    manifest_dir().join("tests/corpus")
}

fn tri_of(v: &Value) -> Option<Tri> {
    match v {
        Value::Bool(true) => Some(Tri::True),
        Value::Bool(false) => Some(Tri::False),
        Value::String(s) => match s.to_ascii_uppercase().as_str() {
            "TRUE" => Some(Tri::True),
            "FALSE" => Some(Tri::False),
            "UNKNOWN" => Some(Tri::Unknown),
            _ => None,
        },
        _ => None,
    }
}

fn shared_of(v: &Value) -> Option<SharedAccess> {
    Some(match v.as_str()? {
        "EXTERNAL" => SharedAccess::External,
        "INTERNAL" => SharedAccess::Internal,
        "NOT_SHARED" => SharedAccess::NotShared,
        "UNKNOWN" => SharedAccess::Unknown,
        _ => return None,
    })
}

/// The rule tags of `policy/SEMANTICS.md` (`[public.caller]`, ...).
fn semantics_rules() -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest_dir().join("SEMANTICS.md")).unwrap();
    text.split("`[").skip(1).filter_map(|rest| rest.split_once("]`").map(|(tag, _)| tag.to_owned())).collect()
}

/// Checks one case; returns its mismatches as (field, expected, got).
fn check(case: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut miss = |field: &str, expected: String, got: String| out.push((field.to_owned(), expected, got));
    // Every case names the rule its expected verdicts follow from.
    let rules = semantics_rules();
    match case.get("rule").and_then(Value::as_str) {
        Some(rule) if rules.contains(rule) => {}
        other => miss("rule", format!("one of SEMANTICS.md's rules {rules:?}"), format!("{other:?}")),
    }
    let text = match (case.get("policyText"), case.get("policy")) {
        (Some(Value::String(t)), _) => t.clone(),
        (_, Some(p)) => serde_json::to_string(p).unwrap_or_default(),
        _ => {
            miss("policy", "a `policy` or `policyText`".into(), "neither".into());
            return out;
        }
    };
    let bucket = case.get("bucket").and_then(Value::as_str).unwrap_or("example-bucket").to_owned();
    let ctx = context(case);
    // Counted in Z3's resource units, so that a busy machine gives the same verdicts; a case
    // about the time budget sets its own.
    let mut opts = AnalysisOptions::counted();
    if let Some(ms) = case.get("timeoutMs").and_then(Value::as_u64) {
        opts = AnalysisOptions { budget: Duration::from_millis(ms), ..AnalysisOptions::default() };
    }
    let expected = case.get("expected").cloned().unwrap_or(Value::Null);
    let result = std::panic::catch_unwind(|| analyze(&text, &bucket, &ctx, &opts));
    let result = match result {
        Ok(r) => r,
        Err(p) => {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            miss("analyze", "no panic".into(), format!("panic: {}", msg.unwrap_or_default()));
            return out;
        }
    };
    if let Some(err) = expected.get("error").and_then(Value::as_str) {
        match result {
            Ok(_) => miss("error", err.to_owned(), "Ok(analysis)".into()),
            Err(e) if !e.to_string().to_lowercase().contains(&err.to_lowercase()) => {
                miss("error", err.to_owned(), e.to_string())
            }
            Err(_) => {}
        }
        return out;
    }
    let a = match result {
        Ok(a) => a,
        Err(e) => {
            miss("analyze", "Ok".into(), format!("Err({e})"));
            return out;
        }
    };
    let tri_fields = [
        ("allowsPublicReadAccess", a.allows_public_read_access),
        ("allowsPublicWriteAccess", a.allows_public_write_access),
        ("sharedWithCloudFront", a.shared_with_cloudfront),
        ("allowsUnencryptedObjectUploads", a.allows_unencrypted_object_uploads),
    ];
    for (field, got) in tri_fields {
        if let Some(v) = expected.get(field) {
            match tri_of(v) {
                Some(want) if want == got => {}
                _ => miss(field, v.to_string(), format!("{got:?}")),
            }
        }
    }
    if let Some(v) = expected.get("sharedAccess") {
        if shared_of(v) != Some(a.shared_access) {
            miss("sharedAccess", v.to_string(), format!("{:?}", a.shared_access));
        }
    }
    for (field, got) in [("internalAccounts", &a.internal_accounts), ("externalAccounts", &a.external_accounts)] {
        if let Some(v) = expected.get(field).and_then(Value::as_array) {
            let want: BTreeSet<String> = v.iter().filter_map(Value::as_str).map(str::to_owned).collect();
            let have: BTreeSet<String> = got.iter().cloned().collect();
            if want != have {
                miss(field, format!("{want:?}"), format!("{have:?}"));
            }
        }
    }
    // Every witness must be confirmed by the concrete evaluator.
    if let Ok(policy) = parse_policy(&text) {
        for w in &a.witnesses {
            let decision = evaluate(&policy, &w.to_request());
            let ok = match w.question {
                Question::UnencryptedUpload => decision != Decision::ExplicitlyDenied,
                _ => decision == Decision::Allowed,
            };
            if !ok {
                miss(
                    &format!("witness {}", w.question),
                    "confirmed by `evaluate`".into(),
                    format!("{decision:?} for {w:?}"),
                );
            }
        }
    }
    // The pre-solver layer must agree with the solver on every question: the same case with
    // the layer off gives the same verdicts.
    if case.get("timeoutMs").is_none() {
        let plain = AnalysisOptions { presolve: false, ..opts.clone() };
        if let Ok(b) = analyze(&text, &bucket, &ctx, &plain) {
            let verdicts = |x: &estate_policy::Analysis| {
                (
                    x.allows_public_read_access,
                    x.allows_public_write_access,
                    x.shared_access,
                    x.shared_with_cloudfront,
                    x.allows_unencrypted_object_uploads,
                    x.internal_accounts.iter().cloned().collect::<BTreeSet<_>>(),
                    x.external_accounts.iter().cloned().collect::<BTreeSet<_>>(),
                )
            };
            if verdicts(&a) != verdicts(&b) {
                miss("presolve", format!("{:?} (solver only)", verdicts(&b)), format!("{:?}", verdicts(&a)));
            }
        }
    }
    if !a.unknown_reasons.is_empty() && expected.as_object().is_some_and(|o| !o.values().any(|v| v == "UNKNOWN")) {
        miss("unknownReasons", "[]".into(), format!("{:?}", a.unknown_reasons));
    }
    out
}

#[test]
fn corpus() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("the corpus directory `policy/tests/corpus` exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut mismatches = Vec::new();
    let mut unreadable = Vec::new();
    let mut slowest: Vec<(Duration, String)> = Vec::new();
    for f in &files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let case: Value = match std::fs::read_to_string(f)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                unreadable.push(format!("{name}: {e}"));
                continue;
            }
        };
        let started = std::time::Instant::now();
        let found = check(&case);
        slowest.push((started.elapsed(), name.clone()));
        for (field, expected, got) in found {
            mismatches.push(format!("{name}: {field}: expected {expected}, got {got}"));
        }
    }
    let failing: BTreeSet<&str> = mismatches.iter().filter_map(|m| m.split(':').next()).collect();
    eprintln!(
        "corpus: {} cases, {} failing, {} mismatches, {} unreadable",
        files.len(),
        failing.len(),
        mismatches.len(),
        unreadable.len()
    );
    slowest.sort();
    for (d, name) in slowest.iter().rev().take(5) {
        eprintln!("  slow: {name} {d:?}");
    }
    for m in mismatches.iter().chain(&unreadable) {
        eprintln!("  {m}");
    }
    assert!(
        mismatches.is_empty() && unreadable.is_empty(),
        "{} corpus mismatches (listed above)",
        mismatches.len() + unreadable.len()
    );
}

/// Shapes the pre-solver decides entirely, each once a hard solver query: policy variables
/// filled from the request, an outsider's own organization ID or path, an account a
/// principal-account pattern asks for, `...IfExists` Denies escaped with a value they do not
/// match, an encryption header only `Null` reads, actions no Deny names, an IAM ARN whose
/// account field is fixed, a principal-ARN condition no account meets. The corpus test checks
/// that their verdicts are the solver's; this one that the solver is not asked.
#[test]
fn the_pre_solver_decides_these_shapes_without_the_solver() {
    let mut asked = Vec::new();
    for name in [
        "rk-source-vpc-policy-variable.json",
        "rk-principal-account-policy-variable.json",
        "rk-principal-org-paths-policy-variable.json",
        "resource-policy-variable-username.json",
        "rk-principal-org-paths-wildcard.json",
        "rk-principal-org-id-wildcard.json",
        "op-deny-bool-if-exists-secure-transport.json",
        "trap-deny-string-equals-if-exists-one-vpc.json",
        "enc-allow-public-put-with-null-deny.json",
        "deny-org-paths-not-ours-removes-public.json",
        "deny-not-action-get-removes-public-write.json",
        "principal-wildcard-name-in-outside-account.json",
        "fuzz-oai-named-by-canonical-id.json",
    ] {
        let text = std::fs::read_to_string(corpus_dir().join(name)).expect("the corpus case exists");
        let case: Value = serde_json::from_str(&text).expect("the corpus case is JSON");
        let policy = serde_json::to_string(&case["policy"]).expect("a policy");
        let bucket = case.get("bucket").and_then(Value::as_str).unwrap_or("example-bucket");
        let analysis = analyze(&policy, bucket, &context(&case), &AnalysisOptions::default()).expect("it parses");
        if !analysis.stats.solved.is_empty() {
            asked.push(format!("{name}: {}", analysis.stats.solved.join(", ")));
        }
    }
    assert!(asked.is_empty(), "the solver was asked:\n{}", asked.join("\n"));
}
