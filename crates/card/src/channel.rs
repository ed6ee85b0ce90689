//! The adapter between the reader layer and the PIV client: an open
//! [`CardTransaction`] seen as a [`CardChannel`], with reader errors mapped to the
//! [`ChannelError`] the PIV client reasons about (card gone, reader gone, service gone) and
//! the original [`ReaderError`] kept for the caller.

use cardgate_piv::{CardChannel, ChannelError, PinPadEnd, ReaderEntry};
use cardgate_reader::{
    CardTransaction, PadPrompts, PinModifyRequest, PinVerifyRequest, PivModify, ReaderError,
};

/// PIV key reference of the card application passcode (SP 800-73-4 part 2 §3.2.1).
const KEY_REF_PIN: u8 = 0x80;

/// One PC/SC (or virtual) transaction as the PIV client's byte pipe. Counts the APDUs that
/// reached the card, so every report can say what it cost.
pub struct TransactionChannel<'t> {
    transaction: Box<dyn CardTransaction + 't>,
    apdus: u64,
    last_error: Option<ReaderError>,
}

impl std::fmt::Debug for TransactionChannel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionChannel")
            .field("apdus", &self.apdus)
            .field("last_error", &self.last_error)
            .finish_non_exhaustive()
    }
}

impl<'t> TransactionChannel<'t> {
    /// Wraps an open transaction; nobody else can talk to the card until this is dropped.
    pub fn new(transaction: Box<dyn CardTransaction + 't>) -> Self {
        TransactionChannel {
            transaction,
            apdus: 0,
            last_error: None,
        }
    }

    /// APDUs that reached the card through this channel (a PIN-pad VERIFY included).
    pub fn apdus(&self) -> u64 {
        self.apdus
    }

    /// The reader error behind the last [`ChannelError`], so the caller can report the PC/SC
    /// call that failed rather than the PIV client's summary of it.
    pub fn take_last_error(&mut self) -> Option<ReaderError> {
        self.last_error.take()
    }

    /// Has the reader collect the passcode on its PIN pad and VERIFY it on the card: what
    /// [`cardgate_piv::PivClient::verify_passcode_on_reader`] calls. The reader's own
    /// answers for entry that never reached the card (`64 00` timeout, `64 01` cancel,
    /// `64 03` wrong length) become [`ReaderEntry::EndedAtReader`].
    pub fn verify_on_pin_pad(&mut self) -> Result<ReaderEntry, ChannelError> {
        let request = PinVerifyRequest::piv_verify(KEY_REF_PIN);
        let answer = self
            .transaction
            .verify_pin_on_pad(&request)
            .map_err(|e| self.fail(e))?;
        Ok(self.entry(answer))
    }

    /// Has the reader collect the current value (the passcode, or the unlock code for
    /// [`PivModify::ResetRetryCounter`]) and the new passcode on its PIN pad and send the
    /// command to the card, prompting as `prompts` says (the reader's model): what
    /// [`cardgate_piv::PivClient::change_passcode_on_reader`] and
    /// [`cardgate_piv::PivClient::reset_retry_counter_on_reader`] call. Besides the answers of
    /// [`TransactionChannel::verify_on_pin_pad`], `64 02` (the confirmation differs) becomes
    /// [`ReaderEntry::EndedAtReader`].
    pub fn modify_on_pin_pad(
        &mut self,
        command: PivModify,
        prompts: PadPrompts,
    ) -> Result<ReaderEntry, ChannelError> {
        let request = PinModifyRequest::piv(command, prompts);
        let answer = self
            .transaction
            .modify_pin_on_pad(&request)
            .map_err(|e| self.fail(e))?;
        Ok(self.entry(answer))
    }

    /// The reader's answer to a PIN-pad request as the PIV client sees it.
    fn entry(&mut self, answer: Vec<u8>) -> ReaderEntry {
        match answer.as_slice() {
            [0x64, 0x00] => ReaderEntry::EndedAtReader(PinPadEnd::TimedOut),
            [0x64, 0x01] => ReaderEntry::EndedAtReader(PinPadEnd::Cancelled),
            [0x64, 0x02] => ReaderEntry::EndedAtReader(PinPadEnd::ConfirmationMismatch),
            [0x64, 0x03] => ReaderEntry::EndedAtReader(PinPadEnd::InvalidLength),
            _ => {
                self.apdus += 1;
                ReaderEntry::CardAnswered(answer)
            }
        }
    }

    fn fail(&mut self, error: ReaderError) -> ChannelError {
        let mapped = channel_error(&error);
        self.last_error = Some(error);
        mapped
    }
}

impl CardChannel for TransactionChannel<'_> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        match self.transaction.transmit(command) {
            Ok(response) => {
                self.apdus += 1;
                Ok(response)
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

/// What the PIV client must know about a reader failure: the card is gone (its security
/// state with it), the reader is gone, pcscd is gone, or something else (kept as its source).
pub fn channel_error(error: &ReaderError) -> ChannelError {
    match error {
        ReaderError::ReaderGone { .. } => ChannelError::ReaderGone,
        e if e.is_card_gone() => ChannelError::CardRemoved,
        e if e.is_service_lost() => ChannelError::ServiceGone,
        e => ChannelError::Other(Box::new(ChannelFailure(e.to_string()))),
    }
}

/// A reader failure the PIV client cannot act on, as text; the original [`ReaderError`]
/// stays with the channel ([`TransactionChannel::take_last_error`]).
#[derive(Debug)]
struct ChannelFailure(String);

impl std::fmt::Display for ChannelFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ChannelFailure {}

#[cfg(test)]
mod tests {
    use super::*;
    use cardgate_reader::ReaderName;

    #[test]
    fn card_reader_and_service_failures_stay_distinguishable() {
        let reader = ReaderName::new("R");
        let gone = |e: ReaderError| channel_error(&e);
        assert!(matches!(
            gone(ReaderError::CardRemoved {
                reader: reader.clone()
            }),
            ChannelError::CardRemoved
        ));
        assert!(matches!(
            gone(ReaderError::CardReset {
                reader: reader.clone()
            }),
            ChannelError::CardRemoved
        ));
        assert!(matches!(
            gone(ReaderError::ReaderGone {
                reader: reader.clone()
            }),
            ChannelError::ReaderGone
        ));
        assert!(matches!(
            gone(ReaderError::ServiceUnavailable {
                call: "SCardTransmit",
                source: pcsc::Error::NoService,
            }),
            ChannelError::ServiceGone
        ));
        assert!(matches!(
            gone(ReaderError::SharingViolation { reader }),
            ChannelError::Other(_)
        ));
    }
}
