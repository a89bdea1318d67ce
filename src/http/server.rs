//! Serving connections so that hostile clients cannot starve the service (SPEC §3 Robustness):
//! a header read timeout that also ends idle keep-alive connections, a cap on open connections
//! in all and per client address, a bounded read buffer per connection, and `accept` errors
//! (EMFILE above all) survived without a busy loop.
//!
//! What hyper gives is used as it is: its HTTP/1 `header_read_timeout` starts when the
//! connection waits for a request head (right after accepting, and again after each answer on a
//! keep-alive connection), so a client that sends its headers slowly or never, and a connection
//! idle between requests, are both closed when it runs out; `max_buf_size` bounds what one
//! connection may buffer; `hyper_util`'s `GracefulShutdown` drains at SIGTERM. The caps are ours:
//! neither hyper nor tower-http counts connections.
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::App;
use crate::metrics as m;

/// What a connection may cost.
#[derive(Debug, Clone)]
pub struct ConnectionRules {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_per_ip: usize,
    /// Peers exempt from the per-address cap: a proxy's connections carry many clients.
    pub trusted_proxies: Vec<IpNet>,
}

/// hyper's smallest allowed read buffer is 8 KiB; this holds any request mailcode accepts
/// (headers, and a body of at most 16 KiB, SPEC §3 Robustness) while bounding what a client
/// that streams headers without end can make one connection hold.
const MAX_BUF: usize = 64 * 1024;

/// How long a thread stops accepting after an `accept` error that is not about one connection
/// (EMFILE, ENFILE, ENOMEM): long enough not to spin, short enough to take the next client as
/// soon as a descriptor is free again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// How long SIGTERM waits for open connections: every request is answered within 10 s (SPEC §3
/// Robustness), and idle connections close at once.
const DRAIN: Duration = Duration::from_secs(15);

/// Open connections, counted across every HTTP thread.
pub struct Admission {
    rules: ConnectionRules,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; counted until dropped.
pub struct Admitted {
    admission: Arc<Admission>,
    ip: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerIp,
}

impl Admission {
    pub fn new(rules: ConnectionRules) -> Arc<Self> {
        Arc::new(Admission {
            rules,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.rules.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Total);
        }
        let counted = !self.rules.trusted_proxies.iter().any(|n| n.contains(&peer));
        if counted {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = per_ip.entry(peer).or_insert(0);
            if *n >= self.rules.max_per_ip {
                drop(per_ip);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::PerIp);
            }
            *n += 1;
        }
        metrics::gauge!(m::HTTP_CONNECTIONS_OPEN).increment(1.0);
        Ok(Admitted {
            admission: self.clone(),
            ip: counted.then_some(peer),
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut per_ip = self
                .admission
                .per_ip
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(n) = per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
        self.admission.open.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(m::HTTP_CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// Raises the soft limit of open files to the hard limit and returns the limit now in force
/// (SPEC §3 Robustness: the common soft limit of 1024 is what a slowloris exhausts first).
pub fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The default cap on client connections under an open-files limit: room is kept for the
/// stores' connections, SMTP, the database files and the listening sockets.
pub fn default_max_connections(open_files: u64) -> usize {
    let reserve = (open_files / 4).min(1024);
    (open_files.saturating_sub(reserve) as usize).clamp(16, 65_536)
}

/// Accepts and serves connections on `listener` until `stop`, then drains them.
pub async fn serve(
    listener: TcpListener,
    app: App,
    admission: Arc<Admission>,
    mut stop: watch::Receiver<bool>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(admission.rules.header_timeout)
        .max_buf_size(MAX_BUF);
    let graceful = GracefulShutdown::new();
    let mut last_warned: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if !is_connection_error(&e) {
                    // EMFILE and the like: the connection stays in the backlog; pause instead
                    // of failing `accept` again at once, and say so at most every 10 s.
                    if last_warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(error = %e, "cannot accept connections (open-files limit reached?); retrying");
                        last_warned = Some(Instant::now());
                    }
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                }
                continue;
            }
        };
        let peer_ip = canonical(peer);
        let admitted = match admission.admit(peer_ip) {
            Ok(a) => a,
            Err(why) => {
                refuse(stream, why);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = app.for_peer(peer_ip);
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended");
            }
            drop(admitted);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}: closed");
    }
}

/// An IPv4 client on an IPv6 socket counts as its IPv4 address.
fn canonical(peer: SocketAddr) -> IpAddr {
    match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        ip => ip,
    }
}

/// Errors about one connection that went away before it was accepted.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// How long a refused connection is kept after its 503, reading and discarding what the client
/// sends: closing a socket with unread input makes the kernel send a reset, and a reset that
/// arrives before the client read the 503 throws the answer away ("connection reset by peer").
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// At most this many refused connections linger at once; past it a refusal closes at once, so a
/// flood of refused connections costs a bounded number of descriptors.
const MAX_LINGERING: usize = 256;

/// How much of a refused client's input is read and discarded before closing anyway.
const LINGER_READ: usize = 16 * 1024;

static LINGERING: AtomicUsize = AtomicUsize::new(0);

/// Answers a connection over the cap with a 503 in the envelope without waiting for it: what
/// the socket takes at once is written, the sending side is shut, and the connection lingers
/// for at most [`REFUSAL_LINGER`] so that the answer is not lost to a reset.
fn refuse(stream: TcpStream, why: Refusal) {
    let (reason, msg) = match why {
        Refusal::Total => (
            "total",
            "the server has too many open connections; retry shortly",
        ),
        Refusal::PerIp => (
            "per_ip",
            "too many open connections from your address; close some and retry",
        ),
    };
    metrics::counter!(m::HTTP_CONNECTIONS_REFUSED, "reason" => reason).increment(1);
    let body = format!(r#"{{"code":"TOO_MANY_CONNECTIONS","msg":"{msg}","data":null}}"#);
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
    if LINGERING.fetch_add(1, Ordering::AcqRel) >= MAX_LINGERING {
        LINGERING.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = linger(&mut stream).await;
        LINGERING.fetch_sub(1, Ordering::AcqRel);
    });
}

/// Sends FIN after the answer, then drains the client's input until it closes, sends too much,
/// or [`REFUSAL_LINGER`] runs out.
async fn linger(stream: &mut TcpStream) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.shutdown().await?;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut read = 0;
        while read < LINGER_READ {
            match stream.read(&mut buf).await? {
                0 => break,
                n => read += n,
            }
        }
        std::io::Result::Ok(())
    };
    tokio::time::timeout(REFUSAL_LINGER, drain)
        .await
        .unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(total: usize, per_ip: usize) -> ConnectionRules {
        ConnectionRules {
            header_timeout: Duration::from_secs(10),
            max_connections: total,
            max_per_ip: per_ip,
            trusted_proxies: vec!["10.0.0.1/32".parse().unwrap()],
        }
    }

    #[test]
    fn caps_count_per_address_and_in_all_and_free_on_drop() {
        let a = Admission::new(rules(4, 2));
        let x: IpAddr = "192.0.2.1".parse().unwrap();
        let y: IpAddr = "192.0.2.2".parse().unwrap();
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let x1 = a.admit(x).unwrap();
        let _x2 = a.admit(x).unwrap();
        assert_eq!(a.admit(x).err(), Some(Refusal::PerIp));
        // A trusted proxy is not capped per address, only in all.
        let _p1 = a.admit(proxy).unwrap();
        let _p2 = a.admit(proxy).unwrap();
        assert_eq!(a.admit(y).err(), Some(Refusal::Total));
        drop(x1);
        let _x3 = a.admit(x).unwrap();
        assert_eq!(a.open.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn the_default_cap_leaves_room_under_the_open_files_limit() {
        assert_eq!(default_max_connections(1024), 768);
        assert_eq!(default_max_connections(20_000), 18_976);
        assert_eq!(default_max_connections(1 << 20), 65_536);
        assert_eq!(default_max_connections(10), 16);
    }
}
