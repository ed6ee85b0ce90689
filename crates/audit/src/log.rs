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
use crate::segments::{self, SegmentPolicy};
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
    policy: SegmentPolicy,
    /// The active file's first entry (seq, UTC day), `None` while it is empty: the name it is
    /// sealed under and the day it belongs to.
    active_first: Option<(u64, time::Date)>,
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
    /// [`crate::verify`]. No segments are sealed ([`AuditLog::open_with`] for that).
    pub fn open(path: impl AsRef<Path>) -> Result<AuditLog, AuditError> {
        AuditLog::open_with(path, SegmentPolicy::default())
    }

    /// As [`AuditLog::open`], sealing segments and removing old ones under `policy`. The
    /// head is recovered from the active file or, when it holds fewer than two entries, with
    /// the newest sealed segment's last entry, so start-up reads a few kilobytes whatever the
    /// trail's length.
    pub fn open_with(
        path: impl AsRef<Path>,
        policy: SegmentPolicy,
    ) -> Result<AuditLog, AuditError> {
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
            policy,
            active_first: None,
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
        // Where the active file's first entry must link: the newest sealed segment's last
        // entry, or the genesis of the chain. Only read when the active file starts within
        // the two lines in hand (a fresh active file: its first line is among them).
        let sealed_head = if tail.from_start {
            log.newest_sealed_head()?
        } else {
            None
        };
        let starts_right = |first: &chain::Line| match sealed_head {
            Some(head) => first.seq == head.seq.wrapping_add(1) && first.prev == head.hash,
            None => first.seq == 1 && first.prev == EntryHash::GENESIS,
        };
        let link_ok = match lines.as_slice() {
            [] => true,
            [only] => !tail.from_start || starts_right(only),
            [before, last, ..] => {
                last.seq == before.seq.wrapping_add(1)
                    && last.prev == before.hash
                    && (!tail.from_start || starts_right(before))
            }
        };
        if !link_ok {
            return Err(log.corrupt());
        }
        log.head = lines.last().map(chain::Line::receipt).or(sealed_head);
        if log.len > 0 {
            log.active_first = segments::first_entry(&log.file)
                .map_err(|e| AuditError::io(&log.path, "read", e))?
                .and_then(|(seq, at)| chain::parse_at(&at).ok().map(|at| (seq, utc_day(at))));
        }
        Ok(log)
    }

    /// The last entry of the newest sealed segment, if there is one.
    fn newest_sealed_head(&self) -> Result<Option<AuditReceipt>, AuditError> {
        let sealed = segments::sealed_segments(&self.path)
            .map_err(|e| AuditError::io(&self.path, "list", e))?;
        let Some((_, newest)) = sealed.last() else {
            return Ok(None);
        };
        match segments::last_entry(newest).map_err(|e| AuditError::io(newest, "read", e))? {
            Some((receipt, _)) => Ok(Some(receipt)),
            None => Err(self.corrupt()),
        }
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
    ///
    /// Under a [`SegmentPolicy`], a due active file is sealed first and expired segments are
    /// removed (their removal appended as its own entry before the files go).
    pub fn append_batch(
        &mut self,
        entries: &[(OffsetDateTime, &AuditEvent)],
    ) -> Result<Vec<AuditReceipt>, AuditError> {
        if let Some((at, _)) = entries.first() {
            self.seal_if_due(*at)?;
        }
        self.write_entries(entries)
    }

    /// Encodes `entries` after the head, writes them in one `write` and syncs.
    fn write_entries(
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
        // The batch's first entry (seq, UTC day): the active file's first when it is empty.
        let mut first = None;
        for (at, event) in entries {
            let (seq, prev) = match head {
                None => (1, EntryHash::GENESIS),
                Some(head) => match head.seq.checked_add(1) {
                    Some(seq) => (seq, head.hash),
                    None => {
                        return Err(AuditError::Corrupt {
                            path: self.path.clone(),
                            at: ChainBreak {
                                file: Some(self.path.clone()),
                                line: 0,
                                seq: Some(head.seq),
                                kind: BreakKind::Malformed,
                                detail: "sequence numbers exhausted".to_owned(),
                            },
                        });
                    }
                },
            };
            if first.is_none() {
                first = Some((seq, utc_day(*at)));
            }
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
        if self.active_first.is_none() {
            self.active_first = first;
        }
        self.len += bytes.len() as u64;
        self.head = head;
        Ok(receipts)
    }

    /// Seals the active file when the policy says it is due before an entry at `at`, then
    /// applies retention.
    fn seal_if_due(&mut self, at: OffsetDateTime) -> Result<(), AuditError> {
        if self.poisoned {
            return Ok(());
        }
        let Some((first_seq, day)) = self.active_first else {
            return Ok(());
        };
        let by_size = self.policy.max_bytes.is_some_and(|max| self.len >= max);
        let by_day = self.policy.daily && utc_day(at) != day;
        if !(by_size || by_day) {
            return Ok(());
        }
        self.seal(first_seq)?;
        if let Some(keep_days) = self.policy.keep_days {
            self.remove_expired(at, keep_days)?;
        }
        Ok(())
    }

    /// Renames the active file to its sealed name and starts an empty one. Each step is
    /// durable before the next: after a crash between them, `open` finds either the old
    /// active file or the sealed segment and no (or an empty) active file, and the chain
    /// continues from the segment's last entry either way.
    fn seal(&mut self, first_seq: u64) -> Result<(), AuditError> {
        let sealed = segments::sealed_path(&self.path, first_seq);
        if sealed.exists() {
            // Never overwrite: a segment of that name is somebody's doing, not ours.
            return Err(AuditError::io(
                &sealed,
                "seal",
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a sealed segment of this name exists already",
                ),
            ));
        }
        std::fs::rename(&self.path, &sealed).map_err(|e| AuditError::io(&self.path, "seal", e))?;
        sync_parent(&self.path)?;
        let fresh = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(LOG_MODE)
            .open(&self.path);
        match fresh {
            Ok(file) => {
                self.file = file;
                self.len = 0;
                self.active_first = None;
                sync_parent(&self.path)
            }
            Err(e) => {
                // The handle now names the sealed file: appending there would grow a sealed
                // segment. Refuse until reopened (open then starts the active file afresh).
                self.poisoned = true;
                Err(AuditError::io(&self.path, "create", e))
            }
        }
    }

    /// Removes the oldest sealed segments whose last entry is older than `keep_days` before
    /// `now`, recording the removal on the chain first (in the active file, so the head stays
    /// on disk whichever segments go).
    fn remove_expired(&mut self, now: OffsetDateTime, keep_days: u32) -> Result<(), AuditError> {
        let limit = now - time::Duration::days(i64::from(keep_days));
        let limit = chain::format_at(limit)?;
        let sealed = segments::sealed_segments(&self.path)
            .map_err(|e| AuditError::io(&self.path, "list", e))?;
        let mut expired = Vec::new();
        let mut through = None;
        for (_, path) in &sealed {
            match segments::last_entry(path).map_err(|e| AuditError::io(path, "read", e))? {
                // Canonical RFC 3339 UTC timestamps compare as text.
                Some((receipt, at)) if at < limit => {
                    expired.push(path.clone());
                    through = Some(receipt);
                }
                _ => break,
            }
        }
        let Some(through) = through else {
            return Ok(());
        };
        let event = AuditEvent::SegmentsRemoved {
            through_seq: through.seq,
            through_hash: through.hash.to_string(),
            segments: expired.len() as u64,
            keep_days,
        };
        self.write_entries(&[(now, &event)])?;
        for path in &expired {
            std::fs::remove_file(path).map_err(|e| AuditError::io(path, "remove", e))?;
        }
        sync_parent(&self.path)
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
                    file: Some(self.path.clone()),
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

    /// The error for a damaged end: walk the whole trail for the first broken place.
    fn corrupt(&self) -> AuditError {
        let at = match verify::verify(&self.path) {
            Ok(report) => report.first_break,
            Err(e) => return e,
        };
        AuditError::Corrupt {
            path: self.path.clone(),
            at: at.unwrap_or_else(|| ChainBreak {
                file: Some(self.path.clone()),
                line: 0,
                seq: None,
                kind: BreakKind::Malformed,
                detail: "the end of the log does not verify".to_owned(),
            }),
        }
    }
}

/// The UTC day of `at`: what daily sealing compares.
fn utc_day(at: OffsetDateTime) -> time::Date {
    at.to_offset(time::UtcOffset::UTC).date()
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
