//! HTTP in: the router, the middleware around it and the routes. Handlers parse input into domain
//! types, call one flow, and shape the answer; they never touch a store.
pub mod context;
pub mod cookies;
pub mod error;
pub mod extract;
pub mod hints;
pub mod middleware;
pub mod openapi;
pub mod routes;

use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::Router;
use ipnet::IpNet;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::flows::Core;
use crate::mail::{outbox::Outbox, Transport};

/// The HTTP-only settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub cors_origins: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub cookie: cookies::CookieSettings,
    /// `/dev/outbox` is served (outbox transport, loopback address).
    pub dev_outbox: Option<Outbox>,
}

/// What every handler shares; one `Arc`, since axum clones the state for every request.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub core: Arc<Core>,
    pub http: HttpSettings,
    pub metrics: PrometheusHandle,
    pub transport: Transport,
}

impl AppState {
    pub fn new(inner: AppInner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

pub fn router(state: AppState) -> Router {
    let cors = cors_layer(&state.http.cors_origins);
    routes::routes(&state)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        // CORS inside the pipeline: preflights get a request id and no-store too, and a
        // preflight from an origin that is not allowed is logged with its fix.
        .layer(cors)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::pipeline,
        ))
        .with_state(state)
}

/// CORS with credentials for the allowlist only (never `*` with credentials).
fn cors_layer(origins: &[String]) -> CorsLayer {
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(list))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::ACCEPT_LANGUAGE,
        ])
        .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")])
        .max_age(std::time::Duration::from_secs(600))
}
