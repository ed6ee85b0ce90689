//! The crate's one error type.

/// What went wrong hardening the process. Locking a buffer never fails the caller: a
/// secret is better handled unlocked than refused (see [`crate::LockedBytes::is_locked`]).
#[derive(Debug, thiserror::Error)]
pub enum SecmemError {
    /// A system call the hardening needs was refused.
    #[error("{call} failed: {source}; the program would run without the protection it names")]
    System {
        /// The call, with what it was for.
        call: &'static str,
        /// The kernel's answer.
        source: std::io::Error,
    },
}
