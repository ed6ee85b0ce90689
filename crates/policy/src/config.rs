//! The workstation's gate policy as it appears in the daemon's configuration file: which
//! pharmacy (ODS codes) this workstation serves, whether locum `FFFFF` profiles are accepted,
//! and which Spine activity each action needs. Validated when it is read, so a bad file stops
//! the daemon at start-up with the key to fix, instead of refusing prescriptions later.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Action, Activity, OdsCode, PolicyError};

/// The policy table of the daemon's configuration, validated.
///
/// In TOML (the daemon decides the table's name; `[policy]` is assumed here):
///
/// ```toml
/// [policy]
/// # This pharmacy's ODS code. During an ODS code change list both: the new code is added
/// # before the old one is removed, and requests for either are served meanwhile.
/// workstation_ods_codes = ["FA123", "FQ987"]
/// # Let locums use their profile at the generic locum organisation (FFFFF) here.
/// accept_locum_profiles = true
///
/// # Optional: the activity each action needs. Omitted actions keep their default
/// # (the action table in the crate documentation).
/// [policy.actions]
/// nominate-delete = "eps.nominate"
/// ```
///
/// Both top-level keys are required: whether locums may work at a pharmacy is a decision
/// somebody must make on purpose, not a default to discover later. Unknown keys, unknown
/// actions, unknown activities, malformed or duplicate ODS codes and the locum code `FFFFF`
/// as a workstation code are all refused, each naming its key.
///
/// Remapping an action to a different activity changes who may do it (mapping `download` to
/// `scr.view` would let anyone with an SCR role download prescriptions); the map exists for
/// deliberate, reviewed changes only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPolicyConfig", into = "RawPolicyConfig")]
pub struct PolicyConfig {
    workstation_ods_codes: Vec<OdsCode>,
    accept_locum_profiles: bool,
    /// Indexed by [`Action::index`]; always complete.
    activities: [Activity; Action::COUNT],
}

/// The policy table exactly as written, before validation.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicyConfig {
    workstation_ods_codes: Vec<String>,
    accept_locum_profiles: bool,
    #[serde(default)]
    actions: BTreeMap<String, String>,
}

impl PolicyConfig {
    /// A policy for a workstation serving `workstation_ods_codes`, with the default
    /// action-to-activity map.
    ///
    /// Refuses an empty list, a duplicate, and the locum code `FFFFF` (a workstation belongs
    /// to a real pharmacy; locums are let in by `accept_locum_profiles`, not by listing
    /// `FFFFF`, which would otherwise bypass that switch).
    pub fn new(
        workstation_ods_codes: impl IntoIterator<Item = OdsCode>,
        accept_locum_profiles: bool,
    ) -> Result<PolicyConfig, PolicyError> {
        let codes: Vec<OdsCode> = workstation_ods_codes.into_iter().collect();
        check_workstation_codes(&codes)?;
        Ok(PolicyConfig {
            workstation_ods_codes: codes,
            accept_locum_profiles,
            activities: default_activities(),
        })
    }

    /// This policy with `action` needing `activity` instead.
    ///
    /// Only [`Activity::KNOWN`] activities are accepted, so a typo cannot silently make an
    /// action impossible.
    pub fn with_activity(
        mut self,
        action: Action,
        activity: Activity,
    ) -> Result<PolicyConfig, PolicyError> {
        if !activity.is_known() {
            return Err(unknown_activity(action, activity.as_str()));
        }
        self.activities[action.index()] = activity;
        Ok(self)
    }

    /// The ODS codes this workstation serves, in the order configured.
    pub fn workstation_ods_codes(&self) -> &[OdsCode] {
        &self.workstation_ods_codes
    }

    /// Whether `ods` is one of this workstation's codes.
    pub fn serves(&self, ods: &OdsCode) -> bool {
        self.workstation_ods_codes.contains(ods)
    }

    /// Whether a role profile at the generic locum organisation (`FFFFF`) may act for this
    /// workstation's pharmacy.
    pub fn accepts_locum_profiles(&self) -> bool {
        self.accept_locum_profiles
    }

    /// The activity the selected role profile must hold for `action`.
    pub fn activity_for(&self, action: Action) -> &Activity {
        &self.activities[action.index()]
    }

    /// The whole action-to-activity map, in [`Action::ALL`] order (for `doctor` output and
    /// the daemon's effective-configuration dump).
    pub fn activity_map(&self) -> impl Iterator<Item = (Action, &Activity)> + '_ {
        Action::ALL
            .into_iter()
            .map(move |a| (a, self.activity_for(a)))
    }
}

/// The map in `docs/spine-protocol.md`, from the action table.
fn default_activities() -> [Activity; Action::COUNT] {
    Action::ALL.map(Action::default_activity)
}

fn known_activity_names() -> String {
    Activity::KNOWN
        .iter()
        .map(Activity::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_activity(action: Action, value: &str) -> PolicyError {
    PolicyError::InvalidConfig {
        key: format!("actions.{action}"),
        problem: format!(
            "{value:?} is not an activity in the Spine protocol; use one of: {}",
            known_activity_names()
        ),
    }
}

fn check_workstation_codes(codes: &[OdsCode]) -> Result<(), PolicyError> {
    if codes.is_empty() {
        return Err(PolicyError::InvalidConfig {
            key: "workstation_ods_codes".into(),
            problem: "no ODS code is listed; write this pharmacy's ODS code, e.g. \
                      workstation_ods_codes = [\"FA123\"] (during an ODS code change, list both \
                      the new and the old code)"
                .into(),
        });
    }
    for (i, code) in codes.iter().enumerate() {
        if code.is_locum() {
            return Err(PolicyError::InvalidConfig {
                key: format!("workstation_ods_codes[{i}]"),
                problem: format!(
                    "{} is the generic locum organisation, not a pharmacy: list this \
                     pharmacy's own ODS code(s), and set accept_locum_profiles = true to let \
                     locums work here",
                    OdsCode::LOCUM
                ),
            });
        }
        if codes[..i].contains(code) {
            return Err(PolicyError::InvalidConfig {
                key: format!("workstation_ods_codes[{i}]"),
                problem: format!("{code} is listed more than once; list each code once"),
            });
        }
    }
    Ok(())
}

impl TryFrom<RawPolicyConfig> for PolicyConfig {
    type Error = PolicyError;

    fn try_from(raw: RawPolicyConfig) -> Result<Self, Self::Error> {
        let mut codes = Vec::with_capacity(raw.workstation_ods_codes.len());
        for (i, text) in raw.workstation_ods_codes.iter().enumerate() {
            let code = OdsCode::new(text).map_err(|e| PolicyError::InvalidConfig {
                key: format!("workstation_ods_codes[{i}]"),
                problem: e.to_string(),
            })?;
            codes.push(code);
        }
        let mut config = PolicyConfig::new(codes, raw.accept_locum_profiles)?;
        for (name, value) in &raw.actions {
            let action: Action = name.parse().map_err(|_| PolicyError::InvalidConfig {
                key: format!("actions.{name}"),
                problem: format!(
                    "{name:?} is not an action; the actions are: {}",
                    Action::valid_names()
                ),
            })?;
            let activity = Activity::new(value).map_err(|_| unknown_activity(action, value))?;
            config = config.with_activity(action, activity)?;
        }
        Ok(config)
    }
}

impl From<PolicyConfig> for RawPolicyConfig {
    fn from(config: PolicyConfig) -> Self {
        RawPolicyConfig {
            actions: config
                .activity_map()
                .map(|(a, act)| (a.name().to_owned(), act.as_str().to_owned()))
                .collect(),
            workstation_ods_codes: config
                .workstation_ods_codes
                .into_iter()
                .map(String::from)
                .collect(),
            accept_locum_profiles: config.accept_locum_profiles,
        }
    }
}
