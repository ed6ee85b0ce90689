//! Reader events and the state tracker that turns what a backend observes (reader list, card
//! present or not, ATR, event counter) into events. Both backends feed the same tracker, so the
//! diffing rules (brief removals, reconciliation after pcscd restarts) are written and tested
//! once.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::mpsc;
use std::time::Instant;

/// A reader's PC/SC name (e.g. `HID Global OMNIKEY 3821 00 00`). Readers are told apart by
/// name because that is what PC/SC addresses them by; models are told apart by part 10
/// properties, never by name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReaderName(String);

impl ReaderName {
    /// Wraps a reader name as PC/SC spells it.
    pub fn new(name: impl Into<String>) -> Self {
        ReaderName(name.into())
    }

    /// The name as PC/SC spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ReaderName {
    fn from(name: &str) -> Self {
        ReaderName::new(name)
    }
}

/// Something that happened to a reader, stamped with the monotonic time the backend saw it
/// (so latency and ordering survive wall-clock changes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderEvent {
    /// The reader concerned. For service events, [`ReaderName`] is empty.
    pub reader: ReaderName,
    /// When the backend observed it.
    pub at: Instant,
    /// What happened.
    pub kind: ReaderEventKind,
}

/// What happened to a reader or to the PC/SC service.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReaderEventKind {
    /// A card is now in the reader. Everything known about a previous card is stale.
    CardInserted {
        /// The card's answer-to-reset (empty for a mute card).
        atr: Vec<u8>,
        /// The reader's event counter (upper 16 bits of the PC/SC event state), when known.
        event_count: Option<u16>,
    },
    /// The card left the reader; any session built on it must end now.
    CardRemoved {
        /// The reader's event counter when seen, or `None` when the removal was inferred (a
        /// brief removal seen only through the counter, a lost service, a detached reader).
        event_count: Option<u16>,
    },
    /// A reader appeared (also reported for every reader present when monitoring starts).
    ReaderAttached,
    /// A reader disappeared (a card in it is reported removed first).
    ReaderDetached,
    /// pcscd stopped answering. Every card that was present has been reported removed just
    /// before this event's consumers could act on a dead connection: nothing can be done
    /// with a card until [`ReaderEventKind::ServiceRestored`].
    ServiceLost,
    /// pcscd answers again; the events that follow reconcile the readers and cards.
    ServiceRestored,
}

/// How the monitor is doing, for `doctor` and health reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorHealth {
    /// Watching readers.
    Running,
    /// The service is unavailable; the monitor retries with backoff.
    Reconnecting {
        /// Attempts made since the service was lost.
        attempts: u32,
        /// When the service was found lost.
        since: Instant,
    },
    /// The monitor has ended (shut down, or its consumer went away).
    Stopped,
}

/// Where a monitor delivers events. Returning `false` says the consumer is gone, and the
/// monitor stops. Implemented for `std::sync::mpsc` senders; a daemon implements it for its
/// runtime's channel so no bridging thread is needed.
pub trait EventSink: Send + 'static {
    /// Delivers one event; `false` when nobody listens any more.
    fn deliver(&mut self, event: ReaderEvent) -> bool;
}

impl EventSink for mpsc::Sender<ReaderEvent> {
    fn deliver(&mut self, event: ReaderEvent) -> bool {
        self.send(event).is_ok()
    }
}

impl EventSink for mpsc::SyncSender<ReaderEvent> {
    fn deliver(&mut self, event: ReaderEvent) -> bool {
        self.send(event).is_ok()
    }
}

/// One reader's state as a backend sees it at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Observation {
    pub present: bool,
    pub atr: Vec<u8>,
    pub event_count: Option<u16>,
}

#[derive(Clone, Debug)]
struct Known {
    present: bool,
    atr: Vec<u8>,
    event_count: Option<u16>,
}

/// The last known state of every reader, diffed against each new observation.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    readers: BTreeMap<ReaderName, Known>,
}

impl Tracker {
    /// The readers the service lists now: new ones are attached, missing ones detached
    /// (their card removed first).
    pub fn readers_listed(&mut self, names: &[ReaderName], at: Instant) -> Vec<ReaderEvent> {
        let mut events = Vec::new();
        let gone: Vec<ReaderName> = self
            .readers
            .keys()
            .filter(|known| !names.contains(known))
            .cloned()
            .collect();
        for reader in gone {
            if let Some(known) = self.readers.remove(&reader) {
                if known.present {
                    events.push(event(&reader, at, removed(None)));
                }
                events.push(event(&reader, at, ReaderEventKind::ReaderDetached));
            }
        }
        for name in names {
            if !self.readers.contains_key(name) {
                self.readers.insert(
                    name.clone(),
                    Known {
                        present: false,
                        atr: Vec::new(),
                        event_count: None,
                    },
                );
                events.push(event(name, at, ReaderEventKind::ReaderAttached));
            }
        }
        events
    }

    /// One reader's new state. A change of the event counter between two "present"
    /// observations is a removal and reinsertion too brief to see as two states; so is a
    /// changed ATR where no counter is available.
    pub fn observe(
        &mut self,
        reader: &ReaderName,
        seen: Observation,
        at: Instant,
    ) -> Vec<ReaderEvent> {
        let Some(known) = self.readers.get_mut(reader) else {
            return Vec::new();
        };
        let counter_moved = match (known.event_count, seen.event_count) {
            (Some(before), Some(now)) => before != now,
            _ => false,
        };
        let counter_unknown = known.event_count.is_none() || seen.event_count.is_none();
        let mut events = Vec::new();
        match (known.present, seen.present) {
            (false, true) => events.push(event(reader, at, inserted(&seen))),
            (true, false) => events.push(event(reader, at, removed(seen.event_count))),
            (true, true) if counter_moved || (counter_unknown && known.atr != seen.atr) => {
                events.push(event(reader, at, removed(None)));
                events.push(event(reader, at, inserted(&seen)));
            }
            _ => {}
        }
        *known = Known {
            present: seen.present,
            atr: seen.atr,
            event_count: seen.event_count,
        };
        events
    }

    /// The service is gone: `ServiceLost`, preceded by a removal for every card that was
    /// present, because no connection to it survives and its security state must be assumed
    /// lost. Counters restart with the service, so they are forgotten.
    pub fn service_lost(&mut self, at: Instant) -> Vec<ReaderEvent> {
        let mut events = Vec::new();
        for (reader, known) in &mut self.readers {
            if known.present {
                events.push(event(reader, at, removed(None)));
            }
            known.present = false;
            known.atr.clear();
            known.event_count = None;
        }
        events.push(event(
            &ReaderName::new(""),
            at,
            ReaderEventKind::ServiceLost,
        ));
        events
    }

    /// Whether a card is known present in `reader`.
    #[cfg(test)]
    pub fn is_present(&self, reader: &ReaderName) -> bool {
        self.readers.get(reader).is_some_and(|k| k.present)
    }
}

/// A service-level event (no reader).
pub(crate) fn service_event(at: Instant, kind: ReaderEventKind) -> ReaderEvent {
    event(&ReaderName::new(""), at, kind)
}

fn event(reader: &ReaderName, at: Instant, kind: ReaderEventKind) -> ReaderEvent {
    ReaderEvent {
        reader: reader.clone(),
        at,
        kind,
    }
}

fn inserted(seen: &Observation) -> ReaderEventKind {
    ReaderEventKind::CardInserted {
        atr: seen.atr.clone(),
        event_count: seen.event_count,
    }
}

fn removed(event_count: Option<u16>) -> ReaderEventKind {
    ReaderEventKind::CardRemoved { event_count }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReaderEventKind::*;

    fn obs(present: bool, atr: &[u8], count: Option<u16>) -> Observation {
        Observation {
            present,
            atr: atr.to_vec(),
            event_count: count,
        }
    }

    fn kinds(events: &[ReaderEvent]) -> Vec<(String, ReaderEventKind)> {
        events
            .iter()
            .map(|e| (e.reader.to_string(), e.kind.clone()))
            .collect()
    }

    fn tracker_with(names: &[&str]) -> Tracker {
        let mut t = Tracker::default();
        let names: Vec<ReaderName> = names.iter().map(|n| ReaderName::new(*n)).collect();
        t.readers_listed(&names, Instant::now());
        t
    }

    #[test]
    fn insertion_then_removal() {
        let mut t = tracker_with(&["A"]);
        let a = ReaderName::new("A");
        let now = Instant::now();
        assert!(t.observe(&a, obs(false, &[], Some(0)), now).is_empty());
        let e = t.observe(&a, obs(true, &[0x3B], Some(1)), now);
        assert_eq!(
            kinds(&e),
            [(
                "A".into(),
                CardInserted {
                    atr: vec![0x3B],
                    event_count: Some(1)
                }
            )]
        );
        assert_eq!(e[0].at, now);
        let e = t.observe(&a, obs(false, &[], Some(2)), now);
        assert_eq!(
            kinds(&e),
            [(
                "A".into(),
                CardRemoved {
                    event_count: Some(2)
                }
            )]
        );
    }

    #[test]
    fn unchanged_state_gives_no_event() {
        let mut t = tracker_with(&["A"]);
        let a = ReaderName::new("A");
        t.observe(&a, obs(true, &[1], Some(5)), Instant::now());
        assert!(
            t.observe(&a, obs(true, &[1], Some(5)), Instant::now())
                .is_empty()
        );
    }

    #[test]
    fn counter_moving_between_two_present_states_is_removal_then_insertion() {
        let mut t = tracker_with(&["A"]);
        let a = ReaderName::new("A");
        t.observe(&a, obs(true, &[1], Some(1)), Instant::now());
        let e = t.observe(&a, obs(true, &[1], Some(3)), Instant::now());
        assert_eq!(
            kinds(&e),
            [
                ("A".into(), CardRemoved { event_count: None }),
                (
                    "A".into(),
                    CardInserted {
                        atr: vec![1],
                        event_count: Some(3)
                    }
                )
            ]
        );
    }

    #[test]
    fn counter_wrapping_around_still_counts_as_a_change() {
        let mut t = tracker_with(&["A"]);
        let a = ReaderName::new("A");
        t.observe(&a, obs(true, &[1], Some(0xFFFF)), Instant::now());
        let e = t.observe(&a, obs(true, &[1], Some(1)), Instant::now());
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn without_counters_a_new_atr_is_a_new_card() {
        let mut t = tracker_with(&["A"]);
        let a = ReaderName::new("A");
        t.observe(&a, obs(true, &[1], None), Instant::now());
        assert!(
            t.observe(&a, obs(true, &[1], None), Instant::now())
                .is_empty()
        );
        let e = t.observe(&a, obs(true, &[2], None), Instant::now());
        assert_eq!(e.len(), 2);
        assert!(matches!(e[0].kind, CardRemoved { .. }));
    }

    #[test]
    fn reader_list_changes_attach_and_detach_with_the_card_removed_first() {
        let mut t = Tracker::default();
        let now = Instant::now();
        let e = t.readers_listed(&["A".into(), "B".into()], now);
        assert_eq!(
            kinds(&e),
            [("A".into(), ReaderAttached), ("B".into(), ReaderAttached)]
        );
        t.observe(&"B".into(), obs(true, &[1], Some(1)), now);
        let e = t.readers_listed(&["A".into()], now);
        assert_eq!(
            kinds(&e),
            [
                ("B".into(), CardRemoved { event_count: None }),
                ("B".into(), ReaderDetached)
            ]
        );
        assert!(t.readers_listed(&["A".into()], now).is_empty());
    }

    #[test]
    fn observations_of_unlisted_readers_are_ignored() {
        let mut t = Tracker::default();
        assert!(
            t.observe(&"X".into(), obs(true, &[1], Some(1)), Instant::now())
                .is_empty()
        );
    }

    #[test]
    fn service_loss_removes_every_card_then_restoration_reconciles() {
        let mut t = tracker_with(&["A", "B"]);
        let now = Instant::now();
        t.observe(&"A".into(), obs(true, &[1], Some(7)), now);
        t.observe(&"B".into(), obs(false, &[], Some(2)), now);
        let e = t.service_lost(now);
        assert_eq!(
            kinds(&e),
            [
                ("A".into(), CardRemoved { event_count: None }),
                ("".into(), ServiceLost)
            ]
        );
        assert!(!t.is_present(&"A".into()));
        // After the restart the counters start again from 0: the card still (or again) in A
        // is a new insertion; B got a card meanwhile; readers are unchanged.
        assert!(t.readers_listed(&["A".into(), "B".into()], now).is_empty());
        let e = t.observe(&"A".into(), obs(true, &[1], Some(0)), now);
        assert!(matches!(
            e[..],
            [ReaderEvent {
                kind: CardInserted { .. },
                ..
            }]
        ));
        let e = t.observe(&"B".into(), obs(true, &[2], Some(1)), now);
        assert!(matches!(
            e[..],
            [ReaderEvent {
                kind: CardInserted { .. },
                ..
            }]
        ));
    }

    #[test]
    fn senders_are_sinks_and_report_a_gone_consumer() {
        let (tx, rx) = mpsc::channel();
        let mut sink: Box<dyn EventSink> = Box::new(tx);
        assert!(sink.deliver(service_event(Instant::now(), ServiceRestored)));
        assert_eq!(rx.recv().map(|e| e.kind).ok(), Some(ServiceRestored));
        drop(rx);
        assert!(!sink.deliver(service_event(Instant::now(), ServiceRestored)));
    }
}
