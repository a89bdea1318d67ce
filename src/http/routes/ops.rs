//! For operators and tools: liveness, readiness of every store and of mail, Prometheus metrics,
//! the OpenAPI document.
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa::OpenApi;

use crate::http::error::envelope;
use crate::http::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "OK")))]
pub async fn healthz() -> Response {
    envelope(StatusCode::OK, "OK", "", json!({"status": "live"}))
}

/// Readiness ([`crate::flows::Core::readiness`]): every store answers within the store timeout;
/// this instance's secret is the deployment's (`crate::deployment`); mail can leave.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "OK"), (status = 503, description = "STORE_UNAVAILABLE, or SECRET_MISMATCH: another secret is the deployment's")))]
pub async fn readyz(State(s): State<AppState>) -> Response {
    use crate::deployment::Verdict;
    let r = s.core.readiness().await;
    let ours = r.fingerprint.as_str();
    let (secret_state, recorded) = match &r.secret {
        Ok(Verdict::Recorded | Verdict::Same) => ("ok", Some(ours)),
        Ok(Verdict::Mismatch { recorded }) => ("mismatch", Some(recorded.as_str())),
        Err(_) => ("down", None),
    };
    let word = |ok: bool| if ok { "ok" } else { "down" };
    // Fingerprints are not secrets: an operator compares them across instances.
    let data = json!({
        "sessions": word(r.sessions.is_ok()),
        "users": word(r.users.is_ok()),
        "secret": secret_state,
        "secret_fingerprint": ours,
        "deployment_secret_fingerprint": recorded,
        "mail": match &r.mail { Ok(()) => "ok".to_owned(), Err(e) => format!("down: {e}") },
        "mail_transport": if r.outbox { "outbox" } else { "smtp" },
    });
    if let Ok(Verdict::Mismatch { recorded }) = &r.secret {
        crate::http::hints::secret_mismatch(ours, recorded);
    }
    if r.sessions.is_err() || r.users.is_err() || r.secret.is_err() {
        envelope(
            StatusCode::SERVICE_UNAVAILABLE,
            "STORE_UNAVAILABLE",
            "",
            data,
        )
    } else if secret_state == "mismatch" {
        envelope(StatusCode::SERVICE_UNAVAILABLE, "SECRET_MISMATCH", "", data)
    } else {
        // Mail being down does not make the service unready: codes queue and go out later.
        envelope(StatusCode::OK, "OK", "", data)
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
