//! Every user-facing message, in English and Simplified Chinese, keyed by the stable `code`.
//! `msg` is for people; clients branch on `code` and `data`, never on this text.
use std::borrow::Cow;
use std::fmt::Display;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Zh,
}

impl Lang {
    /// Picks zh or en from an `Accept-Language` header by quality; English when neither is asked.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let Some(h) = header else { return Lang::En };
        let mut best: Option<(f32, Lang)> = None;
        for part in h.split(',') {
            let mut it = part.trim().split(';');
            let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = it
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|v| v.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            let lang = if tag == "zh" || tag.starts_with("zh-") {
                Lang::Zh
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::En)
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "zh" | "zh-CN" | "zh-cn" => Some(Lang::Zh),
            _ => None,
        }
    }
}

/// How the client must change to send its session back; quoted by `NO_SESSION` (SPEC §2).
const NO_SESSION_EN: &str = "This request carries no session, so the code cannot be checked: a code belongs to the session that asked for it. \
Send the session cookie back: with fetch use `credentials: 'include'` (axios: `withCredentials: true`) on both requests, \
allow your page's origin with `--cors-origin`, and do not force Secure cookies over plain HTTP. \
Clients without cookies: ask for the code with \"session\": \"token\" and send `Authorization: Bearer <session_token>`.";
const NO_SESSION_ZH: &str = "请求没有携带会话，无法校验验证码：验证码属于请求它的那个会话。\
请把会话 Cookie 带回来：fetch 的两次请求都要设置 `credentials: 'include'`（axios 为 `withCredentials: true`），\
用 `--cors-origin` 允许你页面的源，并且不要在明文 HTTP 下强制 Secure Cookie。\
不使用 Cookie 的客户端：请求验证码时加上 \"session\": \"token\"，提交时发送 `Authorization: Bearer <session_token>`。";

/// The message for `code`; `arg` fills the one variable part some messages have.
pub fn message(code: &str, lang: Lang, arg: &str) -> Cow<'static, str> {
    let (en, zh): (&str, &str) = match code {
        "OK" => ("OK.", "成功。"),
        "CODE_SENT" => ("We sent a code to that address if it can receive one. It is valid for 10 minutes.", "如果该地址可以接收邮件，验证码已发送，10 分钟内有效。"),
        "LOGIN_SUCCESS" => ("Signed in.", "登录成功。"),
        "REGISTERED" => ("Account created; you are signed in.", "注册成功，已登录。"),
        "PASSWORD_RESET" => ("Password changed; every other session has ended.", "密码已修改，其他设备上的登录已全部退出。"),
        "LOGGED_OUT" => ("Signed out.", "已退出登录。"),
        "SESSION_REVOKED" => ("That session has ended.", "已在该设备上退出登录。"),
        "INVALID_JSON" => ("The body is not valid JSON: {}", "请求体不是合法的 JSON：{}"),
        "INVALID_INPUT" => ("The field `{}` is missing or not valid.", "字段 `{}` 缺失或不合法。"),
        "INVALID_EMAIL" => ("That is not an email address we can send to: {}", "邮箱地址无效：{}"),
        "PAYLOAD_TOO_LARGE" => ("The body is larger than 16 KiB.", "请求体超过 16 KiB。"),
        "UNSUPPORTED_MEDIA_TYPE" => ("Send the body as JSON with `Content-Type: application/json`.", "请以 JSON 发送请求体，并设置 `Content-Type: application/json`。"),
        "NO_SESSION" => (NO_SESSION_EN, NO_SESSION_ZH),
        "CODE_INVALID" => ("The code is wrong or was not sent to this session for this address. Attempts left: {}.", "验证码错误，或不是为当前会话和此邮箱发送的。剩余尝试次数：{}。"),
        "CODE_EXPIRED" => ("The code has expired; ask for a new one.", "验证码已过期，请重新获取。"),
        "CODE_ATTEMPTS_EXCEEDED" => ("Too many wrong attempts: this code no longer works; ask for a new one.", "错误次数过多，该验证码已失效，请重新获取。"),
        "LOGIN_FAILED" => ("The username, password or email is not right.", "用户名、密码或邮箱不正确。"),
        "NOT_LOGGED_IN" => ("You are not signed in.", "尚未登录。"),
        "ORIGIN_REJECTED" => ("This request came from a page that is not allowed to change anything here ({}). Add its origin with `--cors-origin`.", "该请求来自无权在此修改数据的页面（{}）。请用 `--cors-origin` 放行该页面的源。"),
        "USERNAME_TAKEN" => ("That username is taken.", "该用户名已被占用。"),
        "EMAIL_TAKEN" => ("An account with that email already exists; sign in instead.", "该邮箱已注册，请直接登录。"),
        "RATE_LIMITED" => ("Too many requests; try again in {} seconds.", "请求过于频繁，请 {} 秒后再试。"),
        "MAIL_UNAVAILABLE" => ("Mail cannot be sent right now; try again later.", "邮件暂时无法发送，请稍后再试。"),
        "STORE_UNAVAILABLE" => ("The service's storage is unavailable; try again in a moment.", "存储服务暂不可用，请稍后再试。"),
        "INTERNAL" => ("Something went wrong on our side (request id {}).", "服务器内部错误（请求编号 {}）。"),
        "SECRET_MISMATCH" => ("This instance's server secret is not the deployment's, so it would refuse codes sent through the other instances: restart it with the deployment's secret file (MAILCODE_SECRET_FILE: the same file on every instance). The fingerprints are in `data`.", "该实例的服务器密钥与本部署不一致，会拒绝经由其他实例发送的验证码：请用本部署的密钥文件（MAILCODE_SECRET_FILE：每个实例使用同一个文件）重启它。指纹见 `data`。"),
        "TIMEOUT" => ("The request took too long; try again.", "请求超时，请重试。"),
        "NOT_FOUND" => ("There is nothing here.", "请求的地址不存在。"),
        "METHOD_NOT_ALLOWED" => ("This route does not take that method.", "该路由不支持此方法。"),
        "NO_CODE" => ("This session has no pending code.", "当前会话没有待验证的验证码。"),
        "NO_MAIL" => ("No mail for that address in the outbox.", "发件箱中没有发往该地址的邮件。"),
        "SESSION_NOT_FOUND" => ("You have no session with that id.", "没有该会话。"),
        "PASSWORDLESS_DISABLED" => ("Passwordless sign-in is not enabled on this server.", "该服务器未启用免密码登录。"),
        _ => ("Error.", "错误。"),
    };
    let text = if lang == Lang::Zh { zh } else { en };
    // The reason of INVALID_EMAIL comes in English (`InvalidEmail`'s `Display`, the flows'
    // blocklist): a Chinese reader gets it in Chinese.
    let arg = if lang == Lang::Zh && code == "INVALID_EMAIL" {
        invalid_email_reason_zh(arg)
    } else {
        arg
    };
    if text.contains("{}") {
        Cow::Owned(text.replacen("{}", arg, 1))
    } else {
        Cow::Borrowed(text)
    }
}

/// What the flows say when `--blocked-domains` refuses an address (`flows::codes`).
const BLOCKED_DOMAIN_REASON: &str = "this mail domain is not accepted";

/// The Chinese of an `INVALID_EMAIL` reason; a reason without one is shown as it came.
fn invalid_email_reason_zh(reason: &str) -> &str {
    use crate::domain::InvalidEmail as E;
    if reason == BLOCKED_DOMAIN_REASON {
        return "不接受该邮箱域名";
    }
    let zh = [
        (E::Empty, "地址为空"),
        (E::TooLong, "地址超过 254 个字符"),
        (
            E::ForbiddenCharacter,
            "地址中含有空格、换行、控制字符或不可见字符",
        ),
        (E::MissingAt, "地址中没有 @"),
        (E::MultipleAt, "地址中有不止一个 @"),
        (E::EmptyLocalPart, "@ 前面没有内容"),
        (E::LocalPartTooLong, "@ 前面的部分超过 64 个字符"),
        (
            E::InvalidLocalPart,
            "@ 前面的部分只能包含 ASCII 字母、数字和 ! # $ % & ' * + - . / = ? ^ _ ` { | } ~",
        ),
        (
            E::MisplacedDot,
            "@ 前面的部分以点号开头或结尾，或含有连续的两个点号",
        ),
        (E::EmptyDomain, "@ 后面没有内容"),
        (E::DomainNotQualified, "域名至少需要两段，例如 example.com"),
        (E::InvalidDomain, "@ 后面的部分不是有效的域名"),
    ];
    zh.into_iter()
        .find(|(e, _)| e.to_string() == reason)
        .map_or(reason, |(_, z)| z)
}

/// `INVALID_INPUT` for a username refused by one of SPEC §3's rules: the field, then the rule, so
/// a person learns what to change. `rule` and `detail` are `InvalidUsername::rule` and `detail`;
/// an unknown rule falls back to the plain message.
pub fn invalid_username(rule: &str, detail: &str, lang: Lang) -> Cow<'static, str> {
    let field = "username";
    let (en, zh): (&str, &str) = match rule {
        "empty" => ("the username is empty", "用户名为空"),
        "too_short" => (
            "a username has at least 2 characters",
            "用户名至少需要 2 个字符",
        ),
        "too_long" => (
            "a username has at most 32 characters",
            "用户名最多 32 个字符",
        ),
        "invalid_character" => (
            "a username may only contain letters, digits, `_`, `.` and `-`",
            "用户名只能包含字母、数字、`_`、`.` 和 `-`",
        ),
        "invisible_character" => (
            "it contains an invisible character ({})",
            "其中含有不可见字符（{}）",
        ),
        "not_for_names" => (
            "it contains a character that is not used in names ({})",
            "其中含有不能用于名称的字符（{}）",
        ),
        "combining_marks" => (
            "it starts with a combining mark, or repeats one or stacks more than 4 on one letter",
            "它以组合符号开头，或在同一个字母上重复组合符号或叠加超过 4 个",
        ),
        "mixed_scripts" => (
            "the username mixes scripts ({}) in a way that can imitate another name",
            "用户名混用了多种文字（{}），可能被用来冒充其他用户名",
        ),
        _ => return message("INVALID_INPUT", lang, field),
    };
    let why = if lang == Lang::Zh { zh } else { en }.replacen("{}", detail, 1);
    Cow::Owned(if lang == Lang::Zh {
        format!("字段 `{field}` 不合法：{why}。")
    } else {
        format!("The field `{field}` is not valid: {why}.")
    })
}

/// A text of `mailcode doctor`'s report, keyed like the messages above (the key names the check
/// and the part: `cookie.domain` is what is wrong, `cookie.domain_why` why, `cookie.domain_fix`
/// the fix). `{name}` stands for the argument of that name; a `{` that names no argument stays as
/// written (`{code, msg, data}`). An unknown key prints as itself: the doctor's tests check every
/// key and its arguments against this table.
pub fn doctor(lang: Lang, key: &str, args: &[(&str, &dyn Display)]) -> String {
    match doctor_text(key) {
        Some((en, zh)) => fill(if lang == Lang::Zh { zh } else { en }, args),
        None => key.to_owned(),
    }
}

/// `{name}` replaced by the argument of that name, once, left to right: an argument's value is
/// never read again for placeholders (a URL or a header value may hold braces).
fn fill(template: &str, args: &[(&str, &dyn Display)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let arg = after.find('}').and_then(|close| {
            let name = &after[..close];
            args.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, value)| (close, value))
        });
        match arg {
            Some((close, value)) => {
                out.push_str(&value.to_string());
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// English and Chinese of each text of `mailcode doctor` (src/doctor/), side by side.
pub(crate) fn doctor_text(key: &str) -> Option<(&'static str, &'static str)> {
    Some(match key {
        // The command itself
        "doctor.failed" => ("mailcode doctor: {error}", "mailcode doctor：{error}"),
        "doctor.runtime" => ("cannot start the runtime: {error}", "无法启动运行时：{error}"),
        "doctor.client" => ("cannot build an HTTP client: {error}", "无法创建 HTTP 客户端：{error}"),
        "usage.lang" => ("--lang {lang}: use en or zh", "--lang {lang}：请使用 en 或 zh"),
        "usage.url" => ("{url} is not a URL doctor can check: {error} (e.g. https://login.example.com or http://127.0.0.1:3000)", "{url} 不是可以检查的 URL：{error}（例如 https://login.example.com 或 http://127.0.0.1:3000）"),
        "usage.url_query" => ("the URL must not carry a query or fragment: give the base URL of mailcode", "URL 不能带查询参数或片段：请给出 mailcode 的基础 URL"),
        "usage.origin" => ("--origin {origin} is not an origin: {error} (write scheme://host[:port], e.g. http://localhost:5173)", "--origin {origin} 不是一个源：{error}（格式为 scheme://host[:port]，例如 http://localhost:5173）"),
        "usage.origin_path" => ("--origin {origin} is not an origin: write scheme://host[:port] without a path, e.g. http://localhost:5173", "--origin {origin} 不是一个源：请写成不带路径的 scheme://host[:port]，例如 http://localhost:5173"),
        "usage.email" => ("--email {email} is not an email address", "--email {email} 不是邮箱地址"),
        "usage.scheme" => ("the scheme must be http or https, not {scheme}", "协议必须是 http 或 https，而不是 {scheme}"),
        "usage.no_host" => ("no host", "没有主机"),
        "usage.credentials" => ("no user or password in the URL", "URL 中不能有用户名或密码"),
        // The report
        "report.heading" => ("mailcode doctor: {url} as a page on {origin} would see it", "mailcode doctor：以 {origin} 上页面的视角检查 {url}"),
        "report.fix" => ("fix: ", "修复："),
        "report.no_problems" => ("no problems found", "未发现问题"),
        "report.one_problem" => ("1 problem found", "发现 1 个问题"),
        "report.problems" => ("{n} problems found", "发现 {n} 个问题"),
        "report.one_warning" => (" (1 warning)", "（1 个警告）"),
        "report.warnings" => (" ({w} warnings)", "（{w} 个警告）"),
        "report.skipped" => ("; the cookie checks could not run", "；Cookie 相关检查未能进行"),
        // A request that got no answer
        "net.no_answer" => ("no answer: {detail}", "无响应：{detail}"),
        "net.timeout_fix" => ("mailcode answers every request within 10 s: something in front of it (firewall, proxy, load balancer) holds the request; check that it forwards to mailcode's --listen address.", "mailcode 会在 10 秒内响应每个请求：是它前面的防火墙、代理或负载均衡卡住了请求；请检查它是否转发到 mailcode 的 --listen 地址。"),
        "net.forward_fix" => ("check that the proxy in front of mailcode forwards this path to it.", "请检查 mailcode 前面的代理是否把这个路径转发给它。"),
        // 1. Reachable
        "reach.cannot" => ("cannot reach {url}", "无法访问 {url}"),
        "reach.tls" => ("the TLS handshake failed: {detail}", "TLS 握手失败：{detail}"),
        "reach.tls_fix" => ("a browser refuses this certificate too: serve a certificate valid for this host name (e.g. from Let's Encrypt), with its full chain.", "浏览器同样会拒绝这个证书：请为该主机名配置有效证书（例如 Let's Encrypt），并提供完整证书链。"),
        "reach.timeout" => ("no answer within 5 s: {detail}", "5 秒内无响应：{detail}"),
        "reach.timeout_fix" => ("check the host and port, and that no firewall drops the connection.", "请检查主机和端口，并确认没有防火墙丢弃连接。"),
        "reach.connect" => ("the connection failed: {detail}", "连接失败：{detail}"),
        "reach.connect_fix" => ("is mailcode running and listening there? `--listen` sets its address (default 127.0.0.1:3000, which only this machine can reach; `--listen 0.0.0.0:3000` accepts others). Check the host and port of the URL.", "mailcode 是否在运行并监听该地址？`--listen` 设置监听地址（默认 127.0.0.1:3000，只有本机可访问；`--listen 0.0.0.0:3000` 接受其他机器）。请检查 URL 的主机和端口。"),
        "reach.failed" => ("the request failed: {detail}", "请求失败：{detail}"),
        "reach.failed_fix" => ("check the URL.", "请检查 URL。"),
        "reach.redirect" => ("{url} redirects to {to}", "{url} 重定向到 {to}"),
        "reach.redirect_why" => ("a fetch with credentials does not get to mailcode through redirects, and the cookie belongs to the host that sets it.", "带凭据的 fetch 不能通过重定向到达 mailcode，Cookie 也属于设置它的那个主机。"),
        "reach.redirect_fix" => ("run doctor (and point the page) at the URL it redirects to, e.g. the https:// one.", "请对重定向后的 URL（例如 https:// 的那个）运行 doctor，页面也应使用该 URL。"),
        "reach.not_mailcode" => ("{url} answered {status}, not mailcode's {code, msg, data}", "{url} 返回了 {status}，不是 mailcode 的 {code, msg, data}"),
        "reach.not_mailcode_why" => ("something else answers at this address: another server, a proxy's error page, or mailcode under another path.", "该地址上响应的是别的服务：另一个服务器、代理的错误页面，或 mailcode 挂在另一个路径下。"),
        "reach.not_mailcode_fix" => ("check the port and the path prefix of the URL, and that the proxy forwards to mailcode's --listen address.", "请检查 URL 的端口和路径前缀，以及代理是否转发到 mailcode 的 --listen 地址。"),
        "reach.ok" => ("reachable: GET {url} answered 200 OK", "可访问：GET {url} 返回 200 OK"),
        // 2. Readiness and one secret per deployment
        "ready.no_answer" => ("readiness: GET /readyz got no answer", "就绪检查：GET /readyz 无响应"),
        "ready.no_stores" => ("readiness: GET /readyz answered {status} without the readiness of the stores", "就绪检查：GET /readyz 返回 {status}，但没有各存储的状态"),
        "ready.no_stores_why" => ("the proxy may not forward /readyz, or this is not mailcode.", "代理可能没有转发 /readyz，或者这不是 mailcode。"),
        "ready.no_stores_fix" => ("forward every path to mailcode, or at least /healthz, /readyz and /api/.", "把所有路径都转发给 mailcode，至少包括 /healthz、/readyz 和 /api/。"),
        "ready.stores_ok" => ("stores ready: sessions ok, users ok", "存储就绪：会话 ok，用户 ok"),
        "ready.sessions" => ("the session store is {sessions}", "会话存储状态：{sessions}"),
        "ready.sessions_why" => ("no code can be sent and nobody can sign in: every such request gets 503 STORE_UNAVAILABLE.", "无法发送验证码，也无法登录：这些请求都会得到 503 STORE_UNAVAILABLE。"),
        "ready.sessions_fix" => ("check the server behind `--redis-url` (or, without Redis, `--database-url`): is it running, reachable from mailcode, are the credentials right? mailcode recovers by itself once it answers.", "请检查 `--redis-url`（未使用 Redis 时为 `--database-url`）指向的服务器：是否在运行、mailcode 能否连上、凭据是否正确？它恢复后 mailcode 会自动恢复。"),
        "ready.users" => ("the user database is {users}", "用户数据库状态：{users}"),
        "ready.users_why" => ("nobody can sign in or register: those requests get 503 STORE_UNAVAILABLE.", "无法登录或注册：这些请求会得到 503 STORE_UNAVAILABLE。"),
        "ready.users_fix" => ("check the database behind `--database-url`: is it running, reachable from mailcode, are the credentials right?", "请检查 `--database-url` 指向的数据库：是否在运行、mailcode 能否连上、凭据是否正确？"),
        "ready.mail_ok" => ("mail ready", "邮件就绪"),
        "ready.mail" => ("mail is {mail}", "邮件状态：{mail}"),
        "ready.mail_why" => ("codes are queued and retried while they are valid, but nobody receives them until mail works.", "验证码会排队并在有效期内重试，但在邮件恢复之前没有人能收到。"),
        "ready.mail_fix" => ("check `--smtp-url`: host, port, TLS mode (smtps://host:465, or smtp://host:587?tls=required for STARTTLS), user and password, and that the mail server accepts connections from this machine.", "请检查 `--smtp-url`：主机、端口、TLS 方式（smtps://host:465，或 STARTTLS 用 smtp://host:587?tls=required）、用户名和密码，以及邮件服务器是否接受来自本机的连接。"),
        "ready.outbox" => ("mail goes to the development outbox: no code mail really leaves", "邮件进入开发用发件箱：验证码邮件并不会真正发出"),
        "ready.outbox_fix" => ("for real users start mailcode with `--smtp-url smtp://user:password@smtp.example.com:587?tls=required` (and `--mail-from`).", "面向真实用户时请用 `--smtp-url smtp://user:password@smtp.example.com:587?tls=required`（以及 `--mail-from`）启动 mailcode。"),
        "ready.outbox_loopback" => ("fine for development: read the codes at /dev/outbox.", "开发时没问题：在 /dev/outbox 查看验证码。"),
        "ready.outbox_production" => ("this URL is not a loopback address, so this looks like production without SMTP: users wait for codes that never arrive.", "该 URL 不是回环地址，看起来是没有配置 SMTP 的生产环境：用户会一直等待永远不会到达的验证码。"),
        "secret.unreported" => ("one secret per deployment not checked: this mailcode's /readyz does not report it", "未检查部署是否使用同一密钥：该 mailcode 的 /readyz 不报告它"),
        "secret.unreported_why" => ("older versions do not compare secrets: upgrade, and give every instance the same MAILCODE_SECRET_FILE.", "旧版本不比较密钥：请升级，并让所有实例使用同一个 MAILCODE_SECRET_FILE。"),
        "secret.why" => ("a code sent through one instance is refused by another with 401 CODE_INVALID (\"the code is wrong\"), as often as the load balancer switches; the odd instance's /readyz answers 503 SECRET_MISMATCH.", "经由一个实例发送的验证码会被另一个实例以 401 CODE_INVALID（“验证码错误”）拒绝，负载均衡每切换一次就会发生；不一致的实例的 /readyz 返回 503 SECRET_MISMATCH。"),
        "secret.fix" => ("give every instance the same secret file (MAILCODE_SECRET_FILE or --secret-file; `mailcode secret show` on each host prints its fingerprint) and restart the odd one. If the secret was changed on purpose with `mailcode secret rotate`, restart the instances still running with the old file.", "让所有实例使用同一个密钥文件（MAILCODE_SECRET_FILE 或 --secret-file；在每台主机上运行 `mailcode secret show` 可查看指纹），并重启不一致的实例。如果是用 `mailcode secret rotate` 有意更换了密钥，请重启仍在使用旧文件的实例。"),
        "secret.mismatch" => ("an instance's server secret (fingerprint {ours}) is not the deployment's ({recorded})", "有实例的服务器密钥（指纹 {ours}）与本部署的（{recorded}）不一致"),
        "secret.different" => ("the instances behind this URL use different server secrets (fingerprints {list})", "该 URL 后面的实例使用了不同的服务器密钥（指纹 {list}）"),
        "secret.ok" => ("one secret: the deployment's (fingerprint {fp}) in {n} answers of /readyz", "同一密钥：{n} 次 /readyz 响应都是本部署的密钥（指纹 {fp}）"),
        // 3. The code request
        "code.no_answer" => ("code request: POST /api/login/email-code got no answer", "请求验证码：POST /api/login/email-code 无响应"),
        "code.ok" => ("code request from {origin}: {status} (delivery: {delivery})", "来自 {origin} 的验证码请求：{status}（投递状态：{delivery}）"),
        "code.rate_limited" => ("code request rate-limited: {status}, retry after {retry} s", "验证码请求触发了频率限制：{status}，{retry} 秒后可重试"),
        "code.rate_limited_why" => ("the limits work (one code per address every 60 s, 5 per hour; 30 code requests per client IP per hour), but the probe got no cookie, so the cookie checks are skipped.", "频率限制工作正常（同一地址每 60 秒一个验证码、每小时 5 个；每个客户端 IP 每小时 30 次），但探测没有拿到 Cookie，因此跳过 Cookie 相关检查。"),
        "code.rate_limited_fix" => ("run doctor again with `--email` and another address than {email}, or after {retry} s.", "换一个不同于 {email} 的地址用 `--email` 再运行 doctor，或在 {retry} 秒后重试。"),
        "code.email_refused" => ("the deployment refuses the probe address {email}: {status}", "该部署拒绝了探测地址 {email}：{status}"),
        "code.email_refused_fix" => ("run doctor with `--email` and an address this deployment accepts.", "请用 `--email` 指定该部署接受的地址再运行 doctor。"),
        "code.origin_rejected" => ("code request from {origin} rejected: {status}", "来自 {origin} 的验证码请求被拒绝：{status}"),
        "code.origin_rejected_why" => ("mailcode does not allow pages on {origin} to call its API with cookies (CSRF defence): the page gets 403 for every code and sign-in request.", "mailcode 不允许 {origin} 上的页面携带 Cookie 调用它的 API（CSRF 防护）：该页面的每个验证码和登录请求都会得到 403。"),
        "code.origin_rejected_fix" => ("start mailcode with `--cors-origin {origin}` (or MAILCODE_CORS_ORIGINS={origin}).", "用 `--cors-origin {origin}`（或 MAILCODE_CORS_ORIGINS={origin}）启动 mailcode。"),
        "code.own_origin_rejected" => ("code request from the URL's own origin {origin} rejected: {status}", "来自 URL 自身源 {origin} 的验证码请求被拒绝：{status}"),
        "code.own_origin_https_why" => ("mailcode derives its own origin from the Host header and the scheme, and does not think it is {origin}: most often TLS ends at a proxy that sends no `X-Forwarded-Proto: https`, or that mailcode does not trust, so mailcode believes it is http://…; or the proxy rewrites Host. The page mailcode serves itself at {url} fails the same way.", "mailcode 根据 Host 头和协议推断自己的源，而它不认为自己是 {origin}：最常见的是 TLS 在代理处终止，而代理没有发送 `X-Forwarded-Proto: https`，或 mailcode 不信任该代理，于是 mailcode 以为自己是 http://…；或者代理改写了 Host。mailcode 自己在 {url} 提供的页面也会同样失败。"),
        "code.own_origin_http_why" => ("mailcode derives its own origin from the Host header and the scheme, and does not think it is {origin}: most often a proxy listed in `--trust-proxy` sends `X-Forwarded-Proto: https` for this http:// site, so mailcode believes it is https://…; or the proxy rewrites Host. The page mailcode serves itself at {url} fails the same way.", "mailcode 根据 Host 头和协议推断自己的源，而它不认为自己是 {origin}：最常见的是 `--trust-proxy` 中的代理对这个 http:// 站点发送了 `X-Forwarded-Proto: https`，于是 mailcode 以为自己是 https://…；或者代理改写了 Host。mailcode 自己在 {url} 提供的页面也会同样失败。"),
        "code.own_origin_https_fix" => ("make the proxy pass the Host header unchanged and send the real scheme (nginx: `proxy_set_header Host $host;` and `proxy_set_header X-Forwarded-Proto $scheme;`), and start mailcode with `--trust-proxy <the proxy's address or CIDR>`.", "让代理原样传递 Host 头并发送真实协议（nginx：`proxy_set_header Host $host;` 和 `proxy_set_header X-Forwarded-Proto $scheme;`），并用 `--trust-proxy <代理的地址或 CIDR>` 启动 mailcode。"),
        "code.own_origin_http_fix" => ("make the proxy pass the Host header unchanged and the real scheme (nginx: `proxy_set_header Host $host;` and `proxy_set_header X-Forwarded-Proto $scheme;`), or serve the site over HTTPS.", "让代理原样传递 Host 头和真实协议（nginx：`proxy_set_header Host $host;` 和 `proxy_set_header X-Forwarded-Proto $scheme;`），或通过 HTTPS 提供站点。"),
        "code.without_origin" => ("the cookie checks below read a second code request sent without Origin", "下面的 Cookie 检查使用了第二个不带 Origin 的验证码请求"),
        "code.without_origin_why" => ("(as curl would send it: mailcode accepts it, since no browser sends a request without Origin)", "（与 curl 发送的一样：mailcode 会接受，因为浏览器不会发送不带 Origin 的请求）"),
        "code.answered" => ("code request: POST /api/login/email-code answered {status}", "请求验证码：POST /api/login/email-code 返回 {status}"),
        "code.not_found_why" => ("the API is not where the page will look for it.", "页面请求的路径上没有 API。"),
        "code.not_found_fix" => ("make the proxy forward /api/ to mailcode (every method, including OPTIONS), without changing the path.", "让代理把 /api/ 原样转发给 mailcode（所有方法，包括 OPTIONS）。"),
        "code.unusable" => ("an answer a page cannot use.", "页面无法使用的响应。"),
        "code.failed_fix" => ("see mailcode's log (stderr) for this request; a 503 means a store or mail is down (see readiness above).", "请查看 mailcode 的日志（stderr）中这个请求的记录；503 表示某个存储或邮件不可用（见上面的就绪检查）。"),
        // 4. The session cookie
        "cookie.none" => ("the code answer sets no session cookie", "验证码请求的响应没有设置会话 Cookie"),
        "cookie.none_why" => ("the code is bound to the session this cookie names: without it, the sign-in request gets 401 NO_SESSION.", "验证码绑定在这个 Cookie 所指的会话上：没有它，登录请求会得到 401 NO_SESSION。"),
        "cookie.others_why" => ("the answer sets other cookies ({names}), not {name} or {host_name}: the sign-in request will get 401 NO_SESSION.", "响应设置了其他 Cookie（{names}），而不是 {name} 或 {host_name}：登录请求会得到 401 NO_SESSION。"),
        "cookie.none_fix" => ("make the proxy or CDN pass Set-Cookie through unchanged and never cache /api/ (mailcode sends `Cache-Control: no-store`).", "让代理或 CDN 原样传递 Set-Cookie，并且不要缓存 /api/（mailcode 会发送 `Cache-Control: no-store`）。"),
        "cookie.http_only" => ("the session cookie {name} is not HttpOnly", "会话 Cookie {name} 没有 HttpOnly"),
        "cookie.http_only_why" => ("any script on the page, or injected into it, can read the session id.", "页面上的任何脚本（包括被注入的脚本）都能读到会话 ID。"),
        "cookie.http_only_fix" => ("mailcode always sets HttpOnly: something rewrites the cookie (nginx `proxy_cookie_flags`, a CDN rule); remove that rewrite.", "mailcode 总是设置 HttpOnly：某个中间层（代理或 CDN）改写了 Cookie（nginx `proxy_cookie_flags`、CDN 规则）；请去掉这个改写。"),
        "cookie.secure_over_http" => ("the session cookie {name} is Secure but {url} is plain http://: the browser drops it", "会话 Cookie {name} 带有 Secure，但 {url} 是明文 http:// 地址：浏览器会丢弃它"),
        "cookie.secure_over_http_effect" => ("A browser keeps Secure cookies only from https:// answers, so every request starts a new session and the code can never be checked (401 NO_SESSION). (Some browsers make an exception for http://localhost; do not rely on it: Safari does not, and no browser does for a real host name.)", "浏览器只接受来自 https:// 响应的 Secure Cookie，所以每个请求都会开始一个新会话，验证码永远无法校验（401 NO_SESSION）。（有些浏览器对 http://localhost 例外；不要依赖它：Safari 没有这个例外，对真实主机名也没有浏览器例外。）"),
        "cookie.same_site_none_forces_secure" => ("`--cookie-same-site none` forces Secure (browsers refuse SameSite=None without it).\n{effect}", "`--cookie-same-site none` 会强制 Secure（浏览器拒绝没有 Secure 的 SameSite=None）。\n{effect}"),
        "cookie.same_site_none_forces_secure_fix" => ("serve mailcode over HTTPS (a TLS proxy that sends `X-Forwarded-Proto: https`, and `--trust-proxy <its CIDR>`); or, on plain HTTP, drop `--cookie-same-site none` (the default lax works for a page on the same site).", "通过 HTTPS 提供 mailcode（TLS 代理发送 `X-Forwarded-Proto: https`，并设置 `--trust-proxy <代理的 CIDR>`）；或者在明文 HTTP 下去掉 `--cookie-same-site none`（默认的 lax 适用于同站页面）。"),
        "cookie.proxy_claims_https" => ("mailcode marked it Secure because it believed the request came over HTTPS: a proxy listed in `--trust-proxy` sent `X-Forwarded-Proto: https` for this http:// site.\n{effect}", "mailcode 认为请求来自 HTTPS，所以标记了 Secure：`--trust-proxy` 中的代理对这个 http:// 站点发送了 `X-Forwarded-Proto: https`。\n{effect}"),
        "cookie.proxy_claims_https_fix" => ("serve the site over HTTPS end to end; or make the proxy send the real scheme (nginx: `proxy_set_header X-Forwarded-Proto $scheme;`); or remove its address from `--trust-proxy`.", "全程通过 HTTPS 提供站点；或让代理发送真实协议（nginx：`proxy_set_header X-Forwarded-Proto $scheme;`）；或从 `--trust-proxy` 中移除它的地址。"),
        "cookie.not_secure" => ("the session cookie {name} is not Secure although {url} is https://", "{url} 是 https://，但会话 Cookie {name} 没有 Secure"),
        "cookie.not_secure_why" => ("mailcode did not see HTTPS: TLS ends at a proxy in front of it, and mailcode either gets no `X-Forwarded-Proto: https` or does not trust the proxy that sends it. The cookie may then travel over plain HTTP, and SameSite=None cannot work.", "mailcode 没有看到 HTTPS：TLS 在它前面的代理处终止，而 mailcode 要么没收到 `X-Forwarded-Proto: https`，要么不信任发送它的代理。这样 Cookie 可能经明文 HTTP 传输，SameSite=None 也无法使用。"),
        "cookie.not_secure_fix" => ("make the TLS-terminating proxy send `X-Forwarded-Proto: https` (nginx: `proxy_set_header X-Forwarded-Proto $scheme;`) and start mailcode with `--trust-proxy <the proxy's address or CIDR>`, e.g. `--trust-proxy 10.0.0.5/32`.", "让终止 TLS 的代理发送 `X-Forwarded-Proto: https`（nginx：`proxy_set_header X-Forwarded-Proto $scheme;`），并用 `--trust-proxy <代理的地址或 CIDR>` 启动 mailcode，例如 `--trust-proxy 10.0.0.5/32`。"),
        "cookie.none_without_secure" => ("SameSite=None without Secure: browsers reject the cookie", "SameSite=None 但没有 Secure：浏览器会拒绝这个 Cookie"),
        "cookie.none_without_secure_why" => ("a cookie meant for other sites must be Secure; mailcode always adds Secure with `--cookie-same-site none`, so something rewrote the cookie.", "给其他站点用的 Cookie 必须带 Secure；使用 `--cookie-same-site none` 时 mailcode 总会加上 Secure，所以某个中间层（代理或 CDN）改写了 Cookie。"),
        "cookie.none_without_secure_fix" => ("remove the proxy's cookie rewriting; `--cookie-same-site none` needs HTTPS.", "去掉代理对 Cookie 的改写；`--cookie-same-site none` 需要 HTTPS。"),
        "cookie.attribute_absent" => ("(none)", "（无）"),
        "cookie.host_prefix" => ("the cookie {name} breaks the __Host- rules: the browser rejects it", "Cookie {name} 违反了 __Host- 前缀规则：浏览器会拒绝它"),
        "cookie.host_prefix_why" => ("a __Host- cookie must be Secure, with Path=/ and no Domain (here: Path={path}, Domain={domain}).", "__Host- Cookie 必须带 Secure、Path=/ 且没有 Domain（这里：Path={path}，Domain={domain}）。"),
        "cookie.host_prefix_fix" => ("mailcode only uses this name for a Secure host-only cookie: something rewrote the cookie (Path or Domain); remove that rewrite.", "mailcode 只在 Secure 且仅限主机的 Cookie 上使用这个名字：某个中间层（代理或 CDN）改写了 Cookie（Path 或 Domain）；请去掉这个改写。"),
        "cookie.domain" => ("Domain={domain} does not cover the host {host}: the browser rejects the cookie", "Domain={domain} 不包含主机 {host}：浏览器会拒绝这个 Cookie"),
        "cookie.domain_why" => ("a cookie may only name the host that sets it or a parent domain of it.", "Cookie 只能指定设置它的主机或其上级域名。"),
        "cookie.domain_fix" => ("set `--cookie-domain` to {host} or a parent domain of it, or leave `--cookie-domain` out for a host-only cookie (usually best).", "把 `--cookie-domain` 设为 {host} 或其上级域名，或者不设置 `--cookie-domain`，使用仅限主机的 Cookie（通常最好）。"),
        "cookie.max_age" => ("the session cookie expires at once (Max-Age={age})", "会话 Cookie 立即过期（Max-Age={age}）"),
        "cookie.expires" => ("the session cookie expires at once (Expires={at}, already past, and no Max-Age)", "会话 Cookie 立即过期（Expires={at} 已经过去，且没有 Max-Age）"),
        "cookie.expired_why" => ("the browser deletes it instead of keeping it.", "浏览器会删除它而不是保存它。"),
        "cookie.expired_fix" => ("mailcode sets Max-Age to the session's lifetime: something rewrote the cookie; remove that rewrite.", "mailcode 把 Max-Age 设为会话的有效期：某个中间层（代理或 CDN）改写了 Cookie；请去掉这个改写。"),
        "cookie.cross_site" => ("the page on {origin} is on another site than {url}: a SameSite={same_site} cookie is not sent with its fetch", "{origin} 上的页面与 {url} 不同站：SameSite={same_site} 的 Cookie 不会随它的 fetch 发送"),
        "cookie.cross_site_why" => ("browsers send SameSite=Lax and Strict cookies only with requests from the same site ({page_site} is not {api_site}). The code request works, but the sign-in request arrives without the session: 401 NO_SESSION.", "浏览器只在同站请求中发送 SameSite=Lax 和 Strict 的 Cookie（{page_site} 与 {api_site} 不同站）。请求验证码能成功，但登录请求不会带上会话：401 NO_SESSION。"),
        "cookie.cross_site_fix" => ("put the page and the API on one site (app.example.com and api.example.com, or both behind one host); or start mailcode with `--cookie-same-site none`, which forces Secure and so needs HTTPS; or, without cookies, ask for the code with \"session\": \"token\" and send `Authorization: Bearer <session_token>`.", "让页面和 API 位于同一站点（app.example.com 和 api.example.com，或都放在同一主机后面）；或用 `--cookie-same-site none` 启动 mailcode，它会强制 Secure，因此需要 HTTPS；或者不用 Cookie：请求验证码时加 \"session\": \"token\"，并发送 `Authorization: Bearer <session_token>`。"),
        "cookie.third_party" => ("the page on {origin} relies on a third-party cookie (SameSite=None)", "{origin} 上的页面依赖第三方 Cookie（SameSite=None）"),
        "cookie.third_party_why" => ("Safari, and Chrome or Firefox with third-party cookies blocked, do not send it, whatever mailcode does.", "Safari，以及屏蔽了第三方 Cookie 的 Chrome 或 Firefox 都不会发送它，与 mailcode 无关。"),
        "cookie.third_party_fix" => ("serve the page and the API on one site (app.example.com and api.example.com), or use bearer tokens (\"session\": \"token\").", "让页面和 API 位于同一站点（app.example.com 和 api.example.com），或使用 Bearer 令牌（\"session\": \"token\"）。"),
        "cookie.secure" => ("Secure", "Secure"),
        "cookie.not_secure_word" => ("not Secure", "无 Secure"),
        "cookie.ok" => ("session cookie: {name}; HttpOnly; SameSite={same_site}; {secure}: right for {scheme}://", "会话 Cookie：{name}；HttpOnly；SameSite={same_site}；{secure}：适合 {scheme}://"),
        // 5. The cookie round trip
        "round.no_answer" => ("cookie round trip: GET /api/login/email-code/status got no answer", "Cookie 往返：GET /api/login/email-code/status 无响应"),
        "round.ok" => ("cookie round trip: the cookie came back and named the session (GET /api/login/email-code/status: {status})", "Cookie 往返：Cookie 带回后找到了会话（GET /api/login/email-code/status：{status}）"),
        "round.not_sent" => ("cookie round trip: mailcode finds the session by its cookie, but a browser would not send this cookie back (see above)", "Cookie 往返：mailcode 能凭 Cookie 找到会话，但浏览器不会把这个 Cookie 带回来（见上文）"),
        "round.no_session" => ("cookie round trip: the session cookie did not identify the session ({status})", "Cookie 往返：会话 Cookie 没能找到会话（{status}）"),
        "round.no_session_why" => ("the session was created a moment ago, but a request carrying its cookie did not find it: several mailcode instances that do not share one session store, a proxy that drops or rewrites the Cookie header, or a store that loses writes.", "会话刚刚创建，但带着它的 Cookie 的请求却找不到它：多个 mailcode 实例没有共享同一个会话存储、代理丢弃或改写了 Cookie 头，或存储丢失了写入。"),
        "round.no_session_fix" => ("give every instance the same `--redis-url` (and `--database-url`), and make the proxy forward the Cookie header unchanged.", "给每个实例配置相同的 `--redis-url`（以及 `--database-url`），并让代理原样转发 Cookie 头。"),
        "round.answered" => ("cookie round trip: GET /api/login/email-code/status answered {status}", "Cookie 往返：GET /api/login/email-code/status 返回 {status}"),
        "round.failed_fix" => ("see mailcode's log (stderr) for this request.", "请查看 mailcode 日志（stderr）中这个请求的记录。"),
        // 6. CORS with credentials
        "cors.same_origin" => ("CORS not checked: the page is on the API's own origin", "未检查 CORS：页面与 API 同源"),
        "cors.same_origin_why" => ("pass `--origin` with the origin of a page elsewhere (an SPA dev server, say) to check CORS for it.", "如果页面在别的源（比如 SPA 开发服务器），请用 `--origin` 传入它的源来检查 CORS。"),
        "cors.no_answer" => ("CORS preflight: OPTIONS /api/login/email-code got no answer", "CORS 预检：OPTIONS /api/login/email-code 无响应"),
        "cors.client_fix" => ("in the page: `fetch(url, {credentials: 'include'})` (axios: `withCredentials: true`) on every request to the API.", "页面中：对 API 的每个请求都使用 `fetch(url, {credentials: 'include'})`（axios：`withCredentials: true`）。"),
        "cors.allow_fix" => ("start mailcode with `--cors-origin {origin}` (or MAILCODE_CORS_ORIGINS={origin});\n{client_fix}", "用 `--cors-origin {origin}`（或 MAILCODE_CORS_ORIGINS={origin}）启动 mailcode；\n{client_fix}"),
        "cors.proxy_fix" => ("remove the CORS headers the proxy adds (nginx `add_header Access-Control-…`, `proxy_hide_header` rules) and let mailcode answer CORS, with `--cors-origin {origin}`.", "去掉代理添加的 CORS 头（nginx 的 `add_header Access-Control-…`、`proxy_hide_header` 规则），让 mailcode 用 `--cors-origin {origin}` 自己处理 CORS。"),
        "cors.preflight_status" => ("CORS preflight from {origin}: OPTIONS answered {status}", "来自 {origin} 的 CORS 预检：OPTIONS 返回 {status}"),
        "cors.preflight_status_why" => ("browsers need a 2xx answer to the preflight before they send the POST: the page sees a CORS error and mailcode never gets the request.", "浏览器需要预检得到 2xx 响应才会发送 POST：页面会看到 CORS 错误，mailcode 根本收不到请求。"),
        "cors.preflight_status_fix" => ("let OPTIONS requests for /api/ through to mailcode, without authentication or a firewall rule in the way: mailcode answers them itself.", "让 /api/ 的 OPTIONS 请求直达 mailcode，不要有认证或防火墙规则拦截：mailcode 会自己处理。"),
        "cors.also_rejected" => ("CORS: no Access-Control-Allow-Origin for {origin} either (the same `--cors-origin {origin}` fixes it)", "CORS：同样没有给 {origin} 的 Access-Control-Allow-Origin（同一个 `--cors-origin {origin}` 即可修复）"),
        "cors.no_allow_origin" => ("CORS preflight from {origin}: no Access-Control-Allow-Origin", "来自 {origin} 的 CORS 预检：没有 Access-Control-Allow-Origin"),
        "cors.no_allow_origin_why" => ("the browser blocks the page's request: it sees a CORS error and mailcode never gets the POST.", "浏览器会拦截页面的请求：页面看到 CORS 错误，mailcode 收不到 POST。"),
        "cors.star" => ("CORS preflight from {origin}: Access-Control-Allow-Origin is *", "来自 {origin} 的 CORS 预检：Access-Control-Allow-Origin 为 *"),
        "cors.star_why" => ("browsers refuse `*` for requests with credentials, so the cookie never travels. mailcode never answers `*`: something in front of it does.", "浏览器不接受带凭据请求的 `*`，Cookie 永远不会被发送。mailcode 从不返回 `*`：是它前面的代理或 CDN 加的。"),
        "cors.other_origin" => ("CORS preflight from {origin}: Access-Control-Allow-Origin is {one}", "来自 {origin} 的 CORS 预检：Access-Control-Allow-Origin 为 {one}"),
        "cors.other_origin_why" => ("the browser compares it exactly with the page's origin (scheme, host and port, no trailing slash).", "浏览器会把它与页面的源精确比较（协议、主机和端口，末尾没有斜杠）。"),
        "cors.several" => ("CORS preflight from {origin}: several Access-Control-Allow-Origin values ({values})", "来自 {origin} 的 CORS 预检：有多个 Access-Control-Allow-Origin 值（{values}）"),
        "cors.several_why" => ("browsers accept exactly one value: something in front of mailcode adds CORS headers of its own.", "浏览器只接受一个值：mailcode 前面的代理或 CDN 添加了自己的 CORS 头。"),
        "cors.no_credentials" => ("CORS preflight from {origin}: no Access-Control-Allow-Credentials: true", "来自 {origin} 的 CORS 预检：没有 Access-Control-Allow-Credentials: true"),
        "cors.no_credentials_why" => ("without it the browser refuses a request with credentials: the cookie never travels.", "没有它，浏览器会拒绝带凭据的请求：Cookie 永远不会被发送。"),
        "cors.no_content_type" => ("CORS preflight from {origin}: the Content-Type header is not allowed", "来自 {origin} 的 CORS 预检：不允许 Content-Type 头"),
        "cors.no_content_type_why" => ("the page's JSON request (`Content-Type: application/json`) is blocked; `*` does not count for requests with credentials.", "页面的 JSON 请求（`Content-Type: application/json`）会被拦截；对带凭据的请求，`*` 不算数。"),
        "cors.no_post" => ("CORS preflight from {origin}: POST is not listed in Access-Control-Allow-Methods", "来自 {origin} 的 CORS 预检：Access-Control-Allow-Methods 中没有 POST"),
        "cors.no_post_why" => ("browsers let POST through anyway, but DELETE /api/sessions/… needs to be listed.", "浏览器仍会放行 POST，但 DELETE /api/sessions/… 必须列在其中。"),
        "cors.answer" => ("CORS: the answer to the POST lacks Access-Control-Allow-Origin: {origin} with credentials (got {got})", "CORS：POST 的响应没有带凭据的 Access-Control-Allow-Origin: {origin}（实际为 {got}）"),
        "cors.answer_why" => ("the code is sent, but the page cannot read the answer and sees a CORS error.", "验证码已发送，但页面读不到响应，会看到 CORS 错误。"),
        "cors.ok" => ("CORS with credentials for {origin}: the preflight and the answers allow it", "{origin} 的带凭据 CORS：预检和响应都允许"),
        "cors.page_unseen" => ("doctor cannot see the page's own code:", "doctor 看不到页面自己的代码："),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_language_by_quality() {
        assert_eq!(Lang::from_accept_language(None), Lang::En);
        assert_eq!(
            Lang::from_accept_language(Some("zh-CN,zh;q=0.9,en;q=0.8")),
            Lang::Zh
        );
        assert_eq!(Lang::from_accept_language(Some("en-US,zh;q=0.5")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("fr, zh;q=0.3")), Lang::Zh);
        assert_eq!(Lang::from_accept_language(Some("de")), Lang::En);
    }

    #[test]
    fn an_invalid_email_says_why_in_chinese_too() {
        use crate::domain::Email;
        for raw in [
            "",
            "a@@example.com",
            "a b@example.com",
            "@example.com",
            "a@example",
            "a@",
        ] {
            let reason = Email::parse(raw).expect_err(raw).to_string();
            let en = message("INVALID_EMAIL", Lang::En, &reason);
            assert!(en.ends_with(&reason), "{en}");
            let zh = message("INVALID_EMAIL", Lang::Zh, &reason);
            assert!(zh.starts_with("邮箱地址无效："), "{zh}");
            assert!(!zh.contains("the email address"), "{raw:?}: {zh}");
        }
        let zh = message("INVALID_EMAIL", Lang::Zh, BLOCKED_DOMAIN_REASON);
        assert_eq!(zh, "邮箱地址无效：不接受该邮箱域名");
    }

    #[test]
    fn a_refused_username_names_its_rule_in_both_languages() {
        let en = invalid_username("mixed_scripts", "Cyrillic and Latin", Lang::En);
        assert_eq!(en, "The field `username` is not valid: the username mixes scripts (Cyrillic and Latin) in a way that can imitate another name.");
        let zh = invalid_username("mixed_scripts", "Cyrillic and Latin", Lang::Zh);
        assert!(
            zh.contains("Cyrillic and Latin") && zh.contains("冒充"),
            "{zh}"
        );
        assert_eq!(
            invalid_username("no such rule", "", Lang::En),
            message("INVALID_INPUT", Lang::En, "username")
        );
    }

    #[test]
    fn every_username_rule_has_its_own_message() {
        use crate::domain::username::{CodePoint, InvalidUsername as E};
        let plain = message("INVALID_INPUT", Lang::En, "username");
        for e in [
            E::Empty,
            E::TooShort,
            E::TooLong,
            E::InvalidCharacter,
            E::Invisible(CodePoint('\u{3164}')),
            E::NotForNames(CodePoint('\u{17a3}')),
            E::Marks,
            E::MixedScripts("Cyrillic and Latin".into()),
        ] {
            for lang in [Lang::En, Lang::Zh] {
                let msg = invalid_username(e.rule(), &e.detail(), lang);
                assert_ne!(msg, plain, "{e:?}");
                assert!(msg.contains(&e.detail()), "{e:?} {lang:?}: {msg}");
            }
        }
    }

    #[test]
    fn a_doctor_text_fills_its_arguments_once_and_keeps_other_braces() {
        let (url, status) = ("http://x/{status}", 404);
        let text = doctor(
            Lang::En,
            "reach.not_mailcode",
            &[("url", &url), ("status", &status)],
        );
        assert_eq!(
            text,
            "http://x/{status} answered 404, not mailcode's {code, msg, data}"
        );
        assert_eq!(fill("{a}{b}{", &[("a", &1)]), "1{b}{");
        assert_eq!(doctor(Lang::Zh, "no.such.key", &[]), "no.such.key");
    }
}
