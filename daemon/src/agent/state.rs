//! What the agent holds under its one lock: each reader's card as far as it has been read,
//! the session bound to one insertion (or detached under `session-lock` and `mobility`), the
//! generation counter, the idle clock and limits.

use std::collections::BTreeMap;
use std::time::Duration;

use cardgate_card::{CardReport, Insertion};
use cardgate_reader::ReaderName;
use cardgate_spine::wire::{RoleProfile, Session as SpineSession};
use tokio::time::Instant;

/// The card in one reader, as far as it has been read.
#[derive(Debug)]
pub(super) struct CardSlot {
    pub(super) insertion: Insertion,
    pub(super) report: Option<CardReport>,
    /// Why the card could not be read, for `Status`.
    pub(super) problem: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct ReaderSlot {
    pub(super) card: Option<CardSlot>,
    pub(super) pin_pad: bool,
}

/// A session: the endpoint's session bound to one insertion of one card.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) reader: ReaderName,
    pub(super) insertion: Insertion,
    pub(super) card_serial: cardgate_piv::CardSerial,
    pub(super) holder: cardgate_piv::HolderUuid,
    pub(super) certificate_serial: String,
    pub(super) spine: SpineSession,
    pub(super) selected: Option<RoleProfile>,
    pub(super) max_idle: Duration,
    /// Set when the card left under `session-lock` or `mobility`: the session is kept for
    /// the same holder but no longer bound to a card in a reader.
    pub(super) detached: Option<Detached>,
}

/// A session whose card left the reader under `session-lock` or `mobility`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Detached {
    /// `mobility` only: until when the session counts as live without its card (the
    /// re-authentication deadline). `None` under `session-lock`: locked, never live.
    pub(super) mobility_until: Option<Instant>,
}

impl Session {
    /// Whether the card in `report` is this session's: same holder, same card serial, same
    /// authentication certificate. Only such a card may resume a locked session.
    pub(super) fn same_card(&self, report: &CardReport) -> bool {
        report.identity.holder_uuid == self.holder
            && report.identity.card_serial == self.card_serial
            && report.certificate.certificate_serial == self.certificate_serial
    }

    /// Whether the session is locked (`session-lock`, card gone): kept, but answers nothing.
    pub(super) fn is_locked(&self) -> bool {
        self.detached.is_some_and(|d| d.mobility_until.is_none())
    }
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) generation: u64,
    pub(super) readers: BTreeMap<ReaderName, ReaderSlot>,
    pub(super) session: Option<Session>,
    /// The last authorised activity (log-in, role selection, an allowed `Authorise`, a card
    /// insertion): the start of every idle timer.
    pub(super) last_activity: Instant,
    /// `CardLeftInReader` was signalled for the current idle period.
    pub(super) card_left_signalled: bool,
    /// The last endpoint call failed for want of the endpoint.
    pub(super) endpoint_unreachable: bool,
    /// The configuration's idle limits (`max_idle_time`, `card_left_idle_time`; zero: off),
    /// here so the demo's controls can shorten them (`agent/demo_hooks.rs`).
    pub(super) limits: IdleLimits,
}

/// The configured idle limits the timers apply.
#[derive(Debug, Clone, Copy)]
pub(super) struct IdleLimits {
    /// The longest a session may idle (the endpoint's own limit may be shorter).
    pub(super) max_idle: Duration,
    /// How long an idle workstation may hold a card before `CardLeftInReader`; zero: never.
    pub(super) card_left: Duration,
}

impl State {
    /// The reader the agent acts on: the session's, else the first with a card in it.
    pub(super) fn active_card(&self) -> Option<(&ReaderName, &CardSlot)> {
        if let Some(session) = &self.session
            && let Some(card) = self
                .readers
                .get(&session.reader)
                .and_then(|slot| slot.card.as_ref())
        {
            return Some((&session.reader, card));
        }
        self.readers
            .iter()
            .find_map(|(name, slot)| slot.card.as_ref().map(|card| (name, card)))
    }

    /// The session, if it is bound to the card now in its reader, or (`mobility`) its card
    /// left and the re-authentication timer is still running.
    pub(super) fn live_session(&self) -> Option<&Session> {
        let session = self.session.as_ref()?;
        if let Some(detached) = session.detached {
            return detached
                .mobility_until
                .is_some_and(|until| Instant::now() < until)
                .then_some(session);
        }
        let card = self.readers.get(&session.reader)?.card.as_ref()?;
        (card.insertion == session.insertion).then_some(session)
    }

    /// The live session whose card is away (`mobility`, timer running).
    pub(super) fn away_session(&self) -> Option<&Session> {
        self.live_session().filter(|s| s.detached.is_some())
    }
}
