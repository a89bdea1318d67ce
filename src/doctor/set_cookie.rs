//! mailcode's session cookie as a browser reads it: the `Set-Cookie` header parsed by the
//! `cookie` crate (RFC 6265 §5.2: attribute names in any case, the last of a repeated attribute
//! wins, unknown attributes ignored), whether a browser keeps it and sends it back, and the
//! verdicts on each of its attributes against the URL's scheme and the page's site (SPEC §3
//! Sessions says what mailcode sets; anything else was rewritten on the way).
use std::net::IpAddr;

use cookie::time::format_description::well_known::Rfc2822;
use cookie::time::OffsetDateTime;
use cookie::{Cookie, SameSite};
use reqwest::Url;

use super::checks::Check;
use super::probe::Answer;
use super::target::{host_of, site_of, Target};
use crate::http::cookies::{HOST_NAME, NAME};
use crate::i18n::Lang;

/// A `Set-Cookie` as the checks read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SetCookie {
    pub name: String,
    /// As written (quotes kept): what a browser sends back.
    pub value: String,
    pub secure: bool,
    pub http_only: bool,
    /// As a browser applies it: Lax when absent or not one of Strict, Lax, None.
    pub same_site: SameSite,
    pub path: Option<String>,
    /// Lower case, without the leading dot browsers ignore.
    pub domain: Option<String>,
    /// Why the browser deletes it at once instead of keeping it, if it does.
    pub expired: Option<Expired>,
}

/// A cookie that is gone as soon as it is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Expired {
    /// `Max-Age` zero or negative (the crate reads a negative one as 0, as RFC 6265 §5.2.2 does).
    MaxAge(i64),
    /// No `Max-Age` (which would win, RFC 6265 §5.3) and an `Expires` not after `now`.
    Expires(String),
}

impl SetCookie {
    /// `None` for a header a browser ignores (no `name=value`, an empty name). `now` decides
    /// whether `Expires` is already past.
    pub fn parse(raw: &str, now: OffsetDateTime) -> Option<SetCookie> {
        let c = Cookie::parse(raw).ok()?;
        let expired = match (c.max_age(), c.expires_datetime()) {
            (Some(age), _) if age.whole_seconds() <= 0 => {
                Some(Expired::MaxAge(age.whole_seconds()))
            }
            (None, Some(at)) if at <= now => Some(Expired::Expires(
                at.format(&Rfc2822).unwrap_or_else(|_| at.to_string()),
            )),
            _ => None,
        };
        Some(SetCookie {
            name: c.name().to_owned(),
            value: c.value().to_owned(),
            secure: c.secure().unwrap_or(false),
            http_only: c.http_only().unwrap_or(false),
            same_site: c.same_site().unwrap_or(SameSite::Lax),
            path: c.path().map(str::to_owned),
            domain: c.domain().map(str::to_ascii_lowercase),
            expired,
        })
    }

    /// Whether a browser keeps this cookie from an answer of `url` (the rules that matter here).
    pub fn stored_by_browser(&self, url: &Url) -> bool {
        let https = url.scheme() == "https";
        (https || !self.secure)
            && (self.secure || self.same_site != SameSite::None)
            && self.host_prefix_ok()
            && self
                .domain
                .as_deref()
                .is_none_or(|d| domain_matches(url, d))
            && self.expired.is_none()
    }

    /// Whether a browser sends it with a fetch from `target`'s page (it was stored first).
    pub fn sent_by_browser(&self, target: &Target) -> bool {
        self.stored_by_browser(&target.base)
            && (!target.cross_site || self.same_site == SameSite::None)
    }

    /// A `__Host-` cookie must be Secure, with `Path=/` and no Domain.
    fn host_prefix_ok(&self) -> bool {
        !self.name.starts_with("__Host-")
            || (self.secure && self.path.as_deref() == Some("/") && self.domain.is_none())
    }
}

/// Whether a cookie's Domain attribute covers the URL's host: the host itself or a parent
/// domain of it, never for an IP address.
pub(super) fn domain_matches(url: &Url, domain: &str) -> bool {
    let host = host_of(url);
    host == domain || (host.parse::<IpAddr>().is_err() && host.ends_with(&format!(".{domain}")))
}

/// mailcode's session cookie among the answer's `Set-Cookie` headers.
pub(super) fn find_session(
    lang: Lang,
    answer: &Answer,
    now: OffsetDateTime,
) -> Result<SetCookie, Check> {
    let all: Vec<SetCookie> = answer
        .header_all("set-cookie")
        .iter()
        .filter_map(|raw| SetCookie::parse(raw, now))
        .collect();
    if let Some(c) = all.iter().find(|c| c.name == NAME || c.name == HOST_NAME) {
        return Ok(c.clone());
    }
    let why = if answer.header_all("set-cookie").is_empty() {
        t!(lang, "cookie.none_why")
    } else {
        let names = all
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        t!(
            lang,
            "cookie.others_why",
            names,
            name = NAME,
            host_name = HOST_NAME
        )
    };
    Err(Check::problem(
        t!(lang, "cookie.none"),
        why,
        t!(lang, "cookie.none_fix"),
    ))
}

/// Every attribute of the session cookie against the URL's scheme and the page's site.
pub(super) fn check(t: &Target, c: &SetCookie) -> Vec<Check> {
    let lang = t.lang;
    let name = &c.name;
    let url = t.display_url();
    let mut checks = Vec::new();
    if !c.http_only {
        checks.push(Check::problem(
            t!(lang, "cookie.http_only", name),
            t!(lang, "cookie.http_only_why"),
            t!(lang, "cookie.http_only_fix"),
        ));
    }
    if c.secure && !t.https {
        let what = t!(lang, "cookie.secure_over_http", name, url);
        let effect = t!(lang, "cookie.secure_over_http_effect");
        checks.push(if c.same_site == SameSite::None {
            Check::problem(
                what,
                t!(lang, "cookie.same_site_none_forces_secure", effect),
                t!(lang, "cookie.same_site_none_forces_secure_fix"),
            )
        } else {
            Check::problem(
                what,
                t!(lang, "cookie.proxy_claims_https", effect),
                t!(lang, "cookie.proxy_claims_https_fix"),
            )
        });
    }
    if !c.secure && t.https {
        checks.push(Check::problem(
            t!(lang, "cookie.not_secure", name, url),
            t!(lang, "cookie.not_secure_why"),
            t!(lang, "cookie.not_secure_fix"),
        ));
    }
    if c.same_site == SameSite::None && !c.secure {
        checks.push(Check::problem(
            t!(lang, "cookie.none_without_secure"),
            t!(lang, "cookie.none_without_secure_why"),
            t!(lang, "cookie.none_without_secure_fix"),
        ));
    }
    checks.extend(scope_problems(t, c));
    if t.cross_site && c.same_site != SameSite::None {
        checks.push(cross_site_problem(t, c.same_site));
    }
    let problems = checks.len();
    if t.cross_site && c.same_site == SameSite::None && c.secure {
        checks.push(Check::warn(
            t!(lang, "cookie.third_party", origin = t.origin),
            t!(lang, "cookie.third_party_why"),
            t!(lang, "cookie.third_party_fix"),
        ));
    }
    if problems == 0 {
        let (scheme, same_site) = (t.base.scheme(), c.same_site);
        let secure = if c.secure {
            t!(lang, "cookie.secure")
        } else {
            t!(lang, "cookie.not_secure_word")
        };
        checks.insert(
            0,
            Check::Ok(t!(lang, "cookie.ok", name, same_site, secure, scheme)),
        );
    }
    checks
}

/// Where and how long the cookie lives: the `__Host-` rules, Domain, Max-Age and Expires.
fn scope_problems(t: &Target, c: &SetCookie) -> Vec<Check> {
    let lang = t.lang;
    let name = &c.name;
    let mut checks = Vec::new();
    if !c.host_prefix_ok() {
        let none = t!(lang, "cookie.attribute_absent");
        let path = c.path.as_deref().unwrap_or(&none);
        let domain = c.domain.as_deref().unwrap_or(&none);
        checks.push(Check::problem(
            t!(lang, "cookie.host_prefix", name),
            t!(lang, "cookie.host_prefix_why", path, domain),
            t!(lang, "cookie.host_prefix_fix"),
        ));
    }
    if let Some(domain) = c.domain.as_deref().filter(|d| !domain_matches(&t.base, d)) {
        let host = host_of(&t.base);
        checks.push(Check::problem(
            t!(lang, "cookie.domain", domain, host),
            t!(lang, "cookie.domain_why"),
            t!(lang, "cookie.domain_fix", host),
        ));
    }
    if let Some(expired) = &c.expired {
        let what = match expired {
            Expired::MaxAge(age) => t!(lang, "cookie.max_age", age),
            Expired::Expires(at) => t!(lang, "cookie.expires", at),
        };
        checks.push(Check::problem(
            what,
            t!(lang, "cookie.expired_why"),
            t!(lang, "cookie.expired_fix"),
        ));
    }
    checks
}

/// A SameSite=Lax or Strict cookie and a page on another site: the fetch goes without it.
fn cross_site_problem(t: &Target, same_site: SameSite) -> Check {
    let (lang, origin, url) = (t.lang, &t.origin, t.display_url());
    let (page_site, api_site) = (site_of(&t.origin_url), site_of(&t.base));
    let (page_site, api_site) = if t.origin_url.scheme() == t.base.scheme() {
        (page_site, api_site)
    } else {
        // Browsers compare the scheme too (schemeful same-site).
        let (ps, us) = (t.origin_url.scheme(), t.base.scheme());
        (format!("{ps}://{page_site}"), format!("{us}://{api_site}"))
    };
    Check::problem(
        t!(lang, "cookie.cross_site", origin, url, same_site),
        t!(lang, "cookie.cross_site_why", page_site, api_site),
        t!(lang, "cookie.cross_site_fix"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::target::tests::{target, url};

    /// 2025-01-01T00:00:00Z: the checks' clock in these tests.
    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_735_689_600).expect("a date")
    }

    fn parse(raw: &str) -> SetCookie {
        SetCookie::parse(raw, now()).expect("a cookie")
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

    fn answer_setting(cookies: &[&str]) -> Answer {
        let mut headers = reqwest::header::HeaderMap::new();
        for c in cookies {
            headers.append(
                reqwest::header::SET_COOKIE,
                c.parse().expect("a header value"),
            );
        }
        Answer {
            status: reqwest::StatusCode::OK,
            headers,
            body: None,
        }
    }

    #[test]
    fn parses_set_cookie_attributes() {
        let c = parse(
            "__Host-mailcode_sid=abc; Path=/; HttpOnly; SameSite=None; Max-Age=604800; Secure",
        );
        assert_eq!(c.name, "__Host-mailcode_sid");
        assert_eq!(c.value, "abc");
        assert!(c.secure && c.http_only);
        assert_eq!(c.same_site, SameSite::None);
        assert_eq!(c.path.as_deref(), Some("/"));
        assert_eq!(c.expired, None);
        assert!(!c.stored_by_browser(&url("http://127.0.0.1:3000")));
        assert!(c.stored_by_browser(&url("https://login.example.com")));
        assert!(SetCookie::parse("garbage", now()).is_none());
        assert!(SetCookie::parse("=abc; Path=/", now()).is_none());
    }

    #[test]
    fn attribute_names_are_read_in_any_case_and_values_as_written() {
        let c = parse("mailcode_sid=\"a b\"; path=/; httponly; SECURE; samesite=strict; DOMAIN=.Example.COM; max-age=60");
        assert_eq!(
            c.value, "\"a b\"",
            "the value a browser sends back, quotes kept"
        );
        assert!(c.secure && c.http_only);
        assert_eq!(c.same_site, SameSite::Strict);
        assert_eq!(c.path.as_deref(), Some("/"));
        assert_eq!(c.domain.as_deref(), Some("example.com"));
        assert!(c.stored_by_browser(&url("https://login.example.com")));
    }

    #[test]
    fn an_unknown_or_missing_same_site_is_lax_as_browsers_apply_it() {
        assert_eq!(parse("a=b; SameSite=Sometimes").same_site, SameSite::Lax);
        assert_eq!(parse("a=b; SameSite").same_site, SameSite::Lax);
        assert_eq!(parse("a=b").same_site, SameSite::Lax);
        // The last of a repeated attribute wins; an empty Domain is ignored.
        let c = parse("a=b; SameSite=Lax; SameSite=None; Domain=");
        assert_eq!((c.same_site, c.domain), (SameSite::None, None));
    }

    #[test]
    fn max_age_wins_over_expires_and_a_past_date_alone_deletes_the_cookie() {
        assert_eq!(parse("a=b; Max-Age=0").expired, Some(Expired::MaxAge(0)));
        assert_eq!(parse("a=b; Max-Age=-5").expired, Some(Expired::MaxAge(0)));
        assert_eq!(parse("a=b; Max-Age=soon").expired, None);
        let past = "Wed, 21 Oct 2015 07:28:00 GMT";
        let c = parse(&format!("a=b; Expires={past}"));
        assert!(
            matches!(&c.expired, Some(Expired::Expires(at)) if at.contains("21 Oct 2015")),
            "{c:?}"
        );
        assert!(!c.stored_by_browser(&url("http://127.0.0.1:3000")));
        assert_eq!(
            parse(&format!("a=b; Expires={past}; Max-Age=60")).expired,
            None
        );
        assert_eq!(
            parse("a=b; Expires=Fri, 01 Jan 2100 00:00:00 GMT").expired,
            None
        );
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
    fn the_session_cookie_is_found_among_several() {
        let a = answer_setting(&[
            "theme=dark; Path=/",
            "not a cookie",
            "mailcode_sid=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=60",
        ]);
        let c = find_session(Lang::En, &a, now()).expect("the session cookie");
        assert_eq!((c.name.as_str(), c.value.as_str()), ("mailcode_sid", "abc"));
        let other = answer_setting(&["theme=dark", "lang=zh"]);
        let found = find_session(Lang::En, &other, now()).expect_err("no session cookie");
        let Check::Problem { why, .. } = found else {
            panic!("{found:?}")
        };
        assert!(
            why.contains("(theme, lang)") && why.contains("mailcode_sid"),
            "{why}"
        );
        let none = find_session(Lang::En, &answer_setting(&[]), now()).expect_err("none");
        assert!(matches!(none, Check::Problem { why, .. } if why.contains("401 NO_SESSION")));
    }

    #[test]
    fn a_cookie_without_secure_over_https_names_the_proxy_settings() {
        let t = target("https://login.example.com", None);
        let c = parse("mailcode_sid=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=60");
        let found = problems(&check(&t, &c));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("X-Forwarded-Proto: https"), "{found:?}");
        assert!(found[0].contains("--trust-proxy"), "{found:?}");
    }

    #[test]
    fn a_correct_cookie_over_https_is_fine_and_a_third_party_one_is_a_warning() {
        let c =
            parse("__Host-mailcode_sid=abc; Path=/; HttpOnly; SameSite=None; Max-Age=60; Secure");
        let same = check(&target("https://login.example.com", None), &c);
        assert!(matches!(same.as_slice(), [Check::Ok(_)]), "{same:?}");
        let other = check(
            &target("https://login.example.com", Some("https://spa.example.org")),
            &c,
        );
        assert!(problems(&other).is_empty(), "{other:?}");
        assert!(other.iter().any(|c| matches!(c, Check::Warn { .. })));
    }

    #[test]
    fn a_rewritten_cookie_breaks_the_host_prefix_and_domain_rules() {
        let t = target("https://login.example.com", None);
        let c = parse(
            "__Host-mailcode_sid=abc; Path=/api; HttpOnly; SameSite=Lax; Secure; Domain=other.com",
        );
        let found = problems(&check(&t, &c));
        assert!(
            found.iter().any(|p| p.contains("__Host- rules")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|p| p.contains("--cookie-domain")),
            "{found:?}"
        );
    }

    #[test]
    fn same_site_none_without_secure_is_rejected_on_any_scheme() {
        let c = parse("mailcode_sid=abc; Path=/; HttpOnly; samesite=none");
        let found = problems(&check(&target("http://127.0.0.1:3000", None), &c));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("SameSite=None without Secure"),
            "{found:?}"
        );
        assert!(!c.stored_by_browser(&url("http://127.0.0.1:3000")));
    }

    #[test]
    fn a_lax_or_strict_cookie_for_a_page_on_another_site_names_both_sites() {
        let t = target("http://127.0.0.1:3000", Some("http://spa.test:8080"));
        for raw in [
            "mailcode_sid=abc; Path=/; HttpOnly; SameSite=Strict",
            "mailcode_sid=abc; Path=/; HttpOnly",
        ] {
            let checks = check(&t, &parse(raw));
            let Some(Check::Problem { what, why, .. }) = checks.first() else {
                panic!("{checks:?}")
            };
            assert!(what.contains("on another site"), "{what}");
            assert!(why.contains("(spa.test is not 127.0.0.1)"), "{why}");
            assert!(!parse(raw).sent_by_browser(&t));
        }
        // Another scheme is another site too (schemeful same-site).
        let t = target("https://login.example.com", Some("http://app.example.com"));
        let checks = check(&t, &parse("mailcode_sid=abc; Path=/; HttpOnly; Secure"));
        assert!(
            problems(&checks)
                .iter()
                .any(|p| p.contains("on another site")),
            "{checks:?}"
        );
        let Some(Check::Problem { why, .. }) = checks.first() else {
            panic!("{checks:?}")
        };
        assert!(
            why.contains("http://example.com is not https://example.com"),
            "{why}"
        );
    }

    #[test]
    fn an_expired_cookie_is_a_problem_in_both_languages() {
        let c = parse("mailcode_sid=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=-1");
        let en = problems(&check(&target("http://127.0.0.1:3000", None), &c));
        assert_eq!(en, ["the session cookie expires at once (Max-Age=0) / mailcode sets Max-Age to the session's lifetime: something rewrote the cookie; remove that rewrite."]);
        let mut zh_target = target("http://127.0.0.1:3000", None);
        zh_target.lang = Lang::Zh;
        let c = parse("mailcode_sid=abc; HttpOnly; Expires=Wed, 21 Oct 2015 07:28:00 GMT");
        let zh = problems(&check(&zh_target, &c));
        assert!(zh.len() == 1 && zh[0].contains("立即过期"), "{zh:?}");
    }
}
