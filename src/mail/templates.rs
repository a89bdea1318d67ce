//! What the code mails say, in English and Simplified Chinese, as plain text and HTML, with the
//! code in the subject line too. A request for an address without an account (or, for
//! registration, with one) gets a mail that says so instead of a code (SPEC §3: the answer to the
//! request is the same either way; only the mail differs).
use crate::domain::{CodePurpose, OneTimeCode};
use crate::i18n::Lang;

pub enum MailBody<'a> {
    Code(&'a OneTimeCode),
    /// Login or reset code asked for an address that has no account.
    NoAccount,
    /// Registration code asked for an address that has an account already.
    AlreadyRegistered,
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

pub fn render(purpose: CodePurpose, body: MailBody<'_>, lang: Lang, minutes: u64) -> Rendered {
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
            format!("{} 是你的 mailcode {what}验证码", code.as_str()),
            vec![
                format!("你的{what}验证码是 {}。", code.as_str()),
                format!("{minutes} 分钟内有效，只能使用一次，且只能在请求它的浏览器或应用中使用。"),
                "如果不是你本人操作，请忽略本邮件：没有该会话，任何人都无法使用此验证码。".into(),
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
            format!("你的 mailcode {what}请求"),
            vec![
                format!("有人为此邮箱请求了{what}验证码，但没有账号使用这个邮箱。"),
                "如果是你本人，请先注册，或使用注册时的邮箱。".into(),
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
            "你的 mailcode 注册请求".into(),
            vec![
                "有人用此邮箱请求注册，但你已经有账号了。".into(),
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
