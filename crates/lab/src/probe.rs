//! A minimal card for testing the lab itself: an ATR, SELECT answered 90 00, everything else
//! "instruction not supported". It proves bytes travel through pcscd without depending on the
//! PIV applet.

use cardgate_vcard::Card;

/// The ATR of a T=1 card with no historical bytes, which pcscd and OpenSC accept.
const PROBE_ATR: [u8; 5] = [0x3B, 0x80, 0x80, 0x01, 0x01];

/// A card that answers SELECT with 90 00 and any other instruction with 6D 00.
#[derive(Debug, Clone)]
pub struct ProbeCard {
    atr: Vec<u8>,
    powered: bool,
}

impl ProbeCard {
    /// A probe card with the default ATR `3B 80 80 01 01`.
    pub fn new() -> Self {
        ProbeCard::with_atr(PROBE_ATR.to_vec())
    }

    /// A probe card with its own ATR, so a test can tell two readers' cards apart.
    pub fn with_atr(atr: Vec<u8>) -> Self {
        ProbeCard {
            atr,
            powered: false,
        }
    }

    /// Whether the reader last powered the card on (not off).
    pub fn is_powered(&self) -> bool {
        self.powered
    }
}

impl Default for ProbeCard {
    fn default() -> Self {
        ProbeCard::new()
    }
}

impl Card for ProbeCard {
    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }

    fn power_on(&mut self) {
        self.powered = true;
    }

    fn power_off(&mut self) {
        self.powered = false;
    }

    fn reset(&mut self) {
        self.powered = true;
    }

    fn transmit(&mut self, command: &[u8]) -> Vec<u8> {
        match command {
            [_, 0xA4, ..] => vec![0x90, 0x00],
            [_, _, _, _, ..] => vec![0x6D, 0x00],
            // Shorter than a header: wrong length.
            _ => vec![0x67, 0x00],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_select_and_refuses_other_instructions() {
        let mut card = ProbeCard::new();
        assert_eq!(
            card.transmit(&[0x00, 0xA4, 0x04, 0x00, 0x01, 0xA0]),
            vec![0x90, 0x00]
        );
        assert_eq!(card.transmit(&[0x00, 0xCA, 0x00, 0x00]), vec![0x6D, 0x00]);
        assert_eq!(card.transmit(&[0x00]), vec![0x67, 0x00]);
        assert_eq!(card.atr(), PROBE_ATR.to_vec());
    }
}
