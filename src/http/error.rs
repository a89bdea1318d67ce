//! The one place where errors become responses: the envelope `{code, msg, data}` with a
//! meaningful status, `msg` in the request's language (SPEC §2). Internal failures are logged
//! with the request id and the cause; the client sees `INTERNAL` and the id, nothing more.
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};

use crate::domain::InvalidUsername;
use crate::flows::FlowError;
use crate::http::context;
use crate::i18n;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Flow(#[from] FlowError),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid input in {field}: {reason}")]
    InvalidInput { field: String, reason: String },
    /// `INVALID_INPUT` for the field `username`, whose message names the rule (SPEC §3 Accounts).
    #[error("invalid username: {0}")]
    InvalidUsername(InvalidUsername),
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("origin rejected: {origin}")]
    OriginRejected {
        origin: String,
        /// This service's own origin as it saw the request (Host and scheme), for diagnosis.
        own_origin: Option<String>,
    },
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("no mail")]
    NoMail,
    #[error("timeout")]
    Timeout,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Flow(FlowError::Store(e))
    }
}

impl ApiError {
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        ApiError::InvalidInput {
            field: field.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// The stable machine-readable code, the HTTP status, the argument of the message and data.
    fn parts(&self) -> (&'static str, StatusCode, String, Value) {
        use FlowError as F;
        use StatusCode as S;
        match self {
            ApiError::Flow(f) => match f {
                F::NoSession => (
                    "NO_SESSION",
                    S::UNAUTHORIZED,
                    String::new(),
                    json!({"hint": "credentials: 'include'"}),
                ),
                F::CodeInvalid { attempts_left } => (
                    "CODE_INVALID",
                    S::UNAUTHORIZED,
                    attempts_left
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "0".into()),
                    json!({ "attempts_left": attempts_left }),
                ),
                F::CodeExpired => ("CODE_EXPIRED", S::UNAUTHORIZED, String::new(), Value::Null),
                F::CodeAttemptsExceeded => (
                    "CODE_ATTEMPTS_EXCEEDED",
                    S::UNAUTHORIZED,
                    String::new(),
                    json!({"attempts_left": 0}),
                ),
                F::LoginFailed { attempts_left } => (
                    "LOGIN_FAILED",
                    S::UNAUTHORIZED,
                    String::new(),
                    json!({ "attempts_left": attempts_left }),
                ),
                F::NotLoggedIn => ("NOT_LOGGED_IN", S::UNAUTHORIZED, String::new(), Value::Null),
                F::UsernameTaken => ("USERNAME_TAKEN", S::CONFLICT, String::new(), Value::Null),
                F::EmailTaken => ("EMAIL_TAKEN", S::CONFLICT, String::new(), Value::Null),
                F::RateLimited { retry_after_secs } => (
                    "RATE_LIMITED",
                    S::TOO_MANY_REQUESTS,
                    retry_after_secs.to_string(),
                    json!({ "retry_after": retry_after_secs }),
                ),
                F::InvalidEmail(reason) => (
                    "INVALID_EMAIL",
                    S::BAD_REQUEST,
                    reason.clone(),
                    json!({"field": "email"}),
                ),
                F::SessionNotFound => (
                    "SESSION_NOT_FOUND",
                    S::NOT_FOUND,
                    String::new(),
                    Value::Null,
                ),
                F::NoCode => ("NO_CODE", S::NOT_FOUND, String::new(), Value::Null),
                F::PasswordlessDisabled => (
                    "PASSWORDLESS_DISABLED",
                    S::NOT_FOUND,
                    String::new(),
                    Value::Null,
                ),
                F::Store(StoreError::Unavailable(_)) => (
                    "STORE_UNAVAILABLE",
                    S::SERVICE_UNAVAILABLE,
                    String::new(),
                    Value::Null,
                ),
                F::Store(StoreError::Internal(_)) | F::Internal(_) => internal(),
            },
            ApiError::InvalidJson(why) => {
                ("INVALID_JSON", S::BAD_REQUEST, why.clone(), Value::Null)
            }
            ApiError::InvalidInput { field, reason } => (
                "INVALID_INPUT",
                S::BAD_REQUEST,
                field.clone(),
                json!({ "field": field, "reason": reason }),
            ),
            ApiError::InvalidUsername(e) => (
                "INVALID_INPUT",
                S::BAD_REQUEST,
                "username".into(),
                json!({ "field": "username", "reason": e.to_string(), "rule": e.rule() }),
            ),
            ApiError::PayloadTooLarge => (
                "PAYLOAD_TOO_LARGE",
                S::PAYLOAD_TOO_LARGE,
                String::new(),
                Value::Null,
            ),
            ApiError::UnsupportedMediaType => (
                "UNSUPPORTED_MEDIA_TYPE",
                S::UNSUPPORTED_MEDIA_TYPE,
                String::new(),
                Value::Null,
            ),
            ApiError::OriginRejected { origin, own_origin } => (
                "ORIGIN_REJECTED",
                S::FORBIDDEN,
                origin.clone(),
                json!({ "origin": origin, "own_origin": own_origin }),
            ),
            ApiError::NotFound => ("NOT_FOUND", S::NOT_FOUND, String::new(), Value::Null),
            ApiError::MethodNotAllowed => (
                "METHOD_NOT_ALLOWED",
                S::METHOD_NOT_ALLOWED,
                String::new(),
                Value::Null,
            ),
            ApiError::NoMail => ("NO_MAIL", S::NOT_FOUND, String::new(), Value::Null),
            ApiError::Timeout => (
                "TIMEOUT",
                S::SERVICE_UNAVAILABLE,
                String::new(),
                Value::Null,
            ),
        }
    }
}

fn internal() -> (&'static str, StatusCode, String, Value) {
    let id = context::request_id();
    (
        "INTERNAL",
        StatusCode::INTERNAL_SERVER_ERROR,
        id.clone(),
        json!({ "request_id": id }),
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, status, arg, data) = self.parts();
        match status {
            StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(request_id = %context::request_id(), error = %self, "internal error")
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                tracing::warn!(request_id = %context::request_id(), error = %self, "unavailable")
            }
            _ => tracing::debug!(code, "request refused"),
        }
        let msg = match &self {
            ApiError::InvalidUsername(e) => {
                i18n::invalid_username(e.rule(), &e.detail(), context::lang())
            }
            _ => i18n::message(code, context::lang(), &arg),
        };
        let mut resp = write_envelope(status, code, &msg, |body| {
            serde_json::to_writer(body, &data)
        });
        if let ApiError::Flow(FlowError::RateLimited { retry_after_secs }) = self {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// The envelope of every answer, `{"code":…,"msg":…,"data":…}`, in the current request's
/// language, with the handler's data serialized straight into it.
pub fn envelope(status: StatusCode, code: &str, arg: &str, data: impl Serialize) -> Response {
    let msg = i18n::message(code, context::lang(), arg);
    write_envelope(status, code, &msg, |body| {
        serde_json::to_writer(body, &data)
    })
}

/// [`envelope`] with the data written by `data`, which must write one JSON value.
///
/// The envelope's own keys are written as they are rather than through serde (which escapes
/// every key it writes), into a `Vec` sized for most answers rather than `axum::Json`'s
/// `BytesMut` (128 bytes, grown while writing, each of serde's small writes going through
/// `BufMut`): docs/benchmarks.md, the hot path's answer.
fn write_envelope(
    status: StatusCode,
    code: &str,
    msg: &str,
    data: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
) -> Response {
    let mut body = Vec::with_capacity(384);
    let written = (|| {
        body.extend_from_slice(b"{\"code\":");
        serde_json::to_writer(&mut body, code)?;
        body.extend_from_slice(b",\"msg\":");
        serde_json::to_writer(&mut body, msg)?;
        body.extend_from_slice(b",\"data\":");
        data(&mut body)?;
        body.push(b'}');
        Ok::<_, serde_json::Error>(())
    })();
    match written {
        Ok(()) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        // Only a type that cannot be JSON fails here (a map with non-string keys): a bug. Its
        // answer is still the envelope (SPEC §2): a `Value`, whose strings-only keys cannot fail.
        Err(e) => {
            let id = context::request_id();
            tracing::error!(request_id = %id, error = %e, code, "an answer could not be serialized");
            let msg = i18n::message("INTERNAL", context::lang(), &id);
            let body =
                json!({"code": "INTERNAL", "msg": msg, "data": {"request_id": id}}).to_string();
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response()
        }
    }
}

/// A success envelope whose data `data` writes as JSON itself (see [`JsonOut`]).
pub fn ok_written(status: StatusCode, code: &str, data: impl FnOnce(&mut JsonOut)) -> Response {
    let msg = i18n::message(code, context::lang(), "");
    write_envelope(status, code, &msg, |body| {
        let mut out = JsonOut { body, failed: None };
        data(&mut out);
        out.failed.map_or(Ok(()), Err)
    })
}

/// JSON written piece by piece: fixed fragments as they are, strings escaped. For an answer
/// on the hot path (docs/benchmarks.md), where serde's work per field (every key escaped, a call per
/// separator) was as much as the rest of the handler.
pub struct JsonOut<'a> {
    body: &'a mut Vec<u8>,
    failed: Option<serde_json::Error>,
}

impl JsonOut<'_> {
    /// A fragment of JSON, written as it is: keys, braces, separators.
    pub fn raw(&mut self, fragment: &str) {
        self.body.extend_from_slice(fragment.as_bytes());
    }
    /// A JSON string of `s`, quoted and escaped.
    pub fn string(&mut self, s: &str) {
        if let Err(e) = serde_json::to_writer(&mut *self.body, s) {
            self.failed.get_or_insert(e);
        }
    }
}

/// A success envelope.
pub fn ok(status: StatusCode, code: &str, data: impl Serialize) -> Response {
    envelope(status, code, "", data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Even an answer that serde cannot write (a bug) leaves as the envelope, never as text.
    #[test]
    fn an_answer_that_cannot_be_serialized_is_still_the_envelope() {
        let unwritable: std::collections::BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        let resp = envelope(StatusCode::OK, "OK", "", unwritable);
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let body = futures::executor::block_on(axum::body::to_bytes(resp.into_body(), 4096))
            .expect("body");
        let v: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["code"], "INTERNAL");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(v["data"]["request_id"].is_string());
    }
}
