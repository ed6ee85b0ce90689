//! Revocation: CRLs from the test CA, verified on the way in; revoked cards; CRLs from the
//! wrong CA; stale CRLs and the policy that decides about them; the rollback-proof cache.

#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use cardgate_certs::{
    CertsError, CheckPolicy, Crl, CrlCache, CrlFreshness, CrlUpdate, FindingKind, NewCardReason,
    RenewalPath, Revocation, RevocationReason, RevocationUnknown, Severity, Verdict,
};
use cardgate_vcard::provision::{RevokedCard, TestCa};
use common::{anchors, ca, card, check, check_at, empty_crl, spec};
use time::{Duration, OffsetDateTime};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn crl_between(ca: &TestCa, revoked: &[RevokedCard], from: Duration, to: Duration) -> Vec<u8> {
    let now = now();
    ca.crl_der_between(revoked, now + from, now + to).unwrap()
}

#[test]
fn a_revoked_card_is_unusable_with_the_date_and_never_comes_back() {
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let lost = card(&ca, spec());
    let other = card(&ca, common::spec_for("Ben Okafor", "555000333444"));
    let revoked_at = (now() - Duration::days(3)).replace_nanosecond(0).unwrap();
    let revoked = RevokedCard::all_of(&lost.provisioned.card, revoked_at).unwrap();
    let crl = Crl::from_der(&ca.crl_der(&revoked, 7).unwrap(), &trust).unwrap();
    assert_eq!(crl.revoked_count(), 4, "every certificate of the card");

    let report = check(&lost, &trust, Some(&crl));
    assert_eq!(
        report.revocation,
        Revocation::Revoked {
            since: revoked_at,
            reason: Some(RevocationReason::CessationOfOperation),
        }
    );
    assert_eq!(
        report.renewal,
        RenewalPath::NewCardFromRa {
            why: NewCardReason::Revoked
        }
    );
    let Verdict::Unusable { reason } = report.verdict() else {
        panic!("{:?}", report.verdict());
    };
    assert_eq!(reason.kind, FindingKind::Revoked);
    let day = revoked_at.day().to_string();
    assert!(
        reason.message.contains("cancelled on") && reason.message.contains(&day),
        "{}",
        reason.message
    );
    assert!(
        reason.message.contains("(reason: no longer needed)"),
        "{}",
        reason.message
    );
    assert!(reason.next_step.contains("never"), "{}", reason.next_step);
    assert!(
        reason.next_step.contains("new card"),
        "{}",
        reason.next_step
    );

    // Another holder's card from the same CA is fine.
    let report = check(&other, &trust, Some(&crl));
    assert!(matches!(report.revocation, Revocation::Good { .. }));
    assert_eq!(report.verdict(), Verdict::Usable);

    // Even a long-stale CRL proves a cancellation: it is never undone.
    let stale = Crl::from_der(
        &crl_between(&ca, &revoked, -Duration::days(40), -Duration::days(30)),
        &trust,
    )
    .unwrap();
    let report = check(&lost, &trust, Some(&stale));
    assert!(
        matches!(report.revocation, Revocation::Revoked { .. }),
        "{:?}",
        report.revocation
    );
}

#[test]
fn a_crl_from_a_ca_we_do_not_trust_is_refused() {
    let ours = ca("Cardgate Test CA");
    let theirs = ca("Some Other CA");
    let trust = anchors(&[&ours]);
    let e = Crl::from_der(&theirs.crl_der(&[], 7).unwrap(), &trust).unwrap_err();
    assert!(
        matches!(&e, CertsError::CrlIssuerNotTrusted { issuer } if issuer.contains("Some Other CA")),
        "{e}"
    );
}

#[test]
fn a_crl_forged_under_our_ca_name_is_refused() {
    let ours = ca("Cardgate Test CA");
    let impostor = ca("Cardgate Test CA");
    let trust = anchors(&[&ours]);
    let e = Crl::from_der(&impostor.crl_der(&[], 7).unwrap(), &trust).unwrap_err();
    assert!(matches!(e, CertsError::CrlSignatureInvalid { .. }), "{e}");
    assert!(e.to_string().contains("forged"), "{e}");
}

#[test]
fn a_crl_of_another_trusted_ca_does_not_count_for_this_card() {
    let ca_a = ca("Cardgate Test CA A");
    let ca_b = ca("Cardgate Test CA B");
    let trust = anchors(&[&ca_a, &ca_b]);
    let card_a = card(&ca_a, spec());
    let crl_b = empty_crl(&ca_b, &trust);
    let report = check(&card_a, &trust, Some(&crl_b));
    assert!(
        matches!(
            &report.revocation,
            Revocation::Unknown { why: RevocationUnknown::CrlFromAnotherIssuer { crl_issuer, .. } }
                if crl_issuer.contains("CA B")
        ),
        "{:?}",
        report.revocation
    );
    let Verdict::Unusable { reason } = report.verdict() else {
        panic!("{:?}", report.verdict());
    };
    assert_eq!(reason.kind, FindingKind::RevocationUnknown);
    assert!(
        reason.message.contains("another authority"),
        "{}",
        reason.message
    );
}

#[test]
fn a_stale_crl_within_grace_still_counts_and_tells_it_support() {
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let card = card(&ca, spec());
    let stale = Crl::from_der(
        &crl_between(&ca, &[], -Duration::days(8), -Duration::days(1)),
        &trust,
    )
    .unwrap();
    let report = check(&card, &trust, Some(&stale));
    assert!(
        matches!(
            report.revocation,
            Revocation::Good {
                freshness: CrlFreshness::StaleWithinGrace { overdue_by, .. },
                ..
            } if overdue_by > Duration::hours(23) && overdue_by < Duration::hours(25)
        ),
        "{:?}",
        report.revocation
    );
    let finding = report.finding(FindingKind::CrlStale).unwrap();
    assert_eq!(finding.severity, Severity::Info);
    assert!(
        finding.next_step.contains("IT support"),
        "{}",
        finding.next_step
    );
    // Info is for the log: the holder is not interrupted.
    assert_eq!(report.verdict(), Verdict::Usable);
}

#[test]
fn a_crl_beyond_grace_makes_revocation_unknown_and_the_policy_decides() {
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let card = card(&ca, spec());
    let old = Crl::from_der(
        &crl_between(&ca, &[], -Duration::days(12), -Duration::days(5)),
        &trust,
    )
    .unwrap();

    // Default: three days' grace, then refuse, saying why and that the card is not at fault.
    let report = check(&card, &trust, Some(&old));
    let Revocation::Unknown {
        why:
            RevocationUnknown::CrlTooOld {
                next_update,
                overdue_by,
                grace,
            },
    } = report.revocation
    else {
        panic!("{:?}", report.revocation);
    };
    assert_eq!(next_update, old.next_update());
    assert!(overdue_by > Duration::days(4), "{overdue_by}");
    assert_eq!(grace, Duration::days(3));
    let Verdict::Unusable { reason } = report.verdict() else {
        panic!("{:?}", report.verdict());
    };
    assert_eq!(reason.kind, FindingKind::RevocationUnknown);
    assert!(reason.message.contains("out of date"), "{}", reason.message);
    assert!(reason.message.contains("5 days ago"), "{}", reason.message);
    assert!(
        reason.next_step.contains("not at fault") && reason.next_step.contains("IT support"),
        "{}",
        reason.next_step
    );

    // A site that accepts the risk keeps dispensing, with the warning shown.
    let lenient = CheckPolicy::default().danger_accept_unknown_revocation();
    let report = check_at(&card, &trust, Some(&old), now(), &lenient);
    let Verdict::UsableWithWarning { warnings } = report.verdict() else {
        panic!("{:?}", report.verdict());
    };
    assert_eq!(warnings[0].kind, FindingKind::RevocationUnknown);

    // A longer grace makes the same CRL count again.
    let patient = CheckPolicy::default().with_crl_grace(Duration::days(7));
    let report = check_at(&card, &trust, Some(&old), now(), &patient);
    assert!(
        matches!(
            report.revocation,
            Revocation::Good {
                freshness: CrlFreshness::StaleWithinGrace { .. },
                ..
            }
        ),
        "{:?}",
        report.revocation
    );
}

#[test]
fn an_expired_card_is_not_also_blamed_on_the_crl() {
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let expired = card(
        &ca,
        spec().validity(cardgate_vcard::provision::Validity::Expired),
    );
    let report = check(&expired, &trust, None);
    assert_eq!(
        report.revocation,
        Revocation::Unknown {
            why: RevocationUnknown::NoCrl
        }
    );
    let kinds: Vec<FindingKind> = report.findings.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FindingKind::Expired]);
}

#[test]
fn freshness_is_judged_at_the_callers_time() {
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let card = card(&ca, spec());
    let crl = empty_crl(&ca, &trust);
    let policy = CheckPolicy::default();
    let at = |t| check_at(&card, &trust, Some(&crl), t, &policy).revocation;
    let next = crl.next_update();
    assert!(matches!(
        at(next),
        Revocation::Good {
            freshness: CrlFreshness::Fresh,
            ..
        }
    ));
    assert!(matches!(
        at(next + Duration::days(3)),
        Revocation::Good {
            freshness: CrlFreshness::StaleWithinGrace { .. },
            ..
        }
    ));
    assert!(matches!(
        at(next + Duration::days(3) + Duration::seconds(1)),
        Revocation::Unknown {
            why: RevocationUnknown::CrlTooOld { .. }
        }
    ));
    // A CRL issued "tomorrow" means this computer's clock is behind.
    assert!(matches!(
        at(crl.this_update() - Duration::hours(1)),
        Revocation::Unknown {
            why: RevocationUnknown::CrlFromTheFuture { .. }
        }
    ));
}

#[test]
fn no_crl_is_unknown_and_the_policy_decides() {
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let card = card(&ca, spec());
    let report = check(&card, &trust, None);
    assert_eq!(
        report.revocation,
        Revocation::Unknown {
            why: RevocationUnknown::NoCrl
        }
    );
    assert!(matches!(report.verdict(), Verdict::Unusable { .. }));
    let lenient = CheckPolicy::default().danger_accept_unknown_revocation();
    let report = check_at(&card, &trust, None, now(), &lenient);
    assert!(matches!(
        report.verdict(),
        Verdict::UsableWithWarning { .. }
    ));
}

#[test]
fn a_pem_crl_is_read_as_well_as_der() {
    let ca = ca("Cardgate Test CA");
    let trust = anchors(&[&ca]);
    let der = ca.crl_der(&[], 7).unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(&der);
    let pem = format!("-----BEGIN X509 CRL-----\n{body}\n-----END X509 CRL-----\n");
    let from_pem = Crl::from_pem(pem.as_bytes(), &trust).unwrap();
    assert_eq!(from_pem, Crl::from_der(&der, &trust).unwrap());
    let e = Crl::from_pem(ca.certificate_pem().as_bytes(), &trust).unwrap_err();
    assert!(matches!(e, CertsError::MalformedPem { .. }), "{e}");
}

#[test]
fn the_cache_keeps_the_newest_crl_and_refuses_a_rollback() {
    let ca = ca("Cardgate Test CA");
    let other = common::ca("Cardgate Other CA");
    let trust = anchors(&[&ca, &other]);
    let card = card(&ca, spec());
    // Issued in this order, so the CRL numbers (seconds since the epoch) never go backwards.
    let older = Crl::from_der(
        &crl_between(&ca, &[], -Duration::days(2), Duration::days(5)),
        &trust,
    )
    .unwrap();
    let revoked = RevokedCard::all_of(&card.provisioned.card, now()).unwrap();
    let newer = Crl::from_der(&ca.crl_der(&revoked, 7).unwrap(), &trust).unwrap();

    let mut cache = CrlCache::new();
    assert!(cache.for_certificate(&card.auth).is_none());
    assert_eq!(cache.offer(older.clone()).unwrap(), CrlUpdate::Added);
    assert_eq!(cache.offer(older.clone()).unwrap(), CrlUpdate::Unchanged);
    assert_eq!(
        cache.offer(newer.clone()).unwrap(),
        CrlUpdate::Replaced {
            previous_this_update: older.this_update()
        }
    );
    // Replaying yesterday's CRL must not un-revoke the card.
    let e = cache.offer(older.clone()).unwrap_err();
    assert!(matches!(e, CertsError::CrlRollback { .. }), "{e}");
    let held = cache.for_certificate(&card.auth).unwrap();
    assert_eq!(held, &newer);
    let report = check(&card, &trust, Some(held));
    assert!(matches!(report.revocation, Revocation::Revoked { .. }));

    // Another issuer gets its own slot; a card of neither finds nothing.
    assert_eq!(
        cache.offer(empty_crl(&other, &trust)).unwrap(),
        CrlUpdate::Added
    );
    assert_eq!(cache.iter().count(), 2);
    let stranger = card_of(&common::ca("Unrelated CA"));
    assert!(cache.for_certificate(&stranger).is_none());
    assert!(cache.for_certificate(b"garbage").is_none());
}

fn card_of(ca: &TestCa) -> Vec<u8> {
    card(ca, spec()).auth
}
