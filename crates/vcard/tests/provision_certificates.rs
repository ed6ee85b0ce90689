//! Provisioned cards checked from the outside: certificates parsed with x509-parser and
//! verified against the CA key with p256, CRLs parsed, data objects parsed as TLV.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;

use ::time::{Duration, OffsetDateTime};
use cardgate_apdu::tlv::{Tag, Tlv};
use cardgate_vcard::card_file::{CardKind, KeyAlgorithm, ObjectTag, PinPolicy, Slot};
use cardgate_vcard::provision::{
    CardSpec, ProvisionError, ProvisionedCard, RevokedCard, TestCa, Validity, objects, provision,
};
use p256::ecdsa::signature::Verifier as _;
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{OID_X509_COMMON_NAME, OID_X509_SERIALNUMBER, Oid};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::X509Name;
use x509_parser::{parse_x509_certificate, parse_x509_crl};

fn ca() -> TestCa {
    TestCa::generate("Cardgate Test CA").unwrap()
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = parse_x509_certificate(der).unwrap();
    assert!(rest.is_empty());
    cert
}

fn attribute(name: &X509Name<'_>, oid: &Oid<'_>) -> String {
    name.iter_by_oid(oid)
        .next()
        .unwrap_or_else(|| panic!("{name} has no {oid}"))
        .as_str()
        .unwrap()
        .to_owned()
}

/// Verifies an ECDSA-with-SHA256 signature made by the CA over `tbs`.
fn signed_by_ca(ca: &TestCa, tbs: &[u8], signature_der: &[u8]) -> bool {
    let ca_cert = parse(ca.certificate_der());
    let key =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&ca_cert.public_key().subject_public_key.data)
            .unwrap();
    let signature = p256::ecdsa::Signature::from_der(signature_der).unwrap();
    key.verify(tbs, &signature).is_ok()
}

fn card(ca: &TestCa, spec: CardSpec) -> ProvisionedCard {
    provision(ca, &spec).unwrap()
}

#[test]
fn authentication_certificate_carries_the_uuid_and_chains_to_the_ca() {
    let ca = ca();
    let card = card(&ca, CardSpec::new("Asha Patel", "555000111222"));
    assert_eq!(card.certificates.len(), 4);
    let der = &card.certificates[&Slot::Authentication];
    let cert = parse(der);
    assert_eq!(
        attribute(cert.subject(), &OID_X509_SERIALNUMBER),
        "555000111222"
    );
    assert_eq!(
        attribute(cert.subject(), &OID_X509_COMMON_NAME),
        "Asha Patel"
    );
    assert_eq!(
        cert.subject().to_string(),
        "O=Cardgate Lab, OU=People, serialNumber=555000111222, CN=Asha Patel"
    );
    assert_eq!(cert.issuer(), parse(ca.certificate_der()).subject());
    assert!(signed_by_ca(
        &ca,
        cert.tbs_certificate.as_ref(),
        &cert.signature_value.data
    ));
    // A certificate from another CA does not verify against this one.
    let other = ca_for_contrast();
    assert!(!signed_by_ca(
        &other,
        cert.tbs_certificate.as_ref(),
        &cert.signature_value.data
    ));

    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth);
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature());
    assert!(!cert.is_ca());
}

fn ca_for_contrast() -> TestCa {
    TestCa::generate("Another CA").unwrap()
}

#[test]
fn every_slot_has_a_key_a_certificate_object_and_the_right_policy() {
    let ca = ca();
    let card = card(&ca, CardSpec::new("Asha Patel", "555000111222"));
    let mut serials = Vec::new();
    for slot in Slot::ALL {
        let key = &card.card.slots[&slot];
        assert_eq!(key.algorithm, KeyAlgorithm::EccP256);
        assert_eq!(key.pin_policy, slot.default_pin_policy());
        let object = &card.card.objects[&slot.certificate_object()].0;
        let elements = Tlv::parse_all(object).unwrap();
        let tags: Vec<Tag> = elements.iter().map(|t| t.tag).collect();
        assert_eq!(tags, vec![Tag(0x70), Tag(0x71), Tag(0xFE)], "{slot:?}");
        assert_eq!(elements[0].value, card.certificates[&slot].as_slice());
        assert_eq!(elements[1].value, &[0x00]);
        assert!(elements[2].value.is_empty());

        let cert = parse(&card.certificates[&slot]);
        assert!(signed_by_ca(
            &ca,
            cert.tbs_certificate.as_ref(),
            &cert.signature_value.data
        ));
        // The certificate's public key is the slot key's public key.
        let secret = p256::SecretKey::from_pkcs8_der(&key.private_key_pkcs8).unwrap();
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            secret.public_key().to_sec1_bytes().as_ref()
        );
        let ku = cert.key_usage().unwrap().unwrap().value;
        match slot {
            Slot::KeyManagement => assert!(ku.key_agreement() && !ku.digital_signature()),
            _ => assert!(ku.digital_signature()),
        }
        serials.push(cert.raw_serial().to_vec());
    }
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 4, "serial numbers are distinct");
    assert_eq!(
        card.card.slots[&Slot::Signature].pin_policy,
        PinPolicy::Always
    );

    let card_auth = parse(&card.certificates[&Slot::CardAuthentication]);
    assert_eq!(
        attribute(card_auth.subject(), &OID_X509_SERIALNUMBER),
        card.card.profile.card_serial
    );
}

use p256::pkcs8::DecodePrivateKey as _;

#[test]
fn rsa_cards_get_rsa_keys_matching_their_certificates() {
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::traits::PublicKeyParts as _;
    let ca = ca();
    let card = card(
        &ca,
        CardSpec::new("Ben Okafor", "555000333444").key_algorithm(KeyAlgorithm::Rsa2048),
    );
    for slot in Slot::ALL {
        let key = &card.card.slots[&slot];
        assert_eq!(key.algorithm, KeyAlgorithm::Rsa2048);
        let secret = rsa::RsaPrivateKey::from_pkcs8_der(&key.private_key_pkcs8).unwrap();
        assert_eq!(secret.size(), 256);
        let cert = parse(&card.certificates[&slot]);
        let Ok(PublicKey::RSA(public)) = cert.public_key().parsed() else {
            panic!("{slot:?} certificate has no RSA key");
        };
        assert_eq!(
            public
                .modulus
                .iter()
                .skip_while(|b| **b == 0)
                .copied()
                .collect::<Vec<_>>(),
            secret.n().to_bytes_be()
        );
        assert!(signed_by_ca(
            &ca,
            cert.tbs_certificate.as_ref(),
            &cert.signature_value.data
        ));
    }
    let km = parse(&card.certificates[&Slot::KeyManagement]);
    assert!(km.key_usage().unwrap().unwrap().value.key_encipherment());
}

fn not_after(card: &ProvisionedCard) -> OffsetDateTime {
    parse(&card.certificates[&Slot::Authentication])
        .validity()
        .not_after
        .to_datetime()
}

fn close(a: OffsetDateTime, b: OffsetDateTime) -> bool {
    (a - b).abs() < Duration::minutes(5)
}

#[test]
fn validity_variants_give_the_right_not_after() {
    let ca = ca();
    let now = OffsetDateTime::now_utc();
    let spec = || CardSpec::new("Asha Patel", "555000111222");

    let default = card(&ca, spec());
    assert!(close(not_after(&default), now + Duration::days(730)));

    let expired = card(&ca, spec().validity(Validity::Expired));
    assert!(not_after(&expired) < now);
    let cert_der = expired.certificates[&Slot::Authentication].clone();
    assert!(!parse(&cert_der).validity().is_valid());

    let soon = card(&ca, spec().validity(Validity::ExpiresInDays(30)));
    assert!(close(not_after(&soon), now + Duration::days(30)));
    assert!(
        parse(&soon.certificates[&Slot::Signature])
            .validity()
            .is_valid()
    );

    let not_before = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let explicit = card(
        &ca,
        spec().validity(Validity::Between {
            not_before,
            not_after: not_before + Duration::days(10),
        }),
    );
    assert_eq!(not_after(&explicit), not_before + Duration::days(10));

    // The CHUID's expiry follows the certificates'.
    let chuid = &soon.card.objects[&ObjectTag::CHUID].0;
    let elements = Tlv::parse_all(chuid).unwrap();
    let expiry = Tlv::find(&elements, Tag(0x35)).unwrap().value;
    assert_eq!(
        std::str::from_utf8(expiry).unwrap(),
        objects::yyyymmdd(not_after(&soon).date())
    );
}

#[test]
fn data_objects_parse_with_the_expected_tags() {
    let ca = ca();
    let card = card(
        &ca,
        CardSpec::new("Asha Patel", "555000111222").card_serial("4123456789"),
    );
    let tags_of = |tag: ObjectTag| -> Vec<Tag> {
        let object = &card.card.objects[&tag].0;
        Tlv::parse_all(object)
            .unwrap()
            .iter()
            .map(|t| t.tag)
            .collect()
    };
    assert_eq!(
        tags_of(ObjectTag::CHUID),
        vec![Tag(0x30), Tag(0x34), Tag(0x35), Tag(0x3E), Tag(0xFE)]
    );
    assert_eq!(
        tags_of(ObjectTag::PRINTED_INFORMATION),
        vec![
            Tag(0x01),
            Tag(0x02),
            Tag(0x04),
            Tag(0x05),
            Tag(0x06),
            Tag(0xFE)
        ]
    );
    assert_eq!(tags_of(ObjectTag::DISCOVERY), vec![Tag(0x4F), Tag(0x5F2F)]);
    let ccc = tags_of(ObjectTag::CCC);
    assert_eq!(ccc.first(), Some(&Tag(0xF0)));
    assert_eq!(ccc.last(), Some(&Tag(0xFE)));

    let chuid = &card.card.objects[&ObjectTag::CHUID].0;
    let elements = Tlv::parse_all(chuid).unwrap();
    assert_eq!(Tlv::find(&elements, Tag(0x30)).unwrap().value.len(), 25);
    assert_eq!(Tlv::find(&elements, Tag(0x34)).unwrap().value.len(), 16);

    let printed = &card.card.objects[&ObjectTag::PRINTED_INFORMATION].0;
    let elements = Tlv::parse_all(printed).unwrap();
    assert_eq!(
        Tlv::find(&elements, Tag(0x01)).unwrap().value,
        b"Asha Patel"
    );
    assert_eq!(Tlv::find(&elements, Tag(0x04)).unwrap().value.len(), 9);
    assert_eq!(
        Tlv::find(&elements, Tag(0x05)).unwrap().value,
        b"4123456789"
    );
    assert_eq!(card.card.atr, objects::ATR.to_vec());
}

#[test]
fn old_generation_and_tac_variants_are_recorded() {
    let ca = ca();
    let old = card(
        &ca,
        CardSpec::new("Asha Patel", "555000111222").old_generation(),
    );
    assert!(
        old.card.profile.card_serial.starts_with("01")
            || old.card.profile.card_serial.starts_with("02")
            || old.card.profile.card_serial.starts_with("03")
    );
    assert!(
        old.card
            .profile
            .notes
            .iter()
            .any(|n| n.contains("old-generation")),
        "{:?}",
        old.card.profile.notes
    );
    let explicit = card(
        &ca,
        CardSpec::new("Asha Patel", "555000111222").card_serial("0212345678"),
    );
    assert!(
        explicit
            .card
            .profile
            .notes
            .iter()
            .any(|n| n.contains("old-generation"))
    );

    let new = card(&ca, CardSpec::new("Asha Patel", "555000111222"));
    assert!(
        !new.card
            .profile
            .notes
            .iter()
            .any(|n| n.contains("old-generation"))
    );

    let tac = card(
        &ca,
        CardSpec::new("", "555000999888")
            .temporary_access()
            .pin_tries(5),
    );
    assert_eq!(tac.card.profile.kind, CardKind::TemporaryAccess);
    assert_eq!(tac.card.pin.max_tries, 5);
    assert_eq!(tac.card.pin.tries_left, 5);
    let cert = parse(&tac.certificates[&Slot::Authentication]);
    assert_eq!(
        attribute(cert.subject(), &OID_X509_COMMON_NAME),
        "Temporary Access Card"
    );
    assert_eq!(
        attribute(cert.subject(), &OID_X509_SERIALNUMBER),
        "555000999888"
    );
}

#[test]
fn pin_puk_and_management_key_are_stored_as_given() {
    let ca = ca();
    let card = card(
        &ca,
        CardSpec::new("Asha Patel", "555000111222")
            .pin("7391")
            .puk("80264513")
            .management_key(&[7; 16]),
    );
    assert_eq!(card.card.pin.value.as_str(), "7391");
    assert_eq!(card.card.pin.max_tries, 3);
    assert_eq!(card.card.puk.value.as_str(), "80264513");
    assert_eq!(card.card.management_key.key.as_slice(), &[7; 16]);
    let random = provision(&ca, &CardSpec::new("Asha Patel", "555000111222")).unwrap();
    assert_eq!(random.card.management_key.key.len(), 16);
    assert_ne!(random.card.management_key.key.as_slice(), &[0; 16]);
}

#[test]
fn crl_lists_the_revoked_serials_and_is_signed_by_the_ca() {
    let ca = ca();
    let revoked_card = card(&ca, CardSpec::new("Asha Patel", "555000111222"));
    let kept_card = card(&ca, CardSpec::new("Ben Okafor", "555000333444"));
    let revoked = RevokedCard::all_of(&revoked_card.card, OffsetDateTime::now_utc()).unwrap();
    assert_eq!(revoked.len(), 4);

    let der = ca.crl_der(&revoked, 7).unwrap();
    let (rest, crl) = parse_x509_crl(&der).unwrap();
    assert!(rest.is_empty());
    let listed: Vec<Vec<u8>> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect();
    for cert in revoked_card.certificates.values() {
        assert!(listed.contains(&parse(cert).raw_serial().to_vec()));
    }
    for cert in kept_card.certificates.values() {
        assert!(!listed.contains(&parse(cert).raw_serial().to_vec()));
    }
    assert_eq!(crl.issuer(), parse(ca.certificate_der()).subject());
    assert!(signed_by_ca(
        &ca,
        crl.tbs_cert_list.as_ref(),
        &crl.signature_value.data
    ));
    let next = crl.next_update().unwrap().to_datetime();
    assert!(close(next, OffsetDateTime::now_utc() + Duration::days(7)));

    let empty = ca.crl_der(&[], 1).unwrap();
    assert_eq!(
        parse_x509_crl(&empty)
            .unwrap()
            .1
            .iter_revoked_certificates()
            .count(),
        0
    );

    let now = OffsetDateTime::now_utc();
    let stale = ca
        .crl_der_between(&[], now - Duration::days(10), now - Duration::days(3))
        .unwrap();
    assert!(
        parse_x509_crl(&stale)
            .unwrap()
            .1
            .next_update()
            .unwrap()
            .to_datetime()
            < now
    );
    assert!(matches!(
        ca.crl_der_between(&[], now, now),
        Err(ProvisionError::InvalidCrlWindow)
    ));
}

#[test]
fn ca_saves_loads_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    ca.save(dir.path()).unwrap();
    let key_mode = std::fs::metadata(dir.path().join("ca.key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let loaded = TestCa::load(dir.path()).unwrap();
    assert_eq!(loaded.certificate_der(), ca.certificate_der());
    assert_eq!(loaded.organisation(), "Cardgate Lab");
    assert!(
        ca.certificate_pem()
            .starts_with("-----BEGIN CERTIFICATE-----\n")
    );
    // The loaded CA signs certificates that verify against the saved certificate.
    let card = card(&loaded, CardSpec::new("Asha Patel", "555000111222"));
    let cert = parse(&card.certificates[&Slot::Authentication]);
    assert!(signed_by_ca(
        &ca,
        cert.tbs_certificate.as_ref(),
        &cert.signature_value.data
    ));

    assert!(matches!(
        ca_for_contrast().save(dir.path()),
        Err(ProvisionError::CaExists { .. })
    ));
    assert_eq!(
        TestCa::load(dir.path()).unwrap().certificate_der(),
        ca.certificate_der()
    );

    // A key that does not belong to the certificate is refused.
    let other = tempfile::tempdir().unwrap();
    ca_for_contrast().save(other.path()).unwrap();
    std::fs::copy(
        other.path().join("ca.key.pem"),
        dir.path().join("ca.key.pem"),
    )
    .unwrap();
    assert!(matches!(
        TestCa::load(dir.path()),
        Err(ProvisionError::CaInvalid { .. })
    ));
    let missing = tempfile::tempdir().unwrap();
    assert!(matches!(
        TestCa::load(missing.path()),
        Err(ProvisionError::CaIo { .. })
    ));
}

#[test]
fn revocation_register_skips_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let card = card(&ca, CardSpec::new("Asha Patel", "555000111222"));
    let revoked = RevokedCard::all_of(&card.card, OffsetDateTime::now_utc()).unwrap();
    use cardgate_vcard::provision::{load_revocations, record_revocations};
    assert!(load_revocations(dir.path()).unwrap().is_empty());
    assert_eq!(record_revocations(dir.path(), &revoked).unwrap(), 4);
    assert_eq!(record_revocations(dir.path(), &revoked).unwrap(), 0);
    let register = load_revocations(dir.path()).unwrap();
    assert_eq!(register.len(), 4);
    assert_eq!(register[0].holder_uuid, "555000111222");
}
