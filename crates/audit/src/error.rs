//! The crate's one error type, [`AuditError`], and the classification of I/O failures that
//! separates a full disk (gated actions must be refused until space is freed) from every other
//! write failure.

use std::io;
use std::path::PathBuf;

use crate::verify::ChainBreak;

/// Why the audit trail could not record, open or read an entry.
///
/// Every variant returned by [`crate::AuditLog::append`] means the entry was **not**
/// recorded, so the action it describes must not be acknowledged: the daemon fails closed.
/// [`AuditError::DiskFull`] is its own variant so the refusal can say why ("the audit disk is
/// full") and an operator knows to free space rather than chase a hardware fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The file system holding the audit log is out of space or over quota (ENOSPC, EDQUOT,
    /// EFBIG). Nothing was recorded; the partial write, if any, was rolled back. Appends succeed
    /// again once space is freed.
    #[error(
        "the audit disk is full ({op} {path}): gated actions are refused until space is freed: {source}"
    )]
    DiskFull {
        /// The file being written.
        path: PathBuf,
        /// What the log was doing: "write", "sync", "open", ...
        op: &'static str,
        /// The operating system's error, kept for the support bundle.
        #[source]
        source: io::Error,
    },

    /// Any other I/O failure (permission denied, EIO, missing directory). For appends, nothing
    /// was acknowledged.
    #[error("audit log {path}: {op} failed: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the log was doing: "open", "read", "write", "sync", "truncate", ...
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The log's last entries do not verify, so the agent cannot continue the chain without
    /// hiding the damage. An operator runs `cardgate audit verify`, keeps the damaged file as
    /// evidence and starts a new one; until then gated actions are refused.
    #[error("audit log {path} is damaged at {at}; keep it as evidence and start a new log")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// The first broken place, as `verify` reports it.
        at: ChainBreak,
    },

    /// An earlier append failed after touching the file and the rollback failed too, so the
    /// file's end is in an unknown state. Reopening the log (restarting the agent) repairs a torn
    /// end; until then every append is refused.
    #[error(
        "audit log {path} is in an unknown state after an earlier write failure; restart the agent to reopen it"
    )]
    Poisoned {
        /// The file.
        path: PathBuf,
    },

    /// The entry would be longer than [`crate::MAX_LINE`] bytes (a very long note or fault
    /// message). A bound keeps crash recovery from discarding more than one entry's worth of
    /// bytes; the caller shortens the text.
    #[error("audit entry of {size} bytes is longer than the {max}-byte limit")]
    EntryTooLarge {
        /// The encoded line's length.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// The timestamp cannot be written as RFC 3339 (a year outside 0000-9999): a clock far
    /// off, which the operator should fix.
    #[error("audit timestamp cannot be written as RFC 3339: {0}")]
    InvalidTimestamp(#[source] time::error::Format),

    /// An event could not be encoded as JSON. Not expected with this crate's types; kept
    /// rather than panicking.
    #[error("audit event could not be encoded: {0}")]
    Encode(#[source] serde_json::Error),
}

impl AuditError {
    /// Whether this is [`AuditError::DiskFull`]: the daemon's refusal reason for gated actions
    /// names the full disk.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, AuditError::DiskFull { .. })
    }

    /// Maps an I/O error to [`AuditError::DiskFull`] or [`AuditError::Io`].
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        let path = path.into();
        if is_disk_full(&source) {
            AuditError::DiskFull { path, op, source }
        } else {
            AuditError::Io { path, op, source }
        }
    }
}

/// ENOSPC (28), EDQUOT (122), EFBIG (27) on Linux.
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;
const EFBIG: i32 = 27;

/// Whether an I/O error means "no room to write": out of space, over quota, or the file at its
/// size limit. All three need the same operator action (make room), so all three are
/// [`AuditError::DiskFull`].
pub(crate) fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    ) || matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT | EFBIG))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_edquot_efbig_are_disk_full() {
        for code in [ENOSPC, EDQUOT, EFBIG] {
            let e = AuditError::io("/x", "write", io::Error::from_raw_os_error(code));
            assert!(e.is_disk_full(), "errno {code}: {e}");
            assert!(e.to_string().contains("audit disk is full"), "{e}");
        }
    }

    #[test]
    fn other_errors_are_not_disk_full() {
        for code in [5 /* EIO */, 13 /* EACCES */, 2 /* ENOENT */] {
            let e = AuditError::io("/x", "write", io::Error::from_raw_os_error(code));
            assert!(!e.is_disk_full(), "errno {code}");
            assert!(matches!(e, AuditError::Io { .. }));
        }
        let e = AuditError::io("/x", "write", io::Error::other("boom"));
        assert!(!e.is_disk_full());
    }

    #[test]
    fn source_is_kept() {
        use std::error::Error as _;
        let e = AuditError::io("/x", "sync", io::Error::from_raw_os_error(ENOSPC));
        let source = e.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(source.and_then(io::Error::raw_os_error), Some(ENOSPC));
    }
}
