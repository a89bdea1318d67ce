//! How the Redis backend reaches Redis: one server (a connection manager, plus each HTTP
//! thread's own, `per_thread.rs`), a Cluster (the cluster client follows `MOVED`/`ASK`,
//! refreshes its slot map and reconnects by itself) or the master that Sentinel names (asked
//! again after a failure); every connection over RESP3, so that one Redis closes is replaced at
//! once; and which commands may be sent again after a connection failed under them
//! ([`Resend`]). docs/operations.md, "Failure behaviour" and "Redis: keys and records", say
//! what an operator sees. Must not: repeat a URL in an error (it may hold a password).
use super::per_thread::PerThread;
use super::scripts::Call;
use super::sentinel::{parse_sentinel_url, ForgetUnlessDone, SentinelMaster};
use super::{bounded, Health, Keys, RedisStore, StoreError, StoreResult};
use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use ::redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, Pipeline,
    ProtocolVersion, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// One Redis (the connection manager reconnects by itself), a Redis Cluster (the cluster
/// connection follows `MOVED`/`ASK`, refreshes its slot map and reconnects by itself) or the
/// master the sentinels name (asked again after a failure). Scripts and commands run on any;
/// only what spans hash slots asks which one it is.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelMaster>),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(m) => Box::pin(async move {
                let mut c = m.connection().await?;
                let mut guard = ForgetUnlessDone(Some(m));
                let r = c.req_packed_command(cmd).await;
                guard.0 = None;
                m.after(&r);
                r
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(m) => Box::pin(async move {
                let mut c = m.connection().await?;
                let mut guard = ForgetUnlessDone(Some(m));
                let r = c.req_packed_commands(pipeline, offset, count).await;
                guard.0 = None;
                m.after(&r);
                r
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(m) => m.db,
        }
    }
}

impl RedisStore {
    /// Connects to `url` (redis://, rediss://, redis+unix://…), or to a Redis Cluster when `url`
    /// lists several nodes separated by commas (`redis://h1:7000,redis://h2:7001`, any of its
    /// nodes: the others are discovered), or to the master the sentinels of a
    /// `redis+sentinel://` URL name; every key starts with `prefix`. Fails with `Unavailable`
    /// when Redis does not answer a PING within `op_timeout`.
    pub async fn connect(url: &str, prefix: &str, op_timeout: Duration) -> StoreResult<Self> {
        let (conn, per_thread) = if url.starts_with("redis+sentinel://") {
            (Self::connect_sentinel(url, op_timeout)?, None)
        } else if url.contains(',') {
            (Self::connect_cluster(url, op_timeout).await?, None)
        } else {
            let (conn, per_thread) = Self::connect_single(url, op_timeout).await?;
            (conn, Some(per_thread))
        };
        let store = RedisStore {
            conn,
            per_thread,
            keys: Arc::new(Keys::new(prefix)),
            op_timeout,
            webhooks: false,
        };
        Health::ping(&store).await?;
        store.check_version().await?;
        Ok(store)
    }

    /// Refuses a server older than Redis 7.0, whose `SET` cannot combine `NX` with `GET`
    /// (`limits_lua`): better a clear error at start than every limited request failing. A
    /// server that does not answer `INFO` (an ACL or a managed service may forbid it) is taken
    /// on trust, with a warning.
    async fn check_version(&self) -> StoreResult<()> {
        let info: ::redis::Value = match bounded(
            self.op_timeout,
            self.query(::redis::cmd("INFO").arg("server"), Resend::Safe),
        )
        .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the Redis version (INFO server); it must be 7.0 or later");
                return Ok(());
            }
        };
        let mut texts = Vec::new();
        info_texts(&info, &mut texts);
        match texts.iter().find_map(|t| too_old(t)) {
            Some(found) => Err(StoreError::Internal(format!(
                "Redis {found} is too old: mailcode needs Redis 7.0 or later (or Valkey)"
            ))),
            None => Ok(()),
        }
    }

    async fn connect_cluster(urls: &str, op_timeout: Duration) -> StoreResult<Conn> {
        let nodes: Vec<&str> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        // The URLs may hold a password: they are not repeated in the error.
        // RESP3 as on one Redis (`connect_single`): a node connection that its node closes is
        // made anew at once. The cluster client also sends a command again by itself when its
        // connection dropped (its `retries`), whatever the command.
        let mut builder = ClusterClient::builder(nodes.iter().copied());
        if !nodes.iter().any(|u| names_protocol(u)) {
            builder = builder.use_protocol(ProtocolVersion::RESP3);
        }
        let client = builder
            .connection_timeout(op_timeout)
            .response_timeout(op_timeout)
            .retries(8)
            .min_retry_wait(50)
            .max_retry_wait(1_000)
            .build()
            .map_err(|e| {
                StoreError::Internal(format!("invalid Redis Cluster URL: {}", e.category()))
            })?;
        bounded(op_timeout, async {
            client.get_async_connection().await.map_err(err)
        })
        .await
        .map(Conn::Cluster)
    }

    /// Nothing is connected yet: the first operation (the PING in `connect`) asks the sentinels.
    fn connect_sentinel(url: &str, op_timeout: Duration) -> StoreResult<Conn> {
        let invalid = |e: &str| StoreError::Internal(format!("invalid Redis Sentinel URL: {e}"));
        let u = parse_sentinel_url(url).map_err(invalid)?;
        let addrs = u
            .sentinels
            .into_iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host, port));
        // RESP3 to the master, so that its closing the connection is noticed at once
        // (`SentinelMaster`); the sentinels are asked as before.
        let mut builder = SentinelClientBuilder::new(addrs, &u.master, SentinelServerType::Master)
            .map_err(|e| invalid(e.category()))?
            .set_client_to_redis_db(u.db)
            .set_client_to_redis_protocol(ProtocolVersion::RESP3);
        if let Some(user) = &u.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(pass) = &u.password {
            builder = builder.set_client_to_redis_password(pass);
        }
        let client = builder.build().map_err(|e| invalid(e.category()))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(op_timeout))
            .set_response_timeout(Some(op_timeout));
        Ok(Conn::Sentinel(Arc::new(SentinelMaster {
            client: tokio::sync::Mutex::new(client),
            current: Arc::new(std::sync::Mutex::new(None)),
            made: AtomicU64::new(0),
            config,
            db: u.db,
        })))
    }

    async fn connect_single(
        url: &str,
        op_timeout: Duration,
    ) -> StoreResult<(Conn, Arc<PerThread>)> {
        // The URL may hold a password: it is not repeated in the error.
        let invalid =
            |e: RedisError| StoreError::Internal(format!("invalid Redis URL: {}", e.category()));
        let mut info = url.into_connection_info().map_err(invalid)?;
        // RESP3, so that a connection Redis closes (a restart) is replaced when its reader sees
        // the end of the stream, not when the next command meets the dead socket: over RESP3
        // the multiplexed connection reports the disconnection, and the connection manager
        // reconnects at once, even unused (`Resend`). A URL that names its protocol
        // (`?protocol=resp2`, for a proxy that does not speak RESP3) keeps it.
        if !names_protocol(url) {
            let redis = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            info = info.set_redis_settings(redis);
        }
        let client = ::redis::Client::open(info).map_err(invalid)?;
        // No response timeout of the client's own: every operation is already bounded by
        // `op_timeout` (`bounded`, which also covers waiting for a reconnection), and a second
        // timer per command cost a timer registration per request (docs/benchmarks.md). An answer that
        // does not come ends the operation the same way: an error, the connection kept.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(op_timeout))
            .set_response_timeout(None)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(8);
        let per_thread = PerThread::new(client.clone(), config.clone());
        let shared = bounded(op_timeout, async {
            ConnectionManager::new_with_config(client, config)
                .await
                .map_err(err)
        })
        .await?;
        Ok((Conn::Single(shared), per_thread))
    }

    /// The connection for a command from this thread: its own on an HTTP thread once that is
    /// connected, else the shared one.
    pub(super) fn conn(&self) -> Conn {
        if let Some(own) = self.per_thread.as_ref().and_then(|p| p.for_this_thread()) {
            return Conn::Single(own);
        }
        self.conn.clone()
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// Sends a command on this thread's connection; sent once more when it failed in a way
    /// `resend` allows (`Resend::again`), on the connection being made anew.
    pub(super) async fn query<T: ::redis::FromRedisValue>(
        &self,
        cmd: &::redis::Cmd,
        resend: Resend,
    ) -> StoreResult<T> {
        self.send(resend, |mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// Runs a script like [`Self::query`]; whether it may run twice is the script's (`Lua`).
    pub(super) async fn invoke<T: ::redis::FromRedisValue>(
        &self,
        call: &Call<'_>,
    ) -> StoreResult<T> {
        self.send(call.resend, |mut c| async move {
            call.invoke_async(&mut c).await
        })
        .await
    }

    pub(super) async fn send<T, F>(&self, resend: Resend, op: impl Fn(Conn) -> F) -> StoreResult<T>
    where
        F: std::future::Future<Output = RedisResult<T>>,
    {
        match op(self.conn()).await {
            Err(e) if resend.again(&e) => op(self.conn()).await.map_err(err),
            answer => answer.map_err(err),
        }
    }
}

/// Whether an operation may be sent a second time after its connection failed under it.
///
/// A connection Redis closed (a restart) is noticed as soon as its reader sees the end of the
/// stream (RESP3, `connect_single`), and the connection manager makes a new one at once; but a
/// command may still meet the old socket in the moment between, or be on its way when Redis
/// goes. Reads and idempotent writes are then sent once more, on the new connection (within the
/// caller's `bounded`): after a restart no request fails for a connection it could not know
/// was dead. Counting and consuming operations are not, since the first one may have run: they
/// fail with `Unavailable` as before, which errs on the safe side (SPEC §3 Robustness).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Resend {
    /// A read, or a write that leaves the same state when applied twice.
    Safe,
    /// Counts, consumes or appends: sent again only when it surely never left.
    IfUnsent,
}

impl Resend {
    fn again(self, e: &RedisError) -> bool {
        // A refused connection was never made, so nothing was sent: any command may go again.
        // A connection manager whose reconnection gave up during a long outage answers the
        // next command with that old refusal even when Redis is back, and only then connects
        // anew; sent once more, the command waits for that connection.
        e.is_connection_refusal() || (self == Resend::Safe && e.is_connection_dropped())
    }
}

/// Whether a Redis URL chooses its protocol itself (`protocol=` in its query).
fn names_protocol(url: &str) -> bool {
    url.split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("protocol=")))
}

/// The texts of an `INFO` answer: one from a single server, one per node from a Cluster.
fn info_texts(v: &::redis::Value, out: &mut Vec<String>) {
    use ::redis::Value as V;
    match v {
        V::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        V::SimpleString(s) => out.push(s.clone()),
        V::VerbatimString { text, .. } => out.push(text.clone()),
        V::Array(items) | V::Set(items) => items.iter().for_each(|i| info_texts(i, out)),
        V::Map(pairs) => pairs.iter().for_each(|(_, i)| info_texts(i, out)),
        _ => {}
    }
}

/// The version an `INFO server` text names when it is older than 7.0.
fn too_old(info: &str) -> Option<String> {
    let version = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("redis_version:"))?;
    let major: u32 = version.split('.').next()?.parse().ok()?;
    (major < 7).then(|| version.to_owned())
}

/// Down, unreachable, too slow, loading, failing over: 503. Anything else is a bug or corrupt
/// data: 500.
pub(super) fn err(e: RedisError) -> StoreError {
    let transient = e.is_io_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            ) | ErrorKind::AuthenticationFailed
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::NoValidReplicasFoundBySentinel
        )
        || matches!(
            e.code(),
            Some("OOM" | "BUSY" | "MISCONF" | "NOREPLICAS" | "LOADING")
        );
    if transient {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_older_than_redis_7_are_named() {
        let info = |v: &str| format!("# Server\r\nredis_version:{v}\r\nredis_mode:standalone\r\n");
        assert_eq!(too_old(&info("6.2.14")), Some("6.2.14".into()));
        assert_eq!(too_old(&info("7.0.15")), None);
        assert_eq!(too_old(&info("7.2.4")), None);
        assert_eq!(too_old("# Server\r\n"), None, "no version: taken on trust");
        // A Cluster answers one text per node: every node counts.
        let mut texts = Vec::new();
        info_texts(
            &::redis::Value::Map(vec![
                (
                    ::redis::Value::SimpleString("a:7000".into()),
                    ::redis::Value::BulkString(info("7.0.15").into_bytes()),
                ),
                (
                    ::redis::Value::SimpleString("b:7001".into()),
                    ::redis::Value::VerbatimString {
                        format: ::redis::VerbatimFormat::Text,
                        text: info("6.0.9"),
                    },
                ),
            ]),
            &mut texts,
        );
        assert_eq!(texts.iter().find_map(|t| too_old(t)), Some("6.0.9".into()));
    }
}
