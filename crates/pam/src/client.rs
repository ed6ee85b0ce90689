//! The module's view of the agent: the [`Daemon`] trait (what the PAM logic needs) and
//! [`AgentClient`], its implementation over D-Bus with `cardgate_ipc`'s proxies.
//!
//! PAM calls are synchronous and a PAM module must not assume anything about its host
//! process's threads, so each PAM call gets its own small current-thread tokio runtime, used
//! for that call's D-Bus traffic and dropped with it. Every call is bounded by the `timeout=`
//! option.

use std::future::Future;
use std::time::Duration;

use cardgate_ipc::{AgentError, AgentProxy, WorkstationProxy};
use zbus::proxy::CacheProperties;

use crate::error::PamError;

/// The card in the reader, as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardStatus {
    /// The holder's UUID, `""` when no card has been read.
    pub holder: String,
    /// The card serial (CHUID), `""` when none.
    pub card_serial: String,
    /// `usable`, `no-card`, `card-locked`, `certificate-revoked`, `certificate-expired`,
    /// `certificate-unusable` (`org.cardgate.Workstation1.CardStanding`).
    pub standing: String,
    /// A sentence for the holder about `standing`.
    pub message: String,
    /// Passcode tries left, `-1` when unknown.
    pub tries_left: i32,
    /// Whether the reader holding the card has a usable PIN pad.
    pub pin_pad: bool,
}

/// What the PAM logic needs from the agent.
pub trait Daemon {
    /// The card in the reader (waits briefly for a card that is in but not yet read).
    fn card(&mut self) -> Result<CardStatus, PamError>;
    /// `Login` (passcode typed here) or `LoginWithPinPad` (`None`).
    fn login(&mut self, passcode: Option<&str>, confirm_final_try: bool) -> Result<(), AgentError>;
    /// The registered workstation sessions: id, user, holder UUID, card serial.
    fn sessions(&mut self) -> Result<Vec<(String, String, String, String)>, PamError>;
    /// Registers logind session `session_id` of `user`.
    fn register(&mut self, session_id: &str, user: &str) -> Result<(), PamError>;
    /// Forgets logind session `session_id`.
    fn unregister(&mut self, session_id: &str) -> Result<(), PamError>;
}

/// [`Daemon`] over D-Bus.
pub struct AgentClient {
    runtime: tokio::runtime::Runtime,
    agent: AgentProxy<'static>,
    workstation: WorkstationProxy<'static>,
    timeout: Duration,
}

fn unreachable(e: impl std::fmt::Display) -> PamError {
    PamError::AgentUnreachable(e.to_string())
}

fn agent_error(e: zbus::Error) -> PamError {
    match AgentError::from(e) {
        AgentError::ZBus(e) => unreachable(e),
        other => PamError::Agent(other),
    }
}

impl AgentClient {
    /// Connects to the agent on `bus` (`"system"` or an address).
    pub fn connect(bus: &str, timeout: Duration) -> Result<AgentClient, PamError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PamError::Pam(format!("runtime: {e}")))?;
        let (agent, workstation) = runtime.block_on(async {
            tokio::time::timeout(timeout, async {
                let builder = if bus == "system" {
                    zbus::connection::Builder::system()?
                } else {
                    zbus::connection::Builder::address(bus)?
                };
                let connection = builder.build().await?;
                let agent = AgentProxy::builder(&connection)
                    .cache_properties(CacheProperties::No)
                    .build()
                    .await?;
                let workstation = WorkstationProxy::builder(&connection)
                    .cache_properties(CacheProperties::No)
                    .build()
                    .await?;
                Ok::<_, zbus::Error>((agent, workstation))
            })
            .await
            .map_err(|_| unreachable("no answer on the bus"))?
            .map_err(unreachable)
        })?;
        Ok(AgentClient {
            runtime,
            agent,
            workstation,
            timeout,
        })
    }

    fn run<T>(&self, call: impl Future<Output = Result<T, PamError>>) -> Result<T, PamError> {
        self.runtime.block_on(async {
            tokio::time::timeout(self.timeout, call)
                .await
                .map_err(|_| unreachable("the agent did not answer in time"))?
        })
    }
}

impl Daemon for AgentClient {
    fn card(&mut self) -> Result<CardStatus, PamError> {
        let agent = self.agent.clone();
        let workstation = self.workstation.clone();
        self.run(async move {
            // A card just put in is read within a second or so; wait up to 5 s for it.
            let mut waited = Duration::ZERO;
            let (holder, card_serial, standing, message) = loop {
                let answer = workstation.card_standing().await.map_err(agent_error)?;
                let in_but_unread =
                    answer.2 == "no-card" && agent.card_present().await.map_err(agent_error)?;
                if !in_but_unread || waited >= Duration::from_secs(5) {
                    break answer;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                waited += Duration::from_millis(100);
            };
            let tries_left = agent.passcode_tries_left().await.map_err(agent_error)?;
            let pin_pad = agent
                .readers()
                .await
                .map_err(agent_error)?
                .iter()
                .any(|r| r.card_present && r.pin_pad);
            Ok(CardStatus {
                holder,
                card_serial,
                standing,
                message,
                tries_left,
                pin_pad,
            })
        })
    }

    fn login(&mut self, passcode: Option<&str>, confirm_final_try: bool) -> Result<(), AgentError> {
        let agent = self.agent.clone();
        let timeout = self.timeout;
        self.runtime.block_on(async move {
            let call = async {
                match passcode {
                    Some(passcode) => agent.login(passcode, confirm_final_try).await,
                    None => agent.login_with_pin_pad(confirm_final_try).await,
                }
            };
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(_profiles)) => Ok(()),
                Ok(Err(e)) => Err(AgentError::from(e)),
                Err(_) => Err(AgentError::Internal(
                    "the agent did not answer in time".into(),
                )),
            }
        })
    }

    fn sessions(&mut self) -> Result<Vec<(String, String, String, String)>, PamError> {
        let workstation = self.workstation.clone();
        self.run(async move { workstation.sessions().await.map_err(agent_error) })
    }

    fn register(&mut self, session_id: &str, user: &str) -> Result<(), PamError> {
        let workstation = self.workstation.clone();
        self.run(async move {
            workstation
                .register_session(session_id, user)
                .await
                .map(|_| ())
                .map_err(agent_error)
        })
    }

    fn unregister(&mut self, session_id: &str) -> Result<(), PamError> {
        let workstation = self.workstation.clone();
        self.run(async move {
            workstation
                .unregister_session(session_id)
                .await
                .map_err(agent_error)
        })
    }
}
