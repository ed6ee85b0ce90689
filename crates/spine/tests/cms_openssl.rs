//! Mode A's CMS SignedData, made by the card, checked by an independent verifier:
//! `openssl cms -verify -binary -CAfile ca.pem -inform DER -purpose any` must accept it and give back the
//! challenge, for an ECC card and an RSA card; a changed byte must make it fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use cardgate_spine::SpineError;
use support::Kind;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Runs `openssl cms -verify` on `der`; returns the verified content, or openssl's stderr.
fn openssl_verify(der: &[u8], ca_pem: &str) -> Result<Vec<u8>, String> {
    support::require_openssl();
    let dir = tempfile::tempdir().unwrap();
    let input = support::write(dir.path(), "signed.der", der);
    let ca = support::write(dir.path(), "ca.pem", ca_pem);
    let out = dir.path().join("content.bin");
    let output = Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-CAfile"])
        .arg(&ca)
        .args(["-in", &input, "-out"])
        .arg(&out)
        // The card certificates carry only the clientAuth extended key usage, which
        // openssl's default S/MIME purpose check refuses; `-purpose any` still checks the
        // chain, validity and signature, which is what the broker checks.
        .args(["-purpose", "any"])
        .output()
        .unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(std::fs::read(out).unwrap())
}

fn verifies_with_openssl(kind: Kind) {
    let card = support::card(kind);
    let (signer, _controls) = support::signer(&card.card);
    let challenge: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0x5A).collect();
    let der = cardgate_spine::cms::signed_data(signer.as_ref(), &challenge).unwrap();
    let content = openssl_verify(&der, &card.ca.certificate_pem())
        .unwrap_or_else(|e| panic!("{kind:?}: openssl refused the card's CMS: {e}"));
    assert_eq!(content, challenge);

    // A byte of the attached content changed: the messageDigest no longer matches.
    let position = der
        .windows(challenge.len())
        .position(|w| w == challenge.as_slice())
        .expect("the challenge is attached");
    let mut tampered = der.clone();
    tampered[position] ^= 0x01;
    assert!(
        openssl_verify(&tampered, &card.ca.certificate_pem()).is_err(),
        "{kind:?}: a changed challenge still verified"
    );

    // And it must not verify against another card CA.
    let other = support::card(kind);
    assert!(
        openssl_verify(&der, &other.ca.certificate_pem()).is_err(),
        "{kind:?}: verified against a CA that did not issue the card"
    );
}

#[test]
fn ecc_card_cms_verifies_with_openssl() {
    verifies_with_openssl(Kind::Ecc);
}

#[test]
fn rsa_card_cms_verifies_with_openssl() {
    verifies_with_openssl(Kind::Rsa);
}

#[test]
fn the_signer_is_named_by_issuer_and_serial_of_the_card_certificate() {
    let card = support::card(Kind::Ecc);
    let (signer, _controls) = support::signer(&card.card);
    let der = cardgate_spine::cms::signed_data(signer.as_ref(), b"challenge").unwrap();
    let (_, certificate) = X509Certificate::from_der(
        &card.card.certificates[&cardgate_vcard::card_file::Slot::Authentication],
    )
    .unwrap();
    let mut serial = certificate.raw_serial().to_vec();
    // DER INTEGER content as in the certificate.
    let issuer = certificate.issuer().as_raw();
    let contains = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
    assert!(contains(issuer), "the issuer name is in the SignerInfo");
    serial.insert(0, serial.len() as u8);
    serial.insert(0, 0x02);
    assert!(contains(&serial), "the serial number is in the SignerInfo");
}

#[test]
fn a_card_pulled_while_signing_the_cms_is_reported_as_removed() {
    let card = support::card(Kind::Ecc);
    let (signer, controls) = support::signer(&card.card);
    controls
        .pull_on_sign
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let result = cardgate_spine::cms::signed_data(signer.as_ref(), b"challenge");
    assert!(matches!(result, Err(SpineError::CardRemoved)), "{result:?}");
}
