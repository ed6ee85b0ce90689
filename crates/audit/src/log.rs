//! The writer: [`AuditLog`] opens a log (recovering the head and repairing a torn final line),
//! and appends entries durably: an entry is acknowledged (its [`AuditReceipt`] returned) only
//! after the whole line is written and `fdatasync`ed.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ring::digest;
use time::OffsetDateTime;

use crate::chain::{self, AuditReceipt, EntryHash};
use crate::error::AuditError;
use crate::event::AuditEvent;
use crate::read;
use crate::verify::{self, BreakKind, ChainBreak};

/// The longest line (entry) the log writes or will discard as torn, in bytes. Real entries are
/// a few hundred bytes; the bound stops a misdirected `open` (pointed at a file that is not an
/// audit log) from truncating a large file as if it were one torn entry.
pub const MAX_LINE: usize = 64 * 1024;

/// File mode for a new log: the holder UUIDs and caller executables in it are personal data,
/// readable by the agent and its group (auditors), nobody else.
const LOG_MODE: u32 = 0o640;

/// A torn final line found and discarded by [`AuditLog::open`]: the bytes of a write a crash
/// interrupted. It was never acknowledged (acknowledgement follows the `fsync` of the whole
/// line, newline included), so no acknowledged entry is lost; the bytes are kept in the sidecar
/// file for the record all the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Where the torn bytes started in the log.
    pub offset: u64,
    /// How many bytes were discarded.
    pub length: u64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// The sidecar file the bytes were appended to (`<log>.torn`).
    pub saved_to: PathBuf,
}

impl TornTail {
    /// The entry the daemon appends once it has a timestamp, so the repair is itself on the
    /// chain.
    pub fn to_event(&self) -> AuditEvent {
        AuditEvent::TornTailDiscarded {
            offset: self.offset,
            length: self.length,
            sha256: self.sha256.clone(),
        }
    }
}

/// An open audit log, the only writer of its file.
///
/// One process (the daemon) owns the log; a second writer would interleave lines and break the
/// chain, which `verify` would then report. Not `Clone`: share it behind the daemon's own lock
/// or task.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    /// Length of the verified, complete part of the file: where the next line goes, and where
    /// a failed write is rolled back to.
    len: u64,
    head: Option<AuditReceipt>,
    recovered: Option<TornTail>,
    poisoned: bool,
}

impl AuditLog {
    /// Opens (or creates) the log at `path` and checks its end.
    ///
    /// - A new or empty file starts a chain at seq 1.
    /// - The last two complete lines must verify (own hash, form, link between them); the
    ///   head (last seq and hash) is recovered from them. If they do not, the whole file is
    ///   walked and [`AuditError::Corrupt`] reports the first broken place: the agent must not
    ///   extend a damaged chain.
    /// - An unterminated final line is a torn write: its bytes are appended to `<path>.torn`
    ///   and fsynced, then the log is truncated to its last complete line and fsynced;
    ///   [`AuditLog::recovered_torn_tail`] says so, and the caller should append
    ///   [`TornTail::to_event`]. A remainder longer than [`MAX_LINE`] or not shaped like the
    ///   start of an entry is not discarded: [`AuditError::Corrupt`].
    ///
    /// Only the end is checked here, so start-up stays fast on a large log; the full walk is
    /// [`crate::verify`].
    pub fn open(path: impl AsRef<Path>) -> Result<AuditLog, AuditError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(LOG_MODE)
            .open(&path)
            .map_err(|e| AuditError::io(&path, "open", e))?;
        let len = file
            .metadata()
            .map_err(|e| AuditError::io(&path, "stat", e))?
            .len();
        if len == 0 {
            // A new file: make its directory entry durable too, or a crash could lose the file
            // and with it the first acknowledged entries.
            sync_parent(&path)?;
        }

        let tail = read::read_tail(&file, len, 2).map_err(|e| AuditError::io(&path, "read", e))?;
        let mut log = AuditLog {
            path,
            file,
            len: tail.remainder_offset,
            head: None,
            recovered: None,
            poisoned: false,
        };
        if !tail.remainder.is_empty() {
            log.discard_torn(tail.remainder_offset, &tail.remainder)?;
        }

        let mut lines = Vec::with_capacity(2);
        for (_, bytes) in &tail.lines {
            match chain::parse_line(bytes) {
                Ok(line) => lines.push(line),
                Err(_) => return Err(log.corrupt()),
            }
        }
        let link_ok = match lines.as_slice() {
            [] => true,
            [only] => !tail.from_start || (only.seq == 1 && only.prev == EntryHash::GENESIS),
            [before, last, ..] => {
                last.seq == before.seq.wrapping_add(1)
                    && last.prev == before.hash
                    && (!tail.from_start || (before.seq == 1 && before.prev == EntryHash::GENESIS))
            }
        };
        if !link_ok {
            return Err(log.corrupt());
        }
        log.head = lines.last().map(chain::Line::receipt);
        Ok(log)
    }

    /// Appends one entry and returns its receipt once the line is on disk.
    ///
    /// `at` is when the event happened, from the caller's clock (the log reads no clock, so
    /// tests control time); it is written in UTC. Order of work: encode, one `write` of the
    /// whole line with its newline (the file is opened `O_APPEND`), `fdatasync`, then `Ok`. The
    /// caller acknowledges the action only after `Ok`.
    ///
    /// On any error nothing was recorded: the file is truncated back to its previous length
    /// and synced, so a later append continues a clean chain (after a full disk, once space is
    /// freed). If that rollback fails too, the log refuses further appends
    /// ([`AuditError::Poisoned`]) until reopened, because its end is then unknown.
    pub fn append(
        &mut self,
        at: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<AuditReceipt, AuditError> {
        let receipts = self.append_batch(&[(at, event)])?;
        receipts
            .first()
            .copied()
            .ok_or_else(|| AuditError::Poisoned {
                path: self.path.clone(),
            })
    }

    /// Appends several entries with one `write` and one `fdatasync` (group commit) and returns
    /// their receipts, in order, once all of them are on disk.
    ///
    /// The daemon's audit writer collects the entries that arrive while the previous sync
    /// runs and commits them together, so many concurrent callers share one sync instead of
    /// queueing for one each. All or nothing: on any error none of the entries was recorded
    /// (the rollback of [`AuditLog::append`] applies to the whole batch). A crash mid-write
    /// can leave some of the batch's lines complete on disk, unacknowledged, exactly as a
    /// single append's line can be complete but unsynced; the torn remainder is handled by
    /// [`AuditLog::open`].
    pub fn append_batch(
        &mut self,
        entries: &[(OffsetDateTime, &AuditEvent)],
    ) -> Result<Vec<AuditReceipt>, AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned {
                path: self.path.clone(),
            });
        }
        let mut head = self.head;
        let mut bytes = Vec::new();
        let mut receipts = Vec::with_capacity(entries.len());
        for (at, event) in entries {
            let (seq, prev) = match head {
                None => (1, EntryHash::GENESIS),
                Some(head) => match head.seq.checked_add(1) {
                    Some(seq) => (seq, head.hash),
                    None => {
                        return Err(AuditError::Corrupt {
                            path: self.path.clone(),
                            at: ChainBreak {
                                line: 0,
                                seq: Some(head.seq),
                                kind: BreakKind::Malformed,
                                detail: "sequence numbers exhausted".to_owned(),
                            },
                        });
                    }
                },
            };
            let at = chain::format_at(*at)?;
            let event_json = serde_json::to_string(event).map_err(AuditError::Encode)?;
            let hash = chain::entry_hash(seq, &at, &prev, &event_json);
            let mut line = chain::encode_line(seq, &at, &prev, &event_json, &hash)
                .map_err(AuditError::Encode)?;
            line.push(b'\n');
            if line.len() > MAX_LINE {
                return Err(AuditError::EntryTooLarge {
                    size: line.len(),
                    max: MAX_LINE,
                });
            }
            bytes.extend_from_slice(&line);
            let receipt = AuditReceipt { seq, hash };
            receipts.push(receipt);
            head = Some(receipt);
        }
        if bytes.is_empty() {
            return Ok(receipts);
        }

        let written = self
            .file
            .write_all(&bytes)
            .map_err(|e| ("write", e))
            .and_then(|()| self.file.sync_data().map_err(|e| ("sync", e)));
        if let Err((op, source)) = written {
            self.roll_back();
            return Err(AuditError::io(&self.path, op, source));
        }
        self.len += bytes.len() as u64;
        self.head = head;
        Ok(receipts)
    }

    /// The last acknowledged entry (`None` for an empty log): publish it to anchor the log.
    pub fn head(&self) -> Option<AuditReceipt> {
        self.head
    }

    /// The torn final line `open` discarded, if any.
    pub fn recovered_torn_tail(&self) -> Option<&TornTail> {
        self.recovered.as_ref()
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Truncates back to the last acknowledged entry after a failed write or sync. If that
    /// fails, the end of the file is unknown: refuse further appends.
    fn roll_back(&mut self) {
        let ok = self.file.set_len(self.len).is_ok() && self.file.sync_all().is_ok();
        if !ok {
            self.poisoned = true;
        }
    }

    /// Keeps a torn remainder in the sidecar, then cuts it off the log.
    fn discard_torn(&mut self, offset: u64, bytes: &[u8]) -> Result<(), AuditError> {
        let looks_torn = bytes.len() <= MAX_LINE
            && (bytes.first() == Some(&b'{') || bytes.iter().all(|b| *b == 0));
        if !looks_torn {
            return Err(AuditError::Corrupt {
                path: self.path.clone(),
                at: ChainBreak {
                    line: 0,
                    seq: None,
                    kind: BreakKind::Torn,
                    detail: format!(
                        "the file ends in {} bytes that do not look like one torn entry; \
                         not discarding them",
                        bytes.len()
                    ),
                },
            });
        }
        let sha256 = hex::encode(digest::digest(&digest::SHA256, bytes));
        let mut sidecar_name = OsString::from(self.path.as_os_str());
        sidecar_name.push(".torn");
        let sidecar = PathBuf::from(sidecar_name);
        let record = serde_json::json!({
            "log_offset": offset,
            "length": bytes.len(),
            "sha256": sha256,
            "bytes_hex": hex::encode(bytes),
        });
        let mut side = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(LOG_MODE)
            .open(&sidecar)
            .map_err(|e| AuditError::io(&sidecar, "open", e))?;
        writeln!(side, "{record}").map_err(|e| AuditError::io(&sidecar, "write", e))?;
        side.sync_all()
            .map_err(|e| AuditError::io(&sidecar, "sync", e))?;
        sync_parent(&sidecar)?;

        self.file
            .set_len(offset)
            .map_err(|e| AuditError::io(&self.path, "truncate", e))?;
        self.file
            .sync_all()
            .map_err(|e| AuditError::io(&self.path, "sync", e))?;
        self.recovered = Some(TornTail {
            offset,
            length: bytes.len() as u64,
            sha256,
            saved_to: sidecar,
        });
        Ok(())
    }

    /// The error for a damaged end: walk the whole file for the first broken place.
    fn corrupt(&self) -> AuditError {
        let at = match verify::verify(&self.path) {
            Ok(report) => report.first_break,
            Err(e) => return e,
        };
        AuditError::Corrupt {
            path: self.path.clone(),
            at: at.unwrap_or_else(|| ChainBreak {
                line: 0,
                seq: None,
                kind: BreakKind::Malformed,
                detail: "the end of the log does not verify".to_owned(),
            }),
        }
    }
}

/// `fsync` on the directory holding `path`, so a newly created file survives a crash.
fn sync_parent(path: &Path) -> Result<(), AuditError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io(parent, "sync directory", e))
}
