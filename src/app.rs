//! Builds the state and the router from [`Settings`], runs the server with its background tasks
//! (mail worker, sweeper), and stops cleanly: SIGTERM drains in-flight requests.
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::crypto::Secret;
use crate::flows::Core;
use crate::http::{cookies::CookieSettings, AppInner, AppState, HttpSettings};
use crate::mail::{outbox::Outbox, queue::Worker, Transport};
use crate::passwords::Hasher;
use crate::policy::Policy;
use crate::store::timed::{Timed, TimedPing};
use crate::store::{
    mysql::MySqlStore, redis::RedisStore, sqlite::SqliteStore, CodeRequestWrites, CodeStore,
    Health, LimitStore, Outbox as OutboxStore, SecretRecord, SessionStore, StoreHealth, Stores,
    UserStore,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("cannot open the store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// A store named by its setting, its URL shown redacted (SPEC §3 Robustness).
    #[error("cannot open {what} at {url} ({setting}): {source}; check that the server runs and that the URL, user and password are right")]
    StoreOpen {
        what: &'static str,
        setting: &'static str,
        url: String,
        source: crate::store::StoreError,
    },
    #[error(transparent)]
    Secret(#[from] crate::crypto::SecretError),
    /// Another secret is the deployment's (`crate::deployment`).
    #[error("{}", crate::deployment::mismatch_message(ours, recorded, secret_file))]
    SecretMismatch {
        ours: String,
        recorded: String,
        secret_file: std::path::PathBuf,
    },
    #[error("cannot compare this instance's secret with the deployment's: {0}")]
    SecretCheck(crate::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The SQL database: users always; sessions, limits and the mail queue when there is no Redis.
#[derive(Clone)]
pub enum SqlStore {
    Sqlite(SqliteStore),
    MySql(MySqlStore),
}

impl SqlStore {
    pub async fn open(url: &str, timeout: Duration) -> Result<Self, crate::store::StoreError> {
        if url.starts_with("sqlite:") {
            Ok(SqlStore::Sqlite(SqliteStore::open(url, timeout).await?))
        } else {
            Ok(SqlStore::MySql(MySqlStore::open(url, timeout).await?))
        }
    }

    /// Deletes expired rows (sessions, codes and limits kept in SQL; delivered mail).
    pub async fn sweep(&self, now: crate::clock::Millis) -> Result<(), crate::store::StoreError> {
        match self {
            SqlStore::Sqlite(s) => s.sweep(now).await,
            SqlStore::MySql(s) => s.sweep(now).await,
        }
    }

    fn parts(&self) -> SqlParts {
        fn of<S>(s: &S) -> SqlParts
        where
            S: SessionStore
                + CodeStore
                + LimitStore
                + UserStore
                + OutboxStore
                + SecretRecord
                + Health
                + Clone
                + 'static,
        {
            SqlParts {
                sessions: Arc::new(s.clone()),
                codes: Arc::new(s.clone()),
                limits: Arc::new(s.clone()),
                users: Arc::new(s.clone()),
                outbox: Arc::new(s.clone()),
                deployment: Arc::new(s.clone()),
                health: Arc::new(s.clone()),
            }
        }
        match self {
            SqlStore::Sqlite(s) => of(s),
            SqlStore::MySql(s) => of(s),
        }
    }
}

/// What the SQL database serves, as the traits the app uses.
struct SqlParts {
    sessions: Arc<dyn SessionStore>,
    codes: Arc<dyn CodeStore>,
    limits: Arc<dyn LimitStore>,
    users: Arc<dyn UserStore>,
    outbox: Arc<dyn OutboxStore>,
    deployment: Arc<dyn SecretRecord>,
    health: Arc<dyn Health>,
}

/// Opens every store the settings name. Sessions, codes, limits and the mail queue go to Redis
/// when it is configured, else to the SQL database.
pub async fn open_stores(
    settings: &Settings,
    timeout: Duration,
) -> Result<(Stores, SqlStore), StartError> {
    let sql = SqlStore::open(settings.database_url.expose(), timeout)
        .await
        .map_err(|source| StartError::StoreOpen {
            what: if settings.database_url.starts_with("sqlite:") {
                "the SQLite database"
            } else {
                "the MySQL/MariaDB database"
            },
            setting: "--database-url / MAILCODE_DATABASE_URL",
            url: settings.database_url.to_string(),
            source,
        })?;
    let sql_parts = sql.parts();
    let users: Arc<dyn UserStore> = Arc::new(Timed(sql_parts.users.clone()));
    let users_health = Arc::new(TimedPing {
        what: "users",
        store: sql_parts.health.clone(),
    });
    let stores = match &settings.redis_url {
        // With Redis, the outbox is there too, next to the codes its mails carry (see
        // `store/redis/mail.rs`), and a code request writes all of it in one step.
        Some(url) => {
            let redis = RedisStore::connect(url.expose(), &settings.redis_prefix, timeout)
                .await
                .map_err(|source| StartError::StoreOpen {
                    what: "Redis",
                    setting: "--redis-url / MAILCODE_REDIS_URL",
                    url: url.to_string(),
                    source,
                })?;
            let sessions: Arc<dyn SessionStore> = Arc::new(redis.clone());
            let codes: Arc<dyn CodeStore> = Arc::new(redis.clone());
            let limits: Arc<dyn LimitStore> = Arc::new(redis.clone());
            let outbox: Arc<dyn OutboxStore> = Arc::new(redis.clone());
            let code_request: Arc<dyn CodeRequestWrites> = Arc::new(redis.clone());
            Stores {
                sessions: Arc::new(Timed(sessions)),
                codes: Arc::new(Timed(codes)),
                limits: Arc::new(Timed(limits)),
                users,
                outbox: Arc::new(Timed(outbox)),
                code_request: Some(Arc::new(Timed(code_request))),
                health: StoreHealth {
                    sessions: Arc::new(TimedPing {
                        what: "sessions",
                        store: Arc::new(redis.clone()),
                    }),
                    users: users_health,
                },
                // Next to the codes and mail the secret keys and seals.
                deployment: Arc::new(redis),
            }
        }
        None => Stores {
            sessions: Arc::new(Timed(sql_parts.sessions)),
            codes: Arc::new(Timed(sql_parts.codes)),
            limits: Arc::new(Timed(sql_parts.limits)),
            users,
            outbox: Arc::new(Timed(sql_parts.outbox)),
            code_request: None,
            health: StoreHealth {
                sessions: Arc::new(TimedPing {
                    what: "sessions",
                    store: sql_parts.health,
                }),
                users: users_health,
            },
            deployment: sql_parts.deployment,
        },
    };
    Ok((stores, sql))
}

/// Everything built from the settings, before anything listens.
pub struct Built {
    pub core: Arc<Core>,
    pub state: AppState,
    pub sql: SqlStore,
    pub transport: Transport,
}

pub async fn build(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    policy: Policy,
) -> Result<Built, StartError> {
    let secret = Secret::load_or_create(&settings.secret_file)?;
    let (stores, sql) = open_stores(settings, policy.store_timeout).await?;
    let transport = match &settings.smtp_url {
        Some(url) => Transport::smtp(url, settings.smtp_timeout, settings.mail_concurrency)
            .map_err(StartError::Config)?,
        None => Transport::Outbox(Outbox::new(settings.data_dir.join("outbox"))),
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let hasher = Hasher::new(cpus * 2).map_err(|e| StartError::Config(e.to_string()))?;
    let core = Arc::new(Core {
        stores,
        clock,
        mail_seal: secret.mail_seal(),
        secret,
        hasher,
        passwordless: settings.passwordless,
        mail_wake: Arc::new(Notify::new()),
        blocked_domains: settings
            .blocked_domains
            .iter()
            .cloned()
            .collect::<HashSet<_>>(),
        policy,
    });
    let dev_outbox = match &transport {
        Transport::Outbox(o) if settings.listen.ip().is_loopback() => Some(o.clone()),
        _ => None,
    };
    let http = HttpSettings {
        cors_origins: settings.cors_origins.clone(),
        trusted_proxies: settings.trust_proxy.clone(),
        cookie: CookieSettings {
            same_site: settings.cookie_same_site,
            domain: settings.cookie_domain.clone(),
            max_age_secs: core.policy.session_absolute.as_secs(),
        },
        dev_outbox,
    };
    let state = AppState::new(AppInner {
        core: core.clone(),
        http,
        metrics: crate::metrics::handle(),
        transport: transport.clone(),
    });
    Ok(Built {
        core,
        state,
        sql,
        transport,
    })
}

/// A running server and its background tasks.
pub struct Running {
    pub addr: SocketAddr,
    pub core: Arc<Core>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, drains in-flight requests, stops the workers.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

pub async fn start(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    policy: Policy,
) -> Result<Running, StartError> {
    let built = build(settings, clock.clone(), policy).await?;
    check_secret(&built.core, settings).await?;
    let open_files = crate::http::server::raise_open_files_limit();
    let rules = crate::http::server::ConnectionRules {
        header_timeout: settings.header_timeout,
        max_connections: settings
            .max_connections
            .unwrap_or_else(|| crate::http::server::default_max_connections(open_files)),
        max_per_ip: settings.max_connections_per_ip,
        trusted_proxies: settings.trust_proxy.clone(),
    };
    tracing::info!(
        open_files,
        max_connections = rules.max_connections,
        max_connections_per_ip = rules.max_per_ip,
        header_timeout_secs = rules.header_timeout.as_secs_f64(),
        "connection limits"
    );
    let admission = crate::http::server::Admission::new(rules);
    let http = HttpThreads::bind(settings.listen, settings.http_threads)?;
    let addr = http.addr;
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let worker = Worker {
        queue: built.core.stores.outbox.clone(),
        transport: built.transport.clone(),
        from: settings.mail_from.clone(),
        clock: clock.clone(),
        wake: built.core.mail_wake.clone(),
        seal: built.core.mail_seal.clone(),
        concurrency: settings.mail_concurrency,
        attempt_deadline: settings.smtp_timeout,
        store_timeout: built.core.policy.store_timeout,
    };
    tasks.push(tokio::spawn(worker.run(stop_rx.clone())));

    let sql = built.sql.clone();
    let mut sweep_stop = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            if let Err(e) = sql.sweep(clock.now_ms()).await {
                tracing::warn!(error = %e, "sweep failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = sweep_stop.changed() => return,
            }
        }
    }));

    let app = crate::http::App::new(built.state.clone());
    tasks.extend(http.serve(app, admission, &stop_rx).await?);
    Ok(Running {
        addr,
        core: built.core,
        stop,
        tasks,
    })
}

/// Refuses to start with a secret other than the deployment's (`crate::deployment`), before
/// anything listens: better no instance than one that refuses every code the others sent.
async fn check_secret(core: &Core, settings: &Settings) -> Result<(), StartError> {
    use crate::deployment::{check, Verdict};
    let ours = core.secret.fingerprint();
    match check(
        &*core.stores.deployment,
        &core.secret,
        core.policy.store_timeout,
    )
    .await
    .map_err(StartError::SecretCheck)?
    {
        Verdict::Recorded => {
            tracing::info!(
                fingerprint = %ours,
                "this instance's secret is now the deployment's: every other instance must use the same secret file"
            );
            Ok(())
        }
        Verdict::Same => {
            tracing::debug!(fingerprint = %ours, "the secret is the deployment's");
            Ok(())
        }
        Verdict::Mismatch { recorded } => Err(StartError::SecretMismatch {
            ours,
            recorded,
            secret_file: settings.secret_file.clone(),
        }),
    }
}

/// How often an HTTP thread's idle timer fires (`keep_a_timer_pending`): shorter than every
/// timeout a request sets (the store's, 1.2 s by default, and the request's, 10 s).
const TIMER_ANCHOR: Duration = Duration::from_millis(250);

/// Keeps a timer due within [`TIMER_ANCHOR`] registered on an HTTP thread at all times. Tokio's
/// timer driver writes its runtime's eventfd (a `write` system call, then a wake-up of
/// `epoll_wait`) whenever a timer is registered that is due before the earliest one it knew of
/// when it last looked at its wheel, and always when that wheel was empty then. A request sets
/// two timeouts (the request's and the store operation's); with none pending between bursts,
/// that was 0.55 eventfd `write`s per `GET /api/me` under load (`perf stat`, docs/benchmarks.md). With
/// this timer pending, every request's timeout is due later than the earliest known one, and
/// registering it writes nothing. It costs four wake-ups a second on an idle thread.
async fn keep_a_timer_pending() {
    let mut tick = tokio::time::interval(TIMER_ANCHOR);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// The threads that serve HTTP: each runs its own single-threaded runtime with its own listening
/// socket on the same address (`SO_REUSEPORT`: the kernel spreads new connections over them), so
/// a request is parsed, handled and answered on one thread, with that thread's own Redis
/// connection (`store/redis/per_thread.rs`). Tokio's multi-threaded runtime moved requests and
/// Redis replies between its workers: up to 0.3 thread wake-ups per `GET /api/me`, and a rate
/// that switched between two levels run to run (docs/benchmarks.md, finding 1). SQLite account
/// lookups are batched on the thread too (`store/sqlite.rs`); everything else (mail worker,
/// sweeper, SQL writes) stays on the main runtime.
struct HttpThreads {
    addr: SocketAddr,
    /// Listening and non-blocking, one per thread.
    listeners: Vec<std::net::TcpListener>,
}

impl HttpThreads {
    /// Binds `threads` sockets to `listen`. A plain bind comes first, so that an address
    /// another process (a second mailcode among them) listens on is refused as before instead
    /// of being shared with it; it also resolves port 0. That first socket never listens: a
    /// client that connected to it would be cut off when it closes.
    fn bind(listen: SocketAddr, threads: usize) -> Result<Self, StartError> {
        let fail = |addr, source| StartError::Listen { addr, source };
        let socket = |addr: SocketAddr| {
            if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            }
        };
        let addr = socket(listen)
            .and_then(|probe| {
                // As a listener's bind: connections of an earlier run still in TIME_WAIT on
                // this port do not count, a listening socket does.
                probe.set_reuseaddr(true)?;
                probe.bind(listen)?;
                probe.local_addr()
            })
            .map_err(|e| fail(listen, e))?;
        let mut listeners = Vec::with_capacity(threads);
        for _ in 0..threads.max(1) {
            let listener = socket(addr)
                .and_then(|s| {
                    s.set_reuseaddr(true)?;
                    s.set_reuseport(true)?;
                    s.bind(addr)?;
                    // `listen` registers the socket with the calling runtime: it is taken out
                    // of it again for the thread's own.
                    s.listen(1024)?.into_std()
                })
                .map_err(|e| fail(addr, e))?;
            listeners.push(listener);
        }
        Ok(HttpThreads { addr, listeners })
    }

    /// Starts the threads once each has its runtime; each returned task ends when its thread
    /// has drained its connections after `stop`.
    async fn serve(
        self,
        app: crate::http::App,
        admission: Arc<crate::http::server::Admission>,
        stop: &watch::Receiver<bool>,
    ) -> Result<Vec<JoinHandle<()>>, StartError> {
        let addr = self.addr;
        let fail = move |source| StartError::Listen { addr, source };
        let mut done = Vec::new();
        for (i, listener) in self.listeners.into_iter().enumerate() {
            let app = app.clone();
            let admission = admission.clone();
            let stop = stop.clone();
            let (ready, ready_rx) = tokio::sync::oneshot::channel::<std::io::Result<()>>();
            let (finished, finished_rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("mailcode-http-{i}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    crate::store::redis::own_connections_on_this_thread();
                    runtime.block_on(async move {
                        let listener = match tokio::net::TcpListener::from_std(listener) {
                            Ok(l) => l,
                            Err(e) => {
                                let _ = ready.send(Err(e));
                                return;
                            }
                        };
                        let _ = ready.send(Ok(()));
                        tokio::spawn(keep_a_timer_pending());
                        crate::http::server::serve(listener, app, admission, stop).await;
                    });
                    drop(runtime);
                    let _ = finished.send(());
                })
                .map_err(fail)?;
            ready_rx
                .await
                .unwrap_or_else(|_| Err(std::io::Error::other("the HTTP thread ended")))
                .map_err(fail)?;
            done.push(tokio::spawn(async move {
                let _ = finished_rx.await;
            }));
        }
        Ok(done)
    }
}

/// `mailcode serve`: run until SIGTERM or Ctrl-C.
pub async fn serve(settings: Settings) -> Result<(), StartError> {
    let running = start(&settings, Arc::new(SystemClock), Policy::default()).await?;
    tracing::info!("mailcode listening on http://{}", running.addr);
    if settings.smtp_url.is_none() {
        let where_ = settings.data_dir.join("outbox");
        if settings.listen.ip().is_loopback() {
            tracing::warn!(
                "MAIL IS NOT REALLY SENT: codes go to the development outbox {} and http://{}/dev/outbox; use --smtp-url to send mail",
                where_.display(),
                running.addr
            );
        } else {
            tracing::warn!(
                "MAIL IS NOT REALLY SENT: codes go to {}; use --smtp-url to send mail",
                where_.display()
            );
        }
    }
    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
