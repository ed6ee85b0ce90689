//! `decide` against hand-written cases: one table that reaches every reason, the precedence
//! between reasons, locum profiles on and off, a pharmacy in the middle of an ODS code change,
//! and generations.
#![allow(clippy::expect_used)] // Tests may expect: a panic is the failure report.

mod support;

use std::collections::BTreeSet;

use cardgate_policy::{
    Action, Activity, CardState, CertificateStatus, Generation, PolicyConfig, Reason, SessionView,
    decide,
};
use support::{config, good_view, ods, role};

struct Case {
    name: &'static str,
    /// Changes the good snapshot and config into the situation under test.
    change: fn(&mut SessionView, &mut PolicyConfig),
    action: Action,
    requested: &'static str,
    expect: Reason,
}

fn no_change(_: &mut SessionView, _: &mut PolicyConfig) {}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "everything in place",
            change: no_change,
            action: Action::Download,
            requested: "FA123",
            expect: Reason::Allowed,
        },
        Case {
            name: "card removed",
            change: |v, _| v.card = CardState::Absent,
            action: Action::Download,
            requested: "FA123",
            expect: Reason::NoCard,
        },
        Case {
            name: "card blocked after three wrong passcodes",
            change: |v, _| v.card = CardState::Blocked,
            action: Action::Claim,
            requested: "FA123",
            expect: Reason::CardLocked,
        },
        Case {
            name: "card cancelled by the RA",
            change: |v, _| v.certificate = CertificateStatus::Revoked,
            action: Action::Return,
            requested: "FA123",
            expect: Reason::CertificateRevoked,
        },
        Case {
            name: "certificate expired",
            change: |v, _| v.certificate = CertificateStatus::Expired,
            action: Action::Download,
            requested: "FA123",
            expect: Reason::CertificateExpired,
        },
        Case {
            name: "workstation clock behind the certificate",
            change: |v, _| v.certificate = CertificateStatus::NotYetValid,
            action: Action::Download,
            requested: "FA123",
            expect: Reason::CertificateNotYetValid,
        },
        Case {
            name: "certificate from another CA",
            change: |v, _| v.certificate = CertificateStatus::Untrusted,
            action: Action::Download,
            requested: "FA123",
            expect: Reason::CertificateUntrusted,
        },
        Case {
            name: "CRL too old to confirm the card is not cancelled",
            change: |v, _| v.certificate = CertificateStatus::RevocationUnknown,
            action: Action::Download,
            requested: "FA123",
            expect: Reason::CertificateRevocationUnknown,
        },
        Case {
            name: "card just inserted, certificate not checked yet",
            change: |v, _| v.certificate = CertificateStatus::Unchecked,
            action: Action::Download,
            requested: "FA123",
            expect: Reason::CertificateUnchecked,
        },
        Case {
            name: "card in but nobody logged in",
            change: |v, _| v.logged_in = false,
            action: Action::DispenseNotification,
            requested: "FA123",
            expect: Reason::NotLoggedIn,
        },
        Case {
            name: "logged in but no holder to attribute the action to",
            change: |v, _| v.holder = None,
            action: Action::DispenseNotification,
            requested: "FA123",
            expect: Reason::NotLoggedIn,
        },
        Case {
            name: "session idle too long",
            change: |v, _| v.session_expired = true,
            action: Action::Download,
            requested: "FA123",
            expect: Reason::SessionExpired,
        },
        Case {
            name: "PMR asks for another pharmacy",
            change: no_change,
            action: Action::Download,
            requested: "FB999",
            expect: Reason::OdsNotConfigured,
        },
        Case {
            name: "PMR asks for the locum organisation itself",
            change: no_change,
            action: Action::Download,
            requested: "FFFFF",
            expect: Reason::OdsNotConfigured,
        },
        Case {
            name: "no role selected",
            change: |v, _| v.selected_role = None,
            action: Action::Download,
            requested: "FA123",
            expect: Reason::NoRoleSelected,
        },
        Case {
            name: "locum profile, locums not accepted",
            change: |v, c| {
                v.selected_role = Some(role("RP-L", "FFFFF", &[Activity::EPS_DOWNLOAD]));
                *c = PolicyConfig::new([ods("FA123")], false).expect("config");
            },
            action: Action::Download,
            requested: "FA123",
            expect: Reason::LocumNotAccepted,
        },
        Case {
            name: "locum profile, locums accepted",
            change: |v, _| v.selected_role = Some(role("RP-L", "FFFFF", &[Activity::EPS_DOWNLOAD])),
            action: Action::Download,
            requested: "FA123",
            expect: Reason::Allowed,
        },
        Case {
            name: "role at another pharmacy",
            change: |v, _| v.selected_role = Some(role("RP-2", "FB999", &Activity::KNOWN)),
            action: Action::Download,
            requested: "FA123",
            expect: Reason::WrongOrganisation,
        },
        Case {
            name: "dispenser without an SCR role",
            change: |v, _| {
                v.selected_role = Some(role("RP-3", "FA123", &[Activity::EPS_DOWNLOAD]));
            },
            action: Action::ViewScr,
            requested: "FA123",
            expect: Reason::MissingActivity,
        },
        Case {
            name: "all three nomination actions need eps.nominate",
            change: |v, _| {
                v.selected_role = Some(role("RP-3", "FA123", &[Activity::EPS_DOWNLOAD]));
            },
            action: Action::NominateDelete,
            requested: "FA123",
            expect: Reason::MissingActivity,
        },
        Case {
            name: "nomination with eps.nominate",
            change: |v, _| {
                v.selected_role = Some(role("RP-3", "FA123", &[Activity::EPS_NOMINATE]));
            },
            action: Action::NominateChange,
            requested: "FA123",
            expect: Reason::Allowed,
        },
        Case {
            name: "remapped action follows the config, not the default",
            change: |v, c| {
                v.selected_role = Some(role("RP-3", "FA123", &[Activity::EPS_NOMINATE]));
                *c = c
                    .clone()
                    .with_activity(Action::NominateDelete, Activity::ADMIN_UNLOCK)
                    .expect("remap");
            },
            action: Action::NominateDelete,
            requested: "FA123",
            expect: Reason::MissingActivity,
        },
        Case {
            name: "Spine unreachable",
            change: |v, _| v.endpoint_reachable = false,
            action: Action::Claim,
            requested: "FA123",
            expect: Reason::EndpointUnavailable,
        },
    ]
}

#[test]
fn table_of_situations() {
    let mut failures = Vec::new();
    for case in cases() {
        let mut view = good_view();
        let mut config = config();
        (case.change)(&mut view, &mut config);
        let decision = decide(&config, &view, case.action, &ods(case.requested));
        if decision.reason() != case.expect
            || decision.is_allowed() != (case.expect == Reason::Allowed)
            || decision.generation() != view.generation
        {
            failures.push(format!(
                "{}: expected {}, got {} (allowed={}, generation={})",
                case.name,
                case.expect,
                decision.reason(),
                decision.is_allowed(),
                decision.generation()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_table_reaches_every_reason() {
    let reached: BTreeSet<&str> = cases().iter().map(|c| c.expect.code()).collect();
    let all: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
    let missing: Vec<_> = all.difference(&reached).collect();
    assert!(missing.is_empty(), "no case reaches {missing:?}");
}

#[test]
fn card_removal_beats_everything_else() {
    // Everything that can be wrong is wrong, and the card is gone: the answer is no-card.
    let mut view = good_view();
    view.card = CardState::Absent;
    view.certificate = CertificateStatus::Expired;
    view.logged_in = false;
    view.session_expired = true;
    view.endpoint_reachable = false;
    view.selected_role = None;
    view.holder = None;
    let decision = decide(&config(), &view, Action::Download, &ods("FB999"));
    assert_eq!(decision.reason(), Reason::NoCard);
    assert!(!decision.is_allowed());
}

#[test]
fn absent_card_with_stale_login_is_refused() {
    // The race the daemon can produce: the card actor has reported removal but the session
    // still says logged in with a perfect role.
    let mut view = good_view();
    view.card = CardState::Absent;
    let decision = decide(&config(), &view, Action::Download, &ods("FA123"));
    assert_eq!(decision.reason(), Reason::NoCard);
}

#[test]
fn precedence_follows_the_documented_order() {
    // Pairs (earlier, later): with both wrong, the earlier one is reported.
    let mut view = good_view();
    view.card = CardState::Blocked;
    view.certificate = CertificateStatus::Revoked;
    assert_eq!(
        decide(&config(), &view, Action::Download, &ods("FA123")).reason(),
        Reason::CardLocked
    );

    let mut view = good_view();
    view.certificate = CertificateStatus::Expired;
    view.logged_in = false;
    assert_eq!(
        decide(&config(), &view, Action::Download, &ods("FA123")).reason(),
        Reason::CertificateExpired
    );

    let mut view = good_view();
    view.logged_in = false;
    view.session_expired = true;
    assert_eq!(
        decide(&config(), &view, Action::Download, &ods("FA123")).reason(),
        Reason::NotLoggedIn
    );

    let mut view = good_view();
    view.session_expired = true;
    assert_eq!(
        decide(&config(), &view, Action::Download, &ods("FB999")).reason(),
        Reason::SessionExpired
    );

    let mut view = good_view();
    view.selected_role = None;
    assert_eq!(
        decide(&config(), &view, Action::Download, &ods("FB999")).reason(),
        Reason::OdsNotConfigured
    );

    let mut view = good_view();
    view.selected_role = Some(role("RP-2", "FB999", &[]));
    assert_eq!(
        decide(&config(), &view, Action::Download, &ods("FA123")).reason(),
        Reason::WrongOrganisation
    );

    let mut view = good_view();
    view.selected_role = Some(role("RP-3", "FA123", &[]));
    view.endpoint_reachable = false;
    assert_eq!(
        decide(&config(), &view, Action::Download, &ods("FA123")).reason(),
        Reason::MissingActivity
    );
}

#[test]
fn locum_profile_works_at_any_workstation_code_only_when_accepted() {
    let on = PolicyConfig::new([ods("FA123"), ods("FQ987")], true).expect("config");
    let off = PolicyConfig::new([ods("FA123"), ods("FQ987")], false).expect("config");
    let mut view = good_view();
    view.selected_role = Some(role("RP-L", "FFFFF", &[Activity::EPS_DOWNLOAD]));

    for code in ["FA123", "FQ987"] {
        let yes = decide(&on, &view, Action::Download, &ods(code));
        assert!(yes.is_allowed(), "locum at {code} with locums on: {yes:?}");
        let no = decide(&off, &view, Action::Download, &ods(code));
        assert_eq!(
            no.reason(),
            Reason::LocumNotAccepted,
            "locum at {code} with locums off"
        );
    }
    // Accepting locums does not extend the workstation to other pharmacies.
    assert_eq!(
        decide(&on, &view, Action::Download, &ods("FB999")).reason(),
        Reason::OdsNotConfigured
    );
    // Nor does it waive the activity check.
    assert_eq!(
        decide(&on, &view, Action::Claim, &ods("FA123")).reason(),
        Reason::MissingActivity
    );
}

#[test]
fn pharmacy_mid_ods_change_serves_both_codes() {
    // The new code FQ987 has been added; the old FA123 is not removed yet.
    let config = PolicyConfig::new([ods("FQ987"), ods("FA123")], false).expect("config");
    let mut old_profile = good_view();
    old_profile.selected_role = Some(role("RP-OLD", "FA123", &[Activity::EPS_DOWNLOAD]));
    let mut new_profile = good_view();
    new_profile.selected_role = Some(role("RP-NEW", "FQ987", &[Activity::EPS_DOWNLOAD]));

    assert!(decide(&config, &old_profile, Action::Download, &ods("FA123")).is_allowed());
    assert!(decide(&config, &new_profile, Action::Download, &ods("FQ987")).is_allowed());
    // The profile must match the code the request is for: Spine records which organisation
    // the holder acted for.
    assert_eq!(
        decide(&config, &old_profile, Action::Download, &ods("FQ987")).reason(),
        Reason::WrongOrganisation
    );
    assert_eq!(
        decide(&config, &new_profile, Action::Download, &ods("FA123")).reason(),
        Reason::WrongOrganisation
    );
    // Once the old code is removed from the workstation, requests for it stop.
    let after = PolicyConfig::new([ods("FQ987")], false).expect("config");
    assert_eq!(
        decide(&after, &old_profile, Action::Download, &ods("FA123")).reason(),
        Reason::OdsNotConfigured
    );
}

#[test]
fn a_decision_is_void_once_the_generation_moves_on() {
    let view = good_view();
    let decision = decide(&config(), &view, Action::Download, &ods("FA123"));
    assert!(decision.is_allowed());
    assert!(decision.is_current(Generation::new(42)));
    assert!(!decision.is_current(Generation::new(43)));
    assert!(!decision.is_current(Generation::new(41)));
    assert!(!decision.is_current(view.generation.next()));
    assert_eq!(decision.generation().get(), 42);
}

#[test]
fn decision_records_who_and_which_role() {
    let view = good_view();
    let decision = decide(&config(), &view, Action::Download, &ods("FB999"));
    assert!(!decision.is_allowed());
    assert_eq!(decision.holder().map(|h| h.as_str()), Some("555000111222"));
    assert_eq!(decision.role_profile().map(|r| r.as_str()), Some("RP-1001"));
    assert_eq!(decision.message(), Reason::OdsNotConfigured.message());
}

#[test]
fn reason_codes_are_stable_unique_and_round_trip() {
    let expected = [
        "allowed",
        "no-card",
        "card-locked",
        "certificate-revoked",
        "certificate-expired",
        "certificate-not-yet-valid",
        "certificate-untrusted",
        "certificate-revocation-unknown",
        "certificate-unchecked",
        "not-logged-in",
        "session-expired",
        "ods-not-configured",
        "no-role-selected",
        "locum-not-accepted",
        "wrong-organisation",
        "missing-activity",
        "endpoint-unavailable",
    ];
    let codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
    assert_eq!(codes, expected);
    let messages: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.message()).collect();
    assert_eq!(
        messages.len(),
        Reason::ALL.len(),
        "two reasons share a message"
    );
    for reason in Reason::ALL {
        assert_eq!(reason.code().parse::<Reason>(), Ok(reason));
        assert_eq!(reason.to_string(), reason.code());
        // The serde name (used if a reply is serialised) is the same code.
        let toml =
            toml::to_string(&std::collections::BTreeMap::from([("r", reason)])).expect("serialise");
        assert_eq!(toml.trim(), format!("r = \"{}\"", reason.code()));
    }
    assert!("No-Card".parse::<Reason>().is_err());
}

#[test]
fn action_names_parse_and_unknown_ones_list_the_valid_names() {
    let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
    assert_eq!(
        names,
        [
            "nominate-set",
            "nominate-change",
            "nominate-delete",
            "download",
            "return",
            "dispense-notification",
            "claim",
            "view-scr",
        ]
    );
    for action in Action::ALL {
        assert_eq!(action.name().parse::<Action>(), Ok(action));
        assert_eq!(action.to_string(), action.name());
    }
    for bad in ["Download", "downloads", "", "view_scr", "eps.download"] {
        let err = bad.parse::<Action>().expect_err(bad).to_string();
        assert!(err.contains(&format!("{bad:?}")), "{err}");
        assert!(
            err.contains("nominate-set") && err.contains("view-scr"),
            "{err}"
        );
    }
}
