//! Output for people and for scripts, as pure functions of what the agent said, so every
//! sentence is unit-tested without a bus. Plain output says what is wrong *and what to do
//! next*; `--json` output is one JSON document (or one per line for `watch`) with stable keys.

use std::collections::HashMap;

use cardgate_ipc::{AuthoriseAnswer, ReaderInfo, SelectedRoleProfile, property};
use serde::Serialize;
use zbus::zvariant::OwnedValue;

use crate::error::UNLOCK_ADVICE;

/// The `Status` answer as the CLI shows it: one read of the agent, under its one lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusView {
    /// The readers the agent sees.
    pub readers: Vec<ReaderInfo>,
    /// Whether a card is in the active reader.
    pub card_present: bool,
    /// The holder's 12-digit UUID, `""` when none (what a service desk asks for first).
    pub holder_uuid: String,
    /// The holder's name, `""` when none.
    pub holder_name: String,
    /// The agent's state code (`no-card`, `logged-in`, ...).
    pub state: String,
    /// Passcode tries left, `-1` when unknown.
    pub passcode_tries_left: i32,
    /// The selected role profile, all `""` when none.
    pub selected_role_profile: SelectedRoleProfile,
    /// The authentication certificate's expiry, Unix seconds, `0` when none.
    pub certificate_not_after: i64,
    /// The session generation.
    pub session_generation: u64,
    /// The agent's own warnings, sentences for the holder.
    pub warnings: Vec<String>,
}

fn take<T>(map: &HashMap<String, OwnedValue>, key: &str) -> Option<T>
where
    T: TryFrom<OwnedValue>,
{
    map.get(key)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| T::try_from(v).ok())
}

impl StatusView {
    /// Reads the `Status` dictionary; a missing or mistyped key leaves its default (an older
    /// or newer agent must not make `status` fail: support needs what there is).
    pub fn from_map(map: &HashMap<String, OwnedValue>) -> StatusView {
        let readers = map
            .get(property::READERS)
            .and_then(|v| v.try_clone().ok())
            .and_then(|v| <Vec<ReaderInfo>>::try_from(v).ok())
            .unwrap_or_default();
        let warnings = map
            .get(property::WARNINGS)
            .and_then(|v| v.try_clone().ok())
            .and_then(|v| <Vec<String>>::try_from(v).ok())
            .unwrap_or_default();
        StatusView {
            readers,
            card_present: take(map, property::CARD_PRESENT).unwrap_or(false),
            holder_uuid: take(map, property::HOLDER_UUID).unwrap_or_default(),
            holder_name: take(map, property::HOLDER_NAME).unwrap_or_default(),
            state: take(map, property::STATE).unwrap_or_default(),
            passcode_tries_left: take(map, property::PASSCODE_TRIES_LEFT).unwrap_or(-1),
            selected_role_profile: take(map, property::SELECTED_ROLE_PROFILE).unwrap_or_default(),
            certificate_not_after: take(map, property::CERTIFICATE_NOT_AFTER).unwrap_or(0),
            session_generation: take(map, property::SESSION_GENERATION).unwrap_or(0),
            warnings,
        }
    }
}

/// Days from `now` to `then` (Unix seconds), rounded down; negative once past.
fn days_until(then: i64, now: i64) -> i64 {
    (then - now).div_euclid(86_400)
}

fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map(|s| s.chars().take(10).collect())
        .unwrap_or_else(|| unix.to_string())
}

/// What to do about the state, or `None` when nothing is wrong.
fn state_advice(view: &StatusView) -> Option<String> {
    let s = match view.state.as_str() {
        "no-card" => "Insert your smartcard into the reader.".to_owned(),
        "card-present" => {
            "Log in with your passcode (`cardgate login`, or from your pharmacy system).".to_owned()
        }
        "card-locked" => format!("The card is locked: {UNLOCK_ADVICE}."),
        "logged-in" if view.selected_role_profile.id.is_empty() => {
            "No role profile is selected: choose one with `cardgate role ID` (the ids were listed at log-in).".to_owned()
        }
        "logged-in" => return None,
        "session-locked" => {
            "The session is locked because the card left the reader: reinsert the same card to carry on.".to_owned()
        }
        "endpoint-unavailable" => "Spine cannot be reached: check the network cable or Wi-Fi; if it persists, call IT support with the time and the card UUID.".to_owned(),
        other => format!(
            "The agent reports a state this tool does not know (\"{other}\"): update cardgate, or call IT support."
        ),
    };
    Some(s)
}

/// The status for people: one fact a line, each problem followed by what to do.
pub fn render_status(view: &StatusView, now: i64) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    if view.readers.is_empty() {
        line("Readers:     none found".into());
        line("  What to do: plug the smartcard reader in (try another USB port), then run `cardgate status` again; if it is still not found, call IT support.".into());
    } else {
        line("Readers:".into());
        for r in &view.readers {
            let card = if r.card_present { "card in" } else { "no card" };
            let pad = if r.pin_pad { ", PIN pad" } else { "" };
            line(format!("  {} ({card}{pad})", r.name));
        }
    }
    if view.card_present {
        let name = if view.holder_name.is_empty() {
            "(name not read)"
        } else {
            &view.holder_name
        };
        line(format!(
            "Card:        in the reader, UUID {}",
            or_dash(&view.holder_uuid)
        ));
        line(format!("Holder:      {name}"));
    } else {
        line("Card:        none".into());
    }
    line(format!("State:       {}", or_dash(&view.state)));
    if let Some(advice) = state_advice(view) {
        line(format!("  What to do: {advice}"));
    }
    let role = &view.selected_role_profile;
    if role.id.is_empty() {
        line("Role:        none selected".into());
    } else {
        line(format!(
            "Role:        {} at {} ({}), profile {}",
            role.job_role, role.organisation_name, role.ods_code, role.id
        ));
    }
    match view.passcode_tries_left {
        t if t < 0 && view.card_present => {
            line("Tries left:  unknown (not read from the card yet)".into())
        }
        t if t < 0 => line("Tries left:  unknown (no card)".into()),
        0 => line("Tries left:  0 (card locked)".into()),
        1 => {
            line("Tries left:  1 of 3".into());
            line("  What to do: one more wrong passcode locks the card. If you are not sure of it, do not guess: ask your Sponsor or LSA.".into());
        }
        t => line(format!("Tries left:  {t} of 3")),
    }
    if view.certificate_not_after == 0 {
        line("Certificate: not read".into());
    } else {
        let days = days_until(view.certificate_not_after, now);
        let when = date(view.certificate_not_after);
        if days < 0 {
            line(format!("Certificate: EXPIRED on {when}"));
            line("  What to do: an expired certificate cannot be renewed here: book a visit to the Registration Authority (RA) in person.".into());
        } else if days <= 90 {
            line(format!("Certificate: expires {when} (in {days} days)"));
            line("  What to do: renew it now (self-renewal at log-in, or your Sponsor within 30 days of expiry); once it expires you must see the RA in person.".into());
        } else {
            line(format!("Certificate: valid until {when}"));
        }
    }
    for w in &view.warnings {
        line(format!("Warning:     {w}"));
    }
    out
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// The `check` answer for people: the decision, and on a refusal the reason code and message.
pub fn render_check(action: &str, ods: &str, answer: &AuthoriseAnswer) -> String {
    if answer.allowed {
        format!("ALLOWED: {action} for {ods}. {}\n", answer.message)
    } else {
        format!(
            "REFUSED: {action} for {ods}: {} ({})\n",
            answer.message, answer.reason
        )
    }
}

/// The argument names of each `org.cardgate.Agent1` signal, for `watch --json` keys.
pub fn signal_arg_names(member: &str) -> &'static [&'static str] {
    match member {
        "CardInserted" => &["reader", "card_serial", "holder_uuid"],
        "CardRemoved" => &["reader", "generation"],
        "SessionStarted" => &["holder_uuid", "generation"],
        "SessionEnded" => &["reason", "generation"],
        "CertificateExpiring" | "PasscodeExpiring" => &["days_left", "message"],
        "CardLeftInReader" => &["reader", "idle_seconds"],
        _ => &[],
    }
}

/// One `watch` line for people: the time, the signal and its arguments.
pub fn render_signal(at: &str, member: &str, args: &[(String, serde_json::Value)]) -> String {
    let mut s = format!("{at} {member}");
    for (name, value) in args {
        match value {
            serde_json::Value::String(v) => s.push_str(&format!(" {name}={v:?}")),
            other => s.push_str(&format!(" {name}={other}")),
        }
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn logged_in() -> StatusView {
        StatusView {
            readers: vec![ReaderInfo {
                name: "HID Omnikey 3121".into(),
                card_present: true,
                pin_pad: false,
            }],
            card_present: true,
            holder_uuid: "555000111222".into(),
            holder_name: "Asha Patel".into(),
            state: "logged-in".into(),
            passcode_tries_left: 3,
            selected_role_profile: SelectedRoleProfile {
                id: "RP-PHARM-FA123".into(),
                job_role: "Pharmacist".into(),
                ods_code: "FA123".into(),
                organisation_name: "High Street Pharmacy".into(),
            },
            certificate_not_after: NOW + 400 * 86_400,
            session_generation: 4,
            warnings: vec![],
        }
    }

    #[test]
    fn a_healthy_session_gives_no_advice() {
        let text = render_status(&logged_in(), NOW);
        assert!(text.contains("UUID 555000111222"), "{text}");
        assert!(text.contains("Pharmacist at High Street Pharmacy (FA123)"));
        assert!(text.contains("Tries left:  3 of 3"));
        assert!(text.contains("valid until"));
        assert!(!text.contains("What to do"), "{text}");
    }

    #[test]
    fn no_reader_and_no_card_say_what_to_do() {
        let view = StatusView {
            state: "no-card".into(),
            passcode_tries_left: -1,
            ..StatusView::default()
        };
        let text = render_status(&view, NOW);
        assert!(text.contains("Readers:     none found"));
        assert!(text.contains("plug the smartcard reader in"));
        assert!(text.contains("Insert your smartcard"));
        assert!(text.contains("Tries left:  unknown"));
    }

    #[test]
    fn a_locked_card_names_the_unlock_paths_in_order() {
        let mut view = logged_in();
        view.state = "card-locked".into();
        view.passcode_tries_left = 0;
        let text = render_status(&view, NOW);
        let self_service = text.find("self-service").unwrap();
        let lsa = text.find("Local Smartcard Administrator").unwrap();
        let ra = text.find("Registration Authority").unwrap();
        assert!(self_service < lsa && lsa < ra, "{text}");
        assert!(text.contains("01, 02 or 03"));
    }

    #[test]
    fn the_last_try_and_expiry_are_warned_about() {
        let mut view = logged_in();
        view.passcode_tries_left = 1;
        view.certificate_not_after = NOW + 20 * 86_400 + 5;
        let text = render_status(&view, NOW);
        assert!(text.contains("one more wrong passcode locks the card"));
        assert!(text.contains("(in 20 days)"), "{text}");
        view.certificate_not_after = NOW - 10;
        let text = render_status(&view, NOW);
        assert!(text.contains("EXPIRED"));
        assert!(text.contains("Registration Authority (RA) in person"));
    }

    #[test]
    fn an_unknown_state_is_not_hidden() {
        let mut view = logged_in();
        view.state = "time-travel".into();
        assert!(render_status(&view, NOW).contains("\"time-travel\""));
    }

    #[test]
    fn check_output_carries_reason_and_message() {
        let refused = AuthoriseAnswer {
            allowed: false,
            reason: "no-card".into(),
            message: "Insert your smartcard to download prescriptions.".into(),
            generation: 7,
        };
        assert_eq!(
            render_check("download", "FA123", &refused),
            "REFUSED: download for FA123: Insert your smartcard to download prescriptions. (no-card)\n"
        );
        let allowed = AuthoriseAnswer {
            allowed: true,
            reason: "allowed".into(),
            message: "OK".into(),
            generation: 8,
        };
        assert!(render_check("download", "FA123", &allowed).starts_with("ALLOWED"));
    }

    #[test]
    fn signal_lines_name_their_arguments() {
        let args = vec![
            ("reader".to_owned(), serde_json::json!("Omnikey")),
            ("generation".to_owned(), serde_json::json!(3)),
        ];
        assert_eq!(
            render_signal("10:00:00Z", "CardRemoved", &args),
            "10:00:00Z CardRemoved reader=\"Omnikey\" generation=3"
        );
        assert_eq!(signal_arg_names("SessionEnded"), ["reason", "generation"]);
    }

    #[test]
    fn the_json_view_has_stable_keys() {
        let json = serde_json::to_value(logged_in()).unwrap();
        assert_eq!(json["holder_uuid"], "555000111222");
        assert_eq!(json["selected_role_profile"]["ods_code"], "FA123");
        assert_eq!(json["readers"][0]["pin_pad"], false);
    }
}
