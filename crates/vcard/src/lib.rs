//! A virtual PIV card (NIST SP 800-73-4 card application) for the lab: the applet as a state
//! machine over raw APDU bytes, the card file that holds its state between insertions,
//! provisioning of card files from a test CA, and a vpcd client that puts a card into a
//! `pcscd` reader slot.

#![forbid(unsafe_code)]

pub mod applet;
pub mod card_file;
pub mod provision;
pub mod vpcd;

/// The card trait the applet implements and the vpcd client serves; it lives in
/// `cardgate-icc` so the reader crate can hold cards without linking this one.
pub use cardgate_icc::Card;
