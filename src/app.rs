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
use crate::http::{cookies::CookieSettings, AppState, HttpSettings};
use crate::mail::{outbox::Outbox, queue::Worker, Transport};
use crate::passwords::Hasher;
use crate::policy::Policy;
use crate::store::{sqlite::SqliteStore, Stores};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("cannot open the store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Secret(#[from] crate::crypto::SecretError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Everything built from the settings, before anything listens.
pub struct Built {
    pub core: Arc<Core>,
    pub state: AppState,
    pub sqlite: SqliteStore,
    pub transport: Transport,
}

pub async fn build(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    policy: Policy,
) -> Result<Built, StartError> {
    let secret = Secret::load_or_create(&settings.secret_file)?;
    let sqlite = SqliteStore::open(&settings.database_url, policy.store_timeout).await?;
    let stores = Stores {
        sessions: Arc::new(sqlite.clone()),
        users: Arc::new(sqlite.clone()),
        mail: Arc::new(sqlite.clone()),
    };
    let transport = match &settings.smtp_url {
        Some(url) => Transport::smtp(url, Duration::from_secs(10)).map_err(StartError::Config)?,
        None => Transport::Outbox(Outbox::new(settings.data_dir.join("outbox"))),
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let hasher = Hasher::new(cpus * 2).map_err(|e| StartError::Config(e.to_string()))?;
    let core = Arc::new(Core {
        stores,
        clock,
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
    let state = AppState {
        core: core.clone(),
        http: Arc::new(http),
        metrics: crate::metrics::handle(),
        transport: transport.clone(),
    };
    Ok(Built {
        core,
        state,
        sqlite,
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
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: settings.listen,
        source,
    })?;
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let worker = Worker {
        queue: built.core.stores.mail.clone(),
        transport: built.transport.clone(),
        from: settings.mail_from.clone(),
        clock: clock.clone(),
        wake: built.core.mail_wake.clone(),
    };
    tasks.push(tokio::spawn(worker.run(stop_rx.clone())));

    let sqlite = built.sqlite.clone();
    let mut sweep_stop = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            if let Err(e) = sqlite.sweep(clock.now_ms()).await {
                tracing::warn!(error = %e, "sweep failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = sweep_stop.changed() => return,
            }
        }
    }));

    let app = crate::http::router(built.state.clone());
    let mut serve_stop = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        let result = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = serve_stop.changed().await;
        })
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "server stopped with an error");
        }
    }));
    Ok(Running {
        addr,
        core: built.core,
        stop,
        tasks,
    })
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
