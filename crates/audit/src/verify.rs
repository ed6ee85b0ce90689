//! The verifier behind `cardgate audit verify`: walks a whole trail (its sealed segments in
//! order, then the active file) and reports the first broken place precisely (file, line, seq,
//! what kind of damage), optionally against published anchors.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::chain::{self, AuditReceipt, EntryHash, LineProblem};
use crate::error::AuditError;
use crate::event::AuditEvent;
use crate::segments;

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
    /// The file of the trail it is in (a sealed segment or the active file), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// 1-based line number in that file (0 when found outside a line walk, e.g. by `open`'s
    /// own checks).
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
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
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

/// Walks the whole trail of the active file `path` (its sealed segments first). `Err` only for
/// I/O (cannot list, open or read a file); damage is reported in [`VerifyReport::first_break`].
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport, AuditError> {
    verify_with_anchors(path, &[])
}

/// As [`verify`], and also checks that each anchor (a receipt published elsewhere: the
/// journal, a support bundle, a previous `verify`) is on the chain. Without anchors a hash
/// chain cannot tell that entries were cut off the end, or that the whole file was rebuilt by
/// someone able to write it; an anchor from before the damage can.
///
/// Across segments: each sealed segment's name must be its first entry's seq (a renamed,
/// reordered segment is `Reordered`), each file continues the one before it (a missing
/// segment is `DeletedOrMissing`), and a trail that starts after seq 1 must record the removal
/// of what came before ([`AuditEvent::SegmentsRemoved`]).
pub fn verify_with_anchors(
    path: impl AsRef<Path>,
    anchors: &[AuditReceipt],
) -> Result<VerifyReport, AuditError> {
    let path = path.as_ref();
    let sealed = segments::sealed_segments(path).map_err(|e| AuditError::io(path, "list", e))?;
    let mut files: Vec<(Option<u64>, PathBuf)> = sealed
        .into_iter()
        .map(|(seq, file)| (Some(seq), file))
        .collect();
    if files.is_empty() || path.exists() {
        // Without segments the active file must be there (opening it reports why not).
        files.push((None, path.to_path_buf()));
    }
    let mut anchors = anchors.to_vec();
    anchors.sort_by_key(|a| a.seq);
    let mut walk = Walk {
        anchors: anchors.into_iter().peekable(),
        report: VerifyReport {
            verified_entries: 0,
            head: None,
            first_break: None,
        },
        prev_hash: EntryHash::GENESIS,
        expected_seq: 1,
        unexplained_start: None,
        line_no: 0,
        file: None,
    };
    for (named_seq, file) in &files {
        if !walk.file_from(file, *named_seq)? {
            return Ok(walk.report);
        }
    }
    Ok(walk.finish())
}

/// The walk's state, carried from one file of the trail to the next.
struct Walk {
    anchors: std::iter::Peekable<std::vec::IntoIter<AuditReceipt>>,
    report: VerifyReport,
    prev_hash: EntryHash,
    expected_seq: u64,
    /// The trail began after seq 1 (at this seq, in this file) and no removal record explains
    /// it yet.
    unexplained_start: Option<(u64, Option<PathBuf>)>,
    line_no: u64,
    file: Option<PathBuf>,
}

impl Walk {
    fn broke(&mut self, kind: BreakKind, seq: Option<u64>, detail: String) -> bool {
        self.report.first_break = Some(ChainBreak {
            file: self.file.clone(),
            line: self.line_no,
            seq,
            kind,
            detail,
        });
        false
    }

    /// Walks one file; `false` once a break is found.
    fn file_from(&mut self, path: &Path, named_seq: Option<u64>) -> Result<bool, AuditError> {
        let file = File::open(path).map_err(|e| AuditError::io(path, "open", e))?;
        let mut reader = BufReader::new(file);
        self.file = Some(path.to_path_buf());
        self.line_no = 0;
        let mut current = read_line(&mut reader, path)?;
        if let Some(named) = named_seq {
            let first = current.as_ref().and_then(|(b, _)| chain::peek_seq(b));
            if first != Some(named) {
                self.line_no = 1;
                return Ok(self.broke(
                    BreakKind::Reordered,
                    first,
                    format!(
                        "the segment is named for seq {named} but begins with {}: segments were \
                         renamed or their contents swapped",
                        first.map_or("no entry".to_owned(), |s| format!("seq {s}"))
                    ),
                ));
            }
        }
        while let Some((bytes, terminated)) = current.take() {
            self.line_no += 1;
            let next = read_line(&mut reader, path)?;
            if !self.line(&bytes, terminated, next.as_ref()) {
                return Ok(false);
            }
            current = next;
        }
        Ok(true)
    }

    /// Checks one line against the chain so far; `false` once a break is found.
    fn line(&mut self, bytes: &[u8], terminated: bool, next: Option<&(Vec<u8>, bool)>) -> bool {
        if !terminated {
            return self.broke(
                BreakKind::Torn,
                chain::peek_seq(bytes),
                format!(
                    "the last line has no newline ({} bytes): a write cut short",
                    bytes.len()
                ),
            );
        }
        let line = match chain::parse_line(bytes) {
            Ok(line) => line,
            Err(problem) => {
                let seq = chain::peek_seq(bytes);
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
                return self.broke(kind, seq, detail);
            }
        };
        let entry = match line.decode() {
            Ok(entry) => entry,
            Err(why) => return self.broke(BreakKind::Malformed, Some(line.seq), why),
        };

        let first_of_trail = self.report.verified_entries == 0 && self.expected_seq == 1;
        if first_of_trail && line.seq > 1 {
            // A late start: the removed segments' last hash is the one thing it can link to.
            self.unexplained_start = Some((line.seq, self.file.clone()));
            self.expected_seq = line.seq;
            self.prev_hash = line.prev;
        }
        if line.seq != self.expected_seq {
            let (kind, detail) = self.out_of_place(&line, next);
            return self.broke(kind, Some(line.seq), detail);
        }
        if line.prev != self.prev_hash {
            return self.broke(
                BreakKind::Edited,
                Some(line.seq),
                "does not link to the entry before it: one of the two was rewritten".to_owned(),
            );
        }
        while let Some(anchor) = self.anchors.next_if(|a| a.seq <= line.seq) {
            if anchor.seq == line.seq && anchor.hash != line.hash {
                return self.broke(
                    BreakKind::AnchorMismatch,
                    Some(line.seq),
                    format!(
                        "the anchor says {} but the log has {}: the log was rewritten",
                        anchor.hash, line.hash
                    ),
                );
            }
        }
        if let (Some((start, _)), AuditEvent::SegmentsRemoved { through_seq, .. }) =
            (&self.unexplained_start, &entry.event)
            && through_seq.saturating_add(1) >= *start
        {
            self.unexplained_start = None;
        }

        self.prev_hash = line.hash;
        self.expected_seq = line.seq.saturating_add(1);
        self.report.verified_entries += 1;
        self.report.head = Some(line.receipt());
        true
    }

    /// What a line with an unexpected seq means.
    fn out_of_place(
        &self,
        line: &chain::Line,
        next: Option<&(Vec<u8>, bool)>,
    ) -> (BreakKind, String) {
        let expected_seq = self.expected_seq;
        let last_seq = expected_seq.checked_sub(1).filter(|s| *s > 0);
        if Some(line.seq) == last_seq {
            let detail = if line.hash == self.prev_hash {
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
            let next_seq = next.and_then(|(b, _)| chain::peek_seq(b));
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
        }
    }

    /// After the last file: an unexplained late start, or an anchor past the end.
    fn finish(mut self) -> VerifyReport {
        if let Some((start, file)) = self.unexplained_start {
            self.report.first_break = Some(ChainBreak {
                file,
                line: 1,
                seq: Some(start),
                kind: BreakKind::DeletedOrMissing,
                detail: format!(
                    "the trail starts at seq {start}: the entries before it are missing and no \
                     removal of them (segments_removed) is recorded"
                ),
            });
            return self.report;
        }
        if let Some(anchor) = self.anchors.next() {
            self.report.first_break = Some(ChainBreak {
                file: self.file.clone(),
                line: self.line_no + 1,
                seq: Some(anchor.seq),
                kind: BreakKind::Truncated,
                detail: format!(
                    "the log ends at seq {} but an anchor records seq {}: entries were cut off \
                     the end",
                    self.expected_seq - 1,
                    anchor.seq
                ),
            });
        }
        self.report
    }
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
