//! A URL that may carry a password (database, Redis, SMTP): SPEC §3 Robustness, no secret is
//! ever printed. Its `Debug` and `Display` show `scheme://user:***@host/db`; only
//! [`SecretUrl::expose`] gives the text itself, to the one client library that connects with it.
use std::fmt;
use std::str::FromStr;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The URL with its password, for the client library that connects with it. Never format
    /// this into a message or a log line.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn starts_with(&self, prefix: &str) -> bool {
        self.0.starts_with(prefix)
    }

    /// The URL as it may be shown: every password replaced by `***`. A list of URLs separated
    /// by commas (the nodes of a Redis Cluster, the sentinels) is redacted one by one.
    pub fn redacted(&self) -> String {
        self.0
            .split(',')
            .map(redact_one)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `scheme://user:pass@host…` → `scheme://user:***@host…`. Done on the text, not through a URL
/// parser: the point is that nothing in the user-information part survives, even in a URL that
/// no parser accepts (a typo in the scheme, a password with an unescaped `/` or `#`).
fn redact_one(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        // Not a URL at all: it may still be a password pasted by mistake.
        return if url.contains('@') || url.contains(':') {
            "***".to_string()
        } else {
            url.to_string()
        };
    };
    let rest = &url[scheme_end..];
    // The user information ends at the last `@` before the host; a password may hold `/`, `?`
    // or `#` unescaped, so the last `@` of the whole text is taken.
    match rest.rfind('@') {
        None => url.to_string(),
        Some(at) => {
            let userinfo = &rest[..at];
            let shown = match userinfo.split_once(':') {
                Some((user, _)) if !user.contains('/') => format!("{user}:***"),
                Some(_) => "***".to_string(),
                None => userinfo.to_string(),
            };
            format!("{}{}{}", &url[..scheme_end], shown, &rest[at..])
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl FromStr for SecretUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl(s.to_string()))
    }
}

impl From<String> for SecretUrl {
    fn from(s: String) -> Self {
        SecretUrl(s)
    }
}

impl From<&str> for SecretUrl {
    fn from(s: &str) -> Self {
        SecretUrl(s.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for SecretUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretUrl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let cases = [
            (
                "mysql://mc:SECRET@db:3306/mailcode",
                "mysql://mc:***@db:3306/mailcode",
            ),
            ("redis://:SECRET@redis:6379/0", "redis://:***@redis:6379/0"),
            (
                "smtp://user:SE/CR#ET@smtp.example.com:587?tls=required",
                "smtp://user:***@smtp.example.com:587?tls=required",
            ),
            ("bogus://mc:SECRET@x/y", "bogus://mc:***@x/y"),
            (
                "redis://:SECRET@a:1,redis://:SECRET@b:2",
                "redis://:***@a:1,redis://:***@b:2",
            ),
            ("postgres://u:p%40SECRET@h/db", "postgres://u:***@h/db"),
            ("sqlite://data/mailcode.db", "sqlite://data/mailcode.db"),
            ("redis://redis:6379", "redis://redis:6379"),
            ("mc:SECRET@host", "***"),
        ];
        for (raw, shown) in cases {
            let u = SecretUrl::new(raw);
            assert_eq!(u.to_string(), shown, "{raw}");
            assert!(!format!("{u:?}").contains("SECRET"), "{raw}");
            assert_eq!(u.expose(), raw);
        }
    }
}
