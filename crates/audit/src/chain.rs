//! The chain itself: how one entry is hashed, how a line is written and read back, and the
//! types that name an entry ([`EntryHash`], [`AuditReceipt`], [`AuditEntry`]).
//!
//! A line is `{"seq":N,"at":"<RFC 3339 UTC>","prev":"<hex>","event":{...},"hash":"<hex>"}`
//! followed by `\n`. `hash` is SHA-256 over a domain tag and the length-prefixed `seq`, `at`,
//! `prev` and the event's JSON bytes exactly as they appear in the line; `prev` is the
//! previous entry's `hash` (64 zeros for the first entry). Because the line must also be
//! byte-for-byte the canonical form this module writes, any change to any byte of a line is
//! detected: either the JSON no longer parses, or the hash no longer matches, or the line is no
//! longer canonical.

use std::fmt;
use std::str::FromStr;

use ring::digest;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::UtcOffset;
use time::format_description::well_known::Rfc3339;

use crate::error::AuditError;
use crate::event::AuditEvent;

/// Separates this chain's hashes from any other SHA-256 use; the version lets a future format
/// change be told apart.
const DOMAIN: &[u8] = b"cardgate-audit-v1\0";

/// A SHA-256 entry hash, written as 64 lowercase hex digits. Published heads (see
/// [`crate::verify_with_anchors`]) are `seq` + this hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryHash([u8; 32]);

impl EntryHash {
    /// The `prev` of the first entry of a log: 32 zero bytes.
    pub const GENESIS: EntryHash = EntryHash([0; 32]);

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds a hash from its raw digest.
    pub fn from_bytes(bytes: [u8; 32]) -> EntryHash {
        EntryHash(bytes)
    }
}

impl fmt::Display for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryHash({self})")
    }
}

/// Why a string is not an [`EntryHash`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 hash: expected 64 lowercase hex digits")]
pub struct ParseHashError;

impl FromStr for EntryHash {
    type Err = ParseHashError;

    /// Accepts exactly 64 lowercase hex digits: the only spelling the log writes, so a hash
    /// with another spelling in a line is an edit.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ParseHashError);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseHashError)?;
        Ok(EntryHash(out))
    }
}

impl Serialize for EntryHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for EntryHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Proof that an entry is on disk: returned by [`crate::AuditLog::append`] only after the line
/// was written and `fsync`ed. The daemon acknowledges the action it records only after
/// receiving this. Published elsewhere (journal, support bundle), it is also an anchor that
/// detects a rewritten or cut-short log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuditReceipt {
    /// The entry's sequence number (the first entry is 1).
    pub seq: u64,
    /// The entry's hash.
    pub hash: EntryHash,
}

/// One entry as read back from the log (for `tail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Sequence number, from 1, no gaps.
    pub seq: u64,
    /// When it happened (UTC), as the caller said.
    pub at: OffsetDateTime,
    /// The previous entry's hash.
    pub prev: EntryHash,
    /// What happened.
    pub event: AuditEvent,
    /// This entry's hash.
    pub hash: EntryHash,
}

/// The hash of one entry.
pub(crate) fn entry_hash(seq: u64, at: &str, prev: &EntryHash, event_json: &str) -> EntryHash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(DOMAIN);
    ctx.update(&seq.to_be_bytes());
    ctx.update(&(at.len() as u64).to_be_bytes());
    ctx.update(at.as_bytes());
    ctx.update(&prev.0);
    ctx.update(&(event_json.len() as u64).to_be_bytes());
    ctx.update(event_json.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    EntryHash(out)
}

/// Formats a timestamp the one way the log writes it: RFC 3339 in UTC (`...Z`).
pub(crate) fn format_at(at: OffsetDateTime) -> Result<String, AuditError> {
    at.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(AuditError::InvalidTimestamp)
}

/// Parses a timestamp and checks it is in the canonical form [`format_at`] writes.
pub(crate) fn parse_at(text: &str) -> Result<OffsetDateTime, String> {
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("timestamp: {e}"))?;
    match format_at(at) {
        Ok(canonical) if canonical == text => Ok(at),
        _ => Err(format!(
            "timestamp {text:?} is not RFC 3339 UTC as the log writes it"
        )),
    }
}

/// The canonical line, without its trailing newline.
pub(crate) fn encode_line(
    seq: u64,
    at: &str,
    prev: &EntryHash,
    event_json: &str,
    hash: &EntryHash,
) -> Result<Vec<u8>, serde_json::Error> {
    let at_json = serde_json::to_string(at)?;
    Ok(format!(
        r#"{{"seq":{seq},"at":{at_json},"prev":"{prev}","event":{event_json},"hash":"{hash}"}}"#
    )
    .into_bytes())
}

/// A line that parsed and whose hash and form check out; the event is still raw JSON.
#[derive(Debug)]
pub(crate) struct Line {
    pub(crate) seq: u64,
    pub(crate) at: String,
    pub(crate) prev: EntryHash,
    pub(crate) event: Box<RawValue>,
    pub(crate) hash: EntryHash,
}

impl Line {
    /// Decodes the timestamp and the event (the chain checks do not need them; readers do).
    pub(crate) fn decode(&self) -> Result<AuditEntry, String> {
        let at = parse_at(&self.at)?;
        let event: AuditEvent =
            serde_json::from_str(self.event.get()).map_err(|e| format!("event: {e}"))?;
        Ok(AuditEntry {
            seq: self.seq,
            at,
            prev: self.prev,
            event,
            hash: self.hash,
        })
    }

    /// This line's receipt.
    pub(crate) fn receipt(&self) -> AuditReceipt {
        AuditReceipt {
            seq: self.seq,
            hash: self.hash,
        }
    }
}

/// What is wrong with a single line, before it is compared with its neighbours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineProblem {
    /// Not an entry at all (not JSON, missing fields, a hash that is not hex).
    Malformed(String),
    /// Parses, but its fields no longer produce its hash.
    HashMismatch,
    /// Hash matches, but the bytes are not the form the log writes (whitespace, key order,
    /// escapes changed).
    NotCanonical,
}

#[derive(Deserialize)]
struct Wire {
    seq: u64,
    at: String,
    prev: String,
    event: Box<RawValue>,
    hash: String,
}

/// Whether `bytes` are exactly the line [`encode_line`] writes for these fields, compared
/// piece by piece without building it (the verifier does this for every entry).
fn is_canonical(
    bytes: &[u8],
    seq: u64,
    at: &str,
    prev: &EntryHash,
    event_json: &str,
    hash: &EntryHash,
) -> Result<bool, LineProblem> {
    if at.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        // Needs escaping: compare with the full encoding.
        let canonical = encode_line(seq, at, prev, event_json, hash)
            .map_err(|e| LineProblem::Malformed(e.to_string()))?;
        return Ok(canonical == bytes);
    }
    let mut rest = bytes;
    let mut take = |piece: &[u8]| match rest.strip_prefix(piece) {
        Some(after) => {
            rest = after;
            true
        }
        None => false,
    };
    let mut hex_buf = [0u8; 64];
    let mut hex_of = |h: &EntryHash| -> [u8; 64] {
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(h.0, &mut hex_buf);
        hex_buf
    };
    let (prev_hex, hash_hex) = (hex_of(prev), hex_of(hash));
    Ok(take(b"{\"seq\":")
        && take(seq.to_string().as_bytes())
        && take(b",\"at\":\"")
        && take(at.as_bytes())
        && take(b"\",\"prev\":\"")
        && take(&prev_hex)
        && take(b"\",\"event\":")
        && take(event_json.as_bytes())
        && take(b",\"hash\":\"")
        && take(&hash_hex)
        && take(b"\"}")
        && rest.is_empty())
}

/// Lenient: the `seq` of a line if it has one, for classifying a neighbour's break.
pub(crate) fn peek_seq(bytes: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct SeqOnly {
        seq: u64,
    }
    serde_json::from_slice::<SeqOnly>(bytes).ok().map(|s| s.seq)
}

/// Parses one line (without its newline) and checks it against its own hash and form.
pub(crate) fn parse_line(bytes: &[u8]) -> Result<Line, LineProblem> {
    let wire: Wire = serde_json::from_slice(bytes)
        .map_err(|e| LineProblem::Malformed(format!("not an audit entry: {e}")))?;
    let prev: EntryHash = wire
        .prev
        .parse()
        .map_err(|_| LineProblem::Malformed("prev is not a hex SHA-256".to_owned()))?;
    let hash: EntryHash = wire
        .hash
        .parse()
        .map_err(|_| LineProblem::Malformed("hash is not a hex SHA-256".to_owned()))?;
    if entry_hash(wire.seq, &wire.at, &prev, wire.event.get()) != hash {
        return Err(LineProblem::HashMismatch);
    }
    if !is_canonical(bytes, wire.seq, &wire.at, &prev, wire.event.get(), &hash)? {
        return Err(LineProblem::NotCanonical);
    }
    Ok(Line {
        seq: wire.seq,
        at: wire.at,
        prev,
        event: wire.event,
        hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, prev: &EntryHash) -> (Vec<u8>, EntryHash) {
        let at = "2026-03-01T09:00:00Z";
        let ev = r#"{"kind":"daemon_started","version":"1"}"#;
        let h = entry_hash(seq, at, prev, ev);
        (encode_line(seq, at, prev, ev, &h).expect("encode"), h)
    }

    #[test]
    fn canonical_line_round_trips() {
        let (bytes, h) = line(1, &EntryHash::GENESIS);
        let parsed = parse_line(&bytes).expect("parse");
        assert_eq!(parsed.seq, 1);
        assert_eq!(parsed.hash, h);
        assert_eq!(parsed.prev, EntryHash::GENESIS);
        let entry = parsed.decode().expect("decode");
        assert_eq!(entry.event.kind(), "daemon_started");
    }

    #[test]
    fn whitespace_only_change_is_not_canonical() {
        let (bytes, _) = line(1, &EntryHash::GENESIS);
        let text = String::from_utf8(bytes).expect("utf8");
        let spaced = text.replacen(r#""seq":1,"#, r#""seq": 1,"#, 1);
        assert_eq!(
            parse_line(spaced.as_bytes()).map(|_| ()),
            Err(LineProblem::NotCanonical)
        );
    }

    #[test]
    fn hash_covers_every_field() {
        let at = "2026-03-01T09:00:00Z";
        let ev = r#"{"kind":"daemon_started","version":"1"}"#;
        let base = entry_hash(1, at, &EntryHash::GENESIS, ev);
        assert_ne!(base, entry_hash(2, at, &EntryHash::GENESIS, ev));
        assert_ne!(
            base,
            entry_hash(1, "2026-03-01T09:00:01Z", &EntryHash::GENESIS, ev)
        );
        assert_ne!(base, entry_hash(1, at, &EntryHash::from_bytes([1; 32]), ev));
        assert_ne!(
            base,
            entry_hash(
                1,
                at,
                &EntryHash::GENESIS,
                r#"{"kind":"daemon_started","version":"2"}"#
            )
        );
    }

    #[test]
    fn hash_spelling_is_strict() {
        assert!("A".repeat(64).parse::<EntryHash>().is_err());
        assert!("a".repeat(63).parse::<EntryHash>().is_err());
        assert!("a".repeat(64).parse::<EntryHash>().is_ok());
    }

    #[test]
    fn non_utc_timestamp_is_written_as_utc() {
        use time::macros::datetime;
        let at = format_at(datetime!(2026-03-01 10:00:00 +01:00)).expect("format");
        assert_eq!(at, "2026-03-01T09:00:00Z");
        assert!(parse_at("2026-03-01T10:00:00+01:00").is_err());
    }
}
