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
    /// The file of the trail it is in (a sealed segment or the active file), when known; not
    /// part of the `Display` form, which the caller places (`cardgate audit verify` names a
    /// segment other than the file it was asked about).
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

    /// Walks one file; `false` once a break is found. Lines are read in chunks, each chunk's
    /// lines checked on their own in parallel ([`check`]), then linked in order; the last
    /// line of a chunk waits for the next chunk, whose first line it may need to be judged.
    fn file_from(&mut self, path: &Path, named_seq: Option<u64>) -> Result<bool, AuditError> {
        let file = File::open(path).map_err(|e| AuditError::io(path, "open", e))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        self.file = Some(path.to_path_buf());
        self.line_no = 0;
        let mut pending: Vec<Verdict> = Vec::new();
        let mut first = true;
        loop {
            let chunk = read_chunk(&mut reader, path)?;
            let at_end = chunk.is_empty();
            pending.extend(check_all(&chunk));
            if first {
                first = false;
                if let Some(named) = named_seq {
                    let begins = pending.first().and_then(Verdict::seq);
                    if begins != Some(named) {
                        self.line_no = 1;
                        return Ok(self.broke(
                            BreakKind::Reordered,
                            begins,
                            format!(
                                "the segment is named for seq {named} but begins with {}: \
                                 segments were renamed or their contents swapped",
                                begins.map_or("no entry".to_owned(), |s| format!("seq {s}"))
                            ),
                        ));
                    }
                }
            }
            let judge = if at_end {
                pending.len()
            } else {
                pending.len().saturating_sub(1)
            };
            for i in 0..judge {
                self.line_no += 1;
                if !self.line(&pending[i], pending.get(i + 1)) {
                    return Ok(false);
                }
            }
            pending.drain(..judge);
            if at_end {
                return Ok(true);
            }
        }
    }

    /// Links one checked line to the chain so far; `false` once a break is found.
    fn line(&mut self, verdict: &Verdict, next: Option<&Verdict>) -> bool {
        let line = match verdict {
            Verdict::Sound(line) => line,
            Verdict::Broken { kind, seq, detail } => {
                return self.broke(*kind, *seq, detail.clone());
            }
        };
        let first_of_trail = self.report.verified_entries == 0 && self.expected_seq == 1;
        if first_of_trail && line.seq > 1 {
            // A late start: the removed segments' last hash is the one thing it can link to.
            self.unexplained_start = Some((line.seq, self.file.clone()));
            self.expected_seq = line.seq;
            self.prev_hash = line.prev;
        }
        if line.seq != self.expected_seq {
            let (kind, detail) = self.out_of_place(line, next.and_then(Verdict::seq));
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
        if let (Some((start, _)), Some(through_seq)) =
            (&self.unexplained_start, line.removed_through)
            && through_seq.saturating_add(1) >= *start
        {
            self.unexplained_start = None;
        }

        self.prev_hash = line.hash;
        self.expected_seq = line.seq.saturating_add(1);
        self.report.verified_entries += 1;
        self.report.head = Some(AuditReceipt {
            seq: line.seq,
            hash: line.hash,
        });
        true
    }

    /// What a line with an unexpected seq means.
    fn out_of_place(&self, line: &Checked, next_seq: Option<u64>) -> (BreakKind, String) {
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

/// Lines per chunk: enough to keep both cores busy, few enough to keep memory flat.
const CHUNK_LINES: usize = 16 * 1024;

/// Up to [`CHUNK_LINES`] lines, each with whether it ended in a newline; empty at end of file.
fn read_chunk(
    reader: &mut BufReader<File>,
    path: &Path,
) -> Result<Vec<(Vec<u8>, bool)>, AuditError> {
    let mut chunk = Vec::with_capacity(CHUNK_LINES);
    while chunk.len() < CHUNK_LINES {
        let mut buf = Vec::new();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| AuditError::io(path, "read", e))?;
        if n == 0 {
            break;
        }
        let terminated = buf.last() == Some(&b'\n');
        if terminated {
            buf.pop();
        }
        chunk.push((buf, terminated));
    }
    Ok(chunk)
}

/// A line checked on its own: its hash, form, timestamp and event, not yet its place.
struct Checked {
    seq: u64,
    prev: EntryHash,
    hash: EntryHash,
    /// `Some(through_seq)` for a `segments_removed` entry.
    removed_through: Option<u64>,
}

/// What [`check`] found.
enum Verdict {
    Sound(Checked),
    Broken {
        kind: BreakKind,
        seq: Option<u64>,
        detail: String,
    },
}

impl Verdict {
    /// The line's seq, as far as it can be read.
    fn seq(&self) -> Option<u64> {
        match self {
            Verdict::Sound(line) => Some(line.seq),
            Verdict::Broken { seq, .. } => *seq,
        }
    }
}

/// Checks every line of a chunk, on as many threads as there are cores.
fn check_all(chunk: &[(Vec<u8>, bool)]) -> Vec<Verdict> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || chunk.len() < 256 {
        return chunk.iter().map(|(b, t)| check(b, *t)).collect();
    }
    let per = chunk.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut parts = chunk.chunks(per);
        // The first part on this thread, the others on their own.
        let here = parts.next().unwrap_or_default();
        let others: Vec<_> = parts
            .map(|part| scope.spawn(move || part.iter().map(|(b, t)| check(b, *t)).collect()))
            .collect();
        let mut verdicts: Vec<Verdict> = here.iter().map(|(b, t)| check(b, *t)).collect();
        for part in others {
            verdicts.extend(part.join().unwrap_or_else(|_| {
                vec![Verdict::Broken {
                    kind: BreakKind::Malformed,
                    seq: None,
                    detail: "the verifier failed on this part of the file".to_owned(),
                }]
            }));
        }
        verdicts
    })
}

/// One line on its own: complete, an entry, its own hash, the log's form, a known event.
fn check(bytes: &[u8], terminated: bool) -> Verdict {
    let broken = |kind, seq, detail| Verdict::Broken { kind, seq, detail };
    if !terminated {
        return broken(
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
            return match problem {
                LineProblem::Malformed(why) => broken(BreakKind::Malformed, seq, why),
                LineProblem::HashMismatch => broken(
                    BreakKind::Edited,
                    seq,
                    "the entry's content does not match its hash".to_owned(),
                ),
                LineProblem::NotCanonical => broken(
                    BreakKind::Edited,
                    seq,
                    "the line's bytes are not as the log wrote them".to_owned(),
                ),
            };
        }
    };
    match line.decode() {
        Ok(entry) => Verdict::Sound(Checked {
            seq: line.seq,
            prev: line.prev,
            hash: line.hash,
            removed_through: match entry.event {
                AuditEvent::SegmentsRemoved { through_seq, .. } => Some(through_seq),
                _ => None,
            },
        }),
        Err(why) => broken(BreakKind::Malformed, Some(line.seq), why),
    }
}
