//! The crate's one error type, [`PamError`], and the PAM return code each variant becomes.
//! Messages are for the person at the login screen; none ever holds a passcode.

use cardgate_ipc::AgentError;

/// Why a PAM call did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PamError {
    /// A module argument in the PAM line is wrong (the administrator's error).
    #[error("pam_cardgate: module argument {argument}: {rule}")]
    Option {
        /// The argument as written.
        argument: String,
        /// What is allowed.
        rule: String,
    },
    /// The holder-to-account mapping file cannot be read or has a bad line.
    #[error("pam_cardgate: mapping file {path}: {problem}")]
    Mapping {
        /// The file.
        path: String,
        /// What is wrong, with the line number when it is a line.
        problem: String,
    },
    /// libpam failed (no user, no conversation).
    #[error("pam_cardgate: {0}")]
    Pam(String),
    /// The conversation failed or the person cancelled.
    #[error("the passcode could not be asked for ({0})")]
    Conversation(String),
    /// The smartcard agent cannot be reached.
    #[error("The smartcard agent is not running; call IT support ({0}).")]
    AgentUnreachable(String),
    /// No card is in a reader.
    #[error("Insert your smartcard.")]
    NoCard,
    /// The card's holder may not log in to this account.
    #[error("This smartcard (holder {holder}) may not log in as {user}.")]
    NotMapped {
        /// The holder's UUID.
        holder: String,
        /// The local account asked for.
        user: String,
    },
    /// The workstation session belongs to another card.
    #[error("This session was opened with another smartcard; only that card can unlock it.")]
    OtherCard,
    /// The card is blocked; the message says how to get it unlocked.
    #[error("{0}")]
    Blocked(String),
    /// The card may not be used (revoked, expired, unusable certificate).
    #[error("{0}")]
    CardUnusable(String),
    /// The final try was not confirmed; nothing was sent to the card.
    #[error("Not tried: your smartcard still has its last try.")]
    FinalTryNotConfirmed,
    /// The agent refused or failed; its message is for people and holds no passcode.
    #[error("{}", agent_message(.0))]
    Agent(AgentError),
}

/// The message of an agent error without its D-Bus name.
fn agent_message(e: &AgentError) -> String {
    use zbus::DBusError as _;
    e.description().map_or_else(|| e.to_string(), str::to_owned)
}

/// The PAM return codes this module uses (Linux-PAM `_pam_types.h`).
pub mod code {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// A module argument or mapping is wrong.
    pub const SERVICE_ERR: i32 = 3;
    /// libpam or the system failed.
    pub const SYSTEM_ERR: i32 = 4;
    /// Permission denied.
    pub const PERM_DENIED: i32 = 6;
    /// Authentication failed.
    pub const AUTH_ERR: i32 = 7;
    /// The authentication service (the agent, the card) is unavailable.
    pub const AUTHINFO_UNAVAIL: i32 = 9;
    /// The card is blocked: no more tries.
    pub const MAXTRIES: i32 = 11;
    /// The account (the card's certificate) has expired or is revoked.
    pub const ACCT_EXPIRED: i32 = 13;
    /// A session could not be registered.
    pub const SESSION_ERR: i32 = 14;
    /// The conversation failed.
    pub const CONV_ERR: i32 = 19;
    /// Not this module's business.
    pub const IGNORE: i32 = 25;
}

impl PamError {
    /// The PAM return code for this error in the `auth` and `account` stacks.
    pub fn code(&self) -> i32 {
        match self {
            PamError::Option { .. } | PamError::Mapping { .. } => code::SERVICE_ERR,
            PamError::Pam(_) => code::SYSTEM_ERR,
            PamError::Conversation(_) => code::CONV_ERR,
            PamError::AgentUnreachable(_) | PamError::NoCard => code::AUTHINFO_UNAVAIL,
            PamError::NotMapped { .. } | PamError::OtherCard => code::PERM_DENIED,
            PamError::Blocked(_) => code::MAXTRIES,
            PamError::CardUnusable(_) => code::ACCT_EXPIRED,
            PamError::FinalTryNotConfirmed => code::AUTH_ERR,
            PamError::Agent(e) => match e {
                AgentError::CardBlocked(_) => code::MAXTRIES,
                AgentError::NoCard(_) | AgentError::EndpointUnavailable(_) => {
                    code::AUTHINFO_UNAVAIL
                }
                AgentError::ZBus(_) | AgentError::Internal(_) | AgentError::AuditUnavailable(_) => {
                    code::AUTHINFO_UNAVAIL
                }
                AgentError::NotPermitted(_) => code::PERM_DENIED,
                _ => code::AUTH_ERR,
            },
        }
    }
}
