//! The card as a reader slot sees it: the [`Card`] trait over raw bytes (answer-to-reset,
//! power on and off, warm reset, one APDU in and its response out).
//!
//! It lives in a crate of its own, with no dependencies, so that the two places that hold
//! cards (the in-process virtual reader of `cardgate-reader`, behind its `virtual` feature,
//! and the vpcd client of `cardgate-vcard`) and the cards themselves (the virtual PIV applet,
//! the lab's probe cards) meet without the reader crate linking the virtual card, its test CA
//! or its cryptography (docs/architecture.md, "Test equipment never ships").

#![forbid(unsafe_code)]

/// What a reader slot needs from a card: power control and APDU exchange.
///
/// The vpcd client and the virtual reader drive any `Card`, so tests can put a probe card or
/// the PIV applet behind the same real PC/SC path or the same in-process reader.
pub trait Card: Send {
    /// The answer-to-reset the reader reports for this card.
    fn atr(&self) -> Vec<u8>;
    /// Power on (vpcd control 1): volatile security state starts clean.
    fn power_on(&mut self);
    /// Power off (vpcd control 0): volatile security state (verified PIN, selected
    /// application, management-key authentication, pending chaining) is lost.
    fn power_off(&mut self);
    /// Warm reset (vpcd control 2): like power off then on.
    fn reset(&mut self);
    /// Process one command APDU (raw bytes as received) and return the raw response APDU
    /// (data followed by SW1 SW2). Never panics on malformed input: answers a status word.
    fn transmit(&mut self, command: &[u8]) -> Vec<u8>;
}
