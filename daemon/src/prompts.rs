//! The prompted log-in, `org.cardgate.Login1` (`docs/ipc.md`, "Prompted log-in"): any
//! program of the active desktop session asks for a log-in with `RequestLogin` and never sees
//! the passcode; the agent asks the passcode dialog registered for that session
//! (`cardgate-desktop`, serving `org.cardgate.Prompt1`), which answers with the passcode
//! itself. polkit's authentication-agent pattern.
//!
//! Who may do what is decided with logind, on the bus the daemon serves on (the system bus
//! in production; a stand-in logind on a private bus in the tests): a dialog registers for
//! the logind session its process belongs to, which must be its own user's; a request is
//! served only for a caller in the *active* session of its seat (the person at the counter),
//! by that session's dialog. One dialog per session: a second registration is refused while
//! the first program is still on the bus (as polkit does), so a program cannot take the
//! dialog over from a running one; when the first one leaves, the next may register. One
//! request at a time: a second one gets `LoginInProgress`.
//!
//! The request waits for the first of: the dialog's right answer (the role profiles), its
//! cancellation (`Cancelled`), the dialog program leaving the bus (`Cancelled`), the card
//! leaving the reader (`NoCard`, and the dialog is closed so it never sends the passcode to a
//! card that is gone), the asking program leaving, or [`ANSWER_WITHIN`]. A wrong passcode is
//! answered to the dialog, which shows the tries left and may ask again; the request goes on.
//!
//! The same broker serves the browser sign-in (`org.cardgate.Web1.Authenticate`, `web.rs`):
//! a request of [`Purpose::Web`] opens the dialog with `Prompt1.BeginWebSignIn` ("Sign in to
//! ORIGIN"), and the dialog's `AnswerLogin` has the card sign the page's challenge
//! (`Agent::web_sign_in`) instead of logging in; the dialog gets no role profiles back (the
//! role is chosen at the identity provider), the web request the token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cardgate_audit::CallerIdentity;
use cardgate_ipc::{
    AgentError, END_CARD_REMOVED, END_REQUESTER_GONE, END_TIMED_OUT, PromptProxy, RoleProfileInfo,
};
use cardgate_webauth::{ChallengeNonce, WebOrigin};
use futures_lite::StreamExt as _;
use ring::rand::{SecureRandom as _, SystemRandom};
use tokio::sync::oneshot;
use zbus::message::Header;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};
use zbus::{Connection, interface};

use crate::agent::{Agent, AgentEvent};
use crate::callers::CallerCache;
use crate::dbus::AgentInterface;
use crate::workstation::LOGIND;

/// How long a request waits for the holder before it is cancelled.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(300);
/// How long the dialog program has to acknowledge `BeginLogin` (it only opens a window).
const BEGIN_WITHIN: Duration = Duration::from_secs(10);
/// The longest `reason` a program may give (it is shown in the dialog).
const MAX_REASON_CHARS: usize = 200;

const LOGIND_MANAGER_PATH: &str = "/org/freedesktop/login1";
const LOGIND_MANAGER: &str = "org.freedesktop.login1.Manager";
const LOGIND_SESSION: &str = "org.freedesktop.login1.Session";

/// A registered passcode dialog.
#[derive(Debug, Clone)]
pub(crate) struct Registered {
    /// The dialog program's unique bus name.
    owner: String,
    /// Where it serves `org.cardgate.Prompt1`.
    path: OwnedObjectPath,
}

/// What the holder's passcode is asked for.
#[derive(Debug, Clone)]
pub(crate) enum Purpose {
    /// A log-in (`Login1.RequestLogin`).
    Login,
    /// A web page's sign-in (`Web1.Authenticate`): the card signs for `origin` over `nonce`,
    /// both already checked; `requester` is the program that relayed it (the web bridge).
    Web {
        origin: WebOrigin,
        nonce: ChallengeNonce,
        requester: CallerIdentity,
    },
}

/// What a request is granted.
#[derive(Debug)]
pub(crate) enum Granted {
    /// A log-in: the role profiles.
    Profiles(Vec<RoleProfileInfo>),
    /// A web sign-in: the card-signed token (JSON).
    Token(String),
}

/// What a request is answered with: what it was granted, or the named error.
type Answer = Result<Granted, AgentError>;

/// The request being answered.
#[derive(Debug)]
struct Pending {
    cookie: String,
    /// The dialog that may answer it.
    prompt_owner: String,
    /// What the passcode is for.
    purpose: Purpose,
    /// Where the answer goes; taken by the first answer.
    done: Option<oneshot::Sender<Answer>>,
}

/// Dialogs by logind session id, and the one request in flight: shared by `Login1` and
/// `Web1`, so a log-in and a web sign-in never wait on the dialog at once.
#[derive(Debug, Default)]
pub(crate) struct Broker {
    prompts: Mutex<HashMap<String, Registered>>,
    pending: Mutex<Option<Pending>>,
}

impl Broker {
    fn prompt_for(&self, session: &str) -> Option<Registered> {
        self.prompts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(session)
            .cloned()
    }

    /// Starts a request for the dialog `prompt_owner`, or refuses while one is in flight.
    fn begin(
        &self,
        prompt_owner: &str,
        purpose: Purpose,
    ) -> Result<(String, oneshot::Receiver<Answer>), AgentError> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.is_some() {
            return Err(AgentError::LoginInProgress(
                "Another program's log-in is being answered in the passcode dialog; ask again \
                 when it is done."
                    .into(),
            ));
        }
        let cookie = new_cookie()?;
        let (tx, rx) = oneshot::channel();
        *pending = Some(Pending {
            cookie: cookie.clone(),
            prompt_owner: prompt_owner.to_owned(),
            purpose,
            done: Some(tx),
        });
        Ok((cookie, rx))
    }

    /// Whether `sender` is the dialog that may answer the request `cookie`; what the
    /// request is for.
    fn check_answerer(&self, cookie: &str, sender: &str) -> Result<Purpose, AgentError> {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        match pending.as_ref() {
            Some(p) if p.cookie == cookie && p.prompt_owner == sender => Ok(p.purpose.clone()),
            _ => Err(AgentError::NotPermitted(
                "no log-in request with this cookie is waiting for an answer from this dialog"
                    .into(),
            )),
        }
    }

    /// Hands `answer` to the request `cookie`, if it still waits.
    fn finish(&self, cookie: &str, answer: Answer) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = pending.as_mut().filter(|p| p.cookie == cookie)
            && let Some(done) = p.done.take()
        {
            let _ = done.send(answer);
        }
    }

    /// Forgets the request `cookie` (it has been answered one way or another).
    fn clear(&self, cookie: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.as_ref().is_some_and(|p| p.cookie == cookie) {
            *pending = None;
        }
    }
}

/// How the dialog is opened for a request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Opening<'a> {
    /// `Prompt1.BeginLogin`: the asking program in words and its reason.
    Login { requester: &'a str, reason: &'a str },
    /// `Prompt1.BeginWebSignIn`: the page's origin and the relaying program in words.
    Web { origin: &'a str, requester: &'a str },
}

impl Broker {
    /// The passcode dialog registered for the logind session of `who`, which must be the
    /// active session of its seat and `who`'s own; `method` names the call in refusals.
    pub(crate) async fn dialog_of(
        &self,
        connection: &Connection,
        who: &CallerIdentity,
        method: &str,
    ) -> Result<Registered, AgentError> {
        let session = logind_session(connection, who.pid).await?;
        if session.uid != who.uid || !session.active {
            return Err(AgentError::NotPermitted(format!(
                "{method} is for programs of the active desktop session at this \
                 workstation; the caller's session {} is not it",
                session.id
            )));
        }
        let Some(prompt) = self.prompt_for(&session.id) else {
            return Err(AgentError::NoPrompt(format!(
                "No passcode dialog is running in desktop session {}: start cardgate-desktop \
                 (it starts by itself at a graphical login). Nothing was sent to the card.",
                session.id
            )));
        };
        if !on_bus(connection, &prompt.owner).await {
            return Err(AgentError::NoPrompt(format!(
                "The passcode dialog of desktop session {} has ended: start cardgate-desktop \
                 again. Nothing was sent to the card.",
                session.id
            )));
        }
        Ok(prompt)
    }

    /// Asks the holder through `prompt` for `purpose` and waits for the first of: the
    /// dialog's right answer, its cancellation, the dialog program or the asking program
    /// (`requester`, a unique bus name) leaving the bus, the card leaving the reader, or
    /// [`ANSWER_WITHIN`].
    pub(crate) async fn ask_holder(
        &self,
        agent: &Agent,
        connection: &Connection,
        prompt: &Registered,
        requester: &str,
        purpose: Purpose,
        opening: Opening<'_>,
    ) -> Answer {
        let (cookie, answer) = self.begin(&prompt.owner, purpose)?;
        // Subscribed before the dialog opens: a removal from now on is seen.
        let mut events = agent.subscribe();
        let dialog = zbus::names::BusName::try_from(prompt.owner.clone())
            .map_err(zbus::Error::from)
            .and_then(|name| PromptProxy::builder(connection).destination(name))
            .and_then(|b| b.path(prompt.path.clone()))
            .map_err(|e| AgentError::Internal(format!("dialog proxy: {e}")));
        let dialog = match dialog {
            Ok(builder) => builder
                .build()
                .await
                .map_err(|e| AgentError::Internal(format!("dialog proxy: {e}"))),
            Err(e) => Err(e),
        };
        let dialog = match dialog {
            Ok(dialog) => dialog,
            Err(e) => {
                self.clear(&cookie);
                return Err(e);
            }
        };
        tracing::info!(?opening, "asking the passcode dialog");
        let begun = match opening {
            Opening::Login { requester, reason } => {
                tokio::time::timeout(BEGIN_WITHIN, dialog.begin_login(&cookie, requester, reason))
                    .await
            }
            Opening::Web { origin, requester } => {
                tokio::time::timeout(
                    BEGIN_WITHIN,
                    dialog.begin_web_sign_in(&cookie, origin, requester),
                )
                .await
            }
        };
        if let Err(problem) = match begun {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} s", BEGIN_WITHIN.as_secs())),
        } {
            self.clear(&cookie);
            if !on_bus(connection, &prompt.owner).await {
                // It was there a moment ago: the program ended while opening the dialog.
                return Err(AgentError::Cancelled(
                    "The passcode dialog program ended without an answer. Nothing was sent \
                     to the card."
                        .into(),
                ));
            }
            return Err(AgentError::NoPrompt(format!(
                "The passcode dialog did not open ({problem}). Nothing was sent to the card."
            )));
        }

        let removed = async {
            loop {
                match events.recv().await {
                    Ok(AgentEvent::CardRemoved { .. }) => return,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await;
                    }
                }
            }
        };
        let outcome = tokio::select! {
            answer = answer => answer.unwrap_or_else(|_| Err(AgentError::Cancelled(
                "The passcode dialog closed without an answer.".into()))),
            () = removed => {
                let _ = dialog.end_login(&cookie, END_CARD_REMOVED).await;
                Err(AgentError::NoCard(
                    "The card was taken out while the passcode dialog was open; nothing more \
                     was sent to it. Insert it to log in.".into()))
            }
            () = left_bus(connection, &prompt.owner) => Err(AgentError::Cancelled(
                "The passcode dialog program ended without an answer. Nothing more was sent \
                 to the card.".into())),
            () = left_bus(connection, requester) => {
                let _ = dialog.end_login(&cookie, END_REQUESTER_GONE).await;
                Err(AgentError::Cancelled("The program that asked has gone.".into()))
            }
            () = tokio::time::sleep(ANSWER_WITHIN) => {
                let _ = dialog.end_login(&cookie, END_TIMED_OUT).await;
                Err(AgentError::Cancelled(format!(
                    "Nobody answered the passcode dialog within {} minutes.",
                    ANSWER_WITHIN.as_secs() / 60)))
            }
        };
        self.clear(&cookie);
        outcome
    }
}

/// 128 random bits, hex: the request's name between the agent and its dialog.
fn new_cookie() -> Result<String, AgentError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AgentError::Internal("no randomness for the request's cookie".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What logind says of the session a process belongs to.
#[derive(Debug)]
struct LogindSession {
    id: String,
    uid: u32,
    active: bool,
}

async fn logind_session(connection: &Connection, pid: u32) -> Result<LogindSession, AgentError> {
    let not_in_session = |e: &dyn std::fmt::Display| {
        AgentError::NotPermitted(format!(
            "the calling program (process {pid}) is not in a desktop login session logind \
             knows ({e}); the prompted log-in is for programs of the desktop at the counter"
        ))
    };
    let reply = connection
        .call_method(
            Some(LOGIND),
            LOGIND_MANAGER_PATH,
            Some(LOGIND_MANAGER),
            "GetSessionByPID",
            &(pid,),
        )
        .await
        .map_err(|e| not_in_session(&e))?;
    let path: OwnedObjectPath = reply
        .body()
        .deserialize()
        .map_err(|e| AgentError::Internal(format!("logind's GetSessionByPID answer: {e}")))?;
    let session = zbus::Proxy::new(connection, LOGIND, path, LOGIND_SESSION)
        .await
        .map_err(|e| AgentError::Internal(format!("logind session: {e}")))?;
    let read = |e: zbus::Error| AgentError::Internal(format!("logind session property: {e}"));
    let id: String = session.get_property("Id").await.map_err(read)?;
    let (uid, _user): (u32, OwnedObjectPath) = session.get_property("User").await.map_err(read)?;
    let active: bool = session.get_property("Active").await.map_err(read)?;
    Ok(LogindSession { id, uid, active })
}

/// Whether `name` still has an owner on the bus.
async fn on_bus(connection: &Connection, name: &str) -> bool {
    let Ok(dbus) = zbus::fdo::DBusProxy::new(connection).await else {
        return false;
    };
    let Ok(name) = zbus::names::BusName::try_from(name) else {
        return false;
    };
    dbus.name_has_owner(name).await.unwrap_or(false)
}

/// Resolves when `name` leaves the bus.
async fn left_bus(connection: &Connection, name: &str) {
    let Ok(dbus) = zbus::fdo::DBusProxy::new(connection).await else {
        return std::future::pending().await;
    };
    let Ok(mut changes) = dbus
        .receive_name_owner_changed_with_args(&[(0, name)])
        .await
    else {
        return std::future::pending().await;
    };
    // Subscribed first, then asked: a name that left in between is not missed.
    if !on_bus(connection, name).await {
        return;
    }
    while let Some(change) = changes.next().await {
        if change.args().is_ok_and(|a| a.new_owner().is_none()) {
            return;
        }
    }
    std::future::pending().await
}

/// The asking program in words for the dialog: its process name and executable.
pub(crate) fn requester_in_words(pid: u32, executable: Option<&str>) -> String {
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    match (name.is_empty(), executable) {
        (false, Some(exe)) => format!("{name} ({exe})"),
        (true, Some(exe)) => exe.to_owned(),
        (false, None) => name,
        (true, None) => format!("process {pid}"),
    }
}

fn check_reason(reason: &str) -> Result<(), AgentError> {
    if reason.trim().is_empty() {
        return Err(AgentError::InvalidArgument(
            "reason: say in a few words why the log-in is needed (it is shown to the holder)"
                .into(),
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
        return Err(AgentError::InvalidArgument(format!(
            "reason: at most {MAX_REASON_CHARS} characters on one line, no control characters"
        )));
    }
    Ok(())
}

/// `org.cardgate.Login1`, served beside `org.cardgate.Agent1`.
#[derive(Debug)]
pub(crate) struct LoginInterface {
    agent: Agent,
    callers: CallerCache,
    broker: Arc<Broker>,
}

impl LoginInterface {
    /// Serves prompted log-ins for `agent`, through `broker` (shared with `Web1`).
    pub(crate) fn new(agent: Agent, broker: Arc<Broker>) -> LoginInterface {
        LoginInterface {
            agent,
            callers: CallerCache::default(),
            broker,
        }
    }

    /// Announces changed properties on `org.cardgate.Agent1` before a reply (a log-in
    /// changes the state).
    async fn announce(&self, connection: &Connection) {
        if let Ok(agent) = connection
            .object_server()
            .interface::<_, AgentInterface>(cardgate_ipc::OBJECT_PATH)
            .await
        {
            agent.get().await.announce(agent.signal_emitter()).await;
        }
    }

    /// The dialog's answer, `passcode` `None` for the PIN pad.
    async fn answer(
        &self,
        cookie: &str,
        passcode: Option<&str>,
        confirm_final_try: bool,
        connection: &Connection,
        header: &Header<'_>,
    ) -> Result<Vec<RoleProfileInfo>, AgentError> {
        let sender = sender(header)?;
        let purpose = self.broker.check_answerer(cookie, &sender)?;
        let who = self.callers.identify(connection, header).await?;
        let result = match purpose {
            Purpose::Login => self
                .agent
                .login(&who, passcode, confirm_final_try)
                .await
                .map(Granted::Profiles),
            Purpose::Web {
                origin,
                nonce,
                requester,
            } => self
                .agent
                .web_sign_in(&requester, &origin, &nonce, passcode, confirm_final_try)
                .await
                .map(Granted::Token),
        }
        .map_err(AgentError::from);
        self.announce(connection).await;
        // A wrong passcode goes back to the dialog, which shows the tries left; the request
        // keeps waiting. A web sign-in answers the dialog with no profiles: no role picker.
        match result {
            Ok(Granted::Profiles(profiles)) => {
                self.broker
                    .finish(cookie, Ok(Granted::Profiles(profiles.clone())));
                Ok(profiles)
            }
            Ok(token @ Granted::Token(_)) => {
                self.broker.finish(cookie, Ok(token));
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }
}

pub(crate) fn sender(header: &Header<'_>) -> Result<String, AgentError> {
    header
        .sender()
        .map(|s| s.to_string())
        .ok_or_else(|| AgentError::NotPermitted("the message has no sender".into()))
}

#[interface(name = "org.cardgate.Login1")]
impl LoginInterface {
    /// A log-in on behalf of the calling program, asked of the holder by the dialog of the
    /// caller's (active) desktop session.
    #[zbus(out_args("role_profiles"))]
    async fn request_login(
        &self,
        reason: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<RoleProfileInfo>, AgentError> {
        check_reason(&reason)?;
        let requester = sender(&header)?;
        let who = self.callers.identify(connection, &header).await?;
        let prompt = self
            .broker
            .dialog_of(connection, &who, "RequestLogin")
            .await?;
        if let Some(profiles) = self.agent.live_role_profiles() {
            tracing::info!(
                uid = who.uid,
                pid = who.pid,
                "RequestLogin: the session is already open"
            );
            return Ok(profiles);
        }
        if !self.agent.snapshot().card_present {
            return Err(AgentError::NoCard(
                "Insert your smartcard to log in.".into(),
            ));
        }
        let in_words = requester_in_words(who.pid, who.executable.as_deref());
        let granted = self
            .broker
            .ask_holder(
                &self.agent,
                connection,
                &prompt,
                &requester,
                Purpose::Login,
                Opening::Login {
                    requester: &in_words,
                    reason: &reason,
                },
            )
            .await;
        tracing::info!(
            uid = who.uid,
            pid = who.pid,
            outcome = granted
                .as_ref()
                .map_or_else(|e| e.short_name(), |_| "logged-in"),
            "RequestLogin answered"
        );
        match granted? {
            Granted::Profiles(profiles) => Ok(profiles),
            Granted::Token(_) => Err(AgentError::Internal(
                "a log-in request was answered with a web token".into(),
            )),
        }
    }

    /// Registers the caller's `org.cardgate.Prompt1` object at `path` as the passcode dialog
    /// of its logind session.
    async fn register_prompt(
        &self,
        path: ObjectPath<'_>,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), AgentError> {
        let owner = sender(&header)?;
        let who = self.callers.identify(connection, &header).await?;
        let session = logind_session(connection, who.pid).await?;
        if session.uid != who.uid {
            return Err(AgentError::NotPermitted(format!(
                "desktop session {} is not the calling user's",
                session.id
            )));
        }
        if let Some(existing) = self.broker.prompt_for(&session.id)
            && existing.owner != owner
            && on_bus(connection, &existing.owner).await
        {
            return Err(AgentError::NotPermitted(format!(
                "a passcode dialog is already registered for desktop session {} (bus name {}); \
                 one per session",
                session.id, existing.owner
            )));
        }
        self.broker
            .prompts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                session.id.clone(),
                Registered {
                    owner,
                    path: path.into(),
                },
            );
        tracing::info!(uid = who.uid, pid = who.pid, session = %session.id, "passcode dialog registered");
        Ok(())
    }

    /// Withdraws the caller's registration at `path`.
    async fn unregister_prompt(
        &self,
        path: ObjectPath<'_>,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), AgentError> {
        let owner = sender(&header)?;
        let mut prompts = self
            .broker
            .prompts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let before = prompts.len();
        prompts.retain(|_, p| !(p.owner == owner && p.path.as_ref() == path));
        if prompts.len() == before {
            return Err(AgentError::InvalidArgument(format!(
                "path: this connection has no passcode dialog registered at {path}"
            )));
        }
        Ok(())
    }

    /// The dialog's answer: the passcode typed in it.
    #[zbus(out_args("role_profiles"))]
    async fn answer_login(
        &self,
        cookie: String,
        passcode: String,
        confirm_final_try: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<RoleProfileInfo>, AgentError> {
        let passcode = zeroize::Zeroizing::new(passcode);
        self.answer(
            &cookie,
            Some(passcode.as_str()),
            confirm_final_try,
            connection,
            &header,
        )
        .await
    }

    /// The dialog's answer with the passcode keyed on the reader's PIN pad.
    #[zbus(out_args("role_profiles"))]
    async fn answer_login_with_pin_pad(
        &self,
        cookie: String,
        confirm_final_try: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<RoleProfileInfo>, AgentError> {
        self.answer(&cookie, None, confirm_final_try, connection, &header)
            .await
    }

    /// The holder closed the dialog.
    async fn cancel_login(
        &self,
        cookie: String,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), AgentError> {
        let sender = sender(&header)?;
        self.broker.check_answerer(&cookie, &sender)?;
        self.broker.finish(
            &cookie,
            Err(AgentError::Cancelled(
                "The holder closed the passcode dialog. Nothing more was sent to the card.".into(),
            )),
        );
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn one_request_at_a_time_and_only_its_dialog_answers() {
        let broker = Broker::default();
        let (cookie, mut rx) = broker.begin(":1.7", Purpose::Login).unwrap();
        assert!(matches!(
            broker.begin(":1.8", Purpose::Login),
            Err(AgentError::LoginInProgress(_))
        ));
        assert!(broker.check_answerer(&cookie, ":1.9").is_err());
        assert!(broker.check_answerer("0000", ":1.7").is_err());
        assert!(broker.check_answerer(&cookie, ":1.7").is_ok());
        broker.finish(&cookie, Err(AgentError::Cancelled("x".into())));
        assert!(matches!(rx.try_recv(), Ok(Err(AgentError::Cancelled(_)))));
        broker.clear(&cookie);
        assert!(broker.begin(":1.8", Purpose::Login).is_ok());
    }

    #[test]
    fn cookies_are_128_random_bits() {
        let a = new_cookie().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_cookie().unwrap());
    }

    #[test]
    fn a_reason_is_one_short_line() {
        assert!(check_reason("Download today's prescriptions").is_ok());
        for bad in ["", "  ", "two\nlines", &"x".repeat(201)] {
            let e = check_reason(bad).unwrap_err();
            assert!(matches!(e, AgentError::InvalidArgument(_)), "{bad:?}");
        }
    }
}
