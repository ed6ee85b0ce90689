//! The bus side of the desktop program, on a tokio thread of its own: it serves
//! `org.cardgate.Prompt1`, registers it with `cardgated` for this desktop session, opens the
//! dialog by itself when a card goes in with no session (it asks the agent with
//! `RequestLogin`, like any application would), turns the agent's warnings into desktop
//! notifications (`notify.rs`), and carries messages between the agent and the GTK main loop
//! ([`ToUi`], [`ToAgent`]). GTK never touches the bus and the bus never touches a widget.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cardgate_ipc::{
    AgentProxy, AgentStaffProxy, AgentState, CardInsertedStream, CardLeftInReaderStream,
    CertificateExpiringStream, LoginProxy, PasscodeExpiringStream, RoleProfileInfo,
    SessionEndedStream, property,
};
use futures_lite::StreamExt;
use zbus::zvariant::{ObjectPath, OwnedValue};
use zeroize::Zeroizing;

use crate::error::DesktopError;
use crate::notify::{Notice, Notifier};

/// Where the dialog program serves `org.cardgate.Prompt1`.
pub const PROMPT_PATH: &str = "/org/cardgate/Desktop/Prompt";

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
    /// The session ended: any role picker still open is stale.
    SessionEnded,
    /// A renewal began (`Some(0)`), moved on (`Some(percent)` with its step) or ended.
    Renewal(RenewalView),
    /// The bus side cannot go on (no agent, registration refused).
    Fatal(String),
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
}

impl std::fmt::Debug for ToAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the passcode.
        match self {
            ToAgent::Answer { cookie, .. } => write!(f, "Answer({cookie})"),
            ToAgent::AnswerOnPad { cookie, .. } => write!(f, "AnswerOnPad({cookie})"),
            ToAgent::Cancel { cookie } => write!(f, "Cancel({cookie})"),
            ToAgent::SelectRole { id } => write!(f, "SelectRole({id})"),
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

    let notifier = match zbus::Connection::session().await {
        Ok(session) => Notifier::new(&session).await.ok(),
        Err(e) => {
            tracing::warn!(error = %e, "no session bus: no desktop notifications");
            None
        }
    };
    if let Some(notifier) = &notifier {
        let staff = AgentStaffProxy::builder(&connection)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        tokio::spawn(renew_on_action(notifier.clone(), staff, to_ui.clone()));
    }
    tokio::spawn(watch_agent(
        agent.clone(),
        login.clone(),
        signals,
        notifier,
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
                continue;
            }
        };
        let tries_left = agent.passcode_tries_left().await.unwrap_or(-1);
        let _ = to_ui
            .send(ToUi::Answered {
                cookie,
                holder_uuid,
                result: result.map_err(error_parts),
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
    ended: SessionEndedStream,
    expiring: CertificateExpiringStream,
    passcode: PasscodeExpiringStream,
    left: CardLeftInReaderStream,
}

impl AgentSignals {
    async fn subscribe(agent: &AgentProxy<'static>) -> zbus::Result<AgentSignals> {
        Ok(AgentSignals {
            inserted: agent.receive_card_inserted().await?,
            ended: agent.receive_session_ended().await?,
            expiring: agent.receive_certificate_expiring().await?,
            passcode: agent.receive_passcode_expiring().await?,
            left: agent.receive_card_left_in_reader().await?,
        })
    }
}

/// Follows the agent's signals: a card going in with no session opens the dialog (when
/// asked to), and the warnings become desktop notifications.
async fn watch_agent(
    agent: AgentProxy<'static>,
    login: LoginProxy<'static>,
    signals: AgentSignals,
    notifier: Option<Notifier>,
    to_ui: async_channel::Sender<ToUi>,
    open_on_insert: bool,
    asked_itself: Arc<AtomicBool>,
) {
    let AgentSignals {
        mut inserted,
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
            Some(signal) = ended.next() => {
                let _ = to_ui.send(ToUi::SessionEnded).await;
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
/// would; the agent then asks this program's dialog.
async fn ask_for_log_in(
    agent: &AgentProxy<'static>,
    login: &LoginProxy<'static>,
    asked_itself: &Arc<AtomicBool>,
) {
    let state = agent.state().await.unwrap_or_default();
    if AgentState::parse(&state) != Some(AgentState::CardPresent) {
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
    to_ui: async_channel::Sender<ToUi>,
) {
    let Ok(mut actions) = notifier.actions().await else {
        return;
    };
    while let Some(action) = actions.next().await {
        if !notifier.is_renew(&action) {
            continue;
        }
        let Ok(mut progress) = staff.receive_renewal_progress().await else {
            continue;
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
    }
}
