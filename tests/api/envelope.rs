//! SPEC §2: every answer is the envelope `{code, msg, data}` with a stable `code`, rejections of
//! paths, queries, headers and bodies included. The walk takes its routes from the OpenAPI
//! document the app serves (a new route is covered without editing this file), adds the pages
//! and the development routes, and sends each of them wrong methods, malformed path segments
//! and query strings, bad headers and bad bodies. Nothing in it is a valid request that could
//! change something, so afterwards nothing has changed: no cookie was set and no mail queued.
//!
//! Out of reach, and so not walked: requests that hyper refuses before the app sees them (a
//! malformed request line or header, a head above the 64 KiB read buffer, more than 100
//! headers, conflicting `Content-Length`s), which hyper answers itself with an empty 400 or 431
//! and a closed connection, and offers no hook to answer otherwise.
use crate::helpers::*;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Client, Method};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Routes the OpenAPI document does not list: the pages of SPEC §5 and the development outbox.
const UNLISTED: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/register"),
    ("GET", "/assets/{file}"),
    ("GET", "/dev/outbox"),
    ("GET", "/dev/outbox/latest"),
];

/// Successful answers whose format is not the envelope: the pages and their assets, Prometheus
/// text, the OpenAPI document itself, and formats other standards fix (`/.well-known/`: JWKS,
/// OpenID discovery). Their rejections are envelopes all the same.
fn success_is_its_own_format(template: &str) -> bool {
    matches!(
        template,
        "/" | "/register" | "/dev/outbox" | "/metrics" | "/api/openapi.json"
    ) || template.starts_with("/assets/")
        || template.starts_with("/.well-known/")
}

#[derive(Debug, Clone)]
struct Route {
    method: Method,
    template: String,
}

impl Route {
    /// The route's path with each `{param}` filled by `value(param)`.
    fn path(&self, value: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        let mut rest = self.template.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            out.push_str(&rest[..open]);
            out.push_str(&value(&rest[open + 1..open + close]));
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The route's path with plausible parameters: it reaches the handler.
    fn plain_path(&self) -> String {
        self.path(|param| match param {
            "file" => "style.css".into(),
            _ => "abcdefABCDEF0123456789".into(),
        })
    }

    fn has_params(&self) -> bool {
        self.template.contains('{')
    }

    fn takes_body(&self) -> bool {
        matches!(self.method, Method::POST | Method::PUT | Method::PATCH)
    }
}

/// Every route: the OpenAPI document's, then the unlisted ones.
async fn routes(app: &TestApp) -> Vec<Route> {
    let doc = app.get(&bare(), "/api/openapi.json").await;
    assert_eq!(doc.status, 200, "the OpenAPI document: {:?}", doc.body);
    let mut routes = Vec::new();
    for (template, item) in doc.body["paths"]
        .as_object()
        .expect("the document lists paths")
    {
        for method in item.as_object().expect("a path item").keys() {
            if let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) {
                routes.push(Route {
                    method,
                    template: template.clone(),
                });
            }
        }
    }
    assert!(
        routes.len() >= 16,
        "the OpenAPI document lists too few routes: {routes:?}"
    );
    for (method, template) in UNLISTED {
        routes.push(Route {
            method: Method::from_bytes(method.as_bytes()).expect("a method"),
            template: (*template).to_owned(),
        });
    }
    routes
}

/// One request of the walk and what it got.
struct Probe {
    what: String,
    template: String,
    method: Method,
}

/// Checks one answer; returns what is wrong with it.
fn problems(probe: &Probe, a: &Answer) -> Vec<String> {
    let mut wrong = Vec::new();
    let status = a.status.as_u16();
    if !(200..500).contains(&status) {
        wrong.push(format!("status {status}"));
    }
    if let Some(c) = a.set_cookie() {
        // Only a cookie being cleared (logout with a garbage cookie) may come back.
        if !c.contains("Max-Age=0") {
            wrong.push(format!("sets a cookie: {c}"));
        }
    }
    if a.status.is_success() && success_is_its_own_format(&probe.template) {
        return wrong;
    }
    let content_type = a
        .headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/json" {
        wrong.push(format!("content-type {content_type:?}"));
    }
    if probe.method == Method::HEAD {
        // No body in an answer to HEAD, by HTTP; the headers are the envelope's.
        return wrong;
    }
    let Some(body) = a.body.as_object() else {
        wrong.push(format!("body is not a JSON object: {:?}", a.body));
        return wrong;
    };
    let mut keys: Vec<&str> = body.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if keys != ["code", "data", "msg"] {
        wrong.push(format!("keys {keys:?}"));
    }
    let code = a.code();
    if code.is_empty()
        || !code.starts_with(|c: char| c.is_ascii_uppercase())
        || !code.chars().all(|c| c.is_ascii_uppercase() || c == '_')
    {
        wrong.push(format!("code {:?}", body.get("code")));
    }
    // "Error." is i18n's answer for a code it has no message for.
    if a.msg().is_empty() || a.msg() == "Error." || a.msg() == "错误。" {
        wrong.push(format!("msg {:?} for {code}", body.get("msg")));
    }
    wrong
}

struct Walk<'a> {
    app: &'a TestApp,
    client: Client,
    failures: Vec<String>,
    sent: usize,
}

impl Walk<'_> {
    async fn check(&mut self, probe: Probe, req: reqwest::RequestBuilder) -> Option<Answer> {
        self.sent += 1;
        let resp = match req.timeout(Duration::from_secs(15)).send().await {
            Ok(r) => r,
            Err(e) => {
                self.failures
                    .push(format!("{}: no answer: {e}", probe.what));
                return None;
            }
        };
        let a = answer(resp).await;
        let wrong = problems(&probe, &a);
        if !wrong.is_empty() {
            self.failures.push(format!(
                "{} -> {} {}: {}",
                probe.what,
                a.status.as_u16(),
                short(&a.body),
                wrong.join("; ")
            ));
        }
        Some(a)
    }

    /// `method path` with the given headers and body.
    async fn send(
        &mut self,
        route: &Route,
        method: Method,
        path: &str,
        headers: &[(&str, &[u8])],
        body: Option<&[u8]>,
        label: &str,
    ) -> Option<Answer> {
        let mut req = self.client.request(method.clone(), self.app.url(path));
        for (name, value) in headers {
            let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) else {
                panic!("the test's own header {name}: {value:?} is not a header");
            };
            req = req.header(n, v);
        }
        if let Some(b) = body {
            req = req.body(b.to_vec());
        }
        let shown_path: String = path.chars().take(80).collect();
        let probe = Probe {
            what: format!("{method} {shown_path} [{label}]"),
            template: route.template.clone(),
            method,
        };
        self.check(probe, req).await
    }
}

fn short(body: &Value) -> String {
    let s = body.to_string();
    s.chars().take(160).collect()
}

const JSON: (&str, &[u8]) = ("content-type", b"application/json");

/// A labelled set of headers, each a name and its raw value.
type HeaderSet = (&'static str, Vec<(&'static str, Vec<u8>)>);

/// A labelled body with the content type it is sent with.
type Body = (&'static str, Option<&'static [u8]>, Vec<u8>);

/// Header sets that are wrong, garbage, duplicated or oversized, sent to every route.
fn bad_headers() -> Vec<HeaderSet> {
    let big = |n: usize| vec![b'a'; n];
    let one = |name: &'static str, value: &[u8]| vec![(name, value.to_vec())];
    vec![
        (
            "content-type text/plain",
            one("content-type", b"text/plain"),
        ),
        ("content-type garbage", one("content-type", b";;;/=,\t*")),
        ("content-type not ASCII", one("content-type", b"\xff\xfe")),
        (
            "content-type twice",
            vec![
                ("content-type", b"text/plain".to_vec()),
                ("content-type", b"application/json".to_vec()),
            ],
        ),
        (
            "content-type with a charset",
            one("content-type", b"application/json; charset=utf-16"),
        ),
        ("origin garbage", one("origin", b"garbage")),
        ("origin null", one("origin", b"null")),
        ("origin foreign", one("origin", b"http://evil.example")),
        ("origin not ASCII", one("origin", b"http://\xff\xfe")),
        ("origin empty", one("origin", b"")),
        (
            "origin twice",
            vec![
                ("origin", b"http://evil.example".to_vec()),
                ("origin", b"garbage".to_vec()),
            ],
        ),
        (
            "sec-fetch-site cross-site",
            one("sec-fetch-site", b"cross-site"),
        ),
        ("sec-fetch-site garbage", one("sec-fetch-site", b"\xff")),
        ("referer garbage", one("referer", b"::::/\xff")),
        ("authorization scheme only", one("authorization", b"Bearer")),
        (
            "authorization empty token",
            one("authorization", b"Bearer "),
        ),
        (
            "authorization garbage token",
            one("authorization", b"Bearer a b\tc"),
        ),
        (
            "authorization not ASCII",
            one("authorization", b"Bearer \xff\xfe"),
        ),
        ("authorization basic", one("authorization", b"Basic Og==")),
        ("authorization garbage", one("authorization", b"!!!")),
        ("authorization oversized", {
            let mut v = b"Bearer ".to_vec();
            v.extend(big(16 * 1024));
            one("authorization", &v)
        }),
        (
            "authorization twice",
            vec![
                ("authorization", b"Bearer x".to_vec()),
                ("authorization", b"Bearer y".to_vec()),
            ],
        ),
        ("cookie garbage", one("cookie", b";;==;=;mailcode_sid")),
        ("cookie empty session", one("cookie", b"mailcode_sid=")),
        (
            "cookie forged session",
            one("cookie", b"mailcode_sid=forged"),
        ),
        (
            "cookie forged host session",
            one(
                "cookie",
                b"__Host-mailcode_sid=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
        ),
        ("cookie not ASCII", one("cookie", b"mailcode_sid=\xff\xfe")),
        ("cookie oversized", {
            let mut v = b"mailcode_sid=".to_vec();
            v.extend(big(32 * 1024));
            one("cookie", &v)
        }),
        (
            "cookie twice",
            vec![
                ("cookie", b"mailcode_sid=a".to_vec()),
                ("cookie", b"mailcode_sid=b".to_vec()),
            ],
        ),
        (
            "accept-language garbage",
            one("accept-language", b"zh;q=abc,,;;="),
        ),
        ("accept-language zh", one("accept-language", b"zh-CN")),
        ("accept-language not ASCII", one("accept-language", b"\xff")),
        (
            "x-forwarded-for garbage",
            one("x-forwarded-for", b"not an address, ::::"),
        ),
        ("host garbage", one("host", b"\xff\xfe:99999")),
        ("an oversized header", one("x-junk", &big(32 * 1024))),
        ("many headers", {
            const NAMES: [&str; 60] = [
                "x-h00", "x-h01", "x-h02", "x-h03", "x-h04", "x-h05", "x-h06", "x-h07", "x-h08",
                "x-h09", "x-h10", "x-h11", "x-h12", "x-h13", "x-h14", "x-h15", "x-h16", "x-h17",
                "x-h18", "x-h19", "x-h20", "x-h21", "x-h22", "x-h23", "x-h24", "x-h25", "x-h26",
                "x-h27", "x-h28", "x-h29", "x-h30", "x-h31", "x-h32", "x-h33", "x-h34", "x-h35",
                "x-h36", "x-h37", "x-h38", "x-h39", "x-h40", "x-h41", "x-h42", "x-h43", "x-h44",
                "x-h45", "x-h46", "x-h47", "x-h48", "x-h49", "x-h50", "x-h51", "x-h52", "x-h53",
                "x-h54", "x-h55", "x-h56", "x-h57", "x-h58", "x-h59",
            ];
            NAMES.iter().map(|n| (*n, b"v".to_vec())).collect()
        }),
    ]
}

/// Bodies that are not JSON, JSON of the wrong shape, or empty, with the content type sent.
fn bad_bodies() -> Vec<Body> {
    let json = Some(&b"application/json"[..]);
    let mut deep = "[".repeat(2000);
    deep.push_str(&"]".repeat(2000));
    vec![
        ("empty, no content type", None, Vec::new()),
        ("empty JSON", json, Vec::new()),
        ("not JSON", json, b"hello".to_vec()),
        ("truncated JSON", json, b"{\"email\": ".to_vec()),
        ("trailing garbage", json, b"{} x".to_vec()),
        ("not UTF-8", json, b"{\"email\": \"\xff\xfe\"}".to_vec()),
        ("an array", json, b"[]".to_vec()),
        ("null", json, b"null".to_vec()),
        ("a string", json, b"\"email\"".to_vec()),
        ("a number", json, b"12".to_vec()),
        ("an empty object", json, b"{}".to_vec()),
        (
            "fields of the wrong type",
            json,
            br#"{"email":1,"code":[],"username":{},"password":null,"new_password":true,"session":7}"#.to_vec(),
        ),
        (
            "duplicate keys",
            json,
            br#"{"email":"a@example.com","email":"b@example.com"}"#.to_vec(),
        ),
        ("deeply nested", json, deep.into_bytes()),
        (
            "form-encoded",
            Some(&b"application/x-www-form-urlencoded"[..]),
            b"email=a%40example.com".to_vec(),
        ),
        ("text", Some(&b"text/plain"[..]), b"{}".to_vec()),
        ("above 16 KiB", json, {
            let mut b = br#"{"email":""#.to_vec();
            b.extend(vec![b'a'; 20 * 1024]);
            b.extend(br#""}"#);
            b
        }),
    ]
}

/// Path segments for a route's parameters that are malformed or overlong.
const BAD_SEGMENTS: &[(&str, &str)] = &[
    ("invalid UTF-8", "%ff%fe"),
    ("lone percent", "%"),
    ("bad percent", "%zz"),
    ("NUL", "%00"),
    ("encoded slash", "a%2Fb"),
    ("encoded dots", "%2e%2e"),
    ("overlong UTF-8", "%c0%af"),
];

const BAD_QUERIES: &[(&str, &str)] = &[
    ("empty to", "to="),
    ("to invalid UTF-8", "to=%ff"),
    ("key invalid UTF-8", "%ff=1"),
    ("a duplicated key", "a=1&a=2"),
    ("to twice", "to=a%40example.com&to=b%40example.com"),
    ("lone percent", "to=%"),
    ("bare key", "to"),
    ("separators only", "&&==&"),
];

#[tokio::test]
async fn every_route_answers_every_malformed_request_with_the_envelope() {
    let app = spawn_with(|s| s.passwordless = true).await;
    let routes = routes(&app).await;
    // The development routes exist here (outbox transport, loopback), so the walk reaches them.
    app.get(&bare(), "/dev/outbox/latest?to=a%40example.com")
        .await
        .expect(404, "NO_MAIL");
    let mut walk = Walk {
        app: &app,
        client: bare(),
        failures: Vec::new(),
        sent: 0,
    };
    let brew = Method::from_bytes(b"BREW").expect("a method");
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
        brew,
    ];
    let bodies = bad_bodies();
    let headers = bad_headers();
    for route in &routes {
        let path = route.plain_path();
        // Every method, the route's own included, bare and from a foreign page (CORS, and a
        // preflight for OPTIONS).
        for m in &methods {
            let a = walk.send(route, m.clone(), &path, &[], None, "bare").await;
            // The document and the router agree: a listed route is routed.
            if let Some(a) = a.filter(|_| *m == route.method) {
                if matches!(a.code(), "NOT_FOUND" | "METHOD_NOT_ALLOWED") {
                    walk.failures
                        .push(format!("{m} {path} is listed but not routed: {}", a.code()));
                }
            }
            let preflight: &[(&str, &[u8])] = &[
                ("origin", b"http://evil.example"),
                ("access-control-request-method", b"POST"),
            ];
            walk.send(
                route,
                m.clone(),
                &path,
                preflight,
                None,
                "from a foreign origin",
            )
            .await;
        }
        let body: Option<&[u8]> = route.takes_body().then_some(&b"{}"[..]);
        let json: &[(&str, &[u8])] = if route.takes_body() { &[JSON] } else { &[] };
        // Path parameters that are malformed or overlong; paths that almost match.
        if route.has_params() {
            for (label, seg) in BAD_SEGMENTS {
                let p = route.path(|_| (*seg).to_owned());
                walk.send(route, route.method.clone(), &p, json, body, label)
                    .await;
            }
            for n in [300, 8 * 1024, 48 * 1024] {
                let p = route.path(|_| "a".repeat(n));
                walk.send(route, route.method.clone(), &p, json, body, "overlong")
                    .await;
            }
            let p = route.path(|_| String::new());
            walk.send(
                route,
                route.method.clone(),
                &p,
                json,
                body,
                "empty parameter",
            )
            .await;
        }
        for (label, p) in [
            ("trailing slash", format!("{path}/")),
            ("a segment more", format!("{path}/x")),
            ("double slash", format!("/{path}")),
            ("invalid UTF-8 segment", format!("{path}/%ff%fe")),
        ] {
            walk.send(route, route.method.clone(), &p, json, body, label)
                .await;
        }
        // Query strings: missing values, invalid UTF-8, duplicates, oversized.
        for (label, q) in BAD_QUERIES {
            let p = format!("{path}?{q}");
            walk.send(route, route.method.clone(), &p, json, body, label)
                .await;
        }
        let p = format!("{path}?{}", "a=1&".repeat(4000));
        walk.send(
            route,
            route.method.clone(),
            &p,
            json,
            body,
            "oversized query",
        )
        .await;
        // Headers: each bad set on the route's own method.
        for (label, set) in &headers {
            let mut h: Vec<(&str, &[u8])> = json.to_vec();
            if set.iter().any(|(n, _)| *n == "content-type") {
                h.clear();
            }
            h.extend(set.iter().map(|(n, v)| (*n, v.as_slice())));
            walk.send(route, route.method.clone(), &path, &h, body, label)
                .await;
        }
        // Bodies, on every route that takes one.
        if route.takes_body() {
            for (label, content_type, b) in &bodies {
                let h: Vec<(&str, &[u8])> = content_type
                    .map(|c| vec![("content-type", c)])
                    .unwrap_or_default();
                walk.send(route, route.method.clone(), &path, &h, Some(b), label)
                    .await;
            }
        }
    }
    assert!(
        walk.failures.is_empty(),
        "{} of {} answers were not the envelope:\n{}",
        walk.failures.len(),
        walk.sent,
        walk.failures.join("\n")
    );
    // Bad input changes nothing: no code was sent (and no cookie set, checked per answer).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mails = std::fs::read_dir(app.outbox())
        .map(|d| d.flatten().count())
        .unwrap_or(0);
    assert_eq!(mails, 0, "a rejected request queued mail");
    // Nor did the rejections count against this address's limits (30 code requests and 60
    // sign-in attempts an hour, SPEC §3; the walk sent far more of each).
    let c = browser();
    app.request_code(&c, "/api/login/email-code", "after@example.com")
        .await
        .expect(200, "CODE_SENT");
    app.post(
        &c,
        "/api/login/get-token",
        serde_json::json!({"username": "nobody", "password": PASSWORD,
                           "email": "after@example.com", "code": "000000"}),
    )
    .await
    .expect(401, "CODE_INVALID");
}

/// The two answers the issue named, exactly.
#[tokio::test]
async fn a_path_or_query_that_does_not_parse_is_invalid_input_naming_it() {
    let app = spawn_app().await;
    let c = bare();
    let a = answer(
        c.delete(app.url("/api/sessions/%ff%fe"))
            .send()
            .await
            .expect("request"),
    )
    .await
    .expect(400, "INVALID_INPUT");
    assert_eq!(a.body["data"]["field"], "id");
    assert_eq!(a.headers["content-type"], "application/json");
    let a = app
        .get(&c, "/dev/outbox/latest")
        .await
        .expect(400, "INVALID_INPUT");
    assert_eq!(a.body["data"]["field"], "to");
    let a = app
        .get(&c, "/dev/outbox/latest?to=%ff")
        .await
        .expect(400, "INVALID_INPUT");
    assert_eq!(a.body["data"]["field"], "to");
    let a = app
        .get(
            &c,
            "/dev/outbox/latest?to=a%40example.com&to=b%40example.com",
        )
        .await
        .expect(400, "INVALID_INPUT");
    assert_eq!(a.body["data"]["field"], "to");
    app.get(&c, "/assets/%ff")
        .await
        .expect(400, "INVALID_INPUT");
    // In the request's language too.
    let a = answer(
        c.get(app.url("/dev/outbox/latest"))
            .header("accept-language", "zh-CN")
            .send()
            .await
            .expect("request"),
    )
    .await
    .expect(400, "INVALID_INPUT");
    assert!(a.msg().contains("字段"), "{:?}", a.body);
}

/// A preflight is answered by the CORS layer; its answer is the envelope too, with the CORS
/// headers a browser reads.
#[tokio::test]
async fn a_preflight_answers_the_envelope_with_its_cors_headers() {
    let spa = "http://127.0.0.1:5173";
    let app = spawn_with(|s| s.cors_origins = vec![spa.into()]).await;
    let resp = bare()
        .request(Method::OPTIONS, app.url("/api/login/email-code"))
        .header("origin", spa)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("request");
    let a = answer(resp).await.expect(200, "OK");
    assert_eq!(a.headers["access-control-allow-origin"], spa);
    assert_eq!(a.headers["access-control-allow-credentials"], "true");
    assert_eq!(a.headers["content-type"], "application/json");
    assert_eq!(a.headers["cache-control"], "no-store");
}

/// What the client library above cannot send: `OPTIONS *`, `CONNECT`, a request target in
/// absolute form, HTTP/1.0 without Host. hyper hands these to the app, which answers them.
#[tokio::test]
async fn request_targets_of_every_form_answer_the_envelope() {
    let app = spawn_app().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    for head in [
        "OPTIONS * HTTP/1.1\r\nHost: x\r\n".to_owned(),
        format!("CONNECT {addr} HTTP/1.1\r\nHost: {addr}\r\n"),
        format!("GET http://{addr}/api/sessions/%ff%fe HTTP/1.1\r\nHost: {addr}\r\n"),
        format!("DELETE http://{addr}/api/sessions/%ff%fe HTTP/1.1\r\nHost: {addr}\r\n"),
        "GET /dev/outbox/latest?to=%ff HTTP/1.0\r\n".to_owned(),
        "GET /api/me HTTP/1.0\r\n".to_owned(),
    ] {
        let (status, headers, body) = raw(&addr, &head).await;
        let line = head.lines().next().unwrap_or("");
        assert!((400..500).contains(&status), "{line}: status {status}");
        assert!(
            headers.contains("content-type: application/json"),
            "{line}: {headers}"
        );
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert!(
            v["code"].as_str().is_some_and(|c| !c.is_empty()) && v.get("data").is_some(),
            "{line}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

/// Sends `head` (ending in its last header line) with `Connection: close`; returns the status,
/// the headers (lower-cased) and the body.
async fn raw(addr: &str, head: &str) -> (u16, String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // A server that refuses a head may close before reading all of it: what it answered is
    // what counts, so a failed write or a reset read ends the exchange rather than the test.
    let _ = s
        .write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .await;
    let mut got = Vec::new();
    let mut chunk = [0; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while let Ok(Ok(n @ 1..)) = tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
        got.extend_from_slice(&chunk[..n]);
    }
    let Some(split) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, String::new(), got);
    };
    let head = String::from_utf8_lossy(&got[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, got[split + 4..].to_vec())
}

/// The limit of this suite, as a test: what hyper cannot parse it answers itself, before the
/// app (and so the envelope) is reached, with an empty 400 or 431 and a closed connection;
/// hyper 1 has no hook to answer these otherwise. Should that change, these requests belong in
/// the walk above.
#[tokio::test]
async fn what_hyper_cannot_parse_it_answers_itself() {
    let app = spawn_app().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let many: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge = format!("x-big: {}\r\n", "a".repeat(256 * 1024));
    for (head, want) in [
        ("G@T /api/me HTTP/1.1\r\nHost: x\r\n".to_owned(), 400),
        ("GET /api/me HTTP/9.9\r\nHost: x\r\n".to_owned(), 400),
        (
            "GET /api/me HTTP/1.1\r\nHost: x\r\nno colon\r\n".to_owned(),
            400,
        ),
        (
            "POST /api/logout HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n"
                .to_owned(),
            400,
        ),
        (format!("GET /api/me HTTP/1.1\r\nHost: x\r\n{many}"), 431),
        (format!("GET /api/me HTTP/1.1\r\nHost: x\r\n{huge}"), 431),
    ] {
        let (status, headers, body) = raw(&addr, &head).await;
        let line = head.lines().next().unwrap_or("");
        // hyper closes with the rest of an oversized head unread, which makes the kernel reset
        // the connection; the reset may overtake the 431.
        let reset = status == 0 && want == 431;
        assert!(status == want || reset, "{line}: {status} {headers}");
        assert!(
            body.is_empty() && !headers.contains("x-request-id"),
            "{line}: the app answered: {headers}"
        );
    }
}
