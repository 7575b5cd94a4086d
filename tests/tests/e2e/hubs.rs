//! Hub identities (issue 26), over today's agent binary presenting a hub's token: a hub
//! reports for the accounts of its set, listed or the organization's, and is refused any other
//! with PERMISSION_DENIED; of a hub and an account's own agent, the later connection wins and
//! the other is told why and steps back; revoking a hub's token ends its streams of every
//! account.

use super::parity::member;
use super::*;

const HUB_TOKEN: &str = "hub-token-central-0123456789";
const ORG_HUB_TOKEN: &str = "hub-token-organization-0123456789";

/// Config: the organization of A, B and C, an agent token for each, a hub `central` for A and
/// B, and a hub `everywhere` for the organization's accounts.
fn write_hub_config(dir: &std::path::Path) -> std::path::PathBuf {
    let text = estate_tests::config_text("o-exampleorg1", &[A, B, C], &[A, B, C], agent_token, CLIENT_TOKEN)
        + &format!(
            "[[hubs]]\nname = \"central\"\naccounts = [\"{A}\", \"{B}\"]\ntoken = \"{HUB_TOKEN}\"\n\
             [[hubs]]\nname = \"everywhere\"\naccounts = \"organization\"\ntoken = \"{ORG_HUB_TOKEN}\"\n"
        );
    let path = dir.join("estate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_reports_for_its_accounts_only_and_the_later_reporter_wins() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let dir = tempfile::tempdir()?;
    let config = write_hub_config(dir.path());
    let admin = Admin::start(&dir.path().join("data"), Some(&config))?;
    let creds = |account| moto.credentials(account);
    let (creds_a, creds_c) = (creds(A).await?, creds(C).await?);
    seed_bucket(&moto, &creds_a, &Spec::plain(A, "estate-h-a".into())).await?;

    // A's own agent first; then the hub connects for A: the later connection wins, and the
    // agent is told why and steps back.
    let own = Agent::start(&admin, &moto, &creds_a, Some(&agent_token(A)), &["us-east-1"], &[])?;
    let first = eventually(Duration::from_secs(60), "A's first refresh, by its own agent", || async {
        let m = member(&admin, A)?;
        Ok(m["regions"][0]["lastUpdated"].is_string().then(|| m["regions"][0]["generation"].clone()))
    })
    .await?;
    let hub = Agent::start(&admin, &moto, &creds_a, Some(HUB_TOKEN), &["us-east-1"], &[])?;
    eventually(Duration::from_secs(60), "the agent to be told it was superseded", || async {
        let log = own.process.log_text();
        Ok((log.contains("superseded: hub `central`") && log.contains("steps back")).then_some(()))
    })
    .await?;
    // The hub's own refresh: a generation the agent's was not.
    let a = eventually(Duration::from_secs(60), "a refresh of A through the hub", || async {
        let m = member(&admin, A)?;
        Ok((m["connectionState"] == "CONNECTED" && m["regions"][0]["generation"] != first).then_some(m))
    })
    .await?;
    assert_eq!(a["relationshipStatus"], "Enabled", "{a}");
    assert_eq!(a["reportedBy"], json!(["hub `central`"]), "who reports for A now: {a}");
    assert!(admin.process.log_text().contains("another reporter's streams ended"));
    assert!(!hub.process.log_text().contains("superseded"), "the later connection keeps its stream");

    // The hub is refused an account outside its set, by name.
    let outside = Agent::start(&admin, &moto, &creds_c, Some(HUB_TOKEN), &["us-east-1"], &[])?;
    eventually(Duration::from_secs(60), "the hub refused for C", || async {
        let log = outside.process.log_text();
        // PERMISSION_DENIED, as tonic words it, with the administrator's reason.
        let refused = log.contains("does not have permission");
        Ok((refused && log.contains(&format!("`central` may not report for account `{C}`"))).then_some(()))
    })
    .await?;
    assert!(admin.process.log_text().contains("refused: a report for an account this agent or hub may not report for"));

    // A hub of the organization's accounts may report for C; for an account outside the
    // organization it may not.
    let org_hub = Agent::start(&admin, &moto, &creds_c, Some(ORG_HUB_TOKEN), &["us-east-1"], &[])?;
    eventually(Duration::from_secs(60), "C through the organization's hub", || async {
        Ok(member(&admin, C)?["regions"][0]["lastUpdated"].is_string().then_some(()))
    })
    .await?;
    let creds_outside = creds(OUTSIDE).await?;
    let stranger = Agent::start(&admin, &moto, &creds_outside, Some(ORG_HUB_TOKEN), &["us-east-1"], &[])?;
    eventually(Duration::from_secs(60), "the organization's hub refused for an outsider", || async {
        let log = stranger.process.log_text();
        Ok(log.contains(&format!("may not report for account `{OUTSIDE}`")).then_some(()))
    })
    .await?;

    // Revoking the hub's token (SIGHUP with the hub gone) ends its streams.
    let text = std::fs::read_to_string(&config)?;
    let without = text.replace(&format!("token = \"{ORG_HUB_TOKEN}\""), "token = \"hub-token-rotated-0123456789\"");
    std::fs::write(&config, without)?;
    admin.hangup()?;
    eventually(Duration::from_secs(60), "the revoked hub's stream ended", || async {
        Ok(org_hub.process.log_text().contains("revoked").then_some(()))
    })
    .await?;
    assert!(!hub.process.log_text().contains("revoked"), "another hub's streams are not touched");
    drop((own, hub));
    Ok(())
}
