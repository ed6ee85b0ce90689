//! The crate's one error type, [`CardError`]: what went wrong reading or using the card in
//! one reader, split the way the daemon's card actor reacts (the card left, pcscd left, the
//! passcode path is the wrong one, the card refused) with every source kept.

use cardgate_certs::CertsError;
use cardgate_piv::PivError;
use cardgate_reader::{ReaderError, ReaderName};

/// Why a card-layer operation failed. No variant carries a passcode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// The insertion this operation was for is over: the card was removed (or the service
    /// restarted) since. Nothing was sent; wait for the next insertion.
    #[error("the card that was in {reader} has been removed since; insert it again")]
    StaleInsertion {
        /// The reader.
        reader: ReaderName,
    },
    /// The card left during the operation (or was reset by another program): whatever it
    /// was doing did not finish, and any verified passcode is gone.
    #[error("the card was removed from {reader} during the operation")]
    CardRemoved {
        /// The reader.
        reader: ReaderName,
        /// What the reader layer reported.
        #[source]
        source: ReaderError,
    },
    /// pcscd is gone; the monitor reports `ServiceRestored` when it is back.
    #[error("the smartcard service is not available")]
    ServiceUnavailable(#[source] ReaderError),
    /// The reader has a usable PIN pad, and the passcode must be keyed there, never typed on
    /// this computer. Nothing was sent.
    #[error("{reader} has its own keypad: enter the passcode on the reader (nothing was sent)")]
    UsePinPad {
        /// The reader with the pad.
        reader: ReaderName,
    },
    /// A PIN-pad entry was asked for on a reader without a usable pad. Nothing was sent.
    #[error("{reader} has no usable keypad: type the passcode on this computer")]
    NoPinPad {
        /// The reader.
        reader: ReaderName,
    },
    /// Any other reader failure (sharing violation, reader unplugged, PC/SC error).
    #[error("reader {reader}: {source}")]
    Reader {
        /// The reader.
        reader: ReaderName,
        /// What the reader layer reported.
        #[source]
        source: ReaderError,
    },
    /// The card answered, and the PIV client or its passcode policy refused: a wrong or
    /// blocked passcode, the final try unconfirmed, a card without PIV, a malformed answer.
    /// The source says which (and carries the card's status word).
    #[error("{source}")]
    Card {
        /// The reader.
        reader: ReaderName,
        /// What the PIV client reported.
        #[source]
        source: PivError,
    },
    /// The card's authentication certificate (or card number) cannot be checked at all.
    #[error("the certificate on the card in {reader} cannot be checked: {source}")]
    Certificate {
        /// The reader.
        reader: ReaderName,
        /// What the checks reported.
        #[source]
        source: CertsError,
    },
}

impl CardError {
    /// Maps a reader failure to the variant the caller acts on.
    pub(crate) fn from_reader(reader: &ReaderName, error: ReaderError) -> CardError {
        match error {
            ReaderError::NoPinPad { reader } => CardError::NoPinPad { reader },
            e if e.is_card_gone() && !matches!(e, ReaderError::ReaderGone { .. }) => {
                CardError::CardRemoved {
                    reader: reader.clone(),
                    source: e,
                }
            }
            e if e.is_service_lost() => CardError::ServiceUnavailable(e),
            e => CardError::Reader {
                reader: reader.clone(),
                source: e,
            },
        }
    }

    /// The PIV client's error, if the card (or the passcode policy) refused.
    pub fn piv(&self) -> Option<&PivError> {
        match self {
            CardError::Card { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the card is gone (removed during the operation, or since the insertion): the
    /// session built on it must end.
    pub fn is_card_gone(&self) -> bool {
        matches!(
            self,
            CardError::CardRemoved { .. } | CardError::StaleInsertion { .. }
        )
    }
}
