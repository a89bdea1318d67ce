//! The SMTP sink of `bench/run`: accepts every message and appends it to `DIR/mails` as one
//! record, `<length>\n` and then the message headed by an `X-Envelope-To:` line (what the tests'
//! `tests/support/smtp_sink.py` writes to a file per mail), at a small fraction of its CPU. That
//! one (aiosmtpd, Python) took ~0.7 ms of CPU per mail, and a file per mail costs ~0.8 ms of
//! kernel time on this machine's ext4 (inode allocation): 0.2–0.7 of the 2 cores that the
//! servers under test compete for in workload 2, so the faster a server sent its mail, the more
//! the sink slowed it down.
//!
//! `smtp-sink --port PORT --dir DIR` listens on 127.0.0.1 and prints `ready` once it does. One
//! thread; SIGTERM ends it.
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A line longer than this ends the session (RFC 5321 allows 1000 with CRLF).
const MAX_LINE: usize = 64 * 1024;
/// A message larger than this is refused (552), as a real server would.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

fn usage() -> ! {
    eprintln!("usage: smtp-sink --port PORT --dir DIR");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (mut port, mut dir) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse::<u16>().ok()),
            "--dir" => dir = args.next().map(PathBuf::from),
            _ => usage(),
        }
    }
    let (Some(port), Some(dir)) = (port, dir) else {
        usage()
    };
    let mails = std::fs::create_dir_all(&dir).and_then(|()| {
        File::options()
            .create(true)
            .append(true)
            .open(dir.join("mails"))
    });
    let mails = match mails {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => {
            eprintln!("smtp-sink: cannot open {}/mails: {e}", dir.display());
            std::process::exit(1);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("smtp-sink: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("ready");
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        let _ = sock.set_nodelay(true);
        let mails = mails.clone();
        tokio::spawn(async move {
            if let Err(e) = session(sock, &mails).await {
                eprintln!("smtp-sink: session ended: {e}");
            }
        });
    }
}

/// The address inside `<…>` of a `MAIL FROM:`/`RCPT TO:` line.
fn address(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    match (s.find('<'), s.find('>')) {
        (Some(a), Some(b)) if a < b => s[a + 1..b].to_owned(),
        _ => s.split_once(':').map_or("", |(_, r)| r.trim()).to_owned(),
    }
}

async fn session(sock: TcpStream, mails: &Mutex<File>) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 smtp-sink ESMTP\r\n").await?;
    let mut line = Vec::with_capacity(256);
    let mut rcpts: Vec<String> = Vec::new();
    loop {
        if !read_line(&mut r, &mut line).await? {
            return Ok(());
        }
        let verb = line
            .get(..4)
            .map(|v| v.to_ascii_uppercase())
            .unwrap_or_default();
        let reply: &[u8] = match &verb[..] {
            b"EHLO" => b"250-smtp-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            b"HELO" => b"250 smtp-sink\r\n",
            b"MAIL" | b"RSET" => {
                rcpts.clear();
                b"250 OK\r\n"
            }
            b"RCPT" => {
                rcpts.push(address(&line));
                b"250 OK\r\n"
            }
            b"NOOP" => b"250 OK\r\n",
            b"QUIT" => {
                w.write_all(b"221 Bye\r\n").await?;
                return Ok(());
            }
            b"DATA" if rcpts.is_empty() => b"503 RCPT first\r\n",
            b"DATA" => {
                w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut msg = format!("X-Envelope-To: {}\r\n", rcpts.join(",")).into_bytes();
                loop {
                    if !read_line(&mut r, &mut line).await? {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    // Dot-stuffing undone (RFC 5321 4.5.2).
                    let content = if line.starts_with(b"..") {
                        &line[1..]
                    } else {
                        &line[..]
                    };
                    if msg.len() + content.len() <= MAX_MESSAGE {
                        msg.extend_from_slice(content);
                    }
                }
                rcpts.clear();
                if msg.len() >= MAX_MESSAGE {
                    b"552 Message too large\r\n"
                } else {
                    store(mails, &msg)?;
                    b"250 OK\r\n"
                }
            }
            _ => b"502 Command not implemented\r\n",
        };
        w.write_all(reply).await?;
    }
}

/// One line into `line` (cleared first); false at the end of the stream.
async fn read_line(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    line: &mut Vec<u8>,
) -> std::io::Result<bool> {
    line.clear();
    let n = (&mut *r)
        .take(MAX_LINE as u64)
        .read_until(b'\n', line)
        .await?;
    if n == MAX_LINE && !line.ends_with(b"\n") {
        return Err(std::io::Error::other("line too long"));
    }
    Ok(n > 0)
}

/// One record in one write (a reader may still see the end of the file mid-record and waits).
fn store(mails: &Mutex<File>, msg: &[u8]) -> std::io::Result<()> {
    let mut record = format!("{}\n", msg.len()).into_bytes();
    record.extend_from_slice(msg);
    let mut f = mails
        .lock()
        .map_err(|_| std::io::Error::other("poisoned"))?;
    f.write_all(&record)
}
