//! Server-side hints for integrators (SPEC §4): when a client gets cookies or origins wrong, the
//! log says once (per kind and origin, per minute) what is wrong and which setting fixes it, so a
//! misconfiguration is visible on the server too, not only in the browser's console.
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::http::extract::{ClientMeta, Credential};

const EVERY: Duration = Duration::from_secs(60);

/// True when `(kind, subject)` was not reported within the last minute.
fn first_in_a_while(kind: &str, subject: &str) -> bool {
    static LAST: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());
    let Ok(mut last) = LAST.lock() else {
        return false;
    };
    last.retain(|(_, t)| t.elapsed() < EVERY);
    let id = format!("{kind}\u{1f}{subject}");
    if last.len() >= 256 || last.iter().any(|(k, _)| *k == id) {
        return false;
    }
    last.push((id, Instant::now()));
    true
}

/// A request from an origin that is not allowed.
pub fn origin_rejected(origin: &str, own_origin: Option<&str>, allowed: &[String]) {
    if !first_in_a_while("origin", origin) {
        return;
    }
    // Same host, other scheme: our own page, seen through a TLS proxy we do not trust.
    let host_of = |o: &str| o.split_once("://").map(|(_, h)| h.to_owned());
    if own_origin.is_some() && own_origin.and_then(host_of) == host_of(origin) {
        tracing::warn!(
            origin,
            own_origin = own_origin.unwrap_or(""),
            "request from {origin} looks like this service's own page behind a TLS-terminating proxy: \
             start mailcode with --trust-proxy <the proxy's address> so that X-Forwarded-Proto is believed"
        );
    } else {
        tracing::warn!(
            origin,
            own_origin = own_origin.unwrap_or("(no Host header)"),
            ?allowed,
            "request from origin {origin} rejected: start mailcode with --cors-origin {origin} (or MAILCODE_CORS_ORIGINS) to allow it"
        );
    }
}

/// A code was submitted without the session it was sent to.
pub fn no_session(meta: &ClientMeta, credential: Credential) {
    let origin = meta.origin().unwrap_or("(no Origin header)");
    if !first_in_a_while("no_session", origin) {
        return;
    }
    match credential {
        Credential::None => tracing::warn!(
            origin,
            "a code was submitted without any session cookie or bearer token: the client must send the cookie it got \
             with the code (fetch: credentials: 'include'; axios: withCredentials: true); a page on another origin \
             also needs --cors-origin {origin}; a Secure cookie over plain HTTP is dropped by the browser"
        ),
        _ => tracing::warn!(
            origin,
            "a code was submitted with a session that does not exist (expired, signed out, or from another \
             deployment/secret): the client should ask for a new code"
        ),
    }
}

/// An access token (SPEC §6) was presented as a session: it is for the application's services,
/// and mailcode's routes refuse it.
pub fn access_token_as_session(meta: &ClientMeta) {
    let origin = meta.origin().unwrap_or("(no Origin header)");
    if !first_in_a_while("access_token_as_session", origin) {
        return;
    }
    tracing::warn!(
        origin,
        "an access token (a JWT from POST /api/token) was sent as a session: it is for the application's own \
         services, which verify it with /.well-known/jwks.json; mailcode's routes take the session (the cookie, \
         or the token from sign-in with \"session\": \"token\")"
    );
}

/// `/readyz` found that another secret is the deployment's (`crate::deployment`).
pub fn secret_mismatch(ours: &str, recorded: &str) {
    if !first_in_a_while("secret_mismatch", recorded) {
        return;
    }
    tracing::error!(
        fingerprint = ours,
        deployment_fingerprint = recorded,
        "this instance's server secret is no longer the deployment's (rotated, or another instance recorded its own): \
         codes sent through other instances are refused here, so /readyz answers 503 SECRET_MISMATCH; \
         restart this instance with the deployment's secret file (MAILCODE_SECRET_FILE)"
    );
}
