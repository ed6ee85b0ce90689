//! The early warnings shown to the holder at every insertion (not only at login): the
//! certificate findings that need the holder's attention (expiry at 90, 30 and 7 days,
//! expired, cancelled, old-generation card) and the passcode's state (few tries left,
//! locked), each with the next step in words for pharmacy staff.

use cardgate_certs::{CertificateReport, FindingKind, Severity};
use cardgate_piv::{AGENT_MAX_CONSECUTIVE_FAILURES, PasscodeStatus};

/// What a warning is about, for code that acts on it without reading the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WarningKind {
    /// A finding of the certificate checks (expiry, revocation, old generation, ...).
    Certificate(FindingKind),
    /// Fewer passcode tries are left than a fresh card has: a wrong guess now costs a trip
    /// to the Sponsor.
    FewPasscodeTries {
        /// Tries left (the smaller of the card's counter and the agent's limit).
        left: u8,
    },
    /// The passcode is locked: nothing will be sent to the card until it is unlocked.
    PasscodeLocked,
}

/// One warning for the holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderWarning {
    /// What it is about.
    pub kind: WarningKind,
    /// Blocking (the card cannot be used) or Warning (it can, but act soon).
    pub severity: Severity,
    /// What is the matter.
    pub message: String,
    /// What to do next, naming who can help (self-service, Sponsor, LSA, RA).
    pub next_step: String,
}

/// The warnings for one card: certificate findings the holder must see, then the passcode's,
/// most severe first.
pub fn holder_warnings(
    certificate: &CertificateReport,
    passcode: PasscodeStatus,
) -> Vec<HolderWarning> {
    let mut warnings: Vec<HolderWarning> = certificate
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .map(|f| HolderWarning {
            kind: WarningKind::Certificate(f.kind),
            severity: f.severity,
            message: f.message.clone(),
            next_step: f.next_step.clone(),
        })
        .collect();
    let unlock = if certificate.old_generation {
        "Older cards (numbers beginning 01, 02 or 03) cannot be unlocked: contact your \
         Registration Authority (RA) for a new card."
    } else {
        "Unlock it yourself if you registered for self-service unlock, or ask your Sponsor or \
         Local Smartcard Administrator (LSA) to unlock it (an LSA cannot unlock their own \
         card); otherwise contact your Registration Authority (RA)."
    };
    match passcode {
        PasscodeStatus::Blocked => warnings.push(HolderWarning {
            kind: WarningKind::PasscodeLocked,
            severity: Severity::Blocking,
            message: "Your smartcard is locked after too many wrong passcodes.".to_owned(),
            next_step: unlock.to_owned(),
        }),
        PasscodeStatus::TriesLeft(left) if left.get() < AGENT_MAX_CONSECUTIVE_FAILURES => {
            let n = left.get();
            let tries = if n == 1 {
                "only 1 passcode try is left".to_owned()
            } else {
                format!("{n} passcode tries are left")
            };
            warnings.push(HolderWarning {
                kind: WarningKind::FewPasscodeTries { left: n },
                severity: Severity::Warning,
                message: format!("Take care: {tries} before your smartcard locks."),
                next_step: format!("If you are not sure of your passcode, do not guess. {unlock}"),
            });
        }
        _ => {}
    }
    warnings.sort_by_key(|w| std::cmp::Reverse(w.severity));
    warnings
}
