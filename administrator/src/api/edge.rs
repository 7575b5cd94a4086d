//! The network edge of both listeners: what a peer may hold before it has said anything
//! useful, and for how long.
//!
//! One accept loop per listener ([`accept`]) takes every connection the kernel queued, at
//! once: it never waits for a free slot, so a new peer is never left in the backlog behind
//! silent ones. Each connection then needs a *pending* slot, counted overall and per source
//! address, for its opening stage (the first byte, the TLS handshake, on gRPC the HTTP/2
//! preface); a peer over either cap is closed right away. The stage runs in its own task
//! under deadlines, so a peer that connects and says nothing is dropped after the first-byte
//! timeout and one that stalls mid-handshake after the handshake timeout. The HTTP listener
//! also counts whole connections ([`Slots`] again), so one address cannot hold every
//! dashboard connection either.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A peer whose TLS handshake (or, in plaintext, whose opening stage after its first byte)
/// has not finished by then is dropped: a real client needs a few round trips.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every HTTP/2 client sends first (RFC 9113, section 3.4).
pub const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Accepted connections waiting for the server to take them; the stage tasks wait when it is
/// full (they hold no pending slot by then).
const ACCEPTED_QUEUE: usize = 64;

/// The deadlines and caps of a listener's opening stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpeningLimits {
    /// A peer that sends nothing for this long after connecting is dropped.
    pub first_byte_timeout: Duration,
    /// Connections in their opening stage at once, per listener.
    pub max_pending: usize,
    /// Connections in their opening stage at once from one address, per listener.
    pub max_pending_per_ip: usize,
}

/// Why a connection was refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is taken.
    Full,
    /// The peer's address holds its share.
    PerAddress,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "all slots are taken",
            Refusal::PerAddress => "the address holds its share of the slots",
        }
    }
}

/// Counted slots, overall and per source address. Cloning shares the count.
#[derive(Debug, Clone)]
pub struct Slots {
    inner: Arc<SlotsInner>,
}

#[derive(Debug)]
struct SlotsInner {
    max: usize,
    max_per_ip: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One taken slot; dropping it gives it back.
#[derive(Debug)]
pub struct Slot {
    inner: Arc<SlotsInner>,
    ip: IpAddr,
}

impl Slots {
    pub fn new(max: usize, max_per_ip: usize) -> Self {
        Self { inner: Arc::new(SlotsInner { max, max_per_ip, held: Mutex::new(Held::default()) }) }
    }

    /// Takes a slot for `ip`, or says why not. An IPv4 address mapped into IPv6 counts as
    /// the IPv4 address.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<Slot, Refusal> {
        let ip = ip.to_canonical();
        let mut held = self.inner.held.lock();
        if held.total >= self.inner.max {
            return Err(Refusal::Full);
        }
        let mine = held.per_ip.entry(ip).or_insert(0);
        if *mine >= self.inner.max_per_ip {
            return Err(Refusal::PerAddress);
        }
        *mine += 1;
        held.total += 1;
        Ok(Slot { inner: Arc::clone(&self.inner), ip })
    }

    /// Slots taken now, overall.
    pub fn held(&self) -> usize {
        self.inner.held.lock().total
    }

    /// Slots taken now by `ip`.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        self.inner.held.lock().per_ip.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.inner.held.lock();
        held.total -= 1;
        if let Some(mine) = held.per_ip.get_mut(&self.ip) {
            *mine -= 1;
            if *mine == 0 {
                held.per_ip.remove(&self.ip);
            }
        }
    }
}

/// A connection out of its opening stage.
#[derive(Debug)]
pub struct Accepted<S> {
    pub stream: S,
    pub peer: SocketAddr,
    /// The listener's connection slot, for as long as the connection lives (HTTP).
    pub slot: Option<Slot>,
}

/// Accepts every connection on `listener` as it comes and runs `opening` (a TLS handshake,
/// a preface check) on each in its own task, after the peer's first byte and under
/// [`HANDSHAKE_TIMEOUT`]; yields those whose opening succeeded. With `connections`, each
/// connection also needs one of those slots for its whole life. `name` labels the logs.
pub fn accept<S, F, Fut>(
    listener: TcpListener,
    name: &'static str,
    limits: OpeningLimits,
    connections: Option<Slots>,
    opening: F,
) -> mpsc::Receiver<Accepted<S>>
where
    S: Send + 'static,
    F: Fn(TcpStream, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = io::Result<S>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    let pending = Slots::new(limits.max_pending, limits.max_pending_per_ip);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                // The server stopped: stop listening.
                () = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(listener = name, %error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let slot = match connections.as_ref().map(|slots| slots.try_acquire(peer.ip())).transpose() {
                Ok(slot) => slot,
                Err(refusal) => {
                    tracing::debug!(listener = name, %peer, reason = refusal.as_str(), "connection refused");
                    continue;
                }
            };
            let opening_slot = match pending.try_acquire(peer.ip()) {
                Ok(slot) => slot,
                Err(refusal) => {
                    tracing::debug!(listener = name, %peer, reason = refusal.as_str(), "connection refused: handshakes");
                    continue;
                }
            };
            // Without TCP_NODELAY, multi-segment responses wait for delayed ACKs (~40 ms).
            let _ = tcp.set_nodelay(true);
            let tx = tx.clone();
            let opening = opening.clone();
            tokio::spawn(async move {
                let first_byte = tokio::time::timeout(limits.first_byte_timeout, tcp.peek(&mut [0; 1])).await;
                match first_byte {
                    Ok(Ok(n)) if n > 0 => {}
                    Ok(Ok(_)) | Ok(Err(_)) => return,
                    Err(_) => {
                        tracing::debug!(listener = name, %peer, "dropped: nothing received");
                        return;
                    }
                }
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, opening(tcp, peer)).await {
                    Ok(Ok(stream)) => stream,
                    // `opening` logs what it refuses.
                    Ok(Err(_)) => return,
                    Err(_) => {
                        tracing::debug!(listener = name, %peer, "dropped: the handshake took too long");
                        return;
                    }
                };
                drop(opening_slot);
                let _ = tx.send(Accepted { stream, peer, slot }).await;
            });
        }
    });
    rx
}

/// Reads the HTTP/2 client preface from `stream` within `timeout`, and gives back a stream
/// that replays it (for the HTTP/2 server): a peer that never sends it, or sends something
/// else, is an error here instead of a connection held open.
pub async fn read_preface<S>(mut stream: S, timeout: Duration) -> io::Result<Prefaced<S>>
where
    S: AsyncRead + Unpin,
{
    let mut preface = [0; HTTP2_PREFACE.len()];
    match tokio::time::timeout(timeout, stream.read_exact(&mut preface)).await {
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no HTTP/2 preface in time")),
        Ok(Err(error)) => Err(error),
        Ok(Ok(_)) if &preface != HTTP2_PREFACE => {
            Err(io::Error::new(io::ErrorKind::InvalidData, "the peer did not open with the HTTP/2 preface"))
        }
        Ok(Ok(_)) => Ok(Prefaced { inner: stream, replayed: 0 }),
    }
}

/// A stream whose HTTP/2 preface was read by [`read_preface`]; reading replays it first.
#[derive(Debug)]
pub struct Prefaced<S> {
    inner: S,
    /// Bytes of the preface already replayed.
    replayed: usize,
}

impl<S> Prefaced<S> {
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefaced<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.replayed < HTTP2_PREFACE.len() {
            let rest = &HTTP2_PREFACE[self.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.replayed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefaced<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Prefaced<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// When a connection last moved a byte, shared between the connection and its watchdog.
#[derive(Debug, Clone)]
pub struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Self { start: Instant::now(), last: Arc::new(AtomicU64::new(0)) }
    }
}

impl Activity {
    fn touch(&self) {
        self.last.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long since a byte was last read or written.
    pub fn idle_for(&self) -> Duration {
        self.start.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }

    /// Resolves once no byte has moved for `timeout`.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= timeout {
                return;
            }
            tokio::time::sleep(timeout - idle).await;
        }
    }
}

/// A stream that records its [`Activity`]: bytes read or written, not attempts (a peer that
/// stops reading our response stalls writes, and that is idleness too).
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Activity) -> Self {
        activity.touch();
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    #[test]
    fn slots_are_capped_per_address_and_overall_and_given_back() {
        let slots = Slots::new(3, 2);
        let a1 = slots.try_acquire(A).unwrap();
        let _a2 = slots.try_acquire(A).unwrap();
        assert_eq!(slots.try_acquire(A).unwrap_err(), Refusal::PerAddress);
        let _b1 = slots.try_acquire(B).unwrap();
        assert_eq!(slots.try_acquire(B).unwrap_err(), Refusal::Full);
        drop(a1);
        assert_eq!(slots.held_by(A), 1);
        let _b2 = slots.try_acquire(B).unwrap();
        assert_eq!(slots.held(), 3);
    }

    #[test]
    fn an_ipv4_address_mapped_into_ipv6_shares_its_count() {
        let slots = Slots::new(10, 1);
        let _v4 = slots.try_acquire(A).unwrap();
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(127, 0, 0, 2).to_ipv6_mapped());
        assert_eq!(slots.try_acquire(mapped).unwrap_err(), Refusal::PerAddress);
    }

    fn limits(first_byte_ms: u64, max_pending: usize, per_ip: usize) -> OpeningLimits {
        OpeningLimits {
            first_byte_timeout: Duration::from_millis(first_byte_ms),
            max_pending,
            max_pending_per_ip: per_ip,
        }
    }

    /// An opening that reads one line and hands the stream on.
    async fn line(mut tcp: TcpStream, _: SocketAddr) -> io::Result<TcpStream> {
        let mut byte = [0; 1];
        loop {
            tcp.read_exact(&mut byte).await?;
            if byte[0] == b'\n' {
                return Ok(tcp);
            }
        }
    }

    async fn closed_within(stream: &mut TcpStream, ceiling: Duration) -> bool {
        let mut buf = [0; 16];
        matches!(tokio::time::timeout(ceiling, stream.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
    }

    async fn connect_from(source: IpAddr, to: SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        socket.connect(to).await.unwrap()
    }

    #[tokio::test]
    async fn a_silent_peer_is_dropped_after_the_first_byte_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _incoming = accept(listener, "test", limits(200, 16, 16), None, line);
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut silent, Duration::from_secs(30)).await, "the silent peer is closed");
    }

    #[tokio::test]
    async fn a_peer_over_its_address_cap_is_closed_at_once_and_others_still_get_in() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A first-byte timeout no test waits for: only the cap can close these.
        let mut incoming = accept(listener, "test", limits(600_000, 16, 2), None, line);
        let _held = [connect_from(A, addr).await, connect_from(A, addr).await];
        let mut over = connect_from(A, addr).await;
        assert!(closed_within(&mut over, Duration::from_secs(30)).await, "the third pending peer of A is closed");
        let mut other = connect_from(B, addr).await;
        other.write_all(b"hello\n").await.unwrap();
        let accepted = tokio::time::timeout(Duration::from_secs(30), incoming.recv()).await.unwrap().unwrap();
        assert_eq!(accepted.peer.ip(), B);
    }

    #[tokio::test]
    async fn a_full_pool_refuses_at_once_instead_of_queueing() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = accept(listener, "test", limits(600_000, 2, 2), None, line);
        let held = [TcpStream::connect(addr).await.unwrap(), TcpStream::connect(addr).await.unwrap()];
        let mut over = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut over, Duration::from_secs(30)).await, "a peer over the pool is closed");
        // Once a slot is given back (the server sees the close), the next peer is served.
        drop(held);
        let mut served = false;
        for _ in 0..60 {
            let mut next = TcpStream::connect(addr).await.unwrap();
            let _ = next.write_all(b"hello\n").await;
            if let Ok(accepted) = tokio::time::timeout(Duration::from_millis(500), incoming.recv()).await {
                served = accepted.is_some();
                break;
            }
        }
        assert!(served, "a peer is served once the pool has room");
    }

    #[tokio::test]
    async fn a_connection_slot_lives_as_long_as_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Slots::new(1, 1);
        let mut incoming = accept(listener, "test", limits(600_000, 16, 16), Some(connections.clone()), line);
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(b"hi\n").await.unwrap();
        let accepted = tokio::time::timeout(Duration::from_secs(30), incoming.recv()).await.unwrap().unwrap();
        assert!(accepted.slot.is_some());
        assert_eq!(connections.held(), 1);
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut second, Duration::from_secs(30)).await, "over the connection cap: closed");
        drop(accepted);
        assert_eq!(connections.held(), 0);
    }

    #[tokio::test]
    async fn the_preface_is_required_in_time_and_replayed() {
        let (mut client, server) = tokio::io::duplex(64);
        let reading = tokio::spawn(read_preface(server, Duration::from_secs(30)));
        client.write_all(HTTP2_PREFACE).await.unwrap();
        client.write_all(b"rest").await.unwrap();
        let mut prefaced = reading.await.unwrap().unwrap();
        let mut got = vec![0; HTTP2_PREFACE.len() + 4];
        prefaced.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..24], HTTP2_PREFACE);
        assert_eq!(&got[24..], b"rest");

        let (_silent, server) = tokio::io::duplex(64);
        let error = read_preface(server, Duration::from_millis(50)).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);

        let (mut http1, server) = tokio::io::duplex(64);
        http1.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let error = read_preface(server, Duration::from_secs(30)).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn activity_counts_bytes_moved() {
        let (client, server) = tokio::io::duplex(64);
        let activity = Activity::default();
        let mut watched = Watched::new(server, activity.clone());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = activity.idle_for();
        assert!(before >= Duration::from_millis(300));
        watched.write_all(b"x").await.unwrap();
        assert!(activity.idle_for() < before, "a write is activity");
        drop(client);
        // Resolves once idle: the ceiling only guards against a hang.
        tokio::time::timeout(Duration::from_secs(30), activity.idle(Duration::from_millis(20))).await.unwrap();
    }
}
