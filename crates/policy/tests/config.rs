//! The policy table of the daemon's configuration file: the defaults, round trips, and every
//! kind of bad input refused with a message that names its key.
#![allow(clippy::expect_used)] // Tests may expect: a panic is the failure report.

mod support;

use cardgate_policy::{Action, Activity, OdsCode, PolicyConfig, PolicyError};
use support::ods;

/// The daemon nests the policy under its own table; the tests do the same.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonFile {
    policy: PolicyConfig,
}

fn parse(text: &str) -> Result<PolicyConfig, String> {
    toml::from_str::<DaemonFile>(text)
        .map(|f| f.policy)
        .map_err(|e| e.to_string())
}

/// Parses `text`, expects a refusal, and checks the message names `key` and says `hint`.
fn refused(text: &str, key: &str, hint: &str) {
    let err = parse(text).expect_err(text);
    assert!(err.contains(key), "error does not name `{key}`:\n{err}");
    assert!(err.contains(hint), "error does not say {hint:?}:\n{err}");
}

#[test]
fn minimal_table_gets_the_protocol_activity_map() {
    let config = parse(
        r#"
        [policy]
        workstation_ods_codes = ["FA123"]
        accept_locum_profiles = false
        "#,
    )
    .expect("valid");
    assert_eq!(config.workstation_ods_codes(), &[ods("FA123")]);
    assert!(!config.accepts_locum_profiles());
    let map: Vec<(&str, &str)> = config
        .activity_map()
        .map(|(a, act)| (a.name(), act.as_str()))
        .collect();
    assert_eq!(
        map,
        [
            ("nominate-set", "eps.nominate"),
            ("nominate-change", "eps.nominate"),
            ("nominate-delete", "eps.nominate"),
            ("download", "eps.download"),
            ("return", "eps.return"),
            ("dispense-notification", "eps.dispense-notify"),
            ("claim", "eps.claim"),
            ("view-scr", "scr.view"),
        ]
    );
    assert_eq!(
        config,
        PolicyConfig::new([ods("FA123")], false).expect("new")
    );
}

#[test]
fn two_codes_during_an_ods_change_and_an_override() {
    let config = parse(
        r#"
        [policy]
        workstation_ods_codes = ["FQ987", "FA123"]
        accept_locum_profiles = true
        [policy.actions]
        nominate-delete = "admin.unlock"
        "#,
    )
    .expect("valid");
    assert!(config.serves(&ods("FQ987")) && config.serves(&ods("FA123")));
    assert!(!config.serves(&ods("FB999")));
    assert!(config.accepts_locum_profiles());
    assert_eq!(
        config.activity_for(Action::NominateDelete),
        &Activity::ADMIN_UNLOCK
    );
    // Omitted actions keep their defaults.
    assert_eq!(
        config.activity_for(Action::NominateSet),
        &Activity::EPS_NOMINATE
    );
}

#[test]
fn serialises_and_reads_back_the_same() {
    let config = PolicyConfig::new([ods("FA123"), ods("FQ987")], true)
        .and_then(|c| c.with_activity(Action::ViewScr, Activity::EPS_DOWNLOAD))
        .expect("config");
    let text = toml::to_string(&config).expect("serialise");
    let back: PolicyConfig = toml::from_str(&text).expect("read back");
    assert_eq!(back, config);
}

#[test]
fn unknown_keys_are_refused_by_name() {
    refused(
        r#"
        [policy]
        workstation_ods_codes = ["FA123"]
        accept_locum_profiles = false
        accept_locums = true
        "#,
        "accept_locums",
        "unknown field",
    );
}

#[test]
fn missing_keys_are_refused_by_name() {
    refused(
        r#"
        [policy]
        workstation_ods_codes = ["FA123"]
        "#,
        "accept_locum_profiles",
        "missing",
    );
    refused(
        r#"
        [policy]
        accept_locum_profiles = true
        "#,
        "workstation_ods_codes",
        "missing",
    );
}

#[test]
fn wrong_types_are_refused_at_their_key() {
    refused(
        r#"
        [policy]
        workstation_ods_codes = ["FA123"]
        accept_locum_profiles = "yes"
        "#,
        "accept_locum_profiles",
        "boolean",
    );
    refused(
        r#"
        [policy]
        workstation_ods_codes = "FA123"
        accept_locum_profiles = true
        "#,
        "workstation_ods_codes",
        "sequence",
    );
}

#[test]
fn bad_ods_codes_are_refused_naming_the_entry() {
    refused(
        r#"
        [policy]
        workstation_ods_codes = ["FA123", "fq987"]
        accept_locum_profiles = true
        "#,
        "workstation_ods_codes[1]",
        "use \"FQ987\"",
    );
    refused(
        r#"
        [policy]
        workstation_ods_codes = ["FA 23"]
        accept_locum_profiles = true
        "#,
        "workstation_ods_codes[0]",
        "capital letters and digits",
    );
    refused(
        r#"
        [policy]
        workstation_ods_codes = ["FA1234567"]
        accept_locum_profiles = true
        "#,
        "workstation_ods_codes[0]",
        "3 to 6",
    );
    refused(
        r#"
        [policy]
        workstation_ods_codes = []
        accept_locum_profiles = true
        "#,
        "workstation_ods_codes",
        "no ODS code is listed",
    );
    refused(
        r#"
        [policy]
        workstation_ods_codes = ["FA123", "FA123"]
        accept_locum_profiles = true
        "#,
        "workstation_ods_codes[1]",
        "more than once",
    );
}

#[test]
fn the_locum_code_is_not_a_workstation_code() {
    refused(
        r#"
        [policy]
        workstation_ods_codes = ["FA123", "FFFFF"]
        accept_locum_profiles = false
        "#,
        "workstation_ods_codes[1]",
        "accept_locum_profiles = true",
    );
    assert!(matches!(
        PolicyConfig::new([OdsCode::locum()], true),
        Err(PolicyError::InvalidConfig { key, .. }) if key == "workstation_ods_codes[0]"
    ));
}

#[test]
fn bad_action_map_entries_are_refused_naming_the_entry() {
    refused(
        r#"
        [policy]
        workstation_ods_codes = ["FA123"]
        accept_locum_profiles = true
        [policy.actions]
        downlaod = "eps.download"
        "#,
        "actions.downlaod",
        "dispense-notification",
    );
    refused(
        r#"
        [policy]
        workstation_ods_codes = ["FA123"]
        accept_locum_profiles = true
        [policy.actions]
        view-scr = "scr.veiw"
        "#,
        "actions.view-scr",
        "scr.view",
    );
    refused(
        r#"
        [policy]
        workstation_ods_codes = ["FA123"]
        accept_locum_profiles = true
        [policy.actions]
        claim = ""
        "#,
        "actions.claim",
        "not an activity",
    );
    assert!(matches!(
        PolicyConfig::new([ods("FA123")], true)
            .and_then(|c| c.with_activity(Action::Claim, Activity::new("eps.claims")?)),
        Err(PolicyError::InvalidConfig { key, .. }) if key == "actions.claim"
    ));
}

#[test]
fn value_types_check_their_shape() {
    for good in ["FA123", "FFFFF", "ABC", "Y12345"] {
        assert_eq!(
            OdsCode::new(good).map(|c| c.to_string()),
            Ok(good.to_owned())
        );
    }
    for bad in ["", "AB", "ABCDEFG", "fa123", "FA-12", "FA12 ", "FÄ123"] {
        assert!(
            matches!(OdsCode::new(bad), Err(PolicyError::InvalidOdsCode { .. })),
            "{bad:?} accepted"
        );
    }
    assert!(OdsCode::locum().is_locum() && !ods("FA123").is_locum());
    assert!(
        Activity::new("B0570").is_ok(),
        "unknown but well-formed activities are kept"
    );
    assert!(!Activity::new("B0570").expect("shape").is_known());
    for bad in ["", "eps download", &"a".repeat(65)] {
        assert!(Activity::new(bad).is_err(), "{bad:?} accepted");
    }
    assert!(cardgate_policy::HolderUuid::new("555000111222").is_ok());
    for bad in ["55500011122", "5550001112223", "55500011122x"] {
        assert!(
            cardgate_policy::HolderUuid::new(bad).is_err(),
            "{bad:?} accepted"
        );
    }
    assert!(cardgate_policy::RoleProfileId::new("RP-1001").is_ok());
    assert!(cardgate_policy::RoleProfileId::new("RP 1001").is_err());
    assert!(cardgate_policy::RoleProfileId::new("").is_err());
}
