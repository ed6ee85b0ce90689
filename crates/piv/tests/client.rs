//! The client against the real virtual card, in process: identity, the passcode policy (the
//! three-attempt lockout counted in APDUs and in the card file's own counter), unlock,
//! change, signatures checked with ring's verifiers and the certificate's public key, key
//! generation and certificate writing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap: a panic is the failure report.

mod support;

use std::sync::Arc;

use cardgate_apdu::StatusWord;
use cardgate_piv::{
    CardChannel, ChannelError, FinalTry, JsonFileLedger, KeyAlgorithm, ManagementKey, Passcode,
    PasscodeGuard, PasscodeStatus, PinPadEnd, PivClient, PivError, PublicKey, ReaderEntry,
    Sha256Digest, SignInput, Slot, UnlockCode,
};
use cardgate_vcard::Card as _;
use cardgate_vcard::card_file::{self, HexBytes, ObjectTag};
use ring::signature::{self, UnparsedPublicKey};
use support::{AppletChannel, HOLDER_NAME, HOLDER_UUID, MANAGEMENT_KEY, PIN, PUK};
use x509_parser::prelude::{FromDer, X509Certificate};

fn passcode(value: &str) -> Passcode {
    Passcode::new(value.to_owned()).expect("a well-formed passcode")
}

fn tries(e: &PivError) -> Option<u8> {
    match e {
        PivError::WrongPasscode { tries_left, .. }
        | PivError::WrongUnlockCode { tries_left, .. } => Some(tries_left.get()),
        _ => None,
    }
}

fn wrong(client: &mut PivClient<AppletChannel>, value: &str, final_try: FinalTry) -> u8 {
    let e = client
        .verify_passcode(&passcode(value), final_try)
        .expect_err("a wrong passcode is refused");
    tries(&e).unwrap_or_else(|| panic!("expected WrongPasscode, got {e:?}"))
}

/// The subject public key bytes of a certificate: the EC point, or the RSAPublicKey DER.
fn public_key_of(der: &[u8]) -> Vec<u8> {
    let (_, cert) = X509Certificate::from_der(der).expect("certificate");
    cert.public_key().subject_public_key.data.to_vec()
}

#[test]
fn identity_matches_provisioning_in_a_handful_of_apdus() {
    let card = support::provisioned(&support::spec());
    let mut client = support::client(support::applet(&card));
    let identity = client.read_identity().expect("identity");
    assert_eq!(identity.holder_uuid.as_str(), HOLDER_UUID);
    assert_eq!(identity.holder_name, HOLDER_NAME);
    assert_eq!(identity.card_serial.as_str(), card.card.profile.card_serial);
    assert!(!identity.card_serial.is_old_generation());
    assert_eq!(
        identity.auth_certificate_der,
        card.certificates[&card_file::Slot::Authentication]
    );
    // SELECT, GET DATA CHUID, GET DATA 9A certificate and its GET RESPONSE rounds: OpenSC
    // needs 40 and more for the same.
    let apdus = client.channel().count();
    assert!(apdus <= 6, "identity read took {apdus} APDUs");
    let instructions: Vec<u8> = client
        .channel()
        .exchanges
        .iter()
        .map(|(c, _)| c[1])
        .collect();
    assert_eq!(&instructions[..3], &[0xA4, 0xCB, 0xCB]);
    assert!(instructions[3..].iter().all(|&ins| ins == 0xC0));
}

#[test]
fn extended_apdus_read_the_identity_in_three() {
    let card = support::provisioned(&support::spec());
    let mut channel = AppletChannel::new(support::applet(&card));
    channel.extended = true;
    let mut client = PivClient::new(channel, Arc::new(PasscodeGuard::in_memory().unwrap()));
    let identity = client.read_identity().unwrap();
    assert_eq!(identity.holder_uuid.as_str(), HOLDER_UUID);
    assert_eq!(client.channel().count(), 3);
}

#[test]
fn old_generation_cards_are_recognised_by_their_serial() {
    let card = support::provisioned(&support::spec().old_generation());
    let mut client = support::client(support::applet(&card));
    let identity = client.read_identity().unwrap();
    assert!(
        identity.card_serial.is_old_generation(),
        "{}",
        identity.card_serial
    );
    assert_eq!(identity.card_serial.as_str(), card.card.profile.card_serial);
}

#[test]
fn three_wrong_passcodes_lock_the_card_and_the_fourth_sends_nothing() {
    let card = support::provisioned(&support::spec());
    let mut client = support::client(support::applet(&card));
    client.read_identity().unwrap();
    assert_eq!(
        client.passcode_status().unwrap(),
        PasscodeStatus::TriesLeft(cardgate_piv::PasscodeTriesLeft::new(3))
    );
    assert_eq!(wrong(&mut client, "1111", FinalTry::NotConfirmed), 2);
    assert_eq!(wrong(&mut client, "2222", FinalTry::NotConfirmed), 1);
    assert_eq!(client.channel().card_pin_tries(), 1);

    // The final try is refused unless confirmed, and refusing costs nothing.
    let before = client.channel().count();
    let e = client
        .verify_passcode(&passcode("3333"), FinalTry::NotConfirmed)
        .unwrap_err();
    assert!(matches!(e, PivError::FinalTryNotConfirmed { .. }), "{e}");
    assert_eq!(client.channel().card_pin_tries(), 1);
    let sent: Vec<_> = client.channel().exchanges[before..].to_vec();
    assert!(
        sent.iter().all(|(c, _)| c == &[0x00, 0x20, 0x00, 0x80]),
        "only the status query may be sent: {sent:02X?}"
    );

    assert_eq!(wrong(&mut client, "3333", FinalTry::Confirmed), 0);
    assert_eq!(client.channel().card_pin_tries(), 0);

    // Locked: even the right passcode is not sent, nor is anything else.
    let before = client.channel().count();
    let e = client
        .verify_passcode(&passcode(PIN), FinalTry::Confirmed)
        .unwrap_err();
    assert!(matches!(e, PivError::CardBlocked { .. }), "{e}");
    assert_eq!(client.passcode_status().unwrap(), PasscodeStatus::Blocked);
    assert_eq!(client.channel().count(), before, "nothing was sent");
}

#[test]
fn a_card_blocked_elsewhere_is_not_sent_a_passcode() {
    let mut card = support::provisioned(&support::spec());
    card.card.pin.tries_left = 0;
    let mut client = support::client(support::applet(&card));
    client.card_serial().unwrap();
    let before = client.channel().count();
    let e = client
        .verify_passcode(&passcode(PIN), FinalTry::Confirmed)
        .unwrap_err();
    assert!(
        matches!(
            e,
            PivError::CardBlocked {
                by_agent: false,
                status: Some(StatusWord::AuthenticationBlocked)
            }
        ),
        "{e:?}"
    );
    let sent = &client.channel().exchanges[before..];
    assert_eq!(sent.len(), 1, "only the status query");
    assert_eq!(sent[0].0, vec![0x00, 0x20, 0x00, 0x80]);
}

#[test]
fn the_right_passcode_after_two_wrong_resets_the_count() {
    let card = support::provisioned(&support::spec());
    let guard = Arc::new(PasscodeGuard::in_memory().unwrap());
    let mut client = PivClient::new(
        AppletChannel::new(support::applet(&card)),
        Arc::clone(&guard),
    );
    let serial = client.card_serial().unwrap();
    wrong(&mut client, "1111", FinalTry::NotConfirmed);
    wrong(&mut client, "2222", FinalTry::NotConfirmed);
    assert_eq!(guard.consecutive_failures(&serial), 2);
    client
        .verify_passcode(&passcode(PIN), FinalTry::Confirmed)
        .expect("the right passcode");
    assert_eq!(guard.consecutive_failures(&serial), 0);
    assert_eq!(client.channel().card_pin_tries(), 3);
    assert_eq!(client.passcode_status().unwrap(), PasscodeStatus::Verified);
    // A new failure starts from three again.
    assert_eq!(wrong(&mut client, "1111", FinalTry::NotConfirmed), 2);
}

#[test]
fn a_malformed_passcode_costs_no_try() {
    let card = support::provisioned(&support::spec());
    let mut client = support::client(support::applet(&card));
    client.read_identity().unwrap();
    let before = client.channel().count();
    for bad in ["12", "123456789", "12 4", "73 91", "pässe"] {
        let e = Passcode::new(bad.to_owned()).unwrap_err();
        assert!(matches!(e, PivError::InvalidPasscode { .. }), "{e}");
        assert!(!e.to_string().contains(bad));
    }
    assert!(UnlockCode::new("1234".into()).is_err());
    assert_eq!(client.channel().count(), before);
    assert_eq!(client.channel().card_pin_tries(), 3);
}

#[test]
fn a_five_try_card_is_locked_by_the_agent_after_three() {
    let card = support::provisioned(&support::spec().pin_tries(5));
    let mut client = support::client(support::applet(&card));
    client.card_serial().unwrap();
    assert_eq!(
        client.passcode_status().unwrap(),
        PasscodeStatus::TriesLeft(cardgate_piv::PasscodeTriesLeft::new(3)),
        "the agent reports its own limit, not the card's five"
    );
    assert_eq!(wrong(&mut client, "1111", FinalTry::NotConfirmed), 2);
    assert_eq!(wrong(&mut client, "2222", FinalTry::NotConfirmed), 1);
    let e = client
        .verify_passcode(&passcode("3333"), FinalTry::NotConfirmed)
        .unwrap_err();
    assert!(matches!(e, PivError::FinalTryNotConfirmed { .. }), "{e}");
    assert_eq!(wrong(&mut client, "3333", FinalTry::Confirmed), 0);
    assert_eq!(
        client.channel().card_pin_tries(),
        2,
        "the card would allow two more"
    );

    let before = client.channel().count();
    let e = client
        .verify_passcode(&passcode(PIN), FinalTry::Confirmed)
        .unwrap_err();
    assert!(
        matches!(
            e,
            PivError::CardBlocked {
                by_agent: true,
                status: None
            }
        ),
        "{e:?}"
    );
    assert_eq!(client.channel().count(), before, "nothing was sent");
    assert_eq!(client.channel().card_pin_tries(), 2);
}

#[test]
fn the_passcode_that_just_failed_is_not_sent_again() {
    let card = support::provisioned(&support::spec());
    let guard = Arc::new(PasscodeGuard::in_memory().unwrap());
    let mut client = PivClient::new(
        AppletChannel::new(support::applet(&card)),
        Arc::clone(&guard),
    );
    assert_eq!(wrong(&mut client, "1111", FinalTry::NotConfirmed), 2);
    let before = client.channel().count();
    let e = client
        .verify_passcode(&passcode("1111"), FinalTry::Confirmed)
        .unwrap_err();
    assert!(matches!(e, PivError::RepeatedFailedValue { .. }), "{e}");
    assert_eq!(client.channel().count(), before, "nothing was sent");
    assert_eq!(client.channel().card_pin_tries(), 2);

    // Not even by a new client for the same card (reinsertion), sharing the guard.
    let applet = client.into_channel().applet;
    let mut again = PivClient::new(AppletChannel::new(applet), guard);
    again.card_serial().unwrap();
    let before = again.channel().count();
    let e = again
        .verify_passcode(&passcode("1111"), FinalTry::Confirmed)
        .unwrap_err();
    assert!(matches!(e, PivError::RepeatedFailedValue { .. }), "{e}");
    assert_eq!(again.channel().count(), before);
    // A different value is sent.
    again
        .verify_passcode(&passcode(PIN), FinalTry::NotConfirmed)
        .unwrap();
}

#[test]
fn the_final_try_of_a_one_try_card_needs_confirmation() {
    let card = support::provisioned(&support::spec().pin_tries(1));
    let mut client = support::client(support::applet(&card));
    let e = client
        .verify_passcode(&passcode(PIN), FinalTry::NotConfirmed)
        .unwrap_err();
    assert!(matches!(e, PivError::FinalTryNotConfirmed { .. }), "{e}");
    assert_eq!(client.channel().card_pin_tries(), 1);
    client
        .verify_passcode(&passcode(PIN), FinalTry::Confirmed)
        .unwrap();
}

#[test]
fn the_ledger_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("failures.json");
    // A five-try card, so only the agent's ledger can stop the fourth attempt.
    let card = support::provisioned(&support::spec().pin_tries(5));
    let guard = Arc::new(PasscodeGuard::new(JsonFileLedger::open(&path).unwrap()).unwrap());
    let mut client = PivClient::new(AppletChannel::new(support::applet(&card)), guard);
    assert_eq!(wrong(&mut client, "1111", FinalTry::NotConfirmed), 2);
    assert_eq!(wrong(&mut client, "2222", FinalTry::NotConfirmed), 1);
    let applet = client.into_channel().applet;

    // "Restart": a new guard from the same file, a new client.
    let guard = Arc::new(PasscodeGuard::new(JsonFileLedger::open(&path).unwrap()).unwrap());
    let mut client = PivClient::new(AppletChannel::new(applet), guard);
    assert_eq!(
        client.passcode_status().unwrap(),
        PasscodeStatus::TriesLeft(cardgate_piv::PasscodeTriesLeft::new(1))
    );
    let e = client
        .verify_passcode(&passcode("3333"), FinalTry::NotConfirmed)
        .unwrap_err();
    assert!(matches!(e, PivError::FinalTryNotConfirmed { .. }), "{e}");
    assert_eq!(wrong(&mut client, "3333", FinalTry::Confirmed), 0);
    let applet = client.into_channel().applet;

    let guard = Arc::new(PasscodeGuard::new(JsonFileLedger::open(&path).unwrap()).unwrap());
    let mut client = PivClient::new(AppletChannel::new(applet), guard);
    client.card_serial().unwrap();
    let before = client.channel().count();
    let e = client
        .verify_passcode(&passcode(PIN), FinalTry::Confirmed)
        .unwrap_err();
    assert!(
        matches!(e, PivError::CardBlocked { by_agent: true, .. }),
        "{e:?}"
    );
    assert_eq!(client.channel().count(), before);
    assert_eq!(client.channel().card_pin_tries(), 2);
}

#[test]
fn a_card_pulled_during_verify_counts_as_a_failure() {
    let card = support::provisioned(&support::spec());
    let guard = Arc::new(PasscodeGuard::in_memory().unwrap());
    let mut client = PivClient::new(
        AppletChannel::new(support::applet(&card)),
        Arc::clone(&guard),
    );
    let serial = client.card_serial().unwrap();
    client.passcode_status().unwrap();
    // The status query and the VERIFY: fail the VERIFY's answer.
    let applet = client.into_channel().applet;
    let mut client = PivClient::new(
        LoseVerifyAnswers {
            inner: AppletChannel::new(applet),
            processed: true,
        },
        Arc::clone(&guard),
    );
    let e = client
        .verify_passcode(&passcode("1111"), FinalTry::NotConfirmed)
        .unwrap_err();
    assert!(
        matches!(e, PivError::Channel(ChannelError::CardRemoved)),
        "{e:?}"
    );
    assert_eq!(guard.consecutive_failures(&serial), 1);
}

#[test]
fn a_forgotten_verification_needs_the_passcode_again_and_costs_no_try() {
    let card = support::provisioned(&support::spec());
    let mut client = PivClient::new(
        AppletChannel::new(support::applet(&card)),
        Arc::new(PasscodeGuard::in_memory().unwrap()),
    );
    client
        .verify_passcode(&passcode(PIN), FinalTry::NotConfirmed)
        .unwrap();
    assert_eq!(client.passcode_status().unwrap(), PasscodeStatus::Verified);
    client.forget_verification().unwrap();
    assert_eq!(
        client.passcode_status().unwrap(),
        PasscodeStatus::TriesLeft(cardgate_piv::PasscodeTriesLeft::new(3))
    );
    // The authentication key is locked again until the passcode is entered.
    let digest = Sha256Digest::of(b"to be signed");
    assert!(
        client
            .sign(Slot::Authentication, SignInput::EcdsaP256Sha256(digest))
            .is_err()
    );
    assert_eq!(client.channel().card_pin_tries(), 3);
}

/// A channel whose VERIFY-with-data answers are lost: the card gets the command (`processed`)
/// or not, and the client sees the card removed.
struct LoseVerifyAnswers {
    inner: AppletChannel,
    processed: bool,
}

impl CardChannel for LoseVerifyAnswers {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        if command.len() > 4 && command[1] == 0x20 {
            if self.processed {
                self.inner.transmit(command)?;
            }
            return Err(ChannelError::CardRemoved);
        }
        self.inner.transmit(command)
    }
}

#[test]
fn lost_verify_answers_are_settled_by_the_cards_counter_at_the_next_read() {
    let card = support::provisioned(&support::spec());
    let guard = Arc::new(PasscodeGuard::in_memory().unwrap());
    let mut client = PivClient::new(
        AppletChannel::new(support::applet(&card)),
        Arc::clone(&guard),
    );
    let serial = client.card_serial().unwrap();
    let mut applet = client.into_channel().applet;
    // The card's own counter, read around each step (VERIFY without data).
    let card_tries = |applet: &cardgate_vcard::applet::PivApplet| applet.card_file().pin.tries_left;
    let lose = |applet: cardgate_vcard::applet::PivApplet, value: &str, processed: bool| {
        let mut client = PivClient::new(
            LoseVerifyAnswers {
                inner: AppletChannel::new(applet),
                processed,
            },
            Arc::clone(&guard),
        );
        let e = client
            .verify_passcode(&passcode(value), FinalTry::Confirmed)
            .unwrap_err();
        assert!(
            matches!(e, PivError::Channel(ChannelError::CardRemoved)),
            "{e:?}"
        );
        let mut applet = client.into_channel().inner.applet;
        // Pulled: the next insertion powers it up afresh.
        applet.power_off();
        applet.power_on();
        applet
    };
    let status = |applet: cardgate_vcard::applet::PivApplet| {
        let mut client = PivClient::new(AppletChannel::new(applet), Arc::clone(&guard));
        let status = client.passcode_status().unwrap();
        (status, client.into_channel().applet)
    };
    let tries = |n| PasscodeStatus::TriesLeft(cardgate_piv::PasscodeTriesLeft::new(n));

    // Three right passcodes whose answers were lost: each counted meanwhile, so a card with
    // every try left is not taken for blocked; the next read of its counter takes them back.
    for _ in 0..3 {
        applet = lose(applet, PIN, true);
        assert_eq!(guard.consecutive_failures(&serial), 1);
        let (now, back) = status(applet);
        applet = back;
        assert_eq!(now, tries(3));
        assert_eq!(guard.consecutive_failures(&serial), 0);
    }
    // Lost in a row with no status read between: each attempt reads the counter before it
    // sends, which settles the one before, so the ledger holds only the one in flight.
    for processed in [false, true, false] {
        applet = lose(applet, PIN, processed);
        assert_eq!(guard.consecutive_failures(&serial), 1);
    }
    let (now, back) = status(applet);
    applet = back;
    assert_eq!(now, tries(3));
    assert_eq!(guard.consecutive_failures(&serial), 0);

    // A wrong passcode whose answer was lost: the card counted it, so it stays counted.
    applet = lose(applet, "1111", true);
    assert_eq!(card_tries(&applet), 2);
    let (now, back) = status(applet);
    applet = back;
    assert_eq!(now, tries(2));
    assert_eq!(guard.consecutive_failures(&serial), 1);
    // A wrong one that never reached the card: taken back; the real failure stays.
    applet = lose(applet, "2222", false);
    assert_eq!(guard.consecutive_failures(&serial), 2);
    let (now, back) = status(applet);
    applet = back;
    assert_eq!(now, tries(2));
    assert_eq!(guard.consecutive_failures(&serial), 1);
    // The right one, answer lost, after that failure: the card's counter is full again, so
    // the ledger is cleared like after any right passcode.
    applet = lose(applet, PIN, true);
    let (now, _) = status(applet);
    assert_eq!(now, tries(3));
    assert_eq!(guard.consecutive_failures(&serial), 0);
}

#[test]
fn the_unlock_code_resets_a_locked_card() {
    let card = support::provisioned(&support::spec());
    let guard = Arc::new(PasscodeGuard::in_memory().unwrap());
    let mut client = PivClient::new(
        AppletChannel::new(support::applet(&card)),
        Arc::clone(&guard),
    );
    let serial = client.card_serial().unwrap();
    wrong(&mut client, "1111", FinalTry::NotConfirmed);
    wrong(&mut client, "2222", FinalTry::NotConfirmed);
    wrong(&mut client, "3333", FinalTry::Confirmed);
    assert_eq!(client.passcode_status().unwrap(), PasscodeStatus::Blocked);

    let puk = UnlockCode::new(PUK.into()).unwrap();
    let bad_puk = UnlockCode::new("00000000".into()).unwrap();
    assert_eq!(
        client.unlock_code_tries_left().unwrap().map(|t| t.get()),
        Some(3)
    );
    let e = client
        .reset_retry_counter(&bad_puk, &passcode("5555"), FinalTry::NotConfirmed)
        .unwrap_err();
    assert_eq!(tries(&e), Some(2), "{e:?}");
    assert!(matches!(e, PivError::WrongUnlockCode { .. }));
    let before = client.channel().count();
    let e = client
        .reset_retry_counter(&bad_puk, &passcode("5555"), FinalTry::Confirmed)
        .unwrap_err();
    assert!(matches!(e, PivError::RepeatedFailedValue { .. }), "{e}");
    assert_eq!(client.channel().count(), before);
    assert_eq!(client.channel().applet.card_file().puk.tries_left, 2);

    client
        .reset_retry_counter(&puk, &passcode("5555"), FinalTry::NotConfirmed)
        .expect("unlock");
    assert_eq!(guard.consecutive_failures(&serial), 0);
    assert_eq!(client.channel().card_pin_tries(), 3);
    assert_eq!(client.channel().applet.card_file().puk.tries_left, 3);
    client
        .verify_passcode(&passcode("5555"), FinalTry::NotConfirmed)
        .expect("the new passcode works");
}

#[test]
fn the_last_unlock_code_try_needs_confirmation() {
    let mut card = support::provisioned(&support::spec());
    card.card.puk.tries_left = 1;
    let mut client = support::client(support::applet(&card));
    let puk = UnlockCode::new(PUK.into()).unwrap();
    let e = client
        .reset_retry_counter(&puk, &passcode("5555"), FinalTry::NotConfirmed)
        .unwrap_err();
    assert!(matches!(e, PivError::FinalTryNotConfirmed { .. }), "{e}");
    assert_eq!(client.channel().applet.card_file().puk.tries_left, 1);
    card.card.puk.tries_left = 0;
    let mut client = support::client(support::applet(&card));
    let e = client
        .reset_retry_counter(&puk, &passcode("5555"), FinalTry::Confirmed)
        .unwrap_err();
    assert!(matches!(e, PivError::UnlockCodeBlocked { .. }), "{e}");
}

#[test]
fn change_passcode_follows_the_same_rules() {
    let card = support::provisioned(&support::spec());
    let mut client = support::client(support::applet(&card));
    let e = client
        .change_passcode(&passcode("1111"), &passcode("2468"), FinalTry::NotConfirmed)
        .unwrap_err();
    assert_eq!(tries(&e), Some(2), "{e:?}");
    let before = client.channel().count();
    let e = client
        .change_passcode(&passcode("1111"), &passcode("2468"), FinalTry::NotConfirmed)
        .unwrap_err();
    assert!(matches!(e, PivError::RepeatedFailedValue { .. }), "{e}");
    assert_eq!(client.channel().count(), before);

    client
        .change_passcode(&passcode(PIN), &passcode("2468"), FinalTry::NotConfirmed)
        .expect("change");
    assert_eq!(client.channel().card_pin_tries(), 3);
    assert_eq!(wrong(&mut client, PIN, FinalTry::NotConfirmed), 2);
    client
        .verify_passcode(&passcode("2468"), FinalTry::NotConfirmed)
        .expect("the new passcode");
}

#[test]
fn signing_needs_the_passcode_and_ecdsa_verifies_with_the_certificate() {
    let card = support::provisioned(&support::spec());
    let mut client = support::client(support::applet(&card));
    let identity = client.read_identity().unwrap();
    let message = b"TLS 1.3 CertificateVerify content";
    let input = SignInput::EcdsaP256Sha256(Sha256Digest::of(message));

    let e = client.sign(Slot::Authentication, input).unwrap_err();
    assert!(
        matches!(
            e,
            PivError::PasscodeNotVerified {
                status: StatusWord::SecurityStatusNotSatisfied,
                ..
            }
        ),
        "{e:?}"
    );
    client
        .verify_passcode(&passcode(PIN), FinalTry::NotConfirmed)
        .unwrap();
    let signature = client.sign(Slot::Authentication, input).unwrap();
    let key = UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_ASN1,
        public_key_of(&identity.auth_certificate_der),
    );
    key.verify(message, &signature).expect("ECDSA verifies");
    assert!(key.verify(b"another message", &signature).is_err());

    // An RSA scheme on an EC slot is refused by the card, status kept.
    let e = client
        .sign(
            Slot::Authentication,
            SignInput::RsaPkcs1Sha256(Sha256Digest::of(message)),
        )
        .unwrap_err();
    assert_eq!(e.status(), Some(StatusWord::IncorrectData), "{e:?}");
}

#[test]
fn rsa_pkcs1_and_pss_signatures_verify_with_the_certificate() {
    let card =
        support::provisioned(&support::spec().key_algorithm(card_file::KeyAlgorithm::Rsa2048));
    let mut client = support::client(support::applet(&card));
    let identity = client.read_identity().unwrap();
    client
        .verify_passcode(&passcode(PIN), FinalTry::NotConfirmed)
        .unwrap();
    let public = public_key_of(&identity.auth_certificate_der);
    let message = b"client handshake transcript";

    let pkcs1 = client
        .sign(
            Slot::Authentication,
            SignInput::RsaPkcs1Sha256(Sha256Digest::of(message)),
        )
        .unwrap();
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &public)
        .verify(message, &pkcs1)
        .expect("PKCS#1 v1.5 verifies");

    let pss = client
        .sign(
            Slot::Authentication,
            SignInput::RsaPssSha256(Sha256Digest::of(message)),
        )
        .unwrap();
    let verifier = UnparsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA256, &public);
    verifier.verify(message, &pss).expect("PSS verifies");
    assert!(verifier.verify(b"tampered", &pss).is_err());
}

#[test]
fn generated_keys_sign_and_certificates_are_written() {
    let card = support::provisioned(&support::spec());
    let mut client = support::client(support::applet(&card));
    let e = client
        .generate_key(Slot::Signature, KeyAlgorithm::EccP256)
        .unwrap_err();
    assert!(
        matches!(e, PivError::ManagementKeyNotAuthenticated { .. }),
        "{e:?}"
    );
    let wrong_key = ManagementKey::aes128(&[0x55; 16]).unwrap();
    let e = client.authenticate_management_key(&wrong_key).unwrap_err();
    assert!(matches!(e, PivError::ManagementKeyRejected { .. }), "{e:?}");

    client
        .authenticate_management_key(&ManagementKey::aes128(&MANAGEMENT_KEY).unwrap())
        .expect("the right management key");
    let public = client
        .generate_key(Slot::Authentication, KeyAlgorithm::EccP256)
        .unwrap();
    let PublicKey::EccP256 { point } = &public else {
        panic!("{public:?}")
    };

    // Writing: garbage is refused before the card is touched; a certificate round-trips.
    let before = client.channel().count();
    let e = client
        .write_certificate(Slot::Authentication, &[0x30, 0x03, 0x02, 0x01, 0x05])
        .unwrap_err();
    assert!(matches!(e, PivError::InvalidInput { .. }), "{e}");
    assert_eq!(client.channel().count(), before);
    let replacement = card.certificates[&card_file::Slot::Signature].clone();
    client
        .write_certificate(Slot::Authentication, &replacement)
        .unwrap();
    assert_eq!(
        client.read_certificate(Slot::Authentication).unwrap(),
        replacement
    );

    client
        .verify_passcode(&passcode(PIN), FinalTry::NotConfirmed)
        .unwrap();
    let message = b"signed by a key born on the card";
    let sig = client
        .sign(
            Slot::Authentication,
            SignInput::EcdsaP256Sha256(Sha256Digest::of(message)),
        )
        .unwrap();
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, point)
        .verify(message, &sig)
        .expect("the generated key's signature verifies");
}

#[test]
fn a_generated_rsa_key_signs_pss() {
    let card = support::provisioned(&support::spec());
    let mut client = support::client(support::applet(&card));
    client
        .authenticate_management_key(&ManagementKey::aes128(&MANAGEMENT_KEY).unwrap())
        .unwrap();
    let public = client
        .generate_key(Slot::Signature, KeyAlgorithm::Rsa2048)
        .unwrap();
    let PublicKey::Rsa2048 { modulus, exponent } = public else {
        panic!("{public:?}")
    };
    // 9C asks for the passcode before every use.
    client
        .verify_passcode(&passcode(PIN), FinalTry::NotConfirmed)
        .unwrap();
    let message = b"prescription batch";
    let sig = client
        .sign(
            Slot::Signature,
            SignInput::RsaPssSha256(Sha256Digest::of(message)),
        )
        .unwrap();
    signature::RsaPublicKeyComponents {
        n: &modulus,
        e: &exponent,
    }
    .verify(&signature::RSA_PSS_2048_8192_SHA256, message, &sig)
    .expect("PSS with a generated key verifies");
    let e = client
        .sign(
            Slot::Signature,
            SignInput::RsaPssSha256(Sha256Digest::of(message)),
        )
        .unwrap_err();
    assert!(matches!(e, PivError::PasscodeNotVerified { .. }), "{e:?}");
}

#[test]
fn a_tdes_management_key_authenticates() {
    let mut card = support::provisioned(&support::spec());
    let key = [
        1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
    ];
    card.card.management_key = card_file::ManagementKey {
        algorithm: card_file::ManagementKeyAlgorithm::Tdes,
        key: zeroize::Zeroizing::new(key.to_vec()),
    };
    let mut client = support::client(support::applet(&card));
    client
        .authenticate_management_key(&ManagementKey::tdes(&key).unwrap())
        .expect("3DES mutual authentication");
    // The AES key of the wrong algorithm is refused by the card, with its status word.
    let mut client = support::client(support::applet(&card));
    let e = client
        .authenticate_management_key(&ManagementKey::aes128(&MANAGEMENT_KEY).unwrap())
        .unwrap_err();
    assert_eq!(e.status(), Some(StatusWord::IncorrectData), "{e:?}");
}

#[test]
fn compressed_and_missing_certificates_get_clear_errors() {
    let mut card = support::provisioned(&support::spec());
    card.card.objects.insert(
        ObjectTag::CERT_AUTHENTICATION,
        HexBytes(vec![
            0x70, 0x03, 0x1F, 0x8B, 0x08, 0x71, 0x01, 0x01, 0xFE, 0x00,
        ]),
    );
    card.card.objects.remove(&ObjectTag::CERT_SIGNATURE);
    let mut client = support::client(support::applet(&card));
    let e = client.read_identity().unwrap_err();
    assert!(
        matches!(
            e,
            PivError::CompressedCertificate {
                slot: Slot::Authentication
            }
        ),
        "{e:?}"
    );
    let e = client.read_certificate(Slot::Signature).unwrap_err();
    assert!(
        matches!(
            e,
            PivError::ObjectNotFound {
                object: 0x5FC10A,
                status: StatusWord::NotFound
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_card_without_piv_is_named_as_such() {
    struct NotPiv;
    impl CardChannel for NotPiv {
        fn transmit(&mut self, _: &[u8]) -> Result<Vec<u8>, ChannelError> {
            Ok(vec![0x6A, 0x82])
        }
    }
    let mut client = PivClient::new(NotPiv, Arc::new(PasscodeGuard::in_memory().unwrap()));
    let e = client.read_identity().unwrap_err();
    assert!(
        matches!(
            e,
            PivError::NotPivCard {
                status: StatusWord::NotFound
            }
        ),
        "{e:?}"
    );
}

/// A PIN pad as the reader crate drives it, reduced to what the client sees: it gets the
/// channel, "keys" `pin` into a VERIFY the reader builds, and returns the card's answer.
fn pad_keys(
    pin: &'static str,
) -> impl FnOnce(&mut AppletChannel) -> Result<ReaderEntry, ChannelError> {
    move |channel| {
        let mut apdu = vec![0x00, 0x20, 0x00, 0x80, 0x08];
        let mut block = [0xFF; 8];
        block[..pin.len()].copy_from_slice(pin.as_bytes());
        apdu.extend_from_slice(&block);
        channel.transmit(&apdu).map(ReaderEntry::CardAnswered)
    }
}

#[test]
fn a_pin_pad_verification_follows_the_same_lockout_policy() {
    let card = support::provisioned(&support::spec());
    let guard = Arc::new(PasscodeGuard::in_memory().unwrap());
    let mut client = PivClient::new(
        AppletChannel::new(support::applet(&card)),
        Arc::clone(&guard),
    );
    let serial = client.card_serial().unwrap();

    // Entry that ended at the reader costs nothing and is not a failure.
    let before = client.channel().count();
    let e = client
        .verify_passcode_on_reader(FinalTry::NotConfirmed, |_| {
            Ok(ReaderEntry::EndedAtReader(PinPadEnd::Cancelled))
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            PivError::PinPadEntryEnded {
                how: PinPadEnd::Cancelled
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("no try was used"), "{e}");
    assert_eq!(guard.consecutive_failures(&serial), 0);
    assert_eq!(client.channel().card_pin_tries(), 3);
    // Only the status query went to the card before the pad was asked.
    let sent: Vec<_> = client.channel().exchanges[before..].to_vec();
    assert!(
        sent.iter().all(|(c, _)| c == &[0x00, 0x20, 0x00, 0x80]),
        "{sent:02X?}"
    );

    // Two wrong passcodes on the pad count in the ledger like host ones.
    for expected in [2, 1] {
        let e = client
            .verify_passcode_on_reader(FinalTry::NotConfirmed, pad_keys("1111"))
            .unwrap_err();
        assert_eq!(tries(&e), Some(expected), "{e:?}");
    }
    assert_eq!(guard.consecutive_failures(&serial), 2);

    // The final try needs confirmation: the pad is not even asked.
    let mut asked = false;
    let e = client
        .verify_passcode_on_reader(FinalTry::NotConfirmed, |_| {
            asked = true;
            Ok(ReaderEntry::EndedAtReader(PinPadEnd::TimedOut))
        })
        .unwrap_err();
    assert!(matches!(e, PivError::FinalTryNotConfirmed { .. }), "{e:?}");
    assert!(!asked, "the pad was asked for the unconfirmed final try");

    // The right one, confirmed, resets the ledger and the card's counter.
    client
        .verify_passcode_on_reader(FinalTry::Confirmed, pad_keys(PIN))
        .unwrap();
    assert_eq!(guard.consecutive_failures(&serial), 0);
    assert_eq!(client.channel().card_pin_tries(), 3);
    assert_eq!(client.passcode_status().unwrap(), PasscodeStatus::Verified);
}

#[test]
fn a_pin_pad_is_never_asked_for_a_card_the_agent_counts_as_locked() {
    let card = support::provisioned(&support::spec().pin_tries(5));
    let mut client = support::client(support::applet(&card));
    client.card_serial().unwrap();
    wrong(&mut client, "1111", FinalTry::NotConfirmed);
    wrong(&mut client, "2222", FinalTry::NotConfirmed);
    wrong(&mut client, "3333", FinalTry::Confirmed);
    assert_eq!(client.channel().card_pin_tries(), 2);
    let before = client.channel().count();
    let e = client
        .verify_passcode_on_reader(FinalTry::Confirmed, |_| panic!("the pad was asked"))
        .unwrap_err();
    assert!(
        matches!(e, PivError::CardBlocked { by_agent: true, .. }),
        "{e:?}"
    );
    assert_eq!(client.channel().count(), before, "nothing was sent");
}
