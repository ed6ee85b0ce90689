//! The gate: `Authorise` answers the policy's decision over the live session, audited before
//! it is answered (fail closed).

use cardgate_audit::{AuditEvent, CallerIdentity};
use cardgate_certs::{FindingKind, Verdict};
use cardgate_ipc::AuthoriseAnswer;
use cardgate_piv::PasscodeStatus;
use cardgate_policy::{
    Action, Activity, CardState, CertificateStatus, Decision, Generation, OdsCode, RoleProfileId,
    RoleProfileView, SessionView, decide,
};
use cardgate_spine::wire::RoleProfile;
use tokio::time::Instant;

use super::state::State;
use super::{Agent, lock, now, printable};
use crate::error::CoreError;

/// The policy's view of a role profile; `None` when the endpoint sent ids the policy cannot
/// accept (then no role counts as selected, which refuses, never allows).
pub(super) fn role_view(p: &RoleProfile) -> Option<RoleProfileView> {
    Some(RoleProfileView {
        id: RoleProfileId::new(&p.id).ok()?,
        ods_code: OdsCode::new(&p.ods_code).ok()?,
        activities: p
            .activities
            .iter()
            .filter_map(|a| Activity::new(a).ok())
            .collect(),
    })
}

impl Agent {
    /// `Authorise`: the policy's answer under the current generation, audited. Blocks the
    /// calling thread for the audit sync; the D-Bus layer uses [`Agent::authorise_async`].
    pub fn authorise(
        &self,
        caller: &CallerIdentity,
        action: &str,
        ods_code: &str,
    ) -> Result<AuthoriseAnswer, CoreError> {
        let (decision, entry) = self.decide(caller, action, ods_code, None)?;
        self.audit(&entry)?;
        Ok(self.answer(&decision))
    }

    /// [`Agent::authorise`] without blocking a runtime worker during the audit sync; many
    /// concurrent callers share one sync.
    pub async fn authorise_async(
        &self,
        caller: &CallerIdentity,
        action: &str,
        ods_code: &str,
    ) -> Result<AuthoriseAnswer, CoreError> {
        let (decision, entry) = self.decide(caller, action, ods_code, None)?;
        self.audit_async(entry).await?;
        Ok(self.answer(&decision))
    }

    /// `Web1.Authorise`: the same decision as [`Agent::authorise_async`] for a web page whose
    /// origin was checked, the audit entry carrying it.
    pub async fn authorise_for_origin(
        &self,
        caller: &CallerIdentity,
        origin: &cardgate_webauth::WebOrigin,
        action: &str,
        ods_code: &str,
    ) -> Result<AuthoriseAnswer, CoreError> {
        let (decision, entry) = self.decide(caller, action, ods_code, Some(origin.as_str()))?;
        self.audit_async(entry).await?;
        Ok(self.answer(&decision))
    }

    /// The policy's decision and the audit entry that records it (with the web page's
    /// `origin` when a browser asked); arguments are checked first.
    pub(super) fn decide(
        &self,
        caller: &CallerIdentity,
        action: &str,
        ods_code: &str,
        origin: Option<&str>,
    ) -> Result<(Decision, AuditEvent), CoreError> {
        let parsed_action: Action = action.parse().map_err(|_| {
            CoreError::InvalidArgument(format!(
                "action: \"{}\" is not one of {}",
                printable(action),
                Action::valid_names()
            ))
        })?;
        let ods = OdsCode::new(ods_code)
            .map_err(|e| CoreError::InvalidArgument(format!("ods_code: {e}")))?;
        let decision = {
            let state = lock(&self.shared.state);
            let view = self.view(&state);
            decide(&self.shared.config.policy, &view, parsed_action, &ods)
        };
        let entry = AuditEvent::AuthorisationDecision {
            holder: decision
                .holder()
                .and_then(|h| cardgate_piv::HolderUuid::new(h.as_str()).ok()),
            caller: caller.clone(),
            action: parsed_action.name().to_owned(),
            ods: Some(ods.as_str().to_owned()),
            allowed: decision.is_allowed(),
            reason_code: decision.reason().code().to_owned(),
            session_generation: Some(decision.generation().get()),
            origin: origin.map(str::to_owned),
        };
        Ok((decision, entry))
    }

    /// The answer to a decision whose audit entry is on disk; an allowed one still current
    /// counts as activity.
    pub(super) fn answer(&self, decision: &Decision) -> AuthoriseAnswer {
        if decision.is_allowed() {
            let mut state = lock(&self.shared.state);
            if state.generation == decision.generation().get() {
                state.last_activity = Instant::now();
                if state.card_left_signalled {
                    // The card-left timer re-arms: tell the timers.
                    state.card_left_signalled = false;
                    self.shared.timers_changed.notify_one();
                }
            }
        }
        AuthoriseAnswer {
            allowed: decision.is_allowed(),
            reason: decision.reason().code().to_owned(),
            message: decision.message().to_owned(),
            generation: decision.generation().get(),
        }
    }

    /// The policy's snapshot of the state.
    ///
    /// `mobility`: while a session's card is away and the re-authentication timer runs (and
    /// no other card is in), the card counts as present-by-mobility, its certificate as
    /// checked at log-in, the holder as the session's; once the timer ran out (or under
    /// `normal` and `session-lock`) an absent card is absent and the policy answers `no-card`.
    pub(super) fn view(&self, state: &State) -> SessionView {
        let active = state.active_card();
        if active.is_none()
            && let Some(session) = state.away_session()
        {
            return SessionView {
                card: CardState::Present,
                certificate: if session.spine.certificate_not_after > now() {
                    CertificateStatus::Usable
                } else {
                    CertificateStatus::Expired
                },
                logged_in: true,
                session_expired: state.last_activity.elapsed() >= session.max_idle,
                endpoint_reachable: !state.endpoint_unreachable,
                selected_role: session.selected.as_ref().and_then(role_view),
                holder: cardgate_policy::HolderUuid::new(session.holder.as_str()).ok(),
                generation: Generation::new(state.generation),
            };
        }
        let report = active.and_then(|(_, card)| card.report.as_ref());
        let card = match (active, report) {
            (None, _) => CardState::Absent,
            (Some(_), Some(r)) if r.passcode == PasscodeStatus::Blocked => CardState::Blocked,
            (Some(_), _) => CardState::Present,
        };
        let certificate = match report.map(|r| r.certificate.verdict()) {
            None => CertificateStatus::Unchecked,
            Some(Verdict::Unusable { reason }) => match reason.kind {
                FindingKind::Expired => CertificateStatus::Expired,
                FindingKind::Revoked => CertificateStatus::Revoked,
                FindingKind::NotYetValid => CertificateStatus::NotYetValid,
                FindingKind::ChainNotVerified => CertificateStatus::Untrusted,
                FindingKind::RevocationUnknown => CertificateStatus::RevocationUnknown,
                _ => CertificateStatus::Unchecked,
            },
            Some(_) => CertificateStatus::Usable,
        };
        let session = state.live_session();
        let session_expired = session.is_some_and(|s| state.last_activity.elapsed() >= s.max_idle);
        SessionView {
            card,
            certificate,
            logged_in: session.is_some(),
            session_expired,
            endpoint_reachable: !state.endpoint_unreachable,
            selected_role: session
                .and_then(|s| s.selected.as_ref())
                .and_then(role_view),
            holder: report.and_then(|r| {
                cardgate_policy::HolderUuid::new(r.identity.holder_uuid.as_str()).ok()
            }),
            generation: Generation::new(state.generation),
        }
    }
}
