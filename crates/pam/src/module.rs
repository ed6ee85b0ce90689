//! What `pam_cardgate` does in each PAM stack, in safe Rust over two traits: the
//! [`Conversation`] with the person (libpam's conversation function in production) and the
//! [`Daemon`] (the agent over D-Bus). `ffi.rs` only translates.
//!
//! - **auth**: a card must be in a reader and read; its holder must be mapped to the account;
//!   a blocked card or an unusable certificate is refused before any passcode is asked; a
//!   workstation session registered for the account only opens for its own card (screen
//!   unlock after a removal); the final try must be chosen explicitly; then the agent logs in
//!   with the passcode (or on the PIN pad). `endpoint=optional` accepts a verified card when
//!   the endpoint cannot be reached.
//! - **account**: the card must be in, its holder mapped, not locked, its certificate
//!   usable (not revoked, not expired).
//! - **session**: registers the logind session (`XDG_SESSION_ID`) with the agent, so removing
//!   the card locks it; closing forgets it.
//!
//! The passcode lives in a [`Zeroizing`] buffer from the conversation to the D-Bus call and
//! is never formatted into a message.

use cardgate_ipc::AgentError;
use zeroize::Zeroizing;

use crate::client::{CardStatus, Daemon};
use crate::error::PamError;
use crate::mapping::Mapping;
use crate::options::Options;

/// The person at the login screen, through PAM's conversation.
pub trait Conversation {
    /// Asks a question; `echo` false for secrets.
    fn prompt(&mut self, text: &str, echo: bool) -> Result<Zeroizing<String>, PamError>;
    /// Tells something.
    fn info(&mut self, text: &str);
    /// Reports an error.
    fn error(&mut self, text: &str);
}

/// The prompt for the passcode.
pub const PASSCODE_PROMPT: &str = "Smartcard passcode: ";
/// The question before the final try.
pub const FINAL_TRY_PROMPT: &str =
    "Your smartcard has one try left; a wrong passcode locks it. Type YES to use the last try: ";

/// The card, read, with its holder allowed to log in as `user`.
fn mapped_card(
    user: &str,
    options: &Options,
    daemon: &mut dyn Daemon,
) -> Result<CardStatus, PamError> {
    let mapping = Mapping::load(&options.map)?;
    let card = daemon.card()?;
    if card.standing == "no-card" || card.holder.is_empty() {
        return Err(PamError::NoCard);
    }
    if !mapping.allows(&card.holder, user) {
        return Err(PamError::NotMapped {
            holder: card.holder,
            user: user.to_owned(),
        });
    }
    Ok(card)
}

/// Refuses a locked card or an unusable certificate with the agent's sentence.
fn usable(card: &CardStatus) -> Result<(), PamError> {
    match card.standing.as_str() {
        "usable" if card.tries_left != 0 => Ok(()),
        "usable" | "card-locked" => Err(PamError::Blocked(card.message.clone())),
        _ => Err(PamError::CardUnusable(card.message.clone())),
    }
}

/// `pam_sm_authenticate`.
pub fn authenticate(
    user: &str,
    options: &Options,
    conv: &mut dyn Conversation,
    daemon: &mut dyn Daemon,
) -> Result<(), PamError> {
    let card = mapped_card(user, options, daemon)?;
    usable(&card)?;
    let own_card = |(_, u, holder, serial): &(String, String, String, String)| {
        u != user || (*holder == card.holder && *serial == card.card_serial)
    };
    if !daemon.sessions()?.iter().all(own_card) {
        return Err(PamError::OtherCard);
    }
    let confirm_final_try = if card.tries_left == 1 {
        let answer = conv.prompt(FINAL_TRY_PROMPT, true)?;
        if !answer.trim().eq_ignore_ascii_case("yes") {
            return Err(PamError::FinalTryNotConfirmed);
        }
        true
    } else {
        false
    };
    let outcome = if card.pin_pad {
        conv.info("Type your smartcard passcode on the reader's PIN pad.");
        daemon.login(None, confirm_final_try)
    } else {
        let passcode = conv.prompt(PASSCODE_PROMPT, false)?;
        daemon.login(Some(passcode.as_str()), confirm_final_try)
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(AgentError::EndpointUnavailable(reason)) if options.endpoint_optional => {
            // The card verified the passcode (the agent asks the endpoint only after that).
            conv.info(&format!(
                "The national service could not be reached ({reason}); logged in with the smartcard only."
            ));
            Ok(())
        }
        Err(e) => Err(PamError::Agent(e)),
    }
}

/// `pam_sm_acct_mgmt`.
pub fn account(user: &str, options: &Options, daemon: &mut dyn Daemon) -> Result<(), PamError> {
    let card = mapped_card(user, options, daemon)?;
    usable(&card)
}

/// `pam_sm_open_session`: registers `session_id` (the logind session) for `user`. Returns
/// false when there is no session id to register (no logind session), which is not an error.
pub fn open_session(
    user: &str,
    session_id: Option<&str>,
    daemon: &mut dyn Daemon,
) -> Result<bool, PamError> {
    match session_id {
        Some(id) if !id.is_empty() => daemon.register(id, user).map(|()| true),
        _ => Ok(false),
    }
}

/// `pam_sm_close_session`: forgets `session_id`.
pub fn close_session(session_id: Option<&str>, daemon: &mut dyn Daemon) -> Result<bool, PamError> {
    match session_id {
        Some(id) if !id.is_empty() => daemon.unregister(id).map(|()| true),
        _ => Ok(false),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A scripted person.
    #[derive(Default)]
    struct Person {
        answers: Vec<&'static str>,
        asked: Vec<String>,
        told: Vec<String>,
    }

    impl Conversation for Person {
        fn prompt(&mut self, text: &str, _echo: bool) -> Result<Zeroizing<String>, PamError> {
            self.asked.push(text.to_owned());
            Ok(Zeroizing::new(self.answers.remove(0).to_owned()))
        }
        fn info(&mut self, text: &str) {
            self.told.push(text.to_owned());
        }
        fn error(&mut self, text: &str) {
            self.told.push(text.to_owned());
        }
    }

    /// A scripted agent.
    struct Agent {
        card: CardStatus,
        logins: Vec<(Option<String>, bool)>,
        answer: fn() -> Result<(), AgentError>,
        sessions: Vec<(String, String, String, String)>,
    }

    impl Daemon for Agent {
        fn card(&mut self) -> Result<CardStatus, PamError> {
            Ok(self.card.clone())
        }
        fn login(&mut self, passcode: Option<&str>, confirm: bool) -> Result<(), AgentError> {
            self.logins.push((passcode.map(str::to_owned), confirm));
            (self.answer)()
        }
        fn sessions(&mut self) -> Result<Vec<(String, String, String, String)>, PamError> {
            Ok(self.sessions.clone())
        }
        fn register(&mut self, _: &str, _: &str) -> Result<(), PamError> {
            Ok(())
        }
        fn unregister(&mut self, _: &str) -> Result<(), PamError> {
            Ok(())
        }
    }

    fn setup(tries_left: i32) -> (tempfile::TempDir, Options, Agent) {
        let dir = tempfile::tempdir().unwrap();
        let map = dir.path().join("map");
        std::fs::write(&map, "555000111222 asha\n").unwrap();
        let options = Options {
            map,
            ..Options::default()
        };
        let agent = Agent {
            card: CardStatus {
                holder: "555000111222".into(),
                card_serial: "0001".into(),
                standing: "usable".into(),
                message: "ok".into(),
                tries_left,
                pin_pad: false,
            },
            logins: Vec::new(),
            answer: || Ok(()),
            sessions: Vec::new(),
        };
        (dir, options, agent)
    }

    #[test]
    fn an_unmapped_account_is_refused_before_any_passcode_is_asked() {
        let (_dir, options, mut agent) = setup(3);
        let mut person = Person::default();
        let e = authenticate("ben", &options, &mut person, &mut agent).unwrap_err();
        assert!(matches!(e, PamError::NotMapped { .. }), "{e}");
        assert!(person.asked.is_empty() && agent.logins.is_empty());
    }

    #[test]
    fn the_final_try_needs_a_yes_and_is_then_confirmed() {
        let (_dir, options, mut agent) = setup(1);
        let mut person = Person {
            answers: vec!["no"],
            ..Person::default()
        };
        let e = authenticate("asha", &options, &mut person, &mut agent).unwrap_err();
        assert!(matches!(e, PamError::FinalTryNotConfirmed), "{e}");
        assert!(agent.logins.is_empty());
        let mut person = Person {
            answers: vec!["YES", "k2468m"],
            ..Person::default()
        };
        authenticate("asha", &options, &mut person, &mut agent).unwrap();
        assert_eq!(agent.logins, vec![(Some("k2468m".to_owned()), true)]);
    }

    #[test]
    fn a_session_of_another_card_is_not_unlocked() {
        let (_dir, options, mut agent) = setup(3);
        agent.sessions = vec![(
            "c1".into(),
            "asha".into(),
            "555000111222".into(),
            "9999".into(),
        )];
        let mut person = Person::default();
        let e = authenticate("asha", &options, &mut person, &mut agent).unwrap_err();
        assert!(matches!(e, PamError::OtherCard), "{e}");
    }

    #[test]
    fn an_unreachable_endpoint_is_accepted_only_when_optional() {
        let (_dir, mut options, mut agent) = setup(3);
        agent.answer = || Err(AgentError::EndpointUnavailable("timed out".into()));
        let mut person = Person {
            answers: vec!["k2468m", "k2468m"],
            ..Person::default()
        };
        let e = authenticate("asha", &options, &mut person, &mut agent).unwrap_err();
        assert_eq!(e.code(), crate::error::code::AUTHINFO_UNAVAIL);
        options.endpoint_optional = true;
        authenticate("asha", &options, &mut person, &mut agent).unwrap();
    }

    #[test]
    fn a_blocked_card_says_how_to_unlock_it_without_asking() {
        let (_dir, options, mut agent) = setup(0);
        agent.card.standing = "card-locked".into();
        agent.card.message = "Ask your RA sponsor to unlock it.".into();
        let mut person = Person::default();
        let e = authenticate("asha", &options, &mut person, &mut agent).unwrap_err();
        assert_eq!(e.to_string(), "Ask your RA sponsor to unlock it.");
        assert!(person.asked.is_empty());
        assert!(account("asha", &options, &mut agent).is_err());
    }
}
