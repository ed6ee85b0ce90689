//! The crate's one error type: what can stop spine-sim from starting or serving. Errors a
//! client causes are never `SimError`s; they are 4xx answers with an `ErrorBody`.

use std::path::PathBuf;

/// Why spine-sim could not start or keep serving. Each variant names the file or setting to
/// fix; none carries a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The configuration file could not be read.
    #[error("cannot read the configuration {}: {source}", path.display())]
    ConfigIo {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is not valid TOML for spine-sim (unknown keys are named here).
    #[error("configuration {}: {reason}", path.display())]
    ConfigInvalid {
        /// The file (empty when parsed from a string).
        path: PathBuf,
        /// What is wrong, with the key or line.
        reason: String,
    },
    /// The service directory (made by `spine-sim init`) is missing a file or has a bad one.
    #[error("service directory file {}: {reason} (run `spine-sim init --dir DIR` to make one)", path.display())]
    ServiceIdentity {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `spine-sim init` would overwrite an existing service identity.
    #[error("{} already exists: refusing to replace a service identity agents may pin", path.display())]
    ServiceIdentityExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The card CA could not be loaded or used (CRL, renewal).
    #[error("card CA: {0}")]
    CardCa(#[from] cardgate_vcard::provision::ProvisionError),
    /// The card CA's certificate or CRL was refused by the certificate checks.
    #[error("card CA certificate or CRL: {0}")]
    Certs(#[from] cardgate_certs::CertsError),
    /// A certificate could not be made (service CA, server certificate, renewal).
    #[error("could not build {what}: {source}")]
    Certificate {
        /// What was being built.
        what: &'static str,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// rustls refused the TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A listener could not be bound or read.
    #[error("listener {what}: {source}")]
    Listen {
        /// Which listener (`listen` or `listen_mtls`).
        what: &'static str,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file (service identity, outbox) failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}
