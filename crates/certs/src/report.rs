//! What a check found: [`CertificateReport`] and the typed parts it is made of, down to the
//! [`Finding`]s worded for pharmacy staff and the [`Verdict`] a login or a PMR gate acts on.

use time::{Duration, OffsetDateTime};

use crate::crl::RevocationReason;

/// Whether the certificate is inside its validity window at the time checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Validity {
    /// notBefore is still ahead (a card issued for a later start, or this computer's clock
    /// is behind).
    NotYetValid {
        /// When it becomes valid.
        from: OffsetDateTime,
    },
    /// Valid now, with this many days left (rounded up: "expires in 1 day" on its last day).
    Valid {
        /// Whole days left, rounded up.
        days_left: u32,
    },
    /// Past notAfter: renewal needs the RA in person.
    Expired {
        /// When it expired (notAfter).
        since: OffsetDateTime,
    },
}

/// The early warning to show at every card insertion, at 90, 30 and 7 days before expiry.
///
/// Ordered, so `warning >= ExpiryWarning::Within30` reads as "30 days or fewer".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExpiryWarning {
    /// More than 90 days left, expired or not yet valid: nothing to warn about here.
    None,
    /// 90 days or fewer: the holder may self-renew now.
    Within90,
    /// 30 days or fewer: a Sponsor may renew too.
    Within30,
    /// 7 days or fewer: last chance before a visit to the RA.
    Within7,
}

/// Whether the certificate was signed by a configured issuing CA.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainStatus {
    /// Signed by this anchor, which is itself valid now.
    Verified {
        /// The anchor's subject.
        anchor: String,
    },
    /// Not verified; the card must not be trusted.
    NotVerified {
        /// Why.
        problem: ChainProblem,
    },
}

/// Why a certificate does not chain to a configured issuing CA.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainProblem {
    /// No configured CA has the certificate's issuer name (a card from another scheme, or
    /// the agent is configured with the wrong CA).
    UnknownIssuer {
        /// The certificate's issuer name.
        issuer: String,
    },
    /// A CA of that name is configured but its key did not sign this certificate: the
    /// certificate was altered or forged.
    BadSignature {
        /// The certificate's issuer name.
        issuer: String,
    },
    /// The certificate is signed with an algorithm the verifier does not support.
    UnsupportedAlgorithm {
        /// The certificate's issuer name.
        issuer: String,
    },
    /// The signing CA's own certificate is outside its validity window at this time.
    AnchorNotValid {
        /// The anchor's subject.
        anchor: String,
        /// Its notBefore.
        not_before: OffsetDateTime,
        /// Its notAfter.
        not_after: OffsetDateTime,
    },
}

/// Whether the certificate may be used to authenticate (log in, mutual TLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyUsageStatus {
    /// keyUsage allows digitalSignature (or is absent) and extendedKeyUsage, if present,
    /// allows clientAuth.
    Suitable,
    /// Not suitable, and why.
    Unsuitable {
        /// What is missing or wrong.
        problem: KeyUsageProblem,
    },
}

/// What makes a certificate unsuitable for authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyUsageProblem {
    /// keyUsage is present and lacks digitalSignature: the key may not sign a TLS handshake.
    NoDigitalSignature,
    /// extendedKeyUsage is present and lacks clientAuth.
    NoClientAuth,
    /// It is a CA certificate, not a card holder's.
    IsCa,
    /// keyUsage, extendedKeyUsage or basicConstraints appears twice or cannot be read.
    Malformed,
}

/// The certificate's revocation status, with the reason when it cannot be known.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// The CRL does not list it.
    Good {
        /// thisUpdate of the CRL used.
        crl_this_update: OffsetDateTime,
        /// How fresh that CRL is.
        freshness: CrlFreshness,
    },
    /// The CRL lists it: the card was cancelled and can never be reactivated. Reported even
    /// from a stale CRL, since a cancellation is never undone.
    Revoked {
        /// When it was revoked.
        since: OffsetDateTime,
        /// Why, when the CRL says.
        reason: Option<RevocationReason>,
    },
    /// Could not be determined; [`CheckPolicy`](crate::CheckPolicy) decides whether that
    /// blocks the card.
    Unknown {
        /// Why.
        why: RevocationUnknown,
    },
}

/// How fresh a CRL that did not list the certificate is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrlFreshness {
    /// Before its nextUpdate.
    Fresh,
    /// Past nextUpdate, but within the configured grace: still counted, and IT should know.
    StaleWithinGrace {
        /// The CRL's nextUpdate.
        next_update: OffsetDateTime,
        /// How far past it.
        overdue_by: Duration,
    },
}

/// Why the revocation status is unknown. Each reason names a different fix, so a service
/// desk is not sent after the wrong problem (pam_pkcs11#68).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevocationUnknown {
    /// No CRL was given for this issuer (none configured or never fetched).
    NoCrl,
    /// The CRL is past its nextUpdate by more than the grace.
    CrlTooOld {
        /// The CRL's nextUpdate.
        next_update: OffsetDateTime,
        /// How far past it.
        overdue_by: Duration,
        /// The grace allowed.
        grace: Duration,
    },
    /// The CRL given belongs to another CA than the one that issued this certificate.
    CrlFromAnotherIssuer {
        /// The CRL's issuer.
        crl_issuer: String,
        /// The certificate's issuer.
        certificate_issuer: String,
    },
    /// The CRL's thisUpdate is ahead of `now`: this computer's clock is probably behind.
    CrlFromTheFuture {
        /// The CRL's thisUpdate.
        this_update: OffsetDateTime,
    },
    /// The chain did not verify, so asking which CA revoked it has no answer.
    ChainNotVerified,
}

/// Who can renew the certificates now, per the NHS rules in the brief.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenewalPath {
    /// More than 90 days left (or not yet valid): nothing to do yet.
    NotYetDue {
        /// When self-renewal opens (90 days before expiry).
        opens: OffsetDateTime,
    },
    /// 90 days or fewer left: the holder can self-renew.
    SelfService {
        /// When the certificates expire.
        until: OffsetDateTime,
    },
    /// 30 days or fewer left: the holder can self-renew, or a Sponsor can renew.
    SelfServiceOrSponsor {
        /// When the certificates expire.
        until: OffsetDateTime,
    },
    /// Expired: the holder must see the Registration Authority in person.
    RaInPerson,
    /// The card itself cannot go on: the holder needs a new card from the RA.
    NewCardFromRa {
        /// Why.
        why: NewCardReason,
    },
}

/// Why only a new card will do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NewCardReason {
    /// Old-generation card (number beginning 01, 02 or 03): cannot be renewed or unlocked.
    OldGeneration,
    /// The card was revoked: cancelled cards are never reactivated.
    Revoked,
}

/// How much a finding matters. Ordered: `Blocking > Warning > Info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// For the log and IT support; the holder need not be interrupted.
    Info,
    /// The holder must see it (at every insertion), but may carry on.
    Warning,
    /// The card must not be used.
    Blocking,
}

/// What a finding is about, for code that acts on it (the D-Bus error name, the PAM
/// message, the audit record) without parsing the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FindingKind {
    /// Certificate not yet valid.
    NotYetValid,
    /// Certificate expired.
    Expired,
    /// Certificate expires within 90, 30 or 7 days.
    ExpiresSoon(ExpiryWarning),
    /// Old-generation card: cannot be renewed or unlocked.
    OldGeneration,
    /// Not signed by a configured issuing CA.
    ChainNotVerified,
    /// Listed on the CRL.
    Revoked,
    /// Revocation status unknown.
    RevocationUnknown,
    /// The CRL used is past its nextUpdate but within grace.
    CrlStale,
    /// Not usable for authentication.
    KeyUsageUnsuitable,
    /// No valid 12-digit holder UUID in the subject.
    NoHolderUuid,
}

/// One thing the holder (or IT support) must know, in words for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What it is about.
    pub kind: FindingKind,
    /// How much it matters.
    pub severity: Severity,
    /// What is the matter, for the holder ("Your smartcard certificates expire on 3 July 2026
    /// (in 25 days).").
    pub message: String,
    /// What to do next ("Renew them now ... or ask your Sponsor ...").
    pub next_step: String,
}

/// What to do with the card, derived from the findings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Nothing to tell the holder.
    Usable,
    /// Usable; show these warnings (at every insertion).
    UsableWithWarning {
        /// The warnings, most important first.
        warnings: Vec<Finding>,
    },
    /// Must not be used.
    Unusable {
        /// The most important blocking finding (all of them are in the report).
        reason: Finding,
    },
}

/// Everything the checks found about a card's authentication certificate.
///
/// Typed fields for code, [`Finding`]s for people, and [`CertificateReport::verdict`] for
/// the yes/no that a login or a PMR gate needs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateReport {
    /// The holder's 12-digit UUID (subject `serialNumber`, OID 2.5.4.5), if present and valid.
    pub holder_uuid: Option<String>,
    /// The holder's name (subject CN), if present.
    pub holder_name: Option<String>,
    /// The card serial the check was given (from the CHUID).
    pub card_serial: String,
    /// The certificate's serial number, upper-case hex, as the CRL and the RA know it.
    pub certificate_serial: String,
    /// The certificate's issuer name.
    pub issuer: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Inside the validity window or not.
    pub validity: Validity,
    /// The early warning to show at insertion.
    pub expiry_warning: ExpiryWarning,
    /// Chain to a configured issuing CA.
    pub chain: ChainStatus,
    /// Suitability for authentication.
    pub key_usage: KeyUsageStatus,
    /// Revocation status.
    pub revocation: Revocation,
    /// Who can renew, now.
    pub renewal: RenewalPath,
    /// Old-generation card (number beginning 01, 02 or 03): cannot be renewed or unlocked.
    /// The unlock flow reads this too, to refuse early with the right message.
    pub old_generation: bool,
    /// What to tell people, most severe first.
    pub findings: Vec<Finding>,
}

impl CertificateReport {
    /// Usable, usable with warnings, or unusable with the most important reason.
    pub fn verdict(&self) -> Verdict {
        if let Some(reason) = self
            .findings
            .iter()
            .find(|f| f.severity == Severity::Blocking)
        {
            return Verdict::Unusable {
                reason: reason.clone(),
            };
        }
        let warnings: Vec<Finding> = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .cloned()
            .collect();
        if warnings.is_empty() {
            Verdict::Usable
        } else {
            Verdict::UsableWithWarning { warnings }
        }
    }

    /// The finding of this kind, if any: lets callers and tests ask "was the holder told?".
    pub fn finding(&self, kind: FindingKind) -> Option<&Finding> {
        self.findings.iter().find(|f| f.kind == kind)
    }
}
