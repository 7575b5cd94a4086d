//! Transport security over the real binaries: agents, estatectl, the dashboard and `/metrics`
//! over TLS and mutual TLS, with a throwaway CA. Wrong trust anchors, missing, expired and
//! foreign client certificates, and a certificate naming another account than the token are
//! each refused (and the store stays unchanged); a certificate rotated by SIGHUP does not
//! drop a connected agent; plaintext is refused where it would leak tokens.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use estate_tests::pki::{ClientSpec, Issued, Pki};

use super::*;

const OPERATOR_TOKEN: &str = "operator-token-0123456789";

/// The config of `main.rs` (agents of A, B and C, a read-only client) with one operator
/// client more; certificates must name the caller.
fn write_tls_config(dir: &Path) -> std::path::PathBuf {
    let path = write_config(dir);
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "version = 1\n",
        "version = 1\nrequire_certificate_identity = true\n",
        1,
    ) + &format!("[[clients]]\nname = \"ops\"\nrole = \"operator\"\ntoken = \"{OPERATOR_TOKEN}\"\n");
    std::fs::write(&path, text).unwrap();
    path
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// `--ca`, `--cert`, `--key` for estatectl or an agent.
fn client_args<'a>(ca: &'a Path, issued: Option<&'a Issued>) -> Vec<&'a str> {
    let mut args = vec!["--ca", path(ca)];
    if let Some(issued) = issued {
        args.extend(["--cert", path(&issued.cert), "--key", path(&issued.key)]);
    }
    args
}

/// Runs curl; returns the HTTP status (0 when no response) and the body, plus stderr.
fn curl(args: &[&str]) -> anyhow::Result<(u16, String, String)> {
    let out = Command::new("curl")
        .args(["-sS", "-v", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .context("running curl (Debian package `curl`)")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Ok((code.trim().parse().unwrap_or(0), body.to_owned(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_admits_only_certificates_that_match_their_tokens() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let dir = tempfile::tempdir()?;
    let pki = Pki::new(dir.path(), "org")?;
    let rogue = Pki::new(dir.path(), "rogue")?;
    let server = pki.server("admin", "estate-admin-original")?;
    let config = write_tls_config(dir.path());
    let admin = Admin::start_with(
        &dir.path().join("data"),
        Some(&config),
        &["--tls-cert", path(&server.cert), "--tls-key", path(&server.key), "--client-ca", path(&pki.ca_path)],
    )?;
    assert!(admin.grpc.starts_with("https://") && admin.http.starts_with("https://"), "{}", admin.grpc);

    let creds_a = moto.credentials(A).await?;
    let creds_b = moto.credentials(B).await?;
    for (creds, account, name) in [(&creds_a, A, "estate-t-a1"), (&creds_b, B, "estate-t-b1")] {
        seed_bucket(&moto, creds, &Spec { account, region: "us-east-1", name: name.into(), ..Default::default() })
            .await?;
    }
    let ca = pki.ca_path.clone();
    let agent_a = pki.client(
        "agent-a",
        "agent A",
        ClientSpec { identity: Some("estate:agent:111111111111"), ..Default::default() },
    )?;
    let agent_a_expired = pki.client(
        "agent-a-expired",
        "agent A expired",
        ClientSpec { identity: Some("estate:agent:111111111111"), expired: true },
    )?;
    let agent_a_foreign = rogue.client(
        "agent-a",
        "agent A forged",
        ClientSpec { identity: Some("estate:agent:111111111111"), ..Default::default() },
    )?;
    let operator =
        pki.client("ops", "ops", ClientSpec { identity: Some("estate:client:operator"), ..Default::default() })?;
    let read_only =
        pki.client("viewer", "viewer", ClientSpec { identity: Some("estate:client:read-only"), ..Default::default() })?;
    let anonymous = pki.client("anonymous", "no identity", ClientSpec::default())?;
    let regions = ["us-east-1"];

    // Each of these agents must be refused.
    let token_a = agent_token(A);
    let token_b = agent_token(B);
    let refused = [
        (
            "wrong CA",
            Agent::start(
                &admin,
                &moto,
                &creds_a,
                Some(&token_a),
                &regions,
                &client_args(&rogue.ca_path, Some(&agent_a)),
            )?,
        ),
        (
            "no client certificate",
            Agent::start(&admin, &moto, &creds_a, Some(&token_a), &regions, &client_args(&ca, None))?,
        ),
        (
            "certificate of A, token of B",
            Agent::start(&admin, &moto, &creds_b, Some(&token_b), &regions, &client_args(&ca, Some(&agent_a)))?,
        ),
        (
            "expired certificate",
            Agent::start(&admin, &moto, &creds_a, Some(&token_a), &regions, &client_args(&ca, Some(&agent_a_expired)))?,
        ),
        (
            "certificate of another CA",
            Agent::start(&admin, &moto, &creds_a, Some(&token_a), &regions, &client_args(&ca, Some(&agent_a_foreign)))?,
        ),
        (
            "certificate without identity",
            Agent::start(&admin, &moto, &creds_a, Some(&token_a), &regions, &client_args(&ca, Some(&anonymous)))?,
        ),
    ];
    let expectations = [
        // (case, in the agent's log, in the administrator's log)
        ("wrong CA", "UnknownIssuer", None),
        ("no client certificate", "stream to the administrator failed", Some("peer sent no certificates")),
        (
            "certificate of A, token of B",
            "the client certificate names the agent of account `111111111111` but the token is `agent-222222222222`'s",
            Some("CN=agent A"),
        ),
        ("expired certificate", "stream to the administrator failed", Some("CN=agent A expired")),
        ("certificate of another CA", "stream to the administrator failed", Some("CN=agent A forged")),
        ("certificate without identity", "requires a client certificate naming the caller", Some("CN=no identity")),
    ];
    for ((case, agent), (_, in_agent_log, in_admin_log)) in refused.iter().zip(expectations) {
        eventually(Duration::from_secs(30), case, || async {
            let admin_log = admin.process.log_text();
            let seen = agent.process.log_text().contains(in_agent_log)
                && in_admin_log.is_none_or(|text| admin_log.contains(text));
            Ok(seen.then_some(()))
        })
        .await
        .map_err(|e| e.context(format!("{case}: agent log:\n{}", agent.process.log_text())))?;
    }
    let admin_log = admin.process.log_text();
    assert!(admin_log.to_lowercase().contains("expired"), "the expiry is named: {admin_log}");

    // estatectl: operator certificate and token; the store has not changed.
    let ctl = |issued: Option<&Issued>, args: &[&str]| {
        admin.ctl_json(Some(OPERATOR_TOKEN), &[client_args(&ca, issued).as_slice(), args].concat())
    };
    let stats = ctl(Some(&operator), &["stats"])?;
    assert_eq!(stats["bucketCount"], 0, "no refused agent changed the store: {stats}");
    let members = ctl(Some(&operator), &["members"])?;
    assert!(members["members"].as_array().unwrap().iter().all(|m| m["lastContact"].is_null()), "{members}");
    let no_cert = ctl(None, &["stats"]).unwrap_err();
    assert!(format!("{no_cert:#}").contains("may require a client certificate"), "{no_cert:#}");
    let wrong_role = ctl(Some(&read_only), &["stats"]).unwrap_err();
    assert!(format!("{wrong_role:#}").contains("PermissionDenied"), "{wrong_role:#}");
    // Plaintext to the TLS listener fails too (estatectl run directly: `Admin::ctl` already
    // gives the https endpoint).
    let plain = Command::new(estate_tests::binary("estatectl"))
        .args(["--endpoint", &admin.grpc.replace("https", "http"), "--token", OPERATOR_TOKEN, "stats"])
        .output()?;
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success() && stderr.contains("transport error"), "plaintext to a TLS server: {stderr}");

    // The right certificate and token: the agent streams.
    drop(refused);
    let agent = Agent::start(
        &admin,
        &moto,
        &creds_a,
        Some(&token_a),
        &regions,
        &[client_args(&ca, Some(&agent_a)).as_slice(), &["--refresh-interval", "2s"]].concat(),
    )?;
    eventually(Duration::from_secs(60), "A's bucket over mutual TLS", || async {
        Ok((ctl(Some(&operator), &["stats"])?["bucketCount"] == 1).then_some(()))
    })
    .await
    .map_err(|e| e.context(agent.process.log_text()))?;

    // Dashboard and /metrics over HTTPS.
    let url = |p: &str| format!("{}{p}", admin.http);
    let (code, body, _) = curl(&["--cacert", path(&ca), &url("/")])?;
    assert_eq!(code, 200);
    assert!(body.contains("<html") || body.contains("<!doctype") || body.contains("<!DOCTYPE"), "{body}");
    let (code, _, _) = curl(&["--cacert", path(&ca), &url("/metrics")])?;
    assert_eq!(code, 401, "/metrics needs a token (and here a certificate) unless --metrics-open");
    let bearer = format!("Authorization: Bearer {OPERATOR_TOKEN}");
    let (code, body, _) = curl(&[
        "--cacert",
        path(&ca),
        "--cert",
        path(&operator.cert),
        "--key",
        path(&operator.key),
        "-H",
        &bearer,
        &url("/metrics"),
    ])?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("estate_buckets 1"), "{body}");
    let (code, _, _) = curl(&["--cacert", path(&ca), "-H", &bearer, &url("/api/statistics")])?;
    assert_eq!(code, 401, "a token without a certificate is not enough here");
    let (code, _, stderr) = curl(&["--cacert", path(&rogue.ca_path), &url("/healthz")])?;
    assert_eq!(code, 0, "curl must not trust another CA: {stderr}");

    // Rotation: new certificate files, SIGHUP; new connections see the new certificate and
    // the connected agent keeps streaming on its established connection.
    let (_, _, before) = curl(&["--cacert", path(&ca), &url("/healthz")])?;
    assert!(before.contains("estate-admin-original"), "{before}");
    let rotated = pki.server("admin-rotated", "estate-admin-rotated")?;
    std::fs::copy(&rotated.cert, &server.cert)?;
    std::fs::copy(&rotated.key, &server.key)?;
    admin.hangup()?;
    eventually(Duration::from_secs(20), "the rotated certificate", || async {
        let (_, _, verbose) = curl(&["--cacert", path(&ca), &url("/healthz")])?;
        Ok(verbose.contains("estate-admin-rotated").then_some(()))
    })
    .await?;
    seed_bucket(&moto, &creds_a, &Spec::plain(A, "estate-t-a2".into())).await?;
    eventually(Duration::from_secs(60), "a bucket created after the rotation", || async {
        Ok((ctl(Some(&operator), &["stats"])?["bucketCount"] == 2).then_some(()))
    })
    .await?;
    let connections = agent.process.log_text().matches("connected to the administrator").count();
    assert_eq!(connections, 1, "the rotation dropped the agent's stream: {}", agent.process.log_text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_is_refused_where_it_would_leak_and_https_never_downgrades() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path());

    // A non-loopback address without TLS: refused, unless asked for, and then with a warning.
    let serve = |extra: &[&str]| {
        let mut command = Command::new(estate_tests::binary("estate-admin"));
        command
            .args(["serve", "--listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0", "--config", path(&config)])
            .arg("--data-dir")
            .arg(dir.path().join("exposed"))
            .args(extra);
        command
    };
    let refused = serve(&[]).output()?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("refusing to serve plaintext on 0.0.0.0:0"), "{stderr}");
    let mut allowed = serve(&["--allow-plaintext"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(allowed.stdout.take().unwrap()), &mut ready)?;
    allowed.kill()?;
    let out = allowed.wait_with_output()?;
    assert!(ready.starts_with("ESTATE_ADMIN_READY"), "{ready}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("PLAINTEXT"), "the plaintext warning");

    // Loopback plaintext with an open /metrics.
    let admin = Admin::start_with(&dir.path().join("data"), Some(&config), &["--metrics-open"])?;
    let (code, body, _) = curl(&[&format!("{}/metrics", admin.http)])?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("estate_buckets 0"), "{body}");
    let (code, _, _) = curl(&[&format!("{}/api/statistics", admin.http)])?;
    assert_eq!(code, 401, "only /metrics is open");

    // https:// against plaintext fails, clearly; TLS files with http:// are an error.
    let https = admin.grpc.replace("http://", "https://");
    let out = Command::new(estate_tests::binary("estatectl"))
        .args(["--endpoint", &https, "--token", CLIENT_TOKEN, "stats"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("over TLS (is it serving plaintext"), "{stderr}");
    let pki = Pki::new(dir.path(), "org")?;
    let error = admin.ctl(Some(CLIENT_TOKEN), &["--ca", path(&pki.ca_path), "stats"]).unwrap_err();
    assert!(format!("{error:#}").contains("need an `https://` URL"), "{error:#}");
    // And the agent stops at start rather than sending its token in clear.
    let agent = Command::new(estate_tests::binary("estate-agent"))
        .args(["run", "--admin", &admin.grpc, "--regions", "us-east-1", "--ca", path(&pki.ca_path)])
        .args(["--endpoint-url", "http://127.0.0.1:9"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .output()?;
    let stderr = String::from_utf8_lossy(&agent.stderr);
    assert!(!agent.status.success() && stderr.contains("need an `https://` URL"), "{stderr}");
    Ok(())
}
