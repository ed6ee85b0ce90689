//! The PIV card application (NIST SP 800-73-4 part 2) of the virtual card: a state machine
//! over raw APDU bytes, keeping persistent state in a [`CardFile`] and the session's security
//! state in memory.
//!
//! Where SP 800-73-4 leaves a choice and OpenSC or yubico-piv-tool expect a YubiKey's answer,
//! the applet answers like a YubiKey 5 (firmware 5.4.3):
//!
//! - The PIV application is selected at power-on, as on a YubiKey where it is the default
//!   application; commands before SELECT are served. SELECT of another AID answers 6A82 and
//!   leaves PIV selected, as ISO 7816-4 says for a failed selection.
//! - A slot key used with the wrong algorithm in P1 answers 6A80; an empty slot 6A88.
//! - Instruction unknown: 6D00. Class other than `00`/`10`: 6E00. Bytes that are no APDU at
//!   all: 6700.
//! - A chain interrupted by another command is abandoned and the new command served.
//! - GET RESPONSE with nothing waiting: 6985.
//! - The Discovery object is served even when the card file holds none (the default one:
//!   PIV PIN only, no global PIN), because OpenSC reads it to choose the PIN.
//! - A change of persistent state (a counter, a passcode, a key, an object) is saved to the
//!   card file before the answer that reflects it. When saving fails the card answers 6581
//!   and keeps the change in memory: a wrong passcode stays counted either way.

mod command;
mod keys;
mod response;

use std::fmt;
use std::path::{Path, PathBuf};

use cardgate_apdu::tlv::{self, Tag};
use cardgate_apdu::{CommandApdu, ResponseApdu, StatusWord};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::Card;
use crate::card_file::{
    CardFile, CardFileError, ManagementKeyAlgorithm, ObjectTag, PinPolicy, ReferenceData, Slot,
    SlotKey,
};
use command::{
    AuthenticationKey, AuthenticationStep, Command, MetadataReference, PIV_AID, PIV_RID_LEN,
    Passcode, PasscodeReference, Verify,
};
use keys::{Direction, SlotPrivateKey};
use response::{CLA_CHAINING, IncomingChain, OutgoingResponse};

/// The firmware version GET VERSION reports. 5.4.3 is a YubiKey 5 that tools treat as
/// supporting AES management keys and GET METADATA, both of which this card does.
pub const REPORTED_VERSION: [u8; 3] = [5, 4, 3];

/// The application label in the SELECT answer.
const APPLICATION_LABEL: &[u8] = b"cardgate virtual PIV";

/// The Discovery object's content when the card file holds none: the PIV AID, and a PIN
/// usage policy of "PIV PIN only" (`40 00`).
const DEFAULT_DISCOVERY: [u8; 18] = [
    0x4F, 0x0B, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00, 0x5F, 0x2F, 0x02,
    0x40, 0x00,
];

/// Data objects SP 800-73-4 guards with the PIN (access rule "PIN"): Printed Information and
/// the biometrics.
const PIN_PROTECTED_OBJECTS: [ObjectTag; 4] = [
    ObjectTag::PRINTED_INFORMATION,
    ObjectTag(0x5FC103), // Cardholder Fingerprints
    ObjectTag(0x5FC108), // Cardholder Facial Image
    ObjectTag(0x5FC121), // Cardholder Iris Images
];

/// Yubico's factory values, reported by GET METADATA as "default" so tools can warn.
const FACTORY_PIN: &str = "123456";
const FACTORY_PUK: &str = "12345678";
const FACTORY_MANAGEMENT_KEY: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];

/// A PIV card application over a card file: what the vpcd client puts into a reader.
///
/// Opened from a path, it writes every change of persistent state back to that file before
/// answering, so a blocked passcode stays blocked when the card is "removed" and
/// "reinserted" (opened again).
pub struct PivApplet {
    card: CardFile,
    path: Option<PathBuf>,
    session: Session,
}

/// What the card forgets at power-off or reset.
#[derive(Default)]
struct Session {
    /// The passcode was verified since power-on (and not reset since).
    pin_verified: bool,
    /// No private-key operation happened since the last successful VERIFY: what a slot with
    /// PIN policy "always" needs.
    pin_fresh: bool,
    /// The management key was proven since power-on.
    management_authenticated: bool,
    /// A management-key authentication half done.
    management_challenge: ManagementChallenge,
    incoming: IncomingChain,
    outgoing: OutgoingResponse,
}

/// The card's half of a management-key authentication in progress.
#[derive(Default)]
enum ManagementChallenge {
    /// Nothing in progress.
    #[default]
    None,
    /// Mutual authentication: the card sent this witness encrypted and waits for it back.
    AwaitingWitness(Zeroizing<Vec<u8>>),
    /// External authentication: the card sent this challenge and waits for it encrypted.
    AwaitingResponse(Zeroizing<Vec<u8>>),
}

impl fmt::Debug for PivApplet {
    /// Where the card lives and its security state; never a key or passcode.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivApplet")
            .field("card_serial", &self.card.profile.card_serial)
            .field("path", &self.path)
            .field("pin_verified", &self.session.pin_verified)
            .field(
                "management_authenticated",
                &self.session.management_authenticated,
            )
            .finish_non_exhaustive()
    }
}

/// A command's outcome before chaining: response data, or the status word that refuses it.
type Outcome = Result<Vec<u8>, StatusWord>;

impl PivApplet {
    /// A card that lives in memory only (tests, throwaway cards): changes are never saved.
    pub fn new(card: CardFile) -> Self {
        PivApplet {
            card,
            path: None,
            session: Session::default(),
        }
    }

    /// The card stored at `path`; every change of persistent state is written back there.
    pub fn open(path: &Path) -> Result<Self, CardFileError> {
        let card = CardFile::load(path)?;
        Ok(PivApplet {
            card,
            path: Some(path.to_path_buf()),
            session: Session::default(),
        })
    }

    /// The card's persistent state as it is now (what the next save writes).
    pub fn card_file(&self) -> &CardFile {
        &self.card
    }

    /// One command from raw bytes to `(data, status)`.
    fn process(&mut self, raw: &[u8]) -> (Vec<u8>, StatusWord) {
        let Ok(apdu) = CommandApdu::parse(raw) else {
            self.session.incoming.clear();
            self.session.outgoing.clear();
            return (Vec::new(), StatusWord::WrongLength);
        };
        if apdu.cla & !CLA_CHAINING != 0 {
            // Secure messaging, logical channels and proprietary classes are not spoken here.
            self.session.incoming.clear();
            self.session.outgoing.clear();
            return (Vec::new(), StatusWord::ClassNotSupported);
        }
        let apdu = match self.session.incoming.accept(apdu) {
            Ok(Some(whole)) => whole,
            Ok(None) => {
                self.session.outgoing.clear();
                return (Vec::new(), StatusWord::Success);
            }
            Err(status) => {
                self.session.outgoing.clear();
                return (Vec::new(), status);
            }
        };
        let command = Command::parse(&apdu);
        if let Ok(Command::GetResponse { le }) = command {
            return self.session.outgoing.next(le);
        }
        self.session.outgoing.clear();
        match command.and_then(|command| self.execute(command)) {
            Ok(data) => self.session.outgoing.start(data, apdu.le),
            Err(status) => (Vec::new(), status),
        }
    }

    fn execute(&mut self, command: Command) -> Outcome {
        if !matches!(
            command,
            Command::GeneralAuthenticate {
                key: AuthenticationKey::Management,
                ..
            }
        ) {
            // A management-key authentication must be finished by the very next command.
            self.session.management_challenge = ManagementChallenge::None;
        }
        match command {
            Command::Select => Ok(application_property_template()),
            Command::GetData { object } => self.get_data(object),
            Command::PutData { object, content } => self.put_data(object, content),
            Command::Verify(verify) => self.verify(verify),
            Command::ChangeReferenceData {
                reference,
                current,
                new,
            } => self.change_reference_data(reference, &current, &new),
            Command::ResetRetryCounter { puk, new_pin } => self.reset_retry_counter(&puk, &new_pin),
            Command::GeneralAuthenticate {
                algorithm,
                key: AuthenticationKey::Management,
                step,
            } => self.authenticate_management_key(algorithm, step),
            Command::GeneralAuthenticate {
                algorithm,
                key: AuthenticationKey::Slot(slot),
                step,
            } => self.use_slot_key(slot, algorithm, &step),
            Command::GenerateKeyPair {
                slot,
                algorithm,
                pin_policy,
            } => self.generate_key_pair(slot, algorithm, pin_policy),
            // Served in `process`; reaching here would be a bug, answered as "not now".
            Command::GetResponse { .. } => Err(StatusWord::ConditionsNotSatisfied),
            Command::GetVersion => Ok(REPORTED_VERSION.to_vec()),
            Command::GetSerial => Ok(serial_number(&self.card.profile.card_serial).to_vec()),
            Command::GetMetadata(reference) => self.metadata(reference),
        }
    }

    /// Saves the card file if the card has one; 6581 when it cannot be written.
    fn commit(&self) -> Result<(), StatusWord> {
        match &self.path {
            Some(path) => self.card.save(path).map_err(|_| StatusWord::MemoryFailure),
            None => Ok(()),
        }
    }

    fn get_data(&self, object: ObjectTag) -> Outcome {
        if object == ObjectTag::DISCOVERY {
            let content = self
                .card
                .objects
                .get(&object)
                .map_or(&DEFAULT_DISCOVERY[..], |c| c.0.as_slice());
            return Ok(tlv::encode(Tag(ObjectTag::DISCOVERY.0), content));
        }
        if PIN_PROTECTED_OBJECTS.contains(&object) && !self.session.pin_verified {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        self.card
            .objects
            .get(&object)
            .map(|content| tlv::encode(Tag::DATA_OBJECT, &content.0))
            .ok_or(StatusWord::NotFound)
    }

    fn put_data(&mut self, object: ObjectTag, content: Vec<u8>) -> Outcome {
        if !self.session.management_authenticated {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        if content.is_empty() {
            self.card.objects.remove(&object);
        } else {
            self.card
                .objects
                .insert(object, crate::card_file::HexBytes(content));
        }
        self.commit()?;
        Ok(Vec::new())
    }

    fn verify(&mut self, verify: Verify) -> Outcome {
        match verify {
            Verify::Logout if self.card.quirks.refuses_pin_logout => Err(StatusWord::IncorrectP1P2),
            Verify::Logout => {
                self.session.pin_verified = false;
                self.session.pin_fresh = false;
                Ok(Vec::new())
            }
            Verify::Status => {
                let pin = &self.card.pin;
                if pin.tries_left == 0 {
                    Err(StatusWord::AuthenticationBlocked)
                } else if self.session.pin_verified {
                    Ok(Vec::new())
                } else {
                    Err(StatusWord::VerificationFailed {
                        tries_left: pin.tries_left,
                    })
                }
            }
            Verify::Check(passcode) => {
                let result = check_reference(&mut self.card.pin, &passcode);
                // SP 800-73-4 §3.2.1: a failed VERIFY sets the security status to false.
                self.session.pin_verified = result.is_ok();
                self.session.pin_fresh = result.is_ok();
                self.finish_check(result).map(|()| Vec::new())
            }
        }
    }

    /// Saves whatever a passcode check changed, then answers with the check's verdict (the
    /// save failing overrides it: the card could not record the attempt).
    fn finish_check(&self, result: CheckResult) -> Result<(), StatusWord> {
        match result {
            Ok(changed) | Err((changed, _)) if changed => self.commit()?,
            _ => {}
        }
        result.map(|_| ()).map_err(|(_, status)| status)
    }

    fn change_reference_data(
        &mut self,
        reference: PasscodeReference,
        current: &Passcode,
        new: &Passcode,
    ) -> Outcome {
        let data = match reference {
            PasscodeReference::Pin => &mut self.card.pin,
            PasscodeReference::Puk => &mut self.card.puk,
        };
        let mut result = check_reference(data, current);
        if result.is_ok() {
            data.value = new.to_stored();
            result = Ok(true);
        }
        if reference == PasscodeReference::Pin && result.is_err() {
            self.session.pin_verified = false;
            self.session.pin_fresh = false;
        }
        self.finish_check(result).map(|()| Vec::new())
    }

    fn reset_retry_counter(&mut self, puk: &Passcode, new_pin: &Passcode) -> Outcome {
        let mut result = check_reference(&mut self.card.puk, puk);
        if result.is_ok() {
            self.card.pin.value = new_pin.to_stored();
            self.card.pin.tries_left = self.card.pin.max_tries;
            self.session.pin_verified = false;
            self.session.pin_fresh = false;
            result = Ok(true);
        }
        self.finish_check(result).map(|()| Vec::new())
    }

    fn authenticate_management_key(&mut self, algorithm: u8, step: AuthenticationStep) -> Outcome {
        let pending = std::mem::take(&mut self.session.management_challenge);
        let key = &self.card.management_key;
        if !keys::names_management_algorithm(algorithm, key.algorithm) {
            self.session.management_authenticated = false;
            return Err(StatusWord::IncorrectData);
        }
        let block_size = keys::management_block_size(key.algorithm);
        match step {
            AuthenticationStep::WitnessRequest => {
                self.session.management_authenticated = false;
                let witness = keys::random_block(block_size);
                let encrypted = keys::management_cipher(key, Direction::Encrypt, &witness)?;
                self.session.management_challenge = ManagementChallenge::AwaitingWitness(witness);
                Ok(dynamic_authentication(0x80, &encrypted))
            }
            AuthenticationStep::MutualResponse { witness, challenge } => {
                let ManagementChallenge::AwaitingWitness(expected) = pending else {
                    self.session.management_authenticated = false;
                    return Err(StatusWord::ConditionsNotSatisfied);
                };
                if !bool::from(expected.as_slice().ct_eq(witness.as_slice())) {
                    self.session.management_authenticated = false;
                    return Err(StatusWord::SecurityStatusNotSatisfied);
                }
                if challenge.len() != block_size {
                    self.session.management_authenticated = false;
                    return Err(StatusWord::IncorrectData);
                }
                let encrypted = keys::management_cipher(key, Direction::Encrypt, &challenge)?;
                self.session.management_authenticated = true;
                Ok(dynamic_authentication(0x82, &encrypted))
            }
            AuthenticationStep::ChallengeRequest => {
                self.session.management_authenticated = false;
                let challenge = keys::random_block(block_size);
                let answer = dynamic_authentication(0x81, &challenge);
                self.session.management_challenge =
                    ManagementChallenge::AwaitingResponse(challenge);
                Ok(answer)
            }
            AuthenticationStep::ExternalResponse { response } => {
                self.session.management_authenticated = false;
                let ManagementChallenge::AwaitingResponse(challenge) = pending else {
                    return Err(StatusWord::ConditionsNotSatisfied);
                };
                if response.len() != block_size {
                    return Err(StatusWord::IncorrectData);
                }
                let decrypted = keys::management_cipher(key, Direction::Decrypt, &response)?;
                if !bool::from(decrypted.as_slice().ct_eq(challenge.as_slice())) {
                    return Err(StatusWord::SecurityStatusNotSatisfied);
                }
                self.session.management_authenticated = true;
                Ok(Vec::new())
            }
            AuthenticationStep::Sign { .. } | AuthenticationStep::KeyAgreement { .. } => {
                self.session.management_authenticated = false;
                Err(StatusWord::IncorrectData)
            }
        }
    }

    fn use_slot_key(&mut self, slot: Slot, algorithm: u8, step: &AuthenticationStep) -> Outcome {
        let slot_key = self
            .card
            .slots
            .get(&slot)
            .ok_or(StatusWord::ReferenceDataNotFound)?;
        if algorithm != slot_key.algorithm.algorithm_id() {
            return Err(StatusWord::IncorrectData);
        }
        let allowed = match slot_key.pin_policy {
            PinPolicy::Never => true,
            PinPolicy::Once => self.session.pin_verified,
            PinPolicy::Always => self.session.pin_verified && self.session.pin_fresh,
        };
        if !allowed {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        let key = SlotPrivateKey::from_slot_key(slot_key)?;
        let output = match step {
            AuthenticationStep::Sign { input } => key.private_operation(input)?,
            AuthenticationStep::KeyAgreement { peer_point } => key.key_agreement(peer_point)?,
            _ => return Err(StatusWord::IncorrectData),
        };
        // The operation happened: a slot with PIN policy "always" now needs a new VERIFY.
        self.session.pin_fresh = false;
        Ok(dynamic_authentication(0x82, &output))
    }

    fn generate_key_pair(
        &mut self,
        slot: Slot,
        algorithm: crate::card_file::KeyAlgorithm,
        pin_policy: Option<PinPolicy>,
    ) -> Outcome {
        if !self.session.management_authenticated {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        let key = SlotPrivateKey::generate(algorithm)?;
        let pin_policy = pin_policy
            .or_else(|| self.card.slots.get(&slot).map(|k| k.pin_policy))
            .unwrap_or_else(|| slot.default_pin_policy());
        self.card.slots.insert(
            slot,
            SlotKey {
                algorithm,
                private_key_pkcs8: key.to_pkcs8()?,
                pin_policy,
            },
        );
        self.commit()?;
        Ok(tlv::encode(
            Tag::PUBLIC_KEY_TEMPLATE,
            &key.public_key_fields(),
        ))
    }

    /// GET METADATA in Yubico's layout: `01` algorithm, `02` PIN and touch policy, `03`
    /// origin, `04` public key, `05` whether the value is the factory default, `06` retries.
    fn metadata(&self, reference: MetadataReference) -> Outcome {
        let mut out = Vec::new();
        match reference {
            MetadataReference::Pin | MetadataReference::Puk => {
                let (data, factory) = match reference {
                    MetadataReference::Pin => (&self.card.pin, FACTORY_PIN),
                    _ => (&self.card.puk, FACTORY_PUK),
                };
                out.extend(tlv::encode(Tag(0x01), &[0xFF]));
                let default = data.value.as_str() == factory;
                out.extend(tlv::encode(Tag(0x05), &[u8::from(default)]));
                out.extend(tlv::encode(Tag(0x06), &[data.max_tries, data.tries_left]));
            }
            MetadataReference::Management => {
                let key = &self.card.management_key;
                out.extend(tlv::encode(
                    Tag(0x01),
                    &[keys::management_algorithm_id(key.algorithm)],
                ));
                out.extend(tlv::encode(Tag(0x02), &[0x00, 0x01]));
                let default = key.algorithm == ManagementKeyAlgorithm::Tdes
                    && key.key.as_slice() == FACTORY_MANAGEMENT_KEY;
                out.extend(tlv::encode(Tag(0x05), &[u8::from(default)]));
            }
            MetadataReference::Slot(slot) => {
                let slot_key = self
                    .card
                    .slots
                    .get(&slot)
                    .ok_or(StatusWord::ReferenceDataNotFound)?;
                let key = SlotPrivateKey::from_slot_key(slot_key)?;
                let policy = match slot_key.pin_policy {
                    PinPolicy::Never => 0x01,
                    PinPolicy::Once => 0x02,
                    PinPolicy::Always => 0x03,
                };
                out.extend(tlv::encode(Tag(0x01), &[slot_key.algorithm.algorithm_id()]));
                out.extend(tlv::encode(Tag(0x02), &[policy, 0x01]));
                // The card file does not record whether a key was generated on the card;
                // "imported" is the honest answer for provisioned keys.
                out.extend(tlv::encode(Tag(0x03), &[0x02]));
                out.extend(tlv::encode(Tag(0x04), &key.public_key_fields()));
            }
        }
        Ok(out)
    }
}

/// A passcode check's outcome: `Ok(changed)` when right, `Err((changed, status))` when not;
/// `changed` says whether the card file must be saved.
type CheckResult = Result<bool, (bool, StatusWord)>;

/// Checks a passcode or unlock code against its reference data and updates the counter:
/// blocked answers 6983 without looking; right restores the counter; wrong spends a try and
/// answers 63Cx with the tries left.
fn check_reference(data: &mut ReferenceData, given: &Passcode) -> CheckResult {
    if data.tries_left == 0 {
        return Err((false, StatusWord::AuthenticationBlocked));
    }
    if given.matches(&data.value) {
        let changed = data.tries_left != data.max_tries;
        data.tries_left = data.max_tries;
        Ok(changed)
    } else {
        data.tries_left -= 1;
        Err((
            true,
            StatusWord::VerificationFailed {
                tries_left: data.tries_left,
            },
        ))
    }
}

/// `7C { <tag> <value> }`: every GENERAL AUTHENTICATE answer.
fn dynamic_authentication(tag: u32, value: &[u8]) -> Vec<u8> {
    tlv::encode(
        Tag::DYNAMIC_AUTHENTICATION_TEMPLATE,
        &tlv::encode(Tag(tag), value),
    )
}

/// The SELECT answer (SP 800-73-4 part 2 table 3): the application property template with
/// the PIX, the coexistent tag allocation authority (NIST's RID), the label and the
/// algorithms the card supports.
fn application_property_template() -> Vec<u8> {
    let mut algorithms = Vec::new();
    for id in [0x03, 0x08, 0x07, 0x11] {
        algorithms.extend(tlv::encode(Tag(0x80), &[id]));
    }
    algorithms.extend(tlv::encode(Tag(0x06), &[0x00]));
    let mut inner = tlv::encode(Tag::APPLICATION_IDENTIFIER, &PIV_AID[PIV_RID_LEN..]);
    inner.extend(tlv::encode(
        Tag(0x79),
        &tlv::encode(Tag::APPLICATION_IDENTIFIER, &PIV_AID[..PIV_RID_LEN]),
    ));
    inner.extend(tlv::encode(Tag(0x50), APPLICATION_LABEL));
    inner.extend(tlv::encode(Tag(0xAC), &algorithms));
    tlv::encode(Tag::APPLICATION_PROPERTY_TEMPLATE, &inner)
}

/// The 4-byte serial GET SERIAL reports: the last eight digits of the card serial as a
/// number (so `opensc-tool` and `yubico-piv-tool` show digits a service desk can match to
/// the card), or a stable hash when the serial has no digits.
fn serial_number(card_serial: &str) -> [u8; 4] {
    let digits: Vec<char> = card_serial.chars().filter(char::is_ascii_digit).collect();
    let last8: String = digits[digits.len().saturating_sub(8)..].iter().collect();
    match last8.parse::<u32>() {
        Ok(number) => number.to_be_bytes(),
        Err(_) => {
            let hash = Sha256::digest(card_serial.as_bytes());
            [hash[0], hash[1], hash[2], hash[3]]
        }
    }
}

impl Card for PivApplet {
    fn atr(&self) -> Vec<u8> {
        self.card.atr.clone()
    }

    fn power_on(&mut self) {
        self.session = Session::default();
    }

    fn power_off(&mut self) {
        self.session = Session::default();
    }

    fn reset(&mut self) {
        self.session = Session::default();
    }

    fn transmit(&mut self, command: &[u8]) -> Vec<u8> {
        let (data, status) = self.process(command);
        ResponseApdu { data, status }.to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_answer_is_the_application_property_template() {
        let apt = application_property_template();
        let (outer, rest) = tlv::Tlv::parse_one(&apt).unwrap();
        assert!(rest.is_empty());
        assert_eq!(outer.tag, Tag::APPLICATION_PROPERTY_TEMPLATE);
        let children = outer.children().unwrap();
        let tags: Vec<u32> = children.iter().map(|c| c.tag.0).collect();
        assert_eq!(tags, vec![0x4F, 0x79, 0x50, 0xAC]);
        assert_eq!(children[0].value, &[0x00, 0x00, 0x10, 0x00, 0x01, 0x00]);
        assert_eq!(
            children[1].value,
            &[0x4F, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08]
        );
        let algorithms: Vec<&[u8]> = children[3]
            .children()
            .unwrap()
            .iter()
            .filter(|c| c.tag == Tag(0x80))
            .map(|c| c.value)
            .collect();
        assert_eq!(algorithms, vec![&[0x03][..], &[0x08], &[0x07], &[0x11]]);
    }

    #[test]
    fn serial_is_the_last_eight_digits_or_a_stable_hash() {
        assert_eq!(serial_number("0412345678"), 12_345_678u32.to_be_bytes());
        assert_eq!(serial_number("77"), 77u32.to_be_bytes());
        let hashed = serial_number("TAC-BLANK");
        assert_eq!(hashed, serial_number("TAC-BLANK"));
        assert_ne!(hashed, serial_number("TAC-OTHER"));
    }
}
