//! The SMTP relay: lettre's SMTP client connections, kept in a small pool of our own so that a
//! connection that failed or was cut off by the attempt's deadline is never used again (SPEC §3
//! Robustness: a mail server that stalls delays only the mail it holds).
//!
//! lettre's own pool returns a connection to the pool when the future using it is dropped, and
//! an attempt that our deadline ends is exactly such a drop: the connection went back in the
//! middle of a command, and the next mail over it waited for the stalled server again (a `NOOP`
//! then a `QUIT`, up to two command timeouts) or read the previous mail's late reply as its own.
//! Here a connection is parked only after a mail went through it completely; one dropped
//! half-way is closed with the future that held it.
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::secret_url::SecretUrl;

/// How the connection is encrypted, as lettre's `from_url` reads the URL.
#[derive(Clone)]
enum Tls {
    None,
    /// `smtps://`: TLS from the first byte.
    Wrapper(TlsParameters),
    /// `?tls=required`: STARTTLS or fail.
    Required(TlsParameters),
    /// `?tls=opportunistic`: STARTTLS when offered.
    Opportunistic(TlsParameters),
}

/// A parked connection older than this is closed rather than reused: relays end idle sessions
/// after a few minutes (RFC 5321 §4.5.3.2.7 asks at least 5), and one that did is only found out
/// by a failed command.
const MAX_IDLE: Duration = Duration::from_secs(60);
/// A connection parked longer than this is asked `NOOP` before a mail goes over it.
const CHECK_AFTER: Duration = Duration::from_secs(5);

pub struct Relay {
    host: String,
    port: u16,
    tls: Tls,
    hello: ClientId,
    credentials: Option<Credentials>,
    /// lettre's timeout for each read and write; the attempt as a whole is bounded by the
    /// caller's deadline.
    command_timeout: Duration,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    max_idle: usize,
}

impl std::fmt::Debug for Relay {
    /// The credentials never print (SPEC §3 Robustness).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("credentials", &self.credentials.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Reads `smtp://`, `smtps://`, `?tls=required|opportunistic`, user and password (percent
    /// encoded) and the EHLO name as the URL's path, as lettre's `from_url` does. The error
    /// never holds the URL.
    pub fn from_url(
        url: &SecretUrl,
        command_timeout: Duration,
        max_idle: usize,
    ) -> Result<Self, String> {
        let parsed = url::Url::parse(url.expose()).map_err(|e| format!("not a URL ({e})"))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the URL names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let params = || TlsParameters::new(host.clone()).map_err(|e| format!("TLS: {e}"));
        let tls_mode = parsed
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let (tls, default_port) = match (parsed.scheme(), tls_mode.as_deref()) {
            ("smtp", None) => (Tls::None, 25),
            ("smtp", Some("required")) => (Tls::Required(params()?), 587),
            ("smtp", Some("opportunistic")) => (Tls::Opportunistic(params()?), 587),
            ("smtps", _) => (Tls::Wrapper(params()?), 465),
            ("smtp", Some(other)) => {
                return Err(format!("tls={other:?} is not required or opportunistic"))
            }
            (scheme, _) => return Err(format!("the scheme {scheme:?} is not smtp or smtps")),
        };
        let hello = match parsed.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_string()),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| "the user or password is not UTF-8 once percent-decoded".to_string())
        };
        let credentials = match parsed.password() {
            Some(pass) => Some(Credentials::new(decode(parsed.username())?, decode(pass)?)),
            None => None,
        };
        Ok(Relay {
            port: parsed.port().unwrap_or(default_port),
            host,
            tls,
            hello,
            credentials,
            command_timeout,
            idle: Mutex::new(Vec::new()),
            max_idle,
        })
    }

    /// Whether `url` can be used, for the settings' check at start.
    pub fn check_url(url: &SecretUrl) -> Result<(), String> {
        Relay::from_url(url, Duration::from_secs(1), 0).map(|_| ())
    }

    /// Sends one message. Bound it with a deadline: a cancelled send closes its connection.
    pub async fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<(), lettre::transport::smtp::Error> {
        let mut conn = match self.reusable().await {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        match conn.send(envelope, message).await {
            Ok(_) => {
                self.park(conn);
                Ok(())
            }
            // Dropped, not parked: its state after a failed command is unknown.
            Err(e) => Err(e),
        }
    }

    /// Opens a connection and says `QUIT` (readiness).
    pub async fn check(&self) -> Result<(), lettre::transport::smtp::Error> {
        let mut conn = self.connect().await?;
        conn.quit().await.map(|_| ())
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, lettre::transport::smtp::Error> {
        let wrapper = match &self.tls {
            Tls::Wrapper(p) => Some(p.clone()),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(self.command_timeout),
            &self.hello,
            wrapper,
            None,
        )
        .await?;
        match &self.tls {
            Tls::Required(p) => conn.starttls(p.clone(), &self.hello).await?,
            Tls::Opportunistic(p) if conn.can_starttls() => {
                conn.starttls(p.clone(), &self.hello).await?
            }
            _ => {}
        }
        if let Some(c) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, c).await?;
        }
        Ok(conn)
    }

    /// The most recently parked connection that still answers, if any.
    async fn reusable(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let (mut conn, parked_at) = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.retain(|(_, at)| at.elapsed() < MAX_IDLE);
                idle.pop()?
            };
            if parked_at.elapsed() < CHECK_AFTER || conn.test_connected().await {
                return Some(conn);
            }
            // Closed by the server while parked: dropped without a `QUIT` it would not answer.
        }
    }

    fn park(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push((conn, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_read_as_lettre_reads_them_and_errors_hold_no_password() {
        let t = Duration::from_secs(1);
        let r = Relay::from_url(&"smtp://127.0.0.1:2525".into(), t, 1).unwrap();
        assert_eq!((r.host.as_str(), r.port), ("127.0.0.1", 2525));
        assert!(r.credentials.is_none());
        let r =
            Relay::from_url(&"smtp://u:p%40ss@mx.example.com?tls=required".into(), t, 1).unwrap();
        assert_eq!(r.port, 587);
        assert_eq!(
            r.credentials,
            Some(Credentials::new("u".into(), "p@ss".into()))
        );
        let r = Relay::from_url(&"smtps://mx.example.com".into(), t, 1).unwrap();
        assert_eq!(r.port, 465);
        assert!(!format!("{r:?}").contains("p@ss"));
        for bad in [
            "http://u:SECRET@h",
            "smtp://u:SECRET@h?tls=maybe",
            "smtp://u:SECRET@",
        ] {
            let e = Relay::from_url(&bad.into(), t, 1).unwrap_err();
            assert!(!e.contains("SECRET"), "{e}");
        }
    }
}
