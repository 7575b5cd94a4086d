//! Slow and silent peers against the real administrator over TLS (issue 22): from another
//! loopback address (127.0.0.2, so that the per-address caps fall on the attacker and not on
//! the real client on 127.0.0.1), 600 TLS connections that sent half an HTTP request, and
//! 600 TCP connections to the gRPC port that send nothing. While they hang on, estatectl
//! (gRPC over TLS) and curl (HTTPS) are answered; then the server closes every one of them.
//!
//! The guarantee is an order, not a latency: the real client is answered while the silent
//! peers still hold their opening slots. The administrator runs with a first-byte timeout
//! of 30 s, so a client queued behind the silent peers (as behind the blocking accept loop
//! before `edge.rs`, which made this test's estatectl wait 8.7 s for their handshake
//! deadline) is answered only after the timeout has closed them, and the test sees that
//! they were closed first. No duration is compared.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use estate_tests::pki::Pki;

use super::*;

/// Connections of each kind.
const ATTACKERS: usize = 600;
/// Where they come from.
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// TLS handshakes the attacker runs at once: under the per-address cap on pending
/// handshakes, so that every half-sent request gets in and only the header timeout can
/// close it.
const ATTACKER_HANDSHAKES: usize = 16;
/// How often one of them tries again when refused.
const ATTACKER_RETRIES: usize = 40;
/// The administrator's first-byte timeout in this test: the silent peers that hold opening
/// slots keep them this long, far longer than a client call takes (10-50 ms here).
const FIRST_BYTE_TIMEOUT_MS: &str = "30000";
/// Opening slots per address (the default, set here so that the test knows it): the silent
/// peers beyond it are closed at once.
const PENDING_PER_ADDRESS: usize = 64;
/// How long after the attack is in place every attacking connection must be closed: the
/// guarantees are the 10-second header timeout and the 30-second first-byte timeout above; a
/// generous ceiling on a condition, under the 60-second idle timeout, which would otherwise
/// pass for them.
const CLOSE_CEILING: Duration = Duration::from_secs(55);

/// Raises this process's soft open-file limit (the administrator it starts inherits it) to
/// hold `needed` descriptors.
fn raise_open_files(needed: u64) -> anyhow::Result<()> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    let maximum = limit.maximum.unwrap_or(u64::MAX);
    if current >= needed {
        return Ok(());
    }
    anyhow::ensure!(
        maximum >= needed,
        "this test needs {needed} open files and the hard limit is {maximum}: raise it (ulimit -Hn)"
    );
    limit.current = Some(needed);
    setrlimit(Resource::Nofile, limit).context("raising the open-file limit")?;
    Ok(())
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a URL ending with its port")
}

async fn connect_from_attacker(port: u16) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(ATTACKER), 0))?;
    socket.connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)).await
}

/// Reads until the server closes the connection, then counts it.
async fn hold(mut stream: impl AsyncRead + Unpin, closed: Arc<AtomicUsize>) {
    let mut buf = [0; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            // A 408 or an alert before the close.
            Ok(_) => continue,
        }
    }
    closed.fetch_add(1, Ordering::SeqCst);
}

fn tls_connector(ca: &std::path::Path, alpn: &[u8]) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_file(ca).context("reading the test CA")?)?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Waits until `closed` reaches `count`, or `deadline`.
async fn closed_reach(closed: &AtomicUsize, count: usize, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        if closed.load(Ordering::SeqCst) >= count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    closed.load(Ordering::SeqCst) >= count
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_client_is_answered_while_silent_and_slow_peers_hang_on() -> anyhow::Result<()> {
    // Both ends of every attacking connection live in this process or its administrator.
    raise_open_files(4 * ATTACKERS as u64 + 1024)?;
    let dir = tempfile::tempdir()?;
    let pki = Pki::new(dir.path(), "org")?;
    let server = pki.server("admin", "estate-admin")?;
    let config = write_config(dir.path());
    let ca = pki.ca_path.to_str().expect("a UTF-8 temporary path").to_owned();
    let admin = Admin::start_with_env(
        &dir.path().join("data"),
        Some(&config),
        &["--tls-cert", server.cert.to_str().unwrap(), "--tls-key", server.key.to_str().unwrap()],
        // Every half-sent request gets a connection, so that the header timeout, not the
        // per-address cap, is what must close them. The silent peers keep their slots for the
        // first-byte timeout. The other limits are the defaults.
        &[
            ("ESTATE_MAX_HTTP_CONNECTIONS_PER_IP", "1000"),
            ("ESTATE_FIRST_BYTE_TIMEOUT_MS", FIRST_BYTE_TIMEOUT_MS),
            ("ESTATE_MAX_PENDING_HANDSHAKES_PER_IP", &PENDING_PER_ADDRESS.to_string()),
        ],
    )?;
    let (grpc_port, http_port) = (port_of(&admin.grpc), port_of(&admin.http));
    let stats = || admin.ctl_json(Some(CLIENT_TOKEN), &["--ca", &ca, "stats"]);
    let api = || -> anyhow::Result<(u16, String)> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}", "--cacert", &ca])
            .args(["-H", &format!("Authorization: Bearer {CLIENT_TOKEN}")])
            .arg(format!("{}/api/statistics", admin.http))
            .output()
            .context("running curl (Debian package `curl`)")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        Ok((code.trim().parse().unwrap_or(0), body.to_owned()))
    };
    // Answered before the attack (and estatectl is in the page cache).
    stats()?;

    // 600 TLS connections, each with half a request.
    let connector = tls_connector(&pki.ca_path, b"http/1.1")?;
    let half_closed = Arc::new(AtomicUsize::new(0));
    let handshakes = Arc::new(tokio::sync::Semaphore::new(ATTACKER_HANDSHAKES));
    let (opened_tx, mut opened) = tokio::sync::mpsc::channel::<Result<(), String>>(ATTACKERS);
    let attack_started = Instant::now();
    for _ in 0..ATTACKERS {
        let permit = Arc::clone(&handshakes).acquire_owned().await?;
        let connector = connector.clone();
        let closed = Arc::clone(&half_closed);
        let opened_tx = opened_tx.clone();
        tokio::spawn(async move {
            let attempt = || async {
                let tcp = connect_from_attacker(http_port).await?;
                let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("an IP address");
                let mut tls = connector.connect(name, tcp).await?;
                tls.write_all(b"GET /api/statistics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bea").await?;
                tls.flush().await?;
                Ok::<_, io::Error>(tls)
            };
            // The server counts a handshake as pending until it has read the client's last
            // message, a moment after the client counts it done; on a busy machine this
            // attacker can run ahead of the per-address cap and be refused. It tries again,
            // as an attacker would.
            let mut stream = attempt().await;
            for _ in 0..ATTACKER_RETRIES {
                if stream.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                stream = attempt().await;
            }
            drop(permit);
            match stream {
                Ok(stream) => {
                    let _ = opened_tx.send(Ok(())).await;
                    hold(stream, closed).await;
                }
                Err(error) => {
                    let _ = opened_tx.send(Err(error.to_string())).await;
                }
            }
        });
    }
    let mut failures = Vec::new();
    for _ in 0..ATTACKERS {
        if let Some(Err(error)) = opened.recv().await {
            failures.push(error);
        }
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{} half-sent requests could not be made: {:?}",
        failures.len(),
        &failures[..1]
    );
    let half_sent_after = attack_started.elapsed();

    // 600 TCP connections to the gRPC port that say nothing.
    let silent_closed = Arc::new(AtomicUsize::new(0));
    for _ in 0..ATTACKERS {
        let tcp = connect_from_attacker(grpc_port).await.context("a silent connection")?;
        tokio::spawn(hold(tcp, Arc::clone(&silent_closed)));
    }
    let attack_in_place = Instant::now();
    // The per-address cap closes the silent peers beyond it at once; the others hold their
    // slots until the first-byte timeout.
    anyhow::ensure!(
        closed_reach(&silent_closed, ATTACKERS - PENDING_PER_ADDRESS, attack_in_place + CLOSE_CEILING).await,
        "the per-address cap closed only {} of the {ATTACKERS} silent connections",
        silent_closed.load(Ordering::SeqCst)
    );
    let silent_closed_before = silent_closed.load(Ordering::SeqCst);

    // The real client, from 127.0.0.1.
    let started = Instant::now();
    let grpc_answer = tokio::task::block_in_place(stats);
    let grpc_latency = started.elapsed();
    let half_open_then = ATTACKERS - half_closed.load(Ordering::SeqCst);
    let started = Instant::now();
    let https_answer = tokio::task::block_in_place(api);
    let https_latency = started.elapsed();
    let silent_closed_after = silent_closed.load(Ordering::SeqCst);
    println!(
        "the attack took {half_sent_after:?} to set up; estatectl stats answered in {grpc_latency:?}, \
         GET /api/statistics in {https_latency:?}; {half_open_then} of {ATTACKERS} half-sent requests were still \
         open then, and {} of {ATTACKERS} silent gRPC connections (the per-address cap closes the excess at once)",
        ATTACKERS - silent_closed.load(Ordering::SeqCst)
    );
    let grpc_answer = grpc_answer.context("estatectl during the attack")?;
    assert_eq!(grpc_answer["bucketCount"], 0, "{grpc_answer}");
    let (code, body) = https_answer?;
    assert_eq!(code, 200, "GET /api/statistics during the attack: {body}");
    assert!(body.contains("bucketCount"), "{body}");
    assert_eq!(
        silent_closed_after,
        silent_closed_before,
        "{} silent peers lost their slots (to the first-byte timeout) before both clients were answered: the \
         clients waited behind them",
        silent_closed_after - silent_closed_before
    );

    // One more gRPC peer, from a third address, that completes its TLS handshake and then
    // says nothing (made after the client's measurement, which it must not delay): the preface deadline closes it (tonic would wait for it forever).
    let mut after_handshake = {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), 0))?;
        let tcp = socket.connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), grpc_port)).await?;
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("an IP address");
        tls_connector(&pki.ca_path, b"h2")?.connect(name, tcp).await.context("a TLS handshake on the gRPC port")?
    };

    // Then the server closes every attacking connection.
    let deadline = attack_in_place + CLOSE_CEILING;
    let half = closed_reach(&half_closed, ATTACKERS, deadline).await;
    let silent = closed_reach(&silent_closed, ATTACKERS, deadline).await;
    println!(
        "all half-sent requests closed: {half}, all silent connections closed: {silent}, {:?} after the attack \
         was in place",
        attack_in_place.elapsed()
    );
    assert!(
        half,
        "{} of {ATTACKERS} half-sent requests still open {CLOSE_CEILING:?} later",
        ATTACKERS - half_closed.load(Ordering::SeqCst)
    );
    assert!(
        silent,
        "{} of {ATTACKERS} silent connections still open {CLOSE_CEILING:?} later",
        ATTACKERS - silent_closed.load(Ordering::SeqCst)
    );
    let mut buf = [0; 64];
    let preface_dropped = loop {
        match tokio::time::timeout_at(deadline.into(), after_handshake.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(_)) => continue,
            Err(_) => break false,
        }
    };
    assert!(preface_dropped, "a gRPC peer silent after its TLS handshake is still open {CLOSE_CEILING:?} later");
    // And the administrator still serves.
    assert_eq!(stats()?["bucketCount"], 0);
    Ok(())
}

/// Reads until the peer closes, within `ceiling`.
async fn closed_within(stream: &mut TcpStream, ceiling: Duration) -> bool {
    let mut buf = [0; 256];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(ceiling, read).await.unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_grpc_drops_peers_without_a_preface_and_the_insecure_dashboard_checks_its_host() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    // `--insecure-dev`: plaintext, no tokens.
    let admin = Admin::start_with(&dir.path().join("data"), None, &["--preface-timeout", "1"])?;
    let grpc = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port_of(&admin.grpc));
    let ceiling = Duration::from_secs(30);

    // Plaintext gRPC goes through the same opening stage as TLS.
    let mut silent = TcpStream::connect(grpc).await?;
    let mut one_byte = TcpStream::connect(grpc).await?;
    one_byte.write_all(b"P").await?;
    assert!(closed_within(&mut silent, ceiling).await, "a silent plaintext gRPC peer is dropped");
    assert!(
        closed_within(&mut one_byte, ceiling).await,
        "a plaintext peer that never completes the preface is dropped"
    );
    assert_eq!(admin.ctl_json(None, &["stats"])?["bucketCount"], 0, "a real client still gets in");

    // The dashboard without authentication answers only requests to a loopback host.
    let curl = |host: Option<&str>| -> anyhow::Result<String> {
        let mut command = Command::new("curl");
        command.args(["-sS", "--max-time", "30", "-D", "-", "-o", "/dev/null"]);
        if let Some(host) = host {
            command.args(["-H", &format!("Host: {host}")]);
        }
        let out = command.arg(format!("{}/api/statistics", admin.http)).output().context("running curl")?;
        Ok(String::from_utf8_lossy(&out.stdout).to_ascii_lowercase())
    };
    let direct = curl(None)?;
    assert!(direct.starts_with("http/1.1 200"), "{direct}");
    for header in [
        "content-security-policy: default-src 'none'",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
        "cache-control: no-store",
    ] {
        assert!(direct.contains(header), "{header} in {direct}");
    }
    assert!(curl(Some("localhost"))?.starts_with("http/1.1 200"));
    let rebound = curl(Some("attacker.example"))?;
    assert!(rebound.starts_with("http/1.1 421"), "a request naming another host: {rebound}");
    Ok(())
}
