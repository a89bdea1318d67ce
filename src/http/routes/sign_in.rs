//! Submitting a code: sign-in (the seed's `get-token`), passwordless sign-in, registration and
//! password reset. Each answers with the new session as a cookie, or as a bearer token for
//! clients that asked for one.
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{OneTimeCode, Password, SessionKind, UserId, Username};
use crate::flows::{CodeSubmission, FlowError, SignedIn};
use crate::http::error::{ok, ApiError};
use crate::http::extract::{ApiJson, Auth, ClientMeta, Credential};
use crate::http::routes::codes::{parse_email, parse_session_kind};
use crate::http::AppState;

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    pub username: String,
    pub password: String,
    pub email: String,
    pub code: String,
    /// `"token"` to get the session as a bearer token instead of a cookie.
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CodeLoginBody {
    pub email: String,
    pub code: String,
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetBody {
    pub email: String,
    pub code: String,
    pub new_password: String,
    #[serde(default)]
    pub session: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignedInData {
    /// The account's stable id (SPEC §6).
    #[schema(value_type = Option<String>, format = "uuid")]
    pub user_id: Option<UserId>,
    pub username: String,
    pub email: String,
    /// The session as a bearer token; null for cookie sessions (browsers get a token only when
    /// they ask for one with `"session": "token"`).
    pub token: Option<String>,
}

/// Logs the integrator hint when a code came without its session, then passes the error on.
fn hint<'a>(meta: &'a ClientMeta, auth: &'a Auth) -> impl FnOnce(FlowError) -> ApiError + 'a {
    move |e| {
        if matches!(e, FlowError::NoSession) {
            crate::http::hints::no_session(meta, auth.credential);
        }
        ApiError::Flow(e)
    }
}

fn code(raw: &str) -> Result<OneTimeCode, ApiError> {
    OneTimeCode::parse(raw).map_err(|e| ApiError::invalid("code", e))
}

/// A new name: every rule of SPEC §3 Accounts.
fn new_username(raw: &str) -> Result<Username, ApiError> {
    Username::parse(raw).map_err(ApiError::InvalidUsername)
}

/// A name to sign in with: its shape only, so accounts made before a rule still sign in.
fn username(raw: &str) -> Result<Username, ApiError> {
    Username::parse_for_login(raw).map_err(ApiError::InvalidUsername)
}

fn want_token(raw: Option<&str>) -> Result<bool, ApiError> {
    Ok(parse_session_kind(raw)? == SessionKind::Token)
}

/// The answer to a successful sign-in: the new session as a cookie or a token; the old cookie
/// is cleared when a cookie session became a token session.
fn signed_in(
    state: &AppState,
    meta: &ClientMeta,
    auth: &Auth,
    status: StatusCode,
    code: &str,
    s: SignedIn,
) -> Response {
    let is_token = s.session.kind == SessionKind::Token;
    let mut resp = ok(
        status,
        code,
        SignedInData {
            user_id: s.user.public_id,
            username: s.user.username,
            email: s.user.email,
            token: is_token.then(|| s.id.as_str().to_owned()),
        },
    );
    let cookie = match (is_token, auth.credential) {
        (false, _) => Some(state.http.cookie.set(&s.id, meta.secure)),
        (true, Credential::Cookie) => Some(state.http.cookie.clear(meta.secure)),
        (true, _) => None,
    };
    if let Some(c) = cookie {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

/// Signs in with username, password, email and the code sent to this session.
#[utoipa::path(post, path = "/api/login/get-token", request_body = LoginBody,
    responses((status = 200, description = "LOGIN_SUCCESS", body = SignedInData),
              (status = 401, description = "NO_SESSION / CODE_INVALID / CODE_EXPIRED / CODE_ATTEMPTS_EXCEEDED / LOGIN_FAILED"),
              (status = 429, description = "RATE_LIMITED")))]
pub async fn get_token(
    State(s): State<AppState>,
    meta: ClientMeta,
    auth: Auth,
    ApiJson(b): ApiJson<LoginBody>,
) -> Result<Response, ApiError> {
    let user = username(&b.username)?;
    let password =
        Password::parse_for_login(&b.password).map_err(|e| ApiError::invalid("password", e))?;
    let email = parse_email(&b.email)?;
    let code = code(&b.code)?;
    let tok = want_token(b.session.as_deref())?;
    let done = s
        .core
        .sign_in(
            &meta.info(),
            auth.session(),
            CodeSubmission {
                email: &email,
                code: &code,
                want_token: tok,
            },
            &user,
            &password,
        )
        .await
        .map_err(hint(&meta, &auth))?;
    Ok(signed_in(
        &s,
        &meta,
        &auth,
        StatusCode::OK,
        "LOGIN_SUCCESS",
        done,
    ))
}

/// Passwordless sign-in with email and code (only with `--passwordless`).
#[utoipa::path(post, path = "/api/login/code", request_body = CodeLoginBody,
    responses((status = 200, description = "LOGIN_SUCCESS", body = SignedInData), (status = 401, description = "code errors"),
              (status = 404, description = "PASSWORDLESS_DISABLED")))]
pub async fn passwordless(
    State(s): State<AppState>,
    meta: ClientMeta,
    auth: Auth,
    ApiJson(b): ApiJson<CodeLoginBody>,
) -> Result<Response, ApiError> {
    let email = parse_email(&b.email)?;
    let code = code(&b.code)?;
    let tok = want_token(b.session.as_deref())?;
    let done = s
        .core
        .sign_in_with_code(
            &meta.info(),
            auth.session(),
            CodeSubmission {
                email: &email,
                code: &code,
                want_token: tok,
            },
        )
        .await
        .map_err(hint(&meta, &auth))?;
    Ok(signed_in(
        &s,
        &meta,
        &auth,
        StatusCode::OK,
        "LOGIN_SUCCESS",
        done,
    ))
}

/// Creates an account and signs it in.
#[utoipa::path(post, path = "/api/register", request_body = LoginBody,
    responses((status = 201, description = "REGISTERED", body = SignedInData), (status = 401, description = "code errors"),
              (status = 409, description = "USERNAME_TAKEN / EMAIL_TAKEN")))]
pub async fn register(
    State(s): State<AppState>,
    meta: ClientMeta,
    auth: Auth,
    ApiJson(b): ApiJson<LoginBody>,
) -> Result<Response, ApiError> {
    let user = new_username(&b.username)?;
    let password = Password::parse(&b.password).map_err(|e| ApiError::invalid("password", e))?;
    let email = parse_email(&b.email)?;
    let code = code(&b.code)?;
    let tok = want_token(b.session.as_deref())?;
    let done = s
        .core
        .register(
            &meta.info(),
            auth.session(),
            CodeSubmission {
                email: &email,
                code: &code,
                want_token: tok,
            },
            &user,
            &password,
        )
        .await
        .map_err(hint(&meta, &auth))?;
    Ok(signed_in(
        &s,
        &meta,
        &auth,
        StatusCode::CREATED,
        "REGISTERED",
        done,
    ))
}

/// Sets a new password with a reset code; every other session of the user ends.
#[utoipa::path(post, path = "/api/password/reset", request_body = ResetBody,
    responses((status = 200, description = "PASSWORD_RESET", body = SignedInData), (status = 401, description = "code errors")))]
pub async fn reset(
    State(s): State<AppState>,
    meta: ClientMeta,
    auth: Auth,
    ApiJson(b): ApiJson<ResetBody>,
) -> Result<Response, ApiError> {
    let email = parse_email(&b.email)?;
    let code = code(&b.code)?;
    let password =
        Password::parse(&b.new_password).map_err(|e| ApiError::invalid("new_password", e))?;
    let tok = want_token(b.session.as_deref())?;
    let done = s
        .core
        .reset_password(
            &meta.info(),
            auth.session(),
            CodeSubmission {
                email: &email,
                code: &code,
                want_token: tok,
            },
            &password,
        )
        .await
        .map_err(hint(&meta, &auth))?;
    Ok(signed_in(
        &s,
        &meta,
        &auth,
        StatusCode::OK,
        "PASSWORD_RESET",
        done,
    ))
}
