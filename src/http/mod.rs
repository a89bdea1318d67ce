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
pub mod server;

use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::response::Response;
use axum::Router;
use ipnet::IpNet;
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::flows::Core;
use crate::mail::outbox::Outbox;

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

/// The application as served: [`middleware::pipeline`] around the router, one instance for
/// all connections ([`App::for_peer`] makes each connection's service).
///
/// The pipeline wraps the router as a whole rather than each route (`Router::layer` with
/// `from_fn`): one concrete service, no per-route clone of a boxed middleware stack and no
/// `ConnectInfo` extension per request. docs/benchmarks.md: the hot path's routing and middleware were a
/// quarter of its instructions.
#[derive(Clone)]
pub struct App(Arc<AppParts>);

struct AppParts {
    state: AppState,
    router: Router,
    cors: CorsLayer,
}

impl App {
    pub fn new(state: AppState) -> App {
        let router = routes::routes(&state)
            .fallback(routes::not_found)
            .method_not_allowed_fallback(routes::method_not_allowed)
            .with_state(state.clone());
        App(Arc::new(AppParts {
            cors: cors_layer(&state.http.cors_origins),
            state,
            router,
        }))
    }

    pub fn state(&self) -> &AppState {
        &self.0.state
    }

    /// The service of a connection from `peer`.
    pub fn for_peer(&self, peer: IpAddr) -> Connection {
        Connection {
            app: self.clone(),
            peer,
        }
    }

    /// Hands a request that passed the pipeline to its route, through CORS when it is for it.
    ///
    /// CORS is for the requests that send an `Origin` (a browser's cross-origin calls and
    /// preflights, and same-origin ones that carry it), and for the assets, which a cache may
    /// keep and hand to any origin (so their answers always name `Vary: Origin`). A request
    /// without `Origin` reads no CORS header, and every other answer is `no-store`, so no cache
    /// can hand it on: such requests skip the layer, its work and the ~150 bytes of headers it
    /// added to every answer (docs/benchmarks.md: most of the hot path's requests, `GET /api/me` from a
    /// page of the same origin or from a client without a browser). CORS runs inside the
    /// pipeline: preflights get a request id and `no-store` too, and a preflight from an origin
    /// that is not allowed is logged with its fix.
    fn route(&self, req: Request) -> impl Future<Output = Response> + Send + 'static {
        let app = self.0.clone();
        async move {
            // Before CORS: forward authentication answers a proxy, whatever the method (an
            // `OPTIONS` is the application's, not a preflight of ours).
            if req.uri().path() == routes::AUTH_CHECK {
                return routes::backend::auth_check_direct(app.state.clone(), req).await;
            }
            // `Router::poll_ready` is always ready, and so is `Cors::poll_ready` around it.
            let answer = if req.headers().contains_key(header::ORIGIN)
                || req.uri().path().starts_with("/assets/")
            {
                let preflight = req.method() == Method::OPTIONS;
                let answer = app.cors.layer(app.router.clone()).call(req).await;
                if preflight {
                    answer.map(preflight_envelope)
                } else {
                    answer
                }
            } else if req.method() == Method::GET && req.uri().path() == routes::ME {
                return routes::account::me_direct(app.state.clone(), req).await;
            } else {
                app.router.clone().call(req).await
            };
            match answer {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    }
}

/// A preflight's answer in the envelope (SPEC §2: every answer is one). tower-http's CORS
/// answers every `OPTIONS` that reaches it by itself, with its headers and an empty body;
/// browsers read only the headers, and any other client that sends `OPTIONS` reads `OK`.
fn preflight_envelope(resp: Response) -> Response {
    let (mut parts, _) = resp.into_parts();
    let (envelope, body) = error::ok(parts.status, "OK", serde_json::Value::Null).into_parts();
    parts.headers.extend(envelope.headers);
    Response::from_parts(parts, body)
}

/// One connection's service: every request through [`middleware::pipeline`].
#[derive(Clone)]
pub struct Connection {
    app: App,
    peer: IpAddr,
}

impl Service<Request> for Connection {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let app = self.app.clone();
        let peer = self.peer;
        Box::pin(async move { Ok(middleware::pipeline(&app, peer, req).await) })
    }
}

/// The same service as hyper calls it ([`server::serve`]): the body is read through axum's.
impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Connection {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let app = self.app.clone();
        let peer = self.peer;
        Box::pin(async move {
            Ok(middleware::pipeline(&app, peer, req.map(axum::body::Body::new)).await)
        })
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
