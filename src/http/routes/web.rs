//! The web page of SPEC §5, embedded in the binary (no build step), and the development outbox
//! page, which exists only with the outbox transport on a loopback address.
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::http::error::{ok, ApiError};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::AppState;

const INDEX: &str = include_str!("../../../web/index.html");
const REGISTER: &str = include_str!("../../../web/register.html");
const APP_JS: &str = include_str!("../../../web/app.js");
const STYLE: &str = include_str!("../../../web/style.css");

pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}

pub async fn register() -> Html<&'static str> {
    Html(REGISTER)
}

pub async fn asset(ApiPath(file): ApiPath<String>) -> Response {
    let (body, mime) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return ApiError::NotFound.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Lists the newest mails of the development outbox.
pub async fn outbox_page(State(s): State<AppState>) -> Result<Response, ApiError> {
    let Some(outbox) = &s.http.dev_outbox else {
        return Err(ApiError::NotFound);
    };
    let entries = outbox
        .list(50)
        .await
        .map_err(|e| ApiError::Flow(crate::flows::FlowError::Internal(e.to_string())))?;
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>mailcode outbox</title>\
         <link rel=\"stylesheet\" href=\"/assets/style.css\"></head><body><main class=\"card\">\
         <h1>Development outbox</h1><p>Mail is not really sent: it is written to ",
    );
    html.push_str(&escape(&outbox.dir().display().to_string()));
    html.push_str(". Start with <code>--smtp-url</code> to send real mail.</p>");
    if entries.is_empty() {
        html.push_str("<p>No mail yet.</p>");
    }
    for e in entries {
        html.push_str(&format!(
            "<article class=\"mail\"><h2>{}</h2><p>To: {} · {}</p><pre>{}</pre></article>",
            escape(&e.subject),
            escape(&e.to),
            crate::clock::rfc3339(e.created_at),
            escape(&e.text)
        ));
    }
    html.push_str("</main></body></html>");
    Ok(Html(html).into_response())
}

#[derive(Deserialize)]
pub struct LatestQuery {
    to: String,
}

/// The newest mail to an address, with the code pulled out, for scripts and browser tests.
pub async fn outbox_latest(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<LatestQuery>,
) -> Result<Response, ApiError> {
    let Some(outbox) = &s.http.dev_outbox else {
        return Err(ApiError::NotFound);
    };
    let want = crate::domain::Email::parse(&q.to)
        .map(|e| e.as_str().to_owned())
        .unwrap_or(q.to);
    let entries = outbox
        .list(500)
        .await
        .map_err(|e| ApiError::Flow(crate::flows::FlowError::Internal(e.to_string())))?;
    let Some(e) = entries.into_iter().find(|e| e.to == want) else {
        return Err(ApiError::NoMail);
    };
    // Six digits standing alone: after a space in English, after `：` in Chinese.
    let code = e
        .subject
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .map(str::to_owned);
    Ok(ok(
        StatusCode::OK,
        "OK",
        json!({"to": e.to, "subject": e.subject, "text": e.text, "code": code}),
    ))
}
