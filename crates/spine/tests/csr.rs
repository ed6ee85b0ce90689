//! Renewal's first half: the card generates a new key and signs a certificate request for
//! it. `openssl req -verify` (an independent verifier) must accept the request, its key must
//! be the one the card returned, and its subject must be the current certificate's.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use cardgate_piv::{KeyAlgorithm, ManagementKey, Slot};
use cardgate_spine::csr::card_certificate_request;
use support::Kind;
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};

fn renew_request(kind: Kind, algorithm: KeyAlgorithm) {
    support::require_openssl();
    let card = support::card(kind);
    let current = card.card.certificates[&cardgate_vcard::card_file::Slot::Authentication].clone();
    let (mut client, _controls) = support::verified_client(&card.card);
    client
        .authenticate_management_key(&ManagementKey::aes128(&support::MANAGEMENT_KEY).unwrap())
        .unwrap();
    let csr = card_certificate_request(&mut client, Slot::Authentication, algorithm, &current)
        .unwrap_or_else(|e| panic!("{kind:?}: {e:?}"));

    let dir = tempfile::tempdir().unwrap();
    let path = support::write(dir.path(), "request.der", &csr);
    let output = Command::new("openssl")
        .args(["req", "-verify", "-noout", "-inform", "DER", "-in", &path])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{kind:?}: openssl refused the card-signed CSR: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let (_, request) = X509CertificationRequest::from_der(&csr).unwrap();
    let (_, certificate) = X509Certificate::from_der(&current).unwrap();
    assert_eq!(
        request.certification_request_info.subject.as_raw(),
        certificate.subject().as_raw(),
        "{kind:?}: the request names the holder exactly as the current certificate does"
    );
    // A new key: not the one the current certificate holds.
    assert_ne!(
        request
            .certification_request_info
            .subject_pki
            .subject_public_key
            .data,
        certificate.public_key().subject_public_key.data,
        "{kind:?}: the request must carry the new key"
    );
}

#[test]
fn ecc_card_makes_the_key_and_signs_the_request() {
    renew_request(Kind::Ecc, KeyAlgorithm::EccP256);
}

#[test]
fn rsa_card_makes_the_key_and_signs_the_request() {
    renew_request(Kind::Rsa, KeyAlgorithm::Rsa2048);
}
