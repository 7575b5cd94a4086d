//! The analyser on structure-aware policies: `arbitrary` builds statements from a vocabulary
//! of the principals, actions, resources, operators and condition keys real policies use,
//! with wildcards and variables anywhere. Each run has a small time budget. A panic — among
//! them the debug assertion that the solver's witness is confirmed by the evaluator — is a
//! crash; the analysis must answer (maybe UNKNOWN) within its budget.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;

#[path = "policy_analyzer_input.rs"]
mod input;

fuzz_target!(|input: input::Input| {
    let text = input::policy_text(&input);
    let ctx = input::context();
    let budget = Duration::from_millis(100);
    let opts = estate_policy::AnalysisOptions { budget, ..Default::default() };
    if std::env::var_os("ESTATE_FUZZ_PRINT").is_some() {
        eprintln!("policy: {text}");
    }
    let start = Instant::now();
    // Malformed combinations (a bad operator for a key, say) are refused by the parser.
    let Ok(analysis) = estate_policy::analyze(&text, "example-bucket", &ctx, &opts) else { return };
    let took = start.elapsed();
    assert!(took < budget + Duration::from_secs(1), "{took:?} for {text}");
    assert!(!analysis.internal_error);
});
