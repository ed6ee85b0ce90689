//! The transport a [`crate::PivClient`] talks through: [`CardChannel`] moves one APDU's bytes
//! to the card and back, nothing more. The reader crate implements it over a PC/SC
//! transaction; tests implement it over the in-process virtual card. Command chaining and
//! GET RESPONSE happen above it, in `cardgate_apdu::transceive`.

use cardgate_apdu::Transmit;

use crate::error::ChannelError;

/// One card in one reader, seen as a byte pipe.
pub trait CardChannel {
    /// Sends one raw command APDU and returns the raw response (data, SW1, SW2).
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError>;

    /// Whether the reader and card carry extended-length APDUs, so long commands and answers
    /// go in one exchange instead of chains and GET RESPONSE rounds. Off unless known.
    fn supports_extended_apdus(&self) -> bool {
        false
    }
}

impl<C: CardChannel + ?Sized> CardChannel for &mut C {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        (**self).transmit(command)
    }

    fn supports_extended_apdus(&self) -> bool {
        (**self).supports_extended_apdus()
    }
}

impl<C: CardChannel + ?Sized> CardChannel for Box<C> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        (**self).transmit(command)
    }

    fn supports_extended_apdus(&self) -> bool {
        (**self).supports_extended_apdus()
    }
}

/// Adapts a [`CardChannel`] to the APDU crate's [`Transmit`].
pub(crate) struct Transport<'a, C: ?Sized>(pub(crate) &'a mut C);

impl<C: CardChannel + ?Sized> Transmit for Transport<'_, C> {
    type Error = ChannelError;

    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.0.transmit(command)
    }
}
