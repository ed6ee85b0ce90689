//! Desktop notifications (`org.freedesktop.Notifications` on the session bus) for what the
//! agent warns about: the certificate expiring (with "Renew now"), the passcode expiring, a
//! card left in the reader of an idle workstation, the session ending, the card locking
//! itself and the national service out of reach at a log-in, each in words a pharmacist acts
//! on. The wording lives in [`Notice`]'s constructors, tested here; sending
//! is [`Notifier`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use zbus::zvariant::Value;

/// The action key of "Renew now" on a certificate notification.
pub const RENEW_ACTION: &str = "renew";

/// The client side of the freedesktop notification server.
#[zbus::proxy(
    interface = "org.freedesktop.Notifications",
    default_service = "org.freedesktop.Notifications",
    default_path = "/org/freedesktop/Notifications",
    gen_blocking = false
)]
pub trait Notifications {
    /// Shows a notification; returns its id.
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: &str,
        replaces_id: u32,
        app_icon: &str,
        summary: &str,
        body: &str,
        actions: &[&str],
        hints: HashMap<&str, Value<'_>>,
        expire_timeout: i32,
    ) -> zbus::Result<u32>;

    /// The user chose an action of notification `id`.
    #[zbus(signal)]
    fn action_invoked(&self, id: u32, action_key: &str) -> zbus::Result<()>;
}

/// One notification: what it says and what can be done from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The headline.
    pub summary: String,
    /// The sentence under it.
    pub body: String,
    /// Offer "Renew now".
    pub renew: bool,
    /// 0 low, 1 normal, 2 critical (the spec's urgency hint).
    pub urgency: u8,
}

impl Notice {
    /// The session ended, for `reason` (a `SessionEndReason` code).
    pub fn session_ended(reason: &str) -> Notice {
        let body = match reason {
            "card-removed" => "Your smartcard was removed, so your session has ended.",
            "logged-out" => "You logged out.",
            "idle-timeout" => "The workstation was idle, so your session has ended.",
            "card-left-in-reader" => {
                "Your smartcard was left in the reader of an idle workstation, so your session has ended."
            }
            "endpoint-ended" => "The NHS service ended your session. Log in again to carry on.",
            "card-swapped" => "A different smartcard was put in, so your session has ended.",
            "reauthentication-due" => {
                "Your smartcard was away too long. Put it back in and log in again."
            }
            _ => "Your smartcard session has ended.",
        };
        Notice {
            summary: "Smartcard session ended".into(),
            body: body.into(),
            renew: false,
            urgency: 1,
        }
    }

    /// The card locked itself after too many wrong passcodes.
    pub fn card_blocked() -> Notice {
        Notice {
            summary: "Smartcard locked".into(),
            body: "Your smartcard is locked after three wrong passcodes. Unlock it yourself \
                   with a one-time code, or ask your Sponsor, LSA or RA: the log-in window \
                   shows how."
                .into(),
            renew: false,
            urgency: 2,
        }
    }

    /// The national service could not be reached for a log-in; `message` is the agent's.
    pub fn endpoint_unavailable(message: &str) -> Notice {
        Notice {
            summary: "NHS service unavailable".into(),
            body: format!(
                "{message} Your smartcard is fine; try again in a few minutes, or tell IT \
                 support if it goes on."
            ),
            renew: false,
            urgency: 1,
        }
    }

    /// The certificate expires within `days_left` days; `message` is the agent's sentence.
    pub fn certificate_expiring(days_left: i32, message: &str) -> Notice {
        Notice {
            summary: "Your smartcard certificate is expiring".into(),
            body: format!("{message} Renew it now, while your card is in the reader."),
            renew: true,
            urgency: if days_left <= 7 { 2 } else { 1 },
        }
    }

    /// The passcode expires soon; `message` is the agent's sentence.
    pub fn passcode_expiring(message: &str) -> Notice {
        Notice {
            summary: "Your smartcard passcode is expiring".into(),
            body: format!("{message} Change it from the smartcard status window."),
            renew: false,
            urgency: 1,
        }
    }

    /// The workstation has been idle for `idle_seconds` with a card in the reader.
    pub fn card_left_in_reader(idle_seconds: u32) -> Notice {
        let minutes = idle_seconds.div_ceil(60);
        Notice {
            summary: "Smartcard left in the reader".into(),
            body: format!(
                "This workstation has been idle for {minutes} minute{} with your smartcard in it. Take your card with you.",
                if minutes == 1 { "" } else { "s" }
            ),
            renew: false,
            urgency: 2,
        }
    }
}

/// Sends notices to the session's notification server and knows which of them offered
/// "Renew now", so another program's actions are not taken for ours.
#[derive(Clone)]
pub struct Notifier {
    proxy: NotificationsProxy<'static>,
    renewable: Arc<Mutex<HashSet<u32>>>,
}

impl Notifier {
    /// A notifier on the session bus `connection`.
    pub async fn new(connection: &zbus::Connection) -> zbus::Result<Notifier> {
        Ok(Notifier {
            proxy: NotificationsProxy::new(connection).await?,
            renewable: Arc::default(),
        })
    }

    /// Shows `notice`.
    pub async fn show(&self, notice: &Notice) -> zbus::Result<()> {
        let actions: &[&str] = if notice.renew {
            &[RENEW_ACTION, "Renew now"]
        } else {
            &[]
        };
        let hints = HashMap::from([
            ("urgency", Value::from(notice.urgency)),
            ("desktop-entry", Value::from("cardgate-desktop")),
        ]);
        let id = self
            .proxy
            .notify(
                "Smartcard",
                0,
                "auth-smartcard",
                &notice.summary,
                &notice.body,
                actions,
                hints,
                -1,
            )
            .await?;
        if notice.renew
            && let Ok(mut ids) = self.renewable.lock()
        {
            ids.insert(id);
        }
        Ok(())
    }

    /// The stream of actions chosen on any notification (filter with [`Self::is_renew`]).
    pub async fn actions(&self) -> zbus::Result<ActionInvokedStream> {
        self.proxy.receive_action_invoked().await
    }

    /// Whether `signal` is "Renew now" on one of our notifications.
    pub fn is_renew(&self, signal: &ActionInvoked) -> bool {
        signal.args().is_ok_and(|a| {
            a.action_key() == &RENEW_ACTION
                && self.renewable.lock().is_ok_and(|ids| ids.contains(a.id()))
        })
    }
}

/// A Unix time as a date a person reads ("6 December 2027").
pub fn date_of(unix_seconds: i64) -> String {
    let format = time::macros::format_description!("[day padding:none] [month repr:long] [year]");
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| unix_seconds.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_reason_has_its_own_words() {
        let reasons = [
            "card-removed",
            "logged-out",
            "idle-timeout",
            "card-left-in-reader",
            "endpoint-ended",
            "card-swapped",
            "reauthentication-due",
        ];
        let fallback = Notice::session_ended("something-new").body;
        let mut seen = HashSet::new();
        for reason in reasons {
            let body = Notice::session_ended(reason).body;
            assert_ne!(body, fallback, "{reason} has no words of its own");
            assert!(seen.insert(body), "{reason} shares its words");
        }
        assert!(
            Notice::session_ended("card-removed")
                .body
                .contains("removed")
        );
    }

    #[test]
    fn the_certificate_notice_offers_renewal_and_is_urgent_in_the_last_week() {
        let far = Notice::certificate_expiring(30, "Your certificate expires in 30 days.");
        assert!(far.renew);
        assert_eq!(far.urgency, 1);
        assert!(far.body.starts_with("Your certificate expires in 30 days."));
        assert_eq!(Notice::certificate_expiring(7, "").urgency, 2);
        assert!(!Notice::session_ended("logged-out").renew);
    }

    #[test]
    fn a_locked_card_and_an_unreachable_service_are_told_apart() {
        let locked = Notice::card_blocked();
        assert!(locked.body.contains("one-time code") && locked.urgency == 2);
        let away = Notice::endpoint_unavailable("The service did not answer.");
        assert!(away.body.starts_with("The service did not answer."));
        assert!(away.body.contains("smartcard is fine"));
        assert_ne!(locked.summary, away.summary);
    }

    #[test]
    fn idle_minutes_round_up_and_agree_in_number() {
        assert!(
            Notice::card_left_in_reader(60)
                .body
                .contains("1 minute with")
        );
        assert!(Notice::card_left_in_reader(61).body.contains("2 minutes"));
    }

    #[test]
    fn dates_read_as_words() {
        assert_eq!(date_of(1_828_569_600), "12 December 2027");
    }
}
