//! The Redis backend for sessions, codes, rate limits and the mail queue: the data read on
//! every request lives in memory, with a TTL on every key; users stay in SQL. Same semantics as
//! `sqlite.rs`, checked by the same suite (`tests/store_suite`). The keys, their records and
//! TTLs, the sign-in protocol that spans Cluster slots and how limits run on a Cluster are
//! described for operators in docs/operations.md, "Redis: keys and records"; the record format
//! itself is defined once, in `codec/format.rs`, for the Rust codec and the Lua scripts alike.
//!
//! Restarts: every connection speaks RESP3, so one that Redis closes is replaced as soon as its
//! reader sees the end of the stream; a read or an idempotent write that meets it anyway is sent
//! once more, a counting or consuming one is not ([`Resend`]; docs/operations.md, "Failure
//! behaviour").
//!
//! Must not: store a raw session id or a code (only [`SessionKey`]s and HMACs reach here);
//! decide expiry by Redis' clock (every decision compares stored instants with the caller's
//! `now`, TTLs only collect garbage, never shorter than 1 s); take more than `op_timeout` per
//! operation (then `Unavailable`: 503, and the connection manager reconnects by itself, or the
//! next operation asks the sentinels again); `unwrap` anything read from Redis (corrupt data is
//! `Internal`).

mod code_desk;
mod codec;
mod mail;
mod per_thread;
mod scripts;

pub use per_thread::own_connections_on_this_thread;
use per_thread::PerThread;

use ::redis::aio::MultiplexedConnection;
use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, Pipeline,
    ProtocolVersion, RedisError, RedisFuture, RedisResult, ScriptInvocation, ServerErrorKind,
    Value,
};
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use super::*;
use codec::format::{limit_head, PENDING, SEP};
use codec::{
    codes_in, decode_code, decode_session, encode_code, encode_session, encode_session_with_code,
    from_index_member, index_member, stored_user, tag,
};
pub use codec::{format, tag as session_tag, Keys};
use scripts::{Call, Lua, ACTIVATE, CHECK, CODE_PUT, DELETE, HITS, INDEX_ADD, REDEEM, TOUCH};

/// The shortest TTL ever set, so that a key logically dead already still vanishes soon.
const MIN_TTL_MS: i64 = 1_000;
/// Codes outlive their expiry by an hour, so that a late submission reads `Expired`, not
/// `Missing` (as SQLite's sweep keeps them).
const CODE_GRACE_MS: i64 = 3_600_000;

/// One Redis (the connection manager reconnects by itself), a Redis Cluster (the cluster
/// connection follows `MOVED`/`ASK`, refreshes its slot map and reconnects by itself) or the
/// master the sentinels name (asked again after a failure). Scripts and commands run on any;
/// only what spans hash slots asks which one it is.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelMaster>),
}

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
struct SentinelMaster {
    client: tokio::sync::Mutex<SentinelClient>,
    /// The connection, numbered so that the late notice of an old one's end spares a new one.
    current: Arc<std::sync::Mutex<Option<(u64, MultiplexedConnection)>>>,
    made: AtomicU64,
    config: AsyncConnectionConfig,
    db: i64,
}

impl SentinelMaster {
    fn current(&self) -> Option<MultiplexedConnection> {
        lock(&self.current).as_ref().map(|(_, c)| c.clone())
    }

    fn forget(&self) {
        *lock(&self.current) = None;
    }

    /// The current master's connection, asking the sentinels when there is none.
    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
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
    fn after<T>(&self, r: &RedisResult<T>) {
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
struct ForgetUnlessDone<'a>(Option<&'a SentinelMaster>);

impl Drop for ForgetUnlessDone<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.0 {
            m.forget();
        }
    }
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

#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    /// Plain Redis only: HTTP threads' own connections (`per_thread.rs`).
    per_thread: Option<Arc<PerThread>>,
    keys: Arc<Keys>,
    op_timeout: Duration,
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
        };
        SessionStore::ping(&store).await?;
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
    fn conn(&self) -> Conn {
        if let Some(own) = self.per_thread.as_ref().and_then(|p| p.for_this_thread()) {
            return Conn::Single(own);
        }
        self.conn.clone()
    }

    fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// Sends a command on this thread's connection; sent once more when it failed in a way
    /// `resend` allows (`Resend::again`), on the connection being made anew.
    async fn query<T: ::redis::FromRedisValue>(
        &self,
        cmd: &::redis::Cmd,
        resend: Resend,
    ) -> StoreResult<T> {
        self.send(resend, |mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// Runs a script like [`Self::query`]; whether it may run twice is the script's (`Lua`).
    async fn invoke<T: ::redis::FromRedisValue>(&self, call: &Call<'_>) -> StoreResult<T> {
        self.send(call.resend, |mut c| async move {
            call.invoke_async(&mut c).await
        })
        .await
    }

    async fn send<T, F>(&self, resend: Resend, op: impl Fn(Conn) -> F) -> StoreResult<T>
    where
        F: std::future::Future<Output = RedisResult<T>>,
    {
        match op(self.conn()).await {
            Err(e) if resend.again(&e) => op(self.conn()).await.map_err(err),
            answer => answer.map_err(err),
        }
    }

    /// Enters a session in its user's index and stretches the index's TTL to the latest
    /// absolute expiry in it.
    async fn index_add(&self, user_id: i64, s: &SessionRecord, now: Millis) -> StoreResult<()> {
        let mut call = INDEX_ADD.prepare();
        call.key(self.keys.index(user_id))
            .arg(index_score(s.absolute_expires_at))
            .arg(index_member(&s.key))
            .arg(now);
        self.invoke::<i64>(&call).await.map(drop)
    }

    async fn index_remove(&self, user_id: i64, keys: &[&SessionKey]) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let members: Vec<Vec<u8>> = keys.iter().map(|k| index_member(k)).collect();
        self.query::<i64>(
            ::redis::cmd("ZREM")
                .arg(self.keys.index(user_id))
                .arg(members),
            Resend::Safe,
        )
        .await
        .map(drop)
    }

    /// Deletes a session and its codes (in its record); returns the record that was there.
    async fn delete_one(&self, key: &SessionKey) -> StoreResult<Option<String>> {
        let mut call = DELETE.prepare();
        call.key(self.keys.session(key));
        self.invoke(&call).await
    }

    /// A stored record as the caller may see it: active, or pending and committed by its marker
    /// (then activated now, the step its sign-in could not finish).
    async fn accept(&self, key: &SessionKey, raw: &str) -> StoreResult<Option<SessionRecord>> {
        let Some(rest) = raw.strip_prefix(PENDING) else {
            return decode_session(key, raw).map(Some);
        };
        let (old, active) = rest.split_once(SEP).ok_or_else(|| corrupt("session"))?;
        let record = decode_session(key, active)?;
        let marker: Option<String> = self
            .query(
                ::redis::cmd("GET").arg(self.keys.marker_of_tag(old)),
                Resend::Safe,
            )
            .await?;
        if marker != Some(tag(key)) {
            return Ok(None);
        }
        self.activate(key).await?;
        Ok(Some(record))
    }

    /// Rewrites a pending record as active (a script: codes put into it meanwhile stay),
    /// unless the session was deleted meanwhile.
    async fn activate(&self, key: &SessionKey) -> StoreResult<bool> {
        let mut call = ACTIVATE.prepare();
        call.key(self.keys.session(key));
        Ok(self.invoke::<i64>(&call).await? == 1)
    }

    async fn load(&self, key: &SessionKey, now: Millis) -> StoreResult<Option<SessionRecord>> {
        let raw: Option<String> = self
            .query(
                ::redis::cmd("GET").arg(self.keys.session(key)),
                Resend::Safe,
            )
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        Ok(self.accept(key, &raw).await?.filter(|s| s.is_live(now)))
    }

    /// Keeps a code in its session's record; a session gone meanwhile gets none (`CODE_PUT`).
    async fn put_code(&self, c: &CodeRecord) -> StoreResult<()> {
        let mut call = CODE_PUT.prepare();
        call.key(self.keys.session(&c.session))
            .arg(c.purpose.as_str())
            .arg(encode_code(c)?)
            .arg(c.created_at)
            .arg(CODE_GRACE_MS);
        self.invoke::<i64>(&call).await.map(drop)
    }

    async fn create(&self, s: &SessionRecord) -> StoreResult<()> {
        let record = encode_session(s)?;
        self.query::<Value>(
            ::redis::cmd("SET")
                .arg(self.keys.session(&s.key))
                .arg(record)
                .arg("PX")
                .arg(ttl(s.expires_at() - s.last_seen_at)),
            Resend::Safe,
        )
        .await?;
        // Record first, index second: a key listed in an index but missing in Redis is gone
        // for good, so listing may prune it. The id is handed out only once both are written.
        if let Some(u) = &s.user {
            if let Err(e) = self.index_add(u.id, s, s.last_seen_at).await {
                let _ = self.delete_one(&s.key).await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        let Some(raw) = self.delete_one(key).await? else {
            return Ok(false);
        };
        // The index entry would be pruned when listing anyway; a failure here changes nothing.
        if let Some(u) = stored_user(key, &raw) {
            if let Err(e) = self.index_remove(u, &[key]).await {
                tracing::debug!("session index not pruned: {e}");
            }
        }
        Ok(true)
    }

    async fn list(&self, user_id: i64, now: Millis) -> StoreResult<Vec<SessionRecord>> {
        let index = self.keys.index(user_id);
        // Scores are whole seconds rounded up: an entry at or below `now` in seconds rounded
        // down has ended (one in the current second may have too: `is_live` decides below).
        let now_s = now.div_euclid(1000);
        let mut pipe = ::redis::pipe();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(now_s)
            .ignore()
            .cmd("ZRANGEBYSCORE")
            .arg(&index)
            .arg(format!("({now_s}"))
            .arg("+inf");
        let pipe = &pipe;
        let (members,): (Vec<Vec<u8>>,) = self
            .send(Resend::Safe, |mut c| async move {
                pipe.query_async(&mut c).await
            })
            .await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let keys = members
            .iter()
            .map(|m| from_index_member(m))
            .collect::<StoreResult<Vec<_>>>()?;
        let names: Vec<String> = keys.iter().map(|k| self.keys.session(k)).collect();
        let raws: Vec<Option<String>> = if self.is_cluster() {
            // Each session has its own tag, so its own slot: one GET each, sent together.
            let gets = names.iter().map(|n| async move {
                self.query::<Option<String>>(::redis::cmd("GET").arg(n), Resend::Safe)
                    .await
            });
            futures::future::join_all(gets)
                .await
                .into_iter()
                .collect::<StoreResult<_>>()?
        } else {
            self.query(::redis::cmd("MGET").arg(names), Resend::Safe)
                .await?
        };
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for (key, raw) in keys.iter().zip(raws) {
            match raw {
                None => gone.push(key),
                Some(raw) => {
                    if let Some(s) = self.accept(key, &raw).await? {
                        let mine = s.user.as_ref().is_some_and(|u| u.id == user_id);
                        if mine && s.is_live(now) {
                            live.push(s);
                        }
                    }
                }
            }
        }
        self.index_remove(user_id, &gone).await?;
        live.sort_by(|a, b| (a.created_at, a.key.as_str()).cmp(&(b.created_at, b.key.as_str())));
        Ok(live)
    }

    async fn revoke(&self, user_id: i64, except: Option<&SessionKey>) -> StoreResult<u64> {
        let members: Vec<Vec<u8>> = self
            .query(
                ::redis::cmd("ZRANGE")
                    .arg(self.keys.index(user_id))
                    .arg(0)
                    .arg(-1),
                Resend::Safe,
            )
            .await?;
        let except = except.map(index_member);
        let targets = members
            .iter()
            .filter(|m| Some(m.as_slice()) != except.as_deref())
            .map(|m| from_index_member(m))
            .collect::<StoreResult<Vec<_>>>()?;
        // One script per session (each in its own slot), sent together on the one connection.
        let deleted = futures::future::join_all(targets.iter().map(|k| self.delete_one(k))).await;
        let mut ended = 0;
        for d in deleted {
            ended += u64::from(d?.is_some());
        }
        let targets: Vec<&SessionKey> = targets.iter().collect();
        self.index_remove(user_id, &targets).await?;
        Ok(ended)
    }

    async fn judge(
        &self,
        script: &Lua,
        session: &SessionKey,
        purpose: CodePurpose,
        submitted: (&Email, &str, Millis, u32),
        action: (&str, Option<&SessionKey>, i64),
    ) -> StoreResult<(i64, u32)> {
        let (email, mac, now, max) = submitted;
        let (what, new, marker_ttl) = action;
        let mut call = script.prepare();
        call.key(self.keys.session(session))
            .key(self.keys.marker(session))
            .arg(purpose.as_str())
            .arg(email.as_str())
            .arg(mac)
            .arg(now)
            .arg(max)
            .arg(what)
            .arg(new.map(tag).unwrap_or_default())
            .arg(marker_ttl);
        let (verdict, attempts): (i64, i64) = self.invoke(&call).await?;
        let attempts = u32::try_from(attempts).map_err(|_| corrupt("code"))?;
        Ok((verdict, attempts))
    }

    #[allow(clippy::too_many_arguments)]
    async fn redeem(
        &self,
        session: &SessionKey,
        purpose: CodePurpose,
        email: &Email,
        mac: &str,
        now: Millis,
        max: u32,
        action: Redeem,
        deadline: Instant,
    ) -> StoreResult<Redeemed> {
        let submitted = (email, mac, now, max);
        let new = match action {
            Redeem::UseAttempt => {
                let (verdict, attempts) = self
                    .judge(&REDEEM, session, purpose, submitted, ("attempt", None, 0))
                    .await?;
                return match verdict {
                    0 => Ok(Redeemed::Gone),
                    1 => Ok(Redeemed::AttemptUsed {
                        attempts_left: max.saturating_sub(attempts),
                    }),
                    _ => Err(corrupt("redeem answer")),
                };
            }
            Redeem::SignIn { new } => new,
        };
        // (1) The new session, pending: no one accepts it until the script below commits it.
        let active = encode_session(&new)?;
        let new_ttl = ttl(new.expires_at() - now);
        let pending = format!("{PENDING}{}{SEP}{active}", tag(session));
        let name = self.keys.session(&new.key);
        self.query::<Value>(
            ::redis::cmd("SET")
                .arg(&name)
                .arg(pending)
                .arg("PX")
                .arg(new_ttl),
            Resend::Safe,
        )
        .await?;
        if let Some(u) = &new.user {
            self.index_add(u.id, &new, now).await?;
        }
        // (2) The commit point: code consumed, old session gone, marker written, atomically.
        let (verdict, _) = self
            .judge(
                &REDEEM,
                session,
                purpose,
                submitted,
                ("signin", Some(&new.key), new_ttl),
            )
            .await?;
        if verdict != 2 {
            // Lost (or the code was wrong, used, expired): take back what (1) wrote.
            let _ = self
                .query::<i64>(::redis::cmd("DEL").arg(&name), Resend::Safe)
                .await;
            if let Some(u) = &new.user {
                let _ = self.index_remove(u.id, &[&new.key]).await;
            }
            return Ok(Redeemed::Gone);
        }
        // (3) Signed in whatever happens now: a record left pending is activated when first read.
        let finish = async {
            if self.activate(&new.key).await? {
                self.query::<i64>(
                    ::redis::cmd("DEL").arg(self.keys.marker(session)),
                    Resend::Safe,
                )
                .await?;
            }
            StoreResult::Ok(())
        };
        match tokio::time::timeout_at(deadline, finish).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!("sign-in committed, activation left to the next read: {e}")
            }
            Err(_) => {
                tracing::warn!("sign-in committed, activation left to the next read: timed out")
            }
        }
        Ok(Redeemed::SignedIn)
    }

    /// One counted limit on its own (`HITS` with one key: one slot, so also on a Cluster).
    async fn hit_one(&self, check: &LimitCheck, now: Millis) -> StoreResult<Limit> {
        let mut call = HITS.prepare();
        call.arg(now);
        self.push_limit(&mut call, check, now);
        let (refused, reset_at): (i64, i64) = self.invoke(&call).await?;
        Ok(limit_answer(refused, reset_at, now))
    }

    /// A limit's key and its four arguments, as `limits_lua` reads them.
    fn push_limit(&self, call: &mut ScriptInvocation<'_>, c: &LimitCheck, now: Millis) {
        call.key(self.keys.limit(&c.key)).arg(c.limit);
        if c.count {
            call.arg(now.saturating_add(window_ms(c.window)));
        } else {
            call.arg("");
        }
        match &c.spacing {
            Some(s) if c.count => call.arg(s.name).arg(now.saturating_add(window_ms(s.gap))),
            _ => call.arg("").arg(""),
        };
    }

    async fn peek_one(&self, key: &str, limit: u32, now: Millis) -> StoreResult<Limit> {
        let raw: Option<String> = self
            .query(::redis::cmd("GET").arg(self.keys.limit(key)), Resend::Safe)
            .await?;
        let Some(raw) = raw else {
            return Ok(Limit::Allowed);
        };
        let (count, reset_at) = limit_head(&raw).ok_or_else(|| corrupt("limit"))?;
        Ok(if reset_at > now {
            // At the limit already: one more would be refused.
            limit_from(count + 1, reset_at, limit, now)
        } else {
            Limit::Allowed
        })
    }

    async fn current(&self, session: &SessionKey, now: Millis) -> StoreResult<Option<CodeRecord>> {
        let raw: Option<String> = self
            .query(
                ::redis::cmd("GET").arg(self.keys.session(session)),
                Resend::Safe,
            )
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        let mut best: Option<CodeRecord> = None;
        for (purpose, record) in codes_in(&raw)? {
            let c = decode_code(session, purpose, record)?;
            if c.expires_at > now && best.as_ref().is_none_or(|b| c.created_at > b.created_at) {
                best = Some(c);
            }
        }
        Ok(best)
    }
}

/// `Pdeployment:secret`, one key without TTL (a slot of its own on a Cluster). `SET … NX GET`
/// (Redis 7.0, which `connect` requires) records and answers what was there in one command.
/// Without persistence a restarted Redis has forgotten it: the next check (`/readyz`) records
/// it again, and an instance whose secret differs from the one recorded then says so.
#[async_trait]
impl SecretRecord for RedisStore {
    async fn record_if_absent(&self, fingerprint: &str) -> StoreResult<Option<String>> {
        let cmd = ::redis::cmd("SET")
            .arg(self.keys.deployment_secret())
            .arg(fingerprint)
            .arg("NX")
            .arg("GET")
            .to_owned();
        // Sent twice, the second answers the fingerprint the first recorded: the same verdict.
        bounded(self.op_timeout, self.query(&cmd, Resend::Safe)).await
    }

    async fn replace(&self, fingerprint: &str) -> StoreResult<Option<String>> {
        let cmd = ::redis::cmd("SET")
            .arg(self.keys.deployment_secret())
            .arg(fingerprint)
            .arg("GET")
            .to_owned();
        bounded(self.op_timeout, self.query(&cmd, Resend::Safe)).await
    }

    async fn recorded(&self) -> StoreResult<Option<String>> {
        let cmd = ::redis::cmd("GET")
            .arg(self.keys.deployment_secret())
            .to_owned();
        bounded(self.op_timeout, self.query(&cmd, Resend::Safe)).await
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        bounded(self.op_timeout, self.create(s)).await
    }

    async fn load_session(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<SessionRecord>> {
        bounded(self.op_timeout, self.load(key, now)).await
    }

    async fn touch_session(
        &self,
        key: &SessionKey,
        now: Millis,
        idle_expires_at: Millis,
    ) -> StoreResult<()> {
        // A script, never a plain SET: a session deleted meanwhile stays deleted.
        let mut call = TOUCH.prepare();
        call.key(self.keys.session(key))
            .arg(now)
            .arg(idle_expires_at);
        bounded(self.op_timeout, self.invoke::<i64>(&call))
            .await
            .map(drop)
    }

    async fn delete_session(&self, key: &SessionKey) -> StoreResult<bool> {
        bounded(self.op_timeout, self.delete(key)).await
    }

    async fn list_user_sessions(
        &self,
        user_id: i64,
        now: Millis,
    ) -> StoreResult<Vec<SessionRecord>> {
        bounded(self.op_timeout, self.list(user_id, now)).await
    }

    async fn revoke_user_sessions(
        &self,
        user_id: i64,
        except: Option<&SessionKey>,
    ) -> StoreResult<u64> {
        bounded(self.op_timeout, self.revoke(user_id, except)).await
    }

    /// Kept in the session's record: a session gone meanwhile gets no code (it could never be
    /// entered), which is not an error.
    async fn issue_code(&self, c: &CodeRecord) -> StoreResult<()> {
        bounded(self.op_timeout, self.put_code(c)).await
    }

    /// A new visitor's session and code are one record, one `SET`. A session with a user takes
    /// the general path: it also enters its user's index.
    async fn create_session_with_code(&self, s: &SessionRecord, c: &CodeRecord) -> StoreResult<()> {
        if s.user.is_some() || c.session != s.key {
            self.create_session(s).await?;
            return self.issue_code(c).await;
        }
        let cmd = ::redis::cmd("SET")
            .arg(self.keys.session(&s.key))
            .arg(encode_session_with_code(s, c)?)
            .arg("PX")
            .arg(ttl(s.expires_at() - s.last_seen_at))
            .to_owned();
        bounded(self.op_timeout, self.query::<Value>(&cmd, Resend::Safe))
            .await
            .map(drop)
    }

    async fn check_code(
        &self,
        session: &SessionKey,
        purpose: CodePurpose,
        email: &Email,
        mac: &str,
        now: Millis,
        max_attempts: u32,
    ) -> StoreResult<CodeCheck> {
        let submitted = (email, mac, now, max_attempts);
        let (verdict, attempts) = bounded(
            self.op_timeout,
            self.judge(&CHECK, session, purpose, submitted, ("check", None, 0)),
        )
        .await?;
        Ok(match verdict {
            0 => CodeCheck::Missing,
            1 => CodeCheck::Expired,
            2 => CodeCheck::Dead,
            3 => CodeCheck::Right,
            4 => CodeCheck::Wrong {
                attempts_left: max_attempts.saturating_sub(attempts),
            },
            _ => return Err(corrupt("check answer")),
        })
    }

    async fn redeem_code(
        &self,
        session: &SessionKey,
        purpose: CodePurpose,
        email: &Email,
        mac: &str,
        now: Millis,
        max_attempts: u32,
        action: Redeem,
    ) -> StoreResult<Redeemed> {
        let deadline = Instant::now() + self.op_timeout;
        let redeem = self.redeem(
            session,
            purpose,
            email,
            mac,
            now,
            max_attempts,
            action,
            deadline,
        );
        match tokio::time::timeout_at(deadline, redeem).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable("timed out".into())),
        }
    }

    async fn current_code(
        &self,
        session: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<CodeRecord>> {
        bounded(self.op_timeout, self.current(session, now)).await
    }

    async fn hit_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Millis,
    ) -> StoreResult<Limit> {
        let check = LimitCheck::hit(key, limit, window);
        bounded(self.op_timeout, self.hit_one(&check, now)).await
    }

    async fn peek_limit(&self, key: &str, limit: u32, now: Millis) -> StoreResult<Limit> {
        bounded(self.op_timeout, self.peek_one(key, limit, now)).await
    }

    async fn hit_limits(&self, checks: &[LimitCheck], now: Millis) -> StoreResult<Limit> {
        if checks.is_empty() {
            return Ok(Limit::Allowed);
        }
        if self.is_cluster() {
            // The limit keys of one request lie in different slots, where one script cannot
            // reach (docs/operations.md, "Limits across slots"): the same checks one by one, in order, stopping at
            // the first refusal. Same answers and counts as `HITS`, but not atomic: a concurrent
            // request may count between two checks (the counters stay exact, a limit may let
            // one more in at its edge), and a failure midway leaves the earlier hits counted.
            return bounded(self.op_timeout, async {
                for c in checks {
                    let verdict = if c.count {
                        self.hit_one(c, now).await?
                    } else {
                        self.peek_one(&c.key, c.limit, now).await?
                    };
                    if verdict != Limit::Allowed {
                        return Ok(verdict);
                    }
                }
                Ok(Limit::Allowed)
            })
            .await;
        }
        let mut call = HITS.prepare();
        call.arg(now);
        for c in checks {
            self.push_limit(&mut call, c, now);
        }
        let (refused, reset_at): (i64, i64) = bounded(self.op_timeout, self.invoke(&call)).await?;
        Ok(limit_answer(refused, reset_at, now))
    }

    async fn ping(&self) -> StoreResult<()> {
        bounded(
            self.op_timeout,
            self.query::<String>(&::redis::cmd("PING"), Resend::Safe),
        )
        .await
        .map(drop)
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
enum Resend {
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

/// A session's score in its user's index: its absolute expiry in whole seconds, rounded up (a
/// number of seconds takes 4 bytes less than one of milliseconds in the index's listpack).
fn index_score(absolute_expires_at: Millis) -> i64 {
    absolute_expires_at.div_euclid(1000) + i64::from(absolute_expires_at.rem_euclid(1000) != 0)
}

/// What `HITS` and `CODE_REQUEST` answer: {0, 0}, or the refusing limit's position and its
/// window's end.
fn limit_answer(refused: i64, reset_at: i64, now: Millis) -> Limit {
    if refused > 0 {
        Limit::Limited {
            retry_after_ms: (reset_at - now).max(1),
        }
    } else {
        Limit::Allowed
    }
}

fn window_ms(window: Duration) -> i64 {
    i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 2)
}

fn limit_from(count: i64, reset_at: i64, limit: u32, now: Millis) -> Limit {
    if count > i64::from(limit) {
        Limit::Limited {
            retry_after_ms: (reset_at - now).max(1),
        }
    } else {
        Limit::Allowed
    }
}

/// Down, unreachable, too slow, loading, failing over: 503. Anything else is a bug or corrupt
/// data: 500.
fn err(e: RedisError) -> StoreError {
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

fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("corrupt {what} record in Redis"))
}

/// Never a TTL that is negative or so short that a key dies while still being written.
fn ttl(ms: i64) -> i64 {
    ms.max(MIN_TTL_MS)
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
