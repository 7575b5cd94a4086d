//! The realistic mix with the pre-solver layer on and off: every verdict identical.

use std::collections::BTreeSet;
use std::sync::Arc;

use estate_policy::{analyze, AccountId, AnalysisOptions, OrgContext};

#[path = "support/realistic.rs"]
mod realistic;

#[test]
fn presolve_agrees_with_the_solver_on_the_realistic_mix() {
    // `ESTATE_REALISTIC_CASES` asks for more (the solver alone takes ~60 ms a policy).
    let n = std::env::var("ESTATE_REALISTIC_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(120);
    let set: Arc<BTreeSet<AccountId>> = Arc::new(realistic::members().iter().map(|m| m.parse().unwrap()).collect());
    // Counted in Z3's resource units: no verdict here depends on how busy the machine is.
    let plain = AnalysisOptions { presolve: false, ..AnalysisOptions::counted() };
    for (text, bucket, owner) in realistic::mix(n) {
        let ctx = OrgContext {
            owner_account: owner.parse().unwrap(),
            organization_id: Some(realistic::ORG.to_owned()),
            member_accounts: Arc::clone(&set),
            organization_paths: Vec::new(),
        };
        let on = analyze(&text, &bucket, &ctx, &AnalysisOptions::counted()).unwrap();
        let off = analyze(&text, &bucket, &ctx, &plain).unwrap();
        assert!(on.unknown_reasons.is_empty() && off.unknown_reasons.is_empty(), "{text}: {on:?} / {off:?}");
        let verdicts = |a: &estate_policy::Analysis| {
            (
                a.allows_public_read_access,
                a.allows_public_write_access,
                a.shared_access,
                a.shared_with_cloudfront,
                a.allows_unencrypted_object_uploads,
                a.internal_accounts.clone(),
                a.external_accounts.clone(),
            )
        };
        assert_eq!(verdicts(&on), verdicts(&off), "{text}");
    }
}
