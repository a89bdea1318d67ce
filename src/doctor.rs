//! `mailcode doctor URL [--origin O] [--lang zh|en] [--email ADDR]`: checks a running deployment
//! from the outside, the way a browser would (SPEC §4), and prints each problem found
//! with its fix.
//!
//! It talks HTTP the way a page on `--origin` (or on URL's own origin) does, with no cookie store:
//! the session cookie is read from `Set-Cookie` and sent back by hand, so that every attribute can
//! be judged the way a browser judges it. The checks, in order, one function each:
//!
//! 1. `check_reachable`: `GET /healthz` answers 200 with mailcode's `{code, msg, data}`;
//! 2. `check_readiness`: `GET /readyz`: sessions, users and mail; the development outbox is a
//!    warning on a loopback URL and a problem anywhere else (production without SMTP);
//!    `check_secret`: a few more `/readyz` answers (each perhaps from another instance): every
//!    instance's secret is the deployment's (docs/operations.md, "One secret per deployment");
//! 3. `request_code`: `POST /api/login/email-code` with the page's `Origin`, as its fetch would;
//! 4. `check_cookie`: the `Set-Cookie` of that answer: HttpOnly, SameSite, Secure against the
//!    URL's scheme, the `__Host-` rules, Domain, SameSite against a page on another site;
//! 5. `check_round_trip`: the cookie sent back to `GET /api/login/email-code/status` finds
//!    the session;
//! 6. `check_cors`: CORS with credentials for `--origin` when it is another origin: the
//!    preflight and the actual answers.
//!
//! Exit status: 0 when no problem was found (warnings do not count), 1 when any was, 2 for a
//! usage error (a URL, origin, language or address that cannot be used). A rate-limited probe
//! (429) is a warning, not a problem: the deployment did what it should, but the cookie checks
//! could not run; the summary says so and `--email` with another address gets past it.
//!
//! Every text exists in English and Simplified Chinese, side by side in the `t!` calls.
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde_json::{json, Value};

use crate::http::cookies::{HOST_NAME, NAME};
use crate::i18n::Lang;

/// Every request of the probe gives up after this long.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Base URL of the deployment, e.g. `https://login.example.com`
    pub url: String,
    /// The origin of the page that will call the API (checks CORS with credentials for it)
    #[arg(long)]
    pub origin: Option<String>,
    /// Language of the report: en or zh
    #[arg(long, default_value = "en")]
    pub lang: String,
    /// The address the probe asks a sign-in code for (a mail may really be sent to it)
    #[arg(long, default_value = "doctor@example.com")]
    pub email: String,
}

/// One text in both languages: `t!(lang, "English {x}", "中文 {x}")`, formatted like `format!`.
macro_rules! t {
    ($lang:expr, $en:literal, $zh:literal $(,)?) => {
        match $lang {
            Lang::En => format!($en),
            Lang::Zh => format!($zh),
        }
    };
}

pub fn main(args: DoctorArgs) -> ExitCode {
    let target = match Target::parse(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mailcode doctor: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailcode doctor: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut report = Report::new(target.lang);
    report.heading(&target);
    rt.block_on(run(&target, &mut report));
    report.summary();
    if report.problems > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The checks in order; a check that makes the following ones meaningless stops the run.
async fn run(target: &Target, report: &mut Report) {
    let probe = match Probe::new(target) {
        Ok(p) => p,
        Err(e) => {
            let lang = target.lang;
            report.add(Check::problem(
                t!(
                    lang,
                    "cannot build an HTTP client: {e}",
                    "无法创建 HTTP 客户端：{e}"
                ),
                String::new(),
                String::new(),
            ));
            return;
        }
    };
    match check_reachable(&probe).await {
        Ok(ok) => report.add(ok),
        Err(problem) => {
            report.add(problem);
            return;
        }
    }
    report.add_all(check_readiness(&probe).await);
    let code = request_code(&probe).await;
    report.add_all(code.checks);
    if let Some(answer) = &code.cookie_from {
        match find_session_cookie(target.lang, answer) {
            Ok(cookie) => {
                report.add_all(check_cookie(target, &cookie));
                report.add(check_round_trip(&probe, &cookie).await);
            }
            Err(problem) => report.add(problem),
        }
    } else if code.skipped_cookies {
        report.skipped += 1;
    }
    report.add_all(check_cors(&probe, code.post.as_ref(), code.origin_rejected).await);
}

// ----------------------------------------------------------------------------------------------
// What is checked: the URL, the page's origin, and how a browser would see them.

struct Target {
    /// The deployment's base URL, without a trailing slash (a path prefix is kept).
    base: Url,
    /// The origin of the page the probe acts as: `--origin`, or `url_origin`.
    origin: String,
    origin_url: Url,
    /// `--origin` was given and is not the URL's own origin: CORS is needed.
    cross_origin: bool,
    /// The page is on another site than the URL: SameSite=Lax/Strict cookies stay home.
    cross_site: bool,
    https: bool,
    loopback: bool,
    email: String,
    lang: Lang,
}

impl Target {
    fn parse(args: &DoctorArgs) -> Result<Target, String> {
        let lang = Lang::parse(&args.lang)
            .ok_or_else(|| format!("--lang {:?}: use en or zh", args.lang))?;
        let base = parse_http_url(&args.url).map_err(|e| match lang {
            Lang::En => format!("{:?} is not a URL doctor can check: {e} (e.g. https://login.example.com or http://127.0.0.1:3000)", args.url),
            Lang::Zh => format!("{:?} 不是可以检查的 URL：{e}（例如 https://login.example.com 或 http://127.0.0.1:3000）", args.url),
        })?;
        if base.query().is_some() || base.fragment().is_some() {
            return Err(t!(
                lang,
                "the URL must not carry a query or fragment: give the base URL of mailcode",
                "URL 不能带查询参数或片段：请给出 mailcode 的基础 URL"
            ));
        }
        let mut base = base;
        let path = base.path().trim_end_matches('/').to_owned();
        base.set_path(&path);
        let url_origin = base.origin().ascii_serialization();
        let (origin_url, given) = match &args.origin {
            Some(o) => {
                let u = parse_http_url(o).map_err(|e| match lang {
                    Lang::En => format!("--origin {o:?} is not an origin: {e} (write scheme://host[:port], e.g. http://localhost:5173)"),
                    Lang::Zh => format!("--origin {o:?} 不是一个源：{e}（格式为 scheme://host[:port]，例如 http://localhost:5173）"),
                })?;
                if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
                    return Err(match lang {
                        Lang::En => format!("--origin {o:?} is not an origin: write scheme://host[:port] without a path, e.g. http://localhost:5173"),
                        Lang::Zh => format!("--origin {o:?} 不是一个源：请写成不带路径的 scheme://host[:port]，例如 http://localhost:5173"),
                    });
                }
                (u, true)
            }
            None => (base.clone(), false),
        };
        let origin = origin_url.origin().ascii_serialization();
        let email = args.email.trim().to_owned();
        let valid_email = email.matches('@').count() == 1
            && !email.starts_with('@')
            && !email.ends_with('@')
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if !valid_email {
            return Err(t!(
                lang,
                "--email {email:?} is not an email address",
                "--email {email:?} 不是邮箱地址"
            ));
        }
        Ok(Target {
            https: base.scheme() == "https",
            loopback: is_loopback(&base),
            cross_origin: given && origin != url_origin,
            cross_site: given && !same_site(&origin_url, &base),
            base,
            origin,
            origin_url,
            email,
            lang,
        })
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.display_url())
    }

    /// The base URL as people write it, without the trailing slash.
    fn display_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }
}

fn parse_http_url(raw: &str) -> Result<Url, String> {
    let u = Url::parse(raw.trim()).map_err(|e| e.to_string())?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be http or https, not {:?}",
            u.scheme()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("no user or password in the URL".into());
    }
    Ok(u)
}

fn host_of(u: &Url) -> String {
    u.host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

fn is_loopback(u: &Url) -> bool {
    let host = host_of(u);
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The site of a URL's host, roughly its registrable domain: an IP address and `localhost` are
/// each their own site; otherwise the last two labels, or three under a two-part public suffix
/// such as `co.uk` or `com.cn` (a rough rule, not the Public Suffix List).
fn site_of(u: &Url) -> String {
    let host = host_of(u);
    if host.parse::<IpAddr>().is_ok() {
        return host;
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return "localhost".into();
    }
    let labels: Vec<&str> = host.split('.').collect();
    let n = labels.len();
    let two_part_suffix = n >= 3
        && labels[n - 1].len() == 2
        && matches!(
            labels[n - 2],
            "co" | "com" | "net" | "org" | "gov" | "edu" | "ac" | "or" | "ne" | "go"
        );
    let keep = if two_part_suffix { 3 } else { 2 };
    labels[n.saturating_sub(keep)..].join(".")
}

/// Same site as browsers decide it for SameSite cookies: the same scheme (schemeful same-site)
/// and the same registrable domain; the port does not matter.
fn same_site(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && site_of(a) == site_of(b)
}

// ----------------------------------------------------------------------------------------------
// The result of a check, and the report that prints them.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `✓ what`
    Ok(String),
    /// `- what`, then why: something doctor could not check, or a reminder.
    Info { what: String, why: String },
    /// `! what`: not wrong, but worth knowing; does not change the exit status.
    Warn {
        what: String,
        why: String,
        fix: String,
    },
    /// `✗ what`: something a browser or a user would trip over, why, and the exact fix.
    Problem {
        what: String,
        why: String,
        fix: String,
    },
}

impl Check {
    fn problem(what: String, why: String, fix: String) -> Check {
        Check::Problem { what, why, fix }
    }
    fn warn(what: String, why: String, fix: String) -> Check {
        Check::Warn { what, why, fix }
    }
    fn info(what: String, why: String) -> Check {
        Check::Info { what, why }
    }

    fn render(&self, lang: Lang) -> String {
        let fix_label = t!(lang, "fix: ", "修复：");
        let (mark, what, why, fix) = match self {
            Check::Ok(what) => ("✓", what, "", ""),
            Check::Info { what, why } => ("-", what, why.as_str(), ""),
            Check::Warn { what, why, fix } => ("!", what, why.as_str(), fix.as_str()),
            Check::Problem { what, why, fix } => ("✗", what, why.as_str(), fix.as_str()),
        };
        let mut out = format!("{mark} {what}\n");
        for line in why.lines().filter(|l| !l.is_empty()) {
            out.push_str(&format!("    {line}\n"));
        }
        for (i, line) in fix.lines().filter(|l| !l.is_empty()).enumerate() {
            let label = if i == 0 { fix_label.as_str() } else { "     " };
            out.push_str(&format!("    {label}{line}\n"));
        }
        out
    }
}

struct Report {
    lang: Lang,
    problems: usize,
    warnings: usize,
    /// Checks that could not run (the probe was refused before a cookie was set).
    skipped: usize,
}

impl Report {
    fn new(lang: Lang) -> Report {
        Report {
            lang,
            problems: 0,
            warnings: 0,
            skipped: 0,
        }
    }

    fn heading(&self, target: &Target) {
        let (url, origin) = (target.display_url(), &target.origin);
        println!(
            "{}",
            t!(
                self.lang,
                "mailcode doctor: {url} as a page on {origin} would see it",
                "mailcode doctor：以 {origin} 上页面的视角检查 {url}"
            )
        );
    }

    fn add(&mut self, check: Check) {
        match &check {
            Check::Problem { .. } => self.problems += 1,
            Check::Warn { .. } => self.warnings += 1,
            Check::Ok(_) | Check::Info { .. } => {}
        }
        print!("{}", check.render(self.lang));
    }

    fn add_all(&mut self, checks: Vec<Check>) {
        for c in checks {
            self.add(c);
        }
    }

    fn summary(&self) {
        let (n, w) = (self.problems, self.warnings);
        let mut line = match (n, self.lang) {
            (0, Lang::En) => "no problems found".to_owned(),
            (1, Lang::En) => "1 problem found".to_owned(),
            (n, Lang::En) => format!("{n} problems found"),
            (0, Lang::Zh) => "未发现问题".to_owned(),
            (n, Lang::Zh) => format!("发现 {n} 个问题"),
        };
        if w > 0 {
            line.push_str(&match (w, self.lang) {
                (1, Lang::En) => " (1 warning)".to_owned(),
                (w, Lang::En) => format!(" ({w} warnings)"),
                (w, Lang::Zh) => format!("（{w} 个警告）"),
            });
        }
        if self.skipped > 0 {
            line.push_str(&t!(
                self.lang,
                "; the cookie checks could not run",
                "；Cookie 相关检查未能进行"
            ));
        }
        println!("{line}");
    }
}

// ----------------------------------------------------------------------------------------------
// HTTP, as a browser page would speak it (no cookie store, no redirects followed).

struct Probe<'a> {
    client: reqwest::Client,
    target: &'a Target,
}

/// An answer as the checks read it.
#[derive(Debug, Clone)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Option<Value>,
}

impl Answer {
    /// `{code, msg, data}`, mailcode's envelope.
    fn is_envelope(&self) -> bool {
        self.body.as_ref().is_some_and(|b| {
            b.get("code").is_some_and(Value::is_string)
                && b.get("msg").is_some_and(Value::is_string)
                && b.get("data").is_some()
        })
    }
    fn code(&self) -> &str {
        self.body
            .as_ref()
            .and_then(|b| b.get("code"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    fn msg(&self) -> &str {
        self.body
            .as_ref()
            .and_then(|b| b.get("msg"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    fn data(&self, key: &str) -> Option<&Value> {
        self.body.as_ref()?.get("data")?.get(key)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
    /// `200 CODE_SENT`, or `200` when the body is not an envelope.
    fn status_line(&self) -> String {
        let code = self.code();
        if code.is_empty() {
            self.status.as_u16().to_string()
        } else {
            format!("{} {code}", self.status.as_u16())
        }
    }
}

/// Why a request got no answer, in words.
struct NetError {
    connect: bool,
    timeout: bool,
    tls: bool,
    detail: String,
}

impl<'a> Probe<'a> {
    fn new(target: &'a Target) -> Result<Probe<'a>, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mailcode-doctor/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Probe { client, target })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let lang = match self.target.lang {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        };
        self.client
            .request(method, self.target.endpoint(path))
            .header(header::ACCEPT_LANGUAGE, lang)
    }

    async fn send(&self, req: RequestBuilder) -> Result<Answer, NetError> {
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

/// A problem for a request that got no answer at all.
fn unanswered(lang: Lang, what: String, e: &NetError) -> Check {
    let detail = &e.detail;
    let fix = if e.timeout {
        t!(
            lang,
            "mailcode answers every request within 10 s: something in front of it (firewall, proxy, load balancer) holds the request; check that it forwards to mailcode's --listen address.",
            "mailcode 会在 10 秒内回应每个请求：是它前面的防火墙、代理或负载均衡卡住了请求；请检查它是否转发到 mailcode 的 --listen 地址。"
        )
    } else {
        t!(
            lang,
            "check that the proxy in front of mailcode forwards this path to it.",
            "请检查 mailcode 前面的代理是否把这个路径转发给它。"
        )
    };
    Check::problem(
        what,
        t!(lang, "no answer: {detail}", "没有回应：{detail}"),
        fix,
    )
}

// ----------------------------------------------------------------------------------------------
// 1. Reachable

/// `GET /healthz` answers 200 with the envelope. `Err` when nothing else is worth checking.
async fn check_reachable(p: &Probe<'_>) -> Result<Check, Check> {
    let lang = p.target.lang;
    let url = p.target.endpoint("/healthz");
    let answer = match p.send(p.request(Method::GET, "/healthz")).await {
        Ok(a) => a,
        Err(e) => {
            let detail = &e.detail;
            let (why, fix) = if e.tls {
                (
                    t!(lang, "the TLS handshake failed: {detail}", "TLS 握手失败：{detail}"),
                    t!(
                        lang,
                        "a browser refuses this certificate too: serve a certificate valid for this host name (e.g. from Let's Encrypt), with its full chain.",
                        "浏览器同样会拒绝这个证书：请为该主机名配置有效证书（例如 Let's Encrypt），并提供完整证书链。"
                    ),
                )
            } else if e.timeout {
                (
                    t!(
                        lang,
                        "no answer within 5 s: {detail}",
                        "5 秒内没有回应：{detail}"
                    ),
                    t!(
                        lang,
                        "check the host and port, and that no firewall drops the connection.",
                        "请检查主机和端口，并确认没有防火墙丢弃连接。"
                    ),
                )
            } else if e.connect {
                (
                    t!(lang, "the connection failed: {detail}", "连接失败：{detail}"),
                    t!(
                        lang,
                        "is mailcode running and listening there? `--listen` sets its address (default 127.0.0.1:3000, which only this machine can reach; `--listen 0.0.0.0:3000` accepts others). Check the host and port of the URL.",
                        "mailcode 是否在运行并监听该地址？`--listen` 设置监听地址（默认 127.0.0.1:3000，只有本机可访问；`--listen 0.0.0.0:3000` 接受其他机器）。请检查 URL 的主机和端口。"
                    ),
                )
            } else {
                (
                    t!(lang, "the request failed: {detail}", "请求失败：{detail}"),
                    t!(lang, "check the URL.", "请检查 URL。"),
                )
            };
            return Err(Check::problem(
                t!(lang, "cannot reach {url}", "无法访问 {url}"),
                why,
                fix,
            ));
        }
    };
    if answer.status.is_redirection() {
        let to = answer.header("location").unwrap_or("?").to_owned();
        return Err(Check::problem(
            t!(lang, "{url} redirects to {to}", "{url} 重定向到 {to}"),
            t!(
                lang,
                "a fetch with credentials does not get to mailcode through redirects, and the cookie belongs to the host that sets it.",
                "带凭据的 fetch 不能通过重定向到达 mailcode，Cookie 也属于设置它的那个主机。"
            ),
            t!(
                lang,
                "run doctor (and point the page) at the URL it redirects to, e.g. the https:// one.",
                "请对重定向后的 URL（例如 https:// 的那个）运行 doctor，页面也应使用该 URL。"
            ),
        ));
    }
    if answer.status != StatusCode::OK || !answer.is_envelope() {
        let status = answer.status.as_u16();
        return Err(Check::problem(
            t!(
                lang,
                "{url} answered {status}, not mailcode's {{code, msg, data}}",
                "{url} 回应了 {status}，不是 mailcode 的 {{code, msg, data}}"
            ),
            t!(
                lang,
                "something else answers at this address: another server, a proxy's error page, or mailcode under another path.",
                "该地址上回应的是别的东西：另一个服务器、代理的错误页面，或 mailcode 挂在另一个路径下。"
            ),
            t!(
                lang,
                "check the port and the path prefix of the URL, and that the proxy forwards to mailcode's --listen address.",
                "请检查 URL 的端口和路径前缀，以及代理是否转发到 mailcode 的 --listen 地址。"
            ),
        ));
    }
    Ok(Check::Ok(t!(
        lang,
        "reachable: GET {url} answered 200 OK",
        "可以访问：GET {url} 回应 200 OK"
    )))
}

// ----------------------------------------------------------------------------------------------
// 2. Readiness

/// `GET /readyz`: every store, then mail, then whether mail really leaves.
async fn check_readiness(p: &Probe<'_>) -> Vec<Check> {
    let lang = p.target.lang;
    let answer = match p.send(p.request(Method::GET, "/readyz")).await {
        Ok(a) => a,
        Err(e) => {
            return vec![unanswered(
                lang,
                t!(
                    lang,
                    "readiness: GET /readyz got no answer",
                    "就绪检查：GET /readyz 没有回应"
                ),
                &e,
            )]
        }
    };
    if !answer.is_envelope() || answer.data("sessions").is_none() {
        let status = answer.status.as_u16();
        return vec![Check::problem(
            t!(
                lang,
                "readiness: GET /readyz answered {status} without the readiness of the stores",
                "就绪检查：GET /readyz 回应 {status}，但没有各存储的状态"
            ),
            t!(
                lang,
                "the proxy may not forward /readyz, or this is not mailcode.",
                "代理可能没有转发 /readyz，或者这不是 mailcode。"
            ),
            t!(
                lang,
                "forward every path to mailcode, or at least /healthz, /readyz and /api/.",
                "把所有路径都转发给 mailcode，至少包括 /healthz、/readyz 和 /api/。"
            ),
        )];
    }
    let state = |key: &str| {
        answer
            .data(key)
            .and_then(Value::as_str)
            .unwrap_or("missing")
            .to_owned()
    };
    let (sessions, users, mail) = (state("sessions"), state("users"), state("mail"));
    let mut checks = Vec::new();
    if sessions == "ok" && users == "ok" {
        checks.push(Check::Ok(t!(
            lang,
            "stores ready: sessions ok, users ok",
            "存储就绪：会话 ok，用户 ok"
        )));
    }
    if sessions != "ok" {
        checks.push(Check::problem(
            t!(lang, "the session store is {sessions}", "会话存储状态：{sessions}"),
            t!(
                lang,
                "no code can be sent and nobody can sign in: every such request gets 503 STORE_UNAVAILABLE.",
                "无法发送验证码，也无法登录：这些请求都会得到 503 STORE_UNAVAILABLE。"
            ),
            t!(
                lang,
                "check the server behind `--redis-url` (or, without Redis, `--database-url`): is it running, reachable from mailcode, are the credentials right? mailcode recovers by itself once it answers.",
                "请检查 `--redis-url`（未使用 Redis 时为 `--database-url`）指向的服务器：是否在运行、mailcode 能否连上、凭据是否正确？它恢复后 mailcode 会自动恢复。"
            ),
        ));
    }
    if users != "ok" {
        checks.push(Check::problem(
            t!(lang, "the user database is {users}", "用户数据库状态：{users}"),
            t!(
                lang,
                "nobody can sign in or register: those requests get 503 STORE_UNAVAILABLE.",
                "无法登录或注册：这些请求会得到 503 STORE_UNAVAILABLE。"
            ),
            t!(
                lang,
                "check the database behind `--database-url`: is it running, reachable from mailcode, are the credentials right?",
                "请检查 `--database-url` 指向的数据库：是否在运行、mailcode 能否连上、凭据是否正确？"
            ),
        ));
    }
    if let Some(c) = check_secret(p, &answer).await {
        checks.push(c);
    }
    if mail.starts_with("ok") {
        checks.push(Check::Ok(t!(lang, "mail ready", "邮件就绪")));
    } else {
        checks.push(Check::problem(
            t!(lang, "mail is {mail}", "邮件状态：{mail}"),
            t!(
                lang,
                "codes are queued and retried while they are valid, but nobody receives them until mail works.",
                "验证码会排队并在有效期内重试，但在邮件恢复之前没有人能收到。"
            ),
            t!(
                lang,
                "check `--smtp-url`: host, port, TLS mode (smtps://host:465, or smtp://host:587?tls=required for STARTTLS), user and password, and that the mail server accepts connections from this machine.",
                "请检查 `--smtp-url`：主机、端口、TLS 方式（smtps://host:465，或 STARTTLS 用 smtp://host:587?tls=required）、用户名和密码，以及邮件服务器是否接受来自本机的连接。"
            ),
        ));
    }
    if answer.data("mail_transport").and_then(Value::as_str) == Some("outbox") {
        let what = t!(
            lang,
            "mail goes to the development outbox: no code mail really leaves",
            "邮件进入开发用发件箱：验证码邮件并不会真正发出"
        );
        let fix = t!(
            lang,
            "for real users start mailcode with `--smtp-url smtp://user:password@smtp.example.com:587?tls=required` (and `--mail-from`).",
            "面向真实用户时请用 `--smtp-url smtp://user:password@smtp.example.com:587?tls=required`（以及 `--mail-from`）启动 mailcode。"
        );
        if p.target.loopback {
            checks.push(Check::warn(
                what,
                t!(
                    lang,
                    "fine for development: read the codes at /dev/outbox.",
                    "开发时没问题：在 /dev/outbox 查看验证码。"
                ),
                fix,
            ));
        } else {
            checks.push(Check::problem(
                what,
                t!(
                    lang,
                    "this URL is not a loopback address, so this looks like production without SMTP: users wait for codes that never arrive.",
                    "该 URL 不是回环地址，看起来是没有配置 SMTP 的生产环境：用户会一直等待永远不会到达的验证码。"
                ),
                fix,
            ));
        }
    }
    checks
}

/// How many `/readyz` answers the secret check reads: behind a load balancer each may come
/// from another instance, and the odd one is the one that says so.
const SECRET_PROBES: usize = 4;

/// One secret per deployment (docs/operations.md): every instance's `/readyz` compares its
/// secret's fingerprint with the deployment's; doctor reads a few answers and also compares
/// the fingerprints they report. `None` when the stores could not say (already a problem).
async fn check_secret(p: &Probe<'_>, first: &Answer) -> Option<Check> {
    let lang = p.target.lang;
    let text = |a: &Answer, key: &str| a.data(key).and_then(Value::as_str).map(str::to_owned);
    if text(first, "secret").is_none() {
        return Some(Check::info(
            t!(
                lang,
                "one secret per deployment not checked: this mailcode's /readyz does not report it",
                "未检查部署是否使用同一密钥：该 mailcode 的 /readyz 不报告它"
            ),
            t!(
                lang,
                "older versions do not compare secrets: upgrade, and give every instance the same MAILCODE_SECRET_FILE.",
                "旧版本不比较密钥：请升级，并让所有实例使用同一个 MAILCODE_SECRET_FILE。"
            ),
        ));
    }
    let mut answers = vec![first.clone()];
    for _ in 1..SECRET_PROBES {
        if let Ok(a) = p.send(p.request(Method::GET, "/readyz")).await {
            answers.push(a);
        }
    }
    let mut fingerprints: Vec<String> = answers
        .iter()
        .filter_map(|a| text(a, "secret_fingerprint"))
        .collect();
    fingerprints.sort();
    fingerprints.dedup();
    let why = t!(
        lang,
        "a code sent through one instance is refused by another with 401 CODE_INVALID (\"the code is wrong\"), as often as the load balancer switches; the odd instance's /readyz answers 503 SECRET_MISMATCH.",
        "经由一个实例发送的验证码会被另一个实例以 401 CODE_INVALID（“验证码错误”）拒绝，负载均衡每切换一次就会发生；不一致的实例的 /readyz 回应 503 SECRET_MISMATCH。"
    );
    let fix = t!(
        lang,
        "give every instance the same secret file (MAILCODE_SECRET_FILE or --secret-file; `mailcode secret show` on each host prints its fingerprint) and restart the odd one. If the secret was changed on purpose with `mailcode secret rotate`, restart the instances still running with the old file.",
        "让所有实例使用同一个密钥文件（MAILCODE_SECRET_FILE 或 --secret-file；在每台主机上运行 `mailcode secret show` 可查看指纹），并重启不一致的实例。如果是用 `mailcode secret rotate` 有意更换了密钥，请重启仍在使用旧文件的实例。"
    );
    if let Some(odd) = answers
        .iter()
        .find(|a| text(a, "secret").as_deref() == Some("mismatch"))
    {
        let ours = text(odd, "secret_fingerprint").unwrap_or_default();
        let recorded = text(odd, "deployment_secret_fingerprint").unwrap_or_default();
        return Some(Check::problem(
            t!(
                lang,
                "an instance's server secret (fingerprint {ours}) is not the deployment's ({recorded})",
                "有实例的服务器密钥（指纹 {ours}）与本部署的（{recorded}）不一致"
            ),
            why,
            fix,
        ));
    }
    if fingerprints.len() > 1 {
        let list = fingerprints.join(", ");
        return Some(Check::problem(
            t!(
                lang,
                "the instances behind this URL use different server secrets (fingerprints {list})",
                "该 URL 后面的实例使用了不同的服务器密钥（指纹 {list}）"
            ),
            why,
            fix,
        ));
    }
    if answers
        .iter()
        .any(|a| text(a, "secret").as_deref() != Some("ok"))
    {
        return None;
    }
    let fp = fingerprints.first().cloned().unwrap_or_default();
    let n = answers.len();
    Some(Check::Ok(t!(
        lang,
        "one secret: the deployment's (fingerprint {fp}) in {n} answers of /readyz",
        "同一密钥：{n} 次 /readyz 回应都是本部署的密钥（指纹 {fp}）"
    )))
}

// ----------------------------------------------------------------------------------------------
// 3. The code request, as the page's fetch would send it

struct CodeProbe {
    checks: Vec<Check>,
    /// The answer to the browser-like request (for the CORS check).
    post: Option<Answer>,
    /// The answer whose Set-Cookie the cookie checks read.
    cookie_from: Option<Answer>,
    /// The browser-like request got 403 ORIGIN_REJECTED.
    origin_rejected: bool,
    /// The cookie checks could not run for a reason that is not a problem (429, refused address).
    skipped_cookies: bool,
}

async fn request_code(p: &Probe<'_>) -> CodeProbe {
    let t = p.target;
    let lang = t.lang;
    let origin = &t.origin;
    let mut out = CodeProbe {
        checks: Vec::new(),
        post: None,
        cookie_from: None,
        origin_rejected: false,
        skipped_cookies: false,
    };
    let req = p
        .request(Method::POST, "/api/login/email-code")
        .header(header::ORIGIN, origin)
        .json(&json!({ "email": t.email }));
    let answer = match p.send(req).await {
        Ok(a) => a,
        Err(e) => {
            out.checks.push(unanswered(
                lang,
                t!(
                    lang,
                    "code request: POST /api/login/email-code got no answer",
                    "请求验证码：POST /api/login/email-code 没有回应"
                ),
                &e,
            ));
            return out;
        }
    };
    let status = answer.status_line();
    let (code, msg) = (answer.code().to_owned(), answer.msg().to_owned());
    match (answer.status.as_u16(), code.as_str()) {
        (200, _) => {
            let delivery = answer
                .data("delivery")
                .and_then(Value::as_str)
                .unwrap_or("?");
            out.checks.push(Check::Ok(t!(
                lang,
                "code request from {origin}: {status} (delivery: {delivery})",
                "来自 {origin} 的验证码请求：{status}（投递状态：{delivery}）"
            )));
            out.cookie_from = Some(answer.clone());
        }
        (429, _) => {
            let retry = answer.header("retry-after").unwrap_or("?").to_owned();
            let email = &t.email;
            out.checks.push(Check::warn(
                t!(lang, "code request rate-limited: {status}, retry after {retry} s", "验证码请求被限流：{status}，{retry} 秒后可重试"),
                t!(
                    lang,
                    "the limits work (one code per address every 60 s, 5 per hour; 30 code requests per client IP per hour), but the probe got no cookie, so the cookie checks are skipped.",
                    "限流工作正常（同一地址每 60 秒一个验证码、每小时 5 个；每个客户端 IP 每小时 30 次），但探测没有拿到 Cookie，因此跳过 Cookie 相关检查。"
                ),
                t!(
                    lang,
                    "run doctor again with `--email` and another address than {email}, or after {retry} s.",
                    "换一个不同于 {email} 的地址用 `--email` 再运行 doctor，或在 {retry} 秒后重试。"
                ),
            ));
            out.skipped_cookies = true;
        }
        (400, "INVALID_EMAIL") => {
            let email = &t.email;
            out.checks.push(Check::warn(
                t!(lang, "the deployment refuses the probe address {email}: {status}", "该部署拒绝了探测地址 {email}：{status}"),
                msg.clone(),
                t!(lang, "run doctor with `--email` and an address this deployment accepts.", "请用 `--email` 指定该部署接受的地址再运行 doctor。"),
            ));
            out.skipped_cookies = true;
        }
        (403, "ORIGIN_REJECTED") => {
            out.origin_rejected = true;
            if t.cross_origin {
                out.checks.push(Check::problem(
                    t!(lang, "code request from {origin} rejected: {status}", "来自 {origin} 的验证码请求被拒绝：{status}"),
                    t!(
                        lang,
                        "mailcode does not allow pages on {origin} to call its API with cookies (CSRF defence): the page gets 403 for every code and sign-in request.",
                        "mailcode 不允许 {origin} 上的页面携带 Cookie 调用它的 API（CSRF 防护）：该页面的每个验证码和登录请求都会得到 403。"
                    ),
                    t!(
                        lang,
                        "start mailcode with `--cors-origin {origin}` (or MAILCODE_CORS_ORIGINS={origin}).",
                        "用 `--cors-origin {origin}`（或 MAILCODE_CORS_ORIGINS={origin}）启动 mailcode。"
                    ),
                ));
            } else {
                let url = t.display_url();
                out.checks.push(Check::problem(
                    t!(lang, "code request from the URL's own origin {origin} rejected: {status}", "来自 URL 自身源 {origin} 的验证码请求被拒绝：{status}"),
                    if t.https {
                        t!(
                            lang,
                            "mailcode derives its own origin from the Host header and the scheme, and does not think it is {origin}: most often TLS ends at a proxy that sends no `X-Forwarded-Proto: https`, or that mailcode does not trust, so mailcode believes it is http://…; or the proxy rewrites Host. The page mailcode serves itself at {url} fails the same way.",
                            "mailcode 根据 Host 头和协议推断自己的源，而它不认为自己是 {origin}：最常见的是 TLS 在代理处终止，而代理没有发送 `X-Forwarded-Proto: https`，或 mailcode 不信任该代理，于是 mailcode 以为自己是 http://…；或者代理改写了 Host。mailcode 自己在 {url} 提供的页面也会同样失败。"
                        )
                    } else {
                        t!(
                            lang,
                            "mailcode derives its own origin from the Host header and the scheme, and does not think it is {origin}: most often a proxy listed in `--trust-proxy` sends `X-Forwarded-Proto: https` for this http:// site, so mailcode believes it is https://…; or the proxy rewrites Host. The page mailcode serves itself at {url} fails the same way.",
                            "mailcode 根据 Host 头和协议推断自己的源，而它不认为自己是 {origin}：最常见的是 `--trust-proxy` 中的代理对这个 http:// 站点发送了 `X-Forwarded-Proto: https`，于是 mailcode 以为自己是 https://…；或者代理改写了 Host。mailcode 自己在 {url} 提供的页面也会同样失败。"
                        )
                    },
                    if t.https {
                        t!(
                            lang,
                            "make the proxy pass the Host header unchanged and send the real scheme (nginx: `proxy_set_header Host $host;` and `proxy_set_header X-Forwarded-Proto $scheme;`), and start mailcode with `--trust-proxy <the proxy's address or CIDR>`.",
                            "让代理原样传递 Host 头并发送真实协议（nginx：`proxy_set_header Host $host;` 和 `proxy_set_header X-Forwarded-Proto $scheme;`），并用 `--trust-proxy <代理的地址或 CIDR>` 启动 mailcode。"
                        )
                    } else {
                        t!(
                            lang,
                            "make the proxy pass the Host header unchanged and the real scheme (nginx: `proxy_set_header Host $host;` and `proxy_set_header X-Forwarded-Proto $scheme;`), or serve the site over HTTPS.",
                            "让代理原样传递 Host 头和真实协议（nginx：`proxy_set_header Host $host;` 和 `proxy_set_header X-Forwarded-Proto $scheme;`），或通过 HTTPS 提供站点。"
                        )
                    },
                ));
            }
            // Read the cookie anyway, from a request a non-browser client would send (no
            // Origin), under another purpose so that the per-address cooldown does not refuse it.
            let fallback = p
                .request(Method::POST, "/api/register/email-code")
                .json(&json!({ "email": t.email }));
            match p.send(fallback).await {
                Ok(a) if a.status == StatusCode::OK => {
                    out.checks.push(Check::info(
                        t!(lang, "the cookie checks below read a second code request sent without Origin", "下面的 Cookie 检查使用了第二个不带 Origin 的验证码请求"),
                        t!(lang, "(as curl would send it: mailcode accepts it, since no browser sends a request without Origin)", "（与 curl 发送的一样：mailcode 会接受，因为浏览器不会发送不带 Origin 的请求）"),
                    ));
                    out.cookie_from = Some(a);
                }
                _ => out.skipped_cookies = true,
            }
        }
        (404, _) | (405, _) => out.checks.push(Check::problem(
            t!(lang, "code request: POST /api/login/email-code answered {status}", "请求验证码：POST /api/login/email-code 回应 {status}"),
            t!(lang, "the API is not where the page will look for it.", "API 不在页面会去找的位置。"),
            t!(lang, "make the proxy forward /api/ to mailcode (every method, including OPTIONS), without changing the path.", "让代理把 /api/ 原样转发给 mailcode（所有方法，包括 OPTIONS）。"),
        )),
        _ => out.checks.push(Check::problem(
            t!(lang, "code request: POST /api/login/email-code answered {status}", "请求验证码：POST /api/login/email-code 回应 {status}"),
            if msg.is_empty() {
                t!(lang, "an answer a page cannot use.", "页面无法使用的回应。")
            } else {
                msg
            },
            t!(
                lang,
                "see mailcode's log (stderr) for this request; a 503 means a store or mail is down (see readiness above).",
                "请查看 mailcode 的日志（stderr）中这个请求的记录；503 表示某个存储或邮件不可用（见上面的就绪检查）。"
            ),
        )),
    }
    out.post = Some(answer);
    out
}

// ----------------------------------------------------------------------------------------------
// 4. The Set-Cookie, as a browser judges it

#[derive(Debug, Clone, PartialEq, Eq)]
struct SetCookie {
    name: String,
    value: String,
    secure: bool,
    http_only: bool,
    /// As written; `None` when absent (browsers then treat it as Lax).
    same_site: Option<String>,
    path: Option<String>,
    domain: Option<String>,
    max_age: Option<i64>,
}

impl SetCookie {
    fn parse(raw: &str) -> Option<SetCookie> {
        let mut parts = raw.split(';');
        let (name, value) = parts.next()?.trim().split_once('=')?;
        let mut c = SetCookie {
            name: name.trim().to_owned(),
            value: value.trim().to_owned(),
            secure: false,
            http_only: false,
            same_site: None,
            path: None,
            domain: None,
            max_age: None,
        };
        for attr in parts {
            let (k, v) = match attr.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (attr.trim(), None),
            };
            match k.to_ascii_lowercase().as_str() {
                "secure" => c.secure = true,
                "httponly" => c.http_only = true,
                "samesite" => c.same_site = v.map(str::to_owned),
                "path" => c.path = v.map(str::to_owned),
                "domain" => c.domain = v.map(|d| d.trim_start_matches('.').to_ascii_lowercase()),
                "max-age" => c.max_age = v.and_then(|v| v.parse().ok()),
                _ => {}
            }
        }
        Some(c)
    }

    fn same_site_lower(&self) -> String {
        self.same_site
            .as_deref()
            .unwrap_or("lax")
            .to_ascii_lowercase()
    }

    /// Whether a browser keeps this cookie from an answer of `url` (the rules that matter here).
    fn stored_by_browser(&self, url: &Url) -> bool {
        let https = url.scheme() == "https";
        let host_prefix_ok = !self.name.starts_with("__Host-")
            || (self.secure && self.path.as_deref() == Some("/") && self.domain.is_none());
        (https || !self.secure)
            && (self.secure || self.same_site_lower() != "none")
            && host_prefix_ok
            && self
                .domain
                .as_deref()
                .is_none_or(|d| domain_matches(url, d))
            && self.max_age.is_none_or(|a| a > 0)
    }

    /// Whether a browser sends it with a fetch from `target`'s page (it was stored first).
    fn sent_by_browser(&self, target: &Target) -> bool {
        self.stored_by_browser(&target.base)
            && (!target.cross_site || self.same_site_lower() == "none")
    }
}

fn domain_matches(url: &Url, domain: &str) -> bool {
    let host = host_of(url);
    host == domain || (host.parse::<IpAddr>().is_err() && host.ends_with(&format!(".{domain}")))
}

/// mailcode's session cookie among the answer's `Set-Cookie` headers.
fn find_session_cookie(lang: Lang, answer: &Answer) -> Result<SetCookie, Check> {
    let all = answer.header_all("set-cookie");
    if let Some(c) = all
        .iter()
        .filter_map(|raw| SetCookie::parse(raw))
        .find(|c| c.name == NAME || c.name == HOST_NAME)
    {
        return Ok(c);
    }
    let why = if all.is_empty() {
        t!(
            lang,
            "the code is bound to the session this cookie names: without it, the sign-in request gets 401 NO_SESSION.",
            "验证码绑定在这个 Cookie 所指的会话上：没有它，登录请求会得到 401 NO_SESSION。"
        )
    } else {
        let names = all
            .iter()
            .filter_map(|raw| SetCookie::parse(raw).map(|c| c.name))
            .collect::<Vec<_>>()
            .join(", ");
        t!(
            lang,
            "the answer sets other cookies ({names}), not {NAME} or {HOST_NAME}: the sign-in request will get 401 NO_SESSION.",
            "回应设置了其他 Cookie（{names}），而不是 {NAME} 或 {HOST_NAME}：登录请求会得到 401 NO_SESSION。"
        )
    };
    Err(Check::problem(
        t!(lang, "the code answer sets no session cookie", "验证码请求的回应没有设置会话 Cookie"),
        why,
        t!(
            lang,
            "make the proxy or CDN pass Set-Cookie through unchanged and never cache /api/ (mailcode sends `Cache-Control: no-store`).",
            "让代理或 CDN 原样传递 Set-Cookie，并且不要缓存 /api/（mailcode 会发送 `Cache-Control: no-store`）。"
        ),
    ))
}

/// Every attribute of the session cookie against the URL's scheme and the page's site.
fn check_cookie(t: &Target, c: &SetCookie) -> Vec<Check> {
    let lang = t.lang;
    let name = &c.name;
    let same_site = c.same_site.clone().unwrap_or_else(|| "Lax".into());
    let same_site_lower = c.same_site_lower();
    let (url, origin, host) = (t.display_url(), &t.origin, host_of(&t.base));
    let mut checks = Vec::new();
    if !c.http_only {
        checks.push(Check::problem(
            t!(lang, "the session cookie {name} is not HttpOnly", "会话 Cookie {name} 没有 HttpOnly"),
            t!(lang, "any script on the page, or injected into it, can read the session id.", "页面上的任何脚本（包括被注入的脚本）都能读到会话 id。"),
            t!(lang, "mailcode always sets HttpOnly: something rewrites the cookie (nginx `proxy_cookie_flags`, a CDN rule); remove that rewrite.", "mailcode 总是设置 HttpOnly：有东西改写了 Cookie（nginx `proxy_cookie_flags`、CDN 规则）；请去掉这个改写。"),
        ));
    }
    if c.secure && !t.https {
        let what = t!(
            lang,
            "the session cookie {name} is Secure but {url} is plain http://: the browser drops it",
            "会话 Cookie {name} 带有 Secure，但 {url} 是纯 http://：浏览器会丢弃它"
        );
        let effect = t!(
            lang,
            "A browser keeps Secure cookies only from https:// answers, so every request starts a new session and the code can never be checked (401 NO_SESSION). (Some browsers make an exception for http://localhost; do not rely on it: Safari does not, and no browser does for a real host name.)",
            "浏览器只接受来自 https:// 回应的 Secure Cookie，所以每个请求都会开始一个新会话，验证码永远无法校验（401 NO_SESSION）。（有些浏览器对 http://localhost 例外；不要依赖它：Safari 没有这个例外，对真实主机名也没有浏览器例外。）"
        );
        if same_site_lower == "none" {
            checks.push(Check::problem(
                what,
                t!(lang, "`--cookie-same-site none` forces Secure (browsers refuse SameSite=None without it).\n{effect}", "`--cookie-same-site none` 会强制 Secure（浏览器拒绝没有 Secure 的 SameSite=None）。\n{effect}"),
                t!(lang, "serve mailcode over HTTPS (a TLS proxy that sends `X-Forwarded-Proto: https`, and `--trust-proxy <its CIDR>`); or, on plain HTTP, drop `--cookie-same-site none` (the default lax works for a page on the same site).", "通过 HTTPS 提供 mailcode（TLS 代理发送 `X-Forwarded-Proto: https`，并设置 `--trust-proxy <代理的 CIDR>`）；或者在纯 HTTP 下去掉 `--cookie-same-site none`（默认的 lax 适用于同站页面）。"),
            ));
        } else {
            checks.push(Check::problem(
                what,
                t!(lang, "mailcode marked it Secure because it believed the request came over HTTPS: a proxy listed in `--trust-proxy` sent `X-Forwarded-Proto: https` for this http:// site.\n{effect}", "mailcode 认为请求来自 HTTPS，所以标记了 Secure：`--trust-proxy` 中的代理对这个 http:// 站点发送了 `X-Forwarded-Proto: https`。\n{effect}"),
                t!(lang, "serve the site over HTTPS end to end; or make the proxy send the real scheme (nginx: `proxy_set_header X-Forwarded-Proto $scheme;`); or remove its address from `--trust-proxy`.", "全程通过 HTTPS 提供站点；或让代理发送真实协议（nginx：`proxy_set_header X-Forwarded-Proto $scheme;`）；或从 `--trust-proxy` 中移除它的地址。"),
            ));
        }
    }
    if !c.secure && t.https {
        checks.push(Check::problem(
            t!(lang, "the session cookie {name} is not Secure although {url} is https://", "{url} 是 https://，但会话 Cookie {name} 没有 Secure"),
            t!(lang, "mailcode did not see HTTPS: TLS ends at a proxy in front of it, and mailcode either gets no `X-Forwarded-Proto: https` or does not trust the proxy that sends it. The cookie may then travel over plain HTTP, and SameSite=None cannot work.", "mailcode 没有看到 HTTPS：TLS 在它前面的代理处终止，而 mailcode 要么没收到 `X-Forwarded-Proto: https`，要么不信任发送它的代理。这样 Cookie 可能经纯 HTTP 传输，SameSite=None 也无法使用。"),
            t!(lang, "make the TLS-terminating proxy send `X-Forwarded-Proto: https` (nginx: `proxy_set_header X-Forwarded-Proto $scheme;`) and start mailcode with `--trust-proxy <the proxy's address or CIDR>`, e.g. `--trust-proxy 10.0.0.5/32`.", "让终止 TLS 的代理发送 `X-Forwarded-Proto: https`（nginx：`proxy_set_header X-Forwarded-Proto $scheme;`），并用 `--trust-proxy <代理的地址或 CIDR>` 启动 mailcode，例如 `--trust-proxy 10.0.0.5/32`。"),
        ));
    }
    if same_site_lower == "none" && !c.secure {
        checks.push(Check::problem(
            t!(lang, "SameSite=None without Secure: browsers reject the cookie", "SameSite=None 但没有 Secure：浏览器会拒绝这个 Cookie"),
            t!(lang, "a cookie meant for other sites must be Secure; mailcode always adds Secure with `--cookie-same-site none`, so something rewrote the cookie.", "给其他站点用的 Cookie 必须带 Secure；使用 `--cookie-same-site none` 时 mailcode 总会加上 Secure，所以有东西改写了 Cookie。"),
            t!(lang, "remove the proxy's cookie rewriting; `--cookie-same-site none` needs HTTPS.", "去掉代理对 Cookie 的改写；`--cookie-same-site none` 需要 HTTPS。"),
        ));
    }
    let path = c.path.as_deref().unwrap_or("(none)");
    let domain = c.domain.as_deref().unwrap_or("(none)");
    if name.starts_with("__Host-") && (!c.secure || path != "/" || c.domain.is_some()) {
        checks.push(Check::problem(
            t!(lang, "the cookie {name} breaks the __Host- rules: the browser rejects it", "Cookie {name} 违反了 __Host- 前缀规则：浏览器会拒绝它"),
            t!(lang, "a __Host- cookie must be Secure, with Path=/ and no Domain (here: Path={path}, Domain={domain}).", "__Host- Cookie 必须带 Secure、Path=/ 且没有 Domain（这里：Path={path}，Domain={domain}）。"),
            t!(lang, "mailcode only uses this name for a Secure host-only cookie: something rewrote the cookie (Path or Domain); remove that rewrite.", "mailcode 只在 Secure 且仅限主机的 Cookie 上使用这个名字：有东西改写了 Cookie（Path 或 Domain）；请去掉这个改写。"),
        ));
    }
    if let Some(domain) = c.domain.as_deref().filter(|d| !domain_matches(&t.base, d)) {
        checks.push(Check::problem(
            t!(lang, "Domain={domain} does not cover the host {host}: the browser rejects the cookie", "Domain={domain} 不包含主机 {host}：浏览器会拒绝这个 Cookie"),
            t!(lang, "a cookie may only name the host that sets it or a parent domain of it.", "Cookie 只能指定设置它的主机或其上级域名。"),
            t!(lang, "set `--cookie-domain` to {host} or a parent domain of it, or leave `--cookie-domain` out for a host-only cookie (usually best).", "把 `--cookie-domain` 设为 {host} 或其上级域名，或者不设置 `--cookie-domain`，使用仅限主机的 Cookie（通常最好）。"),
        ));
    }
    if let Some(age) = c.max_age.filter(|a| *a <= 0) {
        checks.push(Check::problem(
            t!(lang, "the session cookie expires at once (Max-Age={age})", "会话 Cookie 立即过期（Max-Age={age}）"),
            t!(lang, "the browser deletes it instead of keeping it.", "浏览器会删除它而不是保存它。"),
            t!(lang, "mailcode sets Max-Age to the session's lifetime: something rewrote the cookie; remove that rewrite.", "mailcode 把 Max-Age 设为会话的有效期：有东西改写了 Cookie；请去掉这个改写。"),
        ));
    }
    if t.cross_site && matches!(same_site_lower.as_str(), "lax" | "strict") {
        let (page_site, api_site) = (site_of(&t.origin_url), site_of(&t.base));
        let (page_site, api_site) = if t.origin_url.scheme() == t.base.scheme() {
            (page_site, api_site)
        } else {
            // Browsers compare the scheme too (schemeful same-site).
            let (ps, us) = (t.origin_url.scheme(), t.base.scheme());
            (format!("{ps}://{page_site}"), format!("{us}://{api_site}"))
        };
        checks.push(Check::problem(
            t!(lang, "the page on {origin} is on another site than {url}: a SameSite={same_site} cookie is not sent with its fetch", "{origin} 上的页面与 {url} 不同站：SameSite={same_site} 的 Cookie 不会随它的 fetch 发送"),
            t!(lang, "browsers send SameSite=Lax and Strict cookies only with requests from the same site ({page_site} is not {api_site}). The code request works, but the sign-in request arrives without the session: 401 NO_SESSION.", "浏览器只在同站请求中发送 SameSite=Lax 和 Strict 的 Cookie（{page_site} 与 {api_site} 不同站）。请求验证码能成功，但登录请求不会带上会话：401 NO_SESSION。"),
            t!(lang, "put the page and the API on one site (app.example.com and api.example.com, or both behind one host); or start mailcode with `--cookie-same-site none`, which forces Secure and so needs HTTPS; or, without cookies, ask for the code with \"session\": \"token\" and send `Authorization: Bearer <session_token>`.", "让页面和 API 位于同一站点（app.example.com 和 api.example.com，或都放在同一主机后面）；或用 `--cookie-same-site none` 启动 mailcode，它会强制 Secure，因此需要 HTTPS；或者不用 Cookie：请求验证码时加 \"session\": \"token\"，并发送 `Authorization: Bearer <session_token>`。"),
        ));
    }
    let problems = checks.len();
    if t.cross_site && same_site_lower == "none" && c.secure {
        checks.push(Check::warn(
            t!(lang, "the page on {origin} relies on a third-party cookie (SameSite=None)", "{origin} 上的页面依赖第三方 Cookie（SameSite=None）"),
            t!(lang, "Safari, and Chrome or Firefox with third-party cookies blocked, do not send it, whatever mailcode does.", "Safari，以及屏蔽了第三方 Cookie 的 Chrome 或 Firefox 都不会发送它，与 mailcode 无关。"),
            t!(lang, "serve the page and the API on one site (app.example.com and api.example.com), or use bearer tokens (\"session\": \"token\").", "让页面和 API 位于同一站点（app.example.com 和 api.example.com），或使用 Bearer 令牌（\"session\": \"token\"）。"),
        ));
    }
    if problems == 0 {
        let scheme = t.base.scheme();
        let secure = match (c.secure, lang) {
            (true, _) => "Secure",
            (false, Lang::En) => "not Secure",
            (false, Lang::Zh) => "无 Secure",
        };
        checks.insert(
            0,
            Check::Ok(t!(
                lang,
                "session cookie: {name}; HttpOnly; SameSite={same_site}; {secure}: right for {scheme}://",
                "会话 Cookie：{name}；HttpOnly；SameSite={same_site}；{secure}：适合 {scheme}://"
            )),
        );
    }
    checks
}

// ----------------------------------------------------------------------------------------------
// 5. The cookie round trip

/// The cookie, sent back by hand, names the session just created. It is sent even when a browser
/// would not send it, to tell a server-side problem from a browser-side one.
async fn check_round_trip(p: &Probe<'_>, c: &SetCookie) -> Check {
    let t = p.target;
    let lang = t.lang;
    let mut req = p
        .request(Method::GET, "/api/login/email-code/status")
        .header(header::COOKIE, format!("{}={}", c.name, c.value));
    if t.cross_origin {
        req = req.header(header::ORIGIN, &t.origin);
    }
    let answer = match p.send(req).await {
        Ok(a) => a,
        Err(e) => {
            return unanswered(
                lang,
                t!(
                    lang,
                    "cookie round trip: GET /api/login/email-code/status got no answer",
                    "Cookie 往返：GET /api/login/email-code/status 没有回应"
                ),
                &e,
            )
        }
    };
    let status = answer.status_line();
    match (answer.status.as_u16(), answer.code()) {
        (200, _) | (404, "NO_CODE") => {
            if c.sent_by_browser(t) {
                Check::Ok(t!(
                    lang,
                    "cookie round trip: the cookie came back and named the session (GET /api/login/email-code/status: {status})",
                    "Cookie 往返：Cookie 带回后找到了会话（GET /api/login/email-code/status：{status}）"
                ))
            } else {
                Check::info(
                    t!(lang, "cookie round trip: mailcode finds the session by its cookie, but a browser would not send this cookie back (see above)", "Cookie 往返：mailcode 能凭 Cookie 找到会话，但浏览器不会把这个 Cookie 带回来（见上文）"),
                    String::new(),
                )
            }
        }
        (401, "NO_SESSION") => Check::problem(
            t!(lang, "cookie round trip: the session cookie did not identify the session ({status})", "Cookie 往返：会话 Cookie 没能找到会话（{status}）"),
            t!(lang, "the session was created a moment ago, but a request carrying its cookie did not find it: several mailcode instances that do not share one session store, a proxy that drops or rewrites the Cookie header, or a store that loses writes.", "会话刚刚创建，但带着它的 Cookie 的请求却找不到它：多个 mailcode 实例没有共享同一个会话存储、代理丢弃或改写了 Cookie 头，或存储丢失了写入。"),
            t!(lang, "give every instance the same `--redis-url` (and `--database-url`), and make the proxy forward the Cookie header unchanged.", "给每个实例配置相同的 `--redis-url`（以及 `--database-url`），并让代理原样转发 Cookie 头。"),
        ),
        _ => Check::problem(
            t!(lang, "cookie round trip: GET /api/login/email-code/status answered {status}", "Cookie 往返：GET /api/login/email-code/status 回应 {status}"),
            answer.msg().to_owned(),
            t!(lang, "see mailcode's log (stderr) for this request.", "请查看 mailcode 日志（stderr）中这个请求的记录。"),
        ),
    }
}

// ----------------------------------------------------------------------------------------------
// 6. CORS with credentials for a page on another origin

/// The preflight of the page's JSON POST, and the CORS headers of the actual answers.
async fn check_cors(p: &Probe<'_>, post: Option<&Answer>, origin_rejected: bool) -> Vec<Check> {
    let t = p.target;
    let lang = t.lang;
    let origin = &t.origin;
    if !t.cross_origin {
        return vec![Check::info(
            t!(lang, "CORS not checked: the page is on the API's own origin", "未检查 CORS：页面与 API 同源"),
            t!(lang, "pass `--origin` with the origin of a page elsewhere (an SPA dev server, say) to check CORS for it.", "如果页面在别的源（比如 SPA 开发服务器），请用 `--origin` 传入它的源来检查 CORS。"),
        )];
    }
    let client_fix = t!(
        lang,
        "in the page: `fetch(url, {{credentials: 'include'}})` (axios: `withCredentials: true`) on every request to the API.",
        "页面中：对 API 的每个请求都使用 `fetch(url, {{credentials: 'include'}})`（axios：`withCredentials: true`）。"
    );
    let allow_fix = t!(
        lang,
        "start mailcode with `--cors-origin {origin}` (or MAILCODE_CORS_ORIGINS={origin});\n{client_fix}",
        "用 `--cors-origin {origin}`（或 MAILCODE_CORS_ORIGINS={origin}）启动 mailcode；\n{client_fix}"
    );
    let proxy_fix = t!(
        lang,
        "remove the CORS headers the proxy adds (nginx `add_header Access-Control-…`, `proxy_hide_header` rules) and let mailcode answer CORS, with `--cors-origin {origin}`.",
        "去掉代理添加的 CORS 头（nginx 的 `add_header Access-Control-…`、`proxy_hide_header` 规则），让 mailcode 用 `--cors-origin {origin}` 自己回应 CORS。"
    );
    let req = p
        .request(Method::OPTIONS, "/api/login/email-code")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type");
    let pre = match p.send(req).await {
        Ok(a) => a,
        Err(e) => {
            return vec![unanswered(
                lang,
                t!(
                    lang,
                    "CORS preflight: OPTIONS /api/login/email-code got no answer",
                    "CORS 预检：OPTIONS /api/login/email-code 没有回应"
                ),
                &e,
            )]
        }
    };
    let mut checks = Vec::new();
    if !pre.status.is_success() {
        let status = pre.status.as_u16();
        checks.push(Check::problem(
            t!(lang, "CORS preflight from {origin}: OPTIONS answered {status}", "来自 {origin} 的 CORS 预检：OPTIONS 回应 {status}"),
            t!(lang, "browsers need a 2xx answer to the preflight before they send the POST: the page sees a CORS error and mailcode never gets the request.", "浏览器需要预检得到 2xx 回应才会发送 POST：页面会看到 CORS 错误，mailcode 根本收不到请求。"),
            t!(lang, "let OPTIONS requests for /api/ through to mailcode, without authentication or a firewall rule in the way: mailcode answers them itself.", "让 /api/ 的 OPTIONS 请求直达 mailcode，不要有认证或防火墙规则拦截：mailcode 会自己回应。"),
        ));
    }
    let acao = pre.header_all("access-control-allow-origin");
    let acao_ok = acao.len() == 1 && acao[0] == origin;
    match acao.as_slice() {
        [] if origin_rejected => checks.push(Check::info(
            t!(lang, "CORS: no Access-Control-Allow-Origin for {origin} either (the same `--cors-origin {origin}` fixes it)", "CORS：同样没有给 {origin} 的 Access-Control-Allow-Origin（同一个 `--cors-origin {origin}` 即可修复）"),
            client_fix.clone(),
        )),
        [] => checks.push(Check::problem(
            t!(lang, "CORS preflight from {origin}: no Access-Control-Allow-Origin", "来自 {origin} 的 CORS 预检：没有 Access-Control-Allow-Origin"),
            t!(lang, "the browser blocks the page's request: it sees a CORS error and mailcode never gets the POST.", "浏览器会拦截页面的请求：页面看到 CORS 错误，mailcode 收不到 POST。"),
            allow_fix.clone(),
        )),
        [one] if *one == "*" => checks.push(Check::problem(
            t!(lang, "CORS preflight from {origin}: Access-Control-Allow-Origin is *", "来自 {origin} 的 CORS 预检：Access-Control-Allow-Origin 为 *"),
            t!(lang, "browsers refuse `*` for requests with credentials, so the cookie never travels. mailcode never answers `*`: something in front of it does.", "浏览器不接受带凭据请求的 `*`，Cookie 永远不会被发送。mailcode 从不回应 `*`：是它前面的东西加的。"),
            proxy_fix.clone(),
        )),
        [one] if *one != origin => checks.push(Check::problem(
            t!(lang, "CORS preflight from {origin}: Access-Control-Allow-Origin is {one}", "来自 {origin} 的 CORS 预检：Access-Control-Allow-Origin 为 {one}"),
            t!(lang, "the browser compares it exactly with the page's origin (scheme, host and port, no trailing slash).", "浏览器会把它与页面的源精确比较（协议、主机和端口，末尾没有斜杠）。"),
            allow_fix.clone(),
        )),
        [_] => {}
        many => {
            let values = many.join(" | ");
            checks.push(Check::problem(
                t!(lang, "CORS preflight from {origin}: several Access-Control-Allow-Origin values ({values})", "来自 {origin} 的 CORS 预检：有多个 Access-Control-Allow-Origin 值（{values}）"),
                t!(lang, "browsers accept exactly one value: something in front of mailcode adds CORS headers of its own.", "浏览器只接受一个值：mailcode 前面的东西添加了自己的 CORS 头。"),
                proxy_fix.clone(),
            ));
        }
    }
    if acao_ok {
        if pre.header("access-control-allow-credentials") != Some("true") {
            checks.push(Check::problem(
                t!(lang, "CORS preflight from {origin}: no Access-Control-Allow-Credentials: true", "来自 {origin} 的 CORS 预检：没有 Access-Control-Allow-Credentials: true"),
                t!(lang, "without it the browser refuses a request with credentials: the cookie never travels.", "没有它，浏览器会拒绝带凭据的请求：Cookie 永远不会被发送。"),
                proxy_fix.clone(),
            ));
        }
        let list = |name: &str| -> Vec<String> {
            pre.header_all(name)
                .iter()
                .flat_map(|v| v.split(','))
                .map(|s| s.trim().to_ascii_lowercase())
                .collect()
        };
        if !list("access-control-allow-headers")
            .iter()
            .any(|h| h == "content-type")
        {
            checks.push(Check::problem(
                t!(lang, "CORS preflight from {origin}: the Content-Type header is not allowed", "来自 {origin} 的 CORS 预检：不允许 Content-Type 头"),
                t!(lang, "the page's JSON request (`Content-Type: application/json`) is blocked; `*` does not count for requests with credentials.", "页面的 JSON 请求（`Content-Type: application/json`）会被拦截；对带凭据的请求，`*` 不算数。"),
                proxy_fix.clone(),
            ));
        }
        if !list("access-control-allow-methods")
            .iter()
            .any(|m| m == "post")
        {
            checks.push(Check::warn(
                t!(lang, "CORS preflight from {origin}: POST is not listed in Access-Control-Allow-Methods", "来自 {origin} 的 CORS 预检：Access-Control-Allow-Methods 中没有 POST"),
                t!(lang, "browsers let POST through anyway, but DELETE /api/sessions/… needs to be listed.", "浏览器仍会放行 POST，但 DELETE /api/sessions/… 需要被列出。"),
                proxy_fix.clone(),
            ));
        }
    }
    // The actual answers must carry the same headers, or the page cannot read them.
    if let Some(post) = post.filter(|_| !origin_rejected && acao_ok) {
        let post_acao = post.header_all("access-control-allow-origin");
        let ok = post_acao.len() == 1
            && post_acao[0] == origin
            && post.header("access-control-allow-credentials") == Some("true");
        if !ok {
            let got = if post_acao.is_empty() {
                "-".to_owned()
            } else {
                post_acao.join(" | ")
            };
            checks.push(Check::problem(
                t!(lang, "CORS: the answer to the POST lacks Access-Control-Allow-Origin: {origin} with credentials (got {got})", "CORS：POST 的回应没有带凭据的 Access-Control-Allow-Origin: {origin}（实际为 {got}）"),
                t!(lang, "the code is sent, but the page cannot read the answer and sees a CORS error.", "验证码已发送，但页面读不到回应，会看到 CORS 错误。"),
                proxy_fix.clone(),
            ));
        }
    }
    if checks.is_empty() {
        checks.push(Check::Ok(t!(
            lang,
            "CORS with credentials for {origin}: the preflight and the answers allow it",
            "{origin} 的带凭据 CORS：预检和回应都允许"
        )));
        checks.push(Check::info(
            t!(
                lang,
                "doctor cannot see the page's own code:",
                "doctor 看不到页面自己的代码："
            ),
            client_fix,
        ));
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("test URL")
    }

    #[test]
    fn parses_set_cookie_attributes() {
        let c = SetCookie::parse(
            "__Host-mailcode_sid=abc; Path=/; HttpOnly; SameSite=None; Max-Age=604800; Secure",
        )
        .expect("a cookie");
        assert_eq!(c.name, "__Host-mailcode_sid");
        assert_eq!(c.value, "abc");
        assert!(c.secure && c.http_only);
        assert_eq!(c.same_site.as_deref(), Some("None"));
        assert_eq!(c.path.as_deref(), Some("/"));
        assert_eq!(c.max_age, Some(604800));
        assert!(!c.stored_by_browser(&url("http://127.0.0.1:3000")));
        assert!(c.stored_by_browser(&url("https://login.example.com")));
        assert!(SetCookie::parse("garbage").is_none());
    }

    #[test]
    fn sites_roughly_as_browsers_see_them() {
        let same = |a: &str, b: &str| same_site(&url(a), &url(b));
        assert!(same("http://127.0.0.1:5173", "http://127.0.0.1:3000"));
        assert!(same("http://localhost:5173", "http://localhost:3000"));
        assert!(!same("http://localhost:5173", "http://127.0.0.1:3000"));
        assert!(same("https://app.example.com", "https://api.example.com"));
        assert!(!same("http://app.example.com", "https://api.example.com"));
        assert!(!same("https://a.co.uk", "https://b.co.uk"));
        assert!(same("https://x.shop.co.uk", "https://shop.co.uk"));
        assert!(!same("http://spa.test:8080", "http://127.0.0.1:3000"));
    }

    #[test]
    fn domain_attribute_must_cover_the_host() {
        assert!(domain_matches(
            &url("https://login.example.com"),
            "example.com"
        ));
        assert!(domain_matches(&url("https://example.com"), "example.com"));
        assert!(!domain_matches(
            &url("https://badexample.com"),
            "example.com"
        ));
        assert!(!domain_matches(&url("http://127.0.0.1:3000"), "0.0.1"));
    }

    #[test]
    fn problems_render_with_their_fix_in_both_languages() {
        let c = Check::problem("what".into(), "why".into(), "do this".into());
        assert_eq!(c.render(Lang::En), "✗ what\n    why\n    fix: do this\n");
        assert_eq!(c.render(Lang::Zh), "✗ what\n    why\n    修复：do this\n");
    }

    #[test]
    fn usage_errors_are_caught_before_any_request() {
        let args = |url: &str, origin: Option<&str>| DoctorArgs {
            url: url.into(),
            origin: origin.map(str::to_owned),
            lang: "en".into(),
            email: "doctor@example.com".into(),
        };
        assert!(Target::parse(&args("not a url", None)).is_err());
        assert!(Target::parse(&args("ftp://example.com", None)).is_err());
        assert!(Target::parse(&args("http://x", Some("http://y/app"))).is_err());
        let t = Target::parse(&args(
            "http://127.0.0.1:3000/",
            Some("http://127.0.0.1:5173/"),
        ))
        .expect("valid");
        assert_eq!(t.origin, "http://127.0.0.1:5173");
        assert!(t.cross_origin && !t.cross_site && t.loopback && !t.https);
        assert_eq!(t.endpoint("/healthz"), "http://127.0.0.1:3000/healthz");
        let t = Target::parse(&args("https://example.com/auth/", None)).expect("valid");
        assert_eq!(t.endpoint("/readyz"), "https://example.com/auth/readyz");
        assert!(!t.cross_origin && !t.loopback);
    }

    fn target(url: &str, origin: Option<&str>) -> Target {
        Target::parse(&DoctorArgs {
            url: url.into(),
            origin: origin.map(str::to_owned),
            lang: "en".into(),
            email: "doctor@example.com".into(),
        })
        .expect("valid")
    }

    fn problems(checks: &[Check]) -> Vec<String> {
        checks
            .iter()
            .filter_map(|c| match c {
                Check::Problem { what, fix, .. } => Some(format!("{what} / {fix}")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_cookie_without_secure_over_https_names_the_proxy_settings() {
        let t = target("https://login.example.com", None);
        let c = SetCookie::parse("mailcode_sid=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=60")
            .expect("a cookie");
        let found = problems(&check_cookie(&t, &c));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("X-Forwarded-Proto: https"), "{found:?}");
        assert!(found[0].contains("--trust-proxy"), "{found:?}");
    }

    #[test]
    fn a_correct_cookie_over_https_is_fine_and_a_third_party_one_is_a_warning() {
        let c = SetCookie::parse(
            "__Host-mailcode_sid=abc; Path=/; HttpOnly; SameSite=None; Max-Age=60; Secure",
        )
        .expect("a cookie");
        let same = check_cookie(&target("https://login.example.com", None), &c);
        assert!(matches!(same.as_slice(), [Check::Ok(_)]), "{same:?}");
        let other = check_cookie(
            &target("https://login.example.com", Some("https://spa.example.org")),
            &c,
        );
        assert!(problems(&other).is_empty(), "{other:?}");
        assert!(other.iter().any(|c| matches!(c, Check::Warn { .. })));
    }

    #[test]
    fn a_rewritten_cookie_breaks_the_host_prefix_and_domain_rules() {
        let t = target("https://login.example.com", None);
        let c = SetCookie::parse(
            "__Host-mailcode_sid=abc; Path=/api; HttpOnly; SameSite=Lax; Secure; Domain=other.com",
        )
        .expect("a cookie");
        let found = problems(&check_cookie(&t, &c));
        assert!(
            found.iter().any(|p| p.contains("__Host- rules")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|p| p.contains("--cookie-domain")),
            "{found:?}"
        );
    }
}
