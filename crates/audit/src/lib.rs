//! The audit trail: an append-only, hash-chained log of everything that happens while a card is
//! in use (card events, passcode attempts but never the passcode, lockouts, sessions, role
//! selection, every authorisation decision with the caller's identity, unlocks, renewals, TAC
//! use), each entry attributable to the card holder, flushed to disk before the action it
//! records is acknowledged, with a verifier that finds edited, deleted and reordered entries.
//!
//! # Use
//!
//! ```no_run
//! # fn main() -> Result<(), cardgate_audit::AuditError> {
//! use cardgate_audit::{AuditEvent, AuditLog};
//! use time::OffsetDateTime;
//!
//! let mut log = AuditLog::open("/var/lib/cardgate/audit.jsonl")?;
//! if let Some(torn) = log.recovered_torn_tail() {
//!     let event = torn.to_event();
//!     log.append(OffsetDateTime::now_utc(), &event)?;
//! }
//! let event = AuditEvent::DaemonStarted { version: "0.1.0".into() };
//! let receipt = log.append(OffsetDateTime::now_utc(), &event)?;
//! // Only now may the action be acknowledged. On Err: refuse it (fail closed);
//! // `err.is_disk_full()` says whether to blame a full disk.
//! # let _ = receipt; Ok(()) }
//! ```
//!
//! # File format
//!
//! JSON Lines, one entry per line, each line byte-for-byte in this canonical form:
//!
//! ```text
//! {"seq":1,"at":"2026-03-01T09:00:00Z","prev":"000…000","event":{"kind":"daemon_started","version":"0.1.0"},"hash":"3f…"}
//! ```
//!
//! - `seq` counts from 1 with no gaps.
//! - `at` is the caller's timestamp in RFC 3339, UTC.
//! - `prev` is the previous entry's `hash` (64 zeros for seq 1).
//! - `event` is an [`AuditEvent`], tagged by `"kind"`.
//! - `hash` is SHA-256 over `"cardgate-audit-v1\0"`, `seq` (u64 big-endian), `at`
//!   (u64 length + bytes), `prev` (32 bytes) and the event's JSON (u64 length + bytes) exactly
//!   as it appears in the line.
//!
//! Why `prev` is the previous *hash* rather than a hash of the previous line's bytes: the
//! `hash` already commits to every other field of its line, and the verifier insists each line
//! is in canonical form, so linking hashes is as strong and leaves one digest per entry (the
//! thing an operator quotes and publishes as an anchor). Hashing the event's raw bytes, not a
//! re-serialization, means verification never depends on how a later serde version would
//! print the same event.
//!
//! # Threat model, honestly
//!
//! - **Detected by [`verify`]**: any change to any byte of an entry (edit), a removed entry in
//!   the middle or at the start (deleted or missing), entries moved (reordered), a repeated
//!   entry (duplicated), a line cut short (torn), junk (malformed). The first broken place is
//!   reported with its line and seq.
//! - **Not detected by the chain alone**: entries cut off the *end* of the file, and a complete
//!   rewrite by someone who can write the file: they can recompute every hash. A keyed MAC
//!   (HMAC with a per-installation key) would only move the problem: the key must sit on the
//!   same machine, readable by the daemon, so whoever is root there can rewrite with it; and
//!   operators could no longer verify without the key. What does detect both is an **anchor**:
//!   a receipt (`seq` + `hash`, see [`AuditLog::head`]) copied somewhere the attacker cannot
//!   rewrite (the system journal forwarded off the machine, a support bundle, the national
//!   endpoint). [`verify_with_anchors`] checks a log against anchors. Publishing anchors is
//!   the daemon's job.
//! - Entries record passcode *outcomes* and tries left; no type has a field that could hold a
//!   passcode, PUK or unlock code (a schema test in `event.rs` checks every event kind). Free text
//!   ([`AuditEvent::Note`], fault messages) cannot be policed: callers must not put secrets
//!   there.
//!
//! # Durability and crashes
//!
//! [`AuditLog::append`] writes the whole line (newline included) in one `write` on an
//! `O_APPEND` file, then `fdatasync`s, then returns the [`AuditReceipt`]: an entry is
//! acknowledged only once it is on disk. A crash (SIGKILL, power loss) mid-write can leave
//! only an unterminated final line, which was never acknowledged; [`AuditLog::open`] copies
//! those bytes to `<log>.torn`, truncates them off, and reports them
//! ([`AuditLog::recovered_torn_tail`]) so the daemon records the repair on the chain. A failed
//! write (full disk) is rolled back to the last acknowledged entry, so the chain stays clean
//! and appends resume once there is room.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod chain;
mod error;
mod event;
mod log;
mod read;
mod segments;
mod tail;
mod verify;

pub use chain::{AuditEntry, AuditReceipt, EntryHash, ParseHashError};
pub use error::AuditError;
pub use event::{
    AuditEvent, CallerIdentity, EntryMethod, LockoutCause, Outcome, PasscodeOutcome,
    RenewalSubject, RoleProfile, SessionEndReason, UnlockPath,
};
pub use log::{AuditLog, MAX_LINE, TornTail};
pub use segments::{SegmentPolicy, sealed_segments, trail_files};
pub use tail::{TailItem, tail};
pub use verify::{BreakKind, ChainBreak, VerifyReport, verify, verify_with_anchors};
