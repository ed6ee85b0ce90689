//! The card signer on its own thread: signatures that verify with the certificate's key,
//! a card pulled mid-signature (a clean error, then "unavailable" rather than a hang), and a
//! card that stops answering (a bounded wait).
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cardgate_piv::{KeyAlgorithm, Sha256Digest, SignInput, Slot};
use cardgate_spine::{CardSigner, SpineError, Step, ThreadCardSigner};
use ring::signature::{self, UnparsedPublicKey};
use support::Kind;
use x509_parser::prelude::{FromDer, X509Certificate};

fn public_key(der: &[u8]) -> Vec<u8> {
    let (_, certificate) = X509Certificate::from_der(der).unwrap();
    certificate.public_key().subject_public_key.data.to_vec()
}

#[test]
fn signs_with_the_authentication_key_of_either_kind() {
    for (kind, algorithm) in [
        (Kind::Ecc, KeyAlgorithm::EccP256),
        (Kind::Rsa, KeyAlgorithm::Rsa2048),
    ] {
        let card = support::card(kind);
        let (signer, _controls) = support::signer(&card.card);
        assert_eq!(signer.key_algorithm(), algorithm);
        let message = b"the broker's challenge";
        let (input, verifier): (_, &dyn signature::VerificationAlgorithm) = match kind {
            Kind::Ecc => (
                SignInput::EcdsaP256Sha256(Sha256Digest::of(message)),
                &signature::ECDSA_P256_SHA256_ASN1,
            ),
            Kind::Rsa => (
                SignInput::RsaPssSha256(Sha256Digest::of(message)),
                &signature::RSA_PSS_2048_8192_SHA256,
            ),
        };
        let sig = signer.sign(input).unwrap();
        UnparsedPublicKey::new(verifier, public_key(signer.certificate_der()))
            .verify(message, &sig)
            .unwrap_or_else(|_| panic!("{kind:?}: the card's signature does not verify"));
    }
}

#[test]
fn a_card_pulled_mid_signature_is_a_clean_error_and_the_signer_stays_down() {
    let card = support::card(Kind::Ecc);
    let (signer, controls) = support::signer(&card.card);
    let input = SignInput::EcdsaP256Sha256(Sha256Digest::of(b"m"));
    signer.sign(input).unwrap();
    controls.pull_on_sign.store(true, Ordering::SeqCst);
    let started = Instant::now();
    assert!(matches!(signer.sign(input), Err(SpineError::CardRemoved)));
    // The thread ended with the card: later requests fail at once, they do not hang.
    assert!(matches!(
        signer.sign(input),
        Err(SpineError::CardUnavailable { .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_card_that_stops_answering_costs_a_bounded_wait() {
    let card = support::card(Kind::Ecc);
    let (client, controls) = support::verified_client(&card.card);
    let timeout = Duration::from_millis(300);
    let signer = ThreadCardSigner::spawn(client, Slot::Authentication, timeout).unwrap();
    controls.delay_ms.store(2_000, Ordering::SeqCst);
    let started = Instant::now();
    let result = signer.sign(SignInput::EcdsaP256Sha256(Sha256Digest::of(b"m")));
    let waited = started.elapsed();
    assert!(
        matches!(
            result,
            Err(SpineError::TimedOut {
                step: Step::CardSignature,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(
        waited >= timeout && waited < Duration::from_secs(1),
        "{waited:?}"
    );
}

#[test]
fn a_signature_without_the_passcode_keeps_the_card_error() {
    let card = support::card(Kind::Ecc);
    let mut applet = cardgate_vcard::applet::PivApplet::new(card.card.card.clone());
    cardgate_vcard::Card::power_on(&mut applet);
    let channel = support::TestChannel {
        applet,
        controls: Default::default(),
    };
    let client = cardgate_piv::PivClient::new(
        channel,
        std::sync::Arc::new(cardgate_piv::PasscodeGuard::in_memory().unwrap()),
    );
    let signer =
        ThreadCardSigner::spawn(client, Slot::Authentication, Duration::from_secs(5)).unwrap();
    match signer.sign(SignInput::EcdsaP256Sha256(Sha256Digest::of(b"m"))) {
        Err(SpineError::Card {
            source: cardgate_piv::PivError::PasscodeNotVerified { .. },
        }) => {}
        other => panic!("expected the card's PasscodeNotVerified, got {other:?}"),
    }
}
