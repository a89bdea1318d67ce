//! One [`Settings`] value: command-line flags, then `MAILCODE_*` variables (clap reads both),
//! then an optional `mailcode.toml`, then defaults. Validated once: a bad setting stops start-up
//! with a message naming the setting and what is allowed.
use clap::Args;
use ipnet::IpNet;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::http::cookies::SameSite;
use crate::secret_url::SecretUrl;

/// Flags and variables; `None` means "not given here", so the toml file and defaults can apply.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:3000]
    #[arg(long, env = "MAILCODE_LISTEN")]
    pub listen: Option<String>,
    /// `sqlite://…`, `mysql://…` or `postgres://…` (default `sqlite://DATA_DIR/mailcode.db`)
    #[arg(long, env = "MAILCODE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretUrl>,
    /// redis://… for sessions, codes, rate limits and the mail queue (default: in the database)
    #[arg(long, env = "MAILCODE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<SecretUrl>,
    /// Prefix of every Redis key, to share one Redis between deployments [default: mailcode:]
    #[arg(long, env = "MAILCODE_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// smtp://user:pass@host:port, smtps://…, smtp://…?tls=required (default: the development outbox)
    #[arg(long, env = "MAILCODE_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<SecretUrl>,
    /// Seconds one delivery attempt may take as a whole (connect, greeting, TLS, AUTH, MAIL,
    /// RCPT, DATA), enforced around the SMTP client [default: 30]
    #[arg(long, env = "MAILCODE_SMTP_TIMEOUT")]
    pub smtp_timeout: Option<u64>,
    /// Mails delivered at the same time, each over its own SMTP connection [default: 8]
    #[arg(long, env = "MAILCODE_MAIL_CONCURRENCY")]
    pub mail_concurrency: Option<usize>,
    /// The From of code mails (default: `mailcode <no-reply@localhost>`)
    #[arg(long, env = "MAILCODE_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// An origin allowed to call the API with credentials (repeatable), e.g. `http://127.0.0.1:5173`
    #[arg(
        long = "cors-origin",
        env = "MAILCODE_CORS_ORIGINS",
        value_delimiter = ','
    )]
    #[serde(default, rename = "cors-origins")]
    pub cors_origins: Vec<String>,
    /// CIDRs of proxies whose X-Forwarded-For/-Proto are believed (comma separated)
    #[arg(long, env = "MAILCODE_TRUST_PROXY", value_delimiter = ',')]
    #[serde(default)]
    pub trust_proxy: Vec<String>,
    /// The server secret (default `DATA_DIR/secret`, generated on first run, mode 0600)
    #[arg(long, env = "MAILCODE_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// Allow sign-in with the code alone (POST /api/login/code)
    #[arg(long, env = "MAILCODE_PASSWORDLESS", num_args = 0..=1, default_missing_value = "true")]
    pub passwordless: Option<bool>,
    /// lax, strict, or none (a page on another site; forces Secure) [default: lax]
    #[arg(long, env = "MAILCODE_COOKIE_SAME_SITE")]
    pub cookie_same_site: Option<String>,
    /// Domain attribute of the cookie [default: none, a host-only cookie]
    #[arg(long, env = "MAILCODE_COOKIE_DOMAIN")]
    pub cookie_domain: Option<String>,
    /// Where the database, secret and outbox live [default: ./data]
    #[arg(long, env = "MAILCODE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Mail domains refused with INVALID_EMAIL (comma separated; disposable mail services)
    #[arg(long, env = "MAILCODE_BLOCKED_DOMAINS", value_delimiter = ',')]
    #[serde(default)]
    pub blocked_domains: Vec<String>,
    /// Threads serving HTTP, each with its own event loop and Redis connection [default: the
    /// number of CPUs]
    #[arg(long, env = "MAILCODE_HTTP_THREADS")]
    pub http_threads: Option<usize>,
    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection is kept [default: 10]
    #[arg(long, env = "MAILCODE_HEADER_TIMEOUT")]
    pub header_timeout: Option<u64>,
    /// Open client connections at most; more are refused at once [default: the open-files
    /// limit less 1024 kept for stores, mail and files, at most 65536]
    #[arg(long, env = "MAILCODE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Open connections from one client address at most (not applied to --trust-proxy peers)
    /// [default: 256]
    #[arg(long, env = "MAILCODE_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// This service's origin as the application's users reach it, e.g. https://auth.example.com:
    /// the `iss` of access tokens and the base of their key set [default: http://LISTEN]
    #[arg(long, env = "MAILCODE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The `aud` of access tokens: who they are for [default: the public URL]
    #[arg(long, env = "MAILCODE_TOKEN_AUDIENCE")]
    pub token_audience: Option<String>,
    /// Seconds an access token is valid, 1 to 3600 [default: 300]
    #[arg(long, env = "MAILCODE_ACCESS_TOKEN_TTL")]
    pub access_token_ttl: Option<u64>,
    /// A URL that receives every account event as a signed webhook (repeatable; SPEC §7)
    #[arg(
        long = "webhook-url",
        env = "MAILCODE_WEBHOOK_URLS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    #[serde(default, rename = "webhook-urls")]
    pub webhook_urls: Vec<SecretUrl>,
    /// The webhooks' signing secret, `whsec_…` (default `DATA_DIR/webhook-secret`, generated on
    /// first run with a webhook URL, mode 0600)
    #[arg(long, env = "MAILCODE_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Seconds one webhook attempt may take as a whole (connect, request, answer), 1 to 60
    /// [default: 10]
    #[arg(long, env = "MAILCODE_WEBHOOK_TIMEOUT")]
    pub webhook_timeout: Option<u64>,
    /// Configuration file [default: ./mailcode.toml when it exists]
    #[arg(long, env = "MAILCODE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: SecretUrl,
    pub redis_url: Option<SecretUrl>,
    pub redis_prefix: String,
    pub smtp_url: Option<SecretUrl>,
    /// SPEC §3 Robustness: an overall deadline per delivery attempt.
    pub smtp_timeout: Duration,
    pub mail_concurrency: usize,
    pub mail_from: lettre::message::Mailbox,
    pub cors_origins: Vec<String>,
    pub trust_proxy: Vec<IpNet>,
    pub secret_file: PathBuf,
    pub passwordless: bool,
    pub cookie_same_site: SameSite,
    pub cookie_domain: Option<String>,
    pub data_dir: PathBuf,
    pub blocked_domains: Vec<String>,
    pub http_threads: usize,
    /// SPEC §3 Robustness: the header timeout, which also ends idle keep-alive connections.
    pub header_timeout: Duration,
    /// `None`: derived from the open-files limit at start (`crate::http::server`).
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: usize,
    /// SPEC §6: issuer, audience and lifetime of access tokens.
    pub tokens: crate::tokens::TokenSettings,
    /// SPEC §7: where events go (absolute http(s) URLs), and the file of their signing secret.
    pub webhook_urls: Vec<SecretUrl>,
    pub webhook_secret_file: PathBuf,
    /// SPEC §3 Robustness: an overall deadline per webhook attempt.
    pub webhook_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

/// More threads than this would each hold a Redis connection and a runtime for nothing.
const MAX_HTTP_THREADS: usize = 256;

fn bad(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

impl ServeArgs {
    /// Fills what flags and env left open from the toml file, if any.
    fn merge(mut self, file: ServeArgs) -> ServeArgs {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = file.$f; } )* };
        }
        fill!(
            listen,
            database_url,
            redis_url,
            smtp_url,
            mail_from,
            secret_file,
            passwordless,
            cookie_same_site,
            cookie_domain,
            data_dir,
            http_threads,
            smtp_timeout,
            mail_concurrency,
            header_timeout,
            max_connections,
            max_connections_per_ip,
            public_url,
            token_audience,
            access_token_ttl,
            webhook_secret_file,
            webhook_timeout
        );
        if self.webhook_urls.is_empty() {
            self.webhook_urls = file.webhook_urls;
        }
        if self.cors_origins.is_empty() {
            self.cors_origins = file.cors_origins;
        }
        if self.trust_proxy.is_empty() {
            self.trust_proxy = file.trust_proxy;
        }
        if self.blocked_domains.is_empty() {
            self.blocked_domains = file.blocked_domains;
        }
        self
    }
}

impl Settings {
    pub fn resolve(args: ServeArgs) -> Result<Settings, ConfigError> {
        let path = args.config.clone().or_else(|| {
            let p = PathBuf::from("mailcode.toml");
            p.exists().then_some(p)
        });
        let args = match path {
            Some(p) => {
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| bad("--config", format!("cannot read {}: {e}", p.display())))?;
                let file: ServeArgs = toml::from_str(&text).map_err(|e| {
                    bad(
                        "--config",
                        format!("{}: {}", p.display(), toml_problem(&text, &e)),
                    )
                })?;
                args.merge(file)
            }
            None => args,
        };
        Settings::from_args(args)
    }

    pub fn from_args(a: ServeArgs) -> Result<Settings, ConfigError> {
        let tokens = token_settings(&a)?;
        let listen_raw = a.listen.unwrap_or_else(|| "127.0.0.1:3000".into());
        let listen: SocketAddr = listen_raw.parse().map_err(|_| {
            bad(
                "--listen / MAILCODE_LISTEN",
                format!("{listen_raw:?} is not IP:PORT, e.g. 127.0.0.1:3000 or 0.0.0.0:8080"),
            )
        })?;
        let data_dir = a.data_dir.unwrap_or_else(|| PathBuf::from("data"));
        let database_url = a.database_url.unwrap_or_else(|| {
            SecretUrl::new(format!("sqlite://{}/mailcode.db", data_dir.display()))
        });
        if ![
            "sqlite:",
            "mysql://",
            "mariadb://",
            "postgres://",
            "postgresql://",
        ]
        .iter()
        .any(|p| database_url.starts_with(p))
        {
            // The URL as shown is redacted (SPEC §3 Robustness: no password is ever printed).
            return Err(bad(
                "--database-url / MAILCODE_DATABASE_URL",
                format!("\"{database_url}\": use sqlite://PATH, mysql://USER:PASS@HOST:PORT/DB (MySQL or MariaDB) or postgres://USER:PASS@HOST:PORT/DB"),
            ));
        }
        if let Some(url) = &a.redis_url {
            let r = url.expose();
            // One URL, or several separated by commas: the nodes of a Redis Cluster (TCP only),
            // or a redis+sentinel:// URL (its sentinels separated by commas).
            let single = [
                "redis://",
                "rediss://",
                "redis+unix://",
                "unix://",
                "valkey://",
                "valkeys://",
            ]
            .iter()
            .any(|p| r.starts_with(p));
            let cluster = || {
                r.split(',').map(str::trim).all(|u| {
                    ["redis://", "rediss://", "valkey://", "valkeys://"]
                        .iter()
                        .any(|p| u.starts_with(p) && u.len() > p.len())
                })
            };
            let valid = if r.starts_with("redis+sentinel://") {
                crate::store::redis::parse_sentinel_url(r).is_ok()
            } else if r.contains(',') {
                cluster()
            } else {
                single
            };
            if !valid {
                return Err(bad(
                    "--redis-url / MAILCODE_REDIS_URL",
                    format!(
                        "\"{url}\": use redis://[:PASS@]HOST:PORT[/DB], rediss://… for TLS, for \
                         Redis Cluster several node URLs separated by commas \
                         (redis://HOST1:PORT1,redis://HOST2:PORT2), or for Redis Sentinel \
                         redis+sentinel://[:PASS@]HOST1:PORT1[,HOST2:PORT2]/MASTER[/DB]"
                    ),
                ));
            }
        }
        let redis_prefix = a.redis_prefix.unwrap_or_else(|| "mailcode:".into());
        if redis_prefix.contains(['{', '}']) || redis_prefix.chars().any(char::is_whitespace) {
            return Err(bad(
                "--redis-prefix / MAILCODE_REDIS_PREFIX",
                format!("{redis_prefix:?}: no braces or spaces (keys use hash tags)"),
            ));
        }
        if let Some(u) = &a.smtp_url {
            if let Err(problem) = crate::mail::smtp::Relay::check_url(u) {
                return Err(bad(
                    "--smtp-url / MAILCODE_SMTP_URL",
                    format!("\"{u}\": {problem}; use smtp://host:port, smtps://host:port or smtp://user:pass@host:port?tls=required"),
                ));
            }
        }
        let smtp_timeout = match a.smtp_timeout {
            None => Duration::from_secs(30),
            Some(n @ 1..=600) => Duration::from_secs(n),
            Some(n) => {
                return Err(bad(
                    "--smtp-timeout / MAILCODE_SMTP_TIMEOUT",
                    format!("{n}: use 1 to 600 seconds (the default is 30)"),
                ))
            }
        };
        let mail_concurrency = match a.mail_concurrency {
            None => 8,
            Some(n @ 1..=256) => n,
            Some(n) => {
                return Err(bad(
                    "--mail-concurrency / MAILCODE_MAIL_CONCURRENCY",
                    format!("{n}: use 1 to 256 (the default is 8)"),
                ))
            }
        };
        let header_timeout = match a.header_timeout {
            None => Duration::from_secs(10),
            Some(n @ 1..=3600) => Duration::from_secs(n),
            Some(n) => {
                return Err(bad(
                    "--header-timeout / MAILCODE_HEADER_TIMEOUT",
                    format!("{n}: use 1 to 3600 seconds (the default is 10)"),
                ))
            }
        };
        let max_connections = match a.max_connections {
            None => None,
            Some(n) if n >= 16 => Some(n),
            Some(n) => {
                return Err(bad(
                    "--max-connections / MAILCODE_MAX_CONNECTIONS",
                    format!("{n}: use 16 or more (the default follows the open-files limit)"),
                ))
            }
        };
        let max_connections_per_ip = match a.max_connections_per_ip {
            None => 256,
            Some(n) if n >= 1 => n,
            Some(n) => {
                return Err(bad(
                    "--max-connections-per-ip / MAILCODE_MAX_CONNECTIONS_PER_IP",
                    format!("{n}: use 1 or more (the default is 256)"),
                ))
            }
        };
        let from_raw = a
            .mail_from
            .unwrap_or_else(|| "mailcode <no-reply@localhost>".into());
        let mail_from = from_raw.parse().map_err(|e| {
            bad(
                "--mail-from / MAILCODE_MAIL_FROM",
                format!(
                    "{from_raw:?} is not a mailbox ({e}); e.g. \"My App <no-reply@example.com>\""
                ),
            )
        })?;
        let mut cors_origins = Vec::new();
        for o in a
            .cors_origins
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
        {
            let o = o.trim_end_matches('/');
            let valid = (o.starts_with("http://") || o.starts_with("https://"))
                && !o["https://".len().min(o.len())..].contains('/')
                && o != "*";
            if !valid {
                return Err(bad("--cors-origin / MAILCODE_CORS_ORIGINS", format!("{o:?} is not an origin: write scheme://host[:port] without a path, e.g. http://localhost:5173 (\"*\" is never allowed with credentials)")));
            }
            // Browsers send the scheme and host in lower case.
            cors_origins.push(o.to_ascii_lowercase());
        }
        let mut webhook_urls = Vec::new();
        for u in a
            .webhook_urls
            .iter()
            .filter(|u| !u.expose().trim().is_empty())
        {
            if !is_webhook_url(u.expose().trim()) {
                return Err(bad(
                    "--webhook-url / MAILCODE_WEBHOOK_URLS",
                    format!(
                        "{} is not an absolute http(s) URL, e.g. https://app.example.com/hooks/mailcode",
                        u.redacted()
                    ),
                ));
            }
            webhook_urls.push(SecretUrl::new(u.expose().trim()));
        }
        let webhook_timeout = match a.webhook_timeout {
            None => Duration::from_secs(10),
            Some(n @ 1..=60) => Duration::from_secs(n),
            Some(n) => {
                return Err(bad(
                    "--webhook-timeout / MAILCODE_WEBHOOK_TIMEOUT",
                    format!("{n}: use 1 to 60 seconds (the default is 10)"),
                ))
            }
        };
        let mut trust_proxy = Vec::new();
        for t in a
            .trust_proxy
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
        {
            let net = t
                .parse::<IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    bad(
                        "--trust-proxy / MAILCODE_TRUST_PROXY",
                        format!(
                            "{t:?} is not a CIDR or an IP address, e.g. 127.0.0.1/32 or 10.0.0.0/8"
                        ),
                    )
                })?;
            trust_proxy.push(net);
        }
        let same_raw = a.cookie_same_site.unwrap_or_else(|| "lax".into());
        let cookie_same_site = SameSite::parse(&same_raw).ok_or_else(|| {
            bad(
                "--cookie-same-site / MAILCODE_COOKIE_SAME_SITE",
                format!("{same_raw:?}: use lax, strict or none"),
            )
        })?;
        if let Some(d) = &a.cookie_domain {
            if d.is_empty()
                || !d
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            {
                return Err(bad(
                    "--cookie-domain / MAILCODE_COOKIE_DOMAIN",
                    format!("{d:?} is not a domain name"),
                ));
            }
        }
        let http_threads = match a.http_threads {
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Some(n) if (1..=MAX_HTTP_THREADS).contains(&n) => n,
            Some(n) => {
                return Err(bad(
                    "--http-threads / MAILCODE_HTTP_THREADS",
                    format!(
                        "{n}: use 1 to {MAX_HTTP_THREADS}, usually the number of CPUs (the default)"
                    ),
                ))
            }
        };
        Ok(Settings {
            listen,
            http_threads,
            database_url,
            redis_url: a.redis_url,
            redis_prefix,
            smtp_url: a.smtp_url,
            smtp_timeout,
            mail_concurrency,
            header_timeout,
            max_connections,
            max_connections_per_ip,
            tokens,
            mail_from,
            cors_origins,
            trust_proxy,
            secret_file: a.secret_file.unwrap_or_else(|| data_dir.join("secret")),
            webhook_urls,
            webhook_timeout,
            webhook_secret_file: a
                .webhook_secret_file
                .unwrap_or_else(|| data_dir.join("webhook-secret")),
            passwordless: a.passwordless.unwrap_or(false),
            cookie_same_site,
            cookie_domain: a.cookie_domain,
            blocked_domains: a
                .blocked_domains
                .iter()
                .map(|d| d.trim().to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect(),
            data_dir,
        })
    }

    /// Settings for a test or a tool: everything default, under `data_dir`, on a free port.
    pub fn for_data_dir(data_dir: PathBuf) -> Settings {
        let args = ServeArgs {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data_dir),
            ..Default::default()
        };
        // Defaults are valid by construction.
        Settings::from_args(args).unwrap_or_else(|e| panic!("default settings are invalid: {e}"))
    }
}

/// SPEC §6: the issuer is an absolute http(s) origin (no path, query or credentials: it is
/// compared byte for byte by verifiers), the lifetime 1 s to 1 h.
fn token_settings(a: &ServeArgs) -> Result<crate::tokens::TokenSettings, ConfigError> {
    let issuer = match a.public_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(public_origin(raw).ok_or_else(|| {
            bad(
                "--public-url / MAILCODE_PUBLIC_URL",
                format!(
                    "{raw:?} is not an absolute http(s) origin: write scheme://host[:port] \
                     without a path, e.g. https://auth.example.com"
                ),
            )
        })?),
    };
    let audience = match a.token_audience.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(aud) if aud.chars().all(|c| c.is_ascii_graphic()) => Some(aud.to_owned()),
        Some(aud) => {
            return Err(bad(
                "--token-audience / MAILCODE_TOKEN_AUDIENCE",
                format!("{aud:?}: use visible ASCII without spaces, e.g. https://api.example.com"),
            ))
        }
    };
    let ttl = match a.access_token_ttl {
        None => Duration::from_secs(300),
        Some(n @ 1..=3600) => Duration::from_secs(n),
        Some(n) => {
            return Err(bad(
                "--access-token-ttl / MAILCODE_ACCESS_TOKEN_TTL",
                format!("{n}: use 1 to 3600 seconds (the default is 300)"),
            ))
        }
    };
    Ok(crate::tokens::TokenSettings {
        issuer,
        audience,
        ttl,
    })
}

/// `scheme://host[:port]` in lower case for an absolute http(s) URL that names nothing more
/// (a trailing `/` is allowed), else `None`.
fn public_origin(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && !raw.trim_end_matches('/').ends_with('?');
    plain.then(|| url.origin().ascii_serialization())
}

/// An absolute http(s) URL with a host (SPEC §7); anything else would never be delivered.
fn is_webhook_url(raw: &str) -> bool {
    url::Url::parse(raw)
        .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .unwrap_or(false)
}

/// A configuration file's problem with its line, without the line itself: toml's own message
/// quotes the offending line, which may hold a URL with a password (SPEC §3 Robustness).
fn toml_problem(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message.to_owned(),
    }
}
