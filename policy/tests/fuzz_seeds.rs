//! Replays the seeds of the policy fuzz targets (`fuzz/seeds/<target>/`) and any crash they
//! found (`fuzz/artifacts/<target>/`, where cargo-fuzz writes them) through the targets' own
//! steps: `policy_parser` parses, then evaluates a plain request; `policy_analyzer` builds its
//! structured policy from the bytes (the target's own input module) and analyses it. None may
//! panic, so a crash, once committed, stays fixed without the nightly toolchain.

#[path = "../../fuzz/replay.rs"]
mod replay;

#[test]
fn every_parser_seed_and_crash_input_parses_or_fails_without_a_panic() {
    let (seeds, crashes) = replay::inputs("policy_parser", 100);
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

#[path = "../../fuzz/fuzz_targets/policy_analyzer_input.rs"]
mod analyzer_input;

#[test]
fn every_analyzer_seed_and_crash_input_is_answered_without_a_panic() {
    use arbitrary::Arbitrary;
    let (seeds, crashes) = replay::inputs("policy_analyzer", 10);
    let ctx = analyzer_input::context();
    // Counted in Z3's resource units: the same answers on a busy machine.
    let opts = estate_policy::AnalysisOptions::counted();
    let mut analysed = 0;
    for path in seeds.iter().chain(&crashes) {
        let data = std::fs::read(path).expect("a readable input");
        // As libfuzzer-sys builds a typed input from the bytes.
        let Ok(input) = analyzer_input::Input::arbitrary_take_rest(arbitrary::Unstructured::new(&data)) else {
            continue;
        };
        let text = analyzer_input::policy_text(&input);
        let outcome = std::panic::catch_unwind(|| estate_policy::analyze(&text, "example-bucket", &ctx, &opts));
        match outcome {
            Err(_) => panic!("{} panics: {text}", path.display()),
            Ok(Ok(analysis)) => {
                assert!(!analysis.internal_error, "{}: an internal error for {text}", path.display());
                analysed += 1;
            }
            // Malformed combinations are refused by the parser, as in the target.
            Ok(Err(_)) => {}
        }
    }
    assert!(analysed > 0, "no seed made a policy");
}
