//! The module arguments of the PAM line, for example
//! `auth required pam_cardgate.so map=/etc/cardgate/pam-users endpoint=optional`.
//!
//! | Argument | Default | Meaning |
//! | --- | --- | --- |
//! | `map=PATH` | `/etc/cardgate/pam-users` | which card holders may log in to which account |
//! | `endpoint=required\|optional` | `required` | `optional`: a card whose passcode the card verified is enough when the endpoint cannot be reached |
//! | `bus=ADDRESS` | `system` | the D-Bus the agent is on (tests use a private bus) |
//! | `timeout=SECONDS` | `60` | the longest one call to the agent may take (PIN-pad entry included) |
//!
//! An unknown argument is an error naming it, never ignored: a typo must not switch a
//! protection off.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::PamError;

/// The default mapping file.
pub const DEFAULT_MAP: &str = "/etc/cardgate/pam-users";

/// The parsed module arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The holder-to-account mapping file.
    pub map: PathBuf,
    /// Whether a verified card suffices when the endpoint is unreachable.
    pub endpoint_optional: bool,
    /// `"system"` or a D-Bus address.
    pub bus: String,
    /// The longest one call to the agent may take.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            map: PathBuf::from(DEFAULT_MAP),
            endpoint_optional: false,
            bus: "system".into(),
            timeout: Duration::from_secs(60),
        }
    }
}

impl Options {
    /// Parses the arguments of the PAM line.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Options, PamError> {
        let mut options = Options::default();
        for arg in args {
            let bad = |rule: &str| PamError::Option {
                argument: arg.to_owned(),
                rule: rule.to_owned(),
            };
            let (key, value) = arg.split_once('=').ok_or_else(|| {
                bad("expected map=PATH, endpoint=required|optional, bus=ADDRESS or timeout=SECONDS")
            })?;
            match key {
                "map" if value.starts_with('/') => options.map = PathBuf::from(value),
                "map" => return Err(bad("an absolute path")),
                "endpoint" => {
                    options.endpoint_optional = match value {
                        "required" => false,
                        "optional" => true,
                        _ => return Err(bad("\"required\" or \"optional\"")),
                    }
                }
                "bus" if value == "system" || value.contains(':') => options.bus = value.into(),
                "bus" => return Err(bad("\"system\" or a D-Bus address")),
                "timeout" => {
                    let seconds: u64 = value
                        .parse()
                        .ok()
                        .filter(|s| (1..=600).contains(s))
                        .ok_or_else(|| bad("1 to 600 seconds"))?;
                    options.timeout = Duration::from_secs(seconds);
                }
                _ => {
                    return Err(bad("unknown; expected map=, endpoint=, bus= or timeout="));
                }
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_argument() {
        assert_eq!(Options::parse([]).unwrap(), Options::default());
        let o = Options::parse([
            "map=/tmp/m",
            "endpoint=optional",
            "bus=unix:path=/tmp/b",
            "timeout=5",
        ])
        .unwrap();
        assert_eq!(o.map, PathBuf::from("/tmp/m"));
        assert!(o.endpoint_optional);
        assert_eq!(o.bus, "unix:path=/tmp/b");
        assert_eq!(o.timeout, Duration::from_secs(5));
    }

    #[test]
    fn unknown_or_bad_arguments_are_named() {
        for arg in [
            "nullok",
            "mapp=/x",
            "map=relative",
            "endpoint=maybe",
            "timeout=0",
            "bus=x",
        ] {
            let e = Options::parse([arg]).unwrap_err().to_string();
            assert!(e.contains(arg), "{e}");
        }
    }
}
