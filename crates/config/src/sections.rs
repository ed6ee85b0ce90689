//! The lenient view of the file for `cardgate doctor`: each table the doctor's checks need,
//! read on its own with the same types as [`Config`]. The doctor judges the file with the
//! strict reader ([`Config::from_file`]) like the agent does, and when the agent would refuse
//! it (a typo in `[session]`, a newer key) still checks the endpoint, the card CA and the bus
//! from the tables that are sound.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::{CardTrustConfig, Config, ConfigError, EndpointConfig, IpcConfig, PathsConfig};

/// The tables the doctor reads, each present only when it is sound on its own.
#[derive(Debug, Clone, Default)]
pub struct Sections {
    /// `[endpoint]`.
    pub endpoint: Option<EndpointConfig>,
    /// `[card]`.
    pub card: Option<CardTrustConfig>,
    /// `[paths]`.
    pub paths: Option<PathsConfig>,
    /// `[ipc]` (its defaults when the table is absent).
    pub ipc: Option<IpcConfig>,
}

impl Sections {
    /// Each table parsed and checked on its own; fails only when the file is not TOML.
    pub fn from_toml(text: &str) -> Result<Sections, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::syntax(&e))?;
        Ok(Sections {
            endpoint: section::<EndpointConfig>(&table, "endpoint").filter(|e| e.check().is_ok()),
            card: section::<CardTrustConfig>(&table, "card").filter(|c| c.check().is_ok()),
            paths: section(&table, "paths"),
            ipc: match table.get("ipc") {
                None => Some(IpcConfig::default()),
                Some(_) => section::<IpcConfig>(&table, "ipc").filter(|i| i.check().is_ok()),
            },
        })
    }

    /// Reads the file leniently (see [`Sections::from_toml`]).
    pub fn from_file(path: &Path) -> Result<Sections, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Sections::from_toml(&text).map_err(|e| e.in_file(path))
    }
}

impl From<&Config> for Sections {
    fn from(config: &Config) -> Sections {
        Sections {
            endpoint: Some(config.endpoint.clone()),
            card: Some(config.card.clone()),
            paths: Some(config.paths.clone()),
            ipc: Some(config.ipc.clone()),
        }
    }
}

/// Table `name` as `T`, when present and sound.
fn section<T: DeserializeOwned>(table: &toml::Table, name: &str) -> Option<T> {
    table.get(name).cloned().and_then(|v| v.try_into().ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sound_tables_survive_a_file_the_agent_refuses() {
        // No [policy] or [paths], a typo in [session]: the agent refuses the file.
        let text = "[endpoint]\nurl = \"https://spine.example:8443\"\nmtls_url = \"https://spine.example:8444\"\nservice_ca = \"/x.pem\"\nlogin_mode = \"B\"\n[card]\nca = \"/ca.pem\"\ncrl = \"endpoint\"\n[session]\nremovl = \"normal\"\n";
        assert!(Config::from_toml(text).is_err());
        let s = Sections::from_toml(text).unwrap();
        assert_eq!(s.endpoint.unwrap().url, "https://spine.example:8443");
        assert_eq!(s.card.unwrap().crl, "endpoint");
        assert!(s.paths.is_none());
        assert_eq!(s.ipc.unwrap().bus, "system");
        // A table with a wrong key or a bad value is left out, the others kept.
        let bad = text.replace("crl = \"endpoint\"", "crl = \"\"");
        let s = Sections::from_toml(&bad).unwrap();
        assert!(s.card.is_none() && s.endpoint.is_some());
        assert!(Sections::from_toml("[card\n").is_err());
    }
}
