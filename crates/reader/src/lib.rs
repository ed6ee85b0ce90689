//! Reader backends for cardgate: the PC/SC backend through pcscd and, with the `virtual`
//! feature (test equipment: the demo and tests enable it, production builds never do), an
//! in-process virtual backend holding `cardgate_icc::Card`s, behind one object-safe trait
//! ([`ReaderBackend`]) so the daemon, the demo and unit tests run the same code above it.
//!
//! - **Events without polling**: [`ReaderBackend::monitor`] runs one thread that blocks in
//!   `SCardGetStatusChange` (reader states plus the PnP notification reader) and delivers
//!   [`ReaderEvent`]s with a monotonic timestamp to an [`EventSink`]; a brief removal and
//!   reinsertion is found through the reader's event counter; [`MonitorHandle::shutdown`]
//!   cancels the wait with `SCardCancel` and joins.
//! - **pcscd restarts**: the monitor re-establishes its context with backoff, reports
//!   [`ReaderEventKind::ServiceLost`] / [`ReaderEventKind::ServiceRestored`] and its
//!   [`MonitorHealth`], and reconciles cards.
//! - **Shared mode, short transactions**: [`CardConnection::transaction`] returns a guard
//!   implementing [`cardgate_apdu::Transmit`]; no other program can interleave APDUs while
//!   it lives.
//! - **PIN pads**: [`ReaderFeatures`] from PC/SC part 10, models recognised by USB ids with a
//!   quirk table, and [`CardTransaction::verify_pin_on_pad`] and
//!   [`CardTransaction::modify_pin_on_pad`] so the passcode (and the new one, or the unlock
//!   code) is keyed on the reader and never passes through the host.
//! - **Ending a card's security state**: [`CardConnection::disconnect_resetting`]
//!   (`SCARD_RESET_CARD`) for a card that refuses to forget a verified passcode.

#![forbid(unsafe_code)]

mod backend;
mod error;
mod event;
pub mod part10;
mod pcsc_backend;
#[cfg(feature = "virtual")]
mod virtual_backend;

pub use backend::{CardConnection, CardTransaction, MonitorHandle, ReaderBackend};
/// The card trait the virtual backend's readers hold (with the `virtual` feature).
#[cfg(feature = "virtual")]
pub use cardgate_icc::Card;
pub use error::ReaderError;
pub use event::{EventSink, MonitorHealth, ReaderEvent, ReaderEventKind, ReaderName};
pub use part10::{
    PadPrompts, Part10Error, PinModifyRequest, PinPad, PinVerifyRequest, PivModify, ReaderFeatures,
    ReaderModel, TlvProperties,
};
pub use pcsc_backend::{PcscBackend, PcscConnection};
#[cfg(feature = "virtual")]
pub use virtual_backend::{PadEntry, VirtualBackend, VirtualReaderModel};
