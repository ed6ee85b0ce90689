//! The card layer: what the agent knows about the card in a reader, composed from the reader
//! backend (`cardgate-reader`), the PIV client with its passcode policy (`cardgate-piv`) and
//! the certificate checks (`cardgate-certs`). No async runtime: the daemon's per-reader card
//! actor calls it from its own thread.
//!
//! - [`TransactionChannel`]: a reader transaction as the PIV client's [`cardgate_piv::CardChannel`],
//!   with card-gone, reader-gone and service-gone kept apart.
//! - [`CardInspector`]: turns monitor events into [`Insertion`]s, reads only what login needs
//!   in one short shared-mode transaction (slow logins come from reading every certificate,
//!   OpenSC#377), checks the certificate, reads the passcode's status without spending a
//!   try, and returns a [`CardReport`] with the [`HolderWarning`]s to show at every insertion.
//! - Passcode entry on the reader's PIN pad when it has a usable one (the passcode never
//!   passes through the host), otherwise from the host, both under the same policy.
//! - An identity cache keyed by card serial and certificate hash, bound to the insertion.

#![forbid(unsafe_code)]

mod channel;
mod error;
mod inspector;
mod warnings;

pub use channel::{TransactionChannel, channel_error};
pub use error::CardError;
pub use inspector::{CardInspector, CardReport, Insertion, PasscodeSource, TrustConfig};
pub use warnings::{HolderWarning, WarningKind, holder_warnings};
