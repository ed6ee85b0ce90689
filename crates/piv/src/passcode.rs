//! The secrets a holder types and the counters that guard them: [`Passcode`] and
//! [`UnlockCode`] (shapes checked on construction, before any card I/O, so a malformed value
//! never costs a try), [`PasscodeTriesLeft`], [`PasscodeStatus`] and [`FinalTry`].
//!
//! Secret values live on locked pages of their own ([`LockedBytes`]: out of swap and core
//! dumps, cleared when dropped), never appear in `Debug` or in errors, and are only borrowed
//! by the client: nothing here caches or replays them. The `String` a value arrives in is
//! cleared as soon as it is copied there.

use std::fmt;

use cardgate_secmem::LockedBytes;
use zeroize::Zeroizing;

use crate::error::PivError;

/// The length of the padded block VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER carry.
pub(crate) const PADDED_LEN: usize = 8;

/// A card holder passcode: 4 to 8 ASCII letters or digits (the NHS rule).
///
/// The rule is checked when the value is built, so a mistyped passcode is refused before the
/// card sees it and never spends one of the three tries.
#[derive(Clone)]
pub struct Passcode(LockedBytes);

impl Passcode {
    /// Checks the shape; the error names the broken rule, never the value. `value` is
    /// cleared either way.
    pub fn new(value: String) -> Result<Passcode, PivError> {
        let value = Zeroizing::new(value);
        let len = value.chars().count();
        if len < 4 {
            return Err(PivError::InvalidPasscode {
                problem: "the one given is shorter than 4 characters",
            });
        }
        if len > 8 {
            return Err(PivError::InvalidPasscode {
                problem: "the one given is longer than 8 characters",
            });
        }
        if !value.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(PivError::InvalidPasscode {
                problem: "the one given has characters other than letters and digits",
            });
        }
        Ok(Passcode(LockedBytes::from_slice(value.as_bytes())))
    }

    /// The value padded with `FF` to 8 bytes, as the card expects it.
    pub(crate) fn padded(&self) -> Zeroizing<[u8; PADDED_LEN]> {
        pad(self.0.as_slice())
    }

    /// The value's bytes, for the salted hash of a failed attempt.
    pub(crate) fn expose(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl fmt::Debug for Passcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passcode(<redacted>)")
    }
}

/// The unlock code (PIV PUK) a Sponsor, LSA or RA uses to reset the passcode counter:
/// exactly 8 ASCII letters or digits (SP 800-73-4 makes the PUK 8 bytes).
#[derive(Clone)]
pub struct UnlockCode(LockedBytes);

impl UnlockCode {
    /// Checks the shape; the error names the broken rule, never the value. `value` is
    /// cleared either way.
    pub fn new(value: String) -> Result<UnlockCode, PivError> {
        let value = Zeroizing::new(value);
        let len = value.chars().count();
        if len != 8 {
            return Err(PivError::InvalidUnlockCode {
                problem: if len < 8 {
                    "the one given is shorter than 8 characters"
                } else {
                    "the one given is longer than 8 characters"
                },
            });
        }
        if !value.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(PivError::InvalidUnlockCode {
                problem: "the one given has characters other than letters and digits",
            });
        }
        Ok(UnlockCode(LockedBytes::from_slice(value.as_bytes())))
    }

    /// The value as the card expects it (8 bytes, no padding needed).
    pub(crate) fn padded(&self) -> Zeroizing<[u8; PADDED_LEN]> {
        pad(self.0.as_slice())
    }

    /// The value's bytes, for the salted hash of a failed attempt.
    pub(crate) fn expose(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl fmt::Debug for UnlockCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnlockCode(<redacted>)")
    }
}

/// `value` padded with `FF` to 8 bytes. Callers checked the length (at most 8).
fn pad(value: &[u8]) -> Zeroizing<[u8; PADDED_LEN]> {
    let mut block = Zeroizing::new([0xFF; PADDED_LEN]);
    let len = value.len().min(PADDED_LEN);
    block[..len].copy_from_slice(&value[..len]);
    block
}

/// How many tries are left before a passcode (or unlock code) locks: what the user is told
/// after each failure and before the final try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PasscodeTriesLeft(u8);

impl PasscodeTriesLeft {
    /// A count as a card or the agent reports it.
    pub fn new(tries: u8) -> Self {
        PasscodeTriesLeft(tries)
    }

    /// The count.
    pub fn get(self) -> u8 {
        self.0
    }

    /// Whether the next wrong value locks the card: the try that needs [`FinalTry::Confirmed`].
    pub fn is_final(self) -> bool {
        self.0 == 1
    }

    /// Whether no try is left: the card is locked.
    pub fn is_exhausted(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for PasscodeTriesLeft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("no tries left, the card is now locked"),
            1 => f.write_str("1 try left"),
            n => write!(f, "{n} tries left"),
        }
    }
}

/// What the card says about its passcode without spending a try (VERIFY without data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasscodeStatus {
    /// The passcode was verified in this card session.
    Verified,
    /// Not verified; this many tries left (already capped by the agent's three-attempt
    /// limit when read through [`crate::PivClient::passcode_status`]).
    TriesLeft(PasscodeTriesLeft),
    /// Locked: no try left on the card, or three consecutive failures on this agent.
    Blocked,
}

/// What a reader that collects the passcode on its own PIN pad reports back: the passcode
/// never passes through the host, so the client sees only the card's answer, or that entry
/// ended at the reader before anything reached the card.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReaderEntry {
    /// The reader sent VERIFY with the keyed passcode; this is the card's raw answer (data,
    /// SW1, SW2).
    CardAnswered(Vec<u8>),
    /// Entry ended at the reader and no VERIFY reached the card: no try was spent.
    EndedAtReader(PinPadEnd),
}

/// How passcode entry on a PIN pad ended without reaching the card (PC/SC part 10 reader
/// answers `64 00`, `64 01`, `64 02`, `64 03`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PinPadEnd {
    /// The holder pressed Cancel.
    Cancelled,
    /// Nobody keyed a passcode in time.
    TimedOut,
    /// The keyed passcode had a length the reader was told not to accept (4 to 8).
    InvalidLength,
    /// In a change, the new passcode and its confirmation keyed on the pad differ.
    ConfirmationMismatch,
}

impl fmt::Display for PinPadEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PinPadEnd::Cancelled => "passcode entry was cancelled on the reader's keypad",
            PinPadEnd::TimedOut => "no passcode was entered on the reader's keypad in time",
            PinPadEnd::InvalidLength => {
                "the passcode keyed on the reader must be 4 to 8 characters"
            }
            PinPadEnd::ConfirmationMismatch => {
                "the new passcode and its confirmation keyed on the reader differ"
            }
        })
    }
}

/// Whether the caller agreed to spend the last try. The last try is precious (a locked card
/// means a trip to the Sponsor or RA), so spending it is an explicit choice the user makes,
/// never a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FinalTry {
    /// Refuse to send if only one try is left.
    #[default]
    NotConfirmed,
    /// The user was told one try is left and chose to go on.
    Confirmed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passcode_follows_the_nhs_rule_and_never_echoes_the_value() {
        for good in ["1234", "abcd", "Ab3D9zX1", "12345678"] {
            assert!(Passcode::new(good.into()).is_ok(), "{good} refused");
        }
        for bad in [
            "",
            "123",
            "123456789",
            "12 34",
            "12-34",
            "pässe",
            "１２３４",
            "1234\n",
        ] {
            let e = Passcode::new(bad.into()).expect_err(bad);
            assert!(matches!(e, PivError::InvalidPasscode { .. }), "{e}");
            if !bad.is_empty() {
                assert!(!e.to_string().contains(bad), "{e}");
                assert!(!format!("{e:?}").contains(bad), "{e:?}");
            }
            assert!(e.to_string().contains("4 to 8 letters or digits"), "{e}");
        }
    }

    #[test]
    fn unlock_code_is_exactly_eight_letters_or_digits() {
        assert!(UnlockCode::new("A1b2C3d4".into()).is_ok());
        for bad in ["1234567", "123456789", "1234 678", "1234567é"] {
            let e = UnlockCode::new(bad.into()).expect_err(bad);
            assert!(matches!(e, PivError::InvalidUnlockCode { .. }), "{e}");
            assert!(!e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let p = Passcode::new("7391".into()).unwrap();
        assert!(!format!("{p:?}").contains("7391"));
        let u = UnlockCode::new("80264513".into()).unwrap();
        assert!(!format!("{u:?}").contains("80264513"));
    }

    #[test]
    fn padding_is_ff_to_eight_bytes() {
        let p = Passcode::new("7391".into()).unwrap();
        assert_eq!(
            *p.padded(),
            [0x37, 0x33, 0x39, 0x31, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        let u = UnlockCode::new("12345678".into()).unwrap();
        assert_eq!(*u.padded(), *b"12345678");
    }

    #[test]
    fn tries_left_reads_as_a_user_would_want() {
        assert_eq!(PasscodeTriesLeft::new(2).to_string(), "2 tries left");
        assert_eq!(PasscodeTriesLeft::new(1).to_string(), "1 try left");
        assert!(PasscodeTriesLeft::new(1).is_final());
        assert!(PasscodeTriesLeft::new(0).is_exhausted());
    }
}
