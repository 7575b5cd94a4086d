//! A test-only HTTP proxy in front of moto that injects faults into chosen S3 calls: 503
//! SlowDown, 500 InternalError, a connection reset, a stall before the real answer, or a 200
//! whose body cannot be parsed.
//!
//! Each request is forwarded on its own connection to moto with `Connection: close`, and the
//! answer is copied back until moto closes it, so the proxy needs no HTTP parsing beyond the
//! request head. A rule matches a substring of the request line (`GET /bucket?policy`) and
//! fires for the first `times` matching requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a rule does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// S3's throttling answer.
    SlowDown,
    /// S3's transient server error.
    InternalError,
    /// Close the connection abruptly (RST), without an answer.
    Reset,
    /// Wait this long, then forward.
    Stall(Duration),
    /// Answer 200 OK with a body no S3 response parser accepts (truncated XML).
    Corrupt,
}

#[derive(Debug)]
struct Rule {
    matches: String,
    fault: Fault,
    remaining: usize,
}

/// A running proxy; dropped with the test's runtime.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    pub endpoint: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    injected: Arc<AtomicUsize>,
    forwarded: Arc<AtomicUsize>,
    /// The request line of every request seen, in order.
    seen: Arc<Mutex<Vec<String>>>,
    /// Every request by its call (request line and Host), in order, with whether it was faulted.
    calls: Arc<Mutex<Vec<(String, bool)>>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let proxy = Self {
            endpoint: format!("http://{}", listener.local_addr()?),
            rules: Arc::default(),
            injected: Arc::default(),
            forwarded: Arc::default(),
            seen: Arc::default(),
            calls: Arc::default(),
        };
        let state = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = state.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = state.serve(client, &upstream).await;
                });
            }
        });
        Ok(proxy)
    }

    /// Injects `fault` into the next `times` requests whose request line contains `matches`.
    pub fn inject(&self, matches: &str, fault: Fault, times: usize) {
        self.rules.lock().unwrap().push(Rule { matches: matches.to_owned(), fault, remaining: times });
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::SeqCst)
    }

    /// Requests passed to moto so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }

    /// The request lines seen so far (`GET /bucket?policy HTTP/1.1`).
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Rules that still have faults to inject.
    pub fn pending(&self) -> Vec<String> {
        self.rules.lock().unwrap().iter().filter(|r| r.remaining > 0).map(|r| r.matches.clone()).collect()
    }

    /// Each faulted call (request line and Host) with the attempts that followed it until one
    /// went through: 0 for a call the client gave up on (or has not retried yet).
    pub fn retries(&self) -> Vec<(String, usize)> {
        let calls = self.calls.lock().unwrap();
        let mut out = Vec::new();
        for (i, (call, faulted)) in calls.iter().enumerate() {
            // The first fault of a run of faults of one call.
            let run_start = !calls[..i].iter().rev().find(|(c, _)| c == call).is_some_and(|(_, f)| *f);
            if *faulted && run_start {
                let later: Vec<bool> = calls[i + 1..].iter().filter(|(c, _)| c == call).map(|(_, f)| *f).collect();
                let attempts = later.iter().position(|f| !f).map_or(0, |through| through + 1);
                out.push((call.clone(), attempts));
            }
        }
        out
    }

    fn fault_for(&self, request_line: &str, host: &str) -> Option<Fault> {
        self.seen.lock().unwrap().push(request_line.to_owned());
        let call = format!("{request_line} (Host: {host})");
        let fault = {
            let mut rules = self.rules.lock().unwrap();
            rules.iter_mut().find(|r| r.remaining > 0 && request_line.contains(&r.matches)).map(|rule| {
                rule.remaining -= 1;
                self.injected.fetch_add(1, Ordering::SeqCst);
                rule.fault
            })
        };
        // A stall still answers: the call goes through.
        let failed = matches!(fault, Some(Fault::SlowDown | Fault::InternalError | Fault::Reset | Fault::Corrupt));
        self.calls.lock().unwrap().push((call, failed));
        fault
    }

    /// One request per connection: every answer closes it.
    async fn serve(&self, mut client: TcpStream, upstream: &str) -> anyhow::Result<()> {
        {
            // The request head, then its body by Content-Length (the SDK sends no chunked
            // bodies to the calls this proxy sees).
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if client.read(&mut byte).await? == 0 {
                    return Ok(());
                }
                head.push(byte[0]);
                anyhow::ensure!(head.len() < 64 * 1024, "request head too long");
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let request_line = text.lines().next().unwrap_or_default().to_owned();
            let length: usize = text
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let host = text
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("host:").map(|v| v.trim().to_owned()))
                .unwrap_or_default();
            let mut body = vec![0u8; length];
            client.read_exact(&mut body).await?;
            match self.fault_for(&request_line, &host) {
                Some(Fault::SlowDown) => {
                    return respond(&mut client, "503 Slow Down", "SlowDown", "Please reduce your request rate.").await;
                }
                Some(Fault::InternalError) => {
                    return respond(
                        &mut client,
                        "500 Internal Server Error",
                        "InternalError",
                        "We encountered an internal error.",
                    )
                    .await;
                }
                Some(Fault::Reset) => {
                    client.set_zero_linger()?;
                    return Ok(());
                }
                Some(Fault::Stall(pause)) => tokio::time::sleep(pause).await,
                Some(Fault::Corrupt) => {
                    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Garbled><Status>Enab";
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                         x-amz-request-id: ESTATEFAULT\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    client.write_all(head.as_bytes()).await?;
                    client.write_all(body.as_bytes()).await?;
                    client.shutdown().await?;
                    return Ok(());
                }
                None => {}
            }
            // Forward with `Connection: close` and copy the answer until moto closes.
            let mut forwarded = String::new();
            for line in text.split("\r\n").filter(|l| !l.is_empty()) {
                if !line.to_ascii_lowercase().starts_with("connection:") {
                    forwarded.push_str(line);
                    forwarded.push_str("\r\n");
                }
            }
            forwarded.push_str("Connection: close\r\n\r\n");
            let mut server = TcpStream::connect(upstream).await.context("connecting to moto")?;
            server.write_all(forwarded.as_bytes()).await?;
            server.write_all(&body).await?;
            let mut answer = Vec::new();
            server.read_to_end(&mut answer).await?;
            self.forwarded.fetch_add(1, Ordering::SeqCst);
            // The client's connection closes with the answer too, and the answer says so, so
            // that the client does not try to reuse it.
            let split = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(answer.len(), |i| i + 4);
            let (answer_head, answer_body) = answer.split_at(split);
            let mut rewritten = String::new();
            for line in String::from_utf8_lossy(answer_head).split("\r\n").filter(|l| !l.is_empty()) {
                if !line.to_ascii_lowercase().starts_with("connection:") {
                    rewritten.push_str(line);
                    rewritten.push_str("\r\n");
                }
            }
            rewritten.push_str("Connection: close\r\n\r\n");
            client.write_all(rewritten.as_bytes()).await?;
            client.write_all(answer_body).await?;
            client.shutdown().await?;
            Ok(())
        }
    }
}

async fn respond(client: &mut TcpStream, status: &str, code: &str, message: &str) -> anyhow::Result<()> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>\
         <RequestId>ESTATEFAULT</RequestId></Error>"
    );
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         x-amz-request-id: ESTATEFAULT\r\nConnection: close\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await?;
    client.write_all(body.as_bytes()).await?;
    client.shutdown().await?;
    Ok(())
}
