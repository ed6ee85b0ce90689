//! [`PivClient`]: the PIV card application as the agent uses it, over any [`CardChannel`].
//!
//! Reads are frugal (login needs SELECT, the CHUID and the 9A certificate, nothing else).
//! Every passcode-bearing command goes through the passcode policy: shape checked by the
//! types, the agent's three-attempt ledger and the card's own counter read (without spending
//! a try) before anything is sent, the last try only when confirmed, a value that just failed
//! never re-sent. Those commands are built in `Zeroizing` buffers and sent directly, not
//! through `transceive`, so no copy of the passcode outlives the exchange on our side.

use std::sync::Arc;

use cardgate_apdu::tlv::{self, Tag, Tlv};
use cardgate_apdu::{
    CommandApdu, ExchangeOptions, INS_GET_RESPONSE, MAX_EXTENDED_LE, MAX_SHORT_LE, ResponseApdu,
    StatusWord, transceive,
};
use ring::rand::{SecureRandom as _, SystemRandom};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::channel::{CardChannel, Transport};
use crate::error::{ChannelError, Operation, PivError, exchange_error, status_error};
use crate::guard::{AGENT_MAX_CONSECUTIVE_FAILURES, PasscodeGuard, Reference};
use crate::identity::{CardIdentity, CardSerial, card_serial_from_chuid, holder_from_certificate};
use crate::management::ManagementKey;
use crate::passcode::{
    FinalTry, PADDED_LEN, Passcode, PasscodeStatus, PasscodeTriesLeft, ReaderEntry, UnlockCode,
};
use crate::sign::{RSA_2048_BYTES, SignInput};
use crate::slot::{KeyAlgorithm, PublicKey, Slot};

/// The PIV application identifier SELECT sends: NIST's RID and the PIX without the version
/// (SP 800-73-4 part 1 §2.2), as yubico-piv-tool and OpenSC send it.
const PIV_AID: [u8; 9] = [0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00];
/// The CHUID's data object tag.
const CHUID: u32 = 0x5FC102;
/// Instruction bytes (SP 800-73-4 part 2 §3, and Yubico's GET METADATA).
const INS_SELECT: u8 = 0xA4;
const INS_GET_DATA: u8 = 0xCB;
const INS_PUT_DATA: u8 = 0xDB;
const INS_VERIFY: u8 = 0x20;
const INS_CHANGE_REFERENCE_DATA: u8 = 0x24;
const INS_RESET_RETRY_COUNTER: u8 = 0x2C;
const INS_GENERAL_AUTHENTICATE: u8 = 0x87;
const INS_GENERATE_KEY_PAIR: u8 = 0x47;
const INS_GET_METADATA: u8 = 0xF7;
/// Key references.
const KEY_REF_PIN: u8 = 0x80;
const KEY_REF_PUK: u8 = 0x81;
const KEY_REF_MANAGEMENT: u8 = 0x9B;
/// The largest certificate the agent writes: PIV containers top out near this on real cards.
const MAX_CERTIFICATE_LEN: usize = 3 * 1024;

/// What the passcode policy checked before a passcode-bearing command is sent.
struct PreflightPassed {
    /// The card's serial, which the guard counts by.
    serial: CardSerial,
    /// The card's own tries left just before (`None` when it was already verified).
    card_tries: Option<u8>,
}

/// One session with one inserted card. Create a new client for every insertion: nothing it
/// learned (the card serial, whether the application is selected) may outlive the card.
///
/// The [`PasscodeGuard`] is shared between clients (it outlives cards and readers): it keeps
/// the agent's three-attempt count per card serial.
pub struct PivClient<C: CardChannel> {
    channel: C,
    guard: Arc<PasscodeGuard>,
    options: ExchangeOptions,
    selected: bool,
    card_serial: Option<CardSerial>,
}

impl<C: CardChannel> std::fmt::Debug for PivClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PivClient")
            .field("selected", &self.selected)
            .field("card_serial", &self.card_serial)
            .finish_non_exhaustive()
    }
}

impl<C: CardChannel> PivClient<C> {
    /// A client over `channel`, counting passcode failures in `guard`.
    pub fn new(channel: C, guard: Arc<PasscodeGuard>) -> Self {
        let options = ExchangeOptions {
            extended: channel.supports_extended_apdus(),
            ..ExchangeOptions::default()
        };
        PivClient {
            channel,
            guard,
            options,
            selected: false,
            card_serial: None,
        }
    }

    /// The channel, e.g. to end the PC/SC transaction.
    pub fn into_channel(self) -> C {
        self.channel
    }

    /// The channel, borrowed (tests count APDUs through it).
    pub fn channel(&self) -> &C {
        &self.channel
    }

    /// Selects the PIV card application. Other methods select it on first use; call this
    /// again when another application may have used the card in between.
    pub fn select(&mut self) -> Result<(), PivError> {
        let command = CommandApdu::new(0x00, INS_SELECT, 0x04, 0x00)
            .with_data(PIV_AID.to_vec())
            .with_le(MAX_SHORT_LE);
        let response = self.exchange(Operation::Select, &command)?;
        if !response.is_success() {
            self.selected = false;
            return Err(status_error(Operation::Select, response.status));
        }
        // A PIV card answers with its application property template (61); some answer nothing.
        if !response.data.is_empty() {
            let tag = Tlv::parse_one(&response.data).map(|(t, _)| t.tag);
            if tag != Ok(Tag::APPLICATION_PROPERTY_TEMPLATE) {
                return Err(PivError::MalformedResponse {
                    operation: Operation::Select,
                    reason: "the answer is not an application property template (61)".into(),
                });
            }
        }
        self.selected = true;
        Ok(())
    }

    /// The card serial number from the CHUID, read once per client.
    pub fn card_serial(&mut self) -> Result<CardSerial, PivError> {
        if let Some(serial) = &self.card_serial {
            return Ok(serial.clone());
        }
        let chuid = self.read_object(CHUID)?;
        let serial = card_serial_from_chuid(&chuid)?;
        self.card_serial = Some(serial.clone());
        Ok(serial)
    }

    /// The certificate in `slot`, DER. A compressed certificate (CertInfo bit 0) is refused.
    pub fn read_certificate(&mut self, slot: Slot) -> Result<Vec<u8>, PivError> {
        let content = self.read_object(slot.certificate_object())?;
        let malformed = |reason: String| PivError::InvalidCertificate { slot, reason };
        let elements = Tlv::parse_all(&content)
            .map_err(|e| malformed(format!("the certificate container is malformed: {e}")))?;
        if let Some(info) = Tlv::find(&elements, Tag(0x71))
            && info.value.first().is_some_and(|b| b & 0x01 != 0)
        {
            return Err(PivError::CompressedCertificate { slot });
        }
        let certificate = Tlv::find(&elements, Tag(0x70))
            .ok_or_else(|| malformed("the container holds no certificate (70)".into()))?;
        if certificate.value.is_empty() {
            return Err(malformed("the certificate (70) is empty".into()));
        }
        Ok(certificate.value.to_vec())
    }

    /// What login needs, in as few APDUs as possible: SELECT, the CHUID (card serial) and the
    /// PIV Authentication certificate (holder UUID and name from its subject).
    pub fn read_identity(&mut self) -> Result<CardIdentity, PivError> {
        self.select()?;
        let card_serial = self.card_serial()?;
        let auth_certificate_der = self.read_certificate(Slot::Authentication)?;
        let (holder_uuid, holder_name) = holder_from_certificate(&auth_certificate_der)?;
        Ok(CardIdentity {
            card_serial,
            holder_uuid,
            holder_name,
            auth_certificate_der,
        })
    }

    /// The passcode's state without spending a try (VERIFY without data), capped by the
    /// agent's three-attempt limit. A card the agent counts as locked is not asked at all,
    /// unless attempts whose answer was lost wait for its counter to settle them.
    pub fn passcode_status(&mut self) -> Result<PasscodeStatus, PivError> {
        let serial = self.card_serial()?;
        let settled = self.settle_unanswered(&serial)?;
        let agent_left = self.guard.agent_tries_left(&serial);
        if agent_left == 0 {
            return Ok(PasscodeStatus::Blocked);
        }
        let (status, _) = match settled {
            Some(read) => read,
            None => self.card_passcode_status()?,
        };
        Ok(match status {
            PasscodeStatus::TriesLeft(n) => {
                PasscodeStatus::TriesLeft(PasscodeTriesLeft::new(n.get().min(agent_left)))
            }
            other => other,
        })
    }

    /// Ends the passcode's verified state on the card (VERIFY with P1 = FF, SP 800-73-4
    /// 3.2.1), so once the agent's session is over no program sharing the reader can use keys
    /// that need the passcode until it is entered again. Costs no try.
    pub fn forget_verification(&mut self) -> Result<(), PivError> {
        let command = CommandApdu::new(0x00, INS_VERIFY, 0xFF, KEY_REF_PIN);
        let response = self.exchange(Operation::VerifyPasscode, &command)?;
        match response.status {
            StatusWord::Success => Ok(()),
            other => Err(status_error(Operation::VerifyPasscode, other)),
        }
    }

    /// Checks the holder's passcode against the card.
    ///
    /// Before anything is sent: the agent's ledger (three consecutive failures lock the card
    /// for the agent), the value that last failed on this card (never re-sent), the card's
    /// counter (blocked: nothing sent; one try left: only with [`FinalTry::Confirmed`]).
    /// A wrong passcode comes back as [`PivError::WrongPasscode`] with the exact tries left.
    pub fn verify_passcode(
        &mut self,
        passcode: &Passcode,
        final_try: FinalTry,
    ) -> Result<(), PivError> {
        let checked = self.passcode_preflight(Some(passcode), final_try)?;
        let mut apdu = Zeroizing::new(vec![0x00, INS_VERIFY, 0x00, KEY_REF_PIN, 0x08]);
        apdu.extend_from_slice(&*passcode.padded());
        self.send_passcode(Operation::VerifyPasscode, &checked, apdu, passcode)
    }

    /// Checks the holder's passcode with a reader that takes it on its own PIN pad and builds
    /// the VERIFY itself, so the passcode never passes through this host.
    ///
    /// The same policy as [`PivClient::verify_passcode`] runs before `send` is called: the
    /// agent's ledger, the card's counter read without spending a try (blocked: nothing is
    /// asked of the reader; one try left: only with [`FinalTry::Confirmed`]). `send` gets the
    /// channel with PIV selected and returns what the reader reported. A wrong passcode goes
    /// to the ledger like one typed on the host; entry that ended at the reader costs nothing
    /// ([`PivError::PinPadEntryEnded`]). The no-re-send rule cannot apply: the host never
    /// sees the value.
    pub fn verify_passcode_on_reader(
        &mut self,
        final_try: FinalTry,
        send: impl FnOnce(&mut C) -> Result<ReaderEntry, ChannelError>,
    ) -> Result<(), PivError> {
        self.passcode_on_reader(Operation::VerifyPasscode, final_try, send)
    }

    /// Changes the passcode with a reader that takes the current and the new one on its own
    /// PIN pad and builds CHANGE REFERENCE DATA itself, so neither passes through this host.
    ///
    /// The policy of [`PivClient::verify_passcode_on_reader`] runs before `send` is called
    /// (the current passcode counts like a VERIFY: ledger, the card's counter read first, the
    /// last try only with [`FinalTry::Confirmed`]); a wrong current passcode goes to the
    /// ledger; entry that ended at the reader (cancelled, timed out, the new passcode and its
    /// confirmation different) costs nothing ([`PivError::PinPadEntryEnded`]).
    pub fn change_passcode_on_reader(
        &mut self,
        final_try: FinalTry,
        send: impl FnOnce(&mut C) -> Result<ReaderEntry, ChannelError>,
    ) -> Result<(), PivError> {
        self.passcode_on_reader(Operation::ChangePasscode, final_try, send)
    }

    /// Resets the passcode counter with a reader that takes the unlock code and the new
    /// passcode on its own PIN pad and builds RESET RETRY COUNTER itself.
    ///
    /// The policy of [`PivClient::reset_retry_counter`] runs before `send` is called (the
    /// unlock code's tries read first when the card can tell, the last try only when
    /// confirmed); the no-re-send rule cannot apply, the value never reaches the host. A
    /// wrong unlock code is [`PivError::WrongUnlockCode`] with the tries left; success clears
    /// the agent's failure count for the card.
    pub fn reset_retry_counter_on_reader(
        &mut self,
        final_try: FinalTry,
        send: impl FnOnce(&mut C) -> Result<ReaderEntry, ChannelError>,
    ) -> Result<(), PivError> {
        let operation = Operation::ResetRetryCounter;
        let serial = self.card_serial()?;
        self.unlock_code_preflight(final_try)?;
        self.ensure_selected()?;
        let raw = match send(&mut self.channel) {
            Ok(ReaderEntry::CardAnswered(raw)) => raw,
            Ok(ReaderEntry::EndedAtReader(how)) => return Err(PivError::PinPadEntryEnded { how }),
            Err(e) => return Err(e.into()),
        };
        let response = ResponseApdu::parse(&raw).map_err(|e| PivError::MalformedResponse {
            operation,
            reason: e.to_string(),
        })?;
        match response.status {
            StatusWord::Success => self.guard.record_unlock(&serial),
            StatusWord::VerificationFailed { tries_left } => {
                self.guard.set_unlock_tries(&serial, tries_left);
                Err(PivError::WrongUnlockCode {
                    tries_left: PasscodeTriesLeft::new(tries_left),
                    status: response.status,
                })
            }
            other => Err(status_error(operation, other)),
        }
    }

    /// A passcode-bearing command built by the reader from what the holder keyed on its pad,
    /// under the passcode policy (see [`PivClient::verify_passcode_on_reader`]).
    fn passcode_on_reader(
        &mut self,
        operation: Operation,
        final_try: FinalTry,
        send: impl FnOnce(&mut C) -> Result<ReaderEntry, ChannelError>,
    ) -> Result<(), PivError> {
        let checked = self.passcode_preflight(None, final_try)?;
        let serial = &checked.serial;
        self.ensure_selected()?;
        let raw = match send(&mut self.channel) {
            Ok(ReaderEntry::CardAnswered(raw)) => raw,
            Ok(ReaderEntry::EndedAtReader(how)) => return Err(PivError::PinPadEntryEnded { how }),
            Err(e) => {
                // The card may or may not have counted it: count it, to stay on the safe side,
                // until its counter says.
                self.guard
                    .record_unknown(serial, Reference::Passcode, checked.card_tries);
                return Err(e.into());
            }
        };
        let response = ResponseApdu::parse(&raw).map_err(|e| PivError::MalformedResponse {
            operation,
            reason: e.to_string(),
        })?;
        match response.status {
            StatusWord::Success => self.guard.record_success(serial, Reference::Passcode),
            StatusWord::VerificationFailed { tries_left } => {
                let failures = self.guard.record_unseen_failure(serial)?;
                let agent_left = AGENT_MAX_CONSECUTIVE_FAILURES.saturating_sub(failures);
                Err(PivError::WrongPasscode {
                    tries_left: PasscodeTriesLeft::new(tries_left.min(agent_left)),
                    status: response.status,
                })
            }
            other => Err(status_error(operation, other)),
        }
    }

    /// Changes the passcode, under the same policy as [`PivClient::verify_passcode`] for the
    /// current one (its failure counts like a wrong VERIFY).
    pub fn change_passcode(
        &mut self,
        current: &Passcode,
        new: &Passcode,
        final_try: FinalTry,
    ) -> Result<(), PivError> {
        let checked = self.passcode_preflight(Some(current), final_try)?;
        let mut apdu = Zeroizing::new(vec![
            0x00,
            INS_CHANGE_REFERENCE_DATA,
            0x00,
            KEY_REF_PIN,
            2 * PADDED_LEN as u8,
        ]);
        apdu.extend_from_slice(&*current.padded());
        apdu.extend_from_slice(&*new.padded());
        self.send_passcode(Operation::ChangePasscode, &checked, apdu, current)
    }

    /// Unlock-code tries left, if the card can say without spending one (Yubico's GET
    /// METADATA), else what the card last reported after a wrong unlock code, else `None`.
    pub fn unlock_code_tries_left(&mut self) -> Result<Option<PasscodeTriesLeft>, PivError> {
        let serial = self.card_serial()?;
        let command = CommandApdu::new(0x00, INS_GET_METADATA, 0x00, KEY_REF_PUK).with_le(256);
        let response = self.exchange(Operation::ReadMetadata, &command)?;
        if response.is_success() {
            let elements =
                Tlv::parse_all(&response.data).map_err(|e| PivError::MalformedResponse {
                    operation: Operation::ReadMetadata,
                    reason: e.to_string(),
                })?;
            if let Some(retries) = Tlv::find(&elements, Tag(0x06))
                && let [_, left] = retries.value
            {
                self.guard.set_unlock_tries(&serial, *left);
                return Ok(Some(PasscodeTriesLeft::new(*left)));
            }
        }
        Ok(self
            .guard
            .known_unlock_tries(&serial)
            .map(PasscodeTriesLeft::new))
    }

    /// Resets the passcode counter with the unlock code and sets a new passcode (RESET RETRY
    /// COUNTER), under the same policy: the unlock code's tries read first when the card can
    /// tell, the last try only when confirmed, a failed unlock code never re-sent. Success
    /// also clears the agent's failure count for the card.
    pub fn reset_retry_counter(
        &mut self,
        unlock_code: &UnlockCode,
        new_passcode: &Passcode,
        final_try: FinalTry,
    ) -> Result<(), PivError> {
        let operation = Operation::ResetRetryCounter;
        let serial = self.card_serial()?;
        if self
            .guard
            .is_repeat(&serial, Reference::UnlockCode, unlock_code.expose())
        {
            return Err(PivError::RepeatedFailedValue {
                what: Reference::UnlockCode.name(),
            });
        }
        self.unlock_code_preflight(final_try)?;
        let mut apdu = Zeroizing::new(vec![
            0x00,
            INS_RESET_RETRY_COUNTER,
            0x00,
            KEY_REF_PIN,
            2 * PADDED_LEN as u8,
        ]);
        apdu.extend_from_slice(&*unlock_code.padded());
        apdu.extend_from_slice(&*new_passcode.padded());
        let response = self.send_secret(operation, apdu)?;
        match response.status {
            StatusWord::Success => self.guard.record_unlock(&serial),
            StatusWord::VerificationFailed { tries_left } => {
                self.guard
                    .record_failure(&serial, Reference::UnlockCode, unlock_code.expose())?;
                self.guard.set_unlock_tries(&serial, tries_left);
                Err(PivError::WrongUnlockCode {
                    tries_left: PasscodeTriesLeft::new(tries_left),
                    status: response.status,
                })
            }
            other => Err(status_error(operation, other)),
        }
    }

    /// Signs with the key in `slot` (GENERAL AUTHENTICATE). ECDSA returns a DER
    /// `ECDSA-Sig-Value`; RSA returns the 256-byte signature. The slot's passcode policy
    /// applies on the card: [`PivError::PasscodeNotVerified`] if it was not verified.
    pub fn sign(&mut self, slot: Slot, input: SignInput) -> Result<Vec<u8>, PivError> {
        let operation = Operation::Sign;
        let algorithm = input.algorithm();
        let block = input.card_input()?;
        let mut template = Zeroizing::new(tlv::encode(Tag(0x82), &[]));
        template.extend(tlv::encode(Tag(0x81), &block));
        let command = CommandApdu::new(
            0x00,
            INS_GENERAL_AUTHENTICATE,
            algorithm.algorithm_id(),
            slot.key_reference(),
        )
        .with_data(tlv::encode(Tag::DYNAMIC_AUTHENTICATION_TEMPLATE, &template))
        .with_le(self.max_le());
        let data = self.command(operation, &command)?;
        let signature = response_in_template(operation, &data, Tag(0x82))?;
        let well_formed = match algorithm {
            KeyAlgorithm::EccP256 => {
                signature.len() >= 8 && signature.len() <= 72 && signature[0] == 0x30
            }
            KeyAlgorithm::Rsa2048 => signature.len() == RSA_2048_BYTES,
        };
        if !well_formed {
            return Err(PivError::MalformedResponse {
                operation,
                reason: format!(
                    "a {}-byte answer is not a {algorithm:?} signature",
                    signature.len()
                ),
            });
        }
        Ok(signature)
    }

    /// Proves the management key to the card (mutual authentication), which key generation
    /// and writing certificates need. The card must prove it holds the same key too: a card
    /// that cannot is rejected.
    pub fn authenticate_management_key(&mut self, key: &ManagementKey) -> Result<(), PivError> {
        let operation = Operation::AuthenticateManagementKey;
        let algorithm = key.algorithm_id();
        let rejected = |reason| PivError::ManagementKeyRejected {
            reason,
            status: None,
        };
        // Step 1: the card's witness, encrypted.
        let request = CommandApdu::new(
            0x00,
            INS_GENERAL_AUTHENTICATE,
            algorithm,
            KEY_REF_MANAGEMENT,
        )
        .with_data(tlv::encode(
            Tag::DYNAMIC_AUTHENTICATION_TEMPLATE,
            &tlv::encode(Tag(0x80), &[]),
        ))
        .with_le(MAX_SHORT_LE);
        let data = self.command(operation, &request)?;
        let encrypted_witness = response_in_template(operation, &data, Tag(0x80))?;
        let witness = key
            .crypt_block(&encrypted_witness, false)
            .ok_or_else(|| rejected("the card's witness is not one block of the key's cipher"))?;
        // Step 2: the witness back, with our challenge.
        let mut challenge = Zeroizing::new(vec![0u8; key.block_size()]);
        SystemRandom::new()
            .fill(&mut challenge)
            .map_err(|_| PivError::Random)?;
        let mut inner = Zeroizing::new(tlv::encode(Tag(0x80), &witness));
        inner.extend(tlv::encode(Tag(0x81), &challenge));
        let template = Zeroizing::new(tlv::encode(Tag::DYNAMIC_AUTHENTICATION_TEMPLATE, &inner));
        let len = u8::try_from(template.len()).map_err(|_| PivError::InvalidInput {
            what: "management key",
            reason: "its block size is too large".into(),
        })?;
        let mut apdu = Zeroizing::new(vec![
            0x00,
            INS_GENERAL_AUTHENTICATE,
            algorithm,
            KEY_REF_MANAGEMENT,
            len,
        ]);
        apdu.extend_from_slice(&template);
        apdu.push(0x00);
        let response = self.send_secret(operation, apdu)?;
        if !response.is_success() {
            return Err(status_error(operation, response.status));
        }
        let answer = response_in_template(operation, &response.data, Tag(0x82))?;
        let expected = key
            .crypt_block(&challenge, true)
            .ok_or_else(|| rejected("the challenge is not one block"))?;
        let same = answer.len() == expected.len()
            && answer
                .iter()
                .zip(expected.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(rejected(
                "the card did not prove it holds the same key (wrong card or wrong key type)",
            ));
        }
        Ok(())
    }

    /// Generates a key pair in `slot` on the card and returns its public key. Needs
    /// [`PivClient::authenticate_management_key`] first. The old key in the slot is gone.
    pub fn generate_key(
        &mut self,
        slot: Slot,
        algorithm: KeyAlgorithm,
    ) -> Result<PublicKey, PivError> {
        let template = tlv::encode(
            Tag(0xAC),
            &tlv::encode(Tag(0x80), &[algorithm.algorithm_id()]),
        );
        let command = CommandApdu::new(0x00, INS_GENERATE_KEY_PAIR, 0x00, slot.key_reference())
            .with_data(template)
            .with_le(self.max_le());
        let data = self.command(Operation::GenerateKey, &command)?;
        PublicKey::from_template(algorithm, &data)
    }

    /// Writes `der` as the certificate of `slot` (PUT DATA: `70` certificate, `71` CertInfo
    /// uncompressed, `FE` empty error detection code). Needs the management key. Input that
    /// is not one X.509 certificate is refused before the card is touched.
    pub fn write_certificate(&mut self, slot: Slot, der: &[u8]) -> Result<(), PivError> {
        let invalid = |reason: String| PivError::InvalidInput {
            what: "certificate",
            reason,
        };
        if der.len() > MAX_CERTIFICATE_LEN {
            return Err(invalid(format!(
                "{} bytes is more than the {MAX_CERTIFICATE_LEN} a card slot holds",
                der.len()
            )));
        }
        match X509Certificate::from_der(der) {
            Ok(([], _)) => {}
            Ok((rest, _)) => {
                return Err(invalid(format!(
                    "{} bytes follow the certificate",
                    rest.len()
                )));
            }
            Err(e) => return Err(invalid(format!("not an X.509 certificate: {e}"))),
        }
        let content = tlv::Builder::new()
            .add(Tag(0x70), der)
            .add(Tag(0x71), &[0x00])
            .add(Tag(0xFE), &[])
            .into_bytes();
        let tag = Tag(slot.certificate_object()).to_bytes();
        let mut data = tlv::encode(Tag::TAG_LIST, &tag);
        data.extend(tlv::encode(Tag::DATA_OBJECT, &content));
        let command = CommandApdu::new(0x00, INS_PUT_DATA, 0x3F, 0xFF).with_data(data);
        self.command(Operation::WriteCertificate, &command)?;
        Ok(())
    }

    // ----- internals -----

    /// The unlock code's tries, read first when the card can tell: a blocked one is refused,
    /// the last one only spent when confirmed.
    fn unlock_code_preflight(&mut self, final_try: FinalTry) -> Result<(), PivError> {
        if let Some(left) = self.unlock_code_tries_left()? {
            if left.is_exhausted() {
                return Err(PivError::UnlockCodeBlocked { status: None });
            }
            if left.is_final() && final_try != FinalTry::Confirmed {
                return Err(PivError::FinalTryNotConfirmed {
                    what: Reference::UnlockCode.name(),
                });
            }
        }
        Ok(())
    }

    /// The checks before a passcode is sent; returns the card serial they were made for.
    /// `passcode` is `None` when a PIN pad takes it (no repeat check is possible then).
    fn passcode_preflight(
        &mut self,
        passcode: Option<&Passcode>,
        final_try: FinalTry,
    ) -> Result<PreflightPassed, PivError> {
        let serial = self.card_serial()?;
        let settled = self.settle_unanswered(&serial)?;
        let agent_left = self.guard.agent_tries_left(&serial);
        if agent_left == 0 {
            return Err(PivError::CardBlocked {
                by_agent: true,
                status: None,
            });
        }
        if let Some(passcode) = passcode
            && self
                .guard
                .is_repeat(&serial, Reference::Passcode, passcode.expose())
        {
            return Err(PivError::RepeatedFailedValue {
                what: Reference::Passcode.name(),
            });
        }
        let (status, sw) = match settled {
            Some(read) => read,
            None => self.card_passcode_status()?,
        };
        let card_left = match status {
            PasscodeStatus::Blocked => {
                return Err(PivError::CardBlocked {
                    by_agent: false,
                    status: Some(sw),
                });
            }
            // Verified means the last VERIFY succeeded: the counter is full.
            PasscodeStatus::Verified => u8::MAX,
            PasscodeStatus::TriesLeft(n) => n.get(),
        };
        if card_left.min(agent_left) == 1 && final_try != FinalTry::Confirmed {
            return Err(PivError::FinalTryNotConfirmed {
                what: Reference::Passcode.name(),
            });
        }
        Ok(PreflightPassed {
            serial,
            card_tries: (card_left != u8::MAX).then_some(card_left),
        })
    }

    /// Reads the card's counter if attempts whose answer was lost wait for it, and settles
    /// them ([`PasscodeGuard`]); returns the read so it is not made twice.
    fn settle_unanswered(
        &mut self,
        serial: &CardSerial,
    ) -> Result<Option<(PasscodeStatus, StatusWord)>, PivError> {
        if !self.guard.has_unanswered(serial) {
            return Ok(None);
        }
        let read = self.card_passcode_status()?;
        self.guard.settle(serial, read.0)?;
        Ok(Some(read))
    }

    /// Sends a passcode-bearing APDU and applies the outcome to the guard.
    fn send_passcode(
        &mut self,
        operation: Operation,
        checked: &PreflightPassed,
        apdu: Zeroizing<Vec<u8>>,
        passcode: &Passcode,
    ) -> Result<(), PivError> {
        let serial = &checked.serial;
        let response = match self.send_secret(operation, apdu) {
            Ok(response) => response,
            Err(e @ PivError::Channel(_)) => {
                // The card may or may not have counted it: count it, to stay on the safe side,
                // until its counter says.
                self.guard
                    .record_unknown(serial, Reference::Passcode, checked.card_tries);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        match response.status {
            StatusWord::Success => self.guard.record_success(serial, Reference::Passcode),
            StatusWord::VerificationFailed { tries_left } => {
                let failures =
                    self.guard
                        .record_failure(serial, Reference::Passcode, passcode.expose())?;
                let agent_left = AGENT_MAX_CONSECUTIVE_FAILURES.saturating_sub(failures);
                Err(PivError::WrongPasscode {
                    tries_left: PasscodeTriesLeft::new(tries_left.min(agent_left)),
                    status: response.status,
                })
            }
            other => Err(status_error(operation, other)),
        }
    }

    /// VERIFY without data: the card's own view, and the status word it answered.
    fn card_passcode_status(&mut self) -> Result<(PasscodeStatus, StatusWord), PivError> {
        let command = CommandApdu::new(0x00, INS_VERIFY, 0x00, KEY_REF_PIN);
        let response = self.exchange(Operation::VerifyPasscode, &command)?;
        let status = match response.status {
            StatusWord::Success => PasscodeStatus::Verified,
            StatusWord::VerificationFailed { tries_left: 0 }
            | StatusWord::AuthenticationBlocked => PasscodeStatus::Blocked,
            StatusWord::VerificationFailed { tries_left } => {
                PasscodeStatus::TriesLeft(PasscodeTriesLeft::new(tries_left))
            }
            other => return Err(status_error(Operation::VerifyPasscode, other)),
        };
        Ok((status, response.status))
    }

    /// Sends a short APDU whose bytes hold a secret, straight from its `Zeroizing` buffer;
    /// GET RESPONSE follows if the card has more to say.
    fn send_secret(
        &mut self,
        operation: Operation,
        apdu: Zeroizing<Vec<u8>>,
    ) -> Result<ResponseApdu, PivError> {
        self.ensure_selected()?;
        let raw = self.channel.transmit(&apdu)?;
        drop(apdu);
        let mut response = ResponseApdu::parse(&raw).map_err(|e| PivError::MalformedResponse {
            operation,
            reason: e.to_string(),
        })?;
        if let StatusWord::MoreData(n) = response.status {
            let le = if n == 0 { 256 } else { usize::from(n) };
            let more = self.exchange(
                operation,
                &CommandApdu::new(0x00, INS_GET_RESPONSE, 0x00, 0x00).with_le(le),
            )?;
            response.data.extend(more.data);
            response.status = more.status;
        }
        Ok(response)
    }

    /// GET DATA of `object`; returns the content of its `53` container.
    fn read_object(&mut self, object: u32) -> Result<Vec<u8>, PivError> {
        let operation = Operation::ReadObject;
        let command = CommandApdu::new(0x00, INS_GET_DATA, 0x3F, 0xFF)
            .with_data(tlv::encode(Tag::TAG_LIST, &Tag(object).to_bytes()))
            .with_le(self.max_le());
        let response = self.exchange(operation, &command)?;
        match response.status {
            StatusWord::Success => {}
            status @ StatusWord::NotFound => {
                return Err(PivError::ObjectNotFound { object, status });
            }
            other => return Err(status_error(operation, other)),
        }
        let (container, rest) =
            Tlv::parse_one(&response.data).map_err(|e| PivError::MalformedResponse {
                operation,
                reason: format!("object {object:06X}: {e}"),
            })?;
        if container.tag != Tag::DATA_OBJECT || !rest.is_empty() {
            return Err(PivError::MalformedResponse {
                operation,
                reason: format!("object {object:06X} is not one 53 container"),
            });
        }
        Ok(container.value.to_vec())
    }

    /// Sends `command` and returns its data if the card answered 9000.
    fn command(
        &mut self,
        operation: Operation,
        command: &CommandApdu,
    ) -> Result<Vec<u8>, PivError> {
        let response = self.exchange(operation, command)?;
        if response.is_success() {
            Ok(response.data)
        } else {
            Err(status_error(operation, response.status))
        }
    }

    /// One exchange (chaining and GET RESPONSE included), selecting PIV first if needed.
    fn exchange(
        &mut self,
        operation: Operation,
        command: &CommandApdu,
    ) -> Result<ResponseApdu, PivError> {
        if command.ins != INS_SELECT {
            self.ensure_selected()?;
        }
        transceive(&mut Transport(&mut self.channel), command, &self.options)
            .map_err(|e| exchange_error(operation, e))
    }

    fn ensure_selected(&mut self) -> Result<(), PivError> {
        if self.selected { Ok(()) } else { self.select() }
    }

    /// The Le that asks for everything in one answer the reader can carry.
    fn max_le(&self) -> usize {
        if self.options.extended {
            MAX_EXTENDED_LE
        } else {
            MAX_SHORT_LE
        }
    }
}

/// The value of `tag` inside a `7C` dynamic authentication template.
fn response_in_template(operation: Operation, data: &[u8], tag: Tag) -> Result<Vec<u8>, PivError> {
    let malformed = |reason: String| PivError::MalformedResponse { operation, reason };
    let (template, rest) = Tlv::parse_one(data).map_err(|e| malformed(e.to_string()))?;
    if template.tag != Tag::DYNAMIC_AUTHENTICATION_TEMPLATE || !rest.is_empty() {
        return Err(malformed("expected one 7C template".into()));
    }
    let children = template.children().map_err(|e| malformed(e.to_string()))?;
    Tlv::find(&children, tag)
        .map(|t| t.value.to_vec())
        .ok_or_else(|| malformed(format!("the 7C template has no {tag}")))
}
