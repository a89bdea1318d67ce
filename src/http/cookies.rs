//! The session cookie (SPEC §3 Sessions): HttpOnly, SameSite, Path=/, Secure decided per request,
//! `__Host-` prefixed when Secure and host-only. SameSite=None forces Secure, since browsers drop
//! a SameSite=None cookie without it.
use axum::http::{header, HeaderMap, HeaderValue};

use crate::domain::SessionId;

pub const NAME: &str = "mailcode_sid";
pub const HOST_NAME: &str = "__Host-mailcode_sid";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

impl SameSite {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "lax" => Some(SameSite::Lax),
            "strict" => Some(SameSite::Strict),
            "none" => Some(SameSite::None),
            _ => None,
        }
    }
    fn attr(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub same_site: SameSite,
    pub domain: Option<String>,
    /// Max-Age, seconds: the session's absolute lifetime; the server enforces the idle timeout.
    pub max_age_secs: u64,
}

impl CookieSettings {
    fn secure(&self, request_secure: bool) -> bool {
        request_secure || self.same_site == SameSite::None
    }

    fn name(&self, secure: bool) -> &'static str {
        if secure && self.domain.is_none() {
            HOST_NAME
        } else {
            NAME
        }
    }

    fn build(&self, value: &str, max_age: u64, request_secure: bool) -> HeaderValue {
        let secure = self.secure(request_secure);
        let mut c = format!(
            "{}={value}; Path=/; HttpOnly; SameSite={}; Max-Age={max_age}",
            self.name(secure),
            self.same_site.attr()
        );
        if secure {
            c.push_str("; Secure");
        }
        if let Some(d) = &self.domain {
            c.push_str("; Domain=");
            c.push_str(d);
        }
        // Only base64url ids and validated settings go in: always a valid header value.
        HeaderValue::from_str(&c)
            .unwrap_or_else(|_| HeaderValue::from_static("mailcode_sid=; Max-Age=0"))
    }

    pub fn set(&self, id: &SessionId, request_secure: bool) -> HeaderValue {
        self.build(id.as_str(), self.max_age_secs, request_secure)
    }

    pub fn clear(&self, request_secure: bool) -> HeaderValue {
        self.build("", 0, request_secure)
    }
}

/// The session id from the Cookie header(s), under either name.
pub fn read(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(s) = value.to_str() else { continue };
        for pair in s.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if (k == NAME || k == HOST_NAME) && !v.is_empty() {
                    return Some(v.to_owned());
                }
            }
        }
    }
    None
}
