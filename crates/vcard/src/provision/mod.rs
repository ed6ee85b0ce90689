//! Provisioning of virtual PIV cards: a test CA ([`TestCa`]), a builder for what a card
//! should be ([`CardSpec`]) and [`provision`], which generates the keys, has the CA issue a
//! certificate per slot and lays out the PIV data objects in a [`CardFile`].
//!
//! # Where the agent finds what
//!
//! - The holder's 12-digit UUID is the `serialNumber` attribute (OID 2.5.4.5, a
//!   PrintableString) of the PIV Authentication certificate's subject (slot 9A, object
//!   `5FC105`): `CN=<holder name>, serialNumber=<UUID>, OU=People, O=<CA organisation>`.
//!   The Digital Signature (9C) and Key Management (9D) certificates carry the same subject.
//! - The card serial number is in the CHUID (`5FC102`: FASC-N credential number and the
//!   GUID are derived from it), in Printed Information (`5FC109`, tag 05), and in the
//!   `serialNumber` attribute of the Card Authentication certificate (9E,
//!   `CN=Card Authentication, serialNumber=<card serial>, OU=Cards, O=<CA organisation>`).
//! - Serial numbers beginning 01, 02 or 03 mark an old-generation card, which the NHS
//!   cannot renew or unlock: the holder must be told to get a new card.
//!
//! Keys are generated on the host (the card file is a test fixture, not a secure element),
//! one per slot, with the pin policy SP 800-73-4 gives the slot.

mod ca;
pub mod objects;

use std::collections::BTreeMap;
use std::fmt;

use rand::RngCore as _;
use rand::rngs::OsRng;
use rcgen::string::PrintableString;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SerialNumber, SubjectPublicKeyInfo,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

pub use ca::{
    CA_CERTIFICATE_FILE, CA_KEY_FILE, REVOKED_FILE, RevokedCard, TEST_CA_ORGANISATION, TestCa,
    certificate_pem, load_revocations, record_revocations,
};

use crate::card_file::{
    CARD_FILE_FORMAT, CardFile, CardKind, CardProfile, HexBytes, KeyAlgorithm, ManagementKey,
    ManagementKeyAlgorithm, ObjectTag, ReferenceData, Slot, SlotKey,
};

/// The passcode a card gets unless the spec names one: the PIV factory default, which
/// OpenSC and yubico-piv-tool also assume.
pub const DEFAULT_PIN: &str = "123456";
/// The unlock code a card gets unless the spec names one (the PIV factory default).
pub const DEFAULT_PUK: &str = "12345678";
/// Passcode tries on an NHS card before it blocks.
pub const DEFAULT_PIN_TRIES: u8 = 3;
/// Unlock-code tries (the common PIV default).
pub const DEFAULT_PUK_TRIES: u8 = 3;
/// How long certificates of a default card are valid: the two years one seed gives.
pub const DEFAULT_VALIDITY_DAYS: u32 = 730;
/// The OID of the X.520 `serialNumber` attribute that carries the holder's UUID.
pub const SERIAL_NUMBER_OID: [u64; 4] = [2, 5, 4, 5];

/// Errors from provisioning cards and running the test CA. Each names the field or file
/// that was wrong and what to do about it; none carries a passcode or key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The holder UUID is not 12 digits.
    #[error(
        "holder UUID {uuid:?} is not valid: it must be exactly 12 digits, the number printed \
         on the front of the card (e.g. 555000111222)"
    )]
    InvalidUuid {
        /// The UUID given.
        uuid: String,
    },
    /// The holder name cannot go into a certificate.
    #[error("holder name {name:?} is not valid: {reason}")]
    InvalidHolderName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The card serial is not 1 to 10 digits.
    #[error(
        "card serial {serial:?} is not valid: it must be 1 to 10 digits (e.g. 4123456789), \
         or leave it out to derive one from the UUID"
    )]
    InvalidCardSerial {
        /// The serial given.
        serial: String,
    },
    /// An old-generation card was asked for with a serial that does not mark one.
    #[error(
        "card serial {serial:?} does not mark an old-generation card: those begin 01, 02 or \
         03 (leave the serial out to get one)"
    )]
    NotOldGeneration {
        /// The serial given.
        serial: String,
    },
    /// The passcode breaks the NHS rule. The passcode itself is never in the message.
    #[error("the passcode (PIN) is not valid: it must be 4 to 8 letters or digits; {problem}")]
    InvalidPin {
        /// What is wrong (length or character class), without the value.
        problem: String,
    },
    /// The unlock code is not 8 letters or digits. The value is never in the message.
    #[error(
        "the unlock code (PUK) is not valid: it must be exactly 8 letters or digits; {problem}"
    )]
    InvalidPuk {
        /// What is wrong, without the value.
        problem: String,
    },
    /// The passcode try count is outside what a PIV counter holds.
    #[error(
        "passcode tries {tries} is not valid: it must be 1 to 15 (3 is the NHS default, 5 a \
         test variant)"
    )]
    InvalidPinTries {
        /// The count given.
        tries: u8,
    },
    /// The validity window is empty or reversed.
    #[error("certificate validity is not valid: {reason}")]
    InvalidValidity {
        /// What is wrong.
        reason: String,
    },
    /// The management key is not an AES-128 key.
    #[error("the management key must be 16 bytes (AES-128); {length} bytes were given")]
    InvalidManagementKey {
        /// The length given.
        length: usize,
    },
    /// The CA's common name is empty or too long.
    #[error("CA name {name:?} is not valid: it must be 1 to 64 characters")]
    InvalidCaName {
        /// The name given.
        name: String,
    },
    /// A CA file could not be read or written.
    #[error("CA file {}: {source} (check the --dir/--ca path; `vcard ca init` creates a CA)", path.display())]
    CaIo {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A CA file is not what it should be.
    #[error("CA file {} is not valid: {reason} (re-create the CA with `vcard ca init`)", path.display())]
    CaInvalid {
        /// The file.
        path: std::path::PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Saving would replace an existing CA and orphan the cards it issued.
    #[error(
        "{} already exists: a CA is there already (use another directory, or delete it to \
         start over)",
        path.display()
    )]
    CaExists {
        /// The existing file.
        path: std::path::PathBuf,
    },
    /// A CRL's next update is not after its issue time.
    #[error("the CRL's next update must be after its issue time")]
    InvalidCrlWindow,
    /// rcgen refused to build a certificate or CRL.
    #[error("could not build {what}: {source}")]
    Certificate {
        /// What was being built.
        what: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// Generating or encoding a slot key failed.
    #[error("could not generate a {algorithm:?} key: {source}")]
    KeyGeneration {
        /// The algorithm.
        algorithm: KeyAlgorithm,
        /// The crypto library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A certificate object on a card is unreadable.
    #[error("the card's {slot:?} certificate is not readable: {reason} (re-provision the card)")]
    CardCertificate {
        /// The slot.
        slot: Slot,
        /// What was wrong.
        reason: String,
    },
}

/// When a card's certificates are valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Validity {
    /// From now for [`DEFAULT_VALIDITY_DAYS`] (two years).
    #[default]
    Default,
    /// Issued two years ago, expired yesterday: the holder must see the RA in person.
    Expired,
    /// Expires this many days from now (issued two years before that, or now if later):
    /// for the 90/30/7-day warnings and the Sponsor renewal window.
    ExpiresInDays(u32),
    /// An explicit window.
    Between {
        /// Start of validity.
        not_before: OffsetDateTime,
        /// End of validity.
        not_after: OffsetDateTime,
    },
}

impl Validity {
    /// The (notBefore, notAfter) window relative to `now`.
    fn window(
        self,
        now: OffsetDateTime,
    ) -> Result<(OffsetDateTime, OffsetDateTime), ProvisionError> {
        let lifetime = Duration::days(i64::from(DEFAULT_VALIDITY_DAYS));
        let (not_before, not_after) = match self {
            Validity::Default => (now - Duration::hours(1), now + lifetime),
            Validity::Expired => {
                let not_after = now - Duration::days(1);
                (not_after - lifetime, not_after)
            }
            Validity::ExpiresInDays(days) => {
                let not_after = now + Duration::days(i64::from(days));
                (
                    (not_after - lifetime).min(now - Duration::hours(1)),
                    not_after,
                )
            }
            Validity::Between {
                not_before,
                not_after,
            } => (not_before, not_after),
        };
        if not_after <= not_before {
            return Err(ProvisionError::InvalidValidity {
                reason: format!("not-after {not_after} is not later than not-before {not_before}"),
            });
        }
        Ok((not_before, not_after))
    }
}

/// What a card should be. Built with defaults and adjusted with the builder methods; all
/// checks happen in [`provision`], so a bad value is reported with the field's name.
#[derive(Clone)]
pub struct CardSpec {
    holder_name: String,
    holder_uuid: String,
    card_serial: Option<String>,
    old_generation: bool,
    key_algorithm: KeyAlgorithm,
    validity: Validity,
    kind: CardKind,
    pin: Zeroizing<String>,
    puk: Zeroizing<String>,
    pin_tries: u8,
    management_key: Option<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for CardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardSpec")
            .field("holder_name", &self.holder_name)
            .field("holder_uuid", &self.holder_uuid)
            .field("card_serial", &self.card_serial)
            .field("old_generation", &self.old_generation)
            .field("key_algorithm", &self.key_algorithm)
            .field("validity", &self.validity)
            .field("kind", &self.kind)
            .field("pin", &"<redacted>")
            .field("puk", &"<redacted>")
            .field("pin_tries", &self.pin_tries)
            .field(
                "management_key",
                &self.management_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl CardSpec {
    /// A permanent card for a holder: ECC P-256 keys, certificates valid two years from now,
    /// passcode [`DEFAULT_PIN`] with 3 tries, unlock code [`DEFAULT_PUK`], a random AES-128
    /// management key and a card serial derived from the UUID.
    pub fn new(holder_name: &str, holder_uuid: &str) -> Self {
        CardSpec {
            holder_name: holder_name.to_owned(),
            holder_uuid: holder_uuid.to_owned(),
            card_serial: None,
            old_generation: false,
            key_algorithm: KeyAlgorithm::EccP256,
            validity: Validity::Default,
            kind: CardKind::Permanent,
            pin: Zeroizing::new(DEFAULT_PIN.to_owned()),
            puk: Zeroizing::new(DEFAULT_PUK.to_owned()),
            pin_tries: DEFAULT_PIN_TRIES,
            management_key: None,
        }
    }

    /// Sets the card serial (digits). By default it is derived from the UUID: ten digits,
    /// never beginning 01-03 (or beginning 01-03 with [`CardSpec::old_generation`]).
    pub fn card_serial(mut self, serial: &str) -> Self {
        self.card_serial = Some(serial.to_owned());
        self
    }

    /// Makes an old-generation card (serial beginning 01, 02 or 03), which cannot be renewed
    /// or unlocked. With an explicit serial, the serial must begin so.
    pub fn old_generation(mut self) -> Self {
        self.old_generation = true;
        self
    }

    /// Sets the key algorithm of all four slots (default ECC P-256).
    pub fn key_algorithm(mut self, alg: KeyAlgorithm) -> Self {
        self.key_algorithm = alg;
        self
    }

    /// Sets when the certificates are valid (default: two years from now).
    pub fn validity(mut self, v: Validity) -> Self {
        self.validity = v;
        self
    }

    /// Makes a Temporary Access Card. Its holder name may be empty (a blank TAC).
    pub fn temporary_access(mut self) -> Self {
        self.kind = CardKind::TemporaryAccess;
        self
    }

    /// Sets the passcode (4 to 8 letters or digits, the NHS rule).
    pub fn pin(mut self, pin: &str) -> Self {
        self.pin = Zeroizing::new(pin.to_owned());
        self
    }

    /// Sets the unlock code (8 letters or digits).
    pub fn puk(mut self, puk: &str) -> Self {
        self.puk = Zeroizing::new(puk.to_owned());
        self
    }

    /// Sets how many wrong passcodes block the card (1 to 15; 3 on NHS cards).
    pub fn pin_tries(mut self, n: u8) -> Self {
        self.pin_tries = n;
        self
    }

    /// Sets the AES-128 management key (16 bytes) instead of a random one, for tests that
    /// write to the card.
    pub fn management_key(mut self, key: &[u8]) -> Self {
        self.management_key = Some(Zeroizing::new(key.to_vec()));
        self
    }
}

/// A provisioned card: the card file to save, and each slot's certificate (DER) for tests
/// that compare what the agent read with what was issued.
#[derive(Clone, Debug)]
pub struct ProvisionedCard {
    /// The card's persistent state.
    pub card: CardFile,
    /// The certificate issued for each slot, DER.
    pub certificates: BTreeMap<Slot, Vec<u8>>,
}

/// Checks `spec`, generates four keys, has `ca` issue their certificates and builds the
/// card file. Bad input is an error naming the field; nothing panics.
pub fn provision(ca: &TestCa, spec: &CardSpec) -> Result<ProvisionedCard, ProvisionError> {
    let checked = check(spec)?;
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let (not_before, not_after) = spec.validity.window(now)?;

    let issuer = ca.issuer()?;
    let mut slots = BTreeMap::new();
    let mut certificates = BTreeMap::new();
    let mut objects = BTreeMap::new();
    for slot in Slot::ALL {
        let (private_key_pkcs8, spki_der) = generate_key(spec.key_algorithm)?;
        let public_key = SubjectPublicKeyInfo::from_der(&spki_der).map_err(|source| {
            ProvisionError::Certificate {
                what: format!("the {slot:?} public key"),
                source,
            }
        })?;
        let params = certificate_params(
            ca,
            &checked,
            slot,
            spec.key_algorithm,
            not_before,
            not_after,
        )?;
        let certificate = params.signed_by(&public_key, &issuer).map_err(|source| {
            ProvisionError::Certificate {
                what: format!("the {slot:?} certificate"),
                source,
            }
        })?;
        let der = certificate.der().to_vec();
        objects.insert(
            slot.certificate_object(),
            HexBytes(objects::certificate_object(&der)),
        );
        certificates.insert(slot, der);
        slots.insert(
            slot,
            SlotKey {
                algorithm: spec.key_algorithm,
                private_key_pkcs8,
                pin_policy: slot.default_pin_policy(),
            },
        );
    }

    let expires = not_after.date();
    let fasc_n = objects::FascN::for_card(&checked.card_serial, &spec.holder_uuid)
        .encode()
        .ok_or_else(|| ProvisionError::InvalidCardSerial {
            serial: checked.card_serial.clone(),
        })?;
    objects.insert(
        ObjectTag::CHUID,
        HexBytes(objects::chuid(&fasc_n, &checked.card_serial, expires)),
    );
    objects.insert(ObjectTag::CCC, HexBytes(objects::ccc(&checked.card_serial)));
    objects.insert(ObjectTag::DISCOVERY, HexBytes(objects::discovery()));
    let affiliation = match spec.kind {
        CardKind::Permanent => "Pharmacy Staff",
        CardKind::TemporaryAccess => "Temporary Access",
    };
    objects.insert(
        ObjectTag::PRINTED_INFORMATION,
        HexBytes(objects::printed_information(
            &checked.printed_name,
            affiliation,
            expires,
            &checked.card_serial,
        )),
    );

    let management_key = match &spec.management_key {
        Some(key) => key.clone(),
        None => {
            let mut key = Zeroizing::new(vec![0u8; 16]);
            OsRng.fill_bytes(&mut key);
            key
        }
    };

    let card = CardFile {
        format: CARD_FILE_FORMAT,
        profile: CardProfile {
            holder_name: spec.holder_name.trim().to_owned(),
            holder_uuid: spec.holder_uuid.clone(),
            card_serial: checked.card_serial.clone(),
            kind: spec.kind,
            notes: notes(spec, &checked, not_after),
        },
        atr: objects::ATR.to_vec(),
        pin: ReferenceData {
            value: spec.pin.clone(),
            max_tries: spec.pin_tries,
            tries_left: spec.pin_tries,
        },
        puk: ReferenceData {
            value: spec.puk.clone(),
            max_tries: DEFAULT_PUK_TRIES,
            tries_left: DEFAULT_PUK_TRIES,
        },
        management_key: ManagementKey {
            algorithm: ManagementKeyAlgorithm::Aes128,
            key: management_key,
        },
        slots,
        objects,
        quirks: Default::default(),
    };
    Ok(ProvisionedCard { card, certificates })
}

/// Whether a card serial marks an old-generation card (begins 01, 02 or 03).
pub fn is_old_generation_serial(serial: &str) -> bool {
    ["01", "02", "03"].iter().any(|p| serial.starts_with(p))
}

/// A key algorithm as people write it ("ECC P-256", "RSA 2048"), for notes and reports.
pub fn key_algorithm_name(algorithm: KeyAlgorithm) -> &'static str {
    match algorithm {
        KeyAlgorithm::EccP256 => "ECC P-256",
        KeyAlgorithm::Rsa2048 => "RSA 2048",
    }
}

/// The values [`check`] derived from a spec.
struct Checked {
    holder_uuid: String,
    card_serial: String,
    common_name: String,
    printed_name: String,
}

fn check(spec: &CardSpec) -> Result<Checked, ProvisionError> {
    let uuid = &spec.holder_uuid;
    if uuid.len() != 12 || !uuid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProvisionError::InvalidUuid { uuid: uuid.clone() });
    }

    let name = spec.holder_name.trim();
    let name_error = |reason| ProvisionError::InvalidHolderName {
        name: spec.holder_name.clone(),
        reason,
    };
    if name.is_empty() && spec.kind == CardKind::Permanent {
        return Err(name_error(
            "a permanent card needs the holder's name (only a Temporary Access Card may be blank)",
        ));
    }
    if name.chars().count() > 64 {
        return Err(name_error(
            "it must be at most 64 characters (the X.520 common name limit)",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(name_error("it must not contain control characters"));
    }
    let (common_name, printed_name) = if name.is_empty() {
        (
            "Temporary Access Card".to_owned(),
            "TEMPORARY ACCESS CARD".to_owned(),
        )
    } else {
        (name.to_owned(), name.to_owned())
    };

    let card_serial = match &spec.card_serial {
        Some(serial) => {
            if serial.is_empty() || serial.len() > 10 || !serial.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(ProvisionError::InvalidCardSerial {
                    serial: serial.clone(),
                });
            }
            if spec.old_generation && !is_old_generation_serial(serial) {
                return Err(ProvisionError::NotOldGeneration {
                    serial: serial.clone(),
                });
            }
            serial.clone()
        }
        None => default_card_serial(uuid, spec.old_generation),
    };

    let pin = spec.pin.as_str();
    let pin_len = pin.chars().count();
    if !(4..=8).contains(&pin_len) {
        return Err(ProvisionError::InvalidPin {
            problem: format!("the one given has {pin_len} characters"),
        });
    }
    if !pin.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ProvisionError::InvalidPin {
            problem: "the one given has other characters".into(),
        });
    }
    let puk = spec.puk.as_str();
    let puk_len = puk.chars().count();
    if puk_len != 8 {
        return Err(ProvisionError::InvalidPuk {
            problem: format!("the one given has {puk_len} characters"),
        });
    }
    if !puk.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ProvisionError::InvalidPuk {
            problem: "the one given has other characters".into(),
        });
    }
    if !(1..=15).contains(&spec.pin_tries) {
        return Err(ProvisionError::InvalidPinTries {
            tries: spec.pin_tries,
        });
    }
    if let Some(key) = &spec.management_key {
        if key.len() != 16 {
            return Err(ProvisionError::InvalidManagementKey { length: key.len() });
        }
    }
    Ok(Checked {
        holder_uuid: uuid.clone(),
        card_serial,
        common_name,
        printed_name,
    })
}

/// A ten-digit serial derived from the UUID, so re-provisioning a holder gives the same
/// card number. New-generation serials begin 4-9; old-generation ones 01, 02 or 03.
fn default_card_serial(uuid: &str, old_generation: bool) -> String {
    let mut h = Sha256::new();
    h.update(b"cardgate-card-serial\0");
    h.update(uuid.as_bytes());
    let d: [u8; 32] = h.finalize().into();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    let n = u64::from_be_bytes(first);
    if old_generation {
        format!("0{}{:08}", 1 + n % 3, (n / 3) % 100_000_000)
    } else {
        format!("{}{:09}", 4 + n % 6, (n / 6) % 1_000_000_000)
    }
}

fn notes(spec: &CardSpec, checked: &Checked, not_after: OffsetDateTime) -> Vec<String> {
    let mut notes = Vec::new();
    if spec.kind == CardKind::TemporaryAccess {
        notes.push("temporary access card".to_owned());
    }
    if is_old_generation_serial(&checked.card_serial) {
        notes.push(format!(
            "old-generation card (serial begins {}): cannot be renewed or unlocked",
            &checked.card_serial[..2]
        ));
    }
    let expiry = match spec.validity {
        Validity::Default => "certificates valid for two years".to_owned(),
        Validity::Expired => "certificates expired".to_owned(),
        Validity::ExpiresInDays(days) => format!("certificates expire in {days} days"),
        Validity::Between { .. } => "certificates with an explicit validity window".to_owned(),
    };
    notes.push(format!("{expiry} (not after {})", not_after.date()));
    notes.push(format!("keys: {}", key_algorithm_name(spec.key_algorithm)));
    if spec.pin_tries != DEFAULT_PIN_TRIES {
        notes.push(format!("{}-try passcode (test variant)", spec.pin_tries));
    }
    notes
}

fn certificate_params(
    ca: &TestCa,
    checked: &Checked,
    slot: Slot,
    algorithm: KeyAlgorithm,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, ProvisionError> {
    let (unit, serial_number, common_name) = match slot {
        Slot::CardAuthentication => ("Cards", &checked.card_serial, "Card Authentication"),
        _ => ("People", &checked.holder_uuid, checked.common_name.as_str()),
    };
    // Digits only (checked), so always a valid PrintableString, as X.520 wants it.
    let serial_number = PrintableString::try_from(serial_number.as_str()).map_err(|source| {
        ProvisionError::Certificate {
            what: format!("the {slot:?} certificate's serialNumber attribute"),
            source,
        }
    })?;
    let mut dn = DistinguishedName::new();
    // Encoded most significant first, so RFC 4514 prints it as
    // CN=.., serialNumber=.., OU=.., O=..
    dn.push(DnType::OrganizationName, ca.organisation());
    dn.push(DnType::OrganizationalUnitName, unit);
    dn.push(
        DnType::CustomDnType(SERIAL_NUMBER_OID.to_vec()),
        DnValue::PrintableString(serial_number),
    );
    dn.push(DnType::CommonName, common_name);

    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial_number());
    params.use_authority_key_identifier_extension = true;
    params.key_usages = match (slot, algorithm) {
        (Slot::KeyManagement, KeyAlgorithm::Rsa2048) => vec![KeyUsagePurpose::KeyEncipherment],
        (Slot::KeyManagement, KeyAlgorithm::EccP256) => vec![KeyUsagePurpose::KeyAgreement],
        _ => vec![KeyUsagePurpose::DigitalSignature],
    };
    if slot == Slot::Authentication {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    Ok(params)
}

/// A random positive 16-byte certificate serial number (RFC 5280 allows up to 20 bytes).
pub(crate) fn random_serial_number() -> SerialNumber {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    // Positive and exactly 16 bytes long once DER-encoded: no sign or leading-zero byte.
    bytes[0] = (bytes[0] & 0x7F) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// A fresh key for `algorithm`: (PKCS#8 DER private key, SubjectPublicKeyInfo DER).
fn generate_key(algorithm: KeyAlgorithm) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), ProvisionError> {
    use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| ProvisionError::KeyGeneration {
        algorithm,
        source,
    };
    match algorithm {
        KeyAlgorithm::EccP256 => {
            let secret = p256::SecretKey::random(&mut OsRng);
            let pkcs8 = secret.to_pkcs8_der().map_err(|e| failed(Box::new(e)))?;
            let spki = secret
                .public_key()
                .to_public_key_der()
                .map_err(|e| failed(Box::new(e)))?;
            Ok((Zeroizing::new(pkcs8.as_bytes().to_vec()), spki.into_vec()))
        }
        KeyAlgorithm::Rsa2048 => {
            let secret =
                rsa::RsaPrivateKey::new(&mut OsRng, 2048).map_err(|e| failed(Box::new(e)))?;
            let pkcs8 = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(&secret)
                .map_err(|e| failed(Box::new(e)))?;
            let spki = rsa::pkcs8::EncodePublicKey::to_public_key_der(&secret.to_public_key())
                .map_err(|e| failed(Box::new(e)))?;
            Ok((Zeroizing::new(pkcs8.as_bytes().to_vec()), spki.into_vec()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> TestCa {
        TestCa::generate("Cardgate Test CA").unwrap()
    }

    fn spec() -> CardSpec {
        CardSpec::new("Asha Patel", "555000111222")
    }

    fn error_of(spec: CardSpec) -> ProvisionError {
        match provision(&ca(), &spec) {
            Ok(_) => panic!("{spec:?} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn uuid_must_be_twelve_digits() {
        for bad in [
            "55500011122",
            "5550001112223",
            "55500011122X",
            "",
            "５５５０００１１１２２２",
        ] {
            let e = error_of(CardSpec::new("Asha Patel", bad));
            assert!(
                matches!(&e, ProvisionError::InvalidUuid { uuid } if uuid == bad),
                "{e}"
            );
            assert!(e.to_string().contains("exactly 12 digits"), "{e}");
        }
    }

    #[test]
    fn permanent_card_needs_a_name_but_a_blank_tac_does_not() {
        let e = error_of(CardSpec::new("  ", "555000111222"));
        assert!(matches!(e, ProvisionError::InvalidHolderName { .. }), "{e}");
        let e = error_of(CardSpec::new(&"x".repeat(65), "555000111222"));
        assert!(e.to_string().contains("64 characters"), "{e}");
        let e = error_of(CardSpec::new("Asha\nPatel", "555000111222"));
        assert!(e.to_string().contains("control characters"), "{e}");
        let tac = provision(&ca(), &CardSpec::new("", "555000111222").temporary_access()).unwrap();
        assert_eq!(tac.card.profile.kind, CardKind::TemporaryAccess);
        assert_eq!(tac.card.profile.holder_name, "");
    }

    #[test]
    fn card_serial_must_be_one_to_ten_digits() {
        for bad in ["", "12345678901", "41234A6789", "-412345678"] {
            let e = error_of(spec().card_serial(bad));
            assert!(
                matches!(&e, ProvisionError::InvalidCardSerial { serial } if serial == bad),
                "{e}"
            );
        }
    }

    #[test]
    fn old_generation_with_a_new_serial_is_refused() {
        let e = error_of(spec().old_generation().card_serial("4123456789"));
        assert!(matches!(e, ProvisionError::NotOldGeneration { .. }), "{e}");
        assert!(e.to_string().contains("01, 02 or 03"), "{e}");
    }

    #[test]
    fn pin_follows_the_nhs_rule_and_never_appears_in_the_error() {
        for bad in ["123", "123456789", "12 34", "12-34", "pässe"] {
            let e = error_of(spec().pin(bad));
            assert!(matches!(e, ProvisionError::InvalidPin { .. }), "{e}");
            assert!(!e.to_string().contains(bad), "{e}");
            assert!(!format!("{e:?}").contains(bad), "{e:?}");
        }
        for good in ["1234", "abcd1234", "Ab3D"] {
            assert!(check(&spec().pin(good)).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn puk_must_be_eight_letters_or_digits() {
        for bad in ["1234567", "123456789", "1234 678"] {
            let e = error_of(spec().puk(bad));
            assert!(matches!(e, ProvisionError::InvalidPuk { .. }), "{e}");
            assert!(!e.to_string().contains(bad), "{e}");
        }
        assert!(check(&spec().puk("A1b2C3d4")).is_ok());
    }

    #[test]
    fn pin_tries_must_be_one_to_fifteen() {
        for bad in [0, 16, 255] {
            let e = error_of(spec().pin_tries(bad));
            assert!(
                matches!(e, ProvisionError::InvalidPinTries { tries } if tries == bad),
                "{e}"
            );
        }
        assert!(check(&spec().pin_tries(1)).is_ok());
        assert!(check(&spec().pin_tries(15)).is_ok());
    }

    #[test]
    fn management_key_must_be_aes_128() {
        let e = error_of(spec().management_key(&[1; 24]));
        assert!(
            matches!(e, ProvisionError::InvalidManagementKey { length: 24 }),
            "{e}"
        );
    }

    #[test]
    fn reversed_validity_window_is_refused() {
        let now = OffsetDateTime::now_utc();
        let e = error_of(spec().validity(Validity::Between {
            not_before: now,
            not_after: now - Duration::days(1),
        }));
        assert!(matches!(e, ProvisionError::InvalidValidity { .. }), "{e}");
    }

    #[test]
    fn default_serials_are_ten_digits_and_never_old_generation() {
        for n in 0..200u64 {
            let uuid = format!("{:012}", 555_000_000_000 + n * 7919);
            let serial = default_card_serial(&uuid, false);
            assert_eq!(serial.len(), 10, "{serial}");
            assert!(serial.bytes().all(|b| b.is_ascii_digit()), "{serial}");
            assert!(!is_old_generation_serial(&serial), "{uuid} -> {serial}");
            let old = default_card_serial(&uuid, true);
            assert_eq!(old.len(), 10, "{old}");
            assert!(is_old_generation_serial(&old), "{uuid} -> {old}");
        }
        assert_eq!(
            default_card_serial("555000111222", false),
            default_card_serial("555000111222", false),
            "the serial is derived, not random"
        );
    }

    #[test]
    fn debug_of_a_spec_hides_the_secrets() {
        let text = format!(
            "{:?}",
            spec()
                .pin("7391")
                .puk("80264513")
                .management_key(&[0xAB; 16])
        );
        assert!(!text.contains("7391"), "{text}");
        assert!(!text.contains("80264513"), "{text}");
        assert!(!text.to_lowercase().contains("abab"), "{text}");
        assert!(!text.contains("171"), "{text}");
    }
}
