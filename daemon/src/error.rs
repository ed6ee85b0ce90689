//! The daemon's one error type, [`DaemonError`]: what stops it from starting or running
//! (configuration, files, the bus, the endpoint set-up). Errors answered to D-Bus callers are
//! `cardgate_ipc::AgentError`s, made in `agent.rs` from the layers' errors.

/// Why the daemon cannot start or keep running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The configuration cannot be read or is wrong; the text names the file, the key and
    /// the rule.
    #[error(transparent)]
    Config(#[from] cardgate_config::ConfigError),
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The audit trail cannot be opened or written: the agent refuses to run without it.
    #[error("the audit trail cannot be used: {0}")]
    Audit(#[from] cardgate_audit::AuditError),
    /// The passcode ledger or another card-layer set-up failed.
    #[error("card layer: {0}")]
    Piv(#[from] cardgate_piv::PivError),
    /// The certificate trust configuration (card CA, CRL) is unusable.
    #[error("card trust: {0}")]
    Certs(#[from] cardgate_certs::CertsError),
    /// The endpoint client could not be set up, or the CRL not fetched.
    #[error("endpoint: {0}")]
    Spine(#[from] cardgate_spine::SpineError),
    /// The reader backend could not start.
    #[error("readers: {0}")]
    Reader(#[from] cardgate_reader::ReaderError),
    /// The bus connection or name could not be set up.
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    /// The bus went away under the running agent (the bus daemon stopped or restarted, or the
    /// name was taken): no client can reach it, so it stops with this error and the service
    /// manager (`Restart=on-failure`) starts it again on the new bus.
    #[error(
        "the D-Bus connection was lost ({reason}); exiting so that the service manager restarts cardgated"
    )]
    BusLost {
        /// What happened.
        reason: String,
    },
    /// The demo's set-up (virtual card, spine-sim, private bus) failed.
    #[error("demo: {0}")]
    Demo(String),
}
