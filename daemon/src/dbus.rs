//! The D-Bus server of `org.cardgate.Agent1` (`docs/ipc.md`): properties, signals and
//! methods over the [`Agent`] core, on any bus address.
//!
//! The caller of every method is identified from the message's sender through the bus
//! daemon (`GetConnectionUnixUser`, `GetConnectionUnixProcessID`, then `/proc/PID/exe`),
//! never from an argument and never from the daemon's own process. Restricted methods are
//! checked here against the caller's uid and groups, whatever the bus policy already did.

use std::collections::HashMap;

use cardgate_audit::CallerIdentity;
use cardgate_ipc::{
    AgentError, AuthoriseAnswer, ReaderInfo, RoleProfileInfo, SelectedRoleProfile, Ticket,
};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedValue, Value};
use zbus::{Connection, interface};

use crate::agent::{Agent, AgentEvent};

/// The served object.
#[derive(Debug)]
pub struct AgentInterface {
    agent: Agent,
    restricted_group: String,
}

impl AgentInterface {
    /// Serves `agent`; restricted methods need root or membership of `restricted_group`.
    pub fn new(agent: Agent, restricted_group: String) -> Self {
        AgentInterface {
            agent,
            restricted_group,
        }
    }
}

/// Who sent the message being answered.
async fn caller(
    connection: &Connection,
    header: &Header<'_>,
) -> Result<CallerIdentity, AgentError> {
    let not_identified = |what: &str| {
        AgentError::NotPermitted(format!("the caller could not be identified ({what})"))
    };
    let sender = header.sender().ok_or_else(|| not_identified("no sender"))?;
    let bus = zbus::fdo::DBusProxy::new(connection)
        .await
        .map_err(|e| AgentError::Internal(format!("bus daemon proxy: {e}")))?;
    let name = zbus::names::BusName::Unique(sender.to_owned());
    let uid = bus
        .get_connection_unix_user(name.clone())
        .await
        .map_err(|_| not_identified("no Unix user"))?;
    let pid = bus
        .get_connection_unix_process_id(name)
        .await
        .map_err(|_| not_identified("no process id"))?;
    let executable = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.display().to_string());
    Ok(CallerIdentity {
        uid,
        pid,
        executable,
    })
}

/// Whether `uid` is root or in `group` (primary group from `/etc/passwd`, supplementary
/// from `/etc/group`).
pub fn uid_in_group(uid: u32, group: &str) -> bool {
    if uid == 0 {
        return true;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let user = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[2].parse() == Ok(uid))
            .then(|| (fields[0].to_owned(), fields[3].to_owned()))
    });
    let Some((user_name, primary_gid)) = user else {
        return false;
    };
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups.lines().any(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        fields.len() > 3
            && fields[0] == group
            && (fields[2] == primary_gid || fields[3].split(',').any(|m| m == user_name))
    })
}

impl AgentInterface {
    async fn restricted(
        &self,
        connection: &Connection,
        header: &Header<'_>,
        method: &str,
    ) -> Result<CallerIdentity, AgentError> {
        let who = caller(connection, header).await?;
        if uid_in_group(who.uid, &self.restricted_group) {
            Ok(who)
        } else {
            tracing::warn!(
                uid = who.uid,
                pid = who.pid,
                method,
                "restricted method refused"
            );
            Err(AgentError::NotPermitted(format!(
                "{method} is only for members of the \"{}\" group",
                self.restricted_group
            )))
        }
    }
}

fn owned(value: Value<'_>) -> Result<OwnedValue, AgentError> {
    OwnedValue::try_from(value).map_err(|e| AgentError::Internal(format!("Status: {e}")))
}

// The macro adds `<property>_changed`/`_invalidate` methods that cannot carry doc comments.
#[allow(missing_docs)]
#[interface(name = "org.cardgate.Agent1")]
impl AgentInterface {
    /// Everything the properties say, plus warnings.
    async fn status(&self) -> Result<HashMap<String, OwnedValue>, AgentError> {
        let s = self.agent.snapshot();
        let mut map = HashMap::new();
        map.insert("Readers".to_owned(), owned(Value::from(s.readers))?);
        map.insert(
            "CardPresent".to_owned(),
            owned(Value::from(s.card_present))?,
        );
        map.insert("HolderUuid".to_owned(), owned(Value::from(s.holder_uuid))?);
        map.insert("HolderName".to_owned(), owned(Value::from(s.holder_name))?);
        map.insert("State".to_owned(), owned(Value::from(s.state.as_str()))?);
        map.insert(
            "PasscodeTriesLeft".to_owned(),
            owned(Value::from(s.passcode_tries_left))?,
        );
        map.insert(
            "SelectedRoleProfile".to_owned(),
            owned(Value::from(s.selected_role_profile))?,
        );
        map.insert(
            "CertificateNotAfter".to_owned(),
            owned(Value::from(s.certificate_not_after))?,
        );
        map.insert(
            "SessionGeneration".to_owned(),
            owned(Value::from(s.session_generation))?,
        );
        map.insert("Warnings".to_owned(), owned(Value::from(s.warnings))?);
        Ok(map)
    }

    /// Host-typed passcode log-in. Restricted.
    async fn login(
        &self,
        passcode: String,
        confirm_final_try: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<RoleProfileInfo>, AgentError> {
        let passcode = zeroize::Zeroizing::new(passcode);
        let who = self.restricted(connection, &header, "Login").await?;
        self.agent
            .login(&who, Some(passcode.as_str()), confirm_final_try)
            .await
    }

    /// PIN-pad log-in. Restricted.
    async fn login_with_pin_pad(
        &self,
        confirm_final_try: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<RoleProfileInfo>, AgentError> {
        let who = self
            .restricted(connection, &header, "LoginWithPinPad")
            .await?;
        self.agent.login(&who, None, confirm_final_try).await
    }

    /// Selects or switches the role profile.
    async fn select_role_profile(
        &self,
        id: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), AgentError> {
        let who = caller(connection, &header).await?;
        self.agent.select_role_profile(&who, &id).await
    }

    /// Ends the session.
    async fn logout(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), AgentError> {
        let who = caller(connection, &header).await?;
        self.agent.logout(&who).await
    }

    /// Changes the passcode. Restricted.
    async fn change_passcode(
        &self,
        current: String,
        new: String,
        confirm_final_try: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), AgentError> {
        let current = zeroize::Zeroizing::new(current);
        let new = zeroize::Zeroizing::new(new);
        let who = self
            .restricted(connection, &header, "ChangePasscode")
            .await?;
        self.agent
            .change_passcode(&who, &current, &new, confirm_final_try)
            .await
    }

    /// The gate.
    async fn authorise(
        &self,
        action: String,
        ods_code: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<AuthoriseAnswer, AgentError> {
        let who = caller(connection, &header).await?;
        self.agent.authorise(&who, &action, &ods_code)
    }

    /// The session's ticket. Restricted.
    async fn get_ticket(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Ticket, AgentError> {
        self.restricted(connection, &header, "GetTicket").await?;
        self.agent.ticket()
    }

    /// Each reader.
    #[zbus(property)]
    fn readers(&self) -> Vec<ReaderInfo> {
        self.agent.snapshot().readers
    }

    /// A card is in the active reader.
    #[zbus(property)]
    fn card_present(&self) -> bool {
        self.agent.snapshot().card_present
    }

    /// The holder's UUID.
    #[zbus(property)]
    fn holder_uuid(&self) -> String {
        self.agent.snapshot().holder_uuid
    }

    /// The holder's name.
    #[zbus(property)]
    fn holder_name(&self) -> String {
        self.agent.snapshot().holder_name
    }

    /// The state.
    #[zbus(property)]
    fn state(&self) -> String {
        self.agent.snapshot().state.as_str().to_owned()
    }

    /// Tries left.
    #[zbus(property)]
    fn passcode_tries_left(&self) -> i32 {
        self.agent.snapshot().passcode_tries_left
    }

    /// The selected role profile.
    #[zbus(property)]
    fn selected_role_profile(&self) -> SelectedRoleProfile {
        self.agent.snapshot().selected_role_profile
    }

    /// Certificate expiry.
    #[zbus(property)]
    fn certificate_not_after(&self) -> i64 {
        self.agent.snapshot().certificate_not_after
    }

    /// The session generation.
    #[zbus(property)]
    fn session_generation(&self) -> u64 {
        self.agent.snapshot().session_generation
    }

    /// A card was read.
    #[zbus(signal)]
    async fn card_inserted(
        emitter: &SignalEmitter<'_>,
        reader: &str,
        card_serial: &str,
        holder_uuid: &str,
    ) -> zbus::Result<()>;

    /// A card left a reader.
    #[zbus(signal)]
    async fn card_removed(
        emitter: &SignalEmitter<'_>,
        reader: &str,
        generation: u64,
    ) -> zbus::Result<()>;

    /// Log-in succeeded.
    #[zbus(signal)]
    async fn session_started(
        emitter: &SignalEmitter<'_>,
        holder_uuid: &str,
        generation: u64,
    ) -> zbus::Result<()>;

    /// A session ended.
    #[zbus(signal)]
    async fn session_ended(
        emitter: &SignalEmitter<'_>,
        reason: &str,
        generation: u64,
    ) -> zbus::Result<()>;

    /// The certificate expires soon.
    #[zbus(signal)]
    async fn certificate_expiring(
        emitter: &SignalEmitter<'_>,
        days_left: i32,
        message: &str,
    ) -> zbus::Result<()>;

    /// The passcode expires soon.
    #[zbus(signal)]
    async fn passcode_expiring(
        emitter: &SignalEmitter<'_>,
        days_left: i32,
        message: &str,
    ) -> zbus::Result<()>;

    /// A card was left in an idle workstation.
    #[zbus(signal)]
    async fn card_left_in_reader(
        emitter: &SignalEmitter<'_>,
        reader: &str,
        idle_seconds: u32,
    ) -> zbus::Result<()>;
}

/// Turns the agent's events into signals and `PropertiesChanged`, until the bus goes.
pub async fn forward_signals(connection: Connection, agent: Agent) {
    let mut events = agent.subscribe();
    let iface = match connection
        .object_server()
        .interface::<_, AgentInterface>(cardgate_ipc::OBJECT_PATH)
        .await
    {
        Ok(iface) => iface,
        Err(e) => {
            tracing::error!(error = %e, "the agent object is not served; no signals");
            return;
        }
    };
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "signal forwarder lagged");
                AgentEvent::PropertiesChanged
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let emitter = iface.signal_emitter();
        let sent = match &event {
            AgentEvent::CardInserted {
                reader,
                card_serial,
                holder_uuid,
            } => AgentInterface::card_inserted(emitter, reader, card_serial, holder_uuid).await,
            AgentEvent::CardRemoved { reader, generation } => {
                AgentInterface::card_removed(emitter, reader, *generation).await
            }
            AgentEvent::SessionStarted {
                holder_uuid,
                generation,
            } => AgentInterface::session_started(emitter, holder_uuid, *generation).await,
            AgentEvent::SessionEnded { reason, generation } => {
                AgentInterface::session_ended(emitter, reason.as_str(), *generation).await
            }
            AgentEvent::CertificateExpiring { days_left, message } => {
                AgentInterface::certificate_expiring(emitter, *days_left, message).await
            }
            AgentEvent::CardLeftInReader {
                reader,
                idle_seconds,
            } => AgentInterface::card_left_in_reader(emitter, reader, *idle_seconds).await,
            AgentEvent::PropertiesChanged => Ok(()),
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "signal not sent");
        }
        let object = iface.get().await;
        let changed = async {
            object.readers_changed(emitter).await?;
            object.card_present_changed(emitter).await?;
            object.holder_uuid_changed(emitter).await?;
            object.holder_name_changed(emitter).await?;
            object.state_changed(emitter).await?;
            object.passcode_tries_left_changed(emitter).await?;
            object.selected_role_profile_changed(emitter).await?;
            object.certificate_not_after_changed(emitter).await?;
            object.session_generation_changed(emitter).await
        };
        if let Err(e) = changed.await {
            tracing::warn!(error = %e, "PropertiesChanged not sent");
        }
    }
}
