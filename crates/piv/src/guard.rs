//! [`PasscodeGuard`]: the agent-side half of the three-attempt lockout, shared by every
//! client of a daemon (one per reader, cards move between readers).
//!
//! It holds the [`FailureLedger`] (consecutive failures per card serial, possibly persistent)
//! and, in memory only, a salted SHA-256 of the last value that failed on each card, so the
//! same value is never sent twice in a row. The salt is random per guard (per process), so
//! the hashes mean nothing outside it; the passcodes themselves are never kept.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use ring::digest;
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::error::PivError;
use crate::identity::CardSerial;
use crate::ledger::{FailureLedger, MemoryLedger};
use crate::passcode::PasscodeStatus;

/// Consecutive wrong passcodes after which the agent treats a card as locked, whatever the
/// card's own counter allows: the NHS rule is three.
pub const AGENT_MAX_CONSECUTIVE_FAILURES: u8 = 3;

/// Which secret an attempt used: each has its own counter on the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Reference {
    /// The card holder passcode (key reference 80).
    Passcode,
    /// The unlock code (key reference 81).
    UnlockCode,
}

impl Reference {
    /// How the user calls it, for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Reference::Passcode => "passcode",
            Reference::UnlockCode => "unlock code",
        }
    }
}

/// The agent's memory of passcode attempts: the failure ledger and the salted hash of the
/// last failed value per card. Create one per process and share it (`Arc`) between clients.
pub struct PasscodeGuard {
    salt: [u8; 32],
    inner: Mutex<Inner>,
}

struct Inner {
    ledger: Box<dyn FailureLedger>,
    last_failed: HashMap<(CardSerial, Reference), digest::Digest>,
    /// Unlock-code tries the card last reported (63Cx), for cards that cannot be asked
    /// without spending one.
    unlock_tries: HashMap<CardSerial, u8>,
    /// Passcode attempts whose answer was lost (the card left mid-command), per card, until
    /// the card's own counter says which way they went ([`PasscodeGuard::settle`]).
    unanswered: HashMap<CardSerial, Unanswered>,
}

/// Attempts whose answer was lost: counted as failures meanwhile, settled at the next read
/// of the card's counter. Kept in memory only: after a restart they stay counted (the safe
/// side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unanswered {
    /// The card's own tries left just before the first of them.
    card_tries_before: u8,
    /// How many.
    attempts: u8,
}

impl fmt::Debug for PasscodeGuard {
    /// Counts only: no salt, no hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("PasscodeGuard")
            .field("cards_with_a_failed_value", &inner.last_failed.len())
            .finish_non_exhaustive()
    }
}

impl PasscodeGuard {
    /// A guard over `ledger` (a [`crate::JsonFileLedger`] in the daemon), with a fresh random
    /// salt.
    pub fn new(ledger: impl FailureLedger + 'static) -> Result<Self, PivError> {
        let mut salt = [0u8; 32];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| PivError::Random)?;
        Ok(PasscodeGuard {
            salt,
            inner: Mutex::new(Inner {
                ledger: Box::new(ledger),
                last_failed: HashMap::new(),
                unlock_tries: HashMap::new(),
                unanswered: HashMap::new(),
            }),
        })
    }

    /// A guard whose ledger lives in memory: for tests and one-shot tools.
    pub fn in_memory() -> Result<Self, PivError> {
        PasscodeGuard::new(MemoryLedger::new())
    }

    /// Consecutive passcode failures the ledger holds for `card`.
    pub fn consecutive_failures(&self, card: &CardSerial) -> u8 {
        self.lock().ledger.consecutive_failures(card)
    }

    /// Forgets the agent's failures of `card`: for the daemon once it knows the card was
    /// unlocked elsewhere (by an LSA or the RA), since the agent no longer talks to a card it
    /// counts as locked.
    pub fn forget_failures(&self, card: &CardSerial) -> Result<(), PivError> {
        let mut inner = self.lock();
        inner
            .last_failed
            .remove(&(card.clone(), Reference::Passcode));
        inner.ledger.reset(card)
    }

    /// Passcode tries the agent still allows on `card` (3 minus the ledger's count).
    pub(crate) fn agent_tries_left(&self, card: &CardSerial) -> u8 {
        AGENT_MAX_CONSECUTIVE_FAILURES.saturating_sub(self.consecutive_failures(card))
    }

    /// Whether `value` is the value that last failed on `card` for `reference`.
    pub(crate) fn is_repeat(&self, card: &CardSerial, reference: Reference, value: &[u8]) -> bool {
        let hash = self.hash(card, reference, value);
        self.lock()
            .last_failed
            .get(&(card.clone(), reference))
            .is_some_and(|last| last.as_ref() == hash.as_ref())
    }

    /// Records a wrong value: remembers its salted hash and, for the passcode, adds a failure
    /// to the ledger. Returns the ledger's new count (0 for the unlock code).
    pub(crate) fn record_failure(
        &self,
        card: &CardSerial,
        reference: Reference,
        value: &[u8],
    ) -> Result<u8, PivError> {
        let hash = self.hash(card, reference, value);
        let mut inner = self.lock();
        inner.last_failed.insert((card.clone(), reference), hash);
        match reference {
            Reference::Passcode => inner.ledger.record_failure(card),
            Reference::UnlockCode => Ok(0),
        }
    }

    /// Records a wrong passcode whose value the host never saw (keyed on a PIN pad): a
    /// failure in the ledger, no hash. Returns the ledger's new count.
    pub(crate) fn record_unseen_failure(&self, card: &CardSerial) -> Result<u8, PivError> {
        self.lock().ledger.record_failure(card)
    }

    /// Records an attempt whose outcome is unknown (the card left mid-command): counted as a
    /// failure in the ledger, because the card may have counted it, until the card's counter
    /// is next read ([`PasscodeGuard::settle`]). `card_tries_before` is what the card reported
    /// just before the attempt (`None` when it was already verified, which says nothing a
    /// later read can be compared with: the attempt then stays counted).
    pub(crate) fn record_unknown(
        &self,
        card: &CardSerial,
        reference: Reference,
        card_tries_before: Option<u8>,
    ) {
        if reference != Reference::Passcode {
            return;
        }
        let mut inner = self.lock();
        // Best effort: the transport error is what the caller reports.
        if inner.ledger.record_failure(card).is_err() {
            return;
        }
        if let Some(before) = card_tries_before {
            inner
                .unanswered
                .entry(card.clone())
                .and_modify(|u| u.attempts = u.attempts.saturating_add(1))
                .or_insert(Unanswered {
                    card_tries_before: before,
                    attempts: 1,
                });
        }
    }

    /// Whether attempts on `card` wait for the card's counter to settle them.
    pub(crate) fn has_unanswered(&self, card: &CardSerial) -> bool {
        self.lock().unanswered.contains_key(card)
    }

    /// Settles the attempts whose answer was lost against what the card reports now: tries
    /// left as before them means the card never counted them (taken back from the ledger);
    /// fewer means it counted that many as failures; more, or verified, means a right
    /// passcode reset its counter since (the ledger is cleared). A blocked card keeps them.
    pub(crate) fn settle(&self, card: &CardSerial, now: PasscodeStatus) -> Result<(), PivError> {
        let mut inner = self.lock();
        let Some(unanswered) = inner.unanswered.remove(card) else {
            return Ok(());
        };
        match now {
            PasscodeStatus::Blocked => Ok(()),
            PasscodeStatus::Verified => inner.ledger.reset(card),
            PasscodeStatus::TriesLeft(left) if left.get() > unanswered.card_tries_before => {
                inner.ledger.reset(card)
            }
            PasscodeStatus::TriesLeft(left) => {
                let counted = unanswered
                    .attempts
                    .min(unanswered.card_tries_before - left.get());
                inner
                    .ledger
                    .withdraw(card, unanswered.attempts - counted)
                    .map(drop)
            }
        }
    }

    /// Records a right value: forgets the failed hash, and for the passcode resets the ledger.
    pub(crate) fn record_success(
        &self,
        card: &CardSerial,
        reference: Reference,
    ) -> Result<(), PivError> {
        let mut inner = self.lock();
        inner.last_failed.remove(&(card.clone(), reference));
        match reference {
            Reference::Passcode => inner.ledger.reset(card),
            Reference::UnlockCode => {
                inner.unlock_tries.remove(card);
                Ok(())
            }
        }
    }

    /// A successful unlock also clears everything known about the passcode's failures.
    pub(crate) fn record_unlock(&self, card: &CardSerial) -> Result<(), PivError> {
        self.record_success(card, Reference::UnlockCode)?;
        self.record_success(card, Reference::Passcode)
    }

    /// The unlock-code tries the card last reported, if any.
    pub(crate) fn known_unlock_tries(&self, card: &CardSerial) -> Option<u8> {
        self.lock().unlock_tries.get(card).copied()
    }

    /// Remembers the unlock-code tries the card reported.
    pub(crate) fn set_unlock_tries(&self, card: &CardSerial, tries: u8) {
        self.lock().unlock_tries.insert(card.clone(), tries);
    }

    fn hash(&self, card: &CardSerial, reference: Reference, value: &[u8]) -> digest::Digest {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(&[match reference {
            Reference::Passcode => 0x80,
            Reference::UnlockCode => 0x81,
        }]);
        let serial = card.as_str().as_bytes();
        ctx.update(&[u8::try_from(serial.len()).unwrap_or(u8::MAX)]);
        ctx.update(serial);
        ctx.update(value);
        ctx.finish()
    }

    /// The state, even if a thread panicked while holding it: the counts are still the best
    /// knowledge there is, and refusing every passcode forever would be worse.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_detection_is_per_card_and_per_reference() {
        let guard = PasscodeGuard::in_memory().unwrap();
        let a = CardSerial::new("4123456789").unwrap();
        let b = CardSerial::new("4999999999").unwrap();
        assert_eq!(
            guard
                .record_failure(&a, Reference::Passcode, b"1111")
                .unwrap(),
            1
        );
        assert!(guard.is_repeat(&a, Reference::Passcode, b"1111"));
        assert!(!guard.is_repeat(&a, Reference::Passcode, b"2222"));
        assert!(!guard.is_repeat(&b, Reference::Passcode, b"1111"));
        assert!(!guard.is_repeat(&a, Reference::UnlockCode, b"1111"));
        assert_eq!(guard.agent_tries_left(&a), 2);
        guard.record_success(&a, Reference::Passcode).unwrap();
        assert!(!guard.is_repeat(&a, Reference::Passcode, b"1111"));
        assert_eq!(guard.agent_tries_left(&a), 3);
    }

    #[test]
    fn two_guards_hash_differently() {
        let a = PasscodeGuard::in_memory().unwrap();
        let b = PasscodeGuard::in_memory().unwrap();
        let card = CardSerial::new("4123456789").unwrap();
        assert_ne!(
            a.hash(&card, Reference::Passcode, b"1111").as_ref(),
            b.hash(&card, Reference::Passcode, b"1111").as_ref()
        );
        assert!(!format!("{a:?}").contains("salt"));
    }
}
