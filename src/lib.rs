//! mailcode: an email-code login service whose sessions stick.
//!
//! Data flows one way: HTTP in ([`http`]) → use cases ([`flows`]) → domain types ([`domain`]) and
//! store traits ([`store`]) → backends. A handler never talks to SQL; a store never sees HTTP.
//!
//! - [`cli`]: the command line (serve, user, sessions, migrate, doctor).
//! - [`doctor`]: checks a running deployment from the outside, the way a browser would.
//! - [`config`]: one [`config::Settings`] value, resolved once from flags, env, toml, defaults.
//! - [`app`]: build (settings → stores → flows → router), start, graceful shutdown.
//! - [`threads`]: the HTTP threads, each with its own runtime, and what a store keeps per thread.
//! - [`deployment`]: one secret per deployment: its fingerprint, checked at start and by `/readyz`.
//! - [`policy`]: every number of SPEC §3 in one place.
//! - [`mail`]: templates, the durable queue worker, SMTP and the development outbox.
//! - [`i18n`]: every user-facing message, in English and Simplified Chinese.
//! - [`tokens`]: access tokens (ES256 JWTs) for the application's services, and their keys.
//! - [`webhooks`]: events for the application (SPEC §7): their bodies, signatures, delivery.
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod deployment;
pub mod doctor;
pub mod domain;
pub mod flows;
pub mod http;
pub mod i18n;
pub mod mail;
pub mod metrics;
pub mod passwords;
pub mod policy;
pub mod secret_url;
pub mod store;
pub mod threads;
pub mod tokens;
pub mod webhooks;
