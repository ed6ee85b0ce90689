//! Builders shared by the policy tests: a fully good snapshot and config, so each test states
//! only the fact it changes.

#![allow(dead_code)]

use std::collections::BTreeSet;

use cardgate_policy::{
    Activity, CardState, CertificateStatus, Generation, HolderUuid, OdsCode, PolicyConfig,
    RoleProfileId, RoleProfileView, SessionView,
};

pub fn ods(code: &str) -> OdsCode {
    OdsCode::new(code).expect("test ODS code")
}

/// A workstation at FA123 accepting locums.
pub fn config() -> PolicyConfig {
    PolicyConfig::new([ods("FA123")], true).expect("test config")
}

pub fn role(id: &str, ods_code: &str, activities: &[Activity]) -> RoleProfileView {
    RoleProfileView {
        id: RoleProfileId::new(id).expect("test role id"),
        ods_code: ods(ods_code),
        activities: activities.iter().cloned().collect::<BTreeSet<_>>(),
    }
}

/// A logged-in pharmacist at FA123 with every EPS and SCR activity: every check passes.
pub fn good_view() -> SessionView {
    SessionView {
        card: CardState::Present,
        certificate: CertificateStatus::Usable,
        logged_in: true,
        session_expired: false,
        endpoint_reachable: true,
        selected_role: Some(role("RP-1001", "FA123", &Activity::KNOWN[..6])),
        holder: Some(HolderUuid::new("555000111222").expect("test uuid")),
        generation: Generation::new(42),
    }
}
