//! The crate's one error type, [`CliError`]: everything a command can fail on, each with a
//! sentence that says what to do, because the reader is pharmacy staff or IT support, not a
//! developer.

use cardgate_ipc::AgentError;

/// Why a command could not do its job. The `Display` text is for people and never holds a
/// passcode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The bus itself could not be reached (no system bus, wrong `--bus` address).
    #[error(
        "cannot reach the cardgate agent: the D-Bus bus {bus} is not available ({source}). Check that the workstation has finished starting up (or the --bus address); if it persists, call IT support"
    )]
    BusUnreachable {
        /// The address tried (`system` for the system bus).
        bus: String,
        /// What the bus library said.
        #[source]
        source: zbus::Error,
    },
    /// The bus answers but nobody owns `org.cardgate.Agent`: the agent is not running.
    #[error(
        "the cardgate agent (cardgated) is not running on bus {bus}. Restart it (`sudo systemctl restart cardgated`) or restart the workstation; if it persists, call IT support"
    )]
    DaemonNotRunning {
        /// The address tried.
        bus: String,
    },
    /// The agent answered with one of its named errors.
    #[error("{}", agent_message(.0))]
    Agent(#[from] AgentError),
    /// The audit trail could not be read.
    #[error("{0}")]
    Audit(#[from] cardgate_audit::AuditError),
    /// The terminal or standard input could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The command cannot go ahead as asked (a missing choice, an answer the agent did not
    /// understand); the text says what to give.
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    /// A stable machine-readable code for `--json` output (`daemon-not-running`, `NoCard`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            CliError::BusUnreachable { .. } => "bus-unreachable",
            CliError::DaemonNotRunning { .. } => "daemon-not-running",
            CliError::Agent(e) => e.short_name(),
            CliError::Audit(_) => "audit-unreadable",
            CliError::Io { .. } => "io",
            CliError::Usage(_) => "usage",
        }
    }

    /// Wraps a bus-level failure of a call: a `ServiceUnknown` means the agent went away.
    pub(crate) fn from_call(bus: &str, e: zbus::Error) -> CliError {
        if let zbus::Error::MethodError(name, _, _) = &e
            && name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown"
        {
            return CliError::DaemonNotRunning {
                bus: bus.to_owned(),
            };
        }
        CliError::Agent(AgentError::from(e))
    }
}

/// The agent's message plus what to do next, for the errors people meet.
fn agent_message(e: &AgentError) -> String {
    let (message, next) = match e {
        AgentError::ZBus(e) => (
            e.to_string(),
            "call IT support with the time and this message",
        ),
        AgentError::InvalidArgument(m) => (m.clone(), ""),
        AgentError::NoCard(m) => (m.clone(), "insert your smartcard and try again"),
        AgentError::CardBlocked(m) => (m.clone(), UNLOCK_ADVICE),
        AgentError::WrongPasscode(m) => (
            m.clone(),
            "check the passcode before trying again; if unsure, do not guess: ask your Sponsor or LSA",
        ),
        AgentError::FinalTryNotConfirmed(m) => (
            m.clone(),
            "this is the card's last try: run again and confirm, or get the card unlocked first",
        ),
        AgentError::RepeatedPasscode(m) => (
            m.clone(),
            "that passcode just failed and was not sent again: check it before retrying",
        ),
        AgentError::NotLoggedIn(m) => (m.clone(), "log in first (`cardgate login`)"),
        AgentError::UnknownRoleProfile(m) => (m.clone(), "choose one of the listed role profiles"),
        AgentError::NotPermitted(m) => (
            m.clone(),
            "your account must be in the `cardgate` group; ask IT support",
        ),
        AgentError::EndpointUnavailable(m) => (
            m.clone(),
            "Spine cannot be reached: check the network; if it persists, call IT support with the time",
        ),
        AgentError::AuditUnavailable(m) => (
            m.clone(),
            "the audit trail cannot be written, so actions are refused: call IT support (check disk space)",
        ),
        AgentError::Card(m) => (
            m.clone(),
            "remove and reinsert the card; if it persists, call IT support with the card UUID and the time",
        ),
        AgentError::Internal(m) => (m.clone(), "call IT support with the time and this message"),
        // The message already says what to do instead (RA, another Sponsor, a later date).
        AgentError::NotEligible(m) => (m.clone(), ""),
        _ => (
            e.to_string(),
            "call IT support with the time and this message",
        ),
    };
    if next.is_empty() {
        message
    } else {
        format!("{message}\n  What to do: {next}.")
    }
}

/// How a locked card gets unlocked, in the seeds' order.
pub(crate) const UNLOCK_ADVICE: &str = "unlock it by self-service (only if you registered an email, mobile or photo: `cardgate unlock`), or ask your Sponsor or Local Smartcard Administrator (LSA: `cardgate unlock --sponsor`), or the Registration Authority (RA: `cardgate unlock --code`); an LSA cannot unlock their own card; cards whose number starts 01, 02 or 03 cannot be unlocked: ask the RA for a new card";
