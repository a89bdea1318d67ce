//! Asking for a code, and asking how its mail is doing.
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::domain::{CodePurpose, Email, SessionKind};
use crate::flows::FlowError;
use crate::http::error::{ok, ApiError};
use crate::http::extract::{ApiJson, Auth, ClientMeta};
use crate::http::AppState;
use crate::store::Delivery;
use axum::extract::State;

#[derive(Debug, Deserialize, ToSchema)]
pub struct EmailCodeBody {
    pub email: String,
    /// `"token"` for clients without cookies: no cookie is set and `data.session_token` is
    /// returned, to be sent as `Authorization: Bearer <session_token>` with the code.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CodeSentData {
    /// RFC 3339 UTC.
    pub expires_at: String,
    /// RFC 3339 UTC: when another code may be asked for this address.
    pub resend_available_at: String,
    pub delivery: Delivery,
    /// Only when the request asked for `"session": "token"` and started a session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CodeStatusData {
    pub purpose: CodePurpose,
    pub delivery: Delivery,
    pub expires_at: String,
    pub resend_available_at: String,
}

pub fn parse_email(raw: &str) -> Result<Email, ApiError> {
    Email::parse(raw).map_err(|e| ApiError::Flow(FlowError::InvalidEmail(e.to_string())))
}

pub fn parse_session_kind(raw: Option<&str>) -> Result<SessionKind, ApiError> {
    match raw {
        None | Some("cookie") => Ok(SessionKind::Cookie),
        Some("token") => Ok(SessionKind::Token),
        Some(_) => Err(ApiError::invalid(
            "session",
            "must be \"token\" or \"cookie\"",
        )),
    }
}

async fn request(
    state: AppState,
    meta: ClientMeta,
    auth: Auth,
    body: EmailCodeBody,
    purpose: CodePurpose,
) -> Result<Response, ApiError> {
    let email = parse_email(&body.email)?;
    let kind = parse_session_kind(body.session.as_deref())?;
    // A session is reused only when the client carries it the way it asks to (cookie or token).
    let current = auth.session().filter(|s| s.kind == kind);
    let sent = state
        .core
        .request_code(&meta.info(), current, purpose, &email, kind)
        .await?;
    let mut session_token = None;
    let mut cookie = None;
    if let Some((id, kind)) = &sent.new_session {
        match kind {
            SessionKind::Token => session_token = Some(id.as_str().to_owned()),
            SessionKind::Cookie => cookie = Some(state.http.cookie.set(id, meta.secure)),
        }
    }
    let mut resp = ok(
        StatusCode::OK,
        "CODE_SENT",
        CodeSentData {
            expires_at: rfc3339(sent.expires_at),
            resend_available_at: rfc3339(sent.resend_available_at),
            delivery: sent.delivery,
            session_token,
        },
    );
    if let Some(c) = cookie {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// Sends a sign-in code to an address (same answer whether or not an account uses it).
#[utoipa::path(post, path = "/api/login/email-code", request_body = EmailCodeBody,
    responses((status = 200, description = "CODE_SENT", body = CodeSentData),
              (status = 400, description = "INVALID_EMAIL / INVALID_INPUT / INVALID_JSON"),
              (status = 429, description = "RATE_LIMITED, with Retry-After")))]
pub async fn login_code(
    State(s): State<AppState>,
    meta: ClientMeta,
    auth: Auth,
    ApiJson(b): ApiJson<EmailCodeBody>,
) -> Result<Response, ApiError> {
    request(s, meta, auth, b, CodePurpose::Login).await
}

/// Sends a registration code.
#[utoipa::path(post, path = "/api/register/email-code", request_body = EmailCodeBody,
    responses((status = 200, description = "CODE_SENT", body = CodeSentData), (status = 429, description = "RATE_LIMITED")))]
pub async fn register_code(
    State(s): State<AppState>,
    meta: ClientMeta,
    auth: Auth,
    ApiJson(b): ApiJson<EmailCodeBody>,
) -> Result<Response, ApiError> {
    request(s, meta, auth, b, CodePurpose::Register).await
}

/// Sends a password-reset code (same answer whether or not the account exists).
#[utoipa::path(post, path = "/api/password/email-code", request_body = EmailCodeBody,
    responses((status = 200, description = "CODE_SENT", body = CodeSentData), (status = 429, description = "RATE_LIMITED")))]
pub async fn reset_code(
    State(s): State<AppState>,
    meta: ClientMeta,
    auth: Auth,
    ApiJson(b): ApiJson<EmailCodeBody>,
) -> Result<Response, ApiError> {
    request(s, meta, auth, b, CodePurpose::Reset).await
}

/// The delivery state of the session's current code.
#[utoipa::path(get, path = "/api/login/email-code/status",
    responses((status = 200, description = "OK", body = CodeStatusData), (status = 401, description = "NO_SESSION"), (status = 404, description = "NO_CODE")))]
pub async fn status(State(s): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    let st = s.core.code_status(auth.session()).await?;
    Ok(ok(
        StatusCode::OK,
        "OK",
        CodeStatusData {
            purpose: st.purpose,
            delivery: st.delivery,
            expires_at: rfc3339(st.expires_at),
            resend_available_at: rfc3339(st.resend_available_at),
        },
    )
    .into_response())
}
