//! The life of a server: [`build`] (settings → stores → [`Core`] → router), [`start`] (check the
//! deployment's secret, listen, start the HTTP threads of [`crate::threads`] and the background
//! tasks: mail worker, sweeper) and [`Running::shutdown`] (SIGTERM drains in-flight requests).
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::crypto::Secret;
use crate::flows::{Core, CoreParts};
use crate::http::{cookies::CookieSettings, App, AppInner, AppState, HttpSettings};
use crate::mail::queue::{MailCourier, Worker};
use crate::mail::{outbox::Outbox, Transport};
use crate::passwords::Hasher;
use crate::policy::Policy;
use crate::store::timed::{Timed, TimedPing};
use crate::store::{
    mysql::MySqlStore, redis::RedisStore, sql::pg_store::PostgresStore, sqlite::SqliteStore,
    CodeRequestWrites, CodeStore, DeadLetters, Health, LimitStore, Outbox as OutboxStore,
    SecretRecord, SessionStore, SigningKeyRecord, StoreHealth, Stores, UserStore,
};
use crate::threads::{HttpThreads, ListenError};
use crate::webhooks::deliver::Sender;
use crate::webhooks::secret::WebhookSecret;
use crate::webhooks::worker::WebhookCourier;
use crate::webhooks::Subscribers;

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

impl From<ListenError> for StartError {
    fn from(ListenError { addr, source }: ListenError) -> Self {
        StartError::Listen { addr, source }
    }
}

/// Webhook attempts in progress at once: a receiver that hangs holds one slot per delivery.
const WEBHOOK_CONCURRENCY: usize = 16;
/// A webhook worker woken by a new event claims what arrived within this (`Worker::gather`).
const WEBHOOK_GATHER: Duration = Duration::from_millis(50);

/// The SQL database: users always; sessions, limits and the mail queue when there is no Redis.
#[derive(Clone)]
pub enum SqlStore {
    Sqlite(SqliteStore),
    MySql(MySqlStore),
    Postgres(PostgresStore),
}

impl SqlStore {
    pub async fn open(url: &str, timeout: Duration) -> Result<Self, crate::store::StoreError> {
        if url.starts_with("sqlite:") {
            Ok(SqlStore::Sqlite(SqliteStore::open(url, timeout).await?))
        } else if is_postgres(url) {
            Ok(SqlStore::Postgres(PostgresStore::open(url, timeout).await?))
        } else {
            Ok(SqlStore::MySql(MySqlStore::open(url, timeout).await?))
        }
    }

    /// Deletes expired rows (sessions, codes and limits kept in SQL; delivered mail).
    pub async fn sweep(&self, now: crate::clock::Millis) -> Result<(), crate::store::StoreError> {
        match self {
            SqlStore::Sqlite(s) => s.sweep(now).await,
            SqlStore::MySql(s) => s.sweep(now).await,
            SqlStore::Postgres(s) => s.sweep(now).await,
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
                + DeadLetters
                + SecretRecord
                + SigningKeyRecord
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
                dead_letters: Arc::new(s.clone()),
                deployment: Arc::new(s.clone()),
                signing_keys: Arc::new(s.clone()),
                health: Arc::new(s.clone()),
            }
        }
        match self {
            SqlStore::Sqlite(s) => of(s),
            SqlStore::MySql(s) => of(s),
            SqlStore::Postgres(s) => of(s),
        }
    }

    /// The outbox handle serving webhook deliveries.
    fn webhook_outbox(&self) -> Arc<dyn OutboxStore> {
        match self {
            SqlStore::Sqlite(s) => Arc::new(s.webhook_outbox()),
            SqlStore::MySql(s) => Arc::new(s.webhook_outbox()),
            SqlStore::Postgres(s) => Arc::new(s.webhook_outbox()),
        }
    }
}

/// `postgres://` and `postgresql://`, the two schemes libpq accepts.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// What the SQL database serves, as the traits the app uses.
struct SqlParts {
    sessions: Arc<dyn SessionStore>,
    codes: Arc<dyn CodeStore>,
    limits: Arc<dyn LimitStore>,
    users: Arc<dyn UserStore>,
    outbox: Arc<dyn OutboxStore>,
    dead_letters: Arc<dyn DeadLetters>,
    deployment: Arc<dyn SecretRecord>,
    signing_keys: Arc<dyn SigningKeyRecord>,
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
            } else if is_postgres(settings.database_url.expose()) {
                "the PostgreSQL database"
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
        // `store/redis/outbox.rs`), and a code request writes all of it in one step.
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
                webhooks: Arc::new(redis.webhook_outbox()),
                dead_letters: Arc::new(redis.clone()),
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
                signing_keys: sql_parts.signing_keys,
            }
        }
        None => Stores {
            sessions: Arc::new(Timed(sql_parts.sessions)),
            codes: Arc::new(Timed(sql_parts.codes)),
            limits: Arc::new(Timed(sql_parts.limits)),
            users,
            outbox: Arc::new(Timed(sql_parts.outbox)),
            webhooks: sql.webhook_outbox(),
            dead_letters: sql_parts.dead_letters,
            code_request: None,
            health: StoreHealth {
                sessions: Arc::new(TimedPing {
                    what: "sessions",
                    store: sql_parts.health,
                }),
                users: users_health,
            },
            deployment: sql_parts.deployment,
            signing_keys: sql_parts.signing_keys,
        },
    };
    Ok((stores, sql))
}

// ---- build: settings → stores → Core → router ----

/// Everything built from the settings, before anything listens.
pub struct Built {
    pub core: Arc<Core>,
    /// The router and its middleware, served by every HTTP thread.
    pub app: App,
    /// Delivers the queued mail, once started.
    worker: Worker,
    /// Delivers the queued webhooks, when a URL is configured.
    webhook_worker: Option<Worker>,
    /// Deletes what has expired from the SQL database, once started.
    sweeper: Sweeper,
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
    // The code requests queue mail and wake the worker; the worker opens what they sealed.
    let mail_wake = Arc::new(Notify::new());
    let mail_seal = secret.mail_seal();
    let worker = Worker {
        queue: stores.outbox.clone(),
        courier: Arc::new(MailCourier {
            transport: transport.clone(),
            from: settings.mail_from.clone(),
            clock: clock.clone(),
            seal: mail_seal.clone(),
        }),
        what: "mail",
        clock: clock.clone(),
        wake: mail_wake.clone(),
        concurrency: settings.mail_concurrency,
        attempt_deadline: settings.smtp_timeout,
        store_timeout: policy.store_timeout,
        gather: Duration::ZERO,
    };
    // Webhooks (SPEC §7): their own worker over their part of the outbox, so a receiver that
    // hangs holds only its own deliveries. Without a URL no event is written and no secret made.
    let webhook_wake = Arc::new(Notify::new());
    let subscribers = Subscribers::new(
        settings
            .webhook_urls
            .iter()
            .map(|u| u.expose().to_owned())
            .collect(),
    );
    let webhook_worker = if subscribers.is_empty() {
        None
    } else {
        let secret = WebhookSecret::load_or_create(&settings.webhook_secret_file)
            .map_err(|e| StartError::Config(e.to_string()))?;
        let sender = Sender::new(secret, settings.webhook_timeout).map_err(StartError::Config)?;
        Some(Worker {
            queue: stores.webhooks.clone(),
            courier: Arc::new(WebhookCourier {
                sender,
                clock: clock.clone(),
            }),
            what: "webhook",
            clock: clock.clone(),
            wake: webhook_wake.clone(),
            concurrency: WEBHOOK_CONCURRENCY,
            attempt_deadline: settings.webhook_timeout,
            store_timeout: policy.store_timeout,
            gather: WEBHOOK_GATHER,
        })
    };
    let sweeper = Sweeper {
        sql,
        clock: clock.clone(),
    };
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
            max_age_secs: policy.session_absolute.as_secs(),
        },
        dev_outbox,
    };
    let tokens = crate::tokens::AccessTokens::new(
        settings.tokens.clone(),
        secret.clone(),
        stores.signing_keys.clone(),
    );
    let core = Arc::new(Core::new(CoreParts {
        tokens,
        subscribers,
        webhook_wake,
        stores,
        clock,
        secret,
        mail_seal,
        policy,
        hasher,
        passwordless: settings.passwordless,
        mail_wake,
        transport,
        blocked_domains: settings
            .blocked_domains
            .iter()
            .cloned()
            .collect::<HashSet<_>>(),
    }));
    let app = App::new(AppState::new(AppInner {
        core: core.clone(),
        http,
        metrics: crate::metrics::handle(),
    }));
    Ok(Built {
        core,
        app,
        worker,
        webhook_worker,
        sweeper,
    })
}

/// Deletes expired rows from the SQL database every minute (`SqlStore::sweep`).
struct Sweeper {
    sql: SqlStore,
    clock: Arc<dyn Clock>,
}

impl Sweeper {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.sql.sweep(self.clock.now_ms()).await {
                tracing::warn!(error = %e, "sweep failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

// ---- start: check, listen, spawn the threads and background tasks ----

/// A running server and its background tasks.
pub struct Running {
    pub addr: SocketAddr,
    pub core: Arc<Core>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

pub async fn start(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    policy: Policy,
) -> Result<Running, StartError> {
    let built = build(settings, clock, policy).await?;
    check_secret(&built.core, settings).await?;
    let admission = admission(settings);
    let http = HttpThreads::bind(settings.listen, settings.http_threads)?;
    let addr = http.addr;
    built.core.listening_at(addr);
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = vec![
        tokio::spawn(built.worker.run(stop_rx.clone())),
        tokio::spawn(built.sweeper.run(stop_rx.clone())),
    ];
    if let Some(w) = built.webhook_worker {
        tasks.push(tokio::spawn(w.run(stop_rx.clone())));
    }
    tasks.extend(http.serve(built.app, admission, &stop_rx).await?);
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
    use crate::deployment::Verdict;
    let ours = core.secret_fingerprint();
    match core
        .check_deployment_secret()
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

/// The connection limits (SPEC §3 Robustness), the open-files limit raised first.
fn admission(settings: &Settings) -> Arc<crate::http::server::Admission> {
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
    crate::http::server::Admission::new(rules)
}

// ---- shutdown: drain ----

impl Running {
    /// Stops accepting, drains in-flight requests, stops the workers.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
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
