//! The check itself: [`check_card_certificate`] and the [`CheckPolicy`] that decides what an
//! unknown revocation status means. Pure: the caller passes `now`.

use time::macros::format_description;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::oid_registry::OID_X509_SERIALNUMBER;

use crate::anchors::{TrustAnchor, TrustAnchors, parse_certificate};
use crate::crl::Crl;
use crate::error::CertsError;
use crate::report::{
    CertificateReport, ChainProblem, ChainStatus, CrlFreshness, ExpiryWarning, Finding,
    FindingKind, KeyUsageProblem, KeyUsageStatus, NewCardReason, RenewalPath, Revocation,
    RevocationUnknown, Severity, Validity,
};

/// Self-renewal opens this many days before expiry; also the first early warning.
pub const SELF_RENEWAL_DAYS: u32 = 90;
/// A Sponsor may renew within this many days of expiry; also the second early warning.
pub const SPONSOR_RENEWAL_DAYS: u32 = 30;
/// The last early warning.
pub const FINAL_WARNING_DAYS: u32 = 7;
/// Default grace after a CRL's nextUpdate: a long weekend without network must not stop a
/// pharmacy dispensing on Tuesday morning.
pub const DEFAULT_CRL_GRACE: Duration = Duration::days(3);
/// Default clock tolerance for notBefore and a CRL's thisUpdate, so a workstation clock a
/// few minutes behind does not refuse a card the RA just issued.
pub const DEFAULT_CLOCK_TOLERANCE: Duration = Duration::minutes(5);

/// What to do when revocation cannot be checked (see [`RevocationUnknown`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnknownRevocation {
    /// The card is unusable until a usable CRL arrives (the default).
    #[default]
    Refuse,
    /// The card is usable, with a warning naming the reason. Weakens security: a cancelled
    /// card would be accepted while the CRL is unavailable.
    DangerAcceptWithWarning,
}

/// The caller's policy for the judgements that are not fixed by the NHS rules.
///
/// Keeping these explicit (rather than failing closed on any CRL problem) is what stops a
/// revocation check from refusing a login "for the wrong reason".
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckPolicy {
    /// How long past its nextUpdate a CRL still counts (as fresh-enough, with an Info
    /// finding for IT).
    pub crl_grace: Duration,
    /// What an unknown revocation status means.
    pub unknown_revocation: UnknownRevocation,
    /// How far ahead of `now` a notBefore or a CRL thisUpdate may be (clock skew).
    pub clock_tolerance: Duration,
}

impl Default for CheckPolicy {
    fn default() -> Self {
        CheckPolicy {
            crl_grace: DEFAULT_CRL_GRACE,
            unknown_revocation: UnknownRevocation::Refuse,
            clock_tolerance: DEFAULT_CLOCK_TOLERANCE,
        }
    }
}

impl CheckPolicy {
    /// Sets the CRL grace (negative values count as zero).
    pub fn with_crl_grace(mut self, grace: Duration) -> Self {
        self.crl_grace = grace.max(Duration::ZERO);
        self
    }

    /// Sets the clock tolerance (negative values count as zero).
    pub fn with_clock_tolerance(mut self, tolerance: Duration) -> Self {
        self.clock_tolerance = tolerance.max(Duration::ZERO);
        self
    }

    /// Accepts cards whose revocation status is unknown, with a warning. Weakens security;
    /// for sites that decide a pharmacy must keep dispensing through a CRL outage.
    pub fn danger_accept_unknown_revocation(mut self) -> Self {
        self.unknown_revocation = UnknownRevocation::DangerAcceptWithWarning;
        self
    }
}

/// Whether a card number marks an old-generation card (begins 01, 02 or 03), which can be
/// neither renewed nor unlocked. Public so the unlock flow applies the same rule.
pub fn is_old_generation(card_serial: &str) -> bool {
    ["01", "02", "03"]
        .iter()
        .any(|p| card_serial.starts_with(p))
}

/// Checks a card's PIV Authentication certificate: validity at `now`, chain to `anchors`,
/// key usage for authentication, revocation against `crl`, the early expiry warning, the
/// renewal path and the old-generation rule for `card_serial` (from the CHUID).
///
/// Returns an error only for input that cannot be checked at all (not a certificate, not a
/// card number); everything wrong *with* the certificate is a [`Finding`] in the report, so
/// the holder is told what to do.
pub fn check_card_certificate(
    certificate_der: &[u8],
    anchors: &TrustAnchors,
    crl: Option<&Crl>,
    card_serial: &str,
    now: OffsetDateTime,
    policy: &CheckPolicy,
) -> Result<CertificateReport, CertsError> {
    check_card_serial(card_serial)?;
    let certificate = parse_certificate(certificate_der, "the card's authentication certificate")?;
    let not_before = certificate.validity().not_before.to_datetime();
    let not_after = certificate.validity().not_after.to_datetime();
    let issuer = certificate.issuer().to_string();
    let old_generation = is_old_generation(card_serial);

    let validity = validity_at(not_before, not_after, now, policy);
    let expiry_warning = match validity {
        Validity::Valid { days_left } if days_left <= FINAL_WARNING_DAYS => ExpiryWarning::Within7,
        Validity::Valid { days_left } if days_left <= SPONSOR_RENEWAL_DAYS => {
            ExpiryWarning::Within30
        }
        Validity::Valid { days_left } if days_left <= SELF_RENEWAL_DAYS => ExpiryWarning::Within90,
        _ => ExpiryWarning::None,
    };
    let (chain, anchor) = verify_chain(&certificate, &issuer, anchors, now);
    let key_usage = key_usage_status(&certificate);
    let revocation = revocation_status(&certificate, anchor, crl, now, policy);
    let renewal = if matches!(revocation, Revocation::Revoked { .. }) {
        RenewalPath::NewCardFromRa {
            why: NewCardReason::Revoked,
        }
    } else if old_generation {
        RenewalPath::NewCardFromRa {
            why: NewCardReason::OldGeneration,
        }
    } else {
        match validity {
            Validity::Expired { .. } => RenewalPath::RaInPerson,
            _ if expiry_warning >= ExpiryWarning::Within30 => {
                RenewalPath::SelfServiceOrSponsor { until: not_after }
            }
            _ if expiry_warning == ExpiryWarning::Within90 => {
                RenewalPath::SelfService { until: not_after }
            }
            _ => RenewalPath::NotYetDue {
                opens: not_after - Duration::days(i64::from(SELF_RENEWAL_DAYS)),
            },
        }
    };

    let mut report = CertificateReport {
        holder_uuid: holder_uuid(&certificate),
        holder_name: certificate
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        card_serial: card_serial.to_owned(),
        certificate_serial: certificate
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect(),
        issuer,
        not_before,
        not_after,
        validity,
        expiry_warning,
        chain,
        key_usage,
        revocation,
        renewal,
        old_generation,
        findings: Vec::new(),
    };
    report.findings = findings(&report, policy);
    Ok(report)
}

fn check_card_serial(serial: &str) -> Result<(), CertsError> {
    let reason = if serial.is_empty() {
        "it is empty"
    } else if serial.len() > 20 {
        "it is longer than 20 digits"
    } else if !serial.bytes().all(|b| b.is_ascii_digit()) {
        "it must be digits only, as printed on the card"
    } else {
        return Ok(());
    };
    Err(CertsError::InvalidCardSerial {
        serial: serial.to_owned(),
        reason,
    })
}

fn validity_at(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
    policy: &CheckPolicy,
) -> Validity {
    if now + policy.clock_tolerance < not_before {
        return Validity::NotYetValid { from: not_before };
    }
    if now > not_after {
        return Validity::Expired { since: not_after };
    }
    let seconds = (not_after - now).whole_seconds().max(0);
    let days = seconds.div_euclid(86_400) + i64::from(seconds.rem_euclid(86_400) != 0);
    Validity::Valid {
        days_left: u32::try_from(days).unwrap_or(u32::MAX),
    }
}

/// The anchor that signed the certificate and is itself valid now, or why there is none.
fn verify_chain<'a>(
    certificate: &X509Certificate<'_>,
    issuer: &str,
    anchors: &'a TrustAnchors,
    now: OffsetDateTime,
) -> (ChainStatus, Option<&'a TrustAnchor>) {
    let mut problem = ChainProblem::UnknownIssuer {
        issuer: issuer.to_owned(),
    };
    for anchor in anchors.named(certificate.issuer().as_raw()) {
        let verified = match anchor.spki() {
            Some(spki) => certificate.verify_signature(Some(&spki)),
            None => Err(X509Error::InvalidSPKI),
        };
        problem = match verified {
            Ok(()) if now < anchor.not_before() || now > anchor.not_after() => {
                ChainProblem::AnchorNotValid {
                    anchor: anchor.subject().to_owned(),
                    not_before: anchor.not_before(),
                    not_after: anchor.not_after(),
                }
            }
            Ok(()) => {
                let status = ChainStatus::Verified {
                    anchor: anchor.subject().to_owned(),
                };
                return (status, Some(anchor));
            }
            Err(X509Error::SignatureUnsupportedAlgorithm) => ChainProblem::UnsupportedAlgorithm {
                issuer: issuer.to_owned(),
            },
            Err(_) => ChainProblem::BadSignature {
                issuer: issuer.to_owned(),
            },
        };
    }
    (ChainStatus::NotVerified { problem }, None)
}

fn key_usage_status(certificate: &X509Certificate<'_>) -> KeyUsageStatus {
    let problem = match (
        certificate.basic_constraints(),
        certificate.key_usage(),
        certificate.extended_key_usage(),
    ) {
        (Err(_), _, _) | (_, Err(_), _) | (_, _, Err(_)) => Some(KeyUsageProblem::Malformed),
        (Ok(Some(bc)), _, _) if bc.value.ca => Some(KeyUsageProblem::IsCa),
        (_, Ok(Some(ku)), _) if !ku.value.digital_signature() => {
            Some(KeyUsageProblem::NoDigitalSignature)
        }
        (_, _, Ok(Some(eku))) if !(eku.value.client_auth || eku.value.any) => {
            Some(KeyUsageProblem::NoClientAuth)
        }
        _ => None,
    };
    match problem {
        None => KeyUsageStatus::Suitable,
        Some(problem) => KeyUsageStatus::Unsuitable { problem },
    }
}

fn revocation_status(
    certificate: &X509Certificate<'_>,
    anchor: Option<&TrustAnchor>,
    crl: Option<&Crl>,
    now: OffsetDateTime,
    policy: &CheckPolicy,
) -> Revocation {
    let unknown = |why| Revocation::Unknown { why };
    let Some(anchor) = anchor else {
        return unknown(RevocationUnknown::ChainNotVerified);
    };
    let Some(crl) = crl else {
        return unknown(RevocationUnknown::NoCrl);
    };
    if crl.issuer_raw() != certificate.issuer().as_raw() || crl.signer_spki() != anchor.spki_raw() {
        return unknown(RevocationUnknown::CrlFromAnotherIssuer {
            crl_issuer: crl.issuer().to_owned(),
            certificate_issuer: certificate.issuer().to_string(),
        });
    }
    if let Some(entry) = crl.revoked(&certificate.serial.to_bytes_be()) {
        return Revocation::Revoked {
            since: entry.revoked_at,
            reason: entry.reason,
        };
    }
    if now + policy.clock_tolerance < crl.this_update() {
        return unknown(RevocationUnknown::CrlFromTheFuture {
            this_update: crl.this_update(),
        });
    }
    let freshness = if now <= crl.next_update() {
        CrlFreshness::Fresh
    } else {
        let overdue_by = now - crl.next_update();
        if overdue_by > policy.crl_grace {
            return unknown(RevocationUnknown::CrlTooOld {
                next_update: crl.next_update(),
                overdue_by,
                grace: policy.crl_grace,
            });
        }
        CrlFreshness::StaleWithinGrace {
            next_update: crl.next_update(),
            overdue_by,
        }
    };
    Revocation::Good {
        crl_this_update: crl.this_update(),
        freshness,
    }
}

/// The holder UUID: exactly one subject serialNumber attribute, 12 ASCII digits.
fn holder_uuid(certificate: &X509Certificate<'_>) -> Option<String> {
    let mut values = certificate
        .subject()
        .iter_by_oid(&OID_X509_SERIALNUMBER)
        .map(|a| a.as_str());
    let only = values.next()?.ok()?;
    if values.next().is_some() {
        return None;
    }
    (only.len() == 12 && only.bytes().all(|b| b.is_ascii_digit())).then(|| only.to_owned())
}

/// "3 July 2026": how dates are written for pharmacy staff.
fn date(t: OffsetDateTime) -> String {
    let format = format_description!("[day padding:none] [month repr:long] [year]");
    t.date()
        .format(&format)
        .unwrap_or_else(|_| t.date().to_string())
}

/// "3 July 2026 at 14:05 UTC", for times that may be hours away.
fn date_time(t: OffsetDateTime) -> String {
    let format = format_description!("[hour]:[minute]");
    let time = t.time().format(&format).unwrap_or_default();
    format!("{} at {time} UTC", date(t))
}

/// "today", "in 1 day", "in 25 days".
fn in_days(n: u32) -> String {
    match n {
        0 => "today".to_owned(),
        1 => "in 1 day".to_owned(),
        n => format!("in {n} days"),
    }
}

/// Hours or days, whichever reads better.
fn span(d: Duration) -> String {
    let hours = d.whole_hours();
    if hours < 48 {
        format!("{hours} hours")
    } else {
        format!("{} days", d.whole_days())
    }
}

const IT_SUPPORT: &str = "contact IT support (the service desk)";

fn findings(report: &CertificateReport, policy: &CheckPolicy) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |kind, severity, message: String, next_step: String| {
        out.push(Finding {
            kind,
            severity,
            message,
            next_step,
        });
    };
    let serial_prefix = report.card_serial.get(..2).unwrap_or("");

    if let Revocation::Revoked { since, reason } = &report.revocation {
        let why = reason
            .map(|r| format!(" (reason: {r})"))
            .unwrap_or_default();
        add(
            FindingKind::Revoked,
            Severity::Blocking,
            format!("This smartcard was cancelled on {}{why}.", date(*since)),
            "A cancelled card can never be used again. Contact your Registration Authority \
             (RA) for a new card."
                .to_owned(),
        );
    }
    if let ChainStatus::NotVerified { problem } = &report.chain {
        let (message, next_step) = match problem {
            ChainProblem::UnknownIssuer { issuer } => (
                format!(
                    "This smartcard was not issued by the smartcard authority this computer \
                     trusts (it was issued by \"{issuer}\")."
                ),
                format!(
                    "Do not use this card here. If it is your NHS smartcard, {IT_SUPPORT}: this \
                     computer may be set up with the wrong authority."
                ),
            ),
            ChainProblem::BadSignature { .. } | ChainProblem::UnsupportedAlgorithm { .. } => (
                "This smartcard's certificate failed its security check: it may have been \
                 damaged or altered."
                    .to_owned(),
                format!(
                    "Do not use this card. {} and give them the card number; you may need a \
                     new card from your Registration Authority (RA).",
                    capitalise(IT_SUPPORT)
                ),
            ),
            ChainProblem::AnchorNotValid {
                anchor, not_after, ..
            } => (
                format!(
                    "The smartcard authority this computer trusts (\"{anchor}\") is not valid \
                     at this time (it is valid until {}).",
                    date(*not_after)
                ),
                format!(
                    "{}: this computer's clock or its smartcard authority settings need \
                     checking.",
                    capitalise(IT_SUPPORT)
                ),
            ),
        };
        add(
            FindingKind::ChainNotVerified,
            Severity::Blocking,
            message,
            next_step,
        );
    }
    match report.validity {
        Validity::Expired { since } => {
            let next_step = if report.old_generation {
                "This is an older card that cannot be renewed. Contact your Registration \
                 Authority (RA) for a new card."
                    .to_owned()
            } else {
                "Expired certificates can only be renewed by your Registration Authority \
                 (RA), in person: arrange a visit and take your card and identity documents."
                    .to_owned()
            };
            add(
                FindingKind::Expired,
                Severity::Blocking,
                format!(
                    "Your smartcard's certificates expired on {}, so it cannot be used to log in.",
                    date(since)
                ),
                next_step,
            );
        }
        Validity::NotYetValid { from } => add(
            FindingKind::NotYetValid,
            Severity::Blocking,
            format!(
                "This smartcard's certificates are not valid until {}.",
                date_time(from)
            ),
            format!(
                "If that time has already passed, this computer's clock is wrong: {IT_SUPPORT}. \
                 Otherwise use the card from then."
            ),
        ),
        Validity::Valid { days_left } if report.expiry_warning != ExpiryWarning::None => {
            let message = format!(
                "Your smartcard's certificates expire on {} ({}).",
                date(report.not_after),
                in_days(days_left)
            );
            let next_step = if report.old_generation {
                format!(
                    "This is an older card that cannot be renewed: contact your Registration \
                     Authority (RA) for a new card before {}.",
                    date(report.not_after)
                )
            } else if report.expiry_warning >= ExpiryWarning::Within30 {
                "Renew them now: you can renew them yourself, or ask your Sponsor to renew \
                 them. Once they expire you will have to see your Registration Authority (RA) \
                 in person."
                    .to_owned()
            } else {
                "Renew them yourself now (self-renewal is open in the 90 days before expiry). \
                 Once they expire you will have to see your Registration Authority (RA) in \
                 person."
                    .to_owned()
            };
            add(
                FindingKind::ExpiresSoon(report.expiry_warning),
                Severity::Warning,
                message,
                next_step,
            );
        }
        Validity::Valid { .. } => {}
    }
    if report.old_generation {
        add(
            FindingKind::OldGeneration,
            Severity::Warning,
            format!(
                "This is an older smartcard (its number begins {serial_prefix}): it cannot be \
                 renewed, and if it becomes locked it cannot be unlocked."
            ),
            "Contact your Registration Authority (RA) to get a new card.".to_owned(),
        );
    }
    if let Revocation::Unknown { why } = &report.revocation {
        let reason = match why {
            // Nothing to add: the chain finding says it all. And an expired card goes to the
            // RA whatever the CRL says; "your card is not at fault" would only confuse.
            RevocationUnknown::ChainNotVerified => None,
            _ if matches!(report.validity, Validity::Expired { .. }) => None,
            RevocationUnknown::NoCrl => {
                Some("this computer has no list of cancelled cards".to_owned())
            }
            RevocationUnknown::CrlTooOld {
                next_update,
                overdue_by,
                grace,
            } => Some(format!(
                "its list of cancelled cards is out of date (it was due to be updated on {}, \
                 {} ago; up to {} is allowed)",
                date_time(*next_update),
                span(*overdue_by),
                span(*grace)
            )),
            RevocationUnknown::CrlFromAnotherIssuer { crl_issuer, .. } => Some(format!(
                "its list of cancelled cards is from another authority (\"{crl_issuer}\")"
            )),
            RevocationUnknown::CrlFromTheFuture { this_update } => Some(format!(
                "its list of cancelled cards is dated {}, later than this computer's clock",
                date_time(*this_update)
            )),
        };
        if let Some(reason) = reason {
            let (severity, next_step) = match policy.unknown_revocation {
                UnknownRevocation::Refuse => (
                    Severity::Blocking,
                    format!(
                        "The card cannot be used on this computer until that is fixed: \
                         {IT_SUPPORT} and tell them the list of cancelled cards (CRL) needs \
                         updating. Your card itself is not at fault."
                    ),
                ),
                UnknownRevocation::DangerAcceptWithWarning => (
                    Severity::Warning,
                    format!(
                        "You can carry on for now, but please {IT_SUPPORT} and tell them the \
                         list of cancelled cards (CRL) needs updating."
                    ),
                ),
            };
            add(
                FindingKind::RevocationUnknown,
                severity,
                format!(
                    "This computer could not check whether your smartcard has been cancelled: {reason}."
                ),
                next_step,
            );
        }
    }
    if let Revocation::Good {
        freshness:
            CrlFreshness::StaleWithinGrace {
                next_update,
                overdue_by,
            },
        ..
    } = &report.revocation
    {
        add(
            FindingKind::CrlStale,
            Severity::Info,
            format!(
                "The list of cancelled cards (CRL) was due to be updated on {} and is {} \
                 overdue; it is still used for up to {} after that.",
                date_time(*next_update),
                span(*overdue_by),
                span(policy.crl_grace)
            ),
            "IT support: check that this computer can fetch the CRL.".to_owned(),
        );
    }
    if let KeyUsageStatus::Unsuitable { problem } = report.key_usage {
        let detail = match problem {
            KeyUsageProblem::NoDigitalSignature => "its key may not be used to sign",
            KeyUsageProblem::NoClientAuth => "it is not marked for logging in",
            KeyUsageProblem::IsCa => "it belongs to an authority, not a card holder",
            KeyUsageProblem::Malformed => "its usage markings cannot be read",
        };
        add(
            FindingKind::KeyUsageUnsuitable,
            Severity::Blocking,
            format!("This smartcard's certificate cannot be used to log in: {detail}."),
            format!(
                "{} and give them the card number; you may need a new card from your \
                 Registration Authority (RA).",
                capitalise(IT_SUPPORT)
            ),
        );
    }
    if report.holder_uuid.is_none() {
        add(
            FindingKind::NoHolderUuid,
            Severity::Blocking,
            "This smartcard's certificate does not carry a valid 12-digit user ID (UUID), so \
             nothing done with it could be recorded against you."
                .to_owned(),
            format!(
                "{} and give them the card number; you may need a new card from your \
                 Registration Authority (RA).",
                capitalise(IT_SUPPORT)
            ),
        );
    }
    // Most severe first; a stable sort keeps the order above within a severity.
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use time::macros::datetime;

    #[test]
    fn old_generation_is_decided_by_the_first_two_digits() {
        for old in ["01", "0123456789", "02", "0399999999"] {
            assert!(is_old_generation(old), "{old}");
        }
        for new in ["", "0", "00123", "04123", "1012345678", "4123456789", "30"] {
            assert!(!is_old_generation(new), "{new}");
        }
    }

    #[test]
    fn days_left_round_up_so_the_last_day_reads_as_in_one_day() {
        let policy = CheckPolicy::default();
        let not_before = datetime!(2024-01-01 00:00 UTC);
        let not_after = datetime!(2026-01-01 00:00 UTC);
        let days_left = |now| match validity_at(not_before, not_after, now, &policy) {
            Validity::Valid { days_left } => days_left,
            other => panic!("{other:?}"),
        };
        assert_eq!(days_left(datetime!(2025-12-31 23:59:59 UTC)), 1);
        assert_eq!(days_left(datetime!(2025-12-31 00:00 UTC)), 1);
        assert_eq!(days_left(datetime!(2025-12-30 23:59:59 UTC)), 2);
        assert_eq!(days_left(not_after), 0);
        assert_eq!(in_days(0), "today");
        assert_eq!(in_days(1), "in 1 day");
        assert_eq!(in_days(25), "in 25 days");
    }

    #[test]
    fn dates_are_written_for_people() {
        assert_eq!(date(datetime!(2026-07-03 14:05 UTC)), "3 July 2026");
        assert_eq!(
            date_time(datetime!(2026-07-03 14:05 UTC)),
            "3 July 2026 at 14:05 UTC"
        );
        assert_eq!(span(Duration::hours(30)), "30 hours");
        assert_eq!(span(Duration::days(5) + Duration::hours(2)), "5 days");
    }

    #[test]
    fn card_serials_must_be_digits() {
        assert!(check_card_serial("4123456789").is_ok());
        assert!(check_card_serial("0").is_ok());
        for bad in ["", "41 23", "４１２３", "123456789012345678901"] {
            assert!(check_card_serial(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn negative_policy_durations_count_as_zero() {
        let policy = CheckPolicy::default()
            .with_crl_grace(Duration::days(-1))
            .with_clock_tolerance(Duration::minutes(-5));
        assert_eq!(policy.crl_grace, Duration::ZERO);
        assert_eq!(policy.clock_tolerance, Duration::ZERO);
    }
}
