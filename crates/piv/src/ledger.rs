//! The agent's own count of consecutive wrong passcodes per card serial ([`FailureLedger`]),
//! in memory ([`MemoryLedger`]) or in a JSON file ([`JsonFileLedger`]) so the count survives
//! a restart of the daemon.
//!
//! **This module is the only place the crate touches the filesystem.** Everything else talks
//! to a card through a [`crate::CardChannel`].

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::PivError;
use crate::identity::CardSerial;

/// Counts consecutive passcode failures per card, so the agent can stop at three even on a
/// card whose own counter allows more. A success resets the count.
pub trait FailureLedger: Send {
    /// Consecutive failures recorded for `card` (0 if none).
    fn consecutive_failures(&self, card: &CardSerial) -> u8;
    /// Adds one failure for `card` and returns the new count. Must be durable before it
    /// returns: the caller tells the user the tries left from it.
    fn record_failure(&mut self, card: &CardSerial) -> Result<u8, PivError>;
    /// Forgets the failures of `card` (after a right passcode or an unlock).
    fn reset(&mut self, card: &CardSerial) -> Result<(), PivError>;
    /// Takes back `n` failures recorded for attempts whose answer was lost and which the
    /// card's own counter later showed it never counted. Returns the new count.
    fn withdraw(&mut self, card: &CardSerial, n: u8) -> Result<u8, PivError>;
}

/// A ledger that lives as long as the process: for tests and for tools that run once.
#[derive(Debug, Default, Clone)]
pub struct MemoryLedger {
    failures: BTreeMap<CardSerial, u8>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        MemoryLedger::default()
    }
}

impl FailureLedger for MemoryLedger {
    fn consecutive_failures(&self, card: &CardSerial) -> u8 {
        self.failures.get(card).copied().unwrap_or(0)
    }

    fn record_failure(&mut self, card: &CardSerial) -> Result<u8, PivError> {
        let count = self.failures.entry(card.clone()).or_insert(0);
        *count = count.saturating_add(1);
        Ok(*count)
    }

    fn reset(&mut self, card: &CardSerial) -> Result<(), PivError> {
        self.failures.remove(card);
        Ok(())
    }

    fn withdraw(&mut self, card: &CardSerial, n: u8) -> Result<u8, PivError> {
        let left = self.consecutive_failures(card).saturating_sub(n);
        if left == 0 {
            self.failures.remove(card);
        } else {
            self.failures.insert(card.clone(), left);
        }
        Ok(left)
    }
}

/// The file's format version.
const LEDGER_FORMAT: u32 = 1;

/// What the JSON file holds: `{"format": 1, "cards": {"<card serial>": <failures>}}`. No
/// passcode, hash or name: only serials and counts.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerFile {
    format: u32,
    cards: BTreeMap<String, u8>,
}

/// A ledger kept in a JSON file the daemon owns (e.g. `/var/lib/cardgate/failures.json`).
///
/// Every change is written to a temporary file in the same directory, synced, and renamed
/// over the old one, so a crash or power cut leaves either the old or the new count, never
/// a torn file.
#[derive(Debug)]
pub struct JsonFileLedger {
    path: PathBuf,
    failures: BTreeMap<String, u8>,
}

impl JsonFileLedger {
    /// Opens the ledger at `path`; a missing file is an empty ledger. A file that cannot be
    /// read or parsed is an error, never silently an empty ledger: that would hand every
    /// locked-out card three fresh tries.
    pub fn open(path: &Path) -> Result<Self, PivError> {
        let failures = match std::fs::read(path) {
            Ok(bytes) => {
                let file: LedgerFile =
                    serde_json::from_slice(&bytes).map_err(|e| PivError::Ledger {
                        path: path.to_path_buf(),
                        reason: "the file is not a cardgate failure ledger".into(),
                        source: Some(Box::new(e)),
                    })?;
                if file.format != LEDGER_FORMAT {
                    return Err(PivError::Ledger {
                        path: path.to_path_buf(),
                        reason: format!(
                            "format {} is not the supported format {LEDGER_FORMAT}",
                            file.format
                        ),
                        source: None,
                    });
                }
                file.cards
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(PivError::Ledger {
                    path: path.to_path_buf(),
                    reason: "cannot read it".into(),
                    source: Some(Box::new(e)),
                });
            }
        };
        Ok(JsonFileLedger {
            path: path.to_path_buf(),
            failures,
        })
    }

    /// Where the ledger lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `failures` atomically; only then does the in-memory copy change.
    fn save(&mut self, failures: BTreeMap<String, u8>) -> Result<(), PivError> {
        let io_error = |reason: &str, e: std::io::Error| PivError::Ledger {
            path: self.path.clone(),
            reason: reason.to_owned(),
            source: Some(Box::new(e)),
        };
        let file = LedgerFile {
            format: LEDGER_FORMAT,
            cards: failures,
        };
        let mut json = serde_json::to_vec_pretty(&file).map_err(|e| PivError::Ledger {
            path: self.path.clone(),
            reason: "cannot encode it".into(),
            source: Some(Box::new(e)),
        })?;
        json.push(b'\n');
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut temp = tempfile::NamedTempFile::new_in(&dir)
            .map_err(|e| io_error("cannot create a temporary file beside it", e))?;
        temp.write_all(&json)
            .map_err(|e| io_error("cannot write it", e))?;
        temp.as_file()
            .sync_all()
            .map_err(|e| io_error("cannot sync it", e))?;
        temp.persist(&self.path)
            .map_err(|e| io_error("cannot rename the new version into place", e.error))?;
        // The rename is durable once the directory is synced; failing here leaves a correct
        // file that may roll back on power loss, which is still a valid state.
        if let Ok(dir) = std::fs::File::open(&dir) {
            let _ = dir.sync_all();
        }
        self.failures = file.cards;
        Ok(())
    }
}

impl FailureLedger for JsonFileLedger {
    fn consecutive_failures(&self, card: &CardSerial) -> u8 {
        self.failures.get(card.as_str()).copied().unwrap_or(0)
    }

    fn record_failure(&mut self, card: &CardSerial) -> Result<u8, PivError> {
        let mut failures = self.failures.clone();
        let count = failures.entry(card.as_str().to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        let count = *count;
        self.save(failures)?;
        Ok(count)
    }

    fn reset(&mut self, card: &CardSerial) -> Result<(), PivError> {
        if !self.failures.contains_key(card.as_str()) {
            return Ok(());
        }
        let mut failures = self.failures.clone();
        failures.remove(card.as_str());
        self.save(failures)
    }

    fn withdraw(&mut self, card: &CardSerial, n: u8) -> Result<u8, PivError> {
        let now = self.consecutive_failures(card);
        let left = now.saturating_sub(n);
        if left == now {
            return Ok(now);
        }
        let mut failures = self.failures.clone();
        if left == 0 {
            failures.remove(card.as_str());
        } else {
            failures.insert(card.as_str().to_owned(), left);
        }
        self.save(failures)?;
        Ok(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial(s: &str) -> CardSerial {
        CardSerial::new(s).unwrap()
    }

    #[test]
    fn memory_ledger_counts_per_card_and_resets() {
        let mut ledger = MemoryLedger::new();
        let a = serial("4123456789");
        let b = serial("4999999999");
        assert_eq!(ledger.record_failure(&a).unwrap(), 1);
        assert_eq!(ledger.record_failure(&a).unwrap(), 2);
        assert_eq!(ledger.consecutive_failures(&b), 0);
        ledger.reset(&a).unwrap();
        assert_eq!(ledger.consecutive_failures(&a), 0);
    }

    #[test]
    fn json_ledger_survives_reopening_and_holds_only_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failures.json");
        let a = serial("4123456789");
        {
            let mut ledger = JsonFileLedger::open(&path).unwrap();
            assert_eq!(ledger.consecutive_failures(&a), 0);
            ledger.record_failure(&a).unwrap();
            assert_eq!(ledger.record_failure(&a).unwrap(), 2);
        }
        let mut ledger = JsonFileLedger::open(&path).unwrap();
        assert_eq!(ledger.consecutive_failures(&a), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"4123456789\": 2"), "{text}");
        ledger.reset(&a).unwrap();
        assert_eq!(
            JsonFileLedger::open(&path)
                .unwrap()
                .consecutive_failures(&a),
            0
        );
        // Only the ledger is left in the directory: no temporary files behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn withdrawn_failures_come_off_the_count_never_below_zero_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failures.json");
        let a = serial("4123456789");
        let mut file = JsonFileLedger::open(&path).unwrap();
        let mut memory = MemoryLedger::new();
        for ledger in [&mut file as &mut dyn FailureLedger, &mut memory] {
            ledger.record_failure(&a).unwrap();
            ledger.record_failure(&a).unwrap();
            assert_eq!(ledger.withdraw(&a, 1).unwrap(), 1);
            assert_eq!(ledger.withdraw(&a, 5).unwrap(), 0);
            assert_eq!(ledger.consecutive_failures(&a), 0);
            ledger.record_failure(&a).unwrap();
        }
        assert_eq!(
            JsonFileLedger::open(&path)
                .unwrap()
                .consecutive_failures(&a),
            1
        );
    }

    #[test]
    fn a_corrupt_ledger_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failures.json");
        std::fs::write(&path, b"{\"format\": 1, \"cards\": {\"41\": \"x\"}}").unwrap();
        let e = JsonFileLedger::open(&path).unwrap_err();
        assert!(matches!(e, PivError::Ledger { .. }), "{e}");
        std::fs::write(&path, b"{\"format\": 2, \"cards\": {}}").unwrap();
        assert!(JsonFileLedger::open(&path).is_err());
    }

    #[test]
    fn an_unwritable_ledger_fails_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("failures.json");
        let mut ledger = JsonFileLedger::open(&path).unwrap();
        let e = ledger.record_failure(&serial("4123456789")).unwrap_err();
        assert!(matches!(e, PivError::Ledger { .. }), "{e}");
        assert_eq!(ledger.consecutive_failures(&serial("4123456789")), 0);
    }
}
