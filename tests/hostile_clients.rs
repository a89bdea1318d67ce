//! Clients that send slowly or never cannot take the service from everyone else (SPEC §3
//! Robustness): a slowloris from one loopback address (127.0.0.3) while another (127.0.0.2)
//! keeps getting answers, the half-sent connections closed after the header timeout, idle
//! keep-alive connections closed, the soft open-files limit raised to the hard one at start.
//!
//! The real binary is started under `ulimit -S -n 1024`, the common soft limit that 1,100
//! half-open connections used to exhaust. Every loop here is bounded and stops by itself.
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ATTACKER: [u8; 4] = [127, 0, 0, 3];
const VISITOR: [u8; 4] = [127, 0, 0, 2];
/// The slowloris: more connections than the soft limit the process was started with.
const HALF_SENT: usize = 1_100;
/// A short header timeout keeps the test short; the default (10 s) is the same code path.
const HEADER_TIMEOUT: u64 = 4;

struct Server {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// mailcode under `ulimit -S -n 1024`, embedded stores, on a free loopback port.
    fn start(flags: &[&str]) -> Server {
        Self::start_under("ulimit -S -n 1024", flags)
    }

    /// mailcode under the given `ulimit` command.
    fn start_under(ulimit: &str, flags: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = dir.path().join("mailcode.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!(r#"{ulimit} && exec "$@""#))
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_mailcode"))
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(flags)
            .current_dir(dir.path())
            .env_remove("MAILCODE_CONFIG")
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("start mailcode");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "mailcode did not start");
            std::thread::sleep(Duration::from_millis(30));
        }
        // The probe that found it listening is a connection too: let the server see it close
        // before a test counts the connections it holds.
        std::thread::sleep(Duration::from_millis(200));
        Server {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// User and system CPU time the process used so far (/proc/PID/stat, in clock ticks).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("/proc/PID/stat");
        // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
        let after = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
    }

    /// (soft, hard) open-files limits of the running process, from /proc.
    fn open_files_limits(&self) -> (String, String) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id()))
            .expect("/proc/PID/limits");
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("a 'Max open files' line");
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields[3].to_owned(), fields[4].to_owned())
    }
}

/// This test process holds every attacking connection: it needs more than 1,100 descriptors,
/// and so does the server once it raised its own soft limit.
fn raise_own_limit() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    assert!(
        hard >= 4 * HALF_SENT as u64,
        "the hard open-files limit is {hard}; these tests need at least {} (raise it with `ulimit -H -n` as root or in /etc/security/limits.conf)",
        4 * HALF_SENT
    );
    rlimit::increase_nofile_limit(u64::MAX).expect("raise the soft open-files limit");
}

async fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::from(from), 0))?;
    socket.connect(to).await
}

/// A whole `GET /healthz` from `from`, answered within `within`: (status line, body).
async fn healthz_from(from: [u8; 4], to: SocketAddr, within: Duration) -> (String, String) {
    let exchange = async {
        let mut s = connect_from(from, to).await?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: mailcode\r\nconnection: close\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(within, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer to GET /healthz from {from:?} within {within:?}"))
        .unwrap_or_else(|e| panic!("GET /healthz from {from:?} failed: {e}"));
    let status = answer.lines().next().unwrap_or("").to_owned();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Opens `n` connections from the attacker, each sending half a request head and then nothing.
/// Connections the server refused at once (503 TOO_MANY_CONNECTIONS, then closed) are counted
/// separately from those it holds.
async fn slowloris(to: SocketAddr, n: usize) -> (Vec<TcpStream>, usize) {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = connect_from(ATTACKER, to).await.expect("connect");
        // Half a head: no blank line ever comes. A refused connection may already be closed.
        let _ = s
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: mailcode\r\nx-slow: ")
            .await;
        held.push(s);
    }
    // Sort refused from held, all at once (the header timeout runs meanwhile): a refused one
    // has its 503 waiting, or is closed, right away.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sorted = futures::future::join_all(held.into_iter().map(|mut s| async move {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Err(_) => Ok(s),
            Ok(Ok(n)) => Err(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Ok(Err(e)) => Err(e.to_string()),
        }
    }))
    .await;
    let mut still = Vec::new();
    let mut refused = 0;
    for s in sorted {
        match s {
            Ok(s) => still.push(s),
            Err(answer) => {
                assert!(
                    answer.is_empty()
                        || answer.contains("503") && answer.contains("TOO_MANY_CONNECTIONS")
                        || answer.contains("reset"),
                    "a half-sent request got {answer:?}"
                );
                refused += 1;
            }
        }
    }
    (still, refused)
}

/// Every held connection is closed by the server within `within`.
async fn all_closed(held: Vec<TcpStream>, within: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    let mut open = 0;
    for mut s in held {
        let mut buf = [0u8; 512];
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Err(_) => {
                    open += 1;
                    break;
                }
                Ok(Ok(0)) | Ok(Err(_)) => break,
                // hyper may answer the timed-out head (408) before it closes.
                Ok(Ok(_)) => continue,
            }
        }
    }
    open
}

/// The visitor gets prompt answers throughout, several times.
async fn visitor_is_served(addr: SocketAddr) {
    for _ in 0..5 {
        let (status, body) = healthz_from(VISITOR, addr, Duration::from_secs(2)).await;
        assert!(status.contains("200"), "visitor got {status:?} {body:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_from_one_address_does_not_starve_another_and_is_cut_off() {
    raise_own_limit();
    let header_timeout = HEADER_TIMEOUT.to_string();
    let server = Server::start(&["--header-timeout", &header_timeout]);

    // The process raised its soft limit to the hard one, and says so.
    let (soft, hard) = server.open_files_limits();
    assert_eq!(
        soft,
        hard,
        "soft open-files limit not raised:\n{}",
        server.log()
    );
    assert!(
        server.log().contains("connection limits") && server.log().contains(&hard),
        "the raised limit is not logged:\n{}",
        server.log()
    );

    let started = Instant::now();
    let (held, refused) = slowloris(server.addr, HALF_SENT).await;
    // The default cap per address (256) holds; the rest were refused at once, not queued.
    assert!(
        held.len() <= 256,
        "{} half-sent connections held from one address",
        held.len()
    );
    assert_eq!(held.len() + refused, HALF_SENT);
    visitor_is_served(server.addr).await;

    let open = all_closed(held, Duration::from_secs(HEADER_TIMEOUT + 3)).await;
    assert_eq!(
        open, 0,
        "half-sent connections still open after the header timeout"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(HEADER_TIMEOUT - 1),
        "connections closed before the header timeout"
    );
    visitor_is_served(server.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_per_address_cap_the_raised_limit_holds_the_slowloris_and_the_timeout_ends_it() {
    raise_own_limit();
    let header_timeout = HEADER_TIMEOUT.to_string();
    let server = Server::start(&[
        "--header-timeout",
        &header_timeout,
        "--max-connections-per-ip",
        "100000",
    ]);
    let (held, refused) = slowloris(server.addr, HALF_SENT).await;
    // More than the soft limit of 1024 the process started with: all held, none refused.
    assert_eq!((held.len(), refused), (HALF_SENT, 0));
    visitor_is_served(server.addr).await;
    let open = all_closed(held, Duration::from_secs(HEADER_TIMEOUT + 3)).await;
    assert_eq!(
        open, 0,
        "half-sent connections still open after the header timeout"
    );
    visitor_is_served(server.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_total_cap_a_client_is_answered_503_at_once() {
    raise_own_limit();
    let server = Server::start(&[
        "--header-timeout",
        "30",
        "--max-connections",
        "50",
        "--max-connections-per-ip",
        "100000",
    ]);
    let (held, refused) = slowloris(server.addr, 60).await;
    assert_eq!((held.len(), refused), (50, 10));
    let started = Instant::now();
    let (status, body) = healthz_from(VISITOR, server.addr, Duration::from_secs(2)).await;
    assert!(
        status.contains("503") && body.contains("\"code\":\"TOO_MANY_CONNECTIONS\""),
        "{status:?} {body:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the refusal waited"
    );
    // A client whose request arrives after the 503 was written still reads the whole answer
    // and a clean end, not "connection reset by peer": the refused connection drains its
    // input before it closes.
    let mut late = connect_from(VISITOR, server.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;
    late.write_all(b"GET /healthz HTTP/1.1\r\nhost: mailcode\r\n\r\n")
        .await
        .expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), late.read_to_end(&mut answer))
        .await
        .expect("the refused connection ends within its linger time")
        .expect("a clean end after the 503, not a reset");
    assert!(
        String::from_utf8_lossy(&answer).contains("TOO_MANY_CONNECTIONS"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // A slot freed is a slot taken again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    visitor_is_served(server.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_timeout() {
    let server = Server::start(&["--header-timeout", "2"]);
    let mut s = connect_from(VISITOR, server.addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: mailcode\r\n\r\n")
        .await
        .expect("send");
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("200"));
    // Kept alive: a second request on the same connection is answered.
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: mailcode\r\n\r\n")
        .await
        .expect("send");
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("200"));
    // Then nothing: the server closes it once the idle timeout runs out, not before.
    let idle = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(6), s.read(&mut buf))
        .await
        .expect("the idle connection is still open after 6 s");
    assert!(
        matches!(end, Ok(0) | Err(_)),
        "unexpected data on an idle connection"
    );
    assert!(
        idle.elapsed() >= Duration::from_millis(1500),
        "closed after {:?}, before the idle timeout",
        idle.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_server_waits_instead_of_spinning_and_recovers() {
    raise_own_limit();
    // A hard limit the process cannot raise, and a connection cap above it: `accept` fails with
    // EMFILE once the descriptors are gone.
    let server = Server::start_under(
        "ulimit -n 128",
        &[
            "--header-timeout",
            "30",
            "--max-connections",
            "10000",
            "--max-connections-per-ip",
            "100000",
        ],
    );
    // Past the limit, connections the server cannot accept wait in the kernel's backlog: to
    // the client they look held too.
    let (held, _) = slowloris(server.addr, 300).await;
    // Connections wait in the backlog meanwhile; the server must not spin on `accept`.
    let before = server.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = server.cpu_ticks() - before;
    // 100 ticks a second on Linux: a busy loop on 2 threads would burn ~600 in 3 s.
    assert!(
        used < 60,
        "{used} ticks of CPU in 3 s while out of descriptors"
    );
    assert!(
        server.log().contains("cannot accept connections"),
        "EMFILE not logged:\n{}",
        server.log()
    );
    // Once descriptors are free again, clients are served.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = async {
            let mut s = connect_from(VISITOR, server.addr).await?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: mailcode\r\nconnection: close\r\n\r\n")
                .await?;
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).await?;
            std::io::Result::Ok(String::from_utf8_lossy(&answer).into_owned())
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(a)) if a.starts_with("HTTP/1.1 200") => break,
            _ => {
                // Backlogged connections from the attacker are being accepted and closed first.
                assert!(
                    Instant::now() < deadline,
                    "not served again after descriptors freed"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
