//! The signed-in user: who am I, sign out, my sessions.
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::domain::{SessionKey, UserId};
use crate::flows::{require_user, FlowError};
use crate::http::error::{ok, ok_written, ApiError, JsonOut};
use crate::http::extract::{ApiPath, Auth, ClientMeta, Credential};
use crate::http::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionTimes {
    pub created_at: String,
    pub expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeData<'a> {
    /// The account's stable id (SPEC §6): what the application keys its rows on.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub user_id: Option<UserId>,
    pub username: &'a str,
    pub email: &'a str,
    pub session: SessionTimes,
}

impl MeData<'_> {
    /// The JSON that `Serialize` writes (a test checks), written without serde's work per
    /// field: the answer of the hot path (docs/benchmarks.md).
    fn write_json(&self, out: &mut JsonOut) {
        match self.user_id {
            Some(id) => {
                out.raw(r#"{"user_id":""#);
                out.raw(&id.to_text());
                out.raw(r#"","username":"#);
            }
            None => out.raw(r#"{"user_id":null,"username":"#),
        }
        out.string(self.username);
        out.raw(r#","email":"#);
        out.string(self.email);
        out.raw(r#","session":{"created_at":"#);
        out.string(&self.session.created_at);
        out.raw(r#","expires_at":"#);
        out.string(&self.session.expires_at);
        out.raw("}}");
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    /// Public id of the session (not a credential), for `DELETE /api/sessions/{id}`.
    pub id: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
    pub user_agent: String,
    pub ip: String,
    pub current: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
}

/// `GET /api/me` as [`App`](crate::http::App) serves it without the router (docs/benchmarks.md: the hot
/// path; the router's lookup and axum's handler plumbing were a tenth of its instructions).
/// Exactly what the route in the table does: the table keeps it for HEAD, CORS, 405 and the
/// OpenAPI document.
pub async fn me_direct(state: AppState, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    match Auth::from_request_parts(&mut parts, &state).await {
        Ok(auth) => me(auth).await.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Who is signed in on this session.
#[utoipa::path(get, path = "/api/me", responses((status = 200, description = "OK", body = MeData), (status = 401, description = "NOT_LOGGED_IN")))]
pub async fn me(auth: Auth) -> Result<Response, ApiError> {
    let (s, u) = require_user(auth.session())?;
    let data = MeData {
        user_id: u.public_id,
        username: &u.username,
        email: &u.email,
        session: SessionTimes {
            created_at: rfc3339(s.created_at),
            expires_at: rfc3339(s.expires_at()),
        },
    };
    Ok(ok_written(StatusCode::OK, "OK", |out| data.write_json(out)))
}

/// Ends this session, cookie and token alike.
#[utoipa::path(post, path = "/api/logout", responses((status = 200, description = "LOGGED_OUT")))]
pub async fn logout(
    State(state): State<AppState>,
    meta: ClientMeta,
    auth: Auth,
) -> Result<Response, ApiError> {
    state.core.logout(auth.session()).await?;
    let mut resp = ok(StatusCode::OK, "LOGGED_OUT", serde_json::Value::Null);
    if auth.credential == Credential::Cookie {
        resp.headers_mut()
            .insert(header::SET_COOKIE, state.http.cookie.clear(meta.secure));
    }
    Ok(resp)
}

/// The caller's sessions.
#[utoipa::path(get, path = "/api/sessions", responses((status = 200, description = "OK", body = SessionList), (status = 401, description = "NOT_LOGGED_IN")))]
pub async fn sessions(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    let current = auth.session().map(|s| s.key.clone());
    let list = state.core.list_sessions(auth.session()).await?;
    let sessions = list
        .into_iter()
        .map(|s| SessionInfo {
            id: s.key.as_str().to_owned(),
            created_at: rfc3339(s.created_at),
            last_seen_at: rfc3339(s.last_seen_at),
            expires_at: rfc3339(s.expires_at()),
            current: Some(&s.key) == current.as_ref(),
            user_agent: s.user_agent,
            ip: s.ip,
        })
        .collect();
    Ok(ok(StatusCode::OK, "OK", SessionList { sessions }))
}

/// Revokes one of the caller's sessions.
#[utoipa::path(delete, path = "/api/sessions/{id}", params(("id" = String, Path, description = "public session id")),
    responses((status = 200, description = "SESSION_REVOKED"), (status = 400, description = "INVALID_INPUT: the id is not UTF-8 once percent-decoded"),
              (status = 401, description = "NOT_LOGGED_IN"), (status = 404, description = "SESSION_NOT_FOUND")))]
pub async fn revoke(
    State(state): State<AppState>,
    // Before `Auth`: an id that does not parse is refused before the store is read (or the
    // session renewed).
    ApiPath(id): ApiPath<String>,
    auth: Auth,
) -> Result<Response, ApiError> {
    require_user(auth.session())?;
    let key = SessionKey::parse(&id).ok_or(ApiError::Flow(FlowError::SessionNotFound))?;
    state.core.revoke_session(auth.session(), &key).await?;
    Ok(ok(
        StatusCode::OK,
        "SESSION_REVOKED",
        serde_json::Value::Null,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written JSON of `/api/me` is the one its OpenAPI schema (from `Serialize`)
    /// describes, escapes included.
    #[test]
    fn me_is_written_as_serde_writes_it() {
        for (username, email) in [
            ("ada", "ada@example.com"),
            ("quote\"back\\slash", "tab\tnew\nline\u{1}@例子.测试"),
        ] {
            let data = MeData {
                user_id: UserId::parse("0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"),
                username,
                email,
                session: SessionTimes {
                    created_at: "2026-11-29T15:00:00Z".into(),
                    expires_at: "2026-12-29T15:00:00Z".into(),
                },
            };
            let resp = ok_written(StatusCode::OK, "OK", |out| data.write_json(out));
            let body = futures::executor::block_on(axum::body::to_bytes(resp.into_body(), 4096))
                .expect("body");
            let written: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(written["data"], serde_json::to_value(&data).expect("serde"));
            assert_eq!(written["code"], "OK");
        }
    }
}
