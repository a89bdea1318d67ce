//! Extractors: the JSON body (parsed once, with the errors of SPEC §3 Robustness), path
//! parameters and query strings, what the middleware learnt about the client, and the session
//! the client presented. Every rejection is an [`ApiError`], so it leaves in the envelope of
//! SPEC §2: none of axum's own `text/plain` rejections reaches a client.
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderValue};
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;
use std::net::IpAddr;

use crate::domain::{SessionId, SessionRecord};
use crate::flows::ClientInfo;
use crate::http::{cookies, error::ApiError, AppState};
use crate::i18n::Lang;

/// A JSON body: `application/json`, at most the policy's size, no duplicate keys, every field of
/// the right type. Anything else is refused before a handler runs.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().eq_ignore_ascii_case("application/json"))
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.core.policy().max_body_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|e| {
                let too_large = std::error::Error::source(&e)
                    .map(|s| s.is::<http_body_util::LengthLimitError>())
                    .unwrap_or(false)
                    || e.to_string().contains("length limit");
                if too_large {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::InvalidJson("the body could not be read".into())
                }
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let msg = inner.to_string();
                ApiError::invalid(&field_of(&msg, path, "body"), msg)
            }
            _ => ApiError::InvalidJson(inner.to_string()),
        }
    })?;
    de.end().map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    Ok(value)
}

/// A path parameter, `axum::extract::Path` with its rejections in the envelope (SPEC §2): a
/// segment that is not UTF-8 once percent-decoded (`/api/sessions/%ff%fe`) or does not parse is
/// `INVALID_INPUT` naming the parameter, not axum's `text/plain` "Invalid URL".
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        match rejection {
            // The client's part: a segment that is not what the route takes.
            PathRejection::FailedToDeserializePathParams(e)
                if e.status() == axum::http::StatusCode::BAD_REQUEST =>
            {
                let field = match e.kind() {
                    ErrorKind::InvalidUtf8InPathParam { key }
                    | ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::DeserializeError { key, .. } => key.clone(),
                    _ => "path".to_owned(),
                };
                ApiError::invalid(&field, e.kind())
            }
            // A route whose pattern and extractor disagree: ours, never the client's.
            other => ApiError::Flow(crate::flows::FlowError::Internal(format!(
                "path extractor: {}",
                other.body_text()
            ))),
        }
    }
}

/// A query string, parsed as `axum::extract::Query` would, with its rejections in the envelope:
/// a missing, duplicated or mistyped key is `INVALID_INPUT` naming it, and so is a key or value
/// that is not UTF-8 once percent-decoded (`?to=%ff`), which `Query` would silently turn into
/// U+FFFD. Keys the type does not name are ignored, as with `Query`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded_key = percent_decode_str(key).decode_utf8();
            let decoded_value = percent_decode_str(value).decode_utf8();
            if decoded_key.is_err() || decoded_value.is_err() {
                let field = percent_decode_str(key).decode_utf8_lossy();
                return Err(ApiError::invalid(
                    &field,
                    "not valid UTF-8 once percent-decoded",
                ));
            }
        }
        let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let msg = e.into_inner().to_string();
                ApiError::invalid(&field_of(&msg, path, "query"), msg)
            })
    }
}

/// The field a deserialization error is about, for `data.field`: serde names missing and
/// duplicate fields only in its message; a value of the wrong type is named by its path, and
/// an error about the whole input by `whole`.
fn field_of(msg: &str, path: String, whole: &str) -> String {
    msg.split('`')
        .nth(1)
        .filter(|_| msg.starts_with("missing field") || msg.starts_with("duplicate field"))
        .map(str::to_owned)
        .unwrap_or_else(|| if path == "." { whole.into() } else { path })
}

/// What the middleware resolved about the client (trusted proxies applied once).
///
/// The headers it keeps are the request's own `HeaderValue`s, which share the request's buffer:
/// made for every request (docs/benchmarks.md), so no copy of them unless a handler reads them.
#[derive(Debug, Clone)]
pub struct ClientMeta {
    pub ip: IpAddr,
    /// The request reached us over HTTPS (directly or per a trusted proxy).
    pub secure: bool,
    pub lang: Lang,
    pub(crate) user_agent: Option<HeaderValue>,
    /// The host of this service as the client addressed it (a trusted proxy's
    /// `X-Forwarded-Host`, else `Host`).
    pub(crate) host: Option<HeaderValue>,
    /// The `Origin` the request came with, if any.
    pub(crate) origin: Option<HeaderValue>,
}

/// A header's text; a value that is not visible ASCII reads as absent, as before.
fn text(v: &Option<HeaderValue>) -> Option<&str> {
    v.as_ref().and_then(|v| v.to_str().ok())
}

impl ClientMeta {
    /// `User-Agent`, empty when there is none.
    pub fn user_agent(&self) -> &str {
        text(&self.user_agent).unwrap_or("")
    }

    /// The host of this service as the client addressed it.
    pub fn host(&self) -> Option<&str> {
        text(&self.host)
    }

    /// The `Origin` the request came with.
    pub fn origin(&self) -> Option<&str> {
        text(&self.origin)
    }

    /// scheme://host of this service as the client addressed it. Built when asked (a
    /// state-changing request's Origin check, a hint) rather than for every request.
    pub fn own_origin(&self) -> Option<String> {
        let scheme = if self.secure { "https" } else { "http" };
        self.host().map(|h| format!("{scheme}://{h}"))
    }

    pub fn info(&self) -> ClientInfo {
        ClientInfo {
            ip: self.ip,
            user_agent: self.user_agent().to_owned(),
            lang: self.lang,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientMeta {
    type Rejection = ApiError;
    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, ApiError> {
        crate::http::context::client_meta().ok_or_else(|| {
            ApiError::Flow(crate::flows::FlowError::Internal(
                "client meta missing".into(),
            ))
        })
    }
}

/// How the client presented its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    None,
    Cookie,
    Bearer,
}

/// The session the client presented, loaded (and renewed when due). An unknown, expired or
/// malformed credential gives `session: None`: it is never adopted.
#[derive(Debug, Clone)]
pub struct Auth {
    pub credential: Credential,
    pub session: Option<SessionRecord>,
}

impl Auth {
    pub fn session(&self) -> Option<&SessionRecord> {
        self.session.as_ref()
    }
}

pub fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (credential, raw) = if let Some(t) = bearer(parts) {
            (Credential::Bearer, Some(t.to_owned()))
        } else if let Some(c) = cookies::read(&parts.headers) {
            (Credential::Cookie, Some(c))
        } else {
            (Credential::None, None)
        };
        let session = match raw.as_deref().and_then(SessionId::parse) {
            Some(id) => state.core.load_session(&id).await?,
            None => {
                // A JWT is never a session id (43 characters of base64url): refused, and the
                // log says what it is.
                if credential == Credential::Bearer
                    && raw
                        .as_deref()
                        .is_some_and(|t| t.starts_with("eyJ") && t.contains('.'))
                {
                    if let Some(meta) = crate::http::context::client_meta() {
                        crate::http::hints::access_token_as_session(&meta);
                    }
                }
                None
            }
        };
        Ok(Auth {
            credential,
            session,
        })
    }
}
