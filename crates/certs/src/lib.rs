//! Checks of a card's certificates for the cardgate agent: validity dates, the chain to the
//! configured issuing CA, key usage for authentication, revocation against a CRL, the early
//! expiry warnings (90, 30 and 7 days), who may renew, and the old-generation rule (card
//! numbers beginning 01, 02 or 03 cannot be renewed or unlocked).
//!
//! Pure: no I/O, no network, no clock. The caller passes `now`, the configured
//! [`TrustAnchors`], and a [`Crl`] it read or fetched (the daemon owns fetching and keeps the
//! newest CRL per issuer in a [`CrlCache`]). Malformed input is a [`CertsError`]; everything
//! wrong with a well-formed certificate is a [`Finding`] in the [`CertificateReport`], worded
//! for pharmacy staff with the next step to take.
//!
//! ```no_run
//! # fn demo(cert: &[u8], ca_pem: &[u8], crl_der: &[u8]) -> Result<(), cardgate_certs::CertsError> {
//! use cardgate_certs::{CheckPolicy, Crl, TrustAnchors, Verdict, check_card_certificate};
//! let anchors = TrustAnchors::from_pem(ca_pem)?;
//! let crl = Crl::from_der(crl_der, &anchors)?;
//! let now = time::OffsetDateTime::now_utc();
//! let report =
//!     check_card_certificate(cert, &anchors, Some(&crl), "4123456789", now, &CheckPolicy::default())?;
//! match report.verdict() {
//!     Verdict::Usable => {}
//!     Verdict::UsableWithWarning { warnings } => { /* show each at insertion */ }
//!     Verdict::Unusable { reason } => { /* refuse, show reason.message and reason.next_step */ }
//!     _ => {}
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod anchors;
mod check;
mod crl;
mod error;
mod report;

pub use anchors::{TrustAnchor, TrustAnchors};
pub use check::{
    CheckPolicy, DEFAULT_CLOCK_TOLERANCE, DEFAULT_CRL_GRACE, FINAL_WARNING_DAYS, SELF_RENEWAL_DAYS,
    SPONSOR_RENEWAL_DAYS, UnknownRevocation, check_card_certificate, is_old_generation,
};
pub use crl::{Crl, CrlCache, CrlUpdate, RevocationReason, RevokedEntry};
pub use error::CertsError;
pub use report::{
    CertificateReport, ChainProblem, ChainStatus, CrlFreshness, ExpiryWarning, Finding,
    FindingKind, KeyUsageProblem, KeyUsageStatus, NewCardReason, RenewalPath, Revocation,
    RevocationUnknown, Severity, Validity, Verdict,
};
