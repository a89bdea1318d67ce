//! `mailcode doctor URL [--origin O] [--lang zh|en] [--email ADDR]`: checks a running deployment
//! from the outside, the way a browser would (SPEC §4), and prints each problem found
//! with its fix.
//!
//! Data flows one way, one room each: `target` (the URL and the page's origin, parsed once) →
//! `probe` (the HTTP requests a page on that origin would send, and the answers read back) →
//! `checks`, `set_cookie`, `cors` (each check's rule and verdict, pure functions of the answers) →
//! `report` (prints the verdicts and counts them). This file runs them in order:
//!
//! 1. reachable: `GET /healthz` answers 200 with mailcode's `{code, msg, data}`;
//! 2. readiness: `GET /readyz`: sessions, users and mail; the development outbox is a warning on
//!    a loopback URL and a problem anywhere else (production without SMTP); then a few more
//!    `/readyz` answers (each perhaps from another instance): every instance's secret is the
//!    deployment's (docs/operations.md, "One secret per deployment");
//! 3. the code request: `POST /api/login/email-code` with the page's `Origin`, as its fetch would;
//! 4. the `Set-Cookie` of that answer: HttpOnly, SameSite, Secure against the URL's scheme, the
//!    `__Host-` rules, Domain, Max-Age and Expires, SameSite against a page on another site;
//! 5. the cookie round trip: the cookie sent back to `GET /api/login/email-code/status` finds
//!    the session;
//! 6. CORS with credentials for `--origin` when it is another origin: the preflight and the
//!    actual answers.
//!
//! Exit status: 0 when no problem was found (warnings do not count), 1 when any was, 2 for a
//! usage error (a URL, origin, language or address that cannot be used). A rate-limited probe
//! (429) is a warning, not a problem: the deployment did what it should, but the cookie checks
//! could not run; the summary says so and `--email` with another address gets past it.
//!
//! Every text is in `crate::i18n::doctor`, in English and Simplified Chinese, under a key.
use std::process::ExitCode;

use ::cookie::time::OffsetDateTime;

use crate::i18n::Lang;

/// A text of the report: `t!(lang, "key", name, other = value)` is `crate::i18n::doctor` with
/// `{name}` and `{other}` filled in (a bare name is a variable of that name). Every key and its
/// arguments are checked against the texts by `every_text_exists_with_its_arguments`.
macro_rules! t {
    (@arg $name:ident) => { $name };
    (@arg $name:ident = $value:expr) => { $value };
    ($lang:expr, $key:literal $(, $name:ident $(= $value:expr)?)* $(,)?) => {
        $crate::i18n::doctor(
            $lang,
            $key,
            &[$((stringify!($name), &t!(@arg $name $(= $value)?) as &dyn ::std::fmt::Display)),*],
        )
    };
}

mod checks;
mod cors;
mod probe;
mod report;
mod set_cookie;
mod target;

use checks::Check;
use probe::Probe;
use report::Report;
use target::Target;

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

pub fn main(args: DoctorArgs) -> ExitCode {
    let target = match Target::parse(&args) {
        Ok(t) => t,
        Err(error) => {
            let lang = Lang::parse(&args.lang).unwrap_or_default();
            eprintln!("{}", t!(lang, "doctor.failed", error));
            return ExitCode::from(2);
        }
    };
    let lang = target.lang;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "{}",
                t!(
                    lang,
                    "doctor.failed",
                    error = t!(lang, "doctor.runtime", error = e)
                )
            );
            return ExitCode::FAILURE;
        }
    };
    let mut report = Report::new(lang);
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
    let lang = target.lang;
    let probe = match Probe::new(target) {
        Ok(p) => p,
        Err(e) => {
            let what = t!(lang, "doctor.client", error = e);
            report.add(Check::problem(what, String::new(), String::new()));
            return;
        }
    };
    match checks::reachable(target, &probe.get("/healthz").await) {
        Ok(ok) => report.add(ok),
        Err(problem) => {
            report.add(problem);
            return;
        }
    }
    let ready = probe.get("/readyz").await;
    let more = if checks::wants_more_readyz(&ready) {
        probe.readyz_again(checks::SECRET_PROBES - 1).await
    } else {
        Vec::new()
    };
    report.add_all(checks::readiness(target, &ready, &more));
    let post = probe.request_code().await;
    let fallback = if checks::origin_rejected(&post) {
        Some(probe.request_code_without_origin().await)
    } else {
        None
    };
    let code = checks::code_request(target, &post, fallback.as_ref());
    report.add_all(code.checks);
    if let Some(answer) = code.cookie_from {
        match set_cookie::find_session(lang, answer, OffsetDateTime::now_utc()) {
            Ok(c) => {
                report.add_all(set_cookie::check(target, &c));
                let back = probe.status_with_cookie(&c.name, &c.value).await;
                report.add(checks::round_trip(target, &c, &back));
            }
            Err(problem) => report.add(problem),
        }
    } else if code.skipped_cookies {
        report.skipped += 1;
    }
    let preflight = if target.cross_origin {
        Some(probe.preflight().await)
    } else {
        None
    };
    report.add_all(cors::check(
        target,
        preflight.as_ref(),
        post.as_ref().ok(),
        code.origin_rejected,
    ));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::i18n::doctor_text;

    /// Every file of doctor, read as text by the test below.
    const SOURCES: [(&str, &str); 7] = [
        ("mod.rs", include_str!("mod.rs")),
        ("target.rs", include_str!("target.rs")),
        ("probe.rs", include_str!("probe.rs")),
        ("checks.rs", include_str!("checks.rs")),
        ("set_cookie.rs", include_str!("set_cookie.rs")),
        ("cors.rs", include_str!("cors.rs")),
        ("report.rs", include_str!("report.rs")),
    ];
    const I18N: &str = include_str!("../i18n.rs");

    /// Each `t!(lang, "key", args…)` in the code of `src` (comments and tests left out): the key
    /// and the names of its arguments.
    fn calls(src: &str) -> Vec<(String, BTreeSet<String>)> {
        let code: String = src
            .split("#[cfg(test)]")
            .next()
            .unwrap_or("")
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut out = Vec::new();
        for (at, _) in code.match_indices("t!(") {
            let before = code[..at].chars().next_back();
            let rest = &code[at + 3..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') || rest.starts_with('@') {
                continue;
            }
            let items = top_level_items(rest);
            let key = items.get(1).map(|k| k.trim().trim_matches('"').to_owned());
            let args = items
                .iter()
                .skip(2)
                .map(|a| a.split('=').next().unwrap_or("").trim().to_owned())
                .collect();
            out.push((key.unwrap_or_default(), args));
        }
        out
    }

    /// The comma-separated items of a call's arguments, up to its closing parenthesis.
    fn top_level_items(args: &str) -> Vec<String> {
        let (mut items, mut item, mut depth, mut in_str, mut escaped) =
            (Vec::new(), String::new(), 0, false, false);
        for ch in args.chars() {
            if in_str {
                in_str = escaped || ch != '"';
                escaped = !escaped && ch == '\\';
            } else {
                match ch {
                    '"' => in_str = true,
                    '(' | '[' | '{' => depth += 1,
                    ')' | ']' | '}' if depth == 0 => break,
                    ')' | ']' | '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
            }
            item.push(ch);
        }
        items.push(item);
        items.into_iter().filter(|i| !i.trim().is_empty()).collect()
    }

    /// The `{name}` placeholders of a text.
    fn placeholders(text: &str) -> BTreeSet<String> {
        text.split('{')
            .skip(1)
            .filter_map(|s| s.split_once('}').map(|(name, _)| name))
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .map(str::to_owned)
            .collect()
    }

    /// No text is missing, in either language, and every call fills exactly the placeholders
    /// of its text: a typo in a key or a name fails here, not in front of a user.
    #[test]
    fn every_text_exists_with_its_arguments() {
        let mut used = BTreeSet::new();
        for (file, src) in SOURCES {
            for (key, args) in calls(src) {
                let Some((en, zh)) = doctor_text(&key) else {
                    panic!("{file}: no text for {key:?}");
                };
                assert_eq!(
                    placeholders(en),
                    args,
                    "{file}: {key} (en) and its arguments"
                );
                assert_eq!(
                    placeholders(zh),
                    args,
                    "{file}: {key} (zh) and its arguments"
                );
                used.insert(key);
            }
        }
        assert!(used.len() > 150, "the scan found only {} keys", used.len());
        // And the other way: no text in i18n.rs that doctor no longer says.
        let table = &I18N[I18N.find("fn doctor_text").expect("the table")..];
        let table = &table[..table.find("\n}\n").expect("its end")];
        for line in table.lines().map(str::trim).filter(|l| l.starts_with('"')) {
            let key = line[1..].split('"').next().unwrap_or("");
            assert!(
                used.contains(key),
                "{key:?} is in i18n.rs but doctor never says it"
            );
        }
    }
}
