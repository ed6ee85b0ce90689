//! The card file: everything a virtual card keeps between insertions (keys, data objects,
//! passcode and unlock-code counters), as JSON on disk.
//!
//! A real card keeps its blocked counter when it leaves the reader; so does a virtual one,
//! because the applet writes the card file back after every change of persistent state.
//! Volatile state (a verified passcode, the selected application) is never stored here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// The only card file format this build reads and writes.
pub const CARD_FILE_FORMAT: u32 = 1;

/// Errors from reading or writing a card file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CardFileError {
    /// The file could not be read or written.
    #[error("card file {path}: {source}")]
    Io {
        /// The card file's path.
        path: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a card file this build understands.
    #[error("card file {path} is not valid: {reason} (re-provision it with `vcard provision`)")]
    Invalid {
        /// The card file's path.
        path: String,
        /// What was wrong, as the parser saw it.
        reason: String,
    },
    /// The file is from another format version.
    #[error(
        "card file {path} has format {found}, this build reads format {CARD_FILE_FORMAT} \
         (re-provision it with `vcard provision`)"
    )]
    WrongFormat {
        /// The card file's path.
        path: String,
        /// The format number found in the file.
        found: u32,
    },
}

/// A virtual card's persistent state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CardFile {
    /// Format version: [`CARD_FILE_FORMAT`].
    pub format: u32,
    /// What the card was provisioned as. Shown by `vcard show`; the applet never reads it.
    pub profile: CardProfile,
    /// The answer-to-reset the reader reports.
    #[serde(with = "hex")]
    pub atr: Vec<u8>,
    /// The card holder passcode (PIV key reference 0x80).
    pub pin: ReferenceData,
    /// The unlock code (PIV key reference 0x81) that resets the passcode's retry counter.
    pub puk: ReferenceData,
    /// The card management key (PIV key reference 0x9B) that guards PUT DATA and key
    /// generation.
    pub management_key: ManagementKey,
    /// Private keys, by slot.
    pub slots: BTreeMap<Slot, SlotKey>,
    /// Data objects by tag (the content of the `53` template, without the `53` header).
    pub objects: BTreeMap<ObjectTag, HexBytes>,
    /// How this card departs from SP 800-73-4, to imitate cards seen in the field (absent in
    /// a file: none).
    #[serde(default, skip_serializing_if = "CardQuirks::is_none")]
    pub quirks: CardQuirks,
}

/// Departures from SP 800-73-4 a virtual card can imitate.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CardQuirks {
    /// VERIFY with P1 = FF (end the verified state) is refused with 6A86 (incorrect P1/P2),
    /// as some cards do: only a reset makes such a card forget a verified passcode.
    #[serde(default)]
    pub refuses_pin_logout: bool,
}

impl CardQuirks {
    /// Whether the card has no quirk (what a file without the field means).
    pub fn is_none(&self) -> bool {
        self == &CardQuirks::default()
    }
}

impl CardFile {
    /// Reads and checks a card file.
    pub fn load(path: &Path) -> Result<Self, CardFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| CardFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let file: CardFile = serde_json::from_str(&text).map_err(|e| CardFileError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        if file.format != CARD_FILE_FORMAT {
            return Err(CardFileError::WrongFormat {
                path: path.display().to_string(),
                found: file.format,
            });
        }
        Ok(file)
    }

    /// Writes the card file atomically (temporary file, then rename), so a card pulled or a
    /// process killed mid-write never leaves a half-written card behind.
    pub fn save(&self, path: &Path) -> Result<(), CardFileError> {
        let io = |source| CardFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| CardFileError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// What a card was provisioned as: the holder and the card's kind.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CardProfile {
    /// The holder's name as printed on the card (empty for a blank Temporary Access Card).
    pub holder_name: String,
    /// The holder's 12-digit UUID, as in the authentication certificate's subject.
    pub holder_uuid: String,
    /// The card serial number, as in the CHUID. Numbers beginning 01, 02 or 03 mark an old
    /// generation card that cannot be renewed or unlocked.
    pub card_serial: String,
    /// Permanent card or Temporary Access Card.
    pub kind: CardKind,
    /// Free-text notes on how it was provisioned (variant, expiry), for `vcard show`.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Whether a card belongs to one holder or is a Temporary Access Card.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CardKind {
    /// A holder's own card.
    Permanent,
    /// A Temporary Access Card: pre-defined access rights, activated by a Sponsor/LSA.
    TemporaryAccess,
}

/// A passcode or unlock code with its retry counter.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReferenceData {
    /// The value, unpadded (1 to 8 bytes). Zeroized when dropped.
    pub value: Zeroizing<String>,
    /// Tries a fresh counter allows (3 for NHS cards; some hardware allows more).
    pub max_tries: u8,
    /// Tries left now; 0 means blocked.
    pub tries_left: u8,
}

impl fmt::Debug for ReferenceData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the value: card files end up in test logs.
        f.debug_struct("ReferenceData")
            .field("value", &"<redacted>")
            .field("max_tries", &self.max_tries)
            .field("tries_left", &self.tries_left)
            .finish()
    }
}

/// The card management key and its algorithm.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManagementKey {
    /// The block cipher the challenge/response uses.
    pub algorithm: ManagementKeyAlgorithm,
    /// The key bytes (16 for AES-128, 24 for 3DES). Zeroized when dropped.
    #[serde(
        serialize_with = "serialize_secret_hex",
        deserialize_with = "deserialize_secret_hex"
    )]
    pub key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementKey")
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Management key algorithms (SP 800-78-4 algorithm identifiers in the doc of each).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ManagementKeyAlgorithm {
    /// AES-128, algorithm id 0x08.
    Aes128,
    /// Three-key 3DES, algorithm id 0x03 (the YubiKey factory default).
    Tdes,
}

/// PIV key slots (key references).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    /// 9A, PIV Authentication: the key that authenticates the holder (passcode once).
    #[serde(rename = "9A")]
    Authentication,
    /// 9C, Digital Signature (passcode before every use).
    #[serde(rename = "9C")]
    Signature,
    /// 9D, Key Management.
    #[serde(rename = "9D")]
    KeyManagement,
    /// 9E, Card Authentication (no passcode).
    #[serde(rename = "9E")]
    CardAuthentication,
}

impl Slot {
    /// Every slot, in key-reference order.
    pub const ALL: [Slot; 4] = [
        Slot::Authentication,
        Slot::Signature,
        Slot::KeyManagement,
        Slot::CardAuthentication,
    ];

    /// The key reference byte (P2 of GENERAL AUTHENTICATE and GENERATE ASYMMETRIC KEY PAIR).
    pub fn key_reference(self) -> u8 {
        match self {
            Slot::Authentication => 0x9A,
            Slot::Signature => 0x9C,
            Slot::KeyManagement => 0x9D,
            Slot::CardAuthentication => 0x9E,
        }
    }

    /// The slot for a key reference byte, if it is one of the four.
    pub fn from_key_reference(reference: u8) -> Option<Slot> {
        Slot::ALL
            .into_iter()
            .find(|s| s.key_reference() == reference)
    }

    /// The data object that holds this slot's certificate.
    pub fn certificate_object(self) -> ObjectTag {
        match self {
            Slot::Authentication => ObjectTag::CERT_AUTHENTICATION,
            Slot::Signature => ObjectTag::CERT_SIGNATURE,
            Slot::KeyManagement => ObjectTag::CERT_KEY_MANAGEMENT,
            Slot::CardAuthentication => ObjectTag::CERT_CARD_AUTHENTICATION,
        }
    }

    /// The passcode policy SP 800-73-4 gives this slot.
    pub fn default_pin_policy(self) -> PinPolicy {
        match self {
            Slot::Authentication | Slot::KeyManagement => PinPolicy::Once,
            Slot::Signature => PinPolicy::Always,
            Slot::CardAuthentication => PinPolicy::Never,
        }
    }
}

/// A private key in a slot.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SlotKey {
    /// The key's algorithm.
    pub algorithm: KeyAlgorithm,
    /// The private key as PKCS#8 DER. Zeroized when dropped.
    #[serde(
        serialize_with = "serialize_secret_hex",
        deserialize_with = "deserialize_secret_hex"
    )]
    pub private_key_pkcs8: Zeroizing<Vec<u8>>,
    /// When the card holder passcode must have been verified before the key may be used.
    pub pin_policy: PinPolicy,
}

impl fmt::Debug for SlotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotKey")
            .field("algorithm", &self.algorithm)
            .field("private_key_pkcs8", &"<redacted>")
            .field("pin_policy", &self.pin_policy)
            .finish()
    }
}

/// Asymmetric key algorithms the card supports (SP 800-78-4 identifiers in the doc).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    /// ECDSA over P-256, algorithm id 0x11.
    EccP256,
    /// RSA with a 2048-bit modulus, algorithm id 0x07.
    Rsa2048,
}

impl KeyAlgorithm {
    /// The SP 800-78-4 algorithm identifier (P1 of GENERAL AUTHENTICATE).
    pub fn algorithm_id(self) -> u8 {
        match self {
            KeyAlgorithm::EccP256 => 0x11,
            KeyAlgorithm::Rsa2048 => 0x07,
        }
    }
}

/// When a slot's key requires a verified passcode.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PinPolicy {
    /// No passcode needed.
    Never,
    /// Passcode verified once since power-on (or since the last reset of security status).
    Once,
    /// Passcode verified immediately before each use.
    Always,
}

/// A PIV data object tag (BER-TLV tag as carried in the `5C` tag list of GET/PUT DATA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectTag(pub u32);

impl ObjectTag {
    /// Card Capability Container.
    pub const CCC: ObjectTag = ObjectTag(0x5FC107);
    /// Card Holder Unique Identifier: card serial number (FASC-N / GUID).
    pub const CHUID: ObjectTag = ObjectTag(0x5FC102);
    /// Discovery object (a one-byte tag).
    pub const DISCOVERY: ObjectTag = ObjectTag(0x7E);
    /// Printed Information: holder name and card details as printed (passcode to read).
    pub const PRINTED_INFORMATION: ObjectTag = ObjectTag(0x5FC109);
    /// Security Object.
    pub const SECURITY_OBJECT: ObjectTag = ObjectTag(0x5FC106);
    /// Key History object.
    pub const KEY_HISTORY: ObjectTag = ObjectTag(0x5FC10C);
    /// X.509 certificate for PIV Authentication (slot 9A).
    pub const CERT_AUTHENTICATION: ObjectTag = ObjectTag(0x5FC105);
    /// X.509 certificate for Digital Signature (slot 9C).
    pub const CERT_SIGNATURE: ObjectTag = ObjectTag(0x5FC10A);
    /// X.509 certificate for Key Management (slot 9D).
    pub const CERT_KEY_MANAGEMENT: ObjectTag = ObjectTag(0x5FC10B);
    /// X.509 certificate for Card Authentication (slot 9E).
    pub const CERT_CARD_AUTHENTICATION: ObjectTag = ObjectTag(0x5FC101);

    /// The tag's bytes as they appear in a `5C` tag list (1 or 3 bytes).
    pub fn to_bytes(self) -> Vec<u8> {
        let b = self.0.to_be_bytes();
        let first = b.iter().position(|&x| x != 0).unwrap_or(3);
        b[first..].to_vec()
    }

    /// The tag from the bytes of a `5C` tag list (1 to 3 bytes).
    pub fn from_bytes(bytes: &[u8]) -> Option<ObjectTag> {
        if bytes.is_empty() || bytes.len() > 3 {
            return None;
        }
        Some(ObjectTag(
            bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)),
        ))
    }
}

impl fmt::Display for ObjectTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode_upper(self.to_bytes()))
    }
}

impl FromStr for ObjectTag {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s).map_err(|e| format!("object tag {s:?}: {e}"))?;
        ObjectTag::from_bytes(&bytes).ok_or_else(|| format!("object tag {s:?}: 1 to 3 bytes"))
    }
}

impl Serialize for ObjectTag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ObjectTag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Bytes stored as a hex string in the card file.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HexBytes(pub Vec<u8>);

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s)
            .map(HexBytes)
            .map_err(serde::de::Error::custom)
    }
}

fn serialize_secret_hex<S: Serializer>(v: &Zeroizing<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    let text = Zeroizing::new(hex::encode(v.as_slice()));
    s.serialize_str(&text)
}

fn deserialize_secret_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<Vec<u8>>, D::Error> {
    let s = Zeroizing::new(String::deserialize(d)?);
    hex::decode(s.as_str())
        .map(Zeroizing::new)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CardFile {
        CardFile {
            format: CARD_FILE_FORMAT,
            profile: CardProfile {
                holder_name: "Asha Patel".into(),
                holder_uuid: "555000111222".into(),
                card_serial: "0412345678".into(),
                kind: CardKind::Permanent,
                notes: vec![],
            },
            atr: vec![0x3B, 0x80, 0x80, 0x01, 0x01],
            pin: ReferenceData {
                value: Zeroizing::new("7391".into()),
                max_tries: 3,
                tries_left: 3,
            },
            puk: ReferenceData {
                value: Zeroizing::new("80264513".into()),
                max_tries: 3,
                tries_left: 3,
            },
            management_key: ManagementKey {
                algorithm: ManagementKeyAlgorithm::Aes128,
                key: Zeroizing::new(vec![7; 16]),
            },
            slots: BTreeMap::new(),
            objects: BTreeMap::from([(ObjectTag::CHUID, HexBytes(vec![0x30, 0x01]))]),
            quirks: Default::default(),
        }
    }

    #[test]
    fn round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.json");
        let card = sample();
        card.save(&path).unwrap();
        assert_eq!(CardFile::load(&path).unwrap(), card);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"5FC102\""), "object tags are hex: {text}");
    }

    #[test]
    fn refuses_other_formats_and_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.json");
        let mut card = sample();
        card.format = 99;
        card.save(&path).unwrap();
        assert!(matches!(
            CardFile::load(&path),
            Err(CardFileError::WrongFormat { found: 99, .. })
        ));
        std::fs::write(&path, "{\"format\":1,\"surprise\":true}").unwrap();
        assert!(matches!(
            CardFile::load(&path),
            Err(CardFileError::Invalid { .. })
        ));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let text = format!("{:?}", sample());
        assert!(!text.contains("7391"), "{text}");
        assert!(!text.contains("80264513"), "{text}");
    }

    #[test]
    fn object_tags_convert_both_ways() {
        assert_eq!(ObjectTag::DISCOVERY.to_bytes(), vec![0x7E]);
        assert_eq!(ObjectTag::CHUID.to_bytes(), vec![0x5F, 0xC1, 0x02]);
        assert_eq!(
            ObjectTag::from_bytes(&[0x5F, 0xC1, 0x05]),
            Some(ObjectTag::CERT_AUTHENTICATION)
        );
        assert_eq!("7E".parse::<ObjectTag>(), Ok(ObjectTag::DISCOVERY));
        assert!(ObjectTag::from_bytes(&[1, 2, 3, 4]).is_none());
        assert_eq!(Slot::from_key_reference(0x9C), Some(Slot::Signature));
        assert_eq!(Slot::from_key_reference(0x9B), None);
    }
}
