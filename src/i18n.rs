//! Every user-facing message, in English and Simplified Chinese, keyed by the stable `code`.
//! `msg` is for people; clients branch on `code` and `data`, never on this text.
use std::borrow::Cow;

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
用 `--cors-origin` 允许你页面的源，并且不要在纯 HTTP 下强制 Secure Cookie。\
不使用 Cookie 的客户端：请求验证码时加上 \"session\": \"token\"，提交时发送 `Authorization: Bearer <session_token>`。";

/// The message for `code`; `arg` fills the one variable part some messages have.
pub fn message(code: &str, lang: Lang, arg: &str) -> Cow<'static, str> {
    let (en, zh): (&str, &str) = match code {
        "OK" => ("OK.", "成功。"),
        "CODE_SENT" => ("We sent a code to that address if it can receive one. It is valid for 10 minutes.", "如果该地址可以接收邮件，验证码已发送，10 分钟内有效。"),
        "LOGIN_SUCCESS" => ("Signed in.", "登录成功。"),
        "REGISTERED" => ("Account created; you are signed in.", "注册成功，已登录。"),
        "PASSWORD_RESET" => ("Password changed; every other session has ended.", "密码已修改，其他所有会话均已退出。"),
        "LOGGED_OUT" => ("Signed out.", "已退出登录。"),
        "SESSION_REVOKED" => ("That session has ended.", "该会话已结束。"),
        "INVALID_JSON" => ("The body is not valid JSON: {}", "请求体不是合法的 JSON：{}"),
        "INVALID_INPUT" => ("The field `{}` is missing or not valid.", "字段 `{}` 缺失或不合法。"),
        "INVALID_EMAIL" => ("That is not an email address we can send to: {}", "邮箱地址无效，请检查后重试。"),
        "PAYLOAD_TOO_LARGE" => ("The body is larger than 16 KiB.", "请求体超过 16 KiB。"),
        "UNSUPPORTED_MEDIA_TYPE" => ("Send the body as JSON with `Content-Type: application/json`.", "请以 JSON 发送请求体，并设置 `Content-Type: application/json`。"),
        "NO_SESSION" => (NO_SESSION_EN, NO_SESSION_ZH),
        "CODE_INVALID" => ("The code is wrong or was not sent to this session for this address. Attempts left: {}.", "验证码错误，或不是发给当前会话和该邮箱的。剩余尝试次数：{}。"),
        "CODE_EXPIRED" => ("The code has expired; ask for a new one.", "验证码已过期，请重新获取。"),
        "CODE_ATTEMPTS_EXCEEDED" => ("Too many wrong attempts: this code no longer works; ask for a new one.", "错误次数过多，该验证码已失效，请重新获取。"),
        "LOGIN_FAILED" => ("The username, password or email is not right.", "用户名、密码或邮箱不正确。"),
        "NOT_LOGGED_IN" => ("You are not signed in.", "尚未登录。"),
        "ORIGIN_REJECTED" => ("This request came from a page that is not allowed to change anything here ({}). Add its origin with `--cors-origin`.", "该请求来自未被允许的页面（{}）。请用 `--cors-origin` 添加它的源。"),
        "USERNAME_TAKEN" => ("That username is taken.", "该用户名已被占用。"),
        "EMAIL_TAKEN" => ("An account with that email already exists; sign in instead.", "该邮箱已注册，请直接登录。"),
        "RATE_LIMITED" => ("Too many requests; try again in {} seconds.", "请求过于频繁，请 {} 秒后再试。"),
        "MAIL_UNAVAILABLE" => ("Mail cannot be sent right now; try again later.", "邮件暂时无法发送，请稍后再试。"),
        "STORE_UNAVAILABLE" => ("The service's storage is unavailable; try again in a moment.", "存储服务暂不可用，请稍后再试。"),
        "INTERNAL" => ("Something went wrong on our side (request id {}).", "服务器内部错误（请求编号 {}）。"),
        "SECRET_MISMATCH" => ("This instance's server secret is not the deployment's, so it would refuse codes sent through the other instances: restart it with the deployment's secret file (MAILCODE_SECRET_FILE: the same file on every instance). The fingerprints are in `data`.", "该实例的服务器密钥与本部署不一致，会拒绝经由其他实例发送的验证码：请用本部署的密钥文件（MAILCODE_SECRET_FILE：每个实例使用同一个文件）重启它。指纹见 `data`。"),
        "TIMEOUT" => ("The request took too long; try again.", "请求超时，请重试。"),
        "NOT_FOUND" => ("There is nothing here.", "不存在。"),
        "METHOD_NOT_ALLOWED" => ("This route does not take that method.", "该路由不支持此方法。"),
        "NO_CODE" => ("This session has no pending code.", "当前会话没有待验证的验证码。"),
        "NO_MAIL" => ("No mail for that address in the outbox.", "发件箱中没有发往该地址的邮件。"),
        "SESSION_NOT_FOUND" => ("You have no session with that id.", "没有该会话。"),
        "PASSWORDLESS_DISABLED" => ("Passwordless sign-in is not enabled on this server.", "该服务器未启用免密码登录。"),
        _ => ("Error.", "错误。"),
    };
    let text = if lang == Lang::Zh { zh } else { en };
    if text.contains("{}") {
        Cow::Owned(text.replacen("{}", arg, 1))
    } else {
        Cow::Borrowed(text)
    }
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
}
