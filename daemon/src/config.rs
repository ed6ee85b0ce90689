//! The daemon's configuration file: the schema and its checks live in `cardgate-config`
//! (shared with `cardgate doctor`, so the two can never read the file differently); this
//! module keeps the daemon's public path (`cardgated::config::Config`, `RemovalMode`, ...)
//! and ties the shared crate to the contracts it cannot link: the endpoint client's URL
//! errors and the bus's restricted group.

pub use cardgate_config::{
    AuditTrailConfig, CardTrustConfig, Config, ConfigError, DEFAULT_RESTRICTED_GROUP,
    EndpointConfig, EndpointUrl, IpcConfig, LoginMode, MIN_SEGMENT_BYTES, PathsConfig,
    RemovalAction, RemovalMode, RenewalConfig, SessionConfig, WorkstationConfig,
};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_default_restricted_group_is_the_bus_policy_s() {
        assert_eq!(DEFAULT_RESTRICTED_GROUP, cardgate_ipc::RESTRICTED_GROUP);
        let config = Config::from_toml(include_str!("../../config/cardgated.toml")).unwrap();
        assert_eq!(config.ipc.restricted_group, cardgate_ipc::RESTRICTED_GROUP);
    }

    /// The endpoint client builds its listener from the file's URL rule: the same URLs pass,
    /// with the same host and port, and the file's check says what the client would say.
    #[test]
    fn the_file_s_url_rule_is_the_endpoint_client_s() {
        for url in [
            "https://spine.example:8443",
            "https://spine.example:8443/",
            "https://spine.example",
            "https://127.0.0.1:9",
            "https://[::1]:8443",
            "https://[::1]",
            "http://spine.example",
            "spine.example:8443",
            "https://",
            "https://:8443",
            "https://spine.example:0x10",
            "https://spine.example:70000",
            "https://spine.example/path",
            "https://spine.example:8443/path",
            "https://[::1:8443",
            "https://spine example:8443",
            "https://-bad-.example",
        ] {
            let ours = EndpointUrl::parse(url);
            let client = cardgate_spine::Endpoint::parse(url);
            match (&ours, &client) {
                (Ok(ours), Ok(client)) => {
                    let host = if ours.host().contains(':') {
                        format!("[{}]", ours.host())
                    } else {
                        ours.host().to_owned()
                    };
                    assert_eq!(
                        format!("{host}:{}", ours.port()),
                        client.authority(),
                        "{url}"
                    );
                }
                (Err(ours), Err(client)) => assert_eq!(
                    format!("the Spine client configuration is not usable: {ours}"),
                    client.to_string(),
                    "{url}"
                ),
                _ => panic!("{url}: the file says {ours:?}, the endpoint client {client:?}"),
            }
        }
    }
}
