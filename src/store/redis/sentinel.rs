//! Redis Sentinel (docs/operations.md, "Failure behaviour"): the `redis+sentinel://` URL, and
//! the master the sentinels name, asked again after a failure. Must not: repeat a URL in an
//! error (it may hold a password).
use ::redis::aio::MultiplexedConnection;
use ::redis::sentinel::SentinelClient;
use ::redis::{AsyncConnectionConfig, ErrorKind, RedisResult, ServerErrorKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A parsed `redis+sentinel://` URL.
#[derive(Debug, PartialEq)]
pub struct SentinelUrl {
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Parses `redis+sentinel://[[USER]:PASS@]HOST[:PORT][,HOST2[:PORT2]…]/<master name>[/<db>]`
/// (port 26379 when left out, IPv6 hosts in brackets). The error says what is wrong, never
/// repeating the URL (it may hold a password).
pub fn parse_sentinel_url(url: &str) -> Result<SentinelUrl, &'static str> {
    let rest = url
        .strip_prefix("redis+sentinel://")
        .ok_or("not a redis+sentinel:// URL")?;
    let (authority, path) = rest.split_once('/').ok_or("no master name")?;
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
            (some(user), some(pass))
        }
    };
    let mut sentinels = Vec::new();
    for h in hosts.split(',').map(str::trim) {
        let (host, port) = if let Some(v6) = h.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or("bad IPv6 sentinel host")?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err("bad sentinel host"),
            }
        } else {
            match h.rsplit_once(':') {
                Some((host, p)) => (host, Some(p)),
                None => (h, None),
            }
        };
        if host.is_empty() {
            return Err("empty sentinel host");
        }
        let port = match port {
            None => 26379,
            Some(p) => p.parse().map_err(|_| "bad sentinel port")?,
        };
        sentinels.push((host.to_string(), port));
    }
    let (master, db) = match path.split_once('/') {
        None => (path, 0),
        Some((m, "")) => (m, 0),
        Some((m, db)) => (m, db.parse().map_err(|_| "bad database number")?),
    };
    if master.is_empty() {
        return Err("no master name");
    }
    Ok(SentinelUrl {
        sentinels,
        master: master.to_string(),
        db,
        username,
        password,
    })
}

/// The master the sentinels name, with one shared multiplexed connection to it; dropped on a
/// failure that suggests it is gone or no longer the master, or when the master closes it (a
/// restart: its RESP3 reader reports the disconnection), and looked up again on next use.
pub(super) struct SentinelMaster {
    pub(super) client: tokio::sync::Mutex<SentinelClient>,
    /// The connection, numbered so that the late notice of an old one's end spares a new one.
    pub(super) current: Arc<std::sync::Mutex<Option<(u64, MultiplexedConnection)>>>,
    pub(super) made: AtomicU64,
    pub(super) config: AsyncConnectionConfig,
    pub(super) db: i64,
}

impl SentinelMaster {
    pub(super) fn current(&self) -> Option<MultiplexedConnection> {
        lock(&self.current).as_ref().map(|(_, c)| c.clone())
    }

    pub(super) fn forget(&self) {
        *lock(&self.current) = None;
    }

    /// The current master's connection, asking the sentinels when there is none.
    pub(super) async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let mut client = self.client.lock().await;
        // Another caller may have looked it up while this one waited.
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let number = self.made.fetch_add(1, Ordering::Relaxed);
        let current = Arc::downgrade(&self.current);
        let config = self
            .config
            .clone()
            .set_push_sender(move |push: ::redis::PushInfo| {
                if push.kind == ::redis::PushKind::Disconnection {
                    if let Some(current) = current.upgrade() {
                        let mut current = lock(&current);
                        if current.as_ref().is_some_and(|(n, _)| *n == number) {
                            *current = None;
                        }
                    }
                }
                Ok::<(), std::convert::Infallible>(())
            });
        let c = client.get_async_connection_with_config(&config).await?;
        *lock(&self.current) = Some((number, c.clone()));
        Ok(c)
    }

    /// Forgets the connection after an answer that says the master is gone or demoted.
    pub(super) fn after<T>(&self, r: &RedisResult<T>) {
        if let Err(e) = r {
            let demoted = e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
                || e.code() == Some("READONLY")
                || e.to_string().contains("READONLY");
            if demoted
                || e.is_io_error()
                || e.is_connection_dropped()
                || e.is_timeout()
                || e.is_unrecoverable_error()
            {
                self.forget();
            }
        }
    }
}

/// A lock that a panic elsewhere does not poison for good (the data is a connection handle).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forgets the sentinel master's connection if a request is cancelled midway (the operation
/// timed out: the master may hang).
pub(super) struct ForgetUnlessDone<'a>(pub(super) Option<&'a SentinelMaster>);

impl Drop for ForgetUnlessDone<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.0 {
            m.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse() {
        let u =
            parse_sentinel_url("redis+sentinel://:s3cr:et@10.0.0.1:26380,h2,[::1]:7/mymaster/3")
                .unwrap();
        assert_eq!(
            u,
            SentinelUrl {
                sentinels: vec![
                    ("10.0.0.1".into(), 26380),
                    ("h2".into(), 26379),
                    ("::1".into(), 7)
                ],
                master: "mymaster".into(),
                db: 3,
                username: None,
                password: Some("s3cr:et".into()),
            }
        );
        let u = parse_sentinel_url("redis+sentinel://h:1/m").unwrap();
        assert_eq!((u.master.as_str(), u.db, u.password), ("m", 0, None));
        for bad in [
            "redis://h:1/m",
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel://h:x/m",
            "redis+sentinel://h:1,/m",
            "redis+sentinel://h:1/m/x",
        ] {
            assert!(parse_sentinel_url(bad).is_err(), "{bad}");
        }
    }
}
