//! For operators and tools: liveness, readiness of every store and of mail, Prometheus metrics,
//! the OpenAPI document.
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa::OpenApi;

use crate::http::error::envelope;
use crate::http::AppState;
use crate::store::bounded;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "OK")))]
pub async fn healthz() -> Response {
    envelope(StatusCode::OK, "OK", "", json!({"status": "live"}))
}

/// Readiness: every store answers within the store timeout; mail can leave.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "OK"), (status = 503, description = "STORE_UNAVAILABLE")))]
pub async fn readyz(State(s): State<AppState>) -> Response {
    let limit = s.core.policy.store_timeout;
    let sessions = bounded(limit, s.core.stores.sessions.ping()).await;
    let users = bounded(limit, s.core.stores.users.ping()).await;
    let mail = match tokio::time::timeout(limit, s.transport.check()).await {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    };
    let word = |ok: bool| if ok { "ok" } else { "down" };
    let data = json!({
        "sessions": word(sessions.is_ok()),
        "users": word(users.is_ok()),
        "mail": match &mail { Ok(()) => "ok".to_owned(), Err(e) => format!("down: {e}") },
        "mail_transport": if s.transport.is_outbox() { "outbox" } else { "smtp" },
    });
    if sessions.is_ok() && users.is_ok() {
        // Mail being down does not make the service unready: codes queue and go out later.
        envelope(StatusCode::OK, "OK", "", data)
    } else {
        envelope(
            StatusCode::SERVICE_UNAVAILABLE,
            "STORE_UNAVAILABLE",
            "",
            data,
        )
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", responses((status = 200, description = "OpenAPI 3.1")))]
pub async fn openapi() -> Response {
    axum::Json(crate::http::openapi::ApiDoc::openapi()).into_response()
}
