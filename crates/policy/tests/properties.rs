//! Property tests: for random snapshots, configurations, actions and requested codes,
//! `decide` agrees with an oracle written out plainly here, and never allows anything
//! without a card.
#![allow(clippy::expect_used)] // Tests may expect: a panic is the failure report.

use std::collections::BTreeSet;

use cardgate_policy::{
    Action, Activity, CardState, CertificateStatus, Generation, HolderUuid, OdsCode, PolicyConfig,
    Reason, RoleProfileId, RoleProfileView, SessionView, decide,
};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

/// Codes the generators draw from: three pharmacies and the locum organisation.
const CODES: [&str; 4] = ["FA123", "FQ987", "FB999", "FFFFF"];

fn ods(code: &str) -> OdsCode {
    OdsCode::new(code).expect("test ODS code")
}

// Weighted towards the good value of each fact, so that a fair share of the generated
// requests pass every check and the "allowed" side of the oracle is exercised too.
fn card() -> impl Strategy<Value = CardState> {
    prop_oneof![
        6 => Just(CardState::Present),
        1 => Just(CardState::Absent),
        1 => Just(CardState::Blocked),
    ]
}

fn certificate() -> impl Strategy<Value = CertificateStatus> {
    prop_oneof![
        12 => Just(CertificateStatus::Usable),
        2 => select(vec![
        CertificateStatus::Expired,
        CertificateStatus::Revoked,
        CertificateStatus::NotYetValid,
        CertificateStatus::Untrusted,
        CertificateStatus::RevocationUnknown,
        CertificateStatus::Unchecked,
    ]),
    ]
}

fn activities() -> impl Strategy<Value = BTreeSet<Activity>> {
    let mut pool = Activity::KNOWN.to_vec();
    pool.push(Activity::new("B0570").expect("activity"));
    subsequence(pool.clone(), 0..=pool.len()).prop_map(|v| v.into_iter().collect())
}

fn role() -> impl Strategy<Value = RoleProfileView> {
    (select(CODES.to_vec()), activities()).prop_map(|(code, activities)| RoleProfileView {
        id: RoleProfileId::new("RP-1001").expect("id"),
        ods_code: ods(code),
        activities,
    })
}

fn view() -> impl Strategy<Value = SessionView> {
    (
        card(),
        certificate(),
        proptest::bool::weighted(0.85),
        proptest::bool::weighted(0.15),
        proptest::bool::weighted(0.85),
        proptest::option::weighted(0.8, role()),
        proptest::option::weighted(0.9, Just(HolderUuid::new("555000111222").expect("uuid"))),
        any::<u64>(),
    )
        .prop_map(
            |(
                card,
                certificate,
                logged_in,
                session_expired,
                endpoint_reachable,
                role,
                holder,
                g,
            )| {
                SessionView {
                    card,
                    certificate,
                    logged_in,
                    session_expired,
                    endpoint_reachable,
                    selected_role: role,
                    holder,
                    generation: Generation::new(g),
                }
            },
        )
}

fn action() -> impl Strategy<Value = Action> {
    select(Action::ALL.to_vec())
}

fn config() -> impl Strategy<Value = PolicyConfig> {
    (
        // One to three real pharmacy codes (never FFFFF: the config refuses it).
        subsequence(CODES[..3].to_vec(), 1..=3),
        any::<bool>(),
        proptest::collection::vec((action(), select(Activity::KNOWN.to_vec())), 0..3),
    )
        .prop_map(|(codes, locum, remaps)| {
            let mut config =
                PolicyConfig::new(codes.into_iter().map(ods), locum).expect("valid config");
            for (action, activity) in remaps {
                config = config
                    .with_activity(action, activity)
                    .expect("known activity");
            }
            config
        })
}

/// Whether the request should be allowed: every precondition, spelled out.
fn oracle_allowed(config: &PolicyConfig, v: &SessionView, action: Action, req: &OdsCode) -> bool {
    let Some(role) = &v.selected_role else {
        return false;
    };
    let organisation_ok = role.ods_code == *req
        || (role.ods_code.as_str() == "FFFFF" && config.accepts_locum_profiles());
    v.card == CardState::Present
        && v.certificate == CertificateStatus::Usable
        && v.logged_in
        && v.holder.is_some()
        && !v.session_expired
        && v.endpoint_reachable
        && config.workstation_ods_codes().contains(req)
        && organisation_ok
        && role.activities.contains(config.activity_for(action))
}

/// The reason the documented order gives: the first failing check in the list.
fn oracle_reason(config: &PolicyConfig, v: &SessionView, action: Action, req: &OdsCode) -> Reason {
    let role = v.selected_role.as_ref();
    let at_locum = role.is_some_and(|r| r.ods_code.as_str() == "FFFFF");
    let at_requested = role.is_some_and(|r| r.ods_code == *req);
    let checks = [
        (v.card == CardState::Absent, Reason::NoCard),
        (v.card == CardState::Blocked, Reason::CardLocked),
        (
            v.certificate == CertificateStatus::Revoked,
            Reason::CertificateRevoked,
        ),
        (
            v.certificate == CertificateStatus::Expired,
            Reason::CertificateExpired,
        ),
        (
            v.certificate == CertificateStatus::NotYetValid,
            Reason::CertificateNotYetValid,
        ),
        (
            v.certificate == CertificateStatus::Untrusted,
            Reason::CertificateUntrusted,
        ),
        (
            v.certificate == CertificateStatus::RevocationUnknown,
            Reason::CertificateRevocationUnknown,
        ),
        (
            v.certificate == CertificateStatus::Unchecked,
            Reason::CertificateUnchecked,
        ),
        (!v.logged_in || v.holder.is_none(), Reason::NotLoggedIn),
        (v.session_expired, Reason::SessionExpired),
        (
            !config.workstation_ods_codes().contains(req),
            Reason::OdsNotConfigured,
        ),
        (role.is_none(), Reason::NoRoleSelected),
        (!at_requested && !at_locum, Reason::WrongOrganisation),
        (
            !at_requested && at_locum && !config.accepts_locum_profiles(),
            Reason::LocumNotAccepted,
        ),
        (
            role.is_some_and(|r| !r.activities.contains(config.activity_for(action))),
            Reason::MissingActivity,
        ),
        (!v.endpoint_reachable, Reason::EndpointUnavailable),
    ];
    checks
        .into_iter()
        .find(|(failing, _)| *failing)
        .map_or(Reason::Allowed, |(_, reason)| reason)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn allowed_only_when_every_precondition_holds(
        config in config(),
        view in view(),
        action in action(),
        req in select(CODES.to_vec()),
    ) {
        let req = ods(req);
        let decision = decide(&config, &view, action, &req);
        prop_assert_eq!(decision.is_allowed(), oracle_allowed(&config, &view, action, &req));
        prop_assert_eq!(decision.is_allowed(), decision.reason() == Reason::Allowed);
        prop_assert_eq!(decision.reason(), oracle_reason(&config, &view, action, &req));
        prop_assert_eq!(decision.generation(), view.generation);
        prop_assert!(decision.is_current(view.generation));
        if view.generation.get() < u64::MAX {
            prop_assert!(!decision.is_current(view.generation.next()));
        }
    }

    #[test]
    fn never_allowed_without_a_card(
        config in config(),
        mut view in view(),
        action in action(),
        req in select(CODES.to_vec()),
    ) {
        view.card = CardState::Absent;
        let decision = decide(&config, &view, action, &ods(req));
        prop_assert!(!decision.is_allowed());
        prop_assert_eq!(decision.reason(), Reason::NoCard);
    }

    #[test]
    fn unknown_action_names_are_refused(name in "[a-z-]{0,24}") {
        let known = Action::ALL.iter().any(|a| a.name() == name);
        prop_assert_eq!(name.parse::<Action>().is_ok(), known);
    }
}

/// The generators must reach both answers often enough for the property to mean something.
#[test]
fn generators_reach_allowed_and_every_reason() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let strategy = (config(), view(), action(), select(CODES.to_vec()));
    let mut runner = TestRunner::deterministic();
    let mut seen = BTreeSet::new();
    let mut allowed = 0;
    for _ in 0..20_000 {
        let (config, view, action, req) =
            strategy.new_tree(&mut runner).expect("generate").current();
        let decision = decide(&config, &view, action, &ods(req));
        allowed += usize::from(decision.is_allowed());
        seen.insert(decision.reason().code());
    }
    assert!(
        allowed >= 500,
        "only {allowed} of 20000 generated requests were allowed"
    );
    let all: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
    let missing: Vec<_> = all.difference(&seen).collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
}
