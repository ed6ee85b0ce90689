//! Renewals the card was pulled out of: the certificate the endpoint issued but the card did
//! not get written, kept on disk until the card comes back, and the cards whose key may have
//! been replaced with no certificate issued for it.
//!
//! A PIV renewal replaces the card's authentication key first (GENERATE ASYMMETRIC KEY PAIR
//! overwrites slot 9A), then the endpoint issues a certificate for the new key, then the
//! agent writes it. Pulled between the second and third step, the card holds a key no
//! certificate on it names, so it could not log in again and only the RA could help. The
//! agent keeps the issued certificate here and writes it when the same card is next inserted
//! (management key only, no passcode: the certificate is public and bound to this card's new
//! key). Pulled before the endpoint answered, no certificate exists for the new key; the agent
//! then only remembers when, so the log-in failure can say why and what to do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cardgate_piv::{CardSerial, HolderUuid};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A certificate issued for a card's new key and not yet on the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldCertificate {
    /// Whose card it is; the card read at reinsertion must name the same holder.
    pub holder: String,
    /// The authentication certificate the renewal replaces (DER, hex): written only over
    /// this one, so a card the RA has re-issued in between is left alone.
    #[serde(with = "hex")]
    pub replaces: Vec<u8>,
    /// The new authentication certificate (DER, hex).
    #[serde(with = "hex")]
    pub certificate: Vec<u8>,
}

impl HeldCertificate {
    /// Whether this certificate is due to be written onto a card read as `holder` with
    /// `current` as its authentication certificate.
    pub fn applies_to(&self, holder: &HolderUuid, current: &[u8]) -> bool {
        self.holder == holder.as_str() && self.replaces == current
    }
}

/// The store: one TOML file per card serial in a directory beside the passcode ledger.
#[derive(Debug)]
pub struct PendingRenewals {
    dir: PathBuf,
    /// Cards whose key generation began in a renewal that did not finish, with when.
    key_replaced: Mutex<HashMap<CardSerial, OffsetDateTime>>,
}

impl PendingRenewals {
    /// The store in `dir` (created when the first certificate is held).
    pub fn new(dir: PathBuf) -> PendingRenewals {
        PendingRenewals {
            dir,
            key_replaced: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, card: &CardSerial) -> PathBuf {
        // Card serials are 1 to 32 ASCII letters or digits: safe as a file name.
        self.dir.join(format!("{}.toml", card.as_str()))
    }

    /// Keeps `held` for `card` on disk (synced) before the agent tries to write it.
    pub fn hold(&self, card: &CardSerial, held: &HeldCertificate) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let text = toml::to_string(held).map_err(std::io::Error::other)?;
        let path = self.path(card);
        let partial = path.with_extension("toml.partial");
        {
            let mut file = std::fs::File::create(&partial)?;
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&partial, &path)?;
        sync_dir(&self.dir)
    }

    /// The certificate held for `card`, if any. An unreadable file is named in the log and
    /// treated as none (the card then needs the RA, as it would without this store).
    pub fn held(&self, card: &CardSerial) -> Option<HeldCertificate> {
        let path = self.path(card);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "held renewal unreadable");
                return None;
            }
        };
        toml::from_str(&text)
            .inspect_err(
                |e| tracing::warn!(path = %path.display(), error = %e, "held renewal is not valid"),
            )
            .ok()
    }

    /// The renewal of `card` finished (its certificate is on the card) or no longer applies.
    pub fn release(&self, card: &CardSerial) {
        self.forget_key_replaced(card);
        match std::fs::remove_file(self.path(card)) {
            Ok(()) => {
                let _ = sync_dir(&self.dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(card = %card, error = %e, "held renewal not removed"),
        }
    }

    /// The card's key generation is about to begin: until the renewal finishes, a failed
    /// signature check at log-in is explained by it.
    pub fn key_generation_began(&self, card: &CardSerial, at: OffsetDateTime) {
        self.lock().insert(card.clone(), at);
    }

    /// When a renewal that did not finish began replacing `card`'s key.
    pub fn key_replaced_at(&self, card: &CardSerial) -> Option<OffsetDateTime> {
        self.lock().get(card).copied()
    }

    /// The card logged in (its key matches its certificate): nothing to explain any more.
    pub fn forget_key_replaced(&self, card: &CardSerial) {
        self.lock().remove(card);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CardSerial, OffsetDateTime>> {
        self.key_replaced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(holder: &str) -> HeldCertificate {
        HeldCertificate {
            holder: holder.to_owned(),
            replaces: vec![0x30, 0x01, 0xAA],
            certificate: vec![0x30, 0x02, 0xBB, 0xCC],
        }
    }

    #[test]
    fn a_held_certificate_survives_a_new_store_and_is_gone_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let card = CardSerial::new("6516770101").unwrap();
        let store = PendingRenewals::new(dir.path().join("renewals"));
        assert_eq!(store.held(&card), None);
        store.hold(&card, &held("555000111222")).unwrap();
        // A restarted daemon finds it.
        let again = PendingRenewals::new(dir.path().join("renewals"));
        assert_eq!(again.held(&card), Some(held("555000111222")));
        again.release(&card);
        assert_eq!(store.held(&card), None);
        // Releasing twice is harmless.
        again.release(&card);
    }

    #[test]
    fn it_applies_only_to_the_same_holder_over_the_certificate_it_replaces() {
        let holder = HolderUuid::new("555000111222").unwrap();
        let other = HolderUuid::new("555000999000").unwrap();
        let h = held("555000111222");
        assert!(h.applies_to(&holder, &[0x30, 0x01, 0xAA]));
        assert!(!h.applies_to(&other, &[0x30, 0x01, 0xAA]));
        // The RA re-issued the card meanwhile: its certificate is not the replaced one.
        assert!(!h.applies_to(&holder, &[0x30, 0x01, 0xAB]));
    }

    #[test]
    fn a_damaged_file_counts_as_nothing_held() {
        let dir = tempfile::tempdir().unwrap();
        let card = CardSerial::new("6516770101").unwrap();
        std::fs::write(dir.path().join("6516770101.toml"), "holder = [").unwrap();
        let store = PendingRenewals::new(dir.path().to_owned());
        assert_eq!(store.held(&card), None);
    }

    #[test]
    fn key_replacement_is_remembered_until_forgotten_or_released() {
        let dir = tempfile::tempdir().unwrap();
        let card = CardSerial::new("6516770101").unwrap();
        let store = PendingRenewals::new(dir.path().to_owned());
        let at = OffsetDateTime::UNIX_EPOCH;
        store.key_generation_began(&card, at);
        assert_eq!(store.key_replaced_at(&card), Some(at));
        store.forget_key_replaced(&card);
        assert_eq!(store.key_replaced_at(&card), None);
        store.key_generation_began(&card, at);
        store.release(&card);
        assert_eq!(store.key_replaced_at(&card), None);
    }
}
