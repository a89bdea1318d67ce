//! What is checked: the deployment's URL, the origin of the page the probe acts as, and how a
//! browser sees the two (same origin, same site, https, loopback). Parsed once from the command
//! line, before any request; a value that cannot be used is a usage error (exit status 2).
use std::net::IpAddr;

use reqwest::Url;

use super::DoctorArgs;
use crate::i18n::Lang;

pub(super) struct Target {
    /// The deployment's base URL, without a trailing slash (a path prefix is kept).
    pub base: Url,
    /// The origin of the page the probe acts as: `--origin`, or the URL's own origin.
    pub origin: String,
    pub origin_url: Url,
    /// `--origin` was given and is not the URL's own origin: CORS is needed.
    pub cross_origin: bool,
    /// The page is on another site than the URL: SameSite=Lax/Strict cookies stay home.
    pub cross_site: bool,
    pub https: bool,
    pub loopback: bool,
    pub email: String,
    pub lang: Lang,
}

impl Target {
    /// The target, or the usage error in the report's language (English when `--lang` itself
    /// is the error).
    pub fn parse(args: &DoctorArgs) -> Result<Target, String> {
        let given_lang = &args.lang;
        let lang = Lang::parse(given_lang)
            .ok_or_else(|| t!(Lang::En, "usage.lang", lang = format!("{given_lang:?}")))?;
        let url = format!("{:?}", args.url);
        let base = parse_http_url(&args.url)
            .map_err(|e| t!(lang, "usage.url", url, error = e.text(lang)))?;
        if base.query().is_some() || base.fragment().is_some() {
            return Err(t!(lang, "usage.url_query"));
        }
        let mut base = base;
        let path = base.path().trim_end_matches('/').to_owned();
        base.set_path(&path);
        let url_origin = base.origin().ascii_serialization();
        let (origin_url, given) = match &args.origin {
            Some(o) => {
                let origin = format!("{o:?}");
                let u = parse_http_url(o)
                    .map_err(|e| t!(lang, "usage.origin", origin, error = e.text(lang)))?;
                if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
                    return Err(t!(lang, "usage.origin_path", origin));
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
            return Err(t!(lang, "usage.email", email = format!("{email:?}")));
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

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.display_url())
    }

    /// The base URL as people write it, without the trailing slash.
    pub fn display_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }
}

/// Why a URL given on the command line cannot be used.
enum UrlError {
    /// `url`'s own words (English only: they come from the `url` crate).
    Syntax(String),
    Scheme(String),
    NoHost,
    Credentials,
}

impl UrlError {
    fn text(&self, lang: Lang) -> String {
        match self {
            UrlError::Syntax(detail) => detail.clone(),
            UrlError::Scheme(scheme) => {
                t!(lang, "usage.scheme", scheme = format!("{scheme:?}"))
            }
            UrlError::NoHost => t!(lang, "usage.no_host"),
            UrlError::Credentials => t!(lang, "usage.credentials"),
        }
    }
}

fn parse_http_url(raw: &str) -> Result<Url, UrlError> {
    let u = Url::parse(raw.trim()).map_err(|e| UrlError::Syntax(e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(u.scheme().to_owned()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost);
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(UrlError::Credentials);
    }
    Ok(u)
}

/// The host as cookies compare it: lower case, without brackets or a trailing dot.
pub(super) fn host_of(u: &Url) -> String {
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
pub(super) fn site_of(u: &Url) -> String {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn url(s: &str) -> Url {
        Url::parse(s).expect("test URL")
    }

    fn args(url: &str, origin: Option<&str>) -> DoctorArgs {
        DoctorArgs {
            url: url.into(),
            origin: origin.map(str::to_owned),
            lang: "en".into(),
            email: "doctor@example.com".into(),
        }
    }

    /// A valid target, for the checks' tests.
    pub fn target(url: &str, origin: Option<&str>) -> Target {
        Target::parse(&args(url, origin)).expect("valid")
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
    fn usage_errors_are_caught_before_any_request() {
        assert!(Target::parse(&args("not a url", None)).is_err());
        assert!(Target::parse(&args("ftp://example.com", None)).is_err());
        assert!(Target::parse(&args("http://x", Some("http://y/app"))).is_err());
        let t = target("http://127.0.0.1:3000/", Some("http://127.0.0.1:5173/"));
        assert_eq!(t.origin, "http://127.0.0.1:5173");
        assert!(t.cross_origin && !t.cross_site && t.loopback && !t.https);
        assert_eq!(t.endpoint("/healthz"), "http://127.0.0.1:3000/healthz");
        let t = target("https://example.com/auth/", None);
        assert_eq!(t.endpoint("/readyz"), "https://example.com/auth/readyz");
        assert!(!t.cross_origin && !t.loopback);
    }

    #[test]
    fn usage_errors_speak_the_report_language() {
        let mut zh = args("ftp://example.com", None);
        zh.lang = "zh".into();
        let e = Target::parse(&zh).err().expect("a usage error");
        assert!(
            e.contains("不是可以检查的 URL") && e.contains("协议"),
            "{e}"
        );
        let mut fr = args("http://x", None);
        fr.lang = "fr".into();
        let e = Target::parse(&fr).err().expect("a usage error");
        assert_eq!(e, "--lang \"fr\": use en or zh");
    }
}
