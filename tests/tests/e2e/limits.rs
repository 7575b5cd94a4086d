//! What one peer may ask of the administrator: an invalid message is rejected alone and the
//! stream goes on; an account may hold only so many report streams; a peer that vanishes
//! without closing its connection is DISCONNECTED within the keepalive interval plus timeout;
//! a criterion may list only so many values.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use estate_common::pb::{self, agent_service_client::AgentServiceClient, report_request::Body, report_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

fn config_with_agent(dir: &std::path::Path) -> std::path::PathBuf {
    let text = format!(
        "version = 1\n[[agents]]\nname = \"a\"\naccount_id = \"{A}\"\ntoken = \"{}\"\n\
         [[clients]]\nname = \"tests\"\nrole = \"read-only\"\ntoken = \"{CLIENT_TOKEN}\"\n",
        agent_token(A)
    );
    let path = dir.join("estate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn hello() -> pb::ReportRequest {
    pb::ReportRequest {
        seq: 0,
        body: Some(Body::Hello(pb::Hello {
            account_id: A.into(),
            regions: vec!["us-east-1".into()],
            agent_version: "limits-test".into(),
            ..Default::default()
        })),
    }
}

fn snapshot(seq: u64, name: &str, read_at_ms: i64) -> pb::ReportRequest {
    let facts = pb::BucketFacts {
        account_id: A.into(),
        region: "us-east-1".into(),
        bucket_name: name.into(),
        created_at_ms: 1,
        read_at_ms,
        ..Default::default()
    };
    pb::ReportRequest {
        seq,
        body: Some(Body::Bucket(pb::BucketSnapshot { generation: 1, facts: Some(facts), cause: None })),
    }
}

/// Opens a report stream with A's token; returns the sender of further messages and the
/// stream of answers (or the refusal).
async fn open(
    url: &str,
) -> anyhow::Result<
    Result<(tokio::sync::mpsc::Sender<pb::ReportRequest>, tonic::Streaming<pb::ReportResponse>), tonic::Status>,
> {
    let mut client = AgentServiceClient::connect(url.to_owned()).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(hello()).await?;
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request.metadata_mut().insert("authorization", format!("Bearer {}", agent_token(A)).parse()?);
    Ok(client.report(request).await.map(|r| (tx, r.into_inner())))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_message_is_rejected_alone_and_streams_are_limited() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config_with_agent(dir.path());
    let admin = Admin::start_with(&dir.path().join("data"), Some(&config), &["--max-connections-per-agent", "1"])?;
    let (tx, mut answers) = open(&admin.grpc).await?.map_err(|s| anyhow::anyhow!("{s:?}"))?;

    // Message 1 has no read time (invalid), message 2 is fine.
    tx.send(snapshot(1, "estate-l-invalid", 0)).await?;
    tx.send(snapshot(2, "estate-l-valid", 1_700_000_000_000)).await?;
    let (mut rejected, mut acked) = (None, 0);
    while acked < 2 {
        let message = tokio::time::timeout(Duration::from_secs(10), answers.message()).await??;
        match message.and_then(|m| m.body) {
            Some(report_response::Body::Reject(r)) => rejected = Some(r),
            Some(report_response::Body::Ack(a)) => acked = a.seq,
            Some(_) => {}
            None => anyhow::bail!("the stream ended"),
        }
    }
    let rejected = rejected.expect("message 1 is rejected");
    assert_eq!((rejected.seq, rejected.field.as_str()), (1, "facts.read_at_ms"), "{rejected:?}");
    let listed = admin.ctl_json(Some(CLIENT_TOKEN), &["buckets", "--all"])?;
    let names: Vec<&str> =
        listed["buckets"].as_array().unwrap().iter().map(|b| b["bucketName"].as_str().unwrap()).collect();
    assert_eq!(names, ["estate-l-valid"], "the valid message is applied, the invalid one is not");
    // The stream goes on: a third message is acknowledged.
    tx.send(snapshot(3, "estate-l-later", 1_700_000_000_000)).await?;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), answers.message()).await??;
        if let Some(report_response::Body::Ack(a)) = message.and_then(|m| m.body) {
            if a.seq >= 3 {
                break;
            }
        }
    }

    // One stream per account here: a second is refused while the first is open.
    let Err(second) = open(&admin.grpc).await? else { anyhow::bail!("a second stream was accepted") };
    assert_eq!(second.code(), tonic::Code::ResourceExhausted, "{second:?}");
    assert!(second.message().contains("--max-connections-per-agent"), "{second:?}");
    drop(tx);
    drop(answers);
    let reopened = eventually(Duration::from_secs(10), "the first stream's place to be free", || async {
        Ok(open(&admin.grpc).await?.ok())
    })
    .await?;
    drop(reopened);

    // Too many values in one criterion.
    let many: Vec<String> = (0..101).map(|i| format!("{i:012}")).collect();
    let criteria = json!({"accountId": {"eq": many}}).to_string();
    let err = admin.ctl(Some(CLIENT_TOKEN), &["buckets", "--criteria-json", &criteria]).unwrap_err();
    assert!(format!("{err:#}").contains("at most 100 per operator"), "{err:#}");
    Ok(())
}

/// A relay between an agent and the administrator that can go silent: both sockets stay
/// open, nothing passes (a peer behind a dead NAT or a frozen VM).
async fn silent_relay(upstream: String, frozen: Arc<AtomicBool>) -> anyhow::Result<String> {
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        frozen: Arc<AtomicBool>,
    ) {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if frozen.load(Ordering::SeqCst) {
                // Silent: hold both sockets open, pass nothing more.
                std::future::pending::<()>().await;
            }
            if to.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else { continue };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pump(client_read, server_write, Arc::clone(&frozen)));
            tokio::spawn(pump(server_read, client_write, Arc::clone(&frozen)));
        }
    });
    Ok(address)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vanished_agent_is_disconnected_by_keepalive() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config_with_agent(dir.path());
    let admin = Admin::start_with(
        &dir.path().join("data"),
        Some(&config),
        &["--keepalive-interval", "1", "--keepalive-timeout", "2"],
    )?;
    let frozen = Arc::new(AtomicBool::new(false));
    let upstream = admin.grpc.trim_start_matches("http://").to_owned();
    let relay = silent_relay(upstream, Arc::clone(&frozen)).await?;
    let (_tx, _answers) = open(&relay).await?.map_err(|s| anyhow::anyhow!("{s:?}"))?;
    let state = || -> anyhow::Result<String> {
        let members = admin.ctl_json(Some(CLIENT_TOKEN), &["members"])?;
        Ok(members["members"][0]["connectionState"].as_str().unwrap_or_default().to_owned())
    };
    eventually(Duration::from_secs(10), "the agent to be CONNECTED", || async {
        Ok((state()? == "CONNECTED").then_some(()))
    })
    .await?;
    // The agent's host goes silent without closing anything.
    frozen.store(true, Ordering::SeqCst);
    let vanished = std::time::Instant::now();
    // Without keepalives the connection would look alive for hours (TCP's own keepalive starts
    // after two): the ceiling is generous, and the time is printed, not asserted.
    eventually(Duration::from_secs(120), "the silent agent to be DISCONNECTED", || async {
        Ok((state()? == "DISCONNECTED").then_some(()))
    })
    .await?;
    let took = vanished.elapsed();
    println!("a silent peer was DISCONNECTED after {took:?} (keepalive 1 s + 2 s)");
    Ok(())
}
