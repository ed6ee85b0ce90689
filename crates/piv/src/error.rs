//! The crate's one error type, [`PivError`], the transport's [`ChannelError`], and the mapping
//! from every status word a PIV card answers to the variant a caller acts on.
//!
//! Every card refusal keeps the card's [`StatusWord`], so the daemon can put it in a D-Bus
//! reply or a service-desk report unchanged. No variant carries a passcode, unlock code or
//! key: the shape errors say which rule was broken, never the value.

use std::path::PathBuf;

use cardgate_apdu::{ExchangeError, StatusWord};

use crate::passcode::{PasscodeTriesLeft, PinPadEnd};
use crate::slot::Slot;

/// Why the transport could not carry an APDU. The agent reacts differently to each: a
/// removed card ends the session, a vanished reader drops the reader's actor, a vanished
/// PC/SC service makes the agent reconnect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The card left the reader (or was reset by another application); its state is unknown.
    #[error("the card was removed from the reader")]
    CardRemoved,
    /// The reader itself went away (unplugged, driver gone).
    #[error("the card reader is no longer available")]
    ReaderGone,
    /// The PC/SC service (pcscd) stopped or restarted; the context must be re-established.
    #[error("the smartcard service (pcscd) is not available")]
    ServiceGone,
    /// Anything else the transport reports, kept as its source.
    #[error("the card transport failed: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Which card operation failed: tells the reader of an error what the agent was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// SELECT of the PIV card application.
    Select,
    /// GET DATA of a data object (certificate, CHUID).
    ReadObject,
    /// VERIFY of the passcode, or the status query without data.
    VerifyPasscode,
    /// CHANGE REFERENCE DATA of the passcode.
    ChangePasscode,
    /// RESET RETRY COUNTER with the unlock code.
    ResetRetryCounter,
    /// GET METADATA (a YubiKey extension) of a passcode or key.
    ReadMetadata,
    /// GENERAL AUTHENTICATE with a slot key.
    Sign,
    /// GENERAL AUTHENTICATE with the management key.
    AuthenticateManagementKey,
    /// GENERATE ASYMMETRIC KEY PAIR.
    GenerateKey,
    /// PUT DATA of a certificate.
    WriteCertificate,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Select => "selecting the PIV application",
            Operation::ReadObject => "reading a data object",
            Operation::VerifyPasscode => "checking the passcode",
            Operation::ChangePasscode => "changing the passcode",
            Operation::ResetRetryCounter => "unlocking with the unlock code",
            Operation::ReadMetadata => "reading key or passcode metadata",
            Operation::Sign => "signing",
            Operation::AuthenticateManagementKey => "authenticating the management key",
            Operation::GenerateKey => "generating a key pair",
            Operation::WriteCertificate => "writing a certificate",
        })
    }
}

/// Everything that can go wrong talking to a PIV card, each variant carrying what a caller
/// (the daemon, PAM, the CLI) needs to tell the user or act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PivError {
    /// The passcode breaks the rule (4 to 8 letters or digits); checked before the card is
    /// touched, so it cost no try.
    #[error("the passcode must be 4 to 8 letters or digits; {problem} (no try was used)")]
    InvalidPasscode {
        /// Which part of the rule was broken, never the value.
        problem: &'static str,
    },
    /// The unlock code breaks the rule (exactly 8 letters or digits); checked before the card
    /// is touched.
    #[error("the unlock code must be exactly 8 letters or digits; {problem} (no try was used)")]
    InvalidUnlockCode {
        /// Which part of the rule was broken, never the value.
        problem: &'static str,
    },
    /// A management key of the wrong length for its algorithm.
    #[error("a {algorithm} management key is {expected} bytes; {actual} were given")]
    InvalidManagementKey {
        /// The algorithm asked for.
        algorithm: &'static str,
        /// Its key length.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// The card answered 63Cx: the passcode was wrong and this many tries are left (the
    /// smaller of the card's counter and the agent's three-attempt limit).
    #[error("wrong passcode: {tries_left}")]
    WrongPasscode {
        /// Tries left before the card is locked.
        tries_left: PasscodeTriesLeft,
        /// The card's answer (63Cx).
        status: StatusWord,
    },
    /// The card answered 63Cx to the unlock code.
    #[error("wrong unlock code: {tries_left}")]
    WrongUnlockCode {
        /// Unlock-code tries left.
        tries_left: PasscodeTriesLeft,
        /// The card's answer (63Cx).
        status: StatusWord,
    },
    /// The passcode is locked: by the card (6983, or no tries left), or by the agent after
    /// three consecutive failures on a card whose own counter allows more. Nothing more is
    /// sent to the card; it needs the unlock code (Sponsor, LSA or RA).
    #[error(
        "the card is locked after too many wrong passcodes{}; ask your Sponsor, Local Smartcard \
         Administrator or Registration Authority to unlock it",
        if *by_agent { " (three consecutive failures on this workstation)" } else { "" }
    )]
    CardBlocked {
        /// The agent's own three-attempt limit stopped it (the card's counter may allow more).
        by_agent: bool,
        /// The card's answer, when the card said so.
        status: Option<StatusWord>,
    },
    /// The unlock code itself is blocked: only a new card helps.
    #[error("the unlock code is blocked; the card must be replaced by the Registration Authority")]
    UnlockCodeBlocked {
        /// The card's answer, when the card said so.
        status: Option<StatusWord>,
    },
    /// Exactly one try is left and the caller did not confirm spending it.
    #[error(
        "only one {what} try is left before the card locks: confirm before trying again \
         (nothing was sent to the card)"
    )]
    FinalTryNotConfirmed {
        /// "passcode" or "unlock code".
        what: &'static str,
    },
    /// Passcode entry on the reader's PIN pad ended before anything reached the card
    /// (cancelled, timed out, wrong length): no try was used.
    #[error("{how} (no try was used)")]
    PinPadEntryEnded {
        /// How entry ended.
        how: PinPadEnd,
    },
    /// The value just failed on this card; sending it again would only burn a try.
    #[error(
        "this {what} was just refused by this card, so it was not sent again (no try was used)"
    )]
    RepeatedFailedValue {
        /// "passcode" or "unlock code".
        what: &'static str,
    },
    /// 6982 where the passcode guards the operation: verify the passcode first.
    #[error("{operation}: the passcode has not been verified ({status})")]
    PasscodeNotVerified {
        /// What was being done.
        operation: Operation,
        /// The card's answer.
        status: StatusWord,
    },
    /// 6982 where the management key guards the operation (key generation, writing objects).
    #[error("{operation}: the management key has not been authenticated ({status})")]
    ManagementKeyNotAuthenticated {
        /// What was being done.
        operation: Operation,
        /// The card's answer.
        status: StatusWord,
    },
    /// The card refused the management key, or failed to prove it holds the same key.
    #[error("the management key was rejected: {reason}")]
    ManagementKeyRejected {
        /// Which side failed.
        reason: &'static str,
        /// The card's answer, when the card refused.
        status: Option<StatusWord>,
    },
    /// SELECT answered 6A82 (or similar): the card has no PIV application.
    #[error("this card has no PIV application ({status}); it is not a card cardgate can use")]
    NotPivCard {
        /// The card's answer.
        status: StatusWord,
    },
    /// 6A82 for a data object: the card does not hold it.
    #[error("the card holds no data object {object:06X} ({status})")]
    ObjectNotFound {
        /// The object's tag (e.g. 0x5FC105).
        object: u32,
        /// The card's answer.
        status: StatusWord,
    },
    /// 6A88: the slot holds no key (or the referenced passcode does not exist).
    #[error("{operation}: the card has no such key or reference ({status})")]
    ReferenceNotFound {
        /// What was being done.
        operation: Operation,
        /// The card's answer.
        status: StatusWord,
    },
    /// 6D00, 6E00, 6A81: the card does not offer the command.
    #[error("{operation}: the card does not support it ({status})")]
    NotSupported {
        /// What was being done.
        operation: Operation,
        /// The card's answer.
        status: StatusWord,
    },
    /// 6A80, 6A86, 6B00, 6700, 6883, 6884: the card refused the command's form (for a
    /// signature: often a key of another algorithm than the one asked for).
    #[error("{operation}: the card refused the command ({status})")]
    CommandRefused {
        /// What was being done.
        operation: Operation,
        /// The card's answer.
        status: StatusWord,
    },
    /// 6985: the card is not in a state to do it now.
    #[error("{operation}: the card's conditions of use are not satisfied ({status})")]
    ConditionsNotSatisfied {
        /// What was being done.
        operation: Operation,
        /// The card's answer.
        status: StatusWord,
    },
    /// 6581, 6A84: the card's memory failed or is full; the card may need replacing.
    #[error("{operation}: the card's memory failed or is full ({status}); the card may be faulty")]
    CardMemory {
        /// What was being done.
        operation: Operation,
        /// The card's answer.
        status: StatusWord,
    },
    /// Any other status word (6F00 included): the card failed in a way it did not explain.
    #[error("{operation}: the card answered {status}")]
    CardError {
        /// What was being done.
        operation: Operation,
        /// The card's answer.
        status: StatusWord,
    },
    /// The transport failed (card removed, reader or service gone).
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The card's answer is not what the command's specification says it is.
    #[error("{operation}: the card's answer is malformed: {reason}")]
    MalformedResponse {
        /// What was being done.
        operation: Operation,
        /// What was wrong with it.
        reason: String,
    },
    /// The certificate object is compressed (CertInfo 71 bit 0), which the agent does not
    /// inflate: a gzip bomb on a hostile card costs nothing to refuse.
    #[error("the {slot} certificate on the card is compressed, which cardgate does not accept")]
    CompressedCertificate {
        /// The slot.
        slot: Slot,
    },
    /// The certificate does not parse as X.509, or lacks what the identity needs.
    #[error("the {slot} certificate on the card is not usable: {reason}")]
    InvalidCertificate {
        /// The slot.
        slot: Slot,
        /// What is wrong.
        reason: String,
    },
    /// A holder UUID that is not exactly 12 digits.
    #[error("holder UUID is not valid: it must be exactly 12 digits ({problem})")]
    InvalidHolderUuid {
        /// What is wrong.
        problem: String,
    },
    /// A card serial that is not 1 to 32 letters or digits, or a CHUID without one.
    #[error("card serial number is not valid: {problem}")]
    InvalidCardSerial {
        /// What is wrong.
        problem: String,
    },
    /// Caller input the operation cannot use (e.g. an empty certificate).
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was wrong.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The exchange itself broke a limit (answer too long, endless GET RESPONSE).
    #[error("{operation}: {reason}")]
    ExchangeFailed {
        /// What was being done.
        operation: Operation,
        /// What went wrong.
        reason: String,
    },
    /// The failure ledger could not be read or written. Passcode attempts stop: without the
    /// ledger the agent could not keep its three-attempt promise.
    #[error("the passcode failure ledger {} cannot be used: {reason}", path.display())]
    Ledger {
        /// The ledger file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
        /// The operating system's or parser's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The operating system's random source failed.
    #[error("the random number generator failed")]
    Random,
}

impl PivError {
    /// The card's status word behind this error, if the card answered one.
    pub fn status(&self) -> Option<StatusWord> {
        match self {
            PivError::WrongPasscode { status, .. }
            | PivError::WrongUnlockCode { status, .. }
            | PivError::PasscodeNotVerified { status, .. }
            | PivError::ManagementKeyNotAuthenticated { status, .. }
            | PivError::NotPivCard { status }
            | PivError::ObjectNotFound { status, .. }
            | PivError::ReferenceNotFound { status, .. }
            | PivError::NotSupported { status, .. }
            | PivError::CommandRefused { status, .. }
            | PivError::ConditionsNotSatisfied { status, .. }
            | PivError::CardMemory { status, .. }
            | PivError::CardError { status, .. } => Some(*status),
            PivError::CardBlocked { status, .. }
            | PivError::UnlockCodeBlocked { status }
            | PivError::ManagementKeyRejected { status, .. } => *status,
            _ => None,
        }
    }
}

/// The error for a status word that is not success, by what was being done. Passcode
/// outcomes (63Cx, 6983 on VERIFY) are handled by the passcode code before this is reached;
/// here they map to their generic meaning.
pub(crate) fn status_error(operation: Operation, status: StatusWord) -> PivError {
    use StatusWord as Sw;
    match status {
        Sw::SecurityStatusNotSatisfied => match operation {
            Operation::GenerateKey | Operation::WriteCertificate => {
                PivError::ManagementKeyNotAuthenticated { operation, status }
            }
            Operation::AuthenticateManagementKey => PivError::ManagementKeyRejected {
                reason: "the card did not accept the key",
                status: Some(status),
            },
            _ => PivError::PasscodeNotVerified { operation, status },
        },
        Sw::AuthenticationBlocked => match operation {
            Operation::ResetRetryCounter => PivError::UnlockCodeBlocked {
                status: Some(status),
            },
            Operation::AuthenticateManagementKey => PivError::ManagementKeyRejected {
                reason: "the card's management key is blocked",
                status: Some(status),
            },
            _ => PivError::CardBlocked {
                by_agent: false,
                status: Some(status),
            },
        },
        Sw::VerificationFailed { tries_left } => match operation {
            Operation::ResetRetryCounter => PivError::WrongUnlockCode {
                tries_left: PasscodeTriesLeft::new(tries_left),
                status,
            },
            _ => PivError::WrongPasscode {
                tries_left: PasscodeTriesLeft::new(tries_left),
                status,
            },
        },
        Sw::NotFound if operation == Operation::Select => PivError::NotPivCard { status },
        Sw::ReferenceDataNotFound | Sw::NotFound => {
            PivError::ReferenceNotFound { operation, status }
        }
        Sw::InstructionNotSupported | Sw::ClassNotSupported | Sw::FunctionNotSupported => {
            PivError::NotSupported { operation, status }
        }
        Sw::IncorrectData
        | Sw::IncorrectP1P2
        | Sw::WrongP1P2
        | Sw::WrongLength
        | Sw::WrongLe(_)
        | Sw::LastCommandOfChainExpected
        | Sw::ChainingNotSupported => PivError::CommandRefused { operation, status },
        Sw::ConditionsNotSatisfied => PivError::ConditionsNotSatisfied { operation, status },
        Sw::MemoryFailure | Sw::NotEnoughMemory => PivError::CardMemory { operation, status },
        _ => PivError::CardError { operation, status },
    }
}

/// The error for an exchange that produced no response.
pub(crate) fn exchange_error(operation: Operation, error: ExchangeError<ChannelError>) -> PivError {
    match error {
        ExchangeError::Transport(e) => PivError::Channel(e),
        ExchangeError::Malformed(e) => PivError::MalformedResponse {
            operation,
            reason: e.to_string(),
        },
        other => PivError::ExchangeFailed {
            operation,
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_a_card_answers_keeps_its_status_word() {
        for sw in [
            0x6982u16, 0x6983, 0x63C2, 0x6A82, 0x6A80, 0x6A86, 0x6A88, 0x6B00, 0x6D00, 0x6E00,
            0x6A81, 0x6581, 0x6A84, 0x6700, 0x6985, 0x6F00, 0x6883, 0x6884, 0x6C10, 0x1234,
        ] {
            for operation in [
                Operation::Select,
                Operation::ReadObject,
                Operation::VerifyPasscode,
                Operation::Sign,
                Operation::GenerateKey,
                Operation::ResetRetryCounter,
                Operation::AuthenticateManagementKey,
            ] {
                let e = status_error(operation, StatusWord::from(sw));
                assert_eq!(
                    e.status().map(StatusWord::to_u16),
                    Some(sw),
                    "{operation:?} {sw:04X} -> {e}"
                );
                assert!(
                    e.to_string().contains(&format!("{sw:04X}"))
                        || matches!(
                            e,
                            PivError::WrongPasscode { .. }
                                | PivError::WrongUnlockCode { .. }
                                | PivError::CardBlocked { .. }
                                | PivError::UnlockCodeBlocked { .. }
                                | PivError::ManagementKeyRejected { .. }
                        ),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn the_common_refusals_map_to_what_a_user_acts_on() {
        let sw = StatusWord::from;
        assert!(matches!(
            status_error(Operation::Sign, sw(0x6982)),
            PivError::PasscodeNotVerified { .. }
        ));
        assert!(matches!(
            status_error(Operation::GenerateKey, sw(0x6982)),
            PivError::ManagementKeyNotAuthenticated { .. }
        ));
        assert!(matches!(
            status_error(Operation::VerifyPasscode, sw(0x6983)),
            PivError::CardBlocked {
                by_agent: false,
                ..
            }
        ));
        assert!(matches!(
            status_error(Operation::ResetRetryCounter, sw(0x6983)),
            PivError::UnlockCodeBlocked { .. }
        ));
        assert!(matches!(
            status_error(Operation::Select, sw(0x6A82)),
            PivError::NotPivCard { .. }
        ));
        assert!(matches!(
            status_error(Operation::Sign, sw(0x6A88)),
            PivError::ReferenceNotFound { .. }
        ));
        assert!(matches!(
            status_error(Operation::ReadObject, sw(0x6D00)),
            PivError::NotSupported { .. }
        ));
        assert!(matches!(
            status_error(Operation::WriteCertificate, sw(0x6581)),
            PivError::CardMemory { .. }
        ));
        match status_error(Operation::VerifyPasscode, sw(0x63C1)) {
            PivError::WrongPasscode { tries_left, status } => {
                assert_eq!(tries_left.get(), 1);
                assert_eq!(status.to_u16(), 0x63C1);
            }
            other => panic!("{other}"),
        }
    }
}
