//! What the application's own backend asks (SPEC §6): who is signed in, for a reverse proxy's
//! forward authentication, and access tokens with the keys that verify them.
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::UserId;
use crate::flows::{require_user, FlowError};
use crate::http::error::{ok, ok_written, ApiError};
use crate::http::extract::Auth;
use crate::http::AppState;

/// The headers a proxy copies to the upstream (SPEC §6).
pub const USER_ID: HeaderName = HeaderName::from_static("x-mailcode-user-id");
pub const USERNAME: HeaderName = HeaderName::from_static("x-mailcode-username");
pub const EMAIL: HeaderName = HeaderName::from_static("x-mailcode-email");
pub const SESSION_ID: HeaderName = HeaderName::from_static("x-mailcode-session-id");

/// What is percent-encoded in a header value: everything but visible ASCII and space, and `%`
/// itself, so that decoding any value (ASCII or not) gives it back exactly.
const HEADER_UNSAFE: &AsciiSet = &CONTROLS.add(b'%');

#[derive(Debug, Serialize, ToSchema)]
pub struct WhoData<'a> {
    #[schema(value_type = String, format = "uuid")]
    pub user_id: UserId,
    pub username: &'a str,
    pub email: &'a str,
    /// The public id of the session, as `GET /api/sessions` lists it.
    pub session_id: &'a str,
}

impl WhoData<'_> {
    /// The JSON that `Serialize` writes (a unit test checks): forward authentication is on the
    /// hot path of every request of the application (docs/benchmarks.md).
    fn write_json(&self, user_id: &str, out: &mut crate::http::error::JsonOut) {
        out.raw(r#"{"user_id":""#);
        out.raw(user_id);
        out.raw(r#"","username":"#);
        out.string(self.username);
        out.raw(r#","email":"#);
        out.string(self.email);
        out.raw(r#","session_id":"#);
        out.string(self.session_id);
        out.raw("}");
    }

    /// The same as headers. A value with nothing to encode (the usual ASCII name and address)
    /// is not copied before it becomes a header value: the headers were most of what this
    /// route costs beyond `GET /api/me` (docs/benchmarks.md, workload check).
    fn write_headers(&self, user_id: &str, h: &mut HeaderMap) {
        h.reserve(4);
        let mut put = |name: HeaderName, value: &str| {
            let encoded: std::borrow::Cow<'_, str> =
                utf8_percent_encode(value, HEADER_UNSAFE).into();
            if let Ok(v) = HeaderValue::from_str(&encoded) {
                h.append(name, v);
            }
        };
        put(USER_ID, user_id);
        put(USERNAME, self.username);
        put(EMAIL, self.email);
        put(SESSION_ID, self.session_id);
    }
}

/// `/api/auth/check` for every method, as [`App`](crate::http::App) serves it: without the
/// router and without CORS (its answers are for a proxy, not for a page to read), the body
/// never read.
pub async fn auth_check_direct(state: AppState, req: Request) -> Response {
    let (mut parts, _body) = req.into_parts();
    match Auth::from_request_parts(&mut parts, &state).await {
        Ok(auth) => auth_check(auth).await.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Forward authentication (nginx `auth_request`, Traefik `ForwardAuth`, Caddy
/// `forward_auth`): 200 with the user in the body and in `X-Mailcode-*` headers, or 401.
#[utoipa::path(get, path = "/api/auth/check",
    responses((status = 200, description = "OK, with X-Mailcode-User-Id, -Username, -Email and -Session-Id (percent-encoded UTF-8)", body = WhoData),
              (status = 401, description = "NOT_LOGGED_IN"),
              (status = 403, description = "ORIGIN_REJECTED: the forwarded method (X-Forwarded-Method, X-Original-Method) changes state and the request came with the cookie from a foreign origin")))]
pub async fn auth_check(auth: Auth) -> Result<Response, ApiError> {
    let (s, u) = require_user(auth.session())?;
    // A session of an account deleted since: nobody to name.
    let user_id = u.public_id.ok_or(ApiError::Flow(FlowError::NotLoggedIn))?;
    let who = WhoData {
        user_id,
        username: &u.username,
        email: &u.email,
        session_id: s.key.as_str(),
    };
    let id = user_id.to_text();
    let mut resp = ok_written(StatusCode::OK, "OK", |out| who.write_json(&id, out));
    who.write_headers(&id, resp.headers_mut());
    Ok(resp)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenData {
    /// An ES256 JWT for the application's services; not a session credential.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// An access token for the signed-in user (SPEC §6). Cookie requests follow the Origin rule of
/// every state-changing request (SPEC §3 Cross-origin and CSRF).
#[utoipa::path(post, path = "/api/token",
    responses((status = 200, description = "OK", body = TokenData),
              (status = 401, description = "NOT_LOGGED_IN"),
              (status = 403, description = "ORIGIN_REJECTED")))]
pub async fn token(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    let minted = state.core.issue_access_token(auth.session()).await?;
    Ok(ok(
        StatusCode::OK,
        "OK",
        TokenData {
            access_token: minted.access_token,
            token_type: "Bearer",
            expires_in: minted.expires_in,
        },
    ))
}

/// How long verifiers may keep the key set. The key after the current one is published ahead
/// (`crate::tokens`), so a cached set already holds the key a rotation starts signing with.
const KEYS_MAX_AGE: &str = "public, max-age=300";

/// `/.well-known/jwks.json` (RFC 7517): the key set itself, not in the envelope, as stock JWKS
/// clients read it.
#[utoipa::path(get, path = "/.well-known/jwks.json", responses((status = 200, description = "the JSON Web Key Set (RFC 7517), not in the envelope")))]
pub async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let ring = state.core.signing_keys().await?;
    Ok(well_known(ring.jwks_json().to_owned()))
}

/// `/.well-known/openid-configuration`: where the keys are, for clients that discover them.
#[utoipa::path(get, path = "/.well-known/openid-configuration", responses((status = 200, description = "issuer and jwks_uri, not in the envelope")))]
pub async fn discovery(State(state): State<AppState>) -> Response {
    let issuer = state.core.token_issuer();
    let doc = serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "claims_supported": ["iss", "aud", "sub", "sid", "email", "preferred_username", "iat", "exp", "jti"],
    });
    well_known(doc.to_string())
}

fn well_known(body: String) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(KEYS_MAX_AGE),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_is_written_as_serde_writes_it_and_headers_decode_back() {
        let user_id = UserId::parse("0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b").expect("uuid");
        for (username, email) in [
            ("ada", "ada@example.com"),
            ("张伟", "quote\"back\\slash%41@例子.测试"),
        ] {
            let who = WhoData {
                user_id,
                username,
                email,
                session_id: "5e5e",
            };
            let id = user_id.to_text();
            let resp = ok_written(StatusCode::OK, "OK", |out| who.write_json(&id, out));
            let body = futures::executor::block_on(axum::body::to_bytes(resp.into_body(), 4096))
                .expect("body");
            let written: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(written["data"], serde_json::to_value(&who).expect("serde"));
            let mut h = HeaderMap::new();
            who.write_headers(&id, &mut h);
            let decoded = |name: HeaderName| {
                let raw = h.get(name).expect("set").to_str().expect("ASCII");
                percent_encoding::percent_decode_str(raw)
                    .decode_utf8()
                    .expect("UTF-8")
                    .into_owned()
            };
            assert_eq!(decoded(USERNAME), username);
            assert_eq!(decoded(EMAIL), email);
            assert_eq!(decoded(USER_ID), user_id.to_text());
        }
    }
}
