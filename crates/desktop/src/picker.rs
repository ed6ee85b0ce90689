//! The windows that follow a log-in: the role picker (one button per role profile, the last
//! one this holder chose first and marked, `roles.rs` for the words and the memory) and the
//! renewal window (the steps of a certificate renewal the holder started from a
//! notification, `renewal.ui`). Keyboard alone works: Tab between the buttons, Enter
//! chooses, Escape closes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use adw::prelude::*;
use cardgate_ipc::RoleProfileInfo;
use gtk::glib;

use crate::bridge::{RenewalView, ToAgent};
use crate::dialog::object;
use crate::error::DesktopError;
use crate::roles::{LastRoles, in_picker_order, profile_label};

/// The role picker's title, which is also its accessible name.
pub const PICKER_TITLE: &str = "Choose your role";

/// The renewal window's title.
pub const RENEWAL_TITLE: &str = "Renewing your certificate";

/// The role picker of one log-in.
pub struct RolePicker {
    holder_uuid: String,
    window: adw::Window,
    status: gtk::Label,
    buttons: Vec<gtk::Button>,
}

impl RolePicker {
    /// Opens the picker for `profiles` of `holder_uuid`.
    pub fn open(
        app: &adw::Application,
        holder_uuid: &str,
        profiles: &[RoleProfileInfo],
        to_agent: async_channel::Sender<ToAgent>,
    ) -> Result<RolePicker, DesktopError> {
        let last = LastRoles::load();
        let last = last.last(holder_uuid);
        let body = gtk::Box::new(gtk::Orientation::Vertical, 12);
        body.set_margin_start(24);
        body.set_margin_end(24);
        body.set_margin_bottom(24);
        let intro = gtk::Label::new(Some(
            "You hold more than one role. Choose the one you are working in now; \
             you can change it later from the agent.",
        ));
        intro.set_wrap(true);
        intro.set_xalign(0.0);
        body.append(&intro);
        let mut buttons = Vec::new();
        for profile in in_picker_order(profiles, last) {
            let button =
                gtk::Button::with_label(&profile_label(profile, last == Some(&profile.id)));
            let id = profile.id.clone();
            let to_agent = to_agent.clone();
            button.connect_clicked(move |_| {
                let _ = to_agent.try_send(ToAgent::SelectRole { id: id.clone() });
            });
            body.append(&button);
            buttons.push(button);
        }
        let status = gtk::Label::new(None);
        status.set_wrap(true);
        status.set_xalign(0.0);
        status.add_css_class("error");
        body.append(&status);

        let content = gtk::Box::new(gtk::Orientation::Vertical, 0);
        content.append(&adw::HeaderBar::new());
        content.append(&body);
        let window = adw::Window::builder()
            .title(PICKER_TITLE)
            .default_width(420)
            .content(&content)
            .build();
        window.set_application(Some(app));
        close_on_escape(&window);
        window.present();
        if let Some(first) = buttons.first() {
            first.grab_focus();
        }
        Ok(RolePicker {
            holder_uuid: holder_uuid.to_owned(),
            window,
            status,
            buttons,
        })
    }

    /// The agent's answer to choosing `id`: `true` when it took it (the choice is remembered
    /// for this holder), `false` when it refused (the reason is shown, the picker stays).
    pub fn selected(&self, id: &str, result: &Result<(), String>) -> bool {
        match result {
            Ok(()) => {
                let mut last = LastRoles::load();
                last.choose(&self.holder_uuid, id);
                last.save();
                true
            }
            Err(message) => {
                self.status.set_text(message);
                if let Some(first) = self.buttons.first() {
                    first.grab_focus();
                }
                false
            }
        }
    }

    /// Closes the picker.
    pub fn close(&self) {
        self.window.close();
    }
}

/// The renewal window, open while a renewal runs and until the holder closes it.
pub struct RenewalWindow {
    window: adw::Window,
    step: gtk::Label,
    progress: gtk::ProgressBar,
    close: gtk::Button,
    closed: Rc<Cell<bool>>,
    last_step: RefCell<String>,
}

impl RenewalWindow {
    /// Opens the window, at its first step.
    pub fn open(app: &adw::Application) -> Result<RenewalWindow, DesktopError> {
        let builder = gtk::Builder::from_string(include_str!("renewal.ui"));
        let window: adw::Window = object(&builder, "window")?;
        let step: gtk::Label = object(&builder, "step")?;
        let progress: gtk::ProgressBar = object(&builder, "progress")?;
        let close: gtk::Button = object(&builder, "close")?;
        window.set_application(Some(app));
        let closed = Rc::new(Cell::new(false));
        {
            let closed = Rc::clone(&closed);
            window.connect_close_request(move |_| {
                closed.set(true);
                glib::Propagation::Proceed
            });
        }
        let closing = window.clone();
        close.connect_clicked(move |_| closing.close());
        close_on_escape(&window);
        window.present();
        Ok(RenewalWindow {
            window,
            step,
            progress,
            close,
            closed,
            last_step: RefCell::new(String::new()),
        })
    }

    /// Whether the holder closed it.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Shows where the renewal is.
    pub fn show(&self, view: &RenewalView) {
        match view {
            RenewalView::Step { step, percent } => {
                *self.last_step.borrow_mut() = step.clone();
                self.step.set_text(step_words(step));
                self.progress
                    .set_fraction(f64::from((*percent).min(100)) / 100.0);
                self.close.set_sensitive(false);
            }
            RenewalView::Done(Ok(date)) => {
                self.step.set_text(&format!(
                    "Your certificate is renewed: it is now valid until {date}."
                ));
                self.progress.set_fraction(1.0);
                self.close.set_sensitive(true);
                self.close.grab_focus();
            }
            RenewalView::Done(Err(message)) => {
                let at = match self.last_step.borrow().as_str() {
                    "" | "starting" => String::new(),
                    step => format!(" at \"{}\"", step_words(step).trim_end_matches('.')),
                };
                self.step.set_text(&format!(
                    "The renewal did not finish{at}: {message} Your current certificate \
                     still works until it expires."
                ));
                self.close.set_sensitive(true);
                self.close.grab_focus();
            }
        }
        self.window.present();
    }
}

/// A renewal step in words (`RenewalProgress`'s codes).
pub fn step_words(step: &str) -> &'static str {
    match step {
        "starting" | "" => "Starting the renewal. Keep your card in the reader.",
        "generating-key" => "Your card is making its new key. Keep your card in the reader.",
        "requesting-certificate" => "Asking the national service for your new certificate.",
        "writing-certificate" => "Writing the new certificate to your card.",
        "done" => "Done.",
        _ => "Working on the renewal.",
    }
}

/// Escape closes `window`.
pub fn close_on_escape(window: &adw::Window) {
    let keys = gtk::EventControllerKey::new();
    let escaping = window.clone();
    keys.connect_key_pressed(move |_, key, _, _| {
        if key == gtk::gdk::Key::Escape {
            escaping.close();
            glib::Propagation::Stop
        } else {
            glib::Propagation::Proceed
        }
    });
    window.add_controller(keys);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_renewal_step_the_agent_names_has_words() {
        for step in cardgate_ipc::RENEWAL_STEPS {
            assert_ne!(step_words(step), step_words("unheard-of"), "{step}");
        }
    }
}
