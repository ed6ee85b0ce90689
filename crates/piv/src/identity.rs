//! Who the card belongs to: the card serial number from the CHUID ([`CardSerial`]), the
//! holder's 12-digit UUID and name from the PIV Authentication certificate's subject
//! ([`HolderUuid`]), and the [`CardIdentity`] login needs.
//!
//! Parsing only: the APDUs that fetch these objects live in the client.

use std::fmt;

use cardgate_apdu::tlv::{Tag, Tlv};
use x509_parser::oid_registry::OID_X509_SERIALNUMBER;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Operation, PivError};
use crate::slot::Slot;

/// The card serial number: what the service desk asks for and what the agent counts passcode
/// failures by. On NHS-style cards it is the FASC-N's system code and credential number (ten
/// digits); on cards with a placeholder FASC-N (YubiKeys ship the all-nines test value) it is
/// the CHUID's GUID in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CardSerial(String);

impl CardSerial {
    /// A serial of 1 to 32 ASCII letters or digits (ten digits on NHS-style cards, 32 hex
    /// digits for a GUID).
    pub fn new(value: &str) -> Result<CardSerial, PivError> {
        if value.is_empty() || value.len() > 32 {
            return Err(PivError::InvalidCardSerial {
                problem: format!("{value:?} must be 1 to 32 characters"),
            });
        }
        if !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(PivError::InvalidCardSerial {
                problem: format!("{value:?} must be letters or digits only"),
            });
        }
        Ok(CardSerial(value.to_owned()))
    }

    /// The serial as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is an old-generation card (ten digits beginning 01, 02 or 03), which the
    /// NHS cannot renew or unlock: the holder must be told to get a new card.
    pub fn is_old_generation(&self) -> bool {
        self.0.len() == 10
            && self.0.bytes().all(|b| b.is_ascii_digit())
            && ["01", "02", "03"].iter().any(|p| self.0.starts_with(p))
    }
}

impl fmt::Display for CardSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The holder's UUID: the 12-digit number printed on the card's front, and the key role
/// profiles hang on. Exactly 12 ASCII digits, so nothing else can pass for one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HolderUuid(String);

impl HolderUuid {
    /// Checks that `value` is exactly 12 ASCII digits.
    pub fn new(value: &str) -> Result<HolderUuid, PivError> {
        if value.len() != 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PivError::InvalidHolderUuid {
                problem: format!("{value:?} is not 12 digits"),
            });
        }
        Ok(HolderUuid(value.to_owned()))
    }

    /// The UUID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HolderUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What login needs from a card, read with as few APDUs as possible (SELECT, CHUID, the 9A
/// certificate): who holds it and the certificate to check and to present in TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardIdentity {
    /// The card serial number from the CHUID.
    pub card_serial: CardSerial,
    /// The holder's UUID from the authentication certificate's subject.
    pub holder_uuid: HolderUuid,
    /// The holder's name (the subject's common name).
    pub holder_name: String,
    /// The PIV Authentication certificate, DER.
    pub auth_certificate_der: Vec<u8>,
}

/// Tags inside the CHUID (SP 800-73-4 part 1 table 9).
const FASC_N: Tag = Tag(0x30);
const GUID: Tag = Tag(0x34);

/// The card serial from the content of a CHUID's `53` container.
pub(crate) fn card_serial_from_chuid(content: &[u8]) -> Result<CardSerial, PivError> {
    let malformed = |reason: String| PivError::MalformedResponse {
        operation: Operation::ReadObject,
        reason: format!("CHUID: {reason}"),
    };
    let elements = Tlv::parse_all(content).map_err(|e| malformed(e.to_string()))?;
    if let Some(fasc_n) = Tlv::find(&elements, FASC_N)
        && let Some(fields) = decode_fasc_n(fasc_n.value)
        && !(fields.system_code == "9999" && fields.credential_number == "999999")
    {
        return CardSerial::new(&format!(
            "{}{}",
            fields.system_code, fields.credential_number
        ));
    }
    if let Some(guid) = Tlv::find(&elements, GUID)
        && guid.value.len() == 16
        && guid.value.iter().any(|&b| b != 0)
    {
        let hex: String = guid.value.iter().map(|b| format!("{b:02X}")).collect();
        return CardSerial::new(&hex);
    }
    Err(PivError::InvalidCardSerial {
        problem: "the CHUID has neither a usable FASC-N nor a GUID".into(),
    })
}

/// The FASC-N fields the card serial comes from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FascNFields {
    pub(crate) agency_code: String,
    pub(crate) system_code: String,
    pub(crate) credential_number: String,
}

/// Decodes a 25-byte FASC-N (40 five-bit characters: BCD value least significant bit first,
/// then odd parity), checking sentinels, separators, parity and the LRC. `None` when any
/// check fails: a damaged FASC-N must not yield a wrong serial.
pub(crate) fn decode_fasc_n(bytes: &[u8]) -> Option<FascNFields> {
    const START: u8 = 0xB;
    const SEPARATOR: u8 = 0xD;
    const END: u8 = 0xF;
    if bytes.len() != 25 {
        return None;
    }
    let bit = |pos: usize| (bytes[pos / 8] >> (7 - pos % 8)) & 1;
    let mut chars = [0u8; 40];
    for (n, c) in chars.iter_mut().enumerate() {
        let mut value = 0u8;
        for i in 0..4 {
            value |= bit(n * 5 + i) << i;
        }
        let parity = bit(n * 5 + 4);
        if (value.count_ones() + u32::from(parity)) % 2 != 1 {
            return None;
        }
        *c = value;
    }
    let lrc = chars[..39].iter().fold(0u8, |acc, c| acc ^ c);
    if chars[0] != START || chars[38] != END || chars[39] != lrc {
        return None;
    }
    if [5, 10, 17, 19, 21].iter().any(|&i| chars[i] != SEPARATOR) {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<String> {
        chars[range]
            .iter()
            .map(|&c| (c <= 9).then(|| char::from(b'0' + c)))
            .collect()
    };
    Some(FascNFields {
        agency_code: digits(1..5)?,
        system_code: digits(6..10)?,
        credential_number: digits(11..17)?,
    })
}

/// The holder's UUID and name from a PIV Authentication certificate's subject:
/// `serialNumber` (OID 2.5.4.5) must be exactly 12 digits; the common name is the name.
pub(crate) fn holder_from_certificate(der: &[u8]) -> Result<(HolderUuid, String), PivError> {
    let invalid = |reason: String| PivError::InvalidCertificate {
        slot: Slot::Authentication,
        reason,
    };
    let (rest, certificate) =
        X509Certificate::from_der(der).map_err(|e| invalid(format!("not X.509: {e}")))?;
    if !rest.is_empty() {
        return Err(invalid(format!(
            "{} bytes after the certificate",
            rest.len()
        )));
    }
    let subject = certificate.subject();
    let mut serials = subject.iter_by_oid(&OID_X509_SERIALNUMBER);
    let serial = serials
        .next()
        .ok_or_else(|| invalid("the subject has no serialNumber (holder UUID)".into()))?;
    if serials.next().is_some() {
        return Err(invalid(
            "the subject has more than one serialNumber, so the holder UUID is ambiguous".into(),
        ));
    }
    let serial = serial
        .as_str()
        .map_err(|e| invalid(format!("the serialNumber is not text: {e}")))?;
    let uuid = HolderUuid::new(serial).map_err(|_| {
        invalid(format!(
            "the subject's serialNumber {serial:?} is not a 12-digit holder UUID"
        ))
    })?;
    let name = subject
        .iter_common_name()
        .next()
        .ok_or_else(|| invalid("the subject has no common name (holder name)".into()))?
        .as_str()
        .map_err(|e| invalid(format!("the common name is not text: {e}")))?
        .to_owned();
    Ok((uuid, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_published_all_nines_fasc_n_decodes() {
        let f = decode_fasc_n(&hex("D4E739DA739CED39CE739D836858210842108421C84210C3EB")).unwrap();
        assert_eq!(f.agency_code, "9999");
        assert_eq!(f.system_code, "9999");
        assert_eq!(f.credential_number, "999999");
    }

    #[test]
    fn a_damaged_fasc_n_is_refused() {
        let mut bytes = hex("D4E739DA739CED39CE739D836858210842108421C84210C3EB");
        bytes[3] ^= 0x10;
        assert_eq!(decode_fasc_n(&bytes), None);
        assert_eq!(decode_fasc_n(&bytes[..24]), None);
    }

    #[test]
    fn placeholder_fasc_n_falls_back_to_the_guid() {
        let mut chuid = vec![0x30, 25];
        chuid.extend(hex("D4E739DA739CED39CE739D836858210842108421C84210C3EB"));
        chuid.extend([0x34, 16]);
        chuid.extend(0..16u8);
        chuid.extend([0xFE, 0x00]);
        assert_eq!(
            card_serial_from_chuid(&chuid).unwrap().as_str(),
            "000102030405060708090A0B0C0D0E0F"
        );
        assert!(card_serial_from_chuid(&[0xFE, 0x00]).is_err());
        assert!(card_serial_from_chuid(&[0x30]).is_err());
    }

    #[test]
    fn uuid_is_exactly_twelve_digits() {
        assert!(HolderUuid::new("555000111222").is_ok());
        for bad in ["55500011122", "5550001112223", "55500011122X", "", "５５５"] {
            assert!(HolderUuid::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn old_generation_serials_begin_01_to_03() {
        assert!(CardSerial::new("0212345678").unwrap().is_old_generation());
        assert!(!CardSerial::new("4212345678").unwrap().is_old_generation());
        assert!(!CardSerial::new("02").unwrap().is_old_generation());
        assert!(CardSerial::new("").is_err());
        assert!(CardSerial::new("12/3").is_err());
    }
}
