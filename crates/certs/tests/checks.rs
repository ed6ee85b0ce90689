//! Certificate checks on cards made by the real provisioning code: validity, the 90/30/7-day
//! warnings and renewal paths, the old-generation rule, the chain to the issuing CA, key
//! usage and the holder UUID.

#![allow(clippy::unwrap_used)]

mod common;

use cardgate_certs::{
    CertsError, ChainProblem, ChainStatus, CheckPolicy, CrlFreshness, ExpiryWarning, FindingKind,
    KeyUsageProblem, KeyUsageStatus, NewCardReason, RenewalPath, Revocation, RevocationUnknown,
    Severity, TrustAnchors, Validity, Verdict, check_card_certificate,
};
use cardgate_vcard::card_file::Slot;
use cardgate_vcard::provision::Validity as CardValidity;
use common::{Card, NAME, UUID, anchors, ca, card, check, check_at, empty_crl, spec};
use time::{Duration, OffsetDateTime};

#[test]
fn a_valid_card_is_usable_and_says_who_holds_it() {
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let card = card(&ca, spec());
    let crl = empty_crl(&ca, &trust);
    let report = check(&card, &trust, Some(&crl));

    assert_eq!(report.holder_uuid.as_deref(), Some(UUID));
    assert_eq!(report.holder_name.as_deref(), Some(NAME));
    assert_eq!(report.card_serial, card.serial);
    assert!(!report.old_generation);
    assert_eq!(report.validity, Validity::Valid { days_left: 730 });
    assert_eq!(report.expiry_warning, ExpiryWarning::None);
    assert!(
        matches!(&report.chain, ChainStatus::Verified { anchor } if anchor.contains("Cardgate Test CA")),
        "{:?}",
        report.chain
    );
    assert_eq!(report.key_usage, KeyUsageStatus::Suitable);
    assert!(
        matches!(
            report.revocation,
            Revocation::Good {
                freshness: CrlFreshness::Fresh,
                ..
            }
        ),
        "{:?}",
        report.revocation
    );
    assert!(
        matches!(report.renewal, RenewalPath::NotYetDue { opens } if opens == report.not_after - Duration::days(90))
    );
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.verdict(), Verdict::Usable);

    // The serial is the one the CRL and the RA know, as hex.
    let (_, parsed) = x509_parser::parse_x509_certificate(&card.auth).unwrap();
    let expected: String = parsed
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(report.certificate_serial, expected);
}

#[test]
fn expiring_cards_get_the_right_warning_and_renewal_path() {
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let crl = empty_crl(&ca, &trust);
    for (days, warning, sponsor) in [
        (100, ExpiryWarning::None, false),
        (80, ExpiryWarning::Within90, false),
        (25, ExpiryWarning::Within30, true),
        (5, ExpiryWarning::Within7, true),
    ] {
        let card = card(&ca, spec().validity(CardValidity::ExpiresInDays(days)));
        let report = check(&card, &trust, Some(&crl));
        assert_eq!(
            report.validity,
            Validity::Valid { days_left: days },
            "{days}"
        );
        assert_eq!(report.expiry_warning, warning, "{days} days");
        match (days, report.renewal) {
            (100, RenewalPath::NotYetDue { .. }) => {
                assert_eq!(report.verdict(), Verdict::Usable);
                continue;
            }
            (80, RenewalPath::SelfService { until })
            | (25 | 5, RenewalPath::SelfServiceOrSponsor { until }) => {
                assert_eq!(until, report.not_after);
            }
            (_, other) => panic!("{days} days: renewal {other:?}"),
        }
        let Verdict::UsableWithWarning { warnings } = report.verdict() else {
            panic!("{days} days: {:?}", report.verdict());
        };
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let warning_finding = &warnings[0];
        assert_eq!(warning_finding.kind, FindingKind::ExpiresSoon(warning));
        assert!(
            warning_finding.message.contains(&format!("in {days} days")),
            "{}",
            warning_finding.message
        );
        assert!(
            warning_finding.next_step.contains("yourself"),
            "{}",
            warning_finding.next_step
        );
        assert_eq!(
            warning_finding.next_step.contains("Sponsor"),
            sponsor,
            "{days} days: {}",
            warning_finding.next_step
        );
    }
}

#[test]
fn warning_thresholds_fall_exactly_at_90_30_and_7_days() {
    // Time is the caller's: one default card checked at chosen instants.
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let card = card(&ca, spec());
    let not_after = check(&card, &trust, None).not_after;
    let policy = CheckPolicy::default().danger_accept_unknown_revocation();
    for (days, at, just_before) in [
        (90, ExpiryWarning::Within90, ExpiryWarning::None),
        (30, ExpiryWarning::Within30, ExpiryWarning::Within90),
        (7, ExpiryWarning::Within7, ExpiryWarning::Within30),
    ] {
        let boundary = not_after - Duration::days(days);
        let report = check_at(&card, &trust, None, boundary, &policy);
        assert_eq!(report.expiry_warning, at, "exactly {days} days before");
        assert_eq!(
            report.validity,
            Validity::Valid {
                days_left: u32::try_from(days).unwrap()
            }
        );
        let report = check_at(
            &card,
            &trust,
            None,
            boundary - Duration::seconds(1),
            &policy,
        );
        assert_eq!(
            report.expiry_warning, just_before,
            "a second before {days} days"
        );
    }
    // Its last second is still valid ("today"), three hours before is "in 1 day"; the second
    // after is expired.
    let report = check_at(&card, &trust, None, not_after, &policy);
    assert_eq!(report.validity, Validity::Valid { days_left: 0 });
    let report = check_at(&card, &trust, None, not_after - Duration::hours(3), &policy);
    assert_eq!(report.validity, Validity::Valid { days_left: 1 });
    let report = check_at(
        &card,
        &trust,
        None,
        not_after + Duration::seconds(1),
        &policy,
    );
    assert_eq!(report.validity, Validity::Expired { since: not_after });
}

#[test]
fn an_expired_card_is_unusable_and_sends_the_holder_to_the_ra_in_person() {
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let crl = empty_crl(&ca, &trust);
    let card = card(&ca, spec().validity(CardValidity::Expired));
    let report = check(&card, &trust, Some(&crl));
    assert!(
        matches!(report.validity, Validity::Expired { since } if since == report.not_after),
        "{:?}",
        report.validity
    );
    assert_eq!(report.expiry_warning, ExpiryWarning::None);
    assert_eq!(report.renewal, RenewalPath::RaInPerson);
    // The chain still verifies: it is a genuine card, only out of date.
    assert!(matches!(report.chain, ChainStatus::Verified { .. }));
    let Verdict::Unusable { reason } = report.verdict() else {
        panic!("{:?}", report.verdict());
    };
    assert_eq!(reason.kind, FindingKind::Expired);
    assert!(reason.message.contains("expired on"), "{}", reason.message);
    assert!(
        reason.next_step.contains("Registration Authority")
            && reason.next_step.contains("in person"),
        "{}",
        reason.next_step
    );
}

#[test]
fn a_card_not_yet_valid_is_unusable_but_a_few_minutes_of_clock_skew_are_tolerated() {
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let crl = empty_crl(&ca, &trust);
    let now = OffsetDateTime::now_utc();
    let later = card(
        &ca,
        spec().validity(CardValidity::Between {
            not_before: now + Duration::days(2),
            not_after: now + Duration::days(700),
        }),
    );
    let report = check(&later, &trust, Some(&crl));
    assert!(
        matches!(report.validity, Validity::NotYetValid { from } if from == report.not_before),
        "{:?}",
        report.validity
    );
    let Verdict::Unusable { reason } = report.verdict() else {
        panic!("{:?}", report.verdict());
    };
    assert_eq!(reason.kind, FindingKind::NotYetValid);
    assert!(reason.next_step.contains("clock"), "{}", reason.next_step);

    let skewed = card(
        &ca,
        spec().validity(CardValidity::Between {
            not_before: now + Duration::minutes(2),
            not_after: now + Duration::days(700),
        }),
    );
    let report = check(&skewed, &trust, Some(&crl));
    assert!(
        matches!(report.validity, Validity::Valid { .. }),
        "{:?}",
        report.validity
    );
    let strict = CheckPolicy::default().with_clock_tolerance(Duration::ZERO);
    let report = check_at(&skewed, &trust, Some(&crl), now, &strict);
    assert!(matches!(report.validity, Validity::NotYetValid { .. }));
}

#[test]
fn an_old_generation_card_cannot_be_renewed_or_unlocked_and_the_holder_is_sent_to_the_ra() {
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let crl = empty_crl(&ca, &trust);
    let old = card(&ca, spec().old_generation());
    assert!(
        ["01", "02", "03"].contains(&&old.serial[..2]),
        "{}",
        old.serial
    );
    let report = check(&old, &trust, Some(&crl));
    assert!(report.old_generation);
    assert_eq!(
        report.renewal,
        RenewalPath::NewCardFromRa {
            why: NewCardReason::OldGeneration
        }
    );
    // Still a working card today: usable, with the warning at every insertion.
    let Verdict::UsableWithWarning { warnings } = report.verdict() else {
        panic!("{:?}", report.verdict());
    };
    let finding = &warnings[0];
    assert_eq!(finding.kind, FindingKind::OldGeneration);
    assert!(
        finding.message.contains("cannot be renewed"),
        "{}",
        finding.message
    );
    assert!(
        finding.message.contains("cannot be unlocked"),
        "{}",
        finding.message
    );
    assert!(
        finding.message.contains(&old.serial[..2]),
        "{}",
        finding.message
    );
    assert!(
        finding.next_step.contains("Registration Authority")
            && finding.next_step.contains("new card"),
        "{}",
        finding.next_step
    );

    // Expiring soon: not "ask your Sponsor" (they cannot), but "get a new card".
    let soon = card(
        &ca,
        spec()
            .old_generation()
            .validity(CardValidity::ExpiresInDays(20)),
    );
    let report = check(&soon, &trust, Some(&crl));
    let expiring = report
        .finding(FindingKind::ExpiresSoon(ExpiryWarning::Within30))
        .unwrap();
    assert!(
        !expiring.next_step.contains("Sponsor"),
        "{}",
        expiring.next_step
    );
    assert!(
        expiring.next_step.contains("new card"),
        "{}",
        expiring.next_step
    );

    // Expired: a new card, not a renewal visit.
    let expired = card(&ca, spec().old_generation().validity(CardValidity::Expired));
    let report = check(&expired, &trust, Some(&crl));
    let Verdict::Unusable { reason } = report.verdict() else {
        panic!("{:?}", report.verdict());
    };
    assert_eq!(reason.kind, FindingKind::Expired);
    assert!(
        reason.next_step.contains("new card"),
        "{}",
        reason.next_step
    );

    // Every old-generation prefix, and none of the others.
    for serial in ["0100000001", "0299999999", "0312345678"] {
        let report = check_card_certificate(
            &old.auth,
            &trust,
            Some(&crl),
            serial,
            OffsetDateTime::now_utc(),
            &CheckPolicy::default(),
        )
        .unwrap();
        assert!(report.old_generation, "{serial}");
    }
    for serial in ["0412345678", "1012345678", "4123456789", "3012345678"] {
        let report = check_card_certificate(
            &old.auth,
            &trust,
            Some(&crl),
            serial,
            OffsetDateTime::now_utc(),
            &CheckPolicy::default(),
        )
        .unwrap();
        assert!(!report.old_generation, "{serial}");
    }
}

#[test]
fn a_card_from_another_ca_fails_the_chain() {
    let ours = ca("Cardgate Test CA");
    let theirs = ca("Some Other CA");
    let trust = anchors(&[&ours]);
    let crl = empty_crl(&ours, &trust);
    let foreign = card(&theirs, spec());
    let report = check(&foreign, &trust, Some(&crl));
    assert!(
        matches!(&report.chain, ChainStatus::NotVerified { problem: ChainProblem::UnknownIssuer { issuer } } if issuer.contains("Some Other CA")),
        "{:?}",
        report.chain
    );
    assert_eq!(
        report.revocation,
        Revocation::Unknown {
            why: RevocationUnknown::ChainNotVerified
        }
    );
    let Verdict::Unusable { reason } = report.verdict() else {
        panic!("{:?}", report.verdict());
    };
    assert_eq!(reason.kind, FindingKind::ChainNotVerified);
    assert!(
        reason.message.contains("not issued by"),
        "{}",
        reason.message
    );
    // Only one blocking finding: the chain. No second "could not check cancellation" noise.
    assert!(report.finding(FindingKind::RevocationUnknown).is_none());
}

#[test]
fn an_impostor_ca_with_the_same_name_fails_on_the_signature() {
    let ours = ca("Cardgate Test CA");
    let impostor = ca("Cardgate Test CA");
    let trust = anchors(&[&ours]);
    let forged = card(&impostor, spec());
    let report = check(&forged, &trust, None);
    assert!(
        matches!(
            report.chain,
            ChainStatus::NotVerified {
                problem: ChainProblem::BadSignature { .. }
            }
        ),
        "{:?}",
        report.chain
    );
    assert_eq!(
        report.verdict(),
        Verdict::Unusable {
            reason: report
                .finding(FindingKind::ChainNotVerified)
                .unwrap()
                .clone()
        }
    );
}

#[test]
fn any_of_several_anchors_may_have_issued_the_card() {
    let old_ca = ca("Cardgate Test CA 2019");
    let new_ca = ca("Cardgate Test CA 2024");
    let trust = anchors(&[&old_ca, &new_ca]);
    for (ca, name) in [(&old_ca, "2019"), (&new_ca, "2024")] {
        let report = check(&card(ca, spec()), &trust, None);
        assert!(
            matches!(&report.chain, ChainStatus::Verified { anchor } if anchor.contains(name)),
            "{:?}",
            report.chain
        );
    }
}

fn flipped(der: &[u8], index: usize) -> Vec<u8> {
    let mut der = der.to_vec();
    der[index] ^= 0x01;
    der
}

#[test]
fn a_tampered_certificate_fails_the_chain_and_does_not_panic() {
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let card = card(&ca, spec());

    // The last byte is inside the signature value.
    let tampered = Card {
        auth: flipped(&card.auth, card.auth.len() - 1),
        serial: card.serial.clone(),
        provisioned: card.provisioned.clone(),
    };
    let report = check(&tampered, &trust, None);
    assert!(
        matches!(
            report.chain,
            ChainStatus::NotVerified {
                problem: ChainProblem::BadSignature { .. }
            }
        ),
        "{:?}",
        report.chain
    );

    // A changed name ("Asha" -> "Asia") keeps the DER valid but breaks the signature.
    let at = card.auth.windows(4).position(|w| w == b"Asha").unwrap();
    let mut renamed = card.auth.clone();
    renamed[at + 2] = b'i';
    let renamed = Card {
        auth: renamed,
        serial: card.serial.clone(),
        provisioned: card.provisioned.clone(),
    };
    let report = check(&renamed, &trust, None);
    assert_eq!(report.holder_name.as_deref(), Some("Asia Patel"));
    let Verdict::Unusable { reason } = report.verdict() else {
        panic!("{:?}", report.verdict());
    };
    assert_eq!(reason.kind, FindingKind::ChainNotVerified);
    assert!(
        reason.message.contains("security check"),
        "{}",
        reason.message
    );
}

#[test]
fn only_the_authentication_certificate_is_fit_for_login() {
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let card = card(&ca, spec());
    let crl = empty_crl(&ca, &trust);
    let check_slot = |slot: Slot| {
        check_card_certificate(
            &card.provisioned.certificates[&slot],
            &trust,
            Some(&crl),
            &card.serial,
            OffsetDateTime::now_utc(),
            &CheckPolicy::default(),
        )
        .unwrap()
    };

    // 9D, key management (ECC: keyAgreement only): may not sign a handshake.
    let report = check_slot(Slot::KeyManagement);
    assert_eq!(
        report.key_usage,
        KeyUsageStatus::Unsuitable {
            problem: KeyUsageProblem::NoDigitalSignature
        }
    );
    assert_eq!(
        report
            .finding(FindingKind::KeyUsageUnsuitable)
            .unwrap()
            .severity,
        Severity::Blocking
    );

    // 9C, digital signature: digitalSignature and no EKU, so suitable by the rule.
    assert_eq!(
        check_slot(Slot::Signature).key_usage,
        KeyUsageStatus::Suitable
    );

    // 9E, card authentication: its serialNumber is the card number, not a 12-digit UUID.
    let report = check_slot(Slot::CardAuthentication);
    assert_eq!(report.holder_uuid, None);
    let Verdict::Unusable { reason } = report.verdict() else {
        panic!("{:?}", report.verdict());
    };
    assert_eq!(reason.kind, FindingKind::NoHolderUuid);
}

#[test]
fn a_bad_card_serial_is_an_error_naming_it() {
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let card = card(&ca, spec());
    for bad in ["", "41234A6789", "012345678901234567890", " 4123456789"] {
        let e = check_card_certificate(
            &card.auth,
            &trust,
            None,
            bad,
            OffsetDateTime::now_utc(),
            &CheckPolicy::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&e, CertsError::InvalidCardSerial { serial, .. } if serial == bad),
            "{e}"
        );
    }
}

#[test]
fn trust_anchors_come_from_pem_and_refuse_what_is_not_a_ca() {
    let one = ca("Cardgate Test CA");
    let two = ca("Cardgate Test CA 2");
    let pem = format!("{}{}", one.certificate_pem(), two.certificate_pem());
    let trust = TrustAnchors::from_pem(pem.as_bytes()).unwrap();
    assert_eq!(trust.len(), 2);
    let subjects: Vec<&str> = trust.iter().map(|a| a.subject()).collect();
    assert!(subjects[0].contains("CN=Cardgate Test CA"), "{subjects:?}");
    assert_eq!(trust.iter().next().unwrap().der(), one.certificate_der());

    let card = card(&one, spec());
    let e = TrustAnchors::from_der([card.auth.as_slice()]).unwrap_err();
    assert!(matches!(e, CertsError::AnchorNotCa { .. }), "{e}");
    assert!(e.to_string().contains("not a certificate authority"), "{e}");

    let e = TrustAnchors::from_der(std::iter::empty::<&[u8]>()).unwrap_err();
    assert!(matches!(e, CertsError::NoTrustAnchors), "{e}");
    let e = TrustAnchors::from_pem(b"").unwrap_err();
    assert!(matches!(e, CertsError::NoTrustAnchors), "{e}");

    let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let e =
        TrustAnchors::from_pem(format!("{}{key}", one.certificate_pem()).as_bytes()).unwrap_err();
    assert!(
        matches!(&e, CertsError::MalformedPem { detail, .. } if detail.contains("PRIVATE KEY")),
        "{e}"
    );
}
