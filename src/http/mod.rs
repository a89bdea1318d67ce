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

use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::Router;
use futures::future::Either;
use ipnet::IpNet;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

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
        .layer(CorsWhenAsked(Arc::new(cors)))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::pipeline,
        ))
        .with_state(state)
}

/// CORS for the requests it is for: those that send an `Origin` (a browser's cross-origin calls
/// and preflights, and same-origin ones that carry it), and the assets, which a cache may keep
/// and hand to any origin (so their answers always name `Vary: Origin`). A request without
/// `Origin` reads no CORS header, and every other answer is `no-store`, so no cache can hand it
/// on: such requests skip the layer, its work and the ~150 bytes of headers it added to every
/// answer (issue 5: most of the hot path's requests, `GET /api/me` from a page of the same
/// origin or from a client without a browser).
#[derive(Clone)]
struct CorsWhenAsked(Arc<CorsLayer>);

/// Cloned for every request (axum clones a route's services to call them), so it holds the
/// CORS settings behind an `Arc` and wraps the route in `Cors` only for a request that needs
/// it: a plain request's clone is the route's alone.
#[derive(Clone)]
struct CorsWhenAskedService<S> {
    inner: S,
    cors: Arc<CorsLayer>,
}

impl<S> Layer<S> for CorsWhenAsked {
    type Service = CorsWhenAskedService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CorsWhenAskedService {
            inner,
            cors: self.0.clone(),
        }
    }
}

impl<S, B> Service<Request> for CorsWhenAskedService<S>
where
    S: Service<Request, Response = axum::http::Response<B>> + Clone,
    B: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, <Cors<S> as Service<Request>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if req.headers().contains_key(header::ORIGIN) || req.uri().path().starts_with("/assets/") {
            // `Cors::poll_ready` only asks the inner service, which was asked above; the clone
            // is as ready as the route it was cloned from (`Route::poll_ready` always is).
            Either::Right(self.cors.layer(self.inner.clone()).call(req))
        } else {
            Either::Left(self.inner.call(req))
        }
    }
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
