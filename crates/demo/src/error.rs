//! The demo crate's one error type, [`DemoError`]: what stops the demo world, its private bus
//! or the demo itself from starting.

use std::path::PathBuf;

/// Why the demo (or a test's demo world) cannot be set up or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// A file or directory of the demo could not be written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The card CA could not be made or a card not provisioned.
    #[error("{what}: {source}")]
    Provision {
        /// What was being made.
        what: &'static str,
        /// The provisioning error.
        #[source]
        source: cardgate_vcard::provision::ProvisionError,
    },
    /// The in-process spine-sim could not be configured or started.
    #[error("{what}: {source}")]
    Sim {
        /// What was being done.
        what: &'static str,
        /// The simulator's error.
        #[source]
        source: cardgate_spine_sim::SimError,
    },
    /// The demo dispenser's passcode expiry date could not be written.
    #[error("the passcode expiry date: {0}")]
    Expiry(#[from] time::error::Format),
    /// The private `dbus-daemon` could not be started (the text says how to install it).
    #[error("the private D-Bus: {0}")]
    Bus(String),
    /// A demo card could not be put into its reader.
    #[error("the demo card: {0}")]
    Card(#[from] cardgate_ipc::AgentError),
    /// The demo's embedded configuration was refused.
    #[error("the demo configuration: {0}")]
    Config(#[from] cardgated::config::ConfigError),
    /// The agent itself failed: its configuration, or while it ran.
    #[error(transparent)]
    Daemon(#[from] cardgated::DaemonError),
}
