//! Misbehaving mail servers (SPEC §3 Robustness): a TCP proxy on loopback in front of the real
//! SMTP sink (aiosmtpd). Connections it lets through reach the sink byte for byte; the ones it
//! picks misbehave the way relays, tarpits and firewalls do. The SMTP itself is always the real
//! server's.
#![allow(dead_code)]
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy)]
pub enum Misbehaviour {
    /// Accepts and never sends a greeting (a tarpit, a black-holing firewall).
    NeverGreets,
    /// Greets and answers until `DATA`, then swallows the message and never answers.
    StallsInData,
    /// Closes the connection in the middle of the message.
    ClosesMidMessage,
}

#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// The first `n` connections misbehave; later ones go through.
    First(usize, Misbehaviour),
    /// Every connection misbehaves.
    Always(Misbehaviour),
    /// At most `n` connections at a time; more are answered `421` and closed (a relay's
    /// connection limit).
    AtMost(usize),
}

pub struct SmtpPeer {
    pub port: u16,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    /// Connections answered 421 for being over the limit.
    turned_away: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpPeer {
    /// Listens on a free loopback port and forwards to the sink on `upstream`.
    pub async fn start(upstream: u16, plan: Plan) -> SmtpPeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let turned_away = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (acc, away) = (accepted.clone(), turned_away.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let n = acc.fetch_add(1, Ordering::SeqCst);
                let misbehaviour = match plan {
                    Plan::First(k, m) if n < k => Some(m),
                    Plan::Always(m) => Some(m),
                    _ => None,
                };
                if let Plan::AtMost(limit) = plan {
                    if open.load(Ordering::SeqCst) >= limit {
                        away.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(async move {
                            let mut client = client;
                            let _ = client
                                .write_all(b"421 4.7.0 Too many connections, try later\r\n")
                                .await;
                        });
                        continue;
                    }
                }
                let open = open.clone();
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    serve(client, upstream, misbehaviour).await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        SmtpPeer {
            port,
            accepted,
            turned_away,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn turned_away(&self) -> usize {
        self.turned_away.load(Ordering::SeqCst)
    }
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut client: TcpStream, upstream: u16, misbehaviour: Option<Misbehaviour>) {
    if let Some(Misbehaviour::NeverGreets) = misbehaviour {
        // Holds the connection open and reads whatever comes, answering nothing, until the
        // client gives up.
        let mut sink = [0u8; 1024];
        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
        return;
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
    });
    // Client to server, watching for the end of `DATA`'s command line.
    let mut seen = Vec::new();
    let mut in_message = 0usize;
    let mut buf = [0u8; 4096];
    loop {
        let n = match cr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if in_message > 0 || data_sent(&mut seen, chunk) {
            in_message += n;
            match misbehaviour {
                Some(Misbehaviour::StallsInData) => continue,
                Some(Misbehaviour::ClosesMidMessage) if in_message > 64 => {
                    down.abort();
                    return;
                }
                _ => {}
            }
        }
        if sw.write_all(chunk).await.is_err() {
            break;
        }
    }
    let _ = sw.shutdown().await;
    let _ = down.await;
}

/// Whether the client's bytes so far hold the `DATA` command: the message follows the
/// server's `354`, so everything after it is the message.
fn data_sent(seen: &mut Vec<u8>, chunk: &[u8]) -> bool {
    seen.extend_from_slice(chunk);
    let text = String::from_utf8_lossy(seen).to_ascii_uppercase();
    text.contains("\r\nDATA\r\n") || text.starts_with("DATA\r\n")
}
