//! What the card-layer and reader suites make of the reader events they collected: a log to
//! show on failure and each reader's story (inserted, removed, service lost and restored).

use std::time::Instant;

use cardgate_reader::{ReaderEvent, ReaderEventKind, ReaderName};

/// The events `seen` since `started`, one line each with its time, reader and kind: what a
/// failing test shows of them.
pub fn event_log(seen: &[ReaderEvent], started: Instant) -> String {
    seen.iter()
        .map(|e| {
            format!(
                "  +{:>5} ms {:<20} {:?}",
                e.at.duration_since(started).as_millis(),
                e.reader.as_str(),
                e.kind
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The card events of `seen` for `reader` and every service event, in order: the story a
/// test compares with what should have happened.
pub fn card_story(seen: &[ReaderEvent], reader: &ReaderName) -> Vec<&'static str> {
    seen.iter()
        .filter_map(|e| match &e.kind {
            ReaderEventKind::CardInserted { .. } if &e.reader == reader => Some("inserted"),
            ReaderEventKind::CardRemoved { .. } if &e.reader == reader => Some("removed"),
            ReaderEventKind::ServiceLost => Some("service-lost"),
            ReaderEventKind::ServiceRestored => Some("service-restored"),
            _ => None,
        })
        .collect()
}

/// A card's story when it is inserted and removed, pcscd is killed and restarted, and it is
/// inserted and removed again: what both suites expect of a pcscd restart.
pub const STORY_ACROSS_A_PCSCD_RESTART: [&str; 6] = [
    "inserted",
    "removed",
    "service-lost",
    "service-restored",
    "inserted",
    "removed",
];
