//! The member agent's S3 Inventory report parsing (`member-agent/src/report.rs`): a manifest,
//! gzip CSV fed in chunks through the bounded decoder, and every key percent-decoded. Whatever
//! the bytes, the answer is statistics or a named `ReportError`, never a panic, and memory
//! stays within the limits (libFuzzer's `-rss_limit_mb` catches an unbounded allocation).
//! The input format is `report::fuzz_one`'s; `member-agent/tests/fuzz_regressions.rs` replays
//! the seeds and any crash found here through the same function.
#![no_main]

// Compiled from its source file, so that fuzzing needs neither the AWS SDK nor the agent.
#[allow(dead_code)]
#[path = "../../member-agent/src/report.rs"]
mod report;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = report::fuzz_one(data);
});
