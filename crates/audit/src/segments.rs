//! Segments: a trail that lives for years is the active file plus sealed segments beside it.
//!
//! The active file keeps the configured path (`audit.jsonl`); when it is due (by size, or at
//! the first entry of a new UTC day) it is renamed to `audit.jsonl.<first seq, 20 digits>` and
//! a new, empty active file takes its place. The chain runs straight through: a segment's first
//! entry carries the previous segment's last hash as its `prev` and the next `seq`, so a
//! missing, reordered or edited segment breaks the walk like a missing, reordered or edited
//! line. Retention removes the oldest sealed segments after recording the removal on the chain
//! ([`crate::AuditEvent::SegmentsRemoved`]), so the verifier can tell a trail that starts late
//! by policy from one whose beginning was deleted.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::chain::{self, AuditReceipt};
use crate::read;

/// When the active file is sealed and how long sealed segments are kept. The default seals
/// nothing and keeps everything (one file, as before segments existed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentPolicy {
    /// Seal the active file once it holds at least this many bytes.
    pub max_bytes: Option<u64>,
    /// Seal the active file at the first entry of a new UTC day.
    pub daily: bool,
    /// Remove sealed segments whose last entry is older than this many days (the removal
    /// recorded on the chain first). `None`: keep every segment.
    pub keep_days: Option<u32>,
}

/// Digits in a sealed segment's name: any `u64` sequence number, zero-padded, so names sort
/// in chain order.
const SEQ_DIGITS: usize = 20;

/// The name a segment whose first entry is `first_seq` is sealed under, beside `active`.
pub(crate) fn sealed_path(active: &Path, first_seq: u64) -> PathBuf {
    let mut name = active.file_name().map(OsString::from).unwrap_or_default();
    name.push(format!(".{first_seq:0SEQ_DIGITS$}"));
    active.with_file_name(name)
}

/// The sealed segments beside `active`, in chain order, with the first seq their name says.
pub fn sealed_segments(active: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let dir = match active.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Some(base) = active.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{base}.");
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(digits) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(seq) = digits.parse::<u64>() {
            found.push((seq, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Every file of the trail in chain order: the sealed segments, then the active file (when it
/// exists).
pub fn trail_files(active: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = sealed_segments(active)?
        .into_iter()
        .map(|(_, path)| path)
        .collect();
    if active.exists() {
        files.push(active.to_path_buf());
    }
    Ok(files)
}

/// The last complete entry of the file at `path` (its receipt and its `at`), `None` when it
/// has none.
pub(crate) fn last_entry(path: &Path) -> io::Result<Option<(AuditReceipt, String)>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let tail = read::read_tail(&file, len, 1)?;
    Ok(tail
        .lines
        .last()
        .and_then(|(_, bytes)| chain::parse_line(bytes).ok())
        .map(|line| (line.receipt(), line.at)))
}

/// The first complete entry of `file` (its seq and its `at`), `None` when it has none.
pub(crate) fn first_entry(file: &File) -> io::Result<Option<(u64, String)>> {
    Ok(read::read_head_line(file)?
        .and_then(|bytes| chain::parse_line(&bytes).ok())
        .map(|line| (line.seq, line.at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_names_sort_in_chain_order_and_nothing_else_counts() {
        let dir = tempfile::tempdir().unwrap();
        let active = dir.path().join("audit.jsonl");
        for seq in [120, 1, 9] {
            std::fs::write(sealed_path(&active, seq), b"").unwrap();
        }
        for other in [
            "audit.jsonl.torn",
            "audit.jsonl.12",
            "other.jsonl.00000000000000000001",
        ] {
            std::fs::write(dir.path().join(other), b"").unwrap();
        }
        let seqs: Vec<u64> = sealed_segments(&active)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(seqs, [1, 9, 120]);
        assert!(
            sealed_path(&active, 9)
                .to_string_lossy()
                .ends_with("audit.jsonl.00000000000000000009")
        );
    }
}
