//! The crate's one error type.

/// What stops the dialog program.
#[derive(Debug, thiserror::Error)]
pub enum DesktopError {
    /// The bus could not be reached, or a call on it failed.
    #[error("the D-Bus connection failed ({0}); is cardgated running and the bus reachable?")]
    Bus(#[from] zbus::Error),
    /// `cardgated` refused to take this program as the session's passcode dialog.
    #[error("cardgated did not register this passcode dialog: {0}")]
    Register(String),
    /// The dialog's layout (`login.ui`, `renewal.ui`) lacks an object the code needs: a
    /// build that shipped mismatched files.
    #[error("the dialog's layout has no object `{0}`; reinstall cardgate-desktop")]
    Ui(&'static str),
    /// The tokio runtime for the bus could not start.
    #[error("cannot start the bus thread: {0}")]
    Runtime(std::io::Error),
}
