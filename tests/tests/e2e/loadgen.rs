//! The load generator at CI size: 100 synthetic agents × 2 Regions × 10 buckets against the
//! real administrator. Everything converges, and after a SIGKILL and restart every agent
//! reconnects with nothing sent again (all of it was acknowledged). The big run (10,000
//! agents) is a command in BENCHMARKS.md, not a test.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_agents_converge_and_reconnect_without_reupload() -> anyhow::Result<()> {
    let output = std::process::Command::new(estate_tests::binary("estate-loadgen"))
        .args(["--agents", "100", "--regions", "2", "--buckets", "10", "--timeout", "120"])
        .args(["--admin-bin", &estate_tests::binary("estate-admin").display().to_string()])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "estate-loadgen failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())?;
    assert_eq!(result["buckets"], 2000, "{result}");
    assert!(result["converged_s"].as_f64().unwrap() < 60.0, "{result}");
    assert_eq!(result["rejects"], 0, "{result}");
    let restart = &result["restart"];
    assert_eq!(restart["snapshots_resent"], 0, "a reconnect resends nothing acknowledged: {result}");
    assert_eq!(restart["refreshes_asked"], 0, "the store held every acknowledged completion: {result}");
    assert!(restart["hellos"].as_u64().unwrap() >= 100, "every agent said hello again: {result}");
    assert!(restart["reconverged_s"].as_f64().unwrap() < 60.0, "{result}");
    println!("{stdout}");
    Ok(())
}
