//! The load generator at CI size: 100 synthetic agents × 2 Regions × 10 buckets against the
//! real administrator. Everything converges, and after a SIGKILL and restart every agent
//! reconnects with nothing sent again (all of it was acknowledged); killed with reports in
//! flight, only those are sent again; with the store lost, the administrator asks for every
//! Region and the load generator reads them again, as the agent does. The big run (10,000
//! agents) is a command in BENCHMARKS.md, not a test. (The load generator bounds each phase
//! with `--timeout`; times are printed, not asserted.)

use super::*;

/// Runs `estate-loadgen` at CI size with `extra` flags; returns its closing JSON.
fn loadgen(extra: &[&str]) -> anyhow::Result<Value> {
    let output = std::process::Command::new(estate_tests::binary("estate-loadgen"))
        .args(["--agents", "100", "--regions", "2", "--buckets", "10", "--timeout", "120"])
        .args(["--admin-bin", &estate_tests::binary("estate-admin").display().to_string()])
        .args(extra)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "estate-loadgen failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{stdout}");
    Ok(serde_json::from_str(stdout.lines().last().unwrap_or_default())?)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_agents_converge_and_reconnect_without_reupload() -> anyhow::Result<()> {
    let result = loadgen(&[])?;
    assert_eq!(result["buckets"], 2000, "{result}");
    assert_eq!(result["rejects"], 0, "{result}");
    let restart = &result["restart"];
    assert_eq!(restart["snapshots_resent"], 0, "a reconnect resends nothing acknowledged: {result}");
    assert_eq!(restart["refreshes_asked"], 0, "the store held every acknowledged completion: {result}");
    assert!(restart["hellos"].as_u64().unwrap() >= 100, "every agent said hello again: {result}");
    Ok(())
}

/// Killed while churned re-reads are unacknowledged: at most those are sent again, and nothing
/// acknowledged was lost (no Region asked for again).
#[tokio::test(flavor = "multi_thread")]
async fn killed_with_reports_in_flight_only_those_are_sent_again() -> anyhow::Result<()> {
    let result = loadgen(&["--kill-in-flight", "--churn-per-minute", "600"])?;
    let restart = &result["restart"];
    assert_eq!(restart["acknowledged_then_lost_snapshots"], 0, "{result}");
    assert_eq!(restart["refreshes_asked"], 0, "{result}");
    let (in_flight, resent) = (restart["unacknowledged_at_kill"].as_u64(), restart["snapshots_resent"].as_u64());
    assert!(resent <= in_flight, "only what was unacknowledged at the kill is sent again: {result}");
    Ok(())
}

/// The store lost at the kill: the administrator asks every agent for its Regions again, and
/// every acknowledged snapshot is read and sent once more, counted as acknowledged then lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_store_is_refreshed_by_the_agents_it_asks() -> anyhow::Result<()> {
    let result = loadgen(&["--wipe-store-at-kill"])?;
    let restart = &result["restart"];
    assert_eq!(restart["refreshes_asked"], 100, "every agent asked once (both its Regions): {result}");
    assert_eq!(restart["acknowledged_then_lost_snapshots"], 2000, "{result}");
    Ok(())
}
