//! Fuzz target: certificate and CRL handling (`cardgate-certs`) on arbitrary DER. The first
//! byte chooses what the rest is: the card's authentication certificate (checked against a
//! real test CA and its CRL, the one listing nothing and the one revoking the card), a CRL
//! (parsed and signature-checked against that CA, offered to a `CrlCache`, then used for the
//! real card certificate), or trust anchors (DER and PEM). The fixtures in `fuzz/fixtures/`
//! come from `vcard ca init`, `vcard provision` and `vcard ca crl`; the time is fixed (an
//! hour after the CRL was issued) so every run is reproducible.
//!
//! Beyond "no panic": a certificate revoked on a CRL that verified is never `Usable`.
#![no_main]

use cardgate_certs::{
    CheckPolicy, Crl, CrlCache, Revocation, TrustAnchors, Verdict, check_card_certificate,
};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use time::{Duration, OffsetDateTime};

const CA_PEM: &[u8] = include_bytes!("../fixtures/ca.crt.pem");
const CARD_CERT: &[u8] = include_bytes!("../fixtures/card-auth.der");
const CRL_EMPTY: &[u8] = include_bytes!("../fixtures/crl.der");
const CRL_REVOKED: &[u8] = include_bytes!("../fixtures/crl-revoked.der");
const CARD_SERIAL: &str = include_str!("../fixtures/card-serial.txt");

/// The parsed fixtures, once per process.
struct Fixtures {
    anchors: TrustAnchors,
    crl_empty: Crl,
    crl_revoked: Crl,
    now: OffsetDateTime,
}

static FIXTURES: LazyLock<Fixtures> = LazyLock::new(|| {
    let anchors = TrustAnchors::from_pem(CA_PEM).expect("the fixture CA parses");
    let crl_empty = Crl::from_der(CRL_EMPTY, &anchors).expect("the fixture CRL verifies");
    let crl_revoked = Crl::from_der(CRL_REVOKED, &anchors).expect("the fixture CRL verifies");
    let now = crl_revoked.this_update() + Duration::hours(1);
    Fixtures {
        anchors,
        crl_empty,
        crl_revoked,
        now,
    }
});

/// Checks `cert` as the card's certificate and asserts the revocation rule.
fn check(cert: &[u8], crl: Option<&Crl>, serial: &str, policy: &CheckPolicy) {
    let f = &*FIXTURES;
    if let Ok(report) = check_card_certificate(cert, &f.anchors, crl, serial, f.now, policy) {
        if matches!(report.revocation, Revocation::Revoked { .. }) {
            assert!(
                !matches!(report.verdict(), Verdict::Usable),
                "a revoked certificate was found usable"
            );
        }
        // The staff-facing text is built for every report; it must not panic either.
        let _ = format!("{report:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let f = &*FIXTURES;
    let policy = CheckPolicy::default();
    match choice % 6 {
        0 => check(rest, Some(&f.crl_empty), CARD_SERIAL.trim(), &policy),
        1 => check(rest, Some(&f.crl_revoked), CARD_SERIAL.trim(), &policy),
        2 => check(
            rest,
            None,
            "0123456789",
            &policy.clone().danger_accept_unknown_revocation(),
        ),
        3 => {
            // The rest is a CRL from the endpoint.
            if let Ok(crl) = Crl::from_der(rest, &f.anchors) {
                let _ = (
                    crl.issuer(),
                    crl.next_update(),
                    crl.crl_number(),
                    crl.revoked_count(),
                );
                let mut cache = CrlCache::new();
                let _ = cache.offer(f.crl_empty.clone());
                let _ = cache.offer(crl.clone());
                let _ = cache.for_certificate(CARD_CERT);
                check(CARD_CERT, Some(&crl), CARD_SERIAL.trim(), &policy);
            }
        }
        4 => {
            if let Ok(crl) = Crl::from_pem(rest, &f.anchors) {
                check(CARD_CERT, Some(&crl), CARD_SERIAL.trim(), &policy);
            }
        }
        _ => {
            // The rest is a CA certificate (DER, then PEM) the card certificate is checked
            // against.
            let anchors = TrustAnchors::from_der([rest]).or_else(|_| TrustAnchors::from_pem(rest));
            if let Ok(anchors) = anchors {
                let _ = check_card_certificate(
                    CARD_CERT,
                    &anchors,
                    None,
                    CARD_SERIAL.trim(),
                    f.now,
                    &policy,
                );
            }
        }
    }
});
