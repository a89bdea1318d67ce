//! CORS with credentials for a page on another origin: the preflight of the page's JSON POST,
//! and the CORS headers of the actual answer (the Fetch standard's CORS check, as browsers apply
//! it to requests with credentials: one exact origin, never `*`, credentials allowed).
use super::checks::{unanswered, Check};
use super::probe::{Answer, Sent};
use super::target::Target;

/// `preflight` is `None` when the page is on the API's own origin (nothing was sent); `post` is
/// the answer to the page's code request, when it got one.
pub(super) fn check(
    t: &Target,
    preflight: Option<&Sent>,
    post: Option<&Answer>,
    origin_rejected: bool,
) -> Vec<Check> {
    let lang = t.lang;
    let origin = &t.origin;
    let Some(preflight) = preflight.filter(|_| t.cross_origin) else {
        return vec![Check::info(
            t!(lang, "cors.same_origin"),
            t!(lang, "cors.same_origin_why"),
        )];
    };
    let pre = match preflight {
        Ok(a) => a,
        Err(e) => return vec![unanswered(lang, t!(lang, "cors.no_answer"), e)],
    };
    let client_fix = t!(lang, "cors.client_fix");
    let fixes = Fixes {
        allow: t!(lang, "cors.allow_fix", origin, client_fix),
        proxy: t!(lang, "cors.proxy_fix", origin),
    };
    let mut checks = Vec::new();
    if !pre.status.is_success() {
        let status = pre.status.as_u16();
        checks.push(Check::problem(
            t!(lang, "cors.preflight_status", origin, status),
            t!(lang, "cors.preflight_status_why"),
            t!(lang, "cors.preflight_status_fix"),
        ));
    }
    let acao = pre.header_all("access-control-allow-origin");
    let acao_ok = acao.len() == 1 && acao[0] == origin;
    if acao.is_empty() && origin_rejected {
        checks.push(Check::info(
            t!(lang, "cors.also_rejected", origin),
            client_fix.clone(),
        ));
    } else if let Some(problem) = allow_origin_problem(t, &acao, &fixes) {
        checks.push(problem);
    }
    if acao_ok {
        checks.extend(allowed_problems(t, pre, &fixes));
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
                t!(lang, "cors.answer", origin, got),
                t!(lang, "cors.answer_why"),
                fixes.proxy,
            ));
        }
    }
    if checks.is_empty() {
        checks.push(Check::Ok(t!(lang, "cors.ok", origin)));
        checks.push(Check::info(t!(lang, "cors.page_unseen"), client_fix));
    }
    checks
}

/// The two fixes most CORS problems end with: let mailcode allow the origin, or stop the proxy
/// from answering CORS itself.
struct Fixes {
    allow: String,
    proxy: String,
}

/// The preflight's Access-Control-Allow-Origin: exactly the page's origin.
fn allow_origin_problem(t: &Target, acao: &[&str], fixes: &Fixes) -> Option<Check> {
    let (lang, origin) = (t.lang, &t.origin);
    let (what, why, fix) = match acao {
        [] => (
            t!(lang, "cors.no_allow_origin", origin),
            t!(lang, "cors.no_allow_origin_why"),
            &fixes.allow,
        ),
        ["*"] => (
            t!(lang, "cors.star", origin),
            t!(lang, "cors.star_why"),
            &fixes.proxy,
        ),
        [one] if *one != origin => (
            t!(lang, "cors.other_origin", origin, one),
            t!(lang, "cors.other_origin_why"),
            &fixes.allow,
        ),
        [_] => return None,
        many => (
            t!(lang, "cors.several", origin, values = many.join(" | ")),
            t!(lang, "cors.several_why"),
            &fixes.proxy,
        ),
    };
    Some(Check::problem(what, why, fix.clone()))
}

/// What the preflight allows once the origin is right: credentials, Content-Type, POST.
fn allowed_problems(t: &Target, pre: &Answer, fixes: &Fixes) -> Vec<Check> {
    let (lang, origin) = (t.lang, &t.origin);
    let mut checks = Vec::new();
    if pre.header("access-control-allow-credentials") != Some("true") {
        checks.push(Check::problem(
            t!(lang, "cors.no_credentials", origin),
            t!(lang, "cors.no_credentials_why"),
            fixes.proxy.clone(),
        ));
    }
    let listed = |name: &str, wanted: &str| {
        pre.header_all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|s| s.trim().eq_ignore_ascii_case(wanted))
    };
    if !listed("access-control-allow-headers", "content-type") {
        checks.push(Check::problem(
            t!(lang, "cors.no_content_type", origin),
            t!(lang, "cors.no_content_type_why"),
            fixes.proxy.clone(),
        ));
    }
    if !listed("access-control-allow-methods", "post") {
        checks.push(Check::warn(
            t!(lang, "cors.no_post", origin),
            t!(lang, "cors.no_post_why"),
            fixes.proxy.clone(),
        ));
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::probe::tests::answer;
    use crate::doctor::target::tests::target;

    const PAGE: &str = "http://127.0.0.1:5173";

    fn verdicts(preflight: &[(&str, &str)], post: &[(&str, &str)]) -> Vec<Check> {
        let t = target("http://127.0.0.1:3000", Some(PAGE));
        let pre = Ok(answer(204, preflight, None));
        check(&t, Some(&pre), Some(&answer(200, post, None)), false)
    }

    fn problem_whats(checks: &[Check]) -> Vec<String> {
        checks
            .iter()
            .filter_map(|c| match c {
                Check::Problem { what, .. } => Some(what.clone()),
                _ => None,
            })
            .collect()
    }

    const GOOD: [(&str, &str); 4] = [
        ("access-control-allow-origin", PAGE),
        ("access-control-allow-credentials", "true"),
        (
            "access-control-allow-headers",
            "Content-Type, X-Requested-With",
        ),
        ("access-control-allow-methods", "GET,POST , DELETE"),
    ];

    #[test]
    fn a_right_preflight_and_answer_are_fine_whatever_the_case_and_spacing() {
        let checks = verdicts(&GOOD, &GOOD[..2]);
        assert!(
            matches!(checks.as_slice(), [Check::Ok(_), Check::Info { .. }]),
            "{checks:?}"
        );
    }

    #[test]
    fn a_star_several_origins_or_no_credentials_are_problems() {
        let star = verdicts(&[("access-control-allow-origin", "*")], &[]);
        assert_eq!(
            problem_whats(&star),
            [format!(
                "CORS preflight from {PAGE}: Access-Control-Allow-Origin is *"
            )]
        );
        let several = verdicts(
            &[
                ("access-control-allow-origin", PAGE),
                ("access-control-allow-origin", "*"),
            ],
            &[],
        );
        assert!(
            problem_whats(&several)[0].contains(&format!(
                "several Access-Control-Allow-Origin values ({PAGE} | *)"
            )),
            "{several:?}"
        );
        let no_credentials = verdicts(&[GOOD[0], GOOD[2], GOOD[3]], &GOOD[..2]);
        assert_eq!(
            problem_whats(&no_credentials),
            [format!(
                "CORS preflight from {PAGE}: no Access-Control-Allow-Credentials: true"
            )]
        );
        let answer_without = verdicts(&GOOD, &[]);
        assert_eq!(problem_whats(&answer_without), [format!("CORS: the answer to the POST lacks Access-Control-Allow-Origin: {PAGE} with credentials (got -)")]);
    }

    #[test]
    fn nothing_is_sent_for_a_page_on_the_api_origin() {
        let t = target("http://127.0.0.1:3000", None);
        let checks = check(&t, None, None, false);
        assert!(
            matches!(checks.as_slice(), [Check::Info { .. }]),
            "{checks:?}"
        );
    }
}
