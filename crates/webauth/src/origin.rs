//! Web origins: the one thing the browser tells us about who is asking, and the rules on
//! which may ask (HTTPS only; loopback HTTP for development only where switched on).

use std::fmt;

use url::{Host, Url};

use crate::WebAuthError;

/// Which origins are acceptable at all, before any allow-list is consulted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OriginRules {
    /// Accept `http://localhost`, `http://127.0.0.1` and `http://[::1]` (any port): a
    /// developer's machine. Off by default and in production.
    pub allow_http_loopback: bool,
}

/// A web origin in its serialised form (`https://pmr.example.nhs.uk`, `https://host:8443`):
/// lower-case host, no default port, no path. What the signature binds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WebOrigin(String);

impl WebOrigin {
    /// Reads an origin as a browser reports it (a trailing `/` is tolerated), under `rules`.
    pub fn parse(given: &str, rules: OriginRules) -> Result<Self, WebAuthError> {
        let refuse = |why: &str| WebAuthError::NotAnOrigin {
            given: given.chars().take(200).collect(),
            why: why.to_owned(),
        };
        let url = Url::parse(given).map_err(|e| refuse(&e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("it holds a user name or password"));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(refuse("it has a path, query or fragment"));
        }
        let host = url.host().ok_or_else(|| refuse("it has no host"))?;
        let serialised = url.origin().ascii_serialization();
        match url.scheme() {
            "https" => {}
            "http" if rules.allow_http_loopback && is_loopback(&host) => {}
            "http" => return Err(WebAuthError::NotHttps { origin: serialised }),
            other => return Err(refuse(&format!("scheme '{other}' is not a web scheme"))),
        }
        Ok(WebOrigin(serialised))
    }

    /// The serialised origin, the bytes hashed into the signature.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WebOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(a) => a.is_loopback(),
        Host::Ipv6(a) => a.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: OriginRules = OriginRules {
        allow_http_loopback: true,
    };

    #[test]
    fn https_origins_are_serialised_as_browsers_do() {
        let o = WebOrigin::parse("https://PMR.Example.nhs.uk:443/", OriginRules::default());
        assert_eq!(o.unwrap().as_str(), "https://pmr.example.nhs.uk");
        let o = WebOrigin::parse("https://localhost:8443", OriginRules::default()).unwrap();
        assert_eq!(o.as_str(), "https://localhost:8443");
    }

    #[test]
    fn http_is_refused_unless_loopback_development_is_on() {
        for given in [
            "http://localhost:8080",
            "http://127.0.0.1",
            "http://[::1]:3000",
        ] {
            let err = WebOrigin::parse(given, OriginRules::default()).unwrap_err();
            assert!(
                matches!(err, WebAuthError::NotHttps { .. }),
                "{given}: {err}"
            );
            assert!(WebOrigin::parse(given, DEV).is_ok(), "{given}");
        }
        let err = WebOrigin::parse("http://pmr.example.com", DEV).unwrap_err();
        assert!(matches!(err, WebAuthError::NotHttps { .. }), "{err}");
    }

    #[test]
    fn what_is_not_an_origin_is_refused_naming_why() {
        for (given, why) in [
            ("https://pmr.example.com/login", "path"),
            ("https://pmr.example.com/?a=1", "path, query"),
            ("https://user:pw@pmr.example.com", "user name"),
            ("file:///etc/passwd", "scheme"),
            ("chrome-extension://abc", "scheme"),
            ("not a url", "relative URL"),
        ] {
            let err = WebOrigin::parse(given, DEV).unwrap_err();
            assert!(err.to_string().contains(why), "{given}: {err}");
        }
    }
}
