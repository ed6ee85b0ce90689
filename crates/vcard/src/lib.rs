//! A virtual PIV card (NIST SP 800-73-4 card application) for the lab: the applet as a state
//! machine over raw APDU bytes, the card file that holds its state between insertions,
//! provisioning of card files from a test CA, and a vpcd client that puts a card into a
//! `pcscd` reader slot.

pub mod applet;
pub mod card_file;
pub mod provision;
pub mod vpcd;

/// What a reader slot needs from a card: power control and APDU exchange.
///
/// The vpcd client drives any `Card`, so tests can put a probe card or the PIV applet behind
/// the same real PC/SC path.
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
