//! Typed PIV commands: a [`CommandApdu`] (already reassembled from a chain) parsed into what
//! SP 800-73-4 part 2 (and the YubiKey extensions that OpenSC and yubico-piv-tool send) says
//! it is. Parsing enforces the syntax the specification requires (P1/P2, TLV layout, passcode
//! format) and nothing about the card's state; the applet decides what the card answers.
//!
//! Each error is the status word the card answers for that malformed command.

use std::fmt;

use cardgate_apdu::tlv::{Tag, Tlv};
use cardgate_apdu::{CommandApdu, StatusWord};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::card_file::{KeyAlgorithm, ObjectTag, PinPolicy, Slot};

/// The PIV card application's AID with version (SP 800-73-4 part 1 §2.2).
pub(crate) const PIV_AID: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];
/// The shortest right-truncated AID that still selects PIV: NIST's RID `A0 00 00 03 08`.
pub(crate) const PIV_RID_LEN: usize = 5;

/// The length of a padded passcode block in VERIFY, CHANGE REFERENCE DATA and RESET RETRY
/// COUNTER.
pub(crate) const PADDED_PASSCODE_LEN: usize = 8;
/// The shortest new passcode or unlock code the card accepts: NHS passcodes are 4 to 8
/// characters, so a shorter new value is refused before it can lock anyone out.
pub(crate) const MIN_NEW_PASSCODE_LEN: usize = 4;
/// The most a short Le asks for (`00`): what GET RESPONSE without Le means.
pub(crate) const MAX_SHORT_LE: usize = 256;
/// The padding byte after a passcode shorter than eight bytes.
const PASSCODE_PAD: u8 = 0xFF;

/// Instruction bytes (SP 800-73-4 part 2 §3 and the Yubico PIV extensions).
pub(crate) mod ins {
    /// SELECT.
    pub const SELECT: u8 = 0xA4;
    /// GET DATA.
    pub const GET_DATA: u8 = 0xCB;
    /// PUT DATA.
    pub const PUT_DATA: u8 = 0xDB;
    /// VERIFY.
    pub const VERIFY: u8 = 0x20;
    /// CHANGE REFERENCE DATA.
    pub const CHANGE_REFERENCE_DATA: u8 = 0x24;
    /// RESET RETRY COUNTER.
    pub const RESET_RETRY_COUNTER: u8 = 0x2C;
    /// GENERAL AUTHENTICATE.
    pub const GENERAL_AUTHENTICATE: u8 = 0x87;
    /// GENERATE ASYMMETRIC KEY PAIR.
    pub const GENERATE_ASYMMETRIC_KEY_PAIR: u8 = 0x47;
    /// GET RESPONSE (ISO 7816-4).
    pub const GET_RESPONSE: u8 = 0xC0;
    /// Yubico: GET VERSION.
    pub const GET_VERSION: u8 = 0xFD;
    /// Yubico: GET SERIAL.
    pub const GET_SERIAL: u8 = 0xF8;
    /// Yubico: GET METADATA.
    pub const GET_METADATA: u8 = 0xF7;
}

/// Key reference of the card holder passcode (PIV Card Application PIN).
pub(crate) const KEY_REF_PIN: u8 = 0x80;
/// Key reference of the unlock code (PIN Unblocking Key).
pub(crate) const KEY_REF_PUK: u8 = 0x81;
/// Key reference of the card management key.
pub(crate) const KEY_REF_MANAGEMENT: u8 = 0x9B;

/// One PIV command, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// SELECT the PIV application (the AID matched, possibly right-truncated).
    Select,
    /// GET DATA of one data object.
    GetData {
        /// The object asked for.
        object: ObjectTag,
    },
    /// PUT DATA of one data object; empty content deletes it.
    PutData {
        /// The object written.
        object: ObjectTag,
        /// The content of its `53` template (or of `7E` for the Discovery object).
        content: Vec<u8>,
    },
    /// VERIFY of the card holder passcode.
    Verify(Verify),
    /// CHANGE REFERENCE DATA of the passcode or the unlock code.
    ChangeReferenceData {
        /// Which counter and value change.
        reference: PasscodeReference,
        /// The current value.
        current: Passcode,
        /// The new value.
        new: Passcode,
    },
    /// RESET RETRY COUNTER: the unlock code sets a new passcode.
    ResetRetryCounter {
        /// The unlock code.
        puk: Passcode,
        /// The new passcode.
        new_pin: Passcode,
    },
    /// GENERAL AUTHENTICATE with a slot key or the management key.
    GeneralAuthenticate {
        /// P1: the algorithm the host believes the key has; the applet checks it.
        algorithm: u8,
        /// P2: the key used.
        key: AuthenticationKey,
        /// What the dynamic authentication template asks for.
        step: AuthenticationStep,
    },
    /// GENERATE ASYMMETRIC KEY PAIR in a slot.
    GenerateKeyPair {
        /// The slot whose key is replaced.
        slot: Slot,
        /// The new key's algorithm.
        algorithm: KeyAlgorithm,
        /// A Yubico `AA` PIN policy, when the host asked for one; `None` keeps the slot's.
        pin_policy: Option<PinPolicy>,
    },
    /// GET RESPONSE: the next part of a long response.
    GetResponse {
        /// How many bytes the host accepts.
        le: usize,
    },
    /// Yubico GET VERSION.
    GetVersion,
    /// Yubico GET SERIAL.
    GetSerial,
    /// Yubico GET METADATA of a key or passcode.
    GetMetadata(MetadataReference),
}

/// The three forms of VERIFY.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verify {
    /// Check a passcode (spends a try when wrong).
    Check(Passcode),
    /// No data: report the security status without spending a try.
    Status,
    /// P1 = FF: reset the security status (log out).
    Logout,
}

/// The reference data CHANGE REFERENCE DATA may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PasscodeReference {
    /// 80: the card holder passcode.
    Pin,
    /// 81: the unlock code.
    Puk,
}

/// The key GENERAL AUTHENTICATE uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthenticationKey {
    /// 9B: the card management key.
    Management,
    /// 9A, 9C, 9D or 9E: a slot's private key.
    Slot(Slot),
}

/// What a GENERAL AUTHENTICATE dynamic authentication template (`7C`) asks for.
#[derive(PartialEq, Eq)]
pub(crate) enum AuthenticationStep {
    /// `82 00, 81 <input>`: sign a digest (EC) or apply the raw private-key operation (RSA).
    Sign {
        /// The digest or padded block.
        input: Vec<u8>,
    },
    /// `82 00, 85 <point>`: ECDH with the slot key.
    KeyAgreement {
        /// The peer's public point.
        peer_point: Vec<u8>,
    },
    /// `80 00`: management key mutual authentication, step 1: the card sends an encrypted
    /// witness.
    WitnessRequest,
    /// `80 <witness>, 81 <challenge>`: mutual authentication, step 2: the host proves it
    /// decrypted the witness and challenges the card.
    MutualResponse {
        /// The witness as the host decrypted it.
        witness: Zeroizing<Vec<u8>>,
        /// The host's challenge for the card to encrypt.
        challenge: Vec<u8>,
    },
    /// `81 00`: external authentication, step 1: the card sends a challenge.
    ChallengeRequest,
    /// `82 <response>`: external authentication, step 2: the challenge encrypted by the host.
    ExternalResponse {
        /// The encrypted challenge.
        response: Vec<u8>,
    },
}

impl fmt::Debug for AuthenticationStep {
    /// Shows the step's kind and sizes: a decrypted witness is as good as the key for the
    /// session, so it never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthenticationStep::Sign { input } => write!(f, "Sign({} bytes)", input.len()),
            AuthenticationStep::KeyAgreement { peer_point } => {
                write!(f, "KeyAgreement({} bytes)", peer_point.len())
            }
            AuthenticationStep::WitnessRequest => write!(f, "WitnessRequest"),
            AuthenticationStep::MutualResponse { challenge, .. } => write!(
                f,
                "MutualResponse(<witness redacted>, {} byte challenge)",
                challenge.len()
            ),
            AuthenticationStep::ChallengeRequest => write!(f, "ChallengeRequest"),
            AuthenticationStep::ExternalResponse { response } => {
                write!(f, "ExternalResponse({} bytes)", response.len())
            }
        }
    }
}

/// What GET METADATA describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetadataReference {
    /// 80: the passcode.
    Pin,
    /// 81: the unlock code.
    Puk,
    /// 9B: the management key.
    Management,
    /// A slot key.
    Slot(Slot),
}

/// A passcode or unlock code as the host sent it, without its `FF` padding. Zeroized when
/// dropped and never printed.
#[derive(PartialEq, Eq)]
pub(crate) struct Passcode(Zeroizing<Vec<u8>>);

impl Passcode {
    /// Checks an 8-byte block: 1 to 8 printable ASCII characters, then only `FF`. Anything
    /// else (a short block, `FF` in the middle, `00` padding) is a malformed command that must
    /// not cost the holder a try.
    pub(crate) fn from_padded(block: &[u8]) -> Result<Passcode, StatusWord> {
        if block.len() != PADDED_PASSCODE_LEN {
            return Err(StatusWord::IncorrectData);
        }
        let len = block
            .iter()
            .position(|&b| b == PASSCODE_PAD)
            .unwrap_or(block.len());
        let (value, padding) = block.split_at(len);
        let printable = value.iter().all(|b| (0x20..=0x7E).contains(b));
        if value.is_empty() || !printable || padding.iter().any(|&b| b != PASSCODE_PAD) {
            return Err(StatusWord::IncorrectData);
        }
        Ok(Passcode(Zeroizing::new(value.to_vec())))
    }

    /// Whether this is the stored value, compared in constant time over the padded block so
    /// the comparison time says nothing about how much of it was right.
    pub(crate) fn matches(&self, stored: &str) -> bool {
        let (Some(ours), Some(theirs)) = (pad(&self.0), pad(stored.as_bytes())) else {
            return false;
        };
        bool::from(ours.ct_eq(&theirs[..]))
    }

    /// The value as the card file stores it. Always valid text: parsing allowed only
    /// printable ASCII.
    pub(crate) fn to_stored(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.iter().map(|&b| char::from(b)).collect())
    }

    /// How many characters the value has.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for Passcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passcode(<redacted>)")
    }
}

/// A value padded with `FF` to eight bytes, or `None` if it is longer.
fn pad(value: &[u8]) -> Option<Zeroizing<[u8; PADDED_PASSCODE_LEN]>> {
    if value.len() > PADDED_PASSCODE_LEN {
        return None;
    }
    let mut block = Zeroizing::new([PASSCODE_PAD; PADDED_PASSCODE_LEN]);
    block[..value.len()].copy_from_slice(value);
    Some(block)
}

impl Command {
    /// Parses a complete (unchained) command. The class byte was checked by the caller.
    pub(crate) fn parse(apdu: &CommandApdu) -> Result<Command, StatusWord> {
        let data = apdu.data.as_slice();
        match apdu.ins {
            ins::SELECT => parse_select(apdu),
            ins::GET_DATA => {
                expect_p1p2(apdu, 0x3F, 0xFF)?;
                Ok(Command::GetData {
                    object: parse_get_data(data)?,
                })
            }
            ins::PUT_DATA => {
                expect_p1p2(apdu, 0x3F, 0xFF)?;
                let (object, content) = parse_put_data(data)?;
                Ok(Command::PutData { object, content })
            }
            ins::VERIFY => parse_verify(apdu),
            ins::CHANGE_REFERENCE_DATA => {
                if apdu.p1 != 0x00 {
                    return Err(StatusWord::IncorrectP1P2);
                }
                let reference = match apdu.p2 {
                    KEY_REF_PIN => PasscodeReference::Pin,
                    KEY_REF_PUK => PasscodeReference::Puk,
                    _ => return Err(StatusWord::ReferenceDataNotFound),
                };
                let (current, new) = parse_two_passcodes(data)?;
                Ok(Command::ChangeReferenceData {
                    reference,
                    current,
                    new,
                })
            }
            ins::RESET_RETRY_COUNTER => {
                if apdu.p1 != 0x00 {
                    return Err(StatusWord::IncorrectP1P2);
                }
                if apdu.p2 != KEY_REF_PIN {
                    return Err(StatusWord::ReferenceDataNotFound);
                }
                let (puk, new_pin) = parse_two_passcodes(data)?;
                Ok(Command::ResetRetryCounter { puk, new_pin })
            }
            ins::GENERAL_AUTHENTICATE => {
                let key = match apdu.p2 {
                    KEY_REF_MANAGEMENT => AuthenticationKey::Management,
                    other => AuthenticationKey::Slot(
                        Slot::from_key_reference(other).ok_or(StatusWord::IncorrectP1P2)?,
                    ),
                };
                Ok(Command::GeneralAuthenticate {
                    algorithm: apdu.p1,
                    key,
                    step: parse_authentication_template(data)?,
                })
            }
            ins::GENERATE_ASYMMETRIC_KEY_PAIR => {
                if apdu.p1 != 0x00 {
                    return Err(StatusWord::IncorrectP1P2);
                }
                let slot = Slot::from_key_reference(apdu.p2).ok_or(StatusWord::IncorrectP1P2)?;
                let (algorithm, pin_policy) = parse_key_generation(data)?;
                Ok(Command::GenerateKeyPair {
                    slot,
                    algorithm,
                    pin_policy,
                })
            }
            ins::GET_RESPONSE => {
                expect_p1p2(apdu, 0x00, 0x00)?;
                Ok(Command::GetResponse {
                    le: apdu.le.unwrap_or(MAX_SHORT_LE),
                })
            }
            // A YubiKey ignores P1/P2 of GET VERSION and GET SERIAL; so do we.
            ins::GET_VERSION => Ok(Command::GetVersion),
            ins::GET_SERIAL => Ok(Command::GetSerial),
            ins::GET_METADATA => {
                if apdu.p1 != 0x00 {
                    return Err(StatusWord::IncorrectP1P2);
                }
                let reference = match apdu.p2 {
                    KEY_REF_PIN => MetadataReference::Pin,
                    KEY_REF_PUK => MetadataReference::Puk,
                    KEY_REF_MANAGEMENT => MetadataReference::Management,
                    other => MetadataReference::Slot(
                        Slot::from_key_reference(other).ok_or(StatusWord::ReferenceDataNotFound)?,
                    ),
                };
                Ok(Command::GetMetadata(reference))
            }
            _ => Err(StatusWord::InstructionNotSupported),
        }
    }
}

fn expect_p1p2(apdu: &CommandApdu, p1: u8, p2: u8) -> Result<(), StatusWord> {
    if (apdu.p1, apdu.p2) == (p1, p2) {
        Ok(())
    } else {
        Err(StatusWord::IncorrectP1P2)
    }
}

/// SELECT by AID (P1 04, P2 00): the PIV AID or any right-truncation of it down to NIST's
/// RID. Any other AID is "not found", as on a card without that application.
fn parse_select(apdu: &CommandApdu) -> Result<Command, StatusWord> {
    expect_p1p2(apdu, 0x04, 0x00)?;
    let aid = apdu.data.as_slice();
    if aid.len() >= PIV_RID_LEN && PIV_AID.starts_with(aid) {
        Ok(Command::Select)
    } else {
        Err(StatusWord::NotFound)
    }
}

/// GET DATA's data field: exactly `5C <tag>`.
fn parse_get_data(data: &[u8]) -> Result<ObjectTag, StatusWord> {
    let (tlv, rest) = Tlv::parse_one(data).map_err(|_| StatusWord::IncorrectData)?;
    if tlv.tag != Tag::TAG_LIST || !rest.is_empty() {
        return Err(StatusWord::IncorrectData);
    }
    ObjectTag::from_bytes(tlv.value).ok_or(StatusWord::IncorrectData)
}

/// Whether PUT DATA may write this tag: the PIV data objects (`5FC1xx`), the
/// vendor range YubiKey tools use (`5FFFxx`), and Discovery.
fn is_writable_object(object: ObjectTag) -> bool {
    object == ObjectTag::DISCOVERY || matches!(object.0 >> 8, 0x5FC1 | 0x5FFF)
}

/// PUT DATA's data field: `5C <tag> 53 <content>`, or `7E <content>` for Discovery.
fn parse_put_data(data: &[u8]) -> Result<(ObjectTag, Vec<u8>), StatusWord> {
    let (first, rest) = Tlv::parse_one(data).map_err(|_| StatusWord::IncorrectData)?;
    if first.tag == Tag(ObjectTag::DISCOVERY.0) && rest.is_empty() {
        return Ok((ObjectTag::DISCOVERY, first.value.to_vec()));
    }
    if first.tag != Tag::TAG_LIST {
        return Err(StatusWord::IncorrectData);
    }
    let object = ObjectTag::from_bytes(first.value).ok_or(StatusWord::IncorrectData)?;
    if !is_writable_object(object) || object == ObjectTag::DISCOVERY {
        return Err(StatusWord::IncorrectData);
    }
    let (content, trailing) = Tlv::parse_one(rest).map_err(|_| StatusWord::IncorrectData)?;
    if content.tag != Tag::DATA_OBJECT || !trailing.is_empty() {
        return Err(StatusWord::IncorrectData);
    }
    Ok((object, content.value.to_vec()))
}

fn parse_verify(apdu: &CommandApdu) -> Result<Command, StatusWord> {
    let logout = match apdu.p1 {
        0x00 => false,
        0xFF => true,
        _ => return Err(StatusWord::IncorrectP1P2),
    };
    if apdu.p2 != KEY_REF_PIN {
        // The global PIN (00) and on-card comparison (96, 97) are not on this card.
        return Err(StatusWord::ReferenceDataNotFound);
    }
    let verify = match (logout, apdu.data.is_empty()) {
        (true, true) => Verify::Logout,
        (true, false) => return Err(StatusWord::IncorrectData),
        (false, true) => Verify::Status,
        (false, false) => Verify::Check(Passcode::from_padded(&apdu.data)?),
    };
    Ok(Command::Verify(verify))
}

/// Two padded passcodes back to back (old then new, or unlock code then new passcode). The
/// new one must be long enough to be a passcode at all.
fn parse_two_passcodes(data: &[u8]) -> Result<(Passcode, Passcode), StatusWord> {
    if data.len() != 2 * PADDED_PASSCODE_LEN {
        return Err(StatusWord::IncorrectData);
    }
    let (first, second) = data.split_at(PADDED_PASSCODE_LEN);
    let first = Passcode::from_padded(first)?;
    let second = Passcode::from_padded(second)?;
    if second.len() < MIN_NEW_PASSCODE_LEN {
        return Err(StatusWord::IncorrectData);
    }
    Ok((first, second))
}

/// The children of `7C` that GENERAL AUTHENTICATE may carry.
const TAG_WITNESS: Tag = Tag(0x80);
const TAG_CHALLENGE: Tag = Tag(0x81);
const TAG_RESPONSE: Tag = Tag(0x82);
const TAG_EXPONENTIATION: Tag = Tag(0x85);

/// The `7C` template: which children are present, and whether each is empty (a request) or
/// carries a value, decides the step.
fn parse_authentication_template(data: &[u8]) -> Result<AuthenticationStep, StatusWord> {
    let (template, rest) = Tlv::parse_one(data).map_err(|_| StatusWord::IncorrectData)?;
    if template.tag != Tag::DYNAMIC_AUTHENTICATION_TEMPLATE || !rest.is_empty() {
        return Err(StatusWord::IncorrectData);
    }
    let children = template.children().map_err(|_| StatusWord::IncorrectData)?;
    let mut witness = None;
    let mut challenge = None;
    let mut response = None;
    let mut exponentiation = None;
    for child in &children {
        let slot = match child.tag {
            TAG_WITNESS => &mut witness,
            TAG_CHALLENGE => &mut challenge,
            TAG_RESPONSE => &mut response,
            TAG_EXPONENTIATION => &mut exponentiation,
            _ => return Err(StatusWord::IncorrectData),
        };
        if slot.replace(child.value).is_some() {
            return Err(StatusWord::IncorrectData);
        }
    }
    let empty = |v: Option<&[u8]>| v.is_some_and(<[u8]>::is_empty);
    let full = |v: Option<&[u8]>| v.is_some_and(|v| !v.is_empty());
    let step = match (witness, challenge, response, exponentiation) {
        (None, c, r, None) if empty(r) && full(c) => AuthenticationStep::Sign {
            input: c.unwrap_or_default().to_vec(),
        },
        (None, None, r, e) if empty(r) && full(e) => AuthenticationStep::KeyAgreement {
            peer_point: e.unwrap_or_default().to_vec(),
        },
        (w, None, None, None) if empty(w) => AuthenticationStep::WitnessRequest,
        // Some hosts add an empty 82 to ask for the card's response explicitly.
        (w, c, r, None) if full(w) && full(c) && (r.is_none() || empty(r)) => {
            AuthenticationStep::MutualResponse {
                witness: Zeroizing::new(w.unwrap_or_default().to_vec()),
                challenge: c.unwrap_or_default().to_vec(),
            }
        }
        (None, c, None, None) if empty(c) => AuthenticationStep::ChallengeRequest,
        (None, None, r, None) if full(r) => AuthenticationStep::ExternalResponse {
            response: r.unwrap_or_default().to_vec(),
        },
        _ => return Err(StatusWord::IncorrectData),
    };
    Ok(step)
}

/// Yubico's PIN policy byte in the `AA` tag of a key generation template.
fn yubico_pin_policy(byte: u8) -> Result<Option<PinPolicy>, StatusWord> {
    match byte {
        0x00 => Ok(None),
        0x01 => Ok(Some(PinPolicy::Never)),
        0x02 => Ok(Some(PinPolicy::Once)),
        0x03 => Ok(Some(PinPolicy::Always)),
        _ => Err(StatusWord::IncorrectData),
    }
}

/// GENERATE ASYMMETRIC KEY PAIR's data: `AC { 80 <alg>, [AA <pin policy>], [AB <touch>] }`.
/// A touch policy is accepted and ignored: a virtual card has nothing to touch.
fn parse_key_generation(data: &[u8]) -> Result<(KeyAlgorithm, Option<PinPolicy>), StatusWord> {
    let (template, rest) = Tlv::parse_one(data).map_err(|_| StatusWord::IncorrectData)?;
    if template.tag != Tag(0xAC) || !rest.is_empty() {
        return Err(StatusWord::IncorrectData);
    }
    let children = template.children().map_err(|_| StatusWord::IncorrectData)?;
    let mut algorithm = None;
    let mut pin_policy = None;
    for child in children {
        match (child.tag.0, child.value) {
            (0x80, [0x11]) => algorithm = Some(KeyAlgorithm::EccP256),
            (0x80, [0x07]) => algorithm = Some(KeyAlgorithm::Rsa2048),
            (0xAA, [byte]) => pin_policy = yubico_pin_policy(*byte)?,
            (0xAB, [0x00..=0x03]) => {}
            _ => return Err(StatusWord::IncorrectData),
        }
    }
    Ok((algorithm.ok_or(StatusWord::IncorrectData)?, pin_policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(hex_apdu: &str) -> Result<Command, StatusWord> {
        let bytes = hex::decode(hex_apdu.replace(' ', "")).unwrap();
        Command::parse(&CommandApdu::parse(&bytes).unwrap())
    }

    #[test]
    fn select_accepts_the_full_and_truncated_piv_aid_only() {
        assert_eq!(
            parse("00A4 0400 0B A0000003080000100001 00 00"),
            Ok(Command::Select)
        );
        assert_eq!(
            parse("00A4 0400 09 A00000030800001000 00"),
            Ok(Command::Select)
        );
        assert_eq!(parse("00A4 0400 05 A000000308"), Ok(Command::Select));
        assert_eq!(parse("00A4 0400 04 A0000003"), Err(StatusWord::NotFound));
        assert_eq!(
            parse("00A4 0400 07 A0000005272101"),
            Err(StatusWord::NotFound)
        );
        assert_eq!(
            parse("00A4 0400 0C A000000308000010000100 01"),
            Err(StatusWord::NotFound)
        );
        assert_eq!(
            parse("00A4 0000 05 A000000308"),
            Err(StatusWord::IncorrectP1P2)
        );
    }

    #[test]
    fn get_data_names_one_object() {
        assert_eq!(
            parse("00CB 3FFF 05 5C035FC102 00"),
            Ok(Command::GetData {
                object: ObjectTag::CHUID
            })
        );
        assert_eq!(
            parse("00CB 3FFF 03 5C017E 00"),
            Ok(Command::GetData {
                object: ObjectTag::DISCOVERY
            })
        );
        assert_eq!(
            parse("00CB 3FFE 05 5C035FC102"),
            Err(StatusWord::IncorrectP1P2)
        );
        // Wrong outer tag, trailing bytes, a 4-byte tag, a truncated TLV.
        assert_eq!(
            parse("00CB 3FFF 05 5D035FC102"),
            Err(StatusWord::IncorrectData)
        );
        assert_eq!(
            parse("00CB 3FFF 06 5C035FC10200"),
            Err(StatusWord::IncorrectData)
        );
        assert_eq!(
            parse("00CB 3FFF 06 5C045FC10201"),
            Err(StatusWord::IncorrectData)
        );
        assert_eq!(parse("00CB 3FFF 03 5C055F"), Err(StatusWord::IncorrectData));
        assert_eq!(parse("00CB 3FFF"), Err(StatusWord::IncorrectData));
    }

    #[test]
    fn put_data_takes_a_tag_list_and_a_container_or_discovery() {
        assert_eq!(
            parse("00DB 3FFF 09 5C035FC109 5302AABB"),
            Ok(Command::PutData {
                object: ObjectTag::PRINTED_INFORMATION,
                content: vec![0xAA, 0xBB]
            })
        );
        assert_eq!(
            parse("00DB 3FFF 04 7E02 4F00"),
            Ok(Command::PutData {
                object: ObjectTag::DISCOVERY,
                content: vec![0x4F, 0x00]
            })
        );
        // Missing 53, wrong second tag, a non-PIV object, trailing garbage.
        assert_eq!(
            parse("00DB 3FFF 05 5C035FC109"),
            Err(StatusWord::IncorrectData)
        );
        assert_eq!(
            parse("00DB 3FFF 07 5C035FC109 5400"),
            Err(StatusWord::IncorrectData)
        );
        assert_eq!(
            parse("00DB 3FFF 07 5C03123456 5300"),
            Err(StatusWord::IncorrectData)
        );
        assert_eq!(
            parse("00DB 3FFF 08 5C035FC109 5300 00"),
            Err(StatusWord::IncorrectData)
        );
    }

    #[test]
    fn verify_has_three_forms_and_checks_the_passcode_format() {
        assert_eq!(parse("0020 0080"), Ok(Command::Verify(Verify::Status)));
        assert_eq!(parse("0020 FF80"), Ok(Command::Verify(Verify::Logout)));
        let Ok(Command::Verify(Verify::Check(pin))) = parse("0020 0080 08 37333931FFFFFFFF") else {
            panic!("not a passcode check");
        };
        assert!(pin.matches("7391"));
        assert!(!pin.matches("7392"));
        assert!(!pin.matches("73911"));
        assert_eq!(format!("{pin:?}"), "Passcode(<redacted>)");
        // An 8-character passcode uses no padding.
        assert!(matches!(
            parse("0020 0080 08 3132333435363738"),
            Ok(Command::Verify(Verify::Check(_)))
        ));
        // Too short, FF in the middle, 00 padding, all padding, padding after logout.
        for bad in [
            "0020 0080 04 37333931",
            "0020 0080 08 37FF3931FFFFFFFF",
            "0020 0080 08 3733393100000000",
            "0020 0080 08 FFFFFFFFFFFFFFFF",
            "0020 0080 09 37333931FFFFFFFFFF",
            "0020 FF80 08 37333931FFFFFFFF",
        ] {
            assert_eq!(parse(bad), Err(StatusWord::IncorrectData), "{bad}");
        }
        assert_eq!(parse("0020 0180"), Err(StatusWord::IncorrectP1P2));
        assert_eq!(parse("0020 0000"), Err(StatusWord::ReferenceDataNotFound));
    }

    #[test]
    fn change_reference_data_and_reset_take_two_padded_values() {
        assert!(matches!(
            parse("0024 0080 10 37333931FFFFFFFF 31323334FFFFFFFF"),
            Ok(Command::ChangeReferenceData {
                reference: PasscodeReference::Pin,
                ..
            })
        ));
        assert!(matches!(
            parse("0024 0081 10 3132333435363738 3837363534333231"),
            Ok(Command::ChangeReferenceData {
                reference: PasscodeReference::Puk,
                ..
            })
        ));
        assert!(matches!(
            parse("002C 0080 10 3132333435363738 31323334FFFFFFFF"),
            Ok(Command::ResetRetryCounter { .. })
        ));
        // A new passcode of three characters, only one block, an unknown reference.
        assert_eq!(
            parse("0024 0080 10 37333931FFFFFFFF 313233FFFFFFFFFF"),
            Err(StatusWord::IncorrectData)
        );
        assert_eq!(
            parse("0024 0080 08 37333931FFFFFFFF"),
            Err(StatusWord::IncorrectData)
        );
        assert_eq!(
            parse("0024 0082 10 37333931FFFFFFFF 31323334FFFFFFFF"),
            Err(StatusWord::ReferenceDataNotFound)
        );
        assert_eq!(
            parse("002C 0081 10 3132333435363738 31323334FFFFFFFF"),
            Err(StatusWord::ReferenceDataNotFound)
        );
    }

    #[test]
    fn general_authenticate_steps_follow_the_template() {
        let Ok(Command::GeneralAuthenticate {
            algorithm: 0x11,
            key: AuthenticationKey::Slot(Slot::Authentication),
            step: AuthenticationStep::Sign { input },
        }) = parse("0087 119A 08 7C06 8200 8102AABB 00")
        else {
            panic!("not a signature");
        };
        assert_eq!(input, vec![0xAA, 0xBB]);
        assert_eq!(
            parse("0087 039B 04 7C02 8000 00"),
            Ok(Command::GeneralAuthenticate {
                algorithm: 0x03,
                key: AuthenticationKey::Management,
                step: AuthenticationStep::WitnessRequest
            })
        );
        assert!(matches!(
            parse("0087 039B 0E 7C0C 8004 01020304 8104 05060708"),
            Ok(Command::GeneralAuthenticate {
                step: AuthenticationStep::MutualResponse { .. },
                ..
            })
        ));
        assert!(matches!(
            parse("0087 089B 04 7C02 8100"),
            Ok(Command::GeneralAuthenticate {
                step: AuthenticationStep::ChallengeRequest,
                ..
            })
        ));
        assert!(matches!(
            parse("0087 089B 06 7C04 8202 0102"),
            Ok(Command::GeneralAuthenticate {
                step: AuthenticationStep::ExternalResponse { .. },
                ..
            })
        ));
        assert!(matches!(
            parse("0087 119D 08 7C06 8200 85020401"),
            Ok(Command::GeneralAuthenticate {
                step: AuthenticationStep::KeyAgreement { .. },
                ..
            })
        ));
        // No template, a duplicated child, an unknown child, an empty sign input, a retired
        // key reference.
        for bad in [
            "0087 119A 04 7D02 8200",
            "0087 119A 08 7C06 8200 8200 8100",
            "0087 119A 06 7C04 8200 8300",
            "0087 119A 06 7C04 8200 8100",
            "0087 119A 02 7C00",
        ] {
            assert_eq!(parse(bad), Err(StatusWord::IncorrectData), "{bad}");
        }
        assert_eq!(
            parse("0087 1182 08 7C06 8200 8102AABB"),
            Err(StatusWord::IncorrectP1P2)
        );
    }

    #[test]
    fn key_generation_reads_algorithm_and_pin_policy() {
        assert_eq!(
            parse("0047 009A 05 AC03 800111"),
            Ok(Command::GenerateKeyPair {
                slot: Slot::Authentication,
                algorithm: KeyAlgorithm::EccP256,
                pin_policy: None
            })
        );
        assert_eq!(
            parse("0047 009C 0B AC09 800107 AA0101 AB0101"),
            Ok(Command::GenerateKeyPair {
                slot: Slot::Signature,
                algorithm: KeyAlgorithm::Rsa2048,
                pin_policy: Some(PinPolicy::Never)
            })
        );
        assert_eq!(
            parse("0047 009A 05 AC03 800114"),
            Err(StatusWord::IncorrectData)
        );
        assert_eq!(parse("0047 009A 02 AC00"), Err(StatusWord::IncorrectData));
        assert_eq!(
            parse("0047 009B 05 AC03 800111"),
            Err(StatusWord::IncorrectP1P2)
        );
    }

    #[test]
    fn yubico_extensions_and_unknown_instructions() {
        assert_eq!(parse("00FD 0000"), Ok(Command::GetVersion));
        assert_eq!(parse("00F8 0000"), Ok(Command::GetSerial));
        assert_eq!(
            parse("00F7 009B"),
            Ok(Command::GetMetadata(MetadataReference::Management))
        );
        assert_eq!(
            parse("00F7 009E"),
            Ok(Command::GetMetadata(MetadataReference::Slot(
                Slot::CardAuthentication
            )))
        );
        assert_eq!(parse("00F7 0099"), Err(StatusWord::ReferenceDataNotFound));
        assert_eq!(parse("00C0 0000 10"), Ok(Command::GetResponse { le: 16 }));
        assert_eq!(parse("00C0 0000"), Ok(Command::GetResponse { le: 256 }));
        assert_eq!(parse("00C0 0100 00"), Err(StatusWord::IncorrectP1P2));
        assert_eq!(
            parse("00B0 0000 00"),
            Err(StatusWord::InstructionNotSupported)
        );
    }
}
