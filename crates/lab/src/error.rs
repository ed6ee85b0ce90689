//! The lab's one error type: every variant says what to do next, because the person reading
//! it is usually looking at a failed CI run.

use std::path::PathBuf;
use std::time::Duration;

use cardgate_vcard::vpcd::VpcdError;

/// Errors from setting up or driving the PC/SC lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// The lab needs root for its namespaces (`unshare`) and to install packages.
    #[error(
        "the PC/SC lab needs root: it runs pcscd in private mount/network/pid namespaces \
         (unshare) and mounts a tmpfs on /run/pcscd. Run as root (e.g. `sudo -E scripts/test`) \
         or in the project's CI container"
    )]
    NotRoot,
    /// Entering the namespaces failed (no CAP_SYS_ADMIN, unshare refused, the prologue failed).
    #[error(
        "could not enter the lab namespaces (`{command}` exited with {status}); the lines above \
         say why. The lab needs root with CAP_SYS_ADMIN (a container must be privileged or \
         allow unshare)"
    )]
    NamespaceFailed {
        /// The command that was run.
        command: String,
        /// How it ended.
        status: String,
    },
    /// [`crate::Lab::start`] was called outside the lab namespace, where it would fight the
    /// system's own pcscd over /run/pcscd.
    #[error(
        "Lab::start called outside the lab namespace: call cardgate_lab::enter_lab_namespace() \
         first thing in main() (e2e binaries use harness = false)"
    )]
    NotInLabNamespace,
    /// Packages the lab needs are missing even after running the setup script.
    #[error(
        "the lab needs {missing:?} and they are still missing after running {}: \
         run it by hand as root and read its output",
        setup_script.display()
    )]
    MissingPackages {
        /// What is missing (programs or files).
        missing: Vec<String>,
        /// The setup script that was run.
        setup_script: PathBuf,
    },
    /// The setup script failed.
    #[error("{} failed ({status}); run it by hand as root and read its output", setup_script.display())]
    SetupFailed {
        /// The setup script that was run.
        setup_script: PathBuf,
        /// How it ended.
        status: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the lab was doing.
        what: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// pcscd exited on its own while the lab waited for it.
    #[error("pcscd exited ({status}) while starting; its log ({}):\n{log}", log_path.display())]
    PcscdExited {
        /// How it ended.
        status: String,
        /// Where its full log is.
        log_path: PathBuf,
        /// Its log.
        log: String,
    },
    /// pcscd did not get ready (both readers listed, both vpcd ports accepting) in time.
    #[error(
        "pcscd was not ready after {waited:?}: {missing}; its log ({}):\n{log}",
        log_path.display()
    )]
    PcscdNotReady {
        /// How long the lab waited.
        waited: Duration,
        /// What was still missing.
        missing: String,
        /// Where its full log is.
        log_path: PathBuf,
        /// Its log.
        log: String,
    },
    /// An operation needs pcscd, but the lab's pcscd is stopped (after `kill_pcscd`).
    #[error("the lab's pcscd is not running: call Lab::restart_pcscd() first")]
    PcscdStopped,
    /// A PC/SC call failed.
    #[error("PC/SC {call} failed: {source}")]
    Pcsc {
        /// The PC/SC call (the C name) that failed.
        call: &'static str,
        /// The PC/SC error.
        #[source]
        source: pcsc::Error,
    },
    /// Inserting the card into its vpcd reader failed.
    #[error(transparent)]
    Vpcd(#[from] VpcdError),
    /// pcscd did not report the reader in the expected state in time.
    #[error(
        "reader {reader:?} was not {expected} after {waited:?} (pcscd polls vpcd about every \
         400 ms); pcscd log ({}):\n{log}",
        log_path.display()
    )]
    ReaderStateTimeout {
        /// The reader's PC/SC name.
        reader: String,
        /// "present" or "empty".
        expected: &'static str,
        /// How long the lab waited.
        waited: Duration,
        /// Where pcscd's full log is.
        log_path: PathBuf,
        /// pcscd's log.
        log: String,
    },
}

impl LabError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
        let what = what.into();
        move |source| LabError::Io { what, source }
    }

    pub(crate) fn pcsc(call: &'static str) -> impl FnOnce(pcsc::Error) -> LabError {
        move |source| LabError::Pcsc { call, source }
    }
}
