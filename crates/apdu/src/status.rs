//! Status words (SW1 SW2): the card's two-byte verdict on every command, typed where the agent
//! acts on the meaning and kept exactly as received otherwise.

use std::fmt;

/// A response status word (ISO 7816-4 §5.1.3, SP 800-73-4 §5).
///
/// Every `u16` converts into a `StatusWord` and back unchanged, so nothing the card said is
/// lost on the way to a log, a D-Bus reply or a PAM message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusWord {
    /// 9000: the command succeeded.
    Success,
    /// 61xx: xx more response bytes wait for GET RESPONSE (00 means 256 or more).
    MoreData(u8),
    /// 63Cx: a passcode, unlock code or key check failed; x tries are left (0 = now blocked).
    VerificationFailed {
        /// Tries left before the reference data blocks (0 to 15).
        tries_left: u8,
    },
    /// 6700: Lc or Le is wrong for this command.
    WrongLength,
    /// 6883: the card expected the last command of a chain.
    LastCommandOfChainExpected,
    /// 6884: the card does not support command chaining.
    ChainingNotSupported,
    /// 6982: the command needs a verified passcode or an authenticated management key.
    SecurityStatusNotSatisfied,
    /// 6983: the passcode, unlock code or key is blocked.
    AuthenticationBlocked,
    /// 6985: the card's state does not allow the command (e.g. GENERAL AUTHENTICATE out of
    /// sequence).
    ConditionsNotSatisfied,
    /// 6A80: the command data is wrong (bad TLV, bad passcode format).
    IncorrectData,
    /// 6A81: the card does not support this function.
    FunctionNotSupported,
    /// 6A82: file, data object or application not found.
    NotFound,
    /// 6A84: no room left on the card.
    NotEnoughMemory,
    /// 6A86: P1 or P2 is wrong (e.g. an unknown key reference).
    IncorrectP1P2,
    /// 6A88: the referenced data (key, passcode reference) does not exist.
    ReferenceDataNotFound,
    /// 6B00: P1 or P2 is wrong (older cards).
    WrongP1P2,
    /// 6Cxx: wrong Le; resend with Le = xx (00 means 256).
    WrongLe(u8),
    /// 6D00: the instruction is not supported.
    InstructionNotSupported,
    /// 6E00: the class byte is not supported.
    ClassNotSupported,
    /// 6F00: the card failed without saying why.
    NoPreciseDiagnosis,
    /// 6581: the card's memory failed.
    MemoryFailure,
    /// Any other status word, kept exactly.
    Other(u16),
}

impl StatusWord {
    /// The status word as a number, e.g. `0x63C2`.
    ///
    /// `VerificationFailed` keeps only the low four bits of `tries_left`, the most the status
    /// word can carry.
    pub fn to_u16(self) -> u16 {
        match self {
            StatusWord::Success => 0x9000,
            StatusWord::MoreData(n) => 0x6100 | u16::from(n),
            StatusWord::VerificationFailed { tries_left } => 0x63C0 | u16::from(tries_left & 0x0F),
            StatusWord::WrongLength => 0x6700,
            StatusWord::LastCommandOfChainExpected => 0x6883,
            StatusWord::ChainingNotSupported => 0x6884,
            StatusWord::SecurityStatusNotSatisfied => 0x6982,
            StatusWord::AuthenticationBlocked => 0x6983,
            StatusWord::ConditionsNotSatisfied => 0x6985,
            StatusWord::IncorrectData => 0x6A80,
            StatusWord::FunctionNotSupported => 0x6A81,
            StatusWord::NotFound => 0x6A82,
            StatusWord::NotEnoughMemory => 0x6A84,
            StatusWord::IncorrectP1P2 => 0x6A86,
            StatusWord::ReferenceDataNotFound => 0x6A88,
            StatusWord::WrongP1P2 => 0x6B00,
            StatusWord::WrongLe(n) => 0x6C00 | u16::from(n),
            StatusWord::InstructionNotSupported => 0x6D00,
            StatusWord::ClassNotSupported => 0x6E00,
            StatusWord::NoPreciseDiagnosis => 0x6F00,
            StatusWord::MemoryFailure => 0x6581,
            StatusWord::Other(sw) => sw,
        }
    }

    /// SW1 SW2 as they go on the wire, after the response data.
    pub fn to_bytes(self) -> [u8; 2] {
        self.to_u16().to_be_bytes()
    }

    /// Whether the command succeeded (9000). 61xx is not success yet: data is still waiting.
    pub fn is_success(self) -> bool {
        self == StatusWord::Success
    }
}

impl From<u16> for StatusWord {
    fn from(sw: u16) -> Self {
        let [sw1, sw2] = sw.to_be_bytes();
        match (sw1, sw2) {
            (0x90, 0x00) => StatusWord::Success,
            (0x61, n) => StatusWord::MoreData(n),
            (0x63, 0xC0..=0xCF) => StatusWord::VerificationFailed {
                tries_left: sw2 & 0x0F,
            },
            (0x67, 0x00) => StatusWord::WrongLength,
            (0x68, 0x83) => StatusWord::LastCommandOfChainExpected,
            (0x68, 0x84) => StatusWord::ChainingNotSupported,
            (0x69, 0x82) => StatusWord::SecurityStatusNotSatisfied,
            (0x69, 0x83) => StatusWord::AuthenticationBlocked,
            (0x69, 0x85) => StatusWord::ConditionsNotSatisfied,
            (0x6A, 0x80) => StatusWord::IncorrectData,
            (0x6A, 0x81) => StatusWord::FunctionNotSupported,
            (0x6A, 0x82) => StatusWord::NotFound,
            (0x6A, 0x84) => StatusWord::NotEnoughMemory,
            (0x6A, 0x86) => StatusWord::IncorrectP1P2,
            (0x6A, 0x88) => StatusWord::ReferenceDataNotFound,
            (0x6B, 0x00) => StatusWord::WrongP1P2,
            (0x6C, n) => StatusWord::WrongLe(n),
            (0x6D, 0x00) => StatusWord::InstructionNotSupported,
            (0x6E, 0x00) => StatusWord::ClassNotSupported,
            (0x6F, 0x00) => StatusWord::NoPreciseDiagnosis,
            (0x65, 0x81) => StatusWord::MemoryFailure,
            _ => StatusWord::Other(sw),
        }
    }
}

impl From<(u8, u8)> for StatusWord {
    fn from((sw1, sw2): (u8, u8)) -> Self {
        StatusWord::from(u16::from_be_bytes([sw1, sw2]))
    }
}

impl From<StatusWord> for u16 {
    fn from(sw: StatusWord) -> Self {
        sw.to_u16()
    }
}

impl fmt::Display for StatusWord {
    /// A plain-English meaning followed by the hex code, for logs, diagnostics and messages
    /// a service desk can act on.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.to_u16();
        match *self {
            StatusWord::Success => write!(f, "success ({code:04X})"),
            StatusWord::MoreData(0) => {
                write!(f, "256 or more bytes of response data waiting ({code:04X})")
            }
            StatusWord::MoreData(n) => {
                write!(f, "{n} more bytes of response data waiting ({code:04X})")
            }
            StatusWord::VerificationFailed { tries_left: 0 } => {
                write!(f, "wrong passcode, no tries left: blocked ({code:04X})")
            }
            StatusWord::VerificationFailed { tries_left: 1 } => {
                write!(f, "wrong passcode, 1 try left ({code:04X})")
            }
            StatusWord::VerificationFailed { tries_left } => {
                write!(f, "wrong passcode, {tries_left} tries left ({code:04X})")
            }
            StatusWord::WrongLength => write!(f, "wrong length ({code:04X})"),
            StatusWord::LastCommandOfChainExpected => {
                write!(f, "last command of the chain expected ({code:04X})")
            }
            StatusWord::ChainingNotSupported => {
                write!(f, "command chaining not supported ({code:04X})")
            }
            StatusWord::SecurityStatusNotSatisfied => write!(
                f,
                "security status not satisfied: passcode or authentication needed ({code:04X})"
            ),
            StatusWord::AuthenticationBlocked => {
                write!(f, "passcode or key blocked ({code:04X})")
            }
            StatusWord::ConditionsNotSatisfied => {
                write!(f, "conditions of use not satisfied ({code:04X})")
            }
            StatusWord::IncorrectData => write!(f, "incorrect command data ({code:04X})"),
            StatusWord::FunctionNotSupported => write!(f, "function not supported ({code:04X})"),
            StatusWord::NotFound => write!(f, "file or application not found ({code:04X})"),
            StatusWord::NotEnoughMemory => write!(f, "not enough memory on the card ({code:04X})"),
            StatusWord::IncorrectP1P2 => write!(f, "incorrect parameters P1-P2 ({code:04X})"),
            StatusWord::ReferenceDataNotFound => {
                write!(
                    f,
                    "referenced data (key or passcode) not found ({code:04X})"
                )
            }
            StatusWord::WrongP1P2 => write!(f, "wrong parameters P1-P2 ({code:04X})"),
            StatusWord::WrongLe(0) => write!(f, "wrong Le: resend with Le 256 ({code:04X})"),
            StatusWord::WrongLe(n) => write!(f, "wrong Le: resend with Le {n} ({code:04X})"),
            StatusWord::InstructionNotSupported => {
                write!(f, "instruction not supported ({code:04X})")
            }
            StatusWord::ClassNotSupported => write!(f, "class not supported ({code:04X})"),
            StatusWord::NoPreciseDiagnosis => {
                write!(f, "card error, no precise diagnosis ({code:04X})")
            }
            StatusWord::MemoryFailure => write!(f, "card memory failure ({code:04X})"),
            StatusWord::Other(_) => write!(f, "status {code:04X}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_come_from_their_codes() {
        assert_eq!(StatusWord::from(0x9000), StatusWord::Success);
        assert_eq!(StatusWord::from((0x61, 0x10)), StatusWord::MoreData(0x10));
        assert_eq!(
            StatusWord::from((0x63, 0xC2)),
            StatusWord::VerificationFailed { tries_left: 2 }
        );
        assert_eq!(StatusWord::from(0x6983), StatusWord::AuthenticationBlocked);
        assert_eq!(StatusWord::from(0x6A82), StatusWord::NotFound);
        assert_eq!(StatusWord::from(0x6C08), StatusWord::WrongLe(8));
        assert_eq!(StatusWord::from(0x6581), StatusWord::MemoryFailure);
        // 6300 (no counter) and 63Dx are not "tries left".
        assert_eq!(StatusWord::from(0x6300), StatusWord::Other(0x6300));
        assert_eq!(StatusWord::from(0x63D1), StatusWord::Other(0x63D1));
    }

    #[test]
    fn every_u16_round_trips() {
        for sw in 0..=u16::MAX {
            assert_eq!(StatusWord::from(sw).to_u16(), sw, "{sw:04X}");
        }
    }

    #[test]
    fn bytes_are_big_endian_and_success_is_only_9000() {
        assert_eq!(
            StatusWord::VerificationFailed { tries_left: 1 }.to_bytes(),
            [0x63, 0xC1]
        );
        assert!(StatusWord::Success.is_success());
        assert!(!StatusWord::MoreData(0).is_success());
        assert!(!StatusWord::Other(0x9001).is_success());
    }

    #[test]
    fn display_is_plain_english_with_the_code() {
        assert_eq!(
            StatusWord::from(0x63C2).to_string(),
            "wrong passcode, 2 tries left (63C2)"
        );
        assert_eq!(
            StatusWord::from(0x63C1).to_string(),
            "wrong passcode, 1 try left (63C1)"
        );
        assert_eq!(
            StatusWord::from(0x63C0).to_string(),
            "wrong passcode, no tries left: blocked (63C0)"
        );
        assert_eq!(
            StatusWord::from(0x6A82).to_string(),
            "file or application not found (6A82)"
        );
        assert_eq!(StatusWord::from(0x1234).to_string(), "status 1234");
    }
}
