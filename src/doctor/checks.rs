//! Each check's rule and verdict, as pure functions of what the probe read back: reachable,
//! readiness and one secret per deployment, the code request, the cookie round trip. The
//! Set-Cookie verdicts are in `set_cookie`, CORS in `cors`. No request is made here.
use reqwest::StatusCode;

use super::probe::{Answer, NetError, Sent};
use super::set_cookie::SetCookie;
use super::target::Target;
use crate::i18n::Lang;

/// How many `/readyz` answers the secret check reads: behind a load balancer each may come
/// from another instance, and the odd one is the one that says so.
pub(super) const SECRET_PROBES: usize = 4;

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Check {
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
    pub fn problem(what: String, why: String, fix: String) -> Check {
        Check::Problem { what, why, fix }
    }
    pub fn warn(what: String, why: String, fix: String) -> Check {
        Check::Warn { what, why, fix }
    }
    pub fn info(what: String, why: String) -> Check {
        Check::Info { what, why }
    }
}

/// A problem for a request that got no answer at all.
pub(super) fn unanswered(lang: Lang, what: String, e: &NetError) -> Check {
    let fix = if e.timeout {
        t!(lang, "net.timeout_fix")
    } else {
        t!(lang, "net.forward_fix")
    };
    Check::problem(what, t!(lang, "net.no_answer", detail = e.detail), fix)
}

// ----------------------------------------------------------------------------------------------
// 1. Reachable

/// `GET /healthz` answers 200 with the envelope. `Err` when nothing else is worth checking.
pub(super) fn reachable(t: &Target, health: &Sent) -> Result<Check, Check> {
    let lang = t.lang;
    let url = t.endpoint("/healthz");
    let answer = match health {
        Ok(a) => a,
        Err(e) => {
            let detail = &e.detail;
            let (why, fix) = if e.tls {
                (t!(lang, "reach.tls", detail), t!(lang, "reach.tls_fix"))
            } else if e.timeout {
                (
                    t!(lang, "reach.timeout", detail),
                    t!(lang, "reach.timeout_fix"),
                )
            } else if e.connect {
                (
                    t!(lang, "reach.connect", detail),
                    t!(lang, "reach.connect_fix"),
                )
            } else {
                (
                    t!(lang, "reach.failed", detail),
                    t!(lang, "reach.failed_fix"),
                )
            };
            return Err(Check::problem(t!(lang, "reach.cannot", url), why, fix));
        }
    };
    if answer.status.is_redirection() {
        let to = answer.header("location").unwrap_or("?");
        return Err(Check::problem(
            t!(lang, "reach.redirect", url, to),
            t!(lang, "reach.redirect_why"),
            t!(lang, "reach.redirect_fix"),
        ));
    }
    if answer.status != StatusCode::OK || !answer.is_envelope() {
        let status = answer.status.as_u16();
        return Err(Check::problem(
            t!(lang, "reach.not_mailcode", url, status),
            t!(lang, "reach.not_mailcode_why"),
            t!(lang, "reach.not_mailcode_fix"),
        ));
    }
    Ok(Check::Ok(t!(lang, "reach.ok", url)))
}

// ----------------------------------------------------------------------------------------------
// 2. Readiness

/// Whether the first `/readyz` answer reports the secret, so that a few more are worth reading.
pub(super) fn wants_more_readyz(ready: &Sent) -> bool {
    ready
        .as_ref()
        .is_ok_and(|a| reports_stores(a) && a.data_text("secret").is_some())
}

fn reports_stores(a: &Answer) -> bool {
    a.is_envelope() && a.data("sessions").is_some()
}

/// `GET /readyz`: every store, then one secret across `more` answers, then mail, then whether
/// mail really leaves.
pub(super) fn readiness(t: &Target, ready: &Sent, more: &[Answer]) -> Vec<Check> {
    let lang = t.lang;
    let answer = match ready {
        Ok(a) if reports_stores(a) => a,
        Ok(a) => {
            return vec![Check::problem(
                t!(lang, "ready.no_stores", status = a.status.as_u16()),
                t!(lang, "ready.no_stores_why"),
                t!(lang, "ready.no_stores_fix"),
            )]
        }
        Err(e) => return vec![unanswered(lang, t!(lang, "ready.no_answer"), e)],
    };
    let state = |key: &str| answer.data_text(key).unwrap_or("missing").to_owned();
    let (sessions, users, mail) = (state("sessions"), state("users"), state("mail"));
    let mut checks = Vec::new();
    if sessions == "ok" && users == "ok" {
        checks.push(Check::Ok(t!(lang, "ready.stores_ok")));
    }
    if sessions != "ok" {
        checks.push(Check::problem(
            t!(lang, "ready.sessions", sessions),
            t!(lang, "ready.sessions_why"),
            t!(lang, "ready.sessions_fix"),
        ));
    }
    if users != "ok" {
        checks.push(Check::problem(
            t!(lang, "ready.users", users),
            t!(lang, "ready.users_why"),
            t!(lang, "ready.users_fix"),
        ));
    }
    if let Some(c) = secret(lang, answer, more) {
        checks.push(c);
    }
    if mail.starts_with("ok") {
        checks.push(Check::Ok(t!(lang, "ready.mail_ok")));
    } else {
        checks.push(Check::problem(
            t!(lang, "ready.mail", mail),
            t!(lang, "ready.mail_why"),
            t!(lang, "ready.mail_fix"),
        ));
    }
    if answer.data_text("mail_transport") == Some("outbox") {
        let (what, fix) = (t!(lang, "ready.outbox"), t!(lang, "ready.outbox_fix"));
        checks.push(if t.loopback {
            Check::warn(what, t!(lang, "ready.outbox_loopback"), fix)
        } else {
            Check::problem(what, t!(lang, "ready.outbox_production"), fix)
        });
    }
    checks
}

/// One secret per deployment (docs/operations.md): every instance's `/readyz` compares its
/// secret's fingerprint with the deployment's; doctor reads a few answers and also compares
/// the fingerprints they report. `None` when the stores could not say (already a problem).
fn secret(lang: Lang, first: &Answer, more: &[Answer]) -> Option<Check> {
    if first.data_text("secret").is_none() {
        return Some(Check::info(
            t!(lang, "secret.unreported"),
            t!(lang, "secret.unreported_why"),
        ));
    }
    let answers: Vec<&Answer> = std::iter::once(first).chain(more).collect();
    let mut fingerprints: Vec<&str> = answers
        .iter()
        .filter_map(|a| a.data_text("secret_fingerprint"))
        .collect();
    fingerprints.sort_unstable();
    fingerprints.dedup();
    let (why, fix) = (t!(lang, "secret.why"), t!(lang, "secret.fix"));
    if let Some(odd) = answers
        .iter()
        .find(|a| a.data_text("secret") == Some("mismatch"))
    {
        let ours = odd.data_text("secret_fingerprint").unwrap_or_default();
        let recorded = odd
            .data_text("deployment_secret_fingerprint")
            .unwrap_or_default();
        return Some(Check::problem(
            t!(lang, "secret.mismatch", ours, recorded),
            why,
            fix,
        ));
    }
    if fingerprints.len() > 1 {
        let list = fingerprints.join(", ");
        return Some(Check::problem(t!(lang, "secret.different", list), why, fix));
    }
    if answers.iter().any(|a| a.data_text("secret") != Some("ok")) {
        return None;
    }
    let fp = fingerprints.first().copied().unwrap_or_default();
    Some(Check::Ok(t!(lang, "secret.ok", fp, n = answers.len())))
}

// ----------------------------------------------------------------------------------------------
// 3. The code request, as the page's fetch would send it

/// What the code request tells the checks that follow.
pub(super) struct CodeVerdict<'a> {
    pub checks: Vec<Check>,
    /// The answer whose Set-Cookie the cookie checks read.
    pub cookie_from: Option<&'a Answer>,
    /// The browser-like request got 403 ORIGIN_REJECTED.
    pub origin_rejected: bool,
    /// The cookie checks could not run for a reason that is not a problem (429, refused address).
    pub skipped_cookies: bool,
}

/// The page's request was refused for its origin: the cookie is read from a second one.
pub(super) fn origin_rejected(post: &Sent) -> bool {
    post.as_ref()
        .is_ok_and(|a| a.status == StatusCode::FORBIDDEN && a.code() == "ORIGIN_REJECTED")
}

/// The page's code request, and `fallback`, the one without `Origin` sent after a 403.
pub(super) fn code_request<'a>(
    t: &Target,
    post: &'a Sent,
    fallback: Option<&'a Sent>,
) -> CodeVerdict<'a> {
    let lang = t.lang;
    let (origin, email) = (&t.origin, &t.email);
    let mut out = CodeVerdict {
        checks: Vec::new(),
        cookie_from: None,
        origin_rejected: false,
        skipped_cookies: false,
    };
    let answer = match post {
        Ok(a) => a,
        Err(e) => {
            out.checks
                .push(unanswered(lang, t!(lang, "code.no_answer"), e));
            return out;
        }
    };
    let status = answer.status_line();
    let msg = answer.msg();
    match (answer.status.as_u16(), answer.code()) {
        (200, _) => {
            let delivery = answer.data_text("delivery").unwrap_or("?");
            out.checks
                .push(Check::Ok(t!(lang, "code.ok", origin, status, delivery)));
            out.cookie_from = Some(answer);
        }
        (429, _) => {
            let retry = answer.header("retry-after").unwrap_or("?");
            out.checks.push(Check::warn(
                t!(lang, "code.rate_limited", status, retry),
                t!(lang, "code.rate_limited_why"),
                t!(lang, "code.rate_limited_fix", email, retry),
            ));
            out.skipped_cookies = true;
        }
        (400, "INVALID_EMAIL") => {
            out.checks.push(Check::warn(
                t!(lang, "code.email_refused", email, status),
                msg.to_owned(),
                t!(lang, "code.email_refused_fix"),
            ));
            out.skipped_cookies = true;
        }
        (403, "ORIGIN_REJECTED") => {
            out.origin_rejected = true;
            out.checks.push(origin_rejected_problem(t, &status));
            match fallback {
                Some(Ok(a)) if a.status == StatusCode::OK => {
                    out.checks.push(Check::info(
                        t!(lang, "code.without_origin"),
                        t!(lang, "code.without_origin_why"),
                    ));
                    out.cookie_from = Some(a);
                }
                _ => out.skipped_cookies = true,
            }
        }
        (404, _) | (405, _) => out.checks.push(Check::problem(
            t!(lang, "code.answered", status),
            t!(lang, "code.not_found_why"),
            t!(lang, "code.not_found_fix"),
        )),
        _ => out.checks.push(Check::problem(
            t!(lang, "code.answered", status),
            if msg.is_empty() {
                t!(lang, "code.unusable")
            } else {
                msg.to_owned()
            },
            t!(lang, "code.failed_fix"),
        )),
    }
    out
}

/// 403 ORIGIN_REJECTED: for a page elsewhere, its origin is not allowed; for the URL's own
/// origin, mailcode believes it lives at another one (a proxy's scheme or Host).
fn origin_rejected_problem(t: &Target, status: &str) -> Check {
    let (lang, origin) = (t.lang, &t.origin);
    if t.cross_origin {
        return Check::problem(
            t!(lang, "code.origin_rejected", origin, status),
            t!(lang, "code.origin_rejected_why", origin),
            t!(lang, "code.origin_rejected_fix", origin),
        );
    }
    let url = t.display_url();
    let (why, fix) = if t.https {
        (
            t!(lang, "code.own_origin_https_why", origin, url),
            t!(lang, "code.own_origin_https_fix"),
        )
    } else {
        (
            t!(lang, "code.own_origin_http_why", origin, url),
            t!(lang, "code.own_origin_http_fix"),
        )
    };
    Check::problem(
        t!(lang, "code.own_origin_rejected", origin, status),
        why,
        fix,
    )
}

// ----------------------------------------------------------------------------------------------
// 5. The cookie round trip

/// The cookie, sent back by hand, names the session just created. It is sent even when a browser
/// would not send it, to tell a server-side problem from a browser-side one.
pub(super) fn round_trip(t: &Target, c: &SetCookie, back: &Sent) -> Check {
    let lang = t.lang;
    let answer = match back {
        Ok(a) => a,
        Err(e) => return unanswered(lang, t!(lang, "round.no_answer"), e),
    };
    let status = answer.status_line();
    match (answer.status.as_u16(), answer.code()) {
        (200, _) | (404, "NO_CODE") if c.sent_by_browser(t) => {
            Check::Ok(t!(lang, "round.ok", status))
        }
        (200, _) | (404, "NO_CODE") => Check::info(t!(lang, "round.not_sent"), String::new()),
        (401, "NO_SESSION") => Check::problem(
            t!(lang, "round.no_session", status),
            t!(lang, "round.no_session_why"),
            t!(lang, "round.no_session_fix"),
        ),
        _ => Check::problem(
            t!(lang, "round.answered", status),
            answer.msg().to_owned(),
            t!(lang, "round.failed_fix"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::doctor::probe::tests::answer;
    use crate::doctor::target::tests::target;

    fn readyz(secret: Option<&str>, fingerprint: &str) -> Answer {
        let mut data = json!({"sessions": "ok", "users": "ok", "mail": "ok"});
        if let Some(s) = secret {
            data["secret"] = json!(s);
            data["secret_fingerprint"] = json!(fingerprint);
            data["deployment_secret_fingerprint"] = json!("aaaa");
        }
        let body = json!({"code": "OK", "msg": "OK.", "data": data});
        answer(200, &[], Some(body))
    }

    fn whats(checks: &[Check]) -> Vec<&str> {
        checks
            .iter()
            .map(|c| match c {
                Check::Ok(what) => what.as_str(),
                Check::Info { what, .. }
                | Check::Warn { what, .. }
                | Check::Problem { what, .. } => what.as_str(),
            })
            .collect()
    }

    #[test]
    fn one_secret_is_judged_across_every_answer() {
        let t = target("http://127.0.0.1:3000", None);
        let first = Ok(readyz(Some("ok"), "aaaa"));
        assert!(wants_more_readyz(&first));
        let same = readiness(&t, &first, &[readyz(Some("ok"), "aaaa")]);
        assert!(
            whats(&same).contains(
                &"one secret: the deployment's (fingerprint aaaa) in 2 answers of /readyz"
            ),
            "{same:?}"
        );
        let two = readiness(&t, &first, &[readyz(Some("ok"), "bbbb")]);
        assert!(whats(&two).contains(&"the instances behind this URL use different server secrets (fingerprints aaaa, bbbb)"), "{two:?}");
        let odd = readiness(&t, &first, &[readyz(Some("mismatch"), "cccc")]);
        assert!(
            whats(&odd).contains(
                &"an instance's server secret (fingerprint cccc) is not the deployment's (aaaa)"
            ),
            "{odd:?}"
        );
        // An older mailcode that does not report its secret: said, and no more answers read.
        let old = Ok(readyz(None, ""));
        assert!(!wants_more_readyz(&old));
        let checks = readiness(&t, &old, &[]);
        assert!(
            matches!(&checks[1], Check::Info { what, .. } if what.starts_with("one secret per deployment not checked")),
            "{checks:?}"
        );
    }

    #[test]
    fn readiness_without_the_stores_is_a_problem_and_the_outbox_depends_on_the_url() {
        let local = target("http://127.0.0.1:3000", None);
        let page = Ok(answer(200, &[], Some(json!({"hello": "world"}))));
        let checks = readiness(&local, &page, &[]);
        assert!(
            matches!(checks.as_slice(), [Check::Problem { what, .. }] if what.contains("without the readiness of the stores"))
        );
        let mut outbox = readyz(None, "");
        if let Some(body) = outbox.body.as_mut() {
            body["data"]["mail_transport"] = json!("outbox");
        }
        let outbox = Ok(outbox);
        let dev = readiness(&local, &outbox, &[]);
        assert!(matches!(dev.last(), Some(Check::Warn { .. })), "{dev:?}");
        let prod = readiness(&target("https://login.example.com", None), &outbox, &[]);
        assert!(
            matches!(prod.last(), Some(Check::Problem { why, .. }) if why.contains("production without SMTP")),
            "{prod:?}"
        );
    }

    #[test]
    fn a_refused_origin_reads_the_cookie_from_the_second_request() {
        let t = target("http://127.0.0.1:3000", Some("http://127.0.0.1:5999"));
        let body = json!({"code": "ORIGIN_REJECTED", "msg": "no", "data": null});
        let post = Ok(answer(403, &[], Some(body)));
        assert!(origin_rejected(&post));
        let second = Ok(answer(200, &[("set-cookie", "mailcode_sid=abc")], None));
        let v = code_request(&t, &post, Some(&second));
        assert!(v.origin_rejected && !v.skipped_cookies && v.cookie_from.is_some());
        assert_eq!(
            whats(&v.checks)[0],
            "code request from http://127.0.0.1:5999 rejected: 403 ORIGIN_REJECTED"
        );
        let refused = Err(NetError {
            connect: true,
            timeout: false,
            tls: false,
            detail: "refused".into(),
        });
        let v = code_request(&t, &post, Some(&refused));
        assert!(v.skipped_cookies && v.cookie_from.is_none());
    }
}
