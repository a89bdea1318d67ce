//! The routes of SPEC §2, grouped by what they are about.
pub mod account;
pub mod backend;
pub mod codes;
pub mod ops;
pub mod sign_in;
pub mod web;

use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::Router;

use crate::http::error::ApiError;
use crate::http::AppState;

/// The hot path of docs/benchmarks.md, which [`App`](crate::http::App) hands to [`account::me_direct`]
/// for a plain `GET` without the router's lookup.
pub const ME: &str = "/api/me";

/// Forward authentication (SPEC §6): on the hot path of every request of the application,
/// served by [`backend::auth_check_direct`] for every method, without the router.
pub const AUTH_CHECK: &str = "/api/auth/check";

pub fn routes(state: &AppState) -> Router<AppState> {
    let mut r = Router::new()
        .route("/api/login/email-code", post(codes::login_code))
        .route("/api/register/email-code", post(codes::register_code))
        .route("/api/password/email-code", post(codes::reset_code))
        .route("/api/login/email-code/status", get(codes::status))
        .route("/api/login/get-token", post(sign_in::get_token))
        .route("/api/login/code", post(sign_in::passwordless))
        .route("/api/register", post(sign_in::register))
        .route("/api/password/reset", post(sign_in::reset))
        .route(ME, get(account::me))
        .route("/api/logout", post(account::logout))
        .route("/api/sessions", get(account::sessions))
        .route("/api/sessions/{id}", delete(account::revoke))
        .route(AUTH_CHECK, any(backend::auth_check))
        .route("/api/token", post(backend::token))
        .route("/.well-known/jwks.json", get(backend::jwks))
        .route("/.well-known/openid-configuration", get(backend::discovery))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/api/openapi.json", get(ops::openapi))
        .route("/", get(web::index))
        .route("/register", get(web::register))
        .route("/assets/{file}", get(web::asset));
    if state.http.dev_outbox.is_some() {
        r = r
            .route("/dev/outbox", get(web::outbox_page))
            .route("/dev/outbox/latest", get(web::outbox_latest));
    }
    r
}

pub async fn not_found() -> Response {
    ApiError::NotFound.into_response()
}

pub async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}
