//! The agent's client for the PIV card application (NIST SP 800-73-4): the card identity
//! login needs, the passcode policy with the three-attempt lockout, signing, key generation
//! and certificate writing. No PC/SC in it: everything goes through a [`CardChannel`], which
//! the reader crate implements over a PC/SC transaction and tests over the virtual card.
//!
//! # The passcode policy
//!
//! - A [`Passcode`] (4 to 8 letters or digits) or [`UnlockCode`] is checked when it is built,
//!   before any card I/O, so a malformed value never costs a try.
//! - Before every attempt the client reads the tries left without spending one, refuses to
//!   send anything to a blocked card, and spends the last try only with
//!   [`FinalTry::Confirmed`].
//! - A value that just failed on a card is not sent to it again ([`PasscodeGuard`] keeps a
//!   salted hash, never the value); no passcode is cached or replayed.
//! - The agent stops at three consecutive failures per card serial, even on cards whose own
//!   counter allows more; the count lives in a [`FailureLedger`] that can survive restarts
//!   ([`JsonFileLedger`]).
//! - After each failure the caller learns the exact tries left
//!   ([`PivError::WrongPasscode`]).
//! - On a PIN-pad reader ([`PivClient::verify_passcode_on_reader`]; for a change or an
//!   unlock [`PivClient::change_passcode_on_reader`] and
//!   [`PivClient::reset_retry_counter_on_reader`]) the same checks run before the reader
//!   takes the values, and the outcome goes to the same ledger; only the no-re-send rule
//!   cannot apply, since the values never reach the host.
//!
//! The `ledger` module ([`JsonFileLedger`]) is the one place this crate touches the
//! filesystem; nothing here opens a reader.

#![forbid(unsafe_code)]

mod channel;
mod client;
mod error;
mod guard;
mod identity;
mod ledger;
mod management;
mod passcode;
mod sign;
mod slot;

pub use channel::CardChannel;
pub use client::PivClient;
pub use error::{ChannelError, Operation, PivError};
pub use guard::{AGENT_MAX_CONSECUTIVE_FAILURES, PasscodeGuard};
pub use identity::{CardIdentity, CardSerial, HolderUuid};
pub use ledger::{FailureLedger, JsonFileLedger, MemoryLedger};
pub use management::ManagementKey;
pub use passcode::{
    FinalTry, Passcode, PasscodeStatus, PasscodeTriesLeft, PinPadEnd, ReaderEntry, UnlockCode,
};
pub use sign::{Sha256Digest, SignInput};
pub use slot::{KeyAlgorithm, PublicKey, Slot};
