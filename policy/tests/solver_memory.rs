//! Z3's memory ceiling is process-wide, so this test has a process of its own: no other
//! analysis can set the ceiling between the one below and the check.

use estate_policy::{analyze, AnalysisOptions, OrgContext};

#[test]
fn the_solver_memory_ceiling_is_set_before_a_solver_runs() {
    let ctx = OrgContext {
        owner_account: "111111111111".parse().unwrap(),
        organization_id: None,
        member_accounts: std::sync::Arc::new(Default::default()),
        organization_paths: vec![],
    };
    let policy =
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#;
    // Neither Z3's default nor the analyser's (512 MiB).
    let opts = AnalysisOptions { solver_memory_mib: 384, presolve: false, ..AnalysisOptions::default() };
    analyze(policy, "b", &ctx, &opts).unwrap();
    let set = z3::get_global_param("memory_high_watermark").and_then(|b| b.parse::<u64>().ok());
    assert_eq!(set, Some(384 * 1024 * 1024));
}
