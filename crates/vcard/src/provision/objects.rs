//! The PIV data objects a provisioned card carries (SP 800-73-4 part 1: CCC table 8, CHUID
//! table 9, certificate containers table 10, Printed Information table 14, Discovery
//! table 18), the FASC-N encoding, and the card's ATR.
//!
//! Each builder returns the content of the `53` container (what the card file stores), built
//! with [`cardgate_apdu::tlv`].

use cardgate_apdu::tlv::{self, Builder, Tag, Tlv};
use sha2::{Digest, Sha256};

/// The PIV card application's full AID (SP 800-73-4 part 1, 2.2), as Discovery names it.
pub const PIV_AID: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];

/// The ATR every provisioned card reports.
///
/// Same structure as a YubiKey 4/5 ATR (`3B F8 13 00 00 81 31 FE 15 "Yubikey4" D4`):
/// T=1 with an IFSC of 254 (`TA3 = FE`) and eight proprietary historical bytes, here the
/// ASCII text `cardgate`, then the check byte. Not a real product's ATR, so no tool applies
/// a vendor quirk to the virtual card; OpenSC's PIV driver needs no known ATR (LAB.md).
pub const ATR: [u8; 18] = [
    0x3B, 0xF8, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, // T0, TA1..TD2, TA3, TB3
    b'c', b'a', b'r', b'd', b'g', b'a', b't', b'e', // historical bytes
    0xB3, // TCK: XOR of T0 through the last historical byte
];

/// Issuer identification in Printed Information (tag 06, at most 15 bytes).
const ISSUER_IDENTIFICATION: &str = "CARDGATE LAB";

// Tags inside the containers (SP 800-73-4 part 1 tables 8, 9, 10, 14, 18).
const ERROR_DETECTION_CODE: Tag = Tag(0xFE);
const CERTIFICATE: Tag = Tag(0x70);
const CERT_INFO: Tag = Tag(0x71);
const FASC_N: Tag = Tag(0x30);
const GUID: Tag = Tag(0x34);
const CHUID_EXPIRATION_DATE: Tag = Tag(0x35);
const ISSUER_ASYMMETRIC_SIGNATURE: Tag = Tag(0x3E);
const PIN_USAGE_POLICY: Tag = Tag(0x5F2F);

/// A certificate container: `70 <DER> 71 01 00 FE 00` (uncompressed certificate, empty
/// error detection code).
pub fn certificate_object(der: &[u8]) -> Vec<u8> {
    Builder::new()
        .add(CERTIFICATE, der)
        .add(CERT_INFO, &[0x00])
        .add(ERROR_DETECTION_CODE, &[])
        .into_bytes()
}

/// The DER certificate inside a certificate container, if the container holds one.
pub fn certificate_from_object(object: &[u8]) -> Option<Vec<u8>> {
    let elements = Tlv::parse_all(object).ok()?;
    Tlv::find(&elements, CERTIFICATE).map(|t| t.value.to_vec())
}

/// The Card Holder Unique Identifier: FASC-N, GUID (derived from the card serial so the
/// same serial always gives the same GUID), expiry date `YYYYMMDD`, an empty issuer
/// signature and an empty error detection code.
pub fn chuid(fasc_n: &[u8; 25], card_serial: &str, expires: time::Date) -> Vec<u8> {
    Builder::new()
        .add(FASC_N, fasc_n)
        .add(GUID, &guid(card_serial))
        .add(CHUID_EXPIRATION_DATE, yyyymmdd(expires).as_bytes())
        .add(ISSUER_ASYMMETRIC_SIGNATURE, &[])
        .add(ERROR_DETECTION_CODE, &[])
        .into_bytes()
}

/// A minimal well-formed Card Capability Container, laid out as common PIV cards (and
/// YubiKeys) ship it: card identifier `F0` (GSC-RID, manufacturer `FF`, card type `02`,
/// 14 bytes derived from the card serial), versions `21`, data model `10`, the rest empty.
pub fn ccc(card_serial: &str) -> Vec<u8> {
    let mut card_identifier = vec![0xA0, 0x00, 0x00, 0x01, 0x16, 0xFF, 0x02];
    card_identifier.extend_from_slice(&digest("cardgate-ccc", card_serial)[..14]);
    Builder::new()
        .add(Tag(0xF0), &card_identifier)
        .add(Tag(0xF1), &[0x21])
        .add(Tag(0xF2), &[0x21])
        .add(Tag(0xF3), &[])
        .add(Tag(0xF4), &[0x00])
        .add(Tag(0xF5), &[0x10])
        .add(Tag(0xF6), &[])
        .add(Tag(0xF7), &[])
        .add(Tag(0xFA), &[])
        .add(Tag(0xFB), &[])
        .add(Tag(0xFC), &[])
        .add(Tag(0xFD), &[])
        .add(ERROR_DETECTION_CODE, &[])
        .into_bytes()
}

/// The Discovery object's content (inside its `7E` template): the PIV AID and a PIN usage
/// policy of `40 00` (the PIV passcode only; no global PIN, no OCC).
pub fn discovery() -> Vec<u8> {
    Builder::new()
        .add(Tag::APPLICATION_IDENTIFIER, &PIV_AID)
        .add(PIN_USAGE_POLICY, &[0x40, 0x00])
        .into_bytes()
}

/// Printed Information: name (01), employee affiliation (02), expiry `YYYYMMMDD` (04),
/// agency card serial (05), issuer identification (06), empty error detection code.
/// Lengths are cut to the table's maxima (125, 20, 20 and 15 bytes).
pub fn printed_information(
    name: &str,
    affiliation: &str,
    expires: time::Date,
    card_serial: &str,
) -> Vec<u8> {
    Builder::new()
        .add(Tag(0x01), truncate(name, 125))
        .add(Tag(0x02), truncate(affiliation, 20))
        .add(Tag(0x04), printed_date(expires).as_bytes())
        .add(Tag(0x05), truncate(card_serial, 20))
        .add(Tag(0x06), truncate(ISSUER_IDENTIFICATION, 15))
        .add(ERROR_DETECTION_CODE, &[])
        .into_bytes()
}

/// Wraps `content` the way GET DATA returns it for `tag`: in a `7E` template for
/// Discovery, in `53` for everything else. Used by tests and `vcard show`.
pub fn as_returned(tag: u32, content: &[u8]) -> Vec<u8> {
    let outer = if tag == 0x7E {
        Tag(0x7E)
    } else {
        Tag::DATA_OBJECT
    };
    tlv::encode(outer, content)
}

/// The fields of a FASC-N (SP 800-73-4 part 1 / TIG SCEPACS), each a string of decimal
/// digits of the field's fixed width.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FascN {
    /// Agency code (4 digits).
    pub agency_code: String,
    /// System code (4 digits).
    pub system_code: String,
    /// Credential number (6 digits).
    pub credential_number: String,
    /// Credential series (1 digit).
    pub credential_series: String,
    /// Individual credential issue (1 digit).
    pub individual_credential_issue: String,
    /// Person identifier (10 digits).
    pub person_identifier: String,
    /// Organizational category (1 digit).
    pub organizational_category: String,
    /// Organizational identifier (4 digits).
    pub organizational_identifier: String,
    /// Person/organization association category (1 digit).
    pub association_category: String,
}

impl FascN {
    /// The lab's FASC-N for a card: test agency 9999, system code and credential number
    /// from the 10-digit (zero-padded) card serial, person identifier from the UUID's last
    /// 10 digits, organizational category 1, organization 9999, association 1 (employee).
    pub fn for_card(card_serial: &str, holder_uuid: &str) -> FascN {
        let serial = format!("{card_serial:0>10}");
        let serial = &serial[serial.len() - 10..];
        let uuid = format!("{holder_uuid:0>10}");
        let person = &uuid[uuid.len() - 10..];
        FascN {
            agency_code: "9999".into(),
            system_code: serial[..4].into(),
            credential_number: serial[4..].into(),
            credential_series: "0".into(),
            individual_credential_issue: "1".into(),
            person_identifier: person.into(),
            organizational_category: "1".into(),
            organizational_identifier: "9999".into(),
            association_category: "1".into(),
        }
    }

    /// The 25-byte encoding: 40 five-bit characters (4 BCD bits, least significant first,
    /// then an odd parity bit): start sentinel, fields with separators, end sentinel and
    /// the longitudinal redundancy character. `None` if a field has the wrong width or a
    /// non-digit.
    pub fn encode(&self) -> Option<[u8; 25]> {
        const START: u8 = 0xB;
        const SEPARATOR: u8 = 0xD;
        const END: u8 = 0xF;
        let fields: [(&str, usize); 9] = [
            (&self.agency_code, 4),
            (&self.system_code, 4),
            (&self.credential_number, 6),
            (&self.credential_series, 1),
            (&self.individual_credential_issue, 1),
            (&self.person_identifier, 10),
            (&self.organizational_category, 1),
            (&self.organizational_identifier, 4),
            (&self.association_category, 1),
        ];
        let mut chars = vec![START];
        for (i, (field, width)) in fields.iter().enumerate() {
            if field.len() != *width || !field.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            chars.extend(field.bytes().map(|b| b - b'0'));
            // Separators follow the first five fields; PI, OC, OI and POA run together.
            if i < 5 {
                chars.push(SEPARATOR);
            }
        }
        chars.push(END);
        let lrc = chars.iter().fold(0u8, |acc, c| acc ^ c);
        chars.push(lrc);

        let mut out = [0u8; 25];
        for (n, c) in chars.iter().enumerate() {
            let five = five_bit(*c);
            for bit in 0..5 {
                if five & (0x10 >> bit) != 0 {
                    let pos = n * 5 + bit;
                    out[pos / 8] |= 0x80 >> (pos % 8);
                }
            }
        }
        Some(out)
    }
}

/// One FASC-N character: BCD value bits least significant first, then odd parity.
fn five_bit(value: u8) -> u8 {
    let reversed =
        ((value & 1) << 3) | ((value & 2) << 1) | ((value & 4) >> 1) | ((value & 8) >> 3);
    let parity = u8::from(value.count_ones() % 2 == 0);
    (reversed << 1) | parity
}

/// The GUID (tag 34): 16 bytes derived from the card serial, marked as an RFC 4122
/// name-based UUID so tools that print it as a UUID do not choke.
fn guid(card_serial: &str) -> [u8; 16] {
    let d = digest("cardgate-guid", card_serial);
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out[6] = (out[6] & 0x0F) | 0x50;
    out[8] = (out[8] & 0x3F) | 0x80;
    out
}

fn digest(domain: &str, value: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    h.finalize().into()
}

/// `YYYYMMDD`, the CHUID expiry format.
pub fn yyyymmdd(date: time::Date) -> String {
    format!(
        "{:04}{:02}{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// `YYYYMMMDD` (e.g. `2027MAR05`), the Printed Information expiry format.
pub fn printed_date(date: time::Date) -> String {
    let month = date.month().to_string();
    let month: String = month.chars().take(3).collect::<String>().to_uppercase();
    format!("{:04}{month}{:02}", date.year(), date.day())
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &[u8] {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text.as_bytes()[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fasc_n_matches_the_published_all_nines_vector() {
        // The widely used test FASC-N D4E739DA...C3EB decodes to these fields.
        let fields = FascN {
            agency_code: "9999".into(),
            system_code: "9999".into(),
            credential_number: "999999".into(),
            credential_series: "0".into(),
            individual_credential_issue: "1".into(),
            person_identifier: "0000000000".into(),
            organizational_category: "3".into(),
            organizational_identifier: "0000".into(),
            association_category: "1".into(),
        };
        assert_eq!(
            hex::encode_upper(fields.encode().unwrap()),
            "D4E739DA739CED39CE739D836858210842108421C84210C3EB"
        );
    }

    #[test]
    fn fasc_n_refuses_malformed_fields() {
        let mut fields = FascN::for_card("4123456789", "555000111222");
        assert!(fields.encode().is_some());
        fields.agency_code = "99A9".into();
        assert!(fields.encode().is_none());
        fields.agency_code = "999".into();
        assert!(fields.encode().is_none());
    }

    #[test]
    fn atr_check_byte_is_right() {
        // TCK makes the XOR of T0 through TCK zero (ISO 7816-3 8.2.5).
        assert_eq!(ATR[1..].iter().fold(0u8, |a, b| a ^ b), 0);
        assert_eq!(ATR[1] & 0x0F, 8, "T0 announces 8 historical bytes");
    }

    #[test]
    fn certificate_container_round_trips() {
        let object = certificate_object(&[0x30, 0x03, 0x02, 0x01, 0x05]);
        assert_eq!(
            object,
            vec![
                0x70, 0x05, 0x30, 0x03, 0x02, 0x01, 0x05, 0x71, 0x01, 0x00, 0xFE, 0x00
            ]
        );
        assert_eq!(
            certificate_from_object(&object),
            Some(vec![0x30, 0x03, 0x02, 0x01, 0x05])
        );
        assert_eq!(certificate_from_object(&[0x71, 0x01, 0x00]), None);
    }

    #[test]
    fn dates_use_the_formats_of_the_tables() {
        let date = time::macros::date!(2027 - 03 - 05);
        assert_eq!(yyyymmdd(date), "20270305");
        assert_eq!(printed_date(date), "2027MAR05");
    }

    #[test]
    fn discovery_names_the_piv_aid_and_pin_policy() {
        let wrapped = as_returned(0x7E, &discovery());
        let (outer, rest) = Tlv::parse_one(&wrapped).unwrap();
        assert!(rest.is_empty());
        assert_eq!(outer.tag, Tag(0x7E));
        let inner = outer.children().unwrap();
        assert_eq!(Tlv::find(&inner, Tag(0x4F)).unwrap().value, &PIV_AID);
        assert_eq!(Tlv::find(&inner, Tag(0x5F2F)).unwrap().value, &[0x40, 0x00]);
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("Zoë", 3), b"Zo");
        assert_eq!(truncate("abc", 15), b"abc");
    }
}
