//! The request pipeline around every route: request id and language, the client's address and
//! scheme (trusting `X-Forwarded-*` only from configured proxies), the Origin check for
//! state-changing requests (CSRF), the 10 s answer bound, `Cache-Control: no-store`, logs and
//! metrics.
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use std::net::IpAddr;
use std::time::Instant;
use tracing::Instrument;

use crate::http::context::{RequestContext, RequestId, CURRENT};
use crate::http::error::ApiError;
use crate::http::extract::ClientMeta;
use crate::http::{App, AppState};
use crate::i18n::Lang;

/// Runs a request from `peer` through the pipeline to its route ([`App::route`]).
pub async fn pipeline(app: &App, peer: IpAddr, req: Request) -> Response {
    let state = app.state();
    let started = Instant::now();
    let id = RequestId::random();
    let lang = Lang::from_accept_language(
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let meta = client_meta(&state.http.trusted_proxies, peer, req.headers(), lang);
    let method = req.method().clone();
    // Assets and the published keys say how long they may be kept; every other answer is
    // `no-store`.
    let cacheable = {
        let path = req.uri().path();
        path.starts_with("/assets/") || path.starts_with("/.well-known/")
    };

    // Every log line of this request, the handler's included, carries the request id.
    // At debug level, as the access line: creating an enabled span on every request is a real
    // cost on the hot path. Errors name the request id themselves (see `error.rs`).
    let span = tracing::debug_span!("request", id = %id, %method, path = %req.uri().path());
    // Forward authentication asks about the application's request, whose method the proxy
    // names (SPEC §6): its CSRF check is that request's.
    let checked_method = if req.uri().path() == crate::http::routes::AUTH_CHECK {
        forwarded_method(req.headers()).unwrap_or_else(|| method.clone())
    } else {
        method.clone()
    };
    let origin_problem = check_origin(state, &meta, &checked_method, req.headers());
    let ctx = RequestContext { id, lang, meta };
    let limit = state.core.policy().request_timeout;
    let mut resp = CURRENT
        .scope(
            ctx,
            async move {
                if let Some((origin, own_origin)) = origin_problem {
                    return ApiError::OriginRejected { origin, own_origin }.into_response();
                }
                match tokio::time::timeout(limit, app.route(req)).await {
                    Ok(r) => r,
                    Err(_) => ApiError::Timeout.into_response(),
                }
            }
            .instrument(span.clone()),
        )
        .await;

    let h = resp.headers_mut();
    if !cacheable {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        h.insert("x-request-id", v);
    }
    let status = resp.status().as_u16();
    let secs = started.elapsed().as_secs_f64();
    crate::metrics::http().record(status, secs);
    // Debug, like tower-http's TraceLayer: a line per request costs more than the request itself
    // on the hot path; `RUST_LOG=mailcode=debug` shows them. Errors and hints are logged anyway.
    tracing::debug!(parent: &span, status, ms = secs * 1000.0, "answered");
    resp
}

/// Resolves the client address and scheme. `X-Forwarded-For` is read right to left, skipping
/// trusted proxies, so a client cannot pick its own address by prepending one.
pub fn client_meta(trusted: &[IpNet], peer: IpAddr, headers: &HeaderMap, lang: Lang) -> ClientMeta {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer_trusted = is_trusted(&peer);
    let mut ip = peer;
    let mut secure = false;
    if peer_trusted {
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .collect();
        if let Some(first_untrusted) = hops.iter().rev().find(|h| !is_trusted(h)) {
            ip = *first_untrusted;
        } else if let Some(leftmost) = hops.first() {
            ip = *leftmost;
        }
        secure = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("https")
            })
            .unwrap_or(false);
    }
    // The host the client addressed: a trusted proxy's X-Forwarded-Host (its first value, a
    // copy), else Host (shared with the request).
    let forwarded_host = peer_trusted
        .then(|| {
            headers
                .get("x-forwarded-host")
                .and_then(|v| v.to_str().ok())
        })
        .flatten()
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .and_then(|h| HeaderValue::from_str(h).ok());
    ClientMeta {
        ip,
        secure,
        lang,
        user_agent: headers.get(header::USER_AGENT).cloned(),
        host: forwarded_host.or_else(|| headers.get(header::HOST).cloned()),
        origin: headers.get(header::ORIGIN).cloned(),
    }
}

/// SPEC §3 Cross-origin and CSRF: a state-changing request that a browser could have sent with
/// our cookie must come from our own origin or an allowed one. Bearer requests are exempt (a
/// browser never attaches a bearer token by itself); so are clients that send none of the
/// headers (curl, servers), which carry no ambient cookie either.
fn check_origin(
    state: &AppState,
    meta: &ClientMeta,
    method: &Method,
    headers: &HeaderMap,
) -> Option<(String, Option<String>)> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if safe && origin.is_none() {
        // Nothing to check or hint: the own origin is not even built (the hot path's case).
        return None;
    }
    let own_origin = meta.own_origin();
    let allowed = |origin: &str| {
        own_origin.as_deref() == Some(origin)
            || state.http.cors_origins.iter().any(|o| o == origin)
            || state.core.token_issuer() == origin
    };
    if safe {
        // Not refused here (CORS decides what the page may read), but a foreign origin is
        // worth a hint: a CORS preflight is all the server sees of a blocked `fetch`.
        if let Some(o) = origin.filter(|o| !allowed(o)) {
            crate::http::hints::origin_rejected(o, own_origin.as_deref(), &state.http.cors_origins);
        }
        return None;
    }
    let has_bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..7))
        .map(|v| v.eq_ignore_ascii_case("bearer "))
        .unwrap_or(false);
    if has_bearer {
        return None;
    }
    let rejected = if let Some(o) = origin {
        (!allowed(o)).then(|| o.to_owned())
    } else if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        (!matches!(site, "same-origin" | "none")).then(|| format!("Sec-Fetch-Site: {site}"))
    } else if let Some(r) = headers.get(header::REFERER).and_then(|v| v.to_str().ok()) {
        let ref_origin = referer_origin(r);
        (!allowed(&ref_origin)).then_some(ref_origin)
    } else {
        None
    };
    if let Some(o) = &rejected {
        crate::http::hints::origin_rejected(o, own_origin.as_deref(), &state.http.cors_origins);
    }
    rejected.map(|o| (o, own_origin))
}

/// The method of the request a proxy asks about: `X-Forwarded-Method` (Traefik, Caddy) or
/// `X-Original-Method` (the nginx convention). One that is not a method counts as unsafe: a
/// proxy that sends junk gets the strict check.
fn forwarded_method(headers: &HeaderMap) -> Option<Method> {
    let raw = headers
        .get("x-forwarded-method")
        .or_else(|| headers.get("x-original-method"))?;
    Some(Method::from_bytes(raw.as_bytes()).unwrap_or(Method::POST))
}

fn referer_origin(r: &str) -> String {
    let Some((scheme, rest)) = r.split_once("://") else {
        return r.to_owned();
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!("{scheme}://{host}")
}
