//! The endpoint's address as the file writes it, `https://host:port`: the one parser of it.
//! The file's check uses it, so a bad URL is refused at start with its key named, and the
//! endpoint client (`cardgate_spine::Endpoint::parse`) builds its listener from it.

use rustls_pki_types::ServerName;

/// One HTTPS listener, `https://host:port` (port 443 when left out), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    host: String,
    port: u16,
}

impl EndpointUrl {
    /// Parses `https://host:port` (a trailing `/` allowed, nothing else after the port;
    /// plain `http` refused). The error is the rule broken, naming the URL or the host.
    pub fn parse(url: &str) -> Result<EndpointUrl, String> {
        let invalid = |why: &str| format!("endpoint {url:?}: {why}");
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| invalid("must start with https://"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unclosed [ in an IPv6 address"))?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| invalid("the port is not a number from 1 to 65535"))?,
            None => 443,
        };
        if host.is_empty() || host.contains('/') {
            return Err(invalid("expected https://host:port with no path"));
        }
        ServerName::try_from(host.to_owned())
            .map_err(|_| format!("{host:?} is neither a DNS name nor an IP address"))?;
        Ok(EndpointUrl {
            host: host.to_owned(),
            port,
        })
    }

    /// The host: a DNS name or an IP address (without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn https_urls_parse_and_anything_else_names_the_rule() {
        let u = EndpointUrl::parse("https://spine.example:8443/").unwrap();
        assert_eq!((u.host(), u.port()), ("spine.example", 8443));
        let v6 = EndpointUrl::parse("https://[::1]:9").unwrap();
        assert_eq!((v6.host(), v6.port()), ("::1", 9));
        assert_eq!(EndpointUrl::parse("https://h").unwrap().port(), 443);
        for (url, rule) in [
            ("http://spine.example", "must start with https://"),
            ("https://h:99999", "the port is not"),
            ("https://h:1/path", "the port is not"),
            ("https://h/path", "no path"),
            ("https://[::1:9", "unclosed"),
            ("https://a b:1", "neither a DNS name"),
        ] {
            let e = EndpointUrl::parse(url).unwrap_err();
            assert!(e.contains(rule), "{url}: {e}");
        }
    }
}
