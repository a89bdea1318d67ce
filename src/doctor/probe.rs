//! The HTTP requests doctor makes, as a page on the target's origin would send them, and what it
//! reads back. No cookie store and no redirects followed: the session cookie is read from
//! `Set-Cookie` and sent back by hand, so that `cookie` can judge it the way a browser does.
//! Nothing here judges an answer; that is `checks`.
use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

use super::target::Target;
use crate::i18n::Lang;

/// Every request of the probe gives up after this long.
const TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct Probe<'a> {
    client: reqwest::Client,
    target: &'a Target,
}

/// An answer as the checks read it.
#[derive(Debug, Clone)]
pub(super) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Option<Value>,
}

/// Why a request got no answer, in words.
pub(super) struct NetError {
    pub connect: bool,
    pub timeout: bool,
    pub tls: bool,
    pub detail: String,
}

pub(super) type Sent = Result<Answer, NetError>;

impl<'a> Probe<'a> {
    pub fn new(target: &'a Target) -> Result<Probe<'a>, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mailcode-doctor/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Probe { client, target })
    }

    /// `GET path`, as a page's fetch without credentials.
    pub async fn get(&self, path: &str) -> Sent {
        self.send(self.request(Method::GET, path)).await
    }

    /// `n` more answers of `GET /readyz`, each perhaps from another instance; the ones that got
    /// no answer are left out.
    pub async fn readyz_again(&self, n: usize) -> Vec<Answer> {
        let mut answers = Vec::with_capacity(n);
        for _ in 0..n {
            if let Ok(a) = self.get("/readyz").await {
                answers.push(a);
            }
        }
        answers
    }

    /// `POST /api/login/email-code` with the page's `Origin`, as its fetch sends it.
    pub async fn request_code(&self) -> Sent {
        let req = self
            .request(Method::POST, "/api/login/email-code")
            .header(header::ORIGIN, &self.target.origin)
            .json(&json!({ "email": self.target.email }));
        self.send(req).await
    }

    /// A second code request as a non-browser client sends it (no `Origin`), under another
    /// purpose so that the per-address cooldown does not refuse it.
    pub async fn request_code_without_origin(&self) -> Sent {
        let req = self
            .request(Method::POST, "/api/register/email-code")
            .json(&json!({ "email": self.target.email }));
        self.send(req).await
    }

    /// `GET /api/login/email-code/status` with the cookie `name=value` sent back by hand.
    pub async fn status_with_cookie(&self, name: &str, value: &str) -> Sent {
        let mut req = self
            .request(Method::GET, "/api/login/email-code/status")
            .header(header::COOKIE, format!("{name}={value}"));
        if self.target.cross_origin {
            req = req.header(header::ORIGIN, &self.target.origin);
        }
        self.send(req).await
    }

    /// The preflight a browser sends before the page's JSON POST.
    pub async fn preflight(&self) -> Sent {
        let req = self
            .request(Method::OPTIONS, "/api/login/email-code")
            .header(header::ORIGIN, &self.target.origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type");
        self.send(req).await
    }

    /// A request in the report's language, so that mailcode's `msg` quoted in it matches.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let accept = match self.target.lang {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        };
        self.client
            .request(method, self.target.endpoint(path))
            .header(header::ACCEPT_LANGUAGE, accept)
    }

    async fn send(&self, req: RequestBuilder) -> Sent {
        let resp = req.send().await.map_err(describe)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(describe)?;
        let body = serde_json::from_slice::<Value>(&bytes).ok();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

fn describe(e: reqwest::Error) -> NetError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    let lower = detail.to_ascii_lowercase();
    NetError {
        connect: e.is_connect(),
        timeout: e.is_timeout(),
        tls: lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake"),
        detail,
    }
}

impl Answer {
    /// `{code, msg, data}`, mailcode's envelope.
    pub fn is_envelope(&self) -> bool {
        self.body.as_ref().is_some_and(|b| {
            b.get("code").is_some_and(Value::is_string)
                && b.get("msg").is_some_and(Value::is_string)
                && b.get("data").is_some()
        })
    }

    pub fn code(&self) -> &str {
        self.field("code").unwrap_or("")
    }

    pub fn msg(&self) -> &str {
        self.field("msg").unwrap_or("")
    }

    fn field(&self, key: &str) -> Option<&str> {
        self.body.as_ref()?.get(key)?.as_str()
    }

    pub fn data(&self, key: &str) -> Option<&Value> {
        self.body.as_ref()?.get("data")?.get(key)
    }

    /// `data.key` when it is a string.
    pub fn data_text(&self, key: &str) -> Option<&str> {
        self.data(key).and_then(Value::as_str)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// `200 CODE_SENT`, or `200` when the body is not an envelope.
    pub fn status_line(&self) -> String {
        let code = self.code();
        if code.is_empty() {
            self.status.as_u16().to_string()
        } else {
            format!("{} {code}", self.status.as_u16())
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An answer as the probe would have read it, for the checks' tests.
    pub fn answer(status: u16, headers: &[(&str, &str)], body: Option<Value>) -> Answer {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
                value.parse().expect("a header value"),
            );
        }
        Answer {
            status: StatusCode::from_u16(status).expect("a status"),
            headers: map,
            body,
        }
    }
}
