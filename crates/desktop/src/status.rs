//! The status window (`status.ui`): who is logged in, in which role, the agent's state, and
//! what the holder can do from here: change role (no passcode: the agent already knows the
//! session's profiles), renew the certificate, change the passcode (checked as typed, sent
//! once), log out. Opened from the desktop's application list, or by running
//! `cardgate-desktop --status`; the desktop may offer no tray, so it is a small window.

use std::cell::Cell;
use std::rc::Rc;

use adw::prelude::*;
use gtk::glib;
use zeroize::Zeroizing;

use crate::bridge::{StatusView, ToAgent};
use crate::dialog::{empty_secret_field, object, tries_text};
use crate::error::DesktopError;
use crate::picker::close_on_escape;
use crate::shape::change_problem;

/// The status window's title, which is also its accessible name.
pub const STATUS_TITLE: &str = "Smartcard status";

/// The agent's state in words for the holder.
pub fn state_words(state: &str) -> &'static str {
    match state {
        "no-card" => "No smartcard in the reader.",
        "card-present" => "Your smartcard is in the reader; you are not logged in.",
        "card-locked" => "Your smartcard is locked.",
        "logged-in" => "You are logged in.",
        "session-locked" => "Your session is locked.",
        "endpoint-unavailable" => "The NHS service cannot be reached.",
        _ => "The agent's state is not known.",
    }
}

/// The open status window.
pub struct StatusWindow {
    window: adw::Window,
    holder: gtk::Label,
    role: gtk::Label,
    state: gtk::Label,
    message: gtk::Label,
    logged_in_only: [gtk::Button; 4],
    form: gtk::Box,
    current: gtk::PasswordEntry,
    new: gtk::PasswordEntry,
    repeat: gtk::PasswordEntry,
    problem: gtk::Label,
    final_try: gtk::CheckButton,
    closed: Rc<Cell<bool>>,
}

impl StatusWindow {
    /// Opens the window; its facts arrive with the next [`StatusWindow::show`].
    pub fn open(
        app: &adw::Application,
        to_agent: async_channel::Sender<ToAgent>,
    ) -> Result<Rc<StatusWindow>, DesktopError> {
        let builder = gtk::Builder::from_string(include_str!("status.ui"));
        let change_role: gtk::Button = object(&builder, "change_role")?;
        let renew: gtk::Button = object(&builder, "renew")?;
        let change_passcode: gtk::Button = object(&builder, "change_passcode")?;
        let log_out: gtk::Button = object(&builder, "log_out")?;
        let change: gtk::Button = object(&builder, "change")?;
        let this = Rc::new(StatusWindow {
            window: object(&builder, "window")?,
            holder: object(&builder, "holder")?,
            role: object(&builder, "role")?,
            state: object(&builder, "state")?,
            message: object(&builder, "message")?,
            logged_in_only: [
                change_role.clone(),
                renew.clone(),
                change_passcode.clone(),
                log_out.clone(),
            ],
            form: object(&builder, "passcode_form")?,
            current: object(&builder, "current")?,
            new: object(&builder, "new")?,
            repeat: object(&builder, "repeat")?,
            problem: object(&builder, "change_problem")?,
            final_try: object(&builder, "change_final_try")?,
            closed: Rc::new(Cell::new(false)),
        });
        this.window.set_application(Some(app));
        let send = |button: &gtk::Button, message: fn() -> ToAgent| {
            let to_agent = to_agent.clone();
            button.connect_clicked(move |_| {
                let _ = to_agent.try_send(message());
            });
        };
        send(&change_role, || ToAgent::ChangeRole);
        send(&renew, || ToAgent::Renew);
        send(&log_out, || ToAgent::Logout);
        {
            let this = Rc::clone(&this);
            change_passcode.connect_clicked(move |_| {
                this.form.set_visible(true);
                this.message.set_text("");
                this.current.grab_focus();
            });
        }
        let refresh = {
            let this = Rc::clone(&this);
            let change = change.clone();
            move || {
                let current = Zeroizing::new(this.current.text().to_string());
                let new = Zeroizing::new(this.new.text().to_string());
                let repeated = Zeroizing::new(this.repeat.text().to_string());
                let checked = change_problem(&current, &new, &repeated);
                this.problem.set_text(checked.err().flatten().unwrap_or(""));
                let final_ok = !this.final_try.is_visible() || this.final_try.is_active();
                change.set_sensitive(checked.is_ok() && final_ok);
            }
        };
        for field in [&this.current, &this.new, &this.repeat] {
            let refresh = refresh.clone();
            field.connect_changed(move |_| refresh());
        }
        this.final_try.connect_toggled(move |_| refresh());
        let submit = {
            let this = Rc::clone(&this);
            let change = change.clone();
            move || {
                if !change.is_sensitive() {
                    return;
                }
                let current = Zeroizing::new(this.current.text().to_string());
                let new = Zeroizing::new(this.new.text().to_string());
                for field in [&this.current, &this.new, &this.repeat] {
                    empty_secret_field(field);
                }
                change.set_sensitive(false);
                this.message.set_text("Changing the passcode on your card…");
                let _ = to_agent.try_send(ToAgent::ChangePasscode {
                    current,
                    new,
                    final_try: this.final_try.is_active(),
                });
            }
        };
        let on_click = submit.clone();
        change.connect_clicked(move |_| on_click());
        this.repeat.connect_activate(move |_| submit());
        {
            let closed = Rc::clone(&this.closed);
            this.window.connect_close_request(move |_| {
                closed.set(true);
                glib::Propagation::Proceed
            });
        }
        close_on_escape(&this.window);
        this.window.present();
        Ok(this)
    }

    /// Whether the holder closed it.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Brings it to the front.
    pub fn present(&self) {
        self.window.present();
    }

    /// Shows the agent's facts.
    pub fn show(&self, view: &StatusView) {
        let holder = &view.holder;
        self.holder.set_text(if holder.name.is_empty() {
            "No smartcard"
        } else {
            &holder.name
        });
        self.role.set_text(&if view.role.is_empty() {
            "No role chosen.".to_owned()
        } else {
            format!("Role: {}", view.role)
        });
        let tries = match view.state.as_str() {
            "card-present" | "card-locked" => format!(" {}", tries_text(holder.tries_left)),
            _ => String::new(),
        };
        self.state
            .set_text(&format!("{}{tries}", state_words(&view.state)));
        let logged_in = view.state == "logged-in";
        for button in &self.logged_in_only {
            button.set_sensitive(logged_in);
        }
        if !logged_in {
            self.form.set_visible(false);
        }
    }

    /// Shows what an action came to.
    pub fn message(&self, text: &str) {
        self.message.set_text(text);
    }

    /// The agent's answer to the passcode change.
    pub fn passcode_changed(&self, result: Result<(), (String, String)>) {
        match result {
            Ok(()) => {
                self.form.set_visible(false);
                self.final_try.set_visible(false);
                self.message
                    .set_text("Your passcode is changed: use the new one from now on.");
            }
            Err((name, message)) => {
                self.message.set_text(&message);
                if name == "FinalTryNotConfirmed" {
                    self.final_try.set_visible(true);
                }
                self.current.grab_focus();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_the_agent_names_has_words() {
        for state in cardgate_ipc::AgentState::ALL {
            assert_ne!(
                state_words(state.as_str()),
                state_words("unheard-of"),
                "{state:?}"
            );
        }
    }
}
