//! Replays the `policy_parser` fuzz target's seeds (`fuzz/seeds/policy_parser/`) and any crash
//! it found (`fuzz/artifacts/policy_parser/`, where cargo-fuzz writes them) through the
//! target's own steps: parse, then evaluate a plain request. None may panic, so a crash, once
//! committed, stays fixed without the nightly toolchain.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        entries.map(|e| e.expect("a directory entry").path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_parser_seed_and_crash_input_parses_or_fails_without_a_panic() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let seeds = inputs(&fuzz.join("seeds/policy_parser"));
    assert!(seeds.len() >= 100, "the seed corpus is missing: {}", fuzz.display());
    let crashes = inputs(&fuzz.join("artifacts/policy_parser"));
    let mut parsed = 0;
    for path in seeds.iter().chain(&crashes) {
        let data = std::fs::read(path).expect("a readable input");
        let outcome = std::panic::catch_unwind(|| {
            let text = std::str::from_utf8(&data).ok()?;
            let policy = estate_policy::parse_policy(text).ok()?;
            let request = estate_policy::Request {
                principal: estate_policy::Principal::Anonymous,
                action: "s3:GetObject".into(),
                resource: "arn:aws:s3:::example-bucket/k".into(),
                context: Default::default(),
            };
            Some(estate_policy::evaluate(&policy, &request))
        });
        parsed += usize::from(outcome.unwrap_or_else(|_| panic!("{} panics", path.display())).is_some());
    }
    assert!(parsed * 2 > seeds.len(), "most seeds are policies: only {parsed} of {} parsed", seeds.len());
}
