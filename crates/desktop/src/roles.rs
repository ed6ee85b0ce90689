//! What the role picker says and remembers, kept apart from GTK so it is tested here: each
//! profile's words ("Pharmacist · Cardgate Pharmacy (FA123)"), the locum mark, and the last
//! profile each holder chose on this workstation, which the picker offers first next time.
//!
//! The memory is one small text file in the user's state directory
//! (`$XDG_STATE_HOME/cardgate/last-role`, else `~/.local/state/cardgate/last-role`): a line
//! `<holder uuid> <profile id>` per holder. It holds no secret; a damaged line is skipped.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cardgate_ipc::{RoleProfileInfo, SelectedRoleProfile};

/// The ODS code of the generic locum organisation.
pub const LOCUM_ODS: &str = "FFFFF";

/// Whether `profile` is a locum's: the generic locum organisation, or a locum job role.
pub fn is_locum(profile: &RoleProfileInfo) -> bool {
    profile.ods_code.eq_ignore_ascii_case(LOCUM_ODS)
        || profile.job_role.to_ascii_lowercase().contains("locum")
}

/// The words on a profile's button: job role, organisation and its ODS code, then what
/// marks it out (locum, the last one chosen).
pub fn profile_label(profile: &RoleProfileInfo, last_chosen: bool) -> String {
    let organisation = if profile.organisation_name.is_empty() {
        profile.ods_code.clone()
    } else {
        format!("{} ({})", profile.organisation_name, profile.ods_code)
    };
    let mut label = format!("{} · {}", profile.job_role, organisation);
    if is_locum(profile) && !profile.job_role.to_ascii_lowercase().contains("locum") {
        label.push_str(" · locum");
    }
    if last_chosen {
        label.push_str(" · last used");
    }
    label
}

/// The selected profile in the status window's words (the same as its picker button).
pub fn selected_label(selected: &SelectedRoleProfile) -> String {
    profile_label(
        &RoleProfileInfo {
            id: selected.id.clone(),
            job_role: selected.job_role.clone(),
            ods_code: selected.ods_code.clone(),
            organisation_name: selected.organisation_name.clone(),
            activities: Vec::new(),
        },
        false,
    )
}

/// The last profile each holder chose here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LastRoles {
    by_holder: BTreeMap<String, String>,
}

impl LastRoles {
    /// Reads the file's text; lines that are not `<uuid> <id>` are skipped.
    pub fn parse(text: &str) -> LastRoles {
        let by_holder = text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                match (words.next(), words.next(), words.next()) {
                    (Some(uuid), Some(id), None) => Some((uuid.to_owned(), id.to_owned())),
                    _ => None,
                }
            })
            .collect();
        LastRoles { by_holder }
    }

    /// The file's text.
    pub fn render(&self) -> String {
        self.by_holder
            .iter()
            .map(|(uuid, id)| format!("{uuid} {id}\n"))
            .collect()
    }

    /// The profile `holder_uuid` chose last, if any.
    pub fn last(&self, holder_uuid: &str) -> Option<&str> {
        self.by_holder.get(holder_uuid).map(String::as_str)
    }

    /// Remembers `id` as `holder_uuid`'s choice. Values with white space cannot be kept in
    /// the file and are not remembered.
    pub fn choose(&mut self, holder_uuid: &str, id: &str) {
        let storable = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
        if storable(holder_uuid) && storable(id) {
            self.by_holder.insert(holder_uuid.to_owned(), id.to_owned());
        }
    }

    /// The remembered choices on this workstation (empty when there are none yet).
    pub fn load() -> LastRoles {
        state_file()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .map(|text| LastRoles::parse(&text))
            .unwrap_or_default()
    }

    /// Writes the choices back; a failure is logged, never shown (it only costs a click).
    pub fn save(&self) {
        let Some(path) = state_file() else { return };
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, self.render()));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot remember the role chosen");
        }
    }
}

/// Where the choices are kept.
fn state_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("cardgate").join("last-role"))
}

/// The profiles in the order the picker shows them: the last chosen first, the rest as the
/// agent listed them.
pub fn in_picker_order<'a>(
    profiles: &'a [RoleProfileInfo],
    last: Option<&str>,
) -> Vec<&'a RoleProfileInfo> {
    let mut ordered: Vec<&RoleProfileInfo> = profiles.iter().collect();
    if let Some(last) = last {
        ordered.sort_by_key(|p| p.id != last);
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(id: &str, role: &str, ods: &str, name: &str) -> RoleProfileInfo {
        RoleProfileInfo {
            id: id.into(),
            job_role: role.into(),
            ods_code: ods.into(),
            organisation_name: name.into(),
            activities: vec![],
        }
    }

    #[test]
    fn labels_name_role_organisation_and_code_and_mark_locums() {
        let own = profile("p1", "Pharmacist", "FA123", "Cardgate Pharmacy");
        assert_eq!(
            profile_label(&own, false),
            "Pharmacist · Cardgate Pharmacy (FA123)"
        );
        assert_eq!(
            profile_label(&own, true),
            "Pharmacist · Cardgate Pharmacy (FA123) · last used"
        );
        let locum = profile("p2", "Pharmacist", "FFFFF", "");
        assert!(is_locum(&locum));
        assert_eq!(profile_label(&locum, false), "Pharmacist · FFFFF · locum");
        let named = profile("p3", "Locum Pharmacist", "FB456", "High Street");
        assert!(is_locum(&named));
        assert_eq!(
            profile_label(&named, false),
            "Locum Pharmacist · High Street (FB456)"
        );
        assert!(!is_locum(&own));
    }

    #[test]
    fn the_memory_survives_a_round_trip_and_skips_damaged_lines() {
        let mut roles = LastRoles::parse("u1 p1\nbroken\nu2 p2 extra\n\nu3 p3\n");
        assert_eq!(roles.last("u1"), Some("p1"));
        assert_eq!(roles.last("u2"), None);
        assert_eq!(roles.last("u3"), Some("p3"));
        roles.choose("u1", "p9");
        roles.choose("u4", "has space");
        assert_eq!(LastRoles::parse(&roles.render()), roles);
        assert_eq!(roles.render(), "u1 p9\nu3 p3\n");
    }

    #[test]
    fn the_last_choice_comes_first() {
        let profiles = [
            profile("a", "Dispenser", "FA123", ""),
            profile("b", "Pharmacist", "FA123", ""),
            profile("c", "Pharmacist", "FFFFF", ""),
        ];
        let ids = |last| {
            in_picker_order(&profiles, last)
                .iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(Some("c")), ["c", "a", "b"]);
        assert_eq!(ids(None), ["a", "b", "c"]);
        assert_eq!(ids(Some("gone")), ["a", "b", "c"]);
    }
}
