//! Malformed input: garbage and truncated DER give errors naming what was wrong, and no
//! mutation of a certificate or CRL ever panics or lets a forgery through.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::OnceLock;

use cardgate_certs::{
    CertsError, ChainStatus, CheckPolicy, Crl, TrustAnchors, check_card_certificate,
};
use common::{anchors, ca, card, spec};
use proptest::prelude::*;
use time::OffsetDateTime;

/// One CA, one card, one CRL listing nothing, made once for the whole binary.
struct Fixture {
    trust: TrustAnchors,
    ca_der: Vec<u8>,
    auth: Vec<u8>,
    serial: String,
    crl: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ca = ca("Cardgate Test CA");
        let card = card(&ca, spec());
        Fixture {
            trust: anchors(&[&ca]),
            ca_der: ca.certificate_der().to_vec(),
            crl: ca.crl_der(&[], 7).unwrap(),
            auth: card.auth,
            serial: card.serial,
        }
    })
}

fn check(der: &[u8]) -> Result<cardgate_certs::CertificateReport, CertsError> {
    let f = fixture();
    let crl = Crl::from_der(&f.crl, &f.trust).unwrap();
    check_card_certificate(
        der,
        &f.trust,
        Some(&crl),
        &f.serial,
        OffsetDateTime::now_utc(),
        &CheckPolicy::default(),
    )
}

#[test]
fn garbage_instead_of_a_certificate_is_an_error_naming_it() {
    for garbage in [
        &b""[..],
        b"not a certificate",
        &[0x30, 0x03, 0x02, 0x01, 0x01],
    ] {
        let e = check(garbage).unwrap_err();
        assert!(
            matches!(&e, CertsError::MalformedDer { what, .. } if what.contains("authentication certificate")),
            "{e:?}"
        );
        assert!(e.to_string().contains("not valid DER"), "{e}");
    }
}

#[test]
fn a_truncated_certificate_is_called_truncated() {
    let f = fixture();
    for cut in [1, 10, f.auth.len() / 2, f.auth.len() - 1] {
        let e = check(&f.auth[..cut]).unwrap_err();
        assert!(matches!(e, CertsError::MalformedDer { .. }), "{cut}: {e:?}");
        assert!(e.to_string().contains("truncated"), "{cut}: {e}");
    }
}

#[test]
fn bytes_after_the_certificate_are_refused() {
    let mut der = fixture().auth.clone();
    der.extend_from_slice(&[0x00, 0x00]);
    let e = check(&der).unwrap_err();
    assert!(
        matches!(e, CertsError::TrailingData { extra: 2, .. }),
        "{e:?}"
    );
}

#[test]
fn a_truncated_or_garbage_crl_is_an_error_naming_the_crl() {
    let f = fixture();
    for cut in [f.crl.len() - 1, f.crl.len() - 20, f.crl.len() / 2, 8] {
        let e = Crl::from_der(&f.crl[..cut], &f.trust).unwrap_err();
        assert!(
            matches!(&e, CertsError::MalformedDer { what, detail } if what == "the CRL" && detail.contains("truncated")),
            "{cut}: {e:?}"
        );
    }
    let e = Crl::from_der(b"\x00\x01 definitely not a CRL", &f.trust).unwrap_err();
    assert!(
        matches!(&e, CertsError::MalformedDer { what, .. } if what == "the CRL"),
        "{e:?}"
    );
    // A certificate is not a CRL either.
    let e = Crl::from_der(&f.ca_der, &f.trust).unwrap_err();
    assert!(matches!(e, CertsError::MalformedDer { .. }), "{e:?}");
}

#[test]
fn a_garbage_trust_anchor_is_an_error_naming_which() {
    let f = fixture();
    let e = TrustAnchors::from_der([f.ca_der.as_slice(), b"junk"]).unwrap_err();
    assert!(
        matches!(&e, CertsError::MalformedDer { what, .. } if what == "trust anchor 2"),
        "{e:?}"
    );
}

/// Every single-bit flip of the certificate: never a panic, and never a "verified"
/// certificate that says something different from the one the CA signed.
#[test]
fn no_bit_flip_in_the_certificate_panics_or_forges() {
    let f = fixture();
    let original = check(&f.auth).unwrap();
    for i in 0..f.auth.len() {
        for bit in [0x01u8, 0x80] {
            let mut der = f.auth.clone();
            der[i] ^= bit;
            assert_not_forged(&original, &der);
        }
    }
}

/// Every byte flip of the CRL: never a panic, and never accepted with different contents.
#[test]
fn no_byte_flip_in_the_crl_panics_or_is_accepted() {
    let f = fixture();
    let original = Crl::from_der(&f.crl, &f.trust).unwrap();
    for i in 0..f.crl.len() {
        let mut der = f.crl.clone();
        der[i] ^= 0x01;
        if let Ok(crl) = Crl::from_der(&der, &f.trust) {
            assert_eq!(crl, original, "flip at {i} accepted with other contents");
        }
    }
}

fn assert_not_forged(original: &cardgate_certs::CertificateReport, der: &[u8]) {
    if let Ok(report) = check(der) {
        if matches!(report.chain, ChainStatus::Verified { .. }) {
            assert_eq!(report.holder_uuid, original.holder_uuid);
            assert_eq!(report.holder_name, original.holder_name);
            assert_eq!(report.certificate_serial, original.certificate_serial);
            assert_eq!(report.not_after, original.not_after);
            assert_eq!(report.key_usage, original.key_usage);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random edits (overwrite, insert, delete, truncate) never panic the check.
    #[test]
    fn random_certificate_edits_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6)
    ) {
        let f = fixture();
        let original = check(&f.auth).unwrap();
        let mut der = f.auth.clone();
        for (at, byte, op) in edits {
            if der.is_empty() {
                break;
            }
            let i = at.index(der.len());
            match op {
                0 => der[i] = byte,
                1 => der.insert(i, byte),
                2 => { der.remove(i); }
                _ => der.truncate(i),
            }
        }
        assert_not_forged(&original, &der);
    }

    /// Random edits of a CRL never panic and never yield a different accepted CRL.
    #[test]
    fn random_crl_edits_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6)
    ) {
        let f = fixture();
        let original = Crl::from_der(&f.crl, &f.trust).unwrap();
        let mut der = f.crl.clone();
        for (at, byte, op) in edits {
            if der.is_empty() {
                break;
            }
            let i = at.index(der.len());
            match op {
                0 => der[i] = byte,
                1 => der.insert(i, byte),
                2 => { der.remove(i); }
                _ => der.truncate(i),
            }
        }
        if let Ok(crl) = Crl::from_der(&der, &f.trust) {
            prop_assert_eq!(crl, original);
        }
    }

    /// Arbitrary bytes as certificate, CRL and anchor: errors, never panics.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let f = fixture();
        let _ = check(&bytes);
        let _ = Crl::from_der(&bytes, &f.trust);
        let _ = TrustAnchors::from_der([bytes.as_slice()]);
        let _ = TrustAnchors::from_pem(&bytes);
        let _ = Crl::from_pem(&bytes, &f.trust);
    }
}
