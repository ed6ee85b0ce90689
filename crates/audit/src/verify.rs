//! The verifier behind `cardgate audit verify`: walks a whole log and reports the first broken
//! place precisely (line, seq, what kind of damage), optionally against published anchors.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Serialize;

use crate::chain::{self, AuditReceipt, EntryHash, LineProblem};
use crate::error::AuditError;

/// What kind of damage was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakKind {
    /// A line's content was changed: it no longer matches its own hash, is no longer in the
    /// form the log writes, or (rewritten with a fresh hash) no longer links to the entry
    /// before it.
    Edited,
    /// One or more entries are missing here: the sequence jumps forward.
    DeletedOrMissing,
    /// Entries are out of order: a sequence number appears earlier or later than its place.
    Reordered,
    /// The line repeats the entry before it (or reuses its sequence number).
    Duplicated,
    /// The last line has no newline: a write interrupted by a crash (never acknowledged; the
    /// agent discards it on its next start) or a file cut mid-line.
    Torn,
    /// The line is not an audit entry (not JSON, missing fields, an unknown event kind, a
    /// timestamp in another form).
    Malformed,
    /// The file ends before an anchor's entry: acknowledged entries were cut off the end.
    Truncated,
    /// The entry at an anchor's sequence number has another hash: the log was rewritten.
    AnchorMismatch,
}

impl BreakKind {
    /// The name `verify` prints.
    pub fn as_str(&self) -> &'static str {
        match self {
            BreakKind::Edited => "edited",
            BreakKind::DeletedOrMissing => "deleted or missing",
            BreakKind::Reordered => "reordered",
            BreakKind::Duplicated => "duplicated",
            BreakKind::Torn => "torn",
            BreakKind::Malformed => "malformed",
            BreakKind::Truncated => "truncated",
            BreakKind::AnchorMismatch => "anchor mismatch",
        }
    }
}

/// The first broken place in a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// 1-based line number (0 when found outside a line walk, e.g. by `open`'s own checks).
    pub line: u64,
    /// The line's sequence number, when it has one.
    pub seq: Option<u64>,
    /// What kind of damage.
    pub kind: BreakKind,
    /// A sentence for the operator.
    pub detail: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {}: {}", self.kind.as_str(), self.detail)
    }
}

/// The result of a full walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Entries that verified, from the start up to the first break (all of them if none).
    pub verified_entries: u64,
    /// The last verified entry: publish or compare it as an anchor.
    pub head: Option<AuditReceipt>,
    /// The first broken place, if any.
    pub first_break: Option<ChainBreak>,
}

impl VerifyReport {
    /// No break found (and every anchor given matched).
    pub fn is_intact(&self) -> bool {
        self.first_break.is_none()
    }
}

/// Walks the whole log at `path`. `Err` only for I/O (cannot open or read the file); damage is
/// reported in [`VerifyReport::first_break`].
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport, AuditError> {
    verify_with_anchors(path, &[])
}

/// As [`verify`], and also checks that each anchor (a receipt published elsewhere: the
/// journal, a support bundle, a previous `verify`) is on the chain. Without anchors a hash
/// chain cannot tell that entries were cut off the end, or that the whole file was rebuilt by
/// someone able to write it; an anchor from before the damage can.
pub fn verify_with_anchors(
    path: impl AsRef<Path>,
    anchors: &[AuditReceipt],
) -> Result<VerifyReport, AuditError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| AuditError::io(path, "open", e))?;
    let mut reader = BufReader::new(file);
    let mut anchors = anchors.to_vec();
    anchors.sort_by_key(|a| a.seq);
    let mut anchors = anchors.into_iter().peekable();

    let mut report = VerifyReport {
        verified_entries: 0,
        head: None,
        first_break: None,
    };
    let mut prev_hash = EntryHash::GENESIS;
    let mut expected_seq: u64 = 1;
    let mut line_no: u64 = 0;
    let mut current = read_line(&mut reader, path)?;

    while let Some((bytes, terminated)) = current.take() {
        line_no += 1;
        let next = read_line(&mut reader, path)?;
        let broke = |kind, seq, detail: String| ChainBreak {
            line: line_no,
            seq,
            kind,
            detail,
        };

        if !terminated {
            report.first_break = Some(broke(
                BreakKind::Torn,
                chain::peek_seq(&bytes),
                format!(
                    "the last line has no newline ({} bytes): a write cut short",
                    bytes.len()
                ),
            ));
            return Ok(report);
        }
        let line = match chain::parse_line(&bytes) {
            Ok(line) => line,
            Err(problem) => {
                let seq = chain::peek_seq(&bytes);
                let (kind, detail) = match problem {
                    LineProblem::Malformed(why) => (BreakKind::Malformed, why),
                    LineProblem::HashMismatch => (
                        BreakKind::Edited,
                        "the entry's content does not match its hash".to_owned(),
                    ),
                    LineProblem::NotCanonical => (
                        BreakKind::Edited,
                        "the line's bytes are not as the log wrote them".to_owned(),
                    ),
                };
                report.first_break = Some(broke(kind, seq, detail));
                return Ok(report);
            }
        };
        if let Err(why) = line.decode() {
            report.first_break = Some(broke(BreakKind::Malformed, Some(line.seq), why));
            return Ok(report);
        }

        if line.seq != expected_seq {
            let last_seq = expected_seq.checked_sub(1).filter(|s| *s > 0);
            let (kind, detail) = if Some(line.seq) == last_seq {
                let detail = if line.hash == prev_hash {
                    "a copy of the entry before it"
                } else {
                    "a second entry with the sequence number of the one before it"
                };
                (BreakKind::Duplicated, detail.to_owned())
            } else if line.seq < expected_seq {
                (
                    BreakKind::Reordered,
                    format!(
                        "seq {} appears again after seq {}",
                        line.seq,
                        expected_seq - 1
                    ),
                )
            } else {
                let next_seq = next.as_ref().and_then(|(b, _)| chain::peek_seq(b));
                match next_seq {
                    Some(n) if n < line.seq => (
                        BreakKind::Reordered,
                        format!(
                            "expected seq {expected_seq} here, found {} with {n} after it",
                            line.seq
                        ),
                    ),
                    _ => (
                        BreakKind::DeletedOrMissing,
                        if line.seq - expected_seq == 1 {
                            format!("seq {expected_seq} is missing")
                        } else {
                            format!("seqs {expected_seq} to {} are missing", line.seq - 1)
                        },
                    ),
                }
            };
            report.first_break = Some(broke(kind, Some(line.seq), detail));
            return Ok(report);
        }
        if line.prev != prev_hash {
            report.first_break = Some(broke(
                BreakKind::Edited,
                Some(line.seq),
                "does not link to the entry before it: one of the two was rewritten".to_owned(),
            ));
            return Ok(report);
        }
        while let Some(anchor) = anchors.next_if(|a| a.seq <= line.seq) {
            if anchor.seq == line.seq && anchor.hash != line.hash {
                report.first_break = Some(broke(
                    BreakKind::AnchorMismatch,
                    Some(line.seq),
                    format!(
                        "the anchor says {} but the log has {}: the log was rewritten",
                        anchor.hash, line.hash
                    ),
                ));
                return Ok(report);
            }
        }

        prev_hash = line.hash;
        expected_seq = line.seq.saturating_add(1);
        report.verified_entries += 1;
        report.head = Some(line.receipt());
        current = next;
    }

    if let Some(anchor) = anchors.next() {
        report.first_break = Some(ChainBreak {
            line: line_no + 1,
            seq: Some(anchor.seq),
            kind: BreakKind::Truncated,
            detail: format!(
                "the log ends at seq {} but an anchor records seq {}: entries were cut off the end",
                expected_seq - 1,
                anchor.seq
            ),
        });
    }
    Ok(report)
}

/// One line with whether it ended in a newline; `None` at end of file.
fn read_line(
    reader: &mut BufReader<File>,
    path: &Path,
) -> Result<Option<(Vec<u8>, bool)>, AuditError> {
    let mut buf = Vec::new();
    let n = reader
        .read_until(b'\n', &mut buf)
        .map_err(|e| AuditError::io(path, "read", e))?;
    if n == 0 {
        return Ok(None);
    }
    let terminated = buf.last() == Some(&b'\n');
    if terminated {
        buf.pop();
    }
    Ok(Some((buf, terminated)))
}
