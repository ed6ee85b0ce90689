//! The passcode dialog itself (GTK 4 with libadwaita, laid out in `login.ui`): who is asking
//! and why, the holder's name and UUID, the tries left and the agent's warnings, the masked
//! passcode field checked as it is typed, the final try as an explicit second step, the
//! reader's PIN pad when it has one, and for a blocked card the ways to unlock it, two of
//! them right here (a one-time code, the RA's unlock code) with the new passcode. Every
//! control has an accessible name (AT-SPI), so screen readers and the tests find it; Enter
//! logs in, Escape cancels, Tab moves between the controls.
//!
//! After a log-in with more than one role profile it opens the role picker (`picker.rs`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use adw::prelude::*;
use cardgate_ipc::RoleProfileInfo;
use gtk::glib;
use zeroize::Zeroizing;

use crate::bridge::{HolderView, ToAgent, ToUi};
use crate::error::DesktopError;
use crate::picker::{RenewalWindow, RolePicker, close_on_escape};
use crate::shape::{UnlockCodeKind, passcode_problem, unlock_problem};
use crate::status::StatusWindow;

/// The dialog's title, which is also its accessible name.
pub const TITLE: &str = "Smartcard log-in";

/// The web sign-in dialog's title, which is also its accessible name: the page's origin, as
/// the browser reported it, is what the holder signs in to.
pub fn web_title(origin: &str) -> String {
    format!("Sign in to {origin}")
}

/// What the web sign-in dialog says of the request: who asks, and that the passcode is
/// asked at every sign-in.
pub fn web_asking(origin: &str) -> String {
    format!(
        "The web page {origin} asks you to sign in with your smartcard. Type your passcode \
         only if you opened this page yourself; it is asked at every sign-in."
    )
}

/// What a holder of a blocked card can do, in the order to try them.
pub const UNLOCK_PATHS: &str = "Your card is locked after three wrong passcodes. To unlock it: \
1. yourself, with a one-time code sent to the email or mobile you registered (the first \
button below); 2. ask your Sponsor or Local Smartcard Administrator (LSA) to unlock it with \
their card; 3. with an unlock code from your Registration Authority (RA) (the second button \
below). A card whose number starts 01, 02 or 03 cannot be unlocked: ask the RA for a new \
card.";

/// The widgets of the dialog of one request.
struct Open {
    cookie: String,
    holder_uuid: String,
    window: adw::Window,
    entry: gtk::PasswordEntry,
    problem: gtk::Label,
    tries: gtk::Label,
    final_try: gtk::CheckButton,
    log_in: gtk::Button,
    entry_label: gtk::Label,
    unlock: Rc<UnlockForm>,
    /// A web page's sign-in: no role picker after it (the role is chosen at the identity
    /// provider).
    web: bool,
    /// Set once the request is over (answered, ended by the agent): closing then cancels
    /// nothing.
    over: Rc<Cell<bool>>,
}

impl Open {
    /// The card is locked: the passcode field gives way to the ways to unlock it.
    fn show_locked(&self) {
        self.problem.set_text(UNLOCK_PATHS);
        self.entry.set_visible(false);
        self.entry_label.set_visible(false);
        self.log_in.set_visible(false);
        self.final_try.set_visible(false);
        self.unlock.paths.set_visible(true);
    }

    /// The card is unlocked: back to the passcode field, for the new passcode.
    fn show_unlocked(&self, tries_left: i32) {
        self.unlock.paths.set_visible(false);
        self.unlock.form.set_visible(false);
        self.entry.set_visible(true);
        self.entry.set_sensitive(true);
        self.entry_label.set_visible(true);
        self.log_in.set_visible(true);
        self.tries.set_text(&tries_text(tries_left));
        self.problem
            .set_text("Your card is unlocked. Log in with your new passcode.");
        self.entry.grab_focus();
    }
}

/// How the card is being unlocked in the dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
enum UnlockMode {
    /// Not yet chosen.
    None,
    /// Self-service, the one-time code sent for `request_id`.
    SelfService { request_id: String },
    /// With the RA's unlock code.
    FromRa,
}

/// The unlock part of the dialog (`login.ui`): the two paths the holder can take here, and
/// the form for the code and the new passcode.
struct UnlockForm {
    paths: gtk::Box,
    form: gtk::Box,
    intro: gtk::Label,
    one_time_code: gtk::PasswordEntry,
    unlock_code: gtk::PasswordEntry,
    new_passcode: gtk::PasswordEntry,
    repeated: gtk::PasswordEntry,
    problem: gtk::Label,
    final_try: gtk::CheckButton,
    button: gtk::Button,
    mode: RefCell<UnlockMode>,
}

impl UnlockForm {
    fn from(builder: &gtk::Builder) -> Result<UnlockForm, DesktopError> {
        Ok(UnlockForm {
            paths: object(builder, "unlock_paths")?,
            form: object(builder, "unlock_form")?,
            intro: object(builder, "unlock_intro")?,
            one_time_code: object(builder, "one_time_code")?,
            unlock_code: object(builder, "unlock_code")?,
            new_passcode: object(builder, "new_passcode")?,
            repeated: object(builder, "repeat_passcode")?,
            problem: object(builder, "unlock_problem")?,
            final_try: object(builder, "unlock_final_try")?,
            button: object(builder, "unlock")?,
            mode: RefCell::new(UnlockMode::None),
        })
    }

    fn kind(&self) -> Option<UnlockCodeKind> {
        match &*self.mode.borrow() {
            UnlockMode::None => None,
            UnlockMode::SelfService { .. } => Some(UnlockCodeKind::OneTime),
            UnlockMode::FromRa => Some(UnlockCodeKind::FromRa),
        }
    }

    fn code_entry(&self) -> &gtk::PasswordEntry {
        match self.kind() {
            Some(UnlockCodeKind::OneTime) => &self.one_time_code,
            _ => &self.unlock_code,
        }
    }

    /// Opens the form for `mode`, `intro` saying what to type.
    fn open(&self, mode: UnlockMode, intro: &str) {
        *self.mode.borrow_mut() = mode;
        self.intro.set_text(intro);
        let one_time = self.kind() == Some(UnlockCodeKind::OneTime);
        self.one_time_code.set_visible(one_time);
        self.unlock_code.set_visible(!one_time);
        self.new_passcode.set_visible(true);
        self.repeated.set_visible(true);
        self.button.set_visible(true);
        self.final_try.set_visible(false);
        self.final_try.set_active(false);
        self.problem.set_text("");
        self.form.set_visible(true);
        self.code_entry().grab_focus();
        self.refresh();
    }

    /// Checks the fields as they are typed: "Unlock card" only when every one is right.
    fn refresh(&self) {
        let Some(kind) = self.kind() else { return };
        let code = Zeroizing::new(self.code_entry().text().to_string());
        let new = Zeroizing::new(self.new_passcode.text().to_string());
        let repeated = Zeroizing::new(self.repeated.text().to_string());
        let checked = unlock_problem(kind, &code, &new, &repeated);
        self.problem.set_text(checked.err().flatten().unwrap_or(""));
        let final_ok = !self.final_try.is_visible() || self.final_try.is_active();
        self.button.set_sensitive(checked.is_ok() && final_ok);
    }

    /// The message for the agent, the secrets taken out of the fields (which are emptied).
    fn take(&self, cookie: &str) -> Option<ToAgent> {
        if !self.button.is_sensitive() {
            return None;
        }
        let code = Zeroizing::new(self.code_entry().text().to_string());
        let new_passcode = Zeroizing::new(self.new_passcode.text().to_string());
        for entry in [
            &self.one_time_code,
            &self.unlock_code,
            &self.new_passcode,
            &self.repeated,
        ] {
            empty_secret_field(entry);
        }
        self.button.set_sensitive(false);
        match self.mode.borrow().clone() {
            UnlockMode::None => None,
            UnlockMode::SelfService { request_id } => Some(ToAgent::UnlockWithOneTimeCode {
                cookie: cookie.to_owned(),
                request_id,
                one_time_code: code,
                new_passcode,
            }),
            UnlockMode::FromRa => Some(ToAgent::UnlockWithCode {
                cookie: cookie.to_owned(),
                unlock_code: code,
                new_passcode,
                final_try: self.final_try.is_active(),
            }),
        }
    }
}

/// The windows of this program: at most one passcode dialog open, as the agent serves one
/// request at a time, and the role picker and renewal window that follow from it.
pub struct Dialogs {
    app: adw::Application,
    to_agent: async_channel::Sender<ToAgent>,
    open: RefCell<Option<Open>>,
    picker: RefCell<Option<RolePicker>>,
    renewal: RefCell<Option<RenewalWindow>>,
    status: RefCell<Option<Rc<StatusWindow>>>,
}

/// Empties a passcode or code field, one character at a time from the end.
///
/// GTK 4's accessibility layer announces every deletion from a text field in an AT-SPI
/// `TextChanged` event that carries the deleted text (for password fields too), built in ordinary
/// heap memory that nothing wipes and sent to every listener on the accessibility bus.
/// `set_text("")` would put the whole secret in one such event; deleting from the end puts one
/// character in each, no more than typing it already announced.
pub fn empty_secret_field(field: &gtk::PasswordEntry) {
    let Some(text) = field
        .delegate()
        .and_then(|inner| inner.downcast::<gtk::Text>().ok())
    else {
        // Not GTK's layout of a password field: nothing better than emptying it at once.
        field.set_text("");
        return;
    };
    for end in (1..=i32::from(text.text_length())).rev() {
        field.delete_text(end - 1, end);
    }
}

/// Fetches the object `id` of `builder`, or names the one missing from the layout.
pub fn object<T: IsA<glib::Object>>(
    builder: &gtk::Builder,
    id: &'static str,
) -> Result<T, DesktopError> {
    builder.object(id).ok_or(DesktopError::Ui(id))
}

impl Dialogs {
    /// Dialogs for `app`, answering through `to_agent`.
    pub fn new(app: adw::Application, to_agent: async_channel::Sender<ToAgent>) -> Rc<Dialogs> {
        Rc::new(Dialogs {
            app,
            to_agent,
            open: RefCell::new(None),
            picker: RefCell::new(None),
            renewal: RefCell::new(None),
            status: RefCell::new(None),
        })
    }

    /// Opens the status window (or brings it to the front) and asks the agent for its facts.
    pub fn show_status(&self) {
        let mut status = self.status.borrow_mut();
        match status.as_ref().filter(|s| !s.is_closed()) {
            Some(window) => window.present(),
            None => match StatusWindow::open(&self.app, self.to_agent.clone()) {
                Ok(window) => *status = Some(window),
                Err(e) => tracing::error!(error = %e, "status window"),
            },
        }
        let _ = self.to_agent.try_send(ToAgent::Status);
    }

    /// Opens the role picker for `profiles`, replacing one still open.
    fn open_picker(
        &self,
        holder_uuid: &str,
        profiles: &[RoleProfileInfo],
    ) -> Result<(), DesktopError> {
        let picker = RolePicker::open(&self.app, holder_uuid, profiles, self.to_agent.clone())?;
        if let Some(old) = self.picker.borrow_mut().replace(picker) {
            old.close();
        }
        Ok(())
    }

    fn open_status(&self) -> Option<Rc<StatusWindow>> {
        self.status
            .borrow()
            .as_ref()
            .filter(|s| !s.is_closed())
            .cloned()
    }

    /// Acts on one message from the bus.
    pub fn handle(self: &Rc<Self>, message: ToUi) {
        let shown = match message {
            ToUi::Begin {
                cookie,
                requester,
                reason,
                holder,
                web_origin,
            } => self.begin(
                cookie,
                requester.as_deref(),
                &reason,
                &holder,
                web_origin.as_deref(),
            ),
            ToUi::End { cookie, why } => {
                tracing::info!(why, "the agent closed the dialog");
                self.close(&cookie);
                Ok(())
            }
            ToUi::Answered {
                cookie,
                holder_uuid,
                result,
                tries_left,
            } => self.answered(&cookie, &holder_uuid, result, tries_left),
            ToUi::RoleSelected { id, result } => {
                // Refused, the picker stays with the agent's reason; chosen, it closes.
                let chosen = self
                    .picker
                    .borrow()
                    .as_ref()
                    .is_some_and(|p| p.selected(&id, &result));
                if chosen && let Some(picker) = self.picker.borrow_mut().take() {
                    picker.close();
                }
                Ok(())
            }
            ToUi::SelfServiceStarted { cookie, result } => {
                self.self_service_started(&cookie, result);
                Ok(())
            }
            ToUi::Unlocked {
                cookie,
                result,
                tries_left,
            } => {
                self.unlocked(&cookie, result, tries_left);
                Ok(())
            }
            ToUi::ShowStatus => {
                self.show_status();
                Ok(())
            }
            ToUi::Status(view) => {
                if let Some(status) = self.open_status() {
                    status.show(&view);
                }
                Ok(())
            }
            ToUi::StatusMessage(text) => {
                match self.open_status() {
                    Some(status) => status.message(&text),
                    None => tracing::info!(%text, "for the status window"),
                }
                Ok(())
            }
            ToUi::PasscodeChanged(result) => {
                if let Some(status) = self.open_status() {
                    status.passcode_changed(result);
                }
                Ok(())
            }
            ToUi::ChooseRole {
                holder_uuid,
                profiles,
            } => self.open_picker(&holder_uuid, &profiles),
            ToUi::SessionEnded => {
                if let Some(picker) = self.picker.borrow_mut().take() {
                    picker.close();
                }
                Ok(())
            }
            ToUi::Renewal(view) => {
                let mut renewal = self.renewal.borrow_mut();
                if renewal.as_ref().is_none_or(RenewalWindow::is_closed) {
                    match RenewalWindow::open(&self.app) {
                        Ok(window) => *renewal = Some(window),
                        Err(e) => {
                            tracing::error!(error = %e, "renewal window");
                            return;
                        }
                    }
                }
                if let Some(window) = renewal.as_ref() {
                    window.show(&view);
                }
                Ok(())
            }
            ToUi::Fatal(message) => {
                tracing::error!("{message}");
                self.app.quit();
                Ok(())
            }
        };
        if let Err(e) = shown {
            tracing::error!(error = %e, "cannot show the dialog");
        }
    }

    fn close(&self, cookie: &str) {
        let open = self.open.borrow_mut().take_if(|o| o.cookie == cookie);
        if let Some(open) = open {
            open.over.set(true);
            open.window.close();
        }
    }

    fn begin(
        self: &Rc<Self>,
        cookie: String,
        requester: Option<&str>,
        reason: &str,
        holder: &HolderView,
        web_origin: Option<&str>,
    ) -> Result<(), DesktopError> {
        // A new request replaces a stale window (the agent has already ended the old one).
        if let Some(old) = self.open.borrow_mut().take() {
            old.over.set(true);
            old.window.close();
        }
        let builder = gtk::Builder::from_string(include_str!("login.ui"));
        let window: adw::Window = object(&builder, "window")?;
        let asking: gtk::Label = object(&builder, "asking")?;
        let name: gtk::Label = object(&builder, "holder")?;
        let uuid: gtk::Label = object(&builder, "uuid")?;
        let tries: gtk::Label = object(&builder, "tries")?;
        let warnings: gtk::Label = object(&builder, "warnings")?;
        let pad_hint: gtk::Label = object(&builder, "pad_hint")?;
        let entry: gtk::PasswordEntry = object(&builder, "passcode")?;
        let entry_label: gtk::Label = object(&builder, "passcode_label")?;
        let unlock = Rc::new(UnlockForm::from(&builder)?);
        let unlock_self: gtk::Button = object(&builder, "unlock_self")?;
        let unlock_ra: gtk::Button = object(&builder, "unlock_ra")?;
        let problem: gtk::Label = object(&builder, "problem")?;
        let final_try: gtk::CheckButton = object(&builder, "final_try")?;
        let cancel: gtk::Button = object(&builder, "cancel")?;
        let use_pad: gtk::Button = object(&builder, "use_pad")?;
        let log_in: gtk::Button = object(&builder, "log_in")?;

        asking.set_text(&match (web_origin, requester) {
            (Some(origin), _) => web_asking(origin),
            (None, Some(program)) => {
                format!("{program} asks you to log in with your smartcard: {reason}")
            }
            (None, None) => reason.to_owned(),
        });
        if let Some(origin) = web_origin {
            // The origin in the window's title, its accessible name.
            window.set_title(Some(&web_title(origin)));
            log_in.set_label("Sign in");
        }
        name.set_text(if holder.name.is_empty() {
            "Smartcard"
        } else {
            &holder.name
        });
        uuid.set_text(&format!("UUID {}", holder.uuid));
        uuid.set_visible(!holder.uuid.is_empty());
        tries.set_text(&tries_text(holder.tries_left));
        warnings.set_text(&holder.warnings.join("\n"));
        warnings.set_visible(!holder.warnings.is_empty());
        final_try.set_visible(holder.tries_left == 1);

        if holder.pin_pad {
            entry.set_visible(false);
            entry_label.set_visible(false);
            log_in.set_visible(false);
            pad_hint.set_visible(true);
            use_pad.set_visible(true);
        }
        window.set_application(Some(&self.app));

        let over = Rc::new(Cell::new(false));
        // Checked as typed: nothing is sent until the shape is right (and, on the final try,
        // the holder said so).
        let refresh = {
            let entry = entry.clone();
            let problem = problem.clone();
            let final_try = final_try.clone();
            let log_in = log_in.clone();
            move || {
                let typed = Zeroizing::new(entry.text().to_string());
                let shape = if typed.is_empty() {
                    None
                } else {
                    passcode_problem(&typed)
                };
                problem.set_text(shape.unwrap_or(""));
                let final_ok = !final_try.is_visible() || final_try.is_active();
                log_in.set_sensitive(!typed.is_empty() && shape.is_none() && final_ok);
            }
        };
        let on_change = refresh.clone();
        entry.connect_changed(move |_| on_change());
        final_try.connect_toggled(move |_| refresh());

        let send = {
            let this = Rc::clone(self);
            let cookie = cookie.clone();
            let holder_uuid = holder.uuid.clone();
            let entry = entry.clone();
            let final_try = final_try.clone();
            let log_in = log_in.clone();
            move || {
                if !log_in.is_sensitive() {
                    return;
                }
                let passcode = Zeroizing::new(entry.text().to_string());
                // The field's own buffer is GTK's secure (non-swappable, wiped) memory.
                empty_secret_field(&entry);
                log_in.set_sensitive(false);
                let _ = this.to_agent.try_send(ToAgent::Answer {
                    cookie: cookie.clone(),
                    holder_uuid: holder_uuid.clone(),
                    passcode,
                    final_try: final_try.is_active(),
                });
            }
        };
        let on_click = send.clone();
        log_in.connect_clicked(move |_| on_click());
        entry.connect_activate(move |_| send());
        {
            let this = Rc::clone(self);
            let cookie = cookie.clone();
            let holder_uuid = holder.uuid.clone();
            let final_try = final_try.clone();
            use_pad.connect_clicked(move |button| {
                button.set_sensitive(false);
                let _ = this.to_agent.try_send(ToAgent::AnswerOnPad {
                    cookie: cookie.clone(),
                    holder_uuid: holder_uuid.clone(),
                    final_try: final_try.is_active(),
                });
            });
        }

        let closing = window.clone();
        cancel.connect_clicked(move |_| closing.close());
        close_on_escape(&window);
        {
            let this = Rc::clone(self);
            let cookie = cookie.clone();
            let over = Rc::clone(&over);
            window.connect_close_request(move |_| {
                if !over.replace(true) {
                    let _ = this.to_agent.try_send(ToAgent::Cancel {
                        cookie: cookie.clone(),
                    });
                    this.open.borrow_mut().take_if(|o| o.cookie == cookie);
                }
                glib::Propagation::Proceed
            });
        }

        // The unlock paths and form.
        {
            let this = Rc::clone(self);
            let cookie = cookie.clone();
            let unlock = Rc::clone(&unlock);
            unlock_self.connect_clicked(move |_| {
                unlock
                    .intro
                    .set_text("Asking the national service to send you a one-time code…");
                let _ = this.to_agent.try_send(ToAgent::StartSelfServiceUnlock {
                    cookie: cookie.clone(),
                });
            });
        }
        {
            let unlock = Rc::clone(&unlock);
            unlock_ra.connect_clicked(move |_| {
                unlock.open(
                    UnlockMode::FromRa,
                    "Type the unlock code your Registration Authority (RA) gave you, then \
                     choose a new passcode.",
                );
            });
        }
        for field in [
            &unlock.one_time_code,
            &unlock.unlock_code,
            &unlock.new_passcode,
            &unlock.repeated,
        ] {
            let unlock = Rc::clone(&unlock);
            field.connect_changed(move |_| unlock.refresh());
        }
        {
            let form = Rc::clone(&unlock);
            unlock.final_try.connect_toggled(move |_| form.refresh());
        }
        let send_unlock = {
            let this = Rc::clone(self);
            let cookie = cookie.clone();
            let unlock = Rc::clone(&unlock);
            move || {
                if let Some(message) = unlock.take(&cookie) {
                    unlock.intro.set_text("Unlocking your card…");
                    let _ = this.to_agent.try_send(message);
                }
            }
        };
        let on_unlock = send_unlock.clone();
        unlock.button.connect_clicked(move |_| on_unlock());
        unlock.repeated.connect_activate(move |_| send_unlock());

        window.present();
        if holder.pin_pad {
            use_pad.grab_focus();
        } else {
            entry.grab_focus();
        }
        let open = Open {
            cookie,
            holder_uuid: holder.uuid.clone(),
            window,
            entry,
            problem,
            tries,
            final_try,
            log_in,
            entry_label,
            unlock,
            web: web_origin.is_some(),
            over,
        };
        if holder.tries_left == 0 {
            open.show_locked();
        }
        *self.open.borrow_mut() = Some(open);
        Ok(())
    }

    fn answered(
        self: &Rc<Self>,
        cookie: &str,
        holder_uuid: &str,
        result: Result<Vec<RoleProfileInfo>, (String, String)>,
        tries_left: i32,
    ) -> Result<(), DesktopError> {
        match result {
            Ok(profiles) => {
                tracing::info!(profiles = profiles.len(), "logged in");
                let web = self
                    .open
                    .borrow()
                    .as_ref()
                    .is_some_and(|o| o.cookie == cookie && o.web);
                self.close(cookie);
                if !web && profiles.len() > 1 {
                    self.open_picker(holder_uuid, &profiles)?;
                }
                Ok(())
            }
            Err((name, message)) => {
                let open = self.open.borrow();
                let Some(open) = open.as_ref().filter(|o| o.cookie == cookie) else {
                    return Ok(());
                };
                debug_assert_eq!(open.holder_uuid, holder_uuid);
                tracing::info!(error = name, "the agent refused the passcode");
                let text = match name.as_str() {
                    "WrongPasscode" => format!("Wrong passcode. {}", tries_text(tries_left)),
                    "CardBlocked" => UNLOCK_PATHS.to_owned(),
                    _ => message,
                };
                open.tries.set_text(&tries_text(tries_left));
                if tries_left == 0 || name == "CardBlocked" {
                    open.show_locked();
                    return Ok(());
                }
                open.problem.set_text(&text);
                open.final_try.set_visible(tries_left == 1);
                open.final_try.set_active(false);
                open.log_in.set_sensitive(false);
                open.entry.grab_focus();
                Ok(())
            }
        }
    }
}

impl Dialogs {
    fn self_service_started(&self, cookie: &str, result: Result<(String, String), String>) {
        let open = self.open.borrow();
        let Some(open) = open.as_ref().filter(|o| o.cookie == cookie) else {
            return;
        };
        match result {
            Ok((request_id, sent_to)) => open.unlock.open(
                UnlockMode::SelfService { request_id },
                &format!(
                    "A one-time code was sent to {sent_to}. Type it here, then choose a new \
                     passcode."
                ),
            ),
            Err(message) => {
                // The reason, in the form's intro, with no field to type into.
                open.unlock.intro.set_text(&message);
                open.unlock.one_time_code.set_visible(false);
                open.unlock.unlock_code.set_visible(false);
                open.unlock.new_passcode.set_visible(false);
                open.unlock.repeated.set_visible(false);
                open.unlock.button.set_visible(false);
                open.unlock.form.set_visible(true);
            }
        }
    }

    fn unlocked(&self, cookie: &str, result: Result<(), (String, String)>, tries_left: i32) {
        let open = self.open.borrow();
        let Some(open) = open.as_ref().filter(|o| o.cookie == cookie) else {
            return;
        };
        match result {
            Ok(()) => {
                tracing::info!("the card is unlocked");
                open.show_unlocked(tries_left);
            }
            Err((name, message)) => {
                tracing::info!(error = name, "the agent refused the unlock");
                open.unlock.intro.set_text(&message);
                if name == "FinalTryNotConfirmed" {
                    open.unlock.final_try.set_visible(true);
                }
                open.unlock.code_entry().grab_focus();
                open.unlock.refresh();
            }
        }
    }
}

/// The tries left in words.
pub fn tries_text(tries_left: i32) -> String {
    match tries_left {
        1 => "1 try left: the next wrong passcode locks the card.".to_owned(),
        n if n > 1 => format!("{n} tries left."),
        0 => "The card is locked.".to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_read_as_words_and_the_last_one_warns() {
        assert_eq!(tries_text(3), "3 tries left.");
        assert!(tries_text(1).contains("locks the card"));
        assert_eq!(tries_text(0), "The card is locked.");
        assert_eq!(tries_text(-1), "");
    }

    #[test]
    fn the_web_sign_in_names_the_origin() {
        assert_eq!(
            web_title("https://pmr.example.nhs.uk"),
            "Sign in to https://pmr.example.nhs.uk"
        );
        assert!(web_asking("https://pmr.example.nhs.uk").contains("https://pmr.example.nhs.uk"));
        assert!(web_asking("https://x.example").contains("every sign-in"));
    }

    #[test]
    fn the_unlock_paths_come_in_order() {
        let at = |s: &str| UNLOCK_PATHS.find(s).unwrap_or(usize::MAX);
        assert!(at("one-time code") < at("Sponsor"));
        assert!(at("Sponsor") < at("Registration Authority"));
    }
}
