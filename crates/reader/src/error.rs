//! The crate's one error type. Its variants are the distinctions a caller acts on: the card
//! left (drop the session), the reader left, pcscd is gone (wait for the monitor's
//! `ServiceRestored`), another program holds the card, the reader has no usable PIN pad.

use crate::{Part10Error, ReaderName};

/// Why a reader operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReaderError {
    /// The card was removed while connected (or during a transaction): its security state
    /// (verified PIN) is gone; the session built on it must end.
    #[error("the card in {reader} was removed")]
    CardRemoved {
        /// The reader the card was in.
        reader: ReaderName,
    },
    /// No card is in the reader (connecting to an empty reader).
    #[error("no card in {reader}")]
    NoCard {
        /// The reader that is empty.
        reader: ReaderName,
    },
    /// Another program reset the card: it is still there, but its security state is gone.
    /// Reconnect and authenticate again.
    #[error("the card in {reader} was reset by another program; reconnect")]
    CardReset {
        /// The reader holding the card.
        reader: ReaderName,
    },
    /// The reader is unknown or was unplugged.
    #[error("reader {reader} is not available (unplugged or unknown)")]
    ReaderGone {
        /// The reader's name.
        reader: ReaderName,
    },
    /// pcscd is not running or stopped answering (`SCARD_E_NO_SERVICE`,
    /// `SCARD_E_SERVICE_STOPPED`); the monitor re-establishes its context with backoff and
    /// reports `ServiceRestored` when it is back.
    #[error("the PC/SC service (pcscd) is unavailable ({call}: {source})")]
    ServiceUnavailable {
        /// The PC/SC call (its C name) that found the service gone.
        call: &'static str,
        /// What PC/SC said.
        #[source]
        source: pcsc::Error,
    },
    /// Another program holds the card exclusively (`SCARD_E_SHARING_VIOLATION`).
    #[error("another program holds the card in {reader} exclusively")]
    SharingViolation {
        /// The reader holding the card.
        reader: ReaderName,
    },
    /// The reader has no usable PIN pad (none advertised, or a model known to advertise one
    /// it does not have). The passcode must not be taken on the host instead without the
    /// caller deciding so.
    #[error("reader {reader} has no usable PIN pad")]
    NoPinPad {
        /// The reader asked to verify on its PIN pad.
        reader: ReaderName,
    },
    /// A PIN-pad request that cannot be carried out as asked (e.g. a PIN length range its
    /// block cannot hold).
    #[error("invalid PIN-pad request: {0}")]
    InvalidPinPadRequest(#[source] Part10Error),
    /// A reader answered a part 10 feature request with bytes that do not parse.
    #[error("reader {reader} sent a malformed part 10 answer: {source}")]
    MalformedFeatures {
        /// The reader that answered.
        reader: ReaderName,
        /// What is wrong with the bytes.
        #[source]
        source: Part10Error,
    },
    /// Any other PC/SC failure, with the C call that failed.
    #[error("PC/SC {call} failed{}: {source}", reader.as_ref().map(|r| format!(" on {r}")).unwrap_or_default())]
    Pcsc {
        /// The PC/SC call (its C name).
        call: &'static str,
        /// The reader concerned, if any.
        reader: Option<ReaderName>,
        /// What PC/SC said.
        #[source]
        source: pcsc::Error,
    },
    /// The monitor thread could not be started.
    #[error("could not start the reader monitor thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl ReaderError {
    /// Maps a PC/SC error to the variant a caller acts on.
    pub(crate) fn from_pcsc(
        call: &'static str,
        reader: Option<&ReaderName>,
        e: pcsc::Error,
    ) -> Self {
        use pcsc::Error as E;
        let named = |f: fn(ReaderName) -> ReaderError| reader.map(|r| f(r.clone()));
        let mapped = match e {
            E::RemovedCard => named(|reader| ReaderError::CardRemoved { reader }),
            E::NoSmartcard => named(|reader| ReaderError::NoCard { reader }),
            E::ResetCard => named(|reader| ReaderError::CardReset { reader }),
            E::ReaderUnavailable | E::UnknownReader => {
                named(|reader| ReaderError::ReaderGone { reader })
            }
            E::SharingViolation => named(|reader| ReaderError::SharingViolation { reader }),
            E::NoService | E::ServiceStopped | E::CommError => {
                Some(ReaderError::ServiceUnavailable { call, source: e })
            }
            _ => None,
        };
        mapped.unwrap_or_else(|| ReaderError::Pcsc {
            call,
            reader: reader.cloned(),
            source: e,
        })
    }

    /// Whether this error means pcscd itself is gone (as opposed to a card or reader).
    pub fn is_service_lost(&self) -> bool {
        matches!(self, ReaderError::ServiceUnavailable { .. })
    }

    /// Whether pcscd refused this program outright: pcsc-lite 2.x answers
    /// `SCardEstablishContext` with `SCARD_W_SECURITY_VIOLATION` when polkit says no (1.9.x,
    /// where built with polkit, closes the connection instead, which reads as a lost service).
    pub fn is_access_denied(&self) -> bool {
        matches!(
            self,
            ReaderError::Pcsc {
                source: pcsc::Error::SecurityViolation,
                ..
            }
        )
    }

    /// Whether this error means the card (and with it any verified PIN) is gone.
    pub fn is_card_gone(&self) -> bool {
        matches!(
            self,
            ReaderError::CardRemoved { .. }
                | ReaderError::NoCard { .. }
                | ReaderError::CardReset { .. }
                | ReaderError::ReaderGone { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_security_violation_at_establish_context_is_a_refusal_not_a_lost_service() {
        let e = ReaderError::from_pcsc(
            "SCardEstablishContext",
            None,
            pcsc::Error::SecurityViolation,
        );
        assert!(e.is_access_denied());
        assert!(!e.is_service_lost());
        let lost = ReaderError::from_pcsc("SCardEstablishContext", None, pcsc::Error::NoService);
        assert!(!lost.is_access_denied());
    }

    #[test]
    fn pcsc_errors_map_to_what_a_caller_acts_on() {
        let r = ReaderName::new("R");
        let map = |e| ReaderError::from_pcsc("SCardTransmit", Some(&r), e);
        assert!(matches!(
            map(pcsc::Error::RemovedCard),
            ReaderError::CardRemoved { .. }
        ));
        assert!(matches!(
            map(pcsc::Error::NoSmartcard),
            ReaderError::NoCard { .. }
        ));
        assert!(matches!(
            map(pcsc::Error::ResetCard),
            ReaderError::CardReset { .. }
        ));
        assert!(matches!(
            map(pcsc::Error::UnknownReader),
            ReaderError::ReaderGone { .. }
        ));
        assert!(matches!(
            map(pcsc::Error::ReaderUnavailable),
            ReaderError::ReaderGone { .. }
        ));
        assert!(map(pcsc::Error::NoService).is_service_lost());
        assert!(map(pcsc::Error::ServiceStopped).is_service_lost());
        assert!(map(pcsc::Error::RemovedCard).is_card_gone());
        assert!(!map(pcsc::Error::NoService).is_card_gone());
        assert!(matches!(
            map(pcsc::Error::SharingViolation),
            ReaderError::SharingViolation { .. }
        ));
        let other = map(pcsc::Error::InvalidParameter);
        assert!(matches!(
            other,
            ReaderError::Pcsc {
                call: "SCardTransmit",
                ..
            }
        ));
        assert!(other.to_string().contains("SCardTransmit failed on R"));
    }
}
