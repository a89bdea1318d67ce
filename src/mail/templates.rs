//! What the code mails say, in English and Simplified Chinese, as plain text and HTML, with the
//! code in the subject line too. A request for an address without an account (or, for
//! registration, with one) gets a mail that says so instead of a code (SPEC §3: the answer to the
//! request is the same either way; only the mail differs).
//!
//! A code request decides what its mail says ([`MailOrder`], a dozen bytes) and queues that; the
//! worker writes the mail ([`render`]) just before sending it. Queuing the written mail instead
//! (subject, text and HTML, ~2 KB) cost every code request its rendering and the sealing of all
//! three parts, and Redis (or SQL) the bytes (docs/benchmarks.md, workload 2).
use crate::domain::{CodePurpose, OneTimeCode};
use crate::i18n::Lang;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailBody {
    Code(OneTimeCode),
    /// Login or reset code asked for an address that has no account.
    NoAccount,
    /// Registration code asked for an address that has an account already.
    AlreadyRegistered,
}

/// What one code mail says, as queued (sealed: it holds the code; see `crypto::MailSeal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailOrder {
    pub purpose: CodePurpose,
    pub body: MailBody,
    pub lang: Lang,
    /// How long the code is valid, as the mail says it.
    pub minutes: u64,
}

impl MailOrder {
    /// `<purpose><body><lang><minutes>[:<code>]`, one letter each (`l`ogin, `r`egister, reset
    /// `p`assword; `c`ode, `n`o account, `a`lready registered; `e`n, `z`h): `lce10:123456`. Short
    /// so that, sealed, it stays a small Redis hash field.
    pub fn encode(&self) -> String {
        let purpose = match self.purpose {
            CodePurpose::Login => 'l',
            CodePurpose::Register => 'r',
            CodePurpose::Reset => 'p',
        };
        let lang = match self.lang {
            Lang::En => 'e',
            Lang::Zh => 'z',
        };
        let (body, code) = match &self.body {
            MailBody::Code(c) => ('c', c.as_str()),
            MailBody::NoAccount => ('n', ""),
            MailBody::AlreadyRegistered => ('a', ""),
        };
        if code.is_empty() {
            format!("{purpose}{body}{lang}{}", self.minutes)
        } else {
            format!("{purpose}{body}{lang}{}:{code}", self.minutes)
        }
    }

    /// The inverse of [`MailOrder::encode`]; `None` for anything it did not write.
    pub fn decode(s: &str) -> Option<MailOrder> {
        let mut chars = s.chars();
        let purpose = match chars.next()? {
            'l' => CodePurpose::Login,
            'r' => CodePurpose::Register,
            'p' => CodePurpose::Reset,
            _ => return None,
        };
        let body = chars.next()?;
        let lang = match chars.next()? {
            'e' => Lang::En,
            'z' => Lang::Zh,
            _ => return None,
        };
        let rest = chars.as_str();
        let (minutes, code) = match rest.split_once(':') {
            Some((m, c)) => (m, Some(c)),
            None => (rest, None),
        };
        let body = match (body, code) {
            ('c', Some(c)) => MailBody::Code(OneTimeCode::parse(c).ok()?),
            ('n', None) => MailBody::NoAccount,
            ('a', None) => MailBody::AlreadyRegistered,
            _ => return None,
        };
        if minutes.is_empty() || !minutes.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(MailOrder {
            purpose,
            body,
            lang,
            minutes: minutes.parse().ok()?,
        })
    }

    pub fn render(&self) -> Rendered {
        render(self.purpose, &self.body, self.lang, self.minutes)
    }
}

pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn render(purpose: CodePurpose, body: &MailBody, lang: Lang, minutes: u64) -> Rendered {
    let zh = lang == Lang::Zh;
    let what = match (purpose, zh) {
        (CodePurpose::Login, false) => "sign-in",
        (CodePurpose::Register, false) => "registration",
        (CodePurpose::Reset, false) => "password reset",
        (CodePurpose::Login, true) => "登录",
        (CodePurpose::Register, true) => "注册",
        (CodePurpose::Reset, true) => "重置密码",
    };
    let (subject, lines): (String, Vec<String>) = match (body, zh) {
        (MailBody::Code(code), false) => (
            format!("{} is your mailcode {what} code", code.as_str()),
            vec![
                format!("Your {what} code is {}.", code.as_str()),
                format!("It is valid for {minutes} minutes and works once, in the browser or app that asked for it."),
                "If you did not ask for it, ignore this mail: nobody can use the code without that session.".into(),
            ],
        ),
        (MailBody::Code(code), true) => (
            format!("【mailcode】{what}验证码：{}", code.as_str()),
            vec![
                format!("您的{what}验证码是 {}。", code.as_str()),
                format!("{minutes} 分钟内有效，只能使用一次。"),
                "如非本人操作，请忽略本邮件：此验证码只能在发起请求的浏览器或应用中使用，他人无法使用。".into(),
            ],
        ),
        (MailBody::NoAccount, false) => (
            format!("Your mailcode {what} request"),
            vec![
                format!("Someone asked for a {what} code for this address, but no account uses this address."),
                "If it was you, register first, or use the address your account was created with.".into(),
            ],
        ),
        (MailBody::NoAccount, true) => (
            format!("【mailcode】{what}请求"),
            vec![
                format!("有人为此邮箱请求了{what}验证码，但该邮箱尚未注册账号。"),
                "如果是您本人，请先注册，或使用注册时的邮箱。".into(),
            ],
        ),
        (MailBody::AlreadyRegistered, false) => (
            "Your mailcode registration request".into(),
            vec![
                "Someone asked to register with this address, but you already have an account.".into(),
                "Sign in instead; if you forgot your password, reset it.".into(),
            ],
        ),
        (MailBody::AlreadyRegistered, true) => (
            "【mailcode】注册请求".into(),
            vec![
                "有人用此邮箱请求注册，但您已经有账号了。".into(),
                "请直接登录；如果忘记了密码，请重置密码。".into(),
            ],
        ),
    };
    let text = lines.join("\n\n") + "\n";
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\">{}</body></html>",
        lines
            .iter()
            .map(|l| format!("<p>{}</p>", escape(l)))
            .collect::<String>()
    );
    Rendered {
        subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_reads_back_as_written() {
        let code = OneTimeCode::parse("012345").unwrap();
        for purpose in CodePurpose::ALL {
            for body in [
                MailBody::Code(code.clone()),
                MailBody::NoAccount,
                MailBody::AlreadyRegistered,
            ] {
                for lang in [Lang::En, Lang::Zh] {
                    let order = MailOrder {
                        purpose,
                        body: body.clone(),
                        lang,
                        minutes: 10,
                    };
                    let encoded = order.encode();
                    assert!(encoded.len() <= 12, "{encoded}");
                    assert_eq!(MailOrder::decode(&encoded), Some(order));
                }
            }
        }
        assert_eq!(
            MailOrder::decode("lce10:012345").map(|o| o.render().subject),
            Some("012345 is your mailcode sign-in code".to_owned())
        );
    }

    #[test]
    fn anything_else_is_no_order() {
        for bad in [
            "",
            "l",
            "lc",
            "lce",
            "lce10",
            "lce:123456",
            "lne10:123456",
            "lcx10:123456",
            "xce10:123456",
            "lce1x:123456",
            "lce10:12345",
            "lce-1:123456",
            "lae10:",
        ] {
            assert_eq!(MailOrder::decode(bad), None, "{bad}");
        }
    }
}
