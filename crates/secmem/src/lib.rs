//! Memory hygiene for every program that handles a passcode, an unlock code or a one-time
//! code (`cardgated`, `cardgate`, `cardgate-desktop`, the PAM module).
//!
//! Zeroizing types clear the buffers a program owns, but a secret is also copied into
//! buffers nobody here owns: a D-Bus message buffer, a deserialised `String` before it became
//! a `Zeroizing`, the old block a growing `Vec` left behind, a TLS record. Three rooms:
//!
//! - [`alloc`]: [`ZeroOnFree`], the global allocator of every program that links this crate:
//!   each block is cleared when it is freed (and when a reallocation moves it), so whatever
//!   held a secret holds zeros once it is gone, whoever allocated it.
//! - [`locked`]: [`LockedBytes`] (and [`LockedString`] for text), a buffer on pages of its own that are locked out of swap
//!   (`mlock`) and out of core dumps (`MADV_DONTDUMP`) for the short time a secret lives.
//! - [`stack`]: [`scrub_stack`], for a thread that just finished secret work: the stack
//!   below it (moved copies, a hash's working block) is cleared.
//! - [`process`]: [`forbid_core_dumps`], for the start of `main`: the process is not
//!   dumpable (`PR_SET_DUMPABLE`) and its core size limit is zero.
//!
//! Linking the crate installs the allocator (a `#[global_allocator]` here, so there is one in
//! the whole program and no binary can forget it).
//!
//! This is the one crate besides the PAM module's C shim that uses `unsafe`: an allocator and
//! the `mlock`/`madvise`/`prctl` calls cannot be written without it. Each block says why it
//! is sound.

#![allow(unsafe_code)]

pub mod alloc;
mod error;
pub mod locked;
pub mod process;
pub mod stack;

pub use alloc::ZeroOnFree;
pub use error::SecmemError;
pub use locked::{LockedBytes, LockedString};
pub use process::forbid_core_dumps;
pub use stack::scrub_stack;

/// Turns the zeroing allocator and the stack scrubbing off (`false`) or back on, for this
/// process, so one benchmark run can put their cost beside the plain system allocator
/// (tests/benches/secret_hygiene.rs). Only with the `measure` feature, which no shipped
/// binary enables (`cargo build -p cardgated` and packaging/build-deb build without it).
#[cfg(feature = "measure")]
pub fn set_enabled(on: bool) {
    ZeroOnFree::set_zeroing(on);
    stack::SCRUBBING.store(on, std::sync::atomic::Ordering::SeqCst);
}

/// The allocator of every program that links this crate.
#[global_allocator]
static GLOBAL: ZeroOnFree = ZeroOnFree;
