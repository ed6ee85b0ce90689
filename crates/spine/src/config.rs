//! Where the endpoint is and how long the client waits: [`Endpoint`] (one listener) and
//! [`SpineConfig`] (both listeners, the pinned service CA, the time limits).

use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::error::SpineError;

/// One HTTPS listener of the endpoint: where to connect and which name its certificate must
/// carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
}

impl Endpoint {
    /// A listener at `host:port` whose certificate names `host` (a DNS name or an IP
    /// address).
    pub fn new(host: &str, port: u16) -> Result<Endpoint, SpineError> {
        let server_name =
            ServerName::try_from(host.to_owned()).map_err(|_| SpineError::Config {
                reason: format!("{host:?} is neither a DNS name nor an IP address"),
            })?;
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            server_name,
        })
    }

    /// Parses `https://host:port` (a trailing `/` is allowed; nothing else after the port).
    /// Plain `http` is refused: the protocol is HTTPS only.
    pub fn parse(url: &str) -> Result<Endpoint, SpineError> {
        let url = cardgate_config::EndpointUrl::parse(url)
            .map_err(|reason| SpineError::Config { reason })?;
        Endpoint::new(url.host(), url.port())
    }

    /// Checks the server's certificate against `name` instead of the host connected to (a
    /// load balancer's address with the service's name).
    pub fn with_server_name(mut self, name: &str) -> Result<Endpoint, SpineError> {
        self.server_name =
            ServerName::try_from(name.to_owned()).map_err(|_| SpineError::Config {
                reason: format!("{name:?} is neither a DNS name nor an IP address"),
            })?;
        Ok(self)
    }

    /// `host:port`, as connected to and sent in the `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The name the server's certificate must carry.
    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }
}

/// How the agent reaches the Spine-like endpoint.
#[derive(Debug, Clone)]
pub struct SpineConfig {
    /// The `listen` listener: mode A login and every other call.
    pub api: Endpoint,
    /// The `listen_mtls` listener: mode B login, where the card signs the TLS handshake.
    pub mtls: Endpoint,
    /// The service CA's certificate(s), PEM: the only roots trusted for the server (no
    /// system roots: a pharmacy workstation must not accept any public CA's word for Spine).
    pub service_ca_pem: Vec<u8>,
    /// Limit for opening the TCP connection: an unplugged network fails this fast.
    pub connect_timeout: Duration,
    /// Limit for a whole request once connected (handshake, card signature, answer).
    pub request_timeout: Duration,
    /// How far the workstation's clock may differ from the server's before logins are
    /// refused with [`SpineError::ClockSkew`].
    pub max_clock_skew: Duration,
}

impl SpineConfig {
    /// A configuration with the default limits: 5 s to connect, 30 s per request (a card
    /// signature can take a second or two on a slow reader), 5 minutes of clock skew.
    pub fn new(api: Endpoint, mtls: Endpoint, service_ca_pem: Vec<u8>) -> SpineConfig {
        SpineConfig {
            api,
            mtls,
            service_ca_pem,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_clock_skew: Duration::from_secs(5 * 60),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_https_urls_and_refuses_the_rest() {
        let e = Endpoint::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!(e.authority(), "127.0.0.1:8443");
        let e = Endpoint::parse("https://spine.example/").unwrap();
        assert_eq!(e.authority(), "spine.example:443");
        let e = Endpoint::parse("https://[::1]:9000").unwrap();
        assert_eq!(e.authority(), "[::1]:9000");
        for bad in [
            "http://spine.example",
            "https://",
            "https://spine.example:99999",
            "https://spine.example/path",
            "spine.example:443",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(SpineError::Config { .. })),
                "{bad}"
            );
        }
    }
}
