//! `cardgate audit tail` and support bundles: the last entries of a log, read from the end,
//! shown even when some of them are damaged (the verifier is the authority on damage).

use std::fs::File;
use std::path::Path;

use crate::chain::{self, AuditEntry, LineProblem};
use crate::error::AuditError;
use crate::read;
use crate::segments;

/// One line of a tail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TailItem {
    /// An entry that parses and matches its own hash (its links are `verify`'s business).
    Entry(Box<AuditEntry>),
    /// A line that is not a sound entry, shown as text so support still sees it.
    Unreadable {
        /// The line, decoded lossily as UTF-8.
        text: String,
        /// Why it is not shown as an entry.
        problem: String,
    },
}

/// The last `n` lines of the trail at `path`, oldest first, plus a torn final line if there is
/// one (as [`TailItem::Unreadable`]). Reads only the end of the active file and, when it holds
/// fewer than `n` lines (just sealed), the end of the newest sealed segments.
pub fn tail(path: impl AsRef<Path>, n: usize) -> Result<Vec<TailItem>, AuditError> {
    let path = path.as_ref();
    let (mut out, remainder) = lines_of(path, n)?;
    let sealed = segments::sealed_segments(path).map_err(|e| AuditError::io(path, "list", e))?;
    for (_, segment) in sealed.iter().rev() {
        if out.len() >= n {
            break;
        }
        let (mut earlier, _) = lines_of(segment, n - out.len())?;
        earlier.append(&mut out);
        out = earlier;
    }
    if !remainder.is_empty() {
        out.push(TailItem::Unreadable {
            text: String::from_utf8_lossy(&remainder).into_owned(),
            problem: "torn: a write cut short, never acknowledged".to_owned(),
        });
    }
    Ok(out)
}

/// The last `n` complete lines of one file as items, and its unterminated remainder.
fn lines_of(path: &Path, n: usize) -> Result<(Vec<TailItem>, Vec<u8>), AuditError> {
    let file = File::open(path).map_err(|e| AuditError::io(path, "open", e))?;
    let len = file
        .metadata()
        .map_err(|e| AuditError::io(path, "stat", e))?
        .len();
    let bytes = read::read_tail(&file, len, n).map_err(|e| AuditError::io(path, "read", e))?;
    let items = bytes
        .lines
        .iter()
        .map(|(_, line)| {
            let unreadable = |problem: String| TailItem::Unreadable {
                text: String::from_utf8_lossy(line).into_owned(),
                problem,
            };
            match chain::parse_line(line) {
                Ok(parsed) => match parsed.decode() {
                    Ok(entry) => TailItem::Entry(Box::new(entry)),
                    Err(why) => unreadable(why),
                },
                Err(LineProblem::Malformed(why)) => unreadable(why),
                Err(LineProblem::HashMismatch) => {
                    unreadable("edited: content does not match its hash".to_owned())
                }
                Err(LineProblem::NotCanonical) => {
                    unreadable("edited: not as the log wrote it".to_owned())
                }
            }
        })
        .collect();
    Ok((items, bytes.remainder))
}
