//! Fixtures shared by the integration tests: cards and CRLs made by the real provisioning
//! code (`cardgate_vcard::provision`), so these checks see exactly what the lab's cards carry.

#![allow(clippy::unwrap_used, dead_code)]

use cardgate_certs::{CertificateReport, CheckPolicy, Crl, TrustAnchors, check_card_certificate};
use cardgate_vcard::card_file::Slot;
use cardgate_vcard::provision::{CardSpec, ProvisionedCard, TestCa, provision};
use time::OffsetDateTime;

/// The holder every test card is issued to.
pub const UUID: &str = "555000111222";
/// Their name.
pub const NAME: &str = "Asha Patel";

/// A fresh test CA.
pub fn ca(name: &str) -> TestCa {
    TestCa::generate(name).unwrap()
}

/// Trust exactly these CAs.
pub fn anchors(cas: &[&TestCa]) -> TrustAnchors {
    TrustAnchors::from_der(cas.iter().map(|ca| ca.certificate_der())).unwrap()
}

/// A provisioned card and its PIV Authentication certificate.
pub struct Card {
    /// The provisioned card (card file and every slot's certificate).
    pub provisioned: ProvisionedCard,
    /// The PIV Authentication certificate, DER.
    pub auth: Vec<u8>,
    /// The card serial (as in the CHUID).
    pub serial: String,
}

/// Provisions a card for `spec` from `ca`.
pub fn card(ca: &TestCa, spec: CardSpec) -> Card {
    let provisioned = provision(ca, &spec).unwrap();
    let auth = provisioned.certificates[&Slot::Authentication].clone();
    let serial = provisioned.card.profile.card_serial.clone();
    Card {
        provisioned,
        auth,
        serial,
    }
}

/// The default holder's spec.
pub fn spec() -> CardSpec {
    CardSpec::new(NAME, UUID)
}

/// Another holder's spec.
pub fn spec_for(name: &str, uuid: &str) -> CardSpec {
    CardSpec::new(name, uuid)
}

/// A fresh CRL from `ca` listing nothing, valid for 7 days.
pub fn empty_crl(ca: &TestCa, trust: &TrustAnchors) -> Crl {
    Crl::from_der(&ca.crl_der(&[], 7).unwrap(), trust).unwrap()
}

/// Checks `card` now with the default policy.
pub fn check(card: &Card, trust: &TrustAnchors, crl: Option<&Crl>) -> CertificateReport {
    check_at(
        card,
        trust,
        crl,
        OffsetDateTime::now_utc(),
        &CheckPolicy::default(),
    )
}

/// Checks `card` at `now` with `policy`.
pub fn check_at(
    card: &Card,
    trust: &TrustAnchors,
    crl: Option<&Crl>,
    now: OffsetDateTime,
    policy: &CheckPolicy,
) -> CertificateReport {
    check_card_certificate(&card.auth, trust, crl, &card.serial, now, policy).unwrap()
}
