//! The bus side of the desktop program, on a tokio thread of its own: it serves
//! `org.cardgate.Prompt1`, registers it with `cardgated` for this desktop session, opens the
//! dialog by itself when a card goes in with no session (it asks the agent with
//! `RequestLogin`, like any application would), turns the agent's warnings into desktop
//! notifications (`notify.rs`), offers the tray icon where the desktop has a tray
//! (`tray.rs`), and carries messages between the agent and the GTK main loop ([`ToUi`],
//! [`ToAgent`]). GTK never touches the bus and the bus never touches a widget.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cardgate_ipc::{
    AgentProxy, AgentStaffProxy, AgentState, CardInsertedStream, CardLeftInReaderStream,
    CertificateExpiringStream, LoginProxy, PasscodeExpiringStream, RoleProfileInfo,
    SessionEndedStream, SessionStartedStream, property,
};
use futures_lite::StreamExt;
use zbus::zvariant::{ObjectPath, OwnedValue};
use zeroize::Zeroizing;

use crate::error::DesktopError;
use crate::notify::{Notice, Notifier};
use crate::tray::Tray;

/// Where the dialog program serves `org.cardgate.Prompt1`.
pub const PROMPT_PATH: &str = "/org/cardgate/Desktop/Prompt";

/// The reason this program gives when the holder asks to change role (during a session the
/// agent answers the profiles without a dialog).
pub const CHANGE_ROLE_REASON: &str = "Change your role.";

/// The reason this program gives when it asks for a log-in itself, because a card went in.
pub const CARD_INSERTED_REASON: &str =
    "Your smartcard is in the reader: log in to start your session.";

/// What the bus side needs to know from the command line.
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// `system`, or the address of the bus `cardgated` serves on.
    pub agent_bus: String,
    /// Open the dialog by itself when a card goes in and no session is running.
    pub open_on_insert: bool,
}

/// What the dialog shows of the card and its holder, read from the agent's `Status` when a
/// request begins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HolderView {
    /// The holder's name.
    pub name: String,
    /// The card's UUID.
    pub uuid: String,
    /// Passcode tries left before the card locks (`-1` unknown).
    pub tries_left: i32,
    /// The agent's warnings for the holder (certificate expiring, few tries left, blocked).
    pub warnings: Vec<String>,
    /// The reader has a PIN pad the passcode should be typed on.
    pub pin_pad: bool,
}

impl HolderView {
    fn from_status(map: &HashMap<String, OwnedValue>) -> HolderView {
        fn take<T: TryFrom<OwnedValue>>(map: &HashMap<String, OwnedValue>, key: &str) -> Option<T> {
            map.get(key)
                .and_then(|v| v.try_clone().ok())
                .and_then(|v| T::try_from(v).ok())
        }
        let readers: Vec<(String, bool, bool)> = take(map, property::READERS).unwrap_or_default();
        HolderView {
            name: take(map, property::HOLDER_NAME).unwrap_or_default(),
            uuid: take(map, property::HOLDER_UUID).unwrap_or_default(),
            tries_left: take(map, property::PASSCODE_TRIES_LEFT).unwrap_or(-1),
            warnings: take(map, property::WARNINGS).unwrap_or_default(),
            pin_pad: readers.iter().any(|(_, card, pad)| *card && *pad),
        }
    }
}

/// From the bus to the dialog.
#[derive(Debug)]
pub enum ToUi {
    /// Show the dialog for `cookie`.
    Begin {
        /// The request's name between the agent and this dialog.
        cookie: String,
        /// The asking program in words, or `None` when this program asked because a card
        /// went in.
        requester: Option<String>,
        /// What it needs the log-in for.
        reason: String,
        /// The card and its holder.
        holder: HolderView,
        /// A web page's sign-in (`Prompt1.BeginWebSignIn`): its origin, as the browser
        /// reported it. The dialog says "Sign in to ORIGIN" and opens no role picker.
        web_origin: Option<String>,
    },
    /// Close the dialog of `cookie` (`why` is one of `cardgate_ipc::END_*`).
    End {
        /// The request.
        cookie: String,
        /// Why the agent closed it.
        why: String,
    },
    /// The agent's answer to the passcode: the role profiles, or the error to show.
    Answered {
        /// The request.
        cookie: String,
        /// The holder the answer is for (the last role chosen is remembered per holder).
        holder_uuid: String,
        /// The role profiles, or the error's name and message.
        result: Result<Vec<RoleProfileInfo>, (String, String)>,
        /// The tries left after the answer.
        tries_left: i32,
    },
    /// The agent's answer to the role chosen in the picker.
    RoleSelected {
        /// The profile chosen.
        id: String,
        /// `Err` with the agent's message when it refused.
        result: Result<(), String>,
    },
    /// The answer to starting a self-service unlock: the request's id and where the
    /// one-time code went, or the agent's reason it cannot.
    SelfServiceStarted {
        /// The log-in request the dialog belongs to.
        cookie: String,
        /// `(request_id, sent_to)`, or the agent's message.
        result: Result<(String, String), String>,
    },
    /// The answer to an unlock: the card has its new passcode, or the error.
    Unlocked {
        /// The log-in request the dialog belongs to.
        cookie: String,
        /// `Err` with the error's name and message.
        result: Result<(), (String, String)>,
        /// The passcode tries left afterwards.
        tries_left: i32,
    },
    /// The session ended: any role picker still open is stale.
    SessionEnded,
    /// Open the status window (the tray icon was activated).
    ShowStatus,
    /// What the status window shows, fresh from the agent.
    Status(StatusView),
    /// The outcome of an action taken from the status window, in words.
    StatusMessage(String),
    /// The holder asked to change role: the profiles to choose from.
    ChooseRole {
        /// The holder the choice is remembered for.
        holder_uuid: String,
        /// The session's role profiles.
        profiles: Vec<RoleProfileInfo>,
    },
    /// The answer to a passcode change.
    PasscodeChanged(Result<(), (String, String)>),
    /// A renewal began (`Some(0)`), moved on (`Some(percent)` with its step) or ended.
    Renewal(RenewalView),
    /// The bus side cannot go on (no agent, registration refused).
    Fatal(String),
}

/// What the status window shows of the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusView {
    /// The card and its holder.
    pub holder: HolderView,
    /// The agent's state code (`logged-in`, `card-present`, ...).
    pub state: String,
    /// The selected role profile in words, empty when none is.
    pub role: String,
}

/// What the renewal window shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewalView {
    /// A step of the renewal (`RenewalProgress`), with how far along it is.
    Step {
        /// The agent's step code (`generating-key`, ...).
        step: String,
        /// 0 to 100.
        percent: u32,
    },
    /// The renewal is over: the new certificate's expiry as a date, or what went wrong.
    Done(Result<String, String>),
}

/// From the dialog to the bus.
pub enum ToAgent {
    /// The passcode typed, sent once and then dropped (zeroized).
    Answer {
        /// The request.
        cookie: String,
        /// The holder whose card it is.
        holder_uuid: String,
        /// The passcode, shape already checked.
        passcode: Zeroizing<String>,
        /// The holder confirmed the final try.
        final_try: bool,
    },
    /// The holder chose to type on the reader's PIN pad.
    AnswerOnPad {
        /// The request.
        cookie: String,
        /// The holder whose card it is.
        holder_uuid: String,
        /// The holder confirmed the final try.
        final_try: bool,
    },
    /// The holder closed the dialog.
    Cancel {
        /// The request.
        cookie: String,
    },
    /// The holder chose a role profile in the picker.
    SelectRole {
        /// The profile's id.
        id: String,
    },
    /// The status window wants fresh facts.
    Status,
    /// Log out (the status window's "Log out").
    Logout,
    /// Change role: the session's profiles for the picker.
    ChangeRole,
    /// Renew the certificate, its progress in the renewal window.
    Renew,
    /// Change the passcode on the card, sent once.
    ChangePasscode {
        /// The passcode now.
        current: Zeroizing<String>,
        /// The passcode the card takes.
        new: Zeroizing<String>,
        /// The holder confirmed the final try.
        final_try: bool,
    },
    /// Self-service unlock, step 1: the national service sends the holder a one-time code.
    StartSelfServiceUnlock {
        /// The log-in request the dialog belongs to.
        cookie: String,
    },
    /// Self-service unlock, step 2: the one-time code and the new passcode, sent once.
    UnlockWithOneTimeCode {
        /// The log-in request the dialog belongs to.
        cookie: String,
        /// From step 1.
        request_id: String,
        /// The 6 digits the holder received.
        one_time_code: Zeroizing<String>,
        /// The passcode the card takes.
        new_passcode: Zeroizing<String>,
    },
    /// Unlock with the RA's unlock code and set the new passcode, sent once.
    UnlockWithCode {
        /// The log-in request the dialog belongs to.
        cookie: String,
        /// The RA's 8-character code.
        unlock_code: Zeroizing<String>,
        /// The passcode the card takes.
        new_passcode: Zeroizing<String>,
        /// The holder confirmed the unlock code's final try.
        final_try: bool,
    },
}

impl std::fmt::Debug for ToAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the passcode.
        match self {
            ToAgent::Answer { cookie, .. } => write!(f, "Answer({cookie})"),
            ToAgent::AnswerOnPad { cookie, .. } => write!(f, "AnswerOnPad({cookie})"),
            ToAgent::Cancel { cookie } => write!(f, "Cancel({cookie})"),
            ToAgent::SelectRole { id } => write!(f, "SelectRole({id})"),
            ToAgent::StartSelfServiceUnlock { cookie } => {
                write!(f, "StartSelfServiceUnlock({cookie})")
            }
            ToAgent::Status => f.write_str("Status"),
            ToAgent::Logout => f.write_str("Logout"),
            ToAgent::ChangeRole => f.write_str("ChangeRole"),
            ToAgent::Renew => f.write_str("Renew"),
            ToAgent::ChangePasscode { .. } => f.write_str("ChangePasscode"),
            ToAgent::UnlockWithOneTimeCode { cookie, .. } => {
                write!(f, "UnlockWithOneTimeCode({cookie})")
            }
            ToAgent::UnlockWithCode { cookie, .. } => write!(f, "UnlockWithCode({cookie})"),
        }
    }
}

/// `org.cardgate.Prompt1` as this program serves it: every call goes to the dialog.
struct Prompt {
    to_ui: async_channel::Sender<ToUi>,
    agent: AgentProxy<'static>,
    /// This program has asked for a log-in itself (a card went in) and not had the answer.
    asked_itself: Arc<AtomicBool>,
}

#[zbus::interface(name = "org.cardgate.Prompt1")]
impl Prompt {
    /// Opens the dialog (answers at once; the holder's answer comes as `AnswerLogin`).
    async fn begin_login(&self, cookie: String, requester: String, reason: String) {
        let holder = match self.agent.status().await {
            Ok(map) => HolderView::from_status(&map),
            Err(e) => {
                tracing::warn!(error = %e, "Status for the dialog");
                HolderView::default()
            }
        };
        let ours = self.asked_itself.load(Ordering::SeqCst) && reason == CARD_INSERTED_REASON;
        let _ = self
            .to_ui
            .send(ToUi::Begin {
                cookie,
                requester: (!ours).then_some(requester),
                reason,
                holder,
                web_origin: None,
            })
            .await;
    }

    /// Opens the dialog for a web page's sign-in at `origin`, relayed by `requester` (the
    /// web bridge); answered with `AnswerLogin` as a log-in is.
    async fn begin_web_sign_in(&self, cookie: String, origin: String, requester: String) {
        let holder = match self.agent.status().await {
            Ok(map) => HolderView::from_status(&map),
            Err(e) => {
                tracing::warn!(error = %e, "Status for the dialog");
                HolderView::default()
            }
        };
        let _ = self
            .to_ui
            .send(ToUi::Begin {
                cookie,
                requester: Some(requester),
                reason: String::new(),
                holder,
                web_origin: Some(origin),
            })
            .await;
    }

    /// Closes the dialog.
    async fn end_login(&self, cookie: String, why: String) {
        let _ = self.to_ui.send(ToUi::End { cookie, why }).await;
    }
}

/// The error's short name (`WrongPasscode`) and message, from a failed call.
fn error_parts(error: zbus::Error) -> (String, String) {
    match error {
        zbus::Error::MethodError(name, message, _) => (
            name.as_str()
                .trim_start_matches(cardgate_ipc::ERROR_PREFIX)
                .trim_start_matches('.')
                .to_owned(),
            message.unwrap_or_default(),
        ),
        e => ("Bus".to_owned(), e.to_string()),
    }
}

async fn connect(bus: &str) -> Result<zbus::Connection, DesktopError> {
    let builder = if bus == "system" {
        zbus::connection::Builder::system()?
    } else {
        zbus::connection::Builder::address(bus)?
    };
    Ok(builder.build().await?)
}

/// Connects to the agent's bus, serves and registers the prompt, watches the agent's
/// signals, then carries the dialog's answers to the agent until the dialog side closes its
/// channel.
pub async fn run(
    options: BusOptions,
    to_ui: async_channel::Sender<ToUi>,
    from_ui: async_channel::Receiver<ToAgent>,
) -> Result<(), DesktopError> {
    let connection = connect(&options.agent_bus).await?;
    let agent = AgentProxy::builder(&connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let asked_itself = Arc::new(AtomicBool::new(false));
    connection
        .object_server()
        .at(
            PROMPT_PATH,
            Prompt {
                to_ui: to_ui.clone(),
                agent: agent.clone(),
                asked_itself: Arc::clone(&asked_itself),
            },
        )
        .await?;
    let signals = AgentSignals::subscribe(&agent).await?;
    let login = LoginProxy::new(&connection).await?;
    login
        .register_prompt(&ObjectPath::from_static_str_unchecked(PROMPT_PATH))
        .await
        .map_err(|e| DesktopError::Register(error_parts(e).1))?;
    tracing::info!("registered as this session's passcode dialog");

    let session = match zbus::Connection::session().await {
        Ok(session) => Some(session),
        Err(e) => {
            tracing::warn!(error = %e, "no session bus: no desktop notifications, no tray icon");
            None
        }
    };
    let (notifier, tray) = match &session {
        Some(session) => (
            Notifier::new(session).await.ok(),
            crate::tray::offer(session, agent.clone(), to_ui.clone()).await,
        ),
        None => (None, None),
    };
    let staff = AgentStaffProxy::builder(&connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    if let Some(notifier) = &notifier {
        tokio::spawn(renew_on_action(
            notifier.clone(),
            staff.clone(),
            agent.clone(),
            to_ui.clone(),
        ));
    }
    tokio::spawn(watch_agent(
        agent.clone(),
        login.clone(),
        signals,
        notifier.clone(),
        tray,
        to_ui.clone(),
        options.open_on_insert,
        asked_itself,
    ));

    while let Ok(command) = from_ui.recv().await {
        let (cookie, holder_uuid, result) = match command {
            ToAgent::Answer {
                cookie,
                holder_uuid,
                passcode,
                final_try,
            } => {
                let result = login.answer_login(&cookie, &passcode, final_try).await;
                drop(passcode);
                (cookie, holder_uuid, result)
            }
            ToAgent::AnswerOnPad {
                cookie,
                holder_uuid,
                final_try,
            } => {
                let result = login.answer_login_with_pin_pad(&cookie, final_try).await;
                (cookie, holder_uuid, result)
            }
            ToAgent::Cancel { cookie } => {
                if let Err(e) = login.cancel_login(&cookie).await {
                    tracing::warn!(error = %e, "CancelLogin");
                }
                continue;
            }
            ToAgent::SelectRole { id } => {
                let result = agent
                    .select_role_profile(&id)
                    .await
                    .map_err(|e| error_parts(e).1);
                let _ = to_ui.send(ToUi::RoleSelected { id, result }).await;
                send_status(&agent, &to_ui).await;
                continue;
            }
            ToAgent::Status => {
                send_status(&agent, &to_ui).await;
                continue;
            }
            ToAgent::Logout => {
                if let Err(e) = agent.logout().await {
                    let _ = to_ui.send(ToUi::StatusMessage(error_parts(e).1)).await;
                }
                send_status(&agent, &to_ui).await;
                continue;
            }
            ToAgent::ChangeRole => {
                // During a session RequestLogin answers the session's profiles at once.
                let holder_uuid = agent.holder_uuid().await.unwrap_or_default();
                match login.request_login(CHANGE_ROLE_REASON).await {
                    Ok(profiles) => {
                        let _ = to_ui
                            .send(ToUi::ChooseRole {
                                holder_uuid,
                                profiles,
                            })
                            .await;
                    }
                    Err(e) => {
                        let _ = to_ui.send(ToUi::StatusMessage(error_parts(e).1)).await;
                    }
                }
                continue;
            }
            ToAgent::Renew => {
                tokio::spawn(renew(staff.clone(), agent.clone(), to_ui.clone()));
                continue;
            }
            ToAgent::ChangePasscode {
                current,
                new,
                final_try,
            } => {
                let result = agent.change_passcode(&current, &new, final_try).await;
                drop((current, new));
                let _ = to_ui
                    .send(ToUi::PasscodeChanged(result.map_err(error_parts)))
                    .await;
                send_status(&agent, &to_ui).await;
                continue;
            }
            ToAgent::StartSelfServiceUnlock { cookie } => {
                let result = staff
                    .start_self_service_unlock()
                    .await
                    .map(|started| (started.request_id, started.sent_to))
                    .map_err(|e| error_parts(e).1);
                let _ = to_ui
                    .send(ToUi::SelfServiceStarted { cookie, result })
                    .await;
                continue;
            }
            ToAgent::UnlockWithOneTimeCode {
                cookie,
                request_id,
                one_time_code,
                new_passcode,
            } => {
                let result = staff
                    .unlock_with_one_time_code(&request_id, &one_time_code, &new_passcode)
                    .await;
                drop((one_time_code, new_passcode));
                unlocked(&agent, &to_ui, cookie, result).await;
                continue;
            }
            ToAgent::UnlockWithCode {
                cookie,
                unlock_code,
                new_passcode,
                final_try,
            } => {
                let result = staff
                    .unlock_with_code(&unlock_code, &new_passcode, final_try)
                    .await;
                drop((unlock_code, new_passcode));
                unlocked(&agent, &to_ui, cookie, result).await;
                continue;
            }
        };
        let tries_left = agent.passcode_tries_left().await.unwrap_or(-1);
        let result = result.map_err(error_parts);
        if let (Err((name, message)), Some(notifier)) = (&result, &notifier) {
            let notice = match name.as_str() {
                "CardBlocked" => Some(Notice::card_blocked()),
                "WrongPasscode" if tries_left == 0 => Some(Notice::card_blocked()),
                "EndpointUnavailable" => Some(Notice::endpoint_unavailable(message)),
                _ => None,
            };
            if let Some(notice) = notice
                && let Err(e) = notifier.show(&notice).await
            {
                tracing::warn!(error = %e, "desktop notification");
            }
        }
        let _ = to_ui
            .send(ToUi::Answered {
                cookie,
                holder_uuid,
                result,
                tries_left,
            })
            .await;
    }
    Ok(())
}

/// The agent's signals this program follows, subscribed before it registers so no card
/// going in is missed.
struct AgentSignals {
    inserted: CardInsertedStream,
    started: SessionStartedStream,
    ended: SessionEndedStream,
    expiring: CertificateExpiringStream,
    passcode: PasscodeExpiringStream,
    left: CardLeftInReaderStream,
}

impl AgentSignals {
    async fn subscribe(agent: &AgentProxy<'static>) -> zbus::Result<AgentSignals> {
        Ok(AgentSignals {
            inserted: agent.receive_card_inserted().await?,
            started: agent.receive_session_started().await?,
            ended: agent.receive_session_ended().await?,
            expiring: agent.receive_certificate_expiring().await?,
            passcode: agent.receive_passcode_expiring().await?,
            left: agent.receive_card_left_in_reader().await?,
        })
    }
}

/// Sends the status window the agent's facts as they are now.
async fn send_status(agent: &AgentProxy<'static>, to_ui: &async_channel::Sender<ToUi>) {
    let holder = match agent.status().await {
        Ok(map) => HolderView::from_status(&map),
        Err(e) => {
            let _ = to_ui.send(ToUi::StatusMessage(error_parts(e).1)).await;
            return;
        }
    };
    let state = agent.state().await.unwrap_or_default();
    let role = match agent.selected_role_profile().await {
        Ok(selected) if !selected.id.is_empty() => crate::roles::selected_label(&selected),
        _ => String::new(),
    };
    let _ = to_ui
        .send(ToUi::Status(StatusView {
            holder,
            state,
            role,
        }))
        .await;
}

/// Tells the dialog how an unlock went, with the tries left afterwards.
async fn unlocked(
    agent: &AgentProxy<'static>,
    to_ui: &async_channel::Sender<ToUi>,
    cookie: String,
    result: zbus::Result<()>,
) {
    let tries_left = agent.passcode_tries_left().await.unwrap_or(-1);
    let _ = to_ui
        .send(ToUi::Unlocked {
            cookie,
            result: result.map_err(error_parts),
            tries_left,
        })
        .await;
}

/// Follows the agent's signals: a card going in with no session opens the dialog (when
/// asked to), and the warnings become desktop notifications.
#[allow(clippy::too_many_arguments)]
async fn watch_agent(
    agent: AgentProxy<'static>,
    login: LoginProxy<'static>,
    signals: AgentSignals,
    notifier: Option<Notifier>,
    tray: Option<Tray>,
    to_ui: async_channel::Sender<ToUi>,
    open_on_insert: bool,
    asked_itself: Arc<AtomicBool>,
) {
    let AgentSignals {
        mut inserted,
        mut started,
        mut ended,
        mut expiring,
        mut passcode,
        mut left,
    } = signals;
    let notify = |notice: Notice| {
        let notifier = notifier.clone();
        async move {
            if let Some(n) = notifier
                && let Err(e) = n.show(&notice).await
            {
                tracing::warn!(error = %e, "desktop notification");
            }
        }
    };
    loop {
        tokio::select! {
            Some(_) = inserted.next() => {
                if open_on_insert {
                    ask_for_log_in(&agent, &login, &asked_itself).await;
                }
            }
            Some(_) = started.next() => {
                send_status(&agent, &to_ui).await;
                if let Some(tray) = &tray {
                    tray.changed().await;
                }
            }
            Some(signal) = ended.next() => {
                let _ = to_ui.send(ToUi::SessionEnded).await;
                send_status(&agent, &to_ui).await;
                if let Some(tray) = &tray {
                    tray.changed().await;
                }
                if let Ok(args) = signal.args() {
                    notify(Notice::session_ended(args.reason())).await;
                }
            }
            Some(signal) = expiring.next() => {
                if let Ok(args) = signal.args() {
                    notify(Notice::certificate_expiring(*args.days_left(), args.message())).await;
                }
            }
            Some(signal) = passcode.next() => {
                if let Ok(args) = signal.args() {
                    notify(Notice::passcode_expiring(args.message())).await;
                }
            }
            Some(signal) = left.next() => {
                if let Ok(args) = signal.args() {
                    notify(Notice::card_left_in_reader(*args.idle_seconds())).await;
                }
            }
            else => return,
        }
    }
}

/// A card went in: when no session is running, ask for a log-in the way any application
/// would; the agent then asks this program's dialog (for a locked card, the dialog leads to
/// the unlock).
async fn ask_for_log_in(
    agent: &AgentProxy<'static>,
    login: &LoginProxy<'static>,
    asked_itself: &Arc<AtomicBool>,
) {
    // A locked card too: the dialog shows the ways to unlock it.
    let state = agent.state().await.unwrap_or_default();
    if !matches!(
        AgentState::parse(&state),
        Some(AgentState::CardPresent | AgentState::CardLocked)
    ) {
        return;
    }
    if asked_itself.swap(true, Ordering::SeqCst) {
        return;
    }
    let login = login.clone();
    let asked_itself = Arc::clone(asked_itself);
    tokio::spawn(async move {
        match login.request_login(CARD_INSERTED_REASON).await {
            Ok(profiles) => tracing::info!(profiles = profiles.len(), "logged in at insertion"),
            Err(e) => tracing::info!(error = %error_parts(e).0, "no log-in at insertion"),
        }
        asked_itself.store(false, Ordering::SeqCst);
    });
}

/// The holder chose "Renew now" on a certificate notification: the renewal runs, its
/// progress in the renewal window.
async fn renew_on_action(
    notifier: Notifier,
    staff: AgentStaffProxy<'static>,
    agent: AgentProxy<'static>,
    to_ui: async_channel::Sender<ToUi>,
) {
    let Ok(mut actions) = notifier.actions().await else {
        return;
    };
    while let Some(action) = actions.next().await {
        if notifier.is_renew(&action) {
            renew(staff.clone(), agent.clone(), to_ui.clone()).await;
        }
    }
}

/// Renews the certificate, each step of it to the renewal window, then the status afresh.
async fn renew(
    staff: AgentStaffProxy<'static>,
    agent: AgentProxy<'static>,
    to_ui: async_channel::Sender<ToUi>,
) {
    let Ok(mut progress) = staff.receive_renewal_progress().await else {
        return;
    };
    let forward = {
        let to_ui = to_ui.clone();
        tokio::spawn(async move {
            while let Some(signal) = progress.next().await {
                if let Ok(args) = signal.args() {
                    let _ = to_ui
                        .send(ToUi::Renewal(RenewalView::Step {
                            step: (*args.step()).to_owned(),
                            percent: *args.percent(),
                        }))
                        .await;
                }
            }
        })
    };
    let _ = to_ui
        .send(ToUi::Renewal(RenewalView::Step {
            step: "starting".into(),
            percent: 0,
        }))
        .await;
    let result = staff
        .renew_certificate()
        .await
        .map(crate::notify::date_of)
        .map_err(|e| error_parts(e).1);
    forward.abort();
    let _ = to_ui.send(ToUi::Renewal(RenewalView::Done(result))).await;
    send_status(&agent, &to_ui).await;
}
