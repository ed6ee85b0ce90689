//! `pam_cardgate.so`: workstation login with the smartcard and its passcode, verified by
//! `cardgated` over D-Bus (issue 7; `docs/deployment.md`).
//!
//! ```text
//! auth     required  pam_cardgate.so map=/etc/cardgate/pam-users
//! account  required  pam_cardgate.so map=/etc/cardgate/pam-users
//! session  optional  pam_cardgate.so
//! ```
//!
//! - [`options`]: the module arguments of the PAM line.
//! - [`mapping`]: which card holders may log in to which accounts.
//! - [`module`]: what each PAM stack does, in safe Rust.
//! - [`client`]: the agent over D-Bus (`cardgate_ipc`'s proxies).
//! - `ffi`: the `pam_sm_*` entry points and libpam calls; the only `unsafe` code.

// The zeroing allocator for what this module allocates (cardgate-secmem installs it).
use cardgate_secmem as _;

pub mod client;
pub mod error;
mod ffi;
pub mod mapping;
pub mod module;
pub mod options;

pub use error::PamError;
