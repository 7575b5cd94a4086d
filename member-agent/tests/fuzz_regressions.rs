//! Replays the `inventory_report` fuzz target's seeds (`fuzz/seeds/inventory_report/`) and any
//! crash it found (`fuzz/artifacts/inventory_report/`, where cargo-fuzz writes them) through
//! the target's own body, `report::fuzz_one`: none may panic, so a crash, once committed,
//! stays fixed. The seeds that stand for a limit or a refusal must meet it by name.

use estate_member_agent::report::{fuzz_one, ReportError};

#[path = "../../fuzz/replay.rs"]
mod replay;

#[test]
fn every_seed_and_crash_input_is_answered_without_a_panic() {
    let (seeds, crashes) = replay::inputs("inventory_report", 10);
    let mut outcomes = std::collections::BTreeMap::new();
    for path in seeds.iter().chain(&crashes) {
        let data = std::fs::read(path).expect("a readable input");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let outcome =
            std::panic::catch_unwind(|| fuzz_one(&data)).unwrap_or_else(|_| panic!("{} panics", path.display()));
        outcomes.insert(name, outcome);
    }
    let objects = |name: &str| match &outcomes[name] {
        Ok(stats) => stats.totals.object_count,
        Err(error) => panic!("{name}: {error}"),
    };
    // The latest version of each live key counts.
    assert_eq!(objects("report"), 2);
    assert_eq!(objects("report-two-files"), 4);
    assert_eq!(objects("raw-gzip"), 2);
    assert_eq!(objects("bad-escapes"), 9);
    assert_eq!(objects("many-lines"), 1000);
    assert_eq!(objects("crlf-and-quotes"), 3);
    let refused = |name: &str| outcomes[name].as_ref().err().cloned();
    assert!(matches!(refused("wrong-source-bucket"), Some(ReportError::WrongSourceBucket { .. })));
    assert!(matches!(refused("no-source-bucket"), Some(ReportError::ManifestMalformed { .. })));
    assert!(matches!(refused("not-csv"), Some(ReportError::NotCsv { .. })));
    assert!(matches!(refused("no-key-column"), Some(ReportError::NoKeyColumn)));
    assert!(matches!(refused("long-line"), Some(ReportError::LineTooLong { .. })));
    assert!(matches!(refused("raw-gzip-bomb"), Some(ReportError::ReportTooLarge { .. })));
    assert!(matches!(refused("raw-garbage"), Some(ReportError::NotGzip { .. })));
    assert!(matches!(refused("empty"), Some(ReportError::ManifestMalformed { .. })));
}
